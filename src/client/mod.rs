//! One blocking Kafka client for every tool in the binary (`ringlog topic`,
//! `produce`, `consume`, `group`, `cluster`, and the connection layer of
//! `ringlog bench`), built on the `kafka-protocol` crate:
//!
//! * [`wire`]: framing, request headers, correlation ids, TCP options;
//! * [`Conn`]: one connection with ApiVersions negotiation (the highest
//!   version both sides implement: `min(broker max, ours max)`);
//! * [`Cluster`]: connections to the brokers of one cluster, Metadata-driven
//!   routing to partition leaders and group coordinators, and retries of
//!   retriable errors with a metadata refresh in between;
//! * [`KafkaError`]: a broker's error code, named, with what to do about it.

pub mod wire;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::BytesMut;
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FindCoordinatorRequest, FindCoordinatorResponse, MetadataRequest,
    MetadataResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use self::wire::{decode_response, encode_request, tcp_connect, FrameReader};
use crate::protocol::error as ec;

/// The client id of the command line tools.
pub const CLI_CLIENT_ID: &str = "ringlog-cli";
/// How many times a retriable error is retried.
pub const RETRIES: usize = 20;
/// Pause between retries (doubling, capped at 1 s).
pub const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// `StrBytes` from a `&str`.
/// A ListOffsets topic entry asking `timestamp` (-1 latest, -2 earliest,
/// or a time) for each of `partitions`, without a leader epoch.
pub fn list_offsets_topic(
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> kafka_protocol::messages::list_offsets_request::ListOffsetsTopic {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    ListOffsetsTopic::default()
        .with_name(kafka_protocol::messages::TopicName(sb(topic)))
        .with_partitions(
            partitions
                .iter()
                .map(|p| {
                    ListOffsetsPartition::default()
                        .with_partition_index(*p)
                        .with_timestamp(timestamp)
                        .with_current_leader_epoch(-1)
                })
                .collect(),
        )
}

pub fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

// --- errors -------------------------------------------------------------------------

/// A Kafka error code returned by a broker, with what it was about and what
/// to do. Displays as `UNKNOWN_TOPIC_OR_PARTITION (3): topic "x" does not
/// exist — create it with ringlog topic create x`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaError {
    pub code: i16,
    /// What failed, e.g. `topic "x" does not exist`.
    pub what: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// The broker's own error message, when it sent one.
    pub message: Option<String>,
}

