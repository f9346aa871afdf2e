//! The log cleaner of a shard: compaction (`cleanup.policy=compact`) of the
//! partitions the shard owns, Kafka's `LogCleaner` in ringlog's shape.
//!
//! One task per shard, in its own task queue with a small share of the core
//! (`ringlog.cleaner.shares`, 100 against the request path's 1000), so that
//! produce and fetch keep their latency while it runs; it also yields at
//! every chunk. A pass over a partition (the pure steps are in
//! [`crate::log::cleaner`]):
//!
//! 1. pick the partition with the highest dirty ratio that must be cleaned
//!    ([`select::cleanable`], [`select::pick_filthiest`]);
//! 2. read the dirty segments and fill the fixed-size key map
//!    (`log.cleaner.dedupe.buffer.size` split over the shards); when it
//!    fills up, this pass covers what it holds and the next pass goes on;
//! 3. rewrite the segments below that point, in groups no larger than
//!    `segment.bytes`, into `*.cleaned` files (synced, indexes built), and
//!    swap each group in ([`crate::log::partition::swap`]: committed by one
//!    atomic intent file, finished or discarded by recovery after a crash);
//! 4. record the new first dirty offset in the partition's
//!    `cleaner-offset-checkpoint`.
//!
//! Memory: the key map, one read chunk and one output chunk; never a whole
//! segment. IO is paced to `log.cleaner.io.max.bytes.per.second` (split
//! over the shards).

use std::rc::Rc;
use std::time::Duration;

use crate::io::file::{IoMode, LogFile};
use crate::io::time::{now_ms, sleep, Instant};
use crate::log::cleaner::select::{self, CompactionConfig};
use crate::log::cleaner::{build_map, clean_segment, FilterPolicy, KeyMap, TxnFilter};
use crate::log::partition::compaction::{CleanedCopy, CleanerView, SegmentToClean};
use crate::log::partition::swap;
use crate::log::segment::{segment_file_name, Segment};
use crate::record::{BatchHeader, BatchIter};

use super::{PartitionRef, Shard};

/// Bytes read per IO.
const CHUNK: usize = 1 << 20;
/// The cleaned copy is synced every this many bytes written, not only at
/// the end: a whole segment of dirty page cache (up to segment.bytes) would
/// otherwise be written back at once, and the produce path's fsyncs on the
/// same disk (and, on ext4, the same journal) would wait behind it.
const SYNC_EVERY: u64 = 8 << 20;

/// Default `ringlog.cleaner.busy.share`.
pub const DEFAULT_BUSY_SHARE: f64 = 0.1;

/// The cleaner's settings (broker properties, Kafka's names).
#[derive(Clone, Copy, Debug)]
pub struct CleanerSettings {
    /// `log.cleaner.enable`.
    pub enable: bool,
    /// This shard's part of `log.cleaner.dedupe.buffer.size`.
    pub dedupe_bytes: usize,
    /// `log.cleaner.io.buffer.load.factor`.
    pub load_factor: f64,
    /// `log.cleaner.backoff.ms`: sleep when nothing needs cleaning.
    pub backoff_ms: u64,
    /// This shard's part of `log.cleaner.io.max.bytes.per.second`.
    pub io_bytes_per_second: f64,
    /// `ringlog.cleaner.shares`: the cleaner task queue's shares.
    pub shares: usize,
    /// `ringlog.cleaner.busy.share`: the share of the shard's time (its
    /// core and its disk) the cleaner takes while the shard serves produce
    /// or fetch (1.0: no limit beyond the task queue's shares).
    pub busy_share: f64,
}

