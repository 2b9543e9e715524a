//! Scripted sessions: an initiator written as PDUs against a target over a disk in memory.

use std::sync::Arc;

use super::*;
use crate::scsi::{Identity, MemDisk, Sense};
use crate::wire::text;
use crate::wire::*;

const NAME: &str = "iqn.2026-01.org.provision:test";

struct Initiator {
    conn: Connection,
    cmd_sn: u32,
    itt: u32,
    digests: Digests,
    last_keys: Vec<(String, String)>,
}

fn target(cfg: TargetConfig, read_only: bool) -> (Arc<Target>, Arc<MemDisk>) {
    let disk = Arc::new(MemDisk::new(
        (0..1 << 20).map(|i: u32| (i % 253) as u8).collect(),
        read_only,
    ));
    let lu = Arc::new(Lu::new(disk.clone(), Identity::for_target(NAME)));
    (Arc::new(Target::new(cfg, lu)), disk)
}

impl Initiator {
    fn new(t: &Arc<Target>) -> Initiator {
        Initiator {
            conn: Connection::new(t.clone(), [0x5a; 16]),
            cmd_sn: 1,
            itt: 1,
            digests: Digests::default(),
            last_keys: Vec::new(),
        }
    }

    fn exchange(&mut self, pdu: Pdu) -> Vec<Pdu> {
        let bytes = pdu.to_bytes(self.digests).unwrap();
        self.conn.handle_input(&bytes).unwrap();
        let mut out = Vec::new();
        self.conn.poll_transmit(&mut out);
        let mut pdus = Vec::new();
        let mut at = 0;
        while let Some((p, n)) = Pdu::parse(&out[at..], self.digests, 1 << 24).unwrap() {
            pdus.push(p);
            at += n;
        }
        assert_eq!(at, out.len());
        pdus
    }

    fn login(&mut self, csg: u8, nsg: u8, transit: bool, keys: &[(&str, &str)]) -> LoginResponse {
        let pairs: Vec<(String, String)> = keys
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        let req = LoginRequest {
            transit,
            cont: false,
            csg,
            nsg,
            version_max: 0,
            version_min: 0,
            isid: [0x80, 0, 0, 0, 0, 1],
            tsih: 0,
            itt: 0,
            cid: 0,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: 0,
        };
        let mut r = self.exchange(Pdu::with_data(Bhs::LoginRequest(req), text::emit(&pairs)));
        assert_eq!(r.len(), 1);
        let p = r.remove(0);
        let Bhs::LoginResponse(resp) = p.bhs else {
            panic!("{p:?}")
        };
        self.last_keys = text::parse(&p.data).unwrap();
        resp
    }

    fn key(&self, k: &str) -> Option<String> {
        self.last_keys
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    }

    fn command(
        &mut self,
        cdb: &[u8],
        read: bool,
        write: bool,
        edtl: u32,
        data: Vec<u8>,
        final_: bool,
    ) -> Vec<Pdu> {
        let mut c = [0u8; 16];
        c[..cdb.len()].copy_from_slice(cdb);
        self.itt += 1;
        let cmd = ScsiCommand {
            immediate: false,
            final_,
            read,
            write,
            attr: 1,
            lun: 0,
            itt: self.itt,
            expected_len: edtl,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: 0,
            cdb: c,
        };
        self.cmd_sn += 1;
        self.exchange(Pdu::with_data(Bhs::ScsiCommand(cmd), data))
    }
}

