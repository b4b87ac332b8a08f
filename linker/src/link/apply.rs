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
    let plan: Option<&Plan> = plan.map(|p| &*p);
    // Hand every module its disjoint slices of the area and the init blob.
    let mut slices: Vec<ModSlices<'_>> = Vec::with_capacity(mods.len());
    {
        let init: &mut [u8] = &mut init;
        let (mut a, mut i) = (&mut area[..], init);
        let (mut apos, mut ipos) = (0u64, 0u64);
        for m in mods {
            fn take<'b>(
                buf: &mut &'b mut [u8],
                pos: &mut u64,
                base: u64,
                len: u64,
            ) -> &'b mut [u8] {
                let skip = (base - *pos) as usize;
                let b = std::mem::take(buf);
                let (_, b) = b.split_at_mut(skip);
                let (mine, rest) = b.split_at_mut(len as usize);
                *buf = rest;
                *pos = base + len;
                mine
            }
            let ts = take(&mut a, &mut apos, m.bases.text, m.sizes.text);
            let rs = take(&mut a, &mut apos, m.bases.rodata, m.sizes.rodata);
            // The module's unwind table and its zero terminator.
            let es = take(&mut a, &mut apos, m.bases.eh, m.sizes.eh + 4);
            let is = take(&mut i, &mut ipos, m.bases.init, m.sizes.init);
            slices.push((ts, rs, es, is));
        }
    }
    let mut results: Vec<ModApplied> = slices
        .into_par_iter()
        .enumerate()
        .map(|(mi, (ts, rs, es, is))| {
            let slices = (&mut *ts, &mut *rs, &mut *es, &mut *is);
            if let Some(kept) = plan.and_then(|p| p.reuse_applied(mi, slices, in_place)) {
                return kept;
            }
            if in_place {
                for s in [&mut *ts, &mut *rs, &mut *es, &mut *is] {
                    s.fill(0);
                }
            }
            apply_module(mods, mi as u32, ts, rs, es, is)
        })
        .collect();
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
    for r in &mut results {
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
    Ok((out, results))
}

