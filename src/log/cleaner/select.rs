//! Which partition to compact and which of its segments (Kafka's
//! `LogCleanerManager.cleanableOffsets` / `grabFilthiestCompactedLog` and
//! `Cleaner.groupSegmentsBySize`). Pure: no IO, the caller describes the
//! segments.
//!
//! A compacted log has a clean head (below the cleaner checkpoint, the
//! "first dirty offset") and a dirty tail. The dirty tail is cleanable up to
//! the first uncleanable offset: never the active segment, never past the
//! last stable offset (high watermark / open transactions), never a segment
//! whose newest record is younger than `min.compaction.lag.ms`. A partition
//! is cleaned when its dirty ratio (cleanable bytes / (clean + cleanable
//! bytes)) is above `min.cleanable.dirty.ratio`, or when a dirty segment's
//! first batch is older than `max.compaction.lag.ms` allows; among those the
//! dirtiest goes first.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::config::BrokerConfig;

/// What selection needs to know about one segment of a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanerSegment {
    /// First offset of the segment.
    pub base_offset: i64,
    /// Bytes in the segment's log file.
    pub size: u64,
    /// Bytes of the larger of its two index files (grouping keeps a merged
    /// segment's indexes within `segment.index.bytes`).
    pub index_bytes: u64,
    /// Largest record timestamp (Kafka uses it for `min.compaction.lag.ms`);
    /// negative when unknown.
    pub largest_timestamp: i64,
    /// Max timestamp of the segment's first batch (Kafka's
    /// `getFirstBatchTimestamp`, for `max.compaction.lag.ms`); negative or
    /// zero when unknown, which never forces compaction.
    pub first_batch_timestamp: i64,
    /// The active (newest, written) segment: never cleaned, nor anything
    /// after it. The last segment is treated as active in any case.
    pub active: bool,
}

/// A topic's compaction settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CompactionConfig {
    /// `min.cleanable.dirty.ratio` (0..=1).
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: records stay uncompacted at least this long.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: records stay uncompacted at most about this long.
    pub max_compaction_lag_ms: i64,
    /// `delete.retention.ms`: how long tombstones survive in the clean part.
    pub delete_retention_ms: i64,
    /// `segment.bytes`: the largest segment a cleaning pass writes.
    pub segment_bytes: u64,
    /// `segment.index.bytes`: the largest index a cleaning pass writes.
    pub max_index_bytes: u64,
}

impl Default for CompactionConfig {
    /// Kafka's defaults.
    fn default() -> Self {
        CompactionConfig {
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            delete_retention_ms: 86_400_000,
            segment_bytes: 1 << 30,
            max_index_bytes: 10 << 20,
        }
    }
}

impl CompactionConfig {
    /// Resolve a topic's overrides against the broker's settings, as
    /// [`crate::config::TopicConfig::resolve`] does for the other properties.
    pub fn resolve(overrides: &BTreeMap<String, String>, broker: &BrokerConfig) -> CompactionConfig {
        let get = |name: &str| -> String {
            match overrides.get(name) {
                Some(v) => v.clone(),
                None => broker.topic_default(name),
            }
        };
        let long = |name: &str, dflt: i64| get(name).trim().parse::<i64>().unwrap_or(dflt);
        let d = CompactionConfig::default();
        let ratio = get("min.cleanable.dirty.ratio")
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|r| r.is_finite())
            .map_or(d.min_cleanable_dirty_ratio, |r| r.clamp(0.0, 1.0));
        CompactionConfig {
            min_cleanable_dirty_ratio: ratio,
            min_compaction_lag_ms: long("min.compaction.lag.ms", d.min_compaction_lag_ms).max(0),
            max_compaction_lag_ms: long("max.compaction.lag.ms", d.max_compaction_lag_ms).max(0),
            delete_retention_ms: long("delete.retention.ms", d.delete_retention_ms).max(0),
            segment_bytes: long("segment.bytes", 1 << 30).max(14) as u64,
            max_index_bytes: long("segment.index.bytes", 10 << 20).max(0) as u64,
        }
    }
}

