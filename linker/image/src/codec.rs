//! Byte encoding of the header, the manifest and the fixup tables.
//!
//! Little-endian throughout; strings and lists are length-prefixed (`u32`).
//! Decoding is bounds-checked everywhere: any byte sequence yields either a
//! manifest or a [`DecodeError`], never a panic.

use crate::modlist::{mv32, mv64, ModuleListBuilder, Moves};
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
    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.out.extend_from_slice(b);
    }
    fn fixups(&mut self, v: &[Fixup]) {
        self.len(v.len());
        for f in v {
            self.u32(f.offset);
            self.u32(f.target);
            self.u32(f.addend as u32);
            self.u8(f.kind as u8);
            self.u8(f.class as u8);
            self.u8(0);
            self.u8(0);
        }
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
    fn str(&mut self, table: &str, id: u32) -> Result<Str, DecodeError> {
        let s = Str {
            off: self.u32()?,
            len: self.u32()?,
            table: id,
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
    // (A plain object file's first section is short too: its missing
    // magic says more than its length.)
    if section.get(..8).is_none_or(|m| m != MAGIC) {
        return Err(ImageError::NotAnImage(
            "section 1 is not an hcr manifest (no HCRIMAGE magic); was this file written by hcr-link?",
        ));
    }
    let head = section
        .get(..HEADER_SIZE)
        .ok_or(ImageError::Truncated("manifest header"))?;
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

/// The fixups of one module, as the encoder is given them.
pub struct ModuleFixups<'f> {
    /// Residual fixups of the module's segment.
    pub area: &'f [Fixup],
    /// Fixups inside its objects (each object's [`Object::fixups`] is a
    /// range of these).
    pub objects: &'f [Fixup],
}

/// Encodes the manifest: its global part, then each module's record,
/// then one block per module. Returns the bytes and the length of the
/// global part.
pub(crate) fn encode_body<'f>(
    m: &Manifest,
    fixups: &dyn Fn(usize) -> ModuleFixups<'f>,
    init: &[u8],
) -> (Vec<u8>, usize) {
    let blocks: Vec<Vec<u8>> = m
        .modules
        .iter()
        .enumerate()
        .map(|(mi, md)| encode_block(m, mi, md, &fixups(mi)))
        .collect();
    let records: Vec<Vec<u8>> = m
        .modules
        .iter()
        .zip(&blocks)
        .map(|(md, b)| {
            let mine = slice_at(init, md.init.0, md.init.1).unwrap_or(&[]);
            encode_record(m, md, b.len() as u64, block_checksum(b, mine))
        })
        .collect();
    let mut out = encode_global(m, &records);
    let global_len = out.len();
    out.reserve(
        records.iter().map(Vec::len).sum::<usize>() + blocks.iter().map(Vec::len).sum::<usize>(),
    );
    for r in records.iter().chain(&blocks) {
        out.extend_from_slice(r);
    }
    (out, global_len)
}

/// The checksum of a module's block and initial bytes
/// ([`Module::block_checksum`]).
pub fn block_checksum(block: &[u8], init: &[u8]) -> u64 {
    use std::hash::Hasher as _;
    let mut h = twox_hash::XxHash3_64::new();
    h.write(block);
    h.write(init);
    h.finish()
}

/// Bytes of one module's entry in the global part's index: record hash,
/// initial bytes' start, segment start, record length.
pub(crate) const INDEX_ENTRY: usize = 24;

/// The global part: plan-wide fields, an index with one fixed-size entry
/// per module (its record's hash and where its parts start), host symbols
/// and libraries. The records (`records`, in module order) follow it.
pub(crate) fn encode_global(m: &Manifest, records: &[Vec<u8>]) -> Vec<u8> {
    let mut e = Enc {
        out: Vec::with_capacity(
            4096 + m.modules.len() * INDEX_ENTRY + m.hosts.len() * 32 + m.libraries.len() * 64,
        ),
    };
    // Only the names the global part uses: hosts' and libraries'.
    let mut strings = String::new();
    let put = append_str;
    let hosts: Vec<Str> = m
        .hosts
        .iter()
        .map(|h| put(&mut strings, m.str(h.name)))
        .collect();
    let libs: Vec<[Str; 3]> = m
        .libraries
        .iter()
        .map(|l| {
            [
                put(&mut strings, m.str(l.request)),
                put(&mut strings, m.str(l.soname)),
                put(&mut strings, m.str(l.path)),
            ]
        })
        .collect();
    e.bytes(strings.as_bytes());
    e.u32(m.root.0);
    e.u32(m.layout.area_size);
    e.u64(m.stats.relocations);
    e.u64(m.stats.applied_at_link);
    e.u32(m.stats.got_entries);
    e.u32(m.stats.plt_stubs);
    e.u64(records.iter().map(|r| r.len() as u64).sum());
    e.len(m.modules.len());
    for (md, r) in m.modules.iter().zip(records) {
        e.u64(twox_hash::XxHash3_64::oneshot(r));
        e.u64(md.init.0);
        e.u32(md.seg.start);
        e.u32(r.len() as u32);
    }
    e.len(m.hosts.len());
    for (h, name) in m.hosts.iter().zip(hosts) {
        e.str(name);
        e.u8(h.weak as u8 | (h.listed as u8) << 1);
    }
    e.len(m.libraries.len());
    for [a, b, c] in libs {
        e.str(a);
        e.str(b);
        e.str(c);
    }
    e.out
}

/// Appends `s` to a string table, returning where it lies (table 0).
pub(crate) fn append_str(table: &mut String, s: &str) -> Str {
    let off = u32::try_from(table.len()).unwrap_or(u32::MAX);
    table.push_str(s);
    Str {
        off,
        len: s.len() as u32,
        table: 0,
    }
}

/// One module's record: everything about it that does not depend on where
/// the modules before it lie (offsets relative to its own segment, sizes
/// instead of starts), so an unchanged module's record is byte-identical
/// from one link to the next.
pub(crate) fn encode_record(m: &Manifest, md: &Module, block_len: u64, block_sum: u64) -> Vec<u8> {
    let mut e = Enc {
        out: Vec::with_capacity(160),
    };
    for s in [md.name, md.source, md.object] {
        e.bytes(m.str(s).as_bytes());
    }
    let rel = |s: Span| {
        Span::new(
            s.start.wrapping_sub(md.seg.start),
            s.end.wrapping_sub(md.seg.start),
        )
    };
    e.i64(md.mtime_ns);
    e.u64(md.content_hash);
    e.u32s(&md.imports.iter().map(|i| i.0).collect::<Vec<_>>());
    e.u8(md.reachable as u8);
    e.u32(md.functions.len());
    e.u32(md.objects.len());
    e.u32(md.seg.len());
    e.span(rel(md.text));
    e.span(rel(md.eh_frame));
    e.u64(md.checksum);
    e.u64(md.link_hash);
    e.u32s(&md.deps.iter().map(|i| i.0).collect::<Vec<_>>());
    e.u32(md.text_size);
    e.u32(md.rodata_size);
    e.u64(md.init.1);
    e.u64(block_len);
    e.u64(block_sum);
    e.out
}

fn encode_block(m: &Manifest, mi: usize, md: &Module, fx: &ModuleFixups<'_>) -> Vec<u8> {
    let funcs = m.functions.part(mi);
    let objs = m.objects.part(mi);
    let mut e = Enc {
        out: Vec::with_capacity(
            64 + funcs.len() * 21
                + objs.len() * 61
                + (fx.area.len() + fx.objects.len()) * FIXUP_SIZE,
        ),
    };
    let mut strings = String::new();
    let mut put = |s: &str| append_str(&mut strings, s);
    let fnames: Vec<Str> = funcs.iter().map(|f| put(m.str(f.name))).collect();
    let onames: Vec<[Str; 3]> = objs
        .iter()
        .map(|o| {
            [
                put(m.str(o.name)),
                put(m.str(o.identity)),
                put(m.str(o.assumed)),
            ]
        })
        .collect();
    let cnames: Vec<Str> = md.clones.iter().map(|c| put(m.str(c.name))).collect();
    e.bytes(strings.as_bytes());
    e.u32s(&md.ctors);
    e.u32s(&md.dtors);
    e.u32s(&md.on_reload);
    e.u32s(&md.undefined.iter().map(|h| h.0).collect::<Vec<_>>());
    e.len(funcs.len());
    for (f, name) in funcs.iter().zip(fnames) {
        e.str(name);
        e.u32(f.offset);
        e.u32(f.size);
        e.u8(f.global as u8 | (f.indirect as u8) << 1 | (f.hidden as u8) << 2);
    }
    e.len(objs.len());
    for (o, [name, identity, assumed]) in objs.iter().zip(onames) {
        e.str(name);
        e.str(identity);
        e.str(assumed);
        e.u64(o.size);
        e.u32(o.align);
        e.u64(o.init.unwrap_or(u64::MAX));
        e.span(o.fixups);
        e.u8(o.global as u8 | (o.tls as u8) << 1 | (o.hidden as u8) << 2);
    }
    e.fixups(fx.area);
    e.fixups(fx.objects);
    e.len(md.clones.len());
    for (c, name) in md.clones.iter().zip(cnames) {
        e.str(name);
        e.u32(c.offset);
        e.u32(c.size);
    }
    e.out
}

/// A table of encoded fixups, borrowed from the image bytes.
#[derive(Clone, Copy, Debug, Default)]
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
    /// Every record, encoded.
    pub fn raw_all(&self) -> &'a [u8] {
        self.raw
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

/// The global part of a manifest: everything but the module blocks.
/// The global part of a manifest section, read but not yet put together.
pub(crate) struct Global<'a> {
    m: Manifest,
    /// Module records, in order.
    records: (usize, usize),
    /// The index: [`INDEX_ENTRY`] bytes per module.
    index: &'a [u8],
}

