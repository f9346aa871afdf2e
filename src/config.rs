//! Broker and topic configuration, keyed by Kafka's own property names.
//!
//! The broker reads an optional TOML file whose keys are Kafka broker
//! properties (`num.partitions`, `log.segment.bytes`, …); command-line flags
//! override it. Topic-level settings (`segment.bytes`, `retention.ms`, …)
//! resolve against the broker's `log.*` defaults exactly as Kafka does.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::io::file::IoMode;

/// Type of a config value, for validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigType {
    Bool,
    Int,
    Long,
    String,
    List,
    Double,
}

impl ConfigType {
    /// Kafka's DescribeConfigs config_type code.
    pub fn kafka_code(self) -> i8 {
        match self {
            ConfigType::Bool => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
        }
    }
}

/// One topic-level (or group-level, see [`GROUP_CONFIGS`]) property and the
/// broker property that provides its default.
pub struct TopicConfigDef {
    pub name: &'static str,
    /// The broker property that sets the default; empty when there is none
    /// (Kafka's throttled-replica lists).
    pub broker_name: &'static str,
    pub default: &'static str,
    pub ty: ConfigType,
    pub doc: &'static str,
}

/// Topic-level properties ringlog understands.
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    TopicConfigDef { name: "cleanup.policy", broker_name: "log.cleanup.policy", default: "delete", ty: ConfigType::List, doc: "delete or compact" },
    TopicConfigDef { name: "compression.type", broker_name: "compression.type", default: "producer", ty: ConfigType::String, doc: "final compression of the topic" },
    TopicConfigDef { name: "flush.messages", broker_name: "log.flush.interval.messages", default: "9223372036854775807", ty: ConfigType::Long, doc: "acks wait for fsync unless explicitly relaxed; with a value > 1 acknowledged data may be lost on a crash until that many messages accumulated" },
    TopicConfigDef { name: "flush.ms", broker_name: "log.flush.interval.ms", default: "9223372036854775807", ty: ConfigType::Long, doc: "see flush.messages" },
    TopicConfigDef { name: "index.interval.bytes", broker_name: "log.index.interval.bytes", default: "4096", ty: ConfigType::Int, doc: "bytes between offset index entries" },
    TopicConfigDef { name: "max.message.bytes", broker_name: "message.max.bytes", default: "1048588", ty: ConfigType::Int, doc: "largest record batch accepted" },
    TopicConfigDef { name: "message.timestamp.type", broker_name: "log.message.timestamp.type", default: "CreateTime", ty: ConfigType::String, doc: "CreateTime or LogAppendTime" },
    TopicConfigDef { name: "message.timestamp.after.max.ms", broker_name: "log.message.timestamp.after.max.ms", default: "3600000", ty: ConfigType::Long, doc: "CreateTime topics: a batch with a record timestamp more than this far ahead of the broker's clock is refused with INVALID_TIMESTAMP (KIP-937)" },
    TopicConfigDef { name: "message.timestamp.before.max.ms", broker_name: "log.message.timestamp.before.max.ms", default: "9223372036854775807", ty: ConfigType::Long, doc: "CreateTime topics: a batch with a record timestamp more than this far behind the broker's clock is refused with INVALID_TIMESTAMP (KIP-937)" },
    TopicConfigDef { name: "min.insync.replicas", broker_name: "min.insync.replicas", default: "1", ty: ConfigType::Int, doc: "replicas required for acks=all" },
    TopicConfigDef { name: "retention.bytes", broker_name: "log.retention.bytes", default: "-1", ty: ConfigType::Long, doc: "size retention per partition" },
    TopicConfigDef { name: "retention.ms", broker_name: "log.retention.ms", default: "604800000", ty: ConfigType::Long, doc: "time retention" },
    TopicConfigDef { name: "segment.bytes", broker_name: "log.segment.bytes", default: "1073741824", ty: ConfigType::Int, doc: "segment file size before rolling" },
    TopicConfigDef { name: "segment.index.bytes", broker_name: "log.index.size.max.bytes", default: "10485760", ty: ConfigType::Int, doc: "maximum offset index size" },
    TopicConfigDef { name: "segment.ms", broker_name: "log.roll.ms", default: "604800000", ty: ConfigType::Long, doc: "segment age before rolling" },
    TopicConfigDef { name: "unclean.leader.election.enable", broker_name: "unclean.leader.election.enable", default: "false", ty: ConfigType::Bool, doc: "single node: no effect" },
    // Kafka's other topic properties. They are validated, stored and
    // described like the rest so that tools and clients that set them (topic
    // templates, librdkafka's tests, Kafka Connect/Streams internal topics)
    // work; the features they tune (log cleaner, tiered storage, replica
    // throttling, preallocation) are not implemented yet and the values have
    // no effect until they are.
    TopicConfigDef { name: "delete.retention.ms", broker_name: "log.cleaner.delete.retention.ms", default: "86400000", ty: ConfigType::Long, doc: "how long tombstones are kept on compacted topics" },
    TopicConfigDef { name: "file.delete.delay.ms", broker_name: "log.segment.delete.delay.ms", default: "60000", ty: ConfigType::Long, doc: "delay before a deleted segment's files are removed" },
    TopicConfigDef { name: "follower.replication.throttled.replicas", broker_name: "", default: "", ty: ConfigType::List, doc: "single node: no effect" },
    TopicConfigDef { name: "leader.replication.throttled.replicas", broker_name: "", default: "", ty: ConfigType::List, doc: "single node: no effect" },
    TopicConfigDef { name: "local.retention.bytes", broker_name: "log.local.retention.bytes", default: "-2", ty: ConfigType::Long, doc: "tiered storage (not implemented)" },
    TopicConfigDef { name: "local.retention.ms", broker_name: "log.local.retention.ms", default: "-2", ty: ConfigType::Long, doc: "tiered storage (not implemented)" },
    TopicConfigDef { name: "max.compaction.lag.ms", broker_name: "log.cleaner.max.compaction.lag.ms", default: "9223372036854775807", ty: ConfigType::Long, doc: "longest a record stays uncompacted" },
    TopicConfigDef { name: "min.cleanable.dirty.ratio", broker_name: "log.cleaner.min.cleanable.ratio", default: "0.5", ty: ConfigType::Double, doc: "share of the log uncleaned before the cleaner runs" },
    TopicConfigDef { name: "min.compaction.lag.ms", broker_name: "log.cleaner.min.compaction.lag.ms", default: "0", ty: ConfigType::Long, doc: "shortest a record stays uncompacted" },
    TopicConfigDef { name: "preallocate", broker_name: "log.preallocate", default: "false", ty: ConfigType::Bool, doc: "preallocate segment files (no effect)" },
    TopicConfigDef { name: "remote.storage.enable", broker_name: "", default: "false", ty: ConfigType::Bool, doc: "tiered storage (not implemented; only false is accepted)" },
    TopicConfigDef { name: "segment.jitter.ms", broker_name: "log.roll.jitter.ms", default: "0", ty: ConfigType::Long, doc: "random jitter subtracted from segment.ms (not applied yet)" },
];

