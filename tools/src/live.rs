//! `hcr ps`, `hcr globals`, `hcr set`: clients of a running program's
//! control endpoint (see `hcr_runtime::control`).
//!
//! With `-g`, globals are typed from DWARF ([`crate::types`]): scalars of
//! every kind, structs and arrays field by field, and `hcr set` reaches a
//! field or element with `MODULE:NAME.FIELD[3].x`. Without type
//! information (no `-g`, no `HCR_TWEAK`) a global is its size and bytes:
//! type `bytes[N]`, value `0x` and its bytes in memory order (a guessed
//! type would show a `float` or a pointer as a meaningless integer). `hcr
//! set` takes `0x` with exactly the global's bytes in the same order, or,
//! for a global of 1, 2, 4 or 8 bytes, an integer (in range for the size,
//! signed or unsigned; stored little-endian).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use anyhow::{bail, Context};

use crate::types::{self, Ty, TypeTable};

/// How long a request may take before the program is considered stuck.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The control socket of process `pid`.
pub fn socket_path(pid: u32) -> PathBuf {
    hcr_runtime::control::socket_dir().join(format!("{pid}.sock"))
}

/// A connection to one program's endpoint.
pub struct Client {
    out: UnixStream,
    input: BufReader<UnixStream>,
}

impl Client {
    /// Connects to process `pid`.
    ///
    /// # Errors
    /// The process has no endpoint (not run with `--control`/`HCR_CONTROL=1`,
    /// gone, or another user's).
    pub fn connect(pid: u32) -> anyhow::Result<Client> {
        let path = socket_path(pid);
        let s = UnixStream::connect(&path).with_context(|| {
            format!(
                "cannot connect to process {pid} at {} (is it running with hcr run --control or HCR_CONTROL=1?)",
                path.display()
            )
        })?;
        s.set_read_timeout(Some(TIMEOUT))?;
        s.set_write_timeout(Some(TIMEOUT))?;
        Ok(Client {
            input: BufReader::new(s.try_clone()?),
            out: s,
        })
    }

    /// Sends one request; its reply lines (without the final `ok`).
    ///
    /// # Errors
    /// The program refused the request (`err REASON`) or did not answer.
    pub fn request(&mut self, line: &str) -> anyhow::Result<Vec<String>> {
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")?;
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            if self.input.read_line(&mut l).context("no answer")? == 0 {
                bail!("the program closed the connection");
            }
            let l = l.trim_end_matches('\n');
            if l == "ok" {
                return Ok(lines);
            }
            if let Some(e) = l.strip_prefix("err ") {
                bail!("{e}");
            }
            lines.push(l.to_string());
        }
    }
}

impl Client {
    /// The DWARF types of the running generation's globals, read from the
    /// image file the program hands over; `None` when it has no debug
    /// information.
    ///
    /// # Errors
    /// The request failed, or the file cannot be read or decoded.
    pub fn types(&mut self) -> anyhow::Result<Option<TypeTable>> {
        use std::os::unix::fs::FileExt as _;
        let (lines, fd) = match hcr_runtime::control::request_image(&self.out) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::Other => {
                if e.to_string().contains("no debug information") {
                    return Ok(None);
                }
                bail!("{e}");
            }
            Err(e) => return Err(e).context("no answer"),
        };
        let Some(fd) = fd else {
            bail!("the program sent no image file");
        };
        let file = std::fs::File::from(fd);
        let size = file.metadata()?.len();
        let mut bytes = vec![0u8; usize::try_from(size)?];
        // Positioned reads: the descriptor shares its offset with the
        // program's own.
        file.read_exact_at(&mut bytes, 0)
            .context("cannot read the image file")?;
        let mut t = types::read_image(&bytes)?;
        t.generation = lines
            .iter()
            .find_map(|l| l.strip_prefix("generation ")?.parse().ok())
            .unwrap_or(0);
        Ok(Some(t))
    }
}

/// What `info` says about a program.
#[derive(Debug, Clone, Default)]
pub struct Info {
    /// Process id.
    pub pid: u32,
    /// The image path.
    pub image: String,
    /// Completed reloads.
    pub generation: u32,
    /// Module names.
    pub modules: Vec<String>,
    /// The last failed reload's message (empty when none).
    pub error: String,
}

/// Asks for `info`.
///
/// # Errors
/// See [`Client::request`].
pub fn info(c: &mut Client) -> anyhow::Result<Info> {
    let mut i = Info::default();
    for l in c.request("info")? {
        let (k, v) = l.split_once(' ').unwrap_or((&l, ""));
        match k {
            "pid" => i.pid = v.parse().unwrap_or(0),
            "image" => i.image = v.to_string(),
            "generation" => i.generation = v.parse().unwrap_or(0),
            "modules" => i.modules = v.split_whitespace().map(String::from).collect(),
            "error" => i.error = v.to_string(),
            _ => {}
        }
    }
    Ok(i)
}

