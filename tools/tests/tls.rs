//! Thread-local variables (`__thread`, C++ `thread_local`) in modules, with
//! real threads: each access model gcc emits for -fPIC (general dynamic,
//! local dynamic, TLS descriptors), values kept per thread across a reload
//! made while the threads hold them, a thread born after the reload, C++
//! constructors on first use and destructors at thread exit, threads
//! calling TLS code while another reloads, and thread exits that free
//! their blocks.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

fn build(dir: &Path, src: &Path, name: &str, flags: &[&str]) -> PathBuf {
    let o = dir.join(format!("{name}.o"));
    support::compile(src, &o, flags[0], &flags[1..]);
    o
}

/// The scenario of `testdata/tls`: main + lib v1, reloaded to lib v2 while
/// three threads hold values.
fn reload_scenario(flags: &[&str]) {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let src = support::repo().join("testdata/tls");
    let main = build(d, &src.join("main.c"), "main", flags);
    let v1 = d.join("v1");
    let v2 = d.join("v2");
    std::fs::create_dir_all(&v1).unwrap();
    std::fs::create_dir_all(&v2).unwrap();
    let l1 = build(&v1, &src.join("lib.v1.c"), "lib", flags);
    let l2 = build(&v2, &src.join("lib.v2.c"), "lib", flags);
    let app = d.join("app.hcr");
    let next = d.join("next.hcr");
    support::link_ok(&app, &[main.clone(), l1]);
    support::link_ok(&next, &[main, l2]);
    let inspect = support::hcr_command()
        .arg("inspect")
        .arg(&app)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&inspect.stdout);
    let gd = text
        .lines()
        .find(|l| l.contains(" gd_var "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        gd.trim_start().starts_with("tls") && gd.ends_with("thread-local"),
        "{gd}"
    );
    let json = support::hcr_command()
        .args(["inspect", "--json"])
        .arg(&app)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&json.stdout).contains("\"thread_local\": true"));
    let out = support::hcr_command()
        .arg("run")
        .arg(&app)
        .arg("--")
        .arg(&next)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{flags:?}\n{stdout}\n{stderr}");
    let want = std::fs::read_to_string(src.join("expect.txt")).unwrap();
    assert_eq!(stdout, want, "{flags:?}\nstderr: {stderr}");
    assert!(
        stderr.contains("lib:resized changed size (4 → 8 bytes)"),
        "{stderr}"
    );
}

#[test]
fn general_and_local_dynamic_o0() {
    reload_scenario(&["-O0"]);
}

#[test]
fn general_and_local_dynamic_o2() {
    reload_scenario(&["-O2"]);
}

#[test]
fn tls_descriptors() {
    reload_scenario(&["-O2", "-mtls-dialect=gnu2"]);
    reload_scenario(&["-O0", "-mtls-dialect=gnu2"]);
}

const CXX: &str = r#"
#include <cstdio>
#include <string>
#include <thread>
struct Tracker {
    std::string name;
    int uses = 0;
    Tracker() : name("tracker") { std::printf("construct\n"); std::fflush(stdout); }
    ~Tracker() { std::printf("destroy %s uses=%d\n", name.c_str(), uses); std::fflush(stdout); }
};
thread_local Tracker tracker;
thread_local int plain = 3;
static void use(int n) { for (int i = 0; i < n; i++) tracker.uses++; plain += n; }
int main() {
    std::thread a([] { use(2); });
    a.join();
    std::thread b([] { use(5); std::printf("b plain=%d\n", plain); });
    b.join();
    std::thread c([] { std::printf("c never touches tracker: plain=%d\n", plain); });
    c.join();
    use(1);
    std::printf("main plain=%d\n", plain);
    return 0;
}
"#;

