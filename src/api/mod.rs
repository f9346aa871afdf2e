//! Kafka API handlers, one per file. Each file declares its handler once
//! (a type implementing [`Handler`]: the API key, the versions served and
//! whether the work may overlap the connection's later requests), and the
//! `handlers!` list below is the only place that names them: the module
//! declarations, [`APIS`] (what ApiVersions advertises and the connection
//! accepts), [`dispatch`] and [`decode_only`] are all generated from it.

mod config_resource;
mod group_common;

use std::future::Future;
use std::rc::Rc;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use futures::FutureExt;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable};

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
    /// Size of the request frame (header and body), which every zero-copy
    /// slice of the request (a produce's record batches) keeps alive.
    pub frame_len: usize,
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

/// Whether a request may be worked on out of order, that is while the
/// connection's later requests are already being worked on. Responses are
/// written in request order either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// The whole request is worked on in its own task, concurrently with
    /// the connection's later requests.
    OutOfOrder,
    /// [`Handler::start`] runs to completion before the next request of
    /// the connection is read: it routes the work (queues it at the shard
    /// that owns it), so one connection's appends, group requests and
    /// commits take effect in the order they were sent. Only the waiting
    /// for the result ([`Reply::Pending`]) overlaps later requests.
    InOrder,
}

/// What a handler declares about its API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Api {
    pub key: ApiKey,
    /// The versions served; ApiVersions advertises exactly these and any
    /// other version is refused before the body is decoded.
    pub min_version: i16,
    pub max_version: i16,
    pub order: Order,
}

impl Api {
    pub fn supports(&self, version: i16) -> bool {
        (self.min_version..=self.max_version).contains(&version)
    }
}

