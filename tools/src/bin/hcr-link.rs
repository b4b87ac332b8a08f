//! `hcr-link`: link module objects into one reloadable image.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use hcr_tools::link_ahead::Files;
use hcr_tools::link_server;

/// The linker allocates and frees many small vectors from several threads;
/// mimalloc's thread-local heaps avoid the system allocator's arena growth
/// (mprotect, page faults) that otherwise shows in link times. A run that
/// hands its link to a server allocates a few kilobytes, from a static area
/// that costs no start-up: mimalloc starts once the process links.
#[global_allocator]
static ALLOC: hcr_tools::alloc::Deferred = hcr_tools::alloc::Deferred;

/// Link C module objects (.o) and archives (.a) into one hot-reloadable image.
#[derive(Parser, Debug)]
#[command(name = "hcr-link", version, about)]
struct Cli {
    /// Output image path (written atomically).
    #[arg(short = 'o', value_name = "OUT")]
    output: PathBuf,
    /// Root module of the import tree (default: the first input).
    #[arg(long, value_name = "MODULE")]
    root: Option<String>,
    /// Print a summary of the image.
    #[arg(short, long)]
    verbose: bool,
    /// Print the time each linker pass takes.
    #[arg(long)]
    timings: bool,
    /// Link against a shared library the program needs (`-lz`, `-l z`,
    /// `-l:libz.so.1`), as `cc` does; the runtime loads it before the
    /// modules. libc, libm, libpthread, libdl, librt, libstdc++ and libgcc_s
    /// need no flag. A `libNAME.a` is linked in as an archive.
    #[arg(short = 'l', value_name = "NAME")]
    libraries: Vec<String>,
    /// Search DIR for `-l` libraries before the system directories.
    #[arg(short = 'L', value_name = "DIR")]
    library_dirs: Vec<PathBuf>,
    /// Link although some symbols are defined by no module, library or the
    /// hcr runtime (each is still named, as a warning): for a host program
    /// that embeds the runtime and defines them itself. `hcr run` refuses
    /// such an image.
    #[arg(long)]
    allow_undefined: bool,
    /// Relink incrementally: a background hcr-link keeps this output's link
    /// (started by the first such run; it exits after 10 minutes without a
    /// link), and each later run takes over what did not change. The image
    /// is the same as without the flag. `HCR_LINK_INCREMENTAL=1` in the
    /// environment does the same (`hcr watch --build` sets it).
    #[arg(long)]
    incremental: bool,
    /// Object files and archives, in import-priority order.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
}

fn main() -> ExitCode {
    #[cfg(not(debug_assertions))]
    // SAFETY: first in `main`: no other thread runs yet.
    unsafe {
        hcr_tools::alloc::purge_after_a_second()
    };
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == link_server::SERVE_ARG) {
        if let Some(name) = argv.get(2).and_then(|n| n.to_str()) {
            hcr_tools::alloc::link_from_now();
            serve(name);
        }
        return exit_now(0);
    }
    let from_env = std::env::var_os("HCR_LINK_INCREMENTAL").is_some_and(|v| v == "1");
    // A line plain enough to read without clap goes to the server at once
    // (the server parses it with clap and reports any error).
    let quick = scan(&argv[1..]).filter(|&(_, flag)| flag || from_env);
    let cli = quick.is_none().then(Cli::parse);
    // The output of a link the server is asked for.
    let served = match (quick, &cli) {
        (Some((output, _)), _) => Some(output),
        (None, Some(c)) if c.incremental || from_env => Some(c.output.clone()),
        _ => None,
    };
    if let Some(output) = served {
        let mut why = None;
        let code = link_server::server_name(&output)
            .ok()
            .and_then(|name| link_server::request(&name, &argv[1..], &mut why));
        if let Some(code) = code {
            return exit_now(code.into());
        }
        if let Some(why) = why {
            eprintln!("hcr-link: {why}; linking in this process");
        }
    }
    let cli = cli.unwrap_or_else(Cli::parse);
    hcr_tools::alloc::link_from_now();
    match hcr_tools::link::run(&link_args(cli, true)) {
        Ok(()) => exit_now(0),
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::from(2)
        }
    }
}

