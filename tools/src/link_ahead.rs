//! Linking ahead: the `--incremental` server relinks as soon as an input
//! of its last link changes, before the build system asks.
//!
//! A build runs the compiler, which writes a module's object, and then
//! `hcr-link`. The server watches the directories of its last link's
//! inputs (inotify: an object written and closed, renamed into place, or
//! its times changed), and when one of them changes it links the same
//! command line again into a hidden file beside the output
//! (`.NAME.ahead.PID`), its messages captured. When the request comes and
//! it is the same command line, and every file the link read is still the
//! version it read (device, inode, size, modification and change time, as
//! the input cache decides what to take over), the server puts that image
//! in place, gives the client the messages the link wrote and answers:
//! the client's wait is its own start and a rename, the link itself having
//! run while that process started. Anything else (another command line, a
//! file changed since, the link ahead failed or is not done) throws the
//! ahead image away and links as without it, so the image and messages
//! are always those of a link of the inputs as they are at the request.
//!
//! The files a link reads are its inputs and, with `-l`, the libraries
//! found and the directories searched (a library added to one changes what
//! `-l` finds). Nim modules are not linked ahead: their rewrite reads the C
//! files and the compile commands beside them. `HCR_LINK_AHEAD=0` turns
//! linking ahead off.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::inotify;

use crate::link::LinkArgs;

/// A version of a file: device, inode, size, modification and change time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// Files a link reads, each with its version (`None`: missing) at one time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Files {
    paths: Vec<PathBuf>,
    keys: Vec<Option<Key>>,
}

impl Files {
    /// The files `link` reads, as they are now; `None` when such a link is
    /// not linked ahead.
    pub fn of(link: &LinkArgs) -> Option<Files> {
        if !enabled() || crate::nim_init::has_nim_modules(&link.inputs) {
            return None;
        }
        let mut paths = link.inputs.clone();
        if !link.libraries.is_empty() {
            paths.extend(link.library_dirs.iter().cloned());
            paths.extend(hcr_linker::libs::SYSTEM_DIRS.iter().map(PathBuf::from));
            if let Ok(found) = hcr_linker::libs::resolve(&link.libraries, &link.library_dirs) {
                paths.extend(found.shared.into_iter().map(|l| l.path));
                paths.extend(found.archives);
            }
        }
        Some(Files::at(paths))
    }

    fn at(paths: Vec<PathBuf>) -> Files {
        let keys = paths.iter().map(|p| key(p)).collect();
        Files { paths, keys }
    }

    /// The same files as they are now.
    fn now(&self) -> Files {
        Files::at(self.paths.clone())
    }
}

fn key(path: &Path) -> Option<Key> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some(Key {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    })
}

fn enabled() -> bool {
    std::env::var_os("HCR_LINK_AHEAD").is_none_or(|v| v != "0")
}

/// The last link asked for: what is linked again when its files change.
struct Last {
    args: Vec<OsString>,
    link: LinkArgs,
    /// The files as the newest link (asked for or ahead) read them.
    files: Files,
}

/// A link made ahead and not yet claimed.
struct Ready {
    args: Vec<OsString>,
    image: PathBuf,
    files: Files,
    out: Vec<u8>,
    err: Vec<u8>,
}

/// A link to make ahead: `link` writes `link.output`, the hidden file; its
/// result goes to [`Ahead::finished`] with `files`.
pub struct Job {
    /// The last link's arguments, with the hidden file as the output.
    pub link: LinkArgs,
    /// The files as they were before the link started.
    pub files: Files,
}

/// An image linked ahead, now in place: the link's messages for the client.
pub struct Claimed {
    /// What the link wrote to standard output.
    pub out: Vec<u8>,
    /// What it wrote to standard error.
    pub err: Vec<u8>,
    /// The command line asks for a summary (`-v`).
    pub verbose: bool,
    /// Where the replaced image now is, to remove once the client is told.
    pub replaced: Option<PathBuf>,
}

/// The server's side of linking ahead (see the module documentation).
#[derive(Default)]
pub struct Ahead {
    inotify: Option<OwnedFd>,
    /// Watched directory → its watch.
    dirs: HashMap<PathBuf, i32>,
    /// Watch → the file names in it the last link reads.
    names: HashMap<i32, HashSet<OsString>>,
    last: Option<Last>,
    ready: Option<Ready>,
    /// A change to the last link's files was read and not yet linked.
    pending: bool,
}

