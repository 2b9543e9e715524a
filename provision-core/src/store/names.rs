//! The one rule for the names of vDisks, collections and devices, checked before a new
//! name is stored or used to make a path.

use crate::error::{Error, ErrorKind, Result};
use crate::layout::RESERVED_DIRS;

/// The longest name, in characters (all ASCII, so also in bytes).
pub const MAX_NAME_LEN: usize = 64;

/// What a name names: the rule is the same, the messages and reserved names differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameOf {
    /// A vDisk: its name is also its folder in the store.
    VDisk,
    /// A collection.
    Collection,
    /// A device.
    Device,
}

impl NameOf {
    fn as_str(self) -> &'static str {
        match self {
            NameOf::VDisk => "vDisk",
            NameOf::Collection => "collection",
            NameOf::Device => "device",
        }
    }
}

/// Checks a new name for a vDisk, collection or device.
///
/// A name is 1 to [`MAX_NAME_LEN`] characters, each an ASCII letter, digit, `-`, `_`
/// or `.`, and starts with a letter or a digit. A name is thus always one plain path
/// component (never empty, `.`, `..`, hidden, absolute or holding a separator) that
/// no shell quotes and no command line takes for an option.
///
/// A vDisk's name is its folder in the store (`<store>/<name>/v0.vhd`), so it may not
/// be one of the store's own folders either ([`RESERVED_DIRS`]).
///
/// # Errors
///
/// [`ErrorKind::Invalid`], saying what the rule is.
pub fn check_name(of: NameOf, name: &str) -> Result<()> {
    let what = of.as_str();
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let starts_well = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric());
    if !plain || !starts_well || name.len() > MAX_NAME_LEN {
        return Err(Error::new(
            ErrorKind::Invalid,
            format!(
                "{what} name `{}` is not allowed: a name is 1 to {MAX_NAME_LEN} characters among \
                 ASCII letters, digits, `-`, `_` and `.`, and starts with a letter or digit",
                name.escape_debug()
            ),
        ));
    }
    if of == NameOf::VDisk && RESERVED_DIRS.contains(&name) {
        return Err(Error::new(
            ErrorKind::Invalid,
            format!("vDisk name `{name}` is reserved: the store keeps its own files there"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass() {
        for name in [
            "win11",
            "seat-01",
            "Lab_2",
            "w11.24h2",
            "0",
            &"a".repeat(64),
        ] {
            for of in [NameOf::VDisk, NameOf::Collection, NameOf::Device] {
                check_name(of, name).unwrap();
            }
        }
        check_name(NameOf::Device, "cache").unwrap();
    }

    #[test]
    fn paths_and_odd_names_are_refused() {
        let long = "a".repeat(65);
        for name in [
            "", ".", "..", "/tmp/x", "../x", "a/b", "a\\b", "./a", ".hidden", "-rf", "_x", "a b",
            "a\tb", "a\nb", "a\0b", "Büro", "a:b", &long,
        ] {
            for of in [NameOf::VDisk, NameOf::Collection, NameOf::Device] {
                let e = check_name(of, name).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Invalid, "{name:?}");
                assert!(e.to_string().contains("is not allowed"), "{e}");
            }
        }
        for name in RESERVED_DIRS {
            let e = check_name(NameOf::VDisk, name).unwrap_err();
            assert!(e.to_string().contains("reserved"), "{e}");
        }
    }
}
