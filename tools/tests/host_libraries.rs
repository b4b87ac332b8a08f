//! Host libraries and plugins (DESIGN.md Part 1, "Host libraries and
//! plugins"), `--auto-reload` failure reports, and the tools' Unix manners:
//! libm and friends with no flag, `-l`/`-L`, every missing symbol named at
//! once, the image's symbols visible to `dlopen`'ed objects before and after
//! a reload, each failed auto-reload reported once, a quiet closed pipe, and
//! programs that re-execute themselves through `argv[0]`.

mod support;

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{hcr_bin, hcr_link_bin, lines_of, link_ok, module};

fn hcr_link(args: &[&str], out: &Path, inputs: &[PathBuf]) -> std::process::Output {
    Command::new(hcr_link_bin())
        .arg("-o")
        .arg(out)
        .args(args)
        .args(inputs)
        .output()
        .unwrap()
}

/// Links `inputs` (with hcr-link `args`) into `dir/app.hcr`, asserting it
/// succeeds without a word.
fn link_quietly(dir: &Path, args: &[&str], inputs: &[PathBuf]) -> PathBuf {
    let img = dir.join("app.hcr");
    let o = hcr_link(args, &img, inputs);
    assert!(o.status.success() && o.stderr.is_empty(), "{o:?}");
    img
}

/// `hcr run image` with `env` set, asserting it succeeds.
fn run_ok(image: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let o = Command::new(hcr_bin())
        .arg("run")
        .arg(image)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

/// What `obj`, linked natively by `cc` (with `flags`), prints with `env`.
fn native_output(dir: &Path, obj: &Path, flags: &[&str], env: &[(&str, &str)]) -> Vec<u8> {
    let native = dir.join("native");
    assert!(Command::new("cc")
        .args(flags)
        .arg(obj)
        .arg("-o")
        .arg(&native)
        .status()
        .unwrap()
        .success());
    Command::new(&native)
        .envs(env.iter().copied())
        .output()
        .unwrap()
        .stdout
}

fn shared_object(dir: &Path, name: &str, soname: &str, code: &str, extra: &[&str]) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, code).unwrap();
    let out = dir.join(format!("{name}.so"));
    let ok = Command::new("cc")
        .args(["-shared", "-fPIC", "-O1"])
        .arg(format!("-Wl,-soname,{soname}"))
        .args(extra)
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap();
    assert!(ok.success());
    out
}

#[test]
fn libm_and_the_default_libraries_need_no_flag() {
    let d = tempfile::tempdir().unwrap();
    let main = module(
        d.path(),
        "main",
        r#"#include <math.h>
        #include <stdio.h>
        #include <time.h>
        int main(int argc, char **argv) {
            double x = argc + 1.5;
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts); /* librt's, before glibc 2.17 */
            printf("%.4f %.4f %.4f %.4f\n", log10(x * 100), cbrt(x * x * x), lgamma(x), fmod(x * 7, 3));
            return 0;
        }"#,
        "-O2",
    );
    let img = link_quietly(d.path(), &[], &[main]);
    let o = Command::new(hcr_bin())
        .arg("run")
        .arg(&img)
        .env_remove("LD_PRELOAD")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "2.3979 2.5000 0.2847 2.5000\n"
    );
}

/// `__builtin_cpu_supports` and `__builtin_cpu_init` read `__cpu_model`
/// and call `__cpu_indicator_init`: a native link takes them from
/// libgcc.a; libgcc_s.so.1 exports them only under an old version, which
/// the runtime asks for by name. The answers are the native program's.
#[test]
fn cpu_feature_checks_work_as_in_a_native_program() {
    let d = tempfile::tempdir().unwrap();
    let code = r#"#include <stdio.h>
        int main(void) {
            __builtin_cpu_init();
            printf("%d %d %d %d\n", !!__builtin_cpu_supports("sse2"), !!__builtin_cpu_supports("avx2"),
                   !!__builtin_cpu_supports("avx512f"), !!__builtin_cpu_is("intel") + !!__builtin_cpu_is("amd"));
            return 0;
        }"#;
    let main = module(d.path(), "main", code, "-O2");
    let want = native_output(d.path(), &main, &[], &[]);
    let img = link_quietly(d.path(), &[], &[main]);
    let o = run_ok(&img, &[]);
    assert_eq!(o.stdout, want);
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("1 "));
}