/// The output and whether `--incremental` is given, from a command line
/// made only of `hcr-link`'s own options (values attached or following)
/// and inputs; `None` for anything else (help, version, `--`, an option
/// not known here, no output or no input), which clap reads. A run that a
/// server links then starts without building clap's parser.
fn scan(args: &[std::ffi::OsString]) -> Option<(PathBuf, bool)> {
    use std::os::unix::ffi::OsStrExt as _;
    let (mut output, mut incremental, mut inputs) = (None, false, 0usize);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_bytes() {
            b"--incremental" => incremental = true,
            b"-v" | b"--verbose" | b"--timings" | b"--allow-undefined" => {}
            b"-o" if output.is_none() => output = Some(PathBuf::from(it.next()?)),
            b"-L" | b"-l" | b"--root" => {
                it.next()?;
            }
            [b'-', b'o', rest @ ..] if output.is_none() => {
                let rest = rest.strip_prefix(b"=").unwrap_or(rest);
                output = Some(PathBuf::from(std::ffi::OsStr::from_bytes(rest)));
            }
            [b'-', b'L' | b'l', _, ..] => {}
            b if b.starts_with(b"--root=") => {}
            [b'-', ..] => return None,
            _ => inputs += 1,
        }
    }
    output
        .filter(|o| !o.as_os_str().is_empty() && inputs > 0)
        .map(|o| (o, incremental))
}

fn link_args(cli: Cli, skip_free: bool) -> hcr_tools::link::LinkArgs {
    hcr_tools::link::LinkArgs {
        output: cli.output,
        root: cli.root,
        inputs: cli.inputs,
        verbose: cli.verbose,
        timings: cli.timings,
        skip_free,
        libraries: cli.libraries,
        library_dirs: cli.library_dirs,
        allow_undefined: cli.allow_undefined,
    }
}

/// The server behind `--incremental`: each request is a command line,
/// linked with the input cache it keeps; changes to the last link's inputs
/// are linked ahead of the next request (`hcr_tools::link_ahead`), on the
/// thread pool, so that a request that comes meanwhile is answered as soon
/// as that image is in place.
fn serve(name: &str) {
    let mut server = Server {
        cache: Some(hcr_linker::InputCache::default()),
        ahead: hcr_tools::link_ahead::Ahead::default(),
        running: None,
        quiet_until: None,
        spare: None,
    };
    link_server::serve(name, &mut server);
}

struct Server {
    /// `None` while a link ahead has it.
    cache: Option<hcr_linker::InputCache>,
    ahead: hcr_tools::link_ahead::Ahead,
    running: Option<Running>,
    /// Changes came while a link ahead ran: the next starts once none has
    /// come for [`QUIET`].
    quiet_until: Option<std::time::Instant>,
    /// The image a claim replaced, for the cache's next link to write over
    /// (see `hcr_linker::InputCache`) once a link ahead gives it back.
    spare: Option<std::path::PathBuf>,
}

/// How long changes must pause, once they come faster than links ahead
/// finish, before the next link ahead starts.
const QUIET: std::time::Duration = std::time::Duration::from_millis(30);

/// A link ahead on the thread pool.
struct Running {
    shared: std::sync::Arc<Shared>,
    /// Until its outcome is known: the job and its captured output.
    job: Option<(hcr_tools::link_ahead::Job, link_server::Capture)>,
}

/// What a link ahead and the server share.
struct Shared {
    state: std::sync::Mutex<AheadState>,
    changed: std::sync::Condvar,
}

