//! `hcr-link --incremental`: a link server that keeps one output's link
//! warm between `hcr-link` runs, so a build system that calls `hcr-link`
//! after every compile gets the incremental relink `hcr watch` gets.
//!
//! The first `hcr-link --incremental` starts a server in the background (the
//! same executable, in a session of its own, with no terminal and no
//! inherited descriptors) and sends it the link; later runs for the same
//! output find it. The server links with [`hcr_linker::link_cached`], so
//! every link after the first takes over what did not change, and the image
//! is the same, byte for byte, as a full link's. The client hands the server
//! its own standard output and error (`SCM_RIGHTS`), so messages, warnings
//! and `--timings` appear where they would have; the server answers with the
//! exit code alone.
//!
//! One server serves one *key*: the user, the working directory (path,
//! device and inode), the output
//! path as given, the `hcr-link` executable (device, inode, size and
//! modification time: a rebuilt `hcr-link` starts a new server) and the
//! environment the link reads (`CC`, `PATH`, `HCR_NIM_INIT`,
//! `HCR_LINK_AHEAD`, the umask). Its address is an
//! abstract Unix socket named after the key's hash, so nothing is left in
//! the file system; both sides check that the other runs as the same user.
//! A server exits after [`IDLE`] without a link (`HCR_LINK_SERVER_IDLE`,
//! seconds, for tests and short-lived machines). Anything that goes wrong
//! on the way (no server can be started, it dies mid-link without an
//! answer) makes the client link in its own process, as without the flag;
//! so does a server name another user has taken.

use std::ffi::OsString;
use std::hash::{Hash as _, Hasher as _};
use std::io::{IoSlice, IoSliceMut, Read as _, Write as _};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd as _, OwnedFd};
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// How long a server waits for the next link before it exits.
pub const IDLE: Duration = Duration::from_secs(600);

/// The first argument that makes `hcr-link` a server (never typed by users).
pub const SERVE_ARG: &str = "--incremental-server";

/// How long a client waits for a server it started to listen (a start
/// takes milliseconds; a loaded machine may take seconds, and a client
/// that gives up links alone, without the previous link's work).
const START_WAIT: Duration = Duration::from_secs(10);

/// Longest request accepted (arguments and all).
const MAX_REQUEST: usize = 64 << 20;

/// The abstract socket name of the server for `output` as given, linked
/// from the current directory by this executable. Call it while the process
/// runs one thread (it reads the umask by setting it).
///
/// # Errors
/// The current directory or executable cannot be found.
pub fn server_name(output: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt as _;
    let exe = std::env::current_exe()?;
    let m = std::fs::metadata(&exe)?;
    let cwd = std::env::current_dir()?;
    let here = std::fs::metadata(".")?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    cwd.hash(&mut h);
    // The directory itself, not only its path: one removed and made again,
    // or renamed away, is another server's.
    (here.dev(), here.ino()).hash(&mut h);
    // The umask decides the image's mode.
    umask().hash(&mut h);
    output.hash(&mut h);
    exe.hash(&mut h);
    (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()).hash(&mut h);
    for var in ["CC", "PATH", "HCR_NIM_INIT", "HCR_LINK_AHEAD"] {
        std::env::var_os(var).hash(&mut h);
    }
    Ok(format!(
        "hcr-link/{}/{:016x}",
        rustix::process::getuid().as_raw(),
        h.finish()
    ))
}

/// This process's umask. Asking for it sets it (and sets it back): a
/// thread creating a file meanwhile would get the mask 0, so this is only
/// called while the process runs one thread (`hcr-link`'s client, before
/// anything else; `/proc/self/status` gives the same but costs a
/// hundredth of the whole request).
fn umask() -> u32 {
    use rustix::fs::Mode;
    let old = rustix::process::umask(Mode::empty());
    rustix::process::umask(old);
    old.bits()
}

