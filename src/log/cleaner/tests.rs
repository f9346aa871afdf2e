//! End-to-end tests of the pure cleaner over in-memory segments: what the
//! IO shell will do, minus the files.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::record::{build_batch_with, decode_records, verify_crc, BatchOptions, Compression, Record};

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// One record of a workload: key (None: keyless) and value (None: tombstone).
type Op = (Option<u8>, Option<u16>);

/// A written record: key and value, each possibly null.
type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// A log in memory: sealed segments of batches (the active segment, empty,
/// is implied after them) and the cleaner checkpoint.
struct Log {
    segments: Vec<Vec<Vec<u8>>>,
    checkpoint: i64,
    end_offset: i64,
    /// What was written at each offset: (key, value).
    written: BTreeMap<i64, KeyValue>,
}

fn key_bytes(k: u8) -> Vec<u8> {
    format!("key-{k}").into_bytes()
}

impl Log {
    /// Write `segments` of batches of ops, each batch with the codec given.
    fn write(segments: &[Vec<(Compression, Vec<Op>)>]) -> Log {
        let mut log = Log {
            segments: Vec::new(),
            checkpoint: 0,
            end_offset: 0,
            written: BTreeMap::new(),
        };
        for seg in segments {
            let mut batches = Vec::new();
            for (codec, ops) in seg {
                let owned: Vec<KeyValue> = ops
                    .iter()
                    .map(|(k, v)| (k.map(key_bytes), v.map(|v| v.to_be_bytes().to_vec())))
                    .collect();
                let records: Vec<Record<'_>> = owned
                    .iter()
                    .enumerate()
                    .map(|(i, (k, v))| Record {
                        key: k.as_deref(),
                        value: v.as_deref(),
                        headers: &[],
                        timestamp_delta: i as i64,
                    })
                    .collect();
                let base = log.end_offset;
                batches.push(build_batch_with(
                    base,
                    1_000 + base,
                    *codec,
                    &BatchOptions::default(),
                    &records,
                ));
                for (i, r) in owned.into_iter().enumerate() {
                    log.written.insert(base + i as i64, r);
                }
                log.end_offset += ops.len() as i64;
            }
            log.segments.push(batches);
        }
        log
    }

    /// One cleaning pass with `map`, each segment cleaned on its own.
    /// Returns the map's end offset.
    fn pass(&mut self, map: &mut KeyMap, drop_tombstones: bool) -> MapBuild {
        map.clear();
        let all: Vec<&[u8]> = self.segments.iter().flatten().map(Vec::as_slice).collect();
        let built = build_map(all, self.checkpoint..self.end_offset, map).unwrap();
        assert!(built.end_offset > self.checkpoint || self.checkpoint == self.end_offset);
        for seg in &mut self.segments {
            let first = seg.first().and_then(|b| BatchHeader::parse(b)).map(|h| h.base_offset);
            if first.is_none_or(|b| b >= built.end_offset) {
                continue;
            }
            // Tombstones go only from segments the map covers entirely (the
            // time horizon is taken as passed).
            let end = seg
                .last()
                .and_then(|b| BatchHeader::parse(b))
                .map_or(0, |h| h.next_offset());
            let mut policy = FilterPolicy {
                drop_tombstones: drop_tombstones && end <= built.end_offset,
                ..FilterPolicy::default()
            };
            let cleaned = clean_segment(seg.iter().map(Vec::as_slice), map, &mut policy).unwrap();
            *seg = split_batches(&cleaned.bytes)
                .unwrap()
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect();
        }
        self.checkpoint = built.end_offset;
        built
    }

    /// Clean until the checkpoint reaches the end; returns the passes made.
    fn compact(&mut self, map: &mut KeyMap, drop_tombstones: bool) -> usize {
        let mut passes = 0;
        while self.checkpoint < self.end_offset {
            self.pass(map, drop_tombstones);
            passes += 1;
            assert!(passes <= self.written.len() + 1, "no progress");
        }
        passes
    }

