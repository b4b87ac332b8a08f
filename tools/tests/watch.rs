//! `hcr watch` and `hcr run --auto-reload`, driven as a user would: the
//! watcher runs in a pseudo-terminal (util-linux `script`), the test edits
//! files in a copy of the demo and reads what appears on the terminal.
//!
//! Every wait polls for the expected output with a generous deadline, so a
//! loaded machine makes the tests slower, not flaky; nothing sleeps a fixed
//! time to let something happen.

mod support;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Deadline for anything to appear (a build, a reload, a few ticks).
const DEADLINE: Duration = Duration::from_secs(60);

/// A command running with its output captured: a pseudo-terminal session
/// (`script`) or a plain pipe.
struct Session {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    what: String,
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Session {
    /// Runs `argv` in a pseudo-terminal: its stdout and stderr are a
    /// terminal, as when a user runs it.
    fn pty(argv: &[String]) -> Session {
        let line = argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ");
        let mut cmd = Command::new("script");
        cmd.args(["-q", "-f", "-e", "-c"])
            .arg(&line)
            .arg("/dev/null")
            .env("SHELL", "/bin/sh");
        Session::start(cmd, line)
    }

    /// Runs `cmd` with stdout and stderr captured through one pipe each.
    fn piped(cmd: Command) -> Session {
        let what = format!("{cmd:?}");
        Session::start(cmd, what)
    }

    fn start(mut cmd: Command, what: String) -> Session {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start {what}: {e} (is util-linux `script` installed?)")
        });
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        let streams: Vec<Box<dyn std::io::Read + Send>> = vec![
            Box::new(child.stdout.take().expect("stdout")),
            Box::new(child.stderr.take().expect("stderr")),
        ];
        for mut s in streams {
            let out = Arc::clone(&out);
            readers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    out.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .extend_from_slice(&buf[..n]);
                }
            }));
        }
        Session {
            child,
            out,
            readers,
            what,
        }
    }

    /// Everything printed so far, without carriage returns.
    fn text(&self) -> String {
        let b = self.out.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&b).replace('\r', "")
    }

    /// Waits until `pred` holds for the output; fails with the output after
    /// the deadline, or when the command ended without it.
    fn wait_for(&mut self, desc: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let t = self.text();
            if pred(&t) {
                return t;
            }
            let ended = self.child.try_wait().ok().flatten();
            if start.elapsed() > DEADLINE || ended.is_some() {
                // Collect what the command printed last.
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "{} waiting for {desc} ({}):\n--- output of {} ---\n{}",
                    if ended.is_some() {
                        "the command ended"
                    } else {
                        "timed out"
                    },
                    ended.map_or_else(|| format!("{:?}", start.elapsed()), |s| s.to_string()),
                    self.what,
                    self.text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the command to end by itself.
    fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return s;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{} did not end:\n{}",
                self.what,
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Closing the terminal hangs up everything running in it; hcr run
        // also exits when its hcr watch is gone.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One drawn tick of the demo: (tick, world, score).
fn ticks(text: &str) -> Vec<(u64, String, u64)> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("tick")?;
            let (n, rest) = rest.trim_start().split_once(" |")?;
            let (world, rest) = rest.split_once("| score")?;
            let score = rest.split_whitespace().next()?;
            Some((n.parse().ok()?, world.to_string(), score.parse().ok()?))
        })
        .collect()
}

/// Ticks are drawn in order from 1, never restarting, and the score never
/// drops: the program's state survived every reload.
fn assert_state_carried_on(text: &str) {
    let t = ticks(text);
    assert!(!t.is_empty(), "no ticks drawn:\n{text}");
    assert_eq!(t[0].0, 1, "first tick:\n{text}");
    for w in t.windows(2) {
        assert_eq!(w[1].0, w[0].0 + 1, "ticks must follow each other:\n{text}");
        assert!(w[1].2 >= w[0].2, "the score dropped:\n{text}");
    }
}

/// The demo copied into a fresh folder.
fn demo_copy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("demo");
    std::fs::create_dir(&dir).expect("mkdir");
    for e in std::fs::read_dir(support::repo().join("testdata/demo")).expect("demo") {
        let p = e.expect("entry").path();
        if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("c" | "h" | "toml")
        ) {
            std::fs::copy(&p, dir.join(p.file_name().expect("name"))).expect("copy");
        }
    }
    (tmp, dir)
}

