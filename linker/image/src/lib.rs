//! The on-disk format of an hcr image, shared by the linker (writer) and the
//! loader (reader).
//!
//! An image is an ELF64 `ET_REL` file. Its section 1, `.hcr.manifest`, starts
//! with a fixed [`Header`] (magic, [`FORMAT_VERSION`], checksum, where the load
//! area and the initial bytes of writable objects lie in the file) followed by
//! the encoded [`Manifest`] and the two fixup tables of the load plan.
//!
//! Which API do I want?
//! - the linker builds a [`Manifest`] plus fixups and calls [`encode_manifest`];
//! - the loader calls [`ImageView::parse`] on the mapped file: it checks the
//!   ELF header, the magic, the version and the checksum, then decodes.
//!
//! Everything here is an on-disk promise: a change to the encoding bumps
//! [`FORMAT_VERSION`], and readers refuse versions they do not know.
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod chunked;
mod codec;
mod debug;
mod dwarf_reader;
mod elf;
mod modlist;
pub use dwarf_reader::DwarfReader;
pub mod shared;

use std::sync::Arc;

pub use chunked::{Chunked, Cursor, Grouped, GROUP};
pub use modlist::ModuleList;

use std::ops::Range;

pub use codec::{block_checksum, DecodeError, Fixups, ModuleFixups};
pub use debug::{
    decode_debug_fixups, encode_debug_fixups, section_header_fields, section_table, DebugFixup,
    DebugTarget, DEBUG_FIXUPS_SECTION, DEBUG_FIXUP_SIZE, DEBUG_MAGIC,
};

/// Version of the manifest and load-plan encoding.
pub const FORMAT_VERSION: u32 = 8;

/// The module id of every `tls_index` (and `R_X86_64_DTPMOD64` word) an
/// image holds: all of an image's thread-local variables live in one
/// per-thread block that the runtime's `__tls_get_addr` serves.
pub const TLS_MODULE: u64 = 0x6863_7200;

/// The host symbol an image's TLS descriptors name as their resolver; the
/// runtime defines it.
pub const TLSDESC_RESOLVER: &str = "__hcr_tlsdesc_resolver";
/// First bytes of the `.hcr.manifest` section.
pub const MAGIC: [u8; 8] = *b"HCRIMAGE";
/// Name of the manifest section (always section index 1).
pub const MANIFEST_SECTION: &str = ".hcr.manifest";
/// Size of the fixed [`Header`] at the start of the manifest section.
pub const HEADER_SIZE: usize = 64;
/// Page size the load area is laid out for.
pub const PAGE_SIZE: u64 = 4096;
/// Size of one encoded [`Fixup`].
pub const FIXUP_SIZE: usize = 16;
/// Largest writable object an image holds, in bytes.
pub const MAX_OBJECT_SIZE: u64 = 1 << 32;

/// Index of a module in [`Manifest::modules`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModuleId(pub u32);
/// Index of a function in [`Manifest::functions`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FunctionId(pub u32);
/// Index of a writable object in [`Manifest::objects`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId(pub u32);
/// Index of a host symbol in [`Manifest::hosts`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostId(pub u32);

/// A string of the manifest: a range of one of its string tables (the
/// manifest's own, [`Manifest::strings`], or a module's,
/// [`Manifest::module_strings`]). Decoding copies each table once instead of
/// allocating every name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Str {
    /// Byte offset in the string table.
    pub off: u32,
    /// Length in bytes.
    pub len: u32,
    /// 0: [`Manifest::strings`]; `k + 1`: module `k`'s table.
    pub table: u32,
}

impl Str {
    /// The text of `self` in `table`, its string table
    /// ([`Manifest::table`]); "" for a range outside it.
    pub fn within(self, table: &str) -> &str {
        let start = self.off as usize;
        table.get(start..start + self.len as usize).unwrap_or("")
    }
}

/// A half-open range of `u32` offsets or indices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// First element.
    pub start: u32,
    /// One past the last element.
    pub end: u32,
}

impl Span {
    /// A span from `start` to `end`.
    pub fn new(start: u32, end: u32) -> Self {
        Span { start, end }
    }
    /// Number of elements.
    pub fn len(&self) -> u32 {
        self.end.saturating_sub(self.start)
    }
    /// True when the span holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// As a `usize` range.
    pub fn range(&self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
    /// True when `x` lies inside.
    pub fn contains(&self, x: u32) -> bool {
        self.start <= x && x < self.end
    }
}

/// The fixed header at the start of the manifest section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Encoding version of what follows.
    pub version: u32,
    /// xxh3-64 of the manifest body and the initial bytes, in that order
    /// (each module's segment has its own [`Module::checksum`]).
    pub checksum: u64,
    /// Length of the manifest's global part that follows the header (the
    /// module blocks follow it, each with its own checksum).
    pub body_len: u64,
    /// File offset of the load area (page aligned).
    pub area_file_offset: u64,
    /// Bytes of the load area stored in the file.
    pub area_file_size: u64,
    /// File offset of the initial bytes of writable objects.
    pub init_file_offset: u64,
    /// Size of the initial bytes.
    pub init_file_size: u64,
}

impl Header {
    /// Decodes the fixed header at the start of the manifest section
    /// `section` (its first [`HEADER_SIZE`] bytes suffice).
    ///
    /// # Errors
    /// Not a manifest, truncated, or a foreign version.
    pub fn from_section(section: &[u8]) -> Result<Self, ImageError> {
        header_of(section)
    }
}

/// The load area as a whole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// Total size of the area in memory (a page multiple). Each module's
    /// part of it is its [`Module::seg`].
    pub area_size: u32,
}

/// One module: one input object. Its record ([`ModuleRecord`], reached
/// through `Deref`) says what it is and is shared between the manifests of
/// successive images while its bytes stay the same; the fields here say
/// where its parts lie in this image, which moves when an earlier module
/// grows or shrinks.
#[derive(Clone, Debug, Default)]
pub struct Module {
    /// Functions owned, a range of [`FunctionId`].
    pub functions: Span,
    /// Writable objects owned, a range of [`ObjectId`].
    pub objects: Span,
    /// The module's segment in the area: its code and PLT stubs
    /// ([`Module::text`]), read-only data and GOT, then its `.eh_frame`
    /// ([`Module::eh_frame`], ending in a zero terminator). Everything
    /// inside a segment refers to the rest of the image through fixups, so
    /// a loader may place each segment on its own.
    pub seg: Span,
    /// Code and PLT stubs (area offsets, inside `seg`).
    pub text: Span,
    /// This module's `.eh_frame` table with its terminator (inside `seg`).
    pub eh_frame: Span,
    /// The initial bytes of this module's objects: `[start, start + len)`
    /// of the init blob ([`Object::init`] is relative to `start`).
    pub init: (u64, u64),
    /// Where this module's block (its functions, objects, lists, strings
    /// and fixups) lies, relative to the manifest section: offset, length.
    pub block: (u64, u64),
    /// True when the root reaches this module (part of the record's bytes;
    /// kept here because most loops over the modules ask only this).
    pub reachable: bool,
    /// The group holding this module's record ([`Records`]), and the
    /// record's place in it.
    records: Records,
    record_at: u32,
}