/// The response of a started request: known already, or still being
/// worked on (with [`Order::InOrder`], the part after the routing).
pub enum Reply<R> {
    Ready(R),
    Pending(LocalBoxFuture<'static, R>),
}

impl<R> Reply<R> {
    pub async fn response(self) -> R {
        match self {
            Reply::Ready(r) => r,
            Reply::Pending(f) => f.await,
        }
    }
}

/// A Kafka API as ringlog serves it, implemented once per handler file and
/// listed once in `handlers!`.
pub trait Handler {
    const API: Api;
    type Request: Decodable + 'static;
    type Response: IntoFrame + 'static;
    /// Start serving a decoded request of a version in the declared range.
    /// See [`Order`] for when this runs.
    fn start(ctx: &RequestContext, req: Self::Request) -> impl Future<Output = Reply<Self::Response>>;
}

/// A response body turned into the frame written to the client; None sends
/// nothing.
pub trait IntoFrame {
    fn into_frame(self, ctx: &RequestContext) -> Option<ResponseFrame>;
}

impl<T: Encodable> IntoFrame for T {
    fn into_frame(self, ctx: &RequestContext) -> Option<ResponseFrame> {
        respond(ctx, self)
    }
}

/// A response the client may not be owed: Produce with acks=0 is answered
/// with nothing.
pub struct MaybeResponse<T>(pub Option<T>);

impl<T: Encodable> IntoFrame for MaybeResponse<T> {
    fn into_frame(self, ctx: &RequestContext) -> Option<ResponseFrame> {
        self.0.and_then(|body| respond(ctx, body))
    }
}

fn respond<T: Encodable>(ctx: &RequestContext, body: T) -> Option<ResponseFrame> {
    match encode_response(ctx.api_key, ctx.api_version, ctx.correlation_id, &body) {
        Ok(b) => Some(vec![b]),
        Err(e) => {
            tracing::error!(api = ?ctx.api_key, version = ctx.api_version, "cannot encode response: {e}");
            None
        }
    }
}

/// Decode a request body for handler `H`, refusing versions it does not
/// declare.
fn decode<H: Handler>(version: i16, body: &mut Bytes) -> Result<H::Request, CloseConnection> {
    if !H::API.supports(version) {
        return Err(CloseConnection(format!(
            "unsupported version {version} of {:?}",
            H::API.key
        )));
    }
    decode_body(body, version).map_err(|e| CloseConnection(format!("malformed {:?} request: {e}", H::API.key)))
}

/// Decode and start a request with handler `H`, in the order it declares.
async fn serve<H: Handler>(ctx: RequestContext, mut body: Bytes) -> Result<PendingResponse, CloseConnection> {
    let req = decode::<H>(ctx.api_version, &mut body)?;
    Ok(match H::API.order {
        Order::InOrder => {
            let reply = H::start(&ctx, req).await;
            async move { reply.response().await.into_frame(&ctx) }.boxed_local()
        }
        Order::OutOfOrder => async move {
            let reply = H::start(&ctx, req).await;
            reply.response().await.into_frame(&ctx)
        }
        .boxed_local(),
    })
}

/// Generates, from one list of `module: Handler` pairs, the handler
/// modules, [`APIS`], [`dispatch`] and [`decode_only`].
macro_rules! handlers {
    ($($module:ident: $handler:ident,)*) => {
        $(pub mod $module;)*

        /// Every API ringlog serves, as its handler declares it, in the
        /// order ApiVersions lists them.
        pub const APIS: &[Api] = &[$(<$module::$handler as Handler>::API,)*];

        /// Decode a request body and start serving it. An
        /// [`Order::InOrder`] handler has done its routing when this
        /// returns; the connection reads its next request only then.
        pub async fn dispatch(ctx: RequestContext, body: Bytes) -> Result<PendingResponse, CloseConnection> {
            let key = ctx.api_key;
            $(
                if key == <$module::$handler as Handler>::API.key {
                    return serve::<$module::$handler>(ctx, body).await;
                }
            )*
            Err(CloseConnection(format!("unsupported API {key:?}")))
        }

        /// Decode a request body as [`dispatch`] would, without serving it:
        /// Ok exactly when dispatch would start the request (for fuzzing
        /// the decoders with what a client can send).
        pub fn decode_only(api_key: i16, api_version: i16, body: &mut Bytes) -> Result<(), CloseConnection> {
            $(
                if api_key == <$module::$handler as Handler>::API.key as i16 {
                    return decode::<$module::$handler>(api_version, body).map(drop);
                }
            )*
            Err(CloseConnection(format!("unsupported API key {api_key}")))
        }

        /// The smallest request body of `key` at `version`: the request
        /// with every field at its default (tests and fuzz seeds).
        pub fn minimal_request(key: ApiKey, version: i16) -> Option<Bytes> {
            $(
                if key == <$module::$handler as Handler>::API.key {
                    let req = <<$module::$handler as Handler>::Request as Default>::default();
                    let mut buf = bytes::BytesMut::new();
                    return req.encode(&mut buf, version).ok().map(|()| buf.freeze());
                }
            )*
            None
        }
    };
}

handlers! {
    produce: Produce,
    fetch: Fetch,
    list_offsets: ListOffsets,
    metadata: Metadata,
    api_versions: ApiVersions,
    create_topics: CreateTopics,
    delete_topics: DeleteTopics,
    describe_configs: DescribeConfigs,
    alter_configs: AlterConfigs,
    incremental_alter_configs: IncrementalAlterConfigs,
    create_partitions: CreatePartitions,
    describe_cluster: DescribeCluster,
    find_coordinator: FindCoordinator,
    join_group: JoinGroup,
    sync_group: SyncGroup,
    heartbeat: Heartbeat,
    leave_group: LeaveGroup,
    offset_commit: OffsetCommit,
    offset_fetch: OffsetFetch,
    offset_delete: OffsetDelete,
    describe_groups: DescribeGroups,
    list_groups: ListGroups,
    delete_groups: DeleteGroups,
    consumer_group_heartbeat: ConsumerGroupHeartbeat,
    consumer_group_describe: ConsumerGroupDescribe,
    init_producer_id: InitProducerId,
    delete_records: DeleteRecords,
    describe_log_dirs: DescribeLogDirs,
    describe_topic_partitions: DescribeTopicPartitions,
}

/// The declared version range of an API, if ringlog serves it.
pub fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    APIS.iter()
        .find(|a| a.key == key)
        .map(|a| (a.min_version, a.max_version))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every ApiKey the protocol crate knows, with its protocol versions.
    fn all_keys() -> Vec<ApiKey> {
        (i16::MIN..=i16::MAX).filter_map(|k| ApiKey::try_from(k).ok()).collect()
    }

    #[test]
    fn declarations_are_unique_and_within_the_protocol() {
        for (i, a) in APIS.iter().enumerate() {
            assert!(
                APIS[..i].iter().all(|b| b.key != a.key),
                "{:?} is declared twice",
                a.key
            );
            let protocol = a.key.valid_versions();
            assert!(
                protocol.min <= a.min_version && a.min_version <= a.max_version && a.max_version <= protocol.max,
                "{:?}: declared {}..={}, protocol {}..={}",
                a.key,
                a.min_version,
                a.max_version,
                protocol.min,
                protocol.max
            );
        }
    }

