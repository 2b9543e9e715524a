//! Sessions: one device's use of one vDisk from boot to reboot, and the disk it sees.
//!
//! - **standard**: the shared read-only chain of the resolved version plus the
//!   device's own write cache (RAM, then a spill file in the store, with a quota: a
//!   full cache fails the write with "no space", never hangs). The cache belongs to the
//!   device's boot: a reconnect within the grace period finds it again; a new boot
//!   ([`Sessions::new_boot`]), the grace period running out ([`Sessions::expire`]) or
//!   a reset drops it.
//! - **private**: a persistent per-device differencing image over the assigned
//!   version, written by one session at a time.
//! - **maintenance**: a maintenance device opens the newest version, while it is in
//!   the maintenance state, read-write and exclusively.
//!
//! Reads never take a lock shared between sessions: bases are shared, memory-mapped
//! images.

mod bases;
mod stats;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use vhd::{Disk, Extent, Overlay, OverlayLimits};

use crate::error::{Error, ErrorKind, Result};
use crate::mac::Mac;
use crate::model::{DeviceType, Mode, VersionState};
use crate::resolve::resolve_version;
use crate::store::Store;
use bases::Bases;
use stats::Counters;
pub use stats::SessionStats;

/// Folder of the store holding write-cache spill files.
pub const CACHE_DIR: &str = "cache";
/// Folder of the store holding private per-device disks.
pub const PRIVATE_DIR: &str = "private";

/// Limits of standard-mode write caches and how long they outlive a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    /// Bytes of each device's write cache kept in RAM before spilling to a file.
    pub cache_ram_bytes: u64,
    /// Most bytes one device's write cache may hold; past it writes fail with no space.
    pub cache_quota_bytes: u64,
    /// How long a write cache waits for its device to reconnect.
    pub grace: Duration,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            cache_ram_bytes: 64 << 20,
            cache_quota_bytes: 4 << 30,
            grace: Duration::from_secs(120),
        }
    }
}

/// How a session writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionMode {
    /// Shared chain plus a per-boot write cache.
    Standard,
    /// A persistent per-device differencing image.
    Private,
    /// The newest version itself, read-write, exclusively.
    Maintenance,
}

/// What a session is, for listings and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// Unique while the server runs.
    pub id: u64,
    /// The device's MAC.
    pub mac: Mac,
    /// The device's name.
    pub device: String,
    /// The vDisk's name.
    pub vdisk: String,
    /// The version the session opened (it stays on it until it ends).
    pub version: u32,
    /// How it writes.
    pub mode: SessionMode,
    /// When it opened.
    pub opened_at: SystemTime,
}

/// Opens sessions for devices and keeps their write caches between connections.
#[derive(Debug, Clone)]
pub struct Sessions {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<Store>,
    dir: PathBuf,
    settings: SessionSettings,
    bases: Arc<Bases>,
    next_id: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    caches: HashMap<(Mac, String), CacheEntry>,
    writers: HashSet<PathBuf>,
    live: HashMap<u64, (SessionInfo, Arc<Counters>)>,
    /// Counts of ended sessions, by device and vDisk, with the device's name.
    ended: HashMap<(Mac, String), (String, SessionStats)>,
}

/// What one device did on one vDisk since the server started, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// The device's MAC.
    pub mac: Mac,
    /// The device's name (of its newest session).
    pub device: String,
    /// The vDisk's name.
    pub vdisk: String,
    /// Sessions open now.
    pub open_sessions: u64,
    /// Requests and bytes, ended sessions included.
    pub stats: SessionStats,
    /// Bytes held by its write cache now (standard mode).
    pub cache_bytes: u64,
}

#[derive(Debug)]
struct CacheEntry {
    version: u32,
    disk: Arc<Overlay>,
    attached: usize,
    detached_at: Option<Instant>,
}