/// `hcr ps`: this user's programs with a control endpoint.
///
/// # Errors
/// Writing the output failed.
pub fn ps(out: &mut dyn Write) -> anyhow::Result<()> {
    let dir = hcr_runtime::control::socket_dir();
    let mut pids: Vec<u32> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".sock")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    writeln!(
        out,
        "{:>8}  {:<40}  {:>10}  MODULES",
        "PID", "IMAGE", "GENERATION"
    )?;
    for pid in pids {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            // The program died without removing its socket (SIGKILL).
            let _ = std::fs::remove_file(socket_path(pid));
            continue;
        }
        let Ok(i) = Client::connect(pid).and_then(|mut c| info(&mut c)) else {
            continue;
        };
        writeln!(
            out,
            "{:>8}  {:<40}  {:>10}  {}",
            pid,
            i.image,
            i.generation,
            i.modules.join(" ")
        )?;
    }
    Ok(())
}

/// One global as the endpoint reports it.
#[derive(Debug, Clone)]
pub struct GlobalValue {
    /// Module.
    pub module: String,
    /// Name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Its first bytes (all of them up to 4096).
    pub bytes: Vec<u8>,
    /// Kind (`int`, `uint`, `float`, `double`, `bool`) and range, when
    /// `HCR_TWEAK` gave them.
    pub tweak: Option<(String, f64, f64)>,
    /// Its type, from DWARF (modules built with `-g`).
    pub ty: Option<Arc<Ty>>,
}

impl GlobalValue {
    /// The type shown: from DWARF, else from `HCR_TWEAK`, else
    /// `bytes[SIZE]`.
    pub fn type_name(&self) -> String {
        if let Some(t) = &self.ty {
            return t.name();
        }
        if let Some((k, ..)) = &self.tweak {
            return match k.as_str() {
                "int" | "uint" => format!("{k}{}", self.size * 8),
                k => k.to_string(),
            };
        }
        format!("bytes[{}]", self.size)
    }

    /// What `hcr globals --json` and the `hcr ui` page show of it: with a
    /// DWARF type, `kind`, the enumerators of an enum and, for a struct or
    /// array, `fields`: every field and element inside (pre-order, `depth`
    /// 1 for the global's own fields), each with its `path` (what `hcr set`
    /// takes after `MODULE:`), `type`, `kind` and `value`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "module": self.module,
            "name": self.name,
            "type": self.type_name(),
            "size": self.size,
            "value": self.value(),
            "min": self.tweak.as_ref().map(|t| t.1),
            "max": self.tweak.as_ref().map(|t| t.2),
        });
        if let Some(t) = &self.ty {
            v["kind"] = t.kind().into();
            if let Some(e) = enumerators(t) {
                v["enumerators"] = e;
            }
            if !t.is_scalar() {
                let fields: Vec<serde_json::Value> = self
                    .nodes(MAX_FIELDS)
                    .into_iter()
                    .skip(1)
                    .map(|(n, value)| {
                        let mut f = serde_json::json!({
                            "path": n.path,
                            "depth": n.depth,
                            "type": field_type_name(&n),
                            "kind": n.ty.kind(),
                            "value": value,
                        });
                        if let Some(e) = enumerators(&n.ty) {
                            f["enumerators"] = e;
                        }
                        f
                    })
                    .collect();
                v["fields"] = fields.into();
            }
        }
        v
    }

    /// The global and every field and element inside it (see
    /// [`types::nodes`]), each with its value; just the global without a
    /// DWARF type.
    pub fn nodes(&self, limit: usize) -> Vec<(types::Node, String)> {
        let Some(t) = &self.ty else {
            return Vec::new();
        };
        types::nodes(t, &self.name, limit)
            .into_iter()
            .map(|n| {
                let v = self
                    .bytes
                    .get(n.offset as usize..)
                    .map_or_else(|| "?".to_string(), |b| types::format(&n.ty, n.bits, b));
                (n, v)
            })
            .collect()
    }

    /// The value shown.
    pub fn value(&self) -> String {
        if let Some(t) = &self.ty {
            return types::format(t, None, &self.bytes);
        }
        format_typed(self.kind(), self.size, &self.bytes)
    }

    fn kind(&self) -> &str {
        self.tweak.as_ref().map_or("", |t| t.0.as_str())
    }
}

