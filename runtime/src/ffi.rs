//! The C API of `include/hcr.h` and the process-wide runtime instance.
//!
//! Every `hcr_*` function catches panics and reports failures through its
//! return value and the thread-local `hcr_last_error()`; nothing unwinds
//! into C. User code (handlers, constructors, on-reload blocks, `main`) is
//! always called with the state lock released, so it may call back into the
//! API.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::io::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::state::{Caller, Options, State};
use crate::Error;

static STATE: Mutex<Option<State>> = Mutex::new(None);

extern "C" {
    /// The C library's environment, what `main`'s third argument gets.
    static mut environ: *mut *mut c_char;
}

/// Set by [`set_keep_retired_images`]: reloads then never free old images.
static KEEP_RETIRED_IMAGES: AtomicBool = AtomicBool::new(false);

/// Makes every later reload keep the images it retires mapped until
/// shutdown (`true`), or free them again when no code can run in them
/// (`false`, the default).
///
/// A reload frees an old image only when the *calling* thread's stack holds
/// no return address into it. A reload requested from a thread other than
/// the one running the program (`hcr run --auto-reload`) cannot see the
/// program's stack: the root's `main`, which never returns, runs in the
/// first image for ever. Keeping every old image costs its memory per reload
/// and makes such reloads safe.
pub fn set_keep_retired_images(keep: bool) {
    KEEP_RETIRED_IMAGES.store(keep, Ordering::Relaxed);
}

/// Room for `hcr_last_error`'s message (a longer one is cut, ending in
/// "...").
const ERROR_ROOM: usize = 4096;

thread_local! {
    /// The message `hcr_last_error` points to: one buffer per thread whose
    /// address never changes, so a pointer taken before a later call (an
    /// argument list evaluated right to left) still reads a string.
    static LAST_ERROR: RefCell<Box<[u8; ERROR_ROOM]>> = RefCell::new(Box::new([0; ERROR_ROOM]));
}

fn lock() -> MutexGuard<'static, Option<State>> {
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn set_error(msg: &str) {
    let cut = msg.len() >= ERROR_ROOM;
    let mut end = msg.len().min(ERROR_ROOM - 4);
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    LAST_ERROR.with(|e| {
        let mut b = e.borrow_mut();
        for (d, &c) in b.iter_mut().zip(msg.as_bytes()[..end].iter()) {
            *d = if c == 0 { b' ' } else { c };
        }
        let tail: &[u8] = if cut { b"...\0" } else { b"\0" };
        b[end..end + tail.len()].copy_from_slice(tail);
    });
}

pub(crate) fn with_state<R>(f: impl FnOnce(&mut State) -> Result<R, Error>) -> Result<R, Error> {
    let mut g = lock();
    let st = g.as_mut().ok_or(Error::NotInitialised)?;
    f(st)
}

/// Calls `void (*)(void)` at `addr` (a C++ exception that leaves it
/// terminates the program as natively: `crate::entry`).
fn call_void(addr: u64) {
    // SAFETY: `addr` is an entry point the image declares as a `void (void)`
    // function (constructor, on-reload block, or a handler registered with
    // that type through hcr.h); the image is mapped read+execute.
    unsafe { crate::entry::call(addr, 0, 0, 0) };
}

fn set_running(module: Option<String>) {
    let mut g = lock();
    if let Some(st) = g.as_mut() {
        st.running_module = module;
    }
}

/// The export object currently loaded for `dlopen`'ed shared objects.
static EXPORTS: Mutex<Option<hcr_loader::exports::Published>> = Mutex::new(None);
/// Export objects published so far (each gets its own soname).
static EXPORT_SERIAL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Makes the image's global symbols visible to shared objects the program
/// loads with `dlopen` (see `hcr_loader::exports`): a new export object
/// replaces the previous one. A failure only costs plugins their view of
/// the image, so it is a warning, not a failed reload.
fn publish_exports(exports: Option<Vec<hcr_loader::exports::Export>>) {
    let Some(exports) = exports else {
        return;
    };
    let n = EXPORT_SERIAL.fetch_add(1, Ordering::Relaxed);
    let name = format!("hcr-image-exports-{}-{n}", std::process::id());
    let object = hcr_loader::exports::build_object(&format!("{name}.so"), &exports);
    let mut slot = EXPORTS.lock().unwrap_or_else(|p| p.into_inner());
    match hcr_loader::exports::publish(&object, &name) {
        // The previous object goes after the new one is in the scope: a
        // plugin that bound its symbols keeps it loaded, and every later
        // lookup finds the new one's addresses only where the old one lacked
        // the name (permanent addresses do not move; a recreated global
        // does, and is found at its new address by plugins loaded after the
        // old object is gone).
        Ok(p) => *slot = Some(p),
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "hcr: warning: the image's symbols are not visible to dlopen'ed libraries: {e}"
            );
        }
    }
}

