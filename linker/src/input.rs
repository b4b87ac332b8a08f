//! Reading input files and writing the output: the only place the linker
//! maps memory.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use memmap2::Mmap;

/// One input file mapped into memory.
pub struct MappedInput {
    /// Path as given.
    pub path: PathBuf,
    /// The file's bytes.
    pub bytes: Bytes,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// What identifies this version of the file (see [`FileKey`]).
    pub key: FileKey,
}

/// A version of a file: device, inode, size, modification and change time
/// (nanoseconds). Rewriting a file in place changes the times; replacing it
/// by rename changes the inode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileKey {
    pub(crate) fn of(meta: &std::fs::Metadata) -> FileKey {
        use std::os::unix::fs::MetadataExt as _;
        FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// The key of the file at `path` now.
    pub fn now(path: &Path) -> std::io::Result<FileKey> {
        std::fs::metadata(path).map(|m| FileKey::of(&m))
    }
}

/// File contents: mapped when non-empty (an empty file cannot be mapped).
pub enum Bytes {
    /// A read-only private mapping.
    Mapped(Mmap),
    /// An empty file.
    Empty,
    /// Bytes handed over in memory ([`crate::link_memory`]).
    Owned(Vec<u8>),
}

impl Bytes {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Empty => &[],
            Bytes::Owned(v) => v,
        }
    }
}

/// Maps `path` read-only.
///
/// The mapping reflects the file while linking runs: build tools replace
/// objects by writing a new file and renaming it (a new inode), which leaves
/// this mapping intact. A tool that truncates an input in place while
/// hcr-link reads it could make a read fault; that is the documented
/// contract of `hcr-link` ("inputs are not modified in place while linking").
pub fn map_input(path: &Path) -> std::io::Result<MappedInput> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let bytes = if meta.len() == 0 {
        Bytes::Empty
    } else {
        // The length is given so that mapping does not stat the file again.
        let len =
            usize::try_from(meta.len()).map_err(|_| std::io::Error::other("file too large"))?;
        // SAFETY: the file is a regular file opened read-only and `len` is its
        // size; the mapping is private and read-only, and the contract above
        // (inputs are replaced by rename, not modified in place) keeps its
        // bytes stable while we read.
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(&file)? };
        Bytes::Mapped(map)
    };
    Ok(MappedInput {
        path: path.to_path_buf(),
        bytes,
        mtime_ns,
        key: FileKey::of(&meta),
    })
}

/// Where the image bytes are written.
///
/// The writer hands over the image as pieces at their file offsets (gaps
/// between them are zero), so that no byte is copied into an intermediate
/// buffer the size of the image: a file sink writes the pieces straight from
/// where they were built.
pub trait Sink {
    /// A file the writer may fill a range of the image into (the pieces at
    /// their offsets, the gaps zeroed; [`write_at`]) from another thread,
    /// while the rest of the image is still being built; [`Sink::put`] is
    /// then told which range it holds. `None`: everything goes to `put`.
    fn early(&self) -> Option<&File> {
        None
    }

    /// Receives an image of `total` bytes made of `pieces`, each `(offset,
    /// bytes)`, sorted by offset and not overlapping, but for the range
    /// `written`, already written through [`Sink::early`] (empty when
    /// nothing was): no piece lies in it.
    fn put(
        &mut self,
        total: u64,
        pieces: &[(u64, &[u8])],
        written: std::ops::Range<u64>,
    ) -> std::io::Result<()>;

    /// The link succeeded and its image is in place (after [`Sink::put`]):
    /// `out` is what the caller will be told. What the linker does after
    /// this (keeping state for the next link, freeing) changes nothing the
    /// caller sees.
    fn placed(&mut self, _out: &crate::LinkOutput) {}
}

/// Called once a link's image is in place, with the link's output, before
/// the linker keeps its state for the next link and frees the rest.
pub type OnPlaced = Box<dyn FnMut(&crate::LinkOutput) + Send>;

/// Collects the image in memory.
#[derive(Default)]
pub struct VecSink(pub Vec<u8>);

impl Sink for VecSink {
    fn put(
        &mut self,
        total: u64,
        pieces: &[(u64, &[u8])],
        _written: std::ops::Range<u64>,
    ) -> std::io::Result<()> {
        let len = usize::try_from(total).map_err(|_| std::io::Error::other("image too large"))?;
        let mut out = vec![0u8; len];
        for &(at, bytes) in pieces {
            let at = at as usize;
            out[at..at + bytes.len()].copy_from_slice(bytes);
        }
        self.0 = out;
        Ok(())
    }
}

