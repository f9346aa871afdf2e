//! Consumer group coordination.
//!
//! Pure, deterministic state machines for Kafka's group coordinator: no IO, no
//! async, no clock. Time is always an input (`now_ms`), member ids come from
//! an [`IdGenerator`], topic metadata from a [`TopicLookup`].
//!
//! * [`classic`]: JoinGroup / SyncGroup / Heartbeat / LeaveGroup (KIP-345
//!   static membership, KIP-394 member id required, KIP-814 skip assignment).
//! * [`consumer`]: ConsumerGroupHeartbeat / ConsumerGroupDescribe (KIP-848).
//! * [`assignor`]: the `uniform` and `range` server side assignors.
//! * [`offsets`]: OffsetCommit / OffsetFetch / OffsetDelete and expiration.
//! * [`records`]: `__consumer_offsets` key/value encoding and
//!   [`partition_for_group`](records::partition_for_group).
//!
//! Errors are the broker's one model: codes from the table and
//! [`ApiError`] in [`crate::protocol::error`].
//!
//! [`GroupCoordinatorState`] owns every group of one shard (one
//! `__consumer_offsets` partition or more) and is what the async shell drives:
//!
//! 1. call the request methods; JoinGroup and SyncGroup take a caller chosen
//!    [`RequestToken`] and answer through [`Effect::CompleteJoin`] /
//!    [`Effect::CompleteSync`], now or in a later batch;
//! 2. sleep until [`GroupCoordinatorState::next_deadline`] (recomputing it
//!    after every call) and then call [`GroupCoordinatorState::poll`];
//! 3. for every batch of effects returned by a call: append all
//!    [`Effect::Persist`] records, in order, to the group's
//!    `__consumer_offsets` partition, and only then deliver the responses of
//!    that batch (Kafka answers after the write is committed). If the write
//!    fails, answer the batch's requests with NOT_COORDINATOR instead (the
//!    in-memory state is then ahead of the log; the shell should resign the
//!    partition and reload it, as Kafka does on write failures).
//!
//! Every token passed to `join_group` / `sync_group` is completed exactly
//! once, including on [`GroupCoordinatorState::unload`].

pub mod assignor;
pub mod classic;
pub mod consumer;
pub mod offsets;
pub mod records;

use std::collections::BTreeMap;

use self::classic::{
    ClassicConfig, ClassicCtx, ClassicGroup, DescribedGroup, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, LeaveMemberResponse, SyncGroupRequest, SyncGroupResponse,
};
use self::consumer::{
    ConsumerConfig, ConsumerCtx, ConsumerGroup, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse,
    DescribedConsumerGroup,
};
use self::offsets::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, OffsetPolicy, OffsetStore,
};
use self::records::{Record, RecordError, RecordKey, RecordValue};
use crate::protocol::error::{self, ApiError, ErrorCode};

/// A Kafka topic id (UUID bytes).
pub type TopicId = [u8; 16];

/// Identifies a parked JoinGroup / SyncGroup request; chosen by the caller.
pub type RequestToken = u64;

/// Something the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Append this record to the `__consumer_offsets` partition owning the
    /// group (encode it with [`Record::encode`]).
    Persist(Record),
    /// Answer the JoinGroup request identified by `token`.
    CompleteJoin {
        token: RequestToken,
        response: JoinGroupResponse,
    },
    /// Answer the SyncGroup request identified by `token`.
    CompleteSync {
        token: RequestToken,
        response: SyncGroupResponse,
    },
}

/// A response and the effects the request produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome<R> {
    pub response: R,
    pub effects: Vec<Effect>,
}

/// What the coordinator needs to know about a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicInfo {
    pub topic_id: TopicId,
    pub partitions: i32,
}

/// Topic metadata source (the broker's metadata image).
pub trait TopicLookup {
    fn topic(&self, name: &str) -> Option<TopicInfo>;
    /// Name of a topic id (used by ConsumerGroupDescribe for topics no
    /// longer subscribed); `None` when unknown.
    fn topic_name(&self, _topic_id: &TopicId) -> Option<String> {
        None
    }
}

impl<F> TopicLookup for F
where
    F: Fn(&str) -> Option<TopicInfo>,
{
    fn topic(&self, name: &str) -> Option<TopicInfo> {
        self(name)
    }
}

/// A fixed set of topics (handy for tests and simple brokers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticTopics(pub BTreeMap<String, TopicInfo>);

