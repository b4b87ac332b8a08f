//! Passes 2–5: COMDAT groups, definitions and their ids, the global symbol
//! table, host symbols.

use super::*;

pub(crate) fn dedup_comdats(mods: &mut [Mod<'_>]) {
    let mut owner: HashMap<String, usize> = HashMap::default();
    for (mi, m) in mods.iter_mut().enumerate() {
        let mut discard = Vec::new();
        for g in m.obj.groups.iter() {
            match owner.get(g.signature) {
                Some(&o) if o != mi => discard.extend(g.members.iter().copied()),
                Some(_) => {}
                None => {
                    owner.insert(g.signature.to_string(), mi);
                }
            }
        }
        for s in discard {
            if let Some(sec) = m.obj.sections.to_mut().get_mut(s as usize) {
                sec.kind = SecKind::Discarded;
            }
        }
    }
}

pub(crate) fn in_kept_section(m: &ObjFile<'_>, s: &Sym<'_>) -> bool {
    match s.shndx {
        Shndx::Sec(i) => m.sections[i as usize].kind != SecKind::Discarded,
        _ => true,
    }
}

/// One module's definitions, before the link gives out ids.
pub(crate) struct Definitions<'d> {
    funcs: Vec<FnDef<'d>>,
    clones: Vec<FnDef<'d>>,
    objs: Vec<ObjDef<'d>>,
    /// Each section's object, as an index into `objs`.
    sec_obj: Vec<Option<u32>>,
    /// `(symbol, index into objs)` of each COMMON symbol this module owns.
    commons: Vec<(u32, usize)>,
    diags: Diags,
    /// Functions by section: `(value, index into funcs)` sorted by section,
    /// and where each section's run starts.
    by_section: (Vec<(u64, u32)>, Vec<u32>),
}

/// Which module owns each COMMON symbol's storage: none when some module
/// defines the name strongly (a weak definition yields to it), else the module with the largest COMMON
/// (the first on a tie), with the largest size and alignment of all.
pub(crate) fn common_owners<'a>(mods: &'a [Mod<'_>]) -> HashMap<&'a str, (usize, u64, u64)> {
    let mut owners: HashMap<&str, (usize, u64, u64)> = HashMap::default();
    for (mi, m) in mods.iter().enumerate() {
        for s in m.obj.symbols.iter() {
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
    // A strong definition takes the name from every COMMON symbol; a weak
    // one does not (a COMMON symbol overrides a weak definition, as with
    // ld and gold: the global table ranks it above weak ones).
    for m in mods {
        for s in m.obj.symbols.iter() {
            if s.is_global()
                && !s.is_weak()
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

/// Every module's functions and writable objects, numbered across the
/// program (`fn_base`, `obj_base`); what a module defines that hcr cannot
/// keep goes to `diags`.
pub(crate) fn collect_definitions<'d>(mods: &mut [Mod<'d>], diags: &mut Vec<Diagnostic>) {
    let owners = common_owners(mods);
    let per: Vec<Definitions<'d>> = mods
        .par_iter()
        .enumerate()
        .map(|(mi, m)| module_definitions(mi, &m.obj, &owners))
        .collect();
    let (mut fbase, mut obase) = (0u32, 0u32);
    for (m, d) in mods.iter_mut().zip(per) {
        diags.extend(d.diags.list);
        m.fn_base = fbase;
        m.obj_base = obase;
        (m.sec_funcs, m.sec_func_at) = d.by_section;
        m.sec_obj = d.sec_obj.iter().map(|o| o.map(|x| x + obase)).collect();
        m.common_obj = (d.commons.iter())
            .map(|&(si, oi)| (si, obase + oi as u32))
            .collect();
        fbase += d.funcs.len() as u32;
        obase += d.objs.len() as u32;
        m.funcs = d.funcs;
        m.clones = d.clones;
        m.objs = d.objs;
    }
}

/// The definitions of module `mi`, whose object is `o`.
fn module_definitions<'d>(
    mi: usize,
    o: &ObjFile<'d>,
    owners: &HashMap<&str, (usize, u64, u64)>,
) -> Definitions<'d> {
    let mut diags = Diags::default();
    let Scanned {
        funcs,
        clones,
        text_funcs,
        data_syms,
    } = scan_symbols(o);
    let (mut objs, sec_obj) = section_objects(o, &text_funcs, &data_syms, &mut diags);
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
                hidden: s.is_hidden(),
                tls: false,
            });
        }
    }
    check_objects(o, &objs, &mut diags);
    let by_section = functions_by_section(o, &funcs);
    Definitions {
        funcs,
        clones,
        objs,
        sec_obj,
        commons,
        diags,
        by_section,
    }
}

