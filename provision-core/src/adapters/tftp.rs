//! Per-device boot files over TFTP: `<prefix>/<mac>.ipxe`, the device's iPXE script
//! (a menu when several vDisks are assigned), and `<prefix>/<mac>.personality`, its
//! personality as `key=value` lines. Fetching the script marks a new boot of the device:
//! its standard-mode write caches are dropped.
//!
//! Other paths answer "file not found", so a [`tftp::Fallback`] can layer these files
//! over a directory of boot files (iPXE binaries, kernels, initrds).

use std::net::SocketAddr;
use std::sync::Arc;

use tftp::{ErrorCode, MemorySource, Provider, Source};

use crate::error::ErrorKind;
use crate::mac::Mac;
use crate::model::{Assignment, Device};
use crate::session::Sessions;
use crate::store::Store;

/// How scripts boot a vDisk: kernel and initrd paths and the kernel command line, each
/// with `{vdisk}` replaced by the vDisk's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootSettings {
    /// Folder of the generated files in TFTP paths (`provision`).
    pub prefix: String,
    /// The NBD service devices mount their root from, as `host:port`.
    pub nbd_server: String,
    /// Kernel path on the TFTP server.
    pub kernel: String,
    /// Initrd path on the TFTP server.
    pub initrd: String,
    /// Kernel command line; `nbdroot=` and `hostname=` are appended.
    pub cmdline: String,
    /// Seconds the menu waits before booting the default vDisk.
    pub menu_timeout_secs: u32,
}

impl BootSettings {
    /// Defaults for an NBD service at `nbd_server` (`host:port`).
    pub fn new(nbd_server: impl Into<String>) -> Self {
        Self {
            prefix: "provision".into(),
            nbd_server: nbd_server.into(),
            kernel: "boot/{vdisk}/vmlinuz".into(),
            initrd: "boot/{vdisk}/initrd.img".into(),
            cmdline: "root=/dev/nbd0p1 console=ttyS0,115200 panic=10".into(),
            menu_timeout_secs: 10,
        }
    }
}

/// The iPXE script of `device` with its `assignments` (the first is the default).
///
/// ```
/// use provision_core::adapters::tftp::{BootSettings, ipxe_script};
/// use provision_core::{Assignment, Device, DeviceType, Mac, Mode};
/// let device = Device { id: 1, mac: Mac([0x52, 0x54, 0, 0, 0, 1]), name: "seat-1".into(),
///                       collection: None, device_type: DeviceType::Production, enabled: true };
/// let lab = Assignment { vdisk: "lab".into(), mode: Mode::Standard, pinned_version: None };
/// let script = ipxe_script(&device, &[lab], &BootSettings::new("10.0.0.1:10809"));
/// assert!(script.starts_with("#!ipxe\n"));
/// assert!(script.contains("nbdroot=10.0.0.1:10809/52:54:00:00:00:01/lab"));
/// ```
pub fn ipxe_script(device: &Device, assignments: &[Assignment], boot: &BootSettings) -> String {
    let mut s = format!("#!ipxe\n# provision: {} ({})\n", device.name, device.mac);
    if assignments.is_empty() {
        s.push_str("echo provision: no vDisk is assigned to this device\nsleep 10\nexit 1\n");
        return s;
    }
    if assignments.len() > 1 {
        s.push_str(&format!(
            "menu provision: choose a vDisk for {}\n",
            device.name
        ));
        for (i, a) in assignments.iter().enumerate() {
            s.push_str(&format!("item vdisk{i} {} ({})\n", a.vdisk, a.mode));
        }
        s.push_str(&format!(
            "choose --default vdisk0 --timeout {} target && goto ${{target}} || goto vdisk0\n",
            u64::from(boot.menu_timeout_secs) * 1000
        ));
    }
    for (i, a) in assignments.iter().enumerate() {
        let fill = |template: &str| template.replace("{vdisk}", &a.vdisk);
        s.push_str(&format!(
            ":vdisk{i}\nkernel {} {} nbdroot={}/{}/{} hostname={}\ninitrd {}\nboot\n",
            fill(&boot.kernel),
            fill(&boot.cmdline),
            boot.nbd_server,
            device.mac,
            a.vdisk,
            device.name,
            fill(&boot.initrd),
        ));
    }
    s
}

/// The personality file: `hostname=<device name>` unless set, then every key.
pub fn personality_file(device: &Device, personality: &[(String, String)]) -> String {
    let mut s = String::new();
    if !personality.iter().any(|(k, _)| k == "hostname") {
        s.push_str(&format!("hostname={}\n", device.name));
    }
    for (k, v) in personality {
        s.push_str(&format!("{k}={v}\n"));
    }
    s
}

/// The TFTP provider of per-device files.
pub struct DeviceFiles {
    store: Arc<Store>,
    sessions: Option<Sessions>,
    boot: BootSettings,
}

impl DeviceFiles {
    /// Files from `store`; with `sessions`, a script fetch marks the device's new boot.
    pub fn new(store: Arc<Store>, sessions: Option<Sessions>, boot: BootSettings) -> Self {
        Self {
            store,
            sessions,
            boot,
        }
    }

    fn render(&self, mac: Mac, script: bool) -> Result<Vec<u8>, tftp::Error> {
        let refuse = |e: crate::Error| {
            tracing::warn!(mac = %mac, error = %e, "TFTP device file refused");
            match e.kind() {
                ErrorKind::NotFound | ErrorKind::Refused => {
                    tftp::Error::refused(ErrorCode::AccessViolation, e.to_string())
                }
                _ => tftp::Error::refused(ErrorCode::NotDefined, "store failure"),
            }
        };
        let device = self.store.device_for_boot(mac).map_err(refuse)?;
        let key = mac.to_string();
        if script {
            let assignments = self.store.assignments(&key).map_err(refuse)?;
            if let Some(sessions) = &self.sessions {
                sessions.new_boot(mac);
            }
            Ok(ipxe_script(&device, &assignments, &self.boot).into_bytes())
        } else {
            let personality = self.store.personality(&key).map_err(refuse)?;
            Ok(personality_file(&device, &personality).into_bytes())
        }
    }
}

impl Provider for DeviceFiles {
    fn open(&self, path: &str, peer: SocketAddr) -> Result<Arc<dyn Source>, tftp::Error> {
        let path = path.trim_start_matches(['/', '\\']).replace('\\', "/");
        let Some(name) = path
            .strip_prefix(self.boot.prefix.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
        else {
            return Err(tftp::Error::not_found());
        };
        let (mac, script) = match (
            name.strip_suffix(".ipxe"),
            name.strip_suffix(".personality"),
        ) {
            (Some(mac), _) => (mac, true),
            (_, Some(mac)) => (mac, false),
            _ => return Err(tftp::Error::not_found()),
        };
        let mac: Mac = mac.parse().map_err(|_| tftp::Error::not_found())?;
        tracing::debug!(%peer, mac = %mac, script, "device file requested");
        Ok(Arc::new(MemorySource::from(self.render(mac, script)?)))
    }
}
