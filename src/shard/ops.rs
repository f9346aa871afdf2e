//! Partition operations run on the owning shard: produce, fetch, long-poll
//! watch and offset lookups.

use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use futures::FutureExt;

use crate::io::sync::{oneshot, OneshotSender, Permit};
use crate::io::time::{now_ms, sleep_until, timeout};
use crate::log::partition::{select_batches, AckState, Selection};
use crate::log::ReadPlan;
use crate::protocol::error as ec;
use crate::record;
use crate::routing::{
    DeleteRecordsPart, DeleteRecordsPartResult, FetchPart, FetchPartResult, ListOffsetsPart, ListOffsetsPartResult,
    PartitionSize, ProducePart, ProducePartResult, WatchPart, WatchReport, WatchSpec,
};

use super::{PartitionRef, Shard};

fn produce_error(code: i16, message: impl Into<String>) -> ProducePartResult {
    ProducePartResult {
        error: code,
        message: Some(message.into()),
        base_offset: -1,
        log_append_time: -1,
        log_start_offset: -1,
        record_errors: Vec::new(),
    }
}

/// The result of a part that failed validation (per-record errors for
/// keyless records on compacted topics and refused timestamps, KIP-467).
pub fn validation_error(e: &record::RecordError) -> ProducePartResult {
    crate::metrics::partition_error("Produce", e.kafka_code());
    let mut result = produce_error(e.kafka_code(), e.to_string());
    match e {
        record::RecordError::MissingKeys(indexes) => {
            result.record_errors = indexes.iter().map(|i| (*i, Some(e.to_string()))).collect();
        }
        record::RecordError::InvalidTimestamp(issues) => {
            result.record_errors = issues.iter().map(|i| (i.index(), Some(i.to_string()))).collect();
        }
        _ => {}
    }
    result
}

/// The appends of one produce request, and per part what to wait for: the
/// partition and the last offset appended.
struct Appended {
    results: Vec<ProducePartResult>,
    waits: Vec<Option<(PartitionRef, u64, i64)>>,
}

/// Validate (unless the connection's shard did) and append every part now,
/// in call order.
fn append_parts(shard: &Rc<Shard>, parts: Vec<ProducePart>, now: i64) -> Appended {
    let mut results = Vec::with_capacity(parts.len());
    let mut waits: Vec<Option<(PartitionRef, u64, i64)>> = Vec::with_capacity(parts.len());
    for part in parts {
        let Some(p) = shard.partition(&part.topic, part.partition) else {
            let code = if shard.meta.borrow().owner(&part.topic, part.partition).is_some() {
                ec::NOT_LEADER_OR_FOLLOWER
            } else {
                ec::UNKNOWN_TOPIC_OR_PARTITION
            };
            results.push(produce_error(code, "This server does not host this topic-partition."));
            waits.push(None);
            continue;
        };
        let validated = match part.validated {
            Some(v) => v,
            None => {
                let opts = {
                    let cfg = &p.log.borrow().config;
                    // Compacted topics need a key on every record (Kafka: INVALID_RECORD).
                    record::ValidateOptions {
                        require_keys: cfg.compact,
                        timestamps: cfg.timestamp_policy(now),
                        ..record::ValidateOptions::new(cfg.max_message_bytes)
                    }
                };
                match record::validate_payload(&part.records, &opts) {
                    Ok(v) => v,
                    Err(e) => {
                        results.push(validation_error(&e));
                        waits.push(None);
                        continue;
                    }
                }
            }
        };
        // Under the free-space threshold, user topics are refused before
        // anything is appended (internal topics go on until the disk is full).
        if shard.space.degraded() && !part.topic.starts_with("__") {
            crate::metrics::partition_error("Produce", ec::KAFKA_STORAGE_ERROR);
            results.push(produce_error(
                ec::KAFKA_STORAGE_ERROR,
                "The broker's disk is nearly full (ringlog.storage.min.free.bytes); retry later.",
            ));
            waits.push(None);
            continue;
        }
        let appended = p
            .log
            .borrow_mut()
            .append_from_frame(&part.records, &validated, now, part.frame_len);
        match appended {
            Ok(info) => {
                crate::metrics::bytes_in(&part.topic, part.records.len(), validated.total_records);
                shard.space.note_written(part.records.len() as u64);
                shard.mark_dirty(&p);
                results.push(ProducePartResult {
                    error: ec::NONE,
                    message: None,
                    base_offset: info.base_offset,
                    log_append_time: info.log_append_time,
                    log_start_offset: info.log_start_offset,
                    record_errors: Vec::new(),
                });
                waits.push(Some((p, info.rollbacks, info.last_offset)));
            }
            Err(e) => {
                let mut r = produce_error(e.kafka_code(), e.to_string());
                // Kafka reports the log start with errors too: clients
                // tell from it that an UNKNOWN_PRODUCER_ID comes from
                // records deleted below their last acknowledged batch.
                r.log_start_offset = p.log.borrow().log_start_offset();
                results.push(r);
                waits.push(None);
            }
        }
    }
    Appended { results, waits }
}

