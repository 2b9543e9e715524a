//! The ProxyDHCP policy from the store: which PXE and HTTP-boot clients get an answer
//! and what they boot, as a [`pxe::BootPolicy`] the `pxe` driver asks per client.
//!
//! ```text
//!   not PXEClient/HTTPClient ─────────────▶ silent (the driver never asks us)
//!   no Ethernet MAC / unknown device ─────▶ silent   (unless a collection has auto-add
//!   disabled device ──────────────────────▶ silent    on: then the adapter adds it)
//!   iPXE (77 "iPXE" or 175) ──────────────▶ <prefix>/<mac>.ipxe, the device's script
//!                                            served by the TFTP adapter; never iPXE again
//!   PXE ROM / UEFI ───────────────────────▶ the boot file of its architecture
//!                                            (undionly.kpxe, ipxe.efi), which is iPXE
//! ```
//!
//! A DISCOVER from a known device starts its new boot ([`Sessions::start_boot`]: the
//! previous boot's sessions end, its write caches are dropped, a new boot token is
//! made). The REQUEST that follows (to port 4011 with `ciaddr`, or option 50 in
//! full-DHCP mode) records the address the device got: its iPXE script, which carries
//! the token, is served to that address only. iPXE's own DISCOVER after a PXE ROM's
//! starts the boot again, harmlessly: nothing has opened a disk yet.
//!
//! Reads and writes are apart: [`StorePolicy::lookup`] only reads (who the device is,
//! by [`resolve::admit`]); [`StorePolicy::handle_client`] makes the effects of a boot
//! client's message, each an explicit call (`Store::device_or_auto_add`, `Sessions::start_boot`,
//! `Sessions::record_boot_address`); the answer itself is a pure function of the
//! settings and the MAC. The `pxe` crate calls its [`BootPolicy::handle_boot_client`]
//! hook once per boot client's message it answers: that is where the message reaches
//! this adapter, and it calls `handle_client` first.

use std::borrow::Cow;
use std::net::Ipv4Addr;
use std::sync::Arc;

use pxe::options::ClientArch;
use pxe::policy::BootFile;
use pxe::{BootPolicy, ClientInfo, MessageType, Policy, Silence};

use crate::boot::BootCause;
use crate::error::ErrorKind;
use crate::mac::Mac;
use crate::model::Device;
use crate::resolve;
use crate::session::Sessions;
use crate::store::Store;

/// What the ProxyDHCP answers carry besides the per-device script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpSettings {
    /// Our address on the boot network (option 54; `siaddr` unless `tftp_server`).
    pub server_ip: Ipv4Addr,
    /// The TFTP server handed out as `siaddr`; `None` means `server_ip`.
    pub tftp_server: Option<Ipv4Addr>,
    /// What a PXE ROM or UEFI firmware (not yet iPXE) gets, per architecture: an iPXE
    /// binary from the TFTP folder, or an `http(s)://` URI for HTTP-boot architectures.
    pub boot_files: Vec<BootFile>,
    /// The TFTP folder of the per-device files, as the TFTP adapter serves them
    /// ([`crate::adapters::tftp::BootSettings::prefix`]).
    pub prefix: String,
}

impl DhcpSettings {
    /// Debian's iPXE binaries for BIOS (`undionly.kpxe`) and EFI x64 and EFI BC
    /// (`ipxe.efi`), scripts under `provision/`.
    pub fn new(server_ip: Ipv4Addr) -> Self {
        Self {
            server_ip,
            tftp_server: None,
            boot_files: [
                (ClientArch::X86Bios, "undionly.kpxe"),
                (ClientArch::EfiX64, "ipxe.efi"),
                (ClientArch::EfiBc, "ipxe.efi"),
            ]
            .into_iter()
            .map(|(arch, file)| BootFile {
                arch,
                file: file.into(),
            })
            .collect(),
            prefix: "provision".into(),
        }
    }
}

