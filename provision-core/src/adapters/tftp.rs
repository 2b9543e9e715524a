//! Per-device boot files over TFTP: `<prefix>/<mac>.ipxe`, the device's iPXE script
//! (a menu when several vDisks are assigned) carrying its current boot token, and
//! `<prefix>/<mac>/<token>.personality`, its personality as `key=value` lines, for the
//! holder of that boot's token only; and `<prefix>/<mac>/<token>/<vdisk>/vmlinuz` and
//! `.../initrd.img`, the kernel and initrd of the version that boot opens of the vDisk,
//! when its image carries them ([`crate::boot_files`]).
//!
//! The script is served only to the device's own address: the one its DHCP exchange
//! recorded for the boot, and never an address the server's neighbour table says
//! belongs to another MAC. Who starts a boot is [`BootStart`]'s choice: with
//! provisiond's DHCP service on, the DISCOVER does and a script fetch never resets a
//! device; without it, the script fetch is the first thing provisiond sees of a boot
//! and starts it.
//!
//! Other paths answer "file not found", so a [`tftp::Fallback`] can layer these files
//! over a directory of boot files (iPXE binaries, kernels, initrds).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use tftp::{ErrorCode, MemorySource, Provider, Source};

use crate::boot::{Boot, BootCause, Token};
use crate::boot_files;
use crate::error::ErrorKind;
use crate::layout;
use crate::mac::Mac;
use crate::model::{Assignment, Device};
use crate::resolve::Refusal;
use crate::resolve::{self, DiskPlan};
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
    /// Where scripts fetch kernel and initrd from when not over TFTP: an HTTP service's
    /// base URL (`http://10.0.0.1:8080`), under which the boot files have their TFTP
    /// paths. Paths that are URIs already are used as they are.
    pub file_server: Option<String>,
    /// The iSCSI service as devices reach it, `host` or `host:port` (empty: none).
    pub iscsi_server: String,
    /// How each vDisk boots, by name; the others boot [`BootMethod::LinuxNbd`].
    pub methods: BTreeMap<String, BootMethod>,
}

/// How a device's script boots a vDisk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BootMethod {
    /// The vDisk's kernel and initrd over TFTP, the root over NBD (`nbdroot=`).
    #[default]
    LinuxNbd,
    /// iPXE `sanboot`s the vDisk over iSCSI: the disk's own boot loader starts, and
    /// the OS finds the same LUN in iPXE's iBFT.
    Sanboot,
}

impl BootMethod {
    /// `linux-nbd` or `sanboot`.
    pub fn as_str(self) -> &'static str {
        match self {
            BootMethod::LinuxNbd => "linux-nbd",
            BootMethod::Sanboot => "sanboot",
        }
    }
}

impl FromStr for BootMethod {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "linux-nbd" => Ok(BootMethod::LinuxNbd),
            "sanboot" => Ok(BootMethod::Sanboot),
            _ => Err(format!(
                "`{text}` is not a boot method (`linux-nbd` or `sanboot`)"
            )),
        }
    }
}

impl BootSettings {
    /// How `vdisk` boots: the one place that decides it.
    pub fn method(&self, vdisk: &str) -> BootMethod {
        self.methods.get(vdisk).copied().unwrap_or_default()
    }
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
            iscsi_server: String::new(),
            methods: BTreeMap::new(),
            file_server: None,
        }
    }
}

/// The name the scripts give the initrd in iPXE, and name on the kernel command line
/// (`initrd=initrd.img`): iPXE on UEFI hands its images to Linux's EFI stub as files
/// of a virtual file system, and the stub loads only the initrd the command line names
/// (iPXE before 2021, Debian 12's included, offers no other way). A kernel booted by
/// BIOS iPXE ignores the argument.
pub const INITRD_NAME: &str = "initrd.img";

