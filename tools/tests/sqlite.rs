//! A real program edited live: the SQLite amalgamation (the one vendored by
//! the `libsqlite3-sys` crate, a dev-dependency) as one module, an in-memory
//! database in a global, and three edits of sqlite3.c between reloads — a
//! function static added (which renumbers gcc's `name.N` statics after it),
//! the edit reverted, another function given a static. After each reload
//! the database keeps its rows and every query still works (SQLite's
//! built-in function table is a function static that live pointers reach).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The vendored `sqlite3.c`, found through `cargo metadata`.
fn sqlite_source() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(support::repo())
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata json");
    let pkg = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == "libsqlite3-sys")
        .expect("libsqlite3-sys in the dependency graph");
    let manifest = PathBuf::from(pkg["manifest_path"].as_str().expect("manifest_path"));
    manifest
        .parent()
        .expect("crate dir")
        .join("sqlite3/sqlite3.c")
}

/// -O1: gcc numbers the statics as at -O2 (SQLite's `aBuiltinFunc.N` moves
/// with the first edit), at a third of -O2's compile time.
const OPT: &str = "-O1";
const FLAGS: &[&str] = &["-DSQLITE_THREADSAFE=0", "-DSQLITE_OMIT_LOAD_EXTENSION"];

fn compile(src: &Path, out: &Path) {
    support::compile(src, out, OPT, FLAGS);
}

/// `text` with `add` inserted after the first `after` that follows `at`.
fn insert_after(text: &str, at: &str, after: &str, add: &str) -> String {
    let i = text
        .find(at)
        .unwrap_or_else(|| panic!("{at} not in sqlite3.c"));
    let j = i + text[i..].find(after).expect("insertion point") + after.len();
    format!("{}{add}{}", &text[..j], &text[j..])
}

struct Shell {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Shell {
    fn ask(&mut self, line: &str) -> String {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write");
        stdin.flush().expect("flush");
        let mut l = String::new();
        self.out.read_line(&mut l).expect("read");
        l.trim_end().to_string()
    }
}

#[test]
fn sqlite_edited_live_three_times_keeps_its_database() {
    let src = sqlite_source();
    let original = std::fs::read_to_string(&src).expect("read sqlite3.c");
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::copy(src.with_file_name("sqlite3.h"), d.join("sqlite3.h")).unwrap();
    // The unedited object is cached under target/ (keyed by the source).
    let cache = support::repo().join("target/hcr-test-cache");
    std::fs::create_dir_all(&cache).unwrap();
    let key = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        original.hash(&mut h);
        FLAGS.hash(&mut h);
        OPT.hash(&mut h);
        h.finish()
    };
    let cached = cache.join(format!("sqlite3-{key:016x}.o"));
    let obj = d.join("sqlite3.o");
    let c_src = d.join("sqlite3.c");
    if !cached.exists() {
        std::fs::write(&c_src, &original).unwrap();
        compile(&c_src, &obj);
        let tmp = cached.with_extension("tmp");
        std::fs::copy(&obj, &tmp).unwrap();
        std::fs::rename(&tmp, &cached).unwrap();
    }
    std::fs::copy(&cached, &obj).unwrap();
    let main_o = d.join("main.o");
    support::compile(
        &support::repo().join("testdata/sqlite/main.c"),
        &main_o,
        "-O0",
        &["-I", &d.display().to_string()],
    );
    let img = d.join("app.hcr");
    let relink = || {
        let o = support::link(&img, &[main_o.clone(), obj.clone()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("warning"), "hcr-link warned: {err}");
    };
    relink();
    let mut child = support::hcr_command()
        .arg("run")
        .arg(&img)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hcr run");
    let out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut sh = Shell { child, out };
    let mut rows = 0;
    let mut check = |sh: &mut Shell, step: &str| {
        rows += 1;
        assert_eq!(
            sh.ask(&format!("insert into t values({rows}) ; select changes();")),
            "1",
            "{step}"
        );
        let sum = rows * (rows + 1) / 2;
        assert_eq!(
            sh.ask("select sqlite_version(), count(*), sum(x) from t;"),
            format!("3.54.1 {rows} {sum}"),
            "{step}"
        );
        assert_eq!(
            sh.ask("select upper('ab'), length('abc'), abs(-2);"),
            "AB 3 2",
            "{step}"
        );
    };
    check(&mut sh, "first load");
    let edits = [
        (
            "add a static to versionFunc",
            insert_after(
                &original,
                "static void versionFunc(",
                "UNUSED_PARAMETER2(NotUsed, NotUsed2);",
                "\n  { static int calls; calls++; }",
            ),
        ),
        ("revert", original.clone()),
        (
            "add a static to lengthFunc",
            insert_after(
                &original,
                "static void lengthFunc(",
                "assert( argc==1 );",
                "\n  { static int uses; uses++; }",
            ),
        ),
    ];
    for (step, text) in &edits {
        if text == &original {
            std::fs::copy(&cached, &obj).unwrap();
        } else {
            std::fs::write(&c_src, text).unwrap();
            compile(&c_src, &obj);
        }
        relink();
        assert_eq!(sh.ask("reload"), "reloaded 1", "{step}");
        check(&mut sh, step);
    }
    drop(sh.child.stdin.take());
    let o = sh.child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("warning"), "hcr warned: {err}");
}
