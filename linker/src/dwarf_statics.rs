//! The function a numbered static belongs to, from the object's debug
//! information when it was built with `-g`.
//!
//! Without it, a static's owner is read from the code (the functions whose
//! code refers to it, `identity.rs`): exact unless the function was inlined
//! everywhere and its own copy dropped, as gcc does at -O2 with a `static`
//! function. Two such functions, each with a `static int n`, both inlined
//! into the same callers, have the same owners; gcc then numbers their
//! statics in an order that is not the source's (at -O2, the reverse), so
//! adding a third one reshuffles them. The debug information says where
//! each static was declared: a `DW_TAG_variable` whose location is
//! `DW_OP_addr` of the static (a relocation against its symbol or
//! section), inside the `DW_TAG_subprogram` that declares it (the
//! abstract instance of an inlined function, which carries its name).
//!
//! Only what that needs is read: the units of `.debug_info` (DWARF 2 to 5,
//! 32-bit), their abbreviations, names as inline strings or through
//! `.debug_str` / `.debug_line_str` (relocated, as in any relocatable
//! object). Anything else is skipped; a form this does not know ends the
//! unit (its statics keep the owner the code gives).

use std::collections::HashMap;

use crate::parse::{ObjFile, Rel, Sec, Shndx};

const DW_TAG_SUBPROGRAM: u64 = 0x2e;
const DW_TAG_VARIABLE: u64 = 0x34;
const DW_AT_LOCATION: u64 = 0x02;
const DW_AT_NAME: u64 = 0x03;
const DW_AT_ABSTRACT_ORIGIN: u64 = 0x31;
const DW_AT_SPECIFICATION: u64 = 0x47;
const DW_OP_ADDR: u8 = 0x03;

/// Per section index of a static's storage: the name of the function
/// declaring it and the static's place among the variables the debug
/// information lists (source order).
pub(crate) fn static_owners<'d>(obj: &ObjFile<'d>) -> HashMap<u32, (&'d str, u32)> {
    let mut out = HashMap::new();
    let find = |name: &str| obj.sections.iter().position(|s| s.name == name);
    let (Some(info), Some(abbrev)) = (find(".debug_info"), find(".debug_abbrev")) else {
        return out;
    };
    let ctx = Ctx {
        obj,
        info: &obj.sections[info],
        rels: obj.relocs(&obj.sections[info]),
        abbrev: obj.sections[abbrev].data,
        str_sec: find(".debug_str").map(|i| (i as u32, obj.sections[i].data)),
        line_str_sec: find(".debug_line_str").map(|i| (i as u32, obj.sections[i].data)),
    };
    let mut at = 0usize;
    let mut order = 0u32;
    while let Some(next) = ctx.unit(at, &mut out, &mut order) {
        at = next;
    }
    out
}

struct Ctx<'a, 'd> {
    obj: &'a ObjFile<'d>,
    info: &'a Sec<'d>,
    /// `.debug_info`'s relocations, sorted by offset (as the assembler
    /// writes them).
    rels: &'a [Rel],
    abbrev: &'d [u8],
    str_sec: Option<(u32, &'d [u8])>,
    line_str_sec: Option<(u32, &'d [u8])>,
}

/// One abbreviation: tag, children flag, `(attribute, form, implicit
/// constant)`.
struct Abbrev {
    tag: u64,
    children: bool,
    attrs: Vec<(u64, u64, i64)>,
}

/// A cursor over `.debug_info` or `.debug_abbrev`.
type Cur<'d> = hcr_image::DwarfReader<'d>;

/// What a unit's header says that reading its DIEs needs.
#[derive(Clone, Copy)]
struct Unit {
    version: u16,
    addr_size: u8,
    /// Its offset in `.debug_info` (where `DW_FORM_ref*` count from).
    start: usize,
}

/// A name as the attribute gives it.
enum Name<'d> {
    Text(&'d [u8]),
    /// A reference to another DIE of the unit, by its `.debug_info` offset.
    Ref(usize),
}

/// What one DIE says that matters here.
#[derive(Default)]
struct Die<'d> {
    name: Option<&'d [u8]>,
    origin: Option<usize>,
    /// The storage section a `DW_OP_addr` location points into.
    addr_sec: Option<u32>,
}

impl<'a, 'd> Ctx<'a, 'd> {
    /// The relocation at `.debug_info` offset `off`, if any.
    fn rel_at(&self, off: usize) -> Option<&Rel> {
        let i = self.rels.partition_point(|r| (r.offset as usize) < off);
        self.rels.get(i).filter(|r| r.offset as usize == off)
    }

