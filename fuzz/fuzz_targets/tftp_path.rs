//! Arbitrary file names from arbitrary clients to provisiond's TFTP provider (device
//! files over a folder, `provision_core::fuzzing::TftpPaths`), built once: no panic,
//! and nothing but the root's file, a script or a personality ever comes back (never
//! the file beside the root, not through `..`, absolute paths or a symlink).
#![no_main]

use std::sync::OnceLock;

use provision_core::fuzzing::TftpPaths;

static PATHS: OnceLock<(tempfile::TempDir, TftpPaths)> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (_, paths) = PATHS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let paths = TftpPaths::new(dir.path()).expect("the store and the TFTP folder");
        (dir, paths)
    });
    paths.open(data);
});
