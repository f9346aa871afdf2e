//! Opening a partition directory: recovery.
//!
//! What is on disk below the partition's **recovery point** (from the
//! checkpoint file: synced, index files synced) is trusted: those segments'
//! index files are loaded and only the bytes after their last index entry
//! are walked (batch headers, no CRC) to learn where they end. The segment
//! holding the recovery point and everything after it is walked with CRC
//! checks, starting from that segment's last index entry below the
//! recovery point. After a clean shutdown everything is trusted.
//!
//! What a walk can find past the last good batch:
//!
//! * zero padding (an O_DIRECT block, or a cut to size that was not made
//!   durable), or nothing but bytes past the segment's last offset: cut off;
//! * in the **last** segment, **past the recovery point**, with no valid
//!   batch further on: a torn write, which was never acknowledged: cut off;
//! * anything else is **corruption** (a bad CRC or garbage followed by valid
//!   data, in a segment followed by later segments, or below the recovery
//!   point): the file is kept, the damage logged with its path, offset and
//!   position, the unreadable region recorded (fetches there get
//!   CORRUPT_MESSAGE) and the walk resumes at the next valid batch, if any.
//!   Offsets are never handed out twice: a segment with damage is never
//!   appended to again (a new segment starts after it), and the log end
//!   never goes below the recovery point.
//!
//! Idempotent producer state comes from the newest intact snapshot at or
//! below the recovery point, plus the batches after it.

use std::collections::VecDeque;
use std::io;
use std::path::Path;

use uuid::Uuid;

use crate::config::TopicConfig;
use crate::io::file::{IoMode, LogFile, ALIGN};
use crate::io::notify::Notify;
use crate::log::checkpoint::{decode_log_start, LOG_START_FILE};
use crate::log::dirs::{decode_partition_metadata, encode_partition_metadata, set_aside};
use crate::log::index::{OffsetIndex, TimeIndex};
use crate::log::producer_state::{
    decode_snapshot, parse_snapshot_file_name, snapshot_file_name, ProducerBatch, ProducerStates,
};
use crate::log::segment::{parse_index_file_name, parse_segment_file_name, CorruptRange, Segment, DELETED_SUFFIX};
use crate::record::{self, BatchHeader, BATCH_HEADER_LEN, MAGIC_OFFSET, MAGIC_V2};

use super::{FlushState, PartitionLog, RecoveryStats as Stats};

pub use crate::log::dirs::PARTITION_METADATA;

/// The producer state file older versions wrote at clean shutdown.
const LEGACY_PRODUCER_SNAPSHOT: &str = "producer-state.json";

/// Bytes read per IO while walking a segment.
const CHUNK: usize = 1 << 20;

/// How to open a partition.
#[derive(Clone, Debug, Default)]
pub struct Recovery {
    /// The previous run closed the logs cleanly: every segment, its index
    /// files and the producer snapshot at the log end are trusted.
    pub clean_shutdown: bool,
    /// The partition's recovery point from the checkpoint file, if any.
    pub recovery_point: Option<i64>,
    /// The topic's id: the directory must belong to this incarnation of the
    /// topic (`partition.metadata`); one that does not is set aside.
    pub topic_id: Option<Uuid>,
}

/// What recovery did when a partition was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Segment files found.
    pub segments: usize,
    /// Segments below the recovery point: index files loaded, CRCs not
    /// checked.
    pub segments_trusted: usize,
    /// Segments walked with CRC checks (the one holding the recovery point
    /// and later ones).
    pub segments_checked: usize,
    /// Bytes read from segment files.
    pub bytes_read: u64,
    /// Bytes of batches whose CRC was checked.
    pub bytes_checked: u64,
    /// Regions found unreadable (kept, reads get CORRUPT_MESSAGE).
    pub corrupt_regions: usize,
    /// Bytes cut off the end of segments (torn writes, padding).
    pub truncated_bytes: u64,
    /// Index files rebuilt from the log and written.
    pub indexes_rebuilt: usize,
    /// Offset of the producer state snapshot used, if any.
    pub snapshot_offset: Option<i64>,
    /// Idempotent batches replayed on top of it.
    pub producer_batches_replayed: usize,
}

