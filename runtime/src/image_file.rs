//! Reading an image file into memory the runtime owns.
//!
//! A user tool may rewrite the file in place (`cp new.hcr app.hcr`
//! truncates, then writes) while the runtime reads it, and a read past the
//! end of a truncated shared mapping kills the process with `SIGBUS`. So
//! the file is mapped only under a read lease, which makes such a writer
//! wait, and only for a first load's manifest ([`Lent`]). Otherwise the
//! parts the loader uses are copied with `pread` into a private buffer laid
//! out at their file offsets: the ELF header, section
//! header 1, the `.hcr.manifest` section and, for a load, the initial data;
//! the load area goes straight into its window chunk
//! ([`ImageFile::read_area_into`]). The tool-only sections (symbols, relocations, section
//! headers: most of the file) are never read; the buffer's pages that would
//! hold them are never touched, so they cost address space only.
//!
//! What a concurrent writer can do to a read, and what the reader then says:
//! - the file shrinks: a `pread` comes back short, an error naming the file;
//! - the size or modification time differs after the read from before it:
//!   an error naming the file;
//! - bytes of two versions mixed without a visible change: the image checksum
//!   (manifest, load area, initial data) refuses them before anything runs.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::Error;
use hcr_loader::mem::HUGE_PAGE;

/// Bytes of the file read first: the ELF header (hcr-link puts the manifest
/// at the end, just before the section headers).
/// An image file at least this large makes a large first load, which
/// starts the threads that share it as it begins: the thread that opens
/// the image's watch beside the load ([`crate::watcher::start_beside`]) and
/// the helper's ([`crate::helper::start_early`]). A smaller image loads in
/// less time than a new thread may take to first run (0.1–3 ms on a busy
/// 2-CPU machine), or shares too little for that to matter.
pub(crate) const LARGE_FILE: u64 = 2 << 20;

const HEAD: usize = 4096;
/// Ranges closer than this are read with one `pread` (the bytes between
/// cost less than another system call).
const MERGE_GAP: usize = 64 * 1024;
/// Bytes read with one `pread` (so two threads can share a large read).
const PIECE: usize = 256 * 1024;
/// Reads of at least this much in all are shared with the helper thread.
const SHARE_MIN: usize = 1 << 20;
/// Reads from this size up fault their pages in with one call first.
const POPULATE_MIN: usize = 128 * 1024;
/// `fcntl`'s command to choose the signal a lease break sends (Linux's
/// `<fcntl.h>`; the libc crate does not name it).
const F_SETSIG: libc::c_int = 10;

// ELF64 offsets (System V gABI).
const E_SHOFF: usize = 40;
const SHDR_SIZE: usize = 64;
const SH_OFFSET: usize = 24;
const SH_SIZE: usize = 32;
// Offsets in the image's manifest header (`hcr_image::Header`, encoded by
// `hcr_image::encode_manifest`; pinned by a test below).
const MH_VERSION: usize = 8;
const MH_BODY_LEN: usize = 24;
// The load area's place (read straight into the window by the caller,
// `ImageFile::read_area_into`); pinned by the test with the rest.
#[cfg(test)]
const MH_AREA_OFFSET: usize = 32;
#[cfg(test)]
const MH_AREA_SIZE: usize = 40;
#[cfg(test)]
const MH_INIT_OFFSET: usize = 48;
#[cfg(test)]
const MH_INIT_SIZE: usize = 56;

/// An open image file, checked for ownership and kind.
pub struct ImageFile<'p> {
    path: &'p Path,
    file: File,
    /// Identity of the file when it was opened.
    pub stat: FileStat,
    /// A page of the file's mapping vanished while it was read ([`Lent`]).
    torn: std::sync::atomic::AtomicBool,
}

/// The buffer images are read into, kept between reads: filling fresh
/// pages costs more than copying into them, so a reload reuses the pages
/// the previous one touched. What stays allocated is what the loader read
/// of the largest image (its manifest, load area and initial data), not
/// the file.
///
/// A first load places the file's bytes at an offset into the buffer (its
/// `shift`) that starts the manifest section on a 2 MiB boundary, so the
/// manifest fills whole huge pages rather than straddling one it fills a
/// part of (4 KiB pages there cost one fault each: 1–2 ms for a 2.4 MB
/// manifest). A kept buffer keeps its shift: a reload reads into the
/// pages the first load faulted in.
#[derive(Default)]
pub struct Scratch {
    buf: Option<memmap2::MmapMut>,
    /// Where file offset 0 lies in `buf`.
    shift: usize,
}

impl Scratch {
    /// A buffer of at least `size` bytes: the kept one, or a new one when
    /// it is too small or more than four times the size a new one would
    /// have. A new one has room for the image to grow by an eighth, in
    /// whole 2 MiB pages: an edit usually makes the image a few bytes
    /// larger, and a buffer made for the exact size would be made again,
    /// its pages faulted in and zeroed anew, at the first reload after the
    /// first load (measured at 2000 modules: 0.5–1.2 ms instead of about
    /// 0.25). Untouched room costs address space only. The size a new one
    /// would have, not `size`, decides whether the kept one is too large:
    /// otherwise a small image's 2 MiB buffer counts as too large and is
    /// made again, and a huge page zeroed, at every reload.
    ///
    /// Returns the buffer and its shift. A new buffer for a read that will
    /// fill the section at file offset `dense` (a first load's manifest)
    /// gets 2 MiB more room and the shift that starts the section on a
    /// 2 MiB boundary; otherwise a new buffer's shift is 0.
    fn take(
        &mut self,
        size: usize,
        dense: Option<usize>,
    ) -> std::io::Result<(memmap2::MmapMut, usize)> {
        let room = Self::room(size);
        match self.buf.take() {
            Some(b) if b.len() >= self.shift.saturating_add(size) && b.len() / 4 <= room => {
                Ok((b, self.shift))
            }
            _ => {
                // (Huge pages are asked for where a read fills most of
                // one: `Reader::advise_dense`.)
                let Some(off) = dense else {
                    return Ok((memmap2::MmapMut::map_anon(room)?, 0));
                };
                let b = memmap2::MmapMut::map_anon(room.saturating_add(HUGE_PAGE))?;
                let at = (b.as_ptr() as usize).wrapping_add(off) % HUGE_PAGE;
                Ok((b, (HUGE_PAGE - at) % HUGE_PAGE))
            }
        }
    }

