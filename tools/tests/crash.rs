//! Crash reports: each fatal signal in module code prints the contract's
//! line and the module frames on stderr, then the process dies of that
//! signal exactly as the same program built natively does; a crash in the
//! host outside module code is not reported (and not hidden); a handler
//! the program installed itself still runs.

mod support;

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MAIN: &str = r#"#include <stdio.h>
#include <stdlib.h>
int boom(int kind);
int main(int argc, char **argv) {
    int k = argc > 1 ? atoi(argv[1]) : 0;
    printf("before\n");
    fflush(stdout);
    int r = boom(k); /* CALL */
    printf("after %d\n", r);
    return 0;
}
"#;

const UTIL: &str = r#"#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
volatile int zero = 0;
static int bus(void) {
    FILE *f = tmpfile();
    volatile char *p = mmap(0, 4096, PROT_READ, MAP_SHARED, fileno(f), 0);
    return p[0]; /* SIGBUS */
}
int boom(int kind) {
    if (kind == 0) *(volatile int *)0 = 1; /* SIGSEGV */
    if (kind == 1) return 10 / zero; /* SIGFPE */
    if (kind == 2) __builtin_trap(); /* SIGILL */
    if (kind == 3) abort(); /* SIGABRT */
    if (kind == 4) return bus();
    return 0;
}
"#;

fn line_of(src: &str, marker: &str) -> usize {
    src.lines()
        .position(|l| l.contains(marker))
        .expect("marker")
        + 1
}

/// Builds the program natively and as an image, modules compiled with
/// `flags`.
fn build(dir: &Path, flags: &[&str]) -> (PathBuf, PathBuf) {
    std::fs::write(dir.join("main.c"), MAIN).unwrap();
    std::fs::write(dir.join("util.c"), UTIL).unwrap();
    let native = dir.join("native");
    let st = Command::new("cc")
        .args(flags)
        .arg(dir.join("main.c"))
        .arg(dir.join("util.c"))
        .arg("-o")
        .arg(&native)
        .status()
        .unwrap();
    assert!(st.success());
    let mut objs = Vec::new();
    for m in ["main", "util"] {
        let o = dir.join(format!("{m}.o"));
        let extra: Vec<&str> = flags
            .iter()
            .copied()
            .filter(|f| !f.starts_with("-O"))
            .collect();
        let opt = flags
            .iter()
            .copied()
            .find(|f| f.starts_with("-O"))
            .unwrap_or("-O0");
        support::compile(&dir.join(format!("{m}.c")), &o, opt, &extra);
        objs.push(o);
    }
    let img = dir.join("app.hcr");
    support::link_ok(&img, &objs);
    (native, img)
}

fn run_image(img: &Path, kind: u32) -> Output {
    support::hcr_command()
        .current_dir(img.parent().unwrap())
        .arg("run")
        .arg(img)
        .arg("--")
        .arg(kind.to_string())
        .output()
        .unwrap()
}

fn check_signals(flags: &[&str], with_lines: bool) {
    let t = tempfile::tempdir().unwrap();
    let (native, img) = build(t.path(), flags);
    for (kind, name, marker, sig) in [
        (0, "SIGSEGV", "SIGSEGV", libc::SIGSEGV),
        (1, "SIGFPE", "SIGFPE", libc::SIGFPE),
        (2, "SIGILL", "SIGILL", libc::SIGILL),
        (3, "SIGABRT", "SIGABRT", libc::SIGABRT),
        (4, "SIGBUS", "SIGBUS", libc::SIGBUS),
    ] {
        let want = Command::new(&native)
            .arg(kind.to_string())
            .output()
            .unwrap();
        let got = run_image(&img, kind);
        let err = String::from_utf8_lossy(&got.stderr);
        assert_eq!(want.status.signal(), Some(sig), "native {name}");
        assert_eq!(
            got.status.signal(),
            want.status.signal(),
            "{name}: the process must die of the same signal as natively\n{err}"
        );
        assert_eq!(got.status.code(), None);
        assert_eq!(String::from_utf8_lossy(&got.stdout), "before\n");
        let first = err.lines().next().unwrap_or_default();
        // At -O2 `bus` is inlined into `boom`.
        let function = if kind == 4 && with_lines {
            "bus"
        } else {
            "boom"
        };
        let want_line = if with_lines {
            format!(
                "hcr: crash: {name} in util:{function} (util.c:{}), image generation 0",
                line_of(UTIL, marker)
            )
        } else {
            format!("hcr: crash: {name} in util:{function}, image generation 0")
        };
        assert_eq!(first, want_line, "{name}:\n{err}");
        // The module frames follow, the crashing one first.
        let frames: Vec<&str> = err
            .lines()
            .skip(1)
            .filter(|l| l.starts_with("hcr:     at "))
            .collect();
        assert!(!frames.is_empty(), "{err}");
        assert!(frames[0].contains(&format!("util:{function}")), "{err}");
        if with_lines && kind != 3 {
            // At -O0 every call is a real frame: boom's caller is main.
            let call = format!(
                "main:main (main.c:{}), image generation 0",
                line_of(MAIN, "CALL")
            );
            assert!(
                frames.iter().any(|f| f.ends_with(&call)),
                "no main frame:\n{err}"
            );
        }
    }
}

