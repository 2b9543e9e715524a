//! What a client's message says about it, read once: message type, MAC, vendor class,
//! architecture, identity, iPXE markers and the PXE boot item it selected.

use std::net::Ipv4Addr;

use crate::error::Result;
use crate::options::pxe_vendor::BootItem;
use crate::options::{
    ClientArch, IpxeOptions, MachineId, NetworkInterfaceId, PxeVendor, UserClass, VendorClass,
    VendorKind, codes,
};
use crate::wire::{Message, MessageType};

/// A client message's typed summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// Option 53.
    pub message_type: MessageType,
    /// The Ethernet address from `chaddr`.
    pub mac: Option<[u8; 6]>,
    /// Option 60.
    pub vendor_class: Option<VendorClass>,
    /// Option 93, in order of preference.
    pub arches: Vec<ClientArch>,
    /// Option 94.
    pub ndi: Option<NetworkInterfaceId>,
    /// Option 97, raw (echoed in replies even when not a well-formed UUID).
    pub machine_id_raw: Option<Vec<u8>>,
    /// Option 97, parsed when well formed.
    pub machine_id: Option<MachineId>,
    /// Option 77.
    pub user_class: Option<UserClass>,
    /// Option 175.
    pub ipxe: Option<IpxeOptions>,
    /// Option 43, when it parses as PXE sub-options.
    pub pxe: Option<PxeVendor>,
    /// Option 50.
    pub requested_ip: Option<Ipv4Addr>,
    /// `ciaddr`, when set: the address a client in BOUND state (a PXE REQUEST to port
    /// 4011, a renewal) says it has.
    pub client_ip: Option<Ipv4Addr>,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// Option 61.
    pub client_id: Option<Vec<u8>>,
    /// Option 57.
    pub max_message_size: Option<u16>,
}

fn ip(v: Option<Vec<u8>>) -> Option<Ipv4Addr> {
    match v?.as_slice() {
        [a, b, c, d] => Some(Ipv4Addr::new(*a, *b, *c, *d)),
        _ => None,
    }
}

impl ClientInfo {
    /// Reads the summary. Fails on a missing message type or a malformed 93, 94 or 175.
    pub fn from_message(msg: &Message) -> Result<ClientInfo> {
        let all = msg.all_options();
        let message_type = msg.message_type().ok_or(crate::Error::BadOption {
            code: codes::MESSAGE_TYPE,
            structure: "message type",
            what: "missing or not 1 byte",
        })?;
        let arches = match all.get(codes::CLIENT_ARCH) {
            Some(v) => ClientArch::parse_list(&v)?,
            None => Vec::new(),
        };
        let ndi = all
            .get(codes::CLIENT_NDI)
            .map(|v| NetworkInterfaceId::parse(&v))
            .transpose()?;
        let machine_id_raw = all.get(codes::CLIENT_UUID);
        let machine_id = machine_id_raw
            .as_deref()
            .and_then(|v| MachineId::parse(v).ok());
        let ipxe = all
            .get(codes::IPXE_ENCAP)
            .map(|v| IpxeOptions::parse(&v))
            .transpose()?;
        Ok(ClientInfo {
            message_type,
            mac: msg.mac(),
            vendor_class: all.get(codes::VENDOR_CLASS).map(|v| VendorClass::parse(&v)),
            arches,
            ndi,
            machine_id_raw,
            machine_id,
            user_class: all.get(codes::USER_CLASS).map(|v| UserClass::parse(&v)),
            ipxe,
            pxe: all
                .get(codes::VENDOR_SPECIFIC)
                .and_then(|v| PxeVendor::parse(&v).ok()),
            requested_ip: ip(all.get(codes::REQUESTED_IP)),
            client_ip: Some(msg.ciaddr).filter(|a| !a.is_unspecified()),
            server_id: ip(all.get(codes::SERVER_ID)),
            client_id: all.get(codes::CLIENT_ID),
            max_message_size: all
                .get(codes::MAX_MESSAGE_SIZE)
                .and_then(|v| match v.as_slice() {
                    [a, b] => Some(u16::from_be_bytes([*a, *b])),
                    _ => None,
                }),
        })
    }

    /// The boot protocol the vendor class names (`Other` when absent).
    pub fn vendor_kind(&self) -> VendorKind {
        self.vendor_class
            .as_ref()
            .map_or(VendorKind::Other, |v| v.kind)
    }

    /// Whether this is a PXE or HTTP-boot client.
    pub fn is_boot_client(&self) -> bool {
        self.vendor_kind() != VendorKind::Other
    }

    /// The architecture: the first of option 93, else option 60's `Arch:` field.
    pub fn arch(&self) -> Option<ClientArch> {
        self.arches.first().copied().or_else(|| {
            self.vendor_class
                .as_ref()
                .and_then(|v| v.arch)
                .map(ClientArch::from_u16)
        })
    }

    /// Whether the client wants HTTP boot (vendor class `HTTPClient` or an HTTP arch).
    pub fn is_http(&self) -> bool {
        self.vendor_kind() == VendorKind::HttpClient || self.arch().is_some_and(|a| a.is_http())
    }

    /// Whether the client is iPXE: user class `iPXE` or option 175 present.
    pub fn is_ipxe(&self) -> bool {
        self.user_class.as_ref().is_some_and(|u| u.is_ipxe()) || self.ipxe.is_some()
    }

    /// The PXE menu item selected (43.71), in a 4011 request.
    pub fn boot_item(&self) -> Option<BootItem> {
        self.pxe.as_ref().and_then(|p| p.boot_item())
    }

    /// The MAC as `aa:bb:cc:dd:ee:ff` (or `?` when `chaddr` is not Ethernet).
    pub fn mac_text(&self) -> String {
        self.mac.map_or_else(|| "?".to_owned(), |m| format_mac(&m))
    }
}

/// Formats a MAC address as lower-case colon-separated hex.
pub fn format_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// Parses an Ethernet address: `aa:bb:cc:dd:ee:ff`, `AA-BB-CC-DD-EE-FF` or
/// `aabbccddeeff` (two hex digits per byte; no signs, no spaces around it). This is
/// the workspace's one MAC parser: `provision_core::Mac` parses with it.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let b = text.as_bytes();
    let step = match b.len() {
        12 => 2,
        17 => 3,
        _ => return None,
    };
    let hex = |c: u8| char::from(c).to_digit(16);
    let mut m = [0u8; 6];
    for (i, slot) in m.iter_mut().enumerate() {
        let at = i * step;
        if step == 3 && i > 0 && !matches!(b[at - 1], b':' | b'-') {
            return None;
        }
        *slot = (hex(b[at])? << 4 | hex(b[at + 1])?) as u8;
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        let m = parse_mac("52:54:00:12:34:5A").unwrap();
        assert_eq!(format_mac(&m), "52:54:00:12:34:5a");
        assert!(parse_mac("52:54:00:12:34").is_none());
        assert!(parse_mac("52:54:00:12:34:5g").is_none());
        assert_eq!(parse_mac("52-54-00-12-34-5a"), Some(m));
        assert_eq!(parse_mac("52540012345a"), Some(m));
        for bad in [
            "+1:54:00:12:34:5a",
            " 52:54:00:12:34:5a",
            "5254:00:12:34:5a:",
            "52.54.00.12.34.5a",
        ] {
            assert!(parse_mac(bad).is_none(), "{bad}");
        }
    }
}
