//! `provisiond.toml`: the server's settings (read by `provisiond`, and by `provision`
//! to find the store). Every field has a default, so an empty
//! file is a valid configuration (store `./store`, NBD on 127.0.0.1:10809).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use provision_core::SessionSettings;
use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The store folder (vDisk files and the database), relative to the config file.
    pub store: PathBuf,
    /// The NBD service.
    pub nbd: Nbd,
    /// The iSCSI service.
    pub iscsi: Iscsi,
    /// Write caches and sessions.
    pub sessions: SessionsConfig,
    /// The TFTP service: per-device boot files and a folder of boot files.
    pub tftp: Tftp,
    /// The same boot files over HTTP.
    pub http: Http,
    /// The ProxyDHCP service: answers the PXE clients of known devices.
    pub dhcp: Dhcp,
    /// What the per-device iPXE scripts boot.
    pub boot: Boot,
    /// The admin API and metrics.
    pub api: Api,
    /// Logging.
    pub log: Log,
    /// Bounds on adding unknown devices automatically.
    pub auto_add: AutoAdd,
}

/// `[auto_add]`: how fast and how far auto-add collections grow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoAdd {
    /// Devices added automatically in any one minute.
    pub per_minute: u32,
    /// Devices an auto-add collection may hold.
    pub max_devices: u32,
}

impl Default for AutoAdd {
    fn default() -> Self {
        let limits = provision_core::AutoAddLimits::default();
        Self {
            per_minute: limits.per_minute,
            max_devices: limits.max_devices,
        }
    }
}

impl AutoAdd {
    /// The store's limits.
    pub fn limits(&self) -> provision_core::AutoAddLimits {
        provision_core::AutoAddLimits {
            per_minute: self.per_minute,
            max_devices: self.max_devices,
        }
    }
}

/// `[nbd]`: the block service devices and hypervisors read vDisks from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Nbd {
    /// Serve NBD at all.
    pub enabled: bool,
    /// Address and port.
    pub listen: SocketAddr,
    /// Connections served at once.
    pub max_connections: usize,
    /// Request and reply data held in memory across all connections (e.g. "512M");
    /// see `nbd_proto::driver::server::ServerConfig::max_buffered_bytes`.
    pub max_buffered: String,
    /// Microseconds a connection whose client sends one request at a time polls for
    /// the next one before it sleeps (0: off); see
    /// `nbd_proto::driver::server::ServerConfig::busy_poll`.
    pub busy_poll_us: u64,
    /// TCP congestion control of NBD connections (`system`: the machine's); see
    /// `nbd_proto::driver::server::ServerConfig::congestion_control`.
    pub tcp_congestion: String,
    /// Seconds of silence before TCP keepalive probes a connection (then 3 probes 10 s
    /// apart); 0 turns keepalive off. See
    /// `nbd_proto::driver::server::ServerConfig::keepalive`.
    pub keepalive_seconds: u64,
    /// Seconds an idle connection is kept (0: for ever); see
    /// `nbd_proto::driver::server::ServerConfig::idle_timeout`.
    pub idle_timeout_seconds: u64,
}

/// `[iscsi]`: vDisks as iSCSI targets, for `sanboot` and the OS initiators after it
/// (see `provision_core::adapters::iscsi` for the names and CHAP secrets).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Iscsi {
    /// Serve iSCSI at all (off by default).
    pub enabled: bool,
    /// Address and port (3260, iSCSI's port).
    pub listen: SocketAddr,
    /// Connections served at once; further ones are closed.
    pub max_connections: usize,
    /// Seconds a connection may take to log in.
    pub login_timeout_seconds: u64,
    /// Seconds a logged-in connection may stay silent (0: for ever).
    pub idle_timeout_seconds: u64,
}

impl Default for Iscsi {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 3260)),
            max_connections: 1024,
            login_timeout_seconds: 30,
            idle_timeout_seconds: 0,
        }
    }
}

impl Iscsi {
    /// The driver's limits.
    pub fn server_config(&self) -> iscsi::driver::ServerConfig {
        iscsi::driver::ServerConfig {
            login_timeout: Duration::from_secs(self.login_timeout_seconds.max(1)),
            idle_timeout: (self.idle_timeout_seconds > 0)
                .then(|| Duration::from_secs(self.idle_timeout_seconds)),
            max_connections: self.max_connections,
        }
    }
}

