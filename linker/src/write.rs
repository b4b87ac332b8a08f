//! Writing the image: an ELF64 `ET_REL` file whose section bytes are the
//! laid-out load area, plus every module's symbols and relocations for
//! `readelf`, `objdump` and debuggers.
//!
//! File order: ELF header, the load area (at the first page boundary,
//! exactly as the loader copies it), initial bytes of writable objects,
//! copies of constructor tables, relocation sections, symbol table, string
//! tables, `.hcr.manifest` (section 1), section headers. Nothing before the
//! manifest depends on its size, so the manifest is built and encoded while
//! the modules render.
//!
//! Section order: null, manifest, each module's sections (module order),
//! each module's relocation sections, `.symtab`, [`.symtab_shndx`],
//! `.strtab`, `.shstrtab`. Symbol order: null, each module's locals (a file
//! symbol, section symbols, `module:name` locals), globals in module order,
//! host symbols. Every count is known per module before anything is
//! written, so modules are rendered in parallel into their own fragments and
//! the fragments concatenated.

use hcr_image::{Header, Manifest, FORMAT_VERSION, PAGE_SIZE};
use rayon::prelude::*;

use crate::link::model::{sec_area_offset, Applied, Mod, RegionSizes, NO_DEF};
use crate::parse::{SecKind, Shndx};

const SHT_PROGBITS: u32 = 1;
const SHT_SYMTAB: u32 = 2;
const SHT_STRTAB: u32 = 3;
const SHT_RELA: u32 = 4;
const SHT_SYMTAB_SHNDX: u32 = 18;
const SHF_ALLOC: u64 = 2;
const SHF_EXECINSTR: u64 = 4;
const SHF_INFO_LINK: u64 = 0x40;
const SHF_GROUP: u64 = 0x200;
const SHN_LORESERVE: u32 = 0xff00;
const SHN_ABS: u16 = 0xfff1;
const SHN_XINDEX: u16 = 0xffff;
const STT_SECTION: u8 = 3;
const STT_FILE: u8 = 4;
const STB_LOCAL: u8 = 0;
/// `OutSym::shndx` of an absolute symbol.
const ABS: u32 = u32::MAX;

#[derive(Default, Clone)]
struct Shdr {
    name: u32,
    sh_type: u32,
    flags: u64,
    addr: u64,
    offset: u64,
    size: u64,
    link: u32,
    info: u32,
    align: u64,
    entsize: u64,
}

#[derive(Clone, Copy)]
struct OutSym {
    name: u32,
    info: u8,
    shndx: u32,
    value: u64,
    size: u64,
}

fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a.max(1)) * a.max(1)
}

fn is_output(kind: SecKind) -> bool {
    matches!(
        kind,
        SecKind::Text
            | SecKind::Rodata
            | SecKind::EhFrame
            | SecKind::Data
            | SecKind::InitArray
            | SecKind::FiniArray
            | SecKind::OnReload
    )
}

/// Counts and sizes of one module's output, known before rendering, so that
/// every module renders its final bytes in parallel at known offsets.
#[derive(Default, Clone, PartialEq)]
struct Counts {
    sections: u32,
    rela_sections: u32,
    locals: u32,
    globals: u32,
    rela_bytes: u64,
    extra_bytes: u64,
    /// Largest alignment of those tables: their block starts at a multiple
    /// of it, so the offsets counted from 0 here hold in the file.
    extra_align: u64,
    /// Bytes of the module's `.strtab` and `.shstrtab` fragments.
    str_bytes: u32,
    shstr_bytes: u32,
    /// For each symbol: its rank among the module's emitted globals
    /// (`u32::MAX`: not emitted as a global).
    global_rank: Vec<u32>,
}

/// Length of a name in a string table, with its `prefix:` and terminator.
fn name_len(prefix: Option<&str>, s: &str) -> u32 {
    if s.is_empty() {
        return 0;
    }
    (prefix.map_or(0, |p| p.len() + 1) + s.len() + 1) as u32
}

fn count(m: &Mod<'_>) -> Counts {
    let mut c = Counts {
        extra_align: 8,
        ..Counts::default()
    };
    let mut extra = 0u64;
    for sec in m.obj.sections.iter() {
        if !is_output(sec.kind) {
            continue;
        }
        c.sections += 1;
        c.shstr_bytes += name_len(None, sec.name);
        if sec.rel_len != 0 {
            c.rela_sections += 1;
            c.rela_bytes += 24 * u64::from(sec.rel_len);
            c.shstr_bytes += name_len(Some(".rela"), sec.name);
        }
        if sec.kind.entry_list() {
            extra = align_up(extra, sec.align) + sec.data.len() as u64;
            c.extra_align = c.extra_align.max(sec.align);
        }
    }
    c.extra_bytes = extra;
    if m.bases_plt_len() > 0 {
        c.sections += 1;
        c.shstr_bytes += name_len(None, ".hcr.plt");
    }
    if m.bases_got_len() > 0 {
        c.sections += 1;
        c.shstr_bytes += name_len(None, ".hcr.got");
    }
    // File symbol, one section symbol per output section, locals.
    c.locals = 1 + c.sections;
    c.str_bytes = name_len(None, file_name(m));
    c.global_rank = vec![u32::MAX; m.obj.symbols.len()];
    for (si, s) in m.obj.symbols.iter().enumerate() {
        if s.is_global() {
            if m.is_own_definition(si) && !s.name.is_empty() && own_global_shndx(m, si).is_some() {
                c.global_rank[si] = c.globals;
                c.globals += 1;
                c.str_bytes += name_len(None, s.name);
            }
            continue;
        }
        if s.typ == STT_FILE || s.typ == STT_SECTION {
            continue;
        }
        let out = match s.shndx {
            Shndx::Sec(sec) => is_output(m.obj.sections[sec as usize].kind),
            Shndx::Abs => true,
            _ => false,
        };
        if out {
            c.locals += 1;
            c.str_bytes += name_len(Some(&m.obj.name), s.name);
        }
    }
    c
}

