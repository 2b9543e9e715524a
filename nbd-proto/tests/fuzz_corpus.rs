//! Replays the seed corpus of the fuzz targets `nbd_handshake` and `nbd_transmission`
//! (in `fuzz/corpus/`) through the functions the targets call, so stable CI runs them.

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", dir.display());
    files
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect()
}

#[test]
fn nbd_handshake_corpus() {
    for (path, data) in corpus("nbd_handshake") {
        eprintln!("{}", path.display());
        nbd_proto::fuzz::handshake(&data);
    }
}

#[test]
fn nbd_transmission_corpus() {
    for (path, data) in corpus("nbd_transmission") {
        eprintln!("{}", path.display());
        nbd_proto::fuzz::transmission(&data);
    }
}

#[test]
fn fuzz_entry_points_survive_random_bytes() {
    // A cheap deterministic stand-in for the fuzzer: xorshift bytes, many lengths.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for len in 0..400 {
        let data: Vec<u8> = (0..len * 3)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        nbd_proto::fuzz::handshake(&data);
        nbd_proto::fuzz::transmission(&data);
    }
}
