//! `pxe-serve`: ProxyDHCP (or full DHCP) with a fixed boot policy, from provisiond's
//! `[dhcp]` keys and flags. provisiond answers from its store's devices instead (see
//! `server.rs`); both bind the `pxe` driver through one `bind` function.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use provision_core::Mac;
use pxe::driver::{Driver, DriverConfig, Mode};
use pxe::full::{FullDhcp, Leases};
use pxe::{Menu, MenuEntry, Policy};

use crate::config::{Dhcp, DhcpMode, arch};

/// pxe-serve's flags. Those named like a `[dhcp]` key of provisiond.toml take it over
/// from `--config`; the others (menu, iPXE script, allowed MACs, lease file) are
/// pxe-serve's own, as provisiond decides them per device from its store.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// provisiond's configuration file (TOML): pxe-serve reads its `[dhcp]` section
    /// (flags given on the command line win; `enabled` is ignored).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Interface to serve on (sockets are bound to it) [dhcp.interface].
    #[arg(short, long)]
    pub interface: Option<String>,
    /// Our IPv4 address on that interface (DHCP server identifier, option 54)
    /// [dhcp.server_ip].
    #[arg(long)]
    pub server_ip: Option<Ipv4Addr>,
    /// proxy (default) or full [dhcp.mode].
    #[arg(long, value_enum)]
    pub mode: Option<DhcpMode>,
    /// Boot file per architecture, ARCH=FILE (repeatable) [dhcp.boot_files].
    #[arg(long = "boot-file", value_name = "ARCH=FILE")]
    pub boot_files: Vec<String>,
    /// Boot file for architectures without their own --boot-file.
    #[arg(long)]
    pub default_boot_file: Option<String>,
    /// TFTP server handed out as next server (siaddr); default: --server-ip.
    #[arg(long)]
    pub tftp_server: Option<Ipv4Addr>,
    /// What iPXE clients (user class "iPXE" or option 175) get instead of a boot file:
    /// a script URL or TFTP path. Stops chainload loops.
    #[arg(long)]
    pub ipxe_script: Option<String>,
    /// PXE menu prompt (enables the menu when --menu-entry is given).
    #[arg(long)]
    pub menu_prompt: Option<String>,
    /// Menu timeout: 0 boots the first entry at once, 255 waits forever, N seconds for F8.
    #[arg(long)]
    pub menu_timeout: Option<u8>,
    /// Menu entry TEXT=FILE, TEXT=FILE@ARCH (or @ARCH,ARCH,...) or TEXT=local (boot from disk).
    #[arg(long = "menu-entry", value_name = "TEXT=FILE")]
    pub menu_entries: Vec<String>,
    /// Answer only these MACs (repeatable).
    #[arg(long = "allow-mac", value_name = "MAC")]
    pub allow_macs: Vec<Mac>,
    /// Full mode: address pool FIRST-LAST/PREFIX, e.g. 10.77.0.50-10.77.0.99/24
    /// [dhcp.pool].
    #[arg(long)]
    pub pool: Option<String>,
    /// Full mode: router (option 3) [dhcp.router].
    #[arg(long)]
    pub router: Option<Ipv4Addr>,
    /// Full mode: DNS server (option 6, repeatable) [dhcp.dns].
    #[arg(long = "dns")]
    pub dns: Vec<Ipv4Addr>,
    /// Full mode: lease time in seconds (default 3600) [dhcp.lease_seconds].
    #[arg(long, alias = "lease-time", value_name = "SECONDS")]
    pub lease_seconds: Option<u32>,
    /// Full mode: lease file (kept across restarts; default: leases in memory only).
    #[arg(long)]
    pub leases: Option<PathBuf>,
    /// Full mode: reservation MAC=IP (repeatable) [dhcp.reservations].
    #[arg(long = "reserve", value_name = "MAC=IP")]
    pub reservations: Vec<String>,
    /// DHCP server port (default 67) [dhcp.dhcp_port].
    #[arg(long)]
    pub dhcp_port: Option<u16>,
    /// PXE boot server port: ProxyDHCP REQUEST, menu selections (default 4011)
    /// [dhcp.boot_port].
    #[arg(long)]
    pub boot_port: Option<u16>,
    /// Port clients listen on: broadcast replies go there, rivals are heard there
    /// (default 68) [dhcp.client_port].
    #[arg(long)]
    pub client_port: Option<u16>,
    /// Do not listen on the client port for other DHCP servers.
    #[arg(long)]
    pub no_rival_watch: bool,
    /// Answer IPv6 router solicitations with a lifetime-0 advertisement (saves iPXE
    /// about 14 s on IPv4-only segments) [dhcp.router_advertisements].
    #[arg(long)]
    pub router_advertisements: bool,
}

