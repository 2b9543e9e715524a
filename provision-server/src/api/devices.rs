//! Devices, their assignments and personality, their boots (reset), and collections.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use provision_core::{BootCause, Mac};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{ADMIN, Needs, OPERATOR, VIEWER};
use super::extract::{Json, Path, Query};
use super::{ApiError, Shared, on_store};
use crate::admin::ops;
use crate::resources::{
    AssignmentChange, AssignmentView, AttachSecretView, CollectionChange, CollectionView,
    DeviceChange, DeviceDetail, DeviceView, ErrorView, NewCollection, NewDevice, PersonalityChange,
    PinChange, ResetView,
};

type Answer<T> = Result<axum::Json<T>, ApiError>;
type Created<T> = Result<(StatusCode, axum::Json<T>), ApiError>;

pub(super) fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(list_devices, add_device))
        .routes(routes!(get_device, change_device, remove_device))
        .routes(routes!(reset))
        .routes(routes!(attach_secret))
        .routes(routes!(list_assignments))
        .routes(routes!(assign, unassign))
        .routes(routes!(pin))
        .routes(routes!(get_personality, change_personality))
        .routes(routes!(list_collections, add_collection))
        .routes(routes!(change_collection, remove_collection))
}

/// Every device.
#[utoipa::path(get, path = "/v1/devices", tag = "devices",
    responses((status = 200, body = [DeviceView])))]
async fn list_devices(
    Needs(who): Needs<VIEWER>,
    State(s): State<Shared>,
) -> Answer<Vec<DeviceView>> {
    on_store(&s, &who, ops::devices).await.map(axum::Json)
}

/// A new device.
#[utoipa::path(post, path = "/v1/devices", tag = "devices", request_body = NewDevice,
    responses((status = 201, body = DeviceView), (status = 400, body = ErrorView),
              (status = 409, body = ErrorView)))]
async fn add_device(
    Needs(who): Needs<OPERATOR>,
    State(s): State<Shared>,
    Json(new): Json<NewDevice>,
) -> Created<DeviceView> {
    let device = on_store(&s, &who, move |store| ops::add_device(store, &new)).await?;
    Ok((StatusCode::CREATED, axum::Json(device)))
}

/// A device (by MAC or name) with its vDisks and personality.
#[utoipa::path(get, path = "/v1/devices/{device}", tag = "devices",
    params(("device" = String, Path, description = "MAC or name")),
    responses((status = 200, body = DeviceDetail), (status = 404, body = ErrorView)))]
async fn get_device(
    Needs(who): Needs<VIEWER>,
    State(s): State<Shared>,
    Path(device): Path<String>,
) -> Answer<DeviceDetail> {
    on_store(&s, &who, move |store| ops::device(store, &device))
        .await
        .map(axum::Json)
}

/// Changes the fields given: name, collection, type, enabled.
#[utoipa::path(patch, path = "/v1/devices/{device}", tag = "devices",
    params(("device" = String, Path, description = "MAC or name")), request_body = DeviceChange,
    responses((status = 200, body = DeviceView), (status = 400, body = ErrorView),
              (status = 404, body = ErrorView), (status = 409, body = ErrorView)))]
async fn change_device(
    Needs(who): Needs<OPERATOR>,
    State(s): State<Shared>,
    Path(device): Path<String>,
    Json(change): Json<DeviceChange>,
) -> Answer<DeviceView> {
    on_store(&s, &who, move |store| {
        ops::change_device(store, &device, &change)
    })
    .await
    .map(axum::Json)
}

/// Removes a device, its assignments and personality.
#[utoipa::path(delete, path = "/v1/devices/{device}", tag = "devices",
    params(("device" = String, Path, description = "MAC or name")),
    responses((status = 200, body = DeviceView), (status = 404, body = ErrorView)))]
async fn remove_device(
    Needs(who): Needs<ADMIN>,
    State(s): State<Shared>,
    Path(device): Path<String>,
) -> Answer<DeviceView> {
    on_store(&s, &who, move |store| ops::remove_device(store, &device))
        .await
        .map(axum::Json)
}