/// The results once the appends are acknowledged per `acks`: acks=1/all
/// wait (at most `timeout_ms`) for the data to be durable; acks=0 (no
/// response) waits for that too, without a timeout, so the request's
/// memory stays reserved until its staged data is written (backpressure for
/// producers faster than the disk).
async fn respond(shard: Rc<Shard>, appended: Appended, acks: i16, timeout_ms: i32) -> Vec<ProducePartResult> {
    let Appended { mut results, waits } = appended;
    if acks == 0 {
        wait_durable(&shard, &waits).await;
        return results;
    }
    let limit = Duration::from_millis(timeout_ms.max(0) as u64).max(Duration::from_millis(1));
    for (r, w) in results.iter_mut().zip(waits) {
        let Some((p, rollbacks, last)) = w else { continue };
        match timeout(limit, wait_ack(&p, rollbacks, last + 1)).await {
            Some(Ok(())) => {}
            Some(Err(code)) => {
                *r = produce_error(code, "The log could not be written.");
            }
            None => *r = produce_error(ec::REQUEST_TIMED_OUT, "Timed out waiting for the append to be durable."),
        }
    }
    results
}

/// Wait until every append is durable (or its partition failed or went
/// away), or the shard shuts down.
async fn wait_durable(shard: &Shard, waits: &[Option<(PartitionRef, u64, i64)>]) {
    let all = async {
        for (p, rollbacks, last) in waits.iter().flatten() {
            let _ = wait_ack(p, *rollbacks, last + 1).await;
        }
    };
    futures_lite::future::or(all, shard.until_shutdown()).await;
}

/// Validate and append every part now (in call order), then return a
/// future that resolves once the appends are acknowledged per `acks`.
/// Internal writers (the group coordinator) use this directly; client
/// requests go through [`produce_request`].
pub fn produce(
    shard: &Rc<Shard>,
    parts: Vec<ProducePart>,
    acks: i16,
    timeout_ms: i32,
) -> impl Future<Output = Vec<ProducePartResult>> + 'static {
    let appended = append_parts(shard, parts, now_ms());
    respond(shard.clone(), appended, acks, timeout_ms)
}

/// A client's produce request on the owning shard: [`produce`] once the
/// shard's staged-data budget has room for the records. Requests take their
/// place in that (FIFO) queue in arrival order, so appends keep the order
/// in which requests arrived; when there is room at once (the usual case)
/// the appends happen before this returns. The room is held until the data
/// is durable, also when the response went out earlier (acks=1/all that
/// timed out), so staged data never exceeds the budget.
pub fn produce_request(
    shard: &Rc<Shard>,
    parts: Vec<ProducePart>,
    acks: i16,
    timeout_ms: i32,
) -> LocalBoxFuture<'static, Vec<ProducePartResult>> {
    let need: usize = parts.iter().map(|p| p.records.len()).sum();
    let mut room = shard.staged_budget.enqueue(need);
    let (tx, rx) = oneshot();
    let shard = shard.clone();
    match (&mut room).now_or_never() {
        Some(permit) => {
            let appended = append_parts(&shard, parts, now_ms());
            crate::io::executor::spawn_detached(finish_produce(shard, appended, acks, timeout_ms, permit, tx));
        }
        None => {
            crate::metrics::with(|m| m.staged_budget_waits += 1);
            crate::io::executor::spawn_detached(async move {
                let stop = shard.until_shutdown();
                let permit = futures_lite::future::or(room.map(Some), stop.map(|_| None)).await;
                let Some(permit) = permit else {
                    // Not appended: a retriable error, as a broker in
                    // controlled shutdown answers.
                    tx.send(
                        parts
                            .iter()
                            .map(|_| produce_error(ec::NOT_LEADER_OR_FOLLOWER, "The broker is shutting down."))
                            .collect(),
                    );
                    return;
                };
                let appended = append_parts(&shard, parts, now_ms());
                finish_produce(shard, appended, acks, timeout_ms, permit, tx).await;
            });
        }
    }
    async move { rx.await.unwrap_or_default() }.boxed_local()
}

async fn finish_produce(
    shard: Rc<Shard>,
    appended: Appended,
    acks: i16,
    timeout_ms: i32,
    room: Permit,
    tx: OneshotSender<Vec<ProducePartResult>>,
) {
    let waits = appended.waits.clone();
    let results = respond(shard.clone(), appended, acks, timeout_ms).await;
    tx.send(results);
    wait_durable(&shard, &waits).await;
    drop(room);
}

/// Wait until an append made at rollback count `rollbacks` and ending at
/// `target - 1` is durable. A rollback after a full disk that dropped it, or
/// the partition going offline, fails it with KAFKA_STORAGE_ERROR
/// (retriable: nothing of it was acknowledged or visible).
pub async fn wait_ack(p: &PartitionRef, rollbacks: u64, target: i64) -> Result<(), i16> {
    loop {
        let listener = {
            let log = p.log.borrow();
            match log.ack_state(rollbacks, target) {
                AckState::Durable => return Ok(()),
                AckState::Lost | AckState::Offline => return Err(ec::KAFKA_STORAGE_ERROR),
                AckState::Pending => {}
            }
            if p.deleted.get() {
                return Err(ec::UNKNOWN_TOPIC_OR_PARTITION);
            }
            log.changed.listen()
        };
        listener.await;
    }
}