/// The iPXE script of `device` for the boot with `token`, with its `assignments` (the
/// first is the default) and its `personality`: each vDisk's kernel command line names
/// the NBD export `<mac>/<vdisk>/<token>`; the kernel's `hostname=` is the personality's `hostname` when set
/// (and a valid host name), else the device's name. The initrd is named
/// [`INITRD_NAME`] on the kernel command line, for UEFI.
///
/// ```
/// use provision_core::adapters::tftp::{BootSettings, ipxe_script};
/// use provision_core::{Assignment, Device, DeviceType, Mac, Mode, Token};
/// let device = Device { id: 1, mac: Mac([0x52, 0x54, 0, 0, 0, 1]), name: "seat-1".into(),
///                       collection: None, device_type: DeviceType::Production, enabled: true };
/// let lab = Assignment { vdisk: "lab".into(), mode: Mode::Standard, pinned_version: None };
/// let boot = BootSettings::new("10.0.0.1:10809");
/// let token: Token = "00112233445566778899aabbccddeeff".parse().unwrap();
/// let script = ipxe_script(&device, &[lab.clone()], &[], &boot, &token);
/// assert!(script.starts_with("#!ipxe\n"));
/// assert!(script.contains(
///     "nbdroot=10.0.0.1:10809/52:54:00:00:00:01/lab/00112233445566778899aabbccddeeff hostname=seat-1 "
/// ));
/// assert!(script.contains(" initrd=initrd.img\ninitrd --name initrd.img /boot/lab/initrd.img\n"));
/// // With an HTTP service for boot files, kernel and initrd come from it.
/// let over_http = BootSettings { file_server: Some("http://10.0.0.1:8080".into()), ..boot.clone() };
/// let script = ipxe_script(&device, &[lab.clone()], &[], &over_http, &token);
/// assert!(script.contains("\nkernel http://10.0.0.1:8080/boot/lab/vmlinuz "));
/// let personality = [("hostname".to_owned(), "diskless-1".to_owned())];
/// let script = ipxe_script(&device, &[lab], &personality, &boot, &token);
/// assert!(script.contains(" hostname=diskless-1 "));
/// ```
pub fn ipxe_script(
    device: &Device,
    assignments: &[Assignment],
    personality: &[(String, String)],
    boot: &BootSettings,
    token: &Token,
) -> String {
    ipxe_script_with(device, assignments, &[], personality, boot, token)
}

/// The kernel and initrd paths a script names for one assigned vDisk, instead of the
/// configured ones: those of the version it boots ([`version_file_path`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionFiles {
    /// The kernel's path.
    pub kernel: String,
    /// The initrd's path.
    pub initrd: String,
}

/// [`ipxe_script`], where `files[i]`, when present, names the kernel and initrd of
/// `assignments[i]` (the configured paths otherwise).
///
/// ```
/// use provision_core::adapters::tftp::{BootSettings, VersionFiles, ipxe_script_with};
/// use provision_core::{Assignment, Device, DeviceType, Mac, Mode, Token};
/// let device = Device { id: 1, mac: Mac([0x52, 0x54, 0, 0, 0, 1]), name: "seat-1".into(),
///                       collection: None, device_type: DeviceType::Test, enabled: true };
/// let lab = Assignment { vdisk: "lab".into(), mode: Mode::Standard, pinned_version: None };
/// let files = VersionFiles { kernel: "provision/x/vmlinuz".into(), initrd: "provision/x/initrd.img".into() };
/// let boot = BootSettings::new("10.0.0.1:10809");
/// let script = ipxe_script_with(&device, &[lab], &[Some(files)], &[], &boot, &Token::random());
/// assert!(script.contains("\nkernel /provision/x/vmlinuz "));
/// assert!(script.contains("\ninitrd --name initrd.img /provision/x/initrd.img\n"));
/// ```
pub fn ipxe_script_with(
    device: &Device,
    assignments: &[Assignment],
    files: &[Option<VersionFiles>],
    personality: &[(String, String)],
    boot: &BootSettings,
    token: &Token,
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
        if boot.method(&a.vdisk) == BootMethod::Sanboot {
            s.push_str(&format!(
                ":vdisk{i}\n{}",
                sanboot(device, &a.vdisk, boot, token)
            ));
            continue;
        }
        let fill = |template: &str| template.replace("{vdisk}", &a.vdisk);
        let (kernel, initrd) = match files.get(i).and_then(Option::as_ref) {
            Some(f) => (f.kernel.clone(), f.initrd.clone()),
            None => (fill(&boot.kernel), fill(&boot.initrd)),
        };
        s.push_str(&format!(
            ":vdisk{i}\nkernel {} {} nbdroot={}/{}/{}/{token} hostname={} initrd={INITRD_NAME}\n\
             initrd --name {INITRD_NAME} {}\nboot\n",
            file_path(boot, &kernel),
            fill(&boot.cmdline),
            boot.nbd_server,
            device.mac,
            a.vdisk,
            hostname,
            file_path(boot, &initrd),
        ));
    }
    s
}

