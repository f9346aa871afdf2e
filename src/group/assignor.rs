//! Server side partition assignors of the consumer group protocol (KIP-848):
//! `uniform` (Kafka's default) and `range`.
//!
//! * `range` follows Kafka's `RangeAssignor` exactly: for every topic, the
//!   members subscribed to it, sorted (static members first by instance id,
//!   then dynamic members by member id), receive consecutive ranges of
//!   partitions; the first `partitions % members` members get one extra.
//!   Topics with the same number of partitions are therefore co-partitioned.
//! * `uniform` balances the number of partitions per member while keeping as
//!   many partitions as possible on their current owner. For homogeneous
//!   subscriptions it follows Kafka's `UniformHomogeneousAssignmentBuilder`
//!   (quota per member, revoke the excess, hand out the rest). For
//!   heterogeneous subscriptions it keeps valid current ownership, places the
//!   remaining partitions on the least loaded eligible member (most
//!   constrained partitions first) and then moves partitions from the most to
//!   the least loaded eligible members until no move reduces the imbalance.
//!
//! Both are deterministic: ties are broken by member id and topic id order.

use crate::io::rand::HashMap;
use std::collections::{BTreeMap, BTreeSet};

use super::TopicId;

/// Partitions per topic id.
pub type Assignment = BTreeMap<TopicId, BTreeSet<i32>>;

pub const UNIFORM_ASSIGNOR_NAME: &str = "uniform";
pub const RANGE_ASSIGNOR_NAME: &str = "range";

/// What the assignor knows about a member.
#[derive(Debug, Clone)]
pub struct MemberSpec<'a> {
    pub member_id: &'a str,
    pub instance_id: Option<&'a str>,
    /// Ids of the existing topics the member subscribes to.
    pub subscribed_topic_ids: BTreeSet<TopicId>,
    /// The member's current target assignment.
    pub current: &'a Assignment,
}

/// Server side assignors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerAssignor {
    Uniform,
    Range,
}

impl ServerAssignor {
    pub fn name(self) -> &'static str {
        match self {
            ServerAssignor::Uniform => UNIFORM_ASSIGNOR_NAME,
            ServerAssignor::Range => RANGE_ASSIGNOR_NAME,
        }
    }

    pub fn from_name(name: &str) -> Option<ServerAssignor> {
        match name {
            UNIFORM_ASSIGNOR_NAME => Some(ServerAssignor::Uniform),
            RANGE_ASSIGNOR_NAME => Some(ServerAssignor::Range),
            _ => None,
        }
    }

    /// Computes the target assignment of every member. `topics` maps every
    /// subscribed topic id to its partition count; members subscribed to
    /// topics missing from it simply get nothing for them.
    pub fn assign(self, members: &[MemberSpec<'_>], topics: &BTreeMap<TopicId, i32>) -> BTreeMap<String, Assignment> {
        match self {
            ServerAssignor::Range => range_assign(members, topics),
            ServerAssignor::Uniform => uniform_assign(members, topics),
        }
    }
}

fn partitions_of(topics: &BTreeMap<TopicId, i32>, topic: &TopicId) -> i32 {
    topics.get(topic).copied().unwrap_or(0).max(0)
}

