//! Record batches built once and reused.
//!
//! A [`Template`] is one v2 batch of `max_records` records with random
//! values, built with [`crate::record::build_batch`]. A batch of `k <= max`
//! records is the template's header plus its first `k` records; sending one
//! costs a copy, a few header fields, the send stamp and a CRC.
//!
//! The stamp goes into the first record's value: a 4-byte marker, the
//! intended send time of the batch's first message and the spacing of the
//! following ones (ns, wall clock of the generator). Consumers read it back
//! to measure end-to-end latency per message. Values shorter than
//! [`STAMP_LEN`] carry no stamp.

use bytes::BytesMut;
use rand::{Rng, RngCore, SeedableRng};

use crate::record::{
    self, build_batch, update_crc, BatchHeader, Compression, Record, BASE_TIMESTAMP_OFFSET, BATCH_HEADER_LEN,
    BATCH_LENGTH_OFFSET, LAST_OFFSET_DELTA_OFFSET, LOG_OVERHEAD, MAX_TIMESTAMP_OFFSET, RECORD_COUNT_OFFSET,
};

/// Marker at the start of a stamped value.
pub const STAMP_MAGIC: [u8; 4] = *b"RLB1";
/// Marker, first send time (u64 ns), spacing (u64 ns).
pub const STAMP_LEN: usize = 20;
/// Length of generated keys.
pub const KEY_LEN: usize = 16;

/// When the messages of a batch were meant to be sent: message `k` of the
/// batch at `first_ns + k * step_ns` (ns since the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub first_ns: u64,
    pub step_ns: u64,
}

impl Stamp {
    pub fn encode(&self) -> [u8; STAMP_LEN] {
        let mut b = [0u8; STAMP_LEN];
        b[..4].copy_from_slice(&STAMP_MAGIC);
        b[4..12].copy_from_slice(&self.first_ns.to_be_bytes());
        b[12..20].copy_from_slice(&self.step_ns.to_be_bytes());
        b
    }

    pub fn decode(value: &[u8]) -> Option<Stamp> {
        let b = value.get(..STAMP_LEN)?;
        if b[..4] != STAMP_MAGIC {
            return None;
        }
        Some(Stamp {
            first_ns: u64::from_be_bytes(b[4..12].try_into().ok()?),
            step_ns: u64::from_be_bytes(b[12..20].try_into().ok()?),
        })
    }

    /// Intended send time of message `k` of the batch.
    pub fn time_of(&self, k: u64) -> u64 {
        self.first_ns.saturating_add(self.step_ns.saturating_mul(k))
    }
}

/// A reusable batch of up to `max_records` messages.
pub struct Template {
    /// Uncompressed: the full batch. Compressed: unused.
    batch: Vec<u8>,
    /// `ends[k]`: end (in `batch`) of record `k`.
    ends: Vec<usize>,
    /// Where the first record's value starts in `batch`, if it can hold a stamp.
    stamp_at: Option<usize>,
    compression: Compression,
    /// Values and keys, for rebuilding compressed batches per send.
    values: Vec<u8>,
    keys: Vec<u8>,
    message_size: usize,
    keyed: bool,
    /// Non-zero: every batch is built afresh with keys drawn from this many
    /// distinct values (see [`Template::with_key_space`]).
    key_space: u64,
    /// Keys drawn so far (the sequence position of the next key).
    next_key: std::cell::Cell<u64>,
}

/// Size of one encoded record with a `value_len` value (and a key if `keyed`)
/// at offset delta `delta`; used to size batches.
pub fn record_wire_len(value_len: usize, keyed: bool, delta: i32) -> usize {
    let key = if keyed { Some(&[0u8; KEY_LEN][..]) } else { None };
    let value = vec![0u8; value_len.min(1 << 24)];
    let r = Record {
        key,
        value: Some(&value),
        headers: &[],
        timestamp_delta: 0,
    };
    let batch = build_batch(0, 0, Compression::None, &[r]);
    let one = batch.len() - BATCH_HEADER_LEN;
    // The offset delta varint grows with the record number.
    one + varint_len(delta as i64) - 1
}

/// How many records of `message_size` fit in a batch of `batch_bytes`
/// (at least 1).
pub fn records_per_batch(message_size: usize, keyed: bool, batch_bytes: usize) -> u64 {
    // Conservative: size records as if their offset deltas were large.
    let per = record_wire_len(message_size, keyed, 1 << 20).max(1);
    (batch_bytes.saturating_sub(BATCH_HEADER_LEN) / per).max(1) as u64
}

