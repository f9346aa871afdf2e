//! Segment and index files through io_uring (or the simulated disk).
//!
//! Log segments are written either with O_DIRECT (the partial last block is
//! kept in memory by the caller and rewritten with the next append, so every
//! write is block aligned) or through the page cache. Reads use io_uring in
//! both modes.

use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use glommio::io::{BufferedFile, DmaFile, OpenOptions};

use super::guard::filtered;
use super::sim;
use super::sim::disk::LatencyKind;

/// Block size every O_DIRECT write is aligned to.
pub const ALIGN: u64 = 4096;

/// How segment files are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IoMode {
    /// O_DIRECT through DmaFile: no page cache, predictable latency.
    Direct,
    /// Buffered writes through the page cache.
    Buffered,
}

impl IoMode {
    pub fn as_str(self) -> &'static str {
        match self {
            IoMode::Direct => "direct",
            IoMode::Buffered => "buffered",
        }
    }
}

impl std::str::FromStr for IoMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "direct" => Ok(IoMode::Direct),
            "buffered" => Ok(IoMode::Buffered),
            other => Err(format!("unknown io mode {other:?} (direct or buffered)")),
        }
    }
}

/// Keep the OS error code (ENOSPC, EIO, …) when turning a glommio error into
/// an io::Error.
fn gerr(e: glommio::GlommioError<()>) -> io::Error {
    match e {
        glommio::GlommioError::IoError(e) => e,
        glommio::GlommioError::EnhancedIoError { source, op, path, .. } => {
            let msg = format!(
                "{op} {}",
                path.as_deref().map(|p| p.display().to_string()).unwrap_or_default()
            );
            match source.raw_os_error() {
                Some(code) => super::os_error(code, msg),
                None => io::Error::new(source.kind(), format!("{msg}: {source}")),
            }
        }
        other => io::Error::other(other.to_string()),
    }
}

/// The raw OS error code behind a glommio error, if any.
fn os_code(e: &glommio::GlommioError<()>) -> Option<i32> {
    match e {
        glommio::GlommioError::IoError(e) => e.raw_os_error(),
        glommio::GlommioError::EnhancedIoError { source, .. } => source.raw_os_error(),
        _ => None,
    }
}

struct SimFile {
    ino: u64,
    path: PathBuf,
    direct: bool,
}

#[derive(Clone)]
enum Kind {
    Direct(Rc<DmaFile>),
    Buffered(Rc<BufferedFile>),
    Sim(Rc<SimFile>),
}

/// An open segment file. Cheap to clone (shared handle on this shard).
#[derive(Clone)]
pub struct LogFile {
    kind: Kind,
}

thread_local! {
    /// Devices on which this executor has already opened an O_DIRECT file.
    static PROBED_DEVICES: std::cell::RefCell<crate::io::rand::HashSet<u64>> = Default::default();
}

/// glommio decides once per device and thread whether reads can use the
/// IOPOLL ring, by reading the start of the first O_DIRECT file opened
/// there. An empty file reads "successfully" and makes it pick IOPOLL on
/// devices that don't support it (every later read then fails with
/// EOPNOTSUPP). So before the first O_DIRECT open on a device, open a small
/// non-empty probe file in the same directory.
async fn ensure_device_probed(dir: &Path) -> io::Result<()> {
    let d = dir.to_path_buf();
    let dev = super::executor::blocking(move || {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&d).map(|m| m.dev())
    })
    .await?;
    if PROBED_DEVICES.with(|p| p.borrow().contains(&dev)) {
        return Ok(());
    }
    let probe = dir.join(format!(".io-probe-{:?}", std::thread::current().id()).replace(['(', ')'], ""));
    let p = probe.clone();
    super::executor::blocking(move || std::fs::write(&p, vec![0u8; 2 * ALIGN as usize])).await?;
    let opened = filtered(OpenOptions::new().read(true).dma_open(&probe)).await;
    let _ = super::fs::remove_file(&probe).await;
    match opened {
        Ok(f) => {
            let _ = filtered(f.close()).await;
        }
        Err(e) => return Err(gerr(e)),
    }
    PROBED_DEVICES.with(|p| p.borrow_mut().insert(dev));
    Ok(())
}

async fn sim_latency(kind: LatencyKind) {
    let w = sim::world();
    sim::sleep(w.disk.latency(kind)).await;
}

