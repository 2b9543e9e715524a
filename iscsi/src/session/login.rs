//! The login phase (RFC 7143 §6): security negotiation (AuthMethod None or CHAP with
//! CHAP_A=5, one-way or mutual, §12.1.3), operational negotiation ([`super::params`]),
//! and the stage transitions carried by the T bit, CSG and NSG.

use super::catalog::{ChapProof, Grant, LoginAttempt, Security};
use super::params::Answer;
use super::{Connection, Event, Phase, SessionType};
use crate::digest::md5;
use crate::error::Error;
use crate::wire::text::{self, Pairs};
use crate::wire::{Bhs, Digests, LoginRequest, LoginResponse, Pdu};

/// Stages (CSG/NSG values).
const SECURITY: u8 = 0;
const OPERATIONAL: u8 = 1;
const FULL_FEATURE: u8 = 3;

/// The most text one login request may carry across its continuation PDUs.
const MAX_LOGIN_TEXT: usize = 64 * 1024;

/// Login status class and detail (RFC 7143 §11.13.5).
mod status {
    pub const AUTH_FAILED: (u8, u8) = (2, 0x01);
    pub const UNSUPPORTED_VERSION: (u8, u8) = (2, 0x05);
    pub const MISSING_PARAMETER: (u8, u8) = (2, 0x07);
    pub const SESSION_DOES_NOT_EXIST: (u8, u8) = (2, 0x0a);
    pub const INVALID_DURING_LOGIN: (u8, u8) = (2, 0x0b);
    pub const INITIATOR_ERROR: (u8, u8) = (2, 0x00);
}

#[derive(Debug, PartialEq, Eq)]
enum Auth {
    /// Nothing negotiated yet.
    Start,
    /// AuthMethod=CHAP chosen; waiting for CHAP_A.
    ChapChosen,
    /// Challenge sent; waiting for CHAP_N and CHAP_R.
    ChapChallenged { id: u8, challenge: [u8; 16] },
    /// Authenticated (or no authentication needed).
    Done,
}

/// The state of a connection that has not finished logging in.
#[derive(Debug)]
pub(super) struct LoginState {
    first: Option<LoginRequest>,
    pending_text: Vec<u8>,
    initiator_name: Option<String>,
    target_name: Option<String>,
    /// What the catalog asked of this login, once the first request named it.
    security: Option<Security>,
    /// What the catalog gave the login once it authenticated.
    grant: Option<Grant>,
    auth: Auth,
    challenge_seed: [u8; 16],
    sent_mrdsl: bool,
    sent_tpgt: bool,
}

