//! One arbitrary request (method, raw or percent-encoded path, token, content type,
//! body) to the admin API's router over a store with a vDisk and a device, built once:
//! no panic, no server error, and a JSON `error` and `kind` for every client error.
#![no_main]

use std::sync::OnceLock;

use provision_server::fuzzing::ApiRequests;

static API: OnceLock<(tempfile::TempDir, ApiRequests)> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (_, api) = API.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let api = ApiRequests::new(dir.path()).expect("the store");
        (dir, api)
    });
    api.request(data);
});
