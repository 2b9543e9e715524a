//! TRIM gives room back: whole blocks are unlinked, their slots reused by new blocks
//! after a flush (never before), the free slots are found again on reopening, partial
//! trims clear sector bits of differencing images, and qemu-img still reads the result.

mod common;

use std::io;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::{assert_same, pattern, read_all};
use vhd::{
    ChecksumPolicy, CreateOptions, Disk, Image, MemStorage, OpenOptions, SizePolicy, Storage,
};

const MIB: u64 = 1 << 20;
/// Blocks of 2 MiB (the default), 16 MiB: 8 blocks.
const BLOCK: u64 = 2 * MIB;
const SIZE: u64 = 16 * MIB;
/// One block's slot in the file: 512 bytes of bitmap, then the data.
const SLOT: u64 = 512 + BLOCK;

fn new_dynamic() -> (Arc<MemStorage>, Image) {
    let storage = Arc::new(MemStorage::new(Vec::new()));
    let img = CreateOptions::dynamic(SIZE)
        .create_on(storage.clone(), None)
        .unwrap();
    (storage, img)
}

/// Fills whole blocks with their own pattern, into `reference` too.
fn fill_blocks(img: &dyn Disk, reference: &mut [u8], blocks: &[u64]) {
    for &b in blocks {
        let data = pattern(b + 1, BLOCK as usize);
        img.write_at(&data, b * BLOCK).unwrap();
        reference[(b * BLOCK) as usize..((b + 1) * BLOCK) as usize].copy_from_slice(&data);
    }
}

fn zero(reference: &mut [u8], offset: u64, len: u64) {
    reference[offset as usize..(offset + len) as usize].fill(0);
}

#[test]
fn trimmed_blocks_give_their_room_to_the_next_blocks() {
    let (storage, img) = new_dynamic();
    let mut reference = vec![0u8; SIZE as usize];
    fill_blocks(&img, &mut reference, &[0, 1, 2, 3]);
    img.flush().unwrap();
    let full = img.allocated_len();
    let file_len = img.file_len().unwrap();
    assert_eq!(full, file_len, "no gaps yet: what is allocated is the file");

    // Blocks 1 and 2, and a range that only partly covers block 3 (kept: dynamic).
    img.trim(BLOCK, 2 * BLOCK).unwrap();
    img.trim(3 * BLOCK + 4096, 8192).unwrap();
    zero(&mut reference, BLOCK, 2 * BLOCK);
    assert_eq!(img.allocated_len(), full - 2 * SLOT);
    assert_eq!(
        img.file_len().unwrap(),
        file_len,
        "the file keeps its length"
    );
    assert_same(&read_all(&img), &reference, "after the trim");
    assert_eq!(img.bat().unwrap()[1..3], [vhd::BAT_UNUSED; 2]);

    // After a flush, new blocks take the freed slots: the file does not grow.
    img.flush().unwrap();
    fill_blocks(&img, &mut reference, &[6, 7]);
    assert_eq!(img.file_len().unwrap(), file_len);
    assert_eq!(storage.len().unwrap(), file_len);
    assert_eq!(img.allocated_len(), full);
    // A third new block has no free slot left: at the end.
    fill_blocks(&img, &mut reference, &[5]);
    assert_eq!(img.file_len().unwrap(), file_len + SLOT);
    img.flush().unwrap();
    assert_same(&read_all(&img), &reference, "after the reuse");

    let report = vhd::check(&img).unwrap();
    assert!(report.is_consistent(), "{:?}", report.problems);
    let again = Image::from_bytes(storage.to_vec()).unwrap();
    assert_same(&read_all(&again), &reference, "reopened");
}

#[test]
fn a_freed_slot_is_not_reused_before_a_flush() {
    let (_storage, img) = new_dynamic();
    let mut reference = vec![0u8; SIZE as usize];
    fill_blocks(&img, &mut reference, &[0, 1]);
    img.flush().unwrap();
    let len = img.file_len().unwrap();

    img.trim(0, BLOCK).unwrap();
    zero(&mut reference, 0, BLOCK);
    fill_blocks(&img, &mut reference, &[2]);
    assert_eq!(
        img.file_len().unwrap(),
        len + SLOT,
        "the slot of block 0 waits for the flush that makes its unlinking durable"
    );
    img.flush().unwrap();
    fill_blocks(&img, &mut reference, &[3]);
    assert_eq!(img.file_len().unwrap(), len + SLOT, "now it is reused");
    assert_same(&read_all(&img), &reference, "data of every block");
}

