//! The Basic Header Segment (RFC 7143 §11.2.1): one struct per opcode, each with `parse`
//! from and `emit` into 48 bytes. The AHS and data segment lengths are framing and live
//! in [`crate::wire::Pdu`]; unknown opcodes keep their 48 bytes ([`Bhs::Unknown`]).

use crate::error::Error;

/// The length of a Basic Header Segment.
pub const BHS_LEN: usize = 48;
/// The Initiator Task Tag and Target Transfer Tag value that means "none".
pub const RESERVED_TAG: u32 = 0xffff_ffff;

/// Opcodes (RFC 7143 §11.2.1.2).
pub mod opcode {
    /// NOP-Out.
    pub const NOP_OUT: u8 = 0x00;
    /// SCSI Command.
    pub const SCSI_COMMAND: u8 = 0x01;
    /// SCSI Task Management Function Request.
    pub const TASK_MGMT_REQUEST: u8 = 0x02;
    /// Login Request.
    pub const LOGIN_REQUEST: u8 = 0x03;
    /// Text Request.
    pub const TEXT_REQUEST: u8 = 0x04;
    /// SCSI Data-Out.
    pub const DATA_OUT: u8 = 0x05;
    /// Logout Request.
    pub const LOGOUT_REQUEST: u8 = 0x06;
    /// SNACK Request.
    pub const SNACK_REQUEST: u8 = 0x10;
    /// NOP-In.
    pub const NOP_IN: u8 = 0x20;
    /// SCSI Response.
    pub const SCSI_RESPONSE: u8 = 0x21;
    /// SCSI Task Management Function Response.
    pub const TASK_MGMT_RESPONSE: u8 = 0x22;
    /// Login Response.
    pub const LOGIN_RESPONSE: u8 = 0x23;
    /// Text Response.
    pub const TEXT_RESPONSE: u8 = 0x24;
    /// SCSI Data-In.
    pub const DATA_IN: u8 = 0x25;
    /// Logout Response.
    pub const LOGOUT_RESPONSE: u8 = 0x26;
    /// Ready To Transfer.
    pub const R2T: u8 = 0x31;
    /// Asynchronous Message.
    pub const ASYNC_MESSAGE: u8 = 0x32;
    /// Reject.
    pub const REJECT: u8 = 0x3f;
}

// Offsets shared by every opcode (RFC 7143 §11.2.1).
const OPCODE: usize = 0;
const FLAGS: usize = 1;
const TOTAL_AHS_LEN: usize = 4;
const DATA_SEGMENT_LEN: usize = 5;
const LUN: usize = 8;
const ITT: usize = 16;
// Offsets of fields several opcodes share.
const TTT: usize = 20;
const W24: usize = 24;
const W28: usize = 28;
const W32: usize = 32;
const W36: usize = 36;
const W40: usize = 40;
const W44: usize = 44;

const IMMEDIATE_BIT: u8 = 0x40;
const FINAL_BIT: u8 = 0x80;

fn u16_at(b: &[u8; BHS_LEN], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8; BHS_LEN], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8; BHS_LEN], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}
fn put16(b: &mut [u8; BHS_LEN], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}
fn put32(b: &mut [u8; BHS_LEN], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
fn put64(b: &mut [u8; BHS_LEN], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

/// The framing fields of a BHS: AHS length in bytes and data segment length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// TotalAHSLength in bytes (the field counts 4-byte words).
    pub ahs_len: usize,
    /// DataSegmentLength in bytes, without padding.
    pub data_len: usize,
}

impl Framing {
    /// Reads the framing fields of a BHS.
    pub fn parse(b: &[u8; BHS_LEN]) -> Framing {
        Framing {
            ahs_len: usize::from(b[TOTAL_AHS_LEN]) * 4,
            data_len: (usize::from(b[DATA_SEGMENT_LEN]) << 16)
                | (usize::from(b[DATA_SEGMENT_LEN + 1]) << 8)
                | usize::from(b[DATA_SEGMENT_LEN + 2]),
        }
    }

    /// Writes the framing fields; errors when a length does not fit its field.
    pub fn emit(&self, b: &mut [u8; BHS_LEN]) -> Result<(), Error> {
        if !self.ahs_len.is_multiple_of(4) || self.ahs_len > 255 * 4 {
            return Err(Error::invalid(
                "BHS",
                "TotalAHSLength",
                format!("{} bytes", self.ahs_len),
            ));
        }
        if self.data_len > 0x00ff_ffff {
            return Err(Error::TooLong {
                structure: "BHS",
                field: "DataSegmentLength",
                value: self.data_len,
                limit: 0x00ff_ffff,
            });
        }
        b[TOTAL_AHS_LEN] = (self.ahs_len / 4) as u8;
        b[DATA_SEGMENT_LEN] = (self.data_len >> 16) as u8;
        b[DATA_SEGMENT_LEN + 1] = (self.data_len >> 8) as u8;
        b[DATA_SEGMENT_LEN + 2] = self.data_len as u8;
        Ok(())
    }
}

/// NOP-Out (RFC 7143 §11.18).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NopOut {
    /// Immediate delivery (the I bit).
    pub immediate: bool,
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag (0xffffffff: not a ping, no answer).
    pub itt: u32,
    /// Target Transfer Tag (answers a NOP-In when not 0xffffffff).
    pub ttt: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
}

