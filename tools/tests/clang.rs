//! Modules built by clang rather than gcc (DESIGN.md Part 1: modules are
//! compiled as users already do; thread-local variables from gcc's and
//! clang's `-fPIC` code): a C module with globals, function statics and
//! thread-local variables (general- and local-dynamic) and a C++ module
//! with a static object, a `thread_local` and exceptions, each reloaded
//! with a changed version at -O0 and -O2, must keep every value as a gcc
//! build does.

mod support;

use std::path::{Path, PathBuf};

/// Compiles `dir/name.EXT` (`code`) with `compiler` and the flags modules
/// need.
fn clang(compiler: &str, dir: &Path, name: &str, code: &str, opt: &str) -> PathBuf {
    let ext = if compiler == "clang++" { "cpp" } else { "c" };
    let src = dir.join(format!("{name}.{ext}"));
    std::fs::write(&src, code).unwrap();
    let obj = dir.join(format!("{name}.o"));
    support::compile_with(compiler, &src, &obj, opt, &[]);
    obj
}

/// Links `main` with each version of module `lib` (built by `compiler`)
/// and runs the first image, which reloads the second: what it prints.
fn run_versions(compiler: &str, dir: &Path, main: &str, versions: [&str; 2], opt: &str) -> String {
    let main = clang("clang", dir, "main", main, opt);
    let images: Vec<PathBuf> = versions
        .iter()
        .enumerate()
        .map(|(i, code)| {
            let vdir = dir.join(format!("v{i}"));
            std::fs::create_dir_all(&vdir).unwrap();
            let lib = clang(compiler, &vdir, "lib", code, opt);
            let img = dir.join(format!("v{i}.hcr"));
            support::link_ok(&img, &[main.clone(), lib]);
            img
        })
        .collect();
    let (status, out, err) = support::run_args(&images[0], &images[1..]);
    assert!(status.success(), "{compiler} {opt}: {out}\n{err}");
    out
}

const C_MAIN: &str = r#"#include <stdio.h>
#include <pthread.h>
#include <hcr.h>
int tick(void);
int tls_get(void);
static void *thread(void *arg) { (void)arg; printf("thread %d\n", tls_get()); return 0; }
int main(int argc, char **argv) {
    int a = tick(), b = tick();
    printf("%d %d\n", a, b);
    a = tls_get(), b = tls_get();
    printf("tls %d %d\n", a, b);
    fflush(stdout);
    rename(argv[1], argv[0]);
    printf("reload=%d\n", hcr_perform_code_reload());
    printf("%d\n", tick());
    printf("tls %d\n", tls_get());
    pthread_t t;
    pthread_create(&t, 0, thread, 0);
    pthread_join(t, 0);
    return 0;
}
"#;

/// Globals, function statics and thread-locals kept across a reload; a
/// static added before another of its name in the same function (clang
/// then gives it the other's name) starts from its initialiser, and the
/// other keeps its value; a thread started later starts from the
/// initialisers.
#[test]
fn a_clang_c_module_keeps_globals_statics_and_thread_locals() {
    let v0 = r#"__thread int tcount = 5;
static __thread int local_t;
int counter = 100;
int tick(void) { static int n; n++; return counter++ + n * 1000; }
int tls_get(void) { local_t++; return ++tcount + local_t * 100; }
"#;
    let v1 = r#"__thread int tcount = 5;
static __thread int local_t;
int counter = 100;
int tick(void) {
    int extra;
    { static int n = 500; extra = ++n; }
    static int n; n++;
    return counter++ + n * 1000 + extra * 1000000;
}
int tls_get(void) { local_t++; return ++tcount + local_t * 100 + 10000; }
"#;
    for opt in ["-O0", "-O2"] {
        let t = tempfile::tempdir().unwrap();
        let out = run_versions("clang", t.path(), C_MAIN, [v0, v1], opt);
        assert_eq!(
            out, "1100 2101\ntls 106 207\nreload=1\n501003102\ntls 10308\nthread 10106\n",
            "{opt}"
        );
    }
}

/// A C++ module built by clang++: its static object constructed once and
/// destroyed at exit, a `thread_local` vector and a function static kept
/// across a reload, and exceptions thrown and caught in the new code.
#[test]
fn a_clang_cxx_module_keeps_its_objects_and_throws() {
    // Version `v` throws at its `at`-th call.
    let version = |v: u32, at: u32| {
        format!(
            r#"#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>
struct Obj {{
    std::string s;
    Obj() : s("init") {{ std::printf("ctor\n"); }}
    ~Obj() {{ std::printf("dtor %s\n", s.c_str()); }}
}};
static Obj g;
thread_local std::vector<int> tv{{1, 2, 3}};
extern "C" int tick(void) {{
    static int calls = 0;
    tv.push_back(++calls);
    try {{
        if (calls == {at}) throw std::runtime_error("boom {v}");
    }} catch (const std::exception &e) {{
        std::printf("caught %s\n", e.what());
    }}
    g.s += "+";
    return (int)tv.size() + {v} * 100;
}}
extern "C" int tls_get(void) {{ return (int)tv.size(); }}
"#
        )
    };
    let (v0, v1) = (version(1, 1), version(2, 3));
    for opt in ["-O0", "-O2"] {
        let t = tempfile::tempdir().unwrap();
        let out = run_versions("clang++", t.path(), C_MAIN, [&v0, &v1], opt);
        assert_eq!(
            out,
            "ctor\ncaught boom 1\n104 105\ntls 5 5\nreload=1\ncaught boom 2\n206\ntls 6\nthread 3\ndtor init+++\n",
            "{opt}"
        );
    }
}
