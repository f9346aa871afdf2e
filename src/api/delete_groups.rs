//! DeleteGroups (v0-v2): empty groups and their offsets are removed by their
//! coordinating shards (tombstones written before answering).

use futures::future::LocalBoxFuture;
use futures::FutureExt;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{ApiKey, DeleteGroupsRequest, DeleteGroupsResponse, GroupId};

use super::{Api, Handler, Order, Reply, RequestContext};
use crate::protocol::error as ec;
use crate::protocol::str_bytes;
use crate::shard::groups::{send, split_by_shard, GroupRequest, GroupResponse};

/// The DeleteGroups handler: versions 0-2, routed in request order.
pub struct DeleteGroups;

impl Handler for DeleteGroups {
    const API: Api = Api {
        key: ApiKey::DeleteGroups,
        min_version: 0,
        max_version: 2,
        order: Order::InOrder,
    };
    type Request = DeleteGroupsRequest;
    type Response = DeleteGroupsResponse;

    async fn start(ctx: &RequestContext, req: DeleteGroupsRequest) -> Reply<DeleteGroupsResponse> {
        Reply::Pending(route(ctx, req).await)
    }
}

pub async fn route(ctx: &RequestContext, req: DeleteGroupsRequest) -> LocalBoxFuture<'static, DeleteGroupsResponse> {
    let ids: Vec<String> = req.groups_names.iter().map(|g| g.0.to_string()).collect();
    let shard = &ctx.shard;
    let (routed, errors) = split_by_shard(shard, &ids);
    let mut codes: Vec<Option<i16>> = vec![None; ids.len()];
    for (i, code) in errors {
        codes[i] = Some(code);
    }
    let mut waits = Vec::new();
    for (target, idx) in routed {
        let batch: Vec<String> = idx.iter().map(|&i| ids[i].clone()).collect();
        waits.push((idx, send(shard, target, GroupRequest::Delete(batch)).await));
    }
    async move {
        for (idx, w) in waits {
            let mut answers = match w.await {
                Some(GroupResponse::Delete(r)) => r.into_iter(),
                _ => Vec::new().into_iter(),
            };
            for i in idx {
                codes[i] = answers.next().map(|r| r.error_code);
            }
        }
        let results = codes
            .into_iter()
            .zip(ids.iter())
            .map(|(code, id)| {
                DeletableGroupResult::default()
                    .with_group_id(GroupId(str_bytes(id)))
                    .with_error_code(code.unwrap_or(ec::COORDINATOR_NOT_AVAILABLE))
            })
            .collect();
        DeleteGroupsResponse::default().with_results(results)
    }
    .boxed_local()
}
