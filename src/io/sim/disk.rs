//! A simulated disk with a POSIX-like filesystem and a power-loss model.
//!
//! Every file keeps its visible content (what reads return, the page cache)
//! and its durable content (what survives a power failure) plus the log of
//! operations between them. `fsync`/`fdatasync` make a file's content
//! durable; a directory's entries (creations, renames, removals) become
//! durable only when the directory itself is synced. A power loss
//! ([`Disk::power_loss`]) keeps, for every file, its durable content plus a
//! random prefix of the later operations, the last of them possibly torn at
//! a sector boundary, and reverts every directory to its durable entries:
//! the worst a journaling filesystem is allowed to do under POSIX, which a
//! `kill -9` (the page cache survives it) can never show.
//!
//! Faults: `ENOSPC` once the capacity is used up, `EIO` with a configured
//! probability per operation kind or on every operation under chosen paths,
//! `EINVAL` for unaligned O_DIRECT writes. Latencies are drawn per operation.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Sector size for torn writes and the O_DIRECT alignment.
pub const SECTOR: usize = 512;
const DIRECT_ALIGN: u64 = 4096;

#[derive(Clone, Debug)]
pub struct DiskConfig {
    /// Bytes of file data the disk holds (ENOSPC past it).
    pub capacity: u64,
    /// Latency ranges (min, max) per operation kind.
    pub read_latency: (Duration, Duration),
    pub write_latency: (Duration, Duration),
    pub sync_latency: (Duration, Duration),
    pub meta_latency: (Duration, Duration),
    /// Probability of EIO per operation kind.
    pub eio_read: f64,
    pub eio_write: f64,
    pub eio_sync: f64,
    /// Every operation on a path under one of these fails with EIO.
    pub eio_paths: Vec<PathBuf>,
    /// Whether O_DIRECT opens succeed (tmpfs refuses them with EINVAL).
    pub o_direct: bool,
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            capacity: u64::MAX,
            read_latency: (Duration::from_micros(20), Duration::from_micros(200)),
            write_latency: (Duration::from_micros(20), Duration::from_micros(300)),
            sync_latency: (Duration::from_micros(100), Duration::from_millis(3)),
            meta_latency: (Duration::from_micros(5), Duration::from_micros(100)),
            eio_read: 0.0,
            eio_write: 0.0,
            eio_sync: 0.0,
            eio_paths: Vec::new(),
            o_direct: true,
        }
    }
}

enum Op {
    Write { pos: u64, data: Vec<u8> },
    Truncate(u64),
}

struct FileNode {
    data: Vec<u8>,
    durable: Vec<u8>,
    log: Vec<Op>,
    mtime_ms: i64,
}

#[derive(Default)]
struct DirNode {
    entries: BTreeMap<String, u64>,
    durable: BTreeMap<String, u64>,
}

enum Node {
    File(FileNode),
    Dir(DirNode),
}

struct State {
    nodes: BTreeMap<u64, Node>,
    next_ino: u64,
    config: DiskConfig,
    rng: StdRng,
    /// Statistics for tests.
    stats: DiskStats,
}

/// What happened on the disk, for tests and reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    pub writes: u64,
    pub syncs: u64,
    pub eio: u64,
    pub enospc: u64,
    pub power_losses: u64,
}

/// Kind of a directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
}

/// Metadata of a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub kind: EntryKind,
    pub len: u64,
    pub mtime_ms: i64,
}

const ROOT: u64 = 1;

fn err(code: i32, what: &str, path: &Path) -> io::Error {
    crate::io::os_error(code, format!("{what} {}", path.display()))
}

fn components(path: &Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => return Err(err(libc::EINVAL, "resolve", path)),
        }
    }
    Ok(out)
}

/// The simulated disk of a world.
pub struct Disk {
    state: RefCell<State>,
}

