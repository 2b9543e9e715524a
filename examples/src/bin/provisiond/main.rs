//! `provisiond`: the provision server. Serves vDisks to devices over NBD from a store,
//! with per-device sessions and write caches (see `provision-core`).
//!
//! This binary parses arguments, loads `provisiond.toml` and composes the drivers.

mod api;
mod demo;
mod metrics;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use nbd_proto::driver::server::{Server, listen};
use provision_core::adapters::nbd::SessionExports;
use provision_core::adapters::pxe::StorePolicy;
use provision_core::adapters::tftp::{BootStart, DeviceFiles};
use provision_core::{Sessions, Store, leftover_files};
use pxe::Policy;
use pxe::driver::{Driver as DhcpDriver, DriverStats, Mode as DhcpMode};
use pxe::full::{FullDhcp, Leases};

use provision_examples::config::{Config, DhcpMode as DhcpKind};

use crate::metrics::{Counted, TftpCounters};

/// The provision streaming server.
///
/// Devices (PCs, VMs) run their operating system from vDisks streamed by this server.
/// Each device sees its assigned vDisk through a session: in standard mode a shared,
/// read-only version plus the device's own write cache, dropped at its next boot; in
/// private mode a persistent disk of its own.
///
/// NBD export names are `<mac>/<vdisk>/<token>`: the token of the device's current boot
/// (its iPXE script writes the name on the kernel command line), or its attach secret
/// for hypervisors (`provision device attach-secret`). A new boot of a device ends the
/// sessions of its last one. Over TFTP, `provision/<mac>.ipxe` is the device's iPXE
/// script (a menu when several vDisks are assigned) and
/// `provision/<mac>/<token>.personality` its personality; other paths come from the TFTP
/// folder.
///
/// With `[dhcp]` enabled it answers PXE clients itself, beside the site's DHCP server
/// (ProxyDHCP on ports 67 and 4011): firmware of a known device gets iPXE, iPXE gets the
/// device's script. On a segment of its own (`mode = "full"`) it hands out the
/// addresses too.
///
/// The admin API (for `provision --api`, loopback port 10810 by default) also serves
/// Prometheus metrics at `/metrics`.
///
/// Exit codes: 0 after a clean shutdown (SIGINT or SIGTERM), 1 when the server
/// cannot start or fails, 2 for bad arguments.
#[derive(Debug, Parser)]
#[command(name = "provisiond", version, about, long_about)]
struct Args {
    /// The configuration file (TOML; every setting is optional, see
    /// examples/provisiond.toml).
    #[arg(
        long,
        short,
        value_name = "FILE",
        default_value = "/etc/provision/provisiond.toml"
    )]
    config: PathBuf,
    /// Set up a demo in DIR (default ./demo) on loopback and unprivileged ports, with
    /// a demo vDisk and device, and serve it. Reuses an existing demo folder.
    #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = "demo", conflicts_with = "config")]
    demo: Option<PathBuf>,
    /// Listen for NBD on this address instead of the configured one (port 0 picks a
    /// free port).
    #[arg(long, value_name = "ADDR:PORT")]
    nbd_listen: Option<std::net::SocketAddr>,
    /// Listen for the admin API on this address instead of the configured one.
    #[arg(long, value_name = "ADDR:PORT")]
    api_listen: Option<std::net::SocketAddr>,
    /// Log format on stderr (overrides the config file).
    #[arg(long, value_parser = ["text", "json"])]
    log_format: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config_path = match &args.demo {
        Some(dir) => match demo::prepare(dir) {
            Ok(path) => path,
            Err(e) => return fail(&format!("cannot set up the demo in {}: {e}", dir.display())),
        },
        None => args.config.clone(),
    };
    let mut config = match Config::load(&config_path) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    if let Some(listen) = args.nbd_listen {
        config.nbd.listen = listen;
    }
    if let Some(listen) = args.api_listen {
        config.api.listen = listen;
        if let Err(e) = config.api.check() {
            return fail(&format!("--api-listen: {e}"));
        }
    }
    // What provisiond writes (the database, vDisks, private disks, caches, leases) is
    // for the service alone: 0600 files, 0700 folders.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let json = args.log_format.as_deref().unwrap_or(&config.log.format) == "json";
    provision_examples::init_logging(json);
    warn_if_token_readable(&config_path, &config);
    raise_open_file_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(run(config, args.demo)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// A config file that holds the API token should be readable by the service only.
fn warn_if_token_readable(path: &std::path::Path, config: &Config) {
    use std::os::unix::fs::PermissionsExt;
    if config.api.token.is_empty() {
        return;
    }
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            file = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the config file holds the API token and others can read it: chmod 600 it"
        );
    }
}

