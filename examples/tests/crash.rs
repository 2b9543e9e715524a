//! SIGKILL in the middle of import, version creation, merge and private writes: the
//! store still opens, what was acknowledged survives, leftovers are reported and can
//! be cleaned.

use std::fs::File;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::process::Stdio;
use std::time::{Duration, Instant};

use testkit::ChildGuard;

const PROVISIOND: &str = env!("CARGO_BIN_EXE_provisiond");
const PROVISION: &str = env!("CARGO_BIN_EXE_provision");
const SIZE: u64 = 192 << 20;

fn provision(store: &Path, args: &[&str]) -> std::process::Output {
    testkit::run_output(
        Command::new(PROVISION).arg("--store").arg(store).args(args),
        testkit::DEFAULT_TIMEOUT,
    )
}

fn ok(store: &Path, args: &[&str]) -> String {
    let out = provision(store, args);
    assert!(
        out.status.success(),
        "provision {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Starts `provision args` and kills it with SIGKILL after `delay`. Returns false when
/// it had finished by then (the kill interrupted nothing).
fn kill_after(store: &Path, args: &[&str], delay: Duration) -> bool {
    let mut child = ChildGuard::spawn(Command::new(PROVISION).arg("--store").arg(store).args(args));
    std::thread::sleep(delay);
    let running = matches!(child.child().try_wait(), Ok(None));
    child.child().kill().ok();
    child.child().wait().ok();
    running
}

/// How long `provision args` takes when nothing kills it.
fn time_of(store: &Path, args: &[&str]) -> Duration {
    let started = Instant::now();
    ok(store, args);
    started.elapsed()
}

/// Points in an operation's run time to kill it at, as fractions of it, the middle
/// first. The loops below stop at the first kill that caught the work half done.
const KILL_POINTS: [f64; 12] = [
    0.5, 0.65, 0.35, 0.8, 0.2, 0.9, 0.55, 0.45, 0.72, 0.28, 0.6, 0.4,
];

/// The number of versions `vdisk` has.
fn version_count(store: &Path, vdisk: &str) -> usize {
    let list: serde_json::Value =
        serde_json::from_str(&ok(store, &["--json", "version", "list", vdisk])).unwrap();
    list.as_array().unwrap().len()
}

/// Flattens the chain of `image` to raw `out` and compares it with `expected` (raw).
fn assert_reads_as(qemu_img: &Path, image: &Path, out: &Path, expected: &Path) {
    let chain = vhd::OpenOptions::new(true).open(image).unwrap();
    vhd::convert(&chain, out, vhd::Target::Raw, &mut |_, _| {}).unwrap();
    testkit::run(
        Command::new(qemu_img)
            .args(["compare", "-f", "raw", "-F", "raw"])
            .arg(expected)
            .arg(out),
    );
}

/// After a crash the store opens, `check` reports or passes, and `--clean` leaves a
/// consistent store. Returns whether there were leftovers.
fn recover(store: &Path) -> bool {
    let check = provision(store, &["store", "check"]);
    assert!(
        matches!(check.status.code(), Some(0 | 4)),
        "store check failed: {check:?}"
    );
    ok(store, &["store", "check", "--clean"]);
    ok(store, &["store", "check"]);
    check.status.code() == Some(4)
}

#[test]
fn killed_operations_leave_a_consistent_store() {
    let qemu_img = testkit::require_peer!("qemu-img");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let source = dir.path().join("source.raw");
    // Non-zero data throughout, so the import has real work to do.
    let data: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8 | 1).collect();
    std::fs::write(&source, &data).unwrap();
    ok(&store, &["vdisk", "create", "seed", "--size", "1M"]);

    // Import, killed at several points: afterwards the vDisk is either whole or absent.
    let mut interrupted = 0;
    for (i, ms) in [5u64, 60, 250].into_iter().enumerate() {
        let name = format!("os{i}");
        kill_after(
            &store,
            &["vdisk", "import", &name, source.to_str().unwrap()],
            Duration::from_millis(ms),
        );
        let leftovers = recover(&store);
        let show = provision(&store, &["vdisk", "show", &name]);
        interrupted += usize::from(leftovers || !show.status.success());
        if show.status.success() {
            let raw = dir.path().join(format!("{name}.raw"));
            testkit::run(
                Command::new(&qemu_img)
                    .args(["convert", "-f", "vpc", "-O", "raw"])
                    .arg(store.join(format!("{name}/v0.vhd")))
                    .arg(&raw),
            );
            testkit::run(
                Command::new(&qemu_img)
                    .args(["compare", "-f", "raw", "-F", "raw"])
                    .arg(&source)
                    .arg(&raw),
            );
        } else {
            assert_eq!(show.status.code(), Some(3), "{show:?}");
        }
    }

    assert!(
        interrupted > 0,
        "no kill interrupted an import: the test proves nothing"
    );

    // Version creation, killed at points spread over its run time until a kill left
    // its file half made (a partial file, or a file the store does not name yet). Over
    // a 2000 GiB base the new image has a 4 MiB table to write and sync: a window
    // worth aiming at.
    ok(&store, &["vdisk", "create", "big", "--size", "2000G"]);
    let took = time_of(&store, &["version", "new", "big"]);
    ok(&store, &["version", "remove", "big"]);
    assert!(recover(&store), "a removed version's file is a leftover");
    let mut caught = 0;
    for point in KILL_POINTS {
        let running = kill_after(&store, &["version", "new", "big"], took.mul_f64(point));
        let leftovers = recover(&store);
        caught += usize::from(running && leftovers);
        match version_count(&store, "big") {
            1 => {}
            2 => {
                // Recorded means whole: a differencing image over the base.
                let v1 = vhd::OpenOptions::new(true)
                    .open(&store.join("big/v1.vhd"))
                    .unwrap();
                assert!(v1.parent().is_some(), "version 1 has no parent");
                ok(&store, &["version", "remove", "big"]);
                recover(&store);
            }
            n => panic!("{n} versions after one `version new`"),
        }
        eprintln!(
            "version new killed at {point} of {took:?}: running {running}, leftovers {leftovers}"
        );
        if caught > 0 {
            break;
        }
    }
    assert!(
        caught > 0,
        "no kill caught `version new` half done (it takes {took:?}): the test proves nothing"
    );

    // Merge, killed the same way: 192 MiB of data to copy into the new base. After
    // each kill the version reads as the source, merged or not.
    ok(&store, &["vdisk", "import", "os", source.to_str().unwrap()]);
    ok(&store, &["version", "new", "os"]);
    let took = time_of(&store, &["version", "merge", "os", "1"]);
    let flat = dir.path().join("flat.raw");
    assert_reads_as(&qemu_img, &store.join("os/v1.vhd"), &flat, &source);
    let mut caught = 0;
    for (n, point) in (2u32..).zip(KILL_POINTS.into_iter().take(6)) {
        ok(&store, &["version", "promote", "os"]);
        ok(&store, &["version", "new", "os"]);
        let file = store.join(format!("os/v{n}.vhd"));
        let running = kill_after(
            &store,
            &["version", "merge", "os", &n.to_string()],
            took.mul_f64(point),
        );
        let leftovers = recover(&store);
        let merged = vhd::OpenOptions::new(true)
            .open(&file)
            .unwrap()
            .parent()
            .is_none();
        assert!(
            !(leftovers && merged),
            "version {n} was merged, yet the merge left files behind"
        );
        caught += usize::from(running && leftovers);
        assert_reads_as(&qemu_img, &file, &flat, &source);
        eprintln!(
            "merge killed at {point} of {took:?}: running {running}, leftovers {leftovers}, merged {merged}"
        );
        if caught > 0 {
            break;
        }
    }
    assert!(
        caught > 0,
        "no kill caught a merge half done (it takes {took:?}): the test proves nothing"
    );
}

/// A store in `dir` with one device `mac` that has a blank vDisk of `size` in private
/// mode, and a provisiond config for it: returns the config, NBD address and URL.
fn private_device(dir: &Path, mac: &str, size: &str) -> (std::path::PathBuf, SocketAddr, String) {
    let store = dir.join("store");
    ok(&store, &["vdisk", "create", "os", "--size", size]);
    ok(&store, &["device", "add", mac, "seat"]);
    ok(&store, &["assign", "seat", "os", "--mode", "private"]);
    let addr: SocketAddr = format!("127.0.0.1:{}", testkit::free_tcp_port())
        .parse()
        .unwrap();
    let config = dir.join("provisiond.toml");
    std::fs::write(
        &config,
        format!("store = \"store\"\n[nbd]\nlisten = \"{addr}\"\n"),
    )
    .unwrap();
    // A hypervisor's way in: the device's attach secret.
    let secret: serde_json::Value =
        serde_json::from_str(&ok(&store, &["--json", "device", "attach-secret", "seat"])).unwrap();
    let secret = secret["attach_secret"].as_str().unwrap();
    (config, addr, format!("nbd://{addr}/{mac}/os/{secret}"))
}

#[test]
fn flushed_private_writes_survive_a_killed_server() {
    let qemu_io = testkit::require_peer!("qemu-io");
    let dir = tempfile::tempdir().unwrap();
    let (config, addr, url) = private_device(dir.path(), "52:54:00:bb:00:01", "16M");

    for round in 1..=3u8 {
        let mut server = ChildGuard::spawn(Command::new(PROVISIOND).arg("--config").arg(&config));
        testkit::wait_for_tcp(addr, Duration::from_secs(20));
        // Everything flushed in earlier rounds is there.
        for earlier in 1..round {
            let offset = ((u64::from(earlier) * 3) << 20) - 1000;
            let cmd = format!("read -P {earlier} {offset} 5000");
            let out = testkit::run(Command::new(&qemu_io).args(["-f", "raw", "-c", &cmd, &url]));
            assert!(
                !out.contains("fail"),
                "round {round}: data of round {earlier} lost: {out}"
            );
        }
        let offset = ((u64::from(round) * 3) << 20) - 1000;
        let cmd = format!("write -P {round} {offset} 5000");
        testkit::run(Command::new(&qemu_io).args(["-f", "raw", "-c", &cmd, "-c", "flush", &url]));
        server.child().kill().unwrap();
        server.child().wait().unwrap();
    }
}

/// The rounds (write, flush, read back) a qemu-io run finished: a round counts when its
/// write succeeded and the read after its flush did too (a failed flush prints a line
/// in between). Panics on a pattern mismatch, which no kill explains.
fn flushed_rounds(output: &str, offset_of: impl Fn(u64) -> u64, rounds: u64) -> Vec<u64> {
    assert!(
        !output.contains("Pattern verification failed"),
        "a read-back differed while the server ran:\n{output}"
    );
    let events: Vec<&str> = output
        .lines()
        .filter(|l| l.starts_with("wrote ") || l.starts_with("read ") || l.contains("failed"))
        .collect();
    (0..rounds)
        .filter(|&i| {
            let offset = offset_of(i);
            let wrote = format!("wrote {CHUNK}/{CHUNK} bytes at offset {offset}");
            let read = format!("read {CHUNK}/{CHUNK} bytes at offset {offset}");
            events.windows(2).any(|w| w[0] == wrote && w[1] == read)
        })
        .collect()
}

/// Starts qemu-io on `url` writing `rounds` chunks (pattern and offset of each from
/// `round`), each followed by a flush and a read-back, its output in `log`.
fn writing_client(
    qemu_io: &Path,
    url: &str,
    log: &Path,
    rounds: u64,
    round: impl Fn(u64) -> (u64, u64),
) -> std::process::Child {
    let mut cmd = Command::new(qemu_io);
    cmd.args(["-f", "raw"]);
    for i in 0..rounds {
        let (p, o) = round(i);
        cmd.arg("-c").arg(format!("write -P {p} {o} {CHUNK}"));
        cmd.args(["-c", "flush"]);
        cmd.arg("-c").arg(format!("read -P {p} {o} {CHUNK}"));
    }
    let log_file = File::create(log).unwrap();
    cmd.arg(url)
        .stdin(Stdio::null())
        .stderr(log_file.try_clone().unwrap())
        .stdout(log_file)
        .spawn()
        .unwrap()
}

/// Bytes per write of the in-flight test.
const CHUNK: u64 = 64 << 10;

#[test]
fn private_writes_in_flight_survive_a_killed_server() {
    let qemu_io = testkit::require_peer!("qemu-io");
    let dir = tempfile::tempdir().unwrap();
    let (config, addr, url) = private_device(dir.path(), "52:54:00:bb:00:02", "64M");
    let private = dir.path().join("store/private/525400bb0002/os.vhd");
    // 896 rounds of 64 KiB: 56 MiB, far more than is written before the kill.
    const ROUNDS: u64 = 896;
    let offset_of = |i: u64| i * CHUNK;
    let pattern = |i: u64| i % 250 + 1;

    let mut caught = false;
    for attempt in 1..=3 {
        let mut server = ChildGuard::spawn(Command::new(PROVISIOND).arg("--config").arg(&config));
        testkit::wait_for_tcp(addr, Duration::from_secs(20));
        let size_before = std::fs::metadata(&private).map_or(0, |m| m.len());
        // A client writing continuously, each write followed by a flush and a read-back.
        let log = dir.path().join(format!("client-{attempt}.log"));
        let mut client =
            writing_client(&qemu_io, &url, &log, ROUNDS, |i| (pattern(i), offset_of(i)));
        // Kill the server once the private disk has grown by 8 MiB: mid-stream.
        let started = Instant::now();
        while std::fs::metadata(&private).map_or(0, |m| m.len()) < size_before + (8 << 20)
            && matches!(client.try_wait(), Ok(None))
            && started.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        let client_was_writing = matches!(client.try_wait(), Ok(None));
        server.child().kill().unwrap();
        server.child().wait().unwrap();
        // The client must notice promptly, not hang.
        let waited = Instant::now();
        while matches!(client.try_wait(), Ok(None)) {
            if waited.elapsed() > Duration::from_secs(60) {
                client.kill().ok();
                client.wait().ok();
                panic!("qemu-io hung after the server was killed");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let output = std::fs::read_to_string(&log).unwrap();
        let flushed = flushed_rounds(&output, offset_of, ROUNDS);

        // After a restart every flushed round reads back.
        let server = ChildGuard::spawn(Command::new(PROVISIOND).arg("--config").arg(&config));
        testkit::wait_for_tcp(addr, Duration::from_secs(20));
        let mut check = Command::new(&qemu_io);
        check.args(["-f", "raw"]);
        for &i in &flushed {
            let cmd = format!("read -P {} {} {CHUNK}", pattern(i), offset_of(i));
            check.arg("-c").arg(cmd);
        }
        let out = testkit::run(check.arg(&url));
        assert!(
            !out.contains("fail"),
            "attempt {attempt}: flushed writes lost in the kill:\n{out}"
        );
        drop(server);

        // Interrupted for real: some rounds were flushed, the client was still
        // writing when the server died, and its next request failed.
        let interrupted = (flushed.len() as u64) < ROUNDS && output.contains("failed");
        eprintln!(
            "attempt {attempt}: {} of {ROUNDS} rounds flushed before the kill",
            flushed.len()
        );
        if client_was_writing && !flushed.is_empty() && interrupted {
            caught = true;
            break;
        }
        eprintln!(
            "attempt {attempt}: the kill did not land mid-stream ({} rounds flushed, client writing: {client_was_writing})",
            flushed.len()
        );
    }
    assert!(
        caught,
        "no kill landed while the client was writing: the test proves nothing"
    );
}

/// Trials of the standard-mode kill test: 20, or `PROVISION_KILL_TRIALS`
/// (`testkit/scripts/kill-trials.sh` runs 100).
fn kill_trials() -> u64 {
    std::env::var("PROVISION_KILL_TRIALS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20)
}

/// A standard-mode device writes, flushes and reads back without pause while
/// provisiond is killed (SIGKILL, or one time in four stopped with SIGTERM) at a random
/// moment, [`kill_trials`] times; after each
/// restart its reconnect with the same boot token sees every round it saw flushed, in
/// every earlier trial too: its write cache is on disk. Never the bare version.
#[test]
fn flushed_standard_mode_writes_survive_killed_servers() {
    let qemu_io = testkit::require_peer!("qemu-io");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // Each trial writes its own 8 MiB region.
    let trials = kill_trials();
    let size = format!("{}M", trials * 8 + 8);
    ok(&store, &["vdisk", "create", "os", "--size", &size]);
    ok(&store, &["device", "add", "52:54:00:bb:00:03", "seat"]);
    ok(&store, &["assign", "seat", "os", "--mode", "standard"]);
    let addr: SocketAddr = format!("127.0.0.1:{}", testkit::free_tcp_port())
        .parse()
        .unwrap();
    let api = format!("127.0.0.1:{}", testkit::free_tcp_port());
    let config = dir.path().join("provisiond.toml");
    std::fs::write(
        &config,
        format!("store = \"store\"\n[nbd]\nlisten = \"{addr}\"\n[api]\nlisten = \"{api}\"\n"),
    )
    .unwrap();
    let start = || {
        let server = ChildGuard::spawn(Command::new(PROVISIOND).arg("--config").arg(&config));
        testkit::wait_for_tcp(addr, Duration::from_secs(20));
        server
    };
    // The device's boot (what its DHCP exchange would start), kept across restarts.
    let mut server = start();
    let reset = testkit::run(Command::new(PROVISION).args([
        "--api",
        &format!("http://{api}"),
        "--json",
        "sessions",
        "reset",
        "seat",
    ]));
    let reset: serde_json::Value = serde_json::from_str(&reset).unwrap();
    let url = format!(
        "nbd://{addr}/52:54:00:bb:00:03/os/{}",
        reset["token"].as_str().unwrap()
    );

    // Each trial writes its own 8 MiB region, 64 KiB per round.
    const ROUNDS: u64 = 128;
    let offset_of = |trial: u64| move |i: u64| (trial * ROUNDS + i) * CHUNK;
    let pattern = |trial: u64, i: u64| (trial * 7 + i) % 250 + 1;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill delays seeded with {seed}");
    let mut rng = seed | 1;
    let mut flushed_in: Vec<Vec<u64>> = Vec::new();
    for trial in 0..trials {
        let log = dir.path().join(format!("client-{trial}.log"));
        let mut client = writing_client(&qemu_io, &url, &log, ROUNDS, |i| {
            (pattern(trial, i), offset_of(trial)(i))
        });
        // A random moment in the client's first 300 ms.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(20 + rng % 300));
        // One stop in four is graceful (SIGTERM: an upgrade, `systemctl restart`).
        if trial % 4 == 3 {
            let status = server.terminate(Duration::from_secs(40));
            assert!(
                status.is_some_and(|s| s.success()),
                "provisiond ignored SIGTERM"
            );
        } else {
            server.child().kill().unwrap();
            server.child().wait().unwrap();
        }
        let waited = Instant::now();
        while matches!(client.try_wait(), Ok(None)) {
            assert!(
                waited.elapsed() < Duration::from_secs(60),
                "qemu-io hung after the server was killed"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let output = std::fs::read_to_string(&log).unwrap();
        flushed_in.push(flushed_rounds(&output, offset_of(trial), ROUNDS));

        // Restarted: the same boot's reconnect sees every flushed round of every trial.
        server = start();
        let mut check = Command::new(&qemu_io);
        check.args(["-f", "raw"]);
        for (t, rounds) in flushed_in.iter().enumerate() {
            for &i in rounds {
                let t = t as u64;
                let cmd = format!("read -P {} {} {CHUNK}", pattern(t, i), offset_of(t)(i));
                check.arg("-c").arg(cmd);
            }
        }
        check.args(["-c", "read 0 512"]);
        let out = testkit::run_output(check.arg(&url), testkit::DEFAULT_TIMEOUT);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && !text.contains("fail"),
            "trial {trial}: flushed standard-mode writes lost or refused after a kill:\n{text}"
        );
        eprintln!(
            "trial {trial}: {} of {ROUNDS} rounds flushed before the kill, all there",
            flushed_in[trial as usize].len()
        );
    }
    let flushed: usize = flushed_in.iter().map(Vec::len).sum();
    assert!(
        flushed > 0,
        "no round was flushed before any kill: the test proves nothing"
    );
    drop(server);
}
