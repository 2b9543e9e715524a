//! An address pool of one subnet: the range handed out and the configuration options
//! (subnet mask, router, DNS, lease time) that go with it.

use std::net::Ipv4Addr;

use crate::error::{Error, Result};

/// One subnet's pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// First address handed out.
    pub first: Ipv4Addr,
    /// Last address handed out (inclusive).
    pub last: Ipv4Addr,
    /// Prefix length of the subnet (e.g. 24).
    pub prefix_len: u8,
    /// Option 3.
    pub router: Option<Ipv4Addr>,
    /// Option 6.
    pub dns: Vec<Ipv4Addr>,
    /// Option 51, seconds.
    pub lease_secs: u32,
}

impl Pool {
    /// A pool from `first` to `last` in a `/prefix_len` subnet; both must be in the
    /// same subnet and in order.
    pub fn new(first: Ipv4Addr, last: Ipv4Addr, prefix_len: u8) -> Result<Pool> {
        if prefix_len == 0 || prefix_len > 30 {
            return Err(Error::Config(format!(
                "prefix length /{prefix_len} must be 1..=30"
            )));
        }
        let p = Pool {
            first,
            last,
            prefix_len,
            router: None,
            dns: Vec::new(),
            lease_secs: 3600,
        };
        if u32::from(first) > u32::from(last) || !p.in_subnet(last) {
            return Err(Error::Config(format!(
                "pool {first}-{last} is not an ordered range inside one /{prefix_len} subnet"
            )));
        }
        Ok(p)
    }

    /// Parses `FIRST-LAST/PREFIX`, e.g. `10.77.0.50-10.77.0.99/24`.
    ///
    /// ```
    /// let pool: pxe::full::Pool = "10.77.0.50-10.77.0.99/24".parse().unwrap();
    /// assert!(pool.in_range("10.77.0.60".parse().unwrap()));
    /// assert!("10.77.0.99-10.77.0.50/24".parse::<pxe::full::Pool>().is_err());
    /// ```
    pub fn parse(spec: &str) -> Result<Pool> {
        let bad = || {
            Error::Config(format!(
                "pool `{spec}` is not FIRST-LAST/PREFIX (e.g. 10.77.0.50-10.77.0.99/24)"
            ))
        };
        let (range, prefix) = spec.split_once('/').ok_or_else(bad)?;
        let (first, last) = range.split_once('-').ok_or_else(bad)?;
        Pool::new(
            first.trim().parse().map_err(|_| bad())?,
            last.trim().parse().map_err(|_| bad())?,
            prefix.trim().parse().map_err(|_| bad())?,
        )
    }

    /// The subnet mask.
    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::MAX << (32 - u32::from(self.prefix_len)))
    }

    /// Whether `ip` is in this pool's subnet.
    pub fn in_subnet(&self, ip: Ipv4Addr) -> bool {
        let m = u32::from(self.mask());
        u32::from(ip) & m == u32::from(self.first) & m
    }

    /// Whether `ip` is in the handed-out range.
    pub fn in_range(&self, ip: Ipv4Addr) -> bool {
        (u32::from(self.first)..=u32::from(self.last)).contains(&u32::from(ip))
    }

    /// The addresses of the range, in order.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        (u32::from(self.first)..=u32::from(self.last)).map(Ipv4Addr::from)
    }
}

impl std::str::FromStr for Pool {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Pool> {
        Pool::parse(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_masks() {
        let p = Pool::new(
            Ipv4Addr::new(10, 77, 0, 50),
            Ipv4Addr::new(10, 77, 0, 60),
            24,
        )
        .unwrap();
        assert_eq!(p.mask(), Ipv4Addr::new(255, 255, 255, 0));
        assert!(p.in_subnet(Ipv4Addr::new(10, 77, 0, 1)));
        assert!(!p.in_range(Ipv4Addr::new(10, 77, 0, 1)));
        assert_eq!(p.addresses().count(), 11);
        assert!(
            Pool::new(
                Ipv4Addr::new(10, 77, 0, 60),
                Ipv4Addr::new(10, 77, 0, 50),
                24
            )
            .is_err()
        );
        assert!(
            Pool::new(
                Ipv4Addr::new(10, 77, 0, 60),
                Ipv4Addr::new(10, 77, 1, 50),
                24
            )
            .is_err()
        );
    }
}
