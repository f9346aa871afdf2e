//! Partition log against real files: append, group-commit, read back,
//! restart, torn tails, rebuilt indexes, segment rolling, retention. Runs on a real
//! io_uring executor through the project's IO layer.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use bytes::Bytes;
use ringlog::config::{BrokerConfig, Overrides, TopicConfig};
use ringlog::io::executor::{start_executor, ExecutorSpec};
use ringlog::io::file::IoMode;
use ringlog::log::partition::{self, execute_sync, execute_writes, select_batches, Selection};
use ringlog::log::{LogError, PartitionLog, ReadPlan};
use ringlog::record::{self, Compression, Record};

fn run<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let spec = ExecutorSpec {
        name: "test".into(),
        cpu: None,
        io_memory: 1 << 20,
        spin_before_park: None,
    };
    start_executor(spec, f).unwrap().join().unwrap()
}

fn topic_config(overrides: &[(&str, &str)]) -> TopicConfig {
    let broker = BrokerConfig::load(&Overrides::default()).unwrap();
    let o: BTreeMap<String, String> = overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    TopicConfig::resolve(&o, &broker)
}

fn batch(n: usize, tag: &str) -> Vec<u8> {
    batch_at(n, tag, 1_700_000_000_000)
}

/// A batch whose records carry timestamps `ts`, `ts + 1`, ….
fn batch_at(n: usize, tag: &str, ts: i64) -> Vec<u8> {
    let values: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("{tag}-{i}-{}", "x".repeat(100)).into_bytes())
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
    record::build_batch(0, ts, Compression::None, &records)
}

async fn append_and_commit(log: &mut PartitionLog, payload: &[u8]) -> i64 {
    append_at(log, payload, 0).await
}

async fn append_at(log: &mut PartitionLog, payload: &[u8], now_ms: i64) -> i64 {
    let v = record::validate_produce_payload(payload, 1 << 20).unwrap();
    let info = log.append(&Bytes::copy_from_slice(payload), &v, now_ms).unwrap();
    let mut job = log.take_flush_job(0).unwrap();
    execute_writes(&mut job).await.unwrap();
    execute_sync(&job).await.unwrap();
    log.complete_flush(job, true, 0);
    info.base_offset
}

/// All records' values from `offset` to the high watermark.
async fn read_all(log: &PartitionLog, offset: i64) -> Vec<String> {
    common::read_from(log, offset)
        .await
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

async fn open(dir: &Path, cfg: TopicConfig, clean: bool) -> PartitionLog {
    partition::open(dir, "t", 0, cfg, IoMode::Direct, clean, 0)
        .await
        .unwrap()
}

#[test]
fn append_read_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    run(move || async move {
        let mut log = open(&path, topic_config(&[]), false).await;
        for i in 0..50 {
            let base = append_and_commit(&mut log, &batch(10, &format!("b{i}"))).await;
            assert_eq!(base, i * 10);
        }
        assert_eq!(log.high_watermark(), 500);
        let before = read_all(&log, 0).await;
        assert_eq!(before.len(), 500);
        assert!(before[123].starts_with("b12-3-"));
        drop(log);
        // Unclean restart: everything acknowledged is still there.
        let log = open(&path, topic_config(&[]), false).await;
        assert_eq!(log.log_end_offset(), 500);
        assert_eq!(read_all(&log, 0).await, before);
        assert_eq!(read_all(&log, 437).await, before[437..].to_vec());
    });
}