/// Reads the global part (`body`, at [`HEADER_SIZE`] of its manifest
/// section): everything but the modules.
pub(crate) fn decode_index(body: &[u8]) -> Result<Global<'_>, DecodeError> {
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
    let records_len =
        usize::try_from(d.u64()?).map_err(|_| d.err("module records larger than memory"))?;
    let n = d.len(INDEX_ENTRY)?;
    let index = d.bytes(n * INDEX_ENTRY)?;
    let n = d.len(9)?;
    for _ in 0..n {
        let name = d.str(t, 0)?;
        let flags = d.u8()?;
        if flags > 3 {
            return Err(d.err(format!("bad host symbol flags {flags}")));
        }
        m.hosts.push(HostSymbol {
            name,
            weak: flags & 1 != 0,
            listed: flags & 2 != 0,
        });
    }
    let n = d.len(24)?;
    for _ in 0..n {
        m.libraries.push(Library {
            request: d.str(t, 0)?,
            soname: d.str(t, 0)?,
            path: d.str(t, 0)?,
        });
    }
    if d.pos != body.len() {
        return Err(d.err("trailing bytes after the manifest"));
    }
    m.strings = strings;
    let start = HEADER_SIZE + body.len();
    Ok(Global {
        m,
        records: (start, records_len),
        index,
    })
}

