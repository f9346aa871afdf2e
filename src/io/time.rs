//! Timers.

use std::future::Future;
use std::time::Duration;

/// Sleep on the current executor's timer wheel.
pub async fn sleep(d: Duration) {
    glommio::timer::sleep(d).await
}

/// Run `fut` for at most `d`; `None` when the time ran out first.
pub async fn timeout<T>(d: Duration, fut: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        sleep(d).await;
        None
    })
    .await
}

/// Milliseconds since the Unix epoch, as Kafka timestamps are.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
