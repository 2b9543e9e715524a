//! PXE vendor options carried in option 43 (Intel PXE 2.1 §2.4.1): discovery control
//! (6), boot servers (8), boot menu (9), menu prompt (10) and boot item (71). Other
//! sub-options are kept as raw values.

use std::net::Ipv4Addr;

use super::sub_tlv;
use crate::error::{Error, Result};

/// Sub-option 6.
pub const DISCOVERY_CONTROL: u8 = 6;
/// Sub-option 8.
pub const BOOT_SERVERS: u8 = 8;
/// Sub-option 9.
pub const BOOT_MENU: u8 = 9;
/// Sub-option 10.
pub const MENU_PROMPT: u8 = 10;
/// Sub-option 71.
pub const BOOT_ITEM: u8 = 71;

/// Discovery control bit 0: no broadcast discovery.
pub const DISABLE_BROADCAST: u8 = 0x01;
/// Discovery control bit 1: no multicast discovery.
pub const DISABLE_MULTICAST: u8 = 0x02;
/// Discovery control bit 2: only use servers from sub-option 8.
pub const ONLY_LISTED_SERVERS: u8 = 0x04;
/// Discovery control bit 3: the boot file in this reply is to be downloaded directly.
pub const USE_BOOT_FILE: u8 = 0x08;

/// Boot server type 0: "boot from local disk" in menus (PXE bootstrap server).
pub const LOCAL_BOOT: u16 = 0;

/// One entry of sub-option 8.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BootServer {
    /// Boot server type.
    pub kind: u16,
    /// Its addresses.
    pub addresses: Vec<Ipv4Addr>,
}

/// One entry of sub-option 9.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MenuItem {
    /// Boot server type the item selects.
    pub kind: u16,
    /// Text shown to the user.
    pub text: Vec<u8>,
}

/// Sub-option 10.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MenuPrompt {
    /// 0: boot the first item at once; 255: show the menu at once, no timeout; else the
    /// seconds to press F8.
    pub timeout: u8,
    /// Prompt text.
    pub text: Vec<u8>,
}

/// Sub-option 71: the menu item a client selected (and the server echoes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BootItem {
    /// Boot server type.
    pub kind: u16,
    /// Layer (bit 15: credentials requested).
    pub layer: u16,
}

/// One sub-option of option 43.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PxeSubOption {
    /// 6
    DiscoveryControl(u8),
    /// 8
    BootServers(Vec<BootServer>),
    /// 9
    BootMenu(Vec<MenuItem>),
    /// 10
    MenuPrompt(MenuPrompt),
    /// 71
    BootItem(BootItem),
    /// Any other sub-option, raw.
    Other {
        /// Sub-option code.
        code: u8,
        /// Its bytes.
        data: Vec<u8>,
    },
}

/// Option 43 as PXE sub-options, in wire order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PxeVendor {
    /// The sub-options.
    pub items: Vec<PxeSubOption>,
}

