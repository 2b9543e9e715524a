//! Client system architecture, option 93 (RFC 4578 §2.1 and the IANA "Processor
//! Architecture Types" registry). Option 60's `Arch:xxxxx` field uses the same numbers.
//!
//! RFC 4578's own table swaps 7 and 9 (erratum); the registry, EDK2 and iPXE use
//! 7 = x64 UEFI and 9 = EFI byte code, and so do we.

use crate::error::{Error, Result};

/// A client architecture; numbers outside the table are kept as `Unknown(n)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientArch {
    /// 0: x86 BIOS.
    X86Bios,
    /// 1: NEC PC98.
    NecPc98,
    /// 2: Itanium.
    Itanium,
    /// 3: DEC Alpha.
    DecAlpha,
    /// 4: Arc x86.
    ArcX86,
    /// 5: Intel Lean Client.
    IntelLeanClient,
    /// 6: x86 (IA32) UEFI.
    EfiIa32,
    /// 7: x64 UEFI.
    EfiX64,
    /// 8: EFI Xscale.
    EfiXscale,
    /// 9: EFI byte code.
    EfiBc,
    /// 10: ARM 32-bit UEFI.
    EfiArm32,
    /// 11: ARM 64-bit UEFI.
    EfiArm64,
    /// 15: x86 UEFI HTTP boot.
    EfiIa32Http,
    /// 16: x64 UEFI HTTP boot.
    EfiX64Http,
    /// 17: EBC HTTP boot.
    EfiBcHttp,
    /// 18: ARM 32-bit UEFI HTTP boot.
    EfiArm32Http,
    /// 19: ARM 64-bit UEFI HTTP boot.
    EfiArm64Http,
    /// 20: x86 BIOS HTTP boot.
    X86BiosHttp,
    /// 25: RISC-V 32-bit UEFI.
    EfiRiscV32,
    /// 27: RISC-V 64-bit UEFI.
    EfiRiscV64,
    /// 28: RISC-V 64-bit UEFI HTTP boot.
    EfiRiscV64Http,
    /// 39: LoongArch 64-bit UEFI.
    EfiLoongArch64,
    /// 40: LoongArch 64-bit UEFI HTTP boot.
    EfiLoongArch64Http,
    /// Any other registry number.
    Unknown(u16),
}

/// (number, variant, short name used in configuration).
const TABLE: &[(u16, ClientArch, &str)] = &[
    (0, ClientArch::X86Bios, "bios"),
    (1, ClientArch::NecPc98, "pc98"),
    (2, ClientArch::Itanium, "ia64"),
    (3, ClientArch::DecAlpha, "alpha"),
    (4, ClientArch::ArcX86, "arc-x86"),
    (5, ClientArch::IntelLeanClient, "intel-lean"),
    (6, ClientArch::EfiIa32, "efi-ia32"),
    (7, ClientArch::EfiX64, "efi-x64"),
    (8, ClientArch::EfiXscale, "efi-xscale"),
    (9, ClientArch::EfiBc, "efi-bc"),
    (10, ClientArch::EfiArm32, "efi-arm32"),
    (11, ClientArch::EfiArm64, "efi-arm64"),
    (15, ClientArch::EfiIa32Http, "efi-ia32-http"),
    (16, ClientArch::EfiX64Http, "efi-x64-http"),
    (17, ClientArch::EfiBcHttp, "efi-bc-http"),
    (18, ClientArch::EfiArm32Http, "efi-arm32-http"),
    (19, ClientArch::EfiArm64Http, "efi-arm64-http"),
    (20, ClientArch::X86BiosHttp, "bios-http"),
    (25, ClientArch::EfiRiscV32, "efi-riscv32"),
    (27, ClientArch::EfiRiscV64, "efi-riscv64"),
    (28, ClientArch::EfiRiscV64Http, "efi-riscv64-http"),
    (39, ClientArch::EfiLoongArch64, "efi-loongarch64"),
    (40, ClientArch::EfiLoongArch64Http, "efi-loongarch64-http"),
];

/// Registry numbers of HTTP-boot variants (IANA registry).
const HTTP: &[u16] = &[15, 16, 17, 18, 19, 20, 23, 24, 26, 28, 30, 38, 40];

