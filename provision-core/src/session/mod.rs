//! Sessions: one boot of one device using one vDisk, and the disk it sees.
//!
//! - **standard**: the shared read-only chain of the resolved version plus the
//!   device's own write cache (RAM, then a spill file in the store, with a quota: a
//!   full cache fails the write with "no space", never hangs). The cache belongs to the
//!   device's boot: a reconnect with the boot's token within the grace period finds it
//!   again; the device's next boot drops it.
//! - **private**: a persistent per-device differencing image over the assigned
//!   version, written by one session at a time.
//! - **maintenance**: a maintenance device opens the newest version, while it is in
//!   the maintenance state, read-write and exclusively.
//!
//! Sessions belong to [boots](crate::Boot). A connection presents the device's current
//! boot token (or its attach secret) and joins that boot's session of the vDisk; the
//! vDisk's version and mode are resolved once per boot, at its first session, never
//! inherited from an earlier boot. [`Sessions::start_boot`] ends every session of the
//! previous boot (requests in flight finish, its connections are closed, its write
//! caches dropped) before the new boot's first session can open. A write cache this
//! process no longer has (it expired, or provisiond restarted since the boot began) is
//! never replaced by a fresh one under a running device: the reconnect is refused and
//! the device must boot again.
//!
//! Reads never take a lock shared between sessions: bases are shared, memory-mapped
//! images.

mod bases;
mod boots;
mod disk;
mod open;
mod quota;
mod stats;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime};

use vhd::{Disk, Overlay};

use crate::boot::{Boot, BootCause, Token};
use crate::error::{Error, ErrorKind, Result};
use crate::file_lock::FileLock;
use crate::layout;
use crate::mac::Mac;
use crate::resolve;
use crate::store::Store;
use bases::Bases;
pub use disk::Session;
use stats::Counters;
pub use stats::SessionStats;

/// Limits of standard-mode write caches and how long they outlive a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    /// Bytes of each device's write cache kept in RAM before spilling to a file.
    pub cache_ram_bytes: u64,
    /// Most bytes one device's write cache may hold; past it writes fail with no space.
    /// The private disks of devices in the auto-add collection are held to it too.
    pub cache_quota_bytes: u64,
    /// How long a write cache waits for its device to reconnect.
    pub grace: Duration,
    /// Keep write caches on disk (a differencing VHD per boot in the store's `cache`
    /// folder, see `quota.rs`) so they survive restarts of this process; `false`
    /// keeps them in RAM (spilling to a file), faster but lost at a restart, after which
    /// the device's reconnect is refused and it must boot again. `cache_ram_bytes`
    /// applies to RAM caches only.
    pub durable_caches: bool,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            cache_ram_bytes: 64 << 20,
            cache_quota_bytes: 4 << 30,
            grace: Duration::from_secs(120),
            durable_caches: true,
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

/// The block protocol that opened a session (later connections of the boot may use
/// another: the session is the boot's, not the connection's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// NBD (a Linux initramfs, a hypervisor's `nbd://` drive).
    Nbd,
    /// iSCSI (iPXE `sanboot`, an OS initiator from the iBFT, a hypervisor).
    Iscsi,
}

impl Transport {
    /// `nbd` or `iscsi`: the word listings, metrics and the API use.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Nbd => "nbd",
            Transport::Iscsi => "iscsi",
        }
    }
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
    /// The number of the device's boot the session belongs to.
    pub boot: u64,
    /// The vDisk's name.
    pub vdisk: String,
    /// The version the session opened (it stays on it until it ends).
    pub version: u32,
    /// How it writes.
    pub mode: SessionMode,
    /// The protocol of the connection that opened it.
    pub transport: Transport,
    /// When it opened.
    pub opened_at: SystemTime,
}

/// What starting a boot did to the previous one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBoot {
    /// The boot now current.
    pub boot: Boot,
    /// Sessions of the previous boot that were ended (their connections closed).
    pub sessions_ended: usize,
    /// Write caches of the previous boot that were dropped.
    pub caches_dropped: usize,
}

