//! Globals keep their identity when the compiler renumbers them (C++ inline
//! function and template statics, gcc's numbered C statics shown by
//! `hcr inspect`), and a root without `main` is named at link and at run.

mod support;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::{hcr_bin, hcr_link_bin};

fn gxx(dir: &Path, name: &str, code: &str) -> PathBuf {
    let src = dir.join(format!("{name}.cpp"));
    std::fs::write(&src, code).unwrap();
    let obj = dir.join(format!("{name}.o"));
    support::compile_with("g++", &src, &obj, "-O2", &[]);
    obj
}

fn link(out: &Path, inputs: &[PathBuf], extra: &[&str]) -> std::process::Output {
    Command::new(hcr_link_bin())
        .arg("-o")
        .arg(out)
        .args(extra)
        .args(inputs)
        .output()
        .unwrap()
}

const LIB_V1: &str = r#"
#include "shared.hpp"
int use_inline(void) { return bump(); }
int use_template(void) { return Counter<int>::next() + Counter<long>::next(); }
int own(void) { static int mine = 1000; return ++mine; }
"#;

// Reordered, a new static before the old ones, a second template instance.
const LIB_V2: &str = r#"
#include "shared.hpp"
int own(void) { static int added = 7; static int mine = 1000; (void)added; return ++mine; }
int use_template(void) { return Counter<int>::next() + Counter<long>::next() + 0 * Counter<char>::next(); }
int use_inline(void) { return bump(); }
"#;

const SHARED: &str = r#"
inline int bump(void) { static int n = 0; return ++n; }
template <typename T> struct Counter {
    static int next() { static int k = 0; return ++k; }
};
"#;

const MAIN: &str = r#"
#include <cstdio>
#include <unistd.h>
#include "hcr.h"
int use_inline(void);
int use_template(void);
int own(void);
int main() {
    int a = use_inline(), b = use_inline();
    int t = use_template();
    int o = own();
    std::printf("v1: inline %d %d, template %d, own %d\n", a, b, t, o);
    std::fflush(stdout);
    for (int i = 0; i < 24000 && !hcr_has_any_module_changed(); i++) usleep(5000);
    std::printf("reloaded %d\n", hcr_perform_code_reload());
    a = use_inline();
    t = use_template();
    o = own();
    std::printf("v2: inline %d, template %d, own %d\n", a, t, o);
    return 0;
}
"#;

/// C++ statics have mangled, stable names (`_ZZ4bumpvE1n`, with `_ZGV…`
/// guards for dynamic initialisation): an inline function's and a class
/// template's statics keep their values across a reload that reorders the
/// module and adds statics around them.
#[test]
fn cxx_inline_and_template_statics_keep_their_values() {
    let d = tempfile::tempdir().unwrap();
    let w = d.path();
    std::fs::write(w.join("shared.hpp"), SHARED).unwrap();
    let main = gxx(w, "main", MAIN);
    let v1 = w.join("v1");
    let v2 = w.join("v2");
    std::fs::create_dir_all(&v1).unwrap();
    std::fs::create_dir_all(&v2).unwrap();
    std::fs::copy(w.join("shared.hpp"), v1.join("shared.hpp")).unwrap();
    std::fs::copy(w.join("shared.hpp"), v2.join("shared.hpp")).unwrap();
    let lib1 = gxx(&v1, "lib", LIB_V1);
    let lib2 = gxx(&v2, "lib", LIB_V2);
    let img = w.join("app.hcr");
    assert!(link(&img, &[main.clone(), lib1], &[]).status.success());
    let mut child = Command::new(hcr_bin())
        .arg("run")
        .arg(&img)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "v1: inline 1 2, template 2, own 1001\n");
    let o = link(&img, &[main, lib2], &[]);
    assert!(o.status.success(), "{o:?}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    assert_eq!(
        rest, "reloaded 1\nv2: inline 3, template 4, own 1002\n",
        "{err}"
    );
}

