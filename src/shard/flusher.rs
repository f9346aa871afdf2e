//! The group-commit loop of a shard.
//!
//! Appends only stage data in memory. This loop takes everything staged on
//! the shard's partitions, writes each partition's bytes with one io_uring
//! write, fdatasyncs the files concurrently, then moves the high watermarks,
//! which releases the acks waiting on them. While one round is on disk, new
//! appends accumulate for the next, so concurrent producers share syncs.
//! When a round touched many files (many partitions), one syncfs replaces
//! the per-file fdatasyncs: the filesystem then commits its journal and
//! flushes the device once instead of once per file.

use std::rc::Rc;
use std::time::Duration;

use crate::io::time::now_ms;
use crate::log::partition::{execute_rollback, execute_sync, execute_writes, FlushFailure, FlushJob};

/// From this many files to sync in one round on, sync the filesystem once.
pub const SYNCFS_FROM_FILES: usize = 8;
/// Longest sleep while data waits for a time-based (flush.ms) sync.
const TIME_SYNC_RECHECK: Duration = Duration::from_secs(1);

use super::Shard;

/// Run until shutdown has been requested and nothing is left staged.
pub async fn run(shard: Rc<Shard>) {
    loop {
        let listener = shard.flush_wanted.listen();
        let dirty = shard.take_dirty();
        if dirty.is_empty() {
            if shard.shutting_down.get() {
                return;
            }
            // Relaxed topics (flush.ms) with written but unsynced data need
            // a look when their sync falls due, even without new appends;
            // otherwise the loop sleeps until notified (no idle polling).
            match next_time_sync(&shard) {
                None => listener.await,
                Some(wait) => {
                    if crate::io::time::timeout(wait, listener).await.is_none() {
                        sync_relaxed(&shard).await;
                    }
                }
            }
            continue;
        }
        let now = now_ms();
        let jobs: Vec<_> = dirty
            .into_iter()
            .filter_map(|p| {
                let job = p.log.borrow_mut().take_flush_job(now)?;
                Some((p, job))
            })
            .collect();
        let syncing = jobs.iter().filter(|(_, j)| j.sync).count();
        let one_syncfs = syncing >= SYNCFS_FROM_FILES && shard.filesystem.is_some();
        let mut done = futures::future::join_all(jobs.into_iter().map(|(p, mut job)| async move {
            let mut result = match execute_writes(&mut job).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    tracing::error!("write to {}-{} failed: {e}", p.topic, p.index);
                    Err(e)
                }
            };
            if result.is_ok() && job.sync && !one_syncfs {
                result = sync_files(&p.topic, p.index, &job).await;
            }
            (p, job, result)
        }))
        .await;
        if one_syncfs {
            if let Some(fs) = &shard.filesystem {
                let started = crate::io::time::Instant::now();
                let synced = fs.sync_all().await;
                crate::metrics::fsync_done(started.elapsed());
                if let Err(e) = synced {
                    tracing::error!("syncfs of the data directory failed: {e}");
                    for (_, job, result) in done.iter_mut() {
                        if job.sync && result.is_ok() {
                            *result = Err(match crate::io::errno(&e) {
                                Some(code) => crate::io::os_error(code, format!("syncfs of the data directory: {e}")),
                                None => std::io::Error::new(e.kind(), format!("syncfs of the data directory: {e}")),
                            });
                        }
                    }
                }
            }
        }
        let now = now_ms();
        crate::metrics::with(|m| m.flush_rounds += 1);
        let mut rollbacks = Vec::new();
        for (p, job, result) in done {
            match result {
                Ok(()) => p.log.borrow_mut().complete_flush(job, true, now),
                Err(e) => {
                    let failure = p.log.borrow_mut().fail_flush(job, &e);
                    if let FlushFailure::RolledBack(plan) = failure {
                        crate::metrics::with(|m| m.storage_rollbacks += 1);
                        rollbacks.push((p, plan));
                    }
                }
            }
        }
        // One job per partition is in flight at a time and it is done: the
        // files can be cut back to their durable sizes.
        for (p, plan) in rollbacks {
            let result = execute_rollback(&plan).await;
            if let Err(e) = &result {
                tracing::error!("rolling back {}-{} failed: {e}", p.topic, p.index);
            }
            p.log.borrow_mut().finish_rollback(result);
            shard.space.wake.notify_all();
        }
    }
}

async fn sync_files(topic: &str, index: i32, job: &FlushJob) -> std::io::Result<()> {
    let started = crate::io::time::Instant::now();
    let synced = execute_sync(job).await;
    crate::metrics::fsync_done(started.elapsed());
    if let Err(e) = &synced {
        tracing::error!("fdatasync of {topic}-{index} failed: {e}");
    }
    synced
}

/// How long until the earliest time-based (flush.ms) sync of the shard is
/// due, at most [`TIME_SYNC_RECHECK`] (a topic's flush.ms may be lowered
/// meanwhile); `None` when no partition has data waiting for one.
fn next_time_sync(shard: &Shard) -> Option<Duration> {
    let due = shard
        .partitions
        .borrow()
        .values()
        .flatten()
        .flatten()
        .filter_map(|p| p.log.borrow().next_time_sync_ms())
        .min()?;
    let wait = u64::try_from(due.saturating_sub(now_ms())).unwrap_or(0);
    Some(Duration::from_millis(wait).min(TIME_SYNC_RECHECK))
}

/// Topics with flush.ms: sync data that has waited long enough even when no
/// new appends come to trigger a round.
async fn sync_relaxed(shard: &Rc<Shard>) {
    let now = now_ms();
    for p in shard.all_partitions() {
        let due = p.log.borrow().due_time_sync(now);
        if let Some(file) = due {
            match file.sync().await {
                Ok(()) => p.log.borrow_mut().synced(now),
                Err(e) => p.log.borrow_mut().fail_time_sync(&e),
            }
        }
    }
}

/// Final step of a clean shutdown: write index files, cut O_DIRECT padding
/// off the active segments and sync.
pub async fn close_logs(shard: &Rc<Shard>) {
    for p in shard.all_partitions() {
        let files = p.log.borrow().shutdown_info();
        for (file, size, seal) in files {
            let r: std::io::Result<()> = async {
                file.truncate(size).await?;
                file.sync().await?;
                if let Some(seal) = seal {
                    crate::io::file::write_file(&seal.index_path, seal.index).await?;
                    crate::io::file::write_file(&seal.time_index_path, seal.time_index).await?;
                }
                Ok(())
            }
            .await;
            if let Err(e) = r {
                tracing::warn!("closing {}-{}: {e}", p.topic, p.index);
            }
        }
    }
}