/// The TFTP path of a device's iPXE script, exactly as
/// [`DeviceFiles`](crate::adapters::tftp::DeviceFiles) serves it: `<prefix>/<mac>.ipxe`.
///
/// ```
/// use provision_core::Mac;
/// use provision_core::adapters::pxe::script_path;
/// let mac = Mac([0x52, 0x54, 0, 0xab, 0xcd, 0xef]);
/// assert_eq!(script_path("provision", mac), "provision/52:54:00:ab:cd:ef.ipxe");
/// ```
pub fn script_path(prefix: &str, mac: Mac) -> String {
    format!("{}/{mac}.ipxe", prefix.trim_matches('/'))
}

/// Starts the device's boot on a DISCOVER; records its address on a REQUEST.
fn record_boot(sessions: &Sessions, client: &ClientInfo, mac: Mac) {
    let result = match client.message_type {
        MessageType::Discover => sessions
            .start_boot(mac, BootCause::Dhcp, None)
            .map(drop),
        MessageType::Request => match client.client_ip.or(client.requested_ip) {
            Some(address) => sessions.current_boot(mac).and_then(|boot| match boot {
                Some(boot) if boot.address != Some(address.into()) => {
                    tracing::debug!(mac = %mac, boot = boot.number, %address, "boot address recorded");
                    sessions.record_boot_address(mac, boot.number, address.into())
                }
                _ => Ok(()),
            }),
            None => Ok(()),
        },
        _ => Ok(()),
    };
    if let Err(e) = result {
        tracing::warn!(mac = %mac, error = %e, "cannot record the device's boot");
    }
}

/// The ProxyDHCP policy of the devices in a store.
pub struct StorePolicy {
    store: Arc<Store>,
    sessions: Option<Sessions>,
    base: Policy,
    prefix: String,
}

impl std::fmt::Debug for StorePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorePolicy")
            .field("base", &self.base)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl StorePolicy {
    /// Answers the devices of `store`; with `sessions`, a DISCOVER starts a new boot
    /// and a REQUEST records the boot's address.
    pub fn new(store: Arc<Store>, sessions: Option<Sessions>, settings: DhcpSettings) -> Self {
        let mut base = Policy::new(settings.server_ip);
        base.tftp_server = settings.tftp_server;
        for b in settings.boot_files {
            base = base.with_boot_file(b.arch, b.file);
        }
        Self {
            store,
            sessions,
            base,
            prefix: settings.prefix,
        }
    }

    /// The device a boot client with `mac` is: known and enabled. Writes nothing.
    pub fn lookup(&self, mac: Mac) -> crate::Result<Device> {
        let device = self.store.device_with_mac(mac)?;
        Ok(resolve::admit(mac, device.as_ref())?.clone())
    }

    /// The effects of a message from the boot client `client`, before it is answered:
    /// an unknown device is added when a collection has auto-add on
    /// ([`Store::device_or_auto_add`]); with sessions, a DISCOVER starts the device's
    /// boot and a REQUEST records the boot's address. Returns the device, or why it
    /// gets no answer (nothing is started for a refused device).
    pub fn handle_client(&self, client: &ClientInfo, mac: Mac) -> crate::Result<Device> {
        let device = self.store.device_or_auto_add(mac)?;
        if let Some(sessions) = &self.sessions {
            record_boot(sessions, client, mac);
        }
        Ok(device)
    }

    /// The answer for a known device: the settings' boot files, and its script for
    /// iPXE (never an iPXE binary again, `pxe::policy::plan`). Pure.
    fn answer(&self, mac: Mac) -> Policy {
        let mut policy = self.base.clone();
        policy.ipxe_script = Some(script_path(&self.prefix, mac));
        policy
    }
}

impl BootPolicy for StorePolicy {
    fn server_ip(&self) -> Ipv4Addr {
        self.base.server_ip
    }

