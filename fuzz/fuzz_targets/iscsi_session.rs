//! Arbitrary initiator bytes into the iSCSI target session: login negotiation (None
//! and CHAP), then full feature phase; it never panics and sends well-formed PDUs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| iscsi::fuzz::session(data));
