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

/// Runs `hcr-link ARGS` in `dir` with linking ahead off, so that every
/// link is the one asked for (the server idles out after 300 s).
fn hcr_link_asked(dir: &Path, args: &[&str]) -> Output {
    hcr_link_command(dir, args, "300")
        .env("HCR_LINK_AHEAD", "0")
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

/// Links `args` (a plain command line writing `app.hcr`) in a process of
/// its own into `plain.hcr` instead, and asserts that `app.hcr` is that
/// image byte for byte; `after` (the messages of the link that wrote
/// `app.hcr`) is shown when they differ.
fn assert_same_as_plain(dir: &Path, args: &[&str], after: &str) {
    let plain: Vec<&str> = args
        .iter()
        .map(|&a| if a == "app.hcr" { "plain.hcr" } else { a })
        .collect();
    let o = hcr_link_in(dir, &plain, "300");
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        std::fs::read(dir.join("app.hcr")).unwrap()
            == std::fs::read(dir.join("plain.hcr")).unwrap(),
        "the image differs from the plain link's: {after}"
    );
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
    let line = [&["-v", "-o", "app.hcr"][..], &inputs].concat();
    let link = || {
        let o = hcr_link_in(d, &[&["--incremental"][..], &line].concat(), "300");
        assert!(o.status.success(), "{}", text(&o));
        o
    };
    let same_as_plain = || assert_same_as_plain(d, &line, "");

    // The first run starts the server, which links from nothing.
    let first = link();
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
    let second = link();
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
    link();
    same_as_plain();
    assert_eq!(run_ok(&d.join("app.hcr")).trim(), "a=1 b=30");

    // The server answers as soon as the image is in place, its messages
    // printed: a warning reaches the client with the summary. The image a
    // link replaces is kept, hidden, for the next link to write over: one
    // per output, named after the server.
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
    let servers = servers_in(d);
    let mut kept = hidden_files(d);
    kept.sort();
    assert_eq!(
        kept.len(),
        2,
        "one replaced image kept per output: {kept:?}"
    );
    for (k, output) in kept.iter().zip(["app.hcr", "w.hcr"]) {
        let pid = k
            .strip_prefix(&format!(".{output}.tmp."))
            .and_then(|r| r.split('.').next()?.parse::<u32>().ok());
        assert!(
            pid.is_some_and(|p| servers.contains(&p)),
            "{k}: not a running server's ({servers:?})"
        );
    }
}

/// The hidden files in `dir`: images linked ahead, replaced images kept to
/// be written over, linkers' temporary files.
fn hidden_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let n = e.ok()?.file_name().to_string_lossy().into_owned();
            (n.starts_with('.') && n.contains(".hcr.")).then_some(n)
        })
        .collect()
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
    wait_until("the server ended after its idle time", || {
        servers_in(d).is_empty()
    });
    // Nor does it leave the image it kept to write over.
    assert_eq!(hidden_files(d), Vec::<String>::new());
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

/// The hidden images a server linked ahead and nobody claimed yet.
fn ahead_images(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let n = e.ok()?.file_name().to_string_lossy().into_owned();
            n.contains(".ahead.").then_some(n)
        })
        .collect()
}

/// Waits (20 s at most) until `done`, which `what` describes.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < Duration::from_secs(20), "not so: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until the server has linked ahead into a hidden image.
fn wait_for_ahead_image(dir: &Path) {
    wait_until("the server linked ahead after an input changed", || {
        !ahead_images(dir).is_empty()
    });
}

/// An input rebuilt makes the server link ahead; the next run with the
/// same command line puts that image in place and prints that link's
/// messages. A run with other arguments, a library changed where no
/// change is watched, and a link ahead that fails all link as they would
/// have without it: every image equals the plain link's.
#[test]
fn the_server_links_ahead_when_an_input_changes_and_only_claims_what_is_current() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let _end = EndServers(d);
    let main = r#"#include <stdio.h>
