//! A program started on an image named by a relative path still finds it
//! after it changes its working directory: the change check, the reload
//! and `hcr run --auto-reload` look the image up where it was when the
//! runtime started.

mod support;

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

const MAIN: &str = r#"
#include <stdio.h>
#include <unistd.h>
int hcr_has_any_module_changed(void);
int hcr_perform_code_reload(void);
const char *hcr_last_error(void);
int value(void);
int main(void) {
    if (chdir("/") != 0)
        return 3;
    printf("before %d\n", value());
    fflush(stdout);
    char line[16];
    if (!fgets(line, sizeof line, stdin))
        return 4;
    int changed = hcr_has_any_module_changed();
    int r = hcr_perform_code_reload();
    printf("changed %d reload %d after %d%s%s\n", changed, r, value(),
           r < 0 ? ": " : "", r < 0 ? hcr_last_error() : "");
    return 0;
}
"#;

/// Links `main_src` with a `value()` of 1 into `d/app.hcr` and starts
/// `hcr run ARGS app.hcr` in `d`; returns the process once it printed
/// `before 1`, its output lines, and `main`'s object.
fn started(
    d: &Path,
    main_src: &str,
    args: &[&str],
) -> (Child, Receiver<String>, std::path::PathBuf) {
    let main = support::module(d, "main", main_src, "-O1");
    let v1 = support::module(d, "value", "int value(void) { return 1; }\n", "-O1");
    support::link_ok(&d.join("app.hcr"), &[main.clone(), v1]);
    let mut child = support::hcr_command()
        .current_dir(d)
        .arg("run")
        .args(args)
        .arg("app.hcr")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = support::lines_of(child.stdout.take().unwrap());
    let first = lines.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(first, "before 1");
    (child, lines, main)
}

/// `main` linked with a `value()` of 2, in `d/next/app.hcr` (its path).
fn relinked(d: &Path, main: std::path::PathBuf) -> std::path::PathBuf {
    let next = d.join("next");
    std::fs::create_dir(&next).unwrap();
    let v2 = support::module(&next, "value", "int value(void) { return 2; }\n", "-O1");
    support::link_ok(&next.join("app.hcr"), &[main, v2]);
    next.join("app.hcr")
}

#[test]
fn a_program_that_changes_directory_still_reloads_its_relative_image() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let (mut child, lines, main) = started(d, MAIN, &[]);
    // The program now runs in `/`; the image changes where it was.
    std::fs::rename(relinked(d, main), d.join("app.hcr")).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "go").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let last = lines.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(
        last,
        "changed 1 reload 1 after 2",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());
}

const AUTO: &str = r#"
#include <stdio.h>
#include <unistd.h>
int value(void);
int main(void) {
    if (chdir("/") != 0)
        return 3;
    printf("before %d\n", value());
    fflush(stdout);
    for (int i = 0; i < 3000 && value() == 1; i++)
        usleep(10000);
    printf("after %d\n", value());
    return 0;
}
"#;

#[test]
fn auto_reload_follows_a_relative_image_after_a_change_of_directory() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let (mut child, lines, main) = started(d, AUTO, &["--auto-reload"]);
    let errors = support::lines_of(child.stderr.take().unwrap());
    // A torn image first: its failure is reported once, and the next
    // version of the file is tried afresh.
    let next = relinked(d, main);
    let good = std::fs::read(&next).unwrap();
    support::install(&d.join("app.hcr"), &good[..good.len() / 2]);
    let report = errors.recv_timeout(Duration::from_secs(60)).unwrap();
    assert!(report.contains("auto-reload of app.hcr failed"), "{report}");
    std::fs::rename(next, d.join("app.hcr")).unwrap();
    let last = lines.recv_timeout(Duration::from_secs(60)).unwrap();
    let _ = child.wait();
    let rest: Vec<String> = errors.try_iter().collect();
    assert_eq!(last, "after 2", "stderr: {rest:?}");
}