impl StaticTopics {
    pub fn with(mut self, name: &str, topic_id: TopicId, partitions: i32) -> Self {
        self.0.insert(name.to_string(), TopicInfo { topic_id, partitions });
        self
    }
}

impl TopicLookup for StaticTopics {
    fn topic(&self, name: &str) -> Option<TopicInfo> {
        self.0.get(name).copied()
    }
    fn topic_name(&self, topic_id: &TopicId) -> Option<String> {
        self.0
            .iter()
            .find(|(_, t)| t.topic_id == *topic_id)
            .map(|(n, _)| n.clone())
    }
}

/// Source of the unique part of generated member ids (a UUID in Kafka).
pub trait IdGenerator {
    fn next_id(&mut self) -> String;
}

/// Random v4 UUIDs, like Kafka.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomIds;

impl IdGenerator for RandomIds {
    fn next_id(&mut self) -> String {
        crate::io::rand::uuid_v4().to_string()
    }
}

/// Deterministic ids `00000000-0000-0000-0000-000000000001`, `...2`, ...
#[derive(Debug, Clone, Default)]
pub struct SequentialIds {
    next: u64,
}

impl IdGenerator for SequentialIds {
    fn next_id(&mut self) -> String {
        self.next += 1;
        format!("00000000-0000-0000-0000-{:012}", self.next)
    }
}