/// The name of a module's `STT_FILE` symbol.
fn file_name<'a>(m: &'a Mod<'_>) -> &'a str {
    if m.obj.source.is_empty() {
        m.obj.name.as_str()
    } else {
        m.obj.source.as_str()
    }
}

/// Whether own-definition global `si` is emitted, and where (`Some(None)`:
/// COMMON, emitted undefined; the runtime owns its storage).
fn own_global_shndx(m: &Mod<'_>, si: usize) -> Option<Option<u32>> {
    match m.obj.symbols[si].shndx {
        Shndx::Sec(sec) if is_output(m.obj.sections[sec as usize].kind) => Some(Some(sec)),
        Shndx::Abs => Some(None),
        Shndx::Common => Some(None),
        _ => None,
    }
}

/// Bases of one module's pieces in the whole file.
#[derive(Default, Clone, Copy, PartialEq)]
struct Bases {
    section: u32,
    rela_section: u32,
    local: u32,
    global: u32,
    rela_offset: u64,
    extra_offset: u64,
    /// Where the module's string-table fragments start in their tables.
    str_: u32,
    shstr: u32,
}

/// One module rendered: its final bytes of every table, each written to
/// the file where it lies.
struct Rendered {
    kept: KeptTables,
    /// The tables are the previous link's.
    reused: bool,
}

/// A module's section headers and their names: they hold file offsets and
/// addresses, so they are taken over only when nothing moved
/// ([`HeadersKey`]).
struct Headers {
    shdrs: Vec<u8>,
    rela_hdrs: Vec<u8>,
    shstr: Vec<u8>,
}

/// A module's symbols, names and relocations: nothing in them depends on
/// where anything lies in the file or the area, only on the module and on
/// the indices in [`TablesKey`], so a relink takes them over when those
/// are the same (see `link/reuse.rs`).
struct Tables {
    locals: Vec<u8>,
    globals: Vec<u8>,
    /// `.symtab_shndx` words of the locals and globals (only past 65,280
    /// sections).
    locals_x: Vec<u8>,
    globals_x: Vec<u8>,
    str_: Vec<u8>,
    rela: Vec<u8>,
}

/// Everything a module's [`Tables`] are rendered from besides its object.
#[derive(PartialEq)]
struct TablesKey {
    section: u32,
    local: u32,
    str_: u32,
    need_xindex: bool,
    counts: Counts,
    /// The symbol table index each global symbol's relocations name.
    globals: Vec<u32>,
}

/// Everything a module's [`Headers`] are rendered from besides its object
/// (the sizes include its PLT stubs and GOT).
#[derive(PartialEq)]
struct HeadersKey {
    bases: Bases,
    area_off: u64,
    init_off: u64,
    symtab_index: u32,
    places: RegionSizes,
    sizes: RegionSizes,
}

/// A module's tables and headers with what they were rendered from, kept
/// for the next link.
pub(crate) struct KeptTables {
    key: TablesKey,
    tables: Tables,
    headers_key: HeadersKey,
    headers: Headers,
}

struct FileLayout {
    area_off: u64,
    init_off: u64,
    symtab_index: u32,
    need_xindex: bool,
    first_host: u32,
}

/// A string table fragment that knows where it starts in its table.
struct StrOut {
    base: u32,
    data: Vec<u8>,
}

impl StrOut {
    /// Adds `s` (optionally `prefix:s`); returns its offset in the table
    /// (0 for an empty name: "no name").
    fn add(&mut self, prefix: Option<&str>, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        let at = self.base + self.data.len() as u32;
        if let Some(p) = prefix {
            self.data.extend_from_slice(p.as_bytes());
            self.data.push(b':');
        }
        self.data.extend_from_slice(s.as_bytes());
        self.data.push(0);
        at
    }
}

fn put_shdr(out: &mut Vec<u8>, h: &Shdr) {
    out.extend_from_slice(&h.name.to_le_bytes());
    out.extend_from_slice(&h.sh_type.to_le_bytes());
    out.extend_from_slice(&h.flags.to_le_bytes());
    out.extend_from_slice(&h.addr.to_le_bytes());
    out.extend_from_slice(&h.offset.to_le_bytes());
    out.extend_from_slice(&h.size.to_le_bytes());
    out.extend_from_slice(&h.link.to_le_bytes());
    out.extend_from_slice(&h.info.to_le_bytes());
    out.extend_from_slice(&h.align.to_le_bytes());
    out.extend_from_slice(&h.entsize.to_le_bytes());
}

/// Appends one `Elf64_Sym` (and its `.symtab_shndx` word when needed).
fn put_sym(out: &mut Vec<u8>, x: &mut Vec<u8>, need_xindex: bool, s: &OutSym) {
    let (st_shndx, xi) = match s.shndx {
        ABS => (SHN_ABS, 0),
        v if v >= SHN_LORESERVE => (SHN_XINDEX, v),
        v => (v as u16, v),
    };
    out.extend_from_slice(&s.name.to_le_bytes());
    out.push(s.info);
    out.push(0);
    out.extend_from_slice(&st_shndx.to_le_bytes());
    out.extend_from_slice(&s.value.to_le_bytes());
    out.extend_from_slice(&s.size.to_le_bytes());
    if need_xindex {
        x.extend_from_slice(&xi.to_le_bytes());
    }
}

/// Which output section each loaded section becomes (0: none), and the
/// input section of each output section.
fn output_sections(m: &Mod<'_>, b: &Bases) -> (Vec<u32>, Vec<u32>) {
    let mut out_idx = vec![0u32; m.obj.sections.len()];
    let mut owner = Vec::new();
    for (si, sec) in m.obj.sections.iter().enumerate() {
        if is_output(sec.kind) {
            out_idx[si] = b.section + owner.len() as u32;
            owner.push(si as u32);
        }
    }
    (out_idx, owner)
}

