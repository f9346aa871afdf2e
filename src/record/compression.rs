//! Compression codecs in the framings Kafka clients use for v2 batches:
//!
//! - gzip: RFC 1952, possibly several concatenated members (`GZIPInputStream`);
//! - snappy: the Java client writes snappy-java's "xerial" framing
//!   (`\x82SNAPPY\0`, version, compatible version, then big-endian
//!   length-prefixed raw snappy blocks); librdkafka, Sarama and others write a
//!   single raw snappy block. Both are read (snappy-java does the same); xerial
//!   framing is written, as every client can read it;
//! - lz4: one LZ4 frame with independent blocks (Kafka's Java reader rejects
//!   linked blocks and frames without an end mark, so we do too);
//! - zstd: standard zstd frames.
//!
//! Decompression is streaming and bounded: a reader never yields more than a
//! caller-given limit, see [`decompression_limit`].

use std::io::{self, Read, Write};

use super::batch::Compression;
use super::varint::corrupt;
use super::RecordError;

/// Decompressed output is capped at this ratio of the compressed size...
pub const MAX_DECOMPRESSION_RATIO: usize = 64;
/// ...but never below this (small, highly compressible batches are legitimate)...
pub const MIN_DECOMPRESSION_LIMIT: usize = 16 << 20;
/// ...and never above this.
pub const MAX_DECOMPRESSED_BYTES: usize = 256 << 20;

/// The most decompressed bytes accepted for `compressed_len` bytes of
/// compressed records: `64 x compressed_len`, clamped to `16 MiB ..= 256 MiB`.
#[inline]
pub fn decompression_limit(compressed_len: usize) -> usize {
    compressed_len
        .saturating_mul(MAX_DECOMPRESSION_RATIO)
        .clamp(MIN_DECOMPRESSION_LIMIT, MAX_DECOMPRESSED_BYTES)
}

/// snappy-java's stream header magic.
pub(crate) const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// Magic, version (i32) and compatible version (i32).
const XERIAL_HEADER_LEN: usize = 16;
/// Upper bound on snappy's expansion ratio (64/3, rounded up with margin).
const SNAPPY_MAX_EXPANSION: usize = 24;
/// snappy-java's default block size.
const XERIAL_BLOCK_LEN: usize = 32 * 1024;

const LZ4_FRAME_MAGIC: u32 = 0x184D_2204;
const LZ4_FLG_BLOCK_INDEPENDENCE: u8 = 0x20;

