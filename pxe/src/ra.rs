//! Router advertisements with router lifetime 0 (RFC 4861 §4.2, §6.2.3): answering a
//! router solicitation on the boot interface tells iPXE's IPv6 configurator that the
//! link has no IPv6 router, ending its ~14 s wait on IPv4-only segments (E2E.md §3).
//! The advertisement carries no prefix and no route: it configures nothing.

/// ICMPv6 type of a router solicitation.
pub const ROUTER_SOLICITATION: u8 = 133;
/// ICMPv6 type of a router advertisement.
pub const ROUTER_ADVERTISEMENT: u8 = 134;
/// NDP option: source link-layer address.
const OPT_SOURCE_LINK_ADDR: u8 = 1;

/// Whether `icmp` (an ICMPv6 message, without the IPv6 header) is a well-formed router
/// solicitation: type 133, code 0, at least 8 bytes, options of non-zero length.
pub fn is_router_solicitation(icmp: &[u8]) -> bool {
    if icmp.len() < 8 || icmp[0] != ROUTER_SOLICITATION || icmp[1] != 0 {
        return false;
    }
    let mut rest = &icmp[8..];
    while !rest.is_empty() {
        let Some(&units) = rest.get(1) else {
            return false;
        };
        let len = usize::from(units) * 8;
        if len == 0 || len > rest.len() {
            return false;
        }
        rest = &rest[len..];
    }
    true
}

/// A router advertisement with router lifetime 0, no flags, no prefix; with our MAC as
/// source link-layer address when known. The checksum is left 0: the kernel fills it
/// for raw ICMPv6 sockets.
pub fn router_advertisement(mac: Option<[u8; 6]>) -> Vec<u8> {
    let mut ra = vec![
        ROUTER_ADVERTISEMENT,
        0, // code
        0,
        0, // checksum (kernel)
        0, // current hop limit: unspecified
        0, // flags: no M, no O
        0,
        0, // router lifetime 0: not a default router
        0,
        0,
        0,
        0, // reachable time
        0,
        0,
        0,
        0, // retrans timer
    ];
    if let Some(mac) = mac {
        ra.extend_from_slice(&[OPT_SOURCE_LINK_ADDR, 1]);
        ra.extend_from_slice(&mac);
    }
    ra
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solicitations_and_advertisement() {
        assert!(is_router_solicitation(&[133, 0, 0, 0, 0, 0, 0, 0]));
        assert!(is_router_solicitation(&[
            133, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 0, 0, 0, 0, 1
        ]));
        assert!(!is_router_solicitation(&[133, 0, 0, 0, 0, 0, 0, 0, 1, 0]));
        assert!(!is_router_solicitation(&[134, 0, 0, 0, 0, 0, 0, 0]));
        assert!(!is_router_solicitation(&[133, 0, 0]));
        let ra = router_advertisement(Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(ra.len(), 24);
        assert_eq!(ra[0], 134);
        assert_eq!(&ra[6..8], &[0, 0], "router lifetime must be 0");
    }
}
