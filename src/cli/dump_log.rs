//! `ringlog dump-log FILE...`: print and check segment files offline, in the
//! spirit of Apache Kafka's `kafka-dump-log.sh` (the on-disk formats are
//! Kafka's, so it reads segments written by Kafka too).
//!
//! * `.log`: one line per record batch, with its CRC verdict; with
//!   `--deep-iteration` also one line per record, and with
//!   `--print-data-log` the keys, values and header values as well;
//! * `.index`: the entries, checked against the sibling `.log` (each points
//!   at a batch boundary whose batch holds the offset; both keys grow);
//! * `.timeindex`: the entries, checked against the sibling `.log` (each
//!   offset is in the log, timestamps do not decrease and agree with the
//!   batches' max timestamps).
//!
//! The files are read with bounded positional reads: no length read from a
//! file is trusted before it is checked against the file size, and a batch
//! is only loaded whole (up to [`MAX_DECODED_BATCH`]) to decode its records.
//! Problems are reported where they are found and make the exit status 1;
//! dumping goes on past a batch with a bad CRC, as Kafka's tool does.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use crate::record::{
    decode_records, update_crc, BatchHeader, Compression, OwnedRecord, TimestampType, ATTRIBUTES_OFFSET,
    ATTR_COMPRESSION_MASK, BATCH_HEADER_LEN, MAGIC_V2, MAX_DECOMPRESSED_BYTES, MIN_BATCH_LENGTH, NO_SEQUENCE,
};

/// Largest batch whose records are decoded (larger ones are only framed and
/// CRC-checked, in bounded chunks).
pub const MAX_DECODED_BATCH: u64 = MAX_DECOMPRESSED_BYTES as u64;
/// Chunk size of the streaming reads (CRC, zero-tail check, index entries).
const CHUNK: usize = 64 << 10;

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  ringlog dump-log data/t-0/00000000000000000000.log
  ringlog dump-log --print-data-log data/t-0/00000000000000000000.log
  ringlog dump-log --format json FILE.log | jq 'select(.isvalid == false)'")]
pub struct DumpLogArgs {
    /// Segment files to dump: .log, .index or .timeindex.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// More files, comma-separated (as kafka-dump-log.sh takes them).
    #[arg(long = "files", value_name = "FILE,...", value_delimiter = ',')]
    pub more_files: Vec<PathBuf>,
    /// Also print every record of every batch, with its key, value and headers.
    #[arg(long)]
    pub print_data_log: bool,
    /// Also print every record's metadata (offset, timestamp, sizes, header keys).
    #[arg(long)]
    pub deep_iteration: bool,
    /// For index files: only check them against the log, do not print the entries.
    #[arg(long)]
    pub verify_index_only: bool,
    /// Print keys, values and header values in hex instead of UTF-8.
    #[arg(long)]
    pub hex: bool,
    /// Output format: Kafka-like text, or one JSON object per line.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// What to print.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Decode and print the records of each batch.
    pub deep: bool,
    /// Print keys, values and header values too (implies `deep`).
    pub print_data: bool,
    pub verify_index_only: bool,
    pub hex: bool,
    pub json: bool,
}

impl From<&DumpLogArgs> for Options {
    fn from(a: &DumpLogArgs) -> Self {
        Options {
            deep: a.deep_iteration || a.print_data_log,
            print_data: a.print_data_log,
            verify_index_only: a.verify_index_only,
            hex: a.hex,
            json: a.format == Format::Json,
        }
    }
}

/// Run `ringlog dump-log`; returns the process exit code: 0 when every file
/// was read and found sound, 1 otherwise.
pub fn main(args: DumpLogArgs) -> i32 {
    let files: Vec<PathBuf> = args.files.iter().chain(&args.more_files).cloned().collect();
    if files.is_empty() {
        eprintln!("ringlog dump-log: no file given (usage: ringlog dump-log [OPTIONS] FILE...)");
        return 2;
    }
    let opts = Options::from(&args);
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(CHUNK, stdout.lock());
    let result = dump_files(&files, &opts, &mut out).and_then(|ok| out.flush().map(|()| ok));
    match result {
        Ok(true) => 0,
        Ok(false) => 1,
        // `ringlog dump-log x.log | head`
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => 1,
        Err(e) => {
            eprintln!("ringlog dump-log: {e}");
            1
        }
    }
}

/// Dump `files` in order to `out`. `Ok(true)` if no problem was found;
/// `Err` only when writing to `out` fails.
pub fn dump_files(files: &[PathBuf], opts: &Options, out: &mut dyn Write) -> io::Result<bool> {
    let mut ok = true;
    for path in files {
        ok &= dump_file(path, opts, out)?;
    }
    Ok(ok)
}

/// The kinds of files this tool reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Log,
    Index,
    TimeIndex,
}

fn kind_of(path: &Path) -> Option<Kind> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("log") => Some(Kind::Log),
        Some("index") => Some(Kind::Index),
        Some("timeindex") => Some(Kind::TimeIndex),
        _ => None,
    }
}

/// The base offset in a segment file name (`00000000000000001234.index`):
/// the digits before the first dot, as Kafka reads it.
fn base_offset_of(path: &Path) -> Option<i64> {
    let name = path.file_name()?.to_str()?;
    let stem = name.split('.').next()?;
    if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Dump one file; `Ok(true)` if it was read and found sound.
pub fn dump_file(path: &Path, opts: &Options, out: &mut dyn Write) -> io::Result<bool> {
    let mut em = Emitter {
        out,
        json: opts.json,
        file: path.display().to_string(),
        problems: 0,
    };
    let Some(kind) = kind_of(path) else {
        em.problem(
            "unsupported",
            format!(
                "Unsupported file {}: ringlog dump-log reads segment .log, .index and .timeindex files",
                em.file
            ),
            vec![],
        )?;
        return Ok(false);
    };
    if !em.json {
        writeln!(em.out, "Dumping {}", em.file)?;
    }
    let file = match File::open(path).and_then(|f| f.metadata().map(|m| (f, m))) {
        Ok((f, m)) if m.is_file() => (f, m.len()),
        Ok(_) => {
            em.problem("error", format!("{} is not a regular file", em.file), vec![])?;
            return Ok(false);
        }
        Err(e) => {
            em.problem("error", format!("Cannot open {}: {e}", em.file), vec![])?;
            return Ok(false);
        }
    };
    let result = match kind {
        Kind::Log => dump_log(&mut em, path, &file.0, file.1, opts),
        Kind::Index => dump_offset_index(&mut em, path, &file.0, file.1, opts),
        Kind::TimeIndex => dump_time_index(&mut em, path, &file.0, file.1, opts),
    };
    match result {
        Ok(()) => {}
        Err(DumpError::Output(e)) => return Err(e),
        Err(DumpError::Input(e)) => em.problem("error", format!("Error reading {}: {e}", em.file), vec![])?,
    }
    Ok(em.problems == 0)
}

/// Reading the input failed (reported, then the next file is dumped) or
/// writing the output did (fatal).
enum DumpError {
    Input(io::Error),
    Output(io::Error),
}

type DumpResult<T> = Result<T, DumpError>;

trait InputResult<T> {
    fn input(self) -> DumpResult<T>;
}

impl<T> InputResult<T> for io::Result<T> {
    fn input(self) -> DumpResult<T> {
        self.map_err(DumpError::Input)
    }
}

/// Writes go through `Emitter`, whose errors are output errors.
fn output<T>(r: io::Result<T>) -> DumpResult<T> {
    r.map_err(DumpError::Output)
}

// --- output ------------------------------------------------------------------------------

/// A field value.
enum V {
    I(i64),
    U(u64),
    B(bool),
    S(String),
    /// A list of strings (header keys).
    List(Vec<String>),
    /// Header key/value pairs.
    Headers(Vec<(String, Option<String>)>),
    Null,
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

impl V {
    fn text(&self) -> String {
        match self {
            V::I(v) => v.to_string(),
            V::U(v) => v.to_string(),
            V::B(v) => v.to_string(),
            V::S(s) => s.clone(),
            V::List(l) => format!("[{}]", l.join(",")),
            V::Headers(h) => {
                let items: Vec<String> = h
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("null")))
                    .collect();
                format!("[{}]", items.join(","))
            }
            V::Null => "null".to_string(),
        }
    }

    fn json(&self) -> String {
        match self {
            V::I(v) => v.to_string(),
            V::U(v) => v.to_string(),
            V::B(v) => v.to_string(),
            V::S(s) => json_str(s),
            V::List(l) => format!("[{}]", l.iter().map(|s| json_str(s)).collect::<Vec<_>>().join(",")),
            V::Headers(h) => {
                let items: Vec<String> = h
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "{{\"key\":{},\"value\":{}}}",
                            json_str(k),
                            v.as_deref().map_or_else(|| "null".to_string(), json_str)
                        )
                    })
                    .collect();
                format!("[{}]", items.join(","))
            }
            V::Null => "null".to_string(),
        }
    }
}

