//! Unit tests of every rule of the replica state machine, and randomised
//! tests against naive models (design §8).

use super::*;
use crate::log::epoch::{follower_truncation, EpochEntry, LeaderEpochCache};
use crate::protocol::error::{
    FENCED_LEADER_EPOCH, INVALID_UPDATE_VERSION, KAFKA_STORAGE_ERROR, NOT_CONTROLLER, NOT_ENOUGH_REPLICAS,
    NOT_ENOUGH_REPLICAS_AFTER_APPEND, NOT_LEADER_OR_FOLLOWER, OFFSET_OUT_OF_RANGE, OPERATION_NOT_ATTEMPTED,
    UNKNOWN_LEADER_EPOCH,
};
use proptest::prelude::*;

const ME: i32 = 1;
const LAG: i64 = 10_000;

fn config(min_isr: usize) -> ReplicaConfig {
    ReplicaConfig {
        min_insync_replicas: min_isr,
        replica_lag_time_max_ms: LAG,
        coordinator: false,
    }
}

fn pstate(replicas: &[i32], isr: &[i32], leader: i32, epoch: i32, partition_epoch: i32) -> PartitionState {
    PartitionState {
        replicas: replicas.to_vec(),
        isr: isr.to_vec(),
        leader,
        leader_epoch: epoch,
        partition_epoch,
        adding: vec![],
        removing: vec![],
    }
}

fn pos(log_end: i64, durable: i64, hw: i64) -> LogPositions {
    LogPositions { log_end, durable, hw }
}

fn meta(state: PartitionState, log: LogPositions, now_ms: i64) -> Event {
    Event::Metadata {
        me: ME,
        state,
        source_shard: 0,
        log,
        now_ms,
    }
}

fn empty() -> LeaderEpochCache {
    LeaderEpochCache::new()
}

/// Broker 1 leads epoch 5 of replicas 1,2,3 (all in sync), log end 100,
/// durable 100, HW 90.
fn leader3(min_isr: usize) -> ReplicaState {
    let mut s = ReplicaState::new(ME, config(min_isr));
    let fx = s.handle(
        meta(pstate(&[1, 2, 3], &[1, 2, 3], ME, 5, 7), pos(100, 100, 90), 0),
        &empty(),
    );
    assert_eq!(
        fx,
        vec![Effect::BecomeLeader {
            epoch: 5,
            start_offset: 100
        }]
    );
    s
}

fn fetch(replica: i32, offset: i64, leader_log_end: i64, now_ms: i64) -> FollowerFetch {
    FollowerFetch {
        replica,
        broker_epoch: 10,
        fetch_offset: offset,
        last_fetched_epoch: -1,
        current_epoch: 5,
        leader_log_end,
        now_ms,
    }
}

fn ff(replica: i32, offset: i64, leader_log_end: i64, now_ms: i64) -> Event {
    Event::FollowerFetch(fetch(replica, offset, leader_log_end, now_ms))
}

fn hw(s: &ReplicaState) -> i64 {
    s.high_watermark().unwrap()
}

fn progress(s: &ReplicaState, r: i32) -> Progress {
    s.leader_state().unwrap().followers[&r]
}

// ---- roles ----

#[test]
fn new_leader_assigns_its_epoch_at_the_log_end() {
    let s = leader3(1);
    assert!(s.is_leader());
    assert_eq!(s.leader_epoch(), 5);
    assert_eq!(s.leader_state().unwrap().epoch_start_offset, 100);
    assert_eq!(hw(&s), 90, "the HW the log had");
    assert_eq!(s.isr(), Some(&[1, 2, 3][..]));
    for r in [2, 3] {
        let p = progress(&s, r);
        assert_eq!(p.durable_offset, -1, "position unknown until it fetches");
        assert_eq!(p.last_caught_up_ms, 0);
    }
}

#[test]
fn stale_metadata_is_ignored_and_a_new_epoch_hands_over() {
    let mut s = leader3(1);
    assert!(s
        .handle(
            meta(pstate(&[1, 2, 3], &[1, 2, 3], 2, 4, 9), pos(100, 100, 90), 0),
            &empty()
        )
        .is_empty());
    assert!(s.is_leader());
    let fx = s.handle(
        meta(pstate(&[1, 2, 3], &[1, 2, 3], 2, 6, 9), pos(100, 100, 90), 0),
        &empty(),
    );
    assert_eq!(
        fx,
        vec![
            Effect::FailWaiters(NOT_LEADER_OR_FOLLOWER),
            Effect::BecomeFollower {
                leader: 2,
                source_shard: 0,
                epoch: 6
            }
        ]
    );
    assert_eq!(s.leader_epoch(), 6);
    // The same state again is a no-op.
    assert!(s
        .handle(
            meta(pstate(&[1, 2, 3], &[1, 2, 3], 2, 6, 10), pos(100, 100, 90), 0),
            &empty()
        )
        .is_empty());
    // Leader again in a later epoch.
    let fx = s.handle(
        meta(pstate(&[1, 2, 3], &[1, 2, 3], ME, 8, 11), pos(120, 110, 90), 0),
        &empty(),
    );
    assert_eq!(
        fx,
        vec![Effect::BecomeLeader {
            epoch: 8,
            start_offset: 120
        }]
    );
}

