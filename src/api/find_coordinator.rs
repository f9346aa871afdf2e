//! FindCoordinator (v0-v6): this broker coordinates every group (single
//! node); v4+ answers a batch of keys. Transaction coordinators are not
//! available (no transactions).

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{ApiKey, BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::{Api, Handler, Order, Reply, RequestContext};
use crate::protocol::error as ec;
use crate::protocol::str_bytes;
use crate::shard::groups::coordinator_shard;

/// The FindCoordinator handler: versions 0-6, worked on out of order.
pub struct FindCoordinator;

impl Handler for FindCoordinator {
    const API: Api = Api {
        key: ApiKey::FindCoordinator,
        min_version: 0,
        max_version: 6,
        order: Order::OutOfOrder,
    };
    type Request = FindCoordinatorRequest;
    type Response = FindCoordinatorResponse;

    async fn start(ctx: &RequestContext, req: FindCoordinatorRequest) -> Reply<FindCoordinatorResponse> {
        Reply::Ready(handle(ctx, req).await)
    }
}

/// `CoordinatorType.GROUP`.
const KEY_TYPE_GROUP: i8 = 0;
/// `CoordinatorType.TRANSACTION`.
const KEY_TYPE_TRANSACTION: i8 = 1;

fn error(key: &str, code: i16, message: &str) -> Coordinator {
    Coordinator::default()
        .with_key(str_bytes(key))
        .with_node_id(BrokerId(-1))
        .with_host(str_bytes(""))
        .with_port(-1)
        .with_error_code(code)
        .with_error_message(Some(str_bytes(message)))
}

fn coordinator(ctx: &RequestContext, key: &str, key_type: i8) -> Coordinator {
    let shard = &ctx.shard;
    match key_type {
        KEY_TYPE_GROUP => match coordinator_shard(shard, key) {
            Ok(_) => Coordinator::default()
                .with_key(str_bytes(key))
                .with_node_id(BrokerId(shard.config.node_id))
                .with_host(str_bytes(&shard.config.advertised_host))
                .with_port(shard.config.advertised_port)
                .with_error_code(ec::NONE),
            Err(code) => error(key, code, ec::default_message(code)),
        },
        KEY_TYPE_TRANSACTION => error(
            key,
            ec::COORDINATOR_NOT_AVAILABLE,
            "Transactions are not supported by this broker.",
        ),
        other => error(key, ec::INVALID_REQUEST, &format!("Unknown coordinator type {other}.")),
    }
}

pub async fn handle(ctx: &RequestContext, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    if ctx.api_version >= 4 {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|k| coordinator(ctx, k.as_str(), req.key_type))
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    // v0 has no key type: always a group.
    let key_type = if ctx.api_version >= 1 {
        req.key_type
    } else {
        KEY_TYPE_GROUP
    };
    let c = coordinator(ctx, req.key.as_str(), key_type);
    FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_error_message(if c.error_code == ec::NONE {
            None
        } else {
            c.error_message
        })
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port)
}
