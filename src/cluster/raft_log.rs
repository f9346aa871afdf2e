//! The controller quorum's Raft log on disk (docs/design/replication.md,
//! 5.2 and 5.4): what [`RaftStore`] holds in memory, made durable before
//! the messages that depend on it are sent, and read back after a restart.
//!
//! Three files in the metadata log directory (`__cluster_metadata-0`):
//!
//! - `raft.log`: the entries after the snapshot, appended in frames
//!   `[len: u32][crc: u32][entry]` (big-endian; `entry` in raft-rs's
//!   protobuf encoding, `crc` the CRC-32C of the length bytes and the
//!   entry, so a zero-filled tail never passes for a frame). An in-memory
//!   table maps each index to its frame's offset: a conflicting append
//!   (a new leader overwriting an uncommitted suffix) truncates the file
//!   there first.
//! - `quorum-state`: the hard state (term, vote, commit), one frame,
//!   replaced atomically (temp file, fsync, rename, directory fsync).
//! - `snapshot`: the last snapshot (metadata and image), one frame, replaced
//!   atomically. Writing it comes first; then `raft.log` is rewritten
//!   without the entries it covers (temp file, fsync, rename, directory
//!   fsync). A crash in between leaves entries the snapshot covers in the
//!   log: opening skips them and finishes the rewrite.
//!
//! Opening never panics on what it reads: a torn or corrupt frame (a crash
//! in the middle of an append, a damaged block) ends the log there and is
//! truncated away, as is anything after an entry that does not continue
//! the log (index gap, decreasing term). A damaged `quorum-state` or
//! `snapshot` (written atomically, so only real damage) fails the open, as
//! does a hard state committing past the last entry that survived.

use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState, Snapshot};

use super::raft_node::Output;
use super::raft_store::RaftStore;
use crate::io::file::{read_file, write_file_atomic, IoMode, LogFile};
use crate::io::fs;

const LOG_FILE: &str = "raft.log";
const LOG_TMP: &str = "raft.log.tmp";
const STATE_FILE: &str = "quorum-state";
const SNAPSHOT_FILE: &str = "snapshot";
/// Frame header: length and CRC.
const HEADER: usize = 8;
/// Reads and rewrites of `raft.log` go in pieces of at most this size.
const CHUNK: u64 = 1 << 20;

/// Where an entry of `raft.log` is, and its term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    offset: u64,
    term: u64,
}

/// The durable side of the controller quorum's Raft log.
pub struct RaftDisk {
    dir: PathBuf,
    log: LogFile,
    /// Last index the snapshot covers (0 without a snapshot). `raft.log`
    /// holds exactly the entries `snap_index + 1 ..= last_index()`.
    snap_index: u64,
    /// The entries in `raft.log`, in index order from `snap_index + 1`.
    spans: Vec<Span>,
    /// End of the last frame: the length of `raft.log`.
    end: u64,
    /// An earlier write or sync failed: what is on disk is unknown, so
    /// nothing more is written (the node must restart and recover).
    failed: bool,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn frame_crc(len: [u8; 4], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len), body)
}

