//! The running server: status, sessions, the audit log, store checks, metrics.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{ADMIN, Needs, VIEWER};
use super::extract::Query;
use super::{ApiError, Shared, on_store};
use crate::admin::ops;
use crate::resources::{AuditView, ErrorView, Message, SessionView, StatusView};

type Answer<T> = Result<axum::Json<T>, ApiError>;

pub(super) fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(sessions))
        .routes(routes!(audit))
        .routes(routes!(check_store))
        .routes(routes!(clean_store))
}

/// Version, uptime, services and sessions of this provisiond.
#[utoipa::path(get, path = "/v1/status", tag = "server",
    responses((status = 200, body = StatusView)))]
async fn status(_: Needs<VIEWER>, State(s): State<Shared>) -> axum::Json<StatusView> {
    let sessions = &s.api.sessions;
    axum::Json(StatusView {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_seconds: s.api.started.elapsed().as_secs(),
        store: s.api.store_dir.display().to_string(),
        services: s.api.services.clone(),
        sessions: sessions.list().len(),
        write_cache_bytes: sessions.usage().iter().map(|u| u.cache_bytes).sum(),
    })
}

/// The open sessions, with their traffic and write-cache use.
#[utoipa::path(get, path = "/v1/sessions", tag = "server",
    responses((status = 200, body = [SessionView])))]
async fn sessions(_: Needs<VIEWER>, State(s): State<Shared>) -> axum::Json<Vec<SessionView>> {
    axum::Json(SessionView::all(&s.api.sessions))
}

/// A page of the audit log.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
struct Page {
    /// How many entries (at most 1000).
    #[serde(default = "twenty")]
    limit: u32,
    /// Entries older than the one with this `id` (the next page).
    before: Option<i64>,
}

fn twenty() -> u32 {
    20
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/v1/audit", tag = "server", params(Page),
    responses((status = 200, body = [AuditView]), (status = 400, body = ErrorView)))]
async fn audit(
    Needs(who): Needs<VIEWER>,
    State(s): State<Shared>,
    Query(page): Query<Page>,
) -> Answer<Vec<AuditView>> {
    let limit = page.limit.min(1000);
    on_store(&s, &who, move |store| ops::audit(store, limit, page.before))
        .await
        .map(axum::Json)
}

/// Whether every file of the store belongs to a version (409 lists those that do not).
#[utoipa::path(get, path = "/v1/store/check", tag = "server",
    responses((status = 200, body = Message), (status = 409, body = ErrorView)))]
async fn check_store(Needs(who): Needs<VIEWER>, State(s): State<Shared>) -> Answer<Message> {
    on_store(&s, &who, ops::check_store).await.map(axum::Json)
}

/// Deletes the files no version names, except those running sessions still read.
#[utoipa::path(post, path = "/v1/store/clean", tag = "server",
    responses((status = 200, body = Message)))]
async fn clean_store(Needs(who): Needs<ADMIN>, State(s): State<Shared>) -> Answer<Message> {
    let sessions = s.api.sessions.clone();
    on_store(&s, &who, move |store| {
        ops::clean_store(store, &|file| sessions.file_in_use(file))
    })
    .await
    .map(axum::Json)
}

/// `GET /metrics`: Prometheus text.
pub(super) async fn metrics(_: Needs<VIEWER>, State(s): State<Shared>) -> impl IntoResponse {
    let text = s.api.metrics.render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
