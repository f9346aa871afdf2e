//! The IO layer: the only module that names glommio types.
//!
//! Everything above this layer (network, routing, shards, logs) talks to
//! files, sockets, channels, timers and tasks through these small wrappers,
//! so the runtime can be swapped or patched in one place.

pub mod executor;
pub mod file;
pub mod mesh;
pub mod net;
pub mod notify;
pub mod sync;
pub mod time;

pub use executor::{spawn, yield_if_needed, Task};
