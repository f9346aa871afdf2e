//! Filesystem operations on paths: directories, renames, removals, stat,
//! directory fsync and free space.
//!
//! In production they run on the executor's blocking pool, so a slow
//! filesystem (a rename or fsync on a loaded disk can take tens of ms)
//! never stalls the shard thread. In a simulation they go to the simulated
//! disk after a simulated latency.

use std::io;
use std::path::{Path, PathBuf};

use super::executor::blocking;
use super::sim;
use super::sim::disk::{EntryKind, LatencyKind};

/// A directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub is_dir: bool,
}

/// What [`metadata`] tells about a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metadata {
    pub is_dir: bool,
    pub len: u64,
    /// Modification time, ms since the epoch (-1 if unknown).
    pub modified_ms: i64,
}

/// Space on the filesystem holding a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Space {
    /// Bytes available to the broker.
    pub available: u64,
    pub total: u64,
}

async fn sim_op<R>(kind: LatencyKind, f: impl FnOnce(&sim::disk::Disk) -> io::Result<R>) -> io::Result<R> {
    let w = sim::world();
    sim::sleep(w.disk.latency(kind)).await;
    f(&w.disk)
}

fn ctx(e: io::Error, op: &str, path: &Path) -> io::Error {
    match e.raw_os_error() {
        Some(code) => super::os_error(code, format!("{op} {}", path.display())),
        None => e,
    }
}

/// mkdir -p.
pub async fn create_dir_all(path: &Path) -> io::Result<()> {
    if sim::active() {
        return sim_op(LatencyKind::Meta, |d| d.create_dir_all(path)).await;
    }
    let p = path.to_path_buf();
    blocking(move || std::fs::create_dir_all(&p).map_err(|e| ctx(e, "creating", &p))).await
}

/// Create `path` (and missing parents) so that it survives a crash: every
/// directory created and its parent are synced.
pub async fn create_dir_durable(path: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = Some(path);
    while let Some(p) = cur {
        if exists(p).await {
            break;
        }
        missing.push(p.to_path_buf());
        cur = p.parent();
    }
    create_dir_all(path).await?;
    // Parents first: a new directory's entry lives in its parent.
    for p in missing.iter().rev() {
        if let Some(parent) = p.parent() {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            sync_dir(parent).await?;
        }
    }
    if !missing.is_empty() {
        sync_dir(path).await?;
    }
    Ok(())
}

/// The entries of a directory, sorted by name.
pub async fn read_dir(path: &Path) -> io::Result<Vec<DirEntry>> {
    let mut v = if sim::active() {
        sim_op(LatencyKind::Meta, |d| d.read_dir(path))
            .await?
            .into_iter()
            .map(|(name, kind)| DirEntry {
                name,
                is_dir: kind == EntryKind::Dir,
            })
            .collect()
    } else {
        let p = path.to_path_buf();
        blocking(move || -> io::Result<Vec<DirEntry>> {
            let mut out = Vec::new();
            for e in std::fs::read_dir(&p).map_err(|e| ctx(e, "listing", &p))? {
                let e = e?;
                let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
                out.push(DirEntry {
                    name: e.file_name().to_string_lossy().into_owned(),
                    is_dir,
                });
            }
            Ok(out)
        })
        .await?
    };
    v.sort_by(|a: &DirEntry, b: &DirEntry| a.name.cmp(&b.name));
    Ok(v)
}

pub async fn rename(from: &Path, to: &Path) -> io::Result<()> {
    if sim::active() {
        return sim_op(LatencyKind::Meta, |d| d.rename(from, to)).await;
    }
    let (f, t) = (from.to_path_buf(), to.to_path_buf());
    blocking(move || std::fs::rename(&f, &t).map_err(|e| ctx(e, "renaming", &f))).await
}

pub async fn remove_file(path: &Path) -> io::Result<()> {
    if sim::active() {
        return sim_op(LatencyKind::Meta, |d| d.remove_file(path)).await;
    }
    let p = path.to_path_buf();
    blocking(move || std::fs::remove_file(&p).map_err(|e| ctx(e, "removing", &p))).await
}

pub async fn remove_dir_all(path: &Path) -> io::Result<()> {
    if sim::active() {
        return sim_op(LatencyKind::Meta, |d| d.remove_dir_all(path)).await;
    }
    let p = path.to_path_buf();
    blocking(move || std::fs::remove_dir_all(&p).map_err(|e| ctx(e, "removing", &p))).await
}

/// fsync a directory so that created, renamed or removed entries are durable.
pub async fn sync_dir(path: &Path) -> io::Result<()> {
    if sim::active() {
        return sim_op(LatencyKind::Sync, |d| d.sync_dir(path)).await;
    }
    let p = path.to_path_buf();
    blocking(move || {
        std::fs::File::open(&p)
            .and_then(|f| f.sync_all())
            .map_err(|e| ctx(e, "syncing directory", &p))
    })
    .await
}

pub async fn metadata(path: &Path) -> io::Result<Metadata> {
    if sim::active() {
        let m = sim_op(LatencyKind::Meta, |d| d.metadata(path)).await?;
        return Ok(Metadata {
            is_dir: m.kind == EntryKind::Dir,
            len: m.len,
            modified_ms: m.mtime_ms,
        });
    }
    let p = path.to_path_buf();
    blocking(move || {
        let m = std::fs::metadata(&p).map_err(|e| ctx(e, "stat", &p))?;
        let modified_ms = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_millis()).ok())
            .unwrap_or(-1);
        Ok(Metadata {
            is_dir: m.is_dir(),
            len: m.len(),
            modified_ms,
        })
    })
    .await
}

pub async fn exists(path: &Path) -> bool {
    metadata(path).await.is_ok()
}

/// Free and total space of the filesystem holding `path` (statvfs).
pub async fn space(path: &Path) -> io::Result<Space> {
    if sim::active() {
        let w = sim::world();
        let cap = w.disk.config().capacity;
        return Ok(Space {
            available: w.disk.free(),
            total: cap,
        });
    }
    let p: PathBuf = path.to_path_buf();
    blocking(move || statvfs(&p)).await
}

fn statvfs(path: &Path) -> io::Result<Space> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated string and `st` a valid,
    // writable statvfs for the duration of the call.
    let r = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if r != 0 {
        return Err(ctx(io::Error::last_os_error(), "statvfs", path));
    }
    let frsize = st.f_frsize as u64;
    Ok(Space {
        available: (st.f_bavail as u64).saturating_mul(frsize),
        total: (st.f_blocks as u64).saturating_mul(frsize),
    })
}
