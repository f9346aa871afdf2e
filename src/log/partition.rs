//! A partition's log: segments, offsets, staging for group commit, the
//! recent-batch cache, and the high watermark.
//!
//! Appends are synchronous and only touch memory: the batch is rewritten with
//! its offsets and staged. The shard's group-commit loop takes the staged
//! bytes as a [`FlushJob`], writes them with io_uring, syncs, and reports
//! back; only then does the high watermark (what consumers see, and what
//! acks wait for) move. Everything here except `open`/recovery and the job
//! execution helpers is plain state manipulation.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};

use crate::config::TopicConfig;
use crate::io::file::{IoMode, LogFile, ALIGN};
use crate::io::notify::Notify;
use crate::protocol::error::{self as ec, ApiError};
use crate::record::{self, BatchHeader, ValidatedBatches, LOG_OVERHEAD};

use super::producer_state::{last_sequence, BatchMeta, ProducerBatch, ProducerEntry, ProducerStates, SeqCheck};
use super::retention::{segments_to_delete, RetentionLimits, SegmentSummary};
use super::segment::{Segment, SegmentMark, DELETED_SUFFIX};

pub mod compaction;
mod durable;
mod recovery;
pub mod swap;

pub use durable::{CheckpointPlan, PartialIndex, SealedFiles};
pub use recovery::{open, open_with, Recovery, RecoveryStats, PARTITION_METADATA};

/// Most producer state snapshots taken at segment rolls kept in memory
/// until the recovery-point checkpoint writes them.
const PENDING_SNAPSHOTS: usize = 3;

/// Why the log refused a request; [`LogError::kafka_code`] gives its code
/// in the broker's error table, and it converts into [`ApiError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("offset out of range")]
    OffsetOutOfRange,
    #[error("storage error")]
    Storage,
    /// The offset lies in a region of the log that recovery found corrupt.
    #[error("the log is corrupt at this offset (found by recovery); later offsets are readable")]
    Corrupt,
    /// A write found the disk full; the partition waits for free space.
    #[error("the disk is full: the partition takes writes again once space is free")]
    NoSpace,
    /// A write or sync failed (EIO, …): offline until the broker restarts.
    #[error("the partition is offline after a storage error")]
    Offline,
    /// Refused by the idempotent-producer checks (the Kafka code).
    #[error("producer state check failed with error {0}")]
    Producer(i16),
}

impl LogError {
    pub fn kafka_code(self) -> i16 {
        match self {
            LogError::OffsetOutOfRange => ec::OFFSET_OUT_OF_RANGE,
            LogError::Storage | LogError::NoSpace | LogError::Offline => ec::KAFKA_STORAGE_ERROR,
            LogError::Corrupt => ec::CORRUPT_MESSAGE,
            LogError::Producer(code) => code,
        }
    }
}

impl From<LogError> for ApiError {
    fn from(e: LogError) -> Self {
        ApiError::with_message(e.kafka_code(), e.to_string())
    }
}

/// Result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The broker timestamp when the topic uses LogAppendTime, else -1.
    pub log_append_time: i64,
    pub log_start_offset: i64,
    /// Rollbacks of the log before this append ([`PartitionLog::ack_state`]).
    pub rollbacks: u64,
}

/// Whether a partition's log takes writes (see [`PartitionLog::fail_flush`]).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Health {
    #[default]
    Ok,
    /// A write or sync failed for lack of space (ENOSPC, EDQUOT): everything
    /// after the last successful flush was dropped (nothing of it was
    /// acknowledged or visible). Appends are refused until the shard sees
    /// `needed` bytes free again (once the rollback's file work is done).
    NoSpace { needed: u64, rolled_back: bool },
    /// A write or sync failed otherwise (EIO, …): after a failed fsync the
    /// state of the page cache is unknown, so nothing is written to this
    /// partition again until a restart recovers it from the files.
    Offline { reason: String },
}

/// An append's fate, for the request waiting on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckState {
    /// Durable (and visible): acknowledge.
    Durable,
    /// Not yet flushed.
    Pending,
    /// Dropped by a rollback after the disk was full: never acknowledged,
    /// the client retries.
    Lost,
    /// The partition went offline before the append was durable.
    Offline,
}

/// An idempotent producer's entry before an append changed it, kept until
/// the append is durable (undone by a rollback).
struct ProducerUndo {
    offset: i64,
    producer_id: i64,
    previous: Option<ProducerEntry>,
}

/// How many rollbacks [`PartitionLog::ack_state`] remembers.
const ROLLBACK_HISTORY: usize = 64;

/// Write-failure handling state of a partition log.
#[derive(Default)]
pub struct FlushState {
    health: Health,
    /// Rollbacks so far.
    rollbacks: u64,
    /// (rollback number, offset the log was rolled back to), oldest first.
    rollback_points: VecDeque<(u64, i64)>,
    /// Producer state changes of appends not yet durable, in offset order.
    producer_undo: VecDeque<ProducerUndo>,
}

/// File work of a rollback ([`execute_rollback`]): cut segment files back
/// to their durable sizes and remove files of segments that never became
/// durable.
pub struct RollbackPlan {
    pub dir: PathBuf,
    pub truncate: Vec<(LogFile, PathBuf, u64)>,
    pub remove: Vec<PathBuf>,
    /// The log end after the rollback (the high watermark).
    pub to_offset: i64,
    /// Offsets and bytes dropped.
    pub dropped_offsets: i64,
    pub dropped_bytes: u64,
}

/// What a failed flush did to the partition.
pub enum FlushFailure {
    /// The disk was full: the log was rolled back in memory; the caller
    /// executes the plan and reports with [`PartitionLog::finish_rollback`].
    RolledBack(RollbackPlan),
    /// The partition went offline.
    Offline,
}

/// A stored batch as two pieces: its patched 61-byte header and the rest of
/// the batch exactly as the producer sent it (a zero-copy slice of the
/// request). Written to disk and sent to consumers as the two pieces.
#[derive(Clone, Debug)]
pub struct BatchBytes {
    pub head: Bytes,
    pub body: Bytes,
}