fn run_entries(entries: Vec<(String, u64)>) {
    if entries.is_empty() {
        return;
    }
    for (m, f) in entries {
        set_running(Some(m));
        call_void(f);
    }
    set_running(None);
}

/// A first load's deferred release of its leased mapping
/// ([`crate::image_file::defer_releases`]): handed over to the thread that
/// prepares reloads once the load is over and that thread is in service;
/// done on this thread when there is none, or when the load failed
/// (dropped). (A fork, a reload and `hcr_shutdown` release what is still
/// waiting, should that thread not have got to it.)
struct DeferredRelease(bool);

impl DeferredRelease {
    fn start(on: bool) -> DeferredRelease {
        crate::image_file::defer_releases(on);
        DeferredRelease(on)
    }

    fn hand_over(mut self) {
        crate::image_file::defer_releases(false);
        if self.0 && crate::watcher::run_soon(crate::image_file::release_deferred) {
            self.0 = false;
        }
    }
}

impl Drop for DeferredRelease {
    fn drop(&mut self) {
        crate::image_file::defer_releases(false);
        if self.0 {
            crate::image_file::release_deferred();
        }
    }
}

/// Loads the image and runs every reachable module's top-level code, then
/// its on-reload blocks.
pub(crate) fn init(path: &std::path::Path, opts: &Options) -> Result<(), Error> {
    let timing = crate::phases::start();
    // The image is found again at every check and reload: a relative path
    // is taken against the directory the process started the runtime in,
    // not whichever it has moved to since (symbolic links are kept, so a
    // link swapped to another image is still followed).
    let absolute = std::path::absolute(path);
    let path = absolute.as_deref().unwrap_or(path);
    let follow = {
        let mut g = lock();
        if g.is_some() {
            return Err(Error::AlreadyInitialised);
        }
        if opts.keep_retired_images {
            set_keep_retired_images(true);
        }
        // The watch is set up (and the thread that prepares reloads ahead
        // started) beside the load. Fork handlers first: they hold that
        // thread's locks across a fork.
        if opts.prepare_ahead {
            register_fork_handlers();
        }
        let watching =
            crate::watcher::start_beside(path, opts.prepare_ahead.then_some(prepare_ahead as fn()));
        // The first load's leased mapping is released once the load is
        // over (below), not while the loading thread still works.
        let deferred = DeferredRelease::start(opts.prepare_ahead);
        let mut st = State::new(path, opts)?;
        st.runtime_symbol = runtime_symbol;
        DSO_HANDLE.store(st.dso_handle(), Ordering::Relaxed);
        let p = st
            .prepare()?
            .ok_or_else(|| Error::Internal("empty image".into()))?;
        crate::phases::mark("prepared");
        let f = st.commit(p);
        crate::phases::mark("commit");
        let no_main =
            (opts.require_main && st.main_address().is_none()).then(|| st.root_name().to_string());
        *g = Some(st);
        crate::watcher::forget();
        watching.wait();
        deferred.hand_over();
        crate::phases::mark("watch");
        // Refused before any module code runs.
        if let Some(root) = no_main {
            return Err(Error::NoMain { root });
        }
        f
    };
    // Registered before the constructors run, so the program's own exit
    // handlers (and C++ static destructors) run first, as a native
    // program's run before the loader's `.fini_array` pass.
    DESTRUCTORS_RAN.store(false, Ordering::SeqCst);
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: registers a plain `extern "C" fn()` with the C library.
        unsafe { libc::atexit(destructors_at_exit) };
    });
    publish_exports(follow.exports);
    crate::phases::mark("exports");
    run_entries(follow.ctors);
    run_entries(follow.on_reload);
    crate::phases::mark("constructors");
    crate::control::start_if_enabled();
    // The thread that loads is usually the one that reloads: its stack's
    // bounds are asked now, once, rather than by the first reload that has
    // an old image to free (the main thread's by the thread that prepares
    // reloads: the C library reads `/proc/self/maps` to answer, 0.1 ms).
    crate::stack::learn_bounds(crate::watcher::run_soon);
    // The registry's name index is built beside the program's start, by
    // the thread that prepares reloads (a look-up that comes first builds
    // it itself); without that thread, here, so that the first reload does
    // not.
    if !crate::watcher::run_soon(warm_indices) {
        warm_indices();
    }
    timing.report(path);
    Ok(())
}

