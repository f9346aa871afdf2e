//! Cluster metadata: topics, their IDs, partitions, placement on shards
//! and configs.
//!
//! Shard 0 acts as the controller: it validates changes ([`controller`]),
//! persists them ([`store`]) and sends each change to every shard, which
//! applies it to its own copy. No shard shares this state with another.

pub mod controller;
pub mod election;
pub mod image;
pub mod placement;
pub mod quorum;
pub mod records;
pub mod store;
pub mod topic_name;

use crate::io::rand::HashMap;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Name of the internal topic holding committed offsets and group state.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMeta {
    /// Shard that owns the partition's log.
    pub shard: u32,
    pub leader_epoch: i32,
    /// Brokers holding a replica, preferred leader first. (Files written
    /// before replication have none: [`ClusterMeta::adopt_single_node`]
    /// fills in this node.)
    #[serde(default)]
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    #[serde(default)]
    pub isr: Vec<i32>,
    /// The leader's broker id; -1: none.
    #[serde(default = "no_leader")]
    pub leader: i32,
    /// Bumped by every change of the partition's replicas, ISR or leader.
    #[serde(default)]
    pub partition_epoch: i32,
}

fn no_leader() -> i32 {
    -1
}

impl PartitionMeta {
    /// A partition whose only replica is `node`, on `shard`.
    pub fn local(shard: u32, node: i32) -> Self {
        PartitionMeta {
            shard,
            leader_epoch: 0,
            replicas: vec![node],
            isr: vec![node],
            leader: node,
            partition_epoch: 0,
        }
    }
}

/// A broker of the cluster, as clients are told of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerMeta {
    pub id: i32,
    /// The advertised client listener.
    pub host: String,
    pub port: i32,
    #[serde(default)]
    pub rack: Option<String>,
    /// Fenced by the controller (missed heartbeats, shutting down).
    #[serde(default)]
    pub fenced: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub id: Uuid,
    pub partitions: Vec<PartitionMeta>,
    /// Topic-level overrides only (Kafka names).
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
    #[serde(default)]
    pub internal: bool,
}

/// A change sent from the controller to every shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaUpdate {
    /// A topic was created or changed (partitions added, configs altered).
    Upsert(TopicMeta),
    /// A topic was deleted.
    Delete { name: String, id: Uuid },
    /// A consumer group's config overrides were replaced (empty: none left).
    GroupConfigs {
        group: String,
        configs: BTreeMap<String, String>,
    },
    /// The broker table, as the controller quorum's image has it.
    Brokers(BTreeMap<i32, BrokerMeta>),
}

/// One shard's copy of the cluster metadata.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ClusterMeta {
    pub cluster_id: String,
    pub topics: BTreeMap<String, TopicMeta>,
    /// Producer ids below this may have been handed out; after a restart
    /// allocation resumes here, so an id is never reused.
    #[serde(default)]
    pub producer_id_block_end: i64,
    /// Group-level config overrides (KIP-848 group configs) by group id.
    /// They outlive the group itself, as in Kafka.
    #[serde(default)]
    pub group_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// The registered brokers by id.
    #[serde(default)]
    pub brokers: BTreeMap<i32, BrokerMeta>,
    #[serde(skip)]
    by_id: HashMap<Uuid, String>,
}

impl ClusterMeta {
    pub fn new(cluster_id: String) -> Self {
        ClusterMeta {
            cluster_id,
            ..Default::default()
        }
    }

    /// Rebuild derived lookups (after deserializing).
    pub fn reindex(&mut self) {
        self.by_id = self.topics.values().map(|t| (t.id, t.name.clone())).collect();
    }

    pub fn topic(&self, name: &str) -> Option<&TopicMeta> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&TopicMeta> {
        self.by_id.get(id).and_then(|n| self.topics.get(n))
    }

    /// Shard owning a partition, if it exists.
    pub fn owner(&self, topic: &str, partition: i32) -> Option<usize> {
        let t = self.topics.get(topic)?;
        let p = usize::try_from(partition).ok()?;
        t.partitions.get(p).map(|p| p.shard as usize)
    }

    pub fn apply(&mut self, update: &MetaUpdate) {
        match update {
            MetaUpdate::Upsert(t) => {
                self.by_id.insert(t.id, t.name.clone());
                self.topics.insert(t.name.clone(), t.clone());
            }
            MetaUpdate::Delete { name, id } => {
                self.topics.remove(name);
                self.by_id.remove(id);
            }
            MetaUpdate::GroupConfigs { group, configs } => {
                if configs.is_empty() {
                    self.group_configs.remove(group);
                } else {
                    self.group_configs.insert(group.clone(), configs.clone());
                }
            }
            MetaUpdate::Brokers(b) => self.brokers = b.clone(),
        }
    }