fn normal_login(i: &mut Initiator, extra: &[(&str, &str)]) {
    let r = i.login(
        0,
        1,
        true,
        &[
            ("InitiatorName", "iqn.2026-01.test:init"),
            ("SessionType", "Normal"),
            ("TargetName", NAME),
            ("AuthMethod", "None"),
        ],
    );
    assert_eq!((r.status_class, r.transit, r.nsg), (0, true, 1));
    assert_eq!(i.key("TargetPortalGroupTag").as_deref(), Some("1"));
    let mut keys = vec![
        ("HeaderDigest", "None"),
        ("DataDigest", "None"),
        ("MaxRecvDataSegmentLength", "8192"),
        ("MaxBurstLength", "262144"),
        ("FirstBurstLength", "65536"),
    ];
    keys.extend_from_slice(extra);
    let r = i.login(1, 3, true, &keys);
    assert_eq!((r.status_class, r.transit, r.nsg), (0, true, 3));
    assert_ne!(r.tsih, 0);
    assert!(matches!(
        i.conn.poll_event(),
        Some(Event::LoggedIn {
            session_type: SessionType::Normal,
            ..
        })
    ));
}

#[test]
fn discovery_send_targets() {
    let mut cfg = TargetConfig::new(NAME);
    cfg.portal = "127.0.0.1:3260,1".into();
    let (t, _) = target(cfg, true);
    let mut i = Initiator::new(&t);
    let r = i.login(
        0,
        3,
        true,
        &[
            ("InitiatorName", "iqn.x:y"),
            ("SessionType", "Discovery"),
            ("AuthMethod", "None"),
        ],
    );
    assert_eq!((r.status_class, r.nsg), (0, 3));
    let req = TextRequest {
        immediate: true,
        final_: true,
        cont: false,
        lun: 0,
        itt: 9,
        ttt: RESERVED_TAG,
        cmd_sn: 1,
        exp_stat_sn: 0,
    };
    let r = i.exchange(Pdu::with_data(
        Bhs::TextRequest(req),
        b"SendTargets=All\0".to_vec(),
    ));
    let keys = text::parse(&r[0].data).unwrap();
    assert_eq!(
        keys,
        [
            ("TargetName".into(), NAME.into()),
            ("TargetAddress".into(), "127.0.0.1:3260,1".into())
        ]
    );
    // SCSI commands are refused in a discovery session.
    let r = i.command(&[0, 0, 0, 0, 0, 0], false, false, 0, vec![], true);
    assert!(matches!(r[0].bhs, Bhs::Reject(Reject { reason: 4, .. })));
}

#[test]
fn wrong_target_and_missing_name_fail() {
    let (t, _) = target(TargetConfig::new(NAME), false);
    let mut i = Initiator::new(&t);
    let r = i.login(
        0,
        1,
        true,
        &[("InitiatorName", "iqn.x:y"), ("TargetName", "iqn.nope:x")],
    );
    assert_eq!((r.status_class, r.status_detail), (2, 3));
    assert!(i.conn.is_closed());
    let mut i = Initiator::new(&t);
    let r = i.login(0, 1, true, &[("TargetName", NAME)]);
    assert_eq!((r.status_class, r.status_detail), (2, 7));
}

