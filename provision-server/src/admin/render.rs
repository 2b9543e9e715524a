//! Output of `provision`: a table for people or JSON for scripts, per record type.

use crate::output::{human_bytes, table, utc_time};
use provision_core::{
    Assignment, AuditEntry, Collection, Device, SessionInfo, SessionMode, Usage, VDisk, Version,
};
use serde_json::{Value, json};

/// Chooses tables or JSON.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub json: bool,
}

fn vdisk_json(v: &VDisk) -> Value {
    json!({ "name": v.name, "size": v.size, "description": v.description })
}

fn version_json(v: &Version) -> Value {
    json!({ "number": v.number, "state": v.state.as_str(), "file": v.file, "note": v.note, "created_at": v.created_at })
}

fn device_json(d: &Device) -> Value {
    json!({
        "mac": d.mac.to_string(), "name": d.name, "collection": d.collection,
        "type": d.device_type.as_str(), "enabled": d.enabled,
    })
}

fn assignment_json(a: &Assignment) -> Value {
    json!({ "vdisk": a.vdisk, "mode": a.mode.as_str(), "pinned_version": a.pinned_version })
}

fn lines(value: Value) -> String {
    format!("{value:#}\n")
}

impl Out {
    fn pick(&self, json: impl FnOnce() -> Value, text: impl FnOnce() -> String) -> String {
        if self.json { lines(json()) } else { text() }
    }

    pub fn message(&self, text: &str) -> String {
        self.pick(|| json!({ "message": text }), || format!("{text}\n"))
    }

    pub fn vdisks(&self, list: &[VDisk]) -> String {
        self.pick(
            || list.iter().map(vdisk_json).collect(),
            || {
                let rows: Vec<_> = list
                    .iter()
                    .map(|v| vec![v.name.clone(), human_bytes(v.size), v.description.clone()])
                    .collect();
                table(&["NAME", "SIZE", "DESCRIPTION"], &rows)
            },
        )
    }

    pub fn versions(&self, list: &[Version]) -> String {
        self.pick(
            || list.iter().map(version_json).collect(),
            || {
                let rows: Vec<_> = list
                    .iter()
                    .map(|v| {
                        vec![
                            v.number.to_string(),
                            v.state.to_string(),
                            v.file.clone(),
                            v.note.clone(),
                        ]
                    })
                    .collect();
                table(&["VERSION", "STATE", "FILE", "NOTE"], &rows)
            },
        )
    }

    pub fn vdisk_detail(&self, vdisk: &VDisk, versions: &[Version]) -> String {
        self.pick(
            || {
                let mut v = vdisk_json(vdisk);
                v["versions"] = versions.iter().map(version_json).collect();
                v
            },
            || {
                format!(
                    "{}\n{}",
                    self.vdisks(std::slice::from_ref(vdisk)),
                    self.versions(versions)
                )
            },
        )
    }

    pub fn devices(&self, list: &[Device]) -> String {
        self.pick(
            || list.iter().map(device_json).collect(),
            || {
                let rows: Vec<_> = list
                    .iter()
                    .map(|d| {
                        vec![
                            d.name.clone(),
                            d.mac.to_string(),
                            d.device_type.to_string(),
                            d.collection.clone().unwrap_or_else(|| "-".into()),
                            if d.enabled { "yes" } else { "no" }.into(),
                        ]
                    })
                    .collect();
                table(&["NAME", "MAC", "TYPE", "COLLECTION", "ENABLED"], &rows)
            },
        )
    }

    pub fn assignments(&self, list: &[Assignment]) -> String {
        self.pick(
            || list.iter().map(assignment_json).collect(),
            || {
                let rows: Vec<_> = list
                    .iter()
                    .enumerate()
                    .map(|(i, a)| {
                        vec![
                            i.to_string(),
                            a.vdisk.clone(),
                            a.mode.to_string(),
                            a.pinned_version
                                .map_or_else(|| "-".into(), |v| v.to_string()),
                        ]
                    })
                    .collect();
                table(&["POSITION", "VDISK", "MODE", "PINNED"], &rows)
            },
        )
    }

    pub fn personality(&self, pairs: &[(String, String)]) -> String {
        self.pick(
            || {
                pairs
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                    .collect::<serde_json::Map<_, _>>()
                    .into()
            },
            || pairs.iter().map(|(k, v)| format!("{k}={v}\n")).collect(),
        )
    }

