//! The address window: one `PROT_NONE` reservation per process holding every
//! image, trampoline and persistent object, so that every 32-bit PC-relative
//! relocation between them reaches. Chunks are committed (made read-write)
//! when allocated and decommitted (back to `PROT_NONE`, pages dropped) when
//! freed, but for a few small ones kept for the next allocation of their
//! size; freed ranges are reused first-fit, so the window never drifts.

use std::collections::BTreeMap;

use crate::LoadError;

/// Page size of this machine's mappings.
pub const PAGE: usize = 4096;

/// Size of a transparent huge page.
pub const HUGE_PAGE: usize = 2 << 20;

/// Default window size: 2 GiB less 1 MiB, as large as keeps any two of its
/// addresses, with the addend of a 32-bit PC-relative fixup (up to 1 MiB),
/// within ±2 GiB of each other. A reservation costs address space only.
pub const DEFAULT_WINDOW: usize = (2 << 30) - (1 << 20);

/// First-fit allocator of byte ranges with coalescing on free.
#[derive(Debug, Default)]
pub struct RangeAlloc {
    /// start → length of free ranges.
    free: BTreeMap<usize, usize>,
}

impl RangeAlloc {
    /// An allocator owning `[start, start + len)`.
    pub fn new(start: usize, len: usize) -> Self {
        let mut free = BTreeMap::new();
        if len > 0 {
            free.insert(start, len);
        }
        RangeAlloc { free }
    }

    /// Takes `len` bytes aligned to `align` (a power of two).
    pub fn alloc(&mut self, len: usize, align: usize) -> Option<usize> {
        let align = align.max(1);
        let (&start, &flen, at) = self.free.iter().find_map(|(s, l)| {
            let at = s.checked_add(align - 1)? & !(align - 1);
            (at.checked_add(len)? <= s + l).then_some((s, l, at))
        })?;
        self.free.remove(&start);
        if at > start {
            self.free.insert(start, at - start);
        }
        let end = at + len;
        if end < start + flen {
            self.free.insert(end, start + flen - end);
        }
        Some(at)
    }

    /// The free ranges `(start, len)` that overlap `[from, to)`, clipped to
    /// it, in address order (a free range may run across the border of two
    /// adjacent chunks).
    pub fn free_in(&self, from: usize, to: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let before = self
            .free
            .range(..from)
            .next_back()
            .map(|(&s, &l)| (s, s + l))
            .filter(|&(_, e)| e > from);
        before
            .into_iter()
            .chain(self.free.range(from..to).map(|(&s, &l)| (s, s + l)))
            .map(move |(s, e)| {
                let (s, e) = (s.max(from), e.min(to));
                (s, e - s)
            })
    }

    /// Returns `[start, start + len)`.
    pub fn free(&mut self, start: usize, len: usize) {
        if len == 0 {
            return;
        }
        let (mut s, mut l) = (start, len);
        if let Some((&ps, &pl)) = self.free.range(..s).next_back() {
            if ps + pl == s {
                self.free.remove(&ps);
                s = ps;
                l += pl;
            }
        }
        if let Some(&nl) = self.free.get(&(s + l)) {
            self.free.remove(&(s + l));
            l += nl;
        }
        self.free.insert(s, l);
    }

    /// Total free bytes.
    pub fn free_bytes(&self) -> usize {
        self.free.values().sum()
    }
}

/// A committed, page-aligned range of the window.
#[derive(Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Start address.
    pub addr: usize,
    /// Length in bytes (a page multiple).
    pub len: usize,
}

/// Page protections a chunk can be given. Never write and execute at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prot {
    /// Readable and writable: while filling, and for persistent data.
    ReadWrite,
    /// Read-only data.
    Read,
    /// Code.
    ReadExecute,
}

/// The reserved window.
#[derive(Debug)]
pub struct Window {
    base: usize,
    len: usize,
    pages: RangeAlloc,
    /// Freed chunks of at most [`SPARE_MAX`] bytes, kept committed (at
    /// most [`SPARE_SLOTS`]) for the next allocation of the same size: a
    /// reload frees the area of the module it loaded two reloads before
    /// and allocates one of about that size, so the kernel neither drops
    /// nor faults in and zeroes those pages again.
    spare: Vec<Chunk>,
}