/// A boot method as `[boot.methods]` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootMethodName {
    /// Kernel and initrd over TFTP, root over NBD.
    LinuxNbd,
    /// iPXE `sanboot` over iSCSI.
    Sanboot,
}

/// `[sessions]`: standard-mode write caches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    /// RAM per device write cache before it spills to the store (e.g. "64M").
    pub cache_ram: String,
    /// Most data one device's write cache holds; past it writes fail with ENOSPC.
    pub cache_quota: String,
    /// Seconds a write cache waits for its device to reconnect.
    pub grace_seconds: u64,
    /// Where write caches live: `disk` (a file per boot, survives restarts) or `ram`
    /// (spilling to a file, lost at a restart); see
    /// `provision_core::SessionSettings::durable_caches`.
    pub write_cache: String,
}

/// `[tftp]`: per-device iPXE scripts and personality, and the files of a folder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tftp {
    /// Serve TFTP at all.
    pub enabled: bool,
    /// Address and port (69 needs root or CAP_NET_BIND_SERVICE).
    pub listen: SocketAddr,
    /// Folder of boot files (iPXE binaries, kernels, initrds), relative to the config
    /// file; requests cannot leave it.
    pub root: PathBuf,
    /// Microseconds a transfer polls for the client's answer before it sleeps (0: off);
    /// see `tftp::ServerConfig::busy_poll`.
    pub busy_poll_us: u64,
}

/// `[http]`: the boot files over HTTP (the TFTP folder and the per-device files, under
/// the same names; read-only, no token). With it on, iPXE scripts fetch kernel and
/// initrd over HTTP, and UEFI HTTP-boot clients are offered iPXE from it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Serve HTTP at all.
    pub enabled: bool,
    /// Address and port.
    pub listen: SocketAddr,
    /// The service as devices reach it, `host:port`; empty: the host of
    /// `boot.nbd_server` with the port of `listen`.
    pub advertise: String,
}

/// `[dhcp]`: ProxyDHCP beside the site's DHCP server (which hands out the addresses),
/// or full DHCP on an isolated segment: PXE and HTTP-boot clients of known, enabled
/// devices get iPXE for their architecture, then iPXE gets the device's script
/// `provision/<mac>.ipxe` from `[tftp]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dhcp {
    /// Serve DHCP at all.
    pub enabled: bool,
    /// `proxy` (beside the site's DHCP server) or `full` (hand out addresses too).
    pub mode: DhcpMode,
    /// Full mode: the address pool, `FIRST-LAST/PREFIX`. Required in full mode.
    pub pool: String,
    /// Full mode: the router (option 3).
    pub router: Option<Ipv4Addr>,
    /// Full mode: DNS servers (option 6).
    pub dns: Vec<Ipv4Addr>,
    /// Full mode: lease time in seconds.
    pub lease_seconds: u32,
    /// Full mode: fixed addresses by MAC.
    pub reservations: BTreeMap<String, Ipv4Addr>,
    /// The boot network's interface; the sockets are bound to it. Required when enabled.
    pub interface: String,
    /// Our IPv4 address on that interface: option 54 and the TFTP server (`siaddr`).
    /// Required when enabled.
    pub server_ip: Option<Ipv4Addr>,
    /// What PXE ROMs and UEFI firmware (not yet iPXE) boot, by architecture name
    /// (`bios`, `efi-x64`, `efi-bc`, `efi-arm64`, `efi-x64-http`, ... or the option 93
    /// number): a file in the TFTP folder, or an `http(s)://` URI for HTTP boot.
    pub boot_files: BTreeMap<String, String>,
    /// Answer IPv6 router solicitations on the interface with a lifetime-0 router
    /// advertisement (saves iPXE about 14 s on IPv4-only networks).
    pub router_advertisements: bool,
    /// DHCP server port (67).
    pub dhcp_port: u16,
    /// PXE boot server port (4011): ProxyDHCP REQUESTs.
    pub boot_port: u16,
    /// The clients' port (68): broadcast replies go there.
    pub client_port: u16,
}

