//! The boot files over HTTP (`[http]`) against a provisiond started from this library,
//! with curl and wget: whole files, HEAD, byte ranges, keep-alive, 404s, traversal
//! attempts, the device's script (kernel and initrd over HTTP) and personality, a slow
//! reader that must not stall others, and 1,000 idle connections.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use provision_core::{DeviceType, Mac, Mode, Store};

const MAC: &str = "52:54:00:77:00:01";

/// A provisiond with `[http]` on over a boot-file folder, stopped when dropped.
struct Lab {
    _dir: tempfile::TempDir,
    root: PathBuf,
    http: SocketAddr,
    _server: common::Provisiond,
}

impl Lab {
    fn start() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let files = root.join("tftp");
        std::fs::create_dir_all(files.join("boot/lab")).unwrap();
        std::fs::write(files.join("boot/lab/vmlinuz"), pattern(3 << 20)).unwrap();
        std::fs::write(files.join("boot/lab/initrd.img"), b"initrd bytes").unwrap();
        std::fs::write(root.join("secret"), b"outside the folder").unwrap();
        let store = Store::open(&root.join("store")).unwrap();
        store.add_vdisk("lab", 1 << 20, "", "lab/v0.vhd").unwrap();
        let mac: Mac = MAC.parse().unwrap();
        store
            .add_device(mac, "seat-1", None, DeviceType::Production)
            .unwrap();
        store.assign("seat-1", "lab", Mode::Standard, None).unwrap();
        store
            .set_personality("seat-1", "role", Some("kiosk"))
            .unwrap();
        drop(store);
        std::fs::write(
            root.join("provisiond.toml"),
            "store = \"store\"\n[nbd]\nlisten = \"127.0.0.1:0\"\n\
             [tftp]\nroot = \"tftp\"\n\
             [http]\nenabled = true\nlisten = \"127.0.0.1:0\"\nadvertise = \"127.0.0.1:8080\"\n\
             [api]\nenabled = false\n[boot]\nnbd_server = \"127.0.0.1:10809\"\n",
        )
        .unwrap();
        let server = common::Provisiond::start(&root.join("provisiond.toml"));
        let http = server.http.unwrap();
        Lab {
            _dir: dir,
            root,
            http,
            _server: server,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.http)
    }

    /// `curl` with `args`; the status code and the body.
    fn curl(&self, args: &[&str], path: &str) -> (u16, Vec<u8>) {
        let out = curl()
            .args(["-s", "--path-as-is", "-o", "-", "-w", "\n%{http_code}"])
            .args(args)
            .arg(self.url(path))
            .output()
            .unwrap();
        let mut body = out.stdout;
        let at = body.iter().rposition(|&b| b == b'\n').unwrap();
        let code = std::str::from_utf8(&body[at + 1..])
            .unwrap()
            .parse()
            .unwrap();
        body.truncate(at);
        (code, body)
    }
}

fn curl() -> Command {
    Command::new(testkit::find_program("curl").expect("checked by require_peer!"))
}

/// Bytes that differ at every offset of a few MiB.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 16) as u8)
        .collect()
}

#[test]
fn files_whole_in_ranges_and_by_head() {
    testkit::require_peer!("curl");
    let lab = Lab::start();
    let kernel = pattern(3 << 20);
    let (code, body) = lab.curl(&[], "boot/lab/vmlinuz");
    assert_eq!(code, 200);
    assert!(body == kernel, "the kernel came back changed");

    let (code, body) = lab.curl(&["-r", "1000-1999"], "boot/lab/vmlinuz");
    assert_eq!((code, body.as_slice()), (206, &kernel[1000..2000]));
    let (code, body) = lab.curl(&["-H", "Range: bytes=-100"], "boot/lab/vmlinuz");
    assert_eq!(
        (code, body.as_slice()),
        (206, &kernel[kernel.len() - 100..])
    );
    let (code, _) = lab.curl(&["-H", "Range: bytes=99999999-"], "boot/lab/vmlinuz");
    assert_eq!(code, 416);

    // HEAD: the exact length, no body, ranges announced.
    let out = curl()
        .args(["-s", "-I"])
        .arg(lab.url("boot/lab/vmlinuz"))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains(&format!("content-length: {}", kernel.len())),
        "{head}"
    );
    assert!(head.contains("accept-ranges: bytes"), "{head}");
    assert!(!head.contains("chunked"), "{head}");

    // Keep-alive: two files over one connection.
    let out = curl()
        .args(["-sv", "-o", "/dev/null", "-o", "/dev/null"])
        .arg(lab.url("boot/lab/initrd.img"))
        .arg(lab.url("boot/lab/vmlinuz"))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("Re-using existing connection"), "{log}");

    // wget, as a second client.
    let wget = testkit::require_peer!("wget");
    let out = Command::new(wget)
        .args(["-q", "-O", "-"])
        .arg(lab.url("boot/lab/initrd.img"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, b"initrd bytes");

    // Only GET and HEAD.
    let (code, _) = lab.curl(&["-X", "POST"], "boot/lab/initrd.img");
    assert_eq!(code, 405);
}

