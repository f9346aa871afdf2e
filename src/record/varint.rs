//! Kafka's zig-zag variable-length integers (protobuf style), plus the byte
//! sources the record walker reads them from.
//!
//! Decoding follows Kafka's `ByteUtils.readVarint`/`readVarlong`: a varint may
//! use at most 5 bytes and a varlong at most 10; excess high bits in the last
//! byte are discarded, exactly as the Java implementation does.

use std::io::{ErrorKind, Read};

use super::RecordError;

#[cold]
#[inline(never)]
pub(crate) fn corrupt(msg: impl Into<String>) -> RecordError {
    RecordError::CorruptMessage(msg.into())
}

#[cold]
#[inline(never)]
pub(crate) fn invalid(msg: impl Into<String>) -> RecordError {
    RecordError::InvalidRecord(msg.into())
}

#[inline]
pub(crate) fn zigzag32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

#[inline]
pub(crate) fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
fn unzigzag32(u: u32) -> i32 {
    ((u >> 1) as i32) ^ -((u & 1) as i32)
}

#[inline]
fn unzigzag64(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Number of bytes `v` takes as an unsigned LEB128 varint.
#[inline]
pub(crate) fn uvarint_len(v: u64) -> usize {
    // 1..=10; `| 1` keeps leading_zeros below 64.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[inline]
pub(crate) fn varint_len(v: i32) -> usize {
    uvarint_len(u64::from(zigzag32(v)))
}

#[inline]
pub(crate) fn varlong_len(v: i64) -> usize {
    uvarint_len(zigzag64(v))
}

#[inline]
pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, v: i32) {
    put_uvarint(out, u64::from(zigzag32(v)));
}

#[inline]
pub(crate) fn put_varlong(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, zigzag64(v));
}

/// A forward-only byte source for the record walker: either a slice (records
/// of an uncompressed batch, walked in place) or a decompressing stream.
pub(crate) trait Source {
    /// Next byte; a `CorruptMessage` error at end of data.
    fn u8(&mut self) -> Result<u8, RecordError>;
    /// Skip `n` bytes; a `CorruptMessage` error if fewer remain.
    fn skip(&mut self, n: usize) -> Result<(), RecordError>;
    /// Bytes consumed so far.
    fn pos(&self) -> u64;
    /// True if no byte is left.
    fn at_end(&mut self) -> Result<bool, RecordError>;

    #[inline]
    fn varint(&mut self) -> Result<i32, RecordError> {
        let mut value: u32 = 0;
        let mut shift: u32 = 0;
        loop {
            let b = self.u8()?;
            if b & 0x80 == 0 {
                // Like Java: bits shifted past 32 are dropped, never an error.
                value |= u32::from(b) << shift;
                return Ok(unzigzag32(value));
            }
            value |= u32::from(b & 0x7f) << shift;
            shift += 7;
            if shift > 28 {
                return Err(corrupt("varint is longer than 5 bytes"));
            }
        }
    }

    #[inline]
    fn varlong(&mut self) -> Result<i64, RecordError> {
        let mut value: u64 = 0;
        let mut shift: u32 = 0;
        loop {
            let b = self.u8()?;
            if b & 0x80 == 0 {
                value |= u64::from(b) << shift;
                return Ok(unzigzag64(value));
            }
            value |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if shift > 63 {
                return Err(corrupt("varlong is longer than 10 bytes"));
            }
        }
    }
}

#[cold]
#[inline(never)]
fn truncated() -> RecordError {
    corrupt("record data ends prematurely")
}

/// Records laid out contiguously in memory.
pub(crate) struct SliceSource<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> SliceSource<'a> {
    #[inline]
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        SliceSource { buf, pos: 0 }
    }

    #[inline]
    pub(crate) fn offset(&self) -> usize {
        self.pos
    }

    /// Take the next `n` bytes, returning their range within the buffer.
    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Result<std::ops::Range<usize>, RecordError> {
        let start = self.pos;
        let end = start
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(truncated)?;
        self.pos = end;
        Ok(start..end)
    }

    /// The bytes of a range previously returned by [`SliceSource::take`].
    #[inline]
    pub(crate) fn bytes(&self, r: std::ops::Range<usize>) -> &'a [u8] {
        self.buf.get(r).unwrap_or(&[])
    }
}

impl Source for SliceSource<'_> {
    #[inline]
    fn u8(&mut self) -> Result<u8, RecordError> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(truncated()),
        }
    }

    #[inline]
    fn skip(&mut self, n: usize) -> Result<(), RecordError> {
        self.take(n).map(|_| ())
    }

    #[inline]
    fn pos(&self) -> u64 {
        self.pos as u64
    }

    #[inline]
    fn at_end(&mut self) -> Result<bool, RecordError> {
        Ok(self.pos >= self.buf.len())
    }
}