impl Ahead {
    /// The descriptor that tells of changes, once a link is known.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.last.as_ref()?;
        self.inotify.as_ref().map(|f| f.as_fd())
    }

    /// The image linked ahead for `args` (the same command line as the
    /// link it repeats, so the same output), put in place, when it is
    /// still what a link now would make; otherwise it is removed and `None`
    /// says to link.
    pub fn claim(&mut self, args: &[OsString]) -> Option<Claimed> {
        let ready = self.ready.take()?;
        let output = match &self.last {
            Some(last) if last.args == ready.args => last.link.output.clone(),
            _ => PathBuf::new(),
        };
        if ready.args != args || output.as_os_str().is_empty() || ready.files.now() != ready.files {
            let _ = std::fs::remove_file(&ready.image);
            return None;
        }
        match hcr_linker::place_image(&ready.image, &output) {
            Ok(old_left) => Some(Claimed {
                out: ready.out,
                err: ready.err,
                verbose: self.last.as_ref().is_some_and(|l| l.link.verbose),
                replaced: old_left.then_some(ready.image),
            }),
            Err(_) => {
                let _ = std::fs::remove_file(&ready.image);
                None
            }
        }
    }

    /// A link asked for by a client has run with `args` (parsed: `link`),
    /// having read `files` (taken before it started; `None`: not linked
    /// ahead). Later changes to them are linked ahead.
    pub fn linked(&mut self, args: &[OsString], link: LinkArgs, files: Option<Files>) {
        self.discard();
        let Some(files) = files else {
            self.last = None;
            return;
        };
        if self.inotify.is_none() {
            self.inotify =
                inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC).ok();
        }
        self.names.clear();
        if let Some(fd) = &self.inotify {
            for input in &link.inputs {
                let (Some(name), dir) = (input.file_name(), input.parent()) else {
                    continue;
                };
                let dir = match dir {
                    Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                let wd = match self.dirs.get(&dir) {
                    Some(&wd) => wd,
                    None => {
                        let flags = inotify::WatchFlags::CLOSE_WRITE
                            | inotify::WatchFlags::MOVED_TO
                            | inotify::WatchFlags::ATTRIB;
                        let Ok(wd) = inotify::add_watch(fd, &dir, flags) else {
                            continue;
                        };
                        self.dirs.insert(dir, wd);
                        wd
                    }
                };
                self.names
                    .entry(wd)
                    .or_default()
                    .insert(name.to_os_string());
            }
        }
        self.last = Some(Last {
            args: args.to_vec(),
            link,
            files,
        });
    }

    /// Reads the pending events; whether one names a file the last link
    /// reads (it is then remembered for [`Ahead::job`]).
    pub fn note_changes(&mut self) -> bool {
        let relevant = self.drain();
        self.pending |= relevant;
        relevant
    }

    /// A link to make ahead, when a change was noted and a file the last
    /// link read is not the version it read.
    pub fn job(&mut self) -> Option<Job> {
        if !std::mem::take(&mut self.pending) {
            return None;
        }
        let last = self.last.as_ref()?;
        let files = last.files.now();
        if files == last.files {
            return None;
        }
        let image = ahead_path(&last.link.output)?;
        let link = LinkArgs {
            output: image,
            skip_free: false,
            ..last.link.clone()
        };
        self.discard();
        Some(Job { link, files })
    }

    /// A link made ahead has its image in place (`ok`) or failed, having
    /// written `out` and `err`; the image is kept for the next request.
    pub fn finished(&mut self, job: Job, ok: bool, out: Vec<u8>, err: Vec<u8>) {
        let Some(last) = self.last.as_mut() else {
            let _ = std::fs::remove_file(&job.link.output);
            return;
        };
        last.files = job.files.clone();
        // (Whether what it read is still current is asked when it is
        // claimed.)
        if !ok {
            let _ = std::fs::remove_file(&job.link.output);
            return;
        }
        self.ready = Some(Ready {
            args: last.args.clone(),
            image: job.link.output,
            files: job.files,
            out,
            err,
        });
    }

    /// Removes an image linked ahead and not claimed.
    pub fn discard(&mut self) {
        if let Some(r) = self.ready.take() {
            let _ = std::fs::remove_file(&r.image);
        }
    }

    /// Reads every pending event; whether one names a file the last link
    /// reads (or events were lost). A watch that fails is given up.
    fn drain(&mut self) -> bool {
        let Some(fd) = &self.inotify else {
            return false;
        };
        let mut buf = [MaybeUninit::<u8>::uninit(); 8192];
        let mut reader = inotify::Reader::new(fd, &mut buf);
        let mut relevant = false;
        loop {
            match reader.next() {
                Ok(ev) => {
                    if ev.events().contains(inotify::ReadFlags::QUEUE_OVERFLOW) {
                        relevant = true;
                        continue;
                    }
                    let named = ev.file_name().is_some_and(|n| {
                        use std::os::unix::ffi::OsStrExt as _;
                        let n = std::ffi::OsStr::from_bytes(n.to_bytes());
                        self.names.get(&ev.wd()).is_some_and(|s| s.contains(n))
                    });
                    relevant |= named;
                }
                Err(rustix::io::Errno::AGAIN) => return relevant,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => {
                    self.inotify = None;
                    self.dirs.clear();
                    return relevant;
                }
            }
        }
    }
}

/// The hidden file beside `output` a link ahead writes.
fn ahead_path(output: &Path) -> Option<PathBuf> {
    let name = output.file_name()?;
    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Some(dir.join(format!(
        ".{}.ahead.{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}
