//! [`ReplicaState`]: roles, follower progress, ISR and high watermark
//! (design §8).

use std::collections::BTreeMap;

use super::{
    Effect, Event, FetchVerdict, FollowerFetch, IsrState, IsrUpdate, LogPositions, PartitionState, ReplicaConfig,
};
use crate::log::epoch::{LeaderEpochCache, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET};
use crate::protocol::error::{
    FENCED_LEADER_EPOCH, INELIGIBLE_REPLICA, KAFKA_STORAGE_ERROR, NOT_CONTROLLER, NOT_ENOUGH_REPLICAS,
    NOT_ENOUGH_REPLICAS_AFTER_APPEND, NOT_LEADER_OR_FOLLOWER, OFFSET_OUT_OF_RANGE, OPERATION_NOT_ATTEMPTED,
    REQUEST_TIMED_OUT, UNKNOWN_LEADER_EPOCH,
};

/// A follower's progress as its leader sees it (§7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Its broker epoch from its last fetch (KIP-903); −1 before any.
    pub broker_epoch: i64,
    /// Its last `fetch_offset` in this epoch: durable on it (§7.5); −1
    /// (unknown) until it fetches from this leader.
    pub durable_offset: i64,
    pub last_fetch_ms: i64,
    /// Kafka's `lastCaughtUpTimeMs`: the last time it was known to have
    /// everything the leader had.
    pub last_caught_up_ms: i64,
    /// The leader's log end at its last fetch (Kafka's
    /// `lastFetchLeaderLogEndOffset`).
    pub last_fetch_leader_log_end: i64,
}

impl Progress {
    /// A follower at the start of a leader's epoch (Kafka's
    /// `resetReplicaState` for a new leader): position unknown; an ISR
    /// member counts as caught up now, any other replica as never.
    fn reset(in_isr: bool, now_ms: i64) -> Self {
        Self {
            broker_epoch: -1,
            durable_offset: -1,
            last_fetch_ms: 0,
            last_caught_up_ms: if in_isr { now_ms } else { 0 },
            last_fetch_leader_log_end: -1,
        }
    }

    /// Kafka's `isCaughtUp`: at the leader's log end, or caught up within
    /// the last `lag_max_ms`.
    pub fn is_caught_up(&self, leader_log_end: i64, now_ms: i64, lag_max_ms: i64) -> bool {
        self.durable_offset == leader_log_end || now_ms - self.last_caught_up_ms <= lag_max_ms
    }
}

/// The leader's state (§7.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderState {
    pub epoch: i32,
    /// The log end when it became leader: the first offset of its epoch.
    pub epoch_start_offset: i64,
    pub replicas: Vec<i32>,
    pub isr: IsrState,
    /// Every replica but the leader.
    pub followers: BTreeMap<i32, Progress>,
    pub hw: i64,
    /// The leader's own durable offset and log end (from `LocalDurable`,
    /// fetches and ticks).
    pub durable: i64,
    pub log_end: i64,
    /// The proposal in flight, to send again after a retriable error.
    pub in_flight: Option<Vec<(i32, i64)>>,
}

/// A follower's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerState {
    /// The leader's broker id, −1 for none.
    pub leader: i32,
    pub epoch: i32,
    pub source_shard: u32,
    /// The HW this replica has published: min(leader's HW, local durable).
    pub hw: i64,
    /// The last HW the leader sent.
    pub leader_hw: i64,
    /// The local durable offset.
    pub durable: i64,
}

/// The replica's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    None,
    Leader(LeaderState),
    Follower(FollowerState),
}

/// The state machine of one partition replica (§8). Feed it [`Event`]s with
/// [`ReplicaState::handle`], ask it about fetches with
/// [`ReplicaState::verdict`] and about produce with
/// [`ReplicaState::can_append`] / [`ReplicaState::can_accept_acks_all`] /
/// [`ReplicaState::acks_all_complete`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaState {
    pub config: ReplicaConfig,
    pub me: i32,
    pub role: Role,
    /// The broker's lease ran out: no appends, no HW moves (§5.6).
    pub lease_lost: bool,
    /// The leader's storage failed: no appends, no reads, no HW moves,
    /// until metadata gives it a new role (§7.5).
    pub offline: bool,
}

