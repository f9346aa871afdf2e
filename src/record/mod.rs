//! Record batches (magic v2): parsing, validation and broker-side rewriting.
//!
//! Pure, IO-free code on the broker's hot path. Nothing here panics on any
//! input: every read of input-derived data is bounds-checked, arithmetic on it
//! saturates or wraps, and decompression is bounded.
//!
//! Batch layout (big-endian):
//!
//! | offset | field                  | type |
//! |-------:|------------------------|------|
//! | 0      | base_offset            | i64  |
//! | 8      | batch_length           | i32  |
//! | 12     | partition_leader_epoch | i32  |
//! | 16     | magic (= 2)            | i8   |
//! | 17     | crc (CRC-32C of 21..)  | u32  |
//! | 21     | attributes             | i16  |
//! | 23     | last_offset_delta      | i32  |
//! | 27     | base_timestamp         | i64  |
//! | 35     | max_timestamp          | i64  |
//! | 43     | producer_id            | i64  |
//! | 51     | producer_epoch         | i16  |
//! | 53     | base_sequence          | i32  |
//! | 57     | record_count           | i32  |
//! | 61     | records (maybe compressed) |  |
//!
//! Entry points:
//! - [`validate_produce_payload`] / [`validate_payload`]: everything a broker
//!   checks on produced data;
//! - [`rewrite_batch`]: in-place offset / leader epoch / LogAppendTime update;
//! - [`BatchIter`]: walk a log segment's batches, finding a torn tail;
//! - [`build_batch`] / [`decode_records`]: for internal topics and tests.

mod batch;
mod compression;
mod records;
mod validate;
mod varint;

use crate::protocol::error::{self as ec, ApiError};

#[cfg(test)]
mod tests;

pub use batch::{
    compute_crc, rewrite_batch, rewrite_header, set_max_timestamp, update_crc, verify_crc, BatchHeader, BatchIter,
    Compression, TimestampType, ATTRIBUTES_OFFSET, ATTR_COMPRESSION_MASK, ATTR_CONTROL, ATTR_TIMESTAMP_TYPE,
    ATTR_TRANSACTIONAL, BASE_OFFSET_OFFSET, BASE_SEQUENCE_OFFSET, BASE_TIMESTAMP_OFFSET, BATCH_LENGTH_OFFSET,
    CRC_OFFSET, LAST_OFFSET_DELTA_OFFSET, MAGIC_OFFSET, MAGIC_V2, MAX_TIMESTAMP_OFFSET, MIN_BATCH_LENGTH,
    NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE, NO_TIMESTAMP,
    PARTITION_LEADER_EPOCH_OFFSET, PRODUCER_EPOCH_OFFSET, PRODUCER_ID_OFFSET, RECORD_COUNT_OFFSET,
};
pub use compression::{decompression_limit, MAX_DECOMPRESSED_BYTES, MAX_DECOMPRESSION_RATIO, MIN_DECOMPRESSION_LIMIT};
pub use records::{
    batch_records, build_batch, build_batch_exact, build_batch_with, build_raw_batch, decode_records, BatchOptions,
    BatchRecords, OwnedRecord, RawRecord, RawRecordOut, Record,
};
pub use validate::{
    validate_payload, validate_payload_pausing, validate_produce_payload, BatchSpan, TimestampPolicy, ValidateOptions,
    ValidatedBatches, PAUSE_EVERY,
};

/// Size of the v2 batch header, up to and including `record_count`.
pub const BATCH_HEADER_LEN: usize = 61;
/// `base_offset` (8) + `batch_length` (4): the bytes not counted in `batch_length`.
pub const LOG_OVERHEAD: usize = 12;

