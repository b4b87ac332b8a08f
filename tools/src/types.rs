//! Types of a running program's globals, read from the DWARF debug
//! information of the image it was loaded from (modules built with `-g`).
//!
//! The runtime does no DWARF work: the control endpoint hands out a
//! descriptor of the image file the running generation was loaded from
//! (`image` request), and this module decodes the types on the tool side
//! with gimli, once per generation. Each persistent global is matched to
//! its `DW_TAG_variable` exactly, without names: the variable's location
//! (`DW_OP_addr`, or `DW_OP_addrx` through `.debug_addr`) is a field that
//! hcr-link lists in `.hcr.debug_fixups` as "add the address of writable
//! object N", and object N of the manifest is the global (module and
//! identity key, so gcc's `NAME.N` function statics and C++ mangled names
//! need no special case).
//!
//! A [`Ty`] covers what the contract lists: integers of every width
//! (`int8`..`int64`, `uint8`..`uint64`, `char`), `float`, `double`,
//! `long_double`, `bool`, enums (`enum:NAME`, shown by enumerator name),
//! pointers (`T*`, shown as hex addresses), arrays (`T[N]`) and structs,
//! unions and classes (`struct:NAME`), field by field and nested; anything
//! else is `bytes[N]`. Type names are one word so that a table row splits
//! on white space.

use std::collections::HashMap;
use std::sync::Arc;

use gimli::{AttributeValue, EndianSlice, LittleEndian, Reader as _, UnitOffset};

/// A type, decoded from DWARF.
#[derive(Debug, Clone, PartialEq)]
pub enum Ty {
    /// An integer; `ch` for plain `char` (shown with its character).
    Int {
        /// Bytes.
        size: u64,
        /// Signed.
        signed: bool,
        /// Plain `char`.
        ch: bool,
    },
    /// A binary floating-point number of 4, 8 or 16 (x87 80-bit) bytes.
    Float {
        /// Bytes.
        size: u64,
    },
    /// `bool` / `_Bool`.
    Bool {
        /// Bytes.
        size: u64,
    },
    /// An enumeration.
    Enum {
        /// Tag (or typedef) name; empty when anonymous.
        name: String,
        /// Bytes.
        size: u64,
        /// Whether the underlying integer is signed.
        signed: bool,
        /// Enumerators in declaration order.
        values: Vec<(String, i128)>,
    },
    /// A pointer (or C++ reference): an address.
    Pointer {
        /// Name of the pointed-to type.
        target: String,
    },
    /// An array of `count` elements.
    Array {
        /// Element type.
        elem: Arc<Ty>,
        /// Elements (0 for a flexible array member).
        count: u64,
    },
    /// A struct, union or class.
    Record {
        /// `struct`, `union` or `class`.
        kind: &'static str,
        /// Tag (or typedef) name; empty when anonymous.
        name: String,
        /// Bytes.
        size: u64,
        /// Data members in declaration order.
        fields: Vec<Field>,
    },
    /// Anything else: shown as bytes.
    Opaque {
        /// Bytes.
        size: u64,
    },
}

/// A data member of a [`Ty::Record`].
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// Name; empty for an anonymous struct or union member (whose fields
    /// are reached as if they were the parent's).
    pub name: String,
    /// Byte offset in the record.
    pub offset: u64,
    /// Its type.
    pub ty: Arc<Ty>,
    /// For a bit-field: `(bit offset from offset, bit count)`.
    pub bits: Option<(u64, u64)>,
}

impl Ty {
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        match self {
            Ty::Int { size, .. }
            | Ty::Float { size }
            | Ty::Bool { size }
            | Ty::Enum { size, .. }
            | Ty::Record { size, .. }
            | Ty::Opaque { size } => *size,
            Ty::Pointer { .. } => 8,
            Ty::Array { elem, count } => elem.size().saturating_mul(*count),
        }
    }

    /// The name shown in `hcr globals` (one word).
    pub fn name(&self) -> String {
        match self {
            Ty::Int { ch: true, .. } => "char".into(),
            Ty::Int { size, signed, .. } => {
                format!("{}int{}", if *signed { "" } else { "u" }, size * 8)
            }
            Ty::Float { size: 4 } => "float".into(),
            Ty::Float { size: 8 } => "double".into(),
            Ty::Float { .. } => "long_double".into(),
            Ty::Bool { .. } => "bool".into(),
            Ty::Enum { name, .. } if name.is_empty() => "enum".into(),
            Ty::Enum { name, .. } => format!("enum:{name}"),
            Ty::Pointer { target } => format!("{target}*"),
            Ty::Array { .. } => {
                let mut dims = String::new();
                let mut t = self;
                while let Ty::Array { elem, count } = t {
                    dims.push_str(&format!("[{count}]"));
                    t = elem;
                }
                format!("{}{dims}", t.name())
            }
            Ty::Record { kind, name, .. } if name.is_empty() => (*kind).to_string(),
            Ty::Record { kind, name, .. } => format!("{kind}:{name}"),
            Ty::Opaque { size } => format!("bytes[{size}]"),
        }
    }

    /// True for types shown and set as one value.
    pub fn is_scalar(&self) -> bool {
        !matches!(
            self,
            Ty::Array { .. } | Ty::Record { .. } | Ty::Opaque { .. }
        )
    }

    /// The kind the page uses to pick a control: `int`, `uint`, `float`,
    /// `bool`, `enum`, `pointer`, `char`, `array`, `struct`, `bytes`.
    pub fn kind(&self) -> &'static str {
        match self {
            Ty::Int { ch: true, .. } => "char",
            Ty::Int { signed: true, .. } => "int",
            Ty::Int { .. } => "uint",
            Ty::Float { .. } => "float",
            Ty::Bool { .. } => "bool",
            Ty::Enum { .. } => "enum",
            Ty::Pointer { .. } => "pointer",
            Ty::Array { .. } => "array",
            Ty::Record { .. } => "struct",
            Ty::Opaque { .. } => "bytes",
        }
    }
}

