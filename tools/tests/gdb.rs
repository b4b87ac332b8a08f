//! Real gdb sessions against `hcr run`, in batch mode, as a user would run
//! them: breakpoints by name and by `file:line` in module code, `step` into
//! a function of another module (through its trampoline), `bt` with
//! file:line down to `main`, `info locals`, a breakpoint that lands in the
//! new code after a reload, a watchpoint on a persistent global, and module
//! functions named even without `-g`; and lldb (breakpoint by name, `bt`,
//! `frame variable`). The debuggers learn of module code through the GDB
//! JIT interface (no script or plugin).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The program: `main` calls `step` (in `util`) four times, adding to a
/// persistent global; after the second call it renames the image given as
/// its argument over its own (argv[0]) and reloads.
const MAIN: &str = r#"#include <stdio.h>
#include <hcr.h>
int counter = 0;
int step(int x);
int main(int argc, char **argv) {
    for (int i = 0; i < 4; i++) {
        counter += step(i); /* CALL */
        if (i == 1 && argc > 1) {
            rename(argv[1], argv[0]);
            hcr_perform_code_reload();
        }
    }
    printf("counter=%d\n", counter);
    return 0;
}
"#;

const UTIL_V1: &str = r#"static int calls;
int step(int x) {
    int local_v1 = x + 1;
    calls++; /* V1 */
    return local_v1;
}
"#;

const UTIL_V2: &str = r#"static int calls;

int step(int x) {
    int local_v2 = x * 100;
    calls += 2; /* V2 */
    return local_v2;
}
"#;

fn gdb_available() -> bool {
    let ok = Command::new("gdb")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("gdb is not installed (.ci/run installs it): skipping");
    }
    ok
}

fn line_of(src: &str, marker: &str) -> usize {
    src.lines()
        .position(|l| l.contains(marker))
        .expect("marker")
        + 1
}

/// Builds `dir/app.hcr` (v1) and `dir/app.v2.hcr` (util v2), modules
/// compiled with `opt` and `extra` flags.
fn build(dir: &Path, opt: &str, extra: &[&str]) -> (PathBuf, PathBuf) {
    let mut objs = Vec::new();
    for (sub, util) in [("v1", UTIL_V1), ("v2", UTIL_V2)] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("main.c"), MAIN).unwrap();
        std::fs::write(d.join("util.c"), util).unwrap();
        let m = d.join("main.o");
        let u = d.join("util.o");
        support::compile(&d.join("main.c"), &m, opt, extra);
        support::compile(&d.join("util.c"), &u, opt, extra);
        objs.push([m, u]);
    }
    let v1 = dir.join("app.hcr");
    let v2 = dir.join("app.v2.hcr");
    support::link_ok(&v1, &objs[0]);
    support::link_ok(&v2, &objs[1]);
    (v1, v2)
}

