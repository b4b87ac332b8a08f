//! Parsing one relocatable object into the linker's view of it.
//!
//! Zero-copy where it matters (section bytes borrow the mapped input); every
//! structural problem becomes a diagnostic, never a panic.

use std::borrow::Cow;

use object::elf;
use object::read::elf::{FileHeader, Rela as _, SectionHeader, Sym as _};
use object::Endianness;

use crate::arch::x86_64 as x86;
use crate::error::Diags;

type Hdr = elf::FileHeader64<Endianness>;

/// What the linker does with a section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SecKind {
    /// Not loaded (debug info, notes, symbol tables, relocations, groups).
    Skip,
    /// Code: read+execute region.
    Text,
    /// Read-only data, including RELRO (`.data.rel.ro*`).
    Rodata,
    /// `.eh_frame`: the unwind region.
    EhFrame,
    /// A writable object: persistent storage.
    Data,
    /// Constructors.
    InitArray,
    /// Destructors.
    FiniArray,
    /// `HCR_ON_RELOAD` entries.
    OnReload,
    /// Member of a COMDAT group another module already provides.
    Discarded,
    /// `.debug_*`: not loaded; kept in the image for debuggers, with its
    /// relocations resolved by `debug.rs`.
    Debug,
}

impl SecKind {
    /// Whose relocations the load plan scans and applies: everything but
    /// skipped, discarded and debug sections.
    pub(crate) fn relocated(self) -> bool {
        !matches!(self, SecKind::Skip | SecKind::Discarded | SecKind::Debug)
    }

    /// A list of entry points (constructors, destructors, on-reload
    /// blocks), kept apart from the loaded area.
    pub(crate) fn entry_list(self) -> bool {
        matches!(
            self,
            SecKind::InitArray | SecKind::FiniArray | SecKind::OnReload
        )
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Rel {
    pub offset: u64,
    pub r_type: u32,
    pub sym: u32,
    pub addend: i64,
}

#[derive(Clone)]
pub(crate) struct Sec<'d> {
    pub name: &'d str,
    pub sh_type: u32,
    pub flags: u64,
    pub kind: SecKind,
    pub nobits: bool,
    pub size: u64,
    pub align: u64,
    pub data: &'d [u8],
    /// The section's relocations: `ObjFile::rels[rel_start..][..rel_len]`.
    pub rel_start: u32,
    pub rel_len: u32,
    /// `.init_array.NNNNN` priority (65536 when none).
    pub priority: u32,
}

impl Sec<'_> {
    /// A thread-local section (`.tdata*`, `.tbss*`): its variables get one
    /// copy per thread.
    pub fn is_tls(&self) -> bool {
        self.flags & elf::SHF_TLS.0 != 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shndx {
    Undef,
    Abs,
    Common,
    Sec(u32),
}

#[derive(Clone, Debug)]
pub(crate) struct Sym<'d> {
    pub name: &'d str,
    pub bind: u8,
    /// `STV_*` (the low bits of `st_other`).
    pub vis: u8,
    pub typ: u8,
    pub shndx: Shndx,
    pub value: u64,
    pub size: u64,
}

impl Sym<'_> {
    pub fn is_global(&self) -> bool {
        self.bind == elf::STB_GLOBAL.0 || self.bind == elf::STB_WEAK.0 || self.bind == 10
    }
    pub fn is_weak(&self) -> bool {
        self.bind == elf::STB_WEAK.0
    }
    /// `STV_HIDDEN` or `STV_INTERNAL`: global to the link, not exported
    /// (what a native executable's `-Wl,-E` leaves out).
    pub fn is_hidden(&self) -> bool {
        self.vis == elf::STV_HIDDEN.0 || self.vis == elf::STV_INTERNAL.0
    }
}

#[derive(Clone)]
pub(crate) struct Group<'d> {
    pub signature: &'d str,
    pub members: Vec<u32>,
}