#[test]
fn cxx_thread_local_constructed_on_first_use_destroyed_at_exit() {
    for opt in ["-O0", "-O2", "-mtls-dialect=gnu2"] {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("tl.cpp");
        std::fs::write(&src, CXX).unwrap();
        let flags = ["-fPIC", "-ffunction-sections", "-fdata-sections", opt];
        let (want, got) = support::native_and_image(t.path(), "g++", &flags, &[src]);
        assert!(
            got.status.success(),
            "{}",
            String::from_utf8_lossy(&got.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&got.stdout),
            String::from_utf8_lossy(&want.stdout)
        );
        assert!(String::from_utf8_lossy(&got.stdout).contains("destroy tracker uses=5"));
    }
}

const MANY_THREADS: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <string.h>
__thread char big[65536] = "x";
__thread int n = 1;
static void *run(void *a) { (void)a; big[100] = 1; n++; return n == 2 ? NULL : (void *)1; }
static long vm_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmSize:", 7) == 0) sscanf(line + 7, "%ld", &kb);
    if (f) fclose(f);
    return kb;
}
int main(void) {
    int bad = 0;
    n = 5;
    for (int i = 0; i < 3000; i++) {
        pthread_t t;
        void *r;
        pthread_create(&t, NULL, run, NULL);
        pthread_join(t, &r);
        bad += r != NULL;
    }
    long kb = vm_kb();
    printf("bad=%d main n=%d small=%d\n", bad, n, kb > 0 && kb < 4 * 1024 * 1024);
    return 0;
}
"#;

/// Thousands of short-lived threads: each frees its block at exit (a leak
/// would add 16 MiB of address space per thread: 47 GiB here; the process
/// itself, with its 2 GiB window, stays under 4 GiB).
#[test]
fn short_lived_threads_free_their_blocks() {
    let t = tempfile::tempdir().unwrap();
    let o = support::module(t.path(), "many", MANY_THREADS, "-O2");
    let img = t.path().join("app.hcr");
    support::link_ok(&img, &[o]);
    assert_eq!(support::run_ok(&img), "bad=0 main n=5 small=1\n");
}

const HOST: &str = r#"
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include "hcr.h"
static int (*bump)(void);
static int (*tag)(void);
static volatile int stop;
static long bad;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static void *worker(void *a) {
    (void)a;
    int mine = 0, wrong = 0;
    while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
        for (int i = 0; i < 100; i++) {
            if (bump() != ++mine) wrong++;
            int g = tag();
            if (g != 1 && g != 2) wrong++;
        }
        sched_yield(); /* under valgrind, one thread runs at a time */
    }
    pthread_mutex_lock(&m);
    bad += wrong;
    pthread_mutex_unlock(&m);
    return NULL;
}
static char *slurp(const char *p, long *n) {
    FILE *f = fopen(p, "rb");
    if (!f) { perror(p); exit(2); }
    fseek(f, 0, SEEK_END); *n = ftell(f); rewind(f);
    char *b = malloc(*n);
    if (fread(b, 1, *n, f) != (size_t)*n) exit(2);
    fclose(f);
    return b;
}
static void install(const char *app, const char *b, long n) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", app);
    FILE *f = fopen(tmp, "wb");
    if (!f || fwrite(b, 1, n, f) != (size_t)n || fclose(f)) exit(2);
    if (rename(tmp, app)) exit(2);
}
int main(int argc, char **argv) {
    if (argc < 5) return 2;
    long n1, n2;
    char *i1 = slurp(argv[2], &n1), *i2 = slurp(argv[3], &n2);
    int reloads = atoi(argv[4]);
    install(argv[1], i1, n1);
    if (hcr_init(argv[1]) != 0) { fprintf(stderr, "init: %s\n", hcr_last_error()); return 2; }
    bump = (int (*)(void))hcr_get_proc("lib", "bump");
    tag = (int (*)(void))hcr_get_proc("lib", "tag");
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, NULL);
    int ok = 0;
    for (int r = 0; r < reloads; r++) {
        if (r % 2 == 0) install(argv[1], i2, n2); else install(argv[1], i1, n1);
        if (hcr_perform_code_reload() == 1) ok++;
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    printf("reloads=%d bad=%ld\n", ok, bad);
    return bad != 0;
}
"#;