/// What one pass over a module's symbols finds.
struct Scanned<'d> {
    /// The functions `o` defines (permanent addresses).
    funcs: Vec<FnDef<'d>>,
    /// Compiler clones and split parts (see [`Mod::clones`]).
    clones: Vec<FnDef<'d>>,
    /// How many functions each section's code holds.
    text_funcs: Vec<u32>,
    /// Each section's data symbols (by symbol index).
    data_syms: Vec<Vec<usize>>,
}

/// The functions and clones `o` defines, and its sections' contents.
fn scan_symbols<'d>(o: &ObjFile<'d>) -> Scanned<'d> {
    let mut funcs = Vec::new();
    let mut clones = Vec::new();
    let mut text_funcs = vec![0u32; o.sections.len()];
    let mut data_syms: Vec<Vec<usize>> = vec![Vec::new(); o.sections.len()];
    for (si, s) in o.symbols.iter().enumerate() {
        let Shndx::Sec(sec) = s.shndx else { continue };
        let kind = o.sections[sec as usize].kind;
        let indirect = s.typ == object::elf::STT_GNU_IFUNC.0;
        if (indirect || s.typ == object::elf::STT_FUNC.0) && kind == SecKind::Text {
            // An indirect function's permanent address runs what its
            // resolver (the code at its value) returns; references go
            // through that address, never straight to the code, so it is
            // not counted as code of the section.
            if !indirect {
                text_funcs[sec as usize] += 1;
            }
            let def = FnDef {
                sec,
                value: s.value,
                size: s.size,
                name: s.name,
                global: s.is_global(),
                hidden: s.is_hidden(),
                indirect,
            };
            // Global functions, static functions with plain names, and
            // indirect functions; compiler clones such as `f.constprop.0`
            // are reached by branches only, and are only named. A cold
            // part (`f.cold`, one per function with an unlikely path, so
            // as many as functions at -O2) is not listed: it lies right
            // before its function's code, which names it (`crash.rs`).
            if indirect || s.is_global() || !s.name.contains('.') {
                funcs.push(def);
            } else if s.size > 0 && !is_cold_part(s.name) {
                clones.push(def);
            }
        }
        if kind == SecKind::Data && is_data_symbol(s) {
            data_syms[sec as usize].push(si);
        }
    }
    Scanned {
        funcs,
        clones,
        text_funcs,
        data_syms,
    }
}

/// gcc's cold part of a function: `f.cold`, or `f.cold.N` (older gcc).
fn is_cold_part(name: &str) -> bool {
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit());
    base.ends_with(".cold") || base.ends_with(".cold.")
}

/// A symbol that names a variable of its data section.
fn is_data_symbol(s: &Sym<'_>) -> bool {
    s.typ == object::elf::STT_OBJECT.0
        || s.typ == object::elf::STT_TLS.0
        || s.typ == object::elf::STT_NOTYPE.0 && !s.name.is_empty() && !s.name.starts_with(".L")
}

/// The writable objects of `o`'s data sections, and each section's object
/// (an index into them). Sections that several functions or variables
/// share, which hcr cannot reload or keep one by one, are reported.
fn section_objects<'d>(
    o: &ObjFile<'d>,
    text_funcs: &[u32],
    data_syms: &[Vec<usize>],
    d: &mut Diags,
) -> (Vec<ObjDef<'d>>, Vec<Option<u32>>) {
    let mut objs = Vec::new();
    let mut sec_obj = vec![None; o.sections.len()];
    for (i, sec) in o.sections.iter().enumerate() {
        // (An archive member may share them: a library's object, which is
        // not edited, so not reloaded function by function.)
        if sec.kind == SecKind::Text && text_funcs[i] > 1 && sec.name == ".text" && !o.member {
            d.push(
                &o.path,
                &o.name,
                Some(sec.name),
                format!(
                    "{} functions share one code section (built without -ffunction-sections)",
                    text_funcs[i]
                ),
                "compile with -ffunction-sections so each function can be reloaded on its own",
            );
        }
        if sec.kind != SecKind::Data {
            continue;
        }
        if let Some(obj) = data_object(o, sec, &data_syms[i], d) {
            sec_obj[i] = Some(objs.len() as u32);
            objs.push(ObjDef {
                sec: Some(i as u32),
                ..obj
            });
        }
    }
    (objs, sec_obj)
}