/// Runs gdb in batch mode on `hcr run image ARGS` with `cmds`; returns
/// stdout and stderr together.
fn gdb(image: &Path, args: &[&Path], cmds: &[&str]) -> String {
    // A hung session fails the test instead of hanging it.
    let mut c = Command::new("timeout");
    c.args(["-s", "KILL", "600", "gdb"]);
    c.args([
        "-nx",
        "-batch",
        "-ex",
        "set pagination off",
        "-ex",
        "set breakpoint pending on",
    ]);
    for cmd in cmds {
        c.arg("-ex").arg(cmd);
    }
    c.arg("--args")
        .arg(support::hcr_bin())
        .arg("run")
        .arg(image)
        .arg("--")
        .args(args);
    let o = c.output().expect("run gdb");
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn break_by_name_and_file_line_backtrace_locals() {
    if !gdb_available() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (img, _) = build(t.path(), "-O0", &["-g"]);
    let v1_line = line_of(UTIL_V1, "V1");
    let call_line = line_of(MAIN, "CALL");
    let out = gdb(
        &img,
        &[],
        &[
            "break step",
            "run",
            "bt",
            &format!("break util.c:{v1_line}"),
            "continue",
            "info locals",
            "print x",
            "bt",
            "continue",
        ],
    );
    // By name: the function's first line, with its argument.
    assert!(out.contains(", step (x=0) at "), "{out}");
    // bt: the module frame, the caller in the root module with file:line,
    // down to main and through the runtime into the host's main.
    let frame0 = format!("#0  step (x=0) at {}", t.path().join("v1/util.c").display());
    assert!(out.contains(&frame0), "{out}");
    assert!(
        out.contains(" in main (argc=1, argv=") && out.contains(&format!("main.c:{call_line}")),
        "{out}"
    );
    assert!(out.contains("hcr_run_main"), "{out}");
    // By file:line, then locals.
    assert!(out.contains("Breakpoint 2, step (x=0) at "), "{out}");
    assert!(out.contains(&format!("util.c:{v1_line}")), "{out}");
    assert!(out.contains("local_v1 = 1"), "{out}");
    assert!(out.contains("$1 = 0"), "{out}");
    // The program carries on to its end under the debugger.
    assert!(out.contains(", step (x=1) at "), "{out}");
}

#[test]
fn step_goes_into_a_function_of_another_module() {
    if !gdb_available() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (img, _) = build(t.path(), "-O0", &["-g"]);
    let call_line = line_of(MAIN, "CALL");
    // The call goes through `step`'s trampoline: gdb steps through it (a
    // `.plt` section to it) into the function, as through a PLT stub.
    let out = gdb(
        &img,
        &[],
        &[
            &format!("break main.c:{call_line}"),
            "run",
            "step",
            "bt 1",
            "kill",
        ],
    );
    assert!(out.contains(&format!("main.c:{call_line}")), "{out}");
    assert!(out.contains("step (x=0) at "), "{out}");
    assert!(out.contains("int local_v1 = x + 1;"), "{out}");
    assert!(out.contains("#0  step (x=0) at "), "{out}");
}

#[test]
fn breakpoint_lands_in_new_code_after_a_reload() {
    if !gdb_available() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (img, v2) = build(t.path(), "-O0", &["-g"]);
    let v2_line = line_of(UTIL_V2, "V2");
    let out = gdb(
        &img,
        &[&v2],
        &[
            "break step",
            &format!("break {}:{v2_line}", t.path().join("v2/util.c").display()),
            "run",
            "continue",
            "continue",
            "continue",
            "info locals",
            "bt 2",
            "delete",
            "continue",
        ],
    );
    // Two calls in v1, then the reload; the next call runs v2's code and
    // both breakpoints (by name, re-resolved; by file:line, pending until
    // v2 was registered) land in it.
    assert!(out.contains(", step (x=0) at "), "{out}");
    assert!(out.contains(", step (x=1) at "), "{out}");
    let v2_file = t.path().join("v2/util.c").display().to_string();
    assert!(
        out.contains(&format!(", step (x=2) at {v2_file}:{}", v2_line - 1)),
        "no stop by name in the new code:\n{out}"
    );
    assert!(
        out.contains(&format!("Breakpoint 2, step (x=2) at {v2_file}:{v2_line}")),
        "no stop by file:line in the new code:\n{out}"
    );
    assert!(out.contains("local_v2 = 200"), "{out}");
    // 1 + 2 + 200 + 300
    assert!(out.contains("counter=503"), "{out}");
}

#[test]
fn watchpoint_on_a_persistent_global() {
    if !gdb_available() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (img, v2) = build(t.path(), "-O0", &["-g"]);
    let out = gdb(
        &img,
        &[&v2],
        &[
            "break step",
            "run",
            "delete",
            "watch counter",
            "continue",
            "continue",
            "continue",
            "print &counter",
            "delete",
            "continue",
        ],
    );
    // The global lives in persistent storage; the watchpoint follows its
    // value across the reload (1, then 1 + 2, then + 200 from v2's code).
    assert!(out.contains("atchpoint 2: counter"), "{out}");
    assert!(out.contains("Old value = 0\nNew value = 1"), "{out}");
    assert!(out.contains("Old value = 1\nNew value = 3"), "{out}");
    assert!(out.contains("Old value = 3\nNew value = 203"), "{out}");
    assert!(out.contains("counter=503"), "{out}");
}

#[test]
fn module_functions_are_named_without_debug_info() {
    if !gdb_available() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (img, _) = build(t.path(), "-O2", &[]);
    let out = gdb(&img, &[], &["break step", "run", "bt", "continue"]);
    assert!(out.contains(" in step ()"), "{out}");
    assert!(out.contains(" in main ()"), "{out}");
    assert!(out.contains("hcr_run_main"), "{out}");
}

/// A compiler clone (`inner.constprop.0`, a local symbol with no permanent
/// address) is named in a backtrace as in a native build's.
#[test]
fn a_compiler_clone_is_named_in_a_backtrace_without_debug_info() {
    if !gdb_available() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let lib = "int sink;\n\
        static __attribute__((noinline)) int inner(int *p, int k) {\n\
        for (int i = 0; i < k; i++) sink += p[i] * k; return *p + k; }\n\
        int outer(int *p) { return inner(p, 7) + inner(p + 1, 7); }\n";
    let main = "int outer(int *);\nint main(void) { int *volatile p = 0; return outer(p); }\n";
    let l = support::module(d, "lib", lib, "-O2");
    let m = support::module(d, "main", main, "-O2");
    let img = d.join("app.hcr");
    support::link_ok(&img, &[m, l]);
    let out = gdb(&img, &[], &["run", "bt"]);
    assert!(out.contains(" in inner.constprop"), "{out}");
    assert!(out.contains(" in outer ()"), "{out}");
}

/// `break` on a C++ function stops once, in the function: its
/// trampoline's symbol is not one gdb takes for a clone of it
/// (`ns::work(int) [clone .x]`).
#[test]
fn a_cxx_breakpoint_has_one_location_in_the_function() {
    if !gdb_available() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let files = [
        (
            "main",
            "#include <cstdio>\nnamespace ns { int work(int x); }\n\
             int main(int argc, char **) { std::printf(\"%d\\n\", ns::work(argc + 40)); return 0; }\n",
        ),
        (
            "work",
            "namespace ns { int work(int x) { int y = x * 2; return y - x + 1; } }\n",
        ),
    ];
    let mut objs = Vec::new();
    for (name, code) in files {
        let src = d.join(format!("{name}.cpp"));
        std::fs::write(&src, code).unwrap();
        let o = d.join(format!("{name}.o"));
        support::compile(&src, &o, "-O0", &["-g"]);
        objs.push(o);
    }
    let img = d.join("app.hcr");
    support::link_ok(&img, &objs);
    let out = gdb(
        &img,
        &[],
        &[
            "break ns::work",
            "run",
            "info breakpoints",
            "info args",
            "continue",
        ],
    );
    assert!(
        out.contains("hit Breakpoint 1, ns::work (x=41) at "),
        "{out}"
    );
    assert!(out.contains("work.cpp:1\n"), "{out}");
    assert!(!out.contains("<MULTIPLE>"), "{out}");
    assert!(!out.contains("clone"), "{out}");
    assert!(out.contains("x = 41"), "{out}");
}

fn lldb_available() -> bool {
    let ok = Command::new("lldb")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() || !o.stdout.is_empty());
    if !ok {
        eprintln!("lldb is not installed (.ci/run installs it): skipping");
    }
    ok
}

#[test]
fn lldb_breaks_by_name_backtraces_and_shows_locals() {
    if !lldb_available() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (img, _) = build(t.path(), "-O0", &["-g"]);
    let call_line = line_of(MAIN, "CALL");
    let mut c = Command::new("timeout");
    c.args(["-s", "KILL", "600", "lldb", "-b", "--no-lldbinit"]);
    for cmd in ["b step", "run", "bt 2", "frame variable", "kill"] {
        c.arg("-o").arg(cmd);
    }
    c.arg("--").arg(support::hcr_bin()).arg("run").arg(&img);
    let o = c.output().expect("run lldb");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // Stopped in the function itself (not its trampoline), with file:line
    // (libc has a `step` too: the breakpoint has a second location).
    assert!(out.contains("stop reason = breakpoint 1."), "{out}");
    assert!(out.contains("`step(x=0) at util.c:3"), "{out}");
    assert!(!out.contains("hcr_trampoline"), "{out}");
    // The caller in the root module, and the argument.
    assert!(out.contains("`main(argc=1, argv="), "{out}");
    assert!(out.contains(&format!("at main.c:{call_line}")), "{out}");
    assert!(out.contains("(int) x = 0"), "{out}");
}
