//! DeleteRecords: move partitions' log start offsets (Kafka's
//! `kafka-delete-records.sh`, `AdminClient.deleteRecords`, Kafka Streams'
//! purge of repartition topics).

use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{ApiKey, DeleteRecordsRequest, DeleteRecordsResponse};

use super::{Api, Handler, Order, Reply, RequestContext};
use crate::protocol::error as ec;
use crate::routing::{DeleteRecordsPart, DeleteRecordsPartResult, ShardRequest, ShardResponse};

/// The DeleteRecords handler: versions 0-2, worked on out of order.
pub struct DeleteRecords;

impl Handler for DeleteRecords {
    const API: Api = Api {
        key: ApiKey::DeleteRecords,
        min_version: 0,
        max_version: 2,
        order: Order::OutOfOrder,
    };
    type Request = DeleteRecordsRequest;
    type Response = DeleteRecordsResponse;

    async fn start(ctx: &RequestContext, req: DeleteRecordsRequest) -> Reply<DeleteRecordsResponse> {
        Reply::Ready(handle(ctx, req).await)
    }
}

pub async fn handle(ctx: &RequestContext, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let shard = &ctx.shard;
    // (topic index, partition, owner, result)
    let mut slots: Vec<(usize, i32, Option<usize>, DeleteRecordsPartResult)> = Vec::new();
    for (ti, t) in req.topics.iter().enumerate() {
        let name = t.name.0.as_str();
        for p in &t.partitions {
            let (owner, internal) = {
                let meta = shard.meta.borrow();
                (
                    meta.owner(name, p.partition_index),
                    meta.topics.get(name).is_some_and(|t| t.internal),
                )
            };
            let error = if owner.is_none() {
                ec::UNKNOWN_TOPIC_OR_PARTITION
            } else if internal {
                // Kafka refuses internal topics to clients.
                ec::INVALID_TOPIC_EXCEPTION
            } else if p.offset < -1 {
                ec::OFFSET_OUT_OF_RANGE
            } else {
                ec::NONE
            };
            let result = DeleteRecordsPartResult {
                error,
                low_watermark: -1,
            };
            slots.push((ti, p.partition_index, owner.filter(|_| error == ec::NONE), result));
        }
    }
    let mut replies = Vec::new();
    for s in 0..shard.shards() {
        let parts: Vec<DeleteRecordsPart> = slots
            .iter()
            .filter(|x| x.2 == Some(s))
            .map(|x| DeleteRecordsPart {
                topic: req.topics[x.0].name.0.as_str().to_string(),
                partition: x.1,
                offset: req.topics[x.0]
                    .partitions
                    .iter()
                    .find(|p| p.partition_index == x.1)
                    .map_or(-1, |p| p.offset),
            })
            .collect();
        if !parts.is_empty() {
            replies.push((s, shard.dispatch(s, ShardRequest::DeleteRecords { parts }).await));
        }
    }
    for (s, r) in replies {
        let results = match r.await {
            Some(ShardResponse::DeleteRecords(r)) => r,
            _ => Vec::new(),
        };
        let mut it = results.into_iter();
        for slot in slots.iter_mut().filter(|x| x.2 == Some(s)) {
            slot.3 = it.next().unwrap_or(DeleteRecordsPartResult {
                error: ec::REQUEST_TIMED_OUT,
                low_watermark: -1,
            });
        }
    }
    let mut topics: Vec<DeleteRecordsTopicResult> = req
        .topics
        .iter()
        .map(|t| DeleteRecordsTopicResult::default().with_name(t.name.clone()))
        .collect();
    for (ti, partition, _, r) in slots {
        topics[ti].partitions.push(
            DeleteRecordsPartitionResult::default()
                .with_partition_index(partition)
                .with_low_watermark(r.low_watermark)
                .with_error_code(r.error),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