    /// Every record left: (offset, key, value), checking batch invariants.
    fn records(&self) -> Vec<(i64, KeyValue)> {
        let mut out = Vec::new();
        for b in self.segments.iter().flatten() {
            assert!(verify_crc(b));
            let h = BatchHeader::parse(b).unwrap();
            for r in decode_records(b).unwrap() {
                let offset = h.base_offset + i64::from(r.offset_delta);
                assert!(offset <= h.last_offset());
                out.push((offset, (r.key.map(|k| k.to_vec()), r.value.map(|v| v.to_vec()))));
            }
        }
        out
    }

    /// Check the compacted log against the model: exactly the latest record
    /// of each key (tombstones included unless dropped), at its original
    /// offset, in ascending order.
    fn check(&self, drop_tombstones: bool) {
        let got = self.records();
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "offsets ascend");
        for (o, kv) in &got {
            assert_eq!(self.written.get(o), Some(kv), "offset {o} unchanged");
        }
        let mut latest: BTreeMap<Vec<u8>, (i64, Option<Vec<u8>>)> = BTreeMap::new();
        for (o, (k, v)) in &self.written {
            if let Some(k) = k {
                latest.insert(k.clone(), (*o, v.clone()));
            }
        }
        let mut expected: Vec<_> = latest
            .into_iter()
            .filter(|(_, (_, v))| v.is_some() || !drop_tombstones)
            .map(|(k, (o, v))| (o, (Some(k), v)))
            .collect();
        expected.sort();
        assert_eq!(got, expected);
    }
}

fn updates(keys: u8, rounds: u16) -> Vec<Op> {
    (0..rounds)
        .flat_map(|r| (0..keys).map(move |k| (Some(k), Some(r * 256 + u16::from(k)))))
        .collect()
}

#[test]
fn many_updates_end_with_the_latest_value_per_key() {
    for codec in CODECS {
        let ops = updates(10, 6);
        let segs: Vec<Vec<(Compression, Vec<Op>)>> = ops
            .chunks(20)
            .map(|seg| seg.chunks(7).map(|b| (codec, b.to_vec())).collect())
            .collect();
        let mut log = Log::write(&segs);
        let mut map = KeyMap::with_memory(1 << 16, 0.9);
        assert_eq!(log.compact(&mut map, false), 1);
        log.check(false);
        assert_eq!(log.records().len(), 10);
        for b in log.segments.iter().flatten() {
            assert_eq!(BatchHeader::parse(b).unwrap().compression(), Some(codec));
        }
        // A second pass over a clean log changes nothing.
        let before = log.segments.clone();
        log.checkpoint = 0;
        log.pass(&mut map, false);
        assert_eq!(log.segments, before);
    }
}

#[test]
fn tombstones_and_keyless_records() {
    let ops = vec![
        (Some(1), Some(1)),
        (None, Some(2)),
        (Some(2), Some(3)),
        (Some(1), None),
        (Some(3), None),
        (None, None),
    ];
    for drop in [false, true] {
        let mut log = Log::write(&[
            vec![(Compression::Gzip, ops.clone())],
            vec![(Compression::None, ops[..3].to_vec())],
        ]);
        let mut map = KeyMap::with_memory(1 << 12, 0.9);
        log.compact(&mut map, drop);
        log.check(drop);
        let keys: Vec<_> = log.records().into_iter().map(|r| r.1 .0).collect();
        assert!(keys.iter().all(Option::is_some), "keyless records are gone");
    }
}

#[test]
fn a_small_map_takes_several_passes() {
    let ops = updates(40, 3);
    let segs: Vec<Vec<(Compression, Vec<Op>)>> = ops
        .chunks(25)
        .map(|seg| seg.chunks(4).map(|b| (Compression::Zstd, b.to_vec())).collect())
        .collect();
    let mut log = Log::write(&segs);
    // 10 slots, 9 keys per pass: 40 keys need several passes.
    let mut map = KeyMap::with_memory(24 * 10, 0.9);
    let passes = log.compact(&mut map, false);
    assert!(passes > 3, "{passes} passes");
    log.check(false);
    assert_eq!(log.records().len(), 40);
}

