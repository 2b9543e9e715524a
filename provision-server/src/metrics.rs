//! What provisiond counts and how `/metrics` renders it (Prometheus text format, with
//! the `prometheus` client library): sessions, traffic and errors by device and vDisk,
//! write-cache use, TFTP transfers, ProxyDHCP replies and rival servers, the build and
//! the process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use prometheus::core::{Collector, Desc};
use prometheus::process_collector::ProcessCollector;
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use provision_core::{SessionMode, Sessions, Transport, Usage};
use pxe::driver::DriverStats;
use tftp::{Error, Provider, Source};

/// TFTP requests served and refused, counted by [`Counted`].
#[derive(Debug, Default)]
pub struct TftpCounters {
    /// Read requests that found their file (transfers started).
    pub transfers: AtomicU64,
    /// Read requests refused (not found, access violation, ...).
    pub refused: AtomicU64,
    /// Packets whose handling panicked, from the TFTP server once it runs.
    pub panics: std::sync::OnceLock<Arc<AtomicU64>>,
}

/// A TFTP provider that counts what it serves.
pub struct Counted<P> {
    inner: P,
    counters: Arc<TftpCounters>,
}

impl<P> Counted<P> {
    pub fn new(inner: P, counters: Arc<TftpCounters>) -> Self {
        Self { inner, counters }
    }
}

impl<P: Provider> Provider for Counted<P> {
    fn open(&self, path: &str, peer: SocketAddr) -> Result<Arc<dyn Source>, Error> {
        let result = self.inner.open(path, peer);
        let counter = match result {
            Ok(_) => &self.counters.transfers,
            Err(_) => &self.counters.refused,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }
}

/// The registry `/metrics` renders: provisiond's own families, `provision_build_info`
/// and the process's (CPU, memory, open files, threads, start time).
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// Metrics of `sessions` and the services' counters; `dhcp` once DHCP runs.
    pub fn new(
        sessions: Sessions,
        tftp: Arc<TftpCounters>,
        dhcp: Option<Arc<DriverStats>>,
        started: Instant,
    ) -> Self {
        let registry = Registry::new();
        let build = IntGaugeVec::new(
            Opts::new(
                "provision_build_info",
                "The running provisiond's version (always 1).",
            ),
            &["version"],
        )
        .expect("a valid metric");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(build),
            Box::new(ProcessCollector::for_self()),
            Box::new(Provision {
                sessions,
                tftp,
                dhcp,
                started,
                descs: Families::new().descs(),
            }),
        ];
        for collector in collectors {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        Self { registry }
    }

    /// The Prometheus text page.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# cannot encode the metrics: {e}\n"))
    }
}

/// provisiond's own families, collected from the sessions and counters at each scrape.
struct Provision {
    sessions: Sessions,
    tftp: Arc<TftpCounters>,
    dhcp: Option<Arc<DriverStats>>,
    started: Instant,
    descs: Vec<Desc>,
}

/// The families, made afresh for each scrape and filled from the live values.
struct Families {
    uptime: IntGauge,
    sessions: IntGaugeVec,
    transports: IntGaugeVec,
    per_device: Vec<(IntCounterVec, UsageOf)>,
    device_gauges: Vec<(IntGaugeVec, UsageOf)>,
    counters: Vec<(IntCounter, Service)>,
    rivals: IntGauge,
}

/// A per-device family's value in a usage record.
type UsageOf = fn(&Usage) -> u64;

/// Which service counter a family shows.
#[derive(Clone, Copy)]
enum Service {
    TftpTransfers,
    TftpRefused,
    TftpPanics,
    DhcpReplies,
    DhcpIgnored,
    DhcpMalformed,
    DhcpPanics,
    RouterAdvertisements,
}

const DEVICE: &[&str] = &["mac", "device", "vdisk"];

fn counter_vec(name: &str, help: &str) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), DEVICE).expect("a valid metric")
}

fn gauge_vec(name: &str, help: &str) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), DEVICE).expect("a valid metric")
}

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect("a valid metric")
}