    fn handle_boot_client(&self, client: &ClientInfo) -> Result<Cow<'_, Policy>, Silence> {
        let mac = Mac(client
            .mac
            .ok_or(Silence::Refused("no Ethernet address in chaddr"))?);
        let device = self
            .handle_client(client, mac)
            .map_err(|e| match e.kind() {
                ErrorKind::NotFound | ErrorKind::Refused => {
                    tracing::debug!(mac = %mac, error = %e, "no ProxyDHCP answer");
                    Silence::Refused("unknown or disabled device")
                }
                _ => {
                    tracing::warn!(mac = %mac, error = %e, "store lookup for a PXE client failed");
                    Silence::Refused("store failure")
                }
            })?;
        tracing::debug!(mac = %mac, device = %device.name, ipxe = client.is_ipxe(), "PXE client of a known device");
        Ok(Cow::Owned(self.answer(mac)))
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use pxe::client::ClientProfile;
    use pxe::proxy::{Ignored, offer};
    use pxe::{Message, Reply};
    use tftp::Provider;

    use super::*;
    use crate::adapters::tftp::{BootSettings, BootStart, DeviceFiles};
    use crate::{CollectionSettings, DeviceType, DeviceUpdate, Mode, SessionSettings};

    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
    const SEAT: Mac = Mac([0x52, 0x54, 0, 0x77, 0, 1]);
    const STRANGER: Mac = Mac([0x52, 0x54, 0, 0x77, 0, 9]);

    fn store() -> Arc<Store> {
        let store = Store::in_memory().unwrap();
        store.add_vdisk("lab", 1 << 20, "", "lab/v0.vhd").unwrap();
        store
            .add_device(SEAT, "seat-1", None, DeviceType::Production)
            .unwrap();
        store.assign("seat-1", "lab", Mode::Standard, None).unwrap();
        Arc::new(store)
    }

    fn policy(store: &Arc<Store>) -> StorePolicy {
        StorePolicy::new(store.clone(), None, DhcpSettings::new(SERVER))
    }

    /// A collection `lab-room` that adds unknown devices, assigning `vdisk`.
    fn auto_add_to(store: &Store, vdisk: Option<&str>) {
        let settings = CollectionSettings {
            auto_add: true,
            default_vdisk: vdisk.map(Into::into),
            ..Default::default()
        };
        store.add_collection("lab-room", &settings).unwrap();
    }

    fn client(mac: Mac, arch: ClientArch, ipxe: bool) -> ClientProfile {
        let mut c = ClientProfile::bios(mac.0);
        c.arch = arch;
        c.ipxe = ipxe;
        c
    }

    fn answer(policy: &StorePolicy, discover: &Message) -> Result<Reply, Ignored> {
        offer(discover, policy)
    }

    fn file(reply: Result<Reply, Ignored>) -> String {
        reply
            .expect("an offer")
            .message
            .file_name()
            .expect("a file name")
    }

    #[test]
    fn firmware_gets_ipxe_for_its_architecture() {
        let store = store();
        let p = policy(&store);
        for (arch, want) in [
            (ClientArch::X86Bios, "undionly.kpxe"),
            (ClientArch::EfiX64, "ipxe.efi"),
            (ClientArch::EfiBc, "ipxe.efi"),
        ] {
            let reply = answer(&p, &client(SEAT, arch, false).discover(1));
            assert_eq!(file(reply), want, "{arch:?}");
        }
        // An architecture without a boot file gets no answer.
        let reply = answer(&p, &client(SEAT, ClientArch::EfiArm64, false).discover(1));
        assert!(
            matches!(reply, Err(Ignored::Silent(Silence::NoBootFile(_)))),
            "{reply:?}"
        );
        // The settings choose the files.
        let mut settings = DhcpSettings::new(SERVER);
        settings.boot_files = vec![BootFile {
            arch: ClientArch::EfiArm64,
            file: "arm64/ipxe.efi".into(),
        }];
        settings.tftp_server = Some(Ipv4Addr::new(10, 77, 0, 5));
        let p = StorePolicy::new(store, None, settings);
        let reply = answer(&p, &client(SEAT, ClientArch::EfiArm64, false).discover(1)).unwrap();
        assert_eq!(reply.message.file_name().as_deref(), Some("arm64/ipxe.efi"));
        assert_eq!(reply.message.siaddr, Ipv4Addr::new(10, 77, 0, 5));
    }