pub(crate) struct ObjFile<'d> {
    pub path: String,
    pub name: String,
    pub data: &'d [u8],
    pub mtime_ns: i64,
    pub source: String,
    /// Borrowed from a kept parse (see `parsed.rs`) until a link changes a
    /// section's kind (a discarded COMDAT copy): then this link's own copy.
    pub sections: Cow<'d, [Sec<'d>]>,
    /// Borrowed from a kept parse, as are the groups.
    pub symbols: Cow<'d, [Sym<'d>]>,
    pub groups: Cow<'d, [Group<'d>]>,
    /// Every section's relocations, one run per section (one allocation per
    /// object rather than one per section).
    pub rels: Cow<'d, [Rel]>,
    /// A member of an archive (a library's object, which the user does not
    /// edit): it may be built without -ffunction-sections and
    /// -fdata-sections.
    pub member: bool,
}

impl<'d> ObjFile<'d> {
    /// The relocations of `sec`.
    pub fn relocs(&self, sec: &Sec<'d>) -> &[Rel] {
        let start = sec.rel_start as usize;
        self.rels
            .get(start..start + sec.rel_len as usize)
            .unwrap_or(&[])
    }
}

fn utf8(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or("<non-UTF-8 name>")
}

fn classify(name: &str, sh_type: u32, flags: u64) -> SecKind {
    let alloc = flags & elf::SHF_ALLOC.0 != 0;
    let write = flags & elf::SHF_WRITE.0 != 0;
    let exec = flags & elf::SHF_EXECINSTR.0 != 0;
    if name == ".hcr_on_reload" {
        return SecKind::OnReload;
    }
    if !alloc && name.starts_with(".debug_") && sh_type == elf::SHT_PROGBITS.0 {
        // Compressed (`-gz`): not read; the link names the module in a
        // warning (`compressed_debug_warnings`).
        if flags & elf::SHF_COMPRESSED.0 != 0 {
            return SecKind::Skip;
        }
        return SecKind::Debug;
    }
    if !alloc
        || sh_type == elf::SHT_GROUP.0
        || sh_type == elf::SHT_RELA.0
        || sh_type == elf::SHT_NOTE.0
        || name.starts_with(".note")
    {
        return SecKind::Skip;
    }
    if sh_type == elf::SHT_INIT_ARRAY.0
        || sh_type == elf::SHT_PREINIT_ARRAY.0
        || name.starts_with(".init_array")
        || name.starts_with(".ctors")
    {
        return SecKind::InitArray;
    }
    if sh_type == elf::SHT_FINI_ARRAY.0
        || name.starts_with(".fini_array")
        || name.starts_with(".dtors")
    {
        return SecKind::FiniArray;
    }
    if name == ".eh_frame" {
        return SecKind::EhFrame;
    }
    if exec {
        return SecKind::Text;
    }
    if write && !name.starts_with(".data.rel.ro") {
        return SecKind::Data;
    }
    SecKind::Rodata
}

/// Why an object is unusable: the diagnostic's message and help.
struct Bad {
    message: String,
    help: &'static str,
}

fn bad(message: impl Into<String>, help: &'static str) -> Bad {
    Bad {
        message: message.into(),
        help,
    }
}

/// "The file is corrupt": the help most structural problems get.
const CORRUPT: &str = "the file is corrupt; rebuild it";
const TRUNCATED: &str = "the file is truncated or corrupt; rebuild it";

type SectionTable<'d> = object::read::elf::SectionTable<'d, Hdr, &'d [u8]>;

/// Parses `data` as an ELF64 x86-64 relocatable object. Problems go to
/// `diags`; `None` means the file is unusable.
pub(crate) fn parse_object<'d>(
    path: &str,
    name: &str,
    data: &'d [u8],
    mtime_ns: i64,
    diags: &mut Diags,
) -> Option<ObjFile<'d>> {
    match parse_parts(data) {
        Ok(p) => Some(ObjFile {
            path: path.to_string(),
            name: name.to_string(),
            data,
            mtime_ns,
            source: p.source,
            sections: Cow::Owned(p.secs),
            symbols: Cow::Owned(p.syms),
            groups: Cow::Owned(p.groups),
            rels: Cow::Owned(p.rels),
            member: false,
        }),
        Err(b) => {
            diags.push(path, name, None, b.message, b.help);
            None
        }
    }
}

