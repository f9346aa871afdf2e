//! The active controller's state machine (design: replication.md §5.2,
//! §5.6–5.10, §6): it turns requests into metadata records plus a reply.
//! Pure: no IO; time comes in as `now_ms`, randomness as arguments.
//!
//! The controller works on a *working* image: the committed image plus the
//! records it proposed and that are not committed yet, applied as it
//! proposes them, so that two requests in a row see each other. A record's
//! position in the working image is its sequence number among records (raft
//! entries without a record, such as a new leader's no-op, do not count), so
//! the image every node builds at commit time is the working image. When
//! this node loses the leadership, the shell rebuilds the working image
//! from the committed one ([`QuorumController::new`]) and uncommitted
//! records are forgotten, as their requests were never answered.
//!
//! Soft state (when each broker was last heard from) is not in the log: a
//! new active controller treats every broker as just heard from, so a
//! controller failover fences nobody.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::protocol::error::{self as ec, ApiError};

use super::controller::{validate_topic_configs, CreateTopic, MAX_PARTITIONS};
use super::election::{self, Election};
use super::image::{MetadataImage, PartitionImage};
use super::placement::{assign_brokers, Candidate, ShardLoads};
use super::records::{Endpoint, Record, ResourceType};
use super::{topic_name, OFFSETS_TOPIC};

/// Producer ids handed to a broker at a time.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

/// Settings the controller decides with.
#[derive(Clone, Debug)]
pub struct ControllerSettings {
    /// `broker.session.timeout.ms`.
    pub session_timeout_ms: i64,
    /// `num.partitions`.
    pub default_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `unclean.leader.election.enable` (the broker-wide default).
    pub unclean_leader_election: bool,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        ControllerSettings {
            session_timeout_ms: 9_000,
            default_partitions: 1,
            default_replication_factor: 1,
            unclean_leader_election: false,
        }
    }
}

/// BrokerRegistration, as the controller needs it.
#[derive(Clone, Debug)]
pub struct Registration {
    pub broker_id: i32,
    pub cluster_id: String,
    pub incarnation_id: Uuid,
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
    pub shards: u32,
}

/// BrokerHeartbeat, as the controller needs it.
#[derive(Clone, Copy, Debug)]
pub struct Heartbeat {
    pub broker_id: i32,
    pub broker_epoch: i64,
    /// The offset of the last metadata record the broker applied.
    pub metadata_offset: i64,
    pub want_fence: bool,
    pub want_shut_down: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatReply {
    pub is_fenced: bool,
    pub should_shut_down: bool,
}

/// Records to propose and what to answer once they are committed.
#[derive(Debug, PartialEq, Eq)]
pub struct Decision<T> {
    pub records: Vec<Record>,
    pub reply: T,
}

/// AlterPartition for one partition.
#[derive(Clone, Debug)]
pub struct IsrChange {
    pub broker_id: i32,
    pub broker_epoch: i64,
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

pub struct QuorumController {
    settings: ControllerSettings,
    working: MetadataImage,
    last_heard_ms: BTreeMap<i32, i64>,
}

impl QuorumController {
    /// Become the active controller over `committed`, at `now_ms`.
    pub fn new(settings: ControllerSettings, committed: &MetadataImage, now_ms: i64) -> Self {
        let last_heard_ms = committed.brokers.keys().map(|b| (*b, now_ms)).collect();
        QuorumController {
            settings,
            working: committed.clone(),
            last_heard_ms,
        }
    }

    pub fn image(&self) -> &MetadataImage {
        &self.working
    }

    /// Apply `records` to the working image (all or none).
    fn stage(&mut self, records: &[Record]) -> Result<(), ApiError> {
        let mut next = self.working.clone();
        for r in records {
            next.apply(next.offset + 1, r)
                .map_err(|e| ApiError::with_message(ec::UNKNOWN_SERVER_ERROR, e.to_string()))?;
        }
        self.working = next;
        Ok(())
    }

    fn decide<T>(&mut self, records: Vec<Record>, reply: T) -> Result<Decision<T>, ApiError> {
        self.stage(&records)?;
        Ok(Decision { records, reply })
    }

    fn eligible(&self) -> impl Fn(i32) -> bool + '_ {
        |b| self.working.brokers.get(&b).is_some_and(|x| x.eligible())
    }

    fn unclean_for(&self, topic: &str) -> bool {
        self.working
            .topic_configs(topic)
            .get("unclean.leader.election.enable")
            .map_or(self.settings.unclean_leader_election, |v| v == "true")
    }