/// The script lines that `sanboot` `vdisk` over iSCSI: the initiator name carries the
/// MAC, the CHAP secret is the boot's (see [`super::iscsi`]); iPXE puts all three in
/// the iBFT for the OS. `iscsi:<server>::<port>::<target>` (RFC 4173, LUN 0).
fn sanboot(device: &Device, vdisk: &str, boot: &BootSettings, token: &Token) -> String {
    if boot.iscsi_server.is_empty() {
        return format!(
            "echo provision: `{vdisk}` boots with sanboot, but the server has no iSCSI service\n             sleep 10\nexit 1\n"
        );
    }
    let (host, port) = match boot.iscsi_server.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && p.parse::<u16>().is_ok() => (h, p),
        _ => (boot.iscsi_server.as_str(), ""),
    };
    format!(
        "set initiator-iqn {}\nset username {}\nset password {}\n\
         sanboot iscsi:{host}::{port}::{}\n",
        super::iscsi::initiator_name(device.mac),
        device.mac.to_string().replace(':', "-"),
        super::iscsi::chap_secret(token),
        super::iscsi::target_name(vdisk),
    )
}

/// A boot file's path as the script must write it. URIs (`http://...`, `tftp://...`)
/// stay as they are; with a [`BootSettings::file_server`], a path becomes a URL on it;
/// else it is a TFTP path from the server's root (iPXE resolves a relative path
/// against the script's own location, `provision/`).
fn file_path(boot: &BootSettings, path: &str) -> String {
    if path.contains("://") {
        return path.to_owned();
    }
    let rooted = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    match &boot.file_server {
        Some(base) => format!("{}{rooted}", base.trim_end_matches('/')),
        None => rooted,
    }
}

/// The path under which the boot with `token` of the device with `mac` fetches the
/// file `name` ([`layout::BOOT_KERNEL`] or [`layout::BOOT_INITRD`]) of the version it
/// boots of `vdisk`: `<prefix>/<mac>/<token>/<vdisk>/<name>`, the MAC written with
/// dashes (`52-54-00-00-00-01`): iPXE takes a path with a colon for a URI scheme.
pub fn version_file_path(prefix: &str, mac: Mac, token: &Token, vdisk: &str, name: &str) -> String {
    let mac = mac.to_string().replace(':', "-");
    format!("{prefix}/{mac}/{token}/{vdisk}/{name}")
}

/// A file of the store served as it is (positional reads of one open file).
#[derive(Debug)]
struct StoreFile {
    file: std::fs::File,
    len: u64,
}

impl Source for StoreFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let room = self.len.saturating_sub(offset).min(buf.len() as u64) as usize;
        if room == 0 {
            return Ok(0);
        }
        std::os::unix::fs::FileExt::read_at(&self.file, &mut buf[..room], offset)
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

/// Who starts a device's boot, as far as the TFTP adapter is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootStart {
    /// provisiond's DHCP service (its DISCOVER): a script fetch never starts one, unless
    /// the device has no boot at all (provisiond restarted in between).
    Dhcp,
    /// The script fetch: the site's DHCP server sends devices to our TFTP service.
    Script,
}

/// The TFTP provider of per-device files.
pub struct DeviceFiles {
    store: Arc<Store>,
    sessions: Sessions,
    boot: BootSettings,
    start: BootStart,
}

/// The MAC the server's neighbour table (`/proc/net/arp`) holds for `ip`, when it
/// holds a complete entry.
fn neighbour_mac(ip: IpAddr) -> Option<Mac> {
    let IpAddr::V4(ip) = ip else { return None };
    let table = std::fs::read_to_string("/proc/net/arp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // IP address, HW type, flags, HW address, mask, device; flags 0x0: incomplete.
        match fields.as_slice() {
            [addr, _, flags, hw, ..] if addr.parse() == Ok(ip) && *flags != "0x0" => {
                hw.parse().ok()
            }
            _ => None,
        }
    })
}

fn refuse(mac: Mac, e: &crate::Error) -> tftp::Error {
    tracing::warn!(mac = %mac, error = %e, "TFTP device file refused");
    match e.kind() {
        ErrorKind::NotFound | ErrorKind::Refused => {
            tftp::Error::refused(ErrorCode::AccessViolation, e.to_string())
        }
        _ => tftp::Error::refused(ErrorCode::NotDefined, "store failure"),
    }
}

impl DeviceFiles {
    /// Files from `store`, with boots of `sessions` started as `start` says.
    pub fn new(
        store: Arc<Store>,
        sessions: Sessions,
        boot: BootSettings,
        start: BootStart,
    ) -> Self {
        Self {
            store,
            sessions,
            boot,
            start,
        }
    }