/// The DHCP service's part: boot information only, or addresses as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DhcpMode {
    /// ProxyDHCP: never hands out addresses.
    Proxy,
    /// A full DHCP server for a segment of its own; leases kept in the store folder.
    Full,
}

/// `[boot]`: how per-device iPXE scripts boot a vDisk (`{vdisk}` is replaced by its name).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Boot {
    /// The NBD service as devices reach it, `host:port` (the address of the boot
    /// network's interface, not loopback).
    pub nbd_server: String,
    /// Kernel path on the TFTP server.
    pub kernel: String,
    /// Initrd path on the TFTP server.
    pub initrd: String,
    /// Kernel command line; `nbdroot=`, `hostname=` and `initrd=` are appended.
    pub cmdline: String,
    /// Seconds the boot menu (several vDisks) waits before booting the first.
    pub menu_timeout: u32,
    /// The iSCSI service as devices reach it, `host:port` (empty: the host of
    /// `nbd_server` and the port of `[iscsi] listen`).
    pub iscsi_server: String,
    /// How vDisks boot, by name: `linux-nbd` (the default) or `sanboot`.
    pub methods: BTreeMap<String, BootMethodName>,
}

/// `[api]`: the admin HTTP API and the Prometheus `/metrics` endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Api {
    /// Serve the API at all.
    pub enabled: bool,
    /// Address and port; loopback by default.
    pub listen: SocketAddr,
    /// Bearer token every request must carry; required when `listen` is not loopback.
    /// It is the `admin` token; `tokens` adds named ones with narrower roles.
    pub token: String,
    /// Named tokens: the audit log records the name of the token a change came with.
    pub tokens: Vec<ApiToken>,
    /// The only folder `vdisk import` through the API reads images from (relative to
    /// the config file; symlinks out of it are refused).
    pub import_folder: PathBuf,
}

impl Default for Api {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 10810)),
            token: String::new(),
            tokens: Vec::new(),
            import_folder: PathBuf::from("imports"),
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// "text" or "json".
    pub format: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            store: PathBuf::from("store"),
            nbd: Nbd::default(),
            iscsi: Iscsi::default(),
            sessions: SessionsConfig::default(),
            tftp: Tftp::default(),
            http: Http::default(),
            dhcp: Dhcp::default(),
            boot: Boot::default(),
            api: Api::default(),
            log: Log::default(),
            auto_add: AutoAdd::default(),
        }
    }
}

impl Default for Nbd {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 10809)),
            max_connections: 4096,
            max_buffered: "512M".into(),
            busy_poll_us: 50,
            tcp_congestion: "cubic".into(),
            keepalive_seconds: 30,
            idle_timeout_seconds: 0,
        }
    }
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self {
            cache_ram: "64M".into(),
            cache_quota: "4G".into(),
            grace_seconds: 120,
            write_cache: "disk".into(),
        }
    }
}

impl Default for Tftp {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: SocketAddr::from(([0, 0, 0, 0], 69)),
            root: PathBuf::from("tftp"),
            busy_poll_us: 50,
        }
    }
}

impl Default for Http {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            advertise: String::new(),
        }
    }
}

impl Default for Dhcp {
    fn default() -> Self {
        let defaults = provision_core::adapters::pxe::DhcpSettings::new(Ipv4Addr::UNSPECIFIED);
        Self {
            enabled: false,
            mode: DhcpMode::Proxy,
            pool: String::new(),
            router: None,
            dns: Vec::new(),
            lease_seconds: 3600,
            reservations: BTreeMap::new(),
            interface: String::new(),
            server_ip: None,
            boot_files: defaults
                .boot_files
                .into_iter()
                .map(|b| (b.arch.name(), b.file))
                .collect(),
            router_advertisements: false,
            dhcp_port: 67,
            boot_port: 4011,
            client_port: 68,
        }
    }
}

