//! Bad input: every damaged image gives a clear typed error (never a panic, never an
//! allocation beyond what the file justifies).

use std::sync::Arc;

use vhd::{
    ChecksumPolicy, CreateOptions, Disk, DynamicHeader, Error, ErrorKind, Footer, Image,
    MemStorage, SizePolicy,
};

/// A 6 MiB dynamic image with blocks 0 and 2 allocated.
fn good() -> Vec<u8> {
    let s = Arc::new(MemStorage::new(Vec::new()));
    let img = CreateOptions::dynamic(6 << 20)
        .create_on(s.clone(), None)
        .unwrap();
    img.write_at(&[1; 512], 0).unwrap();
    img.write_at(&[2; 512], 4 << 20).unwrap();
    s.to_vec()
}

fn open(bytes: Vec<u8>, checksums: ChecksumPolicy) -> Result<Image, Error> {
    Image::from_storage(
        Arc::new(MemStorage::read_only(bytes)),
        true,
        checksums,
        SizePolicy::CurrentSize,
        None,
    )
}

fn edit_footers(bytes: &mut [u8], f: impl Fn(&mut Footer)) {
    let len = bytes.len();
    for at in [0, len - 512] {
        let mut footer = Footer::parse(&bytes[at..at + 512], at as u64).unwrap();
        f(&mut footer);
        bytes[at..at + 512].copy_from_slice(&footer.to_bytes());
    }
}

fn edit_header(bytes: &mut [u8], f: impl Fn(&mut DynamicHeader)) {
    let mut h = DynamicHeader::parse(&bytes[512..1536], 512).unwrap();
    f(&mut h);
    bytes[512..1536].copy_from_slice(&h.to_bytes()[..]);
}

fn set_bat(bytes: &mut [u8], index: usize, value: u32) {
    bytes[1536 + index * 4..1536 + index * 4 + 4].copy_from_slice(&value.to_be_bytes());
}

#[track_caller]
fn expect(result: Result<Image, Error>, kind: ErrorKind, text: &str) {
    let err = result.expect_err("damaged image must not open");
    assert_eq!(err.kind(), kind, "{err}");
    assert!(err.to_string().contains(text), "`{err}` lacks `{text}`");
}

#[test]
fn truncated_files() {
    expect(
        open(vec![], ChecksumPolicy::Lenient),
        ErrorKind::Corrupt,
        "truncated",
    );
    expect(
        open(vec![0; 100], ChecksumPolicy::Lenient),
        ErrorKind::Corrupt,
        "truncated",
    );
    let g = good();
    // Cut in the middle of block 2: the trailing footer is gone, the copy at 0 is used,
    // and the BAT entry of block 2 runs past the end.
    expect(
        open(g[..g.len() - 4096].to_vec(), ChecksumPolicy::Lenient),
        ErrorKind::Corrupt,
        "past the end",
    );
    // Cut inside the BAT.
    expect(
        open(g[..1600].to_vec(), ChecksumPolicy::Lenient),
        ErrorKind::Corrupt,
        "BAT",
    );
}

#[test]
fn wrong_cookies() {
    let mut g = good();
    let len = g.len();
    g[0] = b'X';
    g[len - 512] = b'X';
    expect(
        open(g, ChecksumPolicy::Lenient),
        ErrorKind::Corrupt,
        "bad cookie",
    );
    let mut g = good();
    g[512..520].copy_from_slice(b"notspars");
    expect(
        open(g, ChecksumPolicy::Lenient),
        ErrorKind::Corrupt,
        "dynamic header at offset 512: bad cookie",
    );
}

#[test]
fn bad_checksums_lenient_strict_and_the_footer_copy() {
    let mut g = good();
    let len = g.len();
    g[len - 512 + 100] ^= 1; // reserved byte of the trailing footer
    // Strict still opens: the copy at offset 0 is valid and stands in.
    let img = open(g.clone(), ChecksumPolicy::Strict).unwrap();
    assert_eq!(img.footer_source(), vhd::FooterSource::CopyAtZero);
    g[100] ^= 1;
    expect(
        open(g.clone(), ChecksumPolicy::Strict),
        ErrorKind::Corrupt,
        "checksum",
    );
    let img = open(g, ChecksumPolicy::Lenient).unwrap();
    assert!(!img.warnings().is_empty());
    let mut g = good();
    g[512 + 900] ^= 1;
    expect(
        open(g.clone(), ChecksumPolicy::Strict),
        ErrorKind::Corrupt,
        "dynamic header at offset 512: checksum",
    );
    assert!(open(g, ChecksumPolicy::Lenient).unwrap().warnings()[0].contains("dynamic header"));
}