/// Coordinator configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    pub classic: ClassicConfig,
    pub consumer: ConsumerConfig,
    /// `offsets.retention.minutes` in ms (7 days).
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms` (600000).
    pub offsets_retention_check_interval_ms: i64,
    /// `offset.metadata.max.bytes` (4096).
    pub offset_metadata_max_bytes: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            classic: ClassicConfig::default(),
            consumer: ConsumerConfig::default(),
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
        }
    }
}

/// A group of either protocol.
// Groups live in the coordinator's map and are rarely moved: boxing the
// larger variant would only add an indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Group {
    Classic(ClassicGroup),
    Consumer(ConsumerGroup),
}

impl Group {
    pub fn is_empty(&self) -> bool {
        match self {
            Group::Classic(g) => g.is_empty(),
            Group::Consumer(g) => g.is_empty(),
        }
    }

    /// "classic" or "consumer" (ListGroups `GroupType`).
    pub fn group_type(&self) -> &'static str {
        match self {
            Group::Classic(_) => "classic",
            Group::Consumer(_) => "consumer",
        }
    }

    pub fn state_str(&self) -> &'static str {
        match self {
            Group::Classic(g) => g.state().as_str(),
            Group::Consumer(g) => g.state().as_str(),
        }
    }

    pub fn protocol_type(&self) -> String {
        match self {
            Group::Classic(g) => g.protocol_type().unwrap_or("").to_string(),
            Group::Consumer(_) => classic::CONSUMER_PROTOCOL_TYPE.to_string(),
        }
    }

    fn policy(&self) -> &dyn OffsetPolicy {
        match self {
            Group::Classic(g) => g,
            Group::Consumer(g) => g,
        }
    }

    fn next_deadline(&self) -> Option<i64> {
        match self {
            Group::Classic(g) => g.next_deadline(),
            Group::Consumer(g) => g.next_deadline(),
        }
    }

    fn tombstones(&self) -> Vec<Record> {
        match self {
            Group::Classic(g) => vec![Record::tombstone(RecordKey::GroupMetadata {
                group: g.group_id().to_string(),
            })],
            Group::Consumer(g) => g.tombstones(),
        }
    }
}

#[derive(Debug, Clone)]
struct GroupEntry {
    group: Group,
    offsets: OffsetStore,
}

/// ListGroups entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub group_state: String,
    pub group_type: String,
}

/// DeleteGroups result for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletableGroupResult {
    pub group_id: String,
    pub error_code: ErrorCode,
}

/// All groups of one shard.
pub struct GroupCoordinatorState {
    config: GroupConfig,
    ids: Box<dyn IdGenerator>,
    groups: BTreeMap<String, GroupEntry>,
    next_cleanup_ms: i64,
    /// Effective consumer-protocol settings of groups with dynamic group
    /// configs (IncrementalAlterConfigs on a GROUP resource, KIP-848);
    /// other groups use `config.consumer`.
    consumer_overrides: BTreeMap<String, ConsumerConfig>,
}

/// A group's dynamic config overrides (KIP-848 group configs); `None` keeps
/// the broker's `group.consumer.*` value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupConfigOverrides {
    /// `consumer.session.timeout.ms`.
    pub session_timeout_ms: Option<i32>,
    /// `consumer.heartbeat.interval.ms`.
    pub heartbeat_interval_ms: Option<i32>,
}

impl GroupCoordinatorState {
    pub fn new(config: GroupConfig, ids: Box<dyn IdGenerator>, now_ms: i64) -> Self {
        let next_cleanup_ms = now_ms.saturating_add(config.offsets_retention_check_interval_ms.max(1));
        GroupCoordinatorState {
            config,
            ids,
            groups: BTreeMap::new(),
            next_cleanup_ms,
            consumer_overrides: BTreeMap::new(),
        }
    }

    /// Sets (or, with no overrides, clears) a group's dynamic configs. They
    /// apply from the group's next heartbeat or timer on: session deadlines
    /// are set with the new timeout and responses carry the new interval.
    pub fn set_group_config(&mut self, group_id: &str, overrides: GroupConfigOverrides) {
        if overrides == GroupConfigOverrides::default() {
            self.consumer_overrides.remove(group_id);
            return;
        }
        let mut c = self.config.consumer.clone();
        if let Some(v) = overrides.session_timeout_ms {
            c.session_timeout_ms = v.max(1);
        }
        if let Some(v) = overrides.heartbeat_interval_ms {
            c.heartbeat_interval_ms = v.max(1);
        }
        self.consumer_overrides.insert(group_id.to_string(), c);
    }

    /// The consumer-protocol settings in force for a group.
    pub fn consumer_config(&self, group_id: &str) -> &ConsumerConfig {
        self.consumer_overrides.get(group_id).unwrap_or(&self.config.consumer)
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    pub fn group(&self, group_id: &str) -> Option<&Group> {
        self.groups.get(group_id).map(|e| &e.group)
    }

    pub fn classic_group(&self, group_id: &str) -> Option<&ClassicGroup> {
        match self.group(group_id) {
            Some(Group::Classic(g)) => Some(g),
            _ => None,
        }
    }

    pub fn consumer_group(&self, group_id: &str) -> Option<&ConsumerGroup> {
        match self.group(group_id) {
            Some(Group::Consumer(g)) => Some(g),
            _ => None,
        }
    }

    pub fn offsets(&self, group_id: &str) -> Option<&OffsetStore> {
        self.groups.get(group_id).map(|e| &e.offsets)
    }

    pub fn group_ids(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }

    // --- classic protocol -------------------------------------------------------

    /// JoinGroup. The response arrives as [`Effect::CompleteJoin`] for `token`.
    pub fn join_group(&mut self, token: RequestToken, req: JoinGroupRequest, now_ms: i64) -> Vec<Effect> {
        let mut effects = Vec::new();
        let fail = |effects: &mut Vec<Effect>, code, member_id: &str| {
            effects.push(Effect::CompleteJoin {
                token,
                response: JoinGroupResponse::error(code, member_id),
            });
        };
        if req.group_id.is_empty() {
            fail(&mut effects, error::INVALID_GROUP_ID, &req.member_id);
            return effects;
        }
        let cfg = &self.config.classic;
        if req.session_timeout_ms < cfg.min_session_timeout_ms || req.session_timeout_ms > cfg.max_session_timeout_ms {
            fail(&mut effects, error::INVALID_SESSION_TIMEOUT, &req.member_id);
            return effects;
        }
        let mut is_new = false;
        match self.groups.get(&req.group_id).map(|e| &e.group) {
            Some(Group::Consumer(g)) if !g.is_empty() => {
                // Classic members cannot join a consumer protocol group here
                // (Kafka 4 supports mixed groups; this coordinator does not).
                fail(&mut effects, error::INCONSISTENT_GROUP_PROTOCOL, "");
                return effects;
            }
            Some(Group::Consumer(g)) => {
                if !req.member_id.is_empty() {
                    fail(&mut effects, error::UNKNOWN_MEMBER_ID, &req.member_id);
                    return effects;
                }
                effects.extend(g.tombstones().into_iter().map(Effect::Persist));
                if let Some(entry) = self.groups.get_mut(&req.group_id) {
                    entry.group = Group::Classic(ClassicGroup::new(&req.group_id, now_ms));
                }
                is_new = true;
            }
            Some(Group::Classic(_)) => {}
            None => {
                if !req.member_id.is_empty() {
                    fail(&mut effects, error::UNKNOWN_MEMBER_ID, &req.member_id);
                    return effects;
                }
                self.groups.insert(
                    req.group_id.clone(),
                    GroupEntry {
                        group: Group::Classic(ClassicGroup::new(&req.group_id, now_ms)),
                        offsets: OffsetStore::default(),
                    },
                );
                is_new = true;
            }
        }
        let Some(GroupEntry {
            group: Group::Classic(g),
            ..
        }) = self.groups.get_mut(&req.group_id)
        else {
            fail(&mut effects, error::UNKNOWN_SERVER_ERROR, &req.member_id);
            return effects;
        };
        let before = effects.len();
        let mut ctx = ClassicCtx {
            config: &self.config.classic,
            now_ms,
            ids: self.ids.as_mut(),
            effects: &mut effects,
        };
        g.join(&mut ctx, token, req);
        let wrote = effects[before..].iter().any(|e| matches!(e, Effect::Persist(_)));
        if is_new && !wrote {
            effects.push(Effect::Persist(g.empty_metadata_record()));
        }
        effects
    }

    /// SyncGroup. The response arrives as [`Effect::CompleteSync`] for `token`.
    pub fn sync_group(&mut self, token: RequestToken, req: SyncGroupRequest, now_ms: i64) -> Vec<Effect> {
        let mut effects = Vec::new();
        let code = if req.group_id.is_empty() {
            error::INVALID_GROUP_ID
        } else {
            match self.groups.get_mut(&req.group_id).map(|e| &mut e.group) {
                Some(Group::Classic(g)) => {
                    let mut ctx = ClassicCtx {
                        config: &self.config.classic,
                        now_ms,
                        ids: self.ids.as_mut(),
                        effects: &mut effects,
                    };
                    g.sync(&mut ctx, token, req);
                    return effects;
                }
                _ => error::UNKNOWN_MEMBER_ID,
            }
        };
        effects.push(Effect::CompleteSync {
            token,
            response: SyncGroupResponse::error(code),
        });
        effects
    }

    /// Heartbeat (classic protocol). Never produces effects.
    pub fn heartbeat(&mut self, req: &HeartbeatRequest, now_ms: i64) -> HeartbeatResponse {
        if req.group_id.is_empty() {
            return HeartbeatResponse {
                error_code: error::INVALID_GROUP_ID,
            };
        }
        match self.groups.get_mut(&req.group_id).map(|e| &mut e.group) {
            Some(Group::Classic(g)) => g.heartbeat(now_ms, req),
            _ => HeartbeatResponse {
                error_code: error::UNKNOWN_MEMBER_ID,
            },
        }
    }

    /// LeaveGroup (batched, v3+ semantics; see [`LeaveGroupResponse::v0_error`]).
    pub fn leave_group(&mut self, req: &LeaveGroupRequest, now_ms: i64) -> Outcome<LeaveGroupResponse> {
        let mut effects = Vec::new();
        if req.group_id.is_empty() {
            return Outcome {
                response: LeaveGroupResponse {
                    error_code: error::INVALID_GROUP_ID,
                    members: Vec::new(),
                },
                effects,
            };
        }
        let response = match self.groups.get_mut(&req.group_id).map(|e| &mut e.group) {
            Some(Group::Classic(g)) => {
                let mut ctx = ClassicCtx {
                    config: &self.config.classic,
                    now_ms,
                    ids: self.ids.as_mut(),
                    effects: &mut effects,
                };
                g.leave(&mut ctx, req)
            }
            _ => LeaveGroupResponse {
                error_code: error::NONE,
                members: req
                    .members
                    .iter()
                    .map(|m| LeaveMemberResponse {
                        member_id: m.member_id.clone(),
                        group_instance_id: m.group_instance_id.clone(),
                        error_code: error::UNKNOWN_MEMBER_ID,
                    })
                    .collect(),
            },
        };
        Outcome { response, effects }
    }

    /// DescribeGroups. Unknown and non-classic groups are reported Dead.
    /// (For DescribeGroups v6+ the shell may turn a Dead group that is not
    /// present in [`GroupCoordinatorState::group`] into GROUP_ID_NOT_FOUND.)
    pub fn describe_groups(&self, group_ids: &[String]) -> Vec<DescribedGroup> {
        group_ids
            .iter()
            .map(|id| match self.group(id) {
                Some(Group::Classic(g)) => g.describe(),
                _ => DescribedGroup::dead(id),
            })
            .collect()
    }

    // --- consumer protocol ------------------------------------------------------

    /// ConsumerGroupHeartbeat (KIP-848).
    pub fn consumer_group_heartbeat(
        &mut self,
        req: &ConsumerGroupHeartbeatRequest,
        now_ms: i64,
        topics: &dyn TopicLookup,
    ) -> Outcome<ConsumerGroupHeartbeatResponse> {
        let mut effects = Vec::new();
        let fail = |e: ApiError| Outcome {
            response: ConsumerGroupHeartbeatResponse::error(e),
            effects: Vec::new(),
        };
        if let Err(e) = consumer::validate_heartbeat_request(req, &self.config.consumer) {
            return fail(e);
        }
        let joining = req.member_epoch == 0;
        let mut replaced_classic = None;
        match self.groups.get_mut(&req.group_id).map(|e| &mut e.group) {
            Some(Group::Consumer(g)) => {
                // Requests are validated before the group is touched, so an
                // existing group is updated in place.
                let mut ctx = ConsumerCtx {
                    config: self
                        .consumer_overrides
                        .get(&req.group_id)
                        .unwrap_or(&self.config.consumer),
                    now_ms,
                    ids: self.ids.as_mut(),
                    topics,
                    effects: &mut effects,
                };
                let response = g.heartbeat(&mut ctx, req);
                return Outcome { response, effects };
            }
            Some(Group::Classic(g)) if joining && g.is_empty() => {
                replaced_classic = Some(Record::tombstone(RecordKey::GroupMetadata {
                    group: req.group_id.clone(),
                }));
            }
            Some(Group::Classic(_)) => {
                return fail(ApiError::with_message(
                    error::GROUP_ID_NOT_FOUND,
                    format!("Group {} is not a consumer group.", req.group_id),
                ))
            }
            None if joining => {}
            None => {
                return fail(ApiError::with_message(
                    error::GROUP_ID_NOT_FOUND,
                    format!("Consumer group {} not found.", req.group_id),
                ))
            }
        }
        // A new group only exists if its first heartbeat succeeds (Kafka
        // reverts the creation otherwise).
        let mut group = ConsumerGroup::new(&req.group_id);
        let mut ctx = ConsumerCtx {
            config: self
                .consumer_overrides
                .get(&req.group_id)
                .unwrap_or(&self.config.consumer),
            now_ms,
            ids: self.ids.as_mut(),
            topics,
            effects: &mut effects,
        };
        let response = group.heartbeat(&mut ctx, req);
        if response.error_code != error::NONE {
            return Outcome {
                response,
                effects: Vec::new(),
            };
        }
        if let Some(tombstone) = replaced_classic {
            effects.insert(0, Effect::Persist(tombstone));
        }
        match self.groups.get_mut(&req.group_id) {
            Some(entry) => entry.group = Group::Consumer(group),
            None => {
                self.groups.insert(
                    req.group_id.clone(),
                    GroupEntry {
                        group: Group::Consumer(group),
                        offsets: OffsetStore::default(),
                    },
                );
            }
        }
        Outcome { response, effects }
    }

    /// ConsumerGroupDescribe.
    pub fn consumer_group_describe(
        &self,
        group_ids: &[String],
        topics: &dyn TopicLookup,
    ) -> Vec<DescribedConsumerGroup> {
        group_ids
            .iter()
            .map(|id| {
                if id.is_empty() {
                    return DescribedConsumerGroup::error(id, ApiError::new(error::INVALID_GROUP_ID));
                }
                match self.group(id) {
                    Some(Group::Consumer(g)) => g.describe(self.consumer_config(id), topics),
                    Some(Group::Classic(_)) => DescribedConsumerGroup::error(
                        id,
                        ApiError::with_message(
                            error::GROUP_ID_NOT_FOUND,
                            format!("Group {id} is not a consumer group."),
                        ),
                    ),
                    None => DescribedConsumerGroup::error(
                        id,
                        ApiError::with_message(error::GROUP_ID_NOT_FOUND, format!("Group {id} not found.")),
                    ),
                }
            })
            .collect()
    }

    // --- admin --------------------------------------------------------------------

    /// ListGroups with the v4 state filter and v5 type filter (both case
    /// insensitive; empty filters match everything).
    pub fn list_groups(&self, states_filter: &[String], types_filter: &[String]) -> Vec<ListedGroup> {
        let states: Vec<String> = states_filter.iter().map(|s| s.trim().to_lowercase()).collect();
        let types: Vec<String> = types_filter.iter().map(|s| s.trim().to_lowercase()).collect();
        self.groups
            .iter()
            .filter(|(_, e)| {
                (states.is_empty() || states.contains(&e.group.state_str().to_lowercase()))
                    && (types.is_empty() || types.iter().any(|t| t == e.group.group_type()))
            })
            .map(|(id, e)| ListedGroup {
                group_id: id.clone(),
                protocol_type: e.group.protocol_type(),
                group_state: e.group.state_str().to_string(),
                group_type: e.group.group_type().to_string(),
            })
            .collect()
    }

    /// DeleteGroups: only empty groups can be deleted; their offsets go too.
    pub fn delete_groups(&mut self, group_ids: &[String]) -> Outcome<Vec<DeletableGroupResult>> {
        let mut effects = Vec::new();
        let mut results = Vec::with_capacity(group_ids.len());
        for id in group_ids {
            let code = match self.groups.get(id) {
                None => error::GROUP_ID_NOT_FOUND,
                Some(e) => match &e.group {
                    Group::Classic(g) => g.validate_delete_group().err().unwrap_or(error::NONE),
                    Group::Consumer(g) => g.validate_delete_group().err().unwrap_or(error::NONE),
                },
            };
            if code == error::NONE {
                if let Some(mut entry) = self.groups.remove(id) {
                    effects.extend(entry.offsets.delete_all(id).into_iter().map(Effect::Persist));
                    effects.extend(entry.group.tombstones().into_iter().map(Effect::Persist));
                    if let Group::Classic(g) = &mut entry.group {
                        g.shutdown(&mut effects, error::COORDINATOR_NOT_AVAILABLE);
                    }
                }
            }
            results.push(DeletableGroupResult {
                group_id: id.clone(),
                error_code: code,
            });
        }
        Outcome {
            response: results,
            effects,
        }
    }

    // --- offsets ------------------------------------------------------------------

    /// OffsetCommit (non transactional).
    pub fn commit_offsets(&mut self, req: &OffsetCommitRequest, now_ms: i64) -> Outcome<OffsetCommitResponse> {
        let fail = |code| Outcome {
            response: OffsetCommitResponse::error(req, code),
            effects: Vec::new(),
        };
        if !self.groups.contains_key(&req.group_id) {
            if req.generation_id_or_member_epoch < 0 {
                // A "simple" group: offsets only, no group management.
                self.groups.insert(
                    req.group_id.clone(),
                    GroupEntry {
                        group: Group::Classic(ClassicGroup::new(&req.group_id, now_ms)),
                        offsets: OffsetStore::default(),
                    },
                );
            } else if req.api_version >= 9 {
                return fail(error::GROUP_ID_NOT_FOUND);
            } else {
                return fail(error::ILLEGAL_GENERATION);
            }
        }
        let Some(entry) = self.groups.get_mut(&req.group_id) else {
            return fail(error::UNKNOWN_SERVER_ERROR);
        };
        if let Err(code) = entry.group.policy().validate_offset_commit(
            &req.member_id,
            req.group_instance_id.as_deref(),
            req.generation_id_or_member_epoch,
            req.api_version,
        ) {
            return fail(code);
        }
        if let Group::Classic(g) = &mut entry.group {
            g.on_offset_commit(&req.member_id, now_ms);
        }
        let (response, records) = entry.offsets.commit(req, now_ms, self.config.offset_metadata_max_bytes);
        Outcome {
            response,
            effects: records.into_iter().map(Effect::Persist).collect(),
        }
    }

    /// OffsetFetch for one group (`topics: None` fetches everything).
    pub fn fetch_offsets(&self, req: &OffsetFetchRequest) -> OffsetFetchResponse {
        let Some(entry) = self.groups.get(&req.group_id) else {
            return OffsetStore::fetch_unknown_group(req);
        };
        match entry
            .group
            .policy()
            .validate_offset_fetch(req.member_id.as_deref(), req.member_epoch)
        {
            Ok(()) => entry.offsets.fetch(req),
            Err(error::GROUP_ID_NOT_FOUND) => OffsetStore::fetch_unknown_group(req),
            Err(code) => OffsetFetchResponse {
                group_id: req.group_id.clone(),
                error_code: code,
                topics: Vec::new(),
            },
        }
    }

    /// OffsetDelete.
    pub fn delete_offsets(&mut self, req: &OffsetDeleteRequest) -> Outcome<OffsetDeleteResponse> {
        let fail = |code| Outcome {
            response: OffsetDeleteResponse {
                error_code: code,
                topics: Vec::new(),
            },
            effects: Vec::new(),
        };
        if req.group_id.is_empty() {
            return fail(error::INVALID_GROUP_ID);
        }
        let Some(entry) = self.groups.get_mut(&req.group_id) else {
            return fail(error::GROUP_ID_NOT_FOUND);
        };
        if let Err(code) = entry.group.policy().validate_offset_delete() {
            return fail(code);
        }
        let group = &entry.group;
        let (response, records) = entry.offsets.delete(req, &|t| group.policy().is_subscribed_to_topic(t));
        Outcome {
            response,
            effects: records.into_iter().map(Effect::Persist).collect(),
        }
    }

    // --- timers -------------------------------------------------------------------

    /// The earliest instant at which [`GroupCoordinatorState::poll`] has work.
    pub fn next_deadline(&self) -> Option<i64> {
        self.groups
            .values()
            .filter_map(|e| e.group.next_deadline())
            .chain(std::iter::once(self.next_cleanup_ms))
            .min()
    }

    /// Fires due timers (rebalance / session / sync timeouts, offset
    /// expiration) and returns their effects.
    pub fn poll(&mut self, now_ms: i64, topics: &dyn TopicLookup) -> Vec<Effect> {
        let mut effects = Vec::new();
        for (id, entry) in self.groups.iter_mut() {
            if entry.group.next_deadline().is_none_or(|d| d > now_ms) {
                continue;
            }
            match &mut entry.group {
                Group::Classic(g) => {
                    let mut ctx = ClassicCtx {
                        config: &self.config.classic,
                        now_ms,
                        ids: self.ids.as_mut(),
                        effects: &mut effects,
                    };
                    g.poll(&mut ctx);
                }
                Group::Consumer(g) => {
                    let mut ctx = ConsumerCtx {
                        config: self.consumer_overrides.get(id).unwrap_or(&self.config.consumer),
                        now_ms,
                        ids: self.ids.as_mut(),
                        topics,
                        effects: &mut effects,
                    };
                    g.poll(&mut ctx);
                }
            }
        }
        if now_ms >= self.next_cleanup_ms {
            self.cleanup_group_metadata(now_ms, &mut effects);
            self.next_cleanup_ms = now_ms.saturating_add(self.config.offsets_retention_check_interval_ms.max(1));
        }
        effects
    }

    /// Kafka's periodic `cleanupGroupMetadata`: expire offsets, then delete
    /// empty groups that have no offsets left.
    fn cleanup_group_metadata(&mut self, now_ms: i64, effects: &mut Vec<Effect>) {
        let retention = self.config.offsets_retention_ms;
        let mut dead = Vec::new();
        for (id, entry) in self.groups.iter_mut() {
            let group = &entry.group;
            let policy = group.policy();
            let (records, all_expired) = entry
                .offsets
                .expire(id, policy.expiration_base(), retention, now_ms, &|t| {
                    policy.is_subscribed_to_topic(t)
                });
            effects.extend(records.into_iter().map(Effect::Persist));
            if all_expired && group.is_empty() {
                dead.push(id.clone());
            }
        }
        for id in dead {
            if let Some(entry) = self.groups.remove(&id) {
                effects.extend(entry.group.tombstones().into_iter().map(Effect::Persist));
            }
        }
    }

    /// Topics were deleted: their committed offsets are removed from every
    /// group (Kafka's `onPartitionsDeleted`), and an empty group left without
    /// offsets goes away. Returns the tombstones to write.
    pub fn on_topics_deleted(&mut self, topics: &[String]) -> Vec<Effect> {
        let mut effects = Vec::new();
        let mut dead = Vec::new();
        for (id, entry) in self.groups.iter_mut() {
            let records = entry.offsets.remove_topics(id, &|t| topics.iter().any(|d| d == t));
            if records.is_empty() {
                continue;
            }
            effects.extend(records.into_iter().map(Effect::Persist));
            if entry.offsets.is_empty() && entry.group.is_empty() {
                dead.push(id.clone());
            }
        }
        for id in dead {
            if let Some(entry) = self.groups.remove(&id) {
                effects.extend(entry.group.tombstones().into_iter().map(Effect::Persist));
            }
        }
        effects
    }

    // --- loading ------------------------------------------------------------------

    /// Applies an encoded record read from `__consumer_offsets` while loading.
    /// Unknown record types (other group types) are ignored.
    pub fn replay_bytes(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), RecordError> {
        match Record::decode(key, value) {
            Ok(r) => {
                self.replay(&r);
                Ok(())
            }
            Err(RecordError::UnknownRecordType(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Applies one record while loading (the last value per key wins,
    /// tombstones delete). Call [`GroupCoordinatorState::on_loaded`] after
    /// the last record.
    pub fn replay(&mut self, record: &Record) {
        let group_id = record.key.group_id().to_string();
        match (&record.key, &record.value) {
            (RecordKey::OffsetCommit { topic, partition, .. }, Some(RecordValue::OffsetCommit(v))) => {
                let entry = self.entry_or_simple(&group_id);
                entry
                    .offsets
                    .put(topic, *partition, offsets::OffsetAndMetadata::from_value(v));
            }
            (RecordKey::OffsetCommit { topic, partition, .. }, None) => {
                if let Some(entry) = self.groups.get_mut(&group_id) {
                    entry.offsets.remove(topic, *partition);
                }
            }
            (RecordKey::GroupMetadata { .. }, Some(RecordValue::GroupMetadata(v))) => {
                let g = ClassicGroup::from_record(&group_id, v);
                self.entry_or_simple(&group_id).group = Group::Classic(g);
            }
            (RecordKey::GroupMetadata { .. }, None) | (RecordKey::ConsumerGroupMetadata { .. }, None) => {
                self.remove_replayed_group(&group_id)
            }
            (key, value) => {
                let entry = self.entry_or_simple(&group_id);
                if !matches!(entry.group, Group::Consumer(_)) {
                    entry.group = Group::Consumer(ConsumerGroup::new(&group_id));
                }
                if let Group::Consumer(g) = &mut entry.group {
                    g.replay(key, value.as_ref());
                }
            }
        }
    }

    fn entry_or_simple(&mut self, group_id: &str) -> &mut GroupEntry {
        self.groups.entry(group_id.to_string()).or_insert_with(|| GroupEntry {
            group: Group::Classic(ClassicGroup::new(group_id, -1)),
            offsets: OffsetStore::default(),
        })
    }

    fn remove_replayed_group(&mut self, group_id: &str) {
        let keep_offsets = self.groups.get(group_id).is_some_and(|e| !e.offsets.is_empty());
        if keep_offsets {
            if let Some(e) = self.groups.get_mut(group_id) {
                e.group = Group::Classic(ClassicGroup::new(group_id, -1));
            }
        } else {
            self.groups.remove(group_id);
        }
    }

    /// Arms the timers of every loaded group (Kafka's `onLoaded`).
    pub fn on_loaded(&mut self, now_ms: i64) -> Vec<Effect> {
        let mut effects = Vec::new();
        for (id, entry) in self.groups.iter_mut() {
            match &mut entry.group {
                Group::Classic(g) => {
                    let mut ctx = ClassicCtx {
                        config: &self.config.classic,
                        now_ms,
                        ids: self.ids.as_mut(),
                        effects: &mut effects,
                    };
                    g.on_loaded(&mut ctx);
                }
                Group::Consumer(g) => {
                    g.on_loaded(now_ms, self.consumer_overrides.get(id).unwrap_or(&self.config.consumer))
                }
            }
        }
        self.next_cleanup_ms = now_ms.saturating_add(self.config.offsets_retention_check_interval_ms.max(1));
        effects
    }

    /// Drops every group (the shard lost the partition): parked requests are
    /// answered with NOT_COORDINATOR.
    pub fn unload(&mut self) -> Vec<Effect> {
        let mut effects = Vec::new();
        for entry in self.groups.values_mut() {
            if let Group::Classic(g) = &mut entry.group {
                g.shutdown(&mut effects, error::NOT_COORDINATOR);
            }
        }
        self.groups.clear();
        effects
    }
}

#[cfg(test)]
mod tests;
