//! A partition's append-only log: segments (`.log`, sparse `.index` and
//! `.timeindex`), recovery, staging for group commit and reads.

pub mod checkpoint;
pub mod cleaner;
pub mod dirs;
pub mod epoch;
pub mod index;
pub mod partition;
pub mod producer_state;
pub mod retention;
pub mod segment;

pub use partition::{AppendInfo, FlushJob, LogError, PartitionLog, ReadPlan, RetentionOutcome};
