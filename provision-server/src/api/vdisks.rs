//! vDisks and their versions; imports (from the import folder or uploaded in the
//! request body) and merges run as jobs.

use std::path::{Path as FsPath, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use futures_util::StreamExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{ADMIN, Needs, OPERATOR, VIEWER};
use super::extract::{BODY_TIME, Json, Path, Query};
use super::jobs::Job;
use super::{ApiError, Shared, on_store};
use crate::admin::ops;
use crate::resources::{
    ErrorView, ImportFromFolder, JobView, Message, NewVdisk, NewVersion, VdiskDetail, VdiskView,
    VersionView,
};

/// Time an upload may pause between two pieces of its body.
const UPLOAD_IDLE: Duration = Duration::from_secs(30);

type Answer<T> = Result<axum::Json<T>, ApiError>;

pub(super) fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(list_vdisks, add_vdisk))
        .routes(routes!(get_vdisk, remove_vdisk))
        .routes(routes!(import_vdisk))
        .routes(routes!(list_versions, add_version))
        .routes(routes!(promote))
        .routes(routes!(rollback))
        .routes(routes!(merge))
        .routes(routes!(remove_version))
}

/// Every vDisk.
#[utoipa::path(get, path = "/v1/vdisks", tag = "vdisks",
    responses((status = 200, body = [VdiskView])))]
async fn list_vdisks(Needs(who): Needs<VIEWER>, State(s): State<Shared>) -> Answer<Vec<VdiskView>> {
    on_store(&s, &who, ops::vdisks).await.map(axum::Json)
}

/// A new, empty vDisk.
#[utoipa::path(post, path = "/v1/vdisks", tag = "vdisks", request_body = NewVdisk,
    responses((status = 201, body = VdiskView), (status = 400, body = ErrorView),
              (status = 409, body = ErrorView)))]
async fn add_vdisk(
    Needs(who): Needs<OPERATOR>,
    State(s): State<Shared>,
    Json(new): Json<NewVdisk>,
) -> Result<(StatusCode, axum::Json<VdiskView>), ApiError> {
    let vdisk = on_store(&s, &who, move |store| ops::add_vdisk(store, &new)).await?;
    Ok((StatusCode::CREATED, axum::Json(vdisk)))
}

/// A vDisk and its versions.
#[utoipa::path(get, path = "/v1/vdisks/{name}", tag = "vdisks",
    params(("name" = String, Path)),
    responses((status = 200, body = VdiskDetail), (status = 404, body = ErrorView)))]
async fn get_vdisk(
    Needs(who): Needs<VIEWER>,
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> Answer<VdiskDetail> {
    on_store(&s, &who, move |store| ops::vdisk(store, &name))
        .await
        .map(axum::Json)
}

/// Removes a vDisk that no device has assigned; its files remain.
#[utoipa::path(delete, path = "/v1/vdisks/{name}", tag = "vdisks",
    params(("name" = String, Path)),
    responses((status = 200, body = Message), (status = 404, body = ErrorView),
              (status = 409, body = ErrorView)))]
async fn remove_vdisk(
    Needs(who): Needs<ADMIN>,
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> Answer<Message> {
    on_store(&s, &who, move |store| ops::remove_vdisk(store, &name))
        .await
        .map(axum::Json)
}

/// Query of an upload.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
struct UploadQuery {
    /// Free text for the new vDisk.
    #[serde(default)]
    description: String,
}

/// Imports a raw image or a VHD as the new vDisk `name`: with a JSON body, a file of
/// the server's import folder; with an `application/octet-stream` body, the image
/// itself (written to a partial file in the store while it arrives). Answers `202`
/// and the job, once the image is on the server.
#[utoipa::path(post, path = "/v1/vdisks/{name}/import", tag = "vdisks",
    params(("name" = String, Path), UploadQuery),
    request_body(content(
        (ImportFromFolder = "application/json"),
        (Vec<u8> = "application/octet-stream"),
    )),
    responses((status = 202, body = JobView), (status = 400, body = ErrorView),
              (status = 403, body = ErrorView), (status = 409, body = ErrorView)))]
