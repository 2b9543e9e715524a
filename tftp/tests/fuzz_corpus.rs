//! Replays the fuzz targets' seed corpora (`fuzz/corpus/tftp_*`) through the same
//! functions the targets call, so stable CI exercises them.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        run(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n >= 4, "{target}: only {n} seeds");
}

#[test]
fn tftp_packet_corpus() {
    replay("tftp_packet", tftp::fuzz::packet);
}

#[test]
fn tftp_transfer_corpus() {
    replay("tftp_transfer", tftp::fuzz::transfer);
}

/// A cheap stand-in for fuzzing on stable: many pseudo-random inputs through both targets.
#[test]
fn pseudo_random_inputs() {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for round in 0..3000 {
        let len = round % 300;
        let mut bytes = Vec::with_capacity(len);
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.push((x >> 24) as u8);
        }
        if round % 3 == 0 && len > 2 {
            bytes[0] = 0;
            bytes[1] %= 8;
        }
        tftp::fuzz::packet(&bytes);
        tftp::fuzz::transfer(&bytes);
    }
}
