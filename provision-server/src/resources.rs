//! The admin API's resources: what its routes answer and `provision --json` prints.
//! The API serialises them, the `provision` command reads them back and renders tables;
//! the OpenAPI document (`/v1/openapi.json`) describes them.

use std::collections::BTreeMap;

use provision_core::{
    Assignment, AuditEntry, Collection, Device, SessionInfo, SessionMode, Usage, VDisk, Version,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A vDisk.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VdiskView {
    /// Unique name.
    pub name: String,
    /// Virtual size in bytes.
    pub size: u64,
    /// Free text.
    pub description: String,
}

/// A vDisk with its versions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VdiskDetail {
    #[serde(flatten)]
    pub vdisk: VdiskView,
    /// Oldest first.
    pub versions: Vec<VersionView>,
}

/// One version of a vDisk.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionView {
    /// 0 for the base.
    pub number: u32,
    /// `maintenance`, `test`, `production`, `previous` or `retired`.
    pub state: String,
    /// The image file, relative to the store.
    pub file: String,
    /// What the version changes.
    pub note: String,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
    /// The kernel and initrd the version boots: where in its image they were found
    /// (`p1:/vmlinuz p1:/initrd.img`), or `configured paths` when it carries none.
    /// Absent when not looked up (answers of promote and rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boots: Option<String>,
}

/// A device.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceView {
    /// Ethernet address, `52:54:00:12:34:56`.
    pub mac: String,
    /// Unique name.
    pub name: String,
    /// Its collection.
    pub collection: Option<String>,
    /// `production`, `test` or `maintenance`.
    #[serde(rename = "type")]
    pub device_type: String,
    /// A disabled device is refused at boot.
    pub enabled: bool,
}

/// A device with its vDisks and personality (secret values shown as set, not shown).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceDetail {
    #[serde(flatten)]
    pub device: DeviceView,
    /// Its vDisks, the default first.
    pub assignments: Vec<AssignmentView>,
    /// Its personality.
    pub personality: BTreeMap<String, String>,
}

/// A vDisk assigned to a device.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AssignmentView {
    /// The vDisk.
    pub vdisk: String,
    /// `standard` or `private`.
    pub mode: String,
    /// The version the device is pinned to.
    pub pinned_version: Option<u32>,
}

/// A collection.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CollectionView {
    /// Unique name.
    pub name: String,
    /// Unknown devices that boot are added to it.
    pub auto_add: bool,
    /// Device type of its new devices.
    #[serde(rename = "type")]
    pub device_type: String,
    /// vDisk assigned to auto-added devices.
    pub vdisk: Option<String>,
    /// Mode of that assignment.
    pub mode: String,
}

/// One entry of the audit log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditView {
    /// Its number in the log (`?before=` this for the next page).
    pub id: i64,
    /// Seconds since the Unix epoch.
    pub at: i64,
    /// The token's name (`api:NAME`) or the local user.
    pub actor: String,
    /// `device.add`, `version.promote`, ...
    pub action: String,
    /// What was changed.
    pub subject: String,
    /// Details.
    pub detail: String,
}

/// An open session.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionView {
    pub id: u64,
    /// The device's name.
    pub device: String,
    pub mac: String,
    pub vdisk: String,
    pub version: u32,
    /// `standard`, `private` or `maintenance`.
    pub mode: String,
    /// `nbd` or `iscsi`: the protocol of the connection that opened it.
    pub transport: String,
    /// Seconds since the Unix epoch.
    pub opened_at: i64,
    pub reads: u64,
    pub read_bytes: u64,
    pub writes: u64,
    pub write_bytes: u64,
    pub errors: u64,
    /// Bytes in the write cache.
    pub cache_bytes: u64,
}

/// A device's new boot, started by a reset.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResetView {
    pub device: String,
    /// The boot's number.
    pub boot: u64,
    /// The boot's token, for export names.
    pub token: String,
    pub sessions_ended: usize,
    pub write_caches_dropped: usize,
}

