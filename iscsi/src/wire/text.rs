//! Text keys (RFC 7143 §6.1): `key=value` pairs, each ended by a NUL, in the data segment
//! of Login and Text PDUs. Keys keep their order and duplicates (the negotiation decides
//! what a duplicate means).

use crate::error::Error;

/// The longest key name (RFC 7143 §6.1: 63 bytes).
pub const MAX_KEY_LEN: usize = 63;
/// The longest value this codec accepts (RFC 7143 §6.1: 8192 bytes for any value).
pub const MAX_VALUE_LEN: usize = 8192;

/// Key=value pairs in order.
pub type Pairs = Vec<(String, String)>;

/// Reads the pairs of a text data segment. A last pair without its NUL is accepted.
pub fn parse(data: &[u8]) -> Result<Pairs, Error> {
    let mut out = Vec::new();
    for item in data.split(|&b| b == 0) {
        if item.is_empty() {
            continue;
        }
        let text = std::str::from_utf8(item)
            .map_err(|_| Error::invalid("text key", "encoding", "not UTF-8"))?;
        let Some((key, value)) = text.split_once('=') else {
            return Err(Error::invalid(
                "text key",
                "pair",
                format!("no '=' in {:?}", truncate(text)),
            ));
        };
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(Error::invalid(
                "text key",
                "key",
                format!("{} bytes long", key.len()),
            ));
        }
        if value.len() > MAX_VALUE_LEN {
            return Err(Error::TooLong {
                structure: "text key",
                field: "value",
                value: value.len(),
                limit: MAX_VALUE_LEN,
            });
        }
        out.push((key.to_owned(), value.to_owned()));
    }
    Ok(out)
}

fn truncate(s: &str) -> &str {
    let mut end = s.len().min(40);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Writes pairs as a text data segment.
pub fn emit(pairs: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn login_keys() {
        let data =
            b"InitiatorName=iqn.2008-11.org.linux-kvm\0SessionType=Normal\0AuthMethod=None\0";
        let pairs = parse(data).unwrap();
        assert_eq!(pairs[1], ("SessionType".into(), "Normal".into()));
        assert_eq!(emit(&pairs), data);
        assert!(parse(b"NoEquals\0").is_err());
        assert!(parse(b"=x\0").is_err());
        assert!(parse(&[0xff, b'=', 0]).is_err());
    }

    proptest! {
        #[test]
        fn roundtrip(pairs in proptest::collection::vec(("[A-Za-z][A-Za-z0-9._-]{0,20}", "[ -~]{0,40}"), 0..8)) {
            let pairs: Pairs = pairs.into_iter().map(|(k, v): (String, String)| (k, v.replace('\0', ""))).collect();
            prop_assert_eq!(parse(&emit(&pairs)).unwrap(), pairs);
        }
    }
}
