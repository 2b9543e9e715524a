//! `vhd`: inspect, create, convert, merge, check and map VHD images (vDisks).
//!
//! Exit codes: 0 success (for `check`: the image is consistent), 1 runtime error or an
//! inconsistent image, 2 usage error, 141 when stdout's reader went away
//! (`vhd map big.vhd | head`; no message).

// Results go through `outln!` (a closed stdout ends the process quietly).
#![deny(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use provision_server::output::vhd as vhd_out;
use provision_server::{LogFormat, errln, parse_size};
use vhd::{CreateOptions, Target};

#[derive(Parser, Debug)]
#[command(
    name = "vhd",
    version,
    about = "Inspect, create, convert, merge, check and map VHD images (vDisks)"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    provision_server::init_logging(cli.log_format);
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            errln!("vhd: error: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(cmd: Command) -> vhd_out::Result<ExitCode> {
    let block_size = |n: u64| u32::try_from(n).map_err(|_| "block size too large");
    match cmd {
        Command::Info { file, json } => vhd_out::info(&file, json),
        Command::Create {
            file,
            size,
            image_type,
            block_size: bs,
            parent,
        } => {
            let size = size.unwrap_or_default();
            let options = match image_type {
                ImageType::Fixed => CreateOptions::fixed(size),
                ImageType::Dynamic => CreateOptions::dynamic(size).block_size(block_size(bs)?),
            };
            vhd_out::create(&file, options, parent.as_deref())
        }
        Command::Convert {
            input,
            output,
            to,
            block_size: bs,
        } => {
            let target = match to {
                ConvertTo::Raw => Target::Raw,
                ConvertTo::Fixed => Target::Fixed,
                ConvertTo::Dynamic => Target::Dynamic {
                    block_size: block_size(bs)?,
                },
            };
            vhd_out::convert(&input, &output, target)
        }
        Command::Merge { child } => vhd_out::merge(&child),
        Command::Check { file } => Ok(vhd_out::check(&file)),
        Command::Map { file, json } => vhd_out::map(&file, json),
    }
}