/// Replaces `from` by `to` in `file` (which must contain it) — a save.
fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).expect("read");
    assert!(text.contains(from), "{} lacks {from:?}", file.display());
    std::fs::write(file, text.replacen(from, to, 1)).expect("write");
}

fn hcr() -> String {
    support::hcr_bin().display().to_string()
}

/// `hcr watch DIR -- ARGS` in a terminal.
fn watch(dir: &Path, extra: &[&str], args: &[&str]) -> Session {
    let mut argv = vec![hcr(), "watch".into(), dir.display().to_string()];
    argv.extend(extra.iter().map(|s| s.to_string()));
    argv.push("--".into());
    argv.extend(args.iter().map(|s| s.to_string()));
    Session::pty(&argv)
}

/// Demo arguments: fast ticks, and an end in any case (about a minute).
const DEMO_ARGS: &[&str] = &["--delay", "20", "--ticks", "3000"];

fn creature_line(glyph: char) -> impl Fn(&str) -> bool {
    move |t: &str| ticks(t).iter().any(|(_, w, _)| w.contains(glyph))
}

#[test]
fn editing_a_module_reloads_it_and_the_state_carries_on() {
    let (_tmp, dir) = demo_copy();
    let mut s = watch(&dir, &[], DEMO_ARGS);
    s.wait_for("ticks 1..5 with the creature '@'", |t| {
        ticks(t).iter().filter(|(_, w, _)| w.contains('@')).count() >= 5
    });
    assert!(s.text().contains("it reloads itself"), "{}", s.text());
    edit(&dir.join("creature.c"), "return '@';", "return '&';");
    let t = s.wait_for("the new glyph '&' after the reload", creature_line('&'));
    assert!(t.contains("hcr watch: changed: creature.c"), "{t}");
    assert!(
        t.contains("~~ hot reload #1 at tick") && t.contains("new code in: creature.c;"),
        "the demo's after-reload handler did not run:\n{t}"
    );
    let drawn = ticks(&t);
    let last_old = drawn
        .iter()
        .filter(|(_, w, _)| w.contains('@'))
        .map(|x| x.0)
        .max();
    let first_new = drawn
        .iter()
        .filter(|(_, w, _)| w.contains('&'))
        .map(|x| x.0)
        .min();
    assert!(
        last_old < first_new && last_old.is_some_and(|n| n >= 5),
        "old then new code, the tick counter going on:\n{t}"
    );
    assert_state_carried_on(&t);
}

#[test]
fn a_compile_error_is_printed_once_and_the_old_code_keeps_running() {
    let (_tmp, dir) = demo_copy();
    let render = dir.join("render.c");
    let mut s = watch(&dir, &[], DEMO_ARGS);
    s.wait_for("ticks", |t| ticks(t).len() >= 3);
    edit(
        &render,
        "void render_frame(void)",
        "void render_frame(void) oops",
    );
    let t = s.wait_for("the compile error", |t| t.contains("error"));
    assert!(
        t.contains(
            "hcr watch: render.c does not compile; the program keeps running the previous code:"
        ),
        "{t}"
    );
    // The old code goes on drawing for a while (more than one full re-check
    // period of hcr watch), and the error is not printed again.
    let drawn = ticks(&t).len();
    let t = s.wait_for("more ticks drawn by the old code", |t| {
        ticks(t).len() >= drawn + 40
    });
    assert_eq!(
        t.matches("does not compile").count(),
        1,
        "printed once:\n{t}"
    );
    assert!(!t.contains("hot reload"), "nothing was reloaded:\n{t}");
    // The fix (with a visible change) lands.
    edit(
        &render,
        "void render_frame(void) oops",
        "void render_frame(void)",
    );
    edit(&render, "line[i] = '.';", "line[i] = '_';");
    let t = s.wait_for("the new ground", |t| {
        ticks(t).iter().any(|(_, w, _)| w.contains('_'))
    });
    assert!(t.contains("~~ hot reload #1"), "{t}");
    assert_state_carried_on(&t);
}

