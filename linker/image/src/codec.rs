//! Byte encoding of the header, the manifest and the fixup tables.
//!
//! Little-endian throughout; strings and lists are length-prefixed (`u32`).
//! Decoding is bounds-checked everywhere: any byte sequence yields either a
//! manifest or a [`DecodeError`], never a panic.

use crate::*;

/// A manifest that does not decode or does not hang together.
#[derive(Debug, thiserror::Error)]
#[error("{what} at byte {at}")]
pub struct DecodeError {
    /// What was wrong.
    pub what: String,
    /// Offset in the manifest body.
    pub at: usize,
}

struct Enc {
    out: Vec<u8>,
}

impl Enc {
    fn u8(&mut self, v: u8) {
        self.out.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    fn str(&mut self, s: Str) {
        self.u32(s.off);
        self.u32(s.len);
    }
    fn span(&mut self, s: Span) {
        self.u32(s.start);
        self.u32(s.end);
    }
    fn u32s(&mut self, v: &[u32]) {
        self.len(v.len());
        for &x in v {
            self.u32(x);
        }
    }
}

struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    #[cold]
    #[inline(never)]
    fn err(&self, what: impl Into<String>) -> DecodeError {
        DecodeError {
            what: what.into(),
            at: self.pos,
        }
    }
    #[inline]
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err(format!("unexpected end (need {n} bytes)")))?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }
    #[inline]
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }
    #[inline]
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    #[inline]
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    #[inline]
    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(self.u64()? as i64)
    }
    #[inline]
    fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(self.err(format!("bad boolean {v}"))),
        }
    }
    /// A list length, checked against the bytes left (each element needs at
    /// least `min_elem` bytes), so a corrupt length cannot allocate wildly.
    fn len(&mut self, min_elem: usize) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        let left = self.buf.len() - self.pos;
        if n.saturating_mul(min_elem.max(1)) > left {
            return Err(self.err(format!("list of {n} elements exceeds the manifest")));
        }
        Ok(n)
    }
    #[inline]
    fn str(&mut self, table: &str) -> Result<Str, DecodeError> {
        let s = Str {
            off: self.u32()?,
            len: self.u32()?,
        };
        let (a, b) = (s.off as usize, s.off as usize + s.len as usize);
        if b > table.len() || !table.is_char_boundary(a) || !table.is_char_boundary(b) {
            return Err(self.err("string outside the string table"));
        }
        Ok(s)
    }
    #[inline]
    fn span(&mut self) -> Result<Span, DecodeError> {
        let s = Span::new(self.u32()?, self.u32()?);
        if s.start > s.end {
            return Err(self.err("inverted range"));
        }
        Ok(s)
    }
    fn u32s(&mut self) -> Result<Vec<u32>, DecodeError> {
        let n = self.len(4)?;
        (0..n).map(|_| self.u32()).collect()
    }
}

pub(crate) fn encode_header(h: &Header) -> Vec<u8> {
    let mut e = Enc {
        out: Vec::with_capacity(HEADER_SIZE),
    };
    e.out.extend_from_slice(&MAGIC);
    e.u32(h.version);
    e.u32(HEADER_SIZE as u32);
    e.u64(h.checksum);
    e.u64(h.body_len);
    e.u64(h.area_file_offset);
    e.u64(h.area_file_size);
    e.u64(h.init_file_offset);
    e.u64(h.init_file_size);
    debug_assert_eq!(e.out.len(), HEADER_SIZE);
    e.out
}

pub(crate) fn decode_header(section: &[u8]) -> Result<Header, ImageError> {
    let head = section
        .get(..HEADER_SIZE)
        .ok_or(ImageError::Truncated("manifest header"))?;
    if head[..8] != MAGIC {
        return Err(ImageError::NotAnImage(
            "section 1 is not an hcr manifest (no HCRIMAGE magic); was this file written by hcr-link?",
        ));
    }
    let mut d = Dec {
        buf: &head[8..],
        pos: 0,
    };
    let version = d.u32()?;
    let header_size = d.u32()?;
    if version == FORMAT_VERSION && header_size as usize != HEADER_SIZE {
        return Err(ImageError::NotAnImage("manifest header has the wrong size"));
    }
    Ok(Header {
        version,
        checksum: d.u64()?,
        body_len: d.u64()?,
        area_file_offset: d.u64()?,
        area_file_size: d.u64()?,
        init_file_offset: d.u64()?,
        init_file_size: d.u64()?,
    })
}

