//! The address window: one `PROT_NONE` reservation per process holding every
//! image, trampoline and persistent object, so that every 32-bit PC-relative
//! relocation between them reaches. Chunks are committed (made read-write)
//! when allocated and decommitted (back to `PROT_NONE`, pages dropped) when
//! freed; freed ranges are reused first-fit, so the window never drifts.

use std::collections::BTreeMap;

use crate::LoadError;

/// Page size of this machine's mappings.
pub const PAGE: usize = 4096;

/// Size of a transparent huge page.
const HUGE_PAGE: usize = 2 << 20;

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
}

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

    /// Free bytes left.
    pub fn free_bytes(&self) -> usize {
        self.pages.free_bytes()
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
        let len = len.max(1).div_ceil(PAGE) * PAGE;
        // A chunk of huge pages' size starts on a huge page (below), so all
        // of it but its tail can have them; a smaller one anywhere.
        let align = if len >= HUGE_PAGE { HUGE_PAGE } else { PAGE };
        let addr = self
            .pages
            .alloc(len, align)
            .or_else(|| self.pages.alloc(len, PAGE));
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