/// A decompressing reader over the compressed records of a batch.
pub(crate) enum Decoder<'a> {
    Gzip(Box<flate2::read::MultiGzDecoder<&'a [u8]>>),
    Snappy(SnappyDecoder<'a>),
    Lz4(Box<lz4_flex::frame::FrameDecoder<&'a [u8]>>),
    Zstd(Box<zstd::stream::read::Decoder<'static, &'a [u8]>>),
}

impl<'a> Decoder<'a> {
    /// A reader for `input` compressed with `codec`; `None` for
    /// `Compression::None`. `limit` bounds the buffers a codec allocates up
    /// front (raw snappy); the caller bounds the total read.
    pub(crate) fn new(codec: Compression, input: &'a [u8], limit: usize) -> Result<Option<Decoder<'a>>, RecordError> {
        Ok(Some(match codec {
            Compression::None => return Ok(None),
            Compression::Gzip => Decoder::Gzip(Box::new(flate2::read::MultiGzDecoder::new(input))),
            Compression::Snappy => Decoder::Snappy(SnappyDecoder::new(input, limit)),
            Compression::Lz4 => {
                let frame = input.get(..lz4_frame_len(input)?).unwrap_or(&[]);
                Decoder::Lz4(Box::new(lz4_flex::frame::FrameDecoder::new(frame)))
            }
            Compression::Zstd => {
                let d = zstd::stream::read::Decoder::with_buffer(input)
                    .map_err(|e| corrupt(format!("zstd: cannot create decoder: {e}")))?;
                Decoder::Zstd(Box::new(d))
            }
        }))
    }
}

impl Read for Decoder<'_> {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Snappy(d) => d.read(buf),
            Decoder::Lz4(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
        }
    }
}

/// Kafka reads exactly one LZ4 frame, with independent blocks, and fails on a
/// frame without its end mark; bytes after the frame are ignored. Check the
/// frame's structure (without decompressing) and return its length, so that
/// the decoder sees exactly that frame.
fn lz4_frame_len(input: &[u8]) -> Result<usize, RecordError> {
    let magic = input.first_chunk::<4>().map(|m| u32::from_le_bytes(*m));
    if magic != Some(LZ4_FRAME_MAGIC) {
        return Err(corrupt("lz4: missing LZ4 frame magic"));
    }
    let Some(&flg) = input.get(4) else {
        return Err(corrupt("lz4: truncated frame header"));
    };
    if flg >> 6 != 1 {
        return Err(corrupt("lz4: unsupported frame version"));
    }
    if flg & LZ4_FLG_BLOCK_INDEPENDENCE == 0 {
        return Err(corrupt(
            "lz4: frame uses linked blocks, which Kafka clients cannot read",
        ));
    }
    let block_checksum = if flg & 0x10 != 0 { 4 } else { 0 };
    let content_checksum = if flg & 0x04 != 0 { 4 } else { 0 };
    let content_size = if flg & 0x08 != 0 { 8 } else { 0 };
    let dict_id = if flg & 0x01 != 0 { 4 } else { 0 };
    // magic, FLG, BD, optional fields, header checksum
    let mut pos: usize = 4 + 2 + content_size + dict_id + 1;
    loop {
        let Some(size) = input
            .get(pos..)
            .and_then(|s| s.first_chunk::<4>())
            .map(|b| u32::from_le_bytes(*b))
        else {
            return Err(corrupt("lz4: truncated frame (no end mark)"));
        };
        pos = pos.saturating_add(4);
        if size == 0 {
            pos = pos.saturating_add(content_checksum);
            if pos > input.len() {
                return Err(corrupt("lz4: truncated frame checksum"));
            }
            return Ok(pos);
        }
        let data = (size & 0x7fff_ffff) as usize;
        pos = pos.saturating_add(data).saturating_add(block_checksum);
        if pos > input.len() {
            return Err(corrupt("lz4: truncated block"));
        }
    }
}

fn invalid_data(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Reads xerial-framed or raw snappy.
pub(crate) struct SnappyDecoder<'a> {
    /// Compressed input not yet decoded.
    input: &'a [u8],
    xerial: bool,
    out: Vec<u8>,
    out_pos: usize,
    /// Decompressed bytes still allowed.
    budget: usize,
    raw: snap::raw::Decoder,
}

impl<'a> SnappyDecoder<'a> {
    pub(crate) fn new(input: &'a [u8], limit: usize) -> Self {
        let xerial = input.len() >= XERIAL_HEADER_LEN && input.starts_with(&XERIAL_MAGIC);
        let input = if xerial {
            input.get(XERIAL_HEADER_LEN..).unwrap_or(&[])
        } else {
            input
        };
        SnappyDecoder {
            input,
            xerial,
            out: Vec::new(),
            out_pos: 0,
            budget: limit,
            raw: snap::raw::Decoder::new(),
        }
    }

    /// Decompress one raw snappy block into `out`.
    fn decode_block(&mut self, block: &[u8]) -> io::Result<()> {
        let n = snap::raw::decompress_len(block).map_err(io::Error::other)?;
        // A snappy element expands at most 64 bytes out of 3 (a 2-byte-offset
        // copy), so a larger claim is corrupt: refuse it before allocating.
        if n > block.len().saturating_mul(SNAPPY_MAX_EXPANSION).saturating_add(64) {
            return Err(invalid_data("snappy: impossible decompressed length"));
        }
        if n > self.budget {
            return Err(invalid_data("snappy: decompressed size exceeds the limit"));
        }
        self.budget -= n;
        self.out.clear();
        self.out.resize(n, 0);
        let written = self.raw.decompress(block, &mut self.out).map_err(io::Error::other)?;
        self.out.truncate(written);
        self.out_pos = 0;
        Ok(())
    }

    /// Decode the next chunk into `out`; `Ok(false)` at end of input.
    fn next_chunk(&mut self) -> io::Result<bool> {
        if !self.xerial {
            if self.input.is_empty() {
                return Ok(false);
            }
            let all = std::mem::take(&mut self.input);
            self.decode_block(all)?;
            return Ok(true);
        }
        loop {
            if self.input.is_empty() {
                return Ok(false);
            }
            // snappy-java also reads concatenated streams, each with a header.
            if self.input.len() >= XERIAL_HEADER_LEN && self.input.starts_with(&XERIAL_MAGIC) {
                self.input = self.input.get(XERIAL_HEADER_LEN..).unwrap_or(&[]);
                continue;
            }
            let Some((len, rest)) = self.input.split_first_chunk::<4>() else {
                return Err(invalid_data("snappy: truncated xerial block length"));
            };
            let len = u32::from_be_bytes(*len) as usize;
            let (Some(block), Some(after)) = (rest.get(..len), rest.get(len..)) else {
                return Err(invalid_data("snappy: truncated xerial block"));
            };
            self.input = after;
            self.decode_block(block)?;
            if !self.out.is_empty() {
                return Ok(true);
            }
        }
    }
}

impl Read for SnappyDecoder<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.out_pos >= self.out.len() {
            if !self.next_chunk()? {
                return Ok(0);
            }
        }
        let avail = self.out.get(self.out_pos..).unwrap_or(&[]);
        let n = avail.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), avail.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.out_pos += n;
        Ok(n)
    }
}

