//! iPXE's encapsulated options, option 175 (iPXE `include/ipxe/dhcp.h`,
//! `include/ipxe/features.h`): feature flags such as HTTP (0x13) or PXE_EXT (0x10),
//! the version (0xeb), and settings such as "no PXEDHCP" (0xb0).

use super::sub_tlv;
use crate::error::Result;

/// Sub-option 0x13: the build supports HTTP.
pub const FEATURE_HTTP: u8 = 0x13;
/// Sub-option 0x14: the build supports HTTPS.
pub const FEATURE_HTTPS: u8 = 0x14;
/// Sub-option 0x15: the build supports TFTP.
pub const FEATURE_TFTP: u8 = 0x15;
/// Sub-option 0x24: the build can load EFI images.
pub const FEATURE_EFI: u8 = 0x24;
/// Sub-option 0xb0: skip waiting for ProxyDHCP.
pub const NO_PXEDHCP: u8 = 0xb0;
/// Sub-option 0xeb: version (major, minor, patch).
pub const VERSION: u8 = 0xeb;

/// Option 175, as an ordered list of sub-options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct IpxeOptions {
    /// The sub-options in wire order.
    pub entries: Vec<(u8, Vec<u8>)>,
}

impl IpxeOptions {
    /// Parses option 175.
    pub fn parse(data: &[u8]) -> Result<Self> {
        Ok(Self {
            entries: sub_tlv::parse(data, super::codes::IPXE_ENCAP, "iPXE options")?,
        })
    }

    /// Encodes option 175 (without a trailing END, as iPXE does).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (code, value) in &self.entries {
            sub_tlv::emit(&mut out, *code, value);
        }
        out
    }

    /// The value of sub-option `code`.
    pub fn get(&self, code: u8) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_slice())
    }

    /// Whether the build advertises feature `code` (a non-zero first byte).
    pub fn has_feature(&self, code: u8) -> bool {
        self.get(code)
            .is_some_and(|v| v.first().is_some_and(|&b| b != 0))
    }

    /// The version triple from sub-option 0xeb.
    pub fn version(&self) -> Option<(u8, u8, u8)> {
        match self.get(VERSION)? {
            [a, b, c, ..] => Some((*a, *b, *c)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_features_and_version() {
        let data = [0xb1, 1, 1, 0x13, 1, 1, 0x15, 1, 1, 0xeb, 3, 1, 0, 0];
        let o = IpxeOptions::parse(&data).unwrap();
        assert!(o.has_feature(FEATURE_HTTP));
        assert!(o.has_feature(FEATURE_TFTP));
        assert!(!o.has_feature(FEATURE_HTTPS));
        assert_eq!(o.version(), Some((1, 0, 0)));
        assert_eq!(o.encode(), data);
        assert!(IpxeOptions::parse(&[0x13, 5, 1]).is_err());
    }
}
