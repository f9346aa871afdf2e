//! Hostile clients: they break the protocol's manners, never its safety.
//! The broker must stay live for everyone else and must not fail: slow
//! readers that never read their responses, slow writers trickling a frame,
//! frames announced big that never come, garbage, idle connections.

use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::ApiKey;

use super::broker::broker_addr;
use super::client::{fetch_request, v, Client};
use crate::io::sim::world;
use crate::io::time::sleep;

/// Misbehave until `calm()` says the faults are over.
pub async fn run(calm: impl Fn() -> bool) {
    let w = world();
    while !calm() {
        let mut c = match Client::connect(broker_addr()).await {
            Ok(c) => c,
            Err(_) => {
                sleep(Duration::from_millis(w.rand_range(100..2000))).await;
                continue;
            }
        };
        match w.rand_range(0..5) {
            0 => {
                // Slow reader: many fetches of everything, responses never read.
                for i in 0..w.rand_range(1..50) {
                    let req = fetch_request("t0", 0, 0, 1, 100, 1 << 20);
                    let Ok((frame, _)) = c.frame(ApiKey::Fetch, v::FETCH, &req) else {
                        break;
                    };
                    if c.write_raw(&frame).await.is_err() {
                        break;
                    }
                    if i % 8 == 0 {
                        sleep(Duration::from_millis(w.rand_range(0..500))).await;
                    }
                }
                sleep(Duration::from_secs(w.rand_range(1..600))).await;
            }
            1 => {
                // Slow writer: a valid request, a few bytes at a time.
                let req = fetch_request("t0", 0, 0, 1, 100, 1 << 20);
                if let Ok((frame, _)) = c.frame(ApiKey::Fetch, v::FETCH, &req) {
                    let step = w.rand_range(1..8) as usize;
                    let pause = Duration::from_millis(w.rand_range(10..5000));
                    for chunk in frame.chunks(step) {
                        if c.write_raw(chunk).await.is_err() {
                            break;
                        }
                        sleep(pause).await;
                        if calm() {
                            break;
                        }
                    }
                }
            }
            2 => {
                // A big frame announced, then silence.
                let size = w.rand_range(1 << 10..200 << 20) as i32;
                let mut head = BytesMut::new();
                head.extend_from_slice(&size.to_be_bytes());
                head.extend_from_slice(&[0, 1, 0, 12, 0, 0, 0, 7]);
                let _ = c.write_raw(&head).await;
                sleep(Duration::from_secs(w.rand_range(1..300))).await;
            }
            3 => {
                // Garbage, sometimes after a valid header.
                let n = w.rand_range(1..4096) as usize;
                let mut junk: Vec<u8> = (0..n).map(|_| w.rand_u64() as u8).collect();
                if w.chance(0.5) && junk.len() >= 4 {
                    let len = (n as i32 - 4).to_be_bytes();
                    junk[..4].copy_from_slice(&len);
                }
                let _ = c.write_raw(&junk).await;
                sleep(Duration::from_millis(w.rand_range(0..3000))).await;
            }
            _ => {
                // Idle connections.
                let mut idle = Vec::new();
                for _ in 0..w.rand_range(1..20) {
                    if let Ok(c) = Client::connect(broker_addr()).await {
                        idle.push(c);
                    }
                }
                sleep(Duration::from_secs(w.rand_range(1..3600))).await;
                drop(idle);
            }
        }
        c.close();
    }
}