    /// The first record of an empty log.
    pub fn bootstrap(&mut self, cluster_id: &str) -> Result<Decision<()>, ApiError> {
        if self.working.cluster_id.is_some() {
            return self.decide(Vec::new(), ());
        }
        self.decide(
            vec![Record::Bootstrap {
                cluster_id: cluster_id.to_string(),
                metadata_version: 1,
            }],
            (),
        )
    }

    /// BrokerRegistration: the reply is the broker epoch. A broker that is
    /// still alive under another incarnation is refused (two processes with
    /// one node id); a restarted one replaces its old registration, fenced
    /// until it catches up.
    pub fn register(&mut self, r: &Registration, now_ms: i64) -> Result<Decision<i64>, ApiError> {
        match &self.working.cluster_id {
            Some(c) if *c != r.cluster_id => {
                return Err(ApiError::with_message(
                    ec::INCONSISTENT_CLUSTER_ID,
                    format!("broker {} is of cluster {}, not {c}", r.broker_id, r.cluster_id),
                ))
            }
            _ => {}
        }
        if r.shards == 0 || r.broker_id < 0 {
            return Err(ApiError::with_message(
                ec::INVALID_REQUEST,
                "a broker needs an id and a shard",
            ));
        }
        if let Some(old) = self.working.brokers.get(&r.broker_id) {
            let alive = self
                .last_heard_ms
                .get(&r.broker_id)
                .is_some_and(|t| now_ms - t < self.settings.session_timeout_ms);
            if old.incarnation_id != r.incarnation_id && alive && !old.fenced {
                return Err(ApiError::with_message(
                    ec::DUPLICATE_BROKER_REGISTRATION,
                    format!(
                        "another incarnation of broker {} is registered and alive; is a second process using this node id?",
                        r.broker_id
                    ),
                ));
            }
        }
        let epoch = self.working.offset + 1;
        let mut records = vec![Record::RegisterBroker {
            broker_id: r.broker_id,
            incarnation_id: r.incarnation_id,
            broker_epoch: epoch,
            endpoints: r.endpoints.clone(),
            rack: r.rack.clone(),
            shards: r.shards,
            fenced: true,
        }];
        // The new registration is fenced: the old one's leaderships move.
        records.extend(self.partitions_without(r.broker_id));
        self.last_heard_ms.insert(r.broker_id, now_ms);
        self.decide(records, epoch)
    }

    fn check_epoch(&self, broker: i32, epoch: i64) -> Result<(), ApiError> {
        match self.working.brokers.get(&broker) {
            None => Err(ApiError::with_message(
                ec::BROKER_ID_NOT_REGISTERED,
                format!("broker {broker} is not registered"),
            )),
            Some(b) if b.epoch != epoch => Err(ApiError::with_message(
                ec::STALE_BROKER_EPOCH,
                format!("broker {broker} is at epoch {}, not {epoch}", b.epoch),
            )),
            Some(_) => Ok(()),
        }
    }

    /// BrokerHeartbeat: unfence a broker that has caught up with the
    /// metadata up to its own registration; start a controlled shutdown.
    pub fn heartbeat(&mut self, h: &Heartbeat, now_ms: i64) -> Result<Decision<HeartbeatReply>, ApiError> {
        self.check_epoch(h.broker_id, h.broker_epoch)?;
        self.last_heard_ms.insert(h.broker_id, now_ms);
        let Some(b) = self.working.brokers.get(&h.broker_id).cloned() else {
            return Err(ApiError::new(ec::BROKER_ID_NOT_REGISTERED));
        };
        let mut records = Vec::new();
        if h.want_shut_down && !b.in_controlled_shutdown {
            records.push(Record::BrokerRegistrationChange {
                broker_id: b.id,
                broker_epoch: b.epoch,
                fenced: None,
                in_controlled_shutdown: Some(true),
            });
            self.stage(&records)?;
            let moves = self.partitions_without(b.id);
            self.stage(&moves)?;
            records.extend(moves);
        } else if h.want_fence && !b.fenced {
            records.push(Record::BrokerRegistrationChange {
                broker_id: b.id,
                broker_epoch: b.epoch,
                fenced: Some(true),
                in_controlled_shutdown: None,
            });
            self.stage(&records)?;
            let moves = self.partitions_without(b.id);
            self.stage(&moves)?;
            records.extend(moves);
        } else if b.fenced && !h.want_fence && !h.want_shut_down && h.metadata_offset >= b.epoch {
            records.push(Record::BrokerRegistrationChange {
                broker_id: b.id,
                broker_epoch: b.epoch,
                fenced: Some(false),
                in_controlled_shutdown: None,
            });
            self.stage(&records)?;
            let back = self.offline_partitions_with(b.id);
            self.stage(&back)?;
            records.extend(back);
        }
        let now = self.working.brokers.get(&h.broker_id);
        let is_fenced = now.is_none_or(|x| x.fenced);
        let shutting = now.is_some_and(|x| x.in_controlled_shutdown);
        // Shut down once nothing it leads can still move elsewhere.
        let should_shut_down = shutting && !self.leads_movable(h.broker_id);
        Ok(Decision {
            records,
            reply: HeartbeatReply {
                is_fenced,
                should_shut_down,
            },
        })
    }