/// Open a partition directory, recovering it (see the module
/// documentation), without a recovery point or topic id: after an unclean
/// shutdown every segment is checked.
pub async fn open(
    dir: &Path,
    topic: &str,
    partition: i32,
    config: TopicConfig,
    io_mode: IoMode,
    clean_shutdown: bool,
    now_ms: i64,
) -> io::Result<PartitionLog> {
    let recovery = Recovery {
        clean_shutdown,
        ..Default::default()
    };
    open_with(dir, topic, partition, config, io_mode, recovery, now_ms).await
}

/// Open a partition directory, recovering it (see the module documentation).
pub async fn open_with(
    dir: &Path,
    topic: &str,
    partition: i32,
    config: TopicConfig,
    io_mode: IoMode,
    recovery: Recovery,
    now_ms: i64,
) -> io::Result<PartitionLog> {
    let mut recovery_point = recovery.recovery_point.filter(|&r| r > 0);
    match &recovery.topic_id {
        Some(id) => {
            if !claim_dir(dir, topic, partition, id).await? {
                recovery_point = None; // a new directory: nothing to recover
            }
        }
        None => crate::io::fs::create_dir_durable(dir).await?,
    }
    // A cleaner swap cut short by the crash: finish it if it was committed,
    // forget it otherwise (see `swap`).
    super::swap::finish_interrupted_swaps(dir).await?;
    let entries = crate::io::fs::read_dir(dir).await?;
    let mut bases: Vec<i64> = entries
        .iter()
        .filter_map(|e| parse_segment_file_name(&e.name))
        .collect();
    bases.sort_unstable();
    let mut snapshots: Vec<i64> = entries
        .iter()
        .filter_map(|e| parse_snapshot_file_name(&e.name))
        .collect();
    snapshots.sort_unstable();
    let legacy_snapshot = entries.iter().any(|e| e.name == LEGACY_PRODUCER_SNAPSHOT);

    let floor = recovery_point.unwrap_or(0);
    let mut stats = Stats {
        segments: bases.len(),
        ..Default::default()
    };
    let mut batches = Vec::new();
    let mut cx = Ctx {
        dir,
        io_mode,
        interval: config.index_interval_bytes,
        trust_all: recovery.clean_shutdown,
        floor,
        rp_trust: if recovery.clean_shutdown { i64::MAX } else { floor },
        now_ms,
        stats: &mut stats,
        batches: &mut batches,
    };
    let mut segments: Vec<Segment> = Vec::with_capacity(bases.len() + 1);
    let mut walk_from: Vec<i64> = Vec::with_capacity(bases.len() + 1);
    let mut damaged_end = false;
    for (i, &base) in bases.iter().enumerate() {
        let next_base = bases.get(i + 1).copied();
        let (seg, out) = recover_segment(&mut cx, base, next_base).await?;
        walk_from.push(out.walk_from);
        damaged_end |= next_base.is_none() && out.damaged;
        segments.push(seg);
    }
    remove_leftovers(dir, &segments).await;

    // Offsets below the recovery point were handed out and made durable:
    // never go below it, even when the files do not hold them any more.
    let end = segments.last().map_or(0, |s| s.next_offset);
    if end < floor {
        tracing::error!(
            dir = %dir.display(),
            log_end = end,
            recovery_point = floor,
            "the log ends below its recovery point: offsets {end}..{floor} were written and synced but are gone; \
             they are not handed out again"
        );
        if let Some(last) = segments.last_mut() {
            last.corrupt.push(CorruptRange {
                from_offset: end,
                to_offset: floor,
                position: last.size,
                end_position: last.size,
            });
            last.next_offset = floor;
            damaged_end = true;
        }
    }
    let mut created = false;
    if segments.is_empty() {
        segments.push(Segment::new(dir, floor, now_ms));
        walk_from.push(floor);
    } else if damaged_end {
        // A damaged segment is never appended to: the log goes on in a new
        // segment after it (created now, so that its name keeps the log
        // end across a restart).
        let n = segments.len();
        let last = &mut segments[n - 1];
        last.sealed = true;
        last.seal_done = true;
        last.tail = Vec::new();
        write_index_files(last, cx.stats).await?;
        let start = last.next_offset;
        let mut seg = Segment::new(dir, start, now_ms);
        seg.file = Some(LogFile::open(&seg.log_path(), io_mode).await?);
        segments.push(seg);
        walk_from.push(start);
        created = true;
        tracing::warn!(dir = %dir.display(), base_offset = start, "the log continues in a new segment after the damaged one");
    }
    // A segment past the recovery point may have been created just before
    // the crash, its directory entry not yet synced (the page cache kept it
    // visible). Appends to it would be fsynced but could still vanish with
    // the entry in a power loss, so make the entries durable now.
    if created || cx.stats.segments_checked > 0 {
        crate::io::fs::sync_dir(dir).await?;
    }
    let log_end = segments.last().map_or(0, |s| s.next_offset);
    crate::invariant!(
        log_end >= floor,
        "{topic}-{partition}: recovery set the log end {log_end} below the recovery point {floor}"
    );
    let first_base = segments.first().map_or(0, |s| s.base_offset);
    // DeleteRecords may have moved the log start inside the first segment.
    let checkpointed = match crate::io::file::read_file(&dir.join(LOG_START_FILE)).await {
        Ok(Some(data)) => decode_log_start(&data, topic, partition),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), "reading the log start offset checkpoint: {e}");
            None
        }
    };
    let log_start = checkpointed.map_or(first_base, |o| o.clamp(first_base, log_end));

    // Producer state: the newest intact snapshot at or below the point up
    // to which everything is durable, then the batches after it.
    let bound = if recovery.clean_shutdown {
        log_end
    } else {
        floor.min(log_end)
    };
    let mut chosen: Option<(i64, ProducerStates)> = None;
    for &offset in snapshots.iter().rev().filter(|&&o| o <= bound) {
        let path = dir.join(snapshot_file_name(offset));
        match crate::io::file::read_file(&path)
            .await?
            .as_deref()
            .and_then(decode_snapshot)
        {
            Some((at, states)) if at == offset => {
                chosen = Some((at, states));
                break;
            }
            _ => tracing::warn!(path = %path.display(), "ignoring a damaged producer state snapshot"),
        }
    }
    if legacy_snapshot {
        let path = dir.join(LEGACY_PRODUCER_SNAPSHOT);
        if chosen.is_none() && recovery.clean_shutdown {
            if let Some(states) = crate::io::file::read_file(&path)
                .await?
                .and_then(|d| ProducerStates::decode_legacy_json(&d))
            {
                chosen = Some((log_end, states));
            }
        }
        let _ = crate::io::fs::remove_file(&path).await;
    }
    cx.stats.snapshot_offset = chosen.as_ref().map(|(at, _)| *at);
    let (snapshot_offset, mut producers) = chosen.unwrap_or((first_base, ProducerStates::new()));
    // Every batch from `covered` on was walked above.
    let mut covered = log_end;
    for (seg, &from) in segments.iter().zip(&walk_from).rev() {
        covered = from;
        if from != seg.base_offset {
            break;
        }
    }
    let mut replay = Vec::new();
    if snapshot_offset < covered {
        replay_headers(&segments, snapshot_offset, covered, &mut replay, cx.stats).await?;
    }
    let from = snapshot_offset.max(covered);
    replay.extend(cx.batches.iter().filter(|b| b.meta.first_offset >= from).copied());
    for b in &replay {
        producers.apply(b);
    }
    producers.prune_below(log_start);
    cx.stats.producer_batches_replayed = replay.len();
    // Snapshots past the log end describe offsets that are gone.
    let mut kept = Vec::with_capacity(snapshots.len());
    for offset in snapshots {
        if offset > log_end {
            let _ = crate::io::fs::remove_file(&dir.join(snapshot_file_name(offset))).await;
        } else {
            kept.push(offset);
        }
    }

    if stats.segments_checked > 0 || stats.corrupt_regions > 0 || stats.truncated_bytes > 0 {
        tracing::info!(
            dir = %dir.display(),
            segments = stats.segments,
            trusted = stats.segments_trusted,
            checked = stats.segments_checked,
            bytes_read = stats.bytes_read,
            corrupt_regions = stats.corrupt_regions,
            truncated_bytes = stats.truncated_bytes,
            log_end,
            recovery_point = floor,
            "recovered partition"
        );
    }
    let log = PartitionLog {
        topic: topic.to_string(),
        partition,
        dir: dir.to_path_buf(),
        config,
        io_mode,
        segments,
        log_start_offset: log_start,
        log_start_persisted: log_start,
        next_offset: log_end,
        written_offset: log_end,
        high_watermark: log_end,
        appended_bytes: 0,
        hw_bytes: 0,
        leader_epoch: 0,
        staged: Vec::new(),
        staged_bytes: 0,
        cache: VecDeque::new(),
        cache_bytes: 0,
        cache_limit: 4 << 20,
        unsynced_messages: 0,
        last_sync_ms: now_ms,
        flush: FlushState::default(),
        durable_producers: producers.clone(),
        producers,
        synced_offset: log_end,
        recovery_point: floor.min(log_end),
        producer_log: VecDeque::new(),
        durable_producers_offset: log_end,
        pending_snapshots: VecDeque::new(),
        snapshot_offsets: kept,
        recovery_stats: stats,
        pending_removal: Vec::new(),
        changed: Notify::new(),
    };
    log.check_segments();
    Ok(log)
}