impl PartialEq for Module {
    fn eq(&self, o: &Self) -> bool {
        (
            self.functions,
            self.objects,
            self.seg,
            self.text,
            self.eh_frame,
        ) == (o.functions, o.objects, o.seg, o.text, o.eh_frame)
            && (self.init, self.block, self.reachable) == (o.init, o.block, o.reachable)
            && self.record() == o.record()
    }
}

impl Eq for Module {}

/// Module records read together: one allocation and one reference count
/// for up to [`GROUP`] modules, so a manifest that shares the records of
/// unchanged modules, and dropping it, touches a count per group rather
/// than one (a cache miss) per module.
#[derive(Clone, Debug)]
struct Records(Arc<[ModuleRecord]>);

impl Records {
    fn alone(record: ModuleRecord) -> Self {
        Records(Arc::from(vec![record]))
    }
}

impl Default for Records {
    fn default() -> Self {
        Records::alone(ModuleRecord::default())
    }
}

impl Module {
    /// The module's clones that lie inside its segment and have code
    /// (the block is checked by its checksum, not against the segment).
    pub fn clones_in_segment(&self) -> impl Iterator<Item = &CodePart> {
        let len = self.seg.len();
        (self.clones.iter())
            .filter(move |p| p.size > 0 && p.offset.checked_add(p.size).is_some_and(|e| e <= len))
    }

    /// A module with this record, placed nowhere yet.
    pub fn new(record: ModuleRecord) -> Self {
        Module {
            records: Records::alone(record),
            ..Module::default()
        }
    }

    /// True when `other` holds the very record this one does (shared by a
    /// reload that found its bytes unchanged).
    pub fn same_record(&self, other: &Module) -> bool {
        Arc::ptr_eq(&self.records.0, &other.records.0) && self.record_at == other.record_at
    }

    fn record(&self) -> &ModuleRecord {
        &self.records.0[self.record_at as usize]
    }

    /// The record, for writing: copied out of its group first when others
    /// share the group (as `Arc::make_mut` would).
    fn record_mut(&mut self) -> &mut ModuleRecord {
        if Arc::get_mut(&mut self.records.0).is_none() {
            self.records = Records::alone(self.record().clone());
            self.record_at = 0;
        }
        let at = self.record_at as usize;
        match Arc::get_mut(&mut self.records.0) {
            Some(g) => &mut g[at],
            None => unreachable!("a record just copied out is held once"),
        }
    }
}

/// Puts the records of `modules` that are held alone (decoded by this
/// read) into groups of up to [`GROUP`], in module order, so that the
/// manifests that share them later count references per group. Modules
/// marked in `shared` (records shared with a loaded manifest) are not
/// looked at.
pub(crate) fn group_records(modules: &mut ModuleList, shared: &[bool]) {
    let mut run: Vec<usize> = Vec::new();
    let flush = |modules: &mut ModuleList, run: &mut Vec<usize>| {
        if run.len() < 2 {
            run.clear();
            return;
        }
        let records: Vec<ModuleRecord> = run
            .iter()
            .map(|&mi| std::mem::take(modules[mi].record_mut()))
            .collect();
        let group: Arc<[ModuleRecord]> = Arc::from(records);
        for (k, &mi) in run.iter().enumerate() {
            modules[mi].records = Records(group.clone());
            modules[mi].record_at = k as u32;
        }
        run.clear();
    };
    for mi in 0..modules.len() {
        if shared.get(mi).copied().unwrap_or(false) {
            continue;
        }
        let g = &mut modules[mi].records.0;
        // Held alone and by this module only: decoded by this read.
        if g.len() == 1 && Arc::get_mut(g).is_some() {
            run.push(mi);
            if run.len() == GROUP {
                flush(modules, &mut run);
            }
        }
    }
    flush(modules, &mut run);
}

impl std::ops::Deref for Module {
    type Target = ModuleRecord;
    fn deref(&self) -> &ModuleRecord {
        self.record()
    }
}

impl std::ops::DerefMut for Module {
    fn deref_mut(&mut self) -> &mut ModuleRecord {
        self.record_mut()
    }
}

/// What a module is, wherever it lies: names, identity, lists. Encoded
/// on its own in the image with its own hash, so a reader compares the
/// hash with the loaded module's and decodes only records that changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModuleRecord {
    /// File stem of the object (`physics.o` → `physics`).
    pub name: Str,
    /// Source file named by the object (`STT_FILE`), or "" when none.
    pub source: Str,
    /// Path of the input object (or `archive.a(member.o)`).
    pub object: Str,
    /// Modification time of the input, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// xxh3-64 of the input object's bytes.
    pub content_hash: u64,
    /// Modules this one imports, in command-line order.
    pub imports: Arc<[ModuleId]>,
    /// Number of this module's residual fixups ([`ImageView::module_fixups`]).
    pub fixups: u32,
    /// Constructors (`.init_array` order), as offsets from the start of the
    /// module's segment (wrapping: an entry may lie in another module).
    pub ctors: Arc<[u32]>,
    /// Destructors (`.fini_array`, run in reverse), likewise.
    pub dtors: Arc<[u32]>,
    /// `HCR_ON_RELOAD` blocks in source order, likewise.
    pub on_reload: Arc<[u32]>,
    /// Host symbols this module references (undefined in the image).
    pub undefined: Arc<[HostId]>,
    /// Named code without a permanent address: the compiler's clones of
    /// functions (`f.constprop.0`, `f.isra.0`, `f.part.0`), for crash
    /// reports and profilers.
    pub clones: Arc<[CodePart]>,
    /// xxh3-64 of the block and of the module's initial bytes.
    pub block_checksum: u64,
    /// xxh3-64 of the segment's bytes as stored in the file: verified when
    /// the segment is read.
    pub checksum: u64,
    /// xxh3-64 of what the relocated segment and the module's objects'
    /// pointer fields depend on: the content, the layout of the segment, and
    /// each fixup with its target named (module and symbol, not index). Two
    /// images whose module has the same `link_hash` relocate it to the same
    /// bytes wherever the other modules lie, as long as the segments of
    /// [`ModuleRecord::deps`] stay where they are.
    pub link_hash: u64,
    /// Other modules whose segments this module's fixups (or its objects')
    /// point into.
    pub deps: Arc<[ModuleId]>,
    /// Bytes of code this module contributes.
    pub text_size: u32,
    /// Bytes of read-only data this module contributes.
    pub rodata_size: u32,
    /// The sizes of the module's parts, from which a reader places them
    /// (filled by decoding; the encoder takes them from [`Module`]).
    pub shape: RecordShape,
    /// The record's decoded names ([`Str::table`] [`RECORD_STRINGS`]` | k`
    /// for module `k`; empty in a manifest the linker builds).
    pub names: Box<str>,
}

