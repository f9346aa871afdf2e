//! The async shell around the consumer group state machines ([`crate::group`]).
//!
//! Every group belongs to one `__consumer_offsets` partition
//! ([`partition_for_group`]) and is coordinated by the shard owning that
//! partition. That shard keeps one [`GroupCoordinatorState`] for all of its
//! groups and drives it:
//!
//! * requests arrive as [`GroupRequest`]s (routed over the mesh like
//!   partition requests); the state machine runs synchronously when the
//!   request is handled, so requests keep their arrival order;
//! * the effects of each call are executed as one batch: the records are
//!   appended to the group's offsets partition through the produce path
//!   (validated, staged, fsynced by the group-commit loop) and only once they
//!   are durable are the batch's responses released: the caller's own reply
//!   and any parked JoinGroup/SyncGroup completed by the call. A failed write
//!   answers the batch with NOT_COORDINATOR and reloads the shard's groups
//!   from the log (the in-memory state got ahead of it);
//! * parked JoinGroup/SyncGroup requests wait on a oneshot keyed by their
//!   token;
//! * one task per shard ([`run`]) creates the internal topic (shard 0),
//!   loads the groups by replaying the shard's offsets partitions, and then
//!   sleeps until the state's next deadline (or until a request moves it
//!   earlier) to call `poll`: rebalance, session and sync timeouts and
//!   offset expiration.

use crate::io::rand::HashMap;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use futures::FutureExt;

use crate::config::BrokerConfig;
use crate::group::assignor::ServerAssignor;
use crate::group::classic::{
    DescribedGroup, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use crate::group::consumer::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DescribedConsumerGroup};
use crate::group::offsets::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse,
};
use crate::group::records::{partition_for_group, Record};
use crate::group::{
    DeletableGroupResult, Effect, GroupConfig, GroupConfigOverrides, GroupCoordinatorState, ListedGroup, RandomIds,
    RequestToken, TopicId, TopicInfo, TopicLookup,
};
use crate::io::sync::{oneshot, OneshotReceiver, OneshotSender};
use crate::io::time::{now_ms, sleep, timeout};
use crate::metadata::controller::CreateTopic;
use crate::metadata::{ClusterMeta, OFFSETS_TOPIC};
use crate::protocol::error as ec;
use crate::protocol::error::{self as gerr, ApiError, ErrorCode};
use crate::record;
use crate::routing::{ControllerOp, ProducePart, ShardRequest, ShardResponse};

use super::{ops, PartitionRef, Shard};

/// How long an append to `__consumer_offsets` may take to become durable.
const WRITE_TIMEOUT_MS: i32 = 30_000;
/// Bytes read per fetch while loading.
const LOAD_READ_BYTES: usize = 4 << 20;
/// Pause before retrying a failed topic creation or load.
const RETRY_DELAY: Duration = Duration::from_millis(500);
/// Segment size of the internal topic: Kafka's `offsets.topic.segment.bytes`
/// default (100 MiB), small so that the cleaner can compact all but the
/// newest segment.
const OFFSETS_SEGMENT_BYTES: i64 = 104_857_600;

/// `offsets.topic.segment.bytes` (at least 1 MiB).
fn offsets_segment_bytes(shard: &Shard) -> i64 {
    shard
        .config
        .properties
        .get("offsets.topic.segment.bytes")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(OFFSETS_SEGMENT_BYTES)
        .max(1 << 20)
}

/// `offsets.topic.compression.codec` (Kafka's codec ids: 0 none, 1 gzip,
/// 2 snappy, 3 lz4, 4 zstd): the codec of the batches the coordinator
/// writes.
fn offsets_codec(shard: &Shard) -> record::Compression {
    shard
        .config
        .properties
        .get("offsets.topic.compression.codec")
        .and_then(|v| v.trim().parse::<i16>().ok())
        .and_then(record::Compression::from_id)
        .unwrap_or(record::Compression::None)
}

