//! One seed of the simulation: a broker, a workload and faults drawn from
//! the seed, and the model's invariants checked while it runs and at the end.
//!
//! [`run_seed`] builds a [`World`], boots the broker on node 1, creates the
//! topics, starts clients on nodes 10+ (producers with acks 0/1/all, some
//! idempotent; tailing consumers with long polls; a group member committing
//! offsets; hostile clients), and a chaos task on node 0 that crashes,
//! power-fails, restarts the broker, fills the disk and lets long idle
//! stretches pass. Once the faults are over, every client must make
//! progress again (liveness); then the whole log is read back and checked
//! against [`Model`], and the broker must stop cleanly.

use crate::io::rand::HashMap;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use super::broker::{broker_addr, BrokerSettings, Exit, SimBroker};
use super::client::{CallError, Client};
use super::model::{rec_id, CommitModel, Model, Tp};
use crate::io::file::IoMode;
use crate::io::sim::{world, SimConfig, World};
use crate::io::time::sleep;
use crate::protocol::error as ec;
use crate::record::{self, BatchIter, BatchOptions, Compression, Record};

/// Fault classes a run may draw from.
#[derive(Clone, Copy, Debug)]
pub struct FaultSet {
    /// kill -9 of the broker process, then a restart.
    pub crash: bool,
    /// Power failure (unsynced writes lost or torn), then a restart.
    pub power_loss: bool,
    /// SIGTERM, which must stop the broker cleanly, then a restart.
    pub clean_restart: bool,
    /// The disk fills up (ENOSPC), then space is freed.
    pub enospc: bool,
    /// Long idle stretches (hours, days of virtual time).
    pub idle: bool,
    /// Hostile clients (slow readers and writers, big announced frames,
    /// garbage).
    pub hostile: bool,
    /// EIO on reads, writes or syncs for a while, then a restart (a disk
    /// error takes partitions offline until the process restarts).
    pub eio: bool,
}

impl FaultSet {
    /// Everything CI runs.
    pub fn all() -> Self {
        FaultSet {
            crash: true,
            power_loss: true,
            clean_restart: true,
            enospc: true,
            idle: true,
            hostile: true,
            eio: true,
        }
    }

    pub fn none() -> Self {
        FaultSet {
            crash: false,
            power_loss: false,
            clean_restart: false,
            enospc: false,
            idle: false,
            hostile: false,
            eio: false,
        }
    }
}

/// How a seed is run.
#[derive(Clone, Debug)]
pub struct Options {
    pub faults: FaultSet,
    /// Polls after which the run counts as a livelock.
    pub max_steps: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            faults: FaultSet::all(),
            max_steps: 30_000_000,
        }
    }
}

/// What a seed did (for the report).
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub virtual_time: Duration,
    pub steps: u64,
    pub acked_records: u64,
    pub fetched_records: u64,
    pub broker_starts: u32,
    pub faults: Vec<String>,
}

/// The replay command of a seed.
pub fn replay_command(seed: u64) -> String {
    format!("RINGLOG_SIM_SEED={seed} cargo test --release --test sim -- --nocapture seeds")
}

// ---- the plan a seed draws ------------------------------------------------

/// How a topic's log is managed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TopicKind {
    /// Nothing deletes (`retention.ms`/`retention.bytes` -1).
    Plain,
    /// `cleanup.policy=compact`: keyed records and tombstones, the cleaner.
    Compact,
    /// `cleanup.policy=compact,delete`: compaction and retention.
    CompactDelete,
    /// `cleanup.policy=delete` with small `retention.bytes`/`retention.ms`.
    Retention,
}

impl TopicKind {
    /// Records carry keys from a small key space, some are tombstones.
    fn keyed(self) -> bool {
        matches!(self, TopicKind::Compact | TopicKind::CompactDelete)
    }

    /// The log start moves (retention, DeleteRecords).
    fn deletes(self) -> bool {
        matches!(self, TopicKind::CompactDelete | TopicKind::Retention)
    }
}

