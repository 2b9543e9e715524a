//! Boots: one power-on of one device, from its boot exchange until the next.
//!
//! Every boot has an unguessable [`Token`]. The device's iPXE script carries it into
//! what the device attaches (the NBD export name on the kernel command line), so a
//! disk session belongs to exactly one boot: a connection with the current boot's
//! token joins that boot's sessions; a stale or missing token is refused; a new boot
//! ends every session of the previous one.
//!
//! # Threat model
//!
//! A token proves that its holder saw the device's script, which is served only to the
//! address the device's boot exchange showed (see
//! [`DeviceFiles`](crate::adapters::tftp::DeviceFiles)). That stops other devices and
//! hosts elsewhere on the network from opening a device's disk. It does not stop a
//! determined attacker on the same L2 segment who spoofs the device's MAC and address
//! and sniffs its traffic: only cryptography (TLS, planned) does. Hypervisors, which
//! attach a VM's disk without a boot exchange, use the device's **attach secret**
//! instead (`provision device attach-secret NAME`).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::error::{Error, ErrorKind};
use crate::mac::Mac;

/// 128 random bits, written as 32 lowercase hex digits: a boot token or an attach
/// secret.
///
/// ```
/// use provision_core::Token;
/// let token = Token::random();
/// let text = token.to_string();
/// assert_eq!(text.len(), 32);
/// assert_eq!(text.parse::<Token>().unwrap(), token);
/// assert!("not-a-token".parse::<Token>().is_err());
/// ```
#[derive(Clone, Copy, Eq)]
pub struct Token([u8; 16]);

impl Token {
    /// A fresh token from the operating system's random source.
    ///
    /// # Panics
    ///
    /// When the system has no random source (a token must never be guessable).
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the system's random source works");
        Self(bytes)
    }
}

impl PartialEq for Token {
    /// Compares in constant time: how long a refusal takes tells nothing of the token.
    fn eq(&self, other: &Self) -> bool {
        self.0
            .iter()
            .zip(other.0)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Tokens are secrets: debug output never shows them.
impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

impl FromStr for Token {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let invalid = || Error::new(ErrorKind::Invalid, "not a token (32 hex digits)");
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid());
        }
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| invalid())?;
        }
        Ok(Self(bytes))
    }
}

crate::model::text_enum! {
    /// What started a boot.
    BootCause {
        /// The device's DHCP DISCOVER (a PXE ROM or iPXE).
        Dhcp = "dhcp",
        /// The device fetched its iPXE script (when provisiond does not answer DHCP).
        Script = "script",
        /// An operator (`provision sessions reset`, the API).
        Reset = "reset",
        /// A hypervisor attached the device's disk with its attach secret.
        Attach = "attach",
    }
}

/// One boot of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boot {
    /// The device.
    pub mac: Mac,
    /// Counts the device's boots (1 for the first one the store saw).
    pub number: u64,
    /// What the boot's sessions must present.
    pub token: Token,
    /// Seconds since the Unix epoch.
    pub started_at: i64,
    /// What started it.
    pub cause: BootCause,
    /// The device's address as its boot exchange showed it, when known.
    pub address: Option<IpAddr>,
}
