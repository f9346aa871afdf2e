//! Metadata: brokers, topics, partitions and leaders; auto-creates topics
//! when the client asks for unknown ones and the broker allows it.

use crate::io::rand::HashSet;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{ApiKey, BrokerId, MetadataRequest, MetadataResponse, TopicName};
use uuid::Uuid;

use super::{Api, Handler, Order, Reply, RequestContext};
use crate::config::BrokerConfig;
use crate::metadata::{BrokerMeta, ClusterMeta, PartitionMeta, TopicMeta};
use crate::protocol::error as ec;
use crate::protocol::str_bytes;

/// The Metadata handler: versions 0-13, worked on out of order.
pub struct Metadata;

impl Handler for Metadata {
    const API: Api = Api {
        key: ApiKey::Metadata,
        min_version: 0,
        max_version: 13,
        order: Order::OutOfOrder,
    };
    type Request = MetadataRequest;
    type Response = MetadataResponse;

    async fn start(ctx: &RequestContext, req: MetadataRequest) -> Reply<MetadataResponse> {
        Reply::Ready(handle(ctx, req).await)
    }
}

/// A topic's entry, from the partitions' replicas, ISR and leader. A
/// partition in `offline` (this node's log of it offline after a storage
/// error) is shown as Kafka shows a partition whose leader's log directory
/// is offline: LEADER_NOT_AVAILABLE, no leader (-1), this node listed in
/// `offline_replicas` (and kept in the ISR, as Kafka's controller keeps the
/// last ISR member).
pub fn topic_entry(node: i32, t: &TopicMeta, offline: &HashSet<(String, i32)>) -> MetadataResponseTopic {
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
                    let (error, leader, offline_replicas) = leadership(node, t, i, p, offline);
                    MetadataResponsePartition::default()
                        .with_partition_index(i as i32)
                        .with_leader_epoch(p.leader_epoch)
                        .with_replica_nodes(broker_ids(&p.replicas))
                        .with_isr_nodes(broker_ids(&p.isr))
                        .with_error_code(error)
                        .with_leader_id(BrokerId(leader))
                        .with_offline_replicas(offline_replicas)
                })
                .collect(),
        )
}

pub fn broker_ids(v: &[i32]) -> Vec<BrokerId> {
    v.iter().map(|b| BrokerId(*b)).collect()
}

/// A partition's error code, leader and offline replicas as Metadata and
/// DescribeTopicPartitions show them.
pub fn leadership(
    node: i32,
    t: &TopicMeta,
    index: usize,
    p: &PartitionMeta,
    offline: &HashSet<(String, i32)>,
) -> (i16, i32, Vec<BrokerId>) {
    if p.leader == node && offline.contains(&(t.name.clone(), index as i32)) {
        (ec::LEADER_NOT_AVAILABLE, -1, vec![BrokerId(node)])
    } else if p.leader < 0 {
        (ec::LEADER_NOT_AVAILABLE, -1, Vec::new())
    } else {
        (ec::NONE, p.leader, Vec::new())
    }
}