/// SCSI Command (RFC 7143 §11.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiCommand {
    /// Immediate delivery (the I bit).
    pub immediate: bool,
    /// The F bit: no unsolicited Data-Out follows.
    pub final_: bool,
    /// R: data flows to the initiator.
    pub read: bool,
    /// W: data flows to the target.
    pub write: bool,
    /// Task attributes (ATTR, 3 bits).
    pub attr: u8,
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Expected Data Transfer Length.
    pub expected_len: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// The first 16 bytes of the CDB (longer CDBs continue in an extended-CDB AHS).
    pub cdb: [u8; 16],
}

/// Task management function codes (RFC 7143 §11.5.1).
pub mod tmf {
    /// ABORT TASK.
    pub const ABORT_TASK: u8 = 1;
    /// ABORT TASK SET.
    pub const ABORT_TASK_SET: u8 = 2;
    /// CLEAR ACA.
    pub const CLEAR_ACA: u8 = 3;
    /// CLEAR TASK SET.
    pub const CLEAR_TASK_SET: u8 = 4;
    /// LOGICAL UNIT RESET.
    pub const LOGICAL_UNIT_RESET: u8 = 5;
    /// TARGET WARM RESET.
    pub const TARGET_WARM_RESET: u8 = 6;
    /// TARGET COLD RESET.
    pub const TARGET_COLD_RESET: u8 = 7;
    /// TASK REASSIGN.
    pub const TASK_REASSIGN: u8 = 8;
}

/// SCSI Task Management Function Request (RFC 7143 §11.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskMgmtRequest {
    /// Immediate delivery (the I bit).
    pub immediate: bool,
    /// The function (7 bits, see [`tmf`]).
    pub function: u8,
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Referenced Task Tag.
    pub referenced_tag: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// RefCmdSN.
    pub ref_cmd_sn: u32,
    /// ExpDataSN.
    pub exp_data_sn: u32,
}

/// Login Request (RFC 7143 §11.12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRequest {
    /// Transit (T).
    pub transit: bool,
    /// Continue (C): the text goes on in the next PDU.
    pub cont: bool,
    /// Current stage (CSG, 2 bits).
    pub csg: u8,
    /// Next stage (NSG, 2 bits).
    pub nsg: u8,
    /// Version-max.
    pub version_max: u8,
    /// Version-min.
    pub version_min: u8,
    /// ISID (6 bytes).
    pub isid: [u8; 6],
    /// TSIH.
    pub tsih: u16,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Connection ID.
    pub cid: u16,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
}

/// Text Request (RFC 7143 §11.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextRequest {
    /// Immediate delivery (the I bit).
    pub immediate: bool,
    /// Final (F).
    pub final_: bool,
    /// Continue (C).
    pub cont: bool,
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag.
    pub ttt: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
}

/// SCSI Data-Out (RFC 7143 §11.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataOut {
    /// Final (F): the last PDU of the sequence.
    pub final_: bool,
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag (0xffffffff for unsolicited data).
    pub ttt: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// DataSN.
    pub data_sn: u32,
    /// Buffer Offset.
    pub buffer_offset: u32,
}

/// Logout Request (RFC 7143 §11.14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutRequest {
    /// Immediate delivery (the I bit).
    pub immediate: bool,
    /// Reason code (7 bits: 0 close the session, 1 the connection, 2 for recovery).
    pub reason: u8,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Connection ID.
    pub cid: u16,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
}

/// SNACK Request (RFC 7143 §11.16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnackRequest {
    /// Type (4 bits).
    pub kind: u8,
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag or SNACK Tag.
    pub ttt: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// BegRun.
    pub beg_run: u32,
    /// RunLength.
    pub run_length: u32,
}

