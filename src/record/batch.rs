//! The v2 record batch header: parsing, attribute bits, CRC, the broker-side
//! in-place rewrite and iteration over the batches of a log segment.

use super::{BATCH_HEADER_LEN, LOG_OVERHEAD};

/// The only record batch format this module handles.
pub const MAGIC_V2: i8 = 2;
/// Smallest legal `batch_length`: the header after `LOG_OVERHEAD` (49 bytes).
pub const MIN_BATCH_LENGTH: i32 = (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32;

/// Byte offsets of the header fields within a batch.
pub const BASE_OFFSET_OFFSET: usize = 0;
pub const BATCH_LENGTH_OFFSET: usize = 8;
pub const PARTITION_LEADER_EPOCH_OFFSET: usize = 12;
pub const MAGIC_OFFSET: usize = 16;
pub const CRC_OFFSET: usize = 17;
/// The CRC covers everything from here to the end of the batch.
pub const ATTRIBUTES_OFFSET: usize = 21;
pub const LAST_OFFSET_DELTA_OFFSET: usize = 23;
pub const BASE_TIMESTAMP_OFFSET: usize = 27;
pub const MAX_TIMESTAMP_OFFSET: usize = 35;
pub const PRODUCER_ID_OFFSET: usize = 43;
pub const PRODUCER_EPOCH_OFFSET: usize = 51;
pub const BASE_SEQUENCE_OFFSET: usize = 53;
pub const RECORD_COUNT_OFFSET: usize = 57;

/// Sentinels used by Kafka for "not set".
pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_PRODUCER_EPOCH: i16 = -1;
pub const NO_SEQUENCE: i32 = -1;
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;
pub const NO_TIMESTAMP: i64 = -1;

/// Attribute bits.
pub const ATTR_COMPRESSION_MASK: i16 = 0x07;
pub const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
pub const ATTR_CONTROL: i16 = 0x20;

/// Compression codec of a batch (attribute bits 0..2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// The codec for attribute bits 0..2 (`0..=4`); `None` for anything else.
    #[inline]
    pub fn from_id(id: i16) -> Option<Compression> {
        match id {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            2 => Some(Compression::Snappy),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// Kafka's codec id (the attribute bits).
    #[inline]
    pub fn id(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// Kafka's name for the codec (`compression.type` values).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Timestamp type of a batch (attribute bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

#[inline]
fn arr<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..)?.first_chunk::<N>().copied()
}

#[inline]
fn put<const N: usize>(buf: &mut [u8], at: usize, v: [u8; N]) -> bool {
    match buf.get_mut(at..).and_then(|s| s.first_chunk_mut::<N>()) {
        Some(dst) => {
            *dst = v;
            true
        }
        None => false,
    }
}

#[inline]
pub(crate) fn get_i16(buf: &[u8], at: usize) -> Option<i16> {
    arr(buf, at).map(i16::from_be_bytes)
}

#[inline]
pub(crate) fn get_i32(buf: &[u8], at: usize) -> Option<i32> {
    arr(buf, at).map(i32::from_be_bytes)
}

#[inline]
pub(crate) fn get_i64(buf: &[u8], at: usize) -> Option<i64> {
    arr(buf, at).map(i64::from_be_bytes)
}

/// The fixed 61-byte header of a v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Decode the header at the start of `buf`. `None` if `buf` is shorter
    /// than [`BATCH_HEADER_LEN`]; no other check is made.
    #[inline]
    pub fn parse(buf: &[u8]) -> Option<BatchHeader> {
        let h = buf.get(..BATCH_HEADER_LEN)?;
        Some(BatchHeader {
            base_offset: get_i64(h, BASE_OFFSET_OFFSET)?,
            batch_length: get_i32(h, BATCH_LENGTH_OFFSET)?,
            partition_leader_epoch: get_i32(h, PARTITION_LEADER_EPOCH_OFFSET)?,
            magic: i8::from_be_bytes(arr(h, MAGIC_OFFSET)?),
            crc: u32::from_be_bytes(arr(h, CRC_OFFSET)?),
            attributes: get_i16(h, ATTRIBUTES_OFFSET)?,
            last_offset_delta: get_i32(h, LAST_OFFSET_DELTA_OFFSET)?,
            base_timestamp: get_i64(h, BASE_TIMESTAMP_OFFSET)?,
            max_timestamp: get_i64(h, MAX_TIMESTAMP_OFFSET)?,
            producer_id: get_i64(h, PRODUCER_ID_OFFSET)?,
            producer_epoch: get_i16(h, PRODUCER_EPOCH_OFFSET)?,
            base_sequence: get_i32(h, BASE_SEQUENCE_OFFSET)?,
            record_count: get_i32(h, RECORD_COUNT_OFFSET)?,
        })
    }

    /// Encode the header into the first [`BATCH_HEADER_LEN`] bytes of `dst`
    /// (the `crc` field is written as is: see [`update_crc`]). Returns false,
    /// writing nothing, if `dst` is too short.
    pub fn write(&self, dst: &mut [u8]) -> bool {
        let Some(h) = dst.get_mut(..BATCH_HEADER_LEN) else {
            return false;
        };
        put(h, BASE_OFFSET_OFFSET, self.base_offset.to_be_bytes())
            && put(h, BATCH_LENGTH_OFFSET, self.batch_length.to_be_bytes())
            && put(
                h,
                PARTITION_LEADER_EPOCH_OFFSET,
                self.partition_leader_epoch.to_be_bytes(),
            )
            && put(h, MAGIC_OFFSET, self.magic.to_be_bytes())
            && put(h, CRC_OFFSET, self.crc.to_be_bytes())
            && put(h, ATTRIBUTES_OFFSET, self.attributes.to_be_bytes())
            && put(h, LAST_OFFSET_DELTA_OFFSET, self.last_offset_delta.to_be_bytes())
            && put(h, BASE_TIMESTAMP_OFFSET, self.base_timestamp.to_be_bytes())
            && put(h, MAX_TIMESTAMP_OFFSET, self.max_timestamp.to_be_bytes())
            && put(h, PRODUCER_ID_OFFSET, self.producer_id.to_be_bytes())
            && put(h, PRODUCER_EPOCH_OFFSET, self.producer_epoch.to_be_bytes())
            && put(h, BASE_SEQUENCE_OFFSET, self.base_sequence.to_be_bytes())
            && put(h, RECORD_COUNT_OFFSET, self.record_count.to_be_bytes())
    }

    /// Size of the whole batch on the wire / on disk:
    /// `LOG_OVERHEAD + batch_length` (a negative length counts as 0).
    #[inline]
    pub fn total_size(&self) -> usize {
        LOG_OVERHEAD.saturating_add(usize::try_from(self.batch_length).unwrap_or(0))
    }

    /// Offset of the last record: `base_offset + last_offset_delta`.
    #[inline]
    pub fn last_offset(&self) -> i64 {
        self.base_offset.wrapping_add(i64::from(self.last_offset_delta))
    }

    /// The offset following this batch: `last_offset() + 1`.
    #[inline]
    pub fn next_offset(&self) -> i64 {
        self.last_offset().wrapping_add(1)
    }

    /// The codec, or `None` for the undefined ids 5..7.
    #[inline]
    pub fn compression(&self) -> Option<Compression> {
        Compression::from_id(self.attributes & ATTR_COMPRESSION_MASK)
    }

    #[inline]
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & ATTR_TIMESTAMP_TYPE != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    #[inline]
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    #[inline]
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// Whether the header could start a batch: magic 2, `batch_length >= 49`,
    /// non-negative base offset, last offset delta and record count, a known
    /// codec. (The CRC is not checked.)
    #[inline]
    pub fn is_plausible(&self) -> bool {
        self.magic == MAGIC_V2
            && self.batch_length >= MIN_BATCH_LENGTH
            && self.base_offset >= 0
            && self.last_offset_delta >= 0
            && self.record_count >= 0
            && self.compression().is_some()
    }

    /// True for idempotent / transactional producers (`producer_id >= 0`).
    #[inline]
    pub fn has_producer_id(&self) -> bool {
        self.producer_id > NO_PRODUCER_ID
    }
}

/// The end of the bytes covered by the CRC: the batch end according to its
/// header, clamped to `buf`.
#[inline]
fn crc_end(buf: &[u8]) -> usize {
    match get_i32(buf, BATCH_LENGTH_OFFSET) {
        Some(len) if len >= MIN_BATCH_LENGTH => LOG_OVERHEAD.saturating_add(len as usize).min(buf.len()),
        _ => buf.len(),
    }
}

/// CRC-32C of a batch as Kafka defines it: over the bytes from `attributes` to
/// the end of the batch (`LOG_OVERHEAD + batch_length`). `None` if `batch` is
/// shorter than the header, has a `batch_length` below 49, or is shorter than
/// its `batch_length` says.
pub fn compute_crc(batch: &[u8]) -> Option<u32> {
    let len = get_i32(batch, BATCH_LENGTH_OFFSET)?;
    if len < MIN_BATCH_LENGTH {
        return None;
    }
    let end = LOG_OVERHEAD.checked_add(len as usize)?;
    Some(crc32c::crc32c(batch.get(ATTRIBUTES_OFFSET..end)?))
}

/// True if the batch at the start of `batch` is complete and its stored CRC
/// matches [`compute_crc`].
pub fn verify_crc(batch: &[u8]) -> bool {
    match (compute_crc(batch), arr(batch, CRC_OFFSET)) {
        (Some(crc), Some(stored)) => crc == u32::from_be_bytes(stored),
        _ => false,
    }
}

/// Recompute and store the CRC of the batch at the start of `batch`.
/// Returns false (changing nothing) if the batch is incomplete.
pub fn update_crc(batch: &mut [u8]) -> bool {
    match compute_crc(batch) {
        Some(crc) => put(batch, CRC_OFFSET, crc.to_be_bytes()),
        None => false,
    }
}

/// Broker-side rewrite of one batch in place, as Kafka's `LogValidator` does
/// for in-place offset assignment (`buf` = exactly one batch,
/// `LOG_OVERHEAD + batch_length` bytes):
///
/// - `base_offset` and `partition_leader_epoch` are set; neither is covered by
///   the CRC, so this alone does not touch the CRC;
/// - with `log_append_time = Some(ts)` (topic uses `LogAppendTime`), the
///   timestamp-type attribute bit is set and `max_timestamp = ts`, then the CRC
///   is recomputed (skipped if both were already so). `base_timestamp` and the
///   record timestamp deltas are left as the producer wrote them: consumers
///   take every record's timestamp from `max_timestamp` for such batches.
///
/// A `buf` shorter than the batch header is left untouched. Never panics.
pub fn rewrite_batch(buf: &mut [u8], base_offset: i64, leader_epoch: i32, log_append_time: Option<i64>) {
    if buf.len() < BATCH_HEADER_LEN {
        return;
    }
    put(buf, BASE_OFFSET_OFFSET, base_offset.to_be_bytes());
    put(buf, PARTITION_LEADER_EPOCH_OFFSET, leader_epoch.to_be_bytes());
    let Some(ts) = log_append_time else {
        return;
    };
    let (Some(attributes), Some(max_ts)) = (get_i16(buf, ATTRIBUTES_OFFSET), get_i64(buf, MAX_TIMESTAMP_OFFSET)) else {
        return;
    };
    let new_attributes = attributes | ATTR_TIMESTAMP_TYPE;
    if new_attributes == attributes && max_ts == ts {
        return;
    }
    put(buf, ATTRIBUTES_OFFSET, new_attributes.to_be_bytes());
    put(buf, MAX_TIMESTAMP_OFFSET, ts.to_be_bytes());
    let end = crc_end(buf);
    if let Some(covered) = buf.get(ATTRIBUTES_OFFSET..end) {
        let crc = crc32c::crc32c(covered);
        put(buf, CRC_OFFSET, crc.to_be_bytes());
    }
}

/// [`rewrite_batch`] for a batch held as its 61-byte header (`head`, to be
/// patched) and the rest (`body`, untouched): lets the broker keep the
/// records where the request put them and patch only a small copy of the
/// header. The CRC, when it must change, covers `head[21..]` then `body`.
pub fn rewrite_header(head: &mut [u8], body: &[u8], base_offset: i64, leader_epoch: i32, log_append_time: Option<i64>) {
    if head.len() != BATCH_HEADER_LEN {
        return;
    }
    put(head, BASE_OFFSET_OFFSET, base_offset.to_be_bytes());
    put(head, PARTITION_LEADER_EPOCH_OFFSET, leader_epoch.to_be_bytes());
    let Some(ts) = log_append_time else {
        return;
    };
    let (Some(attributes), Some(max_ts)) = (get_i16(head, ATTRIBUTES_OFFSET), get_i64(head, MAX_TIMESTAMP_OFFSET))
    else {
        return;
    };
    let new_attributes = attributes | ATTR_TIMESTAMP_TYPE;
    if new_attributes == attributes && max_ts == ts {
        return;
    }
    put(head, ATTRIBUTES_OFFSET, new_attributes.to_be_bytes());
    put(head, MAX_TIMESTAMP_OFFSET, ts.to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head[ATTRIBUTES_OFFSET..]), body);
    put(head, CRC_OFFSET, crc.to_be_bytes());
}