/// Group-level properties (Kafka's `GroupConfig`, KIP-848), set with
/// IncrementalAlterConfigs on a GROUP resource and stored in the cluster
/// metadata. Kafka 4's share-group properties are not listed: ringlog has no
/// share groups.
pub const GROUP_CONFIGS: &[TopicConfigDef] = &[
    TopicConfigDef {
        name: "consumer.session.timeout.ms",
        broker_name: "group.consumer.session.timeout.ms",
        default: "45000",
        ty: ConfigType::Int,
        doc: "session timeout of the group's consumer-protocol (KIP-848) members",
    },
    TopicConfigDef {
        name: "consumer.heartbeat.interval.ms",
        broker_name: "group.consumer.heartbeat.interval.ms",
        default: "5000",
        ty: ConfigType::Int,
        doc: "heartbeat interval of the group's consumer-protocol (KIP-848) members",
    },
];

/// Broker-only properties and their defaults (besides the `log.*` ones above).
pub const BROKER_CONFIGS: &[(&str, &str, ConfigType)] = &[
    ("node.id", "0", ConfigType::Int),
    ("broker.id", "0", ConfigType::Int),
    ("num.partitions", "1", ConfigType::Int),
    ("default.replication.factor", "1", ConfigType::Int),
    ("auto.create.topics.enable", "true", ConfigType::Bool),
    ("delete.topic.enable", "true", ConfigType::Bool),
    ("socket.request.max.bytes", "104857600", ConfigType::Int),
    // Memory and connection limits (docs/design/memory.md). Kafka's
    // queued.max.request.bytes defaults to -1 (unbounded); ringlog reads -1
    // (and any value <= 0) as its bounded default, socket.request.max.bytes
    // per shard. Broker-wide limits are split per shard as ceil(limit/shards).
    ("queued.max.request.bytes", "-1", ConfigType::Long),
    ("max.connections", "2147483647", ConfigType::Int),
    ("max.connections.per.ip", "2147483647", ConfigType::Int),
    ("max.connections.per.ip.overrides", "", ConfigType::String),
    ("connections.max.idle.ms", "600000", ConfigType::Long),
    ("ringlog.max.inflight.requests.per.connection", "64", ConfigType::Int),
    ("ringlog.request.receive.timeout.ms", "30000", ConfigType::Long),
    ("fetch.max.bytes", "57671680", ConfigType::Int),
    ("log.dirs", "./data", ConfigType::String),
    ("offsets.topic.num.partitions", "50", ConfigType::Int),
    ("offsets.topic.segment.bytes", "104857600", ConfigType::Int),
    // The log cleaner (src/shard/cleaner.rs); buffer sizes and the IO
    // rate are broker-wide, split over the shards.
    ("log.cleaner.enable", "true", ConfigType::Bool),
    ("log.cleaner.threads", "1", ConfigType::Int),
    ("log.cleaner.dedupe.buffer.size", "134217728", ConfigType::Long),
    ("log.cleaner.io.buffer.load.factor", "0.9", ConfigType::Double),
    ("log.cleaner.io.buffer.size", "524288", ConfigType::Int),
    ("log.cleaner.backoff.ms", "15000", ConfigType::Long),
    (
        "log.cleaner.io.max.bytes.per.second",
        "1.7976931348623157E308",
        ConfigType::Double,
    ),
    ("ringlog.cleaner.shares", "100", ConfigType::Int),
    ("ringlog.cleaner.busy.share", "0.1", ConfigType::Double),
    ("offsets.topic.compression.codec", "0", ConfigType::Int),
    ("offsets.retention.minutes", "10080", ConfigType::Int),
    ("offsets.retention.check.interval.ms", "600000", ConfigType::Long),
    ("offset.metadata.max.bytes", "4096", ConfigType::Int),
    ("log.retention.check.interval.ms", "300000", ConfigType::Long),
    ("log.flush.offset.checkpoint.interval.ms", "60000", ConfigType::Int),
    ("producer.id.expiration.ms", "86400000", ConfigType::Int),
    ("group.initial.rebalance.delay.ms", "3000", ConfigType::Int),
    ("group.min.session.timeout.ms", "6000", ConfigType::Int),
    ("group.max.session.timeout.ms", "1800000", ConfigType::Int),
    ("group.max.size", "2147483647", ConfigType::Int),
    ("group.classic.max.size", "2147483647", ConfigType::Int),
    ("group.consumer.session.timeout.ms", "45000", ConfigType::Int),
    ("group.consumer.heartbeat.interval.ms", "5000", ConfigType::Int),
    ("group.consumer.min.session.timeout.ms", "45000", ConfigType::Int),
    ("group.consumer.max.session.timeout.ms", "60000", ConfigType::Int),
    ("group.consumer.min.heartbeat.interval.ms", "5000", ConfigType::Int),
    ("group.consumer.max.heartbeat.interval.ms", "15000", ConfigType::Int),
    ("group.consumer.max.size", "2147483647", ConfigType::Int),
    ("group.consumer.assignors", "uniform,range", ConfigType::List),
    ("ringlog.io.mode", "direct", ConfigType::String),
    ("ringlog.cache.bytes.per.shard", "67108864", ConfigType::Long),
    ("ringlog.stall.detector.ms", "0", ConfigType::Long),
    ("ringlog.metrics.listen", "", ConfigType::String),
    // Free bytes under which produce is refused (retriable); -1: 5% of the
    // filesystem, at most 1 GiB; 0: off (see src/shard/space.rs).
    ("ringlog.storage.min.free.bytes", "-1", ConfigType::Long),
    ("ringlog.storage.space.check.interval.ms", "1000", ConfigType::Long),
    // The cluster (docs/design/replication.md, 3.1). Kafka's names and
    // defaults; `process.roles` is derived from the voter list.
    ("controller.quorum.voters", "", ConfigType::List),
    ("controller.listener.names", "CONTROLLER", ConfigType::List),
    ("process.roles", "broker,controller", ConfigType::List),
    ("cluster.id", "", ConfigType::String),
    ("broker.rack", "", ConfigType::String),
    ("ringlog.replication.listen", "", ConfigType::String),
    ("ringlog.cluster.experimental", "false", ConfigType::Bool),
    ("offsets.topic.replication.factor", "3", ConfigType::Int),
    ("replica.lag.time.max.ms", "30000", ConfigType::Long),
    ("replica.fetch.max.bytes", "1048576", ConfigType::Int),
    ("replica.fetch.response.max.bytes", "10485760", ConfigType::Int),
    ("replica.fetch.wait.max.ms", "500", ConfigType::Int),
    ("replica.fetch.min.bytes", "1", ConfigType::Int),
    ("replica.fetch.backoff.ms", "1000", ConfigType::Int),
    (
        "replica.high.watermark.checkpoint.interval.ms",
        "5000",
        ConfigType::Long,
    ),
    ("num.replica.fetchers", "1", ConfigType::Int),
    ("broker.heartbeat.interval.ms", "2000", ConfigType::Int),
    ("broker.session.timeout.ms", "9000", ConfigType::Int),
    ("controller.quorum.election.timeout.ms", "1000", ConfigType::Int),
    ("controller.quorum.fetch.timeout.ms", "2000", ConfigType::Int),
    ("auto.leader.rebalance.enable", "true", ConfigType::Bool),
    ("leader.imbalance.check.interval.seconds", "300", ConfigType::Long),
    ("leader.imbalance.per.broker.percentage", "10", ConfigType::Int),
    (
        "metadata.log.max.record.bytes.between.snapshots",
        "20971520",
        ConfigType::Long,
    ),
    ("metadata.log.max.snapshot.interval.ms", "3600000", ConfigType::Long),
    ("controlled.shutdown.enable", "true", ConfigType::Bool),
    ("ringlog.ack.durability", "fsync", ConfigType::String),
    ("ringlog.controlled.shutdown.timeout.ms", "30000", ConfigType::Long),
    ("ringlog.broker.lease", "true", ConfigType::Bool),
    ("ringlog.controller.tick.ms", "100", ConfigType::Int),
];

