//! Option overload (RFC 2132 §9.3): when options do not fit the main area, they
//! continue in `file` (value 1), `sname` (2) or both (3), read in the order options,
//! file, sname.

use super::message::{HEADER_LEN, Message};
use super::options::{END, OptionEntry, Options, PAD};
use crate::error::{Error, Result};
use crate::options::codes;

/// Which BOOTP fields carry options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Overload {
    /// 1: `file` holds options.
    File,
    /// 2: `sname` holds options.
    Sname,
    /// 3: both.
    Both,
}

impl Overload {
    /// From the option's byte; `None` for values other than 1, 2 and 3.
    pub fn from_u8(v: u8) -> Option<Overload> {
        match v {
            1 => Some(Overload::File),
            2 => Some(Overload::Sname),
            3 => Some(Overload::Both),
            _ => None,
        }
    }

    /// The option's byte.
    pub fn to_u8(self) -> u8 {
        match self {
            Overload::File => 1,
            Overload::Sname => 2,
            Overload::Both => 3,
        }
    }

    /// Whether `file` holds options.
    pub fn file(self) -> bool {
        matches!(self, Overload::File | Overload::Both)
    }

    /// Whether `sname` holds options.
    pub fn sname(self) -> bool {
        matches!(self, Overload::Sname | Overload::Both)
    }
}

fn entry_len(e: &OptionEntry) -> usize {
    if e.code == PAD { 1 } else { 2 + e.data.len() }
}

/// Makes `msg` fit in `max_len` bytes by moving trailing options into `file` and then
/// `sname` (only fields that are empty), setting option 52. Does nothing when the
/// message already fits.
pub fn fit(out: &mut Message, max_len: usize) -> Result<()> {
    let need = out.encoded_len();
    if need <= max_len {
        return Ok(());
    }
    let too_large = Error::TooLarge {
        need,
        limit: max_len,
    };
    // Work on a copy so a failure leaves the caller's message untouched.
    let mut work = out.clone();
    let msg = &mut work;
    let file_free = msg.file.iter().all(|&b| b == 0) && msg.file_name().is_none();
    let sname_free = msg.sname.iter().all(|&b| b == 0);
    // Main area budget: everything but the header, END, the trailer and option 52 (3 B).
    let Some(main_budget) = max_len.checked_sub(HEADER_LEN + 1 + msg.trailer.len() + 3) else {
        return Err(too_large);
    };
    let entries = std::mem::take(msg.options.entries_mut());
    let mut main = Options::new();
    let mut spill: Vec<OptionEntry> = Vec::new();
    let mut used = 0;
    for e in entries {
        if spill.is_empty() && used + entry_len(&e) <= main_budget {
            used += entry_len(&e);
            main.entries_mut().push(e);
        } else {
            spill.push(e);
        }
    }
    let mut areas: Vec<(&mut [u8], Overload)> = Vec::new();
    if file_free {
        areas.push((&mut msg.file[..], Overload::File));
    }
    if sname_free {
        areas.push((&mut msg.sname[..], Overload::Sname));
    }
    let mut overload = None::<Overload>;
    let mut spill = spill.into_iter().peekable();
    for (field, which) in areas {
        let mut buf = Vec::new();
        while let Some(e) = spill.peek() {
            if buf.len() + entry_len(e) + 1 > field.len() {
                break;
            }
            let mut o = Options::new();
            o.entries_mut().push(e.clone());
            o.emit(&mut buf);
            spill.next();
        }
        if buf.is_empty() {
            continue;
        }
        buf.push(END);
        field[..buf.len()].copy_from_slice(&buf);
        overload = Some(match overload {
            None => which,
            Some(_) => Overload::Both,
        });
    }
    if spill.peek().is_some() {
        return Err(too_large);
    }
    if let Some(ov) = overload {
        main.push(codes::OVERLOAD, &[ov.to_u8()]);
    }
    msg.options = main;
    *out = work;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spills_into_file_and_sname_and_reads_back() {
        let mut m = Message::default();
        m.options.push(codes::MESSAGE_TYPE, &[2]);
        for code in 200..212u8 {
            m.options.push(code, &[code; 20]);
        }
        let before = m.all_options();
        let full = m.encoded_len();
        fit(&mut m, full - 100).unwrap();
        assert!(m.encoded_len() <= full - 100);
        let back = Message::parse(&m.encode()).unwrap();
        assert!(back.overload().unwrap().is_some());
        for code in 200..212u8 {
            assert_eq!(back.option(code), before.get(code), "option {code}");
        }
    }

    #[test]
    fn refuses_when_nothing_fits() {
        let mut m = Message::default();
        m.options.push(200, &[1; 250]);
        m.options.push(201, &[1; 250]);
        assert!(matches!(
            fit(&mut m, 300).unwrap_err(),
            Error::TooLarge { .. }
        ));
    }
}