/// Read each part, sharing `max_bytes` across them (the first batch found
/// is always returned whole, as Kafka does).
/// Only when `min_one` may the first batch found exceed the budget (KIP-74:
/// the first batch of the first non-empty partition of the whole response);
/// every other partition gets only whole batches that fit.
pub async fn fetch(shard: &Rc<Shard>, parts: Vec<FetchPart>, max_bytes: usize, min_one: bool) -> Vec<FetchPartResult> {
    let mut remaining = max_bytes;
    let mut any = !min_one;
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        crate::io::yield_if_needed().await;
        let Some(p) = shard.partition(&part.topic, part.partition) else {
            let code = if shard.meta.borrow().owner(&part.topic, part.partition).is_some() {
                ec::NOT_LEADER_OR_FOLLOWER
            } else {
                ec::UNKNOWN_TOPIC_OR_PARTITION
            };
            out.push(FetchPartResult {
                error: code,
                high_watermark: -1,
                log_start_offset: -1,
                hw_bytes: 0,
                batches: vec![],
            });
            continue;
        };
        let budget = if any {
            part.max_bytes.min(remaining)
        } else {
            part.max_bytes.min(max_bytes)
        };
        let mut r = if any && budget == 0 {
            let log = p.log.borrow();
            FetchPartResult {
                error: 0,
                high_watermark: log.high_watermark(),
                log_start_offset: log.log_start_offset(),
                hw_bytes: log.hw_bytes(),
                batches: vec![],
            }
        } else {
            read_partition(&p, part.offset, budget.max(1)).await
        };
        trim_to_budget(&mut r.batches, budget, !any);
        let n = r.bytes();
        crate::metrics::bytes_out(&part.topic, n);
        crate::metrics::partition_error("Fetch", r.error);
        if n > 0 {
            any = true;
            remaining = remaining.saturating_sub(n);
        }
        out.push(r);
    }
    out
}

/// Keep the leading whole batches of `parts` (batches, or batches split into
/// header and body pieces) that fit in `budget` bytes; with `min_one` the
/// first batch is kept even if it alone is larger (KIP-74).
pub fn trim_to_budget(parts: &mut Vec<Bytes>, budget: usize, min_one: bool) {
    let mut total = 0usize;
    let mut i = 0usize;
    while i < parts.len() {
        let Some(h) = record::BatchHeader::parse(&parts[i]) else {
            parts.truncate(i);
            return;
        };
        let size = h.total_size();
        if total + size > budget && !(min_one && i == 0) {
            parts.truncate(i);
            return;
        }
        total += size;
        // skip the pieces that make up this batch
        let mut covered = 0usize;
        while i < parts.len() && covered < size {
            covered += parts[i].len();
            i += 1;
        }
    }
}

/// The offset after the last whole batch in `parts` (batches, or batches
/// split into header and body pieces), or None when there is none.
pub fn end_offset(parts: &[Bytes]) -> Option<i64> {
    let mut end = None;
    let mut i = 0usize;
    while i < parts.len() {
        let h = record::BatchHeader::parse(&parts[i])?;
        end = Some(h.last_offset() + 1);
        let mut covered = 0usize;
        while i < parts.len() && covered < h.total_size() {
            covered += parts[i].len();
            i += 1;
        }
    }
    end
}

/// `parts` (whole batches, or batches split into header and body pieces as
/// the read cache hands them out) as whole batches, each one `Bytes`
/// (pieces are copied together). Stops at a piece that does not start a
/// batch or a batch whose pieces are missing.
pub fn whole_batches(parts: &[Bytes]) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(parts.len());
    let mut i = 0usize;
    while let Some(first) = parts.get(i) {
        let Some(h) = record::BatchHeader::parse(first) else {
            break;
        };
        let size = h.total_size();
        if first.len() >= size {
            out.push(first.clone());
            i += 1;
            continue;
        }
        let mut joined = bytes::BytesMut::with_capacity(size);
        while joined.len() < size {
            let Some(piece) = parts.get(i) else {
                return out;
            };
            joined.extend_from_slice(piece);
            i += 1;
        }
        out.push(joined.freeze());
    }
    out
}

