//! Live state: a program run with `hcr run --control` serves its globals on
//! a Unix socket; `hcr globals` reads them, `hcr set` writes them with type
//! and range checks, a reload that adds and removes globals is followed by a
//! connected client, bad requests and stuck clients cost the program
//! nothing, and another user cannot connect.

mod support;

use support::live::Program;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Prints its globals on `p`, reloads on `r`.
const MAIN: &str = r#"
#include <stdio.h>
#include <string.h>
#include "hcr.h"
extern void show(void);
int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready\n");
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (line[0] == 'r') printf("reload rc=%d\n", hcr_perform_code_reload());
        else show();
    }
    return 0;
}
"#;

const V1: &str = r#"
#include <stdio.h>
signed char c8 = -3;
short s16 = 1000;
int speed = 5;
long long big = 1LL << 40;
unsigned char arr[20] = {1, 2, 3};
void show(void) {
    printf("c8=%d s16=%d speed=%d big=%lld arr0=%d arr19=%d\n", c8, s16, speed, big, arr[0], arr[19]);
}
"#;

const V2: &str = r#"
#include <stdio.h>
short s16 = 1000;
int speed = 5;
long long big = 1LL << 40;
unsigned char arr[20] = {1, 2, 3};
int added = 77;
void show(void) {
    printf("v2 s16=%d speed=%d added=%d\n", s16, speed, added);
}
"#;

/// What these tests ask of a running program besides the shared ones.
trait Endpoint {
    fn socket(&self) -> PathBuf;
    fn connect(&self) -> UnixStream;
}

impl Endpoint for Program {
    fn socket(&self) -> PathBuf {
        self.runtime_dir
            .join("hcr")
            .join(format!("{}.sock", self.pid()))
    }
    fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(self.socket()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }
}

fn start(t: &Path) -> Program {
    start_with(t, V1)
}