#[test]
fn coordinator_partitions_load_and_unload_groups() {
    let mut s = ReplicaState::new(
        ME,
        ReplicaConfig {
            coordinator: true,
            ..config(1)
        },
    );
    let fx = s.handle(meta(pstate(&[1, 2], &[1, 2], ME, 1, 1), pos(0, 0, 0), 0), &empty());
    assert_eq!(
        fx,
        vec![
            Effect::BecomeLeader {
                epoch: 1,
                start_offset: 0
            },
            Effect::LoadGroups
        ]
    );
    let fx = s.handle(meta(pstate(&[1, 2], &[1, 2], 2, 2, 2), pos(0, 0, 0), 0), &empty());
    assert_eq!(
        fx,
        vec![
            Effect::FailWaiters(NOT_LEADER_OR_FOLLOWER),
            Effect::UnloadGroups,
            Effect::BecomeFollower {
                leader: 2,
                source_shard: 0,
                epoch: 2
            }
        ]
    );
}

#[test]
fn a_replica_moved_away_or_deleted_stops() {
    let mut s = leader3(1);
    let fx = s.handle(meta(pstate(&[2, 3], &[2, 3], 2, 6, 9), pos(100, 100, 90), 0), &empty());
    assert_eq!(fx, vec![Effect::FailWaiters(NOT_LEADER_OR_FOLLOWER), Effect::Stop]);
    assert_eq!(s.role, Role::None);
    let mut s = ReplicaState::new(ME, config(1));
    s.handle(meta(pstate(&[1, 2], &[1, 2], 2, 3, 3), pos(0, 0, 0), 0), &empty());
    assert_eq!(s.handle(Event::Deleted, &empty()), vec![Effect::Stop]);
    assert!(s.handle(Event::Deleted, &empty()).is_empty());
}

// ---- high watermark ----

#[test]
fn hw_waits_for_every_isr_member_of_a_new_leader() {
    let mut s = leader3(1);
    assert!(
        s.handle(ff(2, 100, 100, 1), &empty()).is_empty(),
        "3 has not fetched yet"
    );
    assert_eq!(
        s.handle(ff(3, 95, 100, 1), &empty()),
        vec![Effect::SetHighWatermark(95)]
    );
    assert_eq!(
        s.handle(ff(3, 100, 100, 2), &empty()),
        vec![Effect::SetHighWatermark(100)]
    );
}

#[test]
fn list_offsets_waits_for_the_hw_to_reach_the_epoch_start() {
    let mut s = leader3(1);
    assert_eq!(s.epoch_start_reached(), Some(false), "HW 90, epoch start 100");
    s.handle(ff(2, 100, 100, 1), &empty());
    s.handle(ff(3, 100, 100, 1), &empty());
    assert_eq!(s.epoch_start_reached(), Some(true));
    assert_eq!(ReplicaState::new(ME, config(1)).epoch_start_reached(), None);
}

#[test]
fn a_follower_refetches_when_the_source_shard_moves() {
    let mut s = ReplicaState::new(ME, config(1));
    s.handle(meta(pstate(&[1, 2], &[1, 2], 2, 3, 3), pos(0, 0, 0), 0), &empty());
    let fx = s.handle(
        Event::Metadata {
            me: ME,
            state: pstate(&[1, 2], &[1, 2], 2, 3, 4),
            source_shard: 1,
            log: pos(0, 0, 0),
            now_ms: 0,
        },
        &empty(),
    );
    assert_eq!(
        fx,
        vec![Effect::BecomeFollower {
            leader: 2,
            source_shard: 1,
            epoch: 3
        }]
    );
}

#[test]
fn hw_is_bounded_by_the_leaders_durable_offset() {
    let mut s = leader3(1);
    s.handle(
        Event::LocalDurable {
            offset: 100,
            log_end: 130,
        },
        &empty(),
    );
    s.handle(ff(2, 120, 130, 1), &empty());
    assert_eq!(
        s.handle(ff(3, 125, 130, 1), &empty()),
        vec![Effect::SetHighWatermark(100)]
    );
    assert_eq!(
        s.handle(
            Event::LocalDurable {
                offset: 130,
                log_end: 130
            },
            &empty()
        ),
        vec![Effect::SetHighWatermark(120)]
    );
}

#[test]
fn hw_never_decreases_within_an_epoch() {
    let mut s = leader3(1);
    s.handle(ff(2, 100, 100, 1), &empty());
    s.handle(ff(3, 100, 100, 1), &empty());
    assert_eq!(hw(&s), 100);
    // A follower reporting less (it truncated, or restarted) does not move it back.
    assert!(s.handle(ff(3, 92, 100, 2), &empty()).is_empty());
    assert_eq!(hw(&s), 100);
}

