//! A script of datagrams and clock steps into the TFTP transfer state machines.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tftp::fuzz::transfer(data));
