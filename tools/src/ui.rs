//! `hcr ui PID`: a local web page showing a running program's globals live,
//! with sliders for `HCR_TWEAK`ed numbers and inputs otherwise.
//!
//! Served by tiny_http on 127.0.0.1 only; the printed URL carries a random
//! token that every request must repeat (`?token=`), the `Host` header must
//! name the listening address (no DNS rebinding) and a request with an
//! `Origin` other than the page's own is refused (no cross-site requests).
//! The page is one static file embedded in the binary (`ui.html`): no build
//! step, nothing fetched from elsewhere. It opens a WebSocket on `/push`
//! (same token, Host and Origin checks; upgraded from tiny_http's request)
//! on which the server sends the full state, then about ten times a second
//! only the globals whose value changed (so 10 000 globals cost the page
//! nothing when few change), and sends `POST /set?target=MODULE:NAME&value=V`
//! (`NAME.FIELD` for a struct's field). `GET /state` returns the whole state
//! at once (the page falls back to polling it when the WebSocket fails).

use std::io::{Read, Write};

use anyhow::Context;

use crate::live::{self, Client};
use std::collections::HashMap;

use crate::types::TypeTable;

/// Pages streaming at once.
const MAX_STREAMS: usize = 16;

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

/// What one page's refreshes keep between them: the types of the running
/// generation (read again when a reload changed it) and each global's JSON
/// with the bytes and type it was made from, so a refresh formats only the
/// globals whose bytes changed.
#[derive(Default)]
pub struct StateCache {
    types: Option<std::sync::Arc<TypeTable>>,
    /// The generation `types` were asked for (`None`: never).
    asked: Option<u32>,
    /// `MODULE:NAME` → (type identity, bytes, tweak, JSON).
    json: HashMap<String, CachedJson>,
}

struct CachedJson {
    ty: usize,
    bytes: Vec<u8>,
    tweak: Option<(String, f64, f64)>,
    text: std::sync::Arc<str>,
}

impl StateCache {
    /// The types for `generation` (asked for at most once per generation;
    /// a program without debug information gets `None`).
    pub fn types(&mut self, c: &mut Client, generation: u32) -> Option<std::sync::Arc<TypeTable>> {
        if self.asked != Some(generation) {
            self.types = c.types().unwrap_or(None).map(std::sync::Arc::new);
            // Asked again next time if the program reloaded meanwhile.
            self.asked = self
                .types
                .as_ref()
                .map_or(Some(generation), |t| Some(t.generation));
            self.json.clear();
        }
        self.types.clone()
    }
}

/// One refresh of the page's state: the header and every global's JSON
/// (as text), keyed `MODULE:NAME`, in the program's order.
pub struct Snapshot {
    /// pid, image, generation, modules, error.
    pub header: serde_json::Value,
    /// `(key, JSON text)` of every global.
    pub globals: Vec<(String, std::sync::Arc<str>)>,
}

/// Reads the program's state, typed.
///
/// # Errors
/// The program does not answer.
pub fn snapshot(c: &mut Client, cache: &mut StateCache) -> anyhow::Result<Snapshot> {
    let info = live::info(c)?;
    let types = cache.types(c, info.generation);
    let gs = live::read_globals_typed(c, None, types.as_deref())?;
    let mut globals = Vec::with_capacity(gs.len());
    let mut seen = std::collections::HashSet::with_capacity(gs.len());
    for g in gs {
        let key = format!("{}:{}", g.module, g.name);
        let ty =
            g.ty.as_ref()
                .map_or(0, |t| std::sync::Arc::as_ptr(t) as usize);
        let text = match cache.json.get(&key) {
            Some(j) if j.ty == ty && j.bytes == g.bytes && j.tweak == g.tweak => j.text.clone(),
            _ => {
                let text: std::sync::Arc<str> = g.to_json().to_string().into();
                cache.json.insert(
                    key.clone(),
                    CachedJson {
                        ty,
                        bytes: g.bytes,
                        tweak: g.tweak,
                        text: text.clone(),
                    },
                );
                text
            }
        };
        seen.insert(key.clone());
        globals.push((key, text));
    }
    cache.json.retain(|k, _| seen.contains(k));
    Ok(Snapshot {
        header: serde_json::json!({
            "pid": info.pid,
            "image": info.image,
            "generation": info.generation,
            "modules": info.modules,
            "error": info.error,
        }),
        globals,
    })
}

