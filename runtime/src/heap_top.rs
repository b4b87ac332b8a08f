//! The C library's heap top on huge pages for a first load.
//!
//! A first load of a large image allocates megabytes on the loading
//! thread (the decoded manifest, registry indices, the function registry,
//! the globals' table), nearly all of it small blocks the C library carves
//! from the top of its heap, which grows in 4 KiB pages the kernel
//! zero-fills one fault at a time (about 2.6 µs each on the machines
//! measured: about 350 such faults, 0.9 ms, on the loading thread of a
//! 500 × 50 first load). A huge page is zeroed in one fault (about 0.25 ms
//! for 2 MiB; with the kernel's `defrag` at `madvise`, now and then a few
//! milliseconds more when memory must be compacted first). So before such
//! a load, [`HugeTop::new`] extends glibc's heap by [`AHEAD`] bytes and
//! hands them back at once, asking for transparent huge pages in its whole
//! 2 MiB stretches; while the load runs, a block that fills the stretch
//! before the first of them is held, so that what the load allocates next
//! comes from huge pages. Pages are
//! faulted in only where the load writes; the stretches it never reaches
//! keep the advice, so the program's own blocks there later come in 2 MiB
//! pages too.
//!
//! The heap keeps that top: glibc gives the top of its heap back only past
//! its trim threshold, which a freed block larger than its `mmap` threshold
//! raises to twice that block's size (its own dynamic tuning, as in any
//! program that frees a large block), so the probe freed first makes the
//! extension come from the heap and stay there. From then on, for the
//! process's life, the program's blocks of up to about 12 MiB come from the
//! heap and up to about 24 MiB of free top is kept, as after any such free.
//! Best effort: with another C library, or with glibc's thresholds set by
//! the program (`mallopt`, so that the block is mapped on its own), nothing
//! is asked for. Only where the runtime's own allocations go to glibc's
//! `malloc` (a C host, a Rust host with the system allocator): a Rust host
//! with an allocator of its own, such as the release `hcr` binary's
//! mimalloc (which keeps glibc's state for the program it runs as a fresh
//! process has it), would gain nothing, and its glibc thresholds are left
//! alone. (A debug `hcr` allocates with glibc, for valgrind's sake, and
//! does set the top up.)

#[cfg_attr(
    not(all(target_os = "linux", target_env = "gnu")),
    allow(unused_imports)
)]
use hcr_loader::mem::HUGE_PAGE;

/// Bytes the heap is extended by ahead of a first load: at least two whole
/// huge pages past the block that fills the stretch before them.
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
const AHEAD: usize = 10 << 20;

/// The block that holds the heap's top at a huge-page boundary while a
/// first load runs; freed when dropped (at the end of the load).
#[derive(Debug)]
pub(crate) struct HugeTop {
    /// The block's address, as `malloc` returned it (0: none held).
    filler: usize,
}

