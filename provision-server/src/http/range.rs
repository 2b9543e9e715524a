//! The `Range` request header (RFC 9110 §14), for one range of bytes: what firmware,
//! iPXE and download tools send to resume or to fetch a part. Several ranges in one
//! request are answered with the whole file, which the RFC allows.

use std::ops::Range;

/// What a request's `Range` header asks of a file of `len` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Wanted {
    /// The whole file (no header, one this server ignores, or several ranges).
    All,
    /// These bytes (206 Partial Content).
    Part(Range<u64>),
    /// No byte of the file (416 Range Not Satisfiable).
    Unsatisfiable,
}

/// Reads `header` (the value of `Range`, if any) against a file of `len` bytes.
pub(super) fn wanted(header: Option<&str>, len: u64) -> Wanted {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Wanted::All;
    };
    if spec.contains(',') {
        return Wanted::All;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Wanted::All;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.trim().is_empty(), number(first), number(last)) {
        // `bytes=-N`: the last N bytes.
        (true, _, Some(n)) if n > 0 && len > 0 => Wanted::Part(len.saturating_sub(n)..len),
        (true, _, Some(_)) => Wanted::Unsatisfiable,
        // `bytes=A-` and `bytes=A-B`.
        (false, Some(a), b) if last.trim().is_empty() || b.is_some() => {
            if a >= len {
                return Wanted::Unsatisfiable;
            }
            match b {
                Some(b) if b < a => Wanted::All,
                Some(b) => Wanted::Part(a..b.saturating_add(1).min(len)),
                None => Wanted::Part(a..len),
            }
        }
        // Not a byte range we understand: ignored, as the RFC says.
        _ => Wanted::All,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges() {
        assert_eq!(wanted(None, 100), Wanted::All);
        assert_eq!(wanted(Some("bytes=0-9"), 100), Wanted::Part(0..10));
        assert_eq!(wanted(Some("bytes=90-"), 100), Wanted::Part(90..100));
        assert_eq!(wanted(Some("bytes=90-1000"), 100), Wanted::Part(90..100));
        assert_eq!(wanted(Some("bytes=-10"), 100), Wanted::Part(90..100));
        assert_eq!(wanted(Some("bytes=-1000"), 100), Wanted::Part(0..100));
        assert_eq!(wanted(Some("bytes=100-"), 100), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=-0"), 100), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=0-"), 0), Wanted::Unsatisfiable);
    }

    #[test]
    fn what_is_ignored() {
        for header in [
            "items=0-9",
            "bytes=0-9,20-29",
            "bytes=9-0",
            "bytes=a-b",
            "bytes=-",
            "bytes=+1-2",
            "bytes=1-2-3",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(wanted(Some(header), 100), Wanted::All, "{header}");
        }
    }
}
