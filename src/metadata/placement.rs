//! Replica placement for new partitions, across brokers and across the
//! shards of each broker (design: replication.md §5.9). Pure; the random
//! start comes from the caller so that a simulation replays it.
//!
//! Brokers: Kafka's assignment. The first replica of partition `p` goes to
//! broker `(start + p) mod n`; the others follow at a shift that grows by
//! one every `n` partitions, so that the followers of one broker's leaders
//! spread over the other brokers. With racks, the broker list is first
//! interleaved by rack, and a follower skips brokers on racks that already
//! hold a replica while some rack holds none.
//!
//! Shards: all replicas of a partition use one shard index where their
//! brokers have it, the index that is least loaded on those brokers, so that
//! a follower shard fetches from the same shard of each leader.

use std::collections::{BTreeMap, BTreeSet};

/// A broker that may receive replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: i32,
    pub rack: Option<String>,
    pub shards: u32,
}

/// Kafka's INVALID_REPLICATION_FACTOR (38) and INVALID_PARTITIONS (37)
/// cases.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlacementError {
    #[error("replication factor {rf} is larger than the {brokers} available brokers")]
    ReplicationFactor { rf: usize, brokers: usize },
    #[error("replication factor must be at least 1")]
    ZeroReplicationFactor,
}

impl PlacementError {
    pub fn code(&self) -> i16 {
        38
    }
}

/// Replica lists for partitions `first..first + count` of a topic.
/// `start` and `shift` are the random starting points (any values; reduced
/// modulo the broker count). Brokers are taken in id order.
pub fn assign_brokers(
    brokers: &[Candidate],
    first: usize,
    count: usize,
    rf: usize,
    start: usize,
    shift: usize,
) -> Result<Vec<Vec<i32>>, PlacementError> {
    if rf == 0 {
        return Err(PlacementError::ZeroReplicationFactor);
    }
    let n = brokers.len();
    if rf > n {
        return Err(PlacementError::ReplicationFactor { rf, brokers: n });
    }
    let racks: BTreeSet<&str> = brokers.iter().filter_map(|b| b.rack.as_deref()).collect();
    let rack_aware = !racks.is_empty();
    let order = if rack_aware {
        rack_interleaved(brokers)
    } else {
        let mut ids: Vec<(i32, Option<String>)> = brokers.iter().map(|b| (b.id, None)).collect();
        ids.sort();
        ids
    };
    let rack_count = if rack_aware {
        order.iter().map(|(_, r)| r.clone()).collect::<BTreeSet<_>>().len()
    } else {
        1
    };
    let start = start % n;
    let mut shift = shift % n;
    let mut out = Vec::with_capacity(count);
    for p in first..first + count {
        if p > 0 && p % n == 0 {
            shift += 1;
        }
        let head = (p + start) % n;
        let mut replicas = vec![order[head].0];
        if !rack_aware {
            for j in 0..rf - 1 {
                replicas.push(order[follower_index(head, shift, j, n)].0);
            }
        } else {
            let mut used_racks: BTreeSet<Option<String>> = BTreeSet::from([order[head].1.clone()]);
            let mut used: BTreeSet<i32> = BTreeSet::from([order[head].0]);
            let mut k = 0;
            while replicas.len() < rf {
                let (id, rack) = &order[follower_index(head, shift * rack_count, k, n)];
                k += 1;
                let rack_ok = !used_racks.contains(rack) || used_racks.len() == rack_count;
                let broker_ok = !used.contains(id) || used.len() == n;
                if rack_ok && broker_ok && !used.contains(id) {
                    used_racks.insert(rack.clone());
                    used.insert(*id);
                    replicas.push(*id);
                }
                if k > 4 * n * n {
                    // Unreachable with rf <= n (every broker is reachable
                    // by some shift); a bound instead of a loop forever.
                    for (id, _) in &order {
                        if replicas.len() < rf && !replicas.contains(id) {
                            replicas.push(*id);
                        }
                    }
                }
            }
        }
        out.push(replicas);
    }
    Ok(out)
}

fn follower_index(head: usize, shift: usize, j: usize, n: usize) -> usize {
    if n == 1 {
        return head;
    }
    let s = 1 + (shift + j) % (n - 1);
    (head + s) % n
}

/// Brokers ordered rack by rack, round robin: r1b1, r2b1, r3b1, r1b2, ...
/// (brokers without a rack form one rack of their own).
fn rack_interleaved(brokers: &[Candidate]) -> Vec<(i32, Option<String>)> {
    let mut by_rack: BTreeMap<Option<String>, Vec<i32>> = BTreeMap::new();
    for b in brokers {
        by_rack.entry(b.rack.clone()).or_default().push(b.id);
    }
    for ids in by_rack.values_mut() {
        ids.sort();
    }
    let mut out = Vec::with_capacity(brokers.len());
    let mut round = 0;
    while out.len() < brokers.len() {
        for (rack, ids) in &by_rack {
            if let Some(id) = ids.get(round) {
                out.push((*id, rack.clone()));
            }
        }
        round += 1;
    }
    out
}

/// Replicas per (broker, shard), for choosing shards.
#[derive(Clone, Debug, Default)]
pub struct ShardLoads {
    loads: BTreeMap<i32, Vec<usize>>,
}

impl ShardLoads {
    /// Loads of every candidate, all zero; add the existing replicas with
    /// [`ShardLoads::add`].
    pub fn new(brokers: &[Candidate]) -> Self {
        ShardLoads {
            loads: brokers
                .iter()
                .map(|b| (b.id, vec![0; b.shards.max(1) as usize]))
                .collect(),
        }
    }

