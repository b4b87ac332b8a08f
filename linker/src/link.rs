//! The link passes, in order. Each pass is a flat step with its reason; the
//! per-module work inside a pass runs in parallel (rayon).

use rustc_hash::FxHashMap as HashMap;
use std::path::Path;

use hcr_image::{
    Fixup, FixupKind, Function, HostId, HostSymbol, Layout, Library, Manifest, Module, ModuleId,
    Object, PlanStats, Span, TargetClass, PAGE_SIZE,
};
use rayon::prelude::*;

use crate::arch::x86_64::{self as x86, *};
use crate::error::{Diagnostic, Diags, LinkError};
use crate::input::MappedInput;
use crate::libs::SharedLib;
use crate::parse::{parse_object, ObjFile, SecKind, Shndx, Sym};
use crate::{LinkConfig, LinkOutput};

mod tls;

/// A function of one module.
struct FnDef<'d> {
    sec: u32,
    value: u64,
    size: u64,
    name: &'d str,
    global: bool,
}

/// A writable object of one module: a data section, or a COMMON symbol.
struct ObjDef<'d> {
    sec: Option<u32>,
    name: &'d str,
    size: u64,
    align: u64,
    global: bool,
    tls: bool,
}

/// A module after parsing, with its ids and layout.
pub(crate) struct Mod<'d> {
    pub obj: ObjFile<'d>,
    pub hash: u64,
    fn_base: u32,
    funcs: Vec<FnDef<'d>>,
    /// Functions by section, `(offset, index in funcs)`: those of section
    /// `s` are `sec_funcs[sec_func_at[s]..sec_func_at[s + 1]]` (usually one).
    sec_funcs: Vec<(u64, u32)>,
    sec_func_at: Vec<u32>,
    obj_base: u32,
    objs: Vec<ObjDef<'d>>,
    /// Global object id of each data section.
    sec_obj: Vec<Option<u32>>,
    /// Global object id of each COMMON symbol this module owns.
    common_obj: HashMap<u32, u32>,
    /// Resolved target of each symbol.
    tgt: Vec<Tgt>,
    pub imports: Vec<u32>,
    /// Offset of each loaded section in its region (text/rodata/eh/init).
    pub sec_off: Vec<u64>,
    got: Vec<GotKey>,
    got_index: HashMap<GotKey, u32>,
    plt: Vec<u32>,
    plt_index: HashMap<u32, u32>,
    /// Relocation classes from the scan (see `ScanOut::classes`).
    classes: Vec<Option<(Calc, S)>>,
    sizes: RegionSizes,
    pub bases: RegionSizes,
    undefined: Vec<u32>,
    /// For each symbol: true when it is the definition the image uses.
    own_def: Vec<bool>,
    /// For each global symbol: the `(module, symbol)` of the definition in
    /// use ([`NO_DEF`] for locals and names no module defines).
    pub global_def: Vec<(u32, u32)>,
    /// Host index of the TLS descriptor resolver (when a module uses one).
    tlsdesc_host: u32,
}

impl Mod<'_> {
    pub(crate) fn plt_at(&self) -> u64 {
        self.sizes.plt_at
    }
    pub(crate) fn got_at(&self) -> u64 {
        self.sizes.got_at
    }
    pub(crate) fn bases_plt_len(&self) -> u64 {
        self.plt.len() as u64 * PLT_STUB_SIZE
    }
    pub(crate) fn bases_got_len(&self) -> u64 {
        self.got.len() as u64 * 8
    }
    /// The host symbol (index in the manifest's host list) symbol `si`
    /// resolves to, if any.
    pub(crate) fn host_of(&self, si: usize) -> Option<u32> {
        match self.tgt.get(si) {
            Some(Tgt::Host(h)) => Some(*h),
            _ => None,
        }
    }
    /// True when global symbol `si` of this module is the definition in use.
    pub(crate) fn is_own_definition(&self, si: usize) -> bool {
        self.own_def.get(si).copied().unwrap_or(false)
    }
    /// Where symbol `si` of this module lies, for a debug section's
    /// reference to it (see `debug.rs`).
    pub(crate) fn debug_place(&self, mods: &[Mod<'_>], mi: u32, si: usize) -> DebugPlace {
        match self.tgt.get(si) {
            Some(&Tgt::Loc { m, sec, off, .. }) => {
                let tm = &mods[m as usize];
                match tm.obj.sections[sec as usize].kind {
                    SecKind::Data => match tm.sec_obj[sec as usize] {
                        Some(g) => DebugPlace::Object(g, off),
                        None => DebugPlace::None,
                    },
                    SecKind::Debug if m == mi => DebugPlace::Debug(sec, off),
                    _ => match sec_area_offset(tm, sec as usize) {
                        Some(a) => DebugPlace::Area(a + off),
                        None => DebugPlace::None,
                    },
                }
            }
            Some(&Tgt::Common(g)) => DebugPlace::Object(g, 0),
            Some(&Tgt::Abs(v)) => DebugPlace::Abs(v),
            _ => DebugPlace::None,
        }
    }
}

/// Where a debug section's reference points.
pub(crate) enum DebugPlace {
    /// An area offset (code, read-only data, unwind tables).
    Area(u64),
    /// Object id and offset inside it.
    Object(u32, u64),
    /// A section of the same module and the offset in it.
    Debug(u32, u64),
    /// An absolute value.
    Abs(u64),
    /// Nothing loaded (discarded, host, thread-local): the field becomes 0.
    None,
}

/// Sizes (before layout) or bases (after) of a module's four regions.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct RegionSizes {
    pub text: u64,
    pub rodata: u64,
    pub eh: u64,
    pub init: u64,
    text_align: u64,
    rodata_align: u64,
    init_align: u64,
    /// Where the stubs start (text) and the GOT starts (rodata), module-relative.
    pub plt_at: u64,
    pub got_at: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tgt {
    Null,
    Loc {
        m: u32,
        sec: u32,
        off: u64,
        section_sym: bool,
    },
    Host(u32),
    Abs(u64),
    Common(u32),
    /// In a COMDAT section another module provides; only `.eh_frame` may
    /// refer to it (the FDE is pointed at a place no code runs).
    Discarded,
}

/// The symbol C++ code passes to `__cxa_atexit` to name its shared object;
/// hidden, so compilers reach it PC-relative even under -fPIC. The runtime
/// defines it inside the window (one permanent address for every image, so
/// destructors registered by any load run at shutdown), which keeps it in
/// reach.
const DSO_HANDLE: &str = "__dso_handle";

/// The `S` of one relocation after classification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum S {
    Area {
        m: u32,
        sec: u32,
        off: u64,
    },
    /// A function's permanent address; `delta` is added to the addend (a
    /// reference through a section symbol names the function's start
    /// indirectly).
    Func(u32, i64),
    Obj(u32, u64),
    Host(u32),
    Abs(u64),
    Got(GotKey),
    Plt(u32),
    EhEnd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum GotKey {
    Area {
        m: u32,
        sec: u32,
        off: u64,
    },
    Func(u32),
    Obj(u32, u64),
    Host(u32),
    Abs(u64),
    /// TLS pairs (`link/tls.rs`): `tls_index` of a variable, of the block
    /// (local dynamic), and TLS descriptors; each first word is followed by
    /// its second.
    TlsGd(u32, u64),
    TlsGdOff(u32, u64),
    TlsLd,
    TlsLdOff,
    TlsDesc(u32, u64),
    TlsDescArg(u32, u64),
    TlsDescBase,
    TlsDescBaseArg,
}

/// How a relocation's value is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Calc {
    Abs64,
    Pc32,
    Pc64,
    Abs32,
    Abs32S,
    Size32,
    Size64,
    /// `GOT + A - P` (large model: the module's GOT base, PC-relative).
    GotPc32,
    GotPc64,
    /// `G + A`: offset of S's GOT entry from the GOT base.
    GotEntry32,
    GotEntry64,
    /// `S + A - GOT` (`GOTOFF64`, and `PLTOFF64` with S a callable address).
    GotOff64,
}

struct GlobalDef {
    m: u32,
    sym: u32,
    strength: u8,
}

const STRONG: u8 = 2;
const COMMON: u8 = 1;
const WEAK: u8 = 0;

/// Logs how long each pass took when `--timings` is on.
pub(crate) struct Timer {
    on: bool,
    last: std::time::Instant,
}

impl Timer {
    /// Starts timing; prints nothing unless `on`.
    pub(crate) fn new(on: bool) -> Timer {
        Timer {
            on,
            last: std::time::Instant::now(),
        }
    }

    pub(crate) fn lap(&mut self, pass: &str) {
        if self.on {
            let now = std::time::Instant::now();
            eprintln!(
                "hcr-link: {pass:<28} {:>8.2} ms",
                (now - self.last).as_secs_f64() * 1e3
            );
            self.last = now;
        }
    }
}

