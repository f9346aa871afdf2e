//! A produce payload (first byte: topic configuration) through validation,
//! the append rewrite, and the segment readers (iteration, decompression,
//! record decoding).
#![no_main]

libfuzzer_sys::fuzz_target!(init: ringlog_fuzz::init(), |data: &[u8]| {
    ringlog::fuzzing::record_batch(data);
});
