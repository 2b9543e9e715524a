//! Entry points of the fuzz targets (`fuzz/fuzz_targets/iscsi_*.rs`), here so that the
//! seed corpus replay test (`tests/fuzz_corpus.rs`) and the fuzzer call the very same
//! code. Each feeds arbitrary bytes and checks that nothing panics and that what comes
//! out is well formed.

use std::sync::Arc;

use crate::scsi::{Identity, Lu, MemDisk};
use crate::session::{ChapCredentials, Connection, Target, TargetConfig};
use crate::wire::{Bhs, Digests, Pdu, text};

/// The PDU codec: the first byte chooses the digests; every PDU that parses re-emits to
/// bytes that parse to the same PDU; text data segments parse or fail cleanly.
pub fn pdu(data: &[u8]) {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let digests = Digests {
        header: mode & 1 != 0,
        data: mode & 2 != 0,
    };
    while let Ok(Some((pdu, used))) = Pdu::parse(rest, digests, 1 << 16) {
        rest = &rest[used..];
        let _ = text::parse(&pdu.data);
        let bytes = pdu.to_bytes(digests).expect("a parsed PDU fits its fields");
        let (again, n) = Pdu::parse(&bytes, digests, 1 << 16)
            .expect("re-emitted PDU parses")
            .expect("re-emitted PDU is whole");
        assert_eq!(n, bytes.len());
        if !matches!(pdu.bhs, Bhs::Unknown { .. }) {
            assert_eq!(again, pdu);
        }
    }
}

/// The target session, login first: bytes from an initiator (chunked by the first
/// byte; the second chooses whether CHAP is required) into a connection over a small
/// disk in memory. What the target sends must parse as PDUs.
pub fn session(data: &[u8]) {
    let [chunk, chap, input @ ..] = data else {
        return;
    };
    let mut config = TargetConfig::new("iqn.2026-01.org.provision:fuzz");
    config.portal = "127.0.0.1:3260,1".into();
    if chap & 1 != 0 {
        config.chap = Some(ChapCredentials {
            user: "user".into(),
            secret: b"secretsecret".to_vec(),
        });
    }
    let disk = Arc::new(MemDisk::new(vec![0x5a; 1 << 16], chap & 2 != 0));
    let lu = Arc::new(Lu::new(disk, Identity::for_target(&config.target_name)));
    let target = Arc::new(Target::new(config, lu));
    let mut conn = Connection::new(target, [7; 16]);
    let mut out = Vec::new();
    for piece in input.chunks(usize::from(*chunk).max(1)) {
        let failed = conn.handle_input(piece).is_err();
        // Output before the digests switch on is plain; check what can be checked.
        let digests = Digests {
            header: conn.params().header_digest,
            data: conn.params().data_digest,
        };
        out.clear();
        conn.poll_transmit(&mut out);
        if !conn.is_logging_in() && digests != Digests::default() {
            // The last login response went out without digests, the rest with them.
        } else {
            let mut at = 0;
            while at < out.len() {
                let (_, n) = Pdu::parse(&out[at..], Digests::default(), 1 << 24)
                    .expect("the target's PDUs parse")
                    .expect("the target sends whole PDUs");
                at += n;
            }
        }
        if failed || conn.is_closed() {
            return;
        }
    }
}