impl PartitionLog {
    /// What recovery did when this log was opened.
    pub fn recovery_stats(&self) -> &RecoveryStats {
        &self.recovery_stats
    }
}

/// Make sure `dir` belongs to the topic incarnation `id`: a directory of
/// another incarnation (a deleted topic of the same name whose removal a
/// crash cut short) is set aside for removal. Creates the directory
/// (durably) and its `partition.metadata` when missing. Returns whether an
/// existing directory of this topic was found (its data is recovered).
async fn claim_dir(dir: &Path, topic: &str, partition: i32, id: &Uuid) -> io::Result<bool> {
    let meta_path = dir.join(PARTITION_METADATA);
    if crate::io::fs::exists(dir).await {
        match crate::io::file::read_file(&meta_path).await? {
            Some(data) => match decode_partition_metadata(&data) {
                Some(found) if found == *id => return Ok(true),
                Some(found) => {
                    tracing::warn!(
                        dir = %dir.display(),
                        found = %found,
                        expected = %id,
                        "partition directory belongs to an older topic of the same name: setting it aside"
                    );
                    let data_dir = dir.parent().unwrap_or(Path::new("."));
                    set_aside(data_dir, dir, topic, partition, &found).await?;
                }
                None => {
                    tracing::warn!(path = %meta_path.display(), "unreadable partition.metadata: rewriting it");
                    crate::io::file::write_file_atomic(&meta_path, &encode_partition_metadata(id)).await?;
                    return Ok(true);
                }
            },
            None => {
                // Written before partition.metadata existed (or a crash
                // right after the directory was made): adopt it.
                crate::io::file::write_file_atomic(&meta_path, &encode_partition_metadata(id)).await?;
                return Ok(true);
            }
        }
    }
    crate::io::fs::create_dir_durable(dir).await?;
    crate::io::file::write_file_atomic(&meta_path, &encode_partition_metadata(id)).await?;
    Ok(false)
}

