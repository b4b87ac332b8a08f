//! Pass 9: copy sections and apply relocations; what cannot be applied now
//! becomes the load plan's fixups.

use super::*;

#[derive(Clone)]
pub(crate) struct ModApplied {
    pub(crate) fixups: Vec<Fixup>,
    /// (object id, fixups) for this module's objects.
    pub(crate) objfix: Vec<(u32, Vec<Fixup>)>,
    pub(crate) relocations: u64,
    pub(crate) at_link: u64,
    pub(crate) ctors: Vec<u32>,
    pub(crate) dtors: Vec<u32>,
    pub(crate) on_reload: Vec<u32>,
    pub(crate) diags: Vec<Diagnostic>,
}

/// A module's slices of the text, read-only, unwind and init regions.
pub(crate) type ModSlices<'b> = (&'b mut [u8], &'b mut [u8], &'b mut [u8], &'b mut [u8]);

/// Applies every module (or takes its previous result where `plan` lends
/// it); returns the whole, and each module's part for the next link.
pub(crate) fn apply_all(
    mods: &[Mod<'_>],
    lay: &AreaLayout,
    plan: Option<&mut Plan>,
) -> Result<(Applied, Vec<ModApplied>), LinkError> {
    // The previous link's buffers when nothing moved: only what is not
    // reused is written (after clearing it); fresh zeroed buffers otherwise.
    let mut plan = plan;
    let buffers = plan.as_deref_mut().and_then(|p| p.take_buffers(mods, lay));
    let in_place = buffers.is_some();
    let (mut area, mut init) = buffers.unwrap_or_else(|| {
        (
            vec![0u8; lay.area_file_size as usize],
            vec![0u8; lay.init_size as usize],
        )
    });
    let mut kept = match plan.as_deref_mut() {
        Some(p) => p.take_applied(mods.len()),
        None => Vec::new(),
    };
    kept.resize_with(mods.len(), || None);
    let plan: Option<&Plan> = plan.map(|p| &*p);
    let slices = module_slices(mods, &mut area, &mut init);
    let mut results: Vec<ModApplied> = slices
        .into_par_iter()
        .zip(kept)
        .enumerate()
        .map(|(mi, ((ts, rs, es, is), kept))| {
            if let (Some(k), Some(p)) = (kept, plan) {
                if !in_place {
                    p.copy_applied(mi, (ts, rs, es, is));
                }
                return k;
            }
            if in_place {
                for s in [&mut *ts, &mut *rs, &mut *es, &mut *is] {
                    s.fill(0);
                }
            }
            apply_module(mods, mi as u32, ts, rs, es, is)
        })
        .collect();
    let out = gather(mods, &mut results, area, init)?;
    Ok((out, results))
}

/// Every module's disjoint slices of the area (code, read-only data, unwind
/// table with its zero terminator) and of the init blob.
fn module_slices<'b>(
    mods: &[Mod<'_>],
    area: &'b mut [u8],
    init: &'b mut [u8],
) -> Vec<ModSlices<'b>> {
    fn take<'b>(buf: &mut &'b mut [u8], pos: &mut u64, base: u64, len: u64) -> &'b mut [u8] {
        let skip = (base - *pos) as usize;
        let b = std::mem::take(buf);
        let (_, b) = b.split_at_mut(skip);
        let (mine, rest) = b.split_at_mut(len as usize);
        *buf = rest;
        *pos = base + len;
        mine
    }
    let mut slices = Vec::with_capacity(mods.len());
    let (mut a, mut i) = (area, init);
    let (mut apos, mut ipos) = (0u64, 0u64);
    for m in mods {
        let ts = take(&mut a, &mut apos, m.bases.text, m.sizes.text);
        let rs = take(&mut a, &mut apos, m.bases.rodata, m.sizes.rodata);
        let es = take(&mut a, &mut apos, m.bases.eh, m.sizes.eh + 4);
        let is = take(&mut i, &mut ipos, m.bases.init, m.sizes.init);
        slices.push((ts, rs, es, is));
    }
    slices
}