#[test]
fn strict_min_isr_freezes_the_hw_and_refuses_acks_all() {
    let mut s = ReplicaState::new(ME, config(2));
    s.handle(meta(pstate(&[1, 2], &[1], ME, 1, 1), pos(50, 50, 40), 0), &empty());
    assert!(s
        .handle(
            Event::LocalDurable {
                offset: 60,
                log_end: 60
            },
            &empty()
        )
        .is_empty());
    assert_eq!(hw(&s), 40);
    assert_eq!(s.can_accept_acks_all(2), Err(NOT_ENOUGH_REPLICAS));
    assert_eq!(s.can_accept_acks_all(1), Ok(()));
    assert_eq!(s.can_append(), Ok(()));
    // 2 catches up: it joins (maximal ISR of 2 counts at once) and the HW moves.
    let fx = s.handle(
        Event::FollowerFetch(FollowerFetch {
            current_epoch: 1,
            ..fetch(2, 60, 60, 1)
        }),
        &empty(),
    );
    assert_eq!(
        fx,
        vec![
            Effect::SendAlterPartition {
                leader_epoch: 1,
                isr: vec![(1, -1), (2, 10)],
                partition_epoch: 1
            },
            Effect::SetHighWatermark(60)
        ]
    );
    assert_eq!(
        s.can_accept_acks_all(2),
        Err(NOT_ENOUGH_REPLICAS),
        "the committed ISR counts for admission"
    );
}

#[test]
fn single_replica_moves_the_hw_with_durability() {
    let mut s = ReplicaState::new(ME, config(1));
    s.handle(meta(pstate(&[1], &[1], ME, 0, 0), pos(10, 10, 10), 0), &empty());
    assert_eq!(
        s.handle(
            Event::LocalDurable {
                offset: 15,
                log_end: 15
            },
            &empty()
        ),
        vec![Effect::SetHighWatermark(15)]
    );
    assert!(
        s.handle(
            Event::Tick {
                now_ms: 1_000_000,
                log_end: 20
            },
            &empty()
        )
        .is_empty(),
        "never shrinks below itself"
    );
    assert_eq!(s.isr(), Some(&[1][..]));
}

#[test]
fn acks_all_completion() {
    let mut s = leader3(1);
    assert_eq!(s.acks_all_complete(90), Some(Ok(())));
    assert_eq!(s.acks_all_complete(95), None);
    s.handle(ff(2, 100, 100, 1), &empty());
    s.handle(ff(3, 100, 100, 1), &empty());
    assert_eq!(s.acks_all_complete(95), Some(Ok(())));
    s.handle(
        meta(pstate(&[1, 2, 3], &[2, 3], 2, 6, 9), pos(100, 100, 100), 0),
        &empty(),
    );
    assert_eq!(s.acks_all_complete(101), Some(Err(NOT_LEADER_OR_FOLLOWER)));
    assert_eq!(s.can_append(), Err(NOT_LEADER_OR_FOLLOWER));
}

// ---- follower progress and the ISR ----

#[test]
fn caught_up_follows_kafkas_definition() {
    let mut s = leader3(1);
    // At the leader's log end at fetch time: caught up now.
    s.handle(ff(2, 100, 100, 1_000), &empty());
    assert_eq!(progress(&s, 2).last_caught_up_ms, 1_000);
    // Behind the log end now, but at the log end of its previous fetch:
    // caught up as of the previous fetch.
    s.handle(ff(2, 100, 120, 2_000), &empty());
    assert_eq!(progress(&s, 2).last_caught_up_ms, 1_000);
    s.handle(ff(2, 120, 150, 3_000), &empty());
    assert_eq!(progress(&s, 2).last_caught_up_ms, 2_000);
    // Behind both: unchanged.
    s.handle(ff(2, 130, 170, 4_000), &empty());
    assert_eq!(progress(&s, 2).last_caught_up_ms, 2_000);
    let p = progress(&s, 2);
    assert!(p.is_caught_up(170, 2_000 + LAG, LAG));
    assert!(!p.is_caught_up(170, 2_001 + LAG, LAG));
    assert!(p.is_caught_up(130, 1_000_000, LAG), "at the leader's log end");
}

#[test]
fn lagging_followers_are_shrunk_through_alter_partition() {
    let mut s = leader3(1);
    s.handle(ff(2, 100, 100, 1), &empty());
    s.handle(ff(3, 90, 100, 1), &empty());
    assert_eq!(hw(&s), 90);
    assert!(
        s.handle(
            Event::Tick {
                now_ms: LAG,
                log_end: 100
            },
            &empty()
        )
        .is_empty(),
        "ISR members start caught up"
    );
    s.handle(ff(2, 100, 100, LAG + 5), &empty());
    let fx = s.handle(
        Event::Tick {
            now_ms: LAG + 1,
            log_end: 100,
        },
        &empty(),
    );
    assert_eq!(
        fx,
        vec![Effect::SendAlterPartition {
            leader_epoch: 5,
            isr: vec![(1, -1), (2, 10)],
            partition_epoch: 7
        }]
    );
    // Pending: 3 still counts (maximal ISR), so the HW still waits for it.
    assert_eq!(s.maximal_isr(), Some(vec![1, 2, 3]));
    assert!(
        s.handle(
            Event::Tick {
                now_ms: LAG + 100,
                log_end: 100
            },
            &empty()
        )
        .is_empty(),
        "one change in flight"
    );
    let fx = s.handle(
        Event::AlterPartitionDone(Ok(IsrUpdate {
            leader_epoch: 5,
            partition_epoch: 8,
            isr: vec![1, 2],
        })),
        &empty(),
    );
    assert_eq!(fx, vec![Effect::SetHighWatermark(100)]);
    assert_eq!(s.isr(), Some(&[1, 2][..]));
    // The same change through the metadata log is a no-op.
    assert!(s
        .handle(
            meta(pstate(&[1, 2, 3], &[1, 2], ME, 5, 8), pos(100, 100, 100), 0),
            &empty()
        )
        .is_empty());
}