/// `-l gomp` finds the library where `cc -lgomp` does (gcc's own library
/// directory, not a system one), and an OpenMP program (outlined parallel
/// regions handed to libgomp's threads) gives the native result.
#[test]
fn an_openmp_program_links_with_the_compilers_own_libgomp() {
    let d = tempfile::tempdir().unwrap();
    let code = r#"#include <stdio.h>
        #include <omp.h>
        static double work(int n) {
            double s = 0;
            #pragma omp parallel for reduction(+:s)
            for (int i = 0; i < n; i++) s += 1.0 / (1.0 + i);
            return s;
        }
        int main(void) {
            int t = 0;
            #pragma omp parallel
            {
                #pragma omp atomic
                t++;
            }
            printf("%d %.6f\n", t == omp_get_max_threads(), work(1000000));
            return 0;
        }"#;
    let src = d.path().join("main.c");
    std::fs::write(&src, code).unwrap();
    let obj = d.path().join("main.o");
    support::compile(&src, &obj, "-O2", &["-fopenmp"]);
    let threads = [("OMP_NUM_THREADS", "3")];
    let want = native_output(d.path(), &obj, &["-fopenmp"], &threads);
    let img = link_quietly(d.path(), &["-l", "gomp"], &[obj]);
    let o = run_ok(&img, &threads);
    assert_eq!(o.stdout, want);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "1 14.392727\n");
}

/// An object that binds a libc function to a version of its own
/// (`.symver memcpy,memcpy@GLIBC_2.2.5`, as programs built to run on older
/// systems do) gets that version, with no warning at link time.
#[test]
fn a_symbol_bound_to_a_version_resolves_to_it() {
    let d = tempfile::tempdir().unwrap();
    let main = module(
        d.path(),
        "main",
        r#"#include <stdio.h>
        #include <string.h>
        __asm__(".symver memcpy,memcpy@GLIBC_2.2.5");
        int main(int argc, char **argv) {
            char a[16] = "versioned", b[16] = {0};
            (void)argv;
            memcpy(b, a, (size_t)argc + 8);
            printf("%s\n", b);
            return 0;
        }"#,
        "-O0",
    );
    let img = link_quietly(d.path(), &[], &[main]);
    let o = run_ok(&img, &[]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "versioned\n");
}

#[test]
fn a_library_named_with_dash_l_is_recorded_shown_and_loaded_first() {
    let d = tempfile::tempdir().unwrap();
    let libdir = d.path().join("lib");
    std::fs::create_dir_all(&libdir).unwrap();
    shared_object(
        &libdir,
        "libgreet",
        "libgreet.so.1",
        "int greet_calls; const char *greet(void) { greet_calls++; return \"hello from libgreet\"; }",
        &[],
    );
    let main = module(
        d.path(),
        "main",
        r#"#include <stdio.h>
        const char *greet(void);
        extern int greet_calls;
        int main(void) { puts(greet()); greet(); printf("%d\n", greet_calls); return 0; }"#,
        "-O2",
    );
    let img = d.path().join("app.hcr");
    let lib_s = libdir.display().to_string();
    // Without the library: an error naming the module and the symbols,
    // and no image.
    let o = hcr_link(&[], &img, std::slice::from_ref(&main));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("(module main): undefined symbols 'greet', 'greet_calls'")
            || err.contains("(module main): undefined symbols 'greet_calls', 'greet'"),
        "{err}"
    );
    assert!(err.contains("-l NAME"), "{err}");
    assert!(!img.exists());
    let o = hcr_link(
        &["-L", &lib_s, "-lgreet"],
        &img,
        std::slice::from_ref(&main),
    );
    assert!(o.status.success() && o.stderr.is_empty(), "{o:?}");
    let o = Command::new(hcr_bin())
        .arg("run")
        .arg(&img)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "hello from libgreet\n2\n"
    );
    let o = Command::new(hcr_bin())
        .args(["inspect"])
        .arg(&img)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("libraries: libgreet.so.1 (-l greet, "),
        "{text}"
    );
    let o = Command::new(hcr_bin())
        .args(["inspect", "--json"])
        .arg(&img)
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["libraries"][0]["soname"], "libgreet.so.1");
    assert_eq!(j["libraries"][0]["request"], "greet");

    // The library gone at run time: the error names it.
    std::fs::remove_file(libdir.join("libgreet.so")).unwrap();
    let o = Command::new(hcr_bin())
        .arg("run")
        .arg(&img)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot load library libgreet.so.1 (hcr-link -l greet)"),
        "{err}"
    );
    // Not found at link time: the request and the directories searched.
    let o = hcr_link(&["-L", &lib_s, "-lgreet"], &img, &[main]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("-l greet: library not found (searched ") && err.contains(&lib_s),
        "{err}"
    );
}