#[test]
fn keep_all_segments_are_byte_identical() {
    let mut log = Log::write(&[vec![
        (Compression::Snappy, vec![(Some(1), Some(1)), (Some(2), Some(2))]),
        (Compression::None, vec![(Some(3), Some(3))]),
    ]]);
    let original: Vec<u8> = log.segments[0].concat();
    let mut map = KeyMap::with_memory(1 << 12, 0.9);
    let built = build_map(log.segments[0].iter().map(Vec::as_slice), 0..3, &mut map).unwrap();
    assert_eq!(
        built,
        MapBuild {
            end_offset: 3,
            full: false
        }
    );
    let cleaned = clean_segment(
        log.segments[0].iter().map(Vec::as_slice),
        &map,
        &mut FilterPolicy::default(),
    )
    .unwrap();
    assert_eq!(cleaned.bytes, original);
    assert_eq!(
        (cleaned.batches_kept, cleaned.batches_rewritten, cleaned.batches_dropped),
        (2, 0, 0)
    );
    assert_eq!((cleaned.records_kept, cleaned.records_dropped), (3, 0));
    assert_eq!((cleaned.first_offset, cleaned.last_offset), (Some(0), Some(2)));
    assert_eq!((cleaned.max_timestamp, cleaned.offset_of_max_timestamp), (1_002, 2));
    log.compact(&mut map, false);
    log.check(false);
}

#[test]
fn clean_segment_counts() {
    let log = Log::write(&[vec![
        (Compression::Lz4, vec![(Some(1), Some(1)), (Some(2), Some(2))]),
        (Compression::None, vec![(Some(1), Some(3)), (Some(2), Some(4))]),
        (Compression::None, vec![(Some(1), Some(5)), (Some(9), Some(6))]),
    ]]);
    let batches: Vec<&[u8]> = log.segments[0].iter().map(Vec::as_slice).collect();
    let mut map = KeyMap::with_memory(1 << 12, 0.9);
    build_map(batches.iter().copied(), 0..6, &mut map).unwrap();
    let c = clean_segment(batches.iter().copied(), &map, &mut FilterPolicy::default()).unwrap();
    assert_eq!((c.batches_kept, c.batches_rewritten, c.batches_dropped), (1, 1, 1));
    assert_eq!((c.records_kept, c.records_dropped), (3, 3));
    assert_eq!((c.first_offset, c.last_offset), (Some(2), Some(5)));
    assert_eq!(c.max_timestamp, 1_005);
    assert_eq!(c.offset_of_max_timestamp, 5);
    let empty = clean_segment(std::iter::empty(), &map, &mut FilterPolicy::default()).unwrap();
    assert_eq!(
        (empty.first_offset, empty.max_timestamp, empty.offset_of_max_timestamp),
        (None, -1, -1)
    );
}