#[test]
fn shrinking_below_min_isr_fails_acks_all_waiters() {
    let mut s = ReplicaState::new(ME, config(2));
    s.handle(meta(pstate(&[1, 2], &[1, 2], ME, 3, 3), pos(10, 10, 10), 0), &empty());
    let fx = s.handle(
        Event::Tick {
            now_ms: LAG + 1,
            log_end: 20,
        },
        &empty(),
    );
    assert_eq!(
        fx,
        vec![Effect::SendAlterPartition {
            leader_epoch: 3,
            isr: vec![(1, -1)],
            partition_epoch: 3
        }]
    );
    let fx = s.handle(
        Event::AlterPartitionDone(Ok(IsrUpdate {
            leader_epoch: 3,
            partition_epoch: 4,
            isr: vec![1],
        })),
        &empty(),
    );
    assert_eq!(fx, vec![Effect::FailAcksAllWaiters(NOT_ENOUGH_REPLICAS_AFTER_APPEND)]);
    assert_eq!(s.isr(), Some(&[1][..]), "never empty: the leader stays");
    assert!(
        s.handle(
            Event::LocalDurable {
                offset: 20,
                log_end: 20
            },
            &empty()
        )
        .is_empty(),
        "HW frozen"
    );
}

#[test]
fn followers_join_at_the_hw_and_the_epoch_start() {
    let mut s = ReplicaState::new(ME, config(1));
    s.handle(
        meta(pstate(&[1, 2, 3], &[1], ME, 5, 7), pos(100, 100, 100), 0),
        &empty(),
    );
    // Below the HW and the epoch start (both 100): not yet.
    assert!(s.handle(ff(2, 99, 100, 1), &empty()).is_empty());
    let fx = s.handle(ff(2, 100, 100, 2), &empty());
    assert_eq!(
        fx,
        vec![Effect::SendAlterPartition {
            leader_epoch: 5,
            isr: vec![(1, -1), (2, 10)],
            partition_epoch: 7
        }]
    );
    assert_eq!(s.maximal_isr(), Some(vec![1, 2]));
    // 3 must wait for the change in flight.
    assert!(s.handle(ff(3, 100, 100, 2), &empty()).is_empty());
    // The HW now waits for 2 (maximal ISR): leader durable 110, 2 at 100.
    assert!(s
        .handle(
            Event::LocalDurable {
                offset: 110,
                log_end: 110
            },
            &empty()
        )
        .is_empty());
    assert_eq!(
        s.handle(ff(2, 105, 110, 3), &empty()),
        vec![Effect::SetHighWatermark(105)]
    );
    let fx = s.handle(
        Event::AlterPartitionDone(Ok(IsrUpdate {
            leader_epoch: 5,
            partition_epoch: 8,
            isr: vec![1, 2],
        })),
        &empty(),
    );
    assert!(fx.is_empty());
    // Now 3 (at 100 < HW 105) may not join; at 105 it may.
    assert!(s.handle(ff(3, 100, 110, 4), &empty()).is_empty());
    let fx = s.handle(ff(3, 105, 110, 5), &empty());
    assert_eq!(
        fx,
        vec![Effect::SendAlterPartition {
            leader_epoch: 5,
            isr: vec![(1, -1), (2, 10), (3, 10)],
            partition_epoch: 8
        }]
    );
}

#[test]
fn alter_partition_errors() {
    let mut s = ReplicaState::new(ME, config(1));
    s.handle(meta(pstate(&[1, 2], &[1], ME, 5, 7), pos(100, 100, 100), 0), &empty());
    let proposal = Effect::SendAlterPartition {
        leader_epoch: 5,
        isr: vec![(1, -1), (2, 10)],
        partition_epoch: 7,
    };
    assert_eq!(s.handle(ff(2, 100, 100, 1), &empty()), vec![proposal.clone()]);
    // Not attempted: back to committed; the next fetch proposes again.
    assert!(s
        .handle(Event::AlterPartitionDone(Err(OPERATION_NOT_ATTEMPTED)), &empty())
        .is_empty());
    assert_eq!(s.maximal_isr(), Some(vec![1]));
    assert_eq!(s.handle(ff(2, 100, 100, 2), &empty()), vec![proposal.clone()]);
    // Retriable: sent again.
    assert_eq!(
        s.handle(Event::AlterPartitionDone(Err(NOT_CONTROLLER)), &empty()),
        vec![proposal.clone()]
    );
    // Stale partition epoch: pending until metadata.
    assert!(s
        .handle(Event::AlterPartitionDone(Err(INVALID_UPDATE_VERSION)), &empty())
        .is_empty());
    assert!(s.handle(ff(2, 100, 100, 3), &empty()).is_empty());
    assert_eq!(s.maximal_isr(), Some(vec![1, 2]));
    // An answer for another epoch is ignored.
    assert!(s
        .handle(
            Event::AlterPartitionDone(Ok(IsrUpdate {
                leader_epoch: 4,
                partition_epoch: 9,
                isr: vec![1, 2]
            })),
            &empty()
        )
        .is_empty());
    // Metadata replaces the pending change.
    s.handle(meta(pstate(&[1, 2], &[1], ME, 5, 9), pos(100, 100, 100), 0), &empty());
    assert_eq!(
        s.leader_state().unwrap().isr,
        IsrState::Committed {
            isr: vec![1],
            partition_epoch: 9
        }
    );
    // A late answer is ignored.
    assert!(s
        .handle(
            Event::AlterPartitionDone(Ok(IsrUpdate {
                leader_epoch: 5,
                partition_epoch: 8,
                isr: vec![1, 2]
            })),
            &empty()
        )
        .is_empty());
    assert_eq!(s.isr(), Some(&[1][..]));
}