/// The reload transaction (see `state`).
pub(crate) fn perform_reload() -> Result<usize, Error> {
    // (Released by the preparing thread after the first load; should that
    // thread have stopped first, here.)
    crate::image_file::release_deferred();
    let (prepared, before, deleted) = {
        let mut g = lock();
        // A reload in progress on another thread is waited for; this one
        // then reloads what changed since (usually nothing). One asked for
        // by the reload's own handlers or top-level code is refused.
        while g.as_ref().ok_or(Error::NotInitialised)?.in_reload.is_some() {
            if RELOADING.with(Cell::get) != Reloading::No {
                return Err(Error::Busy);
            }
            g = RELOAD_DONE.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        let st = g.as_mut().ok_or(Error::NotInitialised)?;
        let Some(p) = st.prepare()? else {
            return Ok(0);
        };
        st.in_reload = Some(p.diff().touched());
        RELOADING.with(|r| r.set(Reloading::Prepared));
        let before = st.handlers_in_order(true);
        let deleted: HashSet<String> = p
            .diff()
            .changed
            .iter()
            .chain(&p.diff().removed)
            .cloned()
            .collect();
        (p, before, deleted)
    };
    let mut ends = ReloadEnds { cleared: false };
    let count = prepared.diff().reloaded();
    for (_, f) in before {
        call_void(f);
    }
    let follow = {
        let mut g = lock();
        let st = g.as_mut().ok_or(Error::NotInitialised)?;
        st.delete_handlers(&deleted);
        let f = st.commit(prepared);
        crate::watcher::forget();
        RELOADING.with(|r| r.set(Reloading::Committed));
        f
    };
    publish_exports(follow.exports);
    run_entries(follow.ctors);
    crate::nim::finish_reload();
    run_entries(follow.on_reload);
    let after = with_state(|st| Ok(st.handlers_in_order(false)))?;
    for (_, f) in after {
        call_void(f);
    }
    with_state(|st| {
        st.in_reload = None;
        ends.cleared = true;
        st.generation += 1;
        if !KEEP_RETIRED_IMAGES.load(Ordering::Relaxed) {
            st.reclaim();
        }
        Ok(())
    })?;
    Ok(count)
}

/// Signalled when a reload ends (`State::in_reload` cleared), for the
/// threads whose reload waits for it.
static RELOAD_DONE: std::sync::Condvar = std::sync::Condvar::new();

/// How far this thread's reload went.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reloading {
    /// No reload in progress on this thread.
    No,
    /// Prepared; running the before-handlers.
    Prepared,
    /// The new image is live; running its top-level code and handlers.
    Committed,
}

thread_local! {
    static RELOADING: Cell<Reloading> = const { Cell::new(Reloading::No) };
}

/// The end of a reload, however [`perform_reload`] returns after it
/// started: the reload is no longer in progress, and waiting threads go on.
struct ReloadEnds {
    /// `State::in_reload` was cleared by the reload's last step (another
    /// thread's reload may have set it since).
    cleared: bool,
}

impl Drop for ReloadEnds {
    fn drop(&mut self) {
        RELOADING.with(|r| r.set(Reloading::No));
        if !self.cleared {
            if let Some(st) = lock().as_mut() {
                st.in_reload = None;
            }
        }
        RELOAD_DONE.notify_all();
    }
}