impl Disk {
    pub fn new(config: DiskConfig, seed: u64) -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert(ROOT, Node::Dir(DirNode::default()));
        Disk {
            state: RefCell::new(State {
                nodes,
                next_ino: ROOT + 1,
                config,
                rng: StdRng::seed_from_u64(seed),
                stats: DiskStats::default(),
            }),
        }
    }

    /// Change the fault settings (e.g. fill the disk, then free it).
    pub fn configure(&self, f: impl FnOnce(&mut DiskConfig)) {
        f(&mut self.state.borrow_mut().config);
    }

    pub fn config(&self) -> DiskConfig {
        self.state.borrow().config.clone()
    }

    pub fn stats(&self) -> DiskStats {
        self.state.borrow().stats.clone()
    }

    /// Bytes of file data reachable from the root.
    pub fn used(&self) -> u64 {
        let st = self.state.borrow();
        let mut total = 0u64;
        let mut stack = vec![ROOT];
        while let Some(ino) = stack.pop() {
            match st.nodes.get(&ino) {
                Some(Node::Dir(d)) => stack.extend(d.entries.values().copied()),
                Some(Node::File(f)) => total += f.data.len() as u64,
                None => {}
            }
        }
        total
    }

    /// Free bytes (capacity minus used).
    pub fn free(&self) -> u64 {
        let cap = self.state.borrow().config.capacity;
        cap.saturating_sub(self.used())
    }

    /// A latency for an operation kind, drawn from the disk's generator.
    pub fn latency(&self, kind: LatencyKind) -> Duration {
        let mut st = self.state.borrow_mut();
        let (lo, hi) = match kind {
            LatencyKind::Read => st.config.read_latency,
            LatencyKind::Write => st.config.write_latency,
            LatencyKind::Sync => st.config.sync_latency,
            LatencyKind::Meta => st.config.meta_latency,
        };
        if hi <= lo {
            return lo;
        }
        let ns = st.rng.gen_range(lo.as_nanos() as u64..=hi.as_nanos() as u64);
        Duration::from_nanos(ns)
    }

    fn fault(&self, path: &Path, p: f64) -> bool {
        let mut st = self.state.borrow_mut();
        let hit =
            st.config.eio_paths.iter().any(|bad| path.starts_with(bad)) || (p > 0.0 && st.rng.gen_bool(p.min(1.0)));
        if hit {
            st.stats.eio += 1;
        }
        hit
    }

    fn lookup(st: &State, path: &Path) -> io::Result<u64> {
        let mut ino = ROOT;
        for c in components(path)? {
            match st.nodes.get(&ino) {
                Some(Node::Dir(d)) => match d.entries.get(&c) {
                    Some(&next) => ino = next,
                    None => return Err(err(libc::ENOENT, "lookup", path)),
                },
                _ => return Err(err(libc::ENOTDIR, "lookup", path)),
            }
        }
        Ok(ino)
    }

    fn parent_of(st: &State, path: &Path) -> io::Result<(u64, String)> {
        let mut comps = components(path)?;
        let name = comps.pop().ok_or_else(|| err(libc::EINVAL, "resolve", path))?;
        let parent: PathBuf = comps.iter().collect();
        let pino = Self::lookup(st, &Path::new("/").join(parent))?;
        match st.nodes.get(&pino) {
            Some(Node::Dir(_)) => Ok((pino, name)),
            _ => Err(err(libc::ENOTDIR, "resolve", path)),
        }
    }

    fn dir_mut(st: &mut State, ino: u64) -> Option<&mut DirNode> {
        match st.nodes.get_mut(&ino) {
            Some(Node::Dir(d)) => Some(d),
            _ => None,
        }
    }

    fn file_mut(st: &mut State, ino: u64) -> Option<&mut FileNode> {
        match st.nodes.get_mut(&ino) {
            Some(Node::File(f)) => Some(f),
            _ => None,
        }
    }

    // ---- files ------------------------------------------------------------

    /// Open a file, creating it (entry not yet durable) if asked.
    pub fn open(&self, path: &Path, create: bool, truncate: bool, direct: bool, now_ms: i64) -> io::Result<u64> {
        if direct && !self.state.borrow().config.o_direct {
            return Err(err(libc::EINVAL, "open O_DIRECT", path));
        }
        if self.fault(path, 0.0) {
            return Err(err(libc::EIO, "open", path));
        }
        let mut st = self.state.borrow_mut();
        let ino = match Self::lookup(&st, path) {
            Ok(ino) => {
                if !matches!(st.nodes.get(&ino), Some(Node::File(_))) {
                    return Err(err(libc::EISDIR, "open", path));
                }
                ino
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                let (pino, name) = Self::parent_of(&st, path)?;
                let ino = st.next_ino;
                st.next_ino += 1;
                st.nodes.insert(
                    ino,
                    Node::File(FileNode {
                        data: Vec::new(),
                        durable: Vec::new(),
                        log: Vec::new(),
                        mtime_ms: now_ms,
                    }),
                );
                if let Some(d) = Self::dir_mut(&mut st, pino) {
                    d.entries.insert(name, ino);
                }
                ino
            }
            Err(e) => return Err(e),
        };
        if truncate {
            if let Some(f) = Self::file_mut(&mut st, ino) {
                f.data.clear();
                f.log.push(Op::Truncate(0));
                f.mtime_ms = now_ms;
            }
        }
        Ok(ino)
    }

    pub fn size(&self, ino: u64) -> io::Result<u64> {
        let mut st = self.state.borrow_mut();
        Self::file_mut(&mut st, ino)
            .map(|f| f.data.len() as u64)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))
    }

    pub fn read_at(&self, ino: u64, path: &Path, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        let p = self.state.borrow().config.eio_read;
        if self.fault(path, p) {
            return Err(err(libc::EIO, "read", path));
        }
        let mut st = self.state.borrow_mut();
        let f = Self::file_mut(&mut st, ino).ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
        let start = (pos as usize).min(f.data.len());
        let end = start.saturating_add(len).min(f.data.len());
        Ok(f.data[start..end].to_vec())
    }

    pub fn write_at(
        &self,
        ino: u64,
        path: &Path,
        pos: u64,
        data: &[u8],
        direct: bool,
        now_ms: i64,
    ) -> io::Result<usize> {
        if direct && (!pos.is_multiple_of(DIRECT_ALIGN) || !(data.len() as u64).is_multiple_of(DIRECT_ALIGN)) {
            return Err(err(libc::EINVAL, "unaligned O_DIRECT write", path));
        }
        let p = self.state.borrow().config.eio_write;
        if self.fault(path, p) {
            return Err(err(libc::EIO, "write", path));
        }
        let cur_len = self.size(ino)?;
        let growth = (pos + data.len() as u64).saturating_sub(cur_len);
        if growth > 0 && growth > self.free() {
            self.state.borrow_mut().stats.enospc += 1;
            return Err(err(libc::ENOSPC, "write", path));
        }
        let mut st = self.state.borrow_mut();
        st.stats.writes += 1;
        let f = Self::file_mut(&mut st, ino).ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
        apply_write(&mut f.data, pos, data);
        f.log.push(Op::Write {
            pos,
            data: data.to_vec(),
        });
        f.mtime_ms = now_ms;
        Ok(data.len())
    }

    pub fn truncate(&self, ino: u64, path: &Path, len: u64, now_ms: i64) -> io::Result<()> {
        if self.fault(path, 0.0) {
            return Err(err(libc::EIO, "truncate", path));
        }
        let mut st = self.state.borrow_mut();
        let f = Self::file_mut(&mut st, ino).ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
        f.data.resize(len as usize, 0);
        f.log.push(Op::Truncate(len));
        f.mtime_ms = now_ms;
        Ok(())
    }

    /// fsync/fdatasync of one file.
    pub fn sync(&self, ino: u64, path: &Path) -> io::Result<()> {
        let p = self.state.borrow().config.eio_sync;
        if self.fault(path, p) {
            return Err(err(libc::EIO, "fdatasync", path));
        }
        let mut st = self.state.borrow_mut();
        st.stats.syncs += 1;
        let f = Self::file_mut(&mut st, ino).ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
        for op in f.log.drain(..) {
            apply_op(&mut f.durable, &op);
        }
        debug_assert_eq!(f.durable, f.data);
        Ok(())
    }

    // ---- directories ------------------------------------------------------

    pub fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        if self.fault(path, 0.0) {
            return Err(err(libc::EIO, "mkdir", path));
        }
        let mut st = self.state.borrow_mut();
        let mut ino = ROOT;
        for c in components(path)? {
            let next = match st.nodes.get(&ino) {
                Some(Node::Dir(d)) => d.entries.get(&c).copied(),
                _ => return Err(err(libc::ENOTDIR, "mkdir", path)),
            };
            ino = match next {
                Some(n) => n,
                None => {
                    let n = st.next_ino;
                    st.next_ino += 1;
                    st.nodes.insert(n, Node::Dir(DirNode::default()));
                    if let Some(d) = Self::dir_mut(&mut st, ino) {
                        d.entries.insert(c, n);
                    }
                    n
                }
            };
        }
        match st.nodes.get(&ino) {
            Some(Node::Dir(_)) => Ok(()),
            _ => Err(err(libc::EEXIST, "mkdir", path)),
        }
    }

    pub fn read_dir(&self, path: &Path) -> io::Result<Vec<(String, EntryKind)>> {
        if self.fault(path, 0.0) {
            return Err(err(libc::EIO, "readdir", path));
        }
        let st = self.state.borrow();
        let ino = Self::lookup(&st, path)?;
        match st.nodes.get(&ino) {
            Some(Node::Dir(d)) => Ok(d
                .entries
                .iter()
                .map(|(name, ino)| {
                    let kind = match st.nodes.get(ino) {
                        Some(Node::Dir(_)) => EntryKind::Dir,
                        _ => EntryKind::File,
                    };
                    (name.clone(), kind)
                })
                .collect()),
            _ => Err(err(libc::ENOTDIR, "readdir", path)),
        }
    }

    pub fn metadata(&self, path: &Path) -> io::Result<Meta> {
        let st = self.state.borrow();
        let ino = Self::lookup(&st, path)?;
        Ok(match st.nodes.get(&ino) {
            Some(Node::File(f)) => Meta {
                kind: EntryKind::File,
                len: f.data.len() as u64,
                mtime_ms: f.mtime_ms,
            },
            _ => Meta {
                kind: EntryKind::Dir,
                len: 0,
                mtime_ms: 0,
            },
        })
    }

    pub fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if self.fault(from, 0.0) || self.fault(to, 0.0) {
            return Err(err(libc::EIO, "rename", from));
        }
        let mut st = self.state.borrow_mut();
        let ino = Self::lookup(&st, from)?;
        let (fp, fname) = Self::parent_of(&st, from)?;
        let (tp, tname) = Self::parent_of(&st, to)?;
        if let Ok(existing) = Self::lookup(&st, to) {
            if matches!(st.nodes.get(&existing), Some(Node::Dir(d)) if !d.entries.is_empty()) {
                return Err(err(libc::ENOTEMPTY, "rename", to));
            }
        }
        if let Some(d) = Self::dir_mut(&mut st, fp) {
            d.entries.remove(&fname);
        }
        if let Some(d) = Self::dir_mut(&mut st, tp) {
            d.entries.insert(tname, ino);
        }
        Ok(())
    }

    pub fn remove_file(&self, path: &Path) -> io::Result<()> {
        if self.fault(path, 0.0) {
            return Err(err(libc::EIO, "unlink", path));
        }
        let mut st = self.state.borrow_mut();
        let ino = Self::lookup(&st, path)?;
        if !matches!(st.nodes.get(&ino), Some(Node::File(_))) {
            return Err(err(libc::EISDIR, "unlink", path));
        }
        let (p, name) = Self::parent_of(&st, path)?;
        if let Some(d) = Self::dir_mut(&mut st, p) {
            d.entries.remove(&name);
        }
        Ok(())
    }

    pub fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        if self.fault(path, 0.0) {
            return Err(err(libc::EIO, "rmdir", path));
        }
        let mut st = self.state.borrow_mut();
        let ino = Self::lookup(&st, path)?;
        if !matches!(st.nodes.get(&ino), Some(Node::Dir(_))) {
            return Err(err(libc::ENOTDIR, "rmdir", path));
        }
        let (p, name) = Self::parent_of(&st, path)?;
        if let Some(d) = Self::dir_mut(&mut st, p) {
            d.entries.remove(&name);
        }
        // The subtree's own entries are removed too, durably from its
        // point of view (it is unreachable once the parent is synced).
        let mut stack = vec![ino];
        while let Some(i) = stack.pop() {
            if let Some(Node::Dir(d)) = st.nodes.get_mut(&i) {
                stack.extend(d.entries.values().copied());
                d.entries.clear();
            }
        }
        Ok(())
    }

    /// fsync of a directory: its entries become durable.
    pub fn sync_dir(&self, path: &Path) -> io::Result<()> {
        if self.fault(path, 0.0) {
            return Err(err(libc::EIO, "fsync dir", path));
        }
        let mut st = self.state.borrow_mut();
        let ino = Self::lookup(&st, path)?;
        match Self::dir_mut(&mut st, ino) {
            Some(d) => {
                d.durable = d.entries.clone();
                Ok(())
            }
            None => Err(err(libc::ENOTDIR, "fsync dir", path)),
        }
    }

    /// syncfs: every file and directory becomes durable.
    pub fn sync_all(&self) -> io::Result<()> {
        let p = self.state.borrow().config.eio_sync;
        if self.fault(Path::new("/"), p) {
            return Err(err(libc::EIO, "syncfs", Path::new("/")));
        }
        let mut st = self.state.borrow_mut();
        st.stats.syncs += 1;
        for node in st.nodes.values_mut() {
            match node {
                Node::File(f) => {
                    for op in f.log.drain(..) {
                        apply_op(&mut f.durable, &op);
                    }
                }
                Node::Dir(d) => d.durable = d.entries.clone(),
            }
        }
        Ok(())
    }

    /// A power failure: see the module documentation.
    pub fn power_loss(&self) {
        let mut st = self.state.borrow_mut();
        st.stats.power_losses += 1;
        let State { nodes, rng, .. } = &mut *st;
        for node in nodes.values_mut() {
            match node {
                Node::Dir(d) => d.entries = d.durable.clone(),
                Node::File(f) => {
                    let keep = rng.gen_range(0..=f.log.len());
                    let mut data = std::mem::take(&mut f.durable);
                    for (i, op) in f.log.drain(..).enumerate() {
                        if i > keep {
                            break;
                        }
                        if i == keep {
                            // The first lost operation may be torn.
                            if let Op::Write { pos, data: bytes } = &op {
                                let sectors = bytes.len().div_ceil(SECTOR);
                                let kept = rng.gen_range(0..=sectors) * SECTOR;
                                let kept = kept.min(bytes.len());
                                if kept > 0 && rng.gen_bool(0.5) {
                                    apply_write(&mut data, *pos, &bytes[..kept]);
                                }
                            }
                            break;
                        }
                        apply_op(&mut data, &op);
                    }
                    f.data = data.clone();
                    f.durable = data;
                }
            }
        }
    }

    /// The durable and visible contents agree everywhere (nothing unsynced).
    pub fn all_durable(&self) -> bool {
        self.state.borrow().nodes.values().all(|n| match n {
            Node::File(f) => f.log.is_empty(),
            Node::Dir(d) => d.entries == d.durable,
        })
    }

    /// Flip a byte of a file in place, durably (bit rot), for corruption tests.
    pub fn corrupt(&self, path: &Path, pos: u64) -> io::Result<()> {
        let mut st = self.state.borrow_mut();
        let ino = Self::lookup(&st, path)?;
        let f = Self::file_mut(&mut st, ino).ok_or_else(|| io::Error::from_raw_os_error(libc::EISDIR))?;
        let i = pos as usize;
        if i < f.data.len() {
            f.data[i] ^= 0x5a;
        }
        if i < f.durable.len() {
            f.durable[i] ^= 0x5a;
        }
        Ok(())
    }
}

