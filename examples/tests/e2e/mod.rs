//! Shared pieces of the end-to-end tests that boot real VMs (QEMU, TCG) from vDisks
//! served by `provisiond`: a provisiond with its own ports and log file, the `provision`
//! CLI on a store or through the API, a bounded VM boot that returns its serial log, and
//! the guest's console markers (testkit/scripts/boot-assets.sh).

#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use testkit::ChildGuard;

pub const PROVISIOND: &str = env!("CARGO_BIN_EXE_provisiond");
pub const PROVISION: &str = env!("CARGO_BIN_EXE_provision");
pub const VHD: &str = env!("CARGO_BIN_EXE_vhd");

/// How long one VM may take from QEMU start to its power-off.
pub const VM_TIMEOUT: Duration = Duration::from_secs(240);

/// VM tests of one binary run one after another: TCG on 2 cores is slow enough with two
/// VMs at once, and each test's wall time stays meaningful.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `vhd check FILE`: the image and its chain are consistent.
pub fn vhd_check(file: &Path) {
    testkit::run(Command::new(VHD).arg("check").arg(file));
}

/// A test's temporary folder (store, config, serial and server logs), kept and named
/// on stderr when the test fails, or always with `E2E_KEEP=1`.
pub struct WorkDir(Option<tempfile::TempDir>);

impl WorkDir {
    pub fn new(name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir()
            .unwrap();
        Self(Some(dir))
    }

    pub fn path(&self) -> &Path {
        self.0.as_ref().expect("present until dropped").path()
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let keep = std::env::var_os("E2E_KEEP").is_some_and(|v| !v.is_empty() && v != "0");
        if (keep || std::thread::panicking())
            && let Some(dir) = self.0.take()
        {
            eprintln!("the test's logs stay in {}", dir.keep().display());
        }
    }
}

