//! What a device boots: the one place that decides it, as pure functions of the store's
//! records (no I/O, no writes), used by sessions and by every adapter.
//!
//! ```text
//!   device record? ── none ───────────────▶ Refusal::UnknownDevice
//!        │ disabled ──────────────────────▶ Refusal::Disabled
//!        ▼
//!   assignments ─── none ─────────────────▶ Refusal::Unassigned (the script says so)
//!        │ one: boots it; several: a menu, the first is the default
//!        ▼ per assigned vDisk
//!   version = resolve_version(versions, device type, pin) ── none ─▶ Refusal::NoVersion
//!   mode    = maintenance  (maintenance device, no pin, that version in maintenance)
//!           | private      (assigned in private mode)
//!           | standard
//! ```
//!
//! The adapters read the facts ([`Store::boot_facts`](crate::Store::boot_facts)) and ask
//! [`BootFacts::plan`]; sessions ask [`admit`] and [`resolve_disk`] for the one vDisk a
//! connection names. What happens because of a decision (auto-adding an unknown
//! device, starting a boot, creating a private disk) is the caller's explicit call.

use std::fmt;

use crate::error::{Error, ErrorKind};
use crate::mac::Mac;
use crate::model::{Assignment, Device, DeviceType, Mode, Version, VersionState};
use crate::session::SessionMode;

/// Why a device boots nothing (or not the vDisk it asked for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No device has this MAC (an auto-add collection may add it: the caller's call).
    UnknownDevice(Mac),
    /// The device is disabled.
    Disabled {
        /// Its name.
        device: String,
        /// Its MAC.
        mac: Mac,
    },
    /// The vDisk (`Some`), or any vDisk (`None`), is not assigned to the device.
    Unassigned {
        /// Its name.
        device: String,
        /// Its MAC.
        mac: Mac,
        /// The vDisk asked for.
        vdisk: Option<String>,
    },
    /// The vDisk has no version this device may boot.
    NoVersion {
        /// The vDisk.
        vdisk: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::UnknownDevice(mac) => write!(f, "unknown device {mac}"),
            Refusal::Disabled { device, mac } => write!(f, "device {device} ({mac}) is disabled"),
            Refusal::Unassigned {
                device,
                mac,
                vdisk: Some(vdisk),
            } => write!(
                f,
                "vDisk `{vdisk}` is not assigned to device {device} ({mac})"
            ),
            Refusal::Unassigned {
                device,
                mac,
                vdisk: None,
            } => write!(f, "no vDisk is assigned to device {device} ({mac})"),
            Refusal::NoVersion { vdisk } => write!(f, "vDisk `{vdisk}` has no bootable version"),
        }
    }
}

impl From<Refusal> for Error {
    /// `Refused`, except a vDisk without a bootable version: a `Conflict` (the
    /// operator's versions, not the device, are what is wrong).
    fn from(refusal: Refusal) -> Self {
        let kind = match refusal {
            Refusal::NoVersion { .. } => ErrorKind::Conflict,
            _ => ErrorKind::Refused,
        };
        Error::new(kind, refusal)
    }
}

/// What a device boots of one assigned vDisk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskPlan {
    /// The vDisk.
    pub vdisk: String,
    /// The version it boots.
    pub version: u32,
    /// That version's file, relative to the store folder.
    pub file: String,
    /// How its session writes.
    pub mode: SessionMode,
}

/// One menu entry of a boot: an assignment and what it boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEntry {
    /// The assignment, as the store records it.
    pub assignment: Assignment,
    /// What it boots, or why it boots nothing.
    pub disk: Result<DiskPlan, Refusal>,
}

/// What a device boots: its assigned vDisks in order (the first is the default; more
/// than one is a menu).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootPlan {
    /// The device.
    pub device: Device,
    /// At least one entry.
    pub entries: Vec<BootEntry>,
}

impl BootPlan {
    /// True when the device chooses from a menu.
    pub fn is_menu(&self) -> bool {
        self.entries.len() > 1
    }

    /// The assignments, in menu order.
    pub fn assignments(&self) -> Vec<Assignment> {
        self.entries.iter().map(|e| e.assignment.clone()).collect()
    }
}

