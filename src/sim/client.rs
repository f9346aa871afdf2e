//! A small async Kafka client for simulated clients: one connection, one
//! request at a time (or raw frames for hostile clients), bodies encoded and
//! decoded with the `kafka-protocol` crate through the bench client's
//! framing helpers. It runs on any node of a world, over `io::net`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::bench::client::{decode_response, encode_request};
use crate::io::net::Duplex;

/// Largest response frame a simulated client accepts.
const MAX_FRAME: usize = 64 << 20;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The connection could not be made or broke (refused, reset, EOF).
    Io(String),
    /// No response within the call's time limit (the connection is closed).
    Timeout,
    /// The broker answered something that is not a valid response: a bug.
    Protocol(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Io(e) => write!(f, "connection failed: {e}"),
            CallError::Timeout => write!(f, "no response in time"),
            CallError::Protocol(e) => write!(f, "bad response: {e}"),
        }
    }
}

pub type CallResult<T> = Result<T, CallError>;

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub fn topic_name(s: &str) -> TopicName {
    TopicName(sb(s))
}

/// Request versions the simulated clients use (all within ringlog's ranges).
pub mod v {
    pub const API_VERSIONS: i16 = 3;
    pub const METADATA: i16 = 12;
    pub const CREATE_TOPICS: i16 = 7;
    pub const DELETE_TOPICS: i16 = 5;
    pub const PRODUCE: i16 = 9;
    pub const FETCH: i16 = 12;
    pub const LIST_OFFSETS: i16 = 7;
    pub const INIT_PRODUCER_ID: i16 = 4;
    pub const FIND_COORDINATOR: i16 = 3;
    pub const JOIN_GROUP: i16 = 7;
    pub const SYNC_GROUP: i16 = 5;
    pub const HEARTBEAT: i16 = 4;
    pub const LEAVE_GROUP: i16 = 4;
    pub const OFFSET_COMMIT: i16 = 8;
    pub const OFFSET_FETCH: i16 = 7;
    pub const DELETE_RECORDS: i16 = 2;
}

/// One connection to the broker.
pub struct Client {
    io: Option<Duplex>,
    next_corr: i32,
    /// Time limit of one call.
    pub timeout: Duration,
}

impl Client {
    /// Connect to `addr` (no handshake).
    pub async fn connect(addr: SocketAddr) -> CallResult<Client> {
        let conn = crate::io::net::connect(addr)
            .await
            .map_err(|e| CallError::Io(format!("connect: {e}")))?;
        Ok(Client {
            io: Some(Duplex::from(conn)),
            next_corr: 1,
            timeout: Duration::from_secs(30),
        })
    }

    pub fn is_open(&self) -> bool {
        self.io.is_some()
    }

    /// Close the connection.
    pub fn close(&mut self) {
        self.io = None;
    }