#[derive(Clone, Debug)]
struct TopicPlan {
    name: String,
    partitions: i32,
    kind: TopicKind,
    /// Keys of a keyed topic: `k0` … `k{key_space - 1}`.
    key_space: u64,
    configs: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
struct ProducerPlan {
    acks: i16,
    idempotent: bool,
    compression: Compression,
    max_records: u64,
    max_value: u64,
    ops: u64,
    pause_ms: u64,
}

#[derive(Clone, Debug)]
struct ConsumerPlan {
    tp: Tp,
    min_bytes: i32,
    max_wait_ms: i32,
    max_bytes: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Crash,
    PowerLoss,
    CleanRestart,
    DiskFull,
    Idle,
    Eio,
}

#[derive(Clone, Debug)]
struct Plan {
    broker: BrokerSettings,
    topics: Vec<TopicPlan>,
    producers: Vec<ProducerPlan>,
    consumers: Vec<ConsumerPlan>,
    group: bool,
    hostile: usize,
    faults: Vec<(Duration, Fault)>,
    /// The fault at the end, before the final check.
    last: Option<Fault>,
    /// Lengths of idle stretches (seconds).
    idle_secs: Vec<u64>,
}

fn pick<T: Copy>(w: &World, xs: &[T]) -> T {
    xs[w.rand_range(0..xs.len() as u64) as usize]
}

fn draw_plan(w: &World, f: FaultSet) -> Plan {
    let shards = w.rand_range(1..4) as usize;
    let io_mode = if w.chance(0.5) {
        IoMode::Direct
    } else {
        IoMode::Buffered
    };
    let segment_bytes = pick(w, &[16u64 << 10, 64 << 10, 256 << 10]);
    let mut properties = vec![
        (
            "ringlog.storage.min.free.bytes".to_string(),
            pick(w, &["0", "-1", "65536"]).to_string(),
        ),
        (
            "ringlog.storage.space.check.interval.ms".to_string(),
            pick(w, &[1000u64, 10_000]).to_string(),
        ),
    ];
    if w.chance(0.3) {
        properties.push(("ringlog.cache.bytes.per.shard".to_string(), "65536".to_string()));
    }
    let mut broker = BrokerSettings {
        shards,
        io_mode,
        segment_bytes,
        properties,
    };
    let topics = (0..w.rand_range(1..4))
        .map(|i| TopicPlan {
            name: format!("t{i}"),
            partitions: w.rand_range(1..4) as i32,
            kind: TopicKind::Plain,
            key_space: 0,
            // Nothing deletes (invariant 3): idle stretches add up to more
            // than the default retention.ms of 7 days.
            configs: vec![
                ("retention.ms".to_string(), "-1".to_string()),
                ("retention.bytes".to_string(), "-1".to_string()),
            ],
        })
        .collect::<Vec<_>>();
    let all_tps: Vec<Tp> = topics
        .iter()
        .enumerate()
        .flat_map(|(i, t)| (0..t.partitions).map(move |p| (i, p)))
        .collect();
    let producers = (0..w.rand_range(1..5))
        .map(|_| {
            let idempotent = w.chance(0.35);
            ProducerPlan {
                acks: if idempotent { -1 } else { pick(w, &[0i16, 1, -1]) },
                idempotent,
                compression: pick(
                    w,
                    &[
                        Compression::None,
                        Compression::None,
                        Compression::Gzip,
                        Compression::Snappy,
                        Compression::Lz4,
                        Compression::Zstd,
                    ],
                ),
                max_records: pick(w, &[1u64, 5, 20]),
                max_value: pick(w, &[50u64, 500, 3000]),
                ops: w.rand_range(10..60),
                pause_ms: pick(w, &[0u64, 10, 200, 2000]),
            }
        })
        .collect();
    let consumers = (0..w.rand_range(0..4))
        .map(|_| ConsumerPlan {
            tp: pick(w, &all_tps),
            min_bytes: pick(w, &[1i32, 1, 1000, 1 << 20]),
            max_wait_ms: pick(w, &[0i32, 100, 500, 5000, 3_600_000]),
            max_bytes: pick(w, &[1024i32, 64 << 10, 1 << 20]),
        })
        .collect();
    let mut kinds = Vec::new();
    if f.crash {
        kinds.push(Fault::Crash);
    }
    if f.power_loss {
        kinds.push(Fault::PowerLoss);
    }
    if f.clean_restart {
        kinds.push(Fault::CleanRestart);
    }
    if f.enospc {
        kinds.push(Fault::DiskFull);
    }
    if f.idle {
        kinds.push(Fault::Idle);
    }
    if f.eio {
        kinds.push(Fault::Eio);
    }
    let mut faults = Vec::new();
    if !kinds.is_empty() {
        for _ in 0..w.rand_range(0..6) {
            let gap = Duration::from_millis(pick(w, &[10u64, 300, 2000, 10_000]));
            faults.push((gap, pick(w, &kinds)));
        }
    }
    let last = if kinds.is_empty() || w.chance(0.3) {
        None
    } else {
        let restarts: Vec<Fault> = kinds
            .iter()
            .copied()
            .filter(|k| matches!(k, Fault::Crash | Fault::PowerLoss | Fault::CleanRestart))
            .collect();
        (!restarts.is_empty()).then(|| pick(w, &restarts))
    };
    let group = w.chance(0.6);
    let hostile = if f.hostile { w.rand_range(0..3) as usize } else { 0 };
    // Log management, drawn after everything else so that the draws above
    // (the plan of a seed before compaction and retention were simulated)
    // stay as they were.
    let mut topics = topics;
    draw_log_management(w, &mut topics, &mut broker);
    // The cleaner and retention wake every few hundred milliseconds in
    // seeds with managed logs: idle stretches of days would cost millions
    // of polls, and an hour outlasts their lags and retention times.
    let idle_secs = if topics.iter().any(|t| t.kind != TopicKind::Plain) {
        vec![60, 600, 3600]
    } else {
        vec![600, 3 * 3600, 86_400, 3 * 86_400]
    };
    Plan {
        broker,
        topics,
        producers,
        consumers,
        group,
        hostile,
        faults,
        last,
        idle_secs,
    }
}

/// Some topics (a quarter) become compacted, compacted-and-deleted or
/// retention topics, with small segments and short lags and retention in
/// virtual time, so that the cleaner, retention and DeleteRecords run many
/// times per seed, across the seed's crashes and power losses.
fn draw_log_management(w: &World, topics: &mut [TopicPlan], broker: &mut BrokerSettings) {
    let s = |v: &str| v.to_string();
    for t in topics.iter_mut() {
        if !w.chance(0.25) {
            continue;
        }
        t.kind = pick(w, &[TopicKind::Compact, TopicKind::CompactDelete, TopicKind::Retention]);
        t.key_space = pick(w, &[3u64, 10, 50]);
        let segment = pick(w, &["1024", "4096", "16384"]);
        let roll = pick(w, &["2000", "10000", "604800000"]);
        let mut c = vec![(s("segment.bytes"), s(segment)), (s("segment.ms"), s(roll))];
        if t.kind.keyed() {
            let policy = if t.kind == TopicKind::Compact {
                "compact"
            } else {
                "compact,delete"
            };
            c.push((s("cleanup.policy"), s(policy)));
            c.push((s("min.compaction.lag.ms"), s(pick(w, &["0", "0", "1000", "10000"]))));
            c.push((s("delete.retention.ms"), s(pick(w, &["0", "1000", "60000"]))));
            c.push((s("min.cleanable.dirty.ratio"), s(pick(w, &["0.01", "0.2", "0.5"]))));
        }
        if t.kind.deletes() {
            c.push((s("retention.ms"), s(pick(w, &["5000", "120000", "3600000", "-1"]))));
            c.push((s("retention.bytes"), s(pick(w, &["-1", "16384", "131072"]))));
        } else {
            c.push((s("retention.ms"), s("-1")));
            c.push((s("retention.bytes"), s("-1")));
        }
        if t.kind == TopicKind::Retention {
            c.push((s("cleanup.policy"), s("delete")));
        }
        t.configs = c;
    }
    if topics.iter().any(|t| t.kind.keyed()) {
        let backoff = pick(w, &["200", "1000", "5000"]);
        broker.properties.push((s("log.cleaner.backoff.ms"), s(backoff)));
    }
    if topics.iter().any(|t| t.kind.deletes()) {
        let interval = pick(w, &["1000", "10000", "60000"]);
        broker
            .properties
            .push((s("log.retention.check.interval.ms"), s(interval)));
    }
}

// ---- the shared state of a run ---------------------------------------------

struct Shared {
    plan: Plan,
    broker: Rc<SimBroker>,
    model: RefCell<Model>,
    /// Clients sleep until this virtual time (an idle stretch).
    idle_until: Cell<Duration>,
    /// The faults are over: clients finish once they made progress.
    calm: Cell<bool>,
    /// Clients still running.
    running: Cell<usize>,
    /// Successful operations per client since the faults ended.
    progress: RefCell<HashMap<String, u64>>,
    faults_done: RefCell<Vec<String>>,
}

impl Shared {
    fn topic(&self, tp: Tp) -> &str {
        &self.plan.topics[tp.0].name
    }

