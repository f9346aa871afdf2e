//! One controller-quorum member's Raft state machine: raft-rs's `RawNode`
//! over a [`RaftStore`], driven by calls and returning what to do (pure: no
//! IO, no clock, no thread-local randomness). The shell on shard 0 ticks
//! it, feeds it the messages its peers sent, and carries out each
//! [`Output`] in order: persist, then send, then apply
//! (docs/design/replication.md, Sections 4 and 5.2).
//!
//! Determinism: raft-rs draws each randomized election timeout from
//! `rand::thread_rng()`, and only when a node changes role or term (its
//! `become_*` transitions; every one changes one of the two). After every
//! call, when the (term, role) pair moved or the timeout is not the one
//! this wrapper set, the wrapper replaces the timeout with one from its
//! own seeded generator, before any tick can read it. So a simulation seed
//! replays every election exactly.

use raft::eraftpb::{Entry, HardState, Message, Snapshot};
use raft::{Config, RawNode, StateRole};

use super::raft_store::RaftStore;

/// Ticks of the election timeout and heartbeat interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// A follower that hears nothing from a leader for this many ticks
    /// (randomized in [E, 2E)) starts an election.
    pub election_tick: usize,
    pub heartbeat_tick: usize,
}

impl Timing {
    /// From Kafka's `controller.quorum.election.timeout.ms` and ringlog's
    /// tick (`ringlog.controller.tick.ms`); heartbeats every 2 ticks.
    pub fn from_ms(election_timeout_ms: u64, tick_ms: u64) -> Timing {
        let tick_ms = tick_ms.max(1);
        Timing {
            election_tick: (election_timeout_ms / tick_ms).max(3) as usize,
            heartbeat_tick: 2,
        }
    }
}

/// What the shell must do after a step, in this order:
/// 1. make `snapshot`, `entries` (appended, replacing any persisted entries
///    from `entries[0].index` on) and `hard_state` durable;
/// 2. send `messages`;
/// 3. apply `committed` to the metadata image, in order.
#[derive(Debug, Default)]
pub struct Output {
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    pub messages: Vec<Message>,
    pub committed: Vec<Entry>,
}

impl Output {
    pub fn must_persist(&self) -> bool {
        self.snapshot.is_some() || !self.entries.is_empty() || self.hard_state.is_some()
    }
}

/// Why a proposal was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// Only the leader takes proposals; this one is believed to lead.
    #[error("not the quorum leader (leader: {0:?})")]
    NotLeader(Option<u64>),
    /// The leader refused it (e.g. stepping down, too much uncommitted).
    #[error("proposal dropped")]
    Dropped,
}

/// A SplitMix64 generator: the election-timeout jitter, from a seed.
#[derive(Clone, Debug)]
pub(super) struct Jitter(pub(super) u64);

impl Jitter {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

pub struct RaftNode {
    raw: RawNode<RaftStore>,
    timing: Timing,
    jitter: Jitter,
    /// The election timeout this wrapper set last, and the term and role
    /// it was set in.
    timeout_set: usize,
    last_reset: (u64, StateRole),
}

impl RaftNode {
    /// A node with the persisted `store`, having applied entries up to
    /// `applied` (the metadata image's index; committed entries after it
    /// are delivered again).
    pub fn new(id: u64, store: RaftStore, applied: u64, timing: Timing, seed: u64) -> raft::Result<RaftNode> {
        let cfg = Config {
            id,
            election_tick: timing.election_tick,
            heartbeat_tick: timing.heartbeat_tick,
            applied,
            pre_vote: true,
            check_quorum: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            ..Default::default()
        };
        cfg.validate()?;
        let logger = slog::Logger::root(TracingDrain, slog::o!("raft_id" => id));
        let raw = RawNode::new(&cfg, store, &logger)?;
        let mut node = RaftNode {
            raw,
            timing,
            jitter: Jitter(seed ^ id.wrapping_mul(0xA24B_AED4_963E_E407)),
            timeout_set: 0,
            last_reset: (u64::MAX, StateRole::Follower),
        };
        node.fix_timeout();
        Ok(node)
    }

