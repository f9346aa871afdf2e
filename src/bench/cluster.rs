//! Finding the partitions and their leaders (Metadata), creating missing
//! topics (CreateTopics) and looking up offsets (ListOffsets).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::client::list_offsets_topic;
use anyhow::{bail, Context};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, CreateTopicsResponse, ListOffsetsRequest, ListOffsetsResponse,
    MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::client::Conn;
use super::config::Settings;
use super::stats::error_name;
use crate::protocol::error::{
    LEADER_NOT_AVAILABLE, NONE, NOT_CONTROLLER, TOPIC_ALREADY_EXISTS, UNKNOWN_TOPIC_OR_PARTITION,
};

/// A partition of one of the run's topics (`topic` indexes the topic names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: usize,
    pub partition: i32,
}

/// What the generator knows about the cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Broker id → "host:port".
    pub brokers: BTreeMap<i32, String>,
    pub topics: Vec<String>,
    /// Every partition of every topic, with its leader's broker id.
    pub partitions: Vec<(TopicPartition, i32)>,
}

impl Cluster {
    pub fn leader_addr(&self, leader: i32) -> anyhow::Result<&str> {
        self.brokers
            .get(&leader)
            .map(String::as_str)
            .with_context(|| format!("leader {leader} is not in the broker list"))
    }

    /// Group partitions by leader address, keeping their order.
    pub fn by_leader(&self, parts: &[TopicPartition]) -> anyhow::Result<Vec<(String, Vec<TopicPartition>)>> {
        let leaders: BTreeMap<TopicPartition, i32> = self.partitions.iter().copied().collect();
        let mut groups: Vec<(String, Vec<TopicPartition>)> = Vec::new();
        for tp in parts {
            let leader = leaders
                .get(tp)
                .copied()
                .with_context(|| format!("unknown partition {tp:?}"))?;
            let addr = self.leader_addr(leader)?.to_string();
            match groups.iter_mut().find(|(a, _)| *a == addr) {
                Some((_, v)) => v.push(*tp),
                None => groups.push((addr, vec![*tp])),
            }
        }
        Ok(groups)
    }

    pub fn all_partitions(&self) -> Vec<TopicPartition> {
        self.partitions.iter().map(|(tp, _)| *tp).collect()
    }
}

fn metadata(conn: &mut Conn, names: &[String]) -> anyhow::Result<MetadataResponse> {
    let topics = names
        .iter()
        .map(|n| MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(n.clone())))))
        .collect();
    let req = MetadataRequest::default()
        .with_topics(Some(topics))
        .with_allow_auto_topic_creation(false);
    conn.call(ApiKey::Metadata, conn.versions.metadata, &req)
}

/// Look up the run's topics, create the missing ones and wait until every
/// partition has a leader.
pub fn discover(settings: &Settings, log: &dyn Fn(&str)) -> anyhow::Result<Cluster> {
    let mut conn = Conn::connect(&settings.bootstrap)?;
    let names = settings.topic_names();
    let md = metadata(&mut conn, &names)?;
    let missing: Vec<String> = names
        .iter()
        .filter(|n| {
            match md
                .topics
                .iter()
                .find(|t| t.name.as_ref().map(|x| x.0.as_str()) == Some(n.as_str()))
            {
                None => true,
                Some(t) => t.error_code == UNKNOWN_TOPIC_OR_PARTITION,
            }
        })
        .cloned()
        .collect();
    if !missing.is_empty() {
        log(&format!(
            "creating {} topic(s) with {} partitions each",
            missing.len(),
            settings.partitions
        ));
        let controller = md.controller_id.0;
        let mut admin = match md.brokers.iter().find(|b| b.node_id.0 == controller) {
            Some(b) if md.brokers.len() > 1 => Conn::connect(&format!("{}:{}", b.host.as_str(), b.port))?,
            _ => Conn::connect(&settings.bootstrap)?,
        };
        create_topics(&mut admin, &missing, settings)?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let md = metadata(&mut conn, &names)?;
        match cluster_from(&md, &names) {
            Ok(c) => {
                for (i, name) in names.iter().enumerate() {
                    let n = c.partitions.iter().filter(|(tp, _)| tp.topic == i).count();
                    if n as i32 != settings.partitions {
                        log(&format!(
                            "note: topic {name} exists with {n} partitions (not {}); using them",
                            settings.partitions
                        ));
                    }
                }
                return Ok(c);
            }
            Err(e) if Instant::now() < deadline => {
                tracing::debug!("metadata not ready: {e:#}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e.context("topics did not become ready within 120 s")),
        }
    }
}

fn create_topics(conn: &mut Conn, names: &[String], s: &Settings) -> anyhow::Result<()> {
    // Versions before 4 do not accept -1 (broker default).
    let rf = if s.replication_factor < 0 && conn.versions.create_topics < 4 {
        1
    } else {
        s.replication_factor
    };
    let topics = names
        .iter()
        .map(|n| {
            CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(n.clone())))
                .with_num_partitions(s.partitions)
                .with_replication_factor(rf)
                .with_configs(
                    s.topic_configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(StrBytes::from_string(k.clone()))
                                .with_value(Some(StrBytes::from_string(v.clone())))
                        })
                        .collect(),
                )
        })
        .collect();
    let req = CreateTopicsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(60_000);
    let resp: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, conn.versions.create_topics, &req)?;
    for t in &resp.topics {
        match t.error_code {
            NONE | TOPIC_ALREADY_EXISTS => {}
            NOT_CONTROLLER => {
                bail!("CreateTopics went to a broker that is not the controller; retry")
            }
            code => bail!(
                "cannot create topic {}: {}{}",
                t.name.0.as_str(),
                error_name(code),
                t.error_message
                    .as_ref()
                    .map(|m| format!(": {}", m.as_str()))
                    .unwrap_or_default()
            ),
        }
    }
    Ok(())
}