pub(crate) fn encode_body(m: &Manifest, fixups: &[Fixup], object_fixups: &[Fixup]) -> Vec<u8> {
    let mut e = Enc {
        // Every record's size (modules and their lists are estimated): one
        // allocation, no regrowth.
        out: Vec::with_capacity(
            4096 + m.strings.len()
                + m.modules.len() * 128
                + m.functions.len() * 21
                + m.objects.len() * 62
                + m.hosts.len() * 9
                + (fixups.len() + object_fixups.len()) * FIXUP_SIZE,
        ),
    };
    e.len(m.strings.len());
    e.out.extend_from_slice(m.strings.as_bytes());
    e.u32(m.root.0);
    e.u32(m.layout.area_size);
    e.u64(m.stats.relocations);
    e.u64(m.stats.applied_at_link);
    e.u32(m.stats.got_entries);
    e.u32(m.stats.plt_stubs);
    e.len(m.modules.len());
    for md in &m.modules {
        e.str(md.name);
        e.str(md.source);
        e.str(md.object);
        e.i64(md.mtime_ns);
        e.u64(md.content_hash);
        e.u32s(&md.imports.iter().map(|i| i.0).collect::<Vec<_>>());
        e.u8(md.reachable as u8);
        e.span(md.functions);
        e.span(md.objects);
        e.span(md.fixups);
        e.u32s(&md.ctors);
        e.u32s(&md.dtors);
        e.u32s(&md.on_reload);
        e.u32s(&md.undefined.iter().map(|i| i.0).collect::<Vec<_>>());
        e.span(md.seg);
        e.span(md.text);
        e.span(md.eh_frame);
        e.u64(md.checksum);
        e.u64(md.link_hash);
        e.u32s(&md.deps.iter().map(|i| i.0).collect::<Vec<_>>());
        e.u32(md.text_size);
        e.u32(md.rodata_size);
    }
    e.len(m.functions.len());
    for f in &m.functions {
        e.str(f.name);
        e.u32(f.module.0);
        e.u32(f.offset);
        e.u32(f.size);
        e.u8(f.global as u8);
    }
    e.len(m.objects.len());
    for o in &m.objects {
        e.str(o.name);
        e.str(o.identity);
        e.str(o.assumed);
        e.u32(o.module.0);
        e.u64(o.size);
        e.u32(o.align);
        match o.init {
            Some(off) => {
                e.u8(1);
                e.u64(off);
            }
            None => e.u8(0),
        }
        e.span(o.fixups);
        e.u8(o.global as u8 | (o.tls as u8) << 1);
    }
    e.len(m.hosts.len());
    for h in &m.hosts {
        e.str(h.name);
        e.u8(h.weak as u8);
    }
    e.len(m.libraries.len());
    for l in &m.libraries {
        e.str(l.request);
        e.str(l.soname);
        e.str(l.path);
    }
    for table in [fixups, object_fixups] {
        e.len(table.len());
        for f in table {
            e.u32(f.offset);
            e.u32(f.target);
            e.u32(f.addend as u32);
            e.u8(f.kind as u8);
            e.u8(f.class as u8);
            e.u8(0);
            e.u8(0);
        }
    }
    e.out
}

/// A table of encoded fixups, borrowed from the image bytes.
#[derive(Clone, Copy, Debug)]
pub struct Fixups<'a> {
    raw: &'a [u8],
}

impl<'a> Fixups<'a> {
    /// Number of fixups.
    pub fn len(&self) -> usize {
        self.raw.len() / FIXUP_SIZE
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
    /// The fixups of `span`, decoded one by one. Out-of-range spans yield
    /// nothing (spans are validated when the image is parsed).
    pub fn iter(&self, span: Span) -> impl Iterator<Item = Fixup> + 'a {
        let lo = (span.start as usize).saturating_mul(FIXUP_SIZE);
        let hi = (span.end as usize).saturating_mul(FIXUP_SIZE);
        self.raw
            .get(lo..hi)
            .unwrap_or(&[])
            .chunks_exact(FIXUP_SIZE)
            .map(decode_fixup_unchecked)
    }
    /// All fixups.
    pub fn all(&self) -> impl Iterator<Item = Fixup> + 'a {
        self.iter(Span::new(0, self.len() as u32))
    }
    /// The encoded records of `span` ([`FIXUP_SIZE`] bytes each: offset,
    /// target, addend as little-endian `u32`s, then kind and class bytes),
    /// for loops that decode in place. Kind and class bytes were validated
    /// when the image was parsed.
    pub fn raw(&self, span: Span) -> &'a [u8] {
        let lo = (span.start as usize).saturating_mul(FIXUP_SIZE);
        let hi = (span.end as usize).saturating_mul(FIXUP_SIZE);
        self.raw.get(lo..hi).unwrap_or(&[])
    }
}

