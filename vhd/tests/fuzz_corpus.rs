//! Replays the fuzz targets' seed corpora (`fuzz/corpus/vhd_*`) through the same
//! functions the targets call, plus deterministic mutations of each seed (byte flips,
//! truncations), so stable CI exercises the parsers on damaged input.

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "empty corpus {}", dir.display());
    out
}

/// The seed, then 48 single-byte corruptions and 8 truncations of it.
fn variants(seed: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![seed.to_vec()];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ seed.len() as u64;
    for _ in 0..48 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if seed.is_empty() {
            break;
        }
        let mut v = seed.to_vec();
        // Bias half the flips towards the structures at both ends.
        let len = v.len();
        let pos = match x % 3 {
            0 => (x >> 8) as usize % len.min(2048),
            1 => len - 1 - (x >> 8) as usize % len.min(512),
            _ => (x >> 8) as usize % len,
        };
        v[pos] ^= (x >> 32) as u8 | 1;
        out.push(v);
    }
    for k in 1..=8 {
        out.push(seed[..seed.len() * k / 9].to_vec());
    }
    out
}

fn replay(target: &str, f: fn(&[u8])) {
    for (path, seed) in corpus(target) {
        for (i, v) in variants(&seed).iter().enumerate() {
            let r = std::panic::catch_unwind(|| f(v));
            assert!(
                r.is_ok(),
                "{target}: {} variant {i} panicked",
                path.display()
            );
        }
    }
}

#[test]
fn vhd_footer_corpus() {
    replay("vhd_footer", vhd::fuzzing::footer);
}

#[test]
fn vhd_dynamic_header_corpus() {
    replay("vhd_dynamic_header", vhd::fuzzing::dynamic_header);
}

#[test]
fn vhd_open_read_corpus() {
    replay("vhd_open_read", vhd::fuzzing::open_read);
}