fn bad(code: u8, what: &'static str) -> Error {
    Error::BadOption {
        code,
        structure: "PXE vendor sub-option",
        what,
    }
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn parse_sub(code: u8, data: Vec<u8>) -> Result<PxeSubOption> {
    Ok(match code {
        DISCOVERY_CONTROL => match data.as_slice() {
            [v] => PxeSubOption::DiscoveryControl(*v),
            _ => return Err(bad(code, "discovery control is not 1 byte")),
        },
        BOOT_SERVERS => {
            let mut servers = Vec::new();
            let mut rest = data.as_slice();
            while !rest.is_empty() {
                if rest.len() < 3 {
                    return Err(bad(code, "boot server entry truncated"));
                }
                let kind = be16(rest);
                let count = usize::from(rest[2]);
                let need = 3 + count * 4;
                if rest.len() < need {
                    return Err(bad(code, "boot server address list truncated"));
                }
                let addresses = rest[3..need]
                    .chunks_exact(4)
                    .map(|a| Ipv4Addr::new(a[0], a[1], a[2], a[3]))
                    .collect();
                servers.push(BootServer { kind, addresses });
                rest = &rest[need..];
            }
            PxeSubOption::BootServers(servers)
        }
        BOOT_MENU => {
            let mut items = Vec::new();
            let mut rest = data.as_slice();
            while !rest.is_empty() {
                if rest.len() < 3 {
                    return Err(bad(code, "menu item truncated"));
                }
                let kind = be16(rest);
                let len = usize::from(rest[2]);
                if rest.len() < 3 + len {
                    return Err(bad(code, "menu item text truncated"));
                }
                items.push(MenuItem {
                    kind,
                    text: rest[3..3 + len].to_vec(),
                });
                rest = &rest[3 + len..];
            }
            PxeSubOption::BootMenu(items)
        }
        MENU_PROMPT => match data.split_first() {
            Some((&timeout, text)) => PxeSubOption::MenuPrompt(MenuPrompt {
                timeout,
                text: text.to_vec(),
            }),
            None => return Err(bad(code, "menu prompt is empty")),
        },
        BOOT_ITEM => match data.as_slice() {
            [a, b, c, d] => PxeSubOption::BootItem(BootItem {
                kind: u16::from_be_bytes([*a, *b]),
                layer: u16::from_be_bytes([*c, *d]),
            }),
            _ => return Err(bad(code, "boot item is not 4 bytes")),
        },
        _ => PxeSubOption::Other { code, data },
    })
}

impl PxeSubOption {
    fn code_and_value(&self) -> (u8, Vec<u8>) {
        match self {
            PxeSubOption::DiscoveryControl(v) => (DISCOVERY_CONTROL, vec![*v]),
            PxeSubOption::BootServers(list) => {
                let mut v = Vec::new();
                for s in list {
                    v.extend_from_slice(&s.kind.to_be_bytes());
                    v.push(s.addresses.len() as u8);
                    s.addresses
                        .iter()
                        .for_each(|a| v.extend_from_slice(&a.octets()));
                }
                (BOOT_SERVERS, v)
            }
            PxeSubOption::BootMenu(items) => {
                let mut v = Vec::new();
                for i in items {
                    v.extend_from_slice(&i.kind.to_be_bytes());
                    v.push(i.text.len() as u8);
                    v.extend_from_slice(&i.text);
                }
                (BOOT_MENU, v)
            }
            PxeSubOption::MenuPrompt(p) => {
                let mut v = vec![p.timeout];
                v.extend_from_slice(&p.text);
                (MENU_PROMPT, v)
            }
            PxeSubOption::BootItem(b) => {
                let mut v = b.kind.to_be_bytes().to_vec();
                v.extend_from_slice(&b.layer.to_be_bytes());
                (BOOT_ITEM, v)
            }
            PxeSubOption::Other { code, data } => (*code, data.clone()),
        }
    }
}

impl PxeVendor {
    /// Parses option 43 as PXE sub-options.
    pub fn parse(data: &[u8]) -> Result<Self> {
        let items = sub_tlv::parse(data, super::codes::VENDOR_SPECIFIC, "PXE vendor options")?
            .into_iter()
            .map(|(code, value)| parse_sub(code, value))
            .collect::<Result<_>>()?;
        Ok(Self { items })
    }

    /// Encodes option 43, ending with END (255) as PXE clients expect.
    ///
    /// Fails when a menu text, a server list or a prompt does not fit its length byte.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for item in &self.items {
            let (code, value) = item.code_and_value();
            let fits = match item {
                PxeSubOption::BootServers(l) => l.iter().all(|s| s.addresses.len() <= 255),
                PxeSubOption::BootMenu(l) => l.iter().all(|i| i.text.len() <= 255),
                _ => true,
            };
            if !fits || value.len() > 255 {
                return Err(Error::TooLarge {
                    need: value.len(),
                    limit: 255,
                });
            }
            sub_tlv::emit(&mut out, code, &value);
        }
        out.push(255);
        Ok(out)
    }

    /// Discovery control (6).
    pub fn discovery_control(&self) -> Option<u8> {
        self.items.iter().find_map(|i| match i {
            PxeSubOption::DiscoveryControl(v) => Some(*v),
            _ => None,
        })
    }

    /// Boot item (71).
    pub fn boot_item(&self) -> Option<BootItem> {
        self.items.iter().find_map(|i| match i {
            PxeSubOption::BootItem(b) => Some(*b),
            _ => None,
        })
    }

    /// Boot menu (9), empty when absent.
    pub fn menu(&self) -> &[MenuItem] {
        self.items
            .iter()
            .find_map(|i| match i {
                PxeSubOption::BootMenu(m) => Some(m.as_slice()),
                _ => None,
            })
            .unwrap_or(&[])
    }

    /// Menu prompt (10).
    pub fn prompt(&self) -> Option<&MenuPrompt> {
        self.items.iter().find_map(|i| match i {
            PxeSubOption::MenuPrompt(p) => Some(p),
            _ => None,
        })
    }

    /// Boot servers (8), empty when absent.
    pub fn boot_servers(&self) -> &[BootServer] {
        self.items
            .iter()
            .find_map(|i| match i {
                PxeSubOption::BootServers(s) => Some(s.as_slice()),
                _ => None,
            })
            .unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn menu_round_trips() {
        let v = PxeVendor {
            items: vec![
                PxeSubOption::DiscoveryControl(DISABLE_BROADCAST | DISABLE_MULTICAST),
                PxeSubOption::BootServers(vec![BootServer {
                    kind: 0x8000,
                    addresses: vec![Ipv4Addr::new(10, 77, 0, 1)],
                }]),
                PxeSubOption::BootMenu(vec![MenuItem {
                    kind: 0x8000,
                    text: b"Boot A".to_vec(),
                }]),
                PxeSubOption::MenuPrompt(MenuPrompt {
                    timeout: 255,
                    text: b"Choose".to_vec(),
                }),
            ],
        };
        let bytes = v.encode().unwrap();
        assert_eq!(&bytes[..3], &[6, 1, 3]);
        assert_eq!(*bytes.last().unwrap(), 255);
        assert_eq!(PxeVendor::parse(&bytes).unwrap(), v);
        assert_eq!(v.menu()[0].text, b"Boot A");
    }

    #[test]
    fn boot_item_and_errors() {
        let v = PxeVendor::parse(&[71, 4, 0x80, 0x01, 0, 0, 255]).unwrap();
        assert_eq!(
            v.boot_item(),
            Some(BootItem {
                kind: 0x8001,
                layer: 0
            })
        );
        assert!(PxeVendor::parse(&[71, 3, 0, 0, 0]).is_err());
        assert!(PxeVendor::parse(&[8, 3, 0x80, 0, 2]).is_err());
        assert!(PxeVendor::parse(&[9, 4, 0x80, 0, 9, b'x']).is_err());
        assert!(PxeVendor::parse(&[6, 2, 0, 0]).is_err());
        assert!(PxeVendor::parse(&[10, 0]).is_err());
    }
}
