//! Client-side message builders: what a PXE ROM sends (DISCOVER with 60/93/94/97, the
//! port 4011 REQUEST with 43.71). Used by tests, benchmarks and probing tools.

use std::net::Ipv4Addr;

use crate::options::pxe_vendor::{BootItem, PxeSubOption, PxeVendor};
use crate::options::{ClientArch, VendorClass, VendorKind, codes};
use crate::wire::{Message, MessageType, Op};

/// What a scripted boot client says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientProfile {
    /// Its MAC.
    pub mac: [u8; 6],
    /// Its architecture (option 93 and the `Arch:` field of 60).
    pub arch: ClientArch,
    /// `PXEClient` or `HTTPClient`; `Other` sends no option 60.
    pub kind: VendorKind,
    /// Its UUID (option 97), as sent.
    pub uuid: [u8; 16],
    /// Whether it claims to be iPXE (77 `iPXE` and 175).
    pub ipxe: bool,
}

impl ClientProfile {
    /// A BIOS PXE client with the given MAC.
    pub fn bios(mac: [u8; 6]) -> Self {
        Self {
            mac,
            arch: ClientArch::X86Bios,
            kind: VendorKind::PxeClient,
            uuid: [0x11; 16],
            ipxe: false,
        }
    }

    fn base(&self, xid: u32, kind: MessageType) -> Message {
        let mut m = Message {
            op: Op::BootRequest,
            xid,
            ..Message::default()
        };
        m.chaddr[..6].copy_from_slice(&self.mac);
        m.options.push(codes::MESSAGE_TYPE, &[kind.into()]);
        m.options
            .push(codes::MAX_MESSAGE_SIZE, &1472u16.to_be_bytes());
        if self.kind != VendorKind::Other {
            m.options
                .push(codes::CLIENT_ARCH, &self.arch.to_u16().to_be_bytes());
            m.options.push(codes::CLIENT_NDI, &[1, 3, 10]);
            let undi = if self.arch == ClientArch::X86Bios {
                (2, 1)
            } else {
                (3, 16)
            };
            let vc = VendorClass::client(self.kind, self.arch.to_u16(), undi);
            m.options.push(codes::VENDOR_CLASS, &vc.raw);
        }
        if self.ipxe {
            m.options.push(codes::USER_CLASS, b"iPXE");
            m.options.push(codes::IPXE_ENCAP, &[0x13, 1, 1, 0x15, 1, 1]);
        }
        m.options.push(
            codes::PARAMETER_REQUEST_LIST,
            &[
                1, 3, 6, 43, 60, 66, 67, 97, 128, 129, 130, 131, 132, 133, 134, 135,
            ],
        );
        let mut uuid = vec![0];
        uuid.extend_from_slice(&self.uuid);
        m.options.push(codes::CLIENT_UUID, &uuid);
        m.pad_to_minimum();
        m
    }

    /// The DISCOVER the client broadcasts to port 67.
    pub fn discover(&self, xid: u32) -> Message {
        self.base(xid, MessageType::Discover)
    }

    /// The REQUEST it unicasts to the boot server's port 4011 once it has `ciaddr`,
    /// optionally selecting a menu item (43.71).
    pub fn boot_request(&self, xid: u32, ciaddr: Ipv4Addr, item: Option<u16>) -> Message {
        let mut m = self.base(xid, MessageType::Request);
        m.trailer.clear();
        m.ciaddr = ciaddr;
        if let Some(kind) = item {
            let v = PxeVendor {
                items: vec![PxeSubOption::BootItem(BootItem { kind, layer: 0 })],
            };
            if let Ok(bytes) = v.encode() {
                m.options.push(codes::VENDOR_SPECIFIC, &bytes);
            }
        }
        m.pad_to_minimum();
        m
    }
}
