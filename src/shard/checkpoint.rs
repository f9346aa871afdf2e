//! The recovery-point checkpoint task of a shard.
//!
//! Every `log.flush.offset.checkpoint.interval.ms` (Kafka's default, one
//! minute) and at clean shutdown, each partition's [`CheckpointPlan`] is
//! carried out (sealed segments' index files synced, the active segment's
//! index entries below the new recovery point written and synced, producer
//! state snapshots written and synced), then the shard's checkpoint file
//! (`recovery-point-offset-checkpoint.<shard>`, Kafka's format) is written
//! atomically with every partition's recovery point. After an unclean
//! stop, recovery only checks what lies past those points.
//!
//! Producer expiry (`producer.id.expiration.ms`) runs in the same loop.

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use crate::io::time::{now_ms, sleep};
use crate::log::checkpoint::{self, TopicPartition};
use crate::log::partition::CheckpointPlan;
use crate::metadata::ClusterMeta;

use super::{PartitionRef, Shard};

/// `log.flush.offset.checkpoint.interval.ms` (Kafka's default: 60 s).
pub fn interval_ms(shard: &Shard) -> i64 {
    property(shard, "log.flush.offset.checkpoint.interval.ms", 60_000).max(1)
}

/// `producer.id.expiration.ms` (Kafka's default: one day).
pub fn producer_expiration_ms(shard: &Shard) -> i64 {
    property(shard, "producer.id.expiration.ms", 86_400_000).max(1)
}

fn property(shard: &Shard, name: &str, default: i64) -> i64 {
    shard
        .config
        .properties
        .get(name)
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(default)
}

/// Run until shutdown: checkpoint at once (what recovery just checked
/// becomes trusted), then every interval.
pub async fn run(shard: Rc<Shard>) {
    let interval = interval_ms(&shard);
    let expiration = producer_expiration_ms(&shard);
    loop {
        if shard.shutting_down.get() {
            return;
        }
        let now = now_ms();
        for p in shard.all_partitions() {
            let n = p.log.borrow_mut().expire_producers(now, expiration);
            if n > 0 {
                tracing::info!("{}-{}: {n} idle producers expired", p.topic, p.index);
            }
        }
        run_once(&shard).await;
        let wait = Duration::from_millis(interval.unsigned_abs());
        futures_lite::future::or(sleep(wait), shard.until_shutdown()).await;
    }
}

/// The final checkpoint of a clean shutdown, after the logs were closed
/// (everything written is synced).
pub async fn at_shutdown(shard: &Rc<Shard>) {
    for p in shard.all_partitions() {
        p.log.borrow_mut().all_synced();
    }
    run_once(shard).await;
}

/// One checkpoint of every partition of the shard.
pub async fn run_once(shard: &Rc<Shard>) {
    let parts: Vec<PartitionRef> = shard
        .all_partitions()
        .into_iter()
        .filter(|p| !p.deleted.get())
        .collect();
    for p in &parts {
        let _no_swap = shard.segment_swap_lock.lock().await;
        let plan = p.log.borrow_mut().plan_checkpoint();
        let Some(plan) = plan else { continue };
        match carry_out(p, &plan).await {
            Ok(()) if !p.deleted.get() => p.log.borrow_mut().checkpoint_done(&plan),
            Ok(()) => {}
            Err(e) => tracing::warn!("checkpoint of {}-{}: {e}", p.topic, p.index),
        }
    }
    let entries: BTreeMap<TopicPartition, i64> = parts
        .iter()
        .filter(|p| !p.deleted.get())
        .map(|p| ((p.topic.clone(), p.index), p.log.borrow().recovery_point()))
        .collect();
    let path = shard.config.data_dir.join(checkpoint::file_name(shard.id));
    if let Err(e) = crate::io::file::write_file_atomic(&path, &checkpoint::encode(&entries)).await {
        tracing::warn!("writing {}: {e}", path.display());
        return;
    }
    // The checkpoint file names the new recovery points: older producer
    // state snapshots are not needed any more.
    for p in &parts {
        let stale = p.log.borrow_mut().take_stale_snapshots();
        for f in stale {
            if let Err(e) = crate::io::fs::remove_file(&f).await {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("removing {}: {e}", f.display());
                }
            }
        }
    }
}

async fn carry_out(p: &PartitionRef, plan: &CheckpointPlan) -> std::io::Result<()> {
    if p.deleted.get() {
        return Ok(());
    }
    plan.write().await?;
    let again = p.log.borrow().index_sealed_meanwhile(plan);
    if let Some(files) = again {
        for (path, data) in files {
            crate::io::file::write_file(&path, data).await?;
        }
    }
    if p.deleted.get() {
        return Ok(());
    }
    plan.sync_each().await
}

/// Start-up (before the shards run): merge the checkpoint files whatever
/// shard wrote them, keep the partitions of existing topics, write the
/// files again per the current placement and remove those of shards that
/// no longer exist. A malformed file is ignored (its partitions are checked
/// in full). On a partition listed twice (a crash in the middle of this
/// rewrite) the lower point wins: checking more is always safe.
pub async fn load_recovery_points(
    data_dir: &Path,
    meta: &ClusterMeta,
    shards: usize,
) -> std::io::Result<BTreeMap<TopicPartition, i64>> {
    let mut merged: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    let mut found = Vec::new();
    for e in crate::io::fs::read_dir(data_dir).await? {
        let Some(shard) = checkpoint::parse_file_name(&e.name) else {
            continue;
        };
        found.push(shard);
        let path = data_dir.join(&e.name);
        let Some(data) = crate::io::file::read_file(&path).await? else {
            continue;
        };
        match checkpoint::decode(&data) {
            Ok(entries) => {
                for (tp, offset) in entries {
                    merged.entry(tp).and_modify(|o| *o = (*o).min(offset)).or_insert(offset);
                }
            }
            Err(e) => tracing::warn!(path = %path.display(), "ignoring a malformed recovery point checkpoint: {e}"),
        }
    }
    let mut per_shard: Vec<BTreeMap<TopicPartition, i64>> = vec![BTreeMap::new(); shards];
    merged.retain(|(topic, partition), offset| {
        let owner = meta
            .topics
            .get(topic)
            .and_then(|t| t.partitions.get(usize::try_from(*partition).ok()?))
            .map(|p| p.shard as usize);
        match owner.and_then(|s| per_shard.get_mut(s)) {
            Some(m) => {
                m.insert((topic.clone(), *partition), *offset);
                true
            }
            None => false,
        }
    });
    for (shard, entries) in per_shard.iter().enumerate() {
        let path = data_dir.join(checkpoint::file_name(shard));
        crate::io::file::write_file_atomic(&path, &checkpoint::encode(entries)).await?;
    }
    for shard in found.into_iter().filter(|&s| s >= shards) {
        let _ = crate::io::fs::remove_file(&data_dir.join(checkpoint::file_name(shard))).await;
    }
    Ok(merged)
}
