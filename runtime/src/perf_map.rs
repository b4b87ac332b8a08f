//! `/tmp/perf-PID.map` (perf's map for code it has no file for): one line
//! per symbol, `START SIZE NAME` in hex, appended at every load, so
//! `perf report` names module functions of every generation, their
//! trampolines and the removed-function stubs.
//!
//! A map last written before this process started was left by an earlier
//! process that had the same PID: its lines name code that is not here,
//! and at addresses this process may reuse, so the first write of this
//! process truncates it. A map written since this process started is kept
//! and appended to (another JIT in the process, such as a host
//! interpreter's, may share it).

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

/// Whether this process has written its map yet.
static WRITTEN: AtomicBool = AtomicBool::new(false);

/// Path of this process's map.
pub fn path() -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/tmp/perf-{}.map", std::process::id()))
}

/// Appends `text` (whole lines) to the map; a failure is reported once per
/// call on stderr and otherwise ignored (profiling must not stop a load).
pub fn append(text: &str) {
    let path = path();
    let first = !WRITTEN.swap(true, Ordering::Relaxed);
    let truncate = first && left_by_earlier_process(&path);
    let mut o = std::fs::OpenOptions::new();
    o.create(true);
    if truncate {
        o.write(true).truncate(true);
    } else {
        o.append(true);
    }
    let r = o.open(&path).and_then(|mut f| f.write_all(text.as_bytes()));
    if let Err(e) = r {
        let _ = writeln!(std::io::stderr(), "hcr: warning: {}: {e}", path.display());
    }
}

/// Whether the map at `path` exists and was last written before this
/// process started.
fn left_by_earlier_process(path: &std::path::Path) -> bool {
    let Ok(modified) = std::fs::metadata(path).and_then(|m| m.modified()) else {
        return false;
    };
    match process_start() {
        Some(start) => stale(modified, start),
        None => false,
    }
}

/// A map modified more than two clock ticks before the process started is
/// stale (the start time is known to a tick).
fn stale(modified: SystemTime, start: SystemTime) -> bool {
    modified + Duration::from_millis(20) < start
}

/// When this process started: now, less the time since it started (the
/// boot clock now, less the start in clock ticks since boot, field 22 of
/// `/proc/self/stat`).
fn process_start() -> Option<SystemTime> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; fields after it follow
    // its closing parenthesis, the first of them being field 3.
    let after = &stat[stat.rfind(')')? + 1..];
    let ticks: u64 = after.split_whitespace().nth(19)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions; it only reads a limit.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0)?;
    let started =
        Duration::from_secs(ticks / hz) + Duration::from_nanos((ticks % hz) * 1_000_000_000 / hz);
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return None;
    }
    let boot_now = Duration::new(
        u64::try_from(ts.tv_sec).ok()?,
        u32::try_from(ts.tv_nsec).ok()?,
    );
    let now = SystemTime::now();
    Some(now - boot_now.checked_sub(started)?)
}

/// One line of the map.
pub fn line(out: &mut String, start: u64, size: u64, name: std::fmt::Arguments<'_>) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "{start:x} {size:x} {name}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_started_in_the_past_and_after_boot() {
        let start = process_start().expect("start time from /proc");
        let now = SystemTime::now();
        assert!(start <= now + Duration::from_secs(1), "{start:?} {now:?}");
        // The test binary has not been running for an hour.
        assert!(start + Duration::from_secs(3600) > now, "{start:?} {now:?}");
    }

    #[test]
    fn a_map_from_before_the_start_is_stale_one_written_since_is_not() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(stale(start - Duration::from_secs(5), start));
        assert!(stale(start - Duration::from_millis(50), start));
        assert!(!stale(start - Duration::from_millis(5), start));
        assert!(!stale(start + Duration::from_secs(3), start));
    }

    #[test]
    fn a_stale_file_is_detected_by_its_mtime() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("perf-1.map");
        std::fs::write(&p, "1 1 old\n").unwrap();
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(86_400 * 400))
            .unwrap();
        assert!(left_by_earlier_process(&p));
        f.set_modified(SystemTime::now()).unwrap();
        assert!(!left_by_earlier_process(&p));
        assert!(!left_by_earlier_process(&t.path().join("absent.map")));
    }

    /// The only test in this binary that writes the map: the first write
    /// truncates a map left from before the start, later writes append.
    #[test]
    fn the_first_write_clears_a_stale_map_and_later_writes_append() {
        let p = path();
        std::fs::write(&p, "1 1 left by an earlier process\n").unwrap();
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        append("2 2 first\n");
        append("3 3 second\n");
        let map = std::fs::read_to_string(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        assert_eq!(map, "2 2 first\n3 3 second\n");
    }
}
