//! The `ringlog` command line for any Kafka-compatible broker, in the spirit
//! of rpk and kcat: `topic`, `produce`, `consume`, `cluster`, `group`, plus
//! `dump-log` (offline) and `completion`.
//!
//! Conventions shared by every client command:
//! * `--bootstrap HOST:PORT[,HOST:PORT...]` (env `RINGLOG_BOOTSTRAP`,
//!   default `127.0.0.1:9092`);
//! * `--format text|json` on every read command; JSON goes to stdout as one
//!   document (or one object per line for `consume`), keys documented in
//!   the README ("Everyday commands");
//! * exit status 0 on success, 1 on a Kafka or runtime error (the message
//!   names the Kafka error code and what to do), 2 on a usage error (clap).

pub mod consume;
pub mod dump_log;
pub mod format;
pub mod group;
pub mod produce;
pub mod topic;

pub use dump_log::DumpLogArgs;
pub use group::{parse_datetime, GroupArgs, GroupCommand};

use std::io::Write;

use clap::{Args, Subcommand, ValueEnum};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::{
    ApiKey, DescribeClusterRequest, DescribeClusterResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use serde_json::json;

use crate::client::{check, sb, Cluster, CLI_CLIENT_ID};

/// Where the cluster is.
#[derive(Args, Debug, Clone)]
pub struct ClientOpts {
    /// Broker(s) to bootstrap from.
    #[arg(
        long,
        short = 'b',
        global = true,
        env = "RINGLOG_BOOTSTRAP",
        value_name = "HOST:PORT[,...]",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap: String,
}

impl ClientOpts {
    pub fn connect(&self) -> anyhow::Result<Cluster> {
        Cluster::connect(&self.bootstrap, CLI_CLIENT_ID)
    }
}

/// Output format of read commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutFormat {
    #[default]
    Text,
    Json,
}

/// `--format text|json`.
#[derive(Args, Debug, Clone, Copy)]
pub struct FormatOpt {
    /// Output format (json: stable keys, for scripts).
    #[arg(long, global = true, value_enum, default_value_t = OutFormat::Text)]
    pub format: OutFormat,
}

/// Run a client command: prints `error: ...` and returns 1 on failure.
pub fn run(f: impl FnOnce() -> anyhow::Result<()>) -> i32 {
    match f() {
        Ok(()) => 0,
        Err(e) => {
            if is_broken_pipe(&e) {
                return 0;
            }
            eprintln!("error: {e:#}");
            1
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Write to stdout, ignoring a closed pipe (`ringlog topic list | head`).
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// Print a JSON document on one line.
pub fn out_json(v: &serde_json::Value) {
    out(&(v.to_string() + "\n"));
}

/// A left-aligned text table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    group::table(header, rows)
}

/// `a=b` → (a, b).
pub fn parse_kv(s: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("{s:?} is not key=value"))?;
    if k.is_empty() {
        anyhow::bail!("{s:?} has an empty key");
    }
    Ok((k.to_string(), v.to_string()))
}

/// Kafka's name of a config source.
pub fn config_source_name(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

/// Configs as a KEY / VALUE / SOURCE table (sensitive values hidden).
pub fn config_table(entries: &[ConfigEntry]) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.name.clone(),
                if e.sensitive {
                    "(sensitive)".into()
                } else {
                    e.value.clone().unwrap_or_else(|| "-".into())
                },
                e.source.to_string(),
            ]
        })
        .collect();
    table(&["KEY", "VALUE", "SOURCE"], &rows)
}

/// One config entry of a DescribeConfigs result.
#[derive(Debug, Clone)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub source: &'static str,
    pub read_only: bool,
    pub sensitive: bool,
}

