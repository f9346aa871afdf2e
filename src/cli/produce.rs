//! `ringlog produce TOPIC`: records from stdin (one per line, or per `-f`
//! template), batched per partition with the broker's own batch encoder
//! ([`crate::record::build_batch`]) and any codec, sent to each partition's
//! leader, retried on retriable errors.

use std::collections::BTreeMap;
use std::io::{BufReader, IsTerminal, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail};
use bytes::Bytes;
use clap::builder::TypedValueParser;
use clap::{Args, ValueEnum};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};

use super::format::{parse_header_arg, partition_for_key, InputReader, InputRecord, Template};
use super::{out, run, ClientOpts};
use crate::client::{check, is_retriable, sb, Cluster, KafkaError, RETRIES, RETRY_BACKOFF};
use crate::record::{build_batch, Compression, Record};

/// Flush a batch at this many bytes of record data...
const BATCH_BYTES: usize = 1 << 20;
/// ...and a partition's batch before it would grow past this many bytes, so
/// that records up to the broker's `message.max.bytes` (1 MiB by default)
/// each fit in a batch (a larger record goes alone, and the broker decides).
const PARTITION_BATCH_BYTES: usize = 512 << 10;
/// ... or this many records.
const BATCH_RECORDS: usize = 10_000;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    fn compression(self) -> Compression {
        match self {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip,
            Codec::Snappy => Compression::Snappy,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        }
    }
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  echo hello | ringlog produce greetings
  printf 'k1 v1\\nk2 v2\\n' | ringlog produce orders -f '%k %v\\n' -v
  ringlog produce orders -k user-42 -H source=cli --compression zstd < events.txt
  base64 -w0 image.png | ringlog produce blobs -f '%v{base64}'")]
pub struct ProduceArgs {
    /// The topic.
    pub topic: String,
    #[command(flatten)]
    pub client: ClientOpts,
    /// Key of every record (overrides %k).
    #[arg(short = 'k', long)]
    pub key: Option<String>,
    /// Header KEY=VALUE added to every record (repeatable).
    #[arg(short = 'H', long = "header", value_name = "KEY=VALUE")]
    pub headers: Vec<String>,
    /// Partition to write to (default: murmur2 of the key like the Java
    /// client, else a partition per batch, round robin).
    #[arg(short = 'p', long)]
    pub partition: Option<i32>,
    /// Acknowledgements: -1 (all in-sync replicas), 1 (leader), 0 (none).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true, value_parser = clap::builder::PossibleValuesParser::new(["-1", "0", "1", "all"]).map(|s| if s == "all" { -1 } else { s.parse::<i16>().unwrap_or(-1) }))]
    pub acks: i16,
    /// Compression codec of the batches.
    #[arg(short = 'z', long, value_enum, default_value_t = Codec::None)]
    pub compression: Codec,
    /// Input format: fields %k %v %h (k=v,k=v), escapes \n \t \\, encodings
    /// %v{base64} %v{hex}. Default: one value per line.
    #[arg(short = 'f', long = "format", default_value = "%v\\n")]
    pub input_format: String,
    /// Print the partition and offset of every record.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Request timeout in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: i32,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A record waiting to be sent.
struct Pending {
    rec: InputRecord,
    timestamp: i64,
}

pub fn main(args: ProduceArgs) -> i32 {
    run(|| produce(&args))
}

fn produce(args: &ProduceArgs) -> anyhow::Result<()> {
    let template = Template::parse(&args.input_format)?;
    let extra_headers = args
        .headers
        .iter()
        .map(|h| parse_header_arg(h))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut cl = args.client.connect()?;
    let topic = args.topic.clone();
    let partitions = cl.retry(|cl| {
        let m = cl.metadata(Some(std::slice::from_ref(&topic)))?;
        Ok(m.topic(&topic)?.partitions.len())
    })?;
    let partitions = i32::try_from(partitions).unwrap_or(i32::MAX);
    if partitions == 0 {
        bail!("topic \"{topic}\" has no partitions");
    }
    if let Some(p) = args.partition {
        if p < 0 || p >= partitions {
            return Err(KafkaError::new(3, format!("topic \"{topic}\" has no partition {p}"))
                .hint(format!("it has partitions 0..{}", partitions - 1))
                .into());
        }
    }
    let stdin = std::io::stdin();
    let mut input = InputReader::new(BufReader::with_capacity(1 << 16, stdin.lock()), &template)?;
    let mut producer = Producer {
        topic: topic.clone(),
        acks: args.acks,
        timeout_ms: args.timeout_ms,
        compression: args.compression.compression(),
        verbose: args.verbose,
        progress: Progress::new("produced"),
        sent: 0,
    };
    let mut pending: BTreeMap<i32, Vec<Pending>> = BTreeMap::new();
    let mut pending_bytes = 0usize;
    let mut pending_count = 0usize;
    let mut partition_bytes: BTreeMap<i32, usize> = BTreeMap::new();
    let mut next_partition: i32 = i32::try_from(now_ms().rem_euclid(i64::from(partitions))).unwrap_or(0);
    let mut sticky: Option<i32> = None;
    while let Some(mut rec) = input.next_record()? {
        if let Some(k) = &args.key {
            rec.key = Some(k.as_bytes().to_vec());
        }
        rec.headers.extend(extra_headers.iter().cloned());
        let p = match (args.partition, &rec.key) {
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k, partitions),
            (None, None) => *sticky.get_or_insert_with(|| {
                let p = next_partition;
                next_partition = (next_partition + 1) % partitions;
                p
            }),
        };
        let size = rec.value.len()
            + rec.key.as_ref().map_or(0, Vec::len)
            + rec.headers.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
            + 16;
        let in_batch = partition_bytes.get(&p).copied().unwrap_or(0);
        if in_batch > 0 && in_batch + size > PARTITION_BATCH_BYTES {
            producer.flush(&mut cl, &mut pending)?;
            pending_bytes = 0;
            pending_count = 0;
            partition_bytes.clear();
        }
        pending_bytes += size;
        pending_count += 1;
        *partition_bytes.entry(p).or_default() += size;
        pending.entry(p).or_default().push(Pending {
            rec,
            timestamp: now_ms(),
        });
        if pending_bytes >= BATCH_BYTES || pending_count >= BATCH_RECORDS || !input.buffered() {
            producer.flush(&mut cl, &mut pending)?;
            pending_bytes = 0;
            pending_count = 0;
            partition_bytes.clear();
            sticky = None;
        }
    }
    producer.flush(&mut cl, &mut pending)?;
    producer.progress.finish(producer.sent);
    Ok(())
}