#[test]
fn edits_10ms_apart_all_land() {
    let (_tmp, dir) = demo_copy();
    let creature = dir.join("creature.c");
    let mut s = watch(&dir, &[], DEMO_ARGS);
    s.wait_for("ticks", |t| ticks(t).len() >= 3);
    edit(&creature, "return '@';", "return 'X';");
    std::thread::sleep(Duration::from_millis(10));
    edit(&dir.join("render.c"), "line[i] = '.';", "line[i] = '-';");
    std::thread::sleep(Duration::from_millis(10));
    edit(&creature, "return 'X';", "return 'Y';");
    // The final program shows both files' last versions, and keeps showing
    // them: nothing is one edit behind.
    let ok = |w: &str| w.contains('Y') && w.contains('-') && !w.contains('X') && !w.contains('.');
    let t = s.wait_for("the last edits of both files", |t| {
        ticks(t).iter().any(|(_, w, _)| ok(w))
    });
    let first = ticks(&t)
        .iter()
        .find(|(_, w, _)| ok(w))
        .map(|x| x.0)
        .expect("found");
    let t = s.wait_for("20 more ticks", |t| {
        ticks(t).last().is_some_and(|l| l.0 >= first + 20)
    });
    for (n, w, _) in ticks(&t).iter().filter(|x| x.0 >= first) {
        assert!(ok(w), "tick {n} runs older code:\n{t}");
    }
    assert_state_carried_on(&t);
}

#[test]
fn a_header_change_rebuilds_every_module() {
    let (_tmp, dir) = demo_copy();
    let mut s = watch(&dir, &[], DEMO_ARGS);
    s.wait_for("ticks", |t| ticks(t).len() >= 3);
    edit(
        &dir.join("demo.h"),
        "#define WORLD_WIDTH 40",
        "#define WORLD_WIDTH 20",
    );
    let t = s.wait_for("a world 20 wide", |t| {
        ticks(t).iter().any(|(_, w, _)| w.len() == 20)
    });
    assert!(t.contains("compiled 4 modules"), "{t}");
    assert_state_carried_on(&t);
}

/// A header outside the folder, found through `cflags = "-I ../include"`:
/// editing it rebuilds the modules that include it, as one inside does.
#[test]
fn a_header_outside_the_folder_rebuilds_the_modules() {
    let (tmp, dir) = demo_copy();
    let include = tmp.path().join("include");
    std::fs::create_dir(&include).unwrap();
    std::fs::rename(dir.join("demo.h"), include.join("demo.h")).unwrap();
    std::fs::write(dir.join("hcr.toml"), "cflags = \"-I ../include\"\n").unwrap();
    let mut s = watch(&dir, &[], DEMO_ARGS);
    s.wait_for("ticks", |t| ticks(t).len() >= 3);
    // Learning of the header outside rebuilds nothing more: an edit of one
    // module compiles that module alone.
    edit(&dir.join("creature.c"), "return '@';", "return 'r';");
    let t = s.wait_for("the new creature", creature_line('r'));
    assert!(t.contains("compiled 1 module "), "{t}");
    edit(
        &include.join("demo.h"),
        "#define WORLD_WIDTH 40",
        "#define WORLD_WIDTH 20",
    );
    let t = s.wait_for("a world 20 wide", |t| {
        ticks(t).iter().any(|(_, w, _)| w.len() == 20)
    });
    assert!(t.contains("hcr watch: changed: ../include/demo.h"), "{t}");
    assert!(t.contains("compiled 4 modules"), "{t}");
    assert_state_carried_on(&t);
}

/// A header missing from a folder outside (named by `-I`) when hcr watch
/// starts: the modules do not compile until it is created there.
#[test]
fn a_header_created_outside_the_folder_is_found() {
    let (tmp, dir) = demo_copy();
    let include = tmp.path().join("include");
    std::fs::create_dir(&include).unwrap();
    let header = std::fs::read_to_string(dir.join("demo.h")).unwrap();
    std::fs::remove_file(dir.join("demo.h")).unwrap();
    std::fs::write(dir.join("hcr.toml"), "cflags = \"-I ../include\"\n").unwrap();
    let mut s = watch(&dir, &[], DEMO_ARGS);
    s.wait_for("the compile errors", |t| {
        t.matches("does not compile").count() >= 4
    });
    std::fs::write(include.join("demo.h"), header).unwrap();
    let t = s.wait_for("ticks", |t| ticks(t).len() >= 3);
    assert!(t.contains("compiled 4 modules"), "{t}");
}