impl Args {
    /// The `[dhcp]` settings: the file's (without one: no boot files), the flags over them.
    fn dhcp(&self) -> Result<Dhcp, String> {
        let mut dhcp = match super::load(self.config.as_deref())? {
            Some(config) => config.dhcp,
            None => Dhcp {
                boot_files: BTreeMap::new(),
                ..Dhcp::default()
            },
        };
        if let Some(interface) = &self.interface {
            dhcp.interface.clone_from(interface);
        }
        dhcp.server_ip = self.server_ip.or(dhcp.server_ip);
        dhcp.mode = self.mode.unwrap_or(dhcp.mode);
        if let Some(pool) = &self.pool {
            dhcp.pool.clone_from(pool);
        }
        dhcp.router = self.router.or(dhcp.router);
        if !self.dns.is_empty() {
            dhcp.dns.clone_from(&self.dns);
        }
        dhcp.lease_seconds = self.lease_seconds.unwrap_or(dhcp.lease_seconds);
        for spec in &self.reservations {
            let (mac, ip) = spec
                .split_once('=')
                .ok_or_else(|| format!("--reserve `{spec}` is not MAC=IP"))?;
            let ip = ip
                .parse()
                .map_err(|_| format!("`{ip}` is not an IPv4 address"))?;
            dhcp.reservations.insert(mac.to_owned(), ip);
        }
        dhcp.dhcp_port = self.dhcp_port.unwrap_or(dhcp.dhcp_port);
        dhcp.boot_port = self.boot_port.unwrap_or(dhcp.boot_port);
        dhcp.client_port = self.client_port.unwrap_or(dhcp.client_port);
        dhcp.router_advertisements |= self.router_advertisements;
        Ok(dhcp)
    }

    /// The fixed boot policy: `[dhcp] boot_files`, then the flags.
    fn policy(&self, dhcp: &Dhcp, server_ip: Ipv4Addr) -> Result<Policy, String> {
        let mut policy = Policy::new(server_ip);
        policy.boot_files = dhcp.boot_files()?;
        for spec in &self.boot_files {
            let (a, f) = spec
                .split_once('=')
                .ok_or_else(|| format!("--boot-file `{spec}` is not ARCH=FILE"))?;
            policy = policy.with_boot_file(arch(a)?, f.to_owned());
        }
        policy.tftp_server = self.tftp_server;
        policy.default_boot_file.clone_from(&self.default_boot_file);
        policy.ipxe_script.clone_from(&self.ipxe_script);
        if !self.menu_entries.is_empty() {
            policy.menu = Some(Menu {
                prompt: self
                    .menu_prompt
                    .clone()
                    .unwrap_or_else(|| "Network boot menu".into()),
                timeout: self.menu_timeout.unwrap_or(255),
                entries: self
                    .menu_entries
                    .iter()
                    .map(|s| menu_entry(s))
                    .collect::<Result<_, _>>()?,
            });
        }
        if !self.allow_macs.is_empty() {
            policy.allowed_macs = Some(self.allow_macs.iter().map(|m| m.0).collect());
        }
        if policy.boot_files.is_empty()
            && policy.default_boot_file.is_none()
            && policy.menu.is_none()
            && policy.ipxe_script.is_none()
        {
            return Err(
                "nothing to boot: give --boot-file, --default-boot-file, --menu-entry or --ipxe-script"
                    .into(),
            );
        }
        Ok(policy)
    }
}

fn menu_entry(spec: &str) -> Result<MenuEntry, String> {
    let (text, rest) = spec
        .rsplit_once('=')
        .ok_or_else(|| format!("menu entry `{spec}` is not TEXT=FILE"))?;
    let (file, arches) = match rest.split_once('@') {
        Some((f, a)) => (f, a.split(',').map(arch).collect::<Result<Vec<_>, _>>()?),
        None => (rest, Vec::new()),
    };
    Ok(MenuEntry {
        text: text.to_owned(),
        boot_file: (file != "local").then(|| file.to_owned()),
        arches,
    })
}

/// Merges the file and the flags into the `[dhcp]` settings, the driver's sockets and
/// its mode. An error here is a usage error.
pub fn build(args: &Args) -> Result<(Dhcp, DriverConfig, Mode), String> {
    let dhcp = args.dhcp()?;
    let server_ip = dhcp
        .server_ip
        .ok_or("--server-ip (or server_ip in [dhcp]) is required")?;
    let policy = args.policy(&dhcp, server_ip)?;
    let mode = match dhcp.mode {
        DhcpMode::Proxy => Mode::Proxy(policy),
        DhcpMode::Full => {
            let config = dhcp.full_config(server_ip)?;
            let leases = load_leases(args.leases.as_deref())?;
            Mode::Full {
                server: Box::new(FullDhcp::new(policy, config, leases)),
                leases_path: args.leases.clone(),
            }
        }
    };
    let mut config = dhcp.driver_config();
    config.watch_rivals = !args.no_rival_watch;
    Ok((dhcp, config, mode))
}

/// Full mode's leases from `path` (none yet when it does not exist), or none.
pub(crate) fn load_leases(path: Option<&Path>) -> Result<Leases, String> {
    let Some(path) = path else {
        return Ok(Leases::new());
    };
    let leases = Leases::load(path).map_err(|e| format!("{}: {e}", path.display()))?;
    tracing::info!(leases = leases.len(), file = %path.display(), "DHCP leases loaded");
    Ok(leases)
}