    fn violation(&self, what: String) {
        self.model.borrow_mut().violation(what);
    }

    fn failed(&self) -> bool {
        !self.model.borrow().violations.is_empty()
    }

    /// Wait out an idle stretch.
    async fn wait_idle(&self) {
        let until = self.idle_until.get();
        let now = world().elapsed();
        if until > now {
            sleep(until - now).await;
        }
    }

    fn progressed(&self, who: &str) {
        if self.calm.get() {
            *self.progress.borrow_mut().entry(who.to_string()).or_insert(0) += 1;
        }
    }

    /// Whether `who` may stop: the faults are over and it made progress.
    fn done(&self, who: &str) -> bool {
        self.failed() || (self.calm.get() && self.progress.borrow().get(who).copied().unwrap_or(0) >= 3)
    }
}

/// A connection that reconnects, and checks what it is told about high
/// watermarks: never lower than what any client was told before it
/// connected, never going back on the connection.
struct Conn {
    client: Option<Client>,
    floor: HashMap<Tp, i64>,
    last: HashMap<Tp, i64>,
}

impl Conn {
    fn new() -> Self {
        Conn {
            client: None,
            floor: HashMap::default(),
            last: HashMap::default(),
        }
    }

    async fn get(&mut self, s: &Shared) -> Option<&mut Client> {
        if !self.client.as_ref().is_some_and(|c| c.is_open()) {
            self.client = None;
            match Client::connect(broker_addr()).await {
                Ok(c) => {
                    self.floor = s.model.borrow().hw_floor();
                    self.last.clear();
                    self.client = Some(c);
                }
                Err(_) => {
                    backoff().await;
                    return None;
                }
            }
        }
        self.client.as_mut()
    }

    fn hw(&mut self, s: &Shared, tp: Tp, hw: i64, what: &str) {
        let floor = self.floor.get(&tp).copied().unwrap_or(0);
        let last = self.last.get(&tp).copied().unwrap_or(0);
        if hw < floor.max(last) {
            s.violation(format!(
                "{tp:?}: {what} reported high watermark {hw}, but clients were told {} before",
                floor.max(last)
            ));
        }
        self.last.insert(tp, hw.max(last));
        s.model.borrow_mut().saw_hw(tp, hw);
    }

    /// A call failed: protocol errors are bugs; the connection is dropped.
    fn failed(&mut self, s: &Shared, e: &CallError, what: &str) {
        if let CallError::Protocol(p) = e {
            s.violation(format!("{what}: bad response: {p}"));
        }
        self.client = None;
    }
}

async fn backoff() {
    let ms = world().rand_range(20..500);
    sleep(Duration::from_millis(ms)).await;
}

// ---- records ----------------------------------------------------------------

fn make_values(w: &World, prefix: &str, n: u64, max_value: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let pad = w.rand_range(0..max_value) as usize;
            let mut v = format!("{prefix}.{i}|").into_bytes();
            v.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, pad));
            v
        })
        .collect()
}

/// The key of each record of a keyed topic's batch, and whether it is a
/// tombstone (10 %).
fn make_keys(w: &World, n: usize, key_space: u64) -> Vec<(String, bool)> {
    (0..n)
        .map(|_| (format!("k{}", w.rand_range(0..key_space.max(1))), w.chance(0.1)))
        .collect()
}

/// A record header (key, value).
type Header<'a> = (&'a str, Option<&'a [u8]>);