/// The sizes a decoded [`ModuleRecord`] gives its module's parts; where
/// they lie follows from the modules before it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordShape {
    /// xxh3-64 of the encoded record.
    pub hash: u64,
    /// Number of functions.
    pub functions: u32,
    /// Number of writable objects.
    pub objects: u32,
    /// Length of the segment.
    pub seg_len: u32,
    /// Code, relative to the segment's start.
    pub text: Span,
    /// `.eh_frame`, relative to the segment's start.
    pub eh_frame: Span,
    /// Bytes of initial data.
    pub init_len: u64,
    /// Bytes of the module's block.
    pub block_len: u64,
}

/// A module's functions and the string table of their names, shared
/// ([`Manifest::shared_names`]).
pub type SharedNames<'m> = (&'m Arc<[Function]>, &'m Arc<str>);

/// [`Str::table`] bit of a name held by a module's record.
pub const RECORD_STRINGS: u32 = 1 << 31;

/// A function with a permanent address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Function {
    /// Symbol name (unqualified).
    pub name: Str,
    /// Owner.
    pub module: ModuleId,
    /// Offset of the entry from the start of its module's segment
    /// ([`Module::seg`]): the same wherever other modules' segments lie.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
    /// True for `STB_GLOBAL`/`STB_WEAK`, false for `static` functions.
    pub global: bool,
    /// Hidden visibility (`STV_HIDDEN`, `STV_INTERNAL`): global to the
    /// link, not exported to plugins.
    pub hidden: bool,
    /// An indirect function (`STT_GNU_IFUNC`: `__attribute__((ifunc))`,
    /// `target_clones`): the code at [`Function::offset`] is its resolver,
    /// and its permanent address runs what the resolver returns.
    pub indirect: bool,
}

/// Named code that has no permanent address of its own: a compiler clone
/// of a function, reached by branches from its module only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CodePart {
    /// Symbol name (`f.constprop.0`).
    pub name: Str,
    /// Offset from the start of its module's segment.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
}

impl CodePart {
    /// The source function a clone was made from: the symbol's name up to
    /// its first `.` (C and mangled C++ names hold none).
    pub fn source_name(name: &str) -> &str {
        name.split('.').next().unwrap_or(name)
    }
}

/// A writable object that lives in persistent storage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Object {
    /// The symbol name, or the section name when the section holds no
    /// single named object.
    pub name: Str,
    /// Identity within the module when it is not [`Object::name`] (empty
    /// then): a name the compiler numbers (gcc's function statics `n.0`,
    /// `n.1`, one counter for the whole file) is keyed by what the source
    /// says instead, `FUNCTION::NAME`, `#K` added for the K-th (K ≥ 1) of
    /// one function's statics of that name. See [`Object::key`].
    pub identity: Str,
    /// What the identity assumes, when it could not be established for
    /// sure (empty otherwise): said in a warning when a reload relies on it.
    pub assumed: Str,
    /// Owner.
    pub module: ModuleId,
    /// Size in bytes.
    pub size: u64,
    /// Alignment in bytes (a power of two).
    pub align: u32,
    /// Offset of the initial bytes in the module's part of the init blob
    /// ([`Module::init`]); `None` for zero-filled objects (`.bss`).
    pub init: Option<u64>,
    /// Fixups inside the object's initial bytes, a range of its module's
    /// object fixups ([`ImageView::object_fixups`]; offsets relative to the
    /// object).
    pub fixups: Span,
    /// True for `STB_GLOBAL`/`STB_WEAK` symbols.
    pub global: bool,
    /// Hidden visibility: not exported to plugins.
    pub hidden: bool,
    /// A thread-local variable (`.tdata`/`.tbss`): one copy per thread; its
    /// "address" in the loader's tables is its offset in every thread's
    /// thread-local block.
    pub tls: bool,
}

/// A symbol the image leaves to the host (libc, the runtime's C API).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostSymbol {
    /// Symbol name.
    pub name: Str,
    /// Weak references resolve to 0 when the host lacks the symbol.
    pub weak: bool,
    /// Some module lists it among its undefined symbols
    /// ([`ModuleRecord::undefined`]); one no module lists (the TLS
    /// descriptor resolver) is resolved at every load.
    pub listed: bool,
}

/// A shared library the image needs (`hcr-link -l NAME`), loaded by the
/// runtime before any module, as `DT_NEEDED` is by `ld.so`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Library {
    /// What the user asked for (`m`, `z`, `:libfoo.so.2`).
    pub request: Str,
    /// The library's `DT_SONAME` (or its file name when it has none): what
    /// the runtime asks the system loader for first.
    pub soname: Str,
    /// The absolute path hcr-link found it at: the runtime's fallback when
    /// the soname is not on the system's search path (an `-L` directory).
    pub path: Str,
}

/// Statistics of the load plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanStats {
    /// Relocations in all loaded sections of the inputs.
    pub relocations: u64,
    /// Relocations resolved and applied by the linker.
    pub applied_at_link: u64,
    /// GOT entries created.
    pub got_entries: u32,
    /// PLT stubs created.
    pub plt_stubs: u32,
}