/// Size of the buffer between a decompressor and the record walker.
const STREAM_BUF_LEN: usize = 32 * 1024;

/// A decompressing reader, walked through a small buffer so that validating a
/// compressed batch needs O(1) memory however large its decompressed size is.
/// Producing more than `limit` bytes is an error (zip-bomb guard).
pub(crate) struct StreamSource<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    produced: u64,
    limit: u64,
}

impl<R: Read> StreamSource<R> {
    pub(crate) fn new(inner: R, limit: usize) -> Self {
        StreamSource {
            inner,
            buf: vec![0; STREAM_BUF_LEN],
            start: 0,
            end: 0,
            produced: 0,
            limit: limit as u64,
        }
    }

    /// Decompressed bytes produced so far (consumed or buffered).
    pub(crate) fn produced(&self) -> u64 {
        self.produced
    }

    /// Refill the (empty) buffer. `Ok(false)` at end of stream.
    #[inline(never)]
    fn fill(&mut self) -> Result<bool, RecordError> {
        loop {
            match self.inner.read(&mut self.buf) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    let n = n.min(self.buf.len());
                    self.start = 0;
                    self.end = n;
                    self.produced = self.produced.saturating_add(n as u64);
                    if self.produced > self.limit {
                        return Err(corrupt(format!(
                            "decompressed data exceeds the limit of {} bytes",
                            self.limit
                        )));
                    }
                    return Ok(true);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(corrupt(format!("failed to decompress records: {e}"))),
            }
        }
    }
}

impl<R: Read> Source for StreamSource<R> {
    #[inline]
    fn u8(&mut self) -> Result<u8, RecordError> {
        if self.start >= self.end && !self.fill()? {
            return Err(truncated());
        }
        match self.buf.get(self.start) {
            Some(&b) => {
                self.start += 1;
                Ok(b)
            }
            None => Err(truncated()),
        }
    }

    fn skip(&mut self, mut n: usize) -> Result<(), RecordError> {
        loop {
            let avail = self.end.saturating_sub(self.start);
            if n <= avail {
                self.start += n;
                return Ok(());
            }
            n -= avail;
            self.start = self.end;
            if !self.fill()? {
                return Err(truncated());
            }
        }
    }

    #[inline]
    fn pos(&self) -> u64 {
        self.produced - self.end.saturating_sub(self.start) as u64
    }

    fn at_end(&mut self) -> Result<bool, RecordError> {
        if self.start < self.end {
            return Ok(false);
        }
        Ok(!self.fill()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip32(v: i32) {
        let mut out = Vec::new();
        put_varint(&mut out, v);
        assert_eq!(out.len(), varint_len(v), "len of {v}");
        let mut s = SliceSource::new(&out);
        assert_eq!(s.varint().unwrap(), v);
        assert!(s.at_end().unwrap());
    }

    fn roundtrip64(v: i64) {
        let mut out = Vec::new();
        put_varlong(&mut out, v);
        assert_eq!(out.len(), varlong_len(v), "len of {v}");
        let mut s = SliceSource::new(&out);
        assert_eq!(s.varlong().unwrap(), v);
        assert!(s.at_end().unwrap());
    }

    #[test]
    fn varint_roundtrips() {
        for v in [0, 1, -1, 63, -64, 64, -65, 8191, 8192, i32::MAX, i32::MIN] {
            roundtrip32(v);
        }
        for v in [0, 1, -1, 1 << 40, -(1 << 40), i64::MAX, i64::MIN] {
            roundtrip64(v);
        }
    }

    #[test]
    fn varint_known_encodings() {
        let mut out = Vec::new();
        put_varint(&mut out, -1);
        assert_eq!(out, [0x01]);
        out.clear();
        put_varint(&mut out, 300);
        assert_eq!(out, [0xd8, 0x04]);
    }

    #[test]
    fn varint_too_long_is_an_error() {
        let bytes = [0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(matches!(
            SliceSource::new(&bytes).varint(),
            Err(RecordError::CorruptMessage(_))
        ));
        let bytes = [0xffu8; 11];
        assert!(SliceSource::new(&bytes).varlong().is_err());
        // Truncated varints.
        assert!(SliceSource::new(&[0x80]).varint().is_err());
        assert!(SliceSource::new(&[]).varlong().is_err());
    }

    #[test]
    fn stream_source_enforces_limit() {
        let data = vec![7u8; 100_000];
        let mut s = StreamSource::new(&data[..], 50_000);
        assert!(matches!(s.skip(60_000), Err(RecordError::CorruptMessage(_))));
        let mut s = StreamSource::new(&data[..], 100_000);
        s.skip(99_999).unwrap();
        assert_eq!(s.pos(), 99_999);
        assert_eq!(s.u8().unwrap(), 7);
        assert!(s.at_end().unwrap());
        assert!(s.u8().is_err());
    }
}
