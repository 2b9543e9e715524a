//! Arbitrary bytes into the NBD transmission decoder, the request executor, and the
//! client's reply parser.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nbd_proto::fuzz::transmission(data));