/// Binds the driver's sockets as `dhcp` says.
pub(crate) async fn bind(dhcp: &Dhcp, config: DriverConfig, mode: Mode) -> Result<Driver, String> {
    let driver = Driver::bind(config, mode).await.map_err(|e| {
        format!(
            "cannot start DHCP on {} (ports {} and {}): {e}",
            if dhcp.interface.is_empty() {
                "every interface"
            } else {
                &dhcp.interface
            },
            dhcp.dhcp_port,
            dhcp.boot_port
        )
    })?;
    tracing::info!(
        interface = %dhcp.interface,
        mode = ?dhcp.mode,
        server_ip = %dhcp.server_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
        router_advertisements = dhcp.router_advertisements,
        "DHCP service listening"
    );
    Ok(driver)
}

/// Binds and serves until `shutdown` completes.
pub async fn serve(
    (dhcp, config, mode): (Dhcp, DriverConfig, Mode),
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let driver = bind(&dhcp, config, mode).await?;
    tokio::select! {
        r = driver.run() => r.map_err(|e| e.to_string()),
        () = shutdown => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use pxe::options::ClientArch;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn args(list: &[&str]) -> Args {
        Cli::try_parse_from(std::iter::once("pxe-serve").chain(list.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn provisiond_toml_builds_a_full_mode_server_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("provisiond.toml");
        std::fs::write(
            &path,
            r#"
[dhcp]
interface = "lab0"
server_ip = "10.77.0.1"
mode = "full"
pool = "10.77.0.50-10.77.0.60/24"
router = "10.77.0.1"
dns = ["10.77.0.1"]
lease_seconds = 600
reservations = { "52:54:00:00:00:01" = "10.77.0.99" }
[dhcp.boot_files]
bios = "undionly.kpxe"
efi-x64 = "ipxe.efi"
"#,
        )
        .unwrap();
        let a = args(&[
            "--config",
            path.to_str().unwrap(),
            "--tftp-server",
            "10.77.0.9",
            "--boot-file",
            "efi-x64=snp.efi",
            "--allow-mac",
            "525400000001",
        ]);
        let (dhcp, config, mode) = build(&a).unwrap();
        assert_eq!(config.interface.as_deref(), Some("lab0"));
        assert_eq!(dhcp.lease_seconds, 600);
        let Mode::Full { server, .. } = mode else {
            panic!("full mode expected")
        };
        let p = server.policy();
        assert_eq!(p.tftp_server, Some(Ipv4Addr::new(10, 77, 0, 9)));
        assert_eq!(p.boot_file_for(Some(ClientArch::EfiX64)), Some("snp.efi"));
        assert_eq!(
            p.boot_file_for(Some(ClientArch::X86Bios)),
            Some("undionly.kpxe")
        );
        assert_eq!(p.allowed_macs.as_ref().unwrap().len(), 1);
    }

    #[test]
    fn flags_and_their_errors() {
        let (_, config, mode) = build(&args(&[
            "-i",
            "br0",
            "--server-ip",
            "10.77.0.1",
            "--boot-file",
            "bios=undionly.kpxe",
            "--menu-entry",
            "EFI=ipxe.efi@efi-x64,efi-bc",
            "--menu-entry",
            "Disk=local",
            "--no-rival-watch",
            "--lease-time",
            "60",
        ]))
        .unwrap();
        assert!(!config.watch_rivals);
        assert_eq!((config.dhcp_port, config.boot_port), (67, Some(4011)));
        let Mode::Proxy(p) = mode else {
            panic!("proxy mode expected")
        };
        assert_eq!(p.boot_file_for(Some(ClientArch::EfiX64)), None);
        let menu = p.menu.unwrap();
        assert_eq!(
            menu.entries[0].arches,
            vec![ClientArch::EfiX64, ClientArch::EfiBc]
        );
        let base = ["--server-ip", "10.77.0.1", "--boot-file", "bios=x"];
        for extra in [
            &["--mode", "full"][..],
            &["--mode", "full", "--pool", "10.77.1.5-10.77.1.9/24"],
            &["--reserve", "52:54:00:00:00:01"],
            &[
                "--mode",
                "full",
                "--pool",
                "10.77.0.5-10.77.0.9/24",
                "--reserve",
                "nope=10.77.0.5",
            ],
        ] {
            let list: Vec<&str> = base.iter().chain(extra).copied().collect();
            assert!(build(&args(&list)).is_err(), "{list:?} accepted");
        }
        for bad in [
            &["--server-ip", "10.77.0.1"][..],
            &["--boot-file", "bios=x"],
            &["--server-ip", "10.77.0.1", "--boot-file", "martian=x"],
        ] {
            assert!(build(&args(bad)).is_err(), "{bad:?} accepted");
        }
        let refused = Cli::try_parse_from(["pxe-serve", "--allow-mac", "+1:54:00:00:00:01"]);
        assert!(refused.is_err(), "a MAC with a sign accepted");
    }
}