#[derive(Default)]
struct AheadState {
    /// The image is in place and the link's messages are written, or the
    /// link returned having failed.
    known: bool,
    /// What the link read, when it placed its image (taken once).
    read: Option<Files>,
    /// The link returned, and gave the cache back.
    ended: bool,
    cache: Option<hcr_linker::InputCache>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, AheadState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Server {
    /// Starts `job` on the thread pool with the cache, its output captured.
    fn start(&mut self, job: hcr_tools::link_ahead::Job) {
        self.hand_spare();
        let Some(mut cache) = self.cache.take() else {
            return;
        };
        let Some(capture) = link_server::Capture::start() else {
            self.cache = Some(cache);
            return;
        };
        let shared = std::sync::Arc::new(Shared {
            state: Default::default(),
            changed: Default::default(),
        });
        let link = job.link.clone();
        let theirs = shared.clone();
        rayon::spawn(move || {
            let signal = theirs.clone();
            let placed = move |out: &hcr_linker::LinkOutput| {
                let mut s = signal.lock();
                (s.known, s.read) = (true, Some(Files::read_by(out)));
                drop(s);
                signal.changed.notify_all();
            };
            // With `--timings` every pass is timed: the link is done when
            // it returns.
            let early = (!link.timings).then(|| Box::new(placed) as hcr_tools::link::Succeeded);
            let linked = hcr_tools::link::run_then(&link, Some(&mut cache), early);
            let mut s = theirs.lock();
            if !s.known {
                (s.known, s.read) = (true, linked.ok().map(|out| Files::read_by(&out)));
            }
            s.ended = true;
            s.cache = Some(cache);
            drop(s);
            theirs.changed.notify_all();
        });
        self.running = Some(Running {
            shared,
            job: Some((job, capture)),
        });
    }

    /// Gives the running link ahead's outcome to `ahead` once it is known
    /// (waiting for it when `wait`), and, when `join`, waits for the link to
    /// return and takes the cache back.
    fn settle(&mut self, wait: bool, join: bool) {
        let Some(run) = self.running.as_mut() else {
            return;
        };
        let mut s = run.shared.lock();
        while (wait && !s.known) || (join && !s.ended) {
            s = run
                .shared
                .changed
                .wait(s)
                .unwrap_or_else(|e| e.into_inner());
        }
        let (known, read, ended) = (s.known, s.read.take(), s.ended);
        let cache = if ended { s.cache.take() } else { None };
        drop(s);
        if known {
            if let Some((job, capture)) = run.job.take() {
                let (out, err) = capture.take();
                self.ahead.finished(job, read, out, err);
            }
        }
        if ended {
            self.cache = cache;
            self.running = None;
        }
    }

    /// Gives the image a claim replaced to the cache, if it is here.
    fn hand_spare(&mut self) {
        if let Some(c) = self.cache.as_mut() {
            if let Some(s) = self.spare.take() {
                c.keep_spare(s);
            }
        }
    }
}

impl link_server::Handler for Server {
    fn before_request(&mut self, args: &[std::ffi::OsString]) {
        // The inputs' versions at the request, taken while the link ahead
        // still runs (it usually does: the request follows the change by
        // the client's start).
        let ahead = self.running.is_some() || self.ahead.has_ready();
        self.ahead.requested(args, ahead);
        // The link ahead's messages are all written once its image is in
        // place; the client's output becomes this process's after that.
        self.settle(true, false);
    }