// ---- fetch verdicts ----

fn leader_cache() -> LeaderEpochCache {
    let entries = [(1, 0), (3, 10), (5, 20)].map(|(epoch, start_offset)| EpochEntry { epoch, start_offset });
    LeaderEpochCache::from_entries(entries.to_vec()).unwrap()
}

fn vf(last_fetched_epoch: i32, fetch_offset: i64) -> FollowerFetch {
    FollowerFetch {
        last_fetched_epoch,
        ..fetch(2, fetch_offset, 30, 0)
    }
}

#[test]
fn verdict_checks_epochs_and_leadership() {
    let s = leader3(1);
    let c = leader_cache();
    let f = FollowerFetch {
        current_epoch: 4,
        ..vf(5, 25)
    };
    assert_eq!(s.verdict(&f, &c, 0, 30), FetchVerdict::Error(FENCED_LEADER_EPOCH));
    let f = FollowerFetch {
        current_epoch: 6,
        ..vf(5, 25)
    };
    assert_eq!(s.verdict(&f, &c, 0, 30), FetchVerdict::Error(UNKNOWN_LEADER_EPOCH));
    let f = FollowerFetch {
        replica: 9,
        ..vf(5, 25)
    };
    assert_eq!(
        s.verdict(&f, &c, 0, 30),
        FetchVerdict::Error(NOT_LEADER_OR_FOLLOWER),
        "not a replica"
    );
    let mut s2 = s.clone();
    s2.handle(
        Event::FollowerFetch(FollowerFetch {
            broker_epoch: 20,
            ..vf(5, 25)
        }),
        &c,
    );
    assert_eq!(
        s2.verdict(&vf(5, 25), &c, 0, 30),
        FetchVerdict::Error(NOT_LEADER_OR_FOLLOWER),
        "stale broker epoch"
    );
    let mut f2 = ReplicaState::new(ME, config(1));
    f2.handle(
        meta(pstate(&[1, 2, 3], &[1, 2, 3], 2, 5, 7), pos(30, 30, 0), 0),
        &empty(),
    );
    assert_eq!(
        f2.verdict(&vf(5, 25), &c, 0, 30),
        FetchVerdict::Error(NOT_LEADER_OR_FOLLOWER)
    );
    assert_eq!(
        ReplicaState::new(ME, config(1)).verdict(&vf(5, 25), &c, 0, 30),
        FetchVerdict::Error(NOT_LEADER_OR_FOLLOWER)
    );
    // No epoch given: no check.
    let f = FollowerFetch {
        current_epoch: -1,
        ..vf(5, 25)
    };
    assert!(matches!(
        s.verdict(&f, &c, 0, 30),
        FetchVerdict::Serve {
            from: 25,
            upto_log_end: true,
            hw: 90
        }
    ));
}

#[test]
fn verdict_detects_divergence_as_kafkas_leader() {
    let s = leader3(1);
    let c = leader_cache();
    assert_eq!(
        s.verdict(&vf(5, 25), &c, 0, 30),
        FetchVerdict::Serve {
            from: 25,
            upto_log_end: true,
            hw: 90
        }
    );
    assert_eq!(
        s.verdict(&vf(3, 15), &c, 0, 30),
        FetchVerdict::Serve {
            from: 15,
            upto_log_end: true,
            hw: 90
        }
    );
    assert_eq!(
        s.verdict(&vf(3, 20), &c, 0, 30),
        FetchVerdict::Serve {
            from: 20,
            upto_log_end: true,
            hw: 90
        }
    );
    assert_eq!(
        s.verdict(&vf(3, 25), &c, 0, 30),
        FetchVerdict::Diverging {
            epoch: 3,
            end_offset: 20
        }
    );
    assert_eq!(
        s.verdict(&vf(4, 22), &c, 0, 30),
        FetchVerdict::Diverging {
            epoch: 3,
            end_offset: 20
        },
        "unknown epoch"
    );
    assert_eq!(
        s.verdict(&vf(5, 31), &c, 0, 30),
        FetchVerdict::Diverging {
            epoch: 5,
            end_offset: 30
        },
        "past log end"
    );
    assert_eq!(
        s.verdict(&vf(0, 3), &c, 0, 30),
        FetchVerdict::Diverging {
            epoch: 0,
            end_offset: 0
        },
        "before earliest"
    );
    assert_eq!(
        s.verdict(&vf(6, 30), &c, 0, 30),
        FetchVerdict::Error(OFFSET_OUT_OF_RANGE),
        "undefined"
    );
    // Offset range, without a last fetched epoch.
    assert_eq!(
        s.verdict(&vf(-1, 31), &c, 0, 30),
        FetchVerdict::Error(OFFSET_OUT_OF_RANGE)
    );
    assert_eq!(
        s.verdict(&vf(-1, 4), &c, 5, 30),
        FetchVerdict::Error(OFFSET_OUT_OF_RANGE)
    );
    assert_eq!(
        s.verdict(&vf(-1, 5), &c, 5, 30),
        FetchVerdict::Serve {
            from: 5,
            upto_log_end: true,
            hw: 90
        }
    );
    // A consumer reads up to the HW.
    let f = FollowerFetch {
        replica: -1,
        ..vf(-1, 12)
    };
    assert_eq!(
        s.verdict(&f, &c, 0, 30),
        FetchVerdict::Serve {
            from: 12,
            upto_log_end: false,
            hw: 90
        }
    );
}