/// Why a batch was refused. [`RecordError::kafka_code`] maps it to the error
/// code of the produce response, and it converts into [`ApiError`].
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    /// Bad CRC, bad lengths, truncated data, records that do not match the
    /// header (Kafka `CORRUPT_MESSAGE`, 2).
    #[error("corrupt message: {0}")]
    CorruptMessage(String),
    /// A well-formed batch that breaks a rule (Kafka `INVALID_RECORD`, 87).
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// A batch (total size given) larger than allowed (Kafka `MESSAGE_TOO_LARGE`, 10).
    #[error("record batch of {0} bytes is larger than the maximum allowed")]
    MessageTooLarge(usize),
    /// Codec id 5..7 (Kafka `UNSUPPORTED_COMPRESSION_TYPE`, 76).
    #[error("unsupported compression type {0}")]
    UnsupportedCompression(i16),
    /// Records without a key sent to a compacted topic (Kafka
    /// `INVALID_RECORD`, 87), with the index of each in its batch: the
    /// produce response lists them as per-record errors (KIP-467).
    #[error("compacted topic cannot accept message without key")]
    MissingKeys(Vec<i32>),
    /// Records whose timestamps the topic does not accept (Kafka
    /// `INVALID_TIMESTAMP`, 32): CreateTime timestamps outside
    /// `message.timestamp.before.max.ms`/`after.max.ms` of the broker's clock,
    /// or a producer claiming LogAppendTime. Lists the rejected records of
    /// the batch (at most [`MAX_RECORD_ERRORS`]; keyless records of a
    /// compacted topic included, as Kafka reports every record error of the
    /// batch under INVALID_TIMESTAMP once one is a timestamp error), for the
    /// per-record errors of the produce response (KIP-467).
    #[error("one or more records have been rejected due to invalid timestamp")]
    InvalidTimestamp(Vec<RecordIssue>),
}

/// Most per-record errors kept for one batch (a batch can hold millions of
/// records; the produce response lists these and the error applies to the
/// whole batch anyway).
pub const MAX_RECORD_ERRORS: usize = 1024;

/// Why one record of a batch was refused (see [`RecordError::InvalidTimestamp`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordIssue {
    /// Record `index` has no key but the topic is compacted.
    MissingKey { index: i32 },
    /// Record `index` has CreateTime `timestamp`, outside `[min, max]`.
    TimestampOutOfRange {
        index: i32,
        timestamp: i64,
        min: i64,
        max: i64,
    },
    /// Record `index` is in a batch marked LogAppendTime, which only the
    /// broker may set (or a LogAppendTime batch without a timestamp).
    LogAppendTimeFromProducer { index: i32 },
}

impl RecordIssue {
    /// Index of the record in its batch.
    pub fn index(&self) -> i32 {
        match *self {
            RecordIssue::MissingKey { index }
            | RecordIssue::TimestampOutOfRange { index, .. }
            | RecordIssue::LogAppendTimeFromProducer { index } => index,
        }
    }
}

impl std::fmt::Display for RecordIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            RecordIssue::MissingKey { .. } => write!(f, "compacted topic cannot accept message without key"),
            RecordIssue::TimestampOutOfRange {
                index,
                timestamp,
                min,
                max,
            } => write!(
                f,
                "timestamp {timestamp} of record {index} is out of range: the topic accepts [{min}, {max}]"
            ),
            RecordIssue::LogAppendTimeFromProducer { index } => write!(
                f,
                "record {index}: producers may not set the timestamp type to LogAppendTime"
            ),
        }
    }
}

impl RecordError {
    /// Kafka protocol error code for this error.
    pub fn kafka_code(&self) -> i16 {
        match self {
            RecordError::CorruptMessage(_) => ec::CORRUPT_MESSAGE,
            RecordError::InvalidRecord(_) | RecordError::MissingKeys(_) => ec::INVALID_RECORD,
            RecordError::MessageTooLarge(_) => ec::MESSAGE_TOO_LARGE,
            RecordError::UnsupportedCompression(_) => ec::UNSUPPORTED_COMPRESSION_TYPE,
            RecordError::InvalidTimestamp(_) => ec::INVALID_TIMESTAMP,
        }
    }
}

impl From<RecordError> for ApiError {
    fn from(e: RecordError) -> Self {
        ApiError::with_message(e.kafka_code(), e.to_string())
    }
}
