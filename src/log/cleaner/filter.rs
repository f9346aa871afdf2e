//! Record-level compaction of one stored batch (Kafka's
//! `MemoryRecords.filterTo` with the cleaner's record filter).
//!
//! A record survives when it is the latest of its key (per the key map) and
//! is not a tombstone that may be dropped; keyless records never survive (a
//! compacted topic cannot hold them). A batch whose records all survive is
//! copied as is (the common case: no decompression output is written, no
//! CRC changes); otherwise the survivors are written into a new batch that
//! keeps the original base offset, last offset, producer fields, attributes
//! and codec, so offsets, idempotence state and the log's offset layout are
//! unchanged.

use super::keymap::KeyMap;
use crate::record::{
    batch_records, build_raw_batch, BatchHeader, RawRecord, RawRecordOut, RecordError, TimestampType,
    ATTR_COMPRESSION_MASK,
};

/// What to do with the transactional content of a batch: the seam for the
/// transactions work (dropping aborted data and obsolete markers, as Kafka's
/// `CleanedTransactionMetadata` does). Only [`TxnFilter::None`] exists today:
/// control batches are kept as they are and transactional data is treated
/// like any other data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxnFilter {
    /// No transaction-aware filtering.
    #[default]
    None,
}

/// How one batch is filtered; the caller decides it per batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterPolicy {
    /// Tombstones (records whose value is null) may be dropped: the batch's
    /// segment is older than the delete horizon (`delete.retention.ms`) and
    /// lies wholly below the key map's end offset; see
    /// [`super::select::drop_tombstones`], which the caller must follow or a
    /// dropped tombstone can resurrect older values of its key.
    pub drop_tombstones: bool,
    /// The batch is the last one of its producer: if all its records go,
    /// keep an empty batch (header only) so that the producer's sequence and
    /// epoch survive the compaction (Kafka's `RETAIN_EMPTY`). Ignored for
    /// batches without a producer id.
    pub retain_empty_producer_batch: bool,
    pub txn: TxnFilter,
}

/// The result of [`filter_batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterOutcome {
    /// Every record survives: copy the batch's bytes unchanged.
    KeepAll,
    /// Nothing survives and nothing needs keeping: drop the batch.
    DropAll,
    /// A new batch with the survivors only (possibly none: an empty
    /// producer batch, see [`FilterPolicy::retain_empty_producer_batch`]).
    Rewritten(Vec<u8>),
}

/// Whether a record survives compaction against `map`.
#[inline]
fn keep(r: &RawRecord<'_>, offset: i64, map: &KeyMap, policy: &FilterPolicy) -> bool {
    let Some(key) = r.key else {
        return false;
    };
    if r.value.is_none() && policy.drop_tombstones {
        return false;
    }
    map.get(key).is_none_or(|latest| offset >= latest)
}

/// Filter the v2 batch `batch` (exactly one batch, as stored, CRC valid)
/// against the key map. Errors on a corrupt or truncated batch, trailing
/// bytes, or a codec failure; never panics on any input.
pub fn filter_batch(batch: &[u8], map: &KeyMap, policy: &FilterPolicy) -> Result<FilterOutcome, RecordError> {
    let parsed = batch_records(batch)?;
    let h = parsed.header;
    if h.total_size() != batch.len() {
        return Err(RecordError::CorruptMessage(format!(
            "{} bytes after the batch at offset {}",
            batch.len().saturating_sub(h.total_size()),
            h.base_offset
        )));
    }
    if h.is_control() {
        return match policy.txn {
            TxnFilter::None => Ok(FilterOutcome::KeepAll),
        };
    }
    let records = parsed.records()?;
    check_offset_deltas(&h, &records)?;
    let kept: Vec<&RawRecord<'_>> = records
        .iter()
        .filter(|r| keep(r, h.base_offset.saturating_add(i64::from(r.offset_delta)), map, policy))
        .collect();
    if kept.is_empty() {
        return if policy.retain_empty_producer_batch && h.has_producer_id() {
            if records.is_empty() {
                Ok(FilterOutcome::KeepAll)
            } else {
                empty_batch(&h).map(FilterOutcome::Rewritten)
            }
        } else {
            Ok(FilterOutcome::DropAll)
        };
    }
    if kept.len() == records.len() {
        return Ok(FilterOutcome::KeepAll);
    }
    rewrite(&h, &kept).map(FilterOutcome::Rewritten)
}