impl Families {
    fn new() -> Self {
        use Service as S;
        Self {
            uptime: IntGauge::new(
                "provision_uptime_seconds",
                "Seconds since provisiond started.",
            )
            .expect("a valid metric"),
            sessions: IntGaugeVec::new(
                Opts::new("provision_sessions", "Open sessions by mode."),
                &["mode"],
            )
            .expect("a valid metric"),
            transports: IntGaugeVec::new(
                Opts::new(
                    "provision_sessions_by_transport",
                    "Open sessions by the protocol that opened them (nbd, iscsi).",
                ),
                &["transport"],
            )
            .expect("a valid metric"),
            per_device: vec![
                (
                    counter_vec(
                        "provision_device_reads_total",
                        "Read requests of a device on a vDisk.",
                    ),
                    |u| u.stats.reads,
                ),
                (
                    counter_vec(
                        "provision_device_read_bytes_total",
                        "Bytes a device read from a vDisk.",
                    ),
                    |u| u.stats.read_bytes,
                ),
                (
                    counter_vec(
                        "provision_device_writes_total",
                        "Write requests of a device on a vDisk.",
                    ),
                    |u| u.stats.writes,
                ),
                (
                    counter_vec(
                        "provision_device_write_bytes_total",
                        "Bytes a device wrote to a vDisk.",
                    ),
                    |u| u.stats.write_bytes,
                ),
                (
                    counter_vec(
                        "provision_device_errors_total",
                        "Requests of a device on a vDisk that failed.",
                    ),
                    |u| u.stats.errors,
                ),
            ],
            device_gauges: vec![
                (
                    gauge_vec(
                        "provision_device_sessions",
                        "Open sessions of a device on a vDisk.",
                    ),
                    |u| u.open_sessions,
                ),
                (
                    gauge_vec(
                        "provision_write_cache_bytes",
                        "Bytes held by a device's write cache on a vDisk.",
                    ),
                    |u| u.cache_bytes,
                ),
            ],
            counters: vec![
                (
                    counter(
                        "provision_tftp_transfers_total",
                        "TFTP read requests served.",
                    ),
                    S::TftpTransfers,
                ),
                (
                    counter(
                        "provision_tftp_refused_total",
                        "TFTP read requests refused.",
                    ),
                    S::TftpRefused,
                ),
                (
                    counter(
                        "provision_tftp_panics_total",
                        "TFTP packets whose handling panicked (a bug; each is logged).",
                    ),
                    S::TftpPanics,
                ),
                (
                    counter(
                        "provision_dhcp_replies_total",
                        "ProxyDHCP replies sent (offers, ACKs).",
                    ),
                    S::DhcpReplies,
                ),
                (
                    counter(
                        "provision_dhcp_ignored_total",
                        "DHCP requests left unanswered on purpose (not a PXE client, unknown device).",
                    ),
                    S::DhcpIgnored,
                ),
                (
                    counter(
                        "provision_dhcp_malformed_total",
                        "Malformed DHCP packets dropped.",
                    ),
                    S::DhcpMalformed,
                ),
                (
                    counter(
                        "provision_dhcp_panics_total",
                        "DHCP packets dropped because handling them panicked (a bug; logged at ERROR).",
                    ),
                    S::DhcpPanics,
                ),
                (
                    counter(
                        "provision_router_advertisements_total",
                        "IPv6 router solicitations answered (lifetime 0).",
                    ),
                    S::RouterAdvertisements,
                ),
            ],
            rivals: IntGauge::new(
                "provision_dhcp_rival_servers",
                "Other DHCP or ProxyDHCP servers seen answering PXE clients on the segment.",
            )
            .expect("a valid metric"),
        }
    }

    fn collectors(&self) -> Vec<&dyn Collector> {
        let mut all: Vec<&dyn Collector> =
            vec![&self.uptime, &self.sessions, &self.transports, &self.rivals];
        all.extend(self.per_device.iter().map(|(c, _)| c as &dyn Collector));
        all.extend(self.device_gauges.iter().map(|(c, _)| c as &dyn Collector));
        all.extend(self.counters.iter().map(|(c, _)| c as &dyn Collector));
        all
    }

    fn descs(&self) -> Vec<Desc> {
        self.collectors()
            .into_iter()
            .flat_map(|c| c.desc().into_iter().cloned())
            .collect()
    }
}

impl Collector for Provision {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let f = Families::new();
        f.uptime.set(self.started.elapsed().as_secs() as i64);
        let live = self.sessions.list();
        for (mode, word) in [
            (SessionMode::Standard, "standard"),
            (SessionMode::Private, "private"),
            (SessionMode::Maintenance, "maintenance"),
        ] {
            let n = live.iter().filter(|s| s.mode == mode).count();
            f.sessions.with_label_values(&[word]).set(n as i64);
        }
        for transport in [Transport::Nbd, Transport::Iscsi] {
            let n = live.iter().filter(|s| s.transport == transport).count();
            f.transports
                .with_label_values(&[transport.as_str()])
                .set(n as i64);
        }
        for u in &self.sessions.usage() {
            let mac = u.mac.to_string();
            let labels = [mac.as_str(), u.device.as_str(), u.vdisk.as_str()];
            for (family, value) in &f.per_device {
                family.with_label_values(&labels).inc_by(value(u));
            }
            for (family, value) in &f.device_gauges {
                family.with_label_values(&labels).set(value(u) as i64);
            }
        }
        let mut families: Vec<MetricFamily> = Vec::new();
        for (family, service) in &f.counters {
            let Some(value) = self.service(*service) else {
                continue;
            };
            family.inc_by(value);
            families.extend(family.collect());
        }
        if let Some(dhcp) = &self.dhcp {
            f.rivals.set(dhcp.rivals.load(Ordering::Relaxed) as i64);
            families.extend(f.rivals.collect());
        }
        families.extend(f.uptime.collect());
        families.extend(f.sessions.collect());
        families.extend(f.transports.collect());
        for (family, _) in &f.per_device {
            families.extend(family.collect());
        }
        for (family, _) in &f.device_gauges {
            families.extend(family.collect());
        }
        families
    }
}

impl Provision {
    /// A service counter's value; `None` when that service does not run.
    fn service(&self, which: Service) -> Option<u64> {
        let load = |c: &AtomicU64| Some(c.load(Ordering::Relaxed));
        let dhcp = self.dhcp.as_deref();
        match which {
            Service::TftpTransfers => load(&self.tftp.transfers),
            Service::TftpRefused => load(&self.tftp.refused),
            Service::TftpPanics => self.tftp.panics.get().and_then(|p| load(p)),
            Service::DhcpReplies => dhcp.and_then(|d| load(&d.replies)),
            Service::DhcpIgnored => dhcp.and_then(|d| load(&d.silent)),
            Service::DhcpMalformed => dhcp.and_then(|d| load(&d.malformed)),
            Service::DhcpPanics => dhcp.and_then(|d| load(&d.panics)),
            Service::RouterAdvertisements => dhcp.and_then(|d| load(&d.router_advertisements)),
        }
    }
}
