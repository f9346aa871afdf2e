//! `ringlog group ...`: consumer group administration for any
//! Kafka-compatible broker, in the spirit of `kafka-consumer-groups`.
//!
//! * `list`: every group of every broker;
//! * `describe GROUP`: state, members (client ids, hosts, assigned
//!   partitions), committed offset, log end offset and lag per partition;
//! * `reset-offsets GROUP --topic T --to-...`: a dry run by default; with
//!   `--execute` the offsets are committed, which requires the group to have
//!   no active members.

use crate::io::rand::HashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::Duration;

use crate::client::list_offsets_topic;
use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use kafka_protocol::messages::consumer_group_describe_response::Assignment as ConsumerAssignment;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, BrokerId, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, GroupId, ListGroupsRequest, ListGroupsResponse, ListOffsetsRequest, ListOffsetsResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::client::Conn;

/// Retries while the coordinator is loading or not yet available.
const COORDINATOR_RETRIES: usize = 20;
const RETRY_PAUSE: Duration = Duration::from_millis(250);

const ERR_COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const ERR_COORDINATOR_NOT_AVAILABLE: i16 = 15;
const ERR_NOT_COORDINATOR: i16 = 16;
const ERR_GROUP_ID_NOT_FOUND: i16 = 69;

/// ListOffsets special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  ringlog group list
  ringlog group describe my-group
  ringlog group reset-offsets my-group --topic orders --to-earliest --execute
  ringlog group delete my-group
  ringlog group offset-delete my-group --topic orders -p 0 -p 1")]
pub struct GroupArgs {
    #[command(flatten)]
    pub client: super::ClientOpts,
    #[command(flatten)]
    pub format: super::FormatOpt,
    #[command(subcommand)]
    pub command: GroupCommand,
}

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// List the consumer groups of every broker.
    #[command(after_help = "Examples:\n  ringlog group list\n  ringlog group list --format json")]
    List,
    /// Show a group's state, members, committed offsets and lag.
    #[command(
        after_help = "Examples:\n  ringlog group describe my-group\n  ringlog group describe my-group --format json | jq .total_lag"
    )]
    Describe {
        /// The group id.
        group: String,
    },
    /// Move a group's committed offsets for one topic (dry run unless --execute).
    #[command(
        after_help = "Examples:\n  ringlog group reset-offsets my-group --topic orders --to-earliest            # dry run\n  ringlog group reset-offsets my-group --topic orders --to-datetime 2026-01-01T00:00:00Z --execute"
    )]
    ResetOffsets {
        /// The group id.
        group: String,
        /// The topic whose offsets to reset (all of its partitions).
        #[arg(long)]
        topic: String,
        #[command(flatten)]
        to: ResetTo,
        /// Commit the new offsets (the group must have no active members).
        #[arg(long)]
        execute: bool,
    },
    /// Delete groups (they must have no active members).
    #[command(after_help = "Example:\n  ringlog group delete my-group other-group")]
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Delete a group's committed offsets for a topic (OffsetDelete).
    #[command(after_help = "Example:\n  ringlog group offset-delete my-group --topic orders -p 0")]
    OffsetDelete {
        group: String,
        #[arg(long, short = 't')]
        topic: String,
        /// Partitions (default: every partition of the topic).
        #[arg(short = 'p', long = "partition")]
        partitions: Vec<i32>,
    },
}

/// Where to move the offsets to (exactly one).
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct ResetTo {
    /// The log start offset of each partition.
    #[arg(long)]
    pub to_earliest: bool,
    /// The log end offset of each partition.
    #[arg(long)]
    pub to_latest: bool,
    /// The first offset at or after this time: epoch milliseconds or
    /// YYYY-MM-DDTHH:MM:SS[.sss][Z|+HH:MM|-HH:MM] (UTC when no zone is given).
    #[arg(long, value_name = "TS")]
    pub to_datetime: Option<String>,
    /// This offset, clamped to each partition's [earliest, latest] range.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub to_offset: Option<i64>,
}

