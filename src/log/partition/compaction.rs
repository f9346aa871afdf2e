//! What the log cleaner (`src/shard/cleaner.rs`) needs from a partition's
//! log: a consistent view of the segments it may clean, and the in-memory
//! swap of a group of segments for its cleaned copy once that copy is
//! committed on disk ([`super::swap`]). No IO here.

use std::path::PathBuf;

use crate::io::file::LogFile;
use crate::log::cleaner::select::{CleanerSegment, LogOffsets};
use crate::log::segment::Segment;

use super::PartitionLog;

/// A segment as the cleaner reads it.
#[derive(Clone)]
pub struct SegmentToClean {
    pub summary: CleanerSegment,
    /// Open for reading; None for a segment never written (empty).
    pub file: Option<LogFile>,
    /// One past its last offset in memory (the next segment's base when
    /// contiguous).
    pub next_offset: i64,
    pub created_ms: i64,
    pub modified_ms: i64,
}

/// A partition's segments and offsets as the cleaner sees them. Segments
/// from the first one the cleaner must not touch on are marked active:
/// the newest one, one still being written or sealed, or one with a
/// corrupt region. (A checkpoint that planned index files of a segment
/// while it was active writes them again from memory once it is sealed,
/// `index_sealed_meanwhile`, so a cleaned copy swapped in meanwhile gets
/// its own index back.)
pub struct CleanerView {
    pub dir: PathBuf,
    pub segments: Vec<SegmentToClean>,
    pub offsets: LogOffsets,
    pub index_interval_bytes: u64,
    /// How the log writes its segments; the cleaned copy is written the
    /// same way (O_DIRECT keeps it out of the page cache, so the produce
    /// path's syncs never write it back).
    pub io_mode: crate::io::file::IoMode,
}

/// The cleaned copy of consecutive segments, ready to take their place.
pub struct CleanedCopy {
    /// Base offsets of the segments it replaces (the first is its own).
    pub old_bases: Vec<i64>,
    /// The new segment: sealed, its files synced, its indexes built.
    pub segment: Segment,
}

impl PartitionLog {
    /// The cleaner's view of this log, or None when it is offline.
    pub fn cleaner_view(&self) -> Option<CleanerView> {
        if self.is_failed() {
            return None;
        }
        let mut segments = Vec::with_capacity(self.segments.len());
        let mut active_seen = false;
        for (i, s) in self.segments.iter().enumerate() {
            let last = i + 1 == self.segments.len();
            let ready = !last
                && s.sealed
                && s.seal_done
                && s.corrupt.is_empty()
                && s.written == s.size
                && s.next_offset <= self.high_watermark;
            active_seen |= !ready;
            segments.push(SegmentToClean {
                summary: CleanerSegment {
                    base_offset: s.base_offset,
                    size: s.size,
                    index_bytes: (s.index.len() * 8).max(s.time_index.len() * 12) as u64,
                    largest_timestamp: if s.max_timestamp >= 0 {
                        s.max_timestamp
                    } else {
                        s.modified_ms
                    },
                    // The first batch's own timestamp is not kept in memory;
                    // the segment's newest one stands in (so
                    // max.compaction.lag.ms acts up to a segment late).
                    first_batch_timestamp: s.max_timestamp,
                    active: active_seen,
                },
                file: s.file.clone(),
                next_offset: s.next_offset,
                created_ms: s.created_ms,
                modified_ms: s.modified_ms,
            });
        }
        Some(CleanerView {
            dir: self.dir.clone(),
            segments,
            offsets: LogOffsets {
                log_start_offset: self.log_start_offset,
                log_end_offset: self.next_offset,
                last_stable_offset: self.high_watermark,
            },
            index_interval_bytes: self.config.index_interval_bytes,
            io_mode: self.io_mode(),
        })
    }

    /// Whether the segments `bases` are still in the log, consecutive and
    /// unchanged in what the cleaner relied on (still sealed and synced):
    /// the cleaned copy may then replace them.
    pub fn can_install(&self, bases: &[i64]) -> bool {
        let Some(&first) = bases.first() else {
            return false;
        };
        let Some(i) = self.segments.iter().position(|s| s.base_offset == first) else {
            return false;
        };
        let Some(run) = self.segments.get(i..i + bases.len()) else {
            return false;
        };
        // Never the last (active) segment.
        i + bases.len() < self.segments.len()
            && run
                .iter()
                .zip(bases)
                .all(|(s, &b)| s.base_offset == b && s.sealed && s.seal_done)
    }

    /// Replace the segments `copy.old_bases` by the cleaned copy (its files
    /// already committed in their place on disk). Returns false, changing
    /// nothing, when they are not all there any more ([`Self::can_install`]).
    /// Reads planned on the old segments keep their open files.
    pub fn install_cleaned(&mut self, copy: CleanedCopy) -> bool {
        if !self.can_install(&copy.old_bases) {
            return false;
        }
        let Some(i) = self.segments.iter().position(|s| s.base_offset == copy.old_bases[0]) else {
            return false;
        };
        let n = copy.old_bases.len();
        let mut seg = copy.segment;
        let old_next = self.segments[i + n - 1].next_offset;
        let old_modified = self.segments[i..i + n]
            .iter()
            .map(|s| s.modified_ms)
            .max()
            .unwrap_or(-1);
        seg.created_ms = self.segments[i].created_ms;
        seg.modified_ms = old_modified;
        // The copy's offsets end with its last batch: when the group's last
        // records were compacted away, a gap up to the next segment's base
        // is left, which reads step over (as recovery would find it).
        debug_assert!(seg.next_offset <= old_next);
        seg.sealed = true;
        seg.seal_done = true;
        seg.index_synced = true;
        seg.written = seg.size;
        self.segments.splice(i..i + n, std::iter::once(seg));
        // Cached batches of the old segments may hold records the copy
        // dropped: reads of those offsets go to the copy from now on.
        let end = old_next;
        while let Some(b) = self.cache.front() {
            if b.last >= end {
                break;
            }
            self.cache_bytes -= b.charge;
            self.cache.pop_front();
        }
        self.check_segments();
        true
    }
}
