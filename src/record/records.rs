//! Records inside a batch: the validating walker, the batch builder and the
//! decoder.
//!
//! Record layout (all lengths zig-zag varints, -1 = null):
//! `length, attributes i8, timestampDelta varlong, offsetDelta varint,
//!  keyLength, key, valueLength, value, headerCount,
//!  [headerKeyLength, headerKey, headerValueLength, headerValue]*`.

use bytes::Bytes;

use super::batch::{
    get_i32, BatchHeader, Compression, TimestampType, ATTR_CONTROL, ATTR_TIMESTAMP_TYPE, ATTR_TRANSACTIONAL, MAGIC_V2,
    MIN_BATCH_LENGTH, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE, NO_TIMESTAMP,
};
use super::compression::{self, decompression_limit};
use super::varint::{corrupt, invalid, put_varint, put_varlong, varint_len, varlong_len, SliceSource, Source};
use super::{RecordError, RecordIssue, BATCH_HEADER_LEN, LOG_OVERHEAD, MAX_RECORD_ERRORS};

/// Smallest possible encoded record: length, attributes, timestamp delta,
/// offset delta, key length, value length and header count, one byte each.
pub(crate) const MIN_RECORD_LEN: u64 = 7;

/// One record to put in a batch with [`build_batch`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Record<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
    /// Timestamp relative to the batch's `base_timestamp`.
    pub timestamp_delta: i64,
}

/// A decoded record (see [`decode_records`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// Header keys are decoded as UTF-8, invalid sequences replaced (as Java does).
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Producer and attribute fields for [`build_batch_with`]. The default is what
/// a non-idempotent producer writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    pub partition_leader_epoch: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub is_transactional: bool,
    pub is_control: bool,
    pub timestamp_type: TimestampType,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            is_transactional: false,
            is_control: false,
            timestamp_type: TimestampType::CreateTime,
        }
    }
}

#[inline]
fn len_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[inline]
fn nullable_len(b: Option<&[u8]>) -> usize {
    match b {
        None => 1,
        Some(b) => varint_len(len_i32(b.len())) + b.len(),
    }
}

#[inline]
fn put_nullable(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, len_i32(b.len()));
            out.extend_from_slice(b);
        }
    }
}

/// Size of a record body (everything after its length varint).
fn body_len(offset_delta: i32, r: &Record<'_>) -> usize {
    let headers: usize = r
        .headers
        .iter()
        .map(|(k, v)| varint_len(len_i32(k.len())) + k.len() + nullable_len(*v))
        .sum();
    1 + varlong_len(r.timestamp_delta)
        + varint_len(offset_delta)
        + nullable_len(r.key)
        + nullable_len(r.value)
        + varint_len(len_i32(r.headers.len()))
        + headers
}

fn encode_record(out: &mut Vec<u8>, offset_delta: i32, body: usize, r: &Record<'_>) {
    put_varint(out, len_i32(body));
    out.push(0); // attributes: unused in v2
    put_varlong(out, r.timestamp_delta);
    put_varint(out, offset_delta);
    put_nullable(out, r.key);
    put_nullable(out, r.value);
    put_varint(out, len_i32(r.headers.len()));
    for (k, v) in r.headers {
        put_varint(out, len_i32(k.len()));
        out.extend_from_slice(k.as_bytes());
        put_nullable(out, *v);
    }
}