impl Template {
    /// Random values (and keys) for `max_records` records. `seed` makes runs
    /// reproducible.
    pub fn new(max_records: usize, message_size: usize, keyed: bool, compression: Compression, seed: u64) -> Template {
        let max_records = max_records.max(1);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut values = vec![0u8; max_records * message_size];
        rng.fill_bytes(&mut values);
        let mut keys = Vec::new();
        if keyed {
            keys.reserve(max_records * KEY_LEN);
            for _ in 0..max_records {
                // Printable keys, like the usual "key-<number>" keys.
                let n: u64 = rng.gen();
                keys.extend_from_slice(format!("{n:016x}").as_bytes());
            }
        }
        let mut t = Template {
            batch: Vec::new(),
            ends: Vec::new(),
            stamp_at: None,
            compression,
            values,
            keys,
            message_size,
            keyed,
            key_space: 0,
            next_key: std::cell::Cell::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        };
        if compression == Compression::None {
            let records = t.records(max_records);
            t.batch = build_batch(0, 0, Compression::None, &records);
            let (ends, stamp_at) = record_layout(&t.batch, max_records);
            t.ends = ends;
            t.stamp_at = stamp_at.filter(|_| message_size >= STAMP_LEN);
        }
        t
    }

    fn records(&self, n: usize) -> Vec<Record<'_>> {
        (0..n)
            .map(|i| Record {
                key: if self.keyed {
                    self.keys.get(i * KEY_LEN..(i + 1) * KEY_LEN)
                } else {
                    None
                },
                value: self.values.get(i * self.message_size..(i + 1) * self.message_size),
                headers: &[],
                timestamp_delta: 0,
            })
            .collect()
    }

    /// Keys from `n` distinct values instead of the template's fixed ones,
    /// so a compacted topic sees `n` live keys (0 keeps the fixed keys).
    /// Each batch is then built afresh, which costs the generator CPU.
    pub fn with_key_space(mut self, n: u64) -> Template {
        if self.keyed {
            self.key_space = n;
        }
        self
    }

    /// `count` keys of the key space, [`KEY_LEN`] bytes each.
    fn drawn_keys(&self, count: usize) -> Vec<u8> {
        let mut keys = Vec::with_capacity(count * KEY_LEN);
        let mut at = self.next_key.get();
        for _ in 0..count {
            at = at.wrapping_add(1);
            // splitmix64: spreads consecutive positions over the key space.
            let mut z = at.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let key = z % self.key_space.max(1);
            keys.extend_from_slice(format!("{key:016x}").as_bytes());
        }
        self.next_key.set(at);
        keys
    }

    /// Largest batch this template makes.
    pub fn max_records(&self) -> usize {
        self.values.len() / self.message_size.max(1)
    }

    /// True if batches carry a send stamp (values of at least [`STAMP_LEN`]).
    pub fn stamped(&self) -> bool {
        self.message_size >= STAMP_LEN
    }

    /// Append a batch of `count` records (1..=max) to `out`, timestamped
    /// `timestamp_ms` (CreateTime) and stamped with `stamp`.
    pub fn write(&self, out: &mut BytesMut, count: usize, timestamp_ms: i64, stamp: Stamp) {
        let count = count.clamp(1, self.max_records());
        if self.compression != Compression::None || self.key_space > 0 {
            let mut first = self.values.get(..self.message_size).unwrap_or(&[]).to_vec();
            if let Some(dst) = first.get_mut(..STAMP_LEN) {
                dst.copy_from_slice(&stamp.encode());
            }
            let drawn = if self.key_space > 0 {
                self.drawn_keys(count)
            } else {
                Vec::new()
            };
            let mut records = self.records(count);
            if let Some(r) = records.first_mut() {
                r.value = Some(&first);
            }
            if self.key_space > 0 {
                for (i, r) in records.iter_mut().enumerate() {
                    r.key = drawn.get(i * KEY_LEN..(i + 1) * KEY_LEN);
                }
            }
            let b = build_batch(0, timestamp_ms, self.compression, &records);
            out.extend_from_slice(&b);
            return;
        }
        let end = self.ends.get(count - 1).copied().unwrap_or(self.batch.len());
        let start = out.len();
        out.extend_from_slice(&self.batch[..end]);
        let b = &mut out[start..];
        put(b, BATCH_LENGTH_OFFSET, &((end - LOG_OVERHEAD) as i32).to_be_bytes());
        put(b, LAST_OFFSET_DELTA_OFFSET, &((count - 1) as i32).to_be_bytes());
        put(b, RECORD_COUNT_OFFSET, &(count as i32).to_be_bytes());
        put(b, BASE_TIMESTAMP_OFFSET, &timestamp_ms.to_be_bytes());
        put(b, MAX_TIMESTAMP_OFFSET, &timestamp_ms.to_be_bytes());
        if let Some(at) = self.stamp_at {
            put(b, at, &stamp.encode());
        }
        update_crc(b);
    }
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