/// One module's entry in the index.
struct Entry {
    hash: u64,
    init_start: u64,
    seg_start: u32,
    len: u32,
}

fn entry(index: &[u8], i: usize) -> Entry {
    let e = &index[i * INDEX_ENTRY..(i + 1) * INDEX_ENTRY];
    let u64_at = |a: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&e[a..a + 8]);
        u64::from_le_bytes(b)
    };
    Entry {
        hash: u64_at(0),
        init_start: u64_at(8),
        seg_start: rd32(e, 16),
        len: rd32(e, 20),
    }
}

impl Global<'_> {
    /// Section-relative places of the records that `old` does not hold
    /// (same index, same hash): the ones [`Global::finish`] decodes.
    pub fn records_to_read(&self, old: Option<&Manifest>) -> Vec<(u64, u64)> {
        let olds = old.map_or(&[][..], |o| &o.read.hashes[..]);
        let mut at = self.records.0 as u64;
        let mut out = Vec::new();
        for i in 0..self.index.len() / INDEX_ENTRY {
            let e = entry(self.index, i);
            if olds.get(i).is_none_or(|&h| h != e.hash) {
                match out.last_mut() {
                    Some((o, l)) if *o + *l == at => *l += u64::from(e.len),
                    _ => out.push((at, u64::from(e.len))),
                }
            }
            at += u64::from(e.len);
        }
        out
    }

    /// The manifest with every module's record: shared with `old`'s module
    /// at the same index when its hash is the same, otherwise decoded from
    /// `section` (the manifest section; only those records' bytes need be
    /// present) and checked against its hash. Where each module's parts lie
    /// follows from the sizes of the modules before it.
    pub fn finish(self, section: &[u8], old: Option<&Manifest>) -> Result<Manifest, DecodeError> {
        let bad = |what: String, at: usize| DecodeError { what, at };
        let Global {
            mut m,
            records,
            index,
        } = self;
        let n = index.len() / INDEX_ENTRY;
        let (rstart, rlen) = records;
        let rend = rstart
            .checked_add(rlen)
            .filter(|&e| e <= section.len())
            .ok_or_else(|| bad("module records outside the manifest".into(), rstart))?;
        let mut next = Next {
            at: rstart,
            f: 0,
            o: 0,
            block: rend as u64,
        };
        let mut out = ModuleListBuilder::with_capacity(n);
        let old_deps = old.map_or(&[][..], |o| &o.read.has_deps[..]);
        let r = &mut m.read;
        static READS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        r.id = READS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        r.against = old.map_or(0, |o| o.read.id);
        r.hashes.reserve(n);
        r.shared.reserve(n);
        r.same_ids.reserve(n);
        r.reachable.reserve(n);
        r.has_deps.reserve(n);
        r.seg.reserve(n);
        r.init.reserve(n);
        let old_hashes = old.map_or(&[][..], |o| &o.read.hashes[..]);
        let mut i = 0;
        // A run that could not be taken is not looked for again inside
        // itself (each retry would scan to the same end: quadratic time on
        // a crafted image); its modules go one by one.
        let mut no_run_before = 0;
        while i < n {
            if let (Some(o), true) = (old, i >= no_run_before) {
                match next.shifted_run(index, i, o, &mut out, r) {
                    Ok(j) => {
                        i = j;
                        continue;
                    }
                    Err(j) => no_run_before = j,
                }
            }
            let om = old
                .and_then(|o| o.modules.get_alone(i))
                .zip(old_hashes.get(i).copied());
            let (md, hash) =
                next.module(section, rend, index, i, om.as_ref().map(|(m, h)| (m, *h)))?;
            let om = om.as_ref().map(|(om, _)| om);
            let shared = om.is_some_and(|om| om.same_record(&md));
            r.hashes.push(hash);
            r.shared.push(shared);
            r.same_ids.push(
                shared
                    && om
                        .is_some_and(|om| om.functions == md.functions && om.objects == md.objects),
            );
            r.reachable.push(md.reachable);
            // A shared record's deps are the loaded one's: the summary
            // answers without a look at the record.
            r.has_deps.push(match old_deps.get(i) {
                Some(&d) if shared => d,
                _ => !md.deps.is_empty(),
            });
            r.seg.push((md.seg.start, md.seg.len()));
            r.init.push(md.init.0);
            out.push(md);
            i += 1;
        }
        m.modules = out.finish();
        Ok(m)
    }
}

