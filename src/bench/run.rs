//! One run: discover the cluster, start consumers, then producers, report
//! progress, drain, and summarise.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use hdrhistogram::Histogram;

use super::cluster::{discover, Cluster};
use super::config::Settings;
use super::consumer::{self, Assignment, ConsumerResult, ConsumerSpec};
use super::producer::{self, ProducerResult, ProducerSpec};
use super::schedule::split_weighted;
use super::shared::Shared;
use super::stats::{error_name, new_histogram, thousands, LatencySummary, Summary, Throughput};

/// The outcome of a run: the summary and the full histograms.
pub struct RunOutput {
    pub summary: Summary,
    pub produce_latency: Histogram<u64>,
    pub e2e_latency: Histogram<u64>,
}

/// Time between the end of setup and the first produce request.
const LEAD: Duration = Duration::from_millis(50);

pub fn run(settings: Settings, log: &dyn Fn(&str)) -> anyhow::Result<RunOutput> {
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let setup_started = Instant::now();
    let cluster = discover(&settings, log)?;
    log(&format!(
        "{} topic(s), {} partitions, {} broker(s); metadata and topics ready in {:.2} s",
        cluster.topics.len(),
        cluster.partitions.len(),
        cluster.brokers.len(),
        setup_started.elapsed().as_secs_f64()
    ));
    let shared = Arc::new(Shared::new(settings.clone(), cluster.topics.clone()));

    // Consumers first, positioned before anything is produced.
    let (ready_tx, ready_rx) = channel();
    let mut consumers: Vec<JoinHandle<ConsumerResult>> = Vec::new();
    for spec in consumer_specs(&cluster, settings.consumers)? {
        let (sh, tx) = (shared.clone(), ready_tx.clone());
        let h = std::thread::Builder::new()
            .name(spec.name.clone())
            .spawn(move || consumer::run(spec, sh, tx))
            .map_err(|e| anyhow!("cannot start a consumer thread: {e}"))?;
        consumers.push(h);
    }
    drop(ready_tx);
    let mut setup_failure = None;
    for _ in 0..consumers.len() {
        match ready_rx.recv_timeout(Duration::from_secs(120)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                setup_failure = Some(e);
                break;
            }
            Err(_) => {
                setup_failure = Some("consumers did not get ready within 120 s".to_string());
                break;
            }
        }
    }
    if let Some(e) = setup_failure {
        shared.fail();
        for h in consumers {
            let _ = h.join();
        }
        return Err(anyhow!(e));
    }

    shared.set_window(LEAD);
    let mut producers: Vec<JoinHandle<ProducerResult>> = Vec::new();
    for spec in producer_specs(&cluster, &settings)? {
        let sh = shared.clone();
        let h = std::thread::Builder::new()
            .name(spec.name.clone())
            .spawn(move || producer::run(spec, sh))
            .map_err(|e| anyhow!("cannot start a producer thread: {e}"))?;
        producers.push(h);
    }
    log(&format!(
        "running: {} producer connection(s), {} consumer connection(s), warmup {:.1} s, {}",
        producers.len(),
        consumers.len(),
        settings.warmup.as_secs_f64(),
        if settings.duration.is_zero() {
            "no time limit".to_string()
        } else {
            format!("measuring {:.1} s", settings.duration.as_secs_f64())
        }
    ));

    let mut progress = Progress::new(&shared);
    // Producing phase (or the consumers' own run when there are no producers).
    loop {
        std::thread::sleep(Duration::from_millis(100));
        progress.tick(&shared, &settings, log);
        if shared.aborted() {
            break;
        }
        if !producers.is_empty() {
            if producers.iter().all(|h| h.is_finished()) {
                break;
            }
        } else if consumers.iter().all(|h| h.is_finished()) || shared.clock.now_ns() >= shared.end_ns() {
            break;
        }
    }
    let mut produce_latency = new_histogram();
    let mut error_codes: BTreeMap<i16, u64> = BTreeMap::new();
    let mut errors: Vec<String> = Vec::new();
    for h in producers {
        match h.join() {
            Ok(r) => {
                let _ = produce_latency.add(&r.latency);
                merge_codes(&mut error_codes, &r.error_codes);
                errors.extend(r.failure);
            }
            Err(_) => errors.push("a producer thread panicked".into()),
        }
    }
    // Drain: consumers read what was produced.
    let c = &shared.counters;
    if settings.producers > 0 && !consumers.is_empty() {
        let deadline = Instant::now() + settings.drain_timeout;
        while !shared.aborted()
            && Instant::now() < deadline
            && c.consumed_msgs.load(Relaxed) < c.produced_msgs.load(Relaxed)
            && !consumers.iter().all(|h| h.is_finished())
        {
            std::thread::sleep(Duration::from_millis(20));
            progress.tick(&shared, &settings, log);
        }
    }
    shared.stop_consumers.store(true, Relaxed);
    let mut e2e_latency = new_histogram();
    for h in consumers {
        match h.join() {
            Ok(r) => {
                let _ = e2e_latency.add(&r.latency);
                merge_codes(&mut error_codes, &r.error_codes);
                errors.extend(r.failure);
            }
            Err(_) => errors.push("a consumer thread panicked".into()),
        }
    }

    let warm = shared.warm_ns();
    let end = shared.end_ns();
    let span = |last: u64| -> f64 {
        let until = end.min(last.max(warm));
        (until - warm) as f64 / 1e9
    };
    let produce = (settings.producers > 0).then(|| {
        Throughput::new(
            c.produced_msgs.load(Relaxed),
            c.produced_bytes.load(Relaxed),
            c.produced_window_msgs.load(Relaxed),
            c.produced_window_bytes.load(Relaxed),
            span(c.last_ack_ns.load(Relaxed)),
        )
    });
    let consume = (settings.consumers > 0).then(|| {
        Throughput::new(
            c.consumed_msgs.load(Relaxed),
            c.consumed_bytes.load(Relaxed),
            c.consumed_window_msgs.load(Relaxed),
            c.consumed_window_bytes.load(Relaxed),
            span(c.last_consume_ns.load(Relaxed)),
        )
    });
    let produced = c.produced_msgs.load(Relaxed);
    let consumed = c.consumed_msgs.load(Relaxed);
    let unconsumed = if settings.producers > 0 && settings.consumers > 0 {
        produced.saturating_sub(consumed)
    } else {
        0
    };
    if settings.producers > 0 && produced == 0 && errors.is_empty() {
        errors.push("no message was acknowledged".into());
    }
    if unconsumed > 0 && errors.is_empty() {
        errors.push(format!(
            "consumers read {} of {} acknowledged messages within the {:.0} s drain timeout",
            thousands(consumed),
            thousands(produced),
            settings.drain_timeout.as_secs_f64()
        ));
    }
    let error_codes: BTreeMap<String, u64> = error_codes.into_iter().map(|(code, n)| (error_name(code), n)).collect();
    let ok = errors.is_empty() && error_codes.is_empty();
    let summary = Summary {
        workload: settings.name.clone(),
        generator: "ringlog-bench".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        bootstrap: settings.bootstrap.clone(),
        started_at,
        partitions_total: cluster.partitions.len(),
        produce,
        consume,
        produce_latency_ms: LatencySummary::of(&produce_latency),
        e2e_latency_ms: LatencySummary::of(&e2e_latency),
        error_codes,
        errors,
        unconsumed,
        generator_cpu_seconds: process_cpu_seconds(),
        ok,
        settings,
    };
    Ok(RunOutput {
        summary,
        produce_latency,
        e2e_latency,
    })
}

