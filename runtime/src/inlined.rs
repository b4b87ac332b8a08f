//! Inlined calls at a code address, for crash reports: which functions the
//! compiler inlined into the one that holds the address, innermost last,
//! and the source line each was called from, as a debugger lists them as
//! frames of their own.
//!
//! Read from the image's `.debug_info` when a crash happens, in the signal
//! handler: nothing here allocates or locks. The unit that holds the
//! address (the one whose line program the line table search found) is
//! read with `pread` into an anonymous mapping made for the look-up, its
//! abbreviations indexed there, and its entries walked from the top: a
//! scope (function, inlined call, lexical block) whose addresses miss the
//! target is skipped whole, by its `DW_AT_sibling` when it has one. Range
//! lists, `.debug_addr` entries and strings are read with `pread` where
//! they are needed. DWARF 2 to 5 as gcc and clang write them (32-bit
//! DWARF; `DW_FORM_addrx`, `strx` and `rnglistx` included); anything this
//! does not follow ends the look-up, and the frame is listed as before,
//! without its inlined calls.
//!
//! Addresses in the image's debug sections are area offsets (hcr-link
//! writes them so), as are the offsets looked up here.

use std::os::unix::fs::FileExt as _;

use hcr_image::DwarfReader as Cur;

/// Where an image's unit entries and what they refer to lie in its file:
/// `(offset, size)` of each section.
pub struct InfoSections {
    pub info: (u64, u64),
    pub abbrev: (u64, u64),
    pub str_: Option<(u64, u64)>,
    pub line_str: Option<(u64, u64)>,
    pub str_offsets: Option<(u64, u64)>,
    pub addr: Option<(u64, u64)>,
    pub rnglists: Option<(u64, u64)>,
    pub ranges: Option<(u64, u64)>,
}

/// Most inlined calls listed for one address.
pub const MAX_DEPTH: usize = 32;
/// Most scopes qualifying a name.
const MAX_SCOPES: usize = 16;
/// Deepest nesting of entries followed to a name's scopes.
const MAX_OPEN: usize = 64;
/// Abbreviation codes up to this are found by index; larger ones by a
/// search.
const INDEXED: usize = 8192;
/// Abbreviation bytes read for a unit (a table is a few KiB; C++ units'
/// tens).
const ABBREV_MAX: u64 = 256 << 10;
/// Units larger than this are not read.
const UNIT_MAX: u64 = 256 << 20;

const DW_TAG_CLASS: u64 = 0x02;
const DW_TAG_LEXICAL_BLOCK: u64 = 0x0b;
const DW_TAG_STRUCTURE: u64 = 0x13;
const DW_TAG_UNION: u64 = 0x17;
const DW_TAG_NAMESPACE: u64 = 0x39;
const DW_TAG_SUBPROGRAM: u64 = 0x2e;
const DW_TAG_INLINED_SUBROUTINE: u64 = 0x1d;
const DW_AT_SIBLING: u64 = 0x01;
const DW_AT_NAME: u64 = 0x03;
const DW_AT_STMT_LIST: u64 = 0x10;
const DW_AT_LOW_PC: u64 = 0x11;
const DW_AT_HIGH_PC: u64 = 0x12;
const DW_AT_ABSTRACT_ORIGIN: u64 = 0x31;
const DW_AT_SPECIFICATION: u64 = 0x47;
const DW_AT_ENTRY_PC: u64 = 0x52;
const DW_AT_RANGES: u64 = 0x55;
const DW_AT_CALL_FILE: u64 = 0x58;
const DW_AT_CALL_LINE: u64 = 0x59;
const DW_AT_LINKAGE_NAME: u64 = 0x6e;
const DW_AT_STR_OFFSETS_BASE: u64 = 0x72;
const DW_AT_ADDR_BASE: u64 = 0x73;
const DW_AT_RNGLISTS_BASE: u64 = 0x74;
const DW_AT_MIPS_LINKAGE_NAME: u64 = 0x2007;

/// One inlined call holding the address: the inlined function's entry
/// (its abstract origin, an offset in the unit) and where it was called.
#[derive(Clone, Copy, Default)]
pub struct Level {
    origin: usize,
    pub call_file: u64,
    pub call_line: u64,
    /// Its code starts at the address looked up: a debugger stopped
    /// there shows the call, not yet the inlined function (`bt` lists
    /// the frame it was inlined into, at the line of the call).
    pub starts_here: bool,
}

/// The inlined calls holding an address, outermost first, with the unit
/// they were read from (mapped until this is dropped).
pub struct Chain<'s> {
    src: &'s InfoSections,
    file: &'s std::fs::File,
    map: Mapping,
    unit: Unit,
    /// Where the abbreviation bytes and their index start in the mapping.
    abbrev_at: usize,
    abbrev_len: usize,
    levels: [Level; MAX_DEPTH],
    depth: usize,
}

/// What a unit's header and top entry say that reading it needs.
#[derive(Clone, Copy, Default)]
struct Unit {
    version: u16,
    addr_size: u8,
    /// Offset of the first entry in the unit's bytes.
    first: usize,
    /// Where the unit's line program starts in `.debug_line`.
    stmt_list: u64,
    low_pc: u64,
    str_offsets_base: Option<u64>,
    addr_base: Option<u64>,
    rnglists_base: Option<u64>,
}

