//! SyncGroup (v0-v5): the leader's assignments in, each member's out; a
//! follower's request is parked until the leader's arrives.

use futures::future::LocalBoxFuture;
use futures::FutureExt;
use kafka_protocol::messages::{ApiKey, SyncGroupRequest, SyncGroupResponse};

use super::{Api, Handler, Order, Reply, RequestContext};
use crate::group::classic::{self, SyncGroupAssignment};
use crate::protocol::str_bytes;
use crate::shard::groups::{route_one, GroupRequest, GroupResponse};

/// The SyncGroup handler: versions 0-5, routed in request order.
pub struct SyncGroup;

impl Handler for SyncGroup {
    const API: Api = Api {
        key: ApiKey::SyncGroup,
        min_version: 0,
        max_version: 5,
        order: Order::InOrder,
    };
    type Request = SyncGroupRequest;
    type Response = SyncGroupResponse;

    async fn start(ctx: &RequestContext, req: SyncGroupRequest) -> Reply<SyncGroupResponse> {
        Reply::Pending(route(ctx, req).await)
    }
}

fn to_wire(r: classic::SyncGroupResponse) -> SyncGroupResponse {
    SyncGroupResponse::default()
        .with_error_code(r.error_code)
        .with_protocol_type(r.protocol_type.as_deref().map(str_bytes))
        .with_protocol_name(r.protocol_name.as_deref().map(str_bytes))
        .with_assignment(r.assignment)
}

pub async fn route(ctx: &RequestContext, req: SyncGroupRequest) -> LocalBoxFuture<'static, SyncGroupResponse> {
    let v5 = ctx.api_version >= 5;
    let r = classic::SyncGroupRequest {
        group_id: req.group_id.0.to_string(),
        generation_id: req.generation_id,
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
        protocol_type: if v5 {
            req.protocol_type.map(|s| s.to_string())
        } else {
            None
        },
        protocol_name: if v5 {
            req.protocol_name.map(|s| s.to_string())
        } else {
            None
        },
        assignments: req
            .assignments
            .into_iter()
            .map(|a| SyncGroupAssignment {
                member_id: a.member_id.to_string(),
                assignment: a.assignment,
            })
            .collect(),
    };
    let group_id = r.group_id.clone();
    route_one(
        &ctx.shard,
        &group_id,
        GroupRequest::Sync(r),
        |resp| match resp {
            GroupResponse::Sync(r) => Some(r),
            _ => None,
        },
        classic::SyncGroupResponse::error,
    )
    .await
    .map(to_wire)
    .boxed_local()
}
