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
    /// The log's byte counter at that high watermark
    /// ([`crate::log::PartitionLog::hw_bytes`]), read together with it: a
    /// parked fetch counts the bytes that arrive past it.
    pub hw_bytes: u64,
    /// Record batches, in order: each whole in one piece (read from a
    /// segment file) or as two pieces, header then body (from the read
    /// cache). [`crate::shard::ops::whole_batches`] joins them.
    pub batches: Vec<Bytes>,
}

impl FetchPartResult {
    pub fn bytes(&self) -> usize {
        self.batches.iter().map(|b| b.len()).sum()
    }
}

/// One partition of a parked fetch: the bytes that become readable past
/// `hw_bytes` (the partition's byte counter when the fetch read it) count,
/// up to `room` (what the partition may still add to the response).
#[derive(Clone, Debug)]
pub struct WatchPart {
    pub topic: String,
    pub partition: i32,
    pub hw_bytes: u64,
    pub room: u64,
}

/// A parked fetch's watch on one shard, answered by [`WatchReport`].
#[derive(Clone, Debug)]
pub struct WatchSpec {
    pub parts: Vec<WatchPart>,
    /// Bytes the whole fetch still misses for its `min_bytes`: the watch
    /// answers once its own partitions have that many.
    pub need: u64,
    /// When the fetch spans several shards: also answer as soon as this
    /// shard's bytes exceed what it reported last (the handler sums the
    /// shards' reports). None when this shard is the only one.
    pub report_above: Option<u64>,
    /// When the fetch stops waiting (the same clock on every shard).
    pub deadline: crate::io::time::Instant,
}

/// What a watch found: the bytes its partitions gained (capped per
/// partition), and whether the fetch must stop waiting now (a partition
/// failed, was deleted or left the shard; the deadline passed; the shard is
/// shutting down).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchReport {
    pub bytes: u64,
    pub stop: bool,
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

/// DeleteRecords of one partition: move its log start to `offset` (-1:
/// the high watermark).
pub struct DeleteRecordsPart {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeleteRecordsPartResult {
    pub error: i16,
    /// The log start offset after the request (-1 on error).
    pub low_watermark: i64,
}

/// The size on disk of one partition (DescribeLogDirs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionSize {
    pub topic: String,
    pub partition: i32,
    pub bytes: u64,
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
    /// Park until the watched partitions gained enough bytes (see
    /// [`WatchSpec`]). Long-running: cancelled when the asker drops it.
    Watch(WatchSpec),
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
    /// The partitions of this shard whose log is offline (after a storage
    /// error, until a restart), for Metadata.
    OfflinePartitions,
    DeleteRecords {
        parts: Vec<DeleteRecordsPart>,
    },
    /// The size of every partition of the shard (of these topics only,
    /// when given), for DescribeLogDirs.
    PartitionSizes {
        topics: Option<Vec<String>>,
    },
}

impl ShardRequest {
    /// Whether the request only waits once started, so that the shard
    /// serving it may drop it when the asker is gone (its connection
    /// closed): watches of parked fetches and the ack wait of a produce
    /// (whose appends are done when it is started).
    pub fn is_abortable(&self) -> bool {
        matches!(self, ShardRequest::Watch(_) | ShardRequest::Produce { .. })
    }
}

pub enum ShardResponse {
    Produce(Vec<ProducePartResult>),
    Fetch(Vec<FetchPartResult>),
    Watch(WatchReport),
    ListOffsets(Vec<ListOffsetsPartResult>),
    /// Per item of the controller op: Ok or an error, in request order.
    Controller(Vec<Result<Option<crate::metadata::TopicMeta>, ApiError>>),
    Applied,
    Group(crate::shard::groups::GroupResponse),
    Metrics(Box<crate::metrics::Snapshot>),
    /// A producer id, or the Kafka error code.
    ProducerId(Result<i64, i16>),
    /// (topic, partition) of each offline partition.
    OfflinePartitions(Vec<(String, i32)>),
    DeleteRecords(Vec<DeleteRecordsPartResult>),
    PartitionSizes(Vec<PartitionSize>),
}