/// Run a `ringlog group` command; returns the process exit code.
pub fn main(args: GroupArgs) -> i32 {
    let result = (|| -> anyhow::Result<()> {
        let mut cluster = Cluster::connect(&args.client.bootstrap)?;
        match &args.command {
            GroupCommand::List => list(&mut cluster, args.format.format),
            GroupCommand::Describe { group } => describe(&mut cluster, group, args.format.format),
            GroupCommand::ResetOffsets {
                group,
                topic,
                to,
                execute,
            } => reset_offsets(&mut cluster, group, topic, to, *execute),
            GroupCommand::Delete { groups } => delete_groups(&mut cluster, groups),
            GroupCommand::OffsetDelete {
                group,
                topic,
                partitions,
            } => offset_delete(&mut cluster, group, topic, partitions),
        }
    })();
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// Write to stdout, ignoring a closed pipe (`ringlog group list | head`).
fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// A left-aligned text table.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                let pad = widths[i].saturating_sub(c.chars().count()) + 2;
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut s = line(header.to_vec());
    for row in rows {
        s.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    s
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn opt_num(v: Option<i64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

// --- cluster access ------------------------------------------------------------------

/// The shared client ([`crate::client::Cluster`]) with the group tools'
/// views of metadata.
pub(crate) struct Cluster {
    pub(crate) inner: crate::client::Cluster,
    bootstrap: String,
}

impl Cluster {
    pub(crate) fn connect(bootstrap: &str) -> anyhow::Result<Cluster> {
        let inner = crate::client::Cluster::connect(bootstrap, crate::client::CLI_CLIENT_ID)?;
        Ok(Cluster {
            inner,
            bootstrap: bootstrap.to_string(),
        })
    }

    fn client(&mut self, addr: &str) -> anyhow::Result<&mut Conn> {
        self.inner.conn(addr)
    }

    /// Metadata for `topics` (None: all topics).
    fn metadata(&mut self, topics: Option<&[String]>) -> anyhow::Result<Metadata> {
        let m = self.inner.metadata(topics)?;
        let brokers = m.brokers.iter().map(|(id, (addr, _))| (*id, addr.clone())).collect();
        let mut parts = BTreeMap::new();
        let mut errors = BTreeMap::new();
        for (name, t) in &m.topics {
            if t.error_code != 0 {
                errors.insert(name.clone(), t.error_code);
                continue;
            }
            parts.insert(
                name.clone(),
                t.partitions.iter().map(|p| (p.partition, p.leader)).collect(),
            );
        }
        Ok(Metadata {
            brokers,
            topics: parts,
            errors,
        })
    }

    /// Address of the coordinator of `group`.
    fn coordinator(&mut self, group: &str) -> anyhow::Result<String> {
        self.inner.coordinator(group)
    }

    /// Send a request to the coordinator of `group`, retrying while it is
    /// loading. `code_of` extracts the group level error of the response.
    fn ask_coordinator<Req, Resp>(
        &mut self,
        group: &str,
        key: ApiKey,
        versions: (i16, i16),
        make: impl Fn(i16) -> Req,
        code_of: impl Fn(&Resp) -> i16,
    ) -> anyhow::Result<(i16, Resp)>
    where
        Req: kafka_protocol::protocol::Encodable,
        Resp: kafka_protocol::protocol::Decodable,
    {
        let mut attempt = 0;
        loop {
            let addr = self.coordinator(group)?;
            let c = self.client(&addr)?;
            let v = c.version(key, versions)?;
            let resp: Resp = c.call(key, v, &make(v))?;
            let code = code_of(&resp);
            attempt += 1;
            let retriable = matches!(
                code,
                ERR_COORDINATOR_LOAD_IN_PROGRESS | ERR_COORDINATOR_NOT_AVAILABLE | ERR_NOT_COORDINATOR
            );
            if !retriable || attempt >= COORDINATOR_RETRIES {
                return Ok((v, resp));
            }
            std::thread::sleep(RETRY_PAUSE);
        }
    }

    /// Offsets by ListOffsets `timestamp` for the given partitions, asked of
    /// each partition's leader. Partitions with errors are left out.
    fn list_offsets(
        &mut self,
        meta: &Metadata,
        wanted: &[(String, i32)],
        timestamp: i64,
    ) -> anyhow::Result<HashMap<(String, i32), i64>> {
        let mut by_leader: BTreeMap<String, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
        for (topic, p) in wanted {
            let leader = meta
                .leader(topic, *p)
                .and_then(|id| meta.brokers.get(&id).cloned())
                .unwrap_or_else(|| self.bootstrap.clone());
            by_leader
                .entry(leader)
                .or_default()
                .entry(topic.clone())
                .or_default()
                .push(*p);
        }
        let mut found = HashMap::default();
        for (addr, topics) in by_leader {
            let c = self.client(&addr)?;
            let v = c.version(ApiKey::ListOffsets, (1, 7))?;
            let req = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(
                topics
                    .iter()
                    .map(|(t, ps)| list_offsets_topic(t, ps, timestamp))
                    .collect(),
            );
            let resp: ListOffsetsResponse = c.call(ApiKey::ListOffsets, v, &req)?;
            for t in resp.topics {
                for p in t.partitions {
                    if p.error_code == 0 {
                        found.insert((t.name.0.to_string(), p.partition_index), p.offset);
                    }
                }
            }
        }
        Ok(found)
    }

    /// Committed offsets of `group` (for `topics`, or all).
    fn committed(
        &mut self,
        group: &str,
        topics: Option<&[(String, Vec<i32>)]>,
    ) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
        let (_, resp): (i16, OffsetFetchResponse) = self.ask_coordinator(
            group,
            ApiKey::OffsetFetch,
            (2, 7),
            |_| {
                OffsetFetchRequest::default()
                    .with_group_id(GroupId(sb(group)))
                    .with_topics(topics.map(|ts| {
                        ts.iter()
                            .map(|(t, ps)| {
                                OffsetFetchRequestTopic::default()
                                    .with_name(TopicName(sb(t)))
                                    .with_partition_indexes(ps.clone())
                            })
                            .collect()
                    }))
            },
            |r: &OffsetFetchResponse| r.error_code,
        )?;
        if resp.error_code != 0 {
            bail!(
                "fetching the committed offsets of group '{group}' failed (error {})",
                resp.error_code
            );
        }
        let mut out = BTreeMap::new();
        for t in resp.topics {
            for p in t.partitions {
                if p.error_code == 0 && p.committed_offset >= 0 {
                    out.insert((t.name.0.to_string(), p.partition_index), p.committed_offset);
                }
            }
        }
        Ok(out)
    }
}

struct Metadata {
    brokers: BTreeMap<i32, String>,
    /// topic → sorted (partition, leader)
    topics: BTreeMap<String, Vec<(i32, i32)>>,
    errors: BTreeMap<String, i16>,
}

impl Metadata {
    fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        self.topics
            .get(topic)?
            .iter()
            .find(|(p, _)| *p == partition)
            .map(|(_, l)| *l)
    }
}

// --- group descriptions --------------------------------------------------------------------

struct Member {
    member_id: String,
    instance_id: Option<String>,
    client_id: String,
    host: String,
    /// topic → partitions
    assignment: BTreeMap<String, Vec<i32>>,
}

struct GroupInfo {
    /// "classic" or "consumer".
    kind: &'static str,
    state: String,
    protocol: String,
    members: Vec<Member>,
}

impl GroupInfo {
    fn exists(&self) -> bool {
        !self.state.eq_ignore_ascii_case("dead")
    }

    fn is_inactive(&self) -> bool {
        self.members.is_empty() && (self.state.eq_ignore_ascii_case("empty") || !self.exists())
    }
}

/// A classic group member's assignment: Kafka's `ConsumerProtocolAssignment`
/// (`int16 version, [string topic, [int32 partition]], bytes user_data`).
pub fn decode_consumer_assignment(data: &[u8]) -> Option<BTreeMap<String, Vec<i32>>> {
    let mut buf = data;
    let mut take = |n: usize| -> Option<&[u8]> {
        if buf.len() < n {
            return None;
        }
        let (h, t) = buf.split_at(n);
        buf = t;
        Some(h)
    };
    let mut out = BTreeMap::new();
    if data.is_empty() {
        return Some(out);
    }
    let _version = i16::from_be_bytes(take(2)?.try_into().ok()?);
    let topics = i32::from_be_bytes(take(4)?.try_into().ok()?);
    for _ in 0..topics.max(0) {
        let len = i16::from_be_bytes(take(2)?.try_into().ok()?);
        let name = String::from_utf8(take(usize::try_from(len).ok()?)?.to_vec()).ok()?;
        let n = i32::from_be_bytes(take(4)?.try_into().ok()?);
        let mut parts = Vec::with_capacity(usize::try_from(n.clamp(0, 1 << 16)).unwrap_or(0));
        for _ in 0..n.max(0) {
            parts.push(i32::from_be_bytes(take(4)?.try_into().ok()?));
        }
        parts.sort_unstable();
        out.insert(name, parts);
    }
    Some(out)
}

fn consumer_assignment(a: &ConsumerAssignment) -> BTreeMap<String, Vec<i32>> {
    let mut out = BTreeMap::new();
    for tp in &a.topic_partitions {
        let mut parts = tp.partitions.clone();
        parts.sort_unstable();
        let name = if tp.topic_name.0.is_empty() {
            tp.topic_id.to_string()
        } else {
            tp.topic_name.0.to_string()
        };
        out.insert(name, parts);
    }
    out
}

/// Describe a group with the consumer protocol API when the broker has it
/// (falling back to DescribeGroups for classic groups), like librdkafka.
fn describe_group(cluster: &mut Cluster, group: &str) -> anyhow::Result<GroupInfo> {
    let addr = cluster.coordinator(group)?;
    if cluster.client(&addr)?.supports(ApiKey::ConsumerGroupDescribe, (0, 1)) {
        let (_, resp): (i16, ConsumerGroupDescribeResponse) = cluster.ask_coordinator(
            group,
            ApiKey::ConsumerGroupDescribe,
            (0, 1),
            |_| ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(sb(group))]),
            |r: &ConsumerGroupDescribeResponse| r.groups.first().map_or(0, |g| g.error_code),
        )?;
        let g = resp
            .groups
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("empty ConsumerGroupDescribe response"))?;
        match g.error_code {
            0 => {
                return Ok(GroupInfo {
                    kind: "consumer",
                    state: g.group_state.to_string(),
                    protocol: g.assignor_name.to_string(),
                    members: g
                        .members
                        .iter()
                        .map(|m| Member {
                            member_id: m.member_id.to_string(),
                            instance_id: m.instance_id.as_ref().map(|s| s.to_string()),
                            client_id: m.client_id.to_string(),
                            host: m.client_host.to_string(),
                            assignment: consumer_assignment(&m.assignment),
                        })
                        .collect(),
                })
            }
            ERR_GROUP_ID_NOT_FOUND => {}
            code => bail!("describing group '{group}' failed (error {code})"),
        }
    }
    let (_, resp): (i16, DescribeGroupsResponse) = cluster.ask_coordinator(
        group,
        ApiKey::DescribeGroups,
        (0, 5),
        |_| DescribeGroupsRequest::default().with_groups(vec![GroupId(sb(group))]),
        |r: &DescribeGroupsResponse| r.groups.first().map_or(0, |g| g.error_code),
    )?;
    let g = resp
        .groups
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("empty DescribeGroups response"))?;
    if g.error_code != 0 {
        bail!("describing group '{group}' failed (error {})", g.error_code);
    }
    let members = g
        .members
        .iter()
        .map(|m| Member {
            member_id: m.member_id.to_string(),
            instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
            client_id: m.client_id.to_string(),
            host: m.client_host.to_string(),
            assignment: if g.protocol_type.as_str() == "consumer" || g.protocol_type.is_empty() {
                decode_consumer_assignment(&m.member_assignment).unwrap_or_default()
            } else {
                BTreeMap::new()
            },
        })
        .collect();
    Ok(GroupInfo {
        kind: "classic",
        state: g.group_state.to_string(),
        protocol: g.protocol_data.to_string(),
        members,
    })
}

