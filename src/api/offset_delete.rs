//! OffsetDelete (v0): remove committed offsets of topics the group is not
//! subscribed to. Partitions of unknown topics are UNKNOWN_TOPIC_OR_PARTITION.

use std::collections::HashMap;

use futures::future::LocalBoxFuture;
use futures::FutureExt;
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse, TopicName};

use super::RequestContext;
use crate::group::offsets::{self, OffsetDeleteTopic};
use crate::protocol::error as ec;
use crate::protocol::str_bytes;
use crate::shard::groups::{route_one, GroupRequest, GroupResponse};

pub async fn start(ctx: &RequestContext, req: OffsetDeleteRequest) -> LocalBoxFuture<'static, OffsetDeleteResponse> {
    let mut layout: Vec<(String, Vec<(i32, bool)>)> = Vec::with_capacity(req.topics.len());
    let mut topics = Vec::new();
    {
        let meta = ctx.shard.meta.borrow();
        for t in req.topics {
            let name = t.name.0.to_string();
            let count = meta.topic(&name).map_or(0, |m| m.partitions.len());
            let parts: Vec<(i32, bool)> = t
                .partitions
                .iter()
                .map(|p| {
                    (
                        p.partition_index,
                        usize::try_from(p.partition_index).is_ok_and(|i| i < count),
                    )
                })
                .collect();
            let known: Vec<i32> = parts.iter().filter(|(_, e)| *e).map(|(p, _)| *p).collect();
            if !known.is_empty() {
                topics.push(OffsetDeleteTopic {
                    name: name.clone(),
                    partitions: known,
                });
            }
            layout.push((name, parts));
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
        let mut results: HashMap<(String, i32), i16> = HashMap::new();
        for (name, parts) in resp.topics {
            for (p, code) in parts {
                results.insert((name.clone(), p), code);
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
                        OffsetDeleteResponsePartition::default()
                            .with_partition_index(index)
                            .with_error_code(code)
                    })
                    .collect();
                OffsetDeleteResponseTopic::default()
                    .with_name(TopicName(str_bytes(&name)))
                    .with_partitions(partitions)
            })
            .collect();
        OffsetDeleteResponse::default().with_topics(topics)
    }
    .boxed_local()
}