impl LogFile {
    /// Open (creating if missing) for reading and appending. O_DIRECT falls
    /// back to buffered IO where the filesystem refuses it (tmpfs); check
    /// [`LogFile::mode`] for what was opened.
    pub async fn open(path: &Path, mode: IoMode) -> io::Result<Self> {
        if sim::active() {
            sim_latency(LatencyKind::Meta).await;
            let w = sim::world();
            let now = w.now_ms();
            let direct = mode == IoMode::Direct;
            let ino = match w.disk.open(path, true, false, direct, now) {
                Ok(ino) => (ino, direct),
                Err(e) if direct && super::errno(&e) == Some(libc::EINVAL) => {
                    (w.disk.open(path, true, false, false, now)?, false)
                }
                Err(e) => return Err(e),
            };
            return Ok(Self {
                kind: Kind::Sim(Rc::new(SimFile {
                    ino: ino.0,
                    path: path.to_path_buf(),
                    direct: ino.1,
                })),
            });
        }
        if mode == IoMode::Direct {
            if let Some(dir) = path.parent() {
                // A failed probe (e.g. tmpfs refusing O_DIRECT) is dealt
                // with by the open below.
                let _ = ensure_device_probed(dir).await;
            }
        }
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true);
        let kind = match mode {
            IoMode::Direct => match filtered(opts.dma_open(path)).await {
                Ok(f) => Kind::Direct(Rc::new(f)),
                // Some filesystems (tmpfs) refuse O_DIRECT: fall back.
                Err(e) if os_code(&e) == Some(libc::EINVAL) => {
                    tracing::warn!(path = %path.display(), "O_DIRECT not supported here, using buffered IO");
                    Kind::Buffered(Rc::new(filtered(opts.buffered_open(path)).await.map_err(gerr)?))
                }
                Err(e) => return Err(gerr(e)),
            },
            IoMode::Buffered => Kind::Buffered(Rc::new(filtered(opts.buffered_open(path)).await.map_err(gerr)?)),
        };
        Ok(Self { kind })
    }

    pub fn mode(&self) -> IoMode {
        match &self.kind {
            Kind::Direct(_) => IoMode::Direct,
            Kind::Buffered(_) => IoMode::Buffered,
            Kind::Sim(f) if f.direct => IoMode::Direct,
            Kind::Sim(_) => IoMode::Buffered,
        }
    }

    /// Append `chunks` at logical position `end`. `tail` must hold the file's
    /// bytes between `end` rounded down to [`ALIGN`] and `end` (only used in
    /// direct mode, where that partial block is rewritten together with the
    /// new data). The file may grow past `end + len` with zero padding in
    /// direct mode; recovery and [`LogFile::truncate`] deal with that.
    pub async fn append(&self, end: u64, tail: &[u8], chunks: &[Bytes]) -> io::Result<()> {
        let data_len: usize = chunks.iter().map(|c| c.len()).sum();
        let direct = self.mode() == IoMode::Direct;
        if direct {
            let start = end - tail.len() as u64;
            if !start.is_multiple_of(ALIGN) {
                return Err(io::Error::other("unaligned tail for O_DIRECT append"));
            }
        }
        match &self.kind {
            Kind::Direct(f) => {
                let start = end - tail.len() as u64;
                let len = tail.len() + data_len;
                let padded = len.div_ceil(ALIGN as usize) * ALIGN as usize;
                let mut buf = f.alloc_dma_buffer(padded);
                let dst = buf.as_bytes_mut();
                dst[..tail.len()].copy_from_slice(tail);
                let mut at = tail.len();
                for c in chunks {
                    dst[at..at + c.len()].copy_from_slice(c);
                    at += c.len();
                }
                dst[at..].fill(0);
                let written = filtered(f.write_at(buf, start)).await.map_err(gerr)?;
                if written < len {
                    return Err(io::Error::new(io::ErrorKind::WriteZero, "short O_DIRECT write"));
                }
                Ok(())
            }
            Kind::Buffered(f) => {
                let mut buf = Vec::with_capacity(data_len);
                for c in chunks {
                    buf.extend_from_slice(c);
                }
                let written = filtered(f.write_at(buf, end)).await.map_err(gerr)?;
                if written < data_len {
                    return Err(io::Error::new(io::ErrorKind::WriteZero, "short buffered write"));
                }
                Ok(())
            }
            Kind::Sim(f) => {
                let (start, mut buf) = if f.direct {
                    let start = end - tail.len() as u64;
                    let len = tail.len() + data_len;
                    let padded = len.div_ceil(ALIGN as usize) * ALIGN as usize;
                    let mut buf = Vec::with_capacity(padded);
                    buf.extend_from_slice(tail);
                    (start, buf)
                } else {
                    (end, Vec::with_capacity(data_len))
                };
                for c in chunks {
                    buf.extend_from_slice(c);
                }
                if f.direct {
                    let padded = buf.len().div_ceil(ALIGN as usize) * ALIGN as usize;
                    buf.resize(padded, 0);
                }
                sim_latency(LatencyKind::Write).await;
                let w = sim::world();
                w.disk.write_at(f.ino, &f.path, start, &buf, f.direct, w.now_ms())?;
                Ok(())
            }
        }
    }

    /// Read up to `len` bytes at `pos` (fewer at end of file).
    pub async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        match &self.kind {
            Kind::Direct(f) => {
                let r = filtered(f.read_at(pos, len)).await.map_err(gerr)?;
                Ok(Bytes::copy_from_slice(&r))
            }
            Kind::Buffered(f) => {
                let r = filtered(f.read_at(pos, len)).await.map_err(gerr)?;
                Ok(Bytes::copy_from_slice(&r))
            }
            Kind::Sim(f) => {
                sim_latency(LatencyKind::Read).await;
                Ok(Bytes::from(sim::world().disk.read_at(f.ino, &f.path, pos, len)?))
            }
        }
    }

    /// fdatasync: everything appended so far is on stable storage.
    pub async fn sync(&self) -> io::Result<()> {
        match &self.kind {
            Kind::Direct(f) => filtered(f.fdatasync()).await.map_err(gerr),
            Kind::Buffered(f) => filtered(f.fdatasync()).await.map_err(gerr),
            Kind::Sim(f) => {
                sim_latency(LatencyKind::Sync).await;
                sim::world().disk.sync(f.ino, &f.path)
            }
        }
    }

    pub async fn truncate(&self, len: u64) -> io::Result<()> {
        match &self.kind {
            // glommio truncates on its blocking pool: the executor must
            // outlive the call (see `executor::pooled`).
            Kind::Direct(f) => {
                let f = f.clone();
                super::executor::pooled(async move { filtered(f.truncate(len)).await.map_err(gerr) }).await
            }
            Kind::Buffered(f) => {
                let f = f.clone();
                super::executor::pooled(async move { filtered(f.truncate(len)).await.map_err(gerr) }).await
            }
            Kind::Sim(f) => {
                sim_latency(LatencyKind::Meta).await;
                let w = sim::world();
                w.disk.truncate(f.ino, &f.path, len, w.now_ms())
            }
        }
    }

    pub async fn size(&self) -> io::Result<u64> {
        match &self.kind {
            Kind::Direct(f) => filtered(f.file_size()).await.map_err(gerr),
            Kind::Buffered(f) => filtered(f.file_size()).await.map_err(gerr),
            Kind::Sim(f) => sim::world().disk.size(f.ino),
        }
    }
}