/// Types of one image's globals, by `(module, identity key)`.
#[derive(Debug, Default, Clone)]
pub struct TypeTable {
    /// The generation the types were read for.
    pub generation: u32,
    /// module → identity key → type.
    globals: HashMap<String, HashMap<String, Arc<Ty>>>,
}

impl TypeTable {
    /// The type of global `module:name`, when DWARF described it.
    pub fn get(&self, module: &str, name: &str) -> Option<Arc<Ty>> {
        self.globals.get(module)?.get(name).cloned()
    }

    /// Every `(module, key, type)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &Arc<Ty>)> {
        self.globals
            .iter()
            .flat_map(|(m, g)| g.iter().map(move |(k, t)| (m.as_str(), k.as_str(), t)))
    }

    /// Globals with a type.
    pub fn len(&self) -> usize {
        self.globals.values().map(HashMap::len).sum()
    }

    /// True when no global has a type.
    pub fn is_empty(&self) -> bool {
        self.globals.is_empty()
    }
}

type R<'a> = EndianSlice<'a, LittleEndian>;

/// Reads the types of every persistent global from an image file's bytes.
/// An image without debug information gives an empty table.
///
/// # Errors
/// The file is not an image, or its debug information is malformed.
pub fn read_image(file: &[u8]) -> anyhow::Result<TypeTable> {
    use anyhow::Context as _;
    use object::{Object as _, ObjectSection as _};
    let (_, manifest) = hcr_image::ImageView::parse_manifest(file).context("not an hcr image")?;
    let elf = object::File::parse(file).context("not an ELF file")?;
    // Debug sections in section-header order: the fixups' section index.
    let mut debug: Vec<(String, &[u8])> = Vec::new();
    let mut fixups = Vec::new();
    for s in elf.sections() {
        let Ok(name) = s.name() else { continue };
        if name.starts_with(".debug_") {
            debug.push((name.to_string(), s.data().unwrap_or(&[])));
        } else if name == hcr_image::DEBUG_FIXUPS_SECTION {
            fixups = hcr_image::decode_debug_fixups(s.data().unwrap_or(&[]))
                .context("corrupt .hcr.debug_fixups")?;
        }
    }
    let mut table = TypeTable::default();
    if debug.is_empty() {
        return Ok(table);
    }
    let index_of = |n: &str| debug.iter().position(|d| d.0 == n);
    let (info_ix, addr_ix) = (index_of(".debug_info"), index_of(".debug_addr"));
    // (section index, offset) of each object address field → object id.
    let mut places: HashMap<(usize, u64), u32> = HashMap::new();
    for f in &fixups {
        if f.kind == hcr_image::DebugTarget::Object && f.width == 8 && f.value == 0 {
            places.insert((usize::from(f.section), f.offset), f.target);
        }
    }
    let section = |id: gimli::SectionId| -> Result<R<'_>, gimli::Error> {
        Ok(EndianSlice::new(
            debug
                .iter()
                .find(|d| d.0 == id.name())
                .map_or(&[][..], |d| d.1),
            LittleEndian,
        ))
    };
    let dwarf = gimli::Dwarf::load(section).context("cannot read DWARF")?;
    let info_base = section(gimli::SectionId::DebugInfo)?;
    let mut units = dwarf.units();
    while let Some(header) = units.next().context("bad DWARF unit header")? {
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        let mut dec = Decoder {
            dwarf: &dwarf,
            unit: &unit,
            cache: HashMap::new(),
            depth: 0,
        };
        let mut entries = unit.entries();
        while let Ok(Some(e)) = entries.next_dfs() {
            if e.tag() != gimli::DW_TAG_variable {
                continue;
            }
            let Some(expr) = (match e.attr_value(gimli::DW_AT_location) {
                Some(AttributeValue::Exprloc(x)) => Some(x.0),
                Some(AttributeValue::Block(b)) => Some(b),
                _ => None,
            }) else {
                continue;
            };
            let at = expr.offset_from(info_base) as u64;
            let bytes = expr.to_slice().unwrap_or_default();
            let place = match bytes.first() {
                // DW_OP_addr: the 8-byte address follows the opcode.
                Some(0x03) if bytes.len() == 9 => info_ix.map(|s| (s, at + 1)),
                // DW_OP_addrx / DW_OP_GNU_addr_index: an index into
                // `.debug_addr` from the unit's base.
                Some(0xa1 | 0xfb) => {
                    let mut r = EndianSlice::new(&bytes[1..], LittleEndian);
                    r.read_uleb128().ok().and_then(|i| {
                        Some((
                            addr_ix?,
                            (unit.addr_base.0 as u64).saturating_add(i.saturating_mul(8)),
                        ))
                    })
                }
                _ => None,
            };
            let Some(obj) = place.and_then(|p| places.get(&p)) else {
                continue;
            };
            let Some(o) = manifest.objects.get(*obj as usize) else {
                continue;
            };
            let (module, key) = (manifest.module_name(o.module), manifest.object_key(o));
            if table.get(module, key).is_some() {
                continue;
            }
            let ty = dec.variable_type(e);
            if let Some(ty) = ty.filter(|t| t.size() == o.size || !t.is_scalar()) {
                table
                    .globals
                    .entry(module.to_string())
                    .or_default()
                    .insert(key.to_string(), ty);
            }
        }
    }
    Ok(table)
}

/// Decodes the types of one unit, each type DIE once.
struct Decoder<'a, 'd> {
    dwarf: &'a gimli::Dwarf<R<'d>>,
    unit: &'a gimli::Unit<R<'d>>,
    cache: HashMap<usize, Arc<Ty>>,
    depth: u32,
}

type Die<'d> = gimli::DebuggingInformationEntry<R<'d>>;