/// Opens sessions for devices' boots and keeps their write caches between connections.
#[derive(Debug, Clone)]
pub struct Sessions {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    store: Arc<Store>,
    dir: PathBuf,
    settings: SessionSettings,
    bases: Arc<Bases>,
    next_id: AtomicU64,
    /// Held while a session opens or a boot starts, so a boot cannot start between a
    /// session's check of its token and its registration.
    opening: Mutex<()>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The current boot of each device seen since the server started.
    boots: HashMap<Mac, LiveBoot>,
    writers: HashSet<PathBuf>,
    live: HashMap<u64, (SessionInfo, Arc<Counters>)>,
    /// Counts of ended sessions, by device and vDisk, with the device's name.
    ended: HashMap<(Mac, String), (String, SessionStats)>,
}

#[derive(Debug)]
struct LiveBoot {
    boot: Boot,
    /// The boot began before this process started: its write caches are gone.
    restored: bool,
    /// By vDisk name.
    disks: HashMap<String, BootDisk>,
}

/// What one boot opened of one vDisk, resolved once for the whole boot.
#[derive(Debug)]
struct BootDisk {
    session: Weak<Session>,
    version: u32,
    mode: SessionMode,
    /// The version's file (standard, maintenance) or the private disk.
    file: PathBuf,
    /// The RAM write cache (standard mode) while it lives.
    cache: Option<Arc<Overlay>>,
    /// The durable write cache's file (standard mode), while it lives.
    cache_file: Option<PathBuf>,
    detached_at: Option<Instant>,
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

fn refused(message: String) -> Error {
    Error::new(ErrorKind::Refused, message)
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
        for sub in [layout::CACHE_DIR, layout::PRIVATE_DIR] {
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
                opening: Mutex::new(()),
                state: Mutex::new(State::default()),
            }),
        })
    }

    /// The device with `mac` (which must be in the store) boots anew: a new boot with a
    /// fresh token replaces its current one, whose sessions are ended (requests in
    /// flight finish, connections are closed, private disks let go) and write caches
    /// dropped, all before this returns.
    pub fn start_boot(
        &self,
        mac: Mac,
        cause: BootCause,
        address: Option<IpAddr>,
    ) -> Result<NewBoot> {
        let opening = self.inner.opening();
        self.inner.start_boot(&opening, mac, cause, address)
    }

    /// The current boot of the device with `mac`, if it ever booted.
    pub fn current_boot(&self, mac: Mac) -> Result<Option<Boot>> {
        if let Some(live) = self.inner.lock().boots.get(&mac) {
            return Ok(Some(live.boot.clone()));
        }
        self.inner.store.current_boot(mac)
    }

    /// Records the address the boot exchange of boot `number` showed for the device.
    pub fn record_boot_address(&self, mac: Mac, number: u64, address: IpAddr) -> Result<()> {
        self.inner.store.record_boot_address(mac, number, address)?;
        if let Some(live) = self.inner.lock().boots.get_mut(&mac)
            && live.boot.number == number
        {
            live.boot.address = Some(address);
        }
        Ok(())
    }

    /// The session of `vdisk` for the device with `mac` in the boot `credential`
    /// names: the device's current boot token, or its attach secret (which joins the
    /// current boot while it has a session or a write cache, else starts a new boot).
    /// Connections of one boot to one vDisk share one session.
    ///
    /// Refused when the device is unknown or disabled, the credential is neither, the
    /// vDisk is not assigned, or the boot's write cache is gone (expired, or lost to a
    /// restart of this process).
    pub fn open(&self, mac: Mac, vdisk: &str, credential: &Token) -> Result<Arc<Session>> {
        self.open_over(mac, vdisk, credential, Transport::Nbd)
    }

    /// [`Sessions::open`] for a connection of `transport` (recorded when it opens the
    /// session).
    pub fn open_over(
        &self,
        mac: Mac,
        vdisk: &str,
        credential: &Token,
        transport: Transport,
    ) -> Result<Arc<Session>> {
        let inner = &self.inner;
        let opening = inner.opening();
        let device = inner.store.device_with_mac(mac)?;
        let device = resolve::admit(mac, device.as_ref())?;
        let boot = inner.boot_for(&opening, device, credential)?;
        inner.open_in_boot(device, &boot, vdisk, transport)
    }

    /// Drops the write caches whose device has been away longer than the grace period
    /// at `now` (a reconnect of that boot is refused from then on). Returns how many
    /// were dropped.
    pub fn expire(&self, now: Instant) -> usize {
        let grace = self.inner.settings.grace;
        let mut state = self.inner.lock();
        let mut dropped = 0;
        for live in state.boots.values_mut() {
            for disk in live.disks.values_mut() {
                let away = disk
                    .detached_at
                    .is_some_and(|at| now.saturating_duration_since(at) > grace);
                if !away || disk.session.strong_count() > 0 {
                    continue;
                }
                if disk.cache.take().is_some() {
                    dropped += 1;
                }
                if let Some(file) = disk.cache_file.take() {
                    expire_cache_file(&file);
                    dropped += 1;
                }
            }
        }
        dropped
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
        for (mac, live) in &state.boots {
            for (vdisk, disk) in &live.disks {
                if let Some(bytes) = disk.cache_bytes() {
                    slot(&mut usage, *mac, vdisk).cache_bytes = bytes;
                }
            }
        }
        let mut list: Vec<_> = usage.into_values().collect();
        list.sort_by(|a, b| (a.mac, &a.vdisk).cmp(&(b.mac, &b.vdisk)));
        list
    }

    /// Bytes held by the write cache of `mac`'s current boot on `vdisk`, if it has one.
    pub fn cache_usage(&self, mac: Mac, vdisk: &str) -> Option<u64> {
        let state = self.inner.lock();
        state.boots.get(&mac)?.disks.get(vdisk)?.cache_bytes()
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

/// Proof that [`Inner::opening`] is held.
type Opening<'a> = MutexGuard<'a, ()>;

/// Deletes an expired durable write cache, leaving its mark.
fn expire_cache_file(file: &Path) {
    let result =
        std::fs::write(layout::expired_mark(file), b"").and_then(|()| std::fs::remove_file(file));
    if let Err(e) = result
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(file = %file.display(), error = %e, "cannot delete a write cache");
    }
}