pub(crate) fn link(
    config: &LinkConfig,
    inputs: &[&MappedInput],
    libs: &[SharedLib],
    sink: &mut dyn crate::input::Sink,
    timer: &mut Timer,
) -> Result<LinkOutput, LinkError> {
    // 1. Parse every object, pull archive members that define what is
    //    referenced: the module list, in command-line order.
    let (mut mods, mut diags) = load_modules(inputs)?;

    timer.lap("parse");
    // 2. COMDAT: the first module with a group keeps it; later copies are
    //    discarded (inline functions, template instances).
    dedup_comdats(&mut mods);

    timer.lap("comdat");
    // 3. Functions and writable objects get their ids, module by module.
    collect_definitions(&mut mods, &mut diags);

    timer.lap("definitions");
    // 4. Global symbols: one definition per name; duplicates are errors.
    let globals = build_global_table(&mods, &mut diags);
    // Problems so far do not stop the scan below: one run reports them all.
    let root = match &config.root {
        Some(r) => mods
            .iter()
            .position(|m| m.obj.name == *r)
            .ok_or_else(|| LinkError::UnknownRoot(r.clone()))? as u32,
        None => 0,
    };

    timer.lap("global symbols");
    // 5. Host symbols: what no module defines is left to the host.
    let hosts = collect_hosts(&mods, &globals);
    let host_index: HashMap<&str, u32> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.name, i as u32))
        .collect();

    timer.lap("host symbols");
    // 6. Resolve every symbol of every module; imports follow.
    let resolved: Vec<Resolved> = mods
        .par_iter()
        .enumerate()
        .map(|(mi, m)| resolve_module(mi as u32, m, &mods, &globals, &host_index))
        .collect();
    if config.skip_free {
        std::mem::forget((globals, host_index));
    }
    for (m, r) in mods.iter_mut().zip(resolved) {
        m.tgt = r.tgt;
        m.imports = r.imports;
        m.undefined = r.undefined;
        m.own_def = r.own_def;
        m.global_def = r.global_def;
    }
    let reachable = reachability(&mods, root);
    let mut warnings = Vec::new();
    if let Some(w) = root_without_main(&mods, root) {
        warnings.push(w);
    }
    // Host symbols that no library defines: warned about (all at once), not
    // refused, since a host program embedding the runtime may define them.
    warnings.extend(unresolved_host_warnings(&mods, &reachable, &hosts, libs));

    timer.lap("resolve + import tree");
    // 7. Scan relocations: which GOT entries and PLT stubs each module needs,
    //    and every unsupported relocation (all reported).
    let scans: Vec<Result<ScanOut, Vec<Diagnostic>>> = mods
        .par_iter()
        .enumerate()
        .map(|(mi, _)| scan_module(mi as u32, &mods))
        .collect();
    for (m, s) in mods.iter_mut().zip(scans) {
        match s {
            Ok(s) => {
                m.got = s.got;
                m.got_index = s.got_index;
                m.plt = s.plt;
                m.plt_index = s.plt_index;
                m.classes = s.classes;
            }
            Err(d) => diags.extend(d),
        }
    }
    if !diags.is_empty() {
        return Err(LinkError::Inputs(diags));
    }
    let mut hosts = hosts;
    tls::add_resolver_host(&mut mods, &mut hosts);

    timer.lap("scan relocations");
    // 8. Layout: fixed before any byte is written.
    mods.par_iter_mut().for_each(layout_module);
    let layout = layout_area(&mut mods)?;

    timer.lap("layout");
    // 9. Copy sections into the area and init blob, applying relocations
    //    whose value is known now; the rest become the load plan's fixups.
    let applied = apply_all(&mods, &layout)?;

    timer.lap("copy + relocate");
    // 10. The ELF file, and the manifest (built while the modules render).
    let make_manifest = || build_manifest(&mods, root, &reachable, &layout, &hosts, libs, &applied);
    // Debug sections, relocated as far as the link can (tool-only).
    let debug = crate::debug::build(&mods);
    timer.lap("debug sections");
    let (size, manifest) = crate::write::write_image(
        &mods,
        &make_manifest,
        &applied,
        &debug,
        sink,
        timer,
        config.skip_free,
    )
    .map_err(|source| LinkError::Write {
        path: "image".into(),
        source,
    })?;
    let out = LinkOutput {
        modules: mods.len(),
        stats: manifest.stats,
        size,
        bytes: Vec::new(),
        warnings,
    };
    if config.skip_free {
        std::mem::forget((mods, manifest, applied, debug));
    }
    Ok(out)
}
/// Module name of an input: the file stem, without a source extension left
/// in it by build systems that name objects `main.c.o` (CMake).
fn stem(path: &str) -> String {
    let p = Path::new(path);
    let s = p
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string());
    for ext in [".c", ".cc", ".cpp", ".cxx", ".C"] {
        if let Some(base) = s.strip_suffix(ext).filter(|b| !b.is_empty()) {
            return base.to_string();
        }
    }
    s
}

/// Parses the inputs. Problems are returned to be reported with the rest.
fn load_modules<'d>(
    inputs: &[&'d MappedInput],
) -> Result<(Vec<Mod<'d>>, Vec<Diagnostic>), LinkError> {
    struct Cand<'d> {
        path: String,
        name: String,
        data: &'d [u8],
        mtime_ns: i64,
    }
    let mut objects = Vec::new();
    let mut archives: Vec<Vec<Cand<'_>>> = Vec::new();
    let mut diags = Diags::default();
    for inp in inputs {
        let data = inp.bytes.as_slice();
        let path = inp.path.display().to_string();
        if data.starts_with(b"!<arch>\n") || data.starts_with(b"!<thin>\n") {
            match object::read::archive::ArchiveFile::parse(data) {
                Ok(ar) => {
                    let mut members = Vec::new();
                    for mem in ar.members() {
                        match mem.and_then(|m| {
                            Ok((
                                String::from_utf8_lossy(m.name()).into_owned(),
                                m.data(data)?,
                            ))
                        }) {
                            Ok((mname, mdata)) => members.push(Cand {
                                path: format!("{path}({mname})"),
                                name: stem(&mname),
                                data: mdata,
                                mtime_ns: inp.mtime_ns,
                            }),
                            Err(e) => diags.push(
                                &path,
                                "",
                                None,
                                format!("malformed archive: {e}"),
                                "rebuild the archive with `ar rcs`",
                            ),
                        }
                    }
                    archives.push(members);
                }
                Err(e) => diags.push(
                    &path,
                    "",
                    None,
                    format!("malformed archive: {e}"),
                    "rebuild the archive with `ar rcs`",
                ),
            }
        } else {
            objects.push(Cand {
                path: path.clone(),
                name: stem(&path),
                data,
                mtime_ns: inp.mtime_ns,
            });
        }
    }
    fn parse_all<'d>(cands: Vec<Cand<'d>>) -> Vec<(Option<ObjFile<'d>>, Diags)> {
        cands
            .into_par_iter()
            .map(|c| {
                let mut d = Diags::default();
                let o = parse_object(&c.path, &c.name, c.data, c.mtime_ns, &mut d);
                (o, d)
            })
            .collect()
    }
    // An unreadable object is reported and left out; linking goes on so
    // that one run reports every problem (the image is not written).
    let mut mods: Vec<ObjFile<'_>> = Vec::new();
    for (o, d) in parse_all(objects) {
        diags.list.extend(d.list);
        mods.extend(o);
    }
    // Archive members: pull a member when it defines a symbol that is still
    // undefined, until nothing changes (each member at most once).
    if !archives.is_empty() {
        let mut parsed_archives: Vec<Vec<Option<ObjFile<'_>>>> = Vec::new();
        for members in archives {
            let mut v = Vec::new();
            for (o, d) in parse_all(members) {
                // Member diagnostics only matter if the member is pulled.
                if o.is_none() {
                    diags.list.extend(d.list);
                }
                v.push(o);
            }
            parsed_archives.push(v);
        }
        loop {
            let mut defined = std::collections::HashSet::new();
            let mut undefined = std::collections::HashSet::new();
            for m in &mods {
                for s in &m.symbols {
                    if s.is_global() {
                        if s.shndx == Shndx::Undef {
                            undefined.insert(s.name);
                        } else {
                            defined.insert(s.name);
                        }
                    }
                }
            }
            undefined.retain(|n| !defined.contains(n));
            let mut pulled = false;
            'outer: for members in parsed_archives.iter_mut() {
                for slot in members.iter_mut() {
                    let wants = slot.as_ref().is_some_and(|o| {
                        o.symbols.iter().any(|s| {
                            s.is_global() && s.shndx != Shndx::Undef && undefined.contains(s.name)
                        })
                    });
                    if wants {
                        if let Some(o) = slot.take() {
                            mods.push(o);
                            pulled = true;
                            break 'outer;
                        }
                    }
                }
            }
            if !pulled {
                break;
            }
        }
    }
    // Module names must be unique: they key everything the runtime keeps.
    let mut seen: HashMap<&str, &str> = HashMap::default();
    for m in &mods {
        if let Some(prev) = seen.insert(&m.name, &m.path) {
            diags.push(
                &m.path,
                &m.name,
                None,
                format!("module name '{}' is also the name of {prev}", m.name),
                "module names are file stems and must be unique; rename one of the files",
            );
        }
    }
    if mods.is_empty() {
        return Err(LinkError::Inputs(diags.list));
    }
    let mods = mods
        .into_par_iter()
        .map(|obj| Mod {
            hash: hcr_image::content_hash(obj.data),
            obj,
            fn_base: 0,
            funcs: Vec::new(),
            sec_funcs: Vec::new(),
            sec_func_at: Vec::new(),
            obj_base: 0,
            objs: Vec::new(),
            sec_obj: Vec::new(),
            common_obj: HashMap::default(),
            tgt: Vec::new(),
            imports: Vec::new(),
            sec_off: Vec::new(),
            got: Vec::new(),
            got_index: HashMap::default(),
            plt: Vec::new(),
            plt_index: HashMap::default(),
            classes: Vec::new(),
            sizes: RegionSizes::default(),
            bases: RegionSizes::default(),
            undefined: Vec::new(),
            own_def: Vec::new(),
            global_def: Vec::new(),
            tlsdesc_host: 0,
        })
        .collect();
    Ok((mods, diags.list))
}

fn dedup_comdats(mods: &mut [Mod<'_>]) {
    let mut owner: HashMap<String, usize> = HashMap::default();
    for (mi, m) in mods.iter_mut().enumerate() {
        let mut discard = Vec::new();
        for g in &m.obj.groups {
            match owner.get(g.signature) {
                Some(&o) if o != mi => discard.extend(g.members.iter().copied()),
                Some(_) => {}
                None => {
                    owner.insert(g.signature.to_string(), mi);
                }
            }
        }
        for s in discard {
            if let Some(sec) = m.obj.sections.get_mut(s as usize) {
                sec.kind = SecKind::Discarded;
            }
        }
    }
}

fn in_kept_section(m: &ObjFile<'_>, s: &Sym<'_>) -> bool {
    match s.shndx {
        Shndx::Sec(i) => m.sections[i as usize].kind != SecKind::Discarded,
        _ => true,
    }
}

type Definitions<'d> = (
    Vec<FnDef<'d>>,
    Vec<ObjDef<'d>>,
    Vec<Option<u32>>,
    Vec<(u32, usize)>,
    Diags,
    (Vec<(u64, u32)>, Vec<u32>),
);