type Fields = Vec<(&'static str, V)>;

struct Emitter<'a> {
    out: &'a mut dyn Write,
    json: bool,
    file: String,
    problems: u64,
}

impl Emitter<'_> {
    /// A data line: `prefix k: v k: v ...` as text, or a JSON object with
    /// `kind` and `file` first.
    fn line(&mut self, kind: &str, prefix: &str, fields: &Fields) -> io::Result<()> {
        if self.json {
            let mut s = format!("{{\"kind\":{},\"file\":{}", json_str(kind), json_str(&self.file));
            for (k, v) in fields {
                s.push_str(&format!(",{}:{}", json_str(k), v.json()));
            }
            s.push('}');
            writeln!(self.out, "{s}")
        } else {
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("{k}: {}", v.text())).collect();
            writeln!(self.out, "{prefix}{}", body.join(" "))
        }
    }

    /// A sentence as text; as JSON, an object with its fields and the sentence.
    fn message(&mut self, kind: &str, text: String, mut fields: Fields) -> io::Result<()> {
        if self.json {
            fields.push(("message", V::S(text)));
            self.line(kind, "", &fields)
        } else {
            writeln!(self.out, "{text}")
        }
    }

    /// A message about something wrong: the exit status becomes 1.
    fn problem(&mut self, kind: &str, text: String, fields: Fields) -> io::Result<()> {
        self.problems += 1;
        self.message(kind, text, fields)
    }

    /// A timestamp field: `CreateTime: T` as text; `timestampType` and
    /// `json_key` as JSON (stable keys for scripts).
    fn timestamp(&self, fields: &mut Fields, ty: TimestampType, ts: i64, json_key: &'static str) {
        let name = match ty {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        };
        if self.json {
            fields.push(("timestampType", V::S(name.to_string())));
            fields.push((json_key, V::I(ts)));
        } else {
            fields.push((name, V::I(ts)));
        }
    }
}

