//! OffsetCommit (v2-v9): partitions of unknown topics are refused with
//! UNKNOWN_TOPIC_OR_PARTITION (as Kafka does); the rest goes to the
//! coordinating shard, which answers once the offsets are durable.

use std::collections::HashMap;

use futures::future::LocalBoxFuture;
use futures::FutureExt;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, TopicName};

use super::RequestContext;
use crate::group::offsets::{self, OffsetCommitPartition, OffsetCommitTopic, DEFAULT_RETENTION_TIME};
use crate::protocol::error as ec;
use crate::protocol::str_bytes;
use crate::shard::groups::{route_one, GroupRequest, GroupResponse};

pub async fn start(ctx: &RequestContext, req: OffsetCommitRequest) -> LocalBoxFuture<'static, OffsetCommitResponse> {
    let version = ctx.api_version;
    // The request layout (topic, partitions) and which partitions exist.
    let mut layout: Vec<(String, Vec<(i32, bool)>)> = Vec::with_capacity(req.topics.len());
    let mut topics = Vec::with_capacity(req.topics.len());
    {
        let meta = ctx.shard.meta.borrow();
        for t in req.topics {
            let name = t.name.0.to_string();
            let count = meta.topic(&name).map_or(0, |m| m.partitions.len());
            let mut parts = Vec::with_capacity(t.partitions.len());
            let mut known = Vec::new();
            for p in t.partitions {
                let exists = usize::try_from(p.partition_index).is_ok_and(|i| i < count);
                parts.push((p.partition_index, exists));
                if exists {
                    known.push(OffsetCommitPartition {
                        partition_index: p.partition_index,
                        committed_offset: p.committed_offset,
                        committed_leader_epoch: if version >= 6 { p.committed_leader_epoch } else { -1 },
                        committed_metadata: p.committed_metadata.map(|m| m.to_string()),
                    });
                }
            }
            if !known.is_empty() {
                topics.push(OffsetCommitTopic {
                    name: name.clone(),
                    partitions: known,
                });
            }
            layout.push((name, parts));
        }
    }
    let r = offsets::OffsetCommitRequest {
        group_id: req.group_id.0.to_string(),
        generation_id_or_member_epoch: req.generation_id_or_member_epoch,
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
        retention_time_ms: if version <= 4 {
            req.retention_time_ms
        } else {
            DEFAULT_RETENTION_TIME
        },
        topics,
        api_version: version,
    };
    let pending = if r.topics.is_empty() {
        futures::future::ready(offsets::OffsetCommitResponse::default()).boxed_local()
    } else {
        let error_for = r.clone();
        let group_id = r.group_id.clone();
        route_one(
            &ctx.shard,
            &group_id,
            GroupRequest::OffsetCommit(r),
            |resp| match resp {
                GroupResponse::OffsetCommit(r) => Some(r),
                _ => None,
            },
            move |code| offsets::OffsetCommitResponse::error(&error_for, code),
        )
        .await
    };
    async move {
        let resp = pending.await;
        let mut results: HashMap<(String, i32), i16> = HashMap::new();
        for t in resp.topics {
            for p in t.partitions {
                results.insert((t.name.clone(), p.partition_index), p.error_code);
            }
        }
        let topics = layout
            .into_iter()
            .map(|(name, parts)| {
                let partitions = parts
                    .into_iter()
                    .map(|(index, exists)| {
                        let code = if exists {
                            results
                                .get(&(name.clone(), index))
                                .copied()
                                .unwrap_or(ec::UNKNOWN_SERVER_ERROR)
                        } else {
                            ec::UNKNOWN_TOPIC_OR_PARTITION
                        };
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(index)
                            .with_error_code(code)
                    })
                    .collect();
                OffsetCommitResponseTopic::default()
                    .with_name(TopicName(str_bytes(&name)))
                    .with_partitions(partitions)
            })
            .collect();
        OffsetCommitResponse::default().with_topics(topics)
    }
    .boxed_local()
}