/// `hcr inspect` shows the identity of gcc's numbered statics, and what it
/// assumes where order alone tells two apart.
#[test]
fn inspect_shows_each_globals_identity() {
    let d = tempfile::tempdir().unwrap();
    let m = support::module(
        d.path(),
        "main",
        "int counter(void) { static int n; return ++n; }\n\
         int g(int x) { static int k; if (x) { static int k = 5; return k++; } return k++; }\n\
         int total = 3;\n\
         int main(int argc, char **argv) { (void)argv; return counter() + g(argc) + total; }\n",
        "-O0",
    );
    let img = d.path().join("app.hcr");
    assert!(link(&img, &[m], &[]).status.success());
    let o = Command::new(hcr_bin())
        .args(["inspect", "--json"])
        .arg(&img)
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let globals = j["modules"][0]["globals"].as_array().unwrap().clone();
    let by_identity = |id: &str| {
        globals
            .iter()
            .find(|g| g["identity"] == id)
            .unwrap_or_else(|| panic!("no global with identity {id}: {globals:?}"))
            .clone()
    };
    let n = by_identity("counter::n");
    assert!(n["name"].as_str().unwrap().starts_with("n."), "{n}");
    assert_eq!(n["assumed"], "");
    assert_eq!(by_identity("total")["name"], "total");
    let k = by_identity("g::k");
    assert!(
        k["assumed"]
            .as_str()
            .unwrap()
            .contains("2 statics named 'k'"),
        "{k}"
    );
    by_identity("g::k#1");
    let text = Command::new(hcr_bin())
        .arg("inspect")
        .arg(&img)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("identity counter::n"), "{text}");
}

/// A root module without `main` (hcr-link's default root is the first
/// input): hcr-link warns and names the module that has one; `hcr run`
/// refuses with a message naming the root and `--root`, before any module
/// code runs (a constructor's output would come first otherwise).
#[test]
fn a_root_without_main_is_named_at_link_and_at_run() {
    let d = tempfile::tempdir().unwrap();
    let util = support::module(
        d.path(),
        "util",
        "#include <stdio.h>\n\
         __attribute__((constructor)) static void hello(void) { puts(\"init util\"); }\n\
         int helper(void) { return 3; }\n",
        "-O2",
    );
    let main = support::module(
        d.path(),
        "app",
        "int helper(void);\nint main(void) { return helper() - 3; }\n",
        "-O2",
    );
    let img = d.path().join("app.hcr");
    let o = link(&img, &[util.clone(), main.clone()], &[]);
    assert!(o.status.success());
    let warn = String::from_utf8_lossy(&o.stderr);
    assert!(
        warn.contains("the root module util defines no `main`") && warn.contains("--root app"),
        "{warn}"
    );
    let o = Command::new(hcr_bin())
        .arg("run")
        .arg(&img)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the root module util defines no `main` function") && err.contains("--root"),
        "{err}"
    );
    assert!(err.contains("cannot run"), "{err}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "", "a constructor ran");
    let o = link(&img, &[util, main], &["--root", "app"]);
    assert!(o.status.success() && o.stderr.is_empty(), "{o:?}");
    let o = Command::new(hcr_bin())
        .arg("run")
        .arg(&img)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "init util\n");
}

/// Two `static` functions, each with a `static int n`, inlined into the
/// same callers at -O2 (their own copies dropped): the code cannot tell
/// their statics apart, and gcc numbers them in reverse source order, so a
/// third one added before them reshuffles the numbers. Built with `-g`,
/// the debug information says which function declares each: every static
/// keeps its own value, and nothing rests on an assumption.
#[test]
fn statics_of_functions_inlined_everywhere_keep_their_values_with_debug_info() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let v0 = r#"#include <stdio.h>
static int a(void) { static int n = 100; return n++; }
static int b(void) { static int n = 200; return n++; }
void bump(void) { a(); b(); }
void show(void) { printf("a.n=%d b.n=%d\n", a(), b()); }
"#;
    let v1 = r#"#include <stdio.h>
static int z(void) { static int n = 900; return n++; }
static int a(void) { static int n = 100; return n++; }
static int b(void) { static int n = 200; return n++; }
void bump(void) { z(); a(); b(); }
void show(void) { printf("a.n=%d b.n=%d z.n=%d\n", a(), b(), z()); }
"#;
    let main = r#"#include <stdio.h>
#include <hcr.h>
void bump(void); void show(void);
int main(int argc, char **argv) {
    bump(); bump(); show();
    fflush(stdout);
    rename(argv[1], argv[0]);
    printf("reload=%d\n", hcr_perform_code_reload());
    show();
    return 0;
}
"#;
    let imgs =
        support::versioned_images(d, main, "lib", &[("v0", v0), ("v1", v1)], ("-O2", &["-g"]));
    let (status, out, err) = support::run_args(&imgs[0], &imgs[1..]);
    assert!(status.success(), "{out}\n{err}");
    assert_eq!(
        out, "a.n=102 b.n=202\nreload=1\na.n=103 b.n=203 z.n=900\n",
        "{err}"
    );
    assert!(!err.contains("assumption"), "{err}");
}