impl BatchBytes {
    pub fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Staged {
    segment_base: i64,
    data: BatchBytes,
}

/// One segment's part of a flush job.
pub struct SegmentWrite {
    pub segment_base: i64,
    pub path: PathBuf,
    pub file: Option<LogFile>,
    /// Logical file position where the chunks go.
    pub start: u64,
    pub tail: Vec<u8>,
    pub chunks: Vec<Bytes>,
    /// Set when the segment is complete after this write (a newer segment
    /// exists): truncate to this size and write its index files.
    pub seal: Option<SealInfo>,
    /// The segment's state once this write is done (its next durable point).
    pub mark: SegmentMark,
}

pub struct SealInfo {
    pub size: u64,
    pub index_path: PathBuf,
    pub index: Vec<u8>,
    pub time_index_path: PathBuf,
    pub time_index: Vec<u8>,
}

/// Work the group-commit loop does for one partition.
pub struct FlushJob {
    pub writes: Vec<SegmentWrite>,
    /// Offsets below this are in the files once the job is done.
    pub upto_offset: i64,
    pub io_mode: IoMode,
    /// fdatasync before acknowledging.
    pub sync: bool,
    /// The log's byte counter at `upto_offset` (see [`PartitionLog::hw_bytes`]).
    pub upto_bytes: u64,
}

/// Where the bytes for a fetch come from.
pub enum ReadPlan {
    /// Nothing at or past this offset yet.
    Empty,
    /// Whole batches from the in-memory cache.
    /// (Each batch as its header and body pieces.)
    Cached(Vec<Bytes>),
    /// Read `len` bytes at `position` of `file`, then keep whole batches
    /// covering offsets in [`offset`, `high_watermark`). The plan holds its
    /// own handle on the file: when retention deletes the segment meanwhile,
    /// the open file still reads the same bytes.
    File {
        file: LogFile,
        position: u64,
        len: usize,
        file_end: u64,
    },
}

struct CachedBatch {
    base: i64,
    last: i64,
    data: BatchBytes,
    /// What the entry keeps alive, counted against the cache limit: its
    /// own bytes, or the whole request frame its body is a slice of.
    charge: usize,
}

/// What caching `data`, whose body is a zero-copy slice of a request frame
/// of `frame_len` bytes, costs: a body that is less than half of its frame
/// is copied out (so a small batch never pins a large frame) and charged its
/// own size; otherwise it stays a slice, charged the whole frame.
fn cache_entry(data: &BatchBytes, frame_len: usize) -> (BatchBytes, usize) {
    let len = data.len();
    if frame_len > 2 * len {
        let owned = BatchBytes {
            head: data.head.clone(),
            body: Bytes::copy_from_slice(&data.body),
        };
        (owned, len)
    } else {
        (data.clone(), frame_len.max(len))
    }
}

pub struct PartitionLog {
    pub topic: String,
    pub partition: i32,
    pub dir: PathBuf,
    pub config: TopicConfig,
    io_mode: IoMode,
    segments: Vec<Segment>,
    log_start_offset: i64,
    /// The log start offset as the partition's checkpoint file (or, below
    /// it, the first segment's base offset) has it on disk.
    log_start_persisted: i64,
    next_offset: i64,
    written_offset: i64,
    high_watermark: i64,
    /// Bytes of batches appended since the log was opened (a monotonic
    /// counter at the log end).
    appended_bytes: u64,
    /// The same counter at the high watermark: what consumers can read.
    hw_bytes: u64,
    leader_epoch: i32,
    staged: Vec<Staged>,
    staged_bytes: usize,
    cache: VecDeque<CachedBatch>,
    cache_bytes: usize,
    cache_limit: usize,
    /// Messages written but not yet synced (flush.messages relaxation).
    unsynced_messages: i64,
    last_sync_ms: i64,
    flush: FlushState,
    producers: ProducerStates,
    /// Offsets below this are synced to disk (fdatasync done).
    synced_offset: i64,
    /// The recovery point last made durable by a checkpoint: everything below
    /// it is synced, and so are the index files of the segments below it.
    recovery_point: i64,
    /// Idempotent batches appended since `durable_producers_offset`, in
    /// offset order.
    producer_log: VecDeque<ProducerBatch>,
    /// The producer state as of `durable_producers_offset` (every batch
    /// below it applied): what a snapshot at the recovery point holds.
    durable_producers: ProducerStates,
    durable_producers_offset: i64,
    /// Producer state snapshots taken at segment rolls (offset, encoded),
    /// written by the next checkpoint that covers them.
    pending_snapshots: VecDeque<(i64, Vec<u8>)>,
    /// Offsets of the snapshot files in the directory, ascending.
    snapshot_offsets: Vec<i64>,
    /// What recovery did when the log was opened.
    recovery_stats: RecoveryStats,
    /// Files of segments deleted by retention (renamed to `*.deleted`) and
    /// when to remove them (`file.delete.delay.ms`).
    pending_removal: Vec<(i64, PathBuf)>,
    /// Woken whenever the high watermark moves or the log fails.
    pub changed: Notify,
}

/// What one retention pass did to a partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Segments removed from the log.
    pub segments: usize,
    /// Their bytes.
    pub bytes: u64,
    /// The log start offset after the pass.
    pub log_start_offset: i64,
    /// Every record of the active segment had expired too, so it was rolled
    /// (Kafka does the same): once the flusher has sealed it, the next pass
    /// deletes it. Mark the partition dirty so that seal is written.
    pub rolled: bool,
    /// The files of the removed segments (index files first), oldest
    /// segment first: to be renamed to `*.deleted`
    /// ([`rename_deleted_segments`]).
    pub files: Vec<[PathBuf; 3]>,
    /// When those files may be removed (`file.delete.delay.ms`).
    pub delete_due_ms: i64,
}

