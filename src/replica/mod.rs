//! The replica state machine of one partition replica (design §8): plain
//! Rust without IO or clock. Time, metadata and log positions are inputs
//! ([`Event`]); decisions are outputs ([`Effect`], [`FetchVerdict`]) that
//! the shells (fetch handler, flusher hook, metadata apply, ISR timer,
//! AlterPartition sender, fetcher, lease) execute.
//!
//! What lives here, with the design section each rule comes from:
//!
//! - leadership and followership from metadata, stale metadata ignored
//!   (§5.3, §8); a new leader assigns its epoch at its log end (§7.2);
//! - the leader's checks of a follower's Fetch: leader epoch fencing,
//!   divergence from `last_fetched_epoch`, offset range (§7.3, KIP-320);
//! - follower progress, Kafka's `last_caught_up_ms` (§7.4);
//! - the high watermark: min of the durable offsets of the maximal ISR and
//!   the leader's own durable offset, monotone within an epoch, frozen
//!   while the ISR is below `min.insync.replicas` (§6 rule 4, §7.4, §7.5)
//!   or the lease is lost (§5.6);
//! - ISR shrink and expand as KIP-497 AlterPartition proposals, one in
//!   flight, the maximal ISR counted meanwhile (§7.4);
//! - acks=all admission and completion (§7.6);
//! - storage failure of a leader (§7.5).

mod isr;
mod state;

#[cfg(test)]
mod tests;

pub use isr::IsrState;
pub use state::{FollowerState, LeaderState, Progress, ReplicaState, Role};

/// Settings of the partition that the decisions depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// `min.insync.replicas` (topic or broker): the HW does not move while
    /// the maximal ISR is smaller (§6 rule 4); acks=all is refused while
    /// the ISR is smaller (§7.6).
    pub min_insync_replicas: usize,
    /// `replica.lag.time.max.ms`: a follower not caught up for longer
    /// leaves the ISR (§7.4).
    pub replica_lag_time_max_ms: i64,
    /// The partition belongs to `__consumer_offsets`: leadership changes
    /// also load or unload its groups (§9).
    pub coordinator: bool,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        Self {
            min_insync_replicas: 1,
            replica_lag_time_max_ms: 30_000,
            coordinator: false,
        }
    }
}

/// The partition as the metadata log describes it (§5.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionState {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// The leader's broker id, −1 for none.
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// Replicas being added / removed by a reassignment.
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

/// The local log's positions, as the shell reads them from `PartitionLog`
/// when it hands a metadata change to the state machine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogPositions {
    /// Next offset to be appended.
    pub log_end: i64,
    /// Offset below which the log is durable (§7.5).
    pub durable: i64,
    /// The high watermark the log has now (from the checkpoint after a
    /// restart, or what this replica last knew as follower).
    pub hw: i64,
}

/// A follower's (or consumer's) Fetch for this partition, as the leader's
/// shell decoded it (Fetch v12+; §7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerFetch {
    /// The fetching broker (`replica_state.replica_id`); −1 for a consumer.
    pub replica: i32,
    /// `replica_state.replica_epoch`: its broker epoch (KIP-903); −1 unknown.
    pub broker_epoch: i64,
    /// Its log end: the offset it wants next, durable on it (§7.5).
    pub fetch_offset: i64,
    /// The epoch of its last batch; −1 none (empty log).
    pub last_fetched_epoch: i32,
    /// The leader epoch it believes current; −1 means "do not check".
    pub current_epoch: i32,
    /// The leader's log end when the fetch arrived (before reading), for
    /// Kafka's caught-up rule.
    pub leader_log_end: i64,
    pub now_ms: i64,
}

/// An answer of the controller to an AlterPartition: the partition as it
/// now is (AlterPartition response, KIP-497).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrUpdate {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

/// What happens to a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A metadata change for the partition (or the state at start-up).
    /// `me` is this broker's id, `source_shard` the leader's shard that
    /// serves this shard's fetches (§5.9), `log` the local log now.
    Metadata {
        me: i32,
        state: PartitionState,
        source_shard: u32,
        log: LogPositions,
        now_ms: i64,
    },
    /// The partition was deleted.
    Deleted,
    /// The group-commit flusher made the log durable up to `offset`
    /// (`complete_flush`); `log_end` is the log end now (§7.5).
    LocalDurable {
        offset: i64,
        log_end: i64,
    },
    /// A follower's fetch that [`ReplicaState::verdict`] answered `Serve`:
    /// record its progress (§7.4).
    FollowerFetch(FollowerFetch),
    /// The answer to the last [`Effect::SendAlterPartition`]: the new
    /// state, or the controller's error code.
    AlterPartitionDone(Result<IsrUpdate, i16>),
    /// A fetch response from the leader carried its high watermark.
    LeaderResponse {
        hw: i64,
    },
    /// The ISR timer (every `replica.lag.time.max.ms / 2`); `log_end` is
    /// the leader's log end now.
    Tick {
        now_ms: i64,
        log_end: i64,
    },
    /// The broker's heartbeat lease ran out / was renewed (§5.6).
    LeaseLost,
    LeaseRegained,
    /// The partition's storage failed (disk full, EIO) (§7.5).
    StorageFailed,
}

/// What the shells must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Assign `epoch` at `start_offset` in the epoch cache (and write the
    /// checkpoint), stamp new batches with `epoch`, stop fetching.
    BecomeLeader {
        epoch: i32,
        start_offset: i64,
    },
    /// Fetch from `leader` (−1: no leader, fetch from nobody) on its
    /// `source_shard`, with `current_leader_epoch = epoch`.
    BecomeFollower {
        leader: i32,
        source_shard: u32,
        epoch: i32,
    },
    /// The replica is no longer hosted here (deleted, or moved away).
    Stop,
    /// Move the log's high watermark (it only grows within an epoch).
    SetHighWatermark(i64),
    /// Fail every produce waiter with this code (leadership lost, storage).
    FailWaiters(i16),
    /// Fail the acks=all produce waiters with this code (the ISR fell below
    /// `min.insync.replicas`: NOT_ENOUGH_REPLICAS_AFTER_APPEND, §7.6).
    FailAcksAllWaiters(i16),
    /// Send AlterPartition to the controller (through shard 0): the new ISR
    /// with the broker epoch of every member (−1 when not known here: the
    /// leader itself, which shard 0 fills in, and members that have not
    /// fetched in this epoch), proposed on top of `partition_epoch`.
    SendAlterPartition {
        leader_epoch: i32,
        isr: Vec<(i32, i64)>,
        partition_epoch: i32,
    },
    /// Tell the controller the replica is offline (ReplicaOffline, §7.5).
    ReportOffline,
    /// `__consumer_offsets` only: become / stop being the coordinator of
    /// the partition's groups.
    LoadGroups,
    UnloadGroups,
}

/// The leader's answer to a fetch (§7.3), before any data is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchVerdict {
    /// Read from `from`, up to the log end (followers) or the HW
    /// (consumers, `upto_log_end = false`); `hw` goes in the response.
    Serve { from: i64, upto_log_end: bool, hw: i64 },
    /// No records: the follower's log diverges; it truncates with
    /// [`crate::log::epoch::follower_truncation`] and fetches again.
    Diverging { epoch: i32, end_offset: i64 },
    /// A partition-level error code.
    Error(i16),
}