#[test]
fn torn_tail_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    run(move || async move {
        let mut log = open(&path, topic_config(&[]), false).await;
        for i in 0..5 {
            append_and_commit(&mut log, &batch(3, &format!("b{i}"))).await;
        }
        let seg = path.join("00000000000000000000.log");
        drop(log);
        let good = 5 * batch(3, "b0").len() as u64;
        // Half of a sixth batch right after the fifth, as a crash mid-write
        // would leave it (over the O_DIRECT zero padding).
        let sixth = batch(3, "torn");
        let mut f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(good)).unwrap();
        f.write_all(&sixth[..sixth.len() / 2]).unwrap();
        drop(f);
        let log = open(&path, topic_config(&[]), false).await;
        assert_eq!(log.log_end_offset(), 15);
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), good);
        assert_eq!(read_all(&log, 0).await.len(), 15);
        // Appends continue after the recovered end.
        let mut log = log;
        assert_eq!(append_and_commit(&mut log, &batch(2, "after")).await, 15);
        assert_eq!(read_all(&log, 15).await.len(), 2);
    });
}

#[test]
fn corrupt_crc_in_tail_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    run(move || async move {
        let mut log = open(&path, topic_config(&[]), false).await;
        for i in 0..4 {
            append_and_commit(&mut log, &batch(5, &format!("b{i}"))).await;
        }
        drop(log);
        let seg = path.join("00000000000000000000.log");
        let mut data = std::fs::read(&seg).unwrap();
        let one = batch(5, "b0").len();
        // Flip a byte inside the last batch's records.
        let last_start = 3 * one;
        data[last_start + 80] ^= 0xff;
        std::fs::write(&seg, &data).unwrap();
        let log = open(&path, topic_config(&[]), false).await;
        assert_eq!(
            log.log_end_offset(),
            15,
            "the damaged batch and what follows are dropped"
        );
    });
}

#[test]
fn segments_roll_and_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    run(move || async move {
        let cfg = topic_config(&[("segment.bytes", "20000"), ("index.interval.bytes", "1000")]);
        let mut log = open(&path, cfg.clone(), false).await;
        for i in 0..60 {
            append_and_commit(&mut log, &batch(8, &format!("b{i}"))).await;
        }
        assert!(log.segment_count() >= 3, "rolled into {} segments", log.segment_count());
        let all = read_all(&log, 0).await;
        assert_eq!(all.len(), 480);
        drop(log);
        let names: Vec<String> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert!(
            names.iter().any(|n| n.ends_with(".index")),
            "sealed segments have index files: {names:?}"
        );
        assert!(names.iter().any(|n| n.ends_with(".timeindex")));
        // Damage an index file; a clean start must notice and rebuild it.
        let idx = names.iter().find(|n| n.ends_with(".index")).unwrap();
        std::fs::write(path.join(idx), b"garbage").unwrap();
        let log = open(&path, cfg, true).await;
        assert_eq!(log.log_end_offset(), 480);
        assert_eq!(read_all(&log, 0).await, all);
        assert_eq!(read_all(&log, 333).await, all[333..].to_vec());
    });
}

#[test]
fn nothing_is_visible_before_the_flush_completes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    run(move || async move {
        let mut log = open(&path, topic_config(&[]), false).await;
        let payload = batch(4, "x");
        let v = record::validate_produce_payload(&payload, 1 << 20).unwrap();
        log.append(&Bytes::from(payload.clone()), &v, 0).unwrap();
        assert_eq!(log.log_end_offset(), 4);
        assert_eq!(log.high_watermark(), 0);
        assert!(matches!(log.plan_read(0, 1 << 20), Ok(ReadPlan::Empty)));
        let mut job = log.take_flush_job(0).unwrap();
        execute_writes(&mut job).await.unwrap();
        execute_sync(&job).await.unwrap();
        log.complete_flush(job, true, 0);
        assert_eq!(log.high_watermark(), 4);
        assert_eq!(read_all(&log, 0).await.len(), 4);
    });
}

#[test]
fn segments_roll_by_age_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    run(move || async move {
        let cfg = topic_config(&[("segment.ms", "1000")]);
        let mut log = open(&path, cfg.clone(), false).await;
        for i in 0..6 {
            // each append is 1.5 s after the previous one: every one rolls
            append_at(&mut log, &batch(2, &format!("b{i}")), i * 1500).await;
        }
        assert_eq!(log.segment_count(), 6);
        let all = read_all(&log, 0).await;
        drop(log);
        // Crash-style restart: sealed segments were cut to size, nothing is lost.
        let log = open(&path, cfg, false).await;
        assert_eq!(log.segment_count(), 6);
        assert_eq!(log.log_end_offset(), 12);
        assert_eq!(read_all(&log, 0).await, all);
    });
}