fn start_with(t: &Path, code: &str) -> Program {
    Program::start(t, MAIN, code, "-O1", &[])
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn globals_are_read_and_set_through_the_socket() {
    let t = tempfile::tempdir().unwrap();
    let mut p = start(t.path());
    let pid = p.pid().to_string();

    // The endpoint's files: a private directory and socket.
    let dir_mode = std::fs::metadata(p.runtime_dir.join("hcr")).unwrap().mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    let sock_mode = std::fs::metadata(p.socket()).unwrap().mode();
    assert_eq!(sock_mode & 0o777, 0o600);

    let ps = p.hcr(&["ps"]);
    assert!(ps.status.success(), "{}", err(&ps));
    let row = text(&ps)
        .lines()
        .find(|l| l.trim_start().starts_with(&pid))
        .map(String::from)
        .unwrap_or_else(|| panic!("hcr ps lists the program:\n{}", text(&ps)));
    assert!(row.contains("app.hcr") && row.contains("main lib"), "{row}");

    let g = p.hcr(&["globals", &pid, "lib"]);
    assert!(g.status.success(), "{}", err(&g));
    let table = text(&g);
    let value_of = |table: &str, name: &str| -> String {
        table
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .and_then(|l| l.split_whitespace().nth(3).map(String::from))
            .unwrap_or_else(|| panic!("no {name} in\n{table}"))
    };
    // Built without -g: size and bytes (memory order).
    assert_eq!(value_of(&table, "c8"), "0xfd");
    assert_eq!(value_of(&table, "s16"), "0xe803");
    assert_eq!(value_of(&table, "speed"), "0x05000000");
    assert_eq!(value_of(&table, "big"), "0x0000000000010000");
    assert!(
        value_of(&table, "arr").starts_with("0x010203000000"),
        "{table}"
    );
    assert!(table
        .lines()
        .any(|l| l.contains("speed") && l.contains("bytes[4]")));
    assert!(table
        .lines()
        .any(|l| l.contains("arr") && l.contains("bytes[20]")));

    let j = p.hcr(&["globals", &pid, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    let speed = v
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "speed")
        .unwrap();
    assert_eq!(speed["module"], "lib");
    assert_eq!(speed["size"], 4);
    assert_eq!(speed["type"], "bytes[4]");
    assert_eq!(speed["value"], "0x05000000");

    // Writes: the program sees them. An integer for a global of 1, 2, 4
    // or 8 bytes, else (or also) its bytes.
    let s = p.hcr(&["set", &pid, "lib:speed", "42"]);
    assert!(s.status.success(), "{}", err(&s));
    assert_eq!(text(&s).trim(), "0x05000000 -> 0x2a000000");
    let s = p.hcr(&["set", &pid, "lib:c8", "-100"]);
    assert_eq!(text(&s).trim(), "0xfd -> 0x9c", "{}", err(&s));
    let s = p.hcr(&["set", &pid, "lib:big", "0xffffffffffffffff"]);
    assert!(s.status.success(), "{}", err(&s));
    let hex = format!("0x09{}07", "00".repeat(18));
    let s = p.hcr(&["set", &pid, "lib:arr", &hex]);
    assert!(s.status.success(), "{}", err(&s));
    assert_eq!(
        p.send("p"),
        "c8=-100 s16=1000 speed=42 big=-1 arr0=9 arr19=7"
    );

    // Refusals, with the reason; nothing changes.
    let s = p.hcr(&["set", &pid, "lib:s16", "70000"]);
    assert!(!s.status.success());
    assert!(err(&s).contains("out of range"), "{}", err(&s));
    let s = p.hcr(&["set", &pid, "lib:speed", "fast"]);
    assert!(err(&s).contains("wrong type"), "{}", err(&s));
    assert!(err(&s).contains("8 hex digits"), "{}", err(&s));
    let s = p.hcr(&["set", &pid, "lib:arr", "0x0102"]);
    assert!(err(&s).contains("20 bytes"), "{}", err(&s));
    let s = p.hcr(&["set", &pid, "lib:nothere", "1"]);
    assert!(err(&s).contains("no global lib:nothere"), "{}", err(&s));
    let s = p.hcr(&["globals", &pid, "nomodule"]);
    assert!(err(&s).contains("no module nomodule"), "{}", err(&s));
    assert_eq!(
        p.send("p"),
        "c8=-100 s16=1000 speed=42 big=-1 arr0=9 arr19=7"
    );

    // A reload that adds and removes globals, seen by a connected client.
    let mut c = p.connect();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut ask = |c: &mut UnixStream, req: &str| -> Vec<String> {
        c.write_all(format!("{req}\n").as_bytes()).unwrap();
        let mut out = Vec::new();
        loop {
            let mut l = String::new();
            assert!(r.read_line(&mut l).unwrap() > 0, "the endpoint answers");
            let l = l.trim_end().to_string();
            let last = l == "ok" || l.starts_with("err ");
            out.push(l);
            if last {
                return out;
            }
        }
    };
    let before = ask(&mut c, "globals lib");
    assert!(before.iter().any(|l| l.starts_with("g lib c8 1 ")));
    assert!(ask(&mut c, "info").contains(&"generation 0".to_string()));
    p.install("v2", V2, "-O1", &[]);
    assert_eq!(p.send("r"), "reload rc=1");
    assert_eq!(p.send("p"), "v2 s16=1000 speed=42 added=77");
    let after = ask(&mut c, "globals lib");
    assert!(
        !after.iter().any(|l| l.starts_with("g lib c8 ")),
        "{after:?}"
    );
    assert!(
        after.iter().any(|l| l == "g lib added 4 4d000000"),
        "{after:?}"
    );
    assert!(ask(&mut c, "info").contains(&"generation 1".to_string()));
    let s = p.hcr(&["set", &pid, "lib:c8", "1"]);
    assert!(err(&s).contains("no global lib:c8"), "{}", err(&s));
    // The runtime itself refuses a write to a removed global or out of bounds.
    let w = ask(&mut c, "write lib c8 0 01");
    assert!(w[0].starts_with("err no global lib:c8"), "{w:?}");
    let w = ask(&mut c, "write lib speed 2 010203");
    assert!(w[0].starts_with("err lib:speed has 4 bytes"), "{w:?}");
    let s = p.hcr(&["set", &pid, "lib:added", "0x4e000000"]);
    assert_eq!(text(&s).trim(), "0x4d000000 -> 0x4e000000", "{}", err(&s));
    assert_eq!(p.send("p"), "v2 s16=1000 speed=42 added=78");

    // The socket goes away with the program.
    let sock = p.socket();
    drop(p.child.stdin.take());
    assert!(p.child.wait().unwrap().success());
    assert!(!sock.exists(), "the socket is removed at exit");
}

/// A program ended by a signal whose default action ends it (Ctrl-C,
/// `kill`, a closed terminal) removes its socket too, and still dies of
/// that signal.
#[test]
fn the_socket_goes_when_a_signal_ends_the_program() {
    use std::os::unix::process::ExitStatusExt as _;
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        let t = tempfile::tempdir().unwrap();
        let mut p = start(t.path());
        let sock = p.socket();
        assert!(sock.exists());
        // SAFETY: sends a signal to the test's own child.
        assert_eq!(unsafe { libc::kill(p.pid() as libc::pid_t, sig) }, 0);
        let status = p.child.wait().unwrap();
        assert_eq!(status.signal(), Some(sig), "{status:?}");
        assert!(!sock.exists(), "signal {sig}: the socket is left behind");
    }
}

#[test]
fn bad_requests_and_stuck_clients_cost_the_program_nothing() {
    let t = tempfile::tempdir().unwrap();
    let mut p = start(t.path());
    // A client that connects and never speaks, one that disappears
    // mid-request.
    let _hanging = p.connect();
    {
        let mut gone = p.connect();
        gone.write_all(b"globals li").unwrap();
    }
    let mut c = p.connect();
    let answer = |c: &mut UnixStream, req: &[u8]| -> String {
        c.write_all(req).unwrap();
        let mut r = BufReader::new(c.try_clone().unwrap());
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        l
    };
    for (req, want) in [
        (&b"\n"[..], "err empty request"),
        (b"frobnicate\n", "err unknown request"),
        (b"globals a b c d e f\n", "err unknown request"),
        (b"write lib speed x 01\n", "err bad offset"),
        (b"write lib speed 0 0g\n", "err bytes must be"),
        (b"write lib speed 0 012\n", "err bytes must be"),
        (
            b"write lib speed 18446744073709551615 01\n",
            "err lib:speed has 4 bytes",
        ),
        (b"\xff\xfe\n", "err request is not UTF-8"),
        (b"info\0\0\n", "err unknown request"),
    ] {
        let got = answer(&mut c, req);
        assert!(got.starts_with(want), "{req:?}: {got}");
    }
    // A huge request: refused and the connection closed.
    let mut big = p.connect();
    let chunk = vec![b'a'; 1 << 16];
    for _ in 0..20 {
        if big.write_all(&chunk).is_err() {
            break;
        }
    }
    let mut reply = String::new();
    let _ = big.read_to_string(&mut reply);
    assert!(reply.starts_with("err request too long"), "{reply}");
    // Others are still served, and the program runs on.
    let g = p.hcr(&["globals", &p.pid().to_string()]);
    assert!(text(&g).contains("speed"), "{}", err(&g));
    assert_eq!(
        p.send("p"),
        "c8=-3 s16=1000 speed=5 big=1099511627776 arr0=1 arr19=0"
    );
    drop(p.child.stdin.take());
    assert!(p.child.wait().unwrap().success());
}

#[test]
fn another_user_cannot_connect() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to run a second uid with setpriv");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let mut p = start(t.path());
    let pid = p.pid().to_string();
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(support::hcr_bin())
        .args(["globals", &pid])
        .env("XDG_RUNTIME_DIR", &p.runtime_dir)
        .output();
    match o {
        Ok(o) => {
            let e = err(&o);
            if e.contains("Permission denied") && e.contains("cannot connect") {
                // The second uid reached the socket's directory and was refused.
            } else {
                assert!(!o.status.success(), "another user read the globals");
                assert!(
                    !text(&o).contains("speed"),
                    "another user read the globals: {}",
                    text(&o)
                );
            }
            assert!(!o.status.success());
        }
        Err(e) => eprintln!("skipped: setpriv: {e}"),
    }
    // A direct connection attempt as the other user.
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg("sh")
        .arg("-c")
        .arg(format!("test -r {0} || test -w {0}", p.socket().display()))
        .status()
        .unwrap();
    assert!(!o.success(), "the socket is reachable by another user");
    assert_eq!(
        p.send("p"),
        "c8=-3 s16=1000 speed=5 big=1099511627776 arr0=1 arr19=0"
    );
    drop(p.child.stdin.take());
    assert!(p.child.wait().unwrap().success());
}

