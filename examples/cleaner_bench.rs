//! The log cleaner's compute path against the key count: how fast a pass
//! maps and rewrites a log, how many passes a key map of a given size
//! needs, and the memory it takes (the map is the only part that grows;
//! the log is generated and consumed batch by batch, as the cleaner reads
//! 1 MiB chunks).
//!
//! ```text
//! cargo run --release --example cleaner_bench -- [KEYS] [UPDATES_PER_KEY] [MAP_MIB] [CODEC]
//! cargo run --release --example cleaner_bench -- 10000000 2 128 none
//! ```
//!
//! Prints one line per pass and a summary: input MB/s per core of the
//! cleaner's own work (map building and rewriting, not the generation of
//! the test log), records kept/removed, the map's memory and the process's
//! peak RSS (VmHWM). The disk side is measured by the broker itself
//! (`ringlog_shard_cleaner_*` metrics, "log cleaned" log lines).

use std::time::Instant;

use ringlog::log::cleaner::{build_map, clean_segment, FilterPolicy, KeyMap, TxnFilter};
use ringlog::record::{build_batch, Compression, Record};

const RECORDS_PER_BATCH: i64 = 100;
const VALUE_BYTES: usize = 64;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: u64| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(d);
    let keys = arg(1, 1_000_000);
    let updates = arg(2, 2);
    let map_mib = arg(3, 128) as usize;
    let codec = match args.get(4).map(String::as_str) {
        Some("gzip") => Compression::Gzip,
        Some("snappy") => Compression::Snappy,
        Some("lz4") => Compression::Lz4,
        Some("zstd") => Compression::Zstd,
        _ => Compression::None,
    };
    let total = keys * updates;
    println!(
        "cleaner_bench: {keys} keys x {updates} updates = {total} records of {VALUE_BYTES} B, map {map_mib} MiB, codec {codec:?}"
    );
    let mut map = KeyMap::with_memory(map_mib << 20, 0.9);
    println!("key map: {} entries, {} bytes", map.capacity(), map.memory_bytes());
    // The log: record i has key (i % keys); the latest update of each key
    // is in the last `keys` records. Batches are generated on the fly.
    let log = Log {
        keys,
        total: total as i64,
        codec,
    };
    let policy = FilterPolicy {
        drop_tombstones: false,
        retain_empty_producer_batch: false,
        txn: TxnFilter::None,
    };
    let mut busy = 0f64;
    let mut first_dirty = 0i64;
    let mut passes = 0;
    let mut input_bytes = 0u64;
    while first_dirty < log.total {
        passes += 1;
        map.clear();
        let (mut read, mut map_s) = (0u64, 0f64);
        let mut end = log.total;
        for b in log.batches_from(first_dirty) {
            read += b.len() as u64;
            let t = Instant::now();
            let built = build_map(std::iter::once(b.as_slice()), first_dirty..log.total, &mut map).expect("map");
            map_s += t.elapsed().as_secs_f64();
            if built.full {
                end = built.end_offset;
                break;
            }
        }
        // Rewrite everything below the map's end (the clean part too).
        let (mut rewritten, mut clean_s, mut kept, mut removed) = (0u64, 0f64, 0u64, 0u64);
        for b in log.batches_from(0) {
            if first_offset(&b) >= end {
                break;
            }
            rewritten += b.len() as u64;
            let mut p = policy;
            let t = Instant::now();
            let out = clean_segment(std::iter::once(b.as_slice()), &map, &mut p).expect("clean");
            clean_s += t.elapsed().as_secs_f64();
            kept += out.records_kept;
            removed += out.records_dropped;
        }
        busy += map_s + clean_s;
        input_bytes += read + rewritten;
        println!(
            "pass {passes}: dirty {first_dirty}..{end} ({} keys mapped): map {:.1} MB in {map_s:.2}s ({:.0} MB/s), rewrite {:.1} MB in {clean_s:.2}s ({:.0} MB/s), kept {kept} removed {removed}",
            map.len(),
            read as f64 / 1e6,
            read as f64 / 1e6 / map_s.max(1e-9),
            rewritten as f64 / 1e6,
            rewritten as f64 / 1e6 / clean_s.max(1e-9),
        );
        first_dirty = end;
    }
    println!(
        "summary: {passes} passes, {:.1} MB processed in {busy:.2}s of cleaner time = {:.1} MB/s on one core; key map {} MiB; peak RSS {} MiB",
        input_bytes as f64 / 1e6,
        input_bytes as f64 / 1e6 / busy.max(1e-9),
        map.memory_bytes() >> 20,
        peak_rss_kib() / 1024
    );
}

struct Log {
    keys: u64,
    total: i64,
    codec: Compression,
}

impl Log {
    /// The batches from the one holding `offset` on.
    fn batches_from(&self, offset: i64) -> impl Iterator<Item = Vec<u8>> + '_ {
        let first = offset / RECORDS_PER_BATCH * RECORDS_PER_BATCH;
        (first..self.total)
            .step_by(RECORDS_PER_BATCH as usize)
            .map(move |base| {
                let n = RECORDS_PER_BATCH.min(self.total - base);
                let keys: Vec<String> = (base..base + n)
                    .map(|i| format!("key-{:012}", i as u64 % self.keys))
                    .collect();
                let value = vec![b'v'; VALUE_BYTES];
                let recs: Vec<Record<'_>> = keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| Record {
                        key: Some(k.as_bytes()),
                        value: Some(&value),
                        headers: &[],
                        timestamp_delta: i as i64,
                    })
                    .collect();
                build_batch(base, 1_700_000_000_000, self.codec, &recs)
            })
    }
}

fn first_offset(batch: &[u8]) -> i64 {
    batch
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, i64::from_be_bytes)
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}
