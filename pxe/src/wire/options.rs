//! The option list: an ordered TLV list that keeps PAD bytes, unknown options and
//! repeated instances exactly as they came, so a parsed area re-encodes byte for byte.
//!
//! Reading an option concatenates every instance of its code (RFC 3396 §7); writing a
//! value longer than 255 bytes splits it into consecutive instances (RFC 3396 §6).

use crate::error::{Error, Result};

/// Option code 0: one byte of padding.
pub const PAD: u8 = 0;
/// Option code 255: end of the option area.
pub const END: u8 = 255;
/// More options than this in one area means a hostile packet (a 1500-byte area holds at
/// most 750 two-byte options; PAD bytes count too, so allow the whole area).
pub const MAX_ENTRIES: usize = 4096;

/// One entry of an option area: a PAD byte (`code == 0`, empty data) or an option.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OptionEntry {
    /// The option code (never 255: END is implicit).
    pub code: u8,
    /// The option's bytes (at most 255 once encoded; longer values are split).
    pub data: Vec<u8>,
}

/// An ordered option list, as found in one option area.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Options {
    entries: Vec<OptionEntry>,
}

/// How an area ended when parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedArea {
    pub options: Options,
    /// Whether an END option was found.
    pub ended: bool,
    /// The bytes after END (padding), kept for a byte-exact re-encode.
    pub trailer: Vec<u8>,
}

impl Options {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses one option area (RFC 2132 §2). Stops at END; PAD bytes are kept.
    pub(crate) fn parse_area(bytes: &[u8], area: &'static str) -> Result<ParsedArea> {
        let mut entries = Vec::new();
        let mut i = 0usize;
        while i < bytes.len() {
            let code = bytes[i];
            if code == END {
                return Ok(ParsedArea {
                    options: Options { entries },
                    ended: true,
                    trailer: bytes[i + 1..].to_vec(),
                });
            }
            if entries.len() >= MAX_ENTRIES {
                return Err(Error::TooManyOptions {
                    count: entries.len() + 1,
                    limit: MAX_ENTRIES,
                });
            }
            if code == PAD {
                entries.push(OptionEntry {
                    code,
                    data: Vec::new(),
                });
                i += 1;
                continue;
            }
            let Some(&len) = bytes.get(i + 1) else {
                return Err(Error::OptionOverrun {
                    area,
                    code,
                    len: 1,
                    left: 0,
                });
            };
            let len = usize::from(len);
            let start = i + 2;
            let left = bytes.len() - start;
            if len > left {
                return Err(Error::OptionOverrun {
                    area,
                    code,
                    len,
                    left,
                });
            }
            entries.push(OptionEntry {
                code,
                data: bytes[start..start + len].to_vec(),
            });
            i = start + len;
        }
        Ok(ParsedArea {
            options: Options { entries },
            ended: false,
            trailer: Vec::new(),
        })
    }

    /// Bytes this list takes when encoded, without END.
    pub fn encoded_len(&self) -> usize {
        self.entries
            .iter()
            .map(|e| if e.code == PAD { 1 } else { 2 + e.data.len() })
            .sum()
    }

    /// Appends the encoded list (without END) to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        for e in &self.entries {
            if e.code == PAD {
                out.push(PAD);
                continue;
            }
            // Entries longer than 255 bytes can only come from direct field access;
            // split them as RFC 3396 says.
            if e.data.is_empty() {
                out.extend_from_slice(&[e.code, 0]);
            }
            for chunk in e.data.chunks(255) {
                out.push(e.code);
                out.push(chunk.len() as u8);
                out.extend_from_slice(chunk);
            }
        }
    }

    /// The entries in wire order (PAD entries included).
    pub fn entries(&self) -> &[OptionEntry] {
        &self.entries
    }

    /// The entries, for direct edits.
    pub fn entries_mut(&mut self) -> &mut Vec<OptionEntry> {
        &mut self.entries
    }

    /// Whether any instance of `code` is present.
    pub fn contains(&self, code: u8) -> bool {
        code != PAD && self.entries.iter().any(|e| e.code == code)
    }

    /// The value of `code`: every instance concatenated in order (RFC 3396).
    pub fn get(&self, code: u8) -> Option<Vec<u8>> {
        if code == PAD || code == END {
            return None;
        }
        let mut found = None::<Vec<u8>>;
        for e in self.entries.iter().filter(|e| e.code == code) {
            found
                .get_or_insert_with(Vec::new)
                .extend_from_slice(&e.data);
        }
        found
    }

    /// Appends `code` with `data`, split into 255-byte instances when longer (RFC 3396).
    pub fn push(&mut self, code: u8, data: &[u8]) {
        if data.is_empty() {
            self.entries.push(OptionEntry {
                code,
                data: Vec::new(),
            });
        }
        for chunk in data.chunks(255) {
            self.entries.push(OptionEntry {
                code,
                data: chunk.to_vec(),
            });
        }
    }

    /// Replaces every instance of `code` with one value (appended at the end).
    pub fn set(&mut self, code: u8, data: &[u8]) {
        self.remove(code);
        self.push(code, data);
    }

    /// Removes every instance of `code`.
    pub fn remove(&mut self, code: u8) {
        self.entries.retain(|e| e.code != code);
    }

    /// The distinct option codes in first-seen order (PAD excluded).
    pub fn codes(&self) -> Vec<u8> {
        let mut codes = Vec::new();
        for e in &self.entries {
            if e.code != PAD && !codes.contains(&e.code) {
                codes.push(e.code);
            }
        }
        codes
    }

    /// Appends all entries of `other`.
    pub fn extend(&mut self, other: &Options) {
        self.entries.extend_from_slice(&other.entries);
    }

    /// True when there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_option_is_split_and_concatenated() {
        let value: Vec<u8> = (0..600u32).map(|i| i as u8).collect();
        let mut o = Options::new();
        o.push(43, &value);
        assert_eq!(o.entries().len(), 3);
        assert_eq!(o.get(43).unwrap(), value);
        let mut bytes = Vec::new();
        o.emit(&mut bytes);
        bytes.push(END);
        let parsed = Options::parse_area(&bytes, "options").unwrap();
        assert_eq!(parsed.options, o);
        assert_eq!(parsed.options.get(43).unwrap(), value);
    }

    #[test]
    fn overrun_and_missing_end_are_reported() {
        let e = Options::parse_area(&[53, 5, 1], "options").unwrap_err();
        assert!(matches!(
            e,
            Error::OptionOverrun {
                code: 53,
                len: 5,
                left: 1,
                ..
            }
        ));
        assert!(matches!(
            Options::parse_area(&[53], "options").unwrap_err(),
            Error::OptionOverrun { code: 53, .. }
        ));
        let a = Options::parse_area(&[53, 1, 1, 0], "options").unwrap();
        assert!(!a.ended);
    }

    #[test]
    fn pad_and_trailer_are_kept() {
        let bytes = [0, 53, 1, 2, 0, 255, 0, 0, 7];
        let a = Options::parse_area(&bytes, "options").unwrap();
        assert!(a.ended);
        assert_eq!(a.trailer, vec![0, 0, 7]);
        let mut out = Vec::new();
        a.options.emit(&mut out);
        assert_eq!(out, &bytes[..5]);
    }
}
