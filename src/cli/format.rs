//! Record templates (`-f`), offset specs (`-o`) and the partitioner of
//! `ringlog produce` / `ringlog consume`.
//!
//! A template is text with fields, like rpk's and kcat's:
//!
//! | field | meaning |
//! |-------|---------|
//! | `%t`  | topic |
//! | `%p`  | partition |
//! | `%o`  | offset |
//! | `%k`  | key (`%K` its length) |
//! | `%v`  | value (`%V` its length) |
//! | `%h`  | headers, `k=v` joined by `,` |
//! | `%d`  | timestamp, epoch milliseconds |
//! | `%%`  | a `%` |
//!
//! `%k`, `%v` and `%h` take an encoding suffix: `%v{base64}`, `%v{hex}`
//! (default: raw bytes). Escapes: `\n`, `\r`, `\t`, `\\`, `\0`.

use anyhow::{anyhow, bail};
use base64::Engine;

/// A field of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Topic,
    Partition,
    Offset,
    Key,
    KeyLen,
    Value,
    ValueLen,
    Headers,
    Timestamp,
}

/// How a field's bytes are written or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    #[default]
    Raw,
    Base64,
    Hex,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Lit(Vec<u8>),
    Field(Field, Encoding),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub pieces: Vec<Piece>,
}

impl Template {
    pub fn parse(s: &str) -> anyhow::Result<Template> {
        let mut pieces: Vec<Piece> = Vec::new();
        let mut lit: Vec<u8> = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'\\' => {
                    let c = *b.get(i + 1).ok_or_else(|| anyhow!("format ends with a lone '\\'"))?;
                    lit.push(match c {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'\\' => b'\\',
                        b'0' => 0,
                        b'%' => b'%',
                        other => bail!(
                            "unknown escape '\\{}' in format (known: \\n \\r \\t \\\\ \\0)",
                            other as char
                        ),
                    });
                    i += 2;
                }
                b'%' => {
                    let c = *b.get(i + 1).ok_or_else(|| anyhow!("format ends with a lone '%'"))?;
                    i += 2;
                    if c == b'%' {
                        lit.push(b'%');
                        continue;
                    }
                    let field = match c {
                        b't' => Field::Topic,
                        b'p' => Field::Partition,
                        b'o' => Field::Offset,
                        b'k' => Field::Key,
                        b'K' => Field::KeyLen,
                        b'v' => Field::Value,
                        b'V' => Field::ValueLen,
                        b'h' => Field::Headers,
                        b'd' => Field::Timestamp,
                        other => bail!(
                            "unknown field '%{}' in format (known: %t %p %o %k %K %v %V %h %d %%)",
                            other as char
                        ),
                    };
                    let mut enc = Encoding::Raw;
                    if b.get(i) == Some(&b'{') {
                        let end = s[i..].find('}').ok_or_else(|| anyhow!("unterminated '{{' in format"))?;
                        let name = &s[i + 1..i + end];
                        enc = match name {
                            "base64" => Encoding::Base64,
                            "hex" => Encoding::Hex,
                            "raw" | "" => Encoding::Raw,
                            other => bail!("unknown encoding '{other}' (known: base64, hex, raw)"),
                        };
                        if enc != Encoding::Raw && !matches!(field, Field::Key | Field::Value | Field::Headers) {
                            bail!("only %k, %v and %h take an encoding");
                        }
                        i += end + 1;
                    }
                    if !lit.is_empty() {
                        pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Field(field, enc));
                }
                c => {
                    lit.push(c);
                    i += 1;
                }
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Ok(Template { pieces })
    }

    /// Write one record.
    pub fn render(&self, r: &RecordView<'_>, out: &mut Vec<u8>) {
        for p in &self.pieces {
            match p {
                Piece::Lit(l) => out.extend_from_slice(l),
                Piece::Field(f, enc) => match f {
                    Field::Topic => out.extend_from_slice(r.topic.as_bytes()),
                    Field::Partition => out.extend_from_slice(r.partition.to_string().as_bytes()),
                    Field::Offset => out.extend_from_slice(r.offset.to_string().as_bytes()),
                    Field::Timestamp => out.extend_from_slice(r.timestamp.to_string().as_bytes()),
                    Field::Key => encode(r.key.unwrap_or_default(), *enc, out),
                    Field::Value => encode(r.value.unwrap_or_default(), *enc, out),
                    Field::KeyLen => out.extend_from_slice(len_text(r.key).as_bytes()),
                    Field::ValueLen => out.extend_from_slice(len_text(r.value).as_bytes()),
                    Field::Headers => {
                        for (i, (k, v)) in r.headers.iter().enumerate() {
                            if i > 0 {
                                out.push(b',');
                            }
                            out.extend_from_slice(k.as_bytes());
                            out.push(b'=');
                            encode(v.as_deref().unwrap_or_default(), *enc, out);
                        }
                    }
                },
            }
        }
    }

