//! Replays the seed corpus of the fuzz targets `iscsi_pdu` and `iscsi_session` (in
//! `fuzz/corpus/`) through the functions the targets call, so stable CI runs them.

#[test]
fn iscsi_pdu_corpus() {
    for (path, data) in testkit::fuzz_corpus("iscsi_pdu") {
        eprintln!("{}", path.display());
        iscsi::fuzz::pdu(&data);
    }
}

#[test]
fn iscsi_session_corpus() {
    for (path, data) in testkit::fuzz_corpus("iscsi_session") {
        eprintln!("{}", path.display());
        iscsi::fuzz::session(&data);
        // Prefixes and single-byte changes of each seed, too.
        for cut in (2..data.len()).step_by(37) {
            iscsi::fuzz::session(&data[..cut]);
        }
        for at in (2..data.len()).step_by(11) {
            let mut d = data.clone();
            d[at] ^= 0xa5;
            iscsi::fuzz::session(&d);
            iscsi::fuzz::pdu(&d[1..]);
        }
    }
}
