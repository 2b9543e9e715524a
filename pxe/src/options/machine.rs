//! Client identity options: network interface id (94), machine UUID (97, RFC 4578
//! §2.2-2.3) and user class (77, RFC 3004, as iPXE sends it).

use crate::error::{Error, Result};

/// Option 94: interface type (1 = UNDI) and its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetworkInterfaceId {
    /// Interface type (1 = UNDI).
    pub kind: u8,
    /// Major version.
    pub major: u8,
    /// Minor version.
    pub minor: u8,
}

impl NetworkInterfaceId {
    /// Parses option 94 (exactly 3 bytes).
    pub fn parse(data: &[u8]) -> Result<Self> {
        match data {
            [kind, major, minor] => Ok(Self {
                kind: *kind,
                major: *major,
                minor: *minor,
            }),
            _ => Err(Error::BadOption {
                code: super::codes::CLIENT_NDI,
                structure: "network interface id",
                what: "length is not 3",
            }),
        }
    }

    /// Encodes option 94.
    pub fn encode(&self) -> [u8; 3] {
        [self.kind, self.major, self.minor]
    }
}

/// Option 97: type 0 and a 16-byte UUID, in the SMBIOS mixed-endian byte order the
/// firmware sends (first three fields little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MachineId {
    /// Identifier type (0 = UUID).
    pub kind: u8,
    /// The UUID bytes as sent.
    pub uuid: [u8; 16],
}

impl MachineId {
    /// Parses option 97 (exactly 17 bytes).
    pub fn parse(data: &[u8]) -> Result<Self> {
        if data.len() != 17 {
            return Err(Error::BadOption {
                code: super::codes::CLIENT_UUID,
                structure: "machine id",
                what: "length is not 17",
            });
        }
        let mut uuid = [0; 16];
        uuid.copy_from_slice(&data[1..]);
        Ok(Self {
            kind: data[0],
            uuid,
        })
    }

    /// Encodes option 97.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![self.kind];
        v.extend_from_slice(&self.uuid);
        v
    }

    /// Whether the UUID is all zeros (a machine without one, e.g. QEMU without `-uuid`).
    pub fn is_nil(&self) -> bool {
        self.uuid.iter().all(|&b| b == 0)
    }
}

impl std::fmt::Display for MachineId {
    /// The conventional text form (first three fields byte-swapped back).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let u = &self.uuid;
        write!(
            f,
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-",
            u[3], u[2], u[1], u[0], u[5], u[4], u[7], u[6], u[8], u[9]
        )?;
        u[10..].iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Option 77, user class. iPXE sends the raw bytes `iPXE` (not the RFC 3004
/// length-prefixed form); both forms are recognised.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserClass {
    /// The option's bytes as sent.
    pub raw: Vec<u8>,
}

impl UserClass {
    /// Wraps option 77's bytes.
    pub fn parse(data: &[u8]) -> Self {
        Self { raw: data.to_vec() }
    }

    /// The classes: the RFC 3004 list when the bytes form one, else the raw bytes.
    pub fn classes(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut rest = self.raw.as_slice();
        while let Some((&len, tail)) = rest.split_first() {
            let len = usize::from(len);
            if len == 0 || len > tail.len() {
                return vec![self.raw.clone()];
            }
            out.push(tail[..len].to_vec());
            rest = &tail[len..];
        }
        if out.is_empty() {
            vec![self.raw.clone()]
        } else {
            out
        }
    }

    /// Whether the client says it is iPXE.
    pub fn is_ipxe(&self) -> bool {
        self.raw == b"iPXE" || self.classes().iter().any(|c| c == b"iPXE")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_text_is_mixed_endian() {
        let id = MachineId::parse(&[
            0, 0x78, 0x56, 0x34, 0x12, 0xbc, 0x9a, 0xf0, 0xde, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc,
            0xde, 0xf0,
        ])
        .unwrap();
        assert_eq!(id.to_string(), "12345678-9abc-def0-1234-56789abcdef0");
        assert!(!id.is_nil());
        assert_eq!(MachineId::parse(&id.encode()).unwrap(), id);
        assert!(MachineId::parse(&[0; 16]).is_err());
    }

    #[test]
    fn ndi_and_user_class() {
        assert_eq!(
            NetworkInterfaceId::parse(&[1, 2, 1]).unwrap().encode(),
            [1, 2, 1]
        );
        assert!(NetworkInterfaceId::parse(&[1, 2]).is_err());
        assert!(UserClass::parse(b"iPXE").is_ipxe());
        assert!(UserClass::parse(b"\x04iPXE\x03foo").is_ipxe());
        assert!(!UserClass::parse(b"gPXE").is_ipxe());
        assert!(!UserClass::parse(b"").is_ipxe());
    }
}
