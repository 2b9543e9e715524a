//! The sans-IO target side of one iSCSI connection: bytes in ([`Connection::handle_input`]),
//! bytes out ([`Connection::poll_transmit`]), events out ([`Connection::poll_event`]).
//!
//! ```text
//!            login request(s)                 final login response (T, NSG=3)
//!  [Login] ----------------------> [Login] -------------------------------> [FullFeature]
//!     |  security (0) -> operational (1)  |                                     |
//!     |  a failed login: response with a status class, then Closed             | logout
//!     v                                                                         v
//!  [Closed] <-------------------------------------------------------------- [Closed]
//! ```
//!
//! One connection per session (MaxConnections=1), ErrorRecoveryLevel 0: a digest error
//! or a malformed PDU ends the connection (after a Reject where RFC 7143 §7 asks for one).
//! SCSI commands run synchronously on the [`crate::scsi::Lu`] (as `nbd-proto`'s
//! transmission calls its `Export`): the driver decides on which thread.

mod catalog;
mod full;
mod login;
mod params;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

pub use catalog::{
    Catalog, ChapProof, EndFuture, Grant, Lease, LoginAttempt, LoginRefusal, Security, SingleTarget,
};
pub use params::Params;

use crate::error::Error;
use crate::scsi::Lu;
use crate::wire::{BHS_LEN, Digests, Pdu};

/// CHAP credentials: a name and its secret (RFC 1994; RFC 7143 §12.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChapCredentials {
    /// CHAP_N.
    pub user: String,
    /// The shared secret (at least 12 bytes per RFC 7143 §12.1.3; not enforced here).
    pub secret: Vec<u8>,
}

/// What a target offers and requires.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    /// The target's iSCSI name (`iqn.…`).
    pub target_name: String,
    /// The TargetAddress answered to SendTargets (`host:port,tpgt`); the driver fills in
    /// the address a connection came in on when this is empty.
    pub portal: String,
    /// Initiators must authenticate with these (CHAP, one-way) when set; used by
    /// [`Target::new`] only (a [`Catalog`] decides otherwise).
    pub chap: Option<ChapCredentials>,
    /// The target's own credentials, sent when the initiator asks for mutual CHAP.
    pub mutual_chap: Option<ChapCredentials>,
    /// Our MaxRecvDataSegmentLength: the largest data segment we accept.
    pub max_recv_data_segment_length: u32,
    /// Our largest MaxBurstLength.
    pub max_burst_length: u32,
    /// Our largest FirstBurstLength.
    pub first_burst_length: u32,
    /// Commands the initiator may have outstanding (MaxCmdSN - ExpCmdSN + 1).
    pub queue_depth: u32,
}

impl TargetConfig {
    /// A target named `target_name` with the defaults.
    pub fn new(target_name: impl Into<String>) -> TargetConfig {
        TargetConfig {
            target_name: target_name.into(),
            portal: String::new(),
            chap: None,
            mutual_chap: None,
            max_recv_data_segment_length: 256 * 1024,
            max_burst_length: 1024 * 1024,
            first_burst_length: 64 * 1024,
            queue_depth: 32,
        }
    }
}

/// A portal's targets: the configuration shared by its connections and the
/// [`Catalog`] that decides their logins.
pub struct Target {
    config: TargetConfig,
    catalog: Arc<dyn Catalog>,
    next_tsih: AtomicU16,
}

impl Target {
    /// One target, `config.target_name`, serving `lu` as LUN 0 (CHAP when
    /// `config.chap` is set): a [`SingleTarget`].
    pub fn new(config: TargetConfig, lu: Arc<Lu>) -> Target {
        let single = SingleTarget::new(config.target_name.clone(), config.chap.clone(), lu);
        Target::with_catalog(config, Arc::new(single))
    }

    /// Targets decided by `catalog` (`config.target_name` and `config.chap` are not
    /// used).
    pub fn with_catalog(config: TargetConfig, catalog: Arc<dyn Catalog>) -> Target {
        Target {
            config,
            catalog,
            next_tsih: AtomicU16::new(1),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TargetConfig {
        &self.config
    }

    fn new_tsih(&self) -> u16 {
        loop {
            let t = self.next_tsih.fetch_add(1, Ordering::Relaxed);
            if t != 0 {
                return t;
            }
        }
    }
}

/// Discovery or normal (SessionType, RFC 7143 §13.21).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionType {
    /// SendTargets only.
    Discovery,
    /// SCSI commands to the target's LUN.
    Normal,
}

/// What the connection tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Login finished: the connection is in full feature phase.
    LoggedIn {
        /// InitiatorName.
        initiator: String,
        /// The session's type.
        session_type: SessionType,
        /// The TSIH given to it.
        tsih: u16,
    },
    /// Login failed with this status class and detail (RFC 7143 §11.13.5).
    LoginFailed {
        /// Status-Class.
        class: u8,
        /// Status-Detail.
        detail: u8,
    },
    /// The initiator logged out.
    LoggedOut,
}

#[derive(Debug)]
enum Phase {
    Login(Box<login::LoginState>),
    FullFeature,
    Closed,
}