/// The offsets of a partition selection needs besides its segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogOffsets {
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// The cleaner never passes it: the high watermark, or the first offset
    /// of the oldest open transaction when lower.
    pub last_stable_offset: i64,
}

/// A partition's cleanable range and how dirty it is (Kafka's `LogToClean`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cleanable {
    /// Where the dirty part starts: the checkpoint, or the log start offset
    /// when the checkpoint is missing or invalid.
    pub first_dirty_offset: i64,
    /// The checkpoint was below the log start or past the log end and was
    /// reset: the caller should write `first_dirty_offset` back.
    pub reset_checkpoint: bool,
    /// Cleaning stops before this offset: the base offset of the first
    /// segment that may not be cleaned (never below `first_dirty_offset`'s
    /// segment).
    pub first_uncleanable_offset: i64,
    /// Bytes of the segments before the first dirty offset.
    pub clean_bytes: u64,
    /// Bytes of the segments from the first dirty offset to the first
    /// uncleanable one. As in Kafka, a segment holding the first dirty
    /// offset (checkpoint inside it) counts in both.
    pub cleanable_bytes: u64,
    /// `cleanable / (clean + cleanable)`, 0 for an empty log.
    pub dirty_ratio: f64,
    /// How far past `max.compaction.lag.ms` the oldest dirty segment is
    /// (0: not past).
    pub max_compaction_delay_ms: i64,
    /// Clean now: `dirty_ratio > min.cleanable.dirty.ratio` (strictly, as
    /// Kafka), or the max lag is exceeded with something to clean.
    pub must_clean: bool,
}

impl Cleanable {
    pub fn total_bytes(&self) -> u64 {
        self.clean_bytes.saturating_add(self.cleanable_bytes)
    }

    /// Whether `max.compaction.lag.ms` forces a cleaning.
    pub fn needs_compaction_now(&self) -> bool {
        self.max_compaction_delay_ms > 0
    }
}

/// Index of the segment holding `offset` (the last one with `base_offset <=
/// offset`), or 0 when `offset` is before the first.
fn floor_segment(segments: &[CleanerSegment], offset: i64) -> usize {
    segments.partition_point(|s| s.base_offset <= offset).saturating_sub(1)
}

/// Index of the active segment: the first marked active, else the last.
fn active_index(segments: &[CleanerSegment]) -> usize {
    debug_assert!(
        segments.last().is_none_or(|s| s.active),
        "the last segment is the active one"
    );
    segments
        .iter()
        .position(|s| s.active)
        .unwrap_or(segments.len().saturating_sub(1))
}