impl ConfigEntry {
    pub fn json(&self) -> serde_json::Value {
        json!({
            "name": self.name,
            "value": self.value,
            "source": self.source,
            "read_only": self.read_only,
            "sensitive": self.sensitive,
        })
    }
}

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// DescribeConfigs of one resource (asked of `node`, or any broker).
pub fn describe_configs(
    cl: &mut Cluster,
    node: Option<i32>,
    resource_type: i8,
    name: &str,
    keys: Option<Vec<String>>,
) -> anyhow::Result<Vec<ConfigEntry>> {
    cl.retry(|cl| {
        let c = match node {
            Some(n) => cl.node(n)?,
            None => cl.any()?,
        };
        let v = c.version(ApiKey::DescribeConfigs, (1, 4))?;
        let req = DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(sb(name))
            .with_configuration_keys(keys.as_ref().map(|ks| ks.iter().map(|k| sb(k)).collect()))]);
        let resp: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, v, &req)?;
        let mut entries = Vec::new();
        for r in resp.results {
            let kind = if resource_type == RESOURCE_TOPIC {
                "topic"
            } else {
                "broker"
            };
            check(
                r.error_code,
                || {
                    (
                        format!("cannot describe the configs of {kind} \"{name}\""),
                        name.to_string(),
                    )
                },
                r.error_message.as_deref(),
            )?;
            for c in r.configs {
                entries.push(ConfigEntry {
                    name: c.name.to_string(),
                    value: c.value.map(|v| v.to_string()),
                    source: config_source_name(c.config_source),
                    read_only: c.read_only,
                    sensitive: c.is_sensitive,
                });
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    })
}

/// IncrementalAlterConfigs of one resource: `set` (op 0) and `delete` (op 1).
pub fn alter_configs(
    cl: &mut Cluster,
    resource_type: i8,
    name: &str,
    set: &[(String, String)],
    delete: &[String],
) -> anyhow::Result<()> {
    cl.retry(|cl| {
        let c = cl.controller()?;
        let v = c.version(ApiKey::IncrementalAlterConfigs, (0, 1))?;
        let mut configs: Vec<AlterableConfig> = set
            .iter()
            .map(|(k, val)| {
                AlterableConfig::default()
                    .with_name(sb(k))
                    .with_config_operation(0)
                    .with_value(Some(sb(val)))
            })
            .collect();
        configs.extend(
            delete
                .iter()
                .map(|k| AlterableConfig::default().with_name(sb(k)).with_config_operation(1)),
        );
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(sb(name))
            .with_configs(configs)]);
        let resp: IncrementalAlterConfigsResponse = c.call(ApiKey::IncrementalAlterConfigs, v, &req)?;
        for r in resp.responses {
            let kind = if resource_type == RESOURCE_TOPIC {
                "topic"
            } else {
                "broker"
            };
            let shown = if name.is_empty() { "(cluster default)" } else { name };
            check(
                r.error_code,
                || (format!("cannot alter the configs of {kind} {shown}"), name.to_string()),
                r.error_message.as_deref(),
            )?;
        }
        Ok(())
    })
}

// --- ringlog cluster ---------------------------------------------------------------

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  ringlog cluster info
  ringlog cluster info --format json | jq .controller
  ringlog cluster config get log.retention.ms
  ringlog cluster config set log.retention.ms=86400000")]
pub struct ClusterArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    #[command(flatten)]
    pub format: FormatOpt,
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Brokers, controller and cluster id (Metadata, DescribeCluster).
    #[command(after_help = "Example:\n  ringlog cluster info --bootstrap 127.0.0.1:9092")]
    Info,
    /// Broker configs (DescribeConfigs / IncrementalAlterConfigs).
    #[command(
        subcommand,
        after_help = "Examples:\n  ringlog cluster config get log.retention.ms\n  ringlog cluster config set log.retention.ms=86400000"
    )]
    Config(ClusterConfigCommand),
}

#[derive(Subcommand, Debug)]
pub enum ClusterConfigCommand {
    /// Show a broker's configs (all, or KEY), with their source.
    #[command(
        after_help = "Examples:\n  ringlog cluster config get\n  ringlog cluster config get num.partitions --format json"
    )]
    Get {
        /// Only this key.
        key: Option<String>,
        /// The broker to ask (default: the controller, else any).
        #[arg(long)]
        broker: Option<i32>,
    },
    /// Set cluster-wide dynamic broker configs (resource "" , or --broker ID).
    #[command(after_help = "Example:\n  ringlog cluster config set log.retention.ms=86400000")]
    Set {
        /// KEY=VALUE pairs.
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
        /// Only this broker (default: the cluster-wide default).
        #[arg(long)]
        broker: Option<i32>,
    },
}

