//! What a partition knows to be on disk: the recovery point, the producer
//! state as of it (snapshot files), and producer expiry.
//!
//! The shard's checkpoint task asks each partition for a
//! [`CheckpointPlan`] (pure), writes the files it names, makes them durable
//! (one syncfs for the whole shard, or a sync per file), records the
//! outcome with [`PartitionLog::checkpoint_done`] and then writes the
//! checkpoint file with every partition's [`PartitionLog::recovery_point`].
//! Since the files of a plan are durable before the checkpoint file names
//! its recovery point, recovery can rely on them.

use std::io;
use std::path::PathBuf;

use crate::io::file::LogFile;
use crate::log::producer_state::snapshot_file_name;

use super::PartitionLog;

/// Producer state snapshot files kept per partition (the newest ones).
pub const KEEP_SNAPSHOTS: usize = 3;

/// A sealed segment whose index files (and final size) are to be made
/// durable before the recovery point passes it.
pub struct SealedFiles {
    pub base: i64,
    pub log: Option<LogFile>,
    pub index: PathBuf,
    pub time_index: PathBuf,
}

/// The index entries, below the recovery point, of the segment holding it
/// (the active segment, whose index files are otherwise only written when
/// it is sealed): recovery walks that segment from the last of them.
pub struct PartialIndex {
    pub base: i64,
    pub index_path: PathBuf,
    pub index: Vec<u8>,
    pub time_index_path: PathBuf,
    pub time_index: Vec<u8>,
    /// Entries in `index`.
    pub entries: usize,
}

/// What one checkpoint does for one partition.
pub struct CheckpointPlan {
    pub dir: PathBuf,
    /// The recovery point once the plan's files are durable.
    pub recovery_point: i64,
    pub sealed: Vec<SealedFiles>,
    pub partial_index: Option<PartialIndex>,
    /// Producer state snapshots to write: (offset, encoded).
    pub snapshots: Vec<(i64, Vec<u8>)>,
}

impl CheckpointPlan {
    /// Write the plan's files (not synced).
    pub async fn write(&self) -> io::Result<()> {
        if let Some(p) = &self.partial_index {
            crate::io::file::write_file(&p.index_path, p.index.clone()).await?;
            crate::io::file::write_file(&p.time_index_path, p.time_index.clone()).await?;
        }
        for (offset, data) in &self.snapshots {
            crate::io::file::write_file(&self.dir.join(snapshot_file_name(*offset)), data.clone()).await?;
        }
        Ok(())
    }

    /// Sync every file of the plan and the directory (when the whole
    /// filesystem is not synced at once). Files that retention removed
    /// meanwhile are skipped.
    pub async fn sync_each(&self) -> io::Result<()> {
        let missing_ok = |r: io::Result<()>| match r {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
        for f in &self.sealed {
            if let Some(log) = &f.log {
                log.sync().await?;
            }
            missing_ok(crate::io::file::sync_file(&f.index).await)?;
            missing_ok(crate::io::file::sync_file(&f.time_index).await)?;
        }
        if let Some(p) = &self.partial_index {
            crate::io::file::sync_file(&p.index_path).await?;
            crate::io::file::sync_file(&p.time_index_path).await?;
        }
        for (offset, _) in &self.snapshots {
            crate::io::file::sync_file(&self.dir.join(snapshot_file_name(*offset))).await?;
        }
        crate::io::fs::sync_dir(&self.dir).await
    }

    /// Whether the plan writes or syncs any file.
    pub fn has_files(&self) -> bool {
        !self.sealed.is_empty() || self.partial_index.is_some() || !self.snapshots.is_empty()
    }
}

impl PartitionLog {
    /// The recovery point last made durable by a checkpoint.
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    /// Offsets below this are synced to disk.
    pub fn synced_offset(&self) -> i64 {
        self.synced_offset
    }

    /// Apply the idempotent batches below `upto` (synced) to the durable
    /// producer state.
    pub(super) fn fold_durable_producers(&mut self, upto: i64) {
        if upto <= self.durable_producers_offset {
            return;
        }
        while let Some(b) = self.producer_log.front() {
            if b.meta.last_offset >= upto {
                break;
            }
            self.durable_producers.apply(b);
            self.producer_log.pop_front();
        }
        self.durable_producers_offset = upto;
    }

