//! ringlog: a Kafka-compatible message broker, thread-per-core on io_uring.
//!
//! Data flows network → protocol → routing → shard → partition log → segment:
//! - [`server`] accepts connections on every shard and frames requests,
//! - [`protocol`] decodes them with the `kafka-protocol` crate,
//! - [`api`] holds one handler per Kafka API,
//! - [`routing`] sends work for partitions owned by other shards over the
//!   cross-core mesh and gathers the replies,
//! - [`shard`] owns the partitions placed on its core,
//! - [`log`] is a partition's segmented log, [`record`] the batch format.
//! - [`replica`] is the IO-free replication state machine of a partition
//!   replica (leader/follower, ISR, high watermark), [`log::epoch`] its
//!   leader-epoch cache.
//!
//! [`io`] is the only module that names the runtime (glommio).

pub mod alloc;
pub mod api;
pub mod bench;
pub mod broker;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod fuzzing;
pub mod group;
#[macro_use]
pub mod invariant;
pub mod io;
pub mod log;
pub mod metadata;
pub mod metrics;
pub mod protocol;
pub mod record;
pub mod replica;
pub mod routing;
pub mod server;
pub mod shard;
pub mod sim;
