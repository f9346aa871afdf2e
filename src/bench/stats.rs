//! Latency histograms, the run summary (text and JSON) and HdrHistogram's
//! percentile-distribution text format. Pure formatting, no IO.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::config::Settings;

/// Latencies are recorded in ns, from 1 ns to an hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("constant histogram bounds are valid")
}

/// Record `count` latencies of `ns` (clamped into the histogram's range).
#[inline]
pub fn record(h: &mut Histogram<u64>, ns: u64, count: u64) {
    if count > 0 {
        h.saturating_record_n(ns.max(1), count);
    }
}

const NS_PER_MS: f64 = 1_000_000.0;

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
}

impl LatencySummary {
    /// `None` for an empty histogram.
    pub fn of(h: &Histogram<u64>) -> Option<LatencySummary> {
        if h.is_empty() {
            return None;
        }
        let q = |x: f64| h.value_at_quantile(x) as f64 / NS_PER_MS;
        Some(LatencySummary {
            count: h.len(),
            mean: h.mean() / NS_PER_MS,
            p50: q(0.5),
            p99: q(0.99),
            p999: q(0.999),
            p9999: q(0.9999),
            max: h.max() as f64 / NS_PER_MS,
        })
    }

    fn line(&self) -> String {
        format!(
            "p50 {:.3}  p99 {:.3}  p99.9 {:.3}  p99.99 {:.3}  max {:.3}  (mean {:.3}, {} samples)",
            self.p50,
            self.p99,
            self.p999,
            self.p9999,
            self.max,
            self.mean,
            thousands(self.count)
        )
    }
}

/// HdrHistogram's standard percentile distribution text (as Java's
/// `outputPercentileDistribution` writes it, 5 ticks per half distance),
/// values in milliseconds.
pub fn percentile_distribution(h: &Histogram<u64>) -> String {
    let digits = h.sigfig() as usize;
    let mut out = String::new();
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if !h.is_empty() {
        let mut total: u64 = 0;
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / NS_PER_MS;
            let p = v.quantile_iterated_to();
            if p < 1.0 {
                let _ = writeln!(out, "{value:12.digits$} {p:2.12} {total:10} {:14.2}", 1.0 / (1.0 - p));
            } else {
                let _ = writeln!(out, "{value:12.digits$} {p:2.12} {total:10}");
            }
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (h.mean() / NS_PER_MS, h.stdev() / NS_PER_MS, h.max() as f64 / NS_PER_MS)
    };
    let sub_buckets = 1u64 << (2.0 * 10f64.powi(digits as i32)).log2().ceil() as u32;
    let _ = writeln!(
        out,
        "#[Mean    = {mean:12.digits$}, StdDeviation   = {stdev:12.digits$}]"
    );
    let _ = writeln!(out, "#[Max     = {max:12.digits$}, Total count    = {:12}]", h.len());
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {sub_buckets:12}]",
        h.buckets()
    );
    out
}

/// Messages and payload bytes over a time span.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Throughput {
    /// All messages (acknowledged / consumed) in the run, warmup included.
    pub total_messages: u64,
    pub total_bytes: u64,
    /// Messages and bytes in the measured window.
    pub messages: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub msgs_per_sec: f64,
    /// Payload megabytes (10^6 bytes) per second.
    pub mb_per_sec: f64,
}

impl Throughput {
    pub fn new(total_messages: u64, total_bytes: u64, messages: u64, bytes: u64, seconds: f64) -> Self {
        let (m, b) = if seconds > 0.0 {
            (messages as f64 / seconds, bytes as f64 / seconds / 1e6)
        } else {
            (0.0, 0.0)
        };
        Throughput {
            total_messages,
            total_bytes,
            messages,
            bytes,
            seconds,
            msgs_per_sec: m,
            mb_per_sec: b,
        }
    }
}