// --- commands --------------------------------------------------------------------------

fn list(cluster: &mut Cluster, fmt: super::OutFormat) -> anyhow::Result<()> {
    let meta = cluster.metadata(Some(&[]))?;
    let mut addrs: Vec<String> = meta.brokers.values().cloned().collect();
    if addrs.is_empty() {
        addrs.push(cluster.bootstrap.clone());
    }
    let mut rows = BTreeMap::new();
    let mut failures = Vec::new();
    for addr in addrs {
        let listed = (|| -> anyhow::Result<ListGroupsResponse> {
            let c = cluster.client(&addr)?;
            let v = c.version(ApiKey::ListGroups, (0, 5))?;
            let mut last = None;
            for _ in 0..COORDINATOR_RETRIES {
                let resp: ListGroupsResponse = c.call(ApiKey::ListGroups, v, &ListGroupsRequest::default())?;
                if resp.error_code != ERR_COORDINATOR_LOAD_IN_PROGRESS {
                    return Ok(resp);
                }
                last = Some(resp);
                std::thread::sleep(RETRY_PAUSE);
            }
            last.ok_or_else(|| anyhow!("no response"))
        })();
        match listed {
            Ok(resp) => {
                if resp.error_code != 0 {
                    failures.push(format!("{addr}: ListGroups error {}", resp.error_code));
                }
                for g in resp.groups {
                    let kind = if g.group_type.is_empty() {
                        "classic".to_string()
                    } else {
                        g.group_type.to_lowercase()
                    };
                    rows.insert(
                        g.group_id.0.to_string(),
                        vec![
                            g.group_id.0.to_string(),
                            kind,
                            g.group_state.to_string(),
                            g.protocol_type.to_string(),
                        ],
                    );
                }
            }
            Err(e) => failures.push(format!("{addr}: {e:#}")),
        }
    }
    let rows: Vec<Vec<String>> = rows.into_values().collect();
    if fmt == super::OutFormat::Json {
        super::out_json(&serde_json::Value::Array(
            rows.iter()
                .map(|r| {
                    serde_json::json!({
                        "group": r[0],
                        "type": r[1],
                        "state": r[2],
                        "protocol_type": r[3],
                    })
                })
                .collect(),
        ));
    } else {
        out(&table(&["GROUP", "TYPE", "STATE", "PROTOCOL-TYPE"], &rows));
    }
    if !failures.is_empty() {
        bail!("could not list the groups of every broker: {}", failures.join("; "));
    }
    Ok(())
}