/// Build a v2 batch of `records` (offset deltas `0..n`), compressed with
/// `compression`, as a non-idempotent producer would (producer id/epoch and
/// base sequence -1, partition leader epoch -1, `CreateTime`). `max_timestamp`
/// is `base_timestamp` plus the largest timestamp delta.
pub fn build_batch(base_offset: i64, base_timestamp: i64, compression: Compression, records: &[Record<'_>]) -> Vec<u8> {
    build_batch_with(
        base_offset,
        base_timestamp,
        compression,
        &BatchOptions::default(),
        records,
    )
}

/// [`build_batch`] with explicit producer fields and attribute flags (for
/// idempotent/transactional producers and control batches). If the codec
/// fails (it cannot for in-memory data), the batch is written uncompressed.
pub fn build_batch_with(
    base_offset: i64,
    base_timestamp: i64,
    compression: Compression,
    opts: &BatchOptions,
    records: &[Record<'_>],
) -> Vec<u8> {
    let last_offset_delta = len_i32(records.len().saturating_sub(1));
    build_inner(
        base_offset,
        base_timestamp,
        compression,
        opts,
        records,
        len_i32,
        last_offset_delta,
    )
}

/// [`build_batch_with`] with explicit offset deltas and header last offset
/// delta: the shape of a batch after log compaction, whose records keep their
/// original offsets (gaps between them) and whose header keeps the original
/// last offset even when the last record is gone (Kafka's
/// `overrideLastOffset`). `records` pairs each offset delta with its record;
/// the deltas should ascend and not exceed `last_offset_delta` (not checked:
/// tests build malformed batches with it).
pub fn build_batch_exact(
    base_offset: i64,
    base_timestamp: i64,
    compression: Compression,
    opts: &BatchOptions,
    last_offset_delta: i32,
    records: &[(i32, Record<'_>)],
) -> Vec<u8> {
    let plain: Vec<Record<'_>> = records.iter().map(|(_, r)| *r).collect();
    build_inner(
        base_offset,
        base_timestamp,
        compression,
        opts,
        &plain,
        |i| records.get(i).map_or(0, |r| r.0),
        last_offset_delta,
    )
}

/// The batch builder behind [`build_batch_with`] and [`build_batch_exact`]:
/// record `i` gets offset delta `offset_delta(i)`.
fn build_inner(
    base_offset: i64,
    base_timestamp: i64,
    compression: Compression,
    opts: &BatchOptions,
    records: &[Record<'_>],
    offset_delta: impl Fn(usize) -> i32,
    last_offset_delta: i32,
) -> Vec<u8> {
    let bodies: Vec<usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| body_len(offset_delta(i), r))
        .collect();
    let records_len: usize = bodies.iter().map(|&b| varint_len(len_i32(b)) + b).sum();

    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + records_len);
    out.resize(BATCH_HEADER_LEN, 0);
    let mut codec = compression;
    if compression == Compression::None {
        for (i, (r, &body)) in records.iter().zip(&bodies).enumerate() {
            encode_record(&mut out, offset_delta(i), body, r);
        }
    } else {
        let mut raw = Vec::with_capacity(records_len);
        for (i, (r, &body)) in records.iter().zip(&bodies).enumerate() {
            encode_record(&mut raw, offset_delta(i), body, r);
        }
        match compression::compress(compression, &raw) {
            Ok(c) => out.extend_from_slice(&c),
            Err(_) => {
                codec = Compression::None;
                out.extend_from_slice(&raw);
            }
        }
    }

    let mut attributes = codec.id();
    if opts.timestamp_type == TimestampType::LogAppendTime {
        attributes |= ATTR_TIMESTAMP_TYPE;
    }
    if opts.is_transactional {
        attributes |= ATTR_TRANSACTIONAL;
    }
    if opts.is_control {
        attributes |= ATTR_CONTROL;
    }
    let max_timestamp = records
        .iter()
        .map(|r| r.timestamp_delta)
        .max()
        .map_or(base_timestamp, |d| base_timestamp.wrapping_add(d));
    let header = BatchHeader {
        base_offset,
        batch_length: len_i32(out.len() - LOG_OVERHEAD),
        partition_leader_epoch: opts.partition_leader_epoch,
        magic: MAGIC_V2,
        crc: 0,
        attributes,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id: opts.producer_id,
        producer_epoch: opts.producer_epoch,
        base_sequence: opts.base_sequence,
        record_count: len_i32(records.len()),
    };
    header.write(&mut out);
    super::batch::update_crc(&mut out);
    out
}

/// One record of a stored batch, borrowed from its (decompressed) records
/// data: enough for the log cleaner to decide on it and to write it again
/// with new timestamp/offset deltas while copying key, value and headers
/// byte for byte (no re-decoding of header keys, no allocation per record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRecord<'a> {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The record's encoded key, value and headers: everything after the
    /// offset delta, as stored.
    pub tail: &'a [u8],
}

/// The records of one stored batch, decompressed (see [`batch_records`]).
#[derive(Debug, Clone)]
pub struct BatchRecords<'a> {
    pub header: BatchHeader,
    data: std::borrow::Cow<'a, [u8]>,
}

impl BatchRecords<'_> {
    /// Parse the records, checking each one's length against its contents
    /// and that exactly `record_count` of them fill the data.
    pub fn records(&self) -> Result<Vec<RawRecord<'_>>, RecordError> {
        raw_records(&self.data, self.header.record_count)
    }
}