/// Starts the device's next boot now: its current boot's sessions end (their
/// connections close) and their write caches are dropped; answers the new boot's token.
#[utoipa::path(post, path = "/v1/devices/{device}/reset", tag = "devices",
    params(("device" = String, Path, description = "MAC or name")),
    responses((status = 200, body = ResetView), (status = 404, body = ErrorView)))]
async fn reset(
    Needs(who): Needs<OPERATOR>,
    State(s): State<Shared>,
    Path(device): Path<String>,
) -> Answer<ResetView> {
    let sessions = s.api.sessions.clone();
    let actor = who.actor.clone();
    on_store(&s, &who, move |store| {
        let mac: Mac = match device.parse() {
            Ok(mac) => mac,
            Err(_) => store.device(&device)?.mac,
        };
        let new = sessions.start_boot(mac, BootCause::Reset, None)?;
        tracing::info!(%mac, boot = new.boot.number, actor, "device reset through the API");
        Ok(ResetView {
            device: mac.to_string(),
            boot: new.boot.number,
            token: new.boot.token.to_string(),
            sessions_ended: new.sessions_ended,
            write_caches_dropped: new.caches_dropped,
        })
    })
    .await
    .map(axum::Json)
}

/// Query of an attach-secret request.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
struct SecretQuery {
    /// Make a new secret; the old one stops working (open sessions stay).
    #[serde(default)]
    rotate: bool,
}

/// The secret a hypervisor attaches the device's disks with (the last part of the NBD
/// export name); the first request makes one.
#[utoipa::path(post, path = "/v1/devices/{device}/attach-secret", tag = "devices",
    params(("device" = String, Path, description = "MAC or name"), SecretQuery),
    responses((status = 200, body = AttachSecretView), (status = 404, body = ErrorView)))]
async fn attach_secret(
    Needs(who): Needs<ADMIN>,
    State(s): State<Shared>,
    Path(device): Path<String>,
    Query(query): Query<SecretQuery>,
) -> Answer<AttachSecretView> {
    on_store(&s, &who, move |store| {
        ops::attach_secret(store, &device, query.rotate)
    })
    .await
    .map(axum::Json)
}

/// The device's vDisks, the default first.
#[utoipa::path(get, path = "/v1/devices/{device}/assignments", tag = "devices",
    params(("device" = String, Path, description = "MAC or name")),
    responses((status = 200, body = [AssignmentView]), (status = 404, body = ErrorView)))]
async fn list_assignments(
    Needs(who): Needs<VIEWER>,
    State(s): State<Shared>,
    Path(device): Path<String>,
) -> Answer<Vec<AssignmentView>> {
    on_store(&s, &who, move |store| ops::assignments(store, &device))
        .await
        .map(axum::Json)
}

/// Assigns a vDisk to the device, or changes its mode or position.
#[utoipa::path(put, path = "/v1/devices/{device}/assignments/{vdisk}", tag = "devices",
    params(("device" = String, Path, description = "MAC or name"), ("vdisk" = String, Path)),
    request_body = AssignmentChange,
    responses((status = 200, body = [AssignmentView]), (status = 400, body = ErrorView),
              (status = 404, body = ErrorView)))]
async fn assign(
    Needs(who): Needs<OPERATOR>,
    State(s): State<Shared>,
    Path((device, vdisk)): Path<(String, String)>,
    Json(change): Json<AssignmentChange>,
) -> Answer<Vec<AssignmentView>> {
    on_store(&s, &who, move |store| {
        ops::assign(store, &device, &vdisk, &change)
    })
    .await
    .map(axum::Json)
}

/// Removes a vDisk from the device.
#[utoipa::path(delete, path = "/v1/devices/{device}/assignments/{vdisk}", tag = "devices",
    params(("device" = String, Path, description = "MAC or name"), ("vdisk" = String, Path)),
    responses((status = 200, body = [AssignmentView]), (status = 404, body = ErrorView)))]
async fn unassign(
    Needs(who): Needs<OPERATOR>,
    State(s): State<Shared>,
    Path((device, vdisk)): Path<(String, String)>,
) -> Answer<Vec<AssignmentView>> {
    on_store(&s, &who, move |store| ops::unassign(store, &device, &vdisk))
        .await
        .map(axum::Json)
}