/// The manifest: modules, their symbols, and the load plan's tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The manifest's own string table ([`Str::table`] 0).
    pub strings: String,
    /// Each module's string table ([`Str::table`] `k + 1`), shared with the
    /// manifest a reload kept the module from.
    pub module_strings: Grouped<Arc<str>>,
    /// The top of the import tree.
    pub root: ModuleId,
    /// Where the parts of the load area lie.
    pub layout: Layout,
    /// Modules in command-line order.
    pub modules: ModuleList,
    /// Functions, one part per module.
    pub functions: Chunked<Function>,
    /// Writable objects, one part per module.
    pub objects: Chunked<Object>,
    /// Host symbols.
    pub hosts: Vec<HostSymbol>,
    /// Shared libraries to load before the modules, in command-line order.
    pub libraries: Vec<Library>,
    /// Statistics.
    pub stats: PlanStats,
    /// How this manifest was read against a loaded one, per module.
    pub read: ReadSummary,
}

/// What [`ImageView::parse_global`] found reading a manifest against a
/// loaded one, per module, so that later passes over the modules can skip
/// the unchanged ones without looking at them: compact arrays, a byte or a
/// word per module. Bookkeeping of the read, not part of the manifest's
/// content: it takes no part in comparisons (any two are equal).
#[derive(Clone, Debug, Default)]
pub struct ReadSummary {
    /// This read's identity (unique in the process; 0 for a manifest the
    /// linker builds).
    pub id: u64,
    /// The identity of the manifest this one was read against (0: none).
    /// The per-module answers about sharing hold against that one only.
    pub against: u64,
    /// Each module's record hash as the index gave it (empty in a manifest
    /// the linker builds): what the next read compares against.
    pub hashes: Vec<u64>,
    /// Per module: its record is the loaded module's at the same index
    /// (shared, so the same module with the same block).
    pub shared: Vec<bool>,
    /// Per module: shared, and with the same function and object index
    /// ranges as the loaded module's.
    pub same_ids: Vec<bool>,
    /// Per module: [`Module::reachable`].
    pub reachable: Vec<bool>,
    /// Per module: its record lists modules it refers into
    /// ([`ModuleRecord::deps`] is not empty).
    pub has_deps: Vec<bool>,
    /// Per module: where its segment starts in the area, and its length
    /// ([`Module::seg`]).
    pub seg: Vec<(u32, u32)>,
    /// Per module: where its initial bytes start ([`Module::init`]).
    pub init: Vec<u64>,
}

impl PartialEq for ReadSummary {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ReadSummary {}

/// How a fixup writes its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FixupKind {
    /// 64-bit absolute: `S + A`.
    Abs64 = 1,
    /// 32-bit PC-relative, signed: `S + A - P`.
    Pc32 = 2,
    /// 64-bit PC-relative: `S + A - P`.
    Pc64 = 3,
    /// 32-bit absolute, zero-extended: `S + A`.
    Abs32 = 4,
    /// 32-bit absolute, sign-extended: `S + A`.
    Abs32S = 5,
    /// 64-bit, relative to the load area's start `B`: `S + A - B` (the large
    /// code model's GOT-relative offsets, with the GOT's offset folded into
    /// `A`).
    AreaRel64 = 6,
}

impl FixupKind {
    /// Decodes a kind byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => FixupKind::Abs64,
            2 => FixupKind::Pc32,
            3 => FixupKind::Pc64,
            4 => FixupKind::Abs32,
            5 => FixupKind::Abs32S,
            6 => FixupKind::AreaRel64,
            _ => return None,
        })
    }
    /// Bytes written.
    pub fn width(self) -> usize {
        match self {
            FixupKind::Abs64 | FixupKind::Pc64 | FixupKind::AreaRel64 => 8,
            _ => 4,
        }
    }
}

/// What `S` of a fixup refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TargetClass {
    /// An offset in this image's load area.
    Area = 0,
    /// The permanent address of a [`FunctionId`].
    Function = 1,
    /// The persistent address of an [`ObjectId`].
    Object = 2,
    /// A [`HostId`].
    Host = 3,
}

impl TargetClass {
    /// Decodes a class byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => TargetClass::Area,
            1 => TargetClass::Function,
            2 => TargetClass::Object,
            3 => TargetClass::Host,
            _ => return None,
        })
    }
}

/// One residual relocation the loader applies: `kind` at `offset` with
/// `S = address of (class, target)` and addend `addend`. A module's fixups
/// are relative to its segment's start: `offset` (segment fixups) and an
/// area `target` (wrapping; it may lie in another module's segment).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fixup {
    /// Area offset (area fixups) or offset inside the object (object fixups).
    pub offset: u32,
    /// Index in the class's table, or an area offset for [`TargetClass::Area`].
    pub target: u32,
    /// The relocation addend.
    pub addend: i32,
    /// How the value is written.
    pub kind: FixupKind,
    /// What the target refers to.
    pub class: TargetClass,
}