fn merge_codes(into: &mut BTreeMap<i16, u64>, from: &BTreeMap<i16, u64>) {
    for (k, v) in from {
        *into.entry(*k).or_insert(0) += v;
    }
}

/// Producer connections: every producer writes to every partition, with one
/// connection per partition leader.
fn producer_specs(cluster: &Cluster, s: &Settings) -> anyhow::Result<Vec<ProducerSpec>> {
    let groups = cluster.by_leader(&cluster.all_partitions())?;
    let mut specs = Vec::new();
    for p in 0..s.producers {
        for (addr, parts) in &groups {
            let name = if groups.len() > 1 {
                format!("producer-{p}@{addr}")
            } else {
                format!("producer-{p}")
            };
            specs.push(ProducerSpec {
                name,
                addr: addr.clone(),
                rotate: p * parts.len() / s.producers.max(1),
                partitions: parts.clone(),
                rate: 0,
                max_messages: None,
                seed: p as u64 + 1,
            });
        }
    }
    let weights: Vec<u64> = specs.iter().map(|x| x.partitions.len() as u64).collect();
    if s.rate > 0 {
        for (spec, rate) in specs.iter_mut().zip(split_weighted(s.rate, &weights)) {
            spec.rate = rate.max(1);
        }
    }
    if let Some(total) = s.total_bytes {
        let messages = total.div_ceil(s.message_size as u64);
        for (spec, n) in specs.iter_mut().zip(split_weighted(messages, &weights)) {
            spec.max_messages = Some(n);
        }
    }
    Ok(specs)
}

