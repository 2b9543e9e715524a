//! Full DHCP mode for isolated segments (labs, classrooms): addresses from pools,
//! static reservations by MAC, leases kept in a file, relays (`giaddr`), and the whole
//! RFC 2131 exchange: DISCOVER/OFFER, REQUEST/ACK|NAK, RELEASE, DECLINE, INFORM. Boot
//! clients also get their boot plan in the same replies.
//!
//! Sans-IO: [`FullDhcp::handle`] takes the time (unix seconds) and a message and returns
//! the reply; the driver saves the lease table when [`FullDhcp::take_dirty`] says so.

pub mod leases;
pub mod pool;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

pub use leases::{Lease, LeaseState, Leases};
pub use pool::Pool;

use crate::options::codes;
use crate::policy::{BootPolicy, Policy, Silence, plan};
use crate::proxy::{Ignored, add_boot_plan};
use crate::reply::{self, Destination, Reply};
use crate::request::ClientInfo;
use crate::wire::{Message, MessageType};

/// Full-mode settings besides the boot policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullConfig {
    /// The pools, one per subnet served (local, or behind relays).
    pub pools: Vec<Pool>,
    /// Fixed addresses by MAC.
    pub reservations: BTreeMap<[u8; 6], Ipv4Addr>,
    /// How long an offered address is held for the client's REQUEST.
    pub offer_hold_secs: u64,
    /// How long a declined address is kept out of use.
    pub decline_hold_secs: u64,
}

impl FullConfig {
    /// Settings with one pool and the usual hold times (60 s offers, 10 min declines).
    pub fn new(pool: Pool) -> Self {
        Self {
            pools: vec![pool],
            reservations: BTreeMap::new(),
            offer_hold_secs: 60,
            decline_hold_secs: 600,
        }
    }
}

/// A full DHCP server's state.
#[derive(Debug, Clone)]
pub struct FullDhcp {
    policy: Policy,
    boot: Option<BootHook>,
    config: FullConfig,
    leases: Leases,
    dirty: bool,
}

/// An embedder's per-client boot decision (see [`FullDhcp::with_boot_policy`]).
#[derive(Clone)]
struct BootHook(Arc<dyn BootPolicy>);

impl std::fmt::Debug for BootHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BootHook")
    }
}

impl FullDhcp {
    /// A server with `leases` (e.g. loaded from the lease file).
    pub fn new(policy: Policy, config: FullConfig, leases: Leases) -> Self {
        Self {
            policy,
            boot: None,
            config,
            leases,
            dirty: false,
        }
    }

    /// Takes each client's boot answer from `boot` instead of the static policy, which
    /// then only gives the server's address and `allowed_macs`. A client `boot` is
    /// silent about still gets its address, without boot information.
    pub fn with_boot_policy(mut self, boot: Arc<dyn BootPolicy>) -> Self {
        self.boot = Some(BootHook(boot));
        self
    }

    /// What decides clients' boot answers: the hook of [`with_boot_policy`], or the
    /// static policy.
    ///
    /// [`with_boot_policy`]: FullDhcp::with_boot_policy
    pub fn boot_policy(&self) -> &dyn BootPolicy {
        match &self.boot {
            Some(BootHook(boot)) => boot.as_ref(),
            None => &self.policy,
        }
    }

    /// The lease table.
    pub fn leases(&self) -> &Leases {
        &self.leases
    }

