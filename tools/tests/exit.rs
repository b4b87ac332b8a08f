//! A program leaves as it would natively: its `atexit` and `at_quick_exit`
//! handlers, its `pthread_atfork` handlers and its modules' destructors
//! run, in the same order, whether `main` returns or calls `exit` or
//! `quick_exit`. (glibc keeps `atexit`, `at_quick_exit` and
//! `pthread_atfork` in libc_nonshared.a, linked into each executable, not in
//! libc.so: the runtime provides them.)

mod support;

use std::process::Command;

const MAIN: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <unistd.h>
#include <sys/wait.h>
void lib_hello(void);
__attribute__((destructor)) static void main_bye(void) { printf("main: destructor\n"); }
static void first(void) { printf("main: atexit first\n"); }
static void second(void) { printf("main: atexit second\n"); }
static void quick(void) { printf("main: at_quick_exit\n"); fflush(stdout); }
static int forks;
static void in_child(void) { forks++; }
int main(int argc, char **argv) {
  atexit(first);
  atexit(second);
  at_quick_exit(quick);
  pthread_atfork(NULL, NULL, in_child);
  lib_hello();
  pid_t p = fork();
  if (p == 0) { printf("child: %d fork handler run\n", forks); fflush(stdout); _exit(0); }
  waitpid(p, NULL, 0);
  printf("main: done\n");
  fflush(stdout);
  if (argc > 1 && argv[1][0] == 'q') quick_exit(4);
  if (argc > 1) exit(3);
  return 0;
}
"#;

const LIB: &str = r#"
#include <stdio.h>
#include <stdlib.h>
static void lib_exit(void) { printf("lib: atexit from a constructor\n"); }
__attribute__((constructor)) static void lib_init(void) { atexit(lib_exit); }
__attribute__((destructor)) static void lib_bye(void) { printf("lib: destructor\n"); }
void lib_hello(void) { printf("lib: hello\n"); }
"#;

#[test]
fn exit_handlers_and_destructors_run_as_natively() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let objs = [
        support::module(d, "main", MAIN, "-O1"),
        support::module(d, "lib", LIB, "-O1"),
    ];
    let native = d.join("native");
    let st = Command::new("cc")
        .args(&objs)
        .arg("-o")
        .arg(&native)
        .status()
        .unwrap();
    assert!(st.success());
    let img = d.join("app.hcr");
    let out = support::link(&img, &objs);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "no warning about atexit and the rest: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for args in [&[][..], &["exit"][..], &["quick"][..]] {
        let want = Command::new(&native).args(args).output().unwrap();
        let got = Command::new(support::hcr_bin())
            .arg("run")
            .arg(&img)
            .arg("--")
            .args(args)
            .output()
            .unwrap();
        let (w, g) = (
            String::from_utf8_lossy(&want.stdout),
            String::from_utf8_lossy(&got.stdout),
        );
        // Destructors run in the reverse of the constructors' order. That
        // is link order natively (main's first, so lib's destructor runs
        // first); under hcr it is the import tree's (lib, imported by
        // main, is constructed first, so destroyed last). Everything else
        // is the native output line for line.
        let dtors = |s: &str| -> (Vec<String>, Vec<String>) {
            s.lines()
                .map(String::from)
                .partition(|l| !l.ends_with(": destructor"))
        };
        let ((w_rest, w_dtors), (g_rest, g_dtors)) = (dtors(&w), dtors(&g));
        assert_eq!(
            g_rest,
            w_rest,
            "{args:?}: {}",
            String::from_utf8_lossy(&got.stderr)
        );
        assert_eq!(w_dtors.len(), g_dtors.len(), "{args:?}: {g}");
        if !g_dtors.is_empty() {
            assert_eq!(g_dtors, ["main: destructor", "lib: destructor"], "{args:?}");
            assert!(g.ends_with("main: destructor\nlib: destructor\n"), "{g}");
        }
        assert_eq!(got.status.code(), want.status.code(), "{args:?}");
        // (The native order, checked once: handlers registered later run
        // first, destructors after every handler.)
        if args.is_empty() {
            let lines: Vec<&str> = w.lines().collect();
            let at = |l: &str| lines.iter().position(|x| *x == l).unwrap();
            assert!(at("main: atexit second") < at("main: atexit first"));
            assert!(at("lib: atexit from a constructor") > at("main: atexit first"));
            assert!(at("lib: destructor") > at("lib: atexit from a constructor"));
            assert!(w.contains("child: 1 fork handler run"));
        }
    }
}