/// What [`parse_parts`] reads of an object.
struct Parts<'d> {
    secs: Vec<Sec<'d>>,
    groups: Vec<Group<'d>>,
    rels: Vec<Rel>,
    syms: Vec<Sym<'d>>,
    /// The source file the first `STT_FILE` symbol names.
    source: String,
}

/// The sections, COMDAT groups, relocations, symbols and source file name
/// of the object `data`, each checked as it is read.
fn parse_parts(data: &[u8]) -> Result<Parts<'_>, Bad> {
    let (hdr, e) = check_header(data)?;
    let sections = hdr
        .sections(e, data)
        .map_err(|err| bad(format!("malformed section table: {err}"), TRUNCATED))?;
    let (mut secs, groups) = read_sections(data, e, &sections)?;
    check_not_slim_lto(&sections, e, &secs)?;
    let rels = read_relocations(data, e, &sections, &mut secs)?;
    let (syms, source) = read_symbols(data, e, &sections, &secs)?;
    check_relocations(&secs, &rels, &syms)?;
    Ok(Parts {
        secs,
        groups,
        rels,
        syms,
        source,
    })
}

/// The ELF header, if it is one of an x86-64 relocatable object.
fn check_header(data: &[u8]) -> Result<(&Hdr, Endianness), Bad> {
    if data.len() < 4 || data[..4] != *b"\x7fELF" {
        return Err(bad(
            "not an ELF object file",
            "pass object files (.o) built with `cc -c`, or `ar` archives of them",
        ));
    }
    if data.len() < 64 {
        return Err(bad(
            "truncated ELF header",
            "the file is incomplete; rebuild it",
        ));
    }
    if data[4] != elf::ELFCLASS64.0 {
        return Err(bad(
            "ELF class is 32-bit; hcr supports ELF64 x86-64 only",
            "build for x86-64 (no -m32)",
        ));
    }
    if data[5] != elf::ELFDATA2LSB.0 {
        return Err(bad(
            "big-endian ELF; hcr supports little-endian x86-64 only",
            "build for x86-64",
        ));
    }
    let hdr = Hdr::parse(data).map_err(|e| bad(format!("malformed ELF header: {e}"), CORRUPT))?;
    let e = hdr
        .endian()
        .map_err(|_| bad("malformed ELF header", "rebuild the object"))?;
    if hdr.e_machine(e) != elf::EM_X86_64 {
        return Err(bad(
            format!("wrong machine {} (hcr supports x86-64)", hdr.e_machine(e).0),
            "build the module for x86-64",
        ));
    }
    if hdr.e_type(e) != elf::ET_REL {
        return Err(bad(
            format!("not a relocatable object (ELF type {})", hdr.e_type(e).0),
            "pass the object files from `cc -c`, not executables or shared libraries",
        ));
    }
    Ok((hdr, e))
}

/// Every section, classified, with its bytes; and the COMDAT groups (C++).
fn read_sections<'d>(
    data: &'d [u8],
    e: Endianness,
    sections: &SectionTable<'d>,
) -> Result<(Vec<Sec<'d>>, Vec<Group<'d>>), Bad> {
    let mut secs = Vec::with_capacity(sections.len());
    // Parsed on the first COMDAT group, once.
    let mut symtab_for_groups = None;
    let mut groups = Vec::new();
    for (idx, sh) in sections.enumerate() {
        let sec = read_section(data, e, sections, idx.0, sh)?;
        if sec.sh_type == elf::SHT_GROUP.0 {
            if let Some(g) = symtab_for_groups
                .get_or_insert_with(|| sections.symbols(e, data, elf::SHT_SYMTAB).ok())
                .as_ref()
                .and_then(|st| parse_group(sec.data, sh.sh_info(e), st, e))
            {
                groups.push(g);
            }
        }
        secs.push(sec);
    }
    Ok((secs, groups))
}

