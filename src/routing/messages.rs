//! Requests and replies exchanged between shards (all `Send`).

use bytes::Bytes;

use crate::metadata::controller::{ConfigChange, ConfigTarget, CreateTopic};
use crate::metadata::MetaUpdate;
use crate::protocol::error::ApiError;

/// Records for one partition.
pub struct ProducePart {
    pub topic: String,
    pub partition: i32,
    pub records: Bytes,
    /// Size of the request frame `records` is a zero-copy slice of (what a
    /// cached batch keeps alive), or `records.len()` when it owns its bytes.
    pub frame_len: usize,
    /// The records as the connection's shard validated them (yielding as it
    /// went); None: validate at the append.
    pub validated: Option<crate::record::ValidatedBatches>,
}

#[derive(Clone, Debug, Default)]
pub struct ProducePartResult {
    pub error: i16,
    pub message: Option<String>,
    pub base_offset: i64,
    pub log_append_time: i64,
    pub log_start_offset: i64,
    /// Per-record errors (KIP-467): index of the record in its batch and
    /// an optional message. The other records of the batch fail too.
    pub record_errors: Vec<(i32, Option<String>)>,
}

pub struct FetchPart {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub max_bytes: usize,
}

#[derive(Clone, Debug, Default)]
pub struct FetchPartResult {
    pub error: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// Whole record batches, in order.
    pub batches: Vec<Bytes>,
}

impl FetchPartResult {
    pub fn bytes(&self) -> usize {
        self.batches.iter().map(|b| b.len()).sum()
    }
}

/// Wait until any listed partition's high watermark passes its offset.
pub struct WatchPart {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

pub struct ListOffsetsPart {
    pub topic: String,
    pub partition: i32,
    pub timestamp: i64,
}

#[derive(Clone, Debug, Default)]
pub struct ListOffsetsPartResult {
    pub error: i16,
    pub timestamp: i64,
    pub offset: i64,
    pub leader_epoch: i32,
}

/// Metadata changes, handled by the controller (shard 0).
pub enum ControllerOp {
    CreateTopics {
        topics: Vec<CreateTopic>,
        validate_only: bool,
    },
    DeleteTopics {
        names: Vec<String>,
    },
    CreatePartitions {
        topics: Vec<(String, i32)>,
        validate_only: bool,
    },
    /// AlterConfigs / IncrementalAlterConfigs on topics and groups.
    AlterConfigs {
        resources: Vec<(ConfigTarget, ConfigChange)>,
        validate_only: bool,
    },
}

pub enum ShardRequest {
    Produce {
        parts: Vec<ProducePart>,
        acks: i16,
        timeout_ms: i32,
    },
    /// `min_one`: the first batch found may exceed `max_bytes` (KIP-74).
    Fetch {
        parts: Vec<FetchPart>,
        max_bytes: usize,
        min_one: bool,
    },
    Watch {
        parts: Vec<WatchPart>,
        max_wait_ms: u64,
    },
    ListOffsets {
        parts: Vec<ListOffsetsPart>,
    },
    Controller(ControllerOp),
    /// From the controller: apply a metadata change (open/remove logs).
    Apply(MetaUpdate),
    /// For the shard coordinating a consumer group.
    Group(crate::shard::groups::GroupRequest),
    /// A metrics snapshot for a scrape.
    Metrics,
    /// A new idempotent producer id (controller, shard 0).
    AllocateProducerId,
}

pub enum ShardResponse {
    Produce(Vec<ProducePartResult>),
    Fetch(Vec<FetchPartResult>),
    /// Something changed, or the wait timed out.
    Watch,
    ListOffsets(Vec<ListOffsetsPartResult>),
    /// Per item of the controller op: Ok or an error, in request order.
    Controller(Vec<Result<Option<crate::metadata::TopicMeta>, ApiError>>),
    Applied,
    Group(crate::shard::groups::GroupResponse),
    Metrics(Box<crate::metrics::Snapshot>),
    /// A producer id, or the Kafka error code.
    ProducerId(Result<i64, i16>),
}