/// A parsed, verified image: header, manifest and fixup tables borrowing the
/// file's bytes.
#[derive(Debug)]
pub struct ImageView<'a> {
    /// The fixed header.
    pub header: Header,
    /// The manifest.
    pub manifest: Manifest,
    /// The residual fixups of each module whose block was decoded, in
    /// module order (a reload lists only the modules it decoded: none of a
    /// kept module is loaded again).
    pub fixups: Vec<(usize, Fixups<'a>)>,
    /// The fixups inside the writable objects of each module whose block
    /// was decoded, in module order (each object's [`Object::fixups`] is a
    /// range of its module's).
    pub object_fixups: Vec<(usize, Fixups<'a>)>,
    /// The load area's bytes as stored in the file.
    pub area: &'a [u8],
    /// The initial bytes of writable objects.
    pub init: &'a [u8],
}

/// Errors reading an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Not an ELF64 little-endian x86-64 relocatable file.
    #[error("not an hcr image: {0}")]
    NotAnImage(&'static str),
    /// The file ends before a structure it declares.
    #[error("truncated image: {0}")]
    Truncated(&'static str),
    /// Produced by a different format version.
    #[error("image format version {found} is not supported (this build reads version {FORMAT_VERSION}); relink with this hcr-link")]
    Version {
        /// The version in the file.
        found: u32,
    },
    /// The checksum does not match: torn write or corruption.
    #[error("image checksum mismatch (stored {stored:#018x}, computed {computed:#018x}): the file is torn or corrupted; relink it")]
    Checksum {
        /// Stored checksum.
        stored: u64,
        /// Computed checksum.
        computed: u64,
    },
    /// A module's segment does not match its checksum.
    #[error("module {module}: segment checksum mismatch (stored {stored:#018x}, computed {computed:#018x}): the file is torn or corrupted; relink it")]
    SegmentChecksum {
        /// The module.
        module: String,
        /// Stored checksum.
        stored: u64,
        /// Computed checksum.
        computed: u64,
    },
    /// The manifest does not decode.
    #[error("corrupt manifest: {0}")]
    Manifest(#[from] DecodeError),
    /// A thread that read part of the image stopped without a result (a
    /// bug in hcr, not in the image).
    #[error("internal error while reading the image: {0}")]
    Internal(&'static str),
}

impl<'a> ImageView<'a> {
    /// Parses and verifies an image held in `file`.
    ///
    /// # Errors
    /// Any structural problem, a foreign version or a checksum mismatch.
    pub fn parse(file: &'a [u8]) -> Result<Self, ImageError> {
        Self::parse_parts(file)
    }

    /// Reads the fixed header alone (version checked), which places the
    /// load area in the file: a loader can then read segments straight to
    /// where they will run.
    ///
    /// # Errors
    /// Not an image, truncated, or a foreign version.
    pub fn parse_header(file: &[u8]) -> Result<Header, ImageError> {
        header_of(elf::manifest_section(file)?)
    }

    fn parse_parts(file: &'a [u8]) -> Result<Self, ImageError> {
        let h = header_of(elf::manifest_section(file)?)?;
        let area = slice_at(file, h.area_file_offset, h.area_file_size)
            .ok_or(ImageError::Truncated("load area"))?;
        let mut view = Self::parse_without_area(file)?;
        if area.len() as u64 != view.header.area_file_size {
            return Err(ImageError::Truncated("load area"));
        }
        for (mi, md) in view.manifest.modules.iter().enumerate() {
            let bytes = area
                .get(md.seg.range())
                .ok_or(ImageError::Truncated("module segment"))?;
            view.verify_segment(mi, bytes)?;
        }
        view.area = area;
        Ok(view)
    }

    /// Parses and verifies the header, the manifest (every module's block)
    /// and the initial bytes, but not the load area (whose modules'
    /// segments a loader reads and checks one by one,
    /// [`ImageView::verify_segment`]); `area` is empty.
    ///
    /// # Errors
    /// As [`ImageView::parse`], minus the segments.
    pub fn parse_without_area(file: &'a [u8]) -> Result<Self, ImageError> {
        let (header, global) = Self::parse_global(file, None)?;
        let all = vec![true; global.modules.len()];
        Self::assemble(file, header, global, None, &all)
    }

    /// Parses and verifies the header and the manifest's global part (every
    /// module's record, but none of their blocks: [`ImageView::assemble`]).
    /// Lists equal to those of `old`'s module at the same index are shared
    /// with it.
    ///
    /// # Errors
    /// Not an image, a foreign version, a checksum mismatch, or a global
    /// part that does not decode or hang together.
    pub fn parse_global(
        file: &[u8],
        old: Option<&Manifest>,
    ) -> Result<(Header, Manifest), ImageError> {
        let (section, header, g) = global_of(file, true)?;
        let m = g.finish(section, old)?;
        codec::validate_global(&m, header.area_file_size, old)?;
        Ok((header, m))
    }

    /// The image's content identity: the checksum of the manifest's global
    /// part (which holds every module's block and segment checksums),
    /// verified against the bytes but not decoded. `file` needs the bytes
    /// of the header and the global part only.
    ///
    /// # Errors
    /// Not an image, a foreign version, or a global part that does not
    /// match its checksum (a torn or corrupt image).
    pub fn content_checksum(file: &[u8]) -> Result<u64, ImageError> {
        let (_, header, _) = global_body(file, true)?;
        Ok(header.checksum)
    }

    /// The file ranges (offset, length) of the module records that
    /// [`ImageView::parse_global`] with `old` decodes: those `old` does not
    /// hold at the same index with the same hash. `file` needs the bytes
    /// of the header and the global part only. The global part's checksum
    /// is left to [`ImageView::parse_global`], which follows: ranges read
    /// from a torn image are bytes the parser then refuses.
    ///
    /// # Errors
    /// As [`ImageView::parse_global`], for the global part, but for the
    /// checksum.
    pub fn records_to_read(
        file: &[u8],
        old: Option<&Manifest>,
    ) -> Result<Vec<(u64, u64)>, ImageError> {
        let at = elf::manifest_offset(file)?;
        let (_, _, g) = global_of(file, false)?;
        Ok(g.records_to_read(old)
            .into_iter()
            .map(|(o, l)| (at.saturating_add(o), l))
            .collect())
    }

    /// Completes `global` (from [`ImageView::parse_global`] of `file`) with
    /// the modules' blocks: module `k`'s is decoded from `file` and verified
    /// (with its initial bytes) when `decode[k]` is set or `old` has no
    /// block with the same checksum for the same module at the same index;
    /// otherwise its functions, objects, lists and names are shared with
    /// `old`'s, and it has no fixups in the view (nothing of it is loaded
    /// again). `file` needs the bytes of the blocks and initial bytes it
    /// decodes, nothing else.
    ///
    /// # Errors
    /// A block outside the file, a checksum mismatch, or a block that does
    /// not decode or agree with its record.
    pub fn assemble(
        file: &'a [u8],
        header: Header,
        m: Manifest,
        old: Option<&Manifest>,
        decode: &[bool],
    ) -> Result<Self, ImageError> {
        Self::assemble_shared(file, header, m, old, decode, &shared::alone)
    }

    /// As [`ImageView::assemble`], the blocks verified and decoded by
    /// whichever threads `share` lends (a first load's many blocks).
    ///
    /// # Errors
    /// As [`ImageView::assemble`].
    pub fn assemble_shared(
        file: &'a [u8],
        header: Header,
        mut m: Manifest,
        old: Option<&Manifest>,
        decode: &[bool],
        share: shared::Share<'_>,
    ) -> Result<Self, ImageError> {
        let section_at = elf::manifest_offset(file)?;
        let init = slice_at(file, header.init_file_offset, header.init_file_size)
            .ok_or(ImageError::Truncated("initial data"))?;
        let complete = old.is_some_and(|o| o.parts_complete() && m.read_against(o));
        let mut todo = Vec::new();
        for mi in 0..m.modules.len() {
            let decode = decode.get(mi).copied().unwrap_or(true);
            if !decode && complete && m.shared_record(mi) {
                // The loaded module's record, with its block's lists: left
                // as it is, its parts shared.
                continue;
            }
            if let Some(o) = old.filter(|o| !decode && o.shares_block(&m, mi)) {
                // A shared record has the block's lists already: the module
                // is left as it is.
                let same = o
                    .modules
                    .get(mi)
                    .is_some_and(|om| om.same_record(&m.modules[mi]));
                if !same {
                    codec::Parts::share(&mut m.modules[mi], o, mi);
                }
                continue;
            }
            todo.push(mi);
        }
        let blocks = decode_blocks(file, (section_at, init), &m, todo, share)?;
        let mut parts = codec::Parts::with_capacity(blocks.len());
        for (mi, b) in blocks {
            parts.add(mi, &mut m.modules[mi], b);
        }
        parts.finish(&mut m, old);
        group_records(&mut m.modules, &m.read.shared);
        Ok(ImageView {
            header,
            manifest: m,
            fixups: parts.fixups,
            object_fixups: parts.object_fixups,
            area: &[],
            init,
        })
    }

    /// Checks module `mi`'s segment, `bytes` as read from the file, against
    /// its checksum.
    ///
    /// # Errors
    /// No such module, or the bytes differ.
    pub fn verify_segment(&self, mi: usize, bytes: &[u8]) -> Result<(), ImageError> {
        let Some(md) = self.manifest.modules.get(mi) else {
            return Err(ImageError::Truncated("module"));
        };
        let computed = segment_checksum(bytes);
        if computed != md.checksum {
            return Err(ImageError::SegmentChecksum {
                module: self.manifest.str(md.name).to_string(),
                stored: md.checksum,
                computed,
            });
        }
        Ok(())
    }

    /// Module `mi`'s residual fixups, encoded ([`FIXUP_SIZE`] bytes each;
    /// kind and class validated when the block was decoded).
    pub fn module_fixups(&self, mi: usize) -> &'a [u8] {
        table_of(&self.fixups, mi).raw_all()
    }

    /// The fixups inside the initial bytes of module `mi`'s objects
    /// (object `o`'s: `.iter(o.fixups)`). A walk over many objects looks
    /// the table up once a module: each look-up searches every module's.
    pub fn object_fixup_table(&self, mi: usize) -> Fixups<'a> {
        table_of(&self.object_fixups, mi)
    }

    /// Object `o`'s initial bytes (`None`: zero-filled, or not read).
    pub fn initial_bytes(&self, o: &Object) -> Option<&'a [u8]> {
        let md = self.manifest.modules.get(o.module.0 as usize)?;
        let at = md.init.0.checked_add(o.init?)?;
        slice_at(self.init, at, o.size)
    }

    /// Reads the header and the whole manifest (every block), verifying
    /// only the global part's checksum (for tools that list an image's
    /// contents cheaply).
    ///
    /// # Errors
    /// As [`ImageView::parse`], minus the blocks', segments' and initial
    /// bytes' checksums.
    pub fn parse_manifest(file: &[u8]) -> Result<(Header, Manifest), ImageError> {
        let (header, mut m) = Self::parse_global(file, None)?;
        let section_at = elf::manifest_offset(file)?;
        let mut parts = codec::Parts::with_capacity(m.modules.len());
        for mi in 0..m.modules.len() {
            let block = block_of(file, section_at, &m.modules[mi])?;
            let b = codec::decode_block(block, mi)?;
            parts.add(mi, &mut m.modules[mi], b);
        }
        parts.finish(&mut m, None);
        group_records(&mut m.modules, &m.read.shared);
        Ok((header, m))
    }
}

/// Module `mi`'s table in `tables` (module order), or an empty one.
fn table_of<'a>(tables: &[(usize, Fixups<'a>)], mi: usize) -> Fixups<'a> {
    tables
        .binary_search_by_key(&mi, |&(k, _)| k)
        .map_or_else(|_| Fixups::default(), |i| tables[i].1)
}

