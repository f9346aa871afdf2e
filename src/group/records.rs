//! Durable representation of group state in the internal `__consumer_offsets`
//! topic.
//!
//! Every record is a key and an optional value (a `None` value is a tombstone).
//! Both are encoded exactly like Apache Kafka's coordinator records, so Kafka
//! tooling (`kafka-console-consumer --formatter ...GroupMetadataMessageFormatter`,
//! `kafka-dump-log --offsets-decoder`) understands them:
//!
//! * a key starts with an `int16` *record type* (Kafka calls it the key
//!   version) followed by the key fields, never flexible;
//! * a value starts with an `int16` value version followed by the value
//!   fields; flexible versions use compact strings/arrays and tagged fields.
//!
//! | type | key                                   | value written                  |
//! |------|---------------------------------------|--------------------------------|
//! | 0, 1 | OffsetCommitKey (group, topic, part)  | OffsetCommitValue v3 (v1 when an explicit expire timestamp exists) |
//! | 2    | GroupMetadataKey (group)              | GroupMetadataValue v3          |
//! | 3    | ConsumerGroupMetadataKey              | ConsumerGroupMetadataValue v0  |
//! | 4    | ConsumerGroupPartitionMetadataKey     | ConsumerGroupPartitionMetadataValue v0 |
//! | 5    | ConsumerGroupMemberMetadataKey        | ConsumerGroupMemberMetadataValue v0 |
//! | 6    | ConsumerGroupTargetAssignmentMetadataKey | ConsumerGroupTargetAssignmentMetadataValue v0 |
//! | 7    | ConsumerGroupTargetAssignmentMemberKey | ConsumerGroupTargetAssignmentMemberValue v0 |
//! | 8    | ConsumerGroupCurrentMemberAssignmentKey | ConsumerGroupCurrentMemberAssignmentValue v0 |
//!
//! Decoding accepts every value version Kafka defines for these records
//! (OffsetCommitValue v0-v4, GroupMetadataValue v0-v4) and skips unknown
//! tagged fields. Other record types (share/streams groups) decode to
//! [`RecordError::UnknownRecordType`]; replay ignores them.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use super::TopicId;

/// Errors produced when decoding a record.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    #[error("record is truncated")]
    Truncated,
    #[error("unknown record type {0}")]
    UnknownRecordType(i16),
    #[error("unsupported value version {version} for record type {record_type}")]
    UnsupportedValueVersion { record_type: i16, version: i16 },
    #[error("invalid record: {0}")]
    Invalid(&'static str),
}

/// Key of a coordinator record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RecordKey {
    /// Types 0 and 1 (we write 1).
    OffsetCommit {
        group: String,
        topic: String,
        partition: i32,
    },
    /// Type 2.
    GroupMetadata { group: String },
    /// Type 3.
    ConsumerGroupMetadata { group: String },
    /// Type 4.
    ConsumerGroupPartitionMetadata { group: String },
    /// Type 5.
    ConsumerGroupMemberMetadata { group: String, member_id: String },
    /// Type 6.
    ConsumerGroupTargetAssignmentMetadata { group: String },
    /// Type 7.
    ConsumerGroupTargetAssignmentMember { group: String, member_id: String },
    /// Type 8.
    ConsumerGroupCurrentMemberAssignment { group: String, member_id: String },
}

impl RecordKey {
    /// The record type (Kafka's key version) written for this key.
    pub fn record_type(&self) -> i16 {
        match self {
            RecordKey::OffsetCommit { .. } => 1,
            RecordKey::GroupMetadata { .. } => 2,
            RecordKey::ConsumerGroupMetadata { .. } => 3,
            RecordKey::ConsumerGroupPartitionMetadata { .. } => 4,
            RecordKey::ConsumerGroupMemberMetadata { .. } => 5,
            RecordKey::ConsumerGroupTargetAssignmentMetadata { .. } => 6,
            RecordKey::ConsumerGroupTargetAssignmentMember { .. } => 7,
            RecordKey::ConsumerGroupCurrentMemberAssignment { .. } => 8,
        }
    }

    /// The group the record belongs to.
    pub fn group_id(&self) -> &str {
        match self {
            RecordKey::OffsetCommit { group, .. }
            | RecordKey::GroupMetadata { group }
            | RecordKey::ConsumerGroupMetadata { group }
            | RecordKey::ConsumerGroupPartitionMetadata { group }
            | RecordKey::ConsumerGroupMemberMetadata { group, .. }
            | RecordKey::ConsumerGroupTargetAssignmentMetadata { group }
            | RecordKey::ConsumerGroupTargetAssignmentMember { group, .. }
            | RecordKey::ConsumerGroupCurrentMemberAssignment { group, .. } => group,
        }
    }

