//! `tftp-serve`: serves a directory over TFTP (RFC 1350, 2347, 2348, 2349, 7440).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use tftp::{DirProvider, Limits, Server, ServerConfig, TransferConfig};

/// Serve the files under ROOT over TFTP, as network-booting devices expect.
///
/// Paths are confined to ROOT: `..` components and symlinks that lead outside are refused
/// (access violation), `\` is a path separator and a leading `/` names ROOT. Each transfer
/// gets its own UDP port unless --single-port is given. Uploads are refused unless
/// --allow-write is given; an upload becomes visible only once complete.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// Directory whose files are served.
    root: PathBuf,

    /// Address and port to listen on (IPv4 or IPv6, e.g. `[::]:69`).
    #[arg(long, default_value = "0.0.0.0:69")]
    listen: SocketAddr,

    /// Serve every transfer from the listening port (for firewalls that only open port 69).
    #[arg(long)]
    single_port: bool,

    /// Accept uploads (WRQ) into ROOT.
    #[arg(long)]
    allow_write: bool,

    /// Match file names without regard to case when the exact name does not exist.
    #[arg(long)]
    case_insensitive: bool,

    /// Refuse paths that start with `/` instead of resolving them from ROOT.
    #[arg(long)]
    refuse_absolute: bool,

    /// Largest block size granted to clients (8..=65464; 1468 fits a 1500-byte MTU).
    #[arg(long, default_value_t = 65464, value_parser = clap::value_parser!(u16).range(8..=65464))]
    max_blksize: u16,

    /// Largest window (RFC 7440) granted to clients.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    max_windowsize: u16,

    /// Largest window granted, in bytes: the window is lowered so that blksize times
    /// windowsize stays within it (bursts beyond a client's socket buffer are lost).
    #[arg(long, default_value_t = 65536)]
    max_window_bytes: u64,

    /// Retransmission timeout in milliseconds when the client negotiates none (doubles per retry).
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,

    /// Retransmissions before a silent client's transfer is abandoned.
    #[arg(long, default_value_t = 5)]
    retries: u32,

    /// Transfers served at once; further requests are answered "Server busy".
    #[arg(long, default_value_t = 1024)]
    max_transfers: usize,

    /// Transfers served at once to one client IP address.
    #[arg(long, default_value_t = 128)]
    max_per_client: usize,

    /// Microseconds a transfer polls for the client's answer before it sleeps (0: off).
    /// Saves a thread wake-up per block of lock-step transfers (PXE ROMs) for some CPU:
    /// one transfer per spare core spins at a time, and clients slower than this back
    /// it off.
    #[arg(long, default_value_t = 50)]
    busy_poll_us: u64,

    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let args = Args::parse();
    provision_server::init_logging(matches!(args.log_format, LogFormat::Json));
    let provider = match DirProvider::new(&args.root) {
        Ok(p) => p
            .case_insensitive(args.case_insensitive)
            .refuse_absolute(args.refuse_absolute)
            .allow_write(args.allow_write),
        Err(e) => {
            provision_server::errln!("tftp-serve: {e}");
            return ExitCode::from(1);
        }
    };
    let config = ServerConfig {
        transfer: TransferConfig {
            limits: Limits {
                max_blksize: args.max_blksize,
                max_windowsize: args.max_windowsize,
                max_window_bytes: args.max_window_bytes,
            },
            timeout: Duration::from_millis(args.timeout_ms.max(1)),
            max_retries: args.retries,
            ..TransferConfig::default()
        },
        single_port: args.single_port,
        allow_write: args.allow_write,
        max_transfers: args.max_transfers.max(1),
        max_transfers_per_client: args.max_per_client.max(1),
        busy_poll: Duration::from_micros(args.busy_poll_us),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            provision_server::errln!("tftp-serve: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let server = Server::bind(args.listen, provider, config).await?;
        tracing::info!(listen = %server.local_addr()?, root = %args.root.display(), "serving TFTP");
        tokio::select! {
            r = server.run() => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            provision_server::errln!("tftp-serve: {e}");
            ExitCode::from(1)
        }
    }
}
