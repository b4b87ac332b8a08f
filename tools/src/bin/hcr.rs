//! `hcr`: run, watch and inspect hot-reloadable images.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// hcr's own allocations stay out of the C allocator the program uses.
/// glibc's `malloc` adapts its thresholds to what it has seen: freeing a
/// block it had mapped (any block over 128 KiB) raises the size below which
/// it allocates from the heap, and the heap size above which it trims, for
/// the rest of the process. The runtime allocates and frees such blocks while
/// it loads an image (the manifest, its tables), so a program started by a
/// glibc-allocating `hcr run` began with other thresholds than when started
/// natively, and trimmed and regrew its heap (or did not) where the native
/// build did not. With its own allocator, hcr leaves glibc's state exactly as
/// a fresh process has it.
///
/// mimalloc's version 2 (the workspace asks for it): version 3 spreads a
/// load's first touches over more of its arena, whose 2 MiB pages the kernel
/// zeroes whole (transparent huge pages), and made the first load of 500
/// modules × 50 functions 0.6–0.9 ms slower. `main` gives it version 3's
/// purge delay ([`hcr_tools::alloc::purge_after_a_second`]).
///
/// Debug builds keep the system allocator: they are what valgrind and
/// AddressSanitizer check (the test suite's memcheck and ASan runs), and
/// those tools see only the allocations that go through `malloc`.
#[cfg(not(debug_assertions))]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Hot code reloading for native programs.
#[derive(Parser, Debug)]
#[command(name = "hcr", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Describe an image: modules, import tree, symbols, timestamps, load plan.
    Inspect {
        /// The image.
        image: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Load an image and run its root module's `main`.
    Run {
        /// The image.
        image: PathBuf,
        /// Reload from a background thread whenever the image changes, for
        /// programs that never call hcr_perform_code_reload() themselves.
        #[arg(long)]
        auto_reload: bool,
        /// Exit when the parent process exits (used by `hcr watch`).
        #[arg(long, hide = true)]
        exit_with_parent: bool,
        /// Load the image even if it is writable by group or others or owned
        /// by another user (refused by default).
        #[arg(long)]
        allow_insecure_image: bool,
        /// Append every loaded image's functions, trampolines and stubs to
        /// /tmp/perf-PID.map, so `perf report` names them (also
        /// HCR_PERF_MAP=1).
        #[arg(long)]
        perf_map: bool,
        /// `argv[0]` for `main` instead of the image path (`hcr launcher`
        /// passes the launcher's own path, so a program that re-executes
        /// itself through `argv[0]` runs under hcr again).
        #[arg(long, value_name = "PATH")]
        argv0: Option<String>,
        /// Serve the control endpoint (`hcr ps`, `hcr globals`, `hcr set`);
        /// `HCR_CONTROL=1` does the same for any host.
        #[arg(long)]
        control: bool,
        /// Arguments for `main` (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Write an executable launcher for an image: `./app ARGS` then runs
    /// `hcr run app.hcr -- ARGS` with `argv[0]` = the launcher, so programs
    /// that re-execute themselves (test drivers) work.
    Launcher {
        /// The image.
        image: PathBuf,
        /// The launcher to write (default: the image path without `.hcr`).
        #[arg(short = 'o', value_name = "PATH")]
        output: Option<PathBuf>,
        /// Options for `hcr run` (e.g. "--auto-reload").
        #[arg(long, value_name = "OPTIONS", allow_hyphen_values = true)]
        run_options: Option<String>,
    },
    /// Build a folder of C modules, run it, and on every save rebuild,
    /// relink and reload it while it runs.
    ///
    /// The modules are DIR's *.c files; the root is main.c unless DIR/hcr.toml
    /// says `root = "NAME"`. Objects and the image go into DIR/.hcr/.
    Watch {
        /// Folder of C modules.
        dir: PathBuf,
        /// Build with this shell command (run in DIR) instead of compiling the
        /// modules: e.g. "make", "cmake --build build". Needs --image.
        #[arg(long, value_name = "CMD")]
        build: Option<String>,
        /// With --build: the image the command writes, relative to DIR.
        #[arg(long, value_name = "PATH")]
        image: Option<PathBuf>,
        /// Always run the program with `hcr run --auto-reload` (default:
        /// exactly when no module calls hcr_perform_code_reload).
        #[arg(long, conflicts_with = "no_auto_reload")]
        auto_reload: bool,
        /// Never auto-reload: the program reloads itself.
        #[arg(long)]
        no_auto_reload: bool,
        /// When the program ends, start it again (fresh) after the next
        /// successful build, instead of exiting with its exit code.
        #[arg(long)]
        restart: bool,
        /// Arguments for the program's `main` (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Print the compiler flags modules need.
    Flags,
    /// This user's running programs with a control endpoint: PID, image,
    /// generation, modules.
    Ps,
    /// Every persistent global of a running program: module, name, type,
    /// value.
    Globals {
        /// The program's process id.
        pid: u32,
        /// Only this module's globals.
        module: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// A local web page showing a running program's globals live, with
    /// sliders; prints its URL (127.0.0.1 only, with a random token).
    Ui {
        /// The program's process id.
        pid: u32,
        /// Port to listen on (default: any free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Change a running program's global: prints `old -> new`.
    Set {
        /// The program's process id.
        pid: u32,
        /// MODULE:NAME[.FIELD]
        target: String,
        /// The new value.
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
}

/// Restores the default action of `signals`: the program `hcr run` runs
/// dies of them as it would natively.
/// - `SIGPIPE`, which the Rust runtime ignores: a closed pipe ends the
///   program, and `hcr inspect app.hcr | head` ends quietly like other
///   Unix tools (hcr run and inspect open no sockets or pipes of their
///   own).
/// - `SIGSEGV` and `SIGBUS`, which the Rust runtime handles to tell its own
///   threads' stack overflows apart, aborting (`SIGABRT`) when a fault hits
///   a guard page: a module's unbounded recursion on the main thread died
///   of `SIGABRT` after "thread 'main' has overflowed its stack". hcr's own
///   code does not recurse without bound; the runtime installs its crash
///   handler afterwards and passes faults on to the default.
#[allow(unsafe_code)]
fn default_action(signals: &[libc::c_int]) {
    for &sig in signals {
        // SAFETY: setting a signal's disposition to SIG_DFL installs no
        // handler code.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
}

/// Every thread of the process, not only those module code starts, gets
/// the alternate signal stack a crash report needs when the thread
/// overflows its stack: threads the C++ library starts (`std::thread`) or
/// another library starts call `pthread_create` from their own code, and
/// this definition, exported by the binary (`build.rs`), is the one the
/// dynamic loader binds their calls to (the executable's come first). It
/// creates the thread with the C library's.
///
/// # Safety
/// As `pthread_create`.
#[allow(unsafe_code)]
#[no_mangle]
pub unsafe extern "C" fn pthread_create(
    thread: *mut libc::pthread_t,
    attr: *const libc::pthread_attr_t,
    f: hcr_runtime::StartRoutine,
    arg: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: the caller's arguments, as `pthread_create` takes them.
    unsafe { hcr_runtime::pthread_create_with_alt_stack(thread, attr, f, arg) }
}

fn main() -> ExitCode {
    #[cfg(not(debug_assertions))]
    // SAFETY: first in `main`: no other thread runs yet.
    unsafe {
        hcr_tools::alloc::purge_after_a_second()
    };
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Watch { .. }) {
        default_action(&[libc::SIGPIPE]);
    }
    if matches!(cli.command, Command::Run { .. }) {
        default_action(&[libc::SIGSEGV, libc::SIGBUS]);
    }
    let result = match cli.command {
        Command::Inspect { image, json } => {
            hcr_tools::inspect::run(&image, json, &mut std::io::stdout().lock())
        }
        Command::Run {
            image,
            auto_reload,
            exit_with_parent,
            allow_insecure_image,
            perf_map,
            argv0,
            control,
            args,
        } => {
            if control {
                hcr_runtime::control::enable();
            }
            let opts = hcr_tools::run::RunOptions {
                auto_reload,
                exit_with_parent,
                allow_insecure_image,
                perf_map,
                argv0,
            };
            match hcr_tools::run::run_with(&image, &args, &opts) {
                Ok(code) => {
                    // Leave through libc's exit so the program's stdio is flushed.
                    std::process::exit(code);
                }
                Err(e) => Err(e),
            }
        }
        Command::Watch {
            dir,
            build,
            image,
            auto_reload,
            no_auto_reload,
            restart,
            args,
        } => {
            let run = || -> anyhow::Result<i32> {
                use hcr_tools::watch::{AutoReload, WatchConfig};
                let mut cfg = WatchConfig::new(dir)?;
                cfg.build = build;
                cfg.image = image;
                cfg.restart = restart;
                cfg.args = args;
                cfg.auto_reload = match (auto_reload, no_auto_reload) {
                    (true, _) => Some(AutoReload::On),
                    (_, true) => Some(AutoReload::Off),
                    _ => None,
                };
                // Whole lines, each in one write: the program shares the
                // terminal, and a message cut in two would mix with its lines.
                let mut log = std::io::LineWriter::new(std::io::stderr());
                hcr_tools::watch::watch(&cfg, &mut log)
            };
            match run() {
                Ok(code) => std::process::exit(code),
                Err(e) => Err(e),
            }
        }
        Command::Launcher {
            image,
            output,
            run_options,
        } => hcr_tools::run::write_launcher(&image, output.as_deref(), run_options.as_deref())
            .map(|path| println!("{}", path.display())),
        Command::Ps => hcr_tools::live::ps(&mut std::io::stdout().lock()),
        Command::Globals { pid, module, json } => {
            hcr_tools::live::globals(pid, module.as_deref(), json, &mut std::io::stdout().lock())
        }
        Command::Ui { pid, port } => hcr_tools::ui::ui(pid, port, &mut std::io::stdout().lock()),
        Command::Set { pid, target, value } => {
            hcr_tools::live::set(pid, &target, &value, &mut std::io::stdout().lock())
        }
        Command::Flags => {
            println!("{}", hcr_tools::FLAGS);
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hcr: {e:#}");
            ExitCode::from(2)
        }
    }
}