    /// Replace a timeout raft-rs redrew with one from the seeded jitter.
    fn fix_timeout(&mut self) {
        let now = (self.raw.raft.term, self.raw.raft.state);
        if now != self.last_reset || self.raw.raft.randomized_election_timeout() != self.timeout_set {
            let e = self.timing.election_tick;
            let t = e + (self.jitter.next() % e as u64) as usize;
            self.raw.raft.set_randomized_election_timeout(t);
            self.timeout_set = t;
            self.last_reset = now;
        }
    }

    pub fn id(&self) -> u64 {
        self.raw.raft.id
    }

    /// Advance the logical clock one tick.
    pub fn tick(&mut self) {
        self.raw.tick();
        self.fix_timeout();
    }

    /// A message from a peer. Messages from a node outside the quorum, or
    /// of a local-only type, are refused.
    pub fn step(&mut self, msg: Message) -> raft::Result<()> {
        if raft::raw_node::is_local_msg(msg.get_msg_type()) {
            return Err(raft::Error::StepLocalMsg);
        }
        let known = self.raw.raft.prs().conf().voters().contains(msg.from);
        if !known {
            return Err(raft::Error::StepPeerNotFound);
        }
        let r = self.raw.step(msg);
        self.fix_timeout();
        r
    }

    /// Start an election now (tests; a leader transfer target).
    pub fn campaign(&mut self) -> raft::Result<()> {
        let r = self.raw.campaign();
        self.fix_timeout();
        r
    }

    /// Propose an entry (an encoded batch of metadata records).
    pub fn propose(&mut self, data: Vec<u8>) -> Result<(), ProposeError> {
        if self.raw.raft.state != StateRole::Leader {
            return Err(ProposeError::NotLeader(self.leader_id()));
        }
        self.raw.propose(Vec::new(), data).map_err(|_| ProposeError::Dropped)
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    pub fn role(&self) -> StateRole {
        self.raw.raft.state
    }

    /// The leader this node knows of.
    pub fn leader_id(&self) -> Option<u64> {
        Some(self.raw.raft.leader_id).filter(|l| *l != raft::INVALID_ID)
    }

    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    /// A leader has committed an entry of its own term, so every entry of
    /// earlier terms it holds is committed too: once they are applied, its
    /// image is the whole committed state and it may act as controller
    /// (KRaft's leader waits the same way).
    pub fn committed_in_term(&self) -> bool {
        let log = &self.raw.raft.raft_log;
        log.term(log.committed).ok() == Some(self.term())
    }

    pub fn last_index(&self) -> u64 {
        self.raw.raft.raft_log.last_index()
    }

    /// A peer could not be reached (its connection failed): the leader
    /// probes it instead of streaming to it.
    pub fn report_unreachable(&mut self, peer: u64) {
        self.raw.report_unreachable(peer);
    }

    /// The application made a snapshot of its image at `index` (at most
    /// what it applied): older entries can go.
    pub fn compact(&mut self, index: u64, data: bytes::Bytes) -> raft::Result<()> {
        self.raw.mut_store().compact_to_snapshot(index, data)
    }

    /// What the leader knows a peer holds (its match index); None on a
    /// follower or for an unknown peer.
    pub fn match_index(&self, peer: u64) -> Option<u64> {
        if !self.is_leader() {
            return None;
        }
        self.raw.raft.prs().get(peer).map(|p| p.matched)
    }

    pub fn store(&self) -> &RaftStore {
        self.raw.store()
    }

    /// Collect what is ready: the store already holds the new entries and
    /// hard state; the shell persists them, sends, applies. None when there
    /// is nothing to do.
    pub fn ready(&mut self) -> raft::Result<Option<Output>> {
        if !self.raw.has_ready() {
            return Ok(None);
        }
        let mut rd = self.raw.ready();
        let mut out = Output {
            // A leader's own messages could leave before its entries are
            // durable; sending everything after persisting is simpler and
            // as safe.
            messages: rd.take_messages(),
            committed: rd.take_committed_entries(),
            ..Default::default()
        };
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            self.raw.mut_store().apply_snapshot(snap.clone())?;
            out.snapshot = Some(snap);
        }
        let entries = rd.take_entries();
        self.raw.mut_store().append(&entries)?;
        out.entries = entries;
        if let Some(hs) = rd.hs() {
            self.raw.mut_store().set_hard_state(hs.clone());
            out.hard_state = Some(hs.clone());
        }
        out.messages.extend(rd.take_persisted_messages());
        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit);
            out.hard_state = Some(self.raw.store().hard_state().clone());
        }
        out.messages.extend(light.take_messages());
        out.committed.extend(light.take_committed_entries());
        self.raw.advance_apply();
        self.fix_timeout();
        Ok(Some(out))
    }
}