/// Set the `max_timestamp` of a batch held as its 61-byte header (`head`)
/// and the rest (`body`, untouched), recomputing the CRC, unless it already
/// is `max_timestamp` (Kafka overwrites a CreateTime batch's max timestamp
/// with the largest record timestamp it computed while validating). Returns
/// whether the header changed. A `head` of another length is left untouched.
pub fn set_max_timestamp(head: &mut [u8], body: &[u8], max_timestamp: i64) -> bool {
    if head.len() != BATCH_HEADER_LEN || get_i64(head, MAX_TIMESTAMP_OFFSET) == Some(max_timestamp) {
        return false;
    }
    put(head, MAX_TIMESTAMP_OFFSET, max_timestamp.to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head[ATTRIBUTES_OFFSET..]), body);
    put(head, CRC_OFFSET, crc.to_be_bytes());
    true
}

/// Iterates over the batches of a buffer read from a log segment, which may end
/// with a torn or garbage tail.
///
/// Yields `(position, header)` for each complete batch whose header is sane
/// (magic 2, `batch_length >= 49`, batch fully inside the buffer, known codec,
/// `base_offset >= 0`, `last_offset_delta >= 0`, `record_count >= 0`) and, if
/// `verify_crc`, whose CRC matches. Iteration stops for good at the first batch
/// that is not; [`BatchIter::valid_len`] then gives the length of the valid
/// prefix (for truncating a torn tail during recovery). Records inside the
/// batches are not examined.
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
    verify_crc: bool,
    done: bool,
}