/// Check the batch at the start of `batch` (framing, CRC, codec) and
/// decompress its records. An uncompressed batch is borrowed, not copied.
/// Bytes after the batch are ignored.
pub fn batch_records(batch: &[u8]) -> Result<BatchRecords<'_>, RecordError> {
    let (h, total) = check_frame(batch, 0)?;
    let covered = batch
        .get(super::batch::ATTRIBUTES_OFFSET..total)
        .ok_or_else(|| corrupt("truncated batch"))?;
    let crc = crc32c::crc32c(covered);
    if crc != h.crc {
        return Err(corrupt(format!(
            "batch CRC mismatch: stored {:#010x}, computed {crc:#010x}",
            h.crc
        )));
    }
    let codec = h
        .compression()
        .ok_or(RecordError::UnsupportedCompression(h.attributes & 7))?;
    if h.record_count < 0 {
        return Err(invalid(format!("invalid record count {}", h.record_count)));
    }
    let body = batch
        .get(BATCH_HEADER_LEN..total)
        .ok_or_else(|| corrupt("truncated batch"))?;
    let data = match codec {
        Compression::None => std::borrow::Cow::Borrowed(body),
        c => std::borrow::Cow::Owned(compression::decompress(c, body, decompression_limit(body.len()))?),
    };
    Ok(BatchRecords { header: h, data })
}

fn raw_nullable<'a>(src: &mut SliceSource<'a>, data: &'a [u8], end: usize) -> Result<Option<&'a [u8]>, RecordError> {
    let len = src.varint()?;
    if len < 0 {
        return Ok(None);
    }
    let r = take_within(src, len as usize, end)?;
    Ok(data.get(r))
}

/// Parse `count` records filling `data` (decompressed records of a batch).
fn raw_records(data: &[u8], count: i32) -> Result<Vec<RawRecord<'_>>, RecordError> {
    let count_u = count.max(0) as u64;
    if count_u.saturating_mul(MIN_RECORD_LEN) > data.len() as u64 {
        return Err(corrupt(format!("{count} records cannot fit in {} bytes", data.len())));
    }
    let mut out = Vec::with_capacity(count_u as usize);
    let mut src = SliceSource::new(data);
    for i in 0..count {
        let len = src.varint()?;
        if len < 0 {
            return Err(corrupt(format!("record {i} has a negative length {len}")));
        }
        let start = src.offset();
        let end = start.saturating_add(len as usize);
        if end > data.len() {
            return Err(corrupt(format!("record {i} overruns the batch")));
        }
        src.u8()?;
        let timestamp_delta = src.varlong()?;
        let offset_delta = src.varint()?;
        let tail_start = src.offset();
        let key = raw_nullable(&mut src, data, end)?;
        let value = raw_nullable(&mut src, data, end)?;
        let header_count = src.varint()?;
        if header_count < 0 {
            return Err(invalid(format!(
                "record {i} has an invalid header count {header_count}"
            )));
        }
        if (header_count as usize).saturating_mul(2) > end.saturating_sub(src.offset()) {
            return Err(corrupt(format!(
                "record {i} has more headers ({header_count}) than bytes"
            )));
        }
        for _ in 0..header_count {
            let key_len = src.varint()?;
            if key_len < 0 {
                return Err(invalid(format!("record {i} has a null header key")));
            }
            take_within(&mut src, key_len as usize, end)?;
            raw_nullable(&mut src, data, end)?;
        }
        if src.offset() != end {
            return Err(corrupt(format!(
                "record {i}: length says {len} bytes, contents take {}",
                src.offset().saturating_sub(start)
            )));
        }
        let tail = data
            .get(tail_start..end)
            .ok_or_else(|| corrupt(format!("record {i} overruns the batch")))?;
        out.push(RawRecord {
            offset_delta,
            timestamp_delta,
            key,
            value,
            tail,
        });
    }
    if !src.at_end()? {
        return Err(corrupt(format!("batch has data after its {count} records")));
    }
    Ok(out)
}