#[test]
fn nothing_outside_the_folder_and_no_listing() {
    testkit::require_peer!("curl");
    let lab = Lab::start();
    assert!(lab.root.join("secret").exists());
    let (code, _) = lab.curl(&[], "boot/lab/missing");
    assert_eq!(code, 404);
    let (code, _) = lab.curl(&[], "boot/lab/");
    assert!(code == 404 || code == 403, "a folder is not listed: {code}");
    for path in [
        "../secret",
        "boot/../../secret",
        "%2e%2e/secret",
        "..%2fsecret",
        "boot/lab/..%5c..%5c..%5csecret",
        "..\\secret",
        "/../secret",
        &format!("{}/secret", lab.root.display()),
        "boot%00/lab/vmlinuz",
    ] {
        let (code, body) = lab.curl(&[], path);
        assert!(
            (400..500).contains(&code),
            "{path}: answered {code} {:?}",
            String::from_utf8_lossy(&body)
        );
        assert!(
            !body.windows(7).any(|w| w == b"outside"),
            "{path} left the folder"
        );
    }
}

#[test]
fn the_device_script_fetches_kernel_and_initrd_over_http() {
    testkit::require_peer!("curl");
    let lab = Lab::start();
    let (code, script) = lab.curl(&[], &format!("provision/{MAC}.ipxe"));
    assert_eq!(code, 200);
    let script = String::from_utf8(script).unwrap();
    assert!(
        script.contains("\nkernel http://127.0.0.1:8080/boot/lab/vmlinuz "),
        "{script}"
    );
    assert!(
        script.contains("\ninitrd --name initrd.img http://127.0.0.1:8080/boot/lab/initrd.img\n"),
        "{script}"
    );
    // The boot's token is in the export name; with it, the personality.
    let token = script
        .split(&format!("{MAC}/lab/"))
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    let (code, body) = lab.curl(&[], &format!("provision/{MAC}/{token}.personality"));
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("role=kiosk"));
    let wrong = "0".repeat(token.len());
    let (code, body) = lab.curl(&[], &format!("provision/{MAC}/{wrong}.personality"));
    assert_eq!(code, 403, "{}", String::from_utf8_lossy(&body));
    assert!(!String::from_utf8_lossy(&body).contains("kiosk"));
}

/// A client that stops reading a large file, and one that never finishes its head,
/// do not stall a download beside them.
#[test]
fn a_slow_client_stalls_only_itself() {
    testkit::require_peer!("curl");
    let lab = Lab::start();
    let mut reader = TcpStream::connect(lab.http).unwrap();
    write!(reader, "GET /boot/lab/vmlinuz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut first = [0u8; 64];
    reader.read_exact(&mut first).unwrap();
    let mut silent = TcpStream::connect(lab.http).unwrap();
    silent.write_all(b"GET /boot/lab/vm").unwrap();
    let (code, body) = lab.curl(&["--max-time", "10"], "boot/lab/vmlinuz");
    assert_eq!(code, 200);
    assert_eq!(body.len(), 3 << 20);
    drop((reader, silent));
}

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// 1,000 idle connections from 125 addresses are held in bounded memory, and a device
/// is still served.
#[test]
fn a_thousand_idle_connections() {
    testkit::require_peer!("curl");
    let lab = Lab::start();
    let _ = lab.curl(&[], "boot/lab/initrd.img");
    let before = resident_kib();
    let mut idle = Vec::new();
    for i in 0..1000u32 {
        let source = Ipv4Addr::new(127, 0, 1, (i / 8 + 2) as u8);
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.bind(&SocketAddr::from((source, 0)).into()).unwrap();
        socket.connect(&lab.http.into()).unwrap();
        idle.push(TcpStream::from(socket));
    }
    std::thread::sleep(Duration::from_millis(500));
    let grown = resident_kib().saturating_sub(before);
    eprintln!("1,000 idle connections: {grown} KiB");
    assert!(grown < 32 << 10, "1,000 idle connections cost {grown} KiB");
    let (code, body) = lab.curl(&["--max-time", "10"], "boot/lab/initrd.img");
    assert_eq!((code, body.as_slice()), (200, &b"initrd bytes"[..]));
    // They were held, not refused: each is still open.
    let mut buf = [0u8; 1];
    idle[0]
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    assert!(matches!(
        idle[0].read(&mut buf),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
    ));
}
