//! "Has the image changed?" without a `stat` when nothing happened.
//!
//! The runtime watches the image file's directory with inotify (events on
//! the image's name: written, closed after writing, renamed to or from,
//! created, deleted, its attributes changed) on a non-blocking descriptor.
//! The exact check (`stat`, then the manifest when the file differs)
//! records the event count it started from when it finds nothing changed;
//! the next call first drains the descriptor (one `read` that returns at
//! once when the queue is empty, cheaper than a `stat`), and while no event
//! came that answer stands. The kernel queues an event before the rename or
//! write that caused it returns, so the answer is exact: a change made
//! before the call is always seen. An event only sends the call to the
//! exact check, which still decides, so an image swapped back to the loaded
//! one is still no change.
//!
//! When inotify is unavailable (no more instances or watches, a file system
//! that has none), the image path is a symbolic link (the link could be
//! retargeted without an event on the name), or a second image is opened in
//! the same process, every call takes the exact path.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

/// Events seen on the image's name since the watcher started.
static EPOCH: AtomicU64 = AtomicU64::new(0);
/// The epoch at which the exact check last found nothing changed;
/// [`NEVER`] when that answer is not current.
static QUIET_AT: AtomicU64 = AtomicU64::new(NEVER);
/// True while the watch serves [`EPOCH`].
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Events seen on the image's name that end a change (written and closed,
/// renamed to, created, attributes changed): the image may be complete.
static SETTLED: AtomicU64 = AtomicU64::new(0);
/// True while the thread that prepares reloads ahead runs.
static PREPARER: AtomicBool = AtomicBool::new(false);
/// What that thread drops for the program's thread (see [`drop_later`]).
type Litter = Vec<Box<dyn Send>>;
static LITTER: std::sync::Mutex<Litter> = std::sync::Mutex::new(Vec::new());
/// An eventfd that wakes that thread when the program's own check took the
/// events that end a change before the thread saw them (-1: none).
static WAKE: AtomicI32 = AtomicI32::new(-1);
/// Set at process exit ([`before_exit`]): the preparing thread, woken by
/// the watch's removal, leaves at once, doing no queued work.
static EXITING: AtomicBool = AtomicBool::new(false);

const NEVER: u64 = u64::MAX;

/// The inotify descriptor and the image's file name in its directory.
struct Watch {
    fd: i32,
    /// The directory's watch on `fd`.
    wd: i32,
    name: Vec<u8>,
    /// The process that made it: a child made by `fork` shares the inotify
    /// instance, and must not remove the watch when it exits.
    pid: u32,
}

/// The watch, once started; the lock also orders draining with reading
/// the count.
static WATCH: std::sync::Mutex<Option<Watch>> = std::sync::Mutex::new(None);

/// [`WATCH`], locked.
fn watch() -> std::sync::MutexGuard<'static, Option<Watch>> {
    WATCH.lock().unwrap_or_else(|p| p.into_inner())
}

/// True when nothing happened to the image since the exact check last found
/// it unchanged (an uncontended lock and one non-blocking `read`).
pub(crate) fn known_unchanged() -> bool {
    let quiet = QUIET_AT.load(Ordering::Acquire);
    if quiet == NEVER || !ACTIVE.load(Ordering::Acquire) {
        return false;
    }
    let g = watch();
    let Some(w) = g.as_ref() else {
        return false;
    };
    drain_for_program(w);
    ACTIVE.load(Ordering::Acquire) && EPOCH.load(Ordering::Acquire) == quiet
}

/// The epoch to pass to [`record_unchanged`], read (after taking in what
/// the kernel queued) before an exact check.
pub(crate) fn epoch() -> u64 {
    let g = watch();
    if let Some(w) = g.as_ref() {
        drain_for_program(w);
    }
    EPOCH.load(Ordering::Acquire)
}

/// The exact check that started at `epoch` found nothing changed.
pub(crate) fn record_unchanged(epoch: u64) {
    QUIET_AT.store(epoch, Ordering::Release);
}

/// What is loaded changed (a reload, an init): the last answer is void.
pub(crate) fn forget() {
    QUIET_AT.store(NEVER, Ordering::Release);
}

/// Starts watching `image` (once per process; later calls for another path
/// turn the fast path off, since one watch serves one name).
pub(crate) fn start(image: &Path) {
    install(image, open_watch(image));
}

