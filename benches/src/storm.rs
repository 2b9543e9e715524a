//! The load of a boot storm, shared by `provision_boot_storm`, `provision_devices` and
//! the test that runs the latter at a small scale: many NBD clients, each reading a
//! working set with a few requests in flight and writing a little data of its own, every
//! byte checked; and what is watched on the server meanwhile (CPU, peak resident
//! memory, the overlay files it still holds open).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nbd_proto::client::handshake::ClientConfig;
use nbd_proto::driver::client::Client;

use crate::cpu_time;

/// The byte at `offset` of the working set every benchmark serves.
pub fn pattern(offset: u64) -> u8 {
    (offset.wrapping_mul(2_654_435_761) >> 13) as u8 | 1
}

/// A working set of `size` bytes of [`pattern`].
pub fn working_set(size: u64) -> Vec<u8> {
    (0..size).map(pattern).collect()
}

/// The runtime the storm clients run on: two workers, as many as the machine's cores.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// What each client does.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Bytes of the working set each client reads, from offset 0.
    pub size: u64,
    /// Bytes per READ.
    pub request: u64,
    /// READs in flight per client.
    pub queue_depth: u64,
    /// One WRITE of `write_len` bytes after every this many bytes read.
    pub write_every: u64,
    /// Bytes per WRITE.
    pub write_len: usize,
}

/// What a storm measured.
#[derive(Debug, Default)]
pub struct Outcome {
    /// From the first request to the last client's last reply.
    pub elapsed: Duration,
    /// Bytes read by all clients.
    pub bytes: u64,
    /// Server resident memory before the clients connected, and with all connected.
    pub base_rss_kib: u64,
    /// Resident memory with every client connected and idle.
    pub idle_rss_kib: u64,
    /// Highest resident memory seen from start to end (sampled; the process's own
    /// high-water mark when it is one process).
    pub peak_rss_kib: u64,
    /// Server CPU time for the storm.
    pub cpu: Duration,
    /// Bytes read that differed from the working set, or written data read back wrong.
    pub integrity_errors: u64,
    /// Clients that failed (a refused connection, an error reply, a dropped link).
    pub failed_clients: u64,
}

/// Resident memory of a process in KiB (`VmRSS`), or its peak (`VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The process ids of `pid`'s children.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|stat| {
                // Fields after the command's closing parenthesis: state, ppid, ...
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

/// Resident memory of a server: the process and its children (nbd-server forks one per
/// connection).
pub fn server_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS")
        + children(pid)
            .into_iter()
            .map(|c| status_kib(c, "VmRSS"))
            .sum::<u64>()
}

/// CPU time a server has used so far: the process and its living children.
pub fn server_cpu(pid: u32) -> Duration {
    cpu_time(pid) + children(pid).into_iter().map(cpu_time).sum::<Duration>()
}

/// Samples a server's resident memory (with its children) every 20 ms until dropped.
pub struct RssWatch {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
    pid: u32,
}