impl<'d> Decoder<'_, 'd> {
    fn name(&self, e: &Die<'d>) -> String {
        e.attr_value(gimli::DW_AT_name)
            .and_then(|v| self.dwarf.attr_string(self.unit, v).ok())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn unit_ref(e: &Die<'d>, at: gimli::DwAt) -> Option<UnitOffset> {
        match e.attr_value(at)? {
            AttributeValue::UnitRef(o) => Some(o),
            _ => None,
        }
    }

    /// A variable's type, following `DW_AT_specification` /
    /// `DW_AT_abstract_origin` to the declaration that has it.
    fn variable_type(&mut self, e: &Die<'d>) -> Option<Arc<Ty>> {
        let mut e = e.clone();
        for _ in 0..4 {
            if let Some(t) = Self::unit_ref(&e, gimli::DW_AT_type) {
                return self.ty(t, String::new());
            }
            let next = Self::unit_ref(&e, gimli::DW_AT_specification)
                .or_else(|| Self::unit_ref(&e, gimli::DW_AT_abstract_origin))?;
            e = self.unit.entry(next).ok()?;
        }
        None
    }

    /// The type at `off`; `alias` names an anonymous record or enum (the
    /// typedef it came through).
    fn ty(&mut self, off: UnitOffset, alias: String) -> Option<Arc<Ty>> {
        if let Some(t) = self.cache.get(&off.0) {
            return Some(t.clone());
        }
        if self.depth > 64 {
            return None;
        }
        self.depth += 1;
        let t = self.decode(off, alias);
        self.depth -= 1;
        let t = Arc::new(t?);
        self.cache.insert(off.0, t.clone());
        Some(t)
    }

    fn size(e: &Die<'d>) -> Option<u64> {
        e.attr_value(gimli::DW_AT_byte_size)?.udata_value()
    }

    fn decode(&mut self, off: UnitOffset, alias: String) -> Option<Ty> {
        let e = self.unit.entry(off).ok()?;
        let name = {
            let n = self.name(&e);
            if n.is_empty() {
                alias
            } else {
                n
            }
        };
        let target = Self::unit_ref(&e, gimli::DW_AT_type);
        Some(match e.tag() {
            gimli::DW_TAG_base_type => {
                let size = Self::size(&e)?;
                let enc = match e.attr_value(gimli::DW_AT_encoding) {
                    Some(AttributeValue::Encoding(x)) => x,
                    _ => return Some(Ty::Opaque { size }),
                };
                match enc {
                    gimli::DW_ATE_boolean if (1..=8).contains(&size) => Ty::Bool { size },
                    gimli::DW_ATE_float if matches!(size, 4 | 8 | 16) => Ty::Float { size },
                    gimli::DW_ATE_signed | gimli::DW_ATE_signed_char
                        if matches!(size, 1 | 2 | 4 | 8 | 16) =>
                    {
                        Ty::Int {
                            size,
                            signed: true,
                            ch: name == "char",
                        }
                    }
                    gimli::DW_ATE_unsigned | gimli::DW_ATE_unsigned_char | gimli::DW_ATE_UTF
                        if matches!(size, 1 | 2 | 4 | 8 | 16) =>
                    {
                        Ty::Int {
                            size,
                            signed: false,
                            ch: name == "char",
                        }
                    }
                    _ => Ty::Opaque { size },
                }
            }
            gimli::DW_TAG_typedef
            | gimli::DW_TAG_const_type
            | gimli::DW_TAG_volatile_type
            | gimli::DW_TAG_restrict_type
            | gimli::DW_TAG_atomic_type => {
                let alias = if e.tag() == gimli::DW_TAG_typedef {
                    name
                } else {
                    String::new()
                };
                let t = self.ty(target?, alias)?;
                return Some((*t).clone());
            }
            gimli::DW_TAG_pointer_type
            | gimli::DW_TAG_reference_type
            | gimli::DW_TAG_rvalue_reference_type
            | gimli::DW_TAG_ptr_to_member_type => Ty::Pointer {
                target: match target {
                    None => "void".into(),
                    Some(t) => self.pointee_name(t),
                },
            },
            gimli::DW_TAG_enumeration_type => {
                let size = Self::size(&e).unwrap_or(4);
                if !matches!(size, 1 | 2 | 4 | 8) {
                    return Some(Ty::Opaque { size });
                }
                let under = target.and_then(|t| self.ty(t, String::new()));
                let mut signed = matches!(under.as_deref(), Some(Ty::Int { signed: true, .. }));
                let mut values = Vec::new();
                for c in self.children(off) {
                    if c.tag() != gimli::DW_TAG_enumerator {
                        continue;
                    }
                    let v = match c.attr_value(gimli::DW_AT_const_value) {
                        Some(AttributeValue::Sdata(v)) => {
                            if v < 0 {
                                signed = true;
                            }
                            i128::from(v)
                        }
                        Some(AttributeValue::Udata(v)) => i128::from(v),
                        Some(AttributeValue::Data1(v)) => i128::from(v),
                        Some(AttributeValue::Data2(v)) => i128::from(v),
                        Some(AttributeValue::Data4(v)) => i128::from(v),
                        Some(AttributeValue::Data8(v)) => i128::from(v),
                        _ => continue,
                    };
                    values.push((self.name(&c), v));
                }
                if signed {
                    // Fixed-size forms of a signed enum hold two's complement.
                    let bits = (size * 8).min(64) as u32;
                    for v in &mut values {
                        if v.1 >= 1i128 << (bits - 1) && v.1 < 1i128 << bits {
                            v.1 -= 1i128 << bits;
                        }
                    }
                }
                Ty::Enum {
                    name,
                    size,
                    signed,
                    values,
                }
            }
            gimli::DW_TAG_array_type => {
                let elem = self.ty(target?, String::new())?;
                let mut dims = Vec::new();
                for c in self.children(off) {
                    if c.tag() != gimli::DW_TAG_subrange_type {
                        continue;
                    }
                    let count = match c.attr_value(gimli::DW_AT_count) {
                        Some(v) => v.udata_value().unwrap_or(0),
                        None => match c.attr_value(gimli::DW_AT_upper_bound) {
                            Some(AttributeValue::Sdata(v)) => v.saturating_add(1).max(0) as u64,
                            Some(v) => v.udata_value().map_or(0, |u| u.saturating_add(1)),
                            None => 0,
                        },
                    };
                    dims.push(count);
                }
                if dims.is_empty() {
                    dims.push(0);
                }
                let mut t = elem;
                for &count in dims.iter().skip(1).rev() {
                    t = Arc::new(Ty::Array { elem: t, count });
                }
                Ty::Array {
                    elem: t,
                    count: dims[0],
                }
            }
            gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type | gimli::DW_TAG_class_type => {
                let kind = match e.tag() {
                    gimli::DW_TAG_union_type => "union",
                    gimli::DW_TAG_class_type => "class",
                    _ => "struct",
                };
                let size = Self::size(&e).unwrap_or(0);
                let mut fields = Vec::new();
                for c in self.children(off) {
                    let base = c.tag() == gimli::DW_TAG_inheritance;
                    if c.tag() != gimli::DW_TAG_member && !base {
                        continue;
                    }
                    let bit_size = c
                        .attr_value(gimli::DW_AT_bit_size)
                        .and_then(|v| v.udata_value());
                    let (offset, bits) = match (
                        c.attr_value(gimli::DW_AT_data_member_location),
                        c.attr_value(gimli::DW_AT_data_bit_offset)
                            .and_then(|v| v.udata_value()),
                    ) {
                        (_, Some(b)) => (b / 8, bit_size.map(|n| (b % 8, n))),
                        (Some(v), None) => {
                            let o = match v {
                                AttributeValue::Exprloc(x) => {
                                    // DW_OP_plus_uconst N (old producers).
                                    let b = x.0.to_slice().unwrap_or_default();
                                    let mut r = EndianSlice::new(b.get(1..)?, LittleEndian);
                                    (b.first() == Some(&0x23))
                                        .then(|| r.read_uleb128().ok())
                                        .flatten()?
                                }
                                v => v.udata_value()?,
                            };
                            // DWARF 2/3 bit-fields: DW_AT_bit_offset counts
                            // from the storage unit's most significant bit.
                            let bits = match (
                                bit_size,
                                c.attr_value(gimli::DW_AT_bit_offset)
                                    .and_then(|v| v.udata_value()),
                                Self::size(&c),
                            ) {
                                (Some(n), Some(bo), Some(bs)) => {
                                    let from_lsb =
                                        bs.checked_mul(8)?.checked_sub(bo.saturating_add(n))?;
                                    Some((from_lsb, n))
                                }
                                (Some(n), _, _) => Some((0, n)),
                                _ => None,
                            };
                            (o, bits)
                        }
                        // A union member, or a static member (a
                        // declaration: not stored in the object).
                        (None, None) => {
                            if c.attr_value(gimli::DW_AT_declaration).is_some()
                                || c.attr_value(gimli::DW_AT_external).is_some()
                            {
                                continue;
                            }
                            (0, bit_size.map(|n| (0, n)))
                        }
                    };
                    let Some(ft) = Self::unit_ref(&c, gimli::DW_AT_type)
                        .and_then(|t| self.ty(t, String::new()))
                    else {
                        continue;
                    };
                    let name = match &*ft {
                        Ty::Record { name, .. } if base && !name.is_empty() => name.clone(),
                        t if base => t.name(),
                        _ => self.name(&c),
                    };
                    fields.push(Field {
                        name,
                        offset,
                        ty: ft,
                        bits,
                    });
                }
                Ty::Record {
                    kind,
                    name,
                    size,
                    fields,
                }
            }
            _ => Ty::Opaque {
                size: Self::size(&e).unwrap_or(0),
            },
        })
    }

    /// The name of a pointer's target, without decoding it (pointers may
    /// point back at the record that holds them).
    fn pointee_name(&mut self, off: UnitOffset) -> String {
        self.pointee_name_at(off, 0)
    }

    fn pointee_name_at(&mut self, off: UnitOffset, depth: u32) -> String {
        if depth > 8 {
            return "void".into();
        }
        let mut off = off;
        for _ in 0..16 {
            let Ok(e) = self.unit.entry(off) else {
                break;
            };
            let name = self.name(&e);
            let next = Self::unit_ref(&e, gimli::DW_AT_type);
            match e.tag() {
                gimli::DW_TAG_base_type => {
                    return match self.ty(off, String::new()) {
                        Some(t) => t.name(),
                        None => name,
                    }
                }
                // A typedef of a record or enum keeps its name (`FILE*`);
                // one of a number or pointer is seen through (`Char*` is
                // shown `char*`, as `Char` itself is `char`).
                gimli::DW_TAG_typedef if !name.is_empty() && !self.names_scalar(next) => {
                    return name
                }
                gimli::DW_TAG_structure_type if !name.is_empty() => {
                    return format!("struct:{name}")
                }
                gimli::DW_TAG_union_type if !name.is_empty() => return format!("union:{name}"),
                gimli::DW_TAG_class_type if !name.is_empty() => return format!("class:{name}"),
                gimli::DW_TAG_enumeration_type if !name.is_empty() => {
                    return format!("enum:{name}")
                }
                gimli::DW_TAG_subroutine_type => return "fn".into(),
                gimli::DW_TAG_pointer_type => {
                    return match next {
                        Some(n) => format!("{}*", self.pointee_name_at(n, depth + 1)),
                        None => "void*".into(),
                    }
                }
                _ => {}
            }
            match next {
                Some(n) => off = n,
                None => return "void".into(),
            }
        }
        "void".into()
    }

    /// True when `off` (through typedefs and qualifiers) is a base type or
    /// a pointer.
    fn names_scalar(&self, mut off: Option<UnitOffset>) -> bool {
        for _ in 0..16 {
            let Some(o) = off else { return true };
            let Ok(e) = self.unit.entry(o) else {
                return false;
            };
            match e.tag() {
                gimli::DW_TAG_base_type | gimli::DW_TAG_pointer_type => return true,
                gimli::DW_TAG_typedef
                | gimli::DW_TAG_const_type
                | gimli::DW_TAG_volatile_type
                | gimli::DW_TAG_atomic_type
                | gimli::DW_TAG_restrict_type => off = Self::unit_ref(&e, gimli::DW_AT_type),
                _ => return false,
            }
        }
        false
    }

    /// The direct children of the DIE at `off`.
    fn children(&self, off: UnitOffset) -> Vec<Die<'d>> {
        let mut out = Vec::new();
        let Ok(mut tree) = self.unit.entries_tree(Some(off)) else {
            return out;
        };
        let Ok(root) = tree.root() else {
            return out;
        };
        let mut kids = root.children();
        while let Ok(Some(k)) = kids.next() {
            out.push(k.entry().clone());
        }
        out
    }
}

