//! The boot policy (what an operator configures) and the pure decision of what a
//! given client should boot: a file per architecture, a PXE menu, an iPXE script or an
//! HTTP-boot URI, or nothing at all.
//!
//! ```text
//!   not PXEClient/HTTPClient ─────────────▶ silent (NotBootClient)
//!   MAC not allowed ──────────────────────▶ silent (UnknownMac)
//!   iPXE (77 "iPXE" or 175) + script set ─▶ IpxeScript   (never chainload iPXE again)
//!   HTTP client ──────────────────────────▶ HttpUri      (file for its arch must be a URI)
//!   menu with entries for its arch ───────▶ Menu         (option 43, items 0x8000+n)
//!   boot file for its arch (or default) ──▶ File
//!   otherwise ────────────────────────────▶ silent (NoBootFile)
//! ```
//!
//! The policy may be fixed (a [`Policy`]) or come per client from the embedder through
//! [`BootPolicy`] (a device database: per-device scripts, unknown devices refused).

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::options::ClientArch;
use crate::request::ClientInfo;

/// First PXE boot server type used for menu items (vendor range, as dnsmasq does).
pub const MENU_TYPE_BASE: u16 = 0x8000;

/// A boot file for one architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFile {
    /// The architecture it is for.
    pub arch: ClientArch,
    /// A TFTP path, or an `http(s)://` URI for HTTP-boot architectures.
    pub file: String,
}

/// One PXE menu entry (rendered by the PXE ROM itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MenuEntry {
    /// The text shown.
    pub text: String,
    /// The boot file; `None` means "boot from local disk" (type 0).
    pub boot_file: Option<String>,
    /// Architectures it is shown to; empty means all.
    pub arches: Vec<ClientArch>,
}

/// A PXE menu (option 43 sub-options 9 and 10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Menu {
    /// Prompt text.
    pub prompt: String,
    /// 0: boot the first entry at once; 255: show the menu, no timeout; else seconds.
    pub timeout: u8,
    /// The entries.
    pub entries: Vec<MenuEntry>,
}

/// What the operator configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Our address on the boot interface (option 54).
    pub server_ip: Ipv4Addr,
    /// The TFTP server (`siaddr`); `None` means `server_ip`.
    pub tftp_server: Option<Ipv4Addr>,
    /// Boot files per architecture.
    pub boot_files: Vec<BootFile>,
    /// Boot file for architectures without their own entry.
    pub default_boot_file: Option<String>,
    /// What iPXE clients get instead of a chainload (a URL or a TFTP path).
    pub ipxe_script: Option<String>,
    /// An optional PXE menu.
    pub menu: Option<Menu>,
    /// When set, only these MACs are answered.
    pub allowed_macs: Option<BTreeSet<[u8; 6]>>,
}

impl Policy {
    /// A policy answering nobody until boot files are added.
    pub fn new(server_ip: Ipv4Addr) -> Policy {
        Policy {
            server_ip,
            tftp_server: None,
            boot_files: Vec::new(),
            default_boot_file: None,
            ipxe_script: None,
            menu: None,
            allowed_macs: None,
        }
    }

    /// Adds (or replaces) the boot file of `arch`.
    pub fn with_boot_file(mut self, arch: ClientArch, file: impl Into<String>) -> Policy {
        self.boot_files.retain(|b| b.arch != arch);
        self.boot_files.push(BootFile {
            arch,
            file: file.into(),
        });
        self
    }

    /// The `siaddr` to hand out.
    pub fn next_server(&self) -> Ipv4Addr {
        self.tftp_server.unwrap_or(self.server_ip)
    }

    /// The boot file of `arch` (or the default).
    pub fn boot_file_for(&self, arch: Option<ClientArch>) -> Option<&str> {
        arch.and_then(|a| self.boot_files.iter().find(|b| b.arch == a))
            .map(|b| b.file.as_str())
            .or(self.default_boot_file.as_deref())
    }

    /// The menu entries shown to `arch`, with their boot server types.
    pub fn menu_items(&self, arch: Option<ClientArch>) -> Vec<(u16, &MenuEntry)> {
        let Some(menu) = &self.menu else {
            return Vec::new();
        };
        menu.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.arches.is_empty() || arch.is_some_and(|a| e.arches.contains(&a)))
            .map(|(i, e)| (item_type(i, e), e))
            .collect()
    }
}