#[test]
fn chap_one_way_and_mutual() {
    let mut cfg = TargetConfig::new(NAME);
    cfg.chap = Some(ChapCredentials {
        user: "alice".into(),
        secret: b"secretsecret".to_vec(),
    });
    cfg.mutual_chap = Some(ChapCredentials {
        user: "target".into(),
        secret: b"targetsecret".to_vec(),
    });
    let (t, _) = target(cfg, false);
    for (mutual, good) in [(false, true), (true, true), (false, false)] {
        let mut i = Initiator::new(&t);
        let base = [
            ("InitiatorName", "iqn.x:y"),
            ("TargetName", NAME),
            ("AuthMethod", "CHAP,None"),
        ];
        let r = i.login(0, 1, true, &base);
        assert_eq!((r.status_class, r.transit), (0, false));
        assert_eq!(i.key("AuthMethod").as_deref(), Some("CHAP"));
        i.login(0, 1, true, &[("CHAP_A", "5")]);
        let id: u8 = i.key("CHAP_I").unwrap().parse().unwrap();
        let c = i.key("CHAP_C").unwrap();
        let c: Vec<u8> = (2..c.len())
            .step_by(2)
            .map(|k| u8::from_str_radix(&c[k..k + 2], 16).unwrap())
            .collect();
        let secret: &[u8] = if good {
            b"secretsecret"
        } else {
            b"wrongwrong!!"
        };
        let resp = crate::digest::md5(&[&[id], secret, &c]);
        let resp_hex: String = std::iter::once("0x".to_owned())
            .chain(resp.iter().map(|b| format!("{b:02x}")))
            .collect();
        let mut keys = vec![("CHAP_N", "alice"), ("CHAP_R", resp_hex.as_str())];
        if mutual {
            keys.push(("CHAP_I", "7"));
            keys.push(("CHAP_C", "0x0102030405060708"));
        }
        let r = i.login(0, 1, true, &keys);
        if !good {
            assert_eq!((r.status_class, r.status_detail), (2, 1));
            continue;
        }
        assert_eq!((r.status_class, r.transit), (0, true));
        if mutual {
            let expect = crate::digest::md5(&[&[7], b"targetsecret", &[1, 2, 3, 4, 5, 6, 7, 8]]);
            let hex: String = std::iter::once("0x".to_owned())
                .chain(expect.iter().map(|b| format!("{b:02x}")))
                .collect();
            assert_eq!(i.key("CHAP_R"), Some(hex));
        }
    }
    // Skipping the security stage is refused when CHAP is required.
    let mut i = Initiator::new(&t);
    let r = i.login(
        1,
        3,
        true,
        &[("InitiatorName", "iqn.x:y"), ("TargetName", NAME)],
    );
    assert_eq!((r.status_class, r.status_detail), (2, 1));
}

#[test]
fn read_with_phase_collapse_and_residuals() {
    let (t, disk) = target(TargetConfig::new(NAME), false);
    let mut i = Initiator::new(&t);
    normal_login(&mut i, &[]);
    // READ(10) of 40 blocks: 20480 bytes in Data-In PDUs of at most 8192.
    let r = i.command(
        &[0x28, 0, 0, 0, 0, 4, 0, 0, 40, 0],
        true,
        false,
        20480,
        vec![],
        true,
    );
    assert_eq!(r.len(), 3);
    let mut got = Vec::new();
    for (n, p) in r.iter().enumerate() {
        let Bhs::DataIn(d) = &p.bhs else { panic!() };
        assert_eq!(d.data_sn, n as u32);
        assert_eq!(d.has_status, n == 2);
        got.extend_from_slice(&p.data);
    }
    assert_eq!(got, disk.contents()[2048..2048 + 20480]);
    // INQUIRY with a larger allocation than the data: underflow.
    let r = i.command(&[0x12, 0, 0, 0, 255, 0], true, false, 255, vec![], true);
    let Bhs::DataIn(d) = &r[0].bhs else { panic!() };
    assert!(d.underflow && d.has_status);
    assert_eq!(d.residual, 255 - r[0].data.len() as u32);
    // Out of range: SCSI Response with sense.
    let r = i.command(
        &[0x28, 0, 0, 0x10, 0, 0, 0, 0, 1, 0],
        true,
        false,
        512,
        vec![],
        true,
    );
    let Bhs::ScsiResponse(s) = &r[0].bhs else {
        panic!()
    };
    assert_eq!(s.status, 2);
    assert_eq!(&r[0].data[2..], &Sense::LBA_OUT_OF_RANGE.fixed());
}

