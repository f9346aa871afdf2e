//! `__consumer_offsets` records as stored on disk: decode, re-encode, and
//! replay into a group coordinator.
#![no_main]

libfuzzer_sys::fuzz_target!(init: ringlog_fuzz::init(), |data: &[u8]| {
    ringlog::fuzzing::group_records(data);
});
