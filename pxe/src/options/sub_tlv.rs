//! The code/length/value layout shared by encapsulated options (43, 175): PAD (0)
//! skipped, END (255) stops, no sub-option may run past the end.

use crate::error::{Error, Result};

/// Parses encapsulated sub-options of option `code`, in order.
pub(crate) fn parse(data: &[u8], code: u8, structure: &'static str) -> Result<Vec<(u8, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut i = 0usize;
    while i < data.len() {
        match data[i] {
            0 => i += 1,
            255 => break,
            sub => {
                let Some(&len) = data.get(i + 1) else {
                    return Err(Error::BadOption {
                        code,
                        structure,
                        what: "sub-option without a length",
                    });
                };
                let start = i + 2;
                let end = start + usize::from(len);
                if end > data.len() {
                    return Err(Error::BadOption {
                        code,
                        structure,
                        what: "sub-option runs past the end of the option",
                    });
                }
                out.push((sub, data[start..end].to_vec()));
                i = end;
            }
        }
    }
    Ok(out)
}

/// Appends one sub-option; values longer than 255 bytes are truncated by the caller's
/// validation, never here silently: they are split like RFC 3396 options.
pub(crate) fn emit(out: &mut Vec<u8>, sub: u8, value: &[u8]) {
    if value.is_empty() {
        out.extend_from_slice(&[sub, 0]);
    }
    for chunk in value.chunks(255) {
        out.push(sub);
        out.push(chunk.len() as u8);
        out.extend_from_slice(chunk);
    }
}
