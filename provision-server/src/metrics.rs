//! What provisiond counts and how `/metrics` renders it (Prometheus text format 0.0.4):
//! sessions, traffic and errors by device and vDisk, write-cache use, TFTP transfers,
//! ProxyDHCP replies and rival servers.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use provision_core::{SessionMode, Sessions, Usage};
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

/// A per-device metric family: name, type, help, and its value in a usage record.
type PerDevice = (&'static str, &'static str, &'static str, fn(&Usage) -> u64);

/// A service counter: name, type, help, value.
type Counter<'a> = (&'static str, &'static str, &'static str, &'a AtomicU64);

/// Escapes a label value (backslash, double quote, newline).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The whole `/metrics` page.
pub fn render(
    sessions: &Sessions,
    tftp: &TftpCounters,
    dhcp: Option<&DriverStats>,
    uptime: Duration,
) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "provision_uptime_seconds",
        "gauge",
        "Seconds since provisiond started.",
    );
    let _ = writeln!(out, "provision_uptime_seconds {}", uptime.as_secs());

    family(
        &mut out,
        "provision_sessions",
        "gauge",
        "Open sessions by mode.",
    );
    let live = sessions.list();
    for (mode, word) in [
        (SessionMode::Standard, "standard"),
        (SessionMode::Private, "private"),
        (SessionMode::Maintenance, "maintenance"),
    ] {
        let n = live.iter().filter(|s| s.mode == mode).count();
        let _ = writeln!(out, "provision_sessions{{mode=\"{word}\"}} {n}");
    }

    let usage = sessions.usage();
    let per_device: [PerDevice; 7] = [
        (
            "provision_device_sessions",
            "gauge",
            "Open sessions of a device on a vDisk.",
            |u| u.open_sessions,
        ),
        (
            "provision_device_reads_total",
            "counter",
            "Read requests of a device on a vDisk.",
            |u| u.stats.reads,
        ),
        (
            "provision_device_read_bytes_total",
            "counter",
            "Bytes a device read from a vDisk.",
            |u| u.stats.read_bytes,
        ),
        (
            "provision_device_writes_total",
            "counter",
            "Write requests of a device on a vDisk.",
            |u| u.stats.writes,
        ),
        (
            "provision_device_write_bytes_total",
            "counter",
            "Bytes a device wrote to a vDisk.",
            |u| u.stats.write_bytes,
        ),
        (
            "provision_device_errors_total",
            "counter",
            "Requests of a device on a vDisk that failed.",
            |u| u.stats.errors,
        ),
        (
            "provision_write_cache_bytes",
            "gauge",
            "Bytes held by a device's write cache on a vDisk.",
            |u| u.cache_bytes,
        ),
    ];
    for (name, kind, help, value) in per_device {
        family(&mut out, name, kind, help);
        for u in &usage {
            let _ = writeln!(
                out,
                "{name}{{mac=\"{}\",device=\"{}\",vdisk=\"{}\"}} {}",
                u.mac,
                label(&u.device),
                label(&u.vdisk),
                value(u)
            );
        }
    }

    let mut counters: Vec<Counter<'_>> = vec![
        (
            "provision_tftp_transfers_total",
            "counter",
            "TFTP read requests served.",
            &tftp.transfers,
        ),
        (
            "provision_tftp_refused_total",
            "counter",
            "TFTP read requests refused.",
            &tftp.refused,
        ),
    ];
    if let Some(panics) = tftp.panics.get() {
        counters.push((
            "provision_tftp_panics_total",
            "counter",
            "TFTP packets whose handling panicked (a bug; each is logged).",
            panics,
        ));
    }
    if let Some(dhcp) = dhcp {
        counters.extend([
            (
                "provision_dhcp_replies_total",
                "counter",
                "ProxyDHCP replies sent (offers, ACKs).",
                &dhcp.replies,
            ),
            (
                "provision_dhcp_ignored_total",
                "counter",
                "DHCP requests left unanswered on purpose (not a PXE client, unknown device).",
                &dhcp.silent,
            ),
            (
                "provision_dhcp_malformed_total",
                "counter",
                "Malformed DHCP packets dropped.",
                &dhcp.malformed,
            ),
            (
                "provision_dhcp_panics_total",
                "counter",
                "DHCP packets dropped because handling them panicked (a bug; logged at ERROR).",
                &dhcp.panics,
            ),
            (
                "provision_dhcp_rival_servers",
                "gauge",
                "Other DHCP or ProxyDHCP servers seen answering on the segment.",
                &dhcp.rivals,
            ),
            (
                "provision_router_advertisements_total",
                "counter",
                "IPv6 router solicitations answered (lifetime 0).",
                &dhcp.router_advertisements,
            ),
        ]);
    }
    for (name, kind, help, value) in counters {
        family(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::label;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