/// Whether `name` is a broker property ringlog knows.
pub fn is_broker_config(name: &str) -> bool {
    BROKER_CONFIGS.iter().any(|(n, _, _)| *n == name)
        || TOPIC_CONFIGS
            .iter()
            .any(|d| !d.broker_name.is_empty() && d.broker_name == name)
        || matches!(name, "log.retention.hours" | "log.retention.minutes" | "log.roll.hours")
}

/// Check a value against its type.
pub fn validate_value(ty: ConfigType, name: &str, value: &str) -> Result<(), String> {
    let ok = match ty {
        ConfigType::Bool => matches!(value, "true" | "false"),
        ConfigType::Int => value.trim().parse::<i32>().is_ok(),
        ConfigType::Long => value.trim().parse::<i64>().is_ok(),
        ConfigType::Double => value.trim().parse::<f64>().is_ok_and(f64::is_finite),
        ConfigType::String | ConfigType::List => true,
    };
    if !ok {
        return Err(format!("Invalid value {value} for configuration {name}"));
    }
    match name {
        "cleanup.policy" => {
            if value.split(',').all(|p| matches!(p.trim(), "delete" | "compact")) {
                Ok(())
            } else {
                Err(format!("Invalid value {value} for configuration cleanup.policy"))
            }
        }
        "ringlog.ack.durability" => match value {
            "fsync" | "write" => Ok(()),
            _ => Err(format!(
                "Invalid value {value} for configuration ringlog.ack.durability: fsync or write"
            )),
        },
        "message.timestamp.type" => match value {
            "CreateTime" | "LogAppendTime" => Ok(()),
            _ => Err(format!(
                "Invalid value {value} for configuration message.timestamp.type"
            )),
        },
        "compression.type" => match value {
            "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd" => Ok(()),
            _ => Err(format!("Invalid value {value} for configuration compression.type")),
        },
        "segment.bytes" => match value.trim().parse::<i64>() {
            Ok(v) if v >= 14 => Ok(()),
            _ => Err(format!(
                "Invalid value {value} for configuration segment.bytes: must be at least 14"
            )),
        },
        "fetch.max.bytes" => match value.trim().parse::<i64>() {
            Ok(v) if v >= 1024 => Ok(()),
            _ => Err(format!(
                "Invalid value {value} for configuration fetch.max.bytes: must be at least 1024"
            )),
        },
        "max.message.bytes"
        | "index.interval.bytes"
        | "segment.index.bytes"
        | "message.timestamp.after.max.ms"
        | "message.timestamp.before.max.ms"
        | "log.message.timestamp.after.max.ms"
        | "log.message.timestamp.before.max.ms" => match value.trim().parse::<i64>() {
            Ok(v) if v >= 0 => Ok(()),
            _ => Err(format!("Invalid value {value} for configuration {name}")),
        },
        "min.cleanable.dirty.ratio" => match value.trim().parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(()),
            _ => Err(format!(
                "Invalid value {value} for configuration min.cleanable.dirty.ratio: Value must be no more than 1"
            )),
        },
        "remote.storage.enable" => match value {
            "false" => Ok(()),
            _ => Err("Tiered storage is not enabled on this broker (remote.storage.enable)".to_string()),
        },
        _ => Ok(()),
    }
}

