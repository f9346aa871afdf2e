//! ConsumerGroupDescribe (v0-v1, KIP-848) of consumer protocol groups, each
//! asked of its coordinating shard.

use futures::future::LocalBoxFuture;
use futures::FutureExt;
use kafka_protocol::messages::consumer_group_describe_response::{Assignment, DescribedGroup, Member, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, GroupId, TopicName};
use uuid::Uuid;

use super::describe_groups::GROUP_AUTHORIZED_OPERATIONS;
use super::RequestContext;
use crate::group::consumer::{DescribedConsumerGroup, DescribedTopicPartitions};
use crate::group::error::{ApiError, COORDINATOR_NOT_AVAILABLE, NONE};
use crate::protocol::str_bytes;
use crate::shard::groups::{send, split_by_shard, GroupRequest, GroupResponse};

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
    let ops = if include_ops && g.error_code == NONE {
        GROUP_AUTHORIZED_OPERATIONS
    } else {
        i32::MIN
    };
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

pub async fn start(
    ctx: &RequestContext,
    req: ConsumerGroupDescribeRequest,
) -> LocalBoxFuture<'static, ConsumerGroupDescribeResponse> {
    let version = ctx.api_version;
    let include_ops = req.include_authorized_operations;
    let ids: Vec<String> = req.group_ids.iter().map(|g| g.0.to_string()).collect();
    let shard = &ctx.shard;
    let (routed, errors) = split_by_shard(shard, &ids);
    let mut out: Vec<Option<DescribedConsumerGroup>> = vec![None; ids.len()];
    for (i, code) in errors {
        out[i] = Some(DescribedConsumerGroup::error(&ids[i], ApiError::new(code)));
    }
    let mut waits = Vec::new();
    for (target, idx) in routed {
        let batch: Vec<String> = idx.iter().map(|&i| ids[i].clone()).collect();
        waits.push((idx, send(shard, target, GroupRequest::ConsumerDescribe(batch)).await));
    }
    async move {
        for (idx, w) in waits {
            let mut answers = match w.await {
                Some(GroupResponse::ConsumerDescribe(r)) => r.into_iter(),
                _ => Vec::new().into_iter(),
            };
            for i in idx {
                out[i] = answers.next();
            }
        }
        let groups = out
            .into_iter()
            .zip(ids.iter())
            .map(|(g, id)| {
                let g =
                    g.unwrap_or_else(|| DescribedConsumerGroup::error(id, ApiError::new(COORDINATOR_NOT_AVAILABLE)));
                to_wire(version, g, include_ops)
            })
            .collect();
        ConsumerGroupDescribeResponse::default().with_groups(groups)
    }
    .boxed_local()
}