impl KafkaError {
    pub fn new(code: i16, what: impl Into<String>) -> KafkaError {
        KafkaError {
            code,
            what: what.into(),
            hint: None,
            message: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> KafkaError {
        self.hint = Some(hint.into());
        self
    }

    /// Attach the broker's error message (ignored when empty).
    pub fn message(mut self, message: Option<&str>) -> KafkaError {
        self.message = message.filter(|m| !m.trim().is_empty()).map(str::to_string);
        self
    }

    pub fn name(&self) -> String {
        error_name(self.code)
    }

    pub fn is_retriable(&self) -> bool {
        is_retriable(self.code)
    }
}

impl std::fmt::Display for KafkaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.name(), self.code, self.what)?;
        if let Some(m) = &self.message {
            write!(f, " (broker: {m})")?;
        }
        if let Some(h) = &self.hint {
            write!(f, " — {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for KafkaError {}

/// Kafka's name of an error code (`UNKNOWN_TOPIC_OR_PARTITION`).
pub fn error_name(code: i16) -> String {
    if let Some(info) = ec::info(code) {
        return info.name.to_string();
    }
    match code.err() {
        Some(kafka_protocol::error::ResponseError::Unknown(_)) | None => format!("UNKNOWN_ERROR_CODE_{code}"),
        Some(e) => screaming_snake(&format!("{e:?}")),
    }
}

/// `UnknownTopicOrPartition` → `UNKNOWN_TOPIC_OR_PARTITION`.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

/// Whether a client retries on `code` (Kafka's RetriableException list).
pub fn is_retriable(code: i16) -> bool {
    match code.err() {
        Some(kafka_protocol::error::ResponseError::Unknown(_)) | None => ec::is_retriable(code),
        Some(e) => e.is_retriable(),
    }
}

/// What to do about an error of `code` about `subject` (a topic, group, ...).
pub fn default_hint(code: i16, subject: &str) -> Option<String> {
    let h = match code {
        3 => format!("create it with ringlog topic create {subject}"),
        10 => "the batch exceeds max.message.bytes: send smaller records or raise it with ringlog topic alter-config"
            .into(),
        1 => "the offset is outside the log; ringlog topic describe shows the log start and end offsets".into(),
        17 => "topic names are 1-249 characters of [a-zA-Z0-9._-]".into(),
        29..=31 => "the broker refused: this principal is not authorized".into(),
        35 => "the broker does not implement this request version".into(),
        36 => format!("pick another name, or delete it first with ringlog topic delete {subject}"),
        37 => "the partition count is not valid (a topic can only gain partitions)".into(),
        38 => "the replication factor is larger than the number of brokers (ringlog cluster info)".into(),
        40 => "check the key and value; ringlog topic describe lists the topic's configs".into(),
        41 => "retry against the controller (ringlog cluster info)".into(),
        42 => "the broker refused the request as malformed or not allowed here".into(),
        68 => "the group still has members: stop its consumers first".into(),
        69 => "ringlog group list shows the existing groups".into(),
        86 => "the offset is below the log start offset or above the high watermark".into(),
        _ => return None,
    };
    Some(h)
}

/// `Err(KafkaError)` for a non-zero `code` (with the default hint).
pub fn check(code: i16, what: impl FnOnce() -> (String, String), message: Option<&str>) -> anyhow::Result<()> {
    if code == 0 {
        return Ok(());
    }
    let (what, subject) = what();
    let mut e = KafkaError::new(code, what).message(message);
    e.hint = default_hint(code, &subject);
    Err(e.into())
}

/// The Kafka error in an `anyhow` chain, if any.
pub fn kafka_error(e: &anyhow::Error) -> Option<&KafkaError> {
    e.chain().find_map(|c| c.downcast_ref::<KafkaError>())
}

// --- one connection ---------------------------------------------------------------

/// One connection to one broker, with the versions it implements.
pub struct Conn {
    pub addr: String,
    stream: TcpStream,
    reader: FrameReader,
    wbuf: BytesMut,
    next_correlation: i32,
    client_id: &'static str,
    /// api key → (min, max) the broker implements.
    versions: BTreeMap<i16, (i16, i16)>,
}

impl Conn {
    /// Connect to `addr` (HOST:PORT) and learn the broker's API versions.
    pub fn connect(addr: &str, client_id: &'static str) -> anyhow::Result<Conn> {
        let stream = tcp_connect(addr)?;
        let mut conn = Conn {
            addr: addr.to_string(),
            stream,
            reader: FrameReader::default(),
            wbuf: BytesMut::with_capacity(4096),
            next_correlation: 1,
            client_id,
            versions: BTreeMap::new(),
        };
        conn.negotiate().with_context(|| format!("API versions with {addr}"))?;
        Ok(conn)
    }

    fn negotiate(&mut self) -> anyhow::Result<()> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(self.client_id))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let corr = self.send(ApiKey::ApiVersions, 3, &req)?;
        let frame = self.reader.read(&mut self.stream)?;
        // A broker that does not speak v3 answers UNSUPPORTED_VERSION with a
        // v0 body that still lists its versions.
        let resp: ApiVersionsResponse = match decode_response(frame.clone(), ApiKey::ApiVersions, 3, corr) {
            Ok(r) => r,
            Err(_) => decode_response(frame, ApiKey::ApiVersions, 0, corr)?,
        };
        if resp.error_code != ec::NONE && resp.error_code != ec::UNSUPPORTED_VERSION {
            return Err(KafkaError::new(resp.error_code, "ApiVersions failed").into());
        }
        self.versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(())
    }

    /// The broker's `(api_key, min, max)` list.
    pub fn api_versions(&self) -> Vec<(i16, i16, i16)> {
        self.versions.iter().map(|(k, (lo, hi))| (*k, *lo, *hi)).collect()
    }

    /// Whether the broker implements `key` in a version within `ours`.
    pub fn supports(&self, key: ApiKey, ours: (i16, i16)) -> bool {
        self.version(key, ours).is_ok()
    }

    /// The highest version of `key` both sides implement (ours: `lo..=hi`).
    pub fn version(&self, key: ApiKey, ours: (i16, i16)) -> anyhow::Result<i16> {
        negotiate(&self.versions, key, ours).with_context(|| format!("broker {}", self.addr))
    }

    /// Write one request; returns its correlation id.
    pub fn send<T: Encodable>(&mut self, key: ApiKey, version: i16, body: &T) -> anyhow::Result<i32> {
        let corr = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1).max(1);
        self.wbuf.clear();
        encode_request(&mut self.wbuf, key, version, corr, self.client_id, body)?;
        self.stream
            .write_all(&self.wbuf)
            .with_context(|| format!("sending {key:?} to {}", self.addr))?;
        Ok(corr)
    }

