//! The allocator settings the `hcr` and `hcr-link` binaries start with
//! (release builds allocate with mimalloc 2; see `hcr.rs`).

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