impl Default for Boot {
    fn default() -> Self {
        let defaults = provision_core::adapters::tftp::BootSettings::new("127.0.0.1:10809");
        Self {
            nbd_server: defaults.nbd_server,
            kernel: defaults.kernel,
            initrd: defaults.initrd,
            cmdline: defaults.cmdline,
            menu_timeout: defaults.menu_timeout_secs,
            iscsi_server: String::new(),
            methods: BTreeMap::new(),
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Self {
            format: "text".into(),
        }
    }
}

impl Config {
    /// Warns when the file at `path`, which holds the API token, is readable by others
    /// than the service.
    pub fn warn_if_token_readable(&self, path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        if self.api.token.is_empty() && self.api.tokens.is_empty() {
            return;
        }
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                file = %path.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "the config file holds API tokens and others can read it: chmod 600 it"
            );
        }
    }

    /// Reads and checks the file at `path` (see [`Config::parse`]); relative folders
    /// are taken from the file's folder.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, dir).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses and checks the text of a configuration file: TOML with no unknown keys,
    /// then every value the services will need (sizes, the write-cache kind, DHCP
    /// settings when enabled, the API's exposure, the log format). Relative folders
    /// (store, TFTP root, import folder) are taken from `dir`. Reads no file.
    ///
    /// ```
    /// use provision_server::Config;
    /// let config = Config::parse("[nbd]\nmax_buffered = \"64M\"\n", "/etc/provision".as_ref())?;
    /// assert_eq!(config.store, std::path::Path::new("/etc/provision/store"));
    /// assert!(Config::parse("[nbd]\nmax_bufered = \"64M\"\n", "/".as_ref()).is_err());
    /// # Ok::<(), String>(())
    /// ```
    pub fn parse(text: &str, dir: &Path) -> Result<Self, String> {
        let mut config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        if config.store.is_relative() {
            config.store = dir.join(&config.store);
        }
        if config.tftp.root.is_relative() {
            config.tftp.root = dir.join(&config.tftp.root);
        }
        if config.api.import_folder.is_relative() {
            config.api.import_folder = dir.join(&config.api.import_folder);
        }
        config.session_settings()?;
        config.nbd.server_config()?;
        config.boot_settings()?;
        if config.dhcp.enabled {
            let settings = config.dhcp_settings()?;
            if config.dhcp.mode == DhcpMode::Full {
                config.dhcp.full_config(settings.server_ip)?;
            }
        }
        config.api.check()?;
        if !matches!(config.log.format.as_str(), "text" | "json") {
            return Err("log.format must be \"text\" or \"json\"".into());
        }
        Ok(config)
    }

    /// One line per service: on or off, and where (what `provisiond --check` prints).
    pub fn summary(&self) -> String {
        let on = |enabled: bool, at: String| if enabled { at } else { "off".to_owned() };
        [
            format!("store: {}", self.store.display()),
            format!("nbd: {}", on(self.nbd.enabled, self.nbd.listen.to_string())),
            format!(
                "tftp: {}",
                on(
                    self.tftp.enabled,
                    format!("{} (folder {})", self.tftp.listen, self.tftp.root.display())
                )
            ),
            format!(
                "http: {}",
                on(self.http.enabled, self.http.listen.to_string())
            ),
            format!(
                "dhcp: {}",
                on(
                    self.dhcp.enabled,
                    format!("{:?} on {}", self.dhcp.mode, self.dhcp.interface).to_lowercase()
                )
            ),
            format!(
                "api: {}",
                on(
                    self.api.enabled,
                    format!(
                        "{} ({} token(s))",
                        self.api.listen,
                        self.api.tokens.len() + usize::from(!self.api.token.is_empty())
                    )
                )
            ),
        ]
        .join("\n")
    }

    /// What the per-device scripts boot, and from where: kernel and initrd over HTTP
    /// when `[http]` is on; `sanboot` vDisks from the iSCSI service as devices reach it
    /// when `[iscsi]` is on (`boot.iscsi_server`, else the host of `boot.nbd_server`
    /// with the port of `iscsi.listen`), none when it is off.
    pub fn boot_settings(&self) -> Result<provision_core::adapters::tftp::BootSettings, String> {
        let mut settings = self.boot.settings();
        settings.iscsi_server = match (self.iscsi.enabled, self.boot.iscsi_server.is_empty()) {
            (false, _) => String::new(),
            (true, false) => self.boot.iscsi_server.clone(),
            (true, true) => {
                let host = self
                    .boot
                    .nbd_server
                    .rsplit_once(':')
                    .map_or(self.boot.nbd_server.as_str(), |(h, _)| h);
                format!("{host}:{}", self.iscsi.listen.port())
            }
        };
        if self.http.enabled {
            let host_port = if self.http.advertise.is_empty() {
                let (host, _) = self.boot.nbd_server.rsplit_once(':').ok_or_else(|| {
                    format!(
                        "boot.nbd_server {:?} is not host:port, so http.advertise must be set",
                        self.boot.nbd_server
                    )
                })?;
                format!("{host}:{}", self.http.listen.port())
            } else {
                self.http.advertise.clone()
            };
            settings.file_server = Some(format!("http://{host_port}"));
        }
        Ok(settings)
    }

    /// The ProxyDHCP (or full DHCP) answers' settings. With `[http]` on, UEFI x64
    /// HTTP-boot clients are offered `ipxe.efi` from it by an IP-literal URL (a host
    /// name only works when the site's DHCP offer carries DNS), unless
    /// `dhcp.boot_files` names another file for `efi-x64-http`.
    pub fn dhcp_settings(&self) -> Result<provision_core::adapters::pxe::DhcpSettings, String> {
        let mut settings = self.dhcp.settings(&self.boot.settings().prefix)?;
        let http_boot = pxe::options::ClientArch::EfiX64Http;
        if self.http.enabled && !settings.boot_files.iter().any(|f| f.arch == http_boot) {
            settings.boot_files.push(pxe::policy::BootFile {
                arch: http_boot,
                file: format!(
                    "http://{}:{}/ipxe.efi",
                    settings.server_ip,
                    self.http.listen.port()
                ),
            });
        }
        Ok(settings)
    }

    /// The session limits, with sizes parsed.
    pub fn session_settings(&self) -> Result<SessionSettings, String> {
        let size = |field: &str, text: &str| {
            crate::parse_size(text).map_err(|e| format!("sessions.{field}: {e}"))
        };
        Ok(SessionSettings {
            cache_ram_bytes: size("cache_ram", &self.sessions.cache_ram)?,
            cache_quota_bytes: size("cache_quota", &self.sessions.cache_quota)?,
            grace: Duration::from_secs(self.sessions.grace_seconds),
            durable_caches: match self.sessions.write_cache.as_str() {
                "disk" => true,
                "ram" => false,
                other => {
                    return Err(format!(
                        "sessions.write_cache must be \"disk\" or \"ram\", not {other:?}"
                    ));
                }
            },
        })
    }
}

