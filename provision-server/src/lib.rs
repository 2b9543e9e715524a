//! The provision server as a library: the `provisiond.toml` configuration, the
//! composition of its services (NBD, TFTP, HTTP boot files, DHCP, the admin API), the admin operations
//! shared by the API and the `provision` command, metrics, and the demo set-up; the
//! single services `pxe-serve`, `tftp-serve` and `nbd-serve` run from their section of
//! the same configuration ([`service`]); plus what every binary of the workspace
//! shares (size arguments, log set-up, tables and progress bars, `vhd`'s output).
//!
//! An embedder starts a whole provisiond with
//! `Server::new(config)?.run(shutdown).await` (see [`Server`]); the binaries in
//! `examples/` parse their arguments and call this crate.

pub mod admin;
mod api;
pub mod config;
pub mod demo;
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod metrics;
pub mod output;
pub mod resources;
mod server;
pub mod service;

pub use config::Config;
pub use server::{Running, Server};

use std::fmt;

/// The TCP congestion control named in a configuration or on the command line, as
/// `nbd_proto::driver::server::ServerConfig::congestion_control` takes it: `system`
/// keeps the machine's (`None`); any other name goes to the kernel as it is. Names are
/// kept for the life of the process, each one once however often it is asked for (the
/// config fuzz target found the old `Box::leak` per call leaking).
///
/// ```
/// use provision_server::congestion_control;
/// assert_eq!(congestion_control("cubic"), Some("cubic"));
/// assert_eq!(congestion_control("system"), None);
/// let bbr = congestion_control("bbr").unwrap();
/// assert!(std::ptr::eq(bbr, congestion_control(" bbr ").unwrap()));
/// ```
pub fn congestion_control(name: &str) -> Option<&'static str> {
    static NAMES: std::sync::Mutex<std::collections::BTreeSet<&'static str>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    match name.trim() {
        "system" => None,
        "cubic" => Some("cubic"),
        other => {
            let mut names = NAMES.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(known) = names.get(other) {
                return Some(known);
            }
            let kept: &'static str = Box::leak(other.to_owned().into_boxed_str());
            names.insert(kept);
            Some(kept)
        }
    }
}

/// A byte count given on the command line: `512`, `64K`, `100M`, `20G`, `1T`
/// (binary multiples; a trailing `B` or `iB` is accepted).
///
/// ```
/// use provision_server::parse_size;
/// assert_eq!(parse_size("64K"), Ok(65536));
/// assert_eq!(parse_size("20G"), Ok(20 << 30));
/// assert!(parse_size("2X").is_err());
/// ```
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                'P' => 50,
                _ => return Err(SizeError(text.to_owned())),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits.parse().map_err(|_| SizeError(text.to_owned()))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| SizeError(text.to_owned()))
}

/// A size argument that is not a number with an optional K/M/G/T/P suffix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeError(pub String);

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid size `{}`: expected a number with an optional K, M, G or T suffix (e.g. 512, 64K, 20G)",
            self.0
        )
    }
}

impl std::error::Error for SizeError {}

/// `print!` for the binaries' results, without the panic on a closed stdout: see
/// [`output::write_stdout`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(::std::format_args!($($arg)*))
    };
}

/// `println!` for the binaries' results, without the panic on a closed stdout: see
/// [`output::write_stdout`].
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::write_stdout(::std::format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_stdout(::std::format_args!("{}\n", ::std::format_args!($($arg)*)))
    };
}

/// `eprintln!` that loses the message instead of panicking when stderr is closed.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::write_stderr(::std::format_args!("{}\n", ::std::format_args!($($arg)*)))
    };
}

/// `--log-format` of every binary: how log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// For people.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

/// Installs the log subscriber every binary uses: human-readable on a terminal,
/// JSON lines with `--log-format json`; the level comes from `RUST_LOG`
/// (default `info`).
pub fn init_logging(format: LogFormat) {
    init_logging_at(format == LogFormat::Json, "info");
}

/// Like [`init_logging`] with another default level (`warn` for commands whose
/// output is their result).
pub fn init_logging_at(json: bool, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name asked for again is the same allocation: a configuration read many times
    /// (or fuzzed) does not grow the process.
    #[test]
    fn congestion_control_names_are_kept_once() {
        let first = congestion_control("fuzz-cc-name").unwrap();
        for _ in 0..3 {
            assert!(std::ptr::eq(
                first,
                congestion_control("fuzz-cc-name").unwrap()
            ));
        }
        assert_eq!(congestion_control("system"), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("100M"), Ok(100 << 20));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert_eq!(parse_size("1t"), Ok(1 << 40));
        assert!(parse_size("").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999P").is_err());
    }
}
