//! `hcr ui PID`: a local web page showing a running program's globals live,
//! with sliders for `HCR_TWEAK`ed numbers and inputs otherwise.
//!
//! Served by tiny_http on 127.0.0.1 only; the printed URL carries a random
//! token that every request must repeat (`?token=`), the `Host` header must
//! name the listening address (no DNS rebinding) and a request with an
//! `Origin` other than the page's own is refused (no cross-site requests).
//! The page is one static file embedded in the binary (`ui.html`): no build
//! step, nothing fetched from elsewhere. It polls `GET /state` about ten times
//! a second and sends `POST /set?target=MODULE:NAME&value=V`.

use std::io::{Read, Write};

use anyhow::Context;

use crate::live::{self, Client};

const PAGE: &str = include_str!("ui.html");

/// A fresh random token (128 bits from the kernel), in hex.
///
/// # Errors
/// `/dev/urandom` cannot be read.
pub fn token() -> anyhow::Result<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("cannot read /dev/urandom")?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The value of query parameter `key` in `url` (percent-decoded).
fn query(url: &str, key: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| decode(v))
    })
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or(""), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Equal in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The page's state as JSON.
fn state(c: &mut Client) -> anyhow::Result<String> {
    let info = live::info(c)?;
    let gs = live::read_globals(c, None)?;
    let globals: Vec<serde_json::Value> = gs.iter().map(live::GlobalValue::to_json).collect();
    Ok(serde_json::json!({
        "pid": info.pid,
        "image": info.image,
        "generation": info.generation,
        "modules": info.modules,
        "error": info.error,
        "globals": globals,
    })
    .to_string())
}

/// `hcr ui PID [--port N]`: prints the page's URL and serves it until
/// interrupted.
///
/// # Errors
/// No such program, or the port cannot be bound.
pub fn ui(pid: u32, port: u16, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut client = Client::connect(pid)?;
    live::info(&mut client)?;
    let server = tiny_http::Server::http(("127.0.0.1", port))
        .map_err(|e| anyhow::anyhow!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    let port = server
        .server_addr()
        .to_ip()
        .map(|a| a.port())
        .context("no port")?;
    let token = token()?;
    writeln!(out, "http://127.0.0.1:{port}/?token={token}")?;
    out.flush()?;
    let hosts = [format!("127.0.0.1:{port}"), format!("localhost:{port}")];
    let origins = hosts.clone().map(|h| format!("http://{h}"));
    for mut req in server.incoming_requests() {
        let header = |name: &'static str| {
            req.headers()
                .iter()
                .find(|h| h.field.equiv(name))
                .map(|h| h.value.as_str().to_string())
        };
        let host_ok = header("Host").is_some_and(|h| hosts.contains(&h));
        let origin_ok = header("Origin").is_none_or(|o| origins.contains(&o));
        let url = req.url().to_string();
        let token_ok = query(&url, "token").is_some_and(|t| same(&t, &token));
        let path = url.split('?').next().unwrap_or("").to_string();
        let (code, ctype, body) = if !host_ok || !origin_ok {
            (403, "text/plain", "refused: other origin".to_string())
        } else if !token_ok {
            (
                403,
                "text/plain",
                "refused: missing or wrong token (use the URL hcr ui printed)".to_string(),
            )
        } else {
            match (req.method(), path.as_str()) {
                (tiny_http::Method::Get, "/") => (200, "text/html; charset=utf-8", PAGE.into()),
                (tiny_http::Method::Get, "/state") => {
                    let r = state(&mut client).or_else(|_| {
                        client = Client::connect(pid)?;
                        state(&mut client)
                    });
                    match r {
                        Ok(s) => (200, "application/json", s),
                        Err(e) => (502, "text/plain", format!("{e:#}")),
                    }
                }
                (tiny_http::Method::Post, "/set") => {
                    let target = query(&url, "target").unwrap_or_default();
                    let value = query(&url, "value").unwrap_or_default();
                    let mut sink = Vec::new();
                    let _ = req.as_reader().take(1 << 16).read_to_end(&mut sink);
                    match live::set_with(&mut client, pid, &target, &value, None) {
                        Ok(s) => (200, "text/plain", s),
                        Err(e) => (400, "text/plain", format!("{e:#}")),
                    }
                }
                _ => (404, "text/plain", "not found".to_string()),
            }
        };
        let resp = tiny_http::Response::from_string(body)
            .with_status_code(code)
            .with_header(
                tiny_http::Header::from_bytes(&b"Content-Type"[..], ctype.as_bytes())
                    .map_err(|()| anyhow::anyhow!("bad header"))?,
            )
            .with_header(
                tiny_http::Header::from_bytes(&b"Cache-Control"[..], &b"no-store"[..])
                    .map_err(|()| anyhow::anyhow!("bad header"))?,
            );
        let _ = req.respond(resp);
    }
    Ok(())
}