/// Write a whole small file, optionally fdatasync'ed.
async fn write_whole(path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
    if sim::active() {
        sim_latency(LatencyKind::Write).await;
        let w = sim::world();
        let now = w.now_ms();
        let ino = w.disk.open(path, true, true, false, now)?;
        if !data.is_empty() {
            w.disk.write_at(ino, path, 0, data, false, now)?;
        }
        if sync {
            sim_latency(LatencyKind::Sync).await;
            w.disk.sync(ino, path)?;
        }
        return Ok(());
    }
    if !super::executor::in_glommio() {
        // Start-up and shutdown on the main thread (no executor).
        use std::io::Write;
        let mut f = std::fs::File::create(path)?;
        f.write_all(data)?;
        if sync {
            f.sync_data()?;
        }
        return Ok(());
    }
    let f = filtered(
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .buffered_open(path),
    )
    .await
    .map_err(gerr)?;
    if !data.is_empty() {
        let n = filtered(f.write_at(data.to_vec(), 0)).await.map_err(gerr)?;
        if n != data.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
        }
    }
    if sync {
        filtered(f.fdatasync()).await.map_err(gerr)?;
    }
    filtered(f.close()).await.map_err(gerr)
}

/// Write a small file atomically: temp file, fdatasync, rename, directory
/// sync. Readers see the old or the new content, also after a crash.
pub async fn write_file_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    write_whole(&tmp, data, true).await?;
    super::fs::rename(&tmp, path).await?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    super::fs::sync_dir(dir).await
}

