//! netascii (RFC 1350 mode, RFC 764 NVT): line ends are CR LF on the wire and a bare CR is
//! CR NUL. [`encode`] turns local text (LF line ends) into netascii, [`Decoder`] the
//! reverse, one block at a time (a CR may end one block and its partner start the next).

/// Converts local text to netascii: LF becomes CR LF, a bare CR becomes CR NUL.
pub fn encode(local: &[u8]) -> Vec<u8> {
    let extra = local.iter().filter(|&&b| b == b'\n' || b == b'\r').count();
    let mut out = Vec::with_capacity(local.len() + extra);
    for &b in local {
        match b {
            b'\n' => out.extend_from_slice(b"\r\n"),
            b'\r' => out.extend_from_slice(b"\r\0"),
            b => out.push(b),
        }
    }
    out
}

/// Converts netascii to local text across block boundaries.
#[derive(Debug, Default, Clone)]
pub struct Decoder {
    pending_cr: bool,
}

impl Decoder {
    /// A decoder at the start of a file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one block, appending local text to `out`.
    pub fn decode(&mut self, wire: &[u8], out: &mut Vec<u8>) {
        for &b in wire {
            if self.pending_cr {
                self.pending_cr = false;
                match b {
                    b'\n' => out.push(b'\n'),
                    0 => out.push(b'\r'),
                    b'\r' => {
                        out.push(b'\r');
                        self.pending_cr = true;
                    }
                    other => out.extend_from_slice(&[b'\r', other]),
                }
            } else if b == b'\r' {
                self.pending_cr = true;
            } else {
                out.push(b);
            }
        }
    }

    /// Ends the file: a CR left at the very end is kept.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.pending_cr) {
            out.push(b'\r');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_examples() {
        assert_eq!(encode(b"a\nb\rc"), b"a\r\nb\r\0c");
        let mut out = Vec::new();
        let mut d = Decoder::new();
        d.decode(b"a\r", &mut out);
        d.decode(b"\nb\r\0c\r", &mut out);
        d.finish(&mut out);
        assert_eq!(out, b"a\nb\rc\r");
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(text in proptest::collection::vec(any::<u8>(), 0..300), cut in 0usize..600) {
            let wire = encode(&text);
            let cut = cut.min(wire.len());
            let mut out = Vec::new();
            let mut d = Decoder::new();
            d.decode(&wire[..cut], &mut out);
            d.decode(&wire[cut..], &mut out);
            d.finish(&mut out);
            prop_assert_eq!(out, text);
        }
    }
}
