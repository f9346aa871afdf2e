//! Runs every committed fuzz input through the fuzz targets' entry
//! functions (`ringlog::fuzzing`) on stable, so a crash that was fixed
//! stays fixed without nightly or libFuzzer:
//!
//! - `fuzz/corpus/<target>/`: the seed corpus (`scripts/fuzz-seeds.sh`);
//! - `fuzz/regressions/<target>/`: inputs that once crashed a target.

use std::path::{Path, PathBuf};

// As in the broker and the fuzz targets: huge reservations are lazy.
#[global_allocator]
static ALLOC: ringlog::alloc::BrokerAlloc = ringlog::alloc::BrokerAlloc;

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    files.sort();
    files
}

/// Feed every input of `target` to `entry`; fail listing each input that
/// panicked. The corpus must not be empty (the test would prove nothing).
fn run(target: &str, entry: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let corpus = inputs(&root.join("corpus").join(target));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target} is empty: run scripts/fuzz-seeds.sh"
    );
    let regressions = inputs(&root.join("regressions").join(target));
    let mut failed = Vec::new();
    for path in corpus.iter().chain(&regressions) {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if std::panic::catch_unwind(|| entry(&data)).is_err() {
            failed.push(path.display().to_string());
        }
    }
    println!(
        "{target}: {} corpus inputs, {} regression inputs",
        corpus.len(),
        regressions.len()
    );
    assert!(failed.is_empty(), "{target} panicked on:\n  {}", failed.join("\n  "));
}

#[test]
fn request_frame_inputs() {
    run("request_frame", ringlog::fuzzing::request_frame);
}

#[test]
fn record_batch_inputs() {
    run("record_batch", ringlog::fuzzing::record_batch);
}

#[test]
fn group_records_inputs() {
    run("group_records", ringlog::fuzzing::group_records);
}

#[test]
fn controller_messages_inputs() {
    run("controller_messages", ringlog::fuzzing::controller_messages);
}