    /// Whether the template names `f`.
    pub fn has(&self, f: Field) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::Field(g, _) if *g == f))
    }
}

fn len_text(b: Option<&[u8]>) -> String {
    b.map_or_else(|| "-1".to_string(), |b| b.len().to_string())
}

fn encode(b: &[u8], enc: Encoding, out: &mut Vec<u8>) {
    match enc {
        Encoding::Raw => out.extend_from_slice(b),
        Encoding::Base64 => out.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(b).as_bytes()),
        Encoding::Hex => {
            for byte in b {
                out.extend_from_slice(format!("{byte:02x}").as_bytes());
            }
        }
    }
}

/// Decode a field read from input.
pub fn decode(b: &[u8], enc: Encoding) -> anyhow::Result<Vec<u8>> {
    match enc {
        Encoding::Raw => Ok(b.to_vec()),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(b.trim_ascii())
            .map_err(|e| anyhow!("bad base64 input: {e}")),
        Encoding::Hex => {
            let t = b.trim_ascii();
            if !t.len().is_multiple_of(2) {
                bail!("bad hex input: odd length");
            }
            t.chunks(2)
                .map(|c| {
                    std::str::from_utf8(c)
                        .ok()
                        .and_then(|s| u8::from_str_radix(s, 16).ok())
                        .ok_or_else(|| anyhow!("bad hex input"))
                })
                .collect()
        }
    }
}

/// A record as the consumer formats it.
#[derive(Debug, Clone, Default)]
pub struct RecordView<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(String, Option<bytes::Bytes>)],
}

/// One record read from producer input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputRecord {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Reads records from input according to a template: each field runs up
/// to the literal that follows it (the last one to the end of input).
pub struct InputReader<R> {
    reader: R,
    pieces: Vec<Piece>,
}

impl<R: std::io::BufRead> InputReader<R> {
    pub fn new(reader: R, template: &Template) -> anyhow::Result<InputReader<R>> {
        let mut prev_field = false;
        for p in &template.pieces {
            match p {
                Piece::Field(f, _) => {
                    if prev_field {
                        bail!("two fields in a row in the input format: put a separator between them");
                    }
                    if !matches!(f, Field::Key | Field::Value | Field::Headers) {
                        bail!("the input format may only hold %k, %v and %h");
                    }
                    prev_field = true;
                }
                Piece::Lit(_) => prev_field = false,
            }
        }
        if !template.has(Field::Value) {
            bail!("the input format needs a %v");
        }
        Ok(InputReader {
            reader,
            pieces: template.pieces.clone(),
        })
    }

    /// Whether input is waiting in the buffer (more records can be read
    /// without blocking).
    pub fn buffered(&self) -> bool
    where
        R: BufferLen,
    {
        self.reader.buffered_len() > 0
    }

    /// The next record; None at the end of input. A record cut short by
    /// the end of input (a last line without its newline) is kept.
    pub fn next_record(&mut self) -> anyhow::Result<Option<InputRecord>> {
        let mut rec = InputRecord::default();
        let mut started = false;
        let n = self.pieces.len();
        let mut i = 0;
        while i < n {
            match &self.pieces[i] {
                Piece::Lit(l) => {
                    let mut got = vec![0u8; l.len()];
                    let read = read_full(&mut self.reader, &mut got)?;
                    if read == 0 {
                        if !started {
                            return Ok(None);
                        }
                        break;
                    }
                    if got[..read] != l[..] {
                        bail!(
                            "input does not match the format: expected {:?}, got {:?}",
                            String::from_utf8_lossy(l),
                            String::from_utf8_lossy(&got[..read])
                        );
                    }
                    started = true;
                    i += 1;
                }
                Piece::Field(f, enc) => {
                    let delim: Option<&[u8]> = match self.pieces.get(i + 1) {
                        Some(Piece::Lit(l)) => Some(l.as_slice()),
                        _ => None,
                    };
                    let (data, found) = read_until_delim(&mut self.reader, delim)?;
                    if !started && data.is_empty() && !found {
                        return Ok(None);
                    }
                    started = true;
                    let bytes = decode(&data, *enc)?;
                    match f {
                        Field::Key => rec.key = Some(bytes),
                        Field::Value => rec.value = bytes,
                        Field::Headers => rec.headers = parse_headers(&bytes)?,
                        _ => {}
                    }
                    if !found {
                        break;
                    }
                    i += if delim.is_some() { 2 } else { 1 };
                }
            }
        }
        Ok(Some(rec))
    }
}

