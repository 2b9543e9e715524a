//! Who may log in to what: a target's [`Catalog`] is asked, during login, which
//! authentication a login needs and, once the initiator has proven itself, which
//! logical unit it gets (the iSCSI sibling of `nbd_proto::ExportProvider`).
//!
//! ```text
//!  first login request (InitiatorName, SessionType, TargetName)
//!      └─▶ Catalog::security ──▶ Security::None | Security::Chap | LoginRefusal
//!  CHAP_N + CHAP_R (or leaving the security stage with AuthMethod=None)
//!      └─▶ Catalog::login(LoginAttempt { .., chap: Some(ChapProof) }) ──▶ Grant | LoginRefusal
//! ```
//!
//! The session never sees a secret it does not hold: a CHAP login hands the catalog a
//! [`ChapProof`] (the challenge and the initiator's response) that the catalog checks
//! against the secrets it knows with [`ChapProof::verifies`]. [`SingleTarget`] is the
//! catalog of one fixed target (`iscsi-serve`); `provision-core` has the catalog of
//! devices and their vDisks.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::ChapCredentials;
use crate::digest::md5;
use crate::scsi::Lu;

/// How an initiator must authenticate (AuthMethod, RFC 7143 §12.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// AuthMethod=None.
    None,
    /// AuthMethod=CHAP (CHAP_A=5, MD5).
    Chap,
}

/// Why a login is refused: the login status class and detail (RFC 7143 §11.13.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginRefusal {
    /// 0x0201: the initiator could not be authenticated.
    AuthenticationFailed(String),
    /// 0x0202: authenticated, but not allowed this target (a disabled device).
    Forbidden(String),
    /// 0x0203: no such target for this initiator.
    NotFound(String),
    /// 0x0301: the target cannot serve now (an image that cannot be opened).
    Unavailable(String),
}

impl LoginRefusal {
    /// Status-Class and Status-Detail of the login response.
    pub fn status(&self) -> (u8, u8) {
        match self {
            LoginRefusal::AuthenticationFailed(_) => (2, 0x01),
            LoginRefusal::Forbidden(_) => (2, 0x02),
            LoginRefusal::NotFound(_) => (2, 0x03),
            LoginRefusal::Unavailable(_) => (3, 0x01),
        }
    }

    /// What was wrong, for the log.
    pub fn message(&self) -> &str {
        match self {
            LoginRefusal::AuthenticationFailed(m)
            | LoginRefusal::Forbidden(m)
            | LoginRefusal::NotFound(m)
            | LoginRefusal::Unavailable(m) => m,
        }
    }
}

impl fmt::Display for LoginRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (class, detail) = self.status();
        write!(
            f,
            "login status {class:02x}{detail:02x}: {}",
            self.message()
        )
    }
}

/// An initiator's answer to our CHAP challenge (RFC 1994 §4.1: MD5 over the
/// identifier, the secret and the challenge).
pub struct ChapProof<'a> {
    /// CHAP_N, the name the initiator gave.
    pub user: &'a str,
    pub(super) id: u8,
    pub(super) challenge: &'a [u8],
    pub(super) response: &'a [u8],
}

impl ChapProof<'_> {
    /// True when the initiator's response was made with `secret`. Compares in constant
    /// time.
    pub fn verifies(&self, secret: &[u8]) -> bool {
        let expected = md5(&[&[self.id], secret, self.challenge]);
        self.response.len() == expected.len()
            && self
                .response
                .iter()
                .zip(expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl fmt::Debug for ChapProof<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChapProof")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// A login that has passed its security stage's negotiation.
#[derive(Debug)]
pub struct LoginAttempt<'a> {
    /// InitiatorName.
    pub initiator: &'a str,
    /// TargetName (normal sessions; `None` for discovery).
    pub target: Option<&'a str>,
    /// The initiator's CHAP answer, when [`Catalog::security`] asked for CHAP.
    pub chap: Option<ChapProof<'a>>,
}

/// A future that completes when a granted session must end (its device booted again):
/// the driver then closes the connection.
pub type EndFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Makes [`EndFuture`]s for one granted session.
pub trait Lease: Send + Sync {
    /// Completes when the session must end.
    fn ended(&self) -> EndFuture;
}

/// What a login is given.
#[derive(Clone)]
pub struct Grant {
    /// The logical unit of a normal session (`None` for discovery).
    pub lu: Option<Arc<Lu>>,
    /// The target names SendTargets answers.
    pub targets: Vec<String>,
    /// Ends the connection when the session it serves ends.
    pub lease: Option<Arc<dyn Lease>>,
    /// A short description for logs ("vdisk on device (mac), boot N").
    pub label: String,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("targets", &self.targets)
            .field("label", &self.label)
            .field("lease", &self.lease.is_some())
            .finish_non_exhaustive()
    }
}

/// Decides logins: which authentication they need and what they get. Called
/// synchronously from the session (like `nbd_proto::ExportProvider::open`); the
/// driver runs the session where blocking is allowed.
pub trait Catalog: Send + Sync {
    /// The authentication the login of `initiator` (to `target`, `None` for a
    /// discovery session) must use, or a refusal before any authentication.
    fn security(&self, initiator: &str, target: Option<&str>) -> Result<Security, LoginRefusal>;
    /// What an authenticated login gets. With [`Security::Chap`] the catalog must check
    /// `attempt.chap` itself ([`ChapProof::verifies`]).
    fn login(&self, attempt: &LoginAttempt<'_>) -> Result<Grant, LoginRefusal>;
}

/// One target with one logical unit, for everyone (or everyone with its CHAP secret).
pub struct SingleTarget {
    name: String,
    chap: Option<ChapCredentials>,
    lu: Arc<Lu>,
}

impl SingleTarget {
    /// The target `name` serving `lu`; `chap` makes CHAP mandatory.
    pub fn new(name: String, chap: Option<ChapCredentials>, lu: Arc<Lu>) -> SingleTarget {
        SingleTarget { name, chap, lu }
    }
}

impl Catalog for SingleTarget {
    fn security(&self, _initiator: &str, target: Option<&str>) -> Result<Security, LoginRefusal> {
        if let Some(t) = target
            && t != self.name
        {
            return Err(LoginRefusal::NotFound(format!(
                "no target `{t}` here (this is `{}`)",
                self.name
            )));
        }
        Ok(if self.chap.is_some() {
            Security::Chap
        } else {
            Security::None
        })
    }

    fn login(&self, attempt: &LoginAttempt<'_>) -> Result<Grant, LoginRefusal> {
        if let Some(creds) = &self.chap {
            let ok = attempt
                .chap
                .as_ref()
                .is_some_and(|p| p.user == creds.user && p.verifies(&creds.secret));
            if !ok {
                return Err(LoginRefusal::AuthenticationFailed(format!(
                    "wrong CHAP name or secret from `{}`",
                    attempt.initiator
                )));
            }
        }
        Ok(Grant {
            lu: attempt.target.map(|_| self.lu.clone()),
            targets: vec![self.name.clone()],
            lease: None,
            label: self.name.clone(),
        })
    }
}