impl LoginState {
    pub(super) fn new(challenge_seed: [u8; 16]) -> LoginState {
        LoginState {
            first: None,
            pending_text: Vec::new(),
            initiator_name: None,
            target_name: None,
            security: None,
            grant: None,
            auth: Auth::Start,
            challenge_seed,
            sent_mrdsl: false,
            sent_tpgt: false,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::from("0x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Decodes a CHAP binary value: `0x` hex or `0b` base64 (RFC 7143 §6.1).
fn decode_binary(v: &str) -> Option<Vec<u8>> {
    if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        if h.is_empty() || h.len() > 2048 {
            return None;
        }
        let h = if h.len() % 2 == 1 {
            format!("0{h}")
        } else {
            h.to_owned()
        };
        return (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).ok())
            .collect();
    }
    if let Some(b) = v.strip_prefix("0b").or_else(|| v.strip_prefix("0B")) {
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u32, 0);
        for c in b.bytes().take_while(|&c| c != b'=') {
            let d = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => return None,
            };
            acc = (acc << 6) | u32::from(d);
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        return (!out.is_empty()).then_some(out);
    }
    None
}

/// A constant-time comparison (reflected challenges).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Connection {
    pub(super) fn handle_login_pdu(&mut self, pdu: Pdu) -> Result<(), Error> {
        let Bhs::LoginRequest(req) = pdu.bhs else {
            // Only Login requests are allowed before the login completes (§6.3).
            self.fail_login(None, status::INVALID_DURING_LOGIN);
            return Ok(());
        };
        let Phase::Login(state) = &mut self.phase else {
            return Ok(());
        };
        if state.first.is_none() {
            self.exp_cmd_sn = req.cmd_sn;
            state.first = Some(req.clone());
            if req.version_min > 0 {
                self.fail_login(Some(&req), status::UNSUPPORTED_VERSION);
                return Ok(());
            }
            if req.tsih != 0 {
                // Adding a connection to an existing session (MaxConnections=1).
                self.fail_login(Some(&req), status::SESSION_DOES_NOT_EXIST);
                return Ok(());
            }
        }
        let Phase::Login(state) = &mut self.phase else {
            return Ok(());
        };
        if state.pending_text.len() + pdu.data.len() > MAX_LOGIN_TEXT {
            self.fail_login(Some(&req), status::INITIATOR_ERROR);
            return Ok(());
        }
        state.pending_text.extend_from_slice(&pdu.data);
        if req.cont {
            // More text follows: an empty response asks for it (§11.12.2).
            let resp = self.login_response(&req, false, req.csg, req.nsg, Vec::new());
            self.send(&resp);
            return Ok(());
        }
        let text = std::mem::take(&mut state.pending_text);
        let pairs = match text::parse(&text) {
            Ok(p) => p,
            Err(_) => {
                self.fail_login(Some(&req), status::INITIATOR_ERROR);
                return Ok(());
            }
        };
        match self.negotiate_login(&req, &pairs) {
            Ok((answers, transit)) => {
                let nsg = if transit { req.nsg } else { req.csg };
                let data = text::emit(&answers);
                let resp = self.login_response(&req, transit, req.csg, nsg, data);
                self.send(&resp);
                if transit && req.nsg == FULL_FEATURE {
                    self.enter_full_feature(&resp);
                }
            }
            Err(code) => self.fail_login(Some(&req), code),
        }
        Ok(())
    }

