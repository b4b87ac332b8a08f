//! The crash guard (`hcr_guard`): a crash in code from the latest reload
//! rolls back to the previous generation, globals kept, and the program
//! carries on; a crash in code of an older generation is reported without a
//! rollback; the Rust API does the same.

mod support;

use std::path::{Path, PathBuf};

/// The main loop: six frames of `work` under the guard; before frame 2 it
/// puts the image named by its first argument (unless `-`) in place and
/// reloads.
const MAIN: &str = r#"#include <stdio.h>
#include <hcr.h>
int ticks;
char **args;
int work(int t);
static void frame(void *arg) { ticks += work(*(int *)arg); }
int main(int argc, char **argv) {
    args = argv;
    for (int i = 0; i < 6; i++) {
        if (i == 2 && argc > 1 && argv[1][0] != '-') {
            rename(argv[1], argv[0]);
            printf("reload %d\n", hcr_perform_code_reload());
        }
        int rc = hcr_guard(frame, &i);
        char err[512];
        snprintf(err, sizeof err, "%s", hcr_last_error());
        printf("frame %d rc %d ticks %d changed %d\n", i, rc, ticks, hcr_has_any_module_changed());
        if (rc) printf("error: %s\n", err);
        fflush(stdout);
    }
    printf("again %d\n", hcr_perform_code_reload());
    return 0;
}
"#;

fn build(dir: &Path, tag: &str, util: &str) -> PathBuf {
    let d = dir.join(tag);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("main.c"), MAIN).unwrap();
    std::fs::write(d.join("util.c"), util).unwrap();
    let (m, u) = (d.join("main.o"), d.join("util.o"));
    support::compile(&d.join("main.c"), &m, "-O1", &["-g"]);
    support::compile(&d.join("util.c"), &u, "-O1", &["-g"]);
    let img = dir.join(format!("{tag}.hcr"));
    support::link_ok(&img, &[m, u]);
    img
}

fn run(img: &Path, next: &Path) -> (String, String, Option<i32>) {
    let o = support::hcr_command()
        .arg("run")
        .arg(img)
        .arg("--")
        .arg(next)
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        o.status.code(),
    )
}

#[test]
fn a_crash_in_the_latest_reload_rolls_back_with_globals_kept() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let v1 = build(d, "v1", "int work(int t) { return 1; }\n");
    let v2 = build(
        d,
        "v2",
        "volatile int zero;\nint work(int t) {\n    return 10 / zero;\n}\n",
    );
    let (out, err, code) = run(&v1, &v2);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_eq!(
        out,
        "frame 0 rc 0 ticks 1 changed 0\n\
         frame 1 rc 0 ticks 2 changed 0\n\
         reload 2\n\
         frame 2 rc -1 ticks 2 changed 0\n\
         error: crash: SIGFPE in util:work (util.c:3), image generation 1; rolled back to image generation 0 (the crashed image runs again only once the file changes)\n\
         frame 3 rc 0 ticks 3 changed 0\n\
         frame 4 rc 0 ticks 4 changed 0\n\
         frame 5 rc 0 ticks 5 changed 0\n\
         again 0\n",
        "{err}"
    );
    assert!(
        err.starts_with("hcr: crash: SIGFPE in util:work (util.c:3), image generation 1\n"),
        "{err}"
    );
    assert!(
        err.ends_with(
            "hcr: rolled back to image generation 0 after a crash in image generation 1\n"
        ),
        "{err}"
    );
}

#[test]
fn a_crash_in_an_older_generation_is_reported_without_rollback() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // v1's work reloads to v2 from inside frame 3, then crashes in its own
    // (now old, generation 0) code; v2 runs normally afterwards.
    let v1 = build(
        d,
        "v1",
        r#"#include <stdio.h>
#include <hcr.h>
extern char **args;
volatile int zero;
int work(int t) {
    if (t == 3) {
        rename(args[2], args[0]);
        hcr_perform_code_reload();
        return 10 / zero;
    }
    return 1;
}
"#,
    );
    let v2 = build(d, "v2", "int work(int t) { return 100; }\n");
    let staged = d.join("staged.hcr");
    std::fs::copy(&v2, &staged).unwrap();
    let o = support::hcr_command()
        .arg("run")
        .arg(&v1)
        .arg("--")
        .arg("-")
        .arg(&staged)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert_eq!(
        out,
        "frame 0 rc 0 ticks 1 changed 0\n\
         frame 1 rc 0 ticks 2 changed 0\n\
         frame 2 rc 0 ticks 3 changed 0\n\
         frame 3 rc -1 ticks 3 changed 0\n\
         error: crash: SIGFPE in util:work (util.c:9), image generation 0\n\
         frame 4 rc 0 ticks 103 changed 0\n\
         frame 5 rc 0 ticks 203 changed 0\n\
         again 0\n",
        "{err}"
    );
    assert!(
        err.starts_with("hcr: crash: SIGFPE in util:work (util.c:9), image generation 0\n"),
        "{err}"
    );
    assert!(!err.contains("rolled back"), "{err}");
}

