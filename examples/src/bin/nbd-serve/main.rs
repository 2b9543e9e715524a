//! `nbd-serve`: serves one disk image (a raw file or a VHD) over NBD.
//!
//! This binary only parses arguments and composes `nbd_proto`'s driver with an
//! adapter from the image to an `nbd_proto::Export` (see `provider.rs`).

mod provider;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use nbd_proto::ExportProvider;
use nbd_proto::driver::server::{Server, ServerConfig, listen};

/// Serve a disk image over the Network Block Device protocol.
///
/// The image (a raw file, or a fixed, dynamic or differencing VHD with its parents) is
/// served as one export. Clients connect with
/// e.g. `qemu-img info nbd://HOST:10809/NAME`, `nbdinfo nbd://HOST/NAME` or
/// `nbdcopy nbd://HOST/NAME out.raw`; the empty export name also finds it.
///
/// With --snapshot every connection gets its own throwaway write overlay on top of the
/// read-only image, so many clients can share one image and none of them changes it.
#[derive(Debug, Parser)]
#[command(name = "nbd-serve", version, about, long_about)]
struct Args {
    /// The image to serve: a raw file or a VHD (a differencing VHD brings its chain).
    file: PathBuf,
    /// Address and port to listen on.
    #[arg(long, default_value = "0.0.0.0:10809", value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// Export name clients ask for (default: the file name without its extension).
    #[arg(long, value_name = "EXPORT")]
    name: Option<String>,
    /// Refuse writes (clients see a read-only export).
    #[arg(long)]
    read_only: bool,
    /// Give every connection a private, throwaway write overlay; the image is opened
    /// read-only and never changes.
    #[arg(long, conflicts_with = "read_only")]
    snapshot: bool,
    /// RAM a snapshot overlay may use before it spills to --snapshot-dir.
    #[arg(long, default_value = "64M", value_parser = parse_size, value_name = "SIZE")]
    snapshot_ram: u64,
    /// Largest amount of data one snapshot overlay may hold; writes beyond it fail
    /// with ENOSPC.
    #[arg(long, default_value = "4G", value_parser = parse_size, value_name = "SIZE")]
    snapshot_quota: u64,
    /// Folder for overlay spill files (default: the system temporary folder).
    #[arg(long, value_name = "DIR")]
    snapshot_dir: Option<PathBuf>,
    /// Connections served at once; further ones are closed.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// Request and reply data held in memory across all connections (WRITE payloads,
    /// READ replies built in buffers; READs sent from the page cache hold none).
    /// Requests past it wait for room.
    #[arg(long, default_value = "512M", value_parser = parse_size, value_name = "SIZE")]
    max_buffered: u64,
    /// Microseconds a connection whose client sends one request at a time polls for
    /// the next one before it sleeps (0: off). Saves a thread wake-up per request for
    /// some CPU: one connection per spare core spins at a time, and clients slower than
    /// this back it off.
    #[arg(long, default_value_t = 50)]
    busy_poll_us: u64,
    /// TCP congestion control of the connections (`system`: the machine's,
    /// net.ipv4.tcp_congestion_control). With bbr the kernel paces every connection
    /// with timers unless the interface has the fq qdisc, which costs a streaming
    /// server several times the CPU; hence cubic.
    #[arg(long, default_value = "cubic", value_name = "NAME")]
    tcp_congestion: String,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn parse_size(s: &str) -> Result<u64, String> {
    provision_server::parse_size(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args = Args::parse();
    provision_server::init_logging(matches!(args.log_format, LogFormat::Json));
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            provision_server::errln!("nbd-serve: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let name = args.name.clone().unwrap_or_else(|| {
        args.file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let provider = provider::provider(&args, name.clone())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(64)
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let config = ServerConfig {
            max_connections: args.max_connections,
            max_buffered_bytes: usize::try_from(args.max_buffered).unwrap_or(usize::MAX),
            busy_poll: Duration::from_micros(args.busy_poll_us),
            congestion_control: provision_server::congestion_control(&args.tcp_congestion),
            ..ServerConfig::default()
        };
        let listener = listen(args.listen, &config)
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let server = Server::new(provider, config);
        let handle = server.shutdown_handle();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: finishing in-flight requests");
            handle.shutdown();
        });
        tracing::info!(listen = %args.listen, export = %name, file = %args.file.display(),
            read_only = args.read_only, snapshot = args.snapshot, "serving");
        server.serve(listener).await.map_err(|e| e.to_string())
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// What `disk.rs` gives the server.
type Provider = Arc<dyn ExportProvider>;
