//! Service composition: the store, the sessions, and the NBD, TFTP, DHCP and admin-API
//! services of one provisiond, started from a [`Config`] and stopped by a shutdown
//! signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nbd_proto::driver::server::{Server as NbdServer, listen};
use provision_core::adapters::iscsi::SessionTargets;
use provision_core::adapters::nbd::SessionExports;
use provision_core::adapters::pxe::StorePolicy;
use provision_core::adapters::tftp::{BootStart, DeviceFiles};
use provision_core::{Sessions, Store, leftover_files};
use pxe::Policy;
use pxe::driver::{DriverStats, Mode as DhcpMode};
use pxe::full::FullDhcp;

use crate::api;
use crate::config::{Config, DhcpMode as DhcpKind};
use crate::metrics::{Counted, Metrics, TftpCounters};
use crate::service::dhcp::{bind, load_leases};

/// The file of full DHCP mode's leases, in the store folder.
const LEASE_FILE: &str = "dhcp-leases";

/// How long in-flight NBD requests may take to finish after a shutdown signal.
const DRAIN_TIME: Duration = Duration::from_secs(30);

/// A provisiond to start.
///
/// ```no_run
/// # async fn demo() -> Result<(), String> {
/// let config = provision_server::Config::load("/etc/provision/provisiond.toml".as_ref())?;
/// provision_server::Server::new(config)?
///     .run(async { let _ = tokio::signal::ctrl_c().await; })
///     .await
/// # }
/// ```
pub struct Server {
    config: Config,
}

/// A provisiond whose services are bound and serving; [`Running::serve`] waits for the
/// shutdown signal.
pub struct Running {
    /// The NBD service's address, when it runs.
    pub nbd: Option<SocketAddr>,
    /// The iSCSI service's address, when it runs.
    pub iscsi: Option<SocketAddr>,
    /// The admin API's address, when it runs.
    pub api: Option<SocketAddr>,
    /// The boot files' HTTP address, when that service runs.
    pub http: Option<SocketAddr>,
    /// The store the services serve.
    pub store: Arc<Store>,
    /// The sessions of the devices.
    pub sessions: Sessions,
    nbd_server: Option<(NbdServer, tokio::net::TcpListener)>,
    tasks: Vec<AbortOnDrop>,
}

impl Server {
    /// Checks `config` (what the file parser cannot see, like the API's token off
    /// loopback).
    pub fn new(config: Config) -> Result<Self, String> {
        config.api.check()?;
        Ok(Self { config })
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Starts every service and serves until `shutdown` completes; then in-flight NBD
    /// requests finish (at most 30 s) and sessions flush.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), String> {
        self.start().await?.serve(shutdown).await
    }

    /// Opens the store and binds every service; nothing is served from the NBD
    /// listener until [`Running::serve`].
    pub async fn start(self) -> Result<Running, String> {
        let config = self.config;
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
        let mut tasks = vec![AbortOnDrop(tokio::spawn(expire(sessions.clone())))];

        let mut http_addr = None;
        if config.tftp.enabled || config.http.enabled {
            let files = boot_files(&config, store.clone(), sessions.clone())?;
            if config.tftp.enabled {
                let tftp = serve_tftp(&config, files.clone(), &tftp_counters);
                tasks.push(AbortOnDrop(tokio::spawn(tftp.await?)));
            }
            if config.http.enabled {
                let (task, addr) =
                    crate::http::boot_files::start(config.http.listen, files).await?;
                tasks.push(AbortOnDrop(task));
                http_addr = Some(addr);
            }
        }
        let mut dhcp_stats = None;
        if config.dhcp.enabled {
            let dhcp = serve_dhcp(&config, store.clone(), sessions.clone(), &mut dhcp_stats);
            tasks.push(AbortOnDrop(tokio::spawn(dhcp.await?)));
        }
        let mut api_addr = None;
        if config.api.enabled {
            let api = api::Api {
                store_dir: config.store.clone(),
                import_folder: config.api.import_folder.clone(),
                sessions: sessions.clone(),
                tokens: api::credentials(&config.api)?,
                started,
                services: [
                    (
                        "nbd",
                        config.nbd.enabled.then(|| config.nbd.listen.to_string()),
                    ),
                    (
                        "iscsi",
                        config
                            .iscsi
                            .enabled
                            .then(|| config.iscsi.listen.to_string()),
                    ),
                    (
                        "tftp",
                        config.tftp.enabled.then(|| config.tftp.listen.to_string()),
                    ),
                    ("http", http_addr.map(|a: SocketAddr| a.to_string())),
                    (
                        "dhcp",
                        config.dhcp.enabled.then(|| {
                            format!("{:?} on {}", config.dhcp.mode, config.dhcp.interface)
                                .to_lowercase()
                        }),
                    ),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
                metrics: Metrics::new(sessions.clone(), tftp_counters.clone(), dhcp_stats, started),
            };
            let (task, addr) = api::start(config.api.listen, api).await?;
            tasks.push(AbortOnDrop(task));
            api_addr = Some(addr);
        }
        let mut iscsi_addr = None;
        if config.iscsi.enabled {
            let (task, addr) = serve_iscsi(&config, store.clone(), sessions.clone()).await?;
            tasks.push(AbortOnDrop(tokio::spawn(task)));
            iscsi_addr = Some(addr);
        }
        let (mut nbd_addr, mut nbd_server) = (None, None);
        if config.nbd.enabled {
            let server_config = config.nbd.server_config()?;
            let listener = listen(config.nbd.listen, &server_config)
                .map_err(|e| format!("cannot listen for NBD on {}: {e}", config.nbd.listen))?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            tracing::info!(%addr, "NBD service listening");
            let exports = Arc::new(SessionExports::new(sessions.clone()));
            nbd_server = Some((NbdServer::new(exports, server_config), listener));
            nbd_addr = Some(addr);
        } else {
            tracing::warn!(
                "NBD is off in the configuration; the other services run until a signal"
            );
        }
        Ok(Running {
            nbd: nbd_addr,
            iscsi: iscsi_addr,
            api: api_addr,
            http: http_addr,
            store,
            sessions,
            nbd_server,
            tasks,
        })
    }
}

impl Running {
    /// Serves until `shutdown` completes, then lets in-flight NBD requests finish.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), String> {
        let Running {
            sessions,
            nbd_server,
            tasks,
            ..
        } = self;
        let Some((server, listener)) = nbd_server else {
            shutdown.await;
            return Ok(());
        };
        let handle = server.shutdown_handle();
        let serve = server.serve(listener);
        tokio::pin!(serve);
        let result = tokio::select! {
            result = &mut serve => result,
            () = shutdown => {
                tracing::info!("shutting down: in-flight requests finish, sessions flush");
                handle.shutdown();
                match tokio::time::timeout(DRAIN_TIME, &mut serve).await {
                    Ok(result) => result,
                    Err(_) => {
                        tracing::warn!("connections still open after 30 s; exiting anyway");
                        Ok(())
                    }
                }
            }
        };
        drop(tasks);
        result.map_err(|e| format!("NBD service failed: {e}"))?;
        tracing::info!(sessions = sessions.list().len(), "stopped");
        Ok(())
    }
}

