//! Arbitrary `Range` header values against files of arbitrary length, through the
//! parser provisiond's HTTP boot-file service answers with: no panic, and every part
//! it serves lies inside the file and is not empty.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| provision_server::fuzzing::http_range(data));