/// Read whole batches of `p` from `offset` (about `max_bytes`, the first
/// batch whole), from the read cache (as header and body pieces) or the
/// segment files.
pub(crate) async fn read_partition(p: &PartitionRef, offset: i64, max_bytes: usize) -> FetchPartResult {
    // The plan, the high watermark and its byte counter are read together:
    // a parked fetch counts what arrives past exactly this point.
    let (plan, hwm, lso, hw_bytes) = {
        let log = p.log.borrow();
        (
            log.plan_read(offset, max_bytes),
            log.high_watermark(),
            log.log_start_offset(),
            log.hw_bytes(),
        )
    };
    let mut r = FetchPartResult {
        error: 0,
        high_watermark: hwm,
        log_start_offset: lso,
        hw_bytes,
        batches: vec![],
    };
    match plan {
        Err(e) => r.error = e.kafka_code(),
        Ok(ReadPlan::Empty) => {}
        Ok(ReadPlan::Cached(b)) => {
            crate::metrics::with(|m| m.cache_hits += 1);
            r.batches = b
        }
        Ok(ReadPlan::File {
            file,
            position,
            len,
            file_end,
        }) => {
            crate::metrics::with(|m| m.cache_misses += 1);
            let mut pos = position;
            while pos < file_end {
                crate::io::yield_if_needed().await;
                let want = (len as u64).min(file_end - pos) as usize;
                let data = match file.read_at(pos, want).await {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::error!("read of {}-{} failed: {e}", p.topic, p.index);
                        r.error = ec::KAFKA_STORAGE_ERROR;
                        break;
                    }
                };
                match select_batches(&data, offset, hwm, max_bytes) {
                    Selection::Batches(b) => {
                        r.batches = b;
                        break;
                    }
                    Selection::Skip(n) => pos += n as u64,
                    Selection::Partial { at, size } => {
                        match file.read_at(pos + at as u64, size).await {
                            Ok(d) => {
                                if let Selection::Batches(b) = select_batches(&d, offset, hwm, usize::MAX) {
                                    r.batches = b;
                                }
                            }
                            Err(_) => r.error = ec::KAFKA_STORAGE_ERROR,
                        }
                        break;
                    }
                    Selection::End => break,
                }
            }
        }
    }
    r
}

/// The bytes a watched partition gained since the fetch read it, capped by
/// what it may still add to the response.
pub fn gained(part: &WatchPart, hw_bytes_now: u64) -> u64 {
    hw_bytes_now.saturating_sub(part.hw_bytes).min(part.room)
}

/// Whether a watch answers now, given the bytes its partitions gained
/// (`bytes`), whether one of them broke (failed, deleted, left the shard)
/// and whether it must stop (deadline passed, shard shutting down). None:
/// keep waiting, for a change that can satisfy the fetch.
pub fn watch_decision(spec: &WatchSpec, bytes: u64, broken: bool, stopping: bool) -> Option<WatchReport> {
    if broken || stopping {
        return Some(WatchReport { bytes, stop: true });
    }
    if bytes >= spec.need || spec.report_above.is_some_and(|r| bytes > r) {
        return Some(WatchReport { bytes, stop: false });
    }
    None
}

/// Park a fetch on this shard's partitions (Kafka's delayed fetch): answer
/// once the bytes that became readable past what the fetch read (capped per
/// partition) reach what it still needs, or exceed what was last reported
/// (a fetch over several shards sums the reports), or a partition broke,
/// the deadline passed or the shard shuts down. Costs a listener per
/// partition while parked, no CPU: it looks again only when a partition's
/// high watermark moved (or it failed or was deleted) and never reads data.
pub async fn watch(shard: &Rc<Shard>, spec: WatchSpec) -> WatchReport {
    let _parked = super::Parked::new(&shard.parked_watches);
    let mut parts = Vec::with_capacity(spec.parts.len());
    for wp in &spec.parts {
        match shard.partition(&wp.topic, wp.partition) {
            Some(p) => parts.push(p),
            // Gone or moved since the read: let the fetch report it.
            None => return WatchReport { bytes: 0, stop: true },
        }
    }
    watch_partitions(&parts, &spec, shard.until_shutdown()).await
}

/// The wait of [`watch`] over resolved partitions (`parts[i]` is
/// `spec.parts[i]`): it looks at them again only when one of them changed
/// (its `changed` Notify: a high watermark moved, it failed or was
/// deleted), and stops at the deadline or when `stop` completes.
pub async fn watch_partitions(
    parts: &[PartitionRef],
    spec: &WatchSpec,
    stop: impl std::future::Future<Output = ()>,
) -> WatchReport {
    let mut ended = std::pin::pin!(futures_lite::future::or(stop, sleep_until(spec.deadline)));
    let mut stopping = false;
    loop {
        let mut listeners = Vec::with_capacity(parts.len());
        let mut bytes = 0u64;
        let mut broken = false;
        for (p, wp) in parts.iter().zip(&spec.parts) {
            let log = p.log.borrow();
            broken |= log.is_failed() || p.deleted.get();
            bytes = bytes.saturating_add(gained(wp, log.hw_bytes()));
            listeners.push(log.changed.listen());
        }
        broken |= parts.len() != spec.parts.len();
        stopping |= spec.deadline.remaining().is_zero();
        if let Some(report) = watch_decision(spec, bytes, broken, stopping) {
            return report;
        }
        // Wait for one of the partitions to change, or the end. Each
        // listener completes once, after a notify_all that came after it
        // was made: this await is pending until then.
        let changed = futures::future::poll_fn(|cx| {
            for l in listeners.iter_mut() {
                if std::pin::Pin::new(l).poll(cx).is_ready() {
                    return std::task::Poll::Ready(());
                }
            }
            std::task::Poll::Pending
        });
        let woke_by_end = futures_lite::future::or(
            async {
                changed.await;
                false
            },
            async {
                (&mut ended).await;
                true
            },
        )
        .await;
        if woke_by_end {
            stopping = true;
        }
    }
}

