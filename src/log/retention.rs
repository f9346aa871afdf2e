//! Delete retention (`cleanup.policy=delete`): which of a partition's oldest
//! segments `retention.ms` and `retention.bytes` remove. Pure: no IO.
//!
//! The rules are Kafka's (`UnifiedLog.deleteOldSegments`):
//!
//! * only whole segments go, oldest first, and the scan stops at the first
//!   segment that may not go;
//! * time: a segment goes when `now - largest timestamp > retention.ms`
//!   (`retention.ms < 0`: no time limit). A segment whose largest timestamp
//!   is in the future therefore stays, and so do the segments after it
//!   (Kafka 4 keeps it too and logs a warning, which
//!   [`RetentionDecision::future_timestamp`] lets the caller do): only the
//!   size limit (or deleting records) removes it. CreateTime topics refuse
//!   timestamps more than `message.timestamp.after.max.ms` (1 hour by
//!   default) ahead, so only data written before that check, or under a
//!   larger setting, can hold time retention up;
//! * size: after the time rule, the oldest segments go while the log stays
//!   at least `retention.bytes` large without them (`total - size >=
//!   retention.bytes`; `retention.bytes < 0`: no size limit);
//! * a segment goes only when all its offsets are below the high watermark
//!   (its upper bound, the next segment's base offset, is at most the high
//!   watermark), so the log start offset never passes the high watermark.
//!
//! The active (last) segment is never deleted here; as in Kafka,
//! `PartitionLog::enforce_retention` rolls it when every older segment goes
//! and its own newest record has expired too, and the next pass deletes it
//! once sealed (so lowering `retention.ms` empties a topic).

/// What retention needs to know about one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentSummary {
    /// First offset of the segment.
    pub base_offset: i64,
    /// Bytes in the segment.
    pub size: u64,
    /// Largest record timestamp in the segment (Kafka falls back to the file's
    /// modification time when no record has one); negative when unknown,
    /// which keeps the segment from time retention.
    pub largest_timestamp: i64,
    /// Complete and on disk: sealed (a newer segment exists) and no write of
    /// it is in flight. The scan stops at the first segment that is not.
    pub complete: bool,
}

/// A topic's delete-retention limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionLimits {
    /// `retention.ms`; negative: no time limit.
    pub retention_ms: i64,
    /// `retention.bytes`; negative: no size limit.
    pub retention_bytes: i64,
}

/// How many of the oldest segments go, and why.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionDecision {
    /// The oldest `by_time` segments breached `retention.ms`.
    pub by_time: usize,
    /// The `by_size` segments after those breached `retention.bytes`.
    pub by_size: usize,
    /// The time rule stopped at a segment (otherwise deletable) whose
    /// largest timestamp is in the future: its base offset and that
    /// timestamp (Kafka warns about it on every check).
    pub future_timestamp: Option<(i64, i64)>,
}

impl RetentionDecision {
    /// Number of oldest segments to delete.
    pub fn count(&self) -> usize {
        self.by_time + self.by_size
    }
}