#[test]
fn clean_restart_reads_snapshots_and_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    run(move || async move {
        let cfg = topic_config(&[("segment.bytes", "4000")]);
        let mut log = open(&path, cfg.clone(), false).await;
        for i in 0..10 {
            append_and_commit(&mut log, &batch(5, &format!("b{i}"))).await;
        }
        drop(log);
        // A clean start trusts index files when present and copes when a
        // snapshot or index file is missing.
        let log = open(&path, cfg, true).await;
        assert_eq!(log.log_end_offset(), 50);
        assert_eq!(read_all(&log, 0).await.len(), 50);
    });
}

#[test]
fn relaxed_flush_settings_skip_the_sync_until_due() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    run(move || async move {
        let cfg = topic_config(&[("flush.messages", "3"), ("flush.ms", "60000")]);
        let mut log = open(&path, cfg, false).await;
        let mut syncs = Vec::new();
        for i in 0..4 {
            let payload = Bytes::from(batch(1, &format!("b{i}")));
            let v = record::validate_produce_payload(&payload, 1 << 20).unwrap();
            log.append(&payload, &v, 1000).unwrap();
            let mut job = log.take_flush_job(1000).unwrap();
            syncs.push(job.sync);
            execute_writes(&mut job).await.unwrap();
            log.complete_flush(job, true, 1000);
            // visible once written, synced or not
            assert_eq!(log.high_watermark(), i + 1);
        }
        assert_eq!(syncs, vec![false, false, true, false], "every third message is synced");
        assert!(log.due_time_sync(1000).is_none());
        assert!(log.due_time_sync(1000 + 60_000).is_some(), "flush.ms elapsed");
        log.synced(61_000);
        assert!(log.due_time_sync(61_001).is_none());
    });
}

/// Names of the files in a partition directory with the given suffix, sorted.
fn files_ending(dir: &Path, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(suffix))
        .collect();
    v.sort();
    v
}

/// Reopen the log: it starts at `start` and holds `all[start..]`.
async fn assert_reopens_at(path: &Path, cfg: TopicConfig, clean: bool, start: i64, all: &[String]) {
    let log = open(path, cfg, clean).await;
    assert_eq!(log.log_start_offset(), start);
    assert_eq!(log.log_end_offset(), all.len() as i64);
    assert_eq!(read_all(&log, start).await, all[start as usize..].to_vec());
}

/// Segment `.log` file names for these base offsets.
fn log_names(bases: &[i64]) -> Vec<String> {
    bases.iter().map(|b| format!("{b:020}.log")).collect()
}

