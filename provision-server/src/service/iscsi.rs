//! `iscsi-serve`: one disk image (a raw file or a VHD with its chain) as one iSCSI
//! target with one LUN.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use iscsi::driver::{ServerConfig, serve as serve_target};
use iscsi::scsi::{Identity, Lu};
use iscsi::session::{ChapCredentials, Target, TargetConfig};
use provision_core::adapters::iscsi::DiskLun;

/// iscsi-serve's flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image to serve: a raw file or a VHD (a differencing VHD brings its chain).
    pub file: PathBuf,
    /// Address and port to listen on.
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:3260")]
    pub listen: SocketAddr,
    /// The target's iSCSI name (default: iqn.2026-01.org.provision:NAME, NAME being
    /// the image's file name without its extension).
    #[arg(long, value_name = "IQN")]
    pub target_name: Option<String>,
    /// Refuse writes (the LUN reports write protect).
    #[arg(long)]
    pub read_only: bool,
    /// Require CHAP: the initiator's user name (with --chap-secret).
    #[arg(long, requires = "chap_secret")]
    pub chap_user: Option<String>,
    /// Require CHAP: the secret shared with the initiator.
    #[arg(
        long,
        requires = "chap_user",
        env = "ISCSI_CHAP_SECRET",
        hide_env_values = true
    )]
    pub chap_secret: Option<String>,
    /// Connections served at once; further ones are closed.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
}

/// What [`serve`] serves.
pub struct Service {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The target with its LUN.
    pub target: Arc<Target>,
    /// The driver's limits.
    pub config: ServerConfig,
}

/// The target name for an image: `--target-name`, or one made from the file name.
fn target_name(args: &Args) -> String {
    args.target_name.clone().unwrap_or_else(|| {
        let stem = args
            .file
            .file_stem()
            .map(|s| s.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let stem: String = stem
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!("iqn.2026-01.org.provision:{stem}")
    })
}

/// Opens the image and makes the target.
pub fn build(args: &Args) -> Result<Service, String> {
    let disk = vhd::open_disk(&args.file, args.read_only)
        .map_err(|e| format!("cannot open {}: {e}", args.file.display()))?;
    let name = target_name(args);
    let lu = Lu::new(Arc::new(DiskLun::new(disk)), Identity::for_target(&name));
    let mut config = TargetConfig::new(name);
    if let (Some(user), Some(secret)) = (&args.chap_user, &args.chap_secret) {
        config.chap = Some(ChapCredentials {
            user: user.clone(),
            secret: secret.as_bytes().to_vec(),
        });
    }
    Ok(Service {
        listen: args.listen,
        target: Arc::new(Target::new(config, Arc::new(lu))),
        config: ServerConfig {
            max_connections: args.max_connections,
            ..ServerConfig::default()
        },
    })
}

/// Listens and serves until `shutdown` completes.
pub async fn serve(
    service: Service,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(service.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", service.listen))?;
    let listen = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%listen, target = %service.target.config().target_name, "serving");
    serve_target(listener, service.target, service.config, shutdown)
        .await
        .map_err(|e| e.to_string())
}