    /// Write raw bytes (hostile clients).
    pub async fn write_raw(&mut self, bytes: &[u8]) -> CallResult<()> {
        let io = self.io.as_mut().ok_or_else(|| CallError::Io("closed".into()))?;
        match io.write_all(bytes).await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.io = None;
                Err(CallError::Io(format!("write: {e}")))
            }
        }
    }

    /// Encode a request into a frame; returns it and its correlation id.
    pub fn frame<T: Encodable>(&mut self, key: ApiKey, version: i16, body: &T) -> CallResult<(BytesMut, i32)> {
        let corr = self.next_corr;
        self.next_corr = self.next_corr.wrapping_add(1).max(1);
        let mut buf = BytesMut::new();
        encode_request(&mut buf, key, version, corr, body).map_err(|e| CallError::Protocol(format!("encode: {e}")))?;
        Ok((buf, corr))
    }

    /// Read one response frame (without its size prefix).
    pub async fn read_frame(&mut self) -> CallResult<Bytes> {
        let io = self.io.as_mut().ok_or_else(|| CallError::Io("closed".into()))?;
        let mut len = [0u8; 4];
        if let Err(e) = io.read_exact(&mut len).await {
            self.io = None;
            return Err(CallError::Io(format!("read: {e}")));
        }
        let n = i32::from_be_bytes(len);
        let n = match usize::try_from(n) {
            Ok(n) if n <= MAX_FRAME => n,
            _ => {
                self.io = None;
                return Err(CallError::Protocol(format!("response frame of size {n}")));
            }
        };
        let mut buf = vec![0u8; n];
        if let Err(e) = io.read_exact(&mut buf).await {
            self.io = None;
            return Err(CallError::Io(format!("read: {e}")));
        }
        Ok(Bytes::from(buf))
    }

    /// Send a request and wait (at most [`Client::timeout`]) for its response.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &Req,
    ) -> CallResult<Resp> {
        let limit = self.timeout;
        self.call_within(key, version, body, limit).await
    }

    /// [`Client::call`] with its own time limit.
    pub async fn call_within<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &Req,
        limit: Duration,
    ) -> CallResult<Resp> {
        let (frame, corr) = self.frame(key, version, body)?;
        let r = crate::io::time::timeout(limit, async {
            self.write_raw(&frame).await?;
            self.read_frame().await
        })
        .await;
        let frame = match r {
            Some(Ok(f)) => f,
            Some(Err(e)) => return Err(e),
            None => {
                // A late response would be taken for the next one's.
                self.io = None;
                return Err(CallError::Timeout);
            }
        };
        decode_response(frame, key, version, corr).map_err(|e| {
            self.io = None;
            CallError::Protocol(format!("{e:#}"))
        })
    }

    // ---- typed calls ------------------------------------------------------

    pub async fn api_versions(&mut self) -> CallResult<ApiVersionsResponse> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(sb("ringlog-sim"))
            .with_client_software_version(sb("1"));
        self.call(ApiKey::ApiVersions, v::API_VERSIONS, &req).await
    }

    /// Metadata of `topics` (all topics for None), without auto-creation.
    pub async fn metadata(&mut self, topics: Option<&[String]>) -> CallResult<MetadataResponse> {
        let req = MetadataRequest::default()
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        self.call(ApiKey::Metadata, v::METADATA, &req).await
    }

    pub async fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        configs: &[(String, String)],
    ) -> CallResult<CreateTopicsResponse> {
        let t = CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| CreatableTopicConfig::default().with_name(sb(k)).with_value(Some(sb(v))))
                    .collect(),
            );
        let req = CreateTopicsRequest::default()
            .with_topics(vec![t])
            .with_timeout_ms(30_000);
        self.call(ApiKey::CreateTopics, v::CREATE_TOPICS, &req).await
    }

    pub async fn delete_topic(&mut self, name: &str) -> CallResult<DeleteTopicsResponse> {
        let req = DeleteTopicsRequest::default()
            .with_topic_names(vec![topic_name(name)])
            .with_timeout_ms(30_000);
        self.call(ApiKey::DeleteTopics, v::DELETE_TOPICS, &req).await
    }

    /// Produce one record set to one partition.
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        acks: i16,
        timeout_ms: i32,
        records: Bytes,
    ) -> CallResult<Option<ProduceResponse>> {
        let req = produce_request(topic, partition, acks, timeout_ms, records);
        if acks == 0 {
            // No response comes for acks=0.
            let (frame, _) = self.frame(ApiKey::Produce, v::PRODUCE, &req)?;
            self.write_raw(&frame).await?;
            return Ok(None);
        }
        self.call(ApiKey::Produce, v::PRODUCE, &req).await.map(Some)
    }

    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        min_bytes: i32,
        max_wait_ms: i32,
        max_bytes: i32,
    ) -> CallResult<FetchResponse> {
        let req = fetch_request(topic, partition, offset, min_bytes, max_wait_ms, max_bytes);
        let limit = self.timeout + Duration::from_millis(max_wait_ms.max(0) as u64);
        self.call_within(ApiKey::Fetch, v::FETCH, &req, limit).await
    }

    /// ListOffsets of one partition at `timestamp` (-1 latest, -2 earliest).
    pub async fn list_offset(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> CallResult<ListOffsetsResponse> {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_current_leader_epoch(-1)
                    .with_timestamp(timestamp)])]);
        self.call(ApiKey::ListOffsets, v::LIST_OFFSETS, &req).await
    }

    /// DeleteRecords of one partition: move its log start to `offset`
    /// (-1: the high watermark).
    pub async fn delete_records(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> CallResult<DeleteRecordsResponse> {
        use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
        let req = DeleteRecordsRequest::default()
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(partition)
                    .with_offset(offset)])])
            .with_timeout_ms(30_000);
        self.call(ApiKey::DeleteRecords, v::DELETE_RECORDS, &req).await
    }

    pub async fn init_producer_id(&mut self) -> CallResult<InitProducerIdResponse> {
        // The crate's default transactional id is "" (not null), which a
        // broker without transactions refuses.
        let req = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        self.call(ApiKey::InitProducerId, v::INIT_PRODUCER_ID, &req).await
    }

    pub async fn find_coordinator(&mut self, group: &str) -> CallResult<FindCoordinatorResponse> {
        let req = FindCoordinatorRequest::default().with_key(sb(group)).with_key_type(0);
        self.call(ApiKey::FindCoordinator, v::FIND_COORDINATOR, &req).await
    }

    pub async fn join_group(
        &mut self,
        group: &str,
        member_id: &str,
        session_timeout_ms: i32,
        topics: &[String],
    ) -> CallResult<JoinGroupResponse> {
        let meta = consumer_protocol_subscription(topics);
        let req = JoinGroupRequest::default()
            .with_group_id(GroupId(sb(group)))
            .with_session_timeout_ms(session_timeout_ms)
            .with_rebalance_timeout_ms(session_timeout_ms)
            .with_member_id(sb(member_id))
            .with_protocol_type(sb("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(sb("range"))
                .with_metadata(meta)]);
        let limit = self.timeout + Duration::from_millis(session_timeout_ms.max(0) as u64);
        self.call_within(ApiKey::JoinGroup, v::JOIN_GROUP, &req, limit).await
    }

    pub async fn sync_group(
        &mut self,
        group: &str,
        generation: i32,
        member_id: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> CallResult<SyncGroupResponse> {
        let req = SyncGroupRequest::default()
            .with_group_id(GroupId(sb(group)))
            .with_generation_id(generation)
            .with_member_id(sb(member_id))
            .with_protocol_type(Some(sb("consumer")))
            .with_protocol_name(Some(sb("range")))
            .with_assignments(
                assignments
                    .into_iter()
                    .map(|(m, a)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(sb(&m))
                            .with_assignment(a)
                    })
                    .collect(),
            );
        self.call(ApiKey::SyncGroup, v::SYNC_GROUP, &req).await
    }

    pub async fn heartbeat(&mut self, group: &str, generation: i32, member_id: &str) -> CallResult<HeartbeatResponse> {
        let req = HeartbeatRequest::default()
            .with_group_id(GroupId(sb(group)))
            .with_generation_id(generation)
            .with_member_id(sb(member_id));
        self.call(ApiKey::Heartbeat, v::HEARTBEAT, &req).await
    }

    pub async fn leave_group(&mut self, group: &str, member_id: &str) -> CallResult<LeaveGroupResponse> {
        let req = LeaveGroupRequest::default()
            .with_group_id(GroupId(sb(group)))
            .with_members(vec![MemberIdentity::default().with_member_id(sb(member_id))]);
        self.call(ApiKey::LeaveGroup, v::LEAVE_GROUP, &req).await
    }

    pub async fn offset_commit(
        &mut self,
        group: &str,
        generation: i32,
        member_id: &str,
        offsets: &[(String, i32, i64)],
    ) -> CallResult<OffsetCommitResponse> {
        let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
        for (t, p, o) in offsets {
            let part = OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*o)
                .with_committed_leader_epoch(-1);
            match topics.iter_mut().find(|x| x.name.0.as_str() == t.as_str()) {
                Some(x) => x.partitions.push(part),
                None => topics.push(
                    OffsetCommitRequestTopic::default()
                        .with_name(topic_name(t))
                        .with_partitions(vec![part]),
                ),
            }
        }
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(sb(group)))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(sb(member_id))
            .with_topics(topics);
        self.call(ApiKey::OffsetCommit, v::OFFSET_COMMIT, &req).await
    }

    pub async fn offset_fetch(&mut self, group: &str, parts: &[(String, i32)]) -> CallResult<OffsetFetchResponse> {
        let mut topics: Vec<OffsetFetchRequestTopic> = Vec::new();
        for (t, p) in parts {
            match topics.iter_mut().find(|x| x.name.0.as_str() == t.as_str()) {
                Some(x) => x.partition_indexes.push(*p),
                None => topics.push(
                    OffsetFetchRequestTopic::default()
                        .with_name(topic_name(t))
                        .with_partition_indexes(vec![*p]),
                ),
            }
        }
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(sb(group)))
            .with_topics(Some(topics));
        self.call(ApiKey::OffsetFetch, v::OFFSET_FETCH, &req).await
    }
}

