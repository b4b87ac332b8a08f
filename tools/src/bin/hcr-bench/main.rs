//! `hcr-bench`: benchmarks of hcr against baselines measured in the same run
//! (medians and ratios; this is not a test). See BENCHMARKS.md.
//!
//! ```text
//! hcr-bench link   [--modules 500 --functions 50] [--tiny | --leaf]   hcr-link vs ld.gold -r vs ld -r
//! hcr-bench load   [--modules 500 --functions 50]   first load, full reload vs dlopen
//! hcr-bench reload [--modules 200 --functions 10]   one module changed
//! hcr-bench scale  [--modules 200 --factor 10]      the same reload, N and 10·N modules,
//!                                                   after `cc` and `hcr-link`
//! hcr-bench calls                                   call through a permanent address vs direct
//! hcr-bench changed                                 hcr_has_any_module_changed, nothing changed
//! hcr-bench live                                    a call-heavy program with and without a
//!                                                   client on its page; the page's refresh
//!                                                   cost with 10 000 globals
//! ```

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use hcr_tools::gen::{self, Shape};

mod scale;

#[derive(Parser, Debug)]
#[command(
    name = "hcr-bench",
    about = "hcr benchmarks against same-run baselines"
)]
struct Cli {
    /// Working directory for generated sources, objects and images.
    #[arg(long, default_value = "target/hcr-bench")]
    dir: PathBuf,
    /// Repetitions per measurement (median reported).
    #[arg(long, default_value_t = 7)]
    runs: usize,
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand, Debug)]
enum What {
    /// hcr-link vs `ld.gold -r` vs `ld -r` on the same objects.
    Link {
        #[arg(long, default_value_t = 500)]
        modules: usize,
        #[arg(long, default_value_t = 50)]
        functions: usize,
        /// One-line functions (small objects) instead of the default mix.
        #[arg(long)]
        tiny: bool,
        /// One-line leaf functions that call nothing (the lightest objects).
        #[arg(long, conflicts_with = "tiny")]
        leaf: bool,
    },
    /// First load and full reload of an image vs `dlopen` of the same code.
    Load {
        #[arg(long, default_value_t = 500)]
        modules: usize,
        #[arg(long, default_value_t = 50)]
        functions: usize,
    },
    /// Relink after one module's object changed, in process (what
    /// `hcr watch` does): a full link, a link with the inputs kept mapped,
    /// and the incremental relink, on the same inputs in the same rounds.
    Relink {
        #[arg(long, default_value_t = 100)]
        modules: usize,
        #[arg(long, default_value_t = 10)]
        functions: usize,
        #[arg(long, default_value_t = 4)]
        globals: usize,
        /// What changes in the edited module: `constant` (a returned
        /// constant: the code keeps its size), `grow` (a function's code
        /// grows: every later segment moves), `add-function` (one more
        /// exported function: every later function id shifts).
        #[arg(long, default_value = "constant")]
        change: String,
    },
    /// Reload with one module changed.
    Reload {
        #[arg(long, default_value_t = 200)]
        modules: usize,
        #[arg(long, default_value_t = 10)]
        functions: usize,
        #[arg(long, default_value_t = 2)]
        globals: usize,
        /// Milliseconds to wait between reloads, as between a user's edits:
        /// with 150 or more, every reload has an old image to free.
        #[arg(long, default_value_t = 0)]
        pause_ms: u64,
        /// Write both images once and install each by renaming a hard link
        /// to it: no image is written between reloads, so the reload's own
        /// cost is measured with the caches the reloads leave (by default
        /// each reload follows the write of a whole image, as after a link).
        #[arg(long)]
        prewritten: bool,
    },
    /// The same one-module reload in a program and in one `--factor` times
    /// larger, in one run: each round edits a module's source, compiles it
    /// with `cc`, relinks with the `hcr-link` command, and the program
    /// (under `hcr run`, polling) times its own reload.
    Scale {
        #[arg(long, default_value_t = 200)]
        modules: usize,
        #[arg(long, default_value_t = 10)]
        factor: usize,
        #[arg(long, default_value_t = 10)]
        functions: usize,
        #[arg(long, default_value_t = 10)]
        globals: usize,
        /// Microseconds between the program's change checks (0: none).
        #[arg(long, default_value_t = 1000)]
        poll_us: u64,
    },
    /// Cross-module call through a permanent address vs a direct call.
    Calls {
        #[arg(long, default_value_t = 100_000_000)]
        iterations: i64,
    },
    /// Read-modify-write of a `__thread` counter in a noinline function:
    /// hcr vs a native -fPIC shared object vs a native executable.
    Tls {
        #[arg(long, default_value_t = 100_000_000)]
        iterations: i64,
    },
    /// `hcr_has_any_module_changed()` when nothing changed.
    Changed,
    /// The nimhcr-style baseline: one shared object per module; a reload
    /// stats every module, copies the changed one, dlopens the copy,
    /// rebinds its functions with dlsym and dlcloses the old copy.
    DlopenBaseline {
        #[arg(long, default_value_t = 200)]
        modules: usize,
        #[arg(long, default_value_t = 10)]
        functions: usize,
    },
    /// Whole-program run time of a call-heavy program: hcr image vs a normal
    /// -O2 executable built from the same sources.
    Whole,
    /// Live state: (a) a call-heavy program's loop timed with no client,
    /// with `hcr ui`'s page pushed to a WebSocket client, and with a client
    /// polling `GET /state` 10×/s (rounds interleaved); (b) the cost of one
    /// refresh of the page's state with `--globals` globals (built with
    /// `-g`, so typed from DWARF).
    Live {
        #[arg(long, default_value_t = 300_000_000)]
        iterations: i64,
        #[arg(long, default_value_t = 10_000)]
        globals: usize,
    },
    /// Whole-program run time of an allocation-heavy C++ program
    /// (testdata/bench/alloc.cpp): `hcr run` vs a normal executable, runs
    /// interleaved.
    Alloc,
    /// One first load in this (fresh) process: prints the nanoseconds
    /// `Runtime::open` took. `load` runs it in a new process per sample.
    #[command(hide = true)]
    FirstLoad { image: PathBuf },
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time_runs(runs: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let mut v = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed());
    }
    Ok(median(v))
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64())
}

fn objects_for(dir: &Path, shape: Shape) -> anyhow::Result<Vec<PathBuf>> {
    eprintln!(
        "hcr-bench: generating and compiling {} modules × {} functions in {} (cached between runs)",
        shape.modules,
        shape.functions,
        dir.display()
    );
    gen::generate(dir, shape, "-O2")
}

fn tool(cmd: &str, args: &[&str], objs: &[PathBuf]) -> anyhow::Result<()> {
    let st = Command::new(cmd)
        .args(args)
        .args(objs)
        .status()
        .with_context(|| format!("run {cmd}"))?;
    if !st.success() {
        bail!("{cmd} failed");
    }
    Ok(())
}