impl CleanerSettings {
    pub fn from_shard(shard: &Shard) -> Self {
        let props = &shard.config.properties;
        let get = |name: &str| props.get(name).map(|v| v.trim().to_string());
        let shards = shard.shards().max(1);
        let dedupe: i64 = get("log.cleaner.dedupe.buffer.size")
            .and_then(|v| v.parse().ok())
            .unwrap_or(128 << 20);
        let io: f64 = get("log.cleaner.io.max.bytes.per.second")
            .and_then(|v| v.parse().ok())
            .filter(|v: &f64| v.is_finite() && *v > 0.0)
            .unwrap_or(f64::MAX);
        CleanerSettings {
            enable: get("log.cleaner.enable").is_none_or(|v| v != "false"),
            dedupe_bytes: (usize::try_from(dedupe).unwrap_or(128 << 20) / shards).max(1 << 16),
            load_factor: get("log.cleaner.io.buffer.load.factor")
                .and_then(|v| v.parse().ok())
                .filter(|v: &f64| *v > 0.0 && *v <= 1.0)
                .unwrap_or(0.9),
            backoff_ms: get("log.cleaner.backoff.ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(15_000u64)
                .max(1),
            io_bytes_per_second: io / shards as f64,
            shares: get("ringlog.cleaner.shares")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100usize)
                .clamp(1, 1000),
            busy_share: get("ringlog.cleaner.busy.share")
                .and_then(|v| v.parse().ok())
                .filter(|v: &f64| v.is_finite() && *v > 0.0)
                .unwrap_or(DEFAULT_BUSY_SHARE)
                .min(1.0),
        }
    }
}

/// Start the shard's cleaner in its own task queue (None when disabled).
pub fn start(shard: &Rc<Shard>) -> Option<crate::io::Task<()>> {
    let settings = CleanerSettings::from_shard(shard);
    if !settings.enable {
        tracing::info!(shard = shard.id, "log cleaner disabled (log.cleaner.enable=false)");
        return None;
    }
    match crate::io::executor::spawn_background("cleaner", settings.shares, run(shard.clone(), settings)) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::error!(shard = shard.id, "the log cleaner cannot start: {e}");
            None
        }
    }
}

/// Run until shutdown (the broker drops the task).
pub async fn run(shard: Rc<Shard>, settings: CleanerSettings) {
    // Allocated at the first partition that needs it.
    let mut map: Option<KeyMap> = None;
    let mut pacer = Pacer::new(settings.io_bytes_per_second, settings.busy_share);
    loop {
        if shard.shutting_down.get() {
            return;
        }
        let mut cleaned_any = false;
        if let Some((p, cfg, view, checkpoint, c)) = pick(&shard).await {
            let map = map.get_or_insert_with(|| KeyMap::with_memory(settings.dedupe_bytes, settings.load_factor));
            p.cleaning.set(true);
            if c.reset_checkpoint || checkpoint.is_none() {
                let _ = save_checkpoint(&p, c.first_dirty_offset).await;
            }
            let result = clean_partition(&shard, &p, &cfg, &view, c, map, &mut pacer).await;
            p.cleaning.set(false);
            match result {
                Ok(stats) => {
                    cleaned_any = stats.groups > 0;
                    crate::metrics::with(|m| {
                        m.cleaner_passes += 1;
                        m.cleaner_records_removed += stats.records_dropped;
                    });
                    tracing::info!(
                        topic = %p.topic,
                        partition = p.index,
                        dirty_ratio = format!("{:.3}", c.dirty_ratio),
                        segments = stats.segments,
                        groups = stats.groups,
                        bytes_read = stats.bytes_read,
                        bytes_written = stats.bytes_written,
                        records_removed = stats.records_dropped,
                        first_dirty_offset = stats.end_offset,
                        ms = stats.ms,
                        "log cleaned"
                    );
                }
                Err(e) => {
                    crate::metrics::with(|m| m.cleaner_errors += 1);
                    tracing::warn!(topic = %p.topic, partition = p.index, "log cleaning stopped: {e}");
                }
            }
        }
        if !cleaned_any {
            let wait = Duration::from_millis(settings.backoff_ms);
            futures_lite::future::or(sleep(wait), shard.until_shutdown()).await;
        } else {
            crate::io::yield_if_needed().await;
        }
    }
}