fn rd32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Decodes a record whose kind and class bytes were validated at parse time.
fn decode_fixup_unchecked(b: &[u8]) -> Fixup {
    Fixup {
        offset: rd32(b, 0),
        target: rd32(b, 4),
        addend: rd32(b, 8) as i32,
        kind: FixupKind::from_u8(b[12]).unwrap_or(FixupKind::Abs64),
        class: TargetClass::from_u8(b[13]).unwrap_or(TargetClass::Area),
    }
}

type Body<'a> = (Manifest, Fixups<'a>, Fixups<'a>);

pub(crate) fn decode_body(body: &[u8]) -> Result<Body<'_>, DecodeError> {
    let mut d = Dec { buf: body, pos: 0 };
    let n = d.len(1)?;
    let table = d.bytes(n)?;
    let strings = std::str::from_utf8(table)
        .map_err(|_| d.err("string table is not UTF-8"))?
        .to_string();
    let mut m = Manifest {
        root: ModuleId(d.u32()?),
        ..Manifest::default()
    };
    let t = strings.as_str();
    m.layout.area_size = d.u32()?;
    m.stats.relocations = d.u64()?;
    m.stats.applied_at_link = d.u64()?;
    m.stats.got_entries = d.u32()?;
    m.stats.plt_stubs = d.u32()?;
    let n = d.len(108)?;
    for _ in 0..n {
        m.modules.push(Module {
            name: d.str(t)?,
            source: d.str(t)?,
            object: d.str(t)?,
            mtime_ns: d.i64()?,
            content_hash: d.u64()?,
            imports: d.u32s()?.into_iter().map(ModuleId).collect(),
            reachable: d.bool()?,
            functions: d.span()?,
            objects: d.span()?,
            fixups: d.span()?,
            ctors: d.u32s()?,
            dtors: d.u32s()?,
            on_reload: d.u32s()?,
            undefined: d.u32s()?.into_iter().map(HostId).collect(),
            seg: d.span()?,
            text: d.span()?,
            eh_frame: d.span()?,
            checksum: d.u64()?,
            link_hash: d.u64()?,
            deps: d.u32s()?.into_iter().map(ModuleId).collect(),
            text_size: d.u32()?,
            rodata_size: d.u32()?,
        });
    }
    let n = d.len(17)?;
    for _ in 0..n {
        m.functions.push(Function {
            name: d.str(t)?,
            module: ModuleId(d.u32()?),
            offset: d.u32()?,
            size: d.u32()?,
            global: d.bool()?,
        });
    }
    let n = d.len(42)?;
    for _ in 0..n {
        m.objects.push(Object {
            name: d.str(t)?,
            identity: d.str(t)?,
            assumed: d.str(t)?,
            module: ModuleId(d.u32()?),
            size: d.u64()?,
            align: d.u32()?,
            init: if d.bool()? { Some(d.u64()?) } else { None },
            fixups: d.span()?,
            global: false,
            tls: false,
        });
        let flags = d.u8()?;
        if flags > 3 {
            return Err(d.err(format!("bad object flags {flags}")));
        }
        let o = m.objects.last_mut().expect("just pushed");
        o.global = flags & 1 != 0;
        o.tls = flags & 2 != 0;
    }
    let n = d.len(5)?;
    for _ in 0..n {
        m.hosts.push(HostSymbol {
            name: d.str(t)?,
            weak: d.bool()?,
        });
    }
    let n = d.len(24)?;
    for _ in 0..n {
        m.libraries.push(Library {
            request: d.str(t)?,
            soname: d.str(t)?,
            path: d.str(t)?,
        });
    }
    let mut tables = [Fixups { raw: &[] }, Fixups { raw: &[] }];
    for t in &mut tables {
        let n = d.len(FIXUP_SIZE)?;
        let at = d.pos;
        let raw = d.bytes(n * FIXUP_SIZE)?;
        for (i, rec) in raw.chunks_exact(FIXUP_SIZE).enumerate() {
            if FixupKind::from_u8(rec[12]).is_none() || TargetClass::from_u8(rec[13]).is_none() {
                return Err(DecodeError {
                    what: format!("fixup {i} has an unknown kind or class"),
                    at: at + i * FIXUP_SIZE,
                });
            }
        }
        *t = Fixups { raw };
    }
    if d.pos != body.len() {
        return Err(d.err("trailing bytes after the manifest"));
    }
    let [fixups, object_fixups] = tables;
    m.strings = strings;
    Ok((m, fixups, object_fixups))
}

