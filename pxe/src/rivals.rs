//! Rival detection: every other DHCP or ProxyDHCP server seen answering on the boot
//! segment, with the PXE options it hands out, so an operator learns why clients go
//! astray (two proxies fighting, a site server that also sends boot files, ...).
//!
//! Feed it the server replies the driver overhears on port 68; it returns a report the
//! first time a server is seen and whenever what it sends changes.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::options::{PxeVendor, codes};
use crate::wire::{Message, MessageType, Op};

/// What one rival server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RivalReport {
    /// Its server identifier (54), or the packet's source when absent.
    pub server: Ipv4Addr,
    /// The packet's source address.
    pub source: Ipv4Addr,
    /// The reply's type.
    pub message_type: Option<MessageType>,
    /// True for a ProxyDHCP answer (an OFFER or ACK with yiaddr 0).
    pub proxy: bool,
    /// The address it offered (0 for a proxy).
    pub yiaddr: Ipv4Addr,
    /// Option 60 it sent (`PXEClient` for PXE servers).
    pub vendor_class: Option<String>,
    /// `siaddr`.
    pub next_server: Ipv4Addr,
    /// Boot file (`file` or option 67).
    pub boot_file: Option<String>,
    /// PXE menu item texts (43.9).
    pub menu: Vec<String>,
}

impl RivalReport {
    /// Whether the rival answers boot clients (sends PXE options or a boot file).
    pub fn is_boot_server(&self) -> bool {
        self.vendor_class
            .as_deref()
            .is_some_and(|v| v.starts_with("PXEClient") || v.starts_with("HTTPClient"))
            || self.boot_file.is_some()
            || !self.menu.is_empty()
    }

    /// What makes two reports of one server the same news. A plain address server
    /// (the site's DHCP server beside a ProxyDHCP, expected) is one piece of news
    /// however its replies vary (offers, ACKs of renewals, INFORM answers).
    fn key(&self) -> impl PartialEq + '_ {
        let boot = self.is_boot_server();
        (
            boot,
            boot && self.proxy,
            boot.then_some(&self.vendor_class),
            if boot {
                self.next_server
            } else {
                Ipv4Addr::UNSPECIFIED
            },
            &self.boot_file,
            &self.menu,
        )
    }
}

impl std::fmt::Display for RivalReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match (self.proxy, self.is_boot_server()) {
            (true, _) => "ProxyDHCP server",
            (false, true) => "DHCP server with PXE options",
            (false, false) => "DHCP server",
        };
        write!(f, "{what} {} (from {})", self.server, self.source)?;
        if !self.yiaddr.is_unspecified() {
            write!(f, " offering {}", self.yiaddr)?;
        }
        if let Some(v) = &self.vendor_class {
            write!(f, " vendor-class={v:?}")?;
        }
        if !self.next_server.is_unspecified() {
            write!(f, " next-server={}", self.next_server)?;
        }
        if let Some(b) = &self.boot_file {
            write!(f, " boot-file={b:?}")?;
        }
        if !self.menu.is_empty() {
            write!(f, " menu={:?}", self.menu)?;
        }
        Ok(())
    }
}

/// The servers seen so far.
#[derive(Debug, Clone, Default)]
pub struct Rivals {
    ours: Vec<Ipv4Addr>,
    seen: BTreeMap<Ipv4Addr, RivalReport>,
}

impl Rivals {
    /// A detector that ignores our own addresses.
    pub fn new(ours: impl IntoIterator<Item = Ipv4Addr>) -> Self {
        Self {
            ours: ours.into_iter().collect(),
            seen: BTreeMap::new(),
        }
    }