    #[test]
    fn ipxe_gets_the_device_script_the_tftp_adapter_serves() {
        let store = store();
        let p = policy(&store);
        let mut scripts = Vec::new();
        for arch in [ClientArch::X86Bios, ClientArch::EfiX64] {
            let reply = answer(&p, &client(SEAT, arch, true).discover(1)).unwrap();
            assert_eq!(reply.message.siaddr, SERVER);
            scripts.push(reply.message.file_name().unwrap());
        }
        assert_eq!(
            scripts, ["provision/52:54:00:77:00:01.ipxe"; 2],
            "never an iPXE binary again"
        );
        // The 4011 ProxyDHCP REQUEST gets the same.
        let at = Ipv4Addr::new(10, 77, 0, 50);
        let ack = pxe::proxy::boot_ack(
            &client(SEAT, ClientArch::X86Bios, true).boot_request(2, at, None),
            std::net::SocketAddrV4::new(at, 68),
            &p,
        )
        .unwrap();
        assert_eq!(ack.message.file_name().unwrap(), scripts[0]);
        // That path is the one the TFTP adapter serves, with the device's script.
        let dir = tempfile::tempdir().unwrap();
        let on_disk = Arc::new(Store::open(dir.path()).unwrap());
        crate::create_vdisk(&on_disk, "lab", 1 << 20, "").unwrap();
        on_disk
            .add_device(SEAT, "seat-1", None, DeviceType::Production)
            .unwrap();
        on_disk
            .assign("seat-1", "lab", Mode::Standard, None)
            .unwrap();
        let sessions = Sessions::new(on_disk.clone(), SessionSettings::default()).unwrap();
        let files = DeviceFiles::new(
            on_disk,
            sessions.clone(),
            BootSettings::new("10.77.0.1:10809"),
            BootStart::Dhcp,
        );
        let peer: SocketAddr = "10.77.0.50:2000".parse().unwrap();
        let source = files.open(&scripts[0], peer).expect("the script is served");
        let mut buf = vec![0; source.len() as usize];
        source.read_at(0, &mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.starts_with("#!ipxe\n"), "{text}");
        let boot = sessions
            .current_boot(SEAT)
            .unwrap()
            .expect("the fetch started a boot");
        assert!(
            text.contains(&format!("/52:54:00:77:00:01/lab/{} ", boot.token)),
            "{text}"
        );
    }

    #[test]
    fn unknown_and_disabled_devices_get_no_answer() {
        let store = store();
        let p = policy(&store);
        let reply = answer(
            &p,
            &client(STRANGER, ClientArch::X86Bios, false).discover(1),
        );
        assert!(
            matches!(
                reply,
                Err(Ignored::Silent(Silence::Refused(
                    "unknown or disabled device"
                )))
            ),
            "{reply:?}"
        );
        assert!(
            store.device(&STRANGER.to_string()).is_err(),
            "not added: auto-add is off"
        );
        store
            .set_device(
                "seat-1",
                &DeviceUpdate {
                    enabled: Some(false),
                    ..Default::default()
                },
            )
            .unwrap();
        let reply = answer(&p, &client(SEAT, ClientArch::X86Bios, true).discover(1));
        assert!(
            matches!(reply, Err(Ignored::Silent(Silence::Refused(_)))),
            "{reply:?}"
        );
        // Clients that are not PXE never reach the store.
        let mut plain = client(STRANGER, ClientArch::X86Bios, false);
        plain.kind = pxe::options::VendorKind::Other;
        let reply = answer(&p, &plain.discover(1));
        assert!(
            matches!(reply, Err(Ignored::Silent(Silence::NotBootClient))),
            "{reply:?}"
        );
    }