#[test]
fn retention_bytes_deletes_oldest_segments_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    run(move || async move {
        let one = batch(10, "b00").len();
        // Two batches per segment; keep at least 5 batches' worth.
        let segment_bytes = (2 * one).to_string();
        let retention_bytes = (5 * one).to_string();
        let cfg = topic_config(&[
            ("segment.bytes", &segment_bytes),
            ("retention.bytes", &retention_bytes),
            ("file.delete.delay.ms", "60000"),
        ]);
        let mut log = open(&path, cfg.clone(), false).await;
        log.set_cache_limit(0); // reads come from the files
        for i in 0..10 {
            append_and_commit(&mut log, &batch(10, &format!("b{i:02}"))).await;
        }
        assert_eq!(log.segment_count(), 5);
        let all = read_all(&log, 0).await;
        assert_eq!(all.len(), 100);
        // A fetch planned on the first segment before retention runs.
        let planned = log.plan_read(0, 1 << 20).unwrap();

        // 10 batches: dropping 2 segments leaves 6 (>= 5), a third would
        // leave 4.
        let out = log.enforce_retention_now(0).await;
        assert_eq!(out.segments, 2);
        assert_eq!(out.bytes, 4 * one as u64);
        assert_eq!(out.log_start_offset, 40);
        assert_eq!(log.log_start_offset(), 40);
        assert_eq!(log.earliest(), 40);
        assert_eq!(log.segment_count(), 3);
        assert_eq!(log.size_bytes(), 6 * one as u64);
        assert!(matches!(log.plan_read(39, 1 << 20), Err(LogError::OffsetOutOfRange)));
        assert!(matches!(log.plan_read(0, 1 << 20), Err(LogError::OffsetOutOfRange)));
        assert_eq!(read_all(&log, 40).await, all[40..].to_vec());
        // Nothing more to do until more data comes.
        assert_eq!(log.enforce_retention_now(0).await.segments, 0);

        // The planned read still gets the deleted segment's bytes.
        let ReadPlan::File {
            file, position, len, ..
        } = planned
        else {
            panic!("expected a file read");
        };
        let data: Bytes = file.read_at(position, len).await.unwrap();
        let Selection::Batches(b) = select_batches(&data, 0, 100, 1 << 20) else {
            panic!("the deleted segment's data is still readable");
        };
        assert_eq!(record::BatchHeader::parse(&b[0]).unwrap().base_offset, 0);
        drop(file);

        // Renamed now, removed after file.delete.delay.ms.
        assert_eq!(files_ending(&path, ".log"), log_names(&[40, 60, 80]));
        assert_eq!(
            files_ending(&path, ".log.deleted"),
            vec!["00000000000000000000.log.deleted", "00000000000000000020.log.deleted"]
        );
        assert_eq!(files_ending(&path, ".index.deleted").len(), 2);
        assert_eq!(log.next_file_removal_ms(), Some(60_000));
        log.remove_deleted_files(59_999).await;
        assert_eq!(files_ending(&path, ".deleted").len(), 6);
        log.remove_deleted_files(60_000).await;
        assert!(files_ending(&path, ".deleted").is_empty());
        assert_eq!(log.next_file_removal_ms(), None);
        drop(log);

        // Reopen (crash-style and clean): the start offset is where
        // retention left it.
        for clean in [false, true] {
            assert_reopens_at(&path, cfg.clone(), clean, 40, &all).await;
        }
    });
}