/// Typed topic settings after resolving overrides against broker defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub index_interval_bytes: u64,
    pub max_message_bytes: usize,
    pub log_append_time: bool,
    /// `message.timestamp.before.max.ms` (CreateTime topics).
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms` (CreateTime topics).
    pub timestamp_after_max_ms: i64,
    pub flush_messages: i64,
    pub flush_ms: i64,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub compact: bool,
    /// `cleanup.policy` includes `delete`: retention.ms/retention.bytes apply.
    pub delete: bool,
    /// `file.delete.delay.ms`: how long a deleted segment's files stay (as
    /// `*.deleted`) before they are removed.
    pub file_delete_delay_ms: i64,
}

impl TopicConfig {
    /// Resolve a topic's overrides against the broker's settings.
    pub fn resolve(overrides: &BTreeMap<String, String>, broker: &BrokerConfig) -> TopicConfig {
        let get = |name: &str| -> String {
            if let Some(v) = overrides.get(name) {
                return v.clone();
            }
            broker.topic_default(name)
        };
        let long = |name: &str, dflt: i64| get(name).trim().parse::<i64>().unwrap_or(dflt);
        TopicConfig {
            segment_bytes: long("segment.bytes", 1 << 30).max(14) as u64,
            segment_ms: long("segment.ms", 604_800_000).max(1),
            index_interval_bytes: long("index.interval.bytes", 4096).max(0) as u64,
            max_message_bytes: long("max.message.bytes", 1_048_588).max(0) as usize,
            log_append_time: get("message.timestamp.type") == "LogAppendTime",
            timestamp_before_max_ms: long("message.timestamp.before.max.ms", i64::MAX).max(0),
            timestamp_after_max_ms: long("message.timestamp.after.max.ms", 3_600_000).max(0),
            flush_messages: long("flush.messages", i64::MAX),
            flush_ms: long("flush.ms", i64::MAX),
            retention_ms: long("retention.ms", 604_800_000),
            retention_bytes: long("retention.bytes", -1),
            compact: get("cleanup.policy").split(',').any(|p| p.trim() == "compact"),
            delete: get("cleanup.policy").split(',').any(|p| p.trim() == "delete"),
            file_delete_delay_ms: long("file.delete.delay.ms", 60_000).max(0),
        }
    }

    /// Which record timestamps a produce to this topic may carry, with the
    /// broker's clock at `now_ms` (Kafka's `LogValidator` checks, KIP-937).
    pub fn timestamp_policy(&self, now_ms: i64) -> crate::record::TimestampPolicy {
        if self.log_append_time {
            crate::record::TimestampPolicy::LogAppendTime
        } else {
            crate::record::TimestampPolicy::CreateTime {
                now_ms,
                before_max_ms: self.timestamp_before_max_ms,
                after_max_ms: self.timestamp_after_max_ms,
            }
        }
    }

    /// Acks wait for fdatasync unless the topic explicitly relaxed flushing.
    pub fn sync_on_ack(&self) -> bool {
        self.flush_messages <= 1 || (self.flush_messages == i64::MAX && self.flush_ms == i64::MAX)
    }
}

/// Everything the broker process is started with.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub node_id: i32,
    /// The node's place in a cluster (single node without
    /// `controller.quorum.voters`).
    pub cluster: crate::cluster::ClusterSettings,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub advertised_host: String,
    pub advertised_port: i32,
    pub shards: usize,
    pub cluster_id: String,
    pub io_mode: IoMode,
    pub cache_bytes_per_shard: usize,
    pub num_partitions: i32,
    pub auto_create_topics: bool,
    pub socket_request_max_bytes: usize,
    /// Kafka's `fetch.max.bytes`: the most a Fetch response carries, whatever
    /// the request asks (the first batch is still returned whole, KIP-74).
    pub fetch_max_bytes: usize,
    pub offsets_topic_partitions: i32,
    /// `queued.max.request.bytes`, broker-wide: request bytes being read and
    /// queued (and, for produce, staged until written). Each shard gets
    /// [`BrokerConfig::request_budget_per_shard`].
    pub queued_max_request_bytes: usize,
    /// `max.connections` (broker-wide; each shard accepts its share).
    pub max_connections: usize,
    /// `max.connections.per.ip` (broker-wide; each shard allows its share).
    pub max_connections_per_ip: usize,
    /// `max.connections.per.ip.overrides`: per-address limits (IP addresses).
    pub max_connections_per_ip_overrides: BTreeMap<std::net::IpAddr, usize>,
    /// `connections.max.idle.ms`: close a connection with nothing in progress
    /// that has received and sent nothing for this long.
    pub connections_max_idle_ms: u64,
    /// `ringlog.max.inflight.requests.per.connection`: requests of one
    /// connection being worked on or waiting to be written before its reader
    /// stops reading.
    pub max_inflight_per_connection: usize,
    /// `ringlog.request.receive.timeout.ms`: a request must arrive whole
    /// (including any wait for request memory) within this long of its size
    /// prefix, or the connection is closed (slow senders cannot hold request
    /// memory).
    pub request_receive_timeout_ms: u64,
    /// Where to serve Prometheus metrics (HTTP), if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Properties given in the config file (Kafka names → value), kept for
    /// DescribeConfigs and topic defaults.
    pub properties: BTreeMap<String, String>,
}

impl BrokerConfig {
    /// A numeric broker property from the config file, or `default` when it
    /// is absent or not a number.
    pub fn prop_i64(&self, name: &str, default: i64) -> i64 {
        self.properties
            .get(name)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(default)
    }

    /// The broker default for a topic-level property (Kafka: the matching
    /// `log.*` broker property, else the built-in default).
    pub fn topic_default(&self, topic_name: &str) -> String {
        let Some(def) = TOPIC_CONFIGS.iter().find(|d| d.name == topic_name) else {
            return String::new();
        };
        if let Some(v) = (!def.broker_name.is_empty())
            .then(|| self.properties.get(def.broker_name))
            .flatten()
        {
            return v.clone();
        }
        match topic_name {
            "retention.ms" => {
                if let Some(h) = self
                    .properties
                    .get("log.retention.minutes")
                    .and_then(|v| v.parse::<i64>().ok())
                {
                    return (h * 60_000).to_string();
                }
                if let Some(h) = self
                    .properties
                    .get("log.retention.hours")
                    .and_then(|v| v.parse::<i64>().ok())
                {
                    return (h * 3_600_000).to_string();
                }
            }
            "segment.ms" => {
                if let Some(h) = self
                    .properties
                    .get("log.roll.hours")
                    .and_then(|v| v.parse::<i64>().ok())
                {
                    return (h * 3_600_000).to_string();
                }
            }
            _ => {}
        }
        def.default.to_string()
    }

    /// The broker default for a group-level property: the matching
    /// `group.consumer.*` broker property.
    pub fn group_default(&self, group_name: &str) -> String {
        GROUP_CONFIGS
            .iter()
            .find(|d| d.name == group_name)
            .map(|d| {
                self.broker_value(d.broker_name)
                    .map(|(v, _)| v)
                    .unwrap_or_else(|| d.default.to_string())
            })
            .unwrap_or_default()
    }

    /// Value and whether it was set explicitly, for a broker property.
    pub fn broker_value(&self, name: &str) -> Option<(String, bool)> {
        if let Some(v) = self.properties.get(name) {
            return Some((v.clone(), true));
        }
        match name {
            "node.id" | "broker.id" => return Some((self.node_id.to_string(), false)),
            "process.roles" => return Some((self.cluster.process_roles(self.node_id).to_string(), false)),
            "controller.quorum.voters" => {
                let v: Vec<String> = self.cluster.voters.iter().map(|v| v.to_string()).collect();
                return Some((v.join(","), false));
            }
            "cluster.id" => return Some((self.cluster_id.clone(), false)),
            "log.dirs" => return Some((self.data_dir.display().to_string(), false)),
            "num.partitions" => return Some((self.num_partitions.to_string(), false)),
            "auto.create.topics.enable" => return Some((self.auto_create_topics.to_string(), false)),
            "socket.request.max.bytes" => return Some((self.socket_request_max_bytes.to_string(), false)),
            "queued.max.request.bytes" => return Some((self.queued_max_request_bytes.to_string(), false)),
            "fetch.max.bytes" => return Some((self.fetch_max_bytes.to_string(), false)),
            _ => {}
        }
        if let Some((_, d, _)) = BROKER_CONFIGS.iter().find(|(n, _, _)| *n == name) {
            return Some((d.to_string(), false));
        }
        TOPIC_CONFIGS
            .iter()
            .find(|d| !d.broker_name.is_empty() && d.broker_name == name)
            .map(|d| (d.default.to_string(), false))
    }

    /// All broker property names, sorted.
    pub fn broker_config_names() -> Vec<&'static str> {
        let mut v: Vec<&'static str> = BROKER_CONFIGS.iter().map(|(n, _, _)| *n).collect();
        v.extend(TOPIC_CONFIGS.iter().map(|d| d.broker_name).filter(|n| !n.is_empty()));
        v.sort_unstable();
        v.dedup();
        v
    }

    pub fn broker_config_type(name: &str) -> ConfigType {
        BROKER_CONFIGS
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, _, t)| *t)
            .or_else(|| TOPIC_CONFIGS.iter().find(|d| d.broker_name == name).map(|d| d.ty))
            .unwrap_or(ConfigType::String)
    }
}

/// Command-line overrides applied on top of the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub advertised_listener: Option<String>,
    pub shards: Option<usize>,
    pub config_file: Option<PathBuf>,
    pub metrics_listen: Option<String>,
    /// `--node-id` (`node.id`).
    pub node_id: Option<i32>,
    /// `--controller-quorum-voters` (`controller.quorum.voters`).
    pub controller_quorum_voters: Option<String>,
    /// `--controller-listen` (the `CONTROLLER://` entry of `listeners`).
    pub controller_listen: Option<String>,
    /// `--replication-listen` (`ringlog.replication.listen`).
    pub replication_listen: Option<String>,
    /// `--cluster-id` (`cluster.id`).
    pub cluster_id: Option<String>,
}

