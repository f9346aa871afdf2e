//! Broker metrics, kept per shard with no atomics or locks.
//!
//! Each shard thread records into its own thread-local [`ShardMetrics`].
//! A scrape (see [`http`]) asks every shard for a [`Snapshot`] over the
//! mesh, merges them and renders the Prometheus text format.

pub mod http;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

fn new_histogram() -> Histogram<u64> {
    // microseconds, 1 µs .. 1 h, 2 significant digits: constant, valid bounds
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid histogram bounds")
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = (d.as_micros() as u64).clamp(1, h.high());
    let _ = h.record(us);
}

/// Per-topic traffic.
#[derive(Clone, Debug, Default)]
pub struct TopicTraffic {
    pub bytes_in: u64,
    pub messages_in: u64,
    pub bytes_out: u64,
}

/// What one shard has counted.
#[derive(Clone, Debug)]
pub struct ShardMetrics {
    pub requests: BTreeMap<&'static str, (u64, Histogram<u64>)>,
    pub closed_bad_requests: u64,
    pub partition_errors: BTreeMap<(&'static str, i16), u64>,
    pub topics: BTreeMap<String, TopicTraffic>,
    pub fsync: Histogram<u64>,
    pub flush_rounds: u64,
    pub task_queue_delay: Histogram<u64>,
    pub cross_shard_sent: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub connections_opened: u64,
    pub connections_active: i64,
    /// Connections closed at once: their address held its share of
    /// max.connections.per.ip.
    pub connections_refused_per_ip: u64,
    /// Times the shard held its share of max.connections and stopped accepting.
    pub connections_limit_waits: u64,
    /// Connections closed by connections.max.idle.ms.
    pub connections_closed_idle: u64,
    /// Connections closed because a request did not arrive whole within
    /// ringlog.request.receive.timeout.ms.
    pub requests_receive_timeouts: u64,
    /// Requests dropped because their client went away.
    pub requests_cancelled: u64,
    /// Frames that waited for request memory (queued.max.request.bytes).
    pub request_budget_waits: u64,
    /// Client produce requests that waited for staged-data room.
    pub staged_budget_waits: u64,
    /// Segments deleted by retention.ms / retention.bytes.
    pub retention_segments_deleted: u64,
    /// Bytes of those segments.
    pub retention_bytes_deleted: u64,
    /// Log cleaner passes completed, failed, bytes read and written, and
    /// records compacted away.
    pub cleaner_passes: u64,
    pub cleaner_errors: u64,
    pub cleaner_bytes_read: u64,
    pub cleaner_bytes_written: u64,
    pub cleaner_records_removed: u64,
    /// Broken invariants (bugs; see `crate::invariant`).
    pub invariant_violations: u64,
    /// Free bytes of the data directory as the shard estimates them.
    pub storage_free_bytes: u64,
    /// 1 while produce is refused for lack of free space.
    pub storage_degraded: u64,
    /// Partitions rolled back after a full disk, waiting for space.
    pub partitions_waiting_for_space: u64,
    /// Partitions offline after a storage error.
    pub partitions_offline: u64,
    /// Rollbacks of partitions after a write failed for lack of space.
    pub storage_rollbacks: u64,
}

impl Default for ShardMetrics {
    fn default() -> Self {
        ShardMetrics {
            requests: BTreeMap::new(),
            closed_bad_requests: 0,
            partition_errors: BTreeMap::new(),
            topics: BTreeMap::new(),
            fsync: new_histogram(),
            flush_rounds: 0,
            task_queue_delay: new_histogram(),
            cross_shard_sent: 0,
            cache_hits: 0,
            cache_misses: 0,
            connections_opened: 0,
            connections_active: 0,
            connections_refused_per_ip: 0,
            connections_limit_waits: 0,
            connections_closed_idle: 0,
            requests_receive_timeouts: 0,
            requests_cancelled: 0,
            request_budget_waits: 0,
            staged_budget_waits: 0,
            retention_segments_deleted: 0,
            retention_bytes_deleted: 0,
            cleaner_passes: 0,
            cleaner_errors: 0,
            cleaner_bytes_read: 0,
            cleaner_bytes_written: 0,
            cleaner_records_removed: 0,
            invariant_violations: 0,
            storage_free_bytes: 0,
            storage_degraded: 0,
            partitions_waiting_for_space: 0,
            partitions_offline: 0,
            storage_rollbacks: 0,
        }
    }
}

thread_local! {
    static METRICS: RefCell<ShardMetrics> = RefCell::new(ShardMetrics::default());
}

/// Update this shard's metrics.
pub fn with<R>(f: impl FnOnce(&mut ShardMetrics) -> R) -> R {
    METRICS.with(|m| f(&mut m.borrow_mut()))
}

thread_local! {
    static API_NAMES: RefCell<crate::io::rand::HashMap<i16, &'static str>> = RefCell::new(Default::default());
}

/// The name of a Kafka API, for labels (interned: at most one small string
/// per API key for the life of the process).
pub fn api_name(key: kafka_protocol::messages::ApiKey) -> &'static str {
    API_NAMES.with(|names| {
        *names
            .borrow_mut()
            .entry(key as i16)
            .or_insert_with(|| Box::leak(format!("{key:?}").into_boxed_str()))
    })
}

