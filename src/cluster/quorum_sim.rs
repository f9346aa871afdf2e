//! The controller quorum as a whole, without IO: raft-rs nodes
//! ([`RaftNode`]) carrying batches of metadata records, the active
//! controller ([`QuorumController`]) on whichever node leads, and every
//! node's [`MetadataImage`] built from committed entries; on a seeded
//! network that loses and reorders messages, cuts nodes off, and kills any
//! voter (the active controller included) and restarts it from what it
//! persisted.
//!
//! Checked, for many seeds:
//! - every committed record applies on every node (a controller never
//!   commits a record its image refuses), and every index holds the same
//!   entry everywhere;
//! - a reply is given only for a committed decision, and what was replied
//!   holds across failovers: producer-id blocks never overlap, a broker's
//!   epochs only grow, a created topic keeps its id;
//! - a new controller waits until it has applied every entry of earlier
//!   terms, so its working image starts equal to the committed one;
//! - after healing, every image is the same, and the active controller's
//!   working image is exactly the committed image.

use std::collections::{BTreeMap, BTreeSet};

use raft::eraftpb::Message;
use uuid::Uuid;

use super::raft_node::tests::Disk;
use super::raft_node::{Jitter, RaftNode, Timing};
use super::raft_store::RaftStore;
use crate::metadata::controller::CreateTopic;
use crate::metadata::image::MetadataImage;
use crate::metadata::quorum::{ControllerSettings, Heartbeat, QuorumController, Registration};
use crate::metadata::records::{decode_batch, encode_batch, Endpoint, Record};

/// The harness's dice: the election jitter's generator, with a bound.
struct Rng(Jitter);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next()
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Voter {
    raft: RaftNode,
    /// Built from committed entries since boot (a restart replays them).
    image: MetadataImage,
    applied: u64,
    controller: Option<QuorumController>,
}

/// What a reply promised, once its entry committed.
#[derive(Clone, Debug)]
enum Promise {
    ProducerBlock(i64),
    BrokerEpoch { broker: i32, epoch: i64 },
    Topic { name: String, id: Uuid },
}

struct Sim {
    ids: Vec<u64>,
    voters: BTreeMap<u64, Voter>,
    disks: BTreeMap<u64, Disk>,
    net: Vec<Message>,
    cut: BTreeSet<u64>,
    rng: Rng,
    now_ms: i64,
    seed: u64,
    /// Index → (term, data) of every entry applied anywhere.
    committed: BTreeMap<u64, (u64, Vec<u8>)>,
    /// (index, term) → what its reply will promise once committed.
    pending: BTreeMap<(u64, u64), Vec<Promise>>,
    promised: Vec<Promise>,
    leaders: BTreeSet<(u64, u64)>,
    topics: u64,
}

fn settings() -> ControllerSettings {
    ControllerSettings {
        session_timeout_ms: 3_000,
        ..Default::default()
    }
}

impl Sim {
    fn new(seed: u64, n: u64) -> Sim {
        let ids: Vec<u64> = (1..=n).collect();
        let mut sim = Sim {
            ids: ids.clone(),
            voters: BTreeMap::new(),
            disks: ids.iter().map(|i| (*i, Disk::default())).collect(),
            net: Vec::new(),
            cut: BTreeSet::new(),
            rng: Rng(Jitter(seed)),
            now_ms: 0,
            seed,
            committed: BTreeMap::new(),
            pending: BTreeMap::new(),
            promised: Vec::new(),
            leaders: BTreeSet::new(),
            topics: 0,
        };
        for id in ids {
            sim.boot(id);
        }
        sim
    }

    fn boot(&mut self, id: u64) {
        let d = &self.disks[&id];
        let store =
            RaftStore::restore(&self.ids, None, d.entries.clone(), d.hard_state.clone()).expect("restore the disk");
        let timing = Timing {
            election_tick: 10,
            heartbeat_tick: 2,
        };
        let raft = RaftNode::new(id, store, 0, timing, self.seed ^ self.now_ms as u64).expect("node");
        self.voters.insert(
            id,
            Voter {
                raft,
                image: MetadataImage::new(),
                applied: 0,
                controller: None,
            },
        );
    }