/// The link's fixups, entry lists and counts gathered from every module's
/// `results` (in module order), with the area and init blob they were
/// applied to; or every module's problems.
fn gather(
    mods: &[Mod<'_>],
    results: &mut [ModApplied],
    area: Vec<u8>,
    init: Vec<u8>,
) -> Result<Applied, LinkError> {
    let mut out = Applied {
        area: Vec::new(),
        init: Vec::new(),
        fixups: Vec::new(),
        module_fixups: Vec::new(),
        object_fixups: Vec::new(),
        object_fixup_spans: Vec::new(),
        module_object_fixups: Vec::new(),
        relocations: 0,
        at_link: 0,
        ctors: Vec::new(),
        dtors: Vec::new(),
        on_reload: Vec::new(),
    };
    let nobj: usize = mods.iter().map(|m| m.objs.len()).sum();
    let mut per_obj: Vec<Vec<Fixup>> = vec![Vec::new(); nobj];
    let mut diags = Vec::new();
    out.fixups
        .reserve(results.iter().map(|r| r.fixups.len()).sum::<usize>());
    out.module_fixups.reserve(results.len());
    out.ctors.reserve(results.len());
    out.dtors.reserve(results.len());
    out.on_reload.reserve(results.len());
    for r in results.iter_mut() {
        let start = out.fixups.len() as u32;
        out.fixups.extend_from_slice(&r.fixups);
        out.module_fixups
            .push(Span::new(start, out.fixups.len() as u32));
        for (g, f) in &r.objfix {
            per_obj[*g as usize].clone_from(f);
        }
        out.relocations += r.relocations;
        out.at_link += r.at_link;
        out.ctors.push(r.ctors.clone());
        out.dtors.push(r.dtors.clone());
        out.on_reload.push(r.on_reload.clone());
        diags.append(&mut r.diags);
    }
    if !diags.is_empty() {
        return Err(LinkError::Inputs(diags));
    }
    out.object_fixups
        .reserve(per_obj.iter().map(Vec::len).sum::<usize>());
    out.object_fixup_spans.reserve(per_obj.len());
    for f in per_obj {
        let start = out.object_fixups.len() as u32;
        out.object_fixups.extend(f);
        out.object_fixup_spans
            .push(Span::new(start, out.object_fixups.len() as u32));
    }
    for m in mods {
        let at = |g: usize| {
            out.object_fixup_spans
                .get(g)
                .map_or(out.object_fixups.len() as u32, |s| s.start)
        };
        let (lo, hi) = (m.obj_base as usize, m.obj_base as usize + m.objs.len());
        out.module_object_fixups.push(Span::new(at(lo), at(hi)));
    }
    out.area = area;
    out.init = init;
    Ok(out)
}

/// Applies module `mi` into its slices of the area (`text`, `rodata`, `eh`)
/// and of the init blob.
pub(crate) fn apply_module(
    mods: &[Mod<'_>],
    mi: u32,
    text: &mut [u8],
    rodata: &mut [u8],
    eh: &mut [u8],
    init: &mut [u8],
) -> ModApplied {
    let mut a = Applier {
        mods,
        mi,
        m: &mods[mi as usize],
        res: ModApplied {
            fixups: Vec::new(),
            objfix: Vec::new(),
            relocations: 0,
            at_link: 0,
            ctors: Vec::new(),
            dtors: Vec::new(),
            on_reload: Vec::new(),
            diags: Vec::new(),
        },
        d: Diags::default(),
        entries: Entries::default(),
    };
    let mut b = Bufs {
        text,
        rodata,
        eh,
        init,
    };
    a.copy_sections(&mut b);
    a.got_entries(b.rodata);
    a.plt_stubs(b.text);
    a.relocations(&mut b);
    a.finish()
}

/// A module's slices of the output.
struct Bufs<'b> {
    text: &'b mut [u8],
    rodata: &'b mut [u8],
    eh: &'b mut [u8],
    init: &'b mut [u8],
}

/// Constructor (`(priority, offset, target)`), destructor and
/// `HCR_ON_RELOAD` (`(order, target)`) entries, sorted when done.
#[derive(Default)]
struct Entries {
    init: Vec<(u32, u64, u32)>,
    fini: Vec<(u32, u64, u32)>,
    reload: Vec<(u64, u32)>,
}

/// One module being applied, and what it has produced so far.
struct Applier<'a, 'd> {
    mods: &'a [Mod<'d>],
    mi: u32,
    m: &'a Mod<'d>,
    res: ModApplied,
    d: Diags,
    entries: Entries,
}

