//! Test support shared by the workspace's test suites.
//!
//! What it is: the one place that decides how a test finds a third-party peer
//! (qemu-img, nbdinfo, curl, atftp, dnsmasq, ...), the shared fixtures, and a free
//! loopback port, and how it runs a child process without ever leaking it.
//!
//! What it is not: a mocking framework. Interop tests talk to the real programs.
//!
//! # The peer rule
//!
//! A test that needs a peer calls [`require_peer!`]. When the program is missing:
//! - under `CI=true` the test **fails** with a message naming the program and the Debian
//!   package that `.ci/run` must install, so CI can never silently skip interop;
//! - elsewhere the test prints why it skipped and returns early.
//!
//! ```
//! fn qemu_reads_our_image() {
//!     let Some(qemu_img) = testkit::peer("qemu-img") else { return };
//!     let out = testkit::run(std::process::Command::new(qemu_img).arg("--version"));
//!     assert!(out.contains("qemu-img"));
//! }
//! # qemu_reads_our_image();
//! ```

use std::ffi::OsStr;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod boot_assets;
pub mod kernel_disks;
pub mod tgt;

/// Directories searched after `PATH`: daemons such as dnsmasq live in `sbin`.
const EXTRA_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/local/sbin"];

/// How long [`run`] lets a peer take before the test fails.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// True when the suite runs under CI (`CI=true`), where missing peers are failures.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The Debian package that provides `program`, for error messages.
fn package_of(program: &str) -> &str {
    match program {
        "qemu-img" | "qemu-nbd" | "qemu-io" => "qemu-utils",
        "nbdinfo" | "nbdcopy" | "nbdsh" => "libnbd-bin",
        "nbdkit" => "nbdkit",
        "nbd-server" => "nbd-server",
        "nbd-client" => "nbd-client",
        "tftp" => "tftp-hpa",
        "in.tftpd" => "tftpd-hpa",
        "atftp" => "atftp",
        "vhdiinfo" | "vhdimount" => "libvhdi-utils",
        "qemu-system-x86_64" => "qemu-system-x86",
        "ip" => "iproute2",
        "busybox" => "busybox-static",
        "sfdisk" => "fdisk",
        "mkfs.fat" => "dosfstools",
        "mkfs.ext4" => "e2fsprogs",
        "mcopy" | "mmd" | "mformat" => "mtools",
        "modinfo" => "kmod",
        "apt-get" => "apt",
        other => other,
    }
}

/// Finds `program` in `PATH` (and the `sbin` directories).
///
/// Returns `None`, after printing the reason, when it is missing outside CI.
///
/// # Panics
///
/// Under CI (see [`in_ci`]) when the program is missing.
pub fn peer(program: &str) -> Option<PathBuf> {
    if let Some(path) = find_program(program) {
        return Some(path);
    }
    let package = package_of(program);
    assert!(
        !in_ci(),
        "peer `{program}` is required under CI=true but was not found in PATH; \
         .ci/run must install the Debian package `{package}`"
    );
    eprintln!(
        "SKIPPED: peer `{program}` not found (Debian package `{package}`); set CI=true to make this a failure"
    );
    None
}

/// Returns the path of `program` if it is installed, without any CI rule.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Evaluates to the path of a peer program, or returns from the calling test when it
/// is missing outside CI (and fails it under CI).
#[macro_export]
macro_rules! require_peer {
    ($program:expr) => {
        match $crate::peer($program) {
            Some(path) => path,
            None => return,
        }
    };
}

/// True when the test runs as root, which network-namespace tests need.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// The seed corpus of fuzz target `target` (`fuzz/corpus/<target>/`), sorted by file
/// name, as (path, bytes); panics when it is missing or empty.
pub fn fuzz_corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = workspace_root().join("fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a corpus entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, bytes)
        })
        .collect()
}

/// The workspace's root folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives one level below the workspace root")
        .to_path_buf()
}