#[test]
fn the_rust_api_guards_too() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let v1 = build(d, "v1", "int work(int t) { return 1; }\n");
    let v2 = build(d, "v2", "int work(int t) { return *(volatile int *)0; }\n");
    let app = d.join("app.hcr");
    std::fs::copy(&v1, &app).unwrap();
    let rt = hcr_runtime::Runtime::open(&app).expect("load");
    // SAFETY: `work` is `int work(int)` in the image.
    let work: extern "C" fn(i32) -> i32 = unsafe { rt.get_proc("util", "work") }.expect("work");
    unsafe extern "C" fn call(arg: *mut std::ffi::c_void) {
        // SAFETY: `arg` is the function pointer passed below.
        let f: extern "C" fn(i32) -> i32 = unsafe { std::mem::transmute(arg) };
        f(0);
    }
    let arg = work as *mut std::ffi::c_void;
    // SAFETY: `call` takes that pointer.
    assert!(unsafe { rt.guard(call, arg) }.is_ok());
    std::fs::rename(&v2, &app).unwrap();
    // main and util (their debug information names their folders).
    assert_eq!(rt.reload().expect("reload"), 2);
    // SAFETY: as above.
    let e = unsafe { rt.guard(call, arg) }.expect_err("crash");
    assert!(
        e.to_string()
            .starts_with("crash: SIGSEGV in util:work (util.c:1), image generation 1; rolled back"),
        "{e}"
    );
    // Rolled back: v1's code runs through the same permanent address.
    // SAFETY: as above.
    assert!(unsafe { rt.guard(call, arg) }.is_ok());
    assert!(!rt.has_any_module_changed());
}

/// The guarded function itself reloads (its module changes) and then
/// crashes in its own, now old, code: the report names generation 0 and
/// nothing is rolled back, so the new code keeps running.
#[test]
fn a_guarded_function_that_crashes_after_reloading_itself_keeps_the_new_code() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let lib_v0 = r#"#include <stdio.h>
#include <hcr.h>
int ver(void) { return 0; }
void lib_fn(void *arg) {
    char **paths = arg;
    rename(paths[0], paths[1]);
    printf("reload %d\n", hcr_perform_code_reload());
    fflush(stdout);
    *(volatile int *)0 = 1; /* CRASH */
}
"#;
    let main = r#"#include <stdio.h>
#include <hcr.h>
void lib_fn(void *); int ver(void);
int main(int argc, char **argv) {
    char *paths[2] = { argv[1], argv[0] };
    int g = hcr_guard(lib_fn, paths);
    printf("guard %d ver %d generation %u\n", g, ver(), hcr_generation());
    printf("error: %s\n", hcr_last_error());
    return 0;
}
"#;
    let lib_v1 = lib_v0.replace("return 0;", "return 1;");
    let imgs = support::versioned_images(
        d,
        main,
        "lib",
        &[("v0", lib_v0), ("v1", &lib_v1)],
        ("-O1", &["-g"]),
    );
    let (status, out, err) = support::run_args(&imgs[0], &imgs[1..]);
    assert_eq!(status.code(), Some(0), "{out}\n{err}");
    assert_eq!(
        out,
        "reload 1\n\
         guard -1 ver 1 generation 1\n\
         error: crash: SIGSEGV in lib:lib_fn (lib.c:9), image generation 0\n",
        "{err}"
    );
    assert!(
        err.starts_with("hcr: crash: SIGSEGV in lib:lib_fn (lib.c:9), image generation 0\n"),
        "{err}"
    );
    assert!(!err.contains("rolled back"), "{err}");
}

/// A reload that removes globals and then crashes: the rollback brings the
/// globals back with their values (the restored code uses them), and a
/// later image that has them again keeps those values.
#[test]
fn a_rollback_brings_back_the_globals_the_crashed_reload_removed() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let main = r#"#include <stdio.h>
#include <hcr.h>
void frame(void *);
int main(int argc, char **argv) {
    for (int i = 0; i < 6; i++) {
        if (i == 2 || i == 4) {
            rename(argv[i / 2], argv[0]);
            printf("reload %d\n", hcr_perform_code_reload());
        }
        if (hcr_guard(frame, 0)) printf("guard -1\n");
        fflush(stdout);
    }
    return 0;
}
"#;
    let v0 = r#"#include <stdio.h>