fn lib(tagv: u32) -> String {
    format!(
        "__thread int count;\nstatic __thread int shadow;\nint bump(void) {{ shadow++; return ++count == shadow ? count : -1; }}\nint tag(void) {{ return {tagv}; }}\n"
    )
}

/// Four threads keep per-thread counters in module TLS while the main
/// thread reloads between two images: no value is lost or torn. Under
/// `HCR_HOST_WRAPPER` (valgrind), as `threads.rs`.
#[test]
fn threads_use_tls_while_another_reloads() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let a = support::lib_image(d, "a", &lib(1));
    let b = support::lib_image(d, "b", &lib(2));
    let src = d.join("host.c");
    std::fs::write(&src, HOST).unwrap();
    let host = d.join("host");
    support::c_host(&src, &host, &["-O2", "-pthread"]);
    let reloads = std::env::var("HCR_THREAD_RELOADS").unwrap_or_else(|_| "40".into());
    let wrapper = std::env::var("HCR_HOST_WRAPPER").unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    let mut cmd = match words.next() {
        Some(w) => {
            let mut c = Command::new(w);
            c.args(words).arg(&host);
            c
        }
        None => Command::new(&host),
    };
    let out = cmd
        .arg(d.join("app.hcr"))
        .arg(&a)
        .arg(&b)
        .arg(&reloads)
        .env("HCR_KEEP_RETIRED_IMAGES", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, format!("reloads={reloads} bad=0\n"));
}

/// A thread-local variable removed by one reload and re-introduced by the
/// next starts fresh from its initialiser, in the thread that held the old
/// value and in a thread born later, as a global does.
#[test]
fn a_removed_then_readded_thread_local_starts_fresh() {
    use std::io::{BufRead as _, BufReader, Read as _};
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let main = support::module(
        d,
        "main",
        r#"#include <pthread.h>
        #include <stdio.h>
        #include <unistd.h>
        #include "hcr.h"
        int bump(void);
        static void *later(void *arg) { (void)arg; printf("thread %d\n", bump()); return 0; }
        static void wait_and_reload(void) {
            fflush(stdout);
            for (int i = 0; i < 24000 && !hcr_has_any_module_changed(); i++) usleep(5000);
            printf("reloaded %d\n", hcr_perform_code_reload());
        }
        int main(void) {
            int a = bump(), b = bump();
            printf("v1 %d %d\n", a, b);
            wait_and_reload();
            printf("v2 %d\n", bump());
            wait_and_reload();
            printf("v3 %d\n", bump());
            pthread_t th;
            pthread_create(&th, 0, later, 0);
            pthread_join(th, 0);
            return 0;
        }"#,
        "-O2",
    );
    let version = |tag: &str, code: &str| {
        let sub = d.join(tag);
        std::fs::create_dir_all(&sub).unwrap();
        support::module(&sub, "lib", code, "-O2")
    };
    let with_x = "__thread int x = 5; int bump(void) { return ++x; }";
    let l1 = version("v1", with_x);
    let l2 = version("v2", "int bump(void) { return -1; }");
    let l3 = version("v3", with_x);
    let app = d.join("app.hcr");
    support::link_ok(&app, &[main.clone(), l1]);
    let mut child = std::process::Command::new(support::hcr_bin())
        .arg("run")
        .arg(&app)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "v1 6 7\n");
    support::link_ok(&app, &[main.clone(), l2]);
    for want in ["reloaded 1\n", "v2 -1\n"] {
        line.clear();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, want);
    }
    support::link_ok(&app, &[main, l3]);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(child.wait().unwrap().success(), "{err}");
    // Fresh from the initialiser (5), not the old value (7).
    assert_eq!(rest, "reloaded 1\nv3 6\nthread 6\n", "{err}");
}