/// `[[api.tokens]]`: a named bearer token with a role.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// Who holds it, as the audit log names them.
    pub name: String,
    /// The secret itself.
    pub token: String,
    /// `viewer` (reads only), `operator` (day-to-day changes) or `admin` (everything,
    /// removals and imports included).
    pub role: String,
}

impl Api {
    /// The one rule of the API's exposure, whatever set the address (the config file or
    /// `--api-listen`): off loopback, a token is required.
    pub fn check(&self) -> Result<(), String> {
        for t in &self.tokens {
            if t.name.is_empty() || t.token.len() < 16 {
                return Err(format!(
                    "api.tokens: `{}` needs a name and a token of at least 16 characters",
                    t.name
                ));
            }
            if !matches!(t.role.as_str(), "viewer" | "operator" | "admin") {
                return Err(format!(
                    "api.tokens: `{}` has role {:?}; roles are viewer, operator and admin",
                    t.name, t.role
                ));
            }
        }
        if self.enabled
            && !self.listen.ip().is_loopback()
            && self.token.is_empty()
            && self.tokens.is_empty()
        {
            return Err(format!(
                "api.listen {} is not loopback, so api.token must be set",
                self.listen
            ));
        }
        Ok(())
    }
}

impl Nbd {
    /// The NBD server's settings, with sizes parsed.
    pub fn server_config(&self) -> Result<nbd_proto::driver::server::ServerConfig, String> {
        let max_buffered =
            crate::parse_size(&self.max_buffered).map_err(|e| format!("nbd.max_buffered: {e}"))?;
        use nbd_proto::driver::server::Keepalive;
        Ok(nbd_proto::driver::server::ServerConfig {
            max_connections: self.max_connections,
            max_buffered_bytes: usize::try_from(max_buffered).unwrap_or(usize::MAX),
            busy_poll: Duration::from_micros(self.busy_poll_us),
            congestion_control: crate::congestion_control(&self.tcp_congestion),
            keepalive: (self.keepalive_seconds > 0).then(|| Keepalive {
                idle: Duration::from_secs(self.keepalive_seconds),
                ..Keepalive::default()
            }),
            idle_timeout: (self.idle_timeout_seconds > 0)
                .then(|| Duration::from_secs(self.idle_timeout_seconds)),
            ..Default::default()
        })
    }
}

