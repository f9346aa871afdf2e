//! Replacing segments by their cleaned copy, crash-safe at every step.
//!
//! The cleaner writes the cleaned copy of a group of consecutive segments
//! (oldest base `B`, covering the old segments `B, B2, …, Bk`) as
//! `B.log.cleaned`, `B.index.cleaned` and `B.timeindex.cleaned`, each
//! synced. Then:
//!
//! 1. **Commit.** The intent file `B.swap` is written atomically (temporary
//!    file, fsync, rename, directory fsync). It lists the old segments. Until
//!    it exists, the old segments are the log: recovery deletes stray
//!    `*.cleaned` files. Once it exists, the cleaned copy is the log:
//!    recovery finishes the swap.
//! 2. The old segments `B2 … Bk` are removed, the `*.cleaned` files renamed
//!    over `B.log`, `B.index`, `B.timeindex` (an atomic replace), the
//!    directory synced.
//! 3. The intent file is removed.
//!
//! Each step after the commit can be repeated, so recovery
//! ([`finish_interrupted_swaps`]) simply does steps 2 and 3 again for every
//! intent file it finds. Nothing of a live key is ever only in a file that
//! a crash could leave half-written: the cleaned copy is complete and
//! synced before the commit, and the old files stay until after it.
//!
//! Kafka uses `.cleaned` and `.swap` renames of the segment files
//! themselves; the one-file commit here makes the covered segments explicit
//! (Kafka infers them from offsets, which compaction may have removed from
//! the end of the group).

use std::io;
use std::path::{Path, PathBuf};

use crate::log::segment::segment_file_name;

/// Suffix of the files of a cleaned copy not yet committed.
pub const CLEANED_SUFFIX: &str = ".cleaned";

/// Extension of the commit (intent) file.
pub const SWAP_EXT: &str = "swap";

/// Extensions of a segment's files, in the order they are replaced.
const EXTS: [&str; 3] = ["index", "timeindex", "log"];

/// The path of a file of the cleaned copy of the segment at `base`.
pub fn cleaned_path(dir: &Path, base: i64, ext: &str) -> PathBuf {
    dir.join(format!("{}{CLEANED_SUFFIX}", segment_file_name(base, ext)))
}

/// Encode the intent file: version, count, old base offsets (the first is
/// the base of the cleaned copy).
pub fn encode_intent(old_bases: &[i64]) -> Vec<u8> {
    let mut s = format!("0\n{}\n", old_bases.len());
    for b in old_bases {
        s.push_str(&format!("{b}\n"));
    }
    s.into_bytes()
}

/// Decode an intent file; None when malformed (it was not committed:
/// a file is only ever made visible whole, by rename).
pub fn decode_intent(data: &[u8]) -> Option<Vec<i64>> {
    let text = std::str::from_utf8(data).ok()?;
    let mut lines = text.lines();
    if lines.next()? != "0" {
        return None;
    }
    let n: usize = lines.next()?.parse().ok()?;
    let bases: Vec<i64> = lines.by_ref().take(n).map(|l| l.parse().ok()).collect::<Option<_>>()?;
    if bases.len() != n || n == 0 || bases.iter().any(|&b| b < 0) || !bases.windows(2).all(|w| w[0] < w[1]) {
        return None;
    }
    Some(bases)
}

/// Commit the cleaned copy of the segments `old_bases` (ascending; the
/// copy's files are `old_bases[0]`'s `*.cleaned`, complete and synced) and
/// carry the swap out.
pub async fn commit(dir: &Path, old_bases: &[i64]) -> io::Result<()> {
    let Some(&base) = old_bases.first() else {
        return Ok(());
    };
    let intent = dir.join(segment_file_name(base, SWAP_EXT));
    crate::io::file::write_file_atomic(&intent, &encode_intent(old_bases)).await?;
    carry_out(dir, old_bases).await?;
    crate::io::fs::remove_file(&intent).await?;
    crate::io::fs::sync_dir(dir).await
}

/// Steps 2 and 3 of the swap (see the module documentation); repeatable.
async fn carry_out(dir: &Path, old_bases: &[i64]) -> io::Result<()> {
    let Some((&base, rest)) = old_bases.split_first() else {
        return Ok(());
    };
    for &old in rest {
        for ext in EXTS {
            remove_if_present(&dir.join(segment_file_name(old, ext))).await?;
        }
    }
    for ext in EXTS {
        let from = cleaned_path(dir, base, ext);
        if crate::io::fs::exists(&from).await {
            crate::io::fs::rename(&from, &dir.join(segment_file_name(base, ext))).await?;
        }
    }
    crate::io::fs::sync_dir(dir).await
}

async fn remove_if_present(path: &Path) -> io::Result<()> {
    match crate::io::fs::remove_file(path).await {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// At recovery, before the segments are read: finish every committed swap
/// (an intent file exists) and remove the files of uncommitted ones.
/// Returns how many swaps were finished.
pub async fn finish_interrupted_swaps(dir: &Path) -> io::Result<usize> {
    let entries = crate::io::fs::read_dir(dir).await?;
    let mut finished = 0;
    let mut intents = Vec::new();
    for e in &entries {
        if e.name.ends_with(&format!(".{SWAP_EXT}")) {
            intents.push(dir.join(&e.name));
        }
    }
    intents.sort();
    for intent in intents {
        let data = crate::io::file::read_file(&intent).await?.unwrap_or_default();
        match decode_intent(&data) {
            Some(bases) => {
                tracing::info!(path = %intent.display(), segments = bases.len(), "finishing an interrupted cleaner swap");
                carry_out(dir, &bases).await?;
                finished += 1;
            }
            None => tracing::warn!(path = %intent.display(), "removing a malformed cleaner swap file"),
        }
        remove_if_present(&intent).await?;
    }
    // Cleaned copies never committed (a crash before the intent file).
    for e in crate::io::fs::read_dir(dir).await? {
        if e.name.ends_with(CLEANED_SUFFIX) || e.name.ends_with(&format!(".{SWAP_EXT}.tmp")) {
            remove_if_present(&dir.join(&e.name)).await?;
        }
    }
    if finished > 0 {
        crate::io::fs::sync_dir(dir).await?;
    }
    Ok(finished)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intent_round_trip_and_refusals() {
        let d = encode_intent(&[0, 100, 250]);
        assert_eq!(std::str::from_utf8(&d).unwrap(), "0\n3\n0\n100\n250\n");
        assert_eq!(decode_intent(&d), Some(vec![0, 100, 250]));
        for bad in [
            &b""[..],
            b"1\n1\n0\n",
            b"0\n2\n0\n",
            b"0\n0\n",
            b"0\n2\n5\n5\n",
            b"0\n1\n-1\n",
            b"0\n1\nx\n",
        ] {
            assert_eq!(decode_intent(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
