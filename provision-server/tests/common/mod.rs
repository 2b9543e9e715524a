//! A provisiond started from this library on its own runtime thread, for the tests
//! that talk to it through real clients.

// Each test crate uses part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// A running provisiond, stopped (and joined) when dropped.
pub struct Provisiond {
    /// The admin API's address, when it runs.
    pub api: Option<SocketAddr>,
    /// The boot files' HTTP address, when that service runs.
    pub http: Option<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Provisiond {
    /// Starts the configuration in `config_file` and waits until every service listens.
    pub fn start(config_file: &Path) -> Provisiond {
        let config = provision_server::Config::load(config_file).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, addresses) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let running = provision_server::Server::new(config)
                    .unwrap()
                    .start()
                    .await
                    .unwrap();
                ready.send((running.api, running.http)).unwrap();
                running
                    .serve(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let (api, http) = addresses.recv_timeout(Duration::from_secs(30)).unwrap();
        Provisiond {
            api,
            http,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Provisiond {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