/// Arrays longer than this are shown as one value, not element by element.
pub const EXPAND_ELEMENTS: u64 = 16;
/// Elements (or fields) shown inside one aggregate value.
const SHOW_ELEMENTS: usize = 16;

/// One place inside a global: itself, a field, an element.
#[derive(Debug, Clone)]
pub struct Node {
    /// `NAME`, `NAME.FIELD`, `NAME[3].x` ...
    pub path: String,
    /// 0 for the global itself.
    pub depth: u32,
    /// Its type.
    pub ty: Arc<Ty>,
    /// Byte offset in the global.
    pub offset: u64,
    /// Bit-field position, see [`Field::bits`].
    pub bits: Option<(u64, u64)>,
}

/// The global `name` of type `ty` and every field and element inside it
/// (arrays of at most [`EXPAND_ELEMENTS`]), in pre-order; at most `limit`
/// nodes.
pub fn nodes(ty: &Arc<Ty>, name: &str, limit: usize) -> Vec<Node> {
    let mut out = Vec::new();
    walk(ty, name.to_string(), 0, 0, None, limit, &mut out);
    out
}

fn walk(
    ty: &Arc<Ty>,
    path: String,
    depth: u32,
    offset: u64,
    bits: Option<(u64, u64)>,
    limit: usize,
    out: &mut Vec<Node>,
) {
    if out.len() >= limit {
        return;
    }
    out.push(Node {
        path: path.clone(),
        depth,
        ty: ty.clone(),
        offset,
        bits,
    });
    match &**ty {
        Ty::Record { fields, .. } => {
            for f in fields {
                if f.name.is_empty() {
                    // Anonymous member: its fields are the parent's.
                    if let Ty::Record { fields: inner, .. } = &*f.ty {
                        for g in inner {
                            let p = format!("{path}.{}", g.name);
                            walk(
                                &g.ty,
                                p,
                                depth + 1,
                                offset.saturating_add(f.offset).saturating_add(g.offset),
                                g.bits,
                                limit,
                                out,
                            );
                        }
                    }
                    continue;
                }
                let p = format!("{path}.{}", f.name);
                walk(
                    &f.ty,
                    p,
                    depth + 1,
                    offset.saturating_add(f.offset),
                    f.bits,
                    limit,
                    out,
                );
            }
        }
        Ty::Array { elem, count } if *count <= EXPAND_ELEMENTS && !is_text(elem) => {
            for i in 0..*count {
                let p = format!("{path}[{i}]");
                walk(
                    elem,
                    p,
                    depth + 1,
                    offset.saturating_add(i.saturating_mul(elem.size())),
                    None,
                    limit,
                    out,
                );
            }
        }
        _ => {}
    }
}

