//! InitProducerId: ids for idempotent producers. Transactions are not
//! implemented yet, so a transactional id gets COORDINATOR_NOT_AVAILABLE.

use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::{Api, Handler, Order, Reply, RequestContext};
use crate::protocol::error as ec;
use crate::routing::{ShardRequest, ShardResponse};

/// The InitProducerId handler: versions 0-5, worked on out of order.
pub struct InitProducerId;

impl Handler for InitProducerId {
    const API: Api = Api {
        key: ApiKey::InitProducerId,
        min_version: 0,
        max_version: 5,
        order: Order::OutOfOrder,
    };
    type Request = InitProducerIdRequest;
    type Response = InitProducerIdResponse;

    async fn start(ctx: &RequestContext, req: InitProducerIdRequest) -> Reply<InitProducerIdResponse> {
        Reply::Ready(handle(ctx, req).await)
    }
}

pub async fn handle(ctx: &RequestContext, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let fail = |code| {
        InitProducerIdResponse::default()
            .with_error_code(code)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if req.transactional_id.is_some() {
        return fail(ec::COORDINATOR_NOT_AVAILABLE);
    }
    match ctx.shard.dispatch(0, ShardRequest::AllocateProducerId).await.await {
        Some(ShardResponse::ProducerId(Ok(id))) => InitProducerIdResponse::default()
            .with_error_code(ec::NONE)
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Some(ShardResponse::ProducerId(Err(code))) => fail(code),
        _ => fail(ec::COORDINATOR_NOT_AVAILABLE),
    }
}
