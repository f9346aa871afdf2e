//! Deterministic simulation tests of the whole broker.
//!
//! See `docs/design/simulation.md`.

pub mod broker;
pub mod client;
