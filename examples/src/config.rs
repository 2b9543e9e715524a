//! `provisiond.toml`: the server's settings (read by `provisiond`, and by `provision`
//! to find the store). Every field has a default, so an empty
//! file is a valid configuration (store `./store`, NBD on 127.0.0.1:10809).

use std::net::SocketAddr;
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
    /// Write caches and sessions.
    pub sessions: SessionsConfig,
    /// Logging.
    pub log: Log,
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
            sessions: SessionsConfig::default(),
            log: Log::default(),
        }
    }
}

impl Default for Nbd {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 10809)),
            max_connections: 4096,
        }
    }
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self {
            cache_ram: "64M".into(),
            cache_quota: "4G".into(),
            grace_seconds: 120,
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
    /// Reads `path`; a relative store folder is taken from the file's folder.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut config: Config =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if config.store.is_relative() {
            let dir = path.parent().unwrap_or(Path::new("."));
            config.store = dir.join(&config.store);
        }
        config.session_settings()?;
        if !matches!(config.log.format.as_str(), "text" | "json") {
            return Err(format!(
                "{}: log.format must be \"text\" or \"json\"",
                path.display()
            ));
        }
        Ok(config)
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
        })
    }
}