    /// The boot whose script `peer` may have: refused when the neighbour table or the
    /// boot exchange puts the device at another address.
    fn boot_for_script(&self, mac: Mac, peer: IpAddr) -> crate::Result<Boot> {
        if let Some(other) = neighbour_mac(peer).filter(|m| *m != mac) {
            return Err(crate::Error::new(
                ErrorKind::Refused,
                format!("{peer} asked for the script of {mac}, but that address is {other}'s"),
            ));
        }
        let current = match self.start {
            BootStart::Script => None,
            BootStart::Dhcp => self.sessions.current_boot(mac)?,
        };
        let Some(boot) = current else {
            return Ok(self
                .sessions
                .start_boot(mac, BootCause::Script, Some(peer))?
                .boot);
        };
        match boot.address {
            Some(address) if address != peer => Err(crate::Error::new(
                ErrorKind::Refused,
                format!(
                    "{peer} asked for the script of {mac}, whose boot {} is at {address}",
                    boot.number
                ),
            )),
            Some(_) => Ok(boot),
            None => {
                self.sessions.record_boot_address(mac, boot.number, peer)?;
                Ok(Boot {
                    address: Some(peer),
                    ..boot
                })
            }
        }
    }

    /// The script of the device with `mac` for `peer`. The fetch is a protocol event
    /// with effects, each an explicit call: an unknown device may be added
    /// ([`Store::device_or_auto_add`]), and the fetch may start the device's boot
    /// ([`Self::boot_for_script`]). What the script boots is [`resolve`](crate::resolve)'s decision.
    fn script(&self, mac: Mac, peer: IpAddr) -> crate::Result<Vec<u8>> {
        let device = self.store.device_or_auto_add(mac)?;
        let boot = self.boot_for_script(mac, peer)?;
        let (assignments, files) = match self.store.boot_facts(mac)?.plan() {
            Ok(plan) => {
                let files = plan
                    .entries
                    .iter()
                    .map(|e| self.version_files(mac, &boot.token, e.disk.as_ref().ok()))
                    .collect();
                (plan.assignments(), files)
            }
            // The script tells the device so.
            Err(Refusal::Unassigned { .. }) => (Vec::new(), Vec::new()),
            Err(refusal) => return Err(refusal.into()),
        };
        let personality = self.store.personality(&mac.to_string())?;
        let script = ipxe_script_with(
            &device,
            &assignments,
            &files,
            &personality,
            &self.boot,
            &boot.token,
        );
        Ok(script.into_bytes())
    }