/// Where the decisions get the policy of one client: a fixed [`Policy`] (which
/// implements this trait by answering every client alike), or the embedder's lookup
/// (a device database) that answers per client, or stays silent with a reason.
///
/// The ProxyDHCP functions ([`crate::proxy::offer`], [`crate::proxy::boot_ack`]) ask
/// only about PXE or HTTP boot clients (option 60) sending a message type their port
/// answers, so the site's ordinary DHCP traffic never reaches the lookup. The answer then
/// goes through the same [`plan`] as a fixed policy, chainload-loop guard included.
///
/// Its one per-client method is named for what it may do: it is the embedder's event
/// hook for a boot client's message that this server answers (called exactly once per
/// such message), so an implementation may record it (start the device's boot, add an
/// unknown device) before it answers; the `pxe` functions themselves write nothing.
///
/// The driver calls it from its socket tasks and holds none of its own locks meanwhile:
/// a quick blocking lookup (an SQLite read) is fine, waiting on the network is not.
///
/// ```
/// use std::borrow::Cow;
/// use std::net::Ipv4Addr;
/// use pxe::{BootPolicy, ClientInfo, Policy, Silence};
///
/// /// Answers one MAC only, with its own script.
/// struct OneDevice(Policy, [u8; 6]);
///
/// impl BootPolicy for OneDevice {
///     fn server_ip(&self) -> Ipv4Addr {
///         self.0.server_ip
///     }
///     fn handle_boot_client(&self, client: &ClientInfo) -> Result<Cow<'_, Policy>, Silence> {
///         if client.mac != Some(self.1) {
///             return Err(Silence::Refused("unknown device"));
///         }
///         let mut p = self.0.clone();
///         p.ipxe_script = Some(format!("scripts/{}.ipxe", client.mac_text()));
///         Ok(Cow::Owned(p))
///     }
/// }
/// ```
pub trait BootPolicy: Send + Sync {
    /// Our address on the boot interface (option 54), the same for every client.
    fn server_ip(&self) -> Ipv4Addr;

    /// Takes note of a boot client's message this server answers (an implementation may
    /// record it) and returns the policy for `client`, or why it gets no answer.
    fn handle_boot_client(&self, client: &ClientInfo) -> Result<Cow<'_, Policy>, Silence>;
}

impl BootPolicy for Policy {
    fn server_ip(&self) -> Ipv4Addr {
        self.server_ip
    }

    fn handle_boot_client(&self, _client: &ClientInfo) -> Result<Cow<'_, Policy>, Silence> {
        Ok(Cow::Borrowed(self))
    }
}

fn item_type(index: usize, entry: &MenuEntry) -> u16 {
    if entry.boot_file.is_none() {
        crate::options::pxe_vendor::LOCAL_BOOT
    } else {
        MENU_TYPE_BASE.saturating_add(index as u16)
    }
}

/// What a client should boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootPlan {
    /// A file fetched over TFTP from [`Policy::next_server`].
    File(String),
    /// An `http(s)://` URI for an HTTP-boot client.
    HttpUri(String),
    /// A script (URL or TFTP path) for a client that already runs iPXE.
    IpxeScript(String),
    /// A PXE menu: (boot server type, text) per item.
    Menu(Vec<(u16, String)>),
}

/// Why a client gets no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silence {
    /// Option 60 is not `PXEClient…` or `HTTPClient…`.
    NotBootClient,
    /// The MAC is not in the allowed list.
    UnknownMac,
    /// Nothing is configured for this architecture.
    NoBootFile(Option<ClientArch>),
    /// The message type is not one this port answers.
    NotForUs,
    /// The client addressed another server (option 54).
    OtherServer(Ipv4Addr),
    /// The selected menu item does not exist.
    UnknownItem(u16),
    /// Full mode: no pool serves the client's subnet.
    NoPool,
    /// Full mode: the pool is exhausted.
    NoAddress,
    /// Full mode: a REQUEST for an address we hold no record of (RFC 2131 §4.3.2).
    NoRecord(Ipv4Addr),
    /// Full mode: a RELEASE or DECLINE was recorded; such messages get no reply.
    Recorded,
    /// An iPXE client would be handed an iPXE binary again (no script configured).
    ChainloadLoop,
    /// The embedder's [`BootPolicy`] refused the client (an unknown or disabled device,
    /// a failed lookup).
    Refused(&'static str),
}

