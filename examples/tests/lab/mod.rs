//! The network-namespace lab of the PXE tests (`pxe-serve_netns.rs`, `provisiond_pxe.rs`):
//! root only; every namespace is deleted at the end, even on failure; only 10.77.x.x
//! addresses.
//!
//! ```text
//!  ns <prefix>s: br0 10.77.0.1 ── the server under test (pxe-serve or provisiond)
//!     ├─ tap0 ── QEMU (TCG): SeaBIOS + iPXE ROM, or OVMF with EDK2's own PXE client
//!     ├─ veth ═ ns <prefix>d: 10.77.0.2  dnsmasq, plain DHCP (addresses only, no PXE)
//!     └─ veth ═ ns <prefix>c: no address  scripted PXE client (the test binary re-run
//!                                          there, its `client_helper` selected by
//!                                          [`HELPER_ENV`]), udhcpc, dhclient
//! ```
//!
//! Namespace names carry the test's prefix and the PID, so tests and test binaries can
//! run at once.

// Each test binary compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use testkit::ChildGuard;

/// The server's address on the lab's bridge.
pub const SERVER: &str = "10.77.0.1";
/// The scripted client's interface in its namespace.
pub const CLIENT_IF: &str = "vethc";
/// The variable that tells the test binary, re-run in the client namespace, which
/// scripted client to play (see [`Lab::client`] and [`helper`]).
pub const HELPER_ENV: &str = "NETNS_LAB_HELPER";

/// The scripted client the test binary should play, when it runs as one.
pub fn helper() -> Option<String> {
    std::env::var(HELPER_ENV).ok()
}

/// Runs `ip args`; panics when it fails.
pub fn ip(args: &[&str]) {
    testkit::run(Command::new("ip").args(args));
}

/// Holds the slot of the one VM test of this binary that runs at a time: TCG on 2 cores
/// is slow enough with one VM, and each test's bounds and timings stay meaningful.
pub fn vm_slot() -> MutexGuard<'static, ()> {
    static SLOT: Mutex<()> = Mutex::new(());
    SLOT.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Namespaces and a temporary folder (logs, configs, serial consoles) of one test;
/// the namespaces are deleted on drop, and every `*.log` is printed when the test fails.
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    dir: tempfile::TempDir,
}

impl Lab {
    /// Creates the server namespace `<prefix><pid>s` with br0 = 10.77.0.1/24, or returns
    /// `None` (skip, after printing why) when the test cannot run here.
    ///
    /// # Panics
    ///
    /// Under CI when not root or `ip` is missing.
    pub fn new(prefix: &str) -> Option<Lab> {
        if !testkit::is_root() {
            assert!(
                !testkit::in_ci(),
                "network namespace tests need root under CI=true"
            );
            eprintln!("SKIPPED: network namespace tests need root");
            return None;
        }
        testkit::peer("ip")?;
        let mut lab = Lab {
            prefix: format!("{prefix}{}", std::process::id()),
            namespaces: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        };
        let s = lab.ns("s");
        ip(&[
            "-n",
            &s,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "forward_delay",
            "0",
        ]);
        ip(&["-n", &s, "addr", "add", "10.77.0.1/24", "dev", "br0"]);
        ip(&["-n", &s, "link", "set", "br0", "up"]);
        Some(lab)
    }