pub(crate) fn apply_module(
    mods: &[Mod<'_>],
    mi: u32,
    text: &mut [u8],
    rodata: &mut [u8],
    eh: &mut [u8],
    init: &mut [u8],
) -> ModApplied {
    let m = &mods[mi as usize];
    let mut classes = m.classes.iter().copied();
    let mut res = ModApplied {
        fixups: Vec::new(),
        objfix: Vec::new(),
        relocations: 0,
        at_link: 0,
        ctors: Vec::new(),
        dtors: Vec::new(),
        on_reload: Vec::new(),
        diags: Vec::new(),
    };
    let mut d = Diags::default();
    // Copy section bytes.
    for (si, sec) in m.obj.sections.iter().enumerate() {
        let buf: &mut [u8] = match sec.kind {
            SecKind::Text => text,
            SecKind::Rodata => rodata,
            SecKind::EhFrame => eh,
            SecKind::Data if !sec.nobits => init,
            _ => continue,
        };
        let off = m.sec_off[si] as usize;
        if !sec.nobits {
            buf[off..off + sec.data.len()].copy_from_slice(sec.data);
        }
    }
    // Area offset of every S that lives in the area.
    let area_of = |s: &S| -> Option<u64> {
        match *s {
            S::Area { m: tm, sec, off } => {
                Some(sec_area_offset(&mods[tm as usize], sec as usize)? + off)
            }
            S::Got(k) => {
                Some(m.bases.rodata + m.sizes.got_at + 8 * u64::from(*m.got_index.get(&k)?))
            }
            S::Plt(h) => Some(
                m.bases.text + m.sizes.plt_at + PLT_STUB_SIZE * u64::from(*m.plt_index.get(&h)?),
            ),
            S::EhEnd => Some(m.bases.eh + m.sizes.eh),
            _ => None,
        }
    };
    // The area offset of `s` when it lies in this module's own segment:
    // only such values are fixed at link time (the runtime places each
    // module's segment on its own).
    let own_area_of = |s: &S| -> Option<u64> {
        match *s {
            S::Area { m: tm, .. } if tm != mi => None,
            _ => area_of(s),
        }
    };
    // An area offset relative to this module's segment (wrapping).
    let rel = |t: u64| t.wrapping_sub(m.bases.text) as u32;
    let residual = |s: &S| -> Option<(TargetClass, u32, i64)> {
        Some(match *s {
            S::Func(f, delta) => (TargetClass::Function, f, delta),
            S::Obj(g, off) => (TargetClass::Object, g, off as i64),
            S::Host(h) => (TargetClass::Host, h, 0),
            _ => {
                let a = area_of(s)?;
                // Relative to this module's segment (wrapping): the runtime
                // may place the segments of an image apart.
                (TargetClass::Area, a.wrapping_sub(m.bases.text) as u32, 0)
            }
        })
    };
    // GOT entries: residual absolute addresses (constants for absolute symbols).
    for (i, k) in m.got.iter().enumerate() {
        let p = m.bases.rodata + m.sizes.got_at + 8 * i as u64;
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
        if let Some((class, target, add)) = residual(&s) {
            res.fixups.push(Fixup {
                offset: (p - m.bases.text) as u32,
                target,
                addend: add as i32,
                kind: FixupKind::Abs64,
                class,
            });
        }
    }
    // PLT stubs: jmp *GOT(%rip), resolved now.
    for (i, &h) in m.plt.iter().enumerate() {
        let p = m.bases.text + m.sizes.plt_at + PLT_STUB_SIZE * i as u64;
        let slot = area_of(&S::Got(GotKey::Host(h))).unwrap_or(0);
        if let Some(stub) = x86::plt_stub(p, slot) {
            let local = (p - m.bases.text) as usize;
            text[local..local + 8].copy_from_slice(&stub);
        }
    }
    // Relocations.
    let mut init_entries: Vec<(u32, u64, u32)> = Vec::new();
    let mut fini_entries: Vec<(u32, u64, u32)> = Vec::new();
    let mut reload_entries: Vec<(u64, u32)> = Vec::new();
    for (si, sec) in m.obj.sections.iter().enumerate() {
        if matches!(
            sec.kind,
            SecKind::Skip | SecKind::Discarded | SecKind::Debug
        ) {
            continue;
        }
        let obj = if sec.kind == SecKind::Data {
            m.sec_obj[si]
        } else {
            None
        };
        let mut objfix = Vec::new();
        for r in m.obj.relocs(sec) {
            res.relocations += 1;
            let class = classes.next().flatten();
            let Some((calc, s)) = class else {
                continue; // writes nothing, or reported by the scan
            };
            match sec.kind {
                SecKind::InitArray | SecKind::FiniArray | SecKind::OnReload => {
                    // Entry points: code addresses in this image.
                    let target = match s {
                        S::Func(f, delta) => {
                            let fm = mods.iter().find(|mm| {
                                f >= mm.fn_base && f < mm.fn_base + mm.funcs.len() as u32
                            });
                            fm.and_then(|mm| {
                                let fd = &mm.funcs[(f - mm.fn_base) as usize];
                                Some(
                                    (sec_area_offset(mm, fd.sec as usize)? + fd.value)
                                        .wrapping_add(delta as u64),
                                )
                            })
                        }
                        _ => area_of(&s),
                    };
                    let Some(t) = target
                        .and_then(|t| u64::try_from(i128::from(t) + i128::from(r.addend)).ok())
                        .filter(|&t| {
                            mods.iter()
                                .any(|mm| t >= mm.bases.text && t < mm.bases.text + mm.sizes.text)
                        })
                    else {
                        d.push(
                            &m.obj.path,
                            &m.obj.name,
                            Some(sec.name),
                            "entry does not point to code",
                            "rebuild the object",
                        );
                        continue;
                    };
                    res.at_link += 1;
                    match sec.kind {
                        SecKind::InitArray => init_entries.push((sec.priority, r.offset, rel(t))),
                        SecKind::FiniArray => fini_entries.push((sec.priority, r.offset, rel(t))),
                        _ => {
                            let o = r.offset as usize + 8;
                            let order = sec
                                .data
                                .get(o..o + 8)
                                .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
                            reload_entries.push((order, rel(t)));
                        }
                    }
                    continue;
                }
                _ => {}
            }
            let (buf, base): (&mut [u8], Option<u64>) = match sec.kind {
                SecKind::Text => (&mut *text, Some(m.bases.text)),
                SecKind::Rodata => (&mut *rodata, Some(m.bases.rodata)),
                SecKind::EhFrame => (&mut *eh, Some(m.bases.eh)),
                _ => (&mut *init, None),
            };
            let local = (m.sec_off[si] + r.offset) as usize;
            // The module's GOT base, for the large code model's GOT-relative
            // relocations.
            let got_base = m.bases.rodata + m.sizes.got_at;
            let area_p = base.map(|b| b + m.sec_off[si] + r.offset);
            match calc {
                Calc::GotPc32 | Calc::GotPc64 | Calc::GotEntry32 | Calc::GotEntry64 => {
                    let v = match (calc, area_p) {
                        (Calc::GotPc32 | Calc::GotPc64, Some(p)) => (got_base as i64)
                            .wrapping_add(r.addend)
                            .wrapping_sub(p as i64),
                        (Calc::GotEntry32 | Calc::GotEntry64, _) => match area_of(&s) {
                            Some(entry) => (entry as i64)
                                .wrapping_sub(got_base as i64)
                                .wrapping_add(r.addend),
                            None => {
                                d.push(
                                    &m.obj.path,
                                    &m.obj.name,
                                    Some(sec.name),
                                    "GOT entry missing",
                                    "rebuild the object",
                                );
                                continue;
                            }
                        },
                        _ => {
                            d.push(
                                &m.obj.path,
                                &m.obj.name,
                                Some(sec.name),
                                format!("{} outside code", x86::name(r.r_type)),
                                "only code may address the GOT",
                            );
                            continue;
                        }
                    };
                    if matches!(calc, Calc::GotPc32 | Calc::GotEntry32) {
                        let Ok(v) = i32::try_from(v) else {
                            d.push(
                                &m.obj.path,
                                &m.obj.name,
                                Some(sec.name),
                                format!("{} value exceeds 32 bits", x86::name(r.r_type)),
                                "build with -mcmodel=large for 64-bit GOT offsets",
                            );
                            continue;
                        };
                        buf[local..local + 4].copy_from_slice(&v.to_le_bytes());
                    } else {
                        buf[local..local + 8].copy_from_slice(&v.to_le_bytes());
                    }
                    res.at_link += 1;
                    continue;
                }
                Calc::GotOff64 => {
                    if let Some(sa) = own_area_of(&s) {
                        let v = (sa as i64)
                            .wrapping_add(r.addend)
                            .wrapping_sub(got_base as i64);
                        buf[local..local + 8].copy_from_slice(&v.to_le_bytes());
                        res.at_link += 1;
                        continue;
                    }
                }
                _ => {}
            }
            let kind = match calc {
                Calc::GotOff64 => FixupKind::AreaRel64,
                Calc::GotPc32 | Calc::GotPc64 | Calc::GotEntry32 | Calc::GotEntry64 => continue,
                Calc::Abs64 => FixupKind::Abs64,
                Calc::Pc32 => FixupKind::Pc32,
                Calc::Pc64 => FixupKind::Pc64,
                Calc::Abs32 => FixupKind::Abs32,
                Calc::Abs32S => FixupKind::Abs32S,
                Calc::Size32 | Calc::Size64 => {
                    let v = (match s {
                        S::Abs(v) => v,
                        _ => 0,
                    } as i64)
                        .wrapping_add(r.addend);
                    if calc == Calc::Size32 {
                        buf[local..local + 4].copy_from_slice(&(v as u32).to_le_bytes());
                    } else {
                        buf[local..local + 8].copy_from_slice(&v.to_le_bytes());
                    }
                    res.at_link += 1;
                    continue;
                }
            };
            // P in the area and S in the area with a PC-relative kind: the
            // value is fixed now.
            if let (Some(p), Some(sa), FixupKind::Pc32 | FixupKind::Pc64) =
                (area_p, own_area_of(&s), kind)
            {
                // In i128: a fuzzed addend must not overflow (S + A - P).
                let v = i128::from(sa) + i128::from(r.addend) - i128::from(p);
                if kind == FixupKind::Pc32 {
                    match i32::try_from(v) {
                        Ok(v) => buf[local..local + 4].copy_from_slice(&v.to_le_bytes()),
                        Err(_) => {
                            d.push(
                                &m.obj.path,
                                &m.obj.name,
                                Some(sec.name),
                                "PC-relative displacement exceeds ±2 GiB inside the image",
                                "split the program into smaller images",
                            );
                            continue;
                        }
                    }
                } else {
                    buf[local..local + 8].copy_from_slice(&(v as i64).to_le_bytes());
                }
                res.at_link += 1;
                continue;
            }
            if let (S::Abs(v), FixupKind::Abs64) = (s, kind) {
                buf[local..local + 8]
                    .copy_from_slice(&((v as i64).wrapping_add(r.addend)).to_le_bytes());
                res.at_link += 1;
                continue;
            }
            let Some((class, target, add)) = residual(&s) else {
                d.push(
                    &m.obj.path,
                    &m.obj.name,
                    Some(sec.name),
                    format!("cannot relocate {} here", x86::name(r.r_type)),
                    "build with -fPIC",
                );
                continue;
            };
            // S + A - GOT = S + (A - GOT offset) - area base.
            // (`B` is the segment's start at run time.)
            let got_adjust = if kind == FixupKind::AreaRel64 {
                (got_base - m.bases.text) as i64
            } else {
                0
            };
            let addend = i128::from(add) + i128::from(r.addend) - i128::from(got_adjust);
            let Ok(addend) = i32::try_from(addend) else {
                d.push(
                    &m.obj.path,
                    &m.obj.name,
                    Some(sec.name),
                    "relocation addend exceeds 32 bits",
                    "this image layout is not supported",
                );
                continue;
            };
            // Clear the field: the loader writes the whole value.
            buf[local..local + kind.width()].fill(0);
            match area_p {
                Some(p) => res.fixups.push(Fixup {
                    offset: (p - m.bases.text) as u32,
                    target,
                    addend,
                    kind,
                    class,
                }),
                None => objfix.push(Fixup {
                    offset: r.offset as u32,
                    target,
                    addend,
                    kind,
                    class,
                }),
            }
        }
        if let Some(g) = obj {
            objfix.sort_by_key(|f| f.offset);
            res.objfix.push((g, objfix));
        }
    }
    init_entries.sort_by_key(|&(p, o, _)| (p, o));
    fini_entries.sort_by_key(|&(p, o, _)| (p, o));
    reload_entries.sort_by_key(|&(o, _)| o);
    res.ctors = init_entries.into_iter().map(|e| e.2).collect();
    res.dtors = fini_entries.into_iter().map(|e| e.2).collect();
    res.on_reload = reload_entries.into_iter().map(|e| e.1).collect();
    res.fixups.sort_by_key(|f| f.offset);
    res.diags = d.list;
    res
}
