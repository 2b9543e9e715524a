//! vDisks over iSCSI: any [`vhd::Disk`] as an [`iscsi::BlockDevice`] ([`DiskLun`], what
//! `iscsi-serve` serves), and the [`iscsi::session::Catalog`] that opens device sessions
//! for iSCSI logins ([`SessionTargets`]), exactly as [`super::nbd::SessionExports`]
//! does for NBD export names.
//!
//! # Names and secrets
//!
//! | iSCSI | carries | made by |
//! | --- | --- | --- |
//! | InitiatorName `iqn.2026-01.org.provision.device:52-54-00-00-00-01` | the device's MAC | [`initiator_name`] / [`initiator_mac`] (any prefix: the MAC after the last `:`) |
//! | TargetName `iqn.2026-01.org.provision:lab` | the vDisk | [`target_name`] |
//! | CHAP secret (16 characters) | the boot token, or the attach secret | [`chap_secret`] |
//!
//! The device's iPXE script (see [`super::tftp::ipxe_script`]) sets `initiator-iqn`,
//! `username` and `password` and `sanboot`s the target; iPXE hands the same values to
//! the booted OS in its iBFT, so the OS's initiator logs in to the same session. The
//! CHAP secret is derived from the token (MD5 over a label and the token, 96 bits as 16
//! base64url characters) because Windows' initiator takes secrets of 12 to 16
//! characters only; a hypervisor or a static initiator uses the one of the device's
//! attach secret (`chap_secret(attach secret)`). CHAP_N is not checked: the secret alone
//! proves the boot, as the token does in an NBD export name.
//!
//! # Refusals (login status, RFC 7143 §11.13.5)
//!
//! - 0x0201 authentication failure: an initiator name without a MAC, an unknown MAC,
//!   no CHAP, or a secret that is neither the current boot's nor the attach secret
//!   (also the previous boot's: a new boot ends the old one's sessions and their
//!   connections, and its secret opens nothing any more);
//! - 0x0202 authorization failure: a disabled device, a session refused by the
//!   device's boot (its write cache is gone);
//! - 0x0203 not found: a vDisk that is not assigned to the device (or has no version);
//! - 0x0301 service unavailable: the image cannot be opened.

use std::io;
use std::sync::Arc;

use iscsi::scsi::{Identity, Lu};
use iscsi::session::{Catalog, EndFuture, Grant, Lease, LoginAttempt, LoginRefusal, Security};
use nbd_proto::EndSignal;
use vhd::Disk;

use crate::boot::Token;
use crate::error::ErrorKind;
use crate::mac::Mac;
use crate::resolve::Refusal;
use crate::session::{Sessions, Transport};
use crate::store::Store;

/// The prefix of the target names of vDisks.
pub const TARGET_PREFIX: &str = "iqn.2026-01.org.provision:";

/// The prefix of the initiator names the devices' scripts set.
pub const INITIATOR_PREFIX: &str = "iqn.2026-01.org.provision.device:";