    /// The length of a new buffer for `size` bytes: an eighth more, in
    /// whole 2 MiB pages.
    fn room(size: usize) -> usize {
        size.saturating_add(size / 8)
            .checked_next_multiple_of(HUGE_PAGE)
            .unwrap_or(size)
            .max(size)
    }

    /// The length of the kept buffer (0 when none is kept).
    #[cfg(test)]
    fn kept_len(&self) -> usize {
        self.buf.as_ref().map_or(0, |b| b.len())
    }
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// `ranges` sorted, with those less than [`MERGE_GAP`] apart merged (the
/// bytes between cost less than another call).
fn merge_close(mut ranges: Vec<Range<usize>>) -> Vec<Range<usize>> {
    ranges.sort_unstable_by_key(|r| r.start);
    let mut merged: Vec<Range<usize>> = Vec::new();
    for r in ranges {
        match merged.last_mut() {
            Some(m) if r.start <= m.end.saturating_add(MERGE_GAP) => m.end = m.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
}

/// Where section header 1 (which places the manifest section) lies, as
/// the ELF header `head` says.
fn sh1_offset(head: &[u8]) -> Option<u64> {
    u64_at(head, E_SHOFF)?.checked_add(SHDR_SIZE as u64)
}

/// The file offset and length a section header `shdr` gives its section.
fn section_of(shdr: &[u8]) -> Option<(u64, u64)> {
    Some((u64_at(shdr, SH_OFFSET)?, u64_at(shdr, SH_SIZE)?))
}

/// `[off, off + len)` clipped to the file; `None` when nothing of it lies
/// inside (the image parser then reports what is missing).
fn clip(off: u64, len: u64, size: usize) -> Option<Range<usize>> {
    let start = usize::try_from(off).ok()?.min(size);
    let end = usize::try_from(off.saturating_add(len))
        .unwrap_or(usize::MAX)
        .min(size);
    (start < end).then_some(start..end)
}

impl<'p> ImageFile<'p> {
    /// Opens `path`: a regular, non-empty file that only its owner (this
    /// user or root) can write, unless `allow_insecure`.
    ///
    /// # Errors
    /// The file cannot be opened (the message names it and says why, e.g.
    /// permission denied), is not a regular file, is empty or insecure.
    pub fn open(path: &'p Path, allow_insecure: bool) -> Result<Self, Error> {
        let io = |e: std::io::Error| Error::Io(format!("{}: {e}", path.display()));
        // O_NONBLOCK: opening a FIFO must not wait for a writer (it is then
        // refused as not a regular file); regular files ignore the flag.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(Error::Io(format!("{}: not a regular file", path.display())));
        }
        if !allow_insecure {
            check_ownership(path, &meta)?;
        }
        let stat = FileStat::from_metadata(&meta);
        if stat.size == 0 {
            return Err(Error::Io(format!("{}: empty file", path.display())));
        }
        Ok(ImageFile {
            path,
            file,
            stat,
            torn: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Reads what [`hcr_image::ImageView::parse_global`] with `old` reads
    /// (the ELF header, section header 1, the manifest header, the
    /// manifest's global part, and the module records `old` does not hold)
    /// into `scratch`, at their file offsets. The slice
    /// returned is as long as the file; the bytes of parts not read are
    /// unspecified (the image parser never looks at them: it reads the same
    /// parts). The blocks and initial bytes a load needs follow
    /// ([`ImageFile::read_then`]); segments go straight to where they will
    /// run ([`ImageFile::read_area_into`]).
    ///
    /// # Errors
    /// The file shrank or changed while being read (rewritten in place), or
    /// a read failed; each message names the file.
    pub fn read<'s>(
        &'s self,
        scratch: &'s mut Scratch,
        old: Option<&hcr_image::Manifest>,
    ) -> Result<Bytes<'s>, Error> {
        self.read_then(scratch, old, |_| Vec::new())
    }

    /// As [`ImageFile::read`], then reads the `(offset, length)` ranges
    /// `more` asks for, given what was read so far.
    ///
    /// # Errors
    /// As [`ImageFile::read`].
    pub fn read_then<'s>(
        &'s self,
        scratch: &'s mut Scratch,
        old: Option<&hcr_image::Manifest>,
        more: impl FnOnce(&[u8]) -> Vec<(u64, u64)>,
    ) -> Result<Bytes<'s>, Error> {
        self.read_beside(scratch, old, more, None)
    }

    /// As [`ImageFile::read_then`]; where the file is mapped rather than
    /// copied (a first load's), the helper thread runs `beside` meanwhile
    /// ([`crate::helper::share`]: this thread takes its part once `more`
    /// is done). A copy does not run it: the helper shares the copy's
    /// large reads instead.
    ///
    /// # Errors
    /// As [`ImageFile::read`].
    pub fn read_beside<'s>(
        &'s self,
        scratch: &'s mut Scratch,
        old: Option<&hcr_image::Manifest>,
        more: impl FnOnce(&[u8]) -> Vec<(u64, u64)>,
        beside: Option<&(dyn Fn() + Sync)>,
    ) -> Result<Bytes<'s>, Error> {
        let size = usize::try_from(self.stat.size)
            .map_err(|_| Error::Io(format!("{}: file too large", self.path.display())))?;
        // A first load reads the whole manifest section: mapped where the
        // file can be leased, else placed on huge pages, asked for before
        // anything touches them.
        let section = match old {
            None => self.manifest_section(),
            Some(_) => None,
        };
        let lent = section.as_ref().and_then(|_| self.lend(size));
        if let Some(lent) = lent {
            // Pages are mapped in as the parser and the decoders touch them
            // (a fault maps the cached pages around it too), on whichever
            // thread reads them: asking for them all first, on this thread,
            // made first loads 0.4–0.7 ms slower at 2.4 MB of manifest.
            let bytes = &lent.bytes()[..size];
            let _ = match beside {
                Some(work) => crate::helper::share(work, || more(bytes)),
                None => more(bytes),
            };
            // (A writer let in after the lease's break time.)
            self.unchanged()?;
            return Ok(Bytes::Lent(lent));
        }
        let (buf, shift) = scratch
            .take(size, section.as_ref().map(|s| s.start))
            .map_err(|e| Error::Io(format!("{}: {e}", self.path.display())))?;
        let mut r = Reader {
            img: self,
            buf,
            shift,
            size,
            done: Vec::new(),
        };
        if let Some(section) = section.and_then(|s| clip(s.start as u64, s.len() as u64, size)) {
            r.advise_dense(&[section]);
        }
        let filled = r.fill_global().and_then(|()| {
            // An image the parser refuses reads no records: it says why.
            let records = hcr_image::ImageView::records_to_read(r.bytes(), old).unwrap_or_default();
            let ranges: Vec<Option<Range<usize>>> =
                records.into_iter().map(|(o, l)| clip(o, l, size)).collect();
            r.fill(&ranges)?;
            let ranges: Vec<Option<Range<usize>>> = more(r.bytes())
                .into_iter()
                .map(|(o, l)| clip(o, l, size))
                .collect();
            r.fill(&ranges)
        });
        scratch.shift = r.shift;
        let buf = scratch.buf.insert(r.buf);
        filled?;
        self.unchanged()?;
        Ok(Bytes::Copied(&buf[shift..shift + size]))
    }

    /// Maps the file for reading under a read lease; `None` (the caller
    /// copies instead)
    /// where the lease is refused: another process has the file open for
    /// writing, this user does not own it, or its file system has no
    /// leases. See [`Lent`].
    fn lend(&self, size: usize) -> Option<Lent<'_>> {
        use std::os::fd::AsRawFd;
        // (Read only under the crash handler's guard, below.)
        if !crate::crash::sigbus_is_ours() {
            return None;
        }
        let fd = self.file.as_raw_fd();
        // SAFETY: plain fcntl calls on our own open descriptor. The break
        // signal is one ignored by default, and none once the lease is
        // taken: a writer's open waits for the lease's release (or for
        // the system's break time) and this process hears nothing.
        let leased = unsafe {
            libc::fcntl(fd, F_SETSIG, libc::SIGURG);
            let ok = libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) == 0;
            if ok {
                libc::fcntl(fd, libc::F_SETOWN, 0);
            }
            ok
        };
        if !leased {
            return None;
        }
        let lease = Lease {
            file: self,
            handed_over: false,
        };
        // No writer can open the file now; one that wrote it between
        // `open` and the lease shows in its status.
        if self.unchanged().is_err() {
            return None;
        }
        // SAFETY: the file is leased for reading: until the lease is
        // released (after the mapping is dropped: `Lent`'s field order, or
        // `Released::drop` for a release put off),
        // or the system's break time has passed since a writer asked, no
        // process can open it for writing or truncate it, so the mapped
        // bytes neither change nor vanish under the reader. After the
        // break time a page may vanish: the guard below turns the fault
        // into a page of zeros and `torn`, and the bytes are refused.
        let map = unsafe { memmap2::MmapOptions::new().len(size).map(&self.file) }.ok()?;
        if !crate::crash::guard_mapping(map.as_ptr() as usize, map.len()) {
            return None;
        }
        Some(Lent {
            map: Some(map),
            lease,
        })
    }

    /// Where the section header table's second entry places the manifest
    /// section, read with two small `pread`s into the stack; `None` for a
    /// file that does not say (the parser then says why).
    fn manifest_section(&self) -> Option<Range<usize>> {
        let mut head = [0u8; 64];
        self.file.read_exact_at(&mut head, 0).ok()?;
        if !head.starts_with(b"\x7fELF") {
            return None;
        }
        let mut shdr = [0u8; SHDR_SIZE];
        self.file
            .read_exact_at(&mut shdr, sh1_offset(&head)?)
            .ok()?;
        let (off, len) = section_of(&shdr)?;
        let off = usize::try_from(off).ok()?;
        Some(off..off.checked_add(usize::try_from(len).ok()?)?)
    }

    /// The manifest header, read ahead of the manifest with three small
    /// reads (unverified: only a hint of what the manifest will say); `None`
    /// where the file does not hold one.
    pub fn header(&self) -> Option<hcr_image::Header> {
        let at = self.manifest_section()?.start;
        let mut b = [0u8; hcr_image::HEADER_SIZE];
        self.file.read_exact_at(&mut b, at as u64).ok()?;
        hcr_image::Header::from_section(&b).ok()
    }

    /// Whether the load area `h` places lies within the file.
    pub fn holds_area(&self, h: &hcr_image::Header) -> bool {
        (h.area_file_offset)
            .checked_add(h.area_file_size)
            .is_some_and(|end| end <= self.stat.size)
    }

    /// A writer that changed the file while we read it also changed its
    /// size or modification time (unless it wrote within the same clock
    /// tick without changing the size: the checksum catches that).
    fn unchanged(&self) -> Result<(), Error> {
        let after = self
            .file
            .metadata()
            .map(|m| FileStat::from_metadata(&m))
            .map_err(|e| Error::Io(format!("{}: {e}", self.path.display())))?;
        if !after.same_fields(&self.stat) {
            return Err(self.changed());
        }
        Ok(())
    }

    /// The file came back short: `readable` bytes of the size it had.
    fn shrank(&self, readable: u64) -> Error {
        Error::Io(format!(
            "{}: the file shrank while it was being read ({} bytes, {readable} readable; \
             rewritten in place?); write images by renaming a new file over the \
             old one, as hcr-link does",
            self.path.display(),
            self.stat.size
        ))
    }

    /// Reads `dst.len()` bytes at file offset `off` into `dst` (the load
    /// area, straight into its window chunk), then checks that the file did
    /// not change meanwhile, as [`ImageFile::read`] does.
    ///
    /// # Errors
    /// As [`ImageFile::read`].
    pub fn read_area_into(&self, off: u64, dst: &mut [u8]) -> Result<(), Error> {
        self.read_exact_at(dst, off)?;
        self.unchanged()
    }

    /// The error for bytes read from a mapping of the file a page of which
    /// vanished (the file was truncated once its lease had been broken: a
    /// load stopped for longer than the system's lease break time); what
    /// was read from it must not be used.
    pub fn torn(&self) -> Option<Error> {
        self.torn
            .load(std::sync::atomic::Ordering::Acquire)
            .then(|| self.changed())
    }

    /// The open file, for reads of parts the reload itself does not use
    /// (debug sections).
    pub fn handle(&self) -> &File {
        &self.file
    }

    /// Fills `dst` from file offset `off`; a short file is an error.
    fn read_exact_at(&self, dst: &mut [u8], off: u64) -> Result<(), Error> {
        let mut done = 0usize;
        while done < dst.len() {
            match self.file.read_at(&mut dst[done..], off + done as u64) {
                Ok(0) => return Err(self.shrank(off + done as u64)),
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Io(format!("{}: {e}", self.path.display()))),
            }
        }
        Ok(())
    }

    fn changed(&self) -> Error {
        Error::Io(format!(
            "{}: the file changed while it was being read (rewritten in place?); write \
             images by renaming a new file over the old one, as hcr-link does",
            self.path.display()
        ))
    }
}