/// Writes the image into a new file with vectored writes straight from the
/// pieces, padding the gaps with zeros. (Building the whole image in one
/// buffer first, and writing through a shared mapping, were both measured
/// slower: the first touches every byte twice, the second faults every page
/// separately into the filesystem.) A full disk is a clean error from
/// `write`.
pub struct FileSink {
    file: Option<File>,
    tmp: PathBuf,
    output: PathBuf,
    renamed: bool,
    /// The replaced image, now at `tmp`: removed once the caller has been
    /// told (removing a large cached file is not free: tens of
    /// milliseconds at 150 MB), or kept for the next link to write over.
    old_at_tmp: bool,
    /// Keep the replaced image rather than remove it (see [`recycle`]).
    keep_old: bool,
    /// The file is an older image written over: cut to the new length.
    written_over: bool,
    on_placed: Option<OnPlaced>,
}

/// Zeros for the gaps between pieces (alignment padding, at most a page).
static ZEROS: [u8; 4096] = [0; 4096];

/// Writes the bytes `range` of an image into `file` at their offsets:
/// `pieces` (sorted, not overlapping, inside `range`) with zeros in the
/// gaps, by positional vectored writes straight from the pieces (so two
/// threads may write disjoint ranges of one file at the same time).
///
/// # Errors
/// A piece outside the range or overlapping the one before it; a failed
/// write (a full disk is a clean error here).
pub fn write_at(
    file: &File,
    range: std::ops::Range<u64>,
    pieces: &[(u64, &[u8])],
) -> std::io::Result<()> {
    use std::io::IoSlice;
    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(pieces.len() * 2 + 1);
    let pad = |slices: &mut Vec<IoSlice<'_>>, mut gap: u64| {
        while gap > 0 {
            let n = gap.min(ZEROS.len() as u64) as usize;
            slices.push(IoSlice::new(&ZEROS[..n]));
            gap -= n as u64;
        }
    };
    let mut at = range.start;
    for &(off, bytes) in pieces {
        if off < at {
            return Err(std::io::Error::other("image pieces overlap"));
        }
        pad(&mut slices, off - at);
        if !bytes.is_empty() {
            slices.push(IoSlice::new(bytes));
        }
        at = off + bytes.len() as u64;
    }
    if at > range.end {
        return Err(std::io::Error::other("image pieces exceed their range"));
    }
    pad(&mut slices, range.end - at);
    let mut off = range.start;
    // At most IOV_MAX (1024) slices per call.
    for chunk in slices.chunks_mut(1024) {
        let mut rest: &mut [IoSlice<'_>] = chunk;
        while !rest.is_empty() {
            let n = pwritev(file, rest, off)?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            off += n as u64;
            IoSlice::advance_slices(&mut rest, n);
        }
    }
    Ok(())
}