const TWEAKED: &str = r#"
#include <stdio.h>
#include "hcr.h"
int speed = 3;
HCR_TWEAK(speed, 0, 10);
float gain = 0.5f;
HCR_TWEAK(gain, 0, 1);
double ratio = 2.25;
HCR_TWEAK(ratio, -5, 5.5);
unsigned char level = 200;
HCR_TWEAK(level, 0, 255);
_Bool on = 1;
HCR_TWEAK(on, 0, 1);
int plain = 7;
void show(void) {
    printf("speed=%d gain=%g ratio=%g level=%u on=%d\n", speed, gain, ratio, level, on);
}
"#;

#[test]
fn hcr_tweak_gives_types_and_ranges() {
    let t = tempfile::tempdir().unwrap();
    let mut p = start_with(t.path(), TWEAKED);
    let pid = p.pid().to_string();
    let j = p.hcr(&["globals", &pid, "lib", "--json"]);
    assert!(j.status.success(), "{}", err(&j));
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    let get = |name: &str| -> serde_json::Value {
        v.as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {v}"))
    };
    assert_eq!(get("speed")["type"], "int32");
    assert_eq!(get("speed")["max"], 10.0);
    assert_eq!(get("gain")["type"], "float");
    assert_eq!(get("gain")["value"], "0.5");
    assert_eq!(get("ratio")["type"], "double");
    assert_eq!(get("ratio")["value"], "2.25");
    assert_eq!(get("ratio")["max"], 5.5);
    assert_eq!(get("level")["type"], "uint8");
    assert_eq!(get("level")["value"], "200");
    assert_eq!(get("on")["type"], "bool");
    assert_eq!(get("on")["value"], "true");
    assert_eq!(get("plain")["type"], "bytes[4]");
    assert!(get("plain")["min"].is_null());

    for (target, value, want) in [
        ("lib:speed", "9", "3 -> 9"),
        ("lib:gain", "0.75", "0.5 -> 0.75"),
        ("lib:ratio", "-4.5", "2.25 -> -4.5"),
        ("lib:level", "255", "200 -> 255"),
        ("lib:on", "false", "true -> false"),
        ("lib:plain", "-70000", "0x07000000 -> 0x90eefeff"),
    ] {
        let s = p.hcr(&["set", &pid, target, value]);
        assert_eq!(text(&s).trim(), want, "{target}: {}", err(&s));
    }
    assert_eq!(p.send("p"), "speed=9 gain=0.75 ratio=-4.5 level=255 on=0");
    for (target, value, why) in [
        ("lib:speed", "11", "outside the range 0 to 10"),
        ("lib:speed", "-1", "outside the range"),
        ("lib:gain", "1.5", "outside the range 0 to 1"),
        ("lib:gain", "loud", "not a number"),
        ("lib:ratio", "nan", "not a finite number"),
        ("lib:level", "-1", "negative"),
        ("lib:level", "256", "out of range"),
        ("lib:on", "maybe", "not a bool"),
    ] {
        let s = p.hcr(&["set", &pid, target, value]);
        assert!(!s.status.success(), "{target} {value} was accepted");
        assert!(err(&s).contains(why), "{target} {value}: {}", err(&s));
    }
    assert_eq!(p.send("p"), "speed=9 gain=0.75 ratio=-4.5 level=255 on=0");
    drop(p.child.stdin.take());
    assert!(p.child.wait().unwrap().success());
}

