//! The admin API: REST resources over HTTP/1.1 (vDisks, versions, devices,
//! assignments, collections, personality, sessions, audit, jobs), Prometheus metrics at
//! `/metrics`, and its OpenAPI 3 document at `/v1/openapi.json`, generated from the
//! routes themselves.
//!
//! Every request carries `Authorization: Bearer <token>` when tokens are configured;
//! a token's role (viewer, operator, admin) decides which routes it may use. Errors
//! answer `{"error": "...", "kind": "..."}` with a status from the domain's error
//! kind. Imports and merges answer `202` and a job to poll at `/v1/jobs/{id}`.
//!
//! Slow or silent clients cannot hold the API: request heads must arrive within 10 s
//! and bodies within 30 s, one address holds at most 8 connections, and when all
//! connection slots are taken the oldest connection that has not yet sent a request
//! makes room.

mod auth;
mod devices;
mod error;
mod extract;
mod jobs;
mod server;
mod vdisks;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use provision_core::{Sessions, Store};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use auth::{Credential, Role, credentials};
pub(crate) use error::ApiError;

use crate::metrics::Metrics;
use auth::BearerScheme;
use jobs::Jobs;

/// Connections the API holds: 512 in all, 8 per address, 10 s for a request head.
const LIMITS: crate::http::Limits = crate::http::Limits {
    max_connections: 512,
    per_source: 8,
    head_time: Duration::from_secs(10),
};
/// Largest JSON request body.
const MAX_BODY: usize = 64 << 10;

/// What the API serves from.
pub struct Api {
    /// The store folder; each request opens it with its token's name as the audit actor.
    pub store_dir: PathBuf,
    /// The only folder server-side imports read images from; uploads are written there
    /// too, as partial files, until imported.
    pub import_folder: PathBuf,
    pub sessions: Sessions,
    /// The bearer tokens that open the API; none: every client is `anonymous` with
    /// every right (loopback only, which the configuration enforces).
    pub tokens: Vec<Credential>,
    pub started: Instant,
    /// The services' addresses, for `/v1/status`.
    pub services: std::collections::BTreeMap<String, Option<String>>,
    /// What `/metrics` shows.
    pub metrics: Metrics,
}

/// The state every route sees.
pub(crate) struct State {
    api: Api,
    jobs: Jobs,
}

type Shared = Arc<State>;

impl State {
    /// The state of an API serving `api`, with no jobs yet.
    pub(crate) fn new(api: Api) -> Self {
        Self {
            api,
            jobs: Jobs::default(),
        }
    }

    /// Opens the store as `actor`, for one request.
    fn store(&self, actor: &str) -> Result<Store, ApiError> {
        Ok(Store::open(&self.api.store_dir)?.with_actor(actor))
    }
}

/// Runs `op` on the store, opened as `who`, off the async threads.
async fn on_store<T: Send + 'static>(
    state: &Shared,
    who: &auth::Identity,
    op: impl FnOnce(&Store) -> provision_core::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let (state, actor) = (state.clone(), who.actor.clone());
    tokio::task::spawn_blocking(move || Ok(op(&state.store(&actor)?)?))
        .await
        .map_err(|e| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "provisiond admin API",
        description = "vDisks, versions, devices, assignments, collections, personality, \
                       sessions, audit and jobs of a provision server."
    ),
    modifiers(&BearerScheme),
    security(("bearer" = [])),
    tags(
        (name = "vdisks", description = "vDisks and their versions"),
        (name = "devices", description = "devices, their vDisks and personality"),
        (name = "server", description = "the running server: status, sessions, audit, jobs"),
    )
)]
struct Document;

/// The routes and the OpenAPI document that describes them.
pub(crate) fn routes(state: Shared) -> (Router, utoipa::openapi::OpenApi) {
    let (router, document) = OpenApiRouter::with_openapi(Document::openapi())
        .merge(vdisks::routes())
        .merge(devices::routes())
        .merge(server::routes())
        .merge(jobs::routes())
        .split_for_parts();
    let document_json = Arc::new(document.clone());
    let router = router
        .route(
            "/v1/openapi.json",
            axum::routing::get(move || {
                let document = document_json.clone();
                async move { axum::Json(document.as_ref().clone()) }
            }),
        )
        .route("/metrics", axum::routing::get(server::metrics))
        // After every route: it applies to the routes present when it is set.
        .method_not_allowed_fallback(error::wrong_method)
        .fallback(error::no_route)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .with_state(state);
    (router, document)
}

/// Binds `listen` and serves the API in a task; returns it and the bound address.
pub async fn start(
    listen: SocketAddr,
    mut api: Api,
) -> Result<(tokio::task::JoinHandle<()>, SocketAddr), String> {
    let listener = crate::http::bind(listen, "the API").await?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    api.services.insert("api".into(), Some(addr.to_string()));
    tracing::info!(%addr, tokens = api.tokens.len(), "admin API listening");
    let (router, _) = routes(Arc::new(State::new(api)));
    let serve = crate::http::serve(listener, router, LIMITS, "api");
    Ok((tokio::spawn(serve), addr))
}
