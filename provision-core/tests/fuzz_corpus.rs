//! Replays the seed corpus of the fuzz target `export_name` (in `fuzz/corpus/`) through
//! the function the target calls, so stable CI runs it.

#[test]
fn export_name_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/export_name");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if let Ok(name) = std::str::from_utf8(&data) {
            provision_core::adapters::nbd::check_export_name(name);
        }
        seen += 1;
    }
    assert!(seen > 0, "empty corpus {}", dir.display());
}