/// One record for [`build_raw_batch`]: new deltas, the stored tail
/// ([`RawRecord::tail`]) copied as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRecordOut<'a> {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub tail: &'a [u8],
}

/// Encode a batch from a header template and records taken from stored
/// batches (the log cleaner's rewrite). `header` gives every header field
/// but `batch_length`, `crc` and `record_count`, which are computed; the
/// records are compressed with the codec of `header.attributes`. Fails on an
/// unknown codec or if the codec fails.
pub fn build_raw_batch(header: &BatchHeader, records: &[RawRecordOut<'_>]) -> Result<Vec<u8>, RecordError> {
    let codec = header
        .compression()
        .ok_or(RecordError::UnsupportedCompression(header.attributes & 7))?;
    let body = |r: &RawRecordOut<'_>| 1 + varlong_len(r.timestamp_delta) + varint_len(r.offset_delta) + r.tail.len();
    let records_len: usize = records
        .iter()
        .map(|r| {
            let b = body(r);
            varint_len(len_i32(b)) + b
        })
        .sum();
    let mut raw = Vec::with_capacity(records_len);
    for r in records {
        put_varint(&mut raw, len_i32(body(r)));
        raw.push(0); // attributes: unused in v2
        put_varlong(&mut raw, r.timestamp_delta);
        put_varint(&mut raw, r.offset_delta);
        raw.extend_from_slice(r.tail);
    }
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + records_len);
    out.resize(BATCH_HEADER_LEN, 0);
    match codec {
        Compression::None => out.extend_from_slice(&raw),
        c => {
            let compressed = compression::compress(c, &raw)
                .map_err(|e| invalid(format!("cannot compress with {}: {e}", c.name())))?;
            out.extend_from_slice(&compressed);
        }
    }
    let batch_length = i32::try_from(out.len() - LOG_OVERHEAD).map_err(|_| RecordError::MessageTooLarge(out.len()))?;
    let h = BatchHeader {
        batch_length,
        magic: MAGIC_V2,
        crc: 0,
        record_count: len_i32(records.len()),
        ..*header
    };
    h.write(&mut out);
    super::batch::update_crc(&mut out);
    Ok(out)
}

/// Rules applied while walking the records of a produced batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WalkRules {
    /// Offset deltas must be exactly `0, 1, .., count-1`.
    pub sequential_offsets: bool,
    /// Every record must have a (non-null) key (compacted topics).
    pub require_keys: bool,
    /// How record timestamps are read and checked.
    pub timestamps: TimestampRule,
}

/// How a batch's record timestamps are derived and checked (Kafka's
/// `LogValidator.validateTimestamp`, applied to every record).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimestampRule {
    /// The batch's `base_timestamp`: a record's timestamp is this plus its delta.
    pub base_timestamp: i64,
    /// `Some(max_timestamp)` for a batch marked LogAppendTime: every record
    /// has the batch's `max_timestamp` (as consumers read it).
    pub log_append_time: Option<i64>,
    /// `Some((min, max))`: the topic uses CreateTime and accepts timestamps
    /// in `[min, max]`; records without a timestamp (-1) are not checked.
    pub range: Option<(i64, i64)>,
    /// Refuse batches marked LogAppendTime (any broker-side check: only the
    /// broker sets that type). A CreateTime topic takes such a batch if its
    /// `max_timestamp` passes the range check.
    pub refuse_log_append_time: bool,
}

