//! AlterConfigs (deprecated by IncrementalAlterConfigs but still used): the
//! given configs become the complete set of overrides of each topic or
//! group. See [`super::config_resource`] for the checks and the resources
//! ringlog can change.

use kafka_protocol::messages::alter_configs_request::AlterableConfig;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse, ApiKey};

use super::config_resource::{alter_handler, AlterApi};
use super::{Api, Handler, Order, Reply, RequestContext};

/// The AlterConfigs handler: versions 0-2, worked on out of order.
pub struct AlterConfigs;

impl Handler for AlterConfigs {
    const API: Api = Api {
        key: ApiKey::AlterConfigs,
        min_version: 0,
        max_version: 2,
        order: Order::OutOfOrder,
    };
    type Request = AlterConfigsRequest;
    type Response = AlterConfigsResponse;

    async fn start(ctx: &RequestContext, req: AlterConfigsRequest) -> Reply<AlterConfigsResponse> {
        Reply::Ready(handle(ctx, req).await)
    }
}

pub async fn handle(ctx: &RequestContext, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let set = |_: &AlterableConfig| 0;
    let responses = alter_handler!(ctx, req, AlterApi::Replace, set, AlterConfigsResourceResponse);
    AlterConfigsResponse::default().with_responses(responses)
}
