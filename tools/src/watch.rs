//! `hcr watch DIR [--build CMD --image PATH] [-- ARGS...]`: build a folder of
//! C modules, run it, and on every save rebuild what changed, relink, and
//! let the running program reload.
//!
//! # What it does
//!
//! The modules are the `*.c` files of DIR; the root is `main.c` unless the
//! project file `DIR/hcr.toml` names another (see [`Project`]). hcr watch
//! compiles every module in parallel with `cc -c -fPIC -ffunction-sections
//! -fdata-sections` (objects and the image go into `DIR/.hcr/`), links the
//! image with the hcr linker (the image is replaced atomically), and runs it
//! as a child process `hcr run IMAGE` sharing the terminal, so the program's
//! stdin, stdout and stderr are the terminal's. hcr watch's own messages go
//! to stderr, prefixed `hcr watch:`.
//!
//! It then watches DIR (file-system events, debounced: [`DEBOUNCE`] of
//! quiet, or [`SAVED_QUIET`] once a file was closed after writing, and a
//! full re-check every [`RESCAN`] in case an event was lost). Changes are
//! judged by content (a hash of every source), never by timestamps alone, so
//! no edit is missed however quickly it follows another, and a save that
//! changes nothing rebuilds nothing. A source is read again only when its
//! status (`stat`) changed or it changed within [`RACY`] before it was last
//! read (file times come from a coarse clock: git's "racily clean" rule). A changed `.c` recompiles that module; a
//! changed `.h` (anywhere under DIR) or `hcr.toml` recompiles every module,
//! and so does a change to a header outside DIR that a module includes
//! (through `cflags = "-I ../include"`, say): the compiler writes each
//! module's dependencies (`-MMD`), and the headers they name outside DIR,
//! and those in the folders of `-I` options, are hashed with the sources
//! and their folders watched too ([`Outside`]).
//! After every build the sources are checked again, and anything saved while
//! the build ran is built at once: the program never stays one edit behind.
//!
//! A compiler or link error is printed once, to stderr; nothing is linked
//! while any module fails to compile, so the program keeps running the last
//! good code, whole, until the error is fixed.
//!
//! # Who reloads: the program, or `--auto-reload`
//!
//! A program that calls `hcr_perform_code_reload()` (like `testdata/demo`,
//! at the top of each tick) reloads there, at its own safe point. A program
//! that never does is run with `hcr run --auto-reload`, which reloads from a
//! background thread (see the `run` module for what that does and does not
//! guarantee). hcr watch chooses with [`AutoReload`]: by default (`auto`) it
//! looks at the linked image and turns auto-reload on exactly when no module
//! references `hcr_perform_code_reload`; `--auto-reload` / `--no-auto-reload`
//! or `auto_reload = true|false` in `hcr.toml` force it.
//!
//! # Your own build: `--build CMD --image PATH`
//!
//! With `--build "make"` (or `build = "make"` in `hcr.toml`) hcr watch
//! compiles nothing itself: on every change of a source or build file under
//! DIR (C and C++ sources and headers, Makefiles, `*.mk`, `CMakeLists.txt`,
//! `*.cmake`, `hcr.toml`; hidden folders and CMake build trees are skipped)
//! it runs CMD with `sh -c` in DIR and expects it to write the image at
//! `--image PATH` (relative to DIR; `image = "..."` in `hcr.toml`), linked
//! with `hcr-link` (which replaces it atomically). `tools/hcr.mk` and
//! `tools/hcr.cmake` make such builds easy. CMD's output is shown only when
//! it fails.
//!
//! # Nim projects
//!
//! A DIR holding `main.nim` and no `main.c` is built with Nim's own
//! incremental build (`.nim`, `.nims`, `nim.cfg` tracked); see
//! [`crate::nim_watch`].
//!
//! # When the program ends
//!
//! hcr watch exits with the program's exit code (128 + N when signal N
//! killed it). With `--restart` it instead keeps watching and starts the
//! program afresh (new state) after the next successful build — handy when
//! an edit made it crash. The program also ends when hcr watch does.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::io::{IsTerminal as _, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rayon::prelude::*;

/// The project file in a watched folder.
pub const PROJECT_FILE: &str = "hcr.toml";
/// Folder (inside the watched one) for objects, the image and `hcr.h`.
pub const OUT_DIR: &str = ".hcr";
/// `hcr.h`, written to `DIR/.hcr/include/` so modules find it wherever hcr
/// is installed.
pub const HCR_H: &str = include_str!("../../runtime/include/hcr.h");
/// Compiler flags hcr watch adds before the project's own `cflags`.
pub const DEFAULT_CFLAGS: &[&str] = &["-O1", "-Wall"];
/// Quiet time after a file event before building (editors write in steps).
pub const DEBOUNCE: Duration = Duration::from_millis(25);
/// Quiet time after a file was closed after writing: the save is complete,
/// only a save of several files at once is waited for.
pub const SAVED_QUIET: Duration = Duration::from_millis(1);
/// Longest wait for quiet after the first event of a burst.
const DEBOUNCE_MAX: Duration = Duration::from_millis(250);
/// Period of the full re-check that catches events the watcher lost.
pub const RESCAN: Duration = Duration::from_millis(500);
/// How often the child's exit is checked while nothing else happens.
const TICK: Duration = Duration::from_millis(100);

/// Whether the program is run with `hcr run --auto-reload`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AutoReload {
    /// On exactly when no module references `hcr_perform_code_reload`.
    #[default]
    Auto,
    /// Always on.
    On,
    /// Always off: the program reloads itself (or not at all).
    Off,
}

/// The project file `DIR/hcr.toml`: a few `key = value` lines, `#` comments.
///
/// ```toml
/// root = "game"            # root module (default "main")
/// cflags = "-O2 -g -DFOO"  # added after hcr's flags; split at spaces
/// ldflags = "-L/opt/x -lx" # libraries the program needs (-l NAME, -L DIR)
/// auto_reload = "auto"     # true, false or "auto" (the default)
/// build = "make"           # use this build command instead (see --build)
/// image = "app.hcr"        # the image the build command writes
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Project {
    /// Root module name (`main` when absent).
    pub root: Option<String>,
    /// Extra compiler flags, after [`DEFAULT_CFLAGS`].
    pub cflags: Vec<String>,
    /// Libraries to link against (`-lNAME`, `-l NAME`, `-LDIR`, `-L DIR`).
    pub libraries: Vec<String>,
    /// Directories searched for them first.
    pub library_dirs: Vec<PathBuf>,
    /// Auto-reload policy.
    pub auto_reload: AutoReload,
    /// Build command (as `--build`).
    pub build: Option<String>,
    /// Image the build command writes (as `--image`).
    pub image: Option<PathBuf>,
}

/// A value of the project file.
enum Value {
    Str(String),
    Bool(bool),
}