    fn leads_movable(&self, broker: i32) -> bool {
        let eligible = self.eligible();
        self.working
            .topics
            .values()
            .flat_map(|t| &t.partitions)
            .any(|p| p.leader == broker && p.isr.iter().any(|r| *r != broker && eligible(*r)))
    }

    /// Fence every broker not heard from within the session timeout and
    /// move its leaderships (design §5.6, step 3).
    pub fn tick(&mut self, now_ms: i64) -> Result<Vec<Record>, ApiError> {
        let expired: Vec<(i32, i64)> = self
            .working
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .filter(|b| {
                self.last_heard_ms
                    .get(&b.id)
                    .is_none_or(|t| now_ms - t >= self.settings.session_timeout_ms)
            })
            .map(|b| (b.id, b.epoch))
            .collect();
        let mut all = Vec::new();
        for (id, epoch) in expired {
            let fence = vec![Record::BrokerRegistrationChange {
                broker_id: id,
                broker_epoch: epoch,
                fenced: Some(true),
                in_controlled_shutdown: None,
            }];
            self.stage(&fence)?;
            let moves = self.partitions_without(id);
            self.stage(&moves)?;
            all.extend(fence);
            all.extend(moves);
        }
        Ok(all)
    }

    /// PartitionChanges taking `broker` out of every ISR it is in (except
    /// as last member) and electing new leaders where it led.
    fn partitions_without(&self, broker: i32) -> Vec<Record> {
        let eligible = self.eligible();
        let mut out = Vec::new();
        for t in self.working.topics.values() {
            let unclean = self.unclean_for(&t.name);
            for (i, p) in t.partitions.iter().enumerate() {
                let (leader, isr) = election::without(p, broker, &eligible, unclean);
                if leader.is_some() || isr.is_some() {
                    out.push(change(t.id, i as i32, leader, isr));
                }
            }
        }
        out
    }

    /// Leaders for offline partitions that `broker` (just unfenced) can
    /// lead: it is in their ISR.
    fn offline_partitions_with(&self, broker: i32) -> Vec<Record> {
        let eligible = self.eligible();
        let mut out = Vec::new();
        for t in self.working.topics.values() {
            for (i, p) in t.partitions.iter().enumerate() {
                if p.leader == -1 && p.replicas.contains(&broker) {
                    if let Election::Clean(l) = election::elect(p, &eligible, false) {
                        out.push(change(t.id, i as i32, Some(l), None));
                    }
                }
            }
        }
        out
    }

    fn candidates(&self) -> Vec<Candidate> {
        self.working
            .brokers
            .values()
            .filter(|b| b.eligible())
            .map(|b| Candidate {
                id: b.id,
                rack: b.rack.clone(),
                shards: b.shards,
            })
            .collect()
    }

    fn shard_loads(&self, candidates: &[Candidate]) -> ShardLoads {
        let mut loads = ShardLoads::new(candidates);
        for t in self.working.topics.values() {
            for p in &t.partitions {
                for (r, s) in p.replicas.iter().zip(&p.shards) {
                    loads.add(*r, *s);
                }
            }
        }
        loads
    }

