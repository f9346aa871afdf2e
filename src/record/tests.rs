//! Tests of the record module's public behaviour.

use super::varint::{put_varint, put_varlong};
use super::*;

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

const MAX: usize = 1 << 20;

/// Deterministic xorshift64* generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Owned material for a batch of `n` varied records.
struct Sample {
    keys: Vec<Vec<u8>>,
    values: Vec<Vec<u8>>,
}

const HEADERS: [(&str, Option<&[u8]>); 2] = [("trace-id", Some(b"abc123")), ("empty", None)];

impl Sample {
    fn new(n: usize) -> Self {
        Sample {
            keys: (0..n).map(|i| format!("key-{i}").into_bytes()).collect(),
            values: (0..n)
                .map(|i| (0..(10 + i * 37)).map(|j| (i * 31 + j) as u8).collect())
                .collect(),
        }
    }

    fn records(&self) -> Vec<Record<'_>> {
        (0..self.keys.len())
            .map(|i| Record {
                key: if i % 3 == 1 { None } else { Some(&self.keys[i]) },
                value: if i % 5 == 4 { None } else { Some(&self.values[i]) },
                headers: if i % 2 == 0 { &HEADERS } else { &[] },
                timestamp_delta: ((i * 7) % 11) as i64,
            })
            .collect()
    }

    fn batch(&self, codec: Compression, base_ts: i64) -> Vec<u8> {
        build_batch(0, base_ts, codec, &self.records())
    }
}

fn expected(records: &[Record<'_>]) -> Vec<OwnedRecord> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| OwnedRecord {
            offset_delta: i as i32,
            timestamp_delta: r.timestamp_delta,
            key: r.key.map(bytes::Bytes::copy_from_slice),
            value: r.value.map(bytes::Bytes::copy_from_slice),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(bytes::Bytes::copy_from_slice)))
                .collect(),
        })
        .collect()
}

fn header(b: &[u8]) -> BatchHeader {
    BatchHeader::parse(b).unwrap()
}

fn set_i32(b: &mut [u8], at: usize, v: i32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn set_i16(b: &mut [u8], at: usize, v: i16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn set_i64(b: &mut [u8], at: usize, v: i64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

/// Apply `f` to a copy of `batch` and fix the CRC.
fn patched(batch: &[u8], f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = batch.to_vec();
    f(&mut b);
    let len = (b.len() - LOG_OVERHEAD) as i32;
    set_i32(&mut b, BATCH_LENGTH_OFFSET, len);
    assert!(update_crc(&mut b));
    b
}

fn is_corrupt<T: std::fmt::Debug>(r: Result<T, RecordError>) -> bool {
    matches!(r, Err(RecordError::CorruptMessage(_)))
}

fn is_invalid<T: std::fmt::Debug>(r: Result<T, RecordError>) -> bool {
    matches!(r, Err(RecordError::InvalidRecord(_)))
}

/// A hand-rolled record, for malformed-record tests.
#[derive(Clone)]
struct RawRec {
    offset_delta: i32,
    key: Option<Vec<u8>>,
    header_count: i32,
    header_key_len: i32,
    len_adjust: i32,
}

impl RawRec {
    fn ok(offset_delta: i32) -> Self {
        RawRec {
            offset_delta,
            key: Some(b"k".to_vec()),
            header_count: 1,
            header_key_len: 1,
            len_adjust: 0,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let mut body = vec![0u8];
        put_varlong(&mut body, 3);
        put_varint(&mut body, self.offset_delta);
        match &self.key {
            None => put_varint(&mut body, -1),
            Some(k) => {
                put_varint(&mut body, k.len() as i32);
                body.extend_from_slice(k);
            }
        }
        put_varint(&mut body, 2);
        body.extend_from_slice(b"vv");
        put_varint(&mut body, self.header_count);
        if self.header_count > 0 {
            put_varint(&mut body, self.header_key_len);
            if self.header_key_len > 0 {
                body.extend_from_slice(&b"h".repeat(self.header_key_len as usize));
            }
            put_varint(&mut body, -1);
        }
        put_varint(out, body.len() as i32 + self.len_adjust);
        out.extend_from_slice(&body);
    }
}

/// A batch with hand-rolled record bytes.
fn raw_batch(codec: Compression, records: &[u8], count: i32) -> Vec<u8> {
    let template = build_batch(0, 1000, Compression::None, &[Record::default()]);
    let body = match codec {
        Compression::None => records.to_vec(),
        c => compression::compress(c, records).unwrap(),
    };
    patched(&template, |b| {
        b.truncate(BATCH_HEADER_LEN);
        b.extend_from_slice(&body);
        set_i16(b, ATTRIBUTES_OFFSET, codec.id());
        set_i32(b, RECORD_COUNT_OFFSET, count);
        set_i32(b, LAST_OFFSET_DELTA_OFFSET, count - 1);
    })
}

fn raw_records(recs: &[RawRec]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in recs {
        r.encode(&mut out);
    }
    out
}

// ---------------------------------------------------------------- round trips

#[test]
fn roundtrip_each_codec() {
    let s = Sample::new(40);
    let records = s.records();
    for codec in CODECS {
        let b = s.batch(codec, 1_700_000_000_000);
        let h = header(&b);
        assert_eq!(h.magic, 2);
        assert_eq!(h.total_size(), b.len());
        assert_eq!(h.record_count, 40);
        assert_eq!(h.last_offset_delta, 39);
        assert_eq!(h.compression(), Some(codec));
        assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
        assert_eq!(h.max_timestamp, 1_700_000_000_010);
        assert_eq!(h.producer_id, NO_PRODUCER_ID);
        assert!(verify_crc(&b));

        let v = validate_produce_payload(&b, MAX).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
        assert_eq!(v.batches.len(), 1);
        assert_eq!(v.total_records, 40);
        assert_eq!(v.max_timestamp, 1_700_000_000_010);
        assert_eq!(v.offset_of_max_timestamp_delta, 39);
        let span = v.batches[0];
        assert_eq!((span.start, span.len), (0, b.len()));
        assert_eq!(span.compression, codec);
        assert_eq!(span.record_count, 40);
        assert_eq!(span.base_timestamp, 1_700_000_000_000);
        assert!(!span.is_control && !span.is_transactional);

        assert_eq!(decode_records(&b).unwrap(), expected(&records), "{codec:?}");
    }
}

#[test]
fn roundtrip_edge_values() {
    let big = vec![0xabu8; 300_000];
    let headers: [(&str, Option<&[u8]>); 3] = [("", Some(b"")), ("ключ", None), ("k", Some(&big[..10]))];
    let records = [
        Record {
            key: Some(b""),
            value: Some(b""),
            headers: &headers,
            timestamp_delta: -5,
        },
        Record {
            key: None,
            value: None,
            headers: &[],
            timestamp_delta: i64::MAX,
        },
        Record {
            key: Some(&big),
            value: Some(&big),
            headers: &[],
            timestamp_delta: i64::MIN,
        },
    ];
    for codec in CODECS {
        let b = build_batch(0, 0, codec, &records);
        validate_produce_payload(&b, 4 << 20).unwrap();
        assert_eq!(decode_records(&b).unwrap(), expected(&records), "{codec:?}");
    }
}

#[test]
fn builder_options_are_written() {
    let opts = BatchOptions {
        partition_leader_epoch: 9,
        producer_id: 77,
        producer_epoch: 3,
        base_sequence: 100,
        is_transactional: true,
        is_control: false,
        timestamp_type: TimestampType::CreateTime,
    };
    let b = build_batch_with(0, 5, Compression::Lz4, &opts, &[Record::default(); 3]);
    let h = header(&b);
    assert_eq!(h.partition_leader_epoch, 9);
    assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (77, 3, 100));
    assert!(h.is_transactional() && !h.is_control());
    let span = validate_produce_payload(&b, MAX).unwrap().batches[0];
    assert_eq!(
        (span.producer_id, span.producer_epoch, span.base_sequence),
        (77, 3, 100)
    );
    assert!(span.is_transactional);
}

#[test]
fn empty_builder_makes_a_batch_validation_refuses() {
    let b = build_batch(0, 0, Compression::None, &[]);
    assert_eq!(b.len(), BATCH_HEADER_LEN);
    assert_eq!(header(&b).record_count, 0);
    assert!(decode_records(&b).unwrap().is_empty());
    assert!(is_invalid(validate_produce_payload(&b, MAX)));
}

// ------------------------------------------------- interoperability vectors

/// Batches encoded by another client (Sarama's record batch test vectors:
/// one record, key 01020304, value 050607, header 08090a = 0b0c).
fn foreign_batch(batch_len: u8, crc: [u8; 4], codec: u8, records: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, batch_len, 0, 0, 0, 0, 2];
    b.extend_from_slice(&crc);
    b.extend_from_slice(&[0, codec, 0, 0, 0, 0]);
    b.extend_from_slice(&[0, 0, 1, 88, 141, 205, 89, 56]); // base timestamp
    b.extend_from_slice(&[0; 8]); // max timestamp
    b.extend_from_slice(&[0; 8]); // producer id
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 1]); // epoch, sequence, count
    b.extend_from_slice(records);
    b
}