/// An open session: the disk one device sees of one vDisk. Dropping it detaches the
/// device (a standard-mode write cache then waits out the grace period).
pub struct Session {
    info: SessionInfo,
    disk: Arc<dyn Disk>,
    counters: Arc<Counters>,
    inner: Arc<Inner>,
    cache_key: Option<(Mac, String)>,
    writer: Option<PathBuf>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// Sessions over the vDisks of `store`, which must live in a folder.
    pub fn new(store: Arc<Store>, settings: SessionSettings) -> Result<Self> {
        let dir = store
            .dir()
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Invalid,
                    "sessions need a store in a folder, not in memory",
                )
            })?
            .to_path_buf();
        for sub in [CACHE_DIR, PRIVATE_DIR] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).map_err(|source| Error::Io {
                path: path.display().to_string(),
                source,
            })?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                bases: Bases::new(&dir),
                store,
                dir,
                settings,
                next_id: AtomicU64::new(1),
                state: Mutex::new(State::default()),
            }),
        })
    }

    /// Opens `vdisk` (or the device's default vDisk) for the device with `mac`.
    ///
    /// Refused when the device is unknown (and auto-add is off), disabled, or does not
    /// have the vDisk assigned.
    pub fn open(&self, mac: Mac, vdisk: Option<&str>) -> Result<Session> {
        let inner = &self.inner;
        let device = inner.store.device_for_boot(mac)?;
        let assignments = inner.store.assignments(&mac.to_string())?;
        let assignment = match vdisk {
            Some(name) => assignments.iter().find(|a| a.vdisk == name),
            None => assignments.first(),
        }
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Refused,
                match vdisk {
                    Some(name) => format!(
                        "vDisk `{name}` is not assigned to device {} ({mac})",
                        device.name
                    ),
                    None => format!("device {} ({mac}) has no vDisk assigned", device.name),
                },
            )
        })?;
        let versions = inner.store.versions(&assignment.vdisk)?;
        let number = resolve_version(&versions, device.device_type, assignment.pinned_version)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Conflict,
                    format!("vDisk `{}` has no bootable version", assignment.vdisk),
                )
            })?;
        let version = versions
            .iter()
            .find(|v| v.number == number)
            .expect("resolve_version picks an existing version");
        let file = inner.dir.join(&version.file);

        let maintenance = device.device_type == DeviceType::Maintenance
            && assignment.pinned_version.is_none()
            && version.state == VersionState::Maintenance;
        let mode = if maintenance {
            SessionMode::Maintenance
        } else if assignment.mode == Mode::Private {
            SessionMode::Private
        } else {
            SessionMode::Standard
        };
        let info = SessionInfo {
            id: inner.next_id.fetch_add(1, Ordering::Relaxed),
            mac,
            device: device.name.clone(),
            vdisk: assignment.vdisk.clone(),
            version: number,
            mode,
            opened_at: SystemTime::now(),
        };
        let (disk, cache_key, writer) = match mode {
            SessionMode::Standard => {
                let key = (mac, assignment.vdisk.clone());
                (inner.attach_cache(&key, number, &file)?, Some(key), None)
            }
            SessionMode::Maintenance => {
                let (disk, writer) = inner.open_exclusive(&file, &info)?;
                (disk, None, Some(writer))
            }
            SessionMode::Private => {
                let private = inner.private_disk(mac, &assignment.vdisk, &file)?;
                let (disk, writer) = inner.open_exclusive(&private, &info)?;
                (disk, None, Some(writer))
            }
        };
        tracing::info!(id = info.id, mac = %mac, device = %info.device, vdisk = %info.vdisk, version = number, mode = ?mode, "session opened");
        let counters = Arc::new(Counters::default());
        inner
            .lock()
            .live
            .insert(info.id, (info.clone(), counters.clone()));
        Ok(Session {
            info,
            disk,
            counters,
            inner: Arc::clone(inner),
            cache_key,
            writer,
        })
    }

    /// The device with `mac` boots anew: its standard-mode write caches are dropped,
    /// so its next session starts clean. Returns how many caches were dropped.
    pub fn new_boot(&self, mac: Mac) -> usize {
        let mut state = self.inner.lock();
        let before = state.caches.len();
        state.caches.retain(|(m, _), _| *m != mac);
        let dropped = before - state.caches.len();
        if dropped > 0 {
            tracing::info!(mac = %mac, dropped, "new boot: write caches dropped");
        }
        dropped
    }

    /// Drops the write caches whose device has been away longer than the grace period
    /// at `now`. Returns how many were dropped.
    pub fn expire(&self, now: Instant) -> usize {
        let grace = self.inner.settings.grace;
        let mut state = self.inner.lock();
        let before = state.caches.len();
        state.caches.retain(|_, entry| {
            entry.attached > 0
                || entry
                    .detached_at
                    .is_none_or(|at| now.saturating_duration_since(at) <= grace)
        });
        before - state.caches.len()
    }

    /// The open sessions, by id.
    pub fn list(&self) -> Vec<SessionInfo> {
        let mut live: Vec<_> = self
            .inner
            .lock()
            .live
            .values()
            .map(|(info, _)| info.clone())
            .collect();
        live.sort_by_key(|s| s.id);
        live
    }

    /// What each device did on each vDisk since the server started, by MAC and vDisk.
    pub fn usage(&self) -> Vec<Usage> {
        fn slot<'a>(
            usage: &'a mut HashMap<(Mac, String), Usage>,
            mac: Mac,
            vdisk: &str,
        ) -> &'a mut Usage {
            usage
                .entry((mac, vdisk.to_owned()))
                .or_insert_with(|| Usage {
                    mac,
                    device: String::new(),
                    vdisk: vdisk.to_owned(),
                    open_sessions: 0,
                    stats: SessionStats::default(),
                    cache_bytes: 0,
                })
        }
        let state = self.inner.lock();
        let mut usage = HashMap::new();
        for ((mac, vdisk), (device, stats)) in &state.ended {
            let u = slot(&mut usage, *mac, vdisk);
            device.clone_into(&mut u.device);
            u.stats.add(stats);
        }
        for (info, counters) in state.live.values() {
            let u = slot(&mut usage, info.mac, &info.vdisk);
            info.device.clone_into(&mut u.device);
            u.open_sessions += 1;
            u.stats.add(&counters.snapshot());
        }
        for ((mac, vdisk), cache) in &state.caches {
            slot(&mut usage, *mac, vdisk).cache_bytes = cache.disk.used_bytes();
        }
        let mut list: Vec<_> = usage.into_values().collect();
        list.sort_by(|a, b| (a.mac, &a.vdisk).cmp(&(b.mac, &b.vdisk)));
        list
    }

    /// Bytes held by the write cache of `mac`'s session on `vdisk`, if it has one.
    pub fn cache_usage(&self, mac: Mac, vdisk: &str) -> Option<u64> {
        let state = self.inner.lock();
        state
            .caches
            .get(&(mac, vdisk.to_owned()))
            .map(|e| e.disk.used_bytes())
    }

    /// True while a session (or a child image) still reads the file `file` (relative to
    /// the store folder): it must not be deleted yet.
    pub fn file_in_use(&self, file: &str) -> bool {
        let path = self.inner.dir.join(file);
        self.inner.bases.in_use(&path) || self.inner.lock().writers.contains(&path)
    }

    /// Deletes the files of the store that no version names (a removed version, a
    /// removed vDisk's files, what a crash left) unless a session of these sessions or
    /// a private disk still reads them; see [`crate::clean_leftover_files`].
    pub fn clean_leftover_files(&self) -> Result<crate::Cleanup> {
        crate::images::clean_leftover_files(&self.inner.store, &|file| self.file_in_use(file))
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The device's write cache over version `number`, reusing one from the same boot.
    fn attach_cache(&self, key: &(Mac, String), number: u32, file: &Path) -> Result<Arc<dyn Disk>> {
        {
            let mut state = self.lock();
            if let Some(entry) = state.caches.get_mut(key) {
                let fresh = entry
                    .detached_at
                    .is_none_or(|at| at.elapsed() <= self.settings.grace);
                if entry.version == number && fresh {
                    entry.attached += 1;
                    entry.detached_at = None;
                    return Ok(entry.disk.clone());
                }
            }
        }
        let base: Arc<dyn Disk> = self.bases.get(file)?;
        let limits = OverlayLimits {
            ram_bytes: self.settings.cache_ram_bytes,
            spill_dir: Some(self.dir.join(CACHE_DIR)),
            quota_bytes: Some(self.settings.cache_quota_bytes),
        };
        let disk = Arc::new(Overlay::new(base, limits)?);
        let entry = CacheEntry {
            version: number,
            disk: disk.clone(),
            attached: 1,
            detached_at: None,
        };
        self.lock().caches.insert(key.clone(), entry);
        Ok(disk)
    }

    /// Opens `file` read-write for one session at a time.
    fn open_exclusive(&self, file: &Path, info: &SessionInfo) -> Result<(Arc<dyn Disk>, PathBuf)> {
        if !self.lock().writers.insert(file.to_path_buf()) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{} is already open read-write by another session; {} ({}) must wait",
                    file.display(),
                    info.device,
                    info.mac
                ),
            ));
        }
        match self.bases.options(false).open(file) {
            Ok(image) => Ok((Arc::new(image), file.to_path_buf())),
            Err(e) => {
                self.lock().writers.remove(file);
                Err(e.into())
            }
        }
    }

    /// The private disk of `mac` for `vdisk`, created over `parent` on first use.
    fn private_disk(&self, mac: Mac, vdisk: &str, parent: &Path) -> Result<PathBuf> {
        let relative = format!(
            "{PRIVATE_DIR}/{}/{vdisk}.vhd",
            mac.to_string().replace(':', "")
        );
        let path = self.dir.join(&relative);
        if path.exists() {
            return Ok(path);
        }
        crate::images::write_new(&self.dir, &relative, |tmp| {
            crate::images::create_child(tmp, parent)
        })
    }

    fn detach(&self, session: &Session) {
        let mut state = self.lock();
        state.live.remove(&session.info.id);
        let key = (session.info.mac, session.info.vdisk.clone());
        let (device, stats) = state.ended.entry(key).or_default();
        session.info.device.clone_into(device);
        stats.add(&session.counters.snapshot());
        if let Some(key) = &session.cache_key
            && let Some(entry) = state.caches.get_mut(key)
            && Arc::ptr_eq(&(entry.disk.clone() as Arc<dyn Disk>), &session.disk)
        {
            entry.attached = entry.attached.saturating_sub(1);
            if entry.attached == 0 {
                entry.detached_at = Some(Instant::now());
            }
        }
        if let Some(writer) = &session.writer {
            state.writers.remove(writer);
        }
    }
}

