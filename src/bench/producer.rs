//! Producer connections: a writer thread that builds and sends pipelined
//! produce requests, and a reader thread that matches the responses and
//! records latencies.
//!
//! Closed loop (`rate = 0`): the writer sends full requests whenever fewer
//! than `max_in_flight` are outstanding; a message's latency runs from the
//! moment its request was built.
//!
//! Open loop (`rate > 0`): message `i` is due at a fixed time
//! ([`Schedule`]); the writer sends what is due once the oldest waiting
//! message has lingered `linger`, or a full request is waiting. Latency runs
//! from each message's intended time, so a stalled broker (or a blocked
//! in-flight window) shows up in the latencies instead of silently slowing
//! the generator down (coordinated omission).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

use anyhow::{anyhow, Context};
use bytes::BytesMut;
use hdrhistogram::Histogram;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::client::{decode_response, encode_request, Conn, FrameReader, Versions};
use super::cluster::TopicPartition;
use super::schedule::{plan, Partitioning, Run, Schedule};
use super::shared::{sleep_until, Permits, Shared};
use super::stats::{new_histogram, record};
use super::template::{record_wire_len, records_per_batch, Stamp, Template};

/// One producer connection's job.
#[derive(Debug, Clone)]
pub struct ProducerSpec {
    pub name: String,
    pub addr: String,
    pub partitions: Vec<TopicPartition>,
    /// Payload bytes per second for this connection; 0 = closed loop.
    pub rate: u64,
    /// Stop after this many messages.
    pub max_messages: Option<u64>,
    /// Where in the partition list the sticky partitioner starts.
    pub rotate: usize,
    pub seed: u64,
}

/// What a producer connection reports when it ends.
#[derive(Debug)]
pub struct ProducerResult {
    pub latency: Histogram<u64>,
    pub error_codes: BTreeMap<i16, u64>,
    pub failure: Option<String>,
}

/// One batch of a request in flight.
#[derive(Debug, Clone, Copy)]
struct SentBatch {
    tp: TopicPartition,
    count: u32,
    stamp: Stamp,
}

#[derive(Debug)]
struct Sent {
    correlation_id: i32,
    batches: Vec<SentBatch>,
}

/// Kafka's request timeout for produce (ms).
const PRODUCE_TIMEOUT_MS: i32 = 30_000;

/// Run one producer connection to completion (blocking). Spawns its reader
/// thread; returns when everything sent was answered or the run aborts.
pub fn run(spec: ProducerSpec, shared: Arc<Shared>) -> ProducerResult {
    let fail = |e: anyhow::Error| {
        shared.fail();
        ProducerResult {
            latency: new_histogram(),
            error_codes: BTreeMap::new(),
            failure: Some(format!("producer {} ({}): {e:#}", spec.name, spec.addr)),
        }
    };
    let conn = match Conn::connect(&spec.addr) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let versions = conn.versions;
    let first_corr = conn.next_correlation();
    let write_half = conn.into_stream();
    let read_half = match write_half.try_clone() {
        Ok(s) => s,
        Err(e) => return fail(anyhow!("cannot clone the socket: {e}")),
    };
    let permits = Arc::new(Permits::new(shared.settings.max_in_flight));
    let (tx, rx) = channel::<Sent>();
    let acks = shared.settings.acks;
    let reader = if acks != 0 {
        let (sh, p, name) = (shared.clone(), permits.clone(), spec.name.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("{name}-rx"))
            .spawn(move || read_responses(read_half, versions, rx, sh, p));
        match spawned {
            Ok(h) => Some(h),
            Err(e) => return fail(anyhow!("cannot start a thread: {e}")),
        }
    } else {
        drop(rx);
        None
    };
    let mut writer = Writer::new(&spec, shared.clone(), write_half, versions, first_corr, permits.clone());
    let written = writer.run(if acks != 0 { Some(tx) } else { None });
    if written.is_err() {
        // Unblock the reader: nothing more will arrive.
        let _ = writer.stream.shutdown(Shutdown::Both);
        permits.close();
    }
    let mut result = match reader {
        Some(h) => match h.join() {
            Ok(r) => r,
            Err(_) => ProducerResult {
                latency: new_histogram(),
                error_codes: BTreeMap::new(),
                failure: Some("response reader panicked".into()),
            },
        },
        None => ProducerResult {
            latency: new_histogram(),
            error_codes: BTreeMap::new(),
            failure: None,
        },
    };
    if let Err(e) = written {
        shared.fail();
        result.failure = Some(format!("producer {} ({}): {e:#}", spec.name, spec.addr));
    } else if let Some(f) = result.failure.take() {
        result.failure = Some(format!("producer {} ({}): {f}", spec.name, spec.addr));
    }
    let _ = writer.stream.shutdown(Shutdown::Both);
    result
}

