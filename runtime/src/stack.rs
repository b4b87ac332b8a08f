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

/// Asks the calling thread's stack bounds now (see [`bounds`]), and
/// remembers them as the loading thread's ([`loader_stack_words`]).
pub(crate) fn learn_bounds() {
    let (_, top) = bounds();
    if top != 0 {
        *LOADER.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((std::thread::current().id(), top));
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
    let mut bottom = 0usize;
    let mut top = 0usize;
    // SAFETY: pthread_getattr_np fills `attr` for the calling thread; the
    // attribute object is destroyed after use.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) == 0 {
            let mut addr: *mut c_void = std::ptr::null_mut();
            let mut size: libc::size_t = 0;
            if libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0 {
                bottom = addr as usize;
                top = addr as usize + size;
            }
            libc::pthread_attr_destroy(&mut attr);
        }
    }
    if top != 0 {
        BOUNDS.with(|b| b.set(Some((bottom, top))));
    }
    (bottom, top)
}