/// The target name of a vDisk: [`TARGET_PREFIX`] and the name in lower case, `_` as
/// `-` (iSCSI names allow neither upper case nor `_`, RFC 3722).
///
/// ```
/// use provision_core::adapters::iscsi::target_name;
/// assert_eq!(target_name("Win_11.lab"), "iqn.2026-01.org.provision:win-11.lab");
/// ```
pub fn target_name(vdisk: &str) -> String {
    let name: String = vdisk
        .chars()
        .map(|c| {
            if c == '_' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    format!("{TARGET_PREFIX}{name}")
}

/// The initiator name a device's script gives it: [`INITIATOR_PREFIX`] and the MAC
/// with dashes.
///
/// ```
/// use provision_core::{Mac, adapters::iscsi::{initiator_mac, initiator_name}};
/// let mac = Mac([0x52, 0x54, 0, 0xab, 0, 1]);
/// assert_eq!(initiator_name(mac), "iqn.2026-01.org.provision.device:52-54-00-ab-00-01");
/// assert_eq!(initiator_mac(&initiator_name(mac)), Some(mac));
/// assert_eq!(initiator_mac("iqn.1993-08.org.debian:01:52-54-00-ab-00-01"), Some(mac));
/// assert_eq!(initiator_mac("iqn.1993-08.org.debian:01:abcdef"), None);
/// ```
pub fn initiator_name(mac: Mac) -> String {
    format!("{INITIATOR_PREFIX}{}", mac.to_string().replace(':', "-"))
}

/// The MAC an initiator name carries after its last `:` (dashes between the bytes).
pub fn initiator_mac(initiator: &str) -> Option<Mac> {
    let tail = initiator.rsplit(':').next()?;
    if tail.len() != 17 || tail.bytes().filter(|&b| b == b'-').count() != 5 {
        return None;
    }
    tail.replace('-', ":").parse().ok()
}

/// The CHAP secret of a boot token or an attach secret: 16 characters (96 bits), the
/// most Windows' initiator accepts.
///
/// ```
/// use provision_core::{Token, adapters::iscsi::chap_secret};
/// let token: Token = "00112233445566778899aabbccddeeff".parse().unwrap();
/// let secret = chap_secret(&token);
/// assert_eq!(secret.len(), 16);
/// assert!(secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
/// assert_ne!(secret, chap_secret(&Token::random()));
/// ```
pub fn chap_secret(token: &Token) -> String {
    let digest = iscsi::digest::md5(&[
        b"provision iSCSI CHAP secret\0",
        token.to_string().as_bytes(),
    ]);
    base64url(&digest[..12])
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 3);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
        }
    }
    out
}

/// A [`Disk`] as an [`iscsi::BlockDevice`].
pub struct DiskLun {
    disk: Arc<dyn Disk>,
}

impl DiskLun {
    /// A logical unit's device over `disk`.
    pub fn new(disk: Arc<dyn Disk>) -> DiskLun {
        DiskLun { disk }
    }
}

fn io_err(e: vhd::Error) -> io::Error {
    e.to_io_error()
}

impl iscsi::BlockDevice for DiskLun {
    fn size(&self) -> u64 {
        self.disk.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.disk.read_at(buf, offset).map_err(io_err)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.disk.write_at(buf, offset).map_err(io_err)
    }
    fn flush(&self) -> io::Result<()> {
        self.disk.flush().map_err(io_err)
    }
    fn read_only(&self) -> bool {
        self.disk.is_read_only()
    }
    /// UNMAP is served by writing zeros: the disk's trim is advisory, and the LUN
    /// reports that unmapped blocks read as zeros (LBPRZ).
    fn can_unmap(&self) -> bool {
        !self.disk.is_read_only()
    }
    fn unmap(&self, offset: u64, len: u64) -> io::Result<()> {
        self.disk.write_zeroes(offset, len).map_err(io_err)
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        self.disk.write_zeroes(offset, len).map_err(io_err)
    }
}

/// Most iSCSI connections one session admits (iPXE's, then the OS's; a reconnect).
pub const CONNECTIONS_PER_SESSION: usize = super::nbd::CONNECTIONS_PER_SESSION;

/// Opens device sessions for iSCSI logins (see the module's documentation).
pub struct SessionTargets {
    sessions: Sessions,
    store: Arc<Store>,
}

/// The end of a session, as the iSCSI driver waits for it.
struct SessionLease(EndSignal);

impl Lease for SessionLease {
    fn ended(&self) -> EndFuture {
        Box::pin(self.0.ended())
    }
}

fn auth_failed(message: String) -> LoginRefusal {
    LoginRefusal::AuthenticationFailed(message)
}

impl SessionTargets {
    /// A catalog over `sessions` of `store`'s devices.
    pub fn new(sessions: Sessions, store: Arc<Store>) -> SessionTargets {
        SessionTargets { sessions, store }
    }

    /// The MAC of a login's initiator, or why there is none.
    fn mac(initiator: &str) -> Result<Mac, LoginRefusal> {
        initiator_mac(initiator).ok_or_else(|| {
            auth_failed(format!(
                "initiator `{initiator}` names no device: initiator names end with the \
                 device's MAC, as in `{}`",
                initiator_name(Mac([0x52, 0x54, 0, 0, 0, 1]))
            ))
        })
    }

