//! `ringlog consume TOPIC...`: Fetch from each partition's leader, decode
//! every codec with the broker's own decoder ([`crate::record`]), print
//! records by template or as JSON lines. Alone it reads the partitions
//! asked for from `-o`; with `-g` it joins the group (classic protocol,
//! range assignor), resumes from and commits the group's offsets, and
//! commits and leaves on Ctrl-C.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use base64::Engine;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use clap::Args;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use serde_json::json;

use super::format::{OffsetSpec, RecordView, Template};
use super::produce::Progress;
use super::topic::list_offsets;
use super::{run, ClientOpts};
use crate::client::{check, kafka_error, sb, Cluster, KafkaError};
use crate::record::{decode_records, BatchHeader, TimestampType, BATCH_HEADER_LEN, LOG_OVERHEAD};

const MAX_WAIT_MS: i32 = 500;
const FETCH_MAX_BYTES: i32 = 50 << 20;
const PARTITION_MAX_BYTES: i32 = 1 << 20;
const SESSION_TIMEOUT_MS: i32 = 30_000;
const REBALANCE_TIMEOUT_MS: i32 = 60_000;
const HEARTBEAT_EVERY: Duration = Duration::from_secs(3);
const COMMIT_EVERY: Duration = Duration::from_secs(5);

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  ringlog consume orders -n 10                    # the first 10 records, then exit
  ringlog consume orders -o end                   # new records until Ctrl-C
  ringlog consume orders -o -5 -e                 # the last 5 of each partition
  ringlog consume orders -o @2026-01-01T00:00:00Z -e
  ringlog consume orders -f '%p/%o %k=%v %h\\n'   # partition/offset key=value headers
  ringlog consume orders -f '%v{base64}\\n'       # binary values as base64
  ringlog consume orders --format json | jq .value
  ringlog consume orders -g my-group              # join a group, commit, leave on Ctrl-C")]
pub struct ConsumeArgs {
    /// The topics.
    #[arg(required = true)]
    pub topics: Vec<String>,
    #[command(flatten)]
    pub client: ClientOpts,
    /// Stop after this many records.
    #[arg(short = 'n', long = "num")]
    pub num: Option<u64>,
    /// Where to start: start, end, OFFSET, -N (N before the end), @TIMESTAMP
    /// (epoch ms or YYYY-MM-DDTHH:MM:SS[Z]). With -g, only where the group
    /// has no committed offset.
    #[arg(short = 'o', long, default_value = "start", allow_hyphen_values = true)]
    pub offset: String,
    /// Partitions to read (comma-separated or repeated; default all). Not with -g.
    #[arg(short = 'p', long = "partitions", value_delimiter = ',')]
    pub partitions: Vec<i32>,
    /// Consume as a member of this group (offsets resume and are committed).
    #[arg(short = 'g', long)]
    pub group: Option<String>,
    /// Output: "text" (one value per line), "json" (one object per line), or
    /// a template: %t %p %o %k %v %h %d (timestamp ms) %K %V, escapes \n \t
    /// \\, encodings %v{base64} %v{hex}.
    #[arg(short = 'f', long = "format", default_value = "text")]
    pub output: String,
    /// Exit at the end of the partitions instead of waiting for more.
    #[arg(short = 'e', long = "exit-at-end")]
    pub exit_at_end: bool,
    /// Only committed transactional records (isolation level read_committed).
    #[arg(long)]
    pub read_committed: bool,
}

/// How records are printed.
enum Output {
    Template(Template),
    Json,
}

pub fn main(args: ConsumeArgs) -> i32 {
    run(|| consume(&args))
}

/// Where one partition is.
#[derive(Debug, Clone)]
struct Position {
    offset: i64,
    high_watermark: i64,
}

