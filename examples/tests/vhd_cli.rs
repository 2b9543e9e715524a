//! The `vhd` command end to end, with qemu-img as the independent reference.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn vhd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vhd"))
}

fn run_ok(args: &[&str], dir: &Path) -> String {
    testkit::run(vhd().args(args).current_dir(dir))
}

fn run_any(args: &[&str], dir: &Path) -> Output {
    testkit::run_output(vhd().args(args).current_dir(dir), Duration::from_secs(60))
}

fn json(args: &[&str], dir: &Path) -> serde_json::Value {
    serde_json::from_str(&run_ok(args, dir)).expect("valid JSON")
}

/// Writes a raw file with data in a few places and zeros elsewhere.
fn sample_raw(path: &Path, size: usize) -> Vec<u8> {
    let mut raw = vec![0u8; size];
    for (i, off) in [0usize, 12345, 3 << 20, size - 4096]
        .into_iter()
        .enumerate()
    {
        for (j, b) in raw[off..off + 4096].iter_mut().enumerate() {
            *b = (i * 31 + j * 7 + 1) as u8;
        }
    }
    std::fs::write(path, &raw).unwrap();
    raw
}

fn qemu_compare(qemu_img: &Path, a: &Path, a_fmt: &str, b: &Path) {
    testkit::run(
        Command::new(qemu_img)
            .args(["compare", "-q", "-f", a_fmt, "-F", "raw"])
            .arg(a)
            .arg(b),
    );
}

#[test]
fn create_and_info() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run_ok(&["create", "d.vhd", "--size", "20G"], d);
    let v = json(&["info", "d.vhd", "--json"], d);
    assert_eq!(v["type"], "dynamic");
    assert_eq!(v["virtual_size"], 20u64 << 30);
    assert_eq!(v["block_size"], 2 << 20);
    assert_eq!(v["allocated_blocks"], 0);
    assert!(
        std::fs::metadata(d.join("d.vhd")).unwrap().len() < 100 << 10,
        "a dynamic image starts small"
    );
    run_ok(&["create", "f.vhd", "--size", "3M", "--type", "fixed"], d);
    let v = json(&["info", "f.vhd", "--json"], d);
    assert_eq!(v["type"], "fixed");
    assert_eq!(
        std::fs::metadata(d.join("f.vhd")).unwrap().len(),
        (3 << 20) + 512
    );
    run_ok(
        &["create", "s.vhd", "--size", "64M", "--block-size", "512K"],
        d,
    );
    assert_eq!(
        json(&["info", "s.vhd", "--json"], d)["block_size"],
        512 << 10
    );
    run_ok(&["create", "c.vhd", "--parent", "s.vhd"], d);
    let v = json(&["info", "c.vhd", "--json"], d);
    assert_eq!(v["type"], "differencing");
    assert_eq!(v["parent"]["unicode_name"], "s.vhd");
    assert_eq!(v["chain"][0]["type"], "dynamic");
    let text = run_ok(&["info", "c.vhd"], d);
    assert!(text.contains("W2ru") && text.contains("W2ku"), "{text}");
}

#[test]
fn usage_errors_exit_2_and_runtime_errors_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_eq!(
        run_any(&["create", "x.vhd", "--size", "2X"], d)
            .status
            .code(),
        Some(2)
    );
    assert_eq!(run_any(&["frobnicate"], d).status.code(), Some(2));
    assert_eq!(
        run_any(&["create", "x.vhd", "--size", "1000"], d)
            .status
            .code(),
        Some(1),
        "not a multiple of 512"
    );
    let out = run_any(&["info", "missing.vhd"], d);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.vhd"));
    let help = run_ok(&["--help"], d);
    for sub in ["info", "create", "convert", "merge", "check", "map"] {
        assert!(help.contains(sub), "{help}");
    }
}