/// Largest chunk kept as a spare.
const SPARE_MAX: usize = 16 * PAGE;
/// Spare chunks kept at most.
const SPARE_SLOTS: usize = 4;

impl Window {
    /// Reserves `len` bytes of address space (no memory is committed).
    ///
    /// # Errors
    /// The kernel refuses the reservation.
    pub fn reserve(len: usize) -> Result<Window, LoadError> {
        let len = len.div_ceil(PAGE) * PAGE;
        // SAFETY: an anonymous PROT_NONE mapping at an address the kernel
        // chooses touches no existing mapping.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(LoadError::Window(format!(
                "cannot reserve {} MiB of address space: {}",
                len >> 20,
                std::io::Error::last_os_error()
            )));
        }
        let base = p as usize;
        Ok(Window {
            base,
            len,
            pages: RangeAlloc::new(base, len),
            spare: Vec::new(),
        })
    }

    /// First address of the window.
    pub fn base(&self) -> usize {
        self.base
    }

    /// Size of the window.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty window (never: reservations are at least a page).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Free bytes left (spare chunks count as free).
    pub fn free_bytes(&self) -> usize {
        self.pages.free_bytes() + self.spare.iter().map(|c| c.len).sum::<usize>()
    }

    /// True when `addr` lies inside the window.
    pub fn contains(&self, addr: usize) -> bool {
        addr >= self.base && addr < self.base + self.len
    }

    /// Commits `len` bytes (rounded up to pages) as read-write, zero-filled,
    /// and faults them in ([`populate`]): the chunk is about to be filled.
    ///
    /// # Errors
    /// The window is exhausted, or the kernel refuses the protection change.
    pub fn alloc(&mut self, len: usize) -> Result<Chunk, LoadError> {
        let chunk = self.alloc_unfilled(len)?;
        populate(chunk.addr, chunk.len);
        Ok(chunk)
    }

    /// As [`Window::alloc`], without faulting the pages in: for a caller
    /// that fills parts of the chunk from several threads, each faulting in
    /// its own part ([`populate`]).
    ///
    /// # Errors
    /// As [`Window::alloc`].
    pub fn alloc_unfilled(&mut self, len: usize) -> Result<Chunk, LoadError> {
        let len = chunk_len(len);
        if let Some(k) = self.spare.iter().position(|c| c.len == len) {
            let chunk = self.spare.swap_remove(k);
            if let Err(e) = protect(&chunk, Prot::ReadWrite) {
                // SAFETY: a spare chunk is unused (its last user freed it).
                unsafe { self.release(chunk) };
                return Err(e);
            }
            // As a fresh chunk: zero-filled. Its pages are in memory, so
            // this costs no faults.
            // SAFETY: the chunk lies in our reservation, is committed
            // read-write (just above) and unused: nothing else refers to
            // its bytes.
            unsafe { std::ptr::write_bytes(chunk.addr as *mut u8, 0, chunk.len) };
            return Ok(chunk);
        }
        // A chunk of huge pages' size starts on a huge page (below), so all
        // of it but its tail can have them; a smaller one anywhere.
        let align = if len >= HUGE_PAGE { HUGE_PAGE } else { PAGE };
        let take =
            |pages: &mut RangeAlloc| pages.alloc(len, align).or_else(|| pages.alloc(len, PAGE));
        let mut addr = take(&mut self.pages);
        if addr.is_none() && !self.spare.is_empty() {
            // The spares' ranges may be what is missing.
            self.release_spares();
            addr = take(&mut self.pages);
        }
        let addr = addr.ok_or_else(|| {
            LoadError::Window(format!(
                "address window exhausted: need {} KiB, {} KiB free of {} MiB",
                len >> 10,
                self.pages.free_bytes() >> 10,
                self.len >> 20
            ))
        })?;
        let chunk = Chunk { addr, len };
        if let Err(e) = protect(&chunk, Prot::ReadWrite) {
            self.pages.free(addr, len);
            return Err(e);
        }
        // A large chunk (a big image's area) asks for transparent huge
        // pages where the system grants them on request: filling fresh 4 KiB
        // pages costs more than copying into them (8 MiB: 3.1 ms, with huge
        // pages about 0.5 ms). Only 2 MiB-aligned ranges inside the chunk
        // can get one (hence the alignment), so no memory outside the chunk
        // is committed; the later protection split (text, read-only data)
        // splits them.
        if len >= HUGE_PAGE {
            // SAFETY: the range is our committed, read-write chunk; the
            // advice changes no contents.
            unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_HUGEPAGE) };
        }
        Ok(chunk)
    }

    /// Decommits `chunk` and returns it for reuse.
    ///
    /// # Safety
    /// No code may run in, and no live pointer may refer to, the chunk.
    pub unsafe fn free(&mut self, chunk: Chunk) {
        if chunk.len <= SPARE_MAX && self.spare.len() < SPARE_SLOTS {
            // Kept committed, with the protection it had (never writable
            // and executable): nothing runs in or refers to it, as for a
            // decommitted chunk, until an allocation of its size takes it.
            self.spare.push(chunk);
            return;
        }
        // SAFETY: as the caller guarantees for `free`.
        unsafe { self.release(chunk) };
    }

    /// Decommits every spare chunk.
    fn release_spares(&mut self) {
        for c in std::mem::take(&mut self.spare) {
            // SAFETY: a spare chunk is unused (its last user freed it).
            unsafe { self.release(c) };
        }
    }

    /// Decommits `chunk` and returns its range to the free list.
    ///
    /// # Safety
    /// As [`Window::free`].
    unsafe fn release(&mut self, chunk: Chunk) {
        // SAFETY: the chunk lies in our reservation (it came from `alloc`);
        // the caller guarantees nothing uses it. MAP_FIXED over our own
        // reservation replaces only these pages with fresh PROT_NONE ones,
        // which drops their contents.
        let p = unsafe {
            libc::mmap(
                chunk.addr as *mut libc::c_void,
                chunk.len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            // Could not reset the pages: keep them out of circulation.
            log::warn!("hcr: cannot release window pages at {:#x}", chunk.addr);
            return;
        }
        self.pages.free(chunk.addr, chunk.len);
    }
}

