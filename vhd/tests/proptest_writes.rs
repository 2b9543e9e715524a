//! Property tests: random writes (any offset and length, across sector and block
//! boundaries) into dynamic and differencing images match an in-memory model, before
//! and after closing and reopening the image.

mod common;

use std::sync::Arc;

use proptest::prelude::*;
use vhd::{ChecksumPolicy, CreateOptions, Disk, Image, MemStorage, ParentLink, SizePolicy};

const SIZE: u64 = (3 << 20) + 1536;
const BLOCK: u32 = 256 << 10;

fn writes() -> impl Strategy<Value = Vec<(u64, usize, u8)>> {
    prop::collection::vec((0..SIZE, 1usize..300_000, any::<u8>()), 1..12).prop_map(|v| {
        v.into_iter()
            .map(|(o, l, s)| (o, l.min((SIZE - o) as usize), s))
            .collect()
    })
}

fn apply(img: &dyn Disk, model: &mut [u8], w: &[(u64, usize, u8)]) {
    for &(off, len, seed) in w {
        let data = common::pattern(u64::from(seed) + off, len);
        img.write_at(&data, off).unwrap();
        model[off as usize..off as usize + len].copy_from_slice(&data);
    }
}

fn reopen(storage: &MemStorage, parent: Option<Arc<Image>>) -> Image {
    let copy = Arc::new(MemStorage::new(storage.to_vec()));
    Image::from_storage(
        copy,
        true,
        ChecksumPolicy::Strict,
        SizePolicy::CurrentSize,
        parent,
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn dynamic_image_matches_the_model(w in writes()) {
        let storage = Arc::new(MemStorage::new(Vec::new()));
        let img = CreateOptions::dynamic(SIZE).block_size(BLOCK).create_on(storage.clone(), None).unwrap();
        let mut model = vec![0u8; SIZE as usize];
        apply(&img, &mut model, &w);
        prop_assert!(common::read_all(&img) == model);
        let again = reopen(&storage, None);
        prop_assert!(common::read_all(&again) == model);
        let report = vhd::check(&again).unwrap();
        prop_assert!(report.is_consistent(), "{:?}", report);
    }

    #[test]
    fn differencing_image_matches_the_model(base_w in writes(), w in writes()) {
        let base_storage = Arc::new(MemStorage::new(Vec::new()));
        let base = CreateOptions::dynamic(SIZE).block_size(BLOCK).create_on(base_storage, None).unwrap();
        let mut model = vec![0u8; SIZE as usize];
        apply(&base, &mut model, &base_w);
        let base = Arc::new(base);
        let link = ParentLink {
            unique_id: base.footer().unique_id,
            time_stamp: 0,
            unicode_name: "base.vhd".into(),
            absolute: None,
            relative: Some(".\\base.vhd".into()),
            size: SIZE,
        };
        let storage = Arc::new(MemStorage::new(Vec::new()));
        let child = CreateOptions::dynamic(SIZE).block_size(BLOCK).create_on(storage.clone(), Some((base.clone(), link))).unwrap();
        let parent_before = common::read_all(base.as_ref());
        apply(&child, &mut model, &w);
        prop_assert!(common::read_all(&child) == model);
        prop_assert!(common::read_all(base.as_ref()) == parent_before);
        let again = reopen(&storage, Some(base.clone()));
        prop_assert!(common::read_all(&again) == model);
        // All read-only: the flattened chain view serves the reads.
        let base_bytes = {
            let mut b = vec![0; base.storage().len().unwrap() as usize];
            base.storage().read_at(&mut b, 0).unwrap();
            b
        };
        let ro_base = Arc::new(reopen(&MemStorage::new(base_bytes), None));
        let ro = reopen(&storage, Some(ro_base));
        prop_assert!(common::read_all(&ro) == model);
        let mut buf = vec![0u8; 7000];
        for &(off, _, _) in &w {
            let n = buf.len().min((SIZE - off) as usize);
            ro.read_at(&mut buf[..n], off).unwrap();
            prop_assert!(buf[..n] == model[off as usize..off as usize + n]);
        }
        let report = vhd::check(&again).unwrap();
        prop_assert!(report.is_consistent(), "{:?}", report);
    }
}