#[test]
fn writes_immediate_unsolicited_and_r2t() {
    let (t, disk) = target(TargetConfig::new(NAME), false);
    let mut i = Initiator::new(&t);
    normal_login(
        &mut i,
        &[
            ("InitialR2T", "No"),
            ("ImmediateData", "Yes"),
            ("MaxBurstLength", "16384"),
            ("FirstBurstLength", "8192"),
        ],
    );
    let payload: Vec<u8> = (0..32768u32).map(|x| (x * 7) as u8).collect();
    // 64 blocks: 4096 immediate, 4096 unsolicited, then R2Ts of 16384 and 8192.
    let r = i.command(
        &[0x2a, 0, 0, 0, 0, 8, 0, 0, 64, 0],
        false,
        true,
        32768,
        payload[..4096].to_vec(),
        false,
    );
    assert!(r.is_empty());
    let itt = i.itt;
    let dout = |ttt, off: usize, len: usize, fin, sn| {
        Pdu::with_data(
            Bhs::DataOut(DataOut {
                final_: fin,
                lun: 0,
                itt,
                ttt,
                exp_stat_sn: 0,
                data_sn: sn,
                buffer_offset: off as u32,
            }),
            payload[off..off + len].to_vec(),
        )
    };
    let r = i.exchange(dout(RESERVED_TAG, 4096, 4096, true, 0));
    let Bhs::R2t(r2t) = &r[0].bhs else {
        panic!("{r:?}")
    };
    assert_eq!(
        (r2t.buffer_offset, r2t.desired_len, r2t.r2t_sn),
        (8192, 16384, 0)
    );
    let ttt = r2t.ttt;
    assert!(i.exchange(dout(ttt, 8192, 8192, false, 0)).is_empty());
    let r = i.exchange(dout(ttt, 16384, 8192, true, 1));
    let Bhs::R2t(r2t) = &r[0].bhs else {
        panic!("{r:?}")
    };
    assert_eq!(
        (r2t.buffer_offset, r2t.desired_len, r2t.r2t_sn),
        (24576, 8192, 1)
    );
    let ttt = r2t.ttt;
    let r = i.exchange(dout(ttt, 24576, 8192, true, 0));
    let Bhs::ScsiResponse(s) = &r[0].bhs else {
        panic!("{r:?}")
    };
    assert_eq!((s.status, s.underflow, s.overflow), (0, false, false));
    assert_eq!(&disk.contents()[4096..4096 + 32768], &payload[..]);
    // Data-Out for a task that does not exist: Reject.
    let r = i.exchange(Pdu::with_data(
        Bhs::DataOut(DataOut {
            final_: true,
            lun: 0,
            itt: 999,
            ttt: 5,
            exp_stat_sn: 0,
            data_sn: 0,
            buffer_offset: 0,
        }),
        vec![0; 512],
    ));
    assert!(matches!(r[0].bhs, Bhs::Reject(Reject { reason: 9, .. })));
}

#[test]
fn read_only_write_protect_window_nop_tmf_logout() {
    let (t, _) = target(TargetConfig::new(NAME), true);
    let mut i = Initiator::new(&t);
    normal_login(&mut i, &[]);
    let r = i.command(
        &[0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0],
        false,
        true,
        512,
        vec![0; 512],
        true,
    );
    assert_eq!(&r[0].data[2..], &Sense::WRITE_PROTECTED.fixed());
    // A CmdSN far outside the window is ignored.
    i.cmd_sn += 1000;
    assert!(
        i.command(&[0, 0, 0, 0, 0, 0], false, false, 0, vec![], true)
            .is_empty()
    );
    i.cmd_sn -= 1001;
    let r = i.command(&[0, 0, 0, 0, 0, 0], false, false, 0, vec![], true);
    assert!(matches!(
        r[0].bhs,
        Bhs::ScsiResponse(ScsiResponse { status: 0, .. })
    ));
    // NOP-Out ping echoes its data.
    let nop = NopOut {
        immediate: true,
        lun: 0,
        itt: 77,
        ttt: RESERVED_TAG,
        cmd_sn: i.cmd_sn,
        exp_stat_sn: 0,
    };
    let r = i.exchange(Pdu::with_data(Bhs::NopOut(nop), b"ping".to_vec()));
    assert!(matches!(&r[0].bhs, Bhs::NopIn(n) if n.itt == 77));
    assert_eq!(r[0].data, b"ping");
    // ABORT TASK of a finished task, LUN RESET.
    for (function, referenced_tag, want) in [
        (tmf::ABORT_TASK, 2, 1),
        (tmf::LOGICAL_UNIT_RESET, RESERVED_TAG, 0),
    ] {
        let req = TaskMgmtRequest {
            immediate: true,
            function,
            lun: 0,
            itt: 80,
            referenced_tag,
            cmd_sn: i.cmd_sn,
            exp_stat_sn: 0,
            ref_cmd_sn: 1,
            exp_data_sn: 0,
        };
        let r = i.exchange(Pdu::new(Bhs::TaskMgmtRequest(req)));
        assert!(
            matches!(&r[0].bhs, Bhs::TaskMgmtResponse(t) if t.response == want),
            "{r:?}"
        );
    }
    // An unknown opcode is rejected; the connection goes on.
    let mut raw = [0u8; 48];
    raw[0] = 0x1c;
    i.conn.handle_input(&raw).unwrap();
    let mut out = Vec::new();
    i.conn.poll_transmit(&mut out);
    assert_eq!(out[0], 0x3f);
    assert_eq!(out[2], reject_reason::COMMAND_NOT_SUPPORTED);
    let req = LogoutRequest {
        immediate: true,
        reason: 0,
        itt: 90,
        cid: 0,
        cmd_sn: i.cmd_sn,
        exp_stat_sn: 0,
    };
    let r = i.exchange(Pdu::new(Bhs::LogoutRequest(req)));
    assert!(matches!(
        r[0].bhs,
        Bhs::LogoutResponse(LogoutResponse { response: 0, .. })
    ));
    assert!(i.conn.is_closed());
}