/// The JSON summary a run writes (summary.json) and scripts compare.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub workload: String,
    pub generator: String,
    pub version: String,
    pub bootstrap: String,
    /// Unix time (s) the run started.
    pub started_at: u64,
    pub settings: Settings,
    /// Topic partitions used.
    pub partitions_total: usize,
    pub produce: Option<Throughput>,
    pub consume: Option<Throughput>,
    pub produce_latency_ms: Option<LatencySummary>,
    pub e2e_latency_ms: Option<LatencySummary>,
    /// Kafka error codes (by name) reported in responses, with counts.
    pub error_codes: BTreeMap<String, u64>,
    /// Failures that stopped a connection or the run.
    pub errors: Vec<String>,
    /// Messages acknowledged but never consumed (tailing runs).
    pub unconsumed: u64,
    /// CPU time (user + system) the generator itself used.
    pub generator_cpu_seconds: f64,
    pub ok: bool,
}

impl Summary {
    pub fn error_count(&self) -> u64 {
        self.error_codes.values().sum::<u64>() + self.errors.len() as u64
    }

    /// The human-readable summary printed at the end of a run.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let mode = if self.settings.producers == 0 {
            "read only".to_string()
        } else if self.settings.rate > 0 {
            format!("fixed rate {:.1} MB/s", self.settings.rate as f64 / 1e6)
        } else {
            "max throughput".to_string()
        };
        let _ = writeln!(
            s,
            "workload {} ({mode}, acks={}, {} B messages, {} partitions) against {}",
            self.workload, self.settings.acks, self.settings.message_size, self.partitions_total, self.bootstrap
        );
        let tp = |name: &str, t: &Throughput, s: &mut String| {
            let _ = writeln!(
                s,
                "{name:<9} {:>12} msg/s {:>10.2} MB/s   ({} messages in {:.1} s; {} in total)",
                thousands(t.msgs_per_sec.round() as u64),
                t.mb_per_sec,
                thousands(t.messages),
                t.seconds,
                thousands(t.total_messages)
            );
        };
        if let Some(t) = &self.produce {
            tp("produce", t, &mut s);
        }
        if let Some(t) = &self.consume {
            tp("consume", t, &mut s);
        }
        if let Some(l) = &self.produce_latency_ms {
            let _ = writeln!(s, "produce latency (ms):     {}", l.line());
        } else if self.produce.is_some() {
            let _ = writeln!(s, "produce latency (ms):     none measured (acks=0 gets no responses)");
        }
        if let Some(l) = &self.e2e_latency_ms {
            let _ = writeln!(s, "end-to-end latency (ms):  {}", l.line());
        }
        let gb = self.produce.or(self.consume).map_or(0, |t| t.total_bytes) as f64 / 1e9;
        if gb > 0.0 {
            let _ = writeln!(
                s,
                "generator CPU:            {:.2} s ({:.2} core-s per GB)",
                self.generator_cpu_seconds,
                self.generator_cpu_seconds / gb
            );
        }
        if self.unconsumed > 0 {
            let _ = writeln!(s, "NOT CONSUMED: {} acknowledged messages", thousands(self.unconsumed));
        }
        for (code, n) in &self.error_codes {
            let _ = writeln!(s, "ERROR {code}: {n} times");
        }
        for e in &self.errors {
            let _ = writeln!(s, "ERROR: {e}");
        }
        let _ = writeln!(s, "{}", if self.ok { "result: ok" } else { "result: FAILED" });
        s
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Kafka error code names for the summary.
pub fn error_name(code: i16) -> String {
    match crate::protocol::error::info(code) {
        Some(c) => format!("{} ({code})", c.name),
        None => format!("error {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(values: &[(u64, u64)]) -> Histogram<u64> {
        let mut h = new_histogram();
        for &(v, n) in values {
            record(&mut h, v, n);
        }
        h
    }

    #[test]
    fn summary_percentiles_in_ms() {
        // 990 samples at 1 ms, 9 at 10 ms, 1 at 100 ms.
        let h = hist(&[(1_000_000, 990), (10_000_000, 9), (100_000_000, 1)]);
        let s = LatencySummary::of(&h).unwrap();
        assert_eq!(s.count, 1000);
        assert!((s.p50 - 1.0).abs() < 0.001, "{s:?}");
        assert!((s.p99 - 1.0).abs() < 0.001, "{s:?}");
        assert!((s.p999 - 10.0).abs() < 0.01, "{s:?}");
        assert!((s.max - 100.0).abs() < 0.1, "{s:?}");
        assert!(LatencySummary::of(&new_histogram()).is_none());
        let line = s.line();
        assert!(line.starts_with("p50 1.000  p99 1.000  p99.9 10.0"), "{line}");
        assert!(line.ends_with("1,000 samples)"), "{line}");
    }

    #[test]
    fn zero_and_huge_latencies_are_kept() {
        let h = hist(&[(0, 1), (u64::MAX, 1)]);
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
    }

    #[test]
    fn hgrm_format() {
        let h = hist(&[(1_000_000, 3), (2_000_000, 1)]);
        let text = percentile_distribution(&h);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "       Value     Percentile TotalCount 1/(1-Percentile)");
        assert_eq!(lines[1], "");
        assert_eq!(lines[2], "       1.000 0.000000000000          3           1.00");
        // The last row is at percentile 1 with no 1/(1-p) column.
        let last_row = lines.iter().rev().find(|l| !l.starts_with('#')).unwrap();
        // Values print as the highest value of their bucket, as Java does.
        assert_eq!(*last_row, "       2.001 1.000000000000          4");
        assert!(
            text.contains("#[Mean    =        1.250, StdDeviation   =        0.433]"),
            "{text}"
        );
        assert!(
            text.contains("#[Max     =        2.001, Total count    =            4]"),
            "{text}"
        );
        assert!(text.contains("SubBuckets     =         2048]"), "{text}");
        // Every data row parses as value, percentile, count (, 1/(1-p)).
        for l in &lines[2..] {
            if l.starts_with('#') {
                continue;
            }
            let cols: Vec<&str> = l.split_whitespace().collect();
            assert!(cols.len() == 3 || cols.len() == 4, "{l}");
            cols[0].parse::<f64>().unwrap();
            cols[2].parse::<u64>().unwrap();
        }
        let empty = percentile_distribution(&new_histogram());
        assert!(empty.contains("Total count    =            0"), "{empty}");
    }

    #[test]
    fn throughput_rates() {
        let t = Throughput::new(20, 20_000, 10, 10_000_000, 2.0);
        assert_eq!(t.msgs_per_sec, 5.0);
        assert_eq!(t.mb_per_sec, 5.0);
        assert_eq!(Throughput::new(1, 1, 1, 1, 0.0).mb_per_sec, 0.0);
    }

    #[test]
    fn number_formatting() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER (6)");
        assert_eq!(error_name(999), "error 999");
    }

    #[test]
    fn rendered_summary() {
        let settings = Settings {
            rate: 50_000_000,
            ..Settings::default()
        };
        let mut s = Summary {
            workload: "w".into(),
            generator: "ringlog-bench".into(),
            version: "0".into(),
            bootstrap: "b:1".into(),
            started_at: 0,
            settings,
            partitions_total: 16,
            produce: Some(Throughput::new(100, 102_400, 50, 51_200, 1.0)),
            consume: None,
            produce_latency_ms: LatencySummary::of(&hist(&[(1_500_000, 10)])),
            e2e_latency_ms: None,
            error_codes: BTreeMap::new(),
            errors: vec![],
            unconsumed: 0,
            generator_cpu_seconds: 0.5,
            ok: true,
        };
        let text = s.render();
        assert!(text.contains("fixed rate 50.0 MB/s"), "{text}");
        assert!(text.contains("produce             50 msg/s       0.05 MB/s"), "{text}");
        assert!(text.contains("produce latency (ms):     p50 1.500"), "{text}");
        assert!(
            text.contains("generator CPU:            0.50 s (4882.81 core-s per GB)"),
            "{text}"
        );
        assert!(text.ends_with("result: ok\n"), "{text}");
        s.error_codes.insert(error_name(7), 3);
        s.errors.push("connection reset".into());
        s.ok = false;
        assert_eq!(s.error_count(), 4);
        let text = s.render();
        assert!(text.contains("ERROR REQUEST_TIMED_OUT (7): 3 times"), "{text}");
        assert!(text.contains("result: FAILED"), "{text}");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["settings"]["rate"], 50_000_000);
        assert_eq!(json["settings"]["acks"], -1);
        assert_eq!(json["settings"]["compression"], "none");
        assert_eq!(json["produce"]["messages"], 50);
    }
}