/// A group request for the coordinating shard.
pub enum GroupRequest {
    Join(JoinGroupRequest),
    Sync(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    Leave(LeaveGroupRequest),
    /// DescribeGroups for these ids (all coordinated by the target shard).
    Describe(Vec<String>),
    /// ListGroups of the target shard.
    List {
        states: Vec<String>,
        types: Vec<String>,
    },
    Delete(Vec<String>),
    OffsetCommit(OffsetCommitRequest),
    /// One request per group (OffsetFetch v8+ batches groups).
    OffsetFetch(Vec<OffsetFetchRequest>),
    OffsetDelete(OffsetDeleteRequest),
    ConsumerHeartbeat(ConsumerGroupHeartbeatRequest),
    ConsumerDescribe(Vec<String>),
}

/// The reply to a [`GroupRequest`], in the same shape.
pub enum GroupResponse {
    Join(JoinGroupResponse),
    Sync(SyncGroupResponse),
    Heartbeat(HeartbeatResponse),
    Leave(LeaveGroupResponse),
    /// Groups that do not exist (or are not classic) have
    /// GROUP_ID_NOT_FOUND; older DescribeGroups versions report them Dead.
    Describe(Vec<DescribedGroup>),
    List(Result<Vec<ListedGroup>, ErrorCode>),
    Delete(Vec<DeletableGroupResult>),
    OffsetCommit(OffsetCommitResponse),
    OffsetFetch(Vec<OffsetFetchResponse>),
    OffsetDelete(OffsetDeleteResponse),
    ConsumerHeartbeat(ConsumerGroupHeartbeatResponse),
    ConsumerDescribe(Vec<DescribedConsumerGroup>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    /// Not loaded yet, or reloading after a failed write.
    Loading,
    Active,
}

/// One shard's group coordinator.
pub struct Groups {
    state: RefCell<GroupCoordinatorState>,
    status: Cell<Status>,
    /// Set when a failed write requires reloading from the log.
    reload_wanted: Cell<bool>,
    joins: RefCell<HashMap<RequestToken, OneshotSender<JoinGroupResponse>>>,
    syncs: RefCell<HashMap<RequestToken, OneshotSender<SyncGroupResponse>>>,
    next_token: Cell<RequestToken>,
    /// Wakes the timer task (earlier deadline, reload). A oneshot rather
    /// than a `Notify`: a `Notify` listener polled on every timer round keeps
    /// one more waker per poll until the next notification (glommio wakers
    /// of one task do not compare equal with `will_wake`), which a long
    /// idle stretch would pile up without bound.
    wake: RefCell<Option<OneshotSender<()>>>,
    /// The deadline the timer task sleeps until.
    timer_deadline: Cell<i64>,
}

fn prop<T: std::str::FromStr>(cfg: &BrokerConfig, name: &str, default: T) -> T {
    cfg.properties
        .get(name)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// The coordinator settings from the broker's Kafka properties.
pub fn group_config(cfg: &BrokerConfig) -> GroupConfig {
    let mut g = GroupConfig::default();
    let c = &mut g.classic;
    c.min_session_timeout_ms = prop(cfg, "group.min.session.timeout.ms", c.min_session_timeout_ms);
    c.max_session_timeout_ms = prop(cfg, "group.max.session.timeout.ms", c.max_session_timeout_ms);
    c.initial_rebalance_delay_ms = prop(cfg, "group.initial.rebalance.delay.ms", c.initial_rebalance_delay_ms).max(0);
    let classic_max: i64 = prop(
        cfg,
        "group.classic.max.size",
        prop(cfg, "group.max.size", i64::from(i32::MAX)),
    );
    c.max_size = usize::try_from(classic_max.max(1)).unwrap_or(usize::MAX);
    let k = &mut g.consumer;
    k.session_timeout_ms = prop(cfg, "group.consumer.session.timeout.ms", k.session_timeout_ms).max(1);
    k.heartbeat_interval_ms = prop(cfg, "group.consumer.heartbeat.interval.ms", k.heartbeat_interval_ms).max(1);
    let consumer_max: i64 = prop(cfg, "group.consumer.max.size", i64::from(i32::MAX));
    k.max_size = usize::try_from(consumer_max.max(1)).unwrap_or(usize::MAX);
    if let Some(list) = cfg.properties.get("group.consumer.assignors") {
        let assignors: Vec<ServerAssignor> = list
            .split(',')
            .filter_map(|a| {
                let a = a.trim();
                // Kafka accepts class names too.
                let short = a.rsplit('.').next().unwrap_or(a);
                ServerAssignor::from_name(a).or(match short {
                    "UniformAssignor" => Some(ServerAssignor::Uniform),
                    "RangeAssignor" => Some(ServerAssignor::Range),
                    _ => None,
                })
            })
            .collect();
        if assignors.is_empty() {
            tracing::warn!("group.consumer.assignors = {list:?} names no known assignor; using uniform, range");
        } else {
            k.assignors = assignors;
        }
    }
    let retention_min: i64 = prop(cfg, "offsets.retention.minutes", 10_080i64);
    g.offsets_retention_ms = retention_min.max(1).saturating_mul(60_000);
    g.offsets_retention_check_interval_ms = prop(
        cfg,
        "offsets.retention.check.interval.ms",
        g.offsets_retention_check_interval_ms,
    )
    .max(1);
    g.offset_metadata_max_bytes = prop(cfg, "offset.metadata.max.bytes", g.offset_metadata_max_bytes);
    g
}

impl Groups {
    pub fn new(cfg: &BrokerConfig) -> Self {
        Groups {
            state: RefCell::new(GroupCoordinatorState::new(
                group_config(cfg),
                Box::new(RandomIds),
                now_ms(),
            )),
            status: Cell::new(Status::Loading),
            reload_wanted: Cell::new(false),
            joins: RefCell::new(HashMap::default()),
            syncs: RefCell::new(HashMap::default()),
            next_token: Cell::new(1),
            wake: RefCell::new(None),
            timer_deadline: Cell::new(i64::MAX),
        }
    }

    /// Whether this shard's groups are loaded and served.
    pub fn is_active(&self) -> bool {
        self.status.get() == Status::Active
    }

    fn token(&self) -> RequestToken {
        let t = self.next_token.get();
        self.next_token.set(t.wrapping_add(1));
        t
    }

    fn wake_timer(&self) {
        let tx = self.wake.borrow_mut().take();
        if let Some(tx) = tx {
            tx.send(());
        }
    }

    /// A fresh wake-up signal for the timer task's next wait.
    fn timer_signal(&self) -> OneshotReceiver<()> {
        let (tx, rx) = oneshot();
        *self.wake.borrow_mut() = Some(tx);
        rx
    }

    /// After a call that may have moved the next deadline earlier.
    fn rearm(&self) {
        if let Some(d) = self.state.borrow().next_deadline() {
            if d < self.timer_deadline.get() {
                self.wake_timer();
            }
        }
    }

    /// Release parked JoinGroup/SyncGroup responses, replaced by `error`
    /// when the batch that produced them could not be written.
    fn deliver(&self, completions: Vec<Effect>, error: Option<ErrorCode>) {
        for c in completions {
            match c {
                Effect::CompleteJoin { token, response } => {
                    let response = match error {
                        Some(code) => JoinGroupResponse::error(code, response.member_id),
                        None => response,
                    };
                    if let Some(tx) = self.joins.borrow_mut().remove(&token) {
                        tx.send(response);
                    }
                }
                Effect::CompleteSync { token, response } => {
                    let response = match error {
                        Some(code) => SyncGroupResponse::error(code),
                        None => response,
                    };
                    if let Some(tx) = self.syncs.borrow_mut().remove(&token) {
                        tx.send(response);
                    }
                }
                Effect::Persist(_) => {}
            }
        }
    }

    /// A write failed: the in-memory state is ahead of the log. Answer every
    /// parked request with NOT_COORDINATOR and have the group task reload.
    fn fail(&self) {
        if self.status.get() != Status::Active {
            return;
        }
        tracing::warn!("a __consumer_offsets write failed: reloading this shard's groups from the log");
        self.status.set(Status::Loading);
        self.reload_wanted.set(true);
        let effects = self.state.borrow_mut().unload();
        self.deliver(effects, None);
        self.wake_timer();
    }
}

/// Topic metadata for the KIP-848 coordinator, from the shard's metadata copy.
struct MetaTopics<'a>(&'a ClusterMeta);

impl TopicLookup for MetaTopics<'_> {
    fn topic(&self, name: &str) -> Option<TopicInfo> {
        let t = self.0.topic(name)?;
        Some(TopicInfo {
            topic_id: *t.id.as_bytes(),
            partitions: i32::try_from(t.partitions.len()).unwrap_or(i32::MAX),
        })
    }

    fn topic_name(&self, topic_id: &TopicId) -> Option<String> {
        self.0
            .topic_by_id(&uuid::Uuid::from_bytes(*topic_id))
            .map(|t| t.name.clone())
    }
}

/// Number of `__consumer_offsets` partitions, if the topic exists.
pub fn offsets_partitions(shard: &Shard) -> Option<i32> {
    let meta = shard.meta.borrow();
    let t = meta.topic(OFFSETS_TOPIC)?;
    i32::try_from(t.partitions.len()).ok().filter(|n| *n > 0)
}

/// The shard coordinating `group_id`, or the error to answer with
/// (COORDINATOR_NOT_AVAILABLE while the internal topic does not exist).
pub fn coordinator_shard(shard: &Shard, group_id: &str) -> Result<usize, ErrorCode> {
    let n = offsets_partitions(shard).ok_or(gerr::COORDINATOR_NOT_AVAILABLE)?;
    let p = partition_for_group(group_id, n);
    shard
        .meta
        .borrow()
        .owner(OFFSETS_TOPIC, p)
        .ok_or(gerr::COORDINATOR_NOT_AVAILABLE)
}

/// Send a group request to its coordinating shard. Completes once the
/// request is queued there (keeping per-connection order); the returned
/// future yields the reply (None if the shard went away).
pub async fn send(
    shard: &Rc<Shard>,
    target: usize,
    req: GroupRequest,
) -> LocalBoxFuture<'static, Option<GroupResponse>> {
    let reply = shard.dispatch(target, ShardRequest::Group(req)).await;
    async move {
        match reply.await {
            Some(ShardResponse::Group(r)) => Some(r),
            _ => None,
        }
    }
    .boxed_local()
}

