//! Segment and index files through io_uring.
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

/// Keep the OS error (and so its kind: NotFound, EINVAL, ENOSPC, …) when
/// turning a glommio error into an io::Error.
fn gerr(e: glommio::GlommioError<()>) -> io::Error {
    match e {
        glommio::GlommioError::IoError(e) => e,
        glommio::GlommioError::EnhancedIoError { source, op, path, .. } => {
            let msg = format!(
                "{op} {}: {source}",
                path.as_deref().map(|p| p.display().to_string()).unwrap_or_default()
            );
            match source.raw_os_error() {
                Some(code) => io::Error::new(io::Error::from_raw_os_error(code).kind(), msg),
                None => io::Error::new(source.kind(), msg),
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

#[derive(Clone)]
enum Kind {
    Direct(Rc<DmaFile>),
    Buffered(Rc<BufferedFile>),
}

/// An open segment file. Cheap to clone (shared handle on this shard).
#[derive(Clone)]
pub struct LogFile {
    kind: Kind,
}

thread_local! {
    /// Devices on which this executor has already opened an O_DIRECT file.
    static PROBED_DEVICES: std::cell::RefCell<std::collections::HashSet<u64>> = Default::default();
}

/// glommio decides once per device and thread whether reads can use the
/// IOPOLL ring, by reading the start of the first O_DIRECT file opened
/// there. An empty file reads "successfully" and makes it pick IOPOLL on
/// devices that don't support it (every later read then fails with
/// EOPNOTSUPP). So before the first O_DIRECT open on a device, open a small
/// non-empty probe file in the same directory.
async fn ensure_device_probed(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir)?.dev();
    if PROBED_DEVICES.with(|p| p.borrow().contains(&dev)) {
        return Ok(());
    }
    let probe = dir.join(format!(".io-probe-{:?}", std::thread::current().id()).replace(['(', ')'], ""));
    std::fs::write(&probe, vec![0u8; 2 * ALIGN as usize])?;
    let opened = OpenOptions::new().read(true).dma_open(&probe).await;
    let _ = std::fs::remove_file(&probe);
    match opened {
        Ok(f) => {
            let _ = f.close().await;
        }
        Err(e) => return Err(gerr(e)),
    }
    PROBED_DEVICES.with(|p| p.borrow_mut().insert(dev));
    Ok(())
}

impl LogFile {
    /// Open (creating if missing) for reading and appending.
    pub async fn open(path: &Path, mode: IoMode) -> io::Result<Self> {
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
            IoMode::Direct => match opts.dma_open(path).await {
                Ok(f) => Kind::Direct(Rc::new(f)),
                // Some filesystems (tmpfs) refuse O_DIRECT: fall back.
                Err(e) if os_code(&e) == Some(libc::EINVAL) => {
                    tracing::warn!(path = %path.display(), "O_DIRECT not supported here, using buffered IO");
                    Kind::Buffered(Rc::new(opts.buffered_open(path).await.map_err(gerr)?))
                }
                Err(e) => return Err(gerr(e)),
            },
            IoMode::Buffered => Kind::Buffered(Rc::new(opts.buffered_open(path).await.map_err(gerr)?)),
        };
        Ok(Self { kind })
    }

    pub fn mode(&self) -> IoMode {
        match self.kind {
            Kind::Direct(_) => IoMode::Direct,
            Kind::Buffered(_) => IoMode::Buffered,
        }
    }

    /// Append `chunks` at logical position `end`. `tail` must hold the file's
    /// bytes between `end` rounded down to [`ALIGN`] and `end` (only used in
    /// direct mode, where that partial block is rewritten together with the
    /// new data). The file may grow past `end + len` with zero padding in
    /// direct mode; recovery and [`LogFile::truncate`] deal with that.
    pub async fn append(&self, end: u64, tail: &[u8], chunks: &[Bytes]) -> io::Result<()> {
        let data_len: usize = chunks.iter().map(|c| c.len()).sum();
        match &self.kind {
            Kind::Direct(f) => {
                let start = end - tail.len() as u64;
                if !start.is_multiple_of(ALIGN) {
                    return Err(io::Error::other("unaligned tail for O_DIRECT append"));
                }
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
                let written = f.write_at(buf, start).await.map_err(gerr)?;
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
                let written = f.write_at(buf, end).await.map_err(gerr)?;
                if written < data_len {
                    return Err(io::Error::new(io::ErrorKind::WriteZero, "short buffered write"));
                }
                Ok(())
            }
        }
    }

    /// Read up to `len` bytes at `pos` (fewer at end of file).
    pub async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let r = match &self.kind {
            Kind::Direct(f) => f.read_at(pos, len).await.map_err(gerr)?,
            Kind::Buffered(f) => f.read_at(pos, len).await.map_err(gerr)?,
        };
        Ok(Bytes::copy_from_slice(&r))
    }

    /// fdatasync: everything appended so far is on stable storage.
    pub async fn sync(&self) -> io::Result<()> {
        match &self.kind {
            Kind::Direct(f) => f.fdatasync().await.map_err(gerr),
            Kind::Buffered(f) => f.fdatasync().await.map_err(gerr),
        }
    }

    pub async fn truncate(&self, len: u64) -> io::Result<()> {
        match &self.kind {
            Kind::Direct(f) => f.truncate(len).await.map_err(gerr),
            Kind::Buffered(f) => f.truncate(len).await.map_err(gerr),
        }
    }

    pub async fn size(&self) -> io::Result<u64> {
        match &self.kind {
            Kind::Direct(f) => f.file_size().await.map_err(gerr),
            Kind::Buffered(f) => f.file_size().await.map_err(gerr),
        }
    }
}

/// Write a small file atomically: temp file, fdatasync, rename, directory sync.
pub async fn write_file_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp: PathBuf = path.with_extension("tmp");
    {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .buffered_open(&tmp)
            .await
            .map_err(gerr)?;
        let n = f.write_at(data.to_vec(), 0).await.map_err(gerr)?;
        if n != data.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
        }
        f.fdatasync().await.map_err(gerr)?;
        f.close().await.map_err(gerr)?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Write a whole file without syncing (index files are rebuilt from the log
/// if they are lost).
pub async fn write_file(path: &Path, data: Vec<u8>) -> io::Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .buffered_open(path)
        .await
        .map_err(gerr)?;
    let len = data.len();
    let n = if len == 0 {
        0
    } else {
        f.write_at(data, 0).await.map_err(gerr)?
    };
    if n != len {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
    }
    f.close().await.map_err(gerr)
}

/// Read a whole file; `None` if it does not exist.
pub async fn read_file(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let f = match OpenOptions::new().read(true).buffered_open(path).await {
        Ok(f) => f,
        Err(e) if os_code(&e) == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(gerr(e)),
    };
    let size = f.file_size().await.map_err(gerr)? as usize;
    let data = if size == 0 {
        Vec::new()
    } else {
        f.read_at(0, size).await.map_err(gerr)?.to_vec()
    };
    f.close().await.map_err(gerr)?;
    Ok(Some(data))
}

/// fsync a directory so that created, renamed or removed entries are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// A handle on the filesystem holding the data directory, for syncing every
/// file on it with one call.
pub struct Filesystem {
    dir: std::fs::File,
}

impl Filesystem {
    pub fn open(dir: &Path) -> io::Result<Self> {
        Ok(Filesystem {
            dir: std::fs::File::open(dir)?,
        })
    }

    /// syncfs(2) on a blocking-pool thread: all data and metadata of the
    /// filesystem reach stable storage (one journal commit and one device
    /// flush for however many segment files a group-commit round wrote).
    pub async fn sync_all(&self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let fd = self.dir.as_raw_fd();
        // `self` (and so the descriptor) outlives the blocking call: this
        // future is awaited while borrowing `self`.
        glommio::executor()
            .spawn_blocking(move || {
                // SAFETY: syncfs only reads the descriptor number, which
                // stays open for the duration of the call (see above).
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