#[test]
fn foreign_client_batches_are_accepted() {
    const REC: [u8; 21] = [40, 0, 10, 0, 8, 1, 2, 3, 4, 6, 5, 6, 7, 2, 6, 8, 9, 10, 4, 11, 12];
    let gzip: Vec<u8> = vec![
        31, 139, 8, 0, 0, 9, 110, 136, 0, 255, 0, 21, 0, 234, 255, 40, 0, 10, 0, 8, 1, 2, 3, 4, 6, 5, 6, 7, 2, 6, 8, 9,
        10, 4, 11, 12, 3, 0, 173, 201, 88, 103, 21, 0, 0, 0,
    ];
    let mut raw_snappy = vec![21, 80];
    raw_snappy.extend_from_slice(&REC);
    let lz4: Vec<u8> = vec![
        4, 34, 77, 24, 100, 112, 185, 21, 0, 0, 128, 40, 0, 10, 0, 8, 1, 2, 3, 4, 6, 5, 6, 7, 2, 6, 8, 9, 10, 4, 11,
        12, 0, 0, 0, 0, 12, 59, 239, 146,
    ];
    let cases = [
        foreign_batch(70, [84, 121, 97, 253], 0, &REC),
        foreign_batch(95, [231, 74, 206, 165], 1, &gzip),
        foreign_batch(72, [21, 0, 159, 97], 2, &raw_snappy),
        foreign_batch(89, [169, 74, 119, 197], 3, &lz4),
    ];
    let want = OwnedRecord {
        offset_delta: 0,
        timestamp_delta: 5,
        key: Some(bytes::Bytes::from_static(&[1, 2, 3, 4])),
        value: Some(bytes::Bytes::from_static(&[5, 6, 7])),
        headers: vec![(
            String::from_utf8(vec![8, 9, 10]).unwrap(),
            Some(bytes::Bytes::from_static(&[11, 12])),
        )],
    };
    for b in &cases {
        assert!(verify_crc(b), "crc of {:?}", header(b).compression());
        let v = validate_produce_payload(b, MAX).unwrap();
        assert_eq!(v.total_records, 1);
        assert_eq!(decode_records(b).unwrap(), vec![want.clone()]);
    }
    // Our own encoding of the uncompressed case is byte-identical.
    let ours = build_batch_with(
        0,
        1_479_847_795_000,
        Compression::None,
        &BatchOptions {
            partition_leader_epoch: 0,
            producer_id: 0,
            producer_epoch: 0,
            base_sequence: 0,
            ..BatchOptions::default()
        },
        &[Record {
            key: Some(&[1, 2, 3, 4]),
            value: Some(&[5, 6, 7]),
            headers: &[("\u{8}\u{9}\u{a}", Some(&[11, 12]))],
            timestamp_delta: 5,
        }],
    );
    let mut theirs = cases[0].clone();
    // Sarama wrote max_timestamp 0; ours is base + 5.
    set_i64(&mut theirs, MAX_TIMESTAMP_OFFSET, 1_479_847_795_005);
    update_crc(&mut theirs);
    assert_eq!(ours, theirs);
}

#[test]
fn crc32c_is_castagnoli() {
    assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
}

// ------------------------------------------------------------ payload rules

#[test]
fn multi_batch_payload_summary() {
    let s = Sample::new(5);
    let recs = s.records();
    let b1 = build_batch(0, 100, Compression::None, &recs); // max 110
    let b2 = build_batch(0, 500, Compression::Zstd, &recs[..3]); // max 514? deltas 0,7,3 -> 507
    let b3 = build_batch(0, 200, Compression::Gzip, &recs); // max 210
    let mut payload = b1.clone();
    payload.extend_from_slice(&b2);
    payload.extend_from_slice(&b3);
    let v = validate_produce_payload(&payload, MAX).unwrap();
    assert_eq!(v.batches.len(), 3);
    assert_eq!(v.total_records, 13);
    assert_eq!(v.max_timestamp, 507);
    // Last offset of the second batch: 5 records before it, last delta 2.
    assert_eq!(v.offset_of_max_timestamp_delta, 7);
    assert_eq!(v.batches[1].range(), b1.len()..b1.len() + b2.len());
    assert_eq!(v.batches[2].start, b1.len() + b2.len());

    // Ties: the first batch holding the max wins.
    let mut tie = b1.clone();
    tie.extend_from_slice(&b1);
    let v = validate_produce_payload(&tie, MAX).unwrap();
    assert_eq!((v.max_timestamp, v.offset_of_max_timestamp_delta), (110, 4));

    // Kafka's one-batch rule is available.
    let one = ValidateOptions {
        max_batches: 1,
        ..ValidateOptions::new(MAX)
    };
    assert!(validate_payload(&b1, &one).is_ok());
    assert!(is_invalid(validate_payload(&payload, &one)));
}

