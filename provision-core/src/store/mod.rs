//! The store: a folder holding vDisk files and the SQLite database that records vDisks,
//! versions, devices, collections, assignments, personality and the audit log.
//!
//! Every change runs in one transaction together with its audit line, so a crash at any
//! point leaves either the whole change or none of it.

mod boots;
pub(crate) mod collections;
pub(crate) mod devices;
pub(crate) mod names;
mod schema;
mod vdisks;

pub(crate) use vdisks::in_use;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::error::{Error, Result};
use crate::model::AuditEntry;

/// The control-plane state of a provision server.
///
/// Not on the block path: sessions resolve what to open here once, then read images
/// without touching the store.
#[derive(Debug)]
pub struct Store {
    db: Mutex<Connection>,
    dir: Option<PathBuf>,
    actor: String,
    auto_add: AutoAddLimits,
    /// When the auto-adds of the last minute happened.
    recent_auto_adds: Mutex<std::collections::VecDeque<std::time::Instant>>,
}

/// Bounds on adding unknown devices automatically, so a flood of made-up MACs on the
/// boot network cannot fill the store (and the disk, with their private disks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoAddLimits {
    /// Devices added in any one minute, across collections.
    pub per_minute: u32,
    /// Devices an auto-add collection may hold; past it unknown devices are refused.
    pub max_devices: u32,
}

impl Default for AutoAddLimits {
    /// 60 a minute, 1000 devices per collection.
    fn default() -> Self {
        Self {
            per_minute: 60,
            max_devices: 1000,
        }
    }
}

impl Store {
    /// Opens (creating if needed) the store in folder `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let conn = Connection::open(crate::layout::database(dir))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        Self::init(conn, Some(dir.to_path_buf()))
    }

    /// A store that lives in memory only, for tests and embedders' experiments.
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?, None)
    }

    fn init(mut conn: Connection, dir: Option<PathBuf>) -> Result<Self> {
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
            dir,
            actor: "system".to_owned(),
            auto_add: AutoAddLimits::default(),
            recent_auto_adds: Mutex::default(),
        })
    }

    /// The same store, recording `actor` as the author of changes in the audit log.
    pub fn with_actor(mut self, actor: &str) -> Self {
        actor.clone_into(&mut self.actor);
        self
    }

    /// The same store, adding unknown devices within `limits`.
    pub fn with_auto_add_limits(mut self, limits: AutoAddLimits) -> Self {
        self.auto_add = limits;
        self
    }

    /// The store's folder (`None` for an in-memory store).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The newest `limit` audit lines, newest first.
    pub fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>> {
        self.audit_page(limit, None)
    }

    /// At most `limit` audit lines older than the line numbered `before` (the newest
    /// when `None`), newest first: a page of the log; the next page starts before the
    /// last line's [`AuditEntry::id`].
    pub fn audit_page(&self, limit: u32, before: Option<i64>) -> Result<Vec<AuditEntry>> {
        let db = self.lock();
        let mut stmt = db.prepare(
            "SELECT id, at, actor, action, subject, detail FROM audit WHERE id < ?2 \
             ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(rusqlite::params![limit, before.unwrap_or(i64::MAX)], |r| {
            Ok(AuditEntry {
                id: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                subject: r.get(4)?,
                detail: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction half-applied
        // (SQLite rolls back an unfinished one), so the connection stays usable.
        self.db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `change` in one immediate transaction and records it in the audit log.
    fn change<T>(
        &self,
        action: &str,
        subject: &str,
        detail: &str,
        change: impl FnOnce(&Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut db = self.lock();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = change(&tx)?;
        tx.execute(
            "INSERT INTO audit (at, actor, action, subject, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            (now(), &self.actor, action, subject, detail),
        )?;
        tx.commit()?;
        tracing::info!(actor = %self.actor, action, subject, detail, "store changed");
        Ok(value)
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Maps "no row" to a NotFound error naming the object.
pub(crate) fn found<T>(row: rusqlite::Result<T>, what: &str, name: &str) -> Result<T> {
    match row {
        Err(rusqlite::Error::QueryReturnedNoRows) => Err(Error::not_found(what, name)),
        other => Ok(other?),
    }
}

/// Maps a UNIQUE constraint failure to a Conflict error naming the object.
pub(crate) fn unique<T>(result: rusqlite::Result<T>, what: &str, name: &str) -> Result<T> {
    match result {
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(Error::new(
                crate::error::ErrorKind::Conflict,
                format!("{what} `{name}` already exists"),
            ))
        }
        other => Ok(other?),
    }
}
