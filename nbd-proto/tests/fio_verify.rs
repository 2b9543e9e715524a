//! fio's nbd engine: random reads and writes with 16 in flight, every block verified.

mod common;

use std::process::Command;

use common::TestServer;

#[test]
fn fio_randrw_with_verify() {
    let fio = testkit::require_peer!("fio");
    let help = testkit::run(Command::new(&fio).arg("--enghelp"));
    if !help.lines().any(|l| l.trim() == "nbd") {
        // The peer rule (testkit): under CI a missing capability fails like a missing peer.
        assert!(
            !testkit::in_ci(),
            "fio at {} has no nbd ioengine under CI=true (`fio --enghelp` lists: {}); \
             .ci/run must install a fio built with libnbd (Debian's `fio` package)",
            fio.display(),
            help.split_whitespace()
                .skip(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
        eprintln!("SKIPPED: this fio has no nbd ioengine; set CI=true to make this a failure");
        return;
    }
    let (server, _) = TestServer::memory("disk", 16 << 20);
    let out = testkit::run(Command::new(&fio).args([
        "--name=verify",
        "--ioengine=nbd",
        &format!("--uri={}", server.uri("disk")),
        "--rw=randrw",
        "--bs=4k",
        "--size=16M",
        "--iodepth=16",
        "--io_size=8M",
        "--verify=crc32c",
        "--do_verify=1",
        "--output-format=terse",
        "--terse-version=3",
    ]));
    // Terse v3: field 5 is the error code; reads and writes both happened.
    let line = out
        .lines()
        .find(|l| l.starts_with("3;"))
        .unwrap_or_else(|| panic!("{out}"));
    let fields: Vec<&str> = line.split(';').collect();
    assert_eq!(fields[4], "0", "fio reported an error: {line}");
    let read_kib: u64 = fields[5].parse().unwrap();
    let write_kib: u64 = fields[46].parse().unwrap();
    assert!(read_kib > 0 && write_kib > 0, "{line}");
}