    /// The full name of the namespace with `suffix` (`s` is the server's).
    pub fn name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// Creates a namespace with its loopback up.
    pub fn ns(&mut self, suffix: &str) -> String {
        let name = self.name(suffix);
        ip(&["netns", "add", &name]);
        self.namespaces.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// A namespace on the bridge with `addr` (or none: a client with a device route).
    pub fn attach(&mut self, suffix: &str, ifname: &str, addr: Option<&str>) -> String {
        let ns = self.ns(suffix);
        let s = self.name("s");
        let port = format!("p{suffix}");
        ip(&[
            "link", "add", ifname, "netns", &ns, "type", "veth", "peer", "name", &port, "netns", &s,
        ]);
        ip(&["-n", &s, "link", "set", &port, "master", "br0", "up"]);
        ip(&["-n", &ns, "link", "set", ifname, "up"]);
        match addr {
            Some(a) => ip(&["-n", &ns, "addr", "add", a, "dev", ifname]),
            None => ip(&["-n", &ns, "route", "add", "default", "dev", ifname]),
        }
        ns
    }

    /// The tap device `tap0` on the bridge, for a VM started in the server namespace.
    pub fn tap(&self) {
        let s = self.name("s");
        ip(&["-n", &s, "tuntap", "add", "dev", "tap0", "mode", "tap"]);
        ip(&["-n", &s, "link", "set", "tap0", "master", "br0", "up"]);
    }

    /// A path in the test's folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts `program args` inside `ns` (exec'd: the guard's PID is the program's),
    /// stderr and stdout appended to `log` in the test's folder.
    pub fn spawn(&self, ns: &str, log: &str, program: &Path, args: &[&str]) -> ChildGuard {
        let mut line = format!("exec '{}'", program.display());
        for a in args {
            line.push_str(&format!(" '{}'", a.replace('\'', "'\\''")));
        }
        line.push_str(&format!(" >>'{}' 2>&1", self.path(log).display()));
        ChildGuard::spawn(
            Command::new("ip")
                .args(["netns", "exec", ns, "sh", "-c", &line])
                .env("RUST_LOG", "pxe=debug,provision_core=debug,info"),
        )
    }

    /// Runs `program args` inside `ns` to completion; its stdout.
    pub fn run_in(&self, ns: &str, program: &Path, args: &[&str]) -> String {
        testkit::run(
            Command::new("ip")
                .args(["netns", "exec", ns])
                .arg(program)
                .args(args),
        )
    }

    /// A log file of the test's folder (empty when absent).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// Waits (at most 15 s) until `log` contains `needle`.
    pub fn wait_log(&self, name: &str, needle: &str) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if self.log(name).contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("`{needle}` not in {name} after 15 s:\n{}", self.log(name));
    }