/// Settings and collected results of one partition's recovery.
struct Ctx<'a> {
    dir: &'a Path,
    io_mode: IoMode,
    interval: u64,
    trust_all: bool,
    /// The recovery point (0 when unknown): offsets below it are durable.
    floor: i64,
    /// Segments wholly below this are trusted.
    rp_trust: i64,
    now_ms: i64,
    stats: &'a mut Stats,
    /// Idempotent batches met on the walks, in offset order.
    batches: &'a mut Vec<ProducerBatch>,
}

struct SegmentOutcome {
    /// The offset where the walk started: every batch from there on was seen.
    walk_from: i64,
    /// The segment has an unreadable region.
    damaged: bool,
}

/// Recover one segment (see the module documentation).
async fn recover_segment(cx: &mut Ctx<'_>, base: i64, next_base: Option<i64>) -> io::Result<(Segment, SegmentOutcome)> {
    let last = next_base.is_none();
    let mut seg = Segment::new(cx.dir, base, cx.now_ms);
    seg.modified_ms = crate::io::fs::metadata(&seg.log_path())
        .await
        .map(|m| m.modified_ms)
        .unwrap_or(-1);
    let file = LogFile::open(&seg.log_path(), cx.io_mode).await?;
    let size = file.size().await?;
    let below = cx.trust_all || next_base.is_some_and(|nb| nb <= cx.rp_trust);
    let holds_rp = !below && base <= cx.rp_trust;
    let mut start = 0u64;
    let mut loaded = false;
    if below || holds_rp {
        let upto = (!below).then_some(cx.rp_trust);
        if let Some(found) = load_index(&file, &seg, size, upto, cx.stats).await? {
            start = found.position;
            seg.max_timestamp = found.time_index.last().map_or(-1, |(t, _)| t);
            seg.index = found.index;
            seg.time_index = found.time_index;
            seg.next_offset = found.offset;
            loaded = true;
        }
    }
    let walk_from = seg.next_offset;
    if below {
        cx.stats.segments_trusted += 1;
    } else {
        cx.stats.segments_checked += 1;
    }
    seg.size = start;
    let mut pos = walk(cx, &file, &mut seg, start, size, next_base, !below).await?;
    let mut cut_at = None;
    let mut damaged = false;
    while pos < size {
        let e = seg.next_offset;
        if next_base == Some(e) {
            // Every offset up to the next segment is here: what follows is
            // past the segment's end (the padding of a cut to size that was
            // not made durable).
            if !is_zero_padding(&file, pos, size).await? {
                tracing::warn!(path = %seg.log_path().display(), position = pos, "cutting bytes past the last offset of a complete segment");
            }
            cut_at = Some(pos);
            break;
        }
        if last && e >= cx.floor && is_zero_padding(&file, pos, size).await? {
            cut_at = Some(pos);
            break;
        }
        // Valid data further on means damage, not a torn write.
        match find_next_batch(&file, pos + 1, size, e, next_base, cx.stats).await? {
            Some((at, h)) => {
                tracing::error!(
                    path = %seg.log_path().display(),
                    offset = e,
                    position = pos,
                    resumes_at_offset = h.base_offset,
                    resumes_at_position = at,
                    "corrupt data in the log: offsets {e}..{} are unreadable and kept as they are; later offsets stay readable",
                    h.base_offset
                );
                seg.corrupt.push(CorruptRange {
                    from_offset: e,
                    to_offset: h.base_offset,
                    position: pos,
                    end_position: at,
                });
                cx.stats.corrupt_regions += 1;
                damaged = true;
                seg.size = at;
                seg.next_offset = h.base_offset;
                // Index the first batch after the damage, so that reads of
                // later offsets start past it.
                seg.bytes_since_index = u64::MAX / 2;
                pos = walk(cx, &file, &mut seg, at, size, next_base, true).await?;
            }
            None if last && e >= cx.floor => {
                tracing::warn!(
                    path = %seg.log_path().display(),
                    offset = e,
                    position = pos,
                    bytes = size - pos,
                    recovery_point = cx.floor,
                    "cutting a torn write off the end of the log"
                );
                cut_at = Some(pos);
                break;
            }
            None => {
                let to = next_base.unwrap_or(e.max(cx.floor));
                tracing::error!(
                    path = %seg.log_path().display(),
                    offset = e,
                    position = pos,
                    bytes = size - pos,
                    recovery_point = cx.floor,
                    "corrupt data in the log: offsets {e}..{to} are unreadable and kept as they are; later offsets stay readable"
                );
                seg.corrupt.push(CorruptRange {
                    from_offset: e,
                    to_offset: to,
                    position: pos,
                    end_position: size,
                });
                cx.stats.corrupt_regions += 1;
                damaged = true;
                seg.next_offset = to;
                break;
            }
        }
    }
    let logical = cut_at.unwrap_or(size);
    if logical < size {
        crate::invariant!(
            seg.next_offset >= cx.floor || next_base.is_some(),
            "{}: recovery cut the log at offset {} below the recovery point {}",
            seg.log_path().display(),
            seg.next_offset,
            cx.floor
        );
        file.truncate(logical).await?;
        file.sync().await?;
        cx.stats.truncated_bytes += size - logical;
    } else if !below && !cx.trust_all {
        // What was recovered past the recovery point is made durable now,
        // so that the next checkpoint may move past it.
        file.sync().await?;
    }
    seg.size = logical;
    seg.written = logical;
    seg.sealed = !last;
    seg.seal_done = !last;
    seg.index_synced =
        !last && below && loaded && !damaged && next_base.is_some_and(|nb| nb <= cx.floor) && !cx.trust_all;
    if last && !damaged && cx.io_mode == IoMode::Direct && file.mode() == IoMode::Direct {
        let tail_start = logical - logical % ALIGN;
        seg.tail = file
            .read_at(tail_start, (logical - tail_start) as usize)
            .await?
            .to_vec();
    }
    seg.file = Some(file);
    if !(last || below && loaded) {
        write_index_files(&seg, cx.stats).await?;
    }
    Ok((seg, SegmentOutcome { walk_from, damaged }))
}

