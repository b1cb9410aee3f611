//! Fuzz target: `aepg::fuzzing::record`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    aepg::fuzzing::record(data);
});
