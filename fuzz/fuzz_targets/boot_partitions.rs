//! Arbitrary disk heads into the partition-table parser that finds a version's kernel
//! (MBR and GPT): it answers a table, `None` or an error that says what was wrong, and
//! never panics; every partition it lists lies within the disk.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    provision_core::boot_files::partitions::check_partition_table(data);
});
