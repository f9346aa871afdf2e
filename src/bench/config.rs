//! What a run does: defaults, overridden by a workload file (TOML), overridden
//! by command-line flags. Pure parsing and validation, no IO besides reading
//! the workload file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::record::Compression;

/// `ringlog bench`: a load generator for any Kafka-compatible broker.
///
/// Sizes and rates take an optional unit: K/M/G (powers of 1000, also KB, MB,
/// GB) or KiB/MiB/GiB (powers of 1024); a trailing "/s" is allowed on rates.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct BenchArgs {
    /// Workload file (TOML) supplying defaults; flags override it.
    #[arg(long, value_name = "FILE")]
    pub workload: Option<PathBuf>,
    /// Broker to bootstrap from (default 127.0.0.1:9092).
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap: Option<String>,
    /// Topic name; with --topics N > 1 the topics are TOPIC-0 .. TOPIC-(N-1).
    #[arg(long)]
    pub topic: Option<String>,
    /// Number of topics (default 1).
    #[arg(long, value_name = "N")]
    pub topics: Option<u32>,
    /// Partitions per topic, used when a topic has to be created (default 16).
    #[arg(long, value_name = "N")]
    pub partitions: Option<i32>,
    /// Size of each message value (default 1KiB).
    #[arg(long, value_name = "BYTES")]
    pub message_size: Option<String>,
    /// Give every message a key (`--key`, `--key=false`).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub key: Option<bool>,
    /// With --key: draw keys from this many distinct values, each batch built
    /// afresh (for filling compacted topics); 0 = reuse the template's keys.
    #[arg(long, value_name = "N")]
    pub key_space: Option<u64>,
    /// A config of the topics the run creates, KEY=VALUE (repeatable),
    /// e.g. --topic-config cleanup.policy=compact.
    #[arg(long = "topic-config", value_name = "KEY=VALUE")]
    pub topic_configs: Vec<String>,
    /// Producer connections (default 2; 0 = consume only).
    #[arg(long, value_name = "N")]
    pub producers: Option<usize>,
    /// Consumer connections (default 2; 0 = produce only).
    #[arg(long, value_name = "N")]
    pub consumers: Option<usize>,
    /// Total produce rate in bytes per second, across all producers; 0 = as
    /// fast as possible (closed loop). Example: 50MB.
    #[arg(long, value_name = "BYTES_PER_SEC")]
    pub rate: Option<String>,
    /// Measured time in seconds, after the warmup (default 30; 0 = no limit,
    /// for --total-bytes or catch-up runs).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Seconds of load before measuring starts (default 5).
    #[arg(long, value_name = "SECS")]
    pub warmup: Option<f64>,
    /// Produce acks: 0, 1 or all (-1). Default all.
    #[arg(long, value_name = "ACKS", allow_hyphen_values = true)]
    pub acks: Option<String>,
    /// Largest record batch per partition (Kafka batch.size; default 1MiB).
    #[arg(long, value_name = "BYTES")]
    pub batch_bytes: Option<String>,
    /// How long a message may wait for its batch to fill (linger.ms; default 1).
    #[arg(long, value_name = "MS")]
    pub linger_ms: Option<f64>,
    /// none, gzip, snappy, lz4 or zstd (default none).
    #[arg(long, value_name = "CODEC")]
    pub compression: Option<String>,
    /// Produce requests in flight per connection (default 5).
    #[arg(long, value_name = "N")]
    pub max_in_flight: Option<usize>,
    /// Largest produce request (max.request.size; default 1MiB).
    #[arg(long, value_name = "BYTES")]
    pub max_request_bytes: Option<String>,
    /// Stop producing after this many payload bytes (all producers together).
    #[arg(long, value_name = "BYTES")]
    pub total_bytes: Option<String>,
    /// Where consumers start: latest (tailing, default) or earliest.
    #[arg(long, value_name = "WHERE")]
    pub consume_from: Option<String>,
    /// Consumers stop once they reach the end offsets seen at start
    /// (catch-up reads).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub until_caught_up: Option<bool>,
    /// Replication factor for created topics (default -1: the broker's default).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub replication_factor: Option<i16>,
    /// Seconds consumers may take to read everything produced once producers
    /// stop (default 30).
    #[arg(long, value_name = "SECS")]
    pub drain_timeout: Option<f64>,
    /// Name of the run in the summary (default: the workload's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Directory for summary.json and the .hgrm histograms.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// No progress line every second.
    #[arg(long)]
    pub quiet: bool,
    /// Only create the topics (if missing), print their partitions, and exit.
    #[arg(long)]
    pub prepare: bool,
}

