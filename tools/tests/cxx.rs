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

/// A C++ exception that leaves `main` or a static initialiser ends the
/// program as natively: `std::terminate` names the exception and its
/// `what()`, then the process aborts (the exception's type defined in a
/// module, with a destructor there).
#[test]
fn an_uncaught_exception_terminates_as_natively() {
    use std::os::unix::process::ExitStatusExt as _;
    let error = r#"#include <stdexcept>
#include <string>
struct MyError : std::runtime_error {
    std::string extra;
    MyError(const char *m) : std::runtime_error(m), extra(m) {}
    ~MyError() override;
};
"#;
    let cases = [
        (
            "from_main",
            r#"#include <cstdio>
#include "error.h"
MyError::~MyError() {}
int main() { std::puts("before"); std::fflush(stdout); throw MyError("boom"); }
"#,
        ),
        (
            "from_init",
            r#"#include <cstdio>
#include "error.h"
MyError::~MyError() {}
static int thrown = [] { throw MyError("early"); return 1; }();
int main() { std::puts("never"); return thrown; }
"#,
        ),
    ];
    for (name, code) in cases {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(d.join("error.h"), error).unwrap();
        let src = d.join(format!("{name}.cpp"));
        std::fs::write(&src, code).unwrap();
        let flags = ["-fPIC", "-ffunction-sections", "-fdata-sections", "-O2"];
        let (want, got) = support::native_and_image(d, "g++", &flags, &[src]);
        let (want_err, got_err) = (
            String::from_utf8_lossy(&want.stderr),
            String::from_utf8_lossy(&got.stderr),
        );
        assert_eq!(want.status.signal(), Some(libc::SIGABRT), "{want_err}");
        assert_eq!(
            got.status.signal(),
            Some(libc::SIGABRT),
            "{name}: {got_err}"
        );
        assert_eq!(got.stdout, want.stdout, "{name}");
        // The C++ runtime's own words, as natively.
        assert!(
            got_err.starts_with(&*want_err),
            "{name}: native said\n{want_err}\nhcr said\n{got_err}"
        );
        assert!(
            got_err.contains("terminate called after throwing an instance of 'MyError'"),
            "{name}: {got_err}"
        );
        assert!(!got_err.contains("foreign exception"), "{name}: {got_err}");
    }
}
