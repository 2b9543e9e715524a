//! Devices, their assigned vDisks and their personality.

use rusqlite::{OptionalExtension, Row, params};

use super::collections::{auto_add_collection, collection_in};
use super::names::{NameOf, check_name};
use super::vdisks::{vdisk_in, versions_in};
use super::{Store, found, now, unique};
use crate::error::{Error, ErrorKind, Result};
use crate::mac::Mac;
use crate::model::{Assignment, Device, DeviceType, Mode};
use crate::resolve::{self, BootFacts, Refusal};

/// What listings show in place of a secret personality value.
pub const SECRET_SHOWN: &str = "(secret, set)";

/// The most personality data (keys and values together) one device may hold.
pub const PERSONALITY_LIMIT: usize = 64 * 1024;

/// Changes to a device; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceUpdate {
    /// A new unique name.
    pub name: Option<String>,
    /// A new collection (`Some(None)` removes it from its collection).
    pub collection: Option<Option<String>>,
    /// A new device type.
    pub device_type: Option<DeviceType>,
    /// Enable or disable.
    pub enabled: Option<bool>,
}

const COLUMNS: &str = "d.id, d.mac, d.name, c.name, d.device_type, d.enabled";
const FROM: &str = "devices d LEFT JOIN collections c ON c.id = d.collection_id";

fn device_row(r: &Row<'_>) -> rusqlite::Result<Device> {
    let conv = |i, e: Error| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    };
    Ok(Device {
        id: r.get(0)?,
        mac: r.get::<_, String>(1)?.parse().map_err(|e| conv(1, e))?,
        name: r.get(2)?,
        collection: r.get(3)?,
        device_type: r.get::<_, String>(4)?.parse().map_err(|e| conv(4, e))?,
        enabled: r.get(5)?,
    })
}

/// Finds a device by MAC (when `key` parses as one) or else by name.
fn device_in(db: &rusqlite::Connection, key: &str) -> Result<Device> {
    let (column, value) = match key.parse::<Mac>() {
        Ok(mac) => ("d.mac", mac.to_string()),
        Err(_) => ("d.name", key.to_owned()),
    };
    found(
        db.query_row(
            &format!("SELECT {COLUMNS} FROM {FROM} WHERE {column} = ?1"),
            [value],
            device_row,
        ),
        "device",
        key,
    )
}

fn insert_device(
    tx: &rusqlite::Connection,
    mac: Mac,
    name: &str,
    collection: Option<&str>,
    device_type: DeviceType,
) -> Result<Device> {
    let collection_id = collection
        .map(|c| collection_in(tx, c))
        .transpose()?
        .map(|c| c.id);
    unique(
        tx.execute(
            "INSERT INTO devices (mac, name, collection_id, device_type, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![mac.to_string(), name, collection_id, device_type.as_str(), now()],
        ),
        "device",
        &format!("{name} ({mac})"),
    )?;
    device_in(tx, &mac.to_string())
}

fn assignments_in(db: &rusqlite::Connection, device_id: i64) -> Result<Vec<Assignment>> {
    let mut stmt = db.prepare(
        "SELECT v.name, a.mode, a.pinned_version FROM assignments a JOIN vdisks v ON v.id = a.vdisk_id
         WHERE a.device_id = ?1 ORDER BY a.position",
    )?;
    let rows = stmt.query_map([device_id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?))
    })?;
    rows.map(|row| {
        let (vdisk, mode, pinned_version) = row?;
        Ok(Assignment {
            vdisk,
            mode: mode.parse()?,
            pinned_version,
        })
    })
    .collect()
}

/// Rewrites a device's assignment positions as 0, 1, 2, ... in the given order.
fn renumber(tx: &rusqlite::Connection, device_id: i64, order: &[String]) -> Result<()> {
    for (position, vdisk) in order.iter().enumerate() {
        tx.execute(
            "UPDATE assignments SET position = ?3 WHERE device_id = ?1 AND vdisk_id = (SELECT id FROM vdisks WHERE name = ?2)",
            params![device_id, vdisk, position as i64],
        )?;
    }
    Ok(())
}

impl Store {
    /// Adds a device.
    pub fn add_device(
        &self,
        mac: Mac,
        name: &str,
        collection: Option<&str>,
        device_type: DeviceType,
    ) -> Result<Device> {
        check_name(NameOf::Device, name)?;
        let detail = format!("mac {mac}, type {device_type}");
        self.change("device.add", name, &detail, |tx| {
            insert_device(tx, mac, name, collection, device_type)
        })
    }

