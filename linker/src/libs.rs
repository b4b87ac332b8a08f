//! Host libraries: `-l NAME` / `-L DIR` found the way `cc` finds them, and
//! the check that every host symbol some library defines.
//!
//! A module may call what a normal `cc` link of the program gives it with no
//! flag: libc, libm, libpthread, libdl, librt, and for C++ libstdc++ and
//! libgcc_s (the runtime loads these itself). Further libraries are named
//! with `-l`; a shared one is recorded in the manifest ([`SharedLib`]) and
//! loaded by the runtime before any module, as `DT_NEEDED` is by `ld.so`; a
//! static one (`libNAME.a`, when no `libNAME.so` is found first in the same
//! directory) is linked in like any archive input.
//!
//! The symbol check only warns: a host program that embeds the runtime may
//! define symbols hcr-link cannot know of. It looks each host symbol up in
//! the libraries' own hash tables (`DT_GNU_HASH`), so it costs a lookup per
//! host symbol, not a read of every library's symbol table.

use std::path::{Path, PathBuf};

use object::elf;
use object::read::elf::{Dyn as _, FileHeader as _, Sym as _};
use object::{Endianness, FileKind};

use crate::input::FileKey;
use crate::Diagnostic;

/// A shared library the image needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedLib {
    /// What the user wrote after `-l`.
    pub request: String,
    /// Its `DT_SONAME` (else its file name).
    pub soname: String,
    /// Where it was found.
    pub path: PathBuf,
}

/// `-l` requests resolved: shared libraries to record, archives to link.
#[derive(Clone, Debug, Default)]
pub struct Resolved {
    /// Recorded in the manifest, loaded by the runtime.
    pub shared: Vec<SharedLib>,
    /// Linked as archive inputs.
    pub archives: Vec<PathBuf>,
    /// Every path looked at to find them, with the version of the file
    /// there when it was looked at (`None`: none), linker scripts and
    /// libraries read included: a file added at one, or one of them changed,
    /// may change what the same requests find.
    pub probed: Vec<(PathBuf, Option<FileKey>)>,
}

/// The directories `cc` searches after the `-L` ones on this platform.
pub const SYSTEM_DIRS: &[&str] = &[
    "/usr/local/lib/x86_64-linux-gnu",
    "/usr/local/lib",
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

/// The libraries the runtime makes available with no flag, by soname.
pub const DEFAULT_LIBRARIES: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libgcc_s.so.1",
    "libstdc++.so.6",
    "ld-linux-x86-64.so.2",
];

