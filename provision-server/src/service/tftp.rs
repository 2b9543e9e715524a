//! `tftp-serve`: one folder over TFTP, from provisiond's `[tftp]` keys and flags.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tftp::{DirProvider, Limits, Server, ServerConfig, TransferConfig};

use crate::config::Tftp;

/// tftp-serve's flags. ROOT, --listen and --busy-poll-us take over provisiond.toml's
/// `[tftp]` keys from `--config`; the others are tftp-serve's own.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory whose files are served [tftp.root]; required without --config.
    #[arg(required_unless_present = "config")]
    pub root: Option<PathBuf>,

    /// provisiond's configuration file (TOML): tftp-serve reads its `[tftp]` section
    /// (flags given on the command line win; `enabled` is ignored).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address and port to listen on (IPv4 or IPv6, e.g. `[::]:69`; default
    /// 0.0.0.0:69) [tftp.listen].
    #[arg(long)]
    pub listen: Option<SocketAddr>,

    /// Serve every transfer from the listening port (for firewalls that only open port 69).
    #[arg(long)]
    pub single_port: bool,

    /// Accept uploads (WRQ) into ROOT.
    #[arg(long)]
    pub allow_write: bool,

    /// Match file names without regard to case when the exact name does not exist.
    #[arg(long)]
    pub case_insensitive: bool,

    /// Refuse paths that start with `/` instead of resolving them from ROOT.
    #[arg(long)]
    pub refuse_absolute: bool,

    /// Largest block size granted to clients (8..=65464; 1468 fits a 1500-byte MTU).
    #[arg(long, default_value_t = 65464, value_parser = clap::value_parser!(u16).range(8..=65464))]
    pub max_blksize: u16,

    /// Largest window (RFC 7440) granted to clients.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_windowsize: u16,

    /// Largest window granted, in bytes: the window is lowered so that blksize times
    /// windowsize stays within it (bursts beyond a client's socket buffer are lost).
    #[arg(long, default_value_t = 65536)]
    pub max_window_bytes: u64,

    /// Retransmission timeout in milliseconds when the client negotiates none (doubles per retry).
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,

    /// Retransmissions before a silent client's transfer is abandoned.
    #[arg(long, default_value_t = 5)]
    pub retries: u32,

    /// Transfers served at once; further requests are answered "Server busy".
    #[arg(long, default_value_t = 1024)]
    pub max_transfers: usize,

    /// Transfers served at once to one client IP address.
    #[arg(long, default_value_t = 128)]
    pub max_per_client: usize,

    /// Microseconds a transfer polls for the client's answer before it sleeps (0: off;
    /// default 50) [tftp.busy_poll_us]. Saves a thread wake-up per block of lock-step
    /// transfers (PXE ROMs) for some CPU: one transfer per spare core spins at a time,
    /// and clients slower than this back it off.
    #[arg(long)]
    pub busy_poll_us: Option<u64>,
}

/// What [`serve`] serves: the address, the folder and the server's settings.
pub struct Service {
    /// The `[tftp]` settings after the flags (`root` is the folder served).
    pub tftp: Tftp,
    /// The folder, confined.
    pub provider: DirProvider,
    /// Limits and timeouts.
    pub config: ServerConfig,
}

/// Merges the file and the flags. An error here is a usage error or a missing folder.
pub fn build(args: &Args) -> Result<Service, String> {
    let mut tftp = match super::load(args.config.as_deref())? {
        Some(config) => config.tftp,
        None => Tftp::default(),
    };
    if let Some(root) = &args.root {
        tftp.root.clone_from(root);
    }
    tftp.listen = args.listen.unwrap_or(tftp.listen);
    tftp.busy_poll_us = args.busy_poll_us.unwrap_or(tftp.busy_poll_us);
    let provider = DirProvider::new(&tftp.root)
        .map_err(|e| e.to_string())?
        .case_insensitive(args.case_insensitive)
        .refuse_absolute(args.refuse_absolute)
        .allow_write(args.allow_write);
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
        ..tftp.server_config()
    };
    Ok(Service {
        tftp,
        provider,
        config,
    })
}

/// Binds and serves until `shutdown` completes.
pub async fn serve(service: Service, shutdown: impl Future<Output = ()>) -> Result<(), String> {
    let Service {
        tftp,
        provider,
        config,
    } = service;
    let server = Server::bind(tftp.listen, provider, config)
        .await
        .map_err(|e| e.to_string())?;
    let listen = server.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%listen, root = %tftp.root.display(), "serving TFTP");
    tokio::select! {
        r = server.run() => r.map_err(|e| e.to_string()),
        () = shutdown => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn build_from(list: &[&str]) -> Result<Service, String> {
        build(
            &Cli::try_parse_from(std::iter::once("tftp-serve").chain(list.iter().copied()))
                .unwrap()
                .args,
        )
    }

    #[test]
    fn tftp_section_of_provisiond_toml_and_flags_over_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("boot")).unwrap();
        let path = dir.path().join("provisiond.toml");
        std::fs::write(
            &path,
            "[tftp]\nroot = \"boot\"\nlisten = \"127.0.0.1:6969\"\nbusy_poll_us = 7\n",
        )
        .unwrap();
        let config = path.to_str().unwrap();
        let s = build_from(&["--config", config]).unwrap();
        assert_eq!(s.tftp.root, dir.path().join("boot"));
        assert_eq!(s.tftp.listen, "127.0.0.1:6969".parse().unwrap());
        assert_eq!(s.config.busy_poll, Duration::from_micros(7));
        let other = dir.path().to_str().unwrap();
        let s = build_from(&["--config", config, other, "--busy-poll-us", "0"]).unwrap();
        assert_eq!(s.tftp.root, dir.path());
        assert_eq!(s.config.busy_poll, Duration::ZERO);
        let s = build_from(&[other]).unwrap();
        assert_eq!(s.tftp.listen, "0.0.0.0:69".parse().unwrap());
        assert!(
            Cli::try_parse_from(["tftp-serve"]).is_err(),
            "ROOT or --config"
        );
    }
}
