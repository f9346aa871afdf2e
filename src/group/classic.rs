//! The classic group protocol (JoinGroup / SyncGroup / Heartbeat / LeaveGroup)
//! as a deterministic state machine, following Apache Kafka 4.x's
//! `GroupMetadataManager` + `ClassicGroup`.
//!
//! Requests that Kafka parks in purgatory (JoinGroup while the group is
//! rebalancing, SyncGroup of followers waiting for the leader) are identified
//! by a caller supplied [`RequestToken`]; their responses are produced later
//! as [`Effect::CompleteJoin`] / [`Effect::CompleteSync`], either by another
//! request or by [`ClassicGroup::poll`] when a timer expires. Every token is
//! completed exactly once.
//!
//! Timers (Kafka's `classic-group-join`, `classic-group-sync` and per-member
//! heartbeat keys) are plain deadlines in the group; [`ClassicGroup::next_deadline`]
//! tells the shell when to call [`ClassicGroup::poll`].

use crate::io::rand::{HashMap, HashSet};

use bytes::Bytes;
use indexmap::{IndexMap, IndexSet};

use super::offsets::{ExpirationBase, OffsetPolicy};
use super::records::{GroupMetadataMember, GroupMetadataValue, Record, RecordKey, RecordValue};
use super::{Effect, IdGenerator, RequestToken};
use crate::protocol::error::{self, ErrorCode};

/// Protocol type used by Kafka consumers.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// Classic group configuration (Kafka `group.*` broker settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicConfig {
    /// `group.min.session.timeout.ms` (6000).
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms` (1800000).
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms` (3000).
    pub initial_rebalance_delay_ms: i32,
    /// `group.classic.new.member.join.timeout` (300000, not configurable in Kafka).
    pub new_member_join_timeout_ms: i32,
    /// `group.max.size` / `group.classic.max.size` (Integer.MAX_VALUE).
    pub max_size: usize,
}

impl Default for ClassicConfig {
    fn default() -> Self {
        ClassicConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            new_member_join_timeout_ms: 300_000,
            max_size: i32::MAX as usize,
        }
    }
}

/// Classic group states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClassicGroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl ClassicGroupState {
    /// The name Kafka uses in DescribeGroups / ListGroups.
    pub fn as_str(self) -> &'static str {
        match self {
            ClassicGroupState::Empty => "Empty",
            ClassicGroupState::PreparingRebalance => "PreparingRebalance",
            ClassicGroupState::CompletingRebalance => "CompletingRebalance",
            ClassicGroupState::Stable => "Stable",
            ClassicGroupState::Dead => "Dead",
        }
    }

    fn valid_previous(self, prev: ClassicGroupState) -> bool {
        use ClassicGroupState::*;
        match self {
            Empty => prev == PreparingRebalance,
            PreparingRebalance => matches!(prev, Stable | CompletingRebalance | Empty),
            CompletingRebalance => prev == PreparingRebalance,
            Stable => prev == CompletingRebalance,
            Dead => true,
        }
    }
}