/// One `pwritev(2)`: writes `slices` at file offset `off`, without moving
/// the file's position; returns the bytes written.
fn pwritev(file: &File, slices: &[std::io::IoSlice<'_>], off: u64) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd as _;
    let off = libc::off_t::try_from(off).map_err(|_| std::io::Error::other("image too large"))?;
    loop {
        // SAFETY: `IoSlice` is ABI-compatible with `struct iovec` on Unix
        // (documented by std); the pointer and count come from a live slice
        // of at most 1024 (IOV_MAX) entries whose buffers outlive the call;
        // the descriptor is `file`'s, open for the call's duration.
        let n = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                slices.as_ptr().cast::<libc::iovec>(),
                slices.len() as libc::c_int,
                off,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

impl FileSink {
    /// A sink writing into `file`, a new, empty file of ours at `tmp`,
    /// which it renames to `output` once the image is written.
    pub fn new(file: File, tmp: PathBuf, output: PathBuf) -> Self {
        FileSink {
            file: Some(file),
            tmp,
            output,
            renamed: false,
            old_at_tmp: false,
            keep_old: false,
            written_over: false,
            on_placed: None,
        }
    }

    /// Keeps the replaced image at the temporary path, for
    /// [`FileSink::take_old`], rather than remove it once placed.
    pub fn keeping_old(mut self, keep: bool) -> Self {
        self.keep_old = keep;
        self
    }

    /// The file is an older image to write over (see [`recycle`]), which
    /// may be longer than the new one.
    pub fn written_over(mut self, yes: bool) -> Self {
        self.written_over = yes;
        self
    }

    /// The replaced image's path, now the caller's to reuse or remove.
    pub fn take_old(&mut self) -> Option<PathBuf> {
        std::mem::take(&mut self.old_at_tmp).then(|| self.tmp.clone())
    }

    /// Calls `f` once the link's image is in place (see [`Sink::placed`]),
    /// before the replaced image is removed.
    pub fn on_placed(mut self, f: Option<OnPlaced>) -> Self {
        self.on_placed = f;
        self
    }

    /// Removes the replaced image, if it is still at the temporary path.
    fn remove_old(&mut self) {
        if std::mem::take(&mut self.old_at_tmp) {
            remove_replaced(&self.tmp);
        }
    }

    /// Whether the image was written and renamed into place.
    pub fn renamed(&self) -> bool {
        self.renamed
    }
}

impl Sink for FileSink {
    fn early(&self) -> Option<&File> {
        self.file.as_ref()
    }

    fn put(
        &mut self,
        total: u64,
        pieces: &[(u64, &[u8])],
        written: std::ops::Range<u64>,
    ) -> std::io::Result<()> {
        let file = self
            .file
            .take()
            .ok_or_else(|| std::io::Error::other("image already written"))?;
        if written.is_empty() {
            write_at(&file, 0..total, pieces)?;
        } else {
            let split = pieces.partition_point(|&(off, _)| off < written.start);
            write_at(&file, 0..written.start, &pieces[..split])?;
            write_at(&file, written.end..total, &pieces[split..])?;
        }
        if self.written_over {
            file.set_len(total)?;
        }
        drop(file);
        self.old_at_tmp = replace_keeping_old(&self.tmp, &self.output)?;
        self.renamed = true;
        Ok(())
    }

    fn placed(&mut self, out: &crate::LinkOutput) {
        if let Some(f) = self.on_placed.as_mut() {
            f(out);
        }
        if !self.keep_old {
            self.remove_old();
        }
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        self.remove_old();
    }
}

/// Puts the new file `tmp` at `path` atomically: a reader of `path` sees the
/// old file or the new one, never neither.
///
/// Over an existing regular file this exchanges the two names
/// (`renameat2(RENAME_EXCHANGE)`) and then removes the old file, now at
/// `tmp`. A plain `rename` over an existing file makes ext4 write the new
/// file's data out before it returns (its `auto_da_alloc` safeguard for
/// programs that do not fsync), which costs about 2 ms for a 4 MB image;
/// the image needs no such safeguard (the loader's checksum refuses a torn
/// file after a power loss). Anything else (no file yet, a file system
/// without the exchange, a directory or a link at `path`) takes the plain
/// `rename`, with its usual errors.
pub fn replace(tmp: &Path, path: &Path) -> std::io::Result<()> {
    if replace_keeping_old(tmp, path)? {
        remove_replaced(tmp);
    }
    Ok(())
}

/// Opens `spare`, an image this process replaced and kept (see
/// [`crate::InputCache`]), moved to `tmp`, to be written over as the next
/// image: writing over pages the page cache already holds costs less than
/// half of making a new file (1.3 MB: 0.11 against 0.28 ms here) and
/// spares removing the old one. Only when it is still a regular file of
/// this user, with one name and `mode`, and no process has it open: the
/// kernel grants a write lease only then, so a program still reading or
/// mapping the image it replaced keeps it intact, as does a hard link
/// made to it. Otherwise the spare is removed, and `None` says to make a
/// new file.
///
/// The open does not wait: a program loading the image holds a read lease
/// on it, and a blocking open for writing would wait for its release (up
/// to the system's lease-break time). Lease breaks send no signal that
/// could end this process: the break signal is set to one ignored by
/// default and the lease has no owner to send it to. The file's times are
/// set to now, so that a sweep in another process never takes it for one
/// left behind while it is written.
pub(crate) fn recycle(spare: &Path, tmp: &Path, mode: u32) -> Option<File> {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
    let mut at = spare;
    let mut opened = || {
        if spare.parent() != tmp.parent() {
            return None;
        }
        if spare != tmp {
            std::fs::rename(spare, tmp).ok()?;
            at = tmp;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(tmp)
            .ok()?;
        let m = file.metadata().ok()?;
        // SAFETY: `geteuid` reads the process's credentials; it cannot fail.
        let uid = unsafe { libc::geteuid() };
        let ours = m.file_type().is_file() && m.nlink() == 1 && m.uid() == uid;
        if !ours || m.mode() & 0o7777 != mode {
            return None;
        }
        let fd = file.as_raw_fd();
        // SAFETY: `fcntl` with integer arguments on a descriptor `file`
        // owns for the call; a lease changes no memory of ours. The break
        // signal is one ignored by default, and the lease gets no owner.
        let leased = unsafe {
            libc::fcntl(fd, F_SETSIG, libc::SIGURG);
            let ok = libc::fcntl(fd, libc::F_SETLEASE, libc::F_WRLCK) == 0;
            if ok {
                libc::fcntl(fd, libc::F_SETOWN, 0);
            }
            ok
        };
        if !leased {
            return None;
        }
        // Nobody had it open. (Held on, the lease would only make a stray
        // opener of the hidden name wait.)
        // SAFETY: as above.
        unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_UNLCK) };
        file.set_modified(std::time::SystemTime::now()).ok()?;
        Some(file)
    };
    let opened = opened();
    if opened.is_none() {
        let _ = std::fs::remove_file(at);
    }
    opened
}

/// `fcntl`'s command to choose the signal a lease break sends (Linux's
/// `<fcntl.h>`; the libc crate does not name it).
const F_SETSIG: libc::c_int = 10;

/// Removes the files that links of the same output in processes no longer
/// running left beside it (`output`'s `.NAME.tmp.PID`, or
/// `.NAME.tmp.PID.ID` for a cache's links): a
/// replaced image kept to be written over by a `hcr watch` that was
/// killed, or the file of a link cut short. Only those untouched for a
/// minute: a process of another PID namespace sharing the folder may be
/// writing one now (an older one it kept is only made anew).
pub(crate) fn sweep_left_behind(output: &Path) {
    let Some(name) = output.file_name() else {
        return;
    };
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".tmp.");
    remove_left_behind(
        folder_of(output),
        &[prefix],
        std::time::Duration::from_secs(60),
    );
}

/// Removes the files in `dir` named one of `prefixes` followed by the ID
/// of a process no longer running (alone, or then `.` and anything):
/// files such a process left behind. Only those untouched for `min_age`
/// (zero: whatever their age).
pub fn remove_left_behind(
    dir: &Path,
    prefixes: &[std::ffi::OsString],
    min_age: std::time::Duration,
) {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let since = std::time::SystemTime::now() - min_age;
    for e in entries.flatten() {
        let file = e.file_name();
        let pid = prefixes.iter().find_map(|p| {
            let rest = file.as_bytes().strip_prefix(p.as_bytes())?;
            let id = rest.split(|&b| b == b'.').next()?;
            std::str::from_utf8(id).ok()?.parse::<u32>().ok()
        });
        let Some(pid) = pid else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let old = min_age.is_zero()
            || e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < since);
        if old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The folder `path` names a file in (`.` for a bare file name).
pub(crate) fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Removes the replaced file, left at `tmp` by [`replace_keeping_old`]. A
/// reader that has it open keeps it; failing to remove it leaves a stray
/// file only.
fn remove_replaced(tmp: &Path) {
    let _ = std::fs::remove_file(tmp);
}

/// [`replace`], leaving the old file at `tmp` for the caller to remove:
/// true when it is there.
pub(crate) fn replace_keeping_old(tmp: &Path, path: &Path) -> std::io::Result<bool> {
    use std::os::unix::ffi::OsStrExt as _;
    let regular = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file());
    if regular {
        let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes());
        if let (Ok(from), Ok(to)) = (c(tmp), c(path)) {
            // SAFETY: both are valid NUL-terminated paths that live across
            // the call; renameat2 reads them and touches no memory of ours.
            let r = unsafe {
                libc::renameat2(
                    libc::AT_FDCWD,
                    from.as_ptr(),
                    libc::AT_FDCWD,
                    to.as_ptr(),
                    libc::RENAME_EXCHANGE,
                )
            };
            if r == 0 {
                return Ok(true);
            }
        }
    }
    std::fs::rename(tmp, path).map(|()| false)
}