    pub fn add(&mut self, broker: i32, shard: u32) {
        if let Some(l) = self.loads.get_mut(&broker) {
            let n = l.len();
            l[shard as usize % n] += 1;
        }
    }

    /// The shard of each of `replicas`: the index minimizing the sum of the
    /// replicas' loads on it (shard 0 counts one extra: it also runs the
    /// controller), reduced modulo each broker's shard count; lowest index
    /// on ties. The loads are updated.
    pub fn choose(&mut self, replicas: &[i32]) -> Vec<u32> {
        let widest = replicas
            .iter()
            .filter_map(|r| self.loads.get(r).map(Vec::len))
            .max()
            .unwrap_or(1);
        let cost = |s: usize| -> usize {
            replicas
                .iter()
                .filter_map(|r| self.loads.get(r))
                .map(|l| l[s % l.len()] + usize::from(s.is_multiple_of(l.len())))
                .sum()
        };
        let best = (0..widest).min_by_key(|s| (cost(*s), *s)).unwrap_or(0);
        replicas
            .iter()
            .map(|r| {
                let n = self.loads.get(r).map_or(1, Vec::len);
                let s = (best % n) as u32;
                self.add(*r, s);
                s
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brokers(n: i32, racks: Option<i32>, shards: u32) -> Vec<Candidate> {
        (1..=n)
            .map(|id| Candidate {
                id,
                rack: racks.map(|r| format!("r{}", id % r)),
                shards,
            })
            .collect()
    }

    #[test]
    fn kafka_rotation_without_racks() {
        // Kafka's own example (AdminUtils docs): 5 brokers, 10 partitions,
        // RF 3, start 0, shift 0.
        let got = assign_brokers(&brokers(5, None, 1), 0, 10, 3, 0, 0).expect("assign");
        let want: Vec<Vec<i32>> = vec![
            vec![1, 2, 3],
            vec![2, 3, 4],
            vec![3, 4, 5],
            vec![4, 5, 1],
            vec![5, 1, 2],
            vec![1, 3, 4],
            vec![2, 4, 5],
            vec![3, 5, 1],
            vec![4, 1, 2],
            vec![5, 2, 3],
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn too_few_brokers() {
        assert_eq!(
            assign_brokers(&brokers(2, None, 1), 0, 1, 3, 0, 0),
            Err(PlacementError::ReplicationFactor { rf: 3, brokers: 2 })
        );
        assert_eq!(
            assign_brokers(&brokers(2, None, 1), 0, 1, 0, 0, 0),
            Err(PlacementError::ZeroReplicationFactor)
        );
    }

    #[test]
    fn racks_are_spread() {
        // 6 brokers on 3 racks: every partition's 3 replicas on 3 racks.
        let bs = brokers(6, Some(3), 1);
        let rack = |id: i32| bs.iter().find(|b| b.id == id).and_then(|b| b.rack.clone());
        for start in 0..6 {
            for p in assign_brokers(&bs, 0, 12, 3, start, start * 7).expect("assign") {
                let racks: BTreeSet<_> = p.iter().map(|b| rack(*b)).collect();
                assert_eq!(racks.len(), 3, "{p:?}");
            }
        }
    }

    #[test]
    fn shards_pair_up_and_spread() {
        let bs = brokers(3, None, 2);
        let mut loads = ShardLoads::new(&bs);
        let assigned = assign_brokers(&bs, 0, 6, 3, 0, 0).expect("assign");
        let shards: Vec<Vec<u32>> = assigned.iter().map(|r| loads.choose(r)).collect();
        for s in &shards {
            assert!(s.iter().all(|x| *x == s[0]), "one index per partition: {s:?}");
        }
        let on1 = shards.iter().filter(|s| s[0] == 1).count();
        assert_eq!(on1, 3, "half on each shard: {shards:?}");
        // A broker with one shard takes index mod 1.
        let mut mixed = ShardLoads::new(&[
            Candidate {
                id: 1,
                rack: None,
                shards: 4,
            },
            Candidate {
                id: 2,
                rack: None,
                shards: 1,
            },
        ]);
        for _ in 0..4 {
            let s = mixed.choose(&[1, 2]);
            assert_eq!(s[1], 0);
            assert!(s[0] < 4);
        }
    }

    proptest! {
        #[test]
        fn every_partition_gets_distinct_live_brokers(
            n in 1i32..8, racks in proptest::option::of(1i32..4), rf in 1usize..4,
            first in 0usize..20, count in 1usize..40, start in 0usize..100, shift in 0usize..100,
        ) {
            let bs = brokers(n, racks, 2);
            match assign_brokers(&bs, first, count, rf, start, shift) {
                Err(e) => prop_assert!(rf > n as usize, "{e}"),
                Ok(all) => {
                    prop_assert_eq!(all.len(), count);
                    let mut leaders: BTreeMap<i32, usize> = BTreeMap::new();
                    for r in &all {
                        let set: BTreeSet<i32> = r.iter().copied().collect();
                        prop_assert_eq!(set.len(), rf);
                        prop_assert!(r.iter().all(|b| (1..=n).contains(b)));
                        *leaders.entry(r[0]).or_default() += 1;
                    }
                    // Leaders are balanced: counts differ by at most one.
                    if count >= n as usize {
                        let max = leaders.values().max().copied().unwrap_or(0);
                        let min = (1..=n).map(|b| leaders.get(&b).copied().unwrap_or(0)).min().unwrap_or(0);
                        prop_assert!(max - min <= 1, "{leaders:?}");
                    }
                }
            }
        }
    }
}
