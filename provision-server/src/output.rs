//! How the binaries show results: aligned tables for people, progress bars on
//! terminals only, and writes to stdout and stderr that never panic.

pub mod vhd;

use std::fmt;
use std::io::{IsTerminal, Write};

/// The exit status of a process that was writing to a pipe whose reader went away:
/// the status a shell reports for a C tool killed by SIGPIPE (128 + 13).
pub const BROKEN_PIPE_STATUS: i32 = 141;

/// Writes to stdout, for the binaries' [`out!`](crate::out) and
/// [`outln!`](crate::outln) (use them, never `print!`/`println!`, which panic when
/// stdout is a closed pipe). When the reader has gone (`vhd info big.vhd | head`:
/// EPIPE) the process ends at once and quietly, with [`BROKEN_PIPE_STATUS`], as
/// `cat` would; any other write error (a full disk behind `>`) ends it with a message
/// on stderr and status 1.
///
/// Not done instead by restoring SIGPIPE's default action at start-up: the servers
/// (provisiond, nbd-serve) write to sockets with `writev`, which raises SIGPIPE when
/// a client has gone, and the default action would kill the whole server.
pub fn write_stdout(args: fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) else {
        return;
    };
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(BROKEN_PIPE_STATUS);
    }
    write_stderr(format_args!("error writing to stdout: {e}\n"));
    std::process::exit(1);
}

/// Writes to stderr, for [`errln!`](crate::errln): a closed or broken stderr loses
/// the message instead of panicking (`eprintln!` would).
pub fn write_stderr(args: fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// Prints `rows` under `headers` as left-aligned columns separated by two spaces.
///
/// ```
/// let text = provision_server::output::table(&["NAME", "SIZE"], &[vec!["os".into(), "64 MiB".into()]]);
/// assert_eq!(text, "NAME  SIZE\nos    64 MiB\n");
/// ```
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_cells: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header_cells).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A byte count for people: `512 B`, `64 MiB`, `1.5 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Seconds since the Unix epoch as `YYYY-MM-DD HH:MM:SSZ` (UTC).
///
/// ```
/// assert_eq!(provision_server::output::utc_time(1_795_630_566), "2026-11-25 18:16:06Z");
/// ```
pub fn utc_time(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (the proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A progress callback `(done, total)` that draws a bar when stderr is a terminal and
/// does nothing otherwise. Call `finish` on the returned bar when done.
pub fn progress_bar(what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    let style = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_owned());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_for_people() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(64 << 20), "64 MiB");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
    }
}
