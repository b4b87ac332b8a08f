//! A second thread for the large, independent parts of a load (reading
//! and verifying an image's segments, building its crash table), used only
//! when it actually runs.
//!
//! One helper thread per process, started at the first use, sleeps until a
//! caller posts work; after [`IDLE`] without work it ends, and the next post
//! starts it again. (A program that is otherwise single-threaded is so
//! again between large loads: a reload's `mprotect` and `munmap` then
//! interrupt no other CPU to flush its TLB.) The caller then does its own part and the posted work
//! itself; when it is done, work the helper has not started yet is
//! withdrawn (so a busy machine, on which the helper is not scheduled in
//! time, costs the caller nothing but the post), and work the helper has
//! started is waited for. Posted work must therefore be safe to run by both
//! threads at once: it takes its units from a shared counter.
//!
//! `HCR_LOAD_THREADS=1` keeps every load on the calling thread (no helper
//! is started).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

/// How long the helper's thread waits for work before it ends.
const IDLE: Duration = Duration::from_secs(1);

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
    /// A thread serves the slot (changed only with `slot` locked).
    alive: AtomicBool,
}

/// The process's helper (`None` on a machine with one CPU or with
/// `HCR_LOAD_THREADS=1` in the environment); its thread is started by
/// [`share`] when it posts work and none is running, or ahead of a large
/// first load by [`start_early`].
fn helper() -> Option<&'static Helper> {
    static HELPER: OnceLock<Option<&'static Helper>> = OnceLock::new();
    *HELPER.get_or_init(|| {
        if !enabled() {
            return None;
        }
        Some(Box::leak(Box::new(Helper {
            slot: Mutex::new(Slot::Empty),
            cv: Condvar::new(),
            alive: AtomicBool::new(false),
        })))
    })
}

/// True when the runtime may use a second thread: more than one CPU, and
/// not `HCR_LOAD_THREADS=1`.
pub fn enabled() -> bool {
    cpus() >= 2 && std::env::var_os("HCR_LOAD_THREADS").is_none_or(|v| v != "1")
}