fn consumer_specs(cluster: &Cluster, consumers: usize) -> anyhow::Result<Vec<ConsumerSpec>> {
    let mut specs = Vec::new();
    for (c, parts) in Assignment::Manual
        .assign(&cluster.all_partitions(), consumers)
        .into_iter()
        .enumerate()
    {
        if parts.is_empty() {
            continue;
        }
        let groups = cluster.by_leader(&parts).context("assigning partitions")?;
        let n = groups.len();
        for (addr, parts) in groups {
            let name = if n > 1 {
                format!("consumer-{c}@{addr}")
            } else {
                format!("consumer-{c}")
            };
            specs.push(ConsumerSpec {
                name,
                addr,
                partitions: parts,
            });
        }
    }
    Ok(specs)
}

/// A progress line every second.
struct Progress {
    last: Instant,
    produced: u64,
    consumed: u64,
    produced_bytes: u64,
    consumed_bytes: u64,
}

impl Progress {
    fn new(_shared: &Shared) -> Progress {
        Progress {
            last: Instant::now(),
            produced: 0,
            consumed: 0,
            produced_bytes: 0,
            consumed_bytes: 0,
        }
    }

    fn tick(&mut self, shared: &Shared, s: &Settings, log: &dyn Fn(&str)) {
        let dt = self.last.elapsed().as_secs_f64();
        if dt < 1.0 {
            return;
        }
        let c = &shared.counters;
        let (p, pb) = (c.produced_msgs.load(Relaxed), c.produced_bytes.load(Relaxed));
        let (q, qb) = (c.consumed_msgs.load(Relaxed), c.consumed_bytes.load(Relaxed));
        let t = shared.clock.now_ns().saturating_sub(shared.start_ns()) as f64 / 1e9;
        let phase = if shared.clock.now_ns() < shared.warm_ns() {
            " (warmup)"
        } else {
            ""
        };
        if !s.quiet {
            let errors = c.produce_errors.load(Relaxed) + c.consume_errors.load(Relaxed);
            log(&format!(
                "[{t:7.1}s] produce {:>10} msg/s {:>8.1} MB/s | consume {:>10} msg/s {:>8.1} MB/s | errors {errors}{phase}",
                thousands(((p - self.produced) as f64 / dt) as u64),
                (pb - self.produced_bytes) as f64 / dt / 1e6,
                thousands(((q - self.consumed) as f64 / dt) as u64),
                (qb - self.consumed_bytes) as f64 / dt / 1e6,
            ));
        }
        self.last = Instant::now();
        self.produced = p;
        self.consumed = q;
        self.produced_bytes = pb;
        self.consumed_bytes = qb;
    }
}

/// User + system CPU time of this process so far.
fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
