//! Debuggers see module code: the GDB JIT interface (which lldb reads too).
//!
//! For every loaded image generation the runtime builds an in-memory ELF
//! object whose sections carry run-time addresses: `.text` (no bytes; the
//! code is in the process) spanning the image's code, a copy of the image's
//! relocated `.eh_frame` at its run-time address (so `bt` unwinds through
//! module frames), a symbol for every function of every loaded module (also
//! without `-g`) and for every persistent global at its persistent address,
//! and, when modules were built with `-g`, the image's `.debug_*` sections
//! relocated to where code and globals really are (see
//! `hcr_image::DebugFixup`). It is registered through
//! `__jit_debug_descriptor` / `__jit_debug_register_code` (gdb manual, "JIT
//! Interface") and unregistered when the generation's image is freed.
//!
//! Cost: building the object copies the debug sections and applies their
//! fixups, so it is only done when a debugger can look: when one has put
//! its breakpoint on `__jit_debug_register_code` (gdb and lldb do so as
//! soon as they see the symbol, before the program runs or when they
//! attach), or always with `HCR_GDB_JIT=1` (for a debugger that attaches
//! later: it then finds every loaded image); `HCR_GDB_JIT=0` turns it off.

use std::sync::Mutex;

use hcr_image::{DebugTarget, Manifest, ModuleId};

/// `jit_actions_t` of the GDB JIT interface.
const JIT_NOACTION: u32 = 0;
const JIT_REGISTER_FN: u32 = 1;
const JIT_UNREGISTER_FN: u32 = 2;

/// `struct jit_code_entry`.
#[repr(C)]
struct JitCodeEntry {
    next: *mut JitCodeEntry,
    prev: *mut JitCodeEntry,
    symfile_addr: *const u8,
    symfile_size: u64,
}

/// `struct jit_descriptor`, read by the debugger.
#[repr(C)]
pub struct JitDescriptor {
    version: u32,
    action_flag: u32,
    relevant_entry: *mut JitCodeEntry,
    first_entry: *mut JitCodeEntry,
}

/// The descriptor debuggers look up by name.
#[no_mangle]
#[used]
pub static mut __jit_debug_descriptor: JitDescriptor = JitDescriptor {
    version: 1,
    action_flag: JIT_NOACTION,
    relevant_entry: std::ptr::null_mut(),
    first_entry: std::ptr::null_mut(),
};

/// The function debuggers put a breakpoint in: called after every change
/// of the descriptor. Never inlined, never folded with another function.
#[no_mangle]
#[inline(never)]
pub extern "C" fn __jit_debug_register_code() {
    // SAFETY: an empty asm statement with no operands: it keeps the
    // function's body (and so its address) distinct and does nothing.
    unsafe { std::arch::asm!("", options(nostack, preserves_flags)) };
}

/// Serialises changes of the descriptor (the gdb protocol has no lock).
static LOCK: Mutex<()> = Mutex::new(());

/// One registered in-memory object; unregistered when dropped.
pub struct Registration {
    entry: *mut JitCodeEntry,
    _object: Box<[u8]>,
}

// SAFETY: the entry is only touched under `LOCK`; the object bytes are
// immutable once registered.
unsafe impl Send for Registration {}

