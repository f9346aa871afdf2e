//! Fetch: read from each partition's owning shard, long-polling (woken by
//! appends, not timers) until `min_bytes` are there or `max_wait_ms` passed.
//! Fetch sessions (KIP-227) are declined (session id 0), so every request
//! is a full fetch.

use std::time::Duration;

use futures::FutureExt;
use kafka_protocol::messages::{ApiKey, FetchRequest};
use uuid::Uuid;

use super::{Api, Handler, IntoFrame, Order, Reply, RequestContext, ResponseFrame};
use crate::io::time::Instant;
use crate::protocol::error as ec;
use crate::protocol::fetch_response::{PartitionOut, TopicOut};
use crate::routing::{FetchPart, FetchPartResult, ShardRequest, ShardResponse, WatchPart};

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
                        batches: vec![],
                    },
                });
            }
            topics.push((name, id));
        }
    }
    let max_bytes = if req.max_bytes <= 0 {
        usize::MAX
    } else {
        req.max_bytes as usize
    };
    let min_bytes = req.min_bytes.max(0) as usize;
    let max_wait = Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let involved: Vec<usize> = {
        let mut v: Vec<usize> = slots.iter().filter_map(|s| s.shard).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    loop {
        // Read round: every involved shard reads its partitions.
        // Every shard may fill the whole budget; the response is trimmed to
        // it below, in request order.
        let mut replies = Vec::with_capacity(involved.len());
        for &s in &involved {
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
                    batches: vec![],
                });
            }
        }
        let total: usize = slots.iter().map(|s| s.result.bytes()).sum();
        let any_error = slots.iter().any(|s| s.result.error != ec::NONE);
        let elapsed = started.elapsed();
        if total >= min_bytes.max(1)
            || any_error
            || elapsed >= max_wait
            || involved.is_empty()
            || shard.shutting_down.get()
        {
            break;
        }
        // Long poll: wait until an append moves any watched partition.
        let remaining = (max_wait - elapsed).as_millis() as u64;
        let mut watches = Vec::with_capacity(involved.len());
        for &s in &involved {
            let parts: Vec<WatchPart> = slots
                .iter()
                .filter(|x| x.shard == Some(s))
                .map(|x| WatchPart {
                    topic: topics[x.topic_index].0.clone(),
                    partition: x.partition,
                    offset: x.offset,
                })
                .collect();
            watches.push(
                shard
                    .dispatch(
                        s,
                        ShardRequest::Watch {
                            parts,
                            max_wait_ms: remaining,
                        },
                    )
                    .await,
            );
        }
        let _ = crate::io::time::timeout(
            Duration::from_millis(remaining),
            futures::future::select_all(watches.into_iter().map(|w| w.map(|_| ()).boxed_local())),
        )
        .await;
    }
    // KIP-74: the response stays within max_bytes, except that the first
    // batch of the first non-empty partition is returned whole.
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
