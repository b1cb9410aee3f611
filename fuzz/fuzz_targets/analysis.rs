//! Fuzz target: `aepg::fuzzing::analysis`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = aepg::fuzzing::analysis(data);
});