/// Route a request about one group to its coordinating shard (queued there
/// before this returns, keeping per-connection order). The future yields
/// the reply picked by `unwrap`, or `on_error(code)` when the group cannot
/// be routed or the shard did not answer.
pub async fn route_one<T: 'static>(
    shard: &Rc<Shard>,
    group_id: &str,
    req: GroupRequest,
    unwrap: impl FnOnce(GroupResponse) -> Option<T> + 'static,
    on_error: impl FnOnce(ErrorCode) -> T + 'static,
) -> LocalBoxFuture<'static, T> {
    let target = match coordinator_shard(shard, group_id) {
        Ok(t) => t,
        Err(code) => return ready(on_error(code)),
    };
    let reply = send(shard, target, req).await;
    async move {
        match reply.await.and_then(unwrap) {
            Some(r) => r,
            None => on_error(gerr::COORDINATOR_NOT_AVAILABLE),
        }
    }
    .boxed_local()
}

/// Route a request about several groups: one `request(batch)` per
/// coordinating shard, all queued before this returns (keeping
/// per-connection order). The future yields one answer per id, in order:
/// the shard's, picked by `unwrap`, or `on_error(id, code)` when the group
/// cannot be routed or its shard did not answer for it.
pub async fn route_many<T: 'static>(
    shard: &Rc<Shard>,
    ids: Vec<String>,
    request: impl Fn(Vec<String>) -> GroupRequest,
    unwrap: impl Fn(GroupResponse) -> Option<Vec<T>> + 'static,
    on_error: impl Fn(&str, ErrorCode) -> T + 'static,
) -> LocalBoxFuture<'static, Vec<T>> {
    let (routed, errors) = split_by_shard(shard, &ids);
    let mut out: Vec<Option<T>> = ids.iter().map(|_| None).collect();
    for (i, code) in errors {
        out[i] = Some(on_error(&ids[i], code));
    }
    let mut waits = Vec::with_capacity(routed.len());
    for (target, idx) in routed {
        let batch = idx.iter().map(|&i| ids[i].clone()).collect();
        waits.push((idx, send(shard, target, request(batch)).await));
    }
    async move {
        for (idx, w) in waits {
            let mut answers = w.await.and_then(&unwrap).unwrap_or_default().into_iter();
            for i in idx {
                out[i] = answers.next();
            }
        }
        out.into_iter()
            .zip(&ids)
            .map(|(answer, id)| answer.unwrap_or_else(|| on_error(id, gerr::COORDINATOR_NOT_AVAILABLE)))
            .collect()
    }
    .boxed_local()
}

/// Indexes of group ids by coordinating shard, and the indexes that cannot
/// be routed with their error.
pub type SplitGroups = (BTreeMap<usize, Vec<usize>>, Vec<(usize, ErrorCode)>);

/// Group ids split by coordinating shard.
pub fn split_by_shard(shard: &Shard, ids: &[String]) -> SplitGroups {
    let mut routed: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut errors = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        match coordinator_shard(shard, id) {
            Ok(s) => routed.entry(s).or_default().push(i),
            Err(code) => errors.push((i, code)),
        }
    }
    (routed, errors)
}

/// Whether this shard may serve requests for `group_id` now.
fn check(shard: &Shard, group_id: &str) -> Result<(), ErrorCode> {
    if !shard.groups.is_active() {
        return Err(gerr::COORDINATOR_LOAD_IN_PROGRESS);
    }
    match coordinator_shard(shard, group_id)? {
        s if s == shard.id => Ok(()),
        _ => Err(gerr::NOT_COORDINATOR),
    }
}

fn ready<T: 'static>(v: T) -> LocalBoxFuture<'static, T> {
    futures::future::ready(v).boxed_local()
}

/// Map the error of a failed `__consumer_offsets` append to what the
/// requests of that batch are told.
fn write_error(code: i16) -> ErrorCode {
    match code {
        ec::MESSAGE_TOO_LARGE | ec::RECORD_LIST_TOO_LARGE => gerr::UNKNOWN_SERVER_ERROR,
        _ => gerr::NOT_COORDINATOR,
    }
}

/// Execute one batch of effects: append the records (now, in order), then
/// once they are durable release the batch's completions. The returned
/// future yields the write's outcome; the work itself runs as a detached
/// task so parked requests of other clients are answered even if the
/// caller goes away.
fn execute(shard: &Rc<Shard>, effects: Vec<Effect>) -> LocalBoxFuture<'static, Result<(), ErrorCode>> {
    let (records, completions): (Vec<Effect>, Vec<Effect>) =
        effects.into_iter().partition(|e| matches!(e, Effect::Persist(_)));
    let groups = &shard.groups;
    if records.is_empty() {
        groups.deliver(completions, None);
        return ready(Ok(()));
    }
    let records: Vec<Record> = records
        .into_iter()
        .filter_map(|e| match e {
            Effect::Persist(r) => Some(r),
            _ => None,
        })
        .collect();
    let parts = match build_parts(shard, &records) {
        Ok(p) => p,
        Err(code) => {
            groups.deliver(completions, Some(code));
            groups.fail();
            return ready(Err(code));
        }
    };
    let written = ops::produce(shard, parts, -1, WRITE_TIMEOUT_MS);
    let (tx, rx) = oneshot();
    let shard = shard.clone();
    crate::io::executor::spawn_detached(async move {
        let results = written.await;
        let failed = results.iter().find(|r| r.error != ec::NONE).map(|r| {
            tracing::warn!(
                error = r.error,
                "__consumer_offsets append failed: {}",
                r.message.as_deref().unwrap_or("")
            );
            write_error(r.error)
        });
        shard.groups.deliver(completions, failed);
        if failed.is_some() {
            shard.groups.fail();
        }
        tx.send(failed.map_or(Ok(()), Err));
    });
    async move { rx.await.unwrap_or(Err(gerr::NOT_COORDINATOR)) }.boxed_local()
}

/// Encode records into produce payloads, one per offsets partition (several
/// batches when they exceed the partition's `max.message.bytes`).
fn build_parts(shard: &Shard, records: &[Record]) -> Result<Vec<ProducePart>, ErrorCode> {
    let n = offsets_partitions(shard).ok_or(gerr::NOT_COORDINATOR)?;
    let mut by_partition: BTreeMap<i32, Vec<(Bytes, Option<Bytes>)>> = BTreeMap::new();
    for r in records {
        let p = partition_for_group(r.key.group_id(), n);
        by_partition.entry(p).or_default().push(r.encode());
    }
    let now = now_ms();
    let mut parts = Vec::with_capacity(by_partition.len());
    for (p, encoded) in by_partition {
        let max = shard
            .partition(OFFSETS_TOPIC, p)
            .map(|part| part.log.borrow().config.max_message_bytes)
            .ok_or(gerr::NOT_COORDINATOR)?;
        let payload = encode_payload(&encoded, max, now, offsets_codec(shard));
        let frame_len = payload.len();
        parts.push(ProducePart {
            topic: OFFSETS_TOPIC.to_string(),
            partition: p,
            records: Bytes::from(payload),
            frame_len,
            validated: None,
        });
    }
    Ok(parts)
}