/// Compute a partition's cleanable range and dirtiness at `now_ms`, from its
/// segments (oldest first, the active one last), its offsets and its cleaner
/// checkpoint (`None`: never cleaned). `None` if it has no segment.
pub fn cleanable(
    segments: &[CleanerSegment],
    offsets: LogOffsets,
    checkpoint: Option<i64>,
    now_ms: i64,
    cfg: &CompactionConfig,
) -> Option<Cleanable> {
    let first = segments.first()?;
    debug_assert!(segments.windows(2).all(|w| w[0].base_offset < w[1].base_offset));
    let log_start = offsets.log_start_offset.max(first.base_offset);
    let (first_dirty, reset_checkpoint) = match checkpoint {
        None => (log_start, false),
        Some(c) if c < log_start || c > offsets.log_end_offset => (log_start, true),
        Some(c) => (c, false),
    };
    let active = active_index(segments);
    // Dirty non-active segments: from the one holding the first dirty
    // offset up to the active one.
    let dirty_start = floor_segment(segments, first_dirty);
    let dirty = segments.get(dirty_start..active).unwrap_or(&[]);

    let mut uncleanable = offsets.last_stable_offset.min(segments[active].base_offset);
    let min_lag = cfg.min_compaction_lag_ms.max(0);
    if min_lag > 0 {
        let young = now_ms.saturating_sub(min_lag);
        if let Some(s) = dirty.iter().find(|s| s.largest_timestamp > young) {
            uncleanable = uncleanable.min(s.base_offset);
        }
    }
    let uncleanable = uncleanable.max(first_dirty);
    // Round down to a segment boundary: the first uncleanable segment is the
    // non-active one holding that offset, else the active one.
    let unclean_idx = floor_segment(segments, uncleanable).min(active);
    let first_uncleanable_offset = segments[unclean_idx].base_offset;

    let clean_bytes: u64 = segments
        .iter()
        .take_while(|s| s.base_offset < first_dirty)
        .map(|s| s.size)
        .sum();
    let from = floor_segment(segments, first_dirty.min(first_uncleanable_offset));
    let cleanable_bytes: u64 = segments
        .get(from..unclean_idx)
        .unwrap_or(&[])
        .iter()
        .map(|s| s.size)
        .sum();
    let total = clean_bytes.saturating_add(cleanable_bytes);
    let dirty_ratio = if total == 0 {
        0.0
    } else {
        cleanable_bytes as f64 / total as f64
    };

    let earliest = dirty
        .iter()
        .map(|s| s.first_batch_timestamp)
        .filter(|&t| t > 0)
        .min()
        .unwrap_or(i64::MAX);
    let clean_until = now_ms.saturating_sub(cfg.max_compaction_lag_ms.max(0));
    let max_compaction_delay_ms = if earliest < clean_until {
        clean_until.saturating_sub(earliest)
    } else {
        0
    };
    let must_clean =
        (max_compaction_delay_ms > 0 && cleanable_bytes > 0) || dirty_ratio > cfg.min_cleanable_dirty_ratio;
    debug_assert!(first_uncleanable_offset <= uncleanable);
    Some(Cleanable {
        first_dirty_offset: first_dirty,
        reset_checkpoint,
        first_uncleanable_offset,
        clean_bytes,
        cleanable_bytes,
        dirty_ratio,
        max_compaction_delay_ms,
        must_clean,
    })
}

/// The partition to clean next: among those with data that must be cleaned,
/// the one with the highest dirty ratio (the first of equals).
pub fn pick_filthiest<K>(candidates: impl IntoIterator<Item = (K, Cleanable)>) -> Option<(K, Cleanable)> {
    let mut best: Option<(K, Cleanable)> = None;
    for (k, c) in candidates {
        if c.total_bytes() == 0 || !c.must_clean {
            continue;
        }
        if best.as_ref().is_none_or(|(_, b)| c.dirty_ratio > b.dirty_ratio) {
            best = Some((k, c));
        }
    }
    best
}

/// The segments a cleaning pass that mapped offsets below `end_offset`
/// rewrites: every non-active segment starting below it, from the first
/// (the clean part is rewritten too, dropping what the dirty part made
/// obsolete). A range of indexes into `segments`.
pub fn segments_to_clean(segments: &[CleanerSegment], end_offset: i64) -> Range<usize> {
    let active = active_index(segments);
    0..segments[..active].partition_point(|s| s.base_offset < end_offset)
}

/// Split `segments` (consecutive, oldest first) into groups each rewritten
/// as one new segment (Kafka's `groupSegmentsBySize`): a group grows while
/// its total size stays within `max_bytes`, its index size within
/// `max_index_bytes`, and its offsets within `i32::MAX` of its base offset
/// (indexes store offsets relative to it). The last offset of a segment is
/// taken as the next one's base minus one, or `first_uncleanable_offset - 1`
/// for the last; empty segments skip the offset check (so that a run of
/// them never piles up). Returns index ranges covering `segments` in order.
pub fn group_segments_by_size(
    segments: &[CleanerSegment],
    max_bytes: u64,
    max_index_bytes: u64,
    first_uncleanable_offset: i64,
) -> Vec<Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < segments.len() {
        let base = segments[start].base_offset;
        let mut size = segments[start].size;
        let mut index = segments[start].index_bytes;
        let mut end = start + 1;
        while let Some(next) = segments.get(end) {
            let last_offset = segments
                .get(end + 1)
                .map_or(first_uncleanable_offset, |s| s.base_offset)
                .saturating_sub(1);
            let fits = size.saturating_add(next.size) <= max_bytes
                && index.saturating_add(next.index_bytes) <= max_index_bytes
                && (next.size == 0 || last_offset.saturating_sub(base) <= i64::from(i32::MAX));
            if !fits {
                break;
            }
            size += next.size;
            index += next.index_bytes;
            end += 1;
        }
        groups.push(start..end);
        start = end;
    }
    debug_assert_eq!(groups.iter().map(|g| g.len()).sum::<usize>(), segments.len());
    groups
}