/// The records that decide what a device boots, read from the store in one go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFacts {
    /// The MAC asked about.
    pub mac: Mac,
    /// Its device, when the store has one.
    pub device: Option<Device>,
    /// Its assignments in order, each with its vDisk's versions.
    pub assigned: Vec<(Assignment, Vec<Version>)>,
}

impl BootFacts {
    /// What the device boots, or why nothing: [`boot_plan`] of these facts.
    pub fn plan(&self) -> Result<BootPlan, Refusal> {
        boot_plan(self.mac, self.device.as_ref(), &self.assigned)
    }

    /// What `device` (admitted from these facts) boots of `vdisk`: [`resolve_disk`]
    /// with its assignment of it and that vDisk's versions. Sessions and the boot files
    /// of versions both ask this, so a device gets the kernel of the version it mounts.
    pub fn disk(&self, device: &Device, vdisk: &str) -> Result<DiskPlan, Refusal> {
        let assigned = self.assigned.iter().find(|(a, _)| a.vdisk == vdisk);
        resolve_disk(
            device,
            vdisk,
            assigned.map(|(a, _)| a),
            assigned.map_or(&[][..], |(_, v)| v),
        )
    }
}

/// The device that may boot with `mac`: known and enabled.
pub fn admit(mac: Mac, device: Option<&Device>) -> Result<&Device, Refusal> {
    match device {
        None => Err(Refusal::UnknownDevice(mac)),
        Some(d) if !d.enabled => Err(Refusal::Disabled {
            device: d.name.clone(),
            mac: d.mac,
        }),
        Some(d) => Ok(d),
    }
}

/// What `device` boots of `vdisk`: its `assignment` of it (`None`: not assigned) and
/// the vDisk's `versions`.
pub fn resolve_disk(
    device: &Device,
    vdisk: &str,
    assignment: Option<&Assignment>,
    versions: &[Version],
) -> Result<DiskPlan, Refusal> {
    let assignment = assignment.ok_or_else(|| Refusal::Unassigned {
        device: device.name.clone(),
        mac: device.mac,
        vdisk: Some(vdisk.to_owned()),
    })?;
    let no_version = || Refusal::NoVersion {
        vdisk: vdisk.to_owned(),
    };
    let number = resolve_version(versions, device.device_type, assignment.pinned_version)
        .ok_or_else(no_version)?;
    let version = versions
        .iter()
        .find(|v| v.number == number)
        .ok_or_else(no_version)?;
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
    Ok(DiskPlan {
        vdisk: vdisk.to_owned(),
        version: number,
        file: version.file.clone(),
        mode,
    })
}

/// What the device with `mac` boots: `device` is its record (if any), `assigned` its
/// assignments in order with each vDisk's versions.
pub fn boot_plan(
    mac: Mac,
    device: Option<&Device>,
    assigned: &[(Assignment, Vec<Version>)],
) -> Result<BootPlan, Refusal> {
    let device = admit(mac, device)?;
    if assigned.is_empty() {
        return Err(Refusal::Unassigned {
            device: device.name.clone(),
            mac: device.mac,
            vdisk: None,
        });
    }
    let entries = assigned
        .iter()
        .map(|(assignment, versions)| BootEntry {
            assignment: assignment.clone(),
            disk: resolve_disk(device, &assignment.vdisk, Some(assignment), versions),
        })
        .collect();
    Ok(BootPlan {
        device: device.clone(),
        entries,
    })
}

