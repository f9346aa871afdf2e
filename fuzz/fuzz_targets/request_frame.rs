//! Bytes a client sends: framing, header checks, body decode of every
//! supported API/version, and produce-path validation of Produce record sets.
#![no_main]

libfuzzer_sys::fuzz_target!(init: ringlog_fuzz::init(), |data: &[u8]| {
    ringlog::fuzzing::request_frame(data);
});