fn varint_len(v: i64) -> usize {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}

/// Read a zig-zag varint (up to 10 bytes) at `*pos`.
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut z: u64 = 0;
    for shift in (0..70).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        z |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return Some((z >> 1) as i64 ^ -((z & 1) as i64));
        }
    }
    None
}

/// Record ends and the first record's value offset in an uncompressed batch
/// of `n` records.
fn record_layout(batch: &[u8], n: usize) -> (Vec<usize>, Option<usize>) {
    let mut ends = Vec::with_capacity(n);
    let mut pos = BATCH_HEADER_LEN;
    let first_value = first_value_range(batch).map(|r| r.start);
    for _ in 0..n {
        let Some(len) = read_varint(batch, &mut pos) else {
            break;
        };
        pos = pos.saturating_add(len.max(0) as usize).min(batch.len());
        ends.push(pos);
    }
    (ends, first_value)
}

/// Byte range of the first record's value in an uncompressed batch.
pub fn first_value_range(batch: &[u8]) -> Option<std::ops::Range<usize>> {
    let mut pos = BATCH_HEADER_LEN;
    let len = read_varint(batch, &mut pos)?;
    let end = pos.checked_add(usize::try_from(len).ok()?)?;
    pos += 1; // attributes
    read_varint(batch, &mut pos)?; // timestamp delta
    read_varint(batch, &mut pos)?; // offset delta
    let key_len = read_varint(batch, &mut pos)?;
    if key_len > 0 {
        pos = pos.checked_add(key_len as usize)?;
    }
    let value_len = read_varint(batch, &mut pos)?;
    if value_len < 0 {
        return None;
    }
    let value_end = pos.checked_add(value_len as usize)?;
    if value_end > end || value_end > batch.len() {
        return None;
    }
    Some(pos..value_end)
}