/// Decompress `input` entirely, failing if the output exceeds `limit` bytes.
pub(crate) fn decompress(codec: Compression, input: &[u8], limit: usize) -> Result<Vec<u8>, RecordError> {
    let Some(decoder) = Decoder::new(codec, input, limit)? else {
        return Ok(input.to_vec());
    };
    let mut out = Vec::with_capacity(input.len().saturating_mul(4).min(limit).min(1 << 20));
    let cap = (limit as u64).saturating_add(1);
    decoder
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| corrupt(format!("failed to decompress records ({}): {e}", codec.name())))?;
    if out.len() > limit {
        return Err(corrupt(format!("decompressed data exceeds the limit of {limit} bytes")));
    }
    Ok(out)
}

/// Compress `data` with `codec` in the framing Kafka clients expect.
pub(crate) fn compress(codec: Compression, data: &[u8]) -> io::Result<Vec<u8>> {
    match codec {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => {
            let mut enc =
                flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 2 + 64), flate2::Compression::default());
            enc.write_all(data)?;
            enc.finish()
        }
        Compression::Snappy => {
            let mut out = Vec::with_capacity(XERIAL_HEADER_LEN + data.len() / 2 + 64);
            out.extend_from_slice(&XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes()); // version
            out.extend_from_slice(&1i32.to_be_bytes()); // compatible version
            let mut enc = snap::raw::Encoder::new();
            let mut block = Vec::new();
            for chunk in data.chunks(XERIAL_BLOCK_LEN) {
                block.clear();
                block.resize(snap::raw::max_compress_len(chunk.len()), 0);
                let n = enc.compress(chunk, &mut block).map_err(io::Error::other)?;
                let len = u32::try_from(n).map_err(io::Error::other)?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(block.get(..n).unwrap_or(&[]));
            }
            Ok(out)
        }
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent)
                .block_checksums(false)
                .content_checksum(false);
            let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::with_capacity(data.len() / 2 + 64));
            enc.write_all(data)?;
            enc.finish().map_err(io::Error::other)
        }
        // Level 3 is the default of both the Java client and librdkafka.
        Compression::Zstd => zstd::bulk::compress(data, 3),
    }
}

#[cfg(test)]
mod tests {
    use super::super::varint::put_uvarint as crate_put_uvarint;
    use super::*;

    const CODECS: [Compression; 4] = [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn sample(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8 ^ (i / 7) as u8).collect()
    }

    #[test]
    fn roundtrip_all_codecs() {
        for codec in CODECS {
            for n in [0, 1, 100, XERIAL_BLOCK_LEN, XERIAL_BLOCK_LEN + 1, 200_000] {
                let data = sample(n);
                let c = compress(codec, &data).unwrap();
                let d = decompress(codec, &c, 1 << 20).unwrap();
                assert_eq!(d, data, "{codec:?} n={n}");
            }
        }
    }