/// Sends the link `args` (every argument after the program's name) to the
/// server `name`, starting it when none answers, and returns the exit code
/// it reports. `None`: no server could do the link (the caller links in
/// its own process); `why` then says what went wrong, if anything worth
/// saying did.
pub fn request(name: &str, args: &[OsString], why: &mut Option<String>) -> Option<u8> {
    let stream = match connect(name) {
        Ok(Some(s)) => s,
        Err(()) => {
            *why = Some("the link server's name is taken by another user".into());
            return None;
        }
        Ok(None) => {
            if let Err(e) = start_server(name) {
                *why = Some(format!("cannot start the link server: {e}"));
                return None;
            }
            let until = Instant::now() + START_WAIT;
            loop {
                if let Ok(Some(s)) = connect(name) {
                    break s;
                }
                if Instant::now() >= until {
                    *why = Some("the link server did not start".into());
                    return None;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    };
    match exchange(&stream, args) {
        Ok(code) => Some(code),
        Err(e) => {
            *why = Some(format!("the link server did not finish the link: {e}"));
            None
        }
    }
}

fn address(name: &str) -> std::io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(name.as_bytes())
}

/// A connection to the server `name`: `Ok(None)` when none listens,
/// `Err` when the listener runs as another user.
fn connect(name: &str) -> Result<Option<UnixStream>, ()> {
    let Some(s) = address(name)
        .ok()
        .and_then(|a| UnixStream::connect_addr(&a).ok())
    else {
        return Ok(None);
    };
    match same_user(&s) {
        true => Ok(Some(s)),
        false => Err(()),
    }
}

fn same_user(s: &UnixStream) -> bool {
    rustix::net::sockopt::socket_peercred(s.as_fd())
        .is_ok_and(|c| c.uid == rustix::process::getuid())
}

/// Starts this executable as the server `name`, in the background.
fn start_server(name: &str) -> std::io::Result<()> {
    use std::process::{Command, Stdio};
    // Not waited for: it outlives this process (its parent becomes init).
    let _child = Command::new(std::env::current_exe()?)
        .arg(SERVE_ARG)
        .arg(name)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(())
}

/// Sends the request with this process's standard output and error, and
/// reads the exit code.
fn exchange(stream: &UnixStream, args: &[OsString]) -> std::io::Result<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(args.len() as u32).to_le_bytes());
    for a in args {
        let b = a.as_bytes();
        body.extend_from_slice(&(b.len() as u32).to_le_bytes());
        body.extend_from_slice(b);
    }
    let mut head = (body.len() as u64).to_le_bytes().to_vec();
    head.append(&mut body);
    let out = std::io::stdout();
    let err = std::io::stderr();
    let fds = [out.as_fd(), err.as_fd()];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(std::io::Error::other("no room for the descriptors"));
    }
    // The descriptors travel with the first byte; the rest follows.
    let sent = sendmsg(
        stream,
        &[IoSlice::new(&head[..1])],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    if sent != 1 {
        return Err(std::io::ErrorKind::WriteZero.into());
    }
    (&*stream).write_all(&head[1..])?;
    let mut code = [0u8; 1];
    (&*stream).read_exact(&mut code)?;
    Ok(code[0])
}

