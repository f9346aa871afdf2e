//! A data directory's identity: Kafka's `meta.properties` (`version=1`,
//! `cluster.id`, `node.id`, `directory.id`), written at first start and
//! checked at every start, so a directory is never served under another
//! node id or joined to another cluster (docs/design/replication.md, 3.3).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

pub const META_PROPERTIES: &str = "meta.properties";

/// The fields of a version-1 (KRaft) `meta.properties`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaProperties {
    pub cluster_id: String,
    pub node_id: i32,
    pub directory_id: String,
}

/// Parse Java properties as Kafka writes them: `key=value` lines, `#` and
/// `!` comments, blank lines. (No continuation lines or escapes: Kafka's
/// identity values never need them.)
pub fn parse_properties(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| {
            let (k, v) = l.split_once('=').or_else(|| l.split_once(':'))?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

impl MetaProperties {
    pub fn parse(text: &str) -> anyhow::Result<MetaProperties> {
        let p = parse_properties(text);
        match p.get("version").map(String::as_str) {
            Some("1") => {}
            Some("0") => bail!("version 0 (ZooKeeper mode) is not supported; ringlog runs as Kafka's KRaft mode does"),
            Some(v) => bail!("unknown version {v:?}"),
            None => bail!("no version"),
        }
        let cluster_id = p.get("cluster.id").cloned().context("no cluster.id")?;
        super::settings::validate_cluster_id(&cluster_id)?;
        let node_id = p
            .get("node.id")
            .context("no node.id")?
            .parse::<i32>()
            .ok()
            .filter(|n| *n >= 0)
            .context("node.id is not a non-negative integer")?;
        let directory_id = p.get("directory.id").cloned().unwrap_or_default();
        Ok(MetaProperties {
            cluster_id,
            node_id,
            directory_id,
        })
    }

    pub fn render(&self) -> String {
        format!(
            "#\n#Written by ringlog\nnode.id={}\ndirectory.id={}\nversion=1\ncluster.id={}\n",
            self.node_id, self.directory_id, self.cluster_id
        )
    }
}

/// A fresh directory id in Kafka's form: 16 random bytes in URL-safe
/// base64 without padding (22 characters).
pub fn new_directory_id() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crate::io::rand::uuid_v4().into_bytes())
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(META_PROPERTIES)
}

/// Decide the cluster id of a data directory at start from what it holds.
/// `stored_meta` is the cluster id in `cluster-metadata.json`, `props` the
/// directory's `meta.properties`, `wanted` the `--cluster-id` flag.
/// Errors name what disagrees.
pub fn reconcile(
    node_id: i32,
    stored_meta: Option<&str>,
    props: Option<&MetaProperties>,
    wanted: Option<&str>,
) -> anyhow::Result<String> {
    if let Some(p) = props {
        if p.node_id != node_id {
            bail!(
                "this data directory belongs to node {} (its meta.properties), not node {node_id}: \
                 start with --node-id {} or use another --data-dir",
                p.node_id,
                p.node_id
            );
        }
        if let Some(m) = stored_meta.filter(|m| *m != p.cluster_id) {
            bail!(
                "INCONSISTENT_CLUSTER_ID: meta.properties names cluster {} but cluster-metadata.json cluster {m}",
                p.cluster_id
            );
        }
    }
    let have = props.map(|p| p.cluster_id.as_str()).or(stored_meta);
    match (have, wanted) {
        (Some(h), Some(w)) if h != w => {
            bail!("INCONSISTENT_CLUSTER_ID: this data directory belongs to cluster {h}, not {w} (--cluster-id)")
        }
        (Some(h), _) => Ok(h.to_string()),
        (None, Some(w)) => Ok(w.to_string()),
        (None, None) => Ok(crate::io::rand::uuid_v4().simple().to_string()),
    }
}

/// Read a directory's `meta.properties`, if it has one.
pub async fn load(data_dir: &Path) -> anyhow::Result<Option<MetaProperties>> {
    let p = path(data_dir);
    match crate::io::file::read_file(&p).await? {
        None => Ok(None),
        Some(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            MetaProperties::parse(&text)
                .map(Some)
                .with_context(|| format!("{} is not a valid meta.properties", p.display()))
        }
    }
}

/// Write `meta.properties` atomically (durable before the broker serves).
pub async fn store(data_dir: &Path, props: &MetaProperties) -> std::io::Result<()> {
    crate::io::file::write_file_atomic(&path(data_dir), props.render().as_bytes()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_kafka_writes_and_round_trips() {
        let kafka = "#\n#Tue Dec 01 10:00:00 UTC 2026\nnode.id=1\ndirectory.id=J8aAPcfLQt2bqs1JT_rMgQ\nversion=1\ncluster.id=MkU3OEVBNTcwNTJENDM2Qk\n";
        let p = MetaProperties::parse(kafka).expect("parses");
        assert_eq!(p.node_id, 1);
        assert_eq!(p.cluster_id, "MkU3OEVBNTcwNTJENDM2Qk");
        assert_eq!(p.directory_id, "J8aAPcfLQt2bqs1JT_rMgQ");
        assert_eq!(MetaProperties::parse(&p.render()).expect("round trip"), p);
        for bad in [
            "",
            "version=0\ncluster.id=a\nnode.id=1\nbroker.id=1",
            "version=1\nnode.id=1",
            "version=1\ncluster.id=a\nnode.id=x",
            "version=1\ncluster.id=a b\nnode.id=1",
        ] {
            assert!(MetaProperties::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn directory_ids_look_like_kafkas() {
        let id = new_directory_id();
        assert_eq!(id.len(), 22, "{id}");
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(id, new_directory_id());
    }

    #[test]
    fn reconcile_refuses_another_node_or_cluster() {
        let props = MetaProperties {
            cluster_id: "c1".into(),
            node_id: 1,
            directory_id: String::new(),
        };
        assert_eq!(reconcile(1, Some("c1"), Some(&props), None).expect("same"), "c1");
        assert_eq!(reconcile(1, None, Some(&props), Some("c1")).expect("same"), "c1");
        let e = format!(
            "{:#}",
            reconcile(2, Some("c1"), Some(&props), None).expect_err("other node")
        );
        assert!(e.contains("belongs to node 1"), "{e}");
        let e = format!(
            "{:#}",
            reconcile(1, Some("c2"), Some(&props), None).expect_err("other cluster")
        );
        assert!(e.contains("INCONSISTENT_CLUSTER_ID"), "{e}");
        let e = format!(
            "{:#}",
            reconcile(1, None, Some(&props), Some("c9")).expect_err("other flag")
        );
        assert!(e.contains("not c9"), "{e}");
        // Migration: a directory from before meta.properties keeps its id.
        assert_eq!(reconcile(7, Some("old"), None, None).expect("migrates"), "old");
        assert_eq!(reconcile(7, None, None, Some("given")).expect("new"), "given");
        assert_eq!(reconcile(7, None, None, None).expect("fresh").len(), 32);
    }
}
