//! LeaveGroup: one member (v0-v2) or a batch of members (v3+, KIP-345).

use futures::future::LocalBoxFuture;
use futures::FutureExt;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{ApiKey, LeaveGroupRequest, LeaveGroupResponse};

use super::{Api, Handler, Order, Reply, RequestContext};
use crate::group::classic::{self, LeaveMember};
use crate::protocol::str_bytes;
use crate::shard::groups::{route_one, GroupRequest, GroupResponse};

/// The LeaveGroup handler: versions 0-5, routed in request order.
pub struct LeaveGroup;

impl Handler for LeaveGroup {
    const API: Api = Api {
        key: ApiKey::LeaveGroup,
        min_version: 0,
        max_version: 5,
        order: Order::InOrder,
    };
    type Request = LeaveGroupRequest;
    type Response = LeaveGroupResponse;

    async fn start(ctx: &RequestContext, req: LeaveGroupRequest) -> Reply<LeaveGroupResponse> {
        Reply::Pending(route(ctx, req).await)
    }
}

fn to_wire(version: i16, r: classic::LeaveGroupResponse) -> LeaveGroupResponse {
    if version < 3 {
        return LeaveGroupResponse::default().with_error_code(r.v0_error());
    }
    LeaveGroupResponse::default()
        .with_error_code(r.error_code)
        .with_members(
            r.members
                .into_iter()
                .map(|m| {
                    MemberResponse::default()
                        .with_member_id(str_bytes(&m.member_id))
                        .with_group_instance_id(m.group_instance_id.as_deref().map(str_bytes))
                        .with_error_code(m.error_code)
                })
                .collect(),
        )
}

pub async fn route(ctx: &RequestContext, req: LeaveGroupRequest) -> LocalBoxFuture<'static, LeaveGroupResponse> {
    let version = ctx.api_version;
    let members = if version < 3 {
        vec![LeaveMember {
            member_id: req.member_id.to_string(),
            group_instance_id: None,
            reason: None,
        }]
    } else {
        req.members
            .into_iter()
            .map(|m| LeaveMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.map(|s| s.to_string()),
                reason: m.reason.map(|s| s.to_string()),
            })
            .collect()
    };
    let r = classic::LeaveGroupRequest {
        group_id: req.group_id.0.to_string(),
        members,
    };
    let group_id = r.group_id.clone();
    route_one(
        &ctx.shard,
        &group_id,
        GroupRequest::Leave(r),
        |resp| match resp {
            GroupResponse::Leave(r) => Some(r),
            _ => None,
        },
        |code| classic::LeaveGroupResponse {
            error_code: code,
            members: Vec::new(),
        },
    )
    .await
    .map(move |r| to_wire(version, r))
    .boxed_local()
}
