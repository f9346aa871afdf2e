//! Heartbeat (v0-v4) of a classic group member.

use futures::future::LocalBoxFuture;
use futures::FutureExt;
use kafka_protocol::messages::{ApiKey, HeartbeatRequest, HeartbeatResponse};

use super::{Api, Handler, Order, Reply, RequestContext};
use crate::group::classic;
use crate::shard::groups::{route_one, GroupRequest, GroupResponse};

/// The Heartbeat handler: versions 0-4, routed in request order.
pub struct Heartbeat;

impl Handler for Heartbeat {
    const API: Api = Api {
        key: ApiKey::Heartbeat,
        min_version: 0,
        max_version: 4,
        order: Order::InOrder,
    };
    type Request = HeartbeatRequest;
    type Response = HeartbeatResponse;

    async fn start(ctx: &RequestContext, req: HeartbeatRequest) -> Reply<HeartbeatResponse> {
        Reply::Pending(route(ctx, req).await)
    }
}

pub async fn route(ctx: &RequestContext, req: HeartbeatRequest) -> LocalBoxFuture<'static, HeartbeatResponse> {
    let r = classic::HeartbeatRequest {
        group_id: req.group_id.0.to_string(),
        generation_id: req.generation_id,
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
    };
    let group_id = r.group_id.clone();
    route_one(
        &ctx.shard,
        &group_id,
        GroupRequest::Heartbeat(r),
        |resp| match resp {
            GroupResponse::Heartbeat(r) => Some(r.error_code),
            _ => None,
        },
        |code| code,
    )
    .await
    .map(|code| HeartbeatResponse::default().with_error_code(code))
    .boxed_local()
}