impl Registration {
    /// Registers `object` (an ELF file) with any attached debugger.
    pub fn new(object: Vec<u8>) -> Registration {
        let object = object.into_boxed_slice();
        let entry = Box::into_raw(Box::new(JitCodeEntry {
            next: std::ptr::null_mut(),
            prev: std::ptr::null_mut(),
            symfile_addr: object.as_ptr(),
            symfile_size: object.len() as u64,
        }));
        let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the descriptor and every entry linked in it are changed
        // only under LOCK; `entry` is a fresh allocation that lives until
        // this registration is dropped, which unlinks it first.
        unsafe {
            let d = &raw mut __jit_debug_descriptor;
            let first = (*d).first_entry;
            (*entry).next = first;
            if !first.is_null() {
                (*first).prev = entry;
            }
            (*d).first_entry = entry;
            (*d).relevant_entry = entry;
            (*d).action_flag = JIT_REGISTER_FN;
        }
        __jit_debug_register_code();
        Registration {
            entry,
            _object: object,
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: as in `new`: under LOCK, `self.entry` is linked in the
        // descriptor's list; it is unlinked, announced, then freed.
        unsafe {
            let d = &raw mut __jit_debug_descriptor;
            let e = self.entry;
            if (*e).prev.is_null() {
                (*d).first_entry = (*e).next;
            } else {
                (*(*e).prev).next = (*e).next;
            }
            if !(*e).next.is_null() {
                (*(*e).next).prev = (*e).prev;
            }
            (*d).relevant_entry = e;
            (*d).action_flag = JIT_UNREGISTER_FN;
            __jit_debug_register_code();
            (*d).relevant_entry = std::ptr::null_mut();
            (*d).action_flag = JIT_NOACTION;
            drop(Box::from_raw(e));
        }
    }
}

/// Copies of the objects registered now, newest first (what a debugger
/// attaching now would read).
pub fn registered_objects() -> Vec<Vec<u8>> {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::new();
    // SAFETY: under LOCK the list is consistent and every entry points at
    // its registration's live object bytes.
    unsafe {
        let d = &raw const __jit_debug_descriptor;
        let mut e = (*d).first_entry;
        while !e.is_null() {
            let bytes = std::slice::from_raw_parts((*e).symfile_addr, (*e).symfile_size as usize);
            out.push(bytes.to_vec());
            e = (*e).next;
        }
    }
    out
}

/// True when this load should be registered (see the module docs).
pub fn wanted() -> bool {
    match std::env::var_os("HCR_GDB_JIT") {
        Some(v) if v == "0" => false,
        Some(v) if v == "1" => true,
        _ => debugger_breakpoint(),
    }
}

/// True when a debugger has put its breakpoint (`int3`) on
/// `__jit_debug_register_code`, as gdb and lldb do while the program runs
/// (a one-byte read: loads without a debugger pay nothing else).
fn debugger_breakpoint() -> bool {
    let f = __jit_debug_register_code as extern "C" fn() as *const u8;
    // SAFETY: the first byte of a function of this program: mapped and
    // readable (text); a debugger may change it concurrently, hence the
    // volatile read of a single byte.
    unsafe { std::ptr::read_volatile(f) == 0xcc }
}

/// Where the image's debug sections lie in its file, and their fixups;
/// the bytes are read when the object is built, straight to their place
/// in it.
pub struct DebugSections {
    /// The image file (a duplicate descriptor: the file read at load).
    pub file: std::fs::File,
    /// `(name, file offset, size)` in the image's section order.
    pub sections: Vec<(String, u64, usize)>,
    /// Where the fixup table lies: file offset and size.
    fixups: (u64, usize),
}

impl DebugSections {
    /// File offset and size of the debug section `name`.
    pub fn find(&self, name: &str) -> Option<(u64, u64)> {
        self.sections
            .iter()
            .find(|s| s.0 == name)
            .map(|s| (s.1, s.2 as u64))
    }
}

fn read_at(file: &std::fs::File, off: u64, len: usize) -> Option<Vec<u8>> {
    use std::os::unix::fs::FileExt as _;
    let mut v = vec![0u8; len];
    file.read_exact_at(&mut v, off).ok()?;
    Some(v)
}

/// `e_shstrndx` when the index is in section header 0's `sh_link`.
const SHN_XINDEX: u32 = 0xffff;

/// Finds the `.debug_*` sections and reads their fixups. hcr-link puts
/// them last before `.shstrtab`, the fixup table right before it, so only
/// the tail of the section header table and of the name table is read (an
/// image without debug information costs three small reads). `None` when
/// the image has none or they are malformed (the object then carries
/// symbols and unwind tables only).
pub fn read_debug(file: &std::fs::File, file_size: u64) -> Option<DebugSections> {
    /// At most this many debug sections are looked for.
    const MAX_DEBUG: u32 = 64;
    let ehdr = read_at(file, 0, 64)?;
    let (shoff, mut shnum, mut shstrndx) = hcr_image::section_table(&ehdr)?;
    if shnum == 0 || shstrndx == SHN_XINDEX {
        // 65 280 sections or more (a large program built with
        // -ffunction-sections): the ELF header's fields overflow and the
        // real count and name table index are in section header 0.
        let (_, _, size, link) = hcr_image::section_header_fields(&read_at(file, shoff, 64)?)?;
        if shnum == 0 {
            shnum = u32::try_from(size).ok()?;
        }
        if shstrndx == SHN_XINDEX {
            shstrndx = link;
        }
    }
    if shnum == 0 || shstrndx == 0 || shstrndx >= shnum {
        return None;
    }
    if shoff.checked_add(u64::from(shnum) * 64)? > file_size {
        return None;
    }
    let first = shstrndx.saturating_sub(MAX_DEBUG + 1).max(1);
    let table = read_at(
        file,
        shoff + u64::from(first) * 64,
        (shstrndx + 1 - first) as usize * 64,
    )?;
    let hdr = |i: u32| hcr_image::section_header_fields(table.get((i - first) as usize * 64..)?);
    let in_file = |i: u32| -> Option<(u64, usize)> {
        let (_, off, size, _) = hdr(i)?;
        (off.checked_add(size)? <= file_size).then_some((off, usize::try_from(size).ok()?))
    };
    let (str_off, str_size) = in_file(shstrndx)?;
    // The names of the candidates lie at the end of the name table.
    let lowest = (first..shstrndx)
        .filter_map(|i| hdr(i).map(|h| h.0))
        .min()?;
    let lowest = (lowest as usize).min(str_size);
    let names = read_at(file, str_off + lowest as u64, str_size - lowest)?;
    let name_at = |i: u32| -> Option<String> {
        let n = (hdr(i)?.0 as usize).checked_sub(lowest)?;
        let b = names.get(n..)?;
        let end = b.iter().position(|&c| c == 0)?;
        Some(std::str::from_utf8(&b[..end]).ok()?.to_string())
    };
    let fixups_index = shstrndx - 1;
    if name_at(fixups_index)? != hcr_image::DEBUG_FIXUPS_SECTION {
        return None;
    }
    let fixups = in_file(fixups_index)?;
    let mut start = fixups_index;
    while start > first && name_at(start - 1)?.starts_with(".debug_") {
        start -= 1;
    }
    let mut sections = Vec::new();
    for i in start..fixups_index {
        let (off, size) = in_file(i)?;
        sections.push((name_at(i)?, off, size));
    }
    if sections.is_empty() {
        return None;
    }
    Some(DebugSections {
        // Kept for the reads that build a debugger's object or a crash
        // report's lines, after the reload has closed the file.
        file: file.try_clone().ok()?,
        sections,
        fixups,
    })
}

/// What the object describes.
pub struct ImageDesc<'a> {
    /// The loaded image's manifest.
    pub manifest: &'a Manifest,
    /// Run-time address of area offset 0 (the image is loaded in one
    /// piece).
    pub base: u64,
    /// Every module's relocated `.eh_frame`, joined into one table that
    /// describes the same code from `eh_frame_addr`.
    pub eh_frame: &'a [u8],
    /// Where `eh_frame` says it lies.
    pub eh_frame_addr: u64,
    /// Persistent address of each manifest object (0: not loaded).
    pub objects: &'a [u64],
    /// Debug sections, when the image has them.
    pub debug: Option<&'a DebugSections>,
}