    /// What the next checkpoint does for this partition; `None` when the
    /// recovery point cannot move and nothing is to be written. The new
    /// recovery point is the synced offset, but never past a segment whose
    /// seal (final size, index files) is still being written.
    pub fn plan_checkpoint(&mut self) -> Option<CheckpointPlan> {
        if self.is_failed() {
            return None;
        }
        self.fold_durable_producers(self.synced_offset);
        let n = self.segments.len();
        let older = &self.segments[..n.saturating_sub(1)];
        let mut rp = self.synced_offset;
        for s in older.iter().filter(|s| !s.seal_done) {
            rp = rp.min(s.base_offset);
        }
        let rp = rp.max(self.recovery_point);
        let sealed: Vec<SealedFiles> = older
            .iter()
            .filter(|s| s.seal_done && !s.index_synced && s.base_offset < rp)
            .map(|s| SealedFiles {
                base: s.base_offset,
                log: s.file.clone(),
                index: s.index_path(),
                time_index: s.time_index_path(),
            })
            .collect();
        let partial_index = self
            .segments
            .iter()
            .rev()
            .find(|s| s.base_offset < rp)
            .filter(|s| !s.sealed)
            .and_then(|s| {
                let rel = s.relative(rp);
                let entries = s.index.count_below(rel);
                (entries > s.index_checkpointed).then(|| PartialIndex {
                    base: s.base_offset,
                    index_path: s.index_path(),
                    index: s.index.encode_prefix(entries),
                    time_index_path: s.time_index_path(),
                    time_index: s.time_index.encode_below(rel),
                    entries,
                })
            });
        let mut snapshots = Vec::new();
        while self.pending_snapshots.front().is_some_and(|(o, _)| *o <= rp) {
            snapshots.extend(self.pending_snapshots.pop_front());
        }
        let newest = self
            .snapshot_offsets
            .last()
            .copied()
            .into_iter()
            .chain(snapshots.iter().map(|(o, _)| *o))
            .max();
        if self.durable_producers_offset == rp && newest.is_none_or(|o| o < rp) {
            snapshots.push((rp, self.durable_producers.encode_snapshot(rp)));
        }
        if rp == self.recovery_point && sealed.is_empty() && partial_index.is_none() && snapshots.is_empty() {
            return None;
        }
        Some(CheckpointPlan {
            dir: self.dir.clone(),
            recovery_point: rp,
            sealed,
            partial_index,
            snapshots,
        })
    }

    /// After a plan's files were written: when the segment of its partial
    /// index was sealed meanwhile, the whole index (path and data of both
    /// files) to write again, since the partial write may have landed
    /// after the seal's.
    pub fn index_sealed_meanwhile(&self, plan: &CheckpointPlan) -> Option<[(PathBuf, Vec<u8>); 2]> {
        let p = plan.partial_index.as_ref()?;
        let s = self.segments.iter().find(|s| s.base_offset == p.base && s.sealed)?;
        Some([
            (s.index_path(), s.index.encode()),
            (s.time_index_path(), s.time_index.encode()),
        ])
    }

    /// A plan's files are durable: its recovery point holds.
    pub fn checkpoint_done(&mut self, plan: &CheckpointPlan) {
        self.recovery_point = self.recovery_point.max(plan.recovery_point);
        for f in &plan.sealed {
            if let Some(s) = self.segments.iter_mut().find(|s| s.base_offset == f.base) {
                s.index_synced = true;
            }
        }
        if let Some(p) = &plan.partial_index {
            if let Some(s) = self.segments.iter_mut().find(|s| s.base_offset == p.base) {
                s.index_checkpointed = s.index_checkpointed.max(p.entries);
            }
        }
        for (offset, _) in &plan.snapshots {
            if let Err(i) = self.snapshot_offsets.binary_search(offset) {
                self.snapshot_offsets.insert(i, *offset);
            }
        }
    }

    /// Snapshot files no longer needed (beyond the newest
    /// [`KEEP_SNAPSHOTS`], or below the log start except the newest one):
    /// they leave the list, the caller removes them. Only call this once the
    /// checkpoint file naming the current recovery point is durable.
    pub fn take_stale_snapshots(&mut self) -> Vec<PathBuf> {
        let n = self.snapshot_offsets.len();
        let newest = self.snapshot_offsets.last().copied();
        let start = self.log_start_offset;
        let mut out = Vec::new();
        let mut i = 0;
        self.snapshot_offsets.retain(|&o| {
            let keep = i + KEEP_SNAPSHOTS >= n && (o >= start || Some(o) == newest);
            i += 1;
            if !keep {
                out.push(self.dir.join(snapshot_file_name(o)));
            }
            keep
        });
        out
    }

    /// Forget producers idle for `expiration_ms` (`producer.id.expiration.ms`).
    /// Returns how many were forgotten.
    pub fn expire_producers(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let cutoff = now_ms.saturating_sub(expiration_ms);
        let before = self.producers.len();
        self.producers.expire(cutoff);
        self.durable_producers.expire(cutoff);
        before - self.producers.len()
    }

    /// Producers with state (tests, metrics).
    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    /// Everything written is synced (the files were synced at shutdown).
    pub fn all_synced(&mut self) {
        self.synced_offset = self.synced_offset.max(self.written_offset);
    }

    /// The log is cut back to `offset` (a failed write: the batches from
    /// `offset` on are dropped and their offsets handed out again): the
    /// producer state forgets them, so a retry of a dropped batch is
    /// appended, not answered as a duplicate. `offset` must not be below the
    /// synced offset.
    pub fn rollback_producers(&mut self, offset: i64) {
        crate::invariant!(
            offset >= self.durable_producers_offset,
            "{}-{}: producer state rolled back to {} below its durable offset {}",
            self.topic,
            self.partition,
            offset,
            self.durable_producers_offset
        );
        self.producer_log.retain(|b| b.meta.first_offset < offset);
        let mut states = self.durable_producers.clone();
        for b in &self.producer_log {
            states.apply(b);
        }
        self.producers = states;
        self.pending_snapshots.retain(|(o, _)| *o <= offset);
    }
}