/// A crash guard abandoned this thread's frames, a reload's among them (a
/// handler, constructor or `HCR_ON_RELOAD` block it ran crashed): the
/// reload is no longer in progress, so that later reloads, on any thread,
/// go on. One that had committed numbers its image's generation (the live
/// one, which the guard then rolls back from), but is not counted by
/// `hcr_generation()`: it never returned.
pub(crate) fn reload_abandoned() {
    match RELOADING.with(Cell::get) {
        Reloading::No => return,
        Reloading::Prepared => {}
        Reloading::Committed => {
            if let Some(st) = lock().as_mut() {
                st.generation += 1;
                st.abandoned_reloads += 1;
            }
        }
    }
    // Then it ends as one that returns does.
    drop(ReloadEnds { cleared: false });
}

/// Runs a call that can fail (init, reload, run): its success clears
/// `hcr_last_error`, its failure sets it.
fn guard<R>(fallback: R, f: impl FnOnce() -> Result<R, Error>) -> R {
    let v = query(fallback, f);
    if !LAST_FAILED.with(Cell::get) {
        set_error("");
    }
    v
}

thread_local! {
    /// Whether the call `query` ran last on this thread failed.
    static LAST_FAILED: Cell<bool> = const { Cell::new(false) };
}

/// Runs a query (change checks, look-ups, handler registration): a
/// failure sets `hcr_last_error`, a success leaves it as it was, so that
/// `printf("%s %d", hcr_last_error(), hcr_has_any_module_changed())`
/// still shows why the last reload failed.
fn query<R>(fallback: R, f: impl FnOnce() -> Result<R, Error>) -> R {
    LAST_FAILED.with(|c| c.set(true));
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => {
            LAST_FAILED.with(|c| c.set(false));
            v
        }
        Ok(Err(e)) => {
            set_error(&e.to_string());
            fallback
        }
        Err(_) => {
            set_error("hcr: internal error (panic in the runtime)");
            fallback
        }
    }
}

fn cstr<'a>(p: *const c_char) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(Error::Internal("null string argument".into()));
    }
    // SAFETY: the C API takes NUL-terminated strings; the caller keeps them
    // alive for the duration of the call.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| Error::Internal("string argument is not UTF-8".into()))
}

/// See `hcr.h`.
#[no_mangle]
pub extern "C" fn hcr_has_any_module_changed() -> bool {
    query(false, any_module_changed)
}

/// Whether the image on disk holds changed modules: one non-blocking read while
/// nothing happened to the file since the last exact answer "no" (see
/// `watcher`), else the exact check (one `stat`, the manifest when the file
/// differs from the loaded one).
/// The state's and the watch's locks, held by the forking thread across a
/// `fork`.
type ForkHeld = (MutexGuard<'static, Option<State>>, crate::watcher::Held);

thread_local! {
    static FORK_HELD: RefCell<Option<ForkHeld>> = const { RefCell::new(None) };
}

/// Fork handlers, registered when the preparing thread starts: that thread
/// takes the state's lock on its own, and a child forked while it held it
/// would inherit the lock taken for good. The forking thread takes both
/// locks before the fork (waiting for a preparation in progress) and both
/// processes release them after it; in the child, the runtime then works
/// without the preparing thread, which did not come along.
fn register_fork_handlers() {
    extern "C" fn before() {
        // A first load's leased mapping not yet released would go to the
        // child, whose open file would keep the lease for its life.
        crate::image_file::release_deferred();
        let held = (lock(), crate::watcher::hold());
        FORK_HELD.with(|h| *h.borrow_mut() = Some(held));
    }
    extern "C" fn parent() {
        FORK_HELD.with(|h| drop(h.borrow_mut().take()));
    }
    extern "C" fn child() {
        crate::watcher::forked_child();
        FORK_HELD.with(|h| drop(h.borrow_mut().take()));
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers three handlers that only take and release the
        // runtime's own locks, in the forking thread.
        unsafe { libc::pthread_atfork(Some(before), Some(parent), Some(child)) };
    });
}

/// Builds the runtime's look-up indices that are built when first needed
/// (on the thread that prepares reloads, right after the load).
fn warm_indices() {
    let _ = catch_unwind(|| {
        if let Some(st) = lock().as_ref() {
            st.warm_indices();
        }
    });
}