fn consume(args: &ConsumeArgs) -> anyhow::Result<()> {
    let output = match args.output.as_str() {
        "text" => Output::Template(Template::parse("%v\\n")?),
        "json" => Output::Json,
        t => Output::Template(Template::parse(t)?),
    };
    let spec: OffsetSpec = args.offset.parse()?;
    if args.group.is_some() && !args.partitions.is_empty() {
        bail!("-p cannot be used with -g: the group assigns the partitions");
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(|e| anyhow!("cannot handle signals: {e}"))?;
    }
    let mut cl = args.client.connect()?;
    let topics = args.topics.clone();
    let meta = cl.retry(|cl| cl.metadata(Some(&topics)).cloned())?;
    let mut all: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for t in &topics {
        let tm = meta.topic(t)?;
        let parts: Vec<i32> = tm.partitions.iter().map(|p| p.partition).collect();
        if !args.partitions.is_empty() {
            for p in &args.partitions {
                if !parts.contains(p) {
                    return Err(KafkaError::new(3, format!("topic \"{t}\" has no partition {p}"))
                        .hint(format!("it has {} partitions", parts.len()))
                        .into());
                }
            }
            all.insert(t.clone(), args.partitions.clone());
        } else {
            all.insert(t.clone(), parts);
        }
    }
    let mut consumer = Consumer {
        output,
        isolation: i8::from(args.read_committed),
        remaining: args.num,
        printed: 0,
        progress: Progress::new("consumed"),
        out: std::io::stdout(),
        buf: Vec::with_capacity(1 << 16),
    };
    let result = match &args.group {
        None => {
            let mut positions = start_positions(&mut cl, &all, spec, None)?;
            consumer.run(&mut cl, &mut positions, args.exit_at_end, &stop, &mut |_, _| Ok(()))
        }
        Some(group) => group_consume(&mut cl, &mut consumer, group, &topics, spec, args.exit_at_end, &stop),
    };
    consumer.progress.finish(consumer.printed);
    result
}

/// Resolve `spec` (or committed offsets first) into positions.
fn start_positions(
    cl: &mut Cluster,
    parts: &BTreeMap<String, Vec<i32>>,
    spec: OffsetSpec,
    committed: Option<&BTreeMap<(String, i32), i64>>,
) -> anyhow::Result<BTreeMap<(String, i32), Position>> {
    let mut out = BTreeMap::new();
    for (topic, ps) in parts {
        if ps.is_empty() {
            continue;
        }
        let start = list_offsets(cl, topic, ps, -2, false)?;
        let end = list_offsets(cl, topic, ps, -1, false)?;
        let by_time = match spec {
            OffsetSpec::Timestamp(ts) => Some(list_offsets(cl, topic, ps, ts, false)?),
            _ => None,
        };
        for p in ps {
            let lo = start.get(p).map_or(0, |o| o.0);
            let hi = end.get(p).map_or(0, |o| o.0);
            let offset = match committed.and_then(|c| c.get(&(topic.clone(), *p))) {
                Some(o) => *o,
                None => match spec {
                    OffsetSpec::Start => lo,
                    OffsetSpec::End => hi,
                    OffsetSpec::At(o) => o.clamp(lo, hi),
                    OffsetSpec::FromEnd(n) => hi.saturating_sub(n).max(lo),
                    OffsetSpec::Timestamp(_) => by_time
                        .as_ref()
                        .and_then(|m| m.get(p))
                        .map(|o| o.0)
                        .filter(|o| *o >= 0)
                        .unwrap_or(hi),
                },
            };
            out.insert(
                (topic.clone(), *p),
                Position {
                    offset,
                    high_watermark: hi,
                },
            );
        }
    }
    Ok(out)
}

struct Consumer {
    output: Output,
    isolation: i8,
    remaining: Option<u64>,
    printed: u64,
    progress: Progress,
    out: std::io::Stdout,
    buf: Vec<u8>,
}

/// Called between fetches: (cluster, positions) → Ok, or an error that ends
/// the loop (a group rebalance is handled by the caller).
type Between<'a> = dyn FnMut(&mut Cluster, &BTreeMap<(String, i32), Position>) -> anyhow::Result<()> + 'a;

impl Consumer {
    fn done(&self) -> bool {
        self.remaining == Some(0)
    }

