//! JoinGroup (v0-v9): routed to the coordinating shard, where the request
//! may be parked until the rebalance completes.

use futures::future::LocalBoxFuture;
use futures::FutureExt;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{ApiKey, JoinGroupRequest, JoinGroupResponse};

use super::{Api, Handler, Order, Reply, RequestContext};
use crate::group::classic::{self, JoinProtocol};
use crate::protocol::str_bytes;
use crate::shard::groups::{route_one, GroupRequest, GroupResponse};

/// The JoinGroup handler: versions 0-9, routed in request order.
pub struct JoinGroup;

impl Handler for JoinGroup {
    const API: Api = Api {
        key: ApiKey::JoinGroup,
        min_version: 0,
        max_version: 9,
        order: Order::InOrder,
    };
    type Request = JoinGroupRequest;
    type Response = JoinGroupResponse;

    async fn start(ctx: &RequestContext, req: JoinGroupRequest) -> Reply<JoinGroupResponse> {
        Reply::Pending(route(ctx, req).await)
    }
}

fn to_wire(version: i16, r: classic::JoinGroupResponse) -> JoinGroupResponse {
    // Before v7 the protocol name is not nullable.
    let protocol_name = if version >= 7 {
        r.protocol_name
    } else {
        Some(r.protocol_name.unwrap_or_default())
    };
    JoinGroupResponse::default()
        .with_error_code(r.error_code)
        .with_generation_id(r.generation_id)
        .with_protocol_type(r.protocol_type.as_deref().map(str_bytes))
        .with_protocol_name(protocol_name.as_deref().map(str_bytes))
        .with_leader(str_bytes(&r.leader))
        .with_skip_assignment(version >= 9 && r.skip_assignment)
        .with_member_id(str_bytes(&r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(&m.member_id))
                        .with_group_instance_id(m.group_instance_id.as_deref().map(str_bytes))
                        .with_metadata(m.metadata)
                })
                .collect(),
        )
}

pub async fn route(ctx: &RequestContext, req: JoinGroupRequest) -> LocalBoxFuture<'static, JoinGroupResponse> {
    let version = ctx.api_version;
    let r = classic::JoinGroupRequest {
        group_id: req.group_id.0.to_string(),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| JoinProtocol {
                name: p.name.to_string(),
                metadata: p.metadata,
            })
            .collect(),
        reason: req.reason.map(|s| s.to_string()),
        api_version: version,
        client_id: ctx.client_id.clone().unwrap_or_default(),
        client_host: format!("/{}", ctx.client_host),
    };
    let group_id = r.group_id.clone();
    let member_id = r.member_id.clone();
    let pending = route_one(
        &ctx.shard,
        &group_id,
        GroupRequest::Join(r),
        |resp| match resp {
            GroupResponse::Join(r) => Some(r),
            _ => None,
        },
        move |code| classic::JoinGroupResponse::error(code, member_id),
    )
    .await;
    pending.map(move |r| to_wire(version, r)).boxed_local()
}
