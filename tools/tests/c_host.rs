//! A C host program links the runtime as a static or a shared library and
//! uses the host part of hcr.h (hcr_init, hcr_get_proc, hcr_get_global,
//! hcr_run_main, hcr_shutdown).

mod support;

use std::process::Command;

/// Builds testdata/c_host's image, links its host with `link(host.c,
/// out)`, runs the host on the image and checks what it prints.
fn host_runs(link: impl FnOnce(&std::path::Path, &std::path::Path)) {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let src = support::repo().join("testdata/c_host");
    let obj = d.join("lib.o");
    support::compile(&src.join("lib.c"), &obj, "-O2", &[]);
    let img = d.join("lib.hcr");
    support::link_ok(&img, &[obj]);
    let host = d.join("host");
    link(&src.join("host.c"), &host);
    let o = Command::new(&host).arg(&img).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "host: get() = 42, counter = 42\nimage main: argv ok counter 42\nhost: main returned 7, generation 0\n"
    );
}

#[test]
fn a_c_host_links_the_static_library() {
    host_runs(|src, host| support::c_host(src, host, &[]));
}

#[test]
fn a_c_host_links_the_shared_library() {
    // `cargo build` of the runtime puts `libhcr_runtime.so` beside the
    // static library.
    let lib_dir = support::runtime_staticlib()
        .parent()
        .expect("a library directory")
        .to_path_buf();
    let so = lib_dir.join("libhcr_runtime.so");
    assert!(so.exists(), "no {}", so.display());
    host_runs(|src, host| {
        let st = Command::new("cc")
            .arg("-I")
            .arg(support::include_dir())
            .arg(src)
            .arg("-L")
            .arg(&lib_dir)
            .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
            .args(["-lhcr_runtime", "-o"])
            .arg(host)
            .status()
            .expect("the system C compiler `cc` must be installed");
        assert!(
            st.success(),
            "linking the C host with the shared library failed"
        );
    });
}

/// `hcr_last_error()`'s pointer stays readable across later calls: in
/// `printf("%d [%s]\n", hcr_perform_code_reload(), hcr_last_error())` gcc
/// evaluates the error first, then the reload replaces the message under
/// it (it was freed and replaced, and printf read freed memory).
#[test]
fn the_last_error_pointer_stays_readable_across_calls() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let m = support::module(
        d,
        "main",
        "#include <stdio.h>\n#include <hcr.h>\n\
         int main(int argc, char **argv) {\n\
             rename(argv[1], argv[0]);\n\
             printf(\"%d [%s]\\n\", hcr_perform_code_reload(), hcr_last_error());\n\
             return 0;\n}\n",
        "-O2",
    );
    let img = d.join("app.hcr");
    support::link_ok(&img, &[m]);
    let bytes = std::fs::read(&img).unwrap();
    std::fs::write(d.join("bad.hcr"), &bytes[..100]).unwrap();
    let o = support::hcr_command()
        .arg("run")
        .arg(&img)
        .arg("--")
        .arg(d.join("bad.hcr"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.starts_with("-1 [") && out.contains("app.hcr: truncated image"),
        "{out}"
    );
}

