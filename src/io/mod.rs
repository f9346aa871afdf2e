//! The IO layer: the only module that names the runtime.
//!
//! Everything above this layer (network, routing, shards, logs) reaches
//! files, directories, sockets, the shard mesh, timers and tasks through
//! this module. It has two backends:
//!
//! - **glommio** (production): pinned executors, io_uring files (O_DIRECT or
//!   buffered), sockets and channels; blocking filesystem calls (rename,
//!   remove, mkdir, directory fsync, stat) run on the executor's blocking
//!   pool, never on the shard thread. Every glommio future that may stay
//!   pending for long goes through a [`guard::WakeFilter`], so re-polls of
//!   its task cannot pile up waker clones inside glommio.
//! - **simulation** ([`sim`]): when a simulated world runs on the current
//!   thread, the same calls go to its seeded executor, virtual clock,
//!   in-memory disk (with a power-loss model and injected faults), network
//!   and mesh, so the production shard code runs deterministically in tests.
//!
//! The choice is made per call from a thread-local flag, so the code above
//! is the same in both.

pub mod executor;
pub mod file;
pub mod fs;
pub mod guard;
pub mod mesh;
pub mod net;
pub mod notify;
pub mod rand;
pub mod signal;
pub mod sim;
pub mod sync;
pub mod time;

pub use executor::{spawn, yield_if_needed, Task};

/// An OS error code with context, kept inside an `io::Error` so that callers
/// can tell ENOSPC from EIO after the message was enriched.
#[derive(Debug)]
pub struct OsError {
    pub code: i32,
    pub context: String,
}

impl std::fmt::Display for OsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = std::io::Error::from_raw_os_error(self.code);
        write!(f, "{}: {e}", self.context)
    }
}

impl std::error::Error for OsError {}

/// An `io::Error` for OS error `code` with some context (path, operation).
pub fn os_error(code: i32, context: impl Into<String>) -> std::io::Error {
    let kind = std::io::Error::from_raw_os_error(code).kind();
    std::io::Error::new(
        kind,
        OsError {
            code,
            context: context.into(),
        },
    )
}

/// The OS error code behind an `io::Error`, if it has one.
pub fn errno(e: &std::io::Error) -> Option<i32> {
    e.raw_os_error()
        .or_else(|| e.get_ref()?.downcast_ref::<OsError>().map(|o| o.code))
}

/// The disk is full (ENOSPC, or EDQUOT for a quota).
pub fn is_no_space(e: &std::io::Error) -> bool {
    matches!(errno(e), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}
