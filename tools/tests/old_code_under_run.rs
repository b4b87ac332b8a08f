//! Under `hcr run` old code stays mapped for the whole run: a worker thread
//! that stays in a changed module's old code through several reloads (each
//! more than 100 ms apart, which would let a host's runtime free it) keeps
//! running that code (invisible to the reloading thread). With
//! `HCR_KEEP_RETIRED_IMAGES=0` the runtime frees old images as a host's
//! does (and this worker then runs whatever took its code's place).

mod support;

use std::path::{Path, PathBuf};

const MAIN: &str = r#"#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
#include <hcr.h>
void *worker(void *);
extern volatile int stop;
int main(int argc, char **argv) {
    pthread_t t;
    for (int i = 1; i < argc; i++) {
        rename(argv[i], argv[0]);
        printf("reload %d\n", hcr_perform_code_reload());
        fflush(stdout);
        /* The worker runs the code the first reload loaded (an area of its
         * own, which later reloads retire). */
        if (i == 1) pthread_create(&t, 0, worker, 0);
        usleep(150000);
    }
    stop = 1;
    pthread_join(t, 0);
    return 0;
}
"#;

/// The worker's module, version `v`: it loops in its own frame until told
/// to stop, then says which version it ran. A function before it grows
/// with `v`, so each version's loop lies elsewhere in its segment (old code
/// freed and overwritten would not resume where it left off).
fn work(v: u32) -> String {
    let filler = "x++; ".repeat(40 * v as usize);
    format!(
        r#"#include <stdio.h>
#include <unistd.h>
volatile int stop;
void filler_{v}(void) {{ volatile int x = 0; {filler} }}
__attribute__((noinline)) int step(int n) {{ return n + 1; }}
void *worker(void *a) {{
    int n = 0;
    while (!stop) {{ n = step(n); usleep(1000); }}
    printf("worker exits v{v} after %s\n", n > 0 ? "looping" : "nothing");
    fflush(stdout);
    return 0;
}}
"#
    )
}

fn images(d: &Path) -> Vec<PathBuf> {
    let versions: Vec<(String, String)> = (1..=5).map(|v| (format!("v{v}"), work(v))).collect();
    let versions: Vec<(&str, &str)> = versions
        .iter()
        .map(|(t, c)| (t.as_str(), c.as_str()))
        .collect();
    support::versioned_images(d, MAIN, "work", &versions, ("-O2", &[]))
}

#[test]
fn a_thread_in_old_code_keeps_running_it_through_reloads() {
    let t = tempfile::tempdir().unwrap();
    let imgs = images(t.path());
    let (status, out, err) = support::run_args(&imgs[0], &imgs[1..]);
    assert!(status.success(), "{out}\n{err}");
    assert_eq!(
        out, "reload 1\nreload 1\nreload 1\nreload 1\nworker exits v2 after looping\n",
        "{err}"
    );
}

/// A function removed by a reload while a frame of its module's old code
/// still runs and calls it: the frame keeps calling its old version (never
/// the removed-function stub), and a warning names the function.
#[test]
fn a_removed_function_that_an_old_frame_calls_is_named_in_a_warning() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let main = "void lib_run(char **argv);\nint main(int argc, char **argv) { lib_run(argv); return 0; }\n";
    let v0 = r#"#include <stdio.h>
#include <hcr.h>
__attribute__((noipa)) int step_fn(void) { return 1; }
void lib_run(char **argv) {
    printf("before %d\n", step_fn());
    rename(argv[1], argv[0]);
    printf("reload %d\n", hcr_perform_code_reload());
    printf("after %d\n", step_fn());
    fflush(stdout);
}
"#;
    let v1 = v0
        .replace(
            "int step_fn(void) { return 1; }",
            "int step_fn2(void) { return 2; }",
        )
        .replace("step_fn()", "step_fn2()");
    let imgs = support::versioned_images(d, main, "lib", &[("v0", v0), ("v1", &v1)], ("-O2", &[]));
    let (status, out, err) = support::run_args(&imgs[0], &imgs[1..]);
    assert!(status.success(), "{out}\n{err}");
    assert_eq!(out, "before 1\nreload 1\nafter 1\n", "{err}");
    assert!(
        err.contains("hcr: warning: lib:step_fn was removed, but old code of lib"),
        "{err}"
    );
}
