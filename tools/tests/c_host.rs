//! A C host program links the runtime as a static library and uses the host
//! part of hcr.h (hcr_init, hcr_get_proc, hcr_get_global, hcr_run_main,
//! hcr_shutdown).

mod support;

use std::process::Command;

#[test]
fn a_c_host_links_the_static_library() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let src = support::repo().join("testdata/c_host");
    // The static library sits beside the binaries of this build.
    let bin_dir = support::hcr_bin().parent().unwrap().to_path_buf();
    let lib = bin_dir.join("libhcr_runtime.a");
    if !lib.exists() {
        let profile = if bin_dir.ends_with("release") {
            vec!["--release"]
        } else {
            vec![]
        };
        let st = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "hcr-runtime", "--lib"])
            .args(profile)
            .current_dir(support::repo())
            .status()
            .unwrap();
        assert!(
            st.success() && lib.exists(),
            "cannot build {}",
            lib.display()
        );
    }
    let obj = d.join("lib.o");
    support::compile(&src.join("lib.c"), &obj, "-O2", &[]);
    let img = d.join("lib.hcr");
    support::link_ok(&img, &[obj]);
    let host = d.join("host");
    let st = Command::new("cc")
        .arg("-I")
        .arg(support::include_dir())
        .arg(src.join("host.c"))
        .arg(&lib)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&host)
        .status()
        .unwrap();
    assert!(st.success(), "linking the C host failed");
    let o = Command::new(&host).arg(&img).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "host: get() = 42, counter = 42\nimage main: argv ok counter 42\nhost: main returned 7, generation 0\n"
    );
}