// ---- follower, lease, storage ----

#[test]
fn follower_hw_is_min_of_leader_hw_and_local_durable() {
    let mut s = ReplicaState::new(ME, config(1));
    let fx = s.handle(meta(pstate(&[1, 2], &[1, 2], 2, 3, 3), pos(50, 40, 30), 0), &empty());
    assert_eq!(
        fx,
        vec![Effect::BecomeFollower {
            leader: 2,
            source_shard: 0,
            epoch: 3
        }]
    );
    assert_eq!(
        s.handle(Event::LeaderResponse { hw: 60 }, &empty()),
        vec![Effect::SetHighWatermark(40)]
    );
    assert_eq!(
        s.handle(
            Event::LocalDurable {
                offset: 55,
                log_end: 55
            },
            &empty()
        ),
        vec![Effect::SetHighWatermark(55)]
    );
    assert_eq!(
        s.handle(
            Event::LocalDurable {
                offset: 70,
                log_end: 70
            },
            &empty()
        ),
        vec![Effect::SetHighWatermark(60)]
    );
    assert!(
        s.handle(Event::LeaderResponse { hw: 50 }, &empty()).is_empty(),
        "never back"
    );
    assert_eq!(hw(&s), 60);
}

#[test]
fn lease_loss_stops_appends_and_the_hw() {
    let mut s = leader3(1);
    s.handle(ff(2, 100, 100, 1), &empty());
    s.handle(Event::LeaseLost, &empty());
    assert_eq!(s.can_append(), Err(NOT_LEADER_OR_FOLLOWER));
    assert!(s.handle(ff(3, 100, 100, 1), &empty()).is_empty());
    assert_eq!(hw(&s), 90);
    assert_eq!(
        s.handle(Event::LeaseRegained, &empty()),
        vec![Effect::SetHighWatermark(100)]
    );
    assert_eq!(s.can_append(), Ok(()));
}

#[test]
fn storage_failure_of_a_replicated_leader_goes_offline() {
    let mut s = leader3(1);
    let fx = s.handle(Event::StorageFailed, &empty());
    assert_eq!(
        fx,
        vec![Effect::FailWaiters(KAFKA_STORAGE_ERROR), Effect::ReportOffline]
    );
    assert!(s.handle(Event::StorageFailed, &empty()).is_empty());
    assert_eq!(s.can_append(), Err(KAFKA_STORAGE_ERROR));
    assert_eq!(
        s.verdict(&vf(5, 25), &leader_cache(), 0, 30),
        FetchVerdict::Error(KAFKA_STORAGE_ERROR)
    );
    assert!(s.handle(ff(2, 100, 100, 1), &empty()).is_empty());
    // Metadata moves leadership; the replica rejoins as a follower.
    s.handle(
        meta(pstate(&[1, 2, 3], &[2, 3], 2, 6, 9), pos(100, 100, 90), 0),
        &empty(),
    );
    assert!(!s.offline);
    // RF=1 keeps today's rollback: nothing here.
    let mut s = ReplicaState::new(ME, config(1));
    s.handle(meta(pstate(&[1], &[1], ME, 0, 0), pos(0, 0, 0), 0), &empty());
    assert!(s.handle(Event::StorageFailed, &empty()).is_empty());
    assert_eq!(s.can_append(), Ok(()));
}

// ---- randomised: the leader against a naive model ----