/// A Produce request of one record set to one partition.
pub fn produce_request(topic: &str, partition: i32, acks: i16, timeout_ms: i32, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

/// A Fetch request of one partition.
pub fn fetch_request(
    topic: &str,
    partition: i32,
    offset: i64,
    min_bytes: i32,
    max_wait_ms: i32,
    max_bytes: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(max_bytes)
        .with_isolation_level(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_log_start_offset(-1)
                .with_current_leader_epoch(-1)
                .with_partition_max_bytes(max_bytes)])])
}

/// ConsumerProtocolSubscription v0: version, topics, user data.
fn consumer_protocol_subscription(topics: &[String]) -> Bytes {
    let mut b = Vec::new();
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        b.extend_from_slice(&(t.len() as i16).to_be_bytes());
        b.extend_from_slice(t.as_bytes());
    }
    b.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(b)
}

/// ConsumerProtocolAssignment v0 of `parts` (topic, partitions).
pub fn consumer_protocol_assignment(parts: &[(String, Vec<i32>)]) -> Bytes {
    let mut b = Vec::new();
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(parts.len() as i32).to_be_bytes());
    for (t, ps) in parts {
        b.extend_from_slice(&(t.len() as i16).to_be_bytes());
        b.extend_from_slice(t.as_bytes());
        b.extend_from_slice(&(ps.len() as i32).to_be_bytes());
        for p in ps {
            b.extend_from_slice(&p.to_be_bytes());
        }
    }
    b.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(b)
}

/// Decode a ConsumerProtocolAssignment (any version: the fields read are
/// the same in v0-v3's prefix).
pub fn parse_assignment(data: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> Option<&[u8]> {
        let s = data.get(*at..*at + n)?;
        *at += n;
        Some(s)
    };
    if data.is_empty() {
        return Some(Vec::new());
    }
    let _version = i16::from_be_bytes(take(&mut at, 2)?.try_into().ok()?);
    let n = i32::from_be_bytes(take(&mut at, 4)?.try_into().ok()?);
    let mut out = Vec::new();
    for _ in 0..n.max(0) {
        let l = i16::from_be_bytes(take(&mut at, 2)?.try_into().ok()?);
        let name = String::from_utf8(take(&mut at, l.max(0) as usize)?.to_vec()).ok()?;
        let k = i32::from_be_bytes(take(&mut at, 4)?.try_into().ok()?);
        let mut ps = Vec::new();
        for _ in 0..k.max(0) {
            ps.push(i32::from_be_bytes(take(&mut at, 4)?.try_into().ok()?));
        }
        out.push((name, ps));
    }
    Some(out)
}