/// A `char` array, shown as a string.
fn is_text(elem: &Ty) -> bool {
    matches!(
        elem,
        Ty::Int {
            size: 1,
            ch: true,
            ..
        }
    )
}

/// A field or element: byte offset, type, bit-field position.
pub type Place = (u64, Arc<Ty>, Option<(u64, u64)>);

/// Finds the field or element `rest` (`.a.b[3]`, possibly empty) of a value
/// of type `ty`: its byte offset, type and bit-field position.
///
/// # Errors
/// No such field, an index out of bounds, or a malformed path; the reason.
pub fn resolve(ty: &Arc<Ty>, rest: &str) -> Result<Place, String> {
    let mut t = ty.clone();
    let mut offset = 0u64;
    let mut bits = None;
    let mut s = rest;
    while !s.is_empty() {
        if bits.is_some() {
            return Err("a bit-field has no fields".into());
        }
        if let Some(r) = s.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let name = &r[..end];
            s = &r[end..];
            let Ty::Record { fields, .. } = &*t else {
                return Err(format!("{} has no fields (no .{name})", t.name()));
            };
            let Some((o, f)) = find_field(fields, name) else {
                let names: Vec<String> = field_names(fields);
                return Err(format!(
                    "{} has no field {name:?} (fields: {})",
                    t.name(),
                    names.join(", ")
                ));
            };
            offset = offset.saturating_add(o);
            bits = f.bits;
            t = f.ty.clone();
        } else if let Some(r) = s.strip_prefix('[') {
            let Some(end) = r.find(']') else {
                return Err("missing ] after an index".into());
            };
            let Ok(i) = r[..end].trim().parse::<u64>() else {
                return Err(format!("bad index {:?}", &r[..end]));
            };
            s = &r[end + 1..];
            let Ty::Array { elem, count } = &*t else {
                return Err(format!("{} is not an array (no [{i}])", t.name()));
            };
            if i >= *count {
                return Err(format!(
                    "index {i} is out of bounds for {} ({count} elements)",
                    t.name()
                ));
            }
            offset = offset.saturating_add(i.saturating_mul(elem.size()));
            t = elem.clone();
        } else {
            return Err(format!("expected .FIELD or [INDEX], got {s:?}"));
        }
    }
    Ok((offset, t, bits))
}

fn find_field<'f>(fields: &'f [Field], name: &str) -> Option<(u64, &'f Field)> {
    for f in fields {
        if f.name == name {
            return Some((f.offset, f));
        }
        if f.name.is_empty() {
            if let Ty::Record { fields: inner, .. } = &*f.ty {
                if let Some((o, g)) = find_field(inner, name) {
                    return Some((f.offset.saturating_add(o), g));
                }
            }
        }
    }
    None
}