/// An anonymous read-write mapping, unmapped on drop.
struct Mapping {
    at: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> Option<Mapping> {
        // SAFETY: a fresh private anonymous mapping; mmap is a system call
        // (async-signal-safe in practice), and the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len.max(1),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        (p != libc::MAP_FAILED).then(|| Mapping {
            at: p.cast(),
            len: len.max(1),
        })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes mapped read-write for this value's life.
        unsafe { std::slice::from_raw_parts(self.at, self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as `bytes`; `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.at, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` made; no reference to
        // its bytes outlives `self`.
        unsafe { libc::munmap(self.at.cast(), self.len) };
    }
}

/// The inlined calls holding area offset `target`, in the unit whose line
/// program starts at `stmt_list` of `.debug_line`. `None` when there are
/// none or they cannot be read.
pub fn chain<'s>(
    src: &'s InfoSections,
    file: &'s std::fs::File,
    stmt_list: u64,
    target: u64,
    known: &mut Option<UnitAt>,
) -> Option<Chain<'s>> {
    let found = match *known {
        Some(k) if k.unit.stmt_list == stmt_list => k,
        _ => {
            let k = find_unit(src, file, stmt_list)?;
            *known = Some(k);
            k
        }
    };
    let (unit_at, unit_len, abbrev_off) = (found.at, found.len, found.abbrev);
    let abbrev_len = ABBREV_MAX.min(src.abbrev.1.checked_sub(abbrev_off)?) as usize;
    let unit_len = usize::try_from(unit_len).ok()?;
    let abbrev_at = unit_len.next_multiple_of(8);
    let index_at = (abbrev_at + abbrev_len).next_multiple_of(8);
    let mut map = Mapping::new(index_at + INDEXED * 4)?;
    {
        let b = map.bytes_mut();
        file.read_exact_at(&mut b[..unit_len], src.info.0 + unit_at)
            .ok()?;
        file.read_exact_at(
            &mut b[abbrev_at..abbrev_at + abbrev_len],
            src.abbrev.0 + abbrev_off,
        )
        .ok()?;
        let (abbrevs, index) = b[abbrev_at..].split_at_mut(index_at - abbrev_at);
        index_abbrevs(&abbrevs[..abbrev_len], index);
    }
    let mut chain = Chain {
        src,
        file,
        map,
        unit: found.unit,
        abbrev_at,
        abbrev_len,
        levels: [Level::default(); MAX_DEPTH],
        depth: 0,
    };
    chain.walk(unit_len, target)?;
    (chain.depth > 0).then_some(chain)
}

/// Where a unit was found (by the line program it names): the next
/// look-up in the same unit skips the search.
#[derive(Clone, Copy)]
pub struct UnitAt {
    /// Its offset in `.debug_info`, its length with its header, its
    /// abbreviations' offset in `.debug_abbrev`.
    at: u64,
    len: u64,
    abbrev: u64,
    /// What its header and top entry say.
    unit: Unit,
}

/// The compile unit whose line program starts at `stmt_list`.
fn find_unit(src: &InfoSections, file: &std::fs::File, stmt_list: u64) -> Option<UnitAt> {
    let mut at = 0u64;
    let mut head = [0u8; 1024];
    let mut abbrev = Mapping::new(ABBREV_MAX as usize)?;
    while at + 11 <= src.info.1 {
        let want = (src.info.1 - at).min(head.len() as u64) as usize;
        file.read_exact_at(&mut head[..want], src.info.0 + at)
            .ok()?;
        let mut c = Cur {
            b: &head[..want],
            at: 0,
        };
        let len = c.fixed(4)?;
        if len >= 0xffff_fff0 {
            return None;
        }
        let total = 4 + len;
        if at + total > src.info.1 || total > UNIT_MAX {
            return None;
        }
        if let Some((abbrev_off, unit)) = top_entry(src, file, &mut c, abbrev.bytes_mut()) {
            if unit.stmt_list == stmt_list {
                return Some(UnitAt {
                    at,
                    len: total,
                    abbrev: abbrev_off,
                    unit,
                });
            }
        }
        at += total;
    }
    None
}