/// The client's answer, given early: a link whose image is in place and
/// whose messages are printed tells the client it succeeded at once,
/// rather than after keeping its state for the next link and removing the
/// replaced image (which the client would otherwise wait for).
pub struct Answer {
    stream: Option<UnixStream>,
    given: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Answer {
    /// Tells the client the link succeeded (exit code 0). Standard output
    /// and error become `/dev/null` first: the client's are released, and
    /// nothing the link does afterwards reaches them.
    pub fn succeeded(mut self) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        to_dev_null();
        if (&stream).write_all(&[0]).is_ok() {
            self.given.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// What a server does with its time: links requests and, between them,
/// whatever its watched descriptor asks for (see [`crate::link_ahead`]).
pub trait Handler {
    /// Links one request (its arguments, and an [`Answer`] it may give as
    /// soon as the image is in place) while the client's standard output
    /// and error are this process's; returns the exit code.
    fn link(&mut self, args: &[OsString], answer: Answer) -> u8;

    /// A descriptor whose readiness, between requests, calls
    /// [`Handler::woken`].
    fn watched(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }

    /// The watched descriptor is readable, or the time [`Handler::wake_in`]
    /// asked for has passed (no client's output is this process's).
    fn woken(&mut self) {}

    /// How long until [`Handler::woken`] is called if nothing else happens
    /// first; `None`: only when the watched descriptor is readable.
    fn wake_in(&self) -> Option<Duration> {
        None
    }

    /// A request for `args` has come: called before its client's standard
    /// output and error become this process's, so that work whose messages
    /// must not reach that client can finish writing them.
    fn before_request(&mut self, _args: &[OsString]) {}

    /// The server ends (idle): anything it left on disk goes.
    fn ending(&mut self) {}
}

/// Runs the server `name` with `handler` until [`IDLE`] passes without a
/// request. Returns at once when another server already has the name.
pub fn serve(name: &str, handler: &mut impl Handler) {
    detach();
    let Ok(addr) = address(name) else { return };
    let Ok(listener) = UnixListener::bind_addr(&addr) else {
        return; // another server won the race
    };
    let idle = std::env::var("HCR_LINK_SERVER_IDLE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(IDLE, |s| Duration::from_secs_f64(s.min(86_400.0)));
    // Only a request keeps the server: what its watch reports does not.
    let mut until = Instant::now() + idle;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let timer = handler.wake_in().filter(|&t| t < left);
        match wait(&listener, handler.watched(), timer.unwrap_or(left)) {
            Woke::Idle if timer.is_some() => {
                handler.woken();
                continue;
            }
            Woke::Idle => break,
            // Changes first: a request that waits meanwhile finds the work
            // they started done.
            Woke::Watched => {
                handler.woken();
                continue;
            }
            Woke::Request => {}
        }
        let Ok((stream, _)) = listener.accept() else {
            continue;
        };
        if !same_user(&stream) {
            continue;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let Ok((args, fds)) = receive(&stream) else {
            continue;
        };
        handler.before_request(&args);
        let given = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let answer = Answer {
            stream: stream.try_clone().ok(),
            given: given.clone(),
        };
        let code = with_output(fds, || handler.link(&args, answer));
        if !given.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = (&stream).write_all(&[code]);
        }
        until = Instant::now() + idle;
    }
    // No client may wait on a server that has stopped answering: the name
    // goes before the handler's last work.
    drop(listener);
    handler.ending();
}

/// Standard output and error captured into memory files, for a link no
/// client waits for yet (see [`crate::link_ahead`]).
pub struct Capture {
    out: OwnedFd,
    err: OwnedFd,
}

impl Capture {
    /// Points standard output and error at two new memory files; `None`
    /// when that fails (both are `/dev/null` then).
    pub fn start() -> Option<Capture> {
        let memfd =
            || rustix::fs::memfd_create("hcr-link-output", rustix::fs::MemfdFlags::CLOEXEC).ok();
        let (out, err) = (memfd()?, memfd()?);
        let pointed =
            rustix::stdio::dup2_stdout(&out).and_then(|()| rustix::stdio::dup2_stderr(&err));
        if pointed.is_err() {
            quiet();
            return None;
        }
        Some(Capture { out, err })
    }

    /// What was written to standard output and error; both become
    /// `/dev/null` again first.
    pub fn take(self) -> (Vec<u8>, Vec<u8>) {
        quiet();
        let read = |fd: OwnedFd| {
            use std::io::Seek as _;
            let mut f = std::fs::File::from(fd);
            let mut v = Vec::new();
            let _ = f.seek(std::io::SeekFrom::Start(0));
            let _ = f.read_to_end(&mut v);
            v
        };
        (read(self.out), read(self.err))
    }
}

/// Flushes standard output, then points it and standard error at
/// `/dev/null` (where a server's are between clients).
pub fn quiet() {
    to_dev_null();
}

/// A session of its own (no terminal's hang-up reaches it) and no
/// descriptor but the standard three, which the client made `/dev/null`:
/// the server must not keep a pipe of its first client's caller open.
#[allow(unsafe_code)]
fn detach() {
    let _ = rustix::process::setsid();
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        let fds: Vec<i32> = dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|&fd| fd > 2)
            .collect();
        for fd in fds {
            // SAFETY: nothing in this process owns these descriptors yet
            // (they were inherited across exec; the server has opened
            // nothing but the directory listing, which is closed by now or
            // fails harmlessly with EBADF).
            unsafe { libc::close(fd) };
        }
    }
}

/// What ended a wait of the server.
enum Woke {
    Request,
    Watched,
    Idle,
}

/// Waits for a connection or the watched descriptor, at most `idle`.
fn wait(
    listener: &UnixListener,
    watched: Option<std::os::fd::BorrowedFd<'_>>,
    idle: Duration,
) -> Woke {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut fds = vec![PollFd::new(listener, PollFlags::IN)];
    if let Some(w) = &watched {
        fds.push(PollFd::new(w, PollFlags::IN));
    }
    let timeout = Timespec {
        tv_sec: idle.as_secs() as i64,
        tv_nsec: i64::from(idle.subsec_nanos()),
    };
    loop {
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => return Woke::Idle,
            Ok(_) if fds.get(1).is_some_and(|w| !w.revents().is_empty()) => return Woke::Watched,
            Ok(_) => return Woke::Request,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return Woke::Idle,
        }
    }
}

