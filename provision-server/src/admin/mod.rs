//! Store administration, shared by the `provision` command and provisiond's admin API:
//! the subcommands, what each does to the store, and how results render (tables or
//! JSON). `provision --store DIR` runs them on a store folder directly; provisiond runs
//! the very same commands for `provision --api URL`, so both paths behave alike.

pub mod commands;
mod render;

pub use commands::{Command, Line, Reach, SessionsCommand, VdiskCommand, run};
pub use render::Out;

use provision_core::{Error, ErrorKind};

/// Reports progress of long disk work: what, bytes done, bytes in all.
pub type Progress<'a> = &'a mut (dyn FnMut(&str, u64, u64) + Send);

/// The exit code of `provision` for an error: 1 storage or I/O failure, 2 bad
/// arguments or values, 3 not found, 4 conflict with the current state, 5 refused.
pub fn exit_code(e: &Error) -> u8 {
    match e.kind() {
        ErrorKind::Invalid => 2,
        ErrorKind::NotFound => 3,
        ErrorKind::Conflict => 4,
        ErrorKind::Refused => 5,
        _ => 1,
    }
}
