//! Arbitrary bytes into the typed PXE option parsers (43, 175, 93, 94, 97, 60, 77).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pxe::fuzz::options(data));