/// A size or rate in a workload file: a number of bytes or a string with a unit.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum SizeValue {
    Bytes(u64),
    Text(String),
}

impl SizeValue {
    fn bytes(&self) -> anyhow::Result<u64> {
        match self {
            SizeValue::Bytes(n) => Ok(*n),
            SizeValue::Text(s) => parse_bytes(s),
        }
    }
}

/// `acks` in a workload file: -1, 0, 1 or "all".
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum AcksValue {
    Number(i64),
    Text(String),
}

/// A workload file. Every key is optional; see workloads/*.toml.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkloadFile {
    pub name: Option<String>,
    pub description: Option<String>,
    /// A file that only names other workloads to run one after the other
    /// (used by scripts/bench.sh; the generator runs one workload at a time).
    pub suite: Option<Vec<String>>,
    pub topic: Option<String>,
    pub topics: Option<u32>,
    pub partitions: Option<i32>,
    pub message_size: Option<SizeValue>,
    pub key: Option<bool>,
    pub key_space: Option<u64>,
    pub topic_configs: Option<std::collections::BTreeMap<String, TopicConfigValue>>,
    pub producers: Option<usize>,
    pub consumers: Option<usize>,
    pub rate: Option<SizeValue>,
    pub duration: Option<f64>,
    pub warmup: Option<f64>,
    pub acks: Option<AcksValue>,
    pub batch_bytes: Option<SizeValue>,
    pub linger_ms: Option<f64>,
    pub compression: Option<String>,
    pub max_in_flight: Option<usize>,
    pub max_request_bytes: Option<SizeValue>,
    pub total_bytes: Option<SizeValue>,
    pub consume_from: Option<String>,
    pub until_caught_up: Option<bool>,
    pub replication_factor: Option<i16>,
    pub drain_timeout: Option<f64>,
}

impl WorkloadFile {
    pub fn parse(text: &str) -> anyhow::Result<WorkloadFile> {
        Ok(toml::from_str(text)?)
    }

    pub fn load(path: &Path) -> anyhow::Result<WorkloadFile> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read workload file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("bad workload file {}", path.display()))
    }
}

/// A topic config value in a workload file: TOML strings, numbers and booleans.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum TopicConfigValue {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl std::fmt::Display for TopicConfigValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TopicConfigValue::Text(v) => f.write_str(v),
            TopicConfigValue::Int(v) => write!(f, "{v}"),
            TopicConfigValue::Float(v) => write!(f, "{v}"),
            TopicConfigValue::Bool(v) => write!(f, "{v}"),
        }
    }
}

/// Where consumers start reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    Earliest,
    Latest,
}

impl StartFrom {
    /// The ListOffsets timestamp that finds this position.
    pub fn list_offsets_timestamp(self) -> i64 {
        match self {
            StartFrom::Earliest => -2,
            StartFrom::Latest => -1,
        }
    }
}

/// Everything a run needs, validated.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub name: String,
    pub bootstrap: String,
    pub topic: String,
    pub topics: u32,
    pub partitions: i32,
    pub message_size: usize,
    pub key: bool,
    /// Distinct keys drawn per record (0: the template's fixed keys).
    pub key_space: u64,
    /// Configs of the topics the run creates.
    pub topic_configs: Vec<(String, String)>,
    pub producers: usize,
    pub consumers: usize,
    /// Bytes per second over all producers; 0 = closed loop.
    pub rate: u64,
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    #[serde(serialize_with = "secs")]
    pub warmup: Duration,
    pub acks: i16,
    pub batch_bytes: usize,
    #[serde(serialize_with = "millis")]
    pub linger: Duration,
    #[serde(serialize_with = "codec_name")]
    pub compression: Compression,
    pub max_in_flight: usize,
    pub max_request_bytes: usize,
    pub total_bytes: Option<u64>,
    pub consume_from: StartFrom,
    pub until_caught_up: bool,
    pub replication_factor: i16,
    #[serde(serialize_with = "secs")]
    pub drain_timeout: Duration,
    #[serde(skip)]
    pub out: Option<PathBuf>,
    #[serde(skip)]
    pub quiet: bool,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

