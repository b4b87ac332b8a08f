//! Differential test: the modules of `testdata/relocs` built as a normal
//! executable and as an hcr image must print the same, for each flag set.

mod support;

fn check(flags: &[&str]) {
    let t = tempfile::tempdir().unwrap();
    let src = support::repo().join("testdata/relocs");
    let sources: Vec<_> = ["main", "lib", "strong"]
        .iter()
        .map(|n| src.join(format!("{n}.c")))
        .collect();
    let (want, got) = support::native_and_image(t.path(), "cc", flags, &sources);
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