/// Fields and elements listed per global (`--json`, the page, the table).
pub const MAX_FIELDS: usize = 256;

fn enumerators(t: &Ty) -> Option<serde_json::Value> {
    match t {
        Ty::Enum { values, .. } => Some(values.iter().map(|e| e.0.clone()).collect()),
        _ => None,
    }
}

fn field_type_name(n: &types::Node) -> String {
    match n.bits {
        Some((_, bits)) => format!("{}:{bits}", n.ty.name()),
        None => n.ty.name(),
    }
}

fn format_typed(kind: &str, size: u64, b: &[u8]) -> String {
    let word = |n: usize| -> Option<u64> {
        (b.len() == n && size == n as u64).then(|| {
            let mut w = [0u8; 8];
            w[..n].copy_from_slice(b);
            u64::from_le_bytes(w)
        })
    };
    match (kind, size) {
        ("float", 4) => word(4).map_or_else(String::new, |w| f32::from_bits(w as u32).to_string()),
        ("double", 8) => word(8).map_or_else(String::new, |w| f64::from_bits(w).to_string()),
        ("bool", _) => (b.iter().any(|&x| x != 0)).to_string(),
        ("uint", 1 | 2 | 4 | 8) => word(size as usize).map_or_else(String::new, |w| w.to_string()),
        ("int", 1 | 2 | 4 | 8) => word(size as usize).map_or_else(String::new, |w| {
            let shift = 64 - 8 * size;
            (((w << shift) as i64) >> shift).to_string()
        }),
        _ => format_bytes(size, b),
    }
}

/// `0x` and the bytes in memory order (`...` after them when only the
/// first bytes of a larger global were read).
fn format_bytes(size: u64, b: &[u8]) -> String {
    let mut s = String::from("0x");
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    if (b.len() as u64) < size {
        s.push_str("...");
    }
    s
}

