//! What the tests of sessions do again and again: boot a device and open its disks as
//! its iPXE script would have them opened.

#![allow(dead_code)]

use std::sync::Arc;

use provision_core::{BootCause, Mac, NewBoot, Session, Sessions, Token};

/// The device's current boot token, starting a boot if it has none.
pub fn token(sessions: &Sessions, mac: Mac) -> Token {
    match sessions.current_boot(mac).unwrap() {
        Some(boot) => boot.token,
        None => reboot(sessions, mac).boot.token,
    }
}

/// Starts the device's next boot, as its DHCP DISCOVER would.
pub fn reboot(sessions: &Sessions, mac: Mac) -> NewBoot {
    sessions.start_boot(mac, BootCause::Dhcp, None).unwrap()
}

/// Opens `vdisk` in the device's current boot (starting one if it has none).
pub fn open(sessions: &Sessions, mac: Mac, vdisk: &str) -> provision_core::Result<Arc<Session>> {
    sessions.open(mac, vdisk, &token(sessions, mac))
}

/// The NBD export name of `vdisk` in the device's current boot (starting one if it has
/// none): what its iPXE script writes on the kernel command line.
pub fn export(sessions: &Sessions, mac: &str, vdisk: &str) -> String {
    let mac: Mac = mac.parse().unwrap();
    format!("{mac}/{vdisk}/{}", token(sessions, mac))
}