#[test]
fn retention_ms_deletes_segments_by_largest_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    run(move || async move {
        const OLD: i64 = 1_700_000_000_000;
        const NEW: i64 = OLD + 10_000;
        let one = batch_at(10, "b00", OLD).len();
        let segment_bytes = (2 * one).to_string();
        let cfg = topic_config(&[
            ("segment.bytes", &segment_bytes),
            ("retention.ms", "1000"),
            ("file.delete.delay.ms", "0"),
        ]);
        let mut log = open(&path, cfg.clone(), false).await;
        // Segments [0,1] [2,3] [4,5] hold old records, [6,7] [8,9] [10,11]
        // new ones; batch 5's records are old but segment [4,5]'s newest
        // is what counts.
        for i in 0..12 {
            let ts = if i < 6 { OLD } else { NEW };
            append_and_commit(&mut log, &batch_at(10, &format!("b{i:02}"), ts)).await;
        }
        assert_eq!(log.segment_count(), 6);
        let all = read_all(&log, 0).await;
        // Nothing is older than retention.ms yet.
        assert_eq!(log.enforce_retention_now(OLD + 1_009).await.segments, 0);
        // Only the old segments are.
        let out = log.enforce_retention_now(NEW + 500).await;
        assert_eq!(out.segments, 3);
        assert_eq!(log.log_start_offset(), 60);
        assert_eq!(read_all(&log, 60).await, all[60..].to_vec());
        // file.delete.delay.ms = 0: the files are gone at once.
        assert_eq!(files_ending(&path, ".log"), log_names(&[60, 80, 100]));
        assert!(files_ending(&path, ".deleted").is_empty());
        assert!(files_ending(&path, ".index")
            .iter()
            .all(|n| n.as_str() >= "00000000000000000060"));
        // Much later everything has expired, the active segment too: the
        // older ones go and the active one is rolled (Kafka does the same).
        let out = log.enforce_retention_now(NEW + 1_000_000).await;
        assert_eq!(out.segments, 2);
        assert!(out.rolled);
        assert_eq!(log.log_start_offset(), 100);
        assert_eq!(log.segment_count(), 2);
        // Not deleted before the flusher has sealed it...
        assert_eq!(log.enforce_retention_now(NEW + 1_000_000).await.segments, 0);
        let mut job = log.take_flush_job(0).expect("the roll needs a seal");
        execute_writes(&mut job).await.unwrap();
        execute_sync(&job).await.unwrap();
        log.complete_flush(job, true, 0);
        // ... then it goes: the topic is empty, its offsets go on at 120.
        let out = log.enforce_retention_now(NEW + 1_000_000).await;
        assert_eq!((out.segments, out.rolled), (1, false));
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (120, 120));
        assert_eq!(files_ending(&path, ".log"), log_names(&[120]));
        // An empty active segment is not rolled again.
        let out = log.enforce_retention_now(NEW + 2_000_000).await;
        assert_eq!((out.segments, out.rolled), (0, false));
        drop(log);
        assert_reopens_at(&path, cfg.clone(), false, 120, &all).await;
        // New appends continue from there.
        let mut log = open(&path, cfg, false).await;
        assert_eq!(append_and_commit(&mut log, &batch_at(10, "b12", NEW)).await, 120);
    });
}

#[test]
fn retention_waits_for_the_seal_and_skips_compacted_topics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let compact_path = dir.path().join("c-0");
    run(move || async move {
        let one = batch(10, "b00").len();
        let segment_bytes = (2 * one).to_string();
        let cfg = topic_config(&[("segment.bytes", &segment_bytes), ("retention.bytes", "0")]);
        let mut log = open(&path, cfg, false).await;
        for i in 0..2 {
            append_and_commit(&mut log, &batch(10, &format!("b{i:02}"))).await;
        }
        // The third batch rolls; the job that seals segment 0 is in flight.
        let payload = batch(10, "b02");
        let v = record::validate_produce_payload(&payload, 1 << 20).unwrap();
        log.append(&Bytes::from(payload), &v, 0).unwrap();
        let mut job = log.take_flush_job(0).unwrap();
        assert_eq!(
            log.enforce_retention_now(0).await.segments,
            0,
            "segment 0 is being sealed"
        );
        execute_writes(&mut job).await.unwrap();
        execute_sync(&job).await.unwrap();
        log.complete_flush(job, true, 0);
        assert_eq!(log.enforce_retention_now(0).await.segments, 1);
        assert_eq!(log.log_start_offset(), 20);

        // cleanup.policy=compact: retention does not apply.
        let cfg = topic_config(&[
            ("segment.bytes", &segment_bytes),
            ("retention.bytes", "0"),
            ("retention.ms", "0"),
            ("cleanup.policy", "compact"),
        ]);
        let mut log = open(&compact_path, cfg, false).await;
        for i in 0..6 {
            append_and_commit(&mut log, &batch(10, &format!("b{i:02}"))).await;
        }
        assert_eq!(log.enforce_retention_now(i64::MAX / 2).await.segments, 0);
        assert_eq!(log.log_start_offset(), 0);
    });
}