/// The bytes of an image file as read: copied into a scratch buffer, or
/// the file itself mapped under a read lease ([`Lent`]). Parts not read
/// of a copy are unspecified (the image parser never looks at them).
pub enum Bytes<'s> {
    Copied(&'s [u8]),
    Lent(Lent<'s>),
}

impl std::ops::Deref for Bytes<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Copied(b) => b,
            Bytes::Lent(l) => l.bytes(),
        }
    }
}

/// An image file mapped for reading while this process holds a read lease
/// on it (`F_SETLEASE`), for a first load: the manifest is used where the
/// page cache holds it, with no copy and no fresh pages to fill (2.4 MB:
/// about 0.15 ms against 0.6 ms or more read into huge pages), its pages
/// mapped in by the faults of the threads that read them. The lease
/// is what makes the mapping safe: a process that opens the file to write
/// it (`cp new.hcr app.hcr`) or truncates it waits until the lease is
/// released, when the mapping is gone; a shared mapping read while the
/// file shrinks would kill the program with `SIGBUS`. The load's reads
/// take milliseconds; the lease lasts no longer than the `Bytes`, or, for
/// a first load whose release is put off ([`defer_releases`]), until
/// [`release_deferred`].
pub struct Lent<'s> {
    /// (Taken only by the drop, when the release is put off.)
    map: Option<memmap2::Mmap>,
    // (Dropped after the mapping.)
    lease: Lease<'s>,
}