#[test]
fn digests_after_login() {
    let (t, _) = target(TargetConfig::new(NAME), false);
    let mut i = Initiator::new(&t);
    normal_login(&mut i, &[]);
    let mut i = Initiator::new(&t);
    i.login(
        0,
        1,
        true,
        &[("InitiatorName", "iqn.x:y"), ("TargetName", NAME)],
    );
    let r = i.login(
        1,
        3,
        true,
        &[("HeaderDigest", "CRC32C,None"), ("DataDigest", "CRC32C")],
    );
    assert_eq!(r.status_class, 0);
    i.digests = Digests {
        header: true,
        data: true,
    };
    let r = i.command(
        &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0],
        true,
        false,
        512,
        vec![],
        true,
    );
    assert_eq!(r[0].data.len(), 512);
    // A corrupted header digest ends the connection.
    let mut bytes = Pdu::new(Bhs::NopOut(NopOut {
        immediate: true,
        lun: 0,
        itt: 1,
        ttt: RESERVED_TAG,
        cmd_sn: 0,
        exp_stat_sn: 0,
    }))
    .to_bytes(i.digests)
    .unwrap();
    bytes[48] ^= 1;
    assert!(i.conn.handle_input(&bytes).is_err());
    assert!(i.conn.is_closed());
}