/// DeleteRecords on this shard's partitions: each log start moves, then
/// its checkpoint is written (atomically, synced) before the answer, so an
/// acknowledged deletion survives a crash. Kafka writes that checkpoint
/// only once a minute.
pub async fn delete_records(shard: &Rc<Shard>, parts: Vec<DeleteRecordsPart>) -> Vec<DeleteRecordsPartResult> {
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        let Some(p) = shard.partition(&part.topic, part.partition) else {
            out.push(DeleteRecordsPartResult {
                error: ec::UNKNOWN_TOPIC_OR_PARTITION,
                low_watermark: -1,
            });
            continue;
        };
        // The new log start is made durable before anything can see it:
        // a fetch told the moved log start must not see it go back after
        // a failed checkpoint write and a restart (simulation seeds 203,
        // 779).
        let target = p.log.borrow().delete_records_target(part.offset);
        let r = match target {
            Err(error) => DeleteRecordsPartResult {
                error,
                low_watermark: -1,
            },
            Ok(target) => match persist_log_start(shard, &p, target).await {
                Ok(()) => match p.log.borrow_mut().delete_records(target) {
                    Ok(low_watermark) => DeleteRecordsPartResult {
                        error: ec::NONE,
                        low_watermark,
                    },
                    Err(error) => DeleteRecordsPartResult {
                        error,
                        low_watermark: -1,
                    },
                },
                Err(e) => {
                    tracing::warn!("{}-{}: writing the log start offset checkpoint: {e}", p.topic, p.index);
                    DeleteRecordsPartResult {
                        error: ec::KAFKA_STORAGE_ERROR,
                        low_watermark: -1,
                    }
                }
            },
        };
        crate::metrics::partition_error("DeleteRecords", r.error);
        out.push(r);
    }
    out
}

/// Write `p`'s log start offset checkpoint with `offset` if that is past
/// what is on disk. Writers of the shard take turns (one temporary file per
/// partition); a write of a higher offset covers a lower one.
async fn persist_log_start(shard: &Rc<Shard>, p: &PartitionRef, offset: i64) -> std::io::Result<()> {
    let _turn = shard.log_start_lock.lock().await;
    if p.deleted.get() {
        return Ok(());
    }
    let Some((path, data)) = p.log.borrow().log_start_checkpoint(offset) else {
        return Ok(());
    };
    crate::io::file::write_file_atomic(&path, &data).await?;
    p.log.borrow_mut().log_start_persisted(offset);
    Ok(())
}

/// The size on disk of this shard's partitions (of `topics` only, when
/// given).
pub fn partition_sizes(shard: &Shard, topics: Option<&[String]>) -> Vec<PartitionSize> {
    shard
        .all_partitions()
        .into_iter()
        .filter(|p| !p.deleted.get() && topics.is_none_or(|t| t.contains(&p.topic)))
        .map(|p| PartitionSize {
            topic: p.topic.clone(),
            partition: p.index,
            bytes: p.log.borrow().size_bytes(),
        })
        .collect()
}

/// Offset lookups: -1 latest, -2 earliest, -3 max timestamp, -4 earliest
/// local, -5 latest tiered (none), or the first offset with a timestamp at
/// or after the given one.
pub async fn list_offsets(shard: &Rc<Shard>, parts: Vec<ListOffsetsPart>) -> Vec<ListOffsetsPartResult> {
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        crate::io::yield_if_needed().await;
        let Some(p) = shard.partition(&part.topic, part.partition) else {
            out.push(ListOffsetsPartResult {
                error: ec::UNKNOWN_TOPIC_OR_PARTITION,
                timestamp: -1,
                offset: -1,
                leader_epoch: -1,
            });
            continue;
        };
        let (hw, start, epoch) = {
            let log = p.log.borrow();
            (log.high_watermark(), log.log_start_offset(), log.leader_epoch())
        };
        let mut r = ListOffsetsPartResult {
            error: 0,
            timestamp: -1,
            offset: -1,
            leader_epoch: epoch,
        };
        match part.timestamp {
            -1 => r.offset = hw,
            -2 | -4 => r.offset = start,
            -5 => r.offset = -1,
            -3 => {
                let seg = p.log.borrow().max_timestamp_segment();
                if let Some((file, pos, end, max_ts)) = seg {
                    if let Some((off, ts)) = find_by_timestamp(&file, pos, end, max_ts, hw, true).await {
                        r.offset = off;
                        r.timestamp = ts;
                    }
                }
            }
            ts if ts >= 0 => {
                let plan = p.log.borrow().plan_time_lookup(ts);
                if let Some((file, pos, end)) = plan {
                    if let Some((off, found_ts)) = find_by_timestamp(&file, pos, end, ts, hw, false).await {
                        r.offset = off;
                        r.timestamp = found_ts;
                    }
                }
            }
            _ => r.error = ec::INVALID_REQUEST,
        }
        out.push(r);
    }
    out
}