impl Boot {
    /// The settings of the per-device TFTP files (without the HTTP and iSCSI services'
    /// addresses: see [`Config::boot_settings`]).
    pub fn settings(&self) -> provision_core::adapters::tftp::BootSettings {
        use provision_core::adapters::tftp::BootMethod;
        provision_core::adapters::tftp::BootSettings {
            prefix: "provision".into(),
            nbd_server: self.nbd_server.clone(),
            kernel: self.kernel.clone(),
            initrd: self.initrd.clone(),
            cmdline: self.cmdline.clone(),
            menu_timeout_secs: self.menu_timeout,
            iscsi_server: self.iscsi_server.clone(),
            methods: self
                .methods
                .iter()
                .map(|(vdisk, m)| {
                    let method = match m {
                        BootMethodName::LinuxNbd => BootMethod::LinuxNbd,
                        BootMethodName::Sanboot => BootMethod::Sanboot,
                    };
                    (vdisk.clone(), method)
                })
                .collect(),
            file_server: None,
        }
    }
}

impl Dhcp {
    /// The settings of the ProxyDHCP policy; the per-device scripts live under `prefix`.
    pub fn settings(
        &self,
        prefix: &str,
    ) -> Result<provision_core::adapters::pxe::DhcpSettings, String> {
        if self.interface.is_empty() {
            return Err("dhcp.interface is required when dhcp.enabled is true".into());
        }
        let server_ip = self
            .server_ip
            .ok_or("dhcp.server_ip is required when dhcp.enabled is true")?;
        let mut settings = provision_core::adapters::pxe::DhcpSettings::new(server_ip);
        settings.prefix = prefix.to_owned();
        settings.boot_files = self.boot_files()?;
        Ok(settings)
    }

    /// `boot_files` with their architectures parsed.
    pub fn boot_files(&self) -> Result<Vec<pxe::policy::BootFile>, String> {
        self.boot_files
            .iter()
            .map(|(name, file)| {
                Ok(pxe::policy::BootFile {
                    arch: arch(name).map_err(|e| format!("dhcp.boot_files: {e}"))?,
                    file: file.clone(),
                })
            })
            .collect()
    }

    /// Full mode's address pool, reservations and lease hold times.
    pub fn full_config(&self, server_ip: Ipv4Addr) -> Result<pxe::full::FullConfig, String> {
        if self.pool.is_empty() {
            return Err("dhcp.pool is required when dhcp.mode is \"full\"".into());
        }
        let mut pool = pxe::full::Pool::parse(&self.pool).map_err(|e| format!("dhcp.pool: {e}"))?;
        if !pool.in_subnet(server_ip) {
            return Err(format!(
                "dhcp.server_ip {server_ip} is not in the subnet of dhcp.pool {}",
                self.pool
            ));
        }
        pool.router = self.router;
        pool.dns.clone_from(&self.dns);
        pool.lease_secs = self.lease_seconds;
        let mut config = pxe::full::FullConfig::new(pool);
        for (mac, ip) in &self.reservations {
            let mac: provision_core::Mac =
                mac.parse().map_err(|e| format!("dhcp.reservations: {e}"))?;
            config.reservations.insert(mac.0, *ip);
        }
        Ok(config)
    }

