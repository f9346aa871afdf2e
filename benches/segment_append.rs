//! Segment append on the owning shard: validate, append (offsets, header
//! patch, staging), then one group-commit round (O_DIRECT write and
//! fdatasync), as the broker does per produce request. Throughput is per core
//! (one executor). Also: the pure sparse index lookup.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringlog::config::{BrokerConfig, Overrides, TopicConfig};
use ringlog::io::executor::{start_executor, ExecutorSpec};
use ringlog::io::file::IoMode;
use ringlog::log::index::OffsetIndex;
use ringlog::log::partition::{self, execute_sync, execute_writes};
use ringlog::record::{self, Compression, Record};

fn payload(records: usize, value: usize) -> Bytes {
    let v = vec![0x5au8; value];
    let recs: Vec<Record<'_>> = (0..records)
        .map(|i| Record {
            key: None,
            value: Some(&v),
            headers: &[],
            timestamp_delta: i as i64,
        })
        .collect();
    Bytes::from(record::build_batch(0, 1_700_000_000_000, Compression::None, &recs))
}

/// Append `iters` produce payloads, flushing every `per_round` appends.
fn run_appends(mode: IoMode, sync: bool, iters: u64, per_round: u64, data: Bytes) -> Duration {
    let spec = ExecutorSpec {
        name: "bench".into(),
        cpu: None,
        io_memory: 2 << 20,
        spin_before_park: None,
    };
    start_executor(spec, move || async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = BrokerConfig::load(&Overrides::default()).expect("config");
        let cfg = TopicConfig::resolve(&Default::default(), &broker);
        let mut log = partition::open(&dir.path().join("b-0"), "b", 0, cfg, mode, false, 0)
            .await
            .expect("open");
        let start = Instant::now();
        let mut done = 0;
        while done < iters {
            for _ in 0..per_round.min(iters - done) {
                let v = record::validate_produce_payload(&data, 1 << 20).expect("valid");
                log.append(&data, &v, 0).expect("append");
                done += 1;
            }
            if let Some(mut job) = log.take_flush_job(0) {
                execute_writes(&mut job).await.expect("write");
                if sync {
                    execute_sync(&job).await.expect("sync");
                }
                log.complete_flush(job, true, 0);
            }
        }
        start.elapsed()
    })
    .expect("executor")
    .join()
    .expect("join")
}

fn append(c: &mut Criterion) {
    let data = payload(64, 1024); // ~66 KiB batch
    let mut g = c.benchmark_group("segment_append");
    g.throughput(Throughput::Bytes(data.len() as u64 * 16));
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    for (name, mode, sync) in [
        ("direct_fdatasync", IoMode::Direct, true),
        ("direct_nosync", IoMode::Direct, false),
        ("buffered_fdatasync", IoMode::Buffered, true),
    ] {
        let d = data.clone();
        // 16 appends (one per partition-sized request) per group commit
        g.bench_function(name, |b| {
            b.iter_custom(|iters| run_appends(mode, sync, iters * 16, 16, d.clone()))
        });
    }
    g.finish();
}

fn index_lookup(c: &mut Criterion) {
    let mut idx = OffsetIndex::new();
    for i in 0..262_144u32 {
        idx.push(i * 16, i * 4096);
    }
    let mut g = c.benchmark_group("index_lookup");
    g.throughput(Throughput::Elements(1));
    let mut x = 12345u32;
    g.bench_function("offset_index_256k_entries", |b| {
        b.iter(|| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            black_box(idx.lookup(x % (262_144 * 16)))
        })
    });
    g.finish();
}

criterion_group!(benches, append, index_lookup);
criterion_main!(benches);
