//! IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT (the last two
//! on LIST-type configs only) on the overrides of topics and groups. See
//! [`super::config_resource`] for the checks and the resources ringlog can
//! change.

use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{ApiKey, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::config_resource::{alter_handler, AlterApi};
use super::{Api, Handler, Order, Reply, RequestContext};

/// The IncrementalAlterConfigs handler: versions 0-1, worked on out of order.
pub struct IncrementalAlterConfigs;

impl Handler for IncrementalAlterConfigs {
    const API: Api = Api {
        key: ApiKey::IncrementalAlterConfigs,
        min_version: 0,
        max_version: 1,
        order: Order::OutOfOrder,
    };
    type Request = IncrementalAlterConfigsRequest;
    type Response = IncrementalAlterConfigsResponse;

    async fn start(ctx: &RequestContext, req: IncrementalAlterConfigsRequest) -> Reply<IncrementalAlterConfigsResponse> {
        Reply::Ready(handle(ctx, req).await)
    }
}

pub async fn handle(ctx: &RequestContext, req: IncrementalAlterConfigsRequest) -> IncrementalAlterConfigsResponse {
    let op = |c: &AlterableConfig| c.config_operation;
    let responses = alter_handler!(ctx, req, AlterApi::Incremental, op, AlterConfigsResourceResponse);
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