#[test]
fn recovery_removes_deleted_and_orphaned_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    run(move || async move {
        let one = batch(10, "b00").len();
        let segment_bytes = (2 * one).to_string();
        let cfg = topic_config(&[("segment.bytes", &segment_bytes)]);
        let mut log = open(&path, cfg.clone(), false).await;
        for i in 0..6 {
            append_and_commit(&mut log, &batch(10, &format!("b{i:02}"))).await;
        }
        drop(log);
        // A crash mid-way through deleting segment 0: its index files were
        // renamed, its log too; segment 20's index files renamed but not its
        // log.
        for name in [
            "00000000000000000000.log",
            "00000000000000000000.index",
            "00000000000000000020.index",
        ] {
            std::fs::rename(path.join(name), path.join(format!("{name}.deleted"))).unwrap();
        }
        std::fs::write(path.join("00000000000000000000.timeindex"), b"stale").unwrap();
        let log = open(&path, cfg, false).await;
        assert_eq!(log.log_start_offset(), 20);
        assert_eq!(log.log_end_offset(), 60);
        assert_eq!(read_all(&log, 20).await.len(), 40);
        assert!(files_ending(&path, ".deleted").is_empty());
        assert!(!path.join("00000000000000000000.timeindex").exists());
    });
}

// ---- Recovery point, corruption in old segments ----

/// Carry out one recovery-point checkpoint of `log` as the shard's task
/// does (files written and synced); returns the new recovery point.
async fn checkpoint(log: &mut PartitionLog) -> i64 {
    if let Some(plan) = log.plan_checkpoint() {
        plan.write().await.unwrap();
        plan.sync_each().await.unwrap();
        log.checkpoint_done(&plan);
    }
    log.recovery_point()
}

async fn reopen(dir: &Path, cfg: TopicConfig, recovery_point: Option<i64>) -> PartitionLog {
    let recovery = partition::Recovery {
        clean_shutdown: false,
        recovery_point,
        topic_id: None,
    };
    partition::open_with(dir, "t", 0, cfg, IoMode::Direct, recovery, 0)
        .await
        .unwrap()
}

/// Every record value by offset, reading around corrupt regions: offsets a
/// read reports as corrupt are listed in the second result.
async fn read_by_offset(log: &PartitionLog) -> (BTreeMap<i64, String>, Vec<i64>) {
    read_from(log, log.log_start_offset()).await
}

async fn read_from(log: &PartitionLog, mut offset: i64) -> (BTreeMap<i64, String>, Vec<i64>) {
    let mut out = BTreeMap::new();
    let mut corrupt = Vec::new();
    while offset < log.high_watermark() {
        let data: Bytes = match log.plan_read(offset, 64 << 10) {
            Err(LogError::Corrupt) => {
                corrupt.push(offset);
                offset += 1;
                continue;
            }
            Err(e) => panic!("read at {offset}: {e}"),
            Ok(ReadPlan::Empty) => panic!("nothing to read at {offset} below {}", log.high_watermark()),
            Ok(ReadPlan::Cached(parts)) => Bytes::from(parts.concat()),
            Ok(ReadPlan::File {
                file,
                position,
                len,
                file_end,
            }) => file
                .read_at(position, len.max((file_end - position) as usize))
                .await
                .unwrap(),
        };
        let before = offset;
        for (at, h) in record::BatchIter::new(&data, true) {
            if h.last_offset() < offset {
                continue;
            }
            let b = data.slice(at..at + h.total_size());
            for r in record::decode_records(&b).unwrap() {
                let off = h.base_offset + i64::from(r.offset_delta);
                if off >= offset {
                    out.insert(off, String::from_utf8(r.value.unwrap().to_vec()).unwrap());
                }
            }
            offset = h.last_offset() + 1;
        }
        assert!(offset > before, "no progress reading at {offset}");
    }
    (out, corrupt)
}

/// Positions of the batches of a segment file.
fn batch_positions(path: &Path) -> Vec<(usize, i64)> {
    let data = std::fs::read(path).unwrap();
    record::BatchIter::new(&data, true)
        .map(|(at, h)| (at, h.base_offset))
        .collect()
}

fn segment_logs(dir: &Path) -> Vec<String> {
    let mut v = files_ending(dir, ".log");
    v.sort();
    v
}