impl ReplicaState {
    pub fn new(me: i32, config: ReplicaConfig) -> Self {
        Self {
            config,
            me,
            role: Role::None,
            lease_lost: false,
            offline: false,
        }
    }

    /// Change the topic's settings (`min.insync.replicas`, lag time).
    pub fn set_config(&mut self, config: ReplicaConfig) {
        self.config = config;
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }

    pub fn leader_state(&self) -> Option<&LeaderState> {
        match &self.role {
            Role::Leader(l) => Some(l),
            _ => None,
        }
    }

    /// The epoch of the leader this replica is or follows; −1 for none.
    pub fn leader_epoch(&self) -> i32 {
        match &self.role {
            Role::Leader(l) => l.epoch,
            Role::Follower(f) => f.epoch,
            Role::None => UNDEFINED_EPOCH,
        }
    }

    /// The high watermark this replica published; None without a role.
    pub fn high_watermark(&self) -> Option<i64> {
        match &self.role {
            Role::Leader(l) => Some(l.hw),
            Role::Follower(f) => Some(f.hw),
            Role::None => None,
        }
    }

    /// The committed ISR (leader only).
    pub fn isr(&self) -> Option<&[i32]> {
        self.leader_state().map(|l| l.isr.committed())
    }

    /// The maximal ISR (leader only).
    pub fn maximal_isr(&self) -> Option<Vec<i32>> {
        self.leader_state().map(|l| l.isr.maximal())
    }

    /// KIP-207 (§7.7): has the leader's HW reached the start of its epoch?
    /// Until it has, ListOffsets latest / max-timestamp answer
    /// OFFSET_NOT_AVAILABLE, so offsets clients were told never go back
    /// across a failover. None when not leader.
    pub fn epoch_start_reached(&self) -> Option<bool> {
        self.leader_state().map(|l| l.hw >= l.epoch_start_offset)
    }

    /// May the leader append (any acks)? NOT_LEADER_OR_FOLLOWER when not
    /// leader or leased out (§5.6, §7.6), KAFKA_STORAGE_ERROR when offline.
    pub fn can_append(&self) -> Result<(), i16> {
        if self.offline && self.is_leader() {
            return Err(KAFKA_STORAGE_ERROR);
        }
        if !self.is_leader() || self.lease_lost {
            return Err(NOT_LEADER_OR_FOLLOWER);
        }
        Ok(())
    }

    /// May an acks=all produce be appended (§7.6)? As [`Self::can_append`],
    /// and NOT_ENOUGH_REPLICAS (nothing appended) when the committed ISR is
    /// smaller than `min_isr` (Kafka checks the committed ISR, not the
    /// maximal one).
    pub fn can_accept_acks_all(&self, min_isr: usize) -> Result<(), i16> {
        self.can_append()?;
        match self.isr() {
            Some(isr) if isr.len() >= min_isr => Ok(()),
            _ => Err(NOT_ENOUGH_REPLICAS),
        }
    }

    /// Is an acks=all produce whose last offset is `target − 1` complete?
    /// `Some(Ok)` once the HW reached `target`, `Some(Err)` when this replica
    /// is no longer leader, None while it must wait. (The shell's waiter
    /// queue does the same for a prefix of waiters when the HW moves.)
    pub fn acks_all_complete(&self, target: i64) -> Option<Result<(), i16>> {
        match &self.role {
            Role::Leader(l) if l.hw >= target => Some(Ok(())),
            Role::Leader(_) => None,
            _ => Some(Err(NOT_LEADER_OR_FOLLOWER)),
        }
    }

