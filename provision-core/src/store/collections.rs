//! Collections: groups of devices with defaults, and the auto-add switch.

use rusqlite::{OptionalExtension, Row, params};

use super::names::{NameOf, check_name};
use super::vdisks::vdisk_in;
use super::{Store, found, unique};
use crate::error::{Error, Result};
use crate::model::{Collection, DeviceType, Mode};

/// The settings of a collection, as given to [`Store::add_collection`] and
/// [`Store::set_collection`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionSettings {
    /// Add unknown devices that boot to this collection (turns it off on the others).
    pub auto_add: bool,
    /// Device type of devices added to it.
    pub default_device_type: DeviceType,
    /// vDisk assigned to devices auto-added to it.
    pub default_vdisk: Option<String>,
    /// Mode of that assignment.
    pub default_mode: Mode,
}

impl Default for CollectionSettings {
    fn default() -> Self {
        Self {
            auto_add: false,
            default_device_type: DeviceType::Production,
            default_vdisk: None,
            default_mode: Mode::Standard,
        }
    }
}

const COLUMNS: &str = "c.id, c.name, c.auto_add, c.default_device_type, v.name, c.default_mode";
const FROM: &str = "collections c LEFT JOIN vdisks v ON v.id = c.default_vdisk_id";

fn collection_row(r: &Row<'_>) -> rusqlite::Result<Collection> {
    let text = |i: usize| -> rusqlite::Result<String> { r.get(i) };
    let parse_err = |i, e: Error| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    };
    Ok(Collection {
        id: r.get(0)?,
        name: r.get(1)?,
        auto_add: r.get(2)?,
        default_device_type: text(3)?.parse().map_err(|e| parse_err(3, e))?,
        default_vdisk: r.get(4)?,
        default_mode: text(5)?.parse().map_err(|e| parse_err(5, e))?,
    })
}

pub(crate) fn collection_in(db: &rusqlite::Connection, name: &str) -> Result<Collection> {
    found(
        db.query_row(
            &format!("SELECT {COLUMNS} FROM {FROM} WHERE c.name = ?1"),
            [name],
            collection_row,
        ),
        "collection",
        name,
    )
}

pub(crate) fn auto_add_collection(db: &rusqlite::Connection) -> Result<Option<Collection>> {
    Ok(db
        .query_row(
            &format!("SELECT {COLUMNS} FROM {FROM} WHERE c.auto_add = 1"),
            [],
            collection_row,
        )
        .optional()?)
}

fn apply(tx: &rusqlite::Connection, name: &str, settings: &CollectionSettings) -> Result<()> {
    let vdisk_id = match &settings.default_vdisk {
        Some(v) => Some(vdisk_in(tx, v)?.id),
        None => None,
    };
    if settings.auto_add {
        tx.execute(
            "UPDATE collections SET auto_add = 0 WHERE name <> ?1",
            [name],
        )?;
    }
    tx.execute(
        "UPDATE collections SET auto_add = ?2, default_device_type = ?3, default_vdisk_id = ?4, default_mode = ?5 WHERE name = ?1",
        params![
            name,
            settings.auto_add,
            settings.default_device_type.as_str(),
            vdisk_id,
            settings.default_mode.as_str()
        ],
    )?;
    Ok(())
}

impl Store {
    /// Adds a collection.
    pub fn add_collection(&self, name: &str, settings: &CollectionSettings) -> Result<Collection> {
        check_name(NameOf::Collection, name)?;
        self.change("collection.add", name, &format!("{settings:?}"), |tx| {
            unique(
                tx.execute("INSERT INTO collections (name) VALUES (?1)", [name]),
                "collection",
                name,
            )?;
            apply(tx, name, settings)?;
            collection_in(tx, name)
        })
    }

    /// Changes a collection's settings.
    pub fn set_collection(&self, name: &str, settings: &CollectionSettings) -> Result<Collection> {
        self.change("collection.set", name, &format!("{settings:?}"), |tx| {
            collection_in(tx, name)?;
            apply(tx, name, settings)?;
            collection_in(tx, name)
        })
    }

    /// Removes the collection called `name`; its devices stay, in no collection.
    pub fn remove_collection(&self, name: &str) -> Result<Collection> {
        self.change("collection.remove", name, "", |tx| {
            let collection = collection_in(tx, name)?;
            tx.execute("DELETE FROM collections WHERE id = ?1", [collection.id])?;
            Ok(collection)
        })
    }

    /// The collection called `name`.
    pub fn collection(&self, name: &str) -> Result<Collection> {
        collection_in(&self.lock(), name)
    }

    /// Every collection, by name.
    pub fn collections(&self) -> Result<Vec<Collection>> {
        let db = self.lock();
        let mut stmt = db.prepare(&format!("SELECT {COLUMNS} FROM {FROM} ORDER BY c.name"))?;
        let rows = stmt.query_map([], collection_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
