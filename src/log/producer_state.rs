//! Idempotent producer state of one partition (pure, no IO).
//!
//! For every producer id seen, the partition remembers its epoch and the
//! sequence ranges and offsets of its last five batches (a producer has at
//! most five requests in flight). An append is checked against it: a retry
//! of a batch already in the log is answered with the original offsets
//! instead of being written twice; a gap or reordering is refused with
//! OUT_OF_ORDER_SEQUENCE_NUMBER; an older epoch with INVALID_PRODUCER_EPOCH.

use crate::io::rand::HashMap;
use std::collections::VecDeque;

use crate::protocol::error as ec;

/// Batches remembered per producer for duplicate detection.
pub const CACHED_BATCHES: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchMeta>,
    pub last_timestamp: i64,
}

/// An idempotent batch as the producer state records it (appended, or
/// replayed from the log at recovery).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub epoch: i16,
    pub meta: BatchMeta,
    pub timestamp: i64,
}

/// What to do with an incoming batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqCheck {
    /// New and in order: append it.
    Append,
    /// Already in the log: answer with these offsets, write nothing.
    Duplicate { first_offset: i64, last_offset: i64 },
    /// Refuse with this Kafka error code.
    Reject(i16),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

/// The last sequence of a batch starting at `first_seq` with
/// `last_offset_delta` (sequences wrap from i32::MAX to 0).
pub fn last_sequence(first_seq: i32, last_offset_delta: i32) -> i32 {
    let sum = i64::from(first_seq) + i64::from(last_offset_delta);
    if sum > i64::from(i32::MAX) {
        (sum - i64::from(i32::MAX) - 1) as i32
    } else {
        sum as i32
    }
}

/// `next` follows `last` (sequences wrap from i32::MAX to 0).
fn follows(last: i32, next: i32) -> bool {
    if last == i32::MAX {
        next == 0
    } else {
        next == last + 1
    }
}