fn bench_link(
    cli: &Cli,
    modules: usize,
    functions: usize,
    tiny: bool,
    leaf: bool,
) -> anyhow::Result<()> {
    let shape = Shape {
        modules,
        functions,
        globals: 2,
    };
    let objs = if leaf {
        let dir = cli.dir.join(format!("link-leaf-{modules}x{functions}"));
        eprintln!(
            "hcr-bench: generating {modules} modules × {functions} one-line leaf functions in {}",
            dir.display()
        );
        gen::generate_leaf(&dir, modules, functions, "-O2")?
    } else if tiny {
        let dir = cli.dir.join(format!("link-tiny-{modules}x{functions}"));
        eprintln!(
            "hcr-bench: generating {modules} modules × {functions} one-line functions in {}",
            dir.display()
        );
        gen::generate_tiny(&dir, modules, functions, "-O2")?
    } else {
        objects_for(&cli.dir.join(format!("link-{modules}x{functions}")), shape)?
    };
    let dir = objs[0].parent().map(Path::to_path_buf).unwrap_or_default();
    let bytes: u64 = objs
        .iter()
        .filter_map(|o| std::fs::metadata(o).ok())
        .map(|m| m.len())
        .sum();
    let out = dir.join("app.hcr");
    let cfg = hcr_linker::LinkConfig::default();
    // The generator's worker threads spin for a while before they sleep,
    // and the objects it wrote are still being written back: let both
    // finish, so that neither lands in the runs of one linker below.
    let _ = Command::new("sync").status();
    std::thread::sleep(Duration::from_millis(300));
    // Every linker runs as a process, as a build would run it.
    let hcr_link = std::env::current_exe()?.with_file_name("hcr-link");
    let out_s = out.display().to_string();
    // Each linker runs in a batch of its own, after the previous one's
    // output is written back and after two untimed runs (which settle the
    // page cache and the output file), so that no linker pays for another's
    // writeback.
    let r = dir.join("r.o");
    let r_s = r.display().to_string();
    let hcr_s = hcr_link.display().to_string();
    let batch = |runs: usize, f: &dyn Fn() -> anyhow::Result<()>| -> anyhow::Result<Duration> {
        let _ = Command::new("sync").status();
        time_runs(2, f)?;
        time_runs(runs, f)
    };
    let hcr = batch(cli.runs, &|| tool(&hcr_s, &["-o", &out_s], &objs))?;
    let gold = batch(cli.runs, &|| tool("ld.gold", &["-r", "-o", &r_s], &objs))?;
    let bfd = batch(cli.runs.min(5), &|| tool("ld", &["-r", "-o", &r_s], &objs))?;
    let stats = hcr_linker::link_bytes(&cfg, &objs)?.stats;
    println!(
        "## link: {modules} objects × {functions} functions ({:.1} MB, {} relocations)",
        bytes as f64 / 1e6,
        stats.relocations
    );
    println!("| linker | median | ratio to hcr-link |");
    println!("|---|---|---|");
    println!("| hcr-link (process) | {} | 1.00× |", ms(hcr));
    println!("| ld.gold -r | {} | {} |", ms(gold), ratio(gold, hcr));
    println!("| ld -r (bfd) | {} | {} |", ms(bfd), ratio(bfd, hcr));
    Ok(())
}

/// `hcr-bench relink`: the watch benchmark's project (`main` and
/// `modules - 1` generated modules, `-O1` as `hcr watch` builds), one
/// module's object replaced by another variant each round (as a compiler
/// writes it: a new file renamed into place), then linked three ways in the
/// same round: a full link (`hcr_linker::link`), a link that only keeps the
/// inputs mapped (`InputCache::inputs_only`, `hcr watch` before the
/// incremental relink), and the incremental relink (`link_cached`), in a
/// process with hcr watch's allocator settings. The incremental image is
/// compared with the full one byte for byte.
fn bench_relink(cli: &Cli, all: Shape, change: &str) -> anyhow::Result<()> {
    let Shape {
        modules,
        functions,
        globals,
    } = all;
    if modules < 2 || functions == 0 {
        bail!("--modules must be at least 2, --functions at least 1");
    }
    let shape = Shape {
        modules: modules - 1,
        ..all
    };
    let dir = cli
        .dir
        .join(format!("relink-{modules}x{functions}x{globals}"));
    eprintln!(
        "hcr-bench: generating and compiling {modules} modules in {} (cached between runs)",
        dir.display()
    );
    let objs = gen::generate(&dir, shape, "-O1")?;
    let edited = shape.modules / 2;
    let name = format!("m{edited}");
    let base = gen::module_source(shape, edited, 1);
    let changed = match change {
        "constant" => gen::module_source(shape, edited, 2),
        "grow" => base.replace(
            "    default: return 1;",
            "    default: { int k = x; for (int i = 0; i < x; i++) k = (k * 31) ^ (k >> 3) ^ i; return k & 1; }",
        ),
        "add-function" => format!("{base}int {name}_added(int x) {{ return x * 3 + 1; }}\n"),
        other => bail!("--change {other}: expected constant, grow or add-function"),
    };
    let variants = [base, changed]
        .iter()
        .enumerate()
        .map(|(v, src)| {
            gen::compile(
                &dir_ok(&dir.join(format!("{change}-{v}")))?,
                &name,
                src,
                "-O1",
            )
        })
        .collect::<anyhow::Result<Vec<PathBuf>>>()?;
    let target = objs[edited + 1].clone();
    let put = |v: &Path| -> anyhow::Result<()> {
        let tmp = target.with_extension("o.tmp");
        std::fs::copy(v, &tmp)?;
        std::fs::rename(&tmp, &target)?;
        Ok(())
    };
    // hcr watch's allocator settings (for all three links alike).
    hcr_tools::watch::keep_freed_memory();
    let cfg = hcr_linker::LinkConfig::default();
    let (full_out, mapped_out, incr_out) = (
        dir.join("full.hcr"),
        dir.join("mapped.hcr"),
        dir.join("incr.hcr"),
    );
    let mut mapped_cache = hcr_linker::InputCache::inputs_only();
    let mut incr_cache = hcr_linker::InputCache::default();
    // The first link of each fills its cache.
    hcr_linker::link_cached(&cfg, &objs, &mapped_out, &mut mapped_cache)?;
    hcr_linker::link_cached(&cfg, &objs, &incr_out, &mut incr_cache)?;
    let (mut full, mut mapped, mut incr, mut placed) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut reused = hcr_linker::ReuseStats::default();
    let rounds = cli.runs.max(21);
    for round in 0..rounds {
        put(&variants[round % 2])?;
        let t = Instant::now();
        hcr_linker::link(&cfg, &objs, &full_out)?;
        full.push(t.elapsed());
        let t = Instant::now();
        hcr_linker::link_cached(&cfg, &objs, &mapped_out, &mut mapped_cache)?;
        mapped.push(t.elapsed());
        // When the image is in place, a running program reloads it (its
        // runtime sees the rename); the link then keeps its state.
        let in_place = std::sync::Arc::new(std::sync::Mutex::new(None));
        let note = std::sync::Arc::clone(&in_place);
        let t = Instant::now();
        let out = hcr_linker::link_cached_then(
            &cfg,
            &objs,
            &incr_out,
            &mut incr_cache,
            Box::new(move |_| {
                if let Ok(mut at) = note.lock() {
                    *at = Some(Instant::now());
                }
            }),
        )?;
        incr.push(t.elapsed());
        let at = in_place
            .lock()
            .ok()
            .and_then(|mut at| at.take())
            .context("the incremental relink never placed its image")?;
        placed.push(at - t);
        reused = out.reused;
        let (a, b) = (std::fs::read(&full_out)?, std::fs::read(&incr_out)?);
        if a != b {
            bail!("round {round}: the incremental image differs from the full link's");
        }
    }
    let (full, mapped, incr, placed) = (median(full), median(mapped), median(incr), median(placed));
    println!(
        "## relink: {modules} modules × {functions} functions + {globals} globals, one module's object changed ({change}; {rounds} rounds, in process)"
    );
    println!("| link | median | ratio to the incremental relink |");
    println!("|---|---|---|");
    println!(
        "| full link (`link`: maps every input) | {} | {} |",
        ms(full),
        ratio(full, incr)
    );
    println!(
        "| inputs kept mapped, everything else redone (`InputCache::inputs_only`) | {} | {} |",
        ms(mapped),
        ratio(mapped, incr)
    );
    println!(
        "| incremental relink (`link_cached`) | {} | 1.00× |",
        ms(incr)
    );
    println!(
        "| the same relinks until the image is in place (a running program reloads from there; the link then keeps its state) | {} | {} |",
        ms(placed),
        ratio(placed, incr)
    );
    println!(
        "images byte-identical to the full link's in every round: yes; taken over in the last round: {} parses, {} relocation scans, {} applied segments, {} symbol tables of {modules} modules",
        reused.parsed, reused.scanned, reused.applied, reused.rendered
    );
    relink_processes(rounds, &objs, &dir, &variants, &put)
}

