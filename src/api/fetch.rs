//! Fetch: read from each partition's owning shard; when less than
//! `min_bytes` is there, park (Kafka's delayed fetch) until enough arrived,
//! `max_wait_ms` passed or the broker shuts down, then read once more.
//! Fetch sessions (KIP-227) are declined (session id 0), so every request
//! is a full fetch.
//!
//! A parked fetch costs a watcher per partition, not CPU: the read records
//! each partition's byte counter at its high watermark
//! ([`crate::log::PartitionLog::hw_bytes`]), and the owning shards' watches
//! ([`crate::shard::ops::watch`]) wake only when a high watermark moves, to
//! compare counters. Nothing is read again before the bytes that arrived
//! (capped per partition) can satisfy the fetch, or it must stop. When the
//! fetch spans several shards, each shard reports its bytes whenever they
//! grow and the handler sums them. Dropping the handler (its connection
//! closed) drops its watches: local ones directly, remote ones by a cancel
//! sent by the router.

use std::rc::Rc;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use kafka_protocol::messages::{ApiKey, FetchRequest};
use uuid::Uuid;

use super::{Api, Handler, IntoFrame, Order, Reply, RequestContext, ResponseFrame};
use crate::io::time::Instant;
use crate::protocol::error as ec;
use crate::protocol::fetch_response::{PartitionOut, TopicOut};
use crate::routing::{FetchPart, FetchPartResult, ShardRequest, ShardResponse, WatchPart, WatchReport, WatchSpec};
use crate::shard::Shard;

/// The Fetch handler: versions 4-18, worked on out of order.
pub struct Fetch;

impl Handler for Fetch {
    const API: Api = Api {
        key: ApiKey::Fetch,
        min_version: 4,
        max_version: 18,
        order: Order::OutOfOrder,
    };
    type Request = FetchRequest;
    type Response = FetchTopics;

    async fn start(ctx: &RequestContext, req: FetchRequest) -> Reply<FetchTopics> {
        Reply::Ready(FetchTopics(handle(ctx, req).await))
    }
}

/// A Fetch response's topics, framed by the zero-copy encoder.
pub struct FetchTopics(pub Vec<TopicOut>);

impl IntoFrame for FetchTopics {
    fn into_frame(self, ctx: &RequestContext) -> Option<ResponseFrame> {
        Some(crate::protocol::fetch_response::encode(
            ctx.api_version,
            ctx.correlation_id,
            0,
            ec::NONE,
            &self.0,
        ))
    }
}

struct Slot {
    topic_index: usize,
    partition: i32,
    offset: i64,
    max_bytes: usize,
    shard: Option<usize>,
    result: FetchPartResult,
}

impl Slot {
    /// What the wait planning needs to know of this partition's read.
    fn state(&self) -> PartState {
        let r = &self.result;
        let error = r.error != ec::NONE;
        let end = crate::shard::ops::end_offset(&r.batches).unwrap_or(self.offset);
        PartState {
            have: r.bytes() as u64,
            max_bytes: self.max_bytes as u64,
            short: !error && end < r.high_watermark,
            error,
        }
    }
}

/// A partition's part in a fetch, after a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartState {
    /// Bytes the read returned for it.
    pub have: u64,
    /// Its `partition_max_bytes`.
    pub max_bytes: u64,
    /// The read stopped short of the high watermark (more data is there
    /// that did not fit the partition's or the response's budget): the
    /// partition is as full as it can be, new data cannot add to it.
    pub short: bool,
    /// It returned an error (or is unknown).
    pub error: bool,
}

/// Whether a fetch answers after its first read, or waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitPlan {
    Respond,
    /// Wait until the partitions gained `need` more bytes, each at most its
    /// `rooms` entry (in partition order).
    Wait { need: u64, rooms: Vec<u64> },
}

