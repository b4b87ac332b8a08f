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
//! rename, the link itself having run while that process started. The
//! versions are taken as the request comes, while the link ahead usually
//! still runs ([`Ahead::requested`]), so that the answer waits for no
//! `stat` once the image is in place. Anything
//! else (another command line, a file changed since, the link ahead failed)
//! throws the ahead image away and links as without it, so the image and
//! messages are always those of a link of the inputs as they are at the
//! request.
//!
//! The files a link reads are what it reports ([`hcr_linker::LinkOutput::read`]):
//! its inputs, at the versions the linker itself mapped or kept them
//! (archives `-l` found included), and, with `-l`, every path looked at to
//! find the libraries, at the version there when it was looked at (a file
//! there or not: one added changes what `-l` finds; linker scripts and
//! libraries read included). Nim modules are not linked ahead: their
//! rewrite reads the C files and the compile commands beside them.
//! `HCR_LINK_AHEAD=0` turns linking ahead off.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use hcr_linker::FileKey;
use rustix::fs::inotify;

use crate::link::LinkArgs;

/// Files a link read or looked for, each with the version it read
/// (`None`: none was there).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Files(Vec<(PathBuf, Option<FileKey>)>);

impl Files {
    /// What a link reports it read ([`hcr_linker::LinkOutput::read`]).
    pub fn read_by(out: &hcr_linker::LinkOutput) -> Files {
        Files(out.read.clone())
    }

    /// Whether every file is still the version recorded.
    fn current(&self) -> bool {
        self.0.iter().all(|(p, k)| FileKey::now(p).ok() == *k)
    }

    /// The same files, each at the version there now.
    fn now(&self) -> Files {
        Files(
            self.0
                .iter()
                .map(|(p, _)| (p.clone(), FileKey::now(p).ok()))
                .collect(),
        )
    }

    /// Whether both name the same files in the same order.
    fn same_paths(&self, other: &Files) -> bool {
        self.0.len() == other.0.len() && self.0.iter().zip(&other.0).all(|(a, b)| a.0 == b.0)
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
    /// Where the command line puts the image, and whether it asks for `-v`.
    output: PathBuf,
    verbose: bool,
    image: PathBuf,
    files: Files,
    out: Vec<u8>,
    err: Vec<u8>,
}

/// A link to make ahead: `link` writes `link.output`, the hidden file; its
/// outcome goes to [`Ahead::finished`].
pub struct Job {
    /// The command line it repeats, and where that puts the image.
    args: Vec<OsString>,
    output: PathBuf,
    /// The last link's arguments, with the hidden file as the output.
    pub link: LinkArgs,
}

/// An image linked ahead, now in place: the link's messages for the client.
pub struct Claimed {
    /// What the link wrote to standard output.
    pub out: Vec<u8>,
    /// What it wrote to standard error.
    pub err: Vec<u8>,
    /// The command line asks for a summary (`-v`).
    pub verbose: bool,
    /// Where the replaced image now is, once the client is told to remove
    /// or to keep ([`Claimed::keep_replaced`]).
    pub replaced: Option<PathBuf>,
    /// The image's path.
    output: PathBuf,
}

impl Claimed {
    /// Moves the replaced image out of the way of the next link ahead,
    /// beside the image as a linker's temporary file of this process
    /// (`.NAME.tmp.PID.claimed`, which a linker sweeps once the process is
    /// gone), for the next link to write over (see
    /// `hcr_linker::InputCache`); `None` when there is none or it cannot
    /// be moved (it is removed then).
    pub fn keep_replaced(&mut self) -> Option<PathBuf> {
        let old = self.replaced.take()?;
        let name = self.output.file_name()?;
        let kept = folder_of(&self.output).join(format!(
            ".{}.tmp.{}.claimed",
            name.to_string_lossy(),
            std::process::id()
        ));
        match std::fs::rename(&old, &kept) {
            Ok(()) => Some(kept),
            Err(_) => {
                let _ = std::fs::remove_file(&old);
                None
            }
        }
    }
}

/// The server's side of linking ahead (see the module documentation).
#[derive(Default)]
pub struct Ahead {
    inotify: Option<OwnedFd>,
    /// Watch → the file names in it the last link reads.
    names: HashMap<i32, HashSet<OsString>>,
    last: Option<Last>,
    /// What the last link made (asked for, or ahead) read.
    last_read: Option<Files>,
    /// The versions of those files when the pending request came.
    at_request: Option<Files>,
    ready: Option<Ready>,
    /// A change to the last link's files was read and not yet linked.
    pending: bool,
    /// Outputs whose directory was swept of a dead server's images.
    swept: HashSet<PathBuf>,
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
        let at_request = self.at_request.take();
        let ready = self.ready.take()?;
        // The files as they were when the request came, if the link ahead
        // read the same ones; otherwise as they are now.
        let current = match at_request {
            Some(at) if at.same_paths(&ready.files) => at == ready.files,
            _ => ready.files.current(),
        };
        if ready.args != args || !current {
            let _ = std::fs::remove_file(&ready.image);
            return None;
        }
        match hcr_linker::place_image(&ready.image, &ready.output) {
            Ok(old_left) => Some(Claimed {
                out: ready.out,
                err: ready.err,
                verbose: ready.verbose,
                replaced: old_left.then_some(ready.image),
                output: ready.output,
            }),
            Err(_) => {
                let _ = std::fs::remove_file(&ready.image);
                None
            }
        }
    }

