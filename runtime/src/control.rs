//! The control endpoint: a Unix socket through which `hcr ps`, `hcr globals`
//! and `hcr set` see and change a running program's persistent globals.
//!
//! Enabled by `HCR_CONTROL=1` (any host) or [`enable`] (`hcr run
//! --control`). The socket is `DIR/PID.sock` where DIR is
//! [`socket_dir`]: created 0700, refused when it exists with another owner,
//! other permissions or as a symlink; the socket itself is 0600 and removed
//! at exit. There is no TCP.
//!
//! Protocol: one request per line, answered by zero or more lines and a last
//! line `ok` or `err REASON`.
//! - `info` → `pid N`, `image PATH`, `generation N`, `modules A B ...` (the loaded ones),
//!   `error MESSAGE` (the last failed reload's, empty when none);
//! - `globals [MODULE]` → one `g MODULE NAME SIZE HEX [KIND MIN MAX]` per
//!   global, HEX its first [`MAX_READ`] bytes, KIND (`int`, `uint`, `float`,
//!   `double`, `bool`) MIN MAX when `HCR_TWEAK` gave it a range;
//! - `write MODULE NAME OFFSET HEX` → `old HEX`: writes the bytes at OFFSET
//!   inside the global, atomically when they are 1, 2, 4 or 8 aligned bytes;
//! - `image` → `generation N` and, with the final `ok`, a descriptor of the
//!   image file the running generation was loaded from (`SCM_RIGHTS`), when
//!   it has debug information: `hcr globals` reads DWARF types from it, so
//!   types are decoded by the tool, never by the program, and always from
//!   the file that was loaded even if its path was replaced since.
//!
//! Globals are read under the runtime's lock (so none is freed meanwhile)
//! but without stopping the program; aligned words are read with atomic
//! loads so a value is never torn. Requests are bounded ([`MAX_LINE`]), idle
//! clients are dropped after [`IDLE`], and each client has its own thread
//! (at most [`MAX_CLIENTS`]), so a client that hangs or sends garbage costs
//! the program nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Longest request line accepted.
pub const MAX_LINE: usize = 1 << 20;
/// Bytes of each global `globals` returns.
pub const MAX_READ: u64 = 4096;
/// Concurrent clients served.
pub const MAX_CLIENTS: usize = 32;
/// A client silent this long is disconnected.
pub const IDLE: Duration = Duration::from_secs(30);

static REQUESTED: AtomicBool = AtomicBool::new(false);
static STARTED: AtomicBool = AtomicBool::new(false);
static CLIENTS: AtomicUsize = AtomicUsize::new(0);
static SOCKET: OnceLock<PathBuf> = OnceLock::new();
/// [`SOCKET`] as a C string, for [`remove_in_signal_handler`].
static SOCKET_C: OnceLock<std::ffi::CString> = OnceLock::new();
/// The process that made the socket.
static OWNER: AtomicU32 = AtomicU32::new(0);
static LAST_ERROR: Mutex<String> = Mutex::new(String::new());
/// A range given by `HCR_TWEAK`: `(size, kind, min, max)`.
type Tweak = (u32, i32, f64, f64);
/// Ranges and kinds given by `HCR_TWEAK`, by address.
static TWEAKS: Mutex<Option<std::collections::HashMap<u64, Tweak>>> = Mutex::new(None);

/// The image file (a duplicate descriptor) of the newest committed
/// generation, when it has debug information: what `image` hands out.
static IMAGE: Mutex<Option<(u32, std::fs::File)>> = Mutex::new(None);

/// Records the image file `generation` was loaded from (called by every
/// commit; a duplicate descriptor only when the endpoint runs, so a reload
/// pays one `dup` at most).
pub(crate) fn note_image(generation: u32, file: Option<&std::fs::File>) {
    if !wanted() {
        return;
    }
    let f = file.and_then(|f| f.try_clone().ok());
    *IMAGE.lock().unwrap_or_else(|p| p.into_inner()) = f.map(|f| (generation, f));
}