/// Bytes as text: UTF-8 (invalid sequences replaced, control characters
/// escaped so that a record stays on one line) or lowercase hex.
fn render_bytes(b: &[u8], hex: bool, json: bool) -> String {
    if hex {
        let mut s = String::with_capacity(b.len() * 2);
        for byte in b {
            s.push_str(&format!("{byte:02x}"));
        }
        return s;
    }
    let s = String::from_utf8_lossy(b);
    if json {
        return s.into_owned();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

// --- log files ---------------------------------------------------------------------------

/// Why the bytes at some position cannot be a batch: the rest of the file
/// is reported as garbage.
fn frame_problem(h: &BatchHeader, remaining: u64) -> Option<String> {
    if h.magic != MAGIC_V2 {
        return Some(format!("magic {} (only v2 batches are read)", h.magic));
    }
    if h.batch_length < MIN_BATCH_LENGTH {
        return Some(format!(
            "batch length {} below the minimum {MIN_BATCH_LENGTH}",
            h.batch_length
        ));
    }
    let total = h.total_size() as u64;
    if total > remaining {
        return Some(format!(
            "a batch of {total} bytes is declared, only {remaining} bytes are left in the file"
        ));
    }
    None
}

/// Read the batch header at `pos` of a file of `len` bytes: `Ok(Err(reason))`
/// when no complete v2 batch starts there.
fn read_header(file: &File, pos: u64, len: u64) -> io::Result<Result<BatchHeader, String>> {
    let remaining = len.saturating_sub(pos);
    if remaining < BATCH_HEADER_LEN as u64 {
        return Ok(Err(format!(
            "{remaining} bytes are too few for a batch header ({BATCH_HEADER_LEN})"
        )));
    }
    let mut buf = [0u8; BATCH_HEADER_LEN];
    file.read_exact_at(&mut buf, pos)?;
    let Some(h) = BatchHeader::parse(&buf) else {
        return Ok(Err("unreadable batch header".to_string()));
    };
    Ok(match frame_problem(&h, remaining) {
        Some(reason) => Err(reason),
        None => Ok(h),
    })
}

/// CRC-32C of `[from, to)` of `file`, read in chunks.
fn crc_of_range(file: &File, from: u64, to: u64) -> io::Result<u32> {
    let mut crc = 0u32;
    let mut buf = vec![0u8; CHUNK];
    let mut pos = from;
    while pos < to {
        let n = (to - pos).min(CHUNK as u64) as usize;
        let chunk = &mut buf[..n];
        file.read_exact_at(chunk, pos)?;
        crc = crc32c::crc32c_append(crc, chunk);
        pos += n as u64;
    }
    Ok(crc)
}

/// Whether `[from, to)` of `file` holds only zero bytes.
fn all_zero(file: &File, from: u64, to: u64) -> io::Result<bool> {
    let mut buf = vec![0u8; CHUNK];
    let mut pos = from;
    while pos < to {
        let n = (to - pos).min(CHUNK as u64) as usize;
        let chunk = &mut buf[..n];
        file.read_exact_at(chunk, pos)?;
        if chunk.iter().any(|&b| b != 0) {
            return Ok(false);
        }
        pos += n as u64;
    }
    Ok(true)
}

/// Kafka's sequence arithmetic: `base + delta`, wrapping past `i32::MAX` to 0.
fn add_sequence(base: i32, delta: i32) -> i32 {
    if base == NO_SEQUENCE {
        return NO_SEQUENCE;
    }
    let delta = delta.max(0);
    if base > i32::MAX - delta {
        delta - (i32::MAX - base) - 1
    } else {
        base + delta
    }
}

fn dump_log(em: &mut Emitter<'_>, path: &Path, file: &File, len: u64, opts: &Options) -> DumpResult<()> {
    if !em.json {
        if let Some(base) = base_offset_of(path) {
            output(writeln!(em.out, "Log starting offset: {base}"))?;
        }
    }
    let mut pos = 0u64;
    while pos < len {
        let h = match read_header(file, pos, len).input()? {
            Ok(h) => h,
            Err(reason) => {
                report_tail(em, file, pos, len, &reason)?;
                break;
            }
        };
        let total = h.total_size() as u64;
        let end = pos + total;
        // The whole batch, when its records are wanted.
        let mut batch = None;
        if opts.deep && total <= MAX_DECODED_BATCH {
            let mut buf = vec![0u8; total as usize];
            file.read_exact_at(&mut buf, pos).input()?;
            batch = Some(buf);
        }
        let crc = match &batch {
            Some(b) => crc32c::crc32c(b.get(ATTRIBUTES_OFFSET..).unwrap_or(&[])),
            None => crc_of_range(file, pos + ATTRIBUTES_OFFSET as u64, end).input()?,
        };
        let valid = crc == h.crc;
        output(print_batch(em, &h, pos, valid))?;
        if !valid {
            em.problems += 1;
        }
        if opts.deep {
            output(print_records(em, &h, batch.as_deref_mut(), valid, total, opts))?;
        }
        pos = end;
    }
    Ok(())
}

fn codec_name(h: &BatchHeader) -> String {
    match h.compression() {
        Some(c) => c.name().to_string(),
        None => format!("unknown({})", h.attributes & ATTR_COMPRESSION_MASK),
    }
}

fn print_batch(em: &mut Emitter<'_>, h: &BatchHeader, pos: u64, valid: bool) -> io::Result<()> {
    let mut f: Fields = vec![
        ("baseOffset", V::I(h.base_offset)),
        ("lastOffset", V::I(h.last_offset())),
        ("count", V::I(i64::from(h.record_count))),
        ("baseSequence", V::I(i64::from(h.base_sequence))),
        (
            "lastSequence",
            V::I(i64::from(add_sequence(h.base_sequence, h.last_offset_delta))),
        ),
        ("producerId", V::I(h.producer_id)),
        ("producerEpoch", V::I(i64::from(h.producer_epoch))),
        ("partitionLeaderEpoch", V::I(i64::from(h.partition_leader_epoch))),
        ("isTransactional", V::B(h.is_transactional())),
        ("isControl", V::B(h.is_control())),
        ("position", V::U(pos)),
    ];
    em.timestamp(&mut f, h.timestamp_type(), h.max_timestamp, "maxTimestamp");
    f.extend([
        ("size", V::U(h.total_size() as u64)),
        ("magic", V::I(i64::from(h.magic))),
        ("compresscodec", V::S(codec_name(h))),
        ("crc", V::U(u64::from(h.crc))),
        ("isvalid", V::B(valid)),
    ]);
    em.line("batch", "", &f)
}

/// The records of one batch (`batch`: its bytes, `None` when too large to
/// decode here). A batch with a bad CRC is decoded all the same (from a copy
/// with its CRC patched), saying that the data is unverified.
fn print_records(
    em: &mut Emitter<'_>,
    h: &BatchHeader,
    batch: Option<&mut [u8]>,
    valid: bool,
    total: u64,
    opts: &Options,
) -> io::Result<()> {
    let Some(batch) = batch else {
        return em.message(
            "note",
            format!("| records not decoded: the batch of {total} bytes is larger than {MAX_DECODED_BATCH} bytes"),
            vec![("baseOffset", V::I(h.base_offset))],
        );
    };
    if !valid {
        update_crc(batch);
        em.message(
            "note",
            "| CRC mismatch: the records below are decoded from unverified data".to_string(),
            vec![("baseOffset", V::I(h.base_offset))],
        )?;
    }
    let records = match decode_records(batch) {
        Ok(r) => r,
        Err(e) => {
            let codec = h.compression().unwrap_or(Compression::None);
            let what = if codec == Compression::None {
                "decoding"
            } else {
                "decompressing or decoding"
            };
            return em.problem(
                "error",
                format!(
                    "| error {what} the records of the batch at offset {}: {e}",
                    h.base_offset
                ),
                vec![("baseOffset", V::I(h.base_offset)), ("error", V::S(e.to_string()))],
            );
        }
    };
    for r in &records {
        print_record(em, h, r, opts)?;
    }
    Ok(())
}

/// Kafka's control record types (the key: version i16, type i16).
fn control_type_name(t: i16) -> String {
    match t {
        0 => "ABORT".to_string(),
        1 => "COMMIT".to_string(),
        2 => "LEADER_CHANGE".to_string(),
        3 => "SNAPSHOT_HEADER".to_string(),
        4 => "SNAPSHOT_FOOTER".to_string(),
        5 => "KRAFT_VERSION".to_string(),
        6 => "KRAFT_VOTERS".to_string(),
        t => format!("UNKNOWN({t})"),
    }
}

fn be_i16(b: &[u8], at: usize) -> Option<i16> {
    Some(i16::from_be_bytes(*b.get(at..)?.first_chunk::<2>()?))
}

fn be_i32(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(*b.get(at..)?.first_chunk::<4>()?))
}

fn print_record(em: &mut Emitter<'_>, h: &BatchHeader, r: &OwnedRecord, opts: &Options) -> io::Result<()> {
    let size = |b: &Option<bytes::Bytes>| b.as_ref().map_or(-1, |b| b.len() as i64);
    let timestamp = match h.timestamp_type() {
        TimestampType::LogAppendTime => h.max_timestamp,
        TimestampType::CreateTime => h.base_timestamp.saturating_add(r.timestamp_delta),
    };
    let mut f: Fields = vec![("offset", V::I(h.base_offset.saturating_add(i64::from(r.offset_delta))))];
    em.timestamp(&mut f, h.timestamp_type(), timestamp, "timestamp");
    f.extend([
        ("keySize", V::I(size(&r.key))),
        ("valueSize", V::I(size(&r.value))),
        (
            "sequence",
            V::I(i64::from(add_sequence(h.base_sequence, r.offset_delta))),
        ),
    ]);
    if opts.print_data {
        let headers = r
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.as_ref().map(|v| render_bytes(v, opts.hex, em.json))))
            .collect();
        f.push(("headers", V::Headers(headers)));
    } else {
        f.push((
            "headerKeys",
            V::List(r.headers.iter().map(|(k, _)| k.clone()).collect()),
        ));
    }
    if h.is_control() {
        let key = r.key.as_deref().unwrap_or(&[]);
        match be_i16(key, 2) {
            Some(t @ (0 | 1)) => {
                f.push(("endTxnMarker", V::S(control_type_name(t))));
                let epoch = r.value.as_deref().and_then(|v| be_i32(v, 2));
                f.push(("coordinatorEpoch", epoch.map_or(V::Null, |e| V::I(i64::from(e)))));
            }
            Some(t) => f.push(("controlType", V::S(control_type_name(t)))),
            None => f.push(("controlType", V::Null)),
        }
    } else if opts.print_data {
        let data = |b: &Option<bytes::Bytes>| match b {
            Some(b) => V::S(render_bytes(b, opts.hex, em.json)),
            None => V::Null,
        };
        f.push(("key", data(&r.key)));
        f.push(("payload", data(&r.value)));
    }
    em.line("record", "| ", &f)
}

