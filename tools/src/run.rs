//! `hcr run IMAGE [--auto-reload] [-- ARGS...]`: load an image and call the
//! root's `main`.
//!
//! # Two ways to reload, and which to use when
//!
//! **The program reloads itself** (the default). The program calls
//! `hcr_perform_code_reload()` at a point of its choosing, typically at the
//! top of its main loop when `hcr_has_any_module_changed()` (one non-blocking read when nothing happened) says
//! the image on disk changed. That point is a *safe point*: no other code of
//! the program is half-way through anything, before- and after-handlers run
//! on the program's own thread, and a reload can never land between two
//! calls that must see the same version. Use it for every program you can
//! add two lines to, and always for programs with reload handlers, with
//! threads, or whose data layout you change while they run.
//!
//! **`--auto-reload`**: for programs that never call `hcr_perform_code_reload()`
//! (plain C that knows nothing of hcr). A background thread polls
//! `hcr_has_any_module_changed()` every [`AUTO_RELOAD_POLL`] and, when it is
//! true, performs the reload itself, while the program runs. This is safe in
//! the sense the runtime guarantees for any reload: calls already running
//! finish in the old code, every call that starts afterwards (through a
//! permanent function address) runs the new code, globals keep their values,
//! and old images stay mapped — in this mode *every* old image stays mapped
//! until the program exits (one image's memory per reload), because the
//! program's `main`, which never returns, keeps running in the first one.
//! What it does not give:
//! - the instant is arbitrary: one iteration of the program's loop may call
//!   the old `f` and then the new `g`; a change that both must agree on (a
//!   struct layout, a protocol between two functions) can be seen half-done
//!   for that one iteration;
//! - handlers and `HCR_ON_RELOAD` blocks run on the reload thread,
//!   concurrently with the program: they must not touch state the program
//!   is using without synchronisation;
//! - a loop that never returns keeps running its own code: only the
//!   functions it *calls* are replaced (put the body of a long-running loop
//!   in a function, ideally in another module; a `static` function of the
//!   same module may have been inlined into the loop).
//!
//! A program that reloads itself must not be run with `--auto-reload`: the
//! two would race, and one of them would get "a reload is already in
//! progress". `hcr watch` therefore decides from the image (see
//! `watch::AutoReload`): auto-reload is on only when no module of the program
//! references `hcr_perform_code_reload`.

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;

/// How often `--auto-reload` looks at the image (one non-blocking read each
/// time while nothing happens to the file).
pub const AUTO_RELOAD_POLL: Duration = Duration::from_millis(10);

/// How often `--exit-with-parent` checks that the parent is alive.
const PARENT_POLL: Duration = Duration::from_millis(100);

/// Options of `hcr run`.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Reload from a background thread whenever the image changes.
    pub auto_reload: bool,
    /// Exit when the parent process is gone (used by `hcr watch`, so that
    /// the program never outlives the watcher).
    pub exit_with_parent: bool,
    /// Load an image writable by group or others, or owned by another user.
    pub allow_insecure_image: bool,
    /// Write `/tmp/perf-PID.map` for `perf` (also `HCR_PERF_MAP=1`).
    pub perf_map: bool,
    /// `argv[0]` for `main` (default: the image path).
    pub argv0: Option<String>,
}

/// Loads `image`, runs top-level code, calls `main(argc, argv)` with
/// `argv[0]` = the image path, and returns `main`'s result.
///
/// # Errors
/// The image cannot be loaded.
pub fn run(image: &Path, args: &[String]) -> anyhow::Result<i32> {
    run_with(image, args, &RunOptions::default())
}

/// [`run`] with options.
///
/// # Errors
/// The image cannot be loaded.
pub fn run_with(image: &Path, args: &[String], opts: &RunOptions) -> anyhow::Result<i32> {
    if opts.exit_with_parent {
        watch_parent();
    }
    let rt_opts = hcr_runtime::Options {
        allow_insecure_image: opts.allow_insecure_image
            || hcr_runtime::Options::default().allow_insecure_image,
        perf_map: opts.perf_map || hcr_runtime::Options::default().perf_map,
        require_main: true,
        ..hcr_runtime::Options::default()
    };
    let rt = hcr_runtime::Runtime::open_with(image, &rt_opts).map_err(|e| {
        let doing = match e {
            hcr_runtime::Error::NoMain { .. } => "run",
            _ => "load",
        };
        anyhow::Error::new(e).context(format!("cannot {doing} {}", image.display()))
    })?;
    let mut argv = vec![opts
        .argv0
        .clone()
        .unwrap_or_else(|| image.display().to_string())];
    argv.extend(args.iter().cloned());
    // The C library's messages (a failed `assert`) name the program as
    // they would natively, not `hcr`.
    hcr_runtime::set_program_name(&argv[0]);
    // Old images stay mapped: the program's other threads, and its heap (a
    // C++ object's vtable pointer, a pointer to a string literal), may
    // still refer to one, and the reloading thread sees neither. Each
    // reload keeps the previous code of the modules it changed only;
    // `HCR_KEEP_RETIRED_IMAGES=0` frees old images as soon as the
    // reloading thread's stack and the globals no longer refer to them.
    let keep = std::env::var_os("HCR_KEEP_RETIRED_IMAGES").is_none_or(|v| v != "0");
    rt.keep_retired_images(keep);
    let code = if opts.auto_reload {
        // See the module documentation: the program's `main` keeps running in
        // the first image, and the reload thread cannot see its stack.
        rt.keep_retired_images(true);
        let stop = AtomicBool::new(false);
        // The image's version is read where it was when the program
        // started, whichever directory it moves to (as the runtime does).
        let at = std::path::absolute(image).unwrap_or_else(|_| image.to_path_buf());
        std::thread::scope(|s| {
            s.spawn(|| auto_reload_loop(&rt, (image, &at), &stop));
            let code = rt.run_main(&argv);
            stop.store(true, Ordering::Relaxed);
            code
        })
    } else {
        rt.run_main(&argv)
    };
    // The program's own state (stdio buffers, atexit handlers) is flushed by
    // the process exit; the images stay mapped until then.
    std::mem::forget(rt);
    Ok(code)
}