int ticks; int keepme = 7;
void frame(void *a) {
    static int last = -1;
    ticks++;
    printf("VER ticks=%d keepme=%d last=%d\n", ticks, keepme, last);
    keepme = ticks * 100; last = ticks;
}
"#;
    let v1 = r#"#include <stdio.h>
int ticks;
void frame(void *a) { ticks++; volatile int z = 0; printf("v1 %d\n", ticks / z); }
"#;
    let (v0a, v2a) = (v0.replace("VER", "v0"), v0.replace("VER", "v2"));
    let imgs = support::versioned_images(
        d,
        main,
        "fr",
        &[("v0", &v0a), ("v1", v1), ("v2", &v2a)],
        ("-O2", &[]),
    );
    let (status, out, err) = support::run_args(&imgs[0], &imgs[1..]);
    assert!(status.success(), "{out}\n{err}");
    assert_eq!(
        out,
        "v0 ticks=1 keepme=7 last=-1\n\
         v0 ticks=2 keepme=100 last=1\n\
         reload 1\n\
         guard -1\n\
         v0 ticks=4 keepme=200 last=2\n\
         reload 1\n\
         v2 ticks=5 keepme=400 last=4\n\
         v2 ticks=6 keepme=500 last=5\n",
        "{err}"
    );
    assert!(err.contains("rolled back to image generation 0"), "{err}");
}

/// A reload whose new code crashes while the reload runs it (an
/// `HCR_ON_RELOAD` block) under the guard: the guard abandons the reload's
/// frames and rolls back, and the reload is no longer in progress, so the
/// next one (to a fixed version) goes through instead of failing with "a
/// reload is already in progress". `hcr_generation()` counts only the
/// reload that returned.
#[test]
fn a_crash_inside_a_reload_ends_that_reload() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let main = r#"#include <stdio.h>
#include <hcr.h>
int ver(void);
static void tick(void *a) { printf("reload %d\n", hcr_perform_code_reload()); fflush(stdout); }
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        rename(argv[i], argv[0]);
        int rc = hcr_guard(tick, 0);
        printf("guard %d, lib v%d, generation %u\n", rc, ver(), hcr_generation());
        fflush(stdout);
    }
    return 0;
}
"#;
    let v0 = "int ver(void) { return 0; }\n";
    let v1 = "#include <hcr.h>\nint ver(void) { return 1; }\n\
              HCR_ON_RELOAD(boom) { *(volatile int *)0 = 1; }\n";
    let v2 = "int ver(void) { return 2; }\n";
    let imgs = support::versioned_images(
        d,
        main,
        "lib",
        &[("v0", v0), ("v1", v1), ("v2", v2)],
        ("-O2", &[]),
    );
    let (status, out, err) = support::run_args(&imgs[0], &imgs[1..]);
    assert!(status.success(), "{out}\n{err}");
    assert_eq!(
        out,
        "guard -1, lib v0, generation 0\n\
         reload 1\n\
         guard 0, lib v2, generation 1\n",
        "{err}"
    );
    assert!(err.contains("rolled back to image generation 0"), "{err}");
}

/// A C++ exception the guarded function lets out ends in `std::terminate`,
/// as natively (no Rust frame may pass it on), and its abort is a crash
/// the guard catches: `hcr_guard` returns -1 and the program goes on. It
/// used to loop on crash reports forever.
#[test]
fn an_exception_that_leaves_a_guarded_function_is_a_crash_it_catches() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let src = d.join("main.cpp");
    std::fs::write(
        &src,
        "#include <cstdio>\n#include <stdexcept>\n#include \"hcr.h\"\n\
         static void fn(void *) { throw std::runtime_error(\"through guard\"); }\n\
         int main() {\n\
           try { int r = hcr_guard(fn, nullptr); std::printf(\"guard=%d\\n\", r); }\n\
           catch (std::exception &e) { std::printf(\"caught %s\\n\", e.what()); }\n\
           return 0;\n}\n",
    )
    .unwrap();
    let obj = d.join("main.o");
    support::compile(&src, &obj, "-O2", &[]);
    let img = d.join("app.hcr");
    support::link_ok(&img, &[obj]);
    let o = std::process::Command::new("timeout")
        .args(["-s", "KILL", "60"])
        .arg(support::hcr_bin())
        .arg("run")
        .arg(&img)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "guard=-1\n", "{err}");
    assert!(
        err.starts_with("terminate called after throwing an instance of 'std::runtime_error'\n  what():  through guard\n"),
        "{err}"
    );
    assert_eq!(
        err.matches("hcr: crash: SIGABRT in main:fn").count(),
        1,
        "{err}"
    );
}
