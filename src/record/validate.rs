//! Validation of produce payloads, following Kafka's `ProduceRequest`,
//! `UnifiedLog.analyzeAndValidateRecords` and `LogValidator` checks for
//! magic v2 batches written by clients.

use std::future::Future;

use futures::FutureExt;

use super::batch::{BatchHeader, Compression, TimestampType, ATTRIBUTES_OFFSET, ATTR_COMPRESSION_MASK};
use super::compression::{decompression_limit, Decoder, MAX_DECOMPRESSED_BYTES};
use super::records::{check_frame, RecordWalk, TimestampRule, WalkRules, MIN_RECORD_LEN};
use super::varint::{corrupt, invalid, SliceSource, StreamSource};
use super::{RecordError, BATCH_HEADER_LEN};

/// [`validate_payload_pausing`] pauses after about this many bytes of work
/// (checksummed, walked or decompressed).
pub const PAUSE_EVERY: usize = 64 * 1024;

/// Summary of one validated produce payload (all batches in a
/// `PartitionProduceData.records`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedBatches {
    pub batches: Vec<BatchSpan>,
    /// Sum of the batches' record counts.
    pub total_records: u64,
    /// Largest batch `max_timestamp` (see [`BatchSpan::max_timestamp`]).
    pub max_timestamp: i64,
    /// Offset delta, from the first record of the payload, of the last record
    /// of the (first) batch holding `max_timestamp`: Kafka's "shallow offset of
    /// max timestamp" for v2. Add the assigned base offset to get the offset.
    pub offset_of_max_timestamp_delta: i64,
    /// Bytes the compressed batches decompressed to (counted against
    /// [`ValidateOptions::max_total_decompressed_bytes`]).
    pub decompressed_bytes: u64,
}

/// One batch of a validated payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSpan {
    /// Position of the batch in the payload.
    pub start: usize,
    /// Total size of the batch (`LOG_OVERHEAD + batch_length`).
    pub len: usize,
    pub record_count: i32,
    pub last_offset_delta: i32,
    /// The largest record timestamp (Kafka's batch max timestamp for
    /// CreateTime, computed from the records, not taken from the header;
    /// -1 if none is larger). The append writes it into the header when the
    /// producer's header says otherwise
    /// ([`super::set_max_timestamp`]), so a wrong header cannot give a
    /// segment a far-future timestamp.
    pub max_timestamp: i64,
    pub base_timestamp: i64,
    pub compression: Compression,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub is_transactional: bool,
    pub is_control: bool,
}

impl BatchSpan {
    /// The batch's byte range in the payload.
    #[inline]
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start..self.start.saturating_add(self.len)
    }
}

/// Which record timestamps a topic accepts (Kafka's `message.timestamp.type`,
/// `message.timestamp.before.max.ms` and `message.timestamp.after.max.ms`,
/// KIP-937), as `LogValidator` checks them on every record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampPolicy {
    /// No check (internal use and tests).
    Unchecked,
    /// CreateTime topic: every record timestamp other than -1 must lie in
    /// `[now_ms - before_max_ms, now_ms + after_max_ms]`. A record of a batch
    /// marked LogAppendTime has the batch's `max_timestamp`; if that is -1
    /// the record is refused.
    CreateTime {
        now_ms: i64,
        before_max_ms: i64,
        after_max_ms: i64,
    },
    /// LogAppendTime topic: the broker stamps the batches; producers' own
    /// timestamps are not checked, but batches marked LogAppendTime are
    /// refused (only the broker sets that type).
    LogAppendTime,
}