/// One HTTP/1.1 request to 127.0.0.1:`port`: (status, body).
fn http(port: u16, method: &str, path: &str, headers: &[&str]) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n");
    if !headers.iter().any(|h| h.starts_with("Host:")) {
        req.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn the_page_needs_its_token_and_shows_and_sets_globals() {
    let t = tempfile::tempdir().unwrap();
    let mut p = start_with(t.path(), TWEAKED);
    let mut ui = support::hcr_command()
        .env("XDG_RUNTIME_DIR", &p.runtime_dir)
        .args(["ui", &p.pid().to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(ui.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let url = url.trim();
    let rest = url
        .strip_prefix("http://127.0.0.1:")
        .unwrap_or_else(|| panic!("hcr ui prints its URL: {url}"));
    let (port, q) = rest.split_once("/?token=").unwrap();
    let port: u16 = port.parse().unwrap();
    assert_eq!(q.len(), 32, "a 128-bit token: {q}");

    // Refused: no token, a wrong token, another origin, another host name.
    assert_eq!(http(port, "GET", "/", &[]).0, 403);
    assert_eq!(http(port, "GET", "/state", &[]).0, 403);
    let wrong = format!("/state?token={}", "0".repeat(32));
    assert_eq!(http(port, "GET", &wrong, &[]).0, 403);
    let st = format!("/state?token={q}");
    assert_eq!(
        http(port, "GET", &st, &["Origin: http://evil.example"]).0,
        403
    );
    assert_eq!(http(port, "GET", &st, &["Host: evil.example"]).0, 403);
    let set = format!("/set?token={q}&target=lib%3Aspeed&value=4");
    assert_eq!(
        http(port, "POST", &set, &["Origin: http://evil.example"]).0,
        403
    );
    // The push stream (a WebSocket) has the same checks.
    let ws = |path: &str, extra: &[&str]| {
        let mut h = vec![
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ];
        h.extend_from_slice(extra);
        http(port, "GET", path, &h).0
    };
    assert_eq!(ws("/push", &[]), 403);
    assert_eq!(ws(&wrong.replace("/state", "/push"), &[]), 403);
    let push = format!("/push?token={q}");
    assert_eq!(ws(&push, &["Origin: http://evil.example"]), 403);
    assert_eq!(ws(&push, &["Host: evil.example"]), 403);
    assert_eq!(p.send("p"), "speed=3 gain=0.5 ratio=2.25 level=200 on=1");

    // Pushed: the full state first, then only what changed.
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (mut sock, _) = tungstenite::client::client(
        format!("ws://127.0.0.1:{port}/push?token={q}").as_str(),
        stream,
    )
    .unwrap();
    let mut next = || -> serde_json::Value {
        loop {
            // The server pings a quiet stream: only text is a message.
            if let tungstenite::Message::Text(t) = sock.read().expect("the page's stream sends") {
                return serde_json::from_str(&t).unwrap();
            }
        }
    };
    let first = next();
    assert_eq!(first["full"], true, "{first}");
    assert!(first["globals"].as_array().unwrap().len() >= 6, "{first}");
    let s = p.hcr(&["set", &p.pid().to_string(), "lib:plain", "8"]);
    assert!(s.status.success(), "{}", err(&s));
    let d = next();
    assert_eq!(d["removed"], serde_json::json!([]), "{d}");
    let changed = d["changed"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "only the changed global is sent: {d}");
    assert_eq!(changed[0]["name"], "plain");
    assert_eq!(changed[0]["value"], "0x08000000");
    drop(sock);
    // Pages that went away free their streams (at most 16 at once): after
    // 17 pages opened and closed, another one still gets its stream.
    let open_close = || -> u16 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {push} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        line.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    };
    for _ in 0..17 {
        open_close();
    }
    let mut code = 0;
    for _ in 0..50 {
        code = open_close();
        if code == 101 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(code, 101, "a closed page's stream ends");

    // The page itself, and its state.
    let (code, page) = http(port, "GET", &format!("/?token={q}"), &[]);
    assert_eq!(code, 200);
    assert!(
        page.contains("<title>hcr ui</title>")
            && !page.contains("http://")
            && !page.contains("https://")
    );
    let (code, body) = http(port, "GET", &st, &[]);
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["generation"], 0);
    let speed = v["globals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "speed")
        .unwrap()
        .clone();
    assert_eq!(speed["value"], "3");
    assert_eq!(speed["max"], 10.0);

    // Setting from the page, as its own origin does.
    let (code, body) = http(
        port,
        "POST",
        &set,
        &[&format!("Origin: http://127.0.0.1:{port}")],
    );
    assert_eq!((code, body.as_str()), (200, "3 -> 4"));
    let bad = format!("/set?token={q}&target=lib%3Aspeed&value=99");
    let (code, body) = http(port, "POST", &bad, &[]);
    assert_eq!(code, 400);
    assert!(body.contains("outside the range"), "{body}");
    assert_eq!(p.send("p"), "speed=4 gain=0.5 ratio=2.25 level=200 on=1");

    let _ = ui.kill();
    let _ = ui.wait();
    drop(p.child.stdin.take());
    assert!(p.child.wait().unwrap().success());
}

/// A command on `PATH`, if there is one.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

/// Evaluates `expr` in the page over the DevTools protocol; its value as
/// JSON.
fn evaluate(
    ws: &mut tungstenite::WebSocket<std::net::TcpStream>,
    id: u64,
    expr: &str,
) -> serde_json::Value {
    let msg = serde_json::json!({
        "id": id,
        "method": "Runtime.evaluate",
        "params": {"expression": expr, "returnByValue": true, "awaitPromise": true},
    });
    ws.send(tungstenite::Message::Text(msg.to_string().into()))
        .unwrap();
    loop {
        let m = ws.read().expect("DevTools answers");
        let Ok(text) = m.to_text() else { continue };
        let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        if v["id"] == id {
            return v["result"]["result"]["value"].clone();
        }
    }
}

/// What the value cell of the row for `target` shows, once it shows
/// `want` (or what it shows after 60 s).
fn cell_shows(
    ws: &mut tungstenite::WebSocket<std::net::TcpStream>,
    id: &mut u64,
    target: &str,
    want: &str,
) -> serde_json::Value {
    let js = format!(
        r#"(() => {{ const c = document.querySelector('tr[data-target="{target}"] td.value'); return c ? c.textContent : null; }})()"#
    );
    let mut last = serde_json::Value::Null;
    support::within(60, || {
        *id += 1;
        last = evaluate(ws, *id, &js);
        (last == want).then_some(())
    });
    last
}

#[test]
fn a_slider_moved_in_chromium_changes_the_running_program() {
    let Some(chromium) = on_path("chromium").or_else(|| on_path("chromium-browser")) else {
        eprintln!("skipped: chromium is not installed (.ci/run installs it)");
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let mut p = start_with(t.path(), TWEAKED);
    // Built with -g, with a struct: its fields are shown and set one by one.
    let with_struct = TWEAKED
        .replace(
            "int plain = 7;",
            "int plain = 7;\nstruct place { int x; struct { double y; } inner; } where = {1, {2.5}};",
        )
        .replace(
            "level, on);",
            "level, on);\n    printf(\"where=%d,%g\\n\", where.x, where.inner.y);",
        );
    p.install("g", &with_struct, "-g", &[]);
    assert_eq!(p.send("r"), "reload rc=1");
    let mut ui = support::hcr_command()
        .env("XDG_RUNTIME_DIR", &p.runtime_dir)
        .args(["ui", &p.pid().to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(ui.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let url = url.trim().to_string();
    let profile = t.path().join("chromium-profile");
    let mut browser = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(&url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
    let mut port = 0u16;
    for l in BufReader::new(browser.stderr.take().unwrap()).lines() {
        let Ok(l) = l else { break };
        if let Some(rest) = l.split("ws://127.0.0.1:").nth(1) {
            port = rest.split('/').next().unwrap().parse().unwrap();
            break;
        }
    }
    assert_ne!(port, 0, "chromium prints its DevTools address");
    let target = support::within(60, || {
        let (_, body) = http(port, "GET", "/json/list", &[]);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v.as_array().and_then(|a| {
            a.iter()
                .find(|x| {
                    x["type"] == "page"
                        && x["url"].as_str().is_some_and(|u| u.starts_with(&url[..20]))
                })
                .and_then(|x| x["webSocketDebuggerUrl"].as_str().map(String::from))
        })
    });
    let target = target.expect("the page is open in chromium");
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (mut ws, _) = tungstenite::client::client(target.as_str(), stream).unwrap();

    // Wait for the page to show the program's globals, then drag the slider.
    let drag = r#"(() => {
        const r = document.querySelector('input[type=range][data-target="lib:speed"]');
        if (!r) return "absent";
        r.value = 7;
        r.dispatchEvent(new Event("input"));
        return "moved";
    })()"#;
    let mut id = 0;
    let moved = support::within(60, || {
        id += 1;
        (evaluate(&mut ws, id, drag) == "moved").then_some(())
    });
    assert!(moved.is_some(), "the page shows a slider for lib:speed");
    let mut seen = String::new();
    support::within(60, || {
        seen = p.send("p");
        assert_eq!(p.line(), "where=1,2.5");
        seen.starts_with("speed=7 ").then_some(())
    });
    assert_eq!(seen, "speed=7 gain=0.5 ratio=2.25 level=200 on=1");
    // The page follows: its value cell shows the new value.
    let mut id = 2000;
    assert_eq!(cell_shows(&mut ws, &mut id, "lib:speed", "7"), "7");
    // Values came pushed over the WebSocket, not polled.
    assert_eq!(evaluate(&mut ws, 999, "window.hcrTransport"), "push");

    // A struct: expanded, then two fields (one nested) edited in place.
    let expand = r#"(() => {
        const b = document.querySelector('button[data-toggle="lib:where"]');
        if (!b) return "absent";
        b.click();
        const inner = document.querySelector('button[data-toggle="lib:where.inner"]');
        inner.click();
        const row = document.querySelector('tr[data-target="lib:where.inner.y"]');
        return row && !row.hidden ? "open" : "closed";
    })()"#;
    assert_eq!(evaluate(&mut ws, 1001, expand), "open");
    let edit = r#"(() => {
        for (const [t, v] of [["lib:where.x", "42"], ["lib:where.inner.y", "-0.5"]]) {
            const i = document.querySelector('input[data-target="' + t + '"]');
            i.value = v;
            i.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter" }));
        }
        return "sent";
    })()"#;
    assert_eq!(evaluate(&mut ws, 1002, edit), "sent");
    let mut seen = String::new();
    support::within(60, || {
        p.send("p");
        seen = p.line();
        (seen == "where=42,-0.5").then_some(())
    });
    assert_eq!(seen, "where=42,-0.5");
    assert_eq!(
        cell_shows(&mut ws, &mut id, "lib:where.inner.y", "-0.5"),
        "-0.5"
    );

    let _ = browser.kill();
    let _ = browser.wait();
    let _ = ui.kill();
    let _ = ui.wait();
    drop(p.child.stdin.take());
    assert!(p.child.wait().unwrap().success());
}

#[test]
fn hcr_tweak_works_in_cxx_modules() {
    let t = tempfile::tempdir().unwrap();
    let mut p = start(t.path());
    // A second image, whose lib module is C++: installed by a reload.
    let sub = t.path().join("cxx");
    std::fs::create_dir_all(&sub).unwrap();
    let m = support::module(&sub, "main", MAIN, "-O1");
    let src = sub.join("lib.cpp");
    std::fs::write(
        &src,
        "#include <cstdio>\n#include \"hcr.h\"\n\
         float gain = 0.5f;\nHCR_TWEAK(gain, 0, 2);\n\
         unsigned short level = 7;\nHCR_TWEAK(level, 0, 100);\n\
         bool on = true;\nHCR_TWEAK(on, 0, 1);\n\
         extern \"C\" void show(void) { std::printf(\"gain=%g level=%u on=%d\\n\", gain, level, on); }\n",
    )
    .unwrap();
    let obj = sub.join("lib.o");
    support::compile_with("g++", &src, &obj, "-O1", &[]);
    let tmp = t.path().join("tmp.hcr");
    support::link_ok(&tmp, &[m, obj]);
    std::fs::rename(&tmp, &p.image).unwrap();
    assert_eq!(p.send("r"), "reload rc=1");
    let pid = p.pid().to_string();
    let j = p.hcr(&["globals", &pid, "lib", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    let ty = |name: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == name)
            .map(|g| g["type"].clone())
    };
    assert_eq!(ty("gain"), Some("float".into()), "{v}");
    assert_eq!(ty("level"), Some("uint16".into()), "{v}");
    assert_eq!(ty("on"), Some("bool".into()), "{v}");
    let s = p.hcr(&["set", &pid, "lib:gain", "1.25"]);
    assert_eq!(text(&s).trim(), "0.5 -> 1.25", "{}", err(&s));
    let s = p.hcr(&["set", &pid, "lib:level", "101"]);
    assert!(err(&s).contains("outside the range"), "{}", err(&s));
    assert_eq!(p.send("p"), "gain=1.25 level=7 on=1");
    drop(p.child.stdin.take());
    assert!(p.child.wait().unwrap().success());
}