/// Renders module `mi`, taking over what `kept` holds for the same keys.
fn render(
    mi: usize,
    mods: &[Mod<'_>],
    counts: &[Counts],
    bases: &[Bases],
    fl: &FileLayout,
    kept: Option<KeptTables>,
) -> Rendered {
    let m = &mods[mi];
    let (c, b) = (&counts[mi], &bases[mi]);
    let key = tables_key(mi, mods, counts, bases, fl);
    let headers_key = HeadersKey {
        bases: *b,
        area_off: fl.area_off,
        init_off: fl.init_off,
        symtab_index: fl.symtab_index,
        places: m.bases,
        sizes: m.sizes,
    };
    let (old_tables, old_headers) = match kept {
        Some(k) => (
            (k.key == key).then_some(k.tables),
            (k.headers_key == headers_key).then_some(k.headers),
        ),
        None => (None, None),
    };
    let reused = old_tables.is_some();
    let sections = || output_sections(m, b);
    let (tables, headers) = match (old_tables, old_headers) {
        (Some(t), Some(h)) => (t, h),
        (t, h) => {
            let (out_idx, owner) = sections();
            (
                t.unwrap_or_else(|| render_tables(m, c, b, fl, &out_idx, &owner, &key)),
                h.unwrap_or_else(|| render_headers(m, c, b, fl, &out_idx)),
            )
        }
    };
    Rendered {
        kept: KeptTables {
            key,
            tables,
            headers_key,
            headers,
        },
        reused,
    }
}

/// The section headers of module `m`'s loaded sections, stubs and GOT,
/// and of its relocation sections, with their names.
fn render_headers(m: &Mod<'_>, c: &Counts, b: &Bases, fl: &FileLayout, out_idx: &[u32]) -> Headers {
    let mut shstr = StrOut {
        base: b.shstr,
        data: Vec::with_capacity(c.shstr_bytes as usize),
    };
    let mut shdrs = Vec::with_capacity(64 * c.sections as usize);
    let mut extra = b.extra_offset;
    for (si, sec) in m.obj.sections.iter().enumerate() {
        if out_idx[si] == 0 {
            continue;
        }
        let (addr, offset) = match sec.kind {
            SecKind::Text | SecKind::Rodata | SecKind::EhFrame => {
                let a = sec_area_offset(m, si).unwrap_or(0);
                (a, fl.area_off + a)
            }
            SecKind::Data => (
                0,
                fl.init_off
                    + if sec.nobits {
                        0
                    } else {
                        m.bases.init + m.sec_off[si]
                    },
            ),
            _ => {
                extra = align_up(extra, sec.align);
                let at = extra;
                extra += sec.data.len() as u64;
                (0, at)
            }
        };
        put_shdr(
            &mut shdrs,
            &Shdr {
                name: shstr.add(None, sec.name),
                sh_type: sec.sh_type,
                flags: sec.flags & !SHF_GROUP,
                addr,
                offset,
                size: sec.size,
                align: sec.align,
                entsize: if matches!(sec.kind, SecKind::InitArray | SecKind::FiniArray) {
                    8
                } else {
                    0
                },
                ..Shdr::default()
            },
        );
    }
    stub_headers(m, fl, &mut shdrs, &mut shstr);
    let rela_hdrs = rela_headers(m, c, b, fl, out_idx, &mut shstr);
    debug_assert_eq!(shstr.data.len(), c.shstr_bytes as usize);
    Headers {
        shdrs,
        rela_hdrs,
        shstr: shstr.data,
    }
}

/// The headers of the module's PLT stubs and GOT (`.hcr.plt`, `.hcr.got`).
fn stub_headers(m: &Mod<'_>, fl: &FileLayout, shdrs: &mut Vec<u8>, shstr: &mut StrOut) {
    if m.bases_plt_len() > 0 {
        let a = m.bases.text + m.plt_at();
        put_shdr(
            shdrs,
            &Shdr {
                name: shstr.add(None, ".hcr.plt"),
                sh_type: SHT_PROGBITS,
                flags: SHF_ALLOC | SHF_EXECINSTR,
                addr: a,
                offset: fl.area_off + a,
                size: m.bases_plt_len(),
                align: 8,
                ..Shdr::default()
            },
        );
    }
    if m.bases_got_len() > 0 {
        let a = m.bases.rodata + m.got_at();
        put_shdr(
            shdrs,
            &Shdr {
                name: shstr.add(None, ".hcr.got"),
                sh_type: SHT_PROGBITS,
                flags: SHF_ALLOC,
                addr: a,
                offset: fl.area_off + a,
                size: m.bases_got_len(),
                align: 8,
                entsize: 8,
                ..Shdr::default()
            },
        );
    }
}

/// The headers of the module's relocation sections (their entries are in
/// [`Tables::rela`], in the same order).
fn rela_headers(
    m: &Mod<'_>,
    c: &Counts,
    b: &Bases,
    fl: &FileLayout,
    out_idx: &[u32],
    shstr: &mut StrOut,
) -> Vec<u8> {
    let mut rela_hdrs = Vec::with_capacity(64 * c.rela_sections as usize);
    let mut offset = b.rela_offset;
    for (si, sec) in m.obj.sections.iter().enumerate() {
        let o = out_idx[si];
        if o == 0 || sec.rel_len == 0 {
            continue;
        }
        let size = 24 * u64::from(sec.rel_len);
        put_shdr(
            &mut rela_hdrs,
            &Shdr {
                name: shstr.add(Some(".rela"), sec.name),
                sh_type: SHT_RELA,
                flags: SHF_INFO_LINK,
                offset,
                size,
                link: fl.symtab_index,
                info: o,
                align: 8,
                entsize: 24,
                ..Shdr::default()
            },
        );
        offset += size;
    }
    rela_hdrs
}

/// What module `mi`'s tables are rendered from: its bases, its counts, and
/// the symbol each of its global symbols names in the output (the
/// definition in use, in its module's globals, or a host symbol).
fn tables_key(
    mi: usize,
    mods: &[Mod<'_>],
    counts: &[Counts],
    bases: &[Bases],
    fl: &FileLayout,
) -> TablesKey {
    let m = &mods[mi];
    let global_index = |si: usize| -> u32 {
        let (dm, ds) = m.global_def[si];
        if (dm, ds) != NO_DEF {
            let r = counts[dm as usize].global_rank[ds as usize];
            if r != u32::MAX {
                return bases[dm as usize].global + r;
            }
        }
        match m.host_of(si) {
            Some(h) => fl.first_host + h,
            None => 0,
        }
    };
    let b = &bases[mi];
    TablesKey {
        section: b.section,
        local: b.local,
        str_: b.str_,
        need_xindex: fl.need_xindex,
        counts: counts[mi].clone(),
        globals: (0..m.obj.symbols.len())
            .map(|si| match m.obj.symbols[si].is_global() {
                true => global_index(si),
                false => 0,
            })
            .collect(),
    }
}

/// Module `m`'s symbols (locals: a file symbol, a section symbol per
/// output section, its own locals; then its globals), their names, and its
/// relocations.
fn render_tables(
    m: &Mod<'_>,
    c: &Counts,
    b: &Bases,
    fl: &FileLayout,
    out_idx: &[u32],
    owner: &[u32],
    key: &TablesKey,
) -> Tables {
    let xi = fl.need_xindex;
    let mut str_ = StrOut {
        base: b.str_,
        data: Vec::with_capacity(c.str_bytes as usize),
    };
    let mut locals = Vec::with_capacity(24 * c.locals as usize);
    let mut locals_x = Vec::with_capacity(if xi { 4 * c.locals as usize } else { 0 });
    let mut n_locals = 0u32;
    let mut local = |s: &OutSym, n: &mut u32| {
        put_sym(&mut locals, &mut locals_x, xi, s);
        *n += 1;
        b.local + *n - 1
    };
    local(
        &OutSym {
            name: str_.add(None, file_name(m)),
            info: STT_FILE,
            shndx: ABS,
            value: 0,
            size: 0,
        },
        &mut n_locals,
    );
    let mut sec_sym = vec![0u32; m.obj.sections.len()];
    for i in 0..c.sections {
        let idx = local(
            &OutSym {
                name: 0,
                info: STT_SECTION,
                shndx: b.section + i,
                value: 0,
                size: 0,
            },
            &mut n_locals,
        );
        if let Some(&si) = owner.get(i as usize) {
            sec_sym[si as usize] = idx;
        }
    }
    let mut sym_map = vec![0u32; m.obj.symbols.len()];
    let mut globals = Vec::with_capacity(24 * c.globals as usize);
    let mut globals_x = Vec::with_capacity(if xi { 4 * c.globals as usize } else { 0 });
    for (si, s) in m.obj.symbols.iter().enumerate() {
        if s.is_global() {
            if c.global_rank[si] != u32::MAX {
                // COMMON storage lives in the runtime: emitted undefined.
                let shndx = match own_global_shndx(m, si) {
                    Some(Some(sec)) => out_idx[sec as usize],
                    _ if s.shndx == Shndx::Common => 0,
                    _ => ABS,
                };
                put_sym(
                    &mut globals,
                    &mut globals_x,
                    xi,
                    &OutSym {
                        name: str_.add(None, s.name),
                        info: (s.bind << 4) | s.typ,
                        shndx,
                        value: s.value,
                        size: s.size,
                    },
                );
            }
            continue;
        }
        if s.typ == STT_SECTION {
            if let Shndx::Sec(sec) = s.shndx {
                sym_map[si] = sec_sym[sec as usize];
            }
            continue;
        }
        if s.typ == STT_FILE {
            continue;
        }
        let shndx = match s.shndx {
            Shndx::Sec(sec) if out_idx[sec as usize] != 0 => out_idx[sec as usize],
            Shndx::Abs => ABS,
            _ => continue,
        };
        sym_map[si] = local(
            &OutSym {
                name: str_.add(Some(&m.obj.name), s.name),
                info: (STB_LOCAL << 4) | s.typ,
                shndx,
                value: s.value,
                size: s.size,
            },
            &mut n_locals,
        );
    }
    debug_assert_eq!(str_.data.len(), c.str_bytes as usize);
    Tables {
        locals,
        globals,
        locals_x,
        globals_x,
        str_: str_.data,
        rela: render_relocations(m, c, out_idx, &sym_map, &key.globals),
    }
}

/// Module `m`'s relocation entries, section by section: a global symbol
/// is named by `globals[symbol]`, a local one by `sym_map[symbol]`.
fn render_relocations(
    m: &Mod<'_>,
    c: &Counts,
    out_idx: &[u32],
    sym_map: &[u32],
    globals: &[u32],
) -> Vec<u8> {
    let mut rela = Vec::with_capacity(c.rela_bytes as usize);
    for (si, sec) in m.obj.sections.iter().enumerate() {
        if out_idx[si] == 0 || sec.rel_len == 0 {
            continue;
        }
        for r in m.obj.relocs(sec) {
            let idx = match m.obj.symbols[r.sym as usize].is_global() {
                true => globals[r.sym as usize],
                false => sym_map[r.sym as usize],
            };
            rela.extend_from_slice(&r.offset.to_le_bytes());
            rela.extend_from_slice(&((u64::from(idx) << 32) | u64::from(r.r_type)).to_le_bytes());
            rela.extend_from_slice(&r.addend.to_le_bytes());
        }
    }
    rela
}

/// What the image is written from.
pub(crate) struct Image<'a, 'd> {
    pub(crate) mods: &'a [Mod<'d>],
    /// Builds the manifest (while the modules render).
    pub(crate) make_manifest: &'a (dyn Fn() -> Manifest + Sync),
    pub(crate) applied: &'a Applied,
    pub(crate) debug: &'a crate::debug::DebugOut,
    /// Each module's tables from the previous link, if any (taken over
    /// when rendered from the same key).
    pub(crate) kept: Vec<Option<KeptTables>>,
}

/// What writing the image produced.
pub(crate) struct Written {
    pub(crate) size: u64,
    pub(crate) manifest: Manifest,
    /// Each module's tables, for the next link (empty with `skip_free`).
    pub(crate) tables: Vec<KeptTables>,
    /// How many modules' tables were taken over.
    pub(crate) tables_reused: usize,
}

/// Renders the image and hands it to `sink`; returns its size, the
/// manifest and each module's tables.
pub(crate) fn write_image(
    image: Image<'_, '_>,
    sink: &mut dyn crate::input::Sink,
    timer: &mut crate::link::model::Timer,
    skip_free: bool,
) -> std::io::Result<Written> {
    let Image {
        mods,
        make_manifest,
        applied,
        debug,
        mut kept,
    } = image;
    kept.resize_with(mods.len(), || None);
    let heads = Heads::new();
    let counts: Vec<Counts> = mods.par_iter().map(count).collect();
    let area_off = PAGE_SIZE;
    let init_off = align_up(area_off + applied.area.len() as u64, 16);
    let (bases, t) = table_bases(&counts, &heads, init_off + applied.init.len() as u64);
    // Tool-only debug sections (and their fixup table) sit between
    // `.strtab` and `.shstrtab`.
    let n_debug = if debug.sections.is_empty() {
        0
    } else {
        debug.sections.len() as u32 + 1
    };
    let nsec = t.symtab_index + 3 + n_debug; // symtab, strtab, debug, shstrtab
    let need_xindex = nsec + 1 >= SHN_LORESERVE;
    let fl = FileLayout {
        area_off,
        init_off,
        symtab_index: t.symtab_index,
        need_xindex,
        first_host: t.first_global + t.n_globals,
    };
    timer.lap("ELF counts");
    // Render every module in parallel, each into its final bytes, while the
    // manifest is built and encoded; then, while the manifest is still
    // being built, write what precedes the symbol table's host part (the
    // area, initial bytes, constructor tables, relocation sections and the
    // modules' symbols: nothing there depends on the manifest) when the
    // sink has a file for it.
    let early = sink.early();
    let ((manifest, (body, global_len)), (rendered, written)) = rayon::join(
        || {
            let m = make_manifest();
            let fixups = |mi: usize| hcr_image::ModuleFixups {
                area: &applied.fixups[applied.module_fixups[mi].range()],
                objects: &applied.object_fixups[applied.module_object_fixups[mi].range()],
            };
            let body = hcr_image::encode_body(&m, &fixups, &applied.init);
            (m, body)
        },
        || {
            let rendered: Vec<Rendered> = kept
                .into_par_iter()
                .enumerate()
                .map(|(mi, k)| render(mi, mods, &counts, &bases, &fl, k))
                .collect();
            let written = match early {
                None => Ok(0..0),
                Some(file) => {
                    let mut head = Vec::with_capacity(8 + 4 * rendered.len());
                    let end = early_pieces(&mut head, mods, applied, &bases, &rendered, &fl, &t);
                    let range = fl.area_off..end;
                    crate::input::write_at(file, range.clone(), &head).map(|()| range)
                }
            };
            (rendered, written)
        },
    );
    let written = written?;
    timer.lap("ELF render + manifest");
    let tails = Tails::new(&t, debug, &manifest, need_xindex);
    let layout = FileOffsets::new(
        &t,
        &tails,
        debug,
        &fl,
        nsec + u32::from(need_xindex),
        body.len(),
    );
    let header = Header {
        version: FORMAT_VERSION,
        checksum: hcr_image::checksum(&body[..global_len]),
        body_len: global_len as u64,
        area_file_offset: area_off,
        area_file_size: applied.area.len() as u64,
        init_file_offset: init_off,
        init_file_size: applied.init.len() as u64,
    };
    let fixed = FixedParts {
        ehdr: elf_header(&layout),
        mhdr: hcr_image::encode_manifest_header(&header),
        head_shdrs: head_headers(&layout, &heads),
        tail_shdrs: tail_headers(&layout, &tails, &t, &fl),
    };
    // The part written early must end where the host symbols start (the
    // rest of the file is laid out from there); anything else is a layout
    // bug, refused rather than written.
    let hosts_at = layout.symtab_off + 24 * u64::from(fl.first_host);
    if !written.is_empty() && written.end != hosts_at {
        return Err(std::io::Error::other(
            "the part of the image written early does not end where the host symbols start",
        ));
    }
    let pieces = pieces(&Parts {
        mods,
        totals: &t,
        written: written.clone(),
        applied,
        bases: &bases,
        rendered: &rendered,
        heads: &heads,
        tails: &tails,
        layout: &layout,
        fixed: &fixed,
        body: &body,
        fl: &fl,
    });
    timer.lap("ELF tables + checksum");
    sink.put(layout.total, &pieces, written)?;
    timer.lap("write");
    let size = layout.total;
    if skip_free {
        // The process ends now (see `LinkConfig::skip_free`).
        std::mem::forget(pieces);
        std::mem::forget((rendered, counts, bases, body, tails, fixed));
        return Ok(Written {
            size,
            manifest,
            tables: Vec::new(),
            tables_reused: 0,
        });
    }
    drop(pieces);
    Ok(Written {
        size,
        manifest,
        tables_reused: rendered.iter().filter(|r| r.reused).count(),
        tables: rendered.into_iter().map(|r| r.kept).collect(),
    })
}

/// The starts of the string tables: the null name, and in `.shstrtab` the
/// manifest's section name.
struct Heads {
    shstr: Vec<u8>,
    manifest_name: u32,
    strtab: &'static [u8],
}

impl Heads {
    fn new() -> Heads {
        let mut shstr: Vec<u8> = vec![0];
        let manifest_name = shstr.len() as u32;
        shstr.extend_from_slice(hcr_image::MANIFEST_SECTION.as_bytes());
        shstr.push(0);
        Heads {
            shstr,
            manifest_name,
            strtab: &[0],
        }
    }
}

/// What the modules' tables add up to.
struct Totals {
    /// Where the string tables' tails start (the modules' fragments end).
    str_end: u32,
    shstr_end: u32,
    rela_start: u64,
    rela_bytes: u64,
    first_global: u32,
    n_globals: u32,
    symtab_index: u32,
}

/// Every module's bases in the file's tables (prefix sums of the counts);
/// the constructor tables start at `extra_start`.
fn table_bases(counts: &[Counts], heads: &Heads, extra_start: u64) -> (Vec<Bases>, Totals) {
    let mut bases = Vec::with_capacity(counts.len());
    let mut acc = Bases {
        section: 2,
        local: 1,
        str_: heads.strtab.len() as u32,
        shstr: heads.shstr.len() as u32,
        ..Bases::default()
    };
    let mut extra_cursor = extra_start;
    let (mut n_secs, mut n_locals, mut n_globals, mut rela_bytes) = (0u32, 0u32, 0u32, 0u64);
    for c in counts {
        extra_cursor = align_up(extra_cursor, c.extra_align);
        bases.push(Bases {
            extra_offset: extra_cursor,
            ..acc
        });
        acc.section += c.sections;
        acc.local += c.locals;
        acc.str_ += c.str_bytes;
        acc.shstr += c.shstr_bytes;
        extra_cursor += c.extra_bytes;
        n_secs += c.sections;
        n_locals += c.locals;
        n_globals += c.globals;
        rela_bytes += c.rela_bytes;
    }
    let rela_start = align_up(extra_cursor, 8);
    let first_rela_section = 2 + n_secs;
    let first_global = 1 + n_locals;
    let (mut rs, mut ro, mut gl) = (first_rela_section, rela_start, first_global);
    for (b, c) in bases.iter_mut().zip(counts) {
        b.rela_section = rs;
        b.rela_offset = ro;
        b.global = gl;
        rs += c.rela_sections;
        ro += c.rela_bytes;
        gl += c.globals;
    }
    let totals = Totals {
        str_end: acc.str_,
        shstr_end: acc.shstr,
        rela_start,
        rela_bytes,
        first_global,
        n_globals,
        symtab_index: rs,
    };
    (bases, totals)
}

/// The string tables' tails (the tables' own section names; host names),
/// the host symbols, and the names of the sections after the modules'.
struct Tails {
    shstr: Vec<u8>,
    strtab: Vec<u8>,
    hosts_sym: Vec<u8>,
    hosts_x: Vec<u8>,
    symtab_name: u32,
    shndx_name: u32,
    strtab_name: u32,
    shstrtab_name: u32,
    debug_names: Vec<u32>,
    n_hosts: usize,
}

impl Tails {
    fn new(t: &Totals, debug: &crate::debug::DebugOut, manifest: &Manifest, xindex: bool) -> Tails {
        let mut shstr: Vec<u8> = Vec::new();
        let mut name = |s: &str| {
            let at = t.shstr_end + shstr.len() as u32;
            shstr.extend_from_slice(s.as_bytes());
            shstr.push(0);
            at
        };
        let symtab_name = name(".symtab");
        let shndx_name = name(".symtab_shndx");
        let strtab_name = name(".strtab");
        let shstrtab_name = name(".shstrtab");
        let debug_names: Vec<u32> = debug
            .sections
            .iter()
            .map(|(n, _)| n.as_str())
            .chain((!debug.sections.is_empty()).then_some(hcr_image::DEBUG_FIXUPS_SECTION))
            .map(&mut name)
            .collect();
        let mut strtab: Vec<u8> = Vec::new();
        let mut hosts_sym = Vec::with_capacity(24 * manifest.hosts.len());
        let mut hosts_x = Vec::new();
        for h in &manifest.hosts {
            let n = t.str_end + strtab.len() as u32;
            strtab.extend_from_slice(manifest.str(h.name).as_bytes());
            strtab.push(0);
            let bind = if h.weak { 2 } else { 1 };
            let sym = OutSym {
                name: n,
                info: bind << 4,
                shndx: 0,
                value: 0,
                size: 0,
            };
            put_sym(&mut hosts_sym, &mut hosts_x, xindex, &sym);
        }
        Tails {
            shstr,
            strtab,
            hosts_sym,
            hosts_x,
            symtab_name,
            shndx_name,
            strtab_name,
            shstrtab_name,
            debug_names,
            n_hosts: manifest.hosts.len(),
        }
    }
}

/// Where the tables after the modules' fragments lie in the file.
struct FileOffsets<'a> {
    symtab_off: u64,
    symtab_len: u64,
    shndx_off: u64,
    shndx_len: u64,
    strtab_off: u64,
    strtab_size: u64,
    /// Each debug section (and the debug fixup table): offset and bytes.
    debug_at: Vec<(u64, &'a [u8])>,
    shstrtab_off: u64,
    shstr_size: u64,
    manifest_off: u64,
    manifest_len: u64,
    shoff: u64,
    nsec: u32,
    total: u64,
}

impl<'a> FileOffsets<'a> {
    fn new(
        t: &Totals,
        tails: &Tails,
        debug: &'a crate::debug::DebugOut,
        fl: &FileLayout,
        nsec: u32,
        body_len: usize,
    ) -> FileOffsets<'a> {
        let n_syms = (fl.first_host as usize) + tails.n_hosts;
        let symtab_off = symtab_offset(t);
        let symtab_len = 24 * n_syms as u64;
        let shndx_off = align_up(symtab_off + symtab_len, 4);
        let shndx_len = if fl.need_xindex { 4 * n_syms as u64 } else { 0 };
        let strtab_off = shndx_off + shndx_len;
        let strtab_size = u64::from(t.str_end) + tails.strtab.len() as u64;
        let mut debug_at = Vec::with_capacity(tails.debug_names.len());
        let mut cursor = strtab_off + strtab_size;
        let fixups = (!debug.sections.is_empty()).then_some(debug.fixups.as_slice());
        for bytes in debug
            .sections
            .iter()
            .map(|(_, b)| b.as_slice())
            .chain(fixups)
        {
            cursor = align_up(cursor, 8);
            debug_at.push((cursor, bytes));
            cursor += bytes.len() as u64;
        }
        let shstrtab_off = cursor;
        let shstr_size = u64::from(t.shstr_end) + tails.shstr.len() as u64;
        let manifest_off = align_up(shstrtab_off + shstr_size, 8);
        let manifest_len = (hcr_image::HEADER_SIZE + body_len) as u64;
        let shoff = align_up(manifest_off + manifest_len, 8);
        FileOffsets {
            symtab_off,
            symtab_len,
            shndx_off,
            shndx_len,
            strtab_off,
            strtab_size,
            debug_at,
            shstrtab_off,
            shstr_size,
            manifest_off,
            manifest_len,
            shoff,
            nsec,
            total: shoff + 64 * u64::from(nsec),
        }
    }

    fn shstrtab_index(&self) -> u32 {
        self.nsec - 1
    }
}