/// The cluster as described by a metadata response, or an error while a
/// topic or partition is not ready.
pub fn cluster_from(md: &MetadataResponse, names: &[String]) -> anyhow::Result<Cluster> {
    let brokers: BTreeMap<i32, String> = md
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
        .collect();
    let mut partitions = Vec::new();
    for (ti, name) in names.iter().enumerate() {
        let t = md
            .topics
            .iter()
            .find(|t| t.name.as_ref().map(|x| x.0.as_str()) == Some(name.as_str()))
            .with_context(|| format!("topic {name} is missing from the metadata"))?;
        if t.error_code != 0 {
            bail!("topic {name}: {}", error_name(t.error_code));
        }
        if t.partitions.is_empty() {
            bail!("topic {name} has no partitions yet");
        }
        let mut parts: Vec<_> = t.partitions.iter().collect();
        parts.sort_by_key(|p| p.partition_index);
        for p in parts {
            if p.error_code != 0 && p.error_code != LEADER_NOT_AVAILABLE {
                bail!("partition {name}-{}: {}", p.partition_index, error_name(p.error_code));
            }
            let leader: BrokerId = p.leader_id;
            if leader.0 < 0 || p.error_code == LEADER_NOT_AVAILABLE {
                bail!("partition {name}-{} has no leader yet", p.partition_index);
            }
            if !brokers.contains_key(&leader.0) {
                bail!(
                    "partition {name}-{} is led by unknown broker {}",
                    p.partition_index,
                    leader.0
                );
            }
            partitions.push((
                TopicPartition {
                    topic: ti,
                    partition: p.partition_index,
                },
                leader.0,
            ));
        }
    }
    Ok(Cluster {
        brokers,
        topics: names.to_vec(),
        partitions,
    })
}

/// The offsets of `parts` at `timestamp` (-1 latest, -2 earliest), in order.
pub fn list_offsets(
    conn: &mut Conn,
    topics: &[String],
    parts: &[TopicPartition],
    timestamp: i64,
) -> anyhow::Result<Vec<i64>> {
    let mut by_topic: BTreeMap<usize, Vec<i32>> = BTreeMap::new();
    for tp in parts {
        by_topic.entry(tp.topic).or_default().push(tp.partition);
    }
    let req_topics = by_topic
        .iter()
        .map(|(t, ps)| list_offsets_topic(&topics[*t], ps, timestamp))
        .collect();
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(req_topics)
        .with_timeout_ms(30_000);
    let resp: ListOffsetsResponse = conn.call(ApiKey::ListOffsets, conn.versions.list_offsets, &req)?;
    let mut found: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    for t in &resp.topics {
        let Some(ti) = topics.iter().position(|n| n.as_str() == t.name.0.as_str()) else {
            continue;
        };
        for p in &t.partitions {
            if p.error_code != 0 {
                bail!(
                    "ListOffsets for {}-{}: {}",
                    t.name.0.as_str(),
                    p.partition_index,
                    error_name(p.error_code)
                );
            }
            found.insert(
                TopicPartition {
                    topic: ti,
                    partition: p.partition_index,
                },
                p.offset,
            );
        }
    }
    parts
        .iter()
        .map(|tp| {
            found
                .get(tp)
                .copied()
                .with_context(|| format!("ListOffsets returned nothing for {}-{}", topics[tp.topic], tp.partition))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };

    fn md(leaders: &[(&str, &[i32])]) -> MetadataResponse {
        MetadataResponse::default()
            .with_brokers(vec![
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(1))
                    .with_host("a".into())
                    .with_port(1),
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(2))
                    .with_host("b".into())
                    .with_port(2),
            ])
            .with_topics(
                leaders
                    .iter()
                    .map(|(name, ls)| {
                        MetadataResponseTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
                            .with_partitions(
                                ls.iter()
                                    .enumerate()
                                    .rev()
                                    .map(|(i, l)| {
                                        MetadataResponsePartition::default()
                                            .with_partition_index(i as i32)
                                            .with_leader_id(BrokerId(*l))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
    }

    #[test]
    fn cluster_layout() {
        let names = vec!["t0".to_string(), "t1".to_string()];
        let c = cluster_from(&md(&[("t1", &[2]), ("t0", &[1, 2, 1])]), &names).unwrap();
        assert_eq!(c.partitions.len(), 4);
        assert_eq!(c.partitions[0], (TopicPartition { topic: 0, partition: 0 }, 1));
        assert_eq!(c.partitions[3], (TopicPartition { topic: 1, partition: 0 }, 2));
        let groups = c.by_leader(&c.all_partitions()).unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].0, "a:1");
        assert_eq!(groups[0].1.len(), 2);
        assert_eq!(groups[1].0, "b:2");
    }

    #[test]
    fn not_ready_yet() {
        let names = vec!["t0".to_string()];
        assert!(cluster_from(&md(&[("t0", &[1, -1])]), &names).is_err());
        assert!(cluster_from(&md(&[("t0", &[3])]), &names).is_err());
        assert!(cluster_from(&md(&[("t0", &[])]), &names).is_err());
        assert!(cluster_from(&md(&[]), &names).is_err());
    }
}
