//! `provisiond --demo`: a ready-to-try setup in a local folder: a config on loopback
//! and unprivileged ports, a store with a demo vDisk and a demo device.

use std::path::{Path, PathBuf};

use provision_core::{DeviceType, Mac, Mode, Store, create_vdisk};
use vhd::Disk;

/// The demo device's MAC (QEMU's default prefix).
pub const DEMO_MAC: &str = "52:54:00:12:34:56";
/// The demo vDisk's name.
pub const DEMO_VDISK: &str = "demo";
/// The demo device's name.
pub const DEMO_DEVICE: &str = "demo-vm";
const DEMO_SIZE: u64 = 64 << 20;
const BANNER: &[u8] = b"provision demo vDisk: version 0, streamed over NBD by provisiond.\n";

/// Creates the demo folder's config and store unless they exist; returns the config
/// file's path.
pub fn prepare(dir: &Path) -> Result<PathBuf, String> {
    let config = dir.join("provisiond.toml");
    if config.exists() {
        return Ok(config);
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let store = Store::open(&dir.join("store"))
        .map_err(|e| e.to_string())?
        .with_actor("demo");
    if store.vdisk(DEMO_VDISK).is_err() {
        create_vdisk(&store, DEMO_VDISK, DEMO_SIZE, "the demo vDisk").map_err(|e| e.to_string())?;
        let base = dir
            .join("store")
            .join(&store.versions(DEMO_VDISK).map_err(|e| e.to_string())?[0].file);
        let image = vhd::OpenOptions::new(false)
            .open(&base)
            .map_err(|e| e.to_string())?;
        image
            .write_at(&pad(BANNER), 0)
            .and_then(|()| image.flush())
            .map_err(|e| e.to_string())?;
        let mac: Mac = DEMO_MAC
            .parse()
            .map_err(|e: provision_core::Error| e.to_string())?;
        store
            .add_device(mac, DEMO_DEVICE, None, DeviceType::Production)
            .map_err(|e| e.to_string())?;
        store
            .assign(DEMO_DEVICE, DEMO_VDISK, Mode::Standard, None)
            .map_err(|e| e.to_string())?;
        store
            .set_personality(DEMO_DEVICE, "hostname", Some(DEMO_DEVICE))
            .map_err(|e| e.to_string())?;
    }
    if store
        .attach_secret(DEMO_DEVICE)
        .map_err(|e| e.to_string())?
        .is_none()
    {
        store
            .rotate_attach_secret(DEMO_DEVICE)
            .map_err(|e| e.to_string())?;
    }
    std::fs::write(&config, CONFIG)
        .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
    Ok(config)
}

fn pad(text: &[u8]) -> Vec<u8> {
    let mut sector = text.to_vec();
    sector.resize(text.len().div_ceil(512) * 512, 0);
    sector
}

const CONFIG: &str = r#"# provisiond demo configuration (see examples/provisiond.toml for every setting)
store = "store"

[nbd]
enabled = true
listen = "127.0.0.1:10809"

[api]
listen = "127.0.0.1:10810"

[sessions]
cache_ram = "64M"
cache_quota = "1G"
grace_seconds = 120
"#;

/// What to print once the demo server listens; the export name ends with the demo
/// device's attach secret from `store`.
pub fn instructions(
    nbd: std::net::SocketAddr,
    api: Option<std::net::SocketAddr>,
    dir: &Path,
    store: &Store,
) -> String {
    let secret = match store.attach_secret(DEMO_DEVICE) {
        Ok(Some(secret)) => secret.to_string(),
        _ => "<run: provision device attach-secret demo-vm>".to_owned(),
    };
    let url = format!("nbd://{nbd}/{DEMO_MAC}/{DEMO_VDISK}/{secret}");
    let manage = match api {
        Some(api) => format!(
            "Manage it with: provision --api http://{api} device list\n\
             \x20 (sessions: provision --api http://{api} sessions list; metrics: curl http://{api}/metrics)\n"
        ),
        None => format!(
            "Manage it with: provision --store {} device list\n",
            dir.join("store").display()
        ),
    };
    format!(
        "\nprovisiond demo is running (store: {store}).\n\
         The demo device {DEMO_MAC} has the vDisk `{DEMO_VDISK}` in standard mode:\n\
         its writes go to its own write cache; the vDisk itself never changes.\n\n\
         Try it from another terminal:\n\
         \x20 qemu-img info {url}\n\
         \x20 qemu-io -f raw -c 'read -v 0 128' {url}\n\
         \x20 nbdinfo {url}\n\
         \x20 qemu-system-x86_64 -m 512 -drive file={url},format=raw \\\n\
         \x20     -nic user,mac={DEMO_MAC}\n\n\
         {manage}\
         Stop with Ctrl-C.\n",
        store = dir.join("store").display()
    )
}
