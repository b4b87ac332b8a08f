//! Save → new code running, through `hcr watch`, for a generated project of
//! 100 modules (a benchmark, not a test; see BENCHMARKS-watch.md).
//!
//! ```text
//! cargo bench -p hcr-tools --bench watch [-- --rounds 15 --modules 100]
//! ```
//!
//! The project is `main.c` plus 99 modules from `hcr_tools::gen` (10
//! functions, 4 globals each, calls into the next modules, string tables,
//! jump tables). `main` polls `hcr_has_any_module_changed()` every
//! millisecond, reloads, and prints the wall-clock time at which the new
//! code of one module first ran, and how long `hcr_perform_code_reload()`
//! took. Each round rewrites that one module's source (as an editor's save
//! does) and measures, from the moment the write returned:
//!
//! - total: until the new code ran (the program's clock, CLOCK_REALTIME);
//! - compile: the compiler's time for that module (hcr watch reports it);
//! - link: relinking all modules (hcr watch reports it);
//! - reload: inside `hcr_perform_code_reload()` (the program measures it);
//! - rest: total − compile − link − reload: noticing the save (inotify), the
//!   debounce (a save ends with a close-after-write event, then
//!   [`hcr_tools::watch::SAVED_QUIET`] of quiet), hashing the sources, and
//!   the program's 1 ms poll.
//!
//! The figure that matters is total − compile: what hcr adds to a compile.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use hcr_tools::gen::{self, Shape};

/// The module whose source each round changes.
const EDITED: usize = 42;

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// "compiled 1 module in 85.3 ms, linked 100 modules in 6.1 ms" → (85.3, 6.1).
fn watch_times(line: &str) -> Option<(f64, f64)> {
    let rest = line.strip_prefix("hcr watch: compiled ")?;
    let (c, rest) = rest.split_once(" in ")?.1.split_once(" ms, linked ")?;
    let l = rest.split_once(" in ")?.1.split_once(" ms")?.0;
    Some((c.parse().ok()?, l.parse().ok()?))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let rounds = arg("--rounds", 15);
    let modules = arg("--modules", 100);
    if modules < EDITED + 2 {
        bail!("--modules must be at least {}", EDITED + 2);
    }
    let shape = Shape {
        modules: modules - 1,
        functions: 10,
        globals: 4,
    };
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    std::fs::write(dir.join("main.c"), gen::polling_main_source(shape, EDITED))?;
    for i in 0..shape.modules {
        std::fs::write(dir.join(format!("m{i}.c")), gen::module_source(shape, i, 0))?;
    }
    let hcr = env!("CARGO_BIN_EXE_hcr");
    let mut child = Kill(
        Command::new(hcr)
            .arg("watch")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("start hcr watch")?,
    );
    let (otx, orx) = mpsc::channel::<String>();
    let (etx, erx) = mpsc::channel::<String>();
    let out = child.0.stdout.take().context("stdout")?;
    let err = child.0.stderr.take().context("stderr")?;
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = otx.send(l);
        }
    });
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = etx.send(l);
        }
    });
    let timeout = Duration::from_secs(120);
    let wait_value = |v: i32| -> anyhow::Result<String> {
        loop {
            let l = orx
                .recv_timeout(timeout)
                .with_context(|| format!("no value={v} from the program"))?;
            if gen::report_field::<i32>(&l, "value") == Some(v) {
                return Ok(l);
            }
        }
    };
    let first = wait_value(0)?;
    let mut startup = None;
    while let Ok(l) = erx.try_recv() {
        startup = startup.or(watch_times(&l));
    }
    eprintln!("started: {first}");

    let (mut total, mut compile, mut link, mut reload, mut rest, mut no_compile) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let src = dir.join(format!("m{EDITED}.c"));
    for round in 1..=rounds {
        let v = round as i32;
        // Variant v makes m42_f0(0) return v.
        let text = gen::module_source(shape, EDITED, v as u32);
        std::fs::write(&src, text)?;
        let written = now_ns();
        let line = wait_value(v)?;
        let at: i128 = gen::report_field(&line, "at_ns").context("at_ns")?;
        let reload_ns: f64 = gen::report_field(&line, "reload_ns").context("reload_ns")?;
        let (c, l) = loop {
            let e = erx.recv_timeout(timeout).context("hcr watch's timings")?;
            if let Some(t) = watch_times(&e) {
                break t;
            }
        };
        let t = (at - written) as f64 / 1e6;
        let r = reload_ns / 1e6;
        total.push(t);
        compile.push(c);
        link.push(l);
        reload.push(r);
        rest.push(t - c - l - r);
        no_compile.push(t - c);
        eprintln!(
            "round {round:2}: save → new code {t:7.1} ms = compile {c:6.1} + link {l:5.1} + reload {r:5.1} + rest {:5.1}",
            t - c - l - r
        );
        // Let the machine settle between rounds.
        std::thread::sleep(Duration::from_millis(300));
    }
    println!(
        "hcr watch, {modules} modules ({} functions and {} globals each), 1 module edited, {rounds} rounds, medians:",
        shape.functions, shape.globals
    );
    println!(
        "  save → new code running      {:7.1} ms",
        median(&mut total)
    );
    println!(
        "  of which: compile (cc -O1)   {:7.1} ms",
        median(&mut compile)
    );
    println!(
        "            link (all modules) {:7.1} ms",
        median(&mut link)
    );
    println!(
        "            reload             {:9.3} ms",
        median(&mut reload)
    );
    println!(
        "            rest               {:7.1} ms  (inotify, {} ms quiet after the save, hashing sources, 1 ms program poll)",
        median(&mut rest),
        hcr_tools::watch::SAVED_QUIET.as_millis()
    );
    println!(
        "  save → new code, minus compile {:5.1} ms",
        median(&mut no_compile)
    );
    if let Some((c, l)) = startup {
        println!("  first build: compile {c:.1} ms (all modules, in parallel), link {l:.1} ms");
    }
    Ok(())
}
