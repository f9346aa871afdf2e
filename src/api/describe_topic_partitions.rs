//! DescribeTopicPartitions (KIP-966): topics and their partitions' leaders,
//! replicas and ISR, a page at a time. What Kafka's admin client (and so
//! `kafka-topics.sh --describe`) uses instead of Metadata since 3.8.

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName,
};
use uuid::Uuid;

use super::metadata::{broker_ids, leadership};
use super::{Api, Handler, Order, Reply, RequestContext};
use crate::io::rand::HashSet;
use crate::metadata::{topic_name, ClusterMeta};
use crate::protocol::error as ec;
use crate::protocol::str_bytes;

/// Kafka's `max.request.partition.size.limit`: the most partitions one
/// response describes, whatever the request asks.
pub const MAX_PARTITIONS_PER_RESPONSE: i32 = 2000;

/// The DescribeTopicPartitions handler: version 0, worked on out of order.
pub struct DescribeTopicPartitions;

impl Handler for DescribeTopicPartitions {
    const API: Api = Api {
        key: ApiKey::DescribeTopicPartitions,
        min_version: 0,
        max_version: 0,
        order: Order::OutOfOrder,
    };
    type Request = DescribeTopicPartitionsRequest;
    type Response = DescribeTopicPartitionsResponse;

    async fn start(ctx: &RequestContext, req: DescribeTopicPartitionsRequest) -> Reply<DescribeTopicPartitionsResponse> {
        let offline = ctx.shard.offline_partitions_everywhere().await;
        let meta = ctx.shard.meta.borrow();
        Reply::Ready(describe(ctx.shard.config.node_id, &meta, &offline, &req))
    }
}