    pub fn device_detail(
        &self,
        device: &Device,
        assignments: &[Assignment],
        personality: &[(String, String)],
    ) -> String {
        self.pick(
            || {
                let mut d = device_json(device);
                d["assignments"] = assignments.iter().map(assignment_json).collect();
                d["personality"] = personality
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                    .collect();
                d
            },
            || {
                format!(
                    "{}\n{}\n{}",
                    self.devices(std::slice::from_ref(device)),
                    self.assignments(assignments),
                    self.personality(personality)
                )
            },
        )
    }

    pub fn collections(&self, list: &[Collection]) -> String {
        self.pick(
            || {
                list.iter()
                    .map(|c| {
                        json!({
                            "name": c.name, "auto_add": c.auto_add, "type": c.default_device_type.as_str(),
                            "vdisk": c.default_vdisk, "mode": c.default_mode.as_str(),
                        })
                    })
                    .collect()
            },
            || {
                let rows: Vec<_> = list
                    .iter()
                    .map(|c| {
                        vec![
                            c.name.clone(),
                            if c.auto_add { "yes" } else { "no" }.into(),
                            c.default_device_type.to_string(),
                            c.default_vdisk.clone().unwrap_or_else(|| "-".into()),
                            c.default_mode.to_string(),
                        ]
                    })
                    .collect();
                table(&["NAME", "AUTO-ADD", "TYPE", "VDISK", "MODE"], &rows)
            },
        )
    }

    pub fn audit(&self, entries: &[AuditEntry]) -> String {
        self.pick(
            || {
                entries
                    .iter()
                    .map(|e| json!({ "at": e.at, "actor": e.actor, "action": e.action, "subject": e.subject, "detail": e.detail }))
                    .collect()
            },
            || {
                let rows: Vec<_> = entries
                    .iter()
                    .map(|e| vec![utc_time(e.at), e.actor.clone(), e.action.clone(), e.subject.clone(), e.detail.clone()])
                    .collect();
                table(&["AT", "ACTOR", "ACTION", "SUBJECT", "DETAIL"], &rows)
            },
        )
    }

    /// Open sessions with their device's traffic and write-cache use on that vDisk.
    pub fn sessions(&self, list: &[SessionInfo], usage: &[Usage]) -> String {
        let usage_of =
            |s: &SessionInfo| usage.iter().find(|u| u.mac == s.mac && u.vdisk == s.vdisk);
        self.pick(
            || {
                list.iter()
                    .map(|s| {
                        let u = usage_of(s);
                        json!({
                            "id": s.id, "device": s.device, "mac": s.mac.to_string(),
                            "vdisk": s.vdisk, "version": s.version, "mode": mode_str(s.mode),
                            "opened_at": unix_secs(s.opened_at),
                            "reads": u.map_or(0, |u| u.stats.reads),
                            "read_bytes": u.map_or(0, |u| u.stats.read_bytes),
                            "writes": u.map_or(0, |u| u.stats.writes),
                            "write_bytes": u.map_or(0, |u| u.stats.write_bytes),
                            "errors": u.map_or(0, |u| u.stats.errors),
                            "cache_bytes": u.map_or(0, |u| u.cache_bytes),
                        })
                    })
                    .collect()
            },
            || {
                let rows: Vec<_> = list
                    .iter()
                    .map(|s| {
                        let u = usage_of(s);
                        let bytes = |f: fn(&Usage) -> u64| {
                            u.map_or_else(|| "-".into(), |u| human_bytes(f(u)))
                        };
                        vec![
                            s.id.to_string(),
                            s.device.clone(),
                            s.mac.to_string(),
                            s.vdisk.clone(),
                            s.version.to_string(),
                            mode_str(s.mode).into(),
                            utc_time(unix_secs(s.opened_at)),
                            bytes(|u| u.stats.read_bytes),
                            bytes(|u| u.stats.write_bytes),
                            bytes(|u| u.cache_bytes),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "ID", "DEVICE", "MAC", "VDISK", "VERSION", "MODE", "OPENED", "READ",
                        "WRITTEN", "CACHE",
                    ],
                    &rows,
                )
            },
        )
    }

    /// A JSON object as `key: value` lines, or as itself.
    pub fn object(&self, value: &Value) -> String {
        self.pick(
            || value.clone(),
            || match value.as_object() {
                Some(map) => map
                    .iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => format!("{k}: {s}\n"),
                        other => format!("{k}: {other}\n"),
                    })
                    .collect(),
                None => format!("{value}\n"),
            },
        )
    }
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