/// Decide which of `segments` (oldest first, the active segment last) delete
/// retention removes at `now_ms`, given the partition's high watermark. The
/// answer is a count of leading segments; it never includes the last one.
pub fn segments_to_delete(
    segments: &[SegmentSummary],
    high_watermark: i64,
    limits: RetentionLimits,
    now_ms: i64,
) -> RetentionDecision {
    // Candidates: every segment but the active one, while complete and
    // entirely below the high watermark.
    let candidates = segments
        .windows(2)
        .take_while(|w| w[0].complete && w[1].base_offset <= high_watermark)
        .count();
    let mut decision = RetentionDecision::default();
    if limits.retention_ms >= 0 {
        decision.by_time = segments[..candidates]
            .iter()
            .take_while(|s| {
                s.largest_timestamp >= 0 && now_ms.saturating_sub(s.largest_timestamp) > limits.retention_ms
            })
            .count();
        decision.future_timestamp = segments[..candidates]
            .get(decision.by_time)
            .filter(|s| s.largest_timestamp > now_ms)
            .map(|s| (s.base_offset, s.largest_timestamp));
    }
    if limits.retention_bytes >= 0 {
        let total: u64 = segments[decision.by_time..].iter().map(|s| s.size).sum();
        let mut excess = i128::from(total) - i128::from(limits.retention_bytes);
        decision.by_size = segments[decision.by_time..candidates]
            .iter()
            .take_while(|s| {
                let after = excess - i128::from(s.size);
                if after >= 0 {
                    excess = after;
                    true
                } else {
                    false
                }
            })
            .count();
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    /// Segments of `size` bytes each with base offsets 0, 10, 20, … and
    /// the given largest timestamps; all complete.
    fn segs(size: u64, timestamps: &[i64]) -> Vec<SegmentSummary> {
        timestamps
            .iter()
            .enumerate()
            .map(|(i, &ts)| SegmentSummary {
                base_offset: i as i64 * 10,
                size,
                largest_timestamp: ts,
                complete: i + 1 < timestamps.len(),
            })
            .collect()
    }

    fn limits(retention_ms: i64, retention_bytes: i64) -> RetentionLimits {
        RetentionLimits {
            retention_ms,
            retention_bytes,
        }
    }

    #[test]
    fn unlimited_keeps_everything() {
        let s = segs(100, &[0, 0, 0, 0]);
        assert_eq!(segments_to_delete(&s, 40, limits(-1, -1), NOW).count(), 0);
        assert_eq!(segments_to_delete(&[], 0, limits(0, 0), NOW).count(), 0);
    }

    #[test]
    fn time_deletes_the_expired_prefix_only() {
        // Segment 2 is recent: segment 3 (old again) must stay as well.
        let s = segs(100, &[NOW - 5000, NOW - 4000, NOW - 10, NOW - 9000, NOW - 9000]);
        let d = segments_to_delete(&s, 50, limits(1000, -1), NOW);
        assert_eq!(
            d,
            RetentionDecision {
                by_time: 2,
                by_size: 0,
                future_timestamp: None
            }
        );
    }

    #[test]
    fn time_limit_is_strict_and_uses_the_largest_timestamp() {
        let s = segs(100, &[NOW - 1000, NOW - 1001]);
        // now - ts must be > retention.ms: exactly 1000 old stays.
        assert_eq!(segments_to_delete(&s, 20, limits(1000, -1), NOW).count(), 0);
        let s = segs(100, &[NOW - 1001, NOW]);
        assert_eq!(segments_to_delete(&s, 20, limits(1000, -1), NOW).count(), 1);
    }

    #[test]
    fn a_future_timestamp_holds_time_retention_as_in_kafka() {
        // Segment 1 has a record an hour ahead of the clock: it and every
        // later segment stay (Kafka 4: "contains future timestamp(s), making
        // it ineligible to be deleted"); the caller is told which one.
        let s = segs(100, &[NOW - 5000, NOW + 3_600_000, NOW - 9000, NOW]);
        let d = segments_to_delete(&s, 40, limits(1000, -1), NOW);
        assert_eq!(d.by_time, 1);
        assert_eq!(d.future_timestamp, Some((10, NOW + 3_600_000)));
        // The size limit still removes it.
        let d = segments_to_delete(&s, 40, limits(1000, 100), NOW);
        assert_eq!((d.by_time, d.by_size), (1, 2));
        // Not reported when it is not what stopped the scan (segment 0 is
        // recent), nor for the active segment, nor without a time limit.
        let s = segs(100, &[NOW, NOW + 3_600_000, NOW]);
        assert_eq!(segments_to_delete(&s, 30, limits(1000, -1), NOW).future_timestamp, None);
        let s = segs(100, &[NOW - 5000, NOW + 3_600_000]);
        assert_eq!(segments_to_delete(&s, 20, limits(1000, -1), NOW).future_timestamp, None);
        let s = segs(100, &[NOW + 3_600_000, NOW]);
        assert_eq!(segments_to_delete(&s, 20, limits(-1, -1), NOW).future_timestamp, None);
        assert!(segments_to_delete(&s, 20, limits(1000, -1), NOW)
            .future_timestamp
            .is_some());
    }

    #[test]
    fn unknown_timestamps_are_not_expired() {
        let s = segs(100, &[-1, NOW - 5000, NOW]);
        assert_eq!(segments_to_delete(&s, 30, limits(1000, -1), NOW).count(), 0);
    }

    #[test]
    fn active_segment_is_never_deleted() {
        let s = segs(100, &[0, 0, 0]);
        let d = segments_to_delete(&s, 30, limits(0, 0), NOW);
        assert_eq!(d.count(), 2);
        let one = segs(100, &[0]);
        assert_eq!(segments_to_delete(&one, 10, limits(0, 0), NOW).count(), 0);
    }

    #[test]
    fn size_keeps_at_least_retention_bytes() {
        // 5 x 100 bytes, keep 250: deleting 2 leaves 300 (>= 250), a third
        // would leave 200.
        let s = segs(100, &[NOW; 5]);
        let d = segments_to_delete(&s, 50, limits(-1, 250), NOW);
        assert_eq!(
            d,
            RetentionDecision {
                by_time: 0,
                by_size: 2,
                future_timestamp: None
            }
        );
        // Exactly on the limit: total - size == retention.bytes still goes.
        let d = segments_to_delete(&s, 50, limits(-1, 300), NOW);
        assert_eq!(d.by_size, 2);
        // retention.bytes 0: every segment but the active one.
        assert_eq!(segments_to_delete(&s, 50, limits(-1, 0), NOW).by_size, 4);
        // Already small enough.
        assert_eq!(segments_to_delete(&s, 50, limits(-1, 500), NOW).count(), 0);
    }

    #[test]
    fn size_counts_what_time_left() {
        // Time removes the first; the size rule then looks at the other 4
        // (400 bytes) and removes one more to stay >= 300.
        let s = segs(100, &[0, NOW, NOW, NOW, NOW]);
        let d = segments_to_delete(&s, 50, limits(1000, 300), NOW);
        assert_eq!(
            d,
            RetentionDecision {
                by_time: 1,
                by_size: 1,
                future_timestamp: None
            }
        );
    }

    #[test]
    fn high_watermark_bounds_deletion() {
        let s = segs(100, &[0, 0, 0, 0]);
        // Segment 1 holds offsets 10..20; with the high watermark at 19 it
        // is not entirely committed, so only segment 0 may go.
        assert_eq!(segments_to_delete(&s, 19, limits(0, 0), NOW).count(), 1);
        assert_eq!(segments_to_delete(&s, 20, limits(0, 0), NOW).count(), 2);
        assert_eq!(segments_to_delete(&s, 0, limits(0, 0), NOW).count(), 0);
    }

    #[test]
    fn incomplete_segment_stops_the_scan() {
        let mut s = segs(100, &[0, 0, 0, 0]);
        s[1].complete = false;
        assert_eq!(segments_to_delete(&s, 40, limits(0, 0), NOW).count(), 1);
        s[0].complete = false;
        assert_eq!(segments_to_delete(&s, 40, limits(0, 0), NOW).count(), 0);
    }

    #[test]
    fn uneven_sizes() {
        let mut s = segs(0, &[NOW; 4]);
        for (seg, size) in s.iter_mut().zip([500, 10, 300, 50]) {
            seg.size = size;
        }
        // total 860, keep 340: 500 goes (360 left), 10 goes (350), 300 would
        // leave 50.
        assert_eq!(segments_to_delete(&s, 40, limits(-1, 340), NOW).by_size, 2);
    }
}