/// A unit header's abbreviation offset, and what the header and the top
/// entry say (its line program, base address, and the bases of its
/// string offsets, addresses and range lists), from the unit's first
/// bytes at `c`.
fn top_entry(
    src: &InfoSections,
    file: &std::fs::File,
    c: &mut Cur<'_>,
    abbrev: &mut [u8],
) -> Option<(u64, Unit)> {
    let (version, unit_type, abbrev_off, addr_size) = header(c)?;
    if unit_type != 1 {
        return None;
    }
    let first = c.at;
    let code = c.uleb()?;
    // The top entry's declaration is usually among the first: a page is
    // read, then (a large C++ table) the rest.
    let rest = src.abbrev.1.checked_sub(abbrev_off)?;
    let mut want = 0;
    let mut specs = None;
    for len in [4096, abbrev.len() as u64] {
        want = rest.min(len) as usize;
        file.read_exact_at(&mut abbrev[..want], src.abbrev.0 + abbrev_off)
            .ok()?;
        // (Found whole: its attribute list may run past the page.)
        specs = find_abbrev(&abbrev[..want], None, code)
            .map(|a| a.2)
            .filter(|&at| attributes_end(&abbrev[..want], at).is_some());
        if specs.is_some() || want as u64 == rest {
            break;
        }
    }
    let specs = specs?;
    let mut unit = Unit {
        version,
        addr_size,
        first,
        ..Unit::default()
    };
    let mut stmt_list = None;
    let probe = unit;
    attributes(&abbrev[..want], specs, c, &probe, |name, v| {
        match (name, v) {
            (DW_AT_STMT_LIST, Value::Num(n)) => stmt_list = Some(n),
            (DW_AT_LOW_PC, Value::Addr(a)) => unit.low_pc = a,
            (DW_AT_STR_OFFSETS_BASE, Value::Num(n)) => unit.str_offsets_base = Some(n),
            (DW_AT_ADDR_BASE, Value::Num(n)) => unit.addr_base = Some(n),
            (DW_AT_RNGLISTS_BASE, Value::Num(n)) => unit.rnglists_base = Some(n),
            _ => {}
        }
        true
    })?;
    unit.stmt_list = stmt_list?;
    Some((abbrev_off, unit))
}

/// Reads the attribute values of an entry at `c`, whose abbreviation's
/// specifications start at `specs` in `abbrevs`, handing each to `f`
/// (`(attribute, value)`) until it returns false. `None` when they
/// cannot be read.
fn attributes(
    abbrevs: &[u8],
    specs: usize,
    c: &mut Cur<'_>,
    unit: &Unit,
    mut f: impl FnMut(u64, Value) -> bool,
) -> Option<()> {
    let mut a = Cur {
        b: abbrevs,
        at: specs,
    };
    loop {
        let (name, form) = (a.uleb()?, a.uleb()?);
        if name == 0 && form == 0 {
            return Some(());
        }
        let implicit = if form == 0x21 { a.sleb()? } else { 0 };
        let v = value(c, form, implicit, unit)?;
        if !f(name, v) {
            return Some(());
        }
    }
}

/// A unit header: `(version, unit type, abbreviation offset, address
/// size)`; `c` is left at the first entry. Versions before 5 have no
/// unit type: compile unit (1).
fn header(c: &mut Cur<'_>) -> Option<(u16, u8, u64, u8)> {
    let version = c.fixed(2)? as u16;
    match version {
        5 => {
            let unit_type = c.u8()?;
            let addr_size = c.u8()?;
            let abbrev = c.fixed(4)?;
            // Skeleton and split units have an 8-byte id; type units a
            // signature and an offset.
            match unit_type {
                1 | 3 => {}
                4 | 5 => c.skip(8)?,
                2 | 6 => c.skip(12)?,
                _ => return None,
            }
            Some((version, unit_type, abbrev, addr_size))
        }
        2..=4 => {
            let abbrev = c.fixed(4)?;
            Some((version, 1, abbrev, c.u8()?))
        }
        _ => None,
    }
}

/// Records where each abbreviation code's declaration starts (`code` ≤
/// [`INDEXED`]) in `index`, as little-endian `u32` offsets + 1 (0: none).
fn index_abbrevs(abbrevs: &[u8], index: &mut [u8]) {
    let mut c = Cur { b: abbrevs, at: 0 };
    while let Some(code) = c.uleb() {
        if code == 0 {
            return;
        }
        let at = c.at;
        if (code as usize) < INDEXED {
            let slot = code as usize * 4;
            if let Some(s) = index.get_mut(slot..slot + 4) {
                s.copy_from_slice(&(at as u32 + 1).to_le_bytes());
            }
        }
        if skip_abbrev(&mut c).is_none() {
            return;
        }
    }
}

/// Where the attribute specifications at `at` end (after their `0, 0`).
fn attributes_end(abbrevs: &[u8], at: usize) -> Option<usize> {
    let mut c = Cur { b: abbrevs, at };
    loop {
        let (name, form) = (c.uleb()?, c.uleb()?);
        if form == 0x21 {
            c.sleb()?;
        }
        if name == 0 && form == 0 {
            return Some(c.at);
        }
    }
}

/// Skips a declaration's tag, children flag and attribute specifications.
fn skip_abbrev(c: &mut Cur<'_>) -> Option<()> {
    c.uleb()?;
    c.u8()?;
    c.at = attributes_end(c.b, c.at)?;
    Some(())
}

/// Abbreviation `code`: `(tag, has children, offset of its attribute
/// specifications)` in `abbrevs`, by `index` when given.
fn find_abbrev(abbrevs: &[u8], index: Option<&[u8]>, code: u64) -> Option<(u64, bool, usize)> {
    let decl = |at: usize| -> Option<(u64, bool, usize)> {
        let mut c = Cur { b: abbrevs, at };
        let tag = c.uleb()?;
        let children = c.u8()? != 0;
        Some((tag, children, c.at))
    };
    if let Some(index) = index.filter(|_| (code as usize) < INDEXED) {
        let slot = code as usize * 4;
        let at = u32::from_le_bytes(index.get(slot..slot + 4)?.try_into().ok()?);
        return decl(at.checked_sub(1)? as usize);
    }
    let mut c = Cur { b: abbrevs, at: 0 };
    loop {
        let k = c.uleb()?;
        if k == 0 {
            return None;
        }
        if k == code {
            return decl(c.at);
        }
        skip_abbrev(&mut c)?;
    }
}