/// Where the next module's record lies and its parts start.
struct Next {
    at: usize,
    f: u32,
    o: u32,
    block: u64,
}

impl Next {
    /// Takes modules `i..j` of `o` as they are but for their places: the
    /// longest run from `i` whose index entries are `o`'s (same record
    /// hash) with the segment and the initial bytes all moved by the same
    /// amounts, say when an earlier module grew. Their records are shared,
    /// and so is every answer of the summary; places shift by constants.
    /// Returns `Ok(j)`, or `Err(j)` when the run found (`i..j`, perhaps
    /// empty) was not taken.
    fn shifted_run(
        &mut self,
        index: &[u8],
        i: usize,
        o: &Manifest,
        out: &mut ModuleListBuilder,
        r: &mut ReadSummary,
    ) -> Result<usize, usize> {
        let n = index.len() / INDEX_ENTRY;
        let (olds, or) = (&o.modules, &o.read);
        // The scan reads the loaded summary's compact arrays, not the
        // modules themselves.
        let top = n
            .min(olds.len())
            .min(or.hashes.len())
            .min(or.seg.len())
            .min(or.init.len());
        // (The run's ends are read alone: the loaded list's groups are
        // not copied for them.)
        let Some(first) = olds.get_alone(i).filter(|_| i < top) else {
            return Err(i);
        };
        let e = entry(index, i);
        let dseg32 = e.seg_start.wrapping_sub(or.seg[i].0);
        let dinit64 = e.init_start.wrapping_sub(or.init[i]);
        let mut at = self.at as u64;
        let mut j = i;
        while j < top {
            let e = entry(index, j);
            if e.hash != or.hashes[j]
                || e.seg_start.wrapping_sub(or.seg[j].0) != dseg32
                || e.init_start.wrapping_sub(or.init[j]) != dinit64
            {
                break;
            }
            at += u64::from(e.len);
            j += 1;
        }
        if j == i || or.reachable.len() < j || or.has_deps.len() < j {
            return Err(j);
        }
        let Some(last) = olds.get_alone(j - 1) else {
            return Err(j);
        };
        // Signed moves. Segments, functions, objects and blocks lie in
        // order, so the run's last ends bound every one between. Initial
        // bytes need not be in order: each module's start comes out of the
        // wrapping move below exactly as its index entry gives it (the
        // move is the same for every module of the run, checked above), so
        // only the last one's end is checked here, as the per-module path
        // would not check it at all.
        let d = |new: u64, old: u64| i128::from(new) - i128::from(old);
        let by = Moves {
            seg: d(u64::from(e.seg_start), u64::from(first.seg.start)),
            init: d(e.init_start, first.init.0),
            f: d(u64::from(self.f), u64::from(first.functions.start)),
            o: d(u64::from(self.o), u64::from(first.objects.start)),
            block: d(self.block, first.block.0),
        };
        let fits =
            |v: u64, by: i128, max: u64| (0..=i128::from(max)).contains(&(i128::from(v) + by));
        let m32 = u64::from(u32::MAX);
        let ok = fits(u64::from(last.seg.end), by.seg, m32)
            && fits(u64::from(last.functions.end), by.f, m32)
            && fits(u64::from(last.objects.end), by.o, m32)
            && last
                .init
                .0
                .checked_add(last.init.1)
                .is_some_and(|x| fits(x, by.init, u64::MAX))
            && last
                .block
                .0
                .checked_add(last.block.1)
                .is_some_and(|x| fits(x, by.block, u64::MAX));
        if !ok {
            return Err(j);
        }
        // In range: the moves below neither wrap nor lose bits (the initial
        // bytes' starts: see above).
        // Whole groups inside the run are shared with their move noted
        // (copied only if read); the modules at its ends are copied moved.
        let mut k = i;
        while k < j {
            if k.is_multiple_of(GROUP)
                && k + GROUP <= j
                && out.push_moved_group(olds, k / GROUP, by)
            {
                k += GROUP;
                continue;
            }
            // (`k < j`, and `j` is at most the loaded list's length.)
            if let Some(md) = olds.get_moved(k, by) {
                out.push(md);
            }
            k += 1;
        }
        r.hashes.extend_from_slice(&or.hashes[i..j]);
        r.shared.resize(j, true);
        r.same_ids.resize(j, by.f == 0 && by.o == 0);
        r.reachable.extend_from_slice(&or.reachable[i..j]);
        r.has_deps.extend_from_slice(&or.has_deps[i..j]);
        r.seg.extend(
            or.seg[i..j]
                .iter()
                .map(|&(start, len)| (mv32(start, by.seg), len)),
        );
        r.init
            .extend(or.init[i..j].iter().map(|&start| mv64(start, by.init)));
        self.at = at as usize;
        self.f = mv32(last.functions.end, by.f);
        self.o = mv32(last.objects.end, by.o);
        self.block = mv64(last.block.0 + last.block.1, by.block);
        Ok(j)
    }

