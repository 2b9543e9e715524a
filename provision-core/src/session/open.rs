//! Opening a boot's session of a vDisk: joining it, reopening it, or resolving and
//! opening it for the first time.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock, Weak};
use std::time::SystemTime;

use nbd_proto::EndSignal;
use vhd::{Disk, Overlay, OverlayLimits};

use super::quota::Quota;
use super::stats::Counters;
use super::{BootDisk, Inner, Open, Session, SessionInfo, SessionMode, Transport, refused};
use crate::boot::Boot;
use crate::error::{Error, ErrorKind, Result};
use crate::file_lock::FileLock;
use crate::layout;
use crate::mac::Mac;
use crate::model::Device;

/// How long a reconnect waits for the boot's closing session of the same vDisk to
/// flush and give its file back.
const CLOSE_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// What this process had of a boot's session before this open.
struct OpenedBefore {
    /// The RAM write cache it kept.
    cache: Option<Arc<Overlay>>,
    /// No session of the vDisk was opened in this boot yet.
    first: bool,
    /// The boot began before this process started.
    restored: bool,
}

/// What a boot opens of a vDisk.
pub(super) struct Resolved {
    version: u32,
    mode: SessionMode,
    file: PathBuf,
}

impl Inner {
    /// Joins the boot's session of `vdisk`, reopens it, or opens it for the first time.
    pub(super) fn open_in_boot(
        self: &Arc<Self>,
        device: &Device,
        boot: &Boot,
        vdisk: &str,
        transport: Transport,
    ) -> Result<Arc<Session>> {
        let mac = device.mac;
        let (existing, resolved, cache, restored) = {
            let state = self.lock();
            let live = state
                .boots
                .get(&mac)
                .filter(|l| l.boot.number == boot.number)
                .ok_or_else(|| refused(format!("boot {} of {mac} has ended", boot.number)))?;
            match live.disks.get(vdisk) {
                Some(d) => (
                    d.session.upgrade(),
                    Some(Resolved {
                        version: d.version,
                        mode: d.mode,
                        file: d.file.clone(),
                    }),
                    d.cache.clone(),
                    live.restored,
                ),
                None => (None, None, None, live.restored),
            }
        };
        if let Some(session) = existing {
            return Ok(session);
        }
        let first = resolved.is_none();
        let resolved = match resolved {
            Some(r) => r,
            None => self.resolve(device, vdisk)?,
        };
        let cache_file = (resolved.mode == SessionMode::Standard && self.settings.durable_caches)
            .then(|| self.dir.join(layout::cache_file(mac, vdisk, boot.number)));
        let writer = match resolved.mode {
            SessionMode::Standard => cache_file.clone(),
            _ => Some(resolved.file.clone()),
        };
        if let (false, Some(file)) = (first, &writer) {
            // The boot's last session of this vDisk may be closing right now (its
            // connection just ended): it gives its file back in a moment.
            self.wait_for_writer(file);
        }
        let (open, cache) = self.open_disk(
            device,
            boot,
            vdisk,
            &resolved,
            OpenedBefore {
                cache,
                first,
                restored,
            },
            cache_file.as_deref(),
        )?;
        let info = SessionInfo {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            mac,
            device: device.name.clone(),
            boot: boot.number,
            vdisk: vdisk.to_owned(),
            version: resolved.version,
            mode: resolved.mode,
            transport,
            opened_at: SystemTime::now(),
        };
        let counters = Arc::new(Counters::default());
        let session = Arc::new(Session {
            size: open.disk.size(),
            read_only: open.disk.is_read_only(),
            disk: RwLock::new(Some(open)),
            counters: counters.clone(),
            inner: Arc::clone(self),
            writer,
            end: EndSignal::default(),
            info: info.clone(),
        });
        let mut state = self.lock();
        state.live.insert(info.id, (info.clone(), counters));
        if let Some(live) = state.boots.get_mut(&mac) {
            let entry = live.disks.entry(vdisk.to_owned()).or_insert(BootDisk {
                session: Weak::new(),
                version: resolved.version,
                mode: resolved.mode,
                file: resolved.file,
                cache: None,
                cache_file: None,
                detached_at: None,
            });
            entry.session = Arc::downgrade(&session);
            entry.detached_at = None;
            entry.cache = cache;
            entry.cache_file = cache_file;
        }
        drop(state);
        tracing::info!(id = info.id, mac = %mac, device = %info.device, boot = boot.number,
            vdisk, version = info.version, mode = ?info.mode, transport = transport.as_str(), "session opened");
        Ok(session)
    }

