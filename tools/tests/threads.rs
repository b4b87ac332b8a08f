//! Threads calling through permanent addresses while another thread
//! reloads, in a C host linked with `libhcr_runtime.a`: four threads call
//! `value()` in a loop while the main thread swaps two images (by rename)
//! and reloads; every call returns the old or the new value.
//!
//! Opt-in: `HCR_HOST_WRAPPER` prefixes the host's command line, e.g. with
//! valgrind's DRD race detector (`tools/tests/drd.supp` says which reports
//! are the runtime's lock-free publication and time-based freeing, and why
//! helgrind cannot check this memory at all):
//!
//!     HCR_PREPARE_AHEAD=0 HCR_HOST_WRAPPER="valgrind --tool=drd \
//!       --error-exitcode=99 -q --suppressions=$PWD/tools/tests/drd.supp" \
//!       cargo test -p hcr-tools --test threads
//!
//! (`HCR_PREPARE_AHEAD=0`: DRD does not see the futex-based lock that
//! orders the work of the thread that prepares reloads ahead.)
//!
//! `HCR_THREAD_RELOADS` sets the number of reloads (default 200).

mod support;

use std::path::Path;
use std::process::Command;

const HOST: &str = r#"
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hcr.h"

static int (*value)(void);
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int stop;
static long bad, calls;

static void *worker(void *arg) {
    (void)arg;
    long mine = 0, wrong = 0;
    for (;;) {
        pthread_mutex_lock(&lock);
        int done = stop;
        pthread_mutex_unlock(&lock);
        if (done) break;
        for (int i = 0; i < 100; i++) {
            int v = value();
            if (v != 1 && v != 2) wrong++;
            mine++;
        }
        /* Under valgrind, which runs one thread at a time, this lets the
           reloading thread on. */
        sched_yield();
    }
    pthread_mutex_lock(&lock);
    bad += wrong;
    calls += mine;
    pthread_mutex_unlock(&lock);
    return NULL;
}

static char *slurp(const char *path, long *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    *len = ftell(f);
    rewind(f);
    char *b = malloc(*len);
    if (fread(b, 1, *len, f) != (size_t)*len) { perror(path); exit(2); }
    fclose(f);
    return b;
}

/* Puts an image at `app` the way hcr-link does: a new file, renamed. */
static void install(const char *app, const char *bytes, long len) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", app);
    FILE *f = fopen(tmp, "wb");
    if (!f || fwrite(bytes, 1, len, f) != (size_t)len || fclose(f) != 0) { perror(tmp); exit(2); }
    if (rename(tmp, app) != 0) { perror(app); exit(2); }
}

int main(int argc, char **argv) {
    if (argc != 5) return 2;
    const char *app = argv[1];
    long len[2];
    char *img[2] = {slurp(argv[2], &len[0]), slurp(argv[3], &len[1])};
    int reloads = atoi(argv[4]);
    install(app, img[0], len[0]);
    if (hcr_init(app) != 0) { fprintf(stderr, "init: %s\n", hcr_last_error()); return 1; }
    value = (int (*)(void))hcr_get_proc("lib", "value");
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < reloads; i++) {
        install(app, img[(i + 1) % 2], len[(i + 1) % 2]);
        int rc = hcr_perform_code_reload();
        if (rc != 1) { fprintf(stderr, "reload %d: %d %s\n", i, rc, hcr_last_error()); return 1; }
    }
    pthread_mutex_lock(&lock);
    stop = 1;
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    printf("reloads %d calls %ld bad %ld value %d generation %u\n", reloads, calls, bad, value(),
           hcr_generation());
    hcr_shutdown();
    free(img[0]);
    free(img[1]);
    return bad == 0 && calls > 0 ? 0 : 1;
}
"#;

fn build(dir: &Path, tag: &str, v: i32) -> std::path::PathBuf {
    let sub = dir.join(tag);
    std::fs::create_dir_all(&sub).unwrap();
    let code = format!("int value(void) {{ return {v}; }}\n");
    let o = support::module(&sub, "lib", &code, "-O2");
    let img = sub.join("lib.hcr");
    support::link_ok(&img, &[o]);
    img
}

#[test]
fn threads_call_through_permanent_addresses_during_reloads() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let (v1, v2) = (build(d, "v1", 1), build(d, "v2", 2));
    let src = d.join("host.c");
    std::fs::write(&src, HOST).unwrap();
    let host = d.join("host");
    support::c_host(&src, &host, &["-O1", "-g", "-pthread"]);
    let reloads: usize = std::env::var("HCR_THREAD_RELOADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let wrapper = std::env::var("HCR_HOST_WRAPPER").unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    let mut cmd = match words.next() {
        Some(prog) => {
            let mut c = Command::new(prog);
            c.args(words).arg(&host);
            c
        }
        None => Command::new(&host),
    };
    let o = cmd
        .arg(d.join("app.hcr"))
        .arg(&v1)
        .arg(&v2)
        .arg(reloads.to_string())
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{}\n{out}{err}", o.status);
    let want_value = if reloads % 2 == 1 { 2 } else { 1 };
    assert!(
        out.starts_with(&format!("reloads {reloads} calls ")),
        "{out}{err}"
    );
    assert!(out.contains(" bad 0 "), "{out}");
    assert!(
        out.trim_end()
            .ends_with(&format!("value {want_value} generation {reloads}")),
        "{out}"
    );
    assert!(err.is_empty(), "{err}");
}