type Pick = (
    PartitionRef,
    CompactionConfig,
    CleanerView,
    Option<i64>,
    select::Cleanable,
);

/// The partition to clean now, if any: the compacted one with the highest
/// dirty ratio past its threshold (or past `max.compaction.lag.ms`).
async fn pick(shard: &Rc<Shard>) -> Option<Pick> {
    let now = now_ms();
    let mut candidates = Vec::new();
    for p in shard.all_partitions() {
        if p.deleted.get() || !p.log.borrow().config.compact {
            continue;
        }
        let checkpoint = load_checkpoint(&p).await;
        let cfg = {
            let meta = shard.meta.borrow();
            let Some(t) = meta.topics.get(&p.topic) else { continue };
            CompactionConfig::resolve(&t.configs, &shard.config)
        };
        let Some(view) = p.log.borrow().cleaner_view() else {
            continue;
        };
        let summaries: Vec<_> = view.segments.iter().map(|s| s.summary).collect();
        let Some(c) = select::cleanable(&summaries, view.offsets, checkpoint, now, &cfg) else {
            continue;
        };
        tracing::debug!(
            topic = %p.topic,
            partition = p.index,
            first_dirty = c.first_dirty_offset,
            first_uncleanable = c.first_uncleanable_offset,
            clean_bytes = c.clean_bytes,
            cleanable_bytes = c.cleanable_bytes,
            must_clean = c.must_clean,
            "cleaner candidate"
        );
        candidates.push(((p, cfg, view, checkpoint), c));
        crate::io::yield_if_needed().await;
    }
    let ((p, cfg, view, checkpoint), c) = select::pick_filthiest(candidates)?;
    Some((p, cfg, view, checkpoint, c))
}

/// The partition's first dirty offset from its `cleaner-offset-checkpoint`
/// (read once, then kept in memory).
async fn load_checkpoint(p: &PartitionRef) -> Option<i64> {
    if let Some(c) = p.cleaner_checkpoint.get() {
        return c;
    }
    let path = p.log.borrow().dir.join(CHECKPOINT_FILE);
    let c = match crate::io::file::read_file(&path).await {
        Ok(Some(data)) => crate::log::checkpoint::decode_log_start(&data, &p.topic, p.index),
        _ => None,
    };
    p.cleaner_checkpoint.set(Some(c));
    c
}

/// The cleaner checkpoint of a partition, beside its segments (one entry,
/// Kafka's checkpoint format; see [`crate::log::checkpoint::LOG_START_FILE`]
/// for why per partition).
pub const CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";

async fn save_checkpoint(p: &PartitionRef, offset: i64) -> std::io::Result<()> {
    let path = p.log.borrow().dir.join(CHECKPOINT_FILE);
    let data = crate::log::checkpoint::encode_log_start(&p.topic, p.index, offset);
    crate::io::file::write_file_atomic(&path, &data).await?;
    p.cleaner_checkpoint.set(Some(Some(offset)));
    Ok(())
}

#[derive(Default, Debug)]
struct PassStats {
    segments: usize,
    groups: usize,
    bytes_read: u64,
    bytes_written: u64,
    records_dropped: u64,
    end_offset: i64,
    ms: i64,
}

