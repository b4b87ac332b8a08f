//! The allocator settings the `hcr` and `hcr-link` binaries start with
//! (release builds allocate with mimalloc 2; see `hcr.rs`), and the
//! allocator `hcr-link` starts with ([`Deferred`]).

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// `mi_option_purge_delay` and `mi_option_arena_purge_mult` in mimalloc
/// 2's `mi_option_e` (`mimalloc.h`; the bindings name no constant for
/// them), each with its default there and the value set here.
const OPTIONS: [(
    libmimalloc_sys::mi_option_t,
    std::ffi::c_long,
    std::ffi::c_long,
); 2] = [(15, 10, 1000), (24, 10, 1)];

/// Has mimalloc 2 give freed memory back to the system a second after it
/// was freed, as mimalloc 3 does, instead of 10 ms (100 ms in its arenas).
/// Under `hcr run`, reloads 100 ms apart otherwise fault in afresh what
/// the reload before freed: a one-module reload of a 2000-module program
/// measured 52–94 µs (median 63) with mimalloc 2's own delays against
/// 44–54 µs with mimalloc 3, and 46–54 µs with these (BENCHMARKS.md,
/// "mimalloc 2 under `hcr run`"). Where the environment sets either
/// option (`MIMALLOC_PURGE_DELAY`, `MIMALLOC_ARENA_PURGE_MULT`), both
/// are left as they are.
///
/// # Safety
/// Call it before any other thread starts (first in `main`): mimalloc
/// keeps its options as plain values that every thread reads without
/// synchronisation.
#[allow(unsafe_code)]
pub unsafe fn purge_after_a_second() {
    // SAFETY: reads two of the allocator's options; the caller runs alone.
    let defaults = OPTIONS
        .iter()
        .all(|&(option, default, _)| unsafe { libmimalloc_sys::mi_option_get(option) } == default);
    // (Another numbering, another version's defaults, or a value from the
    // environment: nothing is changed.)
    if !defaults {
        return;
    }
    for (option, _, value) in OPTIONS {
        // SAFETY: as above; `mi_option_set_default` leaves an option the
        // environment set alone, and the allocator reads these two
        // whenever it schedules a purge.
        unsafe { libmimalloc_sys::mi_option_set_default(option, value) };
    }
}

/// `hcr-link`'s allocator: mimalloc once the process links, and before
/// that (the client of an `--incremental` server, which only reads its
/// command line and hands it over) a small fixed area, handed out front to
/// back and never reused. mimalloc's first allocation reserves its arena
/// and faults in and zeroes a first segment, about 0.4 ms of a 1.3 ms
/// process here (BENCHMARKS.md, "A static `hcr-link`"), which a client that
/// allocates a few kilobytes does not need. [`link_from_now`] switches to
/// mimalloc for good; an allocation the area cannot hold goes to mimalloc
/// at once. A block is freed by whichever allocator its address says gave
/// it: the area's are simply left (never more than [`FIRST`] bytes).
pub struct Deferred;

/// The size of the area allocations come from until the process links.
pub const FIRST: usize = 256 * 1024;

/// The area: zero-initialised static memory, faulted in page by page as it
/// is handed out.
#[repr(align(4096))]
struct Area(UnsafeCell<[u8; FIRST]>);

// SAFETY: the bytes are only reached through the pointers `Deferred`
// hands out, each range to one caller (the cursor below is advanced
// atomically, so no two allocations overlap); `Area` itself never reads
// or writes them.
#[allow(unsafe_code)]
unsafe impl Sync for Area {}

static AREA: Area = Area(UnsafeCell::new([0; FIRST]));
/// How many of the area's bytes are handed out.
static USED: AtomicUsize = AtomicUsize::new(0);
/// Set by [`link_from_now`]: every allocation goes to mimalloc.
static LINKING: AtomicBool = AtomicBool::new(false);

/// From now on `hcr-link` allocates with mimalloc (call it before linking
/// or serving).
pub fn link_from_now() {
    LINKING.store(true, Ordering::Relaxed);
}