/// Write a sealed segment's index files (not synced: the next checkpoint
/// syncs them before the recovery point passes the segment).
async fn write_index_files(seg: &Segment, stats: &mut Stats) -> io::Result<()> {
    crate::io::file::write_file(&seg.index_path(), seg.index.encode()).await?;
    crate::io::file::write_file(&seg.time_index_path(), seg.time_index.encode()).await?;
    stats.indexes_rebuilt += 1;
    Ok(())
}

/// Walk the batches of a segment from `start` (where `seg.size` must be),
/// noting each in the segment (offsets, indexes, timestamps) and collecting
/// idempotent batches. Stops at the first batch that is cut off,
/// implausible, fails its CRC (when `verify_crc`), does not continue the
/// segment's offsets or reaches `limit` (the next segment's base offset).
/// Returns where it stopped.
async fn walk(
    cx: &mut Ctx<'_>,
    file: &LogFile,
    seg: &mut Segment,
    start: u64,
    size: u64,
    limit: Option<i64>,
    verify_crc: bool,
) -> io::Result<u64> {
    let interval = cx.interval;
    let modified = seg.modified_ms;
    let batches = &mut *cx.batches;
    let mut visit = |h: &BatchHeader| -> bool {
        let fits = h.base_offset >= seg.next_offset
            && limit.is_none_or(|l| h.last_offset() < l)
            && h.last_offset() - seg.base_offset <= i64::from(u32::MAX);
        if !fits {
            return false;
        }
        seg.note_append(
            h.base_offset,
            h.last_offset(),
            h.max_timestamp,
            h.total_size() as u64,
            interval,
        );
        if h.has_producer_id() && !h.is_control() {
            batches.push(ProducerBatch {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                meta: crate::log::producer_state::BatchMeta {
                    first_seq: h.base_sequence,
                    last_seq: crate::log::producer_state::last_sequence(h.base_sequence, h.last_offset_delta),
                    first_offset: h.base_offset,
                    last_offset: h.last_offset(),
                },
                timestamp: h.max_timestamp.max(modified),
            });
        }
        true
    };
    visit_batches(file, start, size, verify_crc, cx.stats, &mut visit).await
}