fn codec_name<S: serde::Serializer>(c: &Compression, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.name())
}

/// Largest message value the generator builds.
pub const MAX_MESSAGE_SIZE: usize = 16 << 20;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            name: "custom".to_string(),
            bootstrap: "127.0.0.1:9092".to_string(),
            topic: "ringlog-bench".to_string(),
            topics: 1,
            partitions: 16,
            message_size: 1024,
            key: false,
            key_space: 0,
            topic_configs: Vec::new(),
            producers: 2,
            consumers: 2,
            rate: 0,
            duration: Duration::from_secs(30),
            warmup: Duration::from_secs(5),
            acks: -1,
            batch_bytes: 1 << 20,
            linger: Duration::from_millis(1),
            compression: Compression::None,
            max_in_flight: 5,
            max_request_bytes: 1 << 20,
            total_bytes: None,
            consume_from: StartFrom::Latest,
            until_caught_up: false,
            replication_factor: -1,
            drain_timeout: Duration::from_secs(30),
            out: None,
            quiet: false,
        }
    }
}

impl Settings {
    /// Defaults, then the workload file (if any), then the flags.
    pub fn resolve(args: &BenchArgs) -> anyhow::Result<Settings> {
        let file = match &args.workload {
            Some(path) => {
                let mut w = WorkloadFile::load(path)?;
                if w.name.is_none() {
                    w.name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
                }
                Some(w)
            }
            None => None,
        };
        Self::from_parts(file.as_ref(), args)
    }

    /// [`Settings::resolve`] with the workload file already parsed.
    pub fn from_parts(file: Option<&WorkloadFile>, args: &BenchArgs) -> anyhow::Result<Settings> {
        let mut s = Settings::default();
        if let Some(w) = file {
            if let Some(suite) = &w.suite {
                bail!(
                    "workload {} is a suite of other workloads ({}); run each of them",
                    w.name.as_deref().unwrap_or("?"),
                    suite.join(", ")
                );
            }
            s.apply_file(w)?;
        }
        s.apply_args(args)?;
        s.validate()?;
        Ok(s)
    }

    fn apply_file(&mut self, w: &WorkloadFile) -> anyhow::Result<()> {
        if let Some(v) = &w.name {
            self.name = v.clone();
        }
        if let Some(v) = &w.topic {
            self.topic = v.clone();
        }
        if let Some(v) = w.topics {
            self.topics = v;
        }
        if let Some(v) = w.partitions {
            self.partitions = v;
        }
        if let Some(v) = &w.message_size {
            self.message_size = to_usize(v.bytes().context("message_size")?)?;
        }
        if let Some(v) = w.key {
            self.key = v;
        }
        if let Some(v) = w.key_space {
            self.key_space = v;
        }
        if let Some(m) = &w.topic_configs {
            for (k, v) in m {
                set_topic_config(&mut self.topic_configs, k, &v.to_string());
            }
        }
        if let Some(v) = w.producers {
            self.producers = v;
        }
        if let Some(v) = w.consumers {
            self.consumers = v;
        }
        if let Some(v) = &w.rate {
            self.rate = v.bytes().context("rate")?;
        }
        if let Some(v) = w.duration {
            self.duration = seconds(v).context("duration")?;
        }
        if let Some(v) = w.warmup {
            self.warmup = seconds(v).context("warmup")?;
        }
        if let Some(v) = &w.acks {
            self.acks = match v {
                AcksValue::Number(n) => parse_acks(&n.to_string())?,
                AcksValue::Text(t) => parse_acks(t)?,
            };
        }
        if let Some(v) = &w.batch_bytes {
            self.batch_bytes = to_usize(v.bytes().context("batch_bytes")?)?;
        }
        if let Some(v) = w.linger_ms {
            self.linger = millis_duration(v).context("linger_ms")?;
        }
        if let Some(v) = &w.compression {
            self.compression = parse_compression(v)?;
        }
        if let Some(v) = w.max_in_flight {
            self.max_in_flight = v;
        }
        if let Some(v) = &w.max_request_bytes {
            self.max_request_bytes = to_usize(v.bytes().context("max_request_bytes")?)?;
        }
        if let Some(v) = &w.total_bytes {
            self.total_bytes = Some(v.bytes().context("total_bytes")?);
        }
        if let Some(v) = &w.consume_from {
            self.consume_from = parse_start(v)?;
        }
        if let Some(v) = w.until_caught_up {
            self.until_caught_up = v;
        }
        if let Some(v) = w.replication_factor {
            self.replication_factor = v;
        }
        if let Some(v) = w.drain_timeout {
            self.drain_timeout = seconds(v).context("drain_timeout")?;
        }
        Ok(())
    }

