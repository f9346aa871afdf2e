//! OffsetCommit (v2-v9): partitions of unknown topics are refused with
//! UNKNOWN_TOPIC_OR_PARTITION (as Kafka does); the rest goes to the
//! coordinating shard, which answers once the offsets are durable.

use futures::future::LocalBoxFuture;
use futures::FutureExt;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{ApiKey, OffsetCommitRequest, OffsetCommitResponse, TopicName};

use super::group_common::PartitionLayout;
use super::{Api, Handler, Order, Reply, RequestContext};
use crate::group::offsets::{self, OffsetCommitPartition, OffsetCommitTopic, DEFAULT_RETENTION_TIME};
use crate::protocol::str_bytes;
use crate::shard::groups::{route_one, GroupRequest, GroupResponse};

/// The OffsetCommit handler: versions 2-9, routed in request order.
pub struct OffsetCommit;

impl Handler for OffsetCommit {
    const API: Api = Api {
        key: ApiKey::OffsetCommit,
        min_version: 2,
        max_version: 9,
        order: Order::InOrder,
    };
    type Request = OffsetCommitRequest;
    type Response = OffsetCommitResponse;

    async fn start(ctx: &RequestContext, req: OffsetCommitRequest) -> Reply<OffsetCommitResponse> {
        Reply::Pending(route(ctx, req).await)
    }
}

pub async fn route(ctx: &RequestContext, req: OffsetCommitRequest) -> LocalBoxFuture<'static, OffsetCommitResponse> {
    let version = ctx.api_version;
    let mut layout = PartitionLayout::default();
    let mut topics = Vec::with_capacity(req.topics.len());
    {
        let meta = ctx.shard.meta.borrow();
        for t in req.topics {
            let name = t.name.0.to_string();
            let known = layout.add(&meta, &name, t.partitions, |p| p.partition_index);
            if !known.is_empty() {
                topics.push(OffsetCommitTopic {
                    name,
                    partitions: known
                        .into_iter()
                        .map(|p| OffsetCommitPartition {
                            partition_index: p.partition_index,
                            committed_offset: p.committed_offset,
                            committed_leader_epoch: if version >= 6 { p.committed_leader_epoch } else { -1 },
                            committed_metadata: p.committed_metadata.map(|m| m.to_string()),
                        })
                        .collect(),
                });
            }
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
        let results = resp.topics.into_iter().map(|t| {
            let codes = t.partitions.iter().map(|p| (p.partition_index, p.error_code)).collect();
            (t.name, codes)
        });
        let topics = layout.answer(
            results,
            |index, code| {
                OffsetCommitResponsePartition::default()
                    .with_partition_index(index)
                    .with_error_code(code)
            },
            |name, partitions| {
                OffsetCommitResponseTopic::default()
                    .with_name(TopicName(str_bytes(name)))
                    .with_partitions(partitions)
            },
        );
        OffsetCommitResponse::default().with_topics(topics)
    }
    .boxed_local()
}
