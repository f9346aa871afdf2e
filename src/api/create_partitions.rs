//! CreatePartitions: grow a topic; new partitions are placed on the least
//! loaded shards.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{ApiKey, CreatePartitionsRequest, CreatePartitionsResponse};

use super::{Api, Handler, Order, Reply, RequestContext};
use crate::protocol::str_bytes;
use crate::routing::ControllerOp;
use crate::shard::controller;

/// The CreatePartitions handler: versions 0-3, worked on out of order.
pub struct CreatePartitions;

impl Handler for CreatePartitions {
    const API: Api = Api {
        key: ApiKey::CreatePartitions,
        min_version: 0,
        max_version: 3,
        order: Order::OutOfOrder,
    };
    type Request = CreatePartitionsRequest;
    type Response = CreatePartitionsResponse;

    async fn start(ctx: &RequestContext, req: CreatePartitionsRequest) -> Reply<CreatePartitionsResponse> {
        Reply::Ready(handle(ctx, req).await)
    }
}

pub async fn handle(ctx: &RequestContext, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let shard = &ctx.shard;
    let topics: Vec<(String, i32)> = req
        .topics
        .iter()
        .map(|t| (t.name.0.as_str().to_string(), t.count))
        .collect();
    let results = controller::request(
        shard,
        ControllerOp::CreatePartitions {
            topics: topics.clone(),
            validate_only: req.validate_only,
        },
        topics.len(),
    )
    .await;
    let out = req
        .topics
        .iter()
        .zip(results)
        .map(|(t, r)| {
            let base = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            match r {
                Ok(_) => base,
                Err(e) => base
                    .with_error_code(e.code)
                    .with_error_message(e.message.as_deref().map(str_bytes)),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(out)
}
