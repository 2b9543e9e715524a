//! Arbitrary NBD export names into provisiond's parser (`<mac>/<vdisk>/<token>`): it
//! answers a reason or the parts, never panics, and the parts rebuild the name.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(name) = std::str::from_utf8(data) {
        provision_core::adapters::nbd::check_export_name(name);
    }
});