/// Append one frame holding `m` to `out`.
fn encode_frame(out: &mut Vec<u8>, m: &impl protobuf::Message) -> io::Result<()> {
    let body = m.write_to_bytes().map_err(io::Error::other)?;
    let len = u32::try_from(body.len())
        .map_err(|_| invalid(format!("raft record of {} bytes is too large", body.len())))?
        .to_be_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&frame_crc(len, &body).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

/// Why a frame could not be read.
#[derive(Debug, PartialEq, Eq)]
enum BadFrame {
    /// The bytes end inside the frame: an append cut short.
    Torn,
    /// The frame is whole but its CRC does not match.
    Crc,
}

/// The frame at the start of `bytes`: its body and its length on disk.
fn decode_frame(bytes: &[u8]) -> Result<(&[u8], usize), BadFrame> {
    let (len, rest) = bytes.split_first_chunk::<4>().ok_or(BadFrame::Torn)?;
    let (crc, rest) = rest.split_first_chunk::<4>().ok_or(BadFrame::Torn)?;
    let n = u32::from_be_bytes(*len) as usize;
    let body = rest.get(..n).ok_or(BadFrame::Torn)?;
    if frame_crc(*len, body) != u32::from_be_bytes(*crc) {
        return Err(BadFrame::Crc);
    }
    Ok((body, HEADER + n))
}

/// The entries read from `raft.log`: the longest prefix of whole, valid,
/// contiguous frames.
struct Scan {
    /// Each entry with its frame's offset.
    entries: Vec<(u64, Entry)>,
    /// End of the last good frame.
    end: u64,
    /// Why the scan stopped before the end of the file, if it did.
    stop: Option<String>,
}

fn scan(bytes: &[u8]) -> Scan {
    let mut entries: Vec<(u64, Entry)> = Vec::new();
    let mut at = 0usize;
    let mut stop = None;
    while at < bytes.len() {
        let (body, n) = match decode_frame(&bytes[at..]) {
            Ok(f) => f,
            Err(BadFrame::Torn) => {
                stop = Some("a torn frame (an append cut short)".to_string());
                break;
            }
            Err(BadFrame::Crc) => {
                stop = Some("a frame with a bad CRC".to_string());
                break;
            }
        };
        let e = match Entry::parse_from_bytes(body) {
            Ok(e) => e,
            Err(err) => {
                stop = Some(format!("a frame that does not decode as an entry ({err})"));
                break;
            }
        };
        if let Some((_, prev)) = entries.last() {
            if e.index != prev.index + 1 {
                stop = Some(format!("entry {} after entry {} (a gap)", e.index, prev.index));
                break;
            }
            if e.term < prev.term {
                stop = Some(format!(
                    "entry {} of term {} after one of term {}",
                    e.index, e.term, prev.term
                ));
                break;
            }
        }
        entries.push((at as u64, e));
        at += n;
    }
    Scan {
        entries,
        end: at as u64,
        stop,
    }
}

/// Read a file written whole and atomically holding one frame; `None` if
/// it does not exist.
async fn read_record<M: protobuf::Message>(path: &Path) -> anyhow::Result<Option<M>> {
    let Some(bytes) = read_file(path)
        .await
        .with_context(|| format!("reading {}", path.display()))?
    else {
        return Ok(None);
    };
    let (body, n) = decode_frame(&bytes).map_err(|e| anyhow::anyhow!("{} is damaged ({e:?})", path.display()))?;
    if n != bytes.len() {
        anyhow::bail!("{} is damaged ({} trailing bytes)", path.display(), bytes.len() - n);
    }
    let m = M::parse_from_bytes(body).with_context(|| format!("decoding {}", path.display()))?;
    Ok(Some(m))
}

async fn write_record(path: &Path, m: &impl protobuf::Message) -> io::Result<()> {
    let mut buf = Vec::new();
    encode_frame(&mut buf, m)?;
    write_file_atomic(path, &buf).await
}

/// Read `from..to` of `file` whole.
async fn read_range(file: &LogFile, from: u64, to: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut pos = from;
    while pos < to {
        let want = (to - pos).min(CHUNK) as usize;
        let got = file.read_at(pos, want).await?;
        if got.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("raft log ends at {pos}, expected {to} bytes"),
            ));
        }
        pos += got.len() as u64;
        out.extend_from_slice(&got);
    }
    Ok(out)
}

/// Replace `raft.log` in `dir` by `data`, durably: a temp file, synced,
/// renamed over it, the directory synced. Returns the new file.
async fn replace_log(dir: &Path, data: &[u8]) -> io::Result<LogFile> {
    let tmp = dir.join(LOG_TMP);
    let f = LogFile::open(&tmp, IoMode::Buffered).await?;
    f.truncate(0).await?;
    let mut at = 0u64;
    for piece in data.chunks(CHUNK as usize) {
        f.append(at, &[], &[Bytes::copy_from_slice(piece)]).await?;
        at += piece.len() as u64;
    }
    f.sync().await?;
    drop(f);
    let path = dir.join(LOG_FILE);
    fs::rename(&tmp, &path).await?;
    fs::sync_dir(dir).await?;
    LogFile::open(&path, IoMode::Buffered).await
}

