//! Pure scheduling logic: when messages are meant to be sent (open loop),
//! which partition each message goes to, and how a produce request's
//! messages split into per-partition batches.
//!
//! Messages of one producer connection are numbered 0, 1, 2, ... Everything
//! about message `i` (its intended send time, its partition, its place in a
//! batch) is a function of `i`, so the generator keeps no per-message state:
//! a backlog is just a range of message numbers.

/// Open-loop schedule: message `i` is meant to be sent `offset_ns(i)` after
/// the start, evenly spaced so that `rate` payload bytes per second go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    message_bytes: u64,
    rate: u64,
}

const NANOS: u128 = 1_000_000_000;

impl Schedule {
    /// `rate` bytes per second of `message_bytes`-byte messages. Both are
    /// raised to at least 1.
    pub fn new(message_bytes: u64, rate: u64) -> Schedule {
        Schedule {
            message_bytes: message_bytes.max(1),
            rate: rate.max(1),
        }
    }

    /// Intended send time of message `i`, in ns after the start.
    pub fn offset_ns(&self, i: u64) -> u64 {
        let ns = i as u128 * NANOS * self.message_bytes as u128 / self.rate as u128;
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    /// How many messages are due `elapsed_ns` after the start: the number of
    /// `i` with `offset_ns(i) <= elapsed_ns`.
    pub fn due(&self, elapsed_ns: u64) -> u64 {
        // offset(i) <= e  <=>  i * K < (e + 1) * r  with K = 1e9 * bytes
        let k = NANOS * self.message_bytes as u128;
        let n = ((elapsed_ns as u128 + 1) * self.rate as u128).div_ceil(k);
        u64::try_from(n).unwrap_or(u64::MAX)
    }

    /// Messages per second.
    pub fn messages_per_sec(&self) -> f64 {
        self.rate as f64 / self.message_bytes as f64
    }
}

/// How messages are spread over a connection's partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioning {
    /// Unkeyed messages, Kafka's uniform sticky partitioner (KIP-794): a
    /// partition receives `records_per_batch` consecutive messages, then the
    /// next partition does.
    Sticky { records_per_batch: u64 },
    /// Keyed messages: keys spread evenly, modelled as message `i` going to
    /// partition `i mod P`, so consecutive messages hit different partitions.
    RoundRobin,
}

/// One batch of a produce request: `count` messages for partition
/// `partition` (an index into the connection's partition list), the first
/// one being message `first`, the following ones `stride` apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub partition: usize,
    pub first: u64,
    pub count: u32,
    pub stride: u32,
}

/// Plan one produce request holding messages `first .. first + n` (or fewer)
/// over `partitions` partitions, the connection's partition order rotated by
/// `rotate`. No partition gets more than one batch, and no batch more than
/// `max_records` messages. Returns how many messages were planned (at least
/// one when `n > 0`); the runs are appended to `out`.
pub fn plan(
    how: Partitioning,
    partitions: usize,
    rotate: usize,
    max_records: u64,
    first: u64,
    n: u64,
    out: &mut Vec<Run>,
) -> u64 {
    let p = partitions.max(1) as u64;
    let max_records = max_records.clamp(1, u32::MAX as u64);
    if n == 0 {
        return 0;
    }
    match how {
        Partitioning::Sticky { records_per_batch } => {
            let r = records_per_batch.clamp(1, max_records);
            let mut i = first;
            let end = first.saturating_add(n);
            let mut runs = 0u64;
            while i < end && runs < p {
                let left_in_batch = r - i % r;
                let count = left_in_batch.min(end - i);
                let partition = ((i / r + rotate as u64) % p) as usize;
                out.push(Run {
                    partition,
                    first: i,
                    count: count as u32,
                    stride: 1,
                });
                i += count;
                runs += 1;
            }
            i - first
        }
        Partitioning::RoundRobin => {
            let n = n.min(p.saturating_mul(max_records));
            for j in 0..n.min(p) {
                let i = first + j;
                let count = (n - j).div_ceil(p);
                let partition = ((i % p + rotate as u64 % p) % p) as usize;
                out.push(Run {
                    partition,
                    first: i,
                    count: count as u32,
                    stride: u32::try_from(p).unwrap_or(u32::MAX),
                });
            }
            n
        }
    }
}

