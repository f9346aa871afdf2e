//! `ringlog bench`: a load generator for any Kafka-compatible broker.
//!
//! It speaks the Kafka protocol (through the `kafka-protocol` crate) over
//! plain blocking sockets, one writer and one reader thread per producer
//! connection and one thread per consumer connection, so that it costs little
//! CPU next to the broker it measures:
//!
//! - [`config`]: settings from defaults, a workload file and flags;
//! - [`cluster`]: Metadata, CreateTopics, ListOffsets;
//! - [`producer`]: pipelined produce requests, closed or open loop;
//! - [`consumer`]: Fetch loops over manually assigned partitions;
//! - [`template`]: record batches built once and reused, with a send stamp;
//! - [`schedule`]: the open-loop schedule and partitioning (pure);
//! - [`stats`]: histograms and the summary (text, JSON, `.hgrm`).

pub mod client;
pub mod cluster;
pub mod config;
pub mod consumer;
pub mod producer;
pub mod run;
pub mod schedule;
pub mod shared;
pub mod stats;
pub mod template;

use std::path::Path;

use anyhow::Context;

pub use config::{BenchArgs, Settings};

/// Run `ringlog bench`; returns the process exit status (0 = the run
/// completed without errors, 1 = it ran but failed, 2 = it could not run).
pub fn main(args: BenchArgs) -> i32 {
    let settings = match Settings::resolve(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringlog bench: {e:#}");
            return 2;
        }
    };
    let log = |line: &str| eprintln!("{line}");
    log(&format!(
        "ringlog bench: workload {} against {} ({})",
        settings.name,
        settings.bootstrap,
        if settings.is_fixed_rate() {
            format!("fixed rate {:.1} MB/s", settings.rate as f64 / 1e6)
        } else {
            "max throughput".to_string()
        }
    ));
    if args.prepare {
        return match prepare(&settings, &log) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("ringlog bench: {e:#}");
                2
            }
        };
    }
    let out_dir = settings.out.clone();
    let output = match run::run(settings, &log) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ringlog bench: {e:#}");
            return 2;
        }
    };
    print!("{}", output.summary.render());
    if let Some(dir) = out_dir {
        match write_outputs(&dir, &output) {
            Ok(()) => eprintln!("results written to {}", dir.display()),
            Err(e) => {
                eprintln!("ringlog bench: {e:#}");
                return 2;
            }
        }
    }
    if output.summary.ok {
        0
    } else {
        1
    }
}

/// `--prepare`: create the topics, print "TOPIC PARTITIONS" lines and, with
/// `--out`, write the resolved settings and topics to settings.json (for
/// scripts driving other generators with the same workload).
fn prepare(settings: &Settings, log: &dyn Fn(&str)) -> anyhow::Result<()> {
    let c = cluster::discover(settings, log)?;
    let mut topics = Vec::new();
    for (i, name) in c.topics.iter().enumerate() {
        let n = c.partitions.iter().filter(|(tp, _)| tp.topic == i).count();
        println!("{name} {n}");
        topics.push(serde_json::json!({ "name": name, "partitions": n }));
    }
    if let Some(dir) = &settings.out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let json = serde_json::json!({ "settings": settings, "topics": topics });
        let path = dir.join("settings.json");
        std::fs::write(&path, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// summary.json, summary.txt, produce-latency.hgrm and e2e-latency.hgrm.
pub fn write_outputs(dir: &Path, output: &run::RunOutput) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    let json = serde_json::to_string_pretty(&output.summary)?;
    write("summary.json", &(json + "\n"))?;
    write("summary.txt", &output.summary.render())?;
    write(
        "produce-latency.hgrm",
        &stats::percentile_distribution(&output.produce_latency),
    )?;
    write("e2e-latency.hgrm", &stats::percentile_distribution(&output.e2e_latency))?;
    Ok(())
}
