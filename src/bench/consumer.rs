//! Consumer connections: Fetch loops over manually assigned partitions,
//! counting messages and recording end-to-end latency from the send stamp
//! in each batch.
//!
//! Assignment is manual: [`Assignment::Manual`] spreads the partitions over
//! the consumers round-robin. A consumer-group mode would get each
//! consumer's partitions from JoinGroup/SyncGroup instead (and commit
//! offsets); the fetch loop itself only needs a partition list and start
//! offsets, so it would stay as it is.

use crate::io::rand::HashMap;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::client::Conn;
use super::cluster::{list_offsets, TopicPartition};
use super::schedule::round_robin;
use super::shared::Shared;
use super::stats::{new_histogram, record};
use super::template::read_stamp;
use crate::record::{BatchHeader, BATCH_HEADER_LEN};

/// How consumers get their partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignment {
    /// Partitions split round-robin over the consumers, fixed for the run.
    Manual,
}

impl Assignment {
    /// Each consumer's partitions.
    pub fn assign(self, partitions: &[TopicPartition], consumers: usize) -> Vec<Vec<TopicPartition>> {
        match self {
            Assignment::Manual => round_robin(partitions, consumers),
        }
    }
}

/// Fetch settings, as the Java consumer's defaults.
const FETCH_MAX_WAIT_MS: i32 = 500;
const FETCH_MIN_BYTES: i32 = 1;
const FETCH_MAX_BYTES: i32 = 50 << 20;
const PARTITION_MAX_BYTES: i32 = 1 << 20;

const OFFSET_OUT_OF_RANGE: i16 = 1;

/// One consumer connection's job.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub name: String,
    pub addr: String,
    pub partitions: Vec<TopicPartition>,
}

#[derive(Debug)]
pub struct ConsumerResult {
    pub latency: Histogram<u64>,
    pub error_codes: BTreeMap<i16, u64>,
    pub failure: Option<String>,
}

/// Per-partition progress.
#[derive(Debug, Clone, Copy)]
struct Position {
    tp: TopicPartition,
    offset: i64,
    /// Catch-up target: stop at this offset.
    target: Option<i64>,
}

/// What one partition's fetched data held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Consumed {
    pub messages: u64,
    pub next_offset: Option<i64>,
}

/// Count the records at or after `position` in `data` (whole batches only;
/// a truncated batch at the end is left for the next fetch), calling
/// `stamped(stamp, first_record_index, count)` for stamped batches.
pub fn consume_batches(
    data: &[u8],
    position: i64,
    mut stamped: impl FnMut(super::template::Stamp, u64, u64),
) -> Consumed {
    let mut out = Consumed::default();
    let mut pos = 0usize;
    let mut position = position;
    while let Some(h) = data.get(pos..).and_then(BatchHeader::parse) {
        let size = h.total_size();
        if size < BATCH_HEADER_LEN {
            break;
        }
        let Some(batch) = data.get(pos..pos + size) else {
            break;
        };
        pos += size;
        let next = h.next_offset();
        if next <= position {
            continue;
        }
        if !h.is_control() && h.record_count > 0 {
            let count = h.record_count as u64;
            // Records before `position` in this batch were read already.
            let skip = (position - h.base_offset).clamp(0, count as i64) as u64;
            let n = count - skip;
            if n > 0 {
                out.messages += n;
                if let Some(stamp) = read_stamp(batch, &h) {
                    stamped(stamp, skip, n);
                }
            }
        }
        position = next;
        out.next_offset = Some(next);
    }
    out
}

/// Run one consumer connection (blocking): position, tell `ready`, then
/// fetch until told to stop (or caught up).
pub fn run(spec: ConsumerSpec, shared: Arc<Shared>, ready: Sender<Result<(), String>>) -> ConsumerResult {
    let mut result = ConsumerResult {
        latency: new_histogram(),
        error_codes: BTreeMap::new(),
        failure: None,
    };
    let mut ready = Some(ready);
    if let Err(e) = fetch_loop(&spec, &shared, &mut result, &mut ready) {
        let msg = format!("consumer {} ({}): {e:#}", spec.name, spec.addr);
        if let Some(r) = ready.take() {
            let _ = r.send(Err(msg.clone()));
        }
        shared.fail();
        result.failure = Some(msg);
    }
    result
}