async fn import_vdisk(
    Needs(who): Needs<ADMIN>,
    State(s): State<Shared>,
    Path(name): Path<String>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, axum::Json<JobView>), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (file, description, uploaded) = if content_type.starts_with("application/octet-stream") {
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        let file = receive(&s, &who, &name, body, length).await?;
        (file, query.description, true)
    } else {
        let request = tokio::time::timeout(BODY_TIME, axum::body::to_bytes(body, super::MAX_BODY))
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body did not arrive in time",
                )
            })?
            .map_err(|e| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()))?;
        let ImportFromFolder { file, description } = serde_json::from_slice(&request)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("the body: {e}")))?;
        (
            confine(&s.api.import_folder, FsPath::new(&file))?,
            description,
            false,
        )
    };
    let (job, view) = Job::start(&s, "import", format!("importing {name}"));
    let state = s.clone();
    tokio::task::spawn_blocking(move || {
        let result = state.store(&who.actor).and_then(|store| {
            let progress = &mut |done, total| job.progress(done, total);
            Ok(ops::import(&store, &name, &file, &description, progress)?)
        });
        if uploaded {
            let _ = std::fs::remove_file(&file);
        }
        job.finish(result);
    });
    Ok((StatusCode::ACCEPTED, axum::Json(view)))
}

/// Writes an uploaded image to a partial file in the store; its path once complete.
async fn receive(
    s: &Shared,
    who: &super::auth::Identity,
    name: &str,
    body: Body,
    length: Option<u64>,
) -> Result<PathBuf, ApiError> {
    let name = name.to_owned();
    let (path, file) = on_store(s, who, move |store| {
        provision_core::upload_file(store, &name)
    })
    .await?;
    let written = write_body(body, file, length).await;
    match written {
        Ok(bytes) => {
            tracing::info!(file = %path.display(), bytes, "image uploaded");
            Ok(path)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            Err(e)
        }
    }
}

async fn write_body(body: Body, file: std::fs::File, length: Option<u64>) -> Result<u64, ApiError> {
    use tokio::io::AsyncWriteExt;
    let mut stream = body.into_data_stream();
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(file));
    let mut received = 0u64;
    loop {
        let piece = match tokio::time::timeout(UPLOAD_IDLE, stream.next()).await {
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("the upload stalled for {} s", UPLOAD_IDLE.as_secs()),
                ));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("the upload broke off after {received} bytes: {e}"),
                ));
            }
            Ok(Some(Ok(bytes))) => bytes,
        };
        received += piece.len() as u64;
        // A full disk fails here.
        out.write_all(&piece).await.map_err(write_failed)?;
    }
    if length.is_some_and(|l| l != received) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the upload ended after {received} of {length:?} bytes"),
        ));
    }
    out.flush().await.map_err(write_failed)?;
    out.into_inner().sync_all().await.map_err(write_failed)?;
    Ok(received)
}

fn write_failed(e: std::io::Error) -> ApiError {
    let status = if e.raw_os_error() == Some(28) {
        StatusCode::INSUFFICIENT_STORAGE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    ApiError::new(status, format!("cannot store the upload: {e}"))
}

/// The image `file` names inside `folder` (a relative name is taken from there): the
/// API reads no file outside it, whatever the spelling (`..`, absolute paths, symlinks).
fn confine(folder: &FsPath, file: &FsPath) -> Result<PathBuf, ApiError> {
    let refused = |message: String| ApiError::new(StatusCode::FORBIDDEN, message);
    let root = folder.canonicalize().map_err(|e| {
        refused(format!(
            "imports through the API come from the import folder {}, which cannot be used: {e}",
            folder.display()
        ))
    })?;
    let outside = || {
        refused(format!(
            "{} is not in the import folder {}: put the image there (symlinks out of it do \
             not count), or upload it (provision vdisk import --upload)",
            file.display(),
            root.display()
        ))
    };
    let real = root.join(file).canonicalize().map_err(|_| outside())?;
    if !real.starts_with(&root) || real == root {
        return Err(outside());
    }
    Ok(real)
}

/// A vDisk's versions, the base first.
#[utoipa::path(get, path = "/v1/vdisks/{name}/versions", tag = "vdisks",
    params(("name" = String, Path)),
    responses((status = 200, body = [VersionView]), (status = 404, body = ErrorView)))]