    /// The boot policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// True once after the lease table changed (then save it).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    fn pool_for(&self, request: &Message) -> Option<&Pool> {
        let anchor = if request.giaddr.is_unspecified() {
            self.policy.server_ip
        } else {
            request.giaddr
        };
        self.config.pools.iter().find(|p| p.in_subnet(anchor))
    }

    fn reserved_for_other(&self, ip: Ipv4Addr, mac: [u8; 6]) -> bool {
        self.config
            .reservations
            .iter()
            .any(|(m, r)| *r == ip && *m != mac)
    }

    fn choose(
        &self,
        pool: &Pool,
        mac: [u8; 6],
        wanted: Option<Ipv4Addr>,
        now: u64,
    ) -> Option<Ipv4Addr> {
        if let Some(ip) = self.config.reservations.get(&mac) {
            return Some(*ip);
        }
        let usable = |ip: Ipv4Addr| {
            pool.in_range(ip)
                && !self.reserved_for_other(ip, mac)
                && self.leases.is_free_for(ip, mac, now)
        };
        if let Some((ip, _)) = self.leases.find_mac(mac)
            && usable(ip)
        {
            return Some(ip);
        }
        if let Some(ip) = wanted
            && usable(ip)
        {
            return Some(ip);
        }
        // Never-used addresses first, then expired ones.
        pool.addresses()
            .find(|ip| self.leases.get(*ip).is_none() && usable(*ip))
            .or_else(|| pool.addresses().find(|ip| usable(*ip)))
    }

    fn config_options(m: &mut Message, pool: &Pool, with_lease: bool) {
        m.options.push(codes::SUBNET_MASK, &pool.mask().octets());
        if let Some(r) = pool.router {
            m.options.push(codes::ROUTER, &r.octets());
        }
        if !pool.dns.is_empty() {
            let dns: Vec<u8> = pool.dns.iter().flat_map(|d| d.octets()).collect();
            m.options.push(codes::DNS, &dns);
        }
        if with_lease {
            let t = pool.lease_secs;
            m.options.push(codes::LEASE_TIME, &t.to_be_bytes());
            m.options.push(codes::RENEWAL_TIME, &(t / 2).to_be_bytes());
            m.options
                .push(codes::REBINDING_TIME, &(t / 8 * 7).to_be_bytes());
        }
    }

    fn build(
        &self,
        request: &Message,
        client: &ClientInfo,
        pool: &Pool,
        kind: MessageType,
        yiaddr: Ipv4Addr,
    ) -> Result<Reply, Ignored> {
        let mut m = reply::skeleton(request, kind, self.policy.server_ip);
        m.yiaddr = yiaddr;
        if kind == MessageType::Ack {
            m.ciaddr = request.ciaddr;
        }
        Self::config_options(
            &mut m,
            pool,
            kind != MessageType::Ack || client.message_type != MessageType::Inform,
        );
        if let Some(id) = &client.client_id {
            m.options.push(codes::CLIENT_ID, id); // RFC 6842
        }
        // Only boot clients reach the boot policy: an embedder's hook may have side
        // effects (a new boot of the device) that an OS's own DHCP must not cause.
        if client.is_boot_client()
            && let Ok(policy) = self.boot_policy().handle_boot_client(client)
            && let Ok(p) = plan(client, &policy)
        {
            add_boot_plan(&mut m, client, &policy, &p)?;
        }
        let message = reply::finish(m, request)?;
        Ok(Reply {
            to: reply::destination(request),
            message,
        })
    }

    fn nak(&self, request: &Message, why: &str) -> Result<Reply, Ignored> {
        let mut m = reply::skeleton(request, MessageType::Nak, self.policy.server_ip);
        m.options.push(codes::MESSAGE, why.as_bytes());
        let message = reply::finish(m, request)?;
        let to = if request.giaddr.is_unspecified() {
            Destination::Broadcast(reply::CLIENT_PORT)
        } else {
            reply::destination(request)
        };
        Ok(Reply { message, to })
    }

    fn bind(&mut self, ip: Ipv4Addr, mac: [u8; 6], expires: u64, state: LeaseState) {
        self.leases.insert(
            ip,
            Lease {
                mac,
                expires,
                state,
            },
        );
        self.dirty = true;
    }

    /// Handles one message received on port 67 at `now` (unix seconds).
    pub fn handle(&mut self, now: u64, request: &Message) -> Result<Reply, Ignored> {
        let client = ClientInfo::from_message(request)?;
        let Some(mac) = client.mac else {
            return Err(Silence::NotForUs.into());
        };
        if let Some(allowed) = &self.policy.allowed_macs
            && !allowed.contains(&mac)
        {
            return Err(Silence::UnknownMac.into());
        }
        let pool = self.pool_for(request).cloned().ok_or(Silence::NoPool)?;
        match client.message_type {
            MessageType::Discover => {
                let ip = self
                    .choose(&pool, mac, client.requested_ip, now)
                    .ok_or(Silence::NoAddress)?;
                let bound = self.leases.get(ip).is_some_and(|l| {
                    l.mac == mac && l.state == LeaseState::Bound && l.expires > now
                });
                if !bound {
                    self.bind(
                        ip,
                        mac,
                        now + self.config.offer_hold_secs,
                        LeaseState::Offered,
                    );
                }
                self.build(request, &client, &pool, MessageType::Offer, ip)
            }
            MessageType::Request => {
                if let Some(id) = client.server_id
                    && id != self.policy.server_ip
                {
                    // The client chose another server: free what we offered.
                    if let Some((ip, l)) = self.leases.find_mac(mac)
                        && l.state == LeaseState::Offered
                    {
                        self.leases.remove(ip);
                        self.dirty = true;
                    }
                    return Err(Silence::OtherServer(id).into());
                }
                let ip = client.requested_ip.unwrap_or(request.ciaddr);
                if !pool.in_subnet(ip) {
                    return self.nak(request, "requested address is not on this network");
                }
                let ours = self
                    .leases
                    .get(ip)
                    .is_some_and(|l| l.mac == mac && l.state != LeaseState::Declined)
                    || self.config.reservations.get(&mac) == Some(&ip);
                let allowed = (pool.in_range(ip) && !self.reserved_for_other(ip, mac))
                    || self.config.reservations.get(&mac) == Some(&ip);
                if ours && allowed {
                    self.bind(ip, mac, now + u64::from(pool.lease_secs), LeaseState::Bound);
                    self.build(request, &client, &pool, MessageType::Ack, ip)
                } else if self.leases.get(ip).is_some() || client.server_id.is_some() || !allowed {
                    self.nak(request, "address not available to this client")
                } else {
                    Err(Silence::NoRecord(ip).into())
                }
            }
            MessageType::Release => {
                if self
                    .leases
                    .get(request.ciaddr)
                    .is_some_and(|l| l.mac == mac)
                {
                    self.bind(request.ciaddr, mac, now, LeaseState::Released);
                }
                Err(Silence::Recorded.into())
            }
            MessageType::Decline => {
                if let Some(ip) = client.requested_ip
                    && self.leases.get(ip).is_some_and(|l| l.mac == mac)
                {
                    self.bind(
                        ip,
                        [0; 6],
                        now + self.config.decline_hold_secs,
                        LeaseState::Declined,
                    );
                }
                Err(Silence::Recorded.into())
            }
            MessageType::Inform => {
                let mut r = self.build(
                    request,
                    &client,
                    &pool,
                    MessageType::Ack,
                    Ipv4Addr::UNSPECIFIED,
                )?;
                if request.giaddr.is_unspecified() && !request.ciaddr.is_unspecified() {
                    r.to = Destination::Unicast(std::net::SocketAddrV4::new(
                        request.ciaddr,
                        reply::CLIENT_PORT,
                    ));
                }
                Ok(r)
            }
            _ => Err(Silence::NotForUs.into()),
        }
    }
}
