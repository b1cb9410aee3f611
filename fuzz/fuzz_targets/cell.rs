//! Fuzz target: `aepg::fuzzing::cell`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    aepg::fuzzing::cell(data);
});