/// The watcher thread's work when the image changed: prepares the reload
/// it asks for, to be committed by the program's next reload.
fn prepare_ahead() {
    let _ = catch_unwind(|| {
        if let Some(st) = lock().as_mut() {
            st.prepare_ahead();
        }
    });
}

pub(crate) fn any_module_changed() -> Result<bool, Error> {
    if crate::watcher::known_unchanged() {
        return Ok(false);
    }
    with_state(|st| {
        let epoch = crate::watcher::epoch();
        let changed = st.disk_diff()?.count() > 0;
        if !changed && st.in_reload.is_none() {
            crate::watcher::record_unchanged(epoch);
        }
        Ok(changed)
    })
}

/// See `hcr.h`.
#[no_mangle]
pub extern "C" fn hcr_has_module_changed(module: *const c_char) -> bool {
    query(false, || {
        let m = cstr(module)?;
        with_state(|st| {
            if let Some(t) = &st.in_reload {
                return Ok(t.contains(m));
            }
            Ok(st.disk_diff()?.touched().contains(m))
        })
    })
}

/// See `hcr.h`.
#[no_mangle]
pub extern "C" fn hcr_perform_code_reload() -> c_int {
    guard(-1, || {
        let r = perform_reload();
        crate::control::note_reload(&r);
        r.map(|n| n as c_int)
    })
}

/// See `hcr.h`.
#[no_mangle]
pub extern "C" fn hcr_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr().cast())
}

/// See `hcr.h`.
#[no_mangle]
pub extern "C" fn hcr_generation() -> u32 {
    let g = lock();
    g.as_ref()
        .map_or(0, |s| s.generation.saturating_sub(s.abandoned_reloads))
}

/// See `hcr.h`. A handler is owned by the module whose code registers it,
/// so this entry point hands its caller's return address (the word at the
/// stack pointer on entry) to the registration as a second argument.
#[no_mangle]
#[unsafe(naked)]
pub extern "C" fn hcr_on_before_reload(f: Option<extern "C" fn()>) {
    std::arch::naked_asm!("mov rsi, [rsp]", "jmp {}", sym on_before_reload_from)
}

/// See `hcr.h` and [`hcr_on_before_reload`].
#[no_mangle]
#[unsafe(naked)]
pub extern "C" fn hcr_on_after_reload(f: Option<extern "C" fn()>) {
    std::arch::naked_asm!("mov rsi, [rsp]", "jmp {}", sym on_after_reload_from)
}

extern "C" fn on_before_reload_from(f: Option<extern "C" fn()>, caller: usize) {
    add_handler(f, true, Caller::Returns(caller as u64));
}

extern "C" fn on_after_reload_from(f: Option<extern "C" fn()>, caller: usize) {
    add_handler(f, false, Caller::Returns(caller as u64));
}

/// See `hcr.h`: what its `hcr_on_before_reload` macro calls, with a
/// function of the calling module.
#[no_mangle]
pub extern "C" fn hcr__on_before_reload_in(
    f: Option<extern "C" fn()>,
    in_module: Option<extern "C" fn()>,
) {
    let at = in_module.map_or(0, |g| g as usize as u64);
    add_handler(f, true, Caller::In(at));
}

/// See `hcr.h`: what its `hcr_on_after_reload` macro calls.
#[no_mangle]
pub extern "C" fn hcr__on_after_reload_in(
    f: Option<extern "C" fn()>,
    in_module: Option<extern "C" fn()>,
) {
    let at = in_module.map_or(0, |g| g as usize as u64);
    add_handler(f, false, Caller::In(at));
}

/// Registers a before (`before`) or after handler for `caller`; a null
/// one is ignored.
fn add_handler(f: Option<extern "C" fn()>, before: bool, caller: Caller) {
    if let Some(f) = f {
        query((), || {
            with_state(|st| {
                st.add_handler(f as usize as u64, before, caller);
                Ok(())
            })
        });
    }
}

