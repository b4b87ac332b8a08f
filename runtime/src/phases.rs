//! Where a program's first load spends its time, when asked:
//! `HCR_LOAD_PHASES=1` prints one line to stderr once the image is loaded
//! and its constructors have run,
//!
//! `hcr: first load of PATH: TOTAL ms (PHASE MS, PHASE MS, ...)`
//!
//! each phase's milliseconds since the one before, in load order (a phase
//! the load did not go through is left out). Off, a phase's mark costs one
//! relaxed load of a flag; later reloads are never timed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Set while a first load is timed.
static ON: AtomicBool = AtomicBool::new(false);
/// The marks of the load being timed: `(phase, when it ended)`, the first
/// one its start.
static MARKS: Mutex<Vec<(&'static str, Instant)>> = Mutex::new(Vec::new());

/// A first load being timed (or not, when `HCR_LOAD_PHASES` does not ask
/// for it): [`Timing::report`] prints its line; dropped instead (the load
/// failed), it stops the timing and prints nothing.
pub(crate) struct Timing(());

/// Starts timing a first load when `HCR_LOAD_PHASES` asks for it.
pub(crate) fn start() -> Timing {
    let asked = std::env::var_os("HCR_LOAD_PHASES").is_some_and(|v| !v.is_empty() && v != "0");
    let mut m = MARKS.lock().unwrap_or_else(|p| p.into_inner());
    m.clear();
    if asked {
        m.push(("", Instant::now()));
    }
    ON.store(asked, Ordering::Relaxed);
    Timing(())
}

impl Drop for Timing {
    fn drop(&mut self) {
        ON.store(false, Ordering::Relaxed);
    }
}

/// Marks the end of `phase` (while a first load is timed).
#[inline]
pub(crate) fn mark(phase: &'static str) {
    if ON.load(Ordering::Relaxed) {
        MARKS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((phase, Instant::now()));
    }
}

impl Timing {
    /// Ends the timing (nothing is marked after this) and prints its line
    /// for the image at `path`.
    pub(crate) fn report(self, path: &std::path::Path) {
        if ON.swap(false, Ordering::Relaxed) {
            let marks = std::mem::take(&mut *MARKS.lock().unwrap_or_else(|p| p.into_inner()));
            if let Some(line) = line(path, &marks, Instant::now()) {
                eprintln!("{line}");
            }
        }
    }
}

/// The report's line for `marks` (the first one the start), the load
/// over at `end`; `None` when nothing was marked.
///
/// Each phase is printed as the difference of the rounded times since the
/// start at its two ends, so the printed phases add up exactly to the
/// printed time of the last one (never more than the printed total), where
/// rounding each on its own could drift by up to half a hundredth a phase.
fn line(path: &std::path::Path, marks: &[(&str, Instant)], end: Instant) -> Option<String> {
    let (_, start) = *marks.first()?;
    // Hundredths of a millisecond since the start, rounded to nearest.
    let at = |t: Instant| (t.saturating_duration_since(start).as_nanos() + 5_000) / 10_000;
    let ms = |h: u128| format!("{}.{:02}", h / 100, h % 100);
    let phases: Vec<String> = marks
        .windows(2)
        .map(|w| format!("{} {}", w[1].0, ms(at(w[1].1).saturating_sub(at(w[0].1)))))
        .collect();
    Some(format!(
        "hcr: first load of {}: {} ms ({})",
        path.display(),
        ms(at(end)),
        phases.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_line_names_each_phase_with_its_own_time() {
        let t = Instant::now();
        let at = |ms: u64| t + Duration::from_millis(ms);
        let marks = [("start", t), ("manifest", at(2)), ("decode", at(5))];
        assert_eq!(
            line(std::path::Path::new("/x/app.hcr"), &marks, at(6)).as_deref(),
            Some("hcr: first load of /x/app.hcr: 6.00 ms (manifest 2.00, decode 3.00)")
        );
        assert_eq!(line(std::path::Path::new("a"), &[], t), None);
    }

    #[test]
    fn the_phases_add_up_to_the_printed_total() {
        // Three phases of 0.004 ms each: rounded alone they would print
        // 0.00 three times against a total of 0.01.
        let t = Instant::now();
        let at = |us: u64| t + Duration::from_micros(us);
        let marks = [("start", t), ("a", at(4)), ("b", at(8)), ("c", at(12))];
        assert_eq!(
            line(std::path::Path::new("p"), &marks, at(12)).as_deref(),
            Some("hcr: first load of p: 0.01 ms (a 0.00, b 0.01, c 0.00)")
        );
    }
}