/// The object data section `sec` holds, whose variables are `syms`: none
/// when it is empty, or when its variables cannot be kept apart.
fn data_object<'d>(
    o: &ObjFile<'d>,
    sec: &crate::parse::Sec<'d>,
    syms: &[usize],
    d: &mut Diags,
) -> Option<ObjDef<'d>> {
    if sec.size == 0 && syms.is_empty() {
        return None; // empty `.data`/`.bss`: nothing to keep
    }
    if syms.len() > 1 && !compiler_section(sec.name) {
        // `__attribute__((section("name")))` on several variables: no flag
        // separates them.
        d.push(
            &o.path,
            &o.name,
            Some(sec.name),
            format!(
                "{} variables share the section '{}' (placed there with __attribute__((section)))",
                syms.len(),
                sec.name
            ),
            "hcr keeps every writable global in storage of its own, so variables cannot be kept together in one named section: give each its own section name or drop the attribute (a linker set read through __start_/__stop_ symbols is not supported: register the entries from a constructor instead)",
        );
        return None;
    }
    if syms.len() > 1 && !o.member {
        d.push(
            &o.path,
            &o.name,
            Some(sec.name),
            format!(
                "{} variables share one data section (built without -fdata-sections)",
                syms.len()
            ),
            "compile with -fdata-sections so every global keeps its own persistent storage",
        );
        return None;
    }
    // One variable: named by it; none, or an archive member's several
    // (built without -fdata-sections): the section is one object, named by
    // the section.
    let (name, global, hidden) = match syms[..] {
        [si] => {
            let s = &o.symbols[si];
            (s.name, s.is_global(), s.is_hidden())
        }
        _ => (sec.name, false, false),
    };
    Some(ObjDef {
        sec: None,
        name,
        size: sec.size,
        align: sec.align,
        global,
        hidden,
        tls: sec.is_tls(),
    })
}