#[test]
fn convert_round_trips_match_qemu_img_and_keep_zero_blocks_unallocated() {
    let qemu_img = testkit::require_peer!("qemu-img");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let size = (9 << 20) + 512;
    sample_raw(&d.join("in.raw"), size);
    run_ok(&["convert", "in.raw", "dyn.vhd", "--to", "dynamic"], d);
    run_ok(&["convert", "in.raw", "fix.vhd", "--to", "fixed"], d);
    run_ok(
        &[
            "convert",
            "in.raw",
            "small.vhd",
            "--to",
            "dynamic",
            "--block-size",
            "64K",
        ],
        d,
    );
    for f in ["dyn.vhd", "fix.vhd", "small.vhd"] {
        qemu_compare(&qemu_img, &d.join(f), "vpc", &d.join("in.raw"));
    }
    // Data lies in blocks 0, 1 and 4 of the 2 MiB blocks: the other two stay unallocated.
    assert_eq!(
        json(&["info", "dyn.vhd", "--json"], d)["allocated_blocks"],
        3
    );
    run_ok(&["convert", "dyn.vhd", "back.raw", "--to", "raw"], d);
    assert_eq!(
        std::fs::read(d.join("back.raw")).unwrap(),
        std::fs::read(d.join("in.raw")).unwrap()
    );
    // A qemu-made image converts too.
    testkit::run(
        Command::new(&qemu_img)
            .args([
                "convert",
                "-f",
                "raw",
                "-O",
                "vpc",
                "-o",
                "subformat=dynamic,force_size=on",
            ])
            .arg(d.join("in.raw"))
            .arg(d.join("q.vhd")),
    );
    run_ok(&["convert", "q.vhd", "q.raw", "--to", "raw"], d);
    assert_eq!(
        std::fs::read(d.join("q.raw")).unwrap(),
        std::fs::read(d.join("in.raw")).unwrap()
    );
}

#[test]
fn chain_converts_flat_and_merges_into_its_parent() {
    let qemu_img = testkit::require_peer!("qemu-img");
    let qemu_io = testkit::require_peer!("qemu-io");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run_ok(&["create", "base.vhd", "--size", "8M"], d);
    testkit::run(
        Command::new(&qemu_io)
            .args(["-f", "vpc", "-c", "write -P 0x11 0 3M"])
            .arg(d.join("base.vhd")),
    );
    run_ok(&["create", "child.vhd", "--parent", "base.vhd"], d);
    // Write into the child through the library (qemu has no differencing support).
    {
        let child = vhd::OpenOptions::new(false)
            .open(&d.join("child.vhd"))
            .unwrap();
        use vhd::Disk;
        child.write_at(&[0x22; 5000], 1_000_000).unwrap();
        child.write_at(&[0x33; 4096], 6 << 20).unwrap();
        child.flush().unwrap();
    }
    let mut expect = vec![0u8; 8 << 20];
    expect[..3 << 20].fill(0x11);
    expect[1_000_000..1_005_000].fill(0x22);
    expect[6 << 20..(6 << 20) + 4096].fill(0x33);
    std::fs::write(d.join("expect.raw"), &expect).unwrap();
    run_ok(&["convert", "child.vhd", "flat.vhd", "--to", "dynamic"], d);
    qemu_compare(&qemu_img, &d.join("flat.vhd"), "vpc", &d.join("expect.raw"));
    assert_eq!(
        json(&["info", "flat.vhd", "--json"], d)["allocated_blocks"],
        3
    );
    // The map names which file holds what.
    let map = json(&["map", "child.vhd", "--json"], d);
    let runs = map.as_array().unwrap();
    assert!(runs.iter().any(
        |r| r["file"].as_str().is_some_and(|f| f.ends_with("child.vhd")) && r["offset"] == 999_936
    ));
    assert!(runs.iter().any(|r| r["state"] == "zero"));
    let total: u64 = runs.iter().map(|r| r["length"].as_u64().unwrap()).sum();
    assert_eq!(total, 8 << 20);
    // Merge: the parent now reads as the child did.
    let out = run_ok(&["merge", "child.vhd"], d);
    assert!(out.contains("merged"), "{out}");
    qemu_compare(&qemu_img, &d.join("base.vhd"), "vpc", &d.join("expect.raw"));
    assert_eq!(run_any(&["check", "base.vhd"], d).status.code(), Some(0));
}

