//! Deterministic simulation of the whole broker (issue 8): the production
//! broker code on a simulated world ([`crate::io::sim`]), driven by seeded
//! workloads and faults and checked against a model of what clients were
//! told. See `docs/design/simulation.md`.

pub mod broker;
pub mod client;
pub mod hostile;
pub mod model;
pub mod workload;

/// Log timestamps in virtual time (the world's clock) during a replay.
struct VirtualTime;

impl tracing_subscriber::fmt::time::FormatTime for VirtualTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        match crate::io::sim::current() {
            Some(world) => {
                let t = world.elapsed();
                write!(w, "{:>7}.{:06}s", t.as_secs(), t.subsec_micros())
            }
            None => write!(w, "-"),
        }
    }
}

/// Broker and simulation logs to stderr (`RUST_LOG`, default info), with
/// virtual timestamps. For replaying one seed.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_timer(VirtualTime)
        .with_writer(std::io::stderr)
        .try_init();
}
