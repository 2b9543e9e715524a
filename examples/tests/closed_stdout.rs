//! Every command whose stdout is a pipe with no reader (`vhd map big.vhd | head` once
//! `head` has gone) ends quietly: no panic message, the status a shell reports for a
//! tool killed by SIGPIPE. `println!` used to panic there ("failed printing to stdout").

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `cmd` with stdout a pipe whose read end is already closed.
fn with_closed_stdout(cmd: &mut Command) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let child = cmd
        .stdout(writer)
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // `cmd` keeps a copy of the write end; the child has its own.
    child.wait_with_output().unwrap()
}

fn assert_quiet(what: &str, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert_eq!(out.status.code(), Some(141), "{what}: {stderr}");
    assert!(stderr.is_empty(), "{what}: {stderr}");
}

fn vhd(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vhd"));
    with_closed_stdout(cmd.args(args).current_dir(dir))
}

#[test]
fn vhd_ends_quietly_when_stdout_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let made = Command::new(env!("CARGO_BIN_EXE_vhd"))
        .args(["create", "big.vhd", "--size", "1G"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(made.status.success());
    for args in [
        &["info", "big.vhd"][..],
        &["info", "big.vhd", "--json"],
        &["map", "big.vhd"],
        &["check", "big.vhd"],
        &["create", "other.vhd", "--size", "1M"],
    ] {
        assert_quiet(&format!("vhd {args:?}"), &vhd(d, args));
    }
}

#[test]
fn provision_ends_quietly_when_stdout_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    testkit::run(
        Command::new(env!("CARGO_BIN_EXE_provision"))
            .arg("--store")
            .arg(&store)
            .args(["store", "init"]),
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_provision"));
    cmd.arg("--store").arg(&store);
    let out = with_closed_stdout(cmd.args(["vdisk", "create", "os", "--size", "1M"]));
    assert_quiet("provision vdisk create", &out);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_provision"));
    cmd.arg("--store").arg(&store);
    assert_quiet(
        "provision vdisk list",
        &with_closed_stdout(cmd.args(["vdisk", "list"])),
    );
}
