//! Fuzz target: vhd::fuzzing::footer over arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhd::fuzzing::footer(data));