impl Lent<'_> {
    fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or_default()
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        // (Before the mapping goes: the fields are dropped after this.)
        if crate::crash::unguard_mapping() {
            (self.lease.file.torn).store(true, std::sync::atomic::Ordering::Release);
        }
        // Nothing reads the mapping from here on: unguarded, a read of a
        // page gone after the lease's break time would raise `SIGBUS`.
        if DEFER.load(std::sync::atomic::Ordering::Relaxed) {
            // The lease goes with a descriptor of the same open file: a
            // lease belongs to the open file, not to the descriptor.
            if let Ok(file) = self.lease.file.file.try_clone() {
                let later = Released {
                    map: self.map.take(),
                    file,
                };
                self.lease.handed_over = true;
                LATER.lock().unwrap_or_else(|p| p.into_inner()).push(later);
            }
        }
    }
}

/// A read lease on an image file, released when dropped (unless handed
/// over to a [`Released`]).
struct Lease<'s> {
    file: &'s ImageFile<'s>,
    handed_over: bool,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if !self.handed_over {
            unlease(&self.file.file);
        }
    }
}

/// Releases the read lease this process holds on `file`'s open file.
fn unlease(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: an fcntl on our own open descriptor; closing the last
    // descriptor of the open file would release the lease too.
    unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) };
}

/// A first load's leased mapping whose release was put off until the load
/// is over ([`defer_releases`]): unmapping the manifest's pages (2.4 MB at
/// 500 modules × 50 functions) takes about 0.2 ms, with the process's
/// memory map lock held for writing, which the loading thread's page
/// faults would wait for. Dropped, it unmaps, then releases the lease,
/// then closes its descriptor. Nothing reads the mapping any more.
struct Released {
    map: Option<memmap2::Mmap>,
    /// A descriptor of the leased open file.
    file: File,
}

impl Drop for Released {
    fn drop(&mut self) {
        // Unmapped before the lease goes: a writer let in then can
        // truncate the file under no mapping of ours.
        drop(self.map.take());
        unlease(&self.file);
    }
}

/// While set, a [`Lent`] dropped puts its release off ([`Released`]).
static DEFER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// The releases put off, until [`release_deferred`].
static LATER: std::sync::Mutex<Vec<Released>> = std::sync::Mutex::new(Vec::new());