#[derive(Debug, Clone)]
enum Op {
    Append(i64),
    Durable(i64),
    Fetch {
        replica: usize,
        advance: i64,
        dt: i64,
    },
    Tick(i64),
    Answer(u8),
    Lease,
    /// The controller changes the ISR itself (fencing, KIP-841): the leader
    /// plus the followers selected by the mask, in a newer partition epoch.
    ControllerIsr(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1i64..20).prop_map(Op::Append),
        3 => (0i64..20).prop_map(Op::Durable),
        6 => (0usize..3, 0i64..25, 0i64..3_000).prop_map(|(replica, advance, dt)| Op::Fetch { replica, advance, dt }),
        2 => (0i64..8_000).prop_map(Op::Tick),
        2 => (0u8..4).prop_map(Op::Answer),
        1 => Just(Op::Lease),
        1 => any::<u8>().prop_map(Op::ControllerIsr),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn leader_matches_a_naive_model(
        followers in 0usize..4,
        min_isr in 1usize..4,
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let replicas: Vec<i32> = (1..=followers as i32 + 1).collect();
        let mut s = ReplicaState::new(ME, config(min_isr));
        let start = 50i64;
        s.handle(meta(pstate(&replicas, &replicas, ME, 5, 1), pos(start, start, 40), 0), &empty());
        let (mut log_end, mut durable, mut now) = (start, start, 0i64);
        // What each follower has reported (−1: nothing in this epoch).
        let mut reported: std::collections::BTreeMap<i32, i64> = replicas[1..].iter().map(|&r| (r, -1)).collect();
        let mut lease_lost = false;
        let mut partition_epoch = 1;
        let mut expected_hw = hw(&s);
        for op in ops {
            let pending_before = s.leader_state().unwrap().isr.in_flight();
            let hw_before = hw(&s);
            let mut retried = false;
            let fx = match op {
                Op::Append(n) => {
                    log_end += n;
                    vec![]
                }
                Op::Durable(n) => {
                    durable = (durable + n).min(log_end);
                    s.handle(Event::LocalDurable { offset: durable, log_end }, &empty())
                }
                Op::Fetch { replica, advance, dt } => {
                    if replicas.len() < 2 {
                        continue;
                    }
                    let r = replicas[1 + replica % (replicas.len() - 1)];
                    let at = (reported[&r].max(start - 10) + advance).min(log_end);
                    reported.insert(r, at);
                    now += dt;
                    s.handle(ff(r, at, log_end, now), &empty())
                }
                Op::Tick(dt) => {
                    now += dt;
                    s.handle(Event::Tick { now_ms: now, log_end }, &empty())
                }
                Op::Answer(kind) => {
                    let l = s.leader_state().unwrap().clone();
                    let answer = match (kind, l.isr.proposed()) {
                        (0 | 1, Some(isr)) => Ok(IsrUpdate { leader_epoch: 5, partition_epoch: l.isr.partition_epoch() + 1, isr }),
                        (2, _) => Err(OPERATION_NOT_ATTEMPTED),
                        _ => {
                            retried = true;
                            Err(NOT_CONTROLLER)
                        }
                    };
                    s.handle(Event::AlterPartitionDone(answer), &empty())
                }
                Op::ControllerIsr(mask) => {
                    let mut isr = vec![ME];
                    isr.extend(replicas[1..].iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, r)| *r));
                    partition_epoch = partition_epoch.max(s.leader_state().unwrap().isr.partition_epoch()) + 1;
                    s.handle(meta(pstate(&replicas, &isr, ME, 5, partition_epoch), pos(log_end, durable, 0), now), &empty())
                }
                Op::Lease => {
                    lease_lost = !lease_lost;
                    s.handle(if lease_lost { Event::LeaseLost } else { Event::LeaseRegained }, &empty())
                }
            };
            let l = s.leader_state().unwrap().clone();
            let maximal = l.isr.maximal();
            // The naive HW: min over the maximal ISR, forward only, frozen
            // under min ISR or without lease.
            if !lease_lost && maximal.len() >= min_isr {
                let candidate = maximal.iter().filter(|&&r| r != ME).map(|r| reported[r]).fold(durable, i64::min);
                expected_hw = expected_hw.max(candidate);
            }
            prop_assert_eq!(l.hw, expected_hw);
            prop_assert!(l.hw >= hw_before, "HW went back");
            prop_assert!(l.hw <= durable, "HW past the leader's durable offset");
            prop_assert!(l.isr.committed().contains(&ME) && maximal.contains(&ME));
            for e in &fx {
                match e {
                    Effect::SetHighWatermark(h) => {
                        prop_assert!(*h > hw_before);
                        prop_assert!(maximal.len() >= min_isr && !lease_lost);
                        for r in maximal.iter().filter(|&&r| r != ME) {
                            prop_assert!(reported[r] >= *h, "HW {} past {}'s durable {}", h, r, reported[r]);
                        }
                    }
                    Effect::SendAlterPartition { isr, .. } => {
                        prop_assert!(!pending_before || retried, "two changes in flight");
                        prop_assert!(!isr.is_empty() && isr.iter().any(|(r, _)| *r == ME), "ISR lost the leader");
                        if let IsrState::PendingExpand { adding, .. } = &l.isr {
                            prop_assert!(reported[adding] >= hw_before.min(l.hw) && reported[adding] >= start);
                        }
                    }
                    Effect::FailAcksAllWaiters(code) => prop_assert_eq!(*code, NOT_ENOUGH_REPLICAS_AFTER_APPEND),
                    other => prop_assert!(false, "unexpected effect {:?}", other),
                }
            }
            if let IsrState::PendingShrink { isr, removing, .. } = &l.isr {
                prop_assert!(!removing.contains(&ME) && isr.len() > removing.len());
            }
        }
    }
}

// ---- randomised: divergence against a brute-force comparison ----

/// A replica's log as the epoch of each offset, with its epoch cache kept
/// as the real log keeps it.
#[derive(Debug, Clone, Default)]
struct Replica {
    log: Vec<i32>,
    cache: LeaderEpochCache,
}

impl Replica {
    fn end(&self) -> i64 {
        self.log.len() as i64
    }
    fn append(&mut self, epoch: i32) {
        self.cache.assign(epoch, self.end());
        self.log.push(epoch);
    }
    fn truncate(&mut self, to: i64) {
        self.log.truncate(to as usize);
        self.cache.truncate_from_end(to);
    }
}

