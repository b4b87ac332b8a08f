//! `/tmp/perf-PID.map` (perf's map for code it has no file for): one line
//! per symbol, `START SIZE NAME` in hex, appended at every load, so
//! `perf report` names module functions of every generation, their
//! trampolines and the removed-function stubs.

use std::io::Write as _;

/// Path of this process's map.
pub fn path() -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/tmp/perf-{}.map", std::process::id()))
}

/// Appends `text` (whole lines) to the map; a failure is reported once per
/// call on stderr and otherwise ignored (profiling must not stop a load).
pub fn append(text: &str) {
    let r = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path())
        .and_then(|mut f| f.write_all(text.as_bytes()));
    if let Err(e) = r {
        let _ = writeln!(std::io::stderr(), "hcr: warning: {}: {e}", path().display());
    }
}

/// One line of the map.
pub fn line(out: &mut String, start: u64, size: u64, name: std::fmt::Arguments<'_>) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "{start:x} {size:x} {name}");
}