/// One protocol of a JoinGroup request (`name`, member `metadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinProtocol {
    pub name: String,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupRequest {
    pub group_id: String,
    pub session_timeout_ms: i32,
    /// v0 has no rebalance timeout: the shell passes the session timeout.
    pub rebalance_timeout_ms: i32,
    /// Empty for a new member.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: String,
    pub protocols: Vec<JoinProtocol>,
    pub reason: Option<String>,
    /// JoinGroup version: v4+ requires a known member id (KIP-394), v9+
    /// supports `SkipAssignment` (KIP-814).
    pub api_version: i16,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupResponseMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupResponse {
    pub error_code: ErrorCode,
    /// -1 on errors.
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    /// `None` is sent as null (v7+) or "" (older versions).
    pub protocol_name: Option<String>,
    /// Leader member id ("" when none).
    pub leader: String,
    pub skip_assignment: bool,
    pub member_id: String,
    /// Only the leader receives the members.
    pub members: Vec<JoinGroupResponseMember>,
}

impl JoinGroupResponse {
    pub fn error(error_code: ErrorCode, member_id: impl Into<String>) -> Self {
        JoinGroupResponse {
            error_code,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            member_id: member_id.into(),
            members: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroupAssignment {
    pub member_id: String,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroupRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// v5+ (None otherwise).
    pub protocol_type: Option<String>,
    /// v5+ (None otherwise).
    pub protocol_name: Option<String>,
    /// Only the leader sends assignments.
    pub assignments: Vec<SyncGroupAssignment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroupResponse {
    pub error_code: ErrorCode,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncGroupResponse {
    pub fn error(error_code: ErrorCode) -> Self {
        SyncGroupResponse {
            error_code,
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatResponse {
    pub error_code: ErrorCode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveMember {
    /// Empty to remove a static member by instance id (admin removal).
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveGroupRequest {
    pub group_id: String,
    /// v0-v2 carry a single member id: the shell passes one entry.
    pub members: Vec<LeaveMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveMemberResponse {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub error_code: ErrorCode,
}

/// For LeaveGroup v0-v2 the shell reports [`LeaveGroupResponse::v0_error`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveGroupResponse {
    pub error_code: ErrorCode,
    pub members: Vec<LeaveMemberResponse>,
}

impl LeaveGroupResponse {
    /// The single error of a v0-v2 response: the top level error, or else the
    /// first member error (Kafka's `LeaveGroupResponse` for old versions).
    pub fn v0_error(&self) -> ErrorCode {
        if self.error_code != error::NONE {
            return self.error_code;
        }
        self.members
            .iter()
            .map(|m| m.error_code)
            .find(|e| *e != error::NONE)
            .unwrap_or(error::NONE)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Metadata for the selected protocol (only for Stable groups).
    pub member_metadata: Bytes,
    pub member_assignment: Bytes,
}

/// DescribeGroups entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedGroup {
    pub error_code: ErrorCode,
    pub group_id: String,
    pub group_state: String,
    pub protocol_type: String,
    /// Selected protocol (Stable groups only), "" otherwise.
    pub protocol_data: String,
    pub members: Vec<DescribedMember>,
}

impl DescribedGroup {
    /// Kafka's answer for a group it does not know (or that is not classic).
    pub fn dead(group_id: &str) -> Self {
        DescribedGroup {
            error_code: error::NONE,
            group_id: group_id.to_string(),
            group_state: ClassicGroupState::Dead.as_str().to_string(),
            protocol_type: String::new(),
            protocol_data: String::new(),
            members: Vec::new(),
        }
    }
}

/// A member of a classic group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<JoinProtocol>,
    pub assignment: Bytes,
    awaiting_join: Option<RequestToken>,
    awaiting_sync: Option<RequestToken>,
    is_new: bool,
    heartbeat_deadline: Option<i64>,
}

impl ClassicMember {
    fn metadata(&self, protocol: &str) -> Option<&Bytes> {
        self.protocols.iter().find(|p| p.name == protocol).map(|p| &p.metadata)
    }

    fn matches(&self, protocols: &[JoinProtocol]) -> bool {
        self.protocols == protocols
    }

    fn vote(&self, candidates: &HashSet<&str>) -> Option<&str> {
        self.protocols
            .iter()
            .map(|p| p.name.as_str())
            .find(|n| candidates.contains(n))
    }

    fn has_satisfied_heartbeat(&self) -> bool {
        !self.is_new && (self.awaiting_join.is_some() || self.awaiting_sync.is_some())
    }

    pub fn is_awaiting_join(&self) -> bool {
        self.awaiting_join.is_some()
    }

    pub fn is_awaiting_sync(&self) -> bool {
        self.awaiting_sync.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinTimer {
    /// `group.initial.rebalance.delay.ms` phase of a group that was Empty.
    InitialDelay { deadline: i64, delay: i32, remaining: i32 },
    /// Rebalance timeout of the join phase.
    Rebalance { deadline: i64 },
}

impl JoinTimer {
    fn deadline(&self) -> i64 {
        match self {
            JoinTimer::InitialDelay { deadline, .. } | JoinTimer::Rebalance { deadline } => *deadline,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DueTimer {
    Join,
    Sync,
    Member(String),
    Pending(String),
}

/// Everything a classic group operation needs besides the group.
pub struct ClassicCtx<'a> {
    pub config: &'a ClassicConfig,
    pub now_ms: i64,
    pub ids: &'a mut dyn IdGenerator,
    pub effects: &'a mut Vec<Effect>,
}

/// Timer deadlines never equal "now": a zero delay would let a poll loop
/// forever on a timer that keeps rescheduling itself.
fn after(now_ms: i64, delay_ms: i32) -> i64 {
    now_ms.saturating_add(i64::from(delay_ms.max(1)))
}

/// A classic group.
#[derive(Debug, Clone)]
pub struct ClassicGroup {
    group_id: String,
    state: ClassicGroupState,
    previous_state: ClassicGroupState,
    state_timestamp: Option<i64>,
    generation_id: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader_id: Option<String>,
    members: IndexMap<String, ClassicMember>,
    static_members: HashMap<String, String>,
    /// Members that got MEMBER_ID_REQUIRED, with their expiration deadline.
    pending_join_members: IndexMap<String, i64>,
    pending_sync_members: IndexSet<String>,
    supported_protocols: HashMap<String, usize>,
    num_awaiting_join: usize,
    new_member_added: bool,
    subscribed_topics: Option<HashSet<String>>,
    join_timer: Option<JoinTimer>,
    sync_timer: Option<(i64, i32)>,
}

impl ClassicGroup {
    pub fn new(group_id: &str, now_ms: i64) -> Self {
        ClassicGroup {
            group_id: group_id.to_string(),
            state: ClassicGroupState::Empty,
            previous_state: ClassicGroupState::Empty,
            state_timestamp: Some(now_ms),
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: IndexMap::new(),
            static_members: HashMap::default(),
            pending_join_members: IndexMap::new(),
            pending_sync_members: IndexSet::new(),
            supported_protocols: HashMap::default(),
            num_awaiting_join: 0,
            new_member_added: false,
            subscribed_topics: None,
            join_timer: None,
            sync_timer: None,
        }
    }

    // --- accessors -------------------------------------------------------

    pub fn group_id(&self) -> &str {
        &self.group_id
    }
    pub fn state(&self) -> ClassicGroupState {
        self.state
    }
    pub fn generation_id(&self) -> i32 {
        self.generation_id
    }
    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }
    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }
    pub fn leader_id(&self) -> Option<&str> {
        self.leader_id.as_deref()
    }
    pub fn member(&self, member_id: &str) -> Option<&ClassicMember> {
        self.members.get(member_id)
    }
    pub fn members(&self) -> impl Iterator<Item = &ClassicMember> {
        self.members.values()
    }
    pub fn num_members(&self) -> usize {
        self.members.len()
    }
    pub fn is_empty(&self) -> bool {
        self.state == ClassicGroupState::Empty
    }
    pub fn has_pending_member(&self, member_id: &str) -> bool {
        self.pending_join_members.contains_key(member_id)
    }
    pub fn static_member_id(&self, instance_id: &str) -> Option<&str> {
        self.static_members.get(instance_id).map(String::as_str)
    }
    pub fn current_state_timestamp(&self) -> Option<i64> {
        self.state_timestamp
    }

    fn uses_consumer_protocol(&self) -> bool {
        self.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE)
    }

    /// Topics the members subscribed to (consumer protocol only, when known).
    pub fn subscribed_topics(&self) -> Option<&HashSet<String>> {
        self.subscribed_topics.as_ref()
    }

    /// Max rebalance timeout of all members.
    pub fn rebalance_timeout_ms(&self) -> i32 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0)
            .max(0)
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    fn can_rebalance(&self) -> bool {
        ClassicGroupState::PreparingRebalance.valid_previous(self.state)
    }

    fn transition_to(&mut self, state: ClassicGroupState, now_ms: i64) {
        debug_assert!(state.valid_previous(self.state), "{:?} -> {:?}", self.state, state);
        self.previous_state = self.state;
        self.state = state;
        self.state_timestamp = Some(now_ms);
    }

    fn has_all_members_joined(&self) -> bool {
        self.members.len() == self.num_awaiting_join && self.pending_join_members.is_empty()
    }

    fn candidate_protocols(&self) -> HashSet<&str> {
        let n = self.members.len();
        self.supported_protocols
            .iter()
            .filter(|(_, c)| **c == n)
            .map(|(p, _)| p.as_str())
            .collect()
    }

    /// Kafka's protocol election: candidates are the protocols every member
    /// supports; each member votes for its most preferred candidate and the
    /// protocol with the most votes wins. Ties (which Kafka breaks by hash
    /// map order) are broken by the first vote cast, in member join order.
    pub fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: IndexMap<&str, usize> = IndexMap::new();
        for m in self.members.values() {
            if let Some(p) = m.vote(&candidates) {
                *votes.entry(p).or_insert(0) += 1;
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for (p, v) in votes {
            if best.is_none_or(|(_, b)| v > b) {
                best = Some((p, v));
            }
        }
        best.map(|(p, _)| p.to_string())
    }

    fn supports_protocols(&self, protocol_type: &str, protocols: &[JoinProtocol]) -> bool {
        if self.state == ClassicGroupState::Empty {
            !protocol_type.is_empty() && !protocols.is_empty()
        } else {
            let n = self.members.len();
            self.protocol_type.as_deref() == Some(protocol_type)
                && protocols
                    .iter()
                    .any(|p| self.supported_protocols.get(&p.name).copied().unwrap_or(0) == n)
        }
    }

    fn increment_protocols(&mut self, protocols: &[JoinProtocol]) {
        for p in protocols {
            *self.supported_protocols.entry(p.name.clone()).or_insert(0) += 1;
        }
    }

    fn decrement_protocols(&mut self, protocols: &[JoinProtocol]) {
        for p in protocols {
            if let Some(c) = self.supported_protocols.get_mut(&p.name) {
                *c = c.saturating_sub(1);
                if *c == 0 {
                    self.supported_protocols.remove(&p.name);
                }
            }
        }
    }

    /// Kafka's `validateMember`.
    fn validate_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), ErrorCode> {
        if let Some(instance_id) = instance_id {
            match self.static_members.get(instance_id) {
                None => return Err(error::UNKNOWN_MEMBER_ID),
                Some(existing) if existing != member_id => return Err(error::FENCED_INSTANCE_ID),
                Some(_) => {}
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(error::UNKNOWN_MEMBER_ID);
        }
        Ok(())
    }

    fn current_members_for_leader(&self) -> Vec<JoinGroupResponseMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or("");
        self.members
            .values()
            .map(|m| JoinGroupResponseMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata(protocol).cloned().unwrap_or_default(),
            })
            .collect()
    }

    fn current_generation_response(&self, member_id: &str, with_members: bool) -> JoinGroupResponse {
        JoinGroupResponse {
            error_code: error::NONE,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader_id.clone().unwrap_or_default(),
            skip_assignment: false,
            member_id: member_id.to_string(),
            members: if with_members {
                self.current_members_for_leader()
            } else {
                Vec::new()
            },
        }
    }

    // --- membership primitives --------------------------------------------

    fn add_member(&mut self, mut member: ClassicMember, token: RequestToken) {
        if let Some(instance_id) = &member.group_instance_id {
            self.static_members
                .insert(instance_id.clone(), member.member_id.clone());
        }
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member.member_id.clone());
        }
        self.increment_protocols(&member.protocols);
        member.awaiting_join = Some(token);
        self.num_awaiting_join += 1;
        self.pending_join_members.shift_remove(&member.member_id);
        self.members.insert(member.member_id.clone(), member);
    }

    /// Completes the member's parked JoinGroup, if any.
    fn complete_join(&mut self, member_id: &str, response: JoinGroupResponse, effects: &mut Vec<Effect>) -> bool {
        let Some(member) = self.members.get_mut(member_id) else {
            return false;
        };
        let Some(token) = member.awaiting_join.take() else {
            return false;
        };
        self.num_awaiting_join = self.num_awaiting_join.saturating_sub(1);
        effects.push(Effect::CompleteJoin { token, response });
        true
    }

    fn complete_sync(&mut self, member_id: &str, response: SyncGroupResponse, effects: &mut Vec<Effect>) -> bool {
        let Some(member) = self.members.get_mut(member_id) else {
            return false;
        };
        let Some(token) = member.awaiting_sync.take() else {
            return false;
        };
        effects.push(Effect::CompleteSync { token, response });
        true
    }

    /// Kafka's `ClassicGroup.remove`. Any request still parked for the member
    /// is answered with UNKNOWN_MEMBER_ID so that no token is ever lost.
    fn remove_member(&mut self, member_id: &str, effects: &mut Vec<Effect>) {
        self.complete_join(
            member_id,
            JoinGroupResponse::error(error::UNKNOWN_MEMBER_ID, ""),
            effects,
        );
        self.complete_sync(member_id, SyncGroupResponse::error(error::UNKNOWN_MEMBER_ID), effects);
        if let Some(removed) = self.members.shift_remove(member_id) {
            self.decrement_protocols(&removed.protocols);
            if let Some(instance_id) = &removed.group_instance_id {
                if self.static_members.get(instance_id).map(String::as_str) == Some(member_id) {
                    self.static_members.remove(instance_id);
                }
            }
        }
        if self.is_leader(member_id) {
            self.leader_id = self.members.keys().next().cloned();
        }
        self.pending_join_members.shift_remove(member_id);
        self.pending_sync_members.shift_remove(member_id);
    }

    /// Kafka's `updateMember`: new protocols and timeouts, and (re)parks the
    /// member's JoinGroup.
    fn update_member(
        &mut self,
        member_id: &str,
        protocols: Vec<JoinProtocol>,
        rebalance_timeout_ms: i32,
        session_timeout_ms: i32,
        token: Option<RequestToken>,
        effects: &mut Vec<Effect>,
    ) {
        let Some(old_protocols) = self.members.get(member_id).map(|m| m.protocols.clone()) else {
            return;
        };
        self.decrement_protocols(&old_protocols);
        self.increment_protocols(&protocols);
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        member.protocols = protocols;
        member.rebalance_timeout_ms = rebalance_timeout_ms;
        member.session_timeout_ms = session_timeout_ms;
        match (token, member.awaiting_join.take()) {
            (Some(new), Some(old)) => {
                // A duplicate JoinGroup supersedes the parked one.
                member.awaiting_join = Some(new);
                effects.push(Effect::CompleteJoin {
                    token: old,
                    response: JoinGroupResponse::error(error::REBALANCE_IN_PROGRESS, member_id),
                });
            }
            (Some(new), None) => {
                member.awaiting_join = Some(new);
                self.num_awaiting_join += 1;
            }
            (None, Some(_)) => {
                self.num_awaiting_join = self.num_awaiting_join.saturating_sub(1);
            }
            (None, None) => {}
        }
    }

    fn reschedule_heartbeat(&mut self, member_id: &str, now_ms: i64, timeout_ms: Option<i32>) {
        if let Some(m) = self.members.get_mut(member_id) {
            let t = timeout_ms.unwrap_or(m.session_timeout_ms);
            m.heartbeat_deadline = Some(after(now_ms, t));
        }
    }

    // --- JoinGroup ----------------------------------------------------------

    /// Handles a JoinGroup. The response for `token` is pushed to
    /// `ctx.effects` now or later (see the module docs).
    ///
    /// Group id and session timeout validation, and creating the group, are
    /// the caller's job (see `GroupCoordinatorState::join_group`).
    pub fn join(&mut self, ctx: &mut ClassicCtx<'_>, token: RequestToken, mut req: JoinGroupRequest) {
        dedup_protocols(&mut req.protocols);
        let member_id = req.member_id.clone();
        if !self.accept_joining_member(&member_id, ctx.config.max_size) {
            self.remove_member(&member_id, ctx.effects);
            ctx.effects.push(Effect::CompleteJoin {
                token,
                response: JoinGroupResponse::error(error::GROUP_MAX_SIZE_REACHED, ""),
            });
            return;
        }
        if member_id.is_empty() {
            self.join_new_member(ctx, token, req);
        } else {
            self.join_existing_member(ctx, token, req);
        }
    }

    fn accept_joining_member(&self, member_id: &str, max_size: usize) -> bool {
        match self.state {
            ClassicGroupState::Empty | ClassicGroupState::Dead => true,
            ClassicGroupState::PreparingRebalance => {
                self.members.get(member_id).is_some_and(ClassicMember::is_awaiting_join)
                    || self.num_awaiting_join < max_size
            }
            ClassicGroupState::CompletingRebalance | ClassicGroupState::Stable => {
                self.members.contains_key(member_id) || self.members.len() < max_size
            }
        }
    }

    fn join_new_member(&mut self, ctx: &mut ClassicCtx<'_>, token: RequestToken, req: JoinGroupRequest) {
        if self.state == ClassicGroupState::Dead {
            ctx.effects.push(Effect::CompleteJoin {
                token,
                response: JoinGroupResponse::error(error::COORDINATOR_NOT_AVAILABLE, ""),
            });
            return;
        }
        if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            ctx.effects.push(Effect::CompleteJoin {
                token,
                response: JoinGroupResponse::error(error::INCONSISTENT_GROUP_PROTOCOL, ""),
            });
            return;
        }
        let prefix = req.group_instance_id.as_deref().unwrap_or(&req.client_id);
        let new_member_id = format!("{}-{}", prefix, ctx.ids.next_id());
        match req.group_instance_id.clone() {
            Some(instance_id) => match self.static_members.get(&instance_id).cloned() {
                Some(old_member_id) => self.update_static_member_then_rebalance_or_complete_join(
                    ctx,
                    token,
                    req,
                    &old_member_id,
                    new_member_id,
                ),
                None => self.add_member_then_rebalance_or_complete_join(ctx, token, req, new_member_id),
            },
            None => {
                if req.api_version >= 4 {
                    // KIP-394: hand out the member id and wait for the member
                    // to come back with it.
                    self.pending_join_members
                        .insert(new_member_id.clone(), after(ctx.now_ms, req.session_timeout_ms));
                    ctx.effects.push(Effect::CompleteJoin {
                        token,
                        response: JoinGroupResponse::error(error::MEMBER_ID_REQUIRED, new_member_id),
                    });
                } else {
                    self.add_member_then_rebalance_or_complete_join(ctx, token, req, new_member_id);
                }
            }
        }
    }

    fn join_existing_member(&mut self, ctx: &mut ClassicCtx<'_>, token: RequestToken, req: JoinGroupRequest) {
        let member_id = req.member_id.clone();
        let fail = |ctx: &mut ClassicCtx<'_>, code| {
            ctx.effects.push(Effect::CompleteJoin {
                token,
                response: JoinGroupResponse::error(code, member_id.clone()),
            })
        };
        if self.state == ClassicGroupState::Dead {
            return fail(ctx, error::COORDINATOR_NOT_AVAILABLE);
        }
        if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            return fail(ctx, error::INCONSISTENT_GROUP_PROTOCOL);
        }
        if self.pending_join_members.contains_key(&member_id) {
            if req.group_instance_id.is_some() {
                // Pending members are always dynamic (Kafka throws here).
                return fail(ctx, error::UNKNOWN_SERVER_ERROR);
            }
            return self.add_member_then_rebalance_or_complete_join(ctx, token, req, member_id.clone());
        }
        if let Err(code) = self.validate_member(&member_id, req.group_instance_id.as_deref()) {
            return fail(ctx, code);
        }
        let Some(member) = self.members.get(&member_id) else {
            return fail(ctx, error::UNKNOWN_MEMBER_ID);
        };
        let matches = member.matches(&req.protocols);
        match self.state {
            ClassicGroupState::PreparingRebalance => {
                self.update_member_then_rebalance_or_complete_join(ctx, token, req)
            }
            ClassicGroupState::CompletingRebalance => {
                if matches {
                    // The member probably missed the JoinGroup response: send
                    // the current generation again.
                    let leader = self.is_leader(&member_id);
                    let response = self.current_generation_response(&member_id, leader);
                    ctx.effects.push(Effect::CompleteJoin { token, response });
                } else {
                    self.update_member_then_rebalance_or_complete_join(ctx, token, req)
                }
            }
            ClassicGroupState::Stable => {
                if self.is_leader(&member_id) || !matches {
                    // A rejoining leader forces a rebalance (e.g. topic metadata
                    // changes); so does changed member metadata.
                    self.update_member_then_rebalance_or_complete_join(ctx, token, req)
                } else {
                    let response = self.current_generation_response(&member_id, false);
                    ctx.effects.push(Effect::CompleteJoin { token, response });
                }
            }
            ClassicGroupState::Empty | ClassicGroupState::Dead => fail(ctx, error::UNKNOWN_MEMBER_ID),
        }
    }

    fn update_member_then_rebalance_or_complete_join(
        &mut self,
        ctx: &mut ClassicCtx<'_>,
        token: RequestToken,
        req: JoinGroupRequest,
    ) {
        self.update_member(
            &req.member_id,
            req.protocols,
            req.rebalance_timeout_ms,
            req.session_timeout_ms,
            Some(token),
            ctx.effects,
        );
        self.maybe_prepare_rebalance_or_complete_join(ctx);
    }

    fn add_member_then_rebalance_or_complete_join(
        &mut self,
        ctx: &mut ClassicCtx<'_>,
        token: RequestToken,
        req: JoinGroupRequest,
        member_id: String,
    ) {
        let member = ClassicMember {
            member_id: member_id.clone(),
            group_instance_id: req.group_instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            session_timeout_ms: req.session_timeout_ms,
            protocol_type: req.protocol_type,
            protocols: req.protocols,
            assignment: Bytes::new(),
            awaiting_join: None,
            awaiting_sync: None,
            is_new: true,
            heartbeat_deadline: None,
        };
        if self.state == ClassicGroupState::PreparingRebalance && self.previous_state == ClassicGroupState::Empty {
            self.new_member_added = true;
        }
        self.add_member(member, token);
        // New members cannot heartbeat while their JoinGroup is parked: they
        // are expired after the new member join timeout instead.
        let timeout = ctx.config.new_member_join_timeout_ms;
        self.reschedule_heartbeat(&member_id, ctx.now_ms, Some(timeout));
        self.maybe_prepare_rebalance_or_complete_join(ctx);
    }

    fn update_static_member_then_rebalance_or_complete_join(
        &mut self,
        ctx: &mut ClassicCtx<'_>,
        token: RequestToken,
        req: JoinGroupRequest,
        old_member_id: &str,
        new_member_id: String,
    ) {
        let instance_id = req.group_instance_id.clone().unwrap_or_default();
        let old_leader = self.leader_id.clone();
        self.replace_static_member(&instance_id, old_member_id, &new_member_id, ctx.effects);
        self.reschedule_heartbeat(&new_member_id, ctx.now_ms, None);
        self.update_member(
            &new_member_id,
            req.protocols,
            req.rebalance_timeout_ms,
            req.session_timeout_ms,
            Some(token),
            ctx.effects,
        );
        match self.state {
            ClassicGroupState::Stable => {
                let selected = self.select_protocol();
                if selected.is_some() && selected == self.protocol_name {
                    // The static member takes over its previous identity and
                    // assignment without a rebalance.
                    let record = self.metadata_record(None);
                    ctx.effects.push(Effect::Persist(record));
                    let response = if req.api_version >= 9 {
                        let is_leader = self.is_leader(&new_member_id);
                        let mut r = self.current_generation_response(&new_member_id, is_leader);
                        r.skip_assignment = is_leader;
                        r
                    } else {
                        let mut r = self.current_generation_response(&new_member_id, false);
                        r.leader = old_leader.unwrap_or_default();
                        r
                    };
                    self.complete_join(&new_member_id, response, ctx.effects);
                } else {
                    self.maybe_prepare_rebalance_or_complete_join(ctx);
                }
            }
            ClassicGroupState::CompletingRebalance => {
                // The leader may already have computed an assignment for the
                // old member id: rebalance again.
                self.prepare_rebalance(ctx);
            }
            ClassicGroupState::PreparingRebalance => self.maybe_complete_join_phase(ctx),
            ClassicGroupState::Empty | ClassicGroupState::Dead => {
                // Unreachable: a known static member implies a non-empty group.
                self.complete_join(
                    &new_member_id,
                    JoinGroupResponse::error(error::UNKNOWN_SERVER_ERROR, ""),
                    ctx.effects,
                );
            }
        }
    }

    fn replace_static_member(
        &mut self,
        instance_id: &str,
        old_member_id: &str,
        new_member_id: &str,
        effects: &mut Vec<Effect>,
    ) {
        // Fence whoever still waits with the old member id.
        self.complete_join(
            old_member_id,
            JoinGroupResponse::error(error::FENCED_INSTANCE_ID, old_member_id),
            effects,
        );
        self.complete_sync(
            old_member_id,
            SyncGroupResponse::error(error::FENCED_INSTANCE_ID),
            effects,
        );
        let Some(old) = self.members.shift_remove(old_member_id) else {
            return;
        };
        let new = ClassicMember {
            member_id: new_member_id.to_string(),
            awaiting_join: None,
            awaiting_sync: None,
            is_new: false,
            heartbeat_deadline: None,
            ..old
        };
        self.members.insert(new_member_id.to_string(), new);
        if self.is_leader(old_member_id) {
            self.leader_id = Some(new_member_id.to_string());
        }
        self.static_members
            .insert(instance_id.to_string(), new_member_id.to_string());
    }

    fn maybe_prepare_rebalance_or_complete_join(&mut self, ctx: &mut ClassicCtx<'_>) {
        if self.can_rebalance() {
            self.prepare_rebalance(ctx);
        } else {
            self.maybe_complete_join_phase(ctx);
        }
    }

    fn maybe_complete_join_phase(&mut self, ctx: &mut ClassicCtx<'_>) {
        if self.state == ClassicGroupState::PreparingRebalance
            && self.previous_state != ClassicGroupState::Empty
            && self.has_all_members_joined()
        {
            self.complete_join_phase(ctx);
        }
    }

    fn prepare_rebalance(&mut self, ctx: &mut ClassicCtx<'_>) {
        if self.state == ClassicGroupState::CompletingRebalance {
            self.reset_and_propagate_assignment_with_error(ctx, error::REBALANCE_IN_PROGRESS);
        }
        self.pending_sync_members.clear();
        self.sync_timer = None;
        let initial = self.state == ClassicGroupState::Empty;
        if initial {
            let delay = ctx.config.initial_rebalance_delay_ms.max(0);
            let remaining = self.rebalance_timeout_ms().saturating_sub(delay).max(0);
            self.join_timer = Some(JoinTimer::InitialDelay {
                deadline: after(ctx.now_ms, delay),
                delay,
                remaining,
            });
        }
        self.transition_to(ClassicGroupState::PreparingRebalance, ctx.now_ms);
        if !initial {
            if self.has_all_members_joined() {
                self.complete_join_phase(ctx);
            } else {
                self.join_timer = Some(JoinTimer::Rebalance {
                    deadline: after(ctx.now_ms, self.rebalance_timeout_ms()),
                });
            }
        }
    }

    fn complete_join_phase(&mut self, ctx: &mut ClassicCtx<'_>) {
        self.join_timer = None;
        let not_rejoined: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in not_rejoined {
            self.remove_member(&id, ctx.effects);
        }
        if self.state == ClassicGroupState::Dead {
            return;
        }
        if !self.maybe_elect_new_joined_leader() && !self.members.is_empty() {
            // Nobody rejoined (only static members remain): wait another
            // rebalance timeout for their sessions to expire.
            self.join_timer = Some(JoinTimer::Rebalance {
                deadline: after(ctx.now_ms, self.rebalance_timeout_ms()),
            });
            return;
        }
        self.init_next_generation(ctx.now_ms);
        if self.state == ClassicGroupState::Empty {
            let record = self.metadata_record(None);
            ctx.effects.push(Effect::Persist(record));
            return;
        }
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let leader = self.is_leader(&id);
            let response = self.current_generation_response(&id, leader);
            self.complete_join(&id, response, ctx.effects);
            self.reschedule_heartbeat(&id, ctx.now_ms, None);
            if let Some(m) = self.members.get_mut(&id) {
                m.is_new = false;
            }
            self.pending_sync_members.insert(id);
        }
        self.sync_timer = Some((after(ctx.now_ms, self.rebalance_timeout_ms()), self.generation_id));
    }

    fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader_id.clone() else {
            return false;
        };
        let leader_joined = self.members.get(&leader).is_some_and(ClassicMember::is_awaiting_join);
        if leader_joined {
            return true;
        }
        match self.members.values().find(|m| m.is_awaiting_join()) {
            Some(m) => {
                self.leader_id = Some(m.member_id.clone());
                true
            }
            None => false,
        }
    }

    fn init_next_generation(&mut self, now_ms: i64) {
        self.generation_id = self.generation_id.wrapping_add(1);
        if self.members.is_empty() {
            self.protocol_name = None;
            self.subscribed_topics = self.compute_subscribed_topics();
            self.transition_to(ClassicGroupState::Empty, now_ms);
        } else {
            self.protocol_name = self.select_protocol();
            self.subscribed_topics = self.compute_subscribed_topics();
            self.transition_to(ClassicGroupState::CompletingRebalance, now_ms);
        }
        self.pending_sync_members.clear();
    }

    fn compute_subscribed_topics(&self) -> Option<HashSet<String>> {
        if !self.uses_consumer_protocol() {
            return None;
        }
        if self.members.is_empty() {
            return Some(HashSet::default());
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = HashSet::default();
        for m in self.members.values() {
            let metadata = m.metadata(protocol)?;
            topics.extend(parse_subscription_topics(metadata)?);
        }
        Some(topics)
    }

    fn reset_and_propagate_assignment_with_error(&mut self, ctx: &mut ClassicCtx<'_>, code: ErrorCode) {
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
        }
        self.propagate_assignment(ctx, code);
    }

    fn propagate_assignment(&mut self, ctx: &mut ClassicCtx<'_>, code: ErrorCode) {
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let Some(m) = self.members.get(&id) else {
                continue;
            };
            let response = if code == error::NONE {
                SyncGroupResponse {
                    error_code: code,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    assignment: m.assignment.clone(),
                }
            } else {
                SyncGroupResponse {
                    error_code: code,
                    protocol_type: None,
                    protocol_name: None,
                    assignment: m.assignment.clone(),
                }
            };
            if self.complete_sync(&id, response, ctx.effects) {
                self.reschedule_heartbeat(&id, ctx.now_ms, None);
            }
        }
    }

    // --- SyncGroup ----------------------------------------------------------

    /// Handles a SyncGroup; the response for `token` is pushed to
    /// `ctx.effects` now or when the leader's assignment arrives.
    pub fn sync(&mut self, ctx: &mut ClassicCtx<'_>, token: RequestToken, req: SyncGroupRequest) {
        let fail = |ctx: &mut ClassicCtx<'_>, code| {
            ctx.effects.push(Effect::CompleteSync {
                token,
                response: SyncGroupResponse::error(code),
            })
        };
        if self.state == ClassicGroupState::Dead {
            return fail(ctx, error::COORDINATOR_NOT_AVAILABLE);
        }
        if self.state == ClassicGroupState::Empty {
            return fail(ctx, error::UNKNOWN_MEMBER_ID);
        }
        if let Err(code) = self.validate_member(&req.member_id, req.group_instance_id.as_deref()) {
            return fail(ctx, code);
        }
        if req.generation_id != self.generation_id {
            return fail(ctx, error::ILLEGAL_GENERATION);
        }
        if inconsistent(req.protocol_type.as_deref(), self.protocol_type.as_deref())
            || inconsistent(req.protocol_name.as_deref(), self.protocol_name.as_deref())
        {
            return fail(ctx, error::INCONSISTENT_GROUP_PROTOCOL);
        }
        match self.state {
            ClassicGroupState::PreparingRebalance => fail(ctx, error::REBALANCE_IN_PROGRESS),
            ClassicGroupState::CompletingRebalance => {
                if let Some(m) = self.members.get_mut(&req.member_id) {
                    if let Some(old) = m.awaiting_sync.replace(token) {
                        ctx.effects.push(Effect::CompleteSync {
                            token: old,
                            response: SyncGroupResponse::error(error::REBALANCE_IN_PROGRESS),
                        });
                    }
                }
                self.remove_pending_sync_member(&req.member_id);
                if self.is_leader(&req.member_id) {
                    let mut assignment: HashMap<String, Bytes> = HashMap::default();
                    for a in req.assignments {
                        assignment.insert(a.member_id, a.assignment);
                    }
                    // Members without an assignment get an empty one.
                    let record = self.metadata_record(Some(&assignment));
                    ctx.effects.push(Effect::Persist(record));
                    for m in self.members.values_mut() {
                        m.assignment = assignment.get(&m.member_id).cloned().unwrap_or_default();
                    }
                    self.propagate_assignment(ctx, error::NONE);
                    self.transition_to(ClassicGroupState::Stable, ctx.now_ms);
                }
            }
            ClassicGroupState::Stable => {
                self.remove_pending_sync_member(&req.member_id);
                let assignment = self
                    .members
                    .get(&req.member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                ctx.effects.push(Effect::CompleteSync {
                    token,
                    response: SyncGroupResponse {
                        error_code: error::NONE,
                        protocol_type: self.protocol_type.clone(),
                        protocol_name: self.protocol_name.clone(),
                        assignment,
                    },
                });
            }
            ClassicGroupState::Empty | ClassicGroupState::Dead => fail(ctx, error::UNKNOWN_MEMBER_ID),
        }
    }

    fn remove_pending_sync_member(&mut self, member_id: &str) {
        self.pending_sync_members.shift_remove(member_id);
        match self.state {
            ClassicGroupState::Dead | ClassicGroupState::Empty | ClassicGroupState::PreparingRebalance => {
                self.sync_timer = None
            }
            ClassicGroupState::CompletingRebalance | ClassicGroupState::Stable => {
                if self.pending_sync_members.is_empty() {
                    self.sync_timer = None;
                }
            }
        }
    }

    // --- Heartbeat ------------------------------------------------------------

    pub fn heartbeat(&mut self, now_ms: i64, req: &HeartbeatRequest) -> HeartbeatResponse {
        let code = self.heartbeat_inner(now_ms, req);
        HeartbeatResponse { error_code: code }
    }

    fn heartbeat_inner(&mut self, now_ms: i64, req: &HeartbeatRequest) -> ErrorCode {
        if self.state == ClassicGroupState::Dead {
            return error::COORDINATOR_NOT_AVAILABLE;
        }
        if let Err(code) = self.validate_member(&req.member_id, req.group_instance_id.as_deref()) {
            return code;
        }
        if req.generation_id != self.generation_id {
            return error::ILLEGAL_GENERATION;
        }
        match self.state {
            ClassicGroupState::Empty | ClassicGroupState::Dead => error::UNKNOWN_MEMBER_ID,
            ClassicGroupState::PreparingRebalance => {
                self.reschedule_heartbeat(&req.member_id, now_ms, None);
                error::REBALANCE_IN_PROGRESS
            }
            ClassicGroupState::CompletingRebalance | ClassicGroupState::Stable => {
                self.reschedule_heartbeat(&req.member_id, now_ms, None);
                error::NONE
            }
        }
    }

    // --- LeaveGroup -----------------------------------------------------------

    pub fn leave(&mut self, ctx: &mut ClassicCtx<'_>, req: &LeaveGroupRequest) -> LeaveGroupResponse {
        if self.state == ClassicGroupState::Dead {
            return LeaveGroupResponse {
                error_code: error::COORDINATOR_NOT_AVAILABLE,
                members: Vec::new(),
            };
        }
        let mut responses = Vec::with_capacity(req.members.len());
        let mut any_removed = false;
        for m in &req.members {
            let ok = |code| LeaveMemberResponse {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                error_code: code,
            };
            if m.member_id.is_empty() {
                // Administrative removal by instance id.
                let target = m
                    .group_instance_id
                    .as_deref()
                    .and_then(|i| self.static_members.get(i))
                    .cloned();
                match target {
                    Some(id) => {
                        self.remove_member(&id, ctx.effects);
                        any_removed = true;
                        responses.push(ok(error::NONE));
                    }
                    None => responses.push(ok(error::UNKNOWN_MEMBER_ID)),
                }
            } else if self.pending_join_members.contains_key(&m.member_id) {
                self.pending_join_members.shift_remove(&m.member_id);
                any_removed = true;
                responses.push(ok(error::NONE));
            } else {
                match self.validate_member(&m.member_id, m.group_instance_id.as_deref()) {
                    Ok(()) => {
                        self.remove_member(&m.member_id, ctx.effects);
                        any_removed = true;
                        responses.push(ok(error::NONE));
                    }
                    Err(code) => responses.push(ok(code)),
                }
            }
        }
        if any_removed {
            match self.state {
                ClassicGroupState::Stable | ClassicGroupState::CompletingRebalance => {
                    self.maybe_prepare_rebalance_or_complete_join(ctx)
                }
                ClassicGroupState::PreparingRebalance => self.maybe_complete_join_phase(ctx),
                ClassicGroupState::Empty | ClassicGroupState::Dead => {}
            }
        }
        LeaveGroupResponse {
            error_code: error::NONE,
            members: responses,
        }
    }

    // --- timers ---------------------------------------------------------------

    /// The earliest instant at which [`ClassicGroup::poll`] has work to do.
    pub fn next_deadline(&self) -> Option<i64> {
        let mut next = self.join_timer.map(|t| t.deadline());
        let mut consider = |d: i64| {
            next = Some(next.map_or(d, |n: i64| n.min(d)));
        };
        if let Some((d, _)) = self.sync_timer {
            consider(d);
        }
        for m in self.members.values() {
            if let Some(d) = m.heartbeat_deadline {
                consider(d);
            }
        }
        for d in self.pending_join_members.values() {
            consider(*d);
        }
        next
    }

    /// Fires every timer whose deadline is `<= ctx.now_ms`.
    pub fn poll(&mut self, ctx: &mut ClassicCtx<'_>) {
        // Timers fire one at a time in deadline order (ties: join, sync,
        // member sessions, pending members), like Kafka's timer wheel.
        while let Some(due) = self.earliest_due(ctx.now_ms) {
            match due {
                DueTimer::Join => {
                    let Some(t) = self.join_timer.take() else {
                        continue;
                    };
                    match t {
                        JoinTimer::InitialDelay { delay, remaining, .. } => {
                            self.try_complete_initial_rebalance(ctx, delay, remaining)
                        }
                        JoinTimer::Rebalance { .. } => {
                            if self.state == ClassicGroupState::PreparingRebalance {
                                self.complete_join_phase(ctx);
                            }
                        }
                    }
                }
                DueTimer::Sync => {
                    if let Some((_, generation)) = self.sync_timer.take() {
                        self.expire_pending_sync(ctx, generation);
                    }
                }
                DueTimer::Member(id) => self.expire_member_heartbeat(ctx, &id),
                DueTimer::Pending(id) => {
                    self.pending_join_members.shift_remove(&id);
                    if self.state == ClassicGroupState::PreparingRebalance && self.has_all_members_joined() {
                        self.complete_join_phase(ctx);
                    }
                }
            }
        }
    }

    fn earliest_due(&self, now_ms: i64) -> Option<DueTimer> {
        let mut best: Option<(i64, DueTimer)> = None;
        let mut consider = |d: i64, t: DueTimer| {
            if d <= now_ms && best.as_ref().is_none_or(|(b, _)| d < *b) {
                best = Some((d, t));
            }
        };
        if let Some(t) = &self.join_timer {
            consider(t.deadline(), DueTimer::Join);
        }
        if let Some((d, _)) = self.sync_timer {
            consider(d, DueTimer::Sync);
        }
        for m in self.members.values() {
            if let Some(d) = m.heartbeat_deadline.filter(|d| *d <= now_ms) {
                consider(d, DueTimer::Member(m.member_id.clone()));
            }
        }
        for (id, d) in &self.pending_join_members {
            if *d <= now_ms {
                consider(*d, DueTimer::Pending(id.clone()));
            }
        }
        best.map(|(_, t)| t)
    }

    fn try_complete_initial_rebalance(&mut self, ctx: &mut ClassicCtx<'_>, delay: i32, remaining: i32) {
        if self.state != ClassicGroupState::PreparingRebalance {
            return;
        }
        if self.new_member_added && remaining != 0 {
            self.new_member_added = false;
            let new_delay = ctx.config.initial_rebalance_delay_ms.max(0).min(remaining);
            let new_remaining = remaining.saturating_sub(delay).max(0);
            self.join_timer = Some(JoinTimer::InitialDelay {
                deadline: after(ctx.now_ms, new_delay),
                delay: new_delay,
                remaining: new_remaining,
            });
        } else {
            self.complete_join_phase(ctx);
        }
    }

    fn expire_pending_sync(&mut self, ctx: &mut ClassicCtx<'_>, generation: i32) {
        if generation != self.generation_id {
            return;
        }
        if matches!(
            self.state,
            ClassicGroupState::CompletingRebalance | ClassicGroupState::Stable
        ) && !self.pending_sync_members.is_empty()
        {
            let pending: Vec<String> = self.pending_sync_members.iter().cloned().collect();
            for id in pending {
                self.remove_member(&id, ctx.effects);
            }
            self.prepare_rebalance(ctx);
        }
    }

    fn expire_member_heartbeat(&mut self, ctx: &mut ClassicCtx<'_>, member_id: &str) {
        let Some(m) = self.members.get_mut(member_id) else {
            return;
        };
        m.heartbeat_deadline = None;
        if self.state == ClassicGroupState::Dead || m.has_satisfied_heartbeat() {
            return;
        }
        // The session expired: remove the member and rebalance.
        self.remove_member(member_id, ctx.effects);
        match self.state {
            ClassicGroupState::Stable | ClassicGroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance_or_complete_join(ctx)
            }
            ClassicGroupState::PreparingRebalance => {
                if self.has_all_members_joined() {
                    self.complete_join_phase(ctx);
                }
            }
            ClassicGroupState::Empty | ClassicGroupState::Dead => {}
        }
    }

    // --- offsets --------------------------------------------------------------

    /// An accepted OffsetCommit keeps the member's session alive while the
    /// group is Stable or PreparingRebalance.
    pub fn on_offset_commit(&mut self, member_id: &str, now_ms: i64) {
        if matches!(
            self.state,
            ClassicGroupState::Stable | ClassicGroupState::PreparingRebalance
        ) {
            self.reschedule_heartbeat(member_id, now_ms, None);
        }
    }

    // --- describe / persistence -----------------------------------------------

    pub fn describe(&self) -> DescribedGroup {
        let stable = self.state == ClassicGroupState::Stable;
        let protocol = self.protocol_name.clone().unwrap_or_default();
        DescribedGroup {
            error_code: error::NONE,
            group_id: self.group_id.clone(),
            group_state: self.state.as_str().to_string(),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_data: if stable { protocol.clone() } else { String::new() },
            members: self
                .members
                .values()
                .map(|m| DescribedMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    member_metadata: if stable {
                        m.metadata(&protocol).cloned().unwrap_or_default()
                    } else {
                        Bytes::new()
                    },
                    member_assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// The GroupMetadata record of the group, with `assignment` overriding the
    /// members' current assignments (members missing from it get an empty
    /// assignment).
    pub fn metadata_record(&self, assignment: Option<&HashMap<String, Bytes>>) -> Record {
        let protocol = self.protocol_name.as_deref().unwrap_or("");
        let members = self
            .members
            .values()
            .map(|m| GroupMetadataMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                rebalance_timeout: m.rebalance_timeout_ms,
                session_timeout: m.session_timeout_ms,
                subscription: m.metadata(protocol).cloned().unwrap_or_default(),
                assignment: match assignment {
                    Some(a) => a.get(&m.member_id).cloned().unwrap_or_default(),
                    None => m.assignment.clone(),
                },
            })
            .collect();
        Record::new(
            RecordKey::GroupMetadata {
                group: self.group_id.clone(),
            },
            RecordValue::GroupMetadata(GroupMetadataValue {
                protocol_type: self.protocol_type.clone().unwrap_or_default(),
                generation: self.generation_id,
                protocol: self.protocol_name.clone(),
                leader: self.leader_id.clone(),
                current_state_timestamp: self.state_timestamp.unwrap_or(-1),
                members,
            }),
        )
    }

    /// Kafka's empty GroupMetadata record written when a group is created.
    pub fn empty_metadata_record(&self) -> Record {
        Record::new(
            RecordKey::GroupMetadata {
                group: self.group_id.clone(),
            },
            RecordValue::GroupMetadata(GroupMetadataValue {
                protocol_type: String::new(),
                generation: 0,
                protocol: None,
                leader: None,
                current_state_timestamp: self.state_timestamp.unwrap_or(-1),
                members: Vec::new(),
            }),
        )
    }

    /// Rebuilds a group from its GroupMetadata record (replay). The group is
    /// Empty when it has no members and Stable otherwise; timers are armed
    /// by [`ClassicGroup::on_loaded`].
    pub fn from_record(group_id: &str, v: &GroupMetadataValue) -> ClassicGroup {
        let mut g = ClassicGroup::new(group_id, 0);
        g.state_timestamp = (v.current_state_timestamp >= 0).then_some(v.current_state_timestamp);
        g.generation_id = v.generation;
        g.protocol_type = (!v.protocol_type.is_empty()).then(|| v.protocol_type.clone());
        g.protocol_name = v.protocol.clone();
        g.leader_id = v.leader.clone();
        for m in &v.members {
            let protocols = vec![JoinProtocol {
                name: v.protocol.clone().unwrap_or_default(),
                metadata: m.subscription.clone(),
            }];
            g.increment_protocols(&protocols);
            if let Some(i) = &m.group_instance_id {
                g.static_members.insert(i.clone(), m.member_id.clone());
            }
            g.members.insert(
                m.member_id.clone(),
                ClassicMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout,
                    session_timeout_ms: m.session_timeout,
                    protocol_type: v.protocol_type.clone(),
                    protocols,
                    assignment: m.assignment.clone(),
                    awaiting_join: None,
                    awaiting_sync: None,
                    is_new: false,
                    heartbeat_deadline: None,
                },
            );
        }
        if g.leader_id.as_ref().is_none_or(|l| !g.members.contains_key(l)) {
            g.leader_id = g.members.keys().next().cloned();
        }
        if !g.members.is_empty() {
            g.state = ClassicGroupState::Stable;
            g.previous_state = ClassicGroupState::CompletingRebalance;
        }
        g.subscribed_topics = g.compute_subscribed_topics();
        g
    }

    /// Arms the member session timers after loading, and rebalances a loaded
    /// group that is over the maximum size.
    pub fn on_loaded(&mut self, ctx: &mut ClassicCtx<'_>) {
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in &ids {
            self.reschedule_heartbeat(id, ctx.now_ms, None);
        }
        if self.members.len() > ctx.config.max_size && self.can_rebalance() {
            self.prepare_rebalance(ctx);
        }
    }

    /// Marks the group Dead (it is being deleted or unloaded) and answers
    /// every parked request with `code` (NOT_COORDINATOR on unload).
    pub fn shutdown(&mut self, effects: &mut Vec<Effect>, code: ErrorCode) {
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            self.complete_join(&id, JoinGroupResponse::error(code, id.clone()), effects);
            self.complete_sync(&id, SyncGroupResponse::error(code), effects);
        }
        self.previous_state = self.state;
        self.state = ClassicGroupState::Dead;
        self.join_timer = None;
        self.sync_timer = None;
    }

    /// Kafka's `validateDeleteGroup`.
    pub fn validate_delete_group(&self) -> Result<(), ErrorCode> {
        match self.state {
            ClassicGroupState::Dead => Err(error::GROUP_ID_NOT_FOUND),
            ClassicGroupState::Stable
            | ClassicGroupState::PreparingRebalance
            | ClassicGroupState::CompletingRebalance => Err(error::NON_EMPTY_GROUP),
            ClassicGroupState::Empty => Ok(()),
        }
    }
}

