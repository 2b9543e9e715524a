//! The store's database as one interface: every query [`Store`](super::Store) makes,
//! and the two ways it runs them (a read, a change in one transaction).
//!
//! The domain rules (names, states, limits, audit text) stay in `Store`; a backend only
//! stores and finds rows. SQLite (`sqlite.rs`) is the one backend today; a PostgreSQL
//! backend for several servers sharing one database implements these two traits and
//! leaves `Store`'s callers alone. Ids are the database's row ids; errors for a missing
//! row are `NotFound` and for a duplicate `Conflict`, naming the object, in every
//! backend.

use std::fmt;
use std::net::IpAddr;

use crate::boot::Boot;
use crate::error::Result;
use crate::mac::Mac;
use crate::model::{
    Assignment, AuditEntry, Collection, Device, DeviceType, Mode, VDisk, Version, VersionState,
};

use super::collections::CollectionSettings;

/// How a store reaches its database.
pub(crate) trait Backend: Send + Sync + fmt::Debug {
    /// Runs `read` against one consistent view of the database.
    fn read(&self, read: &mut dyn FnMut(&dyn Queries) -> Result<()>) -> Result<()>;

    /// Runs `change` in one transaction that takes the database's write lock at once;
    /// commits when it returns `Ok`, else rolls back.
    fn write(&self, change: &mut dyn FnMut(&dyn Queries) -> Result<()>) -> Result<()>;

    /// Writes a consistent copy of the whole database to the new file `path`, while
    /// others keep reading and writing it.
    fn snapshot_into(&self, path: &std::path::Path) -> Result<()>;
}

/// One line for the audit log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AuditLine<'a> {
    pub at: i64,
    pub actor: &'a str,
    pub action: &'a str,
    pub subject: &'a str,
    pub detail: &'a str,
}

/// The queries of the store, inside a read or a transaction.
pub(crate) trait Queries {
    // vDisks and versions
    /// The vDisk called `name` (`NotFound`).
    fn vdisk(&self, name: &str) -> Result<VDisk>;
    /// Every vDisk, by name.
    fn vdisks(&self) -> Result<Vec<VDisk>>;
    /// Adds a vDisk (`Conflict` on a duplicate name).
    fn insert_vdisk(&self, name: &str, size: u64, description: &str, at: i64) -> Result<VDisk>;
    /// Deletes a vDisk with its versions.
    fn delete_vdisk(&self, vdisk_id: i64) -> Result<()>;
    /// How many assignments name the vDisk.
    fn vdisk_users(&self, vdisk_id: i64) -> Result<u64>;
    /// A vDisk's versions, oldest first.
    fn versions(&self, vdisk_id: i64) -> Result<Vec<Version>>;
    /// Adds a version (`Conflict` when another version has `version.file`).
    fn insert_version(&self, version: &Version) -> Result<()>;
    /// Sets a version's state.
    fn set_version_state(&self, vdisk_id: i64, number: u32, state: VersionState) -> Result<()>;
    /// Points a version at another file (`Conflict` when another version has it).
    fn set_version_file(&self, vdisk_id: i64, number: u32, file: &str) -> Result<()>;
    /// Deletes a version.
    fn delete_version(&self, vdisk_id: i64, number: u32) -> Result<()>;

    // collections
    /// The collection called `name` (`NotFound`).
    fn collection(&self, name: &str) -> Result<Collection>;
    /// Every collection, by name.
    fn collections(&self) -> Result<Vec<Collection>>;
    /// The collection with auto-add on, if one has.
    fn auto_add_collection(&self) -> Result<Option<Collection>>;
    /// Adds a collection with default settings (`Conflict` on a duplicate name).
    fn insert_collection(&self, name: &str) -> Result<()>;
    /// Sets a collection's settings; its default vDisk is `default_vdisk_id`.
    fn update_collection(
        &self,
        name: &str,
        settings: &CollectionSettings,
        default_vdisk_id: Option<i64>,
    ) -> Result<()>;
    /// Turns auto-add off on every collection but `name`.
    fn clear_auto_add(&self, except: &str) -> Result<()>;
    /// Deletes a collection; its devices stay, in no collection.
    fn delete_collection(&self, collection_id: i64) -> Result<()>;
    /// How many devices the collection holds.
    fn collection_members(&self, collection_id: i64) -> Result<u64>;