/// Split `total` into parts proportional to `weights` (the parts add up to
/// `total`; all-zero weights split evenly).
pub fn split_weighted(total: u64, weights: &[u64]) -> Vec<u64> {
    if weights.is_empty() {
        return Vec::new();
    }
    let even = weights.iter().all(|&w| w == 0);
    let w = |i: usize| if even { 1u128 } else { weights[i] as u128 };
    let sum: u128 = (0..weights.len()).map(w).sum();
    let mut out = Vec::with_capacity(weights.len());
    let mut acc: u128 = 0;
    let mut given: u64 = 0;
    for i in 0..weights.len() {
        acc += w(i);
        let upto = (total as u128 * acc / sum) as u64;
        out.push(upto - given);
        given = upto;
    }
    out
}

/// Split `items` round-robin over `buckets` lists (manual partition
/// assignment of consumers: item `k` goes to bucket `k mod buckets`).
pub fn round_robin<T: Clone>(items: &[T], buckets: usize) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = (0..buckets).map(|_| Vec::new()).collect();
    if buckets == 0 {
        return out;
    }
    for (k, item) in items.iter().enumerate() {
        out[k % buckets].push(item.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_spacing() {
        // 1 KiB messages at 1 MiB/s: 1024 messages per second, ~976.5 us apart.
        let s = Schedule::new(1024, 1 << 20);
        assert_eq!(s.offset_ns(0), 0);
        assert_eq!(s.offset_ns(1), 976_562);
        assert_eq!(s.offset_ns(1024), 1_000_000_000);
        assert!((s.messages_per_sec() - 1024.0).abs() < 1e-9);
        // 1 KB messages at 50 MB/s: 50,000 per second, 20 us apart.
        let s = Schedule::new(1000, 50_000_000);
        assert_eq!(s.offset_ns(3), 60_000);
        assert_eq!(s.due(0), 1);
        assert_eq!(s.due(19_999), 1);
        assert_eq!(s.due(20_000), 2);
        assert_eq!(s.due(1_000_000_000), 50_001);
    }

    #[test]
    fn due_matches_offsets() {
        for &(bytes, rate) in &[(1024u64, 1u64 << 20), (100, 7_777_777), (1000, 3), (7, 1_000_000_007)] {
            let s = Schedule::new(bytes, rate);
            for i in 0..2000u64 {
                let t = s.offset_ns(i);
                assert_eq!(s.due(t), i + 1, "bytes {bytes} rate {rate} i {i}");
                if t > 0 && s.offset_ns(i.saturating_sub(1)) < t {
                    assert_eq!(s.due(t - 1), i, "bytes {bytes} rate {rate} i {i}");
                }
            }
        }
    }

    #[test]
    fn schedule_does_not_overflow() {
        let s = Schedule::new(16 << 20, 1);
        assert_eq!(s.offset_ns(u64::MAX), u64::MAX);
        let s = Schedule::new(1, u64::MAX);
        assert!(s.due(u64::MAX) > 0);
        let z = Schedule::new(0, 0);
        assert_eq!(z.offset_ns(1), 1_000_000_000);
    }

    fn planned(how: Partitioning, p: usize, rot: usize, max: u64, first: u64, n: u64) -> (u64, Vec<Run>) {
        let mut out = Vec::new();
        let k = plan(how, p, rot, max, first, n, &mut out);
        (k, out)
    }

    #[test]
    fn sticky_fills_a_partition_then_moves_on() {
        let how = Partitioning::Sticky { records_per_batch: 4 };
        let (k, runs) = planned(how, 3, 0, 4, 0, 10);
        assert_eq!(k, 10);
        assert_eq!(
            runs,
            vec![
                Run {
                    partition: 0,
                    first: 0,
                    count: 4,
                    stride: 1
                },
                Run {
                    partition: 1,
                    first: 4,
                    count: 4,
                    stride: 1
                },
                Run {
                    partition: 2,
                    first: 8,
                    count: 2,
                    stride: 1
                },
            ]
        );
        // Continuing mid-batch: partition 2 gets the rest of its batch.
        let (k, runs) = planned(how, 3, 0, 4, 10, 3);
        assert_eq!(k, 3);
        assert_eq!(
            runs,
            vec![
                Run {
                    partition: 2,
                    first: 10,
                    count: 2,
                    stride: 1
                },
                Run {
                    partition: 0,
                    first: 12,
                    count: 1,
                    stride: 1
                },
            ]
        );
    }

    #[test]
    fn sticky_never_repeats_a_partition() {
        let how = Partitioning::Sticky { records_per_batch: 4 };
        // Starting mid-batch, a full cycle would come back to partition 2.
        let (k, runs) = planned(how, 3, 0, 4, 10, 100);
        assert_eq!(k, 2 + 4 + 4);
        let mut parts: Vec<usize> = runs.iter().map(|r| r.partition).collect();
        parts.sort_unstable();
        parts.dedup();
        assert_eq!(parts.len(), runs.len());
        // One partition: one batch per request.
        let (k, runs) = planned(how, 1, 0, 4, 2, 100);
        assert_eq!((k, runs.len()), (2, 1));
    }

    #[test]
    fn sticky_rotation() {
        let how = Partitioning::Sticky { records_per_batch: 2 };
        let (_, runs) = planned(how, 4, 3, 2, 0, 4);
        assert_eq!(runs.iter().map(|r| r.partition).collect::<Vec<_>>(), vec![3, 0]);
    }

    #[test]
    fn round_robin_spreads_messages() {
        let (k, runs) = planned(Partitioning::RoundRobin, 4, 0, 100, 6, 10);
        assert_eq!(k, 10);
        // messages 6..16: partition = i mod 4
        assert_eq!(
            runs,
            vec![
                Run {
                    partition: 2,
                    first: 6,
                    count: 3,
                    stride: 4
                },
                Run {
                    partition: 3,
                    first: 7,
                    count: 3,
                    stride: 4
                },
                Run {
                    partition: 0,
                    first: 8,
                    count: 2,
                    stride: 4
                },
                Run {
                    partition: 1,
                    first: 9,
                    count: 2,
                    stride: 4
                },
            ]
        );
        let total: u32 = runs.iter().map(|r| r.count).sum();
        assert_eq!(total as u64, k);
    }

    #[test]
    fn round_robin_with_many_partitions_and_caps() {
        let (k, runs) = planned(Partitioning::RoundRobin, 10_000, 5, 3, 0, 7);
        assert_eq!(k, 7);
        assert!(runs.iter().all(|r| r.count == 1));
        assert_eq!(runs[0].partition, 5);
        // Capped at max_records per partition.
        let (k, runs) = planned(Partitioning::RoundRobin, 2, 0, 3, 0, 100);
        assert_eq!(k, 6);
        assert!(runs.iter().all(|r| r.count == 3));
        assert_eq!(planned(Partitioning::RoundRobin, 2, 0, 3, 0, 0).0, 0);
    }

    #[test]
    fn weighted_split() {
        assert_eq!(split_weighted(10, &[1, 1, 1]), vec![3, 3, 4]);
        assert_eq!(split_weighted(10, &[0, 0]), vec![5, 5]);
        assert_eq!(split_weighted(100, &[1, 3]), vec![25, 75]);
        assert_eq!(
            split_weighted(u64::MAX, &[1, 1])
                .iter()
                .map(|&x| x as u128)
                .sum::<u128>(),
            u64::MAX as u128
        );
        assert!(split_weighted(5, &[]).is_empty());
    }

    #[test]
    fn manual_assignment() {
        let parts: Vec<u32> = (0..5).collect();
        assert_eq!(round_robin(&parts, 2), vec![vec![0, 2, 4], vec![1, 3]]);
        assert_eq!(round_robin(&parts, 0).len(), 0);
        assert_eq!(round_robin(&parts, 7)[6], Vec::<u32>::new());
    }
}
