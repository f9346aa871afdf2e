//! Metadata: brokers, topics, partitions and leaders; auto-creates topics
//! when the client asks for unknown ones and the broker allows it.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{ApiKey, BrokerId, MetadataRequest, MetadataResponse, TopicName};
use uuid::Uuid;

use super::{Api, Handler, Order, Reply, RequestContext};
use crate::metadata::TopicMeta;
use crate::protocol::error as ec;
use crate::protocol::str_bytes;

/// The Metadata handler: versions 0-12, worked on out of order.
pub struct Metadata;

impl Handler for Metadata {
    const API: Api = Api {
        key: ApiKey::Metadata,
        min_version: 0,
        max_version: 12,
        order: Order::OutOfOrder,
    };
    type Request = MetadataRequest;
    type Response = MetadataResponse;

    async fn start(ctx: &RequestContext, req: MetadataRequest) -> Reply<MetadataResponse> {
        Reply::Ready(handle(ctx, req).await)
    }
}

pub fn topic_entry(node: i32, t: &TopicMeta) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(ec::NONE)
        .with_name(Some(TopicName(str_bytes(&t.name))))
        .with_topic_id(t.id)
        .with_is_internal(t.internal)
        .with_topic_authorized_operations(i32::MIN)
        .with_partitions(
            t.partitions
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    MetadataResponsePartition::default()
                        .with_error_code(ec::NONE)
                        .with_partition_index(i as i32)
                        .with_leader_id(BrokerId(node))
                        .with_leader_epoch(p.leader_epoch)
                        .with_replica_nodes(vec![BrokerId(node)])
                        .with_isr_nodes(vec![BrokerId(node)])
                })
                .collect(),
        )
}

fn error_entry(name: Option<String>, id: Uuid, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code)
        .with_name(name.map(|n| TopicName(str_bytes(&n))))
        .with_topic_id(id)
        .with_topic_authorized_operations(i32::MIN)
}

pub async fn handle(ctx: &RequestContext, req: MetadataRequest) -> MetadataResponse {
    let shard = &ctx.shard;
    let cfg = &shard.config;
    let node = cfg.node_id;
    let mut topics = Vec::new();
    match req.topics {
        None => {
            let meta = shard.meta.borrow();
            topics.extend(meta.topics.values().map(|t| topic_entry(node, t)));
        }
        Some(wanted) if wanted.is_empty() && ctx.api_version == 0 => {
            // v0: an empty list means all topics
            let meta = shard.meta.borrow();
            topics.extend(meta.topics.values().map(|t| topic_entry(node, t)));
        }
        Some(wanted) => {
            let auto = cfg.auto_create_topics && (req.allow_auto_topic_creation || ctx.api_version < 4);
            for w in wanted {
                let name = w.name.as_ref().map(|n| n.0.as_str().to_string());
                let found = {
                    let meta = shard.meta.borrow();
                    match &name {
                        Some(n) => meta.topic(n).cloned(),
                        None => meta.topic_by_id(&w.topic_id).cloned(),
                    }
                };
                match (found, name) {
                    (Some(t), _) => topics.push(topic_entry(node, &t)),
                    (None, Some(n)) => {
                        if crate::metadata::topic_name::validate(&n).is_err() {
                            topics.push(error_entry(Some(n), Uuid::nil(), ec::INVALID_TOPIC_EXCEPTION));
                        } else if auto {
                            match super::produce::auto_create(shard, &n).await {
                                Ok(t) => topics.push(topic_entry(node, &t)),
                                Err(code) => topics.push(error_entry(Some(n), Uuid::nil(), code)),
                            }
                        } else {
                            topics.push(error_entry(Some(n), Uuid::nil(), ec::UNKNOWN_TOPIC_OR_PARTITION));
                        }
                    }
                    (None, None) => topics.push(error_entry(None, w.topic_id, ec::UNKNOWN_TOPIC_ID)),
                }
            }
        }
    }
    let cluster_id = shard.meta.borrow().cluster_id.clone();
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(node))
            .with_host(str_bytes(&cfg.advertised_host))
            .with_port(cfg.advertised_port)])
        .with_cluster_id(Some(str_bytes(&cluster_id)))
        .with_controller_id(BrokerId(node))
        .with_cluster_authorized_operations(i32::MIN)
        .with_topics(topics)
}
