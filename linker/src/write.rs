//! Writing the image: an ELF64 `ET_REL` file whose section bytes are the
//! laid-out load area, plus every module's symbols and relocations for
//! `readelf`, `objdump` and debuggers.
//!
//! File order: ELF header, `.hcr.manifest` (section 1), the load area (page
//! aligned, exactly as the loader copies it), initial bytes of writable
//! objects, copies of constructor tables, relocation sections, symbol table,
//! string tables, section headers.
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
use rustc_hash::FxHashMap;

use crate::link::{sec_area_offset, Applied, Mod};
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

/// A string table fragment; offsets are relative to the fragment until the
/// fragments are concatenated.
#[derive(Default)]
struct StrTab {
    data: Vec<u8>,
}

impl StrTab {
    /// Adds `s` (optionally `prefix:s`); returns its offset + 1 within the
    /// fragment (0 stays "no name").
    fn add(&mut self, prefix: Option<&str>, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        let at = self.data.len() as u32 + 1;
        if let Some(p) = prefix {
            self.data.extend_from_slice(p.as_bytes());
            self.data.push(b':');
        }
        self.data.extend_from_slice(s.as_bytes());
        self.data.push(0);
        at
    }
}

/// Resolves a fragment-relative name (0 = none) against the fragment base.
fn rebase_name(n: u32, base: u32) -> u32 {
    if n == 0 {
        0
    } else {
        base + n - 1
    }
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

/// Counts of one module's output, known before rendering.
#[derive(Default, Clone, Copy)]
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
}