    /// Fetch until done, at the end (with `exit_at_end`), or stopped.
    fn run(
        &mut self,
        cl: &mut Cluster,
        positions: &mut BTreeMap<(String, i32), Position>,
        exit_at_end: bool,
        stop: &AtomicBool,
        between: &mut Between<'_>,
    ) -> anyhow::Result<()> {
        let mut failures = 0;
        loop {
            if self.done() || stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            if exit_at_end && positions.values().all(|p| p.offset >= p.high_watermark) {
                return Ok(());
            }
            if positions.is_empty() {
                if exit_at_end {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(200));
                between(cl, positions)?;
                continue;
            }
            match self.fetch_round(cl, positions, exit_at_end) {
                Ok(()) => failures = 0,
                Err(e) => {
                    let retriable = kafka_error(&e).is_none_or(KafkaError::is_retriable);
                    failures += 1;
                    if !retriable || failures > crate::client::RETRIES {
                        return Err(e);
                    }
                    tracing::debug!("fetch: {e:#}");
                    std::thread::sleep(crate::client::RETRY_BACKOFF * failures.min(10) as u32);
                    let topics: Vec<String> = positions
                        .keys()
                        .map(|(t, _)| t.clone())
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    if cl.metadata(Some(&topics)).is_err() {
                        // The connection may be gone: reconnect on the next round.
                        let addrs: Vec<String> = cl.meta.brokers.values().map(|(a, _)| a.clone()).collect();
                        for a in addrs {
                            cl.drop_conn(&a);
                        }
                    }
                }
            }
            between(cl, positions)?;
        }
    }