    /// The device with this MAC or name.
    pub fn device(&self, key: &str) -> Result<Device> {
        device_in(&self.lock(), key)
    }

    /// Every device, by name.
    pub fn devices(&self) -> Result<Vec<Device>> {
        let db = self.lock();
        let mut stmt = db.prepare(&format!("SELECT {COLUMNS} FROM {FROM} ORDER BY d.name"))?;
        let rows = stmt.query_map([], device_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Changes a device's name, collection, type or enabled flag.
    pub fn set_device(&self, key: &str, update: &DeviceUpdate) -> Result<Device> {
        if let Some(name) = &update.name {
            check_name(NameOf::Device, name)?;
        }
        self.change("device.set", key, &format!("{update:?}"), |tx| {
            let device = device_in(tx, key)?;
            if let Some(name) = &update.name {
                unique(
                    tx.execute(
                        "UPDATE devices SET name = ?2 WHERE id = ?1",
                        params![device.id, name],
                    ),
                    "device",
                    name,
                )?;
            }
            if let Some(collection) = &update.collection {
                let id = collection
                    .as_deref()
                    .map(|c| collection_in(tx, c))
                    .transpose()?
                    .map(|c| c.id);
                tx.execute(
                    "UPDATE devices SET collection_id = ?2 WHERE id = ?1",
                    params![device.id, id],
                )?;
            }
            if let Some(device_type) = update.device_type {
                tx.execute(
                    "UPDATE devices SET device_type = ?2 WHERE id = ?1",
                    params![device.id, device_type.as_str()],
                )?;
            }
            if let Some(enabled) = update.enabled {
                tx.execute(
                    "UPDATE devices SET enabled = ?2 WHERE id = ?1",
                    params![device.id, enabled],
                )?;
            }
            device_in(tx, &device.mac.to_string())
        })
    }

    /// Removes a device with its assignments and personality.
    pub fn remove_device(&self, key: &str) -> Result<Device> {
        self.change("device.remove", key, "", |tx| {
            let device = device_in(tx, key)?;
            tx.execute("DELETE FROM devices WHERE id = ?1", [device.id])?;
            Ok(device)
        })
    }

    /// The device with `mac`, if the store has one (enabled or not). Writes nothing.
    pub fn device_with_mac(&self, mac: Mac) -> Result<Option<Device>> {
        match device_in(&self.lock(), &mac.to_string()) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The records that decide what the device with `mac` boots (its device, if any,
    /// and its assignments with their vDisks' versions), read at one point in time;
    /// [`BootFacts::plan`] decides. Writes nothing.
    pub fn boot_facts(&self, mac: Mac) -> Result<BootFacts> {
        let db = self.lock();
        let device = match device_in(&db, &mac.to_string()) {
            Ok(d) => Some(d),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut assigned = Vec::new();
        if let Some(device) = &device {
            for assignment in assignments_in(&db, device.id)? {
                let versions = versions_in(&db, vdisk_in(&db, &assignment.vdisk)?.id)?;
                assigned.push((assignment, versions));
            }
        }
        Ok(BootFacts {
            mac,
            device,
            assigned,
        })
    }

    /// The device that boots with `mac`: a known, enabled device, or else one
    /// [`auto_add`](Self::auto_add)ed now. **Writes** when it adds. Unknown MACs
    /// without an auto-add collection, and disabled devices, are refused.
    pub fn device_or_auto_add(&self, mac: Mac) -> Result<Device> {
        match resolve::admit(mac, self.device_with_mac(mac)?.as_ref()) {
            Ok(device) => Ok(device.clone()),
            Err(Refusal::UnknownDevice(_)) => self.auto_add(mac),
            Err(refusal) => Err(refusal.into()),
        }
    }

    /// Adds the unknown device with `mac` to the collection with auto-add on (with that
    /// collection's default vDisk assigned), within the [`AutoAddLimits`]. **Writes.**
    ///
    /// Refused without an auto-add collection, past the limits, and (a conflict) when a
    /// device with `mac` exists.
    ///
    /// [`AutoAddLimits`]: crate::AutoAddLimits
    pub fn auto_add(&self, mac: Mac) -> Result<Device> {
        let key = mac.to_string();
        let name = format!("auto-{}", key.replace(':', ""));
        let now = std::time::Instant::now();
        let mut recent = self
            .recent_auto_adds
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        while recent
            .front()
            .is_some_and(|at| now.duration_since(*at) >= std::time::Duration::from_secs(60))
        {
            recent.pop_front();
        }
        if recent.len() >= self.auto_add.per_minute as usize {
            return Err(Error::new(
                ErrorKind::Refused,
                format!(
                    "unknown device {mac} refused for now: {} devices were added automatically \
                     in the last minute, the limit",
                    recent.len()
                ),
            ));
        }
        let max_devices = self.auto_add.max_devices;
        let device = self.change("device.auto_add", &name, &format!("mac {mac}"), |tx| {
            let Some(collection) = auto_add_collection(tx)? else {
                return Err(Error::new(
                    ErrorKind::Refused,
                    format!("unknown device {mac} refused: no collection has auto-add on"),
                ));
            };
            let members: i64 = tx.query_row(
                "SELECT COUNT(*) FROM devices WHERE collection_id = ?1",
                [collection.id],
                |r| r.get(0),
            )?;
            if members >= i64::from(max_devices) {
                return Err(Error::new(
                    ErrorKind::Refused,
                    format!(
                        "unknown device {mac} refused: auto-add collection `{}` holds {members} \
                         devices, the limit",
                        collection.name
                    ),
                ));
            }
            let device = insert_device(tx, mac, &name, Some(&collection.name), collection.default_device_type)?;
            if let Some(vdisk) = &collection.default_vdisk {
                let vd = vdisk_in(tx, vdisk)?;
                tx.execute(
                    "INSERT INTO assignments (device_id, vdisk_id, position, mode) VALUES (?1, ?2, 0, ?3)",
                    params![device.id, vd.id, collection.default_mode.as_str()],
                )?;
            }
            Ok(device)
        })?;
        recent.push_back(now);
        Ok(device)
    }

    /// Assigns a vDisk to a device at `position` (0 makes it the default; `None`
    /// appends), or changes the mode and position of an existing assignment.
    pub fn assign(
        &self,
        key: &str,
        vdisk: &str,
        mode: Mode,
        position: Option<usize>,
    ) -> Result<Vec<Assignment>> {
        self.change("device.assign", key, &format!("{vdisk} ({mode})"), |tx| {
            let device = device_in(tx, key)?;
            let vd = vdisk_in(tx, vdisk)?;
            let mut order: Vec<String> = assignments_in(tx, device.id)?.into_iter().map(|a| a.vdisk).collect();
            order.retain(|v| v != vdisk);
            order.insert(position.unwrap_or(order.len()).min(order.len()), vdisk.to_owned());
            tx.execute(
                "INSERT INTO assignments (device_id, vdisk_id, position, mode) VALUES (?1, ?2, 0, ?3)
                 ON CONFLICT (device_id, vdisk_id) DO UPDATE SET mode = excluded.mode",
                params![device.id, vd.id, mode.as_str()],
            )?;
            renumber(tx, device.id, &order)?;
            assignments_in(tx, device.id)
        })
    }

    /// Removes a vDisk from a device's assignments.
    pub fn unassign(&self, key: &str, vdisk: &str) -> Result<Vec<Assignment>> {
        self.change("device.unassign", key, vdisk, |tx| {
            let device = device_in(tx, key)?;
            let vd = vdisk_in(tx, vdisk)?;
            let removed = tx.execute(
                "DELETE FROM assignments WHERE device_id = ?1 AND vdisk_id = ?2",
                params![device.id, vd.id],
            )?;
            if removed == 0 {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("vDisk `{vdisk}` is not assigned to device `{key}`"),
                ));
            }
            let order: Vec<String> = assignments_in(tx, device.id)?
                .into_iter()
                .map(|a| a.vdisk)
                .collect();
            renumber(tx, device.id, &order)?;
            assignments_in(tx, device.id)
        })
    }

    /// Pins a device's assignment to one version (or unpins it with `None`).
    pub fn pin(&self, key: &str, vdisk: &str, version: Option<u32>) -> Result<Vec<Assignment>> {
        self.change(
            "device.pin",
            key,
            &format!("{vdisk} -> {version:?}"),
            |tx| {
                let device = device_in(tx, key)?;
                let vd = vdisk_in(tx, vdisk)?;
                if let Some(number) = version {
                    let exists: Option<i64> = tx
                        .query_row(
                            "SELECT 1 FROM versions WHERE vdisk_id = ?1 AND number = ?2",
                            params![vd.id, number],
                            |r| r.get(0),
                        )
                        .optional()?;
                    if exists.is_none() {
                        return Err(Error::not_found("version", format!("{vdisk} {number}")));
                    }
                }
                let changed = tx.execute(
                "UPDATE assignments SET pinned_version = ?3 WHERE device_id = ?1 AND vdisk_id = ?2",
                params![device.id, vd.id, version],
            )?;
                if changed == 0 {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!("vDisk `{vdisk}` is not assigned to device `{key}`"),
                    ));
                }
                assignments_in(tx, device.id)
            },
        )
    }

    /// A device's assigned vDisks, the default first.
    pub fn assignments(&self, key: &str) -> Result<Vec<Assignment>> {
        let db = self.lock();
        let device = device_in(&db, key)?;
        assignments_in(&db, device.id)
    }

    /// Sets (`Some`) or removes (`None`) one personality value of a device.
    pub fn set_personality(&self, key: &str, name: &str, value: Option<&str>) -> Result<()> {
        self.write_personality(key, name, value, false)
    }

    /// Sets a personality value that is a secret (a domain-join password, a key): it is
    /// served to the device's current boot like any other, and shown nowhere else
    /// (listings say it is set; the audit log names the key only).
    pub fn set_secret_personality(&self, key: &str, name: &str, value: &str) -> Result<()> {
        self.write_personality(key, name, Some(value), true)
    }

    fn write_personality(
        &self,
        key: &str,
        name: &str,
        value: Option<&str>,
        secret: bool,
    ) -> Result<()> {
        if name.is_empty() || name.contains(['=', '\n']) {
            return Err(Error::new(
                ErrorKind::Invalid,
                format!("personality key `{name}` must be non-empty, without `=` or newlines"),
            ));
        }
        if value.is_some_and(|v| v.contains('\n')) {
            return Err(Error::new(
                ErrorKind::Invalid,
                format!("personality value of `{name}` must be one line"),
            ));
        }
        let shown = match value {
            None => "<removed>",
            Some(_) if secret => "<secret>",
            Some(v) => v,
        };
        self.change("personality.set", key, &format!("{name}={shown}"), |tx| {
            let device = device_in(tx, key)?;
            tx.execute(
                "DELETE FROM personality WHERE device_id = ?1 AND key = ?2",
                params![device.id, name],
            )?;
            if let Some(value) = value {
                let used: i64 = tx.query_row(
                    "SELECT COALESCE(SUM(LENGTH(CAST(key AS BLOB)) + LENGTH(CAST(value AS BLOB))), 0) FROM personality WHERE device_id = ?1",
                    [device.id],
                    |r| r.get(0),
                )?;
                let total = used as usize + name.len() + value.len();
                if total > PERSONALITY_LIMIT {
                    return Err(Error::new(
                        ErrorKind::Invalid,
                        format!("personality of device `{key}` would hold {total} bytes; the limit is {PERSONALITY_LIMIT}"),
                    ));
                }
                tx.execute(
                    "INSERT INTO personality (device_id, key, value, secret) VALUES (?1, ?2, ?3, ?4)",
                    params![device.id, name, value, secret],
                )?;
            }
            Ok(())
        })
    }

    /// A device's personality, by key.
    pub fn personality(&self, key: &str) -> Result<Vec<(String, String)>> {
        Ok(self
            .personality_entries(key)?
            .into_iter()
            .map(|(k, v, _)| (k, v))
            .collect())
    }

    /// A device's personality as listings show it: secret values replaced by
    /// [`SECRET_SHOWN`].
    pub fn personality_shown(&self, key: &str) -> Result<Vec<(String, String)>> {
        Ok(self
            .personality_entries(key)?
            .into_iter()
            .map(|(k, v, secret)| (k, if secret { SECRET_SHOWN.to_owned() } else { v }))
            .collect())
    }

    fn personality_entries(&self, key: &str) -> Result<Vec<(String, String, bool)>> {
        let db = self.lock();
        let device = device_in(&db, key)?;
        let mut stmt = db.prepare(
            "SELECT key, value, secret FROM personality WHERE device_id = ?1 ORDER BY key",
        )?;
        let rows = stmt.query_map([device.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
