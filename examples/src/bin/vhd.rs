//! `vhd`: inspect, create, convert, merge, check and map VHD images (vDisks).
//!
//! Exit codes: 0 success (for `check`: the image is consistent), 1 runtime error or an
//! inconsistent image, 2 usage error, 141 when stdout's reader went away
//! (`vhd map big.vhd | head`; no message).

// Results go through `outln!` (a closed stdout ends the process quietly).
#![deny(clippy::print_stdout, clippy::print_stderr)]

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use provision_server::{errln, outln};
use serde_json::{Value, json};
use vhd::{CreateOptions, Disk, DiskType, Image, OpenOptions, Target};

#[derive(Parser, Debug)]
#[command(
    name = "vhd",
    version,
    about = "Inspect, create, convert, merge, check and map VHD images (vDisks)"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ImageType {
    Fixed,
    Dynamic,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ConvertTo {
    Raw,
    Fixed,
    Dynamic,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show an image's footer, header, parent links and chain.
    Info {
        /// The image.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Create a fixed or dynamic image, or a differencing child of --parent.
    Create {
        /// The new image (replaced if it exists).
        file: PathBuf,
        /// Virtual size: 512, 64K, 100M, 20G (not with --parent).
        #[arg(long, value_parser = parse_size, required_unless_present = "parent")]
        size: Option<u64>,
        /// Image type (not with --parent).
        #[arg(long = "type", value_enum, default_value_t = ImageType::Dynamic)]
        image_type: ImageType,
        /// Block size of a dynamic image: a power of two from 512 to 256M.
        #[arg(long, value_parser = parse_size, default_value = "2M")]
        block_size: u64,
        /// Make a differencing image over this parent (size and block size follow it).
        #[arg(long, conflicts_with = "size")]
        parent: Option<PathBuf>,
    },
    /// Convert a raw file or any VHD (a whole chain included) into one image.
    Convert {
        /// Source: raw file or VHD.
        input: PathBuf,
        /// Destination (replaced if it exists).
        output: PathBuf,
        /// Output format.
        #[arg(long, value_enum)]
        to: ConvertTo,
        /// Block size of a dynamic output.
        #[arg(long, value_parser = parse_size, default_value = "2M")]
        block_size: u64,
    },
    /// Merge a differencing image into its parent.
    Merge {
        /// The differencing image.
        child: PathBuf,
    },
    /// Check an image and its chain; exit 0 only when consistent.
    Check {
        /// The image.
        file: PathBuf,
    },
    /// Show which ranges hold data (and in which image of the chain) and which read zeros.
    Map {
        /// The image.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn parse_size(s: &str) -> Result<u64, String> {
    provision_server::parse_size(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    provision_server::init_logging(cli.log_format == LogFormat::Json);
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            errln!("vhd: error: {e}");
            ExitCode::from(1)
        }
    }
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn run(cmd: Command) -> Res<ExitCode> {
    match cmd {
        Command::Info { file, json } => info(&file, json),
        Command::Create {
            file,
            size,
            image_type,
            block_size,
            parent,
        } => {
            let img = match parent {
                Some(p) => vhd::create_differencing(&file, &p)?,
                None => {
                    let size = size.ok_or("--size is required")?;
                    let block_size =
                        u32::try_from(block_size).map_err(|_| "block size too large")?;
                    let opts = match image_type {
                        ImageType::Fixed => CreateOptions::fixed(size),
                        ImageType::Dynamic => CreateOptions::dynamic(size).block_size(block_size),
                    };
                    opts.create(&file)?
                }
            };
            outln!(
                "created {} ({}, {} bytes)",
                file.display(),
                img.disk_type().name(),
                img.size()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Convert {
            input,
            output,
            to,
            block_size,
        } => {
            let target = match to {
                ConvertTo::Raw => Target::Raw,
                ConvertTo::Fixed => Target::Fixed,
                ConvertTo::Dynamic => Target::Dynamic {
                    block_size: u32::try_from(block_size).map_err(|_| "block size too large")?,
                },
            };
            let mut bar = Bar::new("convert");
            let n = vhd::convert_file(&input, &output, target, &mut |d, t| bar.set(d, t))?;
            bar.finish();
            outln!(
                "converted {} -> {} ({n} bytes of data)",
                input.display(),
                output.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Merge { child } => {
            let mut bar = Bar::new("merge");
            let n = vhd::merge(&child, &mut |d, t| bar.set(d, t))?;
            bar.finish();
            outln!("merged {n} bytes of {} into its parent", child.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { file } => {
            let report = vhd::check_file(&file);
            for p in &report.problems {
                outln!("{}: {p}", file.display());
            }
            if report.is_consistent() {
                outln!(
                    "{}: consistent ({} blocks allocated, {} bytes unreferenced: room for new blocks)",
                    file.display(),
                    report.allocated_blocks,
                    report.unreferenced_bytes
                );
                Ok(ExitCode::SUCCESS)
            } else {
                outln!("{}: {} problem(s)", file.display(), report.problems.len());
                Ok(ExitCode::from(1))
            }
        }
        Command::Map { file, json } => map(&file, json),
    }
}

/// A progress bar on stderr, only when stderr is a terminal.
struct Bar(Option<indicatif::ProgressBar>);

impl Bar {
    fn new(what: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Bar(None);
        }
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_owned());
        Bar(Some(bar))
    }
    fn set(&mut self, done: u64, total: u64) {
        if let Some(b) = &self.0 {
            b.set_length(total);
            b.set_position(done);
        }
    }
    fn finish(self) {
        if let Some(b) = self.0 {
            b.finish_and_clear();
        }
    }
}

fn open_any(file: &Path) -> Res<Arc<dyn Disk>> {
    Ok(vhd::open_disk(file, true)?)
}

fn image_json(img: &Image) -> Value {
    let f = img.footer();
    let mut v = json!({
        "file": img.path().map(|p| p.display().to_string()),
        "type": img.disk_type().name(),
        "virtual_size": img.size(),
        "current_size": f.current_size,
        "original_size": f.original_size,
        "chs_size": f.chs_size(),
        "geometry": { "cylinders": f.geometry.cylinders, "heads": f.geometry.heads, "sectors_per_track": f.geometry.sectors_per_track },
        "creator_application": f.creator(),
        "creator_version": format!("{}.{}", f.creator_version >> 16, f.creator_version & 0xffff),
        "creator_host_os": format!("{:#010x}", f.creator_host_os),
        "time_stamp": f.time_stamp,
        "unique_id": vhd::format_uuid(&f.unique_id),
        "saved_state": f.saved_state != 0,
        "footer_source": format!("{:?}", img.footer_source()),
        "warnings": img.warnings(),
    });
    if let Some(h) = img.header() {
        let bat = img.bat().unwrap_or_default();
        v["block_size"] = json!(h.block_size);
        v["max_table_entries"] = json!(h.max_table_entries);
        v["table_offset"] = json!(h.table_offset);
        v["allocated_blocks"] = json!(bat.iter().filter(|&&e| e != vhd::BAT_UNUSED).count());
        if img.disk_type() == DiskType::Differencing {
            let locators: Vec<Value> = vhd::decode_locators(img.storage().as_ref(), h)
                .into_iter()
                .map(|(c, p)| json!({ "platform": c.name(), "path": p }))
                .collect();
            v["parent"] = json!({
                "unique_id": vhd::format_uuid(&h.parent_unique_id),
                "time_stamp": h.parent_time_stamp,
                "unicode_name": h.parent_unicode_name,
                "locators": locators,
            });
        }
    }
    v
}

fn info(file: &Path, as_json: bool) -> Res<ExitCode> {
    let src = vhd::FileStorage::open(file, true).map_err(|e| format!("{}: {e}", file.display()))?;
    if !vhd::looks_like_vhd(&src)? {
        let len = vhd::Storage::len(&src)?;
        if as_json {
            outln!(
                "{}",
                json!({ "file": file.display().to_string(), "type": "raw", "virtual_size": len })
            );
        } else {
            outln!("{}: raw, {len} bytes", file.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let img = OpenOptions::new(true).open(file)?;
    let chain: Vec<Value> = img.chain().into_iter().map(image_json).collect();
    if as_json {
        let mut top = chain[0].clone();
        top["chain"] = Value::Array(chain[1..].to_vec());
        outln!("{}", serde_json::to_string_pretty(&top)?);
        return Ok(ExitCode::SUCCESS);
    }
    for (depth, v) in chain.iter().enumerate() {
        if depth > 0 {
            outln!();
            outln!("parent (depth {depth}):");
        }
        print_object(v, "");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_object(v: &Value, indent: &str) {
    let Value::Object(m) = v else { return };
    for (k, val) in m {
        match val {
            Value::Object(_) => {
                outln!("{indent}{k}:");
                print_object(val, &format!("{indent}  "));
            }
            Value::Array(a) if a.is_empty() => {}
            Value::Array(a) => {
                outln!("{indent}{k}:");
                for item in a {
                    match item {
                        Value::Object(_) => {
                            outln!("{indent}  -");
                            print_object(item, &format!("{indent}    "));
                        }
                        other => outln!("{indent}  - {}", plain(other)),
                    }
                }
            }
            Value::Null => {}
            other => outln!("{indent}{k}: {}", plain(other)),
        }
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn map(file: &Path, as_json: bool) -> Res<ExitCode> {
    let src = vhd::FileStorage::open(file, true).map_err(|e| format!("{}: {e}", file.display()))?;
    let runs: Vec<(u64, u64, Option<usize>)> = if vhd::looks_like_vhd(&src)? {
        let img = OpenOptions::new(true).open(file)?;
        let files: Vec<String> = img
            .chain()
            .iter()
            .map(|i| {
                i.path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            })
            .collect();
        let runs = img.layers(0, img.size())?;
        return print_map(&runs, &files, as_json);
    } else {
        let disk = open_any(file)?;
        vec![(0, disk.size(), Some(0))]
    };
    print_map(&runs, &[file.display().to_string()], as_json)
}

fn print_map(runs: &[(u64, u64, Option<usize>)], files: &[String], as_json: bool) -> Res<ExitCode> {
    if as_json {
        let v: Vec<Value> = runs
            .iter()
            .map(|&(o, l, d)| {
                json!({
                    "offset": o,
                    "length": l,
                    "state": if d.is_some() { "data" } else { "zero" },
                    "depth": d,
                    "file": d.and_then(|d| files.get(d)),
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        outln!("{:>16}  {:>16}  {:<5}  file", "offset", "length", "state");
        for &(o, l, d) in runs {
            let (state, f) = match d {
                Some(d) => ("data", files.get(d).map_or("", String::as_str)),
                None => ("zero", ""),
            };
            outln!("{o:>16}  {l:>16}  {state:<5}  {f}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
