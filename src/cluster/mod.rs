//! The cluster: a node's settings and identity, and (as issue 10 lands,
//! docs/design/replication.md) the controller quorum and the brokers'
//! lifecycle.

pub mod controller_listener;
pub mod identity;
pub mod lifecycle;
pub mod quorum_shell;
pub mod raft_codec;
pub mod raft_log;
pub mod raft_node;
pub mod raft_store;
pub mod rpc;
pub mod settings;
pub mod status;

#[cfg(test)]
mod quorum_sim;

pub use settings::{ClusterSettings, Voter};