/// Visit the batches of `file` from `pos` (a batch start) up to `end`:
/// each whole, plausible batch (CRC-checked when `verify_crc`) is passed to
/// `visit`, until `visit` returns false or a batch is cut off by `end`,
/// implausible or fails its CRC. Returns the position of that batch (or
/// `end`).
async fn visit_batches(
    file: &LogFile,
    mut pos: u64,
    end: u64,
    verify_crc: bool,
    stats: &mut Stats,
    visit: &mut dyn FnMut(&BatchHeader) -> bool,
) -> io::Result<u64> {
    while pos < end {
        crate::io::yield_if_needed().await;
        let want = CHUNK.min((end - pos) as usize);
        let buf = file.read_at(pos, want).await?;
        stats.bytes_read += buf.len() as u64;
        if buf.is_empty() {
            return Ok(pos);
        }
        let mut used = 0usize;
        for (at, h) in record::BatchIter::new(&buf, verify_crc) {
            if !visit(&h) {
                return Ok(pos + at as u64);
            }
            used = at + h.total_size();
        }
        if verify_crc {
            stats.bytes_checked += used as u64;
        }
        let at = pos + used as u64;
        if used == buf.len() {
            pos = at;
            continue;
        }
        let rest = &buf[used..];
        match BatchHeader::parse(rest) {
            // A batch cut by the end of the chunk (not of the file).
            Some(h) if h.is_plausible() && h.total_size() > rest.len() => {
                let total = h.total_size();
                if at + total as u64 > end {
                    return Ok(at);
                }
                if used > 0 {
                    pos = at;
                    continue;
                }
                // A single batch larger than the chunk.
                let big = file.read_at(at, total).await?;
                stats.bytes_read += big.len() as u64;
                let whole = big.len() == total && (!verify_crc || record::verify_crc(&big));
                if !whole || !visit(&h) {
                    return Ok(at);
                }
                if verify_crc {
                    stats.bytes_checked += total as u64;
                }
                pos = at + total as u64;
            }
            // A header cut by the end of the chunk.
            None if used > 0 && at + (rest.len() as u64) < end => pos = at,
            _ => return Ok(at),
        }
    }
    Ok(pos.min(end))
}

