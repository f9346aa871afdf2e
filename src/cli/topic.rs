//! `ringlog topic ...`: create, list, describe, alter-config,
//! add-partitions, delete, trim-prefix.

use std::collections::BTreeMap;

use crate::client::list_offsets_topic;
use anyhow::bail;
use clap::{Args, Subcommand};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteRecordsRequest, DeleteRecordsResponse, DeleteTopicsRequest, DeleteTopicsResponse, DescribeLogDirsRequest,
    DescribeLogDirsResponse, ListOffsetsRequest, ListOffsetsResponse, TopicName,
};
use serde_json::json;

use super::{
    alter_configs, describe_configs, out, out_json, parse_kv, run, table, ClientOpts, FormatOpt, OutFormat,
    RESOURCE_TOPIC,
};
use crate::client::{check, sb, Cluster, KafkaError};

const TIMEOUT_MS: i32 = 30_000;

#[derive(Args, Debug)]
pub struct TopicArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    #[command(flatten)]
    pub format: FormatOpt,
    #[command(subcommand)]
    pub command: TopicCommand,
}

#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// Create topics.
    #[command(after_help = "Examples:
  ringlog topic create orders -p 6
  ringlog topic create a b c -c cleanup.policy=compact -c retention.ms=3600000
  ringlog topic create orders -p 12 --dry-run")]
    Create {
        #[arg(required = true)]
        names: Vec<String>,
        /// Partitions (default: the broker's num.partitions).
        #[arg(short = 'p', long, default_value_t = -1, allow_negative_numbers = true)]
        partitions: i32,
        /// Replication factor (default: the broker's default.replication.factor).
        #[arg(short = 'r', long, default_value_t = -1, allow_negative_numbers = true)]
        replicas: i16,
        /// Topic config KEY=VALUE (repeatable).
        #[arg(short = 'c', long = "topic-config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Only validate: the broker checks the request but creates nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List topics with their partition and replica counts.
    #[command(
        visible_alias = "ls",
        after_help = "Examples:\n  ringlog topic list\n  ringlog topic ls -i --format json"
    )]
    List {
        /// Include internal topics (__consumer_offsets, ...).
        #[arg(short = 'i', long)]
        internal: bool,
    },
    /// Configs (value, source) and partitions (leader, replicas, ISR, epoch, offsets, size).
    #[command(
        after_help = "Examples:\n  ringlog topic describe orders\n  ringlog topic describe orders --format json | jq '.[0].partitions'"
    )]
    Describe {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Set or delete topic configs (IncrementalAlterConfigs).
    #[command(
        after_help = "Example:\n  ringlog topic alter-config orders --set retention.ms=60000 --delete cleanup.policy"
    )]
    AlterConfig {
        name: String,
        /// KEY=VALUE to set (repeatable).
        #[arg(long, value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// KEY to reset to its default (repeatable).
        #[arg(long, value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Add COUNT partitions to a topic (like rpk topic add-partitions).
    #[command(after_help = "Example:\n  ringlog topic add-partitions orders -n 2")]
    AddPartitions {
        name: String,
        /// How many partitions to add.
        #[arg(short = 'n', long = "num")]
        count: i32,
    },
    /// Delete topics.
    #[command(after_help = "Example:\n  ringlog topic delete orders old-orders")]
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Delete the records of a partition below OFFSET (DeleteRecords).
    #[command(after_help = "Example:\n  ringlog topic trim-prefix orders -p 0 -o 1000")]
    TrimPrefix {
        name: String,
        #[arg(short = 'p', long)]
        partition: i32,
        /// The new log start offset (-1: the high watermark).
        #[arg(short = 'o', long, allow_negative_numbers = true)]
        offset: i64,
    },
}

