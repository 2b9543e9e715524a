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
use nbd_proto::client::handshake::ClientConfig;
use nbd_proto::driver::client::Client;
use nbd_proto::{Capabilities, Errno, Export, Extent, Located};

const SIZE: u64 = 4 << 20;
/// The export's layout: file bytes, then a hole, then bytes held in memory, then the
/// file again from another offset.
const HOLE: std::ops::Range<u64> = (1 << 20)..(1 << 20) + (256 << 10);
const MEMORY: std::ops::Range<u64> = HOLE.end..HOLE.end + (64 << 10);

/// The file holds the export's bytes at the same offsets, except in HOLE (zeros) and
/// MEMORY (a different pattern kept in RAM).
struct FileExport {
    file: Arc<File>,
    memory: Vec<u8>,
    /// Locate one byte short, to check the driver does not trust a wrong plan.
    short: bool,
}

fn byte(i: u64) -> u8 {
    (i.wrapping_mul(0x9e37_79b9) >> 11) as u8
}

fn model() -> Vec<u8> {
    let mut m: Vec<u8> = (0..SIZE).map(byte).collect();
    m[HOLE.start as usize..HOLE.end as usize].fill(0);
    for i in MEMORY {
        m[i as usize] = (i % 251) as u8;
    }
    m
}

impl FileExport {
    fn new(dir: &std::path::Path, short: bool) -> Self {
        let path = dir.join("disk");
        let bytes: Vec<u8> = (0..SIZE).map(byte).collect();
        std::fs::write(&path, bytes).unwrap();
        FileExport {
            file: Arc::new(File::open(&path).unwrap()),
            memory: MEMORY.map(|i| (i % 251) as u8).collect(),
            short,
        }
    }
}

impl Export for FileExport {
    fn size(&self) -> u64 {
        SIZE
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::READ_ONLY
    }
    fn read(&self, buf: &mut [u8], offset: u64) -> Result<(), Errno> {
        let m = model();
        buf.copy_from_slice(&m[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }
    fn block_status(&self, offset: u64, len: u64) -> Result<Vec<Extent>, Errno> {
        let end = offset + len;
        let mut out = Vec::new();
        let mut pos = offset;
        for (range, hole) in [
            (0..HOLE.start, false),
            (HOLE, true),
            (HOLE.end..SIZE, false),
        ] {
            let (a, b) = (pos.max(range.start), end.min(range.end));
            if a < b {
                out.push(if hole {
                    Extent::hole(b - a)
                } else {
                    Extent::data(b - a)
                });
                pos = b;
            }
        }
        Ok(out)
    }
    fn locate(&self, offset: u64, len: u64) -> Option<Vec<Located>> {
        let end = offset + len - u64::from(self.short);
        let mut out = Vec::new();
        let mut pos = offset;
        while pos < end {
            let (run, next) = if HOLE.contains(&pos) {
                let n = end.min(HOLE.end) - pos;
                (Located::Zeros(n), pos + n)
            } else if MEMORY.contains(&pos) {
                let n = end.min(MEMORY.end) - pos;
                let at = (pos - MEMORY.start) as usize;
                (
                    Located::Bytes(self.memory[at..at + n as usize].to_vec()),
                    pos + n,
                )
            } else {
                let stop = if pos < HOLE.start { HOLE.start } else { SIZE };
                let n = end.min(stop) - pos;
                let file = self.file.clone();
                (
                    Located::File {
                        file,
                        offset: pos,
                        len: n,
                    },
                    pos + n,
                )
            };
            out.push(run);
            pos = next;
        }
        Some(out)
    }
}

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