fn parse_value(s: &str) -> Result<(Value, &str), String> {
    if let Some(rest) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Ok((Value::Str(out), &rest[i + 1..])),
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, c @ ('"' | '\\'))) => out.push(c),
                    _ => return Err("unknown escape in string (use \\\" or \\\\)".into()),
                },
                c => out.push(c),
            }
        }
        return Err("unterminated string".into());
    }
    for (word, b) in [("true", true), ("false", false)] {
        if let Some(rest) = s.strip_prefix(word) {
            return Ok((Value::Bool(b), rest));
        }
    }
    Err("expected a \"string\", true or false".into())
}

impl Project {
    /// Parses the text of a project file.
    ///
    /// # Errors
    /// A line that is not `key = value` with a known key, naming the line.
    pub fn parse(text: &str) -> anyhow::Result<Project> {
        let mut p = Project::default();
        for (n, line) in text.lines().enumerate() {
            let n = n + 1;
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let Some((key, rest)) = t.split_once('=') else {
                bail!("{PROJECT_FILE}:{n}: expected `key = value`, found `{t}`");
            };
            let key = key.trim();
            let (value, tail) = parse_value(rest.trim_start())
                .map_err(|e| anyhow::anyhow!("{PROJECT_FILE}:{n}: {key}: {e}"))?;
            let tail = tail.trim();
            if !(tail.is_empty() || tail.starts_with('#')) {
                bail!("{PROJECT_FILE}:{n}: unexpected `{tail}` after the value of {key}");
            }
            let want_str = |v: Value| match v {
                Value::Str(s) => Ok(s),
                Value::Bool(_) => Err(anyhow::anyhow!(
                    "{PROJECT_FILE}:{n}: {key} must be a \"string\""
                )),
            };
            match key {
                "root" => p.root = Some(want_str(value)?),
                "cflags" => {
                    p.cflags = want_str(value)?
                        .split_whitespace()
                        .map(str::to_string)
                        .collect();
                }
                "ldflags" => {
                    let v = want_str(value)?;
                    let mut words = v.split_whitespace();
                    while let Some(w) = words.next() {
                        let mut take = |flag: &str| -> anyhow::Result<String> {
                            match w.strip_prefix(flag) {
                                Some("") => words.next().map(str::to_string).ok_or_else(|| {
                                    anyhow::anyhow!("{PROJECT_FILE}:{n}: ldflags: {flag} needs a value")
                                }),
                                Some(rest) => Ok(rest.to_string()),
                                None => unreachable!(),
                            }
                        };
                        if w.starts_with("-l") {
                            p.libraries.push(take("-l")?);
                        } else if w.starts_with("-L") {
                            p.library_dirs.push(PathBuf::from(take("-L")?));
                        } else {
                            bail!("{PROJECT_FILE}:{n}: ldflags: `{w}` is not -lNAME or -LDIR");
                        }
                    }
                }
                "build" => p.build = Some(want_str(value)?),
                "image" => p.image = Some(PathBuf::from(want_str(value)?)),
                "auto_reload" => {
                    p.auto_reload = match value {
                        Value::Bool(true) => AutoReload::On,
                        Value::Bool(false) => AutoReload::Off,
                        Value::Str(s) if s == "auto" => AutoReload::Auto,
                        Value::Str(s) => bail!(
                            "{PROJECT_FILE}:{n}: auto_reload must be true, false or \"auto\", not \"{s}\""
                        ),
                    };
                }
                _ => bail!(
                    "{PROJECT_FILE}:{n}: unknown key `{key}` (known: root, cflags, ldflags, auto_reload, build, image)"
                ),
            }
        }
        Ok(p)
    }

    /// Reads `dir/hcr.toml`; the defaults when there is none.
    ///
    /// # Errors
    /// The file exists but cannot be read or parsed.
    pub fn load(dir: &Path) -> anyhow::Result<Project> {
        let path = dir.join(PROJECT_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Project::parse(&text).with_context(|| format!("in {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Project::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// The root module's name.
    pub fn root(&self) -> &str {
        self.root.as_deref().unwrap_or("main")
    }
}

/// Options of `hcr watch`.
#[derive(Clone, Debug)]
pub struct WatchConfig {
    /// The watched folder.
    pub dir: PathBuf,
    /// A build command to run instead of compiling (`--build`).
    pub build: Option<String>,
    /// The image the build command writes (`--image`), relative to `dir`.
    pub image: Option<PathBuf>,
    /// `--auto-reload` / `--no-auto-reload`; `None`: the project's setting.
    pub auto_reload: Option<AutoReload>,
    /// Start the program again after it exits (`--restart`).
    pub restart: bool,
    /// Arguments for the program's `main`.
    pub args: Vec<String>,
    /// The `hcr` executable that runs the program (`hcr run`).
    pub hcr_exe: PathBuf,
    /// The C compiler (`$CC`, default `cc`).
    pub cc: String,
}

impl WatchConfig {
    /// A configuration with defaults for `dir`: `cc` from `$CC`, this
    /// process's executable as `hcr`.
    ///
    /// # Errors
    /// The path of the running executable is unknown.
    pub fn new(dir: impl Into<PathBuf>) -> anyhow::Result<WatchConfig> {
        Ok(WatchConfig {
            dir: dir.into(),
            build: None,
            image: None,
            auto_reload: None,
            restart: false,
            args: Vec::new(),
            hcr_exe: std::env::current_exe().context("cannot find the hcr executable")?,
            cc: std::env::var("CC")
                .ok()
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| "cc".to_string()),
        })
    }
}

// ---------------------------------------------------------------------------
// Sources

/// Content hash of every tracked file, by path relative to the folder.
type Snapshot = BTreeMap<PathBuf, u64>;

/// Which files a build depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Track {
    /// hcr's own build: `*.c` at the top, `*.h` anywhere, `hcr.toml`.
    Modules,
    /// A build command: sources, headers and build files anywhere.
    Command,
    /// A Nim project: see `nim_watch::tracked`.
    Nim,
}

/// Whether a file with extension `ext` is a C or C++ header.
fn is_header(ext: &str) -> bool {
    matches!(ext, "h" | "hh" | "hpp" | "hxx" | "inc")
}

fn tracked(track: Track, rel: &Path, top: bool) -> bool {
    let name = rel.file_name().and_then(OsStr::to_str).unwrap_or("");
    let ext = rel.extension().and_then(OsStr::to_str).unwrap_or("");
    if name == PROJECT_FILE && top {
        return true;
    }
    match track {
        Track::Modules => (ext == "c" && top) || ext == "h",
        Track::Nim => crate::nim_watch::tracked(name, ext),
        Track::Command => {
            is_header(ext)
                || matches!(ext, "c" | "cc" | "cpp" | "cxx" | "s" | "S" | "mk" | "cmake")
                || matches!(
                    name,
                    "Makefile" | "makefile" | "GNUmakefile" | "CMakeLists.txt"
                )
        }
    }
}

/// Hashes every tracked file under `dir` (hidden folders, `.hcr` and CMake
/// build trees skipped). Files that vanish while scanning are left out.
#[cfg(test)]
fn scan(dir: &Path, track: Track) -> Snapshot {
    Sources::default().scan(dir, track, &Outside::default())
}

/// A file's status as `stat` gives it: what a source's content hash is
/// keyed by, and which version of an image `hcr run` reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    /// The status of the file at `path` (`None` when it cannot be read).
    pub(crate) fn of_path(path: &Path) -> Option<Stamp> {
        std::fs::metadata(path).ok().map(|m| Stamp::of(&m))
    }

    fn of(m: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt as _;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        }
    }
}

