//! The UDP driver on loopback (no root needed): only unicast paths, since a broadcast
//! must never leave a namespace the test owns. Malformed packets of every kind are
//! dropped and the server keeps answering.

use std::borrow::Cow;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use pxe::client::ClientProfile;
use pxe::driver::{Driver, DriverConfig, DriverStats, Mode};
use pxe::options::{ClientArch, codes};
use pxe::{BootPolicy, ClientInfo, Message, MessageType, Policy, Silence};

const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn malformed() -> Vec<Vec<u8>> {
    let good = ClientProfile::bios([2, 0, 0, 0, 0, 1])
        .boot_request(1, LO, None)
        .encode();
    let mut bad_cookie = good.clone();
    bad_cookie[236] ^= 0xff;
    let no_end: Vec<u8> = good[..240].iter().copied().chain([53, 1, 3]).collect();
    let mut overrun = good[..240].to_vec();
    overrun.extend_from_slice(&[53, 1, 3, 60, 200, 1, 2]);
    let mut overload_loop = Message::parse(&good).unwrap();
    overload_loop.options.push(52, &[3]);
    overload_loop.file[..4].copy_from_slice(&[52, 1, 3, 255]);
    overload_loop.sname[..4].copy_from_slice(&[52, 1, 3, 255]);
    let mut huge = good[..240].to_vec();
    huge.extend(std::iter::repeat_n([200u8, 0], 5000).flatten());
    huge.push(255);
    let mut bad_arch = Message::parse(&good).unwrap();
    bad_arch.options.set(codes::CLIENT_ARCH, &[0]);
    vec![
        vec![],
        vec![1; 10],
        good[..239].to_vec(),
        bad_cookie,
        no_end,
        overrun,
        overload_loop.encode(),
        huge,
        bad_arch.encode(),
    ]
}

/// Runs a driver in `mode` on loopback ports, replying to a client socket that waits
/// at most `wait` for an answer; returns the runtime, that socket and port 4011's
/// address.
fn serve(mode: Mode, wait: Duration) -> (tokio::runtime::Runtime, UdpSocket, SocketAddrV4) {
    let (rt, client, ports) = serve_counted(mode, wait);
    (rt, client, ports.boot)
}

/// The driver's addresses and counters, for [`serve_counted`]'s callers.
struct Ports {
    dhcp: SocketAddrV4,
    boot: SocketAddrV4,
    stats: Arc<DriverStats>,
}

/// [`serve`], also returning port 67's address and the driver's counters.
fn serve_counted(mode: Mode, wait: Duration) -> (tokio::runtime::Runtime, UdpSocket, Ports) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let client = UdpSocket::bind((LO, 0)).unwrap();
    client.set_read_timeout(Some(wait)).unwrap();
    let mut config = DriverConfig::new(None);
    config.listen = LO;
    config.dhcp_port = 0;
    config.boot_port = Some(0);
    config.client_port = client.local_addr().unwrap().port();
    config.watch_rivals = false;
    let driver = rt.block_on(Driver::bind(config, mode)).unwrap();
    let boot = SocketAddrV4::new(LO, driver.boot_port().unwrap());
    let dhcp = SocketAddrV4::new(LO, driver.dhcp_port());
    let stats = driver.stats();
    rt.spawn(driver.run());
    (rt, client, Ports { dhcp, boot, stats })
}

#[test]
fn boot_server_answers_on_loopback_after_malformed_packets() {
    let policy = Policy::new(LO).with_boot_file(ClientArch::X86Bios, "undionly.kpxe");
    let (rt, client, boot) = serve(Mode::Proxy(policy), Duration::from_secs(5));

    for bytes in malformed() {
        client.send_to(&bytes, boot).unwrap();
    }
    let req = ClientProfile::bios([2, 0, 0, 0, 0, 1]).boot_request(0xabcd, LO, None);
    client.send_to(&req.encode(), boot).unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = client
        .recv_from(&mut buf)
        .expect("an ACK after the malformed packets");
    assert_eq!(
        from,
        std::net::SocketAddr::V4(boot),
        "the reply comes from port 4011's socket"
    );
    let ack = Message::parse(&buf[..n]).unwrap();
    assert_eq!(ack.xid, 0xabcd);
    assert_eq!(ack.message_type(), Some(MessageType::Ack));
    assert_eq!(ack.file_name().as_deref(), Some("undionly.kpxe"));
    rt.shutdown_background();
}