impl HugeTop {
    /// Extends the calling thread's heap and asks for huge pages in it
    /// (see the module's documentation). `None` where the heap could not
    /// be set up so.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    pub(crate) fn new() -> Option<HugeTop> {
        if !huge_pages_on() || !allocations_go_to_malloc() {
            return None;
        }
        // SAFETY: blocks from `malloc` are only freed, each once, and their
        // bytes are never read or written here; `malloc_usable_size` reads
        // only the C library's own record of a live block.
        let (block, usable) = unsafe {
            // (Kept from being optimised away, as a pair that cancels.)
            libc::free(std::hint::black_box(libc::malloc(AHEAD + HUGE_PAGE)));
            let block = libc::malloc(AHEAD);
            (block as usize, libc::malloc_usable_size(block))
        };
        if block == 0 {
            return None;
        }
        // A block carved from a heap has its size rounded to 16 bytes with
        // one header word; one mapped on its own (the program set its
        // thresholds) is rounded to whole pages. (A block taken from a
        // free one larger by a few words counts as mapped: nothing is
        // then asked for, which costs only the gain.)
        let from_heap = usable < AHEAD + 16;
        let end = block + AHEAD;
        let first = block.next_multiple_of(HUGE_PAGE);
        let last = end / HUGE_PAGE * HUGE_PAGE;
        let stretches = from_heap && first < last;
        if stretches {
            // SAFETY: the range lies inside the block just allocated
            // (writable heap memory of this process); the advice changes
            // how its pages are faulted in, never their contents.
            unsafe {
                libc::madvise(
                    first as *mut libc::c_void,
                    last - first,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
        // (A gap under the smallest chunk, 32 bytes, is left as it is:
        // nothing to hold.)
        let gap = first - block;
        if !stretches || gap < 32 {
            // SAFETY: `block` came from `malloc` above and is freed once.
            unsafe { libc::free(block as *mut libc::c_void) };
            return stretches.then_some(HugeTop { filler: 0 });
        }
        // The block shrunk to fill the heap from its start to the first
        // huge page: glibc shrinks a block in place and frees the rest,
        // which joins the heap's top, so the next block from the top starts
        // on the huge page (its chunk, a header word before it and sizes in
        // 16-byte steps, ends where the next block's header starts). A
        // free and a new block instead missed whenever a free block lay
        // just before this one: the free joined it to the top too, and the
        // new block started there.
        // SAFETY: `block` came from `malloc` above; `realloc` either keeps
        // it (shrunk, freed when `self` is dropped), moves it (freeing the
        // old one) or fails (leaving it), and each outcome frees what is
        // live exactly once.
        let filler = unsafe { libc::realloc(block as *mut libc::c_void, gap - 8) } as usize;
        if filler != block {
            let live = if filler == 0 { block } else { filler };
            // SAFETY: as above; freed once.
            unsafe { libc::free(live as *mut libc::c_void) };
            return None;
        }
        Some(HugeTop { filler })
    }

    /// Nothing to set up with another C library.
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    pub(crate) fn new() -> Option<HugeTop> {
        None
    }
}

impl Drop for HugeTop {
    fn drop(&mut self) {
        // SAFETY: `filler` came from `malloc` in `new` and is freed only
        // here (0, none held, is a null pointer, which `free` ignores).
        unsafe { libc::free(self.filler as *mut libc::c_void) };
    }
}

/// Whether this process's Rust allocations (the runtime's) go to the C
/// library's `malloc`: a block taken through the global allocator shows in
/// glibc's count of allocated bytes. A host with an allocator of its own
/// (the release `hcr` binary's mimalloc, which keeps glibc's state as a
/// fresh process has it for the program it runs) gains nothing from the
/// heap's top and keeps its glibc thresholds untouched. (Another thread's
/// frees between the two counts can make it say no: only the gain is
/// lost.)
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn allocations_go_to_malloc() -> bool {
    static MALLOC: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *MALLOC.get_or_init(|| {
        const PROBE: usize = 64 << 10;
        // SAFETY: `mallinfo2` only reads the allocator's own statistics.
        let before = unsafe { libc::mallinfo2() }.uordblks;
        let block = std::hint::black_box(Vec::<u8>::with_capacity(PROBE));
        // SAFETY: as above.
        let after = unsafe { libc::mallinfo2() }.uordblks;
        drop(block);
        after
            .checked_sub(before)
            .is_some_and(|grown| grown >= PROBE)
    })
}

/// Whether the system gives transparent huge pages to a range that asks
/// for them (`always` or `madvise`).
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
fn huge_pages_on() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .is_ok_and(|s| !s.contains("[never]"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the `VmFlags` of the mapping that holds `addr`.
    fn vm_flags(addr: usize) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for l in smaps.lines() {
            let range = l.split_once(' ').and_then(|(r, _)| r.split_once('-'));
            if let Some((Ok(lo), Ok(hi))) =
                range.map(|(lo, hi)| (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16)))
            {
                inside = lo <= addr && addr < hi;
            } else if let (true, Some(f)) = (inside, l.strip_prefix("VmFlags:")) {
                return f.to_string();
            }
        }
        String::new()
    }

    /// This test binary allocates with the system allocator: its blocks
    /// are glibc's.
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn the_system_allocator_is_told_to_be_malloc() {
        assert!(allocations_go_to_malloc());
    }

    /// With the heap's top held at a huge page, the thread's next block
    /// from the top starts on it, in a stretch that asks for huge pages.
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn the_next_block_from_the_top_starts_on_a_huge_page() {
        if !huge_pages_on() {
            eprintln!("transparent huge pages are off here: nothing is asked for, nothing checked");
            return;
        }
        // A thread of its own: an arena not shared with the tests running
        // beside it.
        std::thread::spawn(|| {
            let top = HugeTop::new().expect("the heap's top set up");
            // Larger than any block the arena keeps for reuse: from the
            // top.
            let b = std::hint::black_box(vec![7u8; 256 << 10]);
            let at = b.as_ptr() as usize;
            assert_eq!(at % HUGE_PAGE, 0, "block at {at:#x}, not on a huge page");
            let flags = vm_flags(at);
            assert!(
                flags.split_whitespace().any(|f| f == "hg"),
                "no huge-page advice where the block lies: {flags}"
            );
            drop(b);
            drop(top);
        })
        .join()
        .unwrap();
    }
}