struct Producer {
    topic: String,
    acks: i16,
    timeout_ms: i32,
    compression: Compression,
    verbose: bool,
    progress: Progress,
    sent: u64,
}

impl Producer {
    /// Send every pending record, retrying partitions that fail with a
    /// retriable error.
    fn flush(&mut self, cl: &mut Cluster, pending: &mut BTreeMap<i32, Vec<Pending>>) -> anyhow::Result<()> {
        let mut attempt = 0;
        let mut pause = RETRY_BACKOFF;
        while !pending.is_empty() {
            let mut by_leader: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for p in pending.keys() {
                let addr = match cl.leader_addr(&self.topic, *p) {
                    Ok(a) => a,
                    Err(e) if attempt < RETRIES && crate::client::kafka_error(&e).is_some_and(|k| k.code == 5) => {
                        attempt += 1;
                        std::thread::sleep(pause);
                        let _ = cl.metadata(Some(std::slice::from_ref(&self.topic)));
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                by_leader.entry(addr).or_default().push(*p);
            }
            let mut retry = false;
            for (addr, parts) in by_leader {
                let batches: Vec<(i32, Bytes)> = parts
                    .iter()
                    .filter_map(|p| pending.get(p).map(|recs| (*p, self.batch(recs))))
                    .collect();
                let result = self.send(cl, &addr, batches);
                let results = match result {
                    Ok(r) => r,
                    Err(e) if attempt < RETRIES => {
                        tracing::debug!("produce to {addr}: {e:#}");
                        cl.drop_conn(&addr);
                        retry = true;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                for (p, code, base, msg) in results {
                    if code == 0 {
                        let recs = pending.remove(&p).unwrap_or_default();
                        self.sent += recs.len() as u64;
                        if self.verbose {
                            let mut s = String::new();
                            for (i, _) in recs.iter().enumerate() {
                                let off = if base >= 0 { base + i as i64 } else { -1 };
                                s.push_str(&format!("Produced to partition {p} at offset {off}\n"));
                            }
                            out(&s);
                        }
                    } else if is_retriable(code) && attempt < RETRIES {
                        retry = true;
                    } else {
                        let topic = self.topic.clone();
                        check(
                            code,
                            || (format!("producing to {topic}/{p}"), topic.clone()),
                            msg.as_deref(),
                        )?;
                    }
                }
            }
            self.progress.tick(self.sent);
            if retry {
                attempt += 1;
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(1));
                let _ = cl.metadata(Some(std::slice::from_ref(&self.topic)));
            }
        }
        Ok(())
    }

    fn batch(&self, recs: &[Pending]) -> Bytes {
        let base_ts = recs.first().map_or(0, |r| r.timestamp);
        type Headers<'a> = Vec<(&'a str, Option<&'a [u8]>)>;
        let headers: Vec<Headers<'_>> = recs
            .iter()
            .map(|r| {
                r.rec
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), Some(v.as_slice())))
                    .collect()
            })
            .collect();
        let records: Vec<Record<'_>> = recs
            .iter()
            .zip(&headers)
            .map(|(r, h)| Record {
                key: r.rec.key.as_deref(),
                value: Some(&r.rec.value),
                headers: h,
                timestamp_delta: r.timestamp - base_ts,
            })
            .collect();
        Bytes::from(build_batch(0, base_ts, self.compression, &records))
    }

