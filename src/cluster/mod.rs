//! The cluster: a node's settings and identity, and (as issue 10 lands,
//! docs/design/replication.md) the controller quorum and the brokers'
//! lifecycle.

pub mod identity;
pub mod settings;

pub use settings::{ClusterSettings, Voter};