#[test]
fn build_map_respects_start_offset_and_capacity() {
    let log = Log::write(&[vec![
        (Compression::None, (0..4).map(|k| (Some(k), Some(1))).collect()),
        (Compression::None, (4..8).map(|k| (Some(k), Some(1))).collect()),
        (Compression::None, vec![(None, Some(1)), (None, Some(2))]),
    ]]);
    let batches: Vec<&[u8]> = log.segments[0].iter().map(Vec::as_slice).collect();
    // Start inside the first batch: keys 0 and 1 are clean, not mapped.
    let mut map = KeyMap::with_memory(1 << 12, 0.9);
    let b = build_map(batches.iter().copied(), 2..12, &mut map).unwrap();
    assert_eq!(
        b,
        MapBuild {
            end_offset: 12,
            full: false
        },
        "the whole range is mapped"
    );
    assert_eq!(
        (map.len(), map.get(&key_bytes(0)), map.get(&key_bytes(2))),
        (6, None, Some(2))
    );
    assert_eq!(map.latest_offset(), Some(9));
    // The range end bounds the map too.
    map.clear();
    let b = build_map(batches.iter().copied(), 2..6, &mut map).unwrap();
    assert_eq!(
        b,
        MapBuild {
            end_offset: 6,
            full: false
        }
    );
    assert_eq!(
        (map.len(), map.get(&key_bytes(6)), map.latest_offset()),
        (4, None, Some(5))
    );
    // A map of 3 keys stops at the 4th new key.
    let mut map = KeyMap::with_memory(24 * 3, 1.0);
    let b = build_map(batches.iter().copied(), 0..10, &mut map).unwrap();
    assert_eq!(
        b,
        MapBuild {
            end_offset: 3,
            full: true
        }
    );
    map.clear();
    let b = build_map(batches.iter().copied(), 3..10, &mut map).unwrap();
    assert_eq!(
        b,
        MapBuild {
            end_offset: 6,
            full: true
        }
    );
    // Nothing to map: the range is done.
    map.clear();
    assert_eq!(
        build_map(std::iter::empty(), 7..9, &mut map).unwrap(),
        MapBuild {
            end_offset: 9,
            full: false
        }
    );
}

#[test]
fn producer_last_batches_survive_empty() {
    let opts = |seq| BatchOptions {
        producer_id: 5,
        producer_epoch: 1,
        base_sequence: seq,
        ..BatchOptions::default()
    };
    let rec = |k: &'static [u8]| Record {
        key: Some(k),
        value: Some(b"v"),
        headers: &[],
        timestamp_delta: 0,
    };
    let b0 = build_batch_with(0, 10, Compression::None, &opts(0), &[rec(b"a")]);
    let b1 = build_batch_with(1, 11, Compression::Gzip, &opts(1), &[rec(b"b")]);
    let b2 = build_batch_with(
        2,
        12,
        Compression::None,
        &BatchOptions::default(),
        &[rec(b"a"), rec(b"b")],
    );
    let batches = [b0.as_slice(), b1.as_slice(), b2.as_slice()];
    let mut map = KeyMap::with_memory(1 << 12, 0.9);
    build_map(batches, 0..4, &mut map).unwrap();
    // The caller knows producer 5's last batch ends at offset 1.
    let mut policy = |h: &BatchHeader| FilterPolicy {
        retain_empty_producer_batch: h.producer_id == 5 && h.last_offset() == 1,
        ..FilterPolicy::default()
    };
    let c = clean_segment(batches, &map, &mut policy).unwrap();
    let out = split_batches(&c.bytes).unwrap();
    assert_eq!(out.len(), 2);
    let h = BatchHeader::parse(out[0]).unwrap();
    assert_eq!(
        (h.base_offset, h.record_count, h.producer_id, h.base_sequence),
        (1, 0, 5, 1)
    );
    assert_eq!(out[1], b2.as_slice());
    assert_eq!((c.batches_dropped, c.batches_rewritten, c.batches_kept), (1, 1, 1));
    assert_eq!((c.records_kept, c.records_dropped), (2, 2));
}

#[test]
fn split_batches_refuses_garbage() {
    let b = build_batch_with(0, 0, Compression::None, &BatchOptions::default(), &[Record::default()]);
    let two = [b.clone(), b.clone()].concat();
    assert_eq!(split_batches(&two).unwrap().len(), 2);
    assert!(split_batches(&[]).unwrap().is_empty());
    assert!(split_batches(&two[..two.len() - 1]).is_err());
    let mut bad = two.clone();
    bad[65] ^= 0xff;
    assert!(split_batches(&bad).is_err());
    let map = KeyMap::with_memory(100, 0.9);
    assert!(clean_segment([&two[..5]], &map, &mut FilterPolicy::default()).is_err());
    // Batches whose offsets do not ascend.
    assert!(clean_segment([b.as_slice(), b.as_slice()], &map, &mut FilterPolicy::default()).is_err());
    let mut m = KeyMap::with_memory(100, 0.9);
    assert!(build_map([&bad[..b.len()]], 0..1, &mut m).is_err());
}

