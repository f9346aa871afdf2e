//! Disk full and EIO on the deterministic simulated disk: a flush that fails
//! with ENOSPC rolls the partition back to its last durable state (nothing
//! acknowledged is lost, nothing dropped was acknowledged), the partition
//! takes writes again once space is free, and an idempotent producer's retry
//! of a dropped batch is appended, not answered as a duplicate. EIO takes
//! the partition offline.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use ringlog::config::{BrokerConfig, Overrides, TopicConfig};
use ringlog::io::file::IoMode;
use ringlog::io::sim::disk::DiskConfig;
use ringlog::io::sim::{SimConfig, World};
use ringlog::log::partition::{
    self, execute_rollback, execute_sync, execute_writes, AckState, FlushFailure, FlushJob, Health,
};
use ringlog::log::{LogError, PartitionLog};
use ringlog::record::{self, BatchOptions, Compression, Record};

fn topic_config() -> TopicConfig {
    let broker = BrokerConfig::load(&Overrides::default()).unwrap();
    TopicConfig::resolve(&BTreeMap::new(), &broker)
}

fn sim<Fut: std::future::Future<Output = ()> + 'static>(seed: u64, capacity: u64, f: impl FnOnce(Rc<World>) -> Fut) {
    let config = SimConfig {
        disk: DiskConfig {
            capacity,
            ..DiskConfig::default()
        },
        ..SimConfig::default()
    };
    let w = World::new(seed, config);
    let fut = f(w.clone());
    let out = w.run(1, fut);
    w.shutdown();
    out.unwrap();
}

fn dir() -> PathBuf {
    PathBuf::from("/data/t-0")
}

/// A batch of `n` records; idempotent when `producer` is (id, sequence).
fn batch(n: usize, tag: &str, producer: Option<(i64, i32)>) -> Vec<u8> {
    let values: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("{tag}-{i}-{}", "x".repeat(200)).into_bytes())
        .collect();
    let records: Vec<Record<'_>> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            key: Some(b"k"),
            value: Some(v),
            headers: &[],
            timestamp_delta: i as i64,
        })
        .collect();
    let mut opts = BatchOptions::default();
    if let Some((id, seq)) = producer {
        opts.producer_id = id;
        opts.producer_epoch = 0;
        opts.base_sequence = seq;
    }
    record::build_batch_with(0, 1_700_000_000_000, Compression::None, &opts, &records)
}

/// Write and sync a job; on failure hand it to `fail_flush` and do the
/// rollback's file work. Returns whether the flush succeeded.
async fn flush(log: &mut PartitionLog, mut job: FlushJob) -> bool {
    let result = match execute_writes(&mut job).await {
        Ok(()) => execute_sync(&job).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => {
            log.complete_flush(job, true, 0);
            true
        }
        Err(e) => {
            assert!(ringlog::io::is_no_space(&e), "unexpected error {e}");
            match log.fail_flush(job, &e) {
                FlushFailure::RolledBack(plan) => {
                    assert_eq!(plan.to_offset, log.high_watermark());
                    let r = execute_rollback(&plan).await;
                    assert!(r.is_ok(), "rollback failed: {r:?}");
                    log.finish_rollback(r);
                }
                FlushFailure::Offline => panic!("ENOSPC took the partition offline"),
            }
            false
        }
    }
}

struct Appended {
    tag: String,
    records: usize,
    rollbacks: u64,
    last: i64,
}

fn append(log: &mut PartitionLog, payload: &[u8], tag: &str) -> Result<Appended, LogError> {
    let v = record::validate_produce_payload(payload, 1 << 20).unwrap();
    let info = log.append(&Bytes::copy_from_slice(payload), &v, 0)?;
    Ok(Appended {
        tag: tag.to_string(),
        records: v.total_records as usize,
        rollbacks: info.rollbacks,
        last: info.last_offset,
    })
}

/// The values of the acknowledged appends, in order (what must be read back).
fn expected(acked: &[Appended]) -> Vec<String> {
    acked
        .iter()
        .flat_map(|a| (0..a.records).map(move |i| format!("{}-{i}-{}", a.tag, "x".repeat(200))))
        .collect()
}