/// Puts off (or no longer) the release of a leased mapping as its load
/// drops it, until [`release_deferred`]: for a first load, whose caller
/// releases it once the load is over (on another thread when one is free).
pub(crate) fn defer_releases(on: bool) {
    DEFER.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Unmaps the mappings whose release was put off and releases their leases.
pub(crate) fn release_deferred() {
    let later = std::mem::take(&mut *LATER.lock().unwrap_or_else(|p| p.into_inner()));
    drop(later);
}

struct Reader<'a, 'p> {
    img: &'a ImageFile<'p>,
    buf: memmap2::MmapMut,
    /// Where file offset 0 lies in `buf`.
    shift: usize,
    /// The file's size (the buffer may be larger).
    size: usize,
    /// Ranges already read.
    done: Vec<Range<usize>>,
}

impl Reader<'_, '_> {
    /// The file's bytes as far as read.
    fn bytes(&self) -> &[u8] {
        &self.buf[self.shift..self.shift + self.size]
    }

    /// Reads the ELF header, section header 1 and the manifest's header
    /// and global part.
    fn fill_global(&mut self) -> Result<(), Error> {
        let size = self.size;
        self.fill(&[clip(0, HEAD as u64, size)])?;
        if !self.bytes().starts_with(b"\x7fELF") {
            return Ok(()); // refused by the parser
        }
        let Some(sh1) = sh1_offset(self.bytes()) else {
            return Ok(());
        };
        self.fill(&[clip(sh1, SHDR_SIZE as u64, size)])?;
        let sh1 = usize::try_from(sh1).unwrap_or(usize::MAX);
        let Some((off, len)) = self.bytes().get(sh1..).and_then(section_of) else {
            return Ok(());
        };
        // The manifest header, then as much as it says the global part takes.
        self.fill(&[clip(off, (MH_BODY_LEN + 8) as u64, size)])?;
        let mh = usize::try_from(off).unwrap_or(usize::MAX);
        let version = mh
            .checked_add(MH_VERSION)
            .and_then(|a| self.bytes().get(a..a.checked_add(4)?))
            .map(|v| u32::from_le_bytes([v[0], v[1], v[2], v[3]]));
        if version != Some(hcr_image::FORMAT_VERSION) {
            return Ok(()); // refused by the parser, with the version it found
        }
        let body = mh
            .checked_add(MH_BODY_LEN)
            .and_then(|a| u64_at(self.bytes(), a))
            .unwrap_or(0);
        let want = (hcr_image::HEADER_SIZE as u64)
            .saturating_add(body)
            .min(len);
        self.fill(&[clip(off, want, size)])
    }

    /// Asks for transparent huge pages (where the system grants them on
    /// request) in the 2 MiB stretches of the buffer that `merged` fills at
    /// least half of, before they are first touched. Filling fresh 4 KiB
    /// pages one fault at a time costs several times the copy (10 MiB in
    /// 4–8 ms, with huge pages 0.4–1 ms); but a huge page is zeroed whole,
    /// so one that holds only the ELF header, or a small image's few
    /// kilobytes of manifest, would cost 2 MiB of zeroing (about 0.5 ms)
    /// for a few pages of use. A stretch already faulted in keeps its
    /// pages. Best effort.
    fn advise_dense(&self, merged: &[Range<usize>]) {
        let base = (self.buf.as_ptr() as usize).wrapping_add(self.shift);
        let len = self.buf.len().saturating_sub(self.shift);
        for r in dense_huge_pages(base, len, merged) {
            let _ = self
                .buf
                .advise_range(memmap2::Advice::HugePage, r.start + self.shift, r.len());
        }
    }

    /// Reads `ranges` (minus what was read before) with as few `pread`s as
    /// neighbouring ranges allow.
    fn fill(&mut self, ranges: &[Option<Range<usize>>]) -> Result<(), Error> {
        let mut todo: Vec<Range<usize>> = Vec::new();
        for r in ranges.iter().flatten() {
            subtract(r.clone(), &self.done, &mut todo);
        }
        let merged = merge_close(todo);
        self.advise_dense(&merged);
        // Large ranges (a whole manifest's blocks) are read in pieces,
        // shared with the helper thread (`crate::helper`) when it is free.
        let mut pieces: Vec<Range<usize>> = Vec::with_capacity(merged.len());
        for r in &merged {
            let mut at = r.start;
            while at < r.end {
                let end = r.end.min(at + PIECE);
                pieces.push(at..end);
                at = end;
            }
        }
        let img = self.img;
        let total: usize = pieces.iter().map(|p| p.len()).sum();
        let internal =
            || Error::Internal(format!("{}: reading the image failed", img.path.display()));
        // One disjoint slice of the buffer per piece, each read by
        // whichever thread takes it.
        let slices =
            hcr_loader::split_disjoint(&mut self.buf[self.shift..], pieces.iter().cloned())
                .map_err(|_| internal())?;
        let jobs: Vec<(usize, &mut [u8])> = pieces.iter().map(|p| p.start).zip(slices).collect();
        let share: hcr_loader::Share<'_> = if total >= SHARE_MIN {
            &crate::helper::lend
        } else {
            &hcr_loader::alone
        };
        let results = hcr_loader::run_shared(jobs, share, |(off, dst)| {
            // One call faults a large read's pages in (rather than one
            // fault per page during the copy); best effort. A small one
            // (the global part, a changed module's block) lands in
            // pages an earlier read already faulted in, or faults a
            // few: asking costs more than it saves.
            if dst.len() >= POPULATE_MIN {
                hcr_loader::mem::populate(dst.as_ptr() as usize, dst.len());
            }
            img.read_exact_at(dst, off as u64)
        });
        for r in results {
            r.ok_or_else(internal)??;
        }
        self.done.extend(merged);
        self.done.sort_unstable_by_key(|r| r.start);
        Ok(())
    }
}

/// The 2 MiB-aligned stretches of the address range `[base, base + len)`
/// (wholly inside it) that `ranges` (sorted, disjoint offsets from `base`)
/// fill at least half of, as offsets from `base`.
fn dense_huge_pages(base: usize, len: usize, ranges: &[Range<usize>]) -> Vec<Range<usize>> {
    let mut dense = Vec::new();
    // (Huge page number, bytes of it the ranges cover.)
    let mut cur: Option<(usize, usize)> = None;
    let mut close = |(page, bytes): (usize, usize)| {
        let lo = page * HUGE_PAGE;
        if bytes >= HUGE_PAGE / 2 && lo >= base && lo + HUGE_PAGE <= base + len {
            dense.push(lo - base..lo - base + HUGE_PAGE);
        }
    };
    for r in ranges {
        let mut at = base + r.start;
        let end = base + r.end;
        while at < end {
            let page = at / HUGE_PAGE;
            let upto = end.min((page + 1) * HUGE_PAGE);
            match cur.as_mut() {
                Some((p, bytes)) if *p == page => *bytes += upto - at,
                _ => {
                    if let Some(c) = cur.take() {
                        close(c);
                    }
                    cur = Some((page, upto - at));
                }
            }
            at = upto;
        }
    }
    if let Some(c) = cur {
        close(c);
    }
    dense
}

