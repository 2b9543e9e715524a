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
use crate::policy::{BootPlan, Policy, Silence, item_boot_file, plan};
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
pub fn offer(request: &Message, policy: &Policy) -> Result<Reply, Ignored> {
    let client = ClientInfo::from_message(request)?;
    if client.message_type != MessageType::Discover {
        return Err(Silence::NotForUs.into());
    }
    let plan = plan(&client, policy)?;
    let mut m = reply::skeleton(request, MessageType::Offer, policy.server_ip);
    reply::force_broadcast(&mut m);
    add_boot_plan(&mut m, &client, policy, &plan)?;
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
pub fn boot_ack(
    request: &Message,
    source: SocketAddrV4,
    policy: &Policy,
) -> Result<Reply, Ignored> {
    let client = ClientInfo::from_message(request)?;
    if !matches!(
        client.message_type,
        MessageType::Request | MessageType::Inform
    ) {
        return Err(Silence::NotForUs.into());
    }
    if let Some(id) = client.server_id
        && id != policy.server_ip
    {
        return Err(Silence::OtherServer(id).into());
    }
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
