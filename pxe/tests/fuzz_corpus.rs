//! Replays the fuzz targets' seed corpora (`fuzz/corpus/pxe_*`) through the functions
//! the targets call, so stable CI exercises them without cargo-fuzz.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        run(&bytes);
        // Truncations and single-byte corruptions of each seed must not panic either.
        for cut in [
            0,
            1,
            239,
            240,
            241,
            bytes.len() / 2,
            bytes.len().saturating_sub(1),
        ] {
            run(&bytes[..cut.min(bytes.len())]);
        }
        for i in (0..bytes.len()).step_by(7) {
            let mut b = bytes.clone();
            b[i] ^= 0xff;
            run(&b);
        }
        count += 1;
    }
    assert!(count > 0, "no seeds in {}", dir.display());
}

#[test]
fn pxe_message_corpus() {
    replay("pxe_message", pxe::fuzz::message);
}

#[test]
fn pxe_options_corpus() {
    replay("pxe_options", pxe::fuzz::options);
}
