//! `pxe-serve`: the ProxyDHCP / PXE boot service, or a full DHCP server for isolated
//! segments, from flags or a small TOML file. Only parses arguments and composes the
//! `pxe` crate's driver.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use pxe::driver::{Driver, DriverConfig, Mode as DriverMode};
use pxe::full::{FullConfig, FullDhcp, Leases, Pool};
use pxe::options::ClientArch;
use pxe::request::parse_mac;
use pxe::{Menu, MenuEntry, Policy};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    /// ProxyDHCP: answer PXE/HTTP-boot clients with boot information only; the site's
    /// DHCP server hands out addresses.
    Proxy,
    /// Full DHCP: hand out addresses from --pool too (isolated labs and classrooms).
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Network-boot DHCP service: ProxyDHCP on ports 67 and 4011 (or full DHCP), boot files
/// per client architecture, an optional PXE menu, iPXE script hand-off.
///
/// Examples:
///   pxe-serve -i br0 --server-ip 10.77.0.1 --boot-file bios=undionly.kpxe --boot-file efi-x64=ipxe.efi
///   pxe-serve -i br0 --server-ip 10.77.0.1 --ipxe-script http://10.77.0.1/boot.ipxe --boot-file bios=undionly.kpxe
///   pxe-serve -i br0 --server-ip 10.77.0.1 --menu-prompt "Choose" --menu-entry "Linux=linux.0" --menu-entry "Disk=local"
///   pxe-serve -i lab0 --server-ip 10.77.0.1 --mode full --pool 10.77.0.50-10.77.0.99/24 --leases /var/lib/pxe/leases
///   pxe-serve --config pxe.toml
///
/// Architectures: bios, efi-ia32, efi-x64, efi-bc, efi-arm32, efi-arm64, efi-x64-http,
/// efi-arm64-http, ... or the option 93 number. HTTP-boot architectures need an http(s):// URI.
#[derive(Debug, Parser)]
#[command(name = "pxe-serve", version, verbatim_doc_comment)]
struct Args {
    /// TOML file with the same settings (flags given on the command line win).
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Interface to serve on (sockets are bound to it).
    #[arg(short, long)]
    interface: Option<String>,
    /// Our IPv4 address on that interface (DHCP server identifier, option 54).
    #[arg(long)]
    server_ip: Option<Ipv4Addr>,
    /// proxy (default) or full.
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// Boot file per architecture, ARCH=FILE (repeatable).
    #[arg(long = "boot-file", value_name = "ARCH=FILE")]
    boot_files: Vec<String>,
    /// Boot file for architectures without their own --boot-file.
    #[arg(long)]
    default_boot_file: Option<String>,
    /// TFTP server handed out as next server (siaddr); default: --server-ip.
    #[arg(long)]
    tftp_server: Option<Ipv4Addr>,
    /// What iPXE clients (user class "iPXE" or option 175) get instead of a boot file:
    /// a script URL or TFTP path. Stops chainload loops.
    #[arg(long)]
    ipxe_script: Option<String>,
    /// PXE menu prompt (enables the menu when --menu-entry is given).
    #[arg(long)]
    menu_prompt: Option<String>,
    /// Menu timeout: 0 boots the first entry at once, 255 waits forever, N seconds for F8.
    #[arg(long)]
    menu_timeout: Option<u8>,
    /// Menu entry TEXT=FILE, TEXT=FILE@ARCH (or @ARCH,ARCH,...) or TEXT=local (boot from disk).
    #[arg(long = "menu-entry", value_name = "TEXT=FILE")]
    menu_entries: Vec<String>,
    /// Answer only these MACs (repeatable).
    #[arg(long = "allow-mac", value_name = "MAC")]
    allow_macs: Vec<String>,
    /// Full mode: address pool FIRST-LAST/PREFIX, e.g. 10.77.0.50-10.77.0.99/24.
    #[arg(long)]
    pool: Option<String>,
    /// Full mode: router (option 3).
    #[arg(long)]
    router: Option<Ipv4Addr>,
    /// Full mode: DNS server (option 6, repeatable).
    #[arg(long = "dns")]
    dns: Vec<Ipv4Addr>,
    /// Full mode: lease time in seconds.
    #[arg(long)]
    lease_time: Option<u32>,
    /// Full mode: lease file (kept across restarts).
    #[arg(long)]
    leases: Option<PathBuf>,
    /// Full mode: reservation MAC=IP (repeatable).
    #[arg(long = "reserve", value_name = "MAC=IP")]
    reservations: Vec<String>,
    /// DHCP server port.
    #[arg(long, default_value_t = 67)]
    dhcp_port: u16,
    /// PXE boot server port (ProxyDHCP REQUEST, menu selections).
    #[arg(long, default_value_t = 4011)]
    boot_port: u16,
    /// Port clients listen on (broadcast replies go there; rivals are heard there).
    #[arg(long, default_value_t = 68)]
    client_port: u16,
    /// Do not listen on the client port for other DHCP servers.
    #[arg(long)]
    no_rival_watch: bool,
    /// Answer IPv6 router solicitations with a lifetime-0 advertisement (saves iPXE
    /// about 14 s on IPv4-only segments).
    #[arg(long)]
    router_advertisements: bool,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    interface: Option<String>,
    server_ip: Option<Ipv4Addr>,
    mode: Option<Mode>,
    #[serde(default)]
    boot_files: BTreeMap<String, String>,
    default_boot_file: Option<String>,
    tftp_server: Option<Ipv4Addr>,
    ipxe_script: Option<String>,
    menu: Option<FileMenu>,
    #[serde(default)]
    allow_macs: Vec<String>,
    full: Option<FileFull>,
    router_advertisements: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMenu {
    prompt: String,
    #[serde(default = "default_timeout")]
    timeout: u8,
    entries: Vec<FileMenuEntry>,
}

fn default_timeout() -> u8 {
    255
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMenuEntry {
    text: String,
    file: Option<String>,
    #[serde(default)]
    arches: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFull {
    pool: Option<String>,
    router: Option<Ipv4Addr>,
    #[serde(default)]
    dns: Vec<Ipv4Addr>,
    lease_time: Option<u32>,
    leases: Option<PathBuf>,
    #[serde(default)]
    reservations: BTreeMap<String, Ipv4Addr>,
}

fn arch(name: &str) -> Result<ClientArch, String> {
    ClientArch::from_name(name).ok_or_else(|| {
        format!(
            "unknown architecture `{name}` (try bios, efi-x64, efi-arm64, efi-x64-http or a number)"
        )
    })
}

fn mac(text: &str) -> Result<[u8; 6], String> {
    parse_mac(text).ok_or_else(|| format!("`{text}` is not a MAC address (aa:bb:cc:dd:ee:ff)"))
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

/// Merges the file and the flags into a driver configuration and mode.
fn build(args: &Args) -> Result<(DriverConfig, DriverMode), String> {
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let server_ip = args
        .server_ip
        .or(file.server_ip)
        .ok_or("--server-ip (or server_ip in the config file) is required")?;
    let mut policy = Policy::new(server_ip);
    policy.tftp_server = args.tftp_server.or(file.tftp_server);
    for (name, f) in &file.boot_files {
        policy = policy.with_boot_file(arch(name)?, f.clone());
    }
    for spec in &args.boot_files {
        let (a, f) = spec
            .split_once('=')
            .ok_or_else(|| format!("--boot-file `{spec}` is not ARCH=FILE"))?;
        policy = policy.with_boot_file(arch(a)?, f.to_owned());
    }
    policy.default_boot_file = args.default_boot_file.clone().or(file.default_boot_file);
    policy.ipxe_script = args.ipxe_script.clone().or(file.ipxe_script);
    if !args.menu_entries.is_empty() {
        policy.menu = Some(Menu {
            prompt: args
                .menu_prompt
                .clone()
                .unwrap_or_else(|| "Network boot menu".into()),
            timeout: args.menu_timeout.unwrap_or(255),
            entries: args
                .menu_entries
                .iter()
                .map(|s| menu_entry(s))
                .collect::<Result<_, _>>()?,
        });
    } else if let Some(m) = file.menu {
        let mut entries = Vec::new();
        for e in m.entries {
            entries.push(MenuEntry {
                text: e.text,
                boot_file: e.file.filter(|f| f != "local"),
                arches: e.arches.iter().map(|a| arch(a)).collect::<Result<_, _>>()?,
            });
        }
        policy.menu = Some(Menu {
            prompt: args.menu_prompt.clone().unwrap_or(m.prompt),
            timeout: args.menu_timeout.unwrap_or(m.timeout),
            entries,
        });
    }
    let macs: Vec<&String> = args.allow_macs.iter().chain(&file.allow_macs).collect();
    if !macs.is_empty() {
        policy.allowed_macs = Some(macs.into_iter().map(|m| mac(m)).collect::<Result<_, _>>()?);
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

    let mode = match args.mode.or(file.mode).unwrap_or(Mode::Proxy) {
        Mode::Proxy => DriverMode::Proxy(policy),
        Mode::Full => {
            let ff = file.full.unwrap_or_default();
            let spec = args
                .pool
                .clone()
                .or(ff.pool)
                .ok_or("full mode needs --pool")?;
            let mut p = Pool::parse(&spec).map_err(|e| e.to_string())?;
            p.router = args.router.or(ff.router);
            p.dns = if args.dns.is_empty() {
                ff.dns
            } else {
                args.dns.clone()
            };
            if let Some(t) = args.lease_time.or(ff.lease_time) {
                p.lease_secs = t;
            }
            if !p.in_subnet(server_ip) {
                return Err(format!(
                    "--server-ip {server_ip} is not in the pool's subnet"
                ));
            }
            let mut config = FullConfig::new(p);
            for (m, ip) in &ff.reservations {
                config.reservations.insert(mac(m)?, *ip);
            }
            for spec in &args.reservations {
                let (m, ip) = spec
                    .split_once('=')
                    .ok_or_else(|| format!("--reserve `{spec}` is not MAC=IP"))?;
                config.reservations.insert(
                    mac(m)?,
                    ip.parse()
                        .map_err(|_| format!("`{ip}` is not an IPv4 address"))?,
                );
            }
            let leases_path = args.leases.clone().or(ff.leases);
            let leases = match &leases_path {
                Some(path) => Leases::load(path).map_err(|e| e.to_string())?,
                None => Leases::new(),
            };
            DriverMode::Full {
                server: Box::new(FullDhcp::new(policy, config, leases)),
                leases_path,
            }
        }
    };
    let mut config = DriverConfig::new(args.interface.clone().or(file.interface));
    config.dhcp_port = args.dhcp_port;
    config.boot_port = Some(args.boot_port);
    config.client_port = args.client_port;
    config.watch_rivals = !args.no_rival_watch;
    config.router_advertisements =
        args.router_advertisements || file.router_advertisements.unwrap_or(false);
    Ok((config, mode))
}

fn main() -> ExitCode {
    let args = Args::parse();
    provision_server::init_logging(args.log_format == LogFormat::Json);
    let (config, mode) = match build(&args) {
        Ok(x) => x,
        Err(e) => {
            provision_server::errln!("pxe-serve: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            provision_server::errln!("pxe-serve: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let driver = Driver::bind(config, mode).await?;
        tokio::select! {
            r = driver.run() => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "pxe-serve stopped");
            provision_server::errln!("pxe-serve: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("pxe-serve").chain(list.iter().copied())).unwrap()
    }

    #[test]
    fn toml_file_builds_a_full_mode_server_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pxe.toml");
        std::fs::write(
            &path,
            r#"
interface = "lab0"
server_ip = "10.77.0.1"
mode = "full"
ipxe_script = "http://10.77.0.1/boot.ipxe"
allow_macs = ["52:54:00:00:00:01"]
[boot_files]
bios = "undionly.kpxe"
efi-x64 = "ipxe.efi"
[menu]
prompt = "Lab"
timeout = 5
entries = [
  { text = "Linux", file = "linux.0", arches = ["bios"] },
  { text = "Local disk" },
]
[full]
pool = "10.77.0.50-10.77.0.60/24"
router = "10.77.0.1"
dns = ["10.77.0.1"]
lease_time = 600
reservations = { "52:54:00:00:00:01" = "10.77.0.99" }
"#,
        )
        .unwrap();
        let a = args(&[
            "--config",
            path.to_str().unwrap(),
            "--tftp-server",
            "10.77.0.9",
        ]);
        let (config, mode) = build(&a).unwrap();
        assert_eq!(config.interface.as_deref(), Some("lab0"));
        let DriverMode::Full { server, .. } = mode else {
            panic!("full mode expected")
        };
        let p = server.policy();
        assert_eq!(p.tftp_server, Some(Ipv4Addr::new(10, 77, 0, 9)));
        assert_eq!(p.boot_file_for(Some(ClientArch::EfiX64)), Some("ipxe.efi"));
        let menu = p.menu.as_ref().unwrap();
        assert_eq!(
            (menu.prompt.as_str(), menu.timeout, menu.entries.len()),
            ("Lab", 5, 2)
        );
        assert_eq!(menu.entries[1].boot_file, None);
        assert_eq!(p.allowed_macs.as_ref().unwrap().len(), 1);
    }

    #[test]
    fn flags_and_their_errors() {
        let (config, mode) = build(&args(&[
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
        ]))
        .unwrap();
        assert!(!config.watch_rivals);
        let DriverMode::Proxy(p) = mode else {
            panic!("proxy mode expected")
        };
        let menu = p.menu.unwrap();
        assert_eq!(
            menu.entries[0].arches,
            vec![ClientArch::EfiX64, ClientArch::EfiBc]
        );
        for bad in [
            &["--server-ip", "10.77.0.1"][..],
            &["--boot-file", "bios=x"],
            &["--server-ip", "10.77.0.1", "--boot-file", "martian=x"],
            &[
                "--server-ip",
                "10.77.0.1",
                "--boot-file",
                "bios=x",
                "--mode",
                "full",
            ],
            &[
                "--server-ip",
                "10.77.0.1",
                "--boot-file",
                "bios=x",
                "--mode",
                "full",
                "--pool",
                "10.77.1.5-10.77.1.9/24",
            ],
            &[
                "--server-ip",
                "10.77.0.1",
                "--boot-file",
                "bios=x",
                "--allow-mac",
                "nope",
            ],
        ] {
            assert!(build(&args(bad)).is_err(), "{bad:?} accepted");
        }
    }
}