/// Forgets the `HCR_TWEAK` range of the global at `addr` (its storage is
/// being freed: a global that later gets the same address must not inherit
/// it). Called by the persistent heap.
pub(crate) fn forget_tweak(addr: u64) {
    let mut t = TWEAKS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(t) = t.as_mut() {
        t.remove(&addr);
    }
}

/// See `hcr.h` (`HCR_TWEAK`): records the range and kind of the global at
/// `var`; `globals` reports them with it (kind 1 signed integer, 2 unsigned
/// integer, 3 float, 4 double, 5 bool).
#[no_mangle]
pub extern "C" fn hcr_tweak(var: *mut std::ffi::c_void, size: u32, kind: i32, min: f64, max: f64) {
    let _ = std::panic::catch_unwind(|| {
        let mut t = TWEAKS.lock().unwrap_or_else(|p| p.into_inner());
        t.get_or_insert_with(Default::default)
            .insert(var as u64, (size, kind, min, max));
    });
}

fn kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "int",
        2 => "uint",
        3 => "float",
        4 => "double",
        5 => "bool",
        _ => "bytes",
    }
}

/// Asks for the endpoint whatever `HCR_CONTROL` says (call before the
/// runtime is opened).
pub fn enable() {
    REQUESTED.store(true, Ordering::Relaxed);
}

/// The directory holding this user's control sockets:
/// `$XDG_RUNTIME_DIR/hcr` when that variable names a directory, else
/// `/tmp/hcr-UID`.
pub fn socket_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR") {
        let x = PathBuf::from(x);
        if x.is_absolute() && x.is_dir() {
            return x.join("hcr");
        }
    }
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    PathBuf::from(format!("/tmp/hcr-{uid}"))
}