#[test]
fn each_fatal_signal_is_reported_with_file_and_line_and_kills_as_natively() {
    check_signals(&["-O0", "-g"], true);
}

#[test]
fn reports_without_debug_info_name_module_and_function() {
    check_signals(&["-O2"], false);
}

const HOST: &str = r#"#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "hcr.h"
static void on_segv(int sig) {
    static const char msg[] = "host handler ran\n";
    write(2, msg, sizeof msg - 1);
    _exit(42);
}
int main(int argc, char **argv) {
    if (argc > 2) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_segv;
        sigaction(SIGSEGV, &sa, 0);
    }
    if (hcr_init(argv[1]) != 0) { fprintf(stderr, "init: %s\n", hcr_last_error()); return 1; }
    int (*boom)(int) = (int (*)(int))hcr_get_proc("util", "boom");
    if (argv[2] && argv[2][0] == 'm') return boom(0); /* in module code */
    *(volatile int *)0 = 1;                            /* in the host */
    return 0;
}
"#;

#[test]
fn host_crashes_are_not_reported_and_program_handlers_still_run() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let (_, img) = build(d, &["-O1", "-g"]);
    std::fs::write(d.join("host.c"), HOST).unwrap();
    let host = d.join("host");
    support::c_host(&d.join("host.c"), &host, &[]);
    // A crash in the host's own code: no report, the default action.
    let o = Command::new(&host).arg(&img).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.signal(), Some(libc::SIGSEGV), "{err}");
    assert!(!err.contains("hcr: crash"), "{err}");
    // The host's handler, installed before the runtime: a host crash goes
    // to it unreported ...
    let o = Command::new(&host).arg(&img).arg("h").output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(42), "{err}");
    assert_eq!(err, "host handler ran\n");
    // ... and a module crash is reported, then goes to it.
    let o = Command::new(&host).arg(&img).arg("m").output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(42), "{err}");
    assert!(
        err.starts_with("hcr: crash: SIGSEGV in util:boom (util.c:")
            && err.ends_with("host handler ran\n"),
        "{err}"
    );
}

/// `work` ends in a call that never returns: its return address is the
/// first byte of `work2`, which follows it.
const NORETURN: &str = r#"#include <assert.h>
#include <stdlib.h>
void work(int n) { assert(n == 12345); } /* ASSERT */
void work2(int n) { if (n) abort(); }
"#;

/// The backtrace lines of a report (`hcr:     at ...`).
fn frames_of(err: &str) -> Vec<&str> {
    (err.lines())
        .filter(|l| l.starts_with("hcr:     at "))
        .collect()
}

/// Builds `lib.c` and `main.c` (modules `lib` and `main`, `opt` and `-g`)
/// into an image and runs it: its exit status and stderr.
fn crash_run(lib: &str, main: &str, opt: &str) -> (std::process::ExitStatus, String) {
    let t = tempfile::tempdir().unwrap();
    let sources = [("main.c", main), ("lib.c", lib)];
    build_and_run(t.path(), &sources, opt, &["-g"])
}