/// The images watched: the first one started (once per process).
static WATCHED: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// The inotify watch [`start`] sets up for `image`, made without touching
/// this module's state: `None` where none would be set up (one is already,
/// the path is a symbolic link, inotify is unavailable).
fn open_watch(image: &Path) -> Option<Watch> {
    if WATCHED.get().is_some() {
        return None;
    }
    let abs = std::path::absolute(image).ok()?;
    if std::fs::symlink_metadata(image).is_ok_and(|m| m.file_type().is_symlink()) {
        return None;
    }
    let (dir, name) = (abs.parent()?, abs.file_name()?);
    let cdir = CString::new(dir.as_os_str().as_bytes()).ok()?;
    let name = name.as_bytes().to_vec();
    // SAFETY: inotify_init1 creates a descriptor this function owns; the
    // watch is added with a NUL-terminated path.
    let (fd, wd) = unsafe {
        let fd = libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK);
        if fd < 0 {
            return None;
        }
        let mask = libc::IN_CLOSE_WRITE
            | libc::IN_MODIFY
            | libc::IN_ATTRIB
            | libc::IN_MOVED_TO
            | libc::IN_MOVED_FROM
            | libc::IN_CREATE
            | libc::IN_DELETE
            | libc::IN_DELETE_SELF
            | libc::IN_MOVE_SELF;
        let wd = libc::inotify_add_watch(fd, cdir.as_ptr(), mask);
        if wd < 0 {
            libc::close(fd);
            return None;
        }
        (fd, wd)
    };
    Some(Watch {
        fd,
        wd,
        name,
        pid: std::process::id(),
    })
}

/// Serves the change check of `image` with `w` (from [`open_watch`]); the
/// first image started is the one watched for the process's life, and a
/// second one turns the fast path off (one watch serves one name).
fn install(image: &Path, w: Option<Watch>) {
    let Ok(abs) = std::path::absolute(image) else {
        ACTIVE.store(false, Ordering::Release);
        close_unused(w);
        return;
    };
    let mut first = false;
    let watched = WATCHED.get_or_init(|| {
        first = true;
        abs.clone()
    });
    if !first {
        if *watched != abs {
            // Another image in the same process: the watch is on the first
            // one's name, so its events say nothing of this one.
            ACTIVE.store(false, Ordering::Release);
        }
        close_unused(w);
        return;
    }
    // (None: a symbolic link, or no inotify: exact checks only.)
    if let Some(w) = w {
        *watch() = Some(w);
        ACTIVE.store(true, Ordering::Release);
    }
}

/// [`drain`] on the program's side: when it took the events that end a
/// change, the preparing thread (which sleeps on the same descriptor and
/// may not have seen them) is woken to prepare the reload.
fn drain_for_program(w: &Watch) {
    if drain(w) {
        wake();
    }
}

/// Reads every queued event (the descriptor is non-blocking); counts those
/// on the image's name. Returns true when some of them end a change. The
/// directory gone, or the queue overflowed: the watch is off (exact checks
/// only).
fn drain(w: &Watch) -> bool {
    let mut buf = [0u8; 4096];
    let mut any_settled = false;
    loop {
        // SAFETY: reads into a buffer of the given length from the
        // non-blocking inotify descriptor the watch owns.
        let n = unsafe { libc::read(w.fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::WouldBlock => return any_settled,
                std::io::ErrorKind::Interrupted => continue,
                _ => {
                    stop();
                    return any_settled;
                }
            }
        }
        let n = n as usize;
        let mut off = 0;
        let mut hit = false;
        let mut settled = false;
        // Each record: wd (4), mask (4), cookie (4), len (4), name (len).
        while off + 16 <= n {
            let field =
                |at: usize| u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
            let mask = field(off + 4);
            let len = field(off + 12) as usize;
            let end = (off + 16 + len).min(n);
            let ev_name = &buf[off + 16..end];
            let ev_name = &ev_name[..ev_name
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(ev_name.len())];
            if mask
                & (libc::IN_DELETE_SELF
                    | libc::IN_MOVE_SELF
                    | libc::IN_IGNORED
                    | libc::IN_Q_OVERFLOW)
                != 0
            {
                stop();
                hit = true;
            } else if ev_name == w.name.as_slice() {
                hit = true;
                settled |= mask
                    & (libc::IN_CLOSE_WRITE
                        | libc::IN_MOVED_TO
                        | libc::IN_CREATE
                        | libc::IN_ATTRIB)
                    != 0;
            }
            off = end;
        }
        if hit {
            EPOCH.fetch_add(1, Ordering::AcqRel);
        }
        if settled {
            SETTLED.fetch_add(1, Ordering::AcqRel);
            any_settled = true;
        }
    }
}