    pub fn encode(&self) -> Bytes {
        let mut w = Writer::default();
        w.i16(self.record_type());
        match self {
            RecordKey::OffsetCommit {
                group,
                topic,
                partition,
            } => {
                w.string(group);
                w.string(topic);
                w.i32(*partition);
            }
            RecordKey::GroupMetadata { group }
            | RecordKey::ConsumerGroupMetadata { group }
            | RecordKey::ConsumerGroupPartitionMetadata { group }
            | RecordKey::ConsumerGroupTargetAssignmentMetadata { group } => w.string(group),
            RecordKey::ConsumerGroupMemberMetadata { group, member_id }
            | RecordKey::ConsumerGroupTargetAssignmentMember { group, member_id }
            | RecordKey::ConsumerGroupCurrentMemberAssignment { group, member_id } => {
                w.string(group);
                w.string(member_id);
            }
        }
        w.finish()
    }

    pub fn decode(buf: &[u8]) -> Result<RecordKey, RecordError> {
        let mut r = Reader::new(buf);
        let record_type = r.i16()?;
        let key = match record_type {
            0 | 1 => RecordKey::OffsetCommit {
                group: r.string()?,
                topic: r.string()?,
                partition: r.i32()?,
            },
            2 => RecordKey::GroupMetadata { group: r.string()? },
            3 => RecordKey::ConsumerGroupMetadata { group: r.string()? },
            4 => RecordKey::ConsumerGroupPartitionMetadata { group: r.string()? },
            5 => RecordKey::ConsumerGroupMemberMetadata {
                group: r.string()?,
                member_id: r.string()?,
            },
            6 => RecordKey::ConsumerGroupTargetAssignmentMetadata { group: r.string()? },
            7 => RecordKey::ConsumerGroupTargetAssignmentMember {
                group: r.string()?,
                member_id: r.string()?,
            },
            8 => RecordKey::ConsumerGroupCurrentMemberAssignment {
                group: r.string()?,
                member_id: r.string()?,
            },
            other => return Err(RecordError::UnknownRecordType(other)),
        };
        Ok(key)
    }
}

/// OffsetCommitValue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitValue {
    pub offset: i64,
    /// -1 when unknown.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
    /// Only present in value version 1 (commits with an explicit retention).
    pub expire_timestamp: Option<i64>,
}

/// One member of a classic group as persisted in GroupMetadataValue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadataMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout: i32,
    pub session_timeout: i32,
    /// The member's metadata for the selected protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// GroupMetadataValue (classic groups).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadataValue {
    /// Empty when the group has no protocol type (simple groups).
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// -1 when unknown.
    pub current_state_timestamp: i64,
    pub members: Vec<GroupMetadataMember>,
}

/// A topic's partitions, as used by the consumer group records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPartitions {
    pub topic_id: TopicId,
    pub partitions: Vec<i32>,
}

/// One topic of ConsumerGroupPartitionMetadataValue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadataEntry {
    pub topic_id: TopicId,
    pub topic_name: String,
    pub num_partitions: i32,
}

/// ConsumerGroupMemberMetadataValue (the classic-member tagged field is not
/// written; it is skipped when read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerMemberMetadataValue {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub server_assignor: Option<String>,
}

/// ConsumerGroupCurrentMemberAssignmentValue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentMemberAssignmentValue {
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    /// 0 stable, 1 unrevoked partitions, 2 unreleased partitions.
    pub state: i8,
    pub assigned_partitions: Vec<TopicPartitions>,
    pub partitions_pending_revocation: Vec<TopicPartitions>,
}

/// Value of a coordinator record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordValue {
    OffsetCommit(OffsetCommitValue),
    GroupMetadata(GroupMetadataValue),
    ConsumerGroupMetadata { epoch: i32 },
    ConsumerGroupPartitionMetadata(Vec<TopicMetadataEntry>),
    ConsumerGroupMemberMetadata(ConsumerMemberMetadataValue),
    ConsumerGroupTargetAssignmentMetadata { assignment_epoch: i32 },
    ConsumerGroupTargetAssignmentMember(Vec<TopicPartitions>),
    ConsumerGroupCurrentMemberAssignment(CurrentMemberAssignmentValue),
}

