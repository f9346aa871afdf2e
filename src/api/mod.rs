//! Kafka API handlers, one per file. [`dispatch`] decodes a request body
//! and runs its handler; each handler turns a decoded request into a
//! response using the shard's metadata and the routing layer.

pub mod alter_configs;
pub mod api_versions;
mod config_resource;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod fetch;
pub mod find_coordinator;
mod group_common;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod produce;
pub mod sync_group;

use std::rc::Rc;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use futures::FutureExt;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Encodable;

use crate::protocol::{decode_body, encode_response};
use crate::shard::Shard;

/// What a handler knows about the request it serves.
#[derive(Clone)]
pub struct RequestContext {
    pub shard: Rc<Shard>,
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    pub client_host: String,
}

/// A response being produced: resolves to the encoded frame, or None when
/// the request gets no response (acks=0 produce).
pub type PendingResponse = LocalBoxFuture<'static, Option<ResponseFrame>>;

/// An encoded response frame in pieces, written back to back (record
/// batches are not copied into one buffer).
pub type ResponseFrame = Vec<Bytes>;

/// The request cannot be served; the connection must be closed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CloseConnection(pub String);

fn respond<T: Encodable + 'static>(ctx: &RequestContext, body: T) -> Option<ResponseFrame> {
    match encode_response(ctx.api_key, ctx.api_version, ctx.correlation_id, &body) {
        Ok(b) => Some(vec![b]),
        Err(e) => {
            tracing::error!(api = ?ctx.api_key, version = ctx.api_version, "cannot encode response: {e}");
            None
        }
    }
}

macro_rules! simple {
    ($ctx:expr, $body:expr, $module:ident) => {{
        let req = decode_body(&mut $body, $ctx.api_version)
            .map_err(|e| CloseConnection(format!("malformed {:?} request: {e}", $ctx.api_key)))?;
        let ctx = $ctx;
        Ok(async move {
            let resp = $module::handle(&ctx, req).await;
            respond(&ctx, resp)
        }
        .boxed_local())
    }};
}

/// Like `simple!`, for handlers whose routing must happen in request order
/// (group requests): `start` queues the work at the owning shard before the
/// next request of the connection is read.
macro_rules! routed {
    ($ctx:expr, $body:expr, $module:ident) => {{
        let req = decode_body(&mut $body, $ctx.api_version)
            .map_err(|e| CloseConnection(format!("malformed {:?} request: {e}", $ctx.api_key)))?;
        let ctx = $ctx;
        let pending = $module::start(&ctx, req).await;
        Ok(async move {
            let resp = pending.await;
            respond(&ctx, resp)
        }
        .boxed_local())
    }};
}

/// Decode and start serving one request. Produce does its routing (the
/// part that must keep per-connection order) before this returns.
pub async fn dispatch(ctx: RequestContext, mut body: Bytes) -> Result<PendingResponse, CloseConnection> {
    match ctx.api_key {
        ApiKey::ApiVersions => simple!(ctx, body, api_versions),
        ApiKey::Metadata => simple!(ctx, body, metadata),
        ApiKey::Fetch => {
            let req = decode_body(&mut body, ctx.api_version)
                .map_err(|e| CloseConnection(format!("malformed Fetch request: {e}")))?;
            Ok(async move {
                let topics = fetch::handle(&ctx, req).await;
                Some(crate::protocol::fetch_response::encode(
                    ctx.api_version,
                    ctx.correlation_id,
                    0,
                    0,
                    &topics,
                ))
            }
            .boxed_local())
        }
        ApiKey::ListOffsets => simple!(ctx, body, list_offsets),
        ApiKey::CreateTopics => simple!(ctx, body, create_topics),
        ApiKey::DeleteTopics => simple!(ctx, body, delete_topics),
        ApiKey::CreatePartitions => simple!(ctx, body, create_partitions),
        ApiKey::DescribeConfigs => simple!(ctx, body, describe_configs),
        ApiKey::AlterConfigs => simple!(ctx, body, alter_configs),
        ApiKey::IncrementalAlterConfigs => simple!(ctx, body, incremental_alter_configs),
        ApiKey::DescribeCluster => simple!(ctx, body, describe_cluster),
        ApiKey::InitProducerId => simple!(ctx, body, init_producer_id),
        ApiKey::FindCoordinator => simple!(ctx, body, find_coordinator),
        ApiKey::JoinGroup => routed!(ctx, body, join_group),
        ApiKey::SyncGroup => routed!(ctx, body, sync_group),
        ApiKey::Heartbeat => routed!(ctx, body, heartbeat),
        ApiKey::LeaveGroup => routed!(ctx, body, leave_group),
        ApiKey::OffsetCommit => routed!(ctx, body, offset_commit),
        ApiKey::OffsetFetch => routed!(ctx, body, offset_fetch),
        ApiKey::OffsetDelete => routed!(ctx, body, offset_delete),
        ApiKey::DescribeGroups => routed!(ctx, body, describe_groups),
        ApiKey::ListGroups => simple!(ctx, body, list_groups),
        ApiKey::DeleteGroups => routed!(ctx, body, delete_groups),
        ApiKey::ConsumerGroupHeartbeat => routed!(ctx, body, consumer_group_heartbeat),
        ApiKey::ConsumerGroupDescribe => routed!(ctx, body, consumer_group_describe),
        ApiKey::Produce => {
            let req = decode_body(&mut body, ctx.api_version)
                .map_err(|e| CloseConnection(format!("malformed Produce request: {e}")))?;
            let acks_zero = produce::acks_of(&req) == 0;
            let pending = produce::start(&ctx, req).await;
            Ok(async move {
                let resp = pending.await;
                if acks_zero {
                    None
                } else {
                    respond(&ctx, resp)
                }
            }
            .boxed_local())
        }
        other => Err(CloseConnection(format!("unsupported API {other:?}"))),
    }
}
