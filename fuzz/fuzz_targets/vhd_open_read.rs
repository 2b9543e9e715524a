//! Fuzz target: vhd::fuzzing::open_read over arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhd::fuzzing::open_read(data));