pub fn request_done(api: &'static str, latency: Duration) {
    with(|m| {
        let e = m.requests.entry(api).or_insert_with(|| (0, new_histogram()));
        e.0 += 1;
        record(&mut e.1, latency);
    });
}

pub fn partition_error(api: &'static str, code: i16) {
    if code != crate::protocol::error::NONE {
        with(|m| *m.partition_errors.entry((api, code)).or_insert(0) += 1);
    }
}

pub fn bytes_in(topic: &str, bytes: usize, messages: u64) {
    with(|m| {
        let t = topic_entry(m, topic);
        t.bytes_in += bytes as u64;
        t.messages_in += messages;
    });
}

pub fn bytes_out(topic: &str, bytes: usize) {
    if bytes > 0 {
        with(|m| topic_entry(m, topic).bytes_out += bytes as u64);
    }
}

fn topic_entry<'a>(m: &'a mut ShardMetrics, topic: &str) -> &'a mut TopicTraffic {
    if !m.topics.contains_key(topic) {
        m.topics.insert(topic.to_string(), TopicTraffic::default());
    }
    m.topics.get_mut(topic).expect("inserted above")
}

pub fn fsync_done(latency: Duration) {
    with(|m| record(&mut m.fsync, latency));
}

/// The current shard's metrics plus figures read at scrape time.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub shard: usize,
    pub metrics: ShardMetrics,
    pub partitions: usize,
    pub segments: usize,
    pub staged_bytes: usize,
    /// Fetch requests of the shard's connections parked (long poll).
    pub fetches_parked: usize,
    /// Watches parked on the shard's partitions (for fetches of any shard).
    pub fetch_watches_parked: usize,
    pub busy: Duration,
    /// Request budget (queued.max.request.bytes per shard) handed out now.
    pub request_budget_used: usize,
    /// Frames waiting for request budget now.
    pub request_budget_waiting: usize,
    /// Staged-data budget handed out now.
    pub staged_budget_used: usize,
}