    /// Make this node the whole cluster (single-node mode): it is the only
    /// broker, with its current address and rack, and every partition's
    /// only replica, in-sync and leader. Migrates files written before
    /// replication (no brokers, no replicas). Returns whether anything
    /// changed.
    pub fn adopt_single_node(&mut self, me: BrokerMeta) -> bool {
        let node = me.id;
        let mut changed = false;
        if self.brokers.len() != 1 || self.brokers.get(&node) != Some(&me) {
            self.brokers = BTreeMap::from([(node, me)]);
            changed = true;
        }
        for t in self.topics.values_mut() {
            for p in &mut t.partitions {
                if p.replicas != [node] || p.isr != [node] || p.leader != node {
                    p.replicas = vec![node];
                    p.isr = vec![node];
                    p.leader = node;
                    changed = true;
                }
            }
        }
        changed
    }

    /// Partitions per shard, for placing new partitions on the least loaded.
    pub fn shard_loads(&self, shards: usize) -> Vec<usize> {
        let mut loads = vec![0usize; shards];
        for t in self.topics.values() {
            for p in &t.partitions {
                if let Some(l) = loads.get_mut(p.shard as usize) {
                    *l += 1;
                }
            }
        }
        loads
    }

    /// Remap partitions recorded on shards that no longer exist (the broker
    /// restarted with fewer shards). Returns whether anything moved.
    pub fn fit_to_shards(&mut self, shards: usize) -> bool {
        let mut moved = false;
        for t in self.topics.values_mut() {
            for (i, p) in t.partitions.iter_mut().enumerate() {
                if p.shard as usize >= shards {
                    p.shard = (i % shards) as u32;
                    moved = true;
                }
            }
        }
        moved
    }
}

/// Choose shards for `count` new partitions: each goes to the currently
/// least loaded shard (lowest index on ties). Deterministic.
pub fn place_partitions(loads: &mut [usize], count: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let (i, _) = loads
            .iter()
            .enumerate()
            .min_by_key(|(i, l)| (**l, *i))
            .unwrap_or((0, &0));
        if let Some(l) = loads.get_mut(i) {
            *l += 1;
        }
        out.push(i as u32);
    }
    out
}

/// Directory name of a partition's log.
pub fn partition_dir_name(topic: &str, partition: i32) -> String {
    format!("{topic}-{partition}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_spreads_and_is_deterministic() {
        let mut loads = vec![0, 0];
        assert_eq!(place_partitions(&mut loads, 4), vec![0, 1, 0, 1]);
        let mut loads = vec![3, 0, 1];
        assert_eq!(place_partitions(&mut loads, 3), vec![1, 1, 2]);
    }

    #[test]
    fn files_from_before_replication_are_adopted_by_this_node() {
        let old = r#"{"cluster_id":"c","topics":{"a":{"name":"a","id":"6f1d2c3e-0000-4000-8000-000000000001",
            "partitions":[{"shard":0,"leader_epoch":0},{"shard":1,"leader_epoch":3}]}}}"#;
        let mut m: ClusterMeta = serde_json::from_str(old).expect("old format reads");
        m.reindex();
        let p = &m.topics["a"].partitions[1];
        assert_eq!((p.leader, p.replicas.len(), p.leader_epoch), (-1, 0, 3));
        let me = BrokerMeta {
            id: 4,
            host: "h".into(),
            port: 9092,
            rack: None,
            fenced: false,
        };
        assert!(m.adopt_single_node(me.clone()));
        let p = &m.topics["a"].partitions[1];
        assert_eq!(
            (p.leader, p.replicas.clone(), p.isr.clone(), p.leader_epoch),
            (4, vec![4], vec![4], 3)
        );
        assert_eq!(m.brokers.keys().copied().collect::<Vec<_>>(), vec![4]);
        assert!(!m.adopt_single_node(me.clone()), "nothing left to change");
        let moved = BrokerMeta { port: 9093, ..me };
        assert!(m.adopt_single_node(moved), "a new address is taken");
        assert_eq!(m.brokers[&4].port, 9093);
    }

    #[test]
    fn apply_and_lookup() {
        let mut m = ClusterMeta::new("c".into());
        let id = crate::io::rand::uuid_v4();
        let t = TopicMeta {
            name: "a".into(),
            id,
            partitions: vec![PartitionMeta::local(1, 0)],
            configs: Default::default(),
            internal: false,
        };
        m.apply(&MetaUpdate::Upsert(t));
        assert_eq!(m.owner("a", 0), Some(1));
        assert_eq!(m.owner("a", 1), None);
        assert_eq!(m.owner("a", -1), None);
        assert_eq!(m.topic_by_id(&id).map(|t| t.name.as_str()), Some("a"));
        assert!(m.fit_to_shards(1));
        assert_eq!(m.owner("a", 0), Some(0));
        m.apply(&MetaUpdate::Delete { name: "a".into(), id });
        assert!(m.topic("a").is_none() && m.topic_by_id(&id).is_none());
    }
}