    #[test]
    fn limit_is_enforced() {
        let data = vec![0u8; 100_000];
        for codec in CODECS {
            let c = compress(codec, &data).unwrap();
            assert!(decompress(codec, &c, 100_000).is_ok(), "{codec:?}");
            let e = decompress(codec, &c, 99_999).unwrap_err();
            assert!(matches!(e, RecordError::CorruptMessage(_)), "{codec:?}: {e:?}");
        }
    }

    #[test]
    fn raw_snappy_is_accepted() {
        let data = sample(70_000);
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(decompress(Compression::Snappy, &raw, 1 << 20).unwrap(), data);
        // A raw block that claims more than the limit is refused before allocating.
        assert!(decompress(Compression::Snappy, &raw, 1000).is_err());
        // So is a length no snappy data can expand to.
        let mut lying = Vec::new();
        crate_put_uvarint(&mut lying, 1 << 30);
        lying.extend_from_slice(&[0; 16]);
        let e = decompress(Compression::Snappy, &lying, usize::MAX).unwrap_err();
        assert!(e.to_string().contains("impossible"), "{e}");
    }

    #[test]
    fn concatenated_xerial_streams_and_gzip_members() {
        let a = sample(1000);
        let b = sample(3000);
        let mut both = a.clone();
        both.extend_from_slice(&b);

        let mut s = compress(Compression::Snappy, &a).unwrap();
        s.extend(compress(Compression::Snappy, &b).unwrap());
        assert_eq!(decompress(Compression::Snappy, &s, 1 << 20).unwrap(), both);

        let mut g = compress(Compression::Gzip, &a).unwrap();
        g.extend(compress(Compression::Gzip, &b).unwrap());
        assert_eq!(decompress(Compression::Gzip, &g, 1 << 20).unwrap(), both);
    }

    #[test]
    fn xerial_header_is_what_snappy_java_writes() {
        let c = compress(Compression::Snappy, b"hello").unwrap();
        assert_eq!(&c[..8], &XERIAL_MAGIC);
        assert_eq!(&c[8..16], &[0, 0, 0, 1, 0, 0, 0, 1]);
        let len = u32::from_be_bytes(c[16..20].try_into().unwrap()) as usize;
        assert_eq!(c.len(), 20 + len);
    }

    #[test]
    fn lz4_frame_is_kafka_compatible() {
        let c = compress(Compression::Lz4, &sample(10)).unwrap();
        assert_eq!(u32::from_le_bytes(c[..4].try_into().unwrap()), LZ4_FRAME_MAGIC);
        assert_ne!(c[4] & LZ4_FLG_BLOCK_INDEPENDENCE, 0);

        // A linked-block frame is refused.
        let info = lz4_flex::frame::FrameInfo::new().block_mode(lz4_flex::frame::BlockMode::Linked);
        let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
        enc.write_all(&sample(1000)).unwrap();
        let linked = enc.finish().unwrap();
        assert!(decompress(Compression::Lz4, &linked, 1 << 20).is_err());
        // So is a missing magic.
        assert!(decompress(Compression::Lz4, b"garbage", 1 << 20).is_err());
    }

    #[test]
    fn truncated_inputs_fail_cleanly() {
        let data = sample(100_000);
        for codec in CODECS {
            let c = compress(codec, &data).unwrap();
            for cut in [0, 1, 5, 17, c.len() / 2, c.len() - 1] {
                let r = decompress(codec, &c[..cut], 1 << 20);
                // Either an error or a strict prefix: never the full data, never a panic.
                if let Ok(d) = r {
                    assert!(d.len() < data.len(), "{codec:?} cut={cut}");
                }
            }
        }
    }

    #[test]
    fn limit_policy() {
        assert_eq!(decompression_limit(0), MIN_DECOMPRESSION_LIMIT);
        assert_eq!(decompression_limit(1 << 20), 64 << 20);
        assert_eq!(decompression_limit(usize::MAX), MAX_DECOMPRESSED_BYTES);
    }
}