/// The version number a device of `device_type` boots, given the vDisk's versions
/// (any order) and the assignment's pin.
///
/// - a pin wins, when that version exists;
/// - production devices boot the production version;
/// - test devices boot the newest version in test, else the production version;
/// - maintenance devices boot the newest version (read-write).
///
/// ```
/// use provision_core::{resolve_version, DeviceType, Version, VersionState};
/// let v = |number, state| Version { vdisk_id: 1, number, file: format!("v{number}.vhd"),
///                                   state, note: String::new(), created_at: 0 };
/// let versions = [v(0, VersionState::Production), v(1, VersionState::Test)];
/// assert_eq!(resolve_version(&versions, DeviceType::Production, None), Some(0));
/// assert_eq!(resolve_version(&versions, DeviceType::Test, None), Some(1));
/// assert_eq!(resolve_version(&versions, DeviceType::Production, Some(1)), Some(1));
/// ```
pub fn resolve_version(
    versions: &[Version],
    device_type: DeviceType,
    pin: Option<u32>,
) -> Option<u32> {
    if let Some(pin) = pin.filter(|p| versions.iter().any(|v| v.number == *p)) {
        return Some(pin);
    }
    let newest_in = |states: &[VersionState]| {
        versions
            .iter()
            .filter(|v| states.contains(&v.state))
            .map(|v| v.number)
            .max()
    };
    match device_type {
        DeviceType::Production => newest_in(&[VersionState::Production]),
        DeviceType::Test => {
            newest_in(&[VersionState::Test]).or_else(|| newest_in(&[VersionState::Production]))
        }
        DeviceType::Maintenance => versions.iter().map(|v| v.number).max(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use VersionState::*;

    fn versions(states: &[VersionState]) -> Vec<Version> {
        states
            .iter()
            .enumerate()
            .map(|(n, &state)| Version {
                vdisk_id: 1,
                number: n as u32,
                file: format!("v{n}.vhd"),
                state,
                note: String::new(),
                created_at: 0,
            })
            .collect()
    }

    #[test]
    fn each_device_type_boots_its_version() {
        let vs = versions(&[Superseded, Production, Test, Maintenance]);
        assert_eq!(resolve_version(&vs, DeviceType::Production, None), Some(1));
        assert_eq!(resolve_version(&vs, DeviceType::Test, None), Some(2));
        assert_eq!(resolve_version(&vs, DeviceType::Maintenance, None), Some(3));
    }

    #[test]
    fn test_devices_fall_back_to_production() {
        let vs = versions(&[Superseded, Production, Maintenance]);
        assert_eq!(resolve_version(&vs, DeviceType::Test, None), Some(1));
    }

    #[test]
    fn pins_win_only_when_the_version_exists() {
        let vs = versions(&[Production, Test]);
        assert_eq!(resolve_version(&vs, DeviceType::Test, Some(0)), Some(0));
        assert_eq!(resolve_version(&vs, DeviceType::Test, Some(7)), Some(1));
    }

    #[test]
    fn nothing_to_boot_without_versions() {
        assert_eq!(resolve_version(&[], DeviceType::Maintenance, None), None);
    }

    const MAC: Mac = Mac([0x52, 0x54, 0, 0, 0, 1]);

    fn device(device_type: DeviceType, enabled: bool) -> Device {
        Device {
            id: 1,
            mac: MAC,
            name: "seat-1".into(),
            collection: None,
            device_type,
            enabled,
        }
    }

    fn assigned(vdisk: &str, mode: Mode, pin: Option<u32>) -> Assignment {
        Assignment {
            vdisk: vdisk.into(),
            mode,
            pinned_version: pin,
        }
    }

    fn plan_of(
        device_type: DeviceType,
        assignment: Assignment,
        states: &[VersionState],
    ) -> Result<DiskPlan, Refusal> {
        let d = device(device_type, true);
        let vdisk = assignment.vdisk.clone();
        resolve_disk(&d, &vdisk, Some(&assignment), &versions(states))
    }

    #[test]
    fn unknown_and_disabled_devices_boot_nothing() {
        assert_eq!(boot_plan(MAC, None, &[]), Err(Refusal::UnknownDevice(MAC)));
        let off = device(DeviceType::Production, false);
        let lab = (
            assigned("lab", Mode::Standard, None),
            versions(&[Production]),
        );
        let refusal = boot_plan(MAC, Some(&off), &[lab]).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::Disabled {
                device: "seat-1".into(),
                mac: MAC
            }
        );
        let error = Error::from(refusal);
        assert_eq!(error.kind(), ErrorKind::Refused);
        assert_eq!(
            error.to_string(),
            "device seat-1 (52:54:00:00:00:01) is disabled"
        );
    }

    #[test]
    fn a_device_without_assignments_boots_nothing() {
        let d = device(DeviceType::Production, true);
        let refusal = boot_plan(MAC, Some(&d), &[]).unwrap_err();
        assert!(matches!(refusal, Refusal::Unassigned { vdisk: None, .. }));
        // Nor a vDisk it is not assigned.
        let refusal = resolve_disk(&d, "other", None, &versions(&[Production])).unwrap_err();
        assert_eq!(
            Error::from(refusal).to_string(),
            "vDisk `other` is not assigned to device seat-1 (52:54:00:00:00:01)"
        );
    }

    #[test]
    fn standard_devices_boot_their_types_version_in_standard_mode() {
        let states = [Superseded, Production, Test, Maintenance];
        let lab = || assigned("lab", Mode::Standard, None);
        let got = plan_of(DeviceType::Production, lab(), &states).unwrap();
        assert_eq!(
            got,
            DiskPlan {
                vdisk: "lab".into(),
                version: 1,
                file: "v1.vhd".into(),
                mode: SessionMode::Standard
            }
        );
        let got = plan_of(DeviceType::Test, lab(), &states).unwrap();
        assert_eq!((got.version, got.mode), (2, SessionMode::Standard));
    }

    #[test]
    fn maintenance_devices_write_the_newest_version_while_in_maintenance() {
        let lab = || assigned("lab", Mode::Standard, None);
        let got = plan_of(DeviceType::Maintenance, lab(), &[Production, Maintenance]).unwrap();
        assert_eq!((got.version, got.mode), (1, SessionMode::Maintenance));
        // Once promoted, the newest version is read through a write cache.
        let got = plan_of(DeviceType::Maintenance, lab(), &[Superseded, Production]).unwrap();
        assert_eq!((got.version, got.mode), (1, SessionMode::Standard));
        // A private assignment stays private once nothing is in maintenance.
        let private = assigned("lab", Mode::Private, None);
        let got = plan_of(DeviceType::Maintenance, private, &[Production]).unwrap();
        assert_eq!(got.mode, SessionMode::Private);
    }

    #[test]
    fn a_pin_chooses_the_version_and_never_writes_it() {
        let pinned = assigned("lab", Mode::Standard, Some(1));
        let states = [Superseded, Maintenance];
        let got = plan_of(DeviceType::Maintenance, pinned.clone(), &states).unwrap();
        assert_eq!((got.version, got.mode), (1, SessionMode::Standard));
        let got = plan_of(DeviceType::Production, pinned, &states).unwrap();
        assert_eq!(got.version, 1, "a pin boots a version of any state");
        let old = assigned("lab", Mode::Private, Some(0));
        let got = plan_of(DeviceType::Test, old, &[Superseded, Production]).unwrap();
        assert_eq!((got.version, got.mode), (0, SessionMode::Private));
    }

    #[test]
    fn private_assignments_boot_private() {
        let got = plan_of(
            DeviceType::Production,
            assigned("lab", Mode::Private, None),
            &[Production],
        )
        .unwrap();
        assert_eq!((got.version, got.mode), (0, SessionMode::Private));
    }

    #[test]
    fn a_vdisk_without_a_bootable_version_is_a_conflict() {
        let refusal = plan_of(
            DeviceType::Production,
            assigned("lab", Mode::Standard, None),
            &[Maintenance],
        )
        .unwrap_err();
        assert_eq!(
            refusal,
            Refusal::NoVersion {
                vdisk: "lab".into()
            }
        );
        assert_eq!(Error::from(refusal).kind(), ErrorKind::Conflict);
    }

    #[test]
    fn several_assignments_are_a_menu_in_order() {
        let d = device(DeviceType::Production, true);
        let assigned = [
            (
                assigned("win", Mode::Standard, None),
                versions(&[Production]),
            ),
            (
                assigned("lab", Mode::Private, None),
                versions(&[Maintenance]),
            ),
        ];
        let plan = boot_plan(MAC, Some(&d), &assigned).unwrap();
        assert!(plan.is_menu());
        let names: Vec<_> = plan.entries.iter().map(|e| &e.assignment.vdisk).collect();
        assert_eq!(names, ["win", "lab"], "the first is the default");
        assert_eq!(
            plan.entries[0].disk.as_ref().unwrap().mode,
            SessionMode::Standard
        );
        // An entry with nothing to boot stays in the menu, with its reason.
        assert!(matches!(
            plan.entries[1].disk,
            Err(Refusal::NoVersion { .. })
        ));
        let one = boot_plan(MAC, Some(&d), &assigned[..1]).unwrap();
        assert!(!one.is_menu());
    }
}