/// Kafka's delayed-fetch rule: answer at once when a partition errored or
/// the bytes available reach `min_bytes` (a partition read short of its
/// high watermark counts as full, as Kafka counts the bytes up to the high
/// watermark, capped by the partition's max bytes); otherwise wait for the
/// missing bytes. A response cannot exceed `max_bytes`, and each partition
/// can add at most its room: a fetch never waits for more than these allow
/// (it answers at once when its partitions can add nothing).
pub fn plan_wait(parts: &[PartState], min_bytes: u64, max_bytes: u64) -> WaitPlan {
    if parts.is_empty() || parts.iter().any(|p| p.error) {
        return WaitPlan::Respond;
    }
    let target = min_bytes.min(max_bytes);
    let available = parts
        .iter()
        .map(|p| if p.short { p.have.max(p.max_bytes) } else { p.have })
        .fold(0u64, u64::saturating_add);
    if available >= target {
        return WaitPlan::Respond;
    }
    let rooms: Vec<u64> = parts
        .iter()
        .map(|p| if p.short { 0 } else { p.max_bytes.saturating_sub(p.have) })
        .collect();
    let room = rooms.iter().copied().fold(0u64, u64::saturating_add);
    let need = (target - available).min(room);
    if need == 0 {
        return WaitPlan::Respond;
    }
    WaitPlan::Wait { need, rooms }
}

/// The response size limit: the request's `max_bytes` (none when <= 0)
/// capped by the broker's `fetch.max.bytes`.
pub fn response_max_bytes(requested: i32, broker_max: usize) -> usize {
    let requested = if requested <= 0 {
        usize::MAX
    } else {
        requested as usize
    };
    requested.min(broker_max)
}

/// The bytes reported by the shards watching a parked fetch, summed.
pub struct Progress {
    need: u64,
    reported: Vec<u64>,
}

/// What a watch report means for the parked fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Read again and answer.
    Read,
    /// Keep waiting; watch that shard again for more than it reported.
    Rewatch,
}

impl Progress {
    pub fn new(shards: usize, need: u64) -> Self {
        Progress {
            need,
            reported: vec![0; shards],
        }
    }

    /// Shard `i` (in watch order) reported.
    pub fn report(&mut self, i: usize, r: WatchReport) -> Next {
        let last = self.reported.get(i).copied().unwrap_or(0);
        // A watch answers only for a reason: otherwise the fetch would spin
        // (watch, answer at once, watch again) without anything changing.
        crate::invariant!(
            r.stop || r.bytes >= self.need || r.bytes > last,
            "a fetch watch answered without progress ({} bytes, {} reported before, {} needed)",
            r.bytes,
            last,
            self.need
        );
        crate::invariant!(
            r.bytes >= last,
            "a fetch watch's bytes went back from {last} to {}",
            r.bytes
        );
        if let Some(slot) = self.reported.get_mut(i) {
            *slot = (*slot).max(r.bytes);
        }
        if r.stop || self.total() >= self.need {
            Next::Read
        } else {
            Next::Rewatch
        }
    }

    pub fn total(&self) -> u64 {
        self.reported.iter().copied().fold(0u64, u64::saturating_add)
    }

    /// What shard `i` reported last.
    pub fn reported(&self, i: usize) -> u64 {
        self.reported.get(i).copied().unwrap_or(0)
    }
}