const SHT_PROGBITS: u32 = 1;
const SHT_SYMTAB: u32 = 2;
const SHT_STRTAB: u32 = 3;
const SHT_NOBITS: u32 = 8;
const SHF_ALLOC: u64 = 2;
const SHF_EXECINSTR: u64 = 4;
const SHN_ABS: u16 = 0xfff1;

struct Shdr {
    name: u32,
    sh_type: u32,
    flags: u64,
    addr: u64,
    size: u64,
    link: u32,
    info: u32,
    align: u64,
    entsize: u64,
    /// Bytes in the file (none for `SHT_NOBITS`).
    data: Vec<u8>,
}

fn put_sym(out: &mut Vec<u8>, name: u32, info: u8, shndx: u16, value: u64, size: u64) {
    out.extend_from_slice(&name.to_le_bytes());
    out.push(info);
    out.push(0);
    out.extend_from_slice(&shndx.to_le_bytes());
    out.extend_from_slice(&value.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
}

impl Shdr {
    /// A section that is not loaded (`addr` 0), aligned to `align`.
    fn unloaded(name: u32, sh_type: u32, align: u64, data: Vec<u8>) -> Shdr {
        Shdr {
            name,
            sh_type,
            flags: 0,
            addr: 0,
            size: data.len() as u64,
            link: 0,
            info: 0,
            align,
            entsize: 0,
            data,
        }
    }
}

/// A string table under construction: a leading NUL, then each string
/// added with its NUL.
struct StrTab(Vec<u8>);

impl StrTab {
    fn new() -> StrTab {
        StrTab(vec![0])
    }

    /// Adds `s`; returns its offset.
    fn add(&mut self, s: &str) -> u32 {
        let at = self.0.len() as u32;
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
        at
    }
}

/// Builds the in-memory ELF object (`ET_REL`, section addresses at run
/// time, symbols relative to their section, as LuaJIT and LLVM's MCJIT
/// register theirs).
pub fn build_object(d: &ImageDesc<'_>) -> Vec<u8> {
    let mut shstr = StrTab::new();
    // 1: one `.text` over the whole area (code and read-only data share
    // its segments); symbols are area offsets.
    let mut secs = vec![Shdr {
        name: shstr.add(".text"),
        sh_type: SHT_NOBITS,
        flags: SHF_ALLOC | SHF_EXECINSTR,
        addr: d.base,
        size: u64::from(d.manifest.layout.area_size),
        link: 0,
        info: 0,
        align: 16,
        entsize: 0,
        data: Vec::new(),
    }];
    // 2: .eh_frame
    if !d.eh_frame.is_empty() {
        secs.push(Shdr {
            name: shstr.add(".eh_frame"),
            flags: SHF_ALLOC,
            addr: d.eh_frame_addr,
            ..Shdr::unloaded(0, SHT_PROGBITS, 8, d.eh_frame.to_vec())
        });
    }
    // Debug sections: their bytes are read from the image straight into
    // the object below, then relocated there.
    let first_debug = secs.len();
    for (n, _, size) in d.debug.iter().flat_map(|dbg| &dbg.sections) {
        secs.push(Shdr {
            size: *size as u64,
            ..Shdr::unloaded(shstr.add(n), SHT_PROGBITS, 1, Vec::new())
        });
    }
    let (symtab, strtab, first_global) = symbols(d);
    let symtab_index = secs.len() as u32 + 1;
    secs.push(Shdr {
        link: symtab_index + 1,
        info: first_global,
        entsize: 24,
        ..Shdr::unloaded(shstr.add(".symtab"), SHT_SYMTAB, 8, symtab)
    });
    secs.push(Shdr::unloaded(shstr.add(".strtab"), SHT_STRTAB, 1, strtab));
    let shstrtab_name = shstr.add(".shstrtab");
    secs.push(Shdr::unloaded(shstrtab_name, SHT_STRTAB, 1, shstr.0));
    // File: header, section bytes, section headers.
    let (mut out, offsets, shoff) = lay_out(&secs);
    if let Some(dbg) = d.debug {
        read_and_relocate(d, dbg, &mut out, &offsets[first_debug..]);
    }
    write_headers(&mut out, &secs, &offsets, shoff);
    out
}

/// The symbol naming `name`'s trampoline: `NAME.hcr_trampoline`, or for a
/// C++ (mangled) name `hcr_trampoline.NAME`. Not `NAME@plt`: lldb reads
/// `@` as a symbol version and put `break NAME` on the trampoline too. Not
/// a suffix on a mangled name: debuggers demangle `_ZN2ns4workEi.x` as
/// `ns::work(int) [clone .x]`, a clone of the function, and gdb put
/// `break ns::work` on the trampoline as well; prefixed, the name is not
/// demangled and matches no function.
pub fn trampoline_symbol(name: &str) -> String {
    match name.starts_with("_Z") {
        true => format!("hcr_trampoline.{name}"),
        false => format!("{name}.hcr_trampoline"),
    }
}

/// Builds the in-memory object describing a batch of trampolines: a
/// `.plt` section over their code (`code`, `size` bytes) with a symbol
/// per trampoline ([`trampoline_symbol`]), `names[i]` at `i * stride`. The section name
/// is what a debugger's `step` looks for: a call into a module function
/// enters its trampoline first, and gdb steps through code in a `.plt`
/// section as through a shared library's PLT stub instead of stepping over
/// a function it has no line information for.
pub fn build_trampolines_object(code: u64, size: u64, stride: u64, names: &[String]) -> Vec<u8> {
    let mut shstr = StrTab::new();
    let mut strtab = StrTab::new();
    let mut symtab = vec![0u8; 24];
    for (i, n) in names.iter().enumerate() {
        let name = strtab.add(&trampoline_symbol(n));
        put_sym(&mut symtab, name, 2, 1, i as u64 * stride, stride);
    }
    let secs = vec![
        Shdr {
            name: shstr.add(".plt"),
            sh_type: SHT_NOBITS,
            flags: SHF_ALLOC | SHF_EXECINSTR,
            addr: code,
            size,
            link: 0,
            info: 0,
            align: 16,
            entsize: 0,
            data: Vec::new(),
        },
        Shdr {
            link: 3,
            info: (symtab.len() / 24) as u32,
            entsize: 24,
            ..Shdr::unloaded(shstr.add(".symtab"), SHT_SYMTAB, 8, symtab)
        },
        Shdr::unloaded(shstr.add(".strtab"), SHT_STRTAB, 1, strtab.0),
        Shdr::unloaded(shstr.add(".shstrtab"), SHT_STRTAB, 1, Vec::new()),
    ];
    let mut secs = secs;
    secs[3].data = shstr.0;
    secs[3].size = secs[3].data.len() as u64;
    let (mut out, offsets, shoff) = lay_out(&secs);
    write_headers(&mut out, &secs, &offsets, shoff);
    out
}

/// The file of `secs`: header, each section's bytes (8-aligned), section
/// headers; returns it with each section's offset and the headers' offset
/// (the headers not yet written).
fn lay_out(secs: &[Shdr]) -> (Vec<u8>, Vec<u64>, u64) {
    let mut offsets = Vec::with_capacity(secs.len());
    let mut at = 64u64;
    for sec in secs {
        at = at.next_multiple_of(8);
        offsets.push(at);
        if sec.sh_type != SHT_NOBITS {
            at += sec.size;
        }
    }
    let shoff = at.next_multiple_of(8);
    let mut out = vec![0u8; shoff as usize + 64 * (secs.len() + 1)];
    for (sec, &off) in secs.iter().zip(&offsets) {
        out[off as usize..off as usize + sec.data.len()].copy_from_slice(&sec.data);
    }
    (out, offsets, shoff)
}

/// The symbol table (locals, then globals) and its string table, and the
/// index of the first global: the reachable functions at their area
/// offsets (static ones local, as are compiler clones), the persistent
/// globals at their persistent addresses (absolute).
fn symbols(d: &ImageDesc<'_>) -> (Vec<u8>, Vec<u8>, u32) {
    let m = d.manifest;
    let mut strtab = StrTab::new();
    let mut locals = vec![0u8; 24];
    let mut globals = Vec::new();
    for f in &m.functions {
        let md = &m.modules[f.module.0 as usize];
        if !md.reachable || f.size == 0 {
            continue;
        }
        let n = strtab.add(m.str(f.name));
        let value = u64::from(m.area_offset(f.module, f.offset));
        if f.global {
            put_sym(&mut globals, n, (1 << 4) | 2, 1, value, u64::from(f.size));
        } else {
            put_sym(&mut locals, n, 2, 1, value, u64::from(f.size));
        }
    }
    for (mi, md) in m.modules.iter().enumerate().filter(|(_, md)| md.reachable) {
        for p in md.clones_in_segment() {
            let n = strtab.add(m.str(p.name));
            let value = u64::from(m.area_offset(ModuleId(mi as u32), p.offset));
            put_sym(&mut locals, n, 2, 1, value, u64::from(p.size));
        }
    }
    for (i, o) in m.objects.iter().enumerate() {
        let addr = d.objects.get(i).copied().unwrap_or(0);
        if addr == 0 {
            continue;
        }
        let n = strtab.add(m.str(o.name));
        let bind = if o.global { 1u8 } else { 0 };
        let target = if o.global { &mut globals } else { &mut locals };
        put_sym(target, n, (bind << 4) | 1, SHN_ABS, addr, o.size);
    }
    let first_global = (locals.len() / 24) as u32;
    locals.extend_from_slice(&globals);
    (locals, strtab.0, first_global)
}

/// Writes the ELF header and the section headers (at `shoff`, after the
/// null one) of `secs`, whose bytes lie at `offsets`.
fn write_headers(out: &mut [u8], secs: &[Shdr], offsets: &[u64], shoff: u64) {
    let mut hdrs = Vec::with_capacity(64 * secs.len());
    for (s, &off) in secs.iter().zip(offsets) {
        hdrs.extend_from_slice(&s.name.to_le_bytes());
        hdrs.extend_from_slice(&s.sh_type.to_le_bytes());
        hdrs.extend_from_slice(&s.flags.to_le_bytes());
        hdrs.extend_from_slice(&s.addr.to_le_bytes());
        hdrs.extend_from_slice(&off.to_le_bytes());
        hdrs.extend_from_slice(&s.size.to_le_bytes());
        hdrs.extend_from_slice(&s.link.to_le_bytes());
        hdrs.extend_from_slice(&s.info.to_le_bytes());
        hdrs.extend_from_slice(&s.align.to_le_bytes());
        hdrs.extend_from_slice(&s.entsize.to_le_bytes());
    }
    out[shoff as usize + 64..].copy_from_slice(&hdrs);
    let nsec = secs.len() as u16 + 1;
    out[..4].copy_from_slice(b"\x7fELF");
    out[4] = 2; // ELFCLASS64
    out[5] = 1; // little-endian
    out[6] = 1; // EV_CURRENT
    out[16..18].copy_from_slice(&1u16.to_le_bytes()); // ET_REL
    out[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    out[20..24].copy_from_slice(&1u32.to_le_bytes());
    out[40..48].copy_from_slice(&shoff.to_le_bytes());
    out[52..54].copy_from_slice(&64u16.to_le_bytes());
    out[58..60].copy_from_slice(&64u16.to_le_bytes());
    out[60..62].copy_from_slice(&nsec.to_le_bytes());
    out[62..64].copy_from_slice(&(nsec - 1).to_le_bytes());
}

/// Reads the debug sections into `out` at `offsets` and adds run-time
/// addresses where the fixups say. A section that cannot be read is left
/// zeroed (a debugger then finds no units in it); fixups outside their
/// section are skipped.
fn read_and_relocate(d: &ImageDesc<'_>, dbg: &DebugSections, out: &mut [u8], offsets: &[u64]) {
    use std::os::unix::fs::FileExt as _;
    let mut spans = Vec::with_capacity(dbg.sections.len());
    for ((_, file_off, size), &at) in dbg.sections.iter().zip(offsets) {
        let span = at as usize..at as usize + size;
        if dbg
            .file
            .read_exact_at(&mut out[span.clone()], *file_off)
            .is_err()
        {
            out[span.clone()].fill(0);
        }
        spans.push(span);
    }
    let fixups = read_at(&dbg.file, dbg.fixups.0, dbg.fixups.1)
        .and_then(|b| hcr_image::decode_debug_fixups(&b))
        .unwrap_or_default();
    for f in &fixups {
        let add = match f.kind {
            DebugTarget::Area => d.base,
            DebugTarget::Object => d.objects.get(f.target as usize).copied().unwrap_or(0),
        };
        let v = (f.value as u64).wrapping_add(add);
        let w = usize::from(f.width);
        let Some(field) = spans.get(usize::from(f.section)).and_then(|s| {
            let o = usize::try_from(f.offset).ok()?;
            let end = o.checked_add(w)?;
            (end <= s.len()).then(|| &mut out[s.start + o..s.start + end])
        }) else {
            continue;
        };
        field.copy_from_slice(&v.to_le_bytes()[..w]);
    }
}

/// The registrations of the images still mapped, by area base, and of
/// the trampoline batches (which live as long as the process).
#[derive(Default)]
pub struct Registry {
    live: Vec<(usize, Registration)>,
    batches: Vec<Registration>,
}

impl Registry {
    /// Trampoline batches registered so far.
    pub fn batches(&self) -> usize {
        self.batches.len()
    }
    /// Registers the object describing the next trampoline batch.
    pub fn add_batch(&mut self, object: Vec<u8>) {
        self.batches.push(Registration::new(object));
    }
    /// Registers the object describing the image at `base`.
    pub fn add(&mut self, base: usize, object: Vec<u8>) {
        self.live.push((base, Registration::new(object)));
    }
    /// Unregisters the image at `base` (it is being freed).
    pub fn remove(&mut self, base: usize) {
        self.live.retain(|(b, _)| *b != base);
    }
    /// Unregisters everything.
    pub fn clear(&mut self) {
        self.live.clear();
        self.batches.clear();
    }
    /// Number of registered objects.
    pub fn len(&self) -> usize {
        self.live.len()
    }
    /// True when nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}