#[test]
fn every_missing_symbol_is_an_error_at_link_naming_its_module_and_refused_at_load() {
    let d = tempfile::tempdir().unwrap();
    let a = module(
        d.path(),
        "main",
        "int b_fn(void); int nope_a1(void); int nope_a2(void);\n\
         int main(int argc, char **argv) { return argc > 9 ? nope_a1() + nope_a2() : b_fn(); }",
        "-O2",
    );
    let b = module(
        d.path(),
        "b",
        "int nope_b(void); int b_fn(void) { static int n; return ++n > 5 ? nope_b() : 0; }",
        "-O2",
    );
    let img = d.path().join("app.hcr");
    let inputs = [a, b];
    // At link: one error per module, every symbol named, and no image.
    let o = hcr_link(&[], &img, &inputs);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    let main_o = inputs[0].display().to_string();
    assert!(
        err.contains(&format!(
            "error: {main_o} (module main): undefined symbols 'nope_a1', 'nope_a2': no module, library or the hcr runtime defines them"
        )),
        "{err}"
    );
    assert!(
        err.contains("(module b): undefined symbol 'nope_b': no module, library or the hcr runtime defines it"),
        "{err}"
    );
    assert!(err.contains("2 errors; no image written"), "{err}");
    assert!(!img.exists());
    // A host program that defines them itself links with
    // --allow-undefined: the same names, as warnings; `hcr run`, which
    // defines none of them, refuses the image at load.
    let o = hcr_link(&["--allow-undefined"], &img, &inputs);
    assert!(o.status.success(), "{o:?}");
    let warn = String::from_utf8_lossy(&o.stderr);
    assert!(
        warn.contains("warning: module main: undefined symbols 'nope_a1', 'nope_a2'"),
        "{warn}"
    );
    assert!(
        warn.contains("module b: undefined symbol 'nope_b'"),
        "{warn}"
    );
    let o = Command::new(hcr_bin())
        .arg("run")
        .arg(&img)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "module main: undefined symbols 'nope_a1', 'nope_a2'; module b: undefined symbol 'nope_b': no module"
        ),
        "{err}"
    );
}

/// A program that loads a plugin with `dlopen` before and after a reload:
/// the plugin's references to the image's functions and globals resolve,
/// and a function the reload added is visible to a plugin loaded after it.
#[test]
fn dlopened_plugins_see_the_image_symbols_before_and_after_a_reload() {
    let d = tempfile::tempdir().unwrap();
    let w = d.path();
    let plugin1 = shared_object(
        w,
        "plugin1",
        "plugin1.so",
        "int lib_value(void); extern int lib_counter;\n\
         int plugin_run(void) { lib_counter += 10; return lib_value() * 100 + lib_counter; }",
        &[],
    );
    let plugin2 = shared_object(
        w,
        "plugin2",
        "plugin2.so",
        "int lib_value(void); int lib_added(int); extern int lib_counter;\n\
         int plugin_run(void) { return lib_added(lib_value()) * 100 + lib_counter; }",
        &[],
    );
    let main_code = format!(
        r#"#include <dlfcn.h>
        #include <stdio.h>
        #include <unistd.h>
        #include "hcr.h"
        static int load(const char *path) {{
            void *h = dlopen(path, RTLD_NOW);
            if (!h) {{ printf("dlopen: %s\n", dlerror()); return -1; }}
            int (*run)(void) = (int (*)(void))dlsym(h, "plugin_run");
            return run();
        }}
        int lib_value(void); /* main imports lib: lib is loaded */
        int main(void) {{
            printf("before %d\n", load("{p1}") + 0 * lib_value());
            fflush(stdout);
            for (int i = 0; i < 12000 && !hcr_has_any_module_changed(); i++) usleep(10000);
            printf("reloaded %d\n", hcr_perform_code_reload());
            printf("after %d\n", load("{p2}"));
            printf("again %d\n", load("{p1}"));
            return 0;
        }}"#,
        p1 = plugin1.display(),
        p2 = plugin2.display()
    );
    let main = module(w, "main", &main_code, "-O2");
    let v1 = w.join("v1");
    let v2 = w.join("v2");
    std::fs::create_dir_all(&v1).unwrap();
    std::fs::create_dir_all(&v2).unwrap();
    let lib1 = module(
        &v1,
        "lib",
        "int lib_counter = 1; int lib_value(void) { return 7; }",
        "-O2",
    );
    let lib2 = module(
        &v2,
        "lib",
        "int lib_counter = 1; int lib_value(void) { return 8; }\n\
         int lib_added(int x) { return x + 1000; }",
        "-O2",
    );
    let img = w.join("app.hcr");
    link_ok(&img, &[main.clone(), lib1]);
    let mut child = Command::new(hcr_bin())
        .arg("run")
        .arg(&img)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert_eq!(first, "before 711\n");
    std::thread::sleep(Duration::from_millis(20));
    link_ok(&img, &[main, lib2]);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    // lib_counter kept its 11; lib_added is new in the reload.
    assert_eq!(rest, "reloaded 1\nafter 100811\nagain 821\n");
}