impl RecordValue {
    pub fn encode(&self) -> Bytes {
        let mut w = Writer::default();
        match self {
            RecordValue::OffsetCommit(v) => {
                if let Some(expire) = v.expire_timestamp {
                    w.i16(1);
                    w.i64(v.offset);
                    w.string(&v.metadata);
                    w.i64(v.commit_timestamp);
                    w.i64(expire);
                } else {
                    w.i16(3);
                    w.i64(v.offset);
                    w.i32(v.leader_epoch);
                    w.string(&v.metadata);
                    w.i64(v.commit_timestamp);
                }
            }
            RecordValue::GroupMetadata(v) => {
                w.i16(3);
                w.string(&v.protocol_type);
                w.i32(v.generation);
                w.nullable_string(v.protocol.as_deref());
                w.nullable_string(v.leader.as_deref());
                w.i64(v.current_state_timestamp);
                w.i32(len_i32(v.members.len()));
                for m in &v.members {
                    w.string(&m.member_id);
                    w.nullable_string(m.group_instance_id.as_deref());
                    w.string(&m.client_id);
                    w.string(&m.client_host);
                    w.i32(m.rebalance_timeout);
                    w.i32(m.session_timeout);
                    w.bytes(&m.subscription);
                    w.bytes(&m.assignment);
                }
            }
            RecordValue::ConsumerGroupMetadata { epoch } => {
                w.i16(0);
                w.i32(*epoch);
                w.empty_tags();
            }
            RecordValue::ConsumerGroupPartitionMetadata(topics) => {
                w.i16(0);
                w.compact_len(topics.len());
                for t in topics {
                    w.uuid(&t.topic_id);
                    w.compact_string(&t.topic_name);
                    w.i32(t.num_partitions);
                    // PartitionMetadata (deprecated racks): always empty.
                    w.compact_len(0);
                    w.empty_tags();
                }
                w.empty_tags();
            }
            RecordValue::ConsumerGroupMemberMetadata(v) => {
                w.i16(0);
                w.compact_nullable_string(v.instance_id.as_deref());
                w.compact_nullable_string(v.rack_id.as_deref());
                w.compact_string(&v.client_id);
                w.compact_string(&v.client_host);
                w.compact_len(v.subscribed_topic_names.len());
                for t in &v.subscribed_topic_names {
                    w.compact_string(t);
                }
                w.compact_nullable_string(v.subscribed_topic_regex.as_deref());
                w.i32(v.rebalance_timeout_ms);
                w.compact_nullable_string(v.server_assignor.as_deref());
                w.empty_tags();
            }
            RecordValue::ConsumerGroupTargetAssignmentMetadata { assignment_epoch } => {
                w.i16(0);
                w.i32(*assignment_epoch);
                w.empty_tags();
            }
            RecordValue::ConsumerGroupTargetAssignmentMember(tps) => {
                w.i16(0);
                w.topic_partitions(tps);
                w.empty_tags();
            }
            RecordValue::ConsumerGroupCurrentMemberAssignment(v) => {
                w.i16(0);
                w.i32(v.member_epoch);
                w.i32(v.previous_member_epoch);
                w.i8(v.state);
                w.topic_partitions(&v.assigned_partitions);
                w.topic_partitions(&v.partitions_pending_revocation);
                w.empty_tags();
            }
        }
        w.finish()
    }