impl std::fmt::Display for Silence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Silence::NotBootClient => write!(f, "not a PXE or HTTP boot client"),
            Silence::UnknownMac => write!(f, "MAC not in the allowed list"),
            Silence::NoBootFile(Some(a)) => write!(f, "no boot file for architecture {a}"),
            Silence::NoBootFile(None) => write!(f, "no boot file and no architecture"),
            Silence::NotForUs => write!(f, "message type not answered on this port"),
            Silence::OtherServer(ip) => write!(f, "client chose server {ip}"),
            Silence::UnknownItem(t) => write!(f, "no menu item of type {t:#06x}"),
            Silence::NoPool => write!(f, "no pool for the client's subnet"),
            Silence::NoAddress => write!(f, "pool exhausted"),
            Silence::NoRecord(ip) => write!(f, "no record of {ip}"),
            Silence::Recorded => write!(f, "recorded; no reply is sent"),
            Silence::ChainloadLoop => write!(
                f,
                "iPXE client would get an iPXE binary again; configure an iPXE script"
            ),
            Silence::Refused(why) => write!(f, "refused by the boot policy: {why}"),
        }
    }
}

/// Whether `file` names an iPXE binary (Debian's and upstream's usual names).
fn is_ipxe_binary(file: &str) -> bool {
    let name = file.rsplit('/').next().unwrap_or(file).to_ascii_lowercase();
    ["undionly", "ipxe", "snponly", "snp.efi"]
        .iter()
        .any(|n| name.contains(n))
        && !name.ends_with(".ipxe")
}

