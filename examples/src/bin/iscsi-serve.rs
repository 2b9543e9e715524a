//! `iscsi-serve`: serves one disk image (a raw file or a VHD) as an iSCSI target with
//! one LUN. Only parses arguments and calls `provision_server::service::iscsi`.

use std::process::ExitCode;

use clap::Parser;
use provision_server::LogFormat;
use provision_server::service::{self, iscsi};

/// Serve a disk image over iSCSI.
///
/// The image (a raw file, or a fixed, dynamic or differencing VHD with its parents) is
/// LUN 0 of one target. Initiators find it with e.g. `iscsi-ls iscsi://HOST:3260`,
/// and use `iscsi://HOST:3260/IQN/0` (libiscsi, qemu) or `iscsiadm` discovery and login.
#[derive(Debug, Parser)]
#[command(name = "iscsi-serve", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    args: iscsi::Args,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t)]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    service::main(
        "iscsi-serve",
        cli.log_format,
        tokio::runtime::Builder::new_multi_thread(),
        (|| iscsi::build(&cli.args), 1),
        |s| iscsi::serve(s, service::signal()),
    )
}