/// Runs `provision` with `target` (`--store DIR` or `--api URL`) and `args`; returns
/// stdout, or panics with both streams.
pub fn provision(target: &[&str], args: &[&str]) -> String {
    let out = provision_output(target, args);
    assert!(
        out.status.success(),
        "provision {} {} failed with {}\nstdout:\n{}\nstderr:\n{}",
        target.join(" "),
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `provision`, whatever its exit status.
pub fn provision_output(target: &[&str], args: &[&str]) -> Output {
    testkit::run_output(
        Command::new(PROVISION)
            .args(target)
            .args(["--actor", "e2e"])
            .args(args),
        testkit::DEFAULT_TIMEOUT,
    )
}

/// `vhd convert RAW VHD --to dynamic`.
pub fn convert_to_dynamic_vhd(raw: &Path, vhd: &Path) {
    testkit::run(
        Command::new(VHD)
            .arg("convert")
            .arg(raw)
            .arg(vhd)
            .args(["--to", "dynamic"]),
    );
}

/// A running provisiond on free loopback ports, serving the store `<dir>/store`, logging
/// into `<dir>/provisiond-N.log`.
pub struct Provisiond {
    dir: PathBuf,
    config: PathBuf,
    pub nbd_port: u16,
    pub api_port: u16,
    guard: Option<ChildGuard>,
    starts: u32,
}

impl Provisiond {
    /// The store folder, for `provision --store` before the server starts.
    pub fn store_of(dir: &Path) -> PathBuf {
        dir.join("store")
    }

    /// Writes the configuration (`extra` is appended verbatim) and starts the server.
    pub fn start(dir: &Path, extra: &str) -> Self {
        let nbd_port = testkit::free_tcp_port();
        let api_port = testkit::free_tcp_port();
        let config = dir.join("provisiond.toml");
        std::fs::write(
            &config,
            format!(
                "store = \"store\"\n\
                 [nbd]\nlisten = \"127.0.0.1:{nbd_port}\"\n\
                 [api]\nlisten = \"127.0.0.1:{api_port}\"\n\
                 {extra}"
            ),
        )
        .unwrap();
        let mut server = Self {
            dir: dir.to_path_buf(),
            config,
            nbd_port,
            api_port,
            guard: None,
            starts: 0,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log_path = self.log_path();
        let mut guard = ChildGuard::spawn(
            Command::new(PROVISIOND)
                .arg("--config")
                .arg(&self.config)
                .env("RUST_LOG", "info"),
        );
        // Into a file, so that a chatty server never blocks on a full pipe.
        let log = File::create(&log_path).unwrap();
        let stdout = guard.child().stdout.take();
        let stderr = guard.child().stderr.take();
        copy_into(stdout, log.try_clone().unwrap());
        copy_into(stderr, log);
        let deadline = Duration::from_secs(30);
        testkit::wait_for_tcp(self.nbd_addr(), deadline);
        testkit::wait_for_tcp(self.api_addr(), deadline);
        self.guard = Some(guard);
    }

    /// SIGTERM; asserts a clean exit.
    pub fn stop(&mut self) {
        let guard = self.guard.take().expect("provisiond is running");
        let status = guard
            .terminate(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("provisiond ignored SIGTERM\n{}", self.log()));
        assert!(
            status.success(),
            "provisiond exited with {status}\n{}",
            self.log()
        );
    }

    /// Stops the server (SIGTERM) and starts it again on the same ports and store.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn nbd_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.nbd_port))
    }

    pub fn api_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.api_port))
    }

    /// `--api URL`, for [`provision`].
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(format!("provisiond-{}.log", self.starts))
    }

    /// The current run's log.
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        format!("--- provisiond log ---\n{text}")
    }

    /// The last `lines` lines of the current run's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let tail = all[all.len().saturating_sub(lines)..].join("\n");
        format!("--- provisiond log (last {lines} lines) ---\n{tail}")
    }

    /// `provision --api URL ARGS...`.
    pub fn cli(&self, args: &[&str]) -> String {
        provision(&["--api", &self.api_url()], args)
    }

    /// `provision --api URL --json ARGS...`, parsed.
    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let out = provision(&["--api", &self.api_url(), "--json"], args);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {out}"))
    }

    /// GET `path` on the admin API; returns status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect_timeout(&self.api_addr(), Duration::from_secs(5))
            .expect("connecting to the admin API");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("GET {path}: no HTTP header end in {response:?}"));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("GET {path}: bad status line in {head:?}"));
        (status, body.to_owned())
    }

    /// The `/metrics` page.
    pub fn metrics(&self) -> Metrics {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "GET /metrics: {body}");
        Metrics(body)
    }

    /// Waits until the device `name` has no open session (its VM has gone and the server
    /// has noticed), so the next boot starts from a closed session.
    pub fn wait_sessions_closed(&self, name: &str) {
        let start = Instant::now();
        loop {
            let (status, body) = self.get("/v1/sessions");
            assert_eq!(status, 200, "GET /v1/sessions: {body}");
            let sessions: serde_json::Value = serde_json::from_str(&body).unwrap();
            let open = sessions
                .as_array()
                .is_some_and(|list| list.iter().any(|s| s["device"] == name));
            if !open {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{name} still has an open session 30 s after its VM exited: {body}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The NBD export a hypervisor attaches the device's `vdisk` with:
    /// `<mac>/<vdisk>/<attach secret>`.
    pub fn attach_export(&self, name: &str, vdisk: &str) -> String {
        let secret = self.cli_json(&["device", "attach-secret", name]);
        let export = secret["export"]
            .as_str()
            .unwrap_or_else(|| panic!("device attach-secret {name}: {secret}"));
        export.replace("<vdisk>", vdisk)
    }

    /// Starts the device's new boot (`provision sessions reset`, what a DHCP DISCOVER
    /// does): returns how many write caches were dropped.
    pub fn new_boot(&self, name: &str) -> u64 {
        let reset = self.cli_json(&["sessions", "reset", name]);
        reset["write_caches_dropped"]
            .as_u64()
            .unwrap_or_else(|| panic!("sessions reset {name}: {reset}"))
    }
}

fn copy_into<R: Read + Send + 'static>(pipe: Option<R>, mut file: File) {
    if let Some(mut pipe) = pipe {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut pipe, &mut file);
        });
    }
}

/// The Prometheus text of `/metrics`.
pub struct Metrics(pub String);

