//! Which version of a vDisk a device boots: a pure function of the versions' states,
//! the device type and an optional pin.

use crate::model::{DeviceType, Version, VersionState};

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
}
