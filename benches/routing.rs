//! Cross-shard request round trip over the channel mesh: shard 0 sends a
//! request to shard 1, which answers; measured as round trips per second
//! with one request in flight (latency) and with 64 in flight (throughput).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringlog::io::executor::{start_executor, ExecutorSpec};
use ringlog::io::mesh::MeshBuilder;

enum Msg {
    Ping,
    Pong,
}

/// Both executors run this; mesh peer ids follow executor creation order,
/// so the first one (id 0) drives the round trips and the other answers.
async fn peer(mesh: MeshBuilder<Msg>, me: usize, iters: u64, window: u64) -> Option<Duration> {
    let (tx, rx) = mesh.join(me).await.expect("join");
    let me = tx.me();
    let (_, from_other) = rx.into_iter().next()?;
    if me != 0 {
        while let Some(Msg::Ping) = from_other.recv().await {
            if tx.send_to(0, Msg::Pong).await.is_err() {
                break;
            }
        }
        return None;
    }
    let start = Instant::now();
    let (mut sent, mut got) = (0, 0);
    while got < iters {
        while sent < iters && sent - got < window {
            if tx.send_to(1, Msg::Ping).await.is_err() {
                return Some(start.elapsed());
            }
            sent += 1;
        }
        if let Some(Msg::Pong) = from_other.recv().await {
            got += 1;
        }
    }
    let elapsed = start.elapsed();
    tx.close();
    Some(elapsed)
}

fn round_trips(iters: u64, window: u64, spin: Option<Duration>) -> Duration {
    let mesh: MeshBuilder<Msg> = MeshBuilder::full(2, 1024);
    let spec = |n: usize| ExecutorSpec {
        name: format!("bench-{n}"),
        cpu: None,
        io_memory: 1 << 20,
        spin_before_park: spin,
    };
    let m = mesh.clone();
    let a = start_executor(spec(0), move || peer(m, 0, iters, window)).expect("executor");
    let b = start_executor(spec(1), move || peer(mesh, 1, iters, window)).expect("executor");
    let (a, b) = (a.join().ok().flatten(), b.join().ok().flatten());
    a.or(b).unwrap_or_default()
}

fn routing(c: &mut Criterion) {
    let mut g = c.benchmark_group("cross_shard_round_trip");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    g.bench_function("one_in_flight", |b| b.iter_custom(|iters| round_trips(iters, 1, None)));
    g.bench_function("64_in_flight", |b| b.iter_custom(|iters| round_trips(iters, 64, None)));
    // executors spin briefly before parking (no wake-up syscall per message)
    let spin = Some(Duration::from_micros(50));
    g.bench_function("one_in_flight_spin_50us", |b| {
        b.iter_custom(|iters| round_trips(iters, 1, spin))
    });
    g.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