fn range_assign(members: &[MemberSpec<'_>], topics: &BTreeMap<TopicId, i32>) -> BTreeMap<String, Assignment> {
    let mut sorted: Vec<&MemberSpec<'_>> = members.iter().collect();
    sorted.sort_by(|a, b| match (a.instance_id, b.instance_id) {
        (Some(x), Some(y)) => x.cmp(y).then_with(|| a.member_id.cmp(b.member_id)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.member_id.cmp(b.member_id),
    });
    let mut out: BTreeMap<String, Assignment> = members
        .iter()
        .map(|m| (m.member_id.to_string(), Assignment::new()))
        .collect();
    let all_topics: BTreeSet<TopicId> = members
        .iter()
        .flat_map(|m| m.subscribed_topic_ids.iter().copied())
        .collect();
    for topic in all_topics {
        let n = partitions_of(topics, &topic);
        let subscribers: Vec<&&MemberSpec<'_>> = sorted
            .iter()
            .filter(|m| m.subscribed_topic_ids.contains(&topic))
            .collect();
        let k = subscribers.len() as i32;
        if k == 0 || n == 0 {
            continue;
        }
        let quota = n / k;
        let mut extra = n % k;
        let mut next = 0;
        for m in subscribers {
            let mut q = quota;
            if extra > 0 {
                q += 1;
                extra -= 1;
            }
            let end = (next + q).min(n);
            if next < end {
                if let Some(a) = out.get_mut(m.member_id) {
                    a.insert(topic, (next..end).collect());
                }
            }
            next = end;
        }
    }
    out
}

fn uniform_assign(members: &[MemberSpec<'_>], topics: &BTreeMap<TopicId, i32>) -> BTreeMap<String, Assignment> {
    if members.is_empty() {
        return BTreeMap::new();
    }
    let homogeneous = members
        .windows(2)
        .all(|w| w[0].subscribed_topic_ids == w[1].subscribed_topic_ids);
    if homogeneous {
        uniform_homogeneous(members, topics)
    } else {
        uniform_heterogeneous(members, topics)
    }
}

/// Valid current ownership: subscribed topic, existing partition, and each
/// partition kept by at most one member (the first in member id order).
fn sticky_start(members: &[MemberSpec<'_>], topics: &BTreeMap<TopicId, i32>) -> BTreeMap<String, Vec<(TopicId, i32)>> {
    let mut order: Vec<&MemberSpec<'_>> = members.iter().collect();
    order.sort_by(|a, b| a.member_id.cmp(b.member_id));
    let mut claimed: BTreeSet<(TopicId, i32)> = BTreeSet::new();
    let mut out = BTreeMap::new();
    for m in order {
        let mut owned = Vec::new();
        for (topic, partitions) in m.current {
            if !m.subscribed_topic_ids.contains(topic) {
                continue;
            }
            let n = partitions_of(topics, topic);
            for &p in partitions {
                if p >= 0 && p < n && claimed.insert((*topic, p)) {
                    owned.push((*topic, p));
                }
            }
        }
        out.insert(m.member_id.to_string(), owned);
    }
    out
}

fn to_assignment(parts: &[(TopicId, i32)]) -> Assignment {
    let mut a = Assignment::new();
    for (t, p) in parts {
        a.entry(*t).or_default().insert(*p);
    }
    a
}

fn uniform_homogeneous(members: &[MemberSpec<'_>], topics: &BTreeMap<TopicId, i32>) -> BTreeMap<String, Assignment> {
    let subscribed = &members[0].subscribed_topic_ids;
    let mut owned = sticky_start(members, topics);
    let mut all: Vec<(TopicId, i32)> = Vec::new();
    for t in subscribed {
        for p in 0..partitions_of(topics, t) {
            all.push((*t, p));
        }
    }
    let total = all.len();
    let n = members.len();
    let min_quota = total / n;
    let mut extra = total % n;
    // Members currently owning the most keep the extra partitions.
    let mut order: Vec<String> = owned.keys().cloned().collect();
    order.sort_by(|a, b| {
        let la = owned.get(a).map_or(0, Vec::len);
        let lb = owned.get(b).map_or(0, Vec::len);
        lb.cmp(&la).then_with(|| a.cmp(b))
    });
    let mut unfilled: Vec<(String, usize)> = Vec::new();
    let mut kept: BTreeSet<(TopicId, i32)> = BTreeSet::new();
    for id in &order {
        let mut quota = min_quota;
        if extra > 0 {
            quota += 1;
            extra -= 1;
        }
        if let Some(parts) = owned.get_mut(id) {
            parts.truncate(quota);
            kept.extend(parts.iter().copied());
            if parts.len() < quota {
                unfilled.push((id.clone(), quota - parts.len()));
            }
        }
    }
    let mut free = all.into_iter().filter(|tp| !kept.contains(tp));
    for (id, mut remaining) in unfilled {
        while remaining > 0 {
            let Some(tp) = free.next() else { break };
            if let Some(parts) = owned.get_mut(&id) {
                parts.push(tp);
            }
            remaining -= 1;
        }
    }
    owned
        .into_iter()
        .map(|(id, parts)| (id, to_assignment(&parts)))
        .collect()
}

fn uniform_heterogeneous(members: &[MemberSpec<'_>], topics: &BTreeMap<TopicId, i32>) -> BTreeMap<String, Assignment> {
    let owned_start = sticky_start(members, topics);
    let mut subscribers: BTreeMap<TopicId, Vec<String>> = BTreeMap::new();
    let mut sorted: Vec<&MemberSpec<'_>> = members.iter().collect();
    sorted.sort_by(|a, b| a.member_id.cmp(b.member_id));
    for m in &sorted {
        for t in &m.subscribed_topic_ids {
            if partitions_of(topics, t) > 0 {
                subscribers.entry(*t).or_default().push(m.member_id.to_string());
            }
        }
    }
    let mut owner: BTreeMap<(TopicId, i32), String> = BTreeMap::new();
    let mut count: HashMap<String, usize> = HashMap::default();
    for m in &sorted {
        count.insert(m.member_id.to_string(), 0);
    }
    for (id, parts) in &owned_start {
        for tp in parts {
            owner.insert(*tp, id.clone());
            *count.entry(id.clone()).or_insert(0) += 1;
        }
    }
    // Unassigned partitions, most constrained first.
    let mut free: Vec<(usize, TopicId, i32)> = Vec::new();
    for (t, subs) in &subscribers {
        for p in 0..partitions_of(topics, t) {
            if !owner.contains_key(&(*t, p)) {
                free.push((subs.len(), *t, p));
            }
        }
    }
    free.sort();
    for (_, t, p) in free {
        let Some(subs) = subscribers.get(&t) else {
            continue;
        };
        let best = subs
            .iter()
            .min_by(|a, b| {
                let ca = count.get(*a).copied().unwrap_or(0);
                let cb = count.get(*b).copied().unwrap_or(0);
                ca.cmp(&cb).then_with(|| a.cmp(b))
            })
            .cloned();
        if let Some(best) = best {
            *count.entry(best.clone()).or_insert(0) += 1;
            owner.insert((t, p), best);
        }
    }
    // Move partitions from loaded members to eligible less loaded ones.
    let max_moves = owner.len().saturating_mul(members.len()).max(1);
    let mut moves = 0;
    'outer: while moves < max_moves {
        let mut by_load: Vec<String> = count.keys().cloned().collect();
        by_load.sort_by(|a, b| {
            let ca = count.get(a).copied().unwrap_or(0);
            let cb = count.get(b).copied().unwrap_or(0);
            cb.cmp(&ca).then_with(|| a.cmp(b))
        });
        for from in &by_load {
            let from_count = count.get(from).copied().unwrap_or(0);
            let candidates: Vec<(TopicId, i32)> = owner.iter().filter(|(_, o)| *o == from).map(|(tp, _)| *tp).collect();
            for tp in candidates.into_iter().rev() {
                let Some(subs) = subscribers.get(&tp.0) else {
                    continue;
                };
                let target = subs
                    .iter()
                    .filter(|s| count.get(*s).copied().unwrap_or(0) + 1 < from_count)
                    .min_by(|a, b| {
                        let ca = count.get(*a).copied().unwrap_or(0);
                        let cb = count.get(*b).copied().unwrap_or(0);
                        ca.cmp(&cb).then_with(|| a.cmp(b))
                    })
                    .cloned();
                if let Some(target) = target {
                    owner.insert(tp, target.clone());
                    *count.entry(target).or_insert(0) += 1;
                    if let Some(c) = count.get_mut(from) {
                        *c = c.saturating_sub(1);
                    }
                    moves += 1;
                    continue 'outer;
                }
            }
        }
        break;
    }
    let mut out: BTreeMap<String, Assignment> = members
        .iter()
        .map(|m| (m.member_id.to_string(), Assignment::new()))
        .collect();
    for ((t, p), o) in owner {
        if let Some(a) = out.get_mut(&o) {
            a.entry(t).or_default().insert(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tid(n: u8) -> TopicId {
        [n; 16]
    }

    fn spec<'a>(id: &'a str, topics: &[u8], current: &'a Assignment) -> MemberSpec<'a> {
        MemberSpec {
            member_id: id,
            instance_id: None,
            subscribed_topic_ids: topics.iter().map(|t| tid(*t)).collect(),
            current,
        }
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(BTreeSet::len).sum()
    }

    fn check_complete(out: &BTreeMap<String, Assignment>, topics: &BTreeMap<TopicId, i32>) {
        let mut seen = BTreeSet::new();
        for a in out.values() {
            for (t, ps) in a {
                for p in ps {
                    assert!(seen.insert((*t, *p)), "partition assigned twice");
                }
            }
        }
        let total: i32 = topics.values().sum();
        assert_eq!(seen.len(), total as usize);
    }

    #[test]
    fn range_co_partitions_topics() {
        let empty = Assignment::new();
        let topics: BTreeMap<_, _> = [(tid(1), 5), (tid(2), 5)].into();
        let members = vec![
            spec("c", &[1, 2], &empty),
            spec("a", &[1, 2], &empty),
            spec("b", &[1, 2], &empty),
        ];
        let out = ServerAssignor::Range.assign(&members, &topics);
        check_complete(&out, &topics);
        assert_eq!(out["a"][&tid(1)], [0, 1].into());
        assert_eq!(out["b"][&tid(1)], [2, 3].into());
        assert_eq!(out["c"][&tid(1)], [4].into());
        for a in out.values() {
            assert_eq!(a[&tid(1)], a[&tid(2)]);
        }
    }

    #[test]
    fn range_static_members_first_and_heterogeneous() {
        let empty = Assignment::new();
        let topics: BTreeMap<_, _> = [(tid(1), 4), (tid(2), 2)].into();
        let mut s = spec("z", &[1], &empty);
        s.instance_id = Some("i");
        let members = vec![spec("a", &[1, 2], &empty), s];
        let out = ServerAssignor::Range.assign(&members, &topics);
        check_complete(&out, &topics);
        assert_eq!(out["z"][&tid(1)], [0, 1].into());
        assert_eq!(out["a"][&tid(1)], [2, 3].into());
        assert_eq!(out["a"][&tid(2)], [0, 1].into());
    }

    #[test]
    fn uniform_homogeneous_is_balanced_and_sticky() {
        let topics: BTreeMap<_, _> = [(tid(1), 7), (tid(2), 3)].into();
        let empty = Assignment::new();
        let first = ServerAssignor::Uniform.assign(&[spec("a", &[1, 2], &empty)], &topics);
        assert_eq!(count(&first["a"]), 10);
        let a_cur = first["a"].clone();
        let two = ServerAssignor::Uniform.assign(&[spec("a", &[1, 2], &a_cur), spec("b", &[1, 2], &empty)], &topics);
        check_complete(&two, &topics);
        assert_eq!(count(&two["a"]), 5);
        assert_eq!(count(&two["b"]), 5);
        // Everything "a" keeps it owned before.
        for (t, ps) in &two["a"] {
            assert!(ps.is_subset(&a_cur[t]));
        }
        let (a2, b2) = (two["a"].clone(), two["b"].clone());
        let three = ServerAssignor::Uniform.assign(
            &[
                spec("a", &[1, 2], &a2),
                spec("b", &[1, 2], &b2),
                spec("c", &[1, 2], &empty),
            ],
            &topics,
        );
        check_complete(&three, &topics);
        let mut counts: Vec<usize> = three.values().map(count).collect();
        counts.sort();
        assert_eq!(counts, vec![3, 3, 4]);
        let moved = count(&a2) + count(&b2) - count(&three["a"]) - count(&three["b"]);
        assert_eq!(moved, count(&three["c"]));
    }

    #[test]
    fn uniform_heterogeneous_balances_within_constraints() {
        let topics: BTreeMap<_, _> = [(tid(1), 6), (tid(2), 6)].into();
        let empty = Assignment::new();
        let members = vec![
            spec("a", &[1], &empty),
            spec("b", &[1, 2], &empty),
            spec("c", &[2], &empty),
        ];
        let out = ServerAssignor::Uniform.assign(&members, &topics);
        check_complete(&out, &topics);
        for a in out.values() {
            assert_eq!(count(a), 4);
        }
        assert!(out["a"].keys().all(|t| *t == tid(1)));
        assert!(out["c"].keys().all(|t| *t == tid(2)));
    }

    #[test]
    fn unknown_topics_and_empty_groups() {
        let topics: BTreeMap<_, _> = [(tid(1), 2)].into();
        let empty = Assignment::new();
        assert!(ServerAssignor::Uniform.assign(&[], &topics).is_empty());
        let out = ServerAssignor::Uniform.assign(&[spec("a", &[9], &empty)], &topics);
        assert!(out["a"].is_empty());
        let out = ServerAssignor::Range.assign(&[spec("a", &[9], &empty)], &topics);
        assert!(out["a"].is_empty());
        // Current assignment of partitions that no longer exist is dropped.
        let stale: Assignment = [(tid(1), [0, 5].into())].into();
        let out = ServerAssignor::Uniform.assign(&[spec("a", &[1], &stale)], &topics);
        assert_eq!(out["a"][&tid(1)], [0, 1].into());
    }
}
