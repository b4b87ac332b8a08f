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
    std::fs::write(
        d.join("main.c"),
        "#include <stdio.h>\n#include <hcr.h>\n\
         int main(int argc, char **argv) {\n\
             rename(argv[1], argv[0]);\n\
             printf(\"%d [%s]\\n\", hcr_perform_code_reload(), hcr_last_error());\n\
             return 0;\n}\n",
    )
    .unwrap();
    let m = d.join("main.o");
    support::compile(&d.join("main.c"), &m, "-O2", &[]);
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