/// One cleaning pass over a partition.
async fn clean_partition(
    shard: &Shard,
    p: &PartitionRef,
    cfg: &CompactionConfig,
    view: &CleanerView,
    c: select::Cleanable,
    map: &mut KeyMap,
    pacer: &mut Pacer,
) -> Result<PassStats, String> {
    let started = now_ms();
    let mut stats = PassStats::default();
    let summaries: Vec<_> = view.segments.iter().map(|s| s.summary).collect();

    // 2. The key map over the dirty range.
    map.clear();
    let range = c.first_dirty_offset..c.first_uncleanable_offset;
    let mut end_offset = range.end;
    let first = summaries
        .partition_point(|s| s.base_offset <= range.start)
        .saturating_sub(1);
    'segments: for seg in view.segments.iter().skip(first) {
        if seg.summary.base_offset >= range.end {
            break;
        }
        let Some(file) = &seg.file else { continue };
        let mut reader = ChunkReader::new(file, seg.summary.size);
        while let Some(chunk) = reader.next(pacer).await? {
            stats.bytes_read += chunk.len() as u64;
            pacer.pace(chunk.len() as u64).await;
            let batches = whole_batches(&chunk);
            let built = build_map(batches, range.clone(), map).map_err(|e| e.to_string())?;
            if built.full {
                end_offset = built.end_offset;
                break 'segments;
            }
            if p.deleted.get() {
                return Err("the topic was deleted".into());
            }
        }
    }
    if end_offset <= range.start && map.is_empty() {
        return Ok(stats);
    }

    // 3. Rewrite the segments below `end_offset`, group by group.
    let to_clean = select::segments_to_clean(&summaries, end_offset);
    if to_clean.is_empty() {
        return Ok(stats);
    }
    let boundary = summaries.get(to_clean.end).map_or(end_offset, |s| s.base_offset);
    let groups = select::group_segments_by_size(
        &summaries[to_clean.clone()],
        cfg.segment_bytes,
        cfg.max_index_bytes,
        boundary,
    );
    let horizon = select::delete_horizon_ms(&summaries, c.first_dirty_offset, cfg.delete_retention_ms);
    // The last batch of each producer stays (emptied if need be), so that
    // its sequence state survives the rewrite (and a restart).
    let producers_last = p.log.borrow().producer_last_offsets();
    for g in groups {
        let segs: Vec<SegmentToClean> = view.segments[g.clone()].to_vec();
        let next_base = view.segments.get(g.end).map_or(boundary, |s| s.summary.base_offset);
        let written =
            write_cleaned_group(view, &segs, next_base, map, end_offset, horizon, &producers_last, pacer).await;
        let (copy, read, written, dropped) = match written {
            Ok(w) => w,
            Err(e) => {
                // (A full disk, say: the old segments stay the log.)
                discard(view, segs[0].summary.base_offset).await;
                return Err(e);
            }
        };
        stats.bytes_read += read;
        stats.bytes_written += written;
        stats.records_dropped += dropped;
        stats.segments += segs.len();
        let _no_checkpoint = shard.segment_swap_lock.lock().await;
        if p.deleted.get() || !p.log.borrow().can_install(&copy.old_bases) {
            discard(view, copy.old_bases[0]).await;
            return Err("the log changed under the cleaner".into());
        }
        swap::commit(&view.dir, &copy.old_bases)
            .await
            .map_err(|e| format!("committing the cleaned copy: {e}"))?;
        let log_path = view.dir.join(segment_file_name(copy.old_bases[0], "log"));
        let mut copy = copy;
        let mode = p.log.borrow().io_mode();
        copy.segment.file = Some(
            LogFile::open(&log_path, mode)
                .await
                .map_err(|e| format!("reopening {}: {e}", log_path.display()))?,
        );
        if !p.log.borrow_mut().install_cleaned(copy) {
            // Only a topic deletion can get here (nothing else changes
            // these segments while `cleaning` is set): its files go anyway.
            return Err("the log changed while the cleaned copy was committed".into());
        }
        stats.groups += 1;
    }
    save_checkpoint(p, end_offset)
        .await
        .map_err(|e| format!("writing the cleaner checkpoint: {e}"))?;
    stats.end_offset = end_offset;
    stats.ms = now_ms() - started;
    Ok(stats)
}