fn next_matching(rx: &mpsc::Receiver<String>, needle: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(needle) => return Some(l),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// Puts `bytes` at `path` the way a linker does (new file, rename), with
/// `mode`.
fn put_image(path: &Path, bytes: &[u8], mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `hcr run --auto-reload` fed broken images: each is reported once, on
/// stderr, naming the image and the reason; the old code keeps running;
/// a good image afterwards is picked up.
#[test]
fn auto_reload_reports_each_failed_reload_once_and_keeps_running() {
    let d = tempfile::tempdir().unwrap();
    let w = d.path();
    let stop = w.join("stop");
    let main = module(
        w,
        "main",
        &format!(
            r#"#include <stdio.h>
            #include <unistd.h>
            int value(void);
            int main(void) {{
                for (int i = 0; access("{}", F_OK) != 0; i++) {{
                    printf("tick %d value %d\n", i, value());
                    fflush(stdout);
                    usleep(10000);
                }}
                return 0;
            }}"#,
            stop.display()
        ),
        "-O2",
    );
    let mk = |tag: &str, code: &str| {
        let sub = w.join(tag);
        std::fs::create_dir_all(&sub).unwrap();
        module(&sub, "lib", code, "-O2")
    };
    let good1 = mk("v1", "int value(void) { return 1; }");
    let good2 = mk("v2", "int value(void) { return 2; }");
    let unresolved = mk(
        "v3",
        "int not_defined_anywhere(void); int value(void) { return not_defined_anywhere(); }",
    );
    let img = w.join("app.hcr");
    link_ok(&img, &[main.clone(), good1]);
    // (The unresolved one links only with --allow-undefined.)
    let build = |inputs: &[PathBuf]| {
        let p = w.join("scratch.hcr");
        let o = hcr_link(&["--allow-undefined"], &p, inputs);
        assert!(o.status.success(), "{o:?}");
        std::fs::read(&p).unwrap()
    };
    let good2_bytes = build(&[main.clone(), good2]);
    let unresolved_bytes = build(&[main, unresolved]);

    let mut child = Command::new(hcr_bin())
        .arg("run")
        .arg("--auto-reload")
        .arg(&img)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lines_of(child.stdout.take().unwrap());
    let err = lines_of(child.stderr.take().unwrap());
    assert!(next_matching(&out, "value 1").is_some());
    let img_s = img.display().to_string();
    let cases: [(&str, Vec<u8>, u32, &str); 4] = [
        (
            "truncated",
            good2_bytes[..good2_bytes.len() / 2].to_vec(),
            0o644,
            "",
        ),
        (
            "random bytes",
            (0..5000u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
            0o644,
            "",
        ),
        (
            "refused",
            good2_bytes.clone(),
            0o666,
            "writable by group or others",
        ),
        (
            "unresolved",
            unresolved_bytes,
            0o644,
            "not_defined_anywhere",
        ),
    ];
    for (what, bytes, mode, reason) in cases {
        put_image(&img, &bytes, mode);
        let line = next_matching(&err, "hcr: auto-reload of")
            .unwrap_or_else(|| panic!("{what}: no report on stderr"));
        assert!(
            line.contains(&img_s)
                && line.contains("the old code keeps running")
                && line.contains(reason),
            "{what}: {line}"
        );
        // The old code keeps running, and the report is not repeated.
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(150) {
            let l = next_matching(&out, "tick").expect("the program stopped");
            assert!(l.ends_with("value 1"), "{what}: {l}");
        }
        assert!(err.try_recv().is_err(), "{what}: reported twice");
    }
    put_image(&img, &good2_bytes, 0o644);
    assert!(
        next_matching(&out, "value 2").is_some(),
        "the good image never landed"
    );
    std::fs::write(&stop, "").unwrap();
    assert!(child.wait().unwrap().success());
    assert!(err.try_recv().is_err());
}

#[test]
fn inspect_into_a_closed_pipe_ends_quietly() {
    let d = tempfile::tempdir().unwrap();
    let mut code = String::new();
    for i in 0..3000 {
        code.push_str(&format!(
            "int function_with_a_long_name_{i}(void) {{ return {i}; }}\n"
        ));
    }
    code.push_str("int main(void) { return 0; }\n");
    let m = module(d.path(), "main", &code, "-O0");
    let img = d.path().join("app.hcr");
    link_ok(&img, &[m]);
    let mut child = Command::new(hcr_bin())
        .arg("inspect")
        .arg(&img)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap(); // the reader is dropped: the pipe closes
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    child.wait().unwrap();
    assert!(first.starts_with("image "), "{first}");
    assert_eq!(err, "", "hcr inspect complained about the closed pipe");
}

#[test]
fn a_program_that_reexecutes_itself_through_argv0_runs_under_its_launcher() {
    let d = tempfile::tempdir().unwrap();
    let m = module(
        d.path(),
        "main",
        r#"#include <stdio.h>
        #include <string.h>
        #include <unistd.h>
        int main(int argc, char **argv) {
            if (argc > 1 && strcmp(argv[1], "child") == 0) {
                printf("child of %s\n", argv[2]);
                return 0;
            }
            fflush(stdout);
            char *args[] = {argv[0], "child", argc > 1 ? argv[1] : "none", NULL};
            execv(argv[0], args);
            perror("execv");
            return 1;
        }"#,
        "-O2",
    );
    let img = d.path().join("app.hcr");
    link_ok(&img, &[m]);
    let o = Command::new(hcr_bin())
        .arg("launcher")
        .arg(&img)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let launcher = d.path().join("app");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        launcher.display().to_string()
    );
    let o = Command::new(&launcher).arg("parent").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "child of parent\n");
}

#[test]
fn main_gets_the_environment_as_its_third_argument() {
    let d = tempfile::tempdir().unwrap();
    let m = module(
        d.path(),
        "main",
        r#"#include <stdio.h>
        #include <string.h>
        int main(int argc, char **argv, char **envp) {
            for (char **e = envp; *e; e++)
                if (strncmp(*e, "HCR_TEST_ENVP=", 14) == 0) printf("%s %d\n", *e + 14, argc);
            return 0;
        }"#,
        "-O2",
    );
    let img = d.path().join("app.hcr");
    link_ok(&img, &[m]);
    let o = Command::new(hcr_bin())
        .arg("run")
        .arg(&img)
        .args(["--", "x"])
        .env("HCR_TEST_ENVP", "seen")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "seen 2\n");
}