/// A batch of `values`. On a keyed topic (`keys`), each record has its key,
/// tombstones no value, and every record carries its identity in an `id`
/// header (a tombstone has no value to carry it).
fn make_batch(
    values: &[Vec<u8>],
    keys: Option<&[(String, bool)]>,
    compression: Compression,
    producer: Option<(i64, i16, i32)>,
    now: i64,
) -> Bytes {
    let ids: Vec<String> = values.iter().map(|v| rec_id(v)).collect();
    let headers: Vec<[Header<'_>; 1]> = ids.iter().map(|id| [("id", Some(id.as_bytes()))]).collect();
    let records: Vec<Record<'_>> = values
        .iter()
        .enumerate()
        .map(|(i, v)| match keys.and_then(|k| k.get(i)) {
            Some((key, tombstone)) => Record {
                key: Some(key.as_bytes()),
                value: (!tombstone).then_some(v.as_slice()),
                headers: &headers[i],
                timestamp_delta: i as i64,
            },
            None => Record {
                key: Some(b"key"),
                value: Some(v),
                headers: &[],
                timestamp_delta: i as i64,
            },
        })
        .collect();
    let mut opts = BatchOptions::default();
    if let Some((id, epoch, seq)) = producer {
        opts.producer_id = id;
        opts.producer_epoch = epoch;
        opts.base_sequence = seq;
    }
    Bytes::from(record::build_batch_with(0, now, compression, &opts, &records))
}

/// A record read back.
struct Fetched {
    offset: i64,
    id: String,
    /// The key, on keyed topics (whose records carry an `id` header).
    key: Option<String>,
}

/// The records of a fetch response's record set, and the offset after its
/// last complete batch (-1 without one; a compacted batch may have lost
/// records, even all of them). Only the last batch may be cut short
/// (KIP-74); a complete but invalid batch is a violation.
fn parse_records(data: &Bytes) -> Result<(Vec<Fetched>, i64), String> {
    let mut out = Vec::new();
    let mut next = -1;
    let mut it = BatchIter::new(data, true);
    for (at, h) in it.by_ref() {
        let b = &data[at..at + h.total_size()];
        let recs = record::decode_records(b).map_err(|e| format!("undecodable batch at {}: {e}", h.base_offset))?;
        next = h.base_offset + i64::from(h.last_offset_delta) + 1;
        for r in recs {
            let header = r.headers.iter().find(|(k, _)| k == "id").and_then(|(_, v)| v.as_ref());
            let (id, key) = match header {
                Some(id) => (
                    String::from_utf8_lossy(id).into_owned(),
                    Some(String::from_utf8_lossy(&r.key.unwrap_or_default()).into_owned()),
                ),
                None => (rec_id(&r.value.unwrap_or_default()), None),
            };
            out.push(Fetched {
                offset: h.base_offset + i64::from(r.offset_delta),
                id,
                key,
            });
        }
    }
    let rest = &data[it.valid_len()..];
    if let Some(h) = record::BatchHeader::parse(rest) {
        if h.total_size() <= rest.len() {
            return Err(format!(
                "a complete batch at offset {} fails its checks (CRC or structure)",
                h.base_offset
            ));
        }
    }
    Ok((out, next))
}

// ---- clients ----------------------------------------------------------------

async fn producer(s: Rc<Shared>, idx: usize, p: ProducerPlan) {
    let w = world();
    let who = format!("producer{idx}");
    let mut conn = Conn::new();
    let mut pid: Option<(i64, i16)> = None;
    let mut seqs: HashMap<Tp, i32> = HashMap::default();
    let tps: Vec<Tp> = s
        .plan
        .topics
        .iter()
        .enumerate()
        .flat_map(|(i, t)| (0..t.partitions).map(move |p| (i, p)))
        .collect();
    let mut op = 0u64;
    loop {
        if s.failed() {
            break;
        }
        if op >= p.ops {
            // The planned batches are out: go on slowly until the faults are
            // over and progress was seen.
            if s.done(&who) {
                break;
            }
            sleep(Duration::from_millis(500)).await;
        }
        s.wait_idle().await;
        op += 1;
        let tp = pick(&w, &tps);
        let kind = s.plan.topics[tp.0].kind;
        if kind.deletes() && w.chance(0.1) {
            delete_records(&s, &mut conn, tp, &who).await;
            continue;
        }
        let n = w.rand_range(1..p.max_records + 1);
        let values = make_values(
            &w,
            &format!("{}p{idx}.{op}", if p.idempotent { "I" } else { "" }),
            n,
            p.max_value,
        );
        let keys = kind
            .keyed()
            .then(|| make_keys(&w, values.len(), s.plan.topics[tp.0].key_space));
        let mut sends = 0u32;
        if p.idempotent {
            let mut m = s.model.borrow_mut();
            let part = m.part(tp);
            for v in &values {
                part.idempotent.insert(rec_id(v));
            }
        }
        // Send, retrying (an idempotent producer with the same sequence).
        let mut acked = false;
        let first_attempt_ms = crate::io::time::now_ms();
        for attempt in 0..20 {
            if attempt > 0 {
                backoff().await;
                s.wait_idle().await;
                // A real client gives a batch up after delivery.timeout.ms
                // (Kafka's default: 2 minutes); retrying it days later
                // (after an idle spell) could outlive the producer's state
                // on the broker (producer.id.expiration.ms), and then a
                // duplicate is what Kafka's semantics allow.
                if crate::io::time::now_ms() - first_attempt_ms > DELIVERY_TIMEOUT_MS {
                    break;
                }
            }
            if s.failed() {
                return;
            }
            let Some(c) = conn.get(&s).await else { continue };
            if p.idempotent && pid.is_none() {
                match c.init_producer_id().await {
                    Ok(r) if r.error_code == ec::NONE => {
                        pid = Some((r.producer_id.0, r.producer_epoch));
                        seqs.clear();
                    }
                    Ok(_) => continue,
                    Err(e) => {
                        conn.failed(&s, &e, "InitProducerId");
                        continue;
                    }
                }
            }
            let producer = match (p.idempotent, pid) {
                (true, Some((id, epoch))) => Some((id, epoch, *seqs.get(&tp).unwrap_or(&0))),
                _ => None,
            };
            let batch = make_batch(
                &values,
                keys.as_deref(),
                p.compression,
                producer,
                crate::io::time::now_ms(),
            );
            sends += 1;
            let Some(c) = conn.client.as_mut() else { continue };
            let topic = s.topic(tp).to_string();
            match c.produce(&topic, tp.1, p.acks, 30_000, batch).await {
                Ok(None) => {
                    // acks=0: nothing is known.
                    s.progressed(&who);
                    acked = true;
                    break;
                }
                Ok(Some(r)) => {
                    let part = r.responses.first().and_then(|t| t.partition_responses.first());
                    let Some(part) = part else {
                        s.violation(format!("{who}: produce response without the partition"));
                        return;
                    };
                    if part.error_code == ec::NONE {
                        let base = part.base_offset;
                        if base < 0 {
                            s.violation(format!(
                                "{who}: produce to {tp:?} acknowledged without an offset ({base})"
                            ));
                            return;
                        }
                        let mut m = s.model.borrow_mut();
                        for (i, v) in values.iter().enumerate() {
                            m.observe(tp, base + i as i64, &rec_id(v), "acknowledged");
                            if let Some((key, tombstone)) = keys.as_ref().and_then(|k| k.get(i)) {
                                m.part(tp).acked_key(key, base + i as i64, *tombstone);
                            }
                        }
                        m.saw_hw(tp, base + values.len() as i64);
                        m.acked_records += values.len() as u64;
                        drop(m);
                        if producer.is_some() {
                            let sq = seqs.entry(tp).or_insert(0);
                            *sq = sq.wrapping_add(values.len() as i32);
                        }
                        s.progressed(&who);
                        acked = true;
                        break;
                    }
                    *s.model.borrow_mut().produce_errors.entry(part.error_code).or_insert(0) += 1;
                    if matches!(
                        part.error_code,
                        ec::OUT_OF_ORDER_SEQUENCE_NUMBER | ec::UNKNOWN_PRODUCER_ID | ec::INVALID_PRODUCER_EPOCH
                    ) {
                        // Start over with a new producer id; the batch's fate is unknown.
                        pid = None;
                        break;
                    }
                }
                Err(e) => conn.failed(&s, &e, "Produce"),
            }
        }
        if let Some(keys) = &keys {
            if !acked || sends > 1 || p.acks == 0 {
                // A tombstone whose outcome is unknown may be anywhere in
                // the log (an earlier attempt too), and may have removed
                // older values of its key.
                let mut m = s.model.borrow_mut();
                let part = m.part(tp);
                for (key, _) in keys.iter().filter(|(_, tombstone)| *tombstone) {
                    part.tombstone_unknown.insert(key.clone());
                }
            }
        }
        if !acked {
            // Its fate is unknown: an idempotent producer must not reuse its
            // sequence numbers (a duplicate would be answered with the lost
            // batch's offsets), so it starts over with a new producer id.
            tracing::debug!(who, op, "batch given up");
            pid = None;
        }
        if p.pause_ms > 0 {
            sleep(Duration::from_millis(w.rand_range(0..p.pause_ms))).await;
        }
    }
    s.running.set(s.running.get() - 1);
}

/// DeleteRecords of `tp` up to an offset between the log start and the high
/// watermark clients were told (so it must succeed): once acknowledged, the
/// log start is at least that offset, also after crashes and power loss.
async fn delete_records(s: &Shared, conn: &mut Conn, tp: Tp, who: &str) {
    let w = world();
    let (lo, hi) = {
        let mut m = s.model.borrow_mut();
        let p = m.part(tp);
        (p.log_start_floor, p.hw_max)
    };
    let floor = lo;
    let offset = if hi > lo {
        w.rand_range(lo as u64..hi as u64 + 1) as i64
    } else {
        hi
    };
    let topic = s.topic(tp).to_string();
    let Some(c) = conn.get(s).await else { return };
    let r = match c.delete_records(&topic, tp.1, offset).await {
        Ok(r) => r,
        Err(e) => {
            conn.failed(s, &e, "DeleteRecords");
            return;
        }
    };
    let Some(part) = r.topics.first().and_then(|t| t.partitions.first()) else {
        s.violation(format!("{who}: DeleteRecords response without the partition"));
        return;
    };
    match part.error_code {
        ec::NONE => {
            tracing::debug!(who, ?tp, offset, low_watermark = part.low_watermark, "records deleted");
            if part.low_watermark < offset {
                s.violation(format!(
                    "{who}: DeleteRecords of {tp:?} up to {offset} acknowledged with the low watermark {}",
                    part.low_watermark
                ));
                return;
            }
            s.model
                .borrow_mut()
                .saw_log_start(tp, part.low_watermark, floor, "DeleteRecords' low watermark");
        }
        ec::OFFSET_OUT_OF_RANGE => s.violation(format!(
            "{who}: DeleteRecords of {tp:?} up to {offset} refused (OFFSET_OUT_OF_RANGE), but clients were told the high watermark {hi}"
        )),
        // Unavailable, storage errors, timeouts: the outcome is unknown.
        _ => {}
    }
}

/// How long a producer retries a batch (Kafka's `delivery.timeout.ms`).
const DELIVERY_TIMEOUT_MS: i64 = 120_000;

async fn consumer(s: Rc<Shared>, idx: usize, p: ConsumerPlan) {
    let w = world();
    let who = format!("consumer{idx}");
    let mut conn = Conn::new();
    let tp = p.tp;
    let topic = s.topic(tp).to_string();
    let kind = s.plan.topics[tp.0].kind;
    let mut pos = 0i64;
    while !s.done(&who) {
        s.wait_idle().await;
        let (min_bytes, max_wait) = if s.calm.get() {
            (1, p.max_wait_ms.min(500))
        } else {
            (p.min_bytes, p.max_wait_ms)
        };
        let Some(c) = conn.get(&s).await else { continue };
        let floor = s.model.borrow_mut().log_start_floor(tp);
        let r = c.fetch(&topic, tp.1, pos, min_bytes, max_wait, p.max_bytes).await;
        let resp = match r {
            Ok(r) => r,
            Err(e) => {
                conn.failed(&s, &e, "Fetch");
                continue;
            }
        };
        let part = resp.responses.first().and_then(|t| t.partitions.first());
        let Some(part) = part else {
            s.violation(format!("{who}: fetch response without the partition"));
            break;
        };
        match part.error_code {
            ec::NONE => {}
            ec::OFFSET_OUT_OF_RANGE if kind.deletes() => {
                // Below the log start (retention, DeleteRecords): go on
                // from the earliest offset, as auto.offset.reset=earliest.
                let Some(c) = conn.get(&s).await else { continue };
                match list_earliest(&s, c, tp).await {
                    Ok(Some(start)) if start > pos => pos = start,
                    Ok(Some(start)) => {
                        s.violation(format!(
                            "{who}: fetch of {tp:?} at {pos} is out of range, but the log starts at {start}"
                        ));
                        break;
                    }
                    Ok(None) => backoff().await,
                    Err(e) => conn.failed(&s, &e, "ListOffsets"),
                }
                continue;
            }
            ec::OFFSET_OUT_OF_RANGE => {
                s.violation(format!(
                    "{who}: fetch of {tp:?} at {pos} is out of range, but offsets up to it were read before"
                ));
                break;
            }
            _ => {
                backoff().await;
                continue;
            }
        }
        let hw = part.high_watermark;
        conn.hw(&s, tp, hw, "Fetch");
        let how = format!(
            "Fetch at {pos}: high watermark {hw}, {} record bytes",
            part.records.as_ref().map_or(0, |r| r.len())
        );
        s.model
            .borrow_mut()
            .saw_log_start(tp, part.log_start_offset, floor, &how);
        let (recs, next) = match part.records.as_ref().map(parse_records).transpose() {
            Ok(r) => r.unwrap_or_default(),
            Err(e) => {
                s.violation(format!("{who}: fetch of {tp:?} at {pos}: {e}"));
                break;
            }
        };
        {
            let mut m = s.model.borrow_mut();
            for Fetched { offset: off, id, .. } in recs {
                if off < pos {
                    continue;
                }
                if off != pos && !(kind.keyed() && off > pos) {
                    m.violation(format!(
                        "{who}: {tp:?} read offset {off} where {pos} was expected (a gap)"
                    ));
                    break;
                }
                if off >= hw {
                    m.violation(format!(
                        "{who}: {tp:?} read offset {off} at or past the high watermark {hw}"
                    ));
                    break;
                }
                m.observe(tp, off, &id, "fetched");
                m.fetched_records += 1;
                pos = off + 1;
            }
            if kind.keyed() && next > pos && next <= hw {
                // The rest of the batch was compacted away.
                pos = next;
            }
        }
        s.progressed(&who);
        if max_wait == 0 {
            sleep(Duration::from_millis(w.rand_range(1..200))).await;
        }
    }
    s.running.set(s.running.get() - 1);
}

/// One group member: joins, takes every partition of topic 0, commits
/// offsets; rejoins whenever the group moved on (restarts, expiry).
async fn group_member(s: Rc<Shared>) {
    let w = world();
    let who = "group".to_string();
    let group = "g1";
    let mut conn = Conn::new();
    let t0 = s.plan.topics[0].clone();
    let tps: Vec<Tp> = (0..t0.partitions).map(|p| (0usize, p)).collect();
    let mut member: Option<(String, i32)> = None;
    let mut member_id = String::new();
    let mut next: i64 = 1;
    while !s.done(&who) {
        s.wait_idle().await;
        sleep(Duration::from_millis(w.rand_range(10..1000))).await;
        let Some(c) = conn.get(&s).await else { continue };
        let Some((mid, generation)) = member.clone() else {
            match c
                .join_group(group, &member_id, 30_000, std::slice::from_ref(&t0.name))
                .await
            {
                Ok(r) if r.error_code == ec::MEMBER_ID_REQUIRED => {
                    member_id = r.member_id.to_string();
                }
                Ok(r) if r.error_code == ec::NONE => {
                    member_id = r.member_id.to_string();
                    let assignment =
                        super::client::consumer_protocol_assignment(&[(t0.name.clone(), (0..t0.partitions).collect())]);
                    let assignments = if r.leader == r.member_id {
                        vec![(member_id.clone(), assignment)]
                    } else {
                        Vec::new()
                    };
                    match c.sync_group(group, r.generation_id, &member_id, assignments).await {
                        Ok(sr) if sr.error_code == ec::NONE => member = Some((member_id.clone(), r.generation_id)),
                        Ok(_) => {}
                        Err(e) => conn.failed(&s, &e, "SyncGroup"),
                    }
                }
                Ok(r) => {
                    if r.error_code == ec::UNKNOWN_MEMBER_ID {
                        member_id.clear();
                    }
                    backoff().await;
                }
                Err(e) => conn.failed(&s, &e, "JoinGroup"),
            }
            continue;
        };
        if w.chance(0.3) {
            match c.heartbeat(group, generation, &mid).await {
                Ok(r) if r.error_code == ec::NONE => s.progressed(&who),
                Ok(_) => member = None,
                Err(e) => conn.failed(&s, &e, "Heartbeat"),
            }
            continue;
        }
        let tp = pick(&w, &tps);
        next += w.rand_range(1..100) as i64;
        let offset = next;
        let r = c
            .offset_commit(group, generation, &mid, &[(t0.name.clone(), tp.1, offset)])
            .await;
        let mut m = s.model.borrow_mut();
        let cm = m.commits.entry(tp).or_default();
        match r {
            Ok(r) => {
                let code = r
                    .topics
                    .first()
                    .and_then(|t| t.partitions.first())
                    .map(|p| p.error_code)
                    .unwrap_or(ec::UNKNOWN_SERVER_ERROR);
                if code == ec::NONE {
                    // Unknown outcomes stay possible: a request on a broken
                    // connection may still be applied after this one.
                    cm.acked = Some(offset);
                    drop(m);
                    s.progressed(&who);
                } else if write_may_have_happened(code) {
                    // The append to __consumer_offsets failed (full disk,
                    // EIO, shutdown): its bytes may still be in the log, and
                    // the coordinator reloads its groups from the log, so
                    // the outcome is unknown, as a Kafka client must assume
                    // for a retriable commit error.
                    cm.maybe.push(offset);
                    drop(m);
                    member = None;
                } else {
                    // Refused before anything was written (generation,
                    // member): never stored.
                    drop(m);
                    member = None;
                }
            }
            Err(e) => {
                cm.maybe.push(offset);
                drop(m);
                conn.failed(&s, &e, "OffsetCommit");
            }
        }
    }
    s.running.set(s.running.get() - 1);
}

/// OffsetCommit errors that may follow a failed append to
/// `__consumer_offsets` (see `write_error` in src/shard/groups.rs): the
/// commit may or may not be in the log.
fn write_may_have_happened(code: i16) -> bool {
    matches!(
        code,
        ec::NOT_COORDINATOR
            | ec::COORDINATOR_NOT_AVAILABLE
            | ec::UNKNOWN_SERVER_ERROR
            | ec::INVALID_COMMIT_OFFSET_SIZE
            | ec::KAFKA_STORAGE_ERROR
            | ec::REQUEST_TIMED_OUT
    )
}

/// ListOffsets earliest of `tp` (None on a partition error), checked
/// against the log start clients were told before.
async fn list_earliest(s: &Shared, c: &mut Client, tp: Tp) -> Result<Option<i64>, CallError> {
    let floor = s.model.borrow_mut().log_start_floor(tp);
    let r = c.list_offset(s.topic(tp), tp.1, -2).await?;
    let Some(p) = r.topics.first().and_then(|t| t.partitions.first()) else {
        s.violation(format!("{tp:?}: ListOffsets response without the partition"));
        return Ok(None);
    };
    if p.error_code != ec::NONE {
        return Ok(None);
    }
    s.model
        .borrow_mut()
        .saw_log_start(tp, p.offset, floor, "ListOffsets earliest");
    Ok(Some(p.offset))
}

// ---- faults -------------------------------------------------------------------

/// Start the broker and wait until it serves.
async fn start(s: &Shared) -> Result<(), String> {
    s.broker.start();
    match s.broker.wait_ready(Duration::from_secs(600)).await {
        Ok(true) => Ok(()),
        Ok(false) => Err("the broker did not become ready within 10 minutes".to_string()),
        Err(e) => Err(format!("the broker did not start: {e}")),
    }
}

async fn stop_clean(s: &Shared) -> Result<(), String> {
    match s.broker.stop(Duration::from_secs(120)).await {
        Some(Exit::Clean) => Ok(()),
        Some(Exit::Failed(e)) => Err(format!("the broker did not stop cleanly: {e}")),
        None => Err("the broker did not stop within 120 s of SIGTERM (a shutdown hang)".to_string()),
    }
}

async fn inject(s: &Shared, f: Fault) -> Result<(), String> {
    let w = world();
    tracing::info!(fault = ?f, at = ?w.elapsed(), "simulation fault");
    s.faults_done.borrow_mut().push(format!("{f:?}@{:?}", w.elapsed()));
    match f {
        Fault::Crash => {
            s.broker.crash();
            sleep(Duration::from_millis(w.rand_range(0..2000))).await;
            start(s).await
        }
        Fault::PowerLoss => {
            s.broker.power_loss();
            sleep(Duration::from_millis(w.rand_range(0..2000))).await;
            start(s).await
        }
        Fault::CleanRestart => {
            stop_clean(s).await?;
            start(s).await
        }
        Fault::DiskFull => {
            let used = w.disk.used();
            let room = w.rand_range(0..(512 << 10));
            w.disk.configure(|c| c.capacity = used + room);
            sleep(Duration::from_millis(pick(&w, &[100u64, 2000, 30_000]))).await;
            w.disk.configure(|c| c.capacity = u64::MAX);
            Ok(())
        }
        Fault::Eio => {
            let p = pick(&w, &[0.001, 0.01, 0.1]);
            let kind = w.rand_range(0..3);
            w.disk.configure(|c| match kind {
                0 => c.eio_read = p,
                1 => c.eio_write = p,
                _ => c.eio_sync = p,
            });
            sleep(Duration::from_millis(pick(&w, &[100u64, 2000, 10_000]))).await;
            w.disk.configure(|c| {
                c.eio_read = 0.0;
                c.eio_write = 0.0;
                c.eio_sync = 0.0;
            });
            // Partitions that hit EIO stay offline (and a shard may have
            // stopped the broker) until the process restarts.
            s.broker.crash();
            sleep(Duration::from_millis(w.rand_range(0..2000))).await;
            start(s).await
        }
        Fault::Idle => {
            let d = Duration::from_secs(pick(&w, &s.plan.idle_secs));
            s.idle_until.set(w.elapsed() + d);
            sleep(d).await;
            Ok(())
        }
    }
}

// ---- the final check ------------------------------------------------------------

/// Read `tp` whole with a fresh connection and check it against the model.
async fn check_partition(s: &Shared, tp: Tp) -> Result<(), String> {
    let topic = s.topic(tp).to_string();
    let kind = s.plan.topics[tp.0].kind;
    let deadline = world().elapsed() + Duration::from_secs(300);
    let mut conn = Conn::new();
    let mut pos = 0i64;
    let mut hw = -1i64;
    let mut log_start = 0i64;
    let mut seen_idempotent: HashMap<String, i64> = HashMap::default();
    // Keyed topics: the offsets read, and per key the highest one.
    let mut read: std::collections::BTreeSet<i64> = Default::default();
    let mut key_max: HashMap<String, i64> = HashMap::default();
    while hw < 0 || pos < hw {
        if world().elapsed() > deadline {
            return Err(format!(
                "{tp:?}: could not read the log back within 5 minutes (at {pos})"
            ));
        }
        let Some(c) = conn.get(s).await else { continue };
        let floor = s.model.borrow_mut().log_start_floor(tp);
        let resp = match c.fetch(&topic, tp.1, pos, 1, 0, 1 << 20).await {
            Ok(r) => r,
            Err(e) => {
                conn.failed(s, &e, "Fetch");
                continue;
            }
        };
        let Some(part) = resp.responses.first().and_then(|t| t.partitions.first()) else {
            return Err(format!("{tp:?}: fetch response without the partition"));
        };
        if part.error_code != ec::NONE {
            if part.error_code == ec::OFFSET_OUT_OF_RANGE && kind.deletes() {
                match list_earliest(s, c, tp).await {
                    Ok(Some(start)) if start > pos => {
                        pos = start;
                        continue;
                    }
                    Ok(Some(start)) => {
                        return Err(format!(
                        "{tp:?}: offset {pos} out of range while reading the log back, but the log starts at {start}"
                    ))
                    }
                    Ok(None) => {}
                    Err(e) => conn.failed(s, &e, "ListOffsets"),
                }
            } else if part.error_code == ec::OFFSET_OUT_OF_RANGE {
                return Err(format!("{tp:?}: offset {pos} out of range while reading the log back"));
            }
            backoff().await;
            continue;
        }
        hw = part.high_watermark;
        conn.hw(s, tp, hw, "final Fetch");
        if !kind.deletes() && part.log_start_offset != 0 {
            return Err(format!(
                "{tp:?}: log start offset {} (nothing deletes)",
                part.log_start_offset
            ));
        }
        s.model
            .borrow_mut()
            .saw_log_start(tp, part.log_start_offset, floor, "final Fetch");
        log_start = part.log_start_offset;
        if pos < log_start {
            return Err(format!(
                "{tp:?}: a fetch at {pos} answered, but the log starts at {log_start}"
            ));
        }
        let (recs, next) = part
            .records
            .as_ref()
            .map(parse_records)
            .transpose()?
            .unwrap_or_default();
        let before = pos;
        let mut m = s.model.borrow_mut();
        for Fetched { offset: off, id, key } in recs {
            if off < pos {
                continue;
            }
            if (off != pos && !(kind.keyed() && off > pos)) || off >= hw {
                return Err(format!("{tp:?}: read offset {off} where {pos} was expected (hw {hw})"));
            }
            if let Some(key) = key {
                read.insert(off);
                key_max.insert(key, off);
            }
            pos = off;
            m.observe(tp, off, &id, "read back");
            if m.part(tp).idempotent.contains(&id) {
                if let Some(first) = seen_idempotent.insert(id.clone(), off) {
                    return Err(format!(
                        "{tp:?}: idempotent record {id:?} is in the log twice (offsets {first} and {off})"
                    ));
                }
            }
            pos += 1;
        }
        if kind.keyed() {
            if next > pos && next <= hw {
                // The rest of the batch was compacted away.
                pos = next;
            }
            if pos == before && hw >= 0 {
                // Nothing at or past `pos` below the high watermark: the
                // rest of the log was compacted away.
                break;
            }
        }
    }
    let m = s.model.borrow();
    if let Some(p) = m.parts.get(&tp).filter(|_| kind.keyed()) {
        // Every key's latest acknowledged value is still there, unless a
        // tombstone may have removed it, or a later record of the key
        // replaced it (read back here), or retention deleted it.
        for (key, (off, tombstone)) in &p.latest_acked {
            if *tombstone || *off < log_start || read.contains(off) {
                continue;
            }
            let replaced = key_max.get(key).is_some_and(|k| k > off);
            let removed = p.tombstone_unknown.contains(key) || p.tombstone_acked.get(key).is_some_and(|t| t > off);
            if !replaced && !removed {
                return Err(format!(
                    "{tp:?}: key {key:?}: its latest acknowledged value (offset {off}) is gone (log {log_start}..{hw})"
                ));
            }
        }
    }
    if let Some(p) = m.parts.get(&tp) {
        if hw < p.hw_max {
            return Err(format!(
                "{tp:?}: high watermark {hw} after the run, clients were told {}",
                p.hw_max
            ));
        }
        if let Some((off, id)) = p.known.range(hw..).next() {
            return Err(format!(
                "{tp:?}: {id:?} was at offset {off}, past the final high watermark {hw}"
            ));
        }
    }
    Ok(())
}

async fn check_commits(s: &Shared) -> Result<(), String> {
    let expected: Vec<(Tp, CommitModel)> = s.model.borrow().commits.iter().map(|(k, v)| (*k, v.clone())).collect();
    if expected.is_empty() {
        return Ok(());
    }
    let t0 = s.plan.topics[0].name.clone();
    let parts: Vec<(String, i32)> = expected.iter().map(|(tp, _)| (t0.clone(), tp.1)).collect();
    let deadline = world().elapsed() + Duration::from_secs(300);
    let mut conn = Conn::new();
    loop {
        if world().elapsed() > deadline {
            return Err("could not fetch the group's committed offsets within 5 minutes".to_string());
        }
        let Some(c) = conn.get(s).await else { continue };
        let r = match c.offset_fetch("g1", &parts).await {
            Ok(r) => r,
            Err(e) => {
                conn.failed(s, &e, "OffsetFetch");
                continue;
            }
        };
        if r.error_code != ec::NONE {
            backoff().await;
            continue;
        }
        let mut retry = false;
        for (tp, cm) in &expected {
            let got = r
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter())
                .find(|p| p.partition_index == tp.1);
            let Some(got) = got else {
                return Err(format!("OffsetFetch did not answer for {tp:?}"));
            };
            if got.error_code != ec::NONE {
                retry = true;
                break;
            }
            let v = got.committed_offset;
            let ok = Some(v) == cm.acked || cm.maybe.contains(&v) || (cm.acked.is_none() && v == -1);
            if !ok {
                return Err(format!(
                    "group g1 {tp:?}: committed offset {v} after the run, expected {:?} (or one of {:?})",
                    cm.acked, cm.maybe
                ));
            }
        }
        if !retry {
            return Ok(());
        }
        backoff().await;
    }
}

