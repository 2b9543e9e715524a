//! Arbitrary bytes into the NBD server (and client) handshake.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nbd_proto::fuzz::handshake(data));