/// A header taken away breaks every module; putting it back as it was is
/// confirmed, with nothing to reload.
#[test]
fn a_header_put_back_as_it_was_is_confirmed() {
    let (tmp, dir) = demo_copy();
    let mut s = watch(&dir, &[], DEMO_ARGS);
    s.wait_for("ticks", |t| ticks(t).len() >= 3);
    let away = tmp.path().join("demo.h.away");
    std::fs::rename(dir.join("demo.h"), &away).unwrap();
    s.wait_for("the compile errors", |t| {
        t.matches("does not compile").count() >= 4
    });
    std::fs::rename(&away, dir.join("demo.h")).unwrap();
    let t = s.wait_for("the confirmation", |t| {
        t.contains("the sources match the running code again: nothing to reload")
    });
    assert!(!t.contains("hot reload"), "{t}");
}

#[test]
fn watch_exits_with_the_programs_exit_code() {
    let (_tmp, dir) = demo_copy();
    let mut s = watch(&dir, &[], &["--ticks", "5", "--delay", "1"]);
    let status = s.wait_exit();
    let t = s.text();
    assert!(status.success(), "{status}:\n{t}");
    assert!(t.contains("demo: stopped after 5 ticks"), "{t}");
    assert_state_carried_on(&t);

    let mut s = watch(&dir, &[], &["--bad-option"]);
    let status = s.wait_exit();
    assert_eq!(status.code(), Some(2), "{}", s.text());
}

#[test]
fn restart_starts_the_program_again_after_the_next_build() {
    let (_tmp, dir) = demo_copy();
    let mut s = watch(&dir, &["--restart"], &["--ticks", "3", "--delay", "1"]);
    s.wait_for("the end of the first run", |t| {
        t.contains("it starts again after the next successful build")
    });
    edit(&dir.join("creature.c"), "return '@';", "return 'r';");
    let t = s.wait_for("the second run, with the new code", |t| {
        t.matches("demo: stopped after 3 ticks").count() == 2
    });
    assert!(creature_line('r')(&t), "{t}");
    // Fresh state: the second run starts again from tick 1.
    assert_eq!(ticks(&t).iter().filter(|x| x.0 == 1).count(), 2, "{t}");
}

#[test]
fn the_program_ends_when_hcr_watch_is_killed() {
    let (_tmp, dir) = demo_copy();
    let mut cmd = Command::new(support::hcr_bin());
    cmd.arg("watch").arg(&dir).arg("--").args(DEMO_ARGS);
    let mut s = Session::piped(cmd);
    s.wait_for("ticks", |t| ticks(t).len() >= 3);
    // SIGKILL: hcr watch cannot stop the program itself. The program shares
    // its stdout and stderr pipes, so they close only once it is gone too.
    s.child.kill().expect("kill");
    let _ = s.child.wait();
    let start = Instant::now();
    while !s.readers.iter().all(|r| r.is_finished()) {
        assert!(
            start.elapsed() < DEADLINE,
            "the program outlived hcr watch:\n{}",
            s.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn watch_reports_unusable_arguments() {
    let (_tmp, dir) = demo_copy();
    for (extra, want) in [
        (
            vec!["--build", "make"],
            "--build needs the path of the image",
        ),
        (vec!["--image", "x.hcr"], "--image is for --build"),
    ] {
        let mut argv = vec!["watch".to_string(), dir.display().to_string()];
        argv.extend(extra.iter().map(|s| s.to_string()));
        let o = Command::new(support::hcr_bin())
            .args(&argv)
            .output()
            .expect("hcr");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(want), "{argv:?}: {err}");
    }
    let o = Command::new(support::hcr_bin())
        .args(["watch", "/nonexistent/folder"])
        .output()
        .expect("hcr");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a folder"));
    std::fs::write(
        dir.join("hcr.toml"),
        "root = \"main\"\nroot_module = \"x\"\n",
    )
    .expect("write");
    let o = Command::new(support::hcr_bin())
        .args(["watch", &dir.display().to_string()])
        .output()
        .expect("hcr");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("hcr.toml:2: unknown key `root_module`"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// Programs that never call hcr_perform_code_reload()

/// A root whose loop calls `step()` of module `step` and never reloads.
const PLAIN_MAIN: &str = r#"
#include <stdio.h>
#include <time.h>
int step(void);
static long count;
int main(void)
{
    struct timespec ts = {0, 10 * 1000000L};
    for (count = 1; count <= 6000; count++) {
        printf("count %ld step %d\n", count, step());
        fflush(stdout);
        nanosleep(&ts, NULL);
    }
    return 0;
}
"#;

fn plain_step(v: u32) -> String {
    format!("int step(void) {{ return {v}; }}\n")
}

/// (count, step) of each line.
fn steps(text: &str) -> Vec<(u64, u32)> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "count").then_some(())?;
            let c = w.next()?.parse().ok()?;
            (w.next()? == "step").then_some(())?;
            Some((c, w.next()?.parse().ok()?))
        })
        .collect()
}