pub fn main(args: TopicArgs) -> i32 {
    run(|| {
        let mut cl = args.client.connect()?;
        let fmt = args.format.format;
        match args.command {
            TopicCommand::Create {
                names,
                partitions,
                replicas,
                configs,
                dry_run,
            } => create(&mut cl, fmt, &names, partitions, replicas, &configs, dry_run),
            TopicCommand::List { internal } => list(&mut cl, fmt, internal),
            TopicCommand::Describe { names } => describe(&mut cl, fmt, &names),
            TopicCommand::AlterConfig { name, set, delete } => {
                if set.is_empty() && delete.is_empty() {
                    bail!("nothing to do: give --set KEY=VALUE or --delete KEY");
                }
                let set = set.iter().map(|s| parse_kv(s)).collect::<anyhow::Result<Vec<_>>>()?;
                alter_configs(&mut cl, RESOURCE_TOPIC, &name, &set, &delete)?;
                for (k, v) in &set {
                    out(&format!("{name}: set {k}={v}\n"));
                }
                for k in &delete {
                    out(&format!("{name}: deleted {k}\n"));
                }
                Ok(())
            }
            TopicCommand::AddPartitions { name, count } => add_partitions(&mut cl, &name, count),
            TopicCommand::Delete { names } => delete(&mut cl, &names),
            TopicCommand::TrimPrefix {
                name,
                partition,
                offset,
            } => trim_prefix(&mut cl, &name, partition, offset),
        }
    })
}