/// Split Kafka's `listeners` (`PLAINTEXT://h:p,CONTROLLER://h:p`) into the
/// client listener and the controller listener (the entry named by
/// `controller.listener.names`). An entry without a name is the client's.
fn split_listeners(listeners: &str, controller_names: &str) -> anyhow::Result<(Option<String>, Option<String>)> {
    let controller: Vec<&str> = controller_names.split(',').map(str::trim).collect();
    let (mut client, mut ctrl) = (None, None);
    for entry in listeners.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, addr) = match entry.split_once("://") {
            Some((n, a)) => (n, a),
            None => ("PLAINTEXT", entry),
        };
        let slot = if controller.contains(&name) {
            &mut ctrl
        } else {
            &mut client
        };
        if slot.is_some() {
            bail!("listeners: more than one {name} listener in {listeners:?} (ringlog serves one client and one controller listener)");
        }
        *slot = Some(addr.to_string());
    }
    Ok((client, ctrl))
}

fn toml_to_string(v: &toml::Value) -> Option<String> {
    Some(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(a) => a.iter().filter_map(toml_to_string).collect::<Vec<_>>().join(","),
        _ => return None,
    })
}

/// Flatten nested TOML tables into dotted Kafka property names, so that both
/// `"log.segment.bytes" = 1` and `[log.segment] bytes = 1` work.
fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) -> anyhow::Result<()> {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out)?,
            other => {
                let s = toml_to_string(other).with_context(|| format!("unsupported value for {key}"))?;
                out.insert(key, s);
            }
        }
    }
    Ok(())
}

