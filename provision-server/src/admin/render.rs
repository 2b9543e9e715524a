//! Output of `provision`: a table for people or JSON for scripts, per answer.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::output::{human_bytes, table, utc_time};
use crate::resources::{
    AssignmentView, AttachSecretView, AuditView, CollectionView, DeviceDetail, DeviceView, Message,
    ResetView, SessionView, StatusView, VdiskDetail, VdiskView, VersionView,
};

/// What a command answers: one of the API's resources, or a list of them.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Answer {
    Vdisks(Vec<VdiskView>),
    Vdisk(VdiskDetail),
    Versions(Vec<VersionView>),
    Devices(Vec<DeviceView>),
    Device(DeviceDetail),
    Assignments(Vec<AssignmentView>),
    Collections(Vec<CollectionView>),
    Personality(BTreeMap<String, String>),
    Audit(Vec<AuditView>),
    Sessions(Vec<SessionView>),
    Message(Message),
    Reset(ResetView),
    AttachSecret(AttachSecretView),
    Status(StatusView),
}

impl Answer {
    /// An answer in words.
    pub fn message(text: impl Into<String>) -> Self {
        Answer::Message(Message {
            message: text.into(),
        })
    }

    /// The answer as `provision` prints it: JSON for scripts, or tables for people.
    pub fn render(&self, json: bool) -> String {
        if json {
            return match serde_json::to_string_pretty(self) {
                Ok(text) => text + "\n",
                Err(e) => format!("{{\"error\": \"{e}\"}}\n"),
            };
        }
        match self {
            Answer::Vdisks(list) => vdisks(list),
            Answer::Vdisk(d) => format!(
                "{}\n{}",
                vdisks(std::slice::from_ref(&d.vdisk)),
                versions(&d.versions)
            ),
            Answer::Versions(list) => versions(list),
            Answer::Devices(list) => devices(list),
            Answer::Device(d) => format!(
                "{}\n{}\n{}",
                devices(std::slice::from_ref(&d.device)),
                assignments(&d.assignments),
                personality(&d.personality)
            ),
            Answer::Assignments(list) => assignments(list),
            Answer::Collections(list) => collections(list),
            Answer::Personality(pairs) => personality(pairs),
            Answer::Audit(list) => audit(list),
            Answer::Sessions(list) => sessions(list),
            Answer::Message(m) => format!("{}\n", m.message),
            Answer::Reset(r) => object(r),
            Answer::AttachSecret(s) => object(s),
            Answer::Status(s) => object(s),
        }
    }
}

fn vdisks(list: &[VdiskView]) -> String {
    let rows: Vec<_> = list
        .iter()
        .map(|v| vec![v.name.clone(), human_bytes(v.size), v.description.clone()])
        .collect();
    table(&["NAME", "SIZE", "DESCRIPTION"], &rows)
}

fn versions(list: &[VersionView]) -> String {
    let rows: Vec<_> = list
        .iter()
        .map(|v| {
            vec![
                v.number.to_string(),
                v.state.clone(),
                v.file.clone(),
                v.boots.clone().unwrap_or_default(),
                v.note.clone(),
            ]
        })
        .collect();
    table(&["VERSION", "STATE", "FILE", "BOOTS", "NOTE"], &rows)
}

fn devices(list: &[DeviceView]) -> String {
    let rows: Vec<_> = list
        .iter()
        .map(|d| {
            vec![
                d.name.clone(),
                d.mac.clone(),
                d.device_type.clone(),
                d.collection.clone().unwrap_or_else(|| "-".into()),
                if d.enabled { "yes" } else { "no" }.into(),
            ]
        })
        .collect();
    table(&["NAME", "MAC", "TYPE", "COLLECTION", "ENABLED"], &rows)
}

fn assignments(list: &[AssignmentView]) -> String {
    let rows: Vec<_> = list
        .iter()
        .enumerate()
        .map(|(i, a)| {
            vec![
                i.to_string(),
                a.vdisk.clone(),
                a.mode.clone(),
                a.pinned_version
                    .map_or_else(|| "-".into(), |v| v.to_string()),
            ]
        })
        .collect();
    table(&["POSITION", "VDISK", "MODE", "PINNED"], &rows)
}

fn personality(pairs: &BTreeMap<String, String>) -> String {
    pairs.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

fn collections(list: &[CollectionView]) -> String {
    let rows: Vec<_> = list
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                if c.auto_add { "yes" } else { "no" }.into(),
                c.device_type.clone(),
                c.vdisk.clone().unwrap_or_else(|| "-".into()),
                c.mode.clone(),
            ]
        })
        .collect();
    table(&["NAME", "AUTO-ADD", "TYPE", "VDISK", "MODE"], &rows)
}

fn audit(entries: &[AuditView]) -> String {
    let rows: Vec<_> = entries
        .iter()
        .map(|e| {
            vec![
                utc_time(e.at),
                e.actor.clone(),
                e.action.clone(),
                e.subject.clone(),
                e.detail.clone(),
            ]
        })
        .collect();
    table(&["AT", "ACTOR", "ACTION", "SUBJECT", "DETAIL"], &rows)
}

fn sessions(list: &[SessionView]) -> String {
    let rows: Vec<_> = list
        .iter()
        .map(|s| {
            vec![
                s.id.to_string(),
                s.device.clone(),
                s.mac.clone(),
                s.vdisk.clone(),
                s.version.to_string(),
                s.mode.clone(),
                s.transport.clone(),
                utc_time(s.opened_at),
                human_bytes(s.read_bytes),
                human_bytes(s.write_bytes),
                human_bytes(s.cache_bytes),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "DEVICE",
            "MAC",
            "VDISK",
            "VERSION",
            "MODE",
            "TRANSPORT",
            "OPENED",
            "READ",
            "WRITTEN",
            "CACHE",
        ],
        &rows,
    )
}

/// An object as `key: value` lines.
fn object(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}: {s}\n"),
                other => format!("{k}: {other}\n"),
            })
            .collect(),
        Ok(other) => format!("{other}\n"),
        Err(e) => format!("{e}\n"),
    }
}
