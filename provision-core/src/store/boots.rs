//! Each device's current boot and its hypervisor attach secret.
//!
//! Boots are not audited: they are the devices' doing, many a day, and tracing logs
//! them. Rotating an attach secret is an operator's change and is.

use std::net::IpAddr;

use rusqlite::{OptionalExtension, params};

use super::{Store, now};
use crate::boot::{Boot, BootCause, Token};
use crate::error::{Error, ErrorKind, Result};
use crate::mac::Mac;

fn boot_row(mac: Mac, r: &rusqlite::Row<'_>) -> rusqlite::Result<Boot> {
    let conv = |i, e: Error| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    };
    Ok(Boot {
        mac,
        number: r.get::<_, i64>(0)? as u64,
        token: r.get::<_, String>(1)?.parse().map_err(|e| conv(1, e))?,
        started_at: r.get(2)?,
        cause: r.get::<_, String>(3)?.parse().map_err(|e| conv(3, e))?,
        address: r.get::<_, Option<String>>(4)?.and_then(|a| a.parse().ok()),
    })
}

fn device_id(db: &rusqlite::Connection, mac: Mac) -> Result<i64> {
    db.query_row(
        "SELECT id FROM devices WHERE mac = ?1",
        [mac.to_string()],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| Error::not_found("device", mac))
}

impl Store {
    /// Starts a new boot of the device with `mac`, replacing its current one, with a
    /// fresh token.
    pub fn start_boot(&self, mac: Mac, cause: BootCause, address: Option<IpAddr>) -> Result<Boot> {
        let mut db = self.lock();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let id = device_id(&tx, mac)?;
        let previous: Option<i64> = tx
            .query_row("SELECT number FROM boots WHERE device_id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        let boot = Boot {
            mac,
            number: previous.map_or(1, |n| n as u64 + 1),
            token: Token::random(),
            started_at: now(),
            cause,
            address,
        };
        tx.execute(
            "INSERT INTO boots (device_id, number, token, started_at, cause, address)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (device_id) DO UPDATE SET number = excluded.number,
                 token = excluded.token, started_at = excluded.started_at,
                 cause = excluded.cause, address = excluded.address",
            params![
                id,
                boot.number as i64,
                boot.token.to_string(),
                boot.started_at,
                cause.as_str(),
                address.map(|a| a.to_string())
            ],
        )?;
        tx.commit()?;
        Ok(boot)
    }

    /// The current boot of the device with `mac`, if it ever booted.
    pub fn current_boot(&self, mac: Mac) -> Result<Option<Boot>> {
        let db = self.lock();
        let id = device_id(&db, mac)?;
        Ok(db
            .query_row(
                "SELECT number, token, started_at, cause, address FROM boots WHERE device_id = ?1",
                [id],
                |r| boot_row(mac, r),
            )
            .optional()?)
    }

    /// Records the address the device's boot exchange showed for boot `number` (a
    /// later boot's row is left alone).
    pub fn record_boot_address(&self, mac: Mac, number: u64, address: IpAddr) -> Result<()> {
        let db = self.lock();
        let id = device_id(&db, mac)?;
        db.execute(
            "UPDATE boots SET address = ?3 WHERE device_id = ?1 AND number = ?2",
            params![id, number as i64, address.to_string()],
        )?;
        Ok(())
    }

    /// The attach secret of the device `key` (MAC or name), if it has one.
    pub fn attach_secret(&self, key: &str) -> Result<Option<Token>> {
        let device = self.device(key)?;
        let db = self.lock();
        let secret: Option<String> = db.query_row(
            "SELECT attach_secret FROM devices WHERE id = ?1",
            [device.id],
            |r| r.get(0),
        )?;
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
        self.change("device.attach_secret", &device.name, "rotated", |tx| {
            tx.execute(
                "UPDATE devices SET attach_secret = ?2 WHERE id = ?1",
                params![device.id, secret.to_string()],
            )?;
            Ok(())
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
