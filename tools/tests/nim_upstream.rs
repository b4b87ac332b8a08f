//! Nim's own hot code reloading integration test (`tests/dll/
//! nimhcr_integration.nim`, its `nimhcr_*.nim` modules and
//! `test_nimhcr_integration.sh` in the Nim 1.6.10 sources), run on hcr.
//!
//! The sources are not part of this repository: Debian's orig tarball of
//! Nim 1.6.10 is downloaded once (SHA-256 checked) into the target
//! directory. The test program is Nim's, unchanged: it copies module
//! versions over `nimhcr_0/1/2.nim`, rebuilds itself with the command given
//! on its command line, calls `performCodeReload()` and prints what the
//! modules answer; its expected output is the `output:` block at the top of
//! the file, compared line by line. Only the build steps of
//! `test_nimhcr_integration.sh` are adapted to hcr:
//!
//! | the script (nimhcr)                                        | here (hcr)                                              |
//! |------------------------------------------------------------|---------------------------------------------------------|
//! | `nim c ../../lib/nimrtl.nim`, `nim c ../../lib/nimhcr.nim` | nothing: hcr's runtime replaces both                    |
//! | `nim --hotCodeReloading:on --nimcache:nimcache c X.nim`    | `nim c --noLinking:on --nimcache:C --passC:"-fPIC …" X.nim && hcr-link -o app.hcr --root @mX.nim C/*.o` (the contract's command line, memory manager and threads chosen) |
//! | `./nimhcr_integration <that command>`                      | `hcr run app.hcr -- "<that command>"`                  |
//!
//! and `import hotcodereloading` finds the project's module through a
//! `nim.cfg` holding one `--path` (see README, Nim programs).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{hcr_command, hcr_link_bin, repo};

const TARBALL: &str = "nim_1.6.10.orig.tar.xz";
const URL: &str = "http://deb.debian.org/debian/pool/main/n/nim/nim_1.6.10.orig.tar.xz";
const SHA256: &str = "1e237bb4faad68ace02f628bd7b5a6a861e58a1f2fd7029a6e5afdef0c589dd1";

/// `tests/dll` of Nim 1.6.10, downloaded and unpacked once.
fn upstream_tests() -> PathBuf {
    static ONCE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = ONCE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("nim-upstream");
    let dir = root.join("nim-1.6.10/tests/dll");
    if root.join(".complete").exists() {
        return dir;
    }
    std::fs::create_dir_all(&root).unwrap();
    let file = root.join(TARBALL);
    if !file.exists() {
        let part = root.join(format!("{TARBALL}.part"));
        support::download(URL, &part);
        std::fs::rename(&part, &file).unwrap();
    }
    let sum = Command::new("sha256sum").arg(&file).output().unwrap();
    let sum = String::from_utf8_lossy(&sum.stdout);
    assert!(
        sum.starts_with(SHA256),
        "{URL}: SHA-256 mismatch ({sum}), expected {SHA256}"
    );
    let ok = Command::new("tar")
        .arg("xJf")
        .arg(&file)
        .arg("-C")
        .arg(&root)
        .arg("nim-1.6.10/tests/dll")
        .status()
        .unwrap();
    assert!(ok.success(), "cannot unpack {}", file.display());
    std::fs::write(root.join(".complete"), "").unwrap();
    dir
}

/// The `output: '''…'''` block of the test's header.
fn expected_output(source: &str) -> Vec<String> {
    let start = source.find("output: '''\n").expect("an output block") + "output: '''\n".len();
    let end = start + source[start..].find("'''").expect("the block's end");
    source[start..end].lines().map(String::from).collect()
}

/// Runs the upstream test in a fresh copy with the given `nim c` options.
fn run_upstream(options: &str) {
    let src = upstream_tests();
    let script = std::fs::read_to_string(src.join("test_nimhcr_integration.sh")).unwrap();
    // The steps this test adapts (see the module doc) are the script's.
    assert!(script.contains("./nimhcr_integration $NIM $HCR_FLAGS c nimhcr_integration.nim"));
    let d = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("nimhcr_") && name.ends_with(".nim") && name != "nimhcr_unit.nim" {
            std::fs::copy(&p, d.path().join(&name)).unwrap();
        }
    }
    std::fs::write(
        d.path().join("nim.cfg"),
        format!("--path:\"{}\"\n", repo().join("runtime/nim").display()),
    )
    .unwrap();
    let build = format!(
        "nim c {options} --hints:off --noLinking:on --nimcache:C \
         --passC:-fPIC\\ -ffunction-sections\\ -fdata-sections nimhcr_integration.nim \
         && {} -o app.hcr --root @mnimhcr_integration.nim C/*.o",
        hcr_link_bin().display()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(&build)
        .current_dir(d.path())
        .output()
        .expect("nim is installed (.ci/run installs Debian's nim)");
    assert!(
        out.status.success(),
        "{options}: the first build failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = hcr_command()
        .current_dir(d.path())
        .args(["run", "app.hcr", "--"])
        .arg(&build)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let got: Vec<&str> = stdout.lines().collect();
    let source = std::fs::read_to_string(src.join("nimhcr_integration.nim")).unwrap();
    let want = expected_output(&source);
    assert!(
        out.status.success() && got == want,
        "{options}: exit {}; output:\n{stdout}\nstderr:\n{}\nexpected:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        want.join("\n")
    );
}

#[test]
fn nims_integration_test_passes_under_orc() {
    run_upstream("--mm:orc");
}

#[test]
fn nims_integration_test_passes_under_arc() {
    run_upstream("--mm:arc");
}

#[test]
fn nims_integration_test_passes_under_refc() {
    run_upstream("--mm:refc");
}

#[test]
fn nims_integration_test_passes_with_threads_on() {
    for mm in ["orc", "arc", "refc"] {
        run_upstream(&format!("--mm:{mm} --threads:on"));
    }
}