/// NOP-In (RFC 7143 §11.19).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NopIn {
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag.
    pub ttt: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
}

/// SCSI Response (RFC 7143 §11.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiResponse {
    /// o: bidirectional read residual overflow.
    pub bidi_overflow: bool,
    /// u: bidirectional read residual underflow.
    pub bidi_underflow: bool,
    /// O: residual overflow.
    pub overflow: bool,
    /// U: residual underflow.
    pub underflow: bool,
    /// iSCSI service response (0: command completed at target).
    pub response: u8,
    /// SCSI status.
    pub status: u8,
    /// Initiator Task Tag.
    pub itt: u32,
    /// SNACK Tag.
    pub snack_tag: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// ExpDataSN.
    pub exp_data_sn: u32,
    /// Bidirectional Read Residual Count.
    pub bidi_residual: u32,
    /// Residual Count.
    pub residual: u32,
}

/// SCSI Task Management Function Response (RFC 7143 §11.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskMgmtResponse {
    /// Response (0 function complete, 1 task does not exist, ...).
    pub response: u8,
    /// Initiator Task Tag.
    pub itt: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
}

/// Login Response (RFC 7143 §11.13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginResponse {
    /// Transit (T).
    pub transit: bool,
    /// Continue (C).
    pub cont: bool,
    /// Current stage.
    pub csg: u8,
    /// Next stage.
    pub nsg: u8,
    /// Version-max.
    pub version_max: u8,
    /// Version-active.
    pub version_active: u8,
    /// ISID.
    pub isid: [u8; 6],
    /// TSIH.
    pub tsih: u16,
    /// Initiator Task Tag.
    pub itt: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// Status-Class.
    pub status_class: u8,
    /// Status-Detail.
    pub status_detail: u8,
}

/// Text Response (RFC 7143 §11.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextResponse {
    /// Final (F).
    pub final_: bool,
    /// Continue (C).
    pub cont: bool,
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag.
    pub ttt: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
}

/// SCSI Data-In (RFC 7143 §11.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataIn {
    /// Final (F): the last PDU of a sequence.
    pub final_: bool,
    /// Acknowledge (A).
    pub ack: bool,
    /// Residual overflow (O, with S).
    pub overflow: bool,
    /// Residual underflow (U, with S).
    pub underflow: bool,
    /// Status (S): the PDU carries the command's status (phase collapse).
    pub has_status: bool,
    /// SCSI status (valid with S).
    pub status: u8,
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag.
    pub ttt: u32,
    /// StatSN (valid with S).
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// DataSN.
    pub data_sn: u32,
    /// Buffer Offset.
    pub buffer_offset: u32,
    /// Residual Count (valid with S).
    pub residual: u32,
}

/// Logout Response (RFC 7143 §11.15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutResponse {
    /// Response (0 closed successfully, 1 CID not found, 2 recovery not supported, 3 failed).
    pub response: u8,
    /// Initiator Task Tag.
    pub itt: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// Time2Wait.
    pub time2wait: u16,
    /// Time2Retain.
    pub time2retain: u16,
}

/// Ready To Transfer (RFC 7143 §11.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct R2t {
    /// LUN.
    pub lun: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag.
    pub ttt: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// R2TSN.
    pub r2t_sn: u32,
    /// Buffer Offset.
    pub buffer_offset: u32,
    /// Desired Data Transfer Length.
    pub desired_len: u32,
}

/// Asynchronous Message (RFC 7143 §11.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncMessage {
    /// LUN.
    pub lun: u64,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// AsyncEvent.
    pub event: u8,
    /// AsyncVCode.
    pub vcode: u8,
    /// Parameter1..3.
    pub parameters: [u16; 3],
}

/// Reject reasons (RFC 7143 §11.17.1).
pub mod reject_reason {
    /// Data (payload) digest error.
    pub const DATA_DIGEST_ERROR: u8 = 0x02;
    /// SNACK reject.
    pub const SNACK_REJECT: u8 = 0x03;
    /// Protocol error.
    pub const PROTOCOL_ERROR: u8 = 0x04;
    /// Command not supported.
    pub const COMMAND_NOT_SUPPORTED: u8 = 0x05;
    /// Immediate command reject: too many immediate commands.
    pub const IMMEDIATE_COMMAND_REJECT: u8 = 0x06;
    /// Task in progress.
    pub const TASK_IN_PROGRESS: u8 = 0x07;
    /// Invalid data ack.
    pub const INVALID_DATA_ACK: u8 = 0x08;
    /// Invalid PDU field.
    pub const INVALID_PDU_FIELD: u8 = 0x09;
    /// Long operation reject.
    pub const LONG_OP_REJECT: u8 = 0x0a;
    /// Waiting for logout.
    pub const WAITING_FOR_LOGOUT: u8 = 0x0c;
}