int a(void); int b(void); int x(void);
int main(void) { printf("a=%d b=%d x=%d\n", a(), b(), x()); return 0; }"#;
    module(d, "main", main, "-O2");
    module(d, "a", "int a(void) { return 1; }", "-O2");
    module(d, "b", "int b(void) { return 10; }", "-O2");
    // `DIR/libx.a`, whose x() returns `value`.
    let archive_in = |lib: &Path, value: i32| {
        std::fs::create_dir_all(lib).unwrap();
        module(
            lib,
            "x",
            &format!("int x(void) {{ return {value}; }}"),
            "-O2",
        );
        let tmp = lib.join("libx.a.new");
        let _ = std::fs::remove_file(&tmp);
        let st = Command::new("ar")
            .arg("rcs")
            .arg(&tmp)
            .arg(lib.join("x.o"))
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::rename(&tmp, lib.join("libx.a")).unwrap();
    };
    let archive = |value: i32| archive_in(&d.join("lib"), value);
    archive(1);
    // (`-L .`: the folder the image ahead is written to is searched too;
    // what `-l` finds there is unchanged by it.)
    let args = [
        "-v", "-L", ".", "-L", "lib", "-l", "x", "-o", "app.hcr", "main.o", "a.o", "b.o",
    ];
    let link = |extra: &[&str]| {
        let mut all = vec!["--incremental"];
        all.extend(extra);
        all.extend(args);
        let o = hcr_link_in(d, &all, "300");
        assert!(o.status.success(), "{}", text(&o));
        assert_same_as_plain(d, &args, &text(&o));
        text(&o)
    };
    let ahead = "linked ahead, as soon as an input changed";

    // Images ahead a server no longer running left behind go; a running
    // one's stay.
    let dead = d.join(".app.hcr.ahead.4194304");
    let live = d.join(format!(".app.hcr.ahead.{}", std::process::id()));
    std::fs::write(&dead, b"left").unwrap();
    std::fs::write(&live, b"kept").unwrap();
    let first = link(&[]);
    assert!(!first.contains(ahead), "{first}");
    assert!(!dead.exists(), "a dead server's image ahead was left");
    std::fs::remove_file(&live).expect("a live server's image ahead was removed");
    assert_eq!(run_ok(&d.join("app.hcr")).trim(), "a=1 b=10 x=1");

    // b rebuilt: linked ahead, claimed with that link's messages.
    rebuild(d, "b", "int b(void) { return 20; }");
    wait_for_ahead_image(d);
    let claimed = link(&[]);
    assert!(claimed.contains(ahead), "{claimed}");
    assert!(
        claimed.contains("incremental: taken over from the previous link, of 4 modules")
            && claimed.contains("hcr-link: 4 modules,"),
        "the link ahead's messages reach the client: {claimed}"
    );
    assert_eq!(run_ok(&d.join("app.hcr")).trim(), "a=1 b=20 x=1");
    assert_eq!(ahead_images(d), Vec::<String>::new(), "the image was moved");

    // Two objects rebuilt one after the other (as a build writes them):
    // the image claimed has both.
    rebuild(d, "a", "int a(void) { return 3; }");
    rebuild(d, "b", "int b(void) { return 25; }");
    // (Past the 30 ms pause a second change may add.)
    std::thread::sleep(Duration::from_millis(200));
    wait_for_ahead_image(d);
    let both = link(&[]);
    assert!(both.contains(ahead), "{both}");
    assert_eq!(run_ok(&d.join("app.hcr")).trim(), "a=3 b=25 x=1");

    // Linked ahead, then the archive replaced (its folder is not watched):
    // the image ahead read the old archive and is not used.
    rebuild(d, "a", "int a(void) { return 2; }");
    wait_for_ahead_image(d);
    archive(7);
    let relinked = link(&[]);
    assert!(!relinked.contains(ahead), "{relinked}");
    assert_eq!(run_ok(&d.join("app.hcr")).trim(), "a=2 b=25 x=7");
    assert_eq!(
        ahead_images(d),
        Vec::<String>::new(),
        "the stale image went"
    );

    // Linked ahead, then asked with other arguments: linked as asked.
    rebuild(d, "b", "int b(void) { return 30; }");
    wait_for_ahead_image(d);
    let other = link(&["--root", "main"]);
    assert!(!other.contains(ahead), "{other}");
    assert_eq!(run_ok(&d.join("app.hcr")).trim(), "a=2 b=30 x=7");

    // A link ahead that fails leaves nothing to claim: the run gets the
    // link's own error, and the image before stays.
    let before = std::fs::read(d.join("app.hcr")).unwrap();
    rebuild(
        d,
        "b",
        "int a(void) { return 5; } int b(void) { return 4; }",
    );
    let mut all = vec!["--incremental"];
    all.extend(args);
    // Give the link ahead time to run and fail.
    std::thread::sleep(Duration::from_millis(300));
    let failed = hcr_link_in(d, &all, "300");
    assert_eq!(failed.status.code(), Some(2), "{}", text(&failed));
    assert!(
        text(&failed).contains("b.o (module b): duplicate definition"),
        "{}",
        text(&failed)
    );
    assert_eq!(std::fs::read(d.join("app.hcr")).unwrap(), before);
    assert_eq!(ahead_images(d), Vec::<String>::new());

    // Linked ahead, then a library put where `-l` looked first and found
    // nothing (`-L .`, whose `libx.a` is no input, so no change is
    // linked): the image ahead found the other one and is not used.
    rebuild(d, "b", "int b(void) { return 40; }");
    wait_for_ahead_image(d);
    archive_in(d, 9);
    let found = link(&[]);
    assert!(!found.contains(ahead), "{found}");
    assert_eq!(run_ok(&d.join("app.hcr")).trim(), "a=2 b=40 x=9");
}