fn field_names(fields: &[Field]) -> Vec<String> {
    let mut v = Vec::new();
    for f in fields {
        if f.name.is_empty() {
            if let Ty::Record { fields: inner, .. } = &*f.ty {
                v.extend(field_names(inner));
            }
        } else {
            v.push(f.name.clone());
        }
    }
    v
}

/// The little-endian integer in `b` (at most 16 bytes), zero-extended.
fn le(b: &[u8]) -> u128 {
    let mut w = [0u8; 16];
    let n = b.len().min(16);
    w[..n].copy_from_slice(&b[..n]);
    u128::from_le_bytes(w)
}

fn sign_extend(v: u128, bits: u32) -> i128 {
    if bits == 0 || bits >= 128 {
        return v as i128;
    }
    let shift = 128 - bits;
    ((v << shift) as i128) >> shift
}

/// An x87 80-bit extended value (in its 16-byte slot) as an `f64`.
fn f80_to_f64(b: &[u8]) -> f64 {
    let mant = le(&b[..8]) as u64;
    let se = le(&b[8..10]) as u16;
    let neg = se & 0x8000 != 0;
    let exp = i32::from(se & 0x7fff);
    let v = if exp == 0 && mant == 0 {
        0.0
    } else if exp == 0x7fff {
        if mant << 1 == 0 {
            f64::INFINITY
        } else {
            f64::NAN
        }
    } else {
        // In two steps: one power of two may underflow where the product
        // does not (subnormal doubles).
        let e = exp - 16383 - 63;
        (mant as f64) * 2f64.powi(e / 2) * 2f64.powi(e - e / 2)
    };
    if neg {
        -v
    } else {
        v
    }
}

/// An `f64` as an x87 80-bit extended value in a 16-byte slot.
fn f64_to_f80(v: f64) -> [u8; 16] {
    let mut out = [0u8; 16];
    let bits = v.to_bits();
    let neg = bits >> 63 != 0;
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1 << 52) - 1);
    let (e, m): (u16, u64) = if exp == 0 && frac == 0 {
        (0, 0)
    } else if exp == 0x7ff {
        (
            0x7fff,
            if frac == 0 {
                1 << 63
            } else {
                (1 << 63) | (1 << 62)
            },
        )
    } else if exp == 0 {
        // Subnormal double: normalise.
        let lz = frac.leading_zeros() - 11;
        let m = frac << (lz + 11);
        ((-1022 - lz as i32 + 16383) as u16, m)
    } else {
        ((exp - 1023 + 16383) as u16, (1 << 63) | (frac << 11))
    };
    out[..8].copy_from_slice(&m.to_le_bytes());
    let se = e | if neg { 0x8000 } else { 0 };
    out[8..10].copy_from_slice(&se.to_le_bytes());
    out
}

fn char_literal(c: u8) -> String {
    match c {
        b'\'' => "'\\''".into(),
        b'\\' => "'\\\\'".into(),
        b'\n' => "'\\n'".into(),
        b'\t' => "'\\t'".into(),
        0 => "'\\0'".into(),
        0x20..=0x7e => format!("'{}'", c as char),
        _ => format!("'\\x{c:02x}'"),
    }
}

/// Shows a value of type `ty` whose bytes are `b` (from its start; fewer
/// than its size when the endpoint returned a prefix: the rest is `?`).
pub fn format(ty: &Ty, bits: Option<(u64, u64)>, b: &[u8]) -> String {
    let size = ty.size() as usize;
    if let Some((bo, n)) = bits {
        let span = bo.saturating_add(n).div_ceil(8) as usize;
        let Some(raw) = b.get(..span.min(16)) else {
            return "?".into();
        };
        let v = (le(raw) >> bo) & ((1u128 << n.min(127)) - 1);
        let n = n as u32;
        return match ty {
            Ty::Int { signed: true, .. } => sign_extend(v, n).to_string(),
            Ty::Bool { .. } => (v != 0).to_string(),
            Ty::Enum { signed, values, .. } => {
                let v = if *signed {
                    sign_extend(v, n)
                } else {
                    v as i128
                };
                enum_name(values, v)
            }
            _ => v.to_string(),
        };
    }
    if ty.is_scalar() && b.len() < size {
        return "?".into();
    }
    match ty {
        Ty::Int { size, signed, ch } => {
            let raw = le(&b[..*size as usize]);
            // (An unsigned 128-bit value may not fit an `i128`.)
            let v = match *signed {
                true => sign_extend(raw, (*size * 8) as u32).to_string(),
                false => raw.to_string(),
            };
            if *ch {
                format!("{v} {}", char_literal(b[0]))
            } else {
                v
            }
        }
        Ty::Float { size: 4 } => float_text(f64::from(f32::from_bits(le(&b[..4]) as u32)), true),
        Ty::Float { size: 8 } => float_text(f64::from_bits(le(&b[..8]) as u64), false),
        Ty::Float { .. } => float_text(f80_to_f64(b), false),
        Ty::Bool { size } => b[..*size as usize].iter().any(|&x| x != 0).to_string(),
        Ty::Enum {
            size,
            signed,
            values,
            ..
        } => {
            let raw = le(&b[..*size as usize]);
            let v = if *signed {
                sign_extend(raw, (*size * 8) as u32)
            } else {
                raw as i128
            };
            enum_name(values, v)
        }
        Ty::Pointer { .. } => format!("{:#x}", le(&b[..8]) as u64),
        Ty::Array { elem, count } if is_text(elem) => {
            let n = (*count as usize).min(b.len());
            let text = &b[..n];
            let end = text.iter().position(|&c| c == 0).unwrap_or(n);
            let mut s = String::from("\"");
            for &c in &text[..end] {
                match c {
                    b'"' => s.push_str("\\\""),
                    b'\\' => s.push_str("\\\\"),
                    0x20..=0x7e => s.push(c as char),
                    b'\n' => s.push_str("\\n"),
                    _ => s.push_str(&format!("\\x{c:02x}")),
                }
            }
            s.push('"');
            if end == n && n < *count as usize {
                s.push_str("...");
            }
            s
        }
        Ty::Array { elem, count } => {
            let es = usize::try_from(elem.size()).unwrap_or(usize::MAX);
            let mut parts = Vec::new();
            for i in 0..(*count as usize).min(SHOW_ELEMENTS) {
                let at = i.saturating_mul(es);
                parts.push(b.get(at..).map_or("?".into(), |r| format(elem, None, r)));
            }
            if *count as usize > SHOW_ELEMENTS {
                parts.push("...".into());
            }
            format!("{{{}}}", parts.join(", "))
        }
        Ty::Record { fields, .. } => {
            let mut parts = Vec::new();
            for f in fields.iter().take(SHOW_ELEMENTS) {
                let v = b
                    .get(usize::try_from(f.offset).unwrap_or(usize::MAX)..)
                    .map_or("?".into(), |r| format(&f.ty, f.bits, r));
                if f.name.is_empty() {
                    parts.push(v);
                } else {
                    parts.push(format!("{} = {v}", f.name));
                }
            }
            if fields.len() > SHOW_ELEMENTS {
                parts.push("...".into());
            }
            format!("{{{}}}", parts.join(", "))
        }
        Ty::Opaque { size } => {
            let n = (*size as usize).min(b.len());
            let mut s = String::from("0x");
            for x in &b[..n] {
                s.push_str(&format!("{x:02x}"));
            }
            if n < *size as usize {
                s.push_str("...");
            }
            s
        }
    }
}

