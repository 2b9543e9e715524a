//! provisiond and provision end to end: a store managed with the CLI, served over NBD
//! to qemu-io and nbdinfo, stopped with SIGTERM; and the README's demo command.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use testkit::ChildGuard;

const PROVISIOND: &str = env!("CARGO_BIN_EXE_provisiond");
const PROVISION: &str = env!("CARGO_BIN_EXE_provision");

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

fn qemu_io_ok(qemu_io: &Path, url: &str, commands: &[&str]) -> bool {
    let mut cmd = Command::new(qemu_io);
    cmd.args(["-f", "raw"]);
    for c in commands {
        cmd.args(["-c", c]);
    }
    let out = testkit::run_output(cmd.arg(url), testkit::DEFAULT_TIMEOUT);
    out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("fail")
}

#[test]
fn cli_and_server_work_together() {
    let qemu_io = testkit::require_peer!("qemu-io");
    let nbdinfo = testkit::require_peer!("nbdinfo");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");

    ok(
        &store,
        &[
            "vdisk",
            "create",
            "os",
            "--size",
            "8M",
            "--description",
            "test OS",
        ],
    );
    ok(&store, &["device", "add", "52:54:00:aa:00:01", "seat-1"]);
    ok(
        &store,
        &[
            "device",
            "add",
            "52-54-00-AA-00-02",
            "seat-2",
            "--type",
            "test",
        ],
    );
    ok(&store, &["assign", "seat-1", "os"]);
    ok(&store, &["assign", "seat-2", "os", "--mode", "private"]);
    ok(
        &store,
        &[
            "personality",
            "set",
            "seat-1",
            "hostname=seat-1",
            "role=kiosk",
        ],
    );
    let devices: serde_json::Value =
        serde_json::from_str(&ok(&store, &["--json", "device", "list"])).unwrap();
    assert_eq!(devices[1]["mac"], "52:54:00:aa:00:02");
    assert_eq!(devices[1]["type"], "test");
    let listing = ok(&store, &["device", "list"]);
    assert!(
        listing.starts_with("NAME") && listing.contains("seat-1"),
        "{listing}"
    );

    // Exit codes say what went wrong.
    assert_eq!(
        provision(&store, &["device", "show", "nobody"])
            .status
            .code(),
        Some(3)
    );
    assert_eq!(
        provision(&store, &["version", "rollback", "os"])
            .status
            .code(),
        Some(4)
    );
    assert_eq!(
        provision(&store, &["device", "add", "not-a-mac", "x"])
            .status
            .code(),
        Some(2)
    );

    let port = testkit::free_tcp_port();
    let tftp_port = testkit::free_udp_port();
    let api_port = testkit::free_tcp_port();
    let config = dir.path().join("provisiond.toml");
    std::fs::write(
        &config,
        format!(
            "store = \"store\"\n[nbd]\nlisten = \"127.0.0.1:{port}\"\n\
             [tftp]\nenabled = true\nlisten = \"127.0.0.1:{tftp_port}\"\n\
             [boot]\nnbd_server = \"10.1.2.3:10809\"\n\
             [api]\nlisten = \"127.0.0.1:{api_port}\"\ntoken = \"s3cret\"\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("tftp")).unwrap();
    std::fs::write(dir.path().join("tftp/undionly.kpxe"), b"not really iPXE").unwrap();
    let server = ChildGuard::spawn(Command::new(PROVISIOND).arg("--config").arg(&config));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    testkit::wait_for_tcp(addr, Duration::from_secs(20));

    let api = |args: &[&str]| {
        testkit::run_output(
            Command::new(PROVISION)
                .arg("--config")
                .arg(&config)
                .args(["--actor", "tester"])
                .args(args),
            testkit::DEFAULT_TIMEOUT,
        )
    };
    // A device's export names its boot's token; an operator's reset starts a boot
    // and prints it (a DHCP exchange or script fetch does the same for a real device).
    let boot = |device: &str| {
        let out = api(&["--json", "sessions", "reset", device]);
        let reset: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        reset["token"].as_str().expect("a token").to_owned()
    };
    let one = format!("nbd://{addr}/52:54:00:aa:00:01/os/{}", boot("seat-1"));
    let two = format!("nbd://{addr}/52:54:00:aa:00:02/os/{}", boot("seat-2"));
    assert!(
        !qemu_io_ok(
            &qemu_io,
            &format!("nbd://{addr}/52:54:00:aa:00:02/os"),
            &["read 0 512"]
        ),
        "an export without a token was served"
    );
    assert!(qemu_io_ok(
        &qemu_io,
        &one,
        &["write -P 0x61 0 4096", "read -P 0x61 0 4096"]
    ));
    assert!(qemu_io_ok(
        &qemu_io,
        &two,
        &["read -P 0 0 4096", "write -P 0x62 512 512", "flush"]
    ));
    let info = testkit::run(Command::new(&nbdinfo).arg(&two));
    assert!(info.contains("8388608"), "{info}");

    // TFTP: the device's script, and the folder's files.
    let curl = testkit::require_peer!("curl");
    let tftp = format!("tftp://127.0.0.1:{tftp_port}");
    let script = testkit::run(
        Command::new(&curl).args(["-s", &format!("{tftp}/provision/52:54:00:aa:00:01.ipxe")]),
    );
    // Fetching the script started seat-1's next boot: its export carries the new token.
    let export = script
        .split_whitespace()
        .find_map(|arg| arg.strip_prefix("nbdroot=10.1.2.3:10809/"))
        .unwrap_or_else(|| panic!("no nbdroot in {script}"));
    let (_, token) = export.rsplit_once('/').unwrap();
    assert_eq!(export, format!("52:54:00:aa:00:01/os/{token}"));
    assert!(
        script.contains(&format!("{export} hostname=seat-1")),
        "{script}"
    );
    assert!(
        !qemu_io_ok(&qemu_io, &one, &["read 0 512"]),
        "the old boot's token still opens"
    );
    let one = format!("nbd://{addr}/{export}");
    let personality = testkit::run(Command::new(&curl).args([
        "-s",
        &format!("{tftp}/provision/52:54:00:aa:00:01/{token}.personality"),
    ]));
    assert_eq!(personality, "hostname=seat-1\nrole=kiosk\n");
    let file = testkit::run(Command::new(&curl).args(["-s", &format!("{tftp}/undionly.kpxe")]));
    assert_eq!(file, "not really iPXE");

    // A new version made through the API while the server runs (the CLI finds the
    // API and its token in the config file); the audit log names who made it.
    let out = api(&["version", "new", "os", "--note", "v1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = api(&["--json", "version", "list", "os"]);
    let versions: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(versions[1]["state"], "maintenance");
    // Disk work runs as a job: 202 at once, then progress to poll until it ends.
    let started = testkit::run(Command::new(&curl).args([
        "-s",
        "-X",
        "POST",
        "-H",
        "Authorization: Bearer s3cret",
        &format!("http://127.0.0.1:{api_port}/v1/vdisks/os/versions/1/merge"),
    ]));
    let job: serde_json::Value = serde_json::from_str(&started).unwrap();
    assert_eq!(job["state"], "running", "{started}");
    let job_url = format!("http://127.0.0.1:{api_port}/v1/jobs/{}", job["id"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let job = loop {
        let text = testkit::run(Command::new(&curl).args([
            "-s",
            "-H",
            "Authorization: Bearer s3cret",
            &job_url,
        ]));
        let job: serde_json::Value = serde_json::from_str(&text).unwrap();
        if job["state"] != "running" || std::time::Instant::now() > deadline {
            break job;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["done"], job["total"], "{job}");
    assert!(
        job["result"]["message"]
            .as_str()
            .unwrap()
            .contains("now a base"),
        "{job}"
    );
    let audit = String::from_utf8(api(&["audit", "--limit", "2"]).stdout).unwrap();
    assert!(
        audit.contains("api:admin") && audit.contains("version.merge"),
        "{audit}"
    );
    assert!(
        audit.contains("api:admin (says tester)") && audit.contains("version.new"),
        "{audit}"
    );
    // Errors keep their exit codes over the API.
    assert_eq!(api(&["device", "show", "nobody"]).status.code(), Some(3));
    assert_eq!(
        api(&["version", "promote", "nothing"]).status.code(),
        Some(3)
    );
    // Without the token: refused.
    let out = testkit::run_output(
        Command::new(PROVISION).args([
            "--api",
            &format!("http://127.0.0.1:{api_port}"),
            "device",
            "list",
        ]),
        testkit::DEFAULT_TIMEOUT,
    );
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Metrics name what each device did; a reset drops seat-1's write cache.
    let metrics = testkit::run(Command::new(&curl).args([
        "-s",
        "-H",
        "Authorization: Bearer s3cret",
        &format!("http://127.0.0.1:{api_port}/metrics"),
    ]));
    let line = |name: &str, mac: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(&format!("mac=\"{mac}\"")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} for {mac} in\n{metrics}"))
    };
    assert_eq!(
        line("provision_device_write_bytes_total", "52:54:00:aa:00:01"),
        4096
    );
    assert_eq!(
        line("provision_device_write_bytes_total", "52:54:00:aa:00:02"),
        512
    );
    assert!(
        metrics.contains(
            r#"provision_device_reads_total{device="seat-1",mac="52:54:00:aa:00:01",vdisk="os"}"#
        ),
        "ended sessions keep their device's name:\n{metrics}"
    );
    // Fetching its iPXE script above started seat-1's next boot: no cache left.
    assert_eq!(line("provision_write_cache_bytes", "52:54:00:aa:00:01"), 0);
    assert!(
        metrics.contains("provision_tftp_transfers_total 3\n"),
        "{metrics}"
    );
    assert!(qemu_io_ok(
        &qemu_io,
        &one,
        &["write -P 0x63 0 4096", "read -P 0x63 0 4096"]
    ));
    let out = api(&["--json", "sessions", "reset", "seat-1"]);
    let reset: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reset["write_caches_dropped"], 1, "{reset}");
    let one = format!(
        "nbd://{addr}/52:54:00:aa:00:01/os/{}",
        reset["token"].as_str().unwrap()
    );
    assert!(
        qemu_io_ok(&qemu_io, &one, &["read -P 0 0 4096"]),
        "seat-1's writes survived a reset"
    );

    let status = server
        .terminate(Duration::from_secs(20))
        .expect("provisiond ignored SIGTERM");
    assert!(status.success(), "provisiond exited with {status}");

    // Private data survived the restart.
    let server = ChildGuard::spawn(Command::new(PROVISIOND).arg("--config").arg(&config));
    testkit::wait_for_tcp(addr, Duration::from_secs(20));
    assert!(
        qemu_io_ok(&qemu_io, &two, &["read -P 0x62 512 512"]),
        "private write lost across a restart"
    );
    drop(server);
}

#[test]
fn the_demo_command_works_as_printed() {
    let qemu_img = testkit::require_peer!("qemu-img");
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let mut server = ChildGuard::spawn(Command::new(PROVISIOND).arg("--demo").arg(&demo).args([
        "--nbd-listen",
        "127.0.0.1:0",
        "--api-listen",
        "127.0.0.1:0",
    ]));
    let stdout = server.child().stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut printed = Vec::new();
    for line in lines.by_ref().take(40).map_while(Result::ok) {
        let last = line.starts_with("Stop with");
        printed.push(line);
        if last {
            break;
        }
    }
    let after = |prefix: &str| {
        printed
            .iter()
            .find_map(|line| line.trim().strip_prefix(prefix).map(str::to_owned))
            .unwrap_or_else(|| panic!("the demo printed no `{prefix}` line: {printed:?}"))
    };
    let url = after("qemu-img info ");
    let manage = after("Manage it with: provision ");
    // Keep reading, as a terminal would.
    std::thread::spawn(move || lines.for_each(drop));
    let info = testkit::run(Command::new(&qemu_img).args(["info", &url]));
    assert!(info.contains("64 MiB"), "{info}");
    let devices = testkit::run(Command::new(PROVISION).args(manage.split(' ')));
    assert!(devices.contains("demo-vm"), "{devices}");
    let status = server
        .terminate(Duration::from_secs(20))
        .expect("provisiond ignored SIGTERM");
    assert!(status.success());
}

#[test]
fn the_sample_config_loads_and_names_every_setting() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("provisiond.toml");
    let config = provision_server::config::Config::load(&path).unwrap();
    let defaults = provision_server::config::Config::default();
    assert_eq!(config.nbd.listen, defaults.nbd.listen);
    assert_eq!(
        config.sessions.grace_seconds,
        defaults.sessions.grace_seconds
    );
    let text = std::fs::read_to_string(&path).unwrap();
    for key in [
        "store",
        "enabled",
        "listen",
        "max_connections",
        "cache_ram",
        "cache_quota",
        "grace_seconds",
        "format",
        "token",
        "interface",
        "server_ip",
        "router_advertisements",
        "boot_port",
        "mode",
        "pool",
        "lease_seconds",
        "reservations",
    ] {
        assert!(
            text.contains(&format!("\n{key} = ")),
            "the sample config lacks `{key}`"
        );
    }
}

#[test]
fn the_api_rule_holds_for_flags_and_the_store_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("provisiond.toml");
    let port = testkit::free_tcp_port();
    std::fs::write(
        &config,
        format!("store = \"store\"\n[nbd]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    // An API off loopback without a token is refused from the command line too.
    let out = testkit::run_output(
        Command::new(PROVISIOND)
            .arg("--config")
            .arg(&config)
            .args(["--api-listen", "0.0.0.0:0"]),
        testkit::DEFAULT_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("api.token must be set"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // What provisiond creates is readable by the service only.
    let server = ChildGuard::spawn(Command::new(PROVISIOND).arg("--config").arg(&config));
    testkit::wait_for_tcp(
        format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_secs(20),
    );
    let store = dir.path().join("store");
    for (path, mode) in [
        (store.clone(), 0o700),
        (store.join("provision.db"), 0o600),
        (store.join("cache"), 0o700),
    ] {
        let actual = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(actual, mode, "{} is {actual:o}", path.display());
    }
    drop(server);
}

/// Starts provisiond on a store in `dir` with its API on loopback and `api_extra` lines
/// in `[api]`; returns the server, the config file and the API's address.
fn start_with_api(dir: &Path, api_extra: &str) -> (ChildGuard, std::path::PathBuf, SocketAddr) {
    let port = testkit::free_tcp_port();
    let api: SocketAddr = format!("127.0.0.1:{}", testkit::free_tcp_port())
        .parse()
        .unwrap();
    let config = dir.join("provisiond.toml");
    std::fs::write(
        &config,
        format!(
            "store = \"store\"\n[nbd]\nlisten = \"127.0.0.1:{port}\"\n[api]\nlisten = \"{api}\"\n{api_extra}"
        ),
    )
    .unwrap();
    if !dir.join("store").exists() {
        ok(&dir.join("store"), &["store", "init"]);
    }
    let server = ChildGuard::spawn(Command::new(PROVISIOND).arg("--config").arg(&config));
    testkit::wait_for_tcp(api, Duration::from_secs(20));
    (server, config, api)
}

#[test]
fn api_imports_come_from_the_import_folder_only() {
    let dir = tempfile::tempdir().unwrap();
    let imports = dir.path().join("imports");
    std::fs::create_dir_all(&imports).unwrap();
    std::fs::write(imports.join("disk.raw"), vec![0x42u8; 1 << 20]).unwrap();
    std::fs::write(dir.path().join("secret.raw"), vec![0x53u8; 1 << 20]).unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.raw"), imports.join("link.raw")).unwrap();
    let (_server, config, _) = start_with_api(dir.path(), "import_folder = \"imports\"\n");
    let import = |name: &str, file: &str| {
        testkit::run_output(
            Command::new(PROVISION)
                .arg("--config")
                .arg(&config)
                .args(["vdisk", "import", name, file]),
            testkit::DEFAULT_TIMEOUT,
        )
    };
    let secret = dir.path().join("secret.raw");
    for (name, file) in [
        ("abs", "/etc/passwd"),
        ("outside", secret.to_str().unwrap()),
        ("dots", "../secret.raw"),
        ("link", "link.raw"),
        ("folder", "."),
    ] {
        let out = import(name, file);
        assert_eq!(
            out.status.code(),
            Some(5),
            "importing {file} through the API: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("import folder"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = import("good", "disk.raw");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = ok(&dir.path().join("store"), &["vdisk", "list"]);
    assert!(
        list.contains("good") && !list.contains("abs") && !list.contains("link"),
        "{list}"
    );
}

#[test]
fn a_missing_store_is_an_error_unless_created() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("stroe");
    // Reading a store that is not there: exit 3, nothing created.
    for args in [
        &["device", "list"][..],
        &["vdisk", "show", "os"],
        &["audit"],
    ] {
        let out = provision(&typo, args);
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("store init"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(!typo.exists(), "a read created the store");
    // Made explicitly, or by adding its first thing (which says so).
    ok(&typo, &["store", "init"]);
    ok(&typo, &["store", "init"]);
    assert!(ok(&typo, &["device", "list"]).lines().count() <= 1);
    let fresh = dir.path().join("fresh");
    let out = provision(&fresh, &["vdisk", "create", "os", "--size", "1M"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("created a new store"));
}

#[test]
fn collection_set_changes_only_what_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    ok(&store, &["vdisk", "create", "os", "--size", "1M"]);
    ok(
        &store,
        &[
            "collection",
            "add",
            "room",
            "--type",
            "test",
            "--vdisk",
            "os",
            "--mode",
            "private",
        ],
    );
    ok(
        &store,
        &[
            "device",
            "add",
            "52:54:00:cc:00:01",
            "pc-1",
            "--collection",
            "room",
        ],
    );
    let room = || -> serde_json::Value {
        let list: serde_json::Value =
            serde_json::from_str(&ok(&store, &["--json", "collection", "list"])).unwrap();
        list[0].clone()
    };
    let before = room();
    // Turning auto-add on keeps the type, vDisk and mode.
    ok(&store, &["collection", "set", "room", "--auto-add"]);
    let after = room();
    assert_eq!(after["auto_add"], true, "{after}");
    for field in ["type", "vdisk", "mode"] {
        assert!(!before[field].is_null(), "{field}: {before}");
        assert_eq!(after[field], before[field], "{field}: {after}");
    }
    // Changing the mode keeps auto-add; no flags change nothing.
    ok(&store, &["collection", "set", "room", "--mode", "standard"]);
    ok(&store, &["collection", "set", "room"]);
    let now = room();
    assert_eq!(
        (&now["auto_add"], &now["mode"]),
        (&serde_json::json!(true), &serde_json::json!("standard")),
        "{now}"
    );
    ok(
        &store,
        &["collection", "set", "room", "--no-auto-add", "--no-vdisk"],
    );
    let off = room();
    assert_eq!(
        (&off["auto_add"], &off["vdisk"]),
        (&serde_json::json!(false), &serde_json::Value::Null),
        "{off}"
    );
    // Removing it leaves its device, in no collection.
    ok(&store, &["collection", "remove", "room"]);
    assert_eq!(ok(&store, &["--json", "collection", "list"]).trim(), "[]");
    let device: serde_json::Value =
        serde_json::from_str(&ok(&store, &["--json", "device", "show", "pc-1"])).unwrap();
    assert!(device["collection"].is_null(), "{device}");
    assert_eq!(
        provision(&store, &["collection", "remove", "room"])
            .status
            .code(),
        Some(3)
    );
}

#[test]
fn secret_personality_values_are_shown_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    ok(&store, &["device", "add", "52:54:00:cc:00:02", "pc-2"]);
    ok(&store, &["personality", "set", "pc-2", "role=kiosk"]);
    let set = ok(
        &store,
        &[
            "personality",
            "set",
            "pc-2",
            "join_password=hunter2",
            "--secret",
        ],
    );
    for shown in [
        set,
        ok(&store, &["personality", "get", "pc-2"]),
        ok(&store, &["--json", "device", "show", "pc-2"]),
        ok(&store, &["audit", "--limit", "10"]),
    ] {
        assert!(!shown.contains("hunter2"), "a secret was shown: {shown}");
        assert!(shown.contains("join_password"), "{shown}");
    }
    assert!(ok(&store, &["personality", "get", "pc-2"]).contains("role=kiosk"));
    assert!(ok(&store, &["personality", "get", "pc-2"]).contains(provision_core::SECRET_SHOWN));
}

#[test]
fn the_systemd_unit_is_rated_ok_or_better() {
    let analyze = testkit::require_peer!("systemd-analyze");
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("provisiond.service");
    let out = testkit::run_output(
        Command::new(analyze)
            .args(["security", "--offline=yes"])
            .arg(&unit),
        testkit::DEFAULT_TIMEOUT,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let rating = text
        .lines()
        .find_map(|l| l.split("provisiond.service: ").nth(1))
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    // systemd's words, from best to worst: SAFE, OK, MEDIUM, EXPOSED, UNSAFE.
    assert!(
        rating.contains(" OK") || rating.contains(" SAFE"),
        "rated {rating}:\n{text}"
    );
}

#[test]
fn slow_clients_from_one_host_do_not_lock_the_operator_out() {
    use std::io::Write;
    let curl = testkit::require_peer!("curl");
    let dir = tempfile::tempdir().unwrap();
    let (_server, _, api) = start_with_api(dir.path(), "");
    // 200 clients on one host send half a request line and stall.
    let slow: Vec<_> = (0..200)
        .filter_map(|_| {
            let mut s = std::net::TcpStream::connect(api).ok()?;
            s.write_all(b"GET /v1/status HT").ok()?;
            Some(s)
        })
        .collect();
    assert!(
        slow.len() >= 100,
        "only {} slow clients connected",
        slow.len()
    );
    // The operator, from another address, is answered at once.
    let out = testkit::run_output(
        Command::new(curl).args([
            "-sf",
            "--max-time",
            "8",
            "--interface",
            "127.0.0.2",
            &format!("http://{api}/v1/status"),
        ]),
        testkit::DEFAULT_TIMEOUT,
    );
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("uptime_seconds"),
        "the API did not answer beside 200 slow clients: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(slow);
}

#[test]
fn api_tokens_have_names_and_roles() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, _, api_addr) = start_with_api(
        dir.path(),
        "[[api.tokens]]\nname = \"wall\"\ntoken = \"viewer-token-0123456789\"\nrole = \"viewer\"\n\
         [[api.tokens]]\nname = \"ops\"\ntoken = \"operator-token-0123456789\"\nrole = \"operator\"\n",
    );
    let api = |token: &str, args: &[&str]| {
        testkit::run_output(
            Command::new(PROVISION)
                .args(["--api", &format!("http://{api_addr}"), "--token", token])
                .args(["--actor", "somebody-else"])
                .args(args),
            testkit::DEFAULT_TIMEOUT,
        )
    };
    let code = |token: &str, args: &[&str]| api(token, args).status.code();
    let viewer = "viewer-token-0123456789";
    let operator = "operator-token-0123456789";
    // Reads for all; changes for operators; removals for admins only.
    assert_eq!(code(viewer, &["device", "list"]), Some(0));
    assert_eq!(
        code(viewer, &["device", "add", "52:54:00:dd:00:01", "pc"]),
        Some(5)
    );
    assert_eq!(
        code(operator, &["device", "add", "52:54:00:dd:00:01", "pc"]),
        Some(0)
    );
    let refused = api(operator, &["device", "remove", "pc"]);
    assert_eq!(refused.status.code(), Some(5));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("needs Admin"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(
        code("not-a-token-at-all-xxxxx", &["device", "list"]),
        Some(5)
    );
    // The audit log names the token, not what the client claims to be.
    let audit = String::from_utf8(api(viewer, &["audit"]).stdout).unwrap();
    assert!(audit.contains("api:ops (says somebody-else)"), "{audit}");
}