impl RssWatch {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            // Bounded: a storm that runs an hour has gone wrong anyway.
            let until = Instant::now() + Duration::from_secs(3600);
            while !s.load(Ordering::Relaxed) && Instant::now() < until {
                p.fetch_max(server_rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self {
            stop,
            peak,
            thread: Some(thread),
            pid,
        }
    }

    /// The peak: the process's own high-water mark (exact) or the highest sample of
    /// it and its children, whichever is higher.
    pub fn peak_kib(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak
            .load(Ordering::Relaxed)
            .max(status_kib(self.pid, "VmHWM"))
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The data client `n` writes: its number, repeated, so that a client that reads
/// another's data is caught.
fn note(n: usize, len: usize) -> Vec<u8> {
    let tag = (n as u64 + 1)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .to_le_bytes();
    tag.iter().copied().cycle().take(len).collect()
}

/// Bytes of `data` (read at `offset`) that differ from the working set, checking one
/// byte in 509 (a prime, so every position in a block is reached) to spare the CPU
/// the server shares with the clients.
fn wrong_bytes(data: &[u8], offset: u64) -> u64 {
    (0..data.len())
        .step_by(509)
        .filter(|&i| data[i] != pattern(offset + i as u64))
        .count() as u64
}

/// One client's storm: READs over the working set with `queue_depth` lanes, a WRITE
/// now and then from lane 0 (at an offset no lane reads afterwards), then every WRITE
/// read back. Returns (bytes read, integrity errors).
async fn client_storm(client: Client, n: usize, load: Load) -> nbd_proto::Result<(u64, u64)> {
    let mut lanes = Vec::new();
    for lane in 0..load.queue_depth {
        let client = client.clone();
        lanes.push(tokio::spawn(async move {
            let (mut read, mut wrong, mut written) = (0, 0, Vec::new());
            let mut offset = lane * load.request;
            while offset < load.size {
                let len = load.request.min(load.size - offset) as u32;
                let data = client.read(offset, len).await?;
                read += data.len() as u64;
                wrong += wrong_bytes(&data, offset);
                if lane == 0 && offset.is_multiple_of(load.write_every) {
                    let at = offset.min(load.size.saturating_sub(load.write_len as u64));
                    client.write(at, &note(n, load.write_len), 0).await?;
                    written.push(at);
                }
                offset += load.request * load.queue_depth;
            }
            Ok::<_, nbd_proto::Error>((read, wrong, written))
        }));
    }
    let (mut read, mut wrong) = (0, 0);
    let mut written = Vec::new();
    for lane in lanes {
        let (r, w, mut at) = lane.await.expect("a storm lane panicked")?;
        read += r;
        wrong += w;
        written.append(&mut at);
    }
    client.flush().await?;
    let expect = note(n, load.write_len);
    for at in written {
        let back = client.read(at, load.write_len as u32).await?;
        wrong += back.iter().zip(&expect).filter(|(a, b)| a != b).count() as u64;
    }
    Ok((read, wrong))
}

/// Connections being opened at once.
const CONNECTS_IN_FLIGHT: usize = 8;
/// How long a connection and its handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Connects a client to every export (all at once, so the connections arrive in the
/// same instant), measures the server's memory, runs the storm, and drops the clients.
pub async fn storm(addr: SocketAddr, exports: Vec<String>, load: Load, pid: u32) -> Outcome {
    let base_rss_kib = server_rss_kib(pid);
    let watch = RssWatch::start(pid);
    // Connections open CONNECTS_IN_FLIGHT at a time (still all within a second):
    // nbd-server listens with a backlog of 10, and past it loopback SYN cookies leave
    // clients that believe they are connected waiting for a greeting for ever.
    let gate = Arc::new(tokio::sync::Semaphore::new(CONNECTS_IN_FLIGHT));
    let connects: Vec<_> = exports
        .into_iter()
        .map(|export| {
            let config = ClientConfig {
                export,
                structured: true,
                base_allocation: false,
            };
            let gate = gate.clone();
            tokio::spawn(async move {
                let _turn = gate.acquire_owned().await;
                tokio::time::timeout(CONNECT_TIMEOUT, Client::connect(addr, config)).await
            })
        })
        .collect();
    let mut clients = Vec::new();
    let mut failed_clients = 0;
    for connect in connects {
        match connect.await.expect("a connect task panicked") {
            Ok(Ok(c)) => clients.push(c),
            Ok(Err(e)) => {
                eprintln!("a storm client could not connect: {e}");
                failed_clients += 1;
            }
            Err(_) => {
                eprintln!("a storm client's connection timed out");
                failed_clients += 1;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_rss_kib = server_rss_kib(pid);
    let cpu_before = server_cpu(pid);
    let start = Instant::now();
    // Connections stay open until the server's CPU time is read (nbd-server's
    // per-connection processes take theirs with them when they exit).
    let tasks: Vec<_> = clients
        .iter()
        .cloned()
        .enumerate()
        .map(|(n, client)| tokio::spawn(client_storm(client, n, load)))
        .collect();
    let (mut bytes, mut integrity_errors) = (0, 0);
    for task in tasks {
        match task.await.expect("a storm client panicked") {
            Ok((read, wrong)) => {
                bytes += read;
                integrity_errors += wrong;
            }
            Err(e) => {
                eprintln!("a storm client failed: {e}");
                failed_clients += 1;
            }
        }
    }
    let elapsed = start.elapsed();
    let cpu = server_cpu(pid).saturating_sub(cpu_before);
    for client in &clients {
        let _ = client.disconnect().await;
    }
    drop(clients);
    Outcome {
        elapsed,
        bytes,
        base_rss_kib,
        idle_rss_kib,
        peak_rss_kib: watch.peak_kib(),
        cpu,
        integrity_errors,
        failed_clients,
    }
}

/// Files under `dir` (or, when it is a prefix of file names, matching it) that process
/// `pid` holds open, deleted ones included.
pub fn open_files_under(pid: u32, dir: &Path) -> Vec<String> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let dir = dir.to_string_lossy().into_owned();
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .filter(|target| target.starts_with(&dir))
        .collect()
}

/// Waits up to `within` until `pid` holds no file under `dir`; the files still open
/// then.
pub fn files_left_open(pid: u32, dir: &Path, within: Duration) -> Vec<String> {
    let until = Instant::now() + within;
    loop {
        let open = open_files_under(pid, dir);
        if open.is_empty() || Instant::now() >= until {
            return open;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts device `device`'s next boot through provisiond's admin API (`POST
/// /v1/devices/{device}/reset`, no token) and returns the boot's token.
pub fn reset_device(api: SocketAddr, device: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(api).map_err(|e| format!("connecting to {api}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "POST /v1/devices/{device}/reset HTTP/1.1\r\nHost: {api}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    )
    .map_err(|e| format!("sending the reset of {device}: {e}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("reading the reset of {device}: {e}"))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .ok_or_else(|| format!("no HTTP answer to the reset of {device}: {answer}"))?;
    if !answer.starts_with("HTTP/1.1 200") {
        return Err(format!("reset of {device} refused: {answer}"));
    }
    let view: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("reset of {device}: {e}: {body}"))?;
    view["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("reset of {device}: no token in {body}"))
}

/// nbd-server (Debian's) serving `raw` as export `storm` with `copyonwrite = true` (a
/// diff file per connection) on a free loopback port; it and its per-connection
/// children are stopped by PID when this is dropped.
pub struct NbdServer {
    /// Its address.
    pub addr: SocketAddr,
    /// The daemon's process id.
    pub pid: u32,
}

impl NbdServer {
    /// Starts it for up to `clients` connections; `None` when it is not installed.
    pub fn start(dir: &Path, raw: &Path, clients: u64) -> Option<Self> {
        let program = testkit::find_program("nbd-server")?;
        let port = testkit::free_tcp_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let conf = dir.join("nbd-server.conf");
        std::fs::write(
            &conf,
            format!(
                "[generic]\nlistenaddr = 127.0.0.1\nport = {port}\nallowlist = false\n\
                 [storm]\nexportname = {}\ncopyonwrite = true\nmaxconnections = {}\n",
                raw.display(),
                clients + 10
            ),
        )
        .expect("writing nbd-server.conf");
        // nbd-server daemonizes (its -d mode serves one client only): found by its PID
        // file.
        let pid_file = dir.join("nbd-server.pid");
        testkit::run(
            std::process::Command::new(program)
                .arg("-C")
                .arg(&conf)
                .arg("-p")
                .arg(&pid_file),
        );
        testkit::wait_for_tcp(addr, Duration::from_secs(30));
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .expect("nbd-server's PID file");
        Some(Self { addr, pid })
    }
}

impl Drop for NbdServer {
    fn drop(&mut self) {
        for pid in children(self.pid).into_iter().chain([self.pid]) {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid as i32).expect("a process id"),
                rustix::process::Signal::TERM,
            );
        }
    }
}
