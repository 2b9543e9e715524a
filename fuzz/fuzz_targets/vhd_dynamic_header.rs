//! Fuzz target: vhd::fuzzing::dynamic_header over arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhd::fuzzing::dynamic_header(data));
