//! The SQLite backend of the store: the only module that writes SQL.
//!
//! One connection behind a mutex, WAL journal with `synchronous=FULL` for a store in a
//! folder, foreign keys on, a 5 s busy timeout (another process, such as the CLI, may
//! hold the write lock briefly). Migrations (`schema.rs`) run at open.

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::backend::{AuditLine, Backend, Queries};
use super::collections::CollectionSettings;
use super::schema;
use crate::boot::Boot;
use crate::error::{Error, ErrorKind, Result};
use crate::mac::Mac;
use crate::model::{
    Assignment, AuditEntry, Collection, Device, DeviceType, Mode, VDisk, Version, VersionState,
};

/// A store's SQLite database.
#[derive(Debug)]
pub(crate) struct Sqlite {
    db: Mutex<Connection>,
}

impl Sqlite {
    /// Opens (creating if needed) the database file `path`.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        Self::init(conn)
    }

    /// A database in memory only.
    pub(crate) fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self> {
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let done: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let tx = conn.transaction()?;
        for (i, migration) in (1i64..).zip(schema::MIGRATIONS).skip(done.max(0) as usize) {
            tx.execute_batch(migration)?;
            tx.pragma_update(None, "user_version", i)?;
        }
        tx.commit()?;
        Ok(Self {
            db: Mutex::new(conn),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction half-applied
        // (SQLite rolls back an unfinished one), so the connection stays usable.
        self.db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Backend for Sqlite {
    fn read(&self, read: &mut dyn FnMut(&dyn Queries) -> Result<()>) -> Result<()> {
        read(&Sql(&self.lock()))
    }

    fn write(&self, change: &mut dyn FnMut(&dyn Queries) -> Result<()>) -> Result<()> {
        let mut db = self.lock();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        change(&Sql(&tx))?;
        tx.commit()?;
        Ok(())
    }

    fn snapshot_into(&self, path: &Path) -> Result<()> {
        // One read transaction: the copy is the database as of its start.
        let target = path.to_str().ok_or_else(|| {
            Error::new(
                ErrorKind::Invalid,
                format!("{} is not a UTF-8 path", path.display()),
            )
        })?;
        self.lock().execute("VACUUM INTO ?1", [target])?;
        Ok(())
    }
}

/// Queries on one connection (or transaction).
struct Sql<'a>(&'a Connection);

/// Maps "no row" to a NotFound error naming the object.
fn found<T>(row: rusqlite::Result<T>, what: &str, name: &str) -> Result<T> {
    match row {
        Err(rusqlite::Error::QueryReturnedNoRows) => Err(Error::not_found(what, name)),
        other => Ok(other?),
    }
}

/// Maps a UNIQUE constraint failure to a Conflict error naming the object.
fn unique<T>(result: rusqlite::Result<T>, what: &str, name: &str) -> Result<T> {
    match result {
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(Error::new(
                ErrorKind::Conflict,
                format!("{what} `{name}` already exists"),
            ))
        }
        other => Ok(other?),
    }
}

/// A text column that must parse (an enumeration, a MAC).
fn parsed<T: std::str::FromStr<Err = Error>>(r: &Row<'_>, i: usize) -> rusqlite::Result<T> {
    r.get::<_, String>(i)?.parse().map_err(|e: Error| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    })
}

fn vdisk_row(r: &Row<'_>) -> rusqlite::Result<VDisk> {
    Ok(VDisk {
        id: r.get(0)?,
        name: r.get(1)?,
        size: r.get::<_, i64>(2)? as u64,
        description: r.get(3)?,
    })
}

fn version_row(r: &Row<'_>) -> rusqlite::Result<Version> {
    Ok(Version {
        vdisk_id: r.get(0)?,
        number: r.get(1)?,
        file: r.get(2)?,
        state: parsed(r, 3)?,
        note: r.get(4)?,
        created_at: r.get(5)?,
    })
}