    /// CreateTopics for one topic. `topic_id` and `(start, shift)` are the
    /// caller's random draws. The reply is the topic id.
    pub fn create_topic(
        &mut self,
        req: &CreateTopic,
        topic_id: Uuid,
        start: usize,
        shift: usize,
        validate_only: bool,
    ) -> Result<Decision<Uuid>, ApiError> {
        topic_name::validate(&req.name).map_err(|m| ApiError::with_message(ec::INVALID_TOPIC_EXCEPTION, m))?;
        if self.working.topic(&req.name).is_some() {
            return Err(ApiError::with_message(
                ec::TOPIC_ALREADY_EXISTS,
                format!("Topic '{}' already exists.", req.name),
            ));
        }
        if let Some(other) = self
            .working
            .topics
            .values()
            .find(|t| topic_name::collides(&t.name, &req.name))
        {
            return Err(ApiError::with_message(
                ec::INVALID_TOPIC_EXCEPTION,
                format!("Topic '{}' collides with existing topic: {}", req.name, other.name),
            ));
        }
        let configs = validate_topic_configs(&req.configs)?;
        let candidates = self.candidates();
        let replicas: Vec<Vec<i32>> = if !req.assignments.is_empty() {
            self.manual_assignments(req)?
        } else {
            let rf = if req.replication_factor == -1 {
                self.settings.default_replication_factor
            } else {
                req.replication_factor
            };
            let n = if req.num_partitions == -1 {
                self.settings.default_partitions
            } else {
                req.num_partitions
            };
            if n <= 0 || n > MAX_PARTITIONS {
                return Err(ApiError::with_message(
                    ec::INVALID_PARTITIONS,
                    format!("Number of partitions must be between 1 and {MAX_PARTITIONS}."),
                ));
            }
            if rf <= 0 {
                return Err(ApiError::with_message(
                    ec::INVALID_REPLICATION_FACTOR,
                    "Replication factor must be larger than 0.",
                ));
            }
            assign_brokers(&candidates, 0, n as usize, rf as usize, start, shift).map_err(|e| {
                ApiError::with_message(
                    e.code(),
                    format!(
                        "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {} broker(s) are registered.",
                        candidates.len()
                    ),
                )
            })?
        };
        let mut loads = self.shard_loads(&candidates);
        let mut records = vec![Record::Topic {
            name: req.name.clone(),
            topic_id,
            internal: req.name == OFFSETS_TOPIC,
        }];
        for (i, r) in replicas.into_iter().enumerate() {
            let shards = loads.choose(&r);
            records.push(Record::Partition {
                topic_id,
                partition: i as i32,
                leader: r[0],
                isr: r.clone(),
                replicas: r,
                shards,
                leader_epoch: 0,
                partition_epoch: 0,
            });
        }
        for (k, v) in configs {
            records.push(Record::Config {
                resource: ResourceType::Topic,
                name: req.name.clone(),
                key: k,
                value: Some(v),
            });
        }
        if validate_only {
            return Ok(Decision {
                records: Vec::new(),
                reply: topic_id,
            });
        }
        self.decide(records, topic_id)
    }

    fn manual_assignments(&self, req: &CreateTopic) -> Result<Vec<Vec<i32>>, ApiError> {
        if req.num_partitions != -1 || req.replication_factor != -1 {
            return Err(ApiError::with_message(
                ec::INVALID_REQUEST,
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
            ));
        }
        let mut sorted = req.assignments.clone();
        sorted.sort_by_key(|(p, _)| *p);
        if sorted.iter().enumerate().any(|(i, (p, _))| *p != i as i32) {
            return Err(ApiError::with_message(
                ec::INVALID_REPLICA_ASSIGNMENT,
                "Partitions should be a consecutive 0-based integer sequence",
            ));
        }
        let rf = sorted.first().map_or(0, |(_, r)| r.len());
        for (p, r) in &sorted {
            let mut distinct = r.clone();
            distinct.sort_unstable();
            distinct.dedup();
            if r.is_empty() || distinct.len() != r.len() || r.len() != rf {
                return Err(ApiError::with_message(
                    ec::INVALID_REPLICA_ASSIGNMENT,
                    format!("Invalid replica assignment {r:?} for partition {p}"),
                ));
            }
            if let Some(b) = r.iter().find(|b| !self.working.brokers.contains_key(b)) {
                return Err(ApiError::with_message(
                    ec::INVALID_REPLICA_ASSIGNMENT,
                    format!("Unknown broker {b} in replica assignment {r:?}"),
                ));
            }
        }
        Ok(sorted.into_iter().map(|(_, r)| r).collect())
    }

    /// CreatePartitions: grow `name` to `count` partitions with the topic's
    /// replication factor.
    pub fn create_partitions(
        &mut self,
        name: &str,
        count: i32,
        start: usize,
        shift: usize,
    ) -> Result<Decision<()>, ApiError> {
        let Some(t) = self.working.topic(name) else {
            return Err(ApiError::with_message(
                ec::UNKNOWN_TOPIC_OR_PARTITION,
                format!("Topic '{name}' does not exist."),
            ));
        };
        let have = t.partitions.len();
        if count <= have as i32 || count > MAX_PARTITIONS {
            return Err(ApiError::with_message(
                ec::INVALID_PARTITIONS,
                format!("Topic currently has {have} partitions, {count} would not be an increase."),
            ));
        }
        let rf = t.partitions.first().map_or(1, |p| p.replicas.len());
        let id = t.id;
        let candidates = self.candidates();
        let replicas = assign_brokers(&candidates, have, count as usize - have, rf, start, shift)
            .map_err(|e| ApiError::with_message(e.code(), e.to_string()))?;
        let mut loads = self.shard_loads(&candidates);
        let records = replicas
            .into_iter()
            .enumerate()
            .map(|(i, r)| Record::Partition {
                topic_id: id,
                partition: (have + i) as i32,
                leader: r[0],
                isr: r.clone(),
                shards: loads.choose(&r),
                replicas: r,
                leader_epoch: 0,
                partition_epoch: 0,
            })
            .collect();
        self.decide(records, ())
    }