fn parse_host_port(s: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = s
        .rsplit_once(':')
        .with_context(|| format!("expected HOST:PORT, got {s:?}"))?;
    let port: u16 = port.parse().with_context(|| format!("bad port in {s:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    Ok((host, port))
}

impl BrokerConfig {
    /// Build the configuration: embedded defaults, then the file, then flags.
    pub fn load(o: &Overrides) -> anyhow::Result<BrokerConfig> {
        let mut props = BTreeMap::new();
        if let Some(path) = &o.config_file {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
            let table: toml::Table = text
                .parse()
                .with_context(|| format!("parsing config file {}", path.display()))?;
            flatten("", &table, &mut props)?;
        }
        Self::from_properties(o, props)
    }

    /// Build the configuration from Kafka-named properties (what a config
    /// file holds, already flattened) and the command-line overrides. The
    /// simulation builds its brokers' configuration this way.
    pub fn from_properties(o: &Overrides, props: BTreeMap<String, String>) -> anyhow::Result<BrokerConfig> {
        for (k, v) in &props {
            if !is_broker_config(k) && !k.starts_with("listeners") && !k.starts_with("advertised.") {
                tracing::warn!(property = %k, "unknown broker property ignored");
                continue;
            }
            let ty = Self::broker_config_type(k);
            validate_value(ty, k, v).map_err(|e| anyhow::anyhow!(e))?;
        }
        let get = |k: &str| props.get(k).cloned();
        let data_dir = o
            .data_dir
            .clone()
            .or_else(|| get("log.dirs").map(|d| PathBuf::from(d.split(',').next().unwrap_or("./data"))))
            .unwrap_or_else(|| PathBuf::from("./data"));
        let (file_client, file_controller) = split_listeners(
            &get("listeners").unwrap_or_default(),
            &get("controller.listener.names").unwrap_or_else(|| "CONTROLLER".to_string()),
        )?;
        let listen_s = o
            .listen
            .clone()
            .or(file_client)
            .unwrap_or_else(|| "0.0.0.0:9092".to_string());
        let (lhost, lport) = parse_host_port(&listen_s)?;
        let lhost = if lhost.is_empty() { "0.0.0.0".to_string() } else { lhost };
        let listen: SocketAddr = format!("{lhost}:{lport}")
            .parse()
            .or_else(|_| {
                std::net::ToSocketAddrs::to_socket_addrs(&(lhost.as_str(), lport))
                    .ok()
                    .and_then(|mut a| a.next())
                    .context("unresolvable listen address")
            })
            .with_context(|| format!("bad listen address {listen_s}"))?;
        let adv_s = o
            .advertised_listener
            .clone()
            .or(split_listeners(&get("advertised.listeners").unwrap_or_default(), "CONTROLLER")?.0)
            .unwrap_or_else(|| format!("127.0.0.1:{}", listen.port()));
        let (advertised_host, advertised_port) = parse_host_port(&adv_s)?;
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let shards = o.shards.unwrap_or(cores);
        if shards == 0 {
            bail!("--shards must be at least 1");
        }
        let int = |k: &str, d: i64| get(k).and_then(|v| v.trim().parse::<i64>().ok()).unwrap_or(d);
        let node_id = o.node_id.unwrap_or(int("node.id", int("broker.id", 0)) as i32);
        let cluster = crate::cluster::ClusterSettings::validate(
            &crate::cluster::settings::ClusterInput {
                node_id,
                voters: o
                    .controller_quorum_voters
                    .clone()
                    .or_else(|| get("controller.quorum.voters")),
                controller_listen: o.controller_listen.clone().or(file_controller),
                replication_listen: o
                    .replication_listen
                    .clone()
                    .or_else(|| get("ringlog.replication.listen"))
                    .filter(|s| !s.is_empty()),
                cluster_id: o
                    .cluster_id
                    .clone()
                    .or_else(|| get("cluster.id"))
                    .filter(|s| !s.is_empty()),
                rack: get("broker.rack"),
                experimental: get("ringlog.cluster.experimental").is_some_and(|v| v == "true"),
                listen,
                advertised_host: advertised_host.clone(),
            },
            shards,
        )?;
        let io_mode = match get("ringlog.io.mode") {
            Some(m) => m.parse().map_err(|e: String| anyhow::anyhow!(e))?,
            None => IoMode::Direct,
        };
        let metrics_listen = match o
            .metrics_listen
            .clone()
            .or_else(|| get("ringlog.metrics.listen"))
            .filter(|s| !s.is_empty())
        {
            None => None,
            Some(m) => {
                let (h, p) = parse_host_port(&m)?;
                let h = if h.is_empty() { "0.0.0.0".to_string() } else { h };
                Some(
                    std::net::ToSocketAddrs::to_socket_addrs(&(h.as_str(), p))
                        .ok()
                        .and_then(|mut a| a.next())
                        .with_context(|| format!("bad metrics address {m}"))?,
                )
            }
        };
        let queued_max_request_bytes = int("queued.max.request.bytes", -1);
        Ok(BrokerConfig {
            metrics_listen,
            node_id,
            cluster,
            data_dir,
            listen,
            advertised_host,
            advertised_port: advertised_port as i32,
            shards,
            cluster_id: String::new(),
            io_mode,
            cache_bytes_per_shard: int("ringlog.cache.bytes.per.shard", 64 << 20).max(0) as usize,
            num_partitions: int("num.partitions", 1).clamp(1, i32::MAX as i64) as i32,
            auto_create_topics: get("auto.create.topics.enable").map(|v| v == "true").unwrap_or(true),
            socket_request_max_bytes: int("socket.request.max.bytes", 104_857_600).max(1024) as usize,
            fetch_max_bytes: int("fetch.max.bytes", 57_671_680).clamp(1024, i32::MAX as i64) as usize,
            offsets_topic_partitions: int("offsets.topic.num.partitions", 50).clamp(1, 1000) as i32,
            queued_max_request_bytes: 0,
            max_connections: limit(int("max.connections", i32::MAX as i64)),
            max_connections_per_ip: limit(int("max.connections.per.ip", i32::MAX as i64)),
            max_connections_per_ip_overrides: parse_ip_overrides(
                &get("max.connections.per.ip.overrides").unwrap_or_default(),
            )?,
            connections_max_idle_ms: int("connections.max.idle.ms", 600_000).max(1) as u64,
            max_inflight_per_connection: int("ringlog.max.inflight.requests.per.connection", 64).clamp(1, 1 << 16)
                as usize,
            request_receive_timeout_ms: int("ringlog.request.receive.timeout.ms", 30_000).max(1) as u64,
            properties: props,
        }
        .with_request_budget(queued_max_request_bytes))
    }

    /// Resolve `queued.max.request.bytes`: a positive value as given, else
    /// (Kafka's -1, unbounded) ringlog's bounded default of one
    /// `socket.request.max.bytes` per shard. Never below 64 KiB per shard.
    fn with_request_budget(mut self, configured: i64) -> Self {
        let shards = self.shards.max(1);
        let total = if configured > 0 {
            configured as usize
        } else {
            self.socket_request_max_bytes.saturating_mul(shards)
        };
        self.queued_max_request_bytes = total.max(shards * (64 << 10));
        self
    }

    /// Each shard's share of a broker-wide limit: ceil(limit / shards), as
    /// shards read and accept independently.
    pub fn per_shard(&self, limit: usize) -> usize {
        limit.div_ceil(self.shards.max(1))
    }

    /// Bytes of requests a shard may have read and queued at once
    /// (`queued.max.request.bytes` split per shard).
    pub fn request_budget_per_shard(&self) -> usize {
        self.per_shard(self.queued_max_request_bytes)
    }

    /// The `max.connections.per.ip` limit (broker-wide) for `ip`.
    pub fn max_connections_for(&self, ip: std::net::IpAddr) -> usize {
        self.max_connections_per_ip_overrides
            .get(&ip)
            .copied()
            .unwrap_or(self.max_connections_per_ip)
    }
}

/// A connection limit from its property value: Kafka's default
/// (2147483647) means no limit; values below 1 count as 1, so a typo cannot
/// lock every client out.
fn limit(v: i64) -> usize {
    if v >= i32::MAX as i64 {
        usize::MAX
    } else {
        v.max(1) as usize
    }
}

/// `max.connections.per.ip.overrides`: `ip:count` pairs separated by commas
/// (Kafka also accepts host names; ringlog takes addresses only).
fn parse_ip_overrides(s: &str) -> anyhow::Result<BTreeMap<std::net::IpAddr, usize>> {
    let mut out = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (host, count) = item
            .rsplit_once(':')
            .with_context(|| format!("max.connections.per.ip.overrides: expected IP:COUNT, got {item:?}"))?;
        let host = host.trim().trim_start_matches('[').trim_end_matches(']');
        let ip: std::net::IpAddr = host
            .parse()
            .with_context(|| format!("max.connections.per.ip.overrides: {host:?} is not an IP address"))?;
        let count: i64 = count
            .trim()
            .parse()
            .with_context(|| format!("max.connections.per.ip.overrides: bad count in {item:?}"))?;
        out.insert(ip, limit(count));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> anyhow::Result<BrokerConfig> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text)?;
        BrokerConfig::load(&Overrides {
            config_file: Some(p),
            ..Default::default()
        })
    }

    #[test]
    fn defaults_and_overrides() {
        let c = BrokerConfig::load(&Overrides::default()).unwrap();
        assert_eq!(c.listen.port(), 9092);
        assert_eq!(c.advertised_host, "127.0.0.1");
        assert_eq!(c.num_partitions, 1);
        assert!(c.auto_create_topics);
        let c = cfg("\"num.partitions\" = 3\n\"log.segment.bytes\" = 1048576\n[auto.create.topics]\nenable = false\n")
            .unwrap();
        assert_eq!(c.num_partitions, 3);
        assert!(!c.auto_create_topics);
        let t = TopicConfig::resolve(&BTreeMap::new(), &c);
        assert_eq!(t.segment_bytes, 1_048_576);
        let mut o = BTreeMap::new();
        o.insert("segment.bytes".to_string(), "2048".to_string());
        assert_eq!(TopicConfig::resolve(&o, &c).segment_bytes, 2048);
    }

    #[test]
    fn cluster_settings_from_kafka_properties_and_flags() {
        let c = cfg(concat!(
            "listeners = \"PLAINTEXT://127.0.0.1:19192,CONTROLLER://127.0.0.1:19193\"\n",
            "advertised.listeners = \"PLAINTEXT://127.0.0.1:19192\"\n",
            "\"node.id\" = 1\n",
            "\"controller.quorum.voters\" = \"1@127.0.0.1:19193\"\n",
            "\"broker.rack\" = \"a\"\n",
        ))
        .expect("valid");
        assert_eq!((c.node_id, c.listen.port()), (1, 19192));
        assert_eq!(c.cluster.controller_listen.map(|a| a.port()), Some(19193));
        assert_eq!(c.cluster.rack.as_deref(), Some("a"));
        assert_eq!(
            c.broker_value("process.roles").map(|v| v.0).as_deref(),
            Some("broker,controller")
        );
        assert_eq!(
            c.broker_value("controller.quorum.voters").map(|v| v.0).as_deref(),
            Some("1@127.0.0.1:19193")
        );
        // Flags override the file; a voter without its listener is refused.
        let e = BrokerConfig::load(&Overrides {
            node_id: Some(2),
            controller_quorum_voters: Some("2@127.0.0.1:29193".into()),
            ..Default::default()
        })
        .expect_err("no controller listener");
        assert!(format!("{e:#}").contains("--controller-listen"), "{e:#}");
        assert!(cfg("listeners = \"PLAINTEXT://:1,PLAINTEXT://:2\"\n").is_err());
        assert!(cfg("\"ringlog.ack.durability\" = \"maybe\"\n").is_err());
    }

    #[test]
    fn memory_and_connection_limits_split_per_shard() {
        let load = |text: &str, shards: usize| -> BrokerConfig {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("c.toml");
            std::fs::write(&p, text).unwrap();
            BrokerConfig::load(&Overrides {
                config_file: Some(p),
                shards: Some(shards),
                ..Default::default()
            })
            .unwrap()
        };
        // Kafka's unbounded default becomes one socket.request.max.bytes per shard.
        let c = load("\"socket.request.max.bytes\" = 1048576\n", 3);
        assert_eq!(c.queued_max_request_bytes, 3 << 20);
        assert_eq!(c.request_budget_per_shard(), 1 << 20);
        assert_eq!((c.max_connections, c.max_connections_per_ip), (usize::MAX, usize::MAX));
        assert_eq!(c.connections_max_idle_ms, 600_000);
        assert_eq!(c.max_inflight_per_connection, 64);
        // Given values, split as ceil(limit / shards); a tiny budget keeps 64 KiB per shard.
        let c = load(
            "\"queued.max.request.bytes\" = 1000\n\"max.connections\" = 10\n\"max.connections.per.ip\" = 0\n\
             \"max.connections.per.ip.overrides\" = \"10.1.2.3:7, [::1]:2\"\n",
            3,
        );
        assert_eq!(c.request_budget_per_shard(), 64 << 10);
        assert_eq!(c.per_shard(c.max_connections), 4);
        assert_eq!(c.max_connections_per_ip, 1, "below 1 counts as 1");
        assert_eq!(c.max_connections_for("10.1.2.3".parse().unwrap()), 7);
        assert_eq!(c.max_connections_for("::1".parse().unwrap()), 2);
        assert_eq!(c.max_connections_for("10.9.9.9".parse().unwrap()), 1);
        assert!(cfg("\"max.connections.per.ip.overrides\" = \"host:3\"\n").is_err());
    }

    #[test]
    fn fetch_max_bytes_is_a_broker_property() {
        let c = BrokerConfig::load(&Overrides::default()).unwrap();
        assert_eq!(c.fetch_max_bytes, 57_671_680);
        assert_eq!(c.broker_value("fetch.max.bytes"), Some(("57671680".into(), false)));
        assert!(BrokerConfig::broker_config_names().contains(&"fetch.max.bytes"));
        let c = cfg("\"fetch.max.bytes\" = 1048576\n").unwrap();
        assert_eq!(c.fetch_max_bytes, 1_048_576);
        assert_eq!(c.broker_value("fetch.max.bytes"), Some(("1048576".into(), true)));
        assert!(cfg("\"fetch.max.bytes\" = 1000\n").is_err(), "Kafka's minimum is 1024");
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(cfg("\"num.partitions\" = \"many\"\n").is_err());
        assert!(validate_value(ConfigType::String, "cleanup.policy", "shred").is_err());
        assert!(validate_value(ConfigType::Int, "segment.bytes", "10").is_err());
        assert!(validate_value(ConfigType::Long, "retention.ms", "-1").is_ok());
    }

    #[test]
    fn retention_hours_feed_topic_default() {
        let c = cfg("\"log.retention.hours\" = 1\n").unwrap();
        assert_eq!(c.topic_default("retention.ms"), "3600000");
        assert!(TopicConfig::resolve(&BTreeMap::new(), &c).sync_on_ack());
    }

    #[test]
    fn cleanup_policy_selects_delete_retention() {
        let c = BrokerConfig::load(&Overrides::default()).unwrap();
        let policy = |p: &str| {
            let o = BTreeMap::from([("cleanup.policy".to_string(), p.to_string())]);
            let t = TopicConfig::resolve(&o, &c);
            (t.delete, t.compact)
        };
        assert_eq!(policy("delete"), (true, false));
        assert_eq!(policy("compact"), (false, true));
        assert_eq!(policy("compact,delete"), (true, true));
        let t = TopicConfig::resolve(&BTreeMap::new(), &c);
        assert!(t.delete && !t.compact);
        assert_eq!(t.file_delete_delay_ms, 60_000);
        assert_eq!(
            c.broker_value("log.retention.check.interval.ms"),
            Some(("300000".into(), false))
        );
    }
}