/// How many bytes a reader holds buffered.
pub trait BufferLen {
    fn buffered_len(&self) -> usize;
}

impl<R> BufferLen for std::io::BufReader<R> {
    fn buffered_len(&self) -> usize {
        self.buffer().len()
    }
}

impl BufferLen for &[u8] {
    fn buffered_len(&self) -> usize {
        self.len()
    }
}

fn read_full(r: &mut impl std::io::Read, buf: &mut [u8]) -> anyhow::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(anyhow!("reading input: {e}")),
        }
    }
    Ok(n)
}

/// Read up to and including `delim` (None: to the end of input). Returns
/// the data without the delimiter, and whether the delimiter was found.
fn read_until_delim(r: &mut impl std::io::BufRead, delim: Option<&[u8]>) -> anyhow::Result<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    let Some(delim) = delim.filter(|d| !d.is_empty()) else {
        r.read_to_end(&mut out).map_err(|e| anyhow!("reading input: {e}"))?;
        return Ok((out, false));
    };
    let last = delim[delim.len() - 1];
    loop {
        let n = r
            .read_until(last, &mut out)
            .map_err(|e| anyhow!("reading input: {e}"))?;
        if n == 0 {
            return Ok((out, false));
        }
        if out.ends_with(delim) {
            out.truncate(out.len() - delim.len());
            return Ok((out, true));
        }
    }
}

/// `k=v,k2=v2` (or `k=v` alone).
fn parse_headers(b: &[u8]) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    if b.is_empty() {
        return Ok(Vec::new());
    }
    b.split(|c| *c == b',')
        .map(|kv| {
            let s = String::from_utf8_lossy(kv);
            let (k, v) = s
                .split_once('=')
                .ok_or_else(|| anyhow!("header {s:?} is not key=value"))?;
            Ok((k.to_string(), v.as_bytes().to_vec()))
        })
        .collect()
}

/// `-H key=value`.
pub fn parse_header_arg(s: &str) -> anyhow::Result<(String, Vec<u8>)> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| anyhow!("header {s:?} is not key=value"))?;
    Ok((k.to_string(), v.as_bytes().to_vec()))
}

// --- offsets ------------------------------------------------------------------------

/// Where a consumer starts (`-o`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    Start,
    End,
    /// This offset.
    At(i64),
    /// N before the end (`-N`).
    FromEnd(i64),
    /// The first offset at or after this time (epoch ms; `@TS`).
    Timestamp(i64),
}

impl std::str::FromStr for OffsetSpec {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<OffsetSpec> {
        let s = s.trim();
        match s {
            "start" | "oldest" | "beginning" | "earliest" => return Ok(OffsetSpec::Start),
            "end" | "newest" | "latest" => return Ok(OffsetSpec::End),
            _ => {}
        }
        if let Some(ts) = s.strip_prefix('@') {
            let ms = match ts.parse::<i64>() {
                Ok(ms) => ms,
                Err(_) => super::group::parse_datetime(ts)
                    .map_err(|e| anyhow!("bad timestamp {ts:?}: epoch ms or YYYY-MM-DDTHH:MM:SS ({e})"))?,
            };
            return Ok(OffsetSpec::Timestamp(ms));
        }
        if let Some(n) = s.strip_prefix('-') {
            let n: i64 = n
                .parse()
                .map_err(|_| anyhow!("bad offset {s:?}: expected start, end, N, -N or @TIMESTAMP"))?;
            return Ok(OffsetSpec::FromEnd(n));
        }
        let n = s.strip_prefix('+').unwrap_or(s);
        n.parse::<i64>()
            .map(OffsetSpec::At)
            .map_err(|_| anyhow!("bad offset {s:?}: expected start, end, N, -N or @TIMESTAMP"))
    }
}