/// Reads one request: the arguments and the client's output descriptors.
fn receive(stream: &UnixStream) -> std::io::Result<(Vec<OsString>, [OwnedFd; 2])> {
    let mut first = [0u8; 1];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = recvmsg(
        stream,
        &mut [IoSliceMut::new(&mut first)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(r) = m {
            fds.extend(r);
        }
    }
    if got.bytes != 1 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let [out, err]: [OwnedFd; 2] = fds
        .try_into()
        .map_err(|_| std::io::Error::other("expected two descriptors"))?;
    let mut len = [0u8; 8];
    len[0] = first[0];
    (&*stream).read_exact(&mut len[1..])?;
    let len = u64::from_le_bytes(len) as usize;
    if len > MAX_REQUEST {
        return Err(std::io::Error::other("request too large"));
    }
    let mut body = vec![0u8; len];
    (&*stream).read_exact(&mut body)?;
    Ok((
        parse_args(&body).ok_or_else(|| std::io::Error::other("malformed request"))?,
        [out, err],
    ))
}

fn parse_args(body: &[u8]) -> Option<Vec<OsString>> {
    let mut at = 0usize;
    let u32_at = |at: &mut usize| -> Option<usize> {
        let b = body.get(*at..*at + 4)?;
        *at += 4;
        Some(u32::from_le_bytes(b.try_into().ok()?) as usize)
    };
    let n = u32_at(&mut at)?;
    let mut args = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        let len = u32_at(&mut at)?;
        let b = body.get(at..at.checked_add(len)?)?;
        at += len;
        args.push(OsString::from_vec(b.to_vec()));
    }
    (at == body.len()).then_some(args)
}

/// Runs `f` with `out` and `err` as this process's standard output and
/// error, then points both back at `/dev/null` (the client's must not stay
/// open here: a caller reading them to the end would wait for this server).
fn with_output(fds: [OwnedFd; 2], f: impl FnOnce() -> u8) -> u8 {
    let [out, err] = fds;
    let _ = rustix::stdio::dup2_stdout(&out);
    let _ = rustix::stdio::dup2_stderr(&err);
    drop((out, err));
    let code = f();
    to_dev_null();
    code
}

/// Flushes standard output, then points it and standard error at
/// `/dev/null`.
fn to_dev_null() {
    let _ = std::io::stdout().flush();
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = rustix::stdio::dup2_stdout(&null);
        let _ = rustix::stdio::dup2_stderr(&null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_malformed_ones_are_refused() {
        let args: Vec<OsString> = ["-o", "app.hcr", "a b.o", ""]
            .iter()
            .map(OsString::from)
            .collect();
        let mut body = (args.len() as u32).to_le_bytes().to_vec();
        for a in &args {
            body.extend_from_slice(&(a.len() as u32).to_le_bytes());
            body.extend_from_slice(a.as_bytes());
        }
        assert_eq!(parse_args(&body), Some(args));
        assert_eq!(parse_args(&body[..body.len() - 1]), None);
        assert_eq!(parse_args(&[body.clone(), vec![0]].concat()), None);
        assert_eq!(parse_args(&u32::MAX.to_le_bytes()), None);
        let mut huge = 1u32.to_le_bytes().to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse_args(&huge), None);
    }
}