/// The ELF header.
fn elf_header(l: &FileOffsets<'_>) -> Vec<u8> {
    let (nsec, shstrtab_index) = (l.nsec, l.shstrtab_index());
    let mut ehdr = vec![0u8; 64];
    ehdr[..4].copy_from_slice(b"\x7fELF");
    ehdr[4] = 2; // ELFCLASS64
    ehdr[5] = 1; // little-endian
    ehdr[6] = 1; // EV_CURRENT
    put16(&mut ehdr, 16, 1); // ET_REL
    put16(&mut ehdr, 18, 62); // EM_X86_64
    put32(&mut ehdr, 20, 1);
    put64(&mut ehdr, 40, l.shoff);
    put16(&mut ehdr, 52, 64);
    put16(&mut ehdr, 58, 64);
    let shnum = if nsec >= SHN_LORESERVE {
        0
    } else {
        nsec as u16
    };
    put16(&mut ehdr, 60, shnum);
    let shstrndx = if shstrtab_index >= SHN_LORESERVE {
        SHN_XINDEX
    } else {
        shstrtab_index as u16
    };
    put16(&mut ehdr, 62, shstrndx);
    ehdr
}

/// The section headers before the modules': the null one (holding the
/// section count and `.shstrtab`'s index when they do not fit the ELF
/// header) and the manifest's.
fn head_headers(l: &FileOffsets<'_>, heads: &Heads) -> Vec<u8> {
    let (nsec, shstrtab_index) = (l.nsec, l.shstrtab_index());
    let mut out = Vec::with_capacity(128);
    put_shdr(
        &mut out,
        &Shdr {
            size: if nsec >= SHN_LORESERVE {
                u64::from(nsec)
            } else {
                0
            },
            link: if shstrtab_index >= SHN_LORESERVE {
                shstrtab_index
            } else {
                0
            },
            ..Shdr::default()
        },
    );
    put_shdr(
        &mut out,
        &Shdr {
            name: heads.manifest_name,
            sh_type: SHT_PROGBITS,
            offset: l.manifest_off,
            size: l.manifest_len,
            align: 8,
            ..Shdr::default()
        },
    );
    out
}

