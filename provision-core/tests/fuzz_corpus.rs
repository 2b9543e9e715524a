//! Replays the seed corpora of the fuzz targets `export_name`, `tftp_path` and
//! `boot_partitions` (in `fuzz/corpus/`) through the functions the targets call, so stable CI runs them.

use testkit::replay_corpus as replay;

#[test]
fn export_name_corpus() {
    replay("export_name", |data| {
        if let Ok(name) = std::str::from_utf8(data) {
            provision_core::adapters::nbd::check_export_name(name);
        }
    });
}

#[test]
fn tftp_path_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let paths = provision_core::fuzzing::TftpPaths::new(dir.path()).unwrap();
    replay("tftp_path", |data| paths.open(data));
}

#[test]
fn boot_partitions_corpus() {
    replay("boot_partitions", |data| {
        provision_core::boot_files::partitions::check_partition_table(data);
    });
}