    /// The token (current boot's or attach secret) whose CHAP secret the initiator used.
    fn credential(&self, mac: Mac, attempt: &LoginAttempt<'_>) -> Result<Token, LoginRefusal> {
        let Some(proof) = &attempt.chap else {
            return Err(auth_failed(format!("{mac}: CHAP is required")));
        };
        let platform = |e: crate::Error| LoginRefusal::Unavailable(e.to_string());
        // An unknown device holds no secret: its login fails as a wrong secret does.
        if self.store.device_with_mac(mac).map_err(platform)?.is_none() {
            return Err(auth_failed(format!("no device has the MAC {mac}")));
        }
        let boot = self.sessions.current_boot(mac).map_err(platform)?;
        let attach = self
            .store
            .attach_secret(&mac.to_string())
            .map_err(platform)?;
        boot.map(|b| b.token)
            .into_iter()
            .chain(attach)
            .find(|token| proof.verifies(chap_secret(token).as_bytes()))
            .ok_or_else(|| {
                auth_failed(format!(
                    "{mac}: the CHAP secret is neither the current boot's nor the device's \
                     attach secret (a device that has booted again since, an unknown device, \
                     or an initiator that is not that device)"
                ))
            })
    }
}

impl Catalog for SessionTargets {
    fn security(&self, initiator: &str, _target: Option<&str>) -> Result<Security, LoginRefusal> {
        Self::mac(initiator)?;
        Ok(Security::Chap)
    }

    fn login(&self, attempt: &LoginAttempt<'_>) -> Result<Grant, LoginRefusal> {
        let mac = Self::mac(attempt.initiator)?;
        let token = self.credential(mac, attempt)?;
        let facts = self
            .store
            .boot_facts(mac)
            .map_err(|e| LoginRefusal::Unavailable(e.to_string()))?;
        let plan = facts.plan().map_err(|refusal| match refusal {
            Refusal::Disabled { .. } => LoginRefusal::Forbidden(refusal.to_string()),
            Refusal::UnknownDevice(_) => auth_failed(refusal.to_string()),
            _ => LoginRefusal::NotFound(refusal.to_string()),
        })?;
        let bootable = plan.entries.iter().filter(|e| e.disk.is_ok());
        let Some(target) = attempt.target else {
            // Discovery: the targets of the device's bootable vDisks.
            let targets = bootable.map(|e| target_name(&e.assignment.vdisk)).collect();
            return Ok(Grant {
                lu: None,
                targets,
                lease: None,
                label: format!("discovery of {} ({mac})", plan.device.name),
            });
        };
        let Some(entry) = bootable
            .clone()
            .find(|e| target_name(&e.assignment.vdisk).eq_ignore_ascii_case(target))
        else {
            return Err(LoginRefusal::NotFound(format!(
                "{} ({mac}) has no bootable vDisk with target name `{target}` (assigned: {})",
                plan.device.name,
                bootable
                    .map(|e| target_name(&e.assignment.vdisk))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let vdisk = entry.assignment.vdisk.as_str();
        let session = self
            .sessions
            .open_over(mac, vdisk, &token, Transport::Iscsi)
            .map_err(|e| match e.kind() {
                ErrorKind::NotFound => LoginRefusal::NotFound(e.to_string()),
                ErrorKind::Refused | ErrorKind::Conflict | ErrorKind::Invalid => {
                    LoginRefusal::Forbidden(e.to_string())
                }
                _ => LoginRefusal::Unavailable(e.to_string()),
            })?;
        // Ours plus the connections' references.
        if Arc::strong_count(&session) > CONNECTIONS_PER_SESSION {
            return Err(LoginRefusal::Forbidden(format!(
                "{} ({mac}) already has {CONNECTIONS_PER_SESSION} connections to `{vdisk}`",
                plan.device.name
            )));
        }
        let info = session.info().clone();
        let target = target_name(vdisk);
        let lease = Arc::new(SessionLease(session.end_signal()));
        let lu = Lu::new(
            Arc::new(DiskLun::new(session)),
            Identity::for_target(&target),
        );
        Ok(Grant {
            lu: Some(Arc::new(lu)),
            targets: vec![target],
            lease: Some(lease),
            label: format!(
                "{} on {} ({}), boot {}, version {}, {:?}",
                info.vdisk, info.device, info.mac, info.boot, info.version, info.mode
            ),
        })
    }
}
