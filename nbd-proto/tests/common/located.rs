//! An export over a real file that [locates](nbd_proto::Export::locate) its bytes:
//! file runs, a run of zeros, bytes held in memory, and optionally a tail it does not
//! locate; it counts reads the way provision-core's sessions do (every `read`, and
//! every `locate` that names the bytes), and its `locate` calls.

use std::fs::File;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use nbd_proto::{Capabilities, Errno, Export, Extent, Located};

pub const SIZE: u64 = 4 << 20;
/// Zeros (`Located::Zeros`, a hole in `block_status`).
pub const HOLE: Range<u64> = (1 << 20)..(1 << 20) + (256 << 10);
/// Bytes kept in memory (`Located::Bytes`), a pattern other than the file's.
pub const MEMORY: Range<u64> = HOLE.end..HOLE.end + (64 << 10);

/// The file's byte at `i`.
pub fn byte(i: u64) -> u8 {
    (i.wrapping_mul(0x9e37_79b9) >> 11) as u8
}

/// What the export reads as.
pub fn model() -> Vec<u8> {
    let mut m: Vec<u8> = (0..SIZE).map(byte).collect();
    m[HOLE.start as usize..HOLE.end as usize].fill(0);
    for i in MEMORY {
        m[i as usize] = (i % 251) as u8;
    }
    m
}

/// The file holds the export's bytes at the same offsets, except in HOLE (zeros) and
/// MEMORY (a different pattern kept in RAM).
pub struct FileExport {
    pub file: Arc<File>,
    pub path: std::path::PathBuf,
    model: Vec<u8>,
    /// Locate one byte short, to check the driver does not trust a wrong plan.
    short: bool,
    /// Ranges reaching past this are not located (`read` serves them).
    located_below: u64,
    reads: AtomicU64,
    read_bytes: AtomicU64,
    locates: AtomicU64,
}

impl FileExport {
    /// Writes the file as `dir/disk` and serves it.
    pub fn new(dir: &Path, short: bool) -> Self {
        let path = dir.join("disk");
        std::fs::write(&path, (0..SIZE).map(byte).collect::<Vec<_>>()).unwrap();
        FileExport {
            file: Arc::new(File::open(&path).unwrap()),
            path,
            model: model(),
            short,
            located_below: SIZE,
            reads: AtomicU64::new(0),
            read_bytes: AtomicU64::new(0),
            locates: AtomicU64::new(0),
        }
    }

    /// Locates nothing that reaches past `end`.
    pub fn located_below(mut self, end: u64) -> Self {
        self.located_below = end;
        self
    }

    /// (reads, bytes read, locate calls) so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.reads.load(Relaxed),
            self.read_bytes.load(Relaxed),
            self.locates.load(Relaxed),
        )
    }

    fn count(&self, len: u64) {
        self.reads.fetch_add(1, Relaxed);
        self.read_bytes.fetch_add(len, Relaxed);
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
        self.count(buf.len() as u64);
        buf.copy_from_slice(&self.model[offset as usize..][..buf.len()]);
        Ok(())
    }
    fn block_status(&self, offset: u64, len: u64) -> Result<Vec<Extent>, Errno> {
        let (end, mut pos, mut out) = (offset + len, offset, Vec::new());
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
        self.locates.fetch_add(1, Relaxed);
        if offset + len > self.located_below {
            return None;
        }
        let end = offset + len - u64::from(self.short);
        let mut out = Vec::new();
        let mut pos = offset;
        while pos < end {
            let (run, n) = if HOLE.contains(&pos) {
                let n = end.min(HOLE.end) - pos;
                (Located::Zeros(n), n)
            } else if MEMORY.contains(&pos) {
                let n = end.min(MEMORY.end) - pos;
                let bytes = self.model[pos as usize..][..n as usize].to_vec();
                (Located::Bytes(bytes), n)
            } else {
                let stop = if pos < HOLE.start { HOLE.start } else { SIZE };
                let n = end.min(stop) - pos;
                let file = self.file.clone();
                let run = Located::File {
                    file,
                    offset: pos,
                    len: n,
                };
                (run, n)
            };
            out.push(run);
            pos += n;
        }
        self.count(len);
        Some(out)
    }
}