/// A C host that embeds the runtime is what loads plugins (an interpreter
/// and its C extension modules): a plugin it loads with `dlopen` resolves
/// the image's functions and globals, though no module names `dlopen`;
/// `HCR_EXPORT_SYMBOLS=0` keeps them to the image.
#[test]
fn a_plugin_the_c_host_loads_sees_the_image_symbols() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let m = support::module(
        d,
        "main",
        "int engine_version(void) { return 1; }\nint engine_state = 5;\n\
         int main(void) { return engine_version(); }\n",
        "-O2",
    );
    let img = d.join("app.hcr");
    support::link_ok(&img, &[m]);
    let plug = support::plugin(
        d,
        "plug",
        "extern int engine_version(void); extern int engine_state;\n\
         int plugin_entry(void) { return engine_version() * 1000 + engine_state; }\n",
    );
    std::fs::write(
        d.join("host.c"),
        r#"#include <stdio.h>
#include <dlfcn.h>
#include "hcr.h"
int main(int argc, char **argv) {
    if (hcr_init(argv[1]) != 0) { printf("init: %s\n", hcr_last_error()); return 1; }
    printf("main -> %d\n", hcr_run_main(1, argv + 1));
    void *h = dlopen(argv[2], RTLD_NOW);
    if (!h) { printf("dlopen: %s\n", dlerror()); hcr_shutdown(); return 0; }
    int (*e)(void) = (int (*)(void))dlsym(h, "plugin_entry");
    printf("plugin_entry -> %d\n", e());
    hcr_shutdown();
    return 0;
}
"#,
    )
    .unwrap();
    let host = d.join("host");
    support::c_host(&d.join("host.c"), &host, &[]);
    let run = |export: Option<&str>| {
        let mut c = Command::new(&host);
        c.arg(&img).arg(&plug).env_remove("HCR_EXPORT_SYMBOLS");
        if let Some(v) = export {
            c.env("HCR_EXPORT_SYMBOLS", v);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(run(None), "main -> 1\nplugin_entry -> 1005\n");
    let off = run(Some("0"));
    assert!(
        off.starts_with("main -> 1\ndlopen: ") && off.contains("undefined symbol"),
        "{off}"
    );
}

/// The image's inotify watch is removed as the process exits, after the
/// program's own exit handlers and the modules' destructors: a process
/// that ends with a watch it added moments before and a second thread
/// alive (the runtime's preparing thread, or one of the program's) waits
/// for the kernel's teardown of the watch, 8–16 ms here. A handler the
/// host registers before `hcr_init` runs after the runtime's and counts
/// the watches the process still holds. A child made by `fork` shares the
/// inotify instance: its `exit` must leave the parent's watch in place.
#[test]
fn the_image_watch_is_gone_once_the_runtime_exit_handler_ran() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let m = support::module(d, "main", "int main(void) { return 0; }\n", "-O1");
    let img = d.join("app.hcr");
    support::link_ok(&img, &[m]);
    std::fs::write(
        d.join("host.c"),
        r#"#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "hcr.h"
/* Watches on the process's inotify descriptors, from /proc/self/fdinfo. */
static int watches(void) {
    int n = 0;
    DIR *d = opendir("/proc/self/fdinfo");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[300], line[512];
        snprintf(path, sizeof path, "/proc/self/fdinfo/%s", e->d_name);
        FILE *f = fopen(path, "r");
        while (f && fgets(line, sizeof line, f))
            n += strncmp(line, "inotify wd:", 11) == 0;
        if (f) fclose(f);
    }
    if (d) closedir(d);
    return n;
}
static int child;
static void at_end(void) {
    if (!child) { printf("at exit: %d\n", watches()); fflush(stdout); }
}
int main(int argc, char **argv) {
    atexit(at_end);
    if (hcr_init(argv[1]) != 0) { printf("init: %s\n", hcr_last_error()); return 1; }
    printf("running: %d\n", watches());
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) { child = 1; exit(0); }
    waitpid(p, NULL, 0);
    printf("after a child's exit: %d\n", watches());
    return hcr_run_main(1, argv + 1);
}
"#,
    )
    .unwrap();
    let host = d.join("host");
    support::c_host(&d.join("host.c"), &host, &[]);
    for ahead in ["1", "0"] {
        let o = Command::new(&host)
            .arg(&img)
            .env("HCR_PREPARE_AHEAD", ahead)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "running: 1\nafter a child's exit: 1\nat exit: 0\n",
            "with HCR_PREPARE_AHEAD={ahead}"
        );
    }
}

/// A child made by `fork` shares the parent's inotify instance, whose
/// preparing thread takes the events the child would count: the child
/// answers its change checks exactly, so a change made while both run is
/// seen by the child too.
#[test]
fn a_forked_child_sees_a_change_its_parent_took_the_events_of() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let image = |tag: &str, value: i32| {
        let sub = d.join(tag);
        std::fs::create_dir_all(&sub).unwrap();
        let m = support::module(
            &sub,
            "main",
            &format!("int main(void) {{ return {value}; }}\n"),
            "-O1",
        );
        let img = d.join(format!("{tag}.hcr"));
        support::link_ok(&img, &[m]);
        std::fs::read(img).unwrap()
    };
    let (v1, v2) = (image("v1", 1), image("v2", 2));
    let app = d.join("app.hcr");
    support::install(&app, &v1);
    std::fs::write(
        d.join("host.c"),
        r#"#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "hcr.h"
/* argv: image, "ready" file to create, "go" file to wait for. */
int main(int argc, char **argv) {
    if (hcr_init(argv[1]) != 0) { printf("init: %s\n", hcr_last_error()); return 1; }
    pid_t p = fork();
    if (p == 0) {
        int before = hcr_has_any_module_changed();
        fclose(fopen(argv[2], "w"));
        struct stat st;
        for (int i = 0; i < 2000 && stat(argv[3], &st) != 0; i++) usleep(5000);
        /* Time for the parent's preparing thread to take the events. */
        usleep(300000);
        int after = hcr_has_any_module_changed();
        printf("child: before %d after %d\n", before, after);
        fflush(stdout);
        _exit(0);
    }
    waitpid(p, NULL, 0);
    return 0;
}
"#,
    )
    .unwrap();
    let host = d.join("host");
    support::c_host(&d.join("host.c"), &host, &[]);
    let (ready, go) = (d.join("ready"), d.join("go"));
    let child = Command::new(&host)
        .arg(&app)
        .arg(&ready)
        .arg(&go)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let waited = (0..2000).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(5));
        ready.exists()
    });
    assert!(waited, "the child never got ready");
    support::install(&app, &v2);
    std::fs::write(&go, b"").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "child: before 0 after 1\n"
    );
}
