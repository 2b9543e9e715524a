//! The store: a folder holding vDisk files and the SQLite database that records vDisks,
//! versions, devices, collections, assignments, personality and the audit log.
//!
//! Every change runs in one transaction together with its audit line, so a crash at any
//! point leaves either the whole change or none of it.
//!
//! `Store` holds the domain's rules (names, version states, limits, what the audit log
//! says); it reaches the database only through [`backend::Queries`], so the SQL lives
//! in one module (`sqlite.rs`) and another backend (PostgreSQL, for several servers
//! sharing one database) changes no caller.

mod backend;
mod boots;
pub(crate) mod collections;
pub(crate) mod devices;
pub(crate) mod names;
mod schema;
mod sqlite;
mod vdisks;

pub(crate) use vdisks::in_use;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use backend::{AuditLine, Backend, Queries};

use crate::error::{Error, Result};
use crate::model::AuditEntry;

/// The control-plane state of a provision server.
///
/// Not on the block path: sessions resolve what to open here once, then read images
/// without touching the store.
#[derive(Debug)]
pub struct Store {
    db: Box<dyn Backend>,
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
        let db = sqlite::Sqlite::open(&crate::layout::database(dir))?;
        Ok(Self::with_backend(Box::new(db), Some(dir.to_path_buf())))
    }

    /// A store that lives in memory only, for tests and embedders' experiments.
    pub fn in_memory() -> Result<Self> {
        Ok(Self::with_backend(
            Box::new(sqlite::Sqlite::in_memory()?),
            None,
        ))
    }

    fn with_backend(db: Box<dyn Backend>, dir: Option<PathBuf>) -> Self {
        Self {
            db,
            dir,
            actor: "system".to_owned(),
            auto_add: AutoAddLimits::default(),
            recent_auto_adds: Mutex::default(),
        }
    }

    /// Writes a consistent copy of the database to the new file `path` (see
    /// [`crate::backup_store`]).
    pub(crate) fn snapshot_database(&self, path: &Path) -> Result<()> {
        self.db.snapshot_into(path)
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
        self.read(|q| q.audit_page(limit, before.unwrap_or(i64::MAX)))
    }

    /// Runs `read` against one consistent view of the database.
    fn read<T>(&self, read: impl FnOnce(&dyn Queries) -> Result<T>) -> Result<T> {
        once(read, |f| self.db.read(f))
    }

    /// Runs `change` in one transaction, without an audit line (boots: the devices'
    /// doing, not an operator's).
    fn write<T>(&self, change: impl FnOnce(&dyn Queries) -> Result<T>) -> Result<T> {
        once(change, |f| self.db.write(f))
    }

    /// Runs `change` in one immediate transaction and records it in the audit log.
    fn change<T>(
        &self,
        action: &str,
        subject: &str,
        detail: &str,
        change: impl FnOnce(&dyn Queries) -> Result<T>,
    ) -> Result<T> {
        let value = self.write(|q| {
            let value = change(q)?;
            q.append_audit(&AuditLine {
                at: now(),
                actor: &self.actor,
                action,
                subject,
                detail,
            })?;
            Ok(value)
        })?;
        tracing::info!(actor = %self.actor, action, subject, detail, "store changed");
        Ok(value)
    }
}

/// Runs `f` through `run` (a backend's `read` or `write`, which takes an `FnMut` to
/// stay object-safe and calls it once), returning its value.
fn once<T>(
    f: impl FnOnce(&dyn Queries) -> Result<T>,
    run: impl FnOnce(&mut dyn FnMut(&dyn Queries) -> Result<()>) -> Result<()>,
) -> Result<T> {
    let mut f = Some(f);
    let mut value = None;
    run(&mut |q| {
        let f = f.take().expect("a backend runs a closure once");
        value = Some(f(q)?);
        Ok(())
    })?;
    Ok(value.expect("the backend ran the closure"))
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    /// The SQL lives in the backend (and the schema): every other file of the crate
    /// reaches the database through `backend::Queries`.
    #[test]
    fn sql_lives_in_the_backend_only() {
        fn walk(dir: &std::path::Path, files: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, files);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        walk(&src, &mut files);
        assert!(files.len() > 20, "{files:?}");
        let backend = [src.join("store/sqlite.rs"), src.join("store/schema.rs")];
        for file in files.iter().filter(|f| !backend.contains(f)) {
            let text = std::fs::read_to_string(file).unwrap();
            // Code, not the tests (this one names what it looks for).
            let text = text.split("#[cfg(test)]").next().unwrap_or_default();
            for sql in [
                "SELECT ",
                "INSERT INTO",
                "UPDATE ",
                "DELETE FROM",
                "rusqlite::",
            ] {
                let found = text
                    .lines()
                    .any(|line| line.contains(sql) && !line.trim_start().starts_with("//"));
                // The one error type names the SQLite error it wraps.
                let allowed = file.ends_with("error.rs") && sql == "rusqlite::";
                assert!(!found || allowed, "{sql:?} in {}", file.display());
            }
        }
    }
}
