//! Arbitrary text into provisiond's configuration parser (`Config::parse`, which
//! `Config::load` reads files through) and every check the services make on what it
//! accepts: none panics, and a parsed configuration passes the checks `parse` made.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| provision_server::fuzzing::config(data));