struct Writer {
    shared: Arc<Shared>,
    stream: TcpStream,
    versions: Versions,
    permits: Arc<Permits>,
    partitions: Vec<TopicPartition>,
    template: Template,
    partitioning: Partitioning,
    max_records: u64,
    /// Messages per request (upper bound; `plan` may take fewer).
    per_request: u64,
    schedule: Option<Schedule>,
    max_messages: u64,
    rotate: usize,
    next_corr: i32,
    arena: BytesMut,
    wbuf: BytesMut,
    runs: Vec<Run>,
    message_size: u64,
}

impl Writer {
    fn new(
        spec: &ProducerSpec,
        shared: Arc<Shared>,
        stream: TcpStream,
        versions: Versions,
        first_corr: i32,
        permits: Arc<Permits>,
    ) -> Writer {
        let s = &shared.settings;
        let batch_bytes = s.batch_bytes.min(s.max_request_bytes);
        let max_records = records_per_batch(s.message_size, s.key, batch_bytes);
        let rec_len = record_wire_len(s.message_size, s.key, 1 << 20) as u64;
        // Leave room for request, topic and batch headers.
        let per_request = (s.max_request_bytes as u64).saturating_sub(1024) / rec_len.max(1);
        let partitioning = if s.key {
            Partitioning::RoundRobin
        } else {
            Partitioning::Sticky {
                records_per_batch: max_records,
            }
        };
        let template = Template::new(max_records as usize, s.message_size, s.key, s.compression, spec.seed)
            .with_key_space(s.key_space);
        Writer {
            schedule: (spec.rate > 0).then(|| Schedule::new(s.message_size as u64, spec.rate)),
            max_messages: spec.max_messages.unwrap_or(u64::MAX),
            message_size: s.message_size as u64,
            stream,
            versions,
            permits,
            partitions: spec.partitions.clone(),
            template,
            partitioning,
            max_records,
            per_request: per_request.max(1),
            rotate: spec.rotate,
            next_corr: first_corr,
            arena: BytesMut::new(),
            wbuf: BytesMut::new(),
            runs: Vec::new(),
            shared,
        }
    }

    fn run(&mut self, tx: Option<Sender<Sent>>) -> anyhow::Result<()> {
        let shared = self.shared.clone();
        let clock = shared.clock;
        let stop = || shared.aborted();
        let linger = shared.settings.linger.as_nanos() as u64;
        let start = shared.start_ns();
        let end = shared.end_ns();
        sleep_until(&clock, start, &stop);
        let mut next: u64 = 0;
        // Open loop: how many messages are due before the end.
        let final_due = match self.schedule {
            Some(sch) if end != u64::MAX => sch
                .due(end.saturating_sub(start).saturating_sub(1))
                .min(self.max_messages),
            _ => self.max_messages,
        };
        loop {
            if stop() || next >= final_due {
                break;
            }
            let n = match self.schedule {
                None => {
                    if clock.now_ns() >= end {
                        break;
                    }
                    if !self.permits.acquire(&stop) {
                        break;
                    }
                    if clock.now_ns() >= end {
                        self.permits.release();
                        break;
                    }
                    self.per_request.min(final_due - next)
                }
                Some(sch) => {
                    let now = clock.now_ns();
                    let due = sch.due(now.saturating_sub(start)).min(final_due);
                    let pending = due.saturating_sub(next);
                    let oldest = start.saturating_add(sch.offset_ns(next));
                    let ready = pending >= self.per_request
                        || (pending > 0 && now >= oldest.saturating_add(linger))
                        || (pending > 0 && due == final_due);
                    if !ready {
                        let full_at = start.saturating_add(sch.offset_ns(next + self.per_request - 1));
                        let wake = oldest.saturating_add(linger).min(full_at);
                        sleep_until(&clock, wake, &stop);
                        continue;
                    }
                    if !self.permits.acquire(&stop) {
                        break;
                    }
                    // More may have become due while waiting for a slot.
                    let due = sch.due(clock.now_ns().saturating_sub(start)).min(final_due);
                    due.saturating_sub(next).clamp(1, self.per_request)
                }
            };
            let sent = self.send(next, n, tx.as_ref())?;
            next += sent;
        }
        Ok(())
    }

