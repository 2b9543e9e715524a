//! The full feature phase (RFC 7143 §4.2, §11): the CmdSN window, SCSI commands with
//! immediate, unsolicited and solicited (R2T) data, Data-In with phase-collapsed
//! status, NOP, task management, text (SendTargets) and logout.

use std::collections::{HashMap, VecDeque};

use super::{Connection, Event, Phase, SessionType, sn_lt};
use crate::error::Error;
use crate::scsi::{Outcome, Sense, status};
use crate::wire::text;
use crate::wire::{
    BHS_LEN, Bhs, DataIn, DataOut, LogoutRequest, LogoutResponse, NopIn, NopOut, Pdu, R2t,
    RESERVED_TAG, ScsiCommand, ScsiResponse, TaskMgmtRequest, TaskMgmtResponse, TextRequest,
    TextResponse, reject_reason, tmf,
};

/// The largest Expected Data Transfer Length of a write this target buffers: a command
/// that announces more is answered with CHECK CONDITION before any data phase.
const MAX_WRITE_BYTES: u32 = crate::scsi::MAX_TRANSFER_BYTES;
/// Aborted task tags remembered so that their late Data-Out is dropped quietly.
const ABORTED_REMEMBERED: usize = 256;

/// A write waiting for its data.
#[derive(Debug)]
struct WriteTask {
    lun: u64,
    cdb: [u8; 16],
    expected_len: u32,
    data: Vec<u8>,
    /// Unsolicited Data-Out may still come (F not yet seen, InitialR2T=No).
    unsolicited_open: bool,
    /// The R2T outstanding: its TTT, and where its burst ends.
    r2t: Option<(u32, u32)>,
    r2t_sn: u32,
    /// The DataSN the next Data-Out must carry: 0 at the start of the unsolicited
    /// burst and of each R2T's burst (§11.7.5).
    next_data_sn: u32,
    cmd_sn: u32,
}

/// The tasks of a connection in full feature phase.
#[derive(Debug, Default)]
pub(super) struct Tasks {
    writes: HashMap<u32, WriteTask>,
    /// Writes that need an R2T, in arrival order; only the front one has one
    /// outstanding, which bounds the write data a connection buffers.
    r2t_queue: VecDeque<u32>,
    next_ttt: u32,
    aborted: VecDeque<u32>,
}

impl Tasks {
    pub(super) fn buffered_bytes(&self) -> usize {
        self.writes.values().map(|t| t.data.capacity()).sum()
    }

    fn forget(&mut self, itt: u32) {
        self.writes.remove(&itt);
        self.r2t_queue.retain(|&t| t != itt);
        if self.aborted.len() == ABORTED_REMEMBERED {
            self.aborted.pop_front();
        }
        self.aborted.push_back(itt);
    }
}

/// What to do with a command's CmdSN (§4.2.2.1).
enum Order {
    Run,
    Ignore,
}

impl Connection {
    pub(super) fn handle_full_pdu(&mut self, pdu: Pdu, raw: &[u8; BHS_LEN]) -> Result<(), Error> {
        let discovery = self.session_type == SessionType::Discovery;
        match pdu.bhs {
            Bhs::ScsiCommand(cmd) if !discovery => {
                if let Order::Run = self.order(cmd.immediate, cmd.cmd_sn) {
                    self.scsi_command(cmd, pdu.data, raw);
                }
            }
            Bhs::DataOut(d) if !discovery => self.data_out(d, pdu.data, raw)?,
            Bhs::NopOut(nop) => {
                if let Order::Run = self.order(nop.immediate, nop.cmd_sn) {
                    self.nop_out(nop, pdu.data);
                }
            }
            Bhs::TaskMgmtRequest(req) if !discovery => {
                if let Order::Run = self.order(req.immediate, req.cmd_sn) {
                    self.task_management(req);
                }
            }
            Bhs::TextRequest(req) => {
                if let Order::Run = self.order(req.immediate, req.cmd_sn) {
                    self.text(req, &pdu.data, raw);
                }
            }
            Bhs::LogoutRequest(req) => {
                if let Order::Run = self.order(req.immediate, req.cmd_sn) {
                    self.logout(req);
                }
            }
            Bhs::SnackRequest(_) => {
                // ErrorRecoveryLevel 0: no SNACK (§7.1.4.1).
                self.reject(reject_reason::PROTOCOL_ERROR, raw);
            }
            Bhs::LoginRequest(_) => {
                // A login on a logged-in connection (§6.3): reject, end the connection.
                self.reject(reject_reason::PROTOCOL_ERROR, raw);
                return Err(Error::Protocol(
                    "Login request in full feature phase".into(),
                ));
            }
            Bhs::ScsiCommand(_) | Bhs::DataOut(_) | Bhs::TaskMgmtRequest(_) => {
                // A discovery session carries text and logout only (§4.3).
                self.reject(reject_reason::PROTOCOL_ERROR, raw);
            }
            _ => self.reject(reject_reason::COMMAND_NOT_SUPPORTED, raw),
        }
        Ok(())
    }

