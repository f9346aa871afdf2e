//! An executor never ends while one of its blocking-pool calls is in flight.
//!
//! glommio 0.9's pool threads panic ("failed to send response") when a call
//! finishes after its executor is gone. The broker hit this at shutdown: a
//! filesystem call (retention, group loading) still ran on the pool when the
//! shard's main future returned, and the pool thread panicked.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringlog::io::executor::{spawn, start_executor, ExecutorSpec};

static PANICS: AtomicUsize = AtomicUsize::new(0);

#[test]
fn executor_waits_for_a_cancelled_blocking_call() {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        hook(info);
    }));

    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());

    // Opening a FIFO for reading blocks until a writer opens it: a pool call
    // that lasts exactly as long as the test wants.
    let release = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (fifo, release) = (fifo.clone(), release.clone());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            release.store(1, Ordering::SeqCst);
            let _w = std::fs::OpenOptions::new()
                .write(true)
                .open(&fifo)
                .expect("open fifo for writing");
        })
    };

    let started = Instant::now();
    let spec = ExecutorSpec {
        name: "blocking-drain".into(),
        cpu: None,
        io_memory: 1 << 20,
        spin_before_park: None,
    };
    let fifo2 = fifo.clone();
    let shard = start_executor(spec, move || async move {
        let call = spawn(async move { ringlog::io::fs::sync_dir(&fifo2).await });
        ringlog::io::time::sleep(Duration::from_millis(50)).await;
        // Cancel the caller while its call blocks on the pool, then end.
        drop(call);
    })
    .expect("start executor");
    shard.join().expect("join executor");
    assert_eq!(
        release.load(Ordering::SeqCst),
        1,
        "the executor ended after {:?}, before its blocking call returned",
        started.elapsed()
    );
    writer.join().expect("writer thread");
    // Give a pool thread that would panic the time to do so.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a thread panicked");
}