    /// The value a 4- or 8-byte field at `off` holds once relocated
    /// against a section (`(section, offset)`), else its bytes.
    fn relocated(&self, off: usize, raw: u64) -> (Option<u32>, u64) {
        let Some(r) = self.rel_at(off) else {
            return (None, raw);
        };
        match self.obj.symbols.get(r.sym as usize) {
            Some(s) => match s.shndx {
                Shndx::Sec(t) => (Some(t), s.value.wrapping_add(r.addend as u64)),
                _ => (None, raw),
            },
            None => (None, raw),
        }
    }

    fn string_at(&self, sec: Option<(u32, &'d [u8])>, at: (Option<u32>, u64)) -> Option<&'d [u8]> {
        let (want, data) = sec?;
        if at.0.is_some_and(|t| t != want) {
            return None;
        }
        let rest = data.get(usize::try_from(at.1).ok()?..)?;
        Some(&rest[..rest.iter().position(|&c| c == 0)?])
    }

    fn abbrevs(&self, offset: u64) -> Option<HashMap<u64, Abbrev>> {
        let mut c = Cur {
            b: self.abbrev,
            at: usize::try_from(offset).ok()?,
        };
        let mut out = HashMap::new();
        loop {
            let code = c.uleb()?;
            if code == 0 {
                return Some(out);
            }
            let tag = c.uleb()?;
            let children = c.u8()? != 0;
            let mut attrs = Vec::new();
            loop {
                let (a, f) = (c.uleb()?, c.uleb()?);
                if a == 0 && f == 0 {
                    break;
                }
                let k = if f == 0x21 { c.sleb()? } else { 0 };
                attrs.push((a, f, k));
            }
            out.insert(
                code,
                Abbrev {
                    tag,
                    children,
                    attrs,
                },
            );
        }
    }

    /// Reads the unit at `at`; returns where the next one starts.
    fn unit(
        &self,
        at: usize,
        out: &mut HashMap<u32, (&'d str, u32)>,
        order: &mut u32,
    ) -> Option<usize> {
        let data = self.info.data;
        let mut c = Cur { b: data, at };
        let len = c.fixed(4)?;
        if len >= 0xffff_fff0 {
            return None;
        }
        let end = c.at.checked_add(len as usize)?;
        if end > data.len() {
            return None;
        }
        let version = c.fixed(2)? as u16;
        let (abbrev_at, addr_size) = match version {
            5 => {
                let unit_type = c.u8()?;
                let addr_size = c.u8()?;
                let off = c.at;
                let raw = c.fixed(4)?;
                // (Skeleton and type units carry more header: not read.)
                if unit_type != 1 {
                    return Some(end);
                }
                (self.relocated(off, raw).1, addr_size)
            }
            2..=4 => {
                let off = c.at;
                let raw = c.fixed(4)?;
                (self.relocated(off, raw).1, c.u8()?)
            }
            _ => return Some(end),
        };
        let abbrevs = self.abbrevs(abbrev_at)?;
        let c = Cur {
            b: &data[..end],
            at: c.at,
        };
        let unit = Unit {
            version,
            addr_size,
            start: at,
        };
        self.dies(c, &abbrevs, unit, out, order);
        Some(end)
    }

    /// Walks the DIEs of one unit.
    fn dies(
        &self,
        mut c: Cur<'d>,
        abbrevs: &HashMap<u64, Abbrev>,
        unit: Unit,
        out: &mut HashMap<u32, (&'d str, u32)>,
        order: &mut u32,
    ) -> Option<()> {
        // Names by DIE offset (for abstract origins and specifications),
        // and the enclosing DIEs: `(tag, name)`.
        let mut names: HashMap<usize, Name<'d>> = HashMap::new();
        let mut stack: Vec<(u64, Option<usize>)> = Vec::new();
        while c.at < c.b.len() {
            let die_at = c.at;
            let code = c.uleb()?;
            if code == 0 {
                stack.pop();
                continue;
            }
            let ab = abbrevs.get(&code)?;
            let mut die = Die::default();
            for &(attr, form, _) in &ab.attrs {
                self.attr(&mut c, attr, form, unit, &mut die)?;
            }
            if let Some(n) = die.name {
                names.insert(die_at, Name::Text(n));
            } else if let Some(o) = die.origin {
                names.insert(die_at, Name::Ref(o));
            }
            if ab.tag == DW_TAG_VARIABLE {
                if let Some(t) = die.addr_sec {
                    let owner = stack
                        .iter()
                        .rev()
                        .find(|(tag, _)| *tag == DW_TAG_SUBPROGRAM)
                        .and_then(|&(_, at)| name_of(&names, at?));
                    if let Some(owner) = owner.and_then(|n| std::str::from_utf8(n).ok()) {
                        out.entry(t).or_insert((owner, *order));
                        *order += 1;
                    }
                }
            }
            if ab.children {
                let named = names.contains_key(&die_at).then_some(die_at);
                stack.push((ab.tag, named));
            }
        }
        Some(())
    }

    /// Reads one attribute value, noting what `die` needs.
    fn attr(
        &self,
        c: &mut Cur<'d>,
        attr: u64,
        form: u64,
        unit: Unit,
        die: &mut Die<'d>,
    ) -> Option<()> {
        let at = c.at;
        match form {
            0x01 => c.skip(usize::from(unit.addr_size))?,
            0x03 => {
                let n = c.fixed(2)? as usize;
                self.location(c, n, attr, die)?;
            }
            0x04 => {
                let n = c.fixed(4)? as usize;
                self.location(c, n, attr, die)?;
            }
            0x09 | 0x18 => {
                let n = usize::try_from(c.uleb()?).ok()?;
                self.location(c, n, attr, die)?;
            }
            0x0a => {
                let n = usize::from(c.u8()?);
                self.location(c, n, attr, die)?;
            }
            0x05 | 0x12 => c.skip(2)?,
            0x06 | 0x1c | 0x1d | 0x17 | 0x1f20 => c.skip(4)?,
            0x07 | 0x14 | 0x20 | 0x24 => c.skip(8)?,
            0x0b | 0x0c | 0x11 | 0x25 | 0x29 => c.skip(1)?,
            0x26 | 0x2a => c.skip(2)?,
            0x27 | 0x2b => c.skip(3)?,
            0x28 | 0x2c => c.skip(4)?,
            0x1e => c.skip(16)?,
            0x0d => {
                c.sleb()?;
            }
            0x0f | 0x1a | 0x1b | 0x22 | 0x23 | 0x1f01 | 0x1f02 => {
                c.uleb()?;
            }
            0x19 | 0x21 => {}
            0x08 => {
                let (s, len) = c.cstr()?;
                if attr == DW_AT_NAME {
                    die.name = Some(&c.b[s..s + len]);
                }
            }
            0x0e | 0x1f => {
                let raw = c.fixed(4)?;
                if attr == DW_AT_NAME {
                    let sec = if form == 0x0e {
                        self.str_sec
                    } else {
                        self.line_str_sec
                    };
                    die.name = self.string_at(sec, self.relocated(at, raw));
                }
            }
            0x1f21 => c.skip(4)?,
            0x10 => {
                let n = if unit.version <= 2 {
                    usize::from(unit.addr_size)
                } else {
                    4
                };
                c.skip(n)?;
            }
            0x13 | 0x15 => {
                // A reference inside the unit, from the unit's start; names
                // are kept by offset in the section.
                let v = if form == 0x13 { c.fixed(4)? } else { c.uleb()? };
                if attr == DW_AT_ABSTRACT_ORIGIN || attr == DW_AT_SPECIFICATION {
                    die.origin = usize::try_from(v).ok()?.checked_add(unit.start);
                }
            }
            0x16 => {
                // (One level: an indirect form naming another is refused.)
                let f = c.uleb()?;
                if f == 0x16 {
                    return None;
                }
                return self.attr(c, attr, f, unit, die);
            }
            _ => return None,
        }
        Some(())
    }

    /// A location expression of `n` bytes at the cursor: for
    /// `DW_AT_location`, notes a lone `DW_OP_addr`'s relocated section.
    fn location(&self, c: &mut Cur<'d>, n: usize, attr: u64, die: &mut Die<'d>) -> Option<()> {
        let at = c.at;
        c.skip(n)?;
        if attr == DW_AT_LOCATION && n == 9 && c.b.get(at) == Some(&DW_OP_ADDR) {
            let raw = u64::from_le_bytes(c.b.get(at + 1..at + 9)?.try_into().ok()?);
            if let (Some(t), _) = self.relocated(at + 1, raw) {
                die.addr_sec = Some(t);
            }
        }
        Some(())
    }
}

/// The name of the DIE at `at`, following abstract origins and
/// specifications (a few steps).
fn name_of<'d>(names: &HashMap<usize, Name<'d>>, mut at: usize) -> Option<&'d [u8]> {
    for _ in 0..4 {
        match names.get(&at)? {
            Name::Text(n) => return Some(n),
            Name::Ref(r) => at = *r,
        }
    }
    None
}
