//! Opt-in debug hook that records received request frames, for the fuzz
//! seed corpus (`scripts/fuzz-seeds.sh`).
//!
//! With `RINGLOG_CAPTURE_FRAMES=DIR` in the environment, each received
//! request frame is written, size prefix included (the bytes as they came
//! off the socket), to `DIR/<api key>-v<version>-<n>.bin`, at most
//! [`PER_API_VERSION`] distinct frames per API key and version (over all
//! shards and brokers sharing `DIR`) and none larger than [`MAX_FRAME`].
//! The writes are blocking and on the shard thread: a debugging aid, never
//! for production. Without the variable this costs one load and a branch.

use crate::io::rand::{HashMap, HashSet};
use std::cell::RefCell;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The environment variable naming the capture directory.
pub const ENV: &str = "RINGLOG_CAPTURE_FRAMES";
/// Frames kept per (API key, version).
pub const PER_API_VERSION: usize = 24;
/// Larger frames are not recorded.
pub const MAX_FRAME: usize = 256 * 1024;

#[derive(Default)]
struct Seen {
    /// Slots known to be taken (files that exist).
    next_slot: usize,
    /// Hashes of frames already written by this shard.
    hashes: HashSet<u64>,
}

thread_local! {
    static SEEN: RefCell<HashMap<(i16, i16), Seen>> = RefCell::new(HashMap::default());
}

fn dir() -> Option<&'static PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::var_os(ENV).filter(|d| !d.is_empty()).map(PathBuf::from)?;
        if let Err(e) = std::fs::create_dir_all(&d) {
            tracing::warn!("{ENV}: cannot create {}: {e}; not capturing", d.display());
            return None;
        }
        tracing::warn!("{ENV}: recording request frames into {}", d.display());
        Some(d)
    })
    .as_ref()
}

/// Record one received request frame (`frame` without its size prefix) if
/// capturing is on.
#[inline]
pub fn frame(frame: &[u8]) {
    if let Some(d) = dir() {
        record(d, frame);
    }
}

#[cold]
fn record(dir: &std::path::Path, frame: &[u8]) {
    if frame.len() > MAX_FRAME || frame.len() < 4 {
        return;
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    // The correlation id differs in every frame: leave it out of the hash.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    frame.get(..4).hash(&mut h);
    frame.get(8..).hash(&mut h);
    let hash = h.finish();
    SEEN.with(|seen| {
        let mut seen = seen.borrow_mut();
        let s = seen.entry((key, version)).or_default();
        if s.next_slot >= PER_API_VERSION || !s.hashes.insert(hash) {
            return;
        }
        while s.next_slot < PER_API_VERSION {
            let name = format!("{key:02}-v{version:02}-{:03}.bin", s.next_slot);
            s.next_slot += 1;
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(dir.join(&name))
            {
                Ok(mut f) => {
                    let size = (frame.len() as u32).to_be_bytes();
                    if let Err(e) = f.write_all(&size).and_then(|()| f.write_all(frame)) {
                        tracing::warn!("{ENV}: cannot write {name}: {e}");
                    }
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    tracing::warn!("{ENV}: cannot create {name}: {e}");
                    return;
                }
            }
        }
    });
}
