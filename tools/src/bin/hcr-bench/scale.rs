//! `hcr-bench scale`: the same one-module reload in a program and in one
//! ten times larger, in one run, the way a user's build drives it.
//!
//! Each program is a generated project (`main` plus N modules of
//! `--functions` functions and `--globals` globals) linked by the `hcr-link`
//! command and run by `hcr run`. Its `main` runs every module's code, polls
//! `hcr_has_any_module_changed()` every `--poll-us` microseconds (0: without
//! pause), times its own `hcr_perform_code_reload()` and prints the time
//! when the edited module's value changes. Each round, for each program in
//! turn: the middle module's source gets a new variant, `cc` compiles it,
//! `hcr-link` relinks every object into the image, and the round ends when
//! the program prints the new value. The first round's reload (the first
//! after the load) is shown on its own and left out of the medians.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use hcr_tools::gen::{self, Shape};

/// What to measure (see the module's documentation).
pub struct Scale {
    pub modules: usize,
    pub factor: usize,
    pub functions: usize,
    pub globals: usize,
    pub poll_us: u64,
}

/// A generated program running under `hcr run`.
struct Program {
    shape: Shape,
    dir: PathBuf,
    objects: Vec<PathBuf>,
    image: PathBuf,
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Reload times the program reported, in nanoseconds, by round.
    reloads: Vec<f64>,
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The module each round edits.
fn edited(shape: Shape) -> usize {
    shape.modules / 2
}

/// Relinks `objects` into `image` with the `hcr-link` command at `link`.
fn link_image(link: &Path, image: &Path, objects: &[PathBuf]) -> anyhow::Result<()> {
    let image = image.display().to_string();
    super::tool(&link.display().to_string(), &["-o", &image], objects)
}

impl Program {
    /// Generates, compiles (cached between runs), links and starts it.
    fn start(base: &Path, shape: Shape, poll_us: u64, link: &Path) -> anyhow::Result<Self> {
        let dir = base.join(format!(
            "scale-{}x{}x{}",
            shape.modules, shape.functions, shape.globals
        ));
        eprintln!(
            "hcr-bench: generating and compiling {} modules in {} (cached between runs)",
            shape.modules,
            dir.display()
        );
        let mut objects = gen::generate(&dir, shape, "-O1")?;
        // The root (gen's own `main` runs once and returns).
        objects[0] = gen::compile(
            &dir,
            "poll_main",
            &gen::polling_main_source(shape, edited(shape)),
            "-O1",
        )?;
        let image = dir.join("app.hcr");
        link_image(link, &image, &objects)?;
        let hcr = std::env::current_exe()?.with_file_name("hcr");
        let mut child = Command::new(&hcr)
            .arg("run")
            .arg(&image)
            .arg("--")
            .arg(poll_us.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {} run", hcr.display()))?;
        let out = child.stdout.take().context("the program's stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut p = Program {
            shape,
            dir,
            objects,
            image,
            child,
            lines,
            reloads: Vec::new(),
        };
        p.wait_value(0)?;
        Ok(p)
    }

    /// Waits for the program to print `value=v`; its reload time (ns).
    fn wait_value(&mut self, v: u32) -> anyhow::Result<f64> {
        loop {
            let l = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .with_context(|| {
                    format!(
                        "the {}-module program printed no value={v}",
                        self.shape.modules
                    )
                })?;
            if gen::report_field::<u32>(&l, "value") == Some(v) {
                return gen::report_field(&l, "reload_ns").context("reload_ns");
            }
        }
    }

    /// One round: variant `v` of the edited module, compiled, relinked,
    /// reloaded by the program.
    fn round(&mut self, v: u32, link: &Path) -> anyhow::Result<()> {
        let e = edited(self.shape);
        let src = gen::module_source(self.shape, e, v);
        self.objects[e + 1] = gen::compile(&self.dir, &format!("m{e}"), &src, "-O1")?;
        link_image(link, &self.image, &self.objects)?;
        let ns = self.wait_value(v)?;
        self.reloads.push(ns);
        Ok(())
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs the benchmark and prints its table.
pub fn run(base: &Path, rounds: usize, s: &Scale) -> anyhow::Result<()> {
    if s.modules < 2 || s.factor < 2 || rounds < 2 {
        bail!("scale needs --modules ≥ 2, --factor ≥ 2 and --runs ≥ 2");
    }
    let link = std::env::current_exe()?.with_file_name("hcr-link");
    let shape = |modules| Shape {
        modules,
        functions: s.functions,
        globals: s.globals,
    };
    let mut programs = vec![
        Program::start(base, shape(s.modules), s.poll_us, &link)?,
        Program::start(base, shape(s.modules * s.factor), s.poll_us, &link)?,
    ];
    for r in 0..rounds {
        // The variant's value (≥ 1: the programs start at 0); the order
        // of the two alternates, so neither always follows the other's
        // compile.
        let v = r as u32 + 1;
        let order: [usize; 2] = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            programs[i].round(v, &link)?;
        }
        eprintln!(
            "hcr-bench: round {v}: {}",
            programs
                .iter()
                .map(|p| format!("{} modules {:.1} µs", p.shape.modules, p.reloads[r] / 1e3))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!(
        "## scale: one module changed, compiled and relinked by `hcr-link`; {} functions + {} globals a module; the program polls every {} µs",
        s.functions, s.globals, s.poll_us
    );
    println!("| program | reload (the program's clock), median | min–max | first reload | ratio to the smaller |");
    println!("|---|---|---|---|---|");
    let small = median(&programs[0].reloads[1..]);
    for p in &programs {
        let later = &p.reloads[1..];
        let lo = later.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = later.iter().copied().fold(0.0, f64::max);
        let m = median(later);
        println!(
            "| {} modules | {:.1} µs | {:.1}–{:.1} µs | {:.1} µs | {:.2}× |",
            p.shape.modules,
            m / 1e3,
            lo / 1e3,
            hi / 1e3,
            p.reloads[0] / 1e3,
            m / small
        );
    }
    Ok(())
}