fn create(
    cl: &mut Cluster,
    fmt: OutFormat,
    names: &[String],
    partitions: i32,
    replicas: i16,
    configs: &[String],
    dry_run: bool,
) -> anyhow::Result<()> {
    let configs = configs
        .iter()
        .map(|c| parse_kv(c))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let resp: CreateTopicsResponse = cl.retry(|cl| {
        let c = cl.controller()?;
        let v = c.version(ApiKey::CreateTopics, (2, 7))?;
        // Broker defaults (-1) need v4+.
        let (p, r) = if v < 4 {
            (partitions.max(1), replicas.max(1))
        } else {
            (partitions, replicas)
        };
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(TIMEOUT_MS)
            .with_validate_only(dry_run)
            .with_topics(
                names
                    .iter()
                    .map(|n| {
                        CreatableTopic::default()
                            .with_name(TopicName(sb(n)))
                            .with_num_partitions(p)
                            .with_replication_factor(r)
                            .with_configs(
                                configs
                                    .iter()
                                    .map(|(k, v)| {
                                        CreatableTopicConfig::default().with_name(sb(k)).with_value(Some(sb(v)))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, v, &req)?;
        // NOT_CONTROLLER and friends: retry (after a metadata refresh).
        if let Some(t) = resp.topics.iter().find(|t| crate::client::is_retriable(t.error_code)) {
            return Err(KafkaError::new(t.error_code, format!("creating topic \"{}\"", t.name.0)).into());
        }
        Ok(resp)
    })?;
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    let mut failed: Option<anyhow::Error> = None;
    for t in &resp.topics {
        let name = t.name.0.to_string();
        let err = check(
            t.error_code,
            || (format!("cannot create topic \"{name}\""), name.clone()),
            t.error_message.as_deref(),
        )
        .err();
        let status = match &err {
            None if dry_run => "OK (dry run)".to_string(),
            None => "OK".to_string(),
            Some(e) => format!("{e}"),
        };
        json_rows.push(json!({
            "name": name,
            "partitions": t.num_partitions,
            "replicas": t.replication_factor,
            "error": if t.error_code == 0 { None } else { Some(crate::client::error_name(t.error_code)) },
            "error_code": t.error_code,
            "dry_run": dry_run,
        }));
        rows.push(vec![name, status]);
        if failed.is_none() {
            failed = err;
        }
    }
    match fmt {
        OutFormat::Json => out_json(&serde_json::Value::Array(json_rows)),
        OutFormat::Text => out(&table(&["TOPIC", "STATUS"], &rows)),
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn list(cl: &mut Cluster, fmt: OutFormat, internal: bool) -> anyhow::Result<()> {
    let meta = cl.retry(|cl| cl.metadata(None).cloned())?;
    let topics: Vec<_> = meta
        .topics
        .values()
        .filter(|t| internal || !(t.internal || t.name.starts_with("__")))
        .collect();
    match fmt {
        OutFormat::Json => out_json(&serde_json::Value::Array(
            topics
                .iter()
                .map(|t| {
                    json!({
                        "name": t.name,
                        "id": t.id,
                        "partitions": t.partitions.len(),
                        "replicas": t.partitions.first().map_or(0, |p| p.replicas.len()),
                        "internal": t.internal,
                    })
                })
                .collect(),
        )),
        OutFormat::Text => {
            let mut header = vec!["NAME", "PARTITIONS", "REPLICAS"];
            if internal {
                header.push("INTERNAL");
            }
            let rows: Vec<Vec<String>> = topics
                .iter()
                .map(|t| {
                    let mut r = vec![
                        t.name.clone(),
                        t.partitions.len().to_string(),
                        t.partitions.first().map_or(0, |p| p.replicas.len()).to_string(),
                    ];
                    if internal {
                        r.push(t.internal.to_string());
                    }
                    r
                })
                .collect();
            out(&table(&header, &rows));
        }
    }
    Ok(())
}

/// ListOffsets `timestamp` for partitions, asked of each leader.
/// Returns (offset, timestamp) per partition; partitions with an error map
/// to that error.
pub fn list_offsets(
    cl: &mut Cluster,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
    read_committed: bool,
) -> anyhow::Result<BTreeMap<i32, (i64, i64)>> {
    cl.retry(|cl| {
        let mut by_leader: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for p in partitions {
            let addr = cl.leader_addr(topic, *p)?;
            by_leader.entry(addr).or_default().push(*p);
        }
        let mut found = BTreeMap::new();
        for (addr, ps) in by_leader {
            let c = cl.conn(&addr)?;
            let v = c.version(ApiKey::ListOffsets, (1, 8))?;
            let req = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_isolation_level(i8::from(read_committed))
                .with_topics(vec![list_offsets_topic(topic, &ps, timestamp)]);
            let resp: ListOffsetsResponse = c.call(ApiKey::ListOffsets, v, &req)?;
            for t in resp.topics {
                for p in t.partitions {
                    if p.error_code != 0 {
                        // Leaders moved: refresh and retry.
                        let _ = cl.metadata(Some(&[topic.to_string()]));
                        check(
                            p.error_code,
                            || {
                                (
                                    format!("ListOffsets of {topic}/{}", p.partition_index),
                                    topic.to_string(),
                                )
                            },
                            None,
                        )?;
                    }
                    found.insert(p.partition_index, (p.offset, p.timestamp));
                }
            }
        }
        Ok(found)
    })
}

/// Partition sizes on disk: (partition → bytes) of the leader's replica.
fn sizes(cl: &mut Cluster, topic: &str, leaders: &BTreeMap<i32, i32>) -> BTreeMap<i32, i64> {
    let mut per_node: BTreeMap<(i32, i32), i64> = BTreeMap::new();
    let nodes: Vec<i32> = cl.meta.brokers.keys().copied().collect();
    for node in nodes {
        let Ok(c) = cl.node(node) else { continue };
        let Ok(v) = c.version(ApiKey::DescribeLogDirs, (1, 4)) else {
            continue;
        };
        let req = DescribeLogDirsRequest::default().with_topics(Some(vec![DescribableLogDirTopic::default()
            .with_topic(TopicName(sb(topic)))
            .with_partitions(leaders.keys().copied().collect())]));
        let Ok(resp) = c.call::<_, DescribeLogDirsResponse>(ApiKey::DescribeLogDirs, v, &req) else {
            continue;
        };
        for dir in resp.results {
            for t in dir.topics {
                if t.name.0.as_str() != topic {
                    continue;
                }
                for p in t.partitions {
                    if !p.is_future_key {
                        *per_node.entry((p.partition_index, node)).or_default() += p.partition_size;
                    }
                }
            }
        }
    }
    leaders
        .iter()
        .filter_map(|(p, leader)| per_node.get(&(*p, *leader)).map(|s| (*p, *s)))
        .collect()
}

fn describe(cl: &mut Cluster, fmt: OutFormat, names: &[String]) -> anyhow::Result<()> {
    let meta = cl.retry(|cl| cl.metadata(Some(names)).cloned())?;
    let mut docs = Vec::new();
    let mut text = String::new();
    for name in names {
        let t = meta.topic(name)?.clone();
        let configs = describe_configs(cl, None, RESOURCE_TOPIC, name, None)?;
        let parts: Vec<i32> = t.partitions.iter().map(|p| p.partition).collect();
        let start = list_offsets(cl, name, &parts, -2, false)?;
        let end = list_offsets(cl, name, &parts, -1, false)?;
        let leaders: BTreeMap<i32, i32> = t.partitions.iter().map(|p| (p.partition, p.leader)).collect();
        let sizes = sizes(cl, name, &leaders);
        let pjson: Vec<serde_json::Value> = t
            .partitions
            .iter()
            .map(|p| {
                json!({
                    "partition": p.partition,
                    "leader": p.leader,
                    "leader_epoch": p.leader_epoch,
                    "replicas": p.replicas,
                    "isr": p.isr,
                    "offline_replicas": p.offline,
                    "log_start_offset": start.get(&p.partition).map(|o| o.0),
                    "high_watermark": end.get(&p.partition).map(|o| o.0),
                    "size_bytes": sizes.get(&p.partition),
                    "error_code": p.error_code,
                })
            })
            .collect();
        docs.push(json!({
            "name": t.name,
            "id": t.id,
            "internal": t.internal,
            "partitions": pjson,
            "configs": configs.iter().map(super::ConfigEntry::json).collect::<Vec<_>>(),
        }));
        if fmt == OutFormat::Text {
            let replicas = t.partitions.first().map_or(0, |p| p.replicas.len());
            text.push_str(&format!(
                "SUMMARY\n=======\nNAME        {}\nID          {}\nPARTITIONS  {}\nREPLICAS    {}\nINTERNAL    {}\n\nCONFIGS\n=======\n",
                t.name,
                t.id,
                t.partitions.len(),
                replicas,
                t.internal
            ));
            text.push_str(&super::config_table(&configs));
            text.push_str("\nPARTITIONS\n==========\n");
            let ids = |v: &[i32]| format!("[{}]", v.iter().map(i32::to_string).collect::<Vec<_>>().join(","));
            let opt = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
            let rows: Vec<Vec<String>> = t
                .partitions
                .iter()
                .map(|p| {
                    vec![
                        p.partition.to_string(),
                        p.leader.to_string(),
                        p.leader_epoch.to_string(),
                        ids(&p.replicas),
                        ids(&p.isr),
                        opt(start.get(&p.partition).map(|o| o.0)),
                        opt(end.get(&p.partition).map(|o| o.0)),
                        opt(sizes.get(&p.partition).copied()),
                    ]
                })
                .collect();
            text.push_str(&table(
                &[
                    "PARTITION",
                    "LEADER",
                    "EPOCH",
                    "REPLICAS",
                    "ISR",
                    "LOG-START-OFFSET",
                    "HIGH-WATERMARK",
                    "SIZE",
                ],
                &rows,
            ));
            text.push('\n');
        }
    }
    match fmt {
        OutFormat::Json => out_json(&serde_json::Value::Array(docs)),
        OutFormat::Text => out(text.trim_end_matches('\n')),
    }
    if fmt == OutFormat::Text {
        out("\n");
    }
    Ok(())
}

fn add_partitions(cl: &mut Cluster, name: &str, count: i32) -> anyhow::Result<()> {
    if count <= 0 {
        bail!("-n must be at least 1 (partitions can only be added)");
    }
    let current = cl.retry(|cl| Ok(cl.metadata(Some(&[name.to_string()]))?.topic(name)?.partitions.len()))?;
    let total = i32::try_from(current).unwrap_or(i32::MAX).saturating_add(count);
    cl.retry(|cl| {
        let c = cl.controller()?;
        let v = c.version(ApiKey::CreatePartitions, (0, 3))?;
        let req = CreatePartitionsRequest::default()
            .with_timeout_ms(TIMEOUT_MS)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(TopicName(sb(name)))
                .with_count(total)
                .with_assignments(None)]);
        let resp: CreatePartitionsResponse = c.call(ApiKey::CreatePartitions, v, &req)?;
        for r in resp.results {
            check(
                r.error_code,
                || (format!("cannot add partitions to topic \"{name}\""), name.to_string()),
                r.error_message.as_deref(),
            )?;
        }
        Ok(())
    })?;
    out(&format!("{name}: {current} -> {total} partitions\n"));
    Ok(())
}

fn delete(cl: &mut Cluster, names: &[String]) -> anyhow::Result<()> {
    let resp: DeleteTopicsResponse = cl.retry(|cl| {
        let c = cl.controller()?;
        let v = c.version(ApiKey::DeleteTopics, (1, 6))?;
        let req = if v >= 6 {
            DeleteTopicsRequest::default().with_topics(
                names
                    .iter()
                    .map(|n| DeleteTopicState::default().with_name(Some(TopicName(sb(n)))))
                    .collect(),
            )
        } else {
            DeleteTopicsRequest::default().with_topic_names(names.iter().map(|n| TopicName(sb(n))).collect())
        }
        .with_timeout_ms(TIMEOUT_MS);
        let resp: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, v, &req)?;
        if let Some(t) = resp
            .responses
            .iter()
            .find(|t| crate::client::is_retriable(t.error_code) && t.error_code != 3)
        {
            return Err(KafkaError::new(t.error_code, "deleting topics").into());
        }
        Ok(resp)
    })?;
    let mut first_err = None;
    let mut rows = Vec::new();
    for t in &resp.responses {
        let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
        let err = check(
            t.error_code,
            || {
                if t.error_code == 3 {
                    (format!("topic \"{name}\" does not exist"), name.clone())
                } else {
                    (format!("cannot delete topic \"{name}\""), name.clone())
                }
            },
            t.error_message.as_deref(),
        )
        .err();
        rows.push(vec![
            name,
            err.as_ref().map_or_else(|| "OK".to_string(), |e| e.to_string()),
        ]);
        if first_err.is_none() {
            first_err = err;
        }
    }
    out(&table(&["TOPIC", "STATUS"], &rows));
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn trim_prefix(cl: &mut Cluster, name: &str, partition: i32, offset: i64) -> anyhow::Result<()> {
    let low = cl.retry(|cl| {
        let addr = cl.leader_addr(name, partition)?;
        let c = cl.conn(&addr)?;
        let v = c.version(ApiKey::DeleteRecords, (0, 2))?;
        let req = DeleteRecordsRequest::default()
            .with_timeout_ms(TIMEOUT_MS)
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(TopicName(sb(name)))
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(partition)
                    .with_offset(offset)])]);
        let resp: DeleteRecordsResponse = c.call(ApiKey::DeleteRecords, v, &req)?;
        let mut low = None;
        for t in resp.topics {
            for p in t.partitions {
                check(
                    p.error_code,
                    || {
                        (
                            format!("cannot trim {name}/{partition} to offset {offset}"),
                            name.to_string(),
                        )
                    },
                    None,
                )?;
                low = Some(p.low_watermark);
            }
        }
        low.ok_or_else(|| anyhow::anyhow!("empty DeleteRecords response"))
    })?;
    out(&format!("{name}/{partition}: log start offset {low}\n"));
    Ok(())
}