#[test]
fn empty_payload_is_invalid() {
    assert!(is_invalid(validate_produce_payload(&[], MAX)));
}

#[test]
fn bad_crc_is_corrupt() {
    let s = Sample::new(4);
    for codec in CODECS {
        let b = s.batch(codec, 0);
        for at in [
            CRC_OFFSET,
            ATTRIBUTES_OFFSET + 1,
            RECORD_COUNT_OFFSET + 2,
            BATCH_HEADER_LEN + 3,
            b.len() - 1,
        ] {
            let mut bad = b.clone();
            bad[at] ^= 0x40;
            let r = validate_produce_payload(&bad, MAX);
            assert!(is_corrupt(r.clone()), "{codec:?} byte {at}: {r:?}");
            assert!(!verify_crc(&bad));
            assert!(is_corrupt(decode_records(&bad)));
        }
    }
}

#[test]
fn truncation_is_corrupt() {
    let s = Sample::new(3);
    let b = s.batch(Compression::None, 0);
    for cut in 1..b.len() {
        let r = validate_produce_payload(&b[..cut], MAX);
        assert!(is_corrupt(r.clone()), "cut {cut}: {r:?}");
        assert!(decode_records(&b[..cut]).is_err());
    }
    // A complete batch followed by a partial one.
    let mut two = b.clone();
    two.extend_from_slice(&b[..b.len() - 1]);
    assert!(is_corrupt(validate_produce_payload(&two, MAX)));
    two.truncate(b.len() + 5);
    assert!(is_corrupt(validate_produce_payload(&two, MAX)));
}

#[test]
fn garbage_is_refused() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for len in [1usize, 12, 16, 17, 60, 61, 62, 100, 1000, 5000] {
        for _ in 0..50 {
            let g: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            assert!(validate_produce_payload(&g, MAX).is_err());
            assert!(decode_records(&g).is_err());
            assert_eq!(BatchIter::new(&g, true).count(), 0);
        }
    }
}

#[test]
fn wrong_magic_is_invalid_record() {
    let b = Sample::new(2).batch(Compression::None, 0);
    for magic in [0u8, 1, 3, 0xff] {
        let mut bad = b.clone();
        bad[MAGIC_OFFSET] = magic;
        let r = validate_produce_payload(&bad, MAX);
        assert!(is_invalid(r.clone()), "magic {magic}: {r:?}");
        assert_eq!(r.unwrap_err().kafka_code(), 87);
    }
    // A legacy (v1) message set: short entry, magic 1.
    let mut legacy = vec![0u8; 8];
    legacy.extend_from_slice(&20i32.to_be_bytes());
    legacy.extend_from_slice(&[0, 0, 0, 0, 1, 0]);
    legacy.extend_from_slice(&[0u8; 14]);
    assert!(is_invalid(validate_produce_payload(&legacy, MAX)));
}

#[test]
fn small_batch_length_is_corrupt() {
    let b = Sample::new(2).batch(Compression::None, 0);
    for len in [i32::MIN, -1, 0, 48] {
        let mut bad = b.clone();
        set_i32(&mut bad, BATCH_LENGTH_OFFSET, len);
        assert!(is_corrupt(validate_produce_payload(&bad, MAX)), "len {len}");
        assert!(decode_records(&bad).is_err());
    }
    // A length beyond the payload.
    let mut bad = b.clone();
    set_i32(&mut bad, BATCH_LENGTH_OFFSET, i32::MAX);
    assert!(is_corrupt(validate_produce_payload(&bad, usize::MAX)));
}

#[test]
fn record_count_rules() {
    let s = Sample::new(5);
    for codec in CODECS {
        let b = s.batch(codec, 0);
        // Header claims one more record than present.
        let more = patched(&b, |b| {
            set_i32(b, RECORD_COUNT_OFFSET, 6);
            set_i32(b, LAST_OFFSET_DELTA_OFFSET, 5);
        });
        assert!(is_corrupt(validate_produce_payload(&more, MAX)), "{codec:?}");
        assert!(is_corrupt(decode_records(&more)), "{codec:?}");
        // Header claims one fewer: the last record is left over.
        let fewer = patched(&b, |b| {
            set_i32(b, RECORD_COUNT_OFFSET, 4);
            set_i32(b, LAST_OFFSET_DELTA_OFFSET, 3);
        });
        assert!(is_corrupt(validate_produce_payload(&fewer, MAX)), "{codec:?}");
        assert!(is_corrupt(decode_records(&fewer)), "{codec:?}");
        // last_offset_delta must be count - 1.
        let delta = patched(&b, |b| set_i32(b, LAST_OFFSET_DELTA_OFFSET, 5));
        assert!(is_invalid(validate_produce_payload(&delta, MAX)), "{codec:?}");
        // No records, or a negative count.
        for (count, last) in [(0, -1), (0, 0), (-1, -2), (i32::MIN, i32::MAX)] {
            let zero = patched(&b, |b| {
                set_i32(b, RECORD_COUNT_OFFSET, count);
                set_i32(b, LAST_OFFSET_DELTA_OFFSET, last);
            });
            assert!(is_invalid(validate_produce_payload(&zero, MAX)), "{codec:?} {count}");
        }
        // A huge count is refused without walking.
        let huge = patched(&b, |b| {
            set_i32(b, RECORD_COUNT_OFFSET, i32::MAX);
            set_i32(b, LAST_OFFSET_DELTA_OFFSET, i32::MAX - 1);
        });
        assert!(is_corrupt(validate_produce_payload(&huge, MAX)), "{codec:?}");
        assert!(decode_records(&huge).is_err());
    }
}

#[test]
fn too_large_batch() {
    let b = Sample::new(10).batch(Compression::None, 0);
    let r = validate_produce_payload(&b, b.len() - 1);
    assert_eq!(r, Err(RecordError::MessageTooLarge(b.len())));
    assert_eq!(r.unwrap_err().kafka_code(), 10);
    assert!(validate_produce_payload(&b, b.len()).is_ok());
    // The limit is per batch, not per payload.
    let mut two = b.clone();
    two.extend_from_slice(&b);
    assert!(validate_produce_payload(&two, b.len()).is_ok());
}

#[test]
fn unknown_codec() {
    let b = Sample::new(2).batch(Compression::None, 0);
    for codec in 5..=7i16 {
        let bad = patched(&b, |b| set_i16(b, ATTRIBUTES_OFFSET, codec));
        assert_eq!(header(&bad).compression(), None);
        let r = validate_produce_payload(&bad, MAX);
        assert_eq!(r, Err(RecordError::UnsupportedCompression(codec)));
        assert_eq!(r.unwrap_err().kafka_code(), 76);
        assert_eq!(decode_records(&bad), Err(RecordError::UnsupportedCompression(codec)));
    }
}