impl TimestampPolicy {
    /// The rule for one batch with this header.
    fn rule(&self, h: &BatchHeader) -> TimestampRule {
        let mut rule = TimestampRule::unchecked(h.base_timestamp);
        if h.timestamp_type() == TimestampType::LogAppendTime {
            rule.log_append_time = Some(h.max_timestamp);
        }
        match *self {
            TimestampPolicy::Unchecked => {}
            TimestampPolicy::CreateTime {
                now_ms,
                before_max_ms,
                after_max_ms,
            } => {
                rule.range = Some((
                    now_ms.saturating_sub(before_max_ms.max(0)),
                    now_ms.saturating_add(after_max_ms.max(0)),
                ));
                rule.refuse_log_append_time = true;
            }
            TimestampPolicy::LogAppendTime => rule.refuse_log_append_time = true,
        }
        rule
    }
}

/// What [`validate_payload`] enforces. [`ValidateOptions::new`] gives the
/// rules [`validate_produce_payload`] applies; change fields with struct
/// update syntax: `ValidateOptions { require_keys: true, ..ValidateOptions::new(max) }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidateOptions {
    /// Largest accepted batch, `LOG_OVERHEAD + batch_length` (Kafka's
    /// `max.message.bytes`); larger batches fail with `MessageTooLarge`.
    pub max_batch_bytes: usize,
    /// Most batches in one payload (default: no limit). Kafka itself accepts
    /// exactly one batch per partition in a v3+ produce request: set 1 for
    /// strict parity.
    pub max_batches: usize,
    /// Accept control batches (default false: Kafka refuses them from clients).
    pub allow_control_batches: bool,
    /// Accept batches whose `base_offset` is not 0 (default false: Kafka
    /// refuses them from clients).
    pub allow_nonzero_base_offset: bool,
    /// Every record must have a key (compacted topics; default false).
    pub require_keys: bool,
    /// Upper bound on the decompressed size of one compressed batch, on top of
    /// [`decompression_limit`] (default [`MAX_DECOMPRESSED_BYTES`]).
    pub max_decompressed_bytes: usize,
    /// Upper bound on the decompressed size of all compressed batches of the
    /// payload together (default: no bound beyond the per-batch ones). The
    /// broker gives each produce request one allowance for all its
    /// partitions, so many small batches cannot each claim the per-batch
    /// minimum of [`decompression_limit`].
    pub max_total_decompressed_bytes: usize,
    /// Which record timestamps are accepted (default
    /// [`TimestampPolicy::Unchecked`]; the broker passes the topic's).
    pub timestamps: TimestampPolicy,
}

impl ValidateOptions {
    /// The rules of [`validate_produce_payload`].
    pub fn new(max_batch_bytes: usize) -> Self {
        ValidateOptions {
            max_batch_bytes,
            max_batches: usize::MAX,
            allow_control_batches: false,
            allow_nonzero_base_offset: false,
            require_keys: false,
            max_decompressed_bytes: MAX_DECOMPRESSED_BYTES,
            max_total_decompressed_bytes: usize::MAX,
            timestamps: TimestampPolicy::Unchecked,
        }
    }
}

/// Validate everything a broker checks on a produce payload, as Kafka does for
/// magic v2 (see [`validate_payload`] for the exact list), with
/// [`ValidateOptions::new`]`(max_batch_bytes)`.
pub fn validate_produce_payload(payload: &[u8], max_batch_bytes: usize) -> Result<ValidatedBatches, RecordError> {
    validate_payload(payload, &ValidateOptions::new(max_batch_bytes))
}

