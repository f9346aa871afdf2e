//! The retention task of a shard: every `log.retention.check.interval.ms`
//! it enforces delete retention (`retention.ms`, `retention.bytes`) on the
//! partitions the shard owns, and it removes the files of deleted segments
//! once their `file.delete.delay.ms` has passed.

use std::rc::Rc;
use std::time::Duration;

use crate::io::time::{now_ms, sleep};

use super::Shard;

/// Longest single sleep, so a wrong clock cannot park the task for long.
const MAX_SLEEP_MS: i64 = 3_600_000;

/// After rolling an expired active segment, check again this soon (the
/// flusher seals it within a group-commit round).
const ROLLED_RECHECK_MS: i64 = 200;

/// `log.retention.check.interval.ms` (Kafka's default: 5 minutes).
pub fn check_interval_ms(shard: &Shard) -> i64 {
    shard
        .config
        .properties
        .get("log.retention.check.interval.ms")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(300_000)
        .max(1)
}

/// Run until shutdown: the broker drops (cancels) the task, which only ever
/// waits in its sleep.
pub async fn run(shard: Rc<Shard>) {
    let interval = check_interval_ms(&shard);
    let mut next_check = now_ms().saturating_add(interval);
    loop {
        if shard.shutting_down.get() {
            return;
        }
        let now = now_ms();
        if now >= next_check {
            let rolled = check(&shard, now).await;
            // A rolled active segment can go as soon as its seal is written.
            let again = if rolled {
                interval.min(ROLLED_RECHECK_MS)
            } else {
                interval
            };
            next_check = now_ms().saturating_add(again);
        } else {
            remove_due_files(&shard, now).await;
        }
        let next_removal = shard
            .all_partitions()
            .iter()
            .filter_map(|p| p.log.borrow().next_file_removal_ms())
            .min()
            .unwrap_or(i64::MAX);
        let wait = next_check
            .min(next_removal)
            .saturating_sub(now_ms())
            .clamp(1, MAX_SLEEP_MS);
        sleep(Duration::from_millis(wait as u64)).await;
    }
}

/// One retention pass over every partition of the shard. Returns whether
/// an expired active segment was rolled (its deletion waits for the seal).
pub async fn check(shard: &Rc<Shard>, now: i64) -> bool {
    let mut rolled = false;
    for p in shard.all_partitions() {
        if p.deleted.get() || p.cleaning.get() {
            // (A partition being cleaned is checked at the next pass.)
            continue;
        }
        let outcome = p.log.borrow_mut().enforce_retention(now);
        if !outcome.files.is_empty() {
            let dir = p.log.borrow().dir.clone();
            let pending =
                crate::log::partition::rename_deleted_segments(&dir, &outcome.files, outcome.delete_due_ms).await;
            p.log.borrow_mut().schedule_removals(pending);
        }
        let due = p.log.borrow_mut().take_due_removals(now);
        crate::log::partition::remove_files(&due).await;
        if outcome.rolled {
            shard.mark_dirty(&p);
            rolled = true;
        }
        if outcome.segments > 0 {
            crate::metrics::with(|m| {
                m.retention_segments_deleted += outcome.segments as u64;
                m.retention_bytes_deleted += outcome.bytes;
            });
        }
        crate::io::yield_if_needed().await;
    }
    rolled
}

async fn remove_due_files(shard: &Rc<Shard>, now: i64) {
    for p in shard.all_partitions() {
        if !p.deleted.get() {
            let due = p.log.borrow_mut().take_due_removals(now);
            crate::log::partition::remove_files(&due).await;
        }
        crate::io::yield_if_needed().await;
    }
}