/// The first intact batch (plausible header, CRC matching) starting at or
/// after `from` whose offsets are at least `min_base` and below `limit`.
async fn find_next_batch(
    file: &LogFile,
    from: u64,
    end: u64,
    min_base: i64,
    limit: Option<i64>,
    stats: &mut Stats,
) -> io::Result<Option<(u64, BatchHeader)>> {
    let mut pos = from;
    while pos + BATCH_HEADER_LEN as u64 <= end {
        crate::io::yield_if_needed().await;
        let want = CHUNK.min((end - pos) as usize);
        let buf = file.read_at(pos, want).await?;
        stats.bytes_read += buf.len() as u64;
        if buf.len() < BATCH_HEADER_LEN {
            break;
        }
        let last_start = buf.len() - BATCH_HEADER_LEN;
        for i in 0..=last_start {
            if buf[i + MAGIC_OFFSET] != MAGIC_V2 as u8 {
                continue;
            }
            let Some(h) = BatchHeader::parse(&buf[i..]) else {
                break;
            };
            if !h.is_plausible() || h.base_offset < min_base || limit.is_some_and(|l| h.last_offset() >= l) {
                continue;
            }
            let at = pos + i as u64;
            let total = h.total_size();
            if at + total as u64 > end {
                continue;
            }
            let intact = match buf.get(i..i + total) {
                Some(b) => record::verify_crc(b),
                None => {
                    let b = file.read_at(at, total).await?;
                    stats.bytes_read += b.len() as u64;
                    b.len() == total && record::verify_crc(&b)
                }
            };
            if intact {
                return Ok(Some((at, h)));
            }
        }
        pos += (last_start + 1) as u64;
    }
    Ok(None)
}

struct LoadedIndex {
    index: OffsetIndex,
    time_index: TimeIndex,
    /// Where the walk starts: the last entry's batch.
    position: u64,
    offset: i64,
}