/// The brokers clients are told of: the registered, unfenced ones (this
/// node alone when the table is empty, as in some unit tests).
pub fn brokers(cfg: &BrokerConfig, meta: &ClusterMeta) -> Vec<BrokerMeta> {
    let live: Vec<BrokerMeta> = meta.brokers.values().filter(|b| !b.fenced).cloned().collect();
    if live.is_empty() {
        vec![BrokerMeta {
            id: cfg.node_id,
            host: cfg.advertised_host.clone(),
            port: cfg.advertised_port,
            rack: cfg.cluster.rack.clone(),
            fenced: false,
        }]
    } else {
        live
    }
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
    // Offline partitions live on their owning shards: ask them all (one
    // round trip; there are none unless a disk failed).
    let offline = shard.offline_partitions_everywhere().await;
    match req.topics {
        None => {
            let meta = shard.meta.borrow();
            topics.extend(meta.topics.values().map(|t| topic_entry(node, t, &offline)));
        }
        Some(wanted) if wanted.is_empty() && ctx.api_version == 0 => {
            // v0: an empty list means all topics
            let meta = shard.meta.borrow();
            topics.extend(meta.topics.values().map(|t| topic_entry(node, t, &offline)));
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
                    (Some(t), _) => topics.push(topic_entry(node, &t, &offline)),
                    (None, Some(n)) => {
                        if crate::metadata::topic_name::validate(&n).is_err() {
                            topics.push(error_entry(Some(n), Uuid::nil(), ec::INVALID_TOPIC_EXCEPTION));
                        } else if auto {
                            match super::produce::auto_create(shard, &n).await {
                                Ok(t) => topics.push(topic_entry(node, &t, &offline)),
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
    let (cluster_id, brokers) = {
        let meta = shard.meta.borrow();
        (meta.cluster_id.clone(), brokers(cfg, &meta))
    };
    MetadataResponse::default()
        .with_brokers(
            brokers
                .into_iter()
                .map(|b| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(b.id))
                        .with_host(str_bytes(&b.host))
                        .with_port(b.port)
                        .with_rack(b.rack.as_deref().map(str_bytes))
                })
                .collect(),
        )
        .with_cluster_id(Some(str_bytes(&cluster_id)))
        .with_controller_id(BrokerId(node))
        .with_cluster_authorized_operations(i32::MIN)
        .with_topics(topics)
}

#[cfg(test)]
mod tests {
    //! Metadata of a partition whose log went offline after EIO, on the
    //! simulated disk.

    use std::rc::Rc;

    use bytes::Bytes;
    use kafka_protocol::messages::ApiKey;

    use super::*;
    use crate::io::mesh::MeshBuilder;
    use crate::io::sim::{SimConfig, World};
    use crate::record::{build_batch_with, BatchOptions, Compression, Record};
    use crate::routing::{ProducePart, Router};
    use crate::shard::{ops, Shard};

    fn part(partition: i32) -> ProducePart {
        let records = [Record {
            key: None,
            value: Some(b"v"),
            headers: &[],
            timestamp_delta: 0,
        }];
        let batch = Bytes::from(build_batch_with(
            0,
            1_700_000_000_000,
            Compression::None,
            &BatchOptions::default(),
            &records,
        ));
        ProducePart {
            topic: "t".into(),
            partition,
            frame_len: batch.len(),
            records: batch,
            validated: None,
        }
    }

    #[test]
    fn a_partition_whose_log_is_offline_has_no_leader_and_an_offline_replica() {
        let w = World::new(5, SimConfig::default());
        let world = w.clone();
        let out = w.run(1, async move {
            let mut c = BrokerConfig::load(&Default::default()).expect("default config");
            c.shards = 1;
            c.data_dir = "/data".into();
            let node = c.node_id;
            let mut meta = ClusterMeta::default();
            meta.topics.insert(
                "t".into(),
                TopicMeta {
                    name: "t".into(),
                    id: crate::io::rand::uuid_v4(),
                    partitions: vec![PartitionMeta::local(0, node); 2],
                    configs: Default::default(),
                    internal: false,
                },
            );
            let (sender, _) = MeshBuilder::simulated(1, 16).join(0).await.expect("mesh");
            let shard = Shard::new(0, Rc::new(c), meta, Router::new(sender), true);
            shard.open_owned_partitions().await.expect("partitions open");
            let _flusher = crate::io::spawn(crate::shard::flusher::run(shard.clone()));
            // Partition 1's files fail with EIO: its next flush takes it offline.
            let bad = shard.partition_dir("t", 1);
            world.disk.configure(|d| d.eio_paths = vec![bad]);
            let results = ops::produce_request(&shard, vec![part(0), part(1)], 1, 10_000).await;
            assert_eq!(results[0].error, ec::NONE, "partition 0 is fine");
            assert_eq!(results[1].error, ec::KAFKA_STORAGE_ERROR, "partition 1's write failed");
            assert_eq!(shard.offline_partitions(), vec![("t".to_string(), 1)]);

            let ctx = RequestContext {
                shard: shard.clone(),
                api_key: ApiKey::Metadata,
                api_version: 12,
                correlation_id: 1,
                client_id: None,
                client_host: String::new(),
                frame_len: 0,
            };
            for req in [
                MetadataRequest::default().with_topics(None),
                MetadataRequest::default().with_topics(Some(vec![
                    kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(TopicName(str_bytes("t")))),
                ])),
            ] {
                let resp = handle(&ctx, req).await;
                let topic = resp.topics.iter().find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some("t"));
                let topic = topic.expect("topic t listed");
                assert_eq!(topic.error_code, ec::NONE, "the topic itself is fine");
                let p0 = &topic.partitions[0];
                assert_eq!(
                    (p0.error_code, p0.leader_id, p0.offline_replicas.len()),
                    (ec::NONE, BrokerId(node), 0)
                );
                let p1 = &topic.partitions[1];
                assert_eq!(p1.partition_index, 1);
                assert_eq!(p1.error_code, ec::LEADER_NOT_AVAILABLE);
                assert_eq!(p1.leader_id, BrokerId(-1));
                assert_eq!(p1.replica_nodes, vec![BrokerId(node)]);
                assert_eq!(p1.isr_nodes, vec![BrokerId(node)]);
                assert_eq!(p1.offline_replicas, vec![BrokerId(node)]);
            }
            shard.begin_shutdown();
        });
        w.shutdown();
        out.expect("simulation");
    }
}