fn fetch_loop(
    spec: &ConsumerSpec,
    shared: &Shared,
    result: &mut ConsumerResult,
    ready: &mut Option<Sender<Result<(), String>>>,
) -> anyhow::Result<()> {
    let s = &shared.settings;
    let mut conn = Conn::connect(&spec.addr)?;
    let topics = &shared.topics;
    let starts = list_offsets(
        &mut conn,
        topics,
        &spec.partitions,
        s.consume_from.list_offsets_timestamp(),
    )
    .context("finding start offsets")?;
    let targets = if s.until_caught_up {
        Some(list_offsets(&mut conn, topics, &spec.partitions, -1).context("finding end offsets")?)
    } else {
        None
    };
    let mut positions: Vec<Position> = spec
        .partitions
        .iter()
        .zip(&starts)
        .enumerate()
        .map(|(i, (tp, &offset))| Position {
            tp: *tp,
            offset,
            target: targets.as_ref().map(|t| t[i]),
        })
        .collect();
    let index: HashMap<TopicPartition, usize> = positions.iter().enumerate().map(|(i, p)| (p.tp, i)).collect();
    if let Some(r) = ready.take() {
        let _ = r.send(Ok(()));
    }
    // Start with the producers, so catch-up reads are timed from the start.
    loop {
        if shared.aborted() || shared.stop_consumers.load(Relaxed) {
            return Ok(());
        }
        let start = shared.start_ns();
        if start != u64::MAX && shared.clock.now_ns() >= start {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let message_size = s.message_size as u64;
    let c = &shared.counters;
    let mut last_progress = Instant::now();
    loop {
        if shared.aborted() || shared.stop_consumers.load(Relaxed) {
            return Ok(());
        }
        if positions.iter().all(|p| p.target.is_some_and(|t| p.offset >= t)) {
            return Ok(());
        }
        if s.until_caught_up && last_progress.elapsed() > s.drain_timeout {
            return Err(stalled(&positions, topics, s.drain_timeout));
        }
        let req = fetch_request(&positions, topics, s.until_caught_up);
        let resp: FetchResponse = conn.call(ApiKey::Fetch, conn.versions.fetch, &req)?;
        let now = shared.clock.now_ns();
        if resp.error_code != 0 {
            *result.error_codes.entry(resp.error_code).or_insert(0) += 1;
            c.consume_errors.fetch_add(1, Relaxed);
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let warm = shared.warm_ns();
        let in_window = shared.in_window(now);
        let mut backoff = false;
        let mut got = 0u64;
        for t in &resp.responses {
            let Some(ti) = topics.iter().position(|n| n.as_str() == t.topic.0.as_str()) else {
                continue;
            };
            for p in &t.partitions {
                let Some(&i) = index.get(&TopicPartition {
                    topic: ti,
                    partition: p.partition_index,
                }) else {
                    continue;
                };
                if p.error_code != 0 {
                    *result.error_codes.entry(p.error_code).or_insert(0) += 1;
                    c.consume_errors.fetch_add(1, Relaxed);
                    if p.error_code == OFFSET_OUT_OF_RANGE {
                        let earliest = list_offsets(&mut conn, topics, &[positions[i].tp], -2)?;
                        positions[i].offset = earliest[0].max(positions[i].offset.min(p.high_watermark.max(0)));
                    }
                    backoff = true;
                    continue;
                }
                let Some(records) = &p.records else { continue };
                let hist = &mut result.latency;
                let consumed = consume_batches(records, positions[i].offset, |stamp, first, n| {
                    if stamp.step_ns == 0 {
                        if stamp.first_ns >= warm {
                            record(hist, now.saturating_sub(stamp.first_ns), n);
                        }
                    } else {
                        for k in first..first + n {
                            let t = stamp.time_of(k);
                            if t >= warm {
                                record(hist, now.saturating_sub(t), 1);
                            }
                        }
                    }
                });
                if let Some(next) = consumed.next_offset {
                    positions[i].offset = next;
                }
                got += consumed.messages;
            }
        }
        drop(resp);
        if got > 0 {
            last_progress = Instant::now();
            c.consumed_msgs.fetch_add(got, Relaxed);
            c.consumed_bytes.fetch_add(got * message_size, Relaxed);
            if in_window {
                c.consumed_window_msgs.fetch_add(got, Relaxed);
                c.consumed_window_bytes.fetch_add(got * message_size, Relaxed);
            }
            c.last_consume_ns.fetch_max(now, Relaxed);
        }
        if backoff {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The error of a catch-up read that stopped making progress.
fn stalled(positions: &[Position], topics: &[String], waited: Duration) -> anyhow::Error {
    let behind: Vec<String> = positions
        .iter()
        .filter_map(|p| {
            let t = p.target?;
            (p.offset < t).then(|| {
                let name = topics.get(p.tp.topic).map(String::as_str).unwrap_or("?");
                format!("{name}-{} at offset {} of {t}", p.tp.partition, p.offset)
            })
        })
        .take(5)
        .collect();
    anyhow::anyhow!(
        "no progress for {:.0} s before reaching the end offsets seen at start: {}",
        waited.as_secs_f64(),
        behind.join(", ")
    )
}

fn fetch_request(positions: &[Position], topics: &[String], catch_up: bool) -> FetchRequest {
    let mut fetch_topics: Vec<FetchTopic> = Vec::new();
    for p in positions {
        if catch_up && p.target.is_some_and(|t| p.offset >= t) {
            continue;
        }
        let part = FetchPartition::default()
            .with_partition(p.tp.partition)
            .with_fetch_offset(p.offset)
            .with_partition_max_bytes(PARTITION_MAX_BYTES)
            .with_current_leader_epoch(-1)
            .with_log_start_offset(-1)
            .with_last_fetched_epoch(-1);
        let name = topics.get(p.tp.topic).map(String::as_str).unwrap_or_default();
        match fetch_topics.last_mut() {
            Some(t) if t.topic.0.as_str() == name => t.partitions.push(part),
            _ => fetch_topics.push(
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(name.to_string())))
                    .with_partitions(vec![part]),
            ),
        }
    }
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(FETCH_MAX_WAIT_MS)
        .with_min_bytes(FETCH_MIN_BYTES)
        .with_max_bytes(FETCH_MAX_BYTES)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(fetch_topics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::template::{Stamp, Template};
    use crate::record::{rewrite_batch, Compression};
    use bytes::{Bytes, BytesMut};

    fn concat(batches: &[Vec<u8>]) -> Bytes {
        Bytes::from(batches.concat())
    }

    fn batch(t: &Template, base: i64, count: usize, stamp: Stamp) -> Vec<u8> {
        let mut b = BytesMut::new();
        t.write(&mut b, count, 0, stamp);
        let mut v = b.to_vec();
        rewrite_batch(&mut v, base, 0, None);
        v
    }

    #[test]
    fn counts_records_after_the_position() {
        let t = Template::new(10, 64, false, Compression::None, 1);
        let s1 = Stamp {
            first_ns: 100,
            step_ns: 0,
        };
        let s2 = Stamp {
            first_ns: 200,
            step_ns: 5,
        };
        let data = concat(&[batch(&t, 0, 4, s1), batch(&t, 4, 3, s2)]);
        let mut seen = Vec::new();
        let c = consume_batches(&data, 0, |s, first, n| seen.push((s, first, n)));
        assert_eq!(
            c,
            Consumed {
                messages: 7,
                next_offset: Some(7)
            }
        );
        assert_eq!(seen, vec![(s1, 0, 4), (s2, 0, 3)]);
        // Starting inside the first batch.
        seen.clear();
        let c = consume_batches(&data, 2, |s, first, n| seen.push((s, first, n)));
        assert_eq!(
            c,
            Consumed {
                messages: 5,
                next_offset: Some(7)
            }
        );
        assert_eq!(seen, vec![(s1, 2, 2), (s2, 0, 3)]);
        // Everything read already.
        let c = consume_batches(&data, 7, |_, _, _| panic!("nothing new"));
        assert_eq!(
            c,
            Consumed {
                messages: 0,
                next_offset: None
            }
        );
    }

    #[test]
    fn truncated_tail_is_left_for_later() {
        let t = Template::new(10, 64, false, Compression::None, 1);
        let s = Stamp {
            first_ns: 1,
            step_ns: 0,
        };
        let mut data = [batch(&t, 0, 2, s), batch(&t, 2, 2, s)].concat();
        data.truncate(data.len() - 5);
        let c = consume_batches(&data, 0, |_, _, _| {});
        assert_eq!(
            c,
            Consumed {
                messages: 2,
                next_offset: Some(2)
            }
        );
        assert_eq!(consume_batches(&[], 0, |_, _, _| {}), Consumed::default());
        assert_eq!(consume_batches(&[0xff; 100], 0, |_, _, _| {}), Consumed::default());
    }

    fn position(topic: usize, partition: i32, offset: i64, target: Option<i64>) -> Position {
        Position {
            tp: TopicPartition { topic, partition },
            offset,
            target,
        }
    }

    #[test]
    fn fetch_request_groups_topics() {
        let positions = vec![
            position(0, 0, 5, Some(5)),
            position(0, 1, 7, Some(9)),
            position(1, 0, 0, None),
        ];
        let topics = vec!["a".to_string(), "b".to_string()];
        let req = fetch_request(&positions, &topics, false);
        assert_eq!(req.topics.len(), 2);
        assert_eq!(req.topics[0].partitions.len(), 2);
        assert_eq!(req.topics[0].partitions[1].fetch_offset, 7);
        // Caught-up partitions are not fetched again.
        let req = fetch_request(&positions, &topics, true);
        assert_eq!(req.topics[0].partitions.len(), 1);
        assert_eq!(req.topics[0].partitions[0].partition, 1);
    }

    #[test]
    fn stall_report_names_the_lagging_partitions() {
        let positions = vec![position(0, 0, 5, Some(5)), position(0, 1, 7, Some(9))];
        let e = stalled(&positions, &["t".to_string()], Duration::from_secs(30));
        assert_eq!(
            e.to_string(),
            "no progress for 30 s before reaching the end offsets seen at start: t-1 at offset 7 of 9"
        );
    }

    #[test]
    fn manual_assignment_splits_partitions() {
        let parts: Vec<TopicPartition> = (0..16).map(|p| TopicPartition { topic: 0, partition: p }).collect();
        let a = Assignment::Manual.assign(&parts, 2);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].len(), 8);
        assert!(a[0].iter().all(|tp| tp.partition % 2 == 0));
    }
}