pub fn cluster_main(args: ClusterArgs) -> i32 {
    run(|| {
        let mut cl = args.client.connect()?;
        let fmt = args.format.format;
        match args.command {
            ClusterCommand::Info => cluster_info(&mut cl, fmt),
            ClusterCommand::Config(ClusterConfigCommand::Get { key, broker }) => {
                cl.metadata(Some(&[]))?;
                let node = broker.unwrap_or_else(|| {
                    let c = cl.meta.controller;
                    if cl.meta.brokers.contains_key(&c) {
                        c
                    } else {
                        cl.meta.brokers.keys().next().copied().unwrap_or(0)
                    }
                });
                let entries = describe_configs(
                    &mut cl,
                    Some(node),
                    RESOURCE_BROKER,
                    &node.to_string(),
                    key.clone().map(|k| vec![k]),
                )?;
                if let Some(k) = &key {
                    if entries.is_empty() {
                        anyhow::bail!("broker {node} has no config {k:?}");
                    }
                }
                print_configs(&entries, fmt);
                Ok(())
            }
            ClusterCommand::Config(ClusterConfigCommand::Set { pairs, broker }) => {
                let set = pairs.iter().map(|p| parse_kv(p)).collect::<anyhow::Result<Vec<_>>>()?;
                let name = broker.map(|b| b.to_string()).unwrap_or_default();
                alter_configs(&mut cl, RESOURCE_BROKER, &name, &set, &[])?;
                for (k, v) in &set {
                    out(&format!("set {k}={v}\n"));
                }
                Ok(())
            }
        }
    })
}

pub fn print_configs(entries: &[ConfigEntry], fmt: OutFormat) {
    match fmt {
        OutFormat::Json => out_json(&serde_json::Value::Array(
            entries.iter().map(ConfigEntry::json).collect(),
        )),
        OutFormat::Text => {
            out(&config_table(entries));
        }
    }
}

fn cluster_info(cl: &mut Cluster, fmt: OutFormat) -> anyhow::Result<()> {
    let meta = cl.metadata(Some(&[]))?.clone();
    let mut cluster_id = meta.cluster_id.clone();
    let mut controller = meta.controller;
    let mut fenced = std::collections::BTreeMap::new();
    let c = cl.any()?;
    if let Ok(v) = c.version(ApiKey::DescribeCluster, (0, 1)) {
        let resp: DescribeClusterResponse = c.call(ApiKey::DescribeCluster, v, &DescribeClusterRequest::default())?;
        check(
            resp.error_code,
            || ("DescribeCluster failed".into(), String::new()),
            resp.error_message.as_deref(),
        )?;
        cluster_id = Some(resp.cluster_id.to_string());
        controller = resp.controller_id.0;
        for b in &resp.brokers {
            fenced.insert(b.broker_id.0, b.is_fenced);
        }
    }
    match fmt {
        OutFormat::Json => out_json(&json!({
            "cluster_id": cluster_id,
            "controller": controller,
            "brokers": meta.brokers.iter().map(|(id, (addr, rack))| json!({
                "id": id,
                "address": addr,
                "rack": rack,
                "fenced": fenced.get(id).copied().unwrap_or(false),
            })).collect::<Vec<_>>(),
        })),
        OutFormat::Text => {
            let mut s = format!(
                "CLUSTER\n=======\n{}\n\nBROKERS\n=======\n",
                cluster_id.as_deref().unwrap_or("-")
            );
            let rows: Vec<Vec<String>> = meta
                .brokers
                .iter()
                .map(|(id, (addr, rack))| {
                    vec![
                        if *id == controller {
                            format!("{id}*")
                        } else {
                            id.to_string()
                        },
                        addr.clone(),
                        rack.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            s.push_str(&table(&["ID", "ADDRESS", "RACK"], &rows));
            s.push_str(&format!("\nCONTROLLER: {controller}\n"));
            out(&s);
        }
    }
    Ok(())
}

// --- ringlog completion ----------------------------------------------------------

/// Shells `ringlog completion` writes scripts for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values() {
        assert_eq!(parse_kv("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(parse_kv("a=").unwrap(), ("a".into(), "".into()));
        assert!(parse_kv("a").is_err());
        assert!(parse_kv("=b").is_err());
        assert_eq!(config_source_name(1), "DYNAMIC_TOPIC_CONFIG");
        assert_eq!(config_source_name(5), "DEFAULT_CONFIG");
    }
}