/// Pins the device's vDisk to one version, or unpins it (`"version": null`).
#[utoipa::path(put, path = "/v1/devices/{device}/assignments/{vdisk}/pin", tag = "devices",
    params(("device" = String, Path, description = "MAC or name"), ("vdisk" = String, Path)),
    request_body = PinChange,
    responses((status = 200, body = [AssignmentView]), (status = 404, body = ErrorView)))]
async fn pin(
    Needs(who): Needs<OPERATOR>,
    State(s): State<Shared>,
    Path((device, vdisk)): Path<(String, String)>,
    Json(change): Json<PinChange>,
) -> Answer<Vec<AssignmentView>> {
    on_store(&s, &who, move |store| {
        ops::pin(store, &device, &vdisk, change.version)
    })
    .await
    .map(axum::Json)
}

/// The device's personality; secret values read as set, not shown.
#[utoipa::path(get, path = "/v1/devices/{device}/personality", tag = "devices",
    params(("device" = String, Path, description = "MAC or name")),
    responses((status = 200, body = BTreeMap<String, String>), (status = 404, body = ErrorView)))]
async fn get_personality(
    Needs(who): Needs<VIEWER>,
    State(s): State<Shared>,
    Path(device): Path<String>,
) -> Answer<BTreeMap<String, String>> {
    on_store(&s, &who, move |store| ops::personality(store, &device))
        .await
        .map(axum::Json)
}

/// Sets (a string) or removes (null) personality keys.
#[utoipa::path(patch, path = "/v1/devices/{device}/personality", tag = "devices",
    params(("device" = String, Path, description = "MAC or name")),
    request_body = PersonalityChange,
    responses((status = 200, body = BTreeMap<String, String>), (status = 400, body = ErrorView),
              (status = 404, body = ErrorView)))]
async fn change_personality(
    Needs(who): Needs<OPERATOR>,
    State(s): State<Shared>,
    Path(device): Path<String>,
    Json(change): Json<PersonalityChange>,
) -> Answer<BTreeMap<String, String>> {
    on_store(&s, &who, move |store| {
        ops::change_personality(store, &device, &change)
    })
    .await
    .map(axum::Json)
}

/// Every collection.
#[utoipa::path(get, path = "/v1/collections", tag = "devices",
    responses((status = 200, body = [CollectionView])))]
async fn list_collections(
    Needs(who): Needs<VIEWER>,
    State(s): State<Shared>,
) -> Answer<Vec<CollectionView>> {
    on_store(&s, &who, ops::collections).await.map(axum::Json)
}

/// A new collection.
#[utoipa::path(post, path = "/v1/collections", tag = "devices", request_body = NewCollection,
    responses((status = 201, body = CollectionView), (status = 400, body = ErrorView),
              (status = 409, body = ErrorView)))]
async fn add_collection(
    Needs(who): Needs<OPERATOR>,
    State(s): State<Shared>,
    Json(new): Json<NewCollection>,
) -> Created<CollectionView> {
    let collection = on_store(&s, &who, move |store| ops::add_collection(store, &new)).await?;
    Ok((StatusCode::CREATED, axum::Json(collection)))
}

/// Changes the settings given, and only those.
#[utoipa::path(patch, path = "/v1/collections/{name}", tag = "devices",
    params(("name" = String, Path)), request_body = CollectionChange,
    responses((status = 200, body = CollectionView), (status = 400, body = ErrorView),
              (status = 404, body = ErrorView)))]
async fn change_collection(
    Needs(who): Needs<OPERATOR>,
    State(s): State<Shared>,
    Path(name): Path<String>,
    Json(change): Json<CollectionChange>,
) -> Answer<CollectionView> {
    on_store(&s, &who, move |store| {
        ops::change_collection(store, &name, &change)
    })
    .await
    .map(axum::Json)
}

/// Removes a collection; its devices stay, in no collection.
#[utoipa::path(delete, path = "/v1/collections/{name}", tag = "devices",
    params(("name" = String, Path)),
    responses((status = 200, body = CollectionView), (status = 404, body = ErrorView)))]
async fn remove_collection(
    Needs(who): Needs<ADMIN>,
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> Answer<CollectionView> {
    on_store(&s, &who, move |store| ops::remove_collection(store, &name))
        .await
        .map(axum::Json)
}