/// Modules one thread takes at a time from a shared decode.
const DECODE_RUN: usize = 16;

/// Verifies and decodes the blocks of modules `todo` (ascending), in runs
/// of [`DECODE_RUN`] modules taken by whichever threads `share` lends;
/// returns them in module order (and the first error in module order).
/// `(section_at, init)`: where the manifest section starts in `file`, and
/// the initial bytes of every module.
fn decode_blocks<'a>(
    file: &'a [u8],
    (section_at, init): (u64, &'a [u8]),
    m: &Manifest,
    todo: Vec<usize>,
    share: shared::Share<'_>,
) -> Result<Vec<(usize, codec::Block<'a>)>, ImageError> {
    let one = |mi: usize| -> Result<codec::Block<'a>, ImageError> {
        let md = &m.modules[mi];
        let block = block_of(file, section_at, md)?;
        let mine = slice_at(init, md.init.0, md.init.1)
            .ok_or(ImageError::Truncated("module initial data"))?;
        let computed = block_checksum(block, mine);
        if computed != md.block_checksum {
            return Err(ImageError::SegmentChecksum {
                module: m.str(md.name).to_string(),
                stored: md.block_checksum,
                computed,
            });
        }
        let b = codec::decode_block(block, mi)?;
        codec::validate_block(m, mi, &b, init.len() as u64)?;
        Ok(b)
    };
    if todo.len() <= DECODE_RUN {
        return todo.into_iter().map(|mi| Ok((mi, one(mi)?))).collect();
    }
    let runs: Vec<Vec<usize>> = todo.chunks(DECODE_RUN).map(<[usize]>::to_vec).collect();
    let decoded = shared::run_shared(runs, share, |run| {
        let mut blocks = Vec::with_capacity(run.len());
        for mi in run {
            blocks.push((mi, one(mi)?));
        }
        Ok::<_, ImageError>(blocks)
    });
    let mut out = Vec::with_capacity(decoded.len() * DECODE_RUN);
    for run in decoded {
        // A run whose thread panicked has no result.
        out.extend(run.ok_or(ImageError::Internal("decoding a module block failed"))??);
    }
    Ok(out)
}

/// Module `md`'s block in `file`, whose manifest section starts at
/// `section_at`.
fn block_of<'f>(file: &'f [u8], section_at: u64, md: &Module) -> Result<&'f [u8], ImageError> {
    md.block
        .0
        .checked_add(section_at)
        .and_then(|o| slice_at(file, o, md.block.1))
        .ok_or(ImageError::Truncated("module block"))
}