impl<'a> BatchIter<'a> {
    pub fn new(buf: &'a [u8], verify_crc: bool) -> Self {
        BatchIter {
            buf,
            pos: 0,
            verify_crc,
            done: false,
        }
    }

    /// Byte length of the prefix made of the batches yielded so far.
    #[inline]
    pub fn valid_len(&self) -> usize {
        self.pos
    }

    /// True once iteration has ended (at the end of the buffer or at the first
    /// incomplete or invalid batch).
    #[inline]
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Drive the iterator to its end and return [`BatchIter::valid_len`].
    pub fn scan_valid_len(mut self) -> usize {
        for _ in self.by_ref() {}
        self.valid_len()
    }

    fn check(&self, rest: &[u8]) -> Option<(BatchHeader, usize)> {
        let h = BatchHeader::parse(rest)?;
        if !h.is_plausible() {
            return None;
        }
        let total = h.total_size();
        let batch = rest.get(..total)?;
        if self.verify_crc {
            let covered = batch.get(ATTRIBUTES_OFFSET..)?;
            if crc32c::crc32c(covered) != h.crc {
                return None;
            }
        }
        Some((h, total))
    }
}

impl Iterator for BatchIter<'_> {
    type Item = (usize, BatchHeader);

    fn next(&mut self) -> Option<(usize, BatchHeader)> {
        if self.done {
            return None;
        }
        let checked = self.buf.get(self.pos..).and_then(|rest| self.check(rest));
        match checked {
            Some((h, total)) => {
                let at = self.pos;
                self.pos = self.pos.saturating_add(total);
                Some((at, h))
            }
            None => {
                self.done = true;
                None
            }
        }
    }
}

impl std::iter::FusedIterator for BatchIter<'_> {}