/// Reject (RFC 7143 §11.17); its data segment is the rejected PDU's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Reason (see [`reject_reason`]).
    pub reason: u8,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// DataSN/R2TSN.
    pub data_sn: u32,
}

/// A Basic Header Segment of any opcode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bhs {
    /// NOP-Out.
    NopOut(NopOut),
    /// SCSI Command.
    ScsiCommand(ScsiCommand),
    /// Task Management Function Request.
    TaskMgmtRequest(TaskMgmtRequest),
    /// Login Request.
    LoginRequest(LoginRequest),
    /// Text Request.
    TextRequest(TextRequest),
    /// SCSI Data-Out.
    DataOut(DataOut),
    /// Logout Request.
    LogoutRequest(LogoutRequest),
    /// SNACK Request.
    SnackRequest(SnackRequest),
    /// NOP-In.
    NopIn(NopIn),
    /// SCSI Response.
    ScsiResponse(ScsiResponse),
    /// Task Management Function Response.
    TaskMgmtResponse(TaskMgmtResponse),
    /// Login Response.
    LoginResponse(LoginResponse),
    /// Text Response.
    TextResponse(TextResponse),
    /// SCSI Data-In.
    DataIn(DataIn),
    /// Logout Response.
    LogoutResponse(LogoutResponse),
    /// R2T.
    R2t(R2t),
    /// Asynchronous Message.
    AsyncMessage(AsyncMessage),
    /// Reject.
    Reject(Reject),
    /// An opcode this crate does not know (vendor-specific or reserved): the header as is.
    Unknown {
        /// The opcode (6 bits).
        opcode: u8,
        /// The whole header, framing fields included.
        raw: Box<[u8; BHS_LEN]>,
    },
}

impl Bhs {
    /// The opcode.
    pub fn opcode(&self) -> u8 {
        use opcode::*;
        match self {
            Bhs::NopOut(_) => NOP_OUT,
            Bhs::ScsiCommand(_) => SCSI_COMMAND,
            Bhs::TaskMgmtRequest(_) => TASK_MGMT_REQUEST,
            Bhs::LoginRequest(_) => LOGIN_REQUEST,
            Bhs::TextRequest(_) => TEXT_REQUEST,
            Bhs::DataOut(_) => DATA_OUT,
            Bhs::LogoutRequest(_) => LOGOUT_REQUEST,
            Bhs::SnackRequest(_) => SNACK_REQUEST,
            Bhs::NopIn(_) => NOP_IN,
            Bhs::ScsiResponse(_) => SCSI_RESPONSE,
            Bhs::TaskMgmtResponse(_) => TASK_MGMT_RESPONSE,
            Bhs::LoginResponse(_) => LOGIN_RESPONSE,
            Bhs::TextResponse(_) => TEXT_RESPONSE,
            Bhs::DataIn(_) => DATA_IN,
            Bhs::LogoutResponse(_) => LOGOUT_RESPONSE,
            Bhs::R2t(_) => R2T,
            Bhs::AsyncMessage(_) => ASYNC_MESSAGE,
            Bhs::Reject(_) => REJECT,
            Bhs::Unknown { opcode, .. } => *opcode,
        }
    }

    /// The Initiator Task Tag (0xffffffff where the opcode has none).
    pub fn itt(&self) -> u32 {
        match self {
            Bhs::NopOut(p) => p.itt,
            Bhs::ScsiCommand(p) => p.itt,
            Bhs::TaskMgmtRequest(p) => p.itt,
            Bhs::LoginRequest(p) => p.itt,
            Bhs::TextRequest(p) => p.itt,
            Bhs::DataOut(p) => p.itt,
            Bhs::LogoutRequest(p) => p.itt,
            Bhs::SnackRequest(p) => p.itt,
            Bhs::NopIn(p) => p.itt,
            Bhs::ScsiResponse(p) => p.itt,
            Bhs::TaskMgmtResponse(p) => p.itt,
            Bhs::LoginResponse(p) => p.itt,
            Bhs::TextResponse(p) => p.itt,
            Bhs::DataIn(p) => p.itt,
            Bhs::LogoutResponse(p) => p.itt,
            Bhs::R2t(p) => p.itt,
            Bhs::AsyncMessage(_) | Bhs::Reject(_) => RESERVED_TAG,
            Bhs::Unknown { raw, .. } => u32_at(raw, ITT),
        }
    }