/// Validate a produce payload: one or more concatenated v2 batches. In order,
/// for each batch:
///
/// 1. the bytes up to `magic` are present and magic is 2 (else
///    `InvalidRecord`); `batch_length >= 49` and the whole batch is present
///    (a partial trailing batch is `CorruptMessage`);
/// 2. the batch size is at most `max_batch_bytes` (`MessageTooLarge`);
/// 3. the CRC-32C matches (`CorruptMessage`);
/// 4. the codec is known (`UnsupportedCompression`);
/// 5. `record_count >= 1` and `last_offset_delta == record_count - 1`;
///    `base_offset == 0`; not a control batch; a producer id implies a
///    base sequence >= 0 (`InvalidRecord`, each unless allowed by `opts`);
/// 6. the records are walked, in place or through the decompressor (output
///    bounded by [`decompression_limit`] and `opts.max_decompressed_bytes`):
///    exactly `record_count` records whose varint lengths match their contents
///    must fill the batch (`CorruptMessage`); offset deltas must be
///    `0..record_count` in order, header counts non-negative, header keys
///    non-null, keys present if `opts.require_keys` (`MissingKeys`,
///    `InvalidRecord`); every record timestamp accepted by `opts.timestamps`
///    (`InvalidTimestamp`, which then also lists the keyless records).
///
/// An empty payload, or more than `opts.max_batches` batches, is `InvalidRecord`.
/// Never panics, whatever the input.
pub fn validate_payload(payload: &[u8], opts: &ValidateOptions) -> Result<ValidatedBatches, RecordError> {
    // Pausing never waits here, so the future completes in its first poll.
    validate_with(payload, opts, || std::future::ready(()))
        .now_or_never()
        .unwrap_or_else(|| Err(invalid("validation did not complete")))
}

/// [`validate_payload`] that awaits `pause()` after every [`PAUSE_EVERY`]
/// bytes of work (checksums, record walks, decompression), so that a caller
/// on a shared thread can let other tasks run (the broker passes
/// `io::yield_if_needed`): one large or highly compressed batch does not
/// hold the thread for the whole validation.
pub async fn validate_payload_pausing<P, F>(
    payload: &[u8],
    opts: &ValidateOptions,
    pause: P,
) -> Result<ValidatedBatches, RecordError>
where
    P: FnMut() -> F,
    F: Future<Output = ()>,
{
    validate_with(payload, opts, pause).await
}

async fn validate_with<P, F>(
    payload: &[u8],
    opts: &ValidateOptions,
    mut pause: P,
) -> Result<ValidatedBatches, RecordError>
where
    P: FnMut() -> F,
    F: Future<Output = ()>,
{
    if payload.is_empty() {
        return Err(invalid("produce payload has no record batch"));
    }
    let mut batches = Vec::with_capacity(1);
    let mut total_records: u64 = 0;
    let mut max_ts: Option<(i64, i64)> = None;
    let mut allowance = opts.max_total_decompressed_bytes as u64;
    let mut pos = 0usize;
    while pos < payload.len() {
        if batches.len() >= opts.max_batches {
            return Err(invalid(format!(
                "produce payload has more than {} record batch(es)",
                opts.max_batches
            )));
        }
        let rest = payload.get(pos..).unwrap_or(&[]);
        let (h, total) = check_frame(rest, pos)?;
        let batch = rest.get(..total).unwrap_or(&[]);
        let span = validate_batch(batch, &h, total, pos, opts, &mut allowance, &mut pause).await?;

        let last_delta = (total_records as i64).saturating_add(i64::from(h.last_offset_delta));
        if max_ts.is_none_or(|(ts, _)| span.max_timestamp > ts) {
            max_ts = Some((span.max_timestamp, last_delta));
        }
        total_records = total_records.saturating_add(h.record_count as u64);
        batches.push(span);
        pos = pos.saturating_add(total);
    }
    let (max_timestamp, offset_of_max_timestamp_delta) = max_ts.unwrap_or((-1, -1));
    Ok(ValidatedBatches {
        batches,
        total_records,
        max_timestamp,
        offset_of_max_timestamp_delta,
        decompressed_bytes: (opts.max_total_decompressed_bytes as u64).saturating_sub(allowance),
    })
}

