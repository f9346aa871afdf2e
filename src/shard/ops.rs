//! Partition operations run on the owning shard: produce, fetch, long-poll
//! watch and offset lookups.

use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;

use crate::io::time::{now_ms, timeout};
use crate::log::partition::{select_batches, AckState, Selection};
use crate::log::ReadPlan;
use crate::protocol::error as ec;
use crate::record;
use crate::routing::{
    FetchPart, FetchPartResult, ListOffsetsPart, ListOffsetsPartResult, ProducePart, ProducePartResult, WatchPart,
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

/// Validate and append every part now (in call order), then return a
/// future that resolves once the appends are acknowledged per `acks`.
pub fn produce(
    shard: &Rc<Shard>,
    parts: Vec<ProducePart>,
    acks: i16,
    timeout_ms: i32,
) -> impl Future<Output = Vec<ProducePartResult>> + 'static {
    let now = now_ms();
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
        let opts = {
            let cfg = &p.log.borrow().config;
            // Compacted topics need a key on every record (Kafka: INVALID_RECORD).
            record::ValidateOptions {
                require_keys: cfg.compact,
                ..record::ValidateOptions::new(cfg.max_message_bytes)
            }
        };
        let validated = match record::validate_payload(&part.records, &opts) {
            Ok(v) => v,
            Err(e) => {
                crate::metrics::partition_error("Produce", e.kafka_code());
                let mut result = produce_error(e.kafka_code(), e.to_string());
                if let record::RecordError::MissingKeys(indexes) = &e {
                    result.record_errors = indexes.iter().map(|i| (*i, Some(e.to_string()))).collect();
                }
                results.push(result);
                waits.push(None);
                continue;
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
        let appended = p.log.borrow_mut().append(&part.records, &validated, now);
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
                results.push(produce_error(e.kafka_code(), e.to_string()));
                waits.push(None);
            }
        }
    }
    let wait = acks != 0;
    let limit = Duration::from_millis(timeout_ms.max(0) as u64).max(Duration::from_millis(1));
    async move {
        if !wait {
            return results;
        }
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

async fn read_partition(p: &PartitionRef, offset: i64, max_bytes: usize) -> FetchPartResult {
    let (plan, hwm, lso) = {
        let log = p.log.borrow();
        (
            log.plan_read(offset, max_bytes),
            log.high_watermark(),
            log.log_start_offset(),
        )
    };
    let mut r = FetchPartResult {
        error: 0,
        high_watermark: hwm,
        log_start_offset: lso,
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

/// Complete when any listed partition's high watermark passes its offset,
/// or after `max_wait_ms`.
pub async fn watch(shard: &Rc<Shard>, parts: Vec<WatchPart>, max_wait_ms: u64) {
    let mut listeners = Vec::with_capacity(parts.len());
    for part in &parts {
        let Some(p) = shard.partition(&part.topic, part.partition) else {
            return; // gone or moved: let the fetch report it
        };
        let log = p.log.borrow();
        if log.high_watermark() > part.offset || log.is_failed() {
            return;
        }
        listeners.push(log.changed.listen());
    }
    if listeners.is_empty() {
        return;
    }
    let _ = timeout(
        Duration::from_millis(max_wait_ms),
        futures::future::select_all(listeners.into_iter().map(|l| l.boxed_local())),
    )
    .await;
}

/// Offset lookups: -1 latest, -2 earliest, -3 max timestamp, -4 earliest
/// local, -5 latest tiered (none), or the first offset with a timestamp at
/// or after the given one.
pub async fn list_offsets(shard: &Rc<Shard>, parts: Vec<ListOffsetsPart>) -> Vec<ListOffsetsPartResult> {
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
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
        let data: Bytes = file.read_at(pos, CHUNK.min((end - pos) as usize)).await.ok()?;
        let mut consumed = 0usize;
        for (at, h) in record::BatchIter::new(&data, false) {
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
