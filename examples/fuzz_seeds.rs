//! Builds the fuzz seed corpus (run by `scripts/fuzz-seeds.sh`):
//!
//! ```text
//! cargo run --release --example fuzz_seeds -- CAPTURE_DIR DATA_ROOT OUT_DIR
//! ```
//!
//! - `OUT_DIR/request_frame/`: request frames recorded by the broker
//!   (`RINGLOG_CAPTURE_FRAMES=CAPTURE_DIR`), deduplicated (correlation ids
//!   ignored), a few per API key and version spread over their sizes, and a
//!   default request of every supported API and version;
//! - `OUT_DIR/record_batch/`: the record sets of the recorded Produce
//!   requests, plus batches built with every codec and producer kind (the
//!   first byte of each seed picks a topic configuration, see
//!   `ringlog::fuzzing::record_batch`);
//! - `OUT_DIR/group_records/`: `__consumer_offsets` records read from the
//!   segment files under `DATA_ROOT` (the e2e tests' data directories).
//!
//! Each directory stays under its byte budget; files are named by a hash of
//! their contents, so reruns only add what is new.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ProduceRequest};
use ringlog::api::APIS;
use ringlog::fuzzing::join_group_records;
use ringlog::protocol::decode_body;
use ringlog::protocol::request::{default_request_frame, parse_request};
use ringlog::record::{self, BatchHeader, BatchIter, BatchOptions, Compression, Record};

/// Byte budgets of the three corpus directories (together < 2 MB).
const FRAME_BUDGET: usize = 900 * 1024;
const BATCH_BUDGET: usize = 500 * 1024;
const GROUP_BUDGET: usize = 300 * 1024;
/// Frames kept per API key and version, and the largest kept.
const FRAMES_PER_API_VERSION: usize = 6;
const MAX_SEED: usize = 64 * 1024;

fn main() -> anyhow::Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [capture, data_root, out] = args.as_slice() else {
        anyhow::bail!("usage: fuzz_seeds CAPTURE_DIR DATA_ROOT OUT_DIR");
    };
    let frames = read_frames(capture)?;
    // A default request of every supported API and version, so that each
    // has a seed even if the tests did not send it.
    let mut picked = pick_frames(&frames);
    for (key, lo, hi) in APIS.iter().map(|a| (a.key, a.min_version, a.max_version)) {
        for version in lo..=hi {
            picked.push(default_request_frame(key, version, 1)?.to_vec());
        }
    }
    let n = write_seeds(&out.join("request_frame"), picked, FRAME_BUDGET)?;
    let recorded: usize = frames.values().map(Vec::len).sum();
    println!(
        "request_frame: {n} seeds from {recorded} distinct frames of {} API versions",
        frames.len()
    );
    let batches = batch_seeds(&frames);
    let n = write_seeds(&out.join("record_batch"), batches, BATCH_BUDGET)?;
    println!("record_batch: {n} seeds");
    let groups = group_seeds(data_root)?;
    let n = write_seeds(&out.join("group_records"), groups, GROUP_BUDGET)?;
    println!("group_records: {n} seeds");
    Ok(())
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Recorded frames (size prefix included), keyed by (API key, version).
type Frames = BTreeMap<(i16, i16), Vec<Vec<u8>>>;

fn read_frames(dir: &Path) -> anyhow::Result<Frames> {
    let mut out = Frames::new();
    let mut seen = HashSet::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    for p in paths {
        let data = std::fs::read(&p)?;
        if data.len() < 12 {
            continue;
        }
        let mut norm = data.clone();
        norm[8..12].fill(0); // correlation id
        if !seen.insert(fnv(&norm)) {
            continue;
        }
        let key = i16::from_be_bytes([data[4], data[5]]);
        let version = i16::from_be_bytes([data[6], data[7]]);
        out.entry((key, version)).or_default().push(data);
    }
    Ok(out)
}

/// A few frames per API and version, spread over their sizes.
fn pick_frames(frames: &Frames) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for list in frames.values() {
        let mut list: Vec<&Vec<u8>> = list.iter().filter(|f| f.len() <= MAX_SEED).collect();
        list.sort_by_key(|f| f.len());
        let n = list.len();
        let take = n.min(FRAMES_PER_API_VERSION);
        for i in 0..take {
            // Evenly spaced indexes, smallest and largest included.
            let at = if take > 1 { i * (n - 1) / (take - 1) } else { 0 };
            out.push(list[at].clone());
        }
    }
    out.dedup();
    out
}