/// A file changed this recently before its content was hashed may change
/// again without its status changing: file times come from a coarse clock
/// (a few milliseconds on Linux, two seconds on FAT), so a second write of
/// the same length within the same tick leaves them as they were. Such a
/// file is hashed again at every scan until a scan hashes it this long
/// after its last change (git's rule for "racily clean" index entries).
const RACY: i128 = 3_000_000_000;

/// The tracked files' hashes by their status, kept between scans: a scan
/// reads and hashes only the files whose status changed, or that changed
/// too shortly before they were last hashed ([`RACY`]); the others cost a
/// `stat`. (With 2000 modules reading every source took most of the time
/// from a save to the build.)
struct Sources {
    known: HashMap<PathBuf, Known>,
    /// [`RACY`] (tests shorten it).
    racy: i128,
    /// Files read and hashed by the last scan.
    read: usize,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            known: HashMap::new(),
            racy: RACY,
            read: 0,
        }
    }
}

/// A file's hash, the status it was read under and when (nanoseconds since
/// the epoch, taken before the read).
#[derive(Clone, Copy)]
struct Known {
    stamp: Stamp,
    hash: u64,
    hashed_at: i128,
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

impl Sources {
    /// Hashes every tracked file under `dir` (hidden folders, `.hcr` and
    /// CMake build trees skipped), and the files outside it that `outside`
    /// names or whose folders it names (see [`Outside`]). Files that vanish
    /// while scanning are left out.
    fn scan(&mut self, dir: &Path, track: Track, outside: &Outside) -> Snapshot {
        let mut files = Vec::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel_dir) = stack.pop() {
            let abs = dir.join(&rel_dir);
            let top = rel_dir.as_os_str().is_empty();
            if !top && abs.join("CMakeCache.txt").exists() {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(&abs) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name();
                if name.to_string_lossy().starts_with('.') {
                    continue;
                }
                let rel = rel_dir.join(&name);
                let Ok(ft) = e.file_type() else { continue };
                if ft.is_dir() {
                    stack.push(rel);
                } else if tracked(track, &rel, top) {
                    files.push(rel);
                }
            }
        }
        files.extend(outside.list(dir));
        // Reading a hundred sources is on the way from a save to new code: in
        // parallel.
        let (known, racy) = (&self.known, self.racy);
        // (path, hash and status, read now)
        let found: Vec<(PathBuf, Known, bool)> = files
            .into_par_iter()
            .filter_map(|rel| {
                let path = dir.join(&rel);
                // (The time before the status: a change after it shows as
                // a new status, or within the racy window.)
                let at = now_ns();
                let stamp = Stamp::of(&std::fs::metadata(&path).ok()?);
                if let Some(k) = known.get(&rel).filter(|k| {
                    k.stamp == stamp && stamp.mtime_ns.max(stamp.ctime_ns) < k.hashed_at - racy
                }) {
                    return Some((rel, *k, false));
                }
                let bytes = std::fs::read(&path).ok()?;
                let hash = twox_hash::XxHash3_64::oneshot(&bytes);
                Some((
                    rel,
                    Known {
                        stamp,
                        hash,
                        hashed_at: at,
                    },
                    true,
                ))
            })
            .collect();
        let snap = found.iter().map(|(p, k, _)| (p.clone(), k.hash)).collect();
        self.read = found.iter().filter(|f| f.2).count();
        self.known = found.into_iter().map(|(p, k, _)| (p, k)).collect();
        snap
    }
}

/// Files added, changed or removed between two snapshots.
fn changed_files(old: &Snapshot, new: &Snapshot) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = new
        .iter()
        .filter(|(p, h)| old.get(*p) != Some(h))
        .map(|(p, _)| p.clone())
        .chain(old.keys().filter(|p| !new.contains_key(*p)).cloned())
        .collect();
    v.sort();
    v
}

fn list(paths: &[PathBuf]) -> String {
    const MAX: usize = 6;
    let mut s: Vec<String> = paths
        .iter()
        .take(MAX)
        .map(|p| p.display().to_string())
        .collect();
    if paths.len() > MAX {
        s.push(format!("and {} more", paths.len() - MAX));
    }
    s.join(", ")
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

// ---------------------------------------------------------------------------
// Builders

/// What one build round did.
#[derive(Clone, Copy, Debug, Default)]
struct Outcome {
    /// A new image is at the image path.
    image_written: bool,
}

/// hcr's own build: compile changed modules, link.
struct ModuleBuild {
    dir: PathBuf,
    image: PathBuf,
    cc: String,
    color: bool,
    project: Project,
    project_hash: Option<u64>,
    /// Hash of every header and the project file that the objects in
    /// `compiled` were built with.
    headers: Option<u64>,
    /// Module → hash of the source its object was built from.
    compiled: HashMap<String, u64>,
    /// Module → hash of the source that failed to compile (error printed).
    failed: HashMap<String, u64>,
    /// Inputs of the image last written, and of the last failed link.
    linked: Option<(u64, BTreeMap<String, u64>)>,
    link_failed: Option<(u64, BTreeMap<String, u64>)>,
    /// The last problem printed that is not a compile or link error.
    said: Option<String>,
    /// The objects stay mapped between links: only the recompiled ones
    /// are opened and mapped again.
    inputs: hcr_linker::InputCache,
    /// Module → the files its last good compile read besides its source,
    /// as its dependency file names them (relative to the folder, or
    /// absolute).
    deps: HashMap<String, Vec<PathBuf>>,
}

fn obj_dir(dir: &Path) -> PathBuf {
    dir.join(OUT_DIR).join("obj")
}

/// The hash of every header and the project file in `snap`: headers under
/// the folder, and those outside it that modules include.
fn headers_digest(snap: &Snapshot) -> u64 {
    use std::hash::Hasher as _;
    let mut h = twox_hash::XxHash3_64::new();
    for (p, v) in snap {
        if p.extension() == Some(OsStr::new("h")) || p == Path::new(PROJECT_FILE) || outside(p) {
            h.write(p.as_os_str().as_encoded_bytes());
            h.write(&v.to_le_bytes());
        }
    }
    h.finish()
}

/// Whether `p` (relative to the folder, lexically normal, or absolute)
/// lies outside the folder.
fn outside(p: &Path) -> bool {
    p.is_absolute() || p.starts_with("..")
}

/// What a build depends on outside the folder (paths relative to it, or
/// absolute): the files its compiles read, as their dependency files
/// (`-MMD`) name them, and the folders of its `-I` and `-iquote` options,
/// whose headers are listed at every scan: a header created there (one a
/// failed compile missed, or one that hides another of the same name
/// further down the search path) changes the build too.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Outside {
    files: BTreeSet<PathBuf>,
    dirs: BTreeSet<PathBuf>,
}