fn run(h: &'static Helper) {
    // Started ahead of its work (`start_early`): the wait is spent growing
    // this thread's allocation arena, once the thread that started it (and
    // yielded to this one) has had its processor back.
    if let Ok(slot) = h.slot.lock() {
        if matches!(*slot, Slot::Empty) {
            let empty = match h.cv.wait_timeout(slot, ARENA_AFTER) {
                Ok((slot, _)) => matches!(*slot, Slot::Empty),
                Err(_) => false,
            };
            if empty {
                grow_arena();
            }
        }
    }
    loop {
        let job = {
            let Ok(mut slot) = h.slot.lock() else { return };
            loop {
                if let Slot::Posted(job) = *slot {
                    *slot = Slot::Running;
                    break job;
                }
                let (s, waited) = match h.cv.wait_timeout(slot, IDLE) {
                    Ok(r) => r,
                    Err(_) => return,
                };
                slot = s;
                if waited.timed_out() && matches!(*slot, Slot::Empty) {
                    // Ends with the slot locked: a post after this starts
                    // a new thread.
                    h.alive.store(false, Ordering::Relaxed);
                    return;
                }
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

/// Starts the helper's thread now, when there is a helper and its thread
/// is not running, for work a load will post soon (a first load's first
/// post comes a millisecond or more after the file is open). Without work
/// it ends after [`IDLE`], as after any load.
pub fn start_early() {
    let Some(h) = helper() else { return };
    let started = match h.slot.lock() {
        Ok(_slot) => start_thread(h),
        Err(_) => Started::No,
    };
    if started == Started::New {
        let_new_thread_run();
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Started {
    /// The thread was running already.
    Running,
    /// A new thread was started.
    New,
    /// None could be started.
    No,
}

/// Starts the helper's thread unless it runs. Called with the slot locked
/// (`alive` changes only so); a new thread is let run
/// ([`let_new_thread_run`]) once the lock is released.
fn start_thread(h: &'static Helper) -> Started {
    if h.alive.load(Ordering::Relaxed) {
        return Started::Running;
    }
    let started = std::thread::Builder::new()
        .name("hcr-helper".into())
        .spawn(move || run(h))
        .is_ok();
    if !started {
        return Started::No;
    }
    h.alive.store(true, Ordering::Relaxed);
    Started::New
}

/// Bytes of allocation arena a helper thread takes before its first work:
/// about what a first load of 500 modules × 50 functions allocates on it.
const ARENA_AHEAD: usize = 1 << 20;

/// How long a helper started ahead of its work sleeps before it grows its
/// arena: a new thread is often run on its starter's processor first
/// ([`let_new_thread_run`]), which then waited for the arena's growth
/// (0.1–0.3 ms); woken from a sleep, it is run on an idle one.
const ARENA_AFTER: Duration = Duration::from_micros(100);

/// Grows this thread's allocation arena by [`ARENA_AHEAD`] bytes, in
/// blocks the C library takes from the arena (under its `mmap` threshold),
/// freed at once. The C library grows a thread's arena (other than the main
/// thread's) by exactly what an allocation lacks: one `mprotect` of a page
/// at a time, each taking the process's memory map lock for writing, which
/// the loading thread's page faults then wait for (80 such calls on the
/// helper during one first load of 500 × 50). Freed, the arena's pages go
/// back but its writable extent stays, so what the load then allocates
/// here faults its pages in without a system call of its own. (With
/// another allocator, such as mimalloc under `hcr run`, this only takes
/// and frees a few blocks.)
fn grow_arena() {
    const BLOCK: usize = 64 << 10;
    let blocks: Vec<Box<[std::mem::MaybeUninit<u8>]>> = (0..ARENA_AHEAD / BLOCK)
        .map(|_| Box::new_uninit_slice(BLOCK))
        .collect();
    drop(std::hint::black_box(blocks));
}

/// Called right after starting a thread that should run beside this one.
/// The scheduler often queues a new thread on its parent's CPU, where it
/// waits for the parent's time slice to end or for a balancing pass to
/// move it to an idle CPU: measured on a 2-CPU machine with the parent
/// busy, in 9 of 20 starts the new thread first ran 0.8–3.1 ms after
/// `clone` (the others within 65–175 µs), so a helper started by a first
/// load's first post could miss the manifest's decoding altogether.
/// Yielding once lets it run at once: 20 of 20 ran within 63–183 µs, the
/// parent back within 95–161 µs. (Where the thread already runs
/// elsewhere, the yield returns at once.)
fn let_new_thread_run() {
    // SAFETY: `sched_yield` has no preconditions and touches no memory.
    unsafe { libc::sched_yield() };
}

/// Runs `work` on this thread and on the helper, as [`share`] with nothing
/// of this thread's own first: a [`hcr_loader::Share`] that lends the
/// helper.
pub fn lend(work: &(dyn Fn() + Sync)) {
    share(work, || ());
}

/// Runs `mine`, then `work`, on this thread, while the helper (when there
/// is one, it is free and it gets to run in time) runs `work` too. Returns
/// when `work` has returned on this thread and the helper is not inside
/// it. `work` must share its units between the threads running it (each
/// taken once) and finish them all when run alone.
pub fn share<R>(work: &(dyn Fn() + Sync), mine: impl FnOnce() -> R) -> R {
    let mut started = Started::Running;
    let posted = helper().is_some_and(|h| {
        let Ok(mut slot) = h.slot.lock() else {
            return false;
        };
        if !matches!(*slot, Slot::Empty) {
            return false; // another caller's work
        }
        // (A new thread waits for the lock, then finds the job.)
        started = start_thread(h);
        if started == Started::No {
            return false;
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
    if started == Started::New {
        let_new_thread_run();
    }
    let _finish = Finish(posted);
    let r = mine();
    work();
    r
}

/// A unit of work shared through [`share`] that whichever thread comes to
/// it first runs, once; its result is kept for the caller.
pub(crate) struct OnceUnit<T> {
    taken: AtomicBool,
    out: Mutex<Option<T>>,
}

impl<T> OnceUnit<T> {
    pub(crate) fn new() -> Self {
        OnceUnit {
            taken: AtomicBool::new(false),
            out: Mutex::new(None),
        }
    }

    /// Runs `f` unless a thread has run it already.
    pub(crate) fn run(&self, f: impl FnOnce() -> T) {
        if !self.taken.swap(true, Ordering::Relaxed) {
            let r = f();
            if let Ok(mut out) = self.out.lock() {
                *out = Some(r);
            }
        }
    }

    /// The result; `f()`, run here, when there is none (the thread that
    /// took the unit panicked).
    pub(crate) fn take_or(self, f: impl FnOnce() -> T) -> T {
        self.out.into_inner().ok().flatten().unwrap_or_else(f)
    }
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

    /// The helper's thread ends when idle, and the next post starts it
    /// again; every unit still runs once.
    #[test]
    fn an_idle_helper_ends_and_starts_again() {
        let Some(h) = helper() else {
            return; // one CPU, or HCR_LOAD_THREADS=1
        };
        units_run_once();
        wait_until_idle(h);
        units_run_once();
        // (Posting started it again; it ends only after another idle spell.)
        assert!(h.alive.load(Ordering::Relaxed));
    }

    /// A helper started ahead of a load runs, waiting for work, before
    /// anything is posted; work posted then is shared as ever.
    #[test]
    fn a_helper_started_early_is_running_before_the_first_post() {
        let Some(h) = helper() else {
            return; // one CPU, or HCR_LOAD_THREADS=1
        };
        // From no thread.
        wait_until_idle(h);
        start_early();
        assert!(h.alive.load(Ordering::Relaxed));
        let has_helper_thread = || {
            std::fs::read_dir("/proc/self/task").is_ok_and(|d| {
                d.flatten().any(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.trim() == "hcr-helper")
                })
            })
        };
        assert!(
            (0..100).any(|_| has_helper_thread() || {
                std::thread::sleep(Duration::from_millis(10));
                false
            }),
            "no hcr-helper thread after start_early"
        );
        units_run_once();
    }

    /// After [`grow_arena`], the calling thread's allocations lie in a
    /// writable stretch of at least [`ARENA_AHEAD`] bytes: growing into it
    /// takes no `mprotect`.
    #[test]
    fn a_grown_arena_is_writable_ahead_of_its_allocations() {
        let writable_around = |addr: usize| {
            let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
            maps.lines()
                .find_map(|l| {
                    let (range, rest) = l.split_once(' ')?;
                    let (lo, hi) = range.split_once('-')?;
                    let lo = usize::from_str_radix(lo, 16).ok()?;
                    let hi = usize::from_str_radix(hi, 16).ok()?;
                    (lo <= addr && addr < hi && rest.starts_with("rw")).then_some(hi - lo)
                })
                .unwrap_or(0)
        };
        let len = std::thread::spawn(move || {
            grow_arena();
            // (Larger than what the C library keeps per thread for reuse,
            // which may be blocks other threads allocated.)
            let b = std::hint::black_box(vec![1u8; 8 << 10]);
            writable_around(b.as_ptr() as usize)
        })
        .join()
        .unwrap();
        assert!(
            len >= ARENA_AHEAD,
            "{len} bytes writable around a new allocation"
        );
    }

    /// Shares 256 units through [`share`] and checks each ran once.
    fn units_run_once() {
        let next = AtomicUsize::new(0);
        let done: Vec<AtomicUsize> = (0..256).map(|_| AtomicUsize::new(0)).collect();
        let work = || {
            while let Some(d) = done.get(next.fetch_add(1, Ordering::Relaxed)) {
                d.fetch_add(1, Ordering::Relaxed);
            }
        };
        share(&work, || ());
        assert!(done.iter().all(|d| d.load(Ordering::Relaxed) == 1));
    }

    /// Waits until the helper's thread has ended for want of work (other
    /// tests in this process may post meanwhile: an idle spell is waited
    /// for).
    fn wait_until_idle(h: &Helper) {
        let ended = (0..300).any(|_| {
            std::thread::sleep(IDLE / 5);
            !h.alive.load(Ordering::Relaxed)
        });
        assert!(ended, "the helper's thread did not end when idle");
    }
}
