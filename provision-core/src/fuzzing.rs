//! Entry point of the fuzz target `tftp_path` (`fuzz/fuzz_targets/tftp_path.rs`), here
//! so that the seed corpus replay test and the fuzzer call the very same code: the TFTP
//! provider provisiond serves ([`DeviceFiles`] over a [`tftp::DirProvider`], layered by
//! [`tftp::Fallback`]) asked for arbitrary file names by arbitrary clients.
//!
//! The folder it is given holds a TFTP root with one file and, beside the root, a file
//! that must never be served, reached also through a symlink inside the root; the
//! store holds one device with one vDisk.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tftp::{DirProvider, Fallback, Provider, Source};

use crate::adapters::tftp::{BootSettings, BootStart, DeviceFiles};
use crate::{DeviceType, Mac, Mode, SessionSettings, Sessions, Store};

/// The content of the file inside the root.
pub const INSIDE: &[u8] = b"inside the TFTP root\n";
/// The content of the file beside the root: never served.
pub const OUTSIDE: &[u8] = b"OUTSIDE-THE-ROOT-never-served\n";
/// The device in the store.
pub const MAC: &str = "52:54:00:12:34:56";
/// What a file name may write where the device's current boot token goes.
pub const TOKEN_MARK: &str = "{token}";

/// Clients the first byte of an input chooses from.
const PEERS: [&str; 4] = [
    "10.0.0.7:2000",
    "[::1]:69",
    "192.168.1.50:1234",
    "0.0.0.0:0",
];

/// Files served to a file name the largest of which is the root's file or a script.
const MAX_READ: usize = 1 << 20;

type Layered = Fallback<DeviceFiles, DirProvider>;

/// The providers over one folder; build once, then call [`TftpPaths::open`] per input.
pub struct TftpPaths {
    /// Boots started by script fetches, a plain folder; boots started by DHCP, a
    /// case-insensitive folder that refuses absolute paths.
    providers: [Layered; 2],
    sessions: Sessions,
    mac: Mac,
}

impl TftpPaths {
    /// Lays out `dir` (`tftp/boot.txt`, `tftp/escape -> ../outside.txt`, `outside.txt`,
    /// `store/`) and builds the providers.
    ///
    /// # Errors
    ///
    /// When the folder or the store cannot be made.
    pub fn new(dir: &Path) -> crate::Result<Self> {
        let io = |source| crate::Error::Io {
            path: dir.display().to_string(),
            source,
        };
        let root = dir.join("tftp");
        std::fs::create_dir_all(root.join("sub")).map_err(io)?;
        std::fs::write(root.join("boot.txt"), INSIDE).map_err(io)?;
        std::fs::write(root.join("sub").join("Boot.TXT"), INSIDE).map_err(io)?;
        std::fs::write(dir.join("outside.txt"), OUTSIDE).map_err(io)?;
        let link = root.join("escape");
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink("../outside.txt", &link).map_err(io)?;
        }
        let store = Store::open(&dir.join("store"))?;
        let mac: Mac = MAC.parse().expect("literal MAC");
        if store.vdisks()?.is_empty() {
            crate::create_vdisk(&store, "lab", 1 << 20, "fuzzing")?;
            store.add_device(mac, "seat-1", None, DeviceType::Production)?;
            store.assign("seat-1", "lab", Mode::Standard, None)?;
        }
        let store = Arc::new(store);
        let sessions = Sessions::new(store.clone(), SessionSettings::default())?;
        let folder = |case_insensitive| {
            DirProvider::new(&root)
                .map(|p| {
                    p.case_insensitive(case_insensitive)
                        .refuse_absolute(case_insensitive)
                })
                .map_err(|e| crate::Error::new(crate::ErrorKind::Storage, e))
        };
        let files = |start| {
            DeviceFiles::new(
                store.clone(),
                sessions.clone(),
                BootSettings::new("10.0.0.1:10809"),
                start,
            )
        };
        Ok(Self {
            providers: [
                Fallback::new(files(BootStart::Script), folder(false)?),
                Fallback::new(files(BootStart::Dhcp), folder(true)?),
            ],
            sessions,
            mac,
        })
    }

    /// One request: the first byte chooses the provider (bit 0) and the client (bits
    /// 1-2); the rest is the file name (lossy UTF-8, as the packet parser makes it),
    /// with [`TOKEN_MARK`] replaced by the device's current boot token. Panics when the
    /// provider panics or serves anything but the root's file, a script or a
    /// personality.
    pub fn open(&self, data: &[u8]) {
        let Some((&choice, name)) = data.split_first() else {
            return;
        };
        let provider = &self.providers[usize::from(choice & 1)];
        let peer: SocketAddr = PEERS[usize::from((choice >> 1) & 3)]
            .parse()
            .expect("literal address");
        let mut name = String::from_utf8_lossy(name).into_owned();
        if name.contains(TOKEN_MARK) {
            let token = match self.sessions.current_boot(self.mac) {
                Ok(Some(boot)) => boot.token.to_string(),
                _ => String::new(),
            };
            name = name.replace(TOKEN_MARK, &token);
        }
        let Ok(source) = provider.open(&name, peer) else {
            return;
        };
        let bytes = read_all(source.as_ref());
        assert!(
            !bytes.windows(OUTSIDE.len()).any(|w| w == OUTSIDE),
            "{name:?} served the file outside the root"
        );
        assert!(
            bytes == INSIDE || bytes.starts_with(b"#!ipxe\n") || bytes.starts_with(b"hostname="),
            "{name:?} served something unexpected: {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

/// The whole of `source` (at most [`MAX_READ`] bytes), read in TFTP-sized blocks.
fn read_all(source: &dyn Source) -> Vec<u8> {
    let len = usize::try_from(source.len()).unwrap_or(usize::MAX);
    assert!(len <= MAX_READ, "a source of {len} bytes");
    let mut bytes = vec![0; len];
    let mut got = 0;
    while got < len {
        let end = (got + 512).min(len);
        match source.read_at(got as u64, &mut bytes[got..end]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    bytes.truncate(got);
    bytes
}