impl ClientArch {
    /// From the registry number.
    pub fn from_u16(n: u16) -> ClientArch {
        TABLE
            .iter()
            .find(|(v, _, _)| *v == n)
            .map(|(_, a, _)| *a)
            .unwrap_or(ClientArch::Unknown(n))
    }

    /// The registry number.
    pub fn to_u16(self) -> u16 {
        match self {
            ClientArch::Unknown(n) => n,
            known => TABLE
                .iter()
                .find(|(_, a, _)| *a == known)
                .map(|(v, _, _)| *v)
                .unwrap_or_default(),
        }
    }

    /// Whether this is an HTTP-boot architecture (the client wants a URI, not TFTP).
    pub fn is_http(self) -> bool {
        HTTP.contains(&self.to_u16())
    }

    /// Parses a configuration name (`bios`, `efi-x64`, ...) or a decimal number.
    pub fn from_name(name: &str) -> Option<ClientArch> {
        let lower = name.trim().to_ascii_lowercase();
        if let Ok(n) = lower.parse::<u16>() {
            return Some(ClientArch::from_u16(n));
        }
        let alias = match lower.as_str() {
            "x86pc" | "x86-bios" => "bios",
            "efi64" | "x86-64_efi" | "uefi" => "efi-x64",
            "efi32" | "ia32_efi" => "efi-ia32",
            "bc_efi" => "efi-bc",
            "arm64" | "arm64_efi" => "efi-arm64",
            "arm32" | "arm32_efi" => "efi-arm32",
            "http" | "efi64-http" => "efi-x64-http",
            other => other,
        };
        TABLE
            .iter()
            .find(|(_, _, n)| *n == alias)
            .map(|(_, a, _)| *a)
    }

    /// The configuration name (or the number for unknown values).
    pub fn name(self) -> String {
        TABLE
            .iter()
            .find(|(_, a, _)| *a == self)
            .map(|(_, _, n)| (*n).to_owned())
            .unwrap_or_else(|| self.to_u16().to_string())
    }

    /// Parses option 93: a list of big-endian u16.
    pub fn parse_list(data: &[u8]) -> Result<Vec<ClientArch>> {
        if data.is_empty() || !data.len().is_multiple_of(2) {
            return Err(Error::BadOption {
                code: crate::options::codes::CLIENT_ARCH,
                structure: "client architecture",
                what: "length is not a non-zero multiple of 2",
            });
        }
        Ok(data
            .chunks_exact(2)
            .map(|c| ClientArch::from_u16(u16::from_be_bytes([c[0], c[1]])))
            .collect())
    }

    /// Encodes option 93.
    pub fn encode_list(list: &[ClientArch]) -> Vec<u8> {
        list.iter().flat_map(|a| a.to_u16().to_be_bytes()).collect()
    }
}

impl std::fmt::Display for ClientArch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.to_u16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_unknown_is_kept() {
        for n in 0..=64u16 {
            assert_eq!(ClientArch::from_u16(n).to_u16(), n);
        }
        assert_eq!(ClientArch::from_u16(7), ClientArch::EfiX64);
        assert_eq!(ClientArch::from_u16(9), ClientArch::EfiBc);
        assert_eq!(ClientArch::from_u16(41), ClientArch::Unknown(41));
        assert!(ClientArch::EfiX64Http.is_http());
        assert!(!ClientArch::EfiX64.is_http());
        assert!(ClientArch::Unknown(24).is_http());
    }

    #[test]
    fn names_and_lists() {
        assert_eq!(ClientArch::from_name("bios"), Some(ClientArch::X86Bios));
        assert_eq!(
            ClientArch::from_name("x86-64_EFI"),
            Some(ClientArch::EfiX64)
        );
        assert_eq!(ClientArch::from_name("41"), Some(ClientArch::Unknown(41)));
        assert_eq!(ClientArch::from_name("nonsense"), None);
        let l = ClientArch::parse_list(&[0, 7, 0, 0]).unwrap();
        assert_eq!(l, vec![ClientArch::EfiX64, ClientArch::X86Bios]);
        assert_eq!(ClientArch::encode_list(&l), vec![0, 7, 0, 0]);
        assert!(ClientArch::parse_list(&[0]).is_err());
        assert!(ClientArch::parse_list(&[]).is_err());
    }
}
