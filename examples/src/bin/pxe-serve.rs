//! `pxe-serve`: the ProxyDHCP / PXE boot service, or a full DHCP server for isolated
//! segments, from flags or provisiond's `[dhcp]` settings. Only parses arguments and
//! calls `provision_server::service::dhcp`.

use std::process::ExitCode;

use clap::Parser;
use provision_server::LogFormat;
use provision_server::service::{self, dhcp};

/// Network-boot DHCP service: ProxyDHCP on ports 67 and 4011 (or full DHCP), boot files
/// per client architecture, an optional PXE menu, iPXE script hand-off.
///
/// Examples:
///   pxe-serve -i br0 --server-ip 10.77.0.1 --boot-file bios=undionly.kpxe --boot-file efi-x64=ipxe.efi
///   pxe-serve -i br0 --server-ip 10.77.0.1 --ipxe-script http://10.77.0.1/boot.ipxe --boot-file bios=undionly.kpxe
///   pxe-serve -i br0 --server-ip 10.77.0.1 --menu-prompt "Choose" --menu-entry "Linux=linux.0" --menu-entry "Disk=local"
///   pxe-serve -i lab0 --server-ip 10.77.0.1 --mode full --pool 10.77.0.50-10.77.0.99/24 --leases /var/lib/pxe/leases
///   pxe-serve --config /etc/provision/provisiond.toml
///
/// With --config, the `[dhcp]` keys of provisiond.toml (named in brackets below) are
/// the defaults, and flags win. Architectures: bios, efi-ia32, efi-x64, efi-bc,
/// efi-arm32, efi-arm64, efi-x64-http, efi-arm64-http, ... or the option 93 number.
/// HTTP-boot architectures need an http(s):// URI.
#[derive(Debug, Parser)]
#[command(name = "pxe-serve", version, verbatim_doc_comment)]
struct Cli {
    #[command(flatten)]
    args: dhcp::Args,
    /// Log format.
    #[arg(long, value_enum, default_value_t)]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.worker_threads(2);
    service::main(
        "pxe-serve",
        cli.log_format,
        runtime,
        (|| dhcp::build(&cli.args), 2),
        |s| dhcp::serve(s, service::signal()),
    )
}