    /// Checks a non-immediate CmdSN against the window and advances ExpCmdSN. A CmdSN
    /// outside [ExpCmdSN, MaxCmdSN] is silently ignored (§4.2.2.1).
    fn order(&mut self, immediate: bool, cmd_sn: u32) -> Order {
        if immediate {
            return Order::Run;
        }
        if sn_lt(cmd_sn, self.exp_cmd_sn) || sn_lt(self.max_cmd_sn(), cmd_sn) {
            tracing::debug!(
                cmd_sn,
                exp = self.exp_cmd_sn,
                "CmdSN outside the window: ignored"
            );
            return Order::Ignore;
        }
        self.exp_cmd_sn = cmd_sn.wrapping_add(1);
        Order::Run
    }

    fn scsi_command(&mut self, cmd: ScsiCommand, data: Vec<u8>, raw: &[u8; BHS_LEN]) {
        if !cmd.write {
            if !data.is_empty() {
                self.reject(reject_reason::PROTOCOL_ERROR, raw);
                return;
            }
            let Some(lu) = self.lu() else {
                self.reject(reject_reason::PROTOCOL_ERROR, raw);
                return;
            };
            let outcome = lu.execute(cmd.lun, &cmd.cdb, &[]);
            self.respond(&cmd, outcome, 0);
            return;
        }
        if cmd.read {
            // Bidirectional commands are not part of the block command set here.
            self.respond(&cmd, check(Sense::INVALID_FIELD_IN_CDB), 0);
            return;
        }
        let edtl = cmd.expected_len;
        let immediate_ok = self.params.immediate_data || data.is_empty();
        if !immediate_ok
            || data.len() > edtl as usize
            || data.len() > self.params.first_burst_length as usize
        {
            self.reject(reject_reason::PROTOCOL_ERROR, raw);
            return;
        }
        let unsolicited_open = !self.params.initial_r2t && !cmd.final_;
        if edtl > MAX_WRITE_BYTES {
            // Answered now; any unsolicited data that follows is dropped.
            self.full.forget(cmd.itt);
            self.respond(&cmd, check(Sense::INVALID_FIELD_IN_CDB), 0);
            return;
        }
        let task = WriteTask {
            lun: cmd.lun,
            cdb: cmd.cdb,
            expected_len: edtl,
            data,
            unsolicited_open,
            r2t: None,
            r2t_sn: 0,
            next_data_sn: 0,
            cmd_sn: cmd.cmd_sn,
        };
        let itt = cmd.itt;
        if task.data.len() == edtl as usize {
            self.run_write(itt, task);
            return;
        }
        let needs_r2t = !unsolicited_open;
        self.full.writes.insert(itt, task);
        if needs_r2t {
            self.full.r2t_queue.push_back(itt);
            self.next_r2t();
        }
    }