/// One offsets partition's encoded records as a produce payload: batches of
/// at most about `max` bytes (`max.message.bytes`), timestamped `now`.
fn encode_payload(encoded: &[(Bytes, Option<Bytes>)], max: usize, now: i64, codec: record::Compression) -> Vec<u8> {
    let mut payload = Vec::new();
    let mut chunk: Vec<record::Record<'_>> = Vec::new();
    let mut chunk_bytes = 0usize;
    for (k, v) in encoded {
        let size = k.len() + v.as_ref().map_or(0, Bytes::len) + 32;
        if !chunk.is_empty() && chunk_bytes + size + 128 > max {
            payload.extend_from_slice(&record::build_batch(0, now, codec, &chunk));
            chunk.clear();
            chunk_bytes = 0;
        }
        chunk.push(record::Record {
            key: Some(k),
            value: v.as_deref(),
            headers: &[],
            timestamp_delta: 0,
        });
        chunk_bytes += size;
    }
    if !chunk.is_empty() {
        payload.extend_from_slice(&record::build_batch(0, now, codec, &chunk));
    }
    payload
}

/// Answer a response-bearing call once its effects are durable; on a failed
/// write answer `on_error(code)` instead.
fn after_write<R: 'static>(
    shard: &Rc<Shard>,
    effects: Vec<Effect>,
    response: R,
    on_error: impl FnOnce(R, ErrorCode) -> R + 'static,
) -> LocalBoxFuture<'static, R> {
    let written = execute(shard, effects);
    shard.groups.rearm();
    async move {
        match written.await {
            Ok(()) => response,
            Err(code) => on_error(response, code),
        }
    }
    .boxed_local()
}

/// Run a call whose reply is parked (JoinGroup, SyncGroup): `call` gets a
/// fresh token, under which the reply's sender waits in `waiting` until a
/// completion releases it; its effects are written now. The future yields
/// the reply, or `lost()` if its sender was dropped unanswered.
fn parked<R: 'static>(
    shard: &Rc<Shard>,
    waiting: &RefCell<HashMap<RequestToken, OneshotSender<R>>>,
    call: impl FnOnce(&mut GroupCoordinatorState, RequestToken) -> Vec<Effect>,
    lost: impl FnOnce() -> R + 'static,
) -> LocalBoxFuture<'static, R> {
    let groups = &shard.groups;
    let token = groups.token();
    let (tx, rx) = oneshot();
    waiting.borrow_mut().insert(token, tx);
    let effects = call(&mut groups.state.borrow_mut(), token);
    let written = execute(shard, effects);
    groups.rearm();
    async move {
        let _ = written.await;
        rx.await.unwrap_or_else(lost)
    }
    .boxed_local()
}

/// Run a group request on this (the coordinating) shard. The state machine
/// runs before this returns; the future completes the request.
pub fn handle(shard: &Rc<Shard>, req: GroupRequest) -> LocalBoxFuture<'static, GroupResponse> {
    let now = now_ms();
    let groups = &shard.groups;
    match req {
        GroupRequest::Join(r) => {
            if let Err(code) = check(shard, &r.group_id) {
                return ready(GroupResponse::Join(JoinGroupResponse::error(code, r.member_id)));
            }
            parked(
                shard,
                &groups.joins,
                |state, token| state.join_group(token, r, now),
                || JoinGroupResponse::error(gerr::NOT_COORDINATOR, ""),
            )
            .map(GroupResponse::Join)
            .boxed_local()
        }
        GroupRequest::Sync(r) => {
            if let Err(code) = check(shard, &r.group_id) {
                return ready(GroupResponse::Sync(SyncGroupResponse::error(code)));
            }
            parked(
                shard,
                &groups.syncs,
                |state, token| state.sync_group(token, r, now),
                || SyncGroupResponse::error(gerr::NOT_COORDINATOR),
            )
            .map(GroupResponse::Sync)
            .boxed_local()
        }
        GroupRequest::Heartbeat(r) => {
            if let Err(code) = check(shard, &r.group_id) {
                return ready(GroupResponse::Heartbeat(HeartbeatResponse { error_code: code }));
            }
            let resp = groups.state.borrow_mut().heartbeat(&r, now);
            groups.rearm();
            ready(GroupResponse::Heartbeat(resp))
        }
        GroupRequest::Leave(r) => {
            let failed = |code| LeaveGroupResponse {
                error_code: code,
                members: Vec::new(),
            };
            if let Err(code) = check(shard, &r.group_id) {
                return ready(GroupResponse::Leave(failed(code)));
            }
            let outcome = groups.state.borrow_mut().leave_group(&r, now);
            after_write(shard, outcome.effects, outcome.response, move |_, code| failed(code))
                .map(GroupResponse::Leave)
                .boxed_local()
        }
        GroupRequest::Describe(ids) => {
            let state = groups.state.borrow();
            let out = ids
                .iter()
                .map(|id| match check(shard, id) {
                    Err(code) => DescribedGroup {
                        error_code: code,
                        ..DescribedGroup::dead(id)
                    },
                    Ok(()) if state.classic_group(id).is_none() => DescribedGroup {
                        error_code: gerr::GROUP_ID_NOT_FOUND,
                        ..DescribedGroup::dead(id)
                    },
                    Ok(()) => state
                        .describe_groups(std::slice::from_ref(id))
                        .pop()
                        .unwrap_or_else(|| DescribedGroup::dead(id)),
                })
                .collect();
            ready(GroupResponse::Describe(out))
        }
        GroupRequest::List { states, types } => {
            if !groups.is_active() {
                return ready(GroupResponse::List(Err(gerr::COORDINATOR_LOAD_IN_PROGRESS)));
            }
            ready(GroupResponse::List(Ok(groups
                .state
                .borrow()
                .list_groups(&states, &types))))
        }
        GroupRequest::Delete(ids) => {
            let mut results: Vec<Option<DeletableGroupResult>> = Vec::with_capacity(ids.len());
            let mut deletable = Vec::new();
            for id in &ids {
                match check(shard, id) {
                    Ok(()) => {
                        results.push(None);
                        deletable.push(id.clone());
                    }
                    Err(code) => results.push(Some(DeletableGroupResult {
                        group_id: id.clone(),
                        error_code: code,
                    })),
                }
            }
            let outcome = groups.state.borrow_mut().delete_groups(&deletable);
            let mut done = outcome.response.into_iter();
            let merged: Vec<DeletableGroupResult> = results
                .into_iter()
                .zip(ids.iter())
                .map(|(r, id)| {
                    r.or_else(|| done.next()).unwrap_or_else(|| DeletableGroupResult {
                        group_id: id.clone(),
                        error_code: gerr::UNKNOWN_SERVER_ERROR,
                    })
                })
                .collect();
            after_write(shard, outcome.effects, merged, |rs, code| {
                rs.into_iter()
                    .map(|r| {
                        if r.error_code == gerr::NONE {
                            DeletableGroupResult { error_code: code, ..r }
                        } else {
                            r
                        }
                    })
                    .collect()
            })
            .map(GroupResponse::Delete)
            .boxed_local()
        }
        GroupRequest::OffsetCommit(r) => {
            if let Err(code) = check(shard, &r.group_id) {
                return ready(GroupResponse::OffsetCommit(OffsetCommitResponse::error(&r, code)));
            }
            let outcome = groups.state.borrow_mut().commit_offsets(&r, now);
            let on_error = move |_: OffsetCommitResponse, code: ErrorCode| {
                let code = if code == gerr::UNKNOWN_SERVER_ERROR {
                    ec::INVALID_COMMIT_OFFSET_SIZE
                } else {
                    code
                };
                OffsetCommitResponse::error(&r, code)
            };
            after_write(shard, outcome.effects, outcome.response, on_error)
                .map(GroupResponse::OffsetCommit)
                .boxed_local()
        }
        GroupRequest::OffsetFetch(reqs) => {
            let state = groups.state.borrow();
            let out = reqs
                .iter()
                .map(|r| match check(shard, &r.group_id) {
                    Err(code) => OffsetFetchResponse {
                        group_id: r.group_id.clone(),
                        error_code: code,
                        topics: Vec::new(),
                    },
                    Ok(()) => state.fetch_offsets(r),
                })
                .collect();
            ready(GroupResponse::OffsetFetch(out))
        }
        GroupRequest::OffsetDelete(r) => {
            let failed = |code| OffsetDeleteResponse {
                error_code: code,
                topics: Vec::new(),
            };
            if let Err(code) = check(shard, &r.group_id) {
                return ready(GroupResponse::OffsetDelete(failed(code)));
            }
            let outcome = groups.state.borrow_mut().delete_offsets(&r);
            after_write(shard, outcome.effects, outcome.response, move |_, code| failed(code))
                .map(GroupResponse::OffsetDelete)
                .boxed_local()
        }
        GroupRequest::ConsumerHeartbeat(r) => {
            if let Err(code) = check(shard, &r.group_id) {
                return ready(GroupResponse::ConsumerHeartbeat(ConsumerGroupHeartbeatResponse::error(
                    ApiError::new(code),
                )));
            }
            let outcome = {
                let meta = shard.meta.borrow();
                groups
                    .state
                    .borrow_mut()
                    .consumer_group_heartbeat(&r, now, &MetaTopics(&meta))
            };
            after_write(shard, outcome.effects, outcome.response, |_, code| {
                ConsumerGroupHeartbeatResponse::error(ApiError::new(code))
            })
            .map(GroupResponse::ConsumerHeartbeat)
            .boxed_local()
        }
        GroupRequest::ConsumerDescribe(ids) => {
            let meta = shard.meta.borrow();
            let state = groups.state.borrow();
            let out = ids
                .iter()
                .map(|id| match check(shard, id) {
                    Err(code) => DescribedConsumerGroup::error(id, ApiError::new(code)),
                    Ok(()) => state
                        .consumer_group_describe(std::slice::from_ref(id), &MetaTopics(&meta))
                        .pop()
                        .unwrap_or_else(|| {
                            DescribedConsumerGroup::error(id, ApiError::new(gerr::UNKNOWN_SERVER_ERROR))
                        }),
                })
                .collect();
            ready(GroupResponse::ConsumerDescribe(out))
        }
    }
}