impl TimestampRule {
    /// No check at all (internal writers, tests).
    pub(crate) fn unchecked(base_timestamp: i64) -> Self {
        TimestampRule {
            base_timestamp,
            log_append_time: None,
            range: None,
            refuse_log_append_time: false,
        }
    }

    #[inline]
    fn timestamp(&self, delta: i64) -> i64 {
        self.log_append_time
            .unwrap_or_else(|| self.base_timestamp.saturating_add(delta))
    }

    #[inline]
    fn check(&self, index: i32, timestamp: i64) -> Option<RecordIssue> {
        match self.range {
            Some((min, max)) if timestamp != NO_TIMESTAMP => {
                (timestamp < min || timestamp > max).then_some(RecordIssue::TimestampOutOfRange {
                    index,
                    timestamp,
                    min,
                    max,
                })
            }
            _ if self.refuse_log_append_time && self.log_append_time.is_some() => {
                Some(RecordIssue::LogAppendTimeFromProducer { index })
            }
            _ => None,
        }
    }
}

/// Walks `count` records from a source in steps (so that a caller can yield
/// between them), checking that each record's length matches its contents
/// and that exactly `count` records fill the data.
pub(crate) struct RecordWalk {
    next: i32,
    count: i32,
    rules: WalkRules,
    /// Keyless records on a compacted topic: all of them are reported
    /// (Kafka's per-record errors, KIP-467), after the whole batch is known
    /// well formed.
    keyless: Vec<i32>,
    /// Every refused record in index order (at most [`MAX_RECORD_ERRORS`]).
    issues: Vec<RecordIssue>,
    /// Some record's timestamp was refused.
    timestamp_refused: bool,
    /// Largest record timestamp so far (Kafka starts at -1, `NO_TIMESTAMP`).
    max_timestamp: i64,
}

impl RecordWalk {
    pub(crate) fn new(count: i32, rules: WalkRules) -> Self {
        RecordWalk {
            next: 0,
            count,
            rules,
            keyless: Vec::new(),
            issues: Vec::new(),
            timestamp_refused: false,
            max_timestamp: NO_TIMESTAMP,
        }
    }

    /// The largest record timestamp of the batch (-1 if none is larger),
    /// once the walk is done: what Kafka stores as the batch's
    /// `max_timestamp` for CreateTime.
    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    fn note_issue(&mut self, issue: RecordIssue) {
        if self.issues.len() < MAX_RECORD_ERRORS {
            self.issues.push(issue);
        }
    }

    /// Walk records until all are done (`Ok(true)`, the end of the data
    /// checked too) or `src` has advanced by at least `budget` bytes with
    /// records left (`Ok(false)`: call again).
    pub(crate) fn step<S: Source>(&mut self, src: &mut S, budget: u64) -> Result<bool, RecordError> {
        let stop_at = src.pos().saturating_add(budget);
        while self.next < self.count {
            let i = self.next;
            let seen = walk_record(src, i, self.rules)?;
            let timestamp = self.rules.timestamps.timestamp(seen.timestamp_delta);
            if timestamp > self.max_timestamp {
                self.max_timestamp = timestamp;
            }
            // As Kafka: a keyless record reports that, not its timestamp.
            if !seen.has_key && self.rules.require_keys {
                self.keyless.push(i);
                self.note_issue(RecordIssue::MissingKey { index: i });
            } else if let Some(issue) = self.rules.timestamps.check(i, timestamp) {
                self.timestamp_refused = true;
                self.note_issue(issue);
            }
            self.next += 1;
            if self.next < self.count && src.pos() >= stop_at {
                return Ok(false);
            }
        }
        if !src.at_end()? {
            return Err(corrupt(format!("batch has data after its {} records", self.count)));
        }
        if self.timestamp_refused {
            return Err(RecordError::InvalidTimestamp(std::mem::take(&mut self.issues)));
        }
        if !self.keyless.is_empty() {
            return Err(RecordError::MissingKeys(std::mem::take(&mut self.keyless)));
        }
        Ok(true)
    }
}

