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
//! version it read (device, inode, size, modification and change time),
//! the server puts that image in place, gives the client the messages the
//! link wrote and answers: the client's wait is its own start and a
//! rename, the link itself having run while that process started. Anything
//! else (another command line, a file changed since, the link ahead failed)
//! throws the ahead image away and links as without it, so the image and
//! messages are always those of a link of the inputs as they are at the
//! request.
//!
//! The files a link reads are its inputs, at the versions the linker
//! itself mapped or kept them ([`hcr_linker::LinkOutput::inputs`], archives
//! `-l` found included), and, with `-l`, the directories searched and the
//! shared libraries found, taken before the link starts (a library added
//! to a directory changes what `-l` finds). Nim modules are not linked
//! ahead: their rewrite reads the C files and the compile commands beside
//! them. `HCR_LINK_AHEAD=0` turns linking ahead off.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use hcr_linker::FileKey;
use rustix::fs::inotify;

use crate::link::LinkArgs;

/// Files a link read, each with the version it read (`None`: missing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Files(Vec<(PathBuf, Option<FileKey>)>);

impl Files {
    /// What `-l` reads besides the archives it links (which the link
    /// reports as inputs): the directories searched and the shared
    /// libraries found, as they are now; nothing without `-l`. Taken
    /// before the link starts.
    pub fn searched(link: &LinkArgs) -> Files {
        if link.libraries.is_empty() {
            return Files::default();
        }
        let mut paths: Vec<PathBuf> = link.library_dirs.clone();
        paths.extend(hcr_linker::libs::SYSTEM_DIRS.iter().map(PathBuf::from));
        if let Ok(found) = hcr_linker::libs::resolve(&link.libraries, &link.library_dirs) {
            paths.extend(found.shared.into_iter().map(|l| l.path));
        }
        Files(
            paths
                .into_iter()
                .map(|p| {
                    let k = FileKey::now(&p).ok();
                    (p, k)
                })
                .collect(),
        )
    }

    /// These and the inputs a link read, at the versions it read them.
    fn with_inputs(mut self, inputs: &[(PathBuf, FileKey)]) -> Files {
        self.0
            .extend(inputs.iter().map(|(p, k)| (p.clone(), Some(*k))));
        self
    }

    /// Whether every file is still the version recorded.
    fn current(&self) -> bool {
        self.0.iter().all(|(p, k)| FileKey::now(p).ok() == *k)
    }
}

/// Whether `link` may be linked ahead: not turned off, and no Nim module
/// (whose rewrite reads files the link does not report).
pub fn eligible(link: &LinkArgs) -> bool {
    std::env::var_os("HCR_LINK_AHEAD").is_none_or(|v| v != "0")
        && !crate::nim_init::has_nim_modules(&link.inputs)
}

/// The last link asked for: what is linked again when its inputs change.
struct Last {
    args: Vec<OsString>,
    link: LinkArgs,
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
/// outcome goes to [`Ahead::finished`].
pub struct Job {
    /// The last link's arguments, with the hidden file as the output.
    pub link: LinkArgs,
    /// What `-l` reads, taken before the link started.
    searched: Files,
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
        if ready.args != args || output.as_os_str().is_empty() || !ready.files.current() {
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

    /// A link asked for by a client has run with `args` (parsed: `link`):
    /// later changes to its inputs are linked ahead, if it is
    /// [`eligible`].
    pub fn linked(&mut self, args: &[OsString], link: LinkArgs) {
        self.discard();
        if !eligible(&link) {
            self.last = None;
            return;
        }
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
        });
    }

    /// Reads the pending events; whether one names a file the last link
    /// reads (it is then remembered for [`Ahead::job`]).
    pub fn note_changes(&mut self) -> bool {
        let relevant = self.drain();
        self.pending |= relevant;
        relevant
    }

    /// A link to make ahead, when a change to an input of the last link
    /// was noted.
    pub fn job(&mut self) -> Option<Job> {
        if !std::mem::take(&mut self.pending) {
            return None;
        }
        let last = self.last.as_ref()?;
        let image = ahead_path(&last.link.output)?;
        let link = LinkArgs {
            output: image,
            skip_free: false,
            ..last.link.clone()
        };
        let searched = Files::searched(&link);
        self.discard();
        Some(Job { link, searched })
    }

    /// A link made ahead has its image in place, having read `inputs`, or
    /// failed (`None`), having written `out` and `err`; the image is kept
    /// for the next request.
    pub fn finished(
        &mut self,
        job: Job,
        inputs: Option<&[(PathBuf, FileKey)]>,
        out: Vec<u8>,
        err: Vec<u8>,
    ) {
        let (Some(last), Some(inputs)) = (self.last.as_ref(), inputs) else {
            let _ = std::fs::remove_file(&job.link.output);
            return;
        };
        self.ready = Some(Ready {
            args: last.args.clone(),
            image: job.link.output,
            files: job.searched.with_inputs(inputs),
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
