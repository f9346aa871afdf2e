//! Validation and planning of metadata changes (pure: no IO). The shard-0
//! shell persists what these functions return and broadcasts it.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::config::{validate_value, BrokerConfig, TOPIC_CONFIGS};
use crate::protocol::error::{self as ec, ApiError};

use super::{place_partitions, topic_name, ClusterMeta, MetaUpdate, PartitionMeta, TopicMeta, OFFSETS_TOPIC};

/// Kafka's upper bound on partitions a single request may create.
pub const MAX_PARTITIONS: i32 = 100_000;

/// A topic to create, as asked for by CreateTopics or auto-creation.
#[derive(Clone, Debug, Default)]
pub struct CreateTopic {
    pub name: String,
    /// -1: the broker's `num.partitions`.
    pub num_partitions: i32,
    /// -1: the broker default (1).
    pub replication_factor: i16,
    /// Manual replica assignments given (partition → broker ids).
    pub assignments: Vec<(i32, Vec<i32>)>,
    pub configs: Vec<(String, Option<String>)>,
}

/// Validate topic-level configs and return the overrides to store.
pub fn validate_topic_configs(configs: &[(String, Option<String>)]) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for (k, v) in configs {
        let Some(def) = TOPIC_CONFIGS.iter().find(|d| d.name == k) else {
            return Err(ApiError::new(
                ec::INVALID_CONFIG,
                format!("Unknown topic config name: {k}"),
            ));
        };
        let Some(v) = v else {
            return Err(ApiError::new(
                ec::INVALID_CONFIG,
                format!("Null value not supported for topic configs: {k}"),
            ));
        };
        validate_value(def.ty, k, v).map_err(|m| ApiError::new(ec::INVALID_CONFIG, m))?;
        out.insert(k.clone(), v.clone());
    }
    Ok(out)
}

/// Plan the creation of a topic.
pub fn plan_create(meta: &ClusterMeta, broker: &BrokerConfig, req: &CreateTopic) -> Result<TopicMeta, ApiError> {
    topic_name::validate(&req.name).map_err(|m| ApiError::new(ec::INVALID_TOPIC_EXCEPTION, m))?;
    if meta.topic(&req.name).is_some() {
        return Err(ApiError::new(
            ec::TOPIC_ALREADY_EXISTS,
            format!("Topic '{}' already exists.", req.name),
        ));
    }
    if let Some(other) = meta.topics.keys().find(|t| topic_name::collides(t, &req.name)) {
        return Err(ApiError::new(
            ec::INVALID_TOPIC_EXCEPTION,
            format!("Topic '{}' collides with existing topic: {other}", req.name),
        ));
    }
    let partitions = if !req.assignments.is_empty() {
        if req.num_partitions != -1 || req.replication_factor != -1 {
            return Err(ApiError::new(
                ec::INVALID_REQUEST,
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
            ));
        }
        let mut seen: Vec<i32> = req.assignments.iter().map(|(p, _)| *p).collect();
        seen.sort_unstable();
        if seen.iter().enumerate().any(|(i, p)| *p != i as i32) {
            return Err(ApiError::new(
                ec::INVALID_REPLICA_ASSIGNMENT,
                "Partitions should be a consecutive 0-based integer sequence",
            ));
        }
        for (_, replicas) in &req.assignments {
            if replicas.len() != 1 || replicas[0] != broker.node_id {
                return Err(ApiError::new(
                    ec::INVALID_REPLICA_ASSIGNMENT,
                    format!("Unknown broker in replica assignment {replicas:?}"),
                ));
            }
        }
        req.assignments.len() as i32
    } else {
        let rf = if req.replication_factor == -1 {
            1
        } else {
            req.replication_factor
        };
        if rf <= 0 {
            return Err(ApiError::new(
                ec::INVALID_REPLICATION_FACTOR,
                "Replication factor must be larger than 0.",
            ));
        }
        if rf > 1 {
            return Err(ApiError::new(
                ec::INVALID_REPLICATION_FACTOR,
                format!("Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only 1 broker(s) are registered."),
            ));
        }
        let n = if req.num_partitions == -1 {
            broker.num_partitions
        } else {
            req.num_partitions
        };
        if n <= 0 {
            return Err(ApiError::new(
                ec::INVALID_PARTITIONS,
                "Number of partitions must be larger than 0.",
            ));
        }
        if n > MAX_PARTITIONS {
            return Err(ApiError::new(
                ec::INVALID_PARTITIONS,
                format!("Number of partitions {n} exceeds the maximum {MAX_PARTITIONS}."),
            ));
        }
        n
    };
    let configs = validate_topic_configs(&req.configs)?;
    let mut loads = meta.shard_loads(broker.shards);
    let shards = place_partitions(&mut loads, partitions as usize);
    Ok(TopicMeta {
        name: req.name.clone(),
        id: Uuid::new_v4(),
        partitions: shards
            .into_iter()
            .map(|shard| PartitionMeta { shard, leader_epoch: 0 })
            .collect(),
        configs,
        internal: req.name == OFFSETS_TOPIC,
    })
}