    #[test]
    fn auto_add_collections_admit_unknown_devices() {
        let store = store();
        auto_add_to(&store, Some("lab"));
        let p = policy(&store);
        let reply = answer(&p, &client(STRANGER, ClientArch::X86Bios, true).discover(1));
        assert_eq!(file(reply), "provision/52:54:00:77:00:09.ipxe");
        let added = store.device(&STRANGER.to_string()).unwrap();
        assert_eq!(added.name, "auto-525400770009");
        assert_eq!(added.collection.as_deref(), Some("lab-room"));
        assert_eq!(store.assignments("auto-525400770009").unwrap().len(), 1);
        // The second DISCOVER finds it; nothing is added twice.
        let again = answer(
            &p,
            &client(STRANGER, ClientArch::X86Bios, false).discover(2),
        );
        assert_eq!(file(again), "undionly.kpxe");
        assert_eq!(store.devices().unwrap().len(), 2);
    }

    #[test]
    fn lookups_write_nothing_and_effects_are_explicit() {
        let store = store();
        auto_add_to(&store, None);
        let p = policy(&store);
        let refused = p.lookup(STRANGER).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Refused, "{refused}");
        assert_eq!(refused.to_string(), "unknown device 52:54:00:77:00:09");
        assert_eq!(store.devices().unwrap().len(), 1, "a lookup adds nothing");
        assert_eq!(p.lookup(SEAT).unwrap().name, "seat-1");
        // The message's effect adds it; then the lookup finds it.
        let discover = client(STRANGER, ClientArch::X86Bios, false).discover(1);
        let info = ClientInfo::from_message(&discover).unwrap();
        let added = p.handle_client(&info, STRANGER).unwrap();
        assert_eq!(p.lookup(STRANGER).unwrap(), added);
    }

    #[test]
    fn a_discover_starts_a_boot_and_the_request_records_its_address() {
        use vhd::Disk;
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        crate::create_vdisk(&store, "lab", 1 << 20, "").unwrap();
        store
            .add_device(SEAT, "seat-1", None, DeviceType::Production)
            .unwrap();
        store.assign("seat-1", "lab", Mode::Standard, None).unwrap();
        let sessions = Sessions::new(store.clone(), SessionSettings::default()).unwrap();
        let p = StorePolicy::new(store, Some(sessions.clone()), DhcpSettings::new(SERVER));
        let current = || sessions.current_boot(SEAT).unwrap().expect("a boot");

        answer(&p, &client(SEAT, ClientArch::X86Bios, false).discover(1)).unwrap();
        let first = current();
        let session = sessions.open(SEAT, "lab", &first.token).unwrap();
        session.write_at(&[7; 512], 0).unwrap();
        drop(session);
        // The 4011 REQUEST of the boot in progress records the address, keeps the cache ...
        let at = Ipv4Addr::new(10, 77, 0, 50);
        let request = client(SEAT, ClientArch::X86Bios, false).boot_request(1, at, None);
        pxe::proxy::boot_ack(&request, std::net::SocketAddrV4::new(at, 68), &p).unwrap();
        assert_eq!(current().address, Some(at.into()));
        assert_eq!(current().token, first.token);
        let session = sessions.open(SEAT, "lab", &first.token).unwrap();
        let mut buf = [0; 512];
        session.read_at(&mut buf, 0).unwrap();
        assert_eq!(buf, [7; 512]);
        // ... a DISCOVER starts a new boot: the open session ends, its token is
        // refused, and the new boot's disk is clean.
        answer(&p, &client(SEAT, ClientArch::X86Bios, false).discover(2)).unwrap();
        assert!(session.is_ended());
        assert!(session.read_at(&mut buf, 0).is_err());
        let stale = sessions.open(SEAT, "lab", &first.token).unwrap_err();
        assert_eq!(stale.kind(), ErrorKind::Refused, "{stale}");
        let second = current();
        assert_eq!((second.number, second.address), (first.number + 1, None));
        let fresh = sessions.open(SEAT, "lab", &second.token).unwrap();
        fresh.read_at(&mut buf, 0).unwrap();
        assert_eq!(buf, [0; 512]);
    }
}