async fn list_versions(
    Needs(who): Needs<VIEWER>,
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> Answer<Vec<VersionView>> {
    on_store(&s, &who, move |store| ops::versions(store, &name))
        .await
        .map(axum::Json)
}

/// Version N+1, a differencing image over N, for maintenance devices.
#[utoipa::path(post, path = "/v1/vdisks/{name}/versions", tag = "vdisks",
    params(("name" = String, Path)), request_body = NewVersion,
    responses((status = 201, body = VersionView), (status = 404, body = ErrorView),
              (status = 409, body = ErrorView)))]
async fn add_version(
    Needs(who): Needs<OPERATOR>,
    State(s): State<Shared>,
    Path(name): Path<String>,
    Json(new): Json<NewVersion>,
) -> Result<(StatusCode, axum::Json<VersionView>), ApiError> {
    let version = on_store(&s, &who, move |store| ops::add_version(store, &name, &new)).await?;
    Ok((StatusCode::CREATED, axum::Json(version)))
}

/// Moves the newest version on: maintenance → test → production.
#[utoipa::path(post, path = "/v1/vdisks/{name}/versions/promote", tag = "vdisks",
    params(("name" = String, Path)),
    responses((status = 200, body = VersionView), (status = 404, body = ErrorView),
              (status = 409, body = ErrorView)))]
async fn promote(
    Needs(who): Needs<OPERATOR>,
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> Answer<VersionView> {
    on_store(&s, &who, move |store| ops::promote(store, &name))
        .await
        .map(axum::Json)
}

/// Makes the previous production version current again.
#[utoipa::path(post, path = "/v1/vdisks/{name}/versions/rollback", tag = "vdisks",
    params(("name" = String, Path)),
    responses((status = 200, body = VersionView), (status = 404, body = ErrorView),
              (status = 409, body = ErrorView)))]
async fn rollback(
    Needs(who): Needs<OPERATOR>,
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> Answer<VersionView> {
    on_store(&s, &who, move |store| ops::rollback(store, &name))
        .await
        .map(axum::Json)
}

/// Flattens a version's chain into a new base, in place, as a job.
#[utoipa::path(post, path = "/v1/vdisks/{name}/versions/{number}/merge", tag = "vdisks",
    params(("name" = String, Path), ("number" = u32, Path)),
    responses((status = 202, body = JobView), (status = 404, body = ErrorView)))]
async fn merge(
    Needs(who): Needs<ADMIN>,
    State(s): State<Shared>,
    Path((name, number)): Path<(String, u32)>,
) -> Result<(StatusCode, axum::Json<JobView>), ApiError> {
    // Unknown vDisks and versions are refused before a job starts.
    let (vdisk, n) = (name.clone(), number);
    on_store(&s, &who, move |store| {
        if store.versions(&vdisk)?.iter().any(|v| v.number == n) {
            Ok(())
        } else {
            Err(provision_core::Error::Domain {
                kind: provision_core::ErrorKind::NotFound,
                message: format!("vDisk `{vdisk}` has no version {n}"),
            })
        }
    })
    .await?;
    let (job, view) = Job::start(&s, "merge", format!("merging {name} v{number}"));
    let state = s.clone();
    tokio::task::spawn_blocking(move || {
        let result = state.store(&who.actor).and_then(|store| {
            let progress = &mut |done, total| job.progress(done, total);
            Ok(ops::merge(&store, &name, number, progress)?)
        });
        job.finish(result);
    });
    Ok((StatusCode::ACCEPTED, axum::Json(view)))
}

/// Removes the newest version (`newest`, or its number), never the base or the
/// production version; its file remains.
#[utoipa::path(delete, path = "/v1/vdisks/{name}/versions/{number}", tag = "vdisks",
    params(("name" = String, Path), ("number" = String, Path, description = "`newest` or a number")),
    responses((status = 200, body = Message), (status = 404, body = ErrorView),
              (status = 409, body = ErrorView)))]
async fn remove_version(
    Needs(who): Needs<ADMIN>,
    State(s): State<Shared>,
    Path((name, number)): Path<(String, String)>,
) -> Answer<Message> {
    let number = match number.as_str() {
        "newest" => None,
        n => Some(n.parse::<u32>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("`{n}` is not a version number (or `newest`)"),
            )
        })?),
    };
    on_store(&s, &who, move |store| {
        ops::remove_version(store, &name, number)
    })
    .await
    .map(axum::Json)
}
