//! `provision`: the administration command. Manages vDisks, versions, devices,
//! collections, assignments and personality, through provisiond's admin API or on a
//! store folder directly.

// Results go through `out!` (a closed stdout ends the process quietly).
#![deny(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use provision_server::admin;
use provision_server::config::Config;

/// Administer provision: vDisks and their versions, devices, assignments, sessions.
///
/// Talks to the running provisiond's admin API (--api, or the api section of its
/// configuration file), or works on a store folder directly (--store; the SQLite
/// database plus vDisk files). Either way, changes take effect at each device's next
/// boot. `sessions` and `status` need the API.
///
/// Exit codes: 0 success, 1 storage, I/O or connection failure, 2 bad arguments or
/// values, 3 not found, 4 conflict with the current state, 5 refused.
#[derive(Debug, Parser)]
#[command(name = "provision", version, about, long_about)]
struct Args {
    /// Work on this store folder directly instead of through provisiond.
    #[arg(long, global = true, value_name = "DIR", conflicts_with = "api")]
    store: Option<PathBuf>,
    /// provisiond's admin API, e.g. http://127.0.0.1:10810.
    #[arg(long, global = true, value_name = "URL", env = "PROVISION_API")]
    api: Option<String>,
    /// The API's bearer token (default: the configuration file's api.token).
    #[arg(
        long,
        global = true,
        value_name = "TOKEN",
        env = "PROVISION_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// provisiond's configuration file, read when neither --store nor --api is given:
    /// its API when enabled, else its store.
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
    command: admin::Command,
}

/// Where commands run.
enum Target {
    Store(PathBuf),
    Api { url: String, token: Option<String> },
}

fn main() -> ExitCode {
    let args = Args::parse();
    provision_server::init_logging_at(false, "warn");
    // Files made in a store (the database, imported vDisks) are the service's alone.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let actor = args
        .actor
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "provision".to_owned());
    let target = match target(&args) {
        Ok(target) => target,
        Err(message) => return fail(1, &message),
    };
    let mut bar: Option<indicatif::ProgressBar> = None;
    let mut progress = |what: &str, done, total| {
        let bar = bar.get_or_insert_with(|| provision_server::output::progress_bar(what));
        bar.set_length(total);
        bar.set_position(done);
    };
    let outcome = match target {
        Target::Api { url, token } => admin::remote::Client::new(&url, token.as_deref(), &actor)
            .run(&args.command, &mut progress),
        Target::Store(dir) => admin::local::run_in(&dir, &actor, args.command, &mut progress),
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match outcome {
        Ok(answer) => {
            provision_server::out!("{}", answer.render(args.json));
            ExitCode::SUCCESS
        }
        Err((code, message)) => fail(code, &message),
    }
}

fn fail(code: u8, message: &str) -> ExitCode {
    provision_server::errln!("provision: {}", message.trim_end());
    ExitCode::from(code)
}

fn target(args: &Args) -> Result<Target, String> {
    if let Some(dir) = &args.store {
        return Ok(Target::Store(dir.clone()));
    }
    if let Some(url) = &args.api {
        return Ok(Target::Api {
            url: url.clone(),
            token: args.token.clone(),
        });
    }
    let config = Config::load(&args.config).map_err(|e| {
        format!("{e}\n(give provisiond's API with --api URL, or a store with --store DIR)")
    })?;
    Ok(if config.api.enabled {
        Target::Api {
            url: format!("http://{}", config.api.listen),
            token: args
                .token
                .clone()
                .or((!config.api.token.is_empty()).then_some(config.api.token)),
        }
    } else {
        Target::Store(config.store)
    })
}
