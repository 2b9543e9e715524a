//! MAC addresses: how devices are identified.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, ErrorKind};

/// A device's Ethernet address. Parses `aa:bb:cc:dd:ee:ff`, `AA-BB-CC-DD-EE-FF` and
/// `aabbccddeeff`; displays as lowercase with colons.
///
/// ```
/// use provision_core::Mac;
/// let mac: Mac = "52-54-00-AB-CD-EF".parse().unwrap();
/// assert_eq!(mac.to_string(), "52:54:00:ab:cd:ef");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl FromStr for Mac {
    type Err = Error;

    /// With the workspace's one MAC parser, [`pxe::request::parse_mac`].
    fn from_str(text: &str) -> Result<Self, Error> {
        pxe::request::parse_mac(text).map(Mac).ok_or_else(|| {
            Error::new(
                ErrorKind::Invalid,
                format!("`{text}` is not a MAC address (expected aa:bb:cc:dd:ee:ff)"),
            )
        })
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mac({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_spellings() {
        let want = Mac([0x52, 0x54, 0, 0xab, 0xcd, 0xef]);
        for text in ["52:54:00:ab:cd:ef", "52-54-00-AB-CD-EF", "525400abcdef"] {
            assert_eq!(text.parse::<Mac>().unwrap(), want, "{text}");
        }
    }

    #[test]
    fn refuses_malformed_addresses() {
        for text in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:ef:01",
            "zz:54:00:ab:cd:ef",
            "5254:00ab:cdef",
            "+1:54:00:ab:cd:ef",
        ] {
            let err = text.parse::<Mac>().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Invalid, "{text}");
        }
    }
}