/// Kafka's (pre-KIP-534) tombstone horizon for a pass: the newest timestamp
/// of the last clean segment minus `delete.retention.ms`. Tombstones of a
/// segment whose largest timestamp is at or before it may be dropped (they
/// have been in the clean part long enough for consumers to see them). With
/// no clean segment yet, nothing is dropped.
pub fn delete_horizon_ms(segments: &[CleanerSegment], first_dirty_offset: i64, delete_retention_ms: i64) -> i64 {
    let last_clean = segments
        .iter()
        .take_while(|s| s.base_offset < first_dirty_offset)
        .last();
    match last_clean {
        Some(s) if s.largest_timestamp >= 0 => s.largest_timestamp.saturating_sub(delete_retention_ms.max(0)),
        _ => i64::MIN,
    }
}

/// Whether a cleaning pass may drop the tombstones of `segment`, whose
/// offsets end before `segment_end_offset` (the next segment's base), when
/// its key map covers offsets below `map_end_offset`:
///
/// - the segment is at or before the delete horizon (see
///   [`delete_horizon_ms`]; an unknown timestamp keeps tombstones), and
/// - every offset of the segment is below the map's end. A tombstone past
///   the map's end is not in the map, so the older records of its key in
///   earlier segments may survive this pass; dropping the tombstone now
///   would bring them back. (Kafka relies on segment modification times
///   growing along the log for this; record timestamps need not.)
pub fn drop_tombstones(
    segment: &CleanerSegment,
    segment_end_offset: i64,
    map_end_offset: i64,
    horizon_ms: i64,
) -> bool {
    segment_end_offset <= map_end_offset && segment.largest_timestamp >= 0 && segment.largest_timestamp <= horizon_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 10_000_000;

    /// Segments of the given sizes at base offsets 0, 100, 200, …, all
    /// timestamps `NOW - 1000`, the last one active.
    fn segs(sizes: &[u64]) -> Vec<CleanerSegment> {
        let n = sizes.len();
        sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| CleanerSegment {
                base_offset: i as i64 * 100,
                size,
                index_bytes: 0,
                largest_timestamp: NOW - 1000,
                first_batch_timestamp: NOW - 2000,
                active: i + 1 == n,
            })
            .collect()
    }

    fn offsets(segments: &[CleanerSegment]) -> LogOffsets {
        let end = segments.last().map_or(0, |s| s.base_offset + 50);
        LogOffsets {
            log_start_offset: 0,
            log_end_offset: end,
            last_stable_offset: end,
        }
    }

    #[test]
    fn never_cleaned_log_is_all_dirty() {
        let s = segs(&[100, 100, 100, 40]);
        let c = cleanable(&s, offsets(&s), None, NOW, &CompactionConfig::default()).unwrap();
        assert_eq!(c.first_dirty_offset, 0);
        assert_eq!(c.first_uncleanable_offset, 300, "the active segment is uncleanable");
        assert_eq!((c.clean_bytes, c.cleanable_bytes), (0, 300));
        assert_eq!(c.dirty_ratio, 1.0);
        assert!(c.must_clean && !c.reset_checkpoint && !c.needs_compaction_now());
        assert_eq!(
            cleanable(&[], offsets(&s), None, NOW, &CompactionConfig::default()),
            None
        );
    }

    #[test]
    fn ratio_must_exceed_the_minimum() {
        let s = segs(&[100, 100, 100, 100, 40]);
        let cfg = CompactionConfig::default();
        // Checkpoint at 200: 200 clean bytes, 200 dirty: ratio exactly 0.5.
        let c = cleanable(&s, offsets(&s), Some(200), NOW, &cfg).unwrap();
        assert_eq!((c.clean_bytes, c.cleanable_bytes), (200, 200));
        assert_eq!(c.dirty_ratio, 0.5);
        assert!(!c.must_clean, "Kafka cleans when ratio > min, not >=");
        let c = cleanable(&s, offsets(&s), Some(100), NOW, &cfg).unwrap();
        assert_eq!(c.dirty_ratio, 0.75);
        assert!(c.must_clean);
        // Checkpoint inside segment 1: it counts as clean and as dirty.
        let c = cleanable(&s, offsets(&s), Some(150), NOW, &cfg).unwrap();
        assert_eq!((c.clean_bytes, c.cleanable_bytes), (200, 300));
        // Fully cleaned: nothing dirty.
        let c = cleanable(&s, offsets(&s), Some(400), NOW, &cfg).unwrap();
        assert_eq!((c.cleanable_bytes, c.first_uncleanable_offset), (0, 400));
        assert!(!c.must_clean);
    }

    #[test]
    fn invalid_checkpoint_resets_to_log_start() {
        let s = segs(&[100, 100, 40]);
        let mut o = offsets(&s);
        o.log_start_offset = 30;
        let cfg = CompactionConfig::default();
        let c = cleanable(&s, o, Some(10), NOW, &cfg).unwrap();
        assert_eq!((c.first_dirty_offset, c.reset_checkpoint), (30, true));
        let c = cleanable(&s, o, Some(o.log_end_offset + 1), NOW, &cfg).unwrap();
        assert_eq!((c.first_dirty_offset, c.reset_checkpoint), (30, true));
        let c = cleanable(&s, o, Some(o.log_end_offset), NOW, &cfg).unwrap();
        assert_eq!((c.first_dirty_offset, c.reset_checkpoint), (o.log_end_offset, false));
    }

    #[test]
    fn min_compaction_lag_holds_young_segments() {
        let mut s = segs(&[100, 100, 100, 100, 40]);
        s[2].largest_timestamp = NOW - 10;
        let cfg = CompactionConfig {
            min_compaction_lag_ms: 100,
            ..CompactionConfig::default()
        };
        let c = cleanable(&s, offsets(&s), None, NOW, &cfg).unwrap();
        assert_eq!(c.first_uncleanable_offset, 200);
        assert_eq!(c.cleanable_bytes, 200);
        // Exactly at the lag is old enough (uncleanable means ts > now - lag).
        s[2].largest_timestamp = NOW - 100;
        let c = cleanable(&s, offsets(&s), None, NOW, &cfg).unwrap();
        assert_eq!(c.first_uncleanable_offset, 400);
        // No lag: the young segment is cleanable.
        s[2].largest_timestamp = NOW;
        let c = cleanable(&s, offsets(&s), None, NOW, &CompactionConfig::default()).unwrap();
        assert_eq!(c.first_uncleanable_offset, 400);
    }

    #[test]
    fn last_stable_offset_rounds_down_to_its_segment() {
        let s = segs(&[100, 100, 100, 40]);
        let mut o = offsets(&s);
        o.last_stable_offset = 150;
        let c = cleanable(&s, o, None, NOW, &CompactionConfig::default()).unwrap();
        assert_eq!(c.first_uncleanable_offset, 100);
        assert_eq!(c.cleanable_bytes, 100);
        // Never below the first dirty offset's segment.
        let c = cleanable(&s, o, Some(200), NOW, &CompactionConfig::default()).unwrap();
        assert_eq!((c.first_dirty_offset, c.first_uncleanable_offset), (200, 200));
        assert_eq!(c.cleanable_bytes, 0);
    }

    #[test]
    fn max_compaction_lag_forces_cleaning() {
        let mut s = segs(&[100, 100, 100, 100, 40]);
        let cfg = CompactionConfig {
            max_compaction_lag_ms: 5000,
            ..CompactionConfig::default()
        };
        // Ratio 0.5 is not enough by itself.
        let c = cleanable(&s, offsets(&s), Some(200), NOW, &cfg).unwrap();
        assert!(!c.must_clean && c.max_compaction_delay_ms == 0);
        s[2].first_batch_timestamp = NOW - 8000;
        let c = cleanable(&s, offsets(&s), Some(200), NOW, &cfg).unwrap();
        assert_eq!(c.max_compaction_delay_ms, 3000);
        assert!(c.needs_compaction_now() && c.must_clean);
        // Only dirty segments count: an old clean segment does not force.
        let mut s = segs(&[100, 100, 100, 100, 40]);
        s[0].first_batch_timestamp = NOW - 8000;
        let c = cleanable(&s, offsets(&s), Some(200), NOW, &cfg).unwrap();
        assert!(!c.must_clean);
        // Unknown timestamps (<= 0) never force; nor does a lag with nothing cleanable.
        s[3].first_batch_timestamp = 0;
        let c = cleanable(&s, offsets(&s), Some(200), NOW, &cfg).unwrap();
        assert!(!c.must_clean);
        let mut s = segs(&[100, 100]);
        s[1].first_batch_timestamp = NOW - 8000;
        let c = cleanable(&s, offsets(&s), Some(100), NOW, &cfg).unwrap();
        assert_eq!(c.cleanable_bytes, 0);
        assert!(!c.must_clean);
    }

    #[test]
    fn picks_the_dirtiest_cleanable_partition() {
        let cfg = CompactionConfig::default();
        let s = segs(&[100, 100, 100, 100, 40]);
        let a = cleanable(&s, offsets(&s), Some(100), NOW, &cfg).unwrap(); // 0.75
        let b = cleanable(&s, offsets(&s), None, NOW, &cfg).unwrap(); // 1.0
        let c = cleanable(&s, offsets(&s), Some(200), NOW, &cfg).unwrap(); // 0.5, not cleanable
        assert_eq!(pick_filthiest([("a", a), ("b", b), ("c", c)]).map(|p| p.0), Some("b"));
        assert_eq!(pick_filthiest([("a", a), ("b2", b), ("b", b)]).map(|p| p.0), Some("b2"));
        assert_eq!(pick_filthiest([("c", c)]).map(|p| p.0), None);
        let empty = segs(&[0, 0]);
        let e = cleanable(&empty, offsets(&empty), None, NOW, &cfg).unwrap();
        assert_eq!(pick_filthiest([("e", e)]).map(|p| p.0), None);
        // A forced (max lag) partition is picked even with a lower ratio.
        let mut forced = c;
        forced.max_compaction_delay_ms = 1;
        forced.must_clean = true;
        assert_eq!(pick_filthiest([("f", forced)]).map(|p| p.0), Some("f"));
    }

    #[test]
    fn grouping_by_size_and_index() {
        let s = segs(&[40, 40, 40, 30, 50, 10]);
        let g = group_segments_by_size(&s, 100, u64::MAX, 600);
        assert_eq!(g, vec![0..2, 2..4, 4..6]);
        assert_eq!(group_segments_by_size(&s, 1000, u64::MAX, 600), vec![0..6]);
        assert_eq!(
            group_segments_by_size(&s, 10, u64::MAX, 600).len(),
            6,
            "oversized segments stand alone"
        );
        let mut s = segs(&[1, 1, 1, 1]);
        for x in &mut s {
            x.index_bytes = 40;
        }
        assert_eq!(group_segments_by_size(&s, 1000, 80, 400), vec![0..2, 2..4]);
        assert!(group_segments_by_size(&[], 100, 100, 0).is_empty());
    }

    #[test]
    fn grouping_keeps_relative_offsets_in_i32() {
        let big = i64::from(i32::MAX);
        let seg = |base: i64, size: u64| CleanerSegment {
            base_offset: base,
            size,
            index_bytes: 0,
            largest_timestamp: 0,
            first_batch_timestamp: 0,
            active: false,
        };
        // Segment 1 ends exactly i32::MAX after segment 0's base: fits.
        let s = [seg(0, 10), seg(100, 10), seg(big + 1, 10)];
        assert_eq!(group_segments_by_size(&s, 1000, 1000, big + 50), vec![0..2, 2..3]);
        // One more offset and it does not; the next group starts at 100.
        let s = [seg(0, 10), seg(100, 10), seg(big + 2, 10)];
        assert_eq!(group_segments_by_size(&s, 1000, 1000, big + 50), vec![0..1, 1..3]);
        let s = [seg(0, 10), seg(100, 10)];
        assert_eq!(group_segments_by_size(&s, 1000, 1000, big + 2), vec![0..1, 1..2]);
        // Empty segments skip the check.
        let s = [seg(0, 10), seg(100, 0)];
        assert_eq!(group_segments_by_size(&s, 1000, 1000, big + 2), vec![0..2]);
    }

    #[test]
    fn segments_to_clean_stop_at_the_map_end_and_the_active_segment() {
        let s = segs(&[10, 10, 10, 10]);
        assert_eq!(segments_to_clean(&s, 150), 0..2);
        assert_eq!(segments_to_clean(&s, 200), 0..2);
        assert_eq!(segments_to_clean(&s, 201), 0..3);
        assert_eq!(segments_to_clean(&s, 10_000), 0..3);
        assert_eq!(segments_to_clean(&s, 0), 0..0);
    }

    #[test]
    fn tombstone_horizon() {
        let mut s = segs(&[10, 10, 10, 10]);
        s[0].largest_timestamp = 5000;
        s[1].largest_timestamp = 9000;
        s[2].largest_timestamp = 9500;
        assert_eq!(delete_horizon_ms(&s, 0, 1000), i64::MIN, "nothing clean yet");
        assert_eq!(delete_horizon_ms(&s, 100, 1000), 4000);
        assert_eq!(delete_horizon_ms(&s, 150, 1000), 8000);
        let h = delete_horizon_ms(&s, 200, 1000);
        assert!(drop_tombstones(&s[0], 100, 200, h));
        assert!(!drop_tombstones(&s[2], 300, 300, h), "too young");
        // Old enough, but not entirely mapped by this pass.
        s[2].largest_timestamp = 100;
        assert!(!drop_tombstones(&s[2], 300, 250, h));
        assert!(drop_tombstones(&s[2], 300, 300, h));
        s[0].largest_timestamp = -1;
        assert!(!drop_tombstones(&s[0], 100, 200, h));
    }

    #[test]
    fn config_resolves_topic_overrides() {
        let broker = BrokerConfig::from_properties(&Default::default(), BTreeMap::new()).unwrap();
        let c = CompactionConfig::resolve(&BTreeMap::new(), &broker);
        assert_eq!(c, CompactionConfig::default());
        let o = BTreeMap::from([
            ("min.cleanable.dirty.ratio".to_string(), "0.1".to_string()),
            ("min.compaction.lag.ms".to_string(), "5".to_string()),
            ("max.compaction.lag.ms".to_string(), "7".to_string()),
            ("delete.retention.ms".to_string(), "9".to_string()),
            ("segment.bytes".to_string(), "1024".to_string()),
        ]);
        let c = CompactionConfig::resolve(&o, &broker);
        assert_eq!(c.min_cleanable_dirty_ratio, 0.1);
        assert_eq!((c.min_compaction_lag_ms, c.max_compaction_lag_ms), (5, 7));
        assert_eq!((c.delete_retention_ms, c.segment_bytes), (9, 1024));
    }
}