/// Render merged snapshots in the Prometheus text format (0.0.4).
pub fn render(snaps: &[Snapshot]) -> String {
    let mut out = String::with_capacity(16 << 10);
    let mut requests: BTreeMap<&'static str, (u64, Histogram<u64>)> = BTreeMap::new();
    let mut topics: BTreeMap<String, TopicTraffic> = BTreeMap::new();
    let mut errors: BTreeMap<(&'static str, i16), u64> = BTreeMap::new();
    let mut fsync = new_histogram();
    for s in snaps {
        for (api, (n, h)) in &s.metrics.requests {
            let e = requests.entry(api).or_insert_with(|| (0, new_histogram()));
            e.0 += n;
            let _ = e.1.add(h);
        }
        for (t, v) in &s.metrics.topics {
            let e = topics.entry(t.clone()).or_default();
            e.bytes_in += v.bytes_in;
            e.messages_in += v.messages_in;
            e.bytes_out += v.bytes_out;
        }
        for (k, v) in &s.metrics.partition_errors {
            *errors.entry(*k).or_insert(0) += v;
        }
        let _ = fsync.add(&s.metrics.fsync);
    }
    let quantiles = [0.5, 0.9, 0.99, 0.999];
    let summary = |out: &mut String, name: &str, labels: &str, h: &Histogram<u64>, count: u64| {
        let sep = if labels.is_empty() { "" } else { "," };
        for q in quantiles {
            let v = h.value_at_quantile(q) as f64 / 1e6;
            let _ = writeln!(out, "{name}{{{labels}{sep}quantile=\"{q}\"}} {v}");
        }
        let sum = h.mean() * h.len() as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    };
    out.push_str(
        "# HELP ringlog_requests_total Requests served, by Kafka API.\n# TYPE ringlog_requests_total counter\n",
    );
    for (api, (n, _)) in &requests {
        let _ = writeln!(out, "ringlog_requests_total{{api=\"{api}\"}} {n}");
    }
    out.push_str("# HELP ringlog_request_latency_seconds Time from request decode to response ready.\n# TYPE ringlog_request_latency_seconds summary\n");
    for (api, (n, h)) in &requests {
        summary(
            &mut out,
            "ringlog_request_latency_seconds",
            &format!("api=\"{api}\""),
            h,
            *n,
        );
    }
    out.push_str("# HELP ringlog_request_errors_total Partition-level errors returned, by API and Kafka error code.\n# TYPE ringlog_request_errors_total counter\n");
    for ((api, code), n) in &errors {
        let _ = writeln!(out, "ringlog_request_errors_total{{api=\"{api}\",code=\"{code}\"}} {n}");
    }
    out.push_str("# HELP ringlog_bad_requests_total Connections closed because of an invalid request.\n# TYPE ringlog_bad_requests_total counter\n");
    let bad: u64 = snaps.iter().map(|s| s.metrics.closed_bad_requests).sum();
    let _ = writeln!(out, "ringlog_bad_requests_total {bad}");
    out.push_str("# HELP ringlog_invariant_violations_total Broken internal invariants (bugs).\n# TYPE ringlog_invariant_violations_total counter\n");
    let inv: u64 = snaps.iter().map(|s| s.metrics.invariant_violations).sum();
    let _ = writeln!(out, "ringlog_invariant_violations_total {inv}");

    out.push_str("# HELP ringlog_topic_bytes_in_total Record batch bytes appended, by topic.\n# TYPE ringlog_topic_bytes_in_total counter\n");
    for (t, v) in &topics {
        let _ = writeln!(out, "ringlog_topic_bytes_in_total{{topic=\"{t}\"}} {}", v.bytes_in);
    }
    out.push_str("# HELP ringlog_topic_messages_in_total Records appended, by topic.\n# TYPE ringlog_topic_messages_in_total counter\n");
    for (t, v) in &topics {
        let _ = writeln!(
            out,
            "ringlog_topic_messages_in_total{{topic=\"{t}\"}} {}",
            v.messages_in
        );
    }
    out.push_str("# HELP ringlog_topic_bytes_out_total Record batch bytes returned to fetches, by topic.\n# TYPE ringlog_topic_bytes_out_total counter\n");
    for (t, v) in &topics {
        let _ = writeln!(out, "ringlog_topic_bytes_out_total{{topic=\"{t}\"}} {}", v.bytes_out);
    }
    out.push_str("# HELP ringlog_fsync_latency_seconds fdatasync latency of segment files.\n# TYPE ringlog_fsync_latency_seconds summary\n");
    summary(&mut out, "ringlog_fsync_latency_seconds", "", &fsync, fsync.len());
    type PerShard = (&'static str, &'static str, &'static str, fn(&Snapshot) -> f64);
    let per_shard: [PerShard; 34] = [
        (
            "ringlog_shard_storage_free_bytes",
            "gauge",
            "Free bytes of the data directory as the shard estimates them.",
            |s| s.metrics.storage_free_bytes as f64,
        ),
        (
            "ringlog_shard_storage_degraded",
            "gauge",
            "1 while produce is refused because free space is under ringlog.storage.min.free.bytes.",
            |s| s.metrics.storage_degraded as f64,
        ),
        (
            "ringlog_shard_partitions_waiting_for_space",
            "gauge",
            "Partitions rolled back after a full disk, waiting for free space.",
            |s| s.metrics.partitions_waiting_for_space as f64,
        ),
        (
            "ringlog_shard_partitions_offline",
            "gauge",
            "Partitions offline after a storage error (until a restart).",
            |s| s.metrics.partitions_offline as f64,
        ),
        (
            "ringlog_shard_storage_rollbacks_total",
            "counter",
            "Partition rollbacks after a write failed for lack of space.",
            |s| s.metrics.storage_rollbacks as f64,
        ),
        (
            "ringlog_shard_flush_rounds_total",
            "counter",
            "Group-commit rounds.",
            |s| s.metrics.flush_rounds as f64,
        ),
        (
            "ringlog_shard_busy_seconds_total",
            "counter",
            "Time the shard's executor spent running tasks (utilization = rate).",
            |s| s.busy.as_secs_f64(),
        ),
        (
            "ringlog_shard_cross_shard_messages_total",
            "counter",
            "Messages sent to other shards over the mesh.",
            |s| s.metrics.cross_shard_sent as f64,
        ),
        ("ringlog_shard_partitions", "gauge", "Partitions owned.", |s| {
            s.partitions as f64
        }),
        (
            "ringlog_shard_segments",
            "gauge",
            "Log segments of owned partitions.",
            |s| s.segments as f64,
        ),
        (
            "ringlog_shard_staged_bytes",
            "gauge",
            "Bytes appended but not yet written.",
            |s| s.staged_bytes as f64,
        ),
        (
            "ringlog_shard_fetch_cache_hits_total",
            "counter",
            "Partition reads served from the recent-batch cache.",
            |s| s.metrics.cache_hits as f64,
        ),
        (
            "ringlog_shard_fetch_cache_misses_total",
            "counter",
            "Partition reads served from segment files.",
            |s| s.metrics.cache_misses as f64,
        ),
        (
            "ringlog_shard_connections_opened_total",
            "counter",
            "Client connections accepted.",
            |s| s.metrics.connections_opened as f64,
        ),
        (
            "ringlog_shard_connections_active",
            "gauge",
            "Client connections open.",
            |s| s.metrics.connections_active as f64,
        ),
        (
            "ringlog_shard_connections_refused_per_ip_total",
            "counter",
            "Connections closed at once because their address held its share of max.connections.per.ip.",
            |s| s.metrics.connections_refused_per_ip as f64,
        ),
        (
            "ringlog_shard_connections_limit_waits_total",
            "counter",
            "Times the shard held its share of max.connections and stopped accepting.",
            |s| s.metrics.connections_limit_waits as f64,
        ),
        (
            "ringlog_shard_connections_closed_idle_total",
            "counter",
            "Connections closed by connections.max.idle.ms.",
            |s| s.metrics.connections_closed_idle as f64,
        ),
        (
            "ringlog_shard_request_receive_timeouts_total",
            "counter",
            "Connections closed because a request did not arrive whole within ringlog.request.receive.timeout.ms.",
            |s| s.metrics.requests_receive_timeouts as f64,
        ),
        (
            "ringlog_shard_requests_cancelled_total",
            "counter",
            "Requests dropped because their client went away.",
            |s| s.metrics.requests_cancelled as f64,
        ),
        (
            "ringlog_shard_request_budget_waits_total",
            "counter",
            "Frames that waited for request memory (queued.max.request.bytes).",
            |s| s.metrics.request_budget_waits as f64,
        ),
        (
            "ringlog_shard_request_budget_used_bytes",
            "gauge",
            "Request memory reserved now (queued.max.request.bytes per shard).",
            |s| s.request_budget_used as f64,
        ),
        (
            "ringlog_shard_request_budget_waiting",
            "gauge",
            "Frames waiting for request memory now.",
            |s| s.request_budget_waiting as f64,
        ),
        (
            "ringlog_shard_staged_budget_used_bytes",
            "gauge",
            "Staged-data room reserved now by produce requests not yet on disk.",
            |s| s.staged_budget_used as f64,
        ),
        (
            "ringlog_shard_staged_budget_waits_total",
            "counter",
            "Produce requests that waited for staged-data room.",
            |s| s.metrics.staged_budget_waits as f64,
        ),
        (
            "ringlog_shard_fetches_parked",
            "gauge",
            "Fetch requests of the shard's connections waiting for min_bytes or max_wait_ms.",
            |s| s.fetches_parked as f64,
        ),
        (
            "ringlog_shard_fetch_watches_parked",
            "gauge",
            "Parked fetches watching the shard's partitions (from any shard).",
            |s| s.fetch_watches_parked as f64,
        ),
        (
            "ringlog_shard_retention_deleted_segments_total",
            "counter",
            "Log segments deleted by retention.ms / retention.bytes.",
            |s| s.metrics.retention_segments_deleted as f64,
        ),
        (
            "ringlog_shard_retention_deleted_bytes_total",
            "counter",
            "Bytes of the log segments deleted by retention.",
            |s| s.metrics.retention_bytes_deleted as f64,
        ),
        (
            "ringlog_shard_cleaner_passes_total",
            "counter",
            "Log cleaner passes over a compacted partition.",
            |s| s.metrics.cleaner_passes as f64,
        ),
        (
            "ringlog_shard_cleaner_errors_total",
            "counter",
            "Log cleaner passes that stopped on an error (the log is left as it was).",
            |s| s.metrics.cleaner_errors as f64,
        ),
        (
            "ringlog_shard_cleaner_read_bytes_total",
            "counter",
            "Bytes the log cleaner read.",
            |s| s.metrics.cleaner_bytes_read as f64,
        ),
        (
            "ringlog_shard_cleaner_written_bytes_total",
            "counter",
            "Bytes of cleaned segments the log cleaner wrote.",
            |s| s.metrics.cleaner_bytes_written as f64,
        ),
        (
            "ringlog_shard_cleaner_removed_records_total",
            "counter",
            "Records the log cleaner removed (superseded, keyless, expired tombstones).",
            |s| s.metrics.cleaner_records_removed as f64,
        ),
    ];
    for (name, ty, help, f) in per_shard {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {ty}");
        for s in snaps {
            let _ = writeln!(out, "{name}{{shard=\"{}\"}} {}", s.shard, f(s));
        }
    }
    let hits: u64 = snaps.iter().map(|s| s.metrics.cache_hits).sum();
    let misses: u64 = snaps.iter().map(|s| s.metrics.cache_misses).sum();
    let ratio = if hits + misses == 0 {
        0.0
    } else {
        hits as f64 / (hits + misses) as f64
    };
    let _ = writeln!(out, "# HELP ringlog_fetch_cache_hit_ratio Share of partition reads served from memory.\n# TYPE ringlog_fetch_cache_hit_ratio gauge\nringlog_fetch_cache_hit_ratio {ratio}");
    out.push_str("# HELP ringlog_shard_task_queue_delay_seconds How late a timer wakes up on the shard (scheduling delay).\n# TYPE ringlog_shard_task_queue_delay_seconds summary\n");
    for s in snaps {
        let h = &s.metrics.task_queue_delay;
        summary(
            &mut out,
            "ringlog_shard_task_queue_delay_seconds",
            &format!("shard=\"{}\"", s.shard),
            h,
            h.len(),
        );
    }
    out
}

/// Measure scheduling delay: sleep 1 ms every 100 ms and record how late
/// the wake-up is. Runs until the shard shuts down. In a simulation the
/// delay is only the simulated CPU cost, so it probes every 10 s of virtual
/// time there: days of idle virtual time stay cheap to simulate.
pub async fn probe_task_queue_delay(shard: &crate::shard::Shard) {
    let every = if crate::io::sim::active() {
        Duration::from_secs(10)
    } else {
        Duration::from_millis(100)
    };
    while !shard.shutting_down.get() {
        crate::io::time::sleep(every).await;
        let start = crate::io::time::Instant::now();
        crate::io::time::sleep(Duration::from_millis(1)).await;
        let late = start.elapsed().saturating_sub(Duration::from_millis(1));
        with(|m| record(&mut m.task_queue_delay, late));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_merged_shards() {
        request_done("Produce", Duration::from_micros(300));
        bytes_in("orders", 1000, 10);
        partition_error("Produce", 3);
        let a = Snapshot {
            shard: 0,
            metrics: with(|m| m.clone()),
            partitions: 2,
            segments: 3,
            staged_bytes: 0,
            fetches_parked: 1,
            fetch_watches_parked: 0,
            busy: Duration::from_millis(5),
            request_budget_used: 0,
            request_budget_waiting: 0,
            staged_budget_used: 0,
        };
        let mut b = a.clone();
        b.shard = 1;
        let text = render(&[a, b]);
        assert!(text.contains("ringlog_requests_total{api=\"Produce\"} 2"), "{text}");
        assert!(text.contains("ringlog_topic_bytes_in_total{topic=\"orders\"} 2000"));
        assert!(text.contains("ringlog_request_errors_total{api=\"Produce\",code=\"3\"} 2"));
        assert!(text.contains("ringlog_shard_partitions{shard=\"1\"} 2"));
        assert!(text.contains("ringlog_shard_fetches_parked{shard=\"1\"} 1"));
        assert!(text.contains("ringlog_shard_fetch_watches_parked{shard=\"0\"} 0"));
        assert!(text.contains("ringlog_request_latency_seconds_count{api=\"Produce\"} 2"));
    }
}