impl PartitionLog {
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }
    pub fn log_end_offset(&self) -> i64 {
        self.next_offset
    }
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }
    /// Bytes of record batches appended since the log was opened, counted up
    /// to the high watermark. Monotonic: the difference between two readings
    /// is exactly the bytes that became readable in between, so a parked
    /// fetch can tell whether enough arrived without reading any data.
    pub fn hw_bytes(&self) -> u64 {
        self.hw_bytes
    }
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }
    /// Offline after a storage error (until a restart).
    pub fn is_failed(&self) -> bool {
        matches!(self.flush.health, Health::Offline { .. })
    }
    pub fn health(&self) -> &Health {
        &self.flush.health
    }
    /// Rollbacks after a full disk so far.
    pub fn rollbacks(&self) -> u64 {
        self.flush.rollbacks
    }
    pub fn has_staged(&self) -> bool {
        !self.staged.is_empty()
    }
    pub fn staged_bytes(&self) -> usize {
        self.staged_bytes
    }
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }
    /// The IO mode of the log's files.
    pub fn io_mode(&self) -> IoMode {
        self.io_mode
    }

    /// The last offset of each producer's last batch (the cleaner keeps
    /// those batches, emptied if need be).
    pub fn producer_last_offsets(&self) -> crate::io::rand::HashMap<i64, i64> {
        self.producers.last_offsets()
    }

    pub fn set_cache_limit(&mut self, bytes: usize) {
        self.cache_limit = bytes;
        self.trim_cache();
    }

    fn active(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    /// Check every batch of a payload before anything is staged: an append
    /// takes the whole payload or nothing (a refused batch after accepted
    /// ones would leave those appended but never acknowledged).
    fn precheck(&self, payload: &Bytes, batches: &ValidatedBatches, now_ms: i64) -> Result<(), LogError> {
        let ids = batches
            .batches
            .iter()
            .filter(|b| b.producer_id >= 0)
            .map(|b| b.producer_id);
        let mut scratch = self.producers.subset(ids);
        let mut next = self.next_offset;
        for span in &batches.batches {
            if span.len < record::BATCH_HEADER_LEN || span.start + span.len > payload.len() {
                return Err(LogError::Storage);
            }
            let last = next + i64::from(span.last_offset_delta);
            if span.producer_id >= 0 {
                let last_seq = last_sequence(span.base_sequence, span.last_offset_delta);
                match scratch.check(span.producer_id, span.producer_epoch, span.base_sequence, last_seq) {
                    SeqCheck::Append => scratch.record(
                        span.producer_id,
                        span.producer_epoch,
                        BatchMeta {
                            first_seq: span.base_sequence,
                            last_seq,
                            first_offset: next,
                            last_offset: last,
                        },
                        now_ms,
                    ),
                    SeqCheck::Duplicate { .. } => continue,
                    SeqCheck::Reject(code) => return Err(LogError::Producer(code)),
                }
            }
            next = last + 1;
        }
        Ok(())
    }

    /// Append a validated produce payload. The batches get consecutive
    /// offsets starting at the log end; nothing is visible to consumers or
    /// acknowledged until a flush job completes. The payload is taken whole
    /// or refused whole.
    pub fn append(&mut self, payload: &Bytes, batches: &ValidatedBatches, now_ms: i64) -> Result<AppendInfo, LogError> {
        self.append_from_frame(payload, batches, now_ms, payload.len())
    }

    /// [`PartitionLog::append`] of a payload that is a zero-copy slice of a
    /// request frame of `frame_len` bytes: the cache charges (or copies) its
    /// batches for what they keep alive.
    pub fn append_from_frame(
        &mut self,
        payload: &Bytes,
        batches: &ValidatedBatches,
        now_ms: i64,
        frame_len: usize,
    ) -> Result<AppendInfo, LogError> {
        match self.flush.health {
            Health::Ok => {}
            Health::NoSpace { .. } => return Err(LogError::NoSpace),
            Health::Offline { .. } => return Err(LogError::Offline),
        }
        self.precheck(payload, batches, now_ms)?;
        let log_append_time = if self.config.log_append_time {
            Some(now_ms)
        } else {
            None
        };
        let mut first: Option<(i64, i64)> = None;
        let start_offset = self.next_offset;
        self.fold_durable_producers(self.synced_offset);
        for span in &batches.batches {
            let base = self.next_offset;
            let last = base + i64::from(span.last_offset_delta);
            let mut idempotent = None;
            if span.producer_id >= 0 {
                let last_seq = last_sequence(span.base_sequence, span.last_offset_delta);
                match self
                    .producers
                    .check(span.producer_id, span.producer_epoch, span.base_sequence, last_seq)
                {
                    SeqCheck::Append => {
                        self.flush.producer_undo.push_back(ProducerUndo {
                            offset: base,
                            producer_id: span.producer_id,
                            previous: self.producers.get(span.producer_id).cloned(),
                        });
                        idempotent = Some(ProducerBatch {
                            producer_id: span.producer_id,
                            epoch: span.producer_epoch,
                            meta: BatchMeta {
                                first_seq: span.base_sequence,
                                last_seq,
                                first_offset: base,
                                last_offset: last,
                            },
                            timestamp: now_ms,
                        })
                    }
                    SeqCheck::Duplicate {
                        first_offset,
                        last_offset,
                    } => {
                        first.get_or_insert((first_offset, last_offset));
                        continue;
                    }
                    SeqCheck::Reject(code) => {
                        invariant!(
                            false,
                            "{}-{}: batch at {base} refused with {code} after the payload's check passed",
                            self.topic,
                            self.partition
                        );
                        return Err(LogError::Producer(code));
                    }
                }
            }
            first.get_or_insert((base, last));
            let split = span.start + record::BATCH_HEADER_LEN;
            let body = payload.slice(split..span.start + span.len);
            let mut head = BytesMut::from(&payload[span.start..split]);
            if log_append_time.is_none() {
                // The records' largest timestamp, whatever the producer's
                // header says (as Kafka): segment timestamps drive retention.
                record::set_max_timestamp(&mut head, &body, span.max_timestamp);
            }
            record::rewrite_header(&mut head, &body, base, self.leader_epoch, log_append_time);
            let data = BatchBytes {
                head: head.freeze(),
                body,
            };
            let len = data.len() as u64;
            let max_ts = log_append_time.unwrap_or(span.max_timestamp);
            let (segment_bytes, segment_ms) = (self.config.segment_bytes, self.config.segment_ms);
            let must_roll = {
                let seg = self.active();
                !seg.is_empty()
                    && (seg.size + len > segment_bytes
                        || now_ms - seg.created_ms >= segment_ms
                        || last - seg.base_offset > i64::from(u32::MAX) - 1)
            };
            if must_roll {
                // The producer state as of the new segment's base (this
                // batch not yet recorded), for a snapshot file (Kafka's
                // `<offset>.snapshot` at roll).
                if self.pending_snapshots.len() == PENDING_SNAPSHOTS {
                    self.pending_snapshots.pop_front();
                }
                self.pending_snapshots
                    .push_back((base, self.producers.encode_snapshot(base)));
                let seg = Segment::new(&self.dir, base, now_ms);
                self.segments.push(seg);
                self.check_segments();
            }
            if let Some(b) = idempotent {
                self.producers.apply(&b);
                self.producer_log.push_back(b);
            }
            let interval = self.config.index_interval_bytes;
            let seg = self.active();
            if seg.durable.is_none() {
                // First append since the last durable point: remember it.
                seg.durable = Some(seg.mark());
            }
            seg.note_append(base, last, max_ts, len, interval);
            seg.modified_ms = now_ms;
            let segment_base = seg.base_offset;
            self.staged.push(Staged {
                segment_base,
                data: data.clone(),
            });
            self.staged_bytes += data.len();
            let (cached, charge) = cache_entry(&data, frame_len);
            self.cache.push_back(CachedBatch {
                base,
                last,
                data: cached,
                charge,
            });
            self.cache_bytes += charge;
            self.appended_bytes += len;
            self.next_offset = last + 1;
        }
        self.trim_cache();
        let (base_offset, first_last) = first.unwrap_or((self.next_offset, self.next_offset - 1));
        // Wait for everything written by this call, or for the original of
        // a duplicate.
        let last_offset = if self.next_offset > start_offset {
            self.next_offset - 1
        } else {
            first_last
        };
        Ok(AppendInfo {
            base_offset,
            last_offset,
            log_append_time: log_append_time.unwrap_or(-1),
            log_start_offset: self.log_start_offset,
            rollbacks: self.flush.rollbacks,
        })
    }

    fn trim_cache(&mut self) {
        while self.cache_bytes > self.cache_limit {
            match self.cache.pop_front() {
                Some(b) => self.cache_bytes -= b.charge,
                None => break,
            }
        }
    }

    /// Take everything staged as one job for the group-commit loop.
    pub fn take_flush_job(&mut self, now_ms: i64) -> Option<FlushJob> {
        // A roll without new data (retention rolling an expired active
        // segment) still needs its seal written.
        let unsealed = || self.segments.iter().rev().skip(1).any(|s| !s.sealed);
        if self.flush.health != Health::Ok || (self.staged.is_empty() && !unsealed()) {
            return None;
        }
        let staged = std::mem::take(&mut self.staged);
        let messages = self.staged_bytes as i64; // approximation refined below
        self.staged_bytes = 0;
        let mut writes: Vec<SegmentWrite> = Vec::new();
        for s in staged {
            match writes.last_mut() {
                Some(w) if w.segment_base == s.segment_base => {
                    w.chunks.push(s.data.head);
                    w.chunks.push(s.data.body);
                }
                _ => {
                    let seg = self.segments.iter().find(|g| g.base_offset == s.segment_base)?;
                    writes.push(SegmentWrite {
                        segment_base: seg.base_offset,
                        path: seg.log_path(),
                        file: seg.file.clone(),
                        start: seg.written,
                        tail: seg.tail.clone(),
                        chunks: vec![s.data.head, s.data.body],
                        seal: None,
                        mark: seg.mark(),
                    });
                }
            }
        }
        // Every segment behind the active one gets sealed once, in the
        // first job after the roll (with or without new bytes of its own).
        let active_base = self.segments.last().map(|s| s.base_offset).unwrap_or(0);
        for seg in self
            .segments
            .iter_mut()
            .filter(|g| !g.sealed && g.base_offset != active_base)
        {
            seg.sealed = true;
            let seal = SealInfo {
                size: seg.size,
                index_path: seg.index_path(),
                index: seg.index.encode(),
                time_index_path: seg.time_index_path(),
                time_index: seg.time_index.encode(),
            };
            match writes.iter_mut().find(|w| w.segment_base == seg.base_offset) {
                Some(w) => w.seal = Some(seal),
                None => writes.push(SegmentWrite {
                    segment_base: seg.base_offset,
                    path: seg.log_path(),
                    file: seg.file.clone(),
                    start: seg.written,
                    tail: Vec::new(),
                    chunks: Vec::new(),
                    seal: Some(seal),
                    mark: seg.mark(),
                }),
            }
        }
        // The new active segment of a roll without data gets its (empty) file
        // now: its name keeps the log end offset across a restart even when
        // retention deletes every older segment.
        if let Some(active) = self.segments.last() {
            if active.file.is_none() && !writes.iter().any(|w| w.segment_base == active.base_offset) {
                writes.push(SegmentWrite {
                    segment_base: active.base_offset,
                    path: active.log_path(),
                    file: None,
                    start: 0,
                    tail: Vec::new(),
                    chunks: Vec::new(),
                    seal: None,
                    mark: active.mark(),
                });
            }
        }
        // Seal older segments before writing into newer ones.
        writes.sort_by_key(|w| w.segment_base);
        let _ = messages;
        let sync = self.config.sync_on_ack()
            || self.unsynced_messages + 1 >= self.config.flush_messages
            || now_ms - self.last_sync_ms >= self.config.flush_ms;
        Some(FlushJob {
            writes,
            upto_offset: self.next_offset,
            io_mode: self.io_mode,
            sync,
            upto_bytes: self.appended_bytes,
        })
    }

    /// Record the outcome of a flush job. On success the written data becomes
    /// visible (and acknowledged) if the job synced or the topic relaxed
    /// syncing; on failure the partition goes offline (see
    /// [`PartitionLog::fail_flush`] for failures that can be told apart).
    pub fn complete_flush(&mut self, job: FlushJob, ok: bool, now_ms: i64) {
        if !ok {
            self.go_offline("a flush failed".to_string());
            return;
        }
        for w in job.writes {
            let Some(seg) = self.segments.iter_mut().find(|g| g.base_offset == w.segment_base) else {
                continue;
            };
            if seg.file.is_none() {
                seg.file = w.file.clone();
            }
            let added: u64 = w.chunks.iter().map(|c| c.len() as u64).sum();
            seg.written = w.start + added;
            if job.io_mode == IoMode::Direct {
                seg.tail = last_bytes(&w.tail, &w.chunks, (seg.written % ALIGN) as usize);
            }
            if w.seal.is_some() {
                seg.tail = Vec::new();
                seg.seal_done = true;
            }
            seg.durable = Some(w.mark);
        }
        invariant!(
            job.upto_offset >= self.written_offset && job.upto_offset <= self.next_offset,
            "{}-{}: flush job up to {} completes after {} was written (log end {})",
            self.topic,
            self.partition,
            job.upto_offset,
            self.written_offset,
            self.next_offset
        );
        let newly = job.upto_offset - self.written_offset;
        self.written_offset = job.upto_offset;
        while let Some(u) = self.flush.producer_undo.front() {
            if u.offset >= self.written_offset {
                break;
            }
            self.flush.producer_undo.pop_front();
        }
        if job.sync {
            self.unsynced_messages = 0;
            self.last_sync_ms = now_ms;
            self.synced_offset = self.synced_offset.max(job.upto_offset);
        } else {
            self.unsynced_messages += newly.max(0);
        }
        if self.written_offset > self.high_watermark {
            invariant!(
                job.upto_bytes >= self.hw_bytes && job.upto_bytes <= self.appended_bytes,
                "{}-{}: byte counter at the new high watermark {} is {} (was {}, log end {})",
                self.topic,
                self.partition,
                self.written_offset,
                job.upto_bytes,
                self.hw_bytes,
                self.appended_bytes
            );
            self.high_watermark = self.written_offset;
            self.hw_bytes = job.upto_bytes;
            self.changed.notify_all();
        }
        invariant!(
            self.high_watermark <= self.next_offset,
            "{}-{}: high watermark {} beyond the log end {}",
            self.topic,
            self.partition,
            self.high_watermark,
            self.next_offset
        );
    }

    /// Take the partition offline: no more writes, reads or acks until a
    /// restart. Staged data is dropped (never acknowledged).
    pub fn go_offline(&mut self, reason: String) {
        if self.is_failed() {
            return;
        }
        tracing::error!(
            topic = %self.topic,
            partition = self.partition,
            dir = %self.dir.display(),
            "partition {}-{} is offline until the broker restarts: {reason}",
            self.topic,
            self.partition
        );
        self.flush.health = Health::Offline { reason };
        self.staged.clear();
        self.staged_bytes = 0;
        self.changed.notify_all();
    }

    /// A flush job failed with `error`. Without space (ENOSPC, EDQUOT) the
    /// log is rolled back to its last durable state and waits for space;
    /// any other error takes the partition offline. The caller has no other
    /// flush job of this partition in flight (the group-commit loop runs one
    /// job per partition at a time).
    pub fn fail_flush(&mut self, job: FlushJob, error: &std::io::Error) -> FlushFailure {
        if !crate::io::is_no_space(error) {
            self.go_offline(format!("write or sync failed: {error}"));
            return FlushFailure::Offline;
        }
        let needed: u64 = job
            .writes
            .iter()
            .flat_map(|w| w.chunks.iter())
            .map(|c| c.len() as u64)
            .sum();
        self.flush.health = Health::NoSpace {
            needed: needed.max(1),
            rolled_back: false,
        };
        let plan = self.roll_back_to_durable(&job);
        self.flush.rollbacks += 1;
        self.flush
            .rollback_points
            .push_back((self.flush.rollbacks, plan.to_offset));
        while self.flush.rollback_points.len() > ROLLBACK_HISTORY {
            self.flush.rollback_points.pop_front();
        }
        tracing::warn!(
            topic = %self.topic,
            partition = self.partition,
            to_offset = plan.to_offset,
            dropped_offsets = plan.dropped_offsets,
            dropped_bytes = plan.dropped_bytes,
            "disk full ({error}): {}-{} rolled back to its last durable state (nothing dropped was acknowledged); \
             writes resume once space is free",
            self.topic,
            self.partition
        );
        self.changed.notify_all();
        FlushFailure::RolledBack(plan)
    }

    /// Drop everything after the last successful flush (pure): staged data,
    /// cached batches, producer state of the dropped batches and segments
    /// that never became durable; segments go back to their durable state.
    /// Returns the file work that goes with it.
    fn roll_back_to_durable(&mut self, job: &FlushJob) -> RollbackPlan {
        let to = self.high_watermark;
        invariant!(
            self.written_offset == to,
            "{}-{}: rollback with written offset {} but high watermark {}",
            self.topic,
            self.partition,
            self.written_offset,
            to
        );
        let mut plan = RollbackPlan {
            dir: self.dir.clone(),
            truncate: Vec::new(),
            remove: Vec::new(),
            to_offset: to,
            dropped_offsets: self.next_offset - to,
            dropped_bytes: 0,
        };
        self.staged.clear();
        self.staged_bytes = 0;
        while let Some(b) = self.cache.back() {
            if b.base < to {
                break;
            }
            self.cache_bytes -= b.charge;
            self.cache.pop_back();
        }
        // The byte counter goes back with the log end (what fetches count as
        // progress).
        self.appended_bytes = self.hw_bytes;
        while let Some(u) = self.flush.producer_undo.back() {
            if u.offset < to {
                break;
            }
            if let Some(u) = self.flush.producer_undo.pop_back() {
                self.producers.restore(u.producer_id, u.previous);
            }
        }
        // The recovery-point bookkeeping forgets the dropped batches too.
        self.rollback_producers(to);
        // Segments whose file no flush created are not durable at all
        // (rolled after the durable point): they go.
        while self.segments.len() > 1 && self.segments.last().is_some_and(|s| s.file.is_none()) {
            if let Some(seg) = self.segments.pop() {
                invariant!(
                    seg.base_offset >= to,
                    "{}-{}: segment {} below the durable point {to} has no file",
                    self.topic,
                    self.partition,
                    seg.base_offset
                );
                plan.dropped_bytes += seg.size;
                plan.remove.extend(seg.file_paths());
            }
        }
        let last = self.segments.len().saturating_sub(1);
        for (i, seg) in self.segments.iter_mut().enumerate() {
            let mark = seg.durable.take().unwrap_or_else(|| seg.mark());
            plan.dropped_bytes += seg.size.saturating_sub(mark.size);
            seg.restore(mark);
            seg.index_checkpointed = seg.index_checkpointed.min(seg.index.len());
            if seg.file.is_none() {
                // The only segment, never flushed: back to empty.
                plan.remove.push(seg.log_path());
                seg.written = 0;
                seg.tail.clear();
            }
            invariant!(
                seg.size == seg.written,
                "{}-{}: segment {} rolled back to {} bytes but {} are durable",
                self.topic,
                self.partition,
                seg.base_offset,
                seg.size,
                seg.written
            );
            if i == last || !seg.seal_done {
                // Its seal was part of the failed job (or it is active again).
                seg.sealed = false;
                seg.seal_done = false;
            }
            if let Some(file) = &seg.file {
                if job.writes.iter().any(|w| w.segment_base == seg.base_offset) {
                    plan.truncate.push((file.clone(), seg.log_path(), seg.written));
                }
            }
        }
        self.next_offset = to;
        self.check_segments();
        plan
    }

    /// Record how the rollback's file work went: on success the partition
    /// waits for space ([`PartitionLog::resume_if_space`]); a failure takes
    /// it offline.
    pub fn finish_rollback(&mut self, result: std::io::Result<()>) {
        match (result, &self.flush.health) {
            (Ok(()), Health::NoSpace { needed, .. }) => {
                self.flush.health = Health::NoSpace {
                    needed: *needed,
                    rolled_back: true,
                }
            }
            (Ok(()), _) => {}
            (Err(e), _) => self.go_offline(format!("rolling back after a full disk failed: {e}")),
        }
    }

    /// Resume writes after a rollback once `available` bytes are free on the
    /// data directory's filesystem (more than the failed write needed).
    /// Returns whether it resumed.
    pub fn resume_if_space(&mut self, available: u64) -> bool {
        match self.flush.health {
            Health::NoSpace {
                needed,
                rolled_back: true,
            } if available > needed => {
                tracing::info!(
                    topic = %self.topic,
                    partition = self.partition,
                    available,
                    "space is free again: {}-{} takes writes",
                    self.topic,
                    self.partition
                );
                self.flush.health = Health::Ok;
                true
            }
            _ => false,
        }
    }

    /// Where an append made at rollback count `rollbacks` whose last offset
    /// is `target - 1` stands.
    pub fn ack_state(&self, rollbacks: u64, target: i64) -> AckState {
        if rollbacks != self.flush.rollbacks {
            // Rollback points only grow (each is the high watermark then):
            // the first one after the append decides whether it was dropped.
            let first = self.flush.rollback_points.iter().find(|(n, _)| *n == rollbacks + 1);
            match first {
                Some(&(_, point)) if target <= point => {}
                _ => return AckState::Lost,
            }
        }
        if self.high_watermark >= target {
            AckState::Durable
        } else if self.is_failed() {
            AckState::Offline
        } else if self.next_offset < target {
            // Cannot happen without a rollback; never acknowledge it.
            AckState::Lost
        } else {
            AckState::Pending
        }
    }

    /// Segments are ordered and contiguous: each starts where the previous
    /// one's offsets end (or later, after a gap left by corruption), and the
    /// log end is the last one's end.
    pub fn check_segments(&self) {
        for pair in self.segments.windows(2) {
            invariant!(
                pair[0].base_offset < pair[1].base_offset && pair[0].next_offset <= pair[1].base_offset,
                "{}-{}: segment {} (up to {}) overlaps segment {}",
                self.topic,
                self.partition,
                pair[0].base_offset,
                pair[0].next_offset,
                pair[1].base_offset
            );
        }
        if let Some(last) = self.segments.last() {
            invariant!(
                last.next_offset == self.next_offset || last.is_empty(),
                "{}-{}: the last segment ends at {} but the log end is {}",
                self.topic,
                self.partition,
                last.next_offset,
                self.next_offset
            );
        }
        invariant!(
            self.log_start_offset <= self.high_watermark,
            "{}-{}: log start {} past the high watermark {}",
            self.topic,
            self.partition,
            self.log_start_offset,
            self.high_watermark
        );
    }

    /// For topics that relaxed syncing (flush.ms): the file to fdatasync when
    /// written data has waited longer than flush.ms without new appends.
    pub fn due_time_sync(&self, now_ms: i64) -> Option<LogFile> {
        if self.unsynced_messages == 0
            || self.flush.health != Health::Ok
            || now_ms - self.last_sync_ms < self.config.flush_ms
        {
            return None;
        }
        self.segments.last().and_then(|s| s.file.clone())
    }

    /// When [`PartitionLog::due_time_sync`] will next have something to do:
    /// `None` while nothing written waits for a time-based sync. Same
    /// conditions as `due_time_sync` (a file to sync included), so the
    /// flusher never waits for a sync that would then not happen (a zero
    /// wait repeated: a spinning shard).
    pub fn next_time_sync_ms(&self) -> Option<i64> {
        let has_file = self.segments.last().is_some_and(|s| s.file.is_some());
        (self.unsynced_messages > 0 && self.flush.health == Health::Ok && has_file)
            .then(|| self.last_sync_ms.saturating_add(self.config.flush_ms))
    }

    /// A time-based sync (see [`PartitionLog::due_time_sync`]) failed. The
    /// data it covered was already acknowledged (the topic relaxed syncing)
    /// and the kernel may have dropped the dirty pages after the error, so
    /// nothing can be rolled back or retried safely: like Kafka's offline log
    /// directory, the partition goes offline until a restart, whose recovery
    /// scans everything past the recovery point (which this sync never
    /// advanced).
    pub fn fail_time_sync(&mut self, error: &std::io::Error) {
        self.go_offline(format!("time-based fdatasync (flush.ms) failed: {error}"));
    }

    /// Record a completed time-based sync.
    pub fn synced(&mut self, now_ms: i64) {
        self.unsynced_messages = 0;
        self.last_sync_ms = now_ms;
        // No flush job runs between `due_time_sync` and this call (both in
        // the flusher loop): everything written is synced now.
        self.synced_offset = self.synced_offset.max(self.written_offset);
    }

    /// Plan a read of whole batches starting with the one containing
    /// `offset`, up to about `max_bytes` (the first batch always whole).
    pub fn plan_read(&self, offset: i64, max_bytes: usize) -> Result<ReadPlan, LogError> {
        if self.is_failed() {
            return Err(LogError::Offline);
        }
        if offset < self.log_start_offset || offset > self.high_watermark {
            return Err(LogError::OffsetOutOfRange);
        }
        if offset == self.high_watermark {
            return Ok(ReadPlan::Empty);
        }
        if let Some(front) = self.cache.front() {
            if front.base <= offset {
                let i = self.cache.partition_point(|b| b.last < offset);
                let mut out = Vec::new();
                let mut total = 0usize;
                for b in self.cache.iter().skip(i) {
                    if b.base >= self.high_watermark {
                        break;
                    }
                    if !out.is_empty() && total + b.data.len() > max_bytes {
                        break;
                    }
                    total += b.data.len();
                    out.push(b.data.head.clone());
                    out.push(b.data.body.clone());
                }
                return Ok(ReadPlan::Cached(out));
            }
        }
        let i = self.segments.partition_point(|s| s.base_offset <= offset);
        let Some(seg) = i.checked_sub(1).and_then(|i| self.segments.get(i)) else {
            return Err(LogError::OffsetOutOfRange);
        };
        // Past the segment's last offset (a gap that compaction left at its
        // end, or an empty segment): the next segment holding a later
        // offset.
        let seg = if offset >= seg.next_offset {
            match self.segments[i..]
                .iter()
                .find(|s| s.next_offset > offset && !s.is_empty())
            {
                Some(s) => s,
                None => return Ok(ReadPlan::Empty),
            }
        } else {
            seg
        };
        if seg.corrupt_at(offset).is_some() {
            return Err(LogError::Corrupt);
        }
        let Some(file) = seg.file.clone() else {
            return Ok(ReadPlan::Empty);
        };
        let position = u64::from(seg.index.lookup(seg.relative(offset)));
        let file_end = seg.readable_end(position);
        if position >= file_end {
            return Ok(ReadPlan::Empty);
        }
        let want = max_bytes.max(LOG_OVERHEAD + record::BATCH_HEADER_LEN) as u64 + self.config.index_interval_bytes;
        let len = want.min(file_end - position) as usize;
        Ok(ReadPlan::File {
            file,
            position,
            len,
            file_end,
        })
    }

    /// DeleteRecords: move the log start offset to `offset` (-1: the high
    /// watermark). Records below it can no longer be read, ListOffsets
    /// earliest returns it, producers whose last batch lies below it are
    /// forgotten, and whole segments below it go with the next retention
    /// pass. Returns the new log start (the low watermark), or a Kafka
    /// error code: OFFSET_OUT_OF_RANGE past the high watermark,
    /// POLICY_VIOLATION when `cleanup.policy` has no `delete` (as Kafka),
    /// KAFKA_STORAGE_ERROR when the log is offline. Moving it backwards is
    /// a no-op. The caller makes the new log start durable first
    /// ([`PartitionLog::delete_records_target`],
    /// [`PartitionLog::log_start_checkpoint`]): once clients can see it,
    /// a crash must not take it back.
    pub fn delete_records(&mut self, offset: i64) -> Result<i64, i16> {
        let target = self.delete_records_target(offset)?;
        if target > self.log_start_offset {
            self.log_start_offset = target;
            self.drop_cache_below_start();
            let pruned = self.producers.prune_below(target);
            self.durable_producers.prune_below(target);
            tracing::info!(
                topic = %self.topic,
                partition = self.partition,
                log_start_offset = target,
                producers_forgotten = pruned,
                "records deleted"
            );
        }
        Ok(self.log_start_offset)
    }

    /// The log start offset a DeleteRecords up to `offset` would set (it
    /// does not move it), or its error code (see
    /// [`PartitionLog::delete_records`]).
    pub fn delete_records_target(&self, offset: i64) -> Result<i64, i16> {
        if self.is_failed() {
            return Err(ec::KAFKA_STORAGE_ERROR);
        }
        if !self.config.delete {
            return Err(ec::POLICY_VIOLATION);
        }
        let target = if offset == -1 { self.high_watermark } else { offset };
        if target < 0 || target > self.high_watermark {
            return Err(ec::OFFSET_OUT_OF_RANGE);
        }
        Ok(target.max(self.log_start_offset))
    }

    /// When `offset` is past the log start offset on disk: the checkpoint
    /// file holding it as the log start, to write atomically (path,
    /// contents), then to report with [`PartitionLog::log_start_persisted`].
    pub fn log_start_checkpoint(&self, offset: i64) -> Option<(PathBuf, Vec<u8>)> {
        (offset > self.log_start_persisted).then(|| {
            (
                self.dir.join(crate::log::checkpoint::LOG_START_FILE),
                crate::log::checkpoint::encode_log_start(&self.topic, self.partition, offset),
            )
        })
    }

    /// When the log start offset moved past what is on disk: the checkpoint
    /// file to write atomically (path, contents) and the offset it holds,
    /// to be reported with [`PartitionLog::log_start_persisted`].
    pub fn log_start_to_persist(&self) -> Option<(PathBuf, Vec<u8>, i64)> {
        self.log_start_checkpoint(self.log_start_offset)
            .map(|(path, data)| (path, data, self.log_start_offset))
    }

    /// The log start offset checkpoint holding `offset` is on disk.
    pub fn log_start_persisted(&mut self, offset: i64) {
        self.log_start_persisted = self.log_start_persisted.max(offset);
    }

    fn drop_cache_below_start(&mut self) {
        while let Some(b) = self.cache.front() {
            if b.last >= self.log_start_offset {
                break;
            }
            self.cache_bytes -= b.charge;
            self.cache.pop_front();
        }
    }

    /// Offsets for ListOffsets: earliest, latest (high watermark).
    pub fn earliest(&self) -> i64 {
        self.log_start_offset
    }

    /// Enforce delete retention (`retention.ms`, `retention.bytes`; see
    /// [`super::retention`]) at `now_ms`: the oldest segments that breach
    /// them leave the log, the log start offset moves to the first remaining
    /// segment, and their files are renamed to `*.deleted` (removed by
    /// [`PartitionLog::remove_deleted_files`] after `file.delete.delay.ms`).
    /// Reads already planned on a deleted segment keep their open file.
    /// Topics without `delete` in `cleanup.policy` are left alone.
    pub fn enforce_retention(&mut self, now_ms: i64) -> RetentionOutcome {
        let mut out = RetentionOutcome {
            log_start_offset: self.log_start_offset,
            ..Default::default()
        };
        if self.is_failed() {
            return out;
        }
        // Segments wholly below the log start (DeleteRecords) go whatever
        // the cleanup policy, as in Kafka.
        let below_start = self
            .segments
            .windows(2)
            .take_while(|w| w[1].base_offset <= self.log_start_offset && w[0].sealed && w[0].seal_done)
            .count();
        let limits = if self.config.delete {
            RetentionLimits {
                retention_ms: self.config.retention_ms,
                retention_bytes: self.config.retention_bytes,
            }
        } else {
            RetentionLimits {
                retention_ms: -1,
                retention_bytes: -1,
            }
        };
        let summaries: Vec<SegmentSummary> = self
            .segments
            .iter()
            .map(|s| SegmentSummary {
                base_offset: s.base_offset,
                size: s.size,
                largest_timestamp: if s.max_timestamp >= 0 || limits.retention_ms < 0 {
                    s.max_timestamp
                } else {
                    // Kafka's fallback for segments without timestamps.
                    s.modified_ms
                },
                complete: s.sealed && s.seal_done,
            })
            .collect();
        let decision = segments_to_delete(&summaries, self.high_watermark, limits, now_ms);
        if let Some((base_offset, timestamp)) = decision.future_timestamp {
            // As Kafka 4: the segment stays; say why time retention stopped.
            tracing::warn!(
                topic = %self.topic,
                partition = self.partition,
                base_offset,
                timestamp,
                now_ms,
                "segment contains future timestamp(s), making it and later segments ineligible for deletion by retention.ms"
            );
        }
        let n = decision
            .count()
            .max(below_start)
            .min(self.segments.len().saturating_sub(1));
        if self.config.delete && n + 1 == self.segments.len() && self.active_expired(limits, now_ms) {
            // Kafka rolls when everything, active segment included, is
            // expired; otherwise an idle topic would keep its last segment
            // (and `retention.ms` could never empty a topic).
            self.segments.push(Segment::new(&self.dir, self.next_offset, now_ms));
            out.rolled = true;
            tracing::info!(
                topic = %self.topic,
                partition = self.partition,
                base_offset = self.next_offset,
                "retention rolled the expired active segment"
            );
        }
        if n == 0 {
            return out;
        }
        let removed: Vec<Segment> = self.segments.drain(..n).collect();
        let first = self.segments.first().map_or(self.next_offset, |s| s.base_offset);
        self.log_start_offset = self.log_start_offset.max(first);
        self.drop_cache_below_start();
        out.segments = n;
        out.bytes = removed.iter().map(|s| s.size).sum();
        out.log_start_offset = self.log_start_offset;
        tracing::info!(
            topic = %self.topic,
            partition = self.partition,
            segments = n,
            by_time = decision.by_time,
            by_size = decision.by_size,
            bytes = out.bytes,
            log_start_offset = self.log_start_offset,
            "retention deleted segments"
        );
        out.files = removed.iter().map(|seg| seg.file_paths()).collect();
        out.delete_due_ms = now_ms.saturating_add(self.config.file_delete_delay_ms);
        out
    }

    /// Retention with its file work done here: [`PartitionLog::enforce_retention`],
    /// then the removed segments' files renamed to `*.deleted` and those
    /// that are due removed. (The shard splits these steps so that its
    /// RefCell is not borrowed across IO.)
    pub async fn enforce_retention_now(&mut self, now_ms: i64) -> RetentionOutcome {
        let out = self.enforce_retention(now_ms);
        let pending = rename_deleted_segments(&self.dir, &out.files, out.delete_due_ms).await;
        self.schedule_removals(pending);
        let due = self.take_due_removals(now_ms);
        remove_files(&due).await;
        out
    }

    /// Whether the active segment holds records, all committed and durable,
    /// whose newest is older than `retention.ms`.
    fn active_expired(&self, limits: RetentionLimits, now_ms: i64) -> bool {
        let Some(active) = self.segments.last() else {
            return false;
        };
        limits.retention_ms >= 0
            && active.size > 0
            && self.staged.is_empty()
            && self.high_watermark >= self.next_offset
            && active.max_timestamp >= 0
            && now_ms.saturating_sub(active.max_timestamp) > limits.retention_ms
    }

    /// Files renamed to `*.deleted`, to be removed at the given times.
    pub fn schedule_removals(&mut self, pending: Vec<(i64, PathBuf)>) {
        self.pending_removal.extend(pending);
    }

    /// The `*.deleted` files whose `file.delete.delay.ms` has passed (they
    /// leave the list; the caller removes them).
    pub fn take_due_removals(&mut self, now_ms: i64) -> Vec<PathBuf> {
        let mut due = Vec::new();
        self.pending_removal.retain(|(at, path)| {
            if *at > now_ms {
                return true;
            }
            due.push(path.clone());
            false
        });
        due
    }

    /// Remove the `*.deleted` files whose `file.delete.delay.ms` has passed.
    pub async fn remove_deleted_files(&mut self, now_ms: i64) {
        let due = self.take_due_removals(now_ms);
        remove_files(&due).await;
    }

    /// When the next `*.deleted` file is due for removal, if any.
    pub fn next_file_removal_ms(&self) -> Option<i64> {
        self.pending_removal.iter().map(|(due, _)| *due).min()
    }

    /// Segments that may hold a record with timestamp >= ts: returns the
    /// read position to scan from (file, position, end) in the first segment
    /// whose max timestamp reaches ts, or None when no record is that late.
    pub fn plan_time_lookup(&self, ts: i64) -> Option<(LogFile, u64, u64)> {
        let seg = self.segments.iter().find(|s| s.max_timestamp >= ts)?;
        let rel = seg.time_index.lookup(ts);
        let position = u64::from(seg.index.lookup(rel));
        Some((seg.file.clone()?, position, seg.readable_end(position)))
    }

    /// Every segment's file, position 0 and end, for a max-timestamp scan.
    pub fn max_timestamp_segment(&self) -> Option<(LogFile, u64, u64, i64)> {
        let seg = self
            .segments
            .iter()
            .filter(|s| s.max_timestamp >= 0)
            .max_by_key(|s| s.max_timestamp)?;
        Some((seg.file.clone()?, 0, seg.readable_end(0), seg.max_timestamp))
    }

    /// Files to close and index data to persist at shutdown.
    /// Nothing for an offline partition: it is not written again.
    pub fn shutdown_info(&self) -> Vec<(LogFile, u64, Option<SealInfo>)> {
        if self.is_failed() {
            return Vec::new();
        }
        let n = self.segments.len();
        self.segments
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let f = s.file.clone()?;
                let seal = (i + 1 == n).then(|| SealInfo {
                    size: s.written,
                    index_path: s.index_path(),
                    index: s.index.encode(),
                    time_index_path: s.time_index_path(),
                    time_index: s.time_index.encode(),
                });
                Some((f, s.written, seal))
            })
            .collect()
    }
}

