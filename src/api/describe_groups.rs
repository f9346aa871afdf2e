//! DescribeGroups (v0-v6) of classic groups, each asked of its coordinating
//! shard. Unknown groups are Dead (v0-v5) or GROUP_ID_NOT_FOUND (v6+).

use futures::future::LocalBoxFuture;
use futures::FutureExt;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{ApiKey, DescribeGroupsRequest, DescribeGroupsResponse, GroupId};

use super::{Api, Handler, Order, Reply, RequestContext};
use crate::group::classic;
use crate::protocol::error::{self as ec, ErrorCode};
use crate::protocol::str_bytes;
use crate::shard::groups::{route_many, GroupRequest, GroupResponse};

/// The DescribeGroups handler: versions 0-6, routed in request order.
pub struct DescribeGroups;

impl Handler for DescribeGroups {
    const API: Api = Api {
        key: ApiKey::DescribeGroups,
        min_version: 0,
        max_version: 6,
        order: Order::InOrder,
    };
    type Request = DescribeGroupsRequest;
    type Response = DescribeGroupsResponse;

    async fn start(ctx: &RequestContext, req: DescribeGroupsRequest) -> Reply<DescribeGroupsResponse> {
        Reply::Pending(route(ctx, req).await)
    }
}

/// READ, DELETE and DESCRIBE: what a group allows without an authorizer.
const GROUP_AUTHORIZED_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

/// A described group's `authorized_operations`: what it allows when they
/// were asked for and the group was described, else i32::MIN (omitted).
pub fn authorized_operations(include_ops: bool, error_code: ErrorCode) -> i32 {
    if include_ops && error_code == ec::NONE {
        GROUP_AUTHORIZED_OPERATIONS
    } else {
        i32::MIN
    }
}

fn to_wire(version: i16, g: classic::DescribedGroup, include_ops: bool) -> DescribedGroup {
    let mut message = None;
    let mut g = g;
    if g.error_code == ec::GROUP_ID_NOT_FOUND {
        if version >= 6 {
            message = Some(str_bytes(&format!("Group {} not found.", g.group_id)));
        } else {
            g = classic::DescribedGroup::dead(&g.group_id);
        }
    } else if g.error_code != ec::NONE && version >= 6 {
        message = Some(str_bytes(ec::default_message(g.error_code)));
    }
    let ops = authorized_operations(include_ops, g.error_code);
    DescribedGroup::default()
        .with_error_code(g.error_code)
        .with_error_message(message)
        .with_group_id(GroupId(str_bytes(&g.group_id)))
        .with_group_state(str_bytes(&g.group_state))
        .with_protocol_type(str_bytes(&g.protocol_type))
        .with_protocol_data(str_bytes(&g.protocol_data))
        .with_members(
            g.members
                .into_iter()
                .map(|m| {
                    DescribedGroupMember::default()
                        .with_member_id(str_bytes(&m.member_id))
                        .with_group_instance_id(m.group_instance_id.as_deref().map(str_bytes))
                        .with_client_id(str_bytes(&m.client_id))
                        .with_client_host(str_bytes(&m.client_host))
                        .with_member_metadata(m.member_metadata)
                        .with_member_assignment(m.member_assignment)
                })
                .collect(),
        )
        .with_authorized_operations(ops)
}

pub async fn route(
    ctx: &RequestContext,
    req: DescribeGroupsRequest,
) -> LocalBoxFuture<'static, DescribeGroupsResponse> {
    let version = ctx.api_version;
    let include_ops = version >= 3 && req.include_authorized_operations;
    let ids = req.groups.iter().map(|g| g.0.to_string()).collect();
    route_many(
        &ctx.shard,
        ids,
        GroupRequest::Describe,
        |resp| match resp {
            GroupResponse::Describe(r) => Some(r),
            _ => None,
        },
        |id, code| classic::DescribedGroup {
            error_code: code,
            ..classic::DescribedGroup::dead(id)
        },
    )
    .await
    .map(move |groups| {
        let groups = groups.into_iter().map(|g| to_wire(version, g, include_ops)).collect();
        DescribeGroupsResponse::default().with_groups(groups)
    })
    .boxed_local()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(code: ErrorCode) -> classic::DescribedGroup {
        classic::DescribedGroup {
            error_code: code,
            ..classic::DescribedGroup::dead("g")
        }
    }

    fn message(version: i16, code: ErrorCode) -> Option<String> {
        to_wire(version, failed(code), false)
            .error_message
            .map(|m| m.to_string())
    }

    /// v6+ errors carry the code's message from the table (the text sent
    /// for COORDINATOR_NOT_AVAILABLE is unchanged); older versions carry
    /// none, and an unknown group is Dead without an error.
    #[test]
    fn error_messages_come_from_the_table() {
        assert_eq!(
            message(6, ec::COORDINATOR_NOT_AVAILABLE).as_deref(),
            Some("The coordinator is not available.")
        );
        assert_eq!(
            message(6, ec::NOT_COORDINATOR).as_deref(),
            Some(ec::default_message(ec::NOT_COORDINATOR))
        );
        assert_eq!(message(6, ec::GROUP_ID_NOT_FOUND).as_deref(), Some("Group g not found."));
        assert_eq!(message(5, ec::NOT_COORDINATOR), None);
        let dead = to_wire(5, failed(ec::GROUP_ID_NOT_FOUND), false);
        assert_eq!((dead.error_code, dead.group_state.as_str()), (ec::NONE, "Dead"));
    }
}