#[test]
fn zip_bomb_is_capped() {
    // 20 MiB of zeros squeezes far beyond 64x, and past the 16 MiB floor.
    let zeros = vec![0u8; 20 << 20];
    let rec = [Record {
        value: Some(&zeros),
        ..Record::default()
    }];
    for codec in [Compression::Gzip, Compression::Lz4, Compression::Zstd] {
        let b = build_batch(0, 0, codec, &rec);
        assert!(b.len() < (20 << 20) / 64, "{codec:?} compressed to {}", b.len());
        let r = validate_produce_payload(&b, MAX);
        match &r {
            Err(RecordError::CorruptMessage(m)) => assert!(m.contains("limit"), "{codec:?}: {m}"),
            other => panic!("{codec:?}: {other:?}"),
        }
        assert!(is_corrupt(decode_records(&b)), "{codec:?}");
    }
    // With an explicit cap every codec stops at it.
    let s = Sample::new(50);
    for codec in CODECS.into_iter().skip(1) {
        let b = s.batch(codec, 0);
        let tight = ValidateOptions {
            max_decompressed_bytes: 1000,
            ..ValidateOptions::new(MAX)
        };
        assert!(is_corrupt(validate_payload(&b, &tight)), "{codec:?}");
        assert!(validate_payload(&b, &ValidateOptions::new(MAX)).is_ok());
    }
}

#[test]
fn client_rules() {
    let recs = [Record::default(); 2];
    let control = build_batch_with(
        0,
        0,
        Compression::None,
        &BatchOptions {
            is_control: true,
            ..BatchOptions::default()
        },
        &recs,
    );
    assert!(is_invalid(validate_produce_payload(&control, MAX)));
    let allow = ValidateOptions {
        allow_control_batches: true,
        ..ValidateOptions::new(MAX)
    };
    assert!(validate_payload(&control, &allow).unwrap().batches[0].is_control);

    let based = build_batch(42, 0, Compression::None, &recs);
    assert!(is_invalid(validate_produce_payload(&based, MAX)));
    let allow = ValidateOptions {
        allow_nonzero_base_offset: true,
        ..ValidateOptions::new(MAX)
    };
    assert!(validate_payload(&based, &allow).is_ok());

    let idempotent = |seq| {
        build_batch_with(
            0,
            0,
            Compression::None,
            &BatchOptions {
                producer_id: 5,
                producer_epoch: 0,
                base_sequence: seq,
                ..BatchOptions::default()
            },
            &recs,
        )
    };
    assert!(is_invalid(validate_produce_payload(&idempotent(-1), MAX)));
    assert!(validate_produce_payload(&idempotent(0), MAX).is_ok());

    // Compacted topics need keys.
    let keyed = ValidateOptions {
        require_keys: true,
        ..ValidateOptions::new(MAX)
    };
    let s = Sample::new(3); // record 1 has no key
    for codec in CODECS {
        // Every keyless record is reported, by its index in the batch.
        assert_eq!(
            validate_payload(&s.batch(codec, 0), &keyed),
            Err(RecordError::MissingKeys(vec![1])),
            "{codec:?}"
        );
        let with_keys = build_batch(
            0,
            0,
            codec,
            &[Record {
                key: Some(b"k"),
                ..Record::default()
            }],
        );
        assert!(validate_payload(&with_keys, &keyed).is_ok());
    }
}

#[test]
fn malformed_records() {
    let good = [RawRec::ok(0), RawRec::ok(1), RawRec::ok(2)];
    for codec in CODECS {
        let b = raw_batch(codec, &raw_records(&good), 3);
        validate_produce_payload(&b, MAX).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
        assert_eq!(decode_records(&b).unwrap().len(), 3);

        let with = |i: usize, f: &dyn Fn(&mut RawRec)| {
            let mut recs = good.to_vec();
            f(&mut recs[i]);
            raw_batch(codec, &raw_records(&recs), 3)
        };
        // Record length longer / shorter than the contents.
        for adj in [1, -1, 100, -100] {
            let b = with(1, &|r| r.len_adjust = adj);
            assert!(is_corrupt(validate_produce_payload(&b, MAX)), "{codec:?} adj {adj}");
            assert!(decode_records(&b).is_err(), "{codec:?} adj {adj}");
        }
        // Negative length.
        let mut neg = Vec::new();
        put_varint(&mut neg, -3);
        neg.extend_from_slice(&[0; 20]);
        let b = raw_batch(codec, &neg, 1);
        assert!(is_corrupt(validate_produce_payload(&b, MAX)), "{codec:?}");
        // Offset deltas out of order.
        for (i, d) in [(1, 2), (0, 1), (2, 1), (2, -1)] {
            let b = with(i, &|r| r.offset_delta = d);
            assert!(is_invalid(validate_produce_payload(&b, MAX)), "{codec:?} {i}->{d}");
            // decode_records accepts gaps (compacted batches).
            assert!(decode_records(&b).is_ok());
        }
        // Negative header count, null header key.
        let b = with(0, &|r| r.header_count = -1);
        assert!(is_invalid(validate_produce_payload(&b, MAX)), "{codec:?}");
        assert!(is_invalid(decode_records(&b)), "{codec:?}");
        let b = with(2, &|r| r.header_key_len = -1);
        assert!(is_invalid(validate_produce_payload(&b, MAX)), "{codec:?}");
        assert!(is_invalid(decode_records(&b)), "{codec:?}");
        // More headers than bytes.
        let b = with(2, &|r| r.header_count = 1000);
        assert!(validate_produce_payload(&b, MAX).is_err(), "{codec:?}");
        // A long key is fine; one that runs past the record's length is not.
        let b = with(1, &|r| r.key = Some(vec![b'x'; 5000]));
        assert!(validate_produce_payload(&b, MAX).is_ok(), "{codec:?}");
        let b = with(1, &|r| {
            r.key = Some(vec![b'x'; 5000]);
            r.len_adjust = -4990;
        });
        assert!(is_corrupt(validate_produce_payload(&b, MAX)), "{codec:?}");
        assert!(is_corrupt(decode_records(&b)), "{codec:?}");
        // Trailing bytes after the last record.
        let mut trailing = raw_records(&good);
        trailing.push(0);
        let b = raw_batch(codec, &trailing, 3);
        assert!(is_corrupt(validate_produce_payload(&b, MAX)), "{codec:?}");
        assert!(is_corrupt(decode_records(&b)), "{codec:?}");
        // Overlong varint.
        let mut long = vec![0xffu8; 6];
        long.extend_from_slice(&[0; 10]);
        let b = raw_batch(codec, &long, 1);
        assert!(is_corrupt(validate_produce_payload(&b, MAX)), "{codec:?}");
    }
}