    /// One Fetch to each leader.
    fn fetch_round(
        &mut self,
        cl: &mut Cluster,
        positions: &mut BTreeMap<(String, i32), Position>,
        exit_at_end: bool,
    ) -> anyhow::Result<()> {
        let mut by_leader: BTreeMap<String, Vec<(String, i32)>> = BTreeMap::new();
        for ((t, p), pos) in positions.iter() {
            if exit_at_end && pos.offset >= pos.high_watermark {
                continue;
            }
            let addr = cl.leader_addr(t, *p)?;
            by_leader.entry(addr).or_default().push((t.clone(), *p));
        }
        // Several leaders: shorter waits so one idle broker does not hold
        // up the others.
        let wait = if by_leader.len() > 1 { 100 } else { MAX_WAIT_MS };
        for (addr, parts) in by_leader {
            let c = cl.conn(&addr)?;
            let v = c.version(ApiKey::Fetch, (4, 12))?;
            let mut topics: BTreeMap<String, Vec<FetchPartition>> = BTreeMap::new();
            for (t, p) in &parts {
                let offset = positions.get(&(t.clone(), *p)).map_or(0, |x| x.offset);
                topics.entry(t.clone()).or_default().push(
                    FetchPartition::default()
                        .with_partition(*p)
                        .with_fetch_offset(offset)
                        .with_current_leader_epoch(-1)
                        .with_last_fetched_epoch(-1)
                        .with_log_start_offset(-1)
                        .with_partition_max_bytes(PARTITION_MAX_BYTES),
                );
            }
            let req = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(if exit_at_end { 100 } else { wait })
                .with_min_bytes(1)
                .with_max_bytes(FETCH_MAX_BYTES)
                .with_isolation_level(self.isolation)
                .with_session_id(0)
                .with_session_epoch(-1)
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(t, ps)| FetchTopic::default().with_topic(TopicName(sb(&t))).with_partitions(ps))
                        .collect(),
                );
            let resp: FetchResponse = c.call(ApiKey::Fetch, v, &req)?;
            check(resp.error_code, || ("Fetch failed".into(), String::new()), None)?;
            for t in resp.responses {
                let topic = t.topic.0.to_string();
                for p in t.partitions {
                    let key = (topic.clone(), p.partition_index);
                    let Some(pos) = positions.get_mut(&key) else { continue };
                    if p.error_code == 1 {
                        // OFFSET_OUT_OF_RANGE: the log moved (retention, trim).
                        let lo = list_offsets(cl, &topic, &[p.partition_index], -2, false)?;
                        let new = lo.get(&p.partition_index).map_or(0, |o| o.0);
                        eprintln!(
                            "ringlog consume: offset {} of {topic}/{} is out of range, resuming at the log start {new}",
                            pos.offset, p.partition_index
                        );
                        pos.offset = new;
                        continue;
                    }
                    check(
                        p.error_code,
                        || (format!("fetching {topic}/{}", p.partition_index), topic.clone()),
                        None,
                    )?;
                    pos.high_watermark = if self.isolation == 1 && p.last_stable_offset >= 0 {
                        p.last_stable_offset
                    } else {
                        p.high_watermark
                    };
                    let aborted: Vec<(i64, i64)> = p
                        .aborted_transactions
                        .as_ref()
                        .map(|a| a.iter().map(|x| (x.producer_id.0, x.first_offset)).collect())
                        .unwrap_or_default();
                    if let Some(records) = p.records {
                        self.print_records(&topic, p.partition_index, pos, &records, &aborted)?;
                    }
                    if self.done() {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    /// Print the records at or after `pos.offset`; advance it.
    fn print_records(
        &mut self,
        topic: &str,
        partition: i32,
        pos: &mut Position,
        data: &Bytes,
        aborted: &[(i64, i64)],
    ) -> anyhow::Result<()> {
        let mut at = 0usize;
        let mut aborting: BTreeSet<i64> = BTreeSet::new();
        self.buf.clear();
        while at + LOG_OVERHEAD <= data.len() {
            let rest = &data[at..];
            let Some(h) = BatchHeader::parse(rest) else { break };
            let Ok(len) = usize::try_from(h.batch_length) else {
                break;
            };
            let total = LOG_OVERHEAD + len;
            if total < BATCH_HEADER_LEN || total > rest.len() {
                // A partial batch at the end of the response.
                break;
            }
            at += total;
            if h.magic != 2 {
                bail!(
                    "{topic}/{partition} offset {}: message format v{} is not supported (only v2 record batches)",
                    h.base_offset,
                    h.magic
                );
            }
            let next = h.next_offset();
            if next <= pos.offset {
                continue;
            }
            if h.is_transactional() {
                for (pid, first) in aborted {
                    if *pid == h.producer_id && *first <= h.last_offset() {
                        aborting.insert(*pid);
                    }
                }
            }
            if h.is_control() {
                aborting.remove(&h.producer_id);
                pos.offset = next;
                continue;
            }
            if h.is_transactional() && aborting.contains(&h.producer_id) {
                pos.offset = next;
                continue;
            }
            let records = decode_records(&rest[..total])
                .map_err(|e| anyhow!("{topic}/{partition} batch at offset {}: {e}", h.base_offset))?;
            let log_append = h.timestamp_type() == TimestampType::LogAppendTime;
            for r in records {
                let offset = h.base_offset + i64::from(r.offset_delta);
                if offset < pos.offset {
                    continue;
                }
                if self.done() {
                    break;
                }
                let timestamp = if log_append {
                    h.max_timestamp
                } else {
                    h.base_timestamp.saturating_add(r.timestamp_delta)
                };
                let view = RecordView {
                    topic,
                    partition,
                    offset,
                    timestamp,
                    key: r.key.as_deref(),
                    value: r.value.as_deref(),
                    headers: &r.headers,
                };
                match &self.output {
                    Output::Template(t) => t.render(&view, &mut self.buf),
                    Output::Json => {
                        self.buf.extend_from_slice(record_json(&view).to_string().as_bytes());
                        self.buf.push(b'\n');
                    }
                }
                pos.offset = offset + 1;
                self.printed += 1;
                if let Some(n) = self.remaining.as_mut() {
                    *n -= 1;
                }
            }
            if !self.done() {
                pos.offset = pos.offset.max(next);
            }
        }
        use std::io::Write;
        let mut o = self.out.lock();
        o.write_all(&self.buf)?;
        o.flush()?;
        self.progress.tick(self.printed);
        Ok(())
    }
}

/// A record as JSON: key/value as UTF-8 text (invalid bytes replaced) and
/// as base64.
fn record_json(r: &RecordView<'_>) -> serde_json::Value {
    let b64 = |b: Option<&[u8]>| b.map(|b| base64::engine::general_purpose::STANDARD.encode(b));
    let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
    json!({
        "topic": r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
        "key": text(r.key),
        "key_base64": b64(r.key),
        "value": text(r.value),
        "value_base64": b64(r.value),
        "headers": r.headers.iter().map(|(k, v)| json!({
            "key": k,
            "value": text(v.as_deref()),
            "value_base64": b64(v.as_deref()),
        })).collect::<Vec<_>>(),
    })
}

// --- group consumption ---------------------------------------------------------------

/// A member of a classic consumer group.
struct Member {
    group: String,
    member_id: String,
    generation: i32,
    coordinator: String,
    last_heartbeat: Instant,
    last_commit: Instant,
    committed: BTreeMap<(String, i32), i64>,
}

const REBALANCE_IN_PROGRESS: i16 = 27;
const UNKNOWN_MEMBER_ID: i16 = 25;
const ILLEGAL_GENERATION: i16 = 22;
const MEMBER_ID_REQUIRED: i16 = 79;

/// The loop ended because the group is rebalancing.
#[derive(Debug)]
struct Rebalance;

impl std::fmt::Display for Rebalance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the group is rebalancing")
    }
}

impl std::error::Error for Rebalance {}

fn group_consume(
    cl: &mut Cluster,
    consumer: &mut Consumer,
    group: &str,
    topics: &[String],
    spec: OffsetSpec,
    exit_at_end: bool,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut member = Member {
        group: group.to_string(),
        member_id: String::new(),
        generation: -1,
        coordinator: String::new(),
        last_heartbeat: Instant::now(),
        last_commit: Instant::now(),
        committed: BTreeMap::new(),
    };
    let result = loop {
        let assigned = match member.join(cl, topics) {
            Ok(a) => a,
            Err(e) => break Err(e),
        };
        let committed = match member.fetch_committed(cl, &assigned) {
            Ok(c) => c,
            Err(e) => break Err(e),
        };
        let mut positions = match start_positions(cl, &assigned, spec, Some(&committed)) {
            Ok(p) => p,
            Err(e) => break Err(e),
        };
        let r = consumer.run(cl, &mut positions, exit_at_end, stop, &mut |cl, positions| {
            member.tick(cl, positions)
        });
        // Commit what was printed, whatever happened.
        let commit = member.commit(cl, &positions);
        match r {
            Err(e) if e.downcast_ref::<Rebalance>().is_some() => continue,
            Err(e) => break Err(e),
            Ok(()) => break commit,
        }
    };
    member.leave(cl);
    result
}

impl Member {
    fn coordinator_conn<'a>(&mut self, cl: &'a mut Cluster) -> anyhow::Result<&'a mut crate::client::Conn> {
        if self.coordinator.is_empty() {
            self.coordinator = cl.coordinator(&self.group)?;
        }
        cl.conn(&self.coordinator)
    }

    /// JoinGroup + SyncGroup; returns this member's assignment.
    fn join(&mut self, cl: &mut Cluster, topics: &[String]) -> anyhow::Result<BTreeMap<String, Vec<i32>>> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            if attempts > 30 {
                bail!("could not join group \"{}\"", self.group);
            }
            let group = self.group.clone();
            let c = self.coordinator_conn(cl)?;
            let v = c.version(ApiKey::JoinGroup, (1, 7))?;
            let req = JoinGroupRequest::default()
                .with_group_id(GroupId(sb(&group)))
                .with_session_timeout_ms(SESSION_TIMEOUT_MS)
                .with_rebalance_timeout_ms(REBALANCE_TIMEOUT_MS)
                .with_member_id(sb(&self.member_id))
                .with_protocol_type(sb("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(sb("range"))
                    .with_metadata(subscription(topics))]);
            let resp: JoinGroupResponse = c.call(ApiKey::JoinGroup, v, &req)?;
            match resp.error_code {
                0 => {}
                MEMBER_ID_REQUIRED => {
                    self.member_id = resp.member_id.to_string();
                    continue;
                }
                UNKNOWN_MEMBER_ID => {
                    self.member_id.clear();
                    continue;
                }
                14 | 15 | 16 | REBALANCE_IN_PROGRESS => {
                    self.coordinator.clear();
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
                code => check(code, || (format!("cannot join group \"{group}\""), group.clone()), None)?,
            }
            self.member_id = resp.member_id.to_string();
            self.generation = resp.generation_id;
            let assignments = if resp.leader == resp.member_id {
                let mut subs: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for m in &resp.members {
                    subs.insert(m.member_id.to_string(), parse_subscription(&m.metadata));
                }
                let wanted: BTreeSet<String> = subs.values().flatten().cloned().collect();
                let wanted: Vec<String> = wanted.into_iter().collect();
                let meta = cl.metadata(Some(&wanted))?.clone();
                let counts: BTreeMap<String, i32> = wanted
                    .iter()
                    .filter_map(|t| {
                        meta.topics
                            .get(t)
                            .map(|tm| (t.clone(), i32::try_from(tm.partitions.len()).unwrap_or(0)))
                    })
                    .collect();
                range_assign(&subs, &counts)
                    .into_iter()
                    .map(|(m, a)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(sb(&m))
                            .with_assignment(encode_assignment(&a))
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let c = self.coordinator_conn(cl)?;
            let v = c.version(ApiKey::SyncGroup, (1, 5))?;
            let req = SyncGroupRequest::default()
                .with_group_id(GroupId(sb(&group)))
                .with_generation_id(self.generation)
                .with_member_id(sb(&self.member_id))
                .with_protocol_type((v >= 5).then(|| sb("consumer")))
                .with_protocol_name((v >= 5).then(|| sb("range")))
                .with_assignments(assignments);
            let resp: SyncGroupResponse = c.call(ApiKey::SyncGroup, v, &req)?;
            match resp.error_code {
                0 => {}
                REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION => continue,
                UNKNOWN_MEMBER_ID => {
                    self.member_id.clear();
                    continue;
                }
                code => check(code, || (format!("cannot sync group \"{group}\""), group.clone()), None)?,
            }
            self.last_heartbeat = Instant::now();
            return Ok(super::group::decode_consumer_assignment(&resp.assignment).unwrap_or_default());
        }
    }

    fn fetch_committed(
        &mut self,
        cl: &mut Cluster,
        assigned: &BTreeMap<String, Vec<i32>>,
    ) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
        if assigned.is_empty() {
            return Ok(BTreeMap::new());
        }
        let group = self.group.clone();
        let c = self.coordinator_conn(cl)?;
        let v = c.version(ApiKey::OffsetFetch, (1, 7))?;
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(sb(&group)))
            .with_require_stable(v >= 7)
            .with_topics(Some(
                assigned
                    .iter()
                    .map(|(t, ps)| {
                        OffsetFetchRequestTopic::default()
                            .with_name(TopicName(sb(t)))
                            .with_partition_indexes(ps.clone())
                    })
                    .collect(),
            ));
        let resp: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, v, &req)?;
        check(
            resp.error_code,
            || (format!("cannot fetch the offsets of group \"{group}\""), group.clone()),
            None,
        )?;
        let mut out = BTreeMap::new();
        for t in resp.topics {
            for p in t.partitions {
                if p.error_code == 0 && p.committed_offset >= 0 {
                    out.insert((t.name.0.to_string(), p.partition_index), p.committed_offset);
                }
            }
        }
        self.committed = out.clone();
        Ok(out)
    }

    /// Between fetches: heartbeat and commit when due.
    fn tick(&mut self, cl: &mut Cluster, positions: &BTreeMap<(String, i32), Position>) -> anyhow::Result<()> {
        if self.last_commit.elapsed() >= COMMIT_EVERY {
            self.commit(cl, positions)?;
        }
        if self.last_heartbeat.elapsed() < HEARTBEAT_EVERY {
            return Ok(());
        }
        self.last_heartbeat = Instant::now();
        let group = self.group.clone();
        let c = self.coordinator_conn(cl)?;
        let v = c.version(ApiKey::Heartbeat, (0, 4))?;
        let req = HeartbeatRequest::default()
            .with_group_id(GroupId(sb(&group)))
            .with_generation_id(self.generation)
            .with_member_id(sb(&self.member_id));
        let resp: HeartbeatResponse = c.call(ApiKey::Heartbeat, v, &req)?;
        match resp.error_code {
            0 => Ok(()),
            REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION | UNKNOWN_MEMBER_ID => Err(Rebalance.into()),
            code => check(
                code,
                || (format!("heartbeat to group \"{group}\""), group.clone()),
                None,
            ),
        }
    }

    fn commit(&mut self, cl: &mut Cluster, positions: &BTreeMap<(String, i32), Position>) -> anyhow::Result<()> {
        self.last_commit = Instant::now();
        let mut topics: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
        for ((t, p), pos) in positions {
            if self.committed.get(&(t.clone(), *p)) != Some(&pos.offset) {
                topics.entry(t.clone()).or_default().push((*p, pos.offset));
            }
        }
        if topics.is_empty() {
            return Ok(());
        }
        let group = self.group.clone();
        let c = self.coordinator_conn(cl)?;
        let v = c.version(ApiKey::OffsetCommit, (2, 8))?;
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(sb(&group)))
            .with_generation_id_or_member_epoch(self.generation)
            .with_member_id(sb(&self.member_id))
            .with_topics(
                topics
                    .iter()
                    .map(|(t, ps)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(TopicName(sb(t)))
                            .with_partitions(
                                ps.iter()
                                    .map(|(p, o)| {
                                        OffsetCommitRequestPartition::default()
                                            .with_partition_index(*p)
                                            .with_committed_offset(*o)
                                            .with_committed_leader_epoch(-1)
                                            .with_committed_metadata(Some(sb("")))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let resp: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, v, &req)?;
        for t in &resp.topics {
            for p in &t.partitions {
                match p.error_code {
                    0 => {
                        if let Some(o) = topics
                            .get(t.name.0.as_str())
                            .and_then(|ps| ps.iter().find(|(q, _)| *q == p.partition_index))
                        {
                            self.committed.insert((t.name.0.to_string(), p.partition_index), o.1);
                        }
                    }
                    REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION | UNKNOWN_MEMBER_ID => return Err(Rebalance.into()),
                    code => check(
                        code,
                        || (format!("committing offsets of group \"{group}\""), group.clone()),
                        None,
                    )?,
                }
            }
        }
        Ok(())
    }

    /// LeaveGroup (best effort).
    fn leave(&mut self, cl: &mut Cluster) {
        if self.member_id.is_empty() {
            return;
        }
        let group = self.group.clone();
        let member = self.member_id.clone();
        let Ok(c) = self.coordinator_conn(cl) else { return };
        let Ok(v) = c.version(ApiKey::LeaveGroup, (0, 5)) else {
            return;
        };
        let req = if v >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(sb(&group)))
                .with_members(vec![MemberIdentity::default().with_member_id(sb(&member))])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(sb(&group)))
                .with_member_id(sb(&member))
        };
        let _ = c.call::<_, LeaveGroupResponse>(ApiKey::LeaveGroup, v, &req);
    }
}

