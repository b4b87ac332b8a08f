//! Writing the image: an ELF64 `ET_REL` file whose section bytes are the
//! laid-out load area, plus every module's symbols and relocations for
//! `readelf`, `objdump` and debuggers.
//!
//! File order: ELF header, `.hcr.manifest` (section 1), the load area (page
//! aligned, exactly as the loader copies it), initial bytes of writable
//! objects, copies of constructor tables, relocation sections, symbol table,
//! string tables, section headers.

use std::collections::HashMap;

use hcr_image::{Fixup, Header, Manifest, FORMAT_VERSION, PAGE_SIZE};

use crate::link::{sec_area_offset, Applied, AreaLayout, Mod};
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

struct OutSym {
    name: u32,
    info: u8,
    shndx: u32, // 0 = undef, u32::MAX = abs
    value: u64,
    size: u64,
}

struct StrTab {
    data: Vec<u8>,
}

impl StrTab {
    fn new() -> Self {
        StrTab { data: vec![0] }
    }
    fn add(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        let at = self.data.len() as u32;
        self.data.extend_from_slice(s.as_bytes());
        self.data.push(0);
        at
    }
}

fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a.max(1)) * a.max(1)
}

pub(crate) fn write_image(
    mods: &[Mod<'_>],
    manifest: &Manifest,
    applied: &Applied,
    area: &[u8],
    init: &[u8],
    lay: &AreaLayout,
) -> Vec<u8> {
    let fixups: &[Fixup] = &applied.fixups;
    let body = hcr_image::encode_body(manifest, fixups, &applied.object_fixups);
    let manifest_len = (hcr_image::HEADER_SIZE + body.len()) as u64;
    let area_off = align_up(64 + manifest_len, PAGE_SIZE);
    let init_off = align_up(area_off + area.len() as u64, 16);
    let mut cursor = init_off + init.len() as u64;

    let mut shstr = StrTab::new();
    let mut str_ = StrTab::new();
    let mut shdrs: Vec<Shdr> = vec![Shdr::default()];
    shdrs.push(Shdr {
        name: shstr.add(hcr_image::MANIFEST_SECTION),
        sh_type: SHT_PROGBITS,
        offset: 64,
        size: manifest_len,
        align: 8,
        ..Shdr::default()
    });
    // Loaded and table sections, per module.
    let mut out_idx: Vec<Vec<u32>> = Vec::with_capacity(mods.len());
    let mut extra: Vec<(u64, &[u8])> = Vec::new();
    let mut synth: Vec<(u32, u32)> = Vec::new(); // (plt idx, got idx) per module, 0 = none
    for m in mods {
        let mut idx = vec![0u32; m.obj.sections.len()];
        for (si, sec) in m.obj.sections.iter().enumerate() {
            let (addr, offset) = match sec.kind {
                SecKind::Text | SecKind::Rodata | SecKind::EhFrame => {
                    let a = sec_area_offset(m, si).unwrap_or(0);
                    (a, area_off + a)
                }
                SecKind::Data => (
                    0,
                    init_off
                        + if sec.nobits {
                            0
                        } else {
                            m.bases.init + m.sec_off[si]
                        },
                ),
                SecKind::InitArray | SecKind::FiniArray | SecKind::OnReload => {
                    cursor = align_up(cursor, sec.align);
                    let at = cursor;
                    extra.push((at, sec.data));
                    cursor += sec.data.len() as u64;
                    (0, at)
                }
                _ => continue,
            };
            idx[si] = shdrs.len() as u32;
            shdrs.push(Shdr {
                name: shstr.add(sec.name),
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
        let mut plt = 0;
        let mut got = 0;
        let (plt_len, got_len) = (m.bases_plt_len(), m.bases_got_len());
        if plt_len > 0 {
            plt = shdrs.len() as u32;
            let a = m.bases.text + m.plt_at();
            shdrs.push(Shdr {
                name: shstr.add(".hcr.plt"),
                sh_type: SHT_PROGBITS,
                flags: SHF_ALLOC | SHF_EXECINSTR,
                addr: a,
                offset: area_off + a,
                size: plt_len,
                align: 8,
                ..Shdr::default()
            });
        }
        if got_len > 0 {
            got = shdrs.len() as u32;
            let a = m.bases.rodata + m.got_at();
            shdrs.push(Shdr {
                name: shstr.add(".hcr.got"),
                sh_type: SHT_PROGBITS,
                flags: SHF_ALLOC,
                addr: a,
                offset: area_off + a,
                size: got_len,
                align: 8,
                entsize: 8,
                ..Shdr::default()
            });
        }
        synth.push((plt, got));
        out_idx.push(idx);
    }
    let _ = lay;

    // Symbols: locals of every module, then globals, then host symbols.
    let mut syms: Vec<OutSym> = vec![OutSym {
        name: 0,
        info: 0,
        shndx: 0,
        value: 0,
        size: 0,
    }];
    let mut sym_map: Vec<Vec<u32>> = Vec::with_capacity(mods.len());
    let mut sec_sym: Vec<HashMap<u32, u32>> = Vec::with_capacity(mods.len());
    for (mi, m) in mods.iter().enumerate() {
        let file = if m.obj.source.is_empty() {
            m.obj.name.clone()
        } else {
            m.obj.source.clone()
        };
        syms.push(OutSym {
            name: str_.add(&file),
            info: STT_FILE,
            shndx: u32::MAX,
            value: 0,
            size: 0,
        });
        let mut ss = HashMap::new();
        for (si, &o) in out_idx[mi].iter().enumerate() {
            if o != 0 {
                ss.insert(si as u32, syms.len() as u32);
                syms.push(OutSym {
                    name: 0,
                    info: STT_SECTION,
                    shndx: o,
                    value: 0,
                    size: 0,
                });
            }
        }
        for &o in [synth[mi].0, synth[mi].1].iter().filter(|&&o| o != 0) {
            syms.push(OutSym {
                name: 0,
                info: STT_SECTION,
                shndx: o,
                value: 0,
                size: 0,
            });
        }
        let mut map = vec![0u32; m.obj.symbols.len()];
        for (si, s) in m.obj.symbols.iter().enumerate() {
            if s.is_global() || s.typ == STT_FILE || s.typ == STT_SECTION {
                if s.typ == STT_SECTION {
                    if let Shndx::Sec(sec) = s.shndx {
                        map[si] = ss.get(&sec).copied().unwrap_or(0);
                    }
                }
                continue;
            }
            let shndx = match s.shndx {
                Shndx::Sec(sec) if out_idx[mi][sec as usize] != 0 => out_idx[mi][sec as usize],
                Shndx::Abs => u32::MAX,
                _ => continue,
            };
            map[si] = syms.len() as u32;
            syms.push(OutSym {
                name: str_.add(&format!("{}:{}", m.obj.name, s.name)),
                info: (STB_LOCAL << 4) | s.typ,
                shndx,
                value: s.value,
                size: s.size,
            });
        }
        sym_map.push(map);
        sec_sym.push(ss);
    }
    let first_global = syms.len() as u32;
    let mut global_idx: HashMap<&str, u32> = HashMap::new();
    for (mi, m) in mods.iter().enumerate() {
        for (si, s) in m.obj.symbols.iter().enumerate() {
            if !s.is_global() || s.name.is_empty() || global_idx.contains_key(s.name) {
                continue;
            }
            // Emit the winning definition only.
            let shndx = match s.shndx {
                Shndx::Sec(sec) if m.is_own_definition(si) => out_idx[mi][sec as usize],
                Shndx::Abs if m.is_own_definition(si) => u32::MAX,
                Shndx::Common if m.is_own_definition(si) => {
                    // COMMON storage lives in the runtime; emit as an undefined-size common.
                    0
                }
                _ => continue,
            };
            if shndx == 0 && s.shndx != Shndx::Common {
                continue;
            }
            global_idx.insert(s.name, syms.len() as u32);
            syms.push(OutSym {
                name: str_.add(s.name),
                info: (s.bind << 4) | s.typ,
                shndx,
                value: s.value,
                size: s.size,
            });
        }
    }
    for h in &manifest.hosts {
        global_idx.insert(h.name.as_str(), syms.len() as u32);
        syms.push(OutSym {
            name: str_.add(&h.name),
            info: ((if h.weak { 2 } else { 1 }) << 4),
            shndx: 0,
            value: 0,
            size: 0,
        });
    }
    // Relocation sections.
    cursor = align_up(cursor, 8);
    let mut rela_blobs: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut rela_hdrs = Vec::new();
    for (mi, m) in mods.iter().enumerate() {
        for (si, sec) in m.obj.sections.iter().enumerate() {
            let o = out_idx[mi][si];
            if o == 0 || sec.relocs.is_empty() {
                continue;
            }
            let mut blob = Vec::with_capacity(sec.relocs.len() * 24);
            for r in &sec.relocs {
                let s = &m.obj.symbols[r.sym as usize];
                let idx = if s.is_global() {
                    global_idx.get(s.name).copied().unwrap_or(0)
                } else {
                    sym_map[mi][r.sym as usize]
                };
                blob.extend_from_slice(&r.offset.to_le_bytes());
                blob.extend_from_slice(
                    &((u64::from(idx) << 32) | u64::from(r.r_type)).to_le_bytes(),
                );
                blob.extend_from_slice(&r.addend.to_le_bytes());
            }
            rela_hdrs.push(Shdr {
                name: shstr.add(&format!(".rela{}", sec.name)),
                sh_type: SHT_RELA,
                flags: SHF_INFO_LINK,
                offset: cursor,
                size: blob.len() as u64,
                info: o,
                align: 8,
                entsize: 24,
                ..Shdr::default()
            });
            rela_blobs.push((cursor, blob));
            cursor += rela_hdrs.last().map_or(0, |h: &Shdr| h.size);
        }
    }
    let _ = sec_sym;
    let symtab_idx = (shdrs.len() + rela_hdrs.len()) as u32;
    for h in &mut rela_hdrs {
        h.link = symtab_idx;
    }
    shdrs.extend(rela_hdrs);
    let nsec_pre = shdrs.len() as u32 + 3; // symtab, strtab, shstrtab
    let need_xindex = nsec_pre + 1 >= SHN_LORESERVE;
    // Symbol table.
    let symtab_off = cursor;
    let mut symtab = Vec::with_capacity(syms.len() * 24);
    let mut shndx_tab: Vec<u8> = Vec::new();
    for s in &syms {
        let (st_shndx, x) = match s.shndx {
            u32::MAX => (SHN_ABS, 0),
            v if v >= SHN_LORESERVE => (SHN_XINDEX, v),
            v => (v as u16, v),
        };
        symtab.extend_from_slice(&s.name.to_le_bytes());
        symtab.push(s.info);
        symtab.push(0);
        symtab.extend_from_slice(&st_shndx.to_le_bytes());
        symtab.extend_from_slice(&s.value.to_le_bytes());
        symtab.extend_from_slice(&s.size.to_le_bytes());
        if need_xindex {
            shndx_tab.extend_from_slice(
                &(if st_shndx == SHN_XINDEX || st_shndx < 0xff00 {
                    x
                } else {
                    0
                })
                .to_le_bytes(),
            );
        }
    }
    cursor += symtab.len() as u64;
    let strtab_idx = symtab_idx + 1 + u32::from(need_xindex);
    shdrs.push(Shdr {
        name: shstr.add(".symtab"),
        sh_type: SHT_SYMTAB,
        offset: symtab_off,
        size: symtab.len() as u64,
        link: strtab_idx,
        info: first_global,
        align: 8,
        entsize: 24,
        ..Shdr::default()
    });
    let mut shndx_off = 0;
    if need_xindex {
        cursor = align_up(cursor, 4);
        shndx_off = cursor;
        shdrs.push(Shdr {
            name: shstr.add(".symtab_shndx"),
            sh_type: SHT_SYMTAB_SHNDX,
            offset: cursor,
            size: shndx_tab.len() as u64,
            link: symtab_idx,
            align: 4,
            entsize: 4,
            ..Shdr::default()
        });
        cursor += shndx_tab.len() as u64;
    }
    let strtab_off = cursor;
    shdrs.push(Shdr {
        name: shstr.add(".strtab"),
        sh_type: SHT_STRTAB,
        offset: strtab_off,
        size: str_.data.len() as u64,
        align: 1,
        ..Shdr::default()
    });
    cursor += str_.data.len() as u64;
    let shstrtab_idx = shdrs.len() as u32;
    let shstr_name = shstr.add(".shstrtab");
    let shstrtab_off = cursor;
    shdrs.push(Shdr {
        name: shstr_name,
        sh_type: SHT_STRTAB,
        offset: shstrtab_off,
        size: shstr.data.len() as u64,
        align: 1,
        ..Shdr::default()
    });
    cursor += shstr.data.len() as u64;
    let shoff = align_up(cursor, 8);
    let nsec = shdrs.len() as u32;
    if nsec >= SHN_LORESERVE {
        shdrs[0].size = u64::from(nsec);
    }
    if shstrtab_idx >= SHN_LORESERVE {
        shdrs[0].link = shstrtab_idx;
    }
    let total = shoff + 64 * u64::from(nsec);

    // Emit.
    let mut out = vec![0u8; total as usize];
    // ELF header.
    out[..4].copy_from_slice(b"\x7fELF");
    out[4] = 2; // ELFCLASS64
    out[5] = 1; // little-endian
    out[6] = 1; // EV_CURRENT
    put16(&mut out, 16, 1); // ET_REL
    put16(&mut out, 18, 62); // EM_X86_64
    put32(&mut out, 20, 1);
    put64(&mut out, 40, shoff);
    put16(&mut out, 52, 64);
    put16(&mut out, 58, 64);
    put16(
        &mut out,
        60,
        if nsec >= SHN_LORESERVE {
            0
        } else {
            nsec as u16
        },
    );
    put16(
        &mut out,
        62,
        if shstrtab_idx >= SHN_LORESERVE {
            SHN_XINDEX
        } else {
            shstrtab_idx as u16
        },
    );
    // Manifest.
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
    for (at, data) in extra {
        out[at as usize..at as usize + data.len()].copy_from_slice(data);
    }
    for (at, blob) in rela_blobs {
        out[at as usize..at as usize + blob.len()].copy_from_slice(&blob);
    }
    out[symtab_off as usize..symtab_off as usize + symtab.len()].copy_from_slice(&symtab);
    if need_xindex {
        out[shndx_off as usize..shndx_off as usize + shndx_tab.len()].copy_from_slice(&shndx_tab);
    }
    out[strtab_off as usize..strtab_off as usize + str_.data.len()].copy_from_slice(&str_.data);
    out[shstrtab_off as usize..shstrtab_off as usize + shstr.data.len()]
        .copy_from_slice(&shstr.data);
    for (i, h) in shdrs.iter().enumerate() {
        let at = shoff as usize + 64 * i;
        put32(&mut out, at, h.name);
        put32(&mut out, at + 4, h.sh_type);
        put64(&mut out, at + 8, h.flags);
        put64(&mut out, at + 16, h.addr);
        put64(&mut out, at + 24, h.offset);
        put64(&mut out, at + 32, h.size);
        put32(&mut out, at + 40, h.link);
        put32(&mut out, at + 44, h.info);
        put64(&mut out, at + 48, h.align);
        put64(&mut out, at + 56, h.entsize);
    }
    out
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