/// What a storage did since its last flush, to replay all but some of it (a crash
/// that lost those writes).
#[derive(Debug, Clone)]
enum Op {
    Write(u64, Vec<u8>),
    SetLen(u64),
    Punch(u64, u64),
}

/// Memory storage that keeps the bytes of its last flush and the operations since.
struct Journal {
    now: MemStorage,
    durable: Mutex<(Vec<u8>, Vec<Op>)>,
}

impl Journal {
    fn new(bytes: Vec<u8>) -> Self {
        Journal {
            now: MemStorage::new(bytes.clone()),
            durable: Mutex::new((bytes, Vec::new())),
        }
    }
    fn log(&self, op: Op) {
        self.durable.lock().unwrap().1.push(op);
    }
    /// The bytes after a crash that kept every operation since the flush but those
    /// `lost` says.
    fn crash(&self, lost: impl Fn(&Op) -> bool) -> Vec<u8> {
        let (bytes, ops) = self.durable.lock().unwrap().clone();
        let after = MemStorage::new(bytes);
        for op in ops.iter().filter(|op| !lost(op)) {
            match op {
                Op::Write(at, b) => after.write_at(b, *at).unwrap(),
                Op::SetLen(n) => after.set_len(*n).unwrap(),
                Op::Punch(at, n) => {
                    after.punch_hole(*at, *n).unwrap();
                }
            }
        }
        after.to_vec()
    }
}

impl Storage for Journal {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.now.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.log(Op::Write(offset, buf.to_vec()));
        self.now.write_at(buf, offset)
    }
    fn flush(&self) -> io::Result<()> {
        *self.durable.lock().unwrap() = (self.now.to_vec(), Vec::new());
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        self.now.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.log(Op::SetLen(len));
        self.now.set_len(len)
    }
    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<bool> {
        self.log(Op::Punch(offset, len));
        self.now.punch_hole(offset, len)
    }
}

#[test]
fn a_crash_that_loses_the_unlinking_leaves_no_two_blocks_in_one_slot() {
    let (storage, img) = new_dynamic();
    let mut reference = vec![0u8; SIZE as usize];
    fill_blocks(&img, &mut reference, &[0, 1]);
    img.flush().unwrap();
    let table = img.header().unwrap().table_offset;
    let journal = Arc::new(Journal::new(storage.to_vec()));
    let img = Image::from_storage(
        journal.clone(),
        false,
        ChecksumPolicy::Strict,
        SizePolicy::CurrentSize,
        None,
    )
    .unwrap();

    // Trim block 0, then allocate block 2 with no flush between: then the crash loses
    // the BAT write of the trim (the file system wrote the rest).
    img.trim(0, BLOCK).unwrap();
    fill_blocks(&img, &mut reference, &[2]);
    let unlinking = |op: &Op| matches!(op, Op::Write(at, b) if *at == table && b[..] == [0xff; 4]);
    let after = journal.crash(unlinking);
    let reopened = Image::from_bytes(after).expect("no two BAT entries share a slot");
    let bat = reopened.bat().unwrap();
    assert_ne!(
        bat[0],
        vhd::BAT_UNUSED,
        "the lost unlinking: block 0 still there"
    );
    assert_ne!(bat[0], bat[2]);
    let now = read_all(&reopened);
    let block0 = &now[..BLOCK as usize];
    assert!(
        block0 == &reference[..BLOCK as usize] || block0.iter().all(|&b| b == 0),
        "a trimmed block reads as before or as zeros (its hole punched)"
    );
    assert_same(
        &now[BLOCK as usize..],
        &reference[BLOCK as usize..],
        "the other blocks",
    );
    assert!(vhd::check(&reopened).unwrap().is_consistent());
}