/// ConsumerProtocolSubscription v0: the topics.
fn subscription(topics: &[String]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(i32::try_from(topics.len()).unwrap_or(0));
    for t in topics {
        b.put_i16(i16::try_from(t.len()).unwrap_or(0));
        b.put_slice(t.as_bytes());
    }
    b.put_i32(-1); // user data: null
    b.freeze()
}

/// The topics of a ConsumerProtocolSubscription (any version: the topics
/// come first).
fn parse_subscription(data: &[u8]) -> Vec<String> {
    let mut b = data;
    let mut out = Vec::new();
    if b.remaining() < 6 {
        return out;
    }
    let _version = b.get_i16();
    let n = b.get_i32();
    for _ in 0..n.max(0) {
        if b.remaining() < 2 {
            break;
        }
        let len = usize::try_from(b.get_i16()).unwrap_or(0);
        if b.remaining() < len {
            break;
        }
        out.push(String::from_utf8_lossy(&b[..len]).into_owned());
        b.advance(len);
    }
    out
}

/// ConsumerProtocolAssignment v0.
fn encode_assignment(a: &BTreeMap<String, Vec<i32>>) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(i32::try_from(a.len()).unwrap_or(0));
    for (t, ps) in a {
        b.put_i16(i16::try_from(t.len()).unwrap_or(0));
        b.put_slice(t.as_bytes());
        b.put_i32(i32::try_from(ps.len()).unwrap_or(0));
        for p in ps {
            b.put_i32(*p);
        }
    }
    b.put_i32(-1);
    b.freeze()
}