fn describe(cluster: &mut Cluster, group: &str, fmt: super::OutFormat) -> anyhow::Result<()> {
    let info = describe_group(cluster, group)?;
    let committed = cluster.committed(group, None)?;
    if !info.exists() && committed.is_empty() {
        return Err(crate::client::KafkaError::new(
            ERR_GROUP_ID_NOT_FOUND,
            format!("consumer group \"{group}\" does not exist"),
        )
        .hint("ringlog group list shows the existing groups")
        .into());
    }
    // Every partition that is assigned or has a committed offset.
    let mut owner: BTreeMap<(String, i32), usize> = BTreeMap::new();
    for (i, m) in info.members.iter().enumerate() {
        for (t, ps) in &m.assignment {
            for p in ps {
                owner.insert((t.clone(), *p), i);
            }
        }
    }
    let partitions: BTreeSet<(String, i32)> = owner.keys().cloned().chain(committed.keys().cloned()).collect();
    let topics: Vec<String> = partitions
        .iter()
        .map(|(t, _)| t.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let meta = if topics.is_empty() {
        None
    } else {
        Some(cluster.metadata(Some(&topics))?)
    };
    let wanted: Vec<(String, i32)> = partitions.iter().cloned().collect();
    let ends = match &meta {
        Some(m) => cluster.list_offsets(m, &wanted, LATEST)?,
        None => HashMap::default(),
    };

    let mut text = String::new();
    let protocol = if info.protocol.is_empty() {
        String::new()
    } else {
        format!(", assignor {}", info.protocol)
    };
    text.push_str(&format!(
        "Group '{group}' ({} protocol{protocol}): state {}, {} member(s)\n\n",
        info.kind,
        info.state,
        info.members.len()
    ));
    let mut total_lag = 0i64;
    let mut rows = Vec::new();
    let mut json_offsets = Vec::new();
    for key in &partitions {
        let current = committed.get(key).copied();
        let end = ends.get(key).copied();
        let lag = match (current, end) {
            (Some(c), Some(e)) => Some((e - c).max(0)),
            _ => None,
        };
        total_lag += lag.unwrap_or(0);
        let m = owner.get(key).and_then(|&i| info.members.get(i));
        json_offsets.push(serde_json::json!({
            "topic": key.0,
            "partition": key.1,
            "committed_offset": current,
            "log_end_offset": end,
            "lag": lag,
            "member_id": m.map(|m| m.member_id.clone()),
        }));
        rows.push(vec![
            group.to_string(),
            key.0.clone(),
            key.1.to_string(),
            opt_num(current),
            opt_num(end),
            opt_num(lag),
            m.map_or("-".to_string(), |m| m.member_id.clone()),
            m.map_or("-".to_string(), |m| m.host.clone()),
            m.map_or("-".to_string(), |m| m.client_id.clone()),
        ]);
    }
    if fmt == super::OutFormat::Json {
        super::out_json(&serde_json::json!({
            "group": group,
            "type": info.kind,
            "state": info.state,
            "protocol": info.protocol,
            "members": info.members.iter().map(|m| serde_json::json!({
                "member_id": m.member_id,
                "instance_id": m.instance_id,
                "client_id": m.client_id,
                "host": m.host,
                "assignment": m.assignment,
            })).collect::<Vec<_>>(),
            "offsets": json_offsets,
            "total_lag": total_lag,
        }));
        return Ok(());
    }
    text.push_str(&table(
        &[
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID",
        ],
        &rows,
    ));
    text.push_str(&format!("\nTOTAL LAG: {total_lag}\n"));
    if !info.members.is_empty() {
        text.push_str("\nMEMBERS\n");
        let rows: Vec<Vec<String>> = info
            .members
            .iter()
            .map(|m| {
                let assigned: Vec<String> = m
                    .assignment
                    .iter()
                    .map(|(t, ps)| format!("{t}({})", ps.iter().map(i32::to_string).collect::<Vec<_>>().join(",")))
                    .collect();
                let count: usize = m.assignment.values().map(Vec::len).sum();
                vec![
                    m.member_id.clone(),
                    m.instance_id.clone().unwrap_or_else(|| "-".to_string()),
                    m.host.clone(),
                    m.client_id.clone(),
                    count.to_string(),
                    if assigned.is_empty() {
                        "-".to_string()
                    } else {
                        assigned.join(" ")
                    },
                ]
            })
            .collect();
        text.push_str(&table(
            &[
                "CONSUMER-ID",
                "GROUP-INSTANCE-ID",
                "HOST",
                "CLIENT-ID",
                "#PARTITIONS",
                "ASSIGNMENT",
            ],
            &rows,
        ));
    }
    out(&text);
    Ok(())
}

fn reset_offsets(cluster: &mut Cluster, group: &str, topic: &str, to: &ResetTo, execute: bool) -> anyhow::Result<()> {
    let meta = cluster.metadata(Some(&[topic.to_string()]))?;
    if let Some(code) = meta.errors.get(topic) {
        bail!("topic '{topic}' is not available (error {code})");
    }
    let parts: Vec<i32> = meta
        .topics
        .get(topic)
        .map(|ps| ps.iter().map(|(p, _)| *p).collect())
        .filter(|ps: &Vec<i32>| !ps.is_empty())
        .ok_or_else(|| anyhow!("topic '{topic}' does not exist"))?;
    let wanted: Vec<(String, i32)> = parts.iter().map(|p| (topic.to_string(), *p)).collect();
    let earliest = cluster.list_offsets(&meta, &wanted, EARLIEST)?;
    let latest = cluster.list_offsets(&meta, &wanted, LATEST)?;
    let by_time = match &to.to_datetime {
        Some(ts) => Some(cluster.list_offsets(&meta, &wanted, parse_datetime(ts)?)?),
        None => None,
    };
    let mut targets = Vec::with_capacity(wanted.len());
    for key in &wanted {
        let (Some(&lo), Some(&hi)) = (earliest.get(key), latest.get(key)) else {
            bail!("cannot read the offsets of {}-{}", key.0, key.1);
        };
        let target = if to.to_earliest {
            lo
        } else if to.to_latest {
            hi
        } else if let Some(found) = &by_time {
            match found.get(key) {
                Some(&o) if o >= 0 => o,
                _ => hi,
            }
        } else if let Some(n) = to.to_offset {
            n.clamp(lo, hi)
        } else {
            bail!("no reset target given");
        };
        targets.push((key.1, target));
    }
    let committed = cluster.committed(group, Some(&[(topic.to_string(), parts.clone())]))?;
    let rows: Vec<Vec<String>> = targets
        .iter()
        .map(|(p, target)| {
            vec![
                group.to_string(),
                topic.to_string(),
                p.to_string(),
                opt_num(committed.get(&(topic.to_string(), *p)).copied()),
                target.to_string(),
            ]
        })
        .collect();
    let plan = table(&["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"], &rows);
    if !execute {
        out(&plan);
        out("\nDry run: nothing was changed. Run again with --execute to commit these offsets.\n");
        return Ok(());
    }
    let info = describe_group(cluster, group)?;
    if !info.is_inactive() {
        bail!(
            "assignments can only be reset if the group '{group}' is inactive, but the current state is {} ({} member(s))",
            info.state,
            info.members.len()
        );
    }
    let (_, resp): (i16, OffsetCommitResponse) = cluster.ask_coordinator(
        group,
        ApiKey::OffsetCommit,
        (2, 9),
        |_| {
            OffsetCommitRequest::default()
                .with_group_id(GroupId(sb(group)))
                .with_generation_id_or_member_epoch(-1)
                .with_member_id(sb(""))
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(TopicName(sb(topic)))
                    .with_partitions(
                        targets
                            .iter()
                            .map(|(p, o)| {
                                OffsetCommitRequestPartition::default()
                                    .with_partition_index(*p)
                                    .with_committed_offset(*o)
                                    .with_committed_leader_epoch(-1)
                                    .with_committed_metadata(Some(sb("")))
                            })
                            .collect(),
                    )])
        },
        |r: &OffsetCommitResponse| {
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter())
                .map(|p| p.error_code)
                .find(|c| *c != 0)
                .unwrap_or(0)
        },
    )?;
    let failed: Vec<String> = resp
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.0.to_string(), p.partition_index, p.error_code))
        })
        .filter(|(_, _, code)| *code != 0)
        .map(|(t, p, code)| format!("{t}-{p}: error {code}"))
        .collect();
    if !failed.is_empty() {
        bail!("committing the new offsets failed: {}", failed.join(", "));
    }
    out(&plan);
    out("\nOffsets committed.\n");
    Ok(())
}