/// The section headers after the modules': `.symtab`, [`.symtab_shndx`],
/// `.strtab`, the debug sections, `.shstrtab`.
fn tail_headers(l: &FileOffsets<'_>, tails: &Tails, t: &Totals, fl: &FileLayout) -> Vec<u8> {
    let strtab_index = t.symtab_index + 1 + u32::from(fl.need_xindex);
    let mut out = Vec::with_capacity(256);
    let mut put = |h: Shdr| put_shdr(&mut out, &h);
    put(Shdr {
        name: tails.symtab_name,
        sh_type: SHT_SYMTAB,
        offset: l.symtab_off,
        size: l.symtab_len,
        link: strtab_index,
        info: t.first_global,
        align: 8,
        entsize: 24,
        ..Shdr::default()
    });
    if fl.need_xindex {
        put(Shdr {
            name: tails.shndx_name,
            sh_type: SHT_SYMTAB_SHNDX,
            offset: l.shndx_off,
            size: l.shndx_len,
            link: t.symtab_index,
            align: 4,
            entsize: 4,
            ..Shdr::default()
        });
    }
    put(Shdr {
        name: tails.strtab_name,
        sh_type: SHT_STRTAB,
        offset: l.strtab_off,
        size: l.strtab_size,
        align: 1,
        ..Shdr::default()
    });
    for (&name, &(offset, bytes)) in tails.debug_names.iter().zip(&l.debug_at) {
        put(Shdr {
            name,
            sh_type: SHT_PROGBITS,
            offset,
            size: bytes.len() as u64,
            align: 1,
            ..Shdr::default()
        });
    }
    put(Shdr {
        name: tails.shstrtab_name,
        sh_type: SHT_STRTAB,
        offset: l.shstrtab_off,
        size: l.shstr_size,
        align: 1,
        ..Shdr::default()
    });
    out
}