/// Create the plan's topics (retrying until the broker answers).
async fn create_topics(s: &Shared) -> Result<(), String> {
    let mut conn = Conn::new();
    for t in &s.plan.topics {
        let deadline = world().elapsed() + Duration::from_secs(120);
        loop {
            if world().elapsed() > deadline {
                return Err(format!("could not create topic {}", t.name));
            }
            let Some(c) = conn.get(s).await else { continue };
            match c.create_topic(&t.name, t.partitions, &t.configs).await {
                Ok(r) => {
                    let code = r
                        .topics
                        .first()
                        .map(|x| x.error_code)
                        .unwrap_or(ec::UNKNOWN_SERVER_ERROR);
                    if code == ec::NONE || code == ec::TOPIC_ALREADY_EXISTS {
                        break;
                    }
                    backoff().await;
                }
                Err(e) => conn.failed(s, &e, "CreateTopics"),
            }
        }
    }
    Ok(())
}

// ---- the run ---------------------------------------------------------------------

async fn scenario(s: Rc<Shared>) -> Result<(), String> {
    let w = world();
    start(&s).await?;
    create_topics(&s).await?;
    // Clients, each on its own node.
    let mut node = 10;
    let mut spawn = |fut: futures::future::LocalBoxFuture<'static, ()>| {
        s.running.set(s.running.get() + 1);
        w.spawn_on(node, fut).detach();
        node += 1;
    };
    for (i, p) in s.plan.producers.iter().enumerate() {
        spawn(Box::pin(producer(s.clone(), i, p.clone())));
    }
    for (i, p) in s.plan.consumers.iter().enumerate() {
        spawn(Box::pin(consumer(s.clone(), i, p.clone())));
    }
    if s.plan.group {
        spawn(Box::pin(group_member(s.clone())));
    }
    for _ in 0..s.plan.hostile {
        let s2 = s.clone();
        w.spawn_on(node, async move { super::hostile::run(move || s2.calm.get()).await })
            .detach();
        node += 1;
    }
    // Faults.
    for (gap, f) in s.plan.faults.clone() {
        sleep(gap).await;
        if s.failed() {
            return Ok(());
        }
        inject(&s, f).await?;
        if s.broker.exited() {
            return Err(format!(
                "the broker stopped by itself after {f:?} (a shard failed; see its log)"
            ));
        }
    }
    // Liveness: once the faults are over every client makes progress.
    s.calm.set(true);
    let calm_at = w.elapsed();
    let limit = Duration::from_secs(2 * 3600);
    while s.running.get() > 0 && !s.failed() {
        if s.broker.exited() {
            return Err("the broker stopped by itself (a shard failed; see its log)".to_string());
        }
        if w.elapsed() > calm_at + limit {
            let progress = s.progress.borrow().clone();
            let mut clients: Vec<String> = (0..s.plan.producers.len()).map(|i| format!("producer{i}")).collect();
            clients.extend((0..s.plan.consumers.len()).map(|i| format!("consumer{i}")));
            if s.plan.group {
                clients.push("group".to_string());
            }
            let stuck: Vec<&String> = clients
                .iter()
                .filter(|c| progress.get(*c).copied().unwrap_or(0) < 3)
                .collect();
            let errors = s.model.borrow().produce_errors.clone();
            return Err(format!(
                "liveness: {stuck:?} made no progress within {limit:?} after the last fault (produce errors by code: {errors:?})"
            ));
        }
        sleep(Duration::from_secs(1)).await;
    }
    if s.failed() {
        return Ok(());
    }
    if let Some(f) = s.plan.last {
        inject(&s, f).await?;
    }
    for (ti, t) in s.plan.topics.iter().enumerate() {
        for p in 0..t.partitions {
            check_partition(&s, (ti, p)).await?;
        }
    }
    check_commits(&s).await?;
    stop_clean(&s).await?;
    Ok(())
}