    /// Send a request and wait for its response.
    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &Req,
    ) -> anyhow::Result<Resp> {
        let corr = self.send(key, version, body)?;
        let frame = self
            .reader
            .read_socket(&self.stream)
            .with_context(|| format!("waiting for the {key:?} response from {}", self.addr))?;
        decode_response(frame, key, version, corr)
    }

    /// Send a request that gets no response (Produce with acks=0).
    pub fn send_only<Req: Encodable>(&mut self, key: ApiKey, version: i16, body: &Req) -> anyhow::Result<()> {
        self.send(key, version, body).map(|_| ())
    }

    /// The next correlation id (for a caller that takes over the stream).
    pub fn next_correlation(&self) -> i32 {
        self.next_correlation
    }

    /// The socket, for a caller that takes the connection over.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }
}

/// The version of `key` to use: `min(broker max, our max)`, if that is at
/// least both minimums.
pub fn negotiate(broker: &BTreeMap<i16, (i16, i16)>, key: ApiKey, ours: (i16, i16)) -> anyhow::Result<i16> {
    let (lo, hi) = broker
        .get(&(key as i16))
        .copied()
        .ok_or_else(|| anyhow!("the broker does not implement {key:?}"))?;
    let v = hi.min(ours.1);
    if v < lo.max(ours.0) {
        bail!(
            "the broker implements {key:?} v{lo}-v{hi}, ringlog needs v{}-v{}",
            ours.0,
            ours.1
        );
    }
    Ok(v)
}

// --- a cluster ----------------------------------------------------------------------

/// One partition as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMeta {
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline: Vec<i32>,
    pub error_code: i16,
}

/// One topic as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMeta {
    pub name: String,
    pub id: String,
    pub internal: bool,
    pub error_code: i16,
    pub partitions: Vec<PartitionMeta>,
}

/// A Metadata response, in the shape the tools use.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    /// Broker id → (host:port, rack).
    pub brokers: BTreeMap<i32, (String, Option<String>)>,
    pub controller: i32,
    pub cluster_id: Option<String>,
    pub topics: BTreeMap<String, TopicMeta>,
}

impl Metadata {
    /// The leader of a partition (None: unknown or no leader).
    pub fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        self.topics
            .get(topic)?
            .partitions
            .iter()
            .find(|p| p.partition == partition)
            .map(|p| p.leader)
            .filter(|l| *l >= 0)
    }

    pub fn addr(&self, node: i32) -> Option<&str> {
        self.brokers.get(&node).map(|(a, _)| a.as_str())
    }

    /// `Err(UNKNOWN_TOPIC_OR_PARTITION ...)` when `topic` is missing or errored.
    pub fn topic(&self, topic: &str) -> anyhow::Result<&TopicMeta> {
        let code = self.topics.get(topic).map_or(3, |t| t.error_code);
        let what = if code == 3 {
            format!("topic \"{topic}\" does not exist")
        } else {
            format!("topic \"{topic}\"")
        };
        check(code, || (what, topic.to_string()), None)?;
        self.topics
            .get(topic)
            .ok_or_else(|| anyhow!("topic \"{topic}\" is not in the metadata"))
    }
}

/// Connections to the brokers of one cluster.
pub struct Cluster {
    /// Bootstrap addresses, tried in order.
    pub bootstrap: Vec<String>,
    client_id: &'static str,
    conns: BTreeMap<String, Conn>,
    /// The last metadata seen.
    pub meta: Metadata,
}

impl Cluster {
    /// Connect to the first reachable of the comma-separated `bootstrap`
    /// addresses.
    pub fn connect(bootstrap: &str, client_id: &'static str) -> anyhow::Result<Cluster> {
        let addrs: Vec<String> = bootstrap
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if addrs.is_empty() {
            bail!("no bootstrap address given (--bootstrap HOST:PORT or RINGLOG_BOOTSTRAP)");
        }
        let mut cluster = Cluster {
            bootstrap: addrs,
            client_id,
            conns: BTreeMap::new(),
            meta: Metadata::default(),
        };
        cluster.any()?;
        Ok(cluster)
    }

    /// A connection to `addr`, opened on first use.
    pub fn conn(&mut self, addr: &str) -> anyhow::Result<&mut Conn> {
        if !self.conns.contains_key(addr) {
            let c = Conn::connect(addr, self.client_id)?;
            self.conns.insert(addr.to_string(), c);
        }
        self.conns
            .get_mut(addr)
            .ok_or_else(|| anyhow!("no connection to {addr}"))
    }