impl Outside {
    /// The files to hash: `files`, and the headers now in `dirs`.
    fn list(&self, dir: &Path) -> BTreeSet<PathBuf> {
        let mut all = self.files.clone();
        for d in &self.dirs {
            let Ok(entries) = std::fs::read_dir(dir.join(d)) else {
                continue;
            };
            for e in entries.flatten() {
                let name = PathBuf::from(e.file_name());
                let header = name
                    .extension()
                    .and_then(OsStr::to_str)
                    .is_some_and(is_header);
                if header && e.file_type().is_ok_and(|t| !t.is_dir()) {
                    all.insert(d.join(name));
                }
            }
        }
        all
    }
}

/// The folders that `-I DIR`, `-IDIR`, `-iquote DIR` and `-iquoteDIR` in
/// `flags` name, lexically normal.
fn include_dirs(flags: &[String]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut it = flags.iter();
    while let Some(f) = it.next() {
        let d = match f.as_str() {
            "-I" | "-iquote" => it.next().map(String::as_str),
            f => f.strip_prefix("-iquote").or_else(|| f.strip_prefix("-I")),
        };
        if let Some(d) = d.filter(|d| !d.is_empty()) {
            out.push(normal(Path::new(d)));
        }
    }
    out
}

/// The inputs a dependency file (`cc -MMD`: `target: input input \`)
/// lists, the source first, unescaped (`\ ` is a space in a name, `$$` a
/// dollar sign) and made lexically normal (`sub/../x.h` is `x.h`).
fn depfile_inputs(text: &str) -> Vec<PathBuf> {
    let joined = text.replace("\\\r\n", " ").replace("\\\n", " ");
    // The first rule only: its target ends at the first `: `.
    let Some((_, rest)) = joined.split_once(": ") else {
        return Vec::new();
    };
    let rest = rest.lines().next().unwrap_or("");
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some(' ' | '#')) => {
                cur.extend(chars.next());
            }
            '$' if chars.peek() == Some(&'$') => {
                chars.next();
                cur.push('$');
            }
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(normal(Path::new(&std::mem::take(&mut cur))));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(normal(Path::new(&cur)));
    }
    out
}

/// `p` with `.` components dropped and `..` taking out the name before it
/// where there is one (no file-system access: what the compiler opened).
fn normal(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component<'_>> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.iter().collect()
}

impl ModuleBuild {
    fn new(dir: &Path, project: Project, cc: &str) -> ModuleBuild {
        ModuleBuild {
            dir: dir.to_path_buf(),
            image: dir.join(OUT_DIR).join(format!("{}.hcr", project.root())),
            cc: cc.to_string(),
            color: std::io::stderr().is_terminal(),
            project,
            project_hash: None,
            headers: None,
            compiled: HashMap::new(),
            failed: HashMap::new(),
            linked: None,
            link_failed: None,
            said: None,
            inputs: hcr_linker::InputCache::default(),
            deps: HashMap::new(),
        }
    }

    /// What the modules depend on outside the folder (`.hcr`'s own
    /// `hcr.h` is inside).
    fn external(&self) -> Outside {
        let dir = &self.dir;
        let relative = |p: &PathBuf| match p.strip_prefix(dir) {
            Ok(inside) => inside.to_path_buf(),
            Err(_) => p.clone(),
        };
        Outside {
            files: (self.deps.values().flatten())
                .map(relative)
                .filter(|p| outside(p))
                .collect(),
            dirs: (include_dirs(&self.project.cflags).iter())
                .map(relative)
                .filter(|p| outside(p))
                .collect(),
        }
    }

    /// `snap` now also holds headers outside the folder that the last build
    /// learned of (its objects were compiled with them as they are): the
    /// digest of what was built takes them in, so that they count as built.
    fn headers_seen(&mut self, snap: &Snapshot) {
        let now = headers_digest(snap);
        let Some(before) = self.headers.replace(now) else {
            self.headers = None;
            return;
        };
        for key in [&mut self.linked, &mut self.link_failed]
            .into_iter()
            .flatten()
        {
            if key.0 == before {
                key.0 = now;
            }
        }
    }

    /// Prints `msg` unless it was the last such message.
    fn say_once(&mut self, log: &mut dyn Write, msg: String) {
        if self.said.as_ref() != Some(&msg) {
            let _ = writeln!(log, "hcr watch: {msg}");
            self.said = Some(msg);
        }
    }

