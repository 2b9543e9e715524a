//! Devices, their assigned vDisks and their personality.

use super::backend::Queries;
use super::names::{NameOf, check_name};
use super::{Store, now};
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

/// The id of the collection called `name`, if any.
fn collection_id(q: &dyn Queries, name: Option<&str>) -> Result<Option<i64>> {
    name.map(|c| q.collection(c).map(|c| c.id)).transpose()
}

/// The device with `mac`, if any.
fn device_with_mac(q: &dyn Queries, mac: Mac) -> Result<Option<Device>> {
    match q.device(&mac.to_string()) {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Adds a device.
fn insert_device(
    q: &dyn Queries,
    mac: Mac,
    name: &str,
    collection: Option<&str>,
    device_type: DeviceType,
) -> Result<Device> {
    let collection_id = collection_id(q, collection)?;
    q.insert_device(mac, name, collection_id, device_type, now())
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
        self.change("device.add", name, &detail, |q| {
            insert_device(q, mac, name, collection, device_type)
        })
    }

    /// The device with this MAC or name.
    pub fn device(&self, key: &str) -> Result<Device> {
        self.read(|q| q.device(key))
    }

    /// Every device, by name.
    pub fn devices(&self) -> Result<Vec<Device>> {
        self.read(|q| q.devices())
    }

    /// Changes a device's name, collection, type or enabled flag.
    pub fn set_device(&self, key: &str, update: &DeviceUpdate) -> Result<Device> {
        if let Some(name) = &update.name {
            check_name(NameOf::Device, name)?;
        }
        self.change("device.set", key, &format!("{update:?}"), |q| {
            let device = q.device(key)?;
            if let Some(name) = &update.name {
                q.set_device_name(device.id, name)?;
            }
            if let Some(collection) = &update.collection {
                q.set_device_collection(device.id, collection_id(q, collection.as_deref())?)?;
            }
            if let Some(device_type) = update.device_type {
                q.set_device_type(device.id, device_type)?;
            }
            if let Some(enabled) = update.enabled {
                q.set_device_enabled(device.id, enabled)?;
            }
            q.device(&device.mac.to_string())
        })
    }

    /// Removes a device with its assignments and personality.
    pub fn remove_device(&self, key: &str) -> Result<Device> {
        self.change("device.remove", key, "", |q| {
            let device = q.device(key)?;
            q.delete_device(device.id)?;
            Ok(device)
        })
    }

    /// The device with `mac`, if the store has one (enabled or not). Writes nothing.
    pub fn device_with_mac(&self, mac: Mac) -> Result<Option<Device>> {
        self.read(|q| device_with_mac(q, mac))
    }

    /// The records that decide what the device with `mac` boots (its device, if any,
    /// and its assignments with their vDisks' versions), read at one point in time;
    /// [`BootFacts::plan`] decides. Writes nothing.
    pub fn boot_facts(&self, mac: Mac) -> Result<BootFacts> {
        self.read(|q| {
            let device = device_with_mac(q, mac)?;
            let mut assigned = Vec::new();
            if let Some(device) = &device {
                for assignment in q.assignments(device.id)? {
                    let versions = q.versions(q.vdisk(&assignment.vdisk)?.id)?;
                    assigned.push((assignment, versions));
                }
            }
            Ok(BootFacts {
                mac,
                device,
                assigned,
            })
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
        let device = self.change("device.auto_add", &name, &format!("mac {mac}"), |q| {
            let Some(collection) = q.auto_add_collection()? else {
                return Err(Error::new(
                    ErrorKind::Refused,
                    format!("unknown device {mac} refused: no collection has auto-add on"),
                ));
            };
            let members = q.collection_members(collection.id)?;
            if members >= u64::from(max_devices) {
                return Err(Error::new(
                    ErrorKind::Refused,
                    format!(
                        "unknown device {mac} refused: auto-add collection `{}` holds {members} \
                         devices, the limit",
                        collection.name
                    ),
                ));
            }
            let device = q.insert_device(
                mac,
                &name,
                Some(collection.id),
                collection.default_device_type,
                super::now(),
            )?;
            if let Some(vdisk) = &collection.default_vdisk {
                q.upsert_assignment(device.id, q.vdisk(vdisk)?.id, collection.default_mode)?;
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
        self.change("device.assign", key, &format!("{vdisk} ({mode})"), |q| {
            let device = q.device(key)?;
            let vd = q.vdisk(vdisk)?;
            let mut order: Vec<String> = q
                .assignments(device.id)?
                .into_iter()
                .map(|a| a.vdisk)
                .collect();
            order.retain(|v| v != vdisk);
            order.insert(
                position.unwrap_or(order.len()).min(order.len()),
                vdisk.to_owned(),
            );
            q.upsert_assignment(device.id, vd.id, mode)?;
            q.order_assignments(device.id, &order)?;
            q.assignments(device.id)
        })
    }

    /// Removes a vDisk from a device's assignments.
    pub fn unassign(&self, key: &str, vdisk: &str) -> Result<Vec<Assignment>> {
        self.change("device.unassign", key, vdisk, |q| {
            let device = q.device(key)?;
            let vd = q.vdisk(vdisk)?;
            if !q.delete_assignment(device.id, vd.id)? {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("vDisk `{vdisk}` is not assigned to device `{key}`"),
                ));
            }
            let order: Vec<String> = q
                .assignments(device.id)?
                .into_iter()
                .map(|a| a.vdisk)
                .collect();
            q.order_assignments(device.id, &order)?;
            q.assignments(device.id)
        })
    }

    /// Pins a device's assignment to one version (or unpins it with `None`).
    pub fn pin(&self, key: &str, vdisk: &str, version: Option<u32>) -> Result<Vec<Assignment>> {
        self.change("device.pin", key, &format!("{vdisk} -> {version:?}"), |q| {
            let device = q.device(key)?;
            let vd = q.vdisk(vdisk)?;
            if let Some(number) = version
                && !q.versions(vd.id)?.iter().any(|v| v.number == number)
            {
                return Err(Error::not_found("version", format!("{vdisk} {number}")));
            }
            if !q.set_pin(device.id, vd.id, version)? {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("vDisk `{vdisk}` is not assigned to device `{key}`"),
                ));
            }
            q.assignments(device.id)
        })
    }

    /// A device's assigned vDisks, the default first.
    pub fn assignments(&self, key: &str) -> Result<Vec<Assignment>> {
        self.read(|q| q.assignments(q.device(key)?.id))
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
        self.change("personality.set", key, &format!("{name}={shown}"), |q| {
            let device = q.device(key)?;
            q.delete_personality(device.id, name)?;
            if let Some(value) = value {
                let used = q.personality_bytes(device.id)?;
                let total = usize::try_from(used)
                    .unwrap_or(usize::MAX)
                    .saturating_add(name.len() + value.len());
                if total > PERSONALITY_LIMIT {
                    return Err(Error::new(
                        ErrorKind::Invalid,
                        format!("personality of device `{key}` would hold {total} bytes; the limit is {PERSONALITY_LIMIT}"),
                    ));
                }
                q.insert_personality(device.id, name, value, secret)?;
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
        self.read(|q| q.personality(q.device(key)?.id))
    }
}