// --- partitioner -------------------------------------------------------------------

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    match tail.len() {
        3 => {
            h ^= u32::from(tail[2]) << 16;
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        2 => {
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        1 => {
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java client's default partitioner picks for `key`.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    if partitions <= 0 {
        return 0;
    }
    (murmur2(key) & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // org.apache.kafka.common.utils.UtilsTest#testMurmur2
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
            (b"abc", 479470107),
        ];
        for (data, want) in cases {
            assert_eq!(murmur2(data), want, "{:?}", String::from_utf8_lossy(data));
        }
        assert_eq!(partition_for_key(b"foobar", 7), (-790332482i32 & 0x7fff_ffff) % 7);
        assert_eq!(partition_for_key(b"x", 0), 0);
    }

    #[test]
    fn offset_specs() {
        assert_eq!("start".parse::<OffsetSpec>().unwrap(), OffsetSpec::Start);
        assert_eq!("oldest".parse::<OffsetSpec>().unwrap(), OffsetSpec::Start);
        assert_eq!("end".parse::<OffsetSpec>().unwrap(), OffsetSpec::End);
        assert_eq!("42".parse::<OffsetSpec>().unwrap(), OffsetSpec::At(42));
        assert_eq!("+42".parse::<OffsetSpec>().unwrap(), OffsetSpec::At(42));
        assert_eq!("-3".parse::<OffsetSpec>().unwrap(), OffsetSpec::FromEnd(3));
        assert_eq!(
            "@1700000000000".parse::<OffsetSpec>().unwrap(),
            OffsetSpec::Timestamp(1_700_000_000_000)
        );
        assert_eq!(
            "@1970-01-01T00:00:01Z".parse::<OffsetSpec>().unwrap(),
            OffsetSpec::Timestamp(1000)
        );
        for bad in ["", "x", "-x", "@yesterday", "1.5"] {
            assert!(bad.parse::<OffsetSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn templates_render() {
        let t = Template::parse("%t/%p@%o %k=%v %h %d %K %V\\n").unwrap();
        let headers = vec![
            ("a".to_string(), Some(bytes::Bytes::from_static(b"1"))),
            ("b".to_string(), None),
        ];
        let r = RecordView {
            topic: "t",
            partition: 2,
            offset: 7,
            timestamp: 1000,
            key: Some(b"k"),
            value: Some(b"v\x00"),
            headers: &headers,
        };
        let mut out = Vec::new();
        t.render(&r, &mut out);
        assert_eq!(out, b"t/2@7 k=v\x00 a=1,b= 1000 1 2\n");
        let t = Template::parse("%v{base64} %k{hex} 100%%\\t\\\\").unwrap();
        let mut out = Vec::new();
        t.render(&r, &mut out);
        assert_eq!(out, b"dgA= 6b 100%\t\\");
        let r = RecordView { key: None, ..r };
        let mut out = Vec::new();
        Template::parse("%K").unwrap().render(&r, &mut out);
        assert_eq!(out, b"-1");
    }

    #[test]
    fn template_errors() {
        for (bad, why) in [
            ("%x", "unknown field"),
            ("%", "lone '%'"),
            ("\\q", "unknown escape"),
            ("%v{rot13}", "unknown encoding"),
            ("%o{base64}", "only %k"),
            ("%v{base64", "unterminated"),
        ] {
            let e = Template::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    fn read_all(template: &str, input: &[u8]) -> anyhow::Result<Vec<InputRecord>> {
        let t = Template::parse(template)?;
        let mut r = InputReader::new(input, &t)?;
        let mut out = Vec::new();
        while let Some(rec) = r.next_record()? {
            out.push(rec);
        }
        Ok(out)
    }

    #[test]
    fn input_records() {
        let recs = read_all("%v\\n", b"a\nb\n\nc").unwrap();
        let values: Vec<&[u8]> = recs.iter().map(|r| r.value.as_slice()).collect();
        assert_eq!(values, vec![&b"a"[..], b"b", b"", b"c"]);
        let recs = read_all("%k %v\\n", b"k1 v 1\nk2 v2\n").unwrap();
        assert_eq!(recs[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(recs[0].value, b"v 1");
        assert_eq!(recs[1].key.as_deref(), Some(&b"k2"[..]));
        assert_eq!(recs.len(), 2);
        let recs = read_all("%k{base64}\\t%v{base64}\\t%h\\n", b"AA==\tAP8=\ta=1,b=2\n").unwrap();
        assert_eq!(recs[0].key.as_deref(), Some(&[0u8][..]));
        assert_eq!(recs[0].value, vec![0u8, 255]);
        assert_eq!(
            recs[0].headers,
            vec![("a".to_string(), b"1".to_vec()), ("b".to_string(), b"2".to_vec())]
        );
        let recs = read_all("%v\\n--\\n", b"line1\nline2\n--\nnext\n--\n").unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].value, b"line1\nline2");
        assert!(read_all("%v", b"").unwrap().is_empty());
        assert_eq!(read_all("%v", b"all of it\n").unwrap()[0].value, b"all of it\n");
        assert!(read_all("%k%v\\n", b"").is_err());
        assert!(read_all("%k\\n", b"").is_err());
        assert!(read_all("%o %v\\n", b"").is_err());
        assert!(read_all("%v{base64}\\n", b"!!\n").is_err());
    }
}