    /// The leader's answer to a fetch (§7.3), in Kafka's order:
    ///
    /// 1. `current_epoch` (unless −1) against the epoch this replica knows:
    ///    older FENCED_LEADER_EPOCH, newer UNKNOWN_LEADER_EPOCH;
    /// 2. not leader: NOT_LEADER_OR_FOLLOWER; leader offline:
    ///    KAFKA_STORAGE_ERROR;
    /// 3. a replica fetch from a broker that is not a replica, or with a
    ///    broker epoch older than the one it fetched with before (KIP-903):
    ///    NOT_LEADER_OR_FOLLOWER;
    /// 4. divergence (KIP-320): with `last_fetched_epoch` ≥ 0, the cache's
    ///    `end_offset_for(last_fetched_epoch)`; undefined:
    ///    OFFSET_OUT_OF_RANGE (as Kafka); an older epoch than asked, or an
    ///    end before `fetch_offset`: `Diverging` with that (epoch, end);
    /// 5. `fetch_offset` outside [log start, log end]: OFFSET_OUT_OF_RANGE;
    /// 6. otherwise `Serve`, to the log end for a replica, to the HW for a
    ///    consumer (`replica` < 0).
    pub fn verdict(
        &self,
        fetch: &FollowerFetch,
        cache: &LeaderEpochCache,
        log_start: i64,
        log_end: i64,
    ) -> FetchVerdict {
        let known = self.leader_epoch();
        if fetch.current_epoch >= 0 && known >= 0 {
            if fetch.current_epoch < known {
                return FetchVerdict::Error(FENCED_LEADER_EPOCH);
            }
            if fetch.current_epoch > known {
                return FetchVerdict::Error(UNKNOWN_LEADER_EPOCH);
            }
        }
        let Role::Leader(leader) = &self.role else {
            return FetchVerdict::Error(NOT_LEADER_OR_FOLLOWER);
        };
        if self.offline {
            return FetchVerdict::Error(KAFKA_STORAGE_ERROR);
        }
        if fetch.replica >= 0 {
            let Some(progress) = leader.followers.get(&fetch.replica) else {
                return FetchVerdict::Error(NOT_LEADER_OR_FOLLOWER);
            };
            if fetch.broker_epoch >= 0 && fetch.broker_epoch < progress.broker_epoch {
                return FetchVerdict::Error(NOT_LEADER_OR_FOLLOWER);
            }
        }
        if fetch.last_fetched_epoch >= 0 {
            let (epoch, end) = cache.end_offset_for(fetch.last_fetched_epoch, log_end);
            if epoch == UNDEFINED_EPOCH || end == UNDEFINED_EPOCH_OFFSET {
                return FetchVerdict::Error(OFFSET_OUT_OF_RANGE);
            }
            if epoch < fetch.last_fetched_epoch || end < fetch.fetch_offset {
                return FetchVerdict::Diverging { epoch, end_offset: end };
            }
        }
        if fetch.fetch_offset < log_start || fetch.fetch_offset > log_end {
            return FetchVerdict::Error(OFFSET_OUT_OF_RANGE);
        }
        FetchVerdict::Serve {
            from: fetch.fetch_offset,
            upto_log_end: fetch.replica >= 0,
            hw: leader.hw,
        }
    }

    /// Apply an event; the effects are for the shells, in order.
    pub fn handle(&mut self, ev: Event, cache: &LeaderEpochCache) -> Vec<Effect> {
        let _ = cache; // decisions need only positions today; kept for §8's signature
        let mut fx = Vec::new();
        match ev {
            Event::Metadata {
                me,
                state,
                source_shard,
                log,
                now_ms,
            } => {
                self.me = me;
                self.on_metadata(state, source_shard, log, now_ms, &mut fx);
            }
            Event::Deleted => self.stop(&mut fx),
            Event::LocalDurable { offset, log_end } => match &mut self.role {
                Role::Leader(l) => {
                    l.durable = l.durable.max(offset);
                    l.log_end = l.log_end.max(log_end);
                    self.maybe_advance_hw(&mut fx);
                }
                Role::Follower(f) => {
                    f.durable = offset;
                    Self::follower_hw(f, &mut fx);
                }
                Role::None => {}
            },
            Event::FollowerFetch(fetch) => self.on_follower_fetch(&fetch, &mut fx),
            Event::AlterPartitionDone(result) => self.on_alter_partition_done(result, &mut fx),
            Event::LeaderResponse { hw } => {
                if let Role::Follower(f) = &mut self.role {
                    f.leader_hw = hw;
                    Self::follower_hw(f, &mut fx);
                }
            }
            Event::Tick { now_ms, log_end } => self.on_tick(now_ms, log_end, &mut fx),
            Event::LeaseLost => self.lease_lost = true,
            Event::LeaseRegained => {
                self.lease_lost = false;
                self.maybe_advance_hw(&mut fx);
            }
            Event::StorageFailed => {
                // RF=1: the log rolls back and resumes as today (nobody can
                // have fetched the dropped tail); followers pause fetching.
                if let Role::Leader(l) = &self.role {
                    if l.replicas.len() > 1 && !self.offline {
                        self.offline = true;
                        fx.push(Effect::FailWaiters(KAFKA_STORAGE_ERROR));
                        fx.push(Effect::ReportOffline);
                    }
                }
            }
        }
        fx
    }