impl OffsetPolicy for ClassicGroup {
    fn validate_offset_commit(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        _api_version: i16,
    ) -> Result<(), ErrorCode> {
        if self.state == ClassicGroupState::Dead {
            return Err(error::COORDINATOR_NOT_AVAILABLE);
        }
        if generation_id < 0 && self.state == ClassicGroupState::Empty {
            // Simple consumers / admin client commit into an empty group.
            return Ok(());
        }
        if generation_id >= 0 || !member_id.is_empty() || group_instance_id.is_some() {
            self.validate_member(member_id, group_instance_id)?;
            if generation_id != self.generation_id {
                return Err(error::ILLEGAL_GENERATION);
            }
        } else if self.state != ClassicGroupState::Empty {
            return Err(error::UNKNOWN_MEMBER_ID);
        }
        if self.state == ClassicGroupState::CompletingRebalance {
            return Err(error::REBALANCE_IN_PROGRESS);
        }
        Ok(())
    }

    fn validate_offset_fetch(&self, _member_id: Option<&str>, _member_epoch: i32) -> Result<(), ErrorCode> {
        if self.state == ClassicGroupState::Dead {
            return Err(error::GROUP_ID_NOT_FOUND);
        }
        Ok(())
    }

    fn validate_offset_delete(&self) -> Result<(), ErrorCode> {
        match self.state {
            ClassicGroupState::Dead => Err(error::GROUP_ID_NOT_FOUND),
            ClassicGroupState::Stable
            | ClassicGroupState::PreparingRebalance
            | ClassicGroupState::CompletingRebalance
                if !self.uses_consumer_protocol() =>
            {
                Err(error::NON_EMPTY_GROUP)
            }
            _ => Ok(()),
        }
    }

