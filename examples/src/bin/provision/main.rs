//! `provision`: the administration command. Manages vDisks, versions, devices,
//! collections, assignments and personality in a provision store.

mod commands;
mod render;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use provision_core::{ErrorKind, Store};

/// Administer a provision store: vDisks and their versions, devices, assignments.
///
/// Works on the store folder directly (SQLite database plus vDisk files); changes take
/// effect at each device's next boot, also while provisiond runs. The store is found
/// with --store, or from provisiond's configuration file.
///
/// Exit codes: 0 success, 1 storage or I/O failure, 2 bad arguments or values,
/// 3 not found, 4 conflict with the current state, 5 refused.
#[derive(Debug, Parser)]
#[command(name = "provision", version, about, long_about)]
struct Args {
    /// The store folder.
    #[arg(long, global = true, value_name = "DIR")]
    store: Option<PathBuf>,
    /// provisiond's configuration file, read to find the store when --store is absent.
    #[arg(
        long,
        short,
        global = true,
        value_name = "FILE",
        default_value = "/etc/provision/provisiond.toml"
    )]
    config: PathBuf,
    /// Print JSON instead of tables, for scripts.
    #[arg(long, global = true)]
    json: bool,
    /// Name recorded as the author of changes in the audit log (default: $USER).
    #[arg(long, global = true, value_name = "NAME")]
    actor: Option<String>,
    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> ExitCode {
    let args = Args::parse();
    provision_examples::init_logging_at(false, "warn");
    let store = match open_store(&args) {
        Ok(store) => store,
        Err(message) => {
            eprintln!("provision: {message}");
            return ExitCode::from(1);
        }
    };
    match commands::run(&store, args.command, args.json) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("provision: {e}");
            ExitCode::from(match e.kind() {
                ErrorKind::Invalid => 2,
                ErrorKind::NotFound => 3,
                ErrorKind::Conflict => 4,
                ErrorKind::Refused => 5,
                _ => 1,
            })
        }
    }
}

fn open_store(args: &Args) -> Result<Store, String> {
    let dir = match &args.store {
        Some(dir) => dir.clone(),
        None => {
            provision_examples::config::Config::load(&args.config)
                .map_err(|e| format!("{e}\n(give the store folder with --store DIR)"))?
                .store
        }
    };
    let actor = args
        .actor
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "provision".to_owned());
    Store::open(&dir)
        .map(|s| s.with_actor(&actor))
        .map_err(|e| format!("cannot open the store {}: {e}", dir.display()))
}
