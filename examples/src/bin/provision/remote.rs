//! `provision --api URL`: the command line goes to provisiond, which parses and runs it
//! exactly as `provision --store` would, and streams back progress and the result.

use std::ffi::OsString;
use std::io::BufRead;
use std::time::Duration;

use serde_json::{Value, json};

/// Global options that take a value, and those that do not: they are ours, not the
/// command's, so they are not forwarded.
const VALUED: &[&str] = &["--store", "--api", "--token", "--config", "-c", "--actor"];
const FLAGS: &[&str] = &["--json"];

/// The command line without the program name and the global options. The image of
/// `vdisk import` is made absolute, since provisiond runs in another folder.
pub fn forwarded_args() -> Vec<String> {
    strip_globals(std::env::args_os().skip(1).collect())
}

fn strip_globals(args: Vec<OsString>) -> Vec<String> {
    let mut out = Vec::new();
    let mut args = args.into_iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = args.next() {
        if arg == "--" {
            out.push(arg);
            out.extend(args.by_ref());
            break;
        }
        let name = arg.split_once('=').map_or(arg.as_str(), |(n, _)| n);
        if VALUED.contains(&name) {
            if !arg.contains('=') {
                args.next();
            }
        } else if !FLAGS.contains(&arg.as_str()) {
            out.push(arg);
        }
    }
    if out.len() > 2 && out[0] == "vdisk" && out[1] == "import" {
        for arg in &mut out[2..] {
            if let Ok(path) = std::fs::canonicalize(&arg)
                && path.is_file()
            {
                *arg = path.display().to_string();
            }
        }
    }
    out
}

/// Sends the command line; returns what to print or `(exit code, message)`.
pub fn run(
    url: &str,
    token: Option<&str>,
    actor: &str,
    args: Vec<String>,
    json_out: bool,
) -> Result<String, (u8, String)> {
    let body = json!({ "args": args, "json": json_out }).to_string();
    // Reads wait at most this long; long disk work sends progress meanwhile.
    let response = provision_server::http::send(
        url,
        "POST",
        "/v1/command",
        token,
        actor,
        &body,
        Duration::from_secs(120),
    )
    .map_err(|e| {
        (
            1,
            format!("{e}\n(is provisiond running? use --store DIR to work on a store directly)"),
        )
    })?;
    if response.status != 200 {
        let status = response.status;
        let text = response.text().map_err(|e| (1, e))?;
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(text);
        return Err((
            if status == 401 { 5 } else { 1 },
            format!("API answered {status}: {message}"),
        ));
    }
    let mut bar: Option<indicatif::ProgressBar> = None;
    let mut outcome = Err((
        1,
        "the API closed the connection without a result".to_owned(),
    ));
    for line in response.body.lines() {
        let line = line.map_err(|e| (1, format!("reading the API's answer: {e}")))?;
        let Ok(value) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if let Some(p) = value.get("progress") {
            let bar = bar.get_or_insert_with(|| {
                provision_server::output::progress_bar(p["what"].as_str().unwrap_or("working"))
            });
            bar.set_length(p["total"].as_u64().unwrap_or(0));
            bar.set_position(p["done"].as_u64().unwrap_or(0));
        } else if let Some(code) = value["exit"].as_u64() {
            outcome = if code == 0 {
                Ok(value["output"].as_str().unwrap_or("").to_owned())
            } else {
                Err((
                    u8::try_from(code).unwrap_or(1),
                    value["error"].as_str().unwrap_or("failed").to_owned(),
                ))
            };
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::strip_globals;

    #[test]
    fn global_options_stay_here() {
        let args = [
            "--api",
            "http://x",
            "--json",
            "device",
            "--token=t",
            "add",
            "52:54:00:00:00:01",
            "a",
            "--actor",
            "me",
        ];
        assert_eq!(
            strip_globals(args.iter().map(Into::into).collect()),
            ["device", "add", "52:54:00:00:00:01", "a"]
        );
        let args = ["personality", "set", "a", "--", "--json=x"];
        assert_eq!(strip_globals(args.iter().map(Into::into).collect()), args);
    }
}