/// Records the outcome of a reload for `info`.
pub(crate) fn note_reload<T>(r: &Result<T, crate::Error>) {
    if let Err(e) = r {
        if matches!(e, crate::Error::Busy) {
            return;
        }
        *LAST_ERROR.lock().unwrap_or_else(|p| p.into_inner()) = e.to_string();
    } else {
        LAST_ERROR.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// Starts the endpoint when it was asked for; a failure is a warning.
/// True when the endpoint was asked for (`enable` or `HCR_CONTROL=1`).
fn wanted() -> bool {
    static ENV: OnceLock<bool> = OnceLock::new();
    REQUESTED.load(Ordering::Relaxed)
        || *ENV.get_or_init(|| std::env::var("HCR_CONTROL").is_ok_and(|v| v == "1"))
}

pub(crate) fn start_if_enabled() {
    if !wanted() || STARTED.swap(true, Ordering::SeqCst) {
        return;
    }
    if let Err(e) = start() {
        let _ = writeln!(std::io::stderr(), "hcr: warning: no control endpoint: {e}");
    }
}

/// Creates (or checks) the socket directory.
fn private_dir() -> Result<PathBuf, String> {
    let dir = socket_dir();
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    let m = std::fs::symlink_metadata(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    if !m.file_type().is_dir() || m.uid() != uid || m.mode() & 0o077 != 0 {
        return Err(format!(
            "{} is not a directory private to this user (it must be mode 0700, owned by uid {uid})",
            dir.display()
        ));
    }
    Ok(dir)
}

use std::os::unix::fs::DirBuilderExt as _;

fn start() -> Result<(), String> {
    let dir = private_dir()?;
    let path = dir.join(format!("{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    remove_stale(&dir);
    let listener =
        UnixListener::bind(&path).map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
    if let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) {
        let _ = SOCKET_C.set(c);
    }
    let _ = SOCKET.set(path);
    OWNER.store(std::process::id(), Ordering::Relaxed);
    // SAFETY: `remove_socket` is an `extern "C" fn()` that stays valid for
    // the life of the process.
    unsafe { libc::atexit(remove_socket) };
    remove_at_terminating_signals();
    std::thread::Builder::new()
        .name("hcr-control".into())
        .spawn(move || serve(listener))
        .map_err(|e| format!("cannot start the control thread: {e}"))?;
    Ok(())
}

/// Removes the sockets of programs that died without removing theirs
/// (killed by a signal).
fn remove_stale(dir: &std::path::Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".sock"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

extern "C" fn remove_socket() {
    remove();
}

/// Removes the socket (at exit and at shutdown); a forked child leaves its
/// parent's in place.
pub(crate) fn remove() {
    if let Some(p) = SOCKET.get().filter(|_| owner()) {
        let _ = std::fs::remove_file(p);
    }
}

/// True in the process that made the socket.
fn owner() -> bool {
    OWNER.load(Ordering::Relaxed) == std::process::id()
}

/// Removes the socket from a signal handler that ends the process (only
/// `getpid` and `unlink`: async-signal-safe).
pub(crate) fn remove_in_signal_handler() {
    if let Some(c) = SOCKET_C.get() {
        // SAFETY: getpid has no preconditions; `c` is a NUL-terminated
        // path that lives as long as the process.
        unsafe {
            if OWNER.load(Ordering::Relaxed) == libc::getpid() as u32 {
                libc::unlink(c.as_ptr());
            }
        }
    }
}

/// Signals whose default action ends the process without `exit` (so
/// without the `atexit` removal): a program stopped with Ctrl-C, `kill` or
/// a closed terminal removes its socket too.
const TERMINATING: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Installs [`on_terminating`] for each of [`TERMINATING`] the program
/// left at its default action (a handler of its own, or an ignored signal,
/// is kept: it decides how the program ends).
fn remove_at_terminating_signals() {
    for sig in TERMINATING {
        // SAFETY: sigaction is plain data; all-zero is SIG_DFL with an
        // empty mask. The handler is an `extern "C" fn(c_int)` that lives
        // as long as the process; only a default action is replaced.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0
                || old.sa_sigaction != libc::SIG_DFL
            {
                continue;
            }
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_terminating as extern "C" fn(libc::c_int) as usize;
            // The default action is back as the handler starts.
            sa.sa_flags = libc::SA_RESETHAND;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Removes the socket, then ends the process by the signal's default
/// action, as it would have without hcr (same exit status).
extern "C" fn on_terminating(sig: libc::c_int) {
    remove_in_signal_handler();
    // SAFETY: raise is async-signal-safe; the signal, blocked while this
    // handler runs, is delivered under the default action once it returns.
    unsafe { libc::raise(sig) };
}

fn serve(listener: UnixListener) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        if CLIENTS.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
            CLIENTS.fetch_sub(1, Ordering::SeqCst);
            let _ = conn.set_write_timeout(Some(Duration::from_millis(100)));
            let _ = NoSigPipe(conn).write_all(b"err too many clients\n");
            continue;
        }
        let spawned = std::thread::Builder::new()
            .name("hcr-control-client".into())
            .spawn(move || {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| client(conn)));
                CLIENTS.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            CLIENTS.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn client(conn: UnixStream) {
    let _ = conn.set_read_timeout(Some(IDLE));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
    let Ok(out) = conn.try_clone() else {
        return;
    };
    let mut out = std::io::BufWriter::new(NoSigPipe(out));
    let mut input = BufReader::new(conn);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.last() != Some(&b'\n') {
            let _ = writeln!(
                out,
                "err request too long (at most {MAX_LINE} bytes a line)"
            );
            let _ = out.flush();
            return;
        }
        let text = std::str::from_utf8(&line).map(|t| t.trim_end_matches(['\n', '\r']));
        if text.is_ok_and(|t| t.trim() == "image") {
            let _ = out.flush();
            if send_image(out.get_ref()).is_err() {
                return;
            }
            continue;
        }
        let reply = match text {
            Ok(text) => handle(text),
            Err(_) => "err request is not UTF-8\n".to_string(),
        };
        if out.write_all(reply.as_bytes()).is_err() || out.flush().is_err() {
            return;
        }
    }
}

/// The client side of `image`: sends the request on `stream` and returns
/// the reply's lines (without the final `ok`) and the descriptor that came
/// with it. Read straight from the socket (no buffered reader may hold
/// bytes of the reply).
///
/// # Errors
/// The program answered `err REASON` (as an `Other` error with REASON), or
/// the connection failed.
pub fn request_image(
    stream: &UnixStream,
) -> std::io::Result<(Vec<String>, Option<std::os::fd::OwnedFd>)> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _};
    (&*stream).write_all(b"image\n")?;
    let mut text = Vec::new();
    let mut fd: Option<std::os::fd::OwnedFd> = None;
    loop {
        let mut buf = [0u8; 512];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut cbuf = [0u64; 8];
        // SAFETY: msghdr is plain data; all-zero is a valid empty one.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf);
        // SAFETY: `msg` describes `buf` and `cbuf`, both live and writable
        // for the call.
        let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // SAFETY: walking the control messages the kernel wrote into
        // `cbuf` with the CMSG macros, which stay inside `msg_controllen`.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(c).cast::<libc::c_int>();
                    let count = ((*c).cmsg_len - libc::CMSG_LEN(0) as usize)
                        / std::mem::size_of::<libc::c_int>();
                    for i in 0..count {
                        let raw = std::ptr::read_unaligned(data.add(i));
                        // Every received descriptor is owned (and closed
                        // when dropped); only the first is kept.
                        let owned = std::os::fd::OwnedFd::from_raw_fd(raw);
                        if fd.is_none() {
                            fd = Some(owned);
                        }
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the program closed the connection",
            ));
        }
        text.extend_from_slice(&buf[..n as usize]);
        let s = String::from_utf8_lossy(&text);
        let mut lines = Vec::new();
        for l in s.split_inclusive('\n') {
            let Some(l) = l.strip_suffix('\n') else {
                break;
            };
            if l == "ok" {
                return Ok((lines, fd));
            }
            if let Some(e) = l.strip_prefix("err ") {
                return Err(std::io::Error::other(e.to_string()));
            }
            lines.push(l.to_string());
        }
        if text.len() > MAX_LINE {
            return Err(std::io::Error::other("reply too long"));
        }
    }
}

/// Answers `image`: the generation, then `ok` carrying the image file's
/// descriptor, or `err` when the running image has no debug information.
fn send_image(out: &NoSigPipe) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let r = crate::ffi::with_state(|st| {
        let image = IMAGE.lock().unwrap_or_else(|p| p.into_inner());
        let file = image
            .as_ref()
            .filter(|(g, _)| *g == st.generation)
            .and_then(|(_, f)| f.try_clone().ok());
        Ok((st.generation, file))
    });
    let (generation, file) = match r {
        Ok((g, Some(f))) => (g, f),
        Ok((_, None)) => {
            return out.send_all(
                b"err the running image has no debug information (built without -g)\n",
                None,
            )
        }
        Err(e) => return out.send_all(format!("err {e}\n").as_bytes(), None),
    };
    out.send_all(format!("generation {generation}\n").as_bytes(), None)?;
    out.send_all(b"ok\n", Some(file.as_raw_fd()))
}