/// Write a whole file without syncing (index files are rebuilt from the log
/// if they are lost).
pub async fn write_file(path: &Path, data: Vec<u8>) -> io::Result<()> {
    write_whole(path, &data, false).await
}

/// Write a whole small file and fdatasync it. Not atomic: after a crash the
/// file may hold a prefix of the data (or of an older content), so callers
/// validate what they read back (index files, producer state snapshots).
pub async fn write_file_synced(path: &Path, data: Vec<u8>) -> io::Result<()> {
    write_whole(path, &data, true).await
}

/// fdatasync an existing file by path (e.g. index files written earlier
/// without syncing). Its directory entry is not synced (see
/// [`super::fs::sync_dir`]).
pub async fn sync_file(path: &Path) -> io::Result<()> {
    if sim::active() {
        sim_latency(LatencyKind::Sync).await;
        let w = sim::world();
        let ino = w.disk.open(path, false, false, false, w.now_ms())?;
        return w.disk.sync(ino, path);
    }
    if !super::executor::in_glommio() {
        return std::fs::File::open(path)?.sync_data();
    }
    let f = filtered(OpenOptions::new().read(true).buffered_open(path))
        .await
        .map_err(gerr)?;
    filtered(f.fdatasync()).await.map_err(gerr)?;
    filtered(f.close()).await.map_err(gerr)
}

/// Read a whole file; `None` if it does not exist.
pub async fn read_file(path: &Path) -> io::Result<Option<Vec<u8>>> {
    if sim::active() {
        sim_latency(LatencyKind::Read).await;
        let w = sim::world();
        let ino = match w.disk.open(path, false, false, false, w.now_ms()) {
            Ok(ino) => ino,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let size = w.disk.size(ino)? as usize;
        return Ok(Some(w.disk.read_at(ino, path, 0, size)?));
    }
    if !super::executor::in_glommio() {
        return match std::fs::read(path) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        };
    }
    let f = match filtered(OpenOptions::new().read(true).buffered_open(path)).await {
        Ok(f) => f,
        Err(e) if os_code(&e) == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(gerr(e)),
    };
    let size = filtered(f.file_size()).await.map_err(gerr)? as usize;
    let data = if size == 0 {
        Vec::new()
    } else {
        filtered(f.read_at(0, size)).await.map_err(gerr)?.to_vec()
    };
    filtered(f.close()).await.map_err(gerr)?;
    Ok(Some(data))
}

/// A handle on the filesystem holding the data directory, for syncing every
/// file on it with one call.
pub enum Filesystem {
    Real(std::fs::File),
    Sim,
}

impl Filesystem {
    pub fn open(dir: &Path) -> io::Result<Self> {
        if sim::active() {
            return Ok(Filesystem::Sim);
        }
        Ok(Filesystem::Real(std::fs::File::open(dir)?))
    }

    /// syncfs(2) on a blocking-pool thread: all data and metadata of the
    /// filesystem reach stable storage (one journal commit and one device
    /// flush for however many segment files a group-commit round wrote).
    pub async fn sync_all(&self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let fd = match self {
            Filesystem::Sim => {
                sim_latency(LatencyKind::Sync).await;
                return sim::world().disk.sync_all();
            }
            Filesystem::Real(f) => f.as_raw_fd(),
        };
        // `self` (and so the descriptor) outlives the blocking call: this
        // future is awaited while borrowing `self`.
        super::executor::blocking(move || {
            // SAFETY: syncfs only reads the descriptor number, which stays
            // open for the duration of the call (see above).
            let r = unsafe { libc::syncfs(fd) };
            if r == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        })
        .await
    }
}

/// The io mode segment files in `dir` really get when `wanted` is asked
/// for: O_DIRECT falls back to buffered on filesystems that refuse it.
pub async fn effective_mode(dir: &Path, wanted: IoMode) -> IoMode {
    if wanted == IoMode::Buffered {
        return IoMode::Buffered;
    }
    let probe = dir.join(".io-mode-probe");
    let mode = match LogFile::open(&probe, IoMode::Direct).await {
        Ok(f) => f.mode(),
        Err(_) => IoMode::Buffered,
    };
    let _ = super::fs::remove_file(&probe).await;
    mode
}
