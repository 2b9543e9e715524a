//! The adapter from an image file to an `nbd_proto::Export`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use nbd_proto::{Capabilities, Errno, Export, SingleExport, ZeroFlags};

use crate::{Args, Provider};

/// Builds the export provider the arguments ask for.
pub fn provider(args: &Args, name: String) -> Result<Provider, String> {
    if args.snapshot {
        return Err("--snapshot needs the vhd crate's overlay, not available in this build".into());
    }
    let file = OpenOptions::new()
        .read(true)
        .write(!args.read_only)
        .open(&args.file)
        .map_err(|e| format!("cannot open {}: {e}", args.file.display()))?;
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    let export = RawFile {
        file,
        size,
        read_only: args.read_only,
    };
    Ok(Arc::new(SingleExport::new(name, Arc::new(export))))
}

/// A raw file served as is.
struct RawFile {
    file: File,
    size: u64,
    read_only: bool,
}

fn errno(e: io::Error) -> Errno {
    match e.raw_os_error() {
        Some(28 | 27 | 122) => Errno::ENOSPC, // ENOSPC, EFBIG, EDQUOT
        Some(1 | 13 | 30) => Errno::EPERM,    // EPERM, EACCES, EROFS
        _ => Errno::EIO,
    }
}

impl Export for RawFile {
    fn size(&self) -> u64 {
        self.size
    }
    fn capabilities(&self) -> Capabilities {
        let base = Capabilities::FLUSH | Capabilities::CACHE | Capabilities::MULTI_CONN;
        if self.read_only {
            base | Capabilities::READ_ONLY
        } else {
            base | Capabilities::FUA | Capabilities::WRITE_ZEROES
        }
    }
    fn read(&self, buf: &mut [u8], offset: u64) -> Result<(), Errno> {
        self.file.read_exact_at(buf, offset).map_err(errno)
    }
    fn write(&self, data: &[u8], offset: u64, fua: bool) -> Result<(), Errno> {
        self.file.write_all_at(data, offset).map_err(errno)?;
        if fua { self.flush() } else { Ok(()) }
    }
    fn flush(&self) -> Result<(), Errno> {
        self.file.sync_data().map_err(errno)
    }
    fn write_zeroes(&self, offset: u64, len: u64, flags: ZeroFlags) -> Result<(), Errno> {
        let zeroes = vec![0u8; len.min(1 << 20) as usize];
        let mut pos = 0;
        while pos < len {
            let n = (len - pos).min(zeroes.len() as u64) as usize;
            self.file
                .write_all_at(&zeroes[..n], offset + pos)
                .map_err(errno)?;
            pos += n as u64;
        }
        if flags.fua { self.flush() } else { Ok(()) }
    }
}
