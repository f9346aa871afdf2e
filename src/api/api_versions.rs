//! ApiVersions: the APIs and versions this broker implements.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use super::RequestContext;
use crate::protocol::error as ec;
use crate::protocol::SUPPORTED;

pub fn supported_apis() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|(k, lo, hi)| {
            ApiVersion::default()
                .with_api_key(*k as i16)
                .with_min_version(*lo)
                .with_max_version(*hi)
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