/// Recomputes every checksum of `file` in place: each module's segment and
/// block checksums and the global part's. For tests and fuzzers that alter
/// an image on purpose and want it read as if hcr-link had written it.
///
/// # Errors
/// The manifest's global part cannot be found or decoded.
pub fn reseal(file: &mut [u8]) -> Result<(), ImageError> {
    let at = usize::try_from(elf::manifest_offset(file)?)
        .map_err(|_| ImageError::Truncated("manifest"))?;
    let (section, header, g) = global_of(file, true)?;
    let len = usize::try_from(header.body_len).map_err(|_| ImageError::Truncated("manifest"))?;
    let mut m = g.finish(section, None)?;
    let area = slice_at(file, header.area_file_offset, header.area_file_size).unwrap_or(&[]);
    let init = slice_at(file, header.init_file_offset, header.init_file_size).unwrap_or(&[]);
    let mut records = Vec::with_capacity(m.modules.len());
    for mi in 0..m.modules.len() {
        let md = &m.modules[mi];
        let seg_sum = area.get(md.seg.range()).map(segment_checksum);
        let block = block_of(file, at as u64, md).unwrap_or(&[]);
        let mine = slice_at(init, md.init.0, md.init.1).unwrap_or(&[]);
        let sum = block_checksum(block, mine);
        let block_len = block.len() as u64;
        if let Some(c) = seg_sum {
            m.modules[mi].checksum = c;
        }
        records.push(codec::encode_record(&m, &m.modules[mi], block_len, sum));
    }
    let mut global = codec::encode_global(&m, &records);
    if global.len() != len {
        return Err(ImageError::Truncated("manifest body"));
    }
    let start = at + HEADER_SIZE;
    let sum = checksum(&global);
    for r in &records {
        global.extend_from_slice(r);
    }
    file.get_mut(start..start + global.len())
        .ok_or(ImageError::Truncated("module records"))?
        .copy_from_slice(&global);
    file[at + 16..at + 24].copy_from_slice(&sum.to_le_bytes());
    Ok(())
}

/// The manifest section of `file`, its header, and its global part (the
/// checksum verified when `check` is set).
fn global_of(file: &[u8], check: bool) -> Result<(&[u8], Header, codec::Global<'_>), ImageError> {
    let (section, header, body) = global_body(file, check)?;
    Ok((section, header, codec::decode_index(body)?))
}

/// The manifest section of `file`, its header, and its global part's
/// bytes (their checksum verified when `check` is set).
fn global_body(file: &[u8], check: bool) -> Result<(&[u8], Header, &[u8]), ImageError> {
    let section = elf::manifest_section(file)?;
    let header = header_of(section)?;
    let body = section
        .get(HEADER_SIZE..)
        .and_then(|b| b.get(..usize::try_from(header.body_len).ok()?))
        .ok_or(ImageError::Truncated("manifest body"))?;
    if check {
        let computed = checksum(body);
        if computed != header.checksum {
            return Err(ImageError::Checksum {
                stored: header.checksum,
                computed,
            });
        }
    }
    Ok((section, header, body))
}

/// File offset of an image's manifest section (module blocks lie at
/// [`Module::block`] from it).
///
/// # Errors
/// Not an image, or its section headers lie outside `file`.
pub fn manifest_offset(file: &[u8]) -> Result<u64, ImageError> {
    elf::manifest_offset(file)
}

/// The fixed header at the start of the manifest `section`, of this
/// format version.
fn header_of(section: &[u8]) -> Result<Header, ImageError> {
    let header = codec::decode_header(section)?;
    if header.version != FORMAT_VERSION {
        return Err(ImageError::Version {
            found: header.version,
        });
    }
    Ok(header)
}

fn slice_at(file: &[u8], off: u64, len: u64) -> Option<&[u8]> {
    let off = usize::try_from(off).ok()?;
    let len = usize::try_from(len).ok()?;
    file.get(off..off.checked_add(len)?)
}

/// The checksum stored in [`Header::checksum`]: the manifest's global
/// part (each module's block has its own, [`Module::block_checksum`]).
pub fn checksum(global: &[u8]) -> u64 {
    twox_hash::XxHash3_64::oneshot(global)
}

/// The checksum of a module's segment bytes ([`Module::checksum`]).
pub fn segment_checksum(bytes: &[u8]) -> u64 {
    twox_hash::XxHash3_64::oneshot(bytes)
}

/// Encodes the manifest body: the global part, then each module's block
/// (its fixups from `fixups`, its checksum over the block and the module's
/// part of `init`). Returns the bytes and the global part's length (what
/// [`Header::body_len`] and [`Header::checksum`] cover).
pub fn encode_body<'f>(
    manifest: &Manifest,
    fixups: &dyn Fn(usize) -> ModuleFixups<'f>,
    init: &[u8],
) -> (Vec<u8>, usize) {
    codec::encode_body(manifest, fixups, init)
}

/// Encodes the full manifest section: header followed by `body`.
pub fn encode_manifest(header: &Header, body: &[u8]) -> Vec<u8> {
    let mut out = codec::encode_header(header);
    out.extend_from_slice(body);
    out
}

/// The manifest section's header alone; the body follows it in the file.
pub fn encode_manifest_header(header: &Header) -> Vec<u8> {
    codec::encode_header(header)
}

/// Content hash of an input object, as stored in [`Module::content_hash`].
pub fn content_hash(bytes: &[u8]) -> u64 {
    twox_hash::XxHash3_64::oneshot(bytes)
}

/// Strings of a manifest read one after another, mostly from one table
/// (a module's names, in a walk over its functions): the table is looked
/// up when it changes rather than for every string (25 000 function names
/// at a first load).
pub struct Names<'m> {
    m: &'m Manifest,
    table: u32,
    text: &'m str,
}

impl<'m> Names<'m> {
    /// A reader of `m`'s strings.
    pub fn new(m: &'m Manifest) -> Self {
        Names {
            m,
            table: 0,
            text: &m.strings,
        }
    }

    /// The text of `s` (as [`Manifest::str`]).
    pub fn get(&mut self, s: Str) -> &'m str {
        if s.table != self.table {
            self.table = s.table;
            self.text = self.m.table(s.table);
        }
        s.within(self.text)
    }
}

impl Manifest {
    /// The text of `s` ("" for a range outside the table, which decoding
    /// never lets through).
    pub fn str(&self, s: Str) -> &str {
        s.within(self.table(s.table))
    }

    /// String table `table` ([`Str::table`]; "" for none): what a walk over
    /// many strings of one table looks up once ([`Str::within`]).
    pub fn table(&self, table: u32) -> &str {
        match table {
            0 => &self.strings,
            k if k & RECORD_STRINGS != 0 => self
                .modules
                .get((k & !RECORD_STRINGS) as usize)
                .map_or("", |m| &m.names),
            k => self
                .module_strings
                .get(k as usize - 1)
                .map_or("", |t| &t[..]),
        }
    }