/// Serve a Fetch; the caller encodes the result with the zero-copy encoder.
pub async fn handle(ctx: &RequestContext, req: FetchRequest) -> Vec<TopicOut> {
    let shard = &ctx.shard;
    let started = Instant::now();
    let by_id = ctx.api_version >= 13;
    let mut topics: Vec<(String, Uuid)> = Vec::with_capacity(req.topics.len());
    let mut slots: Vec<Slot> = Vec::new();
    {
        let meta = shard.meta.borrow();
        for t in &req.topics {
            let resolved = if by_id {
                meta.topic_by_id(&t.topic_id).map(|m| (m.name.clone(), m.id))
            } else {
                let n = t.topic.0.as_str();
                meta.topic(n).map(|m| (m.name.clone(), m.id))
            };
            let ti = topics.len();
            let (name, id, err) = match resolved {
                Some((n, id)) => (n, id, None),
                None if by_id => (String::new(), t.topic_id, Some(ec::UNKNOWN_TOPIC_ID)),
                None => (
                    t.topic.0.as_str().to_string(),
                    Uuid::nil(),
                    Some(ec::UNKNOWN_TOPIC_OR_PARTITION),
                ),
            };
            for p in &t.partitions {
                let owner = if err.is_none() {
                    meta.owner(&name, p.partition)
                } else {
                    None
                };
                let error = err.unwrap_or(if owner.is_none() {
                    ec::UNKNOWN_TOPIC_OR_PARTITION
                } else {
                    ec::NONE
                });
                slots.push(Slot {
                    topic_index: ti,
                    partition: p.partition,
                    offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes.max(0) as usize,
                    shard: owner,
                    result: FetchPartResult {
                        error,
                        high_watermark: -1,
                        log_start_offset: -1,
                        hw_bytes: 0,
                        batches: vec![],
                    },
                });
            }
            topics.push((name, id));
        }
    }
    let max_bytes = response_max_bytes(req.max_bytes, shard.config.fetch_max_bytes);
    let min_bytes = req.min_bytes.max(0) as u64;
    let max_wait = Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let deadline = started.add(max_wait);
    let involved: Vec<usize> = {
        let mut v: Vec<usize> = slots.iter().filter_map(|s| s.shard).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    read_round(shard, &topics, &mut slots, &involved, max_bytes).await;
    if !max_wait.is_zero() && !shard.shutting_down.get() {
        let states: Vec<PartState> = slots.iter().map(Slot::state).collect();
        if let WaitPlan::Wait { need, rooms } = plan_wait(&states, min_bytes, max_bytes as u64) {
            let watches: Vec<(usize, Vec<WatchPart>)> = involved
                .iter()
                .map(|&s| {
                    let parts = slots
                        .iter()
                        .zip(&rooms)
                        .filter(|(x, _)| x.shard == Some(s))
                        .map(|(x, room)| WatchPart {
                            topic: topics[x.topic_index].0.clone(),
                            partition: x.partition,
                            hw_bytes: x.result.hw_bytes,
                            room: *room,
                        })
                        .collect();
                    (s, parts)
                })
                .collect();
            park(shard, watches, need, deadline).await;
            // Kafka's delayed fetch completes with a fresh read, whatever
            // ended the wait; at shutdown it completes with what it has
            // (other shards may have stopped serving already).
            if !shard.shutting_down.get() {
                read_round(shard, &topics, &mut slots, &involved, max_bytes).await;
            }
        }
    }
    let mut out: Vec<TopicOut> = topics
        .into_iter()
        .map(|(name, id)| TopicOut {
            name,
            id,
            partitions: Vec::new(),
        })
        .collect();
    for slot in slots {
        let r = slot.result;
        if let Some(t) = out.get_mut(slot.topic_index) {
            t.partitions.push(PartitionOut {
                partition: slot.partition,
                error: r.error,
                high_watermark: r.high_watermark,
                last_stable_offset: r.high_watermark,
                log_start_offset: r.log_start_offset,
                records: r.batches,
            });
        }
    }
    out
}

/// Read every slot from its shard, then keep the response within
/// `max_bytes` in request order (KIP-74: the first batch of the first
/// non-empty partition is returned whole).
async fn read_round(
    shard: &Rc<Shard>,
    topics: &[(String, Uuid)],
    slots: &mut [Slot],
    involved: &[usize],
    max_bytes: usize,
) {
    // Every shard may fill the whole budget; the response is trimmed to it
    // below, in request order.
    let mut replies = Vec::with_capacity(involved.len());
    for &s in involved {
        let parts: Vec<FetchPart> = slots
            .iter()
            .filter(|x| x.shard == Some(s))
            .map(|x| FetchPart {
                topic: topics[x.topic_index].0.clone(),
                partition: x.partition,
                offset: x.offset,
                max_bytes: x.max_bytes,
            })
            .collect();
        replies.push((
            s,
            shard
                .dispatch(
                    s,
                    ShardRequest::Fetch {
                        parts,
                        max_bytes,
                        min_one: true,
                    },
                )
                .await,
        ));
    }
    for (s, r) in replies {
        let results = match r.await {
            Some(ShardResponse::Fetch(r)) => r,
            _ => Vec::new(),
        };
        let mut it = results.into_iter();
        for slot in slots.iter_mut().filter(|x| x.shard == Some(s)) {
            slot.result = it.next().unwrap_or(FetchPartResult {
                error: ec::UNKNOWN_SERVER_ERROR,
                high_watermark: -1,
                log_start_offset: -1,
                hw_bytes: 0,
                batches: vec![],
            });
        }
    }
    let mut remaining = max_bytes;
    let mut first = true;
    for slot in slots.iter_mut() {
        if slot.result.batches.is_empty() {
            continue;
        }
        crate::shard::ops::trim_to_budget(&mut slot.result.batches, remaining, first);
        let n = slot.result.bytes();
        if n > 0 {
            first = false;
        }
        remaining = remaining.saturating_sub(n);
    }
}

/// Park the fetch: watch each involved shard's partitions until the bytes
/// they gained add up to `need`, a watch says stop (a partition broke, the
/// deadline passed, that shard shuts down), the deadline passes or this
/// shard shuts down. Every await here can be pending: a watch answers only
/// when something changed ([`Progress::report`] checks that).
async fn park(shard: &Rc<Shard>, watches: Vec<(usize, Vec<WatchPart>)>, need: u64, deadline: Instant) {
    let _parked = crate::shard::Parked::new(&shard.parked_fetches);
    let several = watches.len() > 1;
    let mut progress = Progress::new(watches.len(), need);
    let watch = |i: usize, report_above: Option<u64>| {
        let shard = shard.clone();
        let (target, parts) = (watches[i].0, watches[i].1.clone());
        async move {
            let spec = WatchSpec {
                parts,
                need,
                report_above,
                deadline,
            };
            (i, shard.dispatch(target, ShardRequest::Watch(spec)).await.await)
        }
        .boxed_local()
    };
    let mut pending = FuturesUnordered::new();
    for i in 0..watches.len() {
        pending.push(watch(i, several.then_some(0)));
    }
    let mut ended = std::pin::pin!(futures_lite::future::or(
        shard.until_shutdown(),
        crate::io::time::sleep_until(deadline)
    ));
    loop {
        let event = futures_lite::future::or(async { pending.next().await }, async {
            (&mut ended).await;
            None
        })
        .await;
        let Some((i, reply)) = event else {
            return; // the end, or no watch left
        };
        let Some(ShardResponse::Watch(report)) = reply else {
            return; // that shard went away: the read says what happened
        };
        match progress.report(i, report) {
            Next::Read => return,
            Next::Rewatch => pending.push(watch(i, Some(progress.reported(i)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(have: u64, max_bytes: u64) -> PartState {
        PartState {
            have,
            max_bytes,
            short: false,
            error: false,
        }
    }

    #[test]
    fn a_caught_up_consumer_with_some_data_waits_for_the_rest() {
        // The consumer: fetch.min.bytes = 1000000, some bytes there.
        let plan = plan_wait(&[part(300, 1 << 20)], 1_000_000, 50 << 20);
        assert_eq!(
            plan,
            WaitPlan::Wait {
                need: 1_000_000 - 300,
                rooms: vec![(1 << 20) - 300]
            }
        );
        // Enough there: answer at once.
        assert_eq!(plan_wait(&[part(1_000_000, 1 << 20)], 1_000_000, 50 << 20), WaitPlan::Respond);
        // min_bytes 0 (Kafka: answer at once) and 1 with data.
        assert_eq!(plan_wait(&[part(0, 1 << 20)], 0, 50 << 20), WaitPlan::Respond);
        assert_eq!(plan_wait(&[part(1, 1 << 20)], 1, 50 << 20), WaitPlan::Respond);
        assert_eq!(
            plan_wait(&[part(0, 1 << 20)], 1, 50 << 20),
            WaitPlan::Wait {
                need: 1,
                rooms: vec![1 << 20]
            }
        );
    }

    #[test]
    fn errors_answer_at_once() {
        let mut broken = part(0, 100);
        broken.error = true;
        assert_eq!(plan_wait(&[part(0, 100), broken], 1000, 1 << 20), WaitPlan::Respond);
        assert_eq!(plan_wait(&[], 1000, 1 << 20), WaitPlan::Respond);
    }

    #[test]
    fn a_partition_read_short_of_its_high_watermark_counts_as_full() {
        // Its next batch did not fit its max bytes: Kafka counts the bytes up
        // to the high watermark, capped by the max, so the fetch is full.
        let mut full = part(600_000, 1 << 20);
        full.short = true;
        assert_eq!(plan_wait(&[full], 1 << 20, 50 << 20), WaitPlan::Respond);
        // With another partition the wait is for the rest, and the full one
        // has no room.
        assert_eq!(
            plan_wait(&[full, part(0, 1 << 20)], 3 << 20, 50 << 20),
            WaitPlan::Wait {
                need: 1 << 20,
                rooms: vec![0, 1 << 20]
            }
        );
    }

    #[test]
    fn never_waits_for_more_than_the_response_can_hold() {
        // min_bytes = 2^31-1 with max_bytes 50 MiB and one partition of at
        // most 1 MiB: it waits for that partition to fill, not for 2 GiB.
        let plan = plan_wait(&[part(70, 1 << 20)], i32::MAX as u64, 50 << 20);
        assert_eq!(
            plan,
            WaitPlan::Wait {
                need: (1 << 20) - 70,
                rooms: vec![(1 << 20) - 70]
            }
        );
        // The response limit caps min_bytes.
        assert_eq!(plan_wait(&[part(1000, 1 << 20)], 1 << 20, 1000), WaitPlan::Respond);
        // Partitions that can add nothing: answer now.
        assert_eq!(plan_wait(&[part(10, 10), part(0, 0)], 1000, 1 << 20), WaitPlan::Respond);
    }

    #[test]
    fn broker_fetch_max_bytes_caps_the_request() {
        assert_eq!(response_max_bytes(100, 57_671_680), 100);
        assert_eq!(response_max_bytes(i32::MAX, 57_671_680), 57_671_680);
        assert_eq!(response_max_bytes(0, 57_671_680), 57_671_680);
        assert_eq!(response_max_bytes(-1, 1024), 1024);
    }

    #[test]
    fn progress_sums_the_shards_reports() {
        let mut p = Progress::new(2, 1000);
        assert_eq!(p.report(0, WatchReport { bytes: 400, stop: false }), Next::Rewatch);
        assert_eq!(p.reported(0), 400);
        assert_eq!(p.report(1, WatchReport { bytes: 500, stop: false }), Next::Rewatch);
        assert_eq!(p.report(0, WatchReport { bytes: 600, stop: false }), Next::Read);
        assert_eq!(p.total(), 1100);
        // A stop ends the wait whatever the bytes.
        let mut p = Progress::new(2, 1000);
        assert_eq!(p.report(1, WatchReport { bytes: 0, stop: true }), Next::Read);
        // One shard alone can satisfy it.
        let mut p = Progress::new(1, 1000);
        assert_eq!(p.report(0, WatchReport { bytes: 1000, stop: false }), Next::Read);
    }

    #[test]
    #[cfg_attr(not(debug_assertions), ignore = "invariants panic only in debug builds and simulations")]
    #[should_panic(expected = "invariant violated")]
    fn a_watch_answering_without_progress_is_a_bug() {
        // That is the spin of issue 8: watch, answer at once, watch again.
        let mut p = Progress::new(2, 1000);
        let _ = p.report(0, WatchReport { bytes: 400, stop: false });
        let _ = p.report(0, WatchReport { bytes: 400, stop: false });
    }
}