/// The same rounds as a build system runs them: one `hcr-link` process per
/// link, plain against `--incremental` (its server, started by a link
/// before the first round, ends 30 s after the last), with and without
/// linking ahead (`HCR_LINK_AHEAD=0`: another server), images compared
/// every round.
fn relink_processes(
    rounds: usize,
    objs: &[PathBuf],
    dir: &Path,
    variants: &[PathBuf],
    put: &dyn Fn(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let hcr_link = std::env::current_exe()?.with_file_name("hcr-link");
    let plain_out = dir.join("plain.hcr");
    let (ahead_out, served_out) = (dir.join("server.hcr"), dir.join("server-no-ahead.hcr"));
    // `None`: plain; `Some(ahead)`: `--incremental`, linking ahead or not.
    let run = |incremental: Option<bool>, out: &Path| -> anyhow::Result<Duration> {
        let mut c = Command::new(&hcr_link);
        if let Some(ahead) = incremental {
            c.arg("--incremental")
                .env("HCR_LINK_SERVER_IDLE", "30")
                .env("HCR_LINK_AHEAD", if ahead { "1" } else { "0" });
        }
        let t = Instant::now();
        let st = c.arg("-o").arg(out).args(objs).status()?;
        let d = t.elapsed();
        if !st.success() {
            bail!("{} failed", hcr_link.display());
        }
        Ok(d)
    };
    run(Some(true), &ahead_out)?;
    run(Some(false), &served_out)?;
    let (mut plain, mut ahead, mut served) = (Vec::new(), Vec::new(), Vec::new());
    let mut started = Vec::new();
    for round in 0..rounds {
        // The server linking ahead is asked right after the object
        // changes, as a build system asks after the compile.
        put(&variants[round % 2])?;
        ahead.push(run(Some(true), &ahead_out)?);
        served.push(run(Some(false), &served_out)?);
        plain.push(run(None, &plain_out)?);
        let t = Instant::now();
        let st = Command::new(&hcr_link)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .status()?;
        started.push(t.elapsed());
        if !st.success() {
            bail!("{} --version failed", hcr_link.display());
        }
        for out in [&ahead_out, &served_out] {
            if std::fs::read(&plain_out)? != std::fs::read(out)? {
                bail!(
                    "round {round}: the --incremental image {} differs from the plain hcr-link's",
                    out.display()
                );
            }
        }
    }
    let (plain, ahead, served) = (median(plain), median(ahead), median(served));
    println!("\n## the same rounds, one `hcr-link` process per link");
    println!("| link | median | ratio to `--incremental` |");
    println!("|---|---|---|");
    println!(
        "| `hcr-link` (a full link in a new process) | {} | {} |",
        ms(plain),
        ratio(plain, ahead)
    );
    println!(
        "| `hcr-link --incremental`, the server not linking ahead (`HCR_LINK_AHEAD=0`; it links when asked) | {} | {} |",
        ms(served),
        ratio(served, ahead)
    );
    println!(
        "| `hcr-link --incremental` (the server links ahead as the object changes; the process claims the image) | {} | 1.00× |",
        ms(ahead)
    );
    let started = median(started);
    println!(
        "| for scale: `hcr-link --version` (a process started and ended, nothing linked) | {} | {} |",
        ms(started),
        ratio(started, ahead)
    );
    println!("images byte-identical to the plain link's in every round: yes");
    Ok(())
}

fn install(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Two images of the same program: `a` and `b` differ in the modules listed.
fn two_images(dir: &Path, shape: Shape, changed: &[usize]) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let objs = objects_for(dir, shape)?;
    let cfg = hcr_linker::LinkConfig::default();
    let a = hcr_linker::link_bytes(&cfg, &objs)?.bytes;
    let vdir = dir.join("variant");
    std::fs::create_dir_all(&vdir)?;
    let mut objs_b = objs.clone();
    for &i in changed {
        // Same module name, different code: compile into the variant folder.
        let src = gen::module_source(shape, i, 1);
        objs_b[i + 1] = gen::compile(&vdir, &format!("m{i}"), &src, "-O2")?;
    }
    let b = hcr_linker::link_bytes(&cfg, &objs_b)?.bytes;
    Ok((a, b))
}

fn dlopen_time(so: &Path, runs: usize) -> anyhow::Result<Duration> {
    let c = CString::new(so.display().to_string())?;
    time_runs(runs, || {
        // SAFETY: dlopen/dlclose of a library built from the generated C
        // code, which has no constructors.
        unsafe {
            let h = libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            if h.is_null() {
                bail!("dlopen {} failed", so.display());
            }
            libc::dlclose(h);
        }
        Ok(())
    })
}

fn bench_load(cli: &Cli, modules: usize, functions: usize) -> anyhow::Result<()> {
    let shape = Shape {
        modules,
        functions,
        globals: 2,
    };
    let dir = cli.dir.join(format!("load-{modules}x{functions}"));
    let all: Vec<usize> = (0..modules).collect();
    let (a, b) = two_images(&dir, shape, &all)?;
    let objs: Vec<PathBuf> = std::iter::once(dir.join("main.o"))
        .chain((0..modules).map(|i| dir.join(format!("m{i}.o"))))
        .collect();
    let so = dir.join("libbench.so");
    tool("cc", &["-shared", "-o", &so.display().to_string()], &objs)?;
    let app = dir.join("app.hcr");
    install(&app, &a)?;
    // What was just written (the images, the shared object) reaches the
    // disk before the loads are timed, so that its write-back does not run
    // beside them.
    // SAFETY: `sync` has no preconditions.
    unsafe { libc::sync() };
    // First loads, each in a fresh process as a program gets it (this
    // process has linked two images: its heap is not a new program's).
    // Alternated with the same first load as a user gets it: `hcr run`
    // (its own allocator, its watch and preparing thread), timed by the
    // runtime; when an `hcr` binary lies beside this one.
    let hcr = std::env::current_exe()?.with_file_name("hcr");
    let hcr = hcr.exists().then_some(hcr);
    if hcr.is_none() {
        eprintln!("hcr-bench: no hcr beside hcr-bench: the first load under `hcr run` is not timed (`cargo build --release -p hcr-tools` builds it)");
    }
    let mut firsts = Vec::with_capacity(cli.runs);
    let mut runs = Vec::with_capacity(cli.runs);
    for _ in 0..cli.runs {
        firsts.push(first_load_in_new_process(&app)?);
        if let Some(hcr) = &hcr {
            runs.push(run_first_load(hcr, &app)?);
        }
    }
    let first = median(firsts);
    // The same first loads with their phases timed (`HCR_LOAD_PHASES`),
    // apart from the timed ones above.
    let mut phases: Vec<(String, Vec<f64>)> = Vec::new();
    for _ in 0..cli.runs {
        for (name, ms) in first_load_phases(&app)? {
            // (By name: a phase one load skipped leaves the others in line.)
            match phases.iter_mut().find(|(n, _)| *n == name) {
                Some((_, v)) => v.push(ms),
                None => phases.push((name, vec![ms])),
            }
        }
    }
    let t = Instant::now();
    let rt = hcr_runtime::Runtime::open_with(&app, &synchronous())?;
    let in_process = t.elapsed();
    let mut reloads = Vec::new();
    for i in 0..cli.runs {
        install(&app, if i % 2 == 0 { &b } else { &a })?;
        let t = Instant::now();
        let n = rt.reload()?;
        reloads.push(t.elapsed());
        if n != modules {
            bail!("expected {modules} modules reloaded, got {n}");
        }
    }
    let reload = median(reloads);
    let dl = dlopen_time(&so, cli.runs)?;
    println!("## load: {modules} modules × {functions} functions");
    println!("| what | median | ratio to dlopen |");
    println!("|---|---|---|");
    println!(
        "| dlopen + dlclose of the same code as one .so | {} | 1.00× |",
        ms(dl)
    );
    println!(
        "| hcr first load (open + all constructors; a new process per sample) | {} | {} |",
        ms(first),
        ratio(first, dl)
    );
    if !runs.is_empty() {
        let run = median(runs);
        println!(
            "| hcr first load under `hcr run` (its `HCR_LOAD_PHASES` total; a new process per sample) | {} | {} |",
            ms(run),
            ratio(run, dl)
        );
    }
    println!(
        "| hcr first load in this process, after two links (one sample) | {} | {} |",
        ms(in_process),
        ratio(in_process, dl)
    );
    println!(
        "| hcr reload, every module changed | {} | {} |",
        ms(reload),
        ratio(reload, dl)
    );
    std::mem::forget(rt);
    println!();
    println!(
        "## first load, by phase (`HCR_LOAD_PHASES=1`, medians of {} loads)",
        cli.runs
    );
    println!("| phase | median |");
    println!("|---|---|");
    for (name, mut v) in phases {
        v.sort_by(f64::total_cmp);
        println!("| {name} | {:.3} ms |", v[v.len() / 2]);
    }
    Ok(())
}

/// Runs `hcr-bench first-load IMAGE` in a new process, its phases timed
/// when `phases` is set (`HCR_LOAD_PHASES`); its output, once it
/// succeeded.
fn first_load_process(image: &Path, phases: bool) -> anyhow::Result<std::process::Output> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("first-load")
        .arg(image)
        .env_remove("HCR_LOAD_PHASES");
    if phases {
        cmd.env("HCR_LOAD_PHASES", "1");
    }
    let out = cmd.output().context("running hcr-bench first-load")?;
    if !out.status.success() {
        bail!(
            "hcr-bench first-load failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// Runs `hcr-bench first-load IMAGE` with its phases timed and returns
/// them as the runtime reports them (`HCR_LOAD_PHASES`).
fn first_load_phases(image: &Path) -> anyhow::Result<Vec<(String, f64)>> {
    let out = first_load_process(image, true)?;
    let err = String::from_utf8_lossy(&out.stderr);
    let (_, inner) = load_line(&err).context("hcr-bench first-load printed no phases")?;
    inner
        .split(", ")
        .map(|p| {
            let (name, ms) = p.rsplit_once(' ').context("malformed phase")?;
            Ok((name.to_string(), ms.parse::<f64>().context("phase time")?))
        })
        .collect()
}

/// The first-load line `HCR_LOAD_PHASES=1` has the runtime print to
/// `stderr`, `hcr: first load of PATH: TOTAL ms (PHASE MS, ...)`: its
/// total in milliseconds and its list of phases (`PHASE MS, ...`).
fn load_line(stderr: &str) -> Option<(f64, &str)> {
    let rest = stderr
        .lines()
        .find_map(|l| l.strip_prefix("hcr: first load of "))?;
    let (head, phases) = rest.rsplit_once(" ms (")?;
    let total = head.rsplit_once(": ")?.1.parse().ok()?;
    Some((total, phases.strip_suffix(')')?))
}

/// Runs `hcr run IMAGE` with `HCR_LOAD_PHASES=1` and returns the first
/// load's total from the line the runtime prints.
fn run_first_load(hcr: &Path, image: &Path) -> anyhow::Result<Duration> {
    let out = Command::new(hcr)
        .arg("run")
        .arg(image)
        .env("HCR_LOAD_PHASES", "1")
        .stdout(std::process::Stdio::null())
        .output()
        .context("running hcr run")?;
    if !out.status.success() {
        bail!(
            "hcr run {} failed: {}",
            image.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let err = String::from_utf8_lossy(&out.stderr);
    load_line(&err)
        .and_then(|(ms, _)| Duration::try_from_secs_f64(ms / 1e3).ok())
        .context("hcr run printed no first-load line")
}

/// Runs `hcr-bench first-load IMAGE` and returns the time it reports.
fn first_load_in_new_process(image: &Path) -> anyhow::Result<Duration> {
    let out = first_load_process(image, false)?;
    let ns: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("hcr-bench first-load printed no time")?;
    Ok(Duration::from_nanos(ns))
}

/// `hcr-bench first-load IMAGE`: one timed `Runtime::open`.
fn first_load(image: &Path) -> anyhow::Result<()> {
    let t = Instant::now();
    let rt = hcr_runtime::Runtime::open(image)?;
    let d = t.elapsed();
    println!("{}", d.as_nanos());
    std::mem::forget(rt);
    Ok(())
}

/// Runtime options under which the program's own reload call prepares
/// every reload (nothing is prepared ahead): the whole work is timed.
fn synchronous() -> hcr_runtime::Options {
    hcr_runtime::Options {
        prepare_ahead: false,
        ..hcr_runtime::Options::default()
    }
}

fn bench_reload(
    cli: &Cli,
    (modules, functions, globals): (usize, usize, usize),
    pause_ms: u64,
    prewritten: bool,
) -> anyhow::Result<()> {
    let shape = Shape {
        modules,
        functions,
        globals,
    };
    let dir = cli
        .dir
        .join(format!("reload-{modules}x{functions}x{globals}"));
    let (a, b) = two_images(&dir, shape, &[modules / 2])?;
    let app = dir.join("app.hcr");
    let (pa, pb) = (dir.join("a.hcr"), dir.join("b.hcr"));
    if prewritten {
        install(&pa, &a)?;
        install(&pb, &b)?;
    }
    let put = |i: usize| -> anyhow::Result<()> {
        if prewritten {
            let link = app.with_extension("link");
            let _ = std::fs::remove_file(&link);
            std::fs::hard_link(if i.is_multiple_of(2) { &pb } else { &pa }, &link)?;
            std::fs::rename(&link, &app)?;
            Ok(())
        } else {
            install(&app, if i.is_multiple_of(2) { &b } else { &a })
        }
    };
    let runs = cli.runs.max(21);
    // The whole reload in the program's call: nothing prepared ahead.
    install(&app, &a)?;
    let rt = hcr_runtime::Runtime::open_with(&app, &synchronous())?;
    let mut v = Vec::new();
    for i in 0..runs {
        put(i)?;
        std::thread::sleep(Duration::from_millis(pause_ms));
        let t = Instant::now();
        let n = rt.reload()?;
        v.push(t.elapsed());
        if n != 1 {
            bail!("expected one module reloaded, got {n}");
        }
    }
    drop(rt);
    // Prepared ahead by the watcher thread: the program's call commits.
    // Timed once the reload is ready, as for a program that reloads a
    // little after the image changed (a frame later, at its next poll).
    install(&app, &a)?;
    let rt = hcr_runtime::Runtime::open(&app)?;
    let (mut pauses, mut readies) = (Vec::new(), Vec::new());
    for i in 0..runs {
        std::thread::sleep(Duration::from_millis(pause_ms));
        let t = Instant::now();
        put(i)?;
        let written = t.elapsed();
        while !rt.stats().reload_ready {
            if t.elapsed() > Duration::from_secs(10) {
                bail!("no reload was prepared ahead within 10 s");
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        readies.push(t.elapsed().saturating_sub(written));
        let t = Instant::now();
        let n = rt.reload()?;
        pauses.push(t.elapsed());
        if n != 1 || !rt.last_reload_work().prepared_ahead {
            bail!("expected one module reloaded from the prepared reload, got {n}");
        }
    }
    let first = v[0];
    let reload = median(v);
    let paused = match pause_ms {
        0 => String::new(),
        p => format!(", {p} ms between reloads"),
    } + if prewritten {
        ", images written beforehand"
    } else {
        ""
    };
    println!("## reload: {modules} modules × {functions} functions + {globals} globals, one module changed{paused}");
    println!("| what | median | anchor |");
    println!("|---|---|---|");
    println!("| hcr reload (stat, map, verify, relocate, retarget, handlers) | {} | nimhcr 1.40 ms (tmpfs, one changed of 237) |", ms(reload));
    println!(
        "| the first of these reloads, after the load (one sample) | {} | — |",
        ms(first)
    );
    println!(
        "| hcr reload prepared ahead: the program's call (check, retarget, handlers) | {} | — |",
        ms(median(pauses))
    );
    println!(
        "| image in place → reload prepared by the watcher thread (polled every 50 µs) | {} | — |",
        ms(median(readies))
    );
    std::mem::forget(rt);
    Ok(())
}

fn bench_changed(cli: &Cli) -> anyhow::Result<()> {
    let shape = Shape {
        modules: 20,
        functions: 5,
        globals: 1,
    };
    let dir = cli.dir.join("changed");
    let objs = objects_for(&dir, shape)?;
    let app = dir.join("app.hcr");
    hcr_linker::link(&hcr_linker::LinkConfig::default(), &objs, &app)?;
    let rt = hcr_runtime::Runtime::open(&app)?;
    let n = 100_000u32;
    let per = time_runs(cli.runs, || {
        for _ in 0..n {
            if rt.has_any_module_changed() {
                bail!("image changed unexpectedly");
            }
        }
        Ok(())
    })? / n;
    let stat = time_runs(cli.runs, || {
        for _ in 0..n {
            std::fs::metadata(&app)?;
        }
        Ok(())
    })? / n;
    println!("## hcr_has_any_module_changed(), nothing changed");
    println!("| what | median per call |");
    println!("|---|---|");
    println!(
        "| hcr_has_any_module_changed() | {:.1} ns |",
        per.as_secs_f64() * 1e9
    );
    println!(
        "| one stat() of the image (what it cost before the image watcher) | {:.1} ns |",
        stat.as_secs_f64() * 1e9
    );
    std::mem::forget(rt);
    Ok(())
}

const CALLER: &str = "int callee(int);\nlong call_loop(long n) { long s = 0; for (long i = 0; i < n; i++) s += callee((int)i); return s; }\n";
const CALLEE: &str = "__attribute__((noinline)) int callee(int x) { return x + 1; }\n";

fn bench_calls(cli: &Cli, iterations: i64) -> anyhow::Result<()> {
    let dir = cli.dir.join("calls");
    let caller = gen::compile(&dir_ok(&dir)?, "caller", CALLER, "-O2")?;
    let callee = gen::compile(&dir, "callee", CALLEE, "-O2")?;
    let app = dir.join("calls.hcr");
    hcr_linker::link(
        &hcr_linker::LinkConfig::default(),
        &[caller.clone(), callee.clone()],
        &app,
    )?;
    // The baseline: the same objects in one shared object, calls bound
    // directly (-Bsymbolic turns the PLT call into a direct one).
    let so = dir.join("libcalls.so");
    tool(
        "cc",
        &["-shared", "-Wl,-Bsymbolic", "-o", &so.display().to_string()],
        &[caller, callee],
    )?;
    let c = CString::new(so.display().to_string())?;
    // SAFETY: loading our own generated library; `call_loop` has this
    // signature.
    let direct: extern "C" fn(i64) -> i64 = unsafe {
        let h = libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if h.is_null() {
            bail!("dlopen failed");
        }
        let p = libc::dlsym(h, c"call_loop".as_ptr());
        if p.is_null() {
            bail!("no call_loop");
        }
        std::mem::transmute::<*mut libc::c_void, extern "C" fn(i64) -> i64>(p)
    };
    let rt = hcr_runtime::Runtime::open(&app)?;
    // SAFETY: matches the C signature.
    let via: extern "C" fn(i64) -> i64 =
        unsafe { rt.get_proc("caller", "call_loop") }.context("call_loop")?;
    let d = time_runs(cli.runs, || {
        std::hint::black_box(direct(std::hint::black_box(iterations)));
        Ok(())
    })?;
    let h = time_runs(cli.runs, || {
        std::hint::black_box(via(std::hint::black_box(iterations)));
        Ok(())
    })?;
    // After 100 reloads the path is the same (one slot, no chains).
    let callee_v2 =
        "__attribute__((noinline)) int callee(int x) { return x + 1 + 0 * __LINE__; }\n";
    let mut after = Duration::ZERO;
    for i in 0..100 {
        let src = if i % 2 == 0 { callee_v2 } else { CALLEE };
        let o = gen::compile(&dir, "callee", src, "-O2")?;
        hcr_linker::link(
            &hcr_linker::LinkConfig::default(),
            &[dir.join("caller.o"), o],
            &app,
        )?;
        rt.reload()?;
    }
    after += time_runs(cli.runs, || {
        std::hint::black_box(via(std::hint::black_box(iterations)));
        Ok(())
    })?;
    let per = |t: Duration| t.as_secs_f64() * 1e9 / iterations as f64;
    println!("## cross-module call, tiny noinline callee, {iterations} calls");
    println!("| what | ns per call | ratio to direct |");
    println!("|---|---|---|");
    println!(
        "| direct call (shared object, -Bsymbolic) | {:.2} | 1.00× |",
        per(d)
    );
    println!(
        "| through the permanent address (trampoline) | {:.2} | {} |",
        per(h),
        ratio(h, d)
    );
    println!(
        "| same, after 100 reloads | {:.2} | {} |",
        per(after),
        ratio(after, d)
    );
    std::mem::forget(rt);
    Ok(())
}

const TLS_LOOP: &str = r#"
__thread long tls_counter = 1;
static __attribute__((noinline)) void bump(long i) { tls_counter += i & 3; }
long tls_loop(long n) { for (long i = 0; i < n; i++) bump(i); return tls_counter; }
#ifdef KEEP
long tls_loop_desc(long n);
long (*keep_desc)(long) = tls_loop_desc; /* the root imports the other module */
#endif
"#;

const TLS_EXE_MAIN: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
long tls_loop(long n);
int main(int argc, char **argv) {
    long n = atol(argv[1]), runs = atol(argv[2]);
    double best[64];
    for (long r = 0; r < runs && r < 64; r++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        volatile long sink = tls_loop(n);
        (void)sink;
        clock_gettime(CLOCK_MONOTONIC, &b);
        best[r] = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
    }
    for (long i = 0; i < runs && i < 64; i++)
        for (long j = i + 1; j < runs && j < 64; j++)
            if (best[j] < best[i]) { double t = best[i]; best[i] = best[j]; best[j] = t; }
    printf("%f\n", best[(runs < 64 ? runs : 64) / 2]);
    return 0;
}
"#;

fn bench_tls(cli: &Cli, iterations: i64) -> anyhow::Result<()> {
    let dir = dir_ok(&cli.dir.join("tls"))?;
    let src = dir.join("tls.c");
    std::fs::write(&src, TLS_LOOP)?;
    let main_src = dir.join("main.c");
    std::fs::write(&main_src, TLS_EXE_MAIN)?;
    let s = |p: &Path| p.display().to_string();
    let flags = ["-O2", "-fPIC", "-ffunction-sections", "-fdata-sections"];
    let (o_gd, o_root, o_desc) = (dir.join("gd.o"), dir.join("root.o"), dir.join("desc.o"));
    tool(
        "cc",
        &[&flags[..], &["-c", "-o", &s(&o_gd)]].concat(),
        std::slice::from_ref(&src),
    )?;
    tool(
        "cc",
        &[&flags[..], &["-DKEEP", "-c", "-o", &s(&o_root)]].concat(),
        std::slice::from_ref(&src),
    )?;
    let desc = [
        "-mtls-dialect=gnu2",
        "-Dtls_loop=tls_loop_desc",
        "-Dtls_counter=tls_counter_desc",
    ];
    tool(
        "cc",
        &[&flags[..], &desc[..], &["-c", "-o", &s(&o_desc)]].concat(),
        std::slice::from_ref(&src),
    )?;
    let so = dir.join("libtls.so");
    tool(
        "cc",
        &["-shared", "-o", &s(&so)],
        std::slice::from_ref(&o_gd),
    )?;
    let exe = dir.join("tls-exe");
    tool("cc", &["-O2", "-o", &s(&exe)], &[main_src, src])?;
    let c = CString::new(s(&so))?;
    // SAFETY: loading our own generated library; `tls_loop` has this
    // signature.
    let native: extern "C" fn(i64) -> i64 = unsafe {
        let h = libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if h.is_null() {
            bail!("dlopen failed");
        }
        let p = libc::dlsym(h, c"tls_loop".as_ptr());
        if p.is_null() {
            bail!("no tls_loop");
        }
        std::mem::transmute::<*mut libc::c_void, extern "C" fn(i64) -> i64>(p)
    };
    let time = |f: extern "C" fn(i64) -> i64| {
        time_runs(cli.runs, || {
            std::hint::black_box(f(std::hint::black_box(iterations)));
            Ok(())
        })
    };
    let t_so = time(native)?;
    let app = dir.join("tls.hcr");
    hcr_linker::link(&hcr_linker::LinkConfig::default(), &[o_root, o_desc], &app)?;
    let rt = hcr_runtime::Runtime::open(&app)?;
    let mut hcr = Vec::new();
    for (what, module, name) in [
        ("general dynamic", "root", "tls_loop"),
        ("TLS descriptors", "desc", "tls_loop_desc"),
    ] {
        // SAFETY: matches the C signature.
        let f: extern "C" fn(i64) -> i64 =
            unsafe { rt.get_proc(module, name) }.context("tls_loop")?;
        hcr.push((what, time(f)?));
    }
    std::mem::forget(rt);
    let out = Command::new(&exe)
        .arg(iterations.to_string())
        .arg(cli.runs.to_string())
        .output()?;
    let exe_ns: f64 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
    let t_exe = Duration::from_nanos(exe_ns as u64);
    let per = |t: Duration| t.as_secs_f64() * 1e9 / iterations as f64;
    println!("## __thread read-modify-write in a noinline function, {iterations} iterations");
    println!("| what | ns per iteration | ratio to the shared object |");
    println!("|---|---|---|");
    println!(
        "| native -fPIC shared object (`__tls_get_addr`) | {:.2} | 1.00× |",
        per(t_so)
    );
    for (what, t) in &hcr {
        println!("| hcr, {what} | {:.2} | {} |", per(*t), ratio(*t, t_so));
    }
    println!(
        "| native executable (local exec) | {:.2} | {} |",
        per(t_exe),
        ratio(t_exe, t_so)
    );
    Ok(())
}

/// A call-heavy program over three modules: mutual recursion across
/// modules, calls through function pointers, a callback from libc.
const WHOLE_MAIN: &str = r#"
#include <stdio.h>
#include <stdlib.h>
long fib_a(int n);
long walk(long n);
int cmp_ints(const void *a, const void *b);
int main(void) {
    long s = fib_a(32) + walk(30000000);
    static int v[200000];
    for (int r = 0; r < 20; r++) {
        for (int i = 0; i < 200000; i++) v[i] = (i * 7919 + r) % 100003;
        qsort(v, 200000, sizeof v[0], cmp_ints);
        s += v[r];
    }
    printf("%ld\n", s);
    return 0;
}
"#;
const WHOLE_A: &str = r#"
long fib_b(int n);
long fib_a(int n) { return n < 2 ? n : fib_b(n - 1) + fib_b(n - 2); }
static long step(long x) { return x * 3 + 1; }
long (*stepper)(long) = step;
long walk(long n) { long s = 0; for (long i = 0; i < n; i++) s += stepper(i) & 7; return s; }
"#;
const WHOLE_B: &str = r#"
long fib_a(int n);
long fib_b(int n) { return n < 2 ? n : fib_a(n - 1) + fib_a(n - 2); }
int cmp_ints(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }
"#;

fn bench_whole(cli: &Cli) -> anyhow::Result<()> {
    let dir = dir_ok(&cli.dir.join("whole"))?;
    let mut objs = Vec::new();
    for (n, src) in [("main", WHOLE_MAIN), ("a", WHOLE_A), ("b", WHOLE_B)] {
        objs.push(gen::compile(&dir, n, src, "-O2")?);
    }
    let img = dir.join("whole.hcr");
    hcr_linker::link(&hcr_linker::LinkConfig::default(), &objs, &img)?;
    // The baseline: a normal -O2 executable (PIE, Debian's default) of the
    // same sources.
    let exe = dir.join("whole-native");
    let srcs: Vec<PathBuf> = ["main", "a", "b"]
        .iter()
        .map(|n| dir.join(format!("{n}.c")))
        .collect();
    tool("cc", &["-O2", "-o", &exe.display().to_string()], &srcs)?;
    let hcr = std::env::current_exe()?.with_file_name("hcr");
    let run = |cmd: &mut Command| -> anyhow::Result<String> {
        let o = cmd.output()?;
        if !o.status.success() {
            bail!("{:?} failed", cmd);
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let want = run(&mut Command::new(&exe))?;
    let got = run(Command::new(&hcr).arg("run").arg(&img))?;
    if want != got {
        bail!("outputs differ: {want:?} vs {got:?}");
    }
    let native = time_runs(cli.runs, || run(&mut Command::new(&exe)).map(|_| ()))?;
    let image = time_runs(cli.runs, || {
        run(Command::new(&hcr).arg("run").arg(&img)).map(|_| ())
    })?;
    println!(
        "## whole program: call-heavy (cross-module recursion, function pointers, qsort callbacks)"
    );
    println!("| build | median wall time | ratio |");
    println!("|---|---|---|");
    println!("| cc -O2 executable | {} | 1.00× |", ms(native));
    println!(
        "| hcr run of the -fPIC -ffunction-sections -fdata-sections -O2 image | {} | {} |",
        ms(image),
        ratio(image, native)
    );
    Ok(())
}

fn bench_alloc(cli: &Cli) -> anyhow::Result<()> {
    let dir = dir_ok(&cli.dir.join("alloc"))?;
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/bench/alloc.cpp");
    let obj = dir.join("alloc.o");
    tool(
        "g++",
        &[
            "-c",
            "-fPIC",
            "-ffunction-sections",
            "-fdata-sections",
            "-O2",
            "-o",
            &obj.display().to_string(),
        ],
        std::slice::from_ref(&src),
    )?;
    let img = dir.join("alloc.hcr");
    hcr_linker::link(
        &hcr_linker::LinkConfig::default(),
        std::slice::from_ref(&obj),
        &img,
    )?;
    let exe = dir.join("alloc-native");
    tool(
        "g++",
        &["-O2", "-o", &exe.display().to_string()],
        std::slice::from_ref(&src),
    )?;
    let hcr = std::env::current_exe()?.with_file_name("hcr");
    let run = |cmd: &mut Command| -> anyhow::Result<(String, Duration)> {
        let t = Instant::now();
        let o = cmd.output()?;
        let d = t.elapsed();
        if !o.status.success() {
            bail!("{:?} failed", cmd);
        }
        Ok((String::from_utf8_lossy(&o.stdout).into_owned(), d))
    };
    let (want, _) = run(&mut Command::new(&exe))?;
    let (got, _) = run(Command::new(&hcr).arg("run").arg(&img))?;
    if want != got {
        bail!("outputs differ: {want:?} vs {got:?}");
    }
    // Interleaved, so that a slow spell of the machine hits both.
    let (mut native, mut image) = (Vec::new(), Vec::new());
    for _ in 0..cli.runs {
        native.push(run(&mut Command::new(&exe))?.1);
        image.push(run(Command::new(&hcr).arg("run").arg(&img))?.1);
    }
    let (native, image) = (median(native), median(image));
    println!("## whole program: allocation-heavy C++ (testdata/bench/alloc.cpp)");
    println!("| build | median wall time | ratio |");
    println!("|---|---|---|");
    println!("| g++ -O2 executable | {} | 1.00× |", ms(native));
    println!(
        "| hcr run of the -fPIC -ffunction-sections -fdata-sections -O2 image | {} | {} |",
        ms(image),
        ratio(image, native)
    );
    Ok(())
}

fn bench_dlopen_baseline(cli: &Cli, modules: usize, functions: usize) -> anyhow::Result<()> {
    let shape = Shape {
        modules,
        functions,
        globals: 2,
    };
    let dir = cli.dir.join(format!("dlopen-{modules}x{functions}"));
    objects_for(&dir, shape)?;
    let so = |i: usize| dir.join(format!("m{i}.so"));
    for i in 0..modules {
        if !so(i).exists() {
            tool(
                "cc",
                &["-shared", "-o", &so(i).display().to_string()],
                &[dir.join(format!("m{i}.o"))],
            )?;
        }
    }
    let open = |p: &Path| -> anyhow::Result<*mut libc::c_void> {
        let c = CString::new(p.display().to_string())?;
        // SAFETY: our generated library; lazy binding resolves the calls into
        // the other modules' libraries, loaded RTLD_GLOBAL.
        let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_LAZY | libc::RTLD_GLOBAL) };
        if h.is_null() {
            bail!("dlopen {} failed", p.display());
        }
        Ok(h)
    };
    let mut handles: Vec<*mut libc::c_void> = (0..modules)
        .map(|i| open(&so(i)))
        .collect::<anyhow::Result<_>>()?;
    let mut table = vec![std::ptr::null_mut::<libc::c_void>(); modules * functions];
    let names: Vec<Vec<CString>> = (0..modules)
        .map(|i| {
            (0..functions)
                .map(|k| CString::new(format!("m{i}_f{k}")).unwrap_or_default())
                .collect()
        })
        .collect();
    let changed = modules / 2;
    let mut round = 0u32;
    let t = time_runs(cli.runs.max(21), || {
        // nimhcr's change check: the timestamp of every module's library.
        for i in 0..modules {
            std::fs::metadata(so(i))?;
        }
        // Copy the changed library and load the copy (nimhcr loads copies
        // so the build can overwrite the original).
        round += 1;
        let copy = dir.join(format!("m{changed}.copy{}.so", round % 2));
        std::fs::copy(so(changed), &copy)?;
        let h = open(&copy)?;
        for (k, name) in names[changed].iter().enumerate() {
            // SAFETY: dlsym on a live handle with a NUL-terminated name.
            table[changed * functions + k] = unsafe { libc::dlsym(h, name.as_ptr()) };
        }
        let old = std::mem::replace(&mut handles[changed], h);
        // SAFETY: the old copy's functions are no longer in the table.
        unsafe { libc::dlclose(old) };
        Ok(())
    })?;
    std::hint::black_box(&table);
    println!("## dlopen-per-module reload baseline (nimhcr's mechanism): {modules} modules × {functions} functions, one changed");
    println!("| what | median |");
    println!("|---|---|");
    println!(
        "| stat {modules} libraries + copy + dlopen + {functions} dlsym + dlclose | {} |",
        ms(t)
    );
    Ok(())
}

const LIVE_MAIN: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
extern int step(int);
int main(int argc, char **argv) {
    long long n = atoll(argv[1]);
    char line[64];
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready\n");
    while (fgets(line, sizeof line, stdin)) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        int x = 0;
        for (long long i = 0; i < n; i++) x = step(x);
        clock_gettime(CLOCK_MONOTONIC, &b);
        printf("%lld %d\n", (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec), x);
    }
    return 0;
}
"#;

/// A module with `n` globals of mixed types (ints, doubles, a struct) and
/// the callee of the call-heavy loop.
fn live_lib(n: usize) -> String {
    let mut s = String::from(
        "struct rec { int a; double b; short c[4]; };\n\
         __attribute__((noinline)) int step(int x) { return x * 1103515245 + 12345; }\n",
    );
    for i in 0..n {
        match i % 3 {
            0 => s.push_str(&format!("int g{i} = {i};\n")),
            1 => s.push_str(&format!("double g{i} = {i}.5;\n")),
            _ => s.push_str(&format!(
                "struct rec g{i} = {{{i}, 0.25, {{1, 2, 3, 4}}}};\n"
            )),
        }
    }
    s
}

fn compile_g(dir: &Path, name: &str, src: &str) -> anyhow::Result<PathBuf> {
    let c = dir.join(format!("{name}.c"));
    let o = dir.join(format!("{name}.o"));
    if std::fs::read_to_string(&c).is_ok_and(|old| old == src) && o.exists() {
        return Ok(o);
    }
    std::fs::write(&c, src)?;
    let st = Command::new("cc")
        .args([
            "-c",
            "-fPIC",
            "-ffunction-sections",
            "-fdata-sections",
            "-O2",
            "-g",
        ])
        .arg(&c)
        .arg("-o")
        .arg(&o)
        .status()
        .context("run cc")?;
    if !st.success() {
        bail!("cc failed on {}", c.display());
    }
    Ok(o)
}

/// A program under `hcr run --control` and an `hcr ui` on it.
struct LiveProgram {
    program: std::process::Child,
    ui: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
    port: u16,
    token: String,
    runtime_dir: PathBuf,
}

impl LiveProgram {
    fn start(dir: &Path, img: &Path, iterations: i64) -> anyhow::Result<LiveProgram> {
        use std::io::BufRead as _;
        use std::os::unix::fs::PermissionsExt as _;
        let hcr = std::env::current_exe()?.with_file_name("hcr");
        let runtime_dir = dir.join("run");
        std::fs::create_dir_all(&runtime_dir)?;
        std::fs::set_permissions(&runtime_dir, std::fs::Permissions::from_mode(0o700))?;
        let mut program = Command::new(&hcr)
            .env("XDG_RUNTIME_DIR", &runtime_dir)
            .args(["run", "--control"])
            .arg(img)
            .arg("--")
            .arg(iterations.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let mut out = std::io::BufReader::new(program.stdout.take().context("stdout")?);
        let mut l = String::new();
        out.read_line(&mut l)?;
        if l.trim() != "ready" {
            bail!("the program said {l:?}");
        }
        let mut ui = Command::new(&hcr)
            .env("XDG_RUNTIME_DIR", &runtime_dir)
            .args(["ui", &program.id().to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let mut url = String::new();
        std::io::BufReader::new(ui.stdout.take().context("stdout")?).read_line(&mut url)?;
        let rest = url
            .trim()
            .strip_prefix("http://127.0.0.1:")
            .context("hcr ui's URL")?;
        let (port, token) = rest.split_once("/?token=").context("hcr ui's URL")?;
        Ok(LiveProgram {
            port: port.parse()?,
            token: token.to_string(),
            program,
            ui,
            out,
            runtime_dir,
        })
    }

    /// One timed round of the program's loop.
    fn round(&mut self) -> anyhow::Result<Duration> {
        use std::io::{BufRead as _, Write as _};
        let stdin = self.program.stdin.as_mut().context("stdin")?;
        stdin.write_all(b"go\n")?;
        stdin.flush()?;
        let mut l = String::new();
        self.out.read_line(&mut l)?;
        let ns: u64 = l.split_whitespace().next().unwrap_or("").parse()?;
        Ok(Duration::from_nanos(ns))
    }

    /// `GET path` on the page's server: status and body length.
    fn get(&self, path: &str) -> anyhow::Result<(u16, usize)> {
        http_get(self.port, &self.token, path)
    }
}

/// `GET path?token=TOKEN` on 127.0.0.1:`port`: status and body length.
fn http_get(port: u16, token: &str, path: &str) -> anyhow::Result<(u16, usize)> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    write!(
        s,
        "GET {path}?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut v = Vec::new();
    s.read_to_end(&mut v)?;
    let text = String::from_utf8_lossy(&v);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or(0, |b| b.1.len());
    Ok((code, body))
}

impl Drop for LiveProgram {
    fn drop(&mut self) {
        let _ = self.ui.kill();
        let _ = self.ui.wait();
        drop(self.program.stdin.take());
        let _ = self.program.wait();
    }
}

fn bench_live(cli: &Cli, iterations: i64, globals: usize) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let dir = dir_ok(&cli.dir.join("live"))?;
    let main = compile_g(&dir, "main", LIVE_MAIN)?;
    // (a) 99 globals, like a small program's.
    let small = compile_g(&dir, "small", &live_lib(99))?;
    let img = dir.join("small.hcr");
    hcr_linker::link(
        &hcr_linker::LinkConfig::default(),
        &[main.clone(), small],
        &img,
    )?;
    let mut p = LiveProgram::start(&dir, &img, iterations)?;
    let (mut none, mut pushed, mut polled) = (Vec::new(), Vec::new(), Vec::new());
    let (mut messages, mut requests) = (0usize, 0usize);
    for _ in 0..cli.runs {
        none.push(p.round()?);
        // A page's WebSocket: the server reads the state 10×/s and sends
        // what changed.
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicUsize::new(0));
        let stream = std::net::TcpStream::connect(("127.0.0.1", p.port))?;
        stream.set_read_timeout(Some(Duration::from_millis(200)))?;
        let (mut ws, _) = tungstenite::client::client(
            format!("ws://127.0.0.1:{}/push?token={}", p.port, p.token).as_str(),
            stream,
        )
        .map_err(|e| anyhow::anyhow!("websocket: {e}"))?;
        let (s2, c2) = (stop.clone(), count.clone());
        let reader = std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                if ws.read().is_ok() {
                    c2.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        std::thread::sleep(Duration::from_millis(150));
        pushed.push(p.round()?);
        stop.store(true, Ordering::Relaxed);
        let _ = reader.join();
        messages += count.load(Ordering::Relaxed);
        // A client polling the whole state 10×/s.
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicUsize::new(0));
        let (s2, c2, port, token) = (stop.clone(), count.clone(), p.port, p.token.clone());
        let poller = std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                if http_get(port, &token, "/state").is_ok_and(|r| r.0 == 200) {
                    c2.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        polled.push(p.round()?);
        stop.store(true, Ordering::Relaxed);
        let _ = poller.join();
        requests += count.load(Ordering::Relaxed);
    }
    drop(p);
    let (none, pushed, polled) = (median(none), median(pushed), median(polled));
    println!(
        "## live state: call-heavy loop ({iterations} cross-module calls), rounds interleaved"
    );
    println!("| client | median loop time | ratio |");
    println!("|---|---|---|");
    println!("| none | {} | 1.00× |", ms(none));
    println!(
        "| hcr ui page on its WebSocket ({messages} messages in all) | {} | {} |",
        ms(pushed),
        ratio(pushed, none)
    );
    println!(
        "| GET /state every 100 ms ({requests} requests in all) | {} | {} |",
        ms(polled),
        ratio(polled, none)
    );

    // (b) The refresh cost with many globals.
    let big = compile_g(&dir, &format!("big{globals}"), &live_lib(globals))?;
    let img = dir.join("big.hcr");
    hcr_linker::link(&hcr_linker::LinkConfig::default(), &[main, big], &img)?;
    let p = LiveProgram::start(&dir, &img, 1)?;
    let pid = p.program.id();
    std::env::set_var("XDG_RUNTIME_DIR", &p.runtime_dir);
    let mut c = hcr_tools::live::Client::connect(pid)?;
    let samples = cli.runs.max(21);
    let mut lines = 0;
    let socket = time_runs(samples, || {
        lines = c.request("globals")?.len();
        Ok(())
    })?;
    let t = Instant::now();
    let types = c.types()?;
    let types_time = t.elapsed();
    let typed = types.as_ref().map_or(0, |t| t.len());
    // A page's first refresh formats every global (types read as well).
    let cold = time_runs(samples.min(7), || {
        let mut cache = hcr_tools::ui::StateCache::default();
        hcr_tools::ui::snapshot(&mut c, &mut cache).map(|_| ())
    })?;
    let mut cache = hcr_tools::ui::StateCache::default();
    let first = hcr_tools::ui::snapshot(&mut c, &mut cache)?;
    let full_len = first.full(false).len();
    let snap = time_runs(samples, || {
        hcr_tools::ui::snapshot(&mut c, &mut cache).map(|_| ())
    })?;
    let mut delta_len = 0;
    let delta = time_runs(samples, || {
        let s = hcr_tools::ui::snapshot(&mut c, &mut cache)?;
        delta_len = s.delta(&first).map_or(0, |d| d.len());
        Ok(())
    })?;
    let mut state_len = 0;
    let http = time_runs(samples, || {
        let (code, n) = p.get("/state")?;
        if code != 200 {
            bail!("GET /state: {code}");
        }
        state_len = n;
        Ok(())
    })?;
    println!();
    println!("## live state: one refresh with {globals} globals ({lines} on the socket, {typed} typed from DWARF)");
    println!("| step | median |");
    println!("|---|---|");
    println!(
        "| socket `globals` request (values only) | {} |",
        ms(socket)
    );
    println!(
        "| reading the DWARF types (once per generation) | {} (one sample) |",
        ms(types_time)
    );
    println!(
        "| first refresh of a page: types read, every global formatted to JSON | {} |",
        ms(cold)
    );
    println!(
        "| later refresh: info + globals, JSON kept for globals whose bytes did not change | {} |",
        ms(snap)
    );
    println!(
        "| snapshot + delta, nothing changed (what the WebSocket does 10×/s) | {} ({delta_len} bytes sent) |",
        ms(delta)
    );
    println!(
        "| GET /state over HTTP (full state, {full_len} bytes of JSON; body {state_len}) | {} |",
        ms(http)
    );
    Ok(())
}

fn dir_ok(d: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(d)?;
    Ok(d.to_path_buf())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.what {
        What::Link {
            modules,
            functions,
            tiny,
            leaf,
        } => bench_link(&cli, modules, functions, tiny, leaf),
        What::Load { modules, functions } => bench_load(&cli, modules, functions),
        What::Reload {
            modules,
            functions,
            globals,
            pause_ms,
            prewritten,
        } => bench_reload(&cli, (modules, functions, globals), pause_ms, prewritten),
        What::Relink {
            modules,
            functions,
            globals,
            ref change,
        } => bench_relink(
            &cli,
            Shape {
                modules,
                functions,
                globals,
            },
            change,
        ),
        What::Scale {
            modules,
            factor,
            functions,
            globals,
            poll_us,
        } => scale::run(
            &cli.dir,
            cli.runs,
            &scale::Scale {
                modules,
                factor,
                functions,
                globals,
                poll_us,
            },
        ),
        What::Calls { iterations } => bench_calls(&cli, iterations),
        What::Tls { iterations } => bench_tls(&cli, iterations),
        What::Changed => bench_changed(&cli),
        What::Whole => bench_whole(&cli),
        What::Alloc => bench_alloc(&cli),
        What::FirstLoad { ref image } => first_load(image),
        What::Live {
            iterations,
            globals,
        } => bench_live(&cli, iterations, globals),
        What::DlopenBaseline { modules, functions } => {
            bench_dlopen_baseline(&cli, modules, functions)
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hcr-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}
