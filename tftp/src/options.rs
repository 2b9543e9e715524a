//! Transfer options (RFC 2347 negotiation; blksize RFC 2348, timeout and tsize RFC 2349,
//! windowsize RFC 7440): reading them from a request and choosing what a server accepts.

use std::num::IntErrorKind;
use std::ops::RangeInclusive;

use crate::error::{Error, ErrorCode};
use crate::packet::MAX_BLKSIZE;

/// The options this crate understands, each `None` when absent or unusable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Block size in bytes, 8..=65464 (RFC 2348).
    pub blksize: Option<u16>,
    /// Retransmission timeout in seconds, 1..=255 (RFC 2349).
    pub timeout: Option<u8>,
    /// Transfer size in bytes (RFC 2349); 0 in an RRQ asks the server for the size.
    pub tsize: Option<u64>,
    /// Blocks sent before waiting for an ACK, 1..=65535 (RFC 7440).
    pub windowsize: Option<u16>,
}

/// Option names as sent on the wire.
pub const BLKSIZE: &str = "blksize";
/// See [`BLKSIZE`].
pub const TIMEOUT: &str = "timeout";
/// See [`BLKSIZE`].
pub const TSIZE: &str = "tsize";
/// See [`BLKSIZE`].
pub const WINDOWSIZE: &str = "windowsize";

/// The values each RFC allows: blksize 8..=65464 (RFC 2348), timeout 1..=255 (RFC 2349),
/// tsize any size (RFC 2349), windowsize 1..=65535 (RFC 7440).
pub const RANGES: [(&str, RangeInclusive<u64>); 4] = [
    (BLKSIZE, 8..=MAX_BLKSIZE as u64),
    (TIMEOUT, 1..=255),
    (TSIZE, 0..=u64::MAX),
    (WINDOWSIZE, 1..=u16::MAX as u64),
];

/// At most this many characters of a refused value are quoted back in the ERROR message.
const QUOTED_VALUE_MAX: usize = 24;

impl Options {
    /// Reads the options of a request as a server does: names compare without regard to
    /// case and unknown options are ignored (RFC 2347: the server omits them from its
    /// OACK); a known option whose value is not a number, or is outside the range its RFC
    /// allows ([`RANGES`]), refuses the whole request.
    ///
    /// A value inside the RFC's range but above what the server grants (a blksize of
    /// 65464 from a server that sends 1468) is not an error: [`Options::accept`] lowers
    /// it, which is what negotiation means (RFC 2348).
    ///
    /// # Errors
    ///
    /// [`Error::Refused`] with ERROR 8 (option negotiation failed, RFC 2347) and a
    /// message naming the option, the value and the allowed range, such as
    /// `option blksize: 7 is out of range 8-65464`.
    pub fn from_request(pairs: &[(String, String)]) -> Result<Self, Error> {
        let mut o = Self::default();
        for (name, value) in pairs {
            let Some((option, range)) = RANGES.iter().find(|(n, _)| name.eq_ignore_ascii_case(n))
            else {
                continue;
            };
            let refuse = |what: String| {
                let message = format!("option {option}: {what}");
                Err(Error::refused(ErrorCode::OptionRefused, message))
            };
            let allowed = if *range.end() == u64::MAX {
                "a size in bytes".to_owned()
            } else {
                format!("{}-{}", range.start(), range.end())
            };
            let text = value.trim();
            let n = match text.parse::<u64>() {
                Ok(n) if range.contains(&n) => n,
                Ok(n) => return refuse(format!("{n} is out of range {allowed}")),
                Err(e) if *e.kind() == IntErrorKind::PosOverflow => {
                    return refuse(format!("{} is out of range {allowed}", quote(text)));
                }
                Err(_) => {
                    return refuse(format!("\"{}\" is not a number ({allowed})", quote(text)));
                }
            };
            // In range, so each narrowing below is lossless.
            match *option {
                BLKSIZE => o.blksize = Some(n as u16),
                TIMEOUT => o.timeout = Some(n as u8),
                TSIZE => o.tsize = Some(n),
                _ => o.windowsize = Some(n as u16),
            }
        }
        Ok(o)
    }

