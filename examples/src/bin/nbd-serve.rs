//! `nbd-serve`: serves one disk image (a raw file or a VHD) over NBD. Only parses
//! arguments and calls `provision_server::service::nbd`.

use std::process::ExitCode;

use clap::Parser;
use provision_server::LogFormat;
use provision_server::service::{self, nbd};

/// Serve a disk image over the Network Block Device protocol.
///
/// The image (a raw file, or a fixed, dynamic or differencing VHD with its parents) is
/// served as one export. Clients connect with
/// e.g. `qemu-img info nbd://HOST:10809/NAME`, `nbdinfo nbd://HOST/NAME` or
/// `nbdcopy nbd://HOST/NAME out.raw`; the empty export name also finds it.
///
/// With --snapshot every connection gets its own throwaway write overlay on top of the
/// read-only image, so many clients can share one image and none of them changes it.
///
/// With --config, the `[nbd]` keys of provisiond.toml (named in brackets below) are the
/// defaults, and flags win.
#[derive(Debug, Parser)]
#[command(name = "nbd-serve", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    args: nbd::Args,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t)]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.max_blocking_threads(64);
    service::main(
        "nbd-serve",
        cli.log_format,
        runtime,
        (|| nbd::build(&cli.args), 1),
        |s| nbd::serve(s, service::signal()),
    )
}