/// Drops write caches past their grace period, every 5 s.
async fn expire(sessions: Sessions) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let dropped = sessions.expire(Instant::now());
        if dropped > 0 {
            tracing::info!(dropped, "write caches past their grace period dropped");
        }
    }
}

/// The boot files TFTP and HTTP serve: each device's script and personality over the
/// boot-file folder.
type BootFiles = tftp::Fallback<DeviceFiles, tftp::DirProvider>;

fn boot_files(
    config: &Config,
    store: Arc<Store>,
    sessions: Sessions,
) -> Result<Arc<BootFiles>, String> {
    let root = &config.tftp.root;
    std::fs::create_dir_all(root)
        .map_err(|e| format!("cannot create the boot-file folder {}: {e}", root.display()))?;
    let folder = tftp::DirProvider::new(root)
        .map_err(|e| format!("boot-file folder {}: {e}", root.display()))?;
    // With our DHCP service on, its DISCOVER starts a boot; else the script fetch does.
    let start = if config.dhcp.enabled {
        BootStart::Dhcp
    } else {
        BootStart::Script
    };
    let files = DeviceFiles::new(store, sessions, config.boot_settings()?, start);
    Ok(Arc::new(tftp::Fallback::new(files, folder)))
}

/// Binds the TFTP service.
async fn serve_tftp(
    config: &Config,
    files: Arc<BootFiles>,
    counters: &Arc<TftpCounters>,
) -> Result<impl Future<Output = ()> + Send + 'static, String> {
    let server = tftp::Server::bind(
        config.tftp.listen,
        Counted::new(files, counters.clone()),
        config.tftp.server_config(),
    )
    .await
    .map_err(|e| format!("cannot listen for TFTP on {}: {e}", config.tftp.listen))?;
    let _ = counters.panics.set(server.panics());
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, root = %config.tftp.root.display(), "TFTP service listening");
    Ok(async move {
        if let Err(e) = server.run().await {
            tracing::error!(error = %e, "TFTP service stopped");
        }
    })
}

/// Binds the iSCSI service: device sessions as targets (see
/// `provision_core::adapters::iscsi`). Its connections end with the process.
async fn serve_iscsi(
    config: &Config,
    store: Arc<Store>,
    sessions: Sessions,
) -> Result<(impl Future<Output = ()> + Send + 'static, SocketAddr), String> {
    let listen = config.iscsi.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen for iSCSI on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let catalog = Arc::new(SessionTargets::new(sessions, store));
    // The target name and CHAP of the configuration are unused: the catalog decides.
    let target = Arc::new(iscsi::session::Target::with_catalog(
        iscsi::session::TargetConfig::new(provision_core::adapters::iscsi::TARGET_PREFIX),
        catalog,
    ));
    let server_config = config.iscsi.server_config();
    tracing::info!(%addr, "iSCSI service listening");
    Ok((
        async move {
            let forever = std::future::pending::<()>();
            if let Err(e) = iscsi::driver::serve(listener, target, server_config, forever).await {
                tracing::error!(error = %e, "iSCSI service stopped");
            }
        },
        addr,
    ))
}

/// Binds the DHCP service (ProxyDHCP, or full DHCP): the devices of the store answered
/// per client.
async fn serve_dhcp(
    config: &Config,
    store: Arc<Store>,
    sessions: Sessions,
    stats: &mut Option<Arc<DriverStats>>,
) -> Result<impl Future<Output = ()> + Send + 'static, String> {
    let dhcp = &config.dhcp;
    let settings = config.dhcp_settings()?;
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
            let leases = load_leases(Some(&leases_path))?;
            let server =
                FullDhcp::new(Policy::new(server_ip), dhcp.full_config(server_ip)?, leases)
                    .with_boot_policy(policy);
            DhcpMode::Full {
                server: Box::new(server),
                leases_path: Some(leases_path),
            }
        }
    };
    let driver = bind(dhcp, dhcp.driver_config(), mode).await?;
    *stats = Some(driver.stats());
    Ok(async move {
        if let Err(e) = driver.run().await {
            tracing::error!(error = %e, "DHCP service stopped");
        }
    })
}

/// Aborts a spawned service when the server stops.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