/// The target side of one connection.
pub struct Connection {
    target: Arc<Target>,
    phase: Phase,
    input: Vec<u8>,
    output: Vec<u8>,
    events: VecDeque<Event>,
    digests: Digests,
    params: Params,
    session_type: SessionType,
    stat_sn: u32,
    exp_cmd_sn: u32,
    full: full::Tasks,
    portal: String,
    /// What the login was given (the LU, SendTargets' names, the lease).
    grant: Option<Grant>,
}

impl Connection {
    /// A new connection. `challenge` seeds the CHAP challenge: give it fresh random bytes.
    pub fn new(target: Arc<Target>, challenge: [u8; 16]) -> Connection {
        Connection {
            target,
            phase: Phase::Login(Box::new(login::LoginState::new(challenge))),
            input: Vec::new(),
            output: Vec::new(),
            events: VecDeque::new(),
            digests: Digests::default(),
            params: Params::default(),
            session_type: SessionType::Normal,
            stat_sn: 1,
            exp_cmd_sn: 0,
            full: full::Tasks::default(),
            portal: String::new(),
            grant: None,
        }
    }

    /// The TargetAddress this connection answers to SendTargets when the target's
    /// configuration names none (the driver gives the address the connection came in on).
    pub fn set_portal(&mut self, portal: String) {
        self.portal = portal;
    }

    /// Feeds bytes received from the initiator; runs every complete PDU. An error ends
    /// the connection (send what [`Connection::poll_transmit`] still holds, then close).
    pub fn handle_input(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.input.extend_from_slice(bytes);
        let mut used = 0;
        let result = loop {
            if self.is_closed() {
                break Ok(());
            }
            let max = self.max_data_in();
            let rest = &self.input[used..];
            match Pdu::parse(rest, self.digests, max) {
                Ok(Some((pdu, n))) => {
                    let mut raw = [0u8; BHS_LEN];
                    raw.copy_from_slice(&rest[..BHS_LEN]);
                    used += n;
                    if let Err(e) = self.handle_pdu(pdu, &raw) {
                        break Err(e);
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => {
                    // A data digest error is answered with a Reject (RFC 7143 §7.8); at
                    // ErrorRecoveryLevel 0 the connection then ends.
                    if let (
                        Error::Digest {
                            structure: "data", ..
                        },
                        Some(raw),
                    ) = (&e, rest.get(..BHS_LEN))
                    {
                        let mut h = [0u8; BHS_LEN];
                        h.copy_from_slice(raw);
                        self.reject(crate::wire::reject_reason::DATA_DIGEST_ERROR, &h);
                    }
                    break Err(e);
                }
            }
        };
        self.input.drain(..used);
        if result.is_err() {
            self.phase = Phase::Closed;
        }
        result
    }

    /// Bytes waiting to be sent, appended to `out`; false when there were none.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        if self.output.is_empty() {
            return false;
        }
        if out.is_empty() {
            std::mem::swap(out, &mut self.output);
        } else {
            out.append(&mut self.output);
        }
        true
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// True once the connection is over: after logout, a failed login or an error. The
    /// driver sends what is left and closes.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// True while the connection is still logging in (the driver bounds how long).
    pub fn is_logging_in(&self) -> bool {
        matches!(self.phase, Phase::Login(_))
    }

    /// What the login was given, once it finished.
    pub fn grant(&self) -> Option<&Grant> {
        self.grant.as_ref()
    }

    /// The operational parameters in force.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Bytes of received input not yet a whole PDU, plus write data held for tasks:
    /// what this connection costs in buffers.
    pub fn buffered_bytes(&self) -> usize {
        self.input.len() + self.full.buffered_bytes() + self.output.len()
    }

    fn max_data_in(&self) -> usize {
        match self.phase {
            // RFC 7143 §13.12: during login the limit is 8192 until declared otherwise.
            Phase::Login(_) => 8192,
            _ => self.target.config.max_recv_data_segment_length as usize,
        }
    }

    fn max_cmd_sn(&self) -> u32 {
        self.exp_cmd_sn
            .wrapping_add(self.target.config.queue_depth.max(1) - 1)
    }

    fn next_stat_sn(&mut self) -> u32 {
        let s = self.stat_sn;
        self.stat_sn = self.stat_sn.wrapping_add(1);
        s
    }

    fn send(&mut self, pdu: &Pdu) {
        if let Err(e) = pdu.emit(self.digests, &mut self.output) {
            // Only our own PDUs go here, and their lengths are bounded by construction.
            tracing::error!(error = %e, "cannot emit a PDU");
        }
    }

    fn reject(&mut self, reason: u8, raw: &[u8; BHS_LEN]) {
        let bhs = crate::wire::Bhs::Reject(crate::wire::Reject {
            reason,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            data_sn: 0,
        });
        self.send(&Pdu::with_data(bhs, raw.to_vec()));
    }

    fn handle_pdu(&mut self, pdu: Pdu, raw: &[u8; BHS_LEN]) -> Result<(), Error> {
        match self.phase {
            Phase::Login(_) => self.handle_login_pdu(pdu),
            Phase::FullFeature => self.handle_full_pdu(pdu, raw),
            Phase::Closed => Ok(()),
        }
    }
}

/// Serial number arithmetic (RFC 1982, 32 bits): `a < b`.
pub(crate) fn sn_lt(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < (1 << 31)
}

#[cfg(test)]
mod tests;