    /// Runs the scripted client `script` (the test binary's ignored `client_helper`,
    /// which reads [`helper`]) in namespace `ns`, at most 60 s; its `REPLY ...` and
    /// `LEASE ...` lines.
    pub fn client(&self, ns: &str, script: &str) -> Vec<String> {
        let exe = std::env::current_exe().unwrap();
        let out = testkit::run_output(
            Command::new("ip")
                .args(["netns", "exec", ns])
                .arg(exe)
                .args([
                    "client_helper",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(HELPER_ENV, script),
            Duration::from_secs(60),
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "client helper `{script}` failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The test harness prints "test client_helper ... " before the helper's own
        // lines, without a newline: find the markers anywhere on a line.
        stdout
            .lines()
            .filter_map(|l| {
                l.find("REPLY ")
                    .or_else(|| l.find("LEASE "))
                    .map(|i| l[i..].to_owned())
            })
            .collect()
    }

    /// dnsmasq as the site's address-only DHCP server (10.77.0.50-60) in its own
    /// namespace (10.77.0.2), or `None` (skip) when dnsmasq is missing outside CI.
    pub fn plain_dhcp(&mut self) -> Option<ChildGuard> {
        let dnsmasq = testkit::peer("dnsmasq")?;
        let d = self.attach("d", "vethd", Some("10.77.0.2/24"));
        let args = [
            "--no-daemon".to_owned(),
            "--conf-file=/dev/null".to_owned(),
            "--port=0".to_owned(),
            "--user=root".to_owned(),
            "--interface=vethd".to_owned(),
            "--bind-interfaces".to_owned(),
            "--no-ping".to_owned(),
            "--log-dhcp".to_owned(),
            "--dhcp-range=10.77.0.50,10.77.0.60,255.255.255.0,1h".to_owned(),
            format!("--dhcp-leasefile={}", self.path("dnsmasq.leases").display()),
            format!("--pid-file={}", self.path("dnsmasq-d.pid").display()),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let g = self.spawn(&d, "dnsmasq-d.log", &dnsmasq, &args);
        self.wait_log("dnsmasq-d.log", "DHCP, IP range");
        Some(g)
    }

    /// The serial console file of the test's VM.
    pub fn serial(&self) -> PathBuf {
        self.path("serial.txt")
    }

    /// QEMU arguments every lab VM shares: `machine` under TCG with `memory_mib` of
    /// RAM, no display, the serial console into [`Lab::serial`], a NIC `device` on tap0.
    fn vm_args(&self, machine: &str, memory_mib: u32, device: String) -> Vec<String> {
        vec![
            "-machine".to_owned(),
            format!("{machine},accel=tcg"),
            "-m".to_owned(),
            memory_mib.to_string(),
            "-display".to_owned(),
            "none".to_owned(),
            "-serial".to_owned(),
            format!("file:{}", self.serial().display()),
            "-netdev".to_owned(),
            "tap,id=n0,ifname=tap0,script=no,downscript=no".to_owned(),
            "-device".to_owned(),
            device,
        ]
    }

    /// QEMU arguments of a BIOS machine (SeaBIOS with its console on the serial port,
    /// e1000 with QEMU's iPXE ROM on `tap0`, network boot) with `memory_mib` of RAM and
    /// the NIC's `mac`.
    pub fn bios_vm_args(&self, mac: &str, memory_mib: u32) -> Vec<String> {
        let sercon = self.path("sercon.bin");
        std::fs::write(&sercon, [0xf8, 0x03]).unwrap();
        let mut args = self.vm_args("pc", memory_mib, format!("e1000,netdev=n0,mac={mac}"));
        args.extend([
            "-fw_cfg".to_owned(),
            format!("name=etc/sercon-port,file={}", sercon.display()),
            "-boot".to_owned(),
            "n".to_owned(),
        ]);
        args
    }

    /// QEMU arguments of a UEFI machine: OVMF from `ovmf` (its code read-only, a copy of
    /// its variables), virtio-net on `tap0` without an option ROM, so EDK2's own PXE
    /// client boots, with `memory_mib` of RAM and the NIC's `mac`.
    pub fn uefi_vm_args(&self, ovmf: &Path, mac: &str, memory_mib: u32) -> Vec<String> {
        let vars = self.path("vars.fd");
        std::fs::copy(ovmf.join("OVMF_VARS_4M.fd"), &vars).unwrap();
        let nic = format!("virtio-net-pci,netdev=n0,mac={mac},romfile=");
        let mut args = self.vm_args("q35", memory_mib, nic);
        args.extend([
            "-drive".to_owned(),
            format!(
                "if=pflash,format=raw,readonly=on,file={}",
                ovmf.join("OVMF_CODE_4M.fd").display()
            ),
            "-drive".to_owned(),
            format!("if=pflash,format=raw,file={}", vars.display()),
        ]);
        args
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for entry in std::fs::read_dir(self.dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".log") {
                    eprintln!("----- {name}\n{}", self.log(&name));
                }
            }
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// The value of `key=` in a scripted client's line; values may contain spaces (menu
/// texts): it ends before the next ` word=`.
pub fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line
        .find(&format!(" {key}="))
        .map(|i| i + key.len() + 2)
        .unwrap_or_else(|| panic!("no {key} in {line}"));
    let rest = &line[start..];
    let end = rest.find(' ').map_or(rest.len(), |e| {
        rest.match_indices(' ')
            .map(|(i, _)| i)
            .find(|&i| {
                rest[i + 1..]
                    .split_once(' ')
                    .map_or(rest[i + 1..].contains('='), |(w, _)| w.contains('='))
            })
            .unwrap_or(e)
    });
    &rest[..end]
}

/// A folder of firmware files: the `env` variable when set, else `default`; `None`
/// (skip) outside CI when it lacks `file`, a failure under CI.
pub fn firmware_dir(env: &str, default: &str, file: &str, package: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var(env).unwrap_or_else(|_| default.to_owned()));
    if dir.join(file).exists() {
        return Some(dir);
    }
    assert!(
        !testkit::in_ci(),
        "{} missing under CI=true: .ci/run must install the Debian package `{package}`",
        dir.join(file).display()
    );
    eprintln!(
        "SKIPPED: {} not found (Debian package `{package}`, or set {env})",
        dir.join(file).display()
    );
    None
}

/// The serial log without ANSI escapes and carriage returns.
pub fn console(path: &Path) -> String {
    let raw = String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: ESC [ params final-byte
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for d in chars.by_ref() {
                        if d.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Waits until the serial log holds `needle`; panics with the log after `limit`.
pub fn wait_console(path: &Path, needle: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let text = console(path);
        if text.contains(needle) {
            return text;
        }
        assert!(
            start.elapsed() < limit,
            "`{needle}` not on the VM console after {limit:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// True when the console shows an address from the lab's dnsmasq (10.77.0.50-60) on
/// iPXE's `net0` (`net0: 10.77.0.N/...`).
pub fn address_from_plain_dhcp(console: &str) -> bool {
    console.lines().any(|l| {
        l.strip_prefix("net0: 10.77.0.")
            .and_then(|rest| rest.split('/').next()?.parse::<u8>().ok())
            .is_some_and(|o| (50..=60).contains(&o))
    })
}