    fn apply_args(&mut self, a: &BenchArgs) -> anyhow::Result<()> {
        if let Some(v) = &a.name {
            self.name = v.clone();
        }
        if let Some(v) = &a.bootstrap {
            self.bootstrap = v.clone();
        }
        if let Some(v) = &a.topic {
            self.topic = v.clone();
        }
        if let Some(v) = a.topics {
            self.topics = v;
        }
        if let Some(v) = a.partitions {
            self.partitions = v;
        }
        if let Some(v) = &a.message_size {
            self.message_size = to_usize(parse_bytes(v).context("--message-size")?)?;
        }
        if let Some(v) = a.key {
            self.key = v;
        }
        if let Some(v) = a.key_space {
            self.key_space = v;
        }
        for kv in &a.topic_configs {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--topic-config {kv}: expected KEY=VALUE"))?;
            if k.is_empty() {
                bail!("--topic-config {kv}: empty key");
            }
            set_topic_config(&mut self.topic_configs, k, v);
        }
        if let Some(v) = a.producers {
            self.producers = v;
        }
        if let Some(v) = a.consumers {
            self.consumers = v;
        }
        if let Some(v) = &a.rate {
            self.rate = parse_bytes(v).context("--rate")?;
        }
        if let Some(v) = a.duration {
            self.duration = seconds(v).context("--duration")?;
        }
        if let Some(v) = a.warmup {
            self.warmup = seconds(v).context("--warmup")?;
        }
        if let Some(v) = &a.acks {
            self.acks = parse_acks(v)?;
        }
        if let Some(v) = &a.batch_bytes {
            self.batch_bytes = to_usize(parse_bytes(v).context("--batch-bytes")?)?;
        }
        if let Some(v) = a.linger_ms {
            self.linger = millis_duration(v).context("--linger-ms")?;
        }
        if let Some(v) = &a.compression {
            self.compression = parse_compression(v)?;
        }
        if let Some(v) = a.max_in_flight {
            self.max_in_flight = v;
        }
        if let Some(v) = &a.max_request_bytes {
            self.max_request_bytes = to_usize(parse_bytes(v).context("--max-request-bytes")?)?;
        }
        if let Some(v) = &a.total_bytes {
            self.total_bytes = Some(parse_bytes(v).context("--total-bytes")?);
        }
        if let Some(v) = &a.consume_from {
            self.consume_from = parse_start(v)?;
        }
        if let Some(v) = a.until_caught_up {
            self.until_caught_up = v;
        }
        if let Some(v) = a.replication_factor {
            self.replication_factor = v;
        }
        if let Some(v) = a.drain_timeout {
            self.drain_timeout = seconds(v).context("--drain-timeout")?;
        }
        if a.out.is_some() {
            self.out = a.out.clone();
        }
        self.quiet = a.quiet;
        Ok(())
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.topic.is_empty() {
            bail!("topic name is empty");
        }
        if self.topics == 0 {
            bail!("--topics must be at least 1");
        }
        if self.partitions < 1 {
            bail!("--partitions must be at least 1");
        }
        if self.message_size == 0 || self.message_size > MAX_MESSAGE_SIZE {
            bail!("--message-size must be between 1 and {MAX_MESSAGE_SIZE} bytes");
        }
        if self.key_space > 0 && !self.key {
            bail!("--key-space needs --key");
        }
        if self.producers == 0 && self.consumers == 0 {
            bail!("nothing to do: --producers and --consumers are both 0");
        }
        if !(1..=64).contains(&self.max_in_flight) {
            bail!("--max-in-flight must be between 1 and 64");
        }
        if self.max_request_bytes < 1024 {
            bail!("--max-request-bytes must be at least 1KiB");
        }
        if self.batch_bytes == 0 {
            bail!("--batch-bytes must be positive");
        }
        if self.duration.is_zero() {
            let bounded_produce = self.producers > 0 && self.total_bytes.is_some();
            let bounded_consume = self.producers == 0 && self.until_caught_up;
            if !bounded_produce && !bounded_consume {
                bail!(
                    "--duration 0 (no limit) needs --total-bytes (producing) or \
                     --until-caught-up with no producers (catch-up reads)"
                );
            }
        }
        if self.producers == 0 && !self.until_caught_up && self.consume_from == StartFrom::Latest {
            // Legal (e.g. reading while someone else writes), but say so.
            tracing::debug!("consumers only, tailing from latest");
        }
        Ok(())
    }