/// The folder of the inputs removed and made again (`make clean`): the
/// same server goes on linking ahead in the new one.
#[test]
fn linking_ahead_goes_on_in_an_object_folder_made_again() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let _end = EndServers(d);
    let obj = d.join("obj");
    let build = |b: i32| {
        std::fs::create_dir_all(&obj).unwrap();
        three_modules(
            &obj,
            "int a(void) { return 1; }",
            &format!("int b(void) {{ return {b}; }}"),
        );
    };
    let args = [
        "--incremental",
        "-v",
        "-o",
        "app.hcr",
        "obj/main.o",
        "obj/a.o",
        "obj/b.o",
    ];
    let link = || {
        let o = hcr_link_in(d, &args, "300");
        assert!(o.status.success(), "{}", text(&o));
        text(&o)
    };
    build(1);
    link();
    std::fs::remove_dir_all(&obj).unwrap();
    build(2);
    link();
    assert_eq!(run_ok(&d.join("app.hcr")).trim(), "a=1 b=2");
    rebuild(&obj, "b", "int b(void) { return 3; }");
    wait_for_ahead_image(d);
    let claimed = link();
    assert!(claimed.contains("linked ahead"), "{claimed}");
    assert_eq!(run_ok(&d.join("app.hcr")).trim(), "a=1 b=3");
    assert_eq!(servers_in(d).len(), 1, "the same server");
}

/// A link whose inputs are refused leaves the link before it to take over
/// from: the next link reuses what did not change, not only the parses.
#[test]
fn a_refused_link_leaves_the_previous_link_to_take_over_from() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let _end = EndServers(d);
    three_modules(d, "int a(void) { return 1; }", "int b(void) { return 10; }");
    let args = [
        "--incremental",
        "-v",
        "-o",
        "app.hcr",
        "main.o",
        "a.o",
        "b.o",
    ];
    let link = || hcr_link_asked(d, &args);
    assert!(link().status.success());
    // Refused at resolution (a duplicate definition), then at the check
    // after the scan (an undefined function).
    for broken in [
        "int a(void) { return 5; } int b(void) { return 4; }",
        "int nowhere(void); int b(void) { return nowhere(); }",
    ] {
        rebuild(d, "b", broken);
        let failed = link();
        assert_eq!(failed.status.code(), Some(2), "{}", text(&failed));
    }
    rebuild(d, "b", "int b(void) { return 20; }");
    let o = link();
    assert!(o.status.success(), "{}", text(&o));
    // `a`'s scan and applied bytes are the first link's (main calls b, so
    // it is scanned again).
    assert!(
        text(&o).contains("of 3 modules: 2 parses, 1 relocation scans, 1 applied segments"),
        "{}",
        text(&o)
    );
    assert_eq!(run_ok(&d.join("app.hcr")).trim(), "a=1 b=20");
}