fn unhex(h: &str) -> Option<Vec<u8>> {
    if !h.len().is_multiple_of(2) || !h.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    (0..h.len() / 2)
        .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// Reads the globals (of `module`, or all).
///
/// # Errors
/// See [`Client::request`].
pub fn read_globals(c: &mut Client, module: Option<&str>) -> anyhow::Result<Vec<GlobalValue>> {
    read_globals_typed(c, module, None)
}

/// Reads the globals (of `module`, or all), typed from `types` where it
/// describes them (a type whose size differs from the global's, as after a
/// reload the table has not caught up with, is not used).
///
/// # Errors
/// See [`Client::request`].
pub fn read_globals_typed(
    c: &mut Client,
    module: Option<&str>,
    types: Option<&TypeTable>,
) -> anyhow::Result<Vec<GlobalValue>> {
    let req = match module {
        Some(m) => format!("globals {m}"),
        None => "globals".to_string(),
    };
    let mut v = Vec::new();
    for l in c.request(&req)? {
        let mut w = l.split(' ');
        let (Some("g"), Some(m), Some(n), Some(size), h) =
            (w.next(), w.next(), w.next(), w.next(), w.next())
        else {
            continue;
        };
        let size: u64 = size.parse().unwrap_or(0);
        v.push(GlobalValue {
            ty: types.and_then(|t| t.get(m, n)).filter(|t| t.size() == size),
            module: m.to_string(),
            name: n.to_string(),
            size,
            bytes: unhex(h.unwrap_or("")).unwrap_or_default(),
            tweak: match (
                w.next(),
                w.next().and_then(|x| x.parse().ok()),
                w.next().and_then(|x| x.parse().ok()),
            ) {
                (Some(k), Some(min), Some(max)) => Some((k.to_string(), min, max)),
                _ => None,
            },
        });
    }
    Ok(v)
}

/// `hcr globals PID [MODULE] [--json]`.
///
/// # Errors
/// No such program, or no such module.
pub fn globals(
    pid: u32,
    module: Option<&str>,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut c = Client::connect(pid)?;
    let types = c.types().unwrap_or_else(|e| {
        eprintln!("hcr: warning: no types for process {pid}: {e:#}");
        None
    });
    let gs = read_globals_typed(&mut c, module, types.as_ref())?;
    if let Some(m) = module {
        if gs.is_empty() && !info(&mut c)?.modules.iter().any(|x| x == m) {
            bail!("process {pid} has no module {m}");
        }
    }
    if json {
        let v: Vec<serde_json::Value> = gs.iter().map(GlobalValue::to_json).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    // One row per global; a struct or array is followed by a row per field
    // and element (NAME.FIELD, NAME[i]: what `hcr set` takes).
    let mut rows: Vec<(&str, String, String, String)> = Vec::new();
    for g in &gs {
        rows.push((&g.module, g.name.clone(), g.type_name(), g.value()));
        for (n, v) in g.nodes(MAX_FIELDS).into_iter().skip(1) {
            rows.push((&g.module, n.path.clone(), field_type_name(&n), v));
        }
    }
    let wm = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(6);
    let wn = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(4);
    let wt = rows.iter().map(|r| r.2.len()).max().unwrap_or(0).max(4);
    writeln!(
        out,
        "{:<wm$}  {:<wn$}  {:<wt$}  VALUE",
        "MODULE", "NAME", "TYPE"
    )?;
    for (m, n, t, mut v) in rows {
        if v.len() > 120 {
            let mut cut = 117;
            while !v.is_char_boundary(cut) {
                cut -= 1;
            }
            v.truncate(cut);
            v.push_str("...");
        }
        writeln!(out, "{m:<wm$}  {n:<wn$}  {t:<wt$}  {v}")?;
    }
    Ok(())
}

use types::parse_int;

/// The bytes `value` stands for in global `g`: typed and range-checked by
/// its `HCR_TWEAK` when it has one, else by its size.
///
/// # Errors
/// A wrong type or an out-of-range value, with the reason.
pub fn encode_for(g: &GlobalValue, value: &str) -> anyhow::Result<Vec<u8>> {
    let Some((kind, min, max)) = &g.tweak else {
        return encode(g.size, value);
    };
    let (v, bytes) = match (kind.as_str(), g.size) {
        ("float", 4) | ("double", 8) => {
            let Ok(v) = value.parse::<f64>() else {
                bail!("wrong type: {value:?} is not a number, and this global is a {kind}");
            };
            if !v.is_finite() {
                bail!("bad value: {value} is not a finite number");
            }
            let b = if g.size == 4 {
                (v as f32).to_le_bytes().to_vec()
            } else {
                v.to_le_bytes().to_vec()
            };
            (v, b)
        }
        ("bool", n) => {
            let v = match value {
                "true" | "1" => 1u8,
                "false" | "0" => 0,
                _ => bail!("wrong type: {value:?} is not a bool (true, false, 1 or 0)"),
            };
            let mut b = vec![0u8; n as usize];
            if let Some(x) = b.first_mut() {
                *x = v;
            }
            (f64::from(v), b)
        }
        ("uint", 1 | 2 | 4 | 8) if value.starts_with('-') => {
            bail!("bad value: {value} is negative, and this global is unsigned")
        }
        (_, n) => {
            let b = encode(n, value)?;
            let v = parse_int(value).unwrap_or(0) as f64;
            (v, b)
        }
    };
    if v < *min || v > *max {
        bail!("bad value: {value} is outside the range {min} to {max} that HCR_TWEAK gives it");
    }
    Ok(bytes)
}

/// The bytes `value` stands for in a global of `size` bytes without type
/// information: `0x` and exactly its bytes in memory order (the form
/// `hcr globals` shows), or an integer when the size is 1, 2, 4 or 8.
///
/// # Errors
/// A wrong type or an out-of-range value, with the reason.
pub fn encode(size: u64, value: &str) -> anyhow::Result<Vec<u8>> {
    let hex = value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"));
    if let Some(b) = hex.filter(|h| h.len() as u64 == 2 * size).and_then(unhex) {
        return Ok(b);
    }
    let bytes_wanted = || {
        format!(
            "give exactly {size} bytes as 0x followed by {} hex digits (memory order)",
            2 * size
        )
    };
    if !matches!(size, 1 | 2 | 4 | 8) {
        bail!(
            "wrong type: this global is {size} bytes without type information; {}",
            bytes_wanted()
        );
    }
    let bits = size * 8;
    let Some(v) = parse_int(value) else {
        bail!(
            "wrong type: {value:?} is neither bytes nor an integer; this global is {size} bytes \
             without type information (build with -g for its type): {}, or an integer",
            bytes_wanted()
        );
    };
    let min = -(1i128 << (bits - 1));
    let max = (1i128 << bits) - 1;
    if v < min || v > max {
        bail!("bad value: {value} is out of range for a {size}-byte integer ({min} to {max})");
    }
    Ok(v.to_le_bytes()[..size as usize].to_vec())
}

/// `hcr set PID MODULE:NAME[.FIELD] VALUE`: prints `old -> new`.
///
/// # Errors
/// No such program or global, or the value is refused (with the reason).
pub fn set(pid: u32, target: &str, value: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut c = Client::connect(pid)?;
    let types = c.types().unwrap_or_else(|e| {
        eprintln!("hcr: warning: no types for process {pid}: {e:#}");
        None
    });
    let line = set_with(&mut c, pid, target, value, types.as_ref())?;
    writeln!(out, "{line}")?;
    Ok(())
}

/// Sets a global, or one field or element of it (`MODULE:NAME.a.b[3]`,
/// with DWARF `types`), through an open connection; `old -> new`.
///
/// # Errors
/// As [`set`].
pub fn set_with(
    c: &mut Client,
    pid: u32,
    target: &str,
    value: &str,
    types: Option<&TypeTable>,
) -> anyhow::Result<String> {
    let Some((module, path)) = target.split_once(':') else {
        bail!("expected MODULE:NAME[.FIELD], got {target:?}");
    };
    if module.contains(char::is_whitespace) || path.contains(char::is_whitespace) {
        bail!("expected MODULE:NAME[.FIELD], got {target:?}");
    }
    let gs = read_globals_typed(c, Some(module), types)?;
    // The global is the longest name that the path starts with, followed
    // by nothing, a field or an index (names may hold dots: `n.0`).
    let Some(g) = gs
        .iter()
        .filter(|g| {
            path.strip_prefix(g.name.as_str())
                .is_some_and(|r| r.is_empty() || r.starts_with(['.', '[']))
        })
        .max_by_key(|g| g.name.len())
    else {
        bail!("process {pid} has no global {module}:{path} (removed, or never defined)");
    };
    let rest = &path[g.name.len()..];
    type Show = Box<dyn Fn(&[u8]) -> String>;
    let (offset, bytes, show): (u64, Vec<u8>, Show) = match &g.ty {
        Some(ty) => {
            let (offset, fty, bits) = types::resolve(ty, rest)
                .map_err(|e| anyhow::anyhow!("cannot set {target}: {e}"))?;
            if bits.is_some() {
                bail!(
                    "cannot set {target}: it is a bit-field, which cannot be written on its own \
                     without racing the program"
                );
            }
            let bytes = types::encode(&fty, value)
                .map_err(|e| anyhow::anyhow!("cannot set {target}: {e}"))?;
            if rest.is_empty() {
                check_tweak_range(g, value).with_context(|| format!("cannot set {target}"))?;
            }
            (
                offset,
                bytes,
                Box::new(move |b: &[u8]| types::format(&fty, None, b)),
            )
        }
        None => {
            if !rest.is_empty() {
                bail!(
                    "cannot set {target}: fields and elements need type information: build module \
                     {module} with -g"
                );
            }
            if g.size > hcr_runtime::control::MAX_READ {
                bail!("{target} is {} bytes: too large to set", g.size);
            }
            let bytes = encode_for(g, value).with_context(|| format!("cannot set {target}"))?;
            let (kind, size) = (g.kind().to_string(), g.size);
            (
                0,
                bytes,
                Box::new(move |b: &[u8]| format_typed(&kind, size, b)),
            )
        }
    };
    let mut h = String::new();
    for b in &bytes {
        h.push_str(&format!("{b:02x}"));
    }
    let reply = c
        .request(&format!("write {module} {} {offset} {h}", g.name))
        .with_context(|| format!("cannot set {target}"))?;
    let old = reply
        .iter()
        .find_map(|l| l.strip_prefix("old "))
        .and_then(unhex)
        .unwrap_or_default();
    // What is shown is the whole place: a string written into a longer
    // char array leaves the rest as it was.
    let whole = |over: &[u8]| -> Vec<u8> {
        let mut w = g.bytes.get(offset as usize..).unwrap_or(&[]).to_vec();
        w.truncate(w.len().max(over.len()));
        if w.len() < over.len() {
            w.resize(over.len(), 0);
        }
        w[..over.len()].copy_from_slice(over);
        w
    };
    let old = whole(&old);
    let new = {
        let mut n = old.clone();
        n[..bytes.len()].copy_from_slice(&bytes);
        n
    };
    Ok(format!("{} -> {}", show(&old), show(&new)))
}

/// The range `HCR_TWEAK` gave global `g`, checked against `value`.
fn check_tweak_range(g: &GlobalValue, value: &str) -> anyhow::Result<()> {
    let Some((_, min, max)) = &g.tweak else {
        return Ok(());
    };
    let v = match value.trim() {
        "true" => 1.0,
        "false" => 0.0,
        v => match v.parse::<f64>() {
            Ok(x) => x,
            Err(_) => types::parse_int(v).map_or(f64::NAN, |i| i as f64),
        },
    };
    if v.is_nan() {
        return Ok(());
    }
    if v < *min || v > *max {
        bail!("bad value: {value} is outside the range {min} to {max} that HCR_TWEAK gives it");
    }
    Ok(())
}
