//! ProxyDHCP (PXE 2.1 §2.2, SPECS.md §4.5): the offer on port 67 that tells a PXE or
//! HTTP-boot client what to boot without giving it an address, and the REQUEST/ACK on
//! port 4011 (ProxyDHCP request and PXE boot server discovery).
//!
//! ```text
//!  client                          site DHCP                 us (proxy)
//!  DISCOVER (60 PXEClient, 93) ──▶  OFFER yiaddr=x      ◀── OFFER yiaddr=0, 54, 60, 97, 43|file
//!  REQUEST x ─────────────────────▶ ACK                      (never ACK the site's REQUEST)
//!  REQUEST :4011 ciaddr=x [43.71] ──────────────────────────▶ ACK siaddr, file, 54, 60, 97, 43.71
//! ```

use std::net::SocketAddrV4;

use crate::options::codes;
use crate::options::pxe_vendor::{
    self, BootItem, BootServer, MenuItem, MenuPrompt, PxeSubOption, PxeVendor,
};
use crate::options::vendor_class::{HTTP_CLIENT, PXE_CLIENT};
use crate::policy::{BootPlan, BootPolicy, Policy, Silence, item_boot_file, plan};
use crate::reply::{self, Destination, Reply};
use crate::request::ClientInfo;
use crate::wire::{Message, MessageType};

/// Why no reply was sent: a malformed message or a deliberate silence.
#[derive(Debug)]
pub enum Ignored {
    /// The message could not be read.
    Malformed(crate::Error),
    /// The policy says stay silent.
    Silent(Silence),
}

impl std::fmt::Display for Ignored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ignored::Malformed(e) => write!(f, "malformed: {e}"),
            Ignored::Silent(s) => write!(f, "{s}"),
        }
    }
}

impl From<Silence> for Ignored {
    fn from(s: Silence) -> Self {
        Ignored::Silent(s)
    }
}

impl From<crate::Error> for Ignored {
    fn from(e: crate::Error) -> Self {
        Ignored::Malformed(e)
    }
}

fn set_boot_file(m: &mut Message, file: &str) {
    // `file` holds 127 bytes; longer names (URIs) go only in option 67.
    if m.set_file_name(file).is_err() || file.starts_with("http") {
        m.options.set(codes::BOOTFILE_NAME, file.as_bytes());
    }
}

fn echo_client_identity(m: &mut Message, client: &ClientInfo) {
    if let Some(uuid) = &client.machine_id_raw {
        m.options.push(codes::CLIENT_UUID, uuid);
    }
}

fn vendor(items: Vec<PxeSubOption>) -> Result<Vec<u8>, Ignored> {
    Ok(PxeVendor { items }.encode()?)
}

/// Fills the boot part of a reply (shared by proxy offers and full-mode offers).
pub(crate) fn add_boot_plan(
    m: &mut Message,
    client: &ClientInfo,
    policy: &Policy,
    plan: &BootPlan,
) -> Result<(), Ignored> {
    match plan {
        BootPlan::HttpUri(uri) => {
            m.options.push(codes::VENDOR_CLASS, HTTP_CLIENT);
            echo_client_identity(m, client);
            set_boot_file(m, uri);
            return Ok(());
        }
        BootPlan::File(file) | BootPlan::IpxeScript(file) => {
            m.options.push(codes::VENDOR_CLASS, PXE_CLIENT);
            echo_client_identity(m, client);
            m.siaddr = policy.next_server();
            set_boot_file(m, file);
            let v = vendor(vec![PxeSubOption::DiscoveryControl(
                pxe_vendor::USE_BOOT_FILE,
            )])?;
            m.options.push(codes::VENDOR_SPECIFIC, &v);
        }
        BootPlan::Menu(items) => {
            m.options.push(codes::VENDOR_CLASS, PXE_CLIENT);
            echo_client_identity(m, client);
            let menu = policy.menu.as_ref();
            let servers = items
                .iter()
                .filter(|(t, _)| *t != pxe_vendor::LOCAL_BOOT)
                .map(|(t, _)| BootServer {
                    kind: *t,
                    addresses: vec![policy.server_ip],
                })
                .collect();
            let v = vendor(vec![
                PxeSubOption::DiscoveryControl(
                    pxe_vendor::DISABLE_BROADCAST | pxe_vendor::DISABLE_MULTICAST,
                ),
                PxeSubOption::BootServers(servers),
                PxeSubOption::BootMenu(
                    items
                        .iter()
                        .map(|(t, text)| MenuItem {
                            kind: *t,
                            text: text.as_bytes().iter().copied().take(255).collect(),
                        })
                        .collect(),
                ),
                PxeSubOption::MenuPrompt(MenuPrompt {
                    timeout: menu.map_or(255, |m| m.timeout),
                    text: menu
                        .map(|m| m.prompt.as_bytes().iter().copied().take(254).collect())
                        .unwrap_or_default(),
                }),
            ])?;
            m.options.push(codes::VENDOR_SPECIFIC, &v);
        }
    }
    Ok(())
}

