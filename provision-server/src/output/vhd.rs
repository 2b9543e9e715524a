//! What the `vhd` command prints: `info` (text or JSON), `map`, `check`, and the
//! results of `create`, `convert` and `merge`. The work itself is the `vhd` crate's.

use std::path::Path;
use std::process::ExitCode;

use serde_json::{Value, json};
use vhd::{Disk, DiskType, Image, OpenOptions};

use crate::outln;

/// A failed command: the `vhd` crate's error or an output error.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// `vhd info`: the footer, header and parent links of the image and its chain.
pub fn info(file: &Path, as_json: bool) -> Result<ExitCode> {
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

/// A JSON object as indented `key: value` lines (nulls and empty lists left out).
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

/// `vhd map`: the runs of data and zeros, as a table or JSON.
pub fn map(file: &Path, as_json: bool) -> Result<ExitCode> {
    let map = vhd::map_file(file)?;
    let files: Vec<String> = map.files.iter().map(|p| p.display().to_string()).collect();
    if as_json {
        let v: Vec<Value> = map
            .runs
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
        for &(o, l, d) in &map.runs {
            let (state, f) = match d {
                Some(d) => ("data", files.get(d).map_or("", String::as_str)),
                None => ("zero", ""),
            };
            outln!("{o:>16}  {l:>16}  {state:<5}  {f}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `vhd check`: every problem found, then a verdict; exit 1 when inconsistent.
pub fn check(file: &Path) -> ExitCode {
    let report = vhd::check_file(file);
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
        ExitCode::SUCCESS
    } else {
        outln!("{}: {} problem(s)", file.display(), report.problems.len());
        ExitCode::from(1)
    }
}

/// `vhd create`: a fixed or dynamic image as `options` say, or with `parent` a
/// differencing child of it.
pub fn create(file: &Path, options: vhd::CreateOptions, parent: Option<&Path>) -> Result<ExitCode> {
    let img = match parent {
        Some(parent) => vhd::create_differencing(file, parent)?,
        None => options.create(file)?,
    };
    outln!(
        "created {} ({}, {} bytes)",
        file.display(),
        img.disk_type().name(),
        img.size()
    );
    Ok(ExitCode::SUCCESS)
}

/// `vhd convert`, with a progress bar.
pub fn convert(input: &Path, output: &Path, target: vhd::Target) -> Result<ExitCode> {
    let n = with_progress("convert", |p| vhd::convert_file(input, output, target, p))?;
    let (i, o) = (input.display(), output.display());
    outln!("converted {i} -> {o} ({n} bytes of data)");
    Ok(ExitCode::SUCCESS)
}

/// `vhd merge`, with a progress bar.
pub fn merge(child: &Path) -> Result<ExitCode> {
    let n = with_progress("merge", |p| vhd::merge(child, p))?;
    outln!("merged {n} bytes of {} into its parent", child.display());
    Ok(ExitCode::SUCCESS)
}

/// Runs a long operation behind a progress bar on stderr (when it is a terminal).
fn with_progress<T>(
    what: &str,
    work: impl FnOnce(vhd::Progress<'_>) -> vhd::Result<T>,
) -> vhd::Result<T> {
    let bar = super::progress_bar(what);
    let result = work(&mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    result
}