impl BootDisk {
    /// Bytes its write cache holds, if it has one.
    fn cache_bytes(&self) -> Option<u64> {
        if let Some(cache) = &self.cache {
            return Some(cache.used_bytes());
        }
        let file = self.cache_file.as_ref()?;
        Some(std::fs::metadata(file).map_or(0, |m| m.len()))
    }
}

/// A session's disk, with the lock on its file while it writes one.
pub(crate) struct Open {
    pub(crate) disk: Arc<dyn Disk>,
    _lock: Option<FileLock>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn opening(&self) -> Opening<'_> {
        self.opening.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    /// Forgets a session whose last connection let go; `release` lets go of its file
    /// too (an ended session already has).
    fn detach(&self, session: &Session, release: bool) {
        let info = &session.info;
        let mut state = self.lock();
        state.live.remove(&info.id);
        let (device, stats) = state
            .ended
            .entry((info.mac, info.vdisk.clone()))
            .or_default();
        info.device.clone_into(device);
        stats.add(&session.counters.snapshot());
        if let Some(live) = state.boots.get_mut(&info.mac)
            && live.boot.number == info.boot
            && let Some(disk) = live.disks.get_mut(&info.vdisk)
            && std::ptr::eq(disk.session.as_ptr(), session)
        {
            disk.detached_at = Some(Instant::now());
        }
        if release && let Some(writer) = &session.writer {
            state.writers.remove(writer);
        }
    }
}
