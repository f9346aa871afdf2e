//! ConsumerGroupDescribe (v0-v1, KIP-848) of consumer protocol groups, each
//! asked of its coordinating shard.

use futures::future::LocalBoxFuture;
use futures::FutureExt;
use kafka_protocol::messages::consumer_group_describe_response::{Assignment, DescribedGroup, Member, TopicPartitions};
use kafka_protocol::messages::{ApiKey, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, GroupId, TopicName};
use uuid::Uuid;

use super::describe_groups::authorized_operations;
use super::{Api, Handler, Order, Reply, RequestContext};
use crate::group::consumer::{DescribedConsumerGroup, DescribedTopicPartitions};
use crate::protocol::error::ApiError;
use crate::protocol::str_bytes;
use crate::shard::groups::{route_many, GroupRequest, GroupResponse};

/// The ConsumerGroupDescribe handler: versions 0-1, routed in request order.
pub struct ConsumerGroupDescribe;

impl Handler for ConsumerGroupDescribe {
    const API: Api = Api {
        key: ApiKey::ConsumerGroupDescribe,
        min_version: 0,
        max_version: 1,
        order: Order::InOrder,
    };
    type Request = ConsumerGroupDescribeRequest;
    type Response = ConsumerGroupDescribeResponse;

    async fn start(ctx: &RequestContext, req: ConsumerGroupDescribeRequest) -> Reply<ConsumerGroupDescribeResponse> {
        Reply::Pending(route(ctx, req).await)
    }
}

fn assignment(tps: Vec<DescribedTopicPartitions>) -> Assignment {
    Assignment::default().with_topic_partitions(
        tps.into_iter()
            .map(|tp| {
                TopicPartitions::default()
                    .with_topic_id(Uuid::from_bytes(tp.topic_id))
                    .with_topic_name(TopicName(str_bytes(&tp.topic_name)))
                    .with_partitions(tp.partitions)
            })
            .collect(),
    )
}

fn to_wire(version: i16, g: DescribedConsumerGroup, include_ops: bool) -> DescribedGroup {
    let ops = authorized_operations(include_ops, g.error_code);
    DescribedGroup::default()
        .with_error_code(g.error_code)
        .with_error_message(g.error_message.as_deref().map(str_bytes))
        .with_group_id(GroupId(str_bytes(&g.group_id)))
        .with_group_state(str_bytes(&g.group_state))
        .with_group_epoch(g.group_epoch)
        .with_assignment_epoch(g.assignment_epoch)
        .with_assignor_name(str_bytes(&g.assignor_name))
        .with_members(
            g.members
                .into_iter()
                .map(|m| {
                    Member::default()
                        .with_member_id(str_bytes(&m.member_id))
                        .with_instance_id(m.instance_id.as_deref().map(str_bytes))
                        .with_rack_id(m.rack_id.as_deref().map(str_bytes))
                        .with_member_epoch(m.member_epoch)
                        .with_client_id(str_bytes(&m.client_id))
                        .with_client_host(str_bytes(&m.client_host))
                        .with_subscribed_topic_names(
                            m.subscribed_topic_names
                                .iter()
                                .map(|t| TopicName(str_bytes(t)))
                                .collect(),
                        )
                        .with_subscribed_topic_regex(m.subscribed_topic_regex.as_deref().map(str_bytes))
                        .with_assignment(assignment(m.assignment))
                        .with_target_assignment(assignment(m.target_assignment))
                        .with_member_type(if version >= 1 { m.member_type } else { -1 })
                })
                .collect(),
        )
        .with_authorized_operations(ops)
}

pub async fn route(
    ctx: &RequestContext,
    req: ConsumerGroupDescribeRequest,
) -> LocalBoxFuture<'static, ConsumerGroupDescribeResponse> {
    let version = ctx.api_version;
    let include_ops = req.include_authorized_operations;
    let ids = req.group_ids.iter().map(|g| g.0.to_string()).collect();
    route_many(
        &ctx.shard,
        ids,
        GroupRequest::ConsumerDescribe,
        |resp| match resp {
            GroupResponse::ConsumerDescribe(r) => Some(r),
            _ => None,
        },
        |id, code| DescribedConsumerGroup::error(id, ApiError::new(code)),
    )
    .await
    .map(move |groups| {
        let groups = groups.into_iter().map(|g| to_wire(version, g, include_ops)).collect();
        ConsumerGroupDescribeResponse::default().with_groups(groups)
    })
    .boxed_local()
}