/// The last `keep` bytes of `tail` followed by `chunks` (the new partial
/// block after an O_DIRECT append), copying only those bytes.
fn last_bytes(tail: &[u8], chunks: &[Bytes], keep: usize) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut need = keep;
    for c in chunks.iter().rev() {
        if need == 0 {
            break;
        }
        let take = need.min(c.len());
        parts.push(&c[c.len() - take..]);
        need -= take;
    }
    if need > 0 {
        let take = need.min(tail.len());
        parts.push(&tail[tail.len() - take..]);
    }
    let mut out = Vec::with_capacity(keep);
    for p in parts.iter().rev() {
        out.extend_from_slice(p);
    }
    out
}

/// Rename the files of segments removed by retention to `*.deleted`,
/// oldest first, stopping at the first failure: what stays on disk is always
/// a run of segments ending at the live ones, so recovery never sees a gap
/// (it would just bring the start offset back). Returns the renamed files
/// with their removal time.
pub async fn rename_deleted_segments(dir: &Path, files: &[[PathBuf; 3]], due: i64) -> Vec<(i64, PathBuf)> {
    let mut pending = Vec::new();
    if files.is_empty() {
        return pending;
    }
    'segments: for seg in files {
        for path in seg {
            let mut renamed = path.clone().into_os_string();
            renamed.push(DELETED_SUFFIX);
            let renamed = PathBuf::from(renamed);
            match crate::io::fs::rename(path, &renamed).await {
                Ok(()) => pending.push((due, renamed)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!("retention: renaming {}: {e}", path.display());
                    break 'segments;
                }
            }
        }
    }
    if let Err(e) = crate::io::fs::sync_dir(dir).await {
        tracing::warn!("retention: syncing {}: {e}", dir.display());
    }
    pending
}