    /// Build and send one request with up to `n` messages from `first`.
    /// Returns how many went out.
    fn send(&mut self, first: u64, n: u64, tx: Option<&Sender<Sent>>) -> anyhow::Result<u64> {
        let shared = self.shared.clone();
        let s = &shared.settings;
        self.runs.clear();
        let planned = plan(
            self.partitioning,
            self.partitions.len(),
            self.rotate,
            self.max_records,
            first,
            n,
            &mut self.runs,
        );
        let now = shared.clock.now_ns();
        let timestamp_ms = (now / 1_000_000) as i64;
        let start = shared.start_ns();
        self.arena.clear();
        self.arena
            .reserve((planned * (self.message_size + 64)) as usize + self.runs.len() * 64);
        let mut topics: Vec<TopicProduceData> = Vec::new();
        let mut topic_slot: Vec<(usize, usize)> = Vec::new(); // (topic index, position in `topics`)
        let mut batches = Vec::with_capacity(self.runs.len());
        for run in &self.runs {
            let Some(tp) = self.partitions.get(run.partition).copied() else {
                continue;
            };
            let stamp = match self.schedule {
                Some(sch) => {
                    let t0 = sch.offset_ns(run.first);
                    let step = if run.count > 1 {
                        sch.offset_ns(run.first + run.stride as u64).saturating_sub(t0)
                    } else {
                        0
                    };
                    Stamp {
                        first_ns: start.saturating_add(t0),
                        step_ns: step,
                    }
                }
                None => Stamp {
                    first_ns: now,
                    step_ns: 0,
                },
            };
            self.template
                .write(&mut self.arena, run.count as usize, timestamp_ms, stamp);
            let records = self.arena.split().freeze();
            let slot = match topic_slot.iter().find(|(t, _)| *t == tp.topic) {
                Some((_, i)) => *i,
                None => {
                    let name = shared.topics.get(tp.topic).cloned().unwrap_or_default();
                    topics.push(TopicProduceData::default().with_name(TopicName(StrBytes::from_string(name))));
                    topic_slot.push((tp.topic, topics.len() - 1));
                    topics.len() - 1
                }
            };
            topics[slot].partition_data.push(
                PartitionProduceData::default()
                    .with_index(tp.partition)
                    .with_records(Some(records)),
            );
            batches.push(SentBatch {
                tp,
                count: run.count,
                stamp,
            });
        }
        let req = ProduceRequest::default()
            .with_acks(s.acks)
            .with_timeout_ms(PRODUCE_TIMEOUT_MS)
            .with_topic_data(topics);
        let corr = self.next_corr;
        self.next_corr = self.next_corr.wrapping_add(1).max(1);
        self.wbuf.clear();
        encode_request(&mut self.wbuf, ApiKey::Produce, self.versions.produce, corr, &req)?;
        drop(req);
        match tx {
            Some(tx) => {
                // Tell the reader first, so no response arrives unannounced.
                tx.send(Sent {
                    correlation_id: corr,
                    batches,
                })
                .map_err(|_| anyhow!("the response reader stopped"))?;
            }
            None => {
                // acks=0: no response; a message counts once it is written.
                self.permits.release();
            }
        }
        self.stream.write_all(&self.wbuf).context("sending a produce request")?;
        if tx.is_none() {
            let c = &shared.counters;
            let bytes = planned * self.message_size;
            let t = shared.clock.now_ns();
            c.produced_msgs.fetch_add(planned, Relaxed);
            c.produced_bytes.fetch_add(bytes, Relaxed);
            if shared.in_window(t) {
                c.produced_window_msgs.fetch_add(planned, Relaxed);
                c.produced_window_bytes.fetch_add(bytes, Relaxed);
            }
            c.last_ack_ns.fetch_max(t, Relaxed);
        }
        Ok(planned)
    }
}

