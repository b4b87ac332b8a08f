//! A second thread for the large, independent parts of a load (reading
//! and verifying an image's segments, building its crash table), used only
//! when it actually runs.
//!
//! One helper thread per process, started at the first use, sleeps until a
//! caller posts work. The caller then does its own part and the posted work
//! itself; when it is done, work the helper has not started yet is
//! withdrawn (so a busy machine, on which the helper is not scheduled in
//! time, costs the caller nothing but the post), and work the helper has
//! started is waited for. Posted work must therefore be safe to run by both
//! threads at once: it takes its units from a shared counter.
//!
//! `HCR_LOAD_THREADS=1` keeps every load on the calling thread (no helper
//! is started).

use std::sync::{Condvar, Mutex, OnceLock};

/// Work the helper may run: a `&(dyn Fn() + Sync)` whose lifetime `share`
/// guarantees (the caller waits until the helper is done with it).
#[derive(Clone, Copy)]
struct Job(*const (dyn Fn() + Sync + 'static));

// SAFETY: the pointee is `Sync` (so callable from any thread), and it is
// only called while the posting caller keeps it alive (see `share`).
unsafe impl Send for Job {}

enum Slot {
    /// No work.
    Empty,
    /// Posted, not started.
    Posted(Job),
    /// Being run by the helper.
    Running,
    /// Run by the helper; the caller has not looked yet.
    Done,
}

struct Helper {
    slot: Mutex<Slot>,
    cv: Condvar,
}

/// The process's helper, started at the first call (`None` on a machine
/// with one CPU, with `HCR_LOAD_THREADS=1` in the environment, or when no
/// thread can be started).
fn helper() -> Option<&'static Helper> {
    static HELPER: OnceLock<Option<&'static Helper>> = OnceLock::new();
    *HELPER.get_or_init(|| {
        if !enabled() {
            return None;
        }
        let h: &'static Helper = Box::leak(Box::new(Helper {
            slot: Mutex::new(Slot::Empty),
            cv: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("hcr-helper".into())
            .spawn(move || run(h))
            .ok()
            .map(|_| h)
    })
}

/// True when the runtime may use a second thread: more than one CPU, and
/// not `HCR_LOAD_THREADS=1`.
pub fn enabled() -> bool {
    cpus() >= 2 && std::env::var_os("HCR_LOAD_THREADS").is_none_or(|v| v != "1")
}

fn run(h: &'static Helper) {
    loop {
        let job = {
            let Ok(mut slot) = h.slot.lock() else { return };
            loop {
                if let Slot::Posted(job) = *slot {
                    *slot = Slot::Running;
                    break job;
                }
                slot = match h.cv.wait(slot) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            }
        };
        // SAFETY: the job was posted by `share`, which does not return (so
        // the closure stays alive) until the slot says `Done`, set below.
        // A panic is contained: the work's units record their own results,
        // so one left unfinished is seen by the caller.
        let f = unsafe { &*job.0 };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let Ok(mut slot) = h.slot.lock() else { return };
        *slot = Slot::Done;
        h.cv.notify_all();
    }
}

/// Drops `value` on a background thread when the runtime may use one
/// ([`enabled`]), otherwise here: freeing a retired image's tables (one
/// allocation or count per module) is work the reloading thread need not
/// wait for. Nothing `value` owns may need this thread or a lock the caller
/// holds to be freed. In a child process forked after the thread started
/// (which has no such thread) it is dropped here.
pub fn drop_later<T: Send + 'static>(value: T) {
    match reaper() {
        Some((pid, r)) if *pid == std::process::id() => {
            let mut q = r.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.push(Box::new(value));
            r.cv.notify_one();
        }
        _ => drop(value),
    }
}

/// Values waiting to be dropped, and the reaper thread's wake-up (a lock
/// and a condition variable: race detectors understand them).
struct Reaper {
    queue: Mutex<Vec<Box<dyn Send>>>,
    cv: Condvar,
}