    /// Decodes a value given the record type of its key.
    pub fn decode(record_type: i16, buf: &[u8]) -> Result<RecordValue, RecordError> {
        let mut r = Reader::new(buf);
        let version = r.i16()?;
        let unsupported = RecordError::UnsupportedValueVersion { record_type, version };
        let value = match record_type {
            0 | 1 => {
                if !(0..=4).contains(&version) {
                    return Err(unsupported);
                }
                let flexible = version >= 4;
                let offset = r.i64()?;
                let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
                let metadata = r.string_v(flexible)?;
                let commit_timestamp = r.i64()?;
                let expire_timestamp = if version == 1 { Some(r.i64()?) } else { None };
                if flexible {
                    r.skip_tags()?;
                }
                RecordValue::OffsetCommit(OffsetCommitValue {
                    offset,
                    leader_epoch,
                    metadata,
                    commit_timestamp,
                    // Kafka writes -1 when there is no explicit expiration.
                    expire_timestamp: expire_timestamp.filter(|t| *t != -1),
                })
            }
            2 => {
                if !(0..=4).contains(&version) {
                    return Err(unsupported);
                }
                let flexible = version >= 4;
                let protocol_type = r.string_v(flexible)?;
                let generation = r.i32()?;
                let protocol = r.nullable_string_v(flexible)?;
                let leader = r.nullable_string_v(flexible)?;
                let current_state_timestamp = if version >= 2 { r.i64()? } else { -1 };
                let n = r.array_len_v(flexible)?;
                let mut members = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    let member_id = r.string_v(flexible)?;
                    let group_instance_id = if version >= 3 {
                        r.nullable_string_v(flexible)?
                    } else {
                        None
                    };
                    let client_id = r.string_v(flexible)?;
                    let client_host = r.string_v(flexible)?;
                    let rebalance_timeout = if version >= 1 { r.i32()? } else { -1 };
                    let session_timeout = r.i32()?;
                    let subscription = r.bytes_v(flexible)?;
                    let assignment = r.bytes_v(flexible)?;
                    if flexible {
                        r.skip_tags()?;
                    }
                    members.push(GroupMetadataMember {
                        member_id,
                        group_instance_id,
                        client_id,
                        client_host,
                        // Old records without a rebalance timeout use the session timeout.
                        rebalance_timeout: if rebalance_timeout < 0 {
                            session_timeout
                        } else {
                            rebalance_timeout
                        },
                        session_timeout,
                        subscription,
                        assignment,
                    });
                }
                if flexible {
                    r.skip_tags()?;
                }
                RecordValue::GroupMetadata(GroupMetadataValue {
                    protocol_type,
                    generation,
                    protocol,
                    leader,
                    current_state_timestamp,
                    members,
                })
            }
            3..=8 => {
                if version != 0 {
                    return Err(unsupported);
                }
                let v = match record_type {
                    3 => RecordValue::ConsumerGroupMetadata { epoch: r.i32()? },
                    4 => {
                        let n = r.compact_array_len()?;
                        let mut topics = Vec::with_capacity(n.min(1024));
                        for _ in 0..n {
                            let topic_id = r.uuid()?;
                            let topic_name = r.compact_string()?;
                            let num_partitions = r.i32()?;
                            let racks = r.compact_array_len()?;
                            for _ in 0..racks {
                                let _partition = r.i32()?;
                                let m = r.compact_array_len()?;
                                for _ in 0..m {
                                    r.compact_string()?;
                                }
                                r.skip_tags()?;
                            }
                            r.skip_tags()?;
                            topics.push(TopicMetadataEntry {
                                topic_id,
                                topic_name,
                                num_partitions,
                            });
                        }
                        RecordValue::ConsumerGroupPartitionMetadata(topics)
                    }
                    5 => {
                        let instance_id = r.compact_nullable_string()?;
                        let rack_id = r.compact_nullable_string()?;
                        let client_id = r.compact_string()?;
                        let client_host = r.compact_string()?;
                        let n = r.compact_array_len()?;
                        let mut subscribed_topic_names = Vec::with_capacity(n.min(1024));
                        for _ in 0..n {
                            subscribed_topic_names.push(r.compact_string()?);
                        }
                        let subscribed_topic_regex = r.compact_nullable_string()?;
                        let rebalance_timeout_ms = r.i32()?;
                        let server_assignor = r.compact_nullable_string()?;
                        RecordValue::ConsumerGroupMemberMetadata(ConsumerMemberMetadataValue {
                            instance_id,
                            rack_id,
                            client_id,
                            client_host,
                            subscribed_topic_names,
                            subscribed_topic_regex,
                            rebalance_timeout_ms,
                            server_assignor,
                        })
                    }
                    6 => RecordValue::ConsumerGroupTargetAssignmentMetadata {
                        assignment_epoch: r.i32()?,
                    },
                    7 => RecordValue::ConsumerGroupTargetAssignmentMember(r.topic_partitions()?),
                    _ => {
                        let member_epoch = r.i32()?;
                        let previous_member_epoch = r.i32()?;
                        let state = r.i8()?;
                        let assigned_partitions = r.topic_partitions()?;
                        let partitions_pending_revocation = r.topic_partitions()?;
                        RecordValue::ConsumerGroupCurrentMemberAssignment(CurrentMemberAssignmentValue {
                            member_epoch,
                            previous_member_epoch,
                            state,
                            assigned_partitions,
                            partitions_pending_revocation,
                        })
                    }
                };
                r.skip_tags()?;
                v
            }
            other => return Err(RecordError::UnknownRecordType(other)),
        };
        Ok(value)
    }

    fn matches_key(&self, key: &RecordKey) -> bool {
        matches!(
            (key, self),
            (RecordKey::OffsetCommit { .. }, RecordValue::OffsetCommit(_))
                | (RecordKey::GroupMetadata { .. }, RecordValue::GroupMetadata(_))
                | (
                    RecordKey::ConsumerGroupMetadata { .. },
                    RecordValue::ConsumerGroupMetadata { .. }
                )
                | (
                    RecordKey::ConsumerGroupPartitionMetadata { .. },
                    RecordValue::ConsumerGroupPartitionMetadata(_)
                )
                | (
                    RecordKey::ConsumerGroupMemberMetadata { .. },
                    RecordValue::ConsumerGroupMemberMetadata(_)
                )
                | (
                    RecordKey::ConsumerGroupTargetAssignmentMetadata { .. },
                    RecordValue::ConsumerGroupTargetAssignmentMetadata { .. }
                )
                | (
                    RecordKey::ConsumerGroupTargetAssignmentMember { .. },
                    RecordValue::ConsumerGroupTargetAssignmentMember(_)
                )
                | (
                    RecordKey::ConsumerGroupCurrentMemberAssignment { .. },
                    RecordValue::ConsumerGroupCurrentMemberAssignment(_)
                )
        )
    }
}