/// Without `-g`, statics of `static` functions inlined into the same
/// caller are told apart by their order alone, and gcc numbers them in
/// no order the source shows: a function with its own `static int n`
/// added before the others took, by order, the value of one that was
/// there, and that one started again from its initialiser, silently.
/// Matched by their shapes as well (zero-filled or initialised), each
/// keeps its own value, and the new one starts from its initialiser,
/// both named in a warning; the function dropped again, the one kept is
/// still found by its key (the dropped one's key, which it takes).
#[test]
fn statics_inlined_into_one_caller_keep_their_values_by_order_and_shape() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let v0 = r#"#include <stdio.h>
static int f1(void) { static int n; return ++n; }
void tick(void) { printf("f1=%d\n", f1()); }
"#;
    let v1 = r#"#include <stdio.h>
static int extra(void) { static int n = 1000; return ++n; }
static int f1(void) { static int n; return ++n; }
void tick(void) { printf("extra=%d ", extra()); printf("f1=%d\n", f1()); }
"#;
    let main = r#"#include <stdio.h>
#include <hcr.h>
void tick(void);
int main(int argc, char **argv) {
    tick(); tick();
    for (int i = 1; i < argc; i++) {
        fflush(stdout);
        rename(argv[i], argv[0]);
        printf("reload=%d\n", hcr_perform_code_reload());
        int *n = hcr_get_global("lib", "tick::n");
        printf("tick::n=%d\n", n ? *n : -1);
        tick();
    }
    return 0;
}
"#;
    for opt in ["-O1", "-O2"] {
        let dir = d.join(&opt[1..]);
        std::fs::create_dir_all(&dir).unwrap();
        let imgs = support::versioned_images(
            &dir,
            main,
            "lib",
            &[("v0", v0), ("v1", v1), ("v2", v0)],
            (opt, &[]),
        );
        let (status, out, err) = support::run_args(&imgs[0], &imgs[1..]);
        assert!(status.success(), "{opt}: {out}\n{err}");
        assert_eq!(
            out,
            "f1=1\nf1=2\n\
             reload=1\ntick::n=1000\nextra=1001 f1=3\n\
             reload=1\ntick::n=3\nf1=4\n",
            "{opt}: {err}"
        );
        // The new static is named as starting from its initialiser, on an
        // assumption.
        assert!(
            err.lines()
                .any(|l| l.starts_with("hcr: warning: global lib:tick::n ")
                    && l.contains("starts from its initialiser on an assumption")),
            "{opt}: {err}"
        );
    }
}

/// A reload that kept a static under another key (matched by order and
/// shape) and then crashed inside `hcr_guard` rolls back: the static gets
/// its key back with its value, and the restored code finds it by it.
#[test]
fn a_rollback_gives_statics_kept_under_other_keys_their_keys_back() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let v0 = r#"#include <stdio.h>
static int f1(void) { static int n; return ++n; }
void tick(void *arg) { (void)arg; printf("f1=%d\n", f1()); }
"#;
    let v1 = r#"#include <stdio.h>
static int extra(void) { static int n = 1000; return ++n; }
static int f1(void) { static int n; return ++n; }
void tick(void *arg) {
    (void)arg;
    printf("extra=%d ", extra()); printf("f1=%d\n", f1());
    fflush(stdout);
    *(volatile int *)0 = 1;
}
"#;
    let main = r#"#include <stdio.h>
#include <hcr.h>
void tick(void *);
static void show(void) {
    int *n = hcr_get_global("lib", "tick::n");
    printf("tick::n=%d\n", n ? *n : -1);
}
int main(int argc, char **argv) {
    tick(0); tick(0);
    fflush(stdout);
    rename(argv[1], argv[0]);
    printf("reload=%d\n", hcr_perform_code_reload());
    show();
    printf("guard=%d\n", hcr_guard(tick, 0));
    show();
    tick(0);
    return 0;
}
"#;
    let imgs = support::versioned_images(d, main, "lib", &[("v0", v0), ("v1", v1)], ("-O2", &[]));
    let (status, out, err) = support::run_args(&imgs[0], &imgs[1..]);
    assert!(status.success(), "{out}\n{err}");
    assert_eq!(
        out, "f1=1\nf1=2\nreload=1\ntick::n=1000\nextra=1001 f1=3\nguard=-1\ntick::n=3\nf1=4\n",
        "{err}"
    );
}
