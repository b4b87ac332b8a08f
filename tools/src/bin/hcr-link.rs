//! `hcr-link`: link module objects into one reloadable image.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

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
    /// Object files and archives, in import-priority order.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = hcr_tools::link::LinkArgs {
        output: cli.output,
        root: cli.root,
        inputs: cli.inputs,
        verbose: cli.verbose,
        timings: cli.timings,
        skip_free: true,
        libraries: cli.libraries,
        library_dirs: cli.library_dirs,
    };
    match hcr_tools::link::run(&args) {
        Ok(()) => exit_now(0),
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::from(2)
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