/// Where one relocation applies: its section, the relocation, the offset
/// of its field in the section's buffer, and its area offset (`None` in a
/// writable object).
struct Site<'a, 'd> {
    sec: &'a crate::parse::Sec<'d>,
    r: &'a crate::parse::Rel,
    local: usize,
    area_p: Option<u64>,
}

impl<'d> Applier<'_, 'd> {
    fn problem(&mut self, sec: &crate::parse::Sec<'_>, message: impl Into<String>, help: &str) {
        let m = self.m;
        self.d
            .push(&m.obj.path, &m.obj.name, Some(sec.name), message, help);
    }

    /// Area offset of every S that lives in the area.
    fn area_of(&self, s: &S) -> Option<u64> {
        let m = self.m;
        match *s {
            S::Area { m: tm, sec, off } => {
                Some(sec_area_offset(&self.mods[tm as usize], sec as usize)? + off)
            }
            S::Got(k) => Some(self.got_base() + 8 * u64::from(*m.got_index.get(&k)?)),
            S::Plt(h) => Some(
                m.bases.text + m.sizes.plt_at + PLT_STUB_SIZE * u64::from(*m.plt_index.get(&h)?),
            ),
            S::EhEnd => Some(m.bases.eh + m.sizes.eh),
            _ => None,
        }
    }

    /// The area offset of `s` when it lies in this module's own segment:
    /// only such values are fixed at link time (the runtime places each
    /// module's segment on its own).
    fn own_area_of(&self, s: &S) -> Option<u64> {
        match *s {
            S::Area { m: tm, .. } if tm != self.mi => None,
            _ => self.area_of(s),
        }
    }

    /// An area offset relative to this module's segment (wrapping).
    fn rel(&self, t: u64) -> u32 {
        t.wrapping_sub(self.m.bases.text) as u32
    }

    /// The module's GOT, for the large code model's GOT-relative values.
    fn got_base(&self) -> u64 {
        self.m.bases.rodata + self.m.sizes.got_at
    }

    /// What a fixup to `s` names: class, target and addend.
    fn residual(&self, s: &S) -> Option<(TargetClass, u32, i64)> {
        Some(match *s {
            S::Func(f, delta) => (TargetClass::Function, f, delta),
            S::Obj(g, off) => (TargetClass::Object, g, off as i64),
            S::Host(h) => (TargetClass::Host, h, 0),
            // Relative to this module's segment (wrapping): the runtime may
            // place the segments of an image apart.
            _ => (TargetClass::Area, self.rel(self.area_of(s)?), 0),
        })
    }

    fn copy_sections(&self, b: &mut Bufs<'_>) {
        let m = self.m;
        for (si, sec) in m.obj.sections.iter().enumerate() {
            let buf: &mut [u8] = match sec.kind {
                SecKind::Text => b.text,
                SecKind::Rodata => b.rodata,
                SecKind::EhFrame => b.eh,
                SecKind::Data if !sec.nobits => b.init,
                _ => continue,
            };
            let off = m.sec_off[si] as usize;
            if !sec.nobits {
                buf[off..off + sec.data.len()].copy_from_slice(sec.data);
            }
        }
    }

    /// GOT entries: residual absolute addresses (constants for absolute
    /// symbols and TLS words).
    fn got_entries(&mut self, rodata: &mut [u8]) {
        let m = self.m;
        for (i, k) in m.got.iter().enumerate() {
            let p = self.got_base() + 8 * i as u64;
            let local = (p - m.bases.rodata) as usize;
            let s = match tls::got_word(*k, m) {
                Some(Ok(v)) => {
                    rodata[local..local + 8].copy_from_slice(&v.to_le_bytes());
                    continue;
                }
                Some(Err(s)) => s,
                None => match *k {
                    GotKey::Area { m, sec, off } => S::Area { m, sec, off },
                    GotKey::Func(f) => S::Func(f, 0),
                    GotKey::Obj(g, off) => S::Obj(g, off),
                    GotKey::Host(h) => S::Host(h),
                    GotKey::Abs(v) => {
                        rodata[local..local + 8].copy_from_slice(&v.to_le_bytes());
                        continue;
                    }
                    _ => continue,
                },
            };
            if let Some((class, target, add)) = self.residual(&s) {
                self.res.fixups.push(Fixup {
                    offset: (p - m.bases.text) as u32,
                    target,
                    addend: add as i32,
                    kind: FixupKind::Abs64,
                    class,
                });
            }
        }
    }

    /// PLT stubs: `jmp *GOT(%rip)`, resolved now.
    fn plt_stubs(&self, text: &mut [u8]) {
        let m = self.m;
        for (i, &h) in m.plt.iter().enumerate() {
            let p = m.bases.text + m.sizes.plt_at + PLT_STUB_SIZE * i as u64;
            let slot = self.area_of(&S::Got(GotKey::Host(h))).unwrap_or(0);
            if let Some(stub) = x86::plt_stub(p, slot) {
                let local = (p - m.bases.text) as usize;
                text[local..local + 8].copy_from_slice(&stub);
            }
        }
    }

    /// Every relocation of the loaded sections, with its class from the
    /// scan.
    fn relocations(&mut self, b: &mut Bufs<'_>) {
        let m = self.m;
        let mut classes = m.classes.iter().copied();
        for (si, sec) in m.obj.sections.iter().enumerate() {
            if !sec.kind.relocated() {
                continue;
            }
            let entries = sec.kind.entry_list();
            let mut objfix = Vec::new();
            for r in m.obj.relocs(sec) {
                self.res.relocations += 1;
                let Some((calc, s)) = classes.next().flatten() else {
                    continue; // writes nothing, or reported by the scan
                };
                if entries {
                    self.entry(sec, r, s);
                    continue;
                }
                let (buf, base): (&mut [u8], Option<u64>) = match sec.kind {
                    SecKind::Text => (&mut *b.text, Some(m.bases.text)),
                    SecKind::Rodata => (&mut *b.rodata, Some(m.bases.rodata)),
                    SecKind::EhFrame => (&mut *b.eh, Some(m.bases.eh)),
                    _ => (&mut *b.init, None),
                };
                let site = Site {
                    sec,
                    r,
                    local: (m.sec_off[si] + r.offset) as usize,
                    area_p: base.map(|b| b + m.sec_off[si] + r.offset),
                };
                self.relocate(&site, calc, s, buf, &mut objfix);
            }
            let obj = (sec.kind == SecKind::Data).then(|| m.sec_obj[si]).flatten();
            if let Some(g) = obj {
                objfix.sort_by_key(|f| f.offset);
                self.res.objfix.push((g, objfix));
            }
        }
    }

    /// A constructor, destructor or `HCR_ON_RELOAD` entry: a code address
    /// in this image.
    fn entry(&mut self, sec: &crate::parse::Sec<'_>, r: &crate::parse::Rel, s: S) {
        let mods = self.mods;
        let target = match s {
            S::Func(f, delta) => {
                let fm = mods
                    .iter()
                    .find(|mm| f >= mm.fn_base && f < mm.fn_base + mm.funcs.len() as u32);
                fm.and_then(|mm| {
                    let fd = &mm.funcs[(f - mm.fn_base) as usize];
                    Some(
                        (sec_area_offset(mm, fd.sec as usize)? + fd.value)
                            .wrapping_add(delta as u64),
                    )
                })
            }
            _ => self.area_of(&s),
        };
        let Some(t) = target
            .and_then(|t| u64::try_from(i128::from(t) + i128::from(r.addend)).ok())
            .filter(|&t| {
                mods.iter()
                    .any(|mm| t >= mm.bases.text && t < mm.bases.text + mm.sizes.text)
            })
        else {
            self.problem(sec, "entry does not point to code", "rebuild the object");
            return;
        };
        self.res.at_link += 1;
        let t = self.rel(t);
        match sec.kind {
            SecKind::InitArray => self.entries.init.push((sec.priority, r.offset, t)),
            SecKind::FiniArray => self.entries.fini.push((sec.priority, r.offset, t)),
            _ => {
                let o = r.offset as usize + 8;
                let order = sec
                    .data
                    .get(o..o + 8)
                    .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
                self.entries.reload.push((order, t));
            }
        }
    }

    /// One relocation of code, data or tables: its value written now when
    /// it is known now, a fixup otherwise.
    fn relocate(
        &mut self,
        at: &Site<'_, 'd>,
        calc: Calc,
        s: S,
        buf: &mut [u8],
        objfix: &mut Vec<Fixup>,
    ) {
        let kind = match calc {
            Calc::GotPc32 | Calc::GotPc64 | Calc::GotEntry32 | Calc::GotEntry64 => {
                return self.got_relative(at, calc, s, buf)
            }
            Calc::GotOff64 if self.got_offset(at, s, buf) => return,
            Calc::GotOff64 => FixupKind::AreaRel64,
            Calc::Abs64 => FixupKind::Abs64,
            Calc::Pc32 => FixupKind::Pc32,
            Calc::Pc64 => FixupKind::Pc64,
            Calc::Abs32 => FixupKind::Abs32,
            Calc::Abs32S => FixupKind::Abs32S,
            Calc::Size32 | Calc::Size64 => return self.size(at, calc, s, buf),
        };
        if !self.known_now(at, kind, s, buf) {
            self.fixup(at, kind, s, buf, objfix);
        }
    }

    /// `GOT + A - P` and `G + A`: known now, the GOT being the module's.
    fn got_relative(&mut self, at: &Site<'_, 'd>, calc: Calc, s: S, buf: &mut [u8]) {
        let (r, local, got_base) = (at.r, at.local, self.got_base());
        let v = match (calc, at.area_p) {
            (Calc::GotPc32 | Calc::GotPc64, Some(p)) => (got_base as i64)
                .wrapping_add(r.addend)
                .wrapping_sub(p as i64),
            (Calc::GotEntry32 | Calc::GotEntry64, _) => match self.area_of(&s) {
                Some(entry) => (entry as i64)
                    .wrapping_sub(got_base as i64)
                    .wrapping_add(r.addend),
                None => return self.problem(at.sec, "GOT entry missing", "rebuild the object"),
            },
            _ => {
                let what = format!("{} outside code", x86::name(r.r_type));
                return self.problem(at.sec, what, "only code may address the GOT");
            }
        };
        if matches!(calc, Calc::GotPc32 | Calc::GotEntry32) {
            let Ok(v) = i32::try_from(v) else {
                let what = format!("{} value exceeds 32 bits", x86::name(r.r_type));
                return self.problem(
                    at.sec,
                    what,
                    "build with -mcmodel=large for 64-bit GOT offsets",
                );
            };
            buf[local..local + 4].copy_from_slice(&v.to_le_bytes());
        } else {
            buf[local..local + 8].copy_from_slice(&v.to_le_bytes());
        }
        self.res.at_link += 1;
    }

    /// `S + A - GOT` with S in this module's segment: known now (true).
    fn got_offset(&mut self, at: &Site<'_, 'd>, s: S, buf: &mut [u8]) -> bool {
        let Some(sa) = self.own_area_of(&s) else {
            return false;
        };
        let v = (sa as i64)
            .wrapping_add(at.r.addend)
            .wrapping_sub(self.got_base() as i64);
        buf[at.local..at.local + 8].copy_from_slice(&v.to_le_bytes());
        self.res.at_link += 1;
        true
    }

    /// `Z + A`: a symbol's size.
    fn size(&mut self, at: &Site<'_, 'd>, calc: Calc, s: S, buf: &mut [u8]) {
        let z = match s {
            S::Abs(v) => v,
            _ => 0,
        };
        let v = (z as i64).wrapping_add(at.r.addend);
        let local = at.local;
        if calc == Calc::Size32 {
            buf[local..local + 4].copy_from_slice(&(v as u32).to_le_bytes());
        } else {
            buf[local..local + 8].copy_from_slice(&v.to_le_bytes());
        }
        self.res.at_link += 1;
    }

    /// Writes the value when it is fixed now (true): PC-relative inside
    /// this module's segment, or an absolute symbol's address.
    fn known_now(&mut self, at: &Site<'_, 'd>, kind: FixupKind, s: S, buf: &mut [u8]) -> bool {
        let (r, local) = (at.r, at.local);
        if let (Some(p), Some(sa), FixupKind::Pc32 | FixupKind::Pc64) =
            (at.area_p, self.own_area_of(&s), kind)
        {
            // In i128: a fuzzed addend must not overflow (S + A - P).
            let v = i128::from(sa) + i128::from(r.addend) - i128::from(p);
            if kind == FixupKind::Pc32 {
                let Ok(v) = i32::try_from(v) else {
                    self.problem(
                        at.sec,
                        "PC-relative displacement exceeds ±2 GiB inside the image",
                        "split the program into smaller images",
                    );
                    return true;
                };
                buf[local..local + 4].copy_from_slice(&v.to_le_bytes());
            } else {
                buf[local..local + 8].copy_from_slice(&(v as i64).to_le_bytes());
            }
            self.res.at_link += 1;
            return true;
        }
        if let (S::Abs(v), FixupKind::Abs64) = (s, kind) {
            buf[local..local + 8]
                .copy_from_slice(&((v as i64).wrapping_add(r.addend)).to_le_bytes());
            self.res.at_link += 1;
            return true;
        }
        false
    }

    /// A value the loader writes: the field is cleared, the fixup recorded
    /// (in the area's list, or its object's).
    fn fixup(
        &mut self,
        at: &Site<'_, 'd>,
        kind: FixupKind,
        s: S,
        buf: &mut [u8],
        objfix: &mut Vec<Fixup>,
    ) {
        let r = at.r;
        let Some((class, target, add)) = self.residual(&s) else {
            let what = format!("cannot relocate {} here", x86::name(r.r_type));
            return self.problem(at.sec, what, "build with -fPIC");
        };
        // S + A - GOT = S + (A - GOT offset) - area base.
        // (`B` is the segment's start at run time.)
        let got_adjust = if kind == FixupKind::AreaRel64 {
            (self.got_base() - self.m.bases.text) as i64
        } else {
            0
        };
        let addend = i128::from(add) + i128::from(r.addend) - i128::from(got_adjust);
        let Ok(addend) = i32::try_from(addend) else {
            return self.problem(
                at.sec,
                "relocation addend exceeds 32 bits",
                "this image layout is not supported",
            );
        };
        // Clear the field: the loader writes the whole value.
        buf[at.local..at.local + kind.width()].fill(0);
        let (offset, list) = match at.area_p {
            Some(p) => ((p - self.m.bases.text) as u32, &mut self.res.fixups),
            None => (r.offset as u32, objfix),
        };
        list.push(Fixup {
            offset,
            target,
            addend,
            kind,
            class,
        });
    }

    /// The result: entries in order, fixups sorted by offset.
    fn finish(mut self) -> ModApplied {
        let mut e = std::mem::take(&mut self.entries);
        e.init.sort_by_key(|&(p, o, _)| (p, o));
        e.fini.sort_by_key(|&(p, o, _)| (p, o));
        e.reload.sort_by_key(|&(o, _)| o);
        let mut res = self.res;
        res.ctors = e.init.into_iter().map(|e| e.2).collect();
        res.dtors = e.fini.into_iter().map(|e| e.2).collect();
        res.on_reload = e.reload.into_iter().map(|e| e.1).collect();
        res.fixups.sort_by_key(|f| f.offset);
        res.diags = self.d.list;
        res
    }
}