/// The length of a chunk for `len` bytes: whole pages; from a huge page
/// up, whole huge pages where the last would be at least half used. The
/// last part of a chunk can have a huge page only when it spans one
/// whole, and 4 KiB pages cost one fault each where a huge page costs one
/// for 2 MiB (an 8 MiB image area ending 1.8 MiB into its last huge page:
/// 460 faults, about 0.9 ms, for 0.2 MiB of room saved).
pub fn chunk_len(len: usize) -> usize {
    let len = len.max(1).div_ceil(PAGE) * PAGE;
    if len >= HUGE_PAGE && len % HUGE_PAGE >= HUGE_PAGE / 2 {
        return len.next_multiple_of(HUGE_PAGE);
    }
    len
}

/// The start addresses of the whole, aligned huge pages in `chunk`.
pub fn huge_pages(chunk: &Chunk) -> Vec<usize> {
    let first = chunk.addr.next_multiple_of(HUGE_PAGE);
    let end = chunk.addr.saturating_add(chunk.len);
    (first..end)
        .step_by(HUGE_PAGE)
        .filter(|a| a.saturating_add(HUGE_PAGE) <= end)
        .collect()
}

/// Faults in the page at `addr` of a fresh, zero-filled chunk by writing
/// a zero byte there: for a chunk with huge pages, the whole huge page is
/// allocated and zeroed. On Linux 6.4 and later the fault is handled under
/// the memory area's own lock rather than the process's memory-map lock
/// that [`populate`] takes (which a thread growing its heap meanwhile
/// would wait for); before, both take the map lock for reading.
///
/// # Safety
/// `addr` lies in a committed, read-write chunk whose bytes are all zero
/// and that nothing else reads or writes until this returns.
pub unsafe fn fault_in_zeroed(addr: usize) {
    // SAFETY: as the caller guarantees, the byte is writable, already
    // zero, and no other thread reads or writes it meanwhile.
    unsafe { std::ptr::write_volatile(addr as *mut u8, 0) };
}

