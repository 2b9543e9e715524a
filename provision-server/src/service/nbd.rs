//! `nbd-serve`: one disk image (a raw file or a VHD with its chain) over NBD, from
//! provisiond's `[nbd]` keys and flags; with `--snapshot`, a throwaway write overlay
//! per connection.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use nbd_proto::driver::server::{Server, ServerConfig, listen};
use nbd_proto::{Export, ExportProvider, SingleExport};
use provision_core::adapters::nbd::DiskExport;
use vhd::{Overlay, OverlayLimits, RamBudget};

use crate::config::Nbd;
use crate::parse_size;

/// nbd-serve's flags. Those marked with a key take over provisiond.toml's `[nbd]` key
/// from `--config`; the others are nbd-serve's own.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image to serve: a raw file or a VHD (a differencing VHD brings its chain).
    pub file: PathBuf,
    /// provisiond's configuration file (TOML): nbd-serve reads its `[nbd]` section
    /// (flags given on the command line win; `enabled` is ignored).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address and port to listen on (default 0.0.0.0:10809; with --config, the file's)
    /// [nbd.listen].
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Export name clients ask for (default: the file name without its extension).
    #[arg(long, value_name = "EXPORT")]
    pub name: Option<String>,
    /// Refuse writes (clients see a read-only export).
    #[arg(long)]
    pub read_only: bool,
    /// Give every connection a private, throwaway write overlay; the image is opened
    /// read-only and never changes.
    #[arg(long, conflicts_with = "read_only")]
    pub snapshot: bool,
    /// RAM a snapshot overlay may use before it spills to --snapshot-dir.
    #[arg(long, default_value = "64M", value_parser = parse_size, value_name = "SIZE")]
    pub snapshot_ram: u64,
    /// RAM all snapshot overlays together may use; past it every overlay spills to
    /// --snapshot-dir, so memory does not grow with the number of clients.
    #[arg(long, default_value = "32M", value_parser = parse_size, value_name = "SIZE")]
    pub snapshot_ram_total: u64,
    /// Largest amount of data one snapshot overlay may hold; writes beyond it fail
    /// with ENOSPC.
    #[arg(long, default_value = "4G", value_parser = parse_size, value_name = "SIZE")]
    pub snapshot_quota: u64,
    /// Folder for overlay spill files (default: the system temporary folder).
    #[arg(long, value_name = "DIR")]
    pub snapshot_dir: Option<PathBuf>,
    /// Connections served at once; further ones are closed (default 4096)
    /// [nbd.max_connections].
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Request and reply data held in memory across all connections (WRITE payloads,
    /// READ replies built in buffers; READs sent from the page cache hold none).
    /// Requests past it wait for room (default 512M) [nbd.max_buffered].
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub max_buffered: Option<u64>,
    /// Microseconds a connection whose client sends one request at a time polls for
    /// the next one before it sleeps (0: off; default 50) [nbd.busy_poll_us]. Saves a
    /// thread wake-up per request for some CPU: one connection per spare core spins at
    /// a time, and clients slower than this back it off.
    #[arg(long)]
    pub busy_poll_us: Option<u64>,
    /// TCP congestion control of the connections (`system`: the machine's,
    /// net.ipv4.tcp_congestion_control; default cubic) [nbd.tcp_congestion]. With bbr
    /// the kernel paces every connection with timers unless the interface has the fq
    /// qdisc, which costs a streaming server several times the CPU; hence cubic.
    #[arg(long, value_name = "NAME")]
    pub tcp_congestion: Option<String>,
}

/// What [`serve`] serves.
pub struct Service {
    /// The `[nbd]` settings after the flags.
    pub nbd: Nbd,
    /// The driver's settings made from them.
    pub config: ServerConfig,
    /// The export name.
    pub name: String,
    /// The image, or an overlay over it per connection.
    pub provider: Arc<dyn ExportProvider>,
}