/// An attribute's value, as far as the look-up needs it.
#[derive(Clone, Copy)]
enum Value {
    /// A constant, an offset into another section, a flag.
    Num(u64),
    /// An address (an area offset).
    Addr(u64),
    /// An index into `.debug_addr`.
    AddrX(u64),
    /// A string inside the unit: `(start, length)`.
    Inline(usize, usize),
    /// An offset into `.debug_str` / `.debug_line_str`.
    Strp(u64),
    LineStrp(u64),
    /// An index into `.debug_str_offsets`.
    StrX(u64),
    /// A reference to an entry of this unit, from the unit's start.
    Ref(u64),
    /// An index into the unit's range list offsets.
    RngListX(u64),
    /// Nothing this reads (blocks, expressions, other references).
    Other,
}

/// Reads one attribute value of `form`.
fn value(c: &mut Cur<'_>, form: u64, implicit: i64, unit: &Unit) -> Option<Value> {
    let addr = usize::from(unit.addr_size);
    Some(match form {
        0x01 => Value::Addr(c.fixed(addr)?),
        0x03 => {
            let n = c.fixed(2)? as usize;
            c.skip(n)?;
            Value::Other
        }
        0x04 => {
            let n = c.fixed(4)? as usize;
            c.skip(n)?;
            Value::Other
        }
        0x09 | 0x18 => {
            let n = usize::try_from(c.uleb()?).ok()?;
            c.skip(n)?;
            Value::Other
        }
        0x0a => {
            let n = usize::from(c.u8()?);
            c.skip(n)?;
            Value::Other
        }
        0x05 => Value::Num(c.fixed(2)?),
        0x06 | 0x17 => Value::Num(c.fixed(4)?),
        0x07 => Value::Num(c.fixed(8)?),
        0x0b | 0x0c => Value::Num(c.fixed(1)?),
        0x0d => Value::Num(c.sleb()? as u64),
        0x0f => Value::Num(c.uleb()?),
        0x19 => Value::Num(1),
        0x21 => Value::Num(implicit as u64),
        0x1e => {
            c.skip(16)?;
            Value::Other
        }
        0x08 => {
            let (s, l) = c.cstr()?;
            Value::Inline(s, l)
        }
        0x0e => Value::Strp(c.fixed(4)?),
        0x1f => Value::LineStrp(c.fixed(4)?),
        0x1a | 0x1f02 => Value::StrX(c.uleb()?),
        0x25 => Value::StrX(c.fixed(1)?),
        0x26 => Value::StrX(c.fixed(2)?),
        0x27 => Value::StrX(c.fixed(3)?),
        0x28 => Value::StrX(c.fixed(4)?),
        0x1b | 0x1f01 => Value::AddrX(c.uleb()?),
        0x29 => Value::AddrX(c.fixed(1)?),
        0x2a => Value::AddrX(c.fixed(2)?),
        0x2b => Value::AddrX(c.fixed(3)?),
        0x2c => Value::AddrX(c.fixed(4)?),
        0x11 => Value::Ref(c.fixed(1)?),
        0x12 => Value::Ref(c.fixed(2)?),
        0x13 => Value::Ref(c.fixed(4)?),
        0x14 => Value::Ref(c.fixed(8)?),
        0x15 => Value::Ref(c.uleb()?),
        0x10 => {
            c.skip(if unit.version <= 2 { addr } else { 4 })?;
            Value::Other
        }
        0x1c | 0x1d | 0x1f20 | 0x1f21 => {
            c.skip(4)?;
            Value::Other
        }
        0x20 | 0x24 => {
            c.skip(8)?;
            Value::Other
        }
        0x22 => {
            c.uleb()?;
            Value::Other
        }
        0x23 => Value::RngListX(c.uleb()?),
        0x16 => {
            // (One level: an indirect form naming another is refused.)
            let f = c.uleb()?;
            if f == 0x16 {
                return None;
            }
            return value(c, f, implicit, unit);
        }
        _ => return None,
    })
}

/// What one entry says that the walk needs.
#[derive(Default)]
struct Entry {
    tag: u64,
    children: bool,
    low: Option<Value>,
    /// `(value, whether it is an address rather than a length)`.
    high: Option<(Value, bool)>,
    ranges: Option<Value>,
    entry_pc: Option<Value>,
    origin: Option<u64>,
    sibling: Option<u64>,
    call_file: u64,
    call_line: u64,
}