/// Load a segment's index files, keeping the entries below `upto` (the
/// recovery point, for the segment holding it). `None` when they are
/// missing, malformed or their last entry does not point at the batch it
/// names (then the segment is walked from its start).
async fn load_index(
    file: &LogFile,
    seg: &Segment,
    size: u64,
    upto: Option<i64>,
    stats: &mut Stats,
) -> io::Result<Option<LoadedIndex>> {
    let (Some(idx), Some(tidx)) = (
        crate::io::file::read_file(&seg.index_path()).await?,
        crate::io::file::read_file(&seg.time_index_path()).await?,
    ) else {
        return Ok(None);
    };
    let (Some(mut index), Some(mut time_index)) = (OffsetIndex::decode(&idx, size), TimeIndex::decode(&tidx)) else {
        return Ok(None);
    };
    if let Some(rp) = upto {
        index.truncate_to_relative_offset(seg.relative(rp));
    }
    let Some((rel, position)) = index.last() else {
        return Ok(Some(LoadedIndex {
            index,
            time_index: TimeIndex::new(),
            position: 0,
            offset: seg.base_offset,
        }));
    };
    let offset = seg.base_offset + i64::from(rel);
    let head = file.read_at(u64::from(position), BATCH_HEADER_LEN).await?;
    stats.bytes_read += head.len() as u64;
    match BatchHeader::parse(&head) {
        Some(h) if h.is_plausible() && h.base_offset == offset => {}
        _ => return Ok(None),
    }
    time_index.truncate_to_relative_offset(rel.saturating_add(1));
    Ok(Some(LoadedIndex {
        index,
        time_index,
        position: u64::from(position),
        offset,
    }))
}

/// Collect the idempotent batches with offsets in [`from`, `to`) from the
/// segments (batch headers only, no CRC: this data is below the recovery
/// point), skipping unreadable regions.
async fn replay_headers(
    segments: &[Segment],
    from: i64,
    to: i64,
    out: &mut Vec<ProducerBatch>,
    stats: &mut Stats,
) -> io::Result<()> {
    for seg in segments.iter().filter(|s| s.base_offset < to && s.next_offset > from) {
        let Some(file) = &seg.file else { continue };
        let mut pos = if from > seg.base_offset {
            u64::from(seg.index.lookup(seg.relative(from)))
        } else {
            0
        };
        loop {
            let end = seg.readable_end(pos);
            let mut visit = |h: &BatchHeader| -> bool {
                if h.base_offset >= to {
                    return false;
                }
                if h.base_offset >= from && h.has_producer_id() && !h.is_control() {
                    out.push(ProducerBatch {
                        producer_id: h.producer_id,
                        epoch: h.producer_epoch,
                        meta: crate::log::producer_state::BatchMeta {
                            first_seq: h.base_sequence,
                            last_seq: crate::log::producer_state::last_sequence(h.base_sequence, h.last_offset_delta),
                            first_offset: h.base_offset,
                            last_offset: h.last_offset(),
                        },
                        timestamp: h.max_timestamp.max(seg.modified_ms),
                    });
                }
                true
            };
            let stopped = visit_batches(file, pos, end, false, stats, &mut visit).await?;
            match seg.corrupt.iter().find(|c| c.position == end && c.end_position > end) {
                Some(c) if stopped == end => pos = c.end_position,
                _ => break,
            }
        }
    }
    Ok(())
}

/// Remove what recovery does not use: files of segments deleted by retention
/// (`*.deleted`, whose removal a restart cut short), index files of
/// segments whose log is gone (a crash between renaming a deleted segment's
/// index files and its log) and temporary files of interrupted atomic
/// writes (`*.tmp`).
async fn remove_leftovers(dir: &Path, segments: &[Segment]) {
    let Ok(entries) = crate::io::fs::read_dir(dir).await else {
        return;
    };
    for e in entries {
        let name = &e.name;
        let stale = name.ends_with(DELETED_SUFFIX)
            || name.ends_with(".tmp")
            || parse_index_file_name(name).is_some_and(|base| !segments.iter().any(|s| s.base_offset == base));
        if stale && !e.is_dir {
            let path = dir.join(name);
            if let Err(err) = crate::io::fs::remove_file(&path).await {
                tracing::warn!("removing {}: {err}", path.display());
            }
        }
    }
}

/// Whether the file holds only zeros from `from` to `to` (O_DIRECT padding
/// of a segment that was not cut to size before a crash).
async fn is_zero_padding(file: &LogFile, from: u64, to: u64) -> io::Result<bool> {
    if to - from > 2 * ALIGN {
        return Ok(false);
    }
    let data = file.read_at(from, (to - from) as usize).await?;
    Ok(data.iter().all(|&b| b == 0))
}