fn is_uri(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// Decides what `client` boots under `policy` (see the module diagram).
pub fn plan(client: &ClientInfo, policy: &Policy) -> Result<BootPlan, Silence> {
    if !client.is_boot_client() {
        return Err(Silence::NotBootClient);
    }
    if let Some(allowed) = &policy.allowed_macs
        && !client.mac.is_some_and(|m| allowed.contains(&m))
    {
        return Err(Silence::UnknownMac);
    }
    let arch = client.arch();
    if client.is_ipxe()
        && let Some(script) = &policy.ipxe_script
    {
        return Ok(BootPlan::IpxeScript(script.clone()));
    }
    if client.is_http() {
        return match policy.boot_file_for(arch) {
            Some(f) if is_uri(f) => Ok(BootPlan::HttpUri(f.to_owned())),
            _ => Err(Silence::NoBootFile(arch)),
        };
    }
    let items = policy.menu_items(arch);
    if !items.is_empty() {
        return Ok(BootPlan::Menu(
            items
                .into_iter()
                .map(|(t, e)| (t, e.text.clone()))
                .collect(),
        ));
    }
    match policy.boot_file_for(arch) {
        Some(f) if client.is_ipxe() && is_ipxe_binary(f) => Err(Silence::ChainloadLoop),
        Some(f) => Ok(BootPlan::File(f.to_owned())),
        None => Err(Silence::NoBootFile(arch)),
    }
}

/// The boot file of menu item `kind` for `client` (for the 4011 boot server reply).
pub fn item_boot_file(client: &ClientInfo, policy: &Policy, kind: u16) -> Result<String, Silence> {
    policy
        .menu_items(client.arch())
        .into_iter()
        .find(|(t, _)| *t == kind)
        .and_then(|(_, e)| e.boot_file.clone())
        .ok_or(Silence::UnknownItem(kind))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{UserClass, VendorClass, VendorKind};
    use crate::wire::MessageType;

    fn client(arch: u16, kind: VendorKind) -> ClientInfo {
        ClientInfo {
            message_type: MessageType::Discover,
            mac: Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
            vendor_class: Some(VendorClass::client(kind, arch, (2, 1))),
            arches: vec![ClientArch::from_u16(arch)],
            ndi: None,
            machine_id_raw: None,
            machine_id: None,
            user_class: None,
            ipxe: None,
            pxe: None,
            requested_ip: None,
            client_ip: None,
            server_id: None,
            client_id: None,
            max_message_size: None,
        }
    }

    fn policy() -> Policy {
        Policy::new(Ipv4Addr::new(10, 77, 0, 1))
            .with_boot_file(ClientArch::X86Bios, "undionly.kpxe")
            .with_boot_file(ClientArch::EfiX64, "ipxe.efi")
            .with_boot_file(ClientArch::EfiX64Http, "http://10.77.0.1/ipxe.efi")
    }

    #[test]
    fn file_per_architecture() {
        let p = policy();
        assert_eq!(
            plan(&client(0, VendorKind::PxeClient), &p),
            Ok(BootPlan::File("undionly.kpxe".into()))
        );
        assert_eq!(
            plan(&client(7, VendorKind::PxeClient), &p),
            Ok(BootPlan::File("ipxe.efi".into()))
        );
        assert_eq!(
            plan(&client(11, VendorKind::PxeClient), &p),
            Err(Silence::NoBootFile(Some(ClientArch::EfiArm64)))
        );
        let mut with_default = p.clone();
        with_default.default_boot_file = Some("any.efi".into());
        assert_eq!(
            plan(&client(11, VendorKind::PxeClient), &with_default),
            Ok(BootPlan::File("any.efi".into()))
        );
    }

    #[test]
    fn non_boot_clients_and_unknown_macs_get_nothing() {
        let mut c = client(0, VendorKind::PxeClient);
        c.vendor_class = Some(VendorClass::parse(b"udhcp 1.36.1"));
        assert_eq!(plan(&c, &policy()), Err(Silence::NotBootClient));
        c.vendor_class = None;
        assert_eq!(plan(&c, &policy()), Err(Silence::NotBootClient));
        let mut p = policy();
        p.allowed_macs = Some([[2, 0, 0, 0, 0, 1]].into_iter().collect());
        assert_eq!(
            plan(&client(0, VendorKind::PxeClient), &p),
            Err(Silence::UnknownMac)
        );
        p.allowed_macs
            .as_mut()
            .unwrap()
            .insert([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        assert!(plan(&client(0, VendorKind::PxeClient), &p).is_ok());
    }

    #[test]
    fn ipxe_gets_the_script_not_ipxe_again() {
        let mut p = policy();
        p.ipxe_script = Some("http://10.77.0.1/boot.ipxe".into());
        let mut c = client(0, VendorKind::PxeClient);
        assert_eq!(plan(&c, &p), Ok(BootPlan::File("undionly.kpxe".into())));
        c.user_class = Some(UserClass::parse(b"iPXE"));
        // Without a script, iPXE must not get undionly.kpxe again (a loop) ...
        assert_eq!(plan(&c, &policy()), Err(Silence::ChainloadLoop));
        // ... but any other boot file is fine.
        let other = Policy::new(Ipv4Addr::new(10, 77, 0, 1))
            .with_boot_file(ClientArch::X86Bios, "pxelinux.0");
        assert_eq!(plan(&c, &other), Ok(BootPlan::File("pxelinux.0".into())));
        assert_eq!(
            plan(&c, &p),
            Ok(BootPlan::IpxeScript("http://10.77.0.1/boot.ipxe".into()))
        );
        c.user_class = None;
        c.ipxe = Some(Default::default());
        assert!(matches!(plan(&c, &p), Ok(BootPlan::IpxeScript(_))));
    }

    #[test]
    fn http_clients_need_a_uri() {
        let p = policy();
        assert_eq!(
            plan(&client(16, VendorKind::HttpClient), &p),
            Ok(BootPlan::HttpUri("http://10.77.0.1/ipxe.efi".into()))
        );
        let p = Policy::new(Ipv4Addr::new(10, 77, 0, 1))
            .with_boot_file(ClientArch::EfiX64Http, "ipxe.efi");
        assert!(plan(&client(16, VendorKind::HttpClient), &p).is_err());
    }

    #[test]
    fn menu_per_architecture_and_items() {
        let mut p = policy();
        p.menu = Some(Menu {
            prompt: "Choose".into(),
            timeout: 10,
            entries: vec![
                MenuEntry {
                    text: "Linux".into(),
                    boot_file: Some("linux.kpxe".into()),
                    arches: vec![ClientArch::X86Bios],
                },
                MenuEntry {
                    text: "Local disk".into(),
                    boot_file: None,
                    arches: vec![],
                },
                MenuEntry {
                    text: "EFI".into(),
                    boot_file: Some("efi.efi".into()),
                    arches: vec![ClientArch::EfiX64],
                },
            ],
        });
        let bios = client(0, VendorKind::PxeClient);
        assert_eq!(
            plan(&bios, &p),
            Ok(BootPlan::Menu(vec![
                (0x8000, "Linux".into()),
                (0, "Local disk".into())
            ]))
        );
        assert_eq!(item_boot_file(&bios, &p, 0x8000), Ok("linux.kpxe".into()));
        assert_eq!(
            item_boot_file(&bios, &p, 0x8002),
            Err(Silence::UnknownItem(0x8002))
        );
        assert_eq!(
            item_boot_file(&client(7, VendorKind::PxeClient), &p, 0x8002),
            Ok("efi.efi".into())
        );
    }
}