/// The reaper thread, started at the first call, with the process it was
/// started in (`None` when the runtime may use no second thread).
fn reaper() -> &'static Option<(u32, &'static Reaper)> {
    static REAPER: OnceLock<Option<(u32, &'static Reaper)>> = OnceLock::new();
    REAPER.get_or_init(|| {
        if !enabled() {
            return None;
        }
        let r: &'static Reaper = Box::leak(Box::new(Reaper {
            queue: Mutex::new(Vec::new()),
            cv: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("hcr-reaper".into())
            .spawn(move || loop {
                let doomed = {
                    let mut q = r.queue.lock().unwrap_or_else(|p| p.into_inner());
                    while q.is_empty() {
                        q = r.cv.wait(q).unwrap_or_else(|p| p.into_inner());
                    }
                    std::mem::take(&mut *q)
                };
                // A panic in a drop loses what was left of that batch only.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(doomed)));
            })
            .ok()
            .map(|_| (std::process::id(), r))
    })
}

/// CPUs this thread may run on.
pub fn cpus() -> usize {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity
    // writes at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return 1;
        }
        libc::CPU_COUNT(&set) as usize
    }
}

/// Runs `mine`, then `work`, on this thread, while the helper (when there
/// is one, it is free and it gets to run in time) runs `work` too. Returns
/// when `work` has returned on this thread and the helper is not inside
/// it. `work` must share its units between the threads running it (each
/// taken once) and finish them all when run alone.
pub fn share<R>(work: &(dyn Fn() + Sync), mine: impl FnOnce() -> R) -> R {
    let posted = helper().is_some_and(|h| {
        let Ok(mut slot) = h.slot.lock() else {
            return false;
        };
        if !matches!(*slot, Slot::Empty) {
            return false; // another caller's work
        }
        let job: *const (dyn Fn() + Sync + '_) = work;
        // SAFETY: only the lifetime changes. The helper calls the job only
        // between taking it (`Posted` → `Running`) and setting `Done`; this
        // function withdraws a job not yet taken and waits for `Done`
        // otherwise (`Finish`, also when unwinding) before `work` goes out
        // of scope.
        let job: *const (dyn Fn() + Sync + 'static) = unsafe { std::mem::transmute(job) };
        *slot = Slot::Posted(Job(job));
        h.cv.notify_all();
        true
    });
    let _finish = Finish(posted);
    let r = mine();
    work();
    r
}

/// Withdraws the posted job, or waits until the helper has run it, when
/// dropped (`share` returning or unwinding).
struct Finish(bool);

impl Drop for Finish {
    fn drop(&mut self) {
        if let (true, Some(h)) = (self.0, helper()) {
            finish(h);
        }
    }
}

/// Withdraws the posted job, or waits until the helper has run it.
fn finish(h: &Helper) {
    let mut slot = match h.slot.lock() {
        Ok(s) => s,
        Err(p) => p.into_inner(),
    };
    loop {
        match *slot {
            Slot::Posted(_) | Slot::Done | Slot::Empty => {
                *slot = Slot::Empty;
                return;
            }
            Slot::Running => {
                slot = match h.cv.wait(slot) {
                    Ok(s) => s,
                    Err(p) => p.into_inner(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn a_value_dropped_later_is_dropped_once() {
        struct Flag(Arc<AtomicUsize>, Arc<AtomicUsize>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
                if std::thread::current().name() == Some("hcr-reaper") {
                    self.1.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        let (drops, off_thread) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let flag = || Flag(drops.clone(), off_thread.clone());
        for _ in 0..50 {
            drop_later(vec![flag(), flag()]);
        }
        let t = std::time::Instant::now();
        while drops.load(Ordering::SeqCst) < 100 && t.elapsed().as_secs() < 10 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(drops.load(Ordering::SeqCst), 100);
        let expected = if enabled() { 100 } else { 0 };
        assert_eq!(off_thread.load(Ordering::SeqCst), expected);
    }

    #[test]
    fn every_unit_runs_once_whoever_runs_it() {
        for round in 0..200 {
            let next = AtomicUsize::new(0);
            let done: Vec<AtomicUsize> = (0..64).map(|_| AtomicUsize::new(0)).collect();
            let work = || {
                while let Some(d) = done.get(next.fetch_add(1, Ordering::Relaxed)) {
                    d.fetch_add(1, Ordering::Relaxed);
                }
            };
            let r = share(&work, || round);
            assert_eq!(r, round);
            // After `share`, nothing runs `work` any more: the counts are
            // final.
            assert!(done.iter().all(|d| d.load(Ordering::Relaxed) == 1));
        }
    }
}