    /// Module `i` and its record's hash: the record shared with `om` (the
    /// loaded module at the same index, with its record's hash) when the
    /// hash is the same, otherwise decoded from `section` and checked
    /// against the hash.
    #[inline(always)]
    fn module(
        &mut self,
        section: &[u8],
        rend: usize,
        index: &[u8],
        i: usize,
        om: Option<(&Module, u64)>,
    ) -> Result<(Module, u64), DecodeError> {
        let bad = |what: String, at: usize| DecodeError { what, at };
        let e = entry(index, i);
        let (at, end) = (self.at, self.at + e.len as usize);
        let ((records, record_at), reachable, sh) = match om {
            // The sizes from the loaded module's places: the shared record
            // itself is not read.
            Some((om, hash)) if hash == e.hash => (
                (om.records.clone(), om.record_at),
                om.reachable,
                shape_of(om, hash),
            ),
            _ => {
                let bytes = section
                    .get(at..end)
                    .filter(|_| end <= rend)
                    .ok_or_else(|| bad(format!("module {i}: record out of range"), at))?;
                if twox_hash::XxHash3_64::oneshot(bytes) != e.hash {
                    return Err(bad(
                        format!("module {i}: record does not match its hash (torn or corrupted)"),
                        at,
                    ));
                }
                let (mut r, reachable) = decode_record(bytes, i).map_err(|mut d| {
                    d.at += at;
                    d
                })?;
                r.shape.hash = e.hash;
                let sh = r.shape;
                ((Records::alone(r), 0), reachable, sh)
            }
        };
        let span = |start: u32, len: u32| {
            start
                .checked_add(len)
                .map(|end| Span::new(start, end))
                .ok_or_else(|| bad(format!("module {i}: part out of range"), 0))
        };
        let rel = |s: Span| span(e.seg_start.wrapping_add(s.start), s.len());
        let md = Module {
            functions: span(self.f, sh.functions)?,
            objects: span(self.o, sh.objects)?,
            seg: span(e.seg_start, sh.seg_len)?,
            text: rel(sh.text)?,
            eh_frame: rel(sh.eh_frame)?,
            init: (e.init_start, sh.init_len),
            block: (self.block, sh.block_len),
            reachable,
            records,
            record_at,
        };
        self.at = end;
        self.f = md.functions.end;
        self.o = md.objects.end;
        self.block = self
            .block
            .checked_add(sh.block_len)
            .ok_or_else(|| bad(format!("module {i}: block out of range"), 0))?;
        Ok((md, e.hash))
    }
}

/// The sizes of `md`'s parts, as its record (whose hash is `hash`) gives
/// them.
fn shape_of(md: &Module, hash: u64) -> RecordShape {
    let rel = |s: Span| Span::new(s.start - md.seg.start, s.end - md.seg.start);
    RecordShape {
        hash,
        functions: md.functions.len(),
        objects: md.objects.len(),
        seg_len: md.seg.len(),
        text: rel(md.text),
        eh_frame: rel(md.eh_frame),
        init_len: md.init.1,
        block_len: md.block.1,
    }
}

/// Decodes module `mi`'s record.
fn decode_record(bytes: &[u8], mi: usize) -> Result<(ModuleRecord, bool), DecodeError> {
    let mut d = Dec { buf: bytes, pos: 0 };
    // (The names are part of the record: never longer than it.)
    let mut names = String::with_capacity(bytes.len());
    let table = RECORD_STRINGS | mi as u32;
    let mut name = || -> Result<Str, DecodeError> {
        let n = d.len(1)?;
        let raw = d.bytes(n)?;
        let t = std::str::from_utf8(raw).map_err(|_| d.err("name is not UTF-8"))?;
        let s = Str {
            off: names.len() as u32,
            len: t.len() as u32,
            table,
        };
        names.push_str(t);
        Ok(s)
    };
    let (name, source, object) = (name()?, name()?, name()?);
    let ids = |d: &mut Dec<'_>| -> Result<Arc<[ModuleId]>, DecodeError> {
        let (raw, _) = records(d, 4)?;
        Ok(shared_list(
            raw.chunks_exact(4).map(|r| ModuleId(le32(r, 0))),
        ))
    };
    let mut r = ModuleRecord {
        name,
        source,
        object,
        mtime_ns: d.i64()?,
        content_hash: d.u64()?,
        imports: ids(&mut d)?,
        ..ModuleRecord::default()
    };
    let reachable = d.bool()?;
    r.shape.functions = d.u32()?;
    r.shape.objects = d.u32()?;
    r.shape.seg_len = d.u32()?;
    r.shape.text = d.span()?;
    r.shape.eh_frame = d.span()?;
    r.checksum = d.u64()?;
    r.link_hash = d.u64()?;
    r.deps = ids(&mut d)?;
    r.text_size = d.u32()?;
    r.rodata_size = d.u32()?;
    r.shape.init_len = d.u64()?;
    r.shape.block_len = d.u64()?;
    r.block_checksum = d.u64()?;
    if d.pos != bytes.len() {
        return Err(d.err("trailing bytes after a module's record"));
    }
    r.names = names.into();
    Ok((r, reachable))
}

