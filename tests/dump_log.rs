//! `ringlog dump-log` run as a process on segment files written here: exit
//! codes and output of the binary.

use std::path::Path;
use std::process::{Command, Output};

use ringlog::record::{build_batch, Compression, Record};

const BIN: &str = env!("CARGO_BIN_EXE_ringlog");

fn dump(args: &[&str], files: &[&Path]) -> Output {
    Command::new(BIN)
        .arg("dump-log")
        .args(args)
        .args(files)
        .output()
        .expect("run ringlog dump-log")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Two batches (offsets 0..=1 uncompressed, 2 gzip) and an index entry for
/// the second one, as a Kafka broker lays them out.
fn write_segment(dir: &Path) -> (Vec<u8>, usize) {
    let rec = |value: &'static [u8], delta| Record {
        key: None,
        value: Some(value),
        headers: &[],
        timestamp_delta: delta,
    };
    let mut log = build_batch(
        0,
        1_700_000_000_000,
        Compression::None,
        &[rec(b"one", 0), rec(b"two", 1)],
    );
    let second = log.len();
    log.extend_from_slice(&build_batch(
        2,
        1_700_000_000_100,
        Compression::Gzip,
        &[rec(b"three", 0)],
    ));
    std::fs::write(dir.join("00000000000000000000.log"), &log).unwrap();
    let mut index = Vec::new();
    index.extend_from_slice(&2u32.to_be_bytes());
    index.extend_from_slice(&(second as u32).to_be_bytes());
    std::fs::write(dir.join("00000000000000000000.index"), &index).unwrap();
    (log, second)
}

#[test]
fn dump_log_binary_exit_codes_and_output() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, second) = write_segment(dir.path());
    let log_path = dir.path().join("00000000000000000000.log");
    let index_path = dir.path().join("00000000000000000000.index");

    // A sound segment and its index.
    let o = dump(&["--print-data-log"], &[&log_path, &index_path]);
    let text = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(text.contains("baseOffset: 0 lastOffset: 1 count: 2 "), "{text}");
    assert!(text.contains("compresscodec: gzip"), "{text}");
    assert!(text.contains("payload: three"), "{text}");
    assert!(text.contains(&format!("offset: 2 position: {second}\n")), "{text}");

    // JSON: one object per line.
    let o = dump(&["--format", "json", "--deep-iteration"], &[&log_path]);
    assert_eq!(o.status.code(), Some(0));
    let objects: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect();
    assert_eq!(objects.iter().filter(|v| v["kind"] == "batch").count(), 2);
    assert_eq!(objects.iter().filter(|v| v["kind"] == "record").count(), 3);

    // Kafka's --files option.
    let both = format!("{},{}", log_path.display(), index_path.display());
    let o = dump(&["--files", &both, "--verify-index-only"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));

    // A corrupt batch: dumped, isvalid false, exit status 1.
    let mut bad = log.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    std::fs::write(&log_path, &bad).unwrap();
    let o = dump(&[], &[&log_path]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("isvalid: false"), "{text}");
    assert!(text.contains("baseOffset: 2 "), "{text}");

    // A garbage tail.
    let mut tail = log.clone();
    tail.extend_from_slice(b"garbage");
    std::fs::write(&log_path, &tail).unwrap();
    let o = dump(&[], &[&log_path]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains(&format!("Found 7 bytes of garbage at position {}", log.len())));

    // An index entry off a batch boundary.
    std::fs::write(&log_path, &log).unwrap();
    let mut index = 2u32.to_be_bytes().to_vec();
    index.extend_from_slice(&(second as u32 + 1).to_be_bytes());
    std::fs::write(&index_path, &index).unwrap();
    let o = dump(&[], &[&index_path]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("is not a batch boundary"), "{}", stdout(&o));

    // Not a segment file.
    let snapshot = dir.path().join("00000000000000000000.snapshot");
    std::fs::write(&snapshot, b"x").unwrap();
    let o = dump(&[], &[&snapshot]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("Unsupported file"));

    // No file at all: a usage error.
    let o = dump(&[], &[]);
    assert_eq!(o.status.code(), Some(2));
}