/// Write the cleaned copy of the segments `segs` (one group) as
/// `*.cleaned` files, synced, and build its in-memory segment. Returns it
/// with the bytes read and written and the records dropped.
#[allow(clippy::too_many_arguments)]
async fn write_cleaned_group(
    view: &CleanerView,
    segs: &[SegmentToClean],
    group_end: i64,
    map: &KeyMap,
    map_end: i64,
    horizon: i64,
    producers_last: &crate::io::rand::HashMap<i64, i64>,
    pacer: &mut Pacer,
) -> Result<(CleanedCopy, u64, u64, u64), String> {
    let base = segs[0].summary.base_offset;
    let dir = &view.dir;
    let log_path = swap::cleaned_path(dir, base, "log");
    let _ = crate::io::fs::remove_file(&log_path).await;
    let out = LogFile::open(&log_path, view.io_mode)
        .await
        .map_err(|e| format!("creating {}: {e}", log_path.display()))?;
    let direct = out.mode() == IoMode::Direct;
    // In direct mode: the bytes of the last, partial block written so far,
    // rewritten with the next append.
    let mut tail: Vec<u8> = Vec::new();
    let mut seg = Segment::new(dir, base, now_ms());
    let (mut read, mut dropped, mut unsynced) = (0u64, 0u64, 0u64);
    for (i, s) in segs.iter().enumerate() {
        let Some(file) = &s.file else { continue };
        let seg_end = segs.get(i + 1).map_or(group_end, |n| n.summary.base_offset);
        let drop_tombstones = select::drop_tombstones(&s.summary, seg_end, map_end, horizon);
        let mut policy = |h: &BatchHeader| FilterPolicy {
            drop_tombstones,
            retain_empty_producer_batch: h.has_producer_id()
                && producers_last.get(&h.producer_id) == Some(&h.last_offset()),
            txn: TxnFilter::None,
        };
        let mut reader = ChunkReader::new(file, s.summary.size);
        while let Some(chunk) = reader.next(pacer).await? {
            read += chunk.len() as u64;
            let cleaned = clean_segment(whole_batches(&chunk), map, &mut policy).map_err(|e| e.to_string())?;
            dropped += cleaned.records_dropped;
            for (_, h) in BatchIter::new(&cleaned.bytes, false) {
                seg.note_append(
                    h.base_offset,
                    h.last_offset(),
                    h.max_timestamp,
                    h.total_size() as u64,
                    view.index_interval_bytes,
                );
            }
            if !cleaned.bytes.is_empty() {
                let at = seg.size - cleaned.bytes.len() as u64;
                let n = cleaned.bytes.len() as u64;
                let data = bytes::Bytes::from(cleaned.bytes);
                out.append(at, if direct { &tail } else { &[] }, std::slice::from_ref(&data))
                    .await
                    .map_err(|e| format!("writing {}: {e}", log_path.display()))?;
                if direct {
                    tail = next_tail(&tail, &data, seg.size);
                }
                unsynced += n;
                if unsynced >= SYNC_EVERY {
                    unsynced = 0;
                    out.sync()
                        .await
                        .map_err(|e| format!("syncing {}: {e}", log_path.display()))?;
                }
                crate::metrics::with(|m| m.cleaner_bytes_written += n);
                pacer.pace(n).await;
            }
            pacer.pace(chunk.len() as u64).await;
        }
    }
    if direct {
        // Cut the O_DIRECT padding: a sealed segment ends at its last batch.
        out.truncate(seg.size)
            .await
            .map_err(|e| format!("truncating {}: {e}", log_path.display()))?;
    }
    out.sync()
        .await
        .map_err(|e| format!("syncing {}: {e}", log_path.display()))?;
    let index_path = swap::cleaned_path(dir, base, "index");
    let time_index_path = swap::cleaned_path(dir, base, "timeindex");
    crate::io::file::write_file_synced(&index_path, seg.index.encode())
        .await
        .map_err(|e| format!("writing {}: {e}", index_path.display()))?;
    crate::io::file::write_file_synced(&time_index_path, seg.time_index.encode())
        .await
        .map_err(|e| format!("writing {}: {e}", time_index_path.display()))?;
    let written = seg.size;
    let copy = CleanedCopy {
        old_bases: segs.iter().map(|s| s.summary.base_offset).collect(),
        segment: seg,
    };
    Ok((copy, read, written, dropped))
}