/// Writes with `MSG_NOSIGNAL`: a client that disconnects must not kill the
/// program with `SIGPIPE` (`hcr run` restores its default action).
struct NoSigPipe(UnixStream);

impl NoSigPipe {
    /// Sends all of `buf`, with `fd` attached to its first byte
    /// (`SCM_RIGHTS`) when given.
    fn send_all(&self, mut buf: &[u8], mut fd: Option<std::os::fd::RawFd>) -> std::io::Result<()> {
        use std::os::fd::AsRawFd as _;
        while !buf.is_empty() {
            let mut iov = libc::iovec {
                iov_base: buf.as_ptr() as *mut libc::c_void,
                iov_len: buf.len(),
            };
            // Room for one descriptor's control message (u64 words keep
            // it aligned for `cmsghdr`).
            let mut cbuf = [0u64; 4];
            // SAFETY: msghdr is plain data; all-zero is a valid empty one.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            if let Some(fd) = fd {
                // SAFETY: CMSG_SPACE only computes a size.
                let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) };
                msg.msg_control = cbuf.as_mut_ptr().cast();
                msg.msg_controllen = space as usize;
                // SAFETY: `msg` points at `cbuf`, large enough for one
                // header and one int (`space` ≤ 32 bytes), so the first
                // header and its data lie inside it.
                unsafe {
                    let c = libc::CMSG_FIRSTHDR(&msg);
                    (*c).cmsg_level = libc::SOL_SOCKET;
                    (*c).cmsg_type = libc::SCM_RIGHTS;
                    (*c).cmsg_len =
                        libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as usize;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>(), fd);
                }
            }
            // SAFETY: `msg` describes valid memory (buf and cbuf) for the
            // call; the descriptor is an open socket owned by `self.0`.
            let n = unsafe { libc::sendmsg(self.0.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            fd = None;
            buf = &buf[n as usize..];
        }
        Ok(())
    }
}