/// Wakes the preparing thread, if it runs.
fn wake() {
    let wake = WAKE.load(Ordering::Acquire);
    if wake >= 0 {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes to the eventfd the preparing thread owns
        // and never closes. A full counter (never: the thread resets it at
        // every wake-up) only drops this wake-up.
        let _ = unsafe { libc::write(wake, one.as_ptr().cast(), one.len()) };
    }
}

/// The watch's lock, held across a `fork` so that the child does not
/// inherit it taken by the preparing thread (see `ffi`'s fork handlers).
pub(crate) struct Held(#[allow(dead_code)] std::sync::MutexGuard<'static, Option<Watch>>);

/// Takes the watch's lock (see [`Held`]).
pub(crate) fn hold() -> Held {
    Held(watch())
}

/// In a child after `fork`: the preparing thread did not come along, so
/// everything it would do is done at once from here on. The inotify
/// instance is shared with the parent, whose process (or preparing thread)
/// may take the events the child would count, and whose exit removes the
/// watch ([`before_exit`]): the child turns the fast path off and answers
/// every change check exactly.
pub(crate) fn forked_child() {
    PREPARER.store(false, Ordering::Release);
    WAKE.store(-1, Ordering::Release);
    stop();
}

/// True while the thread that prepares reloads ahead runs and the watch it
/// sleeps on serves (a watch turned off, say for a second image, may leave
/// the thread asleep for good: what it would free is then freed at once).
pub(crate) fn preparing() -> bool {
    PREPARER.load(Ordering::Acquire) && ACTIVE.load(Ordering::Acquire)
}

/// Drops `x` on the preparing thread when it runs (at once otherwise), the
/// next time it wakes up (at the next change of the image): a reload hands
/// over what the image it retires no longer needs (its manifest, tables
/// and indices), so the program's call does not spend its time freeing
/// them. The thread is not woken for it: waking a thread from the reload
/// cost more than the drop (measured 5–46 µs for the wake-up, when the
/// woken thread was run on the waker's CPU first).
pub(crate) fn drop_later<T: Send + 'static>(x: T) {
    if !preparing() {
        drop(x);
        return;
    }
    LITTER
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Box::new(x));
}

/// Work for the preparing thread to do when it next wakes (it is woken for
/// it): what the program's thread need not wait for.
static SOON: std::sync::Mutex<Vec<fn()>> = std::sync::Mutex::new(Vec::new());

/// Hands `job` to the preparing thread, woken for it, when that thread
/// runs; returns false (and does nothing) otherwise.
pub(crate) fn run_soon(job: fn()) -> bool {
    if !preparing() {
        return false;
    }
    SOON.lock().unwrap_or_else(|p| p.into_inner()).push(job);
    wake();
    true
}

/// With `prepare` given: opens the watch [`start`] sets up on a thread of
/// its own, while the caller loads the image (`inotify_add_watch` visits
/// the folder's entries: about 0.3 ms for 1 500 files). [`Starting::wait`],
/// once the load succeeded, has the thread put it in service and then
/// become the thread that prepares reloads ahead ([`prepare_on_change`]);
/// a `Starting` dropped instead (the load failed) has it close the watch
/// and end, leaving nothing behind. Without `prepare`, or where no thread
/// can be started, `wait` does the set-up itself.
pub(crate) fn start_beside(image: &Path, prepare: Option<fn()>) -> Starting {
    let inline = Starting {
        image: image.to_path_buf(),
        prepare,
        thread: None,
    };
    let Some(p) = prepare else {
        // No thread to keep: `wait` sets the watch up (a thread started
        // only for that would cost about what it saves).
        return inline;
    };
    if std::fs::metadata(image).is_ok_and(|m| m.len() < crate::image_file::LARGE_FILE) {
        // A small image loads in less time than a new thread can take to
        // first run: `wait` sets the watch up and then starts the
        // preparing thread, which it does not wait for. (Waiting for that
        // thread made a one-module `hcr run` 4.6 ms from start to end
        // against 3.3 ms with the watch opened inline; with the preparing
        // thread started after the load and not waited for, 3.8–4.2 ms.)
        return inline;
    }
    let hand = std::sync::Arc::new(Handshake::default());
    let path = image.to_path_buf();
    let theirs = hand.clone();
    let started = std::thread::Builder::new()
        .name("hcr-prepare".into())
        .spawn(move || {
            // Says "ready" however this thread leaves the set-up (a panic
            // included), so the caller never waits for it in vain.
            let ready = Ready(&theirs);
            let w = open_watch(&path);
            if !theirs.go() {
                // The load failed: nothing is installed.
                close_unused(w);
                return;
            }
            install(&path, w);
            // (Claimed before the caller goes on: it may hand this thread
            // work at once, [`run_soon`].)
            let claimed = claim_preparer();
            drop(ready);
            if let Some((fd, wake)) = claimed {
                prepare_loop(fd, wake, p);
            }
        });
    Starting {
        image: image.to_path_buf(),
        prepare,
        thread: started.ok().map(|_| hand),
    }
}