/// The ProxyDHCP OFFER for a DISCOVER received on port 67.
///
/// Contains yiaddr 0, option 53 OFFER, 54 (us), 60 `PXEClient` (or `HTTPClient`), 97
/// echoed, and the boot plan; no lease time and no IP configuration. Sent broadcast.
/// `policy` is a [`Policy`] or the embedder's per-client [`BootPolicy`]; it is asked
/// only about boot clients.
pub fn offer<P: BootPolicy + ?Sized>(request: &Message, policy: &P) -> Result<Reply, Ignored> {
    let client = ClientInfo::from_message(request)?;
    if client.message_type != MessageType::Discover {
        return Err(Silence::NotForUs.into());
    }
    if !client.is_boot_client() {
        return Err(Silence::NotBootClient.into());
    }
    let policy = policy.handle_boot_client(&client)?;
    let plan = plan(&client, &policy)?;
    let mut m = reply::skeleton(request, MessageType::Offer, policy.server_ip);
    reply::force_broadcast(&mut m);
    add_boot_plan(&mut m, &client, &policy, &plan)?;
    let message = reply::finish(m, request)?;
    let to = if request.giaddr.is_unspecified() {
        Destination::Broadcast(reply::CLIENT_PORT)
    } else {
        Destination::Unicast(SocketAddrV4::new(request.giaddr, reply::SERVER_PORT))
    };
    Ok(Reply { message, to })
}