/// `-l NAME` whose `libNAME.so` is a GNU ld script, as Debian's
/// `libncursesw.so` (`INPUT(libncursesw.so.6 -ltinfo)`): a file name found
/// beside the script, another `-l`, and `AS_NEEDED` left out.
#[test]
fn a_dash_l_library_that_is_a_linker_script_brings_what_it_names() {
    let d = tempfile::tempdir().unwrap();
    let libdir = d.path().join("lib");
    std::fs::create_dir_all(&libdir).unwrap();
    let real = shared_object(
        &libdir,
        "libscreen_real",
        "libscreen.so.6",
        "const char *screen_name(void) { return \"screen\"; }",
        &[],
    );
    std::fs::rename(&real, libdir.join("libscreen.so.6")).unwrap();
    shared_object(
        &libdir,
        "libinfo",
        "libinfo.so.6",
        "int info_width(void) { return 80; }",
        &[],
    );
    std::fs::write(
        libdir.join("libscreen.so"),
        "/* GNU ld script */\nINPUT(libscreen.so.6 -linfo AS_NEEDED(libunused.so.9))\n",
    )
    .unwrap();
    let main = module(
        d.path(),
        "main",
        r#"#include <stdio.h>
        const char *screen_name(void); int info_width(void);
        int main(void) { printf("%s %d\n", screen_name(), info_width()); return 0; }"#,
        "-O2",
    );
    let lib_s = libdir.display().to_string();
    let img = link_quietly(d.path(), &["-L", &lib_s, "-lscreen"], &[main]);
    let o = run_ok(&img, &[]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "screen 80\n");
    let o = Command::new(hcr_bin())
        .arg("inspect")
        .arg(&img)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("libscreen.so.6 (-l screen, ") && text.contains("libinfo.so.6 (-l screen, "),
        "{text}"
    );
}

