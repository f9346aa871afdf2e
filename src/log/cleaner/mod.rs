//! The pure core of log compaction (`cleanup.policy=compact`), Kafka's
//! `LogCleaner`: no IO, no async, deterministic. The IO shell reads segment
//! files, calls these functions and swaps the rewritten segments in.
//!
//! A cleaning pass over a partition:
//!
//! 1. [`select`]: pick the partition and its cleanable range
//!    ([`select::cleanable`], [`select::pick_filthiest`]);
//! 2. [`build_map`]: map each key of the dirty range (from the checkpoint to
//!    the first uncleanable offset) to its latest offset, until the
//!    fixed-size [`KeyMap`] is full; the map is complete below the returned
//!    end offset;
//! 3. rewrite every segment below that end offset, from the start of the
//!    log, in groups ([`select::group_segments_by_size`]) with
//!    [`clean_segment`], which drops records superseded in the map, keyless
//!    records, and tombstones of segments the map covers whole once they are
//!    older than `delete.retention.ms` ([`select::drop_tombstones`]);
//! 4. write the end offset to the cleaner checkpoint ([`checkpoint`]): the
//!    next pass maps from there. A map too small for all the dirty keys
//!    just takes several passes.

pub mod filter;
pub mod keymap;
pub mod select;

pub use filter::{filter_batch, FilterOutcome, FilterPolicy, TxnFilter};
pub use keymap::KeyMap;

use std::ops::Range;

use crate::record::{batch_records, BatchHeader, BatchIter, RecordError, NO_TIMESTAMP};

/// How far [`build_map`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapBuild {
    /// The map holds the latest offset of every key among the records from
    /// the start offset up to (excluding) this one: the pass may clean
    /// below it and checkpoint it.
    pub end_offset: i64,
    /// The map filled up before the batches ran out.
    pub full: bool,
}

/// Fill `map` from the dirty part of a log, `range`: from the first dirty
/// offset (the checkpoint) to the first uncleanable offset. `batches` are
/// the batches of the segments holding that range, in order. Records
/// outside it (the clean part of the first segment), keyless records and
/// control batches are skipped. Stops at the first new key the full map
/// refuses (Kafka's `buildOffsetMap`); the map then covers the range up to
/// just past the last offset it took.
pub fn build_map<'a>(
    batches: impl IntoIterator<Item = &'a [u8]>,
    range: Range<i64>,
    map: &mut KeyMap,
) -> Result<MapBuild, RecordError> {
    for batch in batches {
        let parsed = batch_records(batch)?;
        let h = parsed.header;
        if h.base_offset >= range.end {
            break;
        }
        if h.last_offset() < range.start {
            continue;
        }
        if !h.is_control() {
            let records = parsed.records()?;
            filter::check_offset_deltas(&h, &records)?;
            for r in records {
                let offset = h.base_offset.saturating_add(i64::from(r.offset_delta));
                let Some(key) = r.key else { continue };
                if !range.contains(&offset) {
                    continue;
                }
                if !map.put(key, offset) {
                    return Ok(MapBuild {
                        end_offset: end_of(map, range.start),
                        full: true,
                    });
                }
            }
        }
        map.note_offset(h.last_offset().min(range.end.saturating_sub(1)));
    }
    Ok(MapBuild {
        end_offset: range.end.max(range.start),
        full: false,
    })
}

/// The offset below which `map` is complete: one past its latest offset.
fn end_of(map: &KeyMap, start_offset: i64) -> i64 {
    map.latest_offset()
        .map_or(start_offset, |o| o.saturating_add(1))
        .max(start_offset)
}

/// Chooses the [`FilterPolicy`] of each batch of a segment being cleaned
/// (tombstones by segment age, empty-batch retention for each producer's
/// last batch, transaction state later).
pub trait BatchPolicy {
    fn policy_for(&mut self, header: &BatchHeader) -> FilterPolicy;
}

/// The same policy for every batch.
impl BatchPolicy for FilterPolicy {
    fn policy_for(&mut self, _header: &BatchHeader) -> FilterPolicy {
        *self
    }
}

impl<F: FnMut(&BatchHeader) -> FilterPolicy> BatchPolicy for F {
    fn policy_for(&mut self, header: &BatchHeader) -> FilterPolicy {
        self(header)
    }
}

/// The result of cleaning one segment (or group of segments).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanedSegment {
    /// The new segment's contents.
    pub bytes: Vec<u8>,
    /// Batches copied unchanged.
    pub batches_kept: u64,
    /// Batches written again with fewer records.
    pub batches_rewritten: u64,
    pub batches_dropped: u64,
    pub records_kept: u64,
    pub records_dropped: u64,
    /// Base offset of the first batch written, if any.
    pub first_offset: Option<i64>,
    /// Last offset of the last batch written, if any.
    pub last_offset: Option<i64>,
    /// Largest batch max timestamp written (-1 if none).
    pub max_timestamp: i64,
    /// Last offset of the batch holding `max_timestamp` (what the time
    /// index points at; -1 if none).
    pub offset_of_max_timestamp: i64,
}