/// The bytes of the partial block at the end of a file of `size` bytes
/// whose last bytes are `tail` (the previous partial block) then `data`.
fn next_tail(tail: &[u8], data: &[u8], size: u64) -> Vec<u8> {
    let keep = (size % crate::io::file::ALIGN) as usize;
    if keep <= data.len() {
        data[data.len() - keep..].to_vec()
    } else {
        let from_tail = keep - data.len();
        let mut t = tail[tail.len() - from_tail..].to_vec();
        t.extend_from_slice(data);
        t
    }
}

/// Remove an uncommitted cleaned copy.
async fn discard(view: &CleanerView, base: i64) {
    for ext in ["index", "timeindex", "log"] {
        let _ = crate::io::fs::remove_file(&swap::cleaned_path(&view.dir, base, ext)).await;
    }
}

/// The whole batches at the start of `chunk` (the reader hands out chunks
/// that end on a batch boundary).
fn whole_batches(chunk: &[u8]) -> Vec<&[u8]> {
    BatchIter::new(chunk, false)
        .map(|(at, h)| &chunk[at..at + h.total_size()])
        .collect()
}

/// Reads a segment file in chunks of whole, CRC-checked batches.
struct ChunkReader<'a> {
    file: &'a LogFile,
    pos: u64,
    end: u64,
}

impl<'a> ChunkReader<'a> {
    fn new(file: &'a LogFile, end: u64) -> Self {
        ChunkReader { file, pos: 0, end }
    }

    /// The next chunk of whole batches, None at the end. A torn or corrupt
    /// batch is an error: the cleaner never rewrites what it cannot read.
    async fn next(&mut self, pacer: &mut Pacer) -> Result<Option<bytes::Bytes>, String> {
        crate::io::yield_if_needed().await;
        if self.pos >= self.end {
            return Ok(None);
        }
        let want = CHUNK.min((self.end - self.pos) as usize);
        let mut data = self.read(want).await?;
        let mut valid = BatchIter::new(&data, true).scan_valid_len();
        if valid == 0 {
            // A batch larger than the chunk: read the rest of it.
            let h = BatchHeader::parse(&data).ok_or_else(|| self.corrupt())?;
            if h.total_size() <= data.len() || h.total_size() as u64 > self.end - self.pos {
                // It fits what was read yet does not check: corrupt.
                return Err(self.corrupt());
            }
            let rest = self
                .read_at(self.pos + data.len() as u64, h.total_size() - data.len())
                .await?;
            let mut whole = bytes::BytesMut::with_capacity(h.total_size());
            whole.extend_from_slice(&data);
            whole.extend_from_slice(&rest);
            data = whole.freeze();
            valid = BatchIter::new(&data, true).scan_valid_len();
            if valid == 0 {
                return Err(self.corrupt());
            }
        }
        self.pos += valid as u64;
        // The work since the last chunk (its filtering and writes) and
        // this read: the cleaner's turn, which may call for a rest.
        pacer.step().await;
        Ok(Some(data.slice(..valid)))
    }

    async fn read(&self, len: usize) -> Result<bytes::Bytes, String> {
        self.read_at(self.pos, len).await
    }

    async fn read_at(&self, pos: u64, len: usize) -> Result<bytes::Bytes, String> {
        let data = self
            .file
            .read_at(pos, len)
            .await
            .map_err(|e| format!("reading a segment at {pos}: {e}"))?;
        crate::metrics::with(|m| m.cleaner_bytes_read += data.len() as u64);
        if data.len() < len {
            return Err(format!("a segment ends early at {}", pos + data.len() as u64));
        }
        Ok(data)
    }

    fn corrupt(&self) -> String {
        format!("an unreadable batch at byte {} of a segment", self.pos)
    }
}

/// How recently the data path must have been active for the cleaner to
/// count the shard as busy.
const BUSY_WINDOW: Duration = Duration::from_millis(100);