/// One module's decoded block.
pub(crate) struct Block<'a> {
    pub strings: Arc<str>,
    pub ctors: Arc<[u32]>,
    pub dtors: Arc<[u32]>,
    pub on_reload: Arc<[u32]>,
    pub undefined: Arc<[HostId]>,
    pub clones: Arc<[CodePart]>,
    pub functions: Arc<[Function]>,
    pub objects: Arc<[Object]>,
    pub fixups: Fixups<'a>,
    pub object_fixups: Fixups<'a>,
}

/// The per-module parts of a manifest put together from blocks: the
/// decoded ones (the rest are an earlier manifest's, shared), and every
/// module's fixups (none for a shared block: nothing of it is loaded again).
/// Nothing here is per module but the fixups, so a reload that decodes one
/// block allocates for one.
pub(crate) struct Parts<'a> {
    /// Decoded parts in module order: module, functions, objects, strings.
    decoded: Vec<Decoded>,
    pub fixups: Vec<(usize, Fixups<'a>)>,
    pub object_fixups: Vec<(usize, Fixups<'a>)>,
}

/// One module's decoded parts: module, functions, objects, strings.
type Decoded = (usize, Arc<[Function]>, Arc<[Object]>, Arc<str>);

impl<'a> Parts<'a> {
    /// Parts, none decoded yet, with room for `n` decoded blocks.
    pub fn with_capacity(n: usize) -> Self {
        Parts {
            decoded: Vec::with_capacity(n),
            fixups: Vec::with_capacity(n),
            object_fixups: Vec::with_capacity(n),
        }
    }

    /// Module `mi`'s decoded block: its lists go to `md`, its tables here.
    /// Modules are added in order.
    pub fn add(&mut self, mi: usize, md: &mut Module, b: Block<'a>) {
        md.ctors = b.ctors;
        md.dtors = b.dtors;
        md.on_reload = b.on_reload;
        md.undefined = b.undefined;
        md.clones = b.clones;
        md.fixups = b.fixups.len() as u32;
        self.fixups.push((mi, b.fixups));
        self.object_fixups.push((mi, b.object_fixups));
        self.decoded.push((mi, b.functions, b.objects, b.strings));
    }

    /// Module `md`'s block as module `mi` of `old` decoded it (shared, no
    /// fixups: nothing of it is loaded again). A shared record already has
    /// the block's lists.
    pub fn share(md: &mut Module, old: &Manifest, mi: usize) {
        if let Some(om) = old.modules.get(mi) {
            md.ctors = om.ctors.clone();
            md.dtors = om.dtors.clone();
            md.on_reload = om.on_reload.clone();
            md.undefined = om.undefined.clone();
            md.clones = om.clones.clone();
            md.fixups = om.fixups;
        }
    }

    /// Gives `m` its tables (parts not decoded are `old`'s, whole groups of
    /// them shared); the fixups stay here.
    pub fn finish(&mut self, m: &mut Manifest, old: Option<&Manifest>) {
        let n = m.modules.len();
        let decoded = std::mem::take(&mut self.decoded);
        let (mut functions, mut objects, mut strings) = (
            Vec::with_capacity(decoded.len()),
            Vec::with_capacity(decoded.len()),
            Vec::with_capacity(decoded.len()),
        );
        for (mi, f, o, s) in decoded {
            functions.push((mi, f));
            objects.push((mi, o));
            strings.push((mi, s));
        }
        m.functions = Chunked::from_sparse(n, functions, old.map(|o| &o.functions));
        m.objects = Chunked::from_sparse(n, objects, old.map(|o| &o.objects));
        m.module_strings = Grouped::from_sparse(n, strings, old.map(|o| &o.module_strings));
    }
}

/// Bytes of one function's record in a block: name, offset, size, flags.
const FUNCTION_RECORD: usize = 17;
/// Bytes of one object's record: name, identity, assumed type, size,
/// alignment, initial bytes, fixups, flags.
const OBJECT_RECORD: usize = 53;
/// Bytes of one code part's record: name, offset, size.
const CODE_PART_RECORD: usize = 16;

/// The little-endian `u32` at `at` of a fixed-size record.
#[inline]
fn le32(r: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([r[at], r[at + 1], r[at + 2], r[at + 3]])
}

/// The little-endian `u64` at `at` of a fixed-size record.
#[inline]
fn le64(r: &[u8], at: usize) -> u64 {
    u64::from(le32(r, at)) | (u64::from(le32(r, at + 4)) << 32)
}

/// The string at `at` of a record, in module table `id`, as stored.
#[inline]
fn str_at(r: &[u8], at: usize, id: u32) -> Str {
    Str {
        off: le32(r, at),
        len: le32(r, at + 4),
        table: id,
    }
}

/// Whether the string at `at` of a record lies inside `table` on
/// character boundaries.
#[inline]
fn str_ok(r: &[u8], at: usize, table: &str) -> bool {
    let a = le32(r, at) as usize;
    let b = a + le32(r, at + 4) as usize;
    b <= table.len() && table.is_char_boundary(a) && table.is_char_boundary(b)
}

/// A list of fixed-size records: its bytes, checked whole against the
/// block, and the block offset of its first record (for errors).
fn records<'a>(d: &mut Dec<'a>, size: usize) -> Result<(&'a [u8], usize), DecodeError> {
    let n = d.len(size)?;
    let at = d.pos;
    Ok((d.bytes(n * size)?, at))
}

