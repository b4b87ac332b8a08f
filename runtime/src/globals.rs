//! Persistent storage for writable objects: a first-fit heap over read-write
//! chunks of the window, so every global stays within PC-relative reach of
//! every image.

use hcr_loader::mem::{RangeAlloc, PAGE};
use hcr_loader::{Chunk, Window};

use crate::Error;

const HEAP_CHUNK: usize = 64 * 1024;
/// Objects from this size up get a chunk of their own, not zeroed by hand.
const OWN_CHUNK: usize = 1 << 20;

/// A writable object living in persistent storage.
#[derive(Debug, Clone)]
pub struct Global {
    /// Address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// Pointer fields the last load wrote: `(offset, kind, value)`. A field
    /// that still holds its value is re-based on the next reload; a field
    /// the program changed is left alone.
    pub written: Vec<hcr_loader::FieldValue>,
    /// A thread-local variable: `addr` is its offset in every thread's
    /// block (`tls.rs`), not an address in the heap.
    pub tls: bool,
}

/// The heap of persistent objects, in two classes. Storage aligned to
/// less than a pointer (`int`, `short`, `char` and small arrays and
/// structures of them; gcc aligns every object of 8 bytes or more to at
/// least 8, so in its output only objects smaller than a pointer are
/// narrow) cannot hold an aligned pointer, and lives apart: the scan for
/// pointers into an old image ([`Heap::any_word_in`]) reads only the other
/// class.
#[derive(Debug, Default)]
pub struct Heap {
    /// Storage aligned to 8 bytes or more.
    wide: Class,
    /// Storage aligned to less than 8 bytes.
    narrow: Class,
    /// Narrow storage that the scan reads all the same: a kept global
    /// whose new type is aligned to 8 or more (`int v[2]` edited into a
    /// pointer of the same size keeps its storage and its value).
    also: Vec<(usize, usize)>,
    /// Bytes currently allocated.
    pub used: u64,
}

/// The chunks of one class of storage and its free ranges.
#[derive(Debug, Default)]
struct Class {
    chunks: Vec<Chunk>,
    free: RangeAlloc,
}

/// Storage of this alignment cannot hold an aligned pointer.
fn is_narrow(align: usize) -> bool {
    align < 8
}

/// Zeroes `[addr, addr + size)`, heap storage handed out just now: whole
/// pages of a large range are given back to the kernel instead
/// (`MADV_DONTNEED`: they read as zero and are committed again only when
/// used), the rest written.
fn zero(addr: usize, size: usize) {
    let (lo, hi) = (addr.next_multiple_of(PAGE), (addr + size) / PAGE * PAGE);
    if size >= OWN_CHUNK && lo < hi {
        // SAFETY: both edges lie in a committed read-write heap chunk and
        // are not handed out to anyone else (the allocator just gave them).
        unsafe {
            std::ptr::write_bytes(addr as *mut u8, 0, lo - addr);
            std::ptr::write_bytes(hi as *mut u8, 0, addr + size - hi);
        }
        // SAFETY: [lo, hi) are whole pages of a private anonymous heap
        // chunk that only this new object will use; dropping them makes
        // them read as zero.
        let r = unsafe { libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_DONTNEED) };
        if r == 0 {
            return;
        }
    }
    // SAFETY: [addr, addr+size) lies in a committed read-write heap chunk
    // and is not handed out to anyone else (the allocator just gave it).
    unsafe { std::ptr::write_bytes(addr as *mut u8, 0, size) };
}

impl Heap {
    /// Allocates `size` zeroed bytes aligned to `align`.
    ///
    /// # Errors
    /// The window is exhausted.
    pub fn alloc(&mut self, window: &mut Window, size: u64, align: u32) -> Result<u64, Error> {
        let size =
            usize::try_from(size.max(1)).map_err(|_| Error::Internal("object too large".into()))?;
        let align = (align.max(1) as usize).min(4096);
        self.used += size as u64;
        let class = if is_narrow(align) {
            &mut self.narrow
        } else {
            &mut self.wide
        };
        let r = class.alloc(window, size, align);
        if r.is_err() {
            self.used -= size as u64;
        }
        r
    }

    /// The class holding `addr`.
    fn class_of(&mut self, addr: usize) -> &mut Class {
        if self.narrow.holds(addr) {
            &mut self.narrow
        } else {
            &mut self.wide
        }
    }

    /// Returns an object's storage.
    pub fn free(&mut self, addr: u64, size: u64) {
        let size = size.max(1);
        crate::control::forget_tweak(addr);
        self.also.retain(|&(a, _)| a != addr as usize);
        self.class_of(addr as usize)
            .free
            .free(addr as usize, size as usize);
        self.used = self.used.saturating_sub(size);
    }

