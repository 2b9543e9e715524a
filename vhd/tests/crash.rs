//! Crash safety: the write path is interrupted at every step of a block allocation
//! (an injected failure in the storage, after which nothing more reaches the "disk").
//! The image still opens, `check` explains any leftover, everything flushed before the
//! failure reads back, and the next write repairs the image.

mod common;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use vhd::{ChecksumPolicy, CreateOptions, Disk, Image, MemStorage, SizePolicy, Storage};

/// A storage that fails every mutation from the `fail_at`-th on (a crash: the
/// operation in flight and everything after it are lost).
struct Crashing {
    inner: MemStorage,
    ops: AtomicUsize,
    fail_at: usize,
}

impl Crashing {
    fn mutate(&self) -> io::Result<()> {
        if self.ops.fetch_add(1, Ordering::SeqCst) >= self.fail_at {
            return Err(io::Error::other("injected crash"));
        }
        Ok(())
    }
}

impl Storage for Crashing {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.mutate()?;
        self.inner.write_at(buf, offset)
    }
    fn flush(&self) -> io::Result<()> {
        self.mutate()
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.mutate()?;
        self.inner.set_len(len)
    }
}

const SIZE: u64 = 8 << 20;

fn open(bytes: Vec<u8>, parent: Option<Arc<Image>>) -> Image {
    Image::from_storage(
        Arc::new(MemStorage::new(bytes)),
        false,
        ChecksumPolicy::Lenient,
        SizePolicy::CurrentSize,
        parent,
    )
    .expect("the image opens after the crash")
}

fn run(parent: Option<Arc<Image>>) {
    // Flushed state: block 0 written.
    let storage = Arc::new(MemStorage::new(Vec::new()));
    let opts = CreateOptions::dynamic(SIZE);
    let link = parent.as_ref().map(|p| (p.clone(), common::memory_link(p)));
    let img = opts.create_on(storage.clone(), link).unwrap();
    let flushed = common::pattern(1, 100_000);
    img.write_at(&flushed, 1000).unwrap();
    img.flush().unwrap();
    let before = common::read_all(&img);
    let clean = storage.to_vec();
    let new_data = common::pattern(2, 4096);
    let mut steps_seen = 0;
    for fail_at in 0..16 {
        let crashing = Arc::new(Crashing {
            inner: MemStorage::new(clean.clone()),
            ops: AtomicUsize::new(0),
            fail_at,
        });
        let img = Image::from_storage(
            crashing.clone(),
            false,
            ChecksumPolicy::Strict,
            SizePolicy::CurrentSize,
            parent.clone(),
        )
        .unwrap();
        // A write into block 2 (a new allocation), then a flush.
        let result = img
            .write_at(&new_data, (4 << 20) + 512)
            .and_then(|()| img.flush());
        let after = crashing.inner.to_vec();
        let reopened = open(after, parent.clone());
        let now = common::read_all(&reopened);
        let report = vhd::check(&reopened).unwrap();
        if result.is_ok() {
            assert!(report.is_consistent(), "no crash, yet: {report:?}");
            steps_seen = fail_at;
            break;
        }
        // Flushed data is intact; the interrupted write is either all there or absent.
        assert_eq!(
            &now[..4 << 20],
            &before[..4 << 20],
            "fail_at {fail_at}: flushed data"
        );
        let region = &now[(4 << 20) + 512..(4 << 20) + 512 + 4096];
        let old = &before[(4 << 20) + 512..(4 << 20) + 512 + 4096];
        assert!(
            region == &new_data[..] || region == old,
            "fail_at {fail_at}: torn write"
        );
        if !report.is_consistent() {
            for p in &report.problems {
                assert!(
                    p.what.contains("interrupted"),
                    "fail_at {fail_at}: unexplained problem {p}"
                );
            }
        }
        // The next write repairs the image.
        reopened.write_at(&new_data, (6 << 20) + 512).unwrap();
        reopened.flush().unwrap();
        let r2 = vhd::check(&reopened).unwrap();
        assert!(
            r2.is_consistent(),
            "fail_at {fail_at}: after repair: {r2:?}"
        );
        let again = open(
            {
                let mut b = vec![0; reopened.storage().len().unwrap() as usize];
                reopened.storage().read_at(&mut b, 0).unwrap();
                b
            },
            parent.clone(),
        );
        let mut buf = vec![0; 4096];
        again.read_at(&mut buf, (6 << 20) + 512).unwrap();
        assert_eq!(buf, new_data);
        steps_seen = fail_at + 1;
    }
    assert!(
        steps_seen >= 4,
        "the allocation has at least data, bitmap, BAT and footer steps"
    );
}

#[test]
fn dynamic_allocation_interrupted_at_every_step() {
    run(None);
}

#[test]
fn differencing_allocation_interrupted_at_every_step() {
    let base = CreateOptions::dynamic(SIZE)
        .create_on(Arc::new(MemStorage::new(Vec::new())), None)
        .unwrap();
    base.write_at(&common::pattern(5, SIZE as usize), 0)
        .unwrap();
    run(Some(Arc::new(base)));
}