fn delete_groups(cluster: &mut Cluster, groups: &[String]) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let mut first_err = None;
    for group in groups {
        let (_, resp): (i16, kafka_protocol::messages::DeleteGroupsResponse) = cluster.ask_coordinator(
            group,
            ApiKey::DeleteGroups,
            (0, 2),
            |_| kafka_protocol::messages::DeleteGroupsRequest::default().with_groups_names(vec![GroupId(sb(group))]),
            |r: &kafka_protocol::messages::DeleteGroupsResponse| r.results.first().map_or(0, |g| g.error_code),
        )?;
        let code = resp.results.first().map_or(0, |g| g.error_code);
        let err = crate::client::check(
            code,
            || {
                if code == ERR_GROUP_ID_NOT_FOUND {
                    (format!("group \"{group}\" does not exist"), group.clone())
                } else {
                    (format!("cannot delete group \"{group}\""), group.clone())
                }
            },
            None,
        )
        .err();
        rows.push(vec![
            group.clone(),
            err.as_ref().map_or_else(|| "OK".to_string(), |e| e.to_string()),
        ]);
        if first_err.is_none() {
            first_err = err;
        }
    }
    out(&table(&["GROUP", "STATUS"], &rows));
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn offset_delete(cluster: &mut Cluster, group: &str, topic: &str, partitions: &[i32]) -> anyhow::Result<()> {
    use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
    use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
    let parts: Vec<i32> = if partitions.is_empty() {
        let names = [topic.to_string()];
        let m = cluster.inner.metadata(Some(&names))?;
        m.topic(topic)?.partitions.iter().map(|p| p.partition).collect()
    } else {
        partitions.to_vec()
    };
    let (_, resp): (i16, OffsetDeleteResponse) = cluster.ask_coordinator(
        group,
        ApiKey::OffsetDelete,
        (0, 0),
        |_| {
            OffsetDeleteRequest::default()
                .with_group_id(GroupId(sb(group)))
                .with_topics(vec![OffsetDeleteRequestTopic::default()
                    .with_name(TopicName(sb(topic)))
                    .with_partitions(
                        parts
                            .iter()
                            .map(|p| OffsetDeleteRequestPartition::default().with_partition_index(*p))
                            .collect(),
                    )])
        },
        |r: &OffsetDeleteResponse| r.error_code,
    )?;
    crate::client::check(
        resp.error_code,
        || {
            (
                format!("cannot delete the offsets of group \"{group}\""),
                group.to_string(),
            )
        },
        None,
    )?;
    let mut rows = Vec::new();
    let mut first_err = None;
    for t in &resp.topics {
        for p in &t.partitions {
            let err = crate::client::check(
                p.error_code,
                || {
                    (
                        format!("cannot delete the offset of {topic}/{}", p.partition_index),
                        topic.to_string(),
                    )
                },
                None,
            )
            .err();
            rows.push(vec![
                t.name.0.to_string(),
                p.partition_index.to_string(),
                err.as_ref().map_or_else(|| "OK".to_string(), |e| e.to_string()),
            ]);
            if first_err.is_none() {
                first_err = err;
            }
        }
    }
    out(&table(&["TOPIC", "PARTITION", "STATUS"], &rows));
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Epoch milliseconds, or `YYYY-MM-DDTHH:MM:SS[.fff][Z|±HH:MM|±HHMM]`
/// (UTC without a zone).
pub fn parse_datetime(s: &str) -> anyhow::Result<i64> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || anyhow!("bad --to-datetime {s:?}: expected epoch milliseconds or YYYY-MM-DDTHH:MM:SS[.sss][Z|+HH:MM]");
    let (date, rest) = s.split_once(['T', ' ']).ok_or_else(bad)?;
    let mut d = date.splitn(3, '-');
    let (y, mo, day) = (
        d.next().ok_or_else(bad)?,
        d.next().ok_or_else(bad)?,
        d.next().ok_or_else(bad)?,
    );
    let (y, mo, day): (i64, u32, u32) = (
        y.parse().map_err(|_| bad())?,
        mo.parse().map_err(|_| bad())?,
        day.parse().map_err(|_| bad())?,
    );
    // Split off the zone.
    let (time, offset_min) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, 0i64)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let (t, z) = rest.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let digits: String = z[1..].chars().filter(|c| *c != ':').collect();
        if digits.len() != 4 {
            return Err(bad());
        }
        let h: i64 = digits[..2].parse().map_err(|_| bad())?;
        let m: i64 = digits[2..].parse().map_err(|_| bad())?;
        (t, sign * (h * 60 + m))
    } else {
        (rest, 0)
    };
    let (hms, frac) = match time.split_once('.') {
        Some((a, b)) => (a, b),
        None => (time, ""),
    };
    let mut t = hms.splitn(3, ':');
    let h: i64 = t.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    let mi: i64 = t.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    let sec: i64 = t.next().unwrap_or("0").parse().map_err(|_| bad())?;
    let ms: i64 = if frac.is_empty() {
        0
    } else {
        let f: String = frac.chars().chain("000".chars()).take(3).collect();
        f.parse().map_err(|_| bad())?
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&day) || h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    let days = days_from_civil(y, mo, day);
    Ok((((days * 24 + h) * 60 + mi) * 60 + sec) * 1000 + ms - offset_min * 60_000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes() {
        assert_eq!(parse_datetime("0").unwrap(), 0);
        assert_eq!(parse_datetime("1700000000000").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_datetime("1970-01-01T00:00:00").unwrap(), 0);
        assert_eq!(parse_datetime("2023-11-14T22:13:20Z").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_datetime("2023-11-14T22:13:20.123").unwrap(), 1_700_000_000_123);
        assert_eq!(parse_datetime("2023-11-15T00:13:20+02:00").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_datetime("2023-11-14T21:13:20-0100").unwrap(), 1_700_000_000_000);
        assert!(parse_datetime("yesterday").is_err());
        assert!(parse_datetime("2023-13-01T00:00:00").is_err());
    }

    #[test]
    fn consumer_assignments() {
        let mut v = vec![0, 1, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 1];
        v.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        let a = decode_consumer_assignment(&v).unwrap();
        assert_eq!(a.get("t"), Some(&vec![1, 3]));
        assert_eq!(decode_consumer_assignment(&[]).unwrap().len(), 0);
        assert!(decode_consumer_assignment(&[0, 1, 0, 0, 0, 9]).is_none());
    }

    #[test]
    fn tables_align() {
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
    }
}