/// A counter that moves whenever this shard serves produce or fetch:
/// group-commit rounds and fetch reads (from the cache or the disk).
fn data_path_activity() -> u64 {
    crate::metrics::with(|m| m.flush_rounds.wrapping_add(m.cache_misses).wrapping_add(m.cache_hits))
}

/// Paces the cleaner: its IO to a rate (`log.cleaner.io.max.bytes.per.second`,
/// Kafka's throttle), and its time to a share while this shard serves
/// produce or fetch (`ringlog.cleaner.busy.share`).
///
/// The task queue's shares only order the cleaner behind the shard's
/// request tasks on the executor; glommio has no IO scheduler, and the
/// kernel shares the core with other processes by its own rules. Unpaced on
/// the 2-core bench machine, the cleaner's back-to-back 1 MiB reads and
/// writes held the disk, every group-commit fsync waited behind them (p99
/// 0.8 -> 7.8 ms) and its CPU left the co-located clients short, produce
/// p50 2 -> 19 ms (docs/benchmark-cleaner.md). So after each chunk, if the
/// shard's data path was active meanwhile, the cleaner rests
/// `took * (1 / share - 1)`, where `took` is the wall time of its turn
/// (reading, filtering, writing): it holds the shard and its disk at most
/// `share` of the time. On an idle shard it runs at full speed.
struct Pacer {
    rate: f64,
    started_ms: i64,
    bytes: f64,
    busy_share: f64,
    /// The shard's data-path activity when last seen.
    activity: u64,
    /// When the cleaner's current turn began.
    turn: Instant,
    /// When the data path was last seen active.
    active_at: Option<Instant>,
}

impl Pacer {
    fn new(rate: f64, busy_share: f64) -> Self {
        Pacer {
            rate,
            started_ms: now_ms(),
            bytes: 0.0,
            busy_share,
            activity: data_path_activity(),
            turn: Instant::now(),
            active_at: None,
        }
    }

    /// End of a turn: rest if the data path was active during it.
    async fn step(&mut self) {
        let took = self.turn.elapsed();
        let now = data_path_activity();
        if now != self.activity {
            self.activity = now;
            self.active_at = Some(Instant::now());
        }
        // Busy: active within the last BUSY_WINDOW (a turn takes a few ms,
        // group commits come every few ms, so one turn may see none).
        let busy = self.active_at.is_some_and(|at| at.elapsed() < BUSY_WINDOW);
        if busy && self.busy_share < 1.0 {
            let rest = took.mul_f64(1.0 / self.busy_share - 1.0).min(Duration::from_secs(1));
            if !rest.is_zero() {
                sleep(rest).await;
            }
        }
        self.turn = Instant::now();
    }

    async fn pace(&mut self, bytes: u64) {
        if self.rate >= f64::MAX / 2.0 {
            return;
        }
        self.bytes += bytes as f64;
        let now = now_ms();
        let elapsed = (now - self.started_ms).max(0) as f64 / 1000.0;
        let due = self.bytes / self.rate;
        if due > elapsed {
            sleep(Duration::from_secs_f64((due - elapsed).min(10.0))).await;
        }
        if elapsed > 10.0 {
            // Forget old history so an idle spell does not allow a burst.
            self.started_ms = now;
            self.bytes = 0.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::next_tail;

    #[test]
    fn the_tail_is_the_last_partial_block() {
        // Model a file written by appends of assorted sizes and compare the
        // tail after each with the file's bytes since the last 4 KiB line.
        let mut file: Vec<u8> = Vec::new();
        let mut tail: Vec<u8> = Vec::new();
        let mut n: u8 = 0;
        for len in [1usize, 100, 4095, 1, 4096, 8191, 3, 5000, 0, 12288, 7] {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    n = n.wrapping_add(1);
                    n
                })
                .collect();
            file.extend_from_slice(&data);
            tail = next_tail(&tail, &data, file.len() as u64);
            let start = file.len() / 4096 * 4096;
            assert_eq!(tail, file[start..], "after an append of {len}");
        }
    }
}