/// The smallest range [`populate`] asks the kernel to fault in.
pub const POPULATE_MIN: usize = 16 * PAGE;

/// Faults in the pages of `[addr, addr + len)` (rounded out to pages) with
/// one call rather than one fault per page when they are first written:
/// for a window chunk, or a large new heap allocation, about to be filled.
/// Contents do not change. Best effort: a range that is not writable
/// memory of this process is refused by the kernel, and older kernels
/// refuse `MADV_POPULATE_WRITE` (the pages then fault in on first touch).
/// A range under [`POPULATE_MIN`] is left to fault in: a few faults cost
/// less than the call (a reload's small chunk, a few registry entries).
pub fn populate(addr: usize, len: usize) {
    if len < POPULATE_MIN {
        return;
    }
    let start = addr / PAGE * PAGE;
    let end = addr.saturating_add(len).div_ceil(PAGE) * PAGE;
    if start < end {
        // SAFETY: `MADV_POPULATE_WRITE` only faults pages in (as a write
        // would, without writing): no contents change, and a range that
        // is not writable memory is refused (EFAULT, ENOMEM), not touched.
        unsafe {
            libc::madvise(
                start as *mut libc::c_void,
                end - start,
                23, /* MADV_POPULATE_WRITE */
            )
        };
    }
}

/// Changes the protection of a chunk.
///
/// # Errors
/// The kernel refuses.
pub fn protect(chunk: &Chunk, prot: Prot) -> Result<(), LoadError> {
    protect_range(chunk.addr, chunk.len, prot)
}