    /// The store's copy of the kernel and initrd of the version `disk` opens, made if
    /// needed; `None` when that version carries none (or the copy failed: logged).
    fn copied_boot_files(&self, disk: &DiskPlan) -> Option<boot_files::BootFiles> {
        let dir = self.store.dir()?;
        match boot_files::extract_boot_files(dir, &disk.vdisk, disk.version, &disk.file) {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(vdisk = %disk.vdisk, version = disk.version, error = %e,
                    "kernel and initrd of the version could not be copied: configured paths boot");
                None
            }
        }
    }

    /// The script's paths of the kernel and initrd of the version `disk` opens, when it
    /// carries them.
    fn version_files(
        &self,
        mac: Mac,
        token: &Token,
        disk: Option<&DiskPlan>,
    ) -> Option<VersionFiles> {
        let disk = disk?;
        self.copied_boot_files(disk)?;
        let path = |name| version_file_path(&self.boot.prefix, mac, token, &disk.vdisk, name);
        Some(VersionFiles {
            kernel: path(layout::BOOT_KERNEL),
            initrd: path(layout::BOOT_INITRD),
        })
    }

    /// Refused unless `token` is the current boot's of the device with `mac`.
    fn check_token(&self, mac: Mac, token: &str, what: &str) -> crate::Result<()> {
        let current = self.sessions.current_boot(mac)?;
        let valid = token.parse::<Token>().ok();
        if current.is_none_or(|boot| Some(boot.token) != valid) {
            return Err(crate::Error::new(
                ErrorKind::Refused,
                format!("{what} of {mac}: not its current boot's token"),
            ));
        }
        Ok(())
    }

    /// The kernel or initrd (`name`) of the version the boot with `token` of `mac`
    /// opens of `vdisk`: resolved as its session resolves it.
    fn version_file(
        &self,
        mac: Mac,
        token: &str,
        vdisk: &str,
        name: &str,
    ) -> crate::Result<Arc<dyn Source>> {
        self.check_token(mac, token, name)?;
        let facts = self.store.boot_facts(mac)?;
        let device = resolve::admit(mac, facts.device.as_ref())?;
        let disk = facts.disk(device, vdisk)?;
        let files = self.copied_boot_files(&disk).ok_or_else(|| {
            crate::Error::new(
                ErrorKind::NotFound,
                format!(
                    "version {} of {vdisk} carries no kernel and initrd",
                    disk.version
                ),
            )
        })?;
        let path = if name == layout::BOOT_KERNEL {
            files.kernel
        } else {
            files.initrd
        };
        let file = std::fs::File::open(&path).map_err(|source| crate::Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        let len = file
            .metadata()
            .map_err(|source| crate::Error::Io {
                path: path.display().to_string(),
                source,
            })?
            .len();
        Ok(Arc::new(StoreFile { file, len }))
    }

    fn personality(&self, mac: Mac, token: &str) -> crate::Result<Vec<u8>> {
        let device = self.store.device(&mac.to_string())?;
        self.check_token(mac, token, "personality")?;
        let personality = self.store.personality(&mac.to_string())?;
        Ok(personality_file(&device, &personality).into_bytes())
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
        let bytes = if let Some(mac) = name.strip_suffix(".ipxe") {
            let mac: Mac = mac.parse().map_err(|_| tftp::Error::not_found())?;
            tracing::debug!(%peer, mac = %mac, "device script requested");
            self.script(mac, peer.ip()).map_err(|e| refuse(mac, &e))?
        } else if let Some((mac, token)) = name
            .strip_suffix(".personality")
            .and_then(|rest| rest.split_once('/'))
        {
            let mac: Mac = mac.parse().map_err(|_| tftp::Error::not_found())?;
            self.personality(mac, token).map_err(|e| refuse(mac, &e))?
        } else if let Some([mac, token, vdisk, file]) = name
            .split('/')
            .collect::<Vec<_>>()
            .as_slice()
            .try_into()
            .ok()
            .filter(|[.., f]: &[&str; 4]| [layout::BOOT_KERNEL, layout::BOOT_INITRD].contains(f))
        {
            let mac: Mac = mac.parse().map_err(|_| tftp::Error::not_found())?;
            return self
                .version_file(mac, token, vdisk, file)
                .map_err(|e| refuse(mac, &e));
        } else {
            return Err(tftp::Error::not_found());
        };
        Ok(Arc::new(MemorySource::from(bytes)))
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
            &Token::random(),
        )
    }

    #[test]
    fn the_kernel_hostname_comes_from_the_personality_when_usable() {
        assert!(script(None).contains(" hostname=seat-1 "));
        assert!(script(Some("diskless-1.lab")).contains(" hostname=diskless-1.lab "));
        // Anything that would split the kernel argument or reach iPXE's expansion is
        // not used.
        for bad in ["", "two words", "x${net0/mac}", "a\tb", &"h".repeat(254)] {
            let text = script(Some(bad));
            assert!(text.contains(" hostname=seat-1 "), "{bad:?}: {text}");
        }
    }
}

#[cfg(test)]
mod sanboot_tests {
    use super::*;
    use crate::{DeviceType, Mode};

    #[test]
    fn a_sanboot_vdisk_is_attached_over_iscsi_with_the_boot_secret() {
        let device = Device {
            id: 1,
            mac: Mac([0x52, 0x54, 0, 0, 0, 1]),
            name: "seat-1".into(),
            collection: None,
            device_type: DeviceType::Production,
            enabled: true,
        };
        let assign = |vdisk: &str| Assignment {
            vdisk: vdisk.into(),
            mode: Mode::Standard,
            pinned_version: None,
        };
        let mut boot = BootSettings::new("10.0.0.1:10809");
        boot.methods.insert("win".into(), BootMethod::Sanboot);
        let token = Token::random();
        let assignments = [assign("win"), assign("lab")];
        // Without an iSCSI service the script says so instead of trying.
        let text = ipxe_script(&device, &assignments, &[], &boot, &token);
        assert!(text.contains("has no iSCSI service"), "{text}");
        boot.iscsi_server = "10.0.0.1".into();
        let text = ipxe_script(&device, &assignments, &[], &boot, &token);
        let secret = super::super::iscsi::chap_secret(&token);
        assert!(
            text.contains(&format!(
                ":vdisk0\nset initiator-iqn iqn.2026-01.org.provision.device:52-54-00-00-00-01\n\
                 set username 52-54-00-00-00-01\nset password {secret}\n\
                 sanboot iscsi:10.0.0.1::::iqn.2026-01.org.provision:win\n:vdisk1\nkernel "
            )),
            "{text}"
        );
        boot.iscsi_server = "10.0.0.1:3261".into();
        let text = ipxe_script(&device, &assignments, &[], &boot, &token);
        assert!(text.contains("sanboot iscsi:10.0.0.1::3261::iqn.2026-01.org.provision:win\n"));
        assert_eq!("sanboot".parse(), Ok(BootMethod::Sanboot));
        assert!("iscsi".parse::<BootMethod>().is_err());
    }
}