/// The headers and blocks that are not the modules'.
struct FixedParts {
    ehdr: Vec<u8>,
    mhdr: Vec<u8>,
    head_shdrs: Vec<u8>,
    tail_shdrs: Vec<u8>,
}

/// Everything the file is made of.
struct Parts<'a, 'd> {
    mods: &'a [Mod<'d>],
    totals: &'a Totals,
    /// The part of the file already written (`early_pieces`), if any:
    /// left out of the pieces.
    written: std::ops::Range<u64>,
    applied: &'a Applied,
    bases: &'a [Bases],
    rendered: &'a [Rendered],
    heads: &'a Heads,
    tails: &'a Tails,
    layout: &'a FileOffsets<'a>,
    fixed: &'a FixedParts,
    body: &'a [u8],
    fl: &'a FileLayout,
}

/// The pieces of the file, in file order; every table is a run of module
/// fragments. What the writer already wrote (`Parts::written`) is left out.
fn pieces<'a>(p: &Parts<'a, '_>) -> Vec<(u64, &'a [u8])> {
    const NULL_X: [u8; 4] = [0; 4];
    let (l, r, fx) = (p.layout, p.rendered, p.fixed);
    let mut pieces: Vec<(u64, &[u8])> = Vec::with_capacity(24 + 12 * r.len());
    pieces.push((0, &fx.ehdr));
    let hosts_at = if p.written.is_empty() {
        early_pieces(&mut pieces, p.mods, p.applied, p.bases, r, p.fl, p.totals)
    } else {
        p.written.end
    };
    debug_assert_eq!(hosts_at, l.symtab_off + 24 * u64::from(p.fl.first_host));
    if !p.tails.hosts_sym.is_empty() {
        pieces.push((hosts_at, p.tails.hosts_sym.as_slice()));
    }
    let t = |f: fn(&Tables) -> &Vec<u8>| r.iter().map(move |r| f(&r.kept.tables).as_slice());
    if p.fl.need_xindex {
        run(
            &mut pieces,
            l.shndx_off,
            std::iter::once(&NULL_X[..])
                .chain(t(|t| &t.locals_x))
                .chain(t(|t| &t.globals_x))
                .chain(std::iter::once(p.tails.hosts_x.as_slice())),
        );
    }
    run(
        &mut pieces,
        l.strtab_off,
        std::iter::once(p.heads.strtab)
            .chain(t(|t| &t.str_))
            .chain(std::iter::once(p.tails.strtab.as_slice())),
    );
    pieces.extend(l.debug_at.iter().copied());
    let h = |f: fn(&Headers) -> &Vec<u8>| r.iter().map(move |r| f(&r.kept.headers).as_slice());
    run(
        &mut pieces,
        l.shstrtab_off,
        std::iter::once(p.heads.shstr.as_slice())
            .chain(h(|h| &h.shstr))
            .chain(std::iter::once(p.tails.shstr.as_slice())),
    );
    pieces.push((l.manifest_off, &fx.mhdr));
    pieces.push((l.manifest_off + fx.mhdr.len() as u64, p.body));
    run(
        &mut pieces,
        l.shoff,
        std::iter::once(fx.head_shdrs.as_slice())
            .chain(h(|h| &h.shdrs))
            .chain(h(|h| &h.rela_hdrs))
            .chain(std::iter::once(fx.tail_shdrs.as_slice())),
    );
    pieces
}