/// Changes the protection of pages `[addr, addr + len)` inside a chunk.
///
/// # Errors
/// The kernel refuses.
pub fn protect_range(addr: usize, len: usize, prot: Prot) -> Result<(), LoadError> {
    if len == 0 {
        return Ok(());
    }
    let p = match prot {
        Prot::ReadWrite => region::Protection::READ_WRITE,
        Prot::Read => region::Protection::READ,
        Prot::ReadExecute => region::Protection::READ_EXECUTE,
    };
    // SAFETY: callers pass ranges of chunks they own inside the window;
    // changing their protection affects no memory outside it.
    unsafe { region::protect(addr as *const u8, len, p) }
        .map_err(|e| LoadError::Window(format!("mprotect {addr:#x}+{len:#x}: {e}")))
}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: the window owns the reservation; dropping it means no image,
        // trampoline or global inside may be used any more (the owner drops
        // the window last).
        unsafe {
            libc::munmap(self.base as *mut libc::c_void, self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_chunk_ends_on_a_huge_page_when_its_last_is_half_used() {
        const H: usize = HUGE_PAGE;
        assert_eq!(chunk_len(0), PAGE);
        assert_eq!(chunk_len(PAGE + 1), 2 * PAGE);
        // Under one huge page: whole pages only.
        assert_eq!(chunk_len(H - 3 * PAGE), H - 3 * PAGE);
        // An 8 MiB image area 1.8 MiB into its last huge page: rounded up.
        assert_eq!(chunk_len(3 * H + 1_800_000), 4 * H);
        assert_eq!(chunk_len(3 * H + H / 2), 4 * H);
        // Less than half of the last one used: not.
        assert_eq!(chunk_len(3 * H + H / 2 - PAGE), 3 * H + H / 2 - PAGE);
        assert_eq!(chunk_len(4 * H), 4 * H);
    }

    #[test]
    fn only_whole_aligned_huge_pages_of_a_chunk_are_listed() {
        const H: usize = HUGE_PAGE;
        let at = |addr, len| huge_pages(&Chunk { addr, len });
        assert_eq!(at(4 * H, 4 * H), [4 * H, 5 * H, 6 * H, 7 * H]);
        // A start inside a huge page skips it; a tail short of one is left.
        assert_eq!(at(4 * H + PAGE, 3 * H), [5 * H, 6 * H]);
        assert_eq!(at(4 * H, 2 * H - PAGE), [4 * H]);
        assert!(at(4 * H + PAGE, H).is_empty());
    }

    #[test]
    fn free_ranges_are_clipped_to_the_range_asked_about() {
        // Two adjacent chunks [0x1000, 0x2000) and [0x2000, 0x3000); the
        // free range [0x1800, 0x2400) runs across their border.
        let mut a = RangeAlloc::default();
        a.free(0x1800, 0xc00);
        a.free(0x2800, 0x100);
        let first: Vec<_> = a.free_in(0x1000, 0x2000).collect();
        assert_eq!(first, [(0x1800, 0x800)]);
        let second: Vec<_> = a.free_in(0x2000, 0x3000).collect();
        assert_eq!(second, [(0x2000, 0x400), (0x2800, 0x100)]);
        assert_eq!(a.free_in(0x3000, 0x4000).count(), 0);
    }

    #[test]
    fn range_alloc_reuses_and_coalesces() {
        let mut a = RangeAlloc::new(0x1000, 0x10000);
        let x = a.alloc(0x1000, 0x1000).unwrap();
        let y = a.alloc(0x2000, 0x1000).unwrap();
        assert_eq!((x, y), (0x1000, 0x2000));
        a.free(x, 0x1000);
        a.free(y, 0x2000);
        assert_eq!(a.free_bytes(), 0x10000);
        assert_eq!(a.alloc(0x10000, 0x1000), Some(0x1000));
        assert_eq!(a.alloc(1, 1), None);
    }

    #[test]
    fn window_allocates_inside_and_frees() {
        let mut w = Window::reserve(1 << 20).unwrap();
        let c = w.alloc(100).unwrap();
        assert!(w.contains(c.addr));
        assert_eq!(c.len, PAGE);
        // SAFETY: nothing uses the fresh chunk.
        unsafe { w.free(c) };
        assert_eq!(w.free_bytes(), 1 << 20);
        assert!(matches!(w.alloc(2 << 20), Err(LoadError::Window(_))));
    }

    #[test]
    fn a_freed_small_chunk_is_kept_and_given_back_zeroed() {
        let mut w = Window::reserve(64 * PAGE).unwrap();
        let c = w.alloc(2 * PAGE).unwrap();
        let at = c.addr;
        // SAFETY: the fresh chunk is ours and read-write.
        unsafe { std::ptr::write_bytes(at as *mut u8, 0xcc, 2 * PAGE) };
        protect(&c, Prot::ReadExecute).unwrap();
        // SAFETY: nothing uses the chunk.
        unsafe { w.free(c) };
        assert_eq!(w.free_bytes(), 64 * PAGE);
        // A request of another size does not take it; one of its size does.
        let other = w.alloc_unfilled(PAGE).unwrap();
        assert_ne!(other.addr, at);
        let again = w.alloc_unfilled(2 * PAGE).unwrap();
        assert_eq!(again.addr, at);
        // As a fresh chunk: zero-filled and writable.
        // SAFETY: the chunk is ours and read-write.
        let bytes = unsafe { std::slice::from_raw_parts_mut(at as *mut u8, 2 * PAGE) };
        assert!(bytes.iter().all(|&b| b == 0));
        bytes[PAGE] = 1;
        // SAFETY: nothing uses the chunks.
        unsafe {
            w.free(again);
            w.free(other);
        }
        // The spares give their ranges back when the window runs short.
        let all = w.alloc_unfilled(64 * PAGE).unwrap();
        assert_eq!(all.addr, w.base());
    }

    #[test]
    fn a_large_chunk_starts_on_a_huge_page_when_it_can() {
        let mut w = Window::reserve(8 << 20).unwrap();
        let small = w.alloc(PAGE).unwrap();
        let big = w.alloc_unfilled(3 << 20).unwrap();
        assert_eq!(big.addr % HUGE_PAGE, 0);
        // The pages skipped for the alignment still serve small chunks.
        let next = w.alloc(PAGE).unwrap();
        assert!(next.addr < big.addr);
        // SAFETY: nothing uses these fresh chunks.
        unsafe {
            w.free(small);
            w.free(big);
            w.free(next);
        }
        assert_eq!(w.free_bytes(), 8 << 20);
        // No aligned room: any place that fits.
        let mut w = Window::reserve(HUGE_PAGE).unwrap();
        let all = w.alloc_unfilled(HUGE_PAGE).unwrap();
        assert_eq!(all.len, HUGE_PAGE);
    }
}