/// The set-up thread's state, between it and the loading thread (a lock
/// and a condition variable: no lock-free channel, which thread checkers
/// such as DRD cannot follow).
#[derive(Default)]
struct Handshake {
    state: std::sync::Mutex<Step>,
    changed: std::sync::Condvar,
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Step {
    /// The load runs.
    #[default]
    Loading,
    /// It succeeded: put the watch in service.
    Go,
    /// It failed: leave nothing behind.
    Abandon,
    /// The set-up thread is done with the set-up.
    Ready,
}

impl Handshake {
    fn set(&self, step: Step) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = step;
        self.changed.notify_all();
    }

    /// The loading thread: says how the load went, unless the set-up
    /// thread is gone already (it panicked).
    fn decide(&self, step: Step) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if *s == Step::Loading {
            *s = step;
            self.changed.notify_all();
        }
    }

    /// Waits until the step is not `from`; returns it.
    fn wait_past(&self, from: Step) -> Step {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while *s == from {
            s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        *s
    }

    /// The set-up thread: waits for the load's outcome.
    fn go(&self) -> bool {
        self.wait_past(Step::Loading) == Step::Go
    }
}

/// Sets [`Step::Ready`] when dropped.
struct Ready<'h>(&'h Handshake);

impl Drop for Ready<'_> {
    fn drop(&mut self) {
        self.0.set(Step::Ready);
    }
}

/// Closes a watch that is not put in service (the load failed, or a watch
/// serves already).
fn close_unused(w: Option<Watch>) {
    if let Some(w) = w {
        // SAFETY: a descriptor `open_watch` made that nothing else has.
        unsafe { libc::close(w.fd) };
    }
}

/// A watch being opened by [`start_beside`]. Dropped without
/// [`Starting::wait`] (the load failed), it has the thread close the watch
/// and end.
pub(crate) struct Starting {
    image: std::path::PathBuf,
    prepare: Option<fn()>,
    /// The set-up thread's state (`None`: no thread started).
    thread: Option<std::sync::Arc<Handshake>>,
}

impl Starting {
    /// Puts the watch in service (and the thread that prepares reloads
    /// ahead to work, when asked for); returns once that is done.
    pub(crate) fn wait(mut self) {
        match self.thread.take() {
            Some(hand) => {
                hand.decide(Step::Go);
                hand.wait_past(Step::Go);
            }
            None => {
                start(&self.image);
                if let Some(p) = self.prepare {
                    prepare_on_change(p);
                }
            }
        }
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(hand) = self.thread.take() {
            hand.decide(Step::Abandon);
        }
    }
}

/// Starts the thread that prepares a reload ahead (`prepare`) each time a
/// change of the image ends, while the watch is active. The thread sleeps
/// in `poll` on the watch's descriptor; events on other names in the
/// directory wake it but prepare nothing. A change whose events the
/// program's own check took first is prepared by the program's reload, as
/// without this thread.
pub(crate) fn prepare_on_change(prepare: fn()) {
    let Some((fd, wake)) = claim_preparer() else {
        return;
    };
    let started = std::thread::Builder::new()
        .name("hcr-prepare".into())
        .spawn(move || prepare_loop(fd, wake, prepare));
    if started.is_err() {
        PREPARER.store(false, Ordering::Release);
    }
}