/// Decodes module `mi`'s block. Its lists are fixed-size records: each is
/// checked in one pass, then built into its shared slice in a second one
/// (one allocation per list).
pub(crate) fn decode_block(block: &[u8], mi: usize) -> Result<Block<'_>, DecodeError> {
    let mut d = Dec { buf: block, pos: 0 };
    let id = mi as u32 + 1;
    let n = d.len(1)?;
    let table = d.bytes(n)?;
    let strings: Arc<str> =
        Arc::from(std::str::from_utf8(table).map_err(|_| d.err("string table is not UTF-8"))?);
    let t = &strings[..];
    let ctors = u32_list(&mut d)?;
    let dtors = u32_list(&mut d)?;
    let on_reload = u32_list(&mut d)?;
    let undefined: Arc<[HostId]> = {
        let (raw, _) = records(&mut d, 4)?;
        shared_list(raw.chunks_exact(4).map(|r| HostId(le32(r, 0))))
    };
    let module = ModuleId(mi as u32);
    let bad = |what: String, at: usize| DecodeError { what, at };

    let (raw, at) = records(&mut d, FUNCTION_RECORD)?;
    for (i, r) in raw.chunks_exact(FUNCTION_RECORD).enumerate() {
        let at = at + i * FUNCTION_RECORD;
        if !str_ok(r, 0, t) {
            return Err(bad("string outside the string table".into(), at));
        }
        if r[16] > 7 {
            return Err(bad(format!("bad function flags {}", r[16]), at + 16));
        }
    }
    let functions = shared_list(raw.chunks_exact(FUNCTION_RECORD).map(|r| Function {
        name: str_at(r, 0, id),
        module,
        offset: le32(r, 8),
        size: le32(r, 12),
        global: r[16] & 1 != 0,
        indirect: r[16] & 2 != 0,
        hidden: r[16] & 4 != 0,
    }));

    let (raw, at) = records(&mut d, OBJECT_RECORD)?;
    for (i, r) in raw.chunks_exact(OBJECT_RECORD).enumerate() {
        let at = at + i * OBJECT_RECORD;
        if ![0, 8, 16].iter().all(|&k| str_ok(r, k, t)) {
            return Err(bad("string outside the string table".into(), at));
        }
        if le32(r, 44) > le32(r, 48) {
            return Err(bad("inverted range".into(), at + 44));
        }
        if r[52] > 7 {
            return Err(bad(format!("bad object flags {}", r[52]), at + 52));
        }
    }
    let objects = shared_list(raw.chunks_exact(OBJECT_RECORD).map(|r| Object {
        name: str_at(r, 0, id),
        identity: str_at(r, 8, id),
        assumed: str_at(r, 16, id),
        module,
        size: le64(r, 24),
        align: le32(r, 32),
        init: Some(le64(r, 36)).filter(|&v| v != u64::MAX),
        fixups: Span::new(le32(r, 44), le32(r, 48)),
        global: r[52] & 1 != 0,
        tls: r[52] & 2 != 0,
        hidden: r[52] & 4 != 0,
    }));

    let mut tables = [Fixups { raw: &[] }, Fixups { raw: &[] }];
    for t in &mut tables {
        let (raw, at) = records(&mut d, FIXUP_SIZE)?;
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

    let (raw, at) = records(&mut d, CODE_PART_RECORD)?;
    for (i, r) in raw.chunks_exact(CODE_PART_RECORD).enumerate() {
        if !str_ok(r, 0, t) {
            return Err(bad(
                "string outside the string table".into(),
                at + i * CODE_PART_RECORD,
            ));
        }
    }
    let clones = shared_list(raw.chunks_exact(CODE_PART_RECORD).map(|r| CodePart {
        name: str_at(r, 0, id),
        offset: le32(r, 8),
        size: le32(r, 12),
    }));
    if d.pos != block.len() {
        return Err(d.err("trailing bytes after a module's block"));
    }
    let [fixups, object_fixups] = tables;
    Ok(Block {
        strings,
        ctors,
        dtors,
        on_reload,
        undefined,
        clones,
        functions,
        objects,
        fixups,
        object_fixups,
    })
}

/// A list of `u32`s (length-prefixed) as a shared slice.
fn u32_list(d: &mut Dec<'_>) -> Result<Arc<[u32]>, DecodeError> {
    let (raw, _) = records(d, 4)?;
    Ok(shared_list(raw.chunks_exact(4).map(|r| le32(r, 0))))
}

