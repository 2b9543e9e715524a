//! One service on its own, as `pxe-serve`, `tftp-serve` and `nbd-serve` run it: each
//! reads its part of provisiond's configuration (`[dhcp]`, `[tftp]`, `[nbd]`), takes
//! its command-line flags over it, and serves a fixed policy, a folder or one image
//! instead of the store's devices.
//!
//! Each module holds the flags (`Args`, flattened into the binary's parser), the
//! function that merges them with the file (`build`), and `serve`.

pub mod dhcp;
pub mod iscsi;
pub mod nbd;
pub mod tftp;

use std::future::Future;
use std::path::Path;
use std::process::ExitCode;

use crate::{Config, LogFormat, errln};

/// What a single-service binary does once its flags are parsed: installs the log
/// subscriber, builds the service (a failure exits with `build_status`), and runs
/// `serve` on a runtime from `runtime` (a failure exits with 1). Errors are logged and
/// printed as `NAME: error`.
pub fn main<S, F>(
    name: &str,
    log_format: LogFormat,
    mut runtime: tokio::runtime::Builder,
    (build, build_status): (impl FnOnce() -> Result<S, String>, u8),
    serve: impl FnOnce(S) -> F,
) -> ExitCode
where
    F: Future<Output = Result<(), String>>,
{
    crate::init_logging(log_format);
    let fail = |e: String, status: u8| {
        tracing::error!(error = %e, "{name} stopped");
        errln!("{name}: {e}");
        ExitCode::from(status)
    };
    let service = match build() {
        Ok(s) => s,
        Err(e) => return fail(e, build_status),
    };
    let result = runtime
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
        .and_then(|runtime| runtime.block_on(serve(service)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e, 1),
    }
}

/// The configuration file named by `--config`, or the defaults without one.
fn load(path: Option<&Path>) -> Result<Option<Config>, String> {
    path.map(Config::load).transpose()
}

/// Waits for SIGINT or SIGTERM.
pub async fn signal() {
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