/// Makes this thread the one that prepares reloads ahead, when the watch
/// is on and no other thread is: the watch's descriptor and a new eventfd
/// that wakes it ([`WAKE`]).
fn claim_preparer() -> Option<(i32, i32)> {
    if !ACTIVE.load(Ordering::Acquire) || PREPARER.swap(true, Ordering::AcqRel) {
        return None;
    }
    let Some(fd) = watch().as_ref().map(|w| w.fd) else {
        PREPARER.store(false, Ordering::Release);
        return None;
    };
    // SAFETY: creates a descriptor this thread owns for the process's life.
    let wake = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    WAKE.store(wake, Ordering::Release);
    Some((fd, wake))
}

/// The preparing thread's loop ([`prepare_on_change`]), until the watch
/// is turned off.
fn prepare_loop(fd: i32, wake: i32, prepare: fn()) {
    let mut seen = SETTLED.load(Ordering::Acquire);
    while ACTIVE.load(Ordering::Acquire) {
        let mut p = [
            libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: wake,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: polls descriptors this module owns and never closes (a
        // negative one is ignored), with valid `pollfd`s.
        let n = unsafe { libc::poll(p.as_mut_ptr(), 2, -1) };
        if EXITING.load(Ordering::Acquire) {
            // The process is ending: nothing to prepare, free or build.
            return;
        }
        if n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break;
        }
        if p[1].revents != 0 {
            let mut count = [0u8; 8];
            // SAFETY: reads the eventfd's 8-byte counter (resets it).
            let _ = unsafe { libc::read(wake, count.as_mut_ptr().cast(), count.len()) };
        }
        if let Some(w) = watch().as_ref() {
            drain(w);
        }
        let now = SETTLED.load(Ordering::Acquire);
        if now != seen && ACTIVE.load(Ordering::Acquire) {
            seen = now;
            prepare();
        }
        let litter: Litter = std::mem::take(&mut *LITTER.lock().unwrap_or_else(|p| p.into_inner()));
        drop(litter);
        run_handed_over();
    }
    PREPARER.store(false, Ordering::Release);
    drop(std::mem::take(
        &mut *LITTER.lock().unwrap_or_else(|p| p.into_inner()),
    ));
    // Jobs handed over as the loop ended (`run_soon` found it running).
    run_handed_over();
}

/// Runs the jobs handed to the preparing thread ([`run_soon`]).
fn run_handed_over() {
    let soon = std::mem::take(&mut *SOON.lock().unwrap_or_else(|p| p.into_inner()));
    for job in soon {
        job();
    }
}

/// At process exit (after the exit handlers the program registered once
/// the runtime started, and the modules' destructors): turns the watch off and removes it from the
/// directory, so that the process's end does not wait for the kernel to
/// tear the watch down. A process that exits with an inotify watch and a
/// second thread (the preparing thread, the helper, or one of the
/// program's) shortly after the watch was added waits for that teardown:
/// measured on a 2-CPU machine, a C program exiting 1 ms after adding a
/// watch, with a second thread asleep, took a median 8.6–16 ms to end
/// (2.5–2.7 ms without the watch or without the thread, 2.6–3.1 ms with
/// the watch removed first); one that ran for 50 ms first ended at once.
/// `hcr run` of a one-module program, 30 runs back to back: a median
/// 12.0–16.0 ms from start to end before, 5.3 ms with the watch removed.
/// The preparing thread, woken by the removal's event, leaves at once
/// ([`EXITING`]: no reload prepared, no queued job run, nothing freed
/// while the rest of the exit runs). Skipped when the watch's lock is held
/// (by a thread taking in events): exit then takes its usual course. A
/// child made by `fork` shares the parent's inotify instance: its exit
/// leaves the watch alone (and it answers its own checks exactly,
/// [`forked_child`]).
pub(crate) fn before_exit() {
    let Ok(g) = WATCH.try_lock() else {
        return;
    };
    if let Some(w) = g.as_ref().filter(|w| w.pid == std::process::id()) {
        EXITING.store(true, Ordering::Release);
        stop();
        // SAFETY: removes the watch `open_watch` added on the descriptor
        // this module owns; the descriptor stays open (see `stop`).
        unsafe { libc::inotify_rm_watch(w.fd, w.wd) };
    }
}

/// Turns the fast path off for good (the descriptor stays open: closing
/// it could hand its number to another file while the lock is not held).
fn stop() {
    ACTIVE.store(false, Ordering::Release);
    EPOCH.fetch_add(1, Ordering::AcqRel);
}