impl RaftDisk {
    /// Open (creating if missing, durably) the metadata log directory `dir`
    /// (full path, e.g. data_dir/__cluster_metadata-0) and rebuild the
    /// in-memory store from it.
    pub async fn open(dir: &Path, voters: &[u64]) -> anyhow::Result<(RaftDisk, RaftStore)> {
        fs::create_dir_durable(dir)
            .await
            .with_context(|| format!("creating {}", dir.display()))?;
        // A rewrite of the log interrupted by a crash (the log itself is
        // whole: the temp file is renamed only once synced).
        let tmp = dir.join(LOG_TMP);
        if fs::exists(&tmp).await {
            fs::remove_file(&tmp)
                .await
                .with_context(|| format!("removing {}", tmp.display()))?;
        }
        let snapshot: Option<Snapshot> = read_record(&dir.join(SNAPSHOT_FILE)).await?;
        let hard_state: Option<HardState> = read_record(&dir.join(STATE_FILE)).await?;
        let (snap_index, snap_term) = snapshot
            .as_ref()
            .map_or((0, 0), |s| (s.get_metadata().index, s.get_metadata().term));

        let path = dir.join(LOG_FILE);
        let log = LogFile::open(&path, IoMode::Buffered)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        // The file may have just been created.
        fs::sync_dir(dir)
            .await
            .with_context(|| format!("syncing {}", dir.display()))?;
        let size = log.size().await.with_context(|| format!("sizing {}", path.display()))?;
        let bytes = read_range(&log, 0, size)
            .await
            .with_context(|| format!("reading {}", path.display()))?;
        let Scan { entries, end, stop } = scan(&bytes);
        if let Some(why) = stop {
            tracing::warn!(
                path = %path.display(),
                at = end,
                dropped_bytes = size - end,
                "the raft log stops at {why}: the bytes from there on are dropped"
            );
        }

        // What the store keeps of the log after the snapshot (as
        // `RaftStore::apply_snapshot` decides): the entries after it if the
        // log agrees with it at its index, none if the log disagrees.
        let disagrees = snap_index > 0
            && entries
                .iter()
                .any(|(_, e)| e.index == snap_index && e.term != snap_term);
        let mut keep_from = entries.partition_point(|(_, e)| e.index <= snap_index);
        if disagrees {
            tracing::warn!(
                path = %path.display(),
                snapshot_index = snap_index,
                "the raft log disagrees with the snapshot at its index: its entries are dropped"
            );
            keep_from = entries.len();
        }
        if let Some((_, e)) = entries.get(keep_from) {
            if e.index != snap_index + 1 {
                tracing::warn!(
                    path = %path.display(),
                    snapshot_index = snap_index,
                    first_entry = e.index,
                    "the raft log does not start right after the snapshot: its entries are dropped"
                );
                keep_from = entries.len();
            }
        }
        // The kept entries are the bytes `start..end` of the file.
        let start = entries.get(keep_from).map_or(end, |(o, _)| *o);
        let log = if start > 0 {
            // Entries the snapshot covers (a crash between writing it and
            // rewriting the log), or none kept: rewrite the file with the
            // kept ones only.
            let kept_bytes = bytes.get(start as usize..end as usize).unwrap_or_default();
            replace_log(dir, kept_bytes)
                .await
                .with_context(|| format!("rewriting {}", path.display()))?
        } else {
            if end < size {
                let cut = async {
                    log.truncate(end).await?;
                    log.sync().await
                };
                cut.await
                    .with_context(|| format!("truncating {} to {end} bytes", path.display()))?;
            }
            log
        };
        drop(bytes);

        let mut spans = Vec::with_capacity(entries.len() - keep_from);
        let mut kept = Vec::with_capacity(entries.len() - keep_from);
        for (offset, e) in entries.into_iter().skip(keep_from) {
            spans.push(Span {
                offset: offset - start,
                term: e.term,
            });
            kept.push(e);
        }
        let disk = RaftDisk {
            dir: dir.to_path_buf(),
            log,
            snap_index,
            spans,
            end: end - start,
            failed: false,
        };

        let store = if snapshot.is_none() && kept.is_empty() && hard_state.is_none() {
            RaftStore::new(voters)
        } else {
            let mut hs = hard_state.unwrap_or_default();
            // Everything the snapshot covers is committed (raft-rs refuses
            // a commit index below it).
            hs.commit = hs.commit.max(snap_index);
            RaftStore::restore(voters, snapshot, kept, hs)
                .map_err(|e| anyhow::anyhow!("restoring the raft log from {}: {e}", dir.display()))?
        };
        Ok((disk, store))
    }

    /// Make one raft-rs Ready durable (fsynced) before its messages are
    /// sent: the snapshot (written atomically, the entries it covers
    /// dropped), the entries (a conflicting suffix truncated first), the
    /// hard state (written atomically), in that order.
    pub async fn persist(&mut self, out: &Output) -> io::Result<()> {
        self.check()?;
        let r = self.persist_inner(out).await;
        self.failed = r.is_err();
        r
    }

    async fn persist_inner(&mut self, out: &Output) -> io::Result<()> {
        if let Some(snap) = &out.snapshot {
            self.install_snapshot(snap).await?;
        }
        if !out.entries.is_empty() {
            self.append(&out.entries).await?;
        }
        if let Some(hs) = &out.hard_state {
            write_record(&self.dir.join(STATE_FILE), hs).await?;
        }
        Ok(())
    }