    /// Reads a header. Every 6-bit opcode parses (unknown ones as [`Bhs::Unknown`]);
    /// reserved bits are ignored.
    pub fn parse(b: &[u8; BHS_LEN]) -> Bhs {
        let op = b[OPCODE] & 0x3f;
        let immediate = b[OPCODE] & IMMEDIATE_BIT != 0;
        let f = b[FLAGS];
        let fin = f & FINAL_BIT != 0;
        let lun = u64_at(b, LUN);
        let itt = u32_at(b, ITT);
        match op {
            opcode::NOP_OUT => Bhs::NopOut(NopOut {
                immediate,
                lun,
                itt,
                ttt: u32_at(b, TTT),
                cmd_sn: u32_at(b, W24),
                exp_stat_sn: u32_at(b, W28),
            }),
            opcode::SCSI_COMMAND => {
                let mut cdb = [0u8; 16];
                cdb.copy_from_slice(&b[32..48]);
                Bhs::ScsiCommand(ScsiCommand {
                    immediate,
                    final_: fin,
                    read: f & 0x40 != 0,
                    write: f & 0x20 != 0,
                    attr: f & 0x07,
                    lun,
                    itt,
                    expected_len: u32_at(b, TTT),
                    cmd_sn: u32_at(b, W24),
                    exp_stat_sn: u32_at(b, W28),
                    cdb,
                })
            }
            opcode::TASK_MGMT_REQUEST => Bhs::TaskMgmtRequest(TaskMgmtRequest {
                immediate,
                function: f & 0x7f,
                lun,
                itt,
                referenced_tag: u32_at(b, TTT),
                cmd_sn: u32_at(b, W24),
                exp_stat_sn: u32_at(b, W28),
                ref_cmd_sn: u32_at(b, W32),
                exp_data_sn: u32_at(b, W36),
            }),
            opcode::LOGIN_REQUEST => {
                let mut isid = [0u8; 6];
                isid.copy_from_slice(&b[8..14]);
                Bhs::LoginRequest(LoginRequest {
                    transit: fin,
                    cont: f & 0x40 != 0,
                    csg: (f >> 2) & 3,
                    nsg: f & 3,
                    version_max: b[2],
                    version_min: b[3],
                    isid,
                    tsih: u16_at(b, 14),
                    itt,
                    cid: u16_at(b, TTT),
                    cmd_sn: u32_at(b, W24),
                    exp_stat_sn: u32_at(b, W28),
                })
            }
            opcode::TEXT_REQUEST => Bhs::TextRequest(TextRequest {
                immediate,
                final_: fin,
                cont: f & 0x40 != 0,
                lun,
                itt,
                ttt: u32_at(b, TTT),
                cmd_sn: u32_at(b, W24),
                exp_stat_sn: u32_at(b, W28),
            }),
            opcode::DATA_OUT => Bhs::DataOut(DataOut {
                final_: fin,
                lun,
                itt,
                ttt: u32_at(b, TTT),
                exp_stat_sn: u32_at(b, W28),
                data_sn: u32_at(b, W36),
                buffer_offset: u32_at(b, W40),
            }),
            opcode::LOGOUT_REQUEST => Bhs::LogoutRequest(LogoutRequest {
                immediate,
                reason: f & 0x7f,
                itt,
                cid: u16_at(b, TTT),
                cmd_sn: u32_at(b, W24),
                exp_stat_sn: u32_at(b, W28),
            }),
            opcode::SNACK_REQUEST => Bhs::SnackRequest(SnackRequest {
                kind: f & 0x0f,
                lun,
                itt,
                ttt: u32_at(b, TTT),
                exp_stat_sn: u32_at(b, W28),
                beg_run: u32_at(b, W40),
                run_length: u32_at(b, W44),
            }),
            opcode::NOP_IN => Bhs::NopIn(NopIn {
                lun,
                itt,
                ttt: u32_at(b, TTT),
                stat_sn: u32_at(b, W24),
                exp_cmd_sn: u32_at(b, W28),
                max_cmd_sn: u32_at(b, W32),
            }),
            opcode::SCSI_RESPONSE => Bhs::ScsiResponse(ScsiResponse {
                bidi_overflow: f & 0x10 != 0,
                bidi_underflow: f & 0x08 != 0,
                overflow: f & 0x04 != 0,
                underflow: f & 0x02 != 0,
                response: b[2],
                status: b[3],
                itt,
                snack_tag: u32_at(b, TTT),
                stat_sn: u32_at(b, W24),
                exp_cmd_sn: u32_at(b, W28),
                max_cmd_sn: u32_at(b, W32),
                exp_data_sn: u32_at(b, W36),
                bidi_residual: u32_at(b, W40),
                residual: u32_at(b, W44),
            }),
            opcode::TASK_MGMT_RESPONSE => Bhs::TaskMgmtResponse(TaskMgmtResponse {
                response: b[2],
                itt,
                stat_sn: u32_at(b, W24),
                exp_cmd_sn: u32_at(b, W28),
                max_cmd_sn: u32_at(b, W32),
            }),
            opcode::LOGIN_RESPONSE => {
                let mut isid = [0u8; 6];
                isid.copy_from_slice(&b[8..14]);
                Bhs::LoginResponse(LoginResponse {
                    transit: fin,
                    cont: f & 0x40 != 0,
                    csg: (f >> 2) & 3,
                    nsg: f & 3,
                    version_max: b[2],
                    version_active: b[3],
                    isid,
                    tsih: u16_at(b, 14),
                    itt,
                    stat_sn: u32_at(b, W24),
                    exp_cmd_sn: u32_at(b, W28),
                    max_cmd_sn: u32_at(b, W32),
                    status_class: b[W36],
                    status_detail: b[W36 + 1],
                })
            }
            opcode::TEXT_RESPONSE => Bhs::TextResponse(TextResponse {
                final_: fin,
                cont: f & 0x40 != 0,
                lun,
                itt,
                ttt: u32_at(b, TTT),
                stat_sn: u32_at(b, W24),
                exp_cmd_sn: u32_at(b, W28),
                max_cmd_sn: u32_at(b, W32),
            }),
            opcode::DATA_IN => Bhs::DataIn(DataIn {
                final_: fin,
                ack: f & 0x40 != 0,
                overflow: f & 0x04 != 0,
                underflow: f & 0x02 != 0,
                has_status: f & 0x01 != 0,
                status: b[3],
                lun,
                itt,
                ttt: u32_at(b, TTT),
                stat_sn: u32_at(b, W24),
                exp_cmd_sn: u32_at(b, W28),
                max_cmd_sn: u32_at(b, W32),
                data_sn: u32_at(b, W36),
                buffer_offset: u32_at(b, W40),
                residual: u32_at(b, W44),
            }),
            opcode::LOGOUT_RESPONSE => Bhs::LogoutResponse(LogoutResponse {
                response: b[2],
                itt,
                stat_sn: u32_at(b, W24),
                exp_cmd_sn: u32_at(b, W28),
                max_cmd_sn: u32_at(b, W32),
                time2wait: u16_at(b, W40),
                time2retain: u16_at(b, W40 + 2),
            }),
            opcode::R2T => Bhs::R2t(R2t {
                lun,
                itt,
                ttt: u32_at(b, TTT),
                stat_sn: u32_at(b, W24),
                exp_cmd_sn: u32_at(b, W28),
                max_cmd_sn: u32_at(b, W32),
                r2t_sn: u32_at(b, W36),
                buffer_offset: u32_at(b, W40),
                desired_len: u32_at(b, W44),
            }),
            opcode::ASYNC_MESSAGE => Bhs::AsyncMessage(AsyncMessage {
                lun,
                stat_sn: u32_at(b, W24),
                exp_cmd_sn: u32_at(b, W28),
                max_cmd_sn: u32_at(b, W32),
                event: b[W36],
                vcode: b[W36 + 1],
                parameters: [u16_at(b, 38), u16_at(b, 40), u16_at(b, 42)],
            }),
            opcode::REJECT => Bhs::Reject(Reject {
                reason: b[2],
                stat_sn: u32_at(b, W24),
                exp_cmd_sn: u32_at(b, W28),
                max_cmd_sn: u32_at(b, W32),
                data_sn: u32_at(b, W36),
            }),
            _ => Bhs::Unknown {
                opcode: op,
                raw: Box::new(*b),
            },
        }
    }