#[test]
fn cleaner_checkpoint_file() {
    assert_eq!(checkpoint::file_name(2), "cleaner-offset-checkpoint.2");
    assert_eq!(checkpoint::parse_file_name("cleaner-offset-checkpoint.2"), Some(2));
    assert_eq!(checkpoint::parse_file_name("cleaner-offset-checkpoint.2.tmp"), None);
    assert_eq!(checkpoint::parse_file_name("recovery-point-offset-checkpoint.2"), None);
    let mut e = BTreeMap::from([(("compacted".to_string(), 3), 120)]);
    let data = checkpoint::encode(&e);
    assert_eq!(data, b"0\n1\ncompacted 3 120\n");
    assert_eq!(checkpoint::decode(&data), Ok(e.clone()));
    let tp = ("compacted".to_string(), 3);
    assert!(!checkpoint::truncate(&mut e, &tp, 200));
    assert!(checkpoint::truncate(&mut e, &tp, 100));
    assert_eq!(e[&tp], 100);
    assert!(!checkpoint::truncate(&mut e, &("other".to_string(), 0), 0));
}

fn op_strategy() -> impl Strategy<Value = Op> {
    (
        prop::option::weighted(0.95, 0u8..24),
        prop::option::weighted(0.8, any::<u16>()),
    )
}

fn codec_strategy() -> impl Strategy<Value = Compression> {
    prop::sample::select(CODECS.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random workloads compacted with random (often too small) maps end
    /// exactly as a model of "latest record per key" says.
    #[test]
    fn compaction_matches_a_model(
        segs in prop::collection::vec(
            prop::collection::vec((codec_strategy(), prop::collection::vec(op_strategy(), 1..6)), 1..5),
            1..6,
        ),
        slots in 2usize..40,
        drop_tombstones in any::<bool>(),
        extra in prop::collection::vec((codec_strategy(), prop::collection::vec(op_strategy(), 1..6)), 0..4),
    ) {
        let mut log = Log::write(&segs);
        let mut map = KeyMap::with_memory(24 * slots, 0.9);
        log.compact(&mut map, drop_tombstones);
        log.check(drop_tombstones);
        // Appending more and compacting again still matches.
        let mut more = Log::write(&[extra]);
        if !more.written.is_empty() {
            for b in more.segments[0].iter_mut() {
                let h = BatchHeader::parse(b).unwrap();
                crate::record::rewrite_batch(b, h.base_offset + log.end_offset, -1, None);
            }
            for (o, r) in std::mem::take(&mut more.written) {
                log.written.insert(o + log.end_offset, r);
            }
            log.end_offset += more.end_offset;
            log.segments.push(more.segments.remove(0));
            log.compact(&mut map, drop_tombstones);
            log.check(drop_tombstones);
        }
    }

    /// The key map agrees with a BTreeMap while it accepts keys.
    #[test]
    fn key_map_matches_a_model(
        puts in prop::collection::vec((prop::collection::vec(any::<u8>(), 0..6), 0i64..1000), 0..300),
        slots in 1usize..64,
        load in 0.1f64..1.0,
    ) {
        let mut m = KeyMap::with_memory(24 * slots, load);
        let mut model: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        for (k, o) in &puts {
            let known = model.contains_key(k);
            let accepted = m.put(k, *o);
            prop_assert_eq!(accepted, known || model.len() < m.capacity());
            if accepted {
                let e = model.entry(k.clone()).or_insert(*o);
                *e = (*e).max(*o);
            }
            prop_assert_eq!(m.len(), model.len());
        }
        for (k, o) in &model {
            prop_assert_eq!(m.get(k), Some(*o));
        }
        prop_assert_eq!(m.latest_offset(), model.values().max().copied());
    }
}