fn count(m: &Mod<'_>) -> Counts {
    let mut c = Counts {
        extra_align: 8,
        ..Counts::default()
    };
    let mut extra = 0u64;
    for sec in &m.obj.sections {
        if !is_output(sec.kind) {
            continue;
        }
        c.sections += 1;
        if !sec.relocs.is_empty() {
            c.rela_sections += 1;
            c.rela_bytes += 24 * sec.relocs.len() as u64;
        }
        if matches!(
            sec.kind,
            SecKind::InitArray | SecKind::FiniArray | SecKind::OnReload
        ) {
            extra = align_up(extra, sec.align) + sec.data.len() as u64;
            c.extra_align = c.extra_align.max(sec.align);
        }
    }
    c.extra_bytes = extra;
    c.sections += u32::from(m.bases_plt_len() > 0) + u32::from(m.bases_got_len() > 0);
    // File symbol, one section symbol per output section, locals.
    c.locals = 1 + c.sections;
    for (si, s) in m.obj.symbols.iter().enumerate() {
        if s.is_global() {
            if m.is_own_definition(si) && !s.name.is_empty() && own_global_shndx(m, si).is_some() {
                c.globals += 1;
            }
            continue;
        }
        if s.typ == STT_FILE || s.typ == STT_SECTION {
            continue;
        }
        match s.shndx {
            Shndx::Sec(sec) if is_output(m.obj.sections[sec as usize].kind) => c.locals += 1,
            Shndx::Abs => c.locals += 1,
            _ => {}
        }
    }
    c
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
#[derive(Default, Clone, Copy)]
struct Bases {
    section: u32,
    rela_section: u32,
    local: u32,
    global: u32,
    rela_offset: u64,
    extra_offset: u64,
}

/// One module rendered: headers, symbols and string fragments.
struct Rendered {
    shdrs: Vec<Shdr>,
    rela_hdrs: Vec<Shdr>,
    shstr: StrTab,
    locals: Vec<OutSym>,
    globals: Vec<OutSym>,
    str_: StrTab,
    rela: Vec<u8>,
}

struct FileLayout {
    area_off: u64,
    init_off: u64,
    symtab_index: u32,
}

fn render(m: &Mod<'_>, b: &Bases, fl: &FileLayout, global_idx: &FxHashMap<&str, u32>) -> Rendered {
    let mut shstr = StrTab::default();
    let mut str_ = StrTab::default();
    let mut shdrs = Vec::new();
    let mut shdr_owner: Vec<usize> = Vec::new();
    let mut out_idx = vec![0u32; m.obj.sections.len()];
    let mut extra = b.extra_offset;
    for (si, sec) in m.obj.sections.iter().enumerate() {
        if !is_output(sec.kind) {
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
        out_idx[si] = b.section + shdrs.len() as u32;
        shdr_owner.push(si);
        shdrs.push(Shdr {
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
        });
    }
    if m.bases_plt_len() > 0 {
        let a = m.bases.text + m.plt_at();
        shdrs.push(Shdr {
            name: shstr.add(None, ".hcr.plt"),
            sh_type: SHT_PROGBITS,
            flags: SHF_ALLOC | SHF_EXECINSTR,
            addr: a,
            offset: fl.area_off + a,
            size: m.bases_plt_len(),
            align: 8,
            ..Shdr::default()
        });
    }
    if m.bases_got_len() > 0 {
        let a = m.bases.rodata + m.got_at();
        shdrs.push(Shdr {
            name: shstr.add(None, ".hcr.got"),
            sh_type: SHT_PROGBITS,
            flags: SHF_ALLOC,
            addr: a,
            offset: fl.area_off + a,
            size: m.bases_got_len(),
            align: 8,
            entsize: 8,
            ..Shdr::default()
        });
    }
    // Locals.
    let file = if m.obj.source.is_empty() {
        m.obj.name.as_str()
    } else {
        m.obj.source.as_str()
    };
    let mut locals = vec![OutSym {
        name: str_.add(None, file),
        info: STT_FILE,
        shndx: ABS,
        value: 0,
        size: 0,
    }];
    let mut sec_sym = vec![0u32; m.obj.sections.len()];
    for i in 0..shdrs.len() {
        if let Some(&si) = shdr_owner.get(i) {
            sec_sym[si] = b.local + locals.len() as u32;
        }
        locals.push(OutSym {
            name: 0,
            info: STT_SECTION,
            shndx: b.section + i as u32,
            value: 0,
            size: 0,
        });
    }
    let mut sym_map = vec![0u32; m.obj.symbols.len()];
    let mut globals = Vec::new();
    for (si, s) in m.obj.symbols.iter().enumerate() {
        if s.is_global() {
            if m.is_own_definition(si) && !s.name.is_empty() {
                if let Some(at) = own_global_shndx(m, si) {
                    // COMMON storage lives in the runtime: emitted undefined.
                    let shndx = match at {
                        Some(sec) => out_idx[sec as usize],
                        None if s.shndx == Shndx::Common => 0,
                        None => ABS,
                    };
                    globals.push(OutSym {
                        name: str_.add(None, s.name),
                        info: (s.bind << 4) | s.typ,
                        shndx,
                        value: s.value,
                        size: s.size,
                    });
                }
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
        sym_map[si] = b.local + locals.len() as u32;
        locals.push(OutSym {
            name: str_.add(Some(&m.obj.name), s.name),
            info: (STB_LOCAL << 4) | s.typ,
            shndx,
            value: s.value,
            size: s.size,
        });
    }
    // Relocations.
    let mut rela = Vec::new();
    let mut rela_hdrs = Vec::new();
    let mut offset = b.rela_offset;
    for (si, sec) in m.obj.sections.iter().enumerate() {
        let o = out_idx[si];
        if o == 0 || sec.relocs.is_empty() {
            continue;
        }
        let start = rela.len();
        for r in &sec.relocs {
            let s = &m.obj.symbols[r.sym as usize];
            let idx = if s.is_global() {
                global_idx.get(s.name).copied().unwrap_or(0)
            } else {
                sym_map[r.sym as usize]
            };
            rela.extend_from_slice(&r.offset.to_le_bytes());
            rela.extend_from_slice(&((u64::from(idx) << 32) | u64::from(r.r_type)).to_le_bytes());
            rela.extend_from_slice(&r.addend.to_le_bytes());
        }
        let size = (rela.len() - start) as u64;
        rela_hdrs.push(Shdr {
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
        });
        offset += size;
    }
    Rendered {
        shdrs,
        rela_hdrs,
        shstr,
        locals,
        globals,
        str_,
        rela,
    }
}

/// Writes the image into the sink's buffer; returns its size.
pub(crate) fn write_image(
    mods: &[Mod<'_>],
    manifest: &Manifest,
    applied: &Applied,
    area: &[u8],
    init: &[u8],
    sink: &mut dyn crate::input::Sink,
) -> std::io::Result<u64> {
    let body = hcr_image::encode_body(manifest, &applied.fixups, &applied.object_fixups);
    let manifest_len = (hcr_image::HEADER_SIZE + body.len()) as u64;
    let area_off = align_up(64 + manifest_len, PAGE_SIZE);
    let init_off = align_up(area_off + area.len() as u64, 16);

    // Counts, then bases (prefix sums).
    let counts: Vec<Counts> = mods.par_iter().map(count).collect();
    let mut bases = Vec::with_capacity(mods.len());
    let mut acc = Bases {
        section: 2,
        local: 1,
        ..Bases::default()
    };
    let mut extra_cursor = init_off + init.len() as u64;
    let (mut n_secs, mut n_locals, mut n_globals, mut rela_bytes) = (0u32, 0u32, 0u32, 0u64);
    for c in &counts {
        extra_cursor = align_up(extra_cursor, c.extra_align);
        bases.push(Bases {
            extra_offset: extra_cursor,
            ..acc
        });
        acc.section += c.sections;
        acc.local += c.locals;
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
    for (b, c) in bases.iter_mut().zip(&counts) {
        b.rela_section = rs;
        b.rela_offset = ro;
        b.global = gl;
        rs += c.rela_sections;
        ro += c.rela_bytes;
        gl += c.globals;
    }
    let n_rela_secs = rs - first_rela_section;
    let symtab_index = first_rela_section + n_rela_secs;
    let nsec = symtab_index + 3; // symtab, strtab, shstrtab
    let need_xindex = nsec + 1 >= SHN_LORESERVE;
    let nsec = nsec + u32::from(need_xindex);
    let fl = FileLayout {
        area_off,
        init_off,
        symtab_index,
    };

    // Global symbol indices: own definitions in module order, then hosts.
    let mut global_idx: FxHashMap<&str, u32> = FxHashMap::default();
    global_idx.reserve((n_globals as usize) + manifest.hosts.len());
    for (m, b) in mods.iter().zip(&bases) {
        let mut g = b.global;
        for (si, s) in m.obj.symbols.iter().enumerate() {
            if s.is_global()
                && m.is_own_definition(si)
                && !s.name.is_empty()
                && own_global_shndx(m, si).is_some()
            {
                global_idx.insert(s.name, g);
                g += 1;
            }
        }
    }
    let first_host = first_global + n_globals;
    for (i, h) in manifest.hosts.iter().enumerate() {
        global_idx.insert(manifest.str(h.name), first_host + i as u32);
    }

    // Render every module in parallel.
    let rendered: Vec<Rendered> = mods
        .par_iter()
        .zip(bases.par_iter())
        .map(|(m, b)| render(m, b, &fl, &global_idx))
        .collect();

    // Assemble string tables.
    let mut shstr: Vec<u8> = vec![0];
    let manifest_name = shstr.len() as u32;
    shstr.extend_from_slice(hcr_image::MANIFEST_SECTION.as_bytes());
    shstr.push(0);
    let mut shstr_bases = Vec::with_capacity(rendered.len());
    for r in &rendered {
        shstr_bases.push(shstr.len() as u32);
        shstr.extend_from_slice(&r.shstr.data);
    }
    let names = |s: &str, t: &mut Vec<u8>| {
        let at = t.len() as u32;
        t.extend_from_slice(s.as_bytes());
        t.push(0);
        at
    };
    let symtab_name = names(".symtab", &mut shstr);
    let shndx_name = names(".symtab_shndx", &mut shstr);
    let strtab_name = names(".strtab", &mut shstr);
    let shstrtab_name = names(".shstrtab", &mut shstr);
    let mut strtab: Vec<u8> = vec![0];
    let mut str_bases = Vec::with_capacity(rendered.len());
    for r in &rendered {
        str_bases.push(strtab.len() as u32);
        strtab.extend_from_slice(&r.str_.data);
    }
    let mut host_names = Vec::with_capacity(manifest.hosts.len());
    for h in &manifest.hosts {
        host_names.push(names(manifest.str(h.name), &mut strtab));
    }

    // File offsets of the tables.
    let n_syms = (first_host as usize) + manifest.hosts.len();
    let symtab_off = align_up(rela_start + rela_bytes, 8);
    let symtab_len = 24 * n_syms as u64;
    let shndx_off = align_up(symtab_off + symtab_len, 4);
    let shndx_len = if need_xindex { 4 * n_syms as u64 } else { 0 };
    let strtab_off = shndx_off + shndx_len;
    let shstrtab_off = strtab_off + strtab.len() as u64;
    let shoff = align_up(shstrtab_off + shstr.len() as u64, 8);
    let total = shoff + 64 * u64::from(nsec);
    let shstrtab_index = nsec - 1;

    let out = sink.buffer(total)?;
    // ELF header.
    out[..4].copy_from_slice(b"\x7fELF");
    out[4] = 2; // ELFCLASS64
    out[5] = 1; // little-endian
    out[6] = 1; // EV_CURRENT
    put16(out, 16, 1); // ET_REL
    put16(out, 18, 62); // EM_X86_64
    put32(out, 20, 1);
    put64(out, 40, shoff);
    put16(out, 52, 64);
    put16(out, 58, 64);
    put16(
        out,
        60,
        if nsec >= SHN_LORESERVE {
            0
        } else {
            nsec as u16
        },
    );
    put16(
        out,
        62,
        if shstrtab_index >= SHN_LORESERVE {
            SHN_XINDEX
        } else {
            shstrtab_index as u16
        },
    );
    // Manifest, area, init.
    let header = Header {
        version: FORMAT_VERSION,
        checksum: hcr_image::checksum(&body, area, init),
        body_len: body.len() as u64,
        area_file_offset: area_off,
        area_file_size: area.len() as u64,
        init_file_offset: init_off,
        init_file_size: init.len() as u64,
    };
    let msec = hcr_image::encode_manifest(&header, &body);
    out[64..64 + msec.len()].copy_from_slice(&msec);
    out[area_off as usize..area_off as usize + area.len()].copy_from_slice(area);
    out[init_off as usize..init_off as usize + init.len()].copy_from_slice(init);
    // Constructor tables and relocations, per module.
    for ((m, r), b) in mods.iter().zip(&rendered).zip(&bases) {
        let mut extra = b.extra_offset;
        for sec in &m.obj.sections {
            if matches!(
                sec.kind,
                SecKind::InitArray | SecKind::FiniArray | SecKind::OnReload
            ) {
                extra = align_up(extra, sec.align);
                out[extra as usize..extra as usize + sec.data.len()].copy_from_slice(sec.data);
                extra += sec.data.len() as u64;
            }
        }
        let at = b.rela_offset as usize;
        out[at..at + r.rela.len()].copy_from_slice(&r.rela);
    }
    // Symbols.
    let mut symtab = Vec::with_capacity(symtab_len as usize);
    let mut shndx_tab = Vec::with_capacity(shndx_len as usize);
    let mut put_sym = |s: &OutSym, name: u32| {
        let (st_shndx, x) = match s.shndx {
            ABS => (SHN_ABS, 0),
            v if v >= SHN_LORESERVE => (SHN_XINDEX, v),
            v => (v as u16, v),
        };
        symtab.extend_from_slice(&name.to_le_bytes());
        symtab.push(s.info);
        symtab.push(0);
        symtab.extend_from_slice(&st_shndx.to_le_bytes());
        symtab.extend_from_slice(&s.value.to_le_bytes());
        symtab.extend_from_slice(&s.size.to_le_bytes());
        if need_xindex {
            shndx_tab.extend_from_slice(&x.to_le_bytes());
        }
    };
    put_sym(
        &OutSym {
            name: 0,
            info: 0,
            shndx: 0,
            value: 0,
            size: 0,
        },
        0,
    );
    for (r, &sb) in rendered.iter().zip(&str_bases) {
        for s in &r.locals {
            put_sym(s, rebase_name(s.name, sb));
        }
    }
    for (r, &sb) in rendered.iter().zip(&str_bases) {
        for s in &r.globals {
            put_sym(s, rebase_name(s.name, sb));
        }
    }
    for (h, &n) in manifest.hosts.iter().zip(&host_names) {
        let bind = if h.weak { 2 } else { 1 };
        put_sym(
            &OutSym {
                name: 0,
                info: bind << 4,
                shndx: 0,
                value: 0,
                size: 0,
            },
            n,
        );
    }
    out[symtab_off as usize..symtab_off as usize + symtab.len()].copy_from_slice(&symtab);
    if need_xindex {
        out[shndx_off as usize..shndx_off as usize + shndx_tab.len()].copy_from_slice(&shndx_tab);
    }
    out[strtab_off as usize..strtab_off as usize + strtab.len()].copy_from_slice(&strtab);
    out[shstrtab_off as usize..shstrtab_off as usize + shstr.len()].copy_from_slice(&shstr);
    // Section headers.
    let mut at = shoff as usize;
    let mut put_shdr = |h: &Shdr, name: u32| {
        put32(out, at, name);
        put32(out, at + 4, h.sh_type);
        put64(out, at + 8, h.flags);
        put64(out, at + 16, h.addr);
        put64(out, at + 24, h.offset);
        put64(out, at + 32, h.size);
        put32(out, at + 40, h.link);
        put32(out, at + 44, h.info);
        put64(out, at + 48, h.align);
        put64(out, at + 56, h.entsize);
        at += 64;
    };
    put_shdr(
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
        0,
    );
    put_shdr(
        &Shdr {
            sh_type: SHT_PROGBITS,
            offset: 64,
            size: manifest_len,
            align: 8,
            ..Shdr::default()
        },
        manifest_name,
    );
    for (r, &b) in rendered.iter().zip(&shstr_bases) {
        for h in &r.shdrs {
            put_shdr(h, rebase_name(h.name, b));
        }
    }
    for (r, &b) in rendered.iter().zip(&shstr_bases) {
        for h in &r.rela_hdrs {
            put_shdr(h, rebase_name(h.name, b));
        }
    }
    let strtab_index = symtab_index + 1 + u32::from(need_xindex);
    put_shdr(
        &Shdr {
            sh_type: SHT_SYMTAB,
            offset: symtab_off,
            size: symtab_len,
            link: strtab_index,
            info: first_global,
            align: 8,
            entsize: 24,
            ..Shdr::default()
        },
        symtab_name,
    );
    if need_xindex {
        put_shdr(
            &Shdr {
                sh_type: SHT_SYMTAB_SHNDX,
                offset: shndx_off,
                size: shndx_len,
                link: symtab_index,
                align: 4,
                entsize: 4,
                ..Shdr::default()
            },
            shndx_name,
        );
    }
    put_shdr(
        &Shdr {
            sh_type: SHT_STRTAB,
            offset: strtab_off,
            size: strtab.len() as u64,
            align: 1,
            ..Shdr::default()
        },
        strtab_name,
    );
    put_shdr(
        &Shdr {
            sh_type: SHT_STRTAB,
            offset: shstrtab_off,
            size: shstr.len() as u64,
            align: 1,
            ..Shdr::default()
        },
        shstrtab_name,
    );
    Ok(total)
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