#[test]
fn bat_entries_past_the_end_overlapping_or_in_the_metadata() {
    let mut g = good();
    set_bat(&mut g, 1, 0x00ff_0000);
    expect(
        open(g, ChecksumPolicy::Lenient),
        ErrorKind::Corrupt,
        "entry 1: block at offset",
    );
    let mut g = good();
    let first = u32::from_be_bytes(g[1536..1540].try_into().unwrap());
    set_bat(&mut g, 1, first + 8);
    expect(
        open(g, ChecksumPolicy::Lenient),
        ErrorKind::Corrupt,
        "overlaps entry",
    );
    let mut g = good();
    set_bat(&mut g, 0, 2);
    expect(
        open(g, ChecksumPolicy::Lenient),
        ErrorKind::Corrupt,
        "overlaps the header or BAT",
    );
}

#[test]
fn absurd_table_block_and_disk_sizes() {
    // 4 billion BAT entries: refused from the header alone, no 16 GiB allocation.
    let mut g = good();
    edit_header(&mut g, |h| h.max_table_entries = 0xffff_fff0);
    expect(
        open(g, ChecksumPolicy::Strict),
        ErrorKind::Corrupt,
        "run past the end",
    );
    for bs in [0, 3000, 1 << 31] {
        let mut g = good();
        edit_header(&mut g, |h| h.block_size = bs);
        expect(
            open(g, ChecksumPolicy::Strict),
            ErrorKind::Corrupt,
            "block size",
        );
    }
    let mut g = good();
    edit_footers(&mut g, |f| f.current_size = u64::MAX - 511);
    expect(
        open(g, ChecksumPolicy::Strict),
        ErrorKind::Corrupt,
        "max table entries",
    );
    let mut g = good();
    edit_footers(&mut g, |f| f.current_size = 1000);
    expect(
        open(g, ChecksumPolicy::Strict),
        ErrorKind::Corrupt,
        "multiple of 512",
    );
    let mut g = good();
    edit_header(&mut g, |h| h.table_offset = u64::MAX - 511);
    expect(
        open(g, ChecksumPolicy::Strict),
        ErrorKind::Corrupt,
        "table offset",
    );
    let mut g = good();
    edit_footers(&mut g, |f| f.data_offset = u64::MAX - 511);
    expect(
        open(g, ChecksumPolicy::Strict),
        ErrorKind::Corrupt,
        "dynamic header",
    );
    // A fixed image claiming more data than the file holds.
    let s = Arc::new(MemStorage::new(Vec::new()));
    CreateOptions::fixed(8192)
        .create_on(s.clone(), None)
        .unwrap();
    let mut g = s.to_vec();
    let len = g.len();
    let mut f = Footer::parse(&g[len - 512..], 0).unwrap();
    f.current_size = 1 << 40;
    g[len - 512..].copy_from_slice(&f.to_bytes());
    expect(
        open(g, ChecksumPolicy::Strict),
        ErrorKind::Corrupt,
        "truncated",
    );
}

#[test]
fn unknown_disk_type_is_unsupported() {
    let mut g = good();
    edit_footers(&mut g, |f| f.disk_type = vhd::DiskType::Unknown(6));
    expect(
        open(g, ChecksumPolicy::Strict),
        ErrorKind::Unsupported,
        "disk type 6",
    );
}

#[test]
fn differencing_without_parent_and_access_errors() {
    let mut g = good();
    edit_footers(&mut g, |f| f.disk_type = vhd::DiskType::Differencing);
    expect(
        open(g, ChecksumPolicy::Strict),
        ErrorKind::ParentNotFound,
        "not found",
    );
    let img = open(good(), ChecksumPolicy::Strict).unwrap();
    let mut buf = [0u8; 1024];
    assert_eq!(
        img.read_at(&mut buf, (6 << 20) - 512).unwrap_err().kind(),
        ErrorKind::OutOfRange
    );
    assert_eq!(
        img.read_at(&mut buf, u64::MAX - 10).unwrap_err().kind(),
        ErrorKind::OutOfRange
    );
    assert_eq!(
        img.write_at(&buf, 0).unwrap_err().kind(),
        ErrorKind::ReadOnly
    );
    assert_eq!(
        img.allocation(u64::MAX, 2).unwrap_err().kind(),
        ErrorKind::OutOfRange
    );
}