/// Record sets of the recorded Produce requests, and built batches.
fn batch_seeds(frames: &Frames) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for ((key, version), list) in frames {
        if *key != ApiKey::Produce as i16 {
            continue;
        }
        for f in list {
            let mut frame = Bytes::copy_from_slice(&f[4..]);
            let Ok(_) = parse_request(&mut frame) else { continue };
            let Ok(req) = decode_body::<ProduceRequest>(&mut frame, *version) else {
                continue;
            };
            for t in &req.topic_data {
                for p in &t.partition_data {
                    if let Some(r) = &p.records {
                        if r.len() < MAX_SEED {
                            let mut seed = vec![0u8];
                            seed.extend_from_slice(r);
                            out.push(seed);
                        }
                    }
                }
            }
        }
    }
    // Recorded sets first, trimmed to a share of the budget, so built ones fit.
    out.sort_by_key(|s| s.len());
    let mut recorded = 0usize;
    out.retain(|s| {
        recorded += s.len();
        recorded <= BATCH_BUDGET / 2
    });

    let recorded_n = out.len();
    let headers: &[(&str, Option<&[u8]>)] = &[("trace", Some(b"abc")), ("empty", None)];
    let value = vec![b'v'; 300];
    let recs: Vec<Record<'_>> = (0..5)
        .map(|i| Record {
            key: if i % 2 == 0 { Some(b"key") } else { None },
            value: Some(&value[..i * 60]),
            headers: if i == 3 { headers } else { &[] },
            timestamp_delta: i as i64 * 3,
        })
        .collect();
    let keyed: Vec<Record<'_>> = recs.iter().map(|r| Record { key: Some(b"k"), ..*r }).collect();
    let idempotent = BatchOptions {
        producer_id: 4000,
        producer_epoch: 1,
        base_sequence: 17,
        ..BatchOptions::default()
    };
    let transactional = BatchOptions {
        is_transactional: true,
        ..idempotent
    };
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let ts = 1_700_000_000_000;
        let plain = record::build_batch(0, ts, codec, &recs);
        let mut seed = vec![0u8];
        seed.extend_from_slice(&plain);
        out.push(seed);
        // Keys on every record, for a compacted topic (pick 1).
        let mut seed = vec![1u8];
        seed.extend_from_slice(&record::build_batch(0, ts, codec, &keyed));
        out.push(seed);
        let mut seed = vec![4u8]; // LogAppendTime topic
        seed.extend_from_slice(&record::build_batch_with(0, ts, codec, &idempotent, &recs[..1]));
        out.push(seed);
        // Two batches in one payload, the second transactional.
        let mut seed = vec![0u8];
        seed.extend_from_slice(&plain);
        seed.extend_from_slice(&record::build_batch_with(0, ts, codec, &transactional, &recs[1..3]));
        out.push(seed);
    }
    // The same with the CRC fix-up bit, so mutations reach the decoders.
    let fixup: Vec<Vec<u8>> = out[recorded_n..]
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s[0] |= 0x80;
            s
        })
        .collect();
    out.extend(fixup);
    // A raw snappy block (what librdkafka writes) instead of xerial framing.
    let plain = record::build_batch(0, 5, Compression::None, &recs);
    if let Some(h) = BatchHeader::parse(&plain) {
        let raw = snap::raw::Encoder::new().compress_vec(&plain[record::BATCH_HEADER_LEN..]);
        if let Ok(raw) = raw {
            let mut b = plain[..record::BATCH_HEADER_LEN].to_vec();
            b.extend_from_slice(&raw);
            let h = BatchHeader {
                attributes: Compression::Snappy.id(),
                batch_length: (b.len() - record::LOG_OVERHEAD) as i32,
                ..h
            };
            h.write(&mut b);
            record::update_crc(&mut b);
            let mut seed = vec![0x80u8];
            seed.extend_from_slice(&b);
            out.push(seed);
        }
    }
    out
}

/// `__consumer_offsets` records from every segment under `root`, one seed
/// per segment file (at most 64 records each).
fn group_seeds(root: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut logs = Vec::new();
    find_offsets_logs(root, &mut logs);
    logs.sort();
    let mut out = Vec::new();
    for path in logs {
        let Ok(data) = std::fs::read(&path) else { continue };
        let mut records = Vec::new();
        for (at, h) in BatchIter::new(&data, true) {
            if h.is_control() {
                continue;
            }
            let Ok(recs) = record::decode_records(&data[at..at + h.total_size()]) else {
                continue;
            };
            for r in recs {
                if let Some(k) = r.key {
                    records.push((k.to_vec(), r.value.map(|v| v.to_vec())));
                }
            }
        }
        for chunk in records.chunks(64) {
            out.push(join_group_records(chunk));
        }
    }
    Ok(out)
}

fn find_offsets_logs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            find_offsets_logs(&p, out);
        } else if p.extension().is_some_and(|x| x == "log")
            && p.parent()
                .and_then(|d| d.file_name())
                .is_some_and(|n| n.to_string_lossy().starts_with("__consumer_offsets-"))
        {
            out.push(p);
        }
    }
}

/// Write new seeds into `dir` (named by content hash) while the directory
/// stays within `budget` bytes; smaller seeds first.
fn write_seeds(dir: &Path, mut seeds: Vec<Vec<u8>>, budget: usize) -> anyhow::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let mut used: usize = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len() as usize)
        .sum();
    seeds.sort_by_key(|s| s.len());
    let mut written = 0;
    for s in seeds {
        if s.len() > MAX_SEED {
            continue;
        }
        let path = dir.join(format!("seed-{:016x}", fnv(&s)));
        if path.exists() {
            continue;
        }
        if used + s.len() > budget {
            break;
        }
        std::fs::write(&path, &s)?;
        used += s.len();
        written += 1;
    }
    Ok(written)
}