    /// Runs the keys of one login request; answers the keys to send and whether the
    /// target agrees to the transit the initiator asked for.
    fn negotiate_login(
        &mut self,
        req: &LoginRequest,
        pairs: &Pairs,
    ) -> Result<(Pairs, bool), (u8, u8)> {
        let target = self.target.clone();
        let cfg = target.config();
        let mut answers: Pairs = Vec::new();
        let Phase::Login(state) = &mut self.phase else {
            return Err(status::INVALID_DURING_LOGIN);
        };
        if req.csg != SECURITY && req.csg != OPERATIONAL {
            return Err(status::INVALID_DURING_LOGIN);
        }
        if req.transit && (req.nsg <= req.csg || req.nsg == 2) {
            return Err(status::INVALID_DURING_LOGIN);
        }
        let mut chap_n = None;
        let mut chap_r = None;
        let mut chap_i = None;
        let mut chap_c = None;
        // The names first, whatever their order: the catalog decides on them. Once
        // given, a name cannot change (a login is for one initiator and one target).
        for (key, value) in pairs {
            let name = match key.as_str() {
                "InitiatorName" => &mut state.initiator_name,
                "TargetName" => &mut state.target_name,
                _ => continue,
            };
            if name.as_ref().is_some_and(|n| n != value) {
                return Err(status::INITIATOR_ERROR);
            }
            *name = Some(value.clone());
        }
        for (_, value) in pairs.iter().filter(|(key, _)| key == "SessionType") {
            self.session_type = match value.as_str() {
                "Discovery" => SessionType::Discovery,
                "Normal" => SessionType::Normal,
                _ => return Err(status::INITIATOR_ERROR),
            }
        }
        // The first request names the initiator (and for a normal session the target).
        let Some(initiator) = state.initiator_name.clone() else {
            return Err(status::MISSING_PARAMETER);
        };
        let target_name = match self.session_type {
            SessionType::Normal => match &state.target_name {
                Some(t) => Some(t.clone()),
                None => return Err(status::MISSING_PARAMETER),
            },
            SessionType::Discovery => None,
        };
        let security = match state.security {
            Some(s) => s,
            None => {
                let s = target
                    .catalog
                    .security(&initiator, target_name.as_deref())
                    .map_err(|refusal| {
                        tracing::info!(%initiator, target = ?target_name, %refusal, "iSCSI login refused");
                        refusal.status()
                    })?;
                state.security = Some(s);
                s
            }
        };
        for (key, value) in pairs {
            match key.as_str() {
                "InitiatorName" | "InitiatorAlias" | "SessionType" | "TargetName" => {}
                "AuthMethod" if req.csg == SECURITY => {
                    let offered: Vec<&str> = value.split(',').collect();
                    let pick = if security == Security::Chap {
                        offered.iter().find(|m| **m == "CHAP")
                    } else {
                        offered.iter().find(|m| **m == "None")
                    };
                    match pick {
                        Some(&m) => {
                            answers.push((key.clone(), m.to_owned()));
                            state.auth = if m == "CHAP" {
                                Auth::ChapChosen
                            } else {
                                Auth::Done
                            };
                        }
                        None => return Err(status::AUTH_FAILED),
                    }
                }
                "CHAP_A" if state.auth == Auth::ChapChosen => {
                    if !value.split(',').any(|a| a == "5") {
                        return Err(status::AUTH_FAILED);
                    }
                    let id = state.challenge_seed[0];
                    let challenge = state.challenge_seed;
                    answers.push(("CHAP_A".into(), "5".into()));
                    answers.push(("CHAP_I".into(), id.to_string()));
                    answers.push(("CHAP_C".into(), hex(&challenge)));
                    state.auth = Auth::ChapChallenged { id, challenge };
                }
                "CHAP_N" => chap_n = Some(value.clone()),
                "CHAP_R" => chap_r = Some(value.clone()),
                "CHAP_I" => chap_i = Some(value.clone()),
                "CHAP_C" => chap_c = Some(value.clone()),
                _ => match self.params.negotiate(key, value, cfg) {
                    Some(Answer::Value(v)) => answers.push((key.clone(), v)),
                    Some(Answer::None) => {}
                    None if key.starts_with("X-") || key.starts_with("X#") => {
                        answers.push((key.clone(), "NotUnderstood".into()));
                    }
                    None if matches!(
                        key.as_str(),
                        "TargetAlias" | "TargetAddress" | "TargetPortalGroupTag"
                    ) =>
                    {
                        // Keys only a target may send (§13.7-§13.9).
                        return Err(status::INITIATOR_ERROR);
                    }
                    None => answers.push((key.clone(), "NotUnderstood".into())),
                },
            }
        }
        let Phase::Login(state) = &mut self.phase else {
            return Err(status::INVALID_DURING_LOGIN);
        };
        let refused = |refusal: super::LoginRefusal| {
            tracing::info!(%initiator, target = ?target_name, %refusal, "iSCSI login refused");
            refusal.status()
        };
        if let Auth::ChapChallenged { id, challenge } = state.auth {
            if let (Some(n), Some(r)) = (&chap_n, &chap_r) {
                let got = decode_binary(r).ok_or(status::AUTH_FAILED)?;
                let attempt = LoginAttempt {
                    initiator: &initiator,
                    target: target_name.as_deref(),
                    chap: Some(ChapProof {
                        user: n,
                        id,
                        challenge: &challenge,
                        response: &got,
                    }),
                };
                state.grant = Some(target.catalog.login(&attempt).map_err(refused)?);
                // Mutual CHAP: the initiator challenges us in the same request.
                if let (Some(i), Some(c)) = (&chap_i, &chap_c) {
                    let Some(ours) = &cfg.mutual_chap else {
                        return Err(status::AUTH_FAILED);
                    };
                    let id: u8 = i.parse().map_err(|_| status::AUTH_FAILED)?;
                    let c = decode_binary(c).ok_or(status::AUTH_FAILED)?;
                    if same(&c, &challenge) {
                        // A reflected challenge (§12.1.3).
                        return Err(status::AUTH_FAILED);
                    }
                    answers.push(("CHAP_N".into(), ours.user.clone()));
                    answers.push(("CHAP_R".into(), hex(&md5(&[&[id], &ours.secret, &c]))));
                }
                state.auth = Auth::Done;
            } else if chap_n.is_some() || chap_r.is_some() {
                return Err(status::AUTH_FAILED);
            }
        }
        // Leaving the security stage needs a finished authentication; a target that
        // requires CHAP refuses an initiator that starts in the operational stage.
        if req.csg == OPERATIONAL || req.transit {
            match state.auth {
                Auth::Done => {}
                Auth::Start if security == Security::None => state.auth = Auth::Done,
                Auth::Start => return Err(status::AUTH_FAILED),
                _ if req.csg == OPERATIONAL => return Err(status::AUTH_FAILED),
                _ => {}
            }
        }
        if state.auth == Auth::Done && state.grant.is_none() {
            // No authentication: the catalog decides on the names alone.
            let attempt = LoginAttempt {
                initiator: &initiator,
                target: target_name.as_deref(),
                chap: None,
            };
            state.grant = Some(target.catalog.login(&attempt).map_err(refused)?);
        }
        if !state.sent_tpgt && self.session_type == SessionType::Normal {
            state.sent_tpgt = true;
            answers.push(("TargetPortalGroupTag".into(), "1".into()));
        }
        if req.csg == OPERATIONAL && !state.sent_mrdsl {
            state.sent_mrdsl = true;
            answers.push((
                "MaxRecvDataSegmentLength".into(),
                cfg.max_recv_data_segment_length.to_string(),
            ));
        }
        let transit = req.transit && state.auth == Auth::Done;
        Ok((answers, transit))
    }