    fn data_out(&mut self, d: DataOut, data: Vec<u8>, raw: &[u8; BHS_LEN]) -> Result<(), Error> {
        let first_burst = self.params.first_burst_length as usize;
        let Some(task) = self.full.writes.get_mut(&d.itt) else {
            if d.ttt == RESERVED_TAG || self.full.aborted.contains(&d.itt) {
                // Unsolicited data of a command already answered, or of an aborted one.
                return Ok(());
            }
            self.reject(reject_reason::INVALID_PDU_FIELD, raw);
            return Ok(());
        };
        if d.data_sn != task.next_data_sn {
            // A DataSN out of sequence: ErrorRecoveryLevel 0 has no recovery within the
            // command (§7.1.4.1). The PDU is rejected and the task dropped (its later
            // Data-Out quietly), so the command never completes and the initiator's
            // own timeout aborts it; the connection and its other tasks go on. (Closing
            // the connection instead kills initiators that write without MSG_NOSIGNAL,
            // such as libiscsi's test tool, with SIGPIPE.)
            tracing::debug!(
                itt = d.itt,
                data_sn = d.data_sn,
                expected = task.next_data_sn,
                "DataSN out of sequence"
            );
            self.full.forget(d.itt);
            self.reject(reject_reason::PROTOCOL_ERROR, raw);
            self.next_r2t();
            return Ok(());
        }
        task.next_data_sn = task.next_data_sn.wrapping_add(1);
        // DataPDUInOrder=Yes: each PDU continues where the last ended.
        let ok_offset = d.buffer_offset as usize == task.data.len();
        let end = task.data.len() + data.len();
        let ok = if d.ttt == RESERVED_TAG {
            task.unsolicited_open && end <= first_burst
        } else {
            task.r2t
                .is_some_and(|(ttt, burst_end)| ttt == d.ttt && end <= burst_end as usize)
        };
        if !ok_offset || !ok || end > task.expected_len as usize {
            self.reject(reject_reason::INVALID_PDU_FIELD, raw);
            return Ok(());
        }
        task.data.extend_from_slice(&data);
        let done = task.data.len() == task.expected_len as usize;
        if d.ttt == RESERVED_TAG {
            if d.final_ {
                task.unsolicited_open = false;
                if !done {
                    self.full.r2t_queue.push_back(d.itt);
                }
            }
        } else if d.final_ || task.r2t.is_some_and(|(_, e)| e as usize == task.data.len()) {
            task.r2t = None;
        }
        if done && let Some(task) = self.full.writes.remove(&d.itt) {
            self.full.r2t_queue.retain(|&t| t != d.itt);
            self.run_write(d.itt, task);
        }
        self.next_r2t();
        Ok(())
    }

    /// Sends the next R2T when the front write of the queue has none outstanding.
    fn next_r2t(&mut self) {
        let Some(&itt) = self.full.r2t_queue.front() else {
            return;
        };
        let max_burst = self.params.max_burst_length;
        let exp_cmd_sn = self.exp_cmd_sn;
        let max_cmd_sn = self.max_cmd_sn();
        let stat_sn = self.stat_sn;
        let ttt = self.full.next_ttt;
        let Some(task) = self.full.writes.get_mut(&itt) else {
            self.full.r2t_queue.pop_front();
            return;
        };
        if task.r2t.is_some() {
            return;
        }
        let offset = task.data.len() as u32;
        let len = (task.expected_len - offset).min(max_burst);
        task.r2t = Some((ttt, offset + len));
        task.next_data_sn = 0;
        let r2t_sn = task.r2t_sn;
        task.r2t_sn = task.r2t_sn.wrapping_add(1);
        let lun = task.lun;
        self.full.next_ttt = ttt.wrapping_add(1) % RESERVED_TAG;
        if offset + len == task.expected_len {
            // The last burst of this task: the next write may have its R2T once this
            // one's data is in.
            self.full.r2t_queue.pop_front();
        }
        self.send(&Pdu::new(Bhs::R2t(R2t {
            lun,
            itt,
            ttt,
            stat_sn,
            exp_cmd_sn,
            max_cmd_sn,
            r2t_sn,
            buffer_offset: offset,
            desired_len: len,
        })));
    }

    fn run_write(&mut self, itt: u32, task: WriteTask) {
        let Some(lu) = self.lu() else {
            return;
        };
        let outcome = lu.execute(task.lun, &task.cdb, &task.data);
        let cmd = ScsiCommand {
            immediate: false,
            final_: true,
            read: false,
            write: true,
            attr: 0,
            lun: task.lun,
            itt,
            expected_len: task.expected_len,
            cmd_sn: task.cmd_sn,
            exp_stat_sn: 0,
            cdb: task.cdb,
        };
        let used = crate::scsi::data_out_len(&task.cdb, lu.device().block_size());
        self.respond(&cmd, outcome, used.unwrap_or(u64::from(task.expected_len)));
    }