    fn is_subscribed_to_topic(&self, topic: &str) -> bool {
        match &self.subscribed_topics {
            Some(t) => t.contains(topic),
            None => self.uses_consumer_protocol(),
        }
    }

    fn expiration_base(&self) -> ExpirationBase {
        if self.protocol_type.is_none() {
            return ExpirationBase::CommitTimestamp;
        }
        if self.state == ClassicGroupState::Empty {
            return match self.state_timestamp {
                Some(ts) => ExpirationBase::Since(ts),
                None => ExpirationBase::CommitTimestamp,
            };
        }
        if self.uses_consumer_protocol() && self.subscribed_topics.is_some() && self.state == ClassicGroupState::Stable
        {
            return ExpirationBase::CommitTimestamp;
        }
        ExpirationBase::Never
    }
}

fn inconsistent(a: Option<&str>, b: Option<&str>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a != b)
}

/// Keeps the first protocol of each name (a client sending the same name twice
/// would otherwise never be counted as supported by every member).
fn dedup_protocols(protocols: &mut Vec<JoinProtocol>) {
    let mut seen = HashSet::default();
    protocols.retain(|p| seen.insert(p.name.clone()));
}

/// Topics of a consumer protocol subscription, parsed with the v0 layout that
/// prefixes every version: `int16 version, [string] topics, ...`.
pub fn parse_subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut buf = metadata;
    let mut take = |n: usize| -> Option<&[u8]> {
        if buf.len() < n {
            return None;
        }
        let (h, t) = buf.split_at(n);
        buf = t;
        Some(h)
    };
    let _version = i16::from_be_bytes(take(2)?.try_into().ok()?);
    let count = i32::from_be_bytes(take(4)?.try_into().ok()?);
    let mut topics = Vec::new();
    for _ in 0..count.max(0) {
        let len = i16::from_be_bytes(take(2)?.try_into().ok()?);
        if len < 0 {
            return None;
        }
        let raw = take(len as usize)?;
        topics.push(String::from_utf8(raw.to_vec()).ok()?);
    }
    Some(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_consumer_protocol_subscription_topics() {
        let mut v = vec![0, 1, 0, 0, 0, 2, 0, 3];
        v.extend_from_slice(b"foo");
        v.extend_from_slice(&[0, 1, b'x']);
        v.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            parse_subscription_topics(&v),
            Some(vec!["foo".to_string(), "x".to_string()])
        );
        assert_eq!(parse_subscription_topics(&[0, 1, 0, 0, 0, 9]), None);
        assert_eq!(parse_subscription_topics(&[]), None);
    }

    #[test]
    fn state_transitions_follow_kafka() {
        use ClassicGroupState::*;
        assert!(PreparingRebalance.valid_previous(Empty));
        assert!(PreparingRebalance.valid_previous(Stable));
        assert!(!Stable.valid_previous(PreparingRebalance));
        assert!(!CompletingRebalance.valid_previous(Empty));
        assert_eq!(CompletingRebalance.as_str(), "CompletingRebalance");
    }
}
