//! ConsumerGroupHeartbeat (v0-v1, KIP-848): membership, subscription and
//! incremental assignment of the consumer group protocol.

use futures::future::LocalBoxFuture;
use futures::FutureExt;
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ApiKey, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use uuid::Uuid;

use super::{Api, Handler, Order, Reply, RequestContext};
use crate::group::consumer;
use crate::group::records;
use crate::protocol::error::ApiError;
use crate::protocol::str_bytes;
use crate::shard::groups::{route_one, GroupRequest, GroupResponse};

/// The ConsumerGroupHeartbeat handler: versions 0-1, routed in request order.
pub struct ConsumerGroupHeartbeat;

impl Handler for ConsumerGroupHeartbeat {
    const API: Api = Api {
        key: ApiKey::ConsumerGroupHeartbeat,
        min_version: 0,
        max_version: 1,
        order: Order::InOrder,
    };
    type Request = ConsumerGroupHeartbeatRequest;
    type Response = ConsumerGroupHeartbeatResponse;

    async fn start(ctx: &RequestContext, req: ConsumerGroupHeartbeatRequest) -> Reply<ConsumerGroupHeartbeatResponse> {
        Reply::Pending(route(ctx, req).await)
    }
}

fn to_wire(r: consumer::ConsumerGroupHeartbeatResponse) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(r.error_code)
        .with_error_message(r.error_message.as_deref().map(str_bytes))
        .with_member_id(r.member_id.as_deref().map(str_bytes))
        .with_member_epoch(r.member_epoch)
        .with_heartbeat_interval_ms(r.heartbeat_interval_ms)
        .with_assignment(r.assignment.map(|tps| {
            Assignment::default().with_topic_partitions(
                tps.into_iter()
                    .map(|tp| {
                        TopicPartitions::default()
                            .with_topic_id(Uuid::from_bytes(tp.topic_id))
                            .with_partitions(tp.partitions)
                    })
                    .collect(),
            )
        }))
}

pub async fn route(
    ctx: &RequestContext,
    req: ConsumerGroupHeartbeatRequest,
) -> LocalBoxFuture<'static, ConsumerGroupHeartbeatResponse> {
    let r = consumer::ConsumerGroupHeartbeatRequest {
        group_id: req.group_id.0.to_string(),
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.map(|s| s.to_string()),
        rack_id: req.rack_id.map(|s| s.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topic_names: req
            .subscribed_topic_names
            .map(|ts| ts.into_iter().map(|t| t.0.to_string()).collect()),
        // v1+; the state machine reads an empty one as none.
        subscribed_topic_regex: req
            .subscribed_topic_regex
            .filter(|_| ctx.api_version >= 1)
            .map(|s| s.to_string()),
        server_assignor: req.server_assignor.map(|s| s.to_string()),
        topic_partitions: req.topic_partitions.map(|tps| {
            tps.into_iter()
                .map(|tp| records::TopicPartitions {
                    topic_id: *tp.topic_id.as_bytes(),
                    partitions: tp.partitions,
                })
                .collect()
        }),
        api_version: ctx.api_version,
        client_id: ctx.client_id.clone().unwrap_or_default(),
        client_host: format!("/{}", ctx.client_host),
    };
    let group_id = r.group_id.clone();
    route_one(
        &ctx.shard,
        &group_id,
        GroupRequest::ConsumerHeartbeat(r),
        |resp| match resp {
            GroupResponse::ConsumerHeartbeat(r) => Some(r),
            _ => None,
        },
        |code| consumer::ConsumerGroupHeartbeatResponse::error(ApiError::new(code)),
    )
    .await
    .map(to_wire)
    .boxed_local()
}