/// The shortest text that reads back as the same number: plain decimal for
/// ordinary magnitudes, exponent notation for tiny and huge ones.
fn float_text(v: f64, single: bool) -> String {
    let a = v.abs();
    let plain = a == 0.0 || !a.is_finite() || (1e-5..1e16).contains(&a);
    match (plain, single) {
        (true, true) => (v as f32).to_string(),
        (true, false) => v.to_string(),
        (false, true) => format!("{:e}", v as f32),
        (false, false) => format!("{v:e}"),
    }
}

fn enum_name(values: &[(String, i128)], v: i128) -> String {
    values
        .iter()
        .find(|e| e.1 == v)
        .map_or_else(|| v.to_string(), |e| e.0.clone())
}

/// Parses an integer: decimal, `-` decimal, `0x` hex.
pub fn parse_int(s: &str) -> Option<i128> {
    let (neg, digits, radix) = sign_and_digits(s);
    let v = i128::from_str_radix(digits, radix).ok()?;
    Some(if neg { -v } else { v })
}

/// An integer's text split: whether a `-` leads, the digits after the
/// sign and any `0x`, and their radix.
fn sign_and_digits(s: &str) -> (bool, &str, u32) {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    match body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        Some(h) => (neg, h, 16),
        None => (neg, body, 10),
    }
}

/// A 128-bit integer's bytes: its range is wider than `parse_int`'s.
fn encode_128(ty: &Ty, v: &str, signed: bool) -> Result<Vec<u8>, String> {
    let (neg, digits, radix) = sign_and_digits(v);
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(format!(
            "wrong type: {v:?} is not an integer, and this is a {}",
            ty.name()
        ));
    }
    // (Digits only: a failed parse is a number too large.)
    let m = u128::from_str_radix(digits, radix).ok();
    let bytes = m.and_then(|m| match (signed, neg) {
        (true, true) if m <= 1u128 << 127 => Some((m as i128).wrapping_neg().to_le_bytes()),
        (true, false) if m < 1u128 << 127 => Some(m.to_le_bytes()),
        (false, _) if !neg || m == 0 => Some(m.to_le_bytes()),
        _ => None,
    });
    bytes.map(|b| b.to_vec()).ok_or_else(|| {
        let (min, max) = match signed {
            true => (i128::MIN.to_string(), i128::MAX.to_string()),
            false => ("0".to_string(), u128::MAX.to_string()),
        };
        format!(
            "bad value: {v} is out of range for {} ({min} to {max})",
            ty.name()
        )
    })
}

fn int_range(size: u64, signed: bool) -> (i128, i128) {
    let bits = (size * 8).min(127) as u32;
    if signed {
        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
    } else {
        (0, (1i128 << bits) - 1)
    }
}

