//! Leader election and ISR rules the controller applies (design:
//! replication.md §5.8 and §6). Pure functions over a partition's state and
//! which brokers may take part.

use super::image::PartitionImage;

/// How a leader was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Election {
    /// From the ISR.
    Clean(i32),
    /// From outside the ISR (`unclean.leader.election.enable`): acknowledged
    /// data may be lost; the ISR becomes the new leader alone.
    Unclean(i32),
    /// No candidate: the partition is offline (leader -1).
    Offline,
}

/// Elect a leader: the first replica, in replica order (the preferred
/// leader first), that is in the ISR and eligible. Without one, and only if
/// `unclean` is allowed, the first eligible replica outside the ISR.
pub fn elect(p: &PartitionImage, eligible: impl Fn(i32) -> bool, unclean: bool) -> Election {
    if let Some(l) = p.replicas.iter().copied().find(|r| p.isr.contains(r) && eligible(*r)) {
        return Election::Clean(l);
    }
    if unclean {
        if let Some(l) = p.replicas.iter().copied().find(|r| eligible(*r)) {
            return Election::Unclean(l);
        }
    }
    Election::Offline
}

/// The preferred leader (first replica) if it should take over: it is not
/// the leader, it is in the ISR and eligible.
pub fn preferred(p: &PartitionImage, eligible: impl Fn(i32) -> bool) -> Option<i32> {
    let first = *p.replicas.first()?;
    (first != p.leader && p.isr.contains(&first) && eligible(first)).then_some(first)
}

/// The partition change when `broker` goes away (fenced, shutting down,
/// offline replica): out of the ISR unless it is the last member (Kafka
/// keeps the last replica in the ISR so that it can come back as leader
/// without an unclean election), and a new leader if it led.
/// Returns `(leader, isr)` where either may be unchanged (`None`).
pub fn without(
    p: &PartitionImage,
    broker: i32,
    eligible: impl Fn(i32) -> bool,
    unclean: bool,
) -> (Option<i32>, Option<Vec<i32>>) {
    if !p.replicas.contains(&broker) {
        return (None, None);
    }
    let isr: Vec<i32> = if p.isr.len() > 1 || !p.isr.contains(&broker) {
        p.isr.iter().copied().filter(|r| *r != broker).collect()
    } else {
        p.isr.clone()
    };
    let new_isr = (isr != p.isr).then(|| isr.clone());
    if p.leader != broker && p.leader != -1 {
        return (None, new_isr);
    }
    let probe = PartitionImage {
        isr: isr.clone(),
        ..p.clone()
    };
    match elect(&probe, |r| r != broker && eligible(r), unclean) {
        Election::Clean(l) => (Some(l), new_isr),
        Election::Unclean(l) => (Some(l), Some(vec![l])),
        // Offline: no leader; the last ISR member stays recorded.
        Election::Offline => ((p.leader != -1).then_some(-1), new_isr),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(replicas: &[i32], isr: &[i32], leader: i32) -> PartitionImage {
        PartitionImage {
            replicas: replicas.to_vec(),
            shards: vec![0; replicas.len()],
            isr: isr.to_vec(),
            leader,
            leader_epoch: 3,
            partition_epoch: 5,
        }
    }

    #[test]
    fn elects_in_replica_order_from_the_isr() {
        let p = part(&[3, 1, 2], &[1, 2], 3);
        assert_eq!(elect(&p, |_| true, false), Election::Clean(1));
        assert_eq!(elect(&p, |b| b != 1, false), Election::Clean(2));
        assert_eq!(elect(&p, |b| b == 3, false), Election::Offline);
        assert_eq!(elect(&p, |b| b == 3, true), Election::Unclean(3));
    }

    #[test]
    fn a_lost_leader_is_replaced_and_leaves_the_isr() {
        let p = part(&[1, 2, 3], &[1, 2, 3], 1);
        assert_eq!(without(&p, 1, |_| true, false), (Some(2), Some(vec![2, 3])));
        // A follower leaves the ISR; the leader stays.
        assert_eq!(without(&p, 3, |_| true, false), (None, Some(vec![1, 2])));
        // Not a replica: nothing.
        assert_eq!(without(&p, 7, |_| true, false), (None, None));
    }

    #[test]
    fn the_last_isr_member_stays_and_the_partition_goes_offline() {
        let p = part(&[1, 2], &[1], 1);
        assert_eq!(without(&p, 1, |_| true, false), (Some(-1), None));
        // Already offline: no change at all.
        let off = part(&[1, 2], &[1], -1);
        assert_eq!(without(&off, 1, |_| true, false), (None, None));
        // Unclean: the other replica takes over alone.
        assert_eq!(without(&p, 1, |_| true, true), (Some(2), Some(vec![2])));
    }

    #[test]
    fn preferred_leader_only_when_in_sync_and_eligible() {
        assert_eq!(preferred(&part(&[1, 2], &[1, 2], 2), |_| true), Some(1));
        assert_eq!(preferred(&part(&[1, 2], &[2], 2), |_| true), None);
        assert_eq!(preferred(&part(&[1, 2], &[1, 2], 2), |b| b != 1), None);
        assert_eq!(preferred(&part(&[1, 2], &[1, 2], 1), |_| true), None);
    }
}