/// Feeds every file of the fuzz target `target`'s seed corpus (`fuzz/corpus/<target>/`)
/// to `run`, the function the target calls, so stable CI replays it.
///
/// # Panics
///
/// When the corpus folder is missing or empty, or when `run` panics.
pub fn replay_corpus(target: &str, mut run: impl FnMut(&[u8])) {
    let dir = workspace_root().join("fuzz/corpus").join(target);
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a corpus entry").path();
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        run(&data);
        seen += 1;
    }
    assert!(seen > 0, "empty corpus {}", dir.display());
}

/// The shared fixtures (`../shared/fixtures` beside the checkout), or `None` outside CI
/// when they are absent.
///
/// # Panics
///
/// Under CI when the folder is missing.
pub fn fixtures() -> Option<PathBuf> {
    let dir = workspace_root().join("../shared/fixtures");
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        !in_ci(),
        "fixtures folder {} is missing under CI=true",
        dir.display()
    );
    eprintln!("SKIPPED: fixtures folder {} not found", dir.display());
    None
}

/// A free TCP port on 127.0.0.1 (free when asked; bind soon after).
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral loopback TCP port")
}

/// A free UDP port on 127.0.0.1 (free when asked; bind soon after).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral loopback UDP port")
}

/// Waits until something accepts TCP connections on `addr`.
///
/// # Panics
///
/// When nothing listens within `timeout`.
pub fn wait_for_tcp(addr: SocketAddr, timeout: Duration) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing accepted TCP connections on {addr} within {timeout:?}");
}

/// A child process that is killed (by its own PID) and reaped when dropped, so a failing
/// test never leaves a server behind.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    what: String,
}

impl ChildGuard {
    /// Starts `cmd` with its stdout and stderr captured.
    ///
    /// # Panics
    ///
    /// When the program cannot be started.
    pub fn spawn(cmd: &mut Command) -> Self {
        let what = describe(cmd);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
        Self { child, what }
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child itself, for signals or waiting.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Stops the child (SIGKILL) and returns what it printed on stderr.
    pub fn stop(mut self) -> String {
        self.kill_and_reap();
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        stderr
    }

    /// Sends SIGTERM and waits up to `timeout` for a clean exit; returns the exit status,
    /// or `None` if the child had to be killed.
    pub fn terminate(mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "`{}` ignored SIGTERM for {timeout:?}; killing it",
            self.what
        );
        None
    }

    fn kill_and_reap(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion within [`DEFAULT_TIMEOUT`] and returns its stdout.
///
/// # Panics
///
/// When it cannot start, runs too long, or exits unsuccessfully; the message holds
/// the command line, the exit status and both output streams.
pub fn run(cmd: &mut Command) -> String {
    let out = run_output(cmd, DEFAULT_TIMEOUT);
    assert!(
        out.status.success(),
        "`{}` failed with {}\nstdout:\n{}\nstderr:\n{}",
        describe(cmd),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd` to completion within `timeout`, whatever its exit status.
///
/// # Panics
///
/// When it cannot start or runs longer than `timeout` (it is then killed).
pub fn run_output(cmd: &mut Command, timeout: Duration) -> Output {
    let what = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
    // Drain both pipes on threads so a chatty child cannot block on a full pipe.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`{what}` did not finish within {timeout:?}");
            }
        }
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_program_that_every_machine_has() {
        assert!(find_program("sh").is_some());
        assert!(find_program("no-such-program-provision").is_none());
    }

    #[test]
    fn run_returns_stdout_and_reports_failure() {
        assert_eq!(run(Command::new("sh").args(["-c", "echo hi"])), "hi\n");
        let failed = std::panic::catch_unwind(|| run(Command::new("sh").args(["-c", "exit 3"])));
        assert!(failed.is_err());
    }

    #[test]
    fn run_output_enforces_its_timeout() {
        let slow = std::panic::catch_unwind(|| {
            run_output(Command::new("sleep").arg("5"), Duration::from_millis(100))
        });
        assert!(slow.is_err());
    }

    #[test]
    fn child_guard_kills_its_child() {
        let guard = ChildGuard::spawn(Command::new("sleep").arg("30"));
        let pid = guard.id();
        drop(guard);
        let alive = Command::new("kill").args(["-0", &pid.to_string()]).status();
        assert!(!alive.is_ok_and(|s| s.success()), "child {pid} still alive");
    }
}
