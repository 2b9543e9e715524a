//! The database schema and its migrations.
//!
//! Kept portable to PostgreSQL: only INTEGER, TEXT and BLOB columns, times as seconds
//! since the Unix epoch, enumerations as lowercase text with CHECK constraints, no
//! SQLite-only functions in queries. (`INTEGER PRIMARY KEY` becomes an identity column
//! there.)

/// Each entry upgrades the schema by one version; `PRAGMA user_version` records how many
/// have run. Append new migrations, never edit old ones.
pub(crate) const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE vdisks (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    size        INTEGER NOT NULL CHECK (size > 0),
    description TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL
);
CREATE TABLE versions (
    vdisk_id    INTEGER NOT NULL REFERENCES vdisks(id) ON DELETE CASCADE,
    number      INTEGER NOT NULL CHECK (number >= 0),
    file        TEXT NOT NULL UNIQUE,
    state       TEXT NOT NULL CHECK (state IN ('maintenance', 'test', 'production', 'superseded')),
    note        TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (vdisk_id, number)
);
CREATE TABLE collections (
    id                  INTEGER PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE,
    auto_add            INTEGER NOT NULL DEFAULT 0,
    default_device_type TEXT NOT NULL DEFAULT 'production'
                        CHECK (default_device_type IN ('production', 'test', 'maintenance')),
    default_vdisk_id    INTEGER REFERENCES vdisks(id) ON DELETE SET NULL,
    default_mode        TEXT NOT NULL DEFAULT 'standard' CHECK (default_mode IN ('standard', 'private'))
);
CREATE TABLE devices (
    id            INTEGER PRIMARY KEY,
    mac           TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL UNIQUE,
    collection_id INTEGER REFERENCES collections(id) ON DELETE SET NULL,
    device_type   TEXT NOT NULL CHECK (device_type IN ('production', 'test', 'maintenance')),
    enabled       INTEGER NOT NULL DEFAULT 1,
    created_at    INTEGER NOT NULL
);
CREATE TABLE assignments (
    device_id      INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    vdisk_id       INTEGER NOT NULL REFERENCES vdisks(id),
    position       INTEGER NOT NULL,
    mode           TEXT NOT NULL CHECK (mode IN ('standard', 'private')),
    pinned_version INTEGER,
    PRIMARY KEY (device_id, vdisk_id)
);
CREATE TABLE personality (
    device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (device_id, key)
);
CREATE TABLE audit (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail  TEXT NOT NULL
);
",
    // 2: boots (one row per device: its current boot) and hypervisor attach secrets.
    r"
CREATE TABLE boots (
    device_id  INTEGER PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    number     INTEGER NOT NULL CHECK (number > 0),
    token      TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    cause      TEXT NOT NULL CHECK (cause IN ('dhcp', 'script', 'reset', 'attach')),
    address    TEXT
);
ALTER TABLE devices ADD COLUMN attach_secret TEXT;
",
    // 3: personality values marked secret (hidden from listings and the audit log).
    r"
ALTER TABLE personality ADD COLUMN secret INTEGER NOT NULL DEFAULT 0;
",
];