fn assert_counts_on(text: &str) {
    let s = steps(text);
    for w in s.windows(2) {
        assert_eq!(w[1].0, w[0].0 + 1, "the count must go on:\n{text}");
    }
}

#[test]
fn run_auto_reload_reloads_a_program_that_never_asks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let main = support::module(d, "main", PLAIN_MAIN, "-O2");
    std::fs::write(d.join("step.c"), plain_step(1)).expect("write");
    let step = d.join("step.o");
    support::compile(&d.join("step.c"), &step, "-O2", &[]);
    let image = d.join("app.hcr");
    support::link_ok(&image, &[main.clone(), step.clone()]);
    let mut cmd = Command::new(support::hcr_bin());
    cmd.args(["run", "--auto-reload"]).arg(&image);
    let mut s = Session::piped(cmd);
    s.wait_for("step 1", |t| steps(t).len() >= 3);
    for v in [2, 3] {
        std::fs::write(d.join("step.c"), plain_step(v)).expect("write");
        support::compile(&d.join("step.c"), &step, "-O2", &[]);
        support::link_ok(&image, &[main.clone(), step.clone()]);
        let t = s.wait_for(&format!("step {v}"), |t| steps(t).iter().any(|x| x.1 == v));
        assert_counts_on(&t);
    }
    // Without --auto-reload nothing changes.
    let mut cmd = Command::new(support::hcr_bin());
    cmd.arg("run").arg(&image);
    let mut s = Session::piped(cmd);
    s.wait_for("step 3", |t| !steps(t).is_empty());
    std::fs::write(d.join("step.c"), plain_step(4)).expect("write");
    support::compile(&d.join("step.c"), &step, "-O2", &[]);
    support::link_ok(&image, &[main, step]);
    let t = s.wait_for("100 more steps", |t| steps(t).len() >= 100);
    assert!(steps(&t).iter().all(|x| x.1 == 3), "{t}");
}

#[test]
fn watch_auto_reloads_a_program_that_never_asks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    std::fs::write(d.join("main.c"), PLAIN_MAIN).expect("write");
    std::fs::write(d.join("step.c"), plain_step(1)).expect("write");
    let mut s = watch(d, &[], &[]);
    s.wait_for("step 1", |t| steps(t).len() >= 3);
    assert!(
        s.text().contains(
            "it never calls hcr_perform_code_reload, so hcr run --auto-reload reloads it"
        ),
        "{}",
        s.text()
    );
    std::fs::write(d.join("step.c"), plain_step(2)).expect("write");
    let t = s.wait_for("step 2", |t| steps(t).iter().any(|x| x.1 == 2));
    assert_counts_on(&t);
}

// ---------------------------------------------------------------------------
// Build integration

