//! Store administration: the typed operations ([`ops`]) that provisiond's API routes
//! and `provision --store` run, and the `provision` command line ([`cli`]) with its two
//! ways to run them: on a store folder ([`local`]) or through the API ([`remote`]);
//! answers render as tables or JSON ([`Answer`]).

pub mod cli;
pub mod local;
pub mod ops;
pub mod remote;
mod render;

pub use cli::{Command, Line};
pub use render::Answer;

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