/// Writes each `(file name, code)` of `sources` into `d`, compiles it
/// with `opt` and `extra` into a module (the first is the root), links
/// them and runs the image: its exit status and stderr.
fn build_and_run(
    d: &Path,
    sources: &[(&str, &str)],
    opt: &str,
    extra: &[&str],
) -> (std::process::ExitStatus, String) {
    let objs: Vec<PathBuf> = (sources.iter())
        .map(|&(name, code)| {
            let src = d.join(name);
            std::fs::write(&src, code).unwrap();
            let obj = src.with_extension("o");
            support::compile(&src, &obj, opt, extra);
            obj
        })
        .collect();
    let img = d.join("app.hcr");
    support::link_ok(&img, &objs);
    let o = support::hcr_command()
        .arg("run")
        .arg(&img)
        .output()
        .unwrap();
    (o.status, String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn a_frame_ending_in_a_call_that_never_returns_names_its_own_function() {
    let main =
        "void work(int);\nint main(int argc, char **argv) { work(argc); return 0; } /* CALL */\n";
    let (status, err) = crash_run(NORETURN, main, "-O2");
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{err}");
    let line = line_of(NORETURN, "ASSERT");
    assert!(
        err.contains(&format!(
            "hcr: crash: SIGABRT in lib:work (lib.c:{line}), image generation 0\n"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("hcr:     at lib:work (lib.c:{line})")),
        "{err}"
    );
    assert!(err.contains("hcr:     at main:main (main.c:2)"), "{err}");
    assert!(!err.contains("work2"), "{err}");
}

/// `work` passes a null pointer to the C library.
const LIBC_FAULT: &str = r#"#include <string.h>
volatile unsigned long len;
void work(const char *s) {
    len = strlen(s); /* STRLEN */
}
"#;

#[test]
fn a_fault_in_the_c_library_called_from_a_module_names_the_place_then_the_module_frame() {
    let main = "void work(const char *);\nint main(void) { work(0); return 0; }\n";
    let (status, err) = crash_run(LIBC_FAULT, main, "-O1");
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{err}");
    let line = line_of(LIBC_FAULT, "STRLEN");
    // Where the fault is (the C library's file and offset), then the
    // module frame that called it, in the contract's form.
    let first = err.lines().next().unwrap_or("");
    assert!(
        first.starts_with("hcr: fault outside the image: /") && first.contains("libc.so.6+0x"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "\nhcr: crash: SIGSEGV in lib:work (lib.c:{line}), image generation 0\n"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "\nhcr:     at lib:work (lib.c:{line}), image generation 0\n"
        )),
        "{err}"
    );
}

/// A fault in a plugin the module calls through a `dlsym` pointer: the
/// report says the plugin's file and offset, then names the module frame
/// that made the call, not a stale return address left on the stack by earlier
/// deep calls (the plugin's uninitialised buffer holds such words).
#[test]
fn a_fault_in_a_plugin_names_the_plugin_and_the_calling_frame() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let plug = support::plugin(
        d,
        "plug",
        "#include <string.h>\n\
         __attribute__((noinline)) static int inner(int *p, const char *s) {\n\
             char buf[2048]; strcpy(buf + 1000, s); *p = buf[1000]; return buf[1001]; }\n\
         int plug_crash(int *p, const char *s) { return inner(p, s) + 1; }\n",
    );
    let lib = r#"#include <dlfcn.h>
#include <stdio.h>
__attribute__((noinline)) int deep(int n) { volatile char pad[64]; pad[0] = n; return n ? deep(n - 1) + pad[0] : 0; }
int call_plugin(void *h) {
    int (*f)(int *, const char *) = (int (*)(int *, const char *))dlsym(h, "plug_crash");
    printf("deep=%d\n", deep(40));
    int r = f(NULL, "x"); /* CALL */
    printf("r=%d\n", r);
    return r;
}
"#;
    let main = format!(
        "#include <dlfcn.h>\nint call_plugin(void *h);\n\
         int main(void) {{ void *h = dlopen(\"{}\", RTLD_NOW); return h ? call_plugin(h) : 9; }}\n",
        plug.display()
    );
    let (status, err) = crash_run(lib, &main, "-O2");
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{err}");
    let line = line_of(lib, "CALL");
    let first = err.lines().next().unwrap_or("");
    assert!(
        first.starts_with(&format!(
            "hcr: fault outside the image: {}+0x",
            plug.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "\nhcr: crash: SIGSEGV in lib:call_plugin (lib.c:{line}), image generation 0\n"
        )),
        "{err}"
    );
    assert!(!err.contains("lib:deep"), "{err}");
}

/// At -O2 gcc makes `inner`, always called with `k == 7`, into a clone
/// (`inner.constprop.0`): a local symbol with no permanent address.
const CLONED: &str = r#"int sink;
static __attribute__((noinline)) int inner(int *p, int k) {
    for (int i = 0; i < k; i++) sink += p[i] * k; /* CLONE */
    return *p + k;
}
int outer(int *p) { return inner(p, 7) + inner(p + 1, 7); }
int after(int x) { return x * 3; }
"#;

/// The clones' names in `obj`'s symbol table.
fn clones_in(obj: &Path) -> Vec<String> {
    let nm = Command::new("nm").arg(obj).output().expect("nm");
    String::from_utf8_lossy(&nm.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter(|n| n.starts_with("inner."))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_crash_inside_a_compiler_clone_names_the_function_it_was_made_from() {
    let main = "int outer(int *);\nint main(void) { int *volatile p = 0; return outer(p); }\n";
    let line = line_of(CLONED, "CLONE");
    for debug in [true, false] {
        let t = tempfile::tempdir().unwrap();
        let g: &[&str] = if debug { &["-g"] } else { &[] };
        let sources = [("main.c", main), ("lib.c", CLONED)];
        let (status, err) = build_and_run(t.path(), &sources, "-O2", g);
        // The test means something only if gcc made the clone.
        let l = t.path().join("lib.o");
        assert!(!clones_in(&l).is_empty(), "gcc made no clone of inner");
        assert_eq!(status.signal(), Some(libc::SIGSEGV), "{err}");
        let place = match debug {
            true => format!(" (lib.c:{line})"),
            false => String::new(),
        };
        assert!(
            err.contains(&format!(
                "hcr: crash: SIGSEGV in lib:inner{place}, image generation 0\n"
            )),
            "{err}"
        );
        assert!(err.contains("hcr:     at lib:outer"), "{err}");
        assert!(!err.contains("lib:after"), "{err}");
    }
}

/// `crash` keeps a large uninitialised buffer where `deep`'s recursion
/// left return addresses into module code: the backtrace follows the call
/// frames (each module's unwind information), not every return address
/// still on the stack.
const STALE: &str = r#"__attribute__((noinline)) int deep(int n) {
    volatile char pad[64]; pad[0] = n; return n ? deep(n - 1) + pad[0] : 0;
}
__attribute__((noinline)) int crash(int *p) {
    volatile char big[4096]; big[100] = 1;
    return *p + big[100]; /* FAULT */
}
int work(int *p) {
    int d = deep(40);
    return crash(p) + d; /* CALL */
}
"#;

#[test]
fn the_backtrace_follows_the_call_frames_past_stale_return_addresses() {
    // (Not a tail call: `main` keeps its frame at -O2.)
    let main = "int work(int *);\nint main(void) { int *volatile p = 0; return work(p) + 1; }\n";
    // At -O0 without unwind tables, the frame pointers are followed.
    let configs = [
        ("-O2", "-g"),
        ("-O0", "-g"),
        ("-O0", "-fno-asynchronous-unwind-tables"),
    ];
    for (opt, extra) in configs {
        let t = tempfile::tempdir().unwrap();
        let sources = [("main.c", main), ("lib.c", STALE)];
        let (status, err) = build_and_run(t.path(), &sources, opt, &["-g", extra]);
        assert_eq!(status.signal(), Some(libc::SIGSEGV), "{err}");
        let (fault, call) = (line_of(STALE, "FAULT"), line_of(STALE, "CALL"));
        let frames = frames_of(&err);
        assert_eq!(
            frames,
            [
                format!("hcr:     at lib:crash (lib.c:{fault}), image generation 0"),
                format!("hcr:     at lib:work (lib.c:{call}), image generation 0"),
                "hcr:     at main:main (main.c:2), image generation 0".to_string(),
            ],
            "{opt} {extra}: {err}"
        );
    }
}

/// A C++ function is named by its qualified name, as a debugger shows it.
#[test]
fn a_cxx_function_is_named_by_its_qualified_name() {
    let t = tempfile::tempdir().unwrap();
    let work = "namespace ns {\ntemplate <class T, int N> struct Box { T *p; T get() const { return *p + N; } };\n\
                struct Worker { int *p; int run() const; };\n\
                int Worker::run() const { Box<int, 3> b{p}; return b.get() + 1; } /* CALL */\n}\n";
    let main = "namespace ns { struct Worker { int *p; int run() const; }; }\n\
                int main() { ns::Worker w{nullptr}; return w.run() + 1; }\n";
    let sources = [("main.cpp", main), ("work.cpp", work)];
    let (status, err) = build_and_run(t.path(), &sources, "-O0", &["-g"]);
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{err}");
    // A template's instance as a debugger names it.
    assert!(
        err.contains(
            "hcr: crash: SIGSEGV in work:ns::Box<int, 3>::get (work.cpp:2), image generation 0\n"
        ),
        "{err}"
    );
    let line = line_of(work, "CALL");
    assert!(
        err.contains(&format!(
            "hcr:     at work:ns::Worker::run (work.cpp:{line}), image generation 0\n"
        )),
        "{err}"
    );
    assert!(err.contains("hcr:     at main:main (main.cpp:2)"), "{err}");
}

/// Two static functions gcc inlines at -O2 (each called once), the
/// innermost faulting after a store of its own.
const INLINED: &str = r#"int *volatile where;
volatile int sink;
static int deep(int *p, int k) {
    sink = k;
    return p[k] * 3; /* DEEP */
}
static int mid(int *p, int k) {
    sink = 1;
    int r = deep(p, k + 1); /* MID */
    return r + 1;
}
int work(int k) {
    return mid(where, k) + 7; /* WORK */
}
"#;

/// The same without the stores: the fault is the first instruction of
/// both inlined calls.
const INLINED_AT_ENTRY: &str = r#"int *volatile where;
static int deep(int *p, int k) {
    return p[k] * 3;
}
static int mid(int *p, int k) {
    int r = deep(p, k + 1);
    return r + 1;
}
int work(int k) {
    return mid(where, k) + 7; /* WORK */
}
"#;

/// The module frames of a report, without their generation.
fn places(err: &str) -> Vec<String> {
    frames_of(err)
        .iter()
        .map(|f| {
            let f = f.trim_start_matches("hcr:     at ");
            f.split(", image generation")
                .next()
                .unwrap_or(f)
                .to_string()
        })
        .collect()
}

#[test]
fn calls_the_compiler_inlined_are_frames_of_their_own() {
    // (Not a tail call: main stays on the stack.)
    let main =
        "int work(int);\nint main(int argc, char **argv) { (void)argv; return work(argc) + 1; }\n";
    // DWARF 5 (the compiler's default: address and range list forms of
    // their own) and DWARF 4 (`.debug_ranges`).
    for dwarf in ["-gdwarf-5", "-gdwarf-4"] {
        let t = tempfile::tempdir().unwrap();
        let sources = [("main.c", main), ("lib.c", INLINED)];
        let (status, err) = build_and_run(t.path(), &sources, "-O2", &["-g", dwarf]);
        assert_eq!(status.signal(), Some(libc::SIGSEGV), "{dwarf}: {err}");
        let at = |f: &str, marker: &str| format!("lib:{f} (lib.c:{})", line_of(INLINED, marker));
        // Named after the innermost inlined function, at its line, as a
        // debugger's frame 0.
        let deep = at("deep", "DEEP");
        assert!(
            err.contains(&format!(
                "hcr: crash: SIGSEGV in {deep}, image generation 0\n"
            )),
            "{dwarf}: {err}"
        );
        // Then each function it was inlined into, at the line of the call.
        let want = [
            deep,
            at("mid", "MID"),
            at("work", "WORK"),
            "main:main (main.c:2)".to_string(),
        ];
        assert_eq!(places(&err), want, "{dwarf}: {err}");
        // A fault on the first instruction of inlined calls is, as a
        // debugger shows it, at the call in the function they were
        // inlined into: their frames are not listed yet.
        let sources = [("main.c", main), ("lib.c", INLINED_AT_ENTRY)];
        let (_, err) = build_and_run(t.path(), &sources, "-O2", &["-g", dwarf]);
        let work = format!("lib:work (lib.c:{})", line_of(INLINED_AT_ENTRY, "WORK"));
        assert_eq!(
            places(&err),
            [work, "main:main (main.c:2)".to_string()],
            "{dwarf}: {err}"
        );
    }
}

#[test]
fn an_inlined_cxx_method_is_named_by_its_qualified_name() {
    let t = tempfile::tempdir().unwrap();
    let work = "int *volatile where;\nvolatile int sink;\n\
                namespace ns { struct Counter { int *p;\n\
                int get(int k) const { sink = k; return p[k] * 5; } }; } /* GET */\n\
                static int use(const ns::Counter &c, int k) { sink = 2; return c.get(k) + 1; } /* USE */\n\
                int work(int k) { ns::Counter c{where}; return use(c, k) * 2; } /* WORK */\n";
    let main = "int work(int);\nint main(int argc, char **) { return work(argc) + 1; }\n";
    let sources = [("main.cpp", main), ("work.cpp", work)];
    let (status, err) = build_and_run(t.path(), &sources, "-O2", &["-g"]);
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{err}");
    let frames = frames_of(&err);
    let names: Vec<&str> = frames
        .iter()
        .map(|f| {
            let f = f.trim_start_matches("hcr:     at ");
            f.split(" (").next().unwrap_or(f)
        })
        .collect();
    assert_eq!(
        names,
        [
            "work:ns::Counter::get",
            "work:use",
            "work:work",
            "main:main"
        ],
        "{err}"
    );
    let (use_line, work_line) = (line_of(work, "USE"), line_of(work, "WORK"));
    let get_line = line_of(work, "GET");
    assert!(
        frames[0].contains(&format!("(work.cpp:{get_line})")),
        "{err}"
    );
    assert!(
        frames[1].contains(&format!("(work.cpp:{use_line})")),
        "{err}"
    );
    assert!(
        frames[2].contains(&format!("(work.cpp:{work_line})")),
        "{err}"
    );
}

#[test]
fn a_crash_in_a_lambda_names_it_as_a_debugger_does() {
    let t = tempfile::tempdir().unwrap();
    let work = "#include <algorithm>\n#include <vector>\nint *volatile where;\n\
                int work(int k) {\n\
                  std::vector<int> v{3, 1, 2};\n\
                  std::sort(v.begin(), v.end(), [k](int a, int b) { return a + *where < b + k; }); /* LAMBDA */\n\
                  return v[0];\n}\n";
    let main = "int work(int);\nint main(int argc, char **) { return work(argc) + 1; }\n";
    let sources = [("main.cpp", main), ("work.cpp", work)];
    let (status, err) = build_and_run(t.path(), &sources, "-O0", &["-g"]);
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{err}");
    let line = line_of(work, "LAMBDA");
    assert!(
        err.contains(&format!(
            "hcr: crash: SIGSEGV in work:work(int)::{{lambda(int, int)#1}}::operator() (work.cpp:{line}), image generation 0\n"
        )),
        "{err}"
    );
    // The C++ library's templates instantiated on the closure type are
    // named with it, down to the function that called `std::sort`.
    assert!(
        err.contains(
            "work:__gnu_cxx::__ops::_Iter_comp_iter<work(int)::{lambda(int, int)#1}>::operator()<"
        ),
        "{err}"
    );
    assert!(
        err.contains(&format!("hcr:     at work:work (work.cpp:{line})")),
        "{err}"
    );
    assert!(!frames_of(&err).iter().any(|f| f.contains(":_Z")), "{err}");
}

/// A crash in a signal handler: the backtrace goes on, past the signal
/// frame, with the code the signal interrupted, as gdb's does.
const IN_HANDLER: &str = r#"#include <signal.h>
#include <string.h>
#include <unistd.h>
volatile int sink;
int *volatile np;
__attribute__((noinline)) static void in_handler(void) { *np = 1; sink++; } /* FAULT */
static void handler(int s) { (void)s; in_handler(); sink++; }
__attribute__((noinline)) void busy_loop(void) { for (;;) { sink++; } } /* LOOP */
__attribute__((noinline)) void start(void) {
    struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = handler;
    sigaction(SIGALRM, &sa, 0);
    ualarm(20000, 0);
    busy_loop(); /* START */
}
"#;

#[test]
fn the_backtrace_goes_on_past_a_signal_handler_to_the_interrupted_code() {
    let main = "void start(void);\nint main(void) { start(); return 1; }\n";
    let (status, err) = crash_run(IN_HANDLER, main, "-O1");
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{err}");
    let at = |f: &str, marker: &str| {
        format!(
            "hcr:     at lib:{f} (lib.c:{}), image generation 0",
            line_of(IN_HANDLER, marker)
        )
    };
    let frames = frames_of(&err);
    assert_eq!(
        frames[..4],
        [
            at("in_handler", "FAULT"),
            format!(
                "hcr:     at lib:handler (lib.c:{}), image generation 0",
                line_of(IN_HANDLER, "FAULT") + 1
            ),
            at("busy_loop", "LOOP"),
            at("start", "START"),
        ],
        "{err}"
    );
}

/// An `assert` that fails under recursion, at -O0: the C library's frames
/// (`__assert_fail`, `abort`, `raise`) are unwound by their own tables, so
/// every module frame is listed, each recursive call once.
const ASSERT_DEEP: &str = r#"#include <assert.h>
int check(int x) { assert(x == 0); return x; } /* ASSERT */
int deep(int n, int x) {
    if (n == 0) return check(x); /* LEAF */
    return deep(n - 1, x) + 1; /* RECURSE */
}
"#;

#[test]
fn a_failed_assert_lists_every_module_frame_below_the_c_library() {
    let main = "int deep(int, int);\nint main(int argc, char **argv) { (void)argv; return deep(3, argc); }\n";
    for opt in ["-O0", "-O1"] {
        let (status, err) = crash_run(ASSERT_DEEP, main, opt);
        assert_eq!(status.signal(), Some(libc::SIGABRT), "{err}");
        // The C library names the program, as natively (argv[0]).
        let first = err.lines().next().unwrap_or("");
        let assertion = format!(
            "lib.c:{}: check: Assertion `x == 0' failed.",
            line_of(ASSERT_DEEP, "ASSERT")
        );
        assert!(
            first.starts_with("app.hcr: ") && first.ends_with(&assertion),
            "{err}"
        );
        let at = |f: &str, marker: &str| {
            format!(
                "hcr:     at lib:{f} (lib.c:{}), image generation 0",
                line_of(ASSERT_DEEP, marker)
            )
        };
        let frames: Vec<String> = frames_of(&err).into_iter().map(str::to_string).collect();
        if opt == "-O0" {
            assert_eq!(
                frames,
                [
                    at("check", "ASSERT"),
                    at("deep", "LEAF"),
                    at("deep", "RECURSE"),
                    at("deep", "RECURSE"),
                    at("deep", "RECURSE"),
                    "hcr:     at main:main (main.c:2), image generation 0".to_string(),
                ],
                "{err}"
            );
        } else {
            assert_eq!(frames.first(), Some(&at("check", "ASSERT")), "{err}");
            assert_eq!(
                frames.last().map(String::as_str),
                Some("hcr:     at main:main (main.c:2), image generation 0"),
                "{err}"
            );
        }
    }
}

/// A module function called back by the C library (`qsort`) crashes: the
/// backtrace goes on through the C library's frames to the module code
/// that called it.
const CALLBACK: &str = r#"#include <stdlib.h>
int *volatile np;
static int cmp(const void *a, const void *b) {
    return *np + (*(const int *)a - *(const int *)b); /* FAULT */
}
int sort(int *v, int n) {
    qsort(v, n, sizeof *v, cmp); /* SORT */
    return v[0];
}
"#;

#[test]
fn a_crash_in_a_callback_of_the_c_library_lists_the_module_frame_that_called_it() {
    let main = "int sort(int *, int);\nint main(void) { int v[4] = {4, 3, 2, 1}; return sort(v, 4) + 1; }\n";
    for opt in ["-O0", "-O2"] {
        let (status, err) = crash_run(CALLBACK, main, opt);
        assert_eq!(status.signal(), Some(libc::SIGSEGV), "{err}");
        let frames = frames_of(&err);
        assert_eq!(
            frames,
            [
                format!(
                    "hcr:     at lib:cmp (lib.c:{}), image generation 0",
                    line_of(CALLBACK, "FAULT")
                ),
                format!(
                    "hcr:     at lib:sort (lib.c:{}), image generation 0",
                    line_of(CALLBACK, "SORT")
                ),
                "hcr:     at main:main (main.c:2), image generation 0".to_string(),
            ],
            "{opt}: {err}"
        );
    }
}

/// Threads that crash at once: one report is written whole (the others
/// wait for it), then the process dies of the signal.
const THREADS: &str = r#"#include <pthread.h>
#include <unistd.h>
int *volatile np;
static void *worker(void *arg) {
    (void)arg;
    usleep(1000);
    *np = 1; /* FAULT */
    return 0;
}
void start(void) {
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], 0, worker, 0);
    for (int i = 0; i < 4; i++) pthread_join(t[i], 0);
}
"#;

