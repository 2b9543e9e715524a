//! The lease table and its file. One line per address:
//! `<ip> <mac> <expires, unix seconds> <offered|bound|declined|released>`; the file is
//! rewritten whole through a temporary file and a rename, so a crash leaves the old or
//! the new table, never half of one.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use crate::error::{Error, Result};
use crate::request::{format_mac, parse_mac};

/// The state of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Offered, waiting for the REQUEST.
    Offered,
    /// Acknowledged.
    Bound,
    /// A client said the address is in use by someone else (DHCPDECLINE).
    Declined,
    /// Given back by its client; kept so the client gets it again.
    Released,
}

impl LeaseState {
    fn name(self) -> &'static str {
        match self {
            LeaseState::Offered => "offered",
            LeaseState::Bound => "bound",
            LeaseState::Declined => "declined",
            LeaseState::Released => "released",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "offered" => LeaseState::Offered,
            "bound" => LeaseState::Bound,
            "declined" => LeaseState::Declined,
            "released" => LeaseState::Released,
            _ => return None,
        })
    }
}

/// One address's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The client (all zeros for a declined address).
    pub mac: [u8; 6],
    /// Unix seconds when the record stops holding the address.
    pub expires: u64,
    /// Its state.
    pub state: LeaseState,
}

/// All records, by address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leases {
    by_ip: BTreeMap<Ipv4Addr, Lease>,
}

impl Leases {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The record of `ip`.
    pub fn get(&self, ip: Ipv4Addr) -> Option<&Lease> {
        self.by_ip.get(&ip)
    }

    /// Sets the record of `ip`.
    pub fn insert(&mut self, ip: Ipv4Addr, lease: Lease) {
        self.by_ip.insert(ip, lease);
    }

    /// Removes the record of `ip`.
    pub fn remove(&mut self, ip: Ipv4Addr) -> Option<Lease> {
        self.by_ip.remove(&ip)
    }

    /// The address last given to `mac` (any state but declined), newest expiry first.
    pub fn find_mac(&self, mac: [u8; 6]) -> Option<(Ipv4Addr, Lease)> {
        self.by_ip
            .iter()
            .filter(|(_, l)| l.mac == mac && l.state != LeaseState::Declined)
            .max_by_key(|(_, l)| l.expires)
            .map(|(ip, l)| (*ip, *l))
    }

    /// Whether `ip` may be given to `mac` at `now`.
    pub fn is_free_for(&self, ip: Ipv4Addr, mac: [u8; 6], now: u64) -> bool {
        match self.by_ip.get(&ip) {
            None => true,
            Some(l) if l.state == LeaseState::Declined => l.expires <= now,
            Some(l) => l.mac == mac || l.expires <= now || l.state == LeaseState::Released,
        }
    }

    /// Iterates over the records.
    pub fn iter(&self) -> impl Iterator<Item = (&Ipv4Addr, &Lease)> {
        self.by_ip.iter()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    /// Whether there is no record.
    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut s = String::from("# pxe leases: ip mac expires(unix) state\n");
        for (ip, l) in &self.by_ip {
            s.push_str(&format!(
                "{ip} {} {} {}\n",
                format_mac(&l.mac),
                l.expires,
                l.state.name()
            ));
        }
        s
    }

    /// Parses the file's text; a bad line is an error naming its number.
    pub fn from_text(text: &str) -> Result<Leases> {
        let mut leases = Leases::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || {
                Error::Config(format!(
                    "lease file line {}: `{line}` is not `ip mac expires state`",
                    n + 1
                ))
            };
            let f: Vec<&str> = line.split_whitespace().collect();
            let [ip, mac, expires, state] = f.as_slice() else {
                return Err(bad());
            };
            leases.insert(
                ip.parse().map_err(|_| bad())?,
                Lease {
                    mac: parse_mac(mac).ok_or_else(bad)?,
                    expires: expires.parse().map_err(|_| bad())?,
                    state: LeaseState::from_name(state).ok_or_else(bad)?,
                },
            );
        }
        Ok(leases)
    }

    /// Loads the table from `path`; a missing file is an empty table.
    pub fn load(path: &Path) -> Result<Leases> {
        match std::fs::read_to_string(path) {
            Ok(text) => Leases::from_text(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Leases::new()),
            Err(e) => Err(Error::io(
                format!("reading lease file {}", path.display()),
                e,
            )),
        }
    }

    /// Writes the table to `path` atomically (temporary file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(self.to_text().as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| Error::io(format!("writing lease file {}", path.display()), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_survives_a_restart() {
        let mut l = Leases::new();
        l.insert(
            Ipv4Addr::new(10, 77, 0, 50),
            Lease {
                mac: [2, 0, 0, 0, 0, 1],
                expires: 1000,
                state: LeaseState::Bound,
            },
        );
        l.insert(
            Ipv4Addr::new(10, 77, 0, 51),
            Lease {
                mac: [0; 6],
                expires: 2000,
                state: LeaseState::Declined,
            },
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases");
        assert!(Leases::load(&path).unwrap().is_empty());
        l.save(&path).unwrap();
        assert_eq!(Leases::load(&path).unwrap(), l);
        assert!(Leases::from_text("10.77.0.1 nope 1 bound").is_err());
        assert!(Leases::from_text("10.77.0.1 02:00:00:00:00:01 1 lost").is_err());
    }

    #[test]
    fn freedom_rules() {
        let mut l = Leases::new();
        let ip = Ipv4Addr::new(10, 77, 0, 50);
        l.insert(
            ip,
            Lease {
                mac: [1; 6],
                expires: 100,
                state: LeaseState::Bound,
            },
        );
        assert!(l.is_free_for(ip, [1; 6], 50));
        assert!(!l.is_free_for(ip, [2; 6], 50));
        assert!(l.is_free_for(ip, [2; 6], 100));
        l.insert(
            ip,
            Lease {
                mac: [0; 6],
                expires: 100,
                state: LeaseState::Declined,
            },
        );
        assert!(!l.is_free_for(ip, [1; 6], 50));
    }
}