fn collection_row(r: &Row<'_>) -> rusqlite::Result<Collection> {
    Ok(Collection {
        id: r.get(0)?,
        name: r.get(1)?,
        auto_add: r.get(2)?,
        default_device_type: parsed(r, 3)?,
        default_vdisk: r.get(4)?,
        default_mode: parsed(r, 5)?,
    })
}

fn device_row(r: &Row<'_>) -> rusqlite::Result<Device> {
    Ok(Device {
        id: r.get(0)?,
        mac: parsed(r, 1)?,
        name: r.get(2)?,
        collection: r.get(3)?,
        device_type: parsed(r, 4)?,
        enabled: r.get(5)?,
    })
}

fn boot_row(mac: Mac, r: &Row<'_>) -> rusqlite::Result<Boot> {
    Ok(Boot {
        mac,
        number: r.get::<_, i64>(0)? as u64,
        token: parsed(r, 1)?,
        started_at: r.get(2)?,
        cause: parsed(r, 3)?,
        address: r.get::<_, Option<String>>(4)?.and_then(|a| a.parse().ok()),
    })
}

const VDISK_COLUMNS: &str = "id, name, size, description";
const VERSION_COLUMNS: &str = "vdisk_id, number, file, state, note, created_at";
const COLLECTION_COLUMNS: &str =
    "c.id, c.name, c.auto_add, c.default_device_type, v.name, c.default_mode";
const COLLECTION_FROM: &str = "collections c LEFT JOIN vdisks v ON v.id = c.default_vdisk_id";
const DEVICE_COLUMNS: &str = "d.id, d.mac, d.name, c.name, d.device_type, d.enabled";
const DEVICE_FROM: &str = "devices d LEFT JOIN collections c ON c.id = d.collection_id";