/// Run one seed; Err describes the first invariant violation (or panic,
/// livelock, deadlock).
pub fn run_seed(seed: u64, opts: &Options) -> Result<Outcome, String> {
    let config = SimConfig {
        max_steps: opts.max_steps,
        ..SimConfig::default()
    };
    let w = World::new(seed, config);
    let plan = draw_plan(&w, opts.faults);
    tracing::info!(seed, ?plan, "simulation plan");
    let shared = Rc::new(Shared {
        broker: SimBroker::new(plan.broker.clone()),
        plan,
        model: RefCell::new(Model::default()),
        idle_until: Cell::new(Duration::ZERO),
        calm: Cell::new(false),
        running: Cell::new(0),
        progress: RefCell::new(HashMap::default()),
        faults_done: RefCell::new(Vec::new()),
    });
    let s = shared.clone();
    let w2 = w.clone();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || w2.run(0, scenario(s))));
    let outcome = Outcome {
        virtual_time: w.elapsed(),
        steps: w.steps(),
        acked_records: shared.model.borrow().acked_records,
        fetched_records: shared.model.borrow().fetched_records,
        broker_starts: shared.broker.starts.get(),
        faults: shared.faults_done.borrow().clone(),
    };
    let shutdown = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.shutdown()));
    let err = match result {
        Err(p) => Some(format!("panic: {}", panic_message(&p))),
        Ok(Err(e)) => Some(format!("{e}")),
        Ok(Ok(Err(e))) => Some(e),
        Ok(Ok(Ok(()))) => None,
    };
    let err = err.or_else(|| shared.model.borrow().violations.first().cloned());
    let err = err.or_else(|| match shutdown {
        Err(p) => Some(format!("panic while dropping the world: {}", panic_message(&p))),
        Ok(()) => None,
    });
    match err {
        Some(e) => Err(format!(
            "simulation seed {seed} failed at {:?} virtual time (faults {:?}): {e}\n  replay: {}",
            outcome.virtual_time,
            outcome.faults,
            replay_command(seed)
        )),
        None => Ok(outcome),
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic)".to_string()
    }
}