/// Remove files (of deleted segments); missing ones are fine.
pub async fn remove_files(paths: &[PathBuf]) {
    for path in paths {
        match crate::io::fs::remove_file(path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("retention: removing {}: {e}", path.display()),
        }
    }
}

/// Execute the writes of a flush job (no sync).
pub async fn execute_writes(job: &mut FlushJob) -> std::io::Result<()> {
    for w in job.writes.iter_mut() {
        let file = match &w.file {
            Some(f) => f.clone(),
            None => {
                let f = LogFile::open(&w.path, job.io_mode).await?;
                if let Some(dir) = w.path.parent() {
                    crate::io::fs::sync_dir(dir).await?;
                }
                w.file = Some(f.clone());
                f
            }
        };
        if !w.chunks.is_empty() {
            let tail = if file.mode() == IoMode::Direct {
                &w.tail[..]
            } else {
                &[][..]
            };
            file.append(w.start, tail, &w.chunks).await?;
        }
        if let Some(seal) = &w.seal {
            file.sync().await?;
            file.truncate(seal.size).await?;
            crate::io::file::write_file(&seal.index_path, seal.index.clone()).await?;
            crate::io::file::write_file(&seal.time_index_path, seal.time_index.clone()).await?;
        }
    }
    Ok(())
}