impl Sql<'_> {
    fn all<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        row: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        let mut stmt = self.0.prepare(sql)?;
        let rows = stmt.query_map(params, row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl Queries for Sql<'_> {
    fn vdisk(&self, name: &str) -> Result<VDisk> {
        found(
            self.0.query_row(
                &format!("SELECT {VDISK_COLUMNS} FROM vdisks WHERE name = ?1"),
                [name],
                vdisk_row,
            ),
            "vDisk",
            name,
        )
    }

    fn vdisks(&self) -> Result<Vec<VDisk>> {
        self.all(
            &format!("SELECT {VDISK_COLUMNS} FROM vdisks ORDER BY name"),
            [],
            vdisk_row,
        )
    }

    fn insert_vdisk(&self, name: &str, size: u64, description: &str, at: i64) -> Result<VDisk> {
        let size = i64::try_from(size).map_err(|_| {
            Error::new(
                ErrorKind::Invalid,
                format!("vDisk size {size} is out of range"),
            )
        })?;
        unique(
            self.0.execute(
                "INSERT INTO vdisks (name, size, description, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![name, size, description, at],
            ),
            "vDisk",
            name,
        )?;
        self.vdisk(name)
    }

    fn delete_vdisk(&self, vdisk_id: i64) -> Result<()> {
        self.0
            .execute("DELETE FROM vdisks WHERE id = ?1", [vdisk_id])?;
        Ok(())
    }

    fn vdisk_users(&self, vdisk_id: i64) -> Result<u64> {
        let n: i64 = self.0.query_row(
            "SELECT COUNT(*) FROM assignments WHERE vdisk_id = ?1",
            [vdisk_id],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    fn versions(&self, vdisk_id: i64) -> Result<Vec<Version>> {
        self.all(
            &format!("SELECT {VERSION_COLUMNS} FROM versions WHERE vdisk_id = ?1 ORDER BY number"),
            [vdisk_id],
            version_row,
        )
    }

    fn insert_version(&self, v: &Version) -> Result<()> {
        unique(
            self.0.execute(
                "INSERT INTO versions (vdisk_id, number, file, state, note, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    v.vdisk_id,
                    v.number,
                    v.file,
                    v.state.as_str(),
                    v.note,
                    v.created_at
                ],
            ),
            "version file",
            &v.file,
        )?;
        Ok(())
    }

    fn set_version_state(&self, vdisk_id: i64, number: u32, state: VersionState) -> Result<()> {
        self.0.execute(
            "UPDATE versions SET state = ?3 WHERE vdisk_id = ?1 AND number = ?2",
            params![vdisk_id, number, state.as_str()],
        )?;
        Ok(())
    }

    fn set_version_file(&self, vdisk_id: i64, number: u32, file: &str) -> Result<()> {
        unique(
            self.0.execute(
                "UPDATE versions SET file = ?3 WHERE vdisk_id = ?1 AND number = ?2",
                params![vdisk_id, number, file],
            ),
            "version file",
            file,
        )?;
        Ok(())
    }

    fn delete_version(&self, vdisk_id: i64, number: u32) -> Result<()> {
        self.0.execute(
            "DELETE FROM versions WHERE vdisk_id = ?1 AND number = ?2",
            params![vdisk_id, number],
        )?;
        Ok(())
    }

    fn collection(&self, name: &str) -> Result<Collection> {
        found(
            self.0.query_row(
                &format!("SELECT {COLLECTION_COLUMNS} FROM {COLLECTION_FROM} WHERE c.name = ?1"),
                [name],
                collection_row,
            ),
            "collection",
            name,
        )
    }

    fn collections(&self) -> Result<Vec<Collection>> {
        self.all(
            &format!("SELECT {COLLECTION_COLUMNS} FROM {COLLECTION_FROM} ORDER BY c.name"),
            [],
            collection_row,
        )
    }

    fn auto_add_collection(&self) -> Result<Option<Collection>> {
        Ok(self
            .0
            .query_row(
                &format!("SELECT {COLLECTION_COLUMNS} FROM {COLLECTION_FROM} WHERE c.auto_add = 1"),
                [],
                collection_row,
            )
            .optional()?)
    }

    fn insert_collection(&self, name: &str) -> Result<()> {
        unique(
            self.0
                .execute("INSERT INTO collections (name) VALUES (?1)", [name]),
            "collection",
            name,
        )?;
        Ok(())
    }

    fn update_collection(
        &self,
        name: &str,
        settings: &CollectionSettings,
        default_vdisk_id: Option<i64>,
    ) -> Result<()> {
        self.0.execute(
            "UPDATE collections SET auto_add = ?2, default_device_type = ?3, \
             default_vdisk_id = ?4, default_mode = ?5 WHERE name = ?1",
            params![
                name,
                settings.auto_add,
                settings.default_device_type.as_str(),
                default_vdisk_id,
                settings.default_mode.as_str()
            ],
        )?;
        Ok(())
    }

    fn clear_auto_add(&self, except: &str) -> Result<()> {
        self.0.execute(
            "UPDATE collections SET auto_add = 0 WHERE name <> ?1",
            [except],
        )?;
        Ok(())
    }

    fn delete_collection(&self, collection_id: i64) -> Result<()> {
        self.0
            .execute("DELETE FROM collections WHERE id = ?1", [collection_id])?;
        Ok(())
    }

    fn collection_members(&self, collection_id: i64) -> Result<u64> {
        let n: i64 = self.0.query_row(
            "SELECT COUNT(*) FROM devices WHERE collection_id = ?1",
            [collection_id],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    fn device(&self, key: &str) -> Result<Device> {
        let (column, value) = match key.parse::<Mac>() {
            Ok(mac) => ("d.mac", mac.to_string()),
            Err(_) => ("d.name", key.to_owned()),
        };
        found(
            self.0.query_row(
                &format!("SELECT {DEVICE_COLUMNS} FROM {DEVICE_FROM} WHERE {column} = ?1"),
                [value],
                device_row,
            ),
            "device",
            key,
        )
    }

    fn devices(&self) -> Result<Vec<Device>> {
        self.all(
            &format!("SELECT {DEVICE_COLUMNS} FROM {DEVICE_FROM} ORDER BY d.name"),
            [],
            device_row,
        )
    }

    fn insert_device(
        &self,
        mac: Mac,
        name: &str,
        collection_id: Option<i64>,
        device_type: DeviceType,
        at: i64,
    ) -> Result<Device> {
        unique(
            self.0.execute(
                "INSERT INTO devices (mac, name, collection_id, device_type, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    mac.to_string(),
                    name,
                    collection_id,
                    device_type.as_str(),
                    at
                ],
            ),
            "device",
            &format!("{name} ({mac})"),
        )?;
        self.device(&mac.to_string())
    }

    fn set_device_name(&self, device_id: i64, name: &str) -> Result<()> {
        unique(
            self.0.execute(
                "UPDATE devices SET name = ?2 WHERE id = ?1",
                params![device_id, name],
            ),
            "device",
            name,
        )?;
        Ok(())
    }

    fn set_device_collection(&self, device_id: i64, collection_id: Option<i64>) -> Result<()> {
        self.0.execute(
            "UPDATE devices SET collection_id = ?2 WHERE id = ?1",
            params![device_id, collection_id],
        )?;
        Ok(())
    }

    fn set_device_type(&self, device_id: i64, device_type: DeviceType) -> Result<()> {
        self.0.execute(
            "UPDATE devices SET device_type = ?2 WHERE id = ?1",
            params![device_id, device_type.as_str()],
        )?;
        Ok(())
    }

    fn set_device_enabled(&self, device_id: i64, enabled: bool) -> Result<()> {
        self.0.execute(
            "UPDATE devices SET enabled = ?2 WHERE id = ?1",
            params![device_id, enabled],
        )?;
        Ok(())
    }

    fn delete_device(&self, device_id: i64) -> Result<()> {
        self.0
            .execute("DELETE FROM devices WHERE id = ?1", [device_id])?;
        Ok(())
    }

    fn assignments(&self, device_id: i64) -> Result<Vec<Assignment>> {
        let rows = self.all(
            "SELECT v.name, a.mode, a.pinned_version FROM assignments a \
             JOIN vdisks v ON v.id = a.vdisk_id WHERE a.device_id = ?1 ORDER BY a.position",
            [device_id],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?)),
        )?;
        rows.into_iter()
            .map(|(vdisk, mode, pinned_version)| {
                Ok(Assignment {
                    vdisk,
                    mode: mode.parse()?,
                    pinned_version,
                })
            })
            .collect()
    }

    fn upsert_assignment(&self, device_id: i64, vdisk_id: i64, mode: Mode) -> Result<()> {
        self.0.execute(
            "INSERT INTO assignments (device_id, vdisk_id, position, mode) VALUES (?1, ?2, 0, ?3) \
             ON CONFLICT (device_id, vdisk_id) DO UPDATE SET mode = excluded.mode",
            params![device_id, vdisk_id, mode.as_str()],
        )?;
        Ok(())
    }

    fn order_assignments(&self, device_id: i64, vdisks: &[String]) -> Result<()> {
        for (position, vdisk) in vdisks.iter().enumerate() {
            self.0.execute(
                "UPDATE assignments SET position = ?3 WHERE device_id = ?1 \
                 AND vdisk_id = (SELECT id FROM vdisks WHERE name = ?2)",
                params![device_id, vdisk, position as i64],
            )?;
        }
        Ok(())
    }

    fn delete_assignment(&self, device_id: i64, vdisk_id: i64) -> Result<bool> {
        let removed = self.0.execute(
            "DELETE FROM assignments WHERE device_id = ?1 AND vdisk_id = ?2",
            params![device_id, vdisk_id],
        )?;
        Ok(removed > 0)
    }

    fn set_pin(&self, device_id: i64, vdisk_id: i64, version: Option<u32>) -> Result<bool> {
        let changed = self.0.execute(
            "UPDATE assignments SET pinned_version = ?3 WHERE device_id = ?1 AND vdisk_id = ?2",
            params![device_id, vdisk_id, version],
        )?;
        Ok(changed > 0)
    }

    fn personality(&self, device_id: i64) -> Result<Vec<(String, String, bool)>> {
        self.all(
            "SELECT key, value, secret FROM personality WHERE device_id = ?1 ORDER BY key",
            [device_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
    }

    fn personality_bytes(&self, device_id: i64) -> Result<u64> {
        let used: i64 = self.0.query_row(
            "SELECT COALESCE(SUM(LENGTH(CAST(key AS BLOB)) + LENGTH(CAST(value AS BLOB))), 0) \
             FROM personality WHERE device_id = ?1",
            [device_id],
            |r| r.get(0),
        )?;
        Ok(used as u64)
    }

    fn insert_personality(
        &self,
        device_id: i64,
        key: &str,
        value: &str,
        secret: bool,
    ) -> Result<()> {
        self.0.execute(
            "INSERT INTO personality (device_id, key, value, secret) VALUES (?1, ?2, ?3, ?4)",
            params![device_id, key, value, secret],
        )?;
        Ok(())
    }

    fn delete_personality(&self, device_id: i64, key: &str) -> Result<()> {
        self.0.execute(
            "DELETE FROM personality WHERE device_id = ?1 AND key = ?2",
            params![device_id, key],
        )?;
        Ok(())
    }

    fn boot(&self, device_id: i64, mac: Mac) -> Result<Option<Boot>> {
        Ok(self
            .0
            .query_row(
                "SELECT number, token, started_at, cause, address FROM boots WHERE device_id = ?1",
                [device_id],
                |r| boot_row(mac, r),
            )
            .optional()?)
    }

    fn put_boot(&self, device_id: i64, boot: &Boot) -> Result<()> {
        self.0.execute(
            "INSERT INTO boots (device_id, number, token, started_at, cause, address)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (device_id) DO UPDATE SET number = excluded.number,
                 token = excluded.token, started_at = excluded.started_at,
                 cause = excluded.cause, address = excluded.address",
            params![
                device_id,
                boot.number as i64,
                boot.token.to_string(),
                boot.started_at,
                boot.cause.as_str(),
                boot.address.map(|a| a.to_string())
            ],
        )?;
        Ok(())
    }

    fn set_boot_address(&self, device_id: i64, number: u64, address: IpAddr) -> Result<()> {
        self.0.execute(
            "UPDATE boots SET address = ?3 WHERE device_id = ?1 AND number = ?2",
            params![device_id, number as i64, address.to_string()],
        )?;
        Ok(())
    }

    fn attach_secret(&self, device_id: i64) -> Result<Option<String>> {
        Ok(self.0.query_row(
            "SELECT attach_secret FROM devices WHERE id = ?1",
            [device_id],
            |r| r.get(0),
        )?)
    }

    fn set_attach_secret(&self, device_id: i64, secret: &str) -> Result<()> {
        self.0.execute(
            "UPDATE devices SET attach_secret = ?2 WHERE id = ?1",
            params![device_id, secret],
        )?;
        Ok(())
    }

    fn append_audit(&self, line: &AuditLine<'_>) -> Result<()> {
        self.0.execute(
            "INSERT INTO audit (at, actor, action, subject, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            (line.at, line.actor, line.action, line.subject, line.detail),
        )?;
        Ok(())
    }

    fn audit_page(&self, limit: u32, before: i64) -> Result<Vec<AuditEntry>> {
        self.all(
            "SELECT id, at, actor, action, subject, detail FROM audit WHERE id < ?2 \
             ORDER BY id DESC LIMIT ?1",
            params![limit, before],
            |r| {
                Ok(AuditEntry {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    subject: r.get(4)?,
                    detail: r.get(5)?,
                })
            },
        )
    }
}
