//! Where Linux keeps its kernel and initrd on a root or boot file system: the pairs of
//! paths to try, in order, as Debian and syslinux-style boot partitions name them.

/// Largest kernel or initrd read from an image (a larger one is not a boot file).
pub const MAX_FILE: u64 = 1 << 30;

/// The (kernel, initrd) paths to try on a file system whose `/boot` folder holds
/// `boot_names`, first match wins: Debian's symlinks `/vmlinuz` + `/initrd.img`, then
/// `/boot/vmlinuz` + `/boot/initrd.img`, then each `/boot/vmlinuz-<ver>` with its
/// `/boot/initrd.img-<ver>`, the newest `<ver>` first.
///
/// ```
/// use provision_core::boot_files::names::candidates;
/// let boot = ["vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-10-amd64", "config-6.1.0-10-amd64"];
/// let pairs = candidates(&boot.map(String::from));
/// assert_eq!(pairs[2], ("/boot/vmlinuz-6.1.0-10-amd64".into(), "/boot/initrd.img-6.1.0-10-amd64".into()));
/// assert_eq!(pairs.len(), 4);
/// ```
pub fn candidates(boot_names: &[String]) -> Vec<(String, String)> {
    let mut pairs = vec![
        ("/vmlinuz".to_owned(), "/initrd.img".to_owned()),
        ("/boot/vmlinuz".to_owned(), "/boot/initrd.img".to_owned()),
    ];
    let mut versions: Vec<&str> = boot_names
        .iter()
        .filter_map(|n| n.strip_prefix("vmlinuz-"))
        .filter(|v| !v.is_empty())
        .collect();
    versions.sort_by(|a, b| version_order(b, a));
    versions.dedup();
    pairs.extend(versions.into_iter().map(|v| {
        (
            format!("/boot/vmlinuz-{v}"),
            format!("/boot/initrd.img-{v}"),
        )
    }));
    pairs
}

/// Orders kernel versions as people read them: runs of digits by value, the rest byte
/// by byte (`6.1.0-10` after `6.1.0-9`).
fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let na = trim_zeros(&a[..da]);
                let nb = trim_zeros(&b[..db]);
                let order = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
                if order.is_ne() {
                    return order;
                }
                a = &a[da..];
                b = &b[db..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|d| **d == b'0').count();
    &digits[zeros..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_names_come_first_then_the_newest_version() {
        let names = [
            "vmlinuz-5.10.0-2",
            "vmlinuz-6.1.0-9",
            "vmlinuz-6.1.0-10",
            "initrd.img-6.1.0-10",
            "vmlinuz-",
        ]
        .map(String::from);
        let kernels: Vec<String> = candidates(&names).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            kernels,
            [
                "/vmlinuz",
                "/boot/vmlinuz",
                "/boot/vmlinuz-6.1.0-10",
                "/boot/vmlinuz-6.1.0-9",
                "/boot/vmlinuz-5.10.0-2"
            ]
        );
    }

    #[test]
    fn long_digit_runs_do_not_overflow() {
        let big = format!("vmlinuz-{}", "9".repeat(100));
        let small = "vmlinuz-1".to_owned();
        let pairs = candidates(&[small, big.clone()]);
        assert_eq!(pairs[2].0, format!("/boot/{big}"));
    }
}
