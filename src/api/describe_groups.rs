//! DescribeGroups (v0-v6) of classic groups, each asked of its coordinating
//! shard. Unknown groups are Dead (v0-v5) or GROUP_ID_NOT_FOUND (v6+).

use futures::future::LocalBoxFuture;
use futures::FutureExt;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, GroupId};

use super::RequestContext;
use crate::group::classic;
use crate::group::error::{COORDINATOR_NOT_AVAILABLE, GROUP_ID_NOT_FOUND, NONE};
use crate::protocol::str_bytes;
use crate::shard::groups::{send, split_by_shard, GroupRequest, GroupResponse};

/// READ, DELETE and DESCRIBE: what a group allows without an authorizer.
pub const GROUP_AUTHORIZED_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

fn to_wire(version: i16, g: classic::DescribedGroup, include_ops: bool) -> DescribedGroup {
    let mut message = None;
    let mut g = g;
    if g.error_code == GROUP_ID_NOT_FOUND {
        if version >= 6 {
            message = Some(str_bytes(&format!("Group {} not found.", g.group_id)));
        } else {
            g = classic::DescribedGroup::dead(&g.group_id);
        }
    } else if g.error_code != NONE && version >= 6 {
        message = Some(str_bytes("The coordinator is not available."));
    }
    let ops = if include_ops && g.error_code == NONE {
        GROUP_AUTHORIZED_OPERATIONS
    } else {
        i32::MIN
    };
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

pub async fn start(
    ctx: &RequestContext,
    req: DescribeGroupsRequest,
) -> LocalBoxFuture<'static, DescribeGroupsResponse> {
    let version = ctx.api_version;
    let include_ops = version >= 3 && req.include_authorized_operations;
    let ids: Vec<String> = req.groups.iter().map(|g| g.0.to_string()).collect();
    let shard = &ctx.shard;
    let (routed, errors) = split_by_shard(shard, &ids);
    let mut out: Vec<Option<classic::DescribedGroup>> = vec![None; ids.len()];
    for (i, code) in errors {
        out[i] = Some(classic::DescribedGroup {
            error_code: code,
            ..classic::DescribedGroup::dead(&ids[i])
        });
    }
    let mut waits = Vec::new();
    for (target, idx) in routed {
        let batch: Vec<String> = idx.iter().map(|&i| ids[i].clone()).collect();
        waits.push((idx, send(shard, target, GroupRequest::Describe(batch)).await));
    }
    async move {
        for (idx, w) in waits {
            let mut answers = match w.await {
                Some(GroupResponse::Describe(r)) => r.into_iter(),
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
                let g = g.unwrap_or_else(|| classic::DescribedGroup {
                    error_code: COORDINATOR_NOT_AVAILABLE,
                    ..classic::DescribedGroup::dead(id)
                });
                to_wire(version, g, include_ops)
            })
            .collect();
        DescribeGroupsResponse::default().with_groups(groups)
    }
    .boxed_local()
}
