//! [`Tgt`]: tgt's `tgtd` serving one file as LUN 1 of one target on a loopback portal,
//! the peer of the iSCSI tests and benchmark (root only; its own portal and control
//! port, so it meets no other tgtd).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::{ChildGuard, free_tcp_port, run, wait_for_tcp};

/// A running tgtd; stopped on drop.
pub struct Tgt {
    _child: ChildGuard,
    /// `iscsi://127.0.0.1:PORT/IQN/1`: the file's LUN (LUN 0 is tgt's controller).
    pub lun: String,
}

impl Tgt {
    /// Starts `tgtd` (its path) with `tgtadm` (its path) serving `file` as LUN 1 of
    /// target `iqn`.
    ///
    /// # Panics
    ///
    /// When tgtd does not start or tgtadm fails.
    pub fn start(tgtd: &Path, tgtadm: &Path, iqn: &str, file: &Path) -> Tgt {
        let port = free_tcp_port();
        let control = (free_tcp_port() % 1000 + 100).to_string();
        let child = ChildGuard::spawn(Command::new(tgtd).args([
            "-f",
            "-C",
            &control,
            "--iscsi",
            &format!("portal=127.0.0.1:{port}"),
        ]));
        wait_for_tcp(
            format!("127.0.0.1:{port}").parse().unwrap(),
            Duration::from_secs(20),
        );
        let adm = |args: &[&str]| {
            run(Command::new(tgtadm)
                .args(["-C", &control, "--lld", "iscsi"])
                .args(args))
        };
        adm(&["--op", "new", "--mode", "target", "--tid", "1", "-T", iqn]);
        let file = file.to_str().expect("a UTF-8 path");
        adm(&[
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            "1",
            "--lun",
            "1",
            "-b",
            file,
        ]);
        adm(&[
            "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL",
        ]);
        Tgt {
            _child: child,
            lun: format!("iscsi://127.0.0.1:{port}/{iqn}/1"),
        }
    }
}