    fn drain(&mut self) {
        for id in self.ids.clone() {
            while let Some(v) = self.voters.get_mut(&id) {
                let Some(out) = v.raft.ready().expect("ready") else {
                    break;
                };
                self.disks.get_mut(&id).expect("disk").persist(&out);
                self.net.extend(out.messages.iter().cloned());
                for e in &out.committed {
                    let seen = self
                        .committed
                        .entry(e.index)
                        .or_insert_with(|| (e.term, e.data.to_vec()));
                    assert_eq!(
                        seen,
                        &(e.term, e.data.to_vec()),
                        "seed {}: index {} differs on {id}",
                        self.seed,
                        e.index
                    );
                    let batch = decode_batch(&e.data).expect("a committed entry decodes");
                    for r in &batch {
                        let at = v.image.offset + 1;
                        if let Err(err) = v.image.apply(at, r) {
                            panic!("seed {}: node {id} cannot apply a committed record: {err}", self.seed);
                        }
                    }
                    v.applied = e.index;
                    // Replies for this index: given if it is the entry
                    // proposed, dropped if another term's entry won.
                    let keys: Vec<(u64, u64)> = self
                        .pending
                        .range((e.index, 0)..=(e.index, u64::MAX))
                        .map(|(k, _)| *k)
                        .collect();
                    for k in keys {
                        if let Some(p) = self.pending.remove(&k) {
                            if k.1 == e.term {
                                self.promised.extend(p);
                            }
                        }
                    }
                }
            }
        }
        // Controllers: only on a leader that has applied its term's
        // committed state.
        for (id, v) in self.voters.iter_mut() {
            if !v.raft.is_leader() {
                v.controller = None;
                continue;
            }
            self.leaders.insert((v.raft.term(), *id));
            if v.controller.is_none() && v.raft.committed_in_term() && v.applied == v.raft.commit_index() {
                v.controller = Some(QuorumController::new(settings(), &v.image, self.now_ms));
            }
        }
    }

    fn deliver(&mut self, faults: bool) {
        let mut msgs = std::mem::take(&mut self.net);
        for i in (1..msgs.len()).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            msgs.swap(i, j);
        }
        for m in msgs {
            if faults && self.rng.below(100) < 3 {
                continue;
            }
            if self.cut.contains(&m.from) || self.cut.contains(&m.to) {
                continue;
            }
            if let Some(v) = self.voters.get_mut(&m.to) {
                let _ = v.raft.step(m);
            }
        }
    }

    /// One request to the active controller, if there is one.
    fn request(&mut self) {
        let Some((&id, _)) = self.voters.iter().find(|(_, v)| v.controller.is_some()) else {
            return;
        };
        let now = self.now_ms;
        let roll = self.rng.below(6);
        let pick = self.rng.next();
        let topic_n = self.topics;
        let Some(v) = self.voters.get_mut(&id) else { return };
        let Some(c) = v.controller.as_mut() else { return };
        let brokers: Vec<(i32, i64)> = c.image().brokers.values().map(|b| (b.id, b.epoch)).collect();
        let decision: Option<(Vec<Record>, Vec<Promise>)> = match roll {
            0 => {
                let broker = 1 + (pick % 4) as i32;
                let r = Registration {
                    broker_id: broker,
                    cluster_id: "sim".into(),
                    incarnation_id: Uuid::from_u128(u128::from(pick)),
                    endpoints: vec![Endpoint {
                        name: "PLAINTEXT".into(),
                        host: format!("10.0.0.{broker}"),
                        port: 9092,
                    }],
                    rack: Some(format!("r{}", broker % 2)),
                    shards: 2,
                };
                c.register(&r, now)
                    .ok()
                    .map(|d| (d.records, vec![Promise::BrokerEpoch { broker, epoch: d.reply }]))
            }
            1 if !brokers.is_empty() => {
                let (b, e) = brokers[(pick % brokers.len() as u64) as usize];
                c.allocate_producer_ids(b, e)
                    .ok()
                    .map(|d| (d.records, vec![Promise::ProducerBlock(d.reply)]))
            }
            2 => {
                let name = format!("t{topic_n}");
                let req = CreateTopic {
                    name: name.clone(),
                    num_partitions: 1 + (pick % 3) as i32,
                    replication_factor: 1 + (pick % 2) as i16,
                    ..Default::default()
                };
                let tid = Uuid::from_u128(u128::from(pick) << 1 | 1);
                c.create_topic(&req, tid, pick as usize, (pick >> 8) as usize, false)
                    .ok()
                    .map(|d| (d.records, vec![Promise::Topic { name, id: d.reply }]))
            }
            3 => c.tick(now).ok().map(|r| (r, Vec::new())),
            _ => None,
        };
        if roll == 2 {
            self.topics += 1;
        }
        // Brokers 1-3 heartbeat (4 does not, and is fenced).
        let mut beats = Vec::new();
        for (b, e) in brokers.iter().filter(|(b, _)| *b <= 3) {
            let h = Heartbeat {
                broker_id: *b,
                broker_epoch: *e,
                metadata_offset: i64::MAX,
                want_fence: false,
                want_shut_down: false,
            };
            if let Ok(d) = c.heartbeat(&h, now) {
                beats.extend(d.records);
            }
        }
        let mut batches: Vec<(Vec<Record>, Vec<Promise>)> = decision.into_iter().collect();
        if !beats.is_empty() {
            batches.push((beats, Vec::new()));
        }
        for (records, promises) in batches {
            if records.is_empty() {
                continue;
            }
            let index = v.raft.last_index() + 1;
            let term = v.raft.term();
            if v.raft.propose(encode_batch(&records)).is_ok() {
                self.pending.insert((index, term), promises);
            } else {
                // The working image holds records raft did not take.
                v.controller = None;
                break;
            }
        }
    }

    fn step(&mut self, faults: bool, requests: bool) {
        self.now_ms += 100;
        for v in self.voters.values_mut() {
            v.raft.tick();
        }
        self.drain();
        self.deliver(faults);
        self.drain();
        if requests && self.rng.below(3) == 0 {
            self.request();
            self.drain();
        }
        if !faults {
            return;
        }
        match self.rng.below(150) {
            0 => {
                // kill -9 of a voter, often the active controller.
                let victim = if self.rng.below(2) == 0 {
                    self.voters.iter().find(|(_, v)| v.raft.is_leader()).map(|(id, _)| *id)
                } else {
                    None
                }
                .unwrap_or_else(|| self.ids[self.rng.below(self.ids.len() as u64) as usize]);
                self.voters.remove(&victim);
            }
            1 => {
                let down: Vec<u64> = self
                    .ids
                    .iter()
                    .copied()
                    .filter(|i| !self.voters.contains_key(i))
                    .collect();
                if let Some(id) = down.first() {
                    self.boot(*id);
                }
            }
            2 => {
                let x = self.ids[self.rng.below(self.ids.len() as u64) as usize];
                self.cut.insert(x);
            }
            3 => self.cut.clear(),
            _ => {}
        }
    }

    fn heal(&mut self) {
        self.cut.clear();
        for id in self.ids.clone() {
            if !self.voters.contains_key(&id) {
                self.boot(id);
            }
        }
    }
}