/// Merges the file and the flags, and opens the image.
pub fn build(args: &Args) -> Result<Service, String> {
    let mut nbd = match super::load(args.config.as_deref())? {
        Some(config) => config.nbd,
        None => Nbd {
            listen: SocketAddr::from(([0, 0, 0, 0], 10809)),
            ..Nbd::default()
        },
    };
    nbd.listen = args.listen.unwrap_or(nbd.listen);
    nbd.max_connections = args.max_connections.unwrap_or(nbd.max_connections);
    if let Some(bytes) = args.max_buffered {
        nbd.max_buffered = bytes.to_string();
    }
    nbd.busy_poll_us = args.busy_poll_us.unwrap_or(nbd.busy_poll_us);
    if let Some(name) = &args.tcp_congestion {
        nbd.tcp_congestion.clone_from(name);
    }
    let config = nbd.server_config()?;
    let name = args.name.clone().unwrap_or_else(|| {
        args.file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let provider = provider(args, name.clone())?;
    Ok(Service {
        nbd,
        config,
        name,
        provider,
    })
}

/// The export provider the arguments ask for: one shared disk, or with `--snapshot` a
/// fresh overlay over the read-only image for every connection.
fn provider(args: &Args, name: String) -> Result<Arc<dyn ExportProvider>, String> {
    let read_only = args.read_only || args.snapshot;
    let disk = vhd::open_disk(&args.file, read_only)
        .map_err(|e| format!("cannot open {}: {e}", args.file.display()))?;
    if !args.snapshot {
        let export = DiskExport::new(disk, true);
        return Ok(Arc::new(SingleExport::new(name, Arc::new(export))));
    }
    let limits = OverlayLimits {
        ram_bytes: args.snapshot_ram,
        spill_dir: Some(args.snapshot_dir.clone().unwrap_or_else(std::env::temp_dir)),
        quota_bytes: Some(args.snapshot_quota),
    };
    let budget = RamBudget::new(args.snapshot_ram_total);
    Ok(Arc::new(SingleExport::per_connection(name, move |peer| {
        let overlay = Overlay::new(disk.clone(), limits.clone())
            .map_err(|e| nbd_proto::Refusal::Platform(format!("cannot create an overlay: {e}")))?
            .sharing_ram(budget.clone());
        tracing::debug!(%peer, "new snapshot overlay");
        let export = DiskExport::new(Arc::new(overlay), false).with_fast_zero(true);
        Ok(Arc::new(export) as Arc<dyn Export>)
    })))
}

/// Listens and serves until `shutdown` completes; then in-flight requests finish.
pub async fn serve(
    service: Service,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let Service {
        nbd,
        config,
        name,
        provider,
    } = service;
    let listener =
        listen(nbd.listen, &config).map_err(|e| format!("cannot listen on {}: {e}", nbd.listen))?;
    let server = Server::new(provider, config);
    let handle = server.shutdown_handle();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        handle.shutdown();
    });
    let listen = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%listen, export = %name, "serving");
    server.serve(listener).await.map_err(|e| e.to_string())
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

    fn build_from(list: &[&str]) -> Service {
        let cli = Cli::try_parse_from(std::iter::once("nbd-serve").chain(list.iter().copied()));
        build(&cli.unwrap().args).unwrap()
    }

    #[test]
    fn nbd_section_of_provisiond_toml_and_flags_over_it() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.raw");
        std::fs::write(&image, vec![0u8; 4096]).unwrap();
        let path = dir.path().join("provisiond.toml");
        std::fs::write(
            &path,
            "[nbd]\nlisten = \"127.0.0.1:10900\"\nmax_buffered = \"1M\"\ntcp_congestion = \"system\"\n",
        )
        .unwrap();
        let (config, image) = (path.to_str().unwrap(), image.to_str().unwrap());
        let s = build_from(&["--config", config, image]);
        assert_eq!(s.name, "disk");
        assert_eq!(s.nbd.listen, "127.0.0.1:10900".parse().unwrap());
        assert_eq!(s.config.max_buffered_bytes, 1 << 20);
        assert_eq!(s.config.congestion_control, None);
        let s = build_from(&[
            "--config",
            config,
            image,
            "--max-buffered",
            "2M",
            "--listen",
            "[::1]:0",
        ]);
        assert_eq!(s.config.max_buffered_bytes, 2 << 20);
        assert_eq!(s.nbd.listen, "[::1]:0".parse().unwrap());
        let s = build_from(&[image]);
        assert_eq!(s.nbd.listen, "0.0.0.0:10809".parse().unwrap());
        assert_eq!(s.config.congestion_control, Some("cubic"));
    }
}
