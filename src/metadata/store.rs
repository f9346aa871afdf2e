//! Durable cluster metadata: one JSON document, replaced atomically.
//!
//! (The controller quorum will replace this with a Raft metadata log.)

use std::path::{Path, PathBuf};

use super::ClusterMeta;

pub fn meta_path(data_dir: &Path) -> PathBuf {
    data_dir.join("cluster-metadata.json")
}

/// Load the metadata, or None on a fresh data dir.
pub async fn load(data_dir: &Path) -> anyhow::Result<Option<ClusterMeta>> {
    match crate::io::file::read_file(&meta_path(data_dir)).await? {
        None => Ok(None),
        Some(bytes) => {
            let mut meta: ClusterMeta = serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("corrupt {}: {e}", meta_path(data_dir).display()))?;
            meta.reindex();
            Ok(Some(meta))
        }
    }
}

pub async fn save(data_dir: &Path, meta: &ClusterMeta) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(meta).map_err(std::io::Error::other)?;
    crate::io::file::write_file_atomic(&meta_path(data_dir), &bytes).await
}