/// A coordinator record: a key and a value, or a tombstone (`value == None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: RecordKey,
    pub value: Option<RecordValue>,
}

impl Record {
    pub fn new(key: RecordKey, value: RecordValue) -> Record {
        Record {
            key,
            value: Some(value),
        }
    }

    pub fn tombstone(key: RecordKey) -> Record {
        Record { key, value: None }
    }

    /// Encodes the record into the key and value bytes of a log record.
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        (self.key.encode(), self.value.as_ref().map(RecordValue::encode))
    }

    /// Decodes a log record's key and value.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Record, RecordError> {
        let key = RecordKey::decode(key)?;
        let value = match value {
            None => None,
            Some(v) => {
                let v = RecordValue::decode(key.record_type(), v)?;
                if !v.matches_key(&key) {
                    return Err(RecordError::Invalid("value does not match key"));
                }
                Some(v)
            }
        };
        Ok(Record { key, value })
    }
}

/// The `__consumer_offsets` partition that owns `group_id`: Kafka's
/// `Utils.abs(groupId.hashCode()) % numPartitions`, where `hashCode` is Java's
/// `String.hashCode` over UTF-16 code units and `Utils.abs` maps
/// `Integer.MIN_VALUE` to 0 (and is a plain `abs` otherwise).
///
/// Returns 0 when `num_partitions <= 0`.
pub fn partition_for_group(group_id: &str, num_partitions: i32) -> i32 {
    if num_partitions <= 0 {
        return 0;
    }
    let hash = java_string_hash(group_id);
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % num_partitions
}

/// Java's `String.hashCode`.
pub fn java_string_hash(s: &str) -> i32 {
    let mut h: i32 = 0;
    for unit in s.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(unit as i32);
    }
    h
}

fn len_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

// ---------------------------------------------------------------------------
// Wire helpers
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Writer {
    buf: BytesMut,
}