impl Deferred {
    /// A block of `layout` from the area, or `None` once the process links
    /// or when the area cannot hold it. The block is zeroed: area bytes are
    /// handed out once and start as zeros.
    fn from_area(layout: Layout) -> Option<*mut u8> {
        if LINKING.load(Ordering::Relaxed) {
            return None;
        }
        let base = AREA.0.get().cast::<u8>();
        let mut used = USED.load(Ordering::Relaxed);
        loop {
            let start =
                (base as usize + used).checked_next_multiple_of(layout.align())? - base as usize;
            let end = start.checked_add(layout.size()).filter(|&e| e <= FIRST)?;
            match USED.compare_exchange_weak(used, end, Ordering::Relaxed, Ordering::Relaxed) {
                // `start..end` lies inside the area (checked above) and is
                // this caller's alone (the cursor moved past it).
                Ok(_) => return Some(base.wrapping_add(start)),
                Err(now) => used = now,
            }
        }
    }

    fn in_area(p: *mut u8) -> bool {
        let base = AREA.0.get() as usize;
        (base..base + FIRST).contains(&(p as usize))
    }
}

// SAFETY: every block comes either from the area (disjoint ranges of a
// static that lives as long as the process, aligned as asked, never handed
// out twice) or from mimalloc, and goes back to the allocator its address
// belongs to: mimalloc never returns an address inside a static.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Deferred {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match Self::from_area(layout) {
            Some(p) => p,
            // SAFETY: the caller's layout contract, passed on.
            None => unsafe { mimalloc::MiMalloc.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match Self::from_area(layout) {
            Some(p) => p,
            // SAFETY: as in `alloc`.
            None => unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !Self::in_area(ptr) {
            // SAFETY: a block mimalloc gave, with its layout (the caller's
            // contract).
            unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !Self::in_area(ptr) {
            // SAFETY: a block mimalloc gave, with its layout.
            return unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) };
        }
        // SAFETY: the caller guarantees `new_size` with `layout`'s
        // alignment is a valid layout.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: `new` is non-zero-sized (the caller's contract).
        let moved = unsafe { self.alloc(new) };
        if !moved.is_null() {
            // SAFETY: both blocks are live and distinct (the new one was
            // just handed out), each at least this long.
            unsafe { std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size)) };
        }
        moved
    }
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use super::*;

    #[test]
    fn blocks_come_from_the_area_until_the_process_links_and_go_back_where_they_came_from() {
        let a = Deferred;
        let small = Layout::from_size_align(100, 64).unwrap();
        let larger = Layout::from_size_align(1000, 64).unwrap();
        // SAFETY: non-zero layouts; each block is used within its size
        // and freed once, with the layout it was allocated (or reallocated)
        // with.
        unsafe {
            let p = a.alloc(small);
            let q = a.alloc_zeroed(small);
            assert!(Deferred::in_area(p) && Deferred::in_area(q));
            assert_eq!(
                (p as usize % 64, q as usize % 64),
                (0, 0),
                "aligned as asked"
            );
            assert!(q as usize >= p as usize + 100, "blocks overlap");
            assert!(std::slice::from_raw_parts(q, 100).iter().all(|&b| b == 0));
            p.write_bytes(7, 100);
            // Grown: moved within the area, its bytes with it.
            let p = a.realloc(p, small, 1000);
            assert!(Deferred::in_area(p));
            assert!(std::slice::from_raw_parts(p, 100).iter().all(|&b| b == 7));
            // More than the area holds: mimalloc's at once.
            let huge = Layout::from_size_align(FIRST + 1, 8).unwrap();
            let h = a.alloc(huge);
            assert!(!h.is_null() && !Deferred::in_area(h));
            a.dealloc(h, huge);
            a.dealloc(q, small);

            link_from_now();
            let m = a.alloc(small);
            assert!(
                !m.is_null() && !Deferred::in_area(m),
                "linking allocates with mimalloc"
            );
            // An area block grown after the switch moves to mimalloc.
            let p = a.realloc(p, larger, 5000);
            assert!(!Deferred::in_area(p));
            assert!(std::slice::from_raw_parts(p, 100).iter().all(|&b| b == 7));
            let larger = Layout::from_size_align(5000, 64).unwrap();
            let p = a.realloc(p, larger, 9000);
            assert!(std::slice::from_raw_parts(p, 100).iter().all(|&b| b == 7));
            a.dealloc(p, Layout::from_size_align(9000, 64).unwrap());
            a.dealloc(m, small);
        }
    }
}
