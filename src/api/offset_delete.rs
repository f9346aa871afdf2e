//! OffsetDelete (v0): remove committed offsets of topics the group is not
//! subscribed to. Partitions of unknown topics are UNKNOWN_TOPIC_OR_PARTITION.

use futures::future::LocalBoxFuture;
use futures::FutureExt;
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::{ApiKey, OffsetDeleteRequest, OffsetDeleteResponse, TopicName};

use super::group_common::PartitionLayout;
use super::{Api, Handler, Order, Reply, RequestContext};
use crate::group::offsets::{self, OffsetDeleteTopic};
use crate::protocol::error as ec;
use crate::protocol::str_bytes;
use crate::shard::groups::{route_one, GroupRequest, GroupResponse};

/// The OffsetDelete handler: versions 0-0, routed in request order.
pub struct OffsetDelete;

impl Handler for OffsetDelete {
    const API: Api = Api {
        key: ApiKey::OffsetDelete,
        min_version: 0,
        max_version: 0,
        order: Order::InOrder,
    };
    type Request = OffsetDeleteRequest;
    type Response = OffsetDeleteResponse;

    async fn start(ctx: &RequestContext, req: OffsetDeleteRequest) -> Reply<OffsetDeleteResponse> {
        Reply::Pending(route(ctx, req).await)
    }
}

pub async fn route(ctx: &RequestContext, req: OffsetDeleteRequest) -> LocalBoxFuture<'static, OffsetDeleteResponse> {
    let mut layout = PartitionLayout::default();
    let mut topics = Vec::new();
    {
        let meta = ctx.shard.meta.borrow();
        for t in req.topics {
            let name = t.name.0.to_string();
            let known = layout.add(&meta, &name, t.partitions, |p| p.partition_index);
            if !known.is_empty() {
                topics.push(OffsetDeleteTopic {
                    name,
                    partitions: known.iter().map(|p| p.partition_index).collect(),
                });
            }
        }
    }
    let r = offsets::OffsetDeleteRequest {
        group_id: req.group_id.0.to_string(),
        topics,
    };
    let group_id = r.group_id.clone();
    let pending = route_one(
        &ctx.shard,
        &group_id,
        GroupRequest::OffsetDelete(r),
        |resp| match resp {
            GroupResponse::OffsetDelete(r) => Some(r),
            _ => None,
        },
        |code| offsets::OffsetDeleteResponse {
            error_code: code,
            topics: Vec::new(),
        },
    )
    .await;
    async move {
        let resp = pending.await;
        if resp.error_code != ec::NONE {
            return OffsetDeleteResponse::default().with_error_code(resp.error_code);
        }
        let topics = layout.answer(
            resp.topics,
            |index, code| {
                OffsetDeleteResponsePartition::default()
                    .with_partition_index(index)
                    .with_error_code(code)
            },
            |name, partitions| {
                OffsetDeleteResponseTopic::default()
                    .with_name(TopicName(str_bytes(name)))
                    .with_partitions(partitions)
            },
        );
        OffsetDeleteResponse::default().with_topics(topics)
    }
    .boxed_local()
}