/// A symbol of hidden visibility is global to the link but not exported
/// (as `-Wl,-E` leaves it out of a native executable's dynamic symbols): a
/// plugin's own definition of the name stays its own.
#[test]
fn hidden_symbols_are_not_exported_to_plugins() {
    let d = tempfile::tempdir().unwrap();
    let plugin = shared_object(
        d.path(),
        "plugin",
        "plugin.so",
        "int hid_fn(void) { return 99; } int hid_var = 99;\n\
         int plugin_call(void) { return hid_fn() + hid_var; }",
        &[],
    );
    let main = module(
        d.path(),
        "main",
        &format!(
            r#"#include <stdio.h>
        #include <dlfcn.h>
        __attribute__((visibility("hidden"))) int hid_fn(void) {{ return 3; }}
        __attribute__((visibility("hidden"))) int hid_var = 3;
        int main(void) {{
            void *h = dlopen("{}", RTLD_NOW);
            if (!h) {{ printf("%s\n", dlerror()); return 1; }}
            int (*f)(void) = (int (*)(void))dlsym(h, "plugin_call");
            printf("%d %d\n", f(), hid_fn() + hid_var);
            return 0;
        }}"#,
            plugin.display()
        ),
        "-O0",
    );
    let img = link_quietly(d.path(), &[], &[main]);
    let o = run_ok(&img, &[]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "198 6\n");
}

/// A plugin that uses one of the image's thread-local variables cannot be
/// given it (the variable lives in the runtime's per-thread blocks, not in
/// the system loader's): its `dlopen` fails naming the variable, and the
/// program carries on, rather than the plugin treating the variable's
/// offset as an address.
#[test]
fn a_plugin_that_uses_an_image_thread_local_is_refused_by_name() {
    let d = tempfile::tempdir().unwrap();
    let plugin = shared_object(
        d.path(),
        "plugin",
        "plugin.so",
        "extern __thread int interp_state;\n\
         int plugin_call(void) { return ++interp_state; }",
        &[],
    );
    let main = module(
        d.path(),
        "main",
        &format!(
            r#"#include <stdio.h>
        #include <dlfcn.h>
        __thread int interp_state = 41;
        int visible = 5;
        int main(void) {{
            void *h = dlopen("{}", RTLD_NOW);
            printf("%s\n", h ? "loaded" : dlerror());
            printf("state %d, visible %d\n", interp_state, visible);
            return 0;
        }}"#,
            plugin.display()
        ),
        "-O2",
    );
    let img = link_quietly(d.path(), &[], &[main]);
    let o = run_ok(&img, &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("undefined symbol: interp_state") && out.ends_with("state 41, visible 5\n"),
        "{out}"
    );
}

/// A program that looks its own functions up by name, as a native one
/// linked with `-Wl,-E` can (`dlsym(RTLD_DEFAULT, NAME)`), finds them
/// without calling `dlopen` or setting anything.
#[test]
fn dlsym_of_the_default_scope_finds_the_images_functions() {
    let d = tempfile::tempdir().unwrap();
    let main = module(
        d.path(),
        "main",
        r#"#define _GNU_SOURCE
        #include <stdio.h>
        #include <dlfcn.h>
        int answer(void) { return 42; }
        int main(void) {
            int (*f)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "answer");
            printf("%s %d\n", f ? "found" : "missing", f ? f() : 0);
            return 0;
        }"#,
        "-O1",
    );
    let native = native_output(d.path(), &main, &["-Wl,-E"], &[]);
    assert_eq!(String::from_utf8_lossy(&native), "found 42\n");
    let img = link_quietly(d.path(), &[], &[main]);
    let o = Command::new(hcr_bin())
        .arg("run")
        .arg(&img)
        .env_remove("HCR_EXPORT_SYMBOLS")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "found 42\n");
}