#[test]
fn threads_that_crash_at_once_give_one_whole_report() {
    let main = "void start(void);\nint main(void) { start(); return 0; }\n";
    let t = tempfile::tempdir().unwrap();
    let sources = [("main.c", main), ("lib.c", THREADS)];
    let at = format!(
        "hcr:     at lib:worker (lib.c:{}), image generation 0",
        line_of(THREADS, "FAULT")
    );
    for _ in 0..5 {
        let (status, err) = build_and_run(t.path(), &sources, "-O0", &["-g", "-pthread"]);
        assert_eq!(status.signal(), Some(libc::SIGSEGV), "{err}");
        let mut lines = err.lines();
        assert_eq!(
            lines.next(),
            Some(&*at.replace("hcr:     at", "hcr: crash: SIGSEGV in")),
            "{err}"
        );
        assert_eq!(lines.next(), Some(&*at), "{err}");
    }
}

/// A backtrace deeper than the report lists ends with a line that says
/// so.
const DEEP: &str = r#"int *volatile np;
int down(int n) {
    if (n == 0) return *np; /* FAULT */
    return down(n - 1) + 1; /* RECURSE */
}
"#;

#[test]
fn a_backtrace_cut_short_says_so() {
    let main = "int down(int);\nint main(void) { return down(300); }\n";
    let (status, err) = crash_run(DEEP, main, "-O0");
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{err}");
    let frames = frames_of(&err).len();
    assert_eq!(frames, 256, "{err}");
    assert!(
        err.ends_with("hcr:     ... (more frames, not listed)\n"),
        "{err}"
    );
    // Shallower, every frame is listed and nothing more.
    let main = "int down(int);\nint main(void) { return down(200); }\n";
    let (_, err) = crash_run(DEEP, main, "-O0");
    let frames = frames_of(&err).len();
    assert_eq!(frames, 202, "{err}");
    assert!(
        err.ends_with("hcr:     at main:main (main.c:2), image generation 0\n"),
        "{err}"
    );
}