    /// The object at `[addr, addr + size)` now has a type aligned to
    /// `align`: when that is a pointer's alignment and the storage is in
    /// the narrow class, the scan reads it from now on (until it is freed).
    pub fn kept_with_align(&mut self, addr: u64, size: u64, align: u32) {
        let a = addr as usize;
        if is_narrow(align as usize)
            || !self.narrow.holds(a)
            || self.also.iter().any(|&(x, _)| x == a)
        {
            return;
        }
        self.also.push((a, size as usize));
    }

    /// Returns a global's storage (a thread-local variable's offset is
    /// never reused, so there is nothing to return).
    pub fn free_global(&mut self, g: &Global) {
        if !g.tls {
            self.free(g.addr, g.size);
        }
    }

    /// Calls `f` with each 8-byte word of the storage that can hold a
    /// pointer (free ranges and the narrow class skipped) whose value lies
    /// in `[lo, hi)`, in address order, until it returns true. The words
    /// are read in blocks tested without a branch per word; `f` sees only
    /// the blocks with a word in range (most hold none).
    pub fn any_word_in(&self, lo: u64, hi: u64, mut f: impl FnMut(u64) -> bool) -> bool {
        self.wide.any_word_in(lo, hi, &mut f)
            || self
                .also
                .iter()
                .any(|&(a, n)| scan_words(a, a + n, lo, hi, &mut f))
    }

    /// Releases every chunk.
    ///
    /// # Safety
    /// No pointer into the heap may be used afterwards.
    pub unsafe fn release(&mut self, window: &mut Window) {
        for c in self
            .wide
            .chunks
            .drain(..)
            .chain(self.narrow.chunks.drain(..))
        {
            // SAFETY: the caller guarantees the heap is dead.
            unsafe { window.free(c) };
        }
        self.wide.free = RangeAlloc::default();
        self.narrow.free = RangeAlloc::default();
        self.also.clear();
        self.used = 0;
    }
}

impl Class {
    /// Allocates `size` (at least 1) zeroed bytes aligned to `align`.
    fn alloc(&mut self, window: &mut Window, size: usize, align: usize) -> Result<u64, Error> {
        if let Some(addr) = self.free.alloc(size, align) {
            // Storage used before: zeroed.
            zero(addr, size);
            return Ok(addr as u64);
        }
        if size >= OWN_CHUNK {
            // A large object (a static pool, a big table) gets fresh pages
            // of its own, left untouched: the kernel zero-fills each on its
            // first use, so memory is committed as the program uses it, as
            // a native program's `.bss` is (writing 300 MB of zeroes at
            // load took 0.7 s and 300 MB of memory).
            let chunk = window.alloc_unfilled(size)?;
            if chunk.len > size {
                // The page-rounding tail serves small objects later.
                self.free.free(chunk.addr + size, chunk.len - size);
            }
            let addr = chunk.addr;
            self.chunks.push(chunk);
            return Ok(addr as u64);
        }
        let chunk = window.alloc(size.max(HEAP_CHUNK))?;
        self.free.free(chunk.addr, chunk.len);
        self.chunks.push(chunk);
        let addr = self
            .free
            .alloc(size, align)
            .ok_or_else(|| Error::Internal("heap chunk too small".into()))?;
        zero(addr, size);
        Ok(addr as u64)
    }

    /// Whether `addr` lies in one of this class's chunks.
    fn holds(&self, addr: usize) -> bool {
        self.chunks
            .iter()
            .any(|k| k.addr <= addr && addr < k.addr + k.len)
    }

    /// Whether `f` returns true for a word of the storage handed out (free
    /// ranges skipped) in `[lo, hi)`; see [`Heap::any_word_in`].
    fn any_word_in(&self, lo: u64, hi: u64, f: &mut impl FnMut(u64) -> bool) -> bool {
        self.chunks.iter().any(|c| {
            let end = c.addr + c.len;
            let mut at = c.addr;
            for (s, l) in self.free.free_in(c.addr, end) {
                if scan_words(at, s, lo, hi, f) {
                    return true;
                }
                at = s + l;
            }
            scan_words(at, end, lo, hi, f)
        })
    }
}

