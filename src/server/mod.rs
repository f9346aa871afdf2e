//! Network: accept connections on this shard and serve them.

pub mod capture;
pub mod connection;

use std::rc::Rc;

use crate::io::net::Listener;
use crate::shard::Shard;

/// Accept connections until shutdown; each gets its own task.
pub async fn accept_loop(shard: Rc<Shard>, listener: Listener) {
    loop {
        let stop = shard.until_shutdown();
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            stop.await;
            None
        })
        .await;
        match accepted {
            None => return,
            Some(Ok(conn)) => {
                let s = shard.clone();
                crate::io::executor::spawn_detached(connection::serve(s, conn));
            }
            Some(Err(e)) => {
                tracing::warn!("accept failed: {e}");
                crate::io::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