/// Report the rest of a log file from `pos`, where no batch starts: zero
/// bytes are the unwritten tail of an active segment (ringlog writes whole
/// blocks), anything else is garbage (a torn write or corruption).
fn report_tail(em: &mut Emitter<'_>, file: &File, pos: u64, len: u64, reason: &str) -> DumpResult<()> {
    let n = len - pos;
    let fields = vec![
        ("position", V::U(pos)),
        ("bytes", V::U(n)),
        ("reason", V::S(reason.to_string())),
    ];
    if all_zero(file, pos, len).input()? {
        output(em.message(
            "zero_tail",
            format!("Found {n} zero bytes at position {pos} (unwritten or preallocated space), the end of the log"),
            fields,
        ))
    } else {
        output(em.problem(
            "garbage",
            format!("Found {n} bytes of garbage at position {pos} in {} ({reason})", em.file),
            fields,
        ))
    }
}

// --- index files -------------------------------------------------------------------------

/// One batch seen by [`LogWalker`].
#[derive(Clone, Copy, Debug)]
struct WalkedBatch {
    pos: u64,
    end: u64,
    base: i64,
    last: i64,
    max_timestamp: i64,
    /// Largest max timestamp of the batches before this one (-1 if none).
    max_before: i64,
}

/// Walks the batch headers of a log file in order (headers only, each
/// batch's body skipped), for the index checks.
struct LogWalker {
    file: File,
    len: u64,
    pos: u64,
    max_so_far: i64,
    /// The last batch returned.
    cur: Option<WalkedBatch>,
    /// The batch before it.
    prev: Option<WalkedBatch>,
    /// Where and why the walk stopped before the end of the file.
    stopped: Option<(u64, String)>,
    done: bool,
}

impl LogWalker {
    fn new(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(LogWalker {
            file,
            len,
            pos: 0,
            max_so_far: -1,
            cur: None,
            prev: None,
            stopped: None,
            done: false,
        })
    }

    fn advance(&mut self) -> io::Result<Option<WalkedBatch>> {
        if self.cur.is_some() {
            self.prev = self.cur;
        }
        if self.done || self.pos >= self.len {
            self.done = true;
            self.cur = None;
            return Ok(None);
        }
        match read_header(&self.file, self.pos, self.len)? {
            Ok(h) => {
                let b = WalkedBatch {
                    pos: self.pos,
                    end: self.pos + h.total_size() as u64,
                    base: h.base_offset,
                    last: h.last_offset(),
                    max_timestamp: h.max_timestamp,
                    max_before: self.max_so_far,
                };
                self.max_so_far = self.max_so_far.max(h.max_timestamp);
                self.pos += h.total_size() as u64;
                self.cur = Some(b);
                Ok(Some(b))
            }
            Err(reason) => {
                self.stopped = Some((self.pos, reason));
                self.done = true;
                self.cur = None;
                Ok(None)
            }
        }
    }

    /// The first batch at or after `pos` (from the current one on).
    /// `self.prev` is then the batch before it, if any.
    fn seek_position(&mut self, pos: u64) -> io::Result<Option<WalkedBatch>> {
        loop {
            match self.cur {
                Some(b) if b.pos >= pos => return Ok(Some(b)),
                None if self.done => return Ok(None),
                _ => {
                    self.advance()?;
                }
            }
        }
    }

    /// The first batch whose last offset is at least `offset` (from the
    /// current one on).
    fn seek_offset(&mut self, offset: i64) -> io::Result<Option<WalkedBatch>> {
        loop {
            match self.cur {
                Some(b) if b.last >= offset => return Ok(Some(b)),
                None if self.done => return Ok(None),
                _ => {
                    self.advance()?;
                }
            }
        }
    }

    fn describe_end(&self) -> String {
        match &self.stopped {
            Some((pos, reason)) => format!("the log's batches end at position {pos} ({reason})"),
            None => format!("the log ends at position {}", self.len),
        }
    }
}

/// The `.log` next to an index file, opened for the consistency checks;
/// `None` (with a note) when there is none.
fn sibling_log(em: &mut Emitter<'_>, path: &Path) -> DumpResult<Option<LogWalker>> {
    let log = path.with_extension("log");
    match File::open(&log) {
        Ok(f) => Ok(Some(LogWalker::new(f).input()?)),
        Err(e) => {
            output(em.message(
                "note",
                format!("Not checked against the log: cannot open {}: {e}", log.display()),
                vec![("log", V::S(log.display().to_string()))],
            ))?;
            Ok(None)
        }
    }
}

/// Reads fixed-size entries of an index file in chunks.
struct EntryReader<'f> {
    file: &'f File,
    entries: u64,
    entry_len: usize,
    next: u64,
    buf: Vec<u8>,
    buf_first: u64,
    buf_count: u64,
}

impl<'f> EntryReader<'f> {
    fn new(file: &'f File, len: u64, entry_len: usize) -> Self {
        EntryReader {
            file,
            entries: len / entry_len as u64,
            entry_len,
            next: 0,
            buf: Vec::new(),
            buf_first: 0,
            buf_count: 0,
        }
    }

    fn next_entry(&mut self) -> io::Result<Option<&[u8]>> {
        if self.next >= self.entries {
            return Ok(None);
        }
        if self.next >= self.buf_first + self.buf_count {
            let per_chunk = (CHUNK / self.entry_len) as u64;
            let count = (self.entries - self.next).min(per_chunk);
            self.buf.resize(count as usize * self.entry_len, 0);
            self.file
                .read_exact_at(&mut self.buf, self.next * self.entry_len as u64)?;
            self.buf_first = self.next;
            self.buf_count = count;
        }
        let at = (self.next - self.buf_first) as usize * self.entry_len;
        self.next += 1;
        Ok(self.buf.get(at..at + self.entry_len))
    }
}

fn index_base(em: &mut Emitter<'_>, path: &Path) -> DumpResult<Option<i64>> {
    match base_offset_of(path) {
        Some(b) => Ok(Some(b)),
        None => {
            output(em.problem(
                "error",
                format!(
                    "Cannot read the base offset from the name of {} (expected like 00000000000000000000.index)",
                    em.file
                ),
                vec![],
            ))?;
            Ok(None)
        }
    }
}

fn torn_entry(em: &mut Emitter<'_>, len: u64, entry_len: usize) -> DumpResult<()> {
    let rest = len % entry_len as u64;
    if rest != 0 {
        output(em.problem(
            "mismatch",
            format!(
                "The file ends with {rest} bytes, less than an entry ({entry_len} bytes): a torn entry at position {}",
                len - rest
            ),
            vec![("position", V::U(len - rest)), ("bytes", V::U(rest))],
        ))?;
    }
    Ok(())
}

fn mismatch(em: &mut Emitter<'_>, entry: u64, text: String) -> DumpResult<()> {
    output(em.problem("mismatch", text, vec![("entry", V::U(entry))]))
}