    /// The disk of a boot's session: its write cache (durable or RAM; refused when it
    /// is gone, never replaced by a fresh one under a running device), or the image it
    /// writes (a private disk, a maintenance version).
    fn open_disk(
        &self,
        device: &Device,
        boot: &Boot,
        vdisk: &str,
        resolved: &Resolved,
        before: OpenedBefore,
        cache_file: Option<&Path>,
    ) -> Result<(Open, Option<Arc<Overlay>>)> {
        let mac = device.mac;
        let lost = |why: &str| {
            refused(format!(
                "device {} ({mac}): the write cache of boot {} on `{vdisk}` {why}; the device \
                 must boot again",
                device.name, boot.number
            ))
        };
        let OpenedBefore {
            cache,
            first,
            restored,
        } = before;
        Ok(match (resolved.mode, cache_file) {
            (SessionMode::Standard, Some(file)) => {
                // Made durably at the boot's first open: a boot without one never
                // attached (also when it began before a restart), unless it expired.
                if !file.exists() {
                    if first && !layout::expired_mark(file).exists() {
                        self.new_disk_cache(file, &resolved.file)?;
                    } else {
                        return Err(lost(
                            "expired (the device was away longer than the grace period)",
                        ));
                    }
                }
                let (image, lock) = self.open_exclusive(file, &device.name, mac)?;
                let quota = self.settings.cache_quota_bytes;
                let open = Open {
                    disk: Arc::new(Quota::new(image, quota)),
                    _lock: Some(lock),
                };
                (open, None)
            }
            (SessionMode::Standard, None) => {
                let cache = match (cache, first, restored) {
                    (Some(cache), _, _) => cache,
                    (None, true, false) => self.new_cache(&resolved.file)?,
                    (None, true, true) => {
                        return Err(lost(
                            "was lost when provisiond restarted (RAM write caches do not survive restarts)",
                        ));
                    }
                    (None, false, _) => {
                        return Err(lost(
                            "expired (the device was away longer than the grace period)",
                        ));
                    }
                };
                let open = Open {
                    disk: cache.clone(),
                    _lock: None,
                };
                (open, Some(cache))
            }
            _ => {
                let (image, lock) = self.open_exclusive(&resolved.file, &device.name, mac)?;
                // Devices let in by auto-add write private disks within the cache quota.
                let disk: Arc<dyn Disk> =
                    if resolved.mode == SessionMode::Private && self.auto_added(device)? {
                        Arc::new(Quota::new(image, self.settings.cache_quota_bytes))
                    } else {
                        image
                    };
                let open = Open {
                    disk,
                    _lock: Some(lock),
                };
                (open, None)
            }
        })
    }

    /// What `device` opens of `vdisk` in a boot: version, mode and file, as
    /// [`crate::resolve::resolve_disk`] decides from its assignment as it is now. The one
    /// effect is explicit: a private disk is created on its first use.
    pub(super) fn resolve(&self, device: &Device, vdisk: &str) -> Result<Resolved> {
        let plan = self.store.boot_facts(device.mac)?.disk(device, vdisk)?;
        let file = self.dir.join(&plan.file);
        let file = match plan.mode {
            SessionMode::Private => self.private_disk(device.mac, vdisk, &file)?,
            SessionMode::Standard | SessionMode::Maintenance => file,
        };
        Ok(Resolved {
            version: plan.version,
            mode: plan.mode,
            file,
        })
    }

    /// A fresh write cache over the version in `file`.
    pub(super) fn new_cache(&self, file: &Path) -> Result<Arc<Overlay>> {
        let base: Arc<dyn Disk> = self.bases.get(file)?;
        let limits = OverlayLimits {
            ram_bytes: self.settings.cache_ram_bytes,
            spill_dir: Some(self.dir.join(layout::CACHE_DIR)),
            quota_bytes: Some(self.settings.cache_quota_bytes),
        };
        Ok(Arc::new(Overlay::new(base, limits)?))
    }

    /// Waits (at most [`CLOSE_TIME`]) until no session of this process writes `file`.
    fn wait_for_writer(&self, file: &Path) {
        let deadline = std::time::Instant::now() + CLOSE_TIME;
        while self.lock().writers.contains(file) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Opens `file` read-write for one session at a time, in this process and any
    /// other (the lock goes with the session's disk).
    pub(super) fn open_exclusive(
        &self,
        file: &Path,
        device: &str,
        mac: Mac,
    ) -> Result<(Arc<vhd::Image>, FileLock)> {
        if !self.lock().writers.insert(file.to_path_buf()) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{} is already open read-write by another session; {device} ({mac}) \
                     must wait",
                    file.display(),
                ),
            ));
        }
        let opened = FileLock::exclusive(file, "a session of another process").and_then(|lock| {
            let image = self.bases.options(false).open(file)?;
            Ok((Arc::new(image), lock))
        });
        if opened.is_err() {
            self.lock().writers.remove(file);
        }
        opened
    }

    /// True when `device` belongs to the collection that adds unknown devices.
    pub(super) fn auto_added(&self, device: &Device) -> Result<bool> {
        match &device.collection {
            Some(name) => Ok(self.store.collection(name)?.auto_add),
            None => Ok(false),
        }
    }

    /// Creates the durable write cache `file` over the version in `parent`.
    pub(super) fn new_disk_cache(&self, file: &Path, parent: &Path) -> Result<()> {
        let relative = file
            .strip_prefix(&self.dir)
            .map_err(|_| Error::new(ErrorKind::Invalid, "a cache outside the store"))?;
        crate::images::write_new(&self.dir, &relative.to_string_lossy(), |tmp| {
            crate::images::create_child(tmp, parent)
        })?;
        Ok(())
    }

    /// The private disk of `mac` for `vdisk`, created over `parent` on first use.
    pub(super) fn private_disk(&self, mac: Mac, vdisk: &str, parent: &Path) -> Result<PathBuf> {
        let relative = layout::private_disk(mac, vdisk);
        let path = self.dir.join(&relative);
        if path.exists() {
            return Ok(path);
        }
        crate::images::write_new(&self.dir, &relative, |tmp| {
            crate::images::create_child(tmp, parent)
        })
    }
}
