//! `hcr-link --incremental`: a background server keeps the link between
//! runs, each later run takes over what did not change, and the image is
//! the same, byte for byte, as a plain `hcr-link`'s; its messages and exit
//! code are the client's; it ends after its idle time.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::{hcr_link_bin, module, run_ok, servers_in};

/// Runs `hcr-link ARGS` in `dir` (relative paths, as a build system does),
/// the server (if any) idling out after `idle` seconds.
fn hcr_link_in(dir: &Path, args: &[&str], idle: &str) -> Output {
    hcr_link_command(dir, args, idle)
        .output()
        .expect("run hcr-link")
}

/// The command [`hcr_link_in`] runs.
fn hcr_link_command(dir: &Path, args: &[&str], idle: &str) -> Command {
    let mut c = Command::new(hcr_link_bin());
    c.current_dir(dir)
        .env("HCR_LINK_SERVER_IDLE", idle)
        .args(args);
    c
}

/// `main`, `a` and `b` in `dir`, from `a`'s and `b`'s code (`main` prints
/// `a=A b=B`).
fn three_modules(dir: &Path, a: &str, b: &str) {
    module(dir, "main", MAIN, "-O2");
    module(dir, "a", a, "-O2");
    module(dir, "b", b, "-O2");
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Ends the servers working in its folder when dropped (a failed test
/// included).
struct EndServers<'a>(&'a Path);

impl Drop for EndServers<'_> {
    fn drop(&mut self) {
        for pid in servers_in(self.0) {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

/// Replaces `dir/name.o` by a new object built from `code`, as a compiler
/// does (a new file renamed into place).
fn rebuild(dir: &Path, name: &str, code: &str) {
    let tmp = dir.join("rebuild");
    std::fs::create_dir_all(&tmp).unwrap();
    let o = module(&tmp, name, code, "-O2");
    std::fs::rename(o, dir.join(format!("{name}.o"))).unwrap();
}

const MAIN: &str = r#"#include <stdio.h>
int a(void); int b(void);
int main(void) { printf("a=%d b=%d\n", a(), b()); return 0; }"#;

#[test]
fn incremental_links_equal_plain_links_and_take_over_what_did_not_change() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let _end = EndServers(d);
    three_modules(
        d,
        "int a_count; int a(void) { return 1 + a_count; }",
        "int b(void) { return 10; }",
    );
    let inputs = ["main.o", "a.o", "b.o"];
    let link = |out: &str, incremental: bool| {
        let mut args = vec!["-v", "-o", out];
        if incremental {
            args.insert(0, "--incremental");
        }
        args.extend(inputs);
        let o = hcr_link_in(d, &args, "300");
        assert!(o.status.success(), "{}", text(&o));
        o
    };
    let same_as_plain = || {
        link("plain.hcr", false);
        assert!(
            std::fs::read(d.join("app.hcr")).unwrap()
                == std::fs::read(d.join("plain.hcr")).unwrap(),
            "the incremental image differs from the plain link's"
        );
    };

    // The first run starts the server, which links from nothing.
    let first = link("app.hcr", true);
    assert!(
        text(&first)
            .contains("incremental: taken over from the previous link, of 3 modules: 0 parses"),
        "{}",
        text(&first)
    );
    same_as_plain();
    assert_eq!(servers_in(d).len(), 1, "one server for the output");
    assert_eq!(run_ok(&d.join("app.hcr")).trim(), "a=1 b=10");

    // One module rebuilt: the other two are taken over.
    rebuild(d, "b", "int b(void) { return 20; }");
    let second = link("app.hcr", true);
    assert!(
        text(&second).contains("of 3 modules: 2 parses"),
        "{}",
        text(&second)
    );
    assert!(
        text(&second).contains("hcr-link: 3 modules,"),
        "the summary reaches the client: {}",
        text(&second)
    );
    same_as_plain();
    assert_eq!(run_ok(&d.join("app.hcr")).trim(), "a=1 b=20");
    assert_eq!(servers_in(d).len(), 1, "the same server");

    // A failed link is the client's: its message, exit code 2, the old
    // image left in place; the next good link succeeds.
    let before = std::fs::read(d.join("app.hcr")).unwrap();
    rebuild(
        d,
        "b",
        "int a(void) { return 5; } int b(void) { return 4; }",
    );
    let mut args = vec!["--incremental", "-o", "app.hcr"];
    args.extend(inputs);
    let failed = hcr_link_in(d, &args, "300");
    assert_eq!(failed.status.code(), Some(2), "{}", text(&failed));
    assert!(
        text(&failed).contains("b.o (module b): duplicate definition"),
        "{}",
        text(&failed)
    );
    assert_eq!(std::fs::read(d.join("app.hcr")).unwrap(), before);
    rebuild(d, "b", "int b(void) { return 30; }");
    link("app.hcr", true);
    same_as_plain();
    assert_eq!(run_ok(&d.join("app.hcr")).trim(), "a=1 b=30");

    // The server answers as soon as the image is in place, its messages
    // printed: a warning reaches the client with the summary, and the
    // replaced image, removed after the answer, is not left behind.
    module(
        d,
        "w",
        "int nowhere(void); int w(void) { return nowhere(); }",
        "-O2",
    );
    for round in 0..2 {
        let o = hcr_link_in(
            d,
            &[
                "--incremental",
                "-v",
                "--allow-undefined",
                "--root",
                "w",
                "-o",
                "w.hcr",
                "w.o",
                "main.o",
            ],
            "300",
        );
        assert!(o.status.success(), "{}", text(&o));
        assert!(
            text(&o).contains("hcr-link: warning:") && text(&o).contains("nowhere"),
            "round {round}: the warning reaches the client: {}",
            text(&o)
        );
        assert!(
            text(&o).contains("hcr-link: 2 modules,"),
            "round {round}: {}",
            text(&o)
        );
    }
    let strays = || -> Vec<String> {
        std::fs::read_dir(d)
            .unwrap()
            .filter_map(|e| {
                let n = e.ok()?.file_name().to_string_lossy().into_owned();
                n.contains(".tmp.").then_some(n)
            })
            .collect()
    };
    let t0 = Instant::now();
    while !strays().is_empty() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        strays(),
        Vec::<String>::new(),
        "replaced images left behind"
    );
}

#[test]
fn concurrent_runs_all_link_and_the_server_ends_when_idle() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let _end = EndServers(d);
    three_modules(d, "int a(void) { return 2; }", "int b(void) { return 3; }");
    let children: Vec<_> = (0..4)
        .map(|_| {
            hcr_link_command(
                d,
                &["--incremental", "-o", "app.hcr", "main.o", "a.o", "b.o"],
                "1",
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
    }
    assert_eq!(run_ok(&d.join("app.hcr")).trim(), "a=2 b=3");
    let t0 = Instant::now();
    while !servers_in(d).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the server did not end after its idle time"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A build folder removed and made again (or renamed away and replaced)
/// under the same path gets a server of its own: the old one, still
/// running in the old folder, never links the new folder's objects.
#[test]
fn a_build_folder_made_again_gets_its_own_server() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("build");
    let old = t.path().join("build.old");
    let _end = (EndServers(&d), EndServers(&old));
    let make = |b: i32| {
        std::fs::create_dir_all(&d).unwrap();
        three_modules(
            &d,
            "int a(void) { return 1; }",
            &format!("int b(void) {{ return {b}; }}"),
        );
        let o = hcr_link_in(
            &d,
            &["--incremental", "-o", "app.hcr", "main.o", "a.o", "b.o"],
            "300",
        );
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(run_ok(&d.join("app.hcr")).trim(), format!("a=1 b={b}"));
    };
    make(1);
    std::fs::rename(&d, &old).unwrap();
    make(2);
    std::fs::remove_dir_all(&d).unwrap();
    make(3);
}