/// Adds the pieces from the load area up to the symbol table's host part:
/// the area, the initial bytes, the constructor tables, the relocation
/// sections and the null and module symbols. None of them depends on the
/// manifest, so they may be written while it is being built. Returns where
/// they end (where the host symbols start).
fn early_pieces<'a>(
    pieces: &mut Vec<(u64, &'a [u8])>,
    mods: &'a [Mod<'_>],
    applied: &'a Applied,
    bases: &[Bases],
    r: &'a [Rendered],
    fl: &FileLayout,
    totals: &Totals,
) -> u64 {
    const NULL_SYM: [u8; 24] = [0; 24];
    pieces.push((fl.area_off, &applied.area));
    pieces.push((fl.init_off, &applied.init));
    // Constructor tables are copied from the inputs as they are.
    for (m, b) in mods.iter().zip(bases) {
        let mut extra = b.extra_offset;
        for sec in m.obj.sections.iter() {
            if sec.kind.entry_list() {
                extra = align_up(extra, sec.align);
                pieces.push((extra, sec.data));
                extra += sec.data.len() as u64;
            }
        }
    }
    run(
        pieces,
        totals.rela_start,
        r.iter().map(|r| r.kept.tables.rela.as_slice()),
    );
    let t = |f: fn(&Tables) -> &Vec<u8>| r.iter().map(move |r| f(&r.kept.tables).as_slice());
    run(
        pieces,
        symtab_offset(totals),
        std::iter::once(&NULL_SYM[..])
            .chain(t(|t| &t.locals))
            .chain(t(|t| &t.globals)),
    )
}

/// Where `.symtab` starts: after the relocation sections.
fn symtab_offset(t: &Totals) -> u64 {
    align_up(t.rela_start + t.rela_bytes, 8)
}

/// Adds `parts` as consecutive pieces from `start`; returns where they end.
fn run<'a>(
    pieces: &mut Vec<(u64, &'a [u8])>,
    start: u64,
    parts: impl Iterator<Item = &'a [u8]>,
) -> u64 {
    let mut at = start;
    for p in parts {
        if !p.is_empty() {
            pieces.push((at, p));
            at += p.len() as u64;
        }
    }
    at
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
