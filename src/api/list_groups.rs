//! ListGroups (v0-v5): the groups of every shard, with the v4 state filter
//! and the v5 type filter.

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{ApiKey, GroupId, ListGroupsRequest, ListGroupsResponse};

use super::{Api, Handler, Order, Reply, RequestContext};
use crate::protocol::error as ec;
use crate::protocol::str_bytes;
use crate::shard::groups::{send, GroupRequest, GroupResponse};

/// The ListGroups handler: versions 0-5, worked on out of order.
pub struct ListGroups;

impl Handler for ListGroups {
    const API: Api = Api {
        key: ApiKey::ListGroups,
        min_version: 0,
        max_version: 5,
        order: Order::OutOfOrder,
    };
    type Request = ListGroupsRequest;
    type Response = ListGroupsResponse;

    async fn start(ctx: &RequestContext, req: ListGroupsRequest) -> Reply<ListGroupsResponse> {
        Reply::Ready(handle(ctx, req).await)
    }
}

pub async fn handle(ctx: &RequestContext, req: ListGroupsRequest) -> ListGroupsResponse {
    let version = ctx.api_version;
    let states: Vec<String> = if version >= 4 {
        req.states_filter.iter().map(|s| s.to_string()).collect()
    } else {
        Vec::new()
    };
    let types: Vec<String> = if version >= 5 {
        req.types_filter.iter().map(|s| s.to_string()).collect()
    } else {
        Vec::new()
    };
    let shard = &ctx.shard;
    let mut waits = Vec::with_capacity(shard.shards());
    for target in 0..shard.shards() {
        let r = GroupRequest::List {
            states: states.clone(),
            types: types.clone(),
        };
        waits.push(send(shard, target, r).await);
    }
    let mut error = ec::NONE;
    let mut groups = Vec::new();
    for w in waits {
        match w.await {
            Some(GroupResponse::List(Ok(listed))) => groups.extend(listed),
            Some(GroupResponse::List(Err(code))) => error = code,
            _ => error = ec::COORDINATOR_NOT_AVAILABLE,
        }
    }
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    ListGroupsResponse::default().with_error_code(error).with_groups(
        groups
            .into_iter()
            .map(|g| {
                ListedGroup::default()
                    .with_group_id(GroupId(str_bytes(&g.group_id)))
                    .with_protocol_type(str_bytes(&g.protocol_type))
                    .with_group_state(str_bytes(&g.group_state))
                    .with_group_type(str_bytes(&g.group_type))
            })
            .collect(),
    )
}