    /// Sends a command's data and status: Data-In PDUs no longer than the initiator's
    /// MaxRecvDataSegmentLength, F at the end of each MaxBurstLength sequence, and the
    /// status in the last one when it is GOOD (§11.7.4); otherwise a SCSI Response with
    /// the sense. `write_len` is the data-out length the CDB asked for (residuals).
    fn respond(&mut self, cmd: &ScsiCommand, outcome: Outcome, write_len: u64) {
        let edtl = u64::from(cmd.expected_len);
        let wanted = if cmd.write {
            write_len
        } else {
            outcome.data.len() as u64
        };
        let (overflow, underflow, residual) = if wanted > edtl {
            (true, false, (wanted - edtl).min(u64::from(u32::MAX)) as u32)
        } else if wanted < edtl && (outcome.status == status::GOOD || !cmd.write) {
            (false, true, (edtl - wanted) as u32)
        } else {
            (false, false, 0)
        };
        let mut data = outcome.data;
        data.truncate(if cmd.read || !cmd.write {
            edtl as usize
        } else {
            0
        });
        let seg = self.params.initiator_mrdsl.max(512) as usize;
        let burst = self.params.max_burst_length.max(512) as usize;
        let collapse = outcome.status == status::GOOD && !data.is_empty();
        let mut offset = 0;
        let mut data_sn = 0u32;
        while offset < data.len() {
            let in_burst = burst - offset % burst;
            let n = (data.len() - offset).min(seg).min(in_burst);
            let last = offset + n == data.len();
            let end_of_burst = n == in_burst;
            let with_status = last && collapse;
            let stat_sn = if with_status { self.next_stat_sn() } else { 0 };
            let bhs = DataIn {
                final_: last || end_of_burst,
                ack: false,
                overflow: with_status && overflow,
                underflow: with_status && underflow,
                has_status: with_status,
                status: if with_status { outcome.status } else { 0 },
                lun: cmd.lun,
                itt: cmd.itt,
                ttt: RESERVED_TAG,
                stat_sn,
                exp_cmd_sn: self.exp_cmd_sn,
                max_cmd_sn: self.max_cmd_sn(),
                data_sn,
                buffer_offset: offset as u32,
                residual: if with_status { residual } else { 0 },
            };
            self.send(&Pdu::with_data(
                Bhs::DataIn(bhs),
                data[offset..offset + n].to_vec(),
            ));
            offset += n;
            data_sn = data_sn.wrapping_add(1);
        }
        if collapse {
            return;
        }
        let sense = outcome.sense.map(|s| {
            let fixed = s.fixed();
            let mut v = (fixed.len() as u16).to_be_bytes().to_vec();
            v.extend_from_slice(&fixed);
            v
        });
        let bhs = ScsiResponse {
            bidi_overflow: false,
            bidi_underflow: false,
            overflow,
            underflow,
            response: 0,
            status: outcome.status,
            itt: cmd.itt,
            snack_tag: 0,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            exp_data_sn: data_sn,
            bidi_residual: 0,
            residual,
        };
        self.send(&Pdu::with_data(
            Bhs::ScsiResponse(bhs),
            sense.unwrap_or_default(),
        ));
    }

    fn nop_out(&mut self, nop: NopOut, data: Vec<u8>) {
        if nop.itt == RESERVED_TAG {
            return; // an answer to a NOP-In of ours, or a one-way NOP: nothing to send
        }
        let mut data = data;
        data.truncate(self.params.initiator_mrdsl as usize);
        let bhs = NopIn {
            lun: nop.lun,
            itt: nop.itt,
            ttt: RESERVED_TAG,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
        };
        self.send(&Pdu::with_data(Bhs::NopIn(bhs), data));
    }