    /// The topic names of the run.
    pub fn topic_names(&self) -> Vec<String> {
        if self.topics == 1 {
            vec![self.topic.clone()]
        } else {
            (0..self.topics).map(|i| format!("{}-{i}", self.topic)).collect()
        }
    }

    /// Open loop (fixed rate) or closed loop (as fast as possible).
    pub fn is_fixed_rate(&self) -> bool {
        self.rate > 0
    }
}

/// Sets `key` to `value`, replacing an earlier value (flags override files).
fn set_topic_config(configs: &mut Vec<(String, String)>, key: &str, value: &str) {
    match configs.iter_mut().find(|(k, _)| k == key) {
        Some(kv) => kv.1 = value.to_string(),
        None => configs.push((key.to_string(), value.to_string())),
    }
}

fn to_usize(v: u64) -> anyhow::Result<usize> {
    usize::try_from(v).map_err(|_| anyhow::anyhow!("{v} is too large"))
}

fn seconds(v: f64) -> anyhow::Result<Duration> {
    if !(0.0..=1e9).contains(&v) {
        bail!("{v} is not a number of seconds >= 0");
    }
    Ok(Duration::from_secs_f64(v))
}

fn millis_duration(v: f64) -> anyhow::Result<Duration> {
    if !(0.0..=1e9).contains(&v) {
        bail!("{v} is not a number of milliseconds >= 0");
    }
    Ok(Duration::from_secs_f64(v / 1000.0))
}

/// Parse a byte count or rate: `1024`, `1KiB`, `50MB`, `1.5G`, `200MB/s`.
/// K/M/G/T (with or without a trailing B) are powers of 1000, KiB/MiB/GiB/TiB
/// powers of 1024.
pub fn parse_bytes(text: &str) -> anyhow::Result<u64> {
    let t = text.trim();
    let t = t.strip_suffix("/s").unwrap_or(t).trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        bail!("{text:?} is not a size: expected a number with an optional unit, e.g. 1KiB or 50MB");
    }
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        other => bail!("{text:?}: unknown unit {other:?} (use K, M, G, KiB, MiB, GiB)"),
    };
    if let Ok(n) = num.parse::<u64>() {
        return n
            .checked_mul(mult)
            .ok_or_else(|| anyhow::anyhow!("{text:?} is too large"));
    }
    let f: f64 = num.parse().map_err(|_| anyhow::anyhow!("{text:?} is not a size"))?;
    let v = (f * mult as f64).round();
    if !v.is_finite() || v < 0.0 || v >= u64::MAX as f64 {
        bail!("{text:?} is out of range");
    }
    Ok(v as u64)
}