/// The secret a hypervisor attaches a device's disks with.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AttachSecretView {
    /// The device's name.
    pub device: String,
    pub attach_secret: String,
    /// The NBD export name to attach.
    pub export: String,
    /// The iSCSI initiator name to log in with (the target name names the vDisk:
    /// `iqn.2026-01.org.provision:<vdisk>`).
    pub iscsi_initiator: String,
    /// The iSCSI CHAP secret made from the attach secret (any CHAP name).
    pub iscsi_chap_secret: String,
}

/// What happened, in words.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Message {
    pub message: String,
}

/// The running server.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatusView {
    pub version: String,
    pub uptime_seconds: u64,
    pub store: String,
    /// Service name to its address, or null when off.
    pub services: BTreeMap<String, Option<String>>,
    pub sessions: usize,
    pub write_cache_bytes: u64,
}

/// An error: what was wrong, in words, and its kind.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorView {
    pub error: String,
    /// `invalid`, `not_found`, `conflict`, `refused`, `unauthorized`, `too_large`,
    /// `failed`.
    pub kind: String,
}

impl From<&VDisk> for VdiskView {
    fn from(v: &VDisk) -> Self {
        Self {
            name: v.name.clone(),
            size: v.size,
            description: v.description.clone(),
        }
    }
}

impl From<&Version> for VersionView {
    fn from(v: &Version) -> Self {
        Self {
            number: v.number,
            state: v.state.as_str().to_owned(),
            file: v.file.clone(),
            note: v.note.clone(),
            created_at: v.created_at,
            boots: None,
        }
    }
}

impl From<&Device> for DeviceView {
    fn from(d: &Device) -> Self {
        Self {
            mac: d.mac.to_string(),
            name: d.name.clone(),
            collection: d.collection.clone(),
            device_type: d.device_type.as_str().to_owned(),
            enabled: d.enabled,
        }
    }
}

impl From<&Assignment> for AssignmentView {
    fn from(a: &Assignment) -> Self {
        Self {
            vdisk: a.vdisk.clone(),
            mode: a.mode.as_str().to_owned(),
            pinned_version: a.pinned_version,
        }
    }
}

impl From<&Collection> for CollectionView {
    fn from(c: &Collection) -> Self {
        Self {
            name: c.name.clone(),
            auto_add: c.auto_add,
            device_type: c.default_device_type.as_str().to_owned(),
            vdisk: c.default_vdisk.clone(),
            mode: c.default_mode.as_str().to_owned(),
        }
    }
}

impl From<&AuditEntry> for AuditView {
    fn from(e: &AuditEntry) -> Self {
        Self {
            id: e.id,
            at: e.at,
            actor: e.actor.clone(),
            action: e.action.clone(),
            subject: e.subject.clone(),
            detail: e.detail.clone(),
        }
    }
}

impl SessionView {
    /// A session with its device's traffic and write-cache use on that vDisk.
    pub fn new(s: &SessionInfo, usage: &[Usage]) -> Self {
        let u = usage.iter().find(|u| u.mac == s.mac && u.vdisk == s.vdisk);
        Self {
            id: s.id,
            device: s.device.clone(),
            mac: s.mac.to_string(),
            vdisk: s.vdisk.clone(),
            version: s.version,
            mode: mode_str(s.mode).to_owned(),
            transport: s.transport.as_str().to_owned(),
            opened_at: unix_secs(s.opened_at),
            reads: u.map_or(0, |u| u.stats.reads),
            read_bytes: u.map_or(0, |u| u.stats.read_bytes),
            writes: u.map_or(0, |u| u.stats.writes),
            write_bytes: u.map_or(0, |u| u.stats.write_bytes),
            errors: u.map_or(0, |u| u.stats.errors),
            cache_bytes: u.map_or(0, |u| u.cache_bytes),
        }
    }