#[test]
fn corrupt_compressed_data() {
    let s = Sample::new(20);
    for codec in CODECS.into_iter().skip(1) {
        let b = s.batch(codec, 0);
        // Truncated compressed stream with a fixed-up CRC.
        let cut = patched(&b, |b| b.truncate(BATCH_HEADER_LEN + (b.len() - BATCH_HEADER_LEN) / 2));
        assert!(is_corrupt(validate_produce_payload(&cut, MAX)), "{codec:?}");
        assert!(is_corrupt(decode_records(&cut)), "{codec:?}");
        // Nothing after the header.
        let none = patched(&b, |b| b.truncate(BATCH_HEADER_LEN));
        assert!(is_corrupt(validate_produce_payload(&none, MAX)), "{codec:?}");
        // Data compressed with one codec, labelled as another.
        let other = if codec == Compression::Zstd {
            Compression::Gzip
        } else {
            Compression::Zstd
        };
        let mislabelled = patched(&b, |b| set_i16(b, ATTRIBUTES_OFFSET, other.id()));
        assert!(is_corrupt(validate_produce_payload(&mislabelled, MAX)), "{codec:?}");
    }
}

// ------------------------------------------------------------------ rewrite

#[test]
fn rewrite_sets_offsets_without_touching_crc() {
    for codec in CODECS {
        let mut b = Sample::new(6).batch(codec, 1000);
        let crc = header(&b).crc;
        rewrite_batch(&mut b, 123_456, 17, None);
        let h = header(&b);
        assert_eq!((h.base_offset, h.partition_leader_epoch), (123_456, 17));
        assert_eq!(h.last_offset(), 123_461);
        assert_eq!(h.next_offset(), 123_462);
        assert_eq!(h.crc, crc);
        assert!(verify_crc(&b));
        assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
        let allow = ValidateOptions {
            allow_nonzero_base_offset: true,
            ..ValidateOptions::new(MAX)
        };
        assert!(validate_payload(&b, &allow).is_ok());
    }
}

#[test]
fn rewrite_log_append_time_recomputes_crc() {
    for codec in CODECS {
        let s = Sample::new(6);
        let mut b = s.batch(codec, 1000);
        rewrite_batch(&mut b, 10, 2, Some(99_999));
        let h = header(&b);
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(h.max_timestamp, 99_999);
        assert_eq!(h.base_timestamp, 1000, "base timestamp is kept");
        assert_eq!(h.compression(), Some(codec), "other attributes are kept");
        assert!(verify_crc(&b), "{codec:?}");
        assert_eq!(decode_records(&b).unwrap(), expected(&s.records()));
        assert!(BatchIter::new(&b, true).next().is_some());
        // Idempotent: same values, same bytes.
        let again = {
            let mut c = b.clone();
            rewrite_batch(&mut c, 10, 2, Some(99_999));
            c
        };
        assert_eq!(again, b);
        // A new time changes the CRC again, still valid.
        rewrite_batch(&mut b, 10, 2, Some(5));
        assert!(verify_crc(&b));
        assert_eq!(header(&b).max_timestamp, 5);
    }
}

#[test]
fn rewrite_never_panics_on_short_or_odd_buffers() {
    let b = Sample::new(2).batch(Compression::None, 0);
    for len in [0, 1, 20, 60, 61, b.len() - 1] {
        let mut short = b[..len].to_vec();
        rewrite_batch(&mut short, 1, 1, Some(1));
    }
    // A header whose batch_length exceeds the buffer.
    let mut odd = b.clone();
    set_i32(&mut odd, BATCH_LENGTH_OFFSET, i32::MAX);
    rewrite_batch(&mut odd, 1, 1, Some(1));
    set_i32(&mut odd, BATCH_LENGTH_OFFSET, -5);
    rewrite_batch(&mut odd, 1, 1, Some(2));
}

// ---------------------------------------------------------------- BatchIter

fn log_of(n: usize) -> (Vec<u8>, Vec<usize>) {
    let s = Sample::new(4);
    let mut log = Vec::new();
    let mut starts = Vec::new();
    for i in 0..n {
        let mut b = s.batch(CODECS[i % CODECS.len()], i as i64);
        rewrite_batch(&mut b, (i * 4) as i64, 1, None);
        starts.push(log.len());
        log.extend_from_slice(&b);
    }
    (log, starts)
}

#[test]
fn batch_iter_full_log() {
    let (log, starts) = log_of(5);
    let mut it = BatchIter::new(&log, true);
    let got: Vec<(usize, i64)> = it.by_ref().map(|(p, h)| (p, h.base_offset)).collect();
    assert_eq!(
        got,
        starts
            .iter()
            .enumerate()
            .map(|(i, &p)| (p, (i * 4) as i64))
            .collect::<Vec<_>>()
    );
    assert_eq!(it.valid_len(), log.len());
    assert!(it.is_done());
    assert_eq!(it.next(), None);
    assert_eq!(BatchIter::new(&[], true).scan_valid_len(), 0);
}

#[test]
fn batch_iter_torn_tail() {
    let (log, starts) = log_of(4);
    let last = starts[3];
    // Every cut inside the last batch leaves the first three.
    for cut in last..log.len() {
        let mut it = BatchIter::new(&log[..cut], true);
        assert_eq!(it.by_ref().count(), 3, "cut {cut}");
        assert_eq!(it.valid_len(), last);
    }
    // Zeroed (preallocated) and random tails.
    let mut zeroed = log.clone();
    zeroed.extend_from_slice(&[0u8; 4096]);
    assert_eq!(BatchIter::new(&zeroed, false).scan_valid_len(), log.len());
    let mut rng = Rng(99);
    for _ in 0..100 {
        let mut garbage = log.clone();
        let n = rng.below(200);
        garbage.extend((0..n).map(|_| rng.next() as u8));
        assert_eq!(BatchIter::new(&garbage, true).scan_valid_len(), log.len());
    }
}

#[test]
fn batch_iter_stops_at_bad_batch() {
    let (log, starts) = log_of(3);
    let mut bad = log.clone();
    bad[starts[1] + BATCH_HEADER_LEN + 2] ^= 1; // record bytes of batch 1
    let mut it = BatchIter::new(&bad, true);
    assert_eq!(it.by_ref().count(), 1);
    assert_eq!(it.valid_len(), starts[1]);
    // Without CRC checks the damage goes unnoticed.
    assert_eq!(BatchIter::new(&bad, false).scan_valid_len(), log.len());

    // Insane headers stop iteration even without CRC checks.
    let insane: [(usize, &[u8]); 5] = [
        (MAGIC_OFFSET, &[1]),
        (BATCH_LENGTH_OFFSET, &[0, 0, 0, 10]),
        (ATTRIBUTES_OFFSET, &[0, 6]),
        (RECORD_COUNT_OFFSET, &[0xff, 0xff, 0xff, 0xff]),
        (BASE_OFFSET_OFFSET, &[0x80, 0, 0, 0, 0, 0, 0, 0]),
    ];
    for (at, bytes) in insane {
        let mut b = log.clone();
        b[starts[2] + at..starts[2] + at + bytes.len()].copy_from_slice(bytes);
        assert_eq!(BatchIter::new(&b, false).scan_valid_len(), starts[2], "field at {at}");
    }
}