/// What [`walk_record`] read of a record that the rest of the walk checks.
struct SeenRecord {
    timestamp_delta: i64,
    has_key: bool,
}

/// Check record `i` at the current position of `src`.
#[inline]
fn walk_record<S: Source>(src: &mut S, i: i32, rules: WalkRules) -> Result<SeenRecord, RecordError> {
    let len = src.varint()?;
    if len < 0 {
        return Err(corrupt(format!("record {i} has a negative length {len}")));
    }
    let start = src.pos();
    let end = start.saturating_add(len as u64);
    src.u8()?; // attributes
    let timestamp_delta = src.varlong()?;
    let offset_delta = src.varint()?;
    if rules.sequential_offsets && offset_delta != i {
        return Err(invalid(format!(
            "record {i} has offset delta {offset_delta}, expected {i}"
        )));
    }
    let key_len = src.varint()?;
    if key_len >= 0 {
        skip_within(src, key_len as u64, end, i)?;
    }
    let value_len = src.varint()?;
    if value_len >= 0 {
        skip_within(src, value_len as u64, end, i)?;
    }
    let header_count = src.varint()?;
    if header_count < 0 {
        return Err(invalid(format!(
            "record {i} has an invalid header count {header_count}"
        )));
    }
    // Each header takes at least 2 bytes.
    if (header_count as u64).saturating_mul(2) > end.saturating_sub(src.pos()) {
        return Err(corrupt(format!(
            "record {i} has more headers ({header_count}) than bytes"
        )));
    }
    for _ in 0..header_count {
        let key_len = src.varint()?;
        if key_len < 0 {
            return Err(invalid(format!("record {i} has a null header key")));
        }
        skip_within(src, key_len as u64, end, i)?;
        let value_len = src.varint()?;
        if value_len >= 0 {
            skip_within(src, value_len as u64, end, i)?;
        }
    }
    if src.pos() != end {
        return Err(corrupt(format!(
            "record {i}: length says {len} bytes, contents take {}",
            src.pos().saturating_sub(start)
        )));
    }
    Ok(SeenRecord {
        timestamp_delta,
        has_key: key_len >= 0,
    })
}

/// Skip `n` bytes of a record ending at `end`, refusing to go past it.
#[inline]
fn skip_within<S: Source>(src: &mut S, n: u64, end: u64, i: i32) -> Result<(), RecordError> {
    if src.pos().saturating_add(n) > end {
        return Err(corrupt(format!("record {i} overruns its length")));
    }
    // n <= end - pos <= 2^31, so it fits in usize.
    src.skip(n as usize)
}

/// Check the framing of the batch at the start of `buf`: at least the magic is
/// readable (magic 2), `batch_length >= 49` and the whole batch is present.
/// Returns the header and the batch's total size.
pub(crate) fn check_frame(buf: &[u8], at: usize) -> Result<(BatchHeader, usize), RecordError> {
    const MAGIC_END: usize = super::batch::MAGIC_OFFSET + 1;
    if buf.len() < MAGIC_END {
        return Err(corrupt(format!(
            "truncated batch at byte {at}: {} bytes left",
            buf.len()
        )));
    }
    let magic = buf.get(super::batch::MAGIC_OFFSET).map_or(0, |&m| m as i8);
    if magic != MAGIC_V2 {
        return Err(invalid(format!(
            "batch at byte {at} has magic {magic}, only magic 2 is supported"
        )));
    }
    let batch_length = get_i32(buf, super::batch::BATCH_LENGTH_OFFSET).unwrap_or(0);
    if batch_length < MIN_BATCH_LENGTH {
        return Err(corrupt(format!(
            "batch at byte {at} has length {batch_length}, below the minimum {MIN_BATCH_LENGTH}"
        )));
    }
    let total = LOG_OVERHEAD.saturating_add(batch_length as usize);
    if total > buf.len() {
        return Err(corrupt(format!(
            "truncated batch at byte {at}: {total} bytes declared, {} present",
            buf.len()
        )));
    }
    let header = BatchHeader::parse(buf).ok_or_else(|| corrupt("truncated batch header"))?;
    Ok((header, total))
}