    /// Compiles `src` (relative to the folder) into `.hcr/obj/NAME.o`,
    /// through a temporary file so that a failed compile leaves the last
    /// good object. Returns the compiler's warnings.
    fn compile(&self, name: &str, src: &Path) -> Result<String, String> {
        let rel_obj = Path::new(OUT_DIR).join("obj");
        let tmp = rel_obj.join(format!("{name}.o.tmp"));
        let obj = rel_obj.join(format!("{name}.o"));
        let mut cmd = Command::new(&self.cc);
        cmd.current_dir(&self.dir)
            .arg("-c")
            .args(crate::FLAGS.split_whitespace())
            .args(DEFAULT_CFLAGS)
            .args(&self.project.cflags)
            .arg("-I")
            .arg(Path::new(OUT_DIR).join("include"))
            // The headers it reads (not the system's): see `ModuleBuild::deps`.
            .arg("-MMD")
            .arg("-MF")
            .arg(rel_obj.join(format!("{name}.d")));
        if self.color {
            cmd.arg("-fdiagnostics-color=always");
        }
        let out = cmd
            .arg(src)
            .arg("-o")
            .arg(&tmp)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run the C compiler `{}`: {e} (set $CC)", self.cc))?;
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            let _ = std::fs::remove_file(self.dir.join(&tmp));
            if text.trim().is_empty() {
                text = format!("`{}` failed ({})", self.cc, out.status);
            }
            return Err(text);
        }
        std::fs::rename(self.dir.join(&tmp), self.dir.join(&obj))
            .map_err(|e| format!("cannot write {}: {e}", obj.display()))?;
        Ok(text)
    }

    fn build(&mut self, snap: &Snapshot, running: bool, log: &mut dyn Write) -> Outcome {
        let none = Outcome::default();
        // The project file: flags and root may change.
        let project_hash = snap.get(Path::new(PROJECT_FILE)).copied();
        if project_hash != self.project_hash {
            match Project::load(&self.dir) {
                Ok(p) => {
                    if p.root() != self.project.root() {
                        self.say_once(
                            log,
                            format!(
                                "the root module changed to {}; restart hcr watch for the program to start from it",
                                p.root()
                            ),
                        );
                    }
                    self.project = Project {
                        root: self.project.root.clone(),
                        ..p
                    };
                    self.project_hash = project_hash;
                }
                Err(e) => {
                    self.say_once(
                        log,
                        format!("{e:#}; the program keeps running the previous code"),
                    );
                    return none;
                }
            }
        }
        // (Before a changed header clears them: a fix that restores the
        // running code's header is then confirmed too.)
        let had_failures = !self.failed.is_empty();
        let headers = headers_digest(snap);
        if self.headers != Some(headers) {
            self.compiled.clear();
            self.failed.clear();
            self.headers = Some(headers);
        }
        // Modules: the top-level `*.c` files.
        let modules: BTreeMap<String, (PathBuf, u64)> = snap
            .iter()
            .filter(|(p, _)| {
                p.extension() == Some(OsStr::new("c")) && p.parent() == Some(Path::new(""))
            })
            .filter_map(|(p, &h)| {
                let name = p.file_stem()?.to_str()?.to_string();
                Some((name, (p.clone(), h)))
            })
            .collect();
        self.compiled.retain(|m, _| modules.contains_key(m));
        self.deps.retain(|m, _| modules.contains_key(m));
        // A failure stands while the module's source is the one that failed.
        self.failed
            .retain(|m, h| modules.get(m).is_some_and(|(_, now)| now == h));
        let root = self.project.root().to_string();
        if !modules.contains_key(&root) {
            let msg = if modules.is_empty() {
                format!("no C modules (*.c) in {}", self.dir.display())
            } else {
                format!(
                    "no module {root}: add {root}.c to {}, or name the root in {PROJECT_FILE} (root = \"...\")",
                    self.dir.display()
                )
            };
            self.say_once(log, msg);
            return none;
        }
        // Compile what changed, in parallel.
        let todo: Vec<(&String, &PathBuf, u64)> = modules
            .iter()
            .filter(|(m, (_, h))| {
                self.compiled.get(*m) != Some(h) && self.failed.get(*m) != Some(h)
            })
            .map(|(m, (p, h))| (m, p, *h))
            .collect();
        let started = Instant::now();
        let this = &*self;
        let results: Vec<(String, u64, PathBuf, Result<String, String>)> = todo
            .par_iter()
            .map(|(m, p, h)| ((*m).clone(), *h, (*p).clone(), this.compile(m, p)))
            .collect();
        let compile_time = started.elapsed();
        let compiled_now = results.len();
        let mut errors = Vec::new();
        for (m, h, p, r) in results {
            match r {
                Ok(warnings) => {
                    if !warnings.trim().is_empty() {
                        let _ = write!(log, "{warnings}");
                    }
                    let depfile = obj_dir(&self.dir).join(format!("{m}.d"));
                    let deps = std::fs::read_to_string(depfile)
                        .map(|t| depfile_inputs(&t).into_iter().skip(1).collect())
                        .unwrap_or_default();
                    self.deps.insert(m.clone(), deps);
                    self.compiled.insert(m.clone(), h);
                    self.failed.remove(&m);
                }
                Err(text) => {
                    errors.push((p, text));
                    self.failed.insert(m, h);
                }
            }
        }
        let consequence = if running {
            "the program keeps running the previous code"
        } else {
            "fix it and save; the program starts after the first good build"
        };
        for (p, text) in &errors {
            let _ = writeln!(
                log,
                "hcr watch: {} does not compile; {consequence}:",
                p.display()
            );
            let _ = write!(log, "{text}");
            if !text.ends_with('\n') {
                let _ = writeln!(log);
            }
        }
        if !self.failed.is_empty() {
            if compiled_now > 0 && errors.is_empty() {
                let mut still: Vec<&String> = self.failed.keys().collect();
                still.sort();
                let _ = writeln!(
                    log,
                    "hcr watch: still not compiling: {}; nothing is linked until every module compiles",
                    still.iter().map(|s| format!("{s}.c")).collect::<Vec<_>>().join(", ")
                );
            }
            return none;
        }
        // Link, unless these exact inputs were linked (or failed) already.
        let inputs: BTreeMap<String, u64> =
            modules.iter().map(|(m, (_, h))| (m.clone(), *h)).collect();
        let key = (headers, inputs);
        if self.link_failed.as_ref() == Some(&key) {
            return none;
        }
        if self.linked.as_ref() == Some(&key) && self.image.exists() {
            if had_failures || self.link_failed.take().is_some() {
                let _ = writeln!(
                    log,
                    "hcr watch: the sources match the running code again: nothing to reload"
                );
            }
            return none;
        }
        let objdir = obj_dir(&self.dir);
        let mut objects = vec![objdir.join(format!("{root}.o"))];
        objects.extend(
            modules
                .keys()
                .filter(|m| **m != root)
                .map(|m| objdir.join(format!("{m}.o"))),
        );
        let cfg = hcr_linker::LinkConfig {
            root: Some(root.clone()),
            libraries: self.project.libraries.clone(),
            library_dirs: self
                .project
                .library_dirs
                .iter()
                .map(|d| self.dir.join(d))
                .collect(),
            ..Default::default()
        };
        let started = Instant::now();
        match hcr_linker::link_cached(&cfg, &objects, &self.image, &mut self.inputs) {
            Ok(out) => {
                let link_time = started.elapsed();
                for w in &out.warnings {
                    let _ = writeln!(log, "hcr watch: warning: {w}");
                }
                let _ = writeln!(
                    log,
                    "hcr watch: compiled {} in {}, linked {} in {}{}",
                    plural(compiled_now, "module"),
                    ms(compile_time),
                    plural(out.modules, "module"),
                    ms(link_time),
                    if running { ": the program reloads" } else { "" }
                );
                self.linked = Some(key);
                self.link_failed = None;
                self.said = None;
                Outcome {
                    image_written: true,
                }
            }
            Err(e) => {
                let _ = writeln!(log, "hcr watch: link failed; {consequence}:\n{e}");
                self.link_failed = Some(key);
                none
            }
        }
    }
}

/// A project's own build command.
struct CommandBuild {
    dir: PathBuf,
    cmd: String,
    image: PathBuf,
    last_image: Option<(u64, u64, std::time::SystemTime)>,
}

fn file_id(path: &Path) -> Option<(u64, u64, std::time::SystemTime)> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.size(), m.modified().ok()?))
}

impl CommandBuild {
    fn build(&mut self, running: bool, log: &mut dyn Write) -> Outcome {
        let consequence = if running {
            "the program keeps running the previous code"
        } else {
            "fix it and save; the program starts after the first good build"
        };
        let started = Instant::now();
        let mut cmd = Command::new("sh");
        // An `hcr-link` in the build keeps its link warm between builds
        // (`hcr-link --incremental`), unless the environment says otherwise.
        if std::env::var_os("HCR_LINK_INCREMENTAL").is_none() {
            cmd.env("HCR_LINK_INCREMENTAL", "1");
        }
        let out = cmd
            .arg("-c")
            .arg(&self.cmd)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output();
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                let _ = writeln!(log, "hcr watch: cannot run `sh -c {}`: {e}", self.cmd);
                return Outcome::default();
            }
        };
        if !out.status.success() {
            let _ = writeln!(
                log,
                "hcr watch: `{}` failed ({}); {consequence}:",
                self.cmd, out.status
            );
            let _ = log.write_all(&out.stdout);
            let _ = log.write_all(&out.stderr);
            return Outcome::default();
        }
        let id = file_id(&self.image);
        if id.is_none() {
            let _ = writeln!(
                log,
                "hcr watch: `{}` succeeded but wrote no image at {} (give the image's path with --image or image = \"...\" in {PROJECT_FILE})",
                self.cmd,
                self.image.display()
            );
            return Outcome::default();
        }
        let written = id != self.last_image;
        self.last_image = id;
        let _ = writeln!(
            log,
            "hcr watch: `{}` took {}{}",
            self.cmd,
            ms(started.elapsed()),
            match (written, running) {
                (false, _) => ": the image did not change",
                (true, true) => ": the program reloads",
                (true, false) => "",
            }
        );
        Outcome {
            image_written: written,
        }
    }
}

