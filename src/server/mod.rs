//! Network: accept connections on this shard and serve them.

pub mod capture;
pub mod connection;
pub mod limits;

use std::rc::Rc;

use crate::io::net::Listener;
use crate::shard::Shard;

use limits::ConnectionLimits;

/// How long a shutdown waits for the shard's client connections to write
/// the responses of their requests in flight and close.
pub const SHUTDOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(1);

/// Accept connections until shutdown; each gets its own task. At shutdown,
/// wait (at most [`SHUTDOWN_DRAIN`]) for the connections to close.
///
/// `max.connections` and `max.connections.per.ip` apply per shard as
/// ceil(limit / shards): at its share of `max.connections` the shard stops
/// accepting until one of its connections closes; a connection from an
/// address over its share of `max.connections.per.ip` is closed at once.
pub async fn accept_loop(shard: Rc<Shard>, listener: Listener) {
    let limits = ConnectionLimits::new();
    let max = shard.config.per_shard(shard.config.max_connections);
    loop {
        let stop = shard.until_shutdown();
        let accepted = futures_lite::future::or(
            async {
                if limits.active() >= max {
                    crate::metrics::with(|m| m.connections_limit_waits += 1);
                    limits.below(max).await;
                }
                Some(listener.accept().await)
            },
            async {
                stop.await;
                None
            },
        )
        .await;
        match accepted {
            None => {
                // Shutdown: every connection stops reading, writes the
                // responses of what it has in flight (parked fetches answer
                // at once) and closes. Wait for them, bounded: a client
                // that does not read cannot hold the shutdown.
                let _ = crate::io::time::timeout(SHUTDOWN_DRAIN, limits.below(1)).await;
                return;
            }
            Some(Ok(conn)) => {
                let ip = conn.peer_addr().map(|a| a.ip());
                let per_ip = ip.map_or(usize::MAX, |ip| {
                    shard.config.per_shard(shard.config.max_connections_for(ip))
                });
                match limits.admit(ip, per_ip) {
                    Some(slot) => {
                        let s = shard.clone();
                        crate::io::executor::spawn_detached(connection::serve(s, conn, slot));
                    }
                    None => {
                        // Kafka closes it at once (TooManyConnectionsException).
                        tracing::debug!(peer = ?conn.peer_addr(), "closing connection: max.connections.per.ip reached");
                        crate::metrics::with(|m| m.connections_refused_per_ip += 1);
                        drop(conn);
                    }
                }
            }
            Some(Err(e)) => {
                tracing::warn!("accept failed: {e}");
                crate::io::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