#[test]
fn reopening_finds_the_freed_slots_and_the_file_system_gets_the_space() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.vhd");
    let img = CreateOptions::dynamic(SIZE).create(&path).unwrap();
    let mut reference = vec![0u8; SIZE as usize];
    fill_blocks(&img, &mut reference, &[0, 1, 2, 3]);
    img.flush().unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    let used = disk_usage(&path);
    img.trim(0, 3 * BLOCK).unwrap();
    zero(&mut reference, 0, 3 * BLOCK);
    if punch_works(dir.path()) {
        assert!(
            // Slots are not page-aligned: the pages at their edges stay (zeroed).
            disk_usage(&path) + 3 * (BLOCK - 8192) <= used,
            "the holes gave the space back: {} of {used} bytes left",
            disk_usage(&path)
        );
    }
    let held = img.allocated_len();
    drop(img); // no flush: the trim's BAT writes reached the file all the same

    let img = OpenOptions::new(false).open(&path).unwrap();
    assert_eq!(img.allocated_len(), held);
    assert_same(&read_all(&img), &reference, "reopened");
    fill_blocks(&img, &mut reference, &[5, 6, 7]);
    img.flush().unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        len,
        "three new blocks in the three freed slots"
    );
    drop(img);
    let img = OpenOptions::new(true).open(&path).unwrap();
    assert_same(&read_all(&img), &reference, "after reuse");
    let report = vhd::check_file(&path);
    assert!(report.is_consistent(), "{:?}", report.problems);
}

/// Bytes the file system holds for a file.
fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// Whether the file system under `dir` punches holes.
fn punch_works(dir: &Path) -> bool {
    let p = dir.join("probe");
    let s = vhd::FileStorage::create(&p).unwrap();
    s.write_at(&vec![1u8; 1 << 20], 0).unwrap();
    s.flush().unwrap();
    s.punch_hole(0, 1 << 20).unwrap_or(false)
}

fn new_differencing() -> (Arc<Image>, Image) {
    let base = CreateOptions::dynamic(SIZE)
        .create_on(Arc::new(MemStorage::new(Vec::new())), None)
        .unwrap();
    base.write_at(&vec![0x5a; SIZE as usize], 0).unwrap();
    let base = Arc::new(base);
    let link = common::memory_link(&base);
    let child = CreateOptions::dynamic(SIZE)
        .create_on(
            Arc::new(MemStorage::new(Vec::new())),
            Some((base.clone(), link)),
        )
        .unwrap();
    (base, child)
}

#[test]
fn partial_trims_of_a_differencing_image_uncover_the_parent() {
    let (_base, child) = new_differencing();
    let mut reference = vec![0x5a; SIZE as usize];
    // Block 0: 64 KiB written; block 1 whole.
    child.write_at(&vec![1; 65536], 0).unwrap();
    reference[..65536].fill(1);
    fill_blocks(&child, &mut reference, &[1]);
    let two = child.allocated_len();

    // Sectors wholly inside [1000, 9192): 2..17 read from the parent again; the
    // partly covered sectors 1 and 17 keep their data.
    child.trim(1000, 8192).unwrap();
    reference[1024..8704].fill(0x5a);
    assert_same(&read_all(&child), &reference, "partial trim");
    assert_eq!(child.allocated_len(), two);
    let layers = child.layers(0, 9216).unwrap();
    assert_eq!(
        layers,
        [
            (0, 1024, Some(0)),
            (1024, 7680, Some(1)),
            (8704, 512, Some(0))
        ]
    );

    // Trimming the rest of what block 0 holds unlinks it.
    child.trim(0, 1024).unwrap();
    child.trim(8192, 65536 - 8192).unwrap();
    reference[..65536].fill(0x5a);
    assert_eq!(child.bat().unwrap()[0], vhd::BAT_UNUSED);
    assert_eq!(child.allocated_len(), two - SLOT);
    // A whole block reads from the parent after its trim.
    child.trim(BLOCK, BLOCK).unwrap();
    reference[BLOCK as usize..2 * BLOCK as usize].fill(0x5a);
    assert_eq!(child.allocated_len(), two - 2 * SLOT);
    assert_same(&read_all(&child), &reference, "whole trims");

    // WRITE_ZEROES still reads zeros (it writes; it does not uncover the parent).
    child.write_zeroes(4096, 8192).unwrap();
    reference[4096..12288].fill(0);
    assert_same(&read_all(&child), &reference, "write_zeroes");
    assert!(vhd::check(&child).unwrap().is_consistent());
}