enum Builder {
    Modules(Box<ModuleBuild>),
    Command(CommandBuild),
    Nim(Box<crate::nim_watch::NimBuild>),
}

impl Builder {
    fn image(&self) -> &Path {
        match self {
            Builder::Modules(b) => &b.image,
            Builder::Command(b) => &b.image,
            Builder::Nim(b) => &b.image,
        }
    }

    fn track(&self) -> Track {
        match self {
            Builder::Modules(_) => Track::Modules,
            Builder::Command(_) => Track::Command,
            Builder::Nim(_) => Track::Nim,
        }
    }

    /// What the build depends on outside the folder.
    fn external(&self) -> Outside {
        match self {
            Builder::Modules(b) => b.external(),
            Builder::Command(_) | Builder::Nim(_) => Outside::default(),
        }
    }

    fn headers_seen(&mut self, snap: &Snapshot) {
        if let Builder::Modules(b) = self {
            b.headers_seen(snap);
        }
    }

    fn build(&mut self, snap: &Snapshot, running: bool, log: &mut dyn Write) -> Outcome {
        match self {
            Builder::Modules(b) => b.build(snap, running, log),
            Builder::Command(b) => b.build(running, log),
            Builder::Nim(b) => Outcome {
                image_written: b.build(running, log),
            },
        }
    }
}

// ---------------------------------------------------------------------------
// The program

/// True when a reachable module of the image references
/// `hcr_perform_code_reload` (the program reloads itself).
///
/// # Errors
/// The image cannot be read or parsed.
pub fn program_reloads_itself(image: &Path) -> anyhow::Result<bool> {
    let bytes = std::fs::read(image).with_context(|| format!("cannot read {}", image.display()))?;
    let (_, m) = hcr_image::ImageView::parse_manifest(&bytes)
        .with_context(|| format!("{} is not a usable image", image.display()))?;
    Ok(m.modules.iter().filter(|md| md.reachable).any(|md| {
        md.undefined.iter().any(|h| {
            m.hosts
                .get(h.0 as usize)
                .is_some_and(|s| m.str(s.name) == "hcr_perform_code_reload")
        })
    }))
}

fn spawn_program(
    cfg: &WatchConfig,
    policy: AutoReload,
    image: &Path,
    log: &mut dyn Write,
) -> anyhow::Result<Child> {
    let auto = match policy {
        AutoReload::On => true,
        AutoReload::Off => false,
        AutoReload::Auto => !program_reloads_itself(image)?,
    };
    let how = match (policy, auto) {
        (AutoReload::Auto, false) => "it reloads itself (it calls hcr_perform_code_reload)",
        (AutoReload::Auto, true) => {
            "it never calls hcr_perform_code_reload, so hcr run --auto-reload reloads it"
        }
        (_, true) => "hcr run --auto-reload reloads it",
        (_, false) => "auto-reload off: it reloads when it calls hcr_perform_code_reload",
    };
    let _ = writeln!(log, "hcr watch: running {}; {how}", image.display());
    let mut cmd = Command::new(&cfg.hcr_exe);
    cmd.arg("run").arg("--exit-with-parent").arg("--control");
    if auto {
        cmd.arg("--auto-reload");
    }
    cmd.arg(image).arg("--").args(&cfg.args);
    cmd.spawn()
        .with_context(|| format!("cannot start {} run", cfg.hcr_exe.display()))
}

/// The exit code to pass on for a program's status (128 + N for signal N).
fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Kills the program when hcr watch returns early (an error, a panic).
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// The loop

/// A file-system event that may concern a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FsEvent {
    /// A file was closed after writing: a save is complete.
    Saved,
    /// Anything else (created, truncated, written, renamed, removed...).
    Other,
}

/// Starts a file-system watcher on `dir` that reports every event that may
/// concern a source (not reads, not the output folder).
fn start_watcher(
    dir: &Path,
    tx: mpsc::Sender<FsEvent>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::event::{AccessKind, AccessMode, EventKind};
    use notify::Watcher as _;
    let out = dir.join(OUT_DIR);
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let event = match res {
            Ok(ev) => {
                let kind = match ev.kind {
                    EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(FsEvent::Saved),
                    EventKind::Access(_) => None,
                    _ => Some(FsEvent::Other),
                };
                let ours = !ev.paths.is_empty() && ev.paths.iter().all(|p| p.starts_with(&out));
                kind.filter(|_| !ours)
            }
            // An overflow or error: re-check everything.
            Err(_) => Some(FsEvent::Other),
        };
        if let Some(e) = event {
            let _ = tx.send(e);
        }
    })?;
    w.watch(dir, notify::RecursiveMode::Recursive)?;
    Ok(w)
}

/// Adds a watch on each folder of `ext` and the folder of each of its
/// files (relative to `dir`, or absolute) not yet in `watched`. Best
/// effort: a folder that cannot be watched (or does not exist yet) is
/// still checked every [`RESCAN`].
fn watch_folders_of(
    w: &mut notify::RecommendedWatcher,
    dir: &Path,
    ext: &Outside,
    watched: &mut BTreeSet<PathBuf>,
) {
    use notify::Watcher as _;
    let folders = (ext.files.iter())
        .filter_map(|f| Some(dir.join(f).parent()?.to_path_buf()))
        .chain(ext.dirs.iter().map(|d| dir.join(d)));
    for folder in folders {
        let Ok(folder) = folder.canonicalize() else {
            continue;
        };
        if folder.starts_with(dir) || !watched.insert(folder.clone()) {
            continue;
        }
        let _ = w.watch(&folder, notify::RecursiveMode::NonRecursive);
    }
}

/// Waits until the burst of events that `last` started is over: no event
/// for [`DEBOUNCE`] (editors save in steps), or only [`SAVED_QUIET`] after
/// a file was closed after writing (the save is complete), and
/// [`DEBOUNCE_MAX`] at most.
fn debounce(rx: &mpsc::Receiver<FsEvent>, mut last: FsEvent) {
    let burst = Instant::now();
    while burst.elapsed() < DEBOUNCE_MAX {
        let quiet = if last == FsEvent::Saved {
            SAVED_QUIET
        } else {
            DEBOUNCE
        };
        match rx.recv_timeout(quiet) {
            Ok(e) => last = e,
            Err(mpsc::RecvTimeoutError::Timeout) => break,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(DEBOUNCE);
                break;
            }
        }
    }
}