/// Answers MAC 02:00:00:00:00:02 only, with a script of its own.
struct OneDevice(Policy);

impl BootPolicy for OneDevice {
    fn server_ip(&self) -> Ipv4Addr {
        self.0.server_ip
    }

    fn handle_boot_client(&self, client: &ClientInfo) -> Result<Cow<'_, Policy>, Silence> {
        if client.mac != Some([2, 0, 0, 0, 0, 2]) {
            return Err(Silence::Refused("unknown device"));
        }
        let mut p = self.0.clone();
        p.ipxe_script = Some(format!("scripts/{}.ipxe", client.mac_text()));
        Ok(Cow::Owned(p))
    }
}

#[test]
fn embedder_policy_answers_per_client() {
    let hook = OneDevice(Policy::new(LO).with_boot_file(ClientArch::X86Bios, "undionly.kpxe"));
    let (rt, client, boot) = serve(Mode::ProxyFrom(Arc::new(hook)), Duration::from_secs(1));

    let mut buf = [0u8; 1500];
    let mut stranger = ClientProfile::bios([2, 0, 0, 0, 0, 1]);
    stranger.ipxe = true;
    client
        .send_to(&stranger.boot_request(1, LO, None).encode(), boot)
        .unwrap();
    assert!(
        client.recv_from(&mut buf).is_err(),
        "an unknown device gets no answer"
    );
    let mut known = ClientProfile::bios([2, 0, 0, 0, 0, 2]);
    known.ipxe = true;
    client
        .send_to(&known.boot_request(2, LO, None).encode(), boot)
        .unwrap();
    let (n, _) = client
        .recv_from(&mut buf)
        .expect("an ACK for the known device");
    let ack = Message::parse(&buf[..n]).unwrap();
    assert_eq!(ack.xid, 2);
    assert_eq!(
        ack.file_name().as_deref(),
        Some("scripts/02:00:00:00:00:02.ipxe")
    );
    rt.shutdown_background();
}

/// Answers every client after a slow lookup (a database on a busy disk).
struct Slow(Policy, Duration);

impl BootPolicy for Slow {
    fn server_ip(&self) -> Ipv4Addr {
        self.0.server_ip
    }

    fn handle_boot_client(&self, _: &ClientInfo) -> Result<Cow<'_, Policy>, Silence> {
        std::thread::sleep(self.1);
        Ok(Cow::Borrowed(&self.0))
    }
}

/// An embedder's policy may block: the runtime's other tasks (in provisiond, the NBD
/// connections) keep running meanwhile, even on a runtime with a single worker.
#[test]
fn a_slow_embedder_policy_does_not_stall_the_runtimes_other_tasks() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let lookup = Duration::from_millis(300);
    let policy = Policy::new(LO).with_boot_file(ClientArch::X86Bios, "undionly.kpxe");
    let (rt, client, boot) = serve(
        Mode::ProxyFrom(Arc::new(Slow(policy, lookup))),
        Duration::from_secs(5),
    );
    // Another task of the runtime ticks every 10 ms and keeps its longest gap.
    let longest_ms = Arc::new(AtomicU64::new(0));
    let longest = longest_ms.clone();
    rt.spawn(async move {
        let mut last = std::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let gap = last.elapsed().as_millis() as u64;
            longest.fetch_max(gap, Ordering::Relaxed);
            last = std::time::Instant::now();
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    let mut buf = [0u8; 1500];
    for xid in 1..=2 {
        let req = ClientProfile::bios([2, 0, 0, 0, 0, 3]).boot_request(xid, LO, None);
        client.send_to(&req.encode(), boot).unwrap();
        let (n, _) = client.recv_from(&mut buf).expect("an ACK after the lookup");
        assert_eq!(Message::parse(&buf[..n]).unwrap().xid, xid);
    }
    let gap = longest_ms.load(Ordering::Relaxed);
    assert!(
        gap < lookup.as_millis() as u64 / 2,
        "the other task waited {gap} ms while the policy looked up ({lookup:?})"
    );
    rt.shutdown_background();
}

/// An embedder's policy with a bug: it panics on MAC 02:00:00:00:00:0b.
struct Buggy(Policy);

const BUGGY_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x0b];