impl ProducerStates {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Check a batch from `producer_id` at `epoch` with sequences
    /// [`first_seq`, `last_seq`].
    pub fn check(&self, producer_id: i64, epoch: i16, first_seq: i32, last_seq: i32) -> SeqCheck {
        if first_seq < 0 || last_seq < 0 {
            return SeqCheck::Reject(ec::INVALID_RECORD);
        }
        let Some(e) = self.producers.get(&producer_id) else {
            // Unknown producer: it must start at 0. Otherwise its state was
            // lost (expired or a crash); the client resets (KIP-360).
            return if first_seq == 0 {
                SeqCheck::Append
            } else {
                SeqCheck::Reject(ec::UNKNOWN_PRODUCER_ID)
            };
        };
        if epoch < e.epoch {
            return SeqCheck::Reject(ec::INVALID_PRODUCER_EPOCH);
        }
        if epoch > e.epoch {
            return if first_seq == 0 {
                SeqCheck::Append
            } else {
                SeqCheck::Reject(ec::OUT_OF_ORDER_SEQUENCE_NUMBER)
            };
        }
        if let Some(b) = e
            .batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return SeqCheck::Duplicate {
                first_offset: b.first_offset,
                last_offset: b.last_offset,
            };
        }
        match e.batches.back() {
            Some(last) if follows(last.last_seq, first_seq) => SeqCheck::Append,
            None if first_seq == 0 => SeqCheck::Append,
            _ => SeqCheck::Reject(ec::OUT_OF_ORDER_SEQUENCE_NUMBER),
        }
    }

    /// Remember an appended batch (also used when replaying the log).
    pub fn record(&mut self, producer_id: i64, epoch: i16, meta: BatchMeta, timestamp: i64) {
        let e = self.producers.entry(producer_id).or_default();
        if epoch != e.epoch {
            e.epoch = epoch;
            e.batches.clear();
        }
        if e.batches.len() == CACHED_BATCHES {
            e.batches.pop_front();
        }
        e.batches.push_back(meta);
        e.last_timestamp = e.last_timestamp.max(timestamp);
    }

    /// [`ProducerStates::record`] for a [`ProducerBatch`].
    pub fn apply(&mut self, b: &ProducerBatch) {
        self.record(b.producer_id, b.epoch, b.meta, b.timestamp);
    }

    /// Put a producer's entry back as it was (`None`: unknown), undoing
    /// [`ProducerStates::record`]s of batches that were dropped (a rollback
    /// after a failed write).
    pub fn restore(&mut self, producer_id: i64, entry: Option<ProducerEntry>) {
        match entry {
            Some(e) => {
                self.producers.insert(producer_id, e);
            }
            None => {
                self.producers.remove(&producer_id);
            }
        }
    }

    /// A copy holding only the given producers: a scratch state to check a
    /// whole request against before anything is appended.
    pub fn subset(&self, producer_ids: impl IntoIterator<Item = i64>) -> ProducerStates {
        let mut out = ProducerStates::new();
        for id in producer_ids {
            if let Some(e) = self.producers.get(&id) {
                out.producers.insert(id, e.clone());
            }
        }
        out
    }

    /// Forget producers idle since before `cutoff_ms`
    /// (producer.id.expiration.ms).
    pub fn expire(&mut self, cutoff_ms: i64) {
        self.producers.retain(|_, e| e.last_timestamp >= cutoff_ms);
    }

    /// The last offset of each producer's last batch.
    pub fn last_offsets(&self) -> HashMap<i64, i64> {
        self.producers
            .iter()
            .filter_map(|(&id, e)| e.batches.back().map(|b| (id, b.last_offset)))
            .collect()
    }

    /// Forget producers whose last batch lies below `log_start` (its records
    /// are gone: DeleteRecords or retention moved the log start past them),
    /// as Kafka does. Returns how many were forgotten. Such a producer's
    /// next batch gets UNKNOWN_PRODUCER_ID with the log start offset, from
    /// which clients see that their state was removed and reset (KIP-360).
    pub fn prune_below(&mut self, log_start: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| e.batches.back().is_some_and(|b| b.last_offset >= log_start));
        before - self.producers.len()
    }

    /// The JSON snapshot older versions wrote at clean shutdown
    /// (`producer-state.json`); read once for compatibility.
    pub fn decode_legacy_json(data: &[u8]) -> Option<Self> {
        serde_json::from_slice(data).ok()
    }

    /// The state as a snapshot file for `offset` (the state after every
    /// batch below it): see [`decode_snapshot`] for the layout.
    pub fn encode_snapshot(&self, offset: i64) -> Vec<u8> {
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort_unstable();
        let mut body = Vec::with_capacity(12 + ids.len() * (19 + CACHED_BATCHES * BATCH_META_LEN));
        body.extend_from_slice(&offset.to_be_bytes());
        body.extend_from_slice(&(ids.len() as u32).to_be_bytes());
        for id in ids {
            let e = &self.producers[id];
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&e.epoch.to_be_bytes());
            body.extend_from_slice(&e.last_timestamp.to_be_bytes());
            let n = e.batches.len().min(usize::from(u8::MAX));
            body.push(n as u8);
            for b in e.batches.iter().skip(e.batches.len() - n) {
                body.extend_from_slice(&b.first_seq.to_be_bytes());
                body.extend_from_slice(&b.last_seq.to_be_bytes());
                body.extend_from_slice(&b.first_offset.to_be_bytes());
                body.extend_from_slice(&b.last_offset.to_be_bytes());
            }
        }
        let mut out = Vec::with_capacity(SNAPSHOT_HEADER_LEN + body.len());
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }
}

