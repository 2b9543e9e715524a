//! Devices booting through provisiond itself: a store with `n` devices in standard
//! mode on one vDisk, provisiond serving it, each device's boot started through the
//! admin API (its token goes into its export name, as its iPXE script would carry
//! it), and their storm. Used by `provision_boot_storm`, `provision_devices` and the
//! test that runs the latter at a small scale.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use provision_core::{DeviceType, Mac, Mode, Store, import_vdisk};
use testkit::ChildGuard;

use crate::storm::{Load, Outcome, reset_device, storm};

/// Device `n`'s MAC.
pub fn mac(n: u64) -> Mac {
    Mac([0x52, 0x54, 0, 0xee, (n >> 8) as u8, n as u8])
}

/// Device `n`'s name.
pub fn name(n: u64) -> String {
    format!("seat-{n}")
}

/// A store in `dir/store` holding `raw` as vDisk `os` and `devices` production
/// devices assigned to it in standard mode.
pub fn store_with_devices(dir: &Path, raw: &Path, devices: u64) -> PathBuf {
    let store_dir = dir.join("store");
    let store = Store::open(&store_dir).expect("a store");
    import_vdisk(&store, "os", raw, "", &mut |_, _| {}).expect("importing the working set");
    for n in 0..devices {
        store
            .add_device(mac(n), &name(n), None, DeviceType::Production)
            .expect("adding a device");
        store
            .assign(&name(n), "os", Mode::Standard, None)
            .expect("assigning the vDisk");
    }
    store_dir
}

/// A running provisiond over `dir/store`.
pub struct Provisiond {
    /// The process (stopped when dropped).
    pub process: ChildGuard,
    /// Its NBD address.
    pub nbd: SocketAddr,
    /// Its admin API address (no token).
    pub api: SocketAddr,
}

/// Starts `binary` (provisiond) over `dir/store` with write caches in `cache` (`ram`
/// or `disk`), NBD and the API on free loopback ports; logs errors only, so that its
/// unread stderr pipe never fills.
pub fn start_provisiond(binary: &Path, dir: &Path, cache: &str) -> Provisiond {
    let nbd: SocketAddr = format!("127.0.0.1:{}", testkit::free_tcp_port())
        .parse()
        .unwrap();
    let api: SocketAddr = format!("127.0.0.1:{}", testkit::free_tcp_port())
        .parse()
        .unwrap();
    let config = dir.join("provisiond.toml");
    std::fs::write(
        &config,
        format!(
            "store = \"store\"\n[nbd]\nlisten = \"{nbd}\"\n[api]\nlisten = \"{api}\"\n\
             [sessions]\nwrite_cache = \"{cache}\"\n"
        ),
    )
    .expect("writing provisiond.toml");
    let process = ChildGuard::spawn(
        Command::new(binary)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "error"),
    );
    testkit::wait_for_tcp(nbd, Duration::from_secs(60));
    testkit::wait_for_tcp(api, Duration::from_secs(60));
    Provisiond { process, nbd, api }
}

impl Provisiond {
    /// Starts the boot of devices `0..devices` (what each one's DHCP exchange does)
    /// and returns their export names, each with its boot's token.
    pub fn boot(&self, devices: u64) -> Vec<String> {
        (0..devices)
            .map(|n| {
                let token = reset_device(self.api, &name(n)).expect("a device's boot");
                format!("{}/os/{token}", mac(n))
            })
            .collect()
    }

    /// Boots `devices` devices and runs their storm on `runtime`.
    pub fn storm(&self, runtime: &tokio::runtime::Runtime, devices: u64, load: Load) -> Outcome {
        let exports = self.boot(devices);
        runtime.block_on(storm(self.nbd, exports, load, self.process.id()))
    }
}

/// Every connection is a descriptor: raises this process's soft limit of open files
/// to the hard one (as provisiond does for itself), or fails saying what is missing.
pub fn raise_open_file_limit(need: u64) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
    let have = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    assert!(
        have >= need,
        "{need} open files are needed and the hard limit allows {have}: raise `ulimit -Hn`"
    );
}