/// Every connection is a descriptor: raises the soft limit of open files to the hard
/// one (systemd's default soft limit, 1024, is less than the NBD connection limit).
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
        }
    }
    tracing::debug!(open_files = ?limit.current, "open-file limit");
}

fn fail(message: &str) -> ExitCode {
    eprintln!("provisiond: {message}");
    ExitCode::from(1)
}

async fn run(config: Config, demo: Option<PathBuf>) -> Result<(), String> {
    let store = Store::open(&config.store)
        .map_err(|e| format!("cannot open the store {}: {e}", config.store.display()))?
        .with_actor("provisiond")
        .with_auto_add_limits(config.auto_add.limits());
    for file in leftover_files(&store).map_err(|e| e.to_string())? {
        tracing::warn!(
            file,
            "file in the store that no version names (left by an interrupted import?)"
        );
    }
    let store = Arc::new(store);
    let sessions =
        Sessions::new(store.clone(), config.session_settings()?).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let tftp_counters = Arc::new(TftpCounters::default());

    let expiry = {
        let sessions = sessions.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                let dropped = sessions.expire(Instant::now());
                if dropped > 0 {
                    tracing::info!(dropped, "write caches past their grace period dropped");
                }
            }
        })
    };

    let tftp = if config.tftp.enabled {
        Some(tokio::spawn(
            serve_tftp(
                &config,
                store.clone(),
                sessions.clone(),
                tftp_counters.clone(),
            )
            .await?,
        ))
    } else {
        None
    };
    let _stop_tftp = AbortOnDrop(tftp);

    let mut dhcp_stats = None;
    let dhcp = if config.dhcp.enabled {
        Some(tokio::spawn(
            serve_dhcp(&config, store.clone(), sessions.clone(), &mut dhcp_stats).await?,
        ))
    } else {
        None
    };
    let _stop_dhcp = AbortOnDrop(dhcp);

    let (api, api_addr) = if config.api.enabled {
        let api = api::Api {
            store_dir: config.store.clone(),
            import_folder: config.api.import_folder.clone(),
            sessions: sessions.clone(),
            tokens: api::credentials(&config.api)?,
            started,
            services: serde_json::json!({
                "nbd": config.nbd.enabled.then(|| config.nbd.listen.to_string()),
                "tftp": config.tftp.enabled.then(|| config.tftp.listen.to_string()),
                "dhcp": config.dhcp.enabled.then(|| format!("{:?} on {}", config.dhcp.mode, config.dhcp.interface).to_lowercase()),
            }),
            tftp: tftp_counters.clone(),
            dhcp: dhcp_stats,
        };
        let (task, addr) = api::start(config.api.listen, api).await?;
        (Some(task), Some(addr))
    } else {
        (None, None)
    };
    let _stop_api = AbortOnDrop(api);

    if !config.nbd.enabled {
        tracing::warn!("NBD is off in the configuration; the other services run until a signal");
        wait_for_signal().await;
        return Ok(());
    }
    let server_config = config.nbd.server_config()?;
    let listener = listen(config.nbd.listen, &server_config)
        .map_err(|e| format!("cannot listen for NBD on {}: {e}", config.nbd.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let server = Server::new(
        Arc::new(SessionExports::new(sessions.clone())),
        server_config,
    );
    let shutdown = server.shutdown_handle();
    tracing::info!(%addr, "NBD service listening");
    if let Some(dir) = &demo {
        // Not println!: a closed stdout (`provisiond --demo | head`) must not stop the server.
        let _ = writeln!(
            std::io::stdout(),
            "{}",
            demo::instructions(addr, api_addr, dir, &store)
        );
    }
    let serve = server.serve(listener);
    tokio::pin!(serve);
    let result = tokio::select! {
        result = &mut serve => result,
        () = wait_for_signal() => {
            tracing::info!("shutting down: in-flight requests finish, sessions flush");
            shutdown.shutdown();
            match tokio::time::timeout(Duration::from_secs(30), &mut serve).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!("connections still open after 30 s; exiting anyway");
                    Ok(())
                }
            }
        }
    };
    expiry.abort();
    result.map_err(|e| format!("NBD service failed: {e}"))?;
    tracing::info!(sessions = sessions.list().len(), "stopped");
    Ok(())
}