/// What the image format cannot hold (`ImageView::parse` refuses it):
/// reported here rather than written into an unloadable image.
fn check_objects(o: &ObjFile<'_>, objs: &[ObjDef<'_>], d: &mut Diags) {
    for od in objs {
        if od.size > hcr_image::MAX_OBJECT_SIZE {
            d.push(
                &o.path,
                &o.name,
                Some(od.name),
                format!(
                    "global of {} bytes: an image holds globals of at most 4 GiB",
                    od.size
                ),
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
}

/// Functions by section, in symbol order within each (a counting sort):
/// `(value, index into funcs)`, and where each section's run starts.
/// Indirect functions are found by symbol only.
fn functions_by_section(o: &ObjFile<'_>, funcs: &[FnDef<'_>]) -> (Vec<(u64, u32)>, Vec<u32>) {
    let mut at = vec![0u32; o.sections.len() + 1];
    for f in funcs.iter().filter(|f| !f.indirect) {
        at[f.sec as usize + 1] += 1;
    }
    for i in 0..o.sections.len() {
        at[i + 1] += at[i];
    }
    let mut next = at.clone();
    let mut flat = vec![(0u64, 0u32); at[o.sections.len()] as usize];
    for (i, f) in funcs.iter().enumerate().filter(|(_, f)| !f.indirect) {
        let p = &mut next[f.sec as usize];
        flat[*p as usize] = (f.value, i as u32);
        *p += 1;
    }
    (flat, at)
}

/// Modules built with compressed debug information (`-gz`): their debug
/// sections are left out of the image (debuggers see their functions, but
/// no file:line), which each such module is told once.
pub(crate) fn compressed_debug_warnings(mods: &[Mod<'_>], reachable: &[bool]) -> Vec<String> {
    mods.iter()
        .zip(reachable)
        .filter(|&(m, &r)| {
            r && m.obj.sections.iter().any(|s| {
                s.name.starts_with(".debug_") && s.flags & object::elf::SHF_COMPRESSED.0 != 0
            })
        })
        .map(|(m, _)| {
            format!(
                "{} (module {}): its debug information is compressed (-gz), which hcr-link does not read: debuggers see its functions without file:line; build it without -gz to debug it",
                m.obj.path, m.obj.name
            )
        })
        .collect()
}

/// Archive members built without -ffunction-sections or -fdata-sections
/// (taken whole by [`collect_definitions`]), said once per archive: the
/// contract asks that a missing flag be named even where the link goes on.
pub(crate) fn coarse_member_warnings(mods: &[Mod<'_>]) -> Vec<String> {
    let mut by_archive: std::collections::BTreeMap<&str, (Vec<&str>, bool, bool)> =
        std::collections::BTreeMap::new();
    for m in mods.iter().filter(|m| m.obj.member) {
        let o = &m.obj;
        let shared_text = o.sections.iter().enumerate().any(|(i, s)| {
            s.kind == SecKind::Text
                && s.name == ".text"
                && m.sec_func_at
                    .get(i + 1)
                    .zip(m.sec_func_at.get(i))
                    .is_some_and(|(b, a)| b - a > 1)
        });
        let shared_data = m.objs.iter().any(|od| {
            od.sec.is_some_and(|si| {
                o.sections[si as usize].name == od.name
                    && o.symbols
                        .iter()
                        .filter(|s| s.shndx == Shndx::Sec(si) && s.typ == object::elf::STT_OBJECT.0)
                        .nth(1)
                        .is_some()
            })
        });
        if !(shared_text || shared_data) {
            continue;
        }
        let (archive, member) = o
            .path
            .rsplit_once('(')
            .map_or((o.path.as_str(), o.name.as_str()), |(a, m)| {
                (a, m.trim_end_matches(')'))
            });
        let e = by_archive.entry(archive).or_default();
        e.0.push(member);
        e.1 |= shared_text;
        e.2 |= shared_data;
    }
    by_archive
        .into_iter()
        .map(|(archive, (members, text, data))| {
            let flags = match (text, data) {
                (true, true) => "-ffunction-sections and -fdata-sections",
                (true, false) => "-ffunction-sections",
                _ => "-fdata-sections",
            };
            let (what, whose) = match members.len() {
                1 => ("a member", "its"),
                _ => ("members", "their"),
            };
            format!(
                "{archive}: {what} built without {flags} ({}): linked with {whose} code and data \
                 sections whole, which suits a library that is not edited; a reload keeps such a \
                 member's globals only while their sections keep their sizes",
                named_few(&members)
            )
        })
        .collect()
}

/// `names` joined, the first few only ("and N more" for the rest).
fn named_few(names: &[&str]) -> String {
    const SHOWN: usize = 6;
    let mut s = names[..names.len().min(SHOWN)].join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    s
}

pub(crate) fn build_global_table<'a>(
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

pub(crate) fn collect_hosts<'d>(
    mods: &[Mod<'d>],
    globals: &HashMap<&str, GlobalDef>,
) -> Vec<Host<'d>> {
    let mut hosts: Vec<Host<'d>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::default();
    for m in mods {
        for s in m.obj.symbols.iter() {
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
pub(crate) fn root_without_main(mods: &[Mod<'_>], root: u32) -> Option<String> {
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

/// A warning naming the input objects the root does not reach that have
/// top-level code (constructors, C++ static initialisers, destructors,
/// `HCR_ON_RELOAD` blocks): they are kept in the image but not loaded, so
/// code that registers itself at start-up (test cases, plugins in a
/// registry) never runs, where a normal link would run it.
pub(crate) fn unreached_constructors(mods: &[Mod<'_>], reachable: &[bool]) -> Option<String> {
    let names: Vec<&str> = (mods.iter().zip(reachable))
        .filter(|(m, &r)| !r && !m.obj.member)
        .filter(|(m, _)| (m.obj.sections.iter()).any(|s| s.size > 0 && s.kind.entry_list()))
        .map(|(m, _)| m.obj.name.as_str())
        .collect();
    let (first, rest) = names.split_first()?;
    let list = match rest {
        [] => format!("module {first} is"),
        _ => format!("modules {} are", names.join(", ")),
    };
    Some(format!(
        "{list} not reached from the root, so not loaded: {} constructors \
         (static initialisers, __attribute__((constructor))), destructors and \
         HCR_ON_RELOAD blocks never run, as code that registers itself at start-up \
         expects; a module is loaded when a loaded module refers to a symbol it defines",
        match rest.is_empty() {
            true => "its",
            false => "their",
        }
    ))
}

/// Which of the wanted host symbols no library defines, as the last link
/// that succeeded found when it asked about the same names with the same
/// `-l` libraries, each the same version of its file (`hcr watch` does not
/// read the libraries again at each relink; one rebuilt is read again). A
/// link that is refused does not keep its memo either.
#[derive(Default)]
pub(crate) struct LibraryMemo {
    names: Vec<String>,
    libs: Vec<(std::path::PathBuf, Option<crate::input::FileKey>)>,
    missing: Vec<bool>,
}

impl LibraryMemo {
    fn undefined(&mut self, names: &[&str], libs: &[SharedLib]) -> Vec<bool> {
        let versions: Vec<_> = libs
            .iter()
            .map(|l| (l.path.clone(), crate::input::FileKey::now(&l.path).ok()))
            .collect();
        let same = self.names.len() == names.len()
            && self.names.iter().zip(names).all(|(a, b)| a == b)
            && self.libs == versions;
        if !same {
            self.missing = crate::libs::undefined_in_libraries(names, libs);
            self.names = names.iter().map(|n| n.to_string()).collect();
            self.libs = versions;
        }
        self.missing.clone()
    }
}

/// Every reachable module that wants host symbols no library defines (the
/// default libraries and `-l` ones), nor the runtime, with those symbols.
pub(crate) fn unresolved_hosts<'d>(
    mods: &[Mod<'d>],
    reachable: &[bool],
    hosts: &[Host<'d>],
    memo: &mut LibraryMemo,
    libs: &[SharedLib],
) -> Vec<(usize, Vec<&'d str>)> {
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
    let undefined = memo.undefined(&names, libs);
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
            out.push((mi, names));
        }
    }
    out
}

/// "undefined symbols 'a', 'b': no module, library or the hcr runtime
/// defines them".
fn undefined_symbols(names: &[&str]) -> String {
    let (s, them) = match names.len() {
        1 => ("", "it"),
        _ => ("s", "them"),
    };
    let list: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    format!(
        "undefined symbol{s} {}: no module, library or the hcr runtime defines {them}",
        list.join(", ")
    )
}

/// The warning for module `module`'s undefined `names` (`--allow-undefined`).
pub(crate) fn undefined_warning(module: &str, names: &[&str]) -> String {
    let them = if names.len() == 1 { "it" } else { "them" };
    format!(
        "module {module}: {} (add the library with -l NAME, or link the module that defines {them}; the host program must provide {them}, or the image is refused at load)",
        undefined_symbols(names)
    )
}

/// The error for module `m`'s undefined `names`.
pub(crate) fn undefined_error(m: &ObjFile<'_>, names: &[&str]) -> Diagnostic {
    let them = if names.len() == 1 { "it" } else { "them" };
    Diagnostic {
        file: m.path.clone(),
        module: m.name.clone(),
        symbol: None,
        message: undefined_symbols(names),
        help: format!(
            "add the library with -l NAME (-L DIR), or link the module that defines {them}; a host program of your own that embeds the runtime and defines {them}: link with --allow-undefined"
        ),
    }
}

/// True when `name` is a section name the compiler picks for data
/// (`.data`, `.bss.x`, `.rodata.str1.1`, `.tdata.y`, ...), as opposed to
/// one a program sets with `__attribute__((section))`.
fn compiler_section(name: &str) -> bool {
    const KINDS: [&str; 10] = [
        ".data", ".bss", ".rodata", ".tdata", ".tbss", ".sdata", ".sbss", ".ldata", ".lbss",
        ".lrodata",
    ];
    KINDS.iter().any(|k| {
        name.strip_prefix(k)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    })
}

/// Errors for `__start_NAME` / `__stop_NAME` that no module defines when
/// some module has a section `NAME`: the bounds of a linker set (the
/// sections of that name, from every object, laid end to end), which a
/// native link defines and hcr cannot (each module is placed and reloaded
/// on its own, so one module's entries cannot lie next to another's).
pub(crate) fn linker_sets(mods: &[Mod<'_>], hosts: &[Host<'_>], diags: &mut Vec<Diagnostic>) {
    fn set_of(name: &str) -> Option<&str> {
        let set = name
            .strip_prefix("__start_")
            .or_else(|| name.strip_prefix("__stop_"))?;
        let ident = !set.is_empty()
            && !set.starts_with(|c: char| c.is_ascii_digit())
            && set.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        ident.then_some(set)
    }
    let bounds: Vec<(&str, &str)> = hosts
        .iter()
        .filter_map(|h| Some((h.name, set_of(h.name)?)))
        .collect();
    if bounds.is_empty() {
        return;
    }
    for (name, set) in bounds {
        let holders: Vec<&str> = mods
            .iter()
            .filter(|m| m.obj.sections.iter().any(|s| s.name == set))
            .map(|m| m.obj.name.as_str())
            .collect();
        if holders.is_empty() {
            continue; // not a set of these objects: a host may define it
        }
        for m in mods {
            let refers = m
                .obj
                .symbols
                .iter()
                .any(|s| s.shndx == Shndx::Undef && s.name == name);
            if !refers {
                continue;
            }
            diags.push(Diagnostic {
                file: m.obj.path.clone(),
                module: m.obj.name.clone(),
                symbol: Some(name.to_string()),
                message: format!(
                    "'{name}' bounds the linker set '{set}' (the sections named '{set}' of {}), which hcr does not support: each module is placed and reloaded on its own, so their entries cannot lie end to end",
                    holders
                        .iter()
                        .map(|h| format!("module {h}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                help: "register the entries at run time instead, e.g. from a constructor (__attribute__((constructor))) in each module that adds its entries to a list".into(),
            });
        }
    }
}
