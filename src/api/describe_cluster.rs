//! DescribeCluster: the registered brokers, the cluster id and the
//! controller.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{ApiKey, BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{Api, Handler, Order, Reply, RequestContext};
use crate::protocol::error as ec;
use crate::protocol::str_bytes;

/// The DescribeCluster handler: versions 0-2, worked on out of order.
pub struct DescribeCluster;

impl Handler for DescribeCluster {
    const API: Api = Api {
        key: ApiKey::DescribeCluster,
        min_version: 0,
        max_version: 2,
        order: Order::OutOfOrder,
    };
    type Request = DescribeClusterRequest;
    type Response = DescribeClusterResponse;

    async fn start(ctx: &RequestContext, req: DescribeClusterRequest) -> Reply<DescribeClusterResponse> {
        Reply::Ready(handle(ctx, req).await)
    }
}

pub async fn handle(ctx: &RequestContext, req: DescribeClusterRequest) -> DescribeClusterResponse {
    let cfg = &ctx.shard.config;
    let (cluster_id, brokers) = {
        let meta = ctx.shard.meta.borrow();
        (meta.cluster_id.clone(), super::metadata::brokers(cfg, &meta))
    };
    // endpoint_type 1 = brokers; 2 = controllers (we are both).
    let endpoint_type = if req.endpoint_type == 0 { 1 } else { req.endpoint_type };
    DescribeClusterResponse::default()
        .with_error_code(ec::NONE)
        .with_endpoint_type(endpoint_type)
        .with_cluster_id(str_bytes(&cluster_id))
        .with_controller_id(BrokerId(cfg.node_id))
        .with_cluster_authorized_operations(i32::MIN)
        .with_brokers(
            brokers
                .into_iter()
                .map(|b| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(b.id))
                        .with_host(str_bytes(&b.host))
                        .with_port(b.port)
                        .with_rack(b.rack.as_deref().map(str_bytes))
                        .with_is_fenced(b.fenced)
                })
                .collect(),
        )
}