// ---------------------------------------------------------- header helpers

#[test]
fn header_accessors() {
    assert_eq!(BatchHeader::parse(&[0u8; 60]), None);
    let mut h = header(&Sample::new(1).batch(Compression::Snappy, 0));
    assert_eq!(h.compression(), Some(Compression::Snappy));
    h.attributes = ATTR_TIMESTAMP_TYPE | ATTR_TRANSACTIONAL | ATTR_CONTROL | 4;
    assert_eq!(h.compression(), Some(Compression::Zstd));
    assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
    assert!(h.is_transactional() && h.is_control());
    h.batch_length = -7;
    assert_eq!(h.total_size(), LOG_OVERHEAD);
    h.batch_length = i32::MAX;
    assert_eq!(h.total_size(), LOG_OVERHEAD + i32::MAX as usize);
    h.base_offset = i64::MAX;
    h.last_offset_delta = 5;
    let _ = h.last_offset(); // wraps, never panics
    let mut buf = [0u8; BATCH_HEADER_LEN];
    assert!(h.write(&mut buf));
    assert_eq!(BatchHeader::parse(&buf), Some(h));
    assert!(!h.write(&mut [0u8; 60]));
    for id in 0..=4 {
        assert_eq!(Compression::from_id(id).map(Compression::id), Some(id));
    }
    assert_eq!(compute_crc(&[0u8; 10]), None);
}

#[test]
fn error_codes() {
    assert_eq!(RecordError::CorruptMessage(String::new()).kafka_code(), 2);
    assert_eq!(RecordError::InvalidRecord(String::new()).kafka_code(), 87);
    assert_eq!(RecordError::MessageTooLarge(1).kafka_code(), 10);
    assert_eq!(RecordError::UnsupportedCompression(5).kafka_code(), 76);
    assert!(RecordError::MessageTooLarge(7).to_string().contains('7'));
}

// -------------------------------------------------------------------- fuzz

/// Run every entry point on `data`; check the invariants that must hold
/// between them. Must never panic.
fn exercise(data: &[u8]) {
    let lenient = ValidateOptions {
        allow_control_batches: true,
        allow_nonzero_base_offset: true,
        ..ValidateOptions::new(MAX)
    };
    let strict = validate_produce_payload(data, MAX);
    let v = validate_payload(data, &lenient);
    if let Ok(s) = &strict {
        assert_eq!(v.as_ref().ok(), Some(s));
        // Base offsets are 0, so every batch is sane for the segment scan too.
        let mut it = BatchIter::new(data, true);
        assert_eq!(it.by_ref().count(), s.batches.len());
        assert_eq!(it.valid_len(), data.len());
    }
    if let Ok(v) = &v {
        for span in &v.batches {
            let batch = &data[span.range()];
            let recs = decode_records(batch).expect("validated batch must decode");
            assert_eq!(recs.len(), span.record_count as usize);
        }
    }
    let _ = decode_records(data);
    let _ = BatchHeader::parse(data).map(|h| (h.total_size(), h.last_offset(), h.compression()));
    let _ = BatchIter::new(data, false).scan_valid_len();
    let _ = verify_crc(data);
    let mut copy = data.to_vec();
    rewrite_batch(&mut copy, 1, 1, Some(1));
}

#[test]
fn fuzz_mutations_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let s = Sample::new(6);
    let bases: Vec<Vec<u8>> = CODECS.iter().map(|&c| s.batch(c, 1_000)).collect();
    for round in 0..3000 {
        let base = &bases[round % bases.len()];
        let mut b = base.clone();
        match rng.below(4) {
            // Flip a few bytes anywhere.
            0 => {
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(b.len());
                    b[i] ^= 1 << rng.below(8);
                }
            }
            // Random bytes in the record area.
            1 => {
                for _ in 0..1 + rng.below(8) {
                    let i = BATCH_HEADER_LEN + rng.below(b.len() - BATCH_HEADER_LEN);
                    b[i] = rng.next() as u8;
                }
            }
            // Truncate or extend.
            2 => {
                let n = rng.below(b.len() + 40);
                b.resize(n, rng.next() as u8);
            }
            // Overwrite a header field with random bits.
            _ => {
                let at = [8, 16, 21, 23, 35, 43, 53, 57][rng.below(8)];
                let v = rng.next().to_be_bytes();
                let n = 1 + rng.below(4);
                b[at..at + n].copy_from_slice(&v[..n]);
            }
        }
        // Half the time make the CRC right again so that the record walk and
        // the decompressors see the damage.
        if rng.below(2) == 0 && b.len() >= BATCH_HEADER_LEN {
            let len = (b.len() - LOG_OVERHEAD) as i32;
            if rng.below(2) == 0 {
                set_i32(&mut b, BATCH_LENGTH_OFFSET, len);
            }
            update_crc(&mut b);
        }
        exercise(&b);
        // And as the tail of a valid payload.
        let mut payload = bases[0].clone();
        payload.extend_from_slice(&b);
        exercise(&payload);
    }
}

#[test]
fn fuzz_random_records_never_panic() {
    // Random record bytes behind a valid header and CRC, for every codec.
    let mut rng = Rng(42);
    for round in 0..2000 {
        let codec = CODECS[round % CODECS.len()];
        let n = rng.below(64);
        let mut recs: Vec<u8> = (0..n).map(|_| (rng.next() % 8) as u8).collect();
        if rng.below(2) == 0 {
            // Plausible small varints make deeper walks likely.
            for x in recs.iter_mut() {
                *x &= 0x7f;
            }
        }
        let count = 1 + rng.below(4) as i32;
        exercise(&raw_batch(codec, &recs, count));
    }
}

#[test]
fn rewrite_header_matches_rewrite_batch() {
    let v = vec![b'v'; 300];
    let recs: Vec<Record<'_>> = (0..7)
        .map(|i| Record {
            key: None,
            value: Some(&v),
            headers: &[],
            timestamp_delta: i,
        })
        .collect();
    for lat in [None, Some(1_800_000_000_000i64)] {
        let batch = build_batch(0, 1_700_000_000_000, Compression::None, &recs);
        let mut whole = batch.clone();
        rewrite_batch(&mut whole, 42, 3, lat);
        let mut head = batch[..BATCH_HEADER_LEN].to_vec();
        rewrite_header(&mut head, &batch[BATCH_HEADER_LEN..], 42, 3, lat);
        head.extend_from_slice(&batch[BATCH_HEADER_LEN..]);
        assert_eq!(head, whole);
        assert!(verify_crc(&head));
    }
}