impl Session {
    /// What this session is.
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.writer.is_some()
            && let Err(e) = self.disk.flush()
        {
            tracing::error!(id = self.info.id, error = %e, "flushing a closing session failed");
        }
        self.inner.detach(self);
        tracing::info!(id = self.info.id, device = %self.info.device, "session closed");
    }
}

impl Disk for Session {
    fn size(&self) -> u64 {
        self.disk.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> vhd::Result<()> {
        let len = buf.len() as u64;
        self.counters.read(len, self.disk.read_at(buf, offset))
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> vhd::Result<()> {
        self.counters
            .write(buf.len() as u64, self.disk.write_at(buf, offset))
    }
    fn flush(&self) -> vhd::Result<()> {
        self.disk.flush()
    }
    fn is_read_only(&self) -> bool {
        self.disk.is_read_only()
    }
    fn allocation(&self, offset: u64, len: u64) -> vhd::Result<Vec<Extent>> {
        self.disk.allocation(offset, len)
    }
    /// Counted as a read: a server sends what this locates instead of reading it.
    fn locate(&self, offset: u64, len: u64) -> vhd::Result<Option<Vec<vhd::Located>>> {
        match self.disk.locate(offset, len) {
            Ok(None) => Ok(None),
            other => self.counters.read(len, other),
        }
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> vhd::Result<()> {
        self.counters
            .write(len, self.disk.write_zeroes(offset, len))
    }
    fn trim(&self, offset: u64, len: u64) -> vhd::Result<()> {
        self.counters.write(0, self.disk.trim(offset, len))
    }
}
