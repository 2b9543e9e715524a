//! Names of vDisks, collections and devices through the `provision` command: a name
//! that is not one plain path component is refused with the rule, exit 2 (invalid),
//! and nothing is created, neither in the store nor outside it. `vdisk create ../x`
//! used to write `<store>/../x/v0.vhd` and keep it; `/tmp/x` and `a/b` left folders.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

fn provision(store: &Path, args: &[&str]) -> Output {
    testkit::run_output(
        Command::new(env!("CARGO_BIN_EXE_provision"))
            .arg("--store")
            .arg(store)
            .args(args),
        testkit::DEFAULT_TIMEOUT,
    )
}

/// Every path under `dir`, relative to it.
fn tree(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            out.insert(path.strip_prefix(dir).unwrap().display().to_string());
            if path.is_dir() {
                todo.push(path);
            }
        }
    }
    out
}

/// Runs `args`: refused, and nothing under `top` changed.
fn refused(top: &Path, store: &Path, args: &[&str]) {
    let before = tree(top);
    let out = provision(store, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(tree(top), before, "{args:?} changed files: {stderr}");
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.contains("is not allowed"), "{args:?}: {stderr}");
    assert!(
        stderr.contains("ASCII letters, digits"),
        "{args:?}: {stderr}"
    );
}

#[test]
fn bad_names_are_refused_before_anything_is_created() {
    let top = tempfile::tempdir().unwrap();
    let store = top.path().join("store");
    let outside = top.path().join("outside");
    let absolute = outside.join("x");
    let absolute = absolute.to_str().unwrap();
    // A first, valid vDisk creates the store.
    let ok = provision(&store, &["vdisk", "create", "os", "--size", "1M"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let before = tree(top.path());

    let source = top.path().join("source.raw");
    std::fs::write(&source, vec![1u8; 4096]).unwrap();
    let before_with_source = tree(top.path());
    for name in [absolute, "../x", "a/b", "", ".", "..", ".hidden", "a b"] {
        let t = top.path();
        refused(t, &store, &["vdisk", "create", name, "--size", "1M"]);
        refused(
            t,
            &store,
            &["vdisk", "import", name, source.to_str().unwrap()],
        );
        refused(t, &store, &["collection", "add", name]);
        refused(t, &store, &["device", "add", "52:54:00:00:00:09", name]);
        assert_eq!(tree(t), before_with_source, "after {name:?}");
    }
    assert!(!outside.exists());
    assert!(!top.path().join("x").exists());
    std::fs::remove_file(&source).unwrap();
    assert_eq!(tree(top.path()), before);

    let list = provision(&store, &["vdisk", "list"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.contains("os") && !text.contains("../x"), "{text}");
}
