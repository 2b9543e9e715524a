//! Whole PDUs (RFC 7143 §11.2): BHS, AHS, header digest, data segment padded to 4 bytes,
//! data digest. [`Pdu::parse`] is a push parser over a byte buffer: `Ok(None)` means
//! "need more bytes", and lengths are checked against the negotiated limit before any
//! allocation.

use super::bhs::{BHS_LEN, Bhs, Framing};
use crate::digest::crc32c;
use crate::error::Error;

/// Which digests the connection negotiated (HeaderDigest, DataDigest: CRC32C or None).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Digests {
    /// A CRC32C follows the BHS and AHS.
    pub header: bool,
    /// A CRC32C follows the padded data segment (when it is not empty).
    pub data: bool,
}

/// A PDU: its header, additional header segments (raw) and data segment (unpadded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    /// The Basic Header Segment.
    pub bhs: Bhs,
    /// The Additional Header Segments, as bytes (a multiple of 4 long).
    pub ahs: Vec<u8>,
    /// The data segment, without its padding.
    pub data: Vec<u8>,
}

/// `len` rounded up to a multiple of 4.
pub fn padded(len: usize) -> usize {
    len.div_ceil(4) * 4
}

fn digest_at(buf: &[u8], at: usize) -> u32 {
    // The digest goes on the wire least significant byte first (RFC 7143 B.4 shows the
    // CRC of 32 zero bytes as `aa 36 91 8a`).
    u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

impl Pdu {
    /// A PDU without AHS or data.
    pub fn new(bhs: Bhs) -> Pdu {
        Pdu {
            bhs,
            ahs: Vec::new(),
            data: Vec::new(),
        }
    }

    /// A PDU with a data segment.
    pub fn with_data(bhs: Bhs, data: Vec<u8>) -> Pdu {
        Pdu {
            bhs,
            ahs: Vec::new(),
            data,
        }
    }

    /// Reads one PDU from the front of `buf`. `Ok(None)`: `buf` holds only part of it.
    /// `max_data` bounds the data segment (MaxRecvDataSegmentLength), checked as soon as
    /// the BHS is in, so a peer cannot make us buffer more.
    pub fn parse(
        buf: &[u8],
        digests: Digests,
        max_data: usize,
    ) -> Result<Option<(Pdu, usize)>, Error> {
        let Some(head) = buf.get(..BHS_LEN) else {
            return Ok(None);
        };
        let mut raw = [0u8; BHS_LEN];
        raw.copy_from_slice(head);
        let framing = Framing::parse(&raw);
        if framing.data_len > max_data {
            return Err(Error::TooLong {
                structure: "PDU",
                field: "DataSegmentLength",
                value: framing.data_len,
                limit: max_data,
            });
        }
        let header_end = BHS_LEN + framing.ahs_len;
        let hd = if digests.header { 4 } else { 0 };
        let data_start = header_end + hd;
        let dd = if digests.data && framing.data_len > 0 {
            4
        } else {
            0
        };
        let total = data_start + padded(framing.data_len) + dd;
        if buf.len() < total {
            return Ok(None);
        }
        if digests.header {
            let received = digest_at(buf, header_end);
            let computed = crc32c(&buf[..header_end]);
            if received != computed {
                return Err(Error::Digest {
                    structure: "header",
                    received,
                    computed,
                });
            }
        }
        let data_padded = &buf[data_start..data_start + padded(framing.data_len)];
        if dd != 0 {
            let received = digest_at(buf, data_start + data_padded.len());
            let computed = crc32c(data_padded);
            if received != computed {
                return Err(Error::Digest {
                    structure: "data",
                    received,
                    computed,
                });
            }
        }
        let pdu = Pdu {
            bhs: Bhs::parse(&raw),
            ahs: buf[BHS_LEN..header_end].to_vec(),
            data: data_padded[..framing.data_len].to_vec(),
        };
        Ok(Some((pdu, total)))
    }

    /// The PDU's length on the wire.
    pub fn encoded_len(&self, digests: Digests) -> usize {
        BHS_LEN
            + self.ahs.len()
            + if digests.header { 4 } else { 0 }
            + padded(self.data.len())
            + if digests.data && !self.data.is_empty() {
                4
            } else {
                0
            }
    }

    /// Appends the PDU to `out`; errors when the AHS or data do not fit their fields.
    pub fn emit(&self, digests: Digests, out: &mut Vec<u8>) -> Result<(), Error> {
        let mut raw = [0u8; BHS_LEN];
        self.bhs.emit(&mut raw);
        Framing {
            ahs_len: self.ahs.len(),
            data_len: self.data.len(),
        }
        .emit(&mut raw)?;
        let start = out.len();
        out.reserve(self.encoded_len(digests));
        out.extend_from_slice(&raw);
        out.extend_from_slice(&self.ahs);
        if digests.header {
            let d = crc32c(&out[start..]);
            out.extend_from_slice(&d.to_le_bytes());
        }
        if !self.data.is_empty() {
            let data_start = out.len();
            out.extend_from_slice(&self.data);
            out.resize(data_start + padded(self.data.len()), 0);
            if digests.data {
                let d = crc32c(&out[data_start..]);
                out.extend_from_slice(&d.to_le_bytes());
            }
        }
        Ok(())
    }

    /// The PDU as bytes.
    pub fn to_bytes(&self, digests: Digests) -> Result<Vec<u8>, Error> {
        let mut v = Vec::new();
        self.emit(digests, &mut v)?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every header that parses re-emits to a header that parses to the same value,
        /// for every opcode (the first byte chooses it), with AHS, data and digests.
        #[test]
        fn parse_emit_roundtrip(
            mut head in proptest::array::uniform32(any::<u8>()),
            tail in proptest::array::uniform16(any::<u8>()),
            ahs_words in 0usize..4,
            data in proptest::collection::vec(any::<u8>(), 0..70),
            hd in any::<bool>(), dd in any::<bool>(),
        ) {
            head[4] = 0;
            let mut raw = [0u8; BHS_LEN];
            raw[..32].copy_from_slice(&head);
            raw[32..].copy_from_slice(&tail);
            let bhs = Bhs::parse(&raw);
            let pdu = Pdu { bhs, ahs: vec![7; ahs_words * 4], data };
            let digests = Digests { header: hd, data: dd };
            let bytes = pdu.to_bytes(digests).unwrap();
            prop_assert_eq!(bytes.len(), pdu.encoded_len(digests));
            let (back, used) = Pdu::parse(&bytes, digests, 1 << 20).unwrap().unwrap();
            prop_assert_eq!(used, bytes.len());
            // Unknown opcodes keep their raw header, whose framing bytes are now the real ones.
            if let Bhs::Unknown { .. } = pdu.bhs {
                prop_assert_eq!(back.bhs.opcode(), pdu.bhs.opcode());
                prop_assert_eq!(&back.data, &pdu.data);
            } else {
                prop_assert_eq!(&back, &pdu);
            }
            // Every strict prefix asks for more bytes.
            for cut in [0, 1, 47, bytes.len() - 1] {
                prop_assert_eq!(Pdu::parse(&bytes[..cut.min(bytes.len() - 1)], digests, 1 << 20).unwrap(), None);
            }
        }

        /// Arbitrary bytes never panic the parser.
        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200), hd in any::<bool>()) {
            let _ = Pdu::parse(&bytes, Digests { header: hd, data: hd }, 64);
        }
    }

    #[test]
    fn digest_errors_and_limits() {
        let pdu = Pdu::with_data(
            Bhs::NopIn(crate::wire::NopIn {
                lun: 0,
                itt: 1,
                ttt: crate::wire::RESERVED_TAG,
                stat_sn: 2,
                exp_cmd_sn: 3,
                max_cmd_sn: 4,
            }),
            b"ping".to_vec(),
        );
        let d = Digests {
            header: true,
            data: true,
        };
        let mut bytes = pdu.to_bytes(d).unwrap();
        assert_eq!(
            Pdu::parse(&bytes, d, 3).unwrap_err().kind(),
            crate::ErrorKind::Malformed
        );
        bytes[50] ^= 1;
        assert_eq!(
            Pdu::parse(&bytes, d, 100).unwrap_err().kind(),
            crate::ErrorKind::Digest
        );
        bytes[50] ^= 1;
        bytes[52] ^= 1;
        assert!(matches!(
            Pdu::parse(&bytes, d, 100),
            Err(Error::Digest {
                structure: "data",
                ..
            })
        ));
    }
}