/// Adds the parts of `r` not covered by `done` (sorted by start; they may
/// overlap) to `out`, in order. No allocation beyond `out`'s: a first
/// load subtracts a thousand ranges.
fn subtract(r: Range<usize>, done: &[Range<usize>], out: &mut Vec<Range<usize>>) {
    let mut at = r.start;
    for d in done {
        if at >= r.end || d.start >= r.end {
            break;
        }
        if d.end <= at {
            continue;
        }
        if d.start > at {
            out.push(at..d.start);
        }
        at = d.end;
    }
    if at < r.end {
        out.push(at..r.end);
    }
}

/// Refuses an image that someone other than its owner could have replaced,
/// or that another user owns: loading it would run their code here.
fn check_ownership(path: &Path, meta: &std::fs::Metadata) -> Result<(), Error> {
    let how = "pass --allow-insecure-image to hcr run, or set HCR_ALLOW_INSECURE_IMAGE=1, to load it anyway";
    if meta.mode() & 0o022 != 0 {
        return Err(Error::Insecure(format!(
            "{}: refusing to load an image writable by group or others (mode {:o}); run `chmod go-w {}`, or {how}",
            path.display(),
            meta.mode() & 0o7777,
            path.display()
        )));
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        return Err(Error::Insecure(format!(
            "{}: refusing to load an image owned by another user (uid {}, this process runs as uid {me}); {how}",
            path.display(),
            meta.uid()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // (Slices of ranges, not ranges collected.)
    #[allow(clippy::single_range_in_vec_init)]
    #[test]
    fn huge_pages_only_where_a_read_fills_half_of_one() {
        const H: usize = HUGE_PAGE;
        // A buffer starting 4 KiB before a huge page boundary.
        let base = 5 * H - 4096;
        let len = 5 * H;
        // The ELF header alone: no huge page. Offsets are from `base`.
        assert!(dense_huge_pages(base, len, &[0..64]).is_empty());
        // A manifest from the middle of one huge page to the middle of the
        // next but one: the first is filled a quarter, the second wholly,
        // the third exactly half.
        let from = 4096 + H + 3 * H / 4;
        let to = 4096 + 3 * H + H / 2;
        assert_eq!(
            dense_huge_pages(base, len, &[0..64, from..to]),
            vec![4096 + 2 * H..4096 + 3 * H, 4096 + 3 * H..4096 + 4 * H]
        );
        // Ranges adding up to half of one page count together; one past
        // the buffer's end is not advised (it would reach outside).
        let two = [4096..4096 + H / 4, 4096 + H / 2..4096 + 3 * H / 4];
        assert_eq!(dense_huge_pages(base, len, &two), vec![4096..4096 + H]);
        assert!(dense_huge_pages(base, 3 * H, &[4096 + 2 * H..3 * H]).is_empty());
        // The partial stretch before the first boundary never is.
        assert!(dense_huge_pages(base, len, &[0..4096]).is_empty());
    }

    #[test]
    fn a_large_read_in_pieces_gives_the_file_bytes() {
        // 3 MiB and a bit: pieces shared with the helper thread when it
        // runs, read here otherwise; either way every byte arrives.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pieces.bin");
        let bytes: Vec<u8> = (0..(3 << 20) + 4321u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(&path, &bytes).unwrap();
        let file = ImageFile::open(&path, true).unwrap();
        let mut scratch = Scratch::default();
        let (from, to) = (1000usize, bytes.len() - 7);
        let read = file
            .read_then(&mut scratch, None, |_| {
                vec![(from as u64, (to - from) as u64)]
            })
            .unwrap();
        assert_eq!(&read[from..to], &bytes[from..to]);
    }

    /// Opens `path` for writing without waiting (a lease refuses it with
    /// `EWOULDBLOCK` rather than making it wait).
    fn open_to_write(path: &Path) -> std::io::Result<File> {
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
    }

    /// Tests that read a guarded mapping (one per process at a time).
    static ONE_MAPPING: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// A file the reader takes for an image's: the ELF magic, and a section
    /// header table whose entry 1 places a section of `len` bytes at `off`
    /// (the manifest's place); the other bytes are a pattern.
    fn image_like(path: &Path, off: usize, len: usize) -> Vec<u8> {
        let shoff = off + len;
        let mut bytes: Vec<u8> = (0..shoff + 2 * SHDR_SIZE)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2])
            .collect();
        bytes[..4].copy_from_slice(b"\x7fELF");
        bytes[E_SHOFF..E_SHOFF + 8].copy_from_slice(&(shoff as u64).to_le_bytes());
        let sh1 = shoff + SHDR_SIZE;
        bytes[sh1 + SH_OFFSET..sh1 + SH_OFFSET + 8].copy_from_slice(&(off as u64).to_le_bytes());
        bytes[sh1 + SH_SIZE..sh1 + SH_SIZE + 8].copy_from_slice(&(len as u64).to_le_bytes());
        std::fs::write(path, &bytes).unwrap();
        bytes
    }

    #[test]
    fn a_first_read_maps_the_file_under_a_lease_that_writers_wait_for() {
        // (The mapping is read only where the crash handler guards it, one
        // at a time.)
        crate::crash::install();
        let _one = ONE_MAPPING.lock();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.hcr");
        let (off, len) = (3 << 20, (2 << 20) + 12345);
        let bytes = image_like(&path, off, len);
        let file = ImageFile::open(&path, true).unwrap();
        let mut scratch = Scratch::default();
        let read = file.read_then(&mut scratch, None, |_| Vec::new()).unwrap();
        assert!(matches!(read, Bytes::Lent(_)), "the first read is mapped");
        assert!(read[off..off + len] == bytes[off..off + len]);
        assert_eq!(read.len(), bytes.len());
        // While the bytes are in use, no one can open the file to write
        // it: a non-blocking open is refused, a blocking one waits.
        let refused = open_to_write(&path).unwrap_err();
        assert_eq!(refused.raw_os_error(), Some(libc::EWOULDBLOCK));
        let writer = std::thread::spawn({
            let path = path.clone();
            move || {
                let t = std::time::Instant::now();
                let f = std::fs::OpenOptions::new().write(true).open(&path);
                (f.is_ok(), t.elapsed())
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(read);
        // The release let it in, and this process heard nothing of it.
        let (opened, waited) = writer.join().unwrap();
        assert!(opened);
        assert!(
            waited >= std::time::Duration::from_millis(250),
            "{waited:?}"
        );
        // A reload's read (with an old manifest) copies.
        assert!(scratch.kept_len() == 0);
    }

    /// A first load's mapping, its release put off, stays mapped and
    /// leased after the load drops it, until [`release_deferred`].
    #[test]
    fn a_release_put_off_keeps_the_lease_until_it_is_done() {
        crate::crash::install();
        let _one = ONE_MAPPING.lock();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.hcr");
        let (off, len) = (1 << 20, 12345);
        image_like(&path, off, len);
        let writable = || open_to_write(&path).is_ok();
        let mapped = || {
            let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
            maps.contains(path.to_str().unwrap())
        };
        let file = ImageFile::open(&path, true).unwrap();
        let mut scratch = Scratch::default();
        defer_releases(true);
        let read = file.read_then(&mut scratch, None, |_| Vec::new()).unwrap();
        assert!(matches!(read, Bytes::Lent(_)));
        drop(read);
        defer_releases(false);
        assert!(file.torn().is_none());
        drop(file);
        assert!(mapped(), "unmapped as the load dropped it");
        assert!(!writable(), "the lease went as the load dropped it");
        release_deferred();
        assert!(!mapped());
        assert!(writable());
        // Not put off: released as the load drops it.
        let file = ImageFile::open(&path, true).unwrap();
        let read = file.read_then(&mut scratch, None, |_| Vec::new()).unwrap();
        assert!(matches!(read, Bytes::Lent(_)));
        drop(read);
        assert!(!mapped());
        assert!(writable());
    }

    #[test]
    fn pages_gone_once_the_lease_is_broken_read_as_zeros_and_the_read_is_refused() {
        crate::crash::install();
        let _one = ONE_MAPPING.lock();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.hcr");
        let (off, len) = (1 << 20, (2 << 20) + 777);
        image_like(&path, off, len);
        let file = ImageFile::open(&path, true).unwrap();
        let mut scratch = Scratch::default();
        let read = file.read_then(&mut scratch, None, |_| Vec::new()).unwrap();
        assert!(matches!(read, Bytes::Lent(_)));
        assert!(file.torn().is_none());
        // The lease ends, as when a writer has waited the system's break
        // time (a load stopped in a debugger), and the writer truncates.
        use std::os::fd::AsRawFd;
        // SAFETY: an fcntl on the file's own descriptor.
        unsafe { libc::fcntl(file.file.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) };
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        // Every page is gone: each reads as zeros, and the process lives.
        assert!(read[off..off + len].iter().all(|&b| b == 0));
        drop(read);
        assert!(file
            .torn()
            .is_some_and(|e| e.to_string().contains("changed while it was being read")));
    }

    #[test]
    fn a_file_someone_is_writing_is_copied_not_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.hcr");
        let (off, len) = (8192, 300_000);
        let bytes = image_like(&path, off, len);
        let _writer = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let file = ImageFile::open(&path, true).unwrap();
        let mut scratch = Scratch::default();
        let read = file
            .read_then(&mut scratch, None, |_| {
                vec![(0, 100), (off as u64, len as u64)]
            })
            .unwrap();
        assert!(matches!(read, Bytes::Copied(_)));
        assert!(read[off..off + len] == bytes[off..off + len]);
        assert!(read[..100] == bytes[..100]);
    }

    #[test]
    fn a_copied_manifest_starts_on_a_huge_page() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.hcr");
        let (off, len) = (5 * 4096 + 24, 1 << 20);
        let bytes = image_like(&path, off, len);
        // (Open for writing: no lease, so the read copies.)
        let _writer = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let file = ImageFile::open(&path, true).unwrap();
        let mut scratch = Scratch::default();
        let read = file
            .read_then(&mut scratch, None, |_| vec![(off as u64, len as u64)])
            .unwrap();
        assert!(matches!(read, Bytes::Copied(_)));
        assert_eq!(read[off..].as_ptr() as usize % HUGE_PAGE, 0);
        assert!(read[off..off + len] == bytes[off..off + len]);
        drop(read);
        // A reload's read keeps the buffer and its place.
        let old = hcr_image::Manifest::default();
        let again = file
            .read_then(&mut scratch, Some(&old), |_| vec![(off as u64, 64)])
            .unwrap();
        assert_eq!(again[off..].as_ptr() as usize % HUGE_PAGE, 0);
        assert!(again[off..off + 64] == bytes[off..off + 64]);
    }

    #[test]
    fn the_read_buffer_is_kept_for_small_and_growing_images() {
        let mut scratch = Scratch::default();
        let mut take = |size: usize| {
            let (b, shift) = scratch.take(size, None).unwrap();
            assert_eq!(shift, 0);
            let at = b.as_ptr() as usize;
            scratch.buf = Some(b);
            (at, scratch.kept_len())
        };
        // A small image's buffer is one 2 MiB page, far larger than the
        // image: it is still kept, reload after reload.
        let (small, len) = take(300_000);
        assert_eq!(len, 2 << 20);
        assert_eq!(take(300_100), (small, len));
        assert_eq!(take(290_000), (small, len));
        // Growing by a few bytes past a page keeps it too (the eighth).
        let (big, len) = take(15 << 20);
        assert!(len >= (15 << 20) + (15 << 17));
        assert_eq!(take((15 << 20) + 4096), (big, len));
        // Larger than the buffer: a new one. Far smaller: a new one.
        assert_ne!(take(len + 1).1, len);
        let (_, len) = take(100);
        assert_eq!(len, 2 << 20);
    }

    #[test]
    fn manifest_header_offsets_match_the_encoder() {
        let h = hcr_image::Header {
            version: hcr_image::FORMAT_VERSION,
            checksum: 1,
            body_len: 2,
            area_file_offset: 0x1111,
            area_file_size: 0x2222,
            init_file_offset: 0x3333,
            init_file_size: 0x4444,
        };
        let b = hcr_image::encode_manifest(&h, &[]);
        assert_eq!(&b[MH_VERSION..MH_VERSION + 4], &h.version.to_le_bytes());
        assert_eq!(u64_at(&b, MH_BODY_LEN), Some(2));
        assert_eq!(u64_at(&b, MH_AREA_OFFSET), Some(0x1111));
        assert_eq!(u64_at(&b, MH_AREA_SIZE), Some(0x2222));
        assert_eq!(u64_at(&b, MH_INIT_OFFSET), Some(0x3333));
        assert_eq!(u64_at(&b, MH_INIT_SIZE), Some(0x4444));
    }

    #[test]
    fn a_status_taken_within_the_tick_of_a_write_vouches_for_nothing() {
        use std::time::{Duration, SystemTime, UNIX_EPOCH};
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("app.hcr");
        std::fs::write(&p, b"image").unwrap();
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        let at = |m: SystemTime| {
            f.set_modified(m).unwrap();
            let meta = std::fs::metadata(&p).unwrap();
            let mtime = m.duration_since(UNIX_EPOCH).unwrap().as_nanos() as i128;
            (meta, mtime)
        };
        // Nanoseconds stored: racy for 20 ms.
        let (meta, mtime) = at(UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789));
        let late = FileStat::taken_at(&meta, mtime + RACY_NS + 1);
        assert!(!late.racy && late.vouches_for(&late));
        let soon = FileStat::taken_at(&meta, mtime + 5_000_000);
        assert!(soon.racy && !soon.vouches_for(&late) && soon.same_fields(&late));
        // A status taken before the time stored (a clock set back) is racy.
        assert!(FileStat::taken_at(&meta, mtime - 1).racy);
        // Whole seconds stored: racy for two seconds.
        let (meta, mtime) = at(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        assert!(FileStat::taken_at(&meta, mtime + 1_000_000_000).racy);
        assert!(FileStat::taken_at(&meta, mtime + 2_005_000_000).racy);
        assert!(!FileStat::taken_at(&meta, mtime + RACY_WHOLE_SECONDS_NS + 1).racy);
        // Taken now, of a file written long ago: it vouches.
        let now = FileStat::of(&p).unwrap();
        assert!(now.vouches_for(&FileStat::of(&p).unwrap()));
    }

    // (Slices of ranges, not ranges collected.)
    #[allow(clippy::single_range_in_vec_init)]
    #[test]
    fn ranges_are_subtracted_and_clipped() {
        let sub = |r: Range<usize>, done: &[Range<usize>]| {
            let mut out = vec![100..101];
            subtract(r, done, &mut out);
            out.split_off(1)
        };
        assert_eq!(sub(0..10, &[2..4, 8..20]), vec![0..2, 4..8]);
        assert_eq!(sub(0..10, &[0..4, 3..10]), Vec::<Range<usize>>::new());
        assert_eq!(
            sub(5..10, &[0..2, 3..4, 6..7, 7..8, 12..20]),
            vec![5..6, 8..10]
        );
        assert_eq!(sub(5..10, &[]), vec![5..10]);
        assert_eq!(sub(5..10, &[0..6, 1..3]), vec![6..10]);
        assert_eq!(clip(5, 10, 8), Some(5..8));
        assert_eq!(clip(9, 10, 8), None);
        assert_eq!(clip(u64::MAX, u64::MAX, 8), None);
    }
}

/// Identity of the image file, to detect "nothing changed" with one stat.
///
/// File times come from a coarse clock: a rewrite of the same length in
/// the same clock tick as an earlier write leaves the status as it was. A
/// status taken within [`RACY_NS`] of the file's modification time is
/// *racy* (git's "racily clean" rule): it never vouches that the file is
/// unchanged, so the file is read again until a status taken later does.
#[derive(Clone, Copy, Debug, Default)]
pub struct FileStat {
    dev: u64,
    ino: u64,
    pub size: u64,
    mtime_ns: i128,
    /// Taken too shortly after the modification time to tell a later
    /// rewrite of the same length from the file as it was.
    racy: bool,
    /// The checksum of the manifest's global part read under this status
    /// (which covers every module's checksums: the image's content), 0
    /// when not read. It tells a racy status's file from a rewrite.
    pub content: u64,
}

/// How long after its modification time a file's status stays racy: two
/// ticks of the coarsest kernel clock (`HZ` = 100) behind file times.
pub const RACY_NS: i128 = 20_000_000;

/// The same for a file system that stores whole seconds (a modification
/// time with no nanoseconds): FAT keeps two, and the clock that stamps
/// files may lag the one that reads the time by a tick.
pub const RACY_WHOLE_SECONDS_NS: i128 = 2_000_000_000 + RACY_NS;

impl FileStat {
    pub fn of(path: &Path) -> std::io::Result<FileStat> {
        Ok(FileStat::from_metadata(&std::fs::metadata(path)?))
    }

    /// The status in `m`, taken now.
    pub fn from_metadata(m: &std::fs::Metadata) -> FileStat {
        // (Signed: a clock set before 1970 is still compared rightly.)
        let now = match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            Err(e) => -(e.duration().as_nanos() as i128),
        };
        Self::taken_at(m, now)
    }

    /// The status in `m`, taken at `now` (nanoseconds since the epoch).
    fn taken_at(m: &std::fs::Metadata, now: i128) -> FileStat {
        let mtime_ns = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
        let window = match m.mtime_nsec() {
            0 => RACY_WHOLE_SECONDS_NS,
            _ => RACY_NS,
        };
        FileStat {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns,
            // A time in the future is racy too: the clock may be set back.
            racy: now - mtime_ns < window,
            content: 0,
        }
    }

    /// This status, of a file whose manifest's global part has the
    /// checksum `content`.
    pub fn with_content(self, content: u64) -> FileStat {
        FileStat { content, ..self }
    }

    /// Whether the file whose status is now `now` is, for certain, the one
    /// this status was taken of, unchanged: the same file, length and
    /// modification time, and this status not racy.
    pub fn vouches_for(&self, now: &FileStat) -> bool {
        !self.racy && self.same_fields(now)
    }

    /// Whether the two statuses hold the same file, length and
    /// modification time (a rewrite within one clock tick that keeps the
    /// length passes this: see [`FileStat::vouches_for`]).
    pub fn same_fields(&self, other: &FileStat) -> bool {
        (self.dev, self.ino, self.size, self.mtime_ns)
            == (other.dev, other.ino, other.size, other.mtime_ns)
    }
}
