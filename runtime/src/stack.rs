//! The calling thread's stack, read conservatively (for deciding when an
//! old image may be freed).

use std::ffi::c_void;

/// Every 8-byte word on the calling thread's stack, from the current
/// frame to the stack's top: a conservative superset of its return
/// addresses (no unwinding needed, so frames without unwind information
/// count too).
/// `None` when the stack's bounds cannot be established (the caller must
/// then assume every old image may still be in use).
pub(crate) fn stack_words() -> Option<Vec<usize>> {
    // The stack pointer itself: the address of a local is not on this stack
    // when locals live elsewhere (AddressSanitizer's fake stack), and then
    // [local, top) spans unrelated memory.
    let sp: usize;
    // SAFETY: copies the stack pointer register; no memory is accessed.
    unsafe {
        std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    let (bottom, top) = bounds();
    if sp < bottom || top <= sp {
        return None;
    }
    let start = sp & !7;
    let n = (top - start) / 8;
    // SAFETY: [start, top) is the used part of this thread's stack, mapped
    // and readable; words are read, never written. The load is a plain
    // `mov` rather than a Rust read so that AddressSanitizer does not check
    // it: the scan reads every word on purpose, the redzones between a
    // frame's variables included.
    Some(
        (0..n)
            .map(|i| unsafe {
                let w: usize;
                std::arch::asm!(
                    "mov {w}, qword ptr [{p}]",
                    p = in(reg) start + 8 * i,
                    w = out(reg) w,
                    options(readonly, nostack, preserves_flags)
                );
                w
            })
            .collect(),
    )
}

/// Asks the calling thread's stack bounds (see [`bounds`]), and remembers
/// them as the loading thread's ([`loader_stack_words`]). For the main
/// thread the C library reads `/proc/self/maps` to answer (0.1 ms of a
/// first load): `defer` is offered a job that asks them from another
/// thread instead (true: it will run); until it has, the main thread asks
/// them itself when it needs them, as any other thread does.
pub(crate) fn learn_bounds(defer: impl FnOnce(fn()) -> bool) {
    let me = std::thread::current().id();
    // SAFETY: `gettid` and `getpid` only return this thread's and this
    // process's ids.
    let main = unsafe { libc::gettid() == libc::getpid() };
    if main {
        // SAFETY: `pthread_self` only returns the calling thread's handle;
        // the main thread's is valid for the life of the process.
        let handle = unsafe { libc::pthread_self() };
        *MAIN.lock().unwrap_or_else(|p| p.into_inner()) = Some(Main {
            id: me,
            handle,
            bounds: None,
        });
        if defer(learn_main_bounds) {
            return;
        }
    }
    let (_, top) = bounds();
    if top != 0 {
        *LOADER.lock().unwrap_or_else(|p| p.into_inner()) = Some((me, top));
    }
}

/// The main thread, when it loaded the image: its handle, and its stack
/// bounds once another thread asked them ([`learn_main_bounds`]).
struct Main {
    id: std::thread::ThreadId,
    handle: libc::pthread_t,
    bounds: Option<(usize, usize)>,
}

// SAFETY: a `pthread_t` is an opaque handle, used here only to ask the
// main thread's attributes, which any thread may do.
unsafe impl Send for Main {}

static MAIN: std::sync::Mutex<Option<Main>> = std::sync::Mutex::new(None);

/// Asks the main thread's stack bounds (from whichever thread runs this)
/// and remembers them as the loading thread's.
fn learn_main_bounds() {
    let mut main = MAIN.lock().unwrap_or_else(|p| p.into_inner());
    let Some(m) = main.as_mut().filter(|m| m.bounds.is_none()) else {
        return;
    };
    let (bottom, top) = bounds_of(m.handle);
    if top != 0 {
        m.bounds = Some((bottom, top));
        *LOADER.lock().unwrap_or_else(|p| p.into_inner()) = Some((m.id, top));
    }
}

/// The thread that loaded the image (the program's main thread under `hcr
/// run`) and the top of its stack.
static LOADER: std::sync::Mutex<Option<(std::thread::ThreadId, usize)>> =
    std::sync::Mutex::new(None);

/// Bytes of another thread's stack read at most, from its top.
const OTHER_STACK_MAX: usize = 1 << 20;

/// The words on the loading thread's stack, read from another thread
/// (empty on the loading thread itself, whose [`stack_words`] are exact):
/// from its top down to where its mapping ends, at most 1 MiB. That thread
/// runs meanwhile, so this is a snapshot that may hold stale words, as a
/// conservative scan does anyway.
pub(crate) fn loader_stack_words() -> Vec<usize> {
    let Some((id, top)) = *LOADER.lock().unwrap_or_else(|p| p.into_inner()) else {
        return Vec::new();
    };
    if id == std::thread::current().id() {
        return Vec::new();
    }
    // Read downwards in chunks; where a chunk reaches below the stack's
    // mapping, page by page down to it.
    const CHUNK: usize = 64 * 1024;
    const PAGE: usize = 4096;
    let mut words = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    let mut hi = top & !(PAGE - 1);
    let mut step = CHUNK;
    while top - hi < OTHER_STACK_MAX && hi >= step {
        let lo = hi - step;
        // (Below the stack's used part the memory is unmapped: `peek`
        // says so instead of faulting.)
        if !crate::crash::peek(lo as u64, &mut buf[..step]) {
            if step == PAGE {
                break;
            }
            step = PAGE;
            continue;
        }
        words.extend(
            buf[..step]
                .chunks_exact(8)
                .map(|b| usize::from_le_bytes(b.try_into().unwrap_or([0; 8]))),
        );
        hi = lo;
    }
    words
}

/// The calling thread's stack, `[bottom, top)` (both 0 when unknown).
/// Asked once per thread: for the main thread the C library reads
/// `/proc/self/maps` to answer, which costs more than the rest of a reload
/// in a program with many mappings. A thread's stack does not move, and
/// the main thread's `top` is fixed while its `bottom` is where it may
/// grow to: the scan starts at the stack pointer, so only `top` bounds it.
fn bounds() -> (usize, usize) {
    thread_local! {
        static BOUNDS: std::cell::Cell<Option<(usize, usize)>> = const { std::cell::Cell::new(None) };
    }
    if let Some(b) = BOUNDS.with(std::cell::Cell::get) {
        return b;
    }
    // The main thread's, asked by another thread after the load.
    let me = std::thread::current().id();
    let known = (MAIN.lock().unwrap_or_else(|p| p.into_inner()).as_ref())
        .filter(|m| m.id == me)
        .and_then(|m| m.bounds);
    // SAFETY: `pthread_self` only returns the calling thread's handle.
    let (bottom, top) = known.unwrap_or_else(|| bounds_of(unsafe { libc::pthread_self() }));
    if top != 0 {
        BOUNDS.with(|b| b.set(Some((bottom, top))));
    }
    (bottom, top)
}

/// The stack of thread `handle` (a live thread's), `[bottom, top)` (both
/// 0 when unknown).
fn bounds_of(handle: libc::pthread_t) -> (usize, usize) {
    let mut bottom = 0usize;
    let mut top = 0usize;
    // SAFETY: pthread_getattr_np fills `attr` for the thread `handle`,
    // which the caller guarantees is alive (the calling thread, or the
    // main thread, alive for the life of the process); the attribute
    // object is destroyed after use.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(handle, &mut attr) == 0 {
            let mut addr: *mut c_void = std::ptr::null_mut();
            let mut size: libc::size_t = 0;
            if libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0 {
                bottom = addr as usize;
                top = addr as usize + size;
            }
            libc::pthread_attr_destroy(&mut attr);
        }
    }
    (bottom, top)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loading thread's bounds asked by another thread, as the main
    /// thread's are after a load: the same as the thread's own, and
    /// remembered for it and as the loader's.
    #[test]
    fn bounds_asked_by_another_thread_are_the_threads_own() {
        let me = std::thread::current().id();
        // SAFETY: this thread's handle, valid while it runs (past the join
        // below).
        let own = bounds_of(unsafe { libc::pthread_self() });
        assert!(own.0 < own.1, "{own:?}");
        *MAIN.lock().unwrap() = Some(Main {
            id: me,
            // SAFETY: as above.
            handle: unsafe { libc::pthread_self() },
            bounds: None,
        });
        std::thread::spawn(learn_main_bounds).join().unwrap();
        assert_eq!(
            MAIN.lock().unwrap().as_ref().and_then(|m| m.bounds),
            Some(own)
        );
        assert_eq!(*LOADER.lock().unwrap(), Some((me, own.1)));
        assert_eq!(bounds(), own);
        // A local of this frame lies inside them.
        let here = &me as *const _ as usize;
        assert!(own.0 <= here && here < own.1);
        *MAIN.lock().unwrap() = None;
        *LOADER.lock().unwrap() = None;
    }
}