impl Writer {
    fn finish(self) -> Bytes {
        self.buf.freeze()
    }
    fn i8(&mut self, v: i8) {
        self.buf.put_i8(v);
    }
    fn i16(&mut self, v: i16) {
        self.buf.put_i16(v);
    }
    fn i32(&mut self, v: i32) {
        self.buf.put_i32(v);
    }
    fn i64(&mut self, v: i64) {
        self.buf.put_i64(v);
    }
    fn uuid(&mut self, v: &TopicId) {
        self.buf.put_slice(v);
    }
    fn string(&mut self, s: &str) {
        // Kafka strings are at most i16::MAX bytes; longer ones are truncated
        // at a char boundary rather than producing an unreadable record.
        let s = truncate_utf8(s, i16::MAX as usize);
        self.buf.put_i16(s.len() as i16);
        self.buf.put_slice(s.as_bytes());
    }
    fn nullable_string(&mut self, s: Option<&str>) {
        match s {
            None => self.buf.put_i16(-1),
            Some(s) => self.string(s),
        }
    }
    fn bytes(&mut self, b: &[u8]) {
        self.buf.put_i32(len_i32(b.len()));
        self.buf.put_slice(b);
    }
    fn uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.put_u8((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.buf.put_u8(v as u8);
    }
    fn compact_len(&mut self, n: usize) {
        self.uvarint(n as u64 + 1);
    }
    fn compact_string(&mut self, s: &str) {
        let s = truncate_utf8(s, i16::MAX as usize);
        self.compact_len(s.len());
        self.buf.put_slice(s.as_bytes());
    }
    fn compact_nullable_string(&mut self, s: Option<&str>) {
        match s {
            None => self.uvarint(0),
            Some(s) => self.compact_string(s),
        }
    }
    fn empty_tags(&mut self) {
        self.uvarint(0);
    }
    fn topic_partitions(&mut self, tps: &[TopicPartitions]) {
        self.compact_len(tps.len());
        for tp in tps {
            self.uuid(&tp.topic_id);
            self.compact_len(tp.partitions.len());
            for p in &tp.partitions {
                self.i32(*p);
            }
            self.empty_tags();
        }
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.buf.len() < n {
            return Err(RecordError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn i8(&mut self) -> Result<i8, RecordError> {
        Ok(i8::from_be_bytes(self.array::<1>()?))
    }
    fn i16(&mut self) -> Result<i16, RecordError> {
        Ok(i16::from_be_bytes(self.array::<2>()?))
    }
    fn i32(&mut self) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.array::<4>()?))
    }
    fn i64(&mut self) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(self.array::<8>()?))
    }
    fn uuid(&mut self) -> Result<TopicId, RecordError> {
        self.array::<16>()
    }
    fn utf8(&mut self, n: usize) -> Result<String, RecordError> {
        let raw = self.take(n)?;
        String::from_utf8(raw.to_vec()).map_err(|_| RecordError::Invalid("invalid utf-8"))
    }
    fn nullable_string(&mut self) -> Result<Option<String>, RecordError> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        Ok(Some(self.utf8(len as usize)?))
    }
    fn string(&mut self) -> Result<String, RecordError> {
        self.nullable_string()?
            .ok_or(RecordError::Invalid("null non-nullable string"))
    }
    fn uvarint(&mut self) -> Result<u64, RecordError> {
        let mut value: u64 = 0;
        for shift in (0..35).step_by(7) {
            let b = self.array::<1>()?[0];
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RecordError::Invalid("varint too long"))
    }
    fn compact_nullable_string(&mut self) -> Result<Option<String>, RecordError> {
        let n = self.uvarint()?;
        if n == 0 {
            return Ok(None);
        }
        Ok(Some(self.utf8((n - 1) as usize)?))
    }
    fn compact_string(&mut self) -> Result<String, RecordError> {
        self.compact_nullable_string()?
            .ok_or(RecordError::Invalid("null non-nullable string"))
    }
    /// Compact array length; a null array is treated as empty.
    fn compact_array_len(&mut self) -> Result<usize, RecordError> {
        let n = self.uvarint()?;
        let len = n.saturating_sub(1) as usize;
        // Every element takes at least one byte: reject absurd lengths early.
        if len > self.buf.len() {
            return Err(RecordError::Truncated);
        }
        Ok(len)
    }
    fn array_len(&mut self) -> Result<usize, RecordError> {
        let n = self.i32()?;
        let len = n.max(0) as usize;
        if len > self.buf.len() {
            return Err(RecordError::Truncated);
        }
        Ok(len)
    }
    fn string_v(&mut self, flexible: bool) -> Result<String, RecordError> {
        if flexible {
            self.compact_string()
        } else {
            self.string()
        }
    }
    fn nullable_string_v(&mut self, flexible: bool) -> Result<Option<String>, RecordError> {
        if flexible {
            self.compact_nullable_string()
        } else {
            self.nullable_string()
        }
    }
    fn array_len_v(&mut self, flexible: bool) -> Result<usize, RecordError> {
        if flexible {
            self.compact_array_len()
        } else {
            self.array_len()
        }
    }
    fn bytes_v(&mut self, flexible: bool) -> Result<Bytes, RecordError> {
        let len = if flexible {
            let n = self.uvarint()?;
            n.saturating_sub(1) as usize
        } else {
            self.i32()?.max(0) as usize
        };
        Ok(Bytes::copy_from_slice(self.take(len)?))
    }
    fn skip_tags(&mut self) -> Result<(), RecordError> {
        let n = self.uvarint()?;
        for _ in 0..n {
            let _tag = self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.take(size)?;
        }
        Ok(())
    }
    fn topic_partitions(&mut self) -> Result<Vec<TopicPartitions>, RecordError> {
        let n = self.compact_array_len()?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let topic_id = self.uuid()?;
            let m = self.compact_array_len()?;
            let mut partitions = Vec::with_capacity(m);
            for _ in 0..m {
                partitions.push(self.i32()?);
            }
            self.skip_tags()?;
            out.push(TopicPartitions { topic_id, partitions });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(record: Record) {
        let (k, v) = record.encode();
        let decoded = Record::decode(&k, v.as_deref()).expect("decode");
        assert_eq!(decoded, record);
    }

    fn tid(n: u8) -> TopicId {
        [n; 16]
    }

    #[test]
    fn offset_commit_roundtrip_v3_and_v1() {
        let key = RecordKey::OffsetCommit {
            group: "g".into(),
            topic: "t".into(),
            partition: 7,
        };
        roundtrip(Record::new(
            key.clone(),
            RecordValue::OffsetCommit(OffsetCommitValue {
                offset: 42,
                leader_epoch: 3,
                metadata: "meta".into(),
                commit_timestamp: 1000,
                expire_timestamp: None,
            }),
        ));
        roundtrip(Record::new(
            key.clone(),
            RecordValue::OffsetCommit(OffsetCommitValue {
                offset: 42,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp: 1000,
                expire_timestamp: Some(5000),
            }),
        ));
        roundtrip(Record::tombstone(key));
    }

    #[test]
    fn offset_commit_key_and_value_match_kafka_bytes() {
        let key = RecordKey::OffsetCommit {
            group: "g".into(),
            topic: "t".into(),
            partition: 1,
        };
        assert_eq!(&key.encode()[..], &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 1]);
        let value = RecordValue::OffsetCommit(OffsetCommitValue {
            offset: 5,
            leader_epoch: -1,
            metadata: "m".into(),
            commit_timestamp: 9,
            expire_timestamp: None,
        });
        assert_eq!(
            &value.encode()[..],
            &[0, 3, 0, 0, 0, 0, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0, 1, b'm', 0, 0, 0, 0, 0, 0, 0, 9]
        );
    }

    #[test]
    fn offset_commit_value_decodes_old_and_flexible_versions() {
        // v0: offset, metadata, commit timestamp.
        let mut v0 = vec![0, 0];
        v0.extend_from_slice(&10i64.to_be_bytes());
        v0.extend_from_slice(&[0, 0]);
        v0.extend_from_slice(&77i64.to_be_bytes());
        let v = RecordValue::decode(1, &v0).unwrap();
        assert_eq!(
            v,
            RecordValue::OffsetCommit(OffsetCommitValue {
                offset: 10,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp: 77,
                expire_timestamp: None
            })
        );
        // v4: flexible, with an unknown tagged field.
        let mut v4 = vec![0, 4];
        v4.extend_from_slice(&10i64.to_be_bytes());
        v4.extend_from_slice(&2i32.to_be_bytes());
        v4.extend_from_slice(&[2, b'x']);
        v4.extend_from_slice(&77i64.to_be_bytes());
        v4.extend_from_slice(&[1, 5, 2, 0xaa, 0xbb]);
        let v = RecordValue::decode(1, &v4).unwrap();
        assert_eq!(
            v,
            RecordValue::OffsetCommit(OffsetCommitValue {
                offset: 10,
                leader_epoch: 2,
                metadata: "x".into(),
                commit_timestamp: 77,
                expire_timestamp: None
            })
        );
    }

    #[test]
    fn group_metadata_roundtrip() {
        let key = RecordKey::GroupMetadata { group: "grp".into() };
        assert_eq!(&key.encode()[..], &[0, 2, 0, 3, b'g', b'r', b'p']);
        roundtrip(Record::new(
            key.clone(),
            RecordValue::GroupMetadata(GroupMetadataValue {
                protocol_type: "consumer".into(),
                generation: 4,
                protocol: Some("range".into()),
                leader: Some("m1".into()),
                current_state_timestamp: 123,
                members: vec![GroupMetadataMember {
                    member_id: "m1".into(),
                    group_instance_id: Some("i1".into()),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout: 300000,
                    session_timeout: 45000,
                    subscription: Bytes::from_static(b"sub"),
                    assignment: Bytes::from_static(b"asg"),
                }],
            }),
        ));
        roundtrip(Record::new(
            key.clone(),
            RecordValue::GroupMetadata(GroupMetadataValue {
                protocol_type: String::new(),
                generation: 0,
                protocol: None,
                leader: None,
                current_state_timestamp: -1,
                members: vec![],
            }),
        ));
        roundtrip(Record::tombstone(key));
    }

    #[test]
    fn consumer_group_records_roundtrip() {
        let g = "cg".to_string();
        roundtrip(Record::new(
            RecordKey::ConsumerGroupMetadata { group: g.clone() },
            RecordValue::ConsumerGroupMetadata { epoch: 9 },
        ));
        roundtrip(Record::new(
            RecordKey::ConsumerGroupPartitionMetadata { group: g.clone() },
            RecordValue::ConsumerGroupPartitionMetadata(vec![TopicMetadataEntry {
                topic_id: tid(1),
                topic_name: "foo".into(),
                num_partitions: 6,
            }]),
        ));
        roundtrip(Record::new(
            RecordKey::ConsumerGroupMemberMetadata {
                group: g.clone(),
                member_id: "m".into(),
            },
            RecordValue::ConsumerGroupMemberMetadata(ConsumerMemberMetadataValue {
                instance_id: None,
                rack_id: Some("r1".into()),
                client_id: "c".into(),
                client_host: "h".into(),
                subscribed_topic_names: vec!["foo".into(), "bar".into()],
                subscribed_topic_regex: None,
                rebalance_timeout_ms: 5000,
                server_assignor: Some("range".into()),
            }),
        ));
        roundtrip(Record::new(
            RecordKey::ConsumerGroupTargetAssignmentMetadata { group: g.clone() },
            RecordValue::ConsumerGroupTargetAssignmentMetadata { assignment_epoch: 9 },
        ));
        roundtrip(Record::new(
            RecordKey::ConsumerGroupTargetAssignmentMember {
                group: g.clone(),
                member_id: "m".into(),
            },
            RecordValue::ConsumerGroupTargetAssignmentMember(vec![TopicPartitions {
                topic_id: tid(1),
                partitions: vec![0, 2, 4],
            }]),
        ));
        roundtrip(Record::new(
            RecordKey::ConsumerGroupCurrentMemberAssignment {
                group: g.clone(),
                member_id: "m".into(),
            },
            RecordValue::ConsumerGroupCurrentMemberAssignment(CurrentMemberAssignmentValue {
                member_epoch: 9,
                previous_member_epoch: 8,
                state: 1,
                assigned_partitions: vec![TopicPartitions {
                    topic_id: tid(1),
                    partitions: vec![0],
                }],
                partitions_pending_revocation: vec![TopicPartitions {
                    topic_id: tid(2),
                    partitions: vec![1, 3],
                }],
            }),
        ));
        roundtrip(Record::tombstone(RecordKey::ConsumerGroupMemberMetadata {
            group: g,
            member_id: "m".into(),
        }));
    }

    #[test]
    fn decode_rejects_garbage_without_panicking() {
        assert_eq!(RecordKey::decode(&[]), Err(RecordError::Truncated));
        assert_eq!(
            RecordKey::decode(&[0, 42, 0, 0]),
            Err(RecordError::UnknownRecordType(42))
        );
        assert!(RecordKey::decode(&[0, 2, 0, 9, b'a']).is_err());
        assert!(RecordValue::decode(2, &[0, 9]).is_err());
        assert!(RecordValue::decode(2, &[0, 3, 0xff, 0xff]).is_err());
        // Huge array length must not allocate or panic.
        let mut v = vec![0, 3, 0, 0];
        v.extend_from_slice(&0i32.to_be_bytes());
        v.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        v.extend_from_slice(&(-1i64).to_be_bytes());
        v.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(RecordValue::decode(2, &v).is_err());
        // Value of the wrong kind for the key.
        let key = RecordKey::GroupMetadata { group: "g".into() }.encode();
        let value = RecordValue::ConsumerGroupMetadata { epoch: 1 }.encode();
        assert!(Record::decode(&key, Some(&value)).is_err());
        for n in 0..40u8 {
            let junk: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            for t in 0..9 {
                let _ = RecordValue::decode(t, &junk);
            }
            let _ = RecordKey::decode(&junk);
        }
    }

    #[test]
    fn partition_for_group_matches_java() {
        assert_eq!(java_string_hash("foo"), 101574);
        assert_eq!(partition_for_group("foo", 50), 101574 % 50);
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(partition_for_group("", 50), 0);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE in Java.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for_group("polygenelubricants", 50), 0);
        // A negative hash uses the absolute value (Utils.abs), not a bit mask.
        let h = java_string_hash("console-consumer-12345");
        assert_eq!(partition_for_group("console-consumer-12345", 50), h.wrapping_abs() % 50);
        assert_eq!(java_string_hash("hello world"), 1794106052);
        let neg = "group-a-very-long-name";
        let hn = java_string_hash(neg);
        assert_eq!(partition_for_group(neg, 7), hn.wrapping_abs() % 7);
        // Non-BMP characters hash over UTF-16 surrogates like Java.
        assert_eq!(java_string_hash("\u{1F600}"), 0xD83D * 31 + 0xDE00);
        assert_eq!(partition_for_group("x", 0), 0);
    }
}