    /// Looks at a message overheard from `source`. Returns a report when it is a server
    /// reply from someone else that is new or differs from what that server sent before.
    pub fn observe(&mut self, source: Ipv4Addr, msg: &Message) -> Option<RivalReport> {
        if msg.op != Op::BootReply {
            return None;
        }
        let message_type = msg.message_type();
        if !matches!(
            message_type,
            Some(MessageType::Offer | MessageType::Ack | MessageType::Nak)
        ) {
            return None;
        }
        let server = msg
            .option(codes::SERVER_ID)
            .and_then(|v| <[u8; 4]>::try_from(v.as_slice()).ok())
            .map(Ipv4Addr::from)
            .unwrap_or(source);
        if self.ours.contains(&server) || self.ours.contains(&source) {
            return None;
        }
        let menu = msg
            .option(codes::VENDOR_SPECIFIC)
            .and_then(|v| PxeVendor::parse(&v).ok())
            .map(|v| {
                v.menu()
                    .iter()
                    .map(|i| String::from_utf8_lossy(&i.text).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let report = RivalReport {
            server,
            source,
            message_type,
            proxy: msg.yiaddr.is_unspecified() && message_type != Some(MessageType::Nak),
            yiaddr: msg.yiaddr,
            vendor_class: msg
                .option(codes::VENDOR_CLASS)
                .map(|v| String::from_utf8_lossy(&v).into_owned()),
            next_server: msg.siaddr,
            boot_file: msg.file_name().or_else(|| {
                msg.option(codes::BOOTFILE_NAME)
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
            }),
            menu,
        };
        let changed = self
            .seen
            .get(&server)
            .is_none_or(|old| old.key() != report.key());
        self.seen.insert(server, report.clone());
        changed.then_some(report)
    }

    /// Every server seen, by address.
    pub fn seen(&self) -> impl Iterator<Item = &RivalReport> {
        self.seen.values()
    }

    /// The servers seen that answer PXE clients with boot information: the ones that
    /// clash with us (plain address servers do not).
    pub fn boot_servers(&self) -> impl Iterator<Item = &RivalReport> {
        self.seen().filter(|r| r.is_boot_server())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientProfile;
    use crate::options::ClientArch;
    use crate::policy::Policy;

    #[test]
    fn reports_other_proxies_once_and_ignores_ours() {
        let d = ClientProfile::bios([2, 0, 0, 0, 0, 1]).discover(1);
        let rival_ip = Ipv4Addr::new(10, 77, 0, 3);
        let theirs = Policy::new(rival_ip).with_boot_file(ClientArch::X86Bios, "pxelinux.0");
        let offer = crate::proxy::offer(&d, &theirs).unwrap().message;
        let mut r = Rivals::new([Ipv4Addr::new(10, 77, 0, 1)]);
        let rep = r.observe(rival_ip, &offer).expect("first sighting");
        assert!(rep.proxy && rep.is_boot_server());
        assert_eq!(rep.server, rival_ip);
        assert_eq!(rep.boot_file.as_deref(), Some("pxelinux.0"));
        assert!(rep.to_string().contains("ProxyDHCP server 10.77.0.3"));
        assert!(
            r.observe(rival_ip, &offer).is_none(),
            "same answer again: no new report"
        );
        let ours =
            Policy::new(Ipv4Addr::new(10, 77, 0, 1)).with_boot_file(ClientArch::X86Bios, "x");
        let own = crate::proxy::offer(&d, &ours).unwrap().message;
        assert!(r.observe(Ipv4Addr::new(10, 77, 0, 1), &own).is_none());
        assert!(r.observe(rival_ip, &d).is_none(), "requests are not rivals");
        assert_eq!(r.seen().count(), 1);
    }

    #[test]
    fn a_plain_address_server_is_news_once_and_no_rival() {
        let site = Ipv4Addr::new(10, 77, 0, 2);
        let mut r = Rivals::new([Ipv4Addr::new(10, 77, 0, 1)]);
        let reply = |kind: MessageType, yiaddr: [u8; 4], siaddr: [u8; 4]| {
            let mut m = ClientProfile::bios([2, 0, 0, 0, 0, 1]).discover(7);
            m.op = Op::BootReply;
            m.yiaddr = Ipv4Addr::from(yiaddr);
            m.siaddr = Ipv4Addr::from(siaddr);
            m.options.remove(codes::VENDOR_CLASS);
            m.options.set(codes::MESSAGE_TYPE, &[kind.into()]);
            m
        };
        let first = r
            .observe(
                site,
                &reply(MessageType::Offer, [10, 77, 0, 50], [10, 77, 0, 2]),
            )
            .expect("first sighting");
        assert!(!first.is_boot_server());
        // Offers to other clients, an INFORM answer (no address), other next-servers:
        // nothing new to say.
        for (kind, yiaddr, siaddr) in [
            (MessageType::Offer, [10, 77, 0, 51], [10, 77, 0, 2]),
            (MessageType::Ack, [0, 0, 0, 0], [0, 0, 0, 0]),
            (MessageType::Ack, [10, 77, 0, 52], [10, 77, 0, 9]),
        ] {
            assert!(r.observe(site, &reply(kind, yiaddr, siaddr)).is_none());
        }
        assert_eq!(r.boot_servers().count(), 0);
    }
}