    /// String table `table` as the shared text it is held in, when it is a
    /// module's table ([`Manifest::module_strings`]): what a reader that
    /// outlives this manifest keeps instead of copying names out of it.
    /// `None` for the manifest's own table and a record's names.
    pub fn shared_table(&self, table: u32) -> Option<&Arc<str>> {
        match table {
            0 => None,
            k if k & RECORD_STRINGS != 0 => None,
            k => self.module_strings.get(k as usize - 1),
        }
    }

    /// Module `mi`'s functions and the string table all their names lie
    /// in, as the shared lists they are held in (see
    /// [`Manifest::shared_table`]); `None` when it has no function or its
    /// names lie elsewhere. (A decoded block names all its functions in
    /// its module's table, so the first function's table is theirs.)
    pub fn shared_names(&self, mi: usize) -> Option<SharedNames<'_>> {
        let fns = self.functions.shared_part(mi)?;
        let table = fns.first()?.name.table;
        let text = self.shared_table(table)?;
        debug_assert!(fns.iter().all(|f| f.name.table == table));
        Some((fns, text))
    }

    /// Adds `text` to the string table.
    pub fn intern(&mut self, text: &str) -> Str {
        codec::append_str(&mut self.strings, text)
    }

    /// The identity of object `o` within its module: what the runtime keys
    /// its persistent storage by.
    pub fn object_key(&self, o: &Object) -> &str {
        if o.identity.len > 0 {
            self.str(o.identity)
        } else {
            self.str(o.name)
        }
    }

    /// Area offset of `rel`, an offset from the start of module `m`'s
    /// segment (wrapping).
    #[inline]
    pub fn area_offset(&self, m: ModuleId, rel: u32) -> u32 {
        self.modules
            .get(m.0 as usize)
            .map_or(rel, |md| md.seg.start.wrapping_add(rel))
    }

    /// True when module `mi`'s record is the one module `mi` of the
    /// manifest this one was read against had ([`ReadSummary::shared`]).
    #[inline]
    pub fn shared_record(&self, mi: usize) -> bool {
        self.read.shared.get(mi).copied().unwrap_or(false)
    }

    /// True when module `mi`'s record is shared ([`Manifest::shared_record`])
    /// and its functions and objects have the same global indices as there.
    #[inline]
    pub fn same_ids(&self, mi: usize) -> bool {
        self.read.same_ids.get(mi).copied().unwrap_or(false)
    }

    /// [`Module::reachable`] of module `mi`, from the compact summary when
    /// there is one.
    #[inline]
    pub fn reachable(&self, mi: usize) -> bool {
        match self.read.reachable.get(mi) {
            Some(&r) => r,
            None => self.modules.get(mi).is_some_and(|md| md.reachable),
        }
    }

    /// Where module `mi`'s segment starts in the area ([`Module::seg`]),
    /// from the compact summary when there is one.
    #[inline]
    pub fn seg_start(&self, mi: usize) -> u32 {
        match self.read.seg.get(mi) {
            Some(&(start, _)) => start,
            None => self.modules.get(mi).map_or(0, |md| md.seg.start),
        }
    }

    /// True when module `mi` may refer into other modules' segments
    /// ([`ModuleRecord::deps`] not empty), from the compact summary when
    /// there is one.
    #[inline]
    pub fn has_deps(&self, mi: usize) -> bool {
        match self.read.has_deps.get(mi) {
            Some(&d) => d,
            None => self.modules.get(mi).is_some_and(|md| !md.deps.is_empty()),
        }
    }

    /// True when this manifest was read against `old`
    /// ([`ReadSummary::against`]): only then do [`Manifest::shared_record`]
    /// and [`Manifest::same_ids`] speak of `old`'s modules.
    #[inline]
    pub fn read_against(&self, old: &Manifest) -> bool {
        old.read.id != 0 && self.read.against == old.read.id
    }

    /// True when this manifest's tables have one part per module, so that
    /// a manifest read against it may share them.
    pub fn parts_complete(&self) -> bool {
        self.functions.parts() == self.modules.len() && self.objects.parts() == self.modules.len()
    }

    /// True when module `mi` of `new` has the block module `mi` of this
    /// manifest has (same name, same block checksum), so the decoded parts
    /// can be shared.
    pub fn shares_block(&self, new: &Manifest, mi: usize) -> bool {
        let (Some(om), Some(md)) = (self.modules.get(mi), new.modules.get(mi)) else {
            return false;
        };
        (om.same_record(md)
            || om.block_checksum == md.block_checksum && self.str(om.name) == new.str(md.name))
            // The shared parts must be as long as the record says.
            && om.functions.len() == md.functions.len()
            && om.objects.len() == md.objects.len()
            && self.parts_complete()
    }

    /// The module whose segment holds area offset `off`.
    pub fn module_at(&self, off: u32) -> Option<ModuleId> {
        let i = self.modules.partition_point(|m| m.seg.start <= off);
        let i = i.checked_sub(1)?;
        self.modules[i]
            .seg
            .contains(off)
            .then_some(ModuleId(i as u32))
    }

    /// The module named `name`.
    pub fn module_by_name(&self, name: &str) -> Option<ModuleId> {
        self.modules
            .iter()
            .position(|m| self.str(m.name) == name)
            .map(|i| ModuleId(i as u32))
    }

    /// Name of module `id` ("?" when out of range).
    pub fn module_name(&self, id: ModuleId) -> &str {
        self.modules
            .get(id.0 as usize)
            .map_or("?", |m| self.str(m.name))
    }

    /// Reachable modules in initialisation order: a depth-first post-order
    /// walk of the import tree from the root (dependencies first).
    pub fn init_order(&self) -> Vec<ModuleId> {
        let mut seen = vec![false; self.modules.len()];
        let mut order = Vec::with_capacity(self.modules.len());
        if (self.root.0 as usize) < self.modules.len() {
            // Iterative DFS: (module, next import index).
            let mut stack = vec![(self.root, 0usize)];
            seen[self.root.0 as usize] = true;
            while let Some(&mut (m, ref mut next)) = stack.last_mut() {
                let imports = &self.modules[m.0 as usize].imports;
                if let Some(&dep) = imports.get(*next) {
                    *next += 1;
                    let d = dep.0 as usize;
                    if d < seen.len() && !seen[d] {
                        seen[d] = true;
                        stack.push((dep, 0));
                    }
                } else {
                    order.push(m);
                    stack.pop();
                }
            }
        }
        order
    }
}

#[cfg(test)]
mod tests;