/// See `hcr.h`.
#[no_mangle]
pub extern "C" fn hcr_get_proc(module: *const c_char, name: *const c_char) -> *mut c_void {
    query(std::ptr::null_mut(), || {
        let (m, n) = (cstr(module)?, cstr(name)?);
        with_state(|st| {
            Ok(st
                .get_proc(m, n)
                .map_or(std::ptr::null_mut(), |a| a as *mut c_void))
        })
    })
}

/// See `hcr.h`.
#[no_mangle]
pub extern "C" fn hcr_get_global(module: *const c_char, name: *const c_char) -> *mut c_void {
    query(std::ptr::null_mut(), || {
        let (m, n) = (cstr(module)?, cstr(name)?);
        with_state(|st| {
            Ok(st
                .get_global(m, n)
                .map_or(std::ptr::null_mut(), |a| a as *mut c_void))
        })
    })
}

/// See `hcr.h`.
#[no_mangle]
pub extern "C" fn hcr_init(image_path: *const c_char) -> c_int {
    guard(-1, || {
        let p = cstr(image_path)?;
        // A C host (an interpreter) loads the plugins: they see the
        // image's symbols whatever the image names.
        let opts = Options {
            export_symbols: std::env::var_os("HCR_EXPORT_SYMBOLS").is_none_or(|v| v != "0"),
            ..Options::default()
        };
        init(std::path::Path::new(p), &opts).map(|()| 0)
    })
}

/// See `hcr.h`.
///
/// # Safety
/// `argv` must hold `argc` valid C strings followed by NULL, as for `main`.
#[no_mangle]
pub unsafe extern "C" fn hcr_run_main(argc: c_int, argv: *mut *mut c_char) -> c_int {
    guard(-1, || {
        let addr = with_state(|st| {
            st.main_address().ok_or_else(|| Error::NoMain {
                root: st.root_name().to_string(),
            })
        })?;
        // The root module's `main` is `int main(int, char **)` or
        // `int main(int, char **, char **)` (Nim's, and programs that read
        // `envp`); the third argument is the process's environment, as the
        // C runtime passes it, and a `main` with two parameters ignores it
        // under the x86-64 calling convention.
        // SAFETY: reads the C library's `environ` pointer.
        let envp = unsafe { environ };
        // SAFETY: `main` has one of the signatures above; its permanent
        // address is mapped. (Called through `crate::entry`: a C++
        // exception that leaves `main` terminates the program as natively.)
        let r = unsafe { crate::entry::call(addr, argc as usize, argv as usize, envp as usize) };
        // (`int` is the low half of the register.)
        Ok(r as u32 as c_int)
    })
}

/// See `hcr.h`.
#[no_mangle]
pub extern "C" fn hcr_shutdown() {
    shutdown();
}

/// True once the loaded modules' destructors ran (at `hcr_shutdown` or at
/// exit): they run once.
static DESTRUCTORS_RAN: AtomicBool = AtomicBool::new(false);

/// The modules' destructors (`__attribute__((destructor))`, `.fini_array`)
/// when the process exits without `hcr_shutdown`, as a native program's
/// run at exit. Skipped when another thread holds the runtime (a reload in
/// progress): they cannot be listed safely then. Then the image's watch is
/// removed ([`crate::watcher::before_exit`]).
extern "C" fn destructors_at_exit() {
    let dtors = match STATE.try_lock() {
        Ok(g) => g.as_ref().map(|s| s.destructors()),
        Err(std::sync::TryLockError::Poisoned(p)) => {
            p.into_inner().as_ref().map(|s| s.destructors())
        }
        Err(std::sync::TryLockError::WouldBlock) => None,
    };
    if let Some(dtors) = dtors {
        run_destructors(dtors);
    }
    crate::watcher::before_exit();
}

/// Calls `dtors` unless the modules' destructors already ran.
fn run_destructors(dtors: Vec<u64>) {
    if !DESTRUCTORS_RAN.swap(true, Ordering::SeqCst) {
        for d in dtors {
            call_void(d);
        }
    }
}

pub(crate) fn shutdown() {
    let dtors = {
        let g = lock();
        g.as_ref().map(|s| s.destructors()).unwrap_or_default()
    };
    run_destructors(dtors);
    let mut g = lock();
    if let Some(mut st) = g.take() {
        st.shutdown();
    }
    crate::watcher::forget();
    crate::control::remove();
    crate::image_file::release_deferred();
}