/// `items` as a shared slice. An iterator over a fixed-size record list
/// knows its length exactly, so the slice is built in place: one
/// allocation, no copy through a `Vec`; none for an empty list (most of a
/// module's constructor, destructor, handler, host symbol and code part
/// lists), which shares the one empty slice.
fn shared_list<T>(items: impl ExactSizeIterator<Item = T>) -> Arc<[T]> {
    match items.len() {
        0 => Arc::default(),
        _ => items.collect(),
    }
}

/// Cross-checks the global part so that the loader can trust it: the root,
/// segments in module order inside the area, lists inside their tables.
/// A record shared with `old` (same index, same number of modules) was
/// checked when it was decoded; only its placement is checked again.
pub(crate) fn validate_global(
    m: &Manifest,
    area_file_len: u64,
    old: Option<&Manifest>,
) -> Result<(), DecodeError> {
    let bad = |what: String| DecodeError { what, at: 0 };
    let area = u64::from(m.layout.area_size);
    if area_file_len > area || area % PAGE_SIZE != 0 {
        return Err(bad("load area size is inconsistent".into()));
    }
    let nm = m.modules.len();
    if nm == 0 || m.root.0 as usize >= nm {
        return Err(bad("root module out of range".into()));
    }
    let olds = old.filter(|o| o.modules.len() == nm).map(|o| &o.modules);
    let mut prev_end = 0u32;
    // A shared record was checked against the loaded manifest's module
    // count: trusted only while that count is the same.
    let against = old.is_some_and(|o| m.read_against(o) && o.modules.len() == nm);
    for mi in 0..nm {
        let shared = against && m.shared_record(mi);
        if let (true, Some(&(start, len))) = (shared, m.read.seg.get(mi)) {
            // A record already checked where it was: its parts lie inside
            // its segment wherever that starts (the parts are relative to
            // it), so only the segment's place is new. (The module itself
            // is not looked at, so a shared group is not copied.)
            let end = u64::from(start) + u64::from(len);
            if start < prev_end || end > area_file_len {
                return Err(bad(format!(
                    "module {}: segment out of range",
                    m.str(m.modules[mi].name)
                )));
            }
            prev_end = end as u32;
            continue;
        }
        let md = &m.modules[mi];
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
        let checked = shared
            || olds
                .and_then(|o| o.get(mi))
                .is_some_and(|om| om.same_record(md));
        if !checked
            && md
                .imports
                .iter()
                .chain(md.deps.iter())
                .any(|i| i.0 as usize >= nm)
        {
            return Err(bad(format!(
                "module {} refers outside its tables",
                m.str(md.name)
            )));
        }
    }
    Ok(())
}

/// Cross-checks module `mi`'s decoded block against the global part.
pub(crate) fn validate_block(
    m: &Manifest,
    mi: usize,
    b: &Block<'_>,
    init_len: u64,
) -> Result<(), DecodeError> {
    let md = &m.modules[mi];
    let bad = |what: &str| DecodeError {
        what: format!("module {}: {what}", m.str(md.name)),
        at: 0,
    };
    if b.functions.len() != md.functions.len() as usize
        || b.objects.len() != md.objects.len() as usize
    {
        return Err(bad("its block does not match its record"));
    }
    if b.undefined.iter().any(|h| h.0 as usize >= m.hosts.len()) {
        return Err(bad("refers outside the host symbols"));
    }
    let in_some_text = |o: u32| {
        let i = m.modules.partition_point(|x| x.seg.start <= o);
        i > 0 && m.modules[i - 1].text.contains(o)
    };
    if !b
        .ctors
        .iter()
        .chain(b.dtors.iter())
        .chain(b.on_reload.iter())
        .all(|&o| in_some_text(md.seg.start.wrapping_add(o)))
    {
        return Err(bad("entry point outside code"));
    }
    // `<= end`: a function of size 0 (a body of `__builtin_unreachable()`)
    // may end its module's code.
    let (lo, hi) = (md.text.start - md.seg.start, md.text.end - md.seg.start);
    if b.functions.iter().any(|f| f.offset < lo || f.offset > hi) {
        return Err(bad("function outside its code"));
    }
    let (start, len) = md.init;
    if start.checked_add(len).is_none_or(|e| e > init_len) {
        return Err(bad("initial bytes outside the image's"));
    }
    for o in b.objects.iter() {
        let init_ok = match o.init {
            Some(off) => off.checked_add(o.size).is_some_and(|e| e <= len),
            None => true,
        };
        if !init_ok
            || o.fixups.end as usize > b.object_fixups.len()
            || !o.align.is_power_of_two()
            || o.size > crate::MAX_OBJECT_SIZE
        {
            return Err(bad(&format!(
                "object {} out of range",
                &b.strings
                    .get(o.name.off as usize..(o.name.off + o.name.len) as usize)
                    .unwrap_or("?")
            )));
        }
    }
    // Fixup offsets and targets are not walked here: the loader checks
    // every write against its buffer and every target against its table,
    // so a fixup can never write out of bounds (see `hcr_loader::fill`).
    Ok(())
}
