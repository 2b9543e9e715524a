//! qemu-img and qemu-io against the in-process server.

mod common;

use std::process::Command;

use common::TestServer;

#[test]
fn qemu_img_info_convert_compare_and_map() {
    let qemu_img = testkit::require_peer!("qemu-img");
    let (server, data) = TestServer::memory("disk", 4 << 20);
    let uri = server.uri("disk");
    let info = testkit::run(Command::new(&qemu_img).args(["info", "--output=json", &uri]));
    assert!(info.contains("\"virtual-size\": 4194304"), "{info}");

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.raw");
    testkit::run(
        Command::new(&qemu_img)
            .args(["convert", "-f", "raw", "-O", "raw", &uri])
            .arg(&out),
    );
    assert_eq!(std::fs::read(&out).unwrap(), data);

    let reference = dir.path().join("ref.raw");
    std::fs::write(&reference, &data).unwrap();
    testkit::run(
        Command::new(&qemu_img)
            .args(["compare", "-f", "raw", "-F", "raw"])
            .arg(&reference)
            .arg(&uri),
    );

    // base:allocation through structured replies: the zero second half is a hole.
    let map =
        testkit::run(Command::new(&qemu_img).args(["map", "--output=json", "-f", "raw", &uri]));
    assert!(
        map.contains("\"start\": 0, \"length\": 2097152") && map.contains("\"data\": true"),
        "{map}"
    );
    assert!(
        map.contains("\"start\": 2097152, \"length\": 2097152") && map.contains("\"zero\": true"),
        "{map}"
    );
}

#[test]
fn qemu_io_odd_offsets_and_many_in_flight() {
    let qemu_io = testkit::require_peer!("qemu-io");
    let (server, _) = TestServer::memory("disk", 8 << 20);
    let uri = server.uri("disk");
    let out = testkit::run(Command::new(&qemu_io).args([
        "-f",
        "raw",
        "-c",
        "write -P 0x5a 12345 70001",
        "-c",
        "read -P 0x5a 12345 70001",
        "-c",
        "write -P 0x11 1 1",
        "-c",
        "read -P 0x11 1 1",
        "-c",
        "write -z 5000000 3333",
        "-c",
        "read -P 0 5000000 3333",
        "-c",
        "flush",
        &uri,
    ]));
    assert!(!out.contains("Pattern verification failed"), "{out}");
    assert_eq!(out.matches("wrote").count(), 3, "{out}");

    // 32 asynchronous writes, then 32 asynchronous reads verifying them.
    let mut cmd = Command::new(&qemu_io);
    cmd.args(["-f", "raw"]);
    for i in 0..32u64 {
        cmd.arg("-c")
            .arg(format!("aio_write -P {} {} 65537", i + 1, i * 200_003));
    }
    cmd.args(["-c", "aio_flush"]);
    for i in 0..32u64 {
        cmd.arg("-c")
            .arg(format!("aio_read -P {} {} 65537", i + 1, i * 200_003));
    }
    cmd.args(["-c", "aio_flush"]).arg(&uri);
    let out = testkit::run(&mut cmd);
    assert!(!out.contains("Pattern verification failed"), "{out}");
    assert_eq!(out.matches("read 65537/65537").count(), 32, "{out}");
}

#[test]
fn qemu_img_convert_uploads_into_the_export() {
    let qemu_img = testkit::require_peer!("qemu-img");
    let target = std::sync::Arc::new(nbd_proto::MemoryExport::new(vec![0xee; 4 << 20]));
    let server = TestServer::export("up", target.clone());
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.raw");
    let data = common::pattern(4 << 20);
    std::fs::write(&src, &data).unwrap();
    testkit::run(
        Command::new(&qemu_img)
            .args(["convert", "-n", "-f", "raw", "-O", "raw"])
            .arg(&src)
            .arg(server.uri("up")),
    );
    let mut back = vec![0; data.len()];
    nbd_proto::Export::read(&*target, &mut back, 0).unwrap();
    assert!(back == data, "uploaded data differs");
}