/// Which module owns each COMMON symbol's storage: none when some module
/// defines the name for real, else the module with the largest COMMON
/// (the first on a tie), with the largest size and alignment of all.
fn common_owners<'a>(mods: &'a [Mod<'_>]) -> HashMap<&'a str, (usize, u64, u64)> {
    let mut owners: HashMap<&str, (usize, u64, u64)> = HashMap::default();
    for (mi, m) in mods.iter().enumerate() {
        for s in &m.obj.symbols {
            if s.shndx == Shndx::Common && s.is_global() {
                let e = owners.entry(s.name).or_insert((mi, s.size, s.value.max(1)));
                if s.size > e.1 {
                    e.0 = mi;
                    e.1 = s.size;
                }
                e.2 = e.2.max(s.value.max(1));
            }
        }
    }
    // Most programs have no COMMON symbols (gcc defaults to -fno-common):
    // then there is nothing to look up.
    if owners.is_empty() {
        return owners;
    }
    for m in mods {
        for s in &m.obj.symbols {
            if s.is_global()
                && matches!(s.shndx, Shndx::Sec(_) | Shndx::Abs)
                && owners.contains_key(s.name)
                && in_kept_section(&m.obj, s)
            {
                owners.remove(s.name);
            }
        }
    }
    owners
}

fn collect_definitions<'d>(mods: &mut [Mod<'d>], diags: &mut Vec<Diagnostic>) {
    let owners = common_owners(mods);
    let per: Vec<Definitions<'d>> = mods
        .par_iter()
        .enumerate()
        .map(|(mi, m)| {
            let o = &m.obj;
            let mut d = Diags::default();
            let mut funcs = Vec::new();
            let mut text_funcs = vec![0u32; o.sections.len()];
            let mut data_syms: Vec<Vec<usize>> = vec![Vec::new(); o.sections.len()];
            for (si, s) in o.symbols.iter().enumerate() {
                let Shndx::Sec(sec) = s.shndx else { continue };
                let kind = o.sections[sec as usize].kind;
                if s.typ == object::elf::STT_FUNC.0 && kind == SecKind::Text {
                    text_funcs[sec as usize] += 1;
                    // Global functions, and static functions with plain names
                    // (compiler clones such as `f.cold` or `f.constprop.0` are
                    // reached by branches only).
                    if s.is_global() || !s.name.contains('.') {
                        funcs.push(FnDef {
                            sec,
                            value: s.value,
                            size: s.size,
                            name: s.name,
                            global: s.is_global(),
                        });
                    }
                }
                if kind == SecKind::Data
                    && (s.typ == object::elf::STT_OBJECT.0 || s.typ == object::elf::STT_TLS.0 || s.typ == object::elf::STT_NOTYPE.0 && !s.name.is_empty() && !s.name.starts_with(".L"))
                {
                    data_syms[sec as usize].push(si);
                }
            }
            let mut objs = Vec::new();
            let mut sec_obj_local = vec![None; o.sections.len()];
            for (i, sec) in o.sections.iter().enumerate() {
                if sec.kind == SecKind::Text && text_funcs[i] > 1 && sec.name == ".text" {
                    d.push(
                        &o.path,
                        &o.name,
                        Some(sec.name),
                        format!("{} functions share one code section (built without -ffunction-sections)", text_funcs[i]),
                        "compile with -ffunction-sections so each function can be reloaded on its own",
                    );
                }
                if sec.kind != SecKind::Data {
                    continue;
                }
                let syms = &data_syms[i];
                if sec.size == 0 && syms.is_empty() {
                    continue; // empty `.data`/`.bss`: nothing to keep
                }
                if syms.len() > 1 {
                    d.push(
                        &o.path,
                        &o.name,
                        Some(sec.name),
                        format!("{} variables share one data section (built without -fdata-sections)", syms.len()),
                        "compile with -fdata-sections so every global keeps its own persistent storage",
                    );
                    continue;
                }
                let (name, global) = match syms.first() {
                    Some(&si) => (o.symbols[si].name, o.symbols[si].is_global()),
                    None => (sec.name, false),
                };
                sec_obj_local[i] = Some(objs.len() as u32);
                objs.push(ObjDef {
                    sec: Some(i as u32),
                    name,
                    size: sec.size,
                    align: sec.align,
                    global,
                    tls: sec.is_tls(),
                });
            }
            // COMMON storage: one object, in the owning module only.
            let mut commons = Vec::new();
            for (si, s) in o.symbols.iter().enumerate() {
                if s.shndx != Shndx::Common {
                    continue;
                }
                if let Some(&(_, size, align)) = owners.get(s.name).filter(|o| o.0 == mi) {
                    commons.push((si as u32, objs.len()));
                    objs.push(ObjDef {
                        sec: None,
                        name: s.name,
                        size,
                        align,
                        global: true,
                        tls: false,
                    });
                }
            }
            // What the image format cannot hold (ImageView::parse refuses
            // it): report it here rather than write an unloadable image.
            for od in &objs {
                if od.size > hcr_image::MAX_OBJECT_SIZE {
                    d.push(
                        &o.path,
                        &o.name,
                        Some(od.name),
                        format!("global of {} bytes: an image holds globals of at most 4 GiB", od.size),
                        "make it smaller, or allocate the memory at run time",
                    );
                }
                if !od.align.is_power_of_two() || od.align > 1 << 31 {
                    d.push(
                        &o.path,
                        &o.name,
                        Some(od.name),
                        format!("unsupported alignment {}", od.align),
                        "alignments are powers of two up to 2 GiB; rebuild the object",
                    );
                }
            }
            // Functions by section (a counting sort keeps symbol order).
            let mut at = vec![0u32; o.sections.len() + 1];
            for f in &funcs {
                at[f.sec as usize + 1] += 1;
            }
            for i in 0..o.sections.len() {
                at[i + 1] += at[i];
            }
            let mut next = at.clone();
            let mut flat = vec![(0u64, 0u32); funcs.len()];
            for (i, f) in funcs.iter().enumerate() {
                let p = &mut next[f.sec as usize];
                flat[*p as usize] = (f.value, i as u32);
                *p += 1;
            }
            (funcs, objs, sec_obj_local, commons, d, (flat, at))
        })
        .collect();
    let (mut fbase, mut obase) = (0u32, 0u32);
    for (m, (funcs, objs, sec_obj_local, commons, d, (flat, at))) in mods.iter_mut().zip(per) {
        diags.extend(d.list);
        m.fn_base = fbase;
        m.obj_base = obase;
        m.sec_funcs = flat;
        m.sec_func_at = at;
        m.sec_obj = sec_obj_local.iter().map(|o| o.map(|x| x + obase)).collect();
        m.common_obj = commons
            .iter()
            .map(|&(si, oi)| (si, obase + oi as u32))
            .collect();
        fbase += funcs.len() as u32;
        obase += objs.len() as u32;
        m.funcs = funcs;
        m.objs = objs;
    }
}

fn build_global_table<'a>(
    mods: &'a [Mod<'_>],
    diags: &mut Vec<Diagnostic>,
) -> HashMap<&'a str, GlobalDef> {
    let mut table: HashMap<&str, GlobalDef> = HashMap::default();
    let n: usize = mods
        .iter()
        .map(|m| {
            m.obj
                .symbols
                .iter()
                .filter(|s| s.is_global() && s.shndx != Shndx::Undef)
                .count()
        })
        .sum();
    table.reserve(n);
    for (mi, m) in mods.iter().enumerate() {
        for (si, s) in m.obj.symbols.iter().enumerate() {
            if !s.is_global() || s.shndx == Shndx::Undef || !in_kept_section(&m.obj, s) {
                continue;
            }
            let strength = match s.shndx {
                Shndx::Common => COMMON,
                _ if s.is_weak() => WEAK,
                _ => STRONG,
            };
            let def = GlobalDef {
                m: mi as u32,
                sym: si as u32,
                strength,
            };
            match table.get_mut(s.name) {
                None => {
                    table.insert(s.name, def);
                }
                Some(prev) => {
                    if prev.strength == STRONG && strength == STRONG {
                        let pm = &mods[prev.m as usize].obj;
                        diags.push(Diagnostic {
                            file: m.obj.path.clone(),
                            module: m.obj.name.clone(),
                            symbol: Some(s.name.to_string()),
                            message: format!("duplicate definition (first defined in {} (module {}))", pm.path, pm.name),
                            help: "keep one definition; make the other `static` if it is private to its module".into(),
                        });
                    } else if strength > prev.strength {
                        *prev = def;
                    } else if strength == COMMON && prev.strength == COMMON {
                        let prev_size = mods[prev.m as usize].obj.symbols[prev.sym as usize].size;
                        if s.size > prev_size {
                            *prev = def;
                        }
                    }
                }
            }
        }
    }
    table
}

/// A symbol left to the host: name and whether every reference is weak.
struct Host<'d> {
    name: &'d str,
    weak: bool,
}

fn collect_hosts<'d>(mods: &[Mod<'d>], globals: &HashMap<&str, GlobalDef>) -> Vec<Host<'d>> {
    let mut hosts: Vec<Host<'d>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::default();
    for m in mods {
        for s in &m.obj.symbols {
            let undefined_here = s.shndx == Shndx::Undef || !in_kept_section(&m.obj, s);
            if !s.is_global()
                || !undefined_here
                || s.name.is_empty()
                || s.name == "_GLOBAL_OFFSET_TABLE_"
                || s.name == tls::MODULE_BASE
                || globals.contains_key(s.name)
            {
                continue;
            }
            match index.get(s.name) {
                Some(&i) => hosts[i].weak &= s.is_weak(),
                None => {
                    index.insert(s.name, hosts.len());
                    hosts.push(Host {
                        name: s.name,
                        weak: s.is_weak(),
                    });
                }
            }
        }
    }
    hosts
}

