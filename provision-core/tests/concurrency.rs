//! Fifty standard-mode sessions over one base, reading and writing at once, each
//! checked against its own model.

use std::sync::Arc;

use provision_core::{
    DeviceType, Mac, Mode, SessionSettings, Sessions, Store, create_vdisk, new_version,
};
use vhd::Disk;

mod common;

const SIZE: u64 = 8 << 20;
const DEVICES: u8 = 50;
const OPS: usize = 300;

/// xorshift64*: a small deterministic generator, one stream per device.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn fifty_sessions_stay_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    create_vdisk(&store, "os", SIZE, "").unwrap();
    // A base with content: version 1 written by a maintenance device, then promoted.
    store
        .add_device(
            Mac([2, 0, 0, 0, 1, 0]),
            "maint",
            None,
            DeviceType::Maintenance,
        )
        .unwrap();
    store.assign("maint", "os", Mode::Standard, None).unwrap();
    new_version(&store, "os", "content").unwrap();
    let settings = SessionSettings {
        cache_ram_bytes: 256 << 10,
        ..Default::default()
    };
    let sessions = Sessions::new(store.clone(), settings).unwrap();
    let mut base = vec![0u8; SIZE as usize];
    for (i, b) in base.iter_mut().enumerate() {
        *b = (i / 4096) as u8;
    }
    {
        let maint = common::open(&sessions, Mac([2, 0, 0, 0, 1, 0]), "os").unwrap();
        maint.write_at(&base, 0).unwrap();
    }
    store.promote("os").unwrap();
    store.promote("os").unwrap();
    for n in 0..DEVICES {
        let name = format!("seat-{n}");
        store
            .add_device(Mac([2, 0, 0, 0, 0, n]), &name, None, DeviceType::Production)
            .unwrap();
        store.assign(&name, "os", Mode::Standard, None).unwrap();
    }

    let base = Arc::new(base);
    let workers: Vec<_> = (0..DEVICES)
        .map(|n| {
            let sessions = sessions.clone();
            let base = base.clone();
            std::thread::spawn(move || {
                let session = common::open(&sessions, Mac([2, 0, 0, 0, 0, n]), "os").unwrap();
                assert_eq!(session.info().version, 1);
                let mut model = base.to_vec();
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(n + 1));
                let mut buf = vec![0u8; 70_000];
                for op in 0..OPS {
                    let len = 1 + rng.below(buf.len() as u64) as usize;
                    let offset = rng.below(SIZE - len as u64);
                    let range = offset as usize..offset as usize + len;
                    if rng.below(3) == 0 {
                        let fill = (op as u8) ^ n;
                        model[range].fill(fill);
                        buf[..len].fill(fill);
                        session.write_at(&buf[..len], offset).unwrap();
                    } else {
                        session.read_at(&mut buf[..len], offset).unwrap();
                        assert!(
                            buf[..len] == model[range],
                            "device {n} op {op}: read differs from its model"
                        );
                    }
                }
                let mut all = vec![0u8; SIZE as usize];
                session.read_at(&mut all, 0).unwrap();
                assert!(
                    all == model,
                    "device {n}: final content differs from its model"
                );
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a session thread failed");
    }
    assert!(sessions.list().is_empty());
}
