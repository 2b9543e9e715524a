//! `provisiond`: the provision server. Serves vDisks to devices over NBD from a store,
//! with per-device sessions and write caches (see `provision-core`).
//!
//! This binary parses arguments, loads `provisiond.toml` and runs
//! [`provision_server::Server`].

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use provision_server::{Config, Server, demo};

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
    /// Check the configuration and exit without serving or writing anything: 0 and a
    /// summary of the services when every setting is valid, 1 and what is wrong when
    /// not (for package scripts, and after editing the file).
    #[arg(long, conflicts_with = "demo")]
    check: bool,
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
    }
    let server = match Server::new(config) {
        Ok(server) => server,
        Err(e) => return fail(&e),
    };
    if args.check {
        let _ = writeln!(
            std::io::stdout(),
            "{}: the configuration is valid\n{}",
            config_path.display(),
            server.config().summary()
        );
        return ExitCode::SUCCESS;
    }
    // What provisiond writes (the database, vDisks, private disks, caches, leases) is
    // for the service alone: 0600 files, 0700 folders.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let json = args
        .log_format
        .as_deref()
        .unwrap_or(&server.config().log.format)
        == "json";
    provision_server::init_logging(if json {
        provision_server::LogFormat::Json
    } else {
        provision_server::LogFormat::Text
    });
    server.config().warn_if_token_readable(&config_path);
    raise_open_file_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    let result = runtime.block_on(async {
        let running = server.start().await?;
        if let (Some(dir), Some(nbd)) = (&args.demo, running.nbd) {
            // Not println!: a closed stdout (`provisiond --demo | head`) must not stop
            // the server.
            let text = demo::instructions(nbd, running.api, dir, &running.store);
            let _ = writeln!(std::io::stdout(), "{text}");
        }
        running.serve(provision_server::service::signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
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