    /// One Produce request to `addr`: (partition, error code, base offset, message).
    #[allow(clippy::type_complexity)]
    fn send(
        &self,
        cl: &mut Cluster,
        addr: &str,
        batches: Vec<(i32, Bytes)>,
    ) -> anyhow::Result<Vec<(i32, i16, i64, Option<String>)>> {
        let c = cl.conn(addr)?;
        let v = c.version(ApiKey::Produce, (3, 11))?;
        let parts: Vec<i32> = batches.iter().map(|(p, _)| *p).collect();
        let req = ProduceRequest::default()
            .with_acks(self.acks)
            .with_timeout_ms(self.timeout_ms)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(sb(&self.topic)))
                .with_partition_data(
                    batches
                        .into_iter()
                        .map(|(p, b)| PartitionProduceData::default().with_index(p).with_records(Some(b)))
                        .collect(),
                )]);
        if self.acks == 0 {
            c.send_only(ApiKey::Produce, v, &req)?;
            return Ok(parts.into_iter().map(|p| (p, 0, -1, None)).collect());
        }
        let resp: ProduceResponse = c.call(ApiKey::Produce, v, &req)?;
        let mut out = Vec::new();
        for t in resp.responses {
            for p in t.partition_responses {
                let msg = p.error_message.as_ref().map(|m| m.to_string()).or_else(|| {
                    p.record_errors
                        .first()
                        .and_then(|e| e.batch_index_error_message.as_ref().map(|m| m.to_string()))
                });
                out.push((p.index, p.error_code, p.base_offset, msg));
            }
        }
        if out.len() != parts.len() {
            return Err(anyhow!(
                "Produce response from {addr} covers {} of {} partitions",
                out.len(),
                parts.len()
            ));
        }
        Ok(out)
    }
}

/// Progress and rate on stderr, only when it is a terminal.
pub struct Progress {
    what: &'static str,
    enabled: bool,
    started: Instant,
    last: Instant,
    shown: bool,
}

impl Progress {
    pub fn new(what: &'static str) -> Progress {
        let now = Instant::now();
        Progress {
            what,
            enabled: std::io::stderr().is_terminal(),
            started: now,
            last: now,
            shown: false,
        }
    }

    /// Show `n` done so far (at most every half second).
    pub fn tick(&mut self, n: u64) {
        if !self.enabled || self.last.elapsed() < Duration::from_millis(500) {
            return;
        }
        self.last = Instant::now();
        self.shown = true;
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let mut e = std::io::stderr().lock();
        let _ = write!(e, "\r{} {n} records, {:.0} records/s   ", self.what, n as f64 / secs);
        let _ = e.flush();
    }

    /// The final line (only when progress was shown).
    pub fn finish(&mut self, n: u64) {
        if !self.enabled || !self.shown {
            return;
        }
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        eprintln!(
            "\r{} {n} records in {secs:.1} s, {:.0} records/s   ",
            self.what,
            n as f64 / secs
        );
    }
}