impl Metrics {
    /// The value of the per-device family `name` for the device `mac` (any vDisk: the
    /// sum), or 0 when it has no sample.
    pub fn device(&self, name: &str, mac: &str) -> u64 {
        let (prefix, label) = (format!("{name}{{"), format!("mac=\"{mac}\""));
        self.0
            .lines()
            .filter(|l| l.starts_with(&prefix) && l.contains(&label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// The value of a sample written exactly as `series` (name and labels).
    pub fn value(&self, series: &str) -> Option<u64> {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }
}

/// One VM: its device name (SMBIOS serial, the guest's hostname) and NBD export.
#[derive(Debug, Clone)]
pub struct Vm {
    pub serial: String,
    pub export: String,
}

impl Vm {
    pub fn new(serial: &str, export: &str) -> Self {
        Self {
            serial: serial.to_owned(),
            export: export.to_owned(),
        }
    }
}

/// What a finished boot printed.
#[derive(Debug)]
pub struct Booted {
    pub serial: String,
    pub log: String,
    pub took: Duration,
}

impl Booted {
    /// The first word after `marker` on the line that starts with it.
    pub fn marker(&self, marker: &str) -> Option<&str> {
        self.log
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .find_map(|l| l.strip_prefix(marker))
            .map(|rest| rest.split_whitespace().next().unwrap_or(""))
    }

    /// Like [`Booted::marker`], but panics with the log when it is missing.
    pub fn expect(&self, marker: &str) -> &str {
        self.marker(marker).unwrap_or_else(|| {
            panic!(
                "{}: no `{marker}` on the console\n--- serial log ---\n{}",
                self.serial, self.log
            )
        })
    }

    /// `E2E-PREVIOUS-BOOTS count=N`.
    pub fn previous_boots(&self) -> u32 {
        let n = self.expect("E2E-PREVIOUS-BOOTS count=");
        n.parse()
            .unwrap_or_else(|_| panic!("{}: bad boot count {n:?}\n{}", self.serial, self.log))
    }

    /// `E2E-VERSION V`.
    pub fn version(&self) -> &str {
        self.expect("E2E-VERSION ")
    }

    /// `BOOTED-FROM-VDISK hostname=H`.
    pub fn hostname(&self) -> &str {
        self.expect("BOOTED-FROM-VDISK hostname=")
    }

    /// Asserts `actual == expected` about this boot, with its log in the message.
    pub fn check<T: PartialEq + std::fmt::Debug>(&self, what: &str, actual: T, expected: T) {
        assert_eq!(
            actual, expected,
            "{}: {what}\n--- serial log ---\n{}",
            self.serial, self.log
        );
    }
}

/// Boots `vm` from `server` until it powers off; its serial log goes to
/// `<dir>/<serial>-<tag>.log`.
///
/// # Panics
///
/// When QEMU fails, the guest does not finish within [`VM_TIMEOUT`], or prints
/// `E2E-FAILED`; the message holds the serial log and the end of the server's log.
pub fn boot(qemu: &Path, server: &Provisiond, vm: &Vm, tag: &str) -> Booted {
    let port = server.nbd_port;
    let log_path = server.dir.join(format!("{}-{tag}.log", vm.serial));
    let start = Instant::now();
    let out = testkit::run_output(
        Command::new("timeout")
            .args(["-k", "5", &VM_TIMEOUT.as_secs().to_string()])
            .arg(qemu)
            .args(["-accel", "tcg", "-m", "384", "-nographic", "-no-reboot"])
            .args(["-monitor", "none", "-nic", "none"])
            .arg("-serial")
            .arg(format!("file:{}", log_path.display()))
            .arg("-drive")
            .arg(format!(
                "file=nbd://127.0.0.1:{port}/{},format=raw,if=virtio",
                vm.export
            ))
            .arg("-smbios")
            .arg(format!("type=1,serial={}", vm.serial)),
        VM_TIMEOUT + Duration::from_secs(30),
    );
    let took = start.elapsed();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let booted = Booted {
        serial: vm.serial.clone(),
        log,
        took,
    };
    let why = if out.status.code() == Some(124) || out.status.code() == Some(137) {
        Some(format!("did not power off within {VM_TIMEOUT:?}"))
    } else if !out.status.success() {
        Some(format!("QEMU exited with {}", out.status))
    } else if booted.log.contains("E2E-FAILED") || booted.log.contains("E2E-INITRAMFS-FAILED") {
        Some("the guest reported a failure".to_owned())
    } else if !booted.log.contains("E2E-DONE") {
        Some("the guest powered off without E2E-DONE".to_owned())
    } else {
        None
    };
    if let Some(why) = why {
        panic!(
            "VM {} (export {}) {why} after {took:.1?}\nQEMU stderr:\n{}\n--- serial log {} ---\n{}\n{}",
            vm.serial,
            vm.export,
            String::from_utf8_lossy(&out.stderr),
            log_path.display(),
            booted.log,
            server.log_tail(40)
        );
    }
    eprintln!("  {} booted and powered off in {took:.1?}", vm.serial);
    booted
}

/// Boots all `vms` at once; returns their boots in the same order.
pub fn boot_at_once(qemu: &Path, server: &Provisiond, vms: &[Vm], tag: &str) -> Vec<Booted> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = vms
            .iter()
            .map(|vm| scope.spawn(move || boot(qemu, server, vm, tag)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}
