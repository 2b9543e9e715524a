//! The SCSI block command set (SPC-4, SBC-3) a target runs for a direct-access logical
//! unit over a positional [`BlockDevice`]: one function per command, each a pure
//! transformation of CDB and data-out bytes into status, data-in bytes and sense.
//!
//! Supported: TEST UNIT READY, REQUEST SENSE, INQUIRY (standard, VPD 0x00, 0x80, 0x83,
//! 0xB0, 0xB1, 0xB2), REPORT LUNS, READ CAPACITY 10/16, READ 6/10/12/16, WRITE
//! 6/10/12/16, SYNCHRONIZE CACHE 10/16, MODE SENSE 6/10, START STOP UNIT, UNMAP and
//! WRITE SAME 10/16 (when the device can unmap). Anything else is CHECK CONDITION,
//! ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE (SPC-4 §4.5.6).

mod commands;
mod device;
mod sense;

pub use commands::{Identity, Lu, MAX_TRANSFER_BYTES, Outcome, cdb_len, data_out_len};
pub use device::{BlockDevice, MemDisk};
pub use sense::{Sense, status};