    /// The driver's sockets: ports, interface (none: every interface), router
    /// advertisements.
    pub fn driver_config(&self) -> pxe::driver::DriverConfig {
        let interface = (!self.interface.is_empty()).then(|| self.interface.clone());
        let mut config = pxe::driver::DriverConfig::new(interface);
        config.dhcp_port = self.dhcp_port;
        config.boot_port = Some(self.boot_port);
        config.client_port = self.client_port;
        config.router_advertisements = self.router_advertisements;
        config
    }
}

/// A client architecture by name (`bios`, `efi-x64`, ...) or option 93 number.
pub fn arch(name: &str) -> Result<pxe::options::ClientArch, String> {
    pxe::options::ClientArch::from_name(name).ok_or_else(|| {
        format!(
            "unknown architecture `{name}` (try bios, efi-x64, efi-bc, efi-arm64, \
             efi-x64-http or the option 93 number)"
        )
    })
}

impl Tftp {
    /// The TFTP server's settings (limits and timeouts: the driver's defaults).
    pub fn server_config(&self) -> tftp::ServerConfig {
        tftp::ServerConfig {
            busy_poll: Duration::from_micros(self.busy_poll_us),
            ..tftp::ServerConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented example is a valid file (unknown keys are refused), and its
    /// busy-poll tuning is the default.
    #[test]
    fn the_example_file_parses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("provisiond.toml");
        std::fs::write(&path, include_str!("../../examples/provisiond.toml")).unwrap();
        let example = Config::load(&path).unwrap();
        assert_eq!(example.tftp.busy_poll_us, Tftp::default().busy_poll_us);
        assert_eq!(example.nbd.busy_poll_us, Nbd::default().busy_poll_us);
        assert_eq!(example.nbd.tcp_congestion, Nbd::default().tcp_congestion);
        let nbd = example.nbd.server_config().unwrap();
        assert_eq!(nbd.max_buffered_bytes, 512 << 20);
        assert_eq!(nbd.congestion_control, Some("cubic"));
    }

    /// With `[http]` on, scripts load kernel and initrd from it (at `advertise`, or the
    /// NBD host with the HTTP port), and UEFI x64 HTTP-boot clients are offered iPXE
    /// from it by an IP-literal URL, unless `dhcp.boot_files` names their file.
    #[test]
    fn http_boot_settings() {
        let base = "[dhcp]\nenabled = true\ninterface = \"br0\"\nserver_ip = \"10.0.0.1\"\n\
                    [boot]\nnbd_server = \"boot.lab:10809\"\n[http]\nenabled = true\n";
        let config = Config::parse(base, "/etc/provision".as_ref()).unwrap();
        let boot = config.boot_settings().unwrap();
        assert_eq!(boot.file_server.as_deref(), Some("http://boot.lab:8080"));
        let dhcp = config.dhcp_settings().unwrap();
        let http_boot = |d: &provision_core::adapters::pxe::DhcpSettings| {
            d.boot_files
                .iter()
                .find(|f| f.arch == pxe::options::ClientArch::EfiX64Http)
                .map(|f| f.file.clone())
        };
        assert_eq!(
            http_boot(&dhcp).as_deref(),
            Some("http://10.0.0.1:8080/ipxe.efi")
        );
        let text = format!(
            "{base}advertise = \"10.0.0.1:80\"\n[dhcp.boot_files]\nefi-x64-http = \"http://10.0.0.9/x.efi\"\n"
        );
        let config = Config::parse(&text, "/".as_ref()).unwrap();
        let boot = config.boot_settings().unwrap();
        assert_eq!(boot.file_server.as_deref(), Some("http://10.0.0.1:80"));
        assert_eq!(
            http_boot(&config.dhcp_settings().unwrap()).as_deref(),
            Some("http://10.0.0.9/x.efi")
        );
        // Off: scripts use TFTP paths, and HTTP-boot clients get nothing by default.
        let off =
            Config::parse(&base.replace("[http]\nenabled = true\n", ""), "/".as_ref()).unwrap();
        assert_eq!(off.boot_settings().unwrap().file_server, None);
        assert_eq!(http_boot(&off.dhcp_settings().unwrap()), None);
    }
}