impl Write for NoSigPipe {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use std::os::fd::AsRawFd as _;
        // SAFETY: `buf` is valid for `buf.len()` bytes; the descriptor is
        // an open socket owned by `self.0`.
        let n = unsafe {
            libc::send(
                self.0.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Answers one request line (without its newline): the reply's lines, the
/// last `ok` or `err REASON`.
pub fn handle(line: &str) -> String {
    let mut words = line.split_ascii_whitespace();
    let r = match (
        words.next(),
        words.next(),
        words.next(),
        words.next(),
        words.next(),
    ) {
        (Some("info"), None, ..) => info(),
        (Some("globals"), m, None, ..) => globals(m),
        (Some("write"), Some(m), Some(n), Some(off), Some(hex)) if words.next().is_none() => {
            write(m, n, off, hex)
        }
        (Some("image"), None, ..) => Err("image is answered on the socket only".to_string()),
        (None, ..) => Err("empty request".to_string()),
        (Some(w), ..) => Err(format!(
            "unknown request {:?} (info | globals [MODULE] | write MODULE NAME OFFSET HEX | image)",
            w.chars().take(40).collect::<String>()
        )),
    };
    match r {
        Ok(mut s) => {
            s.push_str("ok\n");
            s
        }
        Err(e) => format!("err {}\n", e.replace('\n', " ")),
    }
}

fn info() -> Result<String, String> {
    use std::fmt::Write as _;
    let (image, generation, modules) = crate::ffi::with_state(|st| {
        let modules = st
            .current
            .as_ref()
            .map(|c| {
                // The modules loaded (reachable from the root); the
                // image's others are not part of the running program.
                let m = &c.manifest;
                (m.modules.iter())
                    .filter(|md| md.reachable)
                    .map(|md| m.str(md.name).to_string())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        Ok((st.path.display().to_string(), st.generation, modules))
    })
    .map_err(|e| e.to_string())?;
    let err = LAST_ERROR.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut s = String::new();
    let _ = writeln!(s, "pid {}", std::process::id());
    let _ = writeln!(s, "image {image}");
    let _ = writeln!(s, "generation {generation}");
    let _ = writeln!(s, "modules {}", modules.join(" "));
    let _ = writeln!(s, "error {}", err.replace('\n', " "));
    Ok(s)
}

/// Copies `len` bytes at `addr`: aligned words with one atomic load.
///
/// # Safety
/// `[addr, addr+len)` must be mapped readable memory.
unsafe fn read_bytes(addr: u64, len: usize, out: &mut Vec<u8>) {
    use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8};
    let a = addr as usize;
    // SAFETY: (all arms) the caller guarantees the range is mapped; the
    // atomic types have the size and (checked) alignment of the read.
    unsafe {
        match len {
            1 => out.push((*(a as *const AtomicU8)).load(Ordering::Relaxed)),
            2 if a.is_multiple_of(2) => out.extend_from_slice(
                &(*(a as *const AtomicU16))
                    .load(Ordering::Relaxed)
                    .to_le_bytes(),
            ),
            4 if a.is_multiple_of(4) => out.extend_from_slice(
                &(*(a as *const AtomicU32))
                    .load(Ordering::Relaxed)
                    .to_le_bytes(),
            ),
            8 if a.is_multiple_of(8) => out.extend_from_slice(
                &(*(a as *const AtomicU64))
                    .load(Ordering::Relaxed)
                    .to_le_bytes(),
            ),
            _ => {
                // Aligned 8-byte words with one load each, so that no
                // naturally aligned field of up to 8 bytes is torn.
                let mut i = 0;
                while i < len {
                    if (a + i).is_multiple_of(8) && len - i >= 8 {
                        let w = (*((a + i) as *const AtomicU64)).load(Ordering::Relaxed);
                        out.extend_from_slice(&w.to_le_bytes());
                        i += 8;
                    } else {
                        out.push((*((a + i) as *const AtomicU8)).load(Ordering::Relaxed));
                        i += 1;
                    }
                }
            }
        }
    }
}

fn hex(bytes: &[u8], s: &mut String) {
    use std::fmt::Write as _;
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
}

fn unhex(h: &str) -> Result<Vec<u8>, String> {
    if !h.len().is_multiple_of(2) || !h.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err("bytes must be an even number of hex digits".into());
    }
    Ok((0..h.len() / 2)
        .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect())
}

fn globals(module: Option<&str>) -> Result<String, String> {
    let tweaks = TWEAKS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    crate::ffi::with_state(|st| {
        let mut s = String::new();
        let mut buf = Vec::new();
        for (m, n, addr, size) in st.live_globals() {
            if module.is_some_and(|x| x != &*m) {
                continue;
            }
            buf.clear();
            // SAFETY: a live global's storage stays allocated while the
            // state lock is held.
            unsafe { read_bytes(addr, size.min(MAX_READ) as usize, &mut buf) };
            s.push_str("g ");
            s.push_str(&m);
            s.push(' ');
            s.push_str(&n);
            s.push(' ');
            s.push_str(&size.to_string());
            s.push(' ');
            hex(&buf, &mut s);
            if let Some((size2, kind, min, max)) = tweaks.as_ref().and_then(|t| t.get(&addr)) {
                if u64::from(*size2) == size {
                    s.push_str(&format!(" {} {min:?} {max:?}", kind_name(*kind)));
                }
            }
            s.push('\n');
        }
        Ok(s)
    })
    .map_err(|e| e.to_string())
}

fn write(module: &str, name: &str, offset: &str, h: &str) -> Result<String, String> {
    use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8};
    let offset: u64 = offset.parse().map_err(|_| {
        format!(
            "bad offset {:?}",
            offset.chars().take(20).collect::<String>()
        )
    })?;
    let bytes = unhex(h)?;
    if bytes.is_empty() {
        return Err("nothing to write".into());
    }
    crate::ffi::with_state(|st| {
        let Some((addr, size)) = st.live_global(module, name) else {
            return Ok(Err(format!(
                "no global {module}:{name} in the running image (removed, or never defined)"
            )));
        };
        let len = bytes.len() as u64;
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Ok(Err(format!(
                "{module}:{name} has {size} bytes: cannot write {len} at offset {offset}"
            )));
        }
        let a = (addr + offset) as usize;
        let mut old = Vec::with_capacity(bytes.len());
        let b = &bytes;
        // SAFETY: (all arms) [a, a+len) lies inside a live global (checked
        // above), allocated while the state lock is held; the atomic types
        // have the size and (checked) alignment of the access.
        unsafe {
            match bytes.len() {
                1 => old.push((*(a as *const AtomicU8)).swap(b[0], Ordering::SeqCst)),
                2 if a.is_multiple_of(2) => old.extend_from_slice(
                    &(*(a as *const AtomicU16))
                        .swap(u16::from_le_bytes([b[0], b[1]]), Ordering::SeqCst)
                        .to_le_bytes(),
                ),
                4 if a.is_multiple_of(4) => old.extend_from_slice(
                    &(*(a as *const AtomicU32))
                        .swap(
                            u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                            Ordering::SeqCst,
                        )
                        .to_le_bytes(),
                ),
                8 if a.is_multiple_of(8) => {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(b);
                    old.extend_from_slice(
                        &(*(a as *const AtomicU64))
                            .swap(u64::from_le_bytes(w), Ordering::SeqCst)
                            .to_le_bytes(),
                    );
                }
                n => {
                    read_bytes(a as u64, n, &mut old);
                    for (i, v) in b.iter().enumerate() {
                        std::ptr::write_volatile((a + i) as *mut u8, *v);
                    }
                }
            }
        }
        let mut s = String::from("old ");
        hex(&old, &mut s);
        s.push('\n');
        Ok(Ok(s))
    })
    .map_err(|e| e.to_string())?
}
