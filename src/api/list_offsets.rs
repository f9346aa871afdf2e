//! ListOffsets: earliest, latest, max timestamp, or by timestamp.

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ApiKey, ListOffsetsRequest, ListOffsetsResponse};

use super::{Api, Handler, Order, Reply, RequestContext};
use crate::protocol::error as ec;
use crate::routing::{ListOffsetsPart, ListOffsetsPartResult, ShardRequest, ShardResponse};

/// The ListOffsets handler: versions 1-10, worked on out of order.
pub struct ListOffsets;

impl Handler for ListOffsets {
    const API: Api = Api {
        key: ApiKey::ListOffsets,
        min_version: 1,
        max_version: 10,
        order: Order::OutOfOrder,
    };
    type Request = ListOffsetsRequest;
    type Response = ListOffsetsResponse;

    async fn start(ctx: &RequestContext, req: ListOffsetsRequest) -> Reply<ListOffsetsResponse> {
        Reply::Ready(handle(ctx, req).await)
    }
}

pub async fn handle(ctx: &RequestContext, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let shard = &ctx.shard;
    // (topic index, partition, owner, result)
    let mut slots: Vec<(usize, i32, Option<usize>, ListOffsetsPartResult)> = Vec::new();
    for (ti, t) in req.topics.iter().enumerate() {
        for p in &t.partitions {
            let owner = shard.meta.borrow().owner(t.name.0.as_str(), p.partition_index);
            let mut r = ListOffsetsPartResult {
                error: ec::NONE,
                timestamp: -1,
                offset: -1,
                leader_epoch: -1,
            };
            if owner.is_none() {
                r.error = ec::UNKNOWN_TOPIC_OR_PARTITION;
            } else if ctx.api_version < 7 && p.timestamp == -3
                || ctx.api_version < 8 && p.timestamp == -4
                || ctx.api_version < 9 && p.timestamp == -5
            {
                r.error = ec::UNSUPPORTED_VERSION;
            }
            slots.push((ti, p.partition_index, if r.error == ec::NONE { owner } else { None }, r));
        }
    }
    let mut replies = Vec::new();
    for s in 0..shard.shards() {
        let parts: Vec<ListOffsetsPart> = slots
            .iter()
            .filter(|x| x.2 == Some(s))
            .map(|x| ListOffsetsPart {
                topic: req.topics[x.0].name.0.as_str().to_string(),
                partition: x.1,
                timestamp: req.topics[x.0]
                    .partitions
                    .iter()
                    .find(|p| p.partition_index == x.1)
                    .map(|p| p.timestamp)
                    .unwrap_or(-1),
            })
            .collect();
        if !parts.is_empty() {
            replies.push((s, shard.dispatch(s, ShardRequest::ListOffsets { parts }).await));
        }
    }
    for (s, r) in replies {
        let results = match r.await {
            Some(ShardResponse::ListOffsets(r)) => r,
            _ => Vec::new(),
        };
        let mut it = results.into_iter();
        for slot in slots.iter_mut().filter(|x| x.2 == Some(s)) {
            if let Some(r) = it.next() {
                slot.3 = r;
            }
        }
    }
    let mut topics: Vec<ListOffsetsTopicResponse> = req
        .topics
        .iter()
        .map(|t| ListOffsetsTopicResponse::default().with_name(t.name.clone()))
        .collect();
    for (ti, partition, _, r) in slots {
        topics[ti].partitions.push(
            ListOffsetsPartitionResponse::default()
                .with_partition_index(partition)
                .with_error_code(r.error)
                .with_timestamp(r.timestamp)
                .with_offset(r.offset)
                .with_leader_epoch(if ctx.api_version >= 4 { r.leader_epoch } else { -1 }),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}
