//! Shared set-up of the fuzz targets. The targets themselves are one call
//! each into `ringlog::fuzzing`, which `tests/fuzz_corpus.rs` also runs over
//! the committed corpus on stable.

use std::collections::HashSet;
use std::sync::Mutex;

/// The broker's own allocator, so that huge reservations behave as in
/// production (lazily mapped, see `ringlog::alloc`).
#[global_allocator]
static ALLOC: ringlog::alloc::BrokerAlloc = ringlog::alloc::BrokerAlloc;

/// libfuzzer-sys aborts on every panic, even one the broker catches: the
/// `kafka-protocol` decoders run under `catch_unwind` in
/// `ringlog::protocol::decode_body`, and a panic there only closes the
/// client's connection. Replace that hook so that caught panics behave as
/// in production; a panic nobody catches still reaches libfuzzer-sys's
/// `catch_unwind` around the target and aborts (a crash). Each panic
/// location is reported once on stderr, so guarded panics in dependencies
/// stay visible. `RINGLOG_FUZZ_STRICT_PANICS=1` keeps libfuzzer-sys's
/// abort-on-any-panic hook (to hunt for the guarded ones).
pub fn init() {
    if std::env::var_os("RINGLOG_FUZZ_STRICT_PANICS").is_some_and(|v| v != "0") {
        return;
    }
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let first = match SEEN.lock() {
            Ok(mut seen) => seen.get_or_insert_with(HashSet::new).insert(at.clone()),
            Err(_) => true,
        };
        if first {
            eprintln!("panic at {at} (first at this location; fatal unless caught): {info}");
        }
    }));
}