    /// Task management (§11.5, §11.6). Commands other than writes waiting for data have
    /// already completed when a request arrives, since they run as they are received.
    fn task_management(&mut self, req: TaskMgmtRequest) {
        const COMPLETE: u8 = 0;
        const NO_TASK: u8 = 1;
        const NO_LUN: u8 = 2;
        const REASSIGN_UNSUPPORTED: u8 = 4;
        const UNSUPPORTED: u8 = 5;
        let lun_scoped = matches!(
            req.function,
            tmf::ABORT_TASK
                | tmf::ABORT_TASK_SET
                | tmf::CLEAR_ACA
                | tmf::CLEAR_TASK_SET
                | tmf::LOGICAL_UNIT_RESET
        );
        let mut close = false;
        let response = if lun_scoped && req.lun != 0 {
            NO_LUN
        } else {
            match req.function {
                tmf::ABORT_TASK => {
                    if self.full.writes.contains_key(&req.referenced_tag) {
                        self.full.forget(req.referenced_tag);
                        COMPLETE
                    } else if !sn_lt(req.ref_cmd_sn, self.exp_cmd_sn)
                        && sn_lt(req.ref_cmd_sn, req.cmd_sn)
                    {
                        // Not received yet: consider it received and aborted (§11.5.1).
                        COMPLETE
                    } else {
                        NO_TASK
                    }
                }
                tmf::ABORT_TASK_SET
                | tmf::CLEAR_TASK_SET
                | tmf::LOGICAL_UNIT_RESET
                | tmf::TARGET_WARM_RESET
                | tmf::TARGET_COLD_RESET => {
                    let tags: Vec<u32> = self.full.writes.keys().copied().collect();
                    for t in tags {
                        self.full.forget(t);
                    }
                    close = req.function == tmf::TARGET_COLD_RESET;
                    COMPLETE
                }
                tmf::CLEAR_ACA => COMPLETE,
                tmf::TASK_REASSIGN => REASSIGN_UNSUPPORTED,
                _ => UNSUPPORTED,
            }
        };
        let bhs = TaskMgmtResponse {
            response,
            itt: req.itt,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
        };
        self.send(&Pdu::new(Bhs::TaskMgmtResponse(bhs)));
        if close {
            // TARGET COLD RESET ends the connection after the response (§11.5.1).
            self.phase = Phase::Closed;
        }
    }

    /// The logical unit the login was given (normal sessions).
    fn lu(&self) -> Option<std::sync::Arc<crate::scsi::Lu>> {
        self.grant.as_ref().and_then(|g| g.lu.clone())
    }

    /// Text requests: SendTargets (§13.3, appendix C).
    fn text(&mut self, req: TextRequest, data: &[u8], raw: &[u8; BHS_LEN]) {
        if req.cont || (req.ttt != RESERVED_TAG) {
            // Multi-PDU text exchanges are not needed for SendTargets' short answer.
            self.reject(reject_reason::PROTOCOL_ERROR, raw);
            return;
        }
        let Ok(pairs) = text::parse(data) else {
            self.reject(reject_reason::INVALID_PDU_FIELD, raw);
            return;
        };
        let target = self.target.clone();
        let cfg = target.config();
        let names = self
            .grant
            .as_ref()
            .map(|g| g.targets.clone())
            .unwrap_or_default();
        let mut answers = Vec::new();
        for (key, value) in pairs {
            if key != "SendTargets" {
                answers.push((key, "NotUnderstood".to_owned()));
                continue;
            }
            for name in &names {
                let all = value == "All" && self.session_type == SessionType::Discovery;
                let this = value.is_empty() || value.eq_ignore_ascii_case(name);
                if all || this {
                    answers.push(("TargetName".to_owned(), name.clone()));
                    let portal = if cfg.portal.is_empty() {
                        &self.portal
                    } else {
                        &cfg.portal
                    };
                    if !portal.is_empty() {
                        answers.push(("TargetAddress".to_owned(), portal.clone()));
                    }
                }
            }
        }
        let bhs = TextResponse {
            final_: true,
            cont: false,
            lun: req.lun,
            itt: req.itt,
            ttt: RESERVED_TAG,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
        };
        self.send(&Pdu::with_data(
            Bhs::TextResponse(bhs),
            text::emit(&answers),
        ));
    }

    fn logout(&mut self, req: LogoutRequest) {
        // 0: session closed; 2: connection recovery is not supported at ERL 0.
        let response = if req.reason == 2 { 2 } else { 0 };
        let bhs = LogoutResponse {
            response,
            itt: req.itt,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            time2wait: 0,
            time2retain: 0,
        };
        self.send(&Pdu::new(Bhs::LogoutResponse(bhs)));
        self.full = Tasks::default();
        self.phase = Phase::Closed;
        self.events.push_back(Event::LoggedOut);
    }
}

fn check(sense: Sense) -> Outcome {
    Outcome {
        status: status::CHECK_CONDITION,
        data: Vec::new(),
        sense: Some(sense),
    }
}
