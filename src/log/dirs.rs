//! Partition directories: Kafka's `partition.metadata` file (which topic
//! incarnation a directory belongs to) and the names of directories set
//! aside for deletion (`<topic>-<partition>.<id>-delete`).
//!
//! A topic that is deleted and created again gets a new topic id. Its
//! partitions must never adopt the old incarnation's segments, whatever a
//! crash left behind: each partition directory names its topic id in
//! `partition.metadata`, a directory whose id does not match is renamed
//! aside, and a deleted topic's directories are renamed aside (durably)
//! before they are removed in the background.

use std::path::{Path, PathBuf};

use base64::Engine;
use uuid::Uuid;

/// Kafka's per-partition metadata file.
pub const PARTITION_METADATA: &str = "partition.metadata";

/// Suffix of directories waiting for removal (Kafka's `-delete`).
pub const DELETE_DIR_SUFFIX: &str = "-delete";

/// Longest directory name most filesystems accept.
const MAX_DIR_NAME: usize = 255;

/// Kafka's textual topic id: URL-safe base64 without padding.
pub fn topic_id_string(id: &Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes())
}

/// The content of `partition.metadata` for a topic id (Kafka's version 0
/// layout: `version: 0` and `topic_id: <id>` lines).
pub fn encode_partition_metadata(id: &Uuid) -> Vec<u8> {
    format!("version: 0\ntopic_id: {}\n", topic_id_string(id)).into_bytes()
}

/// The topic id in a `partition.metadata` file; `None` if it is not one.
pub fn decode_partition_metadata(data: &[u8]) -> Option<Uuid> {
    let text = std::str::from_utf8(data).ok()?;
    let mut version = None;
    let mut id = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (key, value) = line.split_once(':')?;
        match key.trim() {
            "version" => version = Some(value.trim().parse::<u32>().ok()?),
            "topic_id" => {
                let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(value.trim())
                    .ok()?;
                id = Some(Uuid::from_slice(&bytes).ok()?);
            }
            _ => return None,
        }
    }
    if version != Some(0) {
        return None;
    }
    id
}

/// Name of a partition directory set aside for deletion:
/// `<topic>-<partition>.<id as 32 hex digits>-delete`, the topic part cut
/// so that the name fits in 255 bytes (as Kafka does).
pub fn delete_dir_name(topic: &str, partition: i32, id: &Uuid) -> String {
    let suffix = format!(".{}{DELETE_DIR_SUFFIX}", id.simple());
    let mut prefix = format!("{topic}-{partition}");
    let room = MAX_DIR_NAME - suffix.len();
    if prefix.len() > room {
        // Topic names are ASCII: any byte index is a char boundary.
        prefix.truncate(room);
    }
    prefix + &suffix
}

/// Whether a directory name is one [`delete_dir_name`] makes. (A live
/// partition directory always ends with `-<partition number>`.)
pub fn is_delete_dir_name(name: &str) -> bool {
    let Some(rest) = name.strip_suffix(DELETE_DIR_SUFFIX) else {
        return false;
    };
    match rest.rsplit_once('.') {
        Some((_, hex)) => hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => false,
    }
}

/// Rename a partition directory aside for deletion (then sync the data
/// directory, so the rename survives a crash). Returns the new path, or
/// `None` when the directory does not exist.
pub async fn set_aside(
    data_dir: &Path,
    dir: &Path,
    topic: &str,
    partition: i32,
    id: &Uuid,
) -> std::io::Result<Option<PathBuf>> {
    let mut to = data_dir.join(delete_dir_name(topic, partition, id));
    if crate::io::fs::exists(&to).await {
        // Set aside before with the same id (a crash, then the same
        // directory once more): pick a fresh name.
        to = data_dir.join(delete_dir_name(topic, partition, &crate::io::rand::uuid_v4()));
    }
    match crate::io::fs::rename(dir, &to).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    crate::io::fs::sync_dir(data_dir).await?;
    Ok(Some(to))
}

/// Remove directories set aside for deletion (a deleted topic's
/// partitions, directories of an older topic incarnation, and leftovers of
/// removals a restart cut short). Errors are logged.
pub async fn remove_set_aside(dirs: Vec<PathBuf>) {
    for dir in dirs {
        match crate::io::fs::remove_dir_all(&dir).await {
            Ok(()) => tracing::info!(dir = %dir.display(), "removed deleted partition directory"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("removing {}: {e}", dir.display()),
        }
        crate::io::yield_if_needed().await;
    }
}

/// The directories in the data directory waiting for removal.
pub async fn list_set_aside(data_dir: &Path) -> Vec<PathBuf> {
    match crate::io::fs::read_dir(data_dir).await {
        Ok(entries) => entries
            .into_iter()
            .filter(|e| e.is_dir && is_delete_dir_name(&e.name))
            .map(|e| data_dir.join(e.name))
            .collect(),
        Err(e) => {
            tracing::warn!("listing {}: {e}", data_dir.display());
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_metadata_round_trip() {
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        let data = encode_partition_metadata(&id);
        assert!(std::str::from_utf8(&data)
            .unwrap()
            .starts_with("version: 0\ntopic_id: "));
        assert_eq!(decode_partition_metadata(&data), Some(id));
        // Kafka's own rendering of a topic id is 22 characters of URL-safe base64.
        assert_eq!(topic_id_string(&id).len(), 22);
        assert_eq!(
            decode_partition_metadata(b"version: 1\ntopic_id: ASNFZ4mrze8AESIzRFVmdw\n"),
            None
        );
        assert_eq!(decode_partition_metadata(b"garbage"), None);
        assert_eq!(decode_partition_metadata(b""), None);
        assert_eq!(
            decode_partition_metadata(b"version: 0\ntopic_id: ASNFZ4mrze8AESIzRFVmdw\n"),
            Some(id)
        );
    }

    #[test]
    fn delete_dir_names() {
        let id = Uuid::from_u128(7);
        let n = delete_dir_name("orders", 3, &id);
        assert_eq!(n, "orders-3.00000000000000000000000000000007-delete");
        assert!(is_delete_dir_name(&n));
        assert!(!is_delete_dir_name("orders-3"));
        assert!(!is_delete_dir_name("x-delete-0"));
        assert!(!is_delete_dir_name("a.b-delete"));
        let long = "t".repeat(249);
        let n = delete_dir_name(&long, 12345, &id);
        assert_eq!(n.len(), 255);
        assert!(is_delete_dir_name(&n));
    }
}
