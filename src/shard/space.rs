//! Free space of the data directory and the produce admission that goes
//! with it (`ringlog.storage.min.free.bytes`, like Redpanda's
//! `storage_min_free_bytes`).
//!
//! Each shard looks at the filesystem's free space now and then (statvfs on
//! the blocking pool) and counts the bytes it appended since, so it reacts
//! before the next look. Under the threshold the shard is *degraded*:
//! produce to user topics is refused with KAFKA_STORAGE_ERROR (retriable for
//! clients) before the disk is really full, so writes do not fail half way
//! in normal operation. Reads, metadata, retention, topic deletion and
//! internal writes (`__consumer_offsets`) keep working.
//!
//! The same task lets partitions that were rolled back after a write failed
//! for lack of space take writes again once space is free.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use crate::config::BrokerConfig;
use crate::io::notify::Notify;

use super::Shard;

/// Broker property: free bytes under which produce is refused; `-1` (the
/// default) means 5% of the filesystem, at most 1 GiB; `0` disables it.
pub const MIN_FREE_PROPERTY: &str = "ringlog.storage.min.free.bytes";
/// Broker property: how often the free space is read (ms).
pub const CHECK_INTERVAL_PROPERTY: &str = "ringlog.storage.space.check.interval.ms";

/// Cap of the automatic threshold.
const AUTO_MIN_FREE_CAP: u64 = 1 << 30;

pub struct SpaceState {
    /// `ringlog.storage.min.free.bytes` (-1: automatic).
    setting: i64,
    interval: Duration,
    /// Free bytes at the last look (None before the first).
    available: Cell<Option<u64>>,
    total: Cell<u64>,
    /// Bytes appended since the last look.
    written_since: Cell<u64>,
    degraded: Cell<bool>,
    /// Wakes the space task (a rollback happened, the estimate crossed the
    /// threshold).
    pub wake: Notify,
}

impl SpaceState {
    pub fn new(config: &BrokerConfig) -> Self {
        let prop = |name: &str, default: i64| {
            config
                .properties
                .get(name)
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap_or(default)
        };
        let interval_ms = prop(CHECK_INTERVAL_PROPERTY, 1000).clamp(10, 60_000) as u64;
        SpaceState {
            setting: prop(MIN_FREE_PROPERTY, -1),
            interval: Duration::from_millis(interval_ms),
            available: Cell::new(None),
            total: Cell::new(0),
            written_since: Cell::new(0),
            degraded: Cell::new(false),
            wake: Notify::new(),
        }
    }

    /// The threshold in bytes (0: none).
    pub fn min_free(&self) -> u64 {
        min_free_bytes(self.setting, self.total.get())
    }

    /// Whether produce to user topics is refused (free space under the threshold).
    pub fn degraded(&self) -> bool {
        self.degraded.get()
    }

    /// Free bytes now, as far as this shard knows.
    pub fn estimate(&self) -> Option<u64> {
        self.available.get().map(|a| a.saturating_sub(self.written_since.get()))
    }

    /// Count bytes appended (they reach the disk with the next flush).
    pub fn note_written(&self, bytes: u64) {
        self.written_since.set(self.written_since.get().saturating_add(bytes));
        self.reassess();
    }

    fn update(&self, available: u64, total: u64) {
        self.available.set(Some(available));
        self.total.set(total);
        self.written_since.set(0);
        self.reassess();
    }

    fn reassess(&self) {
        let min = self.min_free();
        let degraded = min > 0 && self.estimate().is_some_and(|free| free < min);
        if degraded != self.degraded.replace(degraded) {
            if degraded {
                tracing::warn!(
                    free = self.estimate().unwrap_or(0),
                    min_free = min,
                    "free space of the data directory is under {MIN_FREE_PROPERTY}: produce is refused \
                     (retriable) until space is freed"
                );
                self.wake.notify_all();
            } else {
                tracing::info!(
                    free = self.estimate().unwrap_or(0),
                    "free space is back: produce accepted again"
                );
            }
        }
        crate::metrics::with(|m| {
            m.storage_free_bytes = self.estimate().unwrap_or(0);
            m.storage_degraded = u64::from(degraded);
        });
    }
}

/// The threshold for a `ringlog.storage.min.free.bytes` value on a
/// filesystem of `total` bytes.
pub fn min_free_bytes(setting: i64, total: u64) -> u64 {
    match u64::try_from(setting) {
        Ok(v) => v,
        Err(_) => (total / 20).min(AUTO_MIN_FREE_CAP),
    }
}

/// Look at the free space periodically (sooner when woken) and resume the
/// partitions waiting for space.
pub async fn run(shard: Rc<Shard>) {
    loop {
        let wake = shard.space.wake.listen();
        match crate::io::fs::space(&shard.config.data_dir).await {
            Ok(s) => {
                shard.space.update(s.available, s.total);
                let mut waiting = 0u64;
                let mut offline = 0u64;
                for p in shard.all_partitions() {
                    let mut log = p.log.borrow_mut();
                    if log.resume_if_space(s.available) {
                        shard.flush_wanted.notify_all();
                    }
                    match log.health() {
                        crate::log::partition::Health::Ok => {}
                        crate::log::partition::Health::NoSpace { .. } => waiting += 1,
                        crate::log::partition::Health::Offline { .. } => offline += 1,
                    }
                }
                crate::metrics::with(|m| {
                    m.partitions_waiting_for_space = waiting;
                    m.partitions_offline = offline;
                });
            }
            Err(e) => tracing::warn!("reading the free space of {}: {e}", shard.config.data_dir.display()),
        }
        if shard.shutting_down.get() {
            return;
        }
        let interval = if shard.space.degraded() {
            shard.space.interval.min(Duration::from_millis(200))
        } else {
            shard.space.interval
        };
        let woken = futures_lite::future::or(wake, shard.until_shutdown());
        let _ = crate::io::time::timeout(interval, woken).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_setting() {
        assert_eq!(min_free_bytes(0, 1 << 40), 0);
        assert_eq!(min_free_bytes(4096, 1 << 40), 4096);
        assert_eq!(min_free_bytes(-1, 100 << 20), 5 << 20);
        assert_eq!(min_free_bytes(-1, 1 << 40), 1 << 30);
    }
}