/// The response (pure). Topics are described in name order; a page holds
/// at most `response_partition_limit` partitions (capped at
/// [`MAX_PARTITIONS_PER_RESPONSE`]) and ends with the cursor of the first
/// partition left out. A request that names topics gets an error entry for
/// each one that does not exist; one that names none describes them all.
pub fn describe(
    node: i32,
    meta: &ClusterMeta,
    offline: &HashSet<(String, i32)>,
    req: &DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let fetch_all = req.topics.is_empty();
    let cursor = req.cursor.as_ref().map(|c| (c.topic_name.0.as_str(), c.partition_index.max(0)));
    let mut names: Vec<&str> = if fetch_all {
        meta.topics.keys().map(String::as_str).collect()
    } else {
        req.topics.iter().map(|t| t.name.0.as_str()).collect()
    };
    names.sort_unstable();
    names.dedup();
    if let Some((from, _)) = cursor {
        names.retain(|n| *n >= from);
    }
    let mut remaining = req.response_partition_limit.min(MAX_PARTITIONS_PER_RESPONSE);
    let mut resp = DescribeTopicPartitionsResponse::default();
    for name in names {
        if remaining == 0 {
            // Every partition of the topics before fits; this one is next.
            resp.next_cursor = Some(Cursor::default().with_topic_name(TopicName(str_bytes(name))));
            break;
        }
        if remaining < 0 {
            break;
        }
        let Some(t) = meta.topic(name) else {
            if !fetch_all {
                let code = if topic_name::validate(name).is_ok() {
                    ec::UNKNOWN_TOPIC_OR_PARTITION
                } else {
                    ec::INVALID_TOPIC_EXCEPTION
                };
                resp.topics.push(
                    DescribeTopicPartitionsResponseTopic::default()
                        .with_error_code(code)
                        .with_name(Some(TopicName(str_bytes(name))))
                        .with_topic_id(Uuid::nil())
                        .with_topic_authorized_operations(i32::MIN),
                );
            }
            continue;
        };
        let first = match cursor {
            Some((from, p)) if from == name => p as usize,
            _ => 0,
        };
        let last = t.partitions.len().min(first.saturating_add(remaining as usize));
        let partitions: Vec<DescribeTopicPartitionsResponsePartition> = (first..last)
            .filter_map(|i| t.partitions.get(i).map(|p| (i, p)))
            .map(|(i, p)| {
                let (error, leader, offline_replicas) = leadership(node, t, i, p, offline);
                DescribeTopicPartitionsResponsePartition::default()
                    .with_error_code(error)
                    .with_partition_index(i as i32)
                    .with_leader_id(kafka_protocol::messages::BrokerId(leader))
                    .with_leader_epoch(p.leader_epoch)
                    .with_replica_nodes(broker_ids(&p.replicas))
                    .with_isr_nodes(broker_ids(&p.isr))
                    .with_eligible_leader_replicas(Some(Vec::new()))
                    .with_last_known_elr(Some(Vec::new()))
                    .with_offline_replicas(offline_replicas)
            })
            .collect();
        remaining -= partitions.len() as i32;
        resp.topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_error_code(ec::NONE)
                .with_name(Some(TopicName(str_bytes(name))))
                .with_topic_id(t.id)
                .with_is_internal(t.internal)
                .with_partitions(partitions)
                .with_topic_authorized_operations(i32::MIN),
        );
        if last < t.partitions.len() {
            resp.next_cursor = Some(
                Cursor::default()
                    .with_topic_name(TopicName(str_bytes(name)))
                    .with_partition_index(last as i32),
            );
            break;
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::describe_topic_partitions_request::{self as rq, TopicRequest};

    use super::*;
    use crate::metadata::{MetaUpdate, PartitionMeta, TopicMeta};

    fn meta() -> ClusterMeta {
        let mut m = ClusterMeta::new("c".into());
        for (name, n) in [("b", 3), ("a", 2), ("c", 1)] {
            m.apply(&MetaUpdate::Upsert(TopicMeta {
                name: name.into(),
                id: crate::io::rand::uuid_v4(),
                partitions: vec![PartitionMeta::local(0, 1); n],
                configs: Default::default(),
                internal: false,
            }));
        }
        m
    }

    fn req(topics: &[&str], limit: i32, cursor: Option<(&str, i32)>) -> DescribeTopicPartitionsRequest {
        DescribeTopicPartitionsRequest::default()
            .with_topics(
                topics
                    .iter()
                    .map(|t| TopicRequest::default().with_name(TopicName(str_bytes(t))))
                    .collect(),
            )
            .with_response_partition_limit(limit)
            .with_cursor(cursor.map(|(t, p)| {
                rq::Cursor::default()
                    .with_topic_name(TopicName(str_bytes(t)))
                    .with_partition_index(p)
            }))
    }

    /// Topics as (name, error, partition indexes), and the next cursor.
    type Shape = (Vec<(String, i16, Vec<i32>)>, Option<(String, i32)>);

    fn shape(r: &DescribeTopicPartitionsResponse) -> Shape {
        let topics = r
            .topics
            .iter()
            .map(|t| {
                (
                    t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
                    t.error_code,
                    t.partitions.iter().map(|p| p.partition_index).collect(),
                )
            })
            .collect();
        let cursor = r
            .next_cursor
            .as_ref()
            .map(|c| (c.topic_name.0.to_string(), c.partition_index));
        (topics, cursor)
    }

    fn s(v: &str) -> String {
        v.to_string()
    }

    #[test]
    fn all_topics_in_name_order_a_page_at_a_time() {
        let m = meta();
        let none = HashSet::default();
        let r = describe(1, &m, &none, &req(&[], 2000, None));
        assert_eq!(
            shape(&r),
            (
                vec![(s("a"), 0, vec![0, 1]), (s("b"), 0, vec![0, 1, 2]), (s("c"), 0, vec![0])],
                None
            )
        );
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.leader_id.0, p.replica_nodes.len(), p.isr_nodes.len()), (1, 1, 1));
        // Pages of 2: a page ends mid-topic with that topic's next partition,
        // or at a topic boundary with the next topic's partition 0.
        let r = describe(1, &m, &none, &req(&[], 2, None));
        assert_eq!(shape(&r), (vec![(s("a"), 0, vec![0, 1])], Some((s("b"), 0))));
        let r = describe(1, &m, &none, &req(&[], 2, Some(("b", 0))));
        assert_eq!(shape(&r), (vec![(s("b"), 0, vec![0, 1])], Some((s("b"), 2))));
        let r = describe(1, &m, &none, &req(&[], 2, Some(("b", 2))));
        assert_eq!(shape(&r), (vec![(s("b"), 0, vec![2]), (s("c"), 0, vec![0])], None));
        // The broker's own cap applies to a larger limit.
        assert_eq!(describe(1, &m, &none, &req(&[], i32::MAX, None)).topics.len(), 3);
    }

    #[test]
    fn named_topics_get_errors_when_missing() {
        let m = meta();
        let none = HashSet::default();
        let r = describe(1, &m, &none, &req(&["c", "zz", "a", "bad/name", "c"], 100, None));
        assert_eq!(
            shape(&r),
            (
                vec![
                    (s("a"), 0, vec![0, 1]),
                    (s("bad/name"), ec::INVALID_TOPIC_EXCEPTION, vec![]),
                    (s("c"), 0, vec![0]),
                    (s("zz"), ec::UNKNOWN_TOPIC_OR_PARTITION, vec![]),
                ],
                None
            )
        );
    }

    #[test]
    fn an_offline_partition_has_no_leader() {
        let m = meta();
        let offline: HashSet<(String, i32)> = [(s("a"), 1)].into_iter().collect();
        let r = describe(1, &m, &offline, &req(&["a"], 100, None));
        let p = &r.topics[0].partitions[1];
        assert_eq!(
            (p.error_code, p.leader_id.0, p.offline_replicas.len()),
            (ec::LEADER_NOT_AVAILABLE, -1, 1)
        );
        assert_eq!(r.topics[0].partitions[0].error_code, ec::NONE);
    }
}
