//! C++ modules: exceptions across modules, vtables, COMDAT, static
//! constructors and destructors; output must equal a normal link's.

mod support;

fn check(opt: &str) {
    let t = tempfile::tempdir().unwrap();
    let src = support::repo().join("testdata/cxx");
    let sources = [src.join("main.cpp"), src.join("thrower.cpp")];
    let flags = ["-fPIC", "-ffunction-sections", "-fdata-sections", opt];
    let (want, got) = support::native_and_image(t.path(), "g++", &flags, &sources);
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