#[test]
fn burst_overrun_and_data_digest_error() {
    let (t, _) = target(TargetConfig::new(NAME), false);
    let mut i = Initiator::new(&t);
    normal_login(
        &mut i,
        &[("ImmediateData", "No"), ("MaxBurstLength", "4096")],
    );
    let r = i.command(
        &[0x2a, 0, 0, 0, 0, 0, 0, 0, 16, 0],
        false,
        true,
        8192,
        vec![],
        true,
    );
    let Bhs::R2t(r2t) = &r[0].bhs else {
        panic!("{r:?}")
    };
    assert_eq!(r2t.desired_len, 4096);
    // More data than the R2T asked for: Reject (invalid PDU field).
    let over = DataOut {
        final_: true,
        lun: 0,
        itt: i.itt,
        ttt: r2t.ttt,
        exp_stat_sn: 0,
        data_sn: 0,
        buffer_offset: 0,
    };
    let r = i.exchange(Pdu::with_data(Bhs::DataOut(over.clone()), vec![1; 8192]));
    assert!(
        matches!(r[0].bhs, Bhs::Reject(Reject { reason: 9, .. })),
        "{r:?}"
    );
    // Immediate data when ImmediateData=No: Reject (protocol error).
    let r = i.command(
        &[0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0],
        false,
        true,
        512,
        vec![1; 512],
        true,
    );
    assert!(
        matches!(r[0].bhs, Bhs::Reject(Reject { reason: 4, .. })),
        "{r:?}"
    );

    // With DataDigest, a corrupted data segment is answered Reject 0x02, then closed.
    let mut i = Initiator::new(&t);
    i.login(
        0,
        1,
        true,
        &[("InitiatorName", "iqn.x:y"), ("TargetName", NAME)],
    );
    i.login(1, 3, true, &[("DataDigest", "CRC32C")]);
    i.digests = Digests {
        header: false,
        data: true,
    };
    let nop = NopOut {
        immediate: true,
        lun: 0,
        itt: 3,
        ttt: RESERVED_TAG,
        cmd_sn: 1,
        exp_stat_sn: 0,
    };
    let mut bytes = Pdu::with_data(Bhs::NopOut(nop), b"ping".to_vec())
        .to_bytes(i.digests)
        .unwrap();
    bytes[49] ^= 0xff;
    assert!(i.conn.handle_input(&bytes).is_err());
    let mut out = Vec::new();
    i.conn.poll_transmit(&mut out);
    let (reject, _) = Pdu::parse(&out, i.digests, 1 << 16).unwrap().unwrap();
    assert!(matches!(reject.bhs, Bhs::Reject(Reject { reason: 2, .. })));
    assert!(i.conn.is_closed());
}

/// A catalog of two initiators, each with its own LUN and one of two secrets.
struct TwoDevices {
    lus: [Arc<Lu>; 2],
}

impl Catalog for TwoDevices {
    fn security(&self, initiator: &str, target: Option<&str>) -> Result<Security, LoginRefusal> {
        match (initiator, target) {
            ("iqn.test:stranger", _) => Err(LoginRefusal::Forbidden("a stranger".into())),
            (_, Some(t)) if !t.starts_with("iqn.test:disk") => {
                Err(LoginRefusal::NotFound(format!("no {t}")))
            }
            _ => Ok(Security::Chap),
        }
    }

    fn login(&self, attempt: &LoginAttempt<'_>) -> Result<Grant, LoginRefusal> {
        let device = match attempt.initiator {
            "iqn.test:dev0" => 0,
            "iqn.test:dev1" => 1,
            _ => return Err(LoginRefusal::AuthenticationFailed("unknown".into())),
        };
        // Either secret of the device: its boot's or its attach secret.
        let secrets: [&[u8]; 2] = [b"boot-secret-0", b"attach-secret"];
        let proof = attempt.chap.as_ref().expect("CHAP was asked for");
        if !secrets.iter().any(|s| proof.verifies(s)) {
            return Err(LoginRefusal::AuthenticationFailed("wrong secret".into()));
        }
        if attempt.target == Some("iqn.test:disk-broken") {
            return Err(LoginRefusal::Unavailable("cannot open".into()));
        }
        Ok(Grant {
            lu: attempt.target.map(|_| self.lus[device].clone()),
            targets: vec![format!("iqn.test:disk{device}")],
            lease: None,
            label: format!("dev{device}"),
        })
    }
}

/// Logs in to `target` as `initiator` with CHAP (`secret`), the names in the order a
/// peer may choose; returns the final status.
fn chap_login(i: &mut Initiator, initiator: &str, target: &str, secret: &[u8]) -> (u8, u8) {
    // TargetName before InitiatorName: the catalog still sees both.
    let r = i.login(
        0,
        1,
        false,
        &[
            ("AuthMethod", "CHAP"),
            ("TargetName", target),
            ("InitiatorName", initiator),
        ],
    );
    if r.status_class != 0 {
        return (r.status_class, r.status_detail);
    }
    i.login(0, 1, false, &[("CHAP_A", "5")]);
    let id: u8 = i.key("CHAP_I").unwrap().parse().unwrap();
    let c = i.key("CHAP_C").unwrap();
    let c: Vec<u8> = (2..c.len())
        .step_by(2)
        .map(|k| u8::from_str_radix(&c[k..k + 2], 16).unwrap())
        .collect();
    let resp = crate::digest::md5(&[&[id], secret, &c]);
    let hex: String = std::iter::once("0x".to_owned())
        .chain(resp.iter().map(|b| format!("{b:02x}")))
        .collect();
    let r = i.login(0, 1, true, &[("CHAP_N", "anyone"), ("CHAP_R", &hex)]);
    (r.status_class, r.status_detail)
}

