//! ApiVersions: the APIs and versions this broker implements.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

use super::{Api, Handler, Order, Reply, RequestContext};
use crate::protocol::error as ec;

/// The ApiVersions handler: versions 0-4, worked on out of order.
pub struct ApiVersions;

impl Handler for ApiVersions {
    const API: Api = Api {
        key: ApiKey::ApiVersions,
        min_version: 0,
        max_version: 4,
        order: Order::OutOfOrder,
    };
    type Request = ApiVersionsRequest;
    type Response = ApiVersionsResponse;

    async fn start(ctx: &RequestContext, req: ApiVersionsRequest) -> Reply<ApiVersionsResponse> {
        Reply::Ready(handle(ctx, req).await)
    }
}

/// The declared handlers' APIs and versions (see [`super::APIS`]).
pub fn supported_apis() -> Vec<ApiVersion> {
    super::APIS
        .iter()
        .map(|a| {
            ApiVersion::default()
                .with_api_key(a.key as i16)
                .with_min_version(a.min_version)
                .with_max_version(a.max_version)
        })
        .collect()
}

pub async fn handle(_ctx: &RequestContext, _req: ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ec::NONE)
        .with_api_keys(supported_apis())
        .with_finalized_features_epoch(-1)
}

/// The reply to an ApiVersions request at a version we don't implement:
/// UNSUPPORTED_VERSION with the supported list, encoded as v0 so any client
/// can read it.
pub fn unsupported_version_reply() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ec::UNSUPPORTED_VERSION)
        .with_api_keys(supported_apis())
}
