//! Collections: groups of devices with defaults, and the auto-add switch.

use super::Store;
use super::backend::Queries;
use super::names::{NameOf, check_name};
use crate::error::Result;
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

/// Applies `settings` to the collection `name` (auto-add on turns it off on the others).
fn apply(q: &dyn Queries, name: &str, settings: &CollectionSettings) -> Result<()> {
    let vdisk_id = match &settings.default_vdisk {
        Some(v) => Some(q.vdisk(v)?.id),
        None => None,
    };
    if settings.auto_add {
        q.clear_auto_add(name)?;
    }
    q.update_collection(name, settings, vdisk_id)
}

impl Store {
    /// Adds a collection.
    pub fn add_collection(&self, name: &str, settings: &CollectionSettings) -> Result<Collection> {
        check_name(NameOf::Collection, name)?;
        self.change("collection.add", name, &format!("{settings:?}"), |q| {
            q.insert_collection(name)?;
            apply(q, name, settings)?;
            q.collection(name)
        })
    }

    /// Changes a collection's settings.
    pub fn set_collection(&self, name: &str, settings: &CollectionSettings) -> Result<Collection> {
        self.change("collection.set", name, &format!("{settings:?}"), |q| {
            q.collection(name)?;
            apply(q, name, settings)?;
            q.collection(name)
        })
    }

    /// Removes the collection called `name`; its devices stay, in no collection.
    pub fn remove_collection(&self, name: &str) -> Result<Collection> {
        self.change("collection.remove", name, "", |q| {
            let collection = q.collection(name)?;
            q.delete_collection(collection.id)?;
            Ok(collection)
        })
    }

    /// The collection called `name`.
    pub fn collection(&self, name: &str) -> Result<Collection> {
        self.read(|q| q.collection(name))
    }

    /// Every collection, by name.
    pub fn collections(&self) -> Result<Vec<Collection>> {
        self.read(|q| q.collections())
    }
}
