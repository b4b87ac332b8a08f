//! `hcr-link`: link module objects into one reloadable image.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use hcr_tools::link_server;

/// The linker allocates and frees many small vectors from several threads;
/// mimalloc's thread-local heaps avoid the system allocator's arena growth
/// (mprotect, page faults) that otherwise shows in link times.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
            serve(name);
        }
        return exit_now(0);
    }
    let cli = Cli::parse();
    let incremental =
        cli.incremental || std::env::var_os("HCR_LINK_INCREMENTAL").is_some_and(|v| v == "1");
    if incremental {
        let mut why = None;
        let code = link_server::server_name(&cli.output)
            .ok()
            .and_then(|name| link_server::request(&name, &argv[1..], &mut why));
        if let Some(code) = code {
            return exit_now(code.into());
        }
        if let Some(why) = why {
            eprintln!("hcr-link: {why}; linking in this process");
        }
    }
    match hcr_tools::link::run(&link_args(cli, true)) {
        Ok(()) => exit_now(0),
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::from(2)
        }
    }
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
/// linked with the input cache it keeps.
fn serve(name: &str) {
    let mut cache = hcr_linker::InputCache::default();
    link_server::serve(name, |args, answer| {
        use std::io::Write as _;
        let argv =
            std::iter::once(std::ffi::OsString::from("hcr-link")).chain(args.iter().cloned());
        let cli = match Cli::try_parse_from(argv) {
            Ok(c) => c,
            Err(e) => {
                let _ = write!(std::io::stderr(), "{e}");
                return 2;
            }
        };
        // With `--timings` the passes after the image is in place are
        // timed too: the client waits for them.
        let early = (!cli.timings)
            .then(|| Box::new(move || answer.succeeded()) as hcr_tools::link::Succeeded);
        match hcr_tools::link::run_then(&link_args(cli, false), Some(&mut cache), early) {
            Ok(()) => 0,
            Err(e) => {
                // (`link_cached` starts the next link afresh itself.)
                let _ = writeln!(std::io::stderr(), "{e:#}");
                2
            }
        }
    });
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