/// Binds the TFTP service: per-device files over the boot-file folder.
async fn serve_tftp(
    config: &Config,
    store: Arc<Store>,
    sessions: Sessions,
    counters: Arc<TftpCounters>,
) -> Result<impl std::future::Future<Output = ()> + Send + 'static, String> {
    let root = &config.tftp.root;
    std::fs::create_dir_all(root)
        .map_err(|e| format!("cannot create the TFTP folder {}: {e}", root.display()))?;
    let folder =
        tftp::DirProvider::new(root).map_err(|e| format!("TFTP folder {}: {e}", root.display()))?;
    // With our DHCP service on, its DISCOVER starts a boot; else the script fetch does.
    let start = if config.dhcp.enabled {
        BootStart::Dhcp
    } else {
        BootStart::Script
    };
    let files = DeviceFiles::new(store, sessions, config.boot.settings(), start);
    let server = tftp::Server::bind(
        config.tftp.listen,
        Counted::new(tftp::Fallback::new(files, folder), counters.clone()),
        tftp::ServerConfig {
            busy_poll: Duration::from_micros(config.tftp.busy_poll_us),
            ..tftp::ServerConfig::default()
        },
    )
    .await
    .map_err(|e| format!("cannot listen for TFTP on {}: {e}", config.tftp.listen))?;
    let _ = counters.panics.set(server.panics());
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, root = %root.display(), "TFTP service listening");
    Ok(async move {
        if let Err(e) = server.run().await {
            tracing::error!(error = %e, "TFTP service stopped");
        }
    })
}

/// The file of full DHCP mode's leases, in the store folder.
const LEASE_FILE: &str = "dhcp-leases";

/// Binds the DHCP service (ProxyDHCP, or full DHCP): the devices of the store answered
/// per client.
async fn serve_dhcp(
    config: &Config,
    store: Arc<Store>,
    sessions: Sessions,
    stats: &mut Option<Arc<DriverStats>>,
) -> Result<impl std::future::Future<Output = ()> + Send + 'static, String> {
    let dhcp = &config.dhcp;
    let settings = dhcp.settings(&config.boot.settings().prefix)?;
    if !config.tftp.enabled {
        tracing::warn!(
            "dhcp is enabled but tftp is not: devices will be sent to a TFTP server that does not answer"
        );
    }
    let server_ip = settings.server_ip;
    let policy = Arc::new(StorePolicy::new(store, Some(sessions), settings));
    let mode = match dhcp.mode {
        DhcpKind::Proxy => DhcpMode::ProxyFrom(policy),
        DhcpKind::Full => {
            let leases_path = config.store.join(LEASE_FILE);
            let leases = Leases::load(&leases_path).map_err(|e| e.to_string())?;
            tracing::info!(leases = leases.len(), file = %leases_path.display(), "DHCP leases loaded");
            let server =
                FullDhcp::new(Policy::new(server_ip), dhcp.full_config(server_ip)?, leases)
                    .with_boot_policy(policy);
            DhcpMode::Full {
                server: Box::new(server),
                leases_path: Some(leases_path),
            }
        }
    };
    let driver = DhcpDriver::bind(dhcp.driver_config(), mode)
        .await
        .map_err(|e| {
            format!(
                "cannot start DHCP on {} (ports {} and {}): {e}",
                dhcp.interface, dhcp.dhcp_port, dhcp.boot_port
            )
        })?;
    *stats = Some(driver.stats());
    tracing::info!(
        interface = %dhcp.interface,
        mode = ?dhcp.mode,
        %server_ip,
        router_advertisements = dhcp.router_advertisements,
        "DHCP service listening"
    );
    Ok(async move {
        if let Err(e) = driver.run().await {
            tracing::error!(error = %e, "DHCP service stopped");
        }
    })
}

/// Aborts a spawned service when the server returns.
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