    fn login_response(
        &mut self,
        req: &LoginRequest,
        transit: bool,
        csg: u8,
        nsg: u8,
        data: Vec<u8>,
    ) -> Pdu {
        let tsih = 0;
        let bhs = LoginResponse {
            transit,
            cont: false,
            csg,
            nsg: if transit { nsg } else { 0 },
            version_max: 0,
            version_active: 0,
            isid: req.isid,
            tsih,
            itt: req.itt,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            status_class: 0,
            status_detail: 0,
        };
        Pdu::with_data(Bhs::LoginResponse(bhs), data)
    }

    fn enter_full_feature(&mut self, resp: &Pdu) {
        // The TSIH goes in the final response (§11.13.3): patch the one just queued.
        let tsih = self.target.new_tsih();
        let mut final_resp = resp.clone();
        if let Bhs::LoginResponse(r) = &mut final_resp.bhs {
            r.tsih = tsih;
        }
        let len = resp.encoded_len(self.digests);
        let start = self.output.len() - len;
        self.output.truncate(start);
        self.send(&final_resp);
        let (initiator, grant) = match &mut self.phase {
            Phase::Login(s) => (s.initiator_name.clone().unwrap_or_default(), s.grant.take()),
            _ => (String::new(), None),
        };
        self.grant = grant;
        self.params.finish();
        self.digests = Digests {
            header: self.params.header_digest,
            data: self.params.data_digest,
        };
        self.phase = Phase::FullFeature;
        tracing::debug!(%initiator, tsih, session_type = ?self.session_type, "iSCSI login");
        self.events.push_back(Event::LoggedIn {
            initiator,
            session_type: self.session_type,
            tsih,
        });
    }

    fn fail_login(&mut self, req: Option<&LoginRequest>, (class, detail): (u8, u8)) {
        let first = match &self.phase {
            Phase::Login(s) => s.first.clone(),
            _ => None,
        };
        let (isid, itt, csg) = req
            .or(first.as_ref())
            .map(|r| (r.isid, r.itt, r.csg))
            .unwrap_or(([0; 6], 0, 0));
        let bhs = LoginResponse {
            transit: false,
            cont: false,
            csg,
            nsg: 0,
            version_max: 0,
            version_active: 0,
            isid,
            tsih: 0,
            itt,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            status_class: class,
            status_detail: detail,
        };
        self.send(&Pdu::new(Bhs::LoginResponse(bhs)));
        tracing::debug!(class, detail, "iSCSI login failed");
        self.events.push_back(Event::LoginFailed { class, detail });
        self.phase = Phase::Closed;
    }
}