/// 60 batches of 8 records in several segments.
async fn fill(log: &mut PartitionLog) -> BTreeMap<i64, String> {
    for i in 0..60 {
        append_and_commit(log, &batch(8, &format!("b{i}"))).await;
    }
    read_by_offset(log).await.0
}

fn small_segments() -> TopicConfig {
    topic_config(&[("segment.bytes", "20000"), ("index.interval.bytes", "1000")])
}

#[test]
fn corrupt_batch_in_an_old_segment_keeps_later_segments_and_offsets() {
    for with_checkpoint in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        run(move || async move {
            let cfg = small_segments();
            let mut log = open(&path, cfg.clone(), false).await;
            let acked = fill(&mut log).await;
            let rp = if with_checkpoint {
                Some(checkpoint(&mut log).await)
            } else {
                None
            };
            let end = log.log_end_offset();
            assert_eq!(end, 480);
            drop(log);
            let logs = segment_logs(&path);
            assert!(logs.len() >= 3, "{logs:?}");
            // Garbage over the header of the third batch of the first
            // segment (a CRC-unchecked walk notices it too).
            let first = path.join(&logs[0]);
            let (pos, bad_base) = batch_positions(&first)[2];
            let mut data = std::fs::read(&first).unwrap();
            for b in &mut data[pos + 8..pos + 40] {
                *b ^= 0x5a;
            }
            std::fs::write(&first, &data).unwrap();
            // And a flipped byte in the records of a batch of the second
            // segment (only a CRC check notices it).
            let second = path.join(&logs[1]);
            let (pos2, bad_base2) = batch_positions(&second)[1];
            let mut data = std::fs::read(&second).unwrap();
            data[pos2 + 90] ^= 0xff;
            std::fs::write(&second, &data).unwrap();
            let third_base: i64 = logs[2].trim_end_matches(".log").parse().unwrap();

            let mut log = reopen(&path, cfg.clone(), rp).await;
            assert_eq!(log.log_end_offset(), end, "the log end never moves back");
            assert_eq!(segment_logs(&path)[..logs.len()], logs[..], "no segment is deleted");
            let read = if with_checkpoint {
                // Below the recovery point nothing is checked (as in Kafka):
                // the damage stays unnoticed, and nothing is lost.
                assert_eq!(log.recovery_stats().corrupt_regions, 0);
                let (read, corrupt) = read_from(&log, third_base).await;
                assert!(corrupt.is_empty());
                assert_eq!(read, acked.range(third_base..).map(|(k, v)| (*k, v.clone())).collect());
                read
            } else {
                let (read, corrupt) = read_by_offset(&log).await;
                // Every acknowledged offset is readable or reported corrupt.
                for (off, value) in &acked {
                    match read.get(off) {
                        Some(v) => assert_eq!(v, value, "offset {off}"),
                        None => assert!(corrupt.contains(off), "offset {off} neither readable nor reported"),
                    }
                }
                let expected: Vec<i64> = (bad_base..bad_base + 8).chain(bad_base2..bad_base2 + 8).collect();
                assert_eq!(corrupt, expected, "exactly the damaged batches are reported");
                assert_eq!(log.recovery_stats().corrupt_regions, 2);
                read
            };
            // New appends never reuse an offset.
            let base = append_and_commit(&mut log, &batch(2, "new")).await;
            assert_eq!(base, end);
            drop(log);
            // And a second restart agrees.
            let log = reopen(&path, cfg, None).await;
            assert_eq!(log.log_end_offset(), end + 2);
            let (read2, _) = read_from(&log, *read.keys().next().unwrap()).await;
            assert_eq!(read2.len(), read.len() + 2);
        });
    }
}