    // devices
    /// The device with this MAC (when `key` parses as one) or else this name
    /// (`NotFound`).
    fn device(&self, key: &str) -> Result<Device>;
    /// Every device, by name.
    fn devices(&self) -> Result<Vec<Device>>;
    /// Adds a device (`Conflict` on a duplicate MAC or name).
    fn insert_device(
        &self,
        mac: Mac,
        name: &str,
        collection_id: Option<i64>,
        device_type: DeviceType,
        at: i64,
    ) -> Result<Device>;
    /// Renames a device (`Conflict` on a duplicate name).
    fn set_device_name(&self, device_id: i64, name: &str) -> Result<()>;
    /// Moves a device to a collection, or to none.
    fn set_device_collection(&self, device_id: i64, collection_id: Option<i64>) -> Result<()>;
    /// Sets a device's type.
    fn set_device_type(&self, device_id: i64, device_type: DeviceType) -> Result<()>;
    /// Enables or disables a device.
    fn set_device_enabled(&self, device_id: i64, enabled: bool) -> Result<()>;
    /// Deletes a device with its assignments, personality and boot.
    fn delete_device(&self, device_id: i64) -> Result<()>;

    // assignments
    /// A device's assignments, in order.
    fn assignments(&self, device_id: i64) -> Result<Vec<Assignment>>;
    /// Assigns a vDisk (last, until [`Queries::order_assignments`]) or changes the mode
    /// of its assignment.
    fn upsert_assignment(&self, device_id: i64, vdisk_id: i64, mode: Mode) -> Result<()>;
    /// Orders a device's assignments as `vdisks` lists them.
    fn order_assignments(&self, device_id: i64, vdisks: &[String]) -> Result<()>;
    /// Removes an assignment; false when there was none.
    fn delete_assignment(&self, device_id: i64, vdisk_id: i64) -> Result<bool>;
    /// Pins an assignment to a version, or unpins it; false when there is no such
    /// assignment.
    fn set_pin(&self, device_id: i64, vdisk_id: i64, version: Option<u32>) -> Result<bool>;

    // personality
    /// A device's personality as (key, value, secret), by key.
    fn personality(&self, device_id: i64) -> Result<Vec<(String, String, bool)>>;
    /// Bytes of keys and values a device's personality holds.
    fn personality_bytes(&self, device_id: i64) -> Result<u64>;
    /// Sets one personality value.
    fn insert_personality(
        &self,
        device_id: i64,
        key: &str,
        value: &str,
        secret: bool,
    ) -> Result<()>;
    /// Removes one personality value (if set).
    fn delete_personality(&self, device_id: i64, key: &str) -> Result<()>;

    // boots and attach secrets
    /// The device's current boot.
    fn boot(&self, device_id: i64, mac: Mac) -> Result<Option<Boot>>;
    /// Makes `boot` the device's current boot.
    fn put_boot(&self, device_id: i64, boot: &Boot) -> Result<()>;
    /// Records the address of boot `number` (a later boot's row is left alone).
    fn set_boot_address(&self, device_id: i64, number: u64, address: IpAddr) -> Result<()>;
    /// The device's attach secret, as stored.
    fn attach_secret(&self, device_id: i64) -> Result<Option<String>>;
    /// Sets the device's attach secret.
    fn set_attach_secret(&self, device_id: i64, secret: &str) -> Result<()>;

    // audit
    /// Appends a line to the audit log.
    fn append_audit(&self, line: &AuditLine<'_>) -> Result<()>;
    /// At most `limit` lines with ids below `before`, newest first.
    fn audit_page(&self, limit: u32, before: i64) -> Result<Vec<AuditEntry>>;
}