    /// Writes the header (framing fields zero; [`crate::wire::Pdu::emit`] fills them).
    pub fn emit(&self, b: &mut [u8; BHS_LEN]) {
        *b = [0; BHS_LEN];
        let imm = |i: bool| if i { IMMEDIATE_BIT } else { 0 };
        let fb = |x: bool, bit: u8| if x { bit } else { 0 };
        if let Bhs::Unknown { raw, .. } = self {
            *b = **raw;
            return;
        }
        b[OPCODE] = self.opcode();
        match self {
            Bhs::NopOut(p) => {
                b[OPCODE] |= imm(p.immediate);
                b[FLAGS] = FINAL_BIT;
                put64(b, LUN, p.lun);
                put32(b, ITT, p.itt);
                put32(b, TTT, p.ttt);
                put32(b, W24, p.cmd_sn);
                put32(b, W28, p.exp_stat_sn);
            }
            Bhs::ScsiCommand(p) => {
                b[OPCODE] |= imm(p.immediate);
                b[FLAGS] =
                    fb(p.final_, FINAL_BIT) | fb(p.read, 0x40) | fb(p.write, 0x20) | (p.attr & 7);
                put64(b, LUN, p.lun);
                put32(b, ITT, p.itt);
                put32(b, TTT, p.expected_len);
                put32(b, W24, p.cmd_sn);
                put32(b, W28, p.exp_stat_sn);
                b[32..48].copy_from_slice(&p.cdb);
            }
            Bhs::TaskMgmtRequest(p) => {
                b[OPCODE] |= imm(p.immediate);
                b[FLAGS] = FINAL_BIT | (p.function & 0x7f);
                put64(b, LUN, p.lun);
                put32(b, ITT, p.itt);
                put32(b, TTT, p.referenced_tag);
                put32(b, W24, p.cmd_sn);
                put32(b, W28, p.exp_stat_sn);
                put32(b, W32, p.ref_cmd_sn);
                put32(b, W36, p.exp_data_sn);
            }
            Bhs::LoginRequest(p) => {
                b[OPCODE] |= IMMEDIATE_BIT;
                b[FLAGS] =
                    fb(p.transit, FINAL_BIT) | fb(p.cont, 0x40) | ((p.csg & 3) << 2) | (p.nsg & 3);
                b[2] = p.version_max;
                b[3] = p.version_min;
                b[8..14].copy_from_slice(&p.isid);
                put16(b, 14, p.tsih);
                put32(b, ITT, p.itt);
                put16(b, TTT, p.cid);
                put32(b, W24, p.cmd_sn);
                put32(b, W28, p.exp_stat_sn);
            }
            Bhs::TextRequest(p) => {
                b[OPCODE] |= imm(p.immediate);
                b[FLAGS] = fb(p.final_, FINAL_BIT) | fb(p.cont, 0x40);
                put64(b, LUN, p.lun);
                put32(b, ITT, p.itt);
                put32(b, TTT, p.ttt);
                put32(b, W24, p.cmd_sn);
                put32(b, W28, p.exp_stat_sn);
            }
            Bhs::DataOut(p) => {
                b[FLAGS] = fb(p.final_, FINAL_BIT);
                put64(b, LUN, p.lun);
                put32(b, ITT, p.itt);
                put32(b, TTT, p.ttt);
                put32(b, W28, p.exp_stat_sn);
                put32(b, W36, p.data_sn);
                put32(b, W40, p.buffer_offset);
            }
            Bhs::LogoutRequest(p) => {
                b[OPCODE] |= imm(p.immediate);
                b[FLAGS] = FINAL_BIT | (p.reason & 0x7f);
                put32(b, ITT, p.itt);
                put16(b, TTT, p.cid);
                put32(b, W24, p.cmd_sn);
                put32(b, W28, p.exp_stat_sn);
            }
            Bhs::SnackRequest(p) => {
                b[FLAGS] = FINAL_BIT | (p.kind & 0x0f);
                put64(b, LUN, p.lun);
                put32(b, ITT, p.itt);
                put32(b, TTT, p.ttt);
                put32(b, W28, p.exp_stat_sn);
                put32(b, W40, p.beg_run);
                put32(b, W44, p.run_length);
            }
            Bhs::NopIn(p) => {
                b[FLAGS] = FINAL_BIT;
                put64(b, LUN, p.lun);
                put32(b, ITT, p.itt);
                put32(b, TTT, p.ttt);
                put32(b, W24, p.stat_sn);
                put32(b, W28, p.exp_cmd_sn);
                put32(b, W32, p.max_cmd_sn);
            }
            Bhs::ScsiResponse(p) => {
                b[FLAGS] = FINAL_BIT
                    | fb(p.bidi_overflow, 0x10)
                    | fb(p.bidi_underflow, 0x08)
                    | fb(p.overflow, 0x04)
                    | fb(p.underflow, 0x02);
                b[2] = p.response;
                b[3] = p.status;
                put32(b, ITT, p.itt);
                put32(b, TTT, p.snack_tag);
                put32(b, W24, p.stat_sn);
                put32(b, W28, p.exp_cmd_sn);
                put32(b, W32, p.max_cmd_sn);
                put32(b, W36, p.exp_data_sn);
                put32(b, W40, p.bidi_residual);
                put32(b, W44, p.residual);
            }
            Bhs::TaskMgmtResponse(p) => {
                b[FLAGS] = FINAL_BIT;
                b[2] = p.response;
                put32(b, ITT, p.itt);
                put32(b, W24, p.stat_sn);
                put32(b, W28, p.exp_cmd_sn);
                put32(b, W32, p.max_cmd_sn);
            }
            Bhs::LoginResponse(p) => {
                b[FLAGS] =
                    fb(p.transit, FINAL_BIT) | fb(p.cont, 0x40) | ((p.csg & 3) << 2) | (p.nsg & 3);
                b[2] = p.version_max;
                b[3] = p.version_active;
                b[8..14].copy_from_slice(&p.isid);
                put16(b, 14, p.tsih);
                put32(b, ITT, p.itt);
                put32(b, W24, p.stat_sn);
                put32(b, W28, p.exp_cmd_sn);
                put32(b, W32, p.max_cmd_sn);
                b[W36] = p.status_class;
                b[W36 + 1] = p.status_detail;
            }
            Bhs::TextResponse(p) => {
                b[FLAGS] = fb(p.final_, FINAL_BIT) | fb(p.cont, 0x40);
                put64(b, LUN, p.lun);
                put32(b, ITT, p.itt);
                put32(b, TTT, p.ttt);
                put32(b, W24, p.stat_sn);
                put32(b, W28, p.exp_cmd_sn);
                put32(b, W32, p.max_cmd_sn);
            }
            Bhs::DataIn(p) => {
                b[FLAGS] = fb(p.final_, FINAL_BIT)
                    | fb(p.ack, 0x40)
                    | fb(p.overflow, 0x04)
                    | fb(p.underflow, 0x02)
                    | fb(p.has_status, 0x01);
                b[3] = p.status;
                put64(b, LUN, p.lun);
                put32(b, ITT, p.itt);
                put32(b, TTT, p.ttt);
                put32(b, W24, p.stat_sn);
                put32(b, W28, p.exp_cmd_sn);
                put32(b, W32, p.max_cmd_sn);
                put32(b, W36, p.data_sn);
                put32(b, W40, p.buffer_offset);
                put32(b, W44, p.residual);
            }
            Bhs::LogoutResponse(p) => {
                b[FLAGS] = FINAL_BIT;
                b[2] = p.response;
                put32(b, ITT, p.itt);
                put32(b, W24, p.stat_sn);
                put32(b, W28, p.exp_cmd_sn);
                put32(b, W32, p.max_cmd_sn);
                put16(b, W40, p.time2wait);
                put16(b, W40 + 2, p.time2retain);
            }
            Bhs::R2t(p) => {
                b[FLAGS] = FINAL_BIT;
                put64(b, LUN, p.lun);
                put32(b, ITT, p.itt);
                put32(b, TTT, p.ttt);
                put32(b, W24, p.stat_sn);
                put32(b, W28, p.exp_cmd_sn);
                put32(b, W32, p.max_cmd_sn);
                put32(b, W36, p.r2t_sn);
                put32(b, W40, p.buffer_offset);
                put32(b, W44, p.desired_len);
            }
            Bhs::AsyncMessage(p) => {
                b[FLAGS] = FINAL_BIT;
                put64(b, LUN, p.lun);
                put32(b, ITT, RESERVED_TAG);
                put32(b, W24, p.stat_sn);
                put32(b, W28, p.exp_cmd_sn);
                put32(b, W32, p.max_cmd_sn);
                b[W36] = p.event;
                b[W36 + 1] = p.vcode;
                put16(b, 38, p.parameters[0]);
                put16(b, 40, p.parameters[1]);
                put16(b, 42, p.parameters[2]);
            }
            Bhs::Reject(p) => {
                b[FLAGS] = FINAL_BIT;
                b[2] = p.reason;
                put32(b, ITT, RESERVED_TAG);
                put32(b, W24, p.stat_sn);
                put32(b, W28, p.exp_cmd_sn);
                put32(b, W32, p.max_cmd_sn);
                put32(b, W36, p.data_sn);
            }
            Bhs::Unknown { .. } => unreachable_unknown(),
        }
    }
}

/// `Unknown` returned early in [`Bhs::emit`]; this arm cannot run.
#[inline]
fn unreachable_unknown() {}
