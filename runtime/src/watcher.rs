//! "Has the image changed?" in one memory load when nothing happened.
//!
//! A thread of the runtime waits on inotify for anything done to the image
//! file's name in its directory (written, closed after writing, renamed to
//! or from, created, deleted, its attributes changed) and counts those
//! events in [`EPOCH`]. The exact check (`stat`, then the manifest when the
//! file differs) records the epoch it started from when it finds nothing
//! changed; until the next event, or until a reload changes what is loaded,
//! that answer stands and costs one atomic load. An event only sends the
//! next call to the exact check, which still decides, so an image swapped
//! back to the loaded one is still no change.
//!
//! When inotify is unavailable (no more instances or watches, a file system
//! that has none) or the image path is a symbolic link (the link could be
//! retargeted without an event on the name), every call takes the exact
//! path, as before.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Events seen on the image's name since the watcher started.
static EPOCH: AtomicU64 = AtomicU64::new(0);
/// The epoch at which the exact check last found nothing changed;
/// [`NEVER`] when that answer is not current.
static QUIET_AT: AtomicU64 = AtomicU64::new(NEVER);
/// True while a watcher thread serves [`EPOCH`].
static ACTIVE: AtomicBool = AtomicBool::new(false);

const NEVER: u64 = u64::MAX;

/// True when nothing happened to the image since the exact check last found
/// it unchanged (one atomic load on the fast path).
#[inline]
pub(crate) fn known_unchanged() -> bool {
    let quiet = QUIET_AT.load(Ordering::Acquire);
    quiet != NEVER && ACTIVE.load(Ordering::Relaxed) && EPOCH.load(Ordering::Acquire) == quiet
}

/// The epoch to pass to [`record_unchanged`], read before an exact check.
pub(crate) fn epoch() -> u64 {
    EPOCH.load(Ordering::Acquire)
}

/// The exact check that started at `epoch` found nothing changed.
pub(crate) fn record_unchanged(epoch: u64) {
    QUIET_AT.store(epoch, Ordering::Release);
}

/// What is loaded changed (a reload, an init): the last answer is void.
pub(crate) fn forget() {
    QUIET_AT.store(NEVER, Ordering::Release);
}

/// Starts watching `image` (once per process; later calls for another path
/// turn the fast path off, since one thread watches one name).
pub(crate) fn start(image: &Path) {
    static WATCHED: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let Ok(abs) = std::path::absolute(image) else {
        ACTIVE.store(false, Ordering::Release);
        return;
    };
    let mut first = false;
    let watched = WATCHED.get_or_init(|| {
        first = true;
        abs.clone()
    });
    if !first {
        if *watched != abs {
            // Another image in the same process: the thread watches the
            // first one's name, so its events say nothing of this one.
            ACTIVE.store(false, Ordering::Release);
        }
        return;
    }
    if std::fs::symlink_metadata(image).is_ok_and(|m| m.file_type().is_symlink()) {
        return;
    }
    let (Some(dir), Some(name)) = (abs.parent(), abs.file_name()) else {
        return;
    };
    let (Ok(cdir), name) = (
        CString::new(dir.as_os_str().as_bytes()),
        name.as_bytes().to_vec(),
    ) else {
        return;
    };
    // SAFETY: inotify_init1 creates a descriptor this function owns; the
    // watch is added with a NUL-terminated path.
    let fd = unsafe {
        let fd = libc::inotify_init1(libc::IN_CLOEXEC);
        if fd < 0 {
            return;
        }
        let mask = libc::IN_CLOSE_WRITE
            | libc::IN_MODIFY
            | libc::IN_ATTRIB
            | libc::IN_MOVED_TO
            | libc::IN_MOVED_FROM
            | libc::IN_CREATE
            | libc::IN_DELETE
            | libc::IN_DELETE_SELF
            | libc::IN_MOVE_SELF;
        if libc::inotify_add_watch(fd, cdir.as_ptr(), mask) < 0 {
            libc::close(fd);
            return;
        }
        fd
    };
    let spawned = std::thread::Builder::new()
        .name("hcr-image-watch".into())
        .spawn(move || watch(fd, &name));
    if spawned.is_ok() {
        ACTIVE.store(true, Ordering::Release);
    }
}

/// Reads events until the directory goes away; counts those on `name`.
fn watch(fd: i32, name: &[u8]) {
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reads into a buffer of the given length from the
        // inotify descriptor this thread owns.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        let n = n as usize;
        let mut off = 0;
        let mut hit = false;
        let mut gone = false;
        // Each record: wd (4), mask (4), cookie (4), len (4), name (len).
        while off + 16 <= n {
            let field =
                |at: usize| u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
            let mask = field(off + 4);
            let len = field(off + 12) as usize;
            let end = (off + 16 + len).min(n);
            let ev_name = &buf[off + 16..end];
            let ev_name = &ev_name[..ev_name
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(ev_name.len())];
            if mask
                & (libc::IN_DELETE_SELF
                    | libc::IN_MOVE_SELF
                    | libc::IN_IGNORED
                    | libc::IN_Q_OVERFLOW)
                != 0
            {
                gone = mask & libc::IN_Q_OVERFLOW == 0;
                hit = true;
            } else if ev_name == name {
                hit = true;
            }
            off = end;
        }
        if hit {
            EPOCH.fetch_add(1, Ordering::AcqRel);
        }
        if gone {
            break;
        }
    }
    // The directory is gone or the descriptor failed: exact checks only.
    ACTIVE.store(false, Ordering::Release);
    EPOCH.fetch_add(1, Ordering::AcqRel);
    // SAFETY: closes the descriptor this thread owns, once.
    unsafe {
        libc::close(fd);
    }
}