#[test]
fn corruption_followed_by_valid_data_in_the_last_segment_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    run(move || async move {
        let cfg = topic_config(&[]);
        let mut log = open(&path, cfg.clone(), false).await;
        for i in 0..6 {
            append_and_commit(&mut log, &batch(5, &format!("b{i}"))).await;
        }
        drop(log);
        let seg = path.join("00000000000000000000.log");
        let (pos, _) = batch_positions(&seg)[2];
        let mut data = std::fs::read(&seg).unwrap();
        data[pos + 80] ^= 0xff;
        std::fs::write(&seg, &data).unwrap();
        let mut log = reopen(&path, cfg, None).await;
        assert_eq!(log.log_end_offset(), 30);
        let (read, corrupt) = read_by_offset(&log).await;
        assert_eq!(corrupt, (10..15).collect::<Vec<_>>());
        assert_eq!(read.len(), 25);
        assert!(read[&29].starts_with("b5-4-"));
        assert_eq!(append_and_commit(&mut log, &batch(1, "new")).await, 30);
    });
}

#[test]
fn restart_checks_only_what_lies_past_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    run(move || async move {
        let cfg = small_segments();
        let mut log = open(&path, cfg.clone(), false).await;
        fill(&mut log).await;
        let rp = checkpoint(&mut log).await;
        assert_eq!(rp, 480);
        let n = log.segment_count();
        for i in 0..3 {
            append_and_commit(&mut log, &batch(8, &format!("c{i}"))).await;
        }
        let acked = read_by_offset(&log).await.0;
        drop(log);
        let total: u64 = segment_logs(&path)
            .iter()
            .map(|f| std::fs::metadata(path.join(f)).unwrap().len())
            .sum();
        // With the checkpoint: only the segment holding the recovery point
        // is checked; the older ones are trusted.
        let log = reopen(&path, cfg.clone(), Some(rp)).await;
        let stats = log.recovery_stats().clone();
        assert_eq!(log.log_end_offset(), 504);
        assert_eq!(stats.segments, log.segment_count());
        assert_eq!(stats.segments_checked, 1, "{stats:?}");
        assert_eq!(stats.segments_trusted, stats.segments - 1, "{stats:?}");
        assert!(stats.bytes_checked < total / 2, "{stats:?}, total {total}");
        assert_eq!(read_by_offset(&log).await.0, acked);
        assert!(log.segment_count() >= n);
        drop(log);
        // Without one: every segment is checked (what main always did).
        let log = reopen(&path, cfg, None).await;
        let full = log.recovery_stats().clone();
        assert_eq!(full.segments_checked, full.segments, "{full:?}");
        // (the active segment's file ends in O_DIRECT zero padding)
        assert!(full.bytes_checked + 4096 >= total, "{full:?}, total {total}");
        assert_eq!(read_by_offset(&log).await.0, acked);
    });
}

#[test]
fn torn_tail_past_the_recovery_point_is_cut_and_the_log_end_never_goes_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    run(move || async move {
        let cfg = topic_config(&[]);
        let mut log = open(&path, cfg.clone(), false).await;
        for i in 0..4 {
            append_and_commit(&mut log, &batch(5, &format!("b{i}"))).await;
        }
        let rp = checkpoint(&mut log).await;
        assert_eq!(rp, 20);
        append_and_commit(&mut log, &batch(5, "b4")).await;
        drop(log);
        let seg = path.join("00000000000000000000.log");
        let positions = batch_positions(&seg);
        let (last, _) = positions[4];
        // A torn fifth batch (past the recovery point): cut off.
        let mut data = std::fs::read(&seg).unwrap();
        data[last + 80] ^= 0xff;
        std::fs::write(&seg, &data).unwrap();
        let log = reopen(&path, cfg.clone(), Some(rp)).await;
        assert_eq!(log.log_end_offset(), 20);
        assert_eq!(log.recovery_stats().corrupt_regions, 0);
        drop(log);
        // Synced data below the recovery point gone (the file cut short):
        // the log end stays at the recovery point, offsets are not reused.
        let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(positions[2].0 as u64).unwrap();
        drop(f);
        let mut log = reopen(&path, cfg, Some(rp)).await;
        assert_eq!(log.log_end_offset(), 20);
        assert_eq!(append_and_commit(&mut log, &batch(1, "new")).await, 20);
    });
}