/// Offset deltas must ascend strictly within `0..=last_offset_delta`: the
/// rewrite keeps them, and the log's offsets must stay ordered. (Produce
/// validation makes them `0..n`; compaction leaves gaps.)
pub(super) fn check_offset_deltas(h: &BatchHeader, records: &[RawRecord<'_>]) -> Result<(), RecordError> {
    let mut prev = -1i32;
    for r in records {
        if r.offset_delta <= prev || r.offset_delta > h.last_offset_delta {
            return Err(RecordError::CorruptMessage(format!(
                "batch at offset {}: record offset delta {} after {prev} (last offset delta {})",
                h.base_offset, r.offset_delta, h.last_offset_delta
            )));
        }
        prev = r.offset_delta;
    }
    Ok(())
}

/// The survivors in a batch shaped like the original: same base and last
/// offset, producer fields, leader epoch, attributes and codec; each record
/// keeps its offset delta and timestamp. For CreateTime the base timestamp
/// becomes the first survivor's and the max timestamp the survivors' max
/// (Kafka rebuilds the batch the same way); for LogAppendTime both stay,
/// as they define every record's timestamp.
fn rewrite(h: &BatchHeader, kept: &[&RawRecord<'_>]) -> Result<Vec<u8>, RecordError> {
    let (base_timestamp, max_timestamp, shift) = match (h.timestamp_type(), kept.first()) {
        (TimestampType::CreateTime, Some(first)) => {
            let max_delta = kept.iter().map(|r| r.timestamp_delta).max().unwrap_or(0);
            (
                h.base_timestamp.wrapping_add(first.timestamp_delta),
                h.base_timestamp.saturating_add(max_delta),
                first.timestamp_delta,
            )
        }
        _ => (h.base_timestamp, h.max_timestamp, 0),
    };
    let out: Vec<RawRecordOut<'_>> = kept
        .iter()
        .map(|r| RawRecordOut {
            offset_delta: r.offset_delta,
            timestamp_delta: r.timestamp_delta.wrapping_sub(shift),
            tail: r.tail,
        })
        .collect();
    debug_assert!(out.windows(2).all(|w| w[0].offset_delta < w[1].offset_delta));
    debug_assert!(out.last().is_none_or(|r| r.offset_delta <= h.last_offset_delta));
    let template = BatchHeader {
        base_timestamp,
        max_timestamp,
        ..*h
    };
    build_raw_batch(&template, &out)
}

/// A header-only batch keeping the producer state of `h` (Kafka's
/// `writeEmptyHeader`): no records, uncompressed, both timestamps set to the
/// original max timestamp.
fn empty_batch(h: &BatchHeader) -> Result<Vec<u8>, RecordError> {
    let template = BatchHeader {
        attributes: h.attributes & !ATTR_COMPRESSION_MASK,
        base_timestamp: h.max_timestamp,
        max_timestamp: h.max_timestamp,
        ..*h
    };
    build_raw_batch(&template, &[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{
        build_batch_exact, build_batch_with, decode_records, verify_crc, BatchOptions, Compression, Record,
    };

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn rec<'a>(key: Option<&'a [u8]>, value: Option<&'a [u8]>, ts: i64) -> Record<'a> {
        Record {
            key,
            value,
            headers: &[],
            timestamp_delta: ts,
        }
    }

    fn map_of(entries: &[(&[u8], i64)]) -> KeyMap {
        let mut m = KeyMap::with_memory(1 << 16, 0.9);
        for (k, o) in entries {
            assert!(m.put(k, *o));
        }
        m
    }

    fn keep_policy() -> FilterPolicy {
        FilterPolicy::default()
    }

    #[test]
    fn keep_all_returns_the_batch_unchanged() {
        let b = build_batch_with(
            100,
            1000,
            Compression::Lz4,
            &BatchOptions::default(),
            &[rec(Some(b"a"), Some(b"1"), 0), rec(Some(b"b"), Some(b"2"), 5)],
        );
        // a's latest is this record; b is unknown to the map (beyond its range).
        let m = map_of(&[(b"a", 100)]);
        assert_eq!(filter_batch(&b, &m, &keep_policy()), Ok(FilterOutcome::KeepAll));
        let m = map_of(&[(b"a", 100), (b"b", 101)]);
        assert_eq!(filter_batch(&b, &m, &keep_policy()), Ok(FilterOutcome::KeepAll));
    }

    #[test]
    fn obsolete_records_are_dropped_keeping_offsets_and_timestamps() {
        for codec in CODECS {
            let opts = BatchOptions {
                partition_leader_epoch: 7,
                producer_id: 42,
                producer_epoch: 3,
                base_sequence: 10,
                ..BatchOptions::default()
            };
            let hdrs: &[(&str, Option<&[u8]>)] = &[("h", Some(b"v")), ("n", None)];
            let records = [
                rec(Some(b"a"), Some(b"old"), 3),
                Record {
                    headers: hdrs,
                    ..rec(Some(b"b"), Some(b"keep"), 7)
                },
                rec(Some(b"c"), Some(b"x"), -2),
                rec(Some(b"a"), Some(b"new"), 9),
                rec(Some(b"d"), Some(b"gone"), 20),
            ];
            let b = build_batch_with(500, 10_000, codec, &opts, &records);
            let m = map_of(&[(b"a", 503), (b"b", 501), (b"c", 502), (b"d", 600)]);
            let FilterOutcome::Rewritten(out) = filter_batch(&b, &m, &keep_policy()).unwrap() else {
                panic!("expected a rewrite for {codec:?}");
            };
            assert!(verify_crc(&out));
            let h = BatchHeader::parse(&out).unwrap();
            let orig = BatchHeader::parse(&b).unwrap();
            assert_eq!(h.compression(), Some(codec));
            assert_eq!((h.base_offset, h.last_offset()), (500, 504), "last offset kept");
            assert_eq!(h.record_count, 3);
            assert_eq!(
                (
                    h.producer_id,
                    h.producer_epoch,
                    h.base_sequence,
                    h.partition_leader_epoch
                ),
                (42, 3, 10, 7)
            );
            assert_eq!(h.attributes, orig.attributes);
            assert_eq!(h.base_timestamp, 10_007, "first survivor's timestamp");
            assert_eq!(h.max_timestamp, 10_009);
            let got = decode_records(&out).unwrap();
            let view: Vec<_> = got
                .iter()
                .map(|r| {
                    (
                        r.offset_delta,
                        h.base_timestamp + r.timestamp_delta,
                        r.key.as_deref().unwrap().to_vec(),
                    )
                })
                .collect();
            assert_eq!(
                view,
                vec![
                    (1, 10_007, b"b".to_vec()),
                    (2, 9_998, b"c".to_vec()),
                    (3, 10_009, b"a".to_vec())
                ]
            );
            assert_eq!(got[0].headers.len(), 2);
            assert_eq!(got[0].headers[0].0, "h");
            assert_eq!(got[0].value.as_deref(), Some(&b"keep"[..]));
            // Filtering the result again changes nothing.
            assert_eq!(filter_batch(&out, &m, &keep_policy()), Ok(FilterOutcome::KeepAll));
        }
    }

    #[test]
    fn tombstones_follow_the_policy() {
        let b = build_batch_with(
            0,
            0,
            Compression::None,
            &BatchOptions::default(),
            &[rec(Some(b"a"), None, 0), rec(Some(b"b"), Some(b"v"), 0)],
        );
        let m = map_of(&[(b"a", 0), (b"b", 1)]);
        assert_eq!(filter_batch(&b, &m, &keep_policy()), Ok(FilterOutcome::KeepAll));
        let drop = FilterPolicy {
            drop_tombstones: true,
            ..FilterPolicy::default()
        };
        let FilterOutcome::Rewritten(out) = filter_batch(&b, &m, &drop).unwrap() else {
            panic!()
        };
        let got = decode_records(&out).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].key.as_deref(), Some(&b"b"[..]));
        // A tombstone-only batch goes entirely.
        let t = build_batch_with(
            5,
            0,
            Compression::None,
            &BatchOptions::default(),
            &[rec(Some(b"a"), None, 0)],
        );
        assert_eq!(filter_batch(&t, &map_of(&[]), &drop), Ok(FilterOutcome::DropAll));
    }

    #[test]
    fn keyless_records_are_dropped() {
        let b = build_batch_with(
            0,
            0,
            Compression::Zstd,
            &BatchOptions::default(),
            &[rec(None, Some(b"x"), 0), rec(Some(b"k"), Some(b"v"), 1)],
        );
        let FilterOutcome::Rewritten(out) = filter_batch(&b, &map_of(&[]), &keep_policy()).unwrap() else {
            panic!()
        };
        let got = decode_records(&out).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].offset_delta, 1);
        let only = build_batch_with(0, 0, Compression::None, &BatchOptions::default(), &[rec(None, None, 0)]);
        assert_eq!(
            filter_batch(&only, &map_of(&[]), &keep_policy()),
            Ok(FilterOutcome::DropAll)
        );
    }

    #[test]
    fn control_batches_are_kept() {
        let opts = BatchOptions {
            producer_id: 1,
            producer_epoch: 0,
            is_transactional: true,
            is_control: true,
            ..BatchOptions::default()
        };
        let b = build_batch_with(
            9,
            0,
            Compression::None,
            &opts,
            &[rec(Some(&[0, 0, 0, 1]), Some(b"m"), 0)],
        );
        let m = map_of(&[(&[0, 0, 0, 1], 100)]);
        let drop = FilterPolicy {
            drop_tombstones: true,
            ..FilterPolicy::default()
        };
        assert_eq!(filter_batch(&b, &m, &drop), Ok(FilterOutcome::KeepAll));
    }

    #[test]
    fn last_producer_batch_is_kept_empty() {
        for codec in [Compression::None, Compression::Gzip] {
            let opts = BatchOptions {
                producer_id: 77,
                producer_epoch: 2,
                base_sequence: 40,
                is_transactional: true,
                ..BatchOptions::default()
            };
            let b = build_batch_with(
                20,
                500,
                codec,
                &opts,
                &[rec(Some(b"a"), Some(b"1"), 0), rec(Some(b"b"), Some(b"2"), 8)],
            );
            let m = map_of(&[(b"a", 30), (b"b", 31)]);
            assert_eq!(filter_batch(&b, &m, &keep_policy()), Ok(FilterOutcome::DropAll));
            let retain = FilterPolicy {
                retain_empty_producer_batch: true,
                ..FilterPolicy::default()
            };
            let FilterOutcome::Rewritten(out) = filter_batch(&b, &m, &retain).unwrap() else {
                panic!()
            };
            let h = BatchHeader::parse(&out).unwrap();
            assert!(verify_crc(&out));
            assert_eq!(out.len(), crate::record::BATCH_HEADER_LEN);
            assert_eq!((h.base_offset, h.last_offset(), h.record_count), (20, 21, 0));
            assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (77, 2, 40));
            assert!(h.is_transactional());
            assert_eq!(h.compression(), Some(Compression::None));
            assert_eq!((h.base_timestamp, h.max_timestamp), (508, 508));
            // The empty batch stays while it is the producer's last, and
            // goes once it is not.
            assert_eq!(filter_batch(&out, &m, &retain), Ok(FilterOutcome::KeepAll));
            assert_eq!(filter_batch(&out, &m, &keep_policy()), Ok(FilterOutcome::DropAll));
            // Without a producer id the flag does nothing.
            let plain = build_batch_with(20, 500, codec, &BatchOptions::default(), &[rec(Some(b"a"), None, 0)]);
            assert_eq!(filter_batch(&plain, &m, &retain), Ok(FilterOutcome::DropAll));
        }
    }

    #[test]
    fn log_append_time_batches_keep_their_timestamps() {
        let opts = BatchOptions {
            timestamp_type: TimestampType::LogAppendTime,
            ..BatchOptions::default()
        };
        let mut b = build_batch_with(
            0,
            100,
            Compression::Snappy,
            &opts,
            &[rec(Some(b"a"), Some(b"1"), 0), rec(Some(b"b"), Some(b"2"), 0)],
        );
        crate::record::rewrite_batch(&mut b, 0, 0, Some(9_999));
        let m = map_of(&[(b"a", 5)]);
        let FilterOutcome::Rewritten(out) = filter_batch(&b, &m, &keep_policy()).unwrap() else {
            panic!()
        };
        let h = BatchHeader::parse(&out).unwrap();
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!((h.base_timestamp, h.max_timestamp), (100, 9_999));
        assert_eq!(decode_records(&out).unwrap().len(), 1);
    }

    #[test]
    fn already_compacted_batches_filter_again() {
        // A batch with offset gaps and a trailing gap (last offset 9).
        let recs = [
            (2, rec(Some(b"x"), Some(b"1"), 4)),
            (5, rec(Some(b"y"), Some(b"2"), 1)),
            (6, rec(Some(b"z"), Some(b"3"), 2)),
        ];
        let b = build_batch_exact(1000, 50, Compression::Zstd, &BatchOptions::default(), 9, &recs);
        let m = map_of(&[(b"y", 2000)]);
        let FilterOutcome::Rewritten(out) = filter_batch(&b, &m, &keep_policy()).unwrap() else {
            panic!()
        };
        let h = BatchHeader::parse(&out).unwrap();
        assert_eq!((h.last_offset(), h.record_count), (1009, 2));
        let got = decode_records(&out).unwrap();
        assert_eq!(
            got.iter()
                .map(|r| (r.offset_delta, h.base_timestamp + r.timestamp_delta))
                .collect::<Vec<_>>(),
            vec![(2, 54), (6, 52)]
        );
        assert_eq!(h.max_timestamp, 54);
    }

    #[test]
    fn corrupt_input_is_an_error() {
        let b = build_batch_with(
            0,
            0,
            Compression::None,
            &BatchOptions::default(),
            &[rec(Some(b"a"), None, 0)],
        );
        let m = map_of(&[]);
        let mut bad = b.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(filter_batch(&bad, &m, &keep_policy()).is_err());
        assert!(filter_batch(&b[..b.len() - 1], &m, &keep_policy()).is_err());
        let mut long = b.clone();
        long.push(0);
        assert!(filter_batch(&long, &m, &keep_policy()).is_err());
        assert!(filter_batch(&[], &m, &keep_policy()).is_err());
        // Offset deltas out of order or past the last offset.
        let r = rec(Some(b"a"), None, 0);
        let swapped = build_batch_exact(0, 0, Compression::None, &BatchOptions::default(), 5, &[(3, r), (2, r)]);
        assert!(filter_batch(&swapped, &m, &keep_policy()).is_err());
        let past = build_batch_exact(0, 0, Compression::Gzip, &BatchOptions::default(), 1, &[(2, r)]);
        assert!(filter_batch(&past, &m, &keep_policy()).is_err());
    }
}
