//! Differential test: the modules of `testdata/relocs` built as a normal
//! executable and as an hcr image must print the same, for each flag set.

mod support;

use std::process::Command;

fn check(flags: &[&str]) {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let src = support::repo().join("testdata/relocs");
    let names = ["main", "lib", "strong"];
    let native = d.join("native");
    let st = Command::new("cc")
        .args(flags)
        .args(names.iter().map(|n| src.join(format!("{n}.c"))))
        .arg("-o")
        .arg(&native)
        .status()
        .expect("cc");
    assert!(st.success());
    let want = Command::new(&native).output().unwrap();
    let mut objs = Vec::new();
    for n in names {
        let o = d.join(format!("{n}.o"));
        let st = Command::new("cc")
            .arg("-c")
            .args(flags)
            .arg(src.join(format!("{n}.c")))
            .arg("-o")
            .arg(&o)
            .status()
            .unwrap();
        assert!(st.success());
        objs.push(o);
    }
    let img = d.join("relocs.hcr");
    support::link_ok(&img, &objs);
    let got = support::run(&img);
    assert!(
        got.status.success(),
        "{flags:?}: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&got.stdout),
        String::from_utf8_lossy(&want.stdout),
        "{flags:?}"
    );
    assert_eq!(String::from_utf8_lossy(&got.stderr), "stderr works\n");
}

#[test]
fn pic_o0() {
    check(&["-fPIC", "-ffunction-sections", "-fdata-sections", "-O0"]);
}

#[test]
fn pic_o2() {
    check(&["-fPIC", "-ffunction-sections", "-fdata-sections", "-O2"]);
}

#[test]
fn pic_no_plt() {
    check(&[
        "-fPIC",
        "-fno-plt",
        "-ffunction-sections",
        "-fdata-sections",
        "-O2",
    ]);
}

#[test]
fn pic_no_semantic_interposition() {
    check(&[
        "-fPIC",
        "-fno-semantic-interposition",
        "-ffunction-sections",
        "-fdata-sections",
        "-O2",
    ]);
}

#[test]
fn pie_without_direct_extern_access() {
    check(&[
        "-fPIE",
        "-mno-direct-extern-access",
        "-ffunction-sections",
        "-fdata-sections",
        "-O2",
    ]);
}

#[test]
fn pic_debug_info() {
    check(&[
        "-fPIC",
        "-g",
        "-ffunction-sections",
        "-fdata-sections",
        "-O1",
    ]);
}

#[test]
fn pic_large_code_model() {
    check(&[
        "-fPIC",
        "-mcmodel=large",
        "-ffunction-sections",
        "-fdata-sections",
        "-O2",
    ]);
}

#[test]
fn pic_large_code_model_o0() {
    check(&[
        "-fPIC",
        "-mcmodel=large",
        "-ffunction-sections",
        "-fdata-sections",
        "-O0",
    ]);
}

#[test]
fn pic_medium_code_model() {
    check(&[
        "-fPIC",
        "-mcmodel=medium",
        "-ffunction-sections",
        "-fdata-sections",
        "-O2",
    ]);
}