/// All (offset, value) pairs from the log start to the high watermark.
async fn read_all(log: &PartitionLog) -> Vec<(i64, String)> {
    common::read_from(log, log.log_start_offset()).await
}

/// Every acknowledged record exactly once, at dense offsets from 0.
async fn check_log(log: &PartitionLog, acked: &[Appended]) {
    let read = read_all(log).await;
    let offsets: Vec<i64> = read.iter().map(|(o, _)| *o).collect();
    assert_eq!(
        offsets,
        (0..read.len() as i64).collect::<Vec<_>>(),
        "offsets are not dense"
    );
    let values: Vec<String> = read.into_iter().map(|(_, v)| v).collect();
    assert_eq!(values, expected(acked));
    assert_eq!(log.high_watermark(), log.log_end_offset());
}

async fn open(path: &Path, clean: bool) -> PartitionLog {
    partition::open(path, "t", 0, topic_config(), IoMode::Direct, clean, 0)
        .await
        .unwrap()
}

/// Appends two payloads per round (the second staged while the first's
/// flush is in flight) until the disk is full; checks the rollback, frees
/// space, checks writes resume, then reads everything back (also after a
/// restart).
fn fill_rollback_resume(seed: u64, idempotent: bool) {
    sim(seed, 192 << 10, move |w| async move {
        let path = dir();
        let mut log = open(&path, true).await;
        let mut acked: Vec<Appended> = Vec::new();
        let mut seq = 0i32;
        let producer = |seq: i32| idempotent.then_some((7i64, seq));
        let mut rolled_back = false;
        for round in 0..10_000 {
            let a = append(
                &mut log,
                &batch(3, &format!("a{round}"), producer(seq)),
                &format!("a{round}"),
            )
            .unwrap();
            let job1 = log.take_flush_job(0).unwrap();
            let b = append(
                &mut log,
                &batch(2, &format!("b{round}"), producer(seq + 3)),
                &format!("b{round}"),
            )
            .unwrap();
            let ok1 = flush(&mut log, job1).await;
            let ok2 = if ok1 {
                let job2 = log.take_flush_job(0).unwrap();
                flush(&mut log, job2).await
            } else {
                false
            };
            let sa = log.ack_state(a.rollbacks, a.last + 1);
            let sb = log.ack_state(b.rollbacks, b.last + 1);
            if ok1 && ok2 {
                assert_eq!((sa, sb), (AckState::Durable, AckState::Durable));
                seq += 5;
                acked.push(a);
                acked.push(b);
                continue;
            }
            // The disk is full: nothing after the last durable point survives.
            assert_eq!(sb, AckState::Lost);
            if ok1 {
                assert_eq!(sa, AckState::Durable);
                seq += 3;
                acked.push(a);
            } else {
                assert_eq!(sa, AckState::Lost);
            }
            assert!(matches!(log.health(), Health::NoSpace { rolled_back: true, .. }));
            assert_eq!(log.log_end_offset(), log.high_watermark());
            assert_eq!(log.rollbacks(), 1);
            assert!(matches!(
                append(&mut log, &batch(1, "refused", None), "refused"),
                Err(LogError::NoSpace)
            ));
            // Reads go on while full.
            check_log(&log, &acked).await;
            rolled_back = true;
            break;
        }
        assert!(rolled_back, "the disk never filled up");
        // Free space: the partition resumes by itself (the shard's space task
        // calls resume_if_space).
        w.disk.configure(|c| c.capacity += 1 << 20);
        assert!(log.resume_if_space(w.disk.free()));
        assert_eq!(log.health(), &Health::Ok);
        // An idempotent producer retries the dropped batch with the same
        // sequence: it is appended at the log end, not taken as a duplicate.
        for round in 0..20 {
            let tag = format!("c{round}");
            let end = log.log_end_offset();
            let c = append(&mut log, &batch(3, &tag, producer(seq)), &tag).unwrap();
            assert_eq!(c.last, end + 2, "the retried batch was not appended at the log end");
            let job = log.take_flush_job(0).unwrap();
            assert!(flush(&mut log, job).await);
            assert_eq!(log.ack_state(c.rollbacks, c.last + 1), AckState::Durable);
            seq += 3;
            acked.push(c);
        }
        check_log(&log, &acked).await;
        // After a restart (recovery from the files) too.
        drop(log);
        let log = open(&path, false).await;
        check_log(&log, &acked).await;
    });
}