/// Whether `f` returns true for an 8-aligned word of `[from, to)`, storage
/// of the heap's chunks, whose value lies in `[lo, hi)`. The words are read
/// in blocks tested without a branch per word; `f` sees only the words in
/// range.
fn scan_words(from: usize, to: usize, lo: u64, hi: u64, f: &mut impl FnMut(u64) -> bool) -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    const BLOCK: usize = 32;
    let span = hi.saturating_sub(lo);
    let inside = |w: u64| w.wrapping_sub(lo) < span;
    let first = from.next_multiple_of(8);
    let n = to.saturating_sub(first) / 8;
    // SAFETY: `first..first + 8 * n` is 8-aligned and lies inside a heap
    // chunk (the callers pass ranges of chunks, or of objects in them),
    // which stays committed read-write until `release`; program threads
    // may write the words concurrently, so they are read atomically.
    let words: &[AtomicU64] = unsafe { std::slice::from_raw_parts(first as *const _, n) };
    words.chunks(BLOCK).any(|block| {
        let hit = block
            .iter()
            .fold(false, |h, w| h | inside(w.load(Ordering::Relaxed)));
        hit && block
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
            .any(|w| inside(w) && f(w))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Large objects take fresh pages, and storage freed and handed out
    /// again (large or small, pages given back or written) reads as zero.
    #[test]
    fn storage_handed_out_again_reads_as_zero() {
        let mut window = Window::reserve(64 << 20).unwrap();
        let mut heap = Heap::default();
        let fill = |a: u64, n: usize| {
            // SAFETY: `a` is this test's live object of at least `n` bytes.
            unsafe { std::ptr::write_bytes(a as *mut u8, 0xAB, n) }
        };
        let zeroed = |a: u64, n: usize| {
            // SAFETY: as above.
            unsafe { std::slice::from_raw_parts(a as *const u8, n) }
                .iter()
                .all(|&b| b == 0)
        };
        for size in [3usize << 20, 100, 200 << 10] {
            let a = heap.alloc(&mut window, size as u64, 16).unwrap();
            assert!(zeroed(a, size), "fresh, {size} bytes");
            fill(a, size);
            heap.free(a, size as u64);
            // Freed storage is reused first (a resized pool does not take
            // the window again and again).
            let b = heap.alloc(&mut window, size as u64, 16).unwrap();
            assert_eq!(a, b, "{size} bytes");
            assert!(zeroed(b, size), "reused, {size} bytes");
            // A smaller object inside the freed range: zero too.
            fill(b, size);
            heap.free(b, size as u64);
            let c = heap.alloc(&mut window, (size / 2) as u64 + 1, 8).unwrap();
            assert!(zeroed(c, size / 2 + 1), "part of {size} bytes");
            heap.free(c, (size / 2) as u64 + 1);
        }
        // SAFETY: nothing uses the heap afterwards.
        unsafe { heap.release(&mut window) };
    }

    /// The scan sees every word in range, in address order, once, and no
    /// other; not the words of freed storage nor of storage aligned below a
    /// pointer's alignment; and stops when told.
    #[test]
    fn the_word_scan_sees_exactly_the_words_in_range() {
        let mut window = Window::reserve(64 << 20).unwrap();
        let mut heap = Heap::default();
        let (lo, hi) = (0x5000_0000u64, 0x5000_1000u64);
        let put = |a: u64, vals: &[u64]| {
            for (k, v) in vals.iter().enumerate() {
                // SAFETY: `a` is this test's live object of `vals.len()` words.
                unsafe { *((a as *mut u64).add(k)) = *v };
            }
        };
        // Blocks with no word in range, one at a block's last word, two in
        // one block, one just outside each end.
        let a = heap.alloc(&mut window, 8 * 100, 8).unwrap();
        let mut vals = vec![7u64; 100];
        (vals[31], vals[40], vals[41], vals[70], vals[71]) = (lo, hi - 1, lo + 8, lo - 1, hi);
        put(a, &vals);
        let freed = heap.alloc(&mut window, 8 * 40, 8).unwrap();
        put(freed, &[lo + 16; 40]);
        heap.free(freed, 8 * 40);
        let b = heap.alloc(&mut window, 8, 8).unwrap();
        put(b, &[lo + 24]);
        // Storage aligned below a pointer's alignment is not read.
        let narrow = heap.alloc(&mut window, 8, 4).unwrap();
        assert!(
            narrow.abs_diff(a) >= HEAP_CHUNK as u64,
            "a chunk of its own"
        );
        // SAFETY: `narrow` is this test's live 8-byte object.
        unsafe { (narrow as *mut u64).write_unaligned(lo + 32) };
        let mut seen = Vec::new();
        assert!(!heap.any_word_in(lo, hi, |w| {
            seen.push(w);
            false
        }));
        // (`b` reuses the freed storage's first word; the rest stays free.)
        let mut want = vec![lo, hi - 1, lo + 8, lo + 24];
        if b < a {
            want.rotate_right(1);
        }
        assert_eq!(seen, want);
        // Narrow storage whose object is now of a pointer's alignment (a
        // kept global retyped) is read until it is freed.
        heap.kept_with_align(narrow, 8, 8);
        let mut seen = Vec::new();
        heap.any_word_in(lo, hi, |w| {
            seen.push(w);
            false
        });
        assert_eq!(seen.last(), Some(&(lo + 32)));
        heap.free(narrow, 8);
        let mut after = Vec::new();
        heap.any_word_in(lo, hi, |w| {
            after.push(w);
            false
        });
        assert!(!after.contains(&(lo + 32)), "freed: not read");
        let mut calls = 0;
        assert!(heap.any_word_in(lo, hi, |_| {
            calls += 1;
            calls == 2
        }));
        assert_eq!(calls, 2);
        // SAFETY: nothing uses the heap afterwards.
        unsafe { heap.release(&mut window) };
    }
}