    fn stop(&mut self, fx: &mut Vec<Effect>) {
        if matches!(self.role, Role::None) {
            return;
        }
        self.leave_leadership(fx);
        self.role = Role::None;
        self.offline = false;
        fx.push(Effect::Stop);
    }

    fn leave_leadership(&mut self, fx: &mut Vec<Effect>) {
        if self.is_leader() {
            fx.push(Effect::FailWaiters(NOT_LEADER_OR_FOLLOWER));
            if self.config.coordinator {
                fx.push(Effect::UnloadGroups);
            }
        }
    }

    /// Metadata (§5.3, §8): stale changes (older leader epoch) are ignored;
    /// a replica no longer in the assignment stops; the leader named in a
    /// new epoch becomes leader at its log end; others follow it. The same
    /// epoch again only updates the replicas and (if newer) the ISR.
    fn on_metadata(
        &mut self,
        state: PartitionState,
        source_shard: u32,
        log: LogPositions,
        now_ms: i64,
        fx: &mut Vec<Effect>,
    ) {
        let known = self.leader_epoch();
        if state.leader_epoch < known {
            return;
        }
        if !state.replicas.contains(&self.me) {
            self.stop(fx);
            return;
        }
        if state.leader == self.me {
            if let Role::Leader(l) = &mut self.role {
                if l.epoch == state.leader_epoch {
                    self.update_leader_same_epoch(state, now_ms, fx);
                    return;
                }
            }
            self.become_leader(state, log, now_ms, fx);
            return;
        }
        if let Role::Follower(f) = &self.role {
            if f.epoch == state.leader_epoch && f.leader == state.leader && f.source_shard == source_shard {
                return;
            }
        }
        self.leave_leadership(fx);
        self.offline = false;
        let hw = log.hw.min(log.durable).max(0);
        self.role = Role::Follower(FollowerState {
            leader: state.leader,
            epoch: state.leader_epoch,
            source_shard,
            hw: match &self.role {
                Role::Leader(l) => l.hw.max(hw),
                Role::Follower(f) => f.hw.max(hw),
                Role::None => hw,
            },
            leader_hw: -1,
            durable: log.durable,
        });
        fx.push(Effect::BecomeFollower {
            leader: state.leader,
            source_shard,
            epoch: state.leader_epoch,
        });
    }

    /// A new leader (§7.2, §7.4): epoch assigned at its log end, every
    /// follower's position unknown (the HW waits until every maximal-ISR
    /// member has fetched in this epoch), ISR members caught up as of now.
    fn become_leader(&mut self, state: PartitionState, log: LogPositions, now_ms: i64, fx: &mut Vec<Effect>) {
        let was_leader = self.is_leader();
        let isr = if state.isr.is_empty() {
            vec![self.me]
        } else {
            state.isr.clone()
        };
        let followers = state
            .replicas
            .iter()
            .filter(|&&r| r != self.me)
            .map(|&r| (r, Progress::reset(isr.contains(&r), now_ms)))
            .collect();
        let hw = log.hw.min(log.durable).max(0);
        self.offline = false;
        self.role = Role::Leader(LeaderState {
            epoch: state.leader_epoch,
            epoch_start_offset: log.log_end,
            replicas: state.replicas,
            isr: IsrState::Committed {
                isr,
                partition_epoch: state.partition_epoch,
            },
            followers,
            hw,
            durable: log.durable,
            log_end: log.log_end,
            in_flight: None,
        });
        fx.push(Effect::BecomeLeader {
            epoch: state.leader_epoch,
            start_offset: log.log_end,
        });
        if self.config.coordinator && !was_leader {
            fx.push(Effect::LoadGroups);
        }
        self.maybe_advance_hw(fx);
    }

