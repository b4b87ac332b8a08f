//! Reloading an image the process may not read. A C host linked with the
//! runtime runs as an unprivileged user (root cannot be denied a read: the
//! test drops to uid/gid 65534 with `setpriv` when it runs as root) and
//! reloads on command while the test replaces its image with an unreadable
//! one, then hides it in a directory the host cannot search: each reload
//! returns -1, `hcr_last_error()` names the path and says permission denied
//! (still after queries that succeed), the old code keeps running and the
//! global keeps counting.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const HOST: &str = r#"
#include <stdio.h>
#include "hcr.h"
/* Reloads once per line on stdin and reports what it sees. */
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (hcr_init(argv[1]) != 0) { printf("init failed: %s\n", hcr_last_error()); return 1; }
    int (*value)(void) = (int (*)(void))hcr_get_proc("lib", "value");
    int (*bump)(void) = (int (*)(void))hcr_get_proc("lib", "bump");
    printf("ready value=%d counter=%d\n", value(), bump());
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        int rc = hcr_perform_code_reload();
        /* Queries that succeed leave the reload's error as it was. */
        (void)hcr_get_proc("lib", "value");
        (void)hcr_get_global("lib", "counter");
        printf("rc=%d value=%d counter=%d error=%s\n", rc, value(), bump(), hcr_last_error());
    }
    hcr_shutdown();
    return 0;
}
"#;

const V1: &str = "int counter; int value(void) { return 1; } int bump(void) { return ++counter; }";
const V2: &str = "int counter; int value(void) { return 2; } int bump(void) { return ++counter; }";

fn build(dir: &Path, tag: &str, code: &str) -> Vec<u8> {
    std::fs::read(support::lib_image(dir, tag, code)).unwrap()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Puts `bytes` at `path` with `mode`, by rename.
fn install(path: &Path, bytes: &[u8], mode: u32) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    chmod(&tmp, mode);
    std::fs::rename(&tmp, path).unwrap();
}

/// The command prefix that runs a program without the right to read what
/// only root may read: nothing for a normal user, `setpriv` for root.
/// `Err` (with the reason) when root cannot drop its privileges.
fn unprivileged() -> Result<Vec<String>, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(Vec::new());
    }
    let prefix: Vec<String> = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    match Command::new(&prefix[0])
        .args(&prefix[1..])
        .arg("true")
        .status()
    {
        Ok(s) if s.success() => Ok(prefix),
        Ok(s) => Err(format!("setpriv cannot drop root privileges ({s})")),
        Err(e) => Err(format!("setpriv (util-linux) is not available: {e}")),
    }
}

/// True when the unprivileged user can read `path`.
fn readable_by(prefix: &[String], path: &Path) -> bool {
    let (prog, args) = match prefix.split_first() {
        Some((p, a)) => (p.clone(), a.to_vec()),
        None => ("test".to_string(), Vec::new()),
    };
    let mut c = Command::new(prog);
    c.args(args);
    if !prefix.is_empty() {
        c.arg("test");
    }
    c.arg("-r").arg(path).status().unwrap().success()
}

struct Host {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Host {
    fn line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the host answers")
    }
    fn reload(&mut self) -> String {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(b"reload\n").unwrap();
        stdin.flush().unwrap();
        self.line()
    }
}

#[test]
fn reloading_an_unreadable_image_fails_and_keeps_the_old_code() {
    let prefix = match unprivileged() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    chmod(d, 0o755); // the unprivileged host reads below it
    let v1 = build(d, "v1", V1);
    let v2 = build(d, "v2", V2);
    let src = d.join("host.c");
    std::fs::write(&src, HOST).unwrap();
    let host_bin = d.join("host");
    support::c_host(&src, &host_bin, &["-O1"]);
    let dir = d.join("images");
    std::fs::create_dir(&dir).unwrap();
    chmod(&dir, 0o755);
    let app: PathBuf = dir.join("app.hcr");
    install(&app, &v1, 0o644);

    let (prog, args) = match prefix.split_first() {
        Some((p, a)) => (p.clone(), a.to_vec()),
        None => (host_bin.display().to_string(), Vec::new()),
    };
    let mut cmd = Command::new(prog);
    cmd.args(args);
    if !prefix.is_empty() {
        cmd.arg(&host_bin);
    }
    let mut child = cmd
        .arg(&app)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            if tx.send(l.unwrap()).is_err() {
                break;
            }
        }
    });
    let mut host = Host { child, lines };
    assert_eq!(host.line(), "ready value=1 counter=1");

    // An unreadable image replaces the loaded one.
    install(&app, &v2, 0o000);
    if readable_by(&prefix, &app) {
        eprintln!("skipped: this user can read a file of mode 000 (a capability such as CAP_DAC_OVERRIDE)");
        return;
    }
    let denied = format!(
        "rc=-1 value=1 counter=2 error={}: Permission denied",
        app.display()
    );
    let got = host.reload();
    assert!(got.starts_with(&denied), "{got}");

    // A readable image in a directory the host cannot search.
    chmod(&app, 0o644);
    chmod(&dir, 0o600);
    let got = host.reload();
    assert!(
        got.starts_with(&denied.replace("counter=2", "counter=3")),
        "{got}"
    );

    // Access restored: the reload goes through, the global kept its value.
    chmod(&dir, 0o755);
    assert_eq!(host.reload(), "rc=1 value=2 counter=4 error=");

    drop(host.child.stdin.take());
    let status = host.child.wait().unwrap();
    assert!(status.success(), "host: {status}");
}