/// fdatasync the files a job wrote to.
pub async fn execute_sync(job: &FlushJob) -> std::io::Result<()> {
    for w in &job.writes {
        if w.seal.is_some() {
            continue; // synced when sealed
        }
        if let Some(f) = &w.file {
            f.sync().await?;
        }
    }
    Ok(())
}

/// The file work of a rollback: cut the segments written by the failed job
/// back to their durable sizes (and sync that), remove the files of segments
/// that never became durable.
pub async fn execute_rollback(plan: &RollbackPlan) -> std::io::Result<()> {
    for (file, path, size) in &plan.truncate {
        let done = async {
            file.truncate(*size).await?;
            file.sync().await
        };
        if let Err(e) = done.await {
            return Err(match crate::io::errno(&e) {
                Some(code) => crate::io::os_error(code, format!("truncating {} to {size}", path.display())),
                None => e,
            });
        }
    }
    let mut removed = false;
    for path in &plan.remove {
        match crate::io::fs::remove_file(path).await {
            Ok(()) => removed = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if removed {
        crate::io::fs::sync_dir(&plan.dir).await?;
    }
    Ok(())
}

/// What [`select_batches`] found in a chunk read from a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Selection {
    /// Whole batches to return (never empty).
    Batches(Vec<Bytes>),
    /// Every complete batch in the chunk ends before the wanted offset:
    /// continue reading this many bytes further.
    Skip(usize),
    /// The first wanted batch starts at `at` but is cut off by the end of
    /// the chunk; it is `size` bytes long.
    Partial { at: usize, size: usize },
    /// Nothing more to return (end of data, or past the high watermark).
    End,
}

/// Select whole batches from `data` (read from a segment) that contain
/// offsets >= `offset` and start below `hwm`, up to `max_bytes` (the first
/// batch always whole).
pub fn select_batches(data: &Bytes, offset: i64, hwm: i64, max_bytes: usize) -> Selection {
    let mut out = Vec::new();
    let mut total = 0usize;
    let mut pos = 0usize;
    while let Some(h) = data.get(pos..).and_then(BatchHeader::parse) {
        if h.batch_length < 49 || h.base_offset >= hwm {
            break;
        }
        let size = h.total_size();
        if h.last_offset() < offset {
            if pos + size > data.len() {
                break;
            }
            pos += size;
            continue;
        }
        if pos + size > data.len() {
            if out.is_empty() {
                return Selection::Partial { at: pos, size };
            }
            break;
        }
        if !out.is_empty() && total + size > max_bytes {
            break;
        }
        total += size;
        out.push(data.slice(pos..pos + size));
        pos += size;
    }
    if !out.is_empty() {
        Selection::Batches(out)
    } else if pos > 0 {
        Selection::Skip(pos)
    } else {
        Selection::End
    }
}
