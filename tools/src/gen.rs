//! Generators of synthetic module sets for benchmarks: N modules × M
//! functions, with cross-module calls, globals, static data, string
//! literals and jump tables, so that the relocation mix resembles real C.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

/// Shape of a generated program.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Modules besides `main`.
    pub modules: usize,
    /// Functions per module.
    pub functions: usize,
    /// Writable globals per module.
    pub globals: usize,
}

/// C source of module `i`; `variant` changes the code (not the globals) so
/// that a rebuild counts as a change.
pub fn module_source(shape: Shape, i: usize, variant: u32) -> String {
    let mut s = String::new();
    let n = shape.modules;
    let _ = writeln!(s, "/* generated module m{i} (variant {variant}) */");
    // Declarations of the callees in the next two modules.
    for k in 0..shape.functions {
        for j in [(i + 1) % n, (i + 2) % n] {
            if j != i {
                let _ = writeln!(s, "int m{j}_f{k}(int);");
            }
        }
    }
    for g in 0..shape.globals {
        let _ = writeln!(s, "int m{i}_g{g} = {g};");
    }
    let _ = writeln!(s, "static int m{i}_calls;");
    let _ = writeln!(
        s,
        "static const char *m{i}_names[] = {{\"alpha{i}\", \"beta{i}\", \"gamma{i}\"}};"
    );
    let _ = writeln!(
        s,
        "const char *m{i}_name(int k) {{ return m{i}_names[k % 3]; }}"
    );
    for k in 0..shape.functions {
        let g = if shape.globals > 0 {
            format!("m{i}_g{}", k % shape.globals)
        } else {
            "0".into()
        };
        let j = (i + 1) % n;
        let call = if j != i {
            format!("m{j}_f{k}(x - 1)")
        } else {
            "x".into()
        };
        let _ = writeln!(
            s,
            "int m{i}_f{k}(int x) {{\n  m{i}_calls++;\n  if (x <= 0) return {k} + {variant};\n  switch (x & 7) {{\n    case 0: return x + {g};\n    case 1: return {call} + 1;\n    case 2: return x * 3 + m{i}_calls;\n    case 3: return (int)m{i}_name(x)[0];\n    case 4: return x - {k};\n    case 5: return x ^ {k};\n    case 6: return {call} * 2;\n    default: return {variant};\n  }}\n}}"
        );
    }
    s
}

/// C source of the root: references one function of every module so all
/// are reachable, and exports `bench_entry` for the benchmarks.
pub fn main_source(shape: Shape) -> String {
    let mut s = String::from("#include <stdio.h>\n");
    for i in 0..shape.modules {
        let _ = writeln!(s, "int m{i}_f0(int);");
    }
    s.push_str("int bench_entry(int x) {\n  int sum = 0;\n");
    for i in 0..shape.modules {
        let _ = writeln!(s, "  sum += m{i}_f0(x);");
    }
    s.push_str(
        "  return sum;\n}\nint main(void) { printf(\"%d\\n\", bench_entry(3)); return 0; }\n",
    );
    s
}

/// C source of a root for reload benchmarks: it runs every module's code in
/// a loop, polls `hcr_has_any_module_changed()` every `argv[1]`
/// microseconds (1000 when not given; 0: no pause), times its own
/// `hcr_perform_code_reload()` (`CLOCK_MONOTONIC`), and whenever module
/// `edited`'s `f0(0)` returns a new value prints
/// `value=V at_ns=T reload_ns=R modules=N` (T: `CLOCK_REALTIME` then; R and
/// N: the last reload's time and result; read them with
/// [`report_field`]). A failed reload is reported on stderr and the old
/// code keeps running.
pub fn polling_main_source(shape: Shape, edited: usize) -> String {
    let mut s = String::from(
        "#include <stdio.h>\n#include <stdlib.h>\n#include <time.h>\n#include <unistd.h>\n\
         #include <stdbool.h>\n\
         bool hcr_has_any_module_changed(void);\nint hcr_perform_code_reload(void);\n\
         const char *hcr_last_error(void);\n",
    );
    for i in 0..shape.modules {
        let _ = writeln!(s, "int m{i}_f0(int);");
    }
    s.push_str(
        "static long now_ns(clockid_t clock) {\n\
         \x20 struct timespec t; clock_gettime(clock, &t);\n\
         \x20 return t.tv_sec * 1000000000L + t.tv_nsec;\n}\n\
         static volatile int sink;\n\
         int main(int argc, char **argv) {\n\
         \x20 long poll_us = argc > 1 ? atol(argv[1]) : 1000;\n\
         \x20 long reload_ns = 0;\n\
         \x20 int last = -1, n = 0;\n\
         \x20 for (;;) {\n\
         \x20   if (hcr_has_any_module_changed()) {\n\
         \x20     long t0 = now_ns(CLOCK_MONOTONIC);\n\
         \x20     n = hcr_perform_code_reload();\n\
         \x20     reload_ns = now_ns(CLOCK_MONOTONIC) - t0;\n\
         \x20     if (n < 0) fprintf(stderr, \"reload failed: %s\\n\", hcr_last_error());\n\
         \x20   }\n",
    );
    // Every module's code runs each round, as in a real program.
    s.push_str("    int sum = 0;\n");
    for i in 0..shape.modules {
        let _ = writeln!(s, "    sum += m{i}_f0(5);");
    }
    let _ = write!(
        s,
        "    sink = sum;\n\
         \x20   int v = m{edited}_f0(0);\n\
         \x20   if (v != last) {{\n\
         \x20     printf(\"value=%d at_ns=%ld reload_ns=%ld modules=%d\\n\", v, now_ns(CLOCK_REALTIME), reload_ns, n);\n\
         \x20     fflush(stdout);\n\
         \x20     last = v;\n\
         \x20   }}\n\
         \x20   if (poll_us > 0) usleep(poll_us);\n\
         \x20 }}\n}}\n"
    );
    s
}

