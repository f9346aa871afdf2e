//! Controller-quorum input: raft message batches between voters, and
//! metadata records replayed into the metadata image.
#![no_main]

libfuzzer_sys::fuzz_target!(init: ringlog_fuzz::init(), |data: &[u8]| {
    ringlog::fuzzing::controller_messages(data);
});