/// Steps 2.. of [`validate_payload`] for one framed batch; `allowance` is
/// what compressed batches may still decompress to.
async fn validate_batch<P, F>(
    batch: &[u8],
    h: &BatchHeader,
    total: usize,
    pos: usize,
    opts: &ValidateOptions,
    allowance: &mut u64,
    pause: &mut P,
) -> Result<BatchSpan, RecordError>
where
    P: FnMut() -> F,
    F: Future<Output = ()>,
{
    if total > opts.max_batch_bytes {
        return Err(RecordError::MessageTooLarge(total));
    }
    let covered = batch.get(ATTRIBUTES_OFFSET..).unwrap_or(&[]);
    let mut crc = 0u32;
    for chunk in covered.chunks(16 * PAUSE_EVERY) {
        crc = crc32c::crc32c_append(crc, chunk);
        if chunk.len() == 16 * PAUSE_EVERY {
            pause().await;
        }
    }
    if crc != h.crc {
        return Err(corrupt(format!(
            "batch at byte {pos}: CRC mismatch, stored {:#010x}, computed {crc:#010x}",
            h.crc
        )));
    }
    let codec = h.compression().ok_or(RecordError::UnsupportedCompression(
        h.attributes & ATTR_COMPRESSION_MASK,
    ))?;
    if h.record_count <= 0 {
        return Err(invalid(format!(
            "batch at byte {pos}: invalid record count {}",
            h.record_count
        )));
    }
    if i64::from(h.last_offset_delta) != i64::from(h.record_count) - 1 {
        return Err(invalid(format!(
            "batch at byte {pos}: last offset delta {} does not match record count {}",
            h.last_offset_delta, h.record_count
        )));
    }
    if h.base_offset != 0 && !opts.allow_nonzero_base_offset {
        return Err(invalid(format!(
            "batch at byte {pos}: base offset should be 0, but it is {}",
            h.base_offset
        )));
    }
    if h.is_control() && !opts.allow_control_batches {
        return Err(invalid("clients are not allowed to write control records"));
    }
    if h.has_producer_id() && h.base_sequence < 0 {
        return Err(invalid(format!(
            "invalid sequence number {} in record batch with producer id {}",
            h.base_sequence, h.producer_id
        )));
    }

    let body = batch.get(BATCH_HEADER_LEN..).unwrap_or(&[]);
    let rules = WalkRules {
        sequential_offsets: true,
        require_keys: opts.require_keys,
        timestamps: opts.timestamps.rule(h),
    };
    let min_len = (h.record_count as u64).saturating_mul(MIN_RECORD_LEN);
    let mut max_timestamp = h.max_timestamp;
    match codec {
        Compression::None => {
            if min_len > body.len() as u64 {
                return Err(corrupt(format!(
                    "batch at byte {pos}: {} records cannot fit in {} bytes",
                    h.record_count,
                    body.len()
                )));
            }
            let mut src = SliceSource::new(body);
            let mut walk = RecordWalk::new(h.record_count, rules);
            while !walk.step(&mut src, PAUSE_EVERY as u64)? {
                pause().await;
            }
            max_timestamp = walk.max_timestamp();
        }
        c => {
            let limit = decompression_limit(body.len())
                .min(opts.max_decompressed_bytes)
                .min(usize::try_from(*allowance).unwrap_or(usize::MAX));
            if min_len > limit as u64 {
                return Err(corrupt(format!(
                    "batch at byte {pos}: {} records exceed the decompression limit",
                    h.record_count
                )));
            }
            if let Some(decoder) = Decoder::new(c, body, limit)? {
                let mut src = StreamSource::new(decoder, limit);
                let mut walk = RecordWalk::new(h.record_count, rules);
                while !walk.step(&mut src, PAUSE_EVERY as u64)? {
                    pause().await;
                }
                max_timestamp = walk.max_timestamp();
                *allowance = allowance.saturating_sub(src.produced());
            }
        }
    }

    Ok(BatchSpan {
        start: pos,
        len: total,
        record_count: h.record_count,
        last_offset_delta: h.last_offset_delta,
        max_timestamp,
        base_timestamp: h.base_timestamp,
        compression: codec,
        producer_id: h.producer_id,
        producer_epoch: h.producer_epoch,
        base_sequence: h.base_sequence,
        is_transactional: h.is_transactional(),
        is_control: h.is_control(),
    })
}