/// A warning when the root module defines no `main` (what `hcr run` calls),
/// naming the modules that do.
fn root_without_main(mods: &[Mod<'_>], root: u32) -> Option<String> {
    let defines_main = |m: &Mod<'_>| m.funcs.iter().any(|f| f.global && f.name == "main");
    let r = &mods[root as usize];
    if defines_main(r) {
        return None;
    }
    let with: Vec<&str> = mods
        .iter()
        .filter(|m| defines_main(m))
        .map(|m| m.obj.name.as_str())
        .collect();
    Some(format!(
        "the root module {} defines no `main`, so `hcr run` cannot start the image (the root is the first input unless --root names another){}",
        r.obj.name,
        match with.as_slice() {
            [] => String::new(),
            [one] => format!("; module {one} defines main: link with --root {one}"),
            many => format!("; modules defining main: {}: link with --root MODULE", many.join(", ")),
        }
    ))
}

/// The identities of `m`'s gcc-numbered function statics (see
/// `identity.rs`), by object index; empty entries for every other object
/// (and an empty vector when the module has none).
fn static_identities(m: &Mod<'_>) -> Vec<crate::identity::Identity> {
    use crate::identity::{gcc_numbered, identities, Identity, Numbered};
    let mut of_sec: HashMap<u32, usize> = HashMap::default();
    let mut statics: Vec<Numbered<'_>> = Vec::new();
    for (oi, o) in m.objs.iter().enumerate() {
        if o.global {
            continue;
        }
        if let (Some(sec), Some((base, n))) = (o.sec, gcc_numbered(o.name)) {
            of_sec.insert(sec, statics.len());
            statics.push(Numbered {
                index: oi,
                base,
                n,
                owners: Vec::new(),
            });
        }
    }
    if statics.is_empty() {
        return Vec::new();
    }
    // Which functions' code refers to each static's section.
    for (si, sec) in m.obj.sections.iter().enumerate() {
        if sec.kind != SecKind::Text {
            continue;
        }
        let funcs = &m.sec_funcs[m.sec_func_at[si] as usize..m.sec_func_at[si + 1] as usize];
        let owner = match funcs.first() {
            Some(&(_, f)) => m.funcs[f as usize].name,
            None => sec.name,
        };
        for r in m.obj.relocs(sec) {
            if let Some(Shndx::Sec(t)) = m.obj.symbols.get(r.sym as usize).map(|s| s.shndx) {
                if let Some(&k) = of_sec.get(&t) {
                    statics[k].owners.push(owner);
                }
            }
        }
    }
    let mut out = vec![Identity::default(); m.objs.len()];
    for (oi, id) in identities(statics) {
        out[oi] = id;
    }
    out
}

/// One warning per module naming every host symbol it wants that no
/// library defines (the default libraries and `-l` ones), nor the runtime.
fn unresolved_host_warnings(
    mods: &[Mod<'_>],
    reachable: &[bool],
    hosts: &[Host<'_>],
    libs: &[SharedLib],
) -> Vec<String> {
    let wanted = |h: &Host<'_>| !h.weak && !crate::libs::runtime_provides(h.name);
    if !hosts.iter().any(wanted) {
        return Vec::new();
    }
    // Only what reachable modules want.
    let mut want = vec![false; hosts.len()];
    for (mi, m) in mods.iter().enumerate() {
        if reachable[mi] {
            for &h in &m.undefined {
                want[h as usize] |= wanted(&hosts[h as usize]);
            }
        }
    }
    let names: Vec<&str> = hosts
        .iter()
        .zip(&want)
        .filter(|(_, &w)| w)
        .map(|(h, _)| h.name)
        .collect();
    if names.is_empty() {
        return Vec::new();
    }
    let undefined = crate::libs::undefined_in_libraries(&names, libs);
    let mut missing = vec![false; hosts.len()];
    let mut k = 0;
    for (i, w) in want.iter().enumerate() {
        if *w {
            missing[i] = undefined[k];
            k += 1;
        }
    }
    let mut out = Vec::new();
    for (mi, m) in mods.iter().enumerate() {
        if !reachable[mi] {
            continue;
        }
        let names: Vec<&str> = m
            .undefined
            .iter()
            .filter(|&&h| missing[h as usize])
            .map(|&h| hosts[h as usize].name)
            .collect();
        if !names.is_empty() {
            out.push(format!(
                "module {}: undefined symbol{} {}: no module, library or the hcr runtime defines {} (add the library with -l NAME, or link the module that defines {}; a host program of your own may still provide {})",
                m.obj.name,
                if names.len() == 1 { "" } else { "s" },
                names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", "),
                if names.len() == 1 { "it" } else { "them" },
                if names.len() == 1 { "it" } else { "them" },
                if names.len() == 1 { "it" } else { "them" },
            ));
        }
    }
    out
}

struct Resolved {
    tgt: Vec<Tgt>,
    imports: Vec<u32>,
    undefined: Vec<u32>,
    own_def: Vec<bool>,
    global_def: Vec<(u32, u32)>,
}

/// `Mod::global_def` of a symbol that no module defines.
pub(crate) const NO_DEF: (u32, u32) = (u32::MAX, u32::MAX);

fn resolve_module(
    mi: u32,
    m: &Mod<'_>,
    mods: &[Mod<'_>],
    globals: &HashMap<&str, GlobalDef>,
    hosts: &HashMap<&str, u32>,
) -> Resolved {
    let o = &m.obj;
    let mut own_def = vec![false; o.symbols.len()];
    let mut global_def = vec![NO_DEF; o.symbols.len()];
    let mut imports = Vec::new();
    let mut undefined = Vec::new();
    let local = |mi: u32, mm: &Mod<'_>, si: u32| -> Tgt {
        let s = &mm.obj.symbols[si as usize];
        match s.shndx {
            Shndx::Undef => Tgt::Null,
            Shndx::Abs => Tgt::Abs(s.value),
            Shndx::Common => mm
                .common_obj
                .get(&si)
                .map_or(Tgt::Null, |&g| Tgt::Common(g)),
            Shndx::Sec(sec) => {
                if mm.obj.sections[sec as usize].kind == SecKind::Discarded {
                    Tgt::Discarded
                } else {
                    Tgt::Loc {
                        m: mi,
                        sec,
                        off: s.value,
                        section_sym: s.typ == object::elf::STT_SECTION.0,
                    }
                }
            }
        }
    };
    let tgt = o
        .symbols
        .iter()
        .enumerate()
        .map(|(si, s)| {
            if !s.is_global() {
                return local(mi, m, si as u32);
            }
            match globals.get(s.name) {
                Some(g) => {
                    global_def[si] = (g.m, g.sym);
                    if g.m != mi {
                        imports.push(g.m);
                    } else if g.sym == si as u32 {
                        own_def[si] = true;
                    }
                    local(g.m, &mods[g.m as usize], g.sym)
                }
                None => match hosts.get(s.name) {
                    Some(&h) => {
                        undefined.push(h);
                        Tgt::Host(h)
                    }
                    None => local(mi, m, si as u32),
                },
            }
        })
        .collect();
    imports.sort_unstable();
    imports.dedup();
    undefined.sort_unstable();
    undefined.dedup();
    Resolved {
        tgt,
        imports,
        undefined,
        own_def,
        global_def,
    }
}

fn reachability(mods: &[Mod<'_>], root: u32) -> Vec<bool> {
    let mut seen = vec![false; mods.len()];
    let mut stack = vec![root];
    seen[root as usize] = true;
    while let Some(m) = stack.pop() {
        for &d in &mods[m as usize].imports {
            if !seen[d as usize] {
                seen[d as usize] = true;
                stack.push(d);
            }
        }
    }
    seen
}

struct ScanOut {
    got: Vec<GotKey>,
    got_index: HashMap<GotKey, u32>,
    plt: Vec<u32>,
    plt_index: HashMap<u32, u32>,
    /// The classification of every relocation of the loaded sections, in
    /// section and relocation order, so the apply pass does not redo it.
    classes: Vec<Option<(Calc, S)>>,
}

/// Classifies one relocation: how its value is computed and what `S` is.
/// `None` for relocations that write nothing.
fn classify(
    mods: &[Mod<'_>],
    mi: u32,
    sec_idx: usize,
    r: &crate::parse::Rel,
) -> Result<Option<(Calc, S)>, (String, String)> {
    let m = &mods[mi as usize];
    let src = &m.obj.sections[sec_idx];
    let sym = &m.obj.symbols[r.sym as usize];
    let tgt = m.tgt[r.sym as usize];
    let unsupported = |what: &str, help: &str| {
        Err((
            format!("{what} ({})", x86::name(r.r_type)),
            help.to_string(),
        ))
    };
    if let Some(c) = tls::classify(mods, sym, tgt, r) {
        return c;
    }
    match r.r_type {
        R_NONE => return Ok(None),
        R_GOTPC32 => return Ok(Some((Calc::GotPc32, S::Abs(0)))),
        R_GOTPC64 => return Ok(Some((Calc::GotPc64, S::Abs(0)))),
        R_GOTOFF64 | R_GOT64 | R_GOTPCREL64 | R_PLTOFF64 | R_GOT32 => {}
        R_16 | R_PC16 | R_8 | R_PC8 => {
            return unsupported(
                "relocation type not supported",
                "build with -fPIC for x86-64",
            )
        }
        R_SIZE32 | R_SIZE64 => {
            let calc = if r.r_type == R_SIZE32 {
                Calc::Size32
            } else {
                Calc::Size64
            };
            return Ok(Some((calc, S::Abs(sym.size))));
        }
        R_64 | R_PC32 | R_PLT32 | R_GOTPCREL | R_GOTPCRELX | R_REX_GOTPCRELX | R_32 | R_32S
        | R_PC64 => {}
        _ => {
            return unsupported(
                "unsupported relocation type",
                "build with gcc or clang, -fPIC, for x86-64",
            )
        }
    }
    if matches!(r.r_type, R_32 | R_32S) && src.kind != SecKind::Skip {
        return unsupported(
            "absolute 32-bit relocation (the object was built without -fPIC)",
            "compile with -fPIC",
        );
    }
    let got = matches!(
        r.r_type,
        R_GOTPCREL | R_GOTPCRELX | R_REX_GOTPCRELX | R_GOT64 | R_GOT32 | R_GOTPCREL64
    );
    let calc = match r.r_type {
        R_64 => Calc::Abs64,
        R_PC64 | R_GOTPCREL64 => Calc::Pc64,
        R_32 => Calc::Abs32,
        R_32S => Calc::Abs32S,
        R_GOT64 => Calc::GotEntry64,
        R_GOT32 => Calc::GotEntry32,
        R_GOTOFF64 | R_PLTOFF64 => Calc::GotOff64,
        _ => Calc::Pc32,
    };
    let pc_rel = matches!(calc, Calc::Pc32 | Calc::Pc64);
    // An address operand (not a branch) that yields a symbol's address.
    let address_of = calc == Calc::Abs64 || r.r_type == R_GOTOFF64;
    let s = match tgt {
        Tgt::Null => {
            return Err((
                format!(
                    "relocation against a symbol with no definition ({})",
                    x86::name(r.r_type)
                ),
                "the object is malformed; rebuild it".into(),
            ))
        }
        Tgt::Abs(v) if got => S::Got(GotKey::Abs(v)),
        Tgt::Abs(v) => S::Abs(v),
        Tgt::Host(h) => {
            if got {
                S::Got(GotKey::Host(h))
            } else if r.r_type == R_PLT32 || r.r_type == R_PLTOFF64 {
                S::Plt(h)
            } else if (pc_rel || r.r_type == R_GOTOFF64) && sym.name != DSO_HANDLE {
                return Err((
                    format!("PC-relative reference to host symbol '{}' that the image cannot reach ({})", sym.name, x86::name(r.r_type)),
                    "compile with -fPIC so the host's data is reached through the GOT".into(),
                ));
            } else {
                S::Host(h)
            }
        }
        Tgt::Common(g) => {
            if got {
                S::Got(GotKey::Obj(g, 0))
            } else {
                S::Obj(g, 0)
            }
        }
        Tgt::Discarded => {
            if src.kind == SecKind::EhFrame {
                S::EhEnd
            } else {
                return Err((
                    format!("reference to a discarded COMDAT section via '{}'", sym.name),
                    "the object is inconsistent; rebuild it".into(),
                ));
            }
        }
        Tgt::Loc {
            m: tm,
            sec,
            off,
            section_sym,
        } => {
            let tm_mod = &mods[tm as usize];
            let tkind = tm_mod.obj.sections[sec as usize].kind;
            match tkind {
                SecKind::Text => {
                    let lo = tm_mod.sec_func_at[sec as usize] as usize;
                    let hi = tm_mod.sec_func_at[sec as usize + 1] as usize;
                    let in_sec = &tm_mod.sec_funcs[lo..hi];
                    let base = tm_mod.fn_base;
                    let fn_at = |o: u64| in_sec.iter().find(|f| f.0 == o).map(|f| base + f.1);
                    // The function this reference denotes, if it denotes the
                    // start of one.
                    let func = if !section_sym {
                        fn_at(off)
                    } else if got || address_of {
                        fn_at((off as i64).wrapping_add(if got { 0 } else { r.addend }) as u64)
                    } else {
                        // PC-relative through a section symbol: the operand
                        // address is off + A + 4 + (immediate bytes, 0..4).
                        let lo = (off as i64).saturating_add(r.addend).saturating_add(4);
                        in_sec
                            .iter()
                            .filter(|f| (f.0 as i64) >= lo && (f.0 as i64) <= lo.saturating_add(4))
                            .min_by_key(|f| f.0)
                            .map(|f| base + f.1)
                    };
                    let area = S::Area { m: tm, sec, off };
                    let via_func = |f: Option<u32>| match f {
                        Some(f) => {
                            let fd = &tm_mod.funcs[(f - tm_mod.fn_base) as usize];
                            S::Func(f, off as i64 - fd.value as i64)
                        }
                        None => area,
                    };
                    if got {
                        S::Got(match func {
                            Some(f) => GotKey::Func(f),
                            None => GotKey::Area { m: tm, sec, off },
                        })
                    } else if src.kind == SecKind::EhFrame {
                        area
                    } else if r.r_type == R_PLTOFF64 {
                        // A call through the GOT base: same module direct,
                        // other modules through the trampoline.
                        if tm == mi {
                            area
                        } else {
                            via_func(func.or_else(|| fn_at(off)))
                        }
                    } else if pc_rel && src.kind != SecKind::Text {
                        // Relative tables (jump tables, LSDA) stay in the image.
                        area
                    } else if pc_rel {
                        let branch = r.r_type == R_PLT32
                            || x86::is_branch_displacement(src.data, r.offset as usize);
                        if branch && tm == mi {
                            area
                        } else if branch {
                            via_func(func.or_else(|| fn_at(off)))
                        } else {
                            via_func(func)
                        }
                    } else {
                        via_func(func)
                    }
                }
                SecKind::Rodata | SecKind::EhFrame => {
                    let k = S::Area { m: tm, sec, off };
                    if got {
                        S::Got(GotKey::Area { m: tm, sec, off })
                    } else {
                        k
                    }
                }
                SecKind::Data => {
                    let Some(g) = tm_mod.sec_obj[sec as usize] else {
                        return Err((
                            format!(
                                "reference to '{}' in a data section that holds several variables",
                                sym.name
                            ),
                            "compile with -fdata-sections".into(),
                        ));
                    };
                    if got {
                        S::Got(GotKey::Obj(g, off))
                    } else {
                        S::Obj(g, off)
                    }
                }
                SecKind::Discarded => S::EhEnd,
                _ => {
                    return Err((
                        format!(
                            "reference to '{}' in section {} which is not loaded",
                            sym.name, tm_mod.obj.sections[sec as usize].name
                        ),
                        "only code, data and read-only data can be referenced".into(),
                    ))
                }
            }
        }
    };
    Ok(Some((calc, s)))
}

fn scan_module(mi: u32, mods: &[Mod<'_>]) -> Result<ScanOut, Vec<Diagnostic>> {
    let m = &mods[mi as usize];
    let mut out = ScanOut {
        got: Vec::new(),
        got_index: HashMap::default(),
        plt: Vec::new(),
        plt_index: HashMap::default(),
        classes: Vec::with_capacity(
            m.obj
                .sections
                .iter()
                .filter(|s| !matches!(s.kind, SecKind::Skip | SecKind::Discarded | SecKind::Debug))
                .map(|s| s.rel_len as usize)
                .sum(),
        ),
    };
    let mut d = Diags::default();
    for (si, sec) in m.obj.sections.iter().enumerate() {
        if matches!(
            sec.kind,
            SecKind::Skip | SecKind::Discarded | SecKind::Debug
        ) {
            continue;
        }
        for r in m.obj.relocs(sec) {
            let c = classify(mods, mi, si, r);
            out.classes.push(c.as_ref().ok().copied().flatten());
            match c {
                Ok(Some((_, s))) => {
                    let add_got = |k: GotKey, out: &mut ScanOut| {
                        if !out.got_index.contains_key(&k) {
                            for k in std::iter::once(k).chain(tls::pair_second(k)) {
                                out.got_index.insert(k, out.got.len() as u32);
                                out.got.push(k);
                            }
                        }
                    };
                    match s {
                        S::Got(k) => add_got(k, &mut out),
                        S::Plt(h) => {
                            add_got(GotKey::Host(h), &mut out);
                            if !out.plt_index.contains_key(&h) {
                                out.plt_index.insert(h, out.plt.len() as u32);
                                out.plt.push(h);
                            }
                        }
                        _ => {}
                    }
                }
                Ok(None) => {}
                Err((msg, help)) => {
                    let sym = &m.obj.symbols[r.sym as usize];
                    let name = if sym.typ == object::elf::STT_SECTION.0 {
                        format!("{}+{:#x}", sec.name, r.offset)
                    } else {
                        format!("{} (in {}+{:#x})", sym.name, sec.name, r.offset)
                    };
                    d.push(&m.obj.path, &m.obj.name, Some(&name), msg, help);
                }
            }
        }
        if sec.kind == SecKind::EhFrame && sec.size % 4 != 0 {
            d.push(
                &m.obj.path,
                &m.obj.name,
                Some(sec.name),
                "malformed .eh_frame (size not a multiple of 4)",
                "rebuild the object",
            );
        }
    }
    // Keep one diagnostic per distinct message and symbol name.
    d.list
        .dedup_by(|a, b| a.message == b.message && a.symbol == b.symbol);
    if d.list.is_empty() {
        Ok(out)
    } else {
        Err(d.list)
    }
}

fn align_up(x: u64, a: u64) -> u64 {
    let a = a.max(1);
    x.div_ceil(a) * a
}

fn layout_module(m: &mut Mod<'_>) {
    let mut sz = RegionSizes {
        text_align: 16,
        rodata_align: 8,
        init_align: 8,
        ..Default::default()
    };
    m.sec_off = vec![0; m.obj.sections.len()];
    for (i, sec) in m.obj.sections.iter().enumerate() {
        let (cursor, align_slot) = match sec.kind {
            SecKind::Text => (&mut sz.text, &mut sz.text_align),
            SecKind::Rodata => (&mut sz.rodata, &mut sz.rodata_align),
            SecKind::EhFrame => {
                // Contiguous: FDEs of all modules form one registered table.
                m.sec_off[i] = sz.eh;
                sz.eh += sec.size;
                continue;
            }
            SecKind::Data if !sec.nobits => (&mut sz.init, &mut sz.init_align),
            _ => continue,
        };
        *align_slot = (*align_slot).max(sec.align);
        *cursor = align_up(*cursor, sec.align);
        m.sec_off[i] = *cursor;
        *cursor += sec.size;
    }
    sz.plt_at = align_up(sz.text, 8);
    sz.text = sz.plt_at + m.plt.len() as u64 * PLT_STUB_SIZE;
    sz.got_at = align_up(sz.rodata, 8);
    sz.rodata = sz.got_at + m.got.len() as u64 * 8;
    m.sizes = sz;
}

/// Where the area's modules and the init blob lie.
pub(crate) struct AreaLayout {
    pub layout: Layout,
    pub area_file_size: u64,
    pub init_size: u64,
    /// Each module's segment in the area: `[start, end)`.
    pub segs: Vec<(u64, u64)>,
}

/// Alignment of every module's segment start: a cache line, or more when
/// a section asks for it.
const SEG_ALIGN: u64 = 64;

/// Lays the area out module by module: each module's segment is its code
/// and PLT stubs, its read-only data and GOT, then its `.eh_frame` with a
/// zero terminator of its own. A module's bytes depend on its own segment
/// only (references into other segments are fixups), so the runtime can
/// place segments independently and keep an unchanged module where it is.
fn layout_area(mods: &mut [Mod<'_>]) -> Result<AreaLayout, LinkError> {
    let mut pos = 0u64;
    let mut segs = Vec::with_capacity(mods.len());
    for m in mods.iter_mut() {
        let align = SEG_ALIGN.max(m.sizes.text_align).max(m.sizes.rodata_align);
        let start = align_up(pos, align);
        m.bases.text = start;
        let ro = align_up(start + m.sizes.text, m.sizes.rodata_align.max(8));
        m.bases.rodata = ro;
        m.bases.eh = align_up(ro + m.sizes.rodata, 8);
        let end = m.bases.eh + m.sizes.eh + 4; // zero terminator
        segs.push((start, end));
        pos = end;
    }
    let end = pos.max(1);
    let mut init = 0u64;
    for m in mods.iter_mut() {
        init = align_up(init, m.sizes.init_align);
        m.bases.init = init;
        init += m.sizes.init;
    }
    let area_size = align_up(end, PAGE_SIZE);
    let as_u32 = |v: u64| {
        u32::try_from(v)
            .map_err(|_| LinkError::TooLarge(format!("load area of {v} bytes exceeds 4 GiB")))
    };
    Ok(AreaLayout {
        layout: Layout {
            area_size: as_u32(area_size)?,
        },
        area_file_size: end,
        init_size: init,
        segs,
    })
}

/// Fixups and statistics produced while applying relocations.
pub(crate) struct Applied {
    /// The load area, laid out, with every link-time relocation applied.
    pub area: Vec<u8>,
    /// Initial bytes of the writable objects, relocated likewise.
    pub init: Vec<u8>,
    pub fixups: Vec<Fixup>,
    pub module_fixups: Vec<Span>,
    pub object_fixups: Vec<Fixup>,
    pub object_fixup_spans: Vec<Span>,
    /// Each module's range of `object_fixups` (its objects' together).
    pub module_object_fixups: Vec<Span>,
    pub relocations: u64,
    pub at_link: u64,
    pub ctors: Vec<Vec<u32>>,
    pub dtors: Vec<Vec<u32>>,
    pub on_reload: Vec<Vec<u32>>,
}

/// Area offset of a section of a module.
pub(crate) fn sec_area_offset(m: &Mod<'_>, sec: usize) -> Option<u64> {
    let s = &m.obj.sections[sec];
    Some(match s.kind {
        SecKind::Text => m.bases.text + m.sec_off[sec],
        SecKind::Rodata => m.bases.rodata + m.sec_off[sec],
        SecKind::EhFrame => m.bases.eh + m.sec_off[sec],
        _ => return None,
    })
}

struct ModApplied {
    fixups: Vec<Fixup>,
    /// (object id, fixups) for this module's objects.
    objfix: Vec<(u32, Vec<Fixup>)>,
    relocations: u64,
    at_link: u64,
    ctors: Vec<u32>,
    dtors: Vec<u32>,
    on_reload: Vec<u32>,
    diags: Vec<Diagnostic>,
}

/// A module's slices of the text, read-only, unwind and init regions.
type ModSlices<'b> = (&'b mut [u8], &'b mut [u8], &'b mut [u8], &'b mut [u8]);

fn apply_all(mods: &[Mod<'_>], lay: &AreaLayout) -> Result<Applied, LinkError> {
    let mut area = vec![0u8; lay.area_file_size as usize];
    let mut init = vec![0u8; lay.init_size as usize];
    // Hand every module its disjoint slices of the area and the init blob.
    let mut slices: Vec<ModSlices<'_>> = Vec::with_capacity(mods.len());
    {
        let init: &mut [u8] = &mut init;
        let (mut a, mut i) = (&mut area[..], init);
        let (mut apos, mut ipos) = (0u64, 0u64);
        for m in mods {
            fn take<'b>(
                buf: &mut &'b mut [u8],
                pos: &mut u64,
                base: u64,
                len: u64,
            ) -> &'b mut [u8] {
                let skip = (base - *pos) as usize;
                let b = std::mem::take(buf);
                let (_, b) = b.split_at_mut(skip);
                let (mine, rest) = b.split_at_mut(len as usize);
                *buf = rest;
                *pos = base + len;
                mine
            }
            let ts = take(&mut a, &mut apos, m.bases.text, m.sizes.text);
            let rs = take(&mut a, &mut apos, m.bases.rodata, m.sizes.rodata);
            // The module's unwind table and its zero terminator.
            let es = take(&mut a, &mut apos, m.bases.eh, m.sizes.eh + 4);
            let is = take(&mut i, &mut ipos, m.bases.init, m.sizes.init);
            slices.push((ts, rs, es, is));
        }
    }
    let results: Vec<ModApplied> = slices
        .into_par_iter()
        .enumerate()
        .map(|(mi, (ts, rs, es, is))| apply_module(mods, mi as u32, ts, rs, es, is))
        .collect();
    let mut out = Applied {
        area: Vec::new(),
        init: Vec::new(),
        fixups: Vec::new(),
        module_fixups: Vec::new(),
        object_fixups: Vec::new(),
        object_fixup_spans: Vec::new(),
        module_object_fixups: Vec::new(),
        relocations: 0,
        at_link: 0,
        ctors: Vec::new(),
        dtors: Vec::new(),
        on_reload: Vec::new(),
    };
    let nobj: usize = mods.iter().map(|m| m.objs.len()).sum();
    let mut per_obj: Vec<Vec<Fixup>> = vec![Vec::new(); nobj];
    let mut diags = Vec::new();
    out.fixups
        .reserve(results.iter().map(|r| r.fixups.len()).sum::<usize>());
    out.module_fixups.reserve(results.len());
    out.ctors.reserve(results.len());
    out.dtors.reserve(results.len());
    out.on_reload.reserve(results.len());
    for r in results {
        let start = out.fixups.len() as u32;
        out.fixups.extend(r.fixups);
        out.module_fixups
            .push(Span::new(start, out.fixups.len() as u32));
        for (g, f) in r.objfix {
            per_obj[g as usize] = f;
        }
        out.relocations += r.relocations;
        out.at_link += r.at_link;
        out.ctors.push(r.ctors);
        out.dtors.push(r.dtors);
        out.on_reload.push(r.on_reload);
        diags.extend(r.diags);
    }
    if !diags.is_empty() {
        return Err(LinkError::Inputs(diags));
    }
    out.object_fixups
        .reserve(per_obj.iter().map(Vec::len).sum::<usize>());
    out.object_fixup_spans.reserve(per_obj.len());
    for f in per_obj {
        let start = out.object_fixups.len() as u32;
        out.object_fixups.extend(f);
        out.object_fixup_spans
            .push(Span::new(start, out.object_fixups.len() as u32));
    }
    for m in mods {
        let at = |g: usize| {
            out.object_fixup_spans
                .get(g)
                .map_or(out.object_fixups.len() as u32, |s| s.start)
        };
        let (lo, hi) = (m.obj_base as usize, m.obj_base as usize + m.objs.len());
        out.module_object_fixups.push(Span::new(at(lo), at(hi)));
    }
    out.area = area;
    out.init = init;
    Ok(out)
}

fn apply_module(
    mods: &[Mod<'_>],
    mi: u32,
    text: &mut [u8],
    rodata: &mut [u8],
    eh: &mut [u8],
    init: &mut [u8],
) -> ModApplied {
    let m = &mods[mi as usize];
    let mut classes = m.classes.iter().copied();
    let mut res = ModApplied {
        fixups: Vec::new(),
        objfix: Vec::new(),
        relocations: 0,
        at_link: 0,
        ctors: Vec::new(),
        dtors: Vec::new(),
        on_reload: Vec::new(),
        diags: Vec::new(),
    };
    let mut d = Diags::default();
    // Copy section bytes.
    for (si, sec) in m.obj.sections.iter().enumerate() {
        let buf: &mut [u8] = match sec.kind {
            SecKind::Text => text,
            SecKind::Rodata => rodata,
            SecKind::EhFrame => eh,
            SecKind::Data if !sec.nobits => init,
            _ => continue,
        };
        let off = m.sec_off[si] as usize;
        if !sec.nobits {
            buf[off..off + sec.data.len()].copy_from_slice(sec.data);
        }
    }
    // Area offset of every S that lives in the area.
    let area_of = |s: &S| -> Option<u64> {
        match *s {
            S::Area { m: tm, sec, off } => {
                Some(sec_area_offset(&mods[tm as usize], sec as usize)? + off)
            }
            S::Got(k) => {
                Some(m.bases.rodata + m.sizes.got_at + 8 * u64::from(*m.got_index.get(&k)?))
            }
            S::Plt(h) => Some(
                m.bases.text + m.sizes.plt_at + PLT_STUB_SIZE * u64::from(*m.plt_index.get(&h)?),
            ),
            S::EhEnd => Some(m.bases.eh + m.sizes.eh),
            _ => None,
        }
    };
    // The area offset of `s` when it lies in this module's own segment:
    // only such values are fixed at link time (the runtime places each
    // module's segment on its own).
    let own_area_of = |s: &S| -> Option<u64> {
        match *s {
            S::Area { m: tm, .. } if tm != mi => None,
            _ => area_of(s),
        }
    };
    // An area offset relative to this module's segment (wrapping).
    let rel = |t: u64| t.wrapping_sub(m.bases.text) as u32;
    let residual = |s: &S| -> Option<(TargetClass, u32, i64)> {
        Some(match *s {
            S::Func(f, delta) => (TargetClass::Function, f, delta),
            S::Obj(g, off) => (TargetClass::Object, g, off as i64),
            S::Host(h) => (TargetClass::Host, h, 0),
            _ => {
                let a = area_of(s)?;
                // Relative to this module's segment (wrapping): the runtime
                // may place the segments of an image apart.
                (TargetClass::Area, a.wrapping_sub(m.bases.text) as u32, 0)
            }
        })
    };
    // GOT entries: residual absolute addresses (constants for absolute symbols).
    for (i, k) in m.got.iter().enumerate() {
        let p = m.bases.rodata + m.sizes.got_at + 8 * i as u64;
        let local = (p - m.bases.rodata) as usize;
        let s = match tls::got_word(*k, m) {
            Some(Ok(v)) => {
                rodata[local..local + 8].copy_from_slice(&v.to_le_bytes());
                continue;
            }
            Some(Err(s)) => s,
            None => match *k {
                GotKey::Area { m, sec, off } => S::Area { m, sec, off },
                GotKey::Func(f) => S::Func(f, 0),
                GotKey::Obj(g, off) => S::Obj(g, off),
                GotKey::Host(h) => S::Host(h),
                GotKey::Abs(v) => {
                    rodata[local..local + 8].copy_from_slice(&v.to_le_bytes());
                    continue;
                }
                _ => continue,
            },
        };
        if let Some((class, target, add)) = residual(&s) {
            res.fixups.push(Fixup {
                offset: (p - m.bases.text) as u32,
                target,
                addend: add as i32,
                kind: FixupKind::Abs64,
                class,
            });
        }
    }
    // PLT stubs: jmp *GOT(%rip), resolved now.
    for (i, &h) in m.plt.iter().enumerate() {
        let p = m.bases.text + m.sizes.plt_at + PLT_STUB_SIZE * i as u64;
        let slot = area_of(&S::Got(GotKey::Host(h))).unwrap_or(0);
        if let Some(stub) = x86::plt_stub(p, slot) {
            let local = (p - m.bases.text) as usize;
            text[local..local + 8].copy_from_slice(&stub);
        }
    }
    // Relocations.
    let mut init_entries: Vec<(u32, u64, u32)> = Vec::new();
    let mut fini_entries: Vec<(u32, u64, u32)> = Vec::new();
    let mut reload_entries: Vec<(u64, u32)> = Vec::new();
    for (si, sec) in m.obj.sections.iter().enumerate() {
        if matches!(
            sec.kind,
            SecKind::Skip | SecKind::Discarded | SecKind::Debug
        ) {
            continue;
        }
        let obj = if sec.kind == SecKind::Data {
            m.sec_obj[si]
        } else {
            None
        };
        let mut objfix = Vec::new();
        for r in m.obj.relocs(sec) {
            res.relocations += 1;
            let class = classes.next().flatten();
            let Some((calc, s)) = class else {
                continue; // writes nothing, or reported by the scan
            };
            match sec.kind {
                SecKind::InitArray | SecKind::FiniArray | SecKind::OnReload => {
                    // Entry points: code addresses in this image.
                    let target = match s {
                        S::Func(f, delta) => {
                            let fm = mods.iter().find(|mm| {
                                f >= mm.fn_base && f < mm.fn_base + mm.funcs.len() as u32
                            });
                            fm.and_then(|mm| {
                                let fd = &mm.funcs[(f - mm.fn_base) as usize];
                                Some(
                                    (sec_area_offset(mm, fd.sec as usize)? + fd.value)
                                        .wrapping_add(delta as u64),
                                )
                            })
                        }
                        _ => area_of(&s),
                    };
                    let Some(t) = target
                        .and_then(|t| u64::try_from(i128::from(t) + i128::from(r.addend)).ok())
                        .filter(|&t| {
                            mods.iter()
                                .any(|mm| t >= mm.bases.text && t < mm.bases.text + mm.sizes.text)
                        })
                    else {
                        d.push(
                            &m.obj.path,
                            &m.obj.name,
                            Some(sec.name),
                            "entry does not point to code",
                            "rebuild the object",
                        );
                        continue;
                    };
                    res.at_link += 1;
                    match sec.kind {
                        SecKind::InitArray => init_entries.push((sec.priority, r.offset, rel(t))),
                        SecKind::FiniArray => fini_entries.push((sec.priority, r.offset, rel(t))),
                        _ => {
                            let o = r.offset as usize + 8;
                            let order = sec
                                .data
                                .get(o..o + 8)
                                .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
                            reload_entries.push((order, rel(t)));
                        }
                    }
                    continue;
                }
                _ => {}
            }
            let (buf, base): (&mut [u8], Option<u64>) = match sec.kind {
                SecKind::Text => (&mut *text, Some(m.bases.text)),
                SecKind::Rodata => (&mut *rodata, Some(m.bases.rodata)),
                SecKind::EhFrame => (&mut *eh, Some(m.bases.eh)),
                _ => (&mut *init, None),
            };
            let local = (m.sec_off[si] + r.offset) as usize;
            // The module's GOT base, for the large code model's GOT-relative
            // relocations.
            let got_base = m.bases.rodata + m.sizes.got_at;
            let area_p = base.map(|b| b + m.sec_off[si] + r.offset);
            match calc {
                Calc::GotPc32 | Calc::GotPc64 | Calc::GotEntry32 | Calc::GotEntry64 => {
                    let v = match (calc, area_p) {
                        (Calc::GotPc32 | Calc::GotPc64, Some(p)) => (got_base as i64)
                            .wrapping_add(r.addend)
                            .wrapping_sub(p as i64),
                        (Calc::GotEntry32 | Calc::GotEntry64, _) => match area_of(&s) {
                            Some(entry) => (entry as i64)
                                .wrapping_sub(got_base as i64)
                                .wrapping_add(r.addend),
                            None => {
                                d.push(
                                    &m.obj.path,
                                    &m.obj.name,
                                    Some(sec.name),
                                    "GOT entry missing",
                                    "rebuild the object",
                                );
                                continue;
                            }
                        },
                        _ => {
                            d.push(
                                &m.obj.path,
                                &m.obj.name,
                                Some(sec.name),
                                format!("{} outside code", x86::name(r.r_type)),
                                "only code may address the GOT",
                            );
                            continue;
                        }
                    };
                    if matches!(calc, Calc::GotPc32 | Calc::GotEntry32) {
                        let Ok(v) = i32::try_from(v) else {
                            d.push(
                                &m.obj.path,
                                &m.obj.name,
                                Some(sec.name),
                                format!("{} value exceeds 32 bits", x86::name(r.r_type)),
                                "build with -mcmodel=large for 64-bit GOT offsets",
                            );
                            continue;
                        };
                        buf[local..local + 4].copy_from_slice(&v.to_le_bytes());
                    } else {
                        buf[local..local + 8].copy_from_slice(&v.to_le_bytes());
                    }
                    res.at_link += 1;
                    continue;
                }
                Calc::GotOff64 => {
                    if let Some(sa) = own_area_of(&s) {
                        let v = (sa as i64)
                            .wrapping_add(r.addend)
                            .wrapping_sub(got_base as i64);
                        buf[local..local + 8].copy_from_slice(&v.to_le_bytes());
                        res.at_link += 1;
                        continue;
                    }
                }
                _ => {}
            }
            let kind = match calc {
                Calc::GotOff64 => FixupKind::AreaRel64,
                Calc::GotPc32 | Calc::GotPc64 | Calc::GotEntry32 | Calc::GotEntry64 => continue,
                Calc::Abs64 => FixupKind::Abs64,
                Calc::Pc32 => FixupKind::Pc32,
                Calc::Pc64 => FixupKind::Pc64,
                Calc::Abs32 => FixupKind::Abs32,
                Calc::Abs32S => FixupKind::Abs32S,
                Calc::Size32 | Calc::Size64 => {
                    let v = (match s {
                        S::Abs(v) => v,
                        _ => 0,
                    } as i64)
                        .wrapping_add(r.addend);
                    if calc == Calc::Size32 {
                        buf[local..local + 4].copy_from_slice(&(v as u32).to_le_bytes());
                    } else {
                        buf[local..local + 8].copy_from_slice(&v.to_le_bytes());
                    }
                    res.at_link += 1;
                    continue;
                }
            };
            // P in the area and S in the area with a PC-relative kind: the
            // value is fixed now.
            if let (Some(p), Some(sa), FixupKind::Pc32 | FixupKind::Pc64) =
                (area_p, own_area_of(&s), kind)
            {
                // In i128: a fuzzed addend must not overflow (S + A - P).
                let v = i128::from(sa) + i128::from(r.addend) - i128::from(p);
                if kind == FixupKind::Pc32 {
                    match i32::try_from(v) {
                        Ok(v) => buf[local..local + 4].copy_from_slice(&v.to_le_bytes()),
                        Err(_) => {
                            d.push(
                                &m.obj.path,
                                &m.obj.name,
                                Some(sec.name),
                                "PC-relative displacement exceeds ±2 GiB inside the image",
                                "split the program into smaller images",
                            );
                            continue;
                        }
                    }
                } else {
                    buf[local..local + 8].copy_from_slice(&(v as i64).to_le_bytes());
                }
                res.at_link += 1;
                continue;
            }
            if let (S::Abs(v), FixupKind::Abs64) = (s, kind) {
                buf[local..local + 8]
                    .copy_from_slice(&((v as i64).wrapping_add(r.addend)).to_le_bytes());
                res.at_link += 1;
                continue;
            }
            let Some((class, target, add)) = residual(&s) else {
                d.push(
                    &m.obj.path,
                    &m.obj.name,
                    Some(sec.name),
                    format!("cannot relocate {} here", x86::name(r.r_type)),
                    "build with -fPIC",
                );
                continue;
            };
            // S + A - GOT = S + (A - GOT offset) - area base.
            // (`B` is the segment's start at run time.)
            let got_adjust = if kind == FixupKind::AreaRel64 {
                (got_base - m.bases.text) as i64
            } else {
                0
            };
            let addend = i128::from(add) + i128::from(r.addend) - i128::from(got_adjust);
            let Ok(addend) = i32::try_from(addend) else {
                d.push(
                    &m.obj.path,
                    &m.obj.name,
                    Some(sec.name),
                    "relocation addend exceeds 32 bits",
                    "this image layout is not supported",
                );
                continue;
            };
            // Clear the field: the loader writes the whole value.
            buf[local..local + kind.width()].fill(0);
            match area_p {
                Some(p) => res.fixups.push(Fixup {
                    offset: (p - m.bases.text) as u32,
                    target,
                    addend,
                    kind,
                    class,
                }),
                None => objfix.push(Fixup {
                    offset: r.offset as u32,
                    target,
                    addend,
                    kind,
                    class,
                }),
            }
        }
        if let Some(g) = obj {
            objfix.sort_by_key(|f| f.offset);
            res.objfix.push((g, objfix));
        }
    }
    init_entries.sort_by_key(|&(p, o, _)| (p, o));
    fini_entries.sort_by_key(|&(p, o, _)| (p, o));
    reload_entries.sort_by_key(|&(o, _)| o);
    res.ctors = init_entries.into_iter().map(|e| e.2).collect();
    res.dtors = fini_entries.into_iter().map(|e| e.2).collect();
    res.on_reload = reload_entries.into_iter().map(|e| e.1).collect();
    res.fixups.sort_by_key(|f| f.offset);
    res.diags = d.list;
    res
}

fn build_manifest(
    mods: &[Mod<'_>],
    root: u32,
    reachable: &[bool],
    lay: &AreaLayout,
    hosts: &[Host<'_>],
    libs: &[SharedLib],
    applied: &Applied,
) -> Manifest {
    let mut man = Manifest::default();
    let n_funcs: usize = mods.iter().map(|m| m.funcs.len()).sum();
    let n_objs: usize = mods.iter().map(|m| m.objs.len()).sum();
    let name_bytes: usize = mods
        .iter()
        .map(|m| {
            m.funcs.iter().map(|f| f.name.len()).sum::<usize>()
                + m.objs.iter().map(|o| o.name.len()).sum::<usize>()
                + m.obj.name.len()
                + m.obj.source.len()
                + m.obj.path.len()
        })
        .sum::<usize>()
        + hosts.iter().map(|h| h.name.len()).sum::<usize>();
    man.strings.reserve(name_bytes);
    let mut functions = Vec::with_capacity(n_funcs);
    let mut objects = Vec::with_capacity(n_objs);
    let mut modules = Vec::with_capacity(mods.len());
    for (mi, m) in mods.iter().enumerate() {
        let fstart = functions.len() as u32;
        let nim = crate::nim::is_nim_module(&m.obj.name);
        let c_text = match nim {
            true => crate::nim::c_source(&m.obj.path)
                .and_then(|c| std::fs::read_to_string(c).ok())
                .unwrap_or_default(),
            false => String::new(),
        };
        let sigs = crate::nim::signatures(&c_text);
        let none = Default::default();
        let stable = |names: Vec<&str>, sigs| match nim {
            true => crate::nim::stable_names(names, sigs),
            false => Vec::new(),
        };
        let fnames = stable(m.funcs.iter().map(|f| f.name).collect(), &sigs);
        let onames = stable(m.objs.iter().map(|o| o.name).collect(), &none);
        for (fi, f) in m.funcs.iter().enumerate() {
            // Relative to the module's segment.
            let off = sec_area_offset(m, f.sec as usize).unwrap_or(0) + f.value - m.bases.text;
            let name = fnames.get(fi).and_then(Option::as_deref);
            functions.push(Function {
                name: man.intern(name.unwrap_or(f.name)),
                module: ModuleId(mi as u32),
                offset: off as u32,
                size: f.size as u32,
                global: f.global,
            });
        }
        let ostart = objects.len() as u32;
        let mut idents = static_identities(m);
        for (oi, o) in m.objs.iter().enumerate() {
            let gid = objects.len();
            let mut id = idents.get_mut(oi).map(std::mem::take).unwrap_or_default();
            // A Nim global's identity drops Nim's counter (see `nim`).
            if let (true, Some(Some(nim_key))) = (id.key.is_empty(), onames.get(oi)) {
                id.key.clone_from(nim_key);
            }
            // Relative to the module's part of the init blob.
            let init = o.sec.and_then(|s| {
                let sec = &m.obj.sections[s as usize];
                (!sec.nobits).then(|| m.sec_off[s as usize])
            });
            let ofix_base = applied.module_object_fixups[mi].start;
            let gspan = applied.object_fixup_spans[gid];
            objects.push(Object {
                name: man.intern(o.name),
                identity: man.intern(&id.key),
                assumed: man.intern(&id.assumed),
                module: ModuleId(mi as u32),
                size: o.size,
                align: o.align.min(u64::from(u32::MAX)) as u32,
                init,
                fixups: Span::new(gspan.start - ofix_base, gspan.end - ofix_base),
                global: o.global,
                tls: o.tls,
            });
        }
        modules.push(Module {
            name: man.intern(&m.obj.name),
            source: man.intern(&m.obj.source),
            object: man.intern(&m.obj.path),
            mtime_ns: m.obj.mtime_ns,
            content_hash: m.hash,
            imports: m.imports.iter().map(|&i| ModuleId(i)).collect(),
            reachable: reachable[mi],
            functions: Span::new(fstart, functions.len() as u32),
            objects: Span::new(ostart, objects.len() as u32),
            fixups: applied.module_fixups[mi].len(),
            ctors: applied.ctors[mi].clone().into(),
            dtors: applied.dtors[mi].clone().into(),
            on_reload: applied.on_reload[mi].clone().into(),
            init: (m.bases.init, m.sizes.init),
            block: (0, 0),
            block_checksum: 0,
            undefined: m.undefined.iter().map(|&h| HostId(h)).collect(),
            seg: Span::new(lay.segs[mi].0 as u32, lay.segs[mi].1 as u32),
            text: Span::new(m.bases.text as u32, (m.bases.text + m.sizes.text) as u32),
            eh_frame: Span::new(m.bases.eh as u32, lay.segs[mi].1 as u32),
            checksum: hcr_image::segment_checksum(
                &applied.area[lay.segs[mi].0 as usize..lay.segs[mi].1 as usize],
            ),
            link_hash: 0,
            deps: Default::default(),
            text_size: m.sizes.text as u32,
            rodata_size: (m.sizes.rodata + m.sizes.eh) as u32,
        });
    }
    let hosts = hosts
        .iter()
        .map(|h| HostSymbol {
            name: man.intern(h.name),
            weak: h.weak,
        })
        .collect();
    let libraries = libs
        .iter()
        .map(|l| Library {
            request: man.intern(&l.request),
            soname: man.intern(&l.soname),
            path: man.intern(&l.path.to_string_lossy()),
        })
        .collect();
    let fn_lens: Vec<usize> = modules
        .iter()
        .map(|md| md.functions.len() as usize)
        .collect();
    let obj_lens: Vec<usize> = modules.iter().map(|md| md.objects.len() as usize).collect();
    let mut man = Manifest {
        strings: man.strings,
        module_strings: Vec::new(),
        root: ModuleId(root),
        layout: lay.layout.clone(),
        modules,
        functions: hcr_image::Chunked::from_vec(functions, fn_lens),
        objects: hcr_image::Chunked::from_vec(objects, obj_lens),
        hosts,
        libraries,
        stats: PlanStats {
            relocations: applied.relocations,
            applied_at_link: applied.at_link,
            got_entries: mods.iter().map(|m| m.got.len() as u32).sum(),
            plt_stubs: mods.iter().map(|m| m.plt.len() as u32).sum(),
        },
    };
    let links: Vec<(u64, Vec<ModuleId>)> = (0..man.modules.len())
        .into_par_iter()
        .map(|mi| link_identity(&man, mi, applied))
        .collect();
    for (md, (hash, deps)) in man.modules.iter_mut().zip(links) {
        md.link_hash = hash;
        md.deps = deps.into();
    }
    man
}

/// A module's [`Module::link_hash`] and [`Module::deps`]: its content and
/// segment layout, and every fixup of its segment and of its objects with
/// the target named by what stays the same across links (the owning
/// module's name and the symbol's name, or the offset inside the owning
/// module's segment), never by an index that other modules shift.
fn link_identity(man: &Manifest, mi: usize, applied: &Applied) -> (u64, Vec<ModuleId>) {
    let md = &man.modules[mi];
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&md.content_hash.to_le_bytes());
    for s in [md.seg, md.text, md.eh_frame] {
        h.update(&(s.start - md.seg.start).to_le_bytes());
        h.update(&(s.end - md.seg.start).to_le_bytes());
    }
    let mut deps: Vec<ModuleId> = Vec::new();
    let mut put = |h: &mut xxhash_rust::xxh3::Xxh3, f: &Fixup| {
        h.update(&f.offset.to_le_bytes());
        h.update(&f.addend.to_le_bytes());
        h.update(&[f.kind as u8, f.class as u8]);
        let name = |h: &mut xxhash_rust::xxh3::Xxh3, module: ModuleId, s: &str| {
            h.update(man.module_name(module).as_bytes());
            h.update(&[0]);
            h.update(s.as_bytes());
            h.update(&[0]);
        };
        match f.class {
            TargetClass::Function => {
                if let Some(t) = man.functions.get(f.target as usize) {
                    name(h, t.module, man.str(t.name));
                }
            }
            TargetClass::Object => {
                if let Some(t) = man.objects.get(f.target as usize) {
                    name(h, t.module, man.object_key(t));
                }
            }
            TargetClass::Host => {
                if let Some(t) = man.hosts.get(f.target as usize) {
                    h.update(man.str(t.name).as_bytes());
                    h.update(&[0]);
                }
            }
            TargetClass::Area => {
                let abs = md.seg.start.wrapping_add(f.target);
                if let Some(tm) = man.module_at(abs) {
                    let seg = man.modules[tm.0 as usize].seg;
                    name(h, tm, "");
                    h.update(&(abs - seg.start).to_le_bytes());
                    if tm.0 as usize != mi && !deps.contains(&tm) {
                        deps.push(tm);
                    }
                }
            }
        }
    };
    for f in &applied.fixups[applied.module_fixups[mi].range()] {
        put(&mut h, f);
    }
    let ofix = &applied.object_fixups[applied.module_object_fixups[mi].range()];
    for o in man.objects.part(mi) {
        h.update(man.object_key(o).as_bytes());
        h.update(&[0]);
        h.update(&o.size.to_le_bytes());
        h.update(&[o.tls as u8]);
        if let Some(o_init) = o.init {
            h.update(&o_init.to_le_bytes());
        }
        for f in ofix.get(o.fixups.range()).unwrap_or(&[]) {
            put(&mut h, f);
        }
    }
    deps.sort_unstable();
    (h.digest(), deps)
}
