//! Arbitrary bytes into the DHCP message decoder, the encoder and every decision.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pxe::fuzz::message(data));