/// Writes an executable launcher for `image` at `output` (default: the
/// image path without its `.hcr` extension, or with `.run` added) and
/// returns its path. Running it runs `hcr run IMAGE` with `argv[0]` = the
/// launcher's path as invoked, so a program that re-executes itself through
/// `argv[0]` (test drivers, servers that restart themselves) comes back up
/// under hcr with the same image.
///
/// # Errors
/// The paths cannot be resolved or the launcher cannot be written.
pub fn write_launcher(
    image: &Path,
    output: Option<&Path>,
    run_options: Option<&str>,
) -> anyhow::Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let image_abs = std::fs::canonicalize(image)
        .with_context(|| format!("cannot find image {}", image.display()))?;
    let out = match output {
        Some(p) => p.to_path_buf(),
        None if image.extension().is_some_and(|e| e == "hcr") => image.with_extension(""),
        None => image.with_extension("run"),
    };
    let hcr = std::env::current_exe().context("cannot find the hcr executable")?;
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let script = format!(
        "#!/bin/sh\n# Runs {image} under hcr; argv[0] is this launcher.\nexec {hcr} run --argv0 \"$0\" {opts}{image_q} -- \"$@\"\n",
        image = image_abs.display(),
        hcr = quote(&hcr.to_string_lossy()),
        opts = run_options.map(|o| format!("{o} ")).unwrap_or_default(),
        image_q = quote(&image_abs.to_string_lossy()),
    );
    std::fs::write(&out, script).with_context(|| format!("cannot write {}", out.display()))?;
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", out.display()))?;
    Ok(out)
}

/// The identity of one version of the image file (device, inode, size,
/// modification and change times; `None` when it is missing), to report a failed image
/// once: a relink, a rewrite or a `chmod` makes a new version.
type FileId = Option<crate::watch::Stamp>;

fn file_id(path: &Path) -> FileId {
    crate::watch::Stamp::of_path(path)
}

/// Polls the image and reloads it when it changed, until `stop`. Every
/// reload that cannot be done (an image that is missing, torn, corrupt or
/// refused, a module that does not resolve) is reported on stderr once per
/// version of the image file; the old code keeps running and the next
/// version is tried afresh.
/// `image` is the path as given (named in reports), `at` the same made
/// absolute.
fn auto_reload_loop(rt: &hcr_runtime::Runtime, (image, at): (&Path, &Path), stop: &AtomicBool) {
    let mut failed_on: Option<FileId> = None;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(AUTO_RELOAD_POLL);
        // The version is read before the image is: a failure is pinned to
        // the version it was read from only when the file did not change
        // while it was read (otherwise the next poll tries again), so one
        // image's failure is never reported under the next one's name.
        let id = file_id(at);
        if failed_on == Some(id) {
            continue; // said once; wait for the next image
        }
        let changed = rt.check_changed();
        if let Ok(false) = changed {
            continue;
        }
        let result = match changed {
            Err(e) => Err(e),
            Ok(_) => rt.reload(),
        };
        match result {
            Ok(_) => failed_on = None,
            Err(_) if file_id(at) != id => {} // replaced meanwhile: retry
            Err(e) => {
                report_failed_reload(image, &e);
                failed_on = Some(id);
            }
        }
    }
}

/// One line on stderr: the image and why its reload failed.
pub fn report_failed_reload(image: &Path, e: &hcr_runtime::Error) {
    // Never `eprintln!`: it panics when stderr is gone.
    let _ = writeln!(
        std::io::stderr(),
        "hcr: auto-reload of {} failed, the old code keeps running: {}",
        image.display(),
        e.to_string().replace('\n', " ")
    );
}

/// Exits the process (code 129, as for a hang-up) once its parent is gone.
fn watch_parent() {
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || loop {
        std::thread::sleep(PARENT_POLL);
        if std::os::unix::process::parent_id() != parent {
            // Not `eprintln!`, which panics when stderr is gone (as it
            // usually is when the parent died).
            let _ = writeln!(
                std::io::stderr(),
                "hcr: the watching process is gone; stopping the program"
            );
            std::process::exit(129);
        }
    });
}