/// The `__dso_handle` of the images loaded now (0: none), for the exit and
/// fork handlers they register.
static DSO_HANDLE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `void (*)(void)`, as C passes it (null allowed).
type VoidFn = Option<extern "C" fn()>;

/// A libc function that `dlsym` finds, as a function pointer of type `F`.
///
/// # Safety
/// `F` must be the function's true type.
unsafe fn libc_fn<F: Copy>(name: &CStr) -> Option<F> {
    let addr = hcr_loader::host_symbol(name)? as usize;
    // SAFETY: the caller names the function's type; `F` is a function
    // pointer (the size of an address).
    Some(unsafe { std::mem::transmute_copy::<usize, F>(&addr) })
}

/// An image's `atexit`, as glibc's own (libc_nonshared.a):
/// `__cxa_atexit(f, NULL, __dso_handle)` with the images' handle, so the
/// handler runs at exit, or at `hcr_shutdown` (as at `dlclose`).
extern "C" fn image_atexit(f: VoidFn) -> c_int {
    type CxaAtexit = unsafe extern "C" fn(VoidFn, *mut c_void, *mut c_void) -> c_int;
    // SAFETY: glibc's `int __cxa_atexit(void (*)(void *), void *, void *)`;
    // a `void (void)` handler called with one argument ignores it under the
    // x86-64 calling convention, which is what glibc's `atexit` relies on.
    match unsafe { libc_fn::<CxaAtexit>(c"__cxa_atexit") } {
        // SAFETY: as above; the handle is the images' `__dso_handle`.
        Some(cxa) => unsafe {
            cxa(
                f,
                std::ptr::null_mut(),
                DSO_HANDLE.load(Ordering::Relaxed) as *mut c_void,
            )
        },
        None => -1,
    }
}

/// A destructor an image registered with `__cxa_atexit` for an object (a
/// C++ global, a function's static): libc runs it at exit through
/// [`run_destructor`], unless a reload removed the object meanwhile (its
/// storage goes, and its destructor may be a function the image no longer
/// has).
struct Destructor {
    func: extern "C" fn(*mut c_void),
    obj: usize,
    live: AtomicBool,
}

/// Every destructor registered for an object, for [`set_destructors_live`]
/// (entries live as long as the process: libc holds them).
static DESTRUCTORS: Mutex<Vec<&'static Destructor>> = Mutex::new(Vec::new());

type ObjFn = Option<extern "C" fn(*mut c_void)>;
type CxaAtexitFn = unsafe extern "C" fn(ObjFn, *mut c_void, *mut c_void) -> c_int;

/// An image's `__cxa_atexit`: glibc's, with a destructor for an object
/// wrapped so that a reload that removes the object can cancel it.
extern "C" fn image_cxa_atexit(func: ObjFn, obj: *mut c_void, dso: *mut c_void) -> c_int {
    // SAFETY: glibc's `int __cxa_atexit(void (*)(void *), void *, void *)`.
    let Some(cxa) = (unsafe { libc_fn::<CxaAtexitFn>(c"__cxa_atexit") }) else {
        return -1;
    };
    let (Some(f), false) = (func, obj.is_null()) else {
        // SAFETY: as above, the image's own arguments.
        return unsafe { cxa(func, obj, dso) };
    };
    let d: &'static Destructor = Box::leak(Box::new(Destructor {
        func: f,
        obj: obj as usize,
        live: AtomicBool::new(true),
    }));
    DESTRUCTORS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(d);
    // SAFETY: as above; `d` lives for the rest of the process.
    unsafe {
        cxa(
            Some(run_destructor),
            d as *const Destructor as *mut c_void,
            dso,
        )
    }
}

/// What libc calls at exit for a wrapped destructor.
extern "C" fn run_destructor(d: *mut c_void) {
    // SAFETY: registered by `image_cxa_atexit` with a leaked `Destructor`.
    let d = unsafe { &*(d as *const Destructor) };
    if d.live.load(Ordering::Acquire) {
        (d.func)(d.obj as *mut c_void);
    }
}