// --- the per-shard task ------------------------------------------------------------

/// Create `__consumer_offsets` (shard 0, when missing) with Kafka's settings
/// for it: `offsets.topic.num.partitions` partitions, compacted.
async fn ensure_offsets_topic(shard: &Rc<Shard>) -> Result<(), String> {
    if shard.meta.borrow().topic(OFFSETS_TOPIC).is_some() {
        return Ok(());
    }
    let op = ControllerOp::CreateTopics {
        topics: vec![CreateTopic {
            name: OFFSETS_TOPIC.to_string(),
            num_partitions: shard.config.offsets_topic_partitions,
            replication_factor: 1,
            assignments: Vec::new(),
            configs: vec![
                ("cleanup.policy".to_string(), Some("compact".to_string())),
                ("compression.type".to_string(), Some("producer".to_string())),
                (
                    "segment.bytes".to_string(),
                    Some(offsets_segment_bytes(shard).to_string()),
                ),
            ],
        }],
        validate_only: false,
    };
    match shard.dispatch(0, ShardRequest::Controller(op)).await.await {
        Some(ShardResponse::Controller(mut results)) => match results.pop() {
            Some(Ok(_)) => {
                tracing::info!(
                    partitions = shard.config.offsets_topic_partitions,
                    "created {OFFSETS_TOPIC}"
                );
                Ok(())
            }
            Some(Err(e)) if e.code == ec::TOPIC_ALREADY_EXISTS => Ok(()),
            Some(Err(e)) => Err(format!("{} (error {})", e.message(), e.code)),
            None => Err("no result".to_string()),
        },
        _ => Err("controller unavailable".to_string()),
    }
}

/// This shard's `__consumer_offsets` partitions, in partition order.
fn owned_offsets_partitions(shard: &Shard) -> Vec<PartitionRef> {
    let n = offsets_partitions(shard).unwrap_or(0);
    (0..n).filter_map(|p| shard.partition(OFFSETS_TOPIC, p)).collect()
}

/// Rebuild the groups of this shard by replaying its offsets partitions.
async fn load(shard: &Rc<Shard>) -> Result<usize, String> {
    let mut replayed = 0usize;
    for p in owned_offsets_partitions(shard) {
        replayed += load_partition(&p, &shard.groups.state).await?;
    }
    Ok(replayed)
}

/// Replay one offsets partition into `state`, from its log start to its
/// high watermark, read as a fetch reads it: from the read cache (batches
/// handed out as header and body pieces) or from the segment files. Returns
/// the number of records replayed.
async fn load_partition(p: &PartitionRef, state: &RefCell<GroupCoordinatorState>) -> Result<usize, String> {
    // Appends still in flight (from before a failed write) are either
    // made durable or failed first, so the replay sees the final log.
    let (end, rollbacks) = {
        let log = p.log.borrow();
        (log.log_end_offset(), log.rollbacks())
    };
    // A rollback after a full disk drops the appends instead: fine too.
    if let Err(code) = ops::wait_ack(p, rollbacks, end).await {
        if p.log.borrow().is_failed() || code != ec::KAFKA_STORAGE_ERROR {
            return Err(format!("{OFFSETS_TOPIC}-{} is not readable (error {code})", p.index));
        }
    }
    let mut replayed = 0usize;
    let mut offset = p.log.borrow().log_start_offset();
    loop {
        let hwm = p.log.borrow().high_watermark();
        if offset >= hwm {
            break;
        }
        crate::io::yield_if_needed().await;
        let r = ops::read_partition(p, offset, LOAD_READ_BYTES).await;
        if r.error != ec::NONE {
            return Err(format!(
                "reading {OFFSETS_TOPIC}-{} at {offset}: error {}",
                p.index, r.error
            ));
        }
        // Whole batches, however the read handed them out.
        let batches = ops::whole_batches(&r.batches);
        if batches.is_empty() {
            break;
        }
        let before = offset;
        replayed += replay_batches(&mut state.borrow_mut(), p.index, &batches, &mut offset);
        if offset <= before {
            break;
        }
    }
    Ok(replayed)
}