fn dump_offset_index(em: &mut Emitter<'_>, path: &Path, file: &File, len: u64, opts: &Options) -> DumpResult<()> {
    const ENTRY: usize = 8;
    let Some(base) = index_base(em, path)? else {
        return Ok(());
    };
    let mut log = sibling_log(em, path)?;
    let mut reader = EntryReader::new(file, len, ENTRY);
    let mut prev: Option<(u32, u32)> = None;
    let mut i = 0u64;
    while let Some(e) = reader.next_entry().input()? {
        let rel = be_i32(e, 0).unwrap_or(0) as u32;
        let position = be_i32(e, 4).unwrap_or(0) as u32;
        if i > 0 && rel == 0 && position == 0 {
            break; // preallocated space: the end of the index (as Kafka reads it)
        }
        let offset = base.saturating_add(i64::from(rel));
        if !opts.verify_index_only {
            output(em.line(
                "index",
                "",
                &vec![("offset", V::I(offset)), ("position", V::U(u64::from(position)))],
            ))?;
        }
        let mut in_order = true;
        if let Some((p_rel, p_pos)) = prev {
            if rel <= p_rel {
                in_order = false;
                mismatch(
                    em,
                    i,
                    format!(
                        "Index entry {i}: offset {offset} does not follow the previous entry's {}",
                        base.saturating_add(i64::from(p_rel))
                    ),
                )?;
            }
            if position <= p_pos {
                in_order = false;
                mismatch(
                    em,
                    i,
                    format!("Index entry {i}: position {position} does not follow the previous entry's {p_pos}"),
                )?;
            }
        }
        // Out-of-order entries are reported above; the log is walked forward only.
        if let (Some(walker), true) = (log.as_mut(), in_order) {
            let position = u64::from(position);
            let found = walker.seek_position(position).input()?;
            let inside = walker.prev.filter(|b| b.pos < position && position < b.end);
            let problem = match (found, inside) {
                (Some(b), _) if b.pos == position => (offset < b.base || offset > b.last).then(|| {
                    format!(
                        "Index entry {i}: offset {offset} is not in the batch at position {position} (offsets {}..={})",
                        b.base, b.last
                    )
                }),
                (_, Some(b)) => Some(format!(
                    "Index entry {i} (offset {offset}): position {position} is not a batch boundary (it is inside the batch at {}, offsets {}..={})",
                    b.pos, b.base, b.last
                )),
                (Some(b), None) => Some(format!(
                    "Index entry {i} (offset {offset}): position {position} is not a batch boundary (the next batch starts at {})",
                    b.pos
                )),
                (None, None) => Some(format!(
                    "Index entry {i} (offset {offset}, position {position}): no batch there, {}",
                    walker.describe_end()
                )),
            };
            if let Some(text) = problem {
                mismatch(em, i, text)?;
            }
        }
        prev = Some((rel, position));
        i += 1;
    }
    torn_entry(em, len, ENTRY)?;
    if opts.verify_index_only && em.problems == 0 {
        output(em.message(
            "verified",
            format!("{}: {i} entries, consistent with the log", em.file),
            vec![("entries", V::U(i))],
        ))?;
    }
    Ok(())
}