/// The value of `key=` in a line that [`polling_main_source`]'s program
/// printed.
pub fn report_field<T: std::str::FromStr>(line: &str, key: &str) -> Option<T> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))?
        .parse()
        .ok()
}

/// Writes the sources into `dir` and compiles them in parallel; returns the
/// objects, `main.o` first.
///
/// # Errors
/// The compiler fails.
pub fn generate(dir: &Path, shape: Shape, opt: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut jobs = vec![("main".to_string(), main_source(shape))];
    for i in 0..shape.modules {
        jobs.push((format!("m{i}"), module_source(shape, i, 0)));
    }
    compile_all(dir, &jobs, opt)
}

/// Compiles every `(name, source)` of `jobs` into `dir` (created when
/// missing), in parallel; the objects in the order of `jobs`.
///
/// # Errors
/// The folder cannot be created, or the compiler fails.
fn compile_all(dir: &Path, jobs: &[(String, String)], opt: &str) -> anyhow::Result<Vec<PathBuf>> {
    use rayon::prelude::*;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    jobs.par_iter()
        .map(|(name, src)| compile(dir, name, src, opt))
        .collect()
}

/// Writes `name.c` and compiles it to `name.o` with the module flags,
/// skipping the compile when the object is newer than an identical source.
///
/// # Errors
/// The compiler fails.
pub fn compile(dir: &Path, name: &str, src: &str, opt: &str) -> anyhow::Result<PathBuf> {
    let c = dir.join(format!("{name}.c"));
    let o = dir.join(format!("{name}.o"));
    // Extra flags for measurements (e.g. `-g` for the debugger
    // registration's cost); part of the cache key through the source.
    let extra = std::env::var("HCR_BENCH_CFLAGS").unwrap_or_default();
    let src = &format!("{src}/* cflags: {extra} */\n");
    let same = std::fs::read_to_string(&c).is_ok_and(|old| old == *src) && o.exists();
    if same {
        return Ok(o);
    }
    std::fs::write(&c, src)?;
    let st = Command::new("cc")
        .args(["-c", "-fPIC", "-ffunction-sections", "-fdata-sections", opt])
        .args(extra.split_whitespace())
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

/// `modules` modules of `functions` one-line leaf functions that call
/// nothing (the lightest objects: a code section and an unwind record per
/// function, one relocation each).
///
/// # Errors
/// The compiler fails.
pub fn generate_leaf(
    dir: &Path,
    modules: usize,
    functions: usize,
    opt: &str,
) -> anyhow::Result<Vec<PathBuf>> {
    let jobs: Vec<(String, String)> = (0..modules)
        .map(|i| {
            let mut s = String::new();
            for k in 0..functions {
                let _ = writeln!(s, "int m{i}_f{k}(int x) {{ return x * {} + {i}; }}", k + 1);
            }
            (format!("m{i}"), s)
        })
        .collect();
    compile_all(dir, &jobs, opt)
}

/// A light program: `modules` modules of `functions` one-line functions,
/// each calling the same function of the next module (small objects, few
/// relocations per function).
///
/// # Errors
/// The compiler fails.
pub fn generate_tiny(
    dir: &Path,
    modules: usize,
    functions: usize,
    opt: &str,
) -> anyhow::Result<Vec<PathBuf>> {
    let mut main = String::from("#include <stdio.h>\n");
    for i in 0..modules {
        let _ = writeln!(main, "int m{i}_f0(int);");
    }
    main.push_str("int main(void) { int s = 0;\n");
    for i in 0..modules {
        let _ = writeln!(main, "  s += m{i}_f0(3);");
    }
    main.push_str("  printf(\"%d\\n\", s); return 0; }\n");
    let mut jobs = vec![("main".to_string(), main)];
    for i in 0..modules {
        let j = (i + 1) % modules;
        let mut s = String::new();
        for k in 0..functions {
            if j != i {
                let _ = writeln!(s, "int m{j}_f{k}(int);");
            }
            let call = if j != i {
                format!("m{j}_f{k}(x - 1)")
            } else {
                "x".into()
            };
            let _ = writeln!(
                s,
                "int m{i}_f{k}(int x) {{ return x <= 0 ? {k} : {call} + {k}; }}"
            );
        }
        jobs.push((format!("m{i}"), s));
    }
    compile_all(dir, &jobs, opt)
}