    /// Metadata for the leader's own epoch: the assignment may have changed
    /// (reassignment) and a newer partition epoch replaces the ISR, whether
    /// or not a change of ours was in flight (the metadata log is the truth;
    /// the same change coming back is then a no-op).
    fn update_leader_same_epoch(&mut self, state: PartitionState, now_ms: i64, fx: &mut Vec<Effect>) {
        let min_isr = self.config.min_insync_replicas;
        let me = self.me;
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        let before = l.isr.committed().len();
        l.followers.retain(|r, _| state.replicas.contains(r));
        for &r in state.replicas.iter().filter(|&&r| r != me) {
            l.followers.entry(r).or_insert_with(|| Progress::reset(false, now_ms));
        }
        l.replicas = state.replicas;
        if state.partition_epoch > l.isr.partition_epoch() && !state.isr.is_empty() {
            l.isr = IsrState::Committed {
                isr: state.isr,
                partition_epoch: state.partition_epoch,
            };
            l.in_flight = None;
            if before >= min_isr && l.isr.committed().len() < min_isr {
                fx.push(Effect::FailAcksAllWaiters(NOT_ENOUGH_REPLICAS_AFTER_APPEND));
            }
        }
        self.maybe_advance_hw(fx);
    }

    /// Record a served follower fetch (§7.4): its durable offset, Kafka's
    /// caught-up time (at the leader's log end now, or at least at the log
    /// end of its previous fetch: then caught up as of that fetch), then
    /// maybe expand the ISR and move the HW.
    fn on_follower_fetch(&mut self, fetch: &FollowerFetch, fx: &mut Vec<Effect>) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        if fetch.current_epoch >= 0 && fetch.current_epoch != l.epoch {
            return;
        }
        let Some(p) = l.followers.get_mut(&fetch.replica) else {
            return;
        };
        if fetch.fetch_offset < 0 || fetch.fetch_offset > fetch.leader_log_end {
            return;
        }
        if fetch.broker_epoch >= 0 && fetch.broker_epoch < p.broker_epoch {
            return;
        }
        l.log_end = l.log_end.max(fetch.leader_log_end);
        if fetch.fetch_offset >= fetch.leader_log_end {
            p.last_caught_up_ms = p.last_caught_up_ms.max(fetch.now_ms);
        } else if p.last_fetch_leader_log_end >= 0 && fetch.fetch_offset >= p.last_fetch_leader_log_end {
            p.last_caught_up_ms = p.last_caught_up_ms.max(p.last_fetch_ms);
        }
        p.durable_offset = fetch.fetch_offset;
        p.broker_epoch = p.broker_epoch.max(fetch.broker_epoch);
        p.last_fetch_ms = fetch.now_ms;
        p.last_fetch_leader_log_end = fetch.leader_log_end;
        self.maybe_expand_isr(fetch.replica, fx);
        self.maybe_advance_hw(fx);
    }

    /// Expand (§7.4): a replica outside the maximal ISR whose durable offset
    /// reached both the HW and the leader's epoch start joins, through one
    /// AlterPartition; nothing else may be in flight.
    fn maybe_expand_isr(&mut self, replica: i32, fx: &mut Vec<Effect>) {
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        if l.isr.in_flight() || l.isr.maximal().contains(&replica) {
            return;
        }
        let Some(p) = l.followers.get(&replica) else {
            return;
        };
        if p.durable_offset < l.hw || p.durable_offset < l.epoch_start_offset {
            return;
        }
        l.isr = IsrState::PendingExpand {
            isr: l.isr.committed().to_vec(),
            adding: replica,
            partition_epoch: l.isr.partition_epoch(),
        };
        Self::send_proposal(l, fx);
    }

    /// Shrink (§7.4): on a tick, ISR members other than the leader that are
    /// not caught up (Kafka's `isCaughtUp`) leave, through one
    /// AlterPartition. The leader never leaves its own ISR, so it never
    /// becomes empty (§6 rule 2).
    fn on_tick(&mut self, now_ms: i64, log_end: i64, fx: &mut Vec<Effect>) {
        let lag = self.config.replica_lag_time_max_ms;
        let me = self.me;
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        l.log_end = l.log_end.max(log_end);
        if l.isr.in_flight() {
            return;
        }
        let leader_end = l.log_end;
        let removing: Vec<i32> = l
            .isr
            .committed()
            .iter()
            .copied()
            .filter(|&r| r != me)
            .filter(|r| {
                l.followers
                    .get(r)
                    .is_none_or(|p| !p.is_caught_up(leader_end, now_ms, lag))
            })
            .collect();
        if removing.is_empty() {
            return;
        }
        let remaining = l.isr.committed().iter().filter(|r| !removing.contains(r)).count();
        if remaining == 0 {
            return;
        }
        l.isr = IsrState::PendingShrink {
            isr: l.isr.committed().to_vec(),
            removing,
            partition_epoch: l.isr.partition_epoch(),
        };
        Self::send_proposal(l, fx);
    }

    fn send_proposal(l: &mut LeaderState, fx: &mut Vec<Effect>) {
        let Some(proposed) = l.isr.proposed() else {
            return;
        };
        let isr: Vec<(i32, i64)> = proposed
            .iter()
            .map(|r| (*r, l.followers.get(r).map_or(-1, |p| p.broker_epoch)))
            .collect();
        l.in_flight = Some(isr.clone());
        fx.push(Effect::SendAlterPartition {
            leader_epoch: l.epoch,
            isr,
            partition_epoch: l.isr.partition_epoch(),
        });
    }

    /// The controller's answer (KIP-497): applied only while our proposal is
    /// in flight and for our epoch, and only if not older than what we
    /// have. Errors: OPERATION_NOT_ATTEMPTED / INELIGIBLE_REPLICA revert to
    /// the committed ISR (a later fetch or tick may propose again);
    /// REQUEST_TIMED_OUT / NOT_CONTROLLER send the proposal again; any other
    /// error (stale partition or leader epoch, unknown partition, new
    /// leader) keeps the proposal pending until metadata replaces it, as
    /// Kafka does, so no conflicting proposal is sent meanwhile.
    fn on_alter_partition_done(&mut self, result: Result<IsrUpdate, i16>, fx: &mut Vec<Effect>) {
        let min_isr = self.config.min_insync_replicas;
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        if !l.isr.in_flight() {
            return;
        }
        match result {
            Ok(update) => {
                if update.leader_epoch != l.epoch || update.partition_epoch < l.isr.partition_epoch() {
                    return;
                }
                if update.isr.is_empty() {
                    return;
                }
                let before = l.isr.committed().len();
                l.isr = IsrState::Committed {
                    isr: update.isr,
                    partition_epoch: update.partition_epoch,
                };
                l.in_flight = None;
                if before >= min_isr && l.isr.committed().len() < min_isr {
                    fx.push(Effect::FailAcksAllWaiters(NOT_ENOUGH_REPLICAS_AFTER_APPEND));
                }
                self.maybe_advance_hw(fx);
            }
            Err(OPERATION_NOT_ATTEMPTED | INELIGIBLE_REPLICA) => {
                l.isr.revert();
                l.in_flight = None;
                self.maybe_advance_hw(fx);
            }
            Err(REQUEST_TIMED_OUT | NOT_CONTROLLER) => {
                if let Some(isr) = l.in_flight.clone() {
                    fx.push(Effect::SendAlterPartition {
                        leader_epoch: l.epoch,
                        isr,
                        partition_epoch: l.isr.partition_epoch(),
                    });
                }
            }
            Err(_) => {}
        }
    }

    /// The leader's HW (§6 rule 4, §7.4, §7.5): the minimum of its own
    /// durable offset and the durable offsets of every other member of the
    /// maximal ISR (unknown, −1, until they fetch in this epoch), moved
    /// only forward, and not at all while the maximal ISR is smaller than
    /// `min.insync.replicas`, the lease is lost or the replica is offline.
    fn maybe_advance_hw(&mut self, fx: &mut Vec<Effect>) {
        if self.lease_lost || self.offline {
            return;
        }
        let min_isr = self.config.min_insync_replicas;
        let me = self.me;
        let Role::Leader(l) = &mut self.role else {
            return;
        };
        let maximal = l.isr.maximal();
        if maximal.len() < min_isr {
            return;
        }
        let mut hw = l.durable;
        for r in maximal.iter().filter(|&&r| r != me) {
            hw = hw.min(l.followers.get(r).map_or(-1, |p| p.durable_offset));
        }
        if hw > l.hw {
            l.hw = hw;
            fx.push(Effect::SetHighWatermark(hw));
        }
    }

    /// The follower's HW (§7.4): min(leader's HW, local durable offset),
    /// only forward.
    fn follower_hw(f: &mut FollowerState, fx: &mut Vec<Effect>) {
        let hw = f.leader_hw.min(f.durable);
        if hw > f.hw {
            f.hw = hw;
            fx.push(Effect::SetHighWatermark(hw));
        }
    }
}