impl CleanedSegment {
    fn push(&mut self, h: &BatchHeader, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
        self.first_offset.get_or_insert(h.base_offset);
        self.last_offset = Some(h.last_offset());
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.offset_of_max_timestamp = h.last_offset();
        }
    }
}

/// Compact the batches of one segment (or of a group rewritten as one)
/// against `map`, each with the policy `policy` gives it (Kafka's
/// `cleanInto`). Offsets are unchanged; the output is the concatenation of
/// the surviving batches.
pub fn clean_segment<'a>(
    batches: impl IntoIterator<Item = &'a [u8]>,
    map: &KeyMap,
    policy: &mut impl BatchPolicy,
) -> Result<CleanedSegment, RecordError> {
    let mut out = CleanedSegment {
        max_timestamp: NO_TIMESTAMP,
        offset_of_max_timestamp: -1,
        ..CleanedSegment::default()
    };
    let mut prev_last: Option<i64> = None;
    for batch in batches {
        let h = BatchHeader::parse(batch)
            .ok_or_else(|| RecordError::CorruptMessage(format!("truncated batch header of {} bytes", batch.len())))?;
        if prev_last.is_some_and(|l| l >= h.base_offset) {
            return Err(RecordError::CorruptMessage(format!(
                "batch at offset {} follows one ending at {:?}: offsets must ascend",
                h.base_offset, prev_last
            )));
        }
        prev_last = Some(h.last_offset());
        let p = policy.policy_for(&h);
        let count = u64::try_from(h.record_count).unwrap_or(0);
        match filter_batch(batch, map, &p)? {
            FilterOutcome::KeepAll => {
                out.batches_kept += 1;
                out.records_kept += count;
                out.push(&h, batch);
            }
            FilterOutcome::DropAll => {
                out.batches_dropped += 1;
                out.records_dropped += count;
            }
            FilterOutcome::Rewritten(new) => {
                let nh = BatchHeader::parse(&new)
                    .ok_or_else(|| RecordError::CorruptMessage("rewritten batch too short".into()))?;
                debug_assert_eq!((nh.base_offset, nh.last_offset()), (h.base_offset, h.last_offset()));
                let kept = u64::try_from(nh.record_count).unwrap_or(0);
                out.batches_rewritten += 1;
                out.records_kept += kept;
                out.records_dropped += count.saturating_sub(kept);
                out.push(&nh, &new);
            }
        }
    }
    Ok(out)
}

/// Split a segment's bytes into its batches, checking each one's framing
/// and CRC. Unlike recovery, a cleaner must not skip a torn or corrupt
/// tail: any byte that is not part of a valid batch is an error.
pub fn split_batches(segment: &[u8]) -> Result<Vec<&[u8]>, RecordError> {
    let mut iter = BatchIter::new(segment, true);
    let mut out = Vec::new();
    for (at, h) in iter.by_ref() {
        let end = at.saturating_add(h.total_size());
        out.push(segment.get(at..end).unwrap_or(&[]));
    }
    if iter.valid_len() != segment.len() {
        return Err(RecordError::CorruptMessage(format!(
            "invalid batch at byte {} of a {}-byte segment",
            iter.valid_len(),
            segment.len()
        )));
    }
    Ok(out)
}

/// The cleaner checkpoint files (`cleaner-offset-checkpoint`): per
/// partition, the first dirty offset (where the next pass starts mapping).
/// Same format as the recovery-point file (Kafka's `CheckpointFile`
/// version 0), one file per shard like it.
pub mod checkpoint {
    use std::collections::BTreeMap;

    pub use crate::log::checkpoint::{decode, encode, TopicPartition};

    /// Base name of the cleaner checkpoint files.
    pub const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";

    /// The cleaner checkpoint file of a shard.
    pub fn file_name(shard: usize) -> String {
        format!("{CLEANER_CHECKPOINT_FILE}.{shard}")
    }

    /// The shard whose cleaner checkpoint file this is.
    pub fn parse_file_name(name: &str) -> Option<usize> {
        let n = name.strip_prefix(CLEANER_CHECKPOINT_FILE)?.strip_prefix('.')?;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        n.parse().ok()
    }

    /// After a log is truncated to `offset` (its new end), its checkpoint
    /// must not stay past it (Kafka's `maybeTruncateCheckpoint`). Returns
    /// whether the entries changed.
    pub fn truncate(entries: &mut BTreeMap<TopicPartition, i64>, tp: &TopicPartition, offset: i64) -> bool {
        match entries.get_mut(tp) {
            Some(o) if *o > offset => {
                *o = offset;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests;