#[test]
fn enospc_rolls_back_and_resumes() {
    for seed in 1..=3 {
        fill_rollback_resume(seed, false);
    }
}

#[test]
fn enospc_rollback_undoes_idempotent_producer_state() {
    for seed in 1..=3 {
        fill_rollback_resume(seed, true);
    }
}

#[test]
fn eio_takes_the_partition_offline() {
    sim(9, u64::MAX, |w| async move {
        let path = dir();
        let mut log = open(&path, true).await;
        let a = append(&mut log, &batch(2, "a", None), "a").unwrap();
        let job = log.take_flush_job(0).unwrap();
        assert!(flush(&mut log, job).await);
        assert_eq!(log.ack_state(a.rollbacks, a.last + 1), AckState::Durable);
        w.disk.configure(|c| c.eio_paths = vec![path.clone()]);
        let b = append(&mut log, &batch(2, "b", None), "b").unwrap();
        let mut job = log.take_flush_job(0).unwrap();
        let e = match execute_writes(&mut job).await {
            Ok(()) => execute_sync(&job).await.unwrap_err(),
            Err(e) => e,
        };
        assert!(!ringlog::io::is_no_space(&e));
        assert!(matches!(log.fail_flush(job, &e), FlushFailure::Offline));
        assert!(log.is_failed());
        assert_eq!(log.ack_state(b.rollbacks, b.last + 1), AckState::Offline);
        assert!(matches!(
            append(&mut log, &batch(1, "c", None), "c"),
            Err(LogError::Offline)
        ));
        assert!(matches!(log.plan_read(0, 1 << 10), Err(LogError::Offline)));
        // Never resumed by free space.
        assert!(!log.resume_if_space(u64::MAX));
    });
}

/// A topic with flush.ms acknowledges written data before it is synced; a
/// failing time-based sync takes the partition offline (the acknowledged
/// data may be gone from the page cache: nothing is retried or rolled back).
#[test]
fn eio_on_a_time_based_sync_takes_the_partition_offline() {
    sim(10, u64::MAX, |w| async move {
        let path = dir();
        let broker = BrokerConfig::load(&Overrides::default()).unwrap();
        let overrides: BTreeMap<String, String> = [("flush.ms".to_string(), "1000".to_string())].into();
        let config = TopicConfig::resolve(&overrides, &broker);
        assert!(!config.sync_on_ack());
        let mut log = partition::open(&path, "t", 0, config, IoMode::Buffered, true, 0)
            .await
            .unwrap();
        let a = append(&mut log, &batch(2, "a", None), "a").unwrap();
        let job = log.take_flush_job(0).unwrap();
        assert!(!job.sync, "a relaxed topic writes without syncing");
        assert!(flush(&mut log, job).await);
        assert_eq!(
            log.high_watermark(),
            a.last + 1,
            "written data is visible before the sync"
        );
        assert!(log.due_time_sync(500).is_none(), "not due before flush.ms");
        let file = log.due_time_sync(1_000).expect("due after flush.ms");
        w.disk.configure(|c| c.eio_paths = vec![path.clone()]);
        let e = file.sync().await.unwrap_err();
        log.fail_time_sync(&e);
        assert!(log.is_failed());
        assert!(log.due_time_sync(10_000).is_none());
        assert!(matches!(
            append(&mut log, &batch(1, "b", None), "b"),
            Err(LogError::Offline)
        ));
        assert!(matches!(log.plan_read(0, 1 << 10), Err(LogError::Offline)));
        assert!(!log.resume_if_space(u64::MAX));
    });
}