    fn link(&mut self, args: &[std::ffi::OsString], answer: link_server::Answer) -> u8 {
        use std::io::Write as _;
        // What changed so far is in what this link reads (or makes the
        // image ahead stale): no link ahead for it afterwards.
        self.ahead.forget_changes();
        self.quiet_until = None;
        // (The same command line as the link ahead: no need to parse it.)
        if let Some(mut done) = self.ahead.claim(args) {
            let _ = std::io::stdout().write_all(&done.out);
            let _ = std::io::stderr().write_all(&done.err);
            if done.verbose {
                let _ = writeln!(
                    std::io::stderr(),
                    "hcr-link: linked ahead, as soon as an input changed"
                );
            }
            answer.succeeded();
            // The replaced image is kept for the next link to write over
            // (moved over the one kept before, if any: they share a name).
            if let Some(kept) = done.keep_replaced() {
                self.spare = Some(kept);
            }
            return 0;
        }
        let argv =
            std::iter::once(std::ffi::OsString::from("hcr-link")).chain(args.iter().cloned());
        let cli = match Cli::try_parse_from(argv) {
            Ok(c) => c,
            Err(e) => {
                let _ = write!(std::io::stderr(), "{e}");
                return 2;
            }
        };
        self.settle(true, true);
        self.hand_spare();
        let link = link_args(cli, false);
        // With `--timings` the passes after the image is in place are
        // timed too: the client waits for them.
        let early = (!link.timings).then(|| {
            Box::new(move |_: &hcr_linker::LinkOutput| answer.succeeded())
                as hcr_tools::link::Succeeded
        });
        let (code, read) = match hcr_tools::link::run_then(&link, self.cache.as_mut(), early) {
            Ok(out) => (0, Some(Files::read_by(&out))),
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "{e:#}");
                (2, None)
            }
        };
        self.ahead.linked(args, link, read);
        code
    }

    fn watched(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.ahead.fd()
    }

    fn woken(&mut self) {
        self.settle(false, false);
        let changed = self.ahead.note_changes();
        let now = std::time::Instant::now();
        if changed && (self.running.is_some() || self.quiet_until.is_some()) {
            // Changes keep coming (a build writing many objects): link
            // when they pause, not after each one.
            self.quiet_until = Some(now + QUIET);
            return;
        }
        if !changed && self.quiet_until.is_none_or(|t| t > now) {
            return;
        }
        self.quiet_until = None;
        self.settle(true, true);
        if let Some(job) = self.ahead.job() {
            self.start(job);
        }
    }

    fn wake_in(&self) -> Option<std::time::Duration> {
        self.quiet_until
            .map(|t| t.saturating_duration_since(std::time::Instant::now()))
    }

    fn ending(&mut self) {
        self.settle(true, true);
        self.ahead.discard();
        // The process ends without dropping anything: the kept images go.
        if let Some(s) = self.spare.take() {
            let _ = std::fs::remove_file(s);
        }
        if let Some(c) = self.cache.as_mut() {
            c.forget_spare();
        }
    }
}

/// Ends the process without running exit handlers: the image is written and
/// renamed, and the allocator's exit handler would only hand every page
/// back to the kernel one call at a time, which the exit does at once (lld
/// ends the same way). Standard output and error are unbuffered or flushed.
fn exit_now(code: i32) -> ExitCode {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    // SAFETY: `_exit` ends the process; nothing of ours is pending (the
    // output file is closed and renamed), and the kernel frees the rest.
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanned(line: &str) -> Option<(PathBuf, bool)> {
        let args: Vec<std::ffi::OsString> = line.split(' ').map(Into::into).collect();
        scan(&args)
    }

    #[test]
    fn plain_command_lines_are_read_without_clap_and_the_rest_left_to_it() {
        let out = |p: &str, inc| Some((PathBuf::from(p), inc));
        assert_eq!(scanned("-o app.hcr main.o a.o"), out("app.hcr", false));
        assert_eq!(
            scanned("--incremental -v -L lib -l x --root main -oapp.hcr main.o"),
            out("app.hcr", true)
        );
        assert_eq!(
            scanned("-lm -Llib --root=main --timings -o=out/app.hcr m.o"),
            out("out/app.hcr", false)
        );
        // Left to clap: help, version, `--`, an unknown option, two
        // outputs, a missing value, no output, no input.
        for line in [
            "--help -o a.hcr m.o",
            "-V",
            "-o a.hcr -- m.o",
            "-o a.hcr -x m.o",
            "-o a.hcr -o b.hcr m.o",
            "m.o -o",
            "m.o",
            "-o a.hcr",
            "-vo a.hcr m.o",
        ] {
            assert_eq!(scanned(line), None, "{line}");
        }
    }
}