    /// Every open session of `sessions`.
    pub fn all(sessions: &provision_core::Sessions) -> Vec<Self> {
        let usage = sessions.usage();
        sessions
            .list()
            .iter()
            .map(|s| Self::new(s, &usage))
            .collect()
    }
}

/// A list of views of `items`.
pub fn views<'a, T: 'a, V: From<&'a T>>(items: &'a [T]) -> Vec<V> {
    items.iter().map(V::from).collect()
}

/// The mode's word in listings.
pub fn mode_str(mode: SessionMode) -> &'static str {
    match mode {
        SessionMode::Standard => "standard",
        SessionMode::Private => "private",
        SessionMode::Maintenance => "maintenance",
    }
}

fn unix_secs(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `POST /v1/vdisks`: a new, empty vDisk.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewVdisk {
    pub name: String,
    /// Bytes (rounded up to whole sectors).
    pub size: u64,
    #[serde(default)]
    pub description: String,
}

/// `POST /v1/vdisks/{name}/import` with a JSON body: an image from the server's import
/// folder.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportFromFolder {
    /// A file in the import folder, by its name there.
    pub file: String,
    #[serde(default)]
    pub description: String,
}

/// `POST /v1/vdisks/{name}/versions`: version N+1 for maintenance devices.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewVersion {
    #[serde(default)]
    pub note: String,
}

/// `POST /v1/devices`: a new device.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    pub mac: String,
    pub name: String,
    #[serde(default)]
    pub collection: Option<String>,
    /// `production` (the default), `test` or `maintenance`.
    #[serde(rename = "type", default)]
    pub device_type: Option<String>,
}

/// `PATCH /v1/devices/{device}`: only the fields present change; `"collection": null`
/// takes the device out of its collection.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub collection: Option<Option<String>>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// `PUT /v1/devices/{device}/assignments/{vdisk}`: assign a vDisk, or change its mode
/// or position.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignmentChange {
    /// `standard` (the default) or `private`.
    #[serde(default)]
    pub mode: Option<String>,
    /// 0 is the default vDisk; appended when absent.
    #[serde(default)]
    pub position: Option<usize>,
}

/// `PUT /v1/devices/{device}/assignments/{vdisk}/pin`: the version to boot, or null
/// to follow the device's type again.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PinChange {
    pub version: Option<u32>,
}

/// `POST /v1/collections`: a new collection.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCollection {
    pub name: String,
    #[serde(default)]
    pub auto_add: bool,
    #[serde(rename = "type", default)]
    pub device_type: Option<String>,
    #[serde(default)]
    pub vdisk: Option<String>,
    #[serde(default)]
    pub mode: Option<String>,
}

/// `PATCH /v1/collections/{name}`: only the fields present change; `"vdisk": null`
/// assigns no vDisk to auto-added devices.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectionChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_add: Option<bool>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub vdisk: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// `PATCH /v1/devices/{device}/personality`: keys to set (a string) or remove (null).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonalityChange {
    pub values: BTreeMap<String, Option<String>>,
    /// The values set are secrets: served to the device's boot only, never shown.
    #[serde(default)]
    pub secret: bool,
}

/// A field that is present (possibly null) as `Some`, so that "absent" and "null"
/// differ in a change.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Long disk work (an import, a merge) that the API runs after answering `202`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    pub id: u64,
    /// `import` or `merge`.
    pub kind: String,
    /// What it works on, in words.
    pub what: String,
    /// `running`, `succeeded` or `failed`.
    pub state: String,
    /// Bytes done so far.
    pub done: u64,
    /// Bytes in all (0 while unknown).
    pub total: u64,
    /// What the work answered, when it succeeded (a vDisk, or a message).
    #[schema(value_type = Object)]
    pub result: Option<serde_json::Value>,
    /// What went wrong, when it failed.
    pub error: Option<ErrorView>,
    /// Seconds since the Unix epoch.
    pub started_at: i64,
}