    /// A request for `args` has come while a link ahead runs or waits
    /// (`ahead`): takes the versions of the files the last link read, for
    /// [`Ahead::claim`] to compare with what the link ahead read. Done as
    /// the request comes, not once the image is in place, so that the
    /// `stat` of every input runs beside the link ahead rather than after
    /// it; the image is then the link of the inputs as they were at the
    /// request, which is what a link in the client's place would make.
    pub fn requested(&mut self, args: &[OsString], ahead: bool) {
        self.at_request = None;
        let same = self.last.as_ref().is_some_and(|l| l.args == args);
        if ahead && same {
            self.at_request = self.last_read.as_ref().map(Files::now);
        }
    }

    /// A link asked for by a client has run with `args` (parsed: `link`),
    /// having read `read` if it succeeded: later changes to its inputs are
    /// linked ahead, if it is [`eligible`].
    pub fn linked(&mut self, args: &[OsString], link: LinkArgs, read: Option<Files>) {
        self.discard();
        self.last_read = read;
        if !eligible(&link) {
            self.last = None;
            return;
        }
        if self.swept.insert(link.output.clone()) {
            sweep(&link.output);
        }
        if self.inotify.is_none() {
            self.inotify =
                inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC).ok();
        }
        self.names.clear();
        if let Some(fd) = &self.inotify {
            // Each directory is watched afresh at every link: one removed and
            // made again (`make clean`) is a new directory, and adding a
            // watch that exists only gives its number back.
            let mut dirs: HashMap<&Path, Option<i32>> = HashMap::new();
            for input in &link.inputs {
                let Some(name) = input.file_name() else {
                    continue;
                };
                let wd = *dirs.entry(folder_of(input)).or_insert_with_key(|dir| {
                    let flags = inotify::WatchFlags::CLOSE_WRITE
                        | inotify::WatchFlags::MOVED_TO
                        | inotify::WatchFlags::ATTRIB;
                    inotify::add_watch(fd, *dir, flags).ok()
                });
                let Some(wd) = wd else {
                    continue;
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

    /// A link asked for is about to read the files: every change noted so
    /// far is in what it reads, and needs no link ahead.
    pub fn forget_changes(&mut self) {
        self.drain();
        self.pending = false;
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
        let (args, output) = (last.args.clone(), last.link.output.clone());
        self.discard();
        Some(Job { args, output, link })
    }

    /// A link made ahead has its image in place, having read `files`, or
    /// failed (`None`), having written `out` and `err`; the image is kept
    /// for the next request.
    pub fn finished(&mut self, job: Job, files: Option<Files>, out: Vec<u8>, err: Vec<u8>) {
        let Some(files) = files else {
            let _ = std::fs::remove_file(&job.link.output);
            return;
        };
        self.last_read = Some(files.clone());
        self.ready = Some(Ready {
            args: job.args,
            output: job.output,
            verbose: job.link.verbose,
            image: job.link.output,
            files,
            out,
            err,
        });
    }

    /// Whether an image linked ahead waits for its claim.
    pub fn has_ready(&self) -> bool {
        self.ready.is_some()
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
                    if ev.events().contains(inotify::ReadFlags::IGNORED) {
                        // The directory is gone: so is its watch.
                        self.names.remove(&ev.wd());
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
                    self.names.clear();
                    return relevant;
                }
            }
        }
    }
}

/// Removes the images ahead (and their temporary files) that servers no
/// longer running left beside `output` (one killed, or one whose linker
/// faulted on an input truncated in place while it read it).
fn sweep(output: &Path) {
    let Some(name) = output.file_name() else {
        return;
    };
    // `.NAME.ahead.PID`, or the link's `..NAME.ahead.PID.tmp.PID`.
    let prefix = |dots: &str| {
        let mut p = OsString::from(dots);
        p.push(name);
        p.push(".ahead.");
        p
    };
    hcr_linker::remove_left_behind(
        folder_of(output),
        &[prefix("."), prefix("..")],
        std::time::Duration::ZERO,
    );
}

/// The hidden file beside `output` a link ahead writes.
fn ahead_path(output: &Path) -> Option<PathBuf> {
    let name = output.file_name()?;
    Some(folder_of(output).join(format!(
        ".{}.ahead.{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

/// The folder `path` names a file in (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}
