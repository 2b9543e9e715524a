//! Arbitrary bytes into the iSCSI PDU codec: every PDU that parses re-emits to itself.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| iscsi::fuzz::pdu(data));
