//! OffsetFetch: one group (v1-v7) or a batch of groups (v8+), routed to
//! their coordinating shards.

use futures::future::LocalBoxFuture;
use futures::FutureExt;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{ApiKey, GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};

use super::{Api, Handler, Order, Reply, RequestContext};
use crate::group::offsets::{self, OffsetFetchTopic, INVALID_OFFSET};
use crate::protocol::error as ec;
use crate::protocol::str_bytes;
use crate::shard::groups::{send, split_by_shard, GroupRequest, GroupResponse};

/// The OffsetFetch handler: versions 1-9, routed in request order.
pub struct OffsetFetch;

impl Handler for OffsetFetch {
    const API: Api = Api {
        key: ApiKey::OffsetFetch,
        min_version: 1,
        max_version: 9,
        order: Order::InOrder,
    };
    type Request = OffsetFetchRequest;
    type Response = OffsetFetchResponse;

    async fn start(ctx: &RequestContext, req: OffsetFetchRequest) -> Reply<OffsetFetchResponse> {
        Reply::Pending(route(ctx, req).await)
    }
}

fn failed(r: &offsets::OffsetFetchRequest, code: i16) -> offsets::OffsetFetchResponse {
    offsets::OffsetFetchResponse {
        group_id: r.group_id.clone(),
        error_code: code,
        topics: Vec::new(),
    }
}

/// Fetch for several groups, answers in request order.
async fn fetch_all(
    ctx: &RequestContext,
    reqs: Vec<offsets::OffsetFetchRequest>,
) -> LocalBoxFuture<'static, Vec<offsets::OffsetFetchResponse>> {
    let shard = &ctx.shard;
    let ids: Vec<String> = reqs.iter().map(|r| r.group_id.clone()).collect();
    let (routed, errors) = split_by_shard(shard, &ids);
    let mut out: Vec<Option<offsets::OffsetFetchResponse>> = vec![None; reqs.len()];
    for (i, code) in errors {
        out[i] = Some(failed(&reqs[i], code));
    }
    let mut waits = Vec::new();
    for (target, idx) in routed {
        let batch: Vec<offsets::OffsetFetchRequest> = idx.iter().map(|&i| reqs[i].clone()).collect();
        waits.push((idx, send(shard, target, GroupRequest::OffsetFetch(batch)).await));
    }
    async move {
        for (idx, w) in waits {
            let mut answers = match w.await {
                Some(GroupResponse::OffsetFetch(r)) => r.into_iter(),
                _ => Vec::new().into_iter(),
            };
            for i in idx {
                out[i] = Some(
                    answers
                        .next()
                        .unwrap_or_else(|| failed(&reqs[i], ec::COORDINATOR_NOT_AVAILABLE)),
                );
            }
        }
        out.into_iter()
            .zip(reqs.iter())
            .map(|(r, req)| r.unwrap_or_else(|| failed(req, ec::COORDINATOR_NOT_AVAILABLE)))
            .collect()
    }
    .boxed_local()
}

pub async fn route(ctx: &RequestContext, req: OffsetFetchRequest) -> LocalBoxFuture<'static, OffsetFetchResponse> {
    let version = ctx.api_version;
    let require_stable = version >= 7 && req.require_stable;
    if version >= 8 {
        let reqs: Vec<offsets::OffsetFetchRequest> = req
            .groups
            .into_iter()
            .map(|g| offsets::OffsetFetchRequest {
                group_id: g.group_id.0.to_string(),
                member_id: if version >= 9 {
                    g.member_id.map(|s| s.to_string())
                } else {
                    None
                },
                member_epoch: if version >= 9 { g.member_epoch } else { -1 },
                topics: g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| OffsetFetchTopic {
                            name: t.name.0.to_string(),
                            partition_indexes: t.partition_indexes,
                        })
                        .collect()
                }),
                require_stable,
            })
            .collect();
        let pending = fetch_all(ctx, reqs).await;
        return async move {
            let groups = pending
                .await
                .into_iter()
                .map(|g| {
                    let topics = g
                        .topics
                        .into_iter()
                        .map(|t| {
                            OffsetFetchResponseTopics::default()
                                .with_name(TopicName(str_bytes(&t.name)))
                                .with_partitions(
                                    t.partitions
                                        .into_iter()
                                        .map(|p| {
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(p.partition_index)
                                                .with_committed_offset(p.committed_offset)
                                                .with_committed_leader_epoch(p.committed_leader_epoch)
                                                .with_metadata(Some(str_bytes(&p.metadata)))
                                                .with_error_code(p.error_code)
                                        })
                                        .collect(),
                                )
                        })
                        .collect();
                    OffsetFetchResponseGroup::default()
                        .with_group_id(GroupId(str_bytes(&g.group_id)))
                        .with_topics(topics)
                        .with_error_code(g.error_code)
                })
                .collect();
            OffsetFetchResponse::default().with_groups(groups)
        }
        .boxed_local();
    }
    let requested: Option<Vec<OffsetFetchTopic>> = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| OffsetFetchTopic {
                name: t.name.0.to_string(),
                partition_indexes: t.partition_indexes,
            })
            .collect()
    });
    let r = offsets::OffsetFetchRequest {
        group_id: req.group_id.0.to_string(),
        member_id: None,
        member_epoch: -1,
        topics: requested.clone(),
        require_stable,
    };
    let pending = fetch_all(ctx, vec![r]).await;
    async move {
        let g = pending.await.pop().unwrap_or_default();
        let partition = |index: i32, offset: i64, epoch: i32, metadata: &str, code: i16| {
            OffsetFetchResponsePartition::default()
                .with_partition_index(index)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(if version >= 5 { epoch } else { -1 })
                .with_metadata(Some(str_bytes(metadata)))
                .with_error_code(code)
        };
        if g.error_code != ec::NONE {
            if version >= 2 {
                return OffsetFetchResponse::default().with_error_code(g.error_code);
            }
            // v1 has no group level error: every requested partition has it.
            let topics = requested
                .unwrap_or_default()
                .into_iter()
                .map(|t| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(str_bytes(&t.name)))
                        .with_partitions(
                            t.partition_indexes
                                .iter()
                                .map(|&p| partition(p, INVALID_OFFSET, -1, "", g.error_code))
                                .collect(),
                        )
                })
                .collect();
            return OffsetFetchResponse::default().with_topics(topics);
        }
        let topics = g
            .topics
            .into_iter()
            .map(|t| {
                OffsetFetchResponseTopic::default()
                    .with_name(TopicName(str_bytes(&t.name)))
                    .with_partitions(
                        t.partitions
                            .into_iter()
                            .map(|p| {
                                partition(
                                    p.partition_index,
                                    p.committed_offset,
                                    p.committed_leader_epoch,
                                    &p.metadata,
                                    p.error_code,
                                )
                            })
                            .collect(),
                    )
            })
            .collect();
        OffsetFetchResponse::default().with_topics(topics)
    }
    .boxed_local()
}