/// raft-rs logs through slog; this forwards its records to `tracing`.
struct TracingDrain;

struct KvLine(String);

impl slog::Serializer for KvLine {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments) -> slog::Result {
        use std::fmt::Write;
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record, values: &slog::OwnedKVList) -> Result<(), slog::Never> {
        use slog::KV;
        let mut kv = KvLine(String::new());
        let _ = record.kv().serialize(record, &mut kv);
        let _ = values.serialize(record, &mut kv);
        let msg = record.msg();
        match record.level() {
            slog::Level::Critical | slog::Level::Error => tracing::error!(target: "raft", "{msg}{}", kv.0),
            slog::Level::Warning => tracing::warn!(target: "raft", "{msg}{}", kv.0),
            slog::Level::Info => tracing::info!(target: "raft", "{msg}{}", kv.0),
            slog::Level::Debug => tracing::debug!(target: "raft", "{msg}{}", kv.0),
            slog::Level::Trace => tracing::trace!(target: "raft", "{msg}{}", kv.0),
        }
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    //! A quorum of in-memory nodes on a seeded, lossy, partitionable
    //! network with crashes and restarts from what each node persisted.
    //! Checked: one leader per term; every index applied anywhere holds the
    //! same entry everywhere; after healing, every node has applied every
    //! committed proposal, in the same order, and a new proposal commits.

    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    #[derive(Default, Clone)]
    pub(crate) struct Disk {
        snapshot: Option<Snapshot>,
        pub(crate) entries: Vec<Entry>,
        pub(crate) hard_state: HardState,
        /// The "image": data of applied entries by index.
        applied: Vec<(u64, Vec<u8>)>,
    }

    impl Disk {
        pub(crate) fn persist(&mut self, out: &Output) {
            if let Some(s) = &out.snapshot {
                self.snapshot = Some(s.clone());
                let i = s.get_metadata().index;
                self.entries.retain(|e| e.index > i);
            }
            if let Some(head) = out.entries.first() {
                self.entries.retain(|e| e.index < head.index);
                self.entries.extend(out.entries.iter().cloned());
            }
            if let Some(hs) = &out.hard_state {
                self.hard_state = hs.clone();
            }
        }

        fn applied_index(&self) -> u64 {
            self.applied.last().map_or(0, |(i, _)| *i)
        }
    }

    struct Quorum {
        ids: Vec<u64>,
        nodes: BTreeMap<u64, RaftNode>,
        disks: BTreeMap<u64, Disk>,
        net: Vec<Message>,
        rng: Jitter,
        cut: BTreeSet<(u64, u64)>,
        leaders: BTreeMap<u64, u64>,
        /// Index -> (term, data) of every applied entry, from any node.
        applied_anywhere: BTreeMap<u64, (u64, Vec<u8>)>,
        proposals: u64,
        /// Off for the last phase, so every node can catch up to one tail.
        proposing: bool,
        trace: Vec<u64>,
    }

    fn timing() -> Timing {
        Timing {
            election_tick: 10,
            heartbeat_tick: 2,
        }
    }

    impl Quorum {
        fn new(n: u64, seed: u64) -> Quorum {
            let ids: Vec<u64> = (1..=n).collect();
            let mut q = Quorum {
                ids: ids.clone(),
                nodes: BTreeMap::new(),
                disks: ids.iter().map(|i| (*i, Disk::default())).collect(),
                net: Vec::new(),
                rng: Jitter(seed),
                cut: BTreeSet::new(),
                leaders: BTreeMap::new(),
                applied_anywhere: BTreeMap::new(),
                proposals: 0,
                proposing: true,
                trace: Vec::new(),
            };
            for id in ids {
                q.boot(id, seed);
            }
            q
        }

        fn boot(&mut self, id: u64, seed: u64) {
            let d = &self.disks[&id];
            let store = RaftStore::restore(&self.ids, d.snapshot.clone(), d.entries.clone(), d.hard_state.clone())
                .expect("restore what was persisted");
            let node = RaftNode::new(
                id,
                store,
                d.applied_index(),
                timing(),
                seed.wrapping_add(self.trace.len() as u64),
            )
            .expect("node");
            self.nodes.insert(id, node);
        }

        fn roll(&mut self, n: u64) -> u64 {
            self.rng.next() % n
        }

        fn drain(&mut self) {
            let ids: Vec<u64> = self.nodes.keys().copied().collect();
            for id in ids {
                while let Some(node) = self.nodes.get_mut(&id) {
                    let Some(out) = node.ready().expect("ready") else { break };
                    if node.is_leader() {
                        let term = node.term();
                        if let Some(prev) = self.leaders.insert(term, id) {
                            assert_eq!(prev, id, "two leaders in term {term}");
                        }
                    }
                    let disk = self.disks.get_mut(&id).expect("disk");
                    disk.persist(&out);
                    self.net.extend(out.messages);
                    for e in out.committed {
                        let last = disk.applied_index();
                        assert!(e.index > last, "node {id} applies {} after {last}", e.index);
                        disk.applied.push((e.index, e.data.to_vec()));
                        let seen = self
                            .applied_anywhere
                            .entry(e.index)
                            .or_insert_with(|| (e.term, e.data.to_vec()));
                        assert_eq!(
                            seen,
                            &(e.term, e.data.to_vec()),
                            "index {} differs on node {id}",
                            e.index
                        );
                        self.trace.push(e.index ^ (id << 48));
                    }
                }
            }
        }

        fn deliver(&mut self, faults: bool) {
            let mut msgs = std::mem::take(&mut self.net);
            // Random order, some lost.
            for i in (1..msgs.len()).rev() {
                let j = self.roll(i as u64 + 1) as usize;
                msgs.swap(i, j);
            }
            for m in msgs {
                if faults && self.roll(100) < 5 {
                    continue;
                }
                if self.cut.contains(&(m.from, m.to)) {
                    continue;
                }
                if let Some(node) = self.nodes.get_mut(&m.to) {
                    let _ = node.step(m);
                }
            }
        }

        fn step(&mut self, faults: bool, seed: u64) {
            for node in self.nodes.values_mut() {
                node.tick();
            }
            self.drain();
            self.deliver(faults);
            self.drain();
            if self.roll(4) == 0 && self.proposing {
                if let Some(leader) = self.nodes.values_mut().find(|n| n.is_leader()) {
                    self.proposals += 1;
                    let _ = leader.propose(format!("p{}", self.proposals).into_bytes());
                }
            }
            if !faults {
                return;
            }
            match self.roll(200) {
                0 => {
                    // kill -9: what was not persisted is gone.
                    let k = self.roll(self.ids.len() as u64) as usize;
                    let victim = self.ids[k];
                    self.nodes.remove(&victim);
                }
                1 => {
                    let down: Vec<u64> = self
                        .ids
                        .iter()
                        .copied()
                        .filter(|i| !self.nodes.contains_key(i))
                        .collect();
                    if let Some(id) = down.first() {
                        self.boot(*id, seed);
                    }
                }
                2 => {
                    // Cut one node off (both directions).
                    let k = self.roll(self.ids.len() as u64) as usize;
                    let x = self.ids[k];
                    for y in self.ids.clone() {
                        if y != x {
                            self.cut.insert((x, y));
                            self.cut.insert((y, x));
                        }
                    }
                }
                3 => self.cut.clear(),
                _ => {}
            }
        }

        fn heal(&mut self, seed: u64) {
            self.cut.clear();
            for id in self.ids.clone() {
                if !self.nodes.contains_key(&id) {
                    self.boot(id, seed);
                }
            }
        }
    }

    fn run(seed: u64, nodes: u64, steps: usize) -> Vec<u64> {
        let mut q = Quorum::new(nodes, seed);
        for _ in 0..steps {
            q.step(true, seed);
        }
        q.heal(seed);
        for _ in 0..300 {
            q.step(false, seed);
        }
        // A fresh proposal commits everywhere.
        q.proposing = false;
        let leader = q.nodes.values_mut().find(|n| n.is_leader()).map(|n| n.id());
        let leader = leader.unwrap_or_else(|| panic!("seed {seed}: no leader after healing"));
        q.nodes
            .get_mut(&leader)
            .map(|n| n.propose(b"final".to_vec()))
            .expect("leader")
            .expect("accepted");
        for _ in 0..100 {
            q.step(false, seed);
        }
        let first = q.disks[&1].applied.clone();
        assert!(
            first.iter().any(|(_, d)| d == b"final"),
            "seed {seed}: the final proposal did not commit"
        );
        for id in &q.ids {
            assert_eq!(
                q.disks[id].applied, first,
                "seed {seed}: node {id} applied another history"
            );
        }
        let committed: BTreeSet<Vec<u8>> = q
            .applied_anywhere
            .values()
            .map(|(_, d)| d.clone())
            .filter(|d| !d.is_empty())
            .collect();
        let everywhere: BTreeSet<Vec<u8>> = first.iter().map(|(_, d)| d.clone()).filter(|d| !d.is_empty()).collect();
        assert_eq!(
            committed, everywhere,
            "seed {seed}: a committed proposal is missing after healing"
        );
        assert!(
            q.leaders.len() > 1 || steps < 200,
            "seed {seed}: faults never moved the leadership"
        );
        q.trace
    }

    #[test]
    fn quorums_survive_loss_partitions_and_crashes() {
        for seed in 0..60 {
            run(seed, 3, 2000);
        }
        for seed in 100..110 {
            run(seed, 5, 2000);
        }
    }

    #[test]
    fn a_seed_replays_exactly() {
        assert_eq!(run(7, 3, 1500), run(7, 3, 1500));
    }

    #[test]
    fn a_single_voter_commits_alone() {
        let mut q = Quorum::new(1, 1);
        for _ in 0..50 {
            q.step(false, 1);
        }
        assert!(q.nodes[&1].is_leader());
        assert!(q.disks[&1].applied.iter().any(|(_, d)| !d.is_empty()));
    }

    #[test]
    fn followers_refuse_proposals_and_strangers() {
        let mut q = Quorum::new(3, 3);
        for _ in 0..100 {
            q.step(false, 3);
        }
        let follower = q.nodes.values_mut().find(|n| !n.is_leader()).expect("a follower");
        assert!(matches!(
            follower.propose(b"x".to_vec()),
            Err(ProposeError::NotLeader(Some(_)))
        ));
        let mut m = Message::default();
        m.set_msg_type(raft::eraftpb::MessageType::MsgHeartbeat);
        m.from = 99;
        m.to = follower.id();
        assert!(follower.step(m).is_err(), "a node outside the quorum");
        let mut m = Message::default();
        m.set_msg_type(raft::eraftpb::MessageType::MsgHup);
        m.from = 1;
        assert!(follower.step(m).is_err(), "a local message from the network");
    }

    #[test]
    fn timing_from_kafka_settings() {
        assert_eq!(
            Timing::from_ms(1000, 100),
            Timing {
                election_tick: 10,
                heartbeat_tick: 2
            }
        );
        assert_eq!(Timing::from_ms(100, 100).election_tick, 3);
    }
}
