//! Invariants asserted in the code itself.
//!
//! `invariant!(cond, "what should hold: {details}")` checks a property of
//! the broker's own state (offsets contiguous, high watermark <= log end,
//! segments ordered, replies matching requests). A violation is a bug, never
//! a client's or the disk's fault: in debug builds, tests and simulations it
//! panics so the failure is loud and the seed or test that found it points at
//! it; in a release broker it logs `invariant violated: …` at error level and
//! counts it (`ringlog_invariant_violations_total`), so the end-to-end tests,
//! which scan the broker log for that marker, fail too, while production
//! keeps serving the other partitions.

/// The marker the end-to-end tests look for in broker logs.
pub const MARKER: &str = "invariant violated";

/// Check an invariant; see the module documentation.
#[macro_export]
macro_rules! invariant {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            $crate::invariant::violated(format_args!($($arg)+));
        }
    };
}

/// Report a violated invariant (called by [`invariant!`]).
#[cold]
#[inline(never)]
pub fn violated(what: std::fmt::Arguments<'_>) {
    crate::metrics::with(|m| m.invariant_violations += 1);
    tracing::error!("{MARKER}: {what}");
    if cfg!(debug_assertions) || crate::io::sim::active() {
        panic!("{MARKER}: {what}");
    }
}