/// Finds every `-l` request in `dirs` (the `-L` directories, in order), then
/// in the system directories. `Err` lists each library not found, with the
/// directories searched.
pub fn resolve(requests: &[String], dirs: &[PathBuf]) -> Result<Resolved, Vec<Diagnostic>> {
    let mut out = Resolved::default();
    let mut missing = Vec::new();
    let search: Vec<PathBuf> = dirs
        .iter()
        .cloned()
        .chain(SYSTEM_DIRS.iter().map(PathBuf::from))
        .collect();
    for req in requests {
        // Libraries of the compiler itself (libgomp, libatomic, libasan and
        // the development links of libstdc++ and libgcc_s live in gcc's own
        // directory): searched last, as `cc -lNAME` finds them.
        let found = find(req, &search, &mut out.probed)
            .or_else(|| find(req, compiler_dirs(), &mut out.probed));
        match found {
            Some(Found::Archive(p)) => {
                if !out.archives.contains(&p) {
                    out.archives.push(p);
                }
            }
            Some(Found::Shared(path)) => {
                match shared_lib(req, &path, &search, 0, &mut out.probed) {
                    Ok(found) => {
                        for lib in found.shared {
                            if !out.shared.iter().any(|l| l.soname == lib.soname) {
                                out.shared.push(lib);
                            }
                        }
                        for a in found.archives {
                            if !out.archives.contains(&a) {
                                out.archives.push(a);
                            }
                        }
                    }
                    Err(e) => missing.push(Diagnostic {
                        file: format!("-l {req}"),
                        module: String::new(),
                        symbol: None,
                        message: format!("{}: {e}", path.display()),
                        help: "name a shared object (.so) or an archive (.a)".into(),
                    }),
                }
            }
            None => missing.push(Diagnostic {
                file: format!("-l {req}"),
                module: String::new(),
                symbol: None,
                message: format!(
                    "library not found (searched {}, then the compiler's own library directories)",
                    search
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                help: format!(
                    "install lib{req} (its -dev package), or add its directory with -L DIR"
                ),
            }),
        }
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(missing)
    }
}

/// The compiler's library directories (`$CC -print-search-dirs`, `cc` by
/// default), asked once and only when a library is not found elsewhere;
/// none when there is no compiler.
fn compiler_dirs() -> &'static [PathBuf] {
    static DIRS: std::sync::OnceLock<Vec<PathBuf>> = std::sync::OnceLock::new();
    DIRS.get_or_init(|| {
        let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
        let Ok(out) = std::process::Command::new(cc)
            .arg("-print-search-dirs")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
        else {
            return Vec::new();
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let Some(list) = text.lines().find_map(|l| l.strip_prefix("libraries: =")) else {
            return Vec::new();
        };
        let mut dirs: Vec<PathBuf> = Vec::new();
        for d in list.split(':').filter(|d| !d.is_empty()) {
            let d = PathBuf::from(d);
            if d.is_dir() && !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        dirs
    })
}

enum Found {
    Shared(PathBuf),
    Archive(PathBuf),
}

impl Found {
    /// An archive by its `.a` name, else a shared library (or a script).
    fn by_name(p: PathBuf) -> Found {
        match p.extension().is_some_and(|e| e == "a") {
            true => Found::Archive(p),
            false => Found::Shared(p),
        }
    }
}

/// `p` when a regular file is there; the path and the version of what is
/// there (if anything) go to `probed` either way.
fn probe(p: PathBuf, probed: &mut Vec<(PathBuf, Option<FileKey>)>) -> Option<PathBuf> {
    let meta = std::fs::metadata(&p).ok();
    let there = meta.as_ref().is_some_and(std::fs::Metadata::is_file);
    probed.push((p.clone(), meta.as_ref().map(FileKey::of)));
    there.then_some(p)
}

/// `-lNAME`: `libNAME.so`, else `libNAME.a`, directory by directory (as
/// `ld` does); `-l:FILE`: exactly `FILE`. Each path looked at goes to
/// `probed`.
fn find(
    req: &str,
    dirs: &[PathBuf],
    probed: &mut Vec<(PathBuf, Option<FileKey>)>,
) -> Option<Found> {
    if let Some(file) = req.strip_prefix(':') {
        return dirs
            .iter()
            .find_map(|d| probe(d.join(file), probed))
            .map(Found::by_name);
    }
    for d in dirs {
        if let Some(so) = probe(d.join(format!("lib{req}.so")), probed) {
            return Some(Found::Shared(so));
        }
        if let Some(a) = probe(d.join(format!("lib{req}.a")), probed) {
            return Some(Found::Archive(a));
        }
    }
    None
}

/// Reads a shared library's soname; follows a GNU ld script to what it
/// names, as `ld` does: Debian's `libm.so` is `GROUP (
/// /lib/x86_64-linux-gnu/libm.so.6 … )`, `libncursesw.so` is `INPUT(
/// libncursesw.so.6 -ltinfo )` (a file name searched beside the script and
/// in the library directories, and another `-l`), `libgcc_s.so` is
/// `GROUP ( libgcc_s.so.1 -lgcc )` (an archive). `AS_NEEDED ( … )` lists
/// libraries `ld` adds only when they are used: they are left out.
fn shared_lib(
    req: &str,
    path: &Path,
    search: &[PathBuf],
    depth: u32,
    probed: &mut Vec<(PathBuf, Option<FileKey>)>,
) -> Result<Resolved, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    if bytes.starts_with(b"\x7fELF") {
        let soname = match soname(&bytes)? {
            Some(s) => s,
            None => path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        return Ok(Resolved {
            shared: vec![SharedLib {
                request: req.to_string(),
                soname,
                path,
            }],
            archives: Vec::new(),
            probed: Vec::new(),
        });
    }
    let not_a_library = "neither a shared object nor a linker script naming one";
    let names = script_inputs(&bytes).ok_or(not_a_library)?;
    if depth >= 4 {
        return Err("linker scripts naming each other too deeply".into());
    }
    let here = path.parent().map(Path::to_path_buf);
    let mut out = Resolved::default();
    for name in &names {
        let found = if let Some(lib) = name.strip_prefix("-l") {
            find(lib, search, probed).or_else(|| find(lib, compiler_dirs(), probed))
        } else {
            let p = Path::new(name);
            match p.is_absolute() {
                true => probe(p.to_path_buf(), probed),
                false => here
                    .iter()
                    .chain(search)
                    .find_map(|d| probe(d.join(p), probed)),
            }
            .map(Found::by_name)
        };
        match found {
            Some(Found::Shared(p)) => {
                let more = shared_lib(req, &p, search, depth + 1, probed)?;
                out.shared.extend(more.shared);
                out.archives.extend(more.archives);
            }
            Some(Found::Archive(a)) => out.archives.push(a),
            None => return Err(format!("names {name}, which is not found")),
        }
    }
    if out.shared.is_empty() && out.archives.is_empty() {
        return Err(not_a_library.into());
    }
    Ok(out)
}

/// The files and `-l` names an ld script's `INPUT ( … )` and `GROUP ( … )`
/// list (comments out, `AS_NEEDED ( … )` left out); `None` when the text is
/// not a script that names any.
fn script_inputs(text: &[u8]) -> Option<Vec<String>> {
    let text = std::str::from_utf8(text).ok()?;
    let mut clean = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("/*") {
        clean.push_str(&rest[..i]);
        rest = rest[i..].find("*/").map_or("", |j| &rest[i + j + 2..]);
    }
    clean.push_str(rest);
    // Tokens, with parentheses as tokens of their own.
    let spaced = clean
        .replace('(', " ( ")
        .replace(')', " ) ")
        .replace(',', " ");
    let mut stack: Vec<&str> = Vec::new();
    let mut last_word = "";
    let mut out = Vec::new();
    for tok in spaced.split_whitespace() {
        match tok {
            "(" => stack.push(last_word),
            ")" => {
                stack.pop();
            }
            word => {
                let listing = stack
                    .last()
                    .is_some_and(|c| matches!(*c, "INPUT" | "GROUP"));
                let command = word.chars().all(|c| c.is_ascii_uppercase() || c == '_');
                if listing && !command {
                    out.push(word.to_string());
                }
            }
        }
        last_word = tok;
    }
    (!out.is_empty()).then_some(out)
}

type Elf = elf::FileHeader64<Endianness>;

fn soname(bytes: &[u8]) -> Result<Option<String>, String> {
    if FileKind::parse(bytes) != Ok(FileKind::Elf64) {
        return Err("not a 64-bit ELF shared object".into());
    }
    let hdr = Elf::parse(bytes).map_err(|e| e.to_string())?;
    let endian = hdr.endian().map_err(|e| e.to_string())?;
    if hdr.e_type(endian) != elf::ET_DYN {
        return Err("not a shared object".into());
    }
    let sections = hdr.sections(endian, bytes).map_err(|e| e.to_string())?;
    if let Some((dyns, link)) = sections.dynamic(endian, bytes).map_err(|e| e.to_string())? {
        let strings = sections
            .strings(endian, bytes, link)
            .map_err(|e| e.to_string())?;
        for d in dyns {
            if d.tag(endian) == elf::DT_SONAME {
                let off = u32::try_from(d.d_val(endian)).map_err(|_| "bad DT_SONAME")?;
                let name = strings.get(off).map_err(|_| "bad DT_SONAME")?;
                return Ok(Some(String::from_utf8_lossy(name).into_owned()));
            }
        }
    }
    Ok(None)
}

/// Which of `names` no library defines: the default libraries (those
/// installed) and `shared`, searched in that order; each library is mapped
/// and parsed once, and the search stops as soon as every name is found
/// (most programs need nothing beyond libc).
pub fn undefined_in_libraries(names: &[&str], shared: &[SharedLib]) -> Vec<bool> {
    let mut missing = vec![true; names.len()];
    let mut left = names.len();
    let defaults = DEFAULT_LIBRARIES.iter().filter_map(|so| {
        SYSTEM_DIRS
            .iter()
            .map(|d| Path::new(d).join(so))
            .find(|p| p.is_file())
    });
    for path in defaults.chain(shared.iter().map(|l| l.path.clone())) {
        if left == 0 {
            break;
        }
        let Ok(lib) = crate::input::map_input(&path) else {
            continue;
        };
        let found = defines_each(lib.bytes.as_slice(), names, &missing);
        for (i, f) in found.into_iter().enumerate() {
            if f && missing[i] {
                missing[i] = false;
                left -= 1;
            }
        }
    }
    missing
}

/// For each name still `wanted`, whether the shared object `bytes` defines
/// it (a defined dynamic symbol, found through its hash table). A library
/// that cannot be read defines everything: a warning must never be wrong.
fn defines_each(bytes: &[u8], names: &[&str], wanted: &[bool]) -> Vec<bool> {
    let all = || vec![true; names.len()];
    let Ok(hdr) = Elf::parse(bytes) else {
        return all();
    };
    let Ok(endian) = hdr.endian() else {
        return all();
    };
    let Ok(sections) = hdr.sections(endian, bytes) else {
        return all();
    };
    let Ok(symbols) = sections.symbols(endian, bytes, elf::SHT_DYNSYM) else {
        return all();
    };
    // Any version counts: the question is only whether the library
    // defines the name at all.
    let versions = object::read::elf::VersionTable::default();
    let gnu = sections.gnu_hash(endian, bytes).ok().flatten();
    let sysv = sections.hash(endian, bytes).ok().flatten();
    if gnu.is_none() && sysv.is_none() {
        return all();
    }
    names
        .iter()
        .zip(wanted)
        .map(|(name, &want)| {
            if !want {
                return false;
            }
            // `name@VERSION` (an object's `.symver`): the name is looked
            // up, any version.
            let name = name.split('@').next().unwrap_or(name).as_bytes();
            let hit = match (&gnu, &sysv) {
                (Some((t, _)), _) => {
                    t.find(endian, name, elf::gnu_hash(name), None, &symbols, &versions)
                }
                (None, Some((t, _))) => {
                    t.find(endian, name, elf::hash(name), None, &symbols, &versions)
                }
                (None, None) => None,
            };
            hit.is_some_and(|(_, s)| s.st_shndx(endian) != elf::SHN_UNDEF)
        })
        .collect()
}

/// Names the runtime itself resolves: its C API, a few process-wide
/// cells, and what glibc keeps in libc_nonshared.a (linked into each
/// executable, not exported by libc.so).
pub fn runtime_provides(name: &str) -> bool {
    name.starts_with("hcr_")
        || matches!(
            name,
            "__dso_handle" | "atexit" | "at_quick_exit" | "pthread_atfork" | "__pthread_atfork"
        )
}
