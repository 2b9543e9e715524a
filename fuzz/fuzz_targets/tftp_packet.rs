//! Arbitrary bytes into the TFTP packet decoder (and back through the encoder).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tftp::fuzz::packet(data));