/// Section `idx`, whose header is `sh`.
fn read_section<'d>(
    data: &'d [u8],
    e: Endianness,
    sections: &SectionTable<'d>,
    idx: usize,
    sh: &'d elf::SectionHeader64<Endianness>,
) -> Result<Sec<'d>, Bad> {
    let name = sections
        .section_name(e, sh)
        .map(utf8)
        .map_err(|err| bad(format!("section {idx}: bad name: {err}"), CORRUPT))?;
    let sh_type = sh.sh_type(e).0;
    let flags = sh.sh_flags(e).0;
    let nobits = sh_type == elf::SHT_NOBITS.0;
    let kind = match idx {
        0 => SecKind::Skip,
        _ => classify(name, sh_type, flags),
    };
    let data: &[u8] = if nobits || kind == SecKind::Skip && sh_type != elf::SHT_GROUP.0 {
        &[]
    } else {
        sh.data(e, data).map_err(|_| {
            bad(
                format!("section {name}: contents lie outside the file"),
                TRUNCATED,
            )
        })?
    };
    let priority = match kind {
        SecKind::InitArray | SecKind::FiniArray => name
            .rsplit('.')
            .next()
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(65536),
        _ => 65536,
    };
    if !nobits && kind != SecKind::Skip && data.len() as u64 != sh.sh_size(e) {
        return Err(bad(
            format!("section {name}: size mismatch"),
            "rebuild the object",
        ));
    }
    let align = sh.sh_addralign(e).max(1);
    if !(align.is_power_of_two() && align <= 4096) {
        return Err(bad(
            format!("section {name}: unsupported alignment"),
            "alignments up to 4096 are supported",
        ));
    }
    Ok(Sec {
        name,
        sh_type,
        flags,
        kind,
        nobits,
        size: sh.sh_size(e),
        align,
        data,
        rel_start: 0,
        rel_len: 0,
        priority,
    })
}

