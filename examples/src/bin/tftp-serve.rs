//! `tftp-serve`: serves a directory over TFTP (RFC 1350, 2347, 2348, 2349, 7440). Only
//! parses arguments and calls `provision_server::service::tftp`.

use std::process::ExitCode;

use clap::Parser;
use provision_server::LogFormat;
use provision_server::service::{self, tftp};

/// Serve the files under ROOT over TFTP, as network-booting devices expect.
///
/// Paths are confined to ROOT: `..` components and symlinks that lead outside are refused
/// (access violation), `\` is a path separator and a leading `/` names ROOT. Each transfer
/// gets its own UDP port unless --single-port is given. Uploads are refused unless
/// --allow-write is given; an upload becomes visible only once complete.
///
/// With --config, the `[tftp]` keys of provisiond.toml (named in brackets below) are the
/// defaults, and flags win.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(flatten)]
    args: tftp::Args,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t)]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread();
    service::main(
        "tftp-serve",
        cli.log_format,
        runtime,
        (|| tftp::build(&cli.args), 1),
        |s| tftp::serve(s, service::signal()),
    )
}