    /// DeleteTopics for one topic.
    pub fn delete_topic(&mut self, name: &str) -> Result<Decision<Uuid>, ApiError> {
        let Some(id) = self.working.topic_id(name) else {
            return Err(ApiError::with_message(
                ec::UNKNOWN_TOPIC_OR_PARTITION,
                format!("Topic '{name}' does not exist."),
            ));
        };
        self.decide(vec![Record::RemoveTopic { topic_id: id }], id)
    }

    /// Set (Some) or remove (None) config keys of one resource; validated
    /// by the caller with the broker's config rules.
    pub fn alter_configs(
        &mut self,
        resource: ResourceType,
        name: &str,
        changes: &[(String, Option<String>)],
    ) -> Result<Decision<()>, ApiError> {
        if resource == ResourceType::Topic && self.working.topic(name).is_none() {
            return Err(ApiError::with_message(
                ec::UNKNOWN_TOPIC_OR_PARTITION,
                format!("Topic '{name}' does not exist."),
            ));
        }
        let records = changes
            .iter()
            .map(|(k, v)| Record::Config {
                resource,
                name: name.to_string(),
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        self.decide(records, ())
    }

    /// AlterPartition for one partition (KIP-497, KIP-841): only the
    /// current leader, at the current leader and partition epochs, with an
    /// ISR of eligible replicas that contains it. The reply is the
    /// partition as it is afterwards.
    pub fn alter_partition(&mut self, c: &IsrChange) -> Result<Decision<PartitionImage>, ApiError> {
        self.check_epoch(c.broker_id, c.broker_epoch)?;
        let p = self
            .working
            .topics
            .get(&c.topic_id)
            .ok_or_else(|| ApiError::new(ec::UNKNOWN_TOPIC_ID))?
            .partitions
            .get(usize::try_from(c.partition).unwrap_or(usize::MAX))
            .ok_or_else(|| ApiError::new(ec::UNKNOWN_TOPIC_OR_PARTITION))?
            .clone();
        if p.leader != c.broker_id {
            return Err(ApiError::with_message(
                ec::NOT_LEADER_OR_FOLLOWER,
                format!(
                    "broker {} does not lead the partition (leader {})",
                    c.broker_id, p.leader
                ),
            ));
        }
        if c.leader_epoch < p.leader_epoch {
            return Err(ApiError::new(ec::FENCED_LEADER_EPOCH));
        }
        if c.leader_epoch > p.leader_epoch {
            return Err(ApiError::new(ec::UNKNOWN_LEADER_EPOCH));
        }
        if c.partition_epoch != p.partition_epoch {
            return Err(ApiError::with_message(
                ec::INVALID_UPDATE_VERSION,
                format!(
                    "partition epoch {} is not the current {}",
                    c.partition_epoch, p.partition_epoch
                ),
            ));
        }
        let mut isr = c.new_isr.clone();
        isr.sort_unstable();
        isr.dedup();
        if isr.len() != c.new_isr.len() || !isr.contains(&c.broker_id) || isr.iter().any(|r| !p.replicas.contains(r)) {
            return Err(ApiError::with_message(
                ec::INVALID_REQUEST,
                format!(
                    "ISR {:?} must be distinct replicas of {:?} including the leader",
                    c.new_isr, p.replicas
                ),
            ));
        }
        let ineligible = {
            let eligible = self.eligible();
            c.new_isr.iter().copied().find(|r| !p.isr.contains(r) && !eligible(*r))
        };
        if let Some(r) = ineligible {
            return Err(ApiError::with_message(
                ec::INELIGIBLE_REPLICA,
                format!("replica {r} is fenced or shutting down and cannot join the ISR"),
            ));
        }
        if c.new_isr == p.isr {
            return Ok(Decision {
                records: Vec::new(),
                reply: p,
            });
        }
        let record = change(c.topic_id, c.partition, None, Some(c.new_isr.clone()));
        self.stage(std::slice::from_ref(&record))?;
        let after = self
            .working
            .topics
            .get(&c.topic_id)
            .and_then(|t| t.partitions.get(c.partition as usize))
            .cloned()
            .ok_or_else(|| ApiError::new(ec::UNKNOWN_SERVER_ERROR))?;
        Ok(Decision {
            records: vec![record],
            reply: after,
        })
    }

    /// AllocateProducerIds: the reply is the first id of the block.
    pub fn allocate_producer_ids(&mut self, broker: i32, broker_epoch: i64) -> Result<Decision<i64>, ApiError> {
        self.check_epoch(broker, broker_epoch)?;
        let first = self.working.next_producer_id;
        self.decide(
            vec![Record::ProducerIds {
                broker_id: broker,
                broker_epoch,
                next_producer_id: first + PRODUCER_ID_BLOCK,
            }],
            first,
        )
    }

    /// Preferred-leader elections where the preferred replica is in sync
    /// and eligible (ElectLeaders PREFERRED, auto rebalance).
    pub fn elect_preferred(&mut self, only: Option<&[(Uuid, i32)]>) -> Result<Vec<Record>, ApiError> {
        let mut out = Vec::new();
        let eligible = self.eligible();
        for t in self.working.topics.values() {
            for (i, p) in t.partitions.iter().enumerate() {
                if only.is_some_and(|o| !o.contains(&(t.id, i as i32))) {
                    continue;
                }
                if let Some(l) = election::preferred(p, &eligible) {
                    out.push(change(t.id, i as i32, Some(l), None));
                }
            }
        }
        drop(eligible);
        self.stage(&out)?;
        Ok(out)
    }
}

fn change(topic_id: Uuid, partition: i32, leader: Option<i32>, isr: Option<Vec<i32>>) -> Record {
    Record::PartitionChange {
        topic_id,
        partition,
        leader,
        isr,
        replicas: None,
        shards: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn reg(id: i32, incarnation: u128) -> Registration {
        Registration {
            broker_id: id,
            cluster_id: "c".into(),
            incarnation_id: Uuid::from_u128(incarnation),
            endpoints: vec![Endpoint {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9090 + id as u16,
            }],
            rack: None,
            shards: 2,
        }
    }

    /// The committed image every follower builds from the same records.
    struct Log {
        image: MetadataImage,
        records: Vec<Record>,
    }

    impl Log {
        fn commit(&mut self, records: &[Record]) {
            for r in records {
                let at = self.image.offset + 1;
                self.image.apply(at, r).expect("a committed record applies");
                self.records.push(r.clone());
            }
        }
    }

    fn heartbeat(q: &mut QuorumController, log: &mut Log, id: i32, epoch: i64, now: i64) -> HeartbeatReply {
        let d = q
            .heartbeat(
                &Heartbeat {
                    broker_id: id,
                    broker_epoch: epoch,
                    metadata_offset: i64::MAX,
                    want_fence: false,
                    want_shut_down: false,
                },
                now,
            )
            .expect("heartbeat");
        log.commit(&d.records);
        d.reply
    }

    /// Three brokers registered and unfenced; returns their epochs.
    fn three() -> (QuorumController, Log, BTreeMap<i32, i64>) {
        let mut log = Log {
            image: MetadataImage::new(),
            records: Vec::new(),
        };
        let mut q = QuorumController::new(ControllerSettings::default(), &log.image, 0);
        let d = q.bootstrap("c").expect("bootstrap");
        log.commit(&d.records);
        let mut epochs = BTreeMap::new();
        for id in 1..=3 {
            let d = q.register(&reg(id, id as u128), 0).expect("register");
            log.commit(&d.records);
            epochs.insert(id, d.reply);
        }
        for (id, e) in &epochs {
            assert!(!heartbeat(&mut q, &mut log, *id, *e, 0).is_fenced);
        }
        (q, log, epochs)
    }

    fn create(q: &mut QuorumController, log: &mut Log, name: &str, n: i32, rf: i16) -> Uuid {
        let d = q
            .create_topic(
                &CreateTopic {
                    name: name.into(),
                    num_partitions: n,
                    replication_factor: rf,
                    ..Default::default()
                },
                Uuid::from_u128(name.len() as u128 + 1000),
                0,
                0,
                false,
            )
            .expect("create");
        log.commit(&d.records);
        d.reply
    }

    #[test]
    fn the_working_image_is_what_followers_build() {
        let (mut q, mut log, _) = three();
        create(&mut q, &mut log, "t", 6, 3);
        assert_eq!(q.image(), &log.image);
        let t = log.image.topic("t").expect("t");
        let leaders: BTreeSet<i32> = t.partitions.iter().map(|p| p.leader).collect();
        assert_eq!(leaders.len(), 3, "leaders spread over the brokers");
        assert!(t
            .partitions
            .iter()
            .all(|p| p.isr.len() == 3 && p.shards.iter().all(|s| *s == p.shards[0])));
    }

    #[test]
    fn creation_errors_are_kafkas() {
        let (mut q, mut log, _) = three();
        create(&mut q, &mut log, "t", 1, 1);
        let err = |q: &mut QuorumController, name: &str, n: i32, rf: i16| {
            q.create_topic(
                &CreateTopic {
                    name: name.into(),
                    num_partitions: n,
                    replication_factor: rf,
                    ..Default::default()
                },
                Uuid::from_u128(7),
                0,
                0,
                false,
            )
            .map(|_| ())
            .unwrap_err()
            .code
        };
        assert_eq!(err(&mut q, "t", 1, 1), ec::TOPIC_ALREADY_EXISTS);
        assert_eq!(err(&mut q, "u", 1, 4), ec::INVALID_REPLICATION_FACTOR);
        assert_eq!(err(&mut q, "u", 0, 1), ec::INVALID_PARTITIONS);
        assert_eq!(err(&mut q, "bad/name", 1, 1), ec::INVALID_TOPIC_EXCEPTION);
        assert_eq!(q.image(), &log.image, "refused requests stage nothing");
    }

    #[test]
    fn a_silent_broker_is_fenced_and_its_leaderships_move() {
        let (mut q, mut log, epochs) = three();
        create(&mut q, &mut log, "t", 3, 3);
        // Brokers 2 and 3 keep heartbeating; broker 1 goes silent.
        for now in (1000..=12_000).step_by(1000) {
            for id in [2, 3] {
                heartbeat(&mut q, &mut log, id, epochs[&id], now);
            }
            let fenced = q.tick(now).expect("tick");
            log.commit(&fenced);
        }
        let b1 = &log.image.brokers[&1];
        assert!(b1.fenced);
        for p in &log.image.topic("t").expect("t").partitions {
            assert_ne!(p.leader, 1);
            assert!(!p.isr.contains(&1));
        }
        // Back: unfenced once caught up; preferred leaders come back on
        // election once it is in the ISR again (the leader's AlterPartition).
        assert!(!heartbeat(&mut q, &mut log, 1, epochs[&1], 13_000).is_fenced);
        let t = log.image.topic("t").expect("t").clone();
        for (i, p) in t.partitions.iter().enumerate() {
            let mut isr = p.isr.clone();
            isr.push(1);
            let d = q
                .alter_partition(&IsrChange {
                    broker_id: p.leader,
                    broker_epoch: epochs[&p.leader],
                    topic_id: t.id,
                    partition: i as i32,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                    new_isr: isr,
                })
                .expect("expand");
            log.commit(&d.records);
        }
        let d = q.elect_preferred(None).expect("elect");
        log.commit(&d);
        let t = log.image.topic("t").expect("t");
        assert!(t.partitions.iter().all(|p| p.leader == p.replicas[0]));
        assert_eq!(q.image(), &log.image);
    }

    #[test]
    fn alter_partition_is_fenced_by_epochs_and_eligibility() {
        let (mut q, mut log, epochs) = three();
        let id = create(&mut q, &mut log, "t", 1, 3);
        let p = log.image.topics[&id].partitions[0].clone();
        let leader = p.leader;
        let req = IsrChange {
            broker_id: leader,
            broker_epoch: epochs[&leader],
            topic_id: id,
            partition: 0,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: vec![leader],
        };
        let code = |q: &mut QuorumController, r: &IsrChange| q.alter_partition(r).map(|_| ()).unwrap_err().code;
        let follower = p.replicas.iter().copied().find(|r| *r != leader).expect("follower");
        assert_eq!(
            code(
                &mut q,
                &IsrChange {
                    broker_id: follower,
                    broker_epoch: epochs[&follower],
                    ..req.clone()
                }
            ),
            ec::NOT_LEADER_OR_FOLLOWER
        );
        assert_eq!(
            code(
                &mut q,
                &IsrChange {
                    broker_epoch: 999,
                    ..req.clone()
                }
            ),
            ec::STALE_BROKER_EPOCH
        );
        assert_eq!(
            code(
                &mut q,
                &IsrChange {
                    partition_epoch: 9,
                    ..req.clone()
                }
            ),
            ec::INVALID_UPDATE_VERSION
        );
        assert_eq!(
            code(
                &mut q,
                &IsrChange {
                    leader_epoch: -1,
                    ..req.clone()
                }
            ),
            ec::FENCED_LEADER_EPOCH
        );
        assert_eq!(
            code(
                &mut q,
                &IsrChange {
                    new_isr: vec![follower],
                    ..req.clone()
                }
            ),
            ec::INVALID_REQUEST
        );
        // Shrink works; the old partition epoch is then stale.
        let d = q.alter_partition(&req).expect("shrink");
        log.commit(&d.records);
        assert_eq!(d.reply.isr, vec![leader]);
        assert_eq!(code(&mut q, &req), ec::INVALID_UPDATE_VERSION);
        // A shutting-down replica cannot join.
        let d = q
            .heartbeat(
                &Heartbeat {
                    broker_id: follower,
                    broker_epoch: epochs[&follower],
                    metadata_offset: i64::MAX,
                    want_fence: false,
                    want_shut_down: true,
                },
                1,
            )
            .expect("shutdown");
        log.commit(&d.records);
        let expand = IsrChange {
            partition_epoch: d_epoch(&log, id),
            new_isr: vec![leader, follower],
            ..req.clone()
        };
        assert_eq!(code(&mut q, &expand), ec::INELIGIBLE_REPLICA);
    }

    fn d_epoch(log: &Log, id: Uuid) -> i32 {
        log.image.topics[&id].partitions[0].partition_epoch
    }

    #[test]
    fn controlled_shutdown_moves_leadership_before_saying_go() {
        let (mut q, mut log, epochs) = three();
        create(&mut q, &mut log, "t", 6, 3);
        let d = q
            .heartbeat(
                &Heartbeat {
                    broker_id: 2,
                    broker_epoch: epochs[&2],
                    metadata_offset: i64::MAX,
                    want_fence: false,
                    want_shut_down: true,
                },
                5,
            )
            .expect("heartbeat");
        log.commit(&d.records);
        assert!(d.reply.should_shut_down, "every leadership could move at once");
        for p in &log.image.topic("t").expect("t").partitions {
            assert_ne!(p.leader, 2);
            assert!(!p.isr.contains(&2));
        }
        assert_eq!(q.image(), &log.image);
    }

    #[test]
    fn a_second_process_with_the_same_id_is_refused() {
        let (mut q, mut log, epochs) = three();
        let e = q.register(&reg(2, 999), 100).map(|_| ()).unwrap_err();
        assert_eq!(e.code, ec::DUPLICATE_BROKER_REGISTRATION);
        // After the session expired, the new incarnation takes over with a
        // higher epoch and starts fenced.
        log.commit(&q.tick(20_000).expect("tick"));
        let d = q.register(&reg(2, 999), 20_000).expect("re-register");
        log.commit(&d.records);
        assert!(d.reply > epochs[&2]);
        assert!(log.image.brokers[&2].fenced);
        assert_eq!(
            q.heartbeat(
                &Heartbeat {
                    broker_id: 2,
                    broker_epoch: epochs[&2],
                    metadata_offset: 0,
                    want_fence: false,
                    want_shut_down: false
                },
                20_001
            )
            .map(|_| ())
            .unwrap_err()
            .code,
            ec::STALE_BROKER_EPOCH
        );
        let wrong_cluster = Registration {
            cluster_id: "other".into(),
            ..reg(4, 4)
        };
        assert_eq!(
            q.register(&wrong_cluster, 0).map(|_| ()).unwrap_err().code,
            ec::INCONSISTENT_CLUSTER_ID
        );
    }

    #[test]
    fn producer_id_blocks_never_overlap() {
        let (mut q, mut log, epochs) = three();
        let mut seen = BTreeSet::new();
        for round in 0..5 {
            for id in 1..=3 {
                let d = q.allocate_producer_ids(id, epochs[&id]).expect("block");
                log.commit(&d.records);
                assert!(seen.insert(d.reply), "block {} twice (round {round})", d.reply);
            }
        }
        // A new active controller continues after the committed blocks.
        let mut q2 = QuorumController::new(ControllerSettings::default(), &log.image, 0);
        let d = q2.allocate_producer_ids(1, epochs[&1]).expect("block");
        assert_eq!(d.reply, 15 * PRODUCER_ID_BLOCK);
    }

    #[test]
    fn a_new_controller_fences_nobody_at_once() {
        let (_, mut log, _) = three();
        let mut q = QuorumController::new(ControllerSettings::default(), &log.image, 50_000);
        assert!(q.tick(55_000).expect("tick").is_empty());
        let fenced = q.tick(60_000).expect("tick");
        log.commit(&fenced);
        assert!(log.image.brokers.values().all(|b| b.fenced));
    }
}