fn run(seed: u64, n: u64, steps: usize) -> (usize, usize) {
    let mut sim = Sim::new(seed, n);
    for _ in 0..steps {
        sim.step(true, true);
    }
    sim.heal();
    // Keep requests flowing so a commit in the new term happens, then let
    // everything settle.
    for _ in 0..200 {
        sim.step(false, true);
    }
    for _ in 0..200 {
        sim.step(false, false);
    }

    // Every node built the same image.
    let first = sim.voters.values().next().map(|v| v.image.clone()).expect("a voter");
    for (id, v) in &sim.voters {
        assert_eq!(v.image, first, "seed {seed}: node {id} built another image");
    }
    let active: Vec<&Voter> = sim.voters.values().filter(|v| v.controller.is_some()).collect();
    assert_eq!(active.len(), 1, "seed {seed}: one active controller after healing");
    if let Some(c) = &active[0].controller {
        assert_eq!(
            c.image(),
            &first,
            "seed {seed}: the working image is not the committed one"
        );
    }

    // What was promised holds.
    let mut blocks = BTreeSet::new();
    let mut epochs: BTreeMap<i32, i64> = BTreeMap::new();
    for p in &sim.promised {
        match p {
            Promise::ProducerBlock(first_id) => {
                assert!(
                    blocks.insert(*first_id),
                    "seed {seed}: producer-id block {first_id} given twice"
                );
                assert!(*first_id < first.next_producer_id);
            }
            Promise::BrokerEpoch { broker, epoch } => {
                if let Some(prev) = epochs.insert(*broker, *epoch) {
                    assert!(*epoch > prev, "seed {seed}: broker {broker} epoch {epoch} after {prev}");
                }
            }
            Promise::Topic { name, id } => {
                assert_eq!(
                    first.topic_id(name),
                    Some(*id),
                    "seed {seed}: topic {name} lost or changed"
                );
            }
        }
    }
    (sim.promised.len(), sim.leaders.len())
}

#[test]
fn the_controller_quorum_keeps_its_promises_through_failovers() {
    let mut promised = 0;
    let mut failovers = 0;
    for seed in 0..24 {
        let (p, l) = run(seed, 3, 1500);
        promised += p;
        failovers += l.saturating_sub(1);
    }
    for seed in 100..104 {
        let (p, l) = run(seed, 5, 1500);
        promised += p;
        failovers += l.saturating_sub(1);
    }
    // The runs did something: replies given, leadership moved.
    assert!(promised > 500, "only {promised} replies");
    assert!(failovers > 20, "only {failovers} leader changes");
}
