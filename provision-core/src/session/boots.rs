//! Starting boots, and which boot a credential opens.

use std::collections::HashMap;
use std::net::IpAddr;

use super::{Inner, LiveBoot, NewBoot, Opening, SessionMode, refused};
use crate::boot::{Boot, BootCause, Token};
use crate::error::Result;
use crate::layout;
use crate::mac::Mac;
use crate::model::Device;

impl Inner {
    /// See [`super::Sessions::start_boot`]; the caller holds `opening`.
    pub(super) fn start_boot(
        &self,
        _opening: &Opening<'_>,
        mac: Mac,
        cause: BootCause,
        address: Option<IpAddr>,
    ) -> Result<NewBoot> {
        let boot = self.store.start_boot(mac, cause, address)?;
        let live = LiveBoot {
            boot: boot.clone(),
            restored: false,
            disks: HashMap::new(),
        };
        let previous = self.lock().boots.insert(mac, live);
        let (mut sessions_ended, mut caches_dropped) = (0, 0);
        if let Some(previous) = previous {
            // Outside the state lock: ending waits for requests in flight, and the
            // last reference to a session detaches it, which takes the lock.
            let sessions: Vec<_> = previous
                .disks
                .values()
                .filter_map(|d| d.session.upgrade())
                .collect();
            for session in &sessions {
                session.end();
            }
            sessions_ended = sessions.len();
            caches_dropped = previous
                .disks
                .values()
                .filter(|d| d.cache.is_some() || d.cache_file.is_some())
                .count();
        }
        // Durable caches of earlier boots (also those a restart left behind).
        let folder = self.dir.join(layout::cache_folder(mac));
        if let Err(e) = std::fs::remove_dir_all(&folder)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(folder = %folder.display(), error = %e, "cannot delete old write caches");
        }
        tracing::info!(mac = %mac, boot = boot.number, cause = %cause, address = ?address,
            sessions_ended, caches_dropped, "new boot");
        Ok(NewBoot {
            boot,
            sessions_ended,
            caches_dropped,
        })
    }

    /// The boot `credential` opens for `device`.
    pub(super) fn boot_for(
        &self,
        opening: &Opening<'_>,
        device: &Device,
        credential: &Token,
    ) -> Result<Boot> {
        let mac = device.mac;
        let current = self.lock().boots.get(&mac).map(|b| b.boot.clone());
        let current = match current {
            Some(boot) => Some(boot),
            None => {
                let stored = self.store.current_boot(mac)?;
                if let Some(boot) = &stored {
                    let live = LiveBoot {
                        boot: boot.clone(),
                        restored: true,
                        disks: HashMap::new(),
                    };
                    self.lock().boots.insert(mac, live);
                }
                stored
            }
        };
        if let Some(boot) = current.as_ref().filter(|b| b.token == *credential) {
            return Ok(boot.clone());
        }
        if self.store.attach_secret(&mac.to_string())? == Some(*credential) {
            return match current.filter(|_| self.boot_in_use(mac)) {
                Some(boot) => Ok(boot),
                None => Ok(self.start_boot(opening, mac, BootCause::Attach, None)?.boot),
            };
        }
        Err(refused(format!(
            "device {} ({mac}): the export's token is neither its current boot's token nor \
             its attach secret (a device that has booted again since, or a client that is \
             not that device)",
            device.name
        )))
    }

    /// True while the device's current boot has a session, or a write cache or private
    /// disk waiting for a reconnect; for a boot that began before this process, while a
    /// durable write cache of it was written within the grace period.
    pub(super) fn boot_in_use(&self, mac: Mac) -> bool {
        let grace = self.settings.grace;
        let (restored, number) = {
            let state = self.lock();
            let Some(live) = state.boots.get(&mac) else {
                return false;
            };
            let waiting = live.disks.values().any(|d| {
                d.session.strong_count() > 0
                    || d.detached_at.is_some_and(|at| at.elapsed() <= grace)
                        && (d.cache.is_some()
                            || d.cache_file.is_some()
                            || d.mode != SessionMode::Standard)
            });
            if waiting {
                return true;
            }
            (live.restored, live.boot.number)
        };
        restored
            && std::fs::read_dir(self.dir.join(layout::cache_folder(mac))).is_ok_and(|files| {
                files.flatten().any(|file| {
                    layout::is_cache_of_boot(&file.file_name().to_string_lossy(), number)
                        && file
                            .metadata()
                            .and_then(|m| m.modified())
                            .is_ok_and(|at| at.elapsed().is_ok_and(|age| age <= grace))
                })
            })
    }
}