impl BootPolicy for Buggy {
    fn server_ip(&self) -> Ipv4Addr {
        self.0.server_ip
    }

    fn handle_boot_client(&self, client: &ClientInfo) -> Result<Cow<'_, Policy>, Silence> {
        assert_ne!(client.mac, Some(BUGGY_MAC), "a bug tripped by one client");
        Ok(Cow::Borrowed(&self.0))
    }
}

/// Sends `req` to `to` and returns the reply's xid, or `None` when nothing came back.
fn exchange(client: &UdpSocket, to: SocketAddrV4, req: &Message) -> Option<u32> {
    client.send_to(&req.encode(), to).unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = client.recv_from(&mut buf).ok()?;
    Some(Message::parse(&buf[..n]).unwrap().xid)
}

/// A packet whose handling panics is dropped and counted; the socket keeps serving
/// (the panic used to end the socket's task, and with it the whole driver).
#[test]
fn a_panic_while_handling_one_packet_drops_that_packet_only() {
    let policy = Buggy(Policy::new(LO).with_boot_file(ClientArch::X86Bios, "undionly.kpxe"));
    let (rt, client, ports) = serve_counted(
        Mode::ProxyFrom(Arc::new(policy)),
        Duration::from_millis(500),
    );
    let buggy = ClientProfile::bios(BUGGY_MAC);
    let fine = ClientProfile::bios([2, 0, 0, 0, 0, 0x0c]);
    for round in 0..2 {
        let xid = 10 * round;
        let req = buggy.boot_request(xid + 1, LO, None);
        assert_eq!(exchange(&client, ports.boot, &req), None, "no answer");
        let req = fine.boot_request(xid + 2, LO, None);
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(exchange(&client, ports.boot, &req), Some(xid + 2));
        client
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
    }
    assert_eq!(ports.stats.panics.load(Ordering::Relaxed), 2);
    rt.shutdown_background();
}

/// The same in full DHCP mode, on port 67, where the panic happens inside
/// `FullDhcp::handle` with the lease table locked: the lock is taken again afterwards.
#[test]
fn a_panic_in_full_mode_drops_that_packet_only() {
    use pxe::full::{FullConfig, FullDhcp, Leases, Pool};
    let policy = Policy::new(LO).with_boot_file(ClientArch::X86Bios, "undionly.kpxe");
    let pool = Pool::new(
        Ipv4Addr::new(127, 0, 0, 50),
        Ipv4Addr::new(127, 0, 0, 60),
        8,
    )
    .unwrap();
    let server = FullDhcp::new(policy.clone(), FullConfig::new(pool), Leases::new())
        .with_boot_policy(Arc::new(Buggy(policy)));
    let mode = Mode::Full {
        server: Box::new(server),
        leases_path: None,
    };
    let (rt, client, ports) = serve_counted(mode, Duration::from_millis(500));
    // DHCPINFORM from a configured client: the ACK is unicast to ciaddr (loopback).
    let inform = |profile: ClientProfile, xid| {
        let mut m = profile.boot_request(xid, LO, None);
        m.options.set(codes::MESSAGE_TYPE, &[8]);
        m
    };
    for round in 0..2 {
        let xid = 10 * round;
        let req = inform(ClientProfile::bios(BUGGY_MAC), xid + 1);
        assert_eq!(exchange(&client, ports.dhcp, &req), None, "no answer");
        let req = inform(ClientProfile::bios([2, 0, 0, 0, 0, 0x0c]), xid + 2);
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(exchange(&client, ports.dhcp, &req), Some(xid + 2));
        client
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
    }
    assert_eq!(ports.stats.panics.load(Ordering::Relaxed), 2);
    rt.shutdown_background();
}