/// The bytes `value` stands for in a place of type `ty`, checked for type
/// and range; `Ok(None)` for a string written into a `char` array (the
/// bytes then are the text and its terminating NUL, fewer than the array).
///
/// # Errors
/// A wrong type or an out-of-range value: the reason.
pub fn encode(ty: &Ty, value: &str) -> Result<Vec<u8>, String> {
    let v = value.trim();
    match ty {
        Ty::Int {
            size: 16,
            signed,
            ch: false,
        } => encode_128(ty, v, *signed),
        Ty::Int { size, signed, ch } => {
            let n = if *ch {
                match v.as_bytes() {
                    [b'\'', c, b'\''] => Some(i128::from(*c)),
                    _ => parse_int(v).or(match v.as_bytes() {
                        [c] => Some(i128::from(*c)),
                        _ => None,
                    }),
                }
            } else {
                parse_int(v)
            };
            let Some(n) = n else {
                return Err(format!(
                    "wrong type: {v:?} is not an integer, and this is a {}",
                    ty.name()
                ));
            };
            let (min, max) = int_range(*size, *signed);
            if n < min || n > max {
                return Err(format!(
                    "bad value: {v} is out of range for {} ({min} to {max})",
                    ty.name()
                ));
            }
            Ok(n.to_le_bytes()[..*size as usize].to_vec())
        }
        Ty::Float { size } => {
            let Ok(f) = v.parse::<f64>() else {
                return Err(format!(
                    "wrong type: {v:?} is not a number, and this is a {}",
                    ty.name()
                ));
            };
            if !f.is_finite() {
                return Err(format!("bad value: {v} is not a finite number"));
            }
            match size {
                4 => {
                    if f.abs() > f64::from(f32::MAX) {
                        return Err(format!("bad value: {v} is out of range for float"));
                    }
                    Ok((f as f32).to_le_bytes().to_vec())
                }
                8 => Ok(f.to_le_bytes().to_vec()),
                _ => Ok(f64_to_f80(f).to_vec()),
            }
        }
        Ty::Bool { size } => {
            let b = match v {
                "true" | "1" => 1u8,
                "false" | "0" => 0,
                _ => {
                    return Err(format!(
                        "wrong type: {v:?} is not a bool (true, false, 1 or 0)"
                    ))
                }
            };
            let mut out = vec![0u8; *size as usize];
            out[0] = b;
            Ok(out)
        }
        Ty::Enum {
            size,
            signed,
            values,
            ..
        } => {
            let n = match values.iter().find(|e| e.0 == v) {
                Some(e) => e.1,
                None => match parse_int(v) {
                    Some(n) if values.is_empty() || values.iter().any(|e| e.1 == n) => n,
                    _ => {
                        let names: Vec<&str> = values.iter().map(|e| e.0.as_str()).collect();
                        return Err(format!(
                            "bad value: {v:?} is not a value of {} ({}, or their numbers)",
                            ty.name(),
                            names.join(", ")
                        ));
                    }
                },
            };
            let (min, max) = int_range(*size, *signed);
            if n < min || n > max {
                return Err(format!("bad value: {v} is out of range for {}", ty.name()));
            }
            Ok(n.to_le_bytes()[..*size as usize].to_vec())
        }
        Ty::Pointer { .. } => {
            let n = match v {
                "NULL" | "null" | "nullptr" => Some(0),
                _ => parse_int(v),
            };
            match n {
                Some(n) if (0..=i128::from(u64::MAX)).contains(&n) => {
                    Ok((n as u64).to_le_bytes().to_vec())
                }
                Some(_) => Err(format!("bad value: {v} is not a 64-bit address")),
                None => Err(format!(
                    "wrong type: {v:?} is not an address (0x... or a number), and this is a {}",
                    ty.name()
                )),
            }
        }
        Ty::Array { elem, count } if is_text(elem) => {
            let Some(text) = v.strip_prefix('"').and_then(|t| t.strip_suffix('"')) else {
                return Err(format!(
                    "wrong type: this is a {}: give a string in double quotes, or set one element (NAME[i])",
                    ty.name()
                ));
            };
            let mut b = text.as_bytes().to_vec();
            b.push(0);
            if b.len() as u64 > *count {
                return Err(format!(
                    "bad value: {} bytes with the terminating NUL do not fit in {}",
                    b.len(),
                    ty.name()
                ));
            }
            Ok(b)
        }
        Ty::Array { .. } => Err(format!(
            "{} is an array: set one element (NAME[i])",
            ty.name()
        )),
        Ty::Record { fields, .. } => Err(format!(
            "{} has fields: set one (NAME.FIELD; fields: {})",
            ty.name(),
            field_names(fields).join(", ")
        )),
        Ty::Opaque { size } => {
            let b = v
                .strip_prefix("0x")
                .filter(|h| h.len() as u64 == 2 * size && h.bytes().all(|c| c.is_ascii_hexdigit()))
                .map(|h| {
                    (0..h.len() / 2)
                        .filter_map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok())
                        .collect::<Vec<u8>>()
                });
            b.ok_or_else(|| {
                format!(
                    "wrong type: this is {size} bytes of unknown type; give exactly {size} bytes as 0x followed by {} hex digits",
                    2 * size
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_double_round_trips() {
        for v in [0.0, 1.5, -2.25, 1e300, 3.0e-310, 123456.789] {
            assert_eq!(f80_to_f64(&f64_to_f80(v)), v, "{v}");
        }
    }

    #[test]
    fn integers_are_range_checked() {
        let u8t = Ty::Int {
            size: 1,
            signed: false,
            ch: false,
        };
        assert_eq!(encode(&u8t, "255").unwrap(), vec![255]);
        assert!(encode(&u8t, "256").unwrap_err().contains("out of range"));
        assert!(encode(&u8t, "-1").unwrap_err().contains("out of range"));
        assert!(encode(&u8t, "x").unwrap_err().contains("wrong type"));
        let c = Ty::Int {
            size: 1,
            signed: true,
            ch: true,
        };
        assert_eq!(encode(&c, "'a'").unwrap(), vec![97]);
        assert_eq!(format(&c, None, &[97]), "97 'a'");
    }

    #[test]
    fn integers_of_128_bits_use_their_whole_range() {
        let (i, u) = (
            Ty::Int {
                size: 16,
                signed: true,
                ch: false,
            },
            Ty::Int {
                size: 16,
                signed: false,
                ch: false,
            },
        );
        let (min, max) = (i128::MIN.to_string(), i128::MAX.to_string());
        let umax = u128::MAX.to_string();
        for (ty, text) in [(&i, &min), (&i, &max), (&u, &umax), (&u, &"0".to_string())] {
            let b = encode(ty, text).unwrap();
            assert_eq!(&format(ty, None, &b), text);
        }
        assert_eq!(format(&u, None, &[0xff; 16]), umax);
        assert_eq!(format(&i, None, &[0xff; 16]), "-1");
        assert_eq!(encode(&i, "-0x10").unwrap()[0], 0xf0);
        let too_big = (1u128 << 127).to_string();
        assert!(encode(&i, &too_big).unwrap_err().contains("out of range"));
        assert!(encode(&i, &format!("-{too_big}")).is_ok());
        assert!(encode(&u, "-1").unwrap_err().contains("out of range"));
        assert!(encode(&u, "340282366920938463463374607431768211456")
            .unwrap_err()
            .contains("out of range"));
        assert!(encode(&u, "--1").unwrap_err().contains("wrong type"));
    }

    #[test]
    fn bit_fields_are_extracted() {
        let t = Ty::Int {
            size: 4,
            signed: true,
            ch: false,
        };
        // bits 3..6 hold -2 (0b110 in 3 bits)
        assert_eq!(format(&t, Some((3, 3)), &[0b0011_0000, 0]), "-2");
    }
}