#[test]
fn a_catalog_decides_each_login() {
    let lu = |byte: u8| {
        let disk = Arc::new(MemDisk::new(vec![byte; 1 << 16], false));
        Arc::new(Lu::new(disk, Identity::for_target("iqn.test:disk")))
    };
    let catalog = Arc::new(TwoDevices {
        lus: [lu(0xa0), lu(0xb1)],
    });
    let t = Arc::new(Target::with_catalog(TargetConfig::new("unused"), catalog));
    // Initiator, target, CHAP secret, and the login's status.
    type Case<'a> = (&'a str, &'a str, &'a [u8], (u8, u8));
    let cases: [Case<'_>; 6] = [
        ("iqn.test:dev0", "iqn.test:disk0", b"boot-secret-0", (0, 0)),
        ("iqn.test:dev1", "iqn.test:disk1", b"attach-secret", (0, 0)),
        ("iqn.test:dev0", "iqn.test:disk0", b"guessed-wrong", (2, 1)),
        (
            "iqn.test:stranger",
            "iqn.test:disk0",
            b"boot-secret-0",
            (2, 2),
        ),
        ("iqn.test:dev0", "iqn.test:other", b"boot-secret-0", (2, 3)),
        (
            "iqn.test:dev0",
            "iqn.test:disk-broken",
            b"boot-secret-0",
            (3, 1),
        ),
    ];
    for (initiator, target, secret, status) in cases {
        let mut i = Initiator::new(&t);
        assert_eq!(
            chap_login(&mut i, initiator, target, secret),
            status,
            "{initiator} to {target}"
        );
        if status != (0, 0) {
            assert!(i.conn.is_closed());
            continue;
        }
        let r = i.login(1, 3, true, &[("MaxRecvDataSegmentLength", "8192")]);
        assert_eq!((r.status_class, r.transit), (0, true));
        assert_eq!(
            i.conn.grant().map(|g| g.label.as_str()),
            Some(&initiator[9..])
        );
        // Each login reads its own LUN.
        let r = i.command(
            &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0],
            true,
            false,
            512,
            vec![],
            true,
        );
        let Bhs::DataIn(_) = &r[0].bhs else {
            panic!("{r:?}")
        };
        let want = if initiator.ends_with('0') { 0xa0 } else { 0xb1 };
        assert!(r[0].data.iter().all(|&b| b == want));
        // SendTargets answers the grant's names.
        let text = TextRequest {
            immediate: true,
            final_: true,
            cont: false,
            lun: 0,
            itt: 99,
            ttt: RESERVED_TAG,
            cmd_sn: i.cmd_sn,
            exp_stat_sn: 0,
        };
        let r = i.exchange(Pdu::with_data(
            Bhs::TextRequest(text),
            b"SendTargets=\0".to_vec(),
        ));
        let answer = String::from_utf8_lossy(&r[0].data).into_owned();
        assert!(answer.contains(&format!("TargetName={target}")), "{answer}");
    }
    // A login names one target: another name later in it is an initiator error.
    let mut i = Initiator::new(&t);
    let keys = [
        ("InitiatorName", "iqn.test:dev0"),
        ("TargetName", "iqn.test:disk0"),
        ("AuthMethod", "CHAP"),
    ];
    assert_eq!(i.login(0, 1, false, &keys).status_class, 0);
    let r = i.login(
        0,
        1,
        false,
        &[("TargetName", "iqn.test:disk1"), ("CHAP_A", "5")],
    );
    assert_eq!((r.status_class, r.status_detail), (2, 0));
}