/// `all`, `-1`, `0` or `1`.
pub fn parse_acks(text: &str) -> anyhow::Result<i16> {
    match text.trim().to_ascii_lowercase().as_str() {
        "all" | "-1" => Ok(-1),
        "0" => Ok(0),
        "1" => Ok(1),
        other => bail!("acks must be 0, 1 or all (-1), not {other:?}"),
    }
}

pub fn parse_compression(text: &str) -> anyhow::Result<Compression> {
    Ok(match text.trim().to_ascii_lowercase().as_str() {
        "none" | "" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        other => bail!("unknown compression {other:?} (none, gzip, snappy, lz4, zstd)"),
    })
}

fn parse_start(text: &str) -> anyhow::Result<StartFrom> {
    match text.trim().to_ascii_lowercase().as_str() {
        "earliest" | "beginning" => Ok(StartFrom::Earliest),
        "latest" | "end" => Ok(StartFrom::Latest),
        other => bail!("consume_from must be earliest or latest, not {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_rates() {
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("1KiB").unwrap(), 1024);
        assert_eq!(parse_bytes("1 MiB").unwrap(), 1 << 20);
        assert_eq!(parse_bytes("50MB").unwrap(), 50_000_000);
        assert_eq!(parse_bytes("200MB/s").unwrap(), 200_000_000);
        assert_eq!(parse_bytes("1.5G").unwrap(), 1_500_000_000);
        assert_eq!(parse_bytes("10GiB").unwrap(), 10 << 30);
        assert_eq!(parse_bytes("0").unwrap(), 0);
        assert_eq!(parse_bytes("100b").unwrap(), 100);
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("MB").is_err());
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("-5").is_err());
        assert!(parse_bytes("99999999999999999999").is_err());
        assert!(parse_bytes("18446744073709551615TiB").is_err());
    }

    #[test]
    fn acks_and_codecs() {
        assert_eq!(parse_acks("all").unwrap(), -1);
        assert_eq!(parse_acks("-1").unwrap(), -1);
        assert_eq!(parse_acks("0").unwrap(), 0);
        assert_eq!(parse_acks("1").unwrap(), 1);
        assert!(parse_acks("2").is_err());
        assert_eq!(parse_compression("ZSTD").unwrap(), Compression::Zstd);
        assert!(parse_compression("brotli").is_err());
    }

    const MAX_THROUGHPUT: &str = r#"
        name = "max-throughput"
        description = "closed loop"
        topics = 1
        partitions = 16
        message_size = "1KiB"
        producers = 2
        consumers = 2
        rate = 0
        acks = "all"
        batch_bytes = "1MiB"
        linger_ms = 1
        compression = "none"
        duration = 30
        warmup = 5
    "#;

    #[test]
    fn workload_file_supplies_defaults() {
        let w = WorkloadFile::parse(MAX_THROUGHPUT).unwrap();
        let s = Settings::from_parts(Some(&w), &BenchArgs::default()).unwrap();
        assert_eq!(s.name, "max-throughput");
        assert_eq!(s.partitions, 16);
        assert_eq!(s.message_size, 1024);
        assert_eq!(s.acks, -1);
        assert_eq!(s.batch_bytes, 1 << 20);
        assert_eq!(s.linger, Duration::from_millis(1));
        assert!(!s.is_fixed_rate());
        assert_eq!(s.topic_names(), vec!["ringlog-bench".to_string()]);
    }

    #[test]
    fn flags_override_the_file() {
        let w = WorkloadFile::parse(MAX_THROUGHPUT).unwrap();
        let args = BenchArgs {
            rate: Some("50MB".into()),
            acks: Some("1".into()),
            partitions: Some(2),
            duration: Some(2.0),
            key: Some(true),
            topics: Some(3),
            topic: Some("t".into()),
            ..Default::default()
        };
        let s = Settings::from_parts(Some(&w), &args).unwrap();
        assert_eq!(s.rate, 50_000_000);
        assert!(s.is_fixed_rate());
        assert_eq!(s.acks, 1);
        assert_eq!(s.partitions, 2);
        assert_eq!(s.duration, Duration::from_secs(2));
        assert!(s.key);
        assert_eq!(s.topic_names(), vec!["t-0", "t-1", "t-2"]);
    }

    #[test]
    fn topic_configs_and_key_space() {
        let w = WorkloadFile::parse(
            "key = true\nkey_space = 1000\n[topic_configs]\n\"cleanup.policy\" = \"compact\"\n\"segment.bytes\" = 1048576\n",
        )
        .unwrap();
        let args = BenchArgs {
            topic_configs: vec!["segment.bytes=4096".into(), "min.cleanable.dirty.ratio=0.1".into()],
            ..Default::default()
        };
        let s = Settings::from_parts(Some(&w), &args).unwrap();
        assert_eq!(s.key_space, 1000);
        assert_eq!(
            s.topic_configs,
            vec![
                ("cleanup.policy".to_string(), "compact".to_string()),
                ("segment.bytes".to_string(), "4096".to_string()),
                ("min.cleanable.dirty.ratio".to_string(), "0.1".to_string()),
            ]
        );
        let bad = BenchArgs {
            topic_configs: vec!["novalue".into()],
            ..Default::default()
        };
        assert!(Settings::from_parts(None, &bad).is_err());
        let unkeyed = BenchArgs {
            key_space: Some(10),
            ..Default::default()
        };
        assert!(Settings::from_parts(None, &unkeyed).is_err());
    }

    #[test]
    fn numeric_acks_and_sizes_in_files() {
        let w = WorkloadFile::parse("acks = -1\nmessage_size = 100\nrate = \"20MB\"").unwrap();
        let s = Settings::from_parts(Some(&w), &BenchArgs::default()).unwrap();
        assert_eq!(s.acks, -1);
        assert_eq!(s.message_size, 100);
        assert_eq!(s.rate, 20_000_000);
    }

    #[test]
    fn bad_files_are_refused() {
        assert!(WorkloadFile::parse("partitons = 3").is_err(), "typo must be caught");
        assert!(WorkloadFile::parse("acks = true").is_err());
        let w = WorkloadFile::parse("acks = 7").unwrap();
        assert!(Settings::from_parts(Some(&w), &BenchArgs::default()).is_err());
        let w = WorkloadFile::parse("suite = [\"a\", \"b\"]").unwrap();
        let e = Settings::from_parts(Some(&w), &BenchArgs::default()).unwrap_err();
        assert!(e.to_string().contains("suite"), "{e}");
    }

    #[test]
    fn shipped_workloads_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            seen += 1;
            let w = WorkloadFile::load(&path).unwrap();
            let stem = path.file_stem().unwrap().to_str().unwrap();
            assert_eq!(w.name.as_deref(), Some(stem), "{}", path.display());
            match &w.suite {
                Some(names) => {
                    for n in names {
                        assert!(dir.join(format!("{n}.toml")).exists(), "{stem}: no workload {n}");
                    }
                }
                None => {
                    let args = BenchArgs {
                        workload: Some(path.clone()),
                        ..Default::default()
                    };
                    Settings::resolve(&args).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                }
            }
        }
        assert!(seen >= 7, "only {seen} workload files");
        let s = Settings::resolve(&BenchArgs {
            workload: Some(dir.join("many-partitions.toml")),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.topic_names().len(), 10);
        assert_eq!(s.partitions, 1000);
        assert!(s.key);
        assert_eq!(s.rate, 20_000_000);
    }

    #[test]
    fn unbounded_runs_are_refused() {
        let args = BenchArgs {
            duration: Some(0.0),
            ..Default::default()
        };
        assert!(Settings::from_parts(None, &args).is_err());
        let args = BenchArgs {
            duration: Some(0.0),
            total_bytes: Some("1GiB".into()),
            ..Default::default()
        };
        assert!(Settings::from_parts(None, &args).is_ok());
        let args = BenchArgs {
            duration: Some(0.0),
            producers: Some(0),
            until_caught_up: Some(true),
            ..Default::default()
        };
        assert!(Settings::from_parts(None, &args).is_ok());
        let args = BenchArgs {
            producers: Some(0),
            consumers: Some(0),
            ..Default::default()
        };
        assert!(Settings::from_parts(None, &args).is_err());
    }
}