impl Chain<'_> {
    /// The unit's bytes, abbreviations and their index.
    fn parts(&self) -> (&[u8], &[u8], &[u8]) {
        let b = self.map.bytes();
        let index_at = (self.abbrev_at + self.abbrev_len).next_multiple_of(8);
        (
            b,
            &b[self.abbrev_at..self.abbrev_at + self.abbrev_len],
            &b[index_at..],
        )
    }

    /// Reads the entry at `c` (its code already read: `code`).
    fn entry(&self, c: &mut Cur<'_>, code: u64) -> Option<Entry> {
        let (_, abbrevs, index) = self.parts();
        let (tag, children, specs) = find_abbrev(abbrevs, Some(index), code)?;
        let mut e = Entry {
            tag,
            children,
            ..Entry::default()
        };
        attributes(abbrevs, specs, c, &self.unit, |name, v| {
            match (name, v) {
                (DW_AT_LOW_PC, v) => e.low = Some(v),
                (DW_AT_HIGH_PC, v) => {
                    e.high = Some((v, matches!(v, Value::Addr(_) | Value::AddrX(_))))
                }
                (DW_AT_RANGES, v) => e.ranges = Some(v),
                (DW_AT_ENTRY_PC, v) => e.entry_pc = Some(v),
                (DW_AT_ABSTRACT_ORIGIN, Value::Ref(r)) => e.origin = Some(r),
                (DW_AT_SIBLING, Value::Ref(r)) => e.sibling = Some(r),
                (DW_AT_CALL_FILE, Value::Num(n)) => e.call_file = n,
                (DW_AT_CALL_LINE, Value::Num(n)) => e.call_line = n,
                _ => {}
            }
            true
        })?;
        Some(e)
    }

    /// Whether `e`'s addresses hold `target`: its entry (where its code
    /// starts: `DW_AT_entry_pc`, else its first range's start) when they
    /// do; `None` when it has no addresses.
    fn covers(&self, e: &Entry, target: u64) -> Option<Option<u64>> {
        let start = if let Some(r) = e.ranges {
            self.ranges_cover(r, target).flatten()
        } else {
            let low = self.address(e.low?)?;
            let high = match e.high? {
                (v, true) => self.address(v)?,
                (Value::Num(n), false) => low.wrapping_add(n),
                _ => return None,
            };
            (low <= target && target < high).then_some(low)
        };
        let Some(start) = start else {
            return Some(None);
        };
        // (DWARF 5 allows the entry as an offset from the start.)
        let entry = match e.entry_pc {
            Some(Value::Num(n)) => Some(start.wrapping_add(n)),
            Some(v) => self.address(v),
            None => None,
        };
        Some(Some(entry.unwrap_or(start)))
    }

    /// The value of an address attribute.
    fn address(&self, v: Value) -> Option<u64> {
        match v {
            Value::Addr(a) => Some(a),
            Value::AddrX(i) => self.addr_index(i),
            _ => None,
        }
    }

    /// Entry `i` of the unit's `.debug_addr` contribution.
    fn addr_index(&self, i: u64) -> Option<u64> {
        let (sec, size) = self.src.addr?;
        let n = u64::from(self.unit.addr_size);
        let off = self.unit.addr_base?.checked_add(i.checked_mul(n)?)?;
        if off.checked_add(n)? > size {
            return None;
        }
        let mut b = [0u8; 8];
        self.file
            .read_exact_at(&mut b[..n as usize], sec + off)
            .ok()?;
        Some(u64::from_le_bytes(b))
    }

    /// Whether the range list `r` (`DW_AT_ranges`) holds `target`: the
    /// start of its first (non-empty) range when it does.
    fn ranges_cover(&self, r: Value, target: u64) -> Option<Option<u64>> {
        let mut buf = [0u8; 2048];
        if self.unit.version < 5 {
            let Value::Num(off) = r else { return None };
            let (sec, size) = self.src.ranges?;
            let want = (size.checked_sub(off)?).min(buf.len() as u64) as usize;
            self.file.read_exact_at(&mut buf[..want], sec + off).ok()?;
            return Some(v4_ranges_cover(
                &buf[..want],
                self.unit.addr_size,
                self.unit.low_pc,
                target,
            ));
        }
        let (sec, size) = self.src.rnglists?;
        let off = match r {
            Value::Num(off) => off,
            Value::RngListX(i) => {
                let base = self.unit.rnglists_base?;
                let mut b = [0u8; 4];
                self.file
                    .read_exact_at(&mut b, sec + base.checked_add(i.checked_mul(4)?)?)
                    .ok()?;
                base.checked_add(u64::from(u32::from_le_bytes(b)))?
            }
            _ => return None,
        };
        let want = (size.checked_sub(off)?).min(buf.len() as u64) as usize;
        self.file.read_exact_at(&mut buf[..want], sec + off).ok()?;
        let mut c = Cur {
            b: &buf[..want],
            at: 0,
        };
        let n = usize::from(self.unit.addr_size);
        let mut base = self.unit.low_pc;
        let mut first = None;
        loop {
            let (lo, hi) = match c.u8()? {
                0 => return Some(None),
                1 => {
                    base = self.addr_index(c.uleb()?)?;
                    continue;
                }
                2 => (self.addr_index(c.uleb()?)?, self.addr_index(c.uleb()?)?),
                3 => {
                    let lo = self.addr_index(c.uleb()?)?;
                    (lo, lo.wrapping_add(c.uleb()?))
                }
                4 => (base.wrapping_add(c.uleb()?), base.wrapping_add(c.uleb()?)),
                5 => {
                    base = c.fixed(n)?;
                    continue;
                }
                6 => (c.fixed(n)?, c.fixed(n)?),
                7 => {
                    let lo = c.fixed(n)?;
                    (lo, lo.wrapping_add(c.uleb()?))
                }
                _ => return None,
            };
            if lo < hi {
                first = first.or(Some(lo));
            }
            if lo <= target && target < hi {
                return Some(first);
            }
        }
    }

    /// Walks the unit's entries to the function holding `target`, noting
    /// each inlined call inside it that holds `target`.
    fn walk(&mut self, unit_len: usize, target: u64) -> Option<()> {
        let mut levels = [Level::default(); MAX_DEPTH];
        let depth = self.walk_in(&self.map.bytes()[..unit_len], target, &mut levels)?;
        self.levels = levels;
        self.depth = depth;
        Some(())
    }

    /// [`Chain::walk`] over the unit's bytes: the number of levels noted.
    fn walk_in(&self, unit: &[u8], target: u64, levels: &mut [Level]) -> Option<usize> {
        let mut c = Cur {
            b: unit,
            at: self.unit.first,
        };
        // The top entry (read already) opens the unit's level.
        let top = c.uleb()?;
        let mut depth = usize::from(self.entry(&mut c, top)?.children);
        // The depth of the function holding `target`, once entered.
        let mut inside: Option<usize> = None;
        let mut noted = 0usize;
        while c.at < unit.len() && depth > 0 {
            let code = c.uleb()?;
            if code == 0 {
                depth -= 1;
                if inside == Some(depth) {
                    break;
                }
                continue;
            }
            let e = self.entry(&mut c, code)?;
            let scope = matches!(
                e.tag,
                DW_TAG_SUBPROGRAM | DW_TAG_INLINED_SUBROUTINE | DW_TAG_LEXICAL_BLOCK
            );
            let covers = if scope { self.covers(&e, target) } else { None };
            // A scope that misses the target, and outside the function
            // holding it one without code (a declaration, an abstract
            // instance), is skipped whole: nothing in it holds the target.
            let skip = match (e.tag, covers) {
                (_, Some(None)) => true,
                (DW_TAG_SUBPROGRAM, None) => inside.is_none(),
                _ => false,
            };
            if skip && e.children {
                match e.sibling.and_then(|s| usize::try_from(s).ok()) {
                    Some(s) if s > c.at && s <= unit.len() => c.at = s,
                    _ => skip_children(self, &mut c)?,
                }
                continue;
            }
            // Inside the function, only scopes that hold the target are
            // entered: each inlined call met is inside the one before.
            if let Some(Some(entry)) = covers {
                match (e.tag, inside) {
                    (DW_TAG_SUBPROGRAM, None) => inside = Some(depth),
                    (DW_TAG_INLINED_SUBROUTINE, Some(_)) if noted < levels.len() => {
                        if let Some(origin) = e.origin.and_then(|o| usize::try_from(o).ok()) {
                            levels[noted] = Level {
                                origin,
                                call_file: e.call_file,
                                call_line: e.call_line,
                                starts_here: entry == target,
                            };
                            noted += 1;
                        }
                    }
                    _ => {}
                }
            }
            if e.children {
                depth += 1;
            }
        }
        Some(noted)
    }

    /// The inlined calls, outermost first.
    pub fn levels(&self) -> &[Level] {
        &self.levels[..self.depth]
    }

    /// The unit's line program (where call files are named).
    pub fn stmt_list(&self) -> u64 {
        self.unit.stmt_list
    }

    /// Copies the name of level `i`'s inlined function into `out` (its
    /// linkage name when it has one, for a C++ function the demangler
    /// qualifies); returns its length.
    pub fn name(&self, i: usize, out: &mut [u8]) -> Option<usize> {
        let mut at = self.levels.get(i)?.origin;
        // The name, and the entry it is on (whose scopes qualify it).
        let mut plain: Option<(Value, usize)> = None;
        // An abstract origin may itself point on (to a declaration, by
        // its specification): a few steps.
        for _ in 0..4 {
            let die = at;
            let mut linkage = None;
            let mut next = None;
            self.die_attributes(die, |name, v| {
                match (name, v) {
                    (DW_AT_LINKAGE_NAME | DW_AT_MIPS_LINKAGE_NAME, v) => linkage = Some(v),
                    (DW_AT_NAME, v) => plain = plain.or(Some((v, die))),
                    (DW_AT_ABSTRACT_ORIGIN | DW_AT_SPECIFICATION, Value::Ref(r)) => {
                        next = usize::try_from(r).ok()
                    }
                    _ => {}
                }
                linkage.is_none()
            })?;
            if let Some(v) = linkage {
                return self.string(v, out);
            }
            match next {
                Some(n) => at = n,
                None => break,
            }
        }
        // Without a linkage name (gcc gives a template's instance none),
        // the name is qualified by the namespaces and classes around its
        // entry, as a debugger names it.
        let (v, die) = plain?;
        let mut n = 0;
        let mut scopes = [(0usize, 0u64); MAX_SCOPES];
        let count = self.scopes_of(die, &mut scopes).unwrap_or(0);
        for &(scope, tag) in &scopes[..count] {
            let part = match self.die_name(scope) {
                Some(v) => self.string(v, &mut out[n..])?,
                // An unnamed class (a lambda's closure type) is left out.
                None if tag != DW_TAG_NAMESPACE => continue,
                None => {
                    let anon = b"(anonymous namespace)";
                    let k = anon.len().min(out.len() - n);
                    out[n..n + k].copy_from_slice(&anon[..k]);
                    k
                }
            };
            n += part;
            let k = 2.min(out.len() - n);
            out[n..n + k].copy_from_slice(&b"::"[..k]);
            n += k;
        }
        Some(n + self.string(v, &mut out[n..])?)
    }

    /// The `DW_AT_name` of the entry at `at`.
    fn die_name(&self, at: usize) -> Option<Value> {
        let mut found = None;
        self.die_attributes(at, |name, v| {
            if name == DW_AT_NAME {
                found = Some(v);
            }
            found.is_none()
        })?;
        found
    }

    /// [`attributes`] of the entry at `at` of the unit.
    fn die_attributes(&self, at: usize, f: impl FnMut(u64, Value) -> bool) -> Option<()> {
        let (b, abbrevs, index) = self.parts();
        let mut c = Cur { b, at };
        let code = c.uleb()?;
        let (_, _, specs) = find_abbrev(abbrevs, Some(index), code)?;
        attributes(abbrevs, specs, &mut c, &self.unit, f)
    }

    /// The namespaces, classes, structures and unions around the entry at
    /// `die`, outermost first, into `out`; their number. Walked from the
    /// unit's top, skipping (by `DW_AT_sibling`) what lies before it.
    fn scopes_of(&self, die: usize, out: &mut [(usize, u64); MAX_SCOPES]) -> Option<usize> {
        let (b, ..) = self.parts();
        let mut c = Cur {
            b,
            at: self.unit.first,
        };
        let top = c.uleb()?;
        if !self.entry(&mut c, top)?.children {
            return None;
        }
        // Per open level: the entry, if it is a scope.
        let mut open = [None::<(usize, u64)>; MAX_OPEN];
        let mut depth = 0usize;
        while c.at < die {
            let at = c.at;
            let code = c.uleb()?;
            if code == 0 {
                depth = depth.checked_sub(1)?;
                continue;
            }
            let e = self.entry(&mut c, code)?;
            if !e.children {
                continue;
            }
            match e.sibling.and_then(|s| usize::try_from(s).ok()) {
                Some(s) if s <= die && s > c.at => c.at = s,
                _ => {
                    let scope = matches!(
                        e.tag,
                        DW_TAG_NAMESPACE | DW_TAG_CLASS | DW_TAG_STRUCTURE | DW_TAG_UNION
                    );
                    *open.get_mut(depth)? = scope.then_some((at, e.tag));
                    depth += 1;
                }
            }
        }
        if c.at != die {
            return None;
        }
        let mut n = 0;
        for s in open[..depth].iter().flatten() {
            *out.get_mut(n)? = *s;
            n += 1;
        }
        Some(n)
    }

    /// Copies a string attribute's text into `out`; returns its length.
    fn string(&self, v: Value, out: &mut [u8]) -> Option<usize> {
        let (b, ..) = self.parts();
        let (sec, off) = match v {
            Value::Inline(s, l) => {
                let l = l.min(out.len());
                out[..l].copy_from_slice(b.get(s..s + l)?);
                return Some(l);
            }
            Value::Strp(o) => (self.src.str_?, o),
            Value::LineStrp(o) => (self.src.line_str?, o),
            Value::StrX(i) => {
                let (so, size) = self.src.str_offsets?;
                let at = self.unit.str_offsets_base?.checked_add(i.checked_mul(4)?)?;
                if at + 4 > size {
                    return None;
                }
                let mut w = [0u8; 4];
                self.file.read_exact_at(&mut w, so + at).ok()?;
                (self.src.str_?, u64::from(u32::from_le_bytes(w)))
            }
            _ => return None,
        };
        if off >= sec.1 {
            return None;
        }
        let want = (out.len() as u64).min(sec.1 - off) as usize;
        self.file
            .read_exact_at(&mut out[..want], sec.0 + off)
            .ok()?;
        out[..want].iter().position(|&c| c == 0).or(Some(want))
    }
}