/// A slim LTO object holds compiler IR only (its sections of code and data
/// are empty); a fat one (`-ffat-lto-objects`) holds machine code as well,
/// which is linked as a plain object's (the IR sections are not loaded:
/// they are neither allocated nor code).
fn check_not_slim_lto(
    sections: &SectionTable<'_>,
    e: Endianness,
    secs: &[Sec<'_>],
) -> Result<(), Bad> {
    let lto = (sections.iter())
        .filter_map(|sh| sections.section_name(e, sh).ok())
        .any(|n| n.starts_with(b".gnu.lto_"));
    let has_code = secs.iter().any(|s| s.kind == SecKind::Text && s.size > 0);
    if lto && !has_code {
        return Err(bad(
            "LTO object: it holds compiler IR, not machine code",
            "build modules without -flto, or with -ffat-lto-objects as well (hcr links machine code)",
        ));
    }
    Ok(())
}

/// Every section's relocations in one vector, each section's run noted in
/// its `rel_start` and `rel_len`.
fn read_relocations(
    data: &[u8],
    e: Endianness,
    sections: &SectionTable<'_>,
    secs: &mut [Sec<'_>],
) -> Result<Vec<Rel>, Bad> {
    let n_rels: usize = sections
        .iter()
        .filter(|sh| sh.sh_type(e) == elf::SHT_RELA && sh.sh_entsize(e) == 24)
        .map(|sh| (sh.sh_size(e) / 24) as usize)
        .sum();
    let mut rels: Vec<Rel> = Vec::with_capacity(n_rels.min(data.len() / 24));
    for sh in sections.iter() {
        let Ok(Some((relas, _link))) = sh.rela(e, data) else {
            if sh.sh_type(e) == elf::SHT_RELA {
                return Err(bad("malformed relocation section", CORRUPT));
            }
            if sh.sh_type(e) == elf::SHT_REL {
                return Err(bad(
                    "REL relocations are not used on x86-64",
                    "rebuild the object with gcc or clang for x86-64",
                ));
            }
            continue;
        };
        let Some(tsec) = secs.get_mut(sh.sh_info(e) as usize) else {
            return Err(bad("relocation section targets a missing section", CORRUPT));
        };
        if tsec.kind == SecKind::Skip {
            continue;
        }
        if tsec.rel_len != 0 {
            return Err(bad(
                format!("section {}: more than one relocation section", tsec.name),
                CORRUPT,
            ));
        }
        let (Ok(start), Ok(len)) = (u32::try_from(rels.len()), u32::try_from(relas.len())) else {
            return Err(bad(
                "too many relocations",
                "split the module into smaller ones",
            ));
        };
        tsec.rel_start = start;
        tsec.rel_len = len;
        rels.extend(relas.iter().map(|r| Rel {
            offset: r.r_offset(e),
            r_type: r.r_type(e, false).0,
            sym: r.r_sym(e, false),
            addend: r.r_addend(e),
        }));
    }
    Ok(rels)
}

/// Every symbol, and the source file the first `STT_FILE` symbol names.
fn read_symbols<'d>(
    data: &'d [u8],
    e: Endianness,
    sections: &SectionTable<'d>,
    secs: &[Sec<'d>],
) -> Result<(Vec<Sym<'d>>, String), Bad> {
    let symtab = sections
        .symbols(e, data, elf::SHT_SYMTAB)
        .map_err(|err| bad(format!("malformed symbol table: {err}"), CORRUPT))?;
    let mut syms = Vec::with_capacity(symtab.len());
    let mut source = String::new();
    for (idx, s) in symtab.enumerate() {
        let name = symtab
            .symbol_name(e, s)
            .map(utf8)
            .map_err(|_| bad(format!("symbol {}: bad name", idx.0), CORRUPT))?;
        let raw = s.st_shndx(e);
        let shndx = match raw {
            elf::SHN_UNDEF => Shndx::Undef,
            elf::SHN_ABS => Shndx::Abs,
            elf::SHN_COMMON => Shndx::Common,
            _ => match symtab.symbol_section(e, s, idx) {
                Ok(Some(i)) if i.0 < secs.len() => Shndx::Sec(i.0 as u32),
                _ => return Err(bad(format!("symbol {name}: bad section index"), CORRUPT)),
            },
        };
        if let Shndx::Sec(i) = shndx {
            // Offsets into a section are added to its place in the image:
            // one past the end is the most a symbol may point to.
            let size = secs[i as usize].size;
            if s.st_value(e) > size {
                return Err(bad(
                    format!(
                        "symbol {name} lies outside its section (offset {:#x}, section size {size:#x})",
                        s.st_value(e),
                    ),
                    CORRUPT,
                ));
            }
        }
        let typ = s.st_type().0;
        if typ == elf::STT_FILE.0 && source.is_empty() {
            source = name.to_string();
        }
        syms.push(Sym {
            name,
            bind: s.st_bind().0,
            vis: s.st_other().0 & 3,
            typ,
            shndx,
            value: s.st_value(e),
            size: s.st_size(e),
        });
    }
    Ok((syms, source))
}

/// Every relocation names an existing symbol and lies inside bytes of its
/// section (a `.bss` section has none).
fn check_relocations(secs: &[Sec<'_>], rels: &[Rel], syms: &[Sym<'_>]) -> Result<(), Bad> {
    for sec in secs {
        let relocs = rels
            .get(sec.rel_start as usize..(sec.rel_start + sec.rel_len) as usize)
            .unwrap_or(&[]);
        if sec.nobits && !relocs.is_empty() {
            return Err(bad(
                format!(
                    "section {}: relocations in a section without contents",
                    sec.name
                ),
                CORRUPT,
            ));
        }
        if relocs.iter().any(|r| r.sym as usize >= syms.len()) {
            return Err(bad(
                format!("section {}: relocation names a missing symbol", sec.name),
                CORRUPT,
            ));
        }
        if let Some(r) = relocs.iter().find(|r| {
            r.offset
                .checked_add(x86::width(r.r_type) as u64)
                .is_none_or(|end| end > sec.size)
        }) {
            return Err(bad(
                format!(
                    "section {}: relocation at {:#x} lies outside the section",
                    sec.name, r.offset
                ),
                CORRUPT,
            ));
        }
    }
    Ok(())
}

fn parse_group<'d>(
    sdata: &'d [u8],
    sig_sym: u32,
    symtab: &object::read::elf::SymbolTable<'d, Hdr, &'d [u8]>,
    e: Endianness,
) -> Option<Group<'d>> {
    let words: Vec<u32> = sdata
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if words.first().copied()? & elf::GRP_COMDAT.0 == 0 {
        return None;
    }
    let sym = symtab.symbol(object::SymbolIndex(sig_sym as usize)).ok()?;
    let signature = utf8(symtab.symbol_name(e, sym).ok()?);
    Some(Group {
        signature,
        members: words[1..].to_vec(),
    })
}
