//! The metadata image: the state the metadata log's records build, applied
//! in log order (design: replication.md §5.3, §5.4). Pure: no IO, no clock.
//!
//! Every node applies the same committed records in the same order, so every
//! image at one offset is the same; the image is also what a snapshot holds.
//! [`MetadataImage::apply`] refuses a record that would break an invariant
//! (a controller bug or a corrupt log) and leaves the image unchanged, so a
//! node never serves metadata that no controller decided.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::records::{Endpoint, Record, ResourceType};
use super::{BrokerMeta, ClusterMeta, PartitionMeta, TopicMeta};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerImage {
    pub id: i32,
    pub incarnation_id: Uuid,
    pub epoch: i64,
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
    pub shards: u32,
    pub fenced: bool,
    pub in_controlled_shutdown: bool,
}

impl BrokerImage {
    /// The client listener (`PLAINTEXT`), as clients are told of it.
    pub fn client_endpoint(&self) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.name == "PLAINTEXT")
    }

    /// Can lead or join an ISR (registered, unfenced, not shutting down).
    pub fn eligible(&self) -> bool {
        !self.fenced && !self.in_controlled_shutdown
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionImage {
    pub replicas: Vec<i32>,
    pub shards: Vec<u32>,
    pub isr: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

impl PartitionImage {
    /// The shard of `broker`'s replica, if it holds one.
    pub fn shard_of(&self, broker: i32) -> Option<u32> {
        let i = self.replicas.iter().position(|r| *r == broker)?;
        self.shards.get(i).copied()
    }

    fn check(&self) -> Result<(), String> {
        if self.replicas.is_empty() {
            return Err("no replicas".into());
        }
        if self.shards.len() != self.replicas.len() {
            return Err(format!(
                "{} shards for {} replicas",
                self.shards.len(),
                self.replicas.len()
            ));
        }
        let distinct: BTreeSet<i32> = self.replicas.iter().copied().collect();
        if distinct.len() != self.replicas.len() {
            return Err(format!("replicas {:?} repeat a broker", self.replicas));
        }
        let isr: BTreeSet<i32> = self.isr.iter().copied().collect();
        if isr.len() != self.isr.len() || !isr.is_subset(&distinct) {
            return Err(format!(
                "ISR {:?} is not a set of replicas {:?}",
                self.isr, self.replicas
            ));
        }
        if self.leader != -1 && !isr.contains(&self.leader) {
            return Err(format!("leader {} is not in the ISR {:?}", self.leader, self.isr));
        }
        if self.isr.is_empty() && self.leader != -1 {
            return Err("an empty ISR with a leader".into());
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub id: Uuid,
    pub internal: bool,
    /// Dense: partition i at index i.
    pub partitions: Vec<PartitionImage>,
}

/// What one record changed, for the shell to turn into shard updates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Touched {
    Cluster,
    Brokers,
    Topic(Uuid),
    RemovedTopic { name: String, id: Uuid },
    Config(ResourceType, String),
    ProducerIds,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("metadata record at offset {offset} refused: {reason}")]
pub struct ImageError {
    pub offset: i64,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    pub cluster_id: Option<String>,
    pub metadata_version: u16,
    /// Offset of the last record applied; -1 before any.
    pub offset: i64,
    pub brokers: BTreeMap<i32, BrokerImage>,
    pub topics: BTreeMap<Uuid, TopicImage>,
    /// Config overrides by resource type, then resource name.
    pub configs: BTreeMap<ResourceType, BTreeMap<String, BTreeMap<String, String>>>,
    /// Producer ids below this were handed out.
    pub next_producer_id: i64,
    pub features: BTreeMap<String, u16>,
    #[serde(skip)]
    names: BTreeMap<String, Uuid>,
}

impl MetadataImage {
    pub fn new() -> Self {
        MetadataImage {
            offset: -1,
            ..Default::default()
        }
    }

    /// Rebuild derived lookups after deserializing a snapshot.
    pub fn reindex(&mut self) {
        self.names = self.topics.values().map(|t| (t.name.clone(), t.id)).collect();
    }

    pub fn topic_id(&self, name: &str) -> Option<Uuid> {
        self.names.get(name).copied()
    }

    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.names.get(name).and_then(|id| self.topics.get(id))
    }

    pub fn topic_configs(&self, name: &str) -> BTreeMap<String, String> {
        self.configs
            .get(&ResourceType::Topic)
            .and_then(|m| m.get(name))
            .cloned()
            .unwrap_or_default()
    }

    /// Apply the record at `offset`. On error nothing changed.
    pub fn apply(&mut self, offset: i64, record: &Record) -> Result<Touched, ImageError> {
        let refuse = |reason: String| ImageError { offset, reason };
        if offset <= self.offset {
            return Err(refuse(format!("not after the last applied offset {}", self.offset)));
        }
        let touched = match record {
            Record::Bootstrap {
                cluster_id,
                metadata_version,
            } => {
                if let Some(c) = &self.cluster_id {
                    if c != cluster_id {
                        return Err(refuse(format!("cluster {c} bootstrapped again as {cluster_id}")));
                    }
                }
                self.cluster_id = Some(cluster_id.clone());
                self.metadata_version = *metadata_version;
                Touched::Cluster
            }
            Record::RegisterBroker {
                broker_id,
                incarnation_id,
                broker_epoch,
                endpoints,
                rack,
                shards,
                fenced,
            } => {
                if *broker_id < 0 || *shards == 0 {
                    return Err(refuse(format!("broker {broker_id} with {shards} shards")));
                }
                if let Some(old) = self.brokers.get(broker_id) {
                    if old.epoch >= *broker_epoch {
                        return Err(refuse(format!(
                            "broker {broker_id} registers with epoch {broker_epoch}, not after {}",
                            old.epoch
                        )));
                    }
                }
                self.brokers.insert(
                    *broker_id,
                    BrokerImage {
                        id: *broker_id,
                        incarnation_id: *incarnation_id,
                        epoch: *broker_epoch,
                        endpoints: endpoints.clone(),
                        rack: rack.clone(),
                        shards: *shards,
                        fenced: *fenced,
                        in_controlled_shutdown: false,
                    },
                );
                Touched::Brokers
            }
            Record::UnregisterBroker {
                broker_id,
                broker_epoch,
            } => {
                self.broker_at(*broker_id, *broker_epoch).map_err(refuse)?;
                self.brokers.remove(broker_id);
                Touched::Brokers
            }
            Record::BrokerRegistrationChange {
                broker_id,
                broker_epoch,
                fenced,
                in_controlled_shutdown,
            } => {
                self.broker_at(*broker_id, *broker_epoch).map_err(refuse)?;
                if let Some(b) = self.brokers.get_mut(broker_id) {
                    if let Some(f) = fenced {
                        b.fenced = *f;
                    }
                    if let Some(s) = in_controlled_shutdown {
                        b.in_controlled_shutdown = *s;
                    }
                }
                Touched::Brokers
            }
            Record::Topic {
                name,
                topic_id,
                internal,
            } => {
                if self.names.contains_key(name) || self.topics.contains_key(topic_id) {
                    return Err(refuse(format!("topic {name} ({topic_id}) exists")));
                }
                self.names.insert(name.clone(), *topic_id);
                self.topics.insert(
                    *topic_id,
                    TopicImage {
                        name: name.clone(),
                        id: *topic_id,
                        internal: *internal,
                        partitions: Vec::new(),
                    },
                );
                Touched::Topic(*topic_id)
            }
            Record::Partition {
                topic_id,
                partition,
                replicas,
                shards,
                isr,
                leader,
                leader_epoch,
                partition_epoch,
            } => {
                let t = self
                    .topics
                    .get_mut(topic_id)
                    .ok_or_else(|| refuse(format!("no topic {topic_id}")))?;
                if usize::try_from(*partition).ok() != Some(t.partitions.len()) {
                    return Err(refuse(format!(
                        "partition {partition} of {} which has {}",
                        t.name,
                        t.partitions.len()
                    )));
                }
                let p = PartitionImage {
                    replicas: replicas.clone(),
                    shards: shards.clone(),
                    isr: isr.clone(),
                    leader: *leader,
                    leader_epoch: *leader_epoch,
                    partition_epoch: *partition_epoch,
                };
                p.check().map_err(|e| refuse(format!("{}-{partition}: {e}", t.name)))?;
                t.partitions.push(p);
                Touched::Topic(*topic_id)
            }
            Record::PartitionChange {
                topic_id,
                partition,
                leader,
                isr,
                replicas,
                shards,
            } => {
                let t = self
                    .topics
                    .get_mut(topic_id)
                    .ok_or_else(|| refuse(format!("no topic {topic_id}")))?;
                let name = t.name.clone();
                let p = usize::try_from(*partition)
                    .ok()
                    .and_then(|i| t.partitions.get_mut(i))
                    .ok_or_else(|| refuse(format!("no partition {name}-{partition}")))?;
                let mut next = p.clone();
                if let Some(r) = replicas {
                    next.replicas = r.clone();
                }
                if let Some(s) = shards {
                    next.shards = s.clone();
                }
                if let Some(i) = isr {
                    next.isr = i.clone();
                }
                if let Some(l) = leader {
                    next.leader = *l;
                    next.leader_epoch = next.leader_epoch.saturating_add(1);
                }
                next.partition_epoch = next.partition_epoch.saturating_add(1);
                next.check().map_err(|e| refuse(format!("{name}-{partition}: {e}")))?;
                *p = next;
                Touched::Topic(*topic_id)
            }
            Record::Config {
                resource,
                name,
                key,
                value,
            } => {
                if *resource == ResourceType::Topic && !self.names.contains_key(name) {
                    return Err(refuse(format!("config of unknown topic {name}")));
                }
                let of = self.configs.entry(*resource).or_default();
                match value {
                    Some(v) => {
                        of.entry(name.clone()).or_default().insert(key.clone(), v.clone());
                    }
                    None => {
                        if let Some(m) = of.get_mut(name) {
                            m.remove(key);
                            if m.is_empty() {
                                of.remove(name);
                            }
                        }
                    }
                }
                Touched::Config(*resource, name.clone())
            }
            Record::RemoveTopic { topic_id } => {
                let t = self
                    .topics
                    .remove(topic_id)
                    .ok_or_else(|| refuse(format!("no topic {topic_id} to remove")))?;
                self.names.remove(&t.name);
                if let Some(m) = self.configs.get_mut(&ResourceType::Topic) {
                    m.remove(&t.name);
                }
                Touched::RemovedTopic { name: t.name, id: t.id }
            }
            Record::ProducerIds {
                broker_id,
                broker_epoch,
                next_producer_id,
            } => {
                self.broker_at(*broker_id, *broker_epoch).map_err(refuse)?;
                if *next_producer_id <= self.next_producer_id {
                    return Err(refuse(format!(
                        "producer ids would restart at {next_producer_id}, below {}",
                        self.next_producer_id
                    )));
                }
                self.next_producer_id = *next_producer_id;
                Touched::ProducerIds
            }
            Record::FeatureLevel { name, level } => {
                self.features.insert(name.clone(), *level);
                Touched::Cluster
            }
        };
        self.offset = offset;
        Ok(touched)
    }

    fn broker_at(&self, id: i32, epoch: i64) -> Result<&BrokerImage, String> {
        match self.brokers.get(&id) {
            Some(b) if b.epoch == epoch => Ok(b),
            Some(b) => Err(format!("broker {id} is at epoch {}, not {epoch}", b.epoch)),
            None => Err(format!("no broker {id}")),
        }
    }

    /// The topic as node `me`'s shards see it: `shard` is the shard of
    /// `me`'s replica, or for a partition `me` holds no replica of, the
    /// leader's shard (never opened here).
    pub fn topic_meta(&self, me: i32, id: &Uuid) -> Option<TopicMeta> {
        let t = self.topics.get(id)?;
        let partitions = t
            .partitions
            .iter()
            .map(|p| PartitionMeta {
                shard: p
                    .shard_of(me)
                    .or_else(|| p.shard_of(p.leader))
                    .or_else(|| p.shards.first().copied())
                    .unwrap_or(0),
                leader_epoch: p.leader_epoch,
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
                leader: p.leader,
                partition_epoch: p.partition_epoch,
            })
            .collect();
        Some(TopicMeta {
            name: t.name.clone(),
            id: t.id,
            partitions,
            configs: self.topic_configs(&t.name),
            internal: t.internal,
        })
    }

    /// The broker table as clients are told of it.
    pub fn broker_metas(&self) -> BTreeMap<i32, BrokerMeta> {
        self.brokers
            .values()
            .filter_map(|b| {
                let e = b.client_endpoint()?;
                Some((
                    b.id,
                    BrokerMeta {
                        id: b.id,
                        host: e.host.clone(),
                        port: i32::from(e.port),
                        rack: b.rack.clone(),
                        fenced: b.fenced,
                    },
                ))
            })
            .collect()
    }

    /// The whole image as node `me`'s shards hold it.
    pub fn cluster_meta(&self, me: i32) -> ClusterMeta {
        let mut m = ClusterMeta::new(self.cluster_id.clone().unwrap_or_default());
        for id in self.topics.keys() {
            if let Some(t) = self.topic_meta(me, id) {
                m.topics.insert(t.name.clone(), t);
            }
        }
        m.brokers = self.broker_metas();
        m.producer_id_block_end = self.next_producer_id;
        m.group_configs = self.configs.get(&ResourceType::Group).cloned().unwrap_or_default();
        m.reindex();
        m
    }

    /// Partitions (topic id, index) with a replica on `broker`.
    pub fn replicas_of(&self, broker: i32) -> Vec<(Uuid, i32)> {
        let mut out = Vec::new();
        for t in self.topics.values() {
            for (i, p) in t.partitions.iter().enumerate() {
                if p.replicas.contains(&broker) {
                    out.push((t.id, i as i32));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(port: u16) -> Vec<Endpoint> {
        vec![Endpoint {
            name: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port,
        }]
    }

    fn register(id: i32, epoch: i64) -> Record {
        Record::RegisterBroker {
            broker_id: id,
            incarnation_id: Uuid::from_u128(id as u128),
            broker_epoch: epoch,
            endpoints: endpoint(9092 + id as u16),
            rack: None,
            shards: 2,
            fenced: true,
        }
    }

    fn topic_with_partition(img: &mut MetadataImage, at: &mut i64) -> Uuid {
        let id = Uuid::from_u128(99);
        let mut next = |r: Record| {
            *at += 1;
            img.apply(*at, &r).expect("applies")
        };
        next(Record::Topic {
            name: "t".into(),
            topic_id: id,
            internal: false,
        });
        next(Record::Partition {
            topic_id: id,
            partition: 0,
            replicas: vec![1, 2, 3],
            shards: vec![1, 1, 0],
            isr: vec![1, 2, 3],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
        });
        id
    }

    fn cluster() -> (MetadataImage, i64) {
        let mut img = MetadataImage::new();
        let mut at = 0;
        img.apply(
            at,
            &Record::Bootstrap {
                cluster_id: "c".into(),
                metadata_version: 1,
            },
        )
        .expect("bootstrap");
        for id in 1..=3 {
            at += 1;
            img.apply(at, &register(id, at)).expect("register");
        }
        (img, at)
    }

    #[test]
    fn leader_changes_bump_epochs_and_the_projection_follows() {
        let (mut img, mut at) = cluster();
        let id = topic_with_partition(&mut img, &mut at);
        at += 1;
        img.apply(
            at,
            &Record::PartitionChange {
                topic_id: id,
                partition: 0,
                leader: Some(2),
                isr: Some(vec![2, 3]),
                replicas: None,
                shards: None,
            },
        )
        .expect("change");
        let p = &img.topic("t").expect("topic").partitions[0];
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (2, 1, 1));
        at += 1;
        img.apply(
            at,
            &Record::PartitionChange {
                topic_id: id,
                partition: 0,
                leader: None,
                isr: Some(vec![1, 2, 3]),
                replicas: None,
                shards: None,
            },
        )
        .expect("ISR expand");
        let p = &img.topic("t").expect("topic").partitions[0];
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (2, 1, 2));
        // Node 3 holds its replica on shard 0; node 4 none: the leader's.
        assert_eq!(img.topic_meta(3, &id).expect("t").partitions[0].shard, 0);
        assert_eq!(img.topic_meta(4, &id).expect("t").partitions[0].shard, 1);
        let m = img.cluster_meta(1);
        assert_eq!(m.brokers.len(), 3);
        assert_eq!(m.topic("t").expect("t").partitions[0].isr, vec![1, 2, 3]);
    }

    #[test]
    fn invalid_records_are_refused_and_change_nothing() {
        let (mut img, mut at) = cluster();
        let id = topic_with_partition(&mut img, &mut at);
        let before = img.clone();
        let bad = [
            // Leader outside the ISR.
            Record::PartitionChange {
                topic_id: id,
                partition: 0,
                leader: Some(3),
                isr: Some(vec![1, 2]),
                replicas: None,
                shards: None,
            },
            // ISR not a subset of replicas.
            Record::PartitionChange {
                topic_id: id,
                partition: 0,
                leader: None,
                isr: Some(vec![1, 4]),
                replicas: None,
                shards: None,
            },
            // Sparse partition.
            Record::Partition {
                topic_id: id,
                partition: 5,
                replicas: vec![1],
                shards: vec![0],
                isr: vec![1],
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 0,
            },
            // Shards not parallel to replicas.
            Record::Partition {
                topic_id: id,
                partition: 1,
                replicas: vec![1, 2],
                shards: vec![0],
                isr: vec![1],
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 0,
            },
            Record::Topic {
                name: "t".into(),
                topic_id: Uuid::from_u128(5),
                internal: false,
            },
            Record::BrokerRegistrationChange {
                broker_id: 1,
                broker_epoch: 77,
                fenced: Some(false),
                in_controlled_shutdown: None,
            },
            Record::ProducerIds {
                broker_id: 9,
                broker_epoch: 1,
                next_producer_id: 1000,
            },
            Record::Config {
                resource: ResourceType::Topic,
                name: "nope".into(),
                key: "retention.ms".into(),
                value: Some("1".into()),
            },
            Record::Bootstrap {
                cluster_id: "other".into(),
                metadata_version: 1,
            },
            Record::RemoveTopic {
                topic_id: Uuid::from_u128(5),
            },
        ];
        for r in &bad {
            assert!(img.apply(at + 1, r).is_err(), "{r:?} was accepted");
            assert_eq!(img, before, "{r:?} changed the image");
        }
        // Replays of an applied offset are refused too.
        assert!(img.apply(at, &register(4, at)).is_err());
    }

    #[test]
    fn removing_a_topic_drops_its_configs_and_name() {
        let (mut img, mut at) = cluster();
        let id = topic_with_partition(&mut img, &mut at);
        at += 1;
        img.apply(
            at,
            &Record::Config {
                resource: ResourceType::Topic,
                name: "t".into(),
                key: "cleanup.policy".into(),
                value: Some("compact".into()),
            },
        )
        .expect("config");
        assert_eq!(img.topic_meta(1, &id).expect("t").configs.len(), 1);
        at += 1;
        let touched = img.apply(at, &Record::RemoveTopic { topic_id: id }).expect("remove");
        assert_eq!(touched, Touched::RemovedTopic { name: "t".into(), id });
        assert!(img.topic("t").is_none());
        assert!(img.topic_configs("t").is_empty());
        // The name can be reused.
        topic_with_partition(&mut img, &mut at);
    }

    #[test]
    fn a_snapshot_restores_the_same_image() {
        let (mut img, mut at) = cluster();
        topic_with_partition(&mut img, &mut at);
        at += 1;
        img.apply(
            at,
            &Record::ProducerIds {
                broker_id: 2,
                broker_epoch: 2,
                next_producer_id: 1000,
            },
        )
        .expect("pids");
        let json = serde_json::to_vec(&img).expect("serialize");
        let mut back: MetadataImage = serde_json::from_slice(&json).expect("deserialize");
        back.reindex();
        assert_eq!(back, img);
        assert_eq!(back.topic_id("t"), img.topic_id("t"));
        // Producer ids only move forward.
        assert!(back
            .apply(
                at + 1,
                &Record::ProducerIds {
                    broker_id: 2,
                    broker_epoch: 2,
                    next_producer_id: 1000,
                }
            )
            .is_err());
    }
}