    /// Reads the options we understand from an OACK's pairs (the client side), leniently.
    ///
    /// Names compare without regard to case (RFC 2347). Values that do not parse are
    /// dropped; out-of-range values follow each RFC: a blksize below 8 or a timeout
    /// outside 1..=255 is dropped, a blksize above 65464 is clamped (the server may answer
    /// with a smaller one, RFC 2348), a windowsize of 0 is dropped and above 65535 clamped.
    /// Unknown options are ignored. A server reads requests with [`Options::from_request`].
    pub fn from_pairs(pairs: &[(String, String)]) -> Self {
        let mut o = Self::default();
        for (name, value) in pairs {
            let Ok(n) = value.trim().parse::<u64>() else {
                continue;
            };
            if name.eq_ignore_ascii_case(BLKSIZE) {
                if n >= 8 {
                    o.blksize = Some(n.min(MAX_BLKSIZE as u64) as u16);
                }
            } else if name.eq_ignore_ascii_case(TIMEOUT) {
                if (1..=255).contains(&n) {
                    o.timeout = Some(n as u8);
                }
            } else if name.eq_ignore_ascii_case(TSIZE) {
                o.tsize = Some(n);
            } else if name.eq_ignore_ascii_case(WINDOWSIZE) && n >= 1 {
                o.windowsize = Some(n.min(u64::from(u16::MAX)) as u16);
            }
        }
        o
    }

    /// The options as wire pairs, in a fixed order (blksize, timeout, tsize, windowsize).
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let mut v = Vec::new();
        if let Some(n) = self.blksize {
            v.push((BLKSIZE.to_owned(), n.to_string()));
        }
        if let Some(n) = self.timeout {
            v.push((TIMEOUT.to_owned(), n.to_string()));
        }
        if let Some(n) = self.tsize {
            v.push((TSIZE.to_owned(), n.to_string()));
        }
        if let Some(n) = self.windowsize {
            v.push((WINDOWSIZE.to_owned(), n.to_string()));
        }
        v
    }

    /// True when no option is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// What a server accepts of `requested`, within its limits.
    ///
    /// Only options the client asked for are acknowledged (EFI clients reject any
    /// other, SPECS §3.2): blksize and windowsize are lowered to the server's maximum,
    /// never raised; timeout is echoed unchanged; tsize carries `size` when it is known
    /// (an octet read) and is dropped otherwise.
    ///
    /// The window is also lowered so that one window holds at most
    /// `limits.max_window_bytes`: a burst larger than the receiver's socket buffer is
    /// dropped at its tail every time (seen on loopback with blksize 8192 and
    /// windowsize 16), which turns every window into a timeout.
    pub fn accept(requested: &Self, limits: &Limits, size: Option<u64>) -> Self {
        let blksize = requested.blksize.map(|n| n.min(limits.max_blksize.max(8)));
        let block = u64::from(blksize.unwrap_or(crate::packet::DEFAULT_BLKSIZE as u16));
        let by_bytes = (limits.max_window_bytes / block).clamp(1, u64::from(u16::MAX)) as u16;
        Self {
            blksize,
            timeout: requested.timeout,
            tsize: requested.tsize.and(size),
            windowsize: requested
                .windowsize
                .map(|n| n.min(limits.max_windowsize.max(1)).min(by_bytes)),
        }
    }
}

/// A client's value as quoted in an ERROR message: printable ASCII, bounded in length.
fn quote(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(QUOTED_VALUE_MAX)
        .flat_map(char::escape_default)
        .collect();
    if value.chars().count() > QUOTED_VALUE_MAX {
        out.push_str("...");
    }
    out
}

