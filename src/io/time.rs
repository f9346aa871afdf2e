//! Time: the wall clock for Kafka timestamps, a monotonic clock for
//! durations, sleeps and timeouts. In a simulation all of them follow the
//! world's virtual clock.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use super::sim;

/// Milliseconds since the Unix epoch, as Kafka timestamps are.
pub fn now_ms() -> i64 {
    if sim::active() {
        return sim::world().now_ms();
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn origin() -> std::time::Instant {
    static ORIGIN: OnceLock<std::time::Instant> = OnceLock::new();
    *ORIGIN.get_or_init(std::time::Instant::now)
}

/// A point on the monotonic clock (virtual in a simulation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(Duration);

impl Instant {
    pub fn now() -> Self {
        if sim::active() {
            return Instant(sim::world().elapsed());
        }
        Instant(origin().elapsed())
    }

    pub fn elapsed(&self) -> Duration {
        Instant::now().0.saturating_sub(self.0)
    }

    pub fn saturating_duration_since(&self, earlier: Instant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// This instant plus `d` (saturating far in the future).
    pub fn add(&self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(d))
    }

    /// Time left until this instant (zero once passed).
    pub fn remaining(&self) -> Duration {
        self.0.saturating_sub(Instant::now().0)
    }
}

/// The longest single sleep (longer ones end early; callers loop on a
/// deadline where it matters).
pub const MAX_SLEEP: Duration = Duration::from_secs(10 * 365 * 86_400);

/// Sleep for `d`.
pub async fn sleep(d: Duration) {
    // Clamp so that "now + d" cannot overflow the runtime's clock.
    let d = d.min(MAX_SLEEP);
    if sim::active() {
        sim::sleep(d).await
    } else {
        super::guard::filtered(glommio::timer::sleep(d)).await;
    }
}

/// Sleep until `at`.
pub async fn sleep_until(at: Instant) {
    let left = at.remaining();
    if !left.is_zero() {
        sleep(left).await
    }
}

/// Run `fut` for at most `d`; `None` when the time ran out first.
pub async fn timeout<T>(d: Duration, fut: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        sleep(d).await;
        None
    })
    .await
}