/// Operation kinds for latency draws.
#[derive(Clone, Copy, Debug)]
pub enum LatencyKind {
    Read,
    Write,
    Sync,
    Meta,
}

fn apply_write(buf: &mut Vec<u8>, pos: u64, data: &[u8]) {
    let pos = pos as usize;
    let end = pos + data.len();
    if buf.len() < end {
        buf.resize(end, 0);
    }
    buf[pos..end].copy_from_slice(data);
}

fn apply_op(buf: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write { pos, data } => apply_write(buf, *pos, data),
        Op::Truncate(len) => buf.resize(*len as usize, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_data_and_entries_can_be_lost() {
        let d = Disk::new(DiskConfig::default(), 1);
        d.create_dir_all(Path::new("/data")).unwrap();
        d.sync_dir(Path::new("/")).unwrap();
        d.sync_dir(Path::new("/data")).unwrap();
        d.create_dir_all(Path::new("/data/t-0")).unwrap();
        let f = d.open(Path::new("/data/t-0/a.log"), true, false, false, 0).unwrap();
        d.write_at(f, Path::new("x"), 0, b"hello", false, 0).unwrap();
        d.sync(f, Path::new("x")).unwrap();
        // data synced but the entry is not: a power loss loses the file
        d.power_loss();
        assert!(d.metadata(Path::new("/data/t-0/a.log")).is_err());
        assert!(
            d.metadata(Path::new("/data/t-0")).is_err(),
            "t-0 itself was never synced into /data"
        );
    }

    #[test]
    fn synced_prefix_survives_and_enospc() {
        let d = Disk::new(
            DiskConfig {
                capacity: 10,
                ..DiskConfig::default()
            },
            2,
        );
        let f = d.open(Path::new("/a"), true, false, false, 0).unwrap();
        d.sync_dir(Path::new("/")).unwrap();
        d.write_at(f, Path::new("/a"), 0, b"12345", false, 0).unwrap();
        d.sync(f, Path::new("/a")).unwrap();
        let e = d.write_at(f, Path::new("/a"), 5, b"678901", false, 0).unwrap_err();
        assert_eq!(crate::io::errno(&e), Some(libc::ENOSPC));
        d.write_at(f, Path::new("/a"), 5, b"67", false, 0).unwrap();
        d.power_loss();
        let got = d.read_at(f, Path::new("/a"), 0, 100).unwrap();
        assert!(got.starts_with(b"12345"), "{got:?}");
        assert!(got.len() <= 7);
    }
}
