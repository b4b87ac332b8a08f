//! `hcr-link -o OUT [--root MODULE] [-L DIR] [-l NAME] INPUT...`

use std::path::PathBuf;

use anyhow::Context as _;

/// A line on stderr; never panics when stderr is gone (a server's client
/// may have closed it).
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

/// Options of `hcr-link`.
#[derive(Clone, Debug)]
pub struct LinkArgs {
    /// Output image path.
    pub output: PathBuf,
    /// Root module (default: the first input).
    pub root: Option<String>,
    /// Objects and archives.
    pub inputs: Vec<PathBuf>,
    /// Print a summary line to stderr.
    pub verbose: bool,
    /// Print the time of each pass to stderr.
    pub timings: bool,
    /// The process exits after the link (see `LinkConfig::skip_free`).
    pub skip_free: bool,
    /// Shared libraries the program needs (`-l NAME`).
    pub libraries: Vec<String>,
    /// Directories searched for them first (`-L DIR`).
    pub library_dirs: Vec<PathBuf>,
    /// Undefined symbols are warnings, not errors (`--allow-undefined`).
    pub allow_undefined: bool,
}

/// Links and writes the image atomically.
///
/// # Errors
/// Input diagnostics (all of them) or an I/O failure; nothing is written then.
pub fn run(args: &LinkArgs) -> anyhow::Result<()> {
    run_with(args, None)
}

/// As [`run`]; with a cache, the link takes over what the previous link
/// kept in it that did not change (`hcr-link --incremental`'s server).
///
/// # Errors
/// As [`run`].
pub fn run_with(args: &LinkArgs, cache: Option<&mut hcr_linker::InputCache>) -> anyhow::Result<()> {
    run_then(args, cache, None).map(drop)
}

/// What a link that succeeded says once its image is in place, given the
/// link's messages are printed (see [`run_then`]); it is given the link's
/// output.
pub type Succeeded = Box<dyn FnOnce(&hcr_linker::LinkOutput) + Send>;

/// As [`run_with`]; with a cache and `succeeded`, the link's messages are
/// printed and `succeeded` called as soon as the image is in place, before
/// the link keeps its state for the next one and removes the replaced image
/// (the server answers its client from there). Returns the link's output.
///
/// # Errors
/// As [`run`].
pub fn run_then(
    args: &LinkArgs,
    cache: Option<&mut hcr_linker::InputCache>,
    succeeded: Option<Succeeded>,
) -> anyhow::Result<hcr_linker::LinkOutput> {
    let cfg = hcr_linker::LinkConfig {
        root: args.root.clone(),
        timings: args.timings,
        skip_free: args.skip_free,
        libraries: args.libraries.clone(),
        library_dirs: args.library_dirs.clone(),
        allow_undefined: args.allow_undefined,
    };
    // Nim modules: their Init000 guarded for new globals (see `nim_init`).
    let started = std::time::Instant::now();
    let nim = crate::nim_init::prepare(&args.inputs);
    for w in &nim.warnings {
        say!("hcr-link: warning: {w}");
    }
    if args.verbose && nim.compiled + nim.cached > 0 {
        say!(
            "hcr-link: {} Nim modules rewritten ({} compiled, {} cached) in {} ms",
            nim.compiled + nim.cached,
            nim.compiled,
            nim.cached,
            started.elapsed().as_millis()
        );
    }
    let incremental = cache.is_some();
    let verbose = args.verbose;
    let (out, reported) = match (cache, succeeded) {
        (Some(c), Some(succeeded)) => {
            let mut succeeded = Some(succeeded);
            let placed = move |out: &hcr_linker::LinkOutput| {
                report(out, verbose, true);
                if let Some(f) = succeeded.take() {
                    f(out);
                }
            };
            let linked =
                hcr_linker::link_cached_then(&cfg, &nim.inputs, &args.output, c, Box::new(placed));
            (linked, true)
        }
        (Some(c), None) => (
            hcr_linker::link_cached(&cfg, &nim.inputs, &args.output, c),
            false,
        ),
        (None, _) => (hcr_linker::link(&cfg, &nim.inputs, &args.output), false),
    };
    let out = out.with_context(|| format!("hcr-link: cannot link {}", args.output.display()))?;
    if !reported {
        report(&out, verbose, incremental);
    }
    Ok(out)
}

/// The link's warnings and, with `-v`, its summary.
fn report(out: &hcr_linker::LinkOutput, verbose: bool, incremental: bool) {
    for w in &out.warnings {
        say!("hcr-link: warning: {w}");
    }
    if verbose {
        say!(
            "hcr-link: {} modules, {} bytes, {} relocations ({} applied at link time, {} left to the loader)",
            out.modules,
            out.size,
            out.stats.relocations,
            out.stats.applied_at_link,
            out.stats.relocations - out.stats.applied_at_link
        );
    }
    if verbose && incremental {
        let r = &out.reused;
        say!(
            "hcr-link: incremental: taken over from the previous link, of {} modules: {} parses, {} relocation scans, {} applied segments, {} symbol tables",
            out.modules,
            r.parsed,
            r.scanned,
            r.applied,
            r.rendered
        );
    }
}
