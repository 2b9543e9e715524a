//! Each device's current boot and its hypervisor attach secret.
//!
//! Boots are not audited: they are the devices' doing, many a day, and tracing logs
//! them. Rotating an attach secret is an operator's change and is.

use std::net::IpAddr;

use super::{Store, now};
use crate::boot::{Boot, BootCause, Token};
use crate::error::{Error, ErrorKind, Result};
use crate::mac::Mac;

impl Store {
    /// Starts a new boot of the device with `mac`, replacing its current one, with a
    /// fresh token.
    pub fn start_boot(&self, mac: Mac, cause: BootCause, address: Option<IpAddr>) -> Result<Boot> {
        self.write(|q| {
            let id = q.device(&mac.to_string())?.id;
            let previous = q.boot(id, mac)?;
            let boot = Boot {
                mac,
                number: previous.map_or(1, |b| b.number + 1),
                token: Token::random(),
                started_at: now(),
                cause,
                address,
            };
            q.put_boot(id, &boot)?;
            Ok(boot)
        })
    }

    /// The current boot of the device with `mac`, if it ever booted.
    pub fn current_boot(&self, mac: Mac) -> Result<Option<Boot>> {
        self.read(|q| q.boot(q.device(&mac.to_string())?.id, mac))
    }

    /// Records the address the device's boot exchange showed for boot `number` (a
    /// later boot's row is left alone).
    pub fn record_boot_address(&self, mac: Mac, number: u64, address: IpAddr) -> Result<()> {
        self.write(|q| q.set_boot_address(q.device(&mac.to_string())?.id, number, address))
    }

    /// The attach secret of the device `key` (MAC or name), if it has one.
    pub fn attach_secret(&self, key: &str) -> Result<Option<Token>> {
        let secret = self.read(|q| q.attach_secret(q.device(key)?.id))?;
        secret
            .map(|s| s.parse())
            .transpose()
            .map_err(|_| Error::new(ErrorKind::Invalid, "stored attach secret is malformed"))
    }

    /// Gives the device `key` a new attach secret (the old one stops working) and
    /// returns it.
    pub fn rotate_attach_secret(&self, key: &str) -> Result<Token> {
        let device = self.device(key)?;
        let secret = Token::random();
        self.change("device.attach_secret", &device.name, "rotated", |q| {
            q.set_attach_secret(device.id, &secret.to_string())
        })?;
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DeviceType;

    #[test]
    fn boots_count_up_and_replace_the_token() {
        let store = Store::in_memory().unwrap();
        let mac = Mac([2, 0, 0, 0, 0, 1]);
        store
            .add_device(mac, "seat", None, DeviceType::Production)
            .unwrap();
        assert_eq!(store.current_boot(mac).unwrap(), None);
        let first = store.start_boot(mac, BootCause::Dhcp, None).unwrap();
        let second = store.start_boot(mac, BootCause::Reset, None).unwrap();
        assert_eq!((first.number, second.number), (1, 2));
        assert_ne!(first.token, second.token);
        let address: IpAddr = "10.0.0.7".parse().unwrap();
        // An address for an old boot is not recorded on the new one.
        store.record_boot_address(mac, 1, address).unwrap();
        assert_eq!(store.current_boot(mac).unwrap().unwrap().address, None);
        store.record_boot_address(mac, 2, address).unwrap();
        assert_eq!(
            store.current_boot(mac).unwrap(),
            Some(Boot {
                address: Some(address),
                ..second
            })
        );
        assert_eq!(
            store
                .start_boot(Mac([2, 0, 0, 0, 0, 9]), BootCause::Dhcp, None)
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn attach_secrets_rotate() {
        let store = Store::in_memory().unwrap();
        store
            .add_device(Mac([2, 0, 0, 0, 0, 1]), "vm", None, DeviceType::Production)
            .unwrap();
        assert_eq!(store.attach_secret("vm").unwrap(), None);
        let one = store.rotate_attach_secret("vm").unwrap();
        assert_eq!(store.attach_secret("vm").unwrap(), Some(one));
        let two = store.rotate_attach_secret("vm").unwrap();
        assert_ne!(one, two);
        assert_eq!(store.attach_secret("02:00:00:00:00:01").unwrap(), Some(two));
    }
}