fn read_responses(
    stream: TcpStream,
    versions: Versions,
    rx: Receiver<Sent>,
    shared: Arc<Shared>,
    permits: Arc<Permits>,
) -> ProducerResult {
    let mut hist = new_histogram();
    let mut error_codes = BTreeMap::new();
    let mut frames = FrameReader::default();
    let mut failure = None;
    let message_size = shared.settings.message_size as u64;
    let warm = shared.warm_ns();
    let c = &shared.counters;
    while let Ok(sent) = rx.recv() {
        let frame = match frames.read_socket(&stream) {
            Ok(f) => f,
            Err(e) => {
                failure = Some(format!("waiting for a produce response: {e:#}"));
                break;
            }
        };
        let ack = shared.clock.now_ns();
        permits.release();
        let resp: ProduceResponse = match decode_response(frame, ApiKey::Produce, versions.produce, sent.correlation_id)
        {
            Ok(r) => r,
            Err(e) => {
                failure = Some(format!("{e:#}"));
                break;
            }
        };
        let codes = match_response(&resp, &sent.batches, &shared.topics);
        let in_window = shared.in_window(ack);
        for (b, code) in sent.batches.iter().zip(codes) {
            let n = b.count as u64;
            if code != 0 {
                *error_codes.entry(code).or_insert(0) += n;
                c.produce_errors.fetch_add(n, Relaxed);
                continue;
            }
            c.produced_msgs.fetch_add(n, Relaxed);
            c.produced_bytes.fetch_add(n * message_size, Relaxed);
            if in_window {
                c.produced_window_msgs.fetch_add(n, Relaxed);
                c.produced_window_bytes.fetch_add(n * message_size, Relaxed);
            }
            if b.stamp.step_ns == 0 {
                if b.stamp.first_ns >= warm {
                    record(&mut hist, ack.saturating_sub(b.stamp.first_ns), n);
                }
            } else {
                for k in 0..n {
                    let t = b.stamp.time_of(k);
                    if t >= warm {
                        record(&mut hist, ack.saturating_sub(t), 1);
                    }
                }
            }
        }
        c.last_ack_ns.fetch_max(ack, Relaxed);
    }
    if failure.is_some() {
        shared.fail();
        permits.close();
    }
    ProducerResult {
        latency: hist,
        error_codes,
        failure,
    }
}

/// Error code of each sent batch, from the response (-1 when the response
/// does not mention the partition).
fn match_response(resp: &ProduceResponse, batches: &[SentBatch], topics: &[String]) -> Vec<i16> {
    let mut codes = vec![-1i16; batches.len()];
    // Fast path: the response lists partitions in request order.
    let mut i = 0;
    let mut in_order = true;
    'outer: for t in &resp.responses {
        let ti = topics.iter().position(|n| n.as_str() == t.name.0.as_str());
        for p in &t.partition_responses {
            let hit = batches
                .get(i)
                .is_some_and(|b| Some(b.tp.topic) == ti && b.tp.partition == p.index);
            if !hit {
                in_order = false;
                break 'outer;
            }
            codes[i] = p.error_code;
            i += 1;
        }
    }
    if in_order && i == batches.len() {
        return codes;
    }
    let mut by_tp: BTreeMap<TopicPartition, i16> = BTreeMap::new();
    for t in &resp.responses {
        let Some(ti) = topics.iter().position(|n| n.as_str() == t.name.0.as_str()) else {
            continue;
        };
        for p in &t.partition_responses {
            by_tp.insert(
                TopicPartition {
                    topic: ti,
                    partition: p.index,
                },
                p.error_code,
            );
        }
    }
    batches
        .iter()
        .map(|b| by_tp.get(&b.tp).copied().unwrap_or(-1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};

    fn resp(parts: &[(&str, i32, i16)]) -> ProduceResponse {
        let mut topics: Vec<TopicProduceResponse> = Vec::new();
        for (t, p, code) in parts {
            let pr = PartitionProduceResponse::default()
                .with_index(*p)
                .with_error_code(*code);
            match topics.iter_mut().find(|x| x.name.0.as_str() == *t) {
                Some(x) => x.partition_responses.push(pr),
                None => topics.push(
                    TopicProduceResponse::default()
                        .with_name(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partition_responses(vec![pr]),
                ),
            }
        }
        ProduceResponse::default().with_responses(topics)
    }

    fn batch(topic: usize, partition: i32) -> SentBatch {
        SentBatch {
            tp: TopicPartition { topic, partition },
            count: 1,
            stamp: Stamp {
                first_ns: 0,
                step_ns: 0,
            },
        }
    }

    #[test]
    fn responses_match_batches() {
        let topics = vec!["a".to_string(), "b".to_string()];
        let batches = [batch(0, 0), batch(0, 3), batch(1, 1)];
        // In order.
        let r = resp(&[("a", 0, 0), ("a", 3, 6), ("b", 1, 0)]);
        assert_eq!(match_response(&r, &batches, &topics), vec![0, 6, 0]);
        // Out of order.
        let r = resp(&[("b", 1, 7), ("a", 3, 0), ("a", 0, 0)]);
        assert_eq!(match_response(&r, &batches, &topics), vec![0, 0, 7]);
        // Missing partition and unknown topic.
        let r = resp(&[("a", 0, 0), ("zzz", 1, 0)]);
        assert_eq!(match_response(&r, &batches, &topics), vec![0, -1, -1]);
    }
}