/// Every relink allocates and frees the same tens of megabytes: keep freed
/// memory in glibc's heap (no trimming, no separate mappings for large
/// blocks), so that the next link reuses pages already faulted in instead
/// of asking the kernel for fresh zeroed ones. This tunes glibc's
/// allocator only: it serves `hcr-bench relink` and the C library's own
/// allocations, while the `hcr` binary's Rust allocations go to mimalloc,
/// which keeps freed memory for a second before purging it (links come
/// tens of milliseconds apart). Measured inside `hcr watch` at 100
/// modules, glibc with these settings and mimalloc linked within noise of
/// each other (2.8 against 2.7–3.1 ms).
#[allow(unsafe_code)]
pub fn keep_freed_memory() {
    // SAFETY: mallopt only tunes glibc's allocator; it is called before this
    // process allocates from other threads, and both settings are valid.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 512 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Runs `hcr watch`; returns the program's exit code.
///
/// # Errors
/// The folder or project file is unusable, or the program cannot be
/// started. Build errors are not errors: they are printed and watched.
pub fn watch(cfg: &WatchConfig, log: &mut dyn Write) -> anyhow::Result<i32> {
    keep_freed_memory();
    if !cfg.dir.is_dir() {
        bail!("{} is not a folder", cfg.dir.display());
    }
    let dir = cfg
        .dir
        .canonicalize()
        .with_context(|| format!("cannot open {}", cfg.dir.display()))?;
    let project = Project::load(&dir)?;
    let policy = cfg.auto_reload.unwrap_or(project.auto_reload);
    let out = dir.join(OUT_DIR);
    std::fs::create_dir_all(obj_dir(&dir))
        .and_then(|()| std::fs::create_dir_all(out.join("include")))
        .with_context(|| format!("cannot create {}", out.display()))?;
    let _ = std::fs::write(out.join(".gitignore"), "*\n");
    let header = out.join("include").join("hcr.h");
    if std::fs::read_to_string(&header).ok().as_deref() != Some(HCR_H) {
        std::fs::write(&header, HCR_H)
            .with_context(|| format!("cannot write {}", header.display()))?;
    }
    let mut builder = match cfg.build.clone().or_else(|| project.build.clone()) {
        Some(cmd) => {
            let Some(image) = cfg.image.clone().or_else(|| project.image.clone()) else {
                bail!(
                    "--build needs the path of the image the command writes: --image PATH (relative to {}) or image = \"...\" in {PROJECT_FILE}",
                    cfg.dir.display()
                );
            };
            let _ = writeln!(
                log,
                "hcr watch: building {} with `{cmd}`",
                cfg.dir.display()
            );
            Builder::Command(CommandBuild {
                image: dir.join(image),
                dir: dir.clone(),
                cmd,
                last_image: None,
            })
        }
        None if crate::nim_watch::is_nim_project(&dir) => {
            let _ = writeln!(
                log,
                "hcr watch: building the Nim project {} with nim c",
                cfg.dir.display()
            );
            Builder::Nim(Box::new(crate::nim_watch::NimBuild::new(&dir, &out)?))
        }
        None => {
            if cfg.image.is_some() {
                bail!(
                    "--image is for --build: without it, the image is {}/<root>.hcr",
                    out.display()
                );
            }
            let _ = writeln!(
                log,
                "hcr watch: building the modules of {} (root {})",
                cfg.dir.display(),
                project.root()
            );
            Builder::Modules(Box::new(ModuleBuild::new(&dir, project, &cfg.cc)))
        }
    };
    // The image path as the user sees it (argv[0] of the program).
    let image_arg = {
        let rel = builder
            .image()
            .strip_prefix(&dir)
            .unwrap_or(builder.image())
            .to_path_buf();
        cfg.dir.join(rel)
    };

    let (tx, rx) = mpsc::channel();
    let mut watcher = match start_watcher(&dir, tx) {
        Ok(w) => Some(w),
        Err(e) => {
            let _ = writeln!(
                log,
                "hcr watch: cannot watch {} for changes ({e}); checking every {} instead",
                dir.display(),
                ms(RESCAN)
            );
            None
        }
    };

    let track = builder.track();
    // What the build depends on outside the folder, and the folders
    // watched for it.
    let mut ext = builder.external();
    let mut watched = BTreeSet::new();
    if let Some(w) = watcher.as_mut() {
        watch_folders_of(w, &dir, &ext, &mut watched);
    }
    let mut snap = Snapshot::new();
    let mut sources = Sources::default();
    let mut child = ChildGuard(None);
    let mut started = false;
    let mut pending = true;
    let mut last_scan = Instant::now();
    loop {
        if pending {
            pending = false;
            last_scan = Instant::now();
            let new = sources.scan(&dir, track, &ext);
            let first = !started && snap.is_empty();
            if new != snap || first {
                let changed = changed_files(&snap, &new);
                if !first && !changed.is_empty() {
                    let _ = writeln!(log, "hcr watch: changed: {}", list(&changed));
                }
                let running = child.0.is_some();
                let outcome = builder.build(&new, running, log);
                snap = new;
                let now_ext = builder.external();
                if now_ext != ext {
                    // Learned from this build: hashed now (as it read
                    // them), and watched from now on.
                    let fresh = sources.scan(&dir, track, &now_ext);
                    snap.retain(|p, _| !outside(p));
                    snap.extend(fresh.into_iter().filter(|(p, _)| outside(p)));
                    builder.headers_seen(&snap);
                    if let Some(w) = watcher.as_mut() {
                        watch_folders_of(w, &dir, &now_ext, &mut watched);
                    }
                    ext = now_ext;
                }
                // Anything saved while that build ran is built right away.
                pending = true;
                if outcome.image_written && child.0.is_none() && (!started || cfg.restart) {
                    child.0 = Some(spawn_program(cfg, policy, &image_arg, log)?);
                    started = true;
                }
            }
        }
        if let Some(c) = &mut child.0 {
            if let Some(status) = c.try_wait().context("cannot wait for the program")? {
                child.0 = None;
                let code = exit_code(status);
                if status.code().is_none() {
                    let _ = writeln!(log, "hcr watch: the program was killed ({status})");
                }
                if !cfg.restart {
                    return Ok(code);
                }
                let _ = writeln!(
                    log,
                    "hcr watch: the program ended ({status}); it starts again after the next successful build"
                );
            }
        }
        if pending {
            continue;
        }
        let event = match rx.recv_timeout(TICK) {
            Ok(e) => Some(e),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(TICK);
                None
            }
        };
        // The periodic re-check catches what the watcher missed; a change it
        // finds may be a save in progress, so it is debounced too.
        let missed = event.is_none() && last_scan.elapsed() >= RESCAN && {
            last_scan = Instant::now();
            sources.scan(&dir, track, &ext) != snap
        };
        if event.is_some() || missed {
            debounce(&rx, event.unwrap_or(FsEvent::Other));
            pending = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_file_parses() {
        let p = Project::parse(
            "# a game\nroot = \"game\"  # the root\ncflags = \"-O2  -g -DX=\\\"y\\\"\"\nldflags = \"-lz -L /opt/x -Llib -l m\"\nauto_reload = true\n\nbuild = \"make -j2\"\nimage = \"out/app.hcr\"\n",
        )
        .unwrap();
        assert_eq!(p.root(), "game");
        assert_eq!(p.cflags, ["-O2", "-g", "-DX=\"y\""]);
        assert_eq!(p.libraries, ["z", "m"]);
        assert_eq!(
            p.library_dirs,
            [PathBuf::from("/opt/x"), PathBuf::from("lib")]
        );
        assert_eq!(p.auto_reload, AutoReload::On);
        assert_eq!(p.build.as_deref(), Some("make -j2"));
        assert_eq!(p.image.as_deref(), Some(Path::new("out/app.hcr")));
        assert_eq!(Project::parse("").unwrap(), Project::default());
        assert_eq!(Project::parse("").unwrap().root(), "main");
        assert_eq!(
            Project::parse("auto_reload = \"auto\"")
                .unwrap()
                .auto_reload,
            AutoReload::Auto
        );
        assert_eq!(
            Project::parse("auto_reload = false").unwrap().auto_reload,
            AutoReload::Off
        );
    }

    #[test]
    fn project_file_errors_name_the_line() {
        for (text, want) in [
            ("root = \"a\"\nrot = \"b\"", "hcr.toml:2: unknown key `rot`"),
            ("root \"a\"", "hcr.toml:1: expected `key = value`"),
            ("root = a", "hcr.toml:1: root: expected a \"string\""),
            ("root = \"a", "unterminated string"),
            ("root = true", "root must be a \"string\""),
            (
                "auto_reload = \"yes\"",
                "auto_reload must be true, false or \"auto\"",
            ),
            ("root = \"a\" b", "unexpected `b`"),
            ("[section]", "expected `key = value`"),
        ] {
            let e = format!("{:#}", Project::parse(text).unwrap_err());
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn scan_tracks_modules_headers_and_project() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        for f in [
            "main.c",
            "a.h",
            "hcr.toml",
            "notes.txt",
            "sub/b.h",
            "sub/c.c",
            ".hidden/x.h",
            ".hcr/obj/y.c",
        ] {
            std::fs::create_dir_all(p.join(f).parent().unwrap()).unwrap();
            std::fs::write(p.join(f), f).unwrap();
        }
        let s = scan(p, Track::Modules);
        let names: Vec<String> = s.keys().map(|k| k.display().to_string()).collect();
        assert_eq!(names, ["a.h", "hcr.toml", "main.c", "sub/b.h"]);
        std::fs::write(p.join("Makefile"), "all:").unwrap();
        std::fs::create_dir_all(p.join("build")).unwrap();
        std::fs::write(p.join("build/CMakeCache.txt"), "").unwrap();
        std::fs::write(p.join("build/gen.c"), "").unwrap();
        let s = scan(p, Track::Command);
        let names: Vec<String> = s.keys().map(|k| k.display().to_string()).collect();
        assert_eq!(
            names,
            ["Makefile", "a.h", "hcr.toml", "main.c", "sub/b.h", "sub/c.c"]
        );
    }

    /// A scan reads only the files whose status changed, or that changed
    /// too shortly before they were hashed; every edit is seen.
    #[test]
    fn scans_read_only_files_whose_status_changed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        for f in ["a.c", "b.c", "c.h"] {
            std::fs::write(p.join(f), "int x = 1;").unwrap();
        }
        // Everything was just written: with the real window every scan
        // reads all three again.
        let mut racy = Sources::default();
        let first = racy.scan(p, Track::Modules, &Outside::default());
        assert_eq!((first.len(), racy.read), (3, 3));
        assert_eq!(racy.scan(p, Track::Modules, &Outside::default()), first);
        assert_eq!(racy.read, 3, "changed within the racy window: read again");
        // With no window, a file whose status is the same is not read.
        let mut s = Sources {
            racy: -1_000_000_000_000,
            ..Sources::default()
        };
        assert_eq!(s.scan(p, Track::Modules, &Outside::default()), first);
        assert_eq!(s.read, 3);
        assert_eq!(s.scan(p, Track::Modules, &Outside::default()), first);
        assert_eq!(s.read, 0, "nothing changed: nothing read");
        // An edit of the same length, a replacement by rename, a new file
        // and a removed one are all seen. (After a pause longer than a tick
        // of the file clock: without the racy window, an edit within the
        // same tick is exactly what this cache could miss.)
        std::thread::sleep(Duration::from_millis(50));
        std::fs::write(p.join("a.c"), "int x = 2;").unwrap();
        std::fs::write(p.join("new.c"), "int y = 2;").unwrap();
        std::fs::rename(p.join("new.c"), p.join("b.c")).unwrap();
        std::fs::write(p.join("d.c"), "").unwrap();
        std::fs::remove_file(p.join("c.h")).unwrap();
        let now = s.scan(p, Track::Modules, &Outside::default());
        assert_eq!(s.read, 3);
        assert_eq!(
            changed_files(&first, &now),
            [
                PathBuf::from("a.c"),
                "b.c".into(),
                "c.h".into(),
                "d.c".into()
            ]
        );
        assert_eq!(
            now,
            scan(p, Track::Modules),
            "the same as a scan from scratch"
        );
    }

    #[test]
    fn dependency_files_name_the_headers_a_module_read() {
        let d = "/* */\n.hcr/obj/world.o.tmp: world.c demo.h ../include/a\\ b.h \\\n \
                 sub/../../lib/x.h ./y.h /abs/inc/z$$.h .hcr/include/hcr.h\n";
        assert_eq!(
            depfile_inputs(d.trim_start_matches("/* */\n")),
            [
                "world.c",
                "demo.h",
                "../include/a b.h",
                "../lib/x.h",
                "y.h",
                "/abs/inc/z$.h",
                ".hcr/include/hcr.h"
            ]
            .map(PathBuf::from)
        );
        assert!(depfile_inputs("garbage").is_empty());
        let flags: Vec<String> = [
            "-O2",
            "-I",
            "../inc",
            "-I/abs/x/",
            "-iquote",
            "q/../../r",
            "-Wall",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            include_dirs(&flags),
            ["../inc", "/abs/x", "../r"].map(PathBuf::from)
        );
        let outs: Vec<bool> = ["../lib/x.h", "y.h", "/abs/z.h", ".hcr/include/hcr.h"]
            .iter()
            .map(|p| outside(Path::new(p)))
            .collect();
        assert_eq!(outs, [true, false, true, false]);
    }

    #[test]
    fn changes_are_by_content() {
        let mut a = Snapshot::new();
        a.insert("x.c".into(), 1);
        a.insert("y.c".into(), 2);
        let mut b = a.clone();
        assert!(changed_files(&a, &b).is_empty());
        b.insert("x.c".into(), 3);
        b.remove(Path::new("y.c"));
        b.insert("z.c".into(), 4);
        assert_eq!(
            changed_files(&a, &b),
            [PathBuf::from("x.c"), "y.c".into(), "z.c".into()]
        );
    }
}