#[test]
fn read_only_images_refuse_trim() {
    let (storage, img) = new_dynamic();
    img.write_at(&[1; 512], 0).unwrap();
    drop(img);
    let ro = Image::from_storage(
        Arc::new(MemStorage::read_only(storage.to_vec())),
        true,
        ChecksumPolicy::Lenient,
        SizePolicy::CurrentSize,
        None,
    )
    .unwrap();
    assert_eq!(
        ro.trim(0, BLOCK).unwrap_err().kind(),
        vhd::ErrorKind::ReadOnly
    );
}

#[test]
fn qemu_img_reads_images_after_trims_and_reuse() {
    let qemu_img = testkit::require_peer!("qemu-img");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trimmed.vhd");
    let img = CreateOptions::dynamic(SIZE).create(&path).unwrap();
    let mut reference = vec![0u8; SIZE as usize];
    fill_blocks(&img, &mut reference, &[0, 1, 2, 3, 4]);
    img.flush().unwrap();
    img.trim(BLOCK, BLOCK).unwrap(); // a block in the middle
    img.trim(4 * BLOCK, BLOCK).unwrap(); // the last one in the file
    img.trim(3 * BLOCK + 512, 4096).unwrap(); // partial: kept (dynamic)
    zero(&mut reference, BLOCK, BLOCK);
    zero(&mut reference, 4 * BLOCK, BLOCK);
    img.flush().unwrap();
    drop(img);
    qemu_accepts(&qemu_img, &path, &reference, dir.path(), "after trims");
    let report = vhd::check_file(&path);
    assert!(
        report.is_consistent(),
        "freed slots are no problem: {report:?}"
    );
    assert!(report.unreferenced_bytes >= 2 * SLOT, "{report:?}");

    // New blocks in the freed slots, one of them partly written.
    let img = OpenOptions::new(false).open(&path).unwrap();
    fill_blocks(&img, &mut reference, &[6]);
    img.write_at(&[7; 1000], 7 * BLOCK + 300).unwrap();
    reference[(7 * BLOCK + 300) as usize..(7 * BLOCK + 1300) as usize].fill(7);
    img.flush().unwrap();
    drop(img);
    qemu_accepts(&qemu_img, &path, &reference, dir.path(), "after reuse");
    let report = vhd::check_file(&path);
    assert!(report.is_consistent(), "{:?}", report.problems);
}

