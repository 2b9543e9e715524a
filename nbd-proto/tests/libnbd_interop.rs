//! nbdinfo and nbdcopy against the in-process server.

mod common;

use std::process::Command;
use std::sync::Arc;

use common::TestServer;
use nbd_proto::MemoryExport;

#[test]
fn nbdinfo_size_flags_list_and_map() {
    let nbdinfo = testkit::require_peer!("nbdinfo");
    let (server, _) = TestServer::memory("disk", 1 << 20);
    let uri = server.uri("disk");
    let json = testkit::run(Command::new(&nbdinfo).args(["--json", &uri]));
    assert!(json.contains("\"export-size\": 1048576"), "{json}");
    assert!(json.contains("\"protocol\": \"newstyle-fixed\""), "{json}");
    assert!(json.contains("\"structured\": true"), "{json}");
    for (feature, expected) in [
        ("flush", true),
        ("fua", true),
        ("trim", true),
        ("zero", true),
        ("cache", true),
        ("multi-conn", true),
        ("fast-zero", true),
        ("df", true),
    ] {
        let field = format!("\"can_{}\": {expected}", feature.replace('-', "_"));
        assert!(json.contains(&field), "missing {field} in {json}");
    }
    assert!(json.contains("\"is_read_only\": false"), "{json}");
    assert!(json.contains("\"block_size_preferred\": 4096"), "{json}");

    let list = testkit::run(Command::new(&nbdinfo).args(["--list", "--json", &server.uri("")]));
    assert!(list.contains("\"export-name\": \"disk\""), "{list}");

    let map = testkit::run(Command::new(&nbdinfo).args(["--map", &uri]));
    let lines: Vec<&str> = map.lines().collect();
    assert_eq!(lines.len(), 2, "{map}");
    assert!(
        lines[0].split_whitespace().collect::<Vec<_>>() == ["0", "524288", "0", "data"],
        "{map}"
    );
    assert!(
        lines[1].split_whitespace().take(3).collect::<Vec<_>>() == ["524288", "524288", "3"],
        "{map}"
    );
}

#[test]
fn nbdcopy_both_directions_with_four_connections() {
    let nbdcopy = testkit::require_peer!("nbdcopy");
    let (server, data) = TestServer::memory("disk", 16 << 20);
    let uri = server.uri("disk");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.raw");
    testkit::run(
        Command::new(&nbdcopy)
            .args(["--connections", "4", &uri])
            .arg(&out),
    );
    assert_eq!(std::fs::read(&out).unwrap(), data);

    // Upload different data into an empty export over four connections.
    let target = Arc::new(MemoryExport::new(vec![0xee; 16 << 20]));
    let upload = TestServer::export("up", target.clone());
    let src = dir.path().join("src.raw");
    let new: Vec<u8> = data.iter().rev().copied().collect();
    std::fs::write(&src, &new).unwrap();
    testkit::run(
        Command::new(&nbdcopy)
            .args(["--connections", "4", "--flush"])
            .arg(&src)
            .arg(upload.uri("up")),
    );
    let mut back = vec![0; new.len()];
    nbd_proto::Export::read(&*target, &mut back, 0).unwrap();
    assert!(back == new, "uploaded data differs");
}