/// Producer state snapshot files: `<offset, 20 digits>.snapshot` in the
/// partition directory, as Kafka names them; the content is ringlog's own.
/// Layout (big-endian): magic `RLPS`, version u16 (1), CRC-32C u32 of the
/// rest, snapshot offset i64, producer count u32, then per producer: id
/// i64, epoch i16, last timestamp i64, batch count u8 and per batch first
/// sequence i32, last sequence i32, first offset i64, last offset i64.
pub const SNAPSHOT_SUFFIX: &str = ".snapshot";
const SNAPSHOT_MAGIC: &[u8; 4] = b"RLPS";
const SNAPSHOT_VERSION: u16 = 1;
const SNAPSHOT_HEADER_LEN: usize = 10;
const BATCH_META_LEN: usize = 24;

/// File name of the snapshot at `offset`.
pub fn snapshot_file_name(offset: i64) -> String {
    format!("{offset:020}{SNAPSHOT_SUFFIX}")
}

/// The offset of a snapshot file name.
pub fn parse_snapshot_file_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(SNAPSHOT_SUFFIX)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Decode a snapshot: its offset and state. `None` when the data is not a
/// whole, intact snapshot (wrong magic or version, CRC mismatch, truncated,
/// trailing bytes, a producer listed twice): the caller falls back to an
/// older snapshot.
pub fn decode_snapshot(data: &[u8]) -> Option<(i64, ProducerStates)> {
    struct Reader<'a>(&'a [u8]);
    impl Reader<'_> {
        fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
            let (head, rest) = self.0.split_first_chunk::<N>()?;
            self.0 = rest;
            Some(*head)
        }
        fn i64(&mut self) -> Option<i64> {
            self.take().map(i64::from_be_bytes)
        }
        fn i32(&mut self) -> Option<i32> {
            self.take().map(i32::from_be_bytes)
        }
    }
    let (magic, rest) = data.split_first_chunk::<4>()?;
    if magic != SNAPSHOT_MAGIC {
        return None;
    }
    let mut r = Reader(rest);
    if u16::from_be_bytes(r.take()?) != SNAPSHOT_VERSION {
        return None;
    }
    let crc = u32::from_be_bytes(r.take()?);
    if crc32c::crc32c(r.0) != crc {
        return None;
    }
    let offset = r.i64()?;
    let count = u32::from_be_bytes(r.take()?);
    let mut states = ProducerStates::new();
    for _ in 0..count {
        let id = r.i64()?;
        let epoch = i16::from_be_bytes(r.take()?);
        let last_timestamp = r.i64()?;
        let n = r.take::<1>()?[0];
        let mut batches = VecDeque::with_capacity(usize::from(n));
        for _ in 0..n {
            batches.push_back(BatchMeta {
                first_seq: r.i32()?,
                last_seq: r.i32()?,
                first_offset: r.i64()?,
                last_offset: r.i64()?,
            });
        }
        let entry = ProducerEntry {
            epoch,
            batches,
            last_timestamp,
        };
        if states.producers.insert(id, entry).is_some() {
            return None;
        }
    }
    r.0.is_empty().then_some((offset, states))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(first_seq: i32, last_seq: i32, first_offset: i64) -> BatchMeta {
        BatchMeta {
            first_seq,
            last_seq,
            first_offset,
            last_offset: first_offset + i64::from(last_seq - first_seq),
        }
    }

    #[test]
    fn in_order_duplicates_and_gaps() {
        let mut s = ProducerStates::new();
        assert_eq!(s.check(7, 0, 0, 9), SeqCheck::Append);
        s.record(7, 0, meta(0, 9, 100), 1);
        assert_eq!(s.check(7, 0, 10, 19), SeqCheck::Append);
        s.record(7, 0, meta(10, 19, 110), 2);
        // a retry of the first batch
        assert_eq!(
            s.check(7, 0, 0, 9),
            SeqCheck::Duplicate {
                first_offset: 100,
                last_offset: 109
            }
        );
        // a gap
        assert_eq!(
            s.check(7, 0, 30, 39),
            SeqCheck::Reject(ec::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
        // an old epoch
        s.record(7, 1, meta(0, 0, 120), 3);
        assert_eq!(s.check(7, 0, 20, 29), SeqCheck::Reject(ec::INVALID_PRODUCER_EPOCH));
        // a new epoch must start at 0
        assert_eq!(s.check(7, 2, 5, 6), SeqCheck::Reject(ec::OUT_OF_ORDER_SEQUENCE_NUMBER));
        assert_eq!(s.check(7, 2, 0, 6), SeqCheck::Append);
    }

    #[test]
    fn unknown_producer_must_start_at_zero() {
        let s = ProducerStates::new();
        assert_eq!(s.check(1, 0, 0, 0), SeqCheck::Append);
        assert_eq!(s.check(1, 0, 42, 50), SeqCheck::Reject(ec::UNKNOWN_PRODUCER_ID));
    }

    #[test]
    fn only_five_batches_are_remembered() {
        let mut s = ProducerStates::new();
        for i in 0..7 {
            s.record(3, 0, meta(i * 2, i * 2 + 1, i64::from(i) * 2), 0);
        }
        assert_eq!(s.get(3).map(|e| e.batches.len()), Some(CACHED_BATCHES));
        assert!(matches!(s.check(3, 0, 12, 13), SeqCheck::Duplicate { .. }));
        assert_eq!(s.check(3, 0, 0, 1), SeqCheck::Reject(ec::OUT_OF_ORDER_SEQUENCE_NUMBER));
        assert_eq!(s.check(3, 0, 14, 20), SeqCheck::Append);
    }

    #[test]
    fn sequences_wrap() {
        let mut s = ProducerStates::new();
        s.record(
            9,
            0,
            BatchMeta {
                first_seq: i32::MAX - 1,
                last_seq: i32::MAX,
                first_offset: 0,
                last_offset: 1,
            },
            0,
        );
        assert_eq!(s.check(9, 0, 0, 3), SeqCheck::Append);
    }

    #[test]
    fn snapshot_round_trip_and_expiry() {
        let mut s = ProducerStates::new();
        s.record(1, 0, meta(0, 1, 0), 100);
        s.record(2, 0, meta(0, 1, 2), 500);
        let (at, back) = decode_snapshot(&s.encode_snapshot(42)).unwrap();
        assert_eq!((at, &back), (42, &s));
        s.expire(200);
        assert!(s.get(1).is_none() && s.get(2).is_some());
    }

    #[test]
    fn snapshots_are_checked() {
        let mut s = ProducerStates::new();
        for id in 0..20 {
            for i in 0..7 {
                s.record(
                    id,
                    (id % 3) as i16,
                    meta(i * 2, i * 2 + 1, id * 100 + i64::from(i) * 2),
                    1000 + id,
                );
            }
        }
        let data = s.encode_snapshot(1234);
        assert_eq!(decode_snapshot(&data), Some((1234, s.clone())));
        assert_eq!(
            decode_snapshot(&ProducerStates::new().encode_snapshot(0)),
            Some((0, ProducerStates::new()))
        );
        // Any flipped byte, any truncation, any extra byte: refused.
        for i in 0..data.len() {
            let mut bad = data.clone();
            bad[i] ^= 0x40;
            assert_eq!(decode_snapshot(&bad), None, "flipped byte {i}");
        }
        for n in 0..data.len() {
            assert_eq!(decode_snapshot(&data[..n]), None, "truncated to {n}");
        }
        let mut longer = data.clone();
        longer.push(0);
        assert_eq!(decode_snapshot(&longer), None);
        assert_eq!(snapshot_file_name(1234), "00000000000000001234.snapshot");
        assert_eq!(parse_snapshot_file_name("00000000000000001234.snapshot"), Some(1234));
        assert_eq!(parse_snapshot_file_name("00000000000000001234.snapshot.tmp"), None);
        assert_eq!(parse_snapshot_file_name("1234.snapshot"), None);
    }
}