/// A thread module code started overflows its stack: it has an alternate
/// signal stack, so the report is written, as for the main thread.
const THREAD_OVERFLOW: &str = r#"#include <pthread.h>
volatile int sink;
int down(int n) {
    volatile char pad[256];
    pad[0] = (char)n;
    return down(n + 1) + pad[0]; /* RECURSE */
}
static void *worker(void *arg) { (void)arg; sink = down(0); return 0; }
void start(void) {
    pthread_t t;
    pthread_create(&t, 0, worker, 0);
    pthread_join(t, 0);
}
"#;

#[test]
fn a_thread_that_overflows_its_stack_is_reported() {
    let main = "void start(void);\nint main(void) { start(); return 0; }\n";
    let t = tempfile::tempdir().unwrap();
    let sources = [("main.c", main), ("lib.c", THREAD_OVERFLOW)];
    let (status, err) = build_and_run(t.path(), &sources, "-O0", &["-g", "-pthread"]);
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{err}");
    assert!(
        err.starts_with("hcr: crash: SIGSEGV in lib:down (lib.c:"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "hcr:     at lib:down (lib.c:{}), image generation 0\n",
            line_of(THREAD_OVERFLOW, "RECURSE")
        )),
        "{err}"
    );
}

/// A thread the C++ library starts (`std::thread`, which calls
/// `pthread_create` from libstdc++, not from module code) overflows its
/// stack: `hcr` gives every thread of the process an alternate signal
/// stack, so the report is written.
const STD_THREAD_OVERFLOW: &str = r#"#include <thread>
volatile int sink;
int down(int n) {
    volatile char pad[256];
    pad[0] = (char)n;
    return down(n + 1) + pad[0]; /* RECURSE */
}
void start() {
    std::thread t([] { sink = down(0); });
    t.join();
}
"#;

#[test]
fn a_std_thread_that_overflows_its_stack_is_reported() {
    let main = "void start();\nint main() { start(); return 0; }\n";
    let t = tempfile::tempdir().unwrap();
    let sources = [("main.cpp", main), ("lib.cpp", STD_THREAD_OVERFLOW)];
    let (status, err) = build_and_run(t.path(), &sources, "-O0", &["-g", "-pthread"]);
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{err}");
    assert!(
        err.starts_with("hcr: crash: SIGSEGV in lib:down (lib.cpp:"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "hcr:     at lib:down (lib.cpp:{}), image generation 0\n",
            line_of(STD_THREAD_OVERFLOW, "RECURSE")
        )),
        "{err}"
    );
}