/// Plan growing a topic to `count` partitions.
pub fn plan_create_partitions(
    meta: &ClusterMeta,
    broker: &BrokerConfig,
    topic: &str,
    count: i32,
    has_assignments: bool,
) -> Result<TopicMeta, ApiError> {
    let Some(t) = meta.topic(topic) else {
        return Err(ApiError::new(
            ec::UNKNOWN_TOPIC_OR_PARTITION,
            format!("The topic '{topic}' does not exist."),
        ));
    };
    let current = t.partitions.len() as i32;
    if count < current {
        return Err(ApiError::new(
            ec::INVALID_PARTITIONS,
            format!("Topic currently has {current} partitions, which is higher than the requested {count}."),
        ));
    }
    if count == current {
        return Err(ApiError::new(
            ec::INVALID_PARTITIONS,
            format!("Topic already has {current} partitions."),
        ));
    }
    if count > MAX_PARTITIONS {
        return Err(ApiError::new(
            ec::INVALID_PARTITIONS,
            format!("Number of partitions {count} exceeds the maximum {MAX_PARTITIONS}."),
        ));
    }
    let _ = has_assignments;
    let mut loads = meta.shard_loads(broker.shards);
    let new = place_partitions(&mut loads, (count - current) as usize);
    let mut t = t.clone();
    t.partitions
        .extend(new.into_iter().map(|shard| PartitionMeta { shard, leader_epoch: 0 }));
    Ok(t)
}

/// Plan deleting a topic by name.
pub fn plan_delete(meta: &ClusterMeta, name: &str) -> Result<MetaUpdate, ApiError> {
    let Some(t) = meta.topic(name) else {
        return Err(ApiError::new(
            ec::UNKNOWN_TOPIC_OR_PARTITION,
            "This server does not host this topic-partition.",
        ));
    };
    if t.internal {
        return Err(ApiError::new(
            ec::INVALID_TOPIC_EXCEPTION,
            format!("Cannot delete internal topic {name}"),
        ));
    }
    Ok(MetaUpdate::Delete {
        name: t.name.clone(),
        id: t.id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    fn broker(shards: usize) -> BrokerConfig {
        let mut b = BrokerConfig::load(&Overrides::default()).unwrap();
        b.shards = shards;
        b
    }

    #[test]
    fn create_validates_like_kafka() {
        let b = broker(2);
        let mut m = ClusterMeta::new("c".into());
        let req = |name: &str, n: i32, rf: i16| CreateTopic {
            name: name.into(),
            num_partitions: n,
            replication_factor: rf,
            ..Default::default()
        };
        let t = plan_create(&m, &b, &req("t", 4, 1)).unwrap();
        assert_eq!(
            t.partitions.iter().map(|p| p.shard).collect::<Vec<_>>(),
            vec![0, 1, 0, 1]
        );
        m.apply(&MetaUpdate::Upsert(t));
        assert_eq!(
            plan_create(&m, &b, &req("t", 1, 1)).unwrap_err().code,
            ec::TOPIC_ALREADY_EXISTS
        );
        assert_eq!(
            plan_create(&m, &b, &req("bad name", 1, 1)).unwrap_err().code,
            ec::INVALID_TOPIC_EXCEPTION
        );
        assert_eq!(
            plan_create(&m, &b, &req("x", 0, 1)).unwrap_err().code,
            ec::INVALID_PARTITIONS
        );
        assert_eq!(
            plan_create(&m, &b, &req("x", 1, 3)).unwrap_err().code,
            ec::INVALID_REPLICATION_FACTOR
        );
        assert_eq!(plan_create(&m, &b, &req("x", -1, -1)).unwrap().partitions.len(), 1);
        let mut bad = req("x", 1, 1);
        bad.configs = vec![("no.such".into(), Some("1".into()))];
        assert_eq!(plan_create(&m, &b, &bad).unwrap_err().code, ec::INVALID_CONFIG);
        bad.configs = vec![("retention.ms".into(), Some("soon".into()))];
        assert_eq!(plan_create(&m, &b, &bad).unwrap_err().code, ec::INVALID_CONFIG);
    }

    #[test]
    fn partitions_only_grow() {
        let b = broker(2);
        let mut m = ClusterMeta::new("c".into());
        let t = plan_create(
            &m,
            &b,
            &CreateTopic {
                name: "t".into(),
                num_partitions: 1,
                replication_factor: 1,
                ..Default::default()
            },
        )
        .unwrap();
        m.apply(&MetaUpdate::Upsert(t));
        assert_eq!(
            plan_create_partitions(&m, &b, "t", 3, false).unwrap().partitions.len(),
            3
        );
        assert_eq!(
            plan_create_partitions(&m, &b, "t", 1, false).unwrap_err().code,
            ec::INVALID_PARTITIONS
        );
        assert_eq!(
            plan_create_partitions(&m, &b, "nope", 3, false).unwrap_err().code,
            ec::UNKNOWN_TOPIC_OR_PARTITION
        );
        assert!(plan_delete(&m, "t").is_ok());
        assert_eq!(
            plan_delete(&m, "nope").unwrap_err().code,
            ec::UNKNOWN_TOPIC_OR_PARTITION
        );
    }
}