fn common_prefix(a: &[i32], b: &[i32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Two replicas live through random (possibly unclean) leader changes,
    /// each epoch led by one of them, which writes some batches while the
    /// other copies some of its log. Finally `a` leads; `b` follows it with
    /// the leader's verdicts and [`follower_truncation`]: it must end up
    /// truncated exactly to the first offset where the two histories differ.
    #[test]
    fn divergence_truncates_to_the_first_differing_offset(
        terms in proptest::collection::vec((any::<bool>(), 0usize..6, prop_oneof![Just(0usize), 0usize..8]), 1..16),
    ) {
        let mut a = Replica::default();
        let mut b = Replica::default();
        let mut epoch = 0;
        let last = terms.len() - 1;
        for (i, &(a_leads, writes, copied)) in terms.iter().enumerate() {
            epoch += 1;
            let a_leads = a_leads || i == last;
            let (leader, other) = if a_leads { (&mut a, &mut b) } else { (&mut b, &mut a) };
            leader.cache.assign(epoch, leader.end());
            for _ in 0..writes {
                leader.append(epoch);
            }
            if i < last && copied > 0 {
                // The other replica follows for a while (brute force); with
                // `copied == 0` it never reached this leader.
                let lcp = common_prefix(&leader.log, &other.log);
                other.truncate(lcp as i64);
                let upto = (lcp + copied).min(leader.log.len());
                for o in lcp..upto {
                    other.append(leader.log[o]);
                }
            }
        }
        let expected = common_prefix(&a.log, &b.log) as i64;
        let mut s = ReplicaState::new(ME, config(1));
        s.handle(meta(pstate(&[1, 2], &[1], ME, epoch, 1), pos(a.end(), a.end(), 0), 0), &empty());
        let mut served = false;
        for _ in 0..(2 * terms.len() + 4) {
            let f = FollowerFetch {
                replica: 2,
                broker_epoch: 1,
                fetch_offset: b.end(),
                last_fetched_epoch: b.cache.latest_epoch().unwrap_or(-1),
                current_epoch: epoch,
                leader_log_end: a.end(),
                now_ms: 0,
            };
            match s.verdict(&f, &a.cache, 0, a.end()) {
                FetchVerdict::Serve { from, .. } => {
                    prop_assert_eq!(from, b.end());
                    served = true;
                    break;
                }
                FetchVerdict::Diverging { epoch: e, end_offset } => {
                    // (A truncation to the log end itself still progresses: it
                    // drops an epoch the follower led without writing.)
                    let t = follower_truncation(&b.cache, b.end(), e, end_offset);
                    prop_assert!(t.offset <= b.end());
                    b.truncate(t.offset);
                    // Once complete, the next fetch must be served.
                    prop_assert!(b.end() >= expected, "truncated to {} below the divergence point {}", b.end(), expected);
                }
                FetchVerdict::Error(code) => prop_assert!(false, "error {}", code),
            }
        }
        prop_assert!(served, "never converged");
        prop_assert_eq!(b.end(), expected, "a: {:?} b: {:?}", a.log, b.log);
        prop_assert_eq!(&b.log[..], &a.log[..b.log.len()]);
    }
}

/// Follow `leader` from `follower` until served; the number of rounds.
fn follow(leader: &Replica, follower: &mut Replica, epoch: i32) -> Option<usize> {
    let mut s = ReplicaState::new(ME, config(1));
    s.handle(
        meta(
            pstate(&[1, 2], &[1], ME, epoch, 1),
            pos(leader.end(), leader.end(), 0),
            0,
        ),
        &empty(),
    );
    for round in 0..32 {
        let f = FollowerFetch {
            replica: 2,
            broker_epoch: 1,
            fetch_offset: follower.end(),
            last_fetched_epoch: follower.cache.latest_epoch().unwrap_or(-1),
            current_epoch: epoch,
            leader_log_end: leader.end(),
            now_ms: 0,
        };
        match s.verdict(&f, &leader.cache, 0, leader.end()) {
            FetchVerdict::Serve { .. } => return Some(round),
            FetchVerdict::Diverging { epoch: e, end_offset } => {
                let t = follower_truncation(&follower.cache, follower.end(), e, end_offset);
                follower.truncate(t.offset);
            }
            FetchVerdict::Error(_) => return None,
        }
    }
    None
}

fn replica_with(epochs: &[i32], leading: Option<i32>) -> Replica {
    let mut r = Replica::default();
    for &e in epochs {
        r.append(e);
    }
    if let Some(e) = leading {
        r.cache.assign(e, r.end());
    }
    r
}

#[test]
fn divergence_walks_back_through_unknown_epochs() {
    // Unclean history: b led 2 and 4, a led 3 and leads 5.
    let a = replica_with(&[1, 3, 3, 5], Some(5));
    let mut b = replica_with(&[1, 2, 4, 4], None);
    assert_eq!(
        follow(&a, &mut b, 5),
        Some(2),
        "4 → end of 3 (not known to b: end of 2), then 1"
    );
    assert_eq!(b.log, vec![1]);
    // Same epoch, the leader wrote less of it.
    let a = replica_with(&[1, 1, 2, 2], Some(3));
    let mut b = replica_with(&[1, 1, 2, 2, 2, 2], None);
    assert_eq!(follow(&a, &mut b, 3), Some(1));
    assert_eq!(b.log, vec![1, 1, 2, 2]);
    // A follower behind on the same history is served at once.
    let mut b = replica_with(&[1, 1], None);
    assert_eq!(follow(&a, &mut b, 3), Some(0));
    // An empty follower too.
    let mut b = Replica::default();
    assert_eq!(follow(&a, &mut b, 3), Some(0));
}