/// Cancels (`live` false) or restores the destructors registered for
/// objects in `[start, end)`: a reload removed the global there, or a
/// rollback brought it back.
pub(crate) fn set_destructors_live(start: u64, end: u64, live: bool) {
    let list = DESTRUCTORS.lock().unwrap_or_else(|e| e.into_inner());
    for d in list
        .iter()
        .filter(|d| (start..end).contains(&(d.obj as u64)))
    {
        d.live.store(live, Ordering::Release);
    }
}

/// An image's `at_quick_exit`: `__cxa_at_quick_exit(f, __dso_handle)`.
extern "C" fn image_at_quick_exit(f: VoidFn) -> c_int {
    type CxaAtQuickExit = unsafe extern "C" fn(VoidFn, *mut c_void) -> c_int;
    // SAFETY: glibc's `int __cxa_at_quick_exit(void (*)(void), void *)`.
    match unsafe { libc_fn::<CxaAtQuickExit>(c"__cxa_at_quick_exit") } {
        // SAFETY: as above.
        Some(f2) => unsafe { f2(f, DSO_HANDLE.load(Ordering::Relaxed) as *mut c_void) },
        None => -1,
    }
}

/// An image's `pthread_atfork`:
/// `__register_atfork(prepare, parent, child, __dso_handle)`.
extern "C" fn image_pthread_atfork(prepare: VoidFn, parent: VoidFn, child: VoidFn) -> c_int {
    type RegisterAtfork = unsafe extern "C" fn(VoidFn, VoidFn, VoidFn, *mut c_void) -> c_int;
    // SAFETY: glibc's `int __register_atfork(void (*)(void), void (*)(void),
    // void (*)(void), void *)`.
    match unsafe { libc_fn::<RegisterAtfork>(c"__register_atfork") } {
        // SAFETY: as above.
        Some(reg) => unsafe {
            reg(
                prepare,
                parent,
                child,
                DSO_HANDLE.load(Ordering::Relaxed) as *mut c_void,
            )
        },
        None => libc::ENOMEM,
    }
}

/// The runtime's own symbols that images resolve: the C API.
pub(crate) fn runtime_symbol(name: &str) -> Option<u64> {
    let a = match name {
        "hcr_has_any_module_changed" => hcr_has_any_module_changed as *const () as usize,
        "hcr_has_module_changed" => hcr_has_module_changed as *const () as usize,
        "hcr_perform_code_reload" => hcr_perform_code_reload as *const () as usize,
        "hcr_last_error" => hcr_last_error as *const () as usize,
        "hcr_generation" => hcr_generation as *const () as usize,
        "hcr_on_before_reload" => hcr_on_before_reload as *const () as usize,
        "hcr_on_after_reload" => hcr_on_after_reload as *const () as usize,
        "hcr__on_before_reload_in" => hcr__on_before_reload_in as *const () as usize,
        "hcr__on_after_reload_in" => hcr__on_after_reload_in as *const () as usize,
        "hcr_get_proc" => hcr_get_proc as *const () as usize,
        "hcr_get_global" => hcr_get_global as *const () as usize,
        "hcr_init" => hcr_init as *const () as usize,
        "hcr_run_main" => hcr_run_main as *const () as usize,
        "hcr_shutdown" => hcr_shutdown as *const () as usize,
        "hcr_guard" => crate::guard::hcr_guard as *const () as usize,
        "hcr_tweak" => crate::control::hcr_tweak as *const () as usize,
        "hcr_nim_new_globals" => crate::nim::hcr_nim_new_globals as *const () as usize,
        // What glibc keeps in libc_nonshared.a, linked into every
        // executable and shared object rather than exported by libc.so.
        "atexit" => image_atexit as *const () as usize,
        "__cxa_atexit" => image_cxa_atexit as *const () as usize,
        "at_quick_exit" => image_at_quick_exit as *const () as usize,
        "pthread_atfork" | "__pthread_atfork" => image_pthread_atfork as *const () as usize,
        // A thread module code starts gets an alternate signal stack.
        "pthread_create" => crate::crash::image_pthread_create as *const () as usize,
        _ => return crate::tls::symbol(name),
    };
    Some(a as u64)
}