    /// After the shell compacts the in-memory store to a snapshot
    /// (`RaftNode::compact` / `RaftStore::compact_to_snapshot`), persist
    /// that snapshot and drop log entries at or below it.
    pub async fn compact(&mut self, snapshot: &Snapshot) -> io::Result<()> {
        self.check()?;
        let index = snapshot.get_metadata().index;
        if index <= self.snap_index {
            return Ok(());
        }
        let r = async {
            write_record(&self.dir.join(SNAPSHOT_FILE), snapshot).await?;
            self.retain_after(index).await
        }
        .await;
        self.failed = r.is_err();
        r
    }

    pub fn last_index(&self) -> u64 {
        self.snap_index + self.spans.len() as u64
    }

    pub fn snapshot_index(&self) -> u64 {
        self.snap_index
    }

    /// Bytes of log entries on disk since the snapshot.
    pub fn bytes(&self) -> u64 {
        self.end
    }

    fn check(&self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other(format!(
                "the raft log in {} failed earlier and takes no more writes",
                self.dir.display()
            )));
        }
        Ok(())
    }

    /// A snapshot raft-rs received (from the leader): as
    /// `RaftStore::apply_snapshot`, the log keeps the entries after it only
    /// if it holds the snapshot's last entry with the same term.
    async fn install_snapshot(&mut self, snap: &Snapshot) -> io::Result<()> {
        let meta = snap.get_metadata();
        if meta.index < self.snap_index {
            return Err(invalid(format!(
                "snapshot at {} is older than the persisted one at {}",
                meta.index, self.snap_index
            )));
        }
        let agrees = meta.index > self.snap_index && self.term_of(meta.index) == Some(meta.term);
        write_record(&self.dir.join(SNAPSHOT_FILE), snap).await?;
        if agrees {
            self.retain_after(meta.index).await
        } else {
            self.clear().await?;
            self.snap_index = meta.index;
            Ok(())
        }
    }

    /// The term of an entry in the log (not the snapshot's).
    fn term_of(&self, index: u64) -> Option<u64> {
        let k = index.checked_sub(self.snap_index + 1)?;
        self.spans.get(usize::try_from(k).ok()?).map(|s| s.term)
    }

    /// Empty the log file durably.
    async fn clear(&mut self) -> io::Result<()> {
        if self.end > 0 {
            self.log.truncate(0).await?;
            self.log.sync().await?;
        }
        self.spans.clear();
        self.end = 0;
        Ok(())
    }

    /// The snapshot now covers `index` (at least the current snapshot
    /// index): drop the entries up to it from the file.
    async fn retain_after(&mut self, index: u64) -> io::Result<()> {
        let drop_n = usize::try_from(index - self.snap_index).unwrap_or(usize::MAX);
        if drop_n >= self.spans.len() {
            self.clear().await?;
        } else if drop_n > 0 {
            let base = self.spans[drop_n].offset;
            let rest = read_range(&self.log, base, self.end).await?;
            self.log = replace_log(&self.dir, &rest).await?;
            self.spans.drain(..drop_n);
            for s in &mut self.spans {
                s.offset -= base;
            }
            self.end -= base;
        }
        self.snap_index = index;
        Ok(())
    }

    /// Append entries (contiguous), first cutting the log's tail from the
    /// first one's index if it already holds that index.
    async fn append(&mut self, entries: &[Entry]) -> io::Result<()> {
        let Some(head) = entries.first() else {
            return Ok(());
        };
        let (first, next) = (self.snap_index + 1, self.last_index() + 1);
        if head.index < first || head.index > next {
            return Err(invalid(format!(
                "appending entry {} to a raft log holding {first}..{next}",
                head.index
            )));
        }
        if let Some(w) = entries.windows(2).find(|w| w[1].index != w[0].index + 1) {
            return Err(invalid(format!(
                "entries to append are not contiguous ({} then {})",
                w[0].index, w[1].index
            )));
        }
        if head.index < next {
            // A conflicting suffix (raft's overwrite): cut it off, durably,
            // before anything is written over it, so that a crash never
            // leaves a mix of old and new frames.
            let keep = (head.index - first) as usize;
            let cut = self.spans[keep].offset;
            self.log.truncate(cut).await?;
            self.log.sync().await?;
            self.spans.truncate(keep);
            self.end = cut;
        }
        let mut buf = Vec::new();
        let mut spans = Vec::with_capacity(entries.len());
        for e in entries {
            spans.push(Span {
                offset: self.end + buf.len() as u64,
                term: e.term,
            });
            encode_frame(&mut buf, e)?;
        }
        let n = buf.len() as u64;
        self.log.append(self.end, &[], &[Bytes::from(buf)]).await?;
        self.log.sync().await?;
        self.spans.extend(spans);
        self.end += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use raft::eraftpb::ConfState;
    use raft::{GetEntriesContext, Storage};

    use super::*;

    const VOTERS: &[u64] = &[1, 2, 3];

    fn on_executor<F, Fut>(f: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        crate::io::executor::run_test_executor("raft-log-test", f)
    }

    fn ent(index: u64, term: u64) -> Entry {
        let mut e = Entry {
            index,
            term,
            ..Default::default()
        };
        e.data = Bytes::from(format!("entry {index} of term {term}").into_bytes());
        e
    }

    fn ents(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
        range.map(|i| ent(i, term)).collect()
    }

    fn hs(term: u64, vote: u64, commit: u64) -> HardState {
        HardState {
            term,
            vote,
            commit,
            ..Default::default()
        }
    }

    fn output(entries: Vec<Entry>, hard_state: Option<HardState>) -> Output {
        Output {
            entries,
            hard_state,
            ..Default::default()
        }
    }

    fn frame_len(e: &Entry) -> u64 {
        let mut buf = Vec::new();
        encode_frame(&mut buf, e).unwrap();
        buf.len() as u64
    }

    /// (index, term, data) of every entry the store holds after its snapshot.
    fn held(store: &RaftStore) -> Vec<(u64, u64, Vec<u8>)> {
        let (first, last) = (store.first_index().unwrap(), store.last_index().unwrap());
        store
            .entries(first, last + 1, None, GetEntriesContext::empty(false))
            .unwrap()
            .into_iter()
            .map(|e| (e.index, e.term, e.data.to_vec()))
            .collect()
    }

    fn expect(entries: &[Entry]) -> Vec<(u64, u64, Vec<u8>)> {
        entries.iter().map(|e| (e.index, e.term, e.data.to_vec())).collect()
    }

    fn log_len(dir: &Path) -> u64 {
        std::fs::metadata(dir.join(LOG_FILE)).unwrap().len()
    }

    /// Open `dir` on an executor and check it with `f`.
    /// Open the log in `dir` on an executor and hand it to `f`.
    fn with_disk<F, Fut>(dir: &Path, f: F)
    where
        F: FnOnce(RaftDisk) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let dir = dir.to_path_buf();
        on_executor(move || async move {
            let (disk, _) = RaftDisk::open(&dir, VOTERS).await.unwrap();
            f(disk).await;
        });
    }

    fn reopen(dir: &Path, f: impl FnOnce(&RaftDisk, &RaftStore) + Send + 'static) {
        let dir = dir.to_path_buf();
        on_executor(move || async move {
            let (disk, store) = RaftDisk::open(&dir, VOTERS).await.unwrap();
            f(&disk, &store);
        });
    }

    #[test]
    fn an_empty_directory_opens_as_an_empty_log() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data").join("__cluster_metadata-0");
        reopen(&dir, |disk, store| {
            assert_eq!((disk.last_index(), disk.snapshot_index(), disk.bytes()), (0, 0, 0));
            assert_eq!((store.first_index().ok(), store.last_index().ok()), (Some(1), Some(0)));
            assert_eq!(store.hard_state(), &HardState::default());
            assert_eq!(store.conf_state().get_voters(), VOTERS);
        });
        assert!(dir.join(LOG_FILE).exists(), "the log file was created");
        reopen(&dir, |disk, store| {
            assert_eq!((disk.last_index(), store.last_index().ok()), (0, Some(0)));
        });
    }

    #[test]
    fn appended_entries_and_the_hard_state_survive_a_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        with_disk(&dir, |mut disk| async move {
            disk.persist(&output(ents(1..=3, 1), Some(hs(1, 2, 1)))).await.unwrap();
            disk.persist(&output(ents(4..=5, 2), Some(hs(2, 3, 4)))).await.unwrap();
            disk.persist(&output(vec![], Some(hs(2, 3, 5)))).await.unwrap();
            assert_eq!(disk.last_index(), 5);
        });
        let all: Vec<Entry> = ents(1..=3, 1).into_iter().chain(ents(4..=5, 2)).collect();
        let size: u64 = all.iter().map(frame_len).sum();
        assert_eq!(log_len(&dir), size);
        reopen(&dir, move |disk, store| {
            assert_eq!((disk.last_index(), disk.snapshot_index(), disk.bytes()), (5, 0, size));
            assert_eq!(held(store), expect(&all));
            assert_eq!(store.hard_state(), &hs(2, 3, 5));
        });
    }

    #[test]
    fn a_conflicting_append_truncates_the_tail() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        with_disk(&dir, |mut disk| async move {
            disk.persist(&output(ents(1..=5, 1), Some(hs(1, 1, 2)))).await.unwrap();
            // A new leader overwrites the uncommitted 3..=5 with a shorter suffix.
            disk.persist(&output(ents(3..=4, 2), Some(hs(2, 2, 2)))).await.unwrap();
            assert_eq!(disk.last_index(), 4);
            // Misuse is an error, not a panic (and leaves the log usable
            // for a restart).
            let gap = disk.persist(&output(ents(6..=6, 2), None)).await;
            assert_eq!(gap.map_err(|e| e.kind()), Err(io::ErrorKind::InvalidInput));
        });
        let want: Vec<Entry> = ents(1..=2, 1).into_iter().chain(ents(3..=4, 2)).collect();
        let size: u64 = want.iter().map(frame_len).sum();
        assert_eq!(log_len(&dir), size, "the old tail is gone from the file");
        let d = dir.clone();
        on_executor(move || async move {
            let (mut disk, store) = RaftDisk::open(&d, VOTERS).await.unwrap();
            assert_eq!(held(&store), expect(&want));
            assert_eq!(disk.bytes(), size);
            // Overwrite again, at the very first entry, then grow.
            disk.persist(&output(ents(1..=1, 3), None)).await.unwrap();
            disk.persist(&output(ents(2..=3, 3), Some(hs(3, 3, 1)))).await.unwrap();
        });
        reopen(&dir, |disk, store| {
            assert_eq!(held(store), expect(&ents(1..=3, 3)));
            assert_eq!(disk.last_index(), 3);
            assert_eq!(store.hard_state(), &hs(3, 3, 1));
        });
    }

    /// Write 1..=3, hand the file to `damage`, reopen: the entries left
    /// are 1..=`survivors`, the file holds exactly them, and appending
    /// after them works.
    fn damaged_tail(damage: impl FnOnce(&Path), survivors: u64) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        with_disk(&dir, |mut disk| async move {
            disk.persist(&output(ents(1..=3, 1), Some(hs(1, 1, 1)))).await.unwrap();
        });
        damage(&dir.join(LOG_FILE));
        let size: u64 = ents(1..=survivors, 1).iter().map(frame_len).sum();
        let d = dir.clone();
        on_executor(move || async move {
            let (mut disk, store) = RaftDisk::open(&d, VOTERS).await.unwrap();
            assert_eq!(held(&store), expect(&ents(1..=survivors, 1)));
            assert_eq!((disk.last_index(), disk.bytes()), (survivors, size));
            let on_disk = fs::metadata(&d.join(LOG_FILE)).await.unwrap().len;
            assert_eq!(on_disk, size, "the damaged tail is cut off the file");
            disk.persist(&output(ents(survivors + 1..=survivors + 1, 2), None))
                .await
                .unwrap();
        });
        reopen(&dir, move |disk, store| {
            let want: Vec<Entry> = ents(1..=survivors, 1)
                .into_iter()
                .chain(ents(survivors + 1..=survivors + 1, 2))
                .collect();
            assert_eq!(held(store), expect(&want));
            assert_eq!(disk.last_index(), survivors + 1);
        });
    }

    #[test]
    fn garbage_after_the_last_frame_is_dropped() {
        damaged_tail(
            |p| {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
                f.write_all(&[0xab; 5]).unwrap();
            },
            3,
        );
    }

    #[test]
    fn a_zero_filled_tail_is_dropped() {
        damaged_tail(
            |p| {
                let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
                f.set_len(f.metadata().unwrap().len() + 4096).unwrap();
            },
            3,
        );
    }

    #[test]
    fn a_torn_last_frame_is_dropped() {
        damaged_tail(
            |p| {
                let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
                f.set_len(f.metadata().unwrap().len() - 3).unwrap();
            },
            2,
        );
        // Cut inside the last frame's header.
        damaged_tail(
            |p| {
                let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
                let last = frame_len(&ent(3, 1));
                f.set_len(f.metadata().unwrap().len() - last + 5).unwrap();
            },
            2,
        );
    }

    #[test]
    fn a_bad_crc_in_the_middle_ends_the_log_there() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        with_disk(&dir, |mut disk| async move {
            disk.persist(&output(ents(1..=5, 1), Some(hs(1, 1, 2)))).await.unwrap();
        });
        // Flip a byte in the body of entry 3.
        let at = frame_len(&ent(1, 1)) + frame_len(&ent(2, 1)) + HEADER as u64 + 2;
        let path = dir.join(LOG_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[at as usize] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let size: u64 = ents(1..=2, 1).iter().map(frame_len).sum();
        reopen(&dir, move |disk, store| {
            assert_eq!(held(store), expect(&ents(1..=2, 1)));
            assert_eq!((disk.last_index(), disk.bytes()), (2, size));
            assert_eq!(store.hard_state(), &hs(1, 1, 2));
        });
        assert_eq!(log_len(&dir), size);
    }

    #[test]
    fn frames_that_do_not_continue_the_log_end_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(LOG_FILE);
        let write = |entries: &[Entry]| {
            let mut buf = Vec::new();
            for e in entries {
                encode_frame(&mut buf, e).unwrap();
            }
            std::fs::write(&path, buf).unwrap();
        };
        // A gap after 2.
        write(&[ent(1, 1), ent(2, 1), ent(4, 1)]);
        reopen(tmp.path(), |disk, store| {
            assert_eq!(held(store), expect(&ents(1..=2, 1)));
            assert_eq!(disk.last_index(), 2);
        });
        // A term going down after 2.
        write(&[ent(1, 2), ent(2, 2), ent(3, 1)]);
        reopen(tmp.path(), |_, store| {
            assert_eq!(held(store), expect(&ents(1..=2, 2)));
        });
        // Without a snapshot the log must start at 1.
        write(&[ent(2, 1), ent(3, 1)]);
        reopen(tmp.path(), |disk, store| {
            assert_eq!((disk.last_index(), disk.bytes()), (0, 0));
            assert_eq!(store.last_index().ok(), Some(0));
        });
        assert_eq!(log_len(tmp.path()), 0);
    }

    #[test]
    fn snapshots_compact_the_log_and_survive_a_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let d = dir.clone();
        on_executor(move || async move {
            let (mut disk, mut store) = RaftDisk::open(&d, VOTERS).await.unwrap();
            let out = output(ents(1..=6, 1), Some(hs(1, 1, 5)));
            store.append(&out.entries).unwrap();
            store.set_hard_state(hs(1, 1, 5));
            disk.persist(&out).await.unwrap();
            // As the shell does: compact the store, then the disk.
            store.compact_to_snapshot(4, Bytes::from_static(b"image at 4")).unwrap();
            disk.compact(&store.current_snapshot()).await.unwrap();
            assert_eq!((disk.snapshot_index(), disk.last_index()), (4, 6));
            assert_eq!(disk.bytes(), frame_len(&ent(5, 1)) + frame_len(&ent(6, 1)));
            // An older (or the same) snapshot changes nothing.
            disk.compact(&store.current_snapshot()).await.unwrap();
            assert_eq!((disk.snapshot_index(), disk.last_index()), (4, 6));
        });
        let size = frame_len(&ent(5, 1)) + frame_len(&ent(6, 1));
        assert_eq!(log_len(&dir), size);
        let d = dir.clone();
        on_executor(move || async move {
            let (mut disk, store) = RaftDisk::open(&d, VOTERS).await.unwrap();
            assert_eq!((disk.snapshot_index(), disk.last_index(), disk.bytes()), (4, 6, size));
            assert_eq!(store.snapshot_index(), 4);
            assert_eq!(store.term(4).ok(), Some(1));
            assert_eq!(&store.current_snapshot().data[..], b"image at 4");
            assert_eq!(held(&store), expect(&ents(5..=6, 1)));
            assert_eq!(store.hard_state(), &hs(1, 1, 5));
            assert!(
                disk.persist(&output(ents(4..=4, 2), None)).await.is_err(),
                "overwriting what the snapshot covers"
            );
        });
        with_disk(&dir, |mut disk| async move {
            // Compacting past the whole log empties the file.
            let mut snap = Snapshot::default();
            snap.mut_metadata().index = 6;
            snap.mut_metadata().term = 1;
            snap.mut_metadata().set_conf_state(conf(VOTERS));
            disk.compact(&snap).await.unwrap();
            assert_eq!((disk.snapshot_index(), disk.last_index(), disk.bytes()), (6, 6, 0));
            disk.persist(&output(ents(7..=7, 2), Some(hs(2, 2, 7)))).await.unwrap();
        });
        reopen(&dir, |disk, store| {
            assert_eq!((disk.snapshot_index(), disk.last_index()), (6, 7));
            assert_eq!(held(store), expect(&ents(7..=7, 2)));
        });
    }

    fn conf(voters: &[u64]) -> ConfState {
        let mut c = ConfState::default();
        c.set_voters(voters.to_vec());
        c
    }

    fn snapshot(index: u64, term: u64, data: &'static [u8]) -> Snapshot {
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = index;
        snap.mut_metadata().term = term;
        snap.mut_metadata().set_conf_state(conf(VOTERS));
        snap.data = Bytes::from_static(data);
        snap
    }

    #[test]
    fn a_received_snapshot_keeps_only_a_log_that_agrees_with_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        with_disk(&dir, |mut disk| async move {
            disk.persist(&output(ents(1..=4, 1), Some(hs(1, 0, 1)))).await.unwrap();
            // Agrees at 2: 3 and 4 stay.
            let out = Output {
                snapshot: Some(snapshot(2, 1, b"two")),
                hard_state: Some(hs(1, 0, 2)),
                ..Default::default()
            };
            disk.persist(&out).await.unwrap();
            assert_eq!((disk.snapshot_index(), disk.last_index()), (2, 4));
        });
        reopen(&dir, |_, store| {
            assert_eq!(store.snapshot_index(), 2);
            assert_eq!(held(store), expect(&ents(3..=4, 1)));
        });
        with_disk(&dir, |mut disk| async move {
            // Disagrees at 4 (term 2, not 1): the log restarts after it.
            let out = Output {
                snapshot: Some(snapshot(4, 2, b"four")),
                entries: ents(5..=5, 2),
                hard_state: Some(hs(2, 0, 4)),
                ..Default::default()
            };
            disk.persist(&out).await.unwrap();
            assert_eq!((disk.snapshot_index(), disk.last_index()), (4, 5));
            let old = Output {
                snapshot: Some(snapshot(3, 1, b"old")),
                ..Default::default()
            };
            assert!(disk.persist(&old).await.is_err(), "an older snapshot is refused");
        });
        reopen(&dir, |disk, store| {
            assert_eq!((disk.snapshot_index(), disk.last_index()), (4, 5));
            assert_eq!(&store.current_snapshot().data[..], b"four");
            assert_eq!(store.term(4).ok(), Some(2));
            assert_eq!(held(store), expect(&ents(5..=5, 2)));
        });
    }

    /// A crash after the snapshot was written but before the log was
    /// rewritten: opening skips (or, if the log disagrees, drops) what the
    /// snapshot covers and finishes the rewrite.
    #[test]
    fn entries_the_snapshot_covers_are_skipped_on_open() {
        for (term, survivors) in [(1, ents(5..=6, 1)), (9, vec![])] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().to_path_buf();
            let snap_file = dir.join(SNAPSHOT_FILE);
            with_disk(&dir, move |mut disk| async move {
                disk.persist(&output(ents(1..=6, 1), Some(hs(9, 0, 4)))).await.unwrap();
                write_record(&snap_file, &snapshot(4, term, b"img")).await.unwrap();
            });
            let size: u64 = survivors.iter().map(frame_len).sum();
            reopen(&dir, move |disk, store| {
                assert_eq!(store.snapshot_index(), 4);
                assert_eq!(held(store), expect(&survivors));
                assert_eq!((disk.snapshot_index(), disk.bytes()), (4, size));
            });
            assert_eq!(log_len(&dir), size, "the log was rewritten");
            assert!(!dir.join(LOG_TMP).exists());
        }
    }

    #[test]
    fn a_commit_index_past_the_log_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        with_disk(&dir, |mut disk| async move {
            disk.persist(&output(ents(1..=3, 1), Some(hs(1, 1, 3)))).await.unwrap();
        });
        // Entry 3 is lost (a torn frame): the commit index points past the log.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join(LOG_FILE))
            .unwrap();
        f.set_len(f.metadata().unwrap().len() - 1).unwrap();
        let d = dir.clone();
        on_executor(move || async move {
            let err = RaftDisk::open(&d, VOTERS).await.err().expect("an error");
            assert!(format!("{err:#}").contains("beyond the last"), "{err:#}");
        });
        // A damaged hard state is an error too.
        std::fs::write(dir.join(STATE_FILE), b"\0\0\0\x09garbage").unwrap();
        let d = dir.clone();
        on_executor(move || async move {
            let err = RaftDisk::open(&d, VOTERS).await.err().expect("an error");
            assert!(format!("{err:#}").contains("damaged"), "{err:#}");
        });
    }
}