/// Replay the records of `batches` at or after `offset` (advanced past
/// them). A batch that cannot be decoded is skipped with an error log:
/// losing one batch of group state beats never serving the groups again.
fn replay_batches(state: &mut GroupCoordinatorState, partition: i32, batches: &[Bytes], offset: &mut i64) -> usize {
    let mut replayed = 0;
    for batch in batches {
        let Some(h) = record::BatchHeader::parse(batch) else {
            tracing::error!(
                "{OFFSETS_TOPIC}-{partition}: unreadable batch at offset {offset}; skipping the rest of the read"
            );
            return replayed;
        };
        if h.next_offset() <= *offset {
            continue;
        }
        if !h.is_control() {
            match record::decode_records(batch) {
                Ok(records) => {
                    for rec in records {
                        let at = h.base_offset + i64::from(rec.offset_delta);
                        if at < *offset {
                            continue;
                        }
                        let Some(key) = rec.key.as_deref() else {
                            continue;
                        };
                        match state.replay_bytes(key, rec.value.as_deref()) {
                            Ok(()) => replayed += 1,
                            Err(e) => {
                                tracing::warn!(
                                    "{OFFSETS_TOPIC}-{partition} offset {at}: skipping undecodable record: {e:?}"
                                )
                            }
                        }
                    }
                }
                Err(e) => tracing::error!("{OFFSETS_TOPIC}-{partition}: skipping batch at {}: {e}", h.base_offset),
            }
        }
        *offset = h.next_offset();
    }
    replayed
}

/// Topics were deleted: the offsets this shard's groups committed for them
/// are removed (tombstones written), as Kafka does on partition deletion.
pub fn on_topics_deleted(shard: &Rc<Shard>, topics: &[String]) {
    let groups = &shard.groups;
    if !groups.is_active() {
        return;
    }
    let effects = groups.state.borrow_mut().on_topics_deleted(topics);
    if !effects.is_empty() {
        drop(execute(shard, effects));
    }
}

/// A group's dynamic configs, as the state machine takes them.
fn group_overrides(configs: &BTreeMap<String, String>) -> GroupConfigOverrides {
    let get = |k: &str| configs.get(k).and_then(|v| v.trim().parse::<i32>().ok());
    GroupConfigOverrides {
        session_timeout_ms: get("consumer.session.timeout.ms"),
        heartbeat_interval_ms: get("consumer.heartbeat.interval.ms"),
    }
}

/// A group's dynamic configs changed (IncrementalAlterConfigs on a GROUP
/// resource): they apply from its next heartbeat or timer on.
pub fn on_group_configs(shard: &Rc<Shard>, group: &str, configs: &BTreeMap<String, String>) {
    shard
        .groups
        .state
        .borrow_mut()
        .set_group_config(group, group_overrides(configs));
    shard.groups.rearm();
}

