//! READs the export locates in files go out with sendfile: the bytes must be exactly
//! those `read` gives, in simple and structured replies, across file runs, zero runs
//! and bytes from memory, with many requests in flight, whether the file is in the
//! page cache or not; an export that locates the wrong length falls back to `read`;
//! and nbdcopy copies such an export intact.

mod common;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::process::Command;
use std::sync::Arc;

use common::TestServer;
use common::located::{FileExport, HOLE, MEMORY, SIZE, byte, model};
use nbd_proto::client::handshake::ClientConfig;
use nbd_proto::driver::client::Client;

fn reads(server: &TestServer, structured: bool) {
    let model = model();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let config = ClientConfig {
            export: "disk".into(),
            structured,
            base_allocation: false,
        };
        let client = Client::connect(server.addr, config).await.unwrap();
        // Across every boundary, small and large, 32 in flight at a time.
        let ranges: Vec<(u64, u32)> = (0..96u64)
            .map(|i| {
                let offset = (i * 47_111) % (SIZE - (1 << 20));
                let len = [4096u32, 16 << 10, 100_000, 1 << 20][i as usize % 4];
                (offset, len)
            })
            .chain([
                (0, SIZE as u32),
                (HOLE.start - 5, 300_000),
                (MEMORY.end - 1, 20_000),
            ])
            .collect();
        for batch in ranges.chunks(32) {
            let tasks: Vec<_> = batch
                .iter()
                .map(|&(offset, len)| {
                    let client = client.clone();
                    tokio::spawn(async move { (offset, client.read(offset, len).await.unwrap()) })
                })
                .collect();
            for t in tasks {
                let (offset, data) = t.await.unwrap();
                let want = &model[offset as usize..offset as usize + data.len()];
                assert!(
                    data == want,
                    "read at {offset} ({} bytes) differs",
                    data.len()
                );
            }
        }
    });
}

fn serve(export: FileExport) -> TestServer {
    TestServer::export("disk", Arc::new(export))
}

#[test]
fn located_reads_match_the_model_in_simple_and_structured_replies() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(FileExport::new(dir.path(), false));
    reads(&server, false);
    reads(&server, true);
}

#[test]
fn runs_out_of_the_page_cache_are_read_from_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let export = FileExport::new(dir.path(), false);
    export.file.sync_all().unwrap();
    // GNU dd's documented way to drop a whole file from the page cache.
    let path = dir.path().join("disk");
    testkit::run(
        Command::new("dd")
            .arg(format!("if={}", path.display()))
            .args(["iflag=nocache", "count=0"]),
    );
    let server = serve(export);
    reads(&server, true);
}

#[test]
fn a_plan_of_the_wrong_length_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(FileExport::new(dir.path(), true));
    reads(&server, false);
    reads(&server, true);
}

#[test]
fn nbdcopy_copies_a_located_export_intact() {
    let Some(nbdcopy) = testkit::find_program("nbdcopy") else {
        panic!("nbdcopy is not installed (Debian package libnbd-bin)");
    };
    let dir = tempfile::tempdir().unwrap();
    let server = serve(FileExport::new(dir.path(), false));
    let out = dir.path().join("copy");
    testkit::run(
        Command::new(nbdcopy)
            .arg("--connections=4")
            .arg(server.uri("disk"))
            .arg(&out),
    );
    let copy = std::fs::read(&out).unwrap();
    assert!(copy == model(), "nbdcopy's copy differs from the export");
    // The file itself was only read.
    let mut first = [0u8; 4];
    File::open(dir.path().join("disk"))
        .unwrap()
        .read_exact_at(&mut first, HOLE.start)
        .unwrap();
    assert_eq!(
        first.to_vec(),
        (HOLE.start..HOLE.start + 4).map(byte).collect::<Vec<_>>()
    );
}