/// Kafka's RangeAssignor: per topic, members subscribed to it (sorted) get
/// consecutive ranges, the first ones one extra partition.
fn range_assign(
    subs: &BTreeMap<String, Vec<String>>,
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, BTreeMap<String, Vec<i32>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<i32>>> =
        subs.keys().map(|m| (m.clone(), BTreeMap::new())).collect();
    for (topic, n) in partitions {
        let members: Vec<&String> = subs
            .iter()
            .filter(|(_, ts)| ts.contains(topic))
            .map(|(m, _)| m)
            .collect();
        if members.is_empty() {
            continue;
        }
        let k = i32::try_from(members.len()).unwrap_or(1);
        let per = n / k;
        let extra = n % k;
        let mut next = 0;
        for (i, m) in members.iter().enumerate() {
            let i = i32::try_from(i).unwrap_or(0);
            let count = per + i32::from(i < extra);
            if count > 0 {
                if let Some(a) = out.get_mut(*m) {
                    a.insert(topic.clone(), (next..next + count).collect());
                }
            }
            next += count;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_assignor() {
        let subs: BTreeMap<String, Vec<String>> = [
            ("a".to_string(), vec!["t".to_string(), "u".to_string()]),
            ("b".to_string(), vec!["t".to_string()]),
        ]
        .into_iter()
        .collect();
        let parts: BTreeMap<String, i32> = [("t".to_string(), 5), ("u".to_string(), 2)].into_iter().collect();
        let a = range_assign(&subs, &parts);
        assert_eq!(a["a"]["t"], vec![0, 1, 2]);
        assert_eq!(a["b"]["t"], vec![3, 4]);
        assert_eq!(a["a"]["u"], vec![0, 1]);
        assert!(!a["b"].contains_key("u"));
    }

    #[test]
    fn subscription_and_assignment_round_trip() {
        let s = subscription(&["x".to_string(), "yy".to_string()]);
        assert_eq!(parse_subscription(&s), vec!["x".to_string(), "yy".to_string()]);
        assert!(parse_subscription(&[0, 0]).is_empty());
        let a: BTreeMap<String, Vec<i32>> = [("t".to_string(), vec![0, 2])].into_iter().collect();
        let back = super::super::group::decode_consumer_assignment(&encode_assignment(&a)).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn json_records() {
        let headers = vec![("h".to_string(), Some(Bytes::from_static(b"\xff")))];
        let v = record_json(&RecordView {
            topic: "t",
            partition: 1,
            offset: 2,
            timestamp: 3,
            key: None,
            value: Some(b"hi"),
            headers: &headers,
        });
        assert_eq!(v["key"], serde_json::Value::Null);
        assert_eq!(v["value"], "hi");
        assert_eq!(v["value_base64"], "aGk=");
        assert_eq!(v["headers"][0]["value_base64"], "/w==");
    }
}
