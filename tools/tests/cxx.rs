//! C++ modules: exceptions across modules, vtables, COMDAT, static
//! constructors and destructors; output must equal a normal link's.

mod support;

use std::process::Command;

fn check(opt: &str) {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let src = support::repo().join("testdata/cxx");
    let mut objs = Vec::new();
    for n in ["main", "thrower"] {
        let o = d.join(format!("{n}.o"));
        let st = Command::new("g++")
            .args(["-c", "-fPIC", "-ffunction-sections", "-fdata-sections", opt])
            .arg(src.join(format!("{n}.cpp")))
            .arg("-o")
            .arg(&o)
            .status()
            .expect("g++ must be installed");
        assert!(st.success());
        objs.push(o);
    }
    let native = d.join("native");
    let st = Command::new("g++")
        .args(&objs)
        .arg("-o")
        .arg(&native)
        .status()
        .unwrap();
    assert!(st.success());
    let want = Command::new(&native).output().unwrap();
    let img = d.join("cxx.hcr");
    support::link_ok(&img, &objs);
    let got = support::run(&img);
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&got.stdout),
        String::from_utf8_lossy(&want.stdout)
    );
    assert!(String::from_utf8_lossy(&got.stdout).contains("caught: too big: 3"));
}

#[test]
fn cxx_o2() {
    check("-O2");
}

#[test]
fn cxx_o0() {
    check("-O0");
}