/// qemu-img finds no corruption (vpc has no checker: exit 63 says so) and reads
/// `reference`.
fn qemu_accepts(qemu_img: &Path, path: &Path, reference: &[u8], dir: &Path, what: &str) {
    let check = Command::new(qemu_img)
        .args(["check", "-f", "vpc"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        matches!(check.status.code(), Some(0 | 63)),
        "{what}: qemu-img check: {check:?}"
    );
    let ref_path = dir.join("reference.raw");
    std::fs::write(&ref_path, reference).unwrap();
    testkit::run(
        Command::new(qemu_img)
            .args(["compare", "-q", "-f", "vpc", "-F", "raw"])
            .arg(path)
            .arg(&ref_path),
    );
}

mod model {
    //! Random writes, trims and flushes match a model: in a dynamic image a trim zeroes
    //! the blocks it covers entirely (the last one may be short) and nothing else; in a
    //! differencing image the sectors it covers entirely read the parent again. The
    //! images stay consistent and reopen the same.

    use super::*;
    use proptest::prelude::*;

    const SIZE: u64 = (3 << 20) + 1536;
    const BLOCK: u64 = 256 << 10;

    #[derive(Debug, Clone)]
    enum Step {
        Write(u64, usize, u8),
        Trim(u64, u64),
        Flush,
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        let step = prop_oneof![
            (0..SIZE, 1usize..400_000, any::<u8>()).prop_map(|(o, l, s)| Step::Write(
                o,
                l.min((SIZE - o) as usize),
                s
            )),
            (0..SIZE, 1u64..1_200_000).prop_map(|(o, l)| Step::Trim(o, l.min(SIZE - o))),
            Just(Step::Flush),
        ];
        prop::collection::vec(step, 1..24)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        #[test]
        fn dynamic_image_with_trims_matches_the_model(steps in steps()) {
            let storage = Arc::new(MemStorage::new(Vec::new()));
            let img = CreateOptions::dynamic(SIZE).block_size(BLOCK as u32)
                .create_on(storage.clone(), None).unwrap();
            let empty = img.allocated_len();
            let mut model = vec![0u8; SIZE as usize];
            for step in &steps {
                match *step {
                    Step::Write(off, len, seed) => {
                        let data = pattern(u64::from(seed) + off, len);
                        img.write_at(&data, off).unwrap();
                        model[off as usize..off as usize + len].copy_from_slice(&data);
                    }
                    Step::Trim(off, len) => {
                        img.trim(off, len).unwrap();
                        let first = off.div_ceil(BLOCK) * BLOCK;
                        let mut b = first;
                        while b < off + len {
                            let end = (b + BLOCK).min(SIZE);
                            if end <= off + len {
                                model[b as usize..end as usize].fill(0);
                            }
                            b += BLOCK;
                        }
                    }
                    Step::Flush => img.flush().unwrap(),
                }
                let used = img.bat().unwrap().iter().filter(|&&e| e != vhd::BAT_UNUSED).count();
                prop_assert_eq!(img.allocated_len(), empty + used as u64 * (512 + BLOCK));
                prop_assert!(img.allocated_len() <= img.file_len().unwrap());
            }
            prop_assert!(read_all(&img) == model);
            let report = vhd::check(&img).unwrap();
            prop_assert!(report.is_consistent(), "{:?}", report);
            let again = Image::from_bytes(storage.to_vec()).unwrap();
            prop_assert!(read_all(&again) == model);
            prop_assert_eq!(again.allocated_len(), img.allocated_len());
        }

        /// In a differencing image every sector a trim covers entirely reads from the
        /// parent again (whole blocks are unlinked, other sectors' bits cleared).
        #[test]
        fn differencing_image_with_trims_matches_the_model(steps in steps()) {
            let base = CreateOptions::dynamic(SIZE).block_size(BLOCK as u32)
                .create_on(Arc::new(MemStorage::new(Vec::new())), None).unwrap();
            let parent = pattern(99, SIZE as usize);
            base.write_at(&parent, 0).unwrap();
            let base = Arc::new(base);
            let storage = Arc::new(MemStorage::new(Vec::new()));
            let link = common::memory_link(&base);
            let child = CreateOptions::dynamic(SIZE).block_size(BLOCK as u32)
                .create_on(storage.clone(), Some((base.clone(), link))).unwrap();
            let empty = child.allocated_len();
            let mut model = parent.clone();
            for step in &steps {
                match *step {
                    Step::Write(off, len, seed) => {
                        let data = pattern(u64::from(seed) + off, len);
                        child.write_at(&data, off).unwrap();
                        model[off as usize..off as usize + len].copy_from_slice(&data);
                    }
                    Step::Trim(off, len) => {
                        child.trim(off, len).unwrap();
                        let (first, end) = (off.div_ceil(512) * 512, (off + len) / 512 * 512);
                        if first < end {
                            model[first as usize..end as usize]
                                .copy_from_slice(&parent[first as usize..end as usize]);
                        }
                    }
                    Step::Flush => child.flush().unwrap(),
                }
                let used = child.bat().unwrap().iter().filter(|&&e| e != vhd::BAT_UNUSED).count();
                prop_assert_eq!(child.allocated_len(), empty + used as u64 * (512 + BLOCK));
            }
            prop_assert!(read_all(&child) == model);
            let report = vhd::check(&child).unwrap();
            prop_assert!(report.is_consistent(), "{:?}", report);
            let again = Image::from_storage(
                Arc::new(MemStorage::new(storage.to_vec())),
                true,
                ChecksumPolicy::Strict,
                SizePolicy::CurrentSize,
                Some(base),
            ).unwrap();
            prop_assert!(read_all(&again) == model);
        }
    }
}