#[test]
fn watch_with_make_and_hcr_mk() {
    let (_tmp, dir) = demo_copy();
    std::fs::write(
        dir.join("Makefile"),
        format!(
            "HCR_LINK = {}\nexport HCR_LINK_SERVER_IDLE = 20\ninclude {}\nall: $(HCR_IMAGE)\n",
            support::hcr_link_bin().display(),
            support::repo().join("tools/hcr.mk").display()
        ),
    )
    .expect("write");
    let mut s = watch(
        &dir,
        &["--build", "make -s", "--image", "app.hcr"],
        DEMO_ARGS,
    );
    s.wait_for("ticks", |t| ticks(t).len() >= 3);
    edit(&dir.join("creature.c"), "return '@';", "return 'm';");
    let t = s.wait_for("the glyph 'm'", creature_line('m'));
    assert!(t.contains("hcr watch: `make -s` took"), "{t}");
    // hcr-link, run by make under hcr watch, kept its link in a server.
    assert_eq!(support::servers_in(&dir).len(), 1, "one link server");
    // A build error is shown, and the old code runs on.
    edit(&dir.join("world.c"), "tick++;", "tick++ oops;");
    let t = s.wait_for("make's error", |t| t.contains("`make -s` failed"));
    let drawn = ticks(&t).len();
    s.wait_for("more ticks", |t| ticks(t).len() >= drawn + 10);
    // Two quick edits: the second one lands although it was saved while
    // make was compiling the first.
    edit(&dir.join("world.c"), "tick++ oops;", "tick++;");
    std::thread::sleep(Duration::from_millis(10));
    edit(&dir.join("creature.c"), "return 'm';", "return 'k';");
    let t = s.wait_for("the glyph 'k'", creature_line('k'));
    assert_state_carried_on(&t);
}

#[test]
fn cmake_and_hcr_cmake() {
    if Command::new("cmake").arg("--version").output().is_err() {
        eprintln!("skipped: cmake is not installed (apt-get install cmake)");
        return;
    }
    let (_tmp, dir) = demo_copy();
    std::fs::write(
        dir.join("CMakeLists.txt"),
        format!(
            "cmake_minimum_required(VERSION 3.16)\nproject(demo C)\ninclude({})\nhcr_add_image(demo SOURCES main.c world.c creature.c render.c)\n",
            support::repo().join("tools/hcr.cmake").display()
        ),
    )
    .expect("write");
    let o = Command::new("cmake")
        .current_dir(&dir)
        .args(["-S", ".", "-B", "build"])
        .arg(format!("-DHCR_LINK={}", support::hcr_link_bin().display()))
        .output()
        .expect("cmake");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut s = watch(
        &dir,
        &[
            "--build",
            "cmake --build build",
            "--image",
            "build/demo.hcr",
        ],
        DEMO_ARGS,
    );
    s.wait_for("ticks", |t| ticks(t).len() >= 3);
    edit(&dir.join("creature.c"), "return '@';", "return 'c';");
    let t = s.wait_for("the glyph 'c'", creature_line('c'));
    assert_state_carried_on(&t);
}

#[test]
fn a_crashing_edit_is_reported_rolled_back_and_the_fix_lands() {
    let (_tmp, dir) = demo_copy();
    let creature = dir.join("creature.c");
    let mut s = watch(&dir, &[], DEMO_ARGS);
    s.wait_for("ticks", |t| ticks(t).len() >= 3);
    let crash = "    { volatile int zero = 0; return c->x / zero; }\n";
    edit(
        &creature,
        "    if (c->energy == 0)\n        return 0; /* too tired",
        &format!("{crash}    if (c->energy == 0)\n        return 0; /* too tired"),
    );
    let t = s.wait_for("the rollback", |t| t.contains("hcr: rolled back"));
    assert!(
        t.contains("hcr: crash: SIGFPE in creature:creature_decide, image generation 1"),
        "{t}"
    );
    assert!(
        t.contains("hcr: rolled back to image generation 0 after a crash in image generation 1"),
        "{t}"
    );
    // The demo keeps drawing with the code from before the edit.
    let drawn = ticks(&t).len();
    s.wait_for("more ticks from the old code", |t| {
        ticks(t).len() >= drawn + 10
    });
    // The fix (with a visible change) lands.
    edit(&creature, crash, "");
    edit(&creature, "return '@';", "return '&';");
    let t = s.wait_for("the fixed code", creature_line('&'));
    let drawn = ticks(&t);
    for w in drawn.windows(2) {
        assert!(w[1].0 > w[0].0 && w[1].2 >= w[0].2, "state lost:\n{t}");
    }
}
