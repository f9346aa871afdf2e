//! AlterConfigs (deprecated by IncrementalAlterConfigs but still used): the
//! given configs become the complete set of overrides of each topic or
//! group. See [`super::config_resource`] for the checks and the resources
//! ringlog can change.

use kafka_protocol::messages::alter_configs_request::AlterableConfig;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::config_resource::{alter_handler, AlterApi};
use super::RequestContext;

pub async fn handle(ctx: &RequestContext, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let set = |_: &AlterableConfig| 0;
    let responses = alter_handler!(ctx, req, AlterApi::Replace, set, AlterConfigsResourceResponse);
    AlterConfigsResponse::default().with_responses(responses)
}
