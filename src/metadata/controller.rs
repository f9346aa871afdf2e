//! Validation and planning of metadata changes (pure: no IO). The shard-0
//! shell persists what these functions return and broadcasts it.

use std::collections::BTreeMap;

use crate::config::{validate_value, BrokerConfig, ConfigType, TopicConfigDef, GROUP_CONFIGS, TOPIC_CONFIGS};
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
            return Err(ApiError::with_message(
                ec::INVALID_CONFIG,
                format!("Unknown topic config name: {k}"),
            ));
        };
        let Some(v) = v else {
            return Err(ApiError::with_message(
                ec::INVALID_CONFIG,
                format!("Null value not supported for topic configs: {k}"),
            ));
        };
        validate_value(def.ty, k, v).map_err(|m| ApiError::with_message(ec::INVALID_CONFIG, m))?;
        out.insert(k.clone(), v.clone());
    }
    Ok(out)
}

/// Plan the creation of a topic.
pub fn plan_create(meta: &ClusterMeta, broker: &BrokerConfig, req: &CreateTopic) -> Result<TopicMeta, ApiError> {
    topic_name::validate(&req.name).map_err(|m| ApiError::with_message(ec::INVALID_TOPIC_EXCEPTION, m))?;
    if meta.topic(&req.name).is_some() {
        return Err(ApiError::with_message(
            ec::TOPIC_ALREADY_EXISTS,
            format!("Topic '{}' already exists.", req.name),
        ));
    }
    if let Some(other) = meta.topics.keys().find(|t| topic_name::collides(t, &req.name)) {
        return Err(ApiError::with_message(
            ec::INVALID_TOPIC_EXCEPTION,
            format!("Topic '{}' collides with existing topic: {other}", req.name),
        ));
    }
    let partitions = if !req.assignments.is_empty() {
        if req.num_partitions != -1 || req.replication_factor != -1 {
            return Err(ApiError::with_message(
                ec::INVALID_REQUEST,
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
            ));
        }
        let mut seen: Vec<i32> = req.assignments.iter().map(|(p, _)| *p).collect();
        seen.sort_unstable();
        if seen.iter().enumerate().any(|(i, p)| *p != i as i32) {
            return Err(ApiError::with_message(
                ec::INVALID_REPLICA_ASSIGNMENT,
                "Partitions should be a consecutive 0-based integer sequence",
            ));
        }
        for (_, replicas) in &req.assignments {
            if replicas.len() != 1 || replicas[0] != broker.node_id {
                return Err(ApiError::with_message(
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
            return Err(ApiError::with_message(
                ec::INVALID_REPLICATION_FACTOR,
                "Replication factor must be larger than 0.",
            ));
        }
        if rf > 1 {
            return Err(ApiError::with_message(
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
            return Err(ApiError::with_message(
                ec::INVALID_PARTITIONS,
                "Number of partitions must be larger than 0.",
            ));
        }
        if n > MAX_PARTITIONS {
            return Err(ApiError::with_message(
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
        id: crate::io::rand::uuid_v4(),
        partitions: shards
            .into_iter()
            .map(|shard| PartitionMeta::local(shard, broker.node_id))
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
        return Err(ApiError::with_message(
            ec::UNKNOWN_TOPIC_OR_PARTITION,
            format!("The topic '{topic}' does not exist."),
        ));
    };
    let current = t.partitions.len() as i32;
    if count < current {
        return Err(ApiError::with_message(
            ec::INVALID_PARTITIONS,
            format!("Topic currently has {current} partitions, which is higher than the requested {count}."),
        ));
    }
    if count == current {
        return Err(ApiError::with_message(
            ec::INVALID_PARTITIONS,
            format!("Topic already has {current} partitions."),
        ));
    }
    if count > MAX_PARTITIONS {
        return Err(ApiError::with_message(
            ec::INVALID_PARTITIONS,
            format!("Number of partitions {count} exceeds the maximum {MAX_PARTITIONS}."),
        ));
    }
    let _ = has_assignments;
    let mut loads = meta.shard_loads(broker.shards);
    let new = place_partitions(&mut loads, (count - current) as usize);
    let mut t = t.clone();
    t.partitions
        .extend(new.into_iter().map(|shard| PartitionMeta::local(shard, broker.node_id)));
    Ok(t)
}

/// Plan deleting a topic by name.
pub fn plan_delete(meta: &ClusterMeta, name: &str) -> Result<MetaUpdate, ApiError> {
    let Some(t) = meta.topic(name) else {
        return Err(ApiError::with_message(
            ec::UNKNOWN_TOPIC_OR_PARTITION,
            "This server does not host this topic-partition.",
        ));
    };
    if t.internal {
        return Err(ApiError::with_message(
            ec::INVALID_TOPIC_EXCEPTION,
            format!("Cannot delete internal topic {name}"),
        ));
    }
    Ok(MetaUpdate::Delete {
        name: t.name.clone(),
        id: t.id,
    })
}

/// One operation of an IncrementalAlterConfigs request on a config key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigOp {
    Set(String),
    Delete,
    /// Add list elements not already present (LIST-type configs only).
    Append(String),
    /// Remove list elements (LIST-type configs only).
    Subtract(String),
}

impl ConfigOp {
    /// Kafka's name of the operation, for messages.
    fn kafka_name(&self) -> &'static str {
        match self {
            ConfigOp::Set(_) => "SET",
            ConfigOp::Delete => "DELETE",
            ConfigOp::Append(_) => "APPEND",
            ConfigOp::Subtract(_) => "SUBTRACT",
        }
    }
}

/// How a resource's config overrides change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigChange {
    /// AlterConfigs: these become the complete set of overrides.
    Replace(Vec<(String, String)>),
    /// IncrementalAlterConfigs: applied in order to the current overrides.
    Incremental(Vec<(String, ConfigOp)>),
}

/// A resource whose configs an alter request changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigTarget {
    Topic(String),
    Group(String),
}

/// The overrides after `change`; `def` finds a key's definition and `default`
/// its effective default (the base of an APPEND/SUBTRACT on an unset key).
fn apply_config_change(
    current: &BTreeMap<String, String>,
    change: &ConfigChange,
    def: impl Fn(&str) -> Option<&'static TopicConfigDef>,
    default: impl Fn(&str) -> String,
) -> Result<BTreeMap<String, String>, ApiError> {
    let ops = match change {
        ConfigChange::Replace(pairs) => return Ok(pairs.iter().cloned().collect()),
        ConfigChange::Incremental(ops) => ops,
    };
    let mut next = current.clone();
    for (key, op) in ops {
        match op {
            ConfigOp::Set(v) => {
                next.insert(key.clone(), v.clone());
            }
            ConfigOp::Delete => {
                next.remove(key);
            }
            ConfigOp::Append(v) | ConfigOp::Subtract(v) => {
                if def(key).map(|d| d.ty) != Some(ConfigType::List) {
                    return Err(ApiError::with_message(
                        ec::INVALID_CONFIG,
                        format!("Can't {} to key {key} because its type is not LIST.", op.kafka_name()),
                    ));
                }
                let base = next.get(key).cloned().unwrap_or_else(|| default(key));
                let mut parts: Vec<String> = base.split(',').filter(|p| !p.is_empty()).map(String::from).collect();
                for item in v.split(',').filter(|p| !p.is_empty()) {
                    let at = parts.iter().position(|p| p == item);
                    match (op, at) {
                        (ConfigOp::Append(_), None) => parts.push(item.to_string()),
                        (ConfigOp::Subtract(_), Some(i)) => {
                            parts.remove(i);
                        }
                        _ => {}
                    }
                }
                next.insert(key.clone(), parts.join(","));
            }
        }
    }
    Ok(next)
}

/// Validate a group's complete set of overrides as Kafka's `GroupConfig`
/// does: known names, integer values of at least 1, within the broker's
/// `group.consumer.{min,max}.*` bounds, session timeout above the heartbeat
/// interval.
pub fn validate_group_configs(configs: &BTreeMap<String, String>, broker: &BrokerConfig) -> Result<(), ApiError> {
    let invalid = |m: String| ApiError::with_message(ec::INVALID_CONFIG, m);
    for (k, v) in configs {
        let Some(def) = GROUP_CONFIGS.iter().find(|d| d.name == k) else {
            return Err(invalid(format!("Unknown group config name: {k}")));
        };
        validate_value(def.ty, k, v).map_err(invalid)?;
    }
    let value = |name: &str| -> Result<i64, ApiError> {
        let v = configs.get(name).cloned().unwrap_or_else(|| broker.group_default(name));
        match v.trim().parse::<i64>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(invalid(format!(
                "Invalid value {v} for configuration {name}: Value must be at least 1"
            ))),
        }
    };
    let bound = |name: &str| -> i64 {
        broker
            .broker_value(name)
            .and_then(|(v, _)| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let session = value("consumer.session.timeout.ms")?;
    let heartbeat = value("consumer.heartbeat.interval.ms")?;
    let checks = [
        (
            "consumer.heartbeat.interval.ms",
            heartbeat,
            "group.consumer.min.heartbeat.interval.ms",
            true,
        ),
        (
            "consumer.heartbeat.interval.ms",
            heartbeat,
            "group.consumer.max.heartbeat.interval.ms",
            false,
        ),
        (
            "consumer.session.timeout.ms",
            session,
            "group.consumer.min.session.timeout.ms",
            true,
        ),
        (
            "consumer.session.timeout.ms",
            session,
            "group.consumer.max.session.timeout.ms",
            false,
        ),
    ];
    for (name, v, limit, is_min) in checks {
        if is_min && v < bound(limit) {
            return Err(invalid(format!("{name} must be greater than or equal to {limit}")));
        }
        if !is_min && v > bound(limit) {
            return Err(invalid(format!("{name} must be less than or equal to {limit}")));
        }
    }
    if session <= heartbeat {
        return Err(invalid(
            "consumer.session.timeout.ms must be greater than consumer.heartbeat.interval.ms".to_string(),
        ));
    }
    Ok(())
}

/// Plan an AlterConfigs / IncrementalAlterConfigs change of one resource.
/// As in Kafka's controller the resulting configs are validated before the
/// resource's existence is checked; a group need not exist.
pub fn plan_alter_configs(
    meta: &ClusterMeta,
    broker: &BrokerConfig,
    target: &ConfigTarget,
    change: &ConfigChange,
) -> Result<MetaUpdate, ApiError> {
    match target {
        ConfigTarget::Topic(name) => {
            if name.is_empty() {
                return Err(ApiError::with_message(
                    ec::INVALID_REQUEST,
                    "Default topic resources are not allowed.",
                ));
            }
            topic_name::validate(name).map_err(|m| ApiError::with_message(ec::INVALID_TOPIC_EXCEPTION, m))?;
            let empty = BTreeMap::new();
            let current = meta.topic(name).map_or(&empty, |t| &t.configs);
            let next = apply_config_change(
                current,
                change,
                |k| TOPIC_CONFIGS.iter().find(|d| d.name == k),
                |k| broker.topic_default(k),
            )?;
            let pairs: Vec<(String, Option<String>)> = next.into_iter().map(|(k, v)| (k, Some(v))).collect();
            let configs = validate_topic_configs(&pairs)?;
            let Some(t) = meta.topic(name) else {
                return Err(ApiError::with_message(
                    ec::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("The topic '{name}' does not exist."),
                ));
            };
            Ok(MetaUpdate::Upsert(TopicMeta { configs, ..t.clone() }))
        }
        ConfigTarget::Group(group) => {
            if group.is_empty() {
                return Err(ApiError::with_message(
                    ec::INVALID_REQUEST,
                    "Default group resources are not allowed.",
                ));
            }
            let empty = BTreeMap::new();
            let current = meta.group_configs.get(group).unwrap_or(&empty);
            let configs = apply_config_change(
                current,
                change,
                |k| GROUP_CONFIGS.iter().find(|d| d.name == k),
                |k| broker.group_default(k),
            )?;
            validate_group_configs(&configs, broker)?;
            Ok(MetaUpdate::GroupConfigs {
                group: group.clone(),
                configs,
            })
        }
    }
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

    /// A broker, metadata with topic "t" (retention.ms=1000), and "t".
    fn topic_fixture() -> (BrokerConfig, ClusterMeta, ConfigTarget) {
        let b = broker(1);
        let m = topic_meta(&b);
        (b, m, ConfigTarget::Topic("t".into()))
    }

    fn topic_meta(b: &BrokerConfig) -> ClusterMeta {
        let mut m = ClusterMeta::new("c".into());
        let mut req = CreateTopic {
            name: "t".into(),
            num_partitions: 1,
            replication_factor: 1,
            ..Default::default()
        };
        req.configs = vec![("retention.ms".into(), Some("1000".into()))];
        let t = plan_create(&m, b, &req).unwrap();
        m.apply(&MetaUpdate::Upsert(t));
        m
    }

    fn topic_configs(u: &MetaUpdate) -> Vec<(&str, &str)> {
        match u {
            MetaUpdate::Upsert(t) => t.configs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            other => panic!("not an upsert: {other:?}"),
        }
    }

    fn inc(ops: &[(&str, ConfigOp)]) -> ConfigChange {
        ConfigChange::Incremental(ops.iter().map(|(k, o)| (k.to_string(), o.clone())).collect())
    }

    #[test]
    fn alter_configs_replaces_all_overrides() {
        let (b, m, t) = topic_fixture();
        let u = plan_alter_configs(
            &m,
            &b,
            &t,
            &ConfigChange::Replace(vec![("max.message.bytes".into(), "2000".into())]),
        )
        .unwrap();
        assert_eq!(topic_configs(&u), vec![("max.message.bytes", "2000")]);
        let u = plan_alter_configs(&m, &b, &t, &ConfigChange::Replace(vec![])).unwrap();
        assert!(topic_configs(&u).is_empty());
        // The id and partitions are kept.
        let MetaUpdate::Upsert(after) = u else { panic!() };
        assert_eq!(after.id, m.topic("t").unwrap().id);
        assert_eq!(after.partitions, m.topic("t").unwrap().partitions);
    }

    #[test]
    fn incremental_alter_set_delete_append_subtract() {
        let (b, m, t) = topic_fixture();
        let u = plan_alter_configs(
            &m,
            &b,
            &t,
            &inc(&[
                ("segment.bytes", ConfigOp::Set("1048576".into())),
                ("retention.ms", ConfigOp::Delete),
                ("cleanup.policy", ConfigOp::Append("compact".into())),
            ]),
        )
        .unwrap();
        assert_eq!(
            topic_configs(&u),
            vec![("cleanup.policy", "delete,compact"), ("segment.bytes", "1048576")]
        );
        // Appending what is there already changes nothing; subtract removes.
        let u = plan_alter_configs(
            &m,
            &b,
            &t,
            &inc(&[
                ("cleanup.policy", ConfigOp::Append("delete,compact".into())),
                ("cleanup.policy", ConfigOp::Append("compact".into())),
                ("cleanup.policy", ConfigOp::Subtract("delete".into())),
            ]),
        )
        .unwrap();
        assert_eq!(
            topic_configs(&u),
            vec![("cleanup.policy", "compact"), ("retention.ms", "1000")]
        );
        // Deleting an unset or unknown key is fine (Kafka validates the
        // resulting set only).
        assert!(plan_alter_configs(&m, &b, &t, &inc(&[("flush.ms", ConfigOp::Delete)])).is_ok());
        assert!(plan_alter_configs(&m, &b, &t, &inc(&[("no.such", ConfigOp::Delete)])).is_ok());
    }

    #[test]
    fn alter_configs_errors_like_kafka() {
        let (b, m, t) = topic_fixture();
        let err = |target: &ConfigTarget, c: ConfigChange| plan_alter_configs(&m, &b, target, &c).unwrap_err();
        let e = err(&t, inc(&[("retention.ms", ConfigOp::Append("1".into()))]));
        assert_eq!(e.code, ec::INVALID_CONFIG);
        assert!(e.message().contains("not LIST"), "{e}");
        let e = err(&t, inc(&[("no.such", ConfigOp::Set("1".into()))]));
        assert_eq!(
            (e.code, e.message.as_deref()),
            (ec::INVALID_CONFIG, Some("Unknown topic config name: no.such"))
        );
        let e = err(&t, inc(&[("max.message.bytes", ConfigOp::Set("big".into()))]));
        assert_eq!(e.code, ec::INVALID_CONFIG);
        let e = err(
            &t,
            ConfigChange::Replace(vec![("cleanup.policy".into(), "shred".into())]),
        );
        assert_eq!(e.code, ec::INVALID_CONFIG);
        // Config errors come first, then existence.
        let missing = ConfigTarget::Topic("missing".into());
        assert_eq!(
            err(&missing, inc(&[("no.such", ConfigOp::Set("1".into()))])).code,
            ec::INVALID_CONFIG
        );
        assert_eq!(
            err(&missing, inc(&[("retention.ms", ConfigOp::Set("5".into()))])).code,
            ec::UNKNOWN_TOPIC_OR_PARTITION
        );
        assert_eq!(
            err(&ConfigTarget::Topic(String::new()), inc(&[])).code,
            ec::INVALID_REQUEST
        );
        assert_eq!(
            err(&ConfigTarget::Topic("a b".into()), inc(&[])).code,
            ec::INVALID_TOPIC_EXCEPTION
        );
    }

    #[test]
    fn group_configs_are_validated_against_broker_bounds() {
        let b = broker(1);
        let m = ClusterMeta::new("c".into());
        let g = ConfigTarget::Group("g".into());
        let set = |k: &str, v: &str| inc(&[(k, ConfigOp::Set(v.into()))]);
        let u = plan_alter_configs(&m, &b, &g, &set("consumer.session.timeout.ms", "50000")).unwrap();
        let MetaUpdate::GroupConfigs { group, configs } = &u else {
            panic!("{u:?}")
        };
        assert_eq!(group, "g");
        assert_eq!(
            configs.get("consumer.session.timeout.ms").map(String::as_str),
            Some("50000")
        );
        let mut m2 = m.clone();
        m2.apply(&u);
        let u = plan_alter_configs(&m2, &b, &g, &inc(&[("consumer.session.timeout.ms", ConfigOp::Delete)])).unwrap();
        m2.apply(&u);
        assert!(m2.group_configs.is_empty());
        for (k, v) in [
            ("consumer.session.timeout.ms", "1000"),
            ("consumer.session.timeout.ms", "70000"),
            ("consumer.heartbeat.interval.ms", "100"),
            ("consumer.heartbeat.interval.ms", "x"),
            ("session.timeout.ms", "50000"),
        ] {
            let e = plan_alter_configs(&m, &b, &g, &set(k, v)).unwrap_err();
            assert_eq!(e.code, ec::INVALID_CONFIG, "{k}={v}");
        }
        assert_eq!(
            plan_alter_configs(&m, &b, &g, &set("consumer.heartbeat.interval.ms", "1",))
                .unwrap_err()
                .message
                .as_deref(),
            Some("consumer.heartbeat.interval.ms must be greater than or equal to group.consumer.min.heartbeat.interval.ms")
        );
        assert_eq!(
            plan_alter_configs(&m, &b, &ConfigTarget::Group(String::new()), &inc(&[]))
                .unwrap_err()
                .code,
            ec::INVALID_REQUEST
        );
    }
}
