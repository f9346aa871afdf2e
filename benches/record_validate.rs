//! Hot-path cost of produce validation and of the broker-side batch rewrite.
//!
//! Payload: 1 MiB of uncompressed v2 batches of 16 KiB, each holding 1 KiB
//! records (the shape of a typical `acks=1` producer load).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringlog::record::{build_batch, rewrite_batch, validate_produce_payload, BatchIter, Compression, Record};

const PAYLOAD_BYTES: usize = 1 << 20;
const BATCH_BYTES: usize = 16 << 10;
const RECORD_VALUE_BYTES: usize = 1 << 10;
const MAX_BATCH_BYTES: usize = 1 << 20;

/// One ~16 KiB batch of ~1 KiB records (15 records: 16 would exceed 16 KiB
/// once per-record and batch overhead is counted).
fn make_batch() -> Vec<u8> {
    let values: Vec<Vec<u8>> = (0..BATCH_BYTES / RECORD_VALUE_BYTES)
        .map(|i| (0..RECORD_VALUE_BYTES).map(|j| (i * 131 + j * 7) as u8).collect())
        .collect();
    let keys: Vec<String> = (0..values.len()).map(|i| format!("key-{i:08}")).collect();
    let mut n = values.len();
    loop {
        let records: Vec<Record<'_>> = (0..n)
            .map(|i| Record {
                key: Some(keys[i].as_bytes()),
                value: Some(&values[i]),
                headers: &[],
                timestamp_delta: i as i64,
            })
            .collect();
        let batch = build_batch(0, 1_700_000_000_000, Compression::None, &records);
        if batch.len() <= BATCH_BYTES || n == 1 {
            return batch;
        }
        n -= 1;
    }
}

/// Concatenated batches filling (at most) 1 MiB.
fn make_payload() -> Vec<u8> {
    let batch = make_batch();
    let count = PAYLOAD_BYTES / batch.len();
    let mut payload = Vec::with_capacity(count * batch.len());
    for _ in 0..count {
        payload.extend_from_slice(&batch);
    }
    payload
}

fn bench_validate(c: &mut Criterion) {
    let payload = make_payload();
    validate_produce_payload(&payload, MAX_BATCH_BYTES).expect("benchmark payload is valid");

    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Bytes(payload.len() as u64));
    g.bench_function("validate_produce_payload/1MiB_uncompressed", |b| {
        b.iter(|| validate_produce_payload(black_box(&payload), MAX_BATCH_BYTES))
    });
    g.bench_function("batch_iter_verify_crc/1MiB", |b| {
        b.iter(|| BatchIter::new(black_box(&payload), true).scan_valid_len())
    });
    g.finish();
}

fn bench_rewrite(c: &mut Criterion) {
    let mut payload = make_payload();
    let spans: Vec<(usize, usize, i64)> = validate_produce_payload(&payload, MAX_BATCH_BYTES)
        .expect("benchmark payload is valid")
        .batches
        .iter()
        .map(|s| (s.start, s.len, i64::from(s.record_count)))
        .collect();

    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Bytes(payload.len() as u64));
    // CreateTime topics: offsets and leader epoch only, no CRC work.
    g.bench_function("rewrite_batch/create_time/1MiB", |b| {
        let mut next_offset = 0i64;
        b.iter(|| {
            for &(start, len, count) in &spans {
                rewrite_batch(&mut payload[start..start + len], next_offset, 7, None);
                next_offset += count;
            }
            black_box(&payload);
        })
    });
    // LogAppendTime topics: a fresh timestamp forces a CRC recompute per batch.
    g.bench_function("rewrite_batch/log_append_time/1MiB", |b| {
        let mut now = 1_700_000_000_000i64;
        b.iter(|| {
            now += 1;
            for &(start, len, _) in &spans {
                rewrite_batch(&mut payload[start..start + len], 0, 7, Some(now));
            }
            black_box(&payload);
        })
    });
    g.finish();
}

criterion_group!(benches, bench_validate, bench_rewrite);
criterion_main!(benches);