/// The send stamp of a batch (`batch` = exactly one batch), if it has one.
/// Compressed batches are decompressed for it.
pub fn read_stamp(batch: &[u8], header: &BatchHeader) -> Option<Stamp> {
    match header.compression()? {
        Compression::None => {
            let r = first_value_range(batch)?;
            Stamp::decode(batch.get(r)?)
        }
        _ => {
            let records = record::decode_records(batch).ok()?;
            Stamp::decode(records.first()?.value.as_deref()?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{decode_records, verify_crc};

    #[test]
    fn stamp_round_trip() {
        let s = Stamp {
            first_ns: 1_700_000_000_123_456_789,
            step_ns: 20_000,
        };
        let mut value = vec![7u8; 100];
        value[..STAMP_LEN].copy_from_slice(&s.encode());
        assert_eq!(Stamp::decode(&value), Some(s));
        assert_eq!(s.time_of(2), s.first_ns + 40_000);
        assert_eq!(Stamp::decode(&value[..10]), None);
        value[0] = b'X';
        assert_eq!(Stamp::decode(&value), None);
        let big = Stamp {
            first_ns: u64::MAX - 1,
            step_ns: u64::MAX,
        };
        assert_eq!(big.time_of(3), u64::MAX);
    }

    #[test]
    fn varints() {
        for v in [0i64, 1, -1, 63, -64, 64, 300, -300, i32::MAX as i64, i64::MIN, i64::MAX] {
            let mut buf = Vec::new();
            let mut z = ((v << 1) ^ (v >> 63)) as u64;
            while z >= 0x80 {
                buf.push((z as u8) | 0x80);
                z >>= 7;
            }
            buf.push(z as u8);
            assert_eq!(buf.len(), varint_len(v));
            let mut pos = 0;
            assert_eq!(read_varint(&buf, &mut pos), Some(v));
            assert_eq!(pos, buf.len());
        }
        let mut pos = 0;
        assert_eq!(read_varint(&[0x80, 0x80], &mut pos), None);
        let mut pos = 0;
        assert_eq!(read_varint(&[0xff; 11], &mut pos), None);
    }

    fn check(t: &Template, count: usize, keyed: bool) {
        let mut out = BytesMut::new();
        let stamp = Stamp {
            first_ns: 42,
            step_ns: 7,
        };
        t.write(&mut out, count, 1234, stamp);
        assert!(verify_crc(&out), "CRC of a {count}-record batch");
        let h = BatchHeader::parse(&out).unwrap();
        assert_eq!(h.total_size(), out.len());
        assert_eq!(h.record_count as usize, count);
        assert_eq!(h.last_offset_delta as usize, count - 1);
        assert_eq!(h.base_timestamp, 1234);
        let recs = decode_records(&out).unwrap();
        assert_eq!(recs.len(), count);
        assert!(recs.iter().all(|r| r.value.as_ref().unwrap().len() == 100));
        assert!(recs.iter().all(|r| r.key.is_some() == keyed));
        assert_eq!(read_stamp(&out, &h), Some(stamp));
        // Only the first record is stamped.
        if count > 1 {
            assert_eq!(Stamp::decode(recs[1].value.as_ref().unwrap()), None);
        }
    }

    #[test]
    fn template_prefix_batches_are_valid() {
        for keyed in [false, true] {
            let t = Template::new(50, 100, keyed, Compression::None, 1);
            assert_eq!(t.max_records(), 50);
            for count in [1, 2, 17, 50] {
                check(&t, count, keyed);
            }
            // Out-of-range counts are clamped.
            let mut out = BytesMut::new();
            t.write(
                &mut out,
                500,
                0,
                Stamp {
                    first_ns: 1,
                    step_ns: 0,
                },
            );
            assert_eq!(BatchHeader::parse(&out).unwrap().record_count, 50);
        }
    }

    #[test]
    fn key_space_draws_keys_per_batch() {
        let t = Template::new(50, 100, true, Compression::None, 1).with_key_space(1000);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            check(&t, 50, true);
            let mut out = BytesMut::new();
            t.write(
                &mut out,
                50,
                0,
                Stamp {
                    first_ns: 1,
                    step_ns: 0,
                },
            );
            for r in decode_records(&out).unwrap() {
                let k = r.key.unwrap();
                assert_eq!(k.len(), KEY_LEN);
                let n = u64::from_str_radix(std::str::from_utf8(&k).unwrap(), 16).unwrap();
                assert!(n < 1000);
                seen.insert(n);
            }
        }
        // 10,000 draws over 1,000 keys reach nearly all of them.
        assert!(seen.len() > 950, "{} distinct keys", seen.len());
        // Without keys the key space is ignored.
        let unkeyed = Template::new(5, 100, false, Compression::None, 1).with_key_space(10);
        check(&unkeyed, 5, false);
    }

    #[test]
    fn compressed_templates() {
        for codec in [
            Compression::Lz4,
            Compression::Zstd,
            Compression::Snappy,
            Compression::Gzip,
        ] {
            let t = Template::new(10, 100, false, codec, 2);
            check(&t, 3, false);
            let mut out = BytesMut::new();
            t.write(
                &mut out,
                3,
                0,
                Stamp {
                    first_ns: 5,
                    step_ns: 0,
                },
            );
            assert_eq!(BatchHeader::parse(&out).unwrap().compression(), Some(codec));
        }
    }

    #[test]
    fn small_values_carry_no_stamp() {
        let t = Template::new(4, 8, false, Compression::None, 3);
        assert!(!t.stamped());
        let mut out = BytesMut::new();
        t.write(
            &mut out,
            2,
            0,
            Stamp {
                first_ns: 5,
                step_ns: 0,
            },
        );
        assert!(verify_crc(&out));
        let h = BatchHeader::parse(&out).unwrap();
        assert_eq!(read_stamp(&out, &h), None);
    }

    #[test]
    fn sizing() {
        let one = record_wire_len(1024, false, 0);
        // length varint (2) + attributes + ts delta + offset delta + key len
        // + value len varint (2) + value + header count
        assert_eq!(one, 2 + 1 + 1 + 1 + 1 + 2 + 1024 + 1);
        assert_eq!(record_wire_len(1024, true, 0), one + KEY_LEN);
        let n = records_per_batch(1024, false, 1 << 20);
        assert!((1000..1020).contains(&n), "{n}");
        assert_eq!(records_per_batch(1 << 20, false, 1024), 1);
        // A batch of n records really fits.
        let t = Template::new(n as usize, 1024, false, Compression::None, 4);
        let mut out = BytesMut::new();
        t.write(
            &mut out,
            n as usize,
            0,
            Stamp {
                first_ns: 0,
                step_ns: 0,
            },
        );
        assert!(out.len() <= 1 << 20);
    }

    #[test]
    fn garbage_has_no_value() {
        assert_eq!(first_value_range(&[0u8; 10]), None);
        let mut b = vec![0u8; 70];
        b[BATCH_HEADER_LEN] = 0x7f; // huge negative? no: 0x7f = zigzag -64
        assert_eq!(first_value_range(&b), None);
    }
}