/// Scan batches from `pos` for the first record with timestamp >= `ts`
/// (or, with `exact`, equal to `ts`: the max-timestamp lookup). Returns
/// (offset, timestamp).
async fn find_by_timestamp(
    file: &crate::io::file::LogFile,
    mut pos: u64,
    end: u64,
    ts: i64,
    hwm: i64,
    exact: bool,
) -> Option<(i64, i64)> {
    const CHUNK: usize = 1 << 20;
    while pos < end {
        crate::io::yield_if_needed().await;
        let data: Bytes = file.read_at(pos, CHUNK.min((end - pos) as usize)).await.ok()?;
        let mut consumed = 0usize;
        for (at, h) in record::BatchIter::new(&data, false) {
            crate::io::yield_if_needed().await;
            consumed = at + h.total_size();
            if h.base_offset >= hwm {
                return None;
            }
            if h.max_timestamp < ts {
                continue;
            }
            let batch = data.get(at..at + h.total_size())?;
            let log_append = h.timestamp_type() == record::TimestampType::LogAppendTime;
            if log_append {
                return Some((h.base_offset, h.max_timestamp));
            }
            let records = record::decode_records(batch).ok()?;
            for rec in records {
                let t = h.base_timestamp + rec.timestamp_delta;
                if (exact && t == ts) || (!exact && t >= ts) {
                    return Some((h.base_offset + i64::from(rec.offset_delta), t));
                }
            }
        }
        if consumed == 0 {
            // a batch larger than the chunk
            let h = record::BatchHeader::parse(&data)?;
            let big = file.read_at(pos, h.total_size()).await.ok()?;
            if big.len() < h.total_size() {
                return None;
            }
            if h.max_timestamp >= ts {
                let records = record::decode_records(&big).ok()?;
                for rec in records {
                    let t = h.base_timestamp + rec.timestamp_delta;
                    if (exact && t == ts) || (!exact && t >= ts) {
                        return Some((h.base_offset + i64::from(rec.offset_delta), t));
                    }
                }
            }
            consumed = h.total_size();
        }
        pos += consumed as u64;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{build_batch, Compression, Record, BATCH_HEADER_LEN};

    fn batch(n: usize) -> Bytes {
        let v = vec![1u8; 100];
        let recs: Vec<Record<'_>> = (0..n)
            .map(|i| Record {
                key: None,
                value: Some(&v),
                headers: &[],
                timestamp_delta: i as i64,
            })
            .collect();
        Bytes::from(build_batch(0, 0, Compression::None, &recs))
    }

    fn spec(need: u64, report_above: Option<u64>) -> WatchSpec {
        WatchSpec {
            parts: Vec::new(),
            need,
            report_above,
            deadline: crate::io::time::Instant::now(),
        }
    }

    #[test]
    fn gained_bytes_are_capped_by_the_partitions_room() {
        let wp = WatchPart {
            topic: "t".into(),
            partition: 0,
            hw_bytes: 1000,
            room: 500,
        };
        assert_eq!(gained(&wp, 1000), 0);
        assert_eq!(gained(&wp, 1200), 200);
        assert_eq!(gained(&wp, 9000), 500);
        // A counter below the baseline (a recreated log) gains nothing.
        assert_eq!(gained(&wp, 10), 0);
    }

    #[test]
    fn a_watch_answers_only_when_it_can_satisfy_or_must_stop() {
        // One shard: only reaching `need` answers.
        let one = spec(1000, None);
        assert_eq!(watch_decision(&one, 0, false, false), None);
        assert_eq!(watch_decision(&one, 999, false, false), None);
        assert_eq!(
            watch_decision(&one, 1000, false, false),
            Some(WatchReport {
                bytes: 1000,
                stop: false
            })
        );
        assert_eq!(
            watch_decision(&one, 10, true, false),
            Some(WatchReport { bytes: 10, stop: true })
        );
        assert_eq!(
            watch_decision(&one, 10, false, true),
            Some(WatchReport { bytes: 10, stop: true })
        );
        // Several shards: more than reported last answers too, the same
        // amount does not (that would spin).
        let several = spec(1000, Some(300));
        assert_eq!(watch_decision(&several, 300, false, false), None);
        assert_eq!(
            watch_decision(&several, 301, false, false),
            Some(WatchReport {
                bytes: 301,
                stop: false
            })
        );
    }

    #[test]
    fn end_offset_of_whole_and_split_batches() {
        let a = Bytes::from(build_batch(10, 0, Compression::None, &records(3)));
        let b = Bytes::from(build_batch(13, 0, Compression::None, &records(5)));
        assert_eq!(end_offset(&[]), None);
        assert_eq!(end_offset(std::slice::from_ref(&a)), Some(13));
        assert_eq!(end_offset(&[a.clone(), b.clone()]), Some(18));
        let split = [
            a.slice(..BATCH_HEADER_LEN),
            a.slice(BATCH_HEADER_LEN..),
            b.slice(..BATCH_HEADER_LEN),
            b.slice(BATCH_HEADER_LEN..),
        ];
        assert_eq!(end_offset(&split), Some(18));
    }

    fn records(n: usize) -> Vec<Record<'static>> {
        (0..n)
            .map(|i| Record {
                key: None,
                value: Some(b"value"),
                headers: &[],
                timestamp_delta: i as i64,
            })
            .collect()
    }

    /// The parked watch on a real partition log, on a real executor: it
    /// answers only when enough bytes arrived (capped by the partition's
    /// room), when asked for progress, when a partition breaks, at its
    /// deadline or when stopped. Hang bounds only.
    mod parked {
        use std::cell::Cell;
        use std::collections::BTreeMap;
        use std::future::Future;
        use std::rc::Rc;
        use std::time::Duration;

        use super::super::{gained, watch_partitions};
        use super::batch;
        use crate::config::{BrokerConfig, Overrides, TopicConfig};
        use crate::io::file::IoMode;
        use crate::io::notify::Notify;
        use crate::io::time::{sleep, timeout, Instant};
        use crate::log::partition::{execute_sync, execute_writes};
        use crate::record;
        use crate::routing::{WatchPart, WatchReport, WatchSpec};
        use crate::shard::{Partition, PartitionRef};

        const HANG: Duration = Duration::from_secs(30);
        /// Long enough for a woken watch to have answered.
        const SETTLE: Duration = Duration::from_millis(30);

        fn on_executor<F, Fut>(f: F)
        where
            F: FnOnce() -> Fut + Send + 'static,
            Fut: Future<Output = ()> + 'static,
        {
            crate::io::executor::run_test_executor("watch-test", f)
        }

        async fn partition(dir: &std::path::Path) -> PartitionRef {
            let broker = BrokerConfig::load(&Overrides::default()).unwrap();
            let cfg = TopicConfig::resolve(&BTreeMap::new(), &broker);
            let log = crate::log::partition::open(dir, "t", 0, cfg, IoMode::Direct, true, 0)
                .await
                .unwrap();
            Rc::new(Partition::new("t", 0, log))
        }

        /// Append one batch of `n` records and commit it (moves the high
        /// watermark, notifies `changed`); its size.
        async fn append(p: &PartitionRef, n: usize) -> u64 {
            let payload = batch(n);
            let v = record::validate_produce_payload(&payload, 1 << 20).unwrap();
            let mut job = {
                let mut log = p.log.borrow_mut();
                log.append(&payload, &v, 0).unwrap();
                log.take_flush_job(0).unwrap()
            };
            execute_writes(&mut job).await.unwrap();
            execute_sync(&job).await.unwrap();
            p.log.borrow_mut().complete_flush(job, true, 0);
            payload.len() as u64
        }

        fn spec(p: &PartitionRef, room: u64, need: u64, report_above: Option<u64>, wait: Duration) -> WatchSpec {
            WatchSpec {
                parts: vec![WatchPart {
                    topic: "t".into(),
                    partition: 0,
                    hw_bytes: p.log.borrow().hw_bytes(),
                    room,
                }],
                need,
                report_above,
                deadline: Instant::now().add(wait),
            }
        }

        type Answer = Rc<Cell<Option<WatchReport>>>;

        /// Start a watch as its own task; its answer lands in the cell.
        fn park(
            p: &PartitionRef,
            spec: WatchSpec,
            stop: impl Future<Output = ()> + 'static,
        ) -> (Answer, crate::io::executor::Task<()>) {
            let answer: Answer = Rc::new(Cell::new(None));
            let (p, a) = (p.clone(), answer.clone());
            let task = crate::io::spawn(async move {
                a.set(Some(watch_partitions(&[p], &spec, stop).await));
            });
            (answer, task)
        }

        /// Still parked: no answer, and listening on the partition again.
        async fn assert_parked(p: &PartitionRef, answer: &Answer, what: &str) {
            sleep(SETTLE).await;
            assert_eq!(answer.get(), None, "{what}: the watch answered");
            assert_eq!(
                p.log.borrow().changed.waiting(),
                1,
                "{what}: the watch is not listening"
            );
        }

        #[test]
        fn wakes_only_when_the_missing_bytes_arrived() {
            on_executor(|| async {
                let dir = tempfile::tempdir().unwrap();
                let p = partition(dir.path()).await;
                let first = append(&p, 1).await;
                assert_eq!(p.log.borrow().hw_bytes(), first, "the counter counts the batch bytes");
                let one = batch(1).len() as u64;
                let (answer, task) = park(&p, spec(&p, 1 << 20, 3 * one, None, HANG), std::future::pending());
                assert_parked(&p, &answer, "nothing new").await;
                append(&p, 1).await;
                assert_parked(&p, &answer, "a third of what it needs").await;
                append(&p, 1).await;
                assert_parked(&p, &answer, "two thirds of what it needs").await;
                append(&p, 1).await;
                assert!(timeout(HANG, task).await.is_some(), "the watch hangs");
                assert_eq!(
                    answer.get(),
                    Some(WatchReport {
                        bytes: 3 * one,
                        stop: false
                    })
                );
                assert_eq!(p.log.borrow().changed.waiting(), 0, "the watch left a listener behind");
            });
        }

        #[test]
        fn bytes_beyond_a_partitions_room_do_not_count() {
            on_executor(|| async {
                let dir = tempfile::tempdir().unwrap();
                let p = partition(dir.path()).await;
                append(&p, 1).await;
                let one = batch(1).len() as u64;
                // Room for one batch, but two missing: only the deadline ends it.
                let (answer, task) = park(
                    &p,
                    spec(&p, one, 2 * one, None, Duration::from_millis(300)),
                    std::future::pending(),
                );
                for _ in 0..3 {
                    append(&p, 1).await;
                }
                assert_eq!(gained(&spec(&p, one, 0, None, HANG).parts[0], u64::MAX), one);
                assert!(timeout(HANG, task).await.is_some(), "the watch ignored its deadline");
                assert_eq!(answer.get(), Some(WatchReport { bytes: one, stop: true }));
            });
        }

        #[test]
        fn reports_progress_when_asked_and_stops_on_request_or_breakage() {
            on_executor(|| async {
                let dir = tempfile::tempdir().unwrap();
                let p = partition(dir.path()).await;
                append(&p, 1).await;
                let one = batch(1).len() as u64;
                // Part of a fetch over several shards: more than reported
                // before answers; the same amount does not.
                // (Its read was one batch ago, and it reported that batch.)
                let mut s = spec(&p, 1 << 20, 10 * one, Some(one), HANG);
                s.parts[0].hw_bytes -= one;
                let (answer, task) = park(&p, s, std::future::pending());
                assert_parked(&p, &answer, "only what it reported").await;
                append(&p, 1).await;
                assert!(timeout(HANG, task).await.is_some(), "the watch hangs");
                assert_eq!(
                    answer.get(),
                    Some(WatchReport {
                        bytes: 2 * one,
                        stop: false
                    })
                );
                // Stopped (shutdown): answers with what it has.
                let stop = Rc::new(Notify::new());
                let (answer, task) = park(&p, spec(&p, 1 << 20, 10 * one, None, HANG), stop.listen());
                assert_parked(&p, &answer, "before the stop").await;
                stop.notify_all();
                assert!(timeout(HANG, task).await.is_some(), "the watch ignored the stop");
                assert_eq!(answer.get(), Some(WatchReport { bytes: 0, stop: true }));
                // The partition is deleted: answers so that the fetch reports it.
                let (answer, task) = park(&p, spec(&p, 1 << 20, 10 * one, None, HANG), std::future::pending());
                assert_parked(&p, &answer, "before the deletion").await;
                p.deleted.set(true);
                p.log.borrow().changed.notify_all();
                assert!(timeout(HANG, task).await.is_some(), "the watch ignored the deletion");
                assert_eq!(answer.get(), Some(WatchReport { bytes: 0, stop: true }));
                // Dropping a parked watch (its fetch was cancelled) leaves no listener.
                p.deleted.set(false);
                let (answer, task) = park(&p, spec(&p, 1 << 20, 10 * one, None, HANG), std::future::pending());
                assert_parked(&p, &answer, "before the drop").await;
                drop(task);
                sleep(SETTLE).await;
                assert_eq!(p.log.borrow().changed.waiting(), 0, "a dropped watch still listens");
            });
        }
    }

    #[test]
    fn trimming_keeps_whole_batches_that_fit() {
        let a = batch(3);
        let b = batch(5);
        let size_a = a.len();
        // split pieces (cache) and whole batches (file reads)
        let mut parts = vec![a.slice(..BATCH_HEADER_LEN), a.slice(BATCH_HEADER_LEN..), b.clone()];
        trim_to_budget(&mut parts, size_a + b.len() - 1, false);
        assert_eq!(parts.len(), 2, "the second batch does not fit");
        let mut parts = vec![a.clone(), b.clone()];
        trim_to_budget(&mut parts, size_a - 1, false);
        assert!(parts.is_empty(), "nothing fits");
        let mut parts = vec![a.clone(), b.clone()];
        trim_to_budget(&mut parts, size_a - 1, true);
        assert_eq!(parts.len(), 1, "the first batch is kept when it alone is too large");
        let mut parts = vec![a.clone(), b.clone()];
        trim_to_budget(&mut parts, usize::MAX, false);
        assert_eq!(parts.len(), 2);
    }
}
