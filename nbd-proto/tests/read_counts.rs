//! Every READ reaches the export once: whichever route the session chooses (sent with
//! `sendfile`, gathered from located runs on the connection's task or on a blocking
//! thread, or executed with `Export::read`), in simple and structured replies, small
//! and large, with the file in the page cache or not, the export counts one read of the
//! request's length, as provisiond's per-device statistics do (a `locate` that names
//! the bytes counts as the read, since the server then sends them without reading).

mod common;

use std::process::Command;
use std::sync::Arc;

use common::TestServer;
use common::located::{FileExport, HOLE, MEMORY, SIZE, model};
use nbd_proto::SingleExport;
use nbd_proto::client::handshake::ClientConfig;
use nbd_proto::driver::client::Client;
use nbd_proto::driver::server::ServerConfig;

/// The export locates nothing in its last MiB (`read` serves it).
const UNLOCATED: u64 = 3 << 20;

/// Small and large READs of every kind of run, one at a time so each one's counts
/// can be told apart.
const READS: &[(u64, u32)] = &[
    (0, 4096),                            // small, file
    (HOLE.start + 4096, 4096),            // small, zeros
    (MEMORY.start, 4096),                 // small, memory
    (HOLE.start - 512, 8192),             // small, file then zeros
    (UNLOCATED + 4096, 4096),             // small, not located
    (8192, 16 << 10),                     // the smallest zero-copy READ
    (4096, 64 << 10),                     // the largest small READ
    (100_000, 256 << 10),                 // large, file
    (HOLE.start - 4096, 400 << 10),       // large, file, zeros, memory, file
    (UNLOCATED - 100_000, 256 << 10),     // large, partly unlocatable
    (UNLOCATED + 8192, (1 << 20) - 8192), // large, not located, to the end
];

/// Drops the export's file from the page cache (GNU dd's documented way).
fn evict(path: &std::path::Path) {
    testkit::run(
        Command::new("dd")
            .arg(format!("if={}", path.display()))
            .args(["iflag=nocache", "count=0"]),
    );
}

fn check_counts(config: ServerConfig, structured: bool, cold: bool) {
    let dir = tempfile::tempdir().unwrap();
    let export = FileExport::new(dir.path(), false).located_below(UNLOCATED);
    export.file.sync_all().unwrap();
    let (path, model) = (export.path.clone(), model());
    let export = Arc::new(export);
    let server = TestServer::start(Arc::new(SingleExport::new("disk", export.clone())), config);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = Client::connect(
            server.addr,
            ClientConfig {
                export: "disk".into(),
                structured,
                base_allocation: false,
            },
        )
        .await
        .unwrap();
        for &(offset, len) in READS {
            if cold {
                evict(&path);
            } else {
                let _ = std::fs::read(&path).unwrap();
            }
            let before = export.counts();
            let data = client.read(offset, len).await.unwrap();
            let after = export.counts();
            let what = format!(
                "READ of {len} at {offset} (structured {structured}, cold {cold}, \
                 zero_copy {}, inline_max_len {})",
                config.zero_copy, config.inline_max_len
            );
            assert!(
                data == model[offset as usize..offset as usize + len as usize],
                "{what}: wrong bytes"
            );
            assert_eq!(
                (after.0 - before.0, after.1 - before.1),
                (1, u64::from(len)),
                "{what}: reads and bytes counted"
            );
            assert!(after.2 - before.2 <= 1, "{what}: located more than once");
        }
        // A READ the session refuses reaches the export not at all.
        let before = export.counts();
        assert!(client.read(SIZE - 4096, 8192).await.is_err());
        assert_eq!(export.counts(), before, "a refused READ was counted");
    });
}

fn configs() -> [ServerConfig; 3] {
    let default = ServerConfig::default();
    [
        default,
        ServerConfig {
            zero_copy: false,
            ..default
        },
        ServerConfig {
            inline_max_len: 0,
            ..default
        },
    ]
}

#[test]
fn every_warm_read_is_counted_once_with_its_length() {
    for config in configs() {
        for structured in [false, true] {
            check_counts(config, structured, false);
        }
    }
}

#[test]
fn every_cold_read_is_counted_once_with_its_length() {
    for config in configs() {
        for structured in [false, true] {
            check_counts(config, structured, true);
        }
    }
}