    /// Forget a connection (after an I/O error).
    pub fn drop_conn(&mut self, addr: &str) {
        self.conns.remove(addr);
    }

    /// Some broker: an open connection, else the first bootstrap address
    /// that answers.
    pub fn any(&mut self) -> anyhow::Result<&mut Conn> {
        let addr = match self.conns.keys().next() {
            Some(a) => a.clone(),
            None => {
                let mut last = None;
                let mut found = None;
                for a in self.bootstrap.clone() {
                    match Conn::connect(&a, self.client_id) {
                        Ok(c) => {
                            self.conns.insert(a.clone(), c);
                            found = Some(a);
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                match (found, last) {
                    (Some(a), _) => a,
                    (None, Some(e)) => return Err(e.context("no bootstrap broker is reachable")),
                    (None, None) => bail!("no bootstrap address"),
                }
            }
        };
        self.conn(&addr)
    }

    /// A connection to broker `node` (from the last metadata).
    pub fn node(&mut self, node: i32) -> anyhow::Result<&mut Conn> {
        if self.meta.brokers.is_empty() {
            self.metadata(Some(&[]))?;
        }
        let addr = self
            .meta
            .addr(node)
            .map(str::to_string)
            .ok_or_else(|| anyhow!("broker {node} is not in the cluster's metadata"))?;
        self.conn(&addr)
    }

    /// The controller (or any broker when there is none).
    pub fn controller(&mut self) -> anyhow::Result<&mut Conn> {
        if self.meta.brokers.is_empty() {
            self.metadata(Some(&[]))?;
        }
        let id = self.meta.controller;
        if self.meta.brokers.contains_key(&id) {
            self.node(id)
        } else {
            self.any()
        }
    }

    /// Metadata for `topics` (None: every topic), remembered in `self.meta`.
    pub fn metadata(&mut self, topics: Option<&[String]>) -> anyhow::Result<&Metadata> {
        let c = self.any()?;
        let v = c.version(ApiKey::Metadata, (1, 12))?;
        let req = MetadataRequest::default()
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|t| MetadataRequestTopic::default().with_name(Some(TopicName(sb(t)))))
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        let resp: MetadataResponse = c.call(ApiKey::Metadata, v, &req)?;
        let mut meta = Metadata {
            brokers: resp
                .brokers
                .iter()
                .map(|b| {
                    (
                        b.node_id.0,
                        (
                            format!("{}:{}", b.host.as_str(), b.port),
                            b.rack.as_ref().map(|r| r.to_string()),
                        ),
                    )
                })
                .collect(),
            controller: resp.controller_id.0,
            cluster_id: resp.cluster_id.as_ref().map(|c| c.to_string()),
            topics: BTreeMap::new(),
        };
        for t in &resp.topics {
            let Some(name) = t.name.as_ref().map(|n| n.0.to_string()) else {
                continue;
            };
            let mut partitions: Vec<PartitionMeta> = t
                .partitions
                .iter()
                .map(|p| PartitionMeta {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    offline: p.offline_replicas.iter().map(|b| b.0).collect(),
                    error_code: p.error_code,
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            meta.topics.insert(
                name.clone(),
                TopicMeta {
                    name,
                    id: t.topic_id.to_string(),
                    internal: t.is_internal,
                    error_code: t.error_code,
                    partitions,
                },
            );
        }
        self.meta = meta;
        Ok(&self.meta)
    }

    /// The address of the leader of `topic`/`partition`, refreshing metadata
    /// when it is not known.
    pub fn leader_addr(&mut self, topic: &str, partition: i32) -> anyhow::Result<String> {
        if self.meta.leader(topic, partition).is_none() {
            self.metadata(Some(&[topic.to_string()]))?;
        }
        let t = self.meta.topic(topic)?;
        let Some(p) = t.partitions.iter().find(|p| p.partition == partition) else {
            return Err(
                KafkaError::new(3, format!("topic \"{topic}\" has no partition {partition}"))
                    .hint(format!("it has {} partitions", t.partitions.len()))
                    .into(),
            );
        };
        if p.leader < 0 {
            return Err(KafkaError::new(5, format!("partition {topic}/{partition} has no leader")).into());
        }
        let leader = p.leader;
        self.meta
            .addr(leader)
            .map(str::to_string)
            .ok_or_else(|| anyhow!("the leader {leader} of {topic}/{partition} is not in the broker list"))
    }

    /// The address of the coordinator of `group` (FindCoordinator), retrying
    /// while it loads.
    pub fn coordinator(&mut self, group: &str) -> anyhow::Result<String> {
        self.retry(|cl| {
            let c = cl.any()?;
            let v = c.version(ApiKey::FindCoordinator, (0, 6))?;
            let req = if v >= 4 {
                FindCoordinatorRequest::default()
                    .with_key_type(0)
                    .with_coordinator_keys(vec![sb(group)])
            } else {
                FindCoordinatorRequest::default().with_key(sb(group)).with_key_type(0)
            };
            let resp: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, v, &req)?;
            let (code, msg, host, port) = if v >= 4 {
                let co = resp
                    .coordinators
                    .first()
                    .ok_or_else(|| anyhow!("empty FindCoordinator response"))?;
                (
                    co.error_code,
                    co.error_message.as_ref().map(|m| m.to_string()),
                    co.host.to_string(),
                    co.port,
                )
            } else {
                (
                    resp.error_code,
                    resp.error_message.as_ref().map(|m| m.to_string()),
                    resp.host.to_string(),
                    resp.port,
                )
            };
            check(
                code,
                || {
                    (
                        format!("cannot find the coordinator of group \"{group}\""),
                        group.to_string(),
                    )
                },
                msg.as_deref(),
            )?;
            Ok(format!("{host}:{port}"))
        })
    }

    /// Run `f`, retrying (with a metadata refresh and a backoff) while it
    /// fails with a retriable Kafka error or a lost connection.
    pub fn retry<T>(&mut self, mut f: impl FnMut(&mut Cluster) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let mut pause = RETRY_BACKOFF;
        let mut attempt = 0;
        loop {
            match f(self) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    attempt += 1;
                    let retriable = match kafka_error(&e) {
                        Some(k) => k.is_retriable() && k.code != 3,
                        // A connection problem: reconnect.
                        None => e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some()),
                    };
                    if !retriable || attempt >= RETRIES {
                        return Err(e);
                    }
                    tracing::debug!("retrying after {e:#}");
                    if kafka_error(&e).is_none() {
                        self.conns.clear();
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(1));
                    // Leaders and coordinators may have moved.
                    let _ = self.metadata(Some(&[]));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_and_messages() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(36), "TOPIC_ALREADY_EXISTS");
        assert_eq!(error_name(40), "INVALID_CONFIG");
        assert_eq!(error_name(9999), "UNKNOWN_ERROR_CODE_9999");
        let e = KafkaError::new(3, "topic \"x\" does not exist").hint("create it with ringlog topic create x");
        assert_eq!(
            e.to_string(),
            "UNKNOWN_TOPIC_OR_PARTITION (3): topic \"x\" does not exist — create it with ringlog topic create x"
        );
        let e = check(3, || ("topic \"x\" does not exist".into(), "x".into()), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "UNKNOWN_TOPIC_OR_PARTITION (3): topic \"x\" does not exist — create it with ringlog topic create x"
        );
        assert_eq!(kafka_error(&e).map(|k| k.code), Some(3));
        let e = KafkaError::new(40, "bad config").message(Some("Unknown config foo"));
        assert!(e
            .to_string()
            .starts_with("INVALID_CONFIG (40): bad config (broker: Unknown config foo)"));
        assert!(check(0, || (String::new(), String::new()), None).is_ok());
    }

    #[test]
    fn retriable_codes() {
        for code in [5, 6, 14, 15, 16, 7] {
            assert!(is_retriable(code), "{code}");
        }
        for code in [1, 10, 36, 40, 42] {
            assert!(!is_retriable(code), "{code}");
        }
    }

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        let broker: BTreeMap<i16, (i16, i16)> = [(3, (0, 12)), (0, (3, 9))].into_iter().collect();
        assert_eq!(negotiate(&broker, ApiKey::Metadata, (1, 12)).unwrap(), 12);
        assert_eq!(negotiate(&broker, ApiKey::Metadata, (1, 9)).unwrap(), 9);
        assert_eq!(negotiate(&broker, ApiKey::Produce, (3, 12)).unwrap(), 9);
        let e = negotiate(&broker, ApiKey::Fetch, (4, 12)).unwrap_err();
        assert!(e.to_string().contains("does not implement Fetch"), "{e}");
        let e = negotiate(&broker, ApiKey::Produce, (10, 12)).unwrap_err();
        assert!(e.to_string().contains("v3-v9"), "{e}");
    }
}
