//! Jobs: long disk work (imports, merges) that runs after its request was answered
//! `202`, with progress to poll.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Needs, VIEWER};
use super::extract::Path;
use super::{ApiError, Shared};
use crate::resources::{ErrorView, JobView};

/// Finished jobs kept for polling; older ones are forgotten.
const KEPT: usize = 100;

/// The jobs of this provisiond, by number.
#[derive(Default)]
pub(crate) struct Jobs {
    next: AtomicU64,
    all: Mutex<BTreeMap<u64, JobView>>,
}

/// One job's handle for the work: progress, then its end.
#[derive(Clone)]
pub(crate) struct Job {
    jobs: Arc<super::State>,
    id: u64,
}

impl Jobs {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, JobView>> {
        self.all.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, id: u64) -> Option<JobView> {
        self.lock().get(&id).cloned()
    }
}

impl Job {
    /// Registers a new running job.
    pub fn start(state: &Shared, kind: &str, what: String) -> (Job, JobView) {
        let id = state.jobs.next.fetch_add(1, Ordering::Relaxed) + 1;
        let view = JobView {
            id,
            kind: kind.to_owned(),
            what,
            state: "running".into(),
            done: 0,
            total: 0,
            result: None,
            error: None,
            started_at: now(),
        };
        let mut all = state.jobs.lock();
        all.insert(id, view.clone());
        while all.len() > KEPT {
            let Some(oldest) = all
                .iter()
                .find(|(_, j)| j.state != "running")
                .map(|(id, _)| *id)
            else {
                break;
            };
            all.remove(&oldest);
        }
        (
            Job {
                jobs: state.clone(),
                id,
            },
            view,
        )
    }

    fn update(&self, change: impl FnOnce(&mut JobView)) {
        if let Some(view) = self.jobs.jobs.lock().get_mut(&self.id) {
            change(view);
        }
    }

    /// Bytes done and in all.
    pub fn progress(&self, done: u64, total: u64) {
        self.update(|v| (v.done, v.total) = (done, total));
    }

    /// Ends the job with what the work answered.
    pub fn finish<T: serde::Serialize>(&self, result: Result<T, ApiError>) {
        self.update(|v| match result {
            Ok(value) => {
                v.state = "succeeded".into();
                v.done = v.total.max(v.done);
                v.result = serde_json::to_value(value).ok();
            }
            Err(e) => {
                tracing::warn!(job = v.id, what = v.what, error = e.message, "job failed");
                v.state = "failed".into();
                v.error = Some(ErrorView {
                    error: e.message.clone(),
                    kind: e.kind().to_owned(),
                });
            }
        });
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub(super) fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs))
        .routes(routes!(get_job))
}

/// The jobs this provisiond ran since it started (the last 100 finished ones).
#[utoipa::path(get, path = "/v1/jobs", tag = "server",
    responses((status = 200, body = [JobView])))]
async fn list_jobs(_: Needs<VIEWER>, State(state): State<Shared>) -> axum::Json<Vec<JobView>> {
    axum::Json(state.jobs.lock().values().cloned().collect())
}

/// One job: its state and progress, and its result or error once it ended.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "server",
    params(("id" = u64, Path, description = "the job's number")),
    responses((status = 200, body = JobView), (status = 404, body = ErrorView)))]
async fn get_job(
    _: Needs<VIEWER>,
    State(state): State<Shared>,
    Path(id): Path<u64>,
) -> Result<axum::Json<JobView>, ApiError> {
    state.jobs.get(id).map(axum::Json).ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            format!("no job {id} (finished jobs are kept while there are fewer than 100)"),
        )
    })
}
