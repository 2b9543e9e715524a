//! Vendor class identifier, option 60: `PXEClient:Arch:xxxxx:UNDI:yyyzzz` (PXE 2.1
//! §2.2.1), `HTTPClient:Arch:xxxxx:UNDI:yyyzzz` (UEFI HTTP boot), just `PXEClient`
//! in server replies, or anything else.

/// Which boot protocol the class names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VendorKind {
    /// Starts with `PXEClient`.
    PxeClient,
    /// Starts with `HTTPClient`.
    HttpClient,
    /// Anything else (not a network-boot client).
    Other,
}

/// A parsed option 60. The raw bytes are kept; the fields are what could be read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VendorClass {
    /// The option's bytes as sent.
    pub raw: Vec<u8>,
    /// Which protocol it names.
    pub kind: VendorKind,
    /// The `Arch:xxxxx` number, when present and numeric.
    pub arch: Option<u16>,
    /// The `UNDI:yyyzzz` major and minor version, when present and numeric.
    pub undi: Option<(u16, u16)>,
}

/// `PXEClient`, what a proxy server puts in option 60.
pub const PXE_CLIENT: &[u8] = b"PXEClient";
/// `HTTPClient`, what an HTTP-boot server puts in option 60.
pub const HTTP_CLIENT: &[u8] = b"HTTPClient";

impl VendorClass {
    /// Reads option 60. Never fails: unknown text is `VendorKind::Other`.
    pub fn parse(raw: &[u8]) -> VendorClass {
        let kind = if raw.starts_with(PXE_CLIENT) {
            VendorKind::PxeClient
        } else if raw.starts_with(HTTP_CLIENT) {
            VendorKind::HttpClient
        } else {
            VendorKind::Other
        };
        let mut arch = None;
        let mut undi = None;
        if kind != VendorKind::Other {
            // Fields are split and measured as bytes, never as text: the option is
            // not required to be UTF-8, and a lossy decoding changes lengths (an
            // invalid byte becomes a 3-byte U+FFFD), so a str slice at a byte count
            // could land inside a character and panic.
            let mut fields = raw.split(|&b| b == b':').skip(1);
            while let Some(key) = fields.next() {
                let Some(value) = fields.next() else { break };
                match key {
                    b"Arch" if value.len() == 5 => arch = decimal(value),
                    b"UNDI" if value.len() == 6 => {
                        let (major, minor) = value.split_at(3);
                        undi = decimal(major).zip(decimal(minor));
                    }
                    _ => {}
                }
            }
        }
        VendorClass {
            raw: raw.to_vec(),
            kind,
            arch,
            undi,
        }
    }

    /// Builds the client form `<Kind>:Arch:xxxxx:UNDI:yyyzzz`.
    pub fn client(kind: VendorKind, arch: u16, undi: (u16, u16)) -> VendorClass {
        let prefix = match kind {
            VendorKind::HttpClient => "HTTPClient",
            _ => "PXEClient",
        };
        let text = format!(
            "{prefix}:Arch:{arch:05}:UNDI:{:03}{:03}",
            undi.0 % 1000,
            undi.1 % 1000
        );
        VendorClass::parse(text.as_bytes())
    }

    /// Whether this is a network-boot client (PXE or HTTP boot).
    pub fn is_boot_client(&self) -> bool {
        self.kind != VendorKind::Other
    }
}

/// ASCII decimal digits only (no sign, no spaces) as a `u16`; `None` for anything
/// else, including an overflow.
fn decimal(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u16, |n, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u16::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_forms_seen_on_the_wire() {
        let v = VendorClass::parse(b"PXEClient:Arch:00000:UNDI:002001");
        assert_eq!(
            (v.kind, v.arch, v.undi),
            (VendorKind::PxeClient, Some(0), Some((2, 1)))
        );
        let v = VendorClass::parse(b"HTTPClient:Arch:00016:UNDI:003000");
        assert_eq!(
            (v.kind, v.arch, v.undi),
            (VendorKind::HttpClient, Some(16), Some((3, 0)))
        );
        let v = VendorClass::parse(b"PXEClient");
        assert_eq!((v.kind, v.arch), (VendorKind::PxeClient, None));
        let v = VendorClass::parse(b"udhcp 1.36.1");
        assert!(!v.is_boot_client());
        let v = VendorClass::parse(b"PXEClient:Arch:xx:UNDI");
        assert_eq!((v.arch, v.undi), (None, None));
    }

    #[test]
    fn a_multi_byte_character_across_a_field_boundary_is_not_a_panic() {
        // Found by the pxe_options fuzz target: the UNDI value's 3rd byte starts a
        // (malformed) multi-byte sequence. It used to be sliced as a str and panic.
        let raw = b"HTTPClient:Arch:00016:UNDI:003TPClient:Arch:00016:UNDI:00\xe6\x30";
        let v = VendorClass::parse(raw);
        assert_eq!(v.kind, VendorKind::HttpClient);
        assert_eq!(v.arch, Some(16));
        assert_eq!(v.undi, None, "the last UNDI field is not six digits");
        assert_eq!(v.raw, raw);
    }

    #[test]
    fn numbers_are_plain_ascii_digits() {
        for raw in [
            &b"PXEClient:Arch:+0016:UNDI:+01+01"[..],
            b"PXEClient:Arch:99999:UNDI:00 001",
            b"PXEClient:Arch:\xef\xbc\x91\xef\xbc:UNDI:\xc3\xa9\xc3\xa9\xc3\xa9",
        ] {
            let v = VendorClass::parse(raw);
            assert_eq!((v.arch, v.undi), (None, None), "{raw:?}");
        }
        let v = VendorClass::parse(b"PXEClient:Arch:65535:UNDI:999999");
        assert_eq!((v.arch, v.undi), (Some(65535), Some((999, 999))));
    }

    #[test]
    fn builds_the_client_form() {
        let v = VendorClass::client(VendorKind::PxeClient, 7, (3, 10));
        assert_eq!(v.raw, b"PXEClient:Arch:00007:UNDI:003010");
        assert_eq!(v.arch, Some(7));
    }
}