#[test]
fn check_passes_good_images_and_names_each_problem_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run_ok(&["create", "good.vhd", "--size", "4M"], d);
    let out = run_any(&["check", "good.vhd"], d);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Corrupt the header checksum and append stray bytes before the footer.
    let path: PathBuf = d.join("good.vhd");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[512 + 100] ^= 0xff;
    std::fs::write(d.join("bad.vhd"), &bytes).unwrap();
    let out = run_any(&["check", "bad.vhd"], d);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("offset 512: dynamic header: checksum wrong"),
        "{text}"
    );
    // Not a VHD at all (and not raw-detectable as one): reported, exit 1.
    std::fs::write(d.join("junk.vhd"), vec![7u8; 4096]).unwrap();
    let out = run_any(&["check", "junk.vhd"], d);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cookie"));
    // The dfvfs fixture with wrong checksums is reported as inconsistent.
    if let Some(fx) = testkit::fixtures() {
        let out = run_any(&["check", fx.join("vhd/image.vhd").to_str().unwrap()], d);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("offset 2099712: footer: checksum wrong")
        );
    }
}

#[test]
fn no_progress_bar_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sample_raw(&d.join("in.raw"), 5 << 20);
    let out = run_any(&["convert", "in.raw", "o.vhd", "--to", "dynamic"], d);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains('[') || !err.contains("=>"),
        "no bar drawn: {err}"
    );
}

/// Runs `args`, expects exit 1 with an error naming the overwrite, and checks `file`
/// is untouched.
fn refused_overwrite(args: &[&str], d: &Path, file: &str) {
    let before = std::fs::read(d.join(file)).unwrap();
    let out = run_any(args, d);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(
        stderr.contains("is the same file as") && stderr.contains("would overwrite"),
        "{args:?}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(std::fs::read(d.join(file)).unwrap(), before, "{args:?}");
}

#[test]
fn convert_refuses_an_output_that_is_the_input_or_its_chain() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sample_raw(&d.join("in.raw"), 4 << 20);
    std::fs::hard_link(d.join("in.raw"), d.join("hard.raw")).unwrap();
    std::os::unix::fs::symlink("in.raw", d.join("soft.raw")).unwrap();
    std::fs::create_dir(d.join("sub")).unwrap();
    for out in ["in.raw", "hard.raw", "soft.raw", "./sub/../in.raw"] {
        for to in ["raw", "fixed", "dynamic"] {
            refused_overwrite(&["convert", "in.raw", out, "--to", to], d, "in.raw");
        }
    }
    // Through the symlink as the input too.
    refused_overwrite(
        &["convert", "soft.raw", "hard.raw", "--to", "raw"],
        d,
        "in.raw",
    );

    // A differencing image's parent is read too.
    run_ok(&["convert", "in.raw", "base.vhd", "--to", "dynamic"], d);
    run_ok(&["create", "child.vhd", "--parent", "base.vhd"], d);
    for out in ["base.vhd", "child.vhd"] {
        refused_overwrite(&["convert", "child.vhd", out, "--to", "fixed"], d, out);
    }
    // Any other output is fine.
    run_ok(&["convert", "child.vhd", "out.raw", "--to", "raw"], d);
    assert_eq!(
        std::fs::read(d.join("out.raw")).unwrap(),
        std::fs::read(d.join("in.raw")).unwrap()
    );
}

#[test]
fn create_refuses_a_child_that_is_its_parent_or_in_its_chain() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run_ok(&["create", "p.vhd", "--size", "1M"], d);
    refused_overwrite(&["create", "p.vhd", "--parent", "p.vhd"], d, "p.vhd");
    std::os::unix::fs::symlink("p.vhd", d.join("link.vhd")).unwrap();
    refused_overwrite(&["create", "link.vhd", "--parent", "p.vhd"], d, "p.vhd");
    refused_overwrite(&["create", "p.vhd", "--parent", "link.vhd"], d, "p.vhd");
    // A chain that leads back to the new child: c -> b -> p; recreating p over c.
    run_ok(&["create", "b.vhd", "--parent", "p.vhd"], d);
    run_ok(&["create", "c.vhd", "--parent", "b.vhd"], d);
    for child in ["p.vhd", "b.vhd", "c.vhd"] {
        refused_overwrite(&["create", child, "--parent", "c.vhd"], d, child);
    }
    assert_eq!(run_any(&["check", "c.vhd"], d).status.code(), Some(0));
}