// ---------------------------------------------------------------------------
// Record timestamps (message.timestamp.*, KIP-937)
// ---------------------------------------------------------------------------

const NOW: i64 = 1_700_000_000_000;
const HOUR: i64 = 3_600_000;

/// A batch whose records have `base + delta` timestamps; keyless where the
/// delta list says `None`.
fn timed_batch(
    codec: Compression,
    base: i64,
    records: &[(Option<&'static [u8]>, i64)],
    opts: &BatchOptions,
) -> Vec<u8> {
    let recs: Vec<Record<'_>> = records
        .iter()
        .map(|&(key, timestamp_delta)| Record {
            key,
            value: Some(b"v"),
            headers: &[],
            timestamp_delta,
        })
        .collect();
    build_batch_with(0, base, codec, opts, &recs)
}

fn create_time(before_max_ms: i64, after_max_ms: i64) -> ValidateOptions {
    ValidateOptions {
        timestamps: TimestampPolicy::CreateTime {
            now_ms: NOW,
            before_max_ms,
            after_max_ms,
        },
        ..ValidateOptions::new(MAX)
    }
}

fn out_of_range(index: i32, timestamp: i64, min: i64, max: i64) -> RecordIssue {
    RecordIssue::TimestampOutOfRange {
        index,
        timestamp,
        min,
        max,
    }
}

#[test]
fn every_record_timestamp_is_checked_against_the_topic_bounds() {
    let opts = create_time(i64::MAX, HOUR);
    let k: Option<&'static [u8]> = Some(b"k");
    let d = BatchOptions::default();
    for codec in CODECS {
        // One record an hour and a millisecond ahead: the batch is refused
        // and that record named (Kafka checks each record, not the header).
        let b = timed_batch(codec, NOW, &[(k, 0), (k, 10), (k, HOUR + 1)], &d);
        let min = NOW - i64::MAX;
        assert_eq!(
            validate_payload(&b, &opts),
            Err(RecordError::InvalidTimestamp(vec![out_of_range(
                2,
                NOW + HOUR + 1,
                min,
                NOW + HOUR
            )])),
            "{codec:?}"
        );
        assert_eq!(RecordError::InvalidTimestamp(vec![]).kafka_code(), 32);
        // Exactly on the bound is accepted.
        let b = timed_batch(codec, NOW, &[(k, 0), (k, HOUR)], &d);
        let v = validate_payload(&b, &opts).unwrap();
        assert_eq!(v.batches[0].max_timestamp, NOW + HOUR);
        // Old timestamps pass with the default before.max.ms (unlimited) ...
        let b = timed_batch(codec, 0, &[(k, 0), (k, 1)], &d);
        assert!(validate_payload(&b, &opts).is_ok(), "{codec:?}");
        // ... not with a limit: now - ts > before.max.ms is refused.
        let strict = create_time(1000, HOUR);
        let b = timed_batch(codec, NOW - 1001, &[(k, 1), (k, 0)], &d);
        assert_eq!(
            validate_payload(&b, &strict),
            Err(RecordError::InvalidTimestamp(vec![out_of_range(
                1,
                NOW - 1001,
                NOW - 1000,
                NOW + HOUR
            )])),
        );
        // Records without a timestamp (-1) are not checked.
        let b = timed_batch(codec, -1, &[(k, 0)], &d);
        assert!(validate_payload(&b, &strict).is_ok());
        // Without a policy nothing is checked.
        let b = timed_batch(codec, NOW, &[(k, 100 * HOUR)], &d);
        assert!(validate_produce_payload(&b, MAX).is_ok());
    }
}

#[test]
fn the_header_max_timestamp_is_not_trusted() {
    let opts = create_time(i64::MAX, HOUR);
    let k: Option<&'static [u8]> = Some(b"k");
    let d = BatchOptions::default();
    // A header claiming an old max timestamp does not hide a future record.
    let mut b = timed_batch(Compression::None, NOW, &[(k, 0), (k, 2 * HOUR)], &d);
    b[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&NOW.to_be_bytes());
    update_crc(&mut b);
    assert!(matches!(
        validate_payload(&b, &opts),
        Err(RecordError::InvalidTimestamp(_))
    ));
    // A header claiming a far-future max timestamp over good records is
    // accepted, with the records' own maximum as the batch's.
    let mut b = timed_batch(Compression::Lz4, NOW, &[(k, 7), (k, 3)], &d);
    b[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&(NOW + 1000 * HOUR).to_be_bytes());
    update_crc(&mut b);
    let v = validate_payload(&b, &opts).unwrap();
    assert_eq!((v.batches[0].max_timestamp, v.max_timestamp), (NOW + 7, NOW + 7));
    assert_eq!(v.offset_of_max_timestamp_delta, 1);
    // The append writes it into the header; the CRC stays valid.
    let (head, body) = b.split_at(BATCH_HEADER_LEN);
    let mut head = head.to_vec();
    assert!(set_max_timestamp(&mut head, body, NOW + 7));
    assert!(!set_max_timestamp(&mut head, body, NOW + 7));
    let mut whole = head.clone();
    whole.extend_from_slice(body);
    assert!(verify_crc(&whole));
    assert_eq!(BatchHeader::parse(&whole).map(|h| h.max_timestamp), Some(NOW + 7));
    // Several batches: the payload's max timestamp and its offset.
    let mut two = timed_batch(Compression::None, NOW, &[(k, 5)], &d);
    two.extend(timed_batch(Compression::Gzip, NOW, &[(k, 1), (k, 9), (k, 2)], &d));
    let v = validate_payload(&two, &opts).unwrap();
    assert_eq!((v.max_timestamp, v.offset_of_max_timestamp_delta), (NOW + 9, 3));
}

#[test]
fn log_append_time_batches_from_producers() {
    let k: Option<&'static [u8]> = Some(b"k");
    let lat = BatchOptions {
        timestamp_type: TimestampType::LogAppendTime,
        ..BatchOptions::default()
    };
    // On a CreateTime topic a LogAppendTime batch's records have its max
    // timestamp: checked like any other ...
    let b = timed_batch(Compression::None, NOW, &[(k, 0), (k, 5)], &lat);
    assert!(validate_payload(&b, &create_time(i64::MAX, HOUR)).is_ok());
    let b = timed_batch(Compression::None, NOW, &[(k, 0), (k, 2 * HOUR)], &lat);
    assert!(matches!(
        validate_payload(&b, &create_time(i64::MAX, HOUR)),
        Err(RecordError::InvalidTimestamp(v)) if v.len() == 2
    ));
    // ... and refused without one.
    let b = timed_batch(Compression::None, -1, &[(k, 0)], &lat);
    assert_eq!(
        validate_payload(&b, &create_time(i64::MAX, HOUR)),
        Err(RecordError::InvalidTimestamp(vec![
            RecordIssue::LogAppendTimeFromProducer { index: 0 }
        ]))
    );
    // A LogAppendTime topic refuses them whatever the timestamp, and takes
    // CreateTime batches whatever theirs.
    let topic = ValidateOptions {
        timestamps: TimestampPolicy::LogAppendTime,
        ..ValidateOptions::new(MAX)
    };
    let b = timed_batch(Compression::Zstd, NOW, &[(k, 0)], &lat);
    assert!(matches!(
        validate_payload(&b, &topic),
        Err(RecordError::InvalidTimestamp(_))
    ));
    let b = timed_batch(Compression::Zstd, NOW, &[(k, 100 * HOUR)], &BatchOptions::default());
    assert!(validate_payload(&b, &topic).is_ok());
}

#[test]
fn timestamp_errors_list_keyless_records_too_and_are_bounded() {
    let k: Option<&'static [u8]> = Some(b"k");
    let d = BatchOptions::default();
    let opts = ValidateOptions {
        require_keys: true,
        ..create_time(i64::MAX, HOUR)
    };
    // A keyless record reports its key (not its timestamp); once a timestamp
    // is refused the error is INVALID_TIMESTAMP and lists both (Kafka).
    let b = timed_batch(Compression::Snappy, NOW, &[(None, 2 * HOUR), (k, 0), (k, 2 * HOUR)], &d);
    assert_eq!(
        validate_payload(&b, &opts),
        Err(RecordError::InvalidTimestamp(vec![
            RecordIssue::MissingKey { index: 0 },
            out_of_range(2, NOW + 2 * HOUR, NOW - i64::MAX, NOW + HOUR),
        ]))
    );
    let b = timed_batch(Compression::Snappy, NOW, &[(None, 2 * HOUR), (k, 0)], &d);
    assert_eq!(validate_payload(&b, &opts), Err(RecordError::MissingKeys(vec![0])));
    // Thousands of refused records: the error keeps a bounded list.
    let many: Vec<(Option<&'static [u8]>, i64)> = (0..5000).map(|_| (k, 2 * HOUR)).collect();
    let b = timed_batch(Compression::Zstd, NOW, &many, &d);
    match validate_payload(&b, &opts) {
        Err(RecordError::InvalidTimestamp(v)) => {
            assert_eq!(v.len(), MAX_RECORD_ERRORS);
            assert_eq!(v.last().map(RecordIssue::index), Some(MAX_RECORD_ERRORS as i32 - 1));
        }
        other => panic!("{other:?}"),
    }
    // The messages name the record and the accepted range.
    let m = out_of_range(3, 10, 1, 5).to_string();
    assert!(m.contains("record 3") && m.contains("[1, 5]"), "{m}");
}

#[test]
fn build_batch_exact_keeps_given_offsets_and_last_offset() {
    let hdrs: &[(&str, Option<&[u8]>)] = &[("k", Some(b"v"))];
    let r = |k: &'static [u8], ts| Record {
        key: Some(k),
        value: Some(b"x"),
        headers: hdrs,
        timestamp_delta: ts,
    };
    for codec in CODECS {
        let opts = BatchOptions {
            producer_id: 3,
            producer_epoch: 1,
            base_sequence: 9,
            ..BatchOptions::default()
        };
        let b = build_batch_exact(100, 50, codec, &opts, 12, &[(1, r(b"a", 5)), (7, r(b"b", -3))]);
        assert!(verify_crc(&b));
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!((h.base_offset, h.last_offset(), h.record_count), (100, 112, 2));
        assert_eq!((h.producer_id, h.base_sequence, h.max_timestamp), (3, 9, 55));
        assert_eq!(h.compression(), Some(codec));
        let got = decode_records(&b).unwrap();
        assert_eq!(
            got.iter()
                .map(|x| (x.offset_delta, x.timestamp_delta))
                .collect::<Vec<_>>(),
            vec![(1, 5), (7, -3)]
        );
        assert_eq!(got[1].headers.len(), 1);
        // The batch is a valid stored batch.
        assert_eq!(BatchIter::new(&b, true).scan_valid_len(), b.len());
    }
    // build_batch_with is unchanged: sequential deltas, last = n - 1.
    let b = build_batch_with(
        0,
        0,
        Compression::None,
        &BatchOptions::default(),
        &[Record::default(); 3],
    );
    let e = build_batch_exact(
        0,
        0,
        Compression::None,
        &BatchOptions::default(),
        2,
        &[(0, Record::default()), (1, Record::default()), (2, Record::default())],
    );
    assert_eq!(b, e);
}

#[test]
fn raw_records_round_trip_through_build_raw_batch() {
    for codec in CODECS {
        let s = Sample::new(20);
        let records = s.records();
        let b = build_batch(40, 1_000, codec, &records);
        let parsed = batch_records(&b).unwrap();
        let raw = parsed.records().unwrap();
        assert_eq!(raw.len(), records.len());
        for (x, r) in raw.iter().zip(&records) {
            assert_eq!((x.key, x.value, x.timestamp_delta), (r.key, r.value, r.timestamp_delta));
        }
        // Every other record, deltas kept: what the cleaner writes.
        let keep: Vec<RawRecordOut<'_>> = raw
            .iter()
            .step_by(2)
            .map(|x| RawRecordOut {
                offset_delta: x.offset_delta,
                timestamp_delta: x.timestamp_delta,
                tail: x.tail,
            })
            .collect();
        let out = build_raw_batch(&parsed.header, &keep).unwrap();
        assert!(verify_crc(&out));
        let h = BatchHeader::parse(&out).unwrap();
        assert_eq!(h.record_count as usize, keep.len());
        assert_eq!(h.last_offset(), parsed.header.last_offset());
        assert_eq!(h.compression(), Some(codec));
        let all = decode_records(&b).unwrap();
        let want: Vec<_> = all.into_iter().step_by(2).collect();
        assert_eq!(decode_records(&out).unwrap(), want);
    }
    // An unknown codec in the template is refused.
    let mut h = BatchHeader::parse(&build_batch(0, 0, Compression::None, &[Record::default()])).unwrap();
    h.attributes |= 7;
    assert!(matches!(
        build_raw_batch(&h, &[]),
        Err(RecordError::UnsupportedCompression(7))
    ));
}

#[test]
fn batch_records_refuses_bad_batches() {
    let b = build_batch(0, 0, Compression::Gzip, &[Record::default(); 2]);
    assert!(batch_records(&b).is_ok());
    let mut bad = b.clone();
    let n = bad.len();
    bad[n - 1] ^= 1;
    assert!(batch_records(&bad).is_err());
    assert!(batch_records(&b[..n - 1]).is_err());
    // A wrong record count is found when the records are parsed.
    let mut wrong = b.clone();
    wrong[RECORD_COUNT_OFFSET..RECORD_COUNT_OFFSET + 4].copy_from_slice(&3i32.to_be_bytes());
    update_crc(&mut wrong);
    assert!(batch_records(&wrong).unwrap().records().is_err());
}