/// What `-l` libraries define is asked again when one is rebuilt: a symbol
/// a refused link found in no library is found once its library defines
/// it, and one a library no longer defines is refused, as a plain link
/// does.
#[test]
fn a_library_rebuilt_is_asked_again_for_the_symbols_the_link_wants() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let _end = EndServers(d);
    let lib = d.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    support::plugin(&lib, "foo", "int foo_old(void) { return 1; }");
    let main = |calls: &str| {
        rebuild(
            d,
            "main",
            &format!("int foo_old(void); int foo_new(void);\nint main(void) {{ return {calls}; }}"),
        )
    };
    main("foo_old()");
    let args = [
        "--incremental",
        "-L",
        "lib",
        "-l",
        "foo",
        "-o",
        "app.hcr",
        "main.o",
    ];
    let link = || hcr_link_asked(d, &args);
    assert!(link().status.success());
    main("foo_old() + foo_new()");
    let refused = link();
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).contains("foo_new"), "{}", text(&refused));
    support::plugin(
        &lib,
        "foo",
        "int foo_old(void) { return 1; } int foo_new(void) { return 2; }",
    );
    let o = link();
    assert!(o.status.success(), "{}", text(&o));
    assert_same_as_plain(
        d,
        &["-L", "lib", "-l", "foo", "-o", "app.hcr", "main.o"],
        &text(&o),
    );
    // And the other way: the library rebuilt without it, the next link is
    // refused, as a plain link is.
    support::plugin(&lib, "foo", "int foo_old(void) { return 1; }");
    let refused = link();
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).contains("foo_new"), "{}", text(&refused));
}

/// Where `cc` finds glibc's and libgcc's static archives, `hcr-link` is a
/// static PIE (`build.rs`): no program interpreter, no shared library,
/// so its start maps nothing but itself. It then links as any build does.
#[test]
fn hcr_link_starts_without_the_dynamic_loader_where_the_static_archives_exist() {
    use object::read::elf::{Dyn as _, FileHeader as _, ProgramHeader as _};
    let found = |name: &str| {
        let out = Command::new("cc")
            .arg(format!("-print-file-name={name}"))
            .output()
            .expect("run cc");
        let path = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        path.is_absolute() && path.is_file()
    };
    let archives = ["libc.a", "libm.a", "libgcc.a", "libgcc_eh.a", "rcrt1.o"];
    if option_env!("HCR_LINK_DYNAMIC") == Some("1") || !archives.iter().all(|a| found(a)) {
        eprintln!("skipped: hcr-link is built dynamically here");
        return;
    }
    let bytes = std::fs::read(hcr_link_bin()).unwrap();
    let elf = object::elf::FileHeader64::<object::Endianness>::parse(&*bytes).unwrap();
    let endian = elf.endian().unwrap();
    let headers = elf.program_headers(endian, &*bytes).unwrap();
    let interp = headers
        .iter()
        .any(|h| h.p_type(endian) == object::elf::PT_INTERP);
    assert!(!interp, "hcr-link asks for a program interpreter");
    let needed = headers
        .iter()
        .filter_map(|h| h.dynamic(endian, &*bytes).ok().flatten())
        .flatten()
        .filter(|d| d.tag(endian) == object::elf::DT_NEEDED)
        .count();
    assert_eq!(needed, 0, "hcr-link needs shared libraries");

    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    three_modules(d, "int a(void) { return 1; }", "int b(void) { return 2; }");
    let o = hcr_link_in(d, &["-o", "app.hcr", "main.o", "a.o", "b.o"], "1");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(run_ok(&d.join("app.hcr")).trim(), "a=1 b=2");
}