/// Cross-checks every index and offset so that the loader can trust them:
/// spans inside their tables, fixups inside the area or their object,
/// targets inside their tables.
pub(crate) fn validate(
    m: &Manifest,
    fixups: &Fixups<'_>,
    object_fixups: &Fixups<'_>,
    area_file_len: u64,
    init_len: usize,
) -> Result<(), DecodeError> {
    let bad = |what: String| DecodeError { what, at: 0 };
    let area = u64::from(m.layout.area_size);
    if area_file_len > area || area % PAGE_SIZE != 0 {
        return Err(bad("load area size is inconsistent".into()));
    }
    let (nm, nf, no, nh) = (
        m.modules.len(),
        m.functions.len(),
        m.objects.len(),
        m.hosts.len(),
    );
    if nm == 0 || m.root.0 as usize >= nm {
        return Err(bad("root module out of range".into()));
    }
    let mut prev_end = 0u32;
    for md in &m.modules {
        let inside = |s: Span| s.start >= md.seg.start && s.end <= md.seg.end;
        // Segments in module order, disjoint, inside the area as stored,
        // each ending with its unwind table (at least the terminator).
        if md.seg.start < prev_end
            || u64::from(md.seg.end) > area_file_len
            || !inside(md.text)
            || !inside(md.eh_frame)
            || md.eh_frame.len() < 4
            || md.eh_frame.end != md.seg.end
        {
            return Err(bad(format!(
                "module {}: segment out of range",
                m.str(md.name)
            )));
        }
        prev_end = md.seg.end;
        if md
            .imports
            .iter()
            .chain(&md.deps)
            .any(|i| i.0 as usize >= nm)
            || md.functions.end as usize > nf
            || md.objects.end as usize > no
            || md.fixups.end as usize > fixups.len()
            || md.undefined.iter().any(|h| h.0 as usize >= nh)
        {
            return Err(bad(format!(
                "module {} refers outside its tables",
                m.str(md.name)
            )));
        }
    }
    let in_some_text = |o: u32| {
        let i = m.modules.partition_point(|x| x.seg.start <= o);
        i > 0 && m.modules[i - 1].text.contains(o)
    };
    for md in &m.modules {
        if !md
            .ctors
            .iter()
            .chain(&md.dtors)
            .chain(&md.on_reload)
            .all(|&o| in_some_text(o))
        {
            return Err(bad(format!(
                "module {}: entry point outside code",
                m.str(md.name)
            )));
        }
    }
    for f in &m.functions {
        // `<= end`: a function of size 0 (a body of `__builtin_unreachable()`)
        // may end its module's code.
        let text = m.modules.get(f.module.0 as usize).map(|md| md.text);
        if !text.is_some_and(|t| f.offset >= t.start && f.offset <= t.end) {
            return Err(bad(format!("function {} out of range", m.str(f.name))));
        }
    }
    for o in &m.objects {
        let init_ok = match o.init {
            Some(off) => off
                .checked_add(o.size)
                .is_some_and(|e| e <= init_len as u64),
            None => true,
        };
        if o.module.0 as usize >= nm
            || !init_ok
            || o.fixups.end as usize > object_fixups.len()
            || !o.align.is_power_of_two()
            || o.size > crate::MAX_OBJECT_SIZE
        {
            return Err(bad(format!("object {} out of range", m.str(o.name))));
        }
    }
    // Fixup offsets and targets are not walked here: the loader checks
    // every write against its buffer and every target against its table,
    // so a fixup can never write out of bounds (see `hcr_loader::fill`).
    Ok(())
}
