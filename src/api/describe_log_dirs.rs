//! DescribeLogDirs: the broker's log directory with its real size per
//! partition and the filesystem's total and usable bytes
//! (`kafka-log-dirs.sh`, `AdminClient.describeLogDirs`).
//!
//! ringlog has one log directory (`--data-dir`). Versions 1-4 are served:
//! version 0 is wire-identical to 1 and Kafka 4 no longer serves it.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{ApiKey, DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};

use super::{Api, Handler, Order, Reply, RequestContext};
use crate::protocol::error as ec;
use crate::protocol::str_bytes;
use crate::routing::{ShardRequest, ShardResponse};

/// The DescribeLogDirs handler: versions 1-4, worked on out of order.
pub struct DescribeLogDirs;

impl Handler for DescribeLogDirs {
    const API: Api = Api {
        key: ApiKey::DescribeLogDirs,
        min_version: 1,
        max_version: 4,
        order: Order::OutOfOrder,
    };
    type Request = DescribeLogDirsRequest;
    type Response = DescribeLogDirsResponse;

    async fn start(ctx: &RequestContext, req: DescribeLogDirsRequest) -> Reply<DescribeLogDirsResponse> {
        Reply::Ready(handle(ctx, req).await)
    }
}

pub async fn handle(ctx: &RequestContext, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let shard = &ctx.shard;
    // None: every partition; Some: the partitions asked for, by topic.
    let wanted: Option<BTreeMap<String, Vec<i32>>> = req.topics.as_ref().map(|ts| {
        let mut m: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for t in ts {
            m.entry(t.topic.0.as_str().to_string())
                .or_default()
                .extend(t.partitions.iter().copied());
        }
        m
    });
    let topic_filter: Option<Vec<String>> = wanted.as_ref().map(|m| m.keys().cloned().collect());
    let mut replies = Vec::new();
    for s in 0..shard.shards() {
        let req = ShardRequest::PartitionSizes {
            topics: topic_filter.clone(),
        };
        replies.push(shard.dispatch(s, req).await);
    }
    let mut sizes: BTreeMap<String, BTreeMap<i32, u64>> = BTreeMap::new();
    for r in replies {
        if let Some(ShardResponse::PartitionSizes(parts)) = r.await {
            for p in parts {
                let keep = wanted
                    .as_ref()
                    .is_none_or(|m| m.get(&p.topic).is_some_and(|ps| ps.contains(&p.partition)));
                if keep {
                    sizes.entry(p.topic).or_default().insert(p.partition, p.bytes);
                }
            }
        }
    }
    let dir = &shard.config.data_dir;
    let log_dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
    let mut result = DescribeLogDirsResult::default()
        .with_error_code(ec::NONE)
        .with_log_dir(str_bytes(&log_dir.to_string_lossy()))
        .with_total_bytes(-1)
        .with_usable_bytes(-1);
    match crate::io::fs::space(dir).await {
        Ok(space) => {
            result.total_bytes = i64::try_from(space.total).unwrap_or(i64::MAX);
            result.usable_bytes = i64::try_from(space.available).unwrap_or(i64::MAX);
        }
        Err(e) => {
            tracing::warn!("reading the free space of {}: {e}", dir.display());
            result.error_code = ec::KAFKA_STORAGE_ERROR;
        }
    }
    result.topics = sizes
        .into_iter()
        .map(|(topic, parts)| {
            DescribeLogDirsTopic::default()
                .with_name(TopicName(str_bytes(&topic)))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(partition, bytes)| {
                            DescribeLogDirsPartition::default()
                                .with_partition_index(partition)
                                .with_partition_size(i64::try_from(bytes).unwrap_or(i64::MAX))
                                .with_offset_lag(0)
                                .with_is_future_key(false)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeLogDirsResponse::default()
        .with_error_code(ec::NONE)
        .with_results(vec![result])
}