/// A server's limits on negotiated options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest block size granted (a LAN's MTU minus 32 is 1468).
    pub max_blksize: u16,
    /// Largest window granted.
    pub max_windowsize: u16,
    /// Largest window granted, in bytes (blocks times blksize).
    pub max_window_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_blksize: MAX_BLKSIZE as u16,
            max_windowsize: 64,
            max_window_bytes: 64 << 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_options_case_insensitively() {
        let o = Options::from_pairs(&pairs(&[
            ("BLKSIZE", "1468"),
            ("TSize", "0"),
            ("windowsize", "4"),
            ("timeout", "3"),
            ("multicast", ""),
        ]));
        assert_eq!(
            o,
            Options {
                blksize: Some(1468),
                timeout: Some(3),
                tsize: Some(0),
                windowsize: Some(4)
            }
        );
    }

    #[test]
    fn out_of_range_values() {
        let o = Options::from_pairs(&pairs(&[
            ("blksize", "7"),
            ("timeout", "0"),
            ("windowsize", "0"),
            ("tsize", "-1"),
        ]));
        assert!(o.is_empty());
        let o = Options::from_pairs(&pairs(&[
            ("blksize", "99999999999999999999999"),
            ("timeout", "256"),
            ("windowsize", "70000"),
        ]));
        assert_eq!(o.blksize, None, "a number too big for u64 does not parse");
        assert_eq!(o.timeout, None);
        assert_eq!(o.windowsize, Some(65535));
        let o = Options::from_pairs(&pairs(&[("blksize", "70000")]));
        assert_eq!(o.blksize, Some(65464));
    }

    #[track_caller]
    fn refused(list: &[(&str, &str)], message: &str) {
        let e = Options::from_request(&pairs(list)).unwrap_err();
        assert_eq!(
            e.to_wire(),
            (ErrorCode::OptionRefused, message.to_owned()),
            "{list:?}"
        );
    }

    #[test]
    fn a_server_refuses_values_outside_the_rfc_ranges() {
        refused(
            &[("blksize", "7")],
            "option blksize: 7 is out of range 8-65464",
        );
        refused(
            &[("blksize", "0")],
            "option blksize: 0 is out of range 8-65464",
        );
        refused(
            &[("BLKSIZE", "65465")],
            "option blksize: 65465 is out of range 8-65464",
        );
        refused(
            &[("blksize", "99999999999999999999999")],
            "option blksize: 99999999999999999999999 is out of range 8-65464",
        );
        refused(
            &[("windowsize", "0")],
            "option windowsize: 0 is out of range 1-65535",
        );
        refused(
            &[("windowsize", "65536")],
            "option windowsize: 65536 is out of range 1-65535",
        );
        refused(
            &[("timeout", "0")],
            "option timeout: 0 is out of range 1-255",
        );
        refused(
            &[("timeout", "256")],
            "option timeout: 256 is out of range 1-255",
        );
        refused(
            &[("tsize", "-1")],
            "option tsize: \"-1\" is not a number (a size in bytes)",
        );
        refused(
            &[("tsize", "")],
            "option tsize: \"\" is not a number (a size in bytes)",
        );
        refused(
            &[("blksize", "abc")],
            "option blksize: \"abc\" is not a number (8-65464)",
        );
        // The quoted value is bounded and printable.
        refused(
            &[("tsize", &format!("x\u{7f}{}", "y".repeat(100)))],
            &format!(
                "option tsize: \"x\\u{{7f}}{}...\" is not a number (a size in bytes)",
                "y".repeat(22)
            ),
        );
        // The first bad option is named even after good ones.
        refused(
            &[("tsize", "0"), ("blksize", "1468"), ("timeout", "300")],
            "option timeout: 300 is out of range 1-255",
        );
    }

    #[test]
    fn a_server_accepts_every_value_inside_the_rfc_ranges() {
        let o = Options::from_request(&pairs(&[
            ("blksize", "8"),
            ("timeout", "255"),
            ("tsize", "18446744073709551615"),
            ("windowsize", "65535"),
            ("multicast", ""),
            ("utimeout", "-3"),
        ]))
        .unwrap();
        assert_eq!(
            o,
            Options {
                blksize: Some(8),
                timeout: Some(255),
                tsize: Some(u64::MAX),
                windowsize: Some(65535)
            }
        );
        let o = Options::from_request(&pairs(&[
            ("blksize", " 65464 "),
            ("timeout", "1"),
            ("windowsize", "1"),
        ]))
        .unwrap();
        assert_eq!(
            (o.blksize, o.timeout, o.windowsize),
            (Some(65464), Some(1), Some(1))
        );
        // iPXE and EDK2 requests (SPECS §3.3).
        assert_eq!(
            Options::from_request(&pairs(&[("blksize", "1432"), ("tsize", "0")])).unwrap(),
            Options {
                blksize: Some(1432),
                tsize: Some(0),
                ..Options::default()
            }
        );
        // In range but above the server's limit: lowered by `accept`, not refused.
        let o = Options::from_request(&pairs(&[("blksize", "65464"), ("windowsize", "65535")]))
            .unwrap();
        let got = Options::accept(&o, &Limits::default(), None);
        assert_eq!((got.blksize, got.windowsize), (Some(65464), Some(1)));
    }

    #[test]
    fn server_lowers_but_never_raises() {
        let req = Options {
            blksize: Some(8192),
            timeout: Some(2),
            tsize: Some(0),
            windowsize: Some(16),
        };
        let limits = Limits {
            max_blksize: 1468,
            max_windowsize: 8,
            ..Limits::default()
        };
        let got = Options::accept(&req, &limits, Some(1000));
        assert_eq!(
            got,
            Options {
                blksize: Some(1468),
                timeout: Some(2),
                tsize: Some(1000),
                windowsize: Some(8)
            }
        );
        let got = Options::accept(
            &Options {
                blksize: Some(512),
                ..Options::default()
            },
            &limits,
            None,
        );
        assert_eq!(
            got,
            Options {
                blksize: Some(512),
                ..Options::default()
            }
        );
        assert_eq!(
            Options::accept(
                &Options {
                    tsize: Some(0),
                    ..Options::default()
                },
                &limits,
                None
            ),
            Options::default()
        );
    }
}
