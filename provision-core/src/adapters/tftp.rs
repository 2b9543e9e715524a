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

/// The name the scripts give the initrd in iPXE, and name on the kernel command line
/// (`initrd=initrd.img`): iPXE on UEFI hands its images to Linux's EFI stub as files
/// of a virtual file system, and the stub loads only the initrd the command line names
/// (iPXE before 2021, Debian 12's included, offers no other way). A kernel booted by
/// BIOS iPXE ignores the argument.
pub const INITRD_NAME: &str = "initrd.img";

/// The iPXE script of `device` with its `assignments` (the first is the default) and
/// its `personality`: the kernel's `hostname=` is the personality's `hostname` when set
/// (and a valid host name), else the device's name. The initrd is named
/// [`INITRD_NAME`] on the kernel command line, for UEFI.
///
/// ```
/// use provision_core::adapters::tftp::{BootSettings, ipxe_script};
/// use provision_core::{Assignment, Device, DeviceType, Mac, Mode};
/// let device = Device { id: 1, mac: Mac([0x52, 0x54, 0, 0, 0, 1]), name: "seat-1".into(),
///                       collection: None, device_type: DeviceType::Production, enabled: true };
/// let lab = Assignment { vdisk: "lab".into(), mode: Mode::Standard, pinned_version: None };
/// let boot = BootSettings::new("10.0.0.1:10809");
/// let script = ipxe_script(&device, &[lab.clone()], &[], &boot);
/// assert!(script.starts_with("#!ipxe\n"));
/// assert!(script.contains("nbdroot=10.0.0.1:10809/52:54:00:00:00:01/lab hostname=seat-1 "));
/// assert!(script.contains(" initrd=initrd.img\ninitrd --name initrd.img /boot/lab/initrd.img\n"));
/// let personality = [("hostname".to_owned(), "diskless-1".to_owned())];
/// let script = ipxe_script(&device, &[lab], &personality, &boot);
/// assert!(script.contains(" hostname=diskless-1 "));
/// ```
pub fn ipxe_script(
    device: &Device,
    assignments: &[Assignment],
    personality: &[(String, String)],
    boot: &BootSettings,
) -> String {
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
    let hostname = kernel_hostname(device, personality);
    for (i, a) in assignments.iter().enumerate() {
        let fill = |template: &str| template.replace("{vdisk}", &a.vdisk);
        s.push_str(&format!(
            ":vdisk{i}\nkernel {} {} nbdroot={}/{}/{} hostname={} initrd={INITRD_NAME}\n\
             initrd --name {INITRD_NAME} {}\nboot\n",
            from_root(&fill(&boot.kernel)),
            fill(&boot.cmdline),
            boot.nbd_server,
            device.mac,
            a.vdisk,
            hostname,
            from_root(&fill(&boot.initrd)),
        ));
    }
    s
}

/// A TFTP path as the script must write it: iPXE resolves a relative path against the
/// script's own location (`provision/`), so paths on the TFTP server start at its root.
/// URIs (`http://...`, `tftp://...`) stay as they are.
fn from_root(path: &str) -> String {
    if path.starts_with('/') || path.contains("://") {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

/// The `hostname=` of the kernel command line: the personality's `hostname` if it is a
/// valid host name (letters, digits, `-` and `.`, at most 253 bytes: nothing that could
/// end the kernel argument or be expanded by iPXE), else the device's name.
fn kernel_hostname<'a>(device: &'a Device, personality: &'a [(String, String)]) -> &'a str {
    let Some((_, wanted)) = personality.iter().find(|(k, _)| k == "hostname") else {
        return &device.name;
    };
    let valid = !wanted.is_empty()
        && wanted.len() <= 253
        && wanted
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if valid {
        wanted
    } else {
        tracing::warn!(
            device = %device.name,
            hostname = %wanted,
            "personality hostname is not a valid host name; the iPXE script uses the device name"
        );
        &device.name
    }
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
        let personality = self.store.personality(&key).map_err(refuse)?;
        if script {
            let assignments = self.store.assignments(&key).map_err(refuse)?;
            if let Some(sessions) = &self.sessions {
                sessions.new_boot(mac);
            }
            Ok(ipxe_script(&device, &assignments, &personality, &self.boot).into_bytes())
        } else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeviceType, Mode};

    fn device() -> Device {
        Device {
            id: 1,
            mac: Mac([0x52, 0x54, 0, 0, 0, 1]),
            name: "seat-1".into(),
            collection: None,
            device_type: DeviceType::Production,
            enabled: true,
        }
    }

    fn script(hostname: Option<&str>) -> String {
        let lab = Assignment {
            vdisk: "lab".into(),
            mode: Mode::Standard,
            pinned_version: None,
        };
        let mut personality = vec![("role".to_owned(), "kiosk".to_owned())];
        if let Some(h) = hostname {
            personality.push(("hostname".to_owned(), h.to_owned()));
        }
        ipxe_script(
            &device(),
            &[lab],
            &personality,
            &BootSettings::new("10.0.0.1:10809"),
        )
    }

    #[test]
    fn the_kernel_hostname_comes_from_the_personality_when_usable() {
        assert!(script(None).contains("/lab hostname=seat-1 "));
        assert!(script(Some("diskless-1.lab")).contains("/lab hostname=diskless-1.lab "));
        // Anything that would split the kernel argument or reach iPXE's expansion is
        // not used.
        for bad in ["", "two words", "x${net0/mac}", "a\tb", &"h".repeat(254)] {
            let text = script(Some(bad));
            assert!(text.contains("/lab hostname=seat-1 "), "{bad:?}: {text}");
        }
    }
}