fn dump_time_index(em: &mut Emitter<'_>, path: &Path, file: &File, len: u64, opts: &Options) -> DumpResult<()> {
    const ENTRY: usize = 12;
    let Some(base) = index_base(em, path)? else {
        return Ok(());
    };
    let mut log = sibling_log(em, path)?;
    let mut reader = EntryReader::new(file, len, ENTRY);
    let mut prev: Option<(i64, u32)> = None;
    let mut i = 0u64;
    while let Some(e) = reader.next_entry().input()? {
        let timestamp = e.first_chunk::<8>().map_or(0, |b| i64::from_be_bytes(*b));
        let rel = be_i32(e, 8).unwrap_or(0) as u32;
        if i > 0 && timestamp == 0 && rel == 0 {
            break; // preallocated space
        }
        let offset = base.saturating_add(i64::from(rel));
        if !opts.verify_index_only {
            output(em.line(
                "timeindex",
                "",
                &vec![("timestamp", V::I(timestamp)), ("offset", V::I(offset))],
            ))?;
        }
        let mut in_order = true;
        if let Some((p_ts, p_rel)) = prev {
            if timestamp < p_ts {
                mismatch(
                    em,
                    i,
                    format!("Time index entry {i}: timestamp {timestamp} is below the previous entry's {p_ts}"),
                )?;
            }
            if rel < p_rel {
                in_order = false;
                mismatch(
                    em,
                    i,
                    format!(
                        "Time index entry {i}: offset {offset} is below the previous entry's {}",
                        base.saturating_add(i64::from(p_rel))
                    ),
                )?;
            }
        }
        if let (Some(walker), true) = (log.as_mut(), in_order) {
            match walker.seek_offset(offset).input()? {
                Some(b) if b.base <= offset => {
                    // The entry says: the largest timestamp up to about this
                    // offset is `timestamp`. Kafka indexes a batch's last
                    // offset with the max timestamp through it; ringlog the
                    // next batch's base offset with the max before it.
                    let through = b.max_before.max(b.max_timestamp);
                    if timestamp > through {
                        mismatch(
                            em,
                            i,
                            format!(
                                "Time index entry {i}: timestamp {timestamp} at offset {offset} is above every batch max timestamp up to that offset's batch ({through})"
                            ),
                        )?;
                    } else if timestamp < b.max_before {
                        mismatch(
                            em,
                            i,
                            format!(
                                "Time index entry {i}: timestamp {timestamp} at offset {offset} is below the max timestamp {} of the batches before it",
                                b.max_before
                            ),
                        )?;
                    }
                }
                Some(b) => mismatch(
                    em,
                    i,
                    format!(
                        "Time index entry {i}: offset {offset} is not in the log (the next batch starts at offset {})",
                        b.base
                    ),
                )?,
                None => mismatch(
                    em,
                    i,
                    format!(
                        "Time index entry {i}: offset {offset} is not in the log ({})",
                        walker.describe_end()
                    ),
                )?,
            }
        }
        prev = Some((timestamp, rel));
        i += 1;
    }
    torn_entry(em, len, ENTRY)?;
    if opts.verify_index_only && em.problems == 0 {
        output(em.message(
            "verified",
            format!("{}: {i} entries, consistent with the log", em.file),
            vec![("entries", V::U(i))],
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{build_batch, build_batch_with, BatchOptions, Record};

    const HEADERS: &[(&str, Option<&[u8]>)] = &[("h", Some(b"v"))];

    /// A segment of five batches at base offset 0: uncompressed (offsets
    /// 0..=2, max timestamp 1005), gzip (3..=4, 2001), transactional zstd
    /// (5..=6, 1500), a COMMIT marker (7, 3000) and LogAppendTime lz4 (8, 4000).
    /// Returns the bytes and the position of each batch.
    fn segment() -> (Vec<u8>, Vec<u64>) {
        let r = |key: Option<&'static [u8]>, value: Option<&'static [u8]>, delta| Record {
            key,
            value,
            headers: &[],
            timestamp_delta: delta,
        };
        let txn = BatchOptions {
            producer_id: 7,
            producer_epoch: 1,
            base_sequence: 10,
            is_transactional: true,
            ..BatchOptions::default()
        };
        let batches = [
            build_batch(
                0,
                1000,
                Compression::None,
                &[
                    Record {
                        key: Some(b"k0"),
                        value: Some(b"hello"),
                        headers: HEADERS,
                        timestamp_delta: 0,
                    },
                    r(None, Some(b"world"), 5),
                    r(Some(b"k2"), None, 2),
                ],
            ),
            build_batch(
                3,
                2000,
                Compression::Gzip,
                &[r(None, Some(b"gz-a"), 0), r(None, Some(b"gz-b"), 1)],
            ),
            build_batch_with(
                5,
                1500,
                Compression::Zstd,
                &txn,
                &[r(None, Some(b"tx-a"), 0), r(None, Some(b"tx-b"), 0)],
            ),
            build_batch_with(
                7,
                3000,
                Compression::None,
                &BatchOptions {
                    is_control: true,
                    base_sequence: -1,
                    ..txn
                },
                // COMMIT (version 0, type 1); coordinator epoch 5.
                &[r(Some(&[0, 0, 0, 1]), Some(&[0, 0, 0, 0, 0, 5]), 0)],
            ),
            build_batch_with(
                8,
                4000,
                Compression::Lz4,
                &BatchOptions {
                    timestamp_type: TimestampType::LogAppendTime,
                    ..BatchOptions::default()
                },
                &[r(Some(b"k8"), Some(b"lz"), 0)],
            ),
        ];
        let mut data = Vec::new();
        let mut positions = Vec::new();
        for b in batches {
            positions.push(data.len() as u64);
            data.extend_from_slice(&b);
        }
        (data, positions)
    }

    struct Dir {
        dir: tempfile::TempDir,
    }

    impl Dir {
        fn new() -> Self {
            Dir {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn write(&self, name: &str, data: &[u8]) -> PathBuf {
            let p = self.dir.path().join(name);
            std::fs::write(&p, data).unwrap();
            p
        }
    }

    const LOG: &str = "00000000000000000000.log";

    fn run(path: &Path, opts: Options) -> (bool, String) {
        let mut out = Vec::new();
        let ok = dump_file(path, &opts, &mut out).unwrap();
        (ok, String::from_utf8(out).unwrap())
    }

    fn deep() -> Options {
        Options {
            deep: true,
            print_data: true,
            ..Options::default()
        }
    }

    fn json(opts: Options) -> Options {
        Options { json: true, ..opts }
    }

    fn lines_of_kind(out: &str, kind: &str) -> Vec<serde_json::Value> {
        out.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .filter(|v| v["kind"] == kind)
            .collect()
    }

    fn offset_index(entries: &[(u32, u64)]) -> Vec<u8> {
        let mut v = Vec::new();
        for &(rel, pos) in entries {
            v.extend_from_slice(&rel.to_be_bytes());
            v.extend_from_slice(&(pos as u32).to_be_bytes());
        }
        v
    }

    fn time_index(entries: &[(i64, u32)]) -> Vec<u8> {
        let mut v = Vec::new();
        for &(ts, rel) in entries {
            v.extend_from_slice(&ts.to_be_bytes());
            v.extend_from_slice(&rel.to_be_bytes());
        }
        v
    }

    #[test]
    fn text_dump_of_a_segment() {
        let (data, pos) = segment();
        let d = Dir::new();
        let (ok, out) = run(&d.write(LOG, &data), Options::default());
        assert!(ok, "{out}");
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("Dumping ") && lines[0].ends_with(LOG));
        assert_eq!(lines[1], "Log starting offset: 0");
        assert_eq!(lines.len(), 7, "{out}");
        let h = BatchHeader::parse(&data).unwrap();
        assert_eq!(
            lines[2],
            format!(
                "baseOffset: 0 lastOffset: 2 count: 3 baseSequence: -1 lastSequence: -1 producerId: -1 \
                 producerEpoch: -1 partitionLeaderEpoch: -1 isTransactional: false isControl: false position: 0 \
                 CreateTime: 1005 size: {} magic: 2 compresscodec: none crc: {} isvalid: true",
                pos[1], h.crc
            )
        );
        assert!(
            lines[3].contains("baseOffset: 3 lastOffset: 4 count: 2"),
            "{}",
            lines[3]
        );
        assert!(lines[3].contains(&format!("position: {} CreateTime: 2001", pos[1])));
        assert!(lines[3].contains("compresscodec: gzip"));
        assert!(lines[4].contains(
            "baseSequence: 10 lastSequence: 11 producerId: 7 producerEpoch: 1 partitionLeaderEpoch: -1 \
             isTransactional: true isControl: false"
        ));
        assert!(lines[4].contains("compresscodec: zstd"));
        assert!(lines[5].contains("isTransactional: true isControl: true"));
        assert!(lines[6].contains("LogAppendTime: 4000"));
        assert!(lines[6].contains("compresscodec: lz4 "));
        assert!(lines[2..].iter().all(|l| l.ends_with("isvalid: true")));
        assert!(!out.contains("| offset"), "no records without --deep-iteration");
    }

    #[test]
    fn deep_text_dump_prints_records_and_control_markers() {
        let (data, _) = segment();
        let d = Dir::new();
        let path = d.write(LOG, &data);
        let (ok, out) = run(&path, deep());
        assert!(ok, "{out}");
        let records: Vec<&str> = out.lines().filter(|l| l.starts_with("| ")).collect();
        assert_eq!(records.len(), 9, "{out}");
        assert_eq!(
            records[0],
            "| offset: 0 CreateTime: 1000 keySize: 2 valueSize: 5 sequence: -1 headers: [h=v] key: k0 payload: hello"
        );
        assert_eq!(
            records[1],
            "| offset: 1 CreateTime: 1005 keySize: -1 valueSize: 5 sequence: -1 headers: [] key: null payload: world"
        );
        assert!(records[2].ends_with("key: k2 payload: null"));
        assert!(records[4].starts_with("| offset: 4 CreateTime: 2001 ") && records[4].ends_with("payload: gz-b"));
        assert!(records[6].contains("sequence: 11") && records[6].ends_with("payload: tx-b"));
        assert_eq!(
            records[7],
            "| offset: 7 CreateTime: 3000 keySize: 4 valueSize: 6 sequence: -1 headers: [] endTxnMarker: COMMIT \
             coordinatorEpoch: 5"
        );
        assert!(records[8].starts_with("| offset: 8 LogAppendTime: 4000 ") && records[8].ends_with("payload: lz"));

        // --deep-iteration alone: record metadata, no data.
        let (ok, out) = run(
            &path,
            Options {
                deep: true,
                ..Options::default()
            },
        );
        assert!(ok);
        assert!(out.contains("| offset: 0 CreateTime: 1000 keySize: 2 valueSize: 5 sequence: -1 headerKeys: [h]\n"));
        assert!(!out.contains("payload"));
        assert!(out.contains("endTxnMarker: COMMIT coordinatorEpoch: 5"));
    }

    #[test]
    fn json_dump_has_one_object_per_batch_and_record() {
        let (data, pos) = segment();
        let d = Dir::new();
        let path = d.write(LOG, &data);
        let (ok, out) = run(&path, json(Options::default()));
        assert!(ok, "{out}");
        let batches = lines_of_kind(&out, "batch");
        assert_eq!(batches.len(), 5);
        assert_eq!(out.lines().count(), 5, "only batches: {out}");
        let b = &batches[1];
        assert_eq!(b["file"], path.display().to_string());
        assert_eq!(b["baseOffset"], 3);
        assert_eq!(b["lastOffset"], 4);
        assert_eq!(b["position"], pos[1]);
        assert_eq!(b["timestampType"], "CreateTime");
        assert_eq!(b["maxTimestamp"], 2001);
        assert_eq!(b["compresscodec"], "gzip");
        assert_eq!(b["isvalid"], true);
        assert_eq!(batches[4]["timestampType"], "LogAppendTime");
        assert_eq!(batches[3]["isControl"], true);

        let (ok, out) = run(&path, json(deep()));
        assert!(ok);
        let records = lines_of_kind(&out, "record");
        assert_eq!(records.len(), 9);
        assert_eq!(records[0]["offset"], 0);
        assert_eq!(records[0]["timestamp"], 1000);
        assert_eq!(records[0]["key"], "k0");
        assert_eq!(records[0]["payload"], "hello");
        assert_eq!(records[0]["headers"][0]["key"], "h");
        assert_eq!(records[0]["headers"][0]["value"], "v");
        assert_eq!(records[1]["key"], serde_json::Value::Null);
        assert_eq!(records[7]["endTxnMarker"], "COMMIT");
        assert_eq!(records[7]["coordinatorEpoch"], 5);
    }

    #[test]
    fn hex_output() {
        let (data, _) = segment();
        let d = Dir::new();
        let (ok, out) = run(&d.write(LOG, &data), Options { hex: true, ..deep() });
        assert!(ok);
        assert!(out.contains("headers: [h=76] key: 6b30 payload: 68656c6c6f\n"), "{out}");
    }

    #[test]
    fn corrupt_batch_is_invalid_and_dumping_goes_on() {
        let (mut data, pos) = segment();
        // "hello" -> "jello" in the first batch: its CRC no longer matches.
        let at = data.windows(5).position(|w| w == b"hello").unwrap();
        data[at] = b'j';
        let d = Dir::new();
        let path = d.write(LOG, &data);
        let (ok, out) = run(&path, Options::default());
        assert!(!ok, "a bad CRC fails the dump");
        let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("baseOffset")).collect();
        assert_eq!(lines.len(), 5, "every batch is still dumped: {out}");
        assert!(lines[0].ends_with("isvalid: false"));
        assert!(lines[1..].iter().all(|l| l.ends_with("isvalid: true")));

        // Deep: the records are shown, flagged as unverified.
        let (ok, out) = run(&path, deep());
        assert!(!ok);
        assert!(out.contains("| CRC mismatch: the records below are decoded from unverified data\n"));
        assert!(out.contains("payload: jello"));
        assert!(out.contains("payload: lz"));

        // JSON says the same.
        let (ok, out) = run(&path, json(Options::default()));
        assert!(!ok);
        let batches = lines_of_kind(&out, "batch");
        assert_eq!(batches[0]["isvalid"], false);
        assert_eq!(batches[1]["position"], pos[1]);
    }

    #[test]
    fn decompression_error_is_reported_per_batch() {
        let (mut data, pos) = segment();
        // Damage the gzip stream of batch 1, keeping its CRC right.
        let (start, end) = (pos[1] as usize, pos[2] as usize);
        for b in &mut data[start + BATCH_HEADER_LEN + 10..end - 8] {
            *b ^= 0x5a;
        }
        assert!(update_crc(&mut data[start..end]));
        let d = Dir::new();
        let path = d.write(LOG, &data);
        let (ok, out) = run(&path, Options::default());
        assert!(ok, "the CRC is right, records are not decoded: {out}");
        let (ok, out) = run(&path, deep());
        assert!(!ok);
        assert!(
            out.contains("| error decompressing or decoding the records of the batch at offset 3: "),
            "{out}"
        );
        assert!(out.contains("payload: tx-a"), "later batches are dumped: {out}");
        let (_, out) = run(&path, json(deep()));
        let errors = lines_of_kind(&out, "error");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0]["baseOffset"], 3);
    }

    #[test]
    fn garbage_and_truncated_tails() {
        let (data, pos) = segment();
        let d = Dir::new();
        let mut garbage = data.clone();
        garbage.extend_from_slice(b"not a batch!!");
        let (ok, out) = run(&d.write(LOG, &garbage), Options::default());
        assert!(!ok);
        assert!(
            out.contains(&format!("Found 13 bytes of garbage at position {}", data.len())),
            "{out}"
        );
        assert_eq!(out.lines().filter(|l| l.starts_with("baseOffset")).count(), 5);

        // A torn last batch.
        let torn = &data[..data.len() - 3];
        let (ok, out) = run(&d.write(LOG, torn), json(Options::default()));
        assert!(!ok);
        let g = lines_of_kind(&out, "garbage");
        assert_eq!(g.len(), 1, "{out}");
        assert_eq!(g[0]["position"], pos[4]);
        assert_eq!(g[0]["bytes"], torn.len() as u64 - pos[4]);
        assert_eq!(lines_of_kind(&out, "batch").len(), 4);

        // Zeros after the last batch: the unwritten tail of an active segment.
        let mut zeros = data.clone();
        zeros.resize(data.len().div_ceil(4096) * 4096 + 4096, 0);
        let (ok, out) = run(&d.write(LOG, &zeros), Options::default());
        assert!(ok, "{out}");
        assert!(out.contains(&format!(
            "Found {} zero bytes at position {}",
            zeros.len() - data.len(),
            data.len()
        )));

        // An empty file.
        let (ok, out) = run(&d.write(LOG, &[]), Options::default());
        assert!(ok);
        assert_eq!(out.lines().count(), 2);
    }

    #[test]
    fn hostile_lengths_and_random_damage_do_not_panic() {
        let (data, _) = segment();
        let d = Dir::new();
        // A header claiming a 2 GiB batch in a small file.
        let mut huge = data[..BATCH_HEADER_LEN].to_vec();
        huge[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        huge.extend_from_slice(&[1; 100]);
        let (ok, out) = run(&d.write(LOG, &huge), deep());
        assert!(!ok);
        assert!(out.contains("Found 161 bytes of garbage at position 0"), "{out}");

        // Random byte damage, dumped deep in both formats.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..300 {
            let mut bad = data.clone();
            for _ in 0..1 + rand() % 4 {
                let i = (rand() % bad.len() as u64) as usize;
                bad[i] = rand() as u8;
            }
            if rand() % 4 == 0 {
                bad.truncate((rand() % bad.len() as u64) as usize);
            }
            let path = d.write(LOG, &bad);
            run(&path, deep());
            run(&path, json(deep()));
        }
    }

    #[test]
    fn offset_index_dump_and_check() {
        let (data, pos) = segment();
        let d = Dir::new();
        d.write(LOG, &data);
        // ringlog indexes batch base offsets, Kafka their last offsets; both
        // are consistent. A zero-filled preallocated tail ends the index.
        for entries in [[(3, pos[1]), (7, pos[3])], [(4, pos[1]), (7, pos[3])]] {
            let mut idx = offset_index(&entries);
            idx.extend_from_slice(&[0; 64]);
            let path = d.write("00000000000000000000.index", &idx);
            let (ok, out) = run(&path, Options::default());
            assert!(ok, "{out}");
            let lines: Vec<&str> = out.lines().skip(1).collect();
            assert_eq!(
                lines,
                [
                    format!("offset: {} position: {}", entries[0].0, pos[1]),
                    format!("offset: 7 position: {}", pos[3])
                ]
            );
            let (ok, out) = run(
                &path,
                Options {
                    verify_index_only: true,
                    ..Options::default()
                },
            );
            assert!(ok);
            assert!(!out.contains("offset: 7"));
            assert!(out.contains("2 entries, consistent with the log"));
        }

        // JSON, and offsets relative to the base offset in the file name.
        let d2 = Dir::new();
        let mut shifted = data.clone();
        for &p in &pos {
            let p = p as usize;
            let base = i64::from_be_bytes(shifted[p..p + 8].try_into().unwrap());
            shifted[p..p + 8].copy_from_slice(&(base + 100).to_be_bytes());
        }
        d2.write("00000000000000000100.log", &shifted);
        let path = d2.write("00000000000000000100.index", &offset_index(&[(3, pos[1])]));
        let (ok, out) = run(&path, json(Options::default()));
        assert!(ok, "{out}");
        let entries = lines_of_kind(&out, "index");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["offset"], 103);
        assert_eq!(entries[0]["position"], pos[1]);
    }

    #[test]
    fn inconsistent_offset_index_is_detected() {
        let (data, pos) = segment();
        let d = Dir::new();
        d.write(LOG, &data);
        let check = |entries: &[(u32, u64)], expect: &str| {
            let path = d.write("00000000000000000000.index", &offset_index(entries));
            let (ok, out) = run(&path, Options::default());
            assert!(!ok, "{expect}: {out}");
            assert!(out.contains(expect), "expected {expect:?} in:\n{out}");
        };
        check(&[(2, pos[1])], "offset 2 is not in the batch at position");
        check(
            &[(3, pos[1] + 1)],
            &format!(
                "is not a batch boundary (it is inside the batch at {}, offsets 3..=4)",
                pos[1]
            ),
        );
        check(&[(3, pos[1]), (5, pos[1])], "does not follow the previous entry's");
        check(
            &[(5, pos[2]), (3, pos[1])],
            "offset 3 does not follow the previous entry's 5",
        );
        check(&[(3, pos[1]), (9, data.len() as u64 + 100)], "no batch there");
        // A torn entry.
        let mut torn = offset_index(&[(3, pos[1])]);
        torn.extend_from_slice(&[0, 0, 1]);
        let path = d.write("00000000000000000000.index", &torn);
        let (ok, out) = run(&path, json(Options::default()));
        assert!(!ok);
        assert_eq!(lines_of_kind(&out, "mismatch").len(), 1, "{out}");
    }

    #[test]
    fn time_index_dump_and_check() {
        let (data, _) = segment();
        let d = Dir::new();
        d.write(LOG, &data);
        // ringlog: (max timestamp before a batch, its base offset); Kafka:
        // (max timestamp through a batch, its last offset).
        let ringlog = [(1005, 3), (2001, 5), (3000, 8)];
        let kafka = [(1005, 2), (2001, 4), (3000, 7), (4000, 8)];
        for entries in [&ringlog[..], &kafka[..]] {
            let mut idx = time_index(entries);
            idx.extend_from_slice(&[0; 36]);
            let path = d.write("00000000000000000000.timeindex", &idx);
            let (ok, out) = run(&path, Options::default());
            assert!(ok, "{out}");
            let lines: Vec<String> = out.lines().skip(1).map(str::to_string).collect();
            let expect: Vec<String> = entries
                .iter()
                .map(|(t, o)| format!("timestamp: {t} offset: {o}"))
                .collect();
            assert_eq!(lines, expect);
        }
        let path = d.write("00000000000000000000.timeindex", &time_index(&kafka));
        let (ok, out) = run(&path, json(Options::default()));
        assert!(ok);
        let entries = lines_of_kind(&out, "timeindex");
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[3]["timestamp"], 4000);
        assert_eq!(entries[3]["offset"], 8);
    }

    #[test]
    fn inconsistent_time_index_is_detected() {
        let (data, _) = segment();
        let d = Dir::new();
        d.write(LOG, &data);
        let check = |entries: &[(i64, u32)], expect: &str| {
            let path = d.write("00000000000000000000.timeindex", &time_index(entries));
            let (ok, out) = run(&path, Options::default());
            assert!(!ok, "{expect}: {out}");
            assert!(out.contains(expect), "expected {expect:?} in:\n{out}");
        };
        check(
            &[(5000, 3)],
            "timestamp 5000 at offset 3 is above every batch max timestamp",
        );
        check(
            &[(1005, 3), (900, 5)],
            "timestamp 900 is below the previous entry's 1005",
        );
        check(&[(900, 5)], "is below the max timestamp 2001 of the batches before it");
        check(&[(1005, 3), (9999, 50)], "offset 50 is not in the log");
        check(&[(1005, 5), (2001, 3)], "offset 3 is below the previous entry's 5");
    }

    #[test]
    fn index_without_its_log_is_dumped_unchecked() {
        let d = Dir::new();
        let path = d.write("00000000000000000000.index", &offset_index(&[(3, 100)]));
        let (ok, out) = run(&path, Options::default());
        assert!(ok, "{out}");
        assert!(out.contains("Not checked against the log"));
        assert!(out.contains("offset: 3 position: 100"));
    }

    #[test]
    fn unsupported_and_missing_files() {
        let d = Dir::new();
        for name in ["00000000000000000000.snapshot", "leader-epoch-checkpoint", "x.txt"] {
            let (ok, out) = run(&d.write(name, b"whatever"), Options::default());
            assert!(!ok);
            assert!(out.starts_with("Unsupported file "), "{out}");
        }
        let (ok, out) = run(&d.dir.path().join(LOG), Options::default());
        assert!(!ok);
        assert!(out.contains("Cannot open"), "{out}");
        let (ok, out) = run(&d.write("x.index", &[]), Options::default());
        assert!(!ok);
        assert!(out.contains("Cannot read the base offset"), "{out}");

        // Several files: one bad one fails the whole run, all are dumped.
        let (data, _) = segment();
        let files = [d.write(LOG, &data), d.write("a.snapshot", b"")];
        let mut out = Vec::new();
        assert!(!dump_files(&files, &Options::default(), &mut out).unwrap());
        assert!(dump_files(&files[..1], &Options::default(), &mut out).unwrap());
    }

    #[test]
    fn sequences_wrap_as_kafka() {
        assert_eq!(add_sequence(-1, 5), -1);
        assert_eq!(add_sequence(10, 5), 15);
        assert_eq!(add_sequence(i32::MAX, 0), i32::MAX);
        assert_eq!(add_sequence(i32::MAX, 1), 0);
        assert_eq!(add_sequence(i32::MAX - 1, 3), 1);
    }
}