/// The ACK for a REQUEST (or INFORM) received on port 4011 from `source`.
///
/// With a boot item (43.71) it is a boot server reply: the item's file, yiaddr =
/// ciaddr, 43.71 echoed. Without, it is a ProxyDHCP ACK carrying the boot plan. The
/// reply goes back to the request's source address and port (iPXE uses 68, EDK2 4011).
pub fn boot_ack<P: BootPolicy + ?Sized>(
    request: &Message,
    source: SocketAddrV4,
    policy: &P,
) -> Result<Reply, Ignored> {
    let client = ClientInfo::from_message(request)?;
    if !matches!(
        client.message_type,
        MessageType::Request | MessageType::Inform
    ) {
        return Err(Silence::NotForUs.into());
    }
    if let Some(id) = client.server_id
        && id != policy.server_ip()
    {
        return Err(Silence::OtherServer(id).into());
    }
    if !client.is_boot_client() {
        return Err(Silence::NotBootClient.into());
    }
    let policy = policy.handle_boot_client(&client)?;
    let policy: &Policy = &policy;
    let plan = plan(&client, policy)?;
    let mut m = reply::skeleton(request, MessageType::Ack, policy.server_ip);
    m.ciaddr = request.ciaddr;
    match client.boot_item() {
        Some(BootItem { kind, layer }) => {
            let file = item_boot_file(&client, policy, kind)?;
            m.yiaddr = request.ciaddr;
            m.options.push(codes::VENDOR_CLASS, PXE_CLIENT);
            echo_client_identity(&mut m, &client);
            m.siaddr = policy.next_server();
            set_boot_file(&mut m, &file);
            let v = vendor(vec![PxeSubOption::BootItem(BootItem { kind, layer })])?;
            m.options.push(codes::VENDOR_SPECIFIC, &v);
        }
        None => {
            // A ProxyDHCP REQUEST: resolve a menu to its first item with a file so a
            // client that skipped the menu still gets something to boot.
            let plan = match plan {
                BootPlan::Menu(items) => items
                    .iter()
                    .find_map(|(t, _)| item_boot_file(&client, policy, *t).ok())
                    .map(BootPlan::File)
                    .ok_or(Silence::NoBootFile(client.arch()))?,
                other => other,
            };
            add_boot_plan(&mut m, &client, policy, &plan)?;
        }
    }
    let message = reply::finish(m, request)?;
    let to = if source.ip().is_unspecified() {
        Destination::Broadcast(source.port())
    } else {
        Destination::Unicast(source)
    };
    Ok(Reply { message, to })
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::client::ClientProfile;
    use crate::options::{ClientArch, VendorKind};

    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
    const KNOWN: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];
    const UNKNOWN: [u8; 6] = [0x52, 0x54, 0, 0, 0, 2];

    /// A per-device policy as an embedder would write it: scripts by MAC, counted calls.
    struct Devices {
        base: Policy,
        scripts: BTreeMap<[u8; 6], String>,
        calls: AtomicUsize,
    }

    impl BootPolicy for Devices {
        fn server_ip(&self) -> Ipv4Addr {
            self.base.server_ip
        }

        fn handle_boot_client(&self, client: &ClientInfo) -> Result<Cow<'_, Policy>, Silence> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let script = client
                .mac
                .and_then(|m| self.scripts.get(&m))
                .ok_or(Silence::Refused("unknown device"))?;
            let mut p = self.base.clone();
            p.ipxe_script = Some(script.clone());
            Ok(Cow::Owned(p))
        }
    }

    fn devices() -> Devices {
        Devices {
            base: Policy::new(SERVER).with_boot_file(ClientArch::X86Bios, "undionly.kpxe"),
            scripts: [(KNOWN, "provision/52:54:00:00:00:01.ipxe".to_owned())].into(),
            calls: AtomicUsize::new(0),
        }
    }

    fn file(reply: &Result<Reply, Ignored>) -> Option<String> {
        reply.as_ref().ok().and_then(|r| r.message.file_name())
    }

    #[test]
    fn the_embedder_decides_per_client() {
        let hook = devices();
        let mut ipxe = ClientProfile::bios(KNOWN);
        ipxe.ipxe = true;
        let reply = offer(&ipxe.discover(1), &hook);
        assert_eq!(
            file(&reply).as_deref(),
            Some("provision/52:54:00:00:00:01.ipxe")
        );
        assert_eq!(reply.unwrap().message.siaddr, SERVER);
        // The PXE ROM before iPXE gets the boot file of its architecture.
        let rom = ClientProfile::bios(KNOWN);
        assert_eq!(
            file(&offer(&rom.discover(2), &hook)).as_deref(),
            Some("undionly.kpxe")
        );
        // The 4011 ProxyDHCP REQUEST asks the hook too.
        let ack = boot_ack(
            &ipxe.boot_request(3, Ipv4Addr::new(10, 77, 0, 50), None),
            SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 50), 68),
            &hook,
        );
        assert_eq!(
            file(&ack).as_deref(),
            Some("provision/52:54:00:00:00:01.ipxe")
        );
        assert_eq!(hook.calls.load(Ordering::Relaxed), 3);

        // An unknown device is refused with the hook's reason.
        let reply = offer(&ClientProfile::bios(UNKNOWN).discover(4), &hook);
        assert!(
            matches!(
                reply,
                Err(Ignored::Silent(Silence::Refused("unknown device")))
            ),
            "{reply:?}"
        );
        assert_eq!(hook.calls.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn the_embedder_never_sees_other_traffic() {
        let hook = devices();
        let mut plain = ClientProfile::bios(KNOWN);
        plain.kind = VendorKind::Other;
        assert!(matches!(
            offer(&plain.discover(1), &hook),
            Err(Ignored::Silent(Silence::NotBootClient))
        ));
        // A REQUEST on port 67 is the site server's business.
        let pxe = ClientProfile::bios(KNOWN);
        let request = pxe.boot_request(2, Ipv4Addr::UNSPECIFIED, None);
        assert!(matches!(
            offer(&request, &hook),
            Err(Ignored::Silent(Silence::NotForUs))
        ));
        // A 4011 request addressed to another server.
        let mut other = pxe.boot_request(3, Ipv4Addr::new(10, 77, 0, 50), None);
        other.options.set(codes::SERVER_ID, &[10, 77, 0, 9]);
        assert!(matches!(
            boot_ack(
                &other,
                SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 50), 68),
                &hook
            ),
            Err(Ignored::Silent(Silence::OtherServer(_)))
        ));
        assert_eq!(hook.calls.load(Ordering::Relaxed), 0);
    }
}