/// The group task of a shard: creates the internal topic (shard 0), loads
/// the groups, then fires their timers until shutdown.
pub async fn run(shard: Rc<Shard>) {
    let groups = &shard.groups;
    // 1. The internal topic.
    loop {
        if shard.shutting_down.get() {
            return;
        }
        if shard.id == 0 {
            match ensure_offsets_topic(&shard).await {
                Ok(()) => {}
                Err(e) => tracing::error!("cannot create {OFFSETS_TOPIC}: {e}"),
            }
        }
        if offsets_partitions(&shard).is_some() {
            break;
        }
        sleep(if shard.id == 0 {
            RETRY_DELAY
        } else {
            Duration::from_millis(10)
        })
        .await;
    }
    if let Some(n) = offsets_partitions(&shard) {
        if n != shard.config.offsets_topic_partitions {
            tracing::warn!(
                "{OFFSETS_TOPIC} has {n} partitions but offsets.topic.num.partitions is {}; using {n}",
                shard.config.offsets_topic_partitions
            );
        }
    }
    // Dynamic group configs persisted in the cluster metadata (later
    // changes arrive through `on_group_configs`).
    {
        let meta = shard.meta.borrow();
        let mut state = groups.state.borrow_mut();
        for (group, configs) in &meta.group_configs {
            state.set_group_config(group, group_overrides(configs));
        }
    }
    groups.reload_wanted.set(true);
    // 2. Load, then serve timers; reload after failed writes.
    loop {
        if shard.shutting_down.get() {
            return;
        }
        if groups.reload_wanted.get() {
            let started = crate::io::time::Instant::now();
            match load(&shard).await {
                Ok(records) => {
                    groups.reload_wanted.set(false);
                    let effects = groups.state.borrow_mut().on_loaded(now_ms());
                    groups.status.set(Status::Active);
                    let n = groups.state.borrow().group_ids().count();
                    tracing::info!(
                        shard = shard.id,
                        groups = n,
                        records,
                        ms = started.elapsed().as_millis() as u64,
                        "consumer groups loaded"
                    );
                    drop(execute(&shard, effects));
                }
                Err(e) => {
                    tracing::error!(shard = shard.id, "loading consumer groups failed: {e}; retrying");
                    // Drop what was partially replayed before the next attempt.
                    let effects = groups.state.borrow_mut().unload();
                    groups.deliver(effects, None);
                    let _ = timeout(RETRY_DELAY, groups.timer_signal()).await;
                }
            }
            continue;
        }
        let listener = groups.timer_signal();
        let now = now_ms();
        let deadline = groups.state.borrow().next_deadline().unwrap_or(i64::MAX);
        if deadline <= now {
            let effects = {
                let meta = shard.meta.borrow();
                groups.state.borrow_mut().poll(now, &MetaTopics(&meta))
            };
            drop(execute(&shard, effects));
            crate::io::yield_if_needed().await;
            continue;
        }
        groups.timer_deadline.set(deadline);
        let wait = u64::try_from(deadline.saturating_sub(now))
            .unwrap_or(u64::MAX)
            .min(3_600_000);
        let _ = timeout(Duration::from_millis(wait), listener).await;
        groups.timer_deadline.set(i64::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    fn broker(props: &[(&str, &str)]) -> BrokerConfig {
        let mut b = BrokerConfig::load(&Overrides::default()).expect("default config");
        for (k, v) in props {
            b.properties.insert((*k).to_string(), (*v).to_string());
        }
        b
    }

    #[test]
    fn group_config_follows_kafka_properties() {
        let d = group_config(&broker(&[]));
        assert_eq!(d, GroupConfig::default());
        let g = group_config(&broker(&[
            ("group.initial.rebalance.delay.ms", "0"),
            ("group.min.session.timeout.ms", "1000"),
            ("group.max.size", "7"),
            ("group.consumer.session.timeout.ms", "6000"),
            ("group.consumer.heartbeat.interval.ms", "500"),
            (
                "group.consumer.assignors",
                "range, org.apache.kafka.coordinator.group.assignor.UniformAssignor",
            ),
            ("offsets.retention.minutes", "2"),
            ("offset.metadata.max.bytes", "10"),
        ]));
        assert_eq!(g.classic.initial_rebalance_delay_ms, 0);
        assert_eq!(g.classic.min_session_timeout_ms, 1000);
        assert_eq!(g.classic.max_size, 7);
        assert_eq!(g.consumer.session_timeout_ms, 6000);
        assert_eq!(g.consumer.heartbeat_interval_ms, 500);
        assert_eq!(
            g.consumer.assignors,
            vec![ServerAssignor::Range, ServerAssignor::Uniform]
        );
        assert_eq!(g.offsets_retention_ms, 120_000);
        assert_eq!(g.offset_metadata_max_bytes, 10);
        // Garbage keeps the defaults.
        let g = group_config(&broker(&[
            ("group.consumer.assignors", "nope"),
            ("offsets.retention.minutes", "x"),
        ]));
        assert_eq!(g.consumer.assignors, GroupConfig::default().consumer.assignors);
        assert_eq!(g.offsets_retention_ms, GroupConfig::default().offsets_retention_ms);
    }

    #[test]
    fn write_errors_map_to_coordinator_errors() {
        assert_eq!(write_error(ec::KAFKA_STORAGE_ERROR), gerr::NOT_COORDINATOR);
        assert_eq!(write_error(ec::REQUEST_TIMED_OUT), gerr::NOT_COORDINATOR);
        assert_eq!(write_error(ec::MESSAGE_TOO_LARGE), gerr::UNKNOWN_SERVER_ERROR);
    }

    /// Drive a coordinator and keep what it persists, as `execute` would.
    struct Source {
        state: GroupCoordinatorState,
        persisted: Vec<Record>,
        joins: HashMap<RequestToken, JoinGroupResponse>,
        now: i64,
    }

    impl Source {
        fn absorb(&mut self, effects: Vec<Effect>) {
            for e in effects {
                match e {
                    Effect::Persist(r) => self.persisted.push(r),
                    Effect::CompleteJoin { token, response } => {
                        self.joins.insert(token, response);
                    }
                    Effect::CompleteSync { .. } => {}
                }
            }
        }

        fn commit(&mut self, group: &str, member: &str, generation: i32, topic: &str, offsets: &[(i32, i64)]) {
            let req = OffsetCommitRequest {
                group_id: group.to_string(),
                generation_id_or_member_epoch: generation,
                member_id: member.to_string(),
                group_instance_id: None,
                retention_time_ms: -1,
                topics: vec![crate::group::offsets::OffsetCommitTopic {
                    name: topic.to_string(),
                    partitions: offsets
                        .iter()
                        .map(|&(p, o)| crate::group::offsets::OffsetCommitPartition {
                            partition_index: p,
                            committed_offset: o,
                            committed_leader_epoch: 3,
                            committed_metadata: Some(format!("m{o}")),
                        })
                        .collect(),
                }],
                api_version: 8,
            };
            let out = self.state.commit_offsets(&req, self.now);
            self.absorb(out.effects);
        }

        /// A stable classic group of one static member; its member id and generation.
        fn classic_group(&mut self, group: &str) -> (String, i32) {
            let join = JoinGroupRequest {
                group_id: group.to_string(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 10_000,
                member_id: String::new(),
                group_instance_id: Some(format!("{group}-instance")),
                protocol_type: "consumer".to_string(),
                protocols: vec![crate::group::classic::JoinProtocol {
                    name: "range".to_string(),
                    metadata: Bytes::from_static(b"meta"),
                }],
                reason: None,
                api_version: 9,
                client_id: "client".to_string(),
                client_host: "/127.0.0.1".to_string(),
            };
            let effects = self.state.join_group(1, join, self.now);
            self.absorb(effects);
            while !self.joins.contains_key(&1) {
                let Some(at) = self.state.next_deadline() else {
                    panic!("the join never completes");
                };
                self.now = self.now.max(at);
                let effects = self.state.poll(self.now, &crate::group::StaticTopics::default());
                self.absorb(effects);
            }
            let joined = self.joins.remove(&1).expect("the join completed");
            assert_eq!(joined.error_code, ec::NONE);
            let sync = SyncGroupRequest {
                group_id: group.to_string(),
                generation_id: joined.generation_id,
                member_id: joined.member_id.clone(),
                group_instance_id: Some(format!("{group}-instance")),
                protocol_type: Some("consumer".to_string()),
                protocol_name: Some("range".to_string()),
                assignments: vec![crate::group::classic::SyncGroupAssignment {
                    member_id: joined.member_id.clone(),
                    assignment: Bytes::from_static(b"assigned"),
                }],
            };
            let effects = self.state.sync_group(2, sync, self.now);
            self.absorb(effects);
            (joined.member_id, joined.generation_id)
        }
    }

    /// Everything a reload must reproduce: per group its type, state,
    /// generation, members and committed offsets.
    fn snapshot(state: &GroupCoordinatorState) -> Vec<String> {
        let mut ids: Vec<&str> = state.group_ids().collect();
        ids.sort_unstable();
        ids.into_iter()
            .map(|g| {
                let group = state
                    .group(g)
                    .map(|x| (x.group_type(), x.state_str(), x.protocol_type()));
                let classic = state
                    .classic_group(g)
                    .map(|c| (c.generation_id(), c.leader_id().map(str::to_string)));
                let mut offsets: Vec<String> = state
                    .offsets(g)
                    .map(|o| o.iter().map(|(t, p, m)| format!("{t}-{p}={m:?}")).collect())
                    .unwrap_or_default();
                offsets.sort();
                format!("{g}: {group:?} {classic:?} {offsets:?}")
            })
            .collect()
    }

    fn offsets_topic_config() -> crate::config::TopicConfig {
        let overrides: BTreeMap<String, String> = [
            ("cleanup.policy", "compact"),
            // Small segments: the disk reads cross segment boundaries.
            ("segment.bytes", "2048"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        crate::config::TopicConfig::resolve(&overrides, &broker(&[]))
    }

    async fn flush_all(log: &mut crate::log::PartitionLog) {
        while let Some(mut job) = log.take_flush_job(0) {
            crate::log::partition::execute_writes(&mut job).await.expect("write");
            crate::log::partition::execute_sync(&job).await.expect("sync");
            log.complete_flush(job, true, 0);
        }
    }

    fn partition_ref(log: crate::log::PartitionLog) -> PartitionRef {
        Rc::new(super::super::Partition::new(OFFSETS_TOPIC, 0, log))
    }

    async fn reload(p: &PartitionRef) -> (usize, Vec<String>) {
        let state = RefCell::new(GroupCoordinatorState::new(
            GroupConfig::default(),
            Box::new(RandomIds),
            0,
        ));
        let n = load_partition(p, &state).await.expect("load");
        let groups = snapshot(&state.borrow());
        (n, groups)
    }

    /// Issue 8: an offsets partition reloads to the same groups and offsets
    /// whether its batches come from the read cache (header and body
    /// pieces), from the segment files (after a restart), or from both.
    #[test]
    fn offsets_reload_from_cache_and_from_disk_agree() {
        use crate::io::sim::{SimConfig, World};
        let w = World::new(8, SimConfig::default());
        let out = w.run(1, async {
            let dir = std::path::PathBuf::from("/data/__consumer_offsets-0");
            let cfg = offsets_topic_config();
            let mode = crate::io::file::IoMode::Direct;
            let mut log = crate::log::partition::open(&dir, OFFSETS_TOPIC, 0, cfg.clone(), mode, true, 0)
                .await
                .expect("open");
            let mut src = Source {
                state: GroupCoordinatorState::new(GroupConfig::default(), Box::new(RandomIds), 0),
                persisted: Vec::new(),
                joins: HashMap::default(),
                now: now_ms(),
            };
            // Each step's records are one produce payload, as `execute` writes them.
            let mut written = 0usize;
            let mut append = |log: &mut crate::log::PartitionLog, src: &mut Source| {
                let encoded: Vec<(Bytes, Option<Bytes>)> =
                    src.persisted[written..].iter().map(Record::encode).collect();
                written = src.persisted.len();
                if encoded.is_empty() {
                    return;
                }
                let payload = Bytes::from(encode_payload(
                    &encoded,
                    cfg.max_message_bytes,
                    now_ms(),
                    record::Compression::None,
                ));
                let opts = record::ValidateOptions {
                    require_keys: true,
                    timestamps: cfg.timestamp_policy(now_ms()),
                    ..record::ValidateOptions::new(cfg.max_message_bytes)
                };
                let v = record::validate_payload(&payload, &opts).expect("valid group records");
                log.append(&payload, &v, now_ms()).expect("append");
            };
            let (member, generation) = src.classic_group("classic");
            append(&mut log, &mut src);
            for round in 0..40i64 {
                src.commit("classic", &member, generation, "orders", &[(0, round), (1, 2 * round)]);
                src.commit(
                    &format!("simple-{}", round % 7),
                    "",
                    -1,
                    "events",
                    &[(round as i32 % 5, round)],
                );
                append(&mut log, &mut src);
            }
            // Tombstones: a deleted group and a deleted offset.
            src.commit("doomed", "", -1, "events", &[(0, 1)]);
            let out = src.state.delete_groups(&["doomed".to_string()]);
            src.absorb(out.effects);
            let out = src.state.delete_offsets(&crate::group::offsets::OffsetDeleteRequest {
                group_id: "simple-3".to_string(),
                topics: vec![crate::group::offsets::OffsetDeleteTopic {
                    name: "events".to_string(),
                    partitions: vec![3],
                }],
            });
            src.absorb(out.effects);
            append(&mut log, &mut src);
            flush_all(&mut log).await;
            assert!(log.segment_count() > 2, "the log spans several segments");
            let expected = snapshot(&src.state);
            assert!(expected
                .iter()
                .any(|g| g.starts_with("classic: Some((\"classic\", \"Stable\"")));
            assert!(!expected.iter().any(|g| g.starts_with("doomed")));

            // 1. Everything from the read cache.
            let p = partition_ref(log);
            let (from_cache, cached) = reload(&p).await;
            assert_eq!(cached, expected, "reload from the read cache");
            // 2. Part from the files, the rest from the cache.
            p.log.borrow_mut().set_cache_limit(4096);
            let (from_both, mixed) = reload(&p).await;
            assert_eq!(mixed, expected, "reload from files and cache");
            // 3. After a restart: everything from the files.
            drop(p);
            let log = crate::log::partition::open(&dir, OFFSETS_TOPIC, 0, cfg.clone(), mode, true, 0)
                .await
                .expect("reopen");
            let p = partition_ref(log);
            let (from_disk, on_disk) = reload(&p).await;
            assert_eq!(on_disk, expected, "reload from disk");
            assert_eq!((from_cache, from_both), (from_disk, from_disk));
            assert_eq!(from_disk, src.persisted.len());
        });
        w.shutdown();
        out.expect("simulation");
    }

    #[test]
    fn whole_batches_joins_cache_pieces() {
        let batch = |n: usize| {
            let recs: Vec<record::Record<'_>> = (0..n)
                .map(|_| record::Record {
                    key: Some(b"k"),
                    value: Some(b"v"),
                    headers: &[],
                    timestamp_delta: 0,
                })
                .collect();
            Bytes::from(record::build_batch(0, 0, record::Compression::None, &recs))
        };
        let (a, b) = (batch(2), batch(3));
        let split = |x: &Bytes| vec![x.slice(..record::BATCH_HEADER_LEN), x.slice(record::BATCH_HEADER_LEN..)];
        let mut pieces = split(&a);
        pieces.push(b.clone());
        pieces.extend(split(&a));
        assert_eq!(ops::whole_batches(&pieces), vec![a.clone(), b.clone(), a.clone()]);
        assert_eq!(ops::whole_batches(&[a.clone(), b.clone()]), vec![a.clone(), b]);
        // A batch whose body is missing ends the list.
        assert_eq!(ops::whole_batches(&split(&a)[..1]), Vec::<Bytes>::new());
        assert_eq!(ops::whole_batches(&[]), Vec::<Bytes>::new());
    }

    #[test]
    fn replay_skips_what_was_already_read_and_bad_batches() {
        let mut state = GroupCoordinatorState::new(GroupConfig::default(), Box::new(RandomIds), 0);
        let commit = |group: &str, offset: i64| {
            let req = OffsetCommitRequest {
                group_id: group.to_string(),
                generation_id_or_member_epoch: -1,
                member_id: String::new(),
                group_instance_id: None,
                retention_time_ms: -1,
                topics: vec![crate::group::offsets::OffsetCommitTopic {
                    name: "t".to_string(),
                    partitions: vec![crate::group::offsets::OffsetCommitPartition {
                        partition_index: 0,
                        committed_offset: offset,
                        committed_leader_epoch: -1,
                        committed_metadata: None,
                    }],
                }],
                api_version: 8,
            };
            let mut source = GroupCoordinatorState::new(GroupConfig::default(), Box::new(RandomIds), 0);
            let out = source.commit_offsets(&req, 1);
            out.effects
                .into_iter()
                .filter_map(|e| match e {
                    Effect::Persist(r) => Some(r.encode()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        let batch = |base: i64, recs: Vec<(Bytes, Option<Bytes>)>| {
            let rs: Vec<record::Record<'_>> = recs
                .iter()
                .map(|(k, v)| record::Record {
                    key: Some(k),
                    value: v.as_deref(),
                    headers: &[],
                    timestamp_delta: 0,
                })
                .collect();
            let mut b = record::build_batch(0, 0, record::Compression::None, &rs);
            b[..8].copy_from_slice(&base.to_be_bytes());
            Bytes::from(b)
        };
        let b0 = batch(0, commit("g", 5));
        let b1 = batch(1, commit("g", 9));
        let mut offset = 1;
        let n = replay_batches(&mut state, 0, &[b0.clone(), b1.clone()], &mut offset);
        assert_eq!((n, offset), (1, 2));
        assert_eq!(
            state
                .offsets("g")
                .and_then(|o| o.get("t", 0))
                .map(|o| o.committed_offset),
            Some(9)
        );
        // A corrupt batch is skipped, the next one still applies.
        let mut bad = b0.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let mut state = GroupCoordinatorState::new(GroupConfig::default(), Box::new(RandomIds), 0);
        let mut offset = 0;
        let n = replay_batches(&mut state, 0, &[Bytes::from(bad), b1], &mut offset);
        assert_eq!((n, offset), (1, 2));
        assert_eq!(
            state
                .offsets("g")
                .and_then(|o| o.get("t", 0))
                .map(|o| o.committed_offset),
            Some(9)
        );
    }
}