    /// ApiVersions advertises what the handlers declare, in the same order
    /// and with the same ranges as before the declarations moved into the
    /// handler files (its response bytes are unchanged).
    #[test]
    fn api_versions_lists_exactly_the_declared_apis() {
        let expected: &[(ApiKey, i16, i16)] = &[
            (ApiKey::Produce, 3, 12),
            (ApiKey::Fetch, 4, 18),
            (ApiKey::ListOffsets, 1, 10),
            (ApiKey::Metadata, 0, 13),
            (ApiKey::ApiVersions, 0, 4),
            (ApiKey::CreateTopics, 2, 7),
            (ApiKey::DeleteTopics, 1, 6),
            (ApiKey::DescribeConfigs, 1, 4),
            (ApiKey::AlterConfigs, 0, 2),
            (ApiKey::IncrementalAlterConfigs, 0, 1),
            (ApiKey::CreatePartitions, 0, 3),
            (ApiKey::DescribeCluster, 0, 2),
            (ApiKey::FindCoordinator, 0, 6),
            (ApiKey::JoinGroup, 0, 9),
            (ApiKey::SyncGroup, 0, 5),
            (ApiKey::Heartbeat, 0, 4),
            (ApiKey::LeaveGroup, 0, 5),
            (ApiKey::OffsetCommit, 2, 9),
            (ApiKey::OffsetFetch, 1, 9),
            (ApiKey::OffsetDelete, 0, 0),
            (ApiKey::DescribeGroups, 0, 6),
            (ApiKey::ListGroups, 0, 5),
            (ApiKey::DeleteGroups, 0, 2),
            (ApiKey::ConsumerGroupHeartbeat, 0, 1),
            (ApiKey::ConsumerGroupDescribe, 0, 1),
            (ApiKey::InitProducerId, 0, 5),
            (ApiKey::DeleteRecords, 0, 2),
            (ApiKey::DescribeLogDirs, 1, 4),
            (ApiKey::DescribeTopicPartitions, 0, 0),
        ];
        let advertised: Vec<(i16, i16, i16)> = api_versions::supported_apis()
            .iter()
            .map(|v| (v.api_key, v.min_version, v.max_version))
            .collect();
        let expected: Vec<(i16, i16, i16)> = expected.iter().map(|(k, lo, hi)| (*k as i16, *lo, *hi)).collect();
        assert_eq!(advertised, expected);
        let declared: Vec<(i16, i16, i16)> = APIS
            .iter()
            .map(|a| (a.key as i16, a.min_version, a.max_version))
            .collect();
        assert_eq!(advertised, declared);
    }

    /// What dispatch accepts is exactly what ApiVersions advertises: every
    /// declared API decodes a minimal request at its min and max version
    /// (and every version between); versions outside the declared range
    /// that the protocol has, and APIs without a handler, are refused
    /// before their body is decoded.
    #[test]
    fn dispatch_serves_exactly_what_is_advertised() {
        let advertised = api_versions::supported_apis();
        for key in all_keys() {
            let range = advertised
                .iter()
                .find(|v| v.api_key == key as i16)
                .map(|v| (v.min_version, v.max_version));
            assert_eq!(range, supported_range(key), "{key:?}");
            let protocol = key.valid_versions();
            for version in protocol.min..=protocol.max {
                let body = minimal_request(key, version);
                let served = range.is_some_and(|(lo, hi)| (lo..=hi).contains(&version));
                if served {
                    let Some(body) = body else {
                        panic!("{key:?} v{version}: a default request cannot be encoded");
                    };
                    if let Err(e) = decode_only(key as i16, version, &mut body.clone()) {
                        panic!("{key:?} v{version}: minimal request refused: {e}");
                    }
                } else {
                    let body = body.unwrap_or_default();
                    assert!(
                        decode_only(key as i16, version, &mut body.clone()).is_err(),
                        "{key:?} v{version} is not advertised but decodes"
                    );
                }
            }
        }
        for a in APIS {
            for version in [a.min_version, a.max_version] {
                let body = minimal_request(a.key, version).unwrap_or_default();
                assert!(
                    decode_only(a.key as i16, version, &mut body.clone()).is_ok(),
                    "{:?} v{version}",
                    a.key
                );
            }
        }
        assert!(decode_only(-7, 0, &mut Bytes::new()).is_err());
    }

    /// A request cut short anywhere is refused with an error, without the
    /// decoder panicking (a panic would be caught, but is a decoder bug).
    #[test]
    fn truncated_requests_are_refused() {
        for a in APIS {
            for version in a.min_version..=a.max_version {
                let Some(body) = minimal_request(a.key, version) else {
                    continue;
                };
                for cut in 0..body.len() {
                    match decode_only(a.key as i16, version, &mut body.slice(..cut)) {
                        Ok(()) => panic!("{:?} v{version}: {cut} of {} bytes decode", a.key, body.len()),
                        Err(e) => assert!(!e.0.contains("panicked"), "{:?} v{version} cut at {cut}: {e}", a.key),
                    }
                }
            }
        }
    }

    /// The APIs whose work must keep per-connection request order: Produce
    /// (appends of one connection stay in order) and every API served by a
    /// group coordinator shard (membership and commits of one client
    /// apply in the order sent).
    #[test]
    fn produce_and_coordinator_apis_are_routed_in_request_order() {
        let in_order: Vec<ApiKey> = APIS
            .iter()
            .filter(|a| a.order == Order::InOrder)
            .map(|a| a.key)
            .collect();
        assert_eq!(
            in_order,
            vec![
                ApiKey::Produce,
                ApiKey::JoinGroup,
                ApiKey::SyncGroup,
                ApiKey::Heartbeat,
                ApiKey::LeaveGroup,
                ApiKey::OffsetCommit,
                ApiKey::OffsetFetch,
                ApiKey::OffsetDelete,
                ApiKey::DescribeGroups,
                ApiKey::DeleteGroups,
                ApiKey::ConsumerGroupHeartbeat,
                ApiKey::ConsumerGroupDescribe,
            ]
        );
    }
}