impl Snapshot {
    /// The whole state as one JSON text (`GET /state`, and the first
    /// message of a push stream with `"full": true`).
    pub fn full(&self, full_flag: bool) -> String {
        let mut s = self.header.to_string();
        s.pop();
        if full_flag {
            s.push_str(",\"full\":true");
        }
        s.push_str(",\"globals\":[");
        for (i, (_, g)) in self.globals.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(g);
        }
        s.push_str("]}");
        s
    }

    /// What changed since `before`: `None` when nothing did; else the
    /// header with `changed` (the JSON of every global that is new or whose
    /// JSON differs) and `removed` (keys).
    pub fn delta(&self, before: &Snapshot) -> Option<String> {
        let old: std::collections::HashMap<&str, &str> = before
            .globals
            .iter()
            .map(|(k, v)| (k.as_str(), &**v))
            .collect();
        let now: std::collections::HashSet<&str> =
            self.globals.iter().map(|(k, _)| k.as_str()).collect();
        let changed: Vec<&str> = self
            .globals
            .iter()
            .filter(|(k, v)| old.get(k.as_str()) != Some(&&**v))
            .map(|(_, v)| &**v)
            .collect();
        let removed: Vec<&str> = before
            .globals
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !now.contains(k))
            .collect();
        if changed.is_empty() && removed.is_empty() && self.header == before.header {
            return None;
        }
        let mut s = self.header.to_string();
        s.pop();
        s.push_str(",\"changed\":[");
        s.push_str(&changed.join(","));
        s.push_str("],\"removed\":");
        s.push_str(&serde_json::to_string(&removed).unwrap_or_else(|_| "[]".into()));
        s.push('}');
        Some(s)
    }
}

/// How often the push stream looks at the program.
pub const PUSH_PERIOD: std::time::Duration = std::time::Duration::from_millis(100);

/// Serves one page's WebSocket: the full state, then about ten times a
/// second what changed (nothing when nothing did); a new generation sends
/// the full state again. Ends when the page goes away.
fn push(pid: u32, stream: Box<dyn tiny_http::ReadWrite + Send>) {
    let mut ws =
        tungstenite::WebSocket::from_raw_socket(stream, tungstenite::protocol::Role::Server, None);
    let mut cache = StateCache::default();
    let mut client: Option<Client> = None;
    let mut last: Option<Snapshot> = None;
    let mut said = String::new();
    let mut quiet = 0u32;
    loop {
        let snap = client
            .as_mut()
            .map_or_else(
                || Err(anyhow::anyhow!("not connected")),
                |c| snapshot(c, &mut cache),
            )
            .or_else(|_| {
                let mut c = Client::connect(pid)?;
                let s = snapshot(&mut c, &mut cache);
                client = Some(c);
                s
            });
        let msg = match (&snap, &last) {
            (Err(e), _) => {
                let m = serde_json::json!({ "disconnected": format!("{e:#}") }).to_string();
                (m != said).then_some(m)
            }
            (Ok(s), Some(l)) if s.header["generation"] == l.header["generation"] => s.delta(l),
            (Ok(s), _) => Some(s.full(true)),
        };
        // A ping a second when nothing was sent: a page that went away
        // makes the write fail, and the thread ends.
        quiet += 1;
        let out = match msg {
            Some(m) => {
                said = m.clone();
                Some(tungstenite::Message::Text(m.into()))
            }
            None if quiet >= 10 => Some(tungstenite::Message::Ping(Vec::new().into())),
            None => None,
        };
        if let Some(m) = out {
            quiet = 0;
            if ws.send(m).is_err() {
                return;
            }
        }
        if let Ok(s) = snap {
            last = Some(s);
        } else {
            last = None;
            client = None;
        }
        std::thread::sleep(PUSH_PERIOD);
    }
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
    let mut cache = StateCache::default();
    let streams = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
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
        let ws_key = header("Sec-WebSocket-Key");
        let upgrade = header("Upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
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
                    let r = snapshot(&mut client, &mut cache).or_else(|_| {
                        client = Client::connect(pid)?;
                        snapshot(&mut client, &mut cache)
                    });
                    match r {
                        Ok(s) => (200, "application/json", s.full(false)),
                        Err(e) => (502, "text/plain", format!("{e:#}")),
                    }
                }
                (tiny_http::Method::Get, "/push") if upgrade && ws_key.is_some() => {
                    if streams.load(std::sync::atomic::Ordering::SeqCst) >= MAX_STREAMS {
                        (503, "text/plain", "too many pages open".to_string())
                    } else {
                        let accept = tungstenite::handshake::derive_accept_key(
                            ws_key.unwrap_or_default().trim().as_bytes(),
                        );
                        let resp = tiny_http::Response::empty(101).with_header(
                            tiny_http::Header::from_bytes(
                                &b"Sec-WebSocket-Accept"[..],
                                accept.as_bytes(),
                            )
                            .map_err(|()| anyhow::anyhow!("bad header"))?,
                        );
                        let stream = req.upgrade("websocket", resp);
                        let n = streams.clone();
                        n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::thread::spawn(move || {
                            push(pid, stream);
                            n.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        });
                        continue;
                    }
                }
                (tiny_http::Method::Post, "/set") => {
                    let target = query(&url, "target").unwrap_or_default();
                    let value = query(&url, "value").unwrap_or_default();
                    let mut sink = Vec::new();
                    let _ = req.as_reader().take(1 << 16).read_to_end(&mut sink);
                    let r = live::info(&mut client)
                        .or_else(|_| {
                            client = Client::connect(pid)?;
                            live::info(&mut client)
                        })
                        .and_then(|i| {
                            let types = cache.types(&mut client, i.generation);
                            live::set_with(&mut client, pid, &target, &value, types.as_deref())
                        });
                    match r {
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