/// Decode the records of one batch (at the start of `batch`), decompressing if
/// needed. The batch must be well-framed with a valid CRC. Offset deltas are
/// returned as stored (compacted batches have gaps); the number of records and
/// their lengths must match the header exactly.
pub fn decode_records(batch: &[u8]) -> Result<Vec<OwnedRecord>, RecordError> {
    let BatchRecords { header: h, data } = batch_records(batch)?;
    let data = match data {
        std::borrow::Cow::Borrowed(body) => Bytes::copy_from_slice(body),
        std::borrow::Cow::Owned(v) => Bytes::from(v),
    };
    decode_all(&data, h.record_count)
}

fn decode_nullable(src: &mut SliceSource<'_>, data: &Bytes, end: usize) -> Result<Option<Bytes>, RecordError> {
    let len = src.varint()?;
    if len < 0 {
        return Ok(None);
    }
    let r = take_within(src, len as usize, end)?;
    Ok(Some(data.slice(r)))
}

#[inline]
fn take_within(src: &mut SliceSource<'_>, n: usize, end: usize) -> Result<std::ops::Range<usize>, RecordError> {
    if src.offset().saturating_add(n) > end {
        return Err(corrupt("record overruns its length"));
    }
    src.take(n)
}

fn decode_all(data: &Bytes, count: i32) -> Result<Vec<OwnedRecord>, RecordError> {
    let count_u = count.max(0) as u64;
    if count_u.saturating_mul(MIN_RECORD_LEN) > data.len() as u64 {
        return Err(corrupt(format!("{count} records cannot fit in {} bytes", data.len())));
    }
    let mut out = Vec::with_capacity(count_u as usize);
    let mut src = SliceSource::new(data);
    for i in 0..count {
        let len = src.varint()?;
        if len < 0 {
            return Err(corrupt(format!("record {i} has a negative length {len}")));
        }
        let start = src.offset();
        let end = start.saturating_add(len as usize);
        if end > data.len() {
            return Err(corrupt(format!("record {i} overruns the batch")));
        }
        src.u8()?;
        let timestamp_delta = src.varlong()?;
        let offset_delta = src.varint()?;
        let key = decode_nullable(&mut src, data, end)?;
        let value = decode_nullable(&mut src, data, end)?;
        let header_count = src.varint()?;
        if header_count < 0 {
            return Err(invalid(format!(
                "record {i} has an invalid header count {header_count}"
            )));
        }
        if (header_count as usize).saturating_mul(2) > end.saturating_sub(src.offset()) {
            return Err(corrupt(format!(
                "record {i} has more headers ({header_count}) than bytes"
            )));
        }
        let mut headers = Vec::with_capacity(header_count as usize);
        for _ in 0..header_count {
            let key_len = src.varint()?;
            if key_len < 0 {
                return Err(invalid(format!("record {i} has a null header key")));
            }
            let r = take_within(&mut src, key_len as usize, end)?;
            let key = String::from_utf8_lossy(src.bytes(r)).into_owned();
            let value = decode_nullable(&mut src, data, end)?;
            headers.push((key, value));
        }
        if src.offset() != end {
            return Err(corrupt(format!(
                "record {i}: length says {len} bytes, contents take {}",
                src.offset().saturating_sub(start)
            )));
        }
        out.push(OwnedRecord {
            offset_delta,
            timestamp_delta,
            key,
            value,
            headers,
        });
    }
    if !src.at_end()? {
        return Err(corrupt(format!("batch has data after its {count} records")));
    }
    Ok(out)
}