/// Skips the children of the entry just read (a scope without
/// `DW_AT_sibling`), to the entry after it.
fn skip_children(chain: &Chain<'_>, c: &mut Cur<'_>) -> Option<()> {
    let mut depth = 1usize;
    while depth > 0 {
        let code = c.uleb()?;
        if code == 0 {
            depth -= 1;
            continue;
        }
        let e = chain.entry(c, code)?;
        if e.children {
            depth += 1;
        }
    }
    Some(())
}

/// Whether a DWARF 4 range list (`.debug_ranges`: address pairs, a
/// base-address entry, a (0, 0) end) holds `target`: the start of its
/// first non-empty range when it does.
fn v4_ranges_cover(b: &[u8], addr_size: u8, low_pc: u64, target: u64) -> Option<u64> {
    let n = usize::from(addr_size);
    let max = if n == 8 {
        u64::MAX
    } else {
        u64::from(u32::MAX)
    };
    let mut c = Cur { b, at: 0 };
    let mut base = low_pc;
    let mut first = None;
    while let (Some(lo), Some(hi)) = (c.fixed(n), c.fixed(n)) {
        if lo == 0 && hi == 0 {
            return None;
        }
        if lo == max {
            base = hi;
            continue;
        }
        let (lo, hi) = (base.wrapping_add(lo), base.wrapping_add(hi));
        if lo < hi {
            first = first.or(Some(lo));
        }
        if lo <= target && target < hi {
            return first;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dwarf4_range_list_is_read_with_its_base_address_entries() {
        let mut b = Vec::new();
        let mut pair = |lo: u64, hi: u64| {
            b.extend_from_slice(&lo.to_le_bytes());
            b.extend_from_slice(&hi.to_le_bytes());
        };
        pair(0x10, 0x20); // from the unit's base (0x1000)
        pair(u64::MAX, 0x5000); // a new base
        pair(0x4, 0x8);
        pair(0, 0); // the end
        pair(0x0, 0x100_0000); // another list's
                               // Holding the target: the list's first range's start.
        assert_eq!(v4_ranges_cover(&b, 8, 0x1000, 0x1010), Some(0x1010));
        assert_eq!(v4_ranges_cover(&b, 8, 0x1000, 0x101f), Some(0x1010));
        assert_eq!(v4_ranges_cover(&b, 8, 0x1000, 0x1020), None);
        assert_eq!(v4_ranges_cover(&b, 8, 0x1000, 0x5006), Some(0x1010));
        assert_eq!(v4_ranges_cover(&b, 8, 0x1000, 0x5008), None);
        // Nothing past the end of the list, nor past the bytes.
        assert_eq!(v4_ranges_cover(&b, 8, 0x1000, 0x10_0000), None);
        assert_eq!(v4_ranges_cover(&b[..20], 8, 0x1000, 0x5006), None);
    }

    /// Abbreviations: code 1 a subprogram with children (name: string,
    /// sibling: ref4), code 200 a variable (implicit constant), code 9000
    /// (past the index) an inlined call.
    fn abbrevs() -> Vec<u8> {
        vec![
            1, 0x2e, 1, 0x03, 0x08, 0x01, 0x13, 0, 0, //
            0xc8, 0x01, 0x34, 0, 0x0b, 0x21, 0x7f, 0, 0, //
            0xa8, 0x46, 0x1d, 0, 0x31, 0x13, 0, 0, //
            0,
        ]
    }

    #[test]
    fn abbreviations_are_found_by_index_and_by_search() {
        let a = abbrevs();
        let mut index = vec![0u8; INDEXED * 4];
        index_abbrevs(&a, &mut index);
        for idx in [Some(&index[..]), None] {
            assert_eq!(find_abbrev(&a, idx, 1), Some((0x2e, true, 3)), "{idx:?}");
            assert_eq!(find_abbrev(&a, idx, 200), Some((0x34, false, 13)));
            assert_eq!(find_abbrev(&a, None, 9000).map(|d| d.0), Some(0x1d));
            assert_eq!(find_abbrev(&a, idx, 7), None);
        }
        // A truncated table finds what it holds and nothing past it; a
        // declaration found whole but cut in its attributes is told by
        // `attributes_end` (the top entry's, read a page first).
        assert_eq!(find_abbrev(&a[..12], None, 200), None);
        assert_eq!(find_abbrev(&a[..12], None, 1), Some((0x2e, true, 3)));
        assert_eq!(attributes_end(&a, 3), Some(9));
        assert_eq!(find_abbrev(&a[..7], None, 1), Some((0x2e, true, 3)));
        assert_eq!(attributes_end(&a[..7], 3), None);
    }

    #[test]
    fn attribute_values_of_every_class_are_read_or_skipped() {
        let unit = Unit {
            version: 5,
            addr_size: 8,
            ..Unit::default()
        };
        let read = |bytes: &[u8], form: u64| {
            let mut c = Cur { b: bytes, at: 0 };
            value(&mut c, form, -3, &unit).map(|v| (v, c.at))
        };
        let num = |r: Option<(Value, usize)>| match r {
            Some((Value::Num(n), at)) => Some((n, at)),
            _ => None,
        };
        assert_eq!(num(read(&[0x34, 0x12], 0x05)), Some((0x1234, 2)));
        assert_eq!(num(read(&[0xe5, 0x8e, 0x26], 0x0f)), Some((624_485, 3)));
        assert_eq!(num(read(&[], 0x21)), Some((-3i64 as u64, 0)));
        assert_eq!(num(read(&[], 0x19)), Some((1, 0)));
        assert!(matches!(read(&[7], 0x25), Some((Value::StrX(7), 1))));
        assert!(matches!(
            read(&[2, 1], 0x2a),
            Some((Value::AddrX(0x102), 2))
        ));
        assert!(matches!(read(&[5], 0x23), Some((Value::RngListX(5), 1))));
        assert!(matches!(
            read(b"ab\0", 0x08),
            Some((Value::Inline(0, 2), 3))
        ));
        // Blocks and expressions are skipped whole.
        assert!(matches!(
            read(&[3, 1, 2, 3, 9], 0x18),
            Some((Value::Other, 4))
        ));
        // `DW_FORM_indirect`: the form first.
        assert!(matches!(read(&[0x0b, 42], 0x16), Some((Value::Num(42), 2))));
        assert!(read(&[0x16, 0x0b, 1], 0x16).is_none());
        // Past the end, or a form nobody writes: nothing.
        assert!(read(&[1], 0x06).is_none());
        assert!(read(&[1], 0x7f).is_none());
    }
}
