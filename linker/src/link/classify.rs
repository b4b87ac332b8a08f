//! Pass 7: classify every relocation (what it refers to, how it is
//! applied) and find the GOT entries and PLT stubs each module needs.

use super::*;

pub(crate) struct ScanOut {
    pub(crate) got: Vec<GotKey>,
    pub(crate) got_index: HashMap<GotKey, u32>,
    pub(crate) plt: Vec<u32>,
    pub(crate) plt_index: HashMap<u32, u32>,
    /// The classification of every relocation of the loaded sections, in
    /// section and relocation order, so the apply pass does not redo it.
    pub(crate) classes: Vec<Option<(Calc, S)>>,
}

/// Classifies one relocation: how its value is computed and what `S` is.
/// `None` for relocations that write nothing.
pub(crate) fn classify(
    mods: &[Mod<'_>],
    mi: u32,
    sec_idx: usize,
    r: &crate::parse::Rel,
) -> Result<Option<(Calc, S)>, (String, String)> {
    let m = &mods[mi as usize];
    let src = &m.obj.sections[sec_idx];
    let sym = &m.obj.symbols[r.sym as usize];
    let tgt = m.tgt[r.sym as usize];
    let unsupported = |what: &str, help: &str| {
        Err((
            format!("{what} ({})", x86::name(r.r_type)),
            help.to_string(),
        ))
    };
    if let Some(c) = tls::classify(mods, sym, tgt, r) {
        return c;
    }
    match r.r_type {
        R_NONE => return Ok(None),
        R_GOTPC32 => return Ok(Some((Calc::GotPc32, S::Abs(0)))),
        R_GOTPC64 => return Ok(Some((Calc::GotPc64, S::Abs(0)))),
        R_GOTOFF64 | R_GOT64 | R_GOTPCREL64 | R_PLTOFF64 | R_GOT32 => {}
        R_16 | R_PC16 | R_8 | R_PC8 => {
            return unsupported(
                "relocation type not supported",
                "build with -fPIC for x86-64",
            )
        }
        R_SIZE32 | R_SIZE64 => {
            let calc = if r.r_type == R_SIZE32 {
                Calc::Size32
            } else {
                Calc::Size64
            };
            return Ok(Some((calc, S::Abs(sym.size))));
        }
        R_64 | R_PC32 | R_PLT32 | R_GOTPCREL | R_GOTPCRELX | R_REX_GOTPCRELX | R_32 | R_32S
        | R_PC64 => {}
        _ => {
            return unsupported(
                "unsupported relocation type",
                "build with gcc or clang, -fPIC, for x86-64",
            )
        }
    }
    if matches!(r.r_type, R_32 | R_32S) && src.kind != SecKind::Skip {
        return unsupported(
            "absolute 32-bit relocation (the object was built without -fPIC)",
            "compile with -fPIC",
        );
    }
    let got = matches!(
        r.r_type,
        R_GOTPCREL | R_GOTPCRELX | R_REX_GOTPCRELX | R_GOT64 | R_GOT32 | R_GOTPCREL64
    );
    let calc = match r.r_type {
        R_64 => Calc::Abs64,
        R_PC64 | R_GOTPCREL64 => Calc::Pc64,
        R_32 => Calc::Abs32,
        R_32S => Calc::Abs32S,
        R_GOT64 => Calc::GotEntry64,
        R_GOT32 => Calc::GotEntry32,
        R_GOTOFF64 | R_PLTOFF64 => Calc::GotOff64,
        _ => Calc::Pc32,
    };
    let pc_rel = matches!(calc, Calc::Pc32 | Calc::Pc64);
    // An address operand (not a branch) that yields a symbol's address.
    let address_of = calc == Calc::Abs64 || r.r_type == R_GOTOFF64;
    let s = match tgt {
        Tgt::Null => {
            return Err((
                format!(
                    "relocation against a symbol with no definition ({})",
                    x86::name(r.r_type)
                ),
                "the object is malformed; rebuild it".into(),
            ))
        }
        Tgt::Abs(v) if got => S::Got(GotKey::Abs(v)),
        Tgt::Abs(v) => S::Abs(v),
        Tgt::Host(h) => {
            if got {
                S::Got(GotKey::Host(h))
            } else if r.r_type == R_PLT32 || r.r_type == R_PLTOFF64 {
                S::Plt(h)
            } else if (pc_rel || r.r_type == R_GOTOFF64) && sym.name != DSO_HANDLE {
                return Err((
                    format!("PC-relative reference to host symbol '{}' that the image cannot reach ({})", sym.name, x86::name(r.r_type)),
                    "compile with -fPIC so the host's data is reached through the GOT".into(),
                ));
            } else {
                S::Host(h)
            }
        }
        Tgt::Common(g) => {
            if got {
                S::Got(GotKey::Obj(g, 0))
            } else {
                S::Obj(g, 0)
            }
        }
        Tgt::Discarded => {
            if src.kind == SecKind::EhFrame {
                S::EhEnd
            } else {
                return Err((
                    format!("reference to a discarded COMDAT section via '{}'", sym.name),
                    "the object is inconsistent; rebuild it".into(),
                ));
            }
        }
        Tgt::Loc {
            m: tm,
            sec,
            off,
            section_sym,
        } => {
            let tm_mod = &mods[tm as usize];
            let tkind = tm_mod.obj.sections[sec as usize].kind;
            match tkind {
                SecKind::Text => {
                    let lo = tm_mod.sec_func_at[sec as usize] as usize;
                    let hi = tm_mod.sec_func_at[sec as usize + 1] as usize;
                    let in_sec = &tm_mod.sec_funcs[lo..hi];
                    let base = tm_mod.fn_base;
                    let fn_at = |o: u64| in_sec.iter().find(|f| f.0 == o).map(|f| base + f.1);
                    // The function this reference denotes, if it denotes the
                    // start of one.
                    let func = if !section_sym {
                        fn_at(off)
                    } else if got || address_of {
                        fn_at((off as i64).wrapping_add(if got { 0 } else { r.addend }) as u64)
                    } else {
                        // PC-relative through a section symbol: the operand
                        // address is off + A + 4 + (immediate bytes, 0..4).
                        let lo = (off as i64).saturating_add(r.addend).saturating_add(4);
                        in_sec
                            .iter()
                            .filter(|f| (f.0 as i64) >= lo && (f.0 as i64) <= lo.saturating_add(4))
                            .min_by_key(|f| f.0)
                            .map(|f| base + f.1)
                    };
                    let area = S::Area { m: tm, sec, off };
                    let via_func = |f: Option<u32>| match f {
                        Some(f) => {
                            let fd = &tm_mod.funcs[(f - tm_mod.fn_base) as usize];
                            S::Func(f, off as i64 - fd.value as i64)
                        }
                        None => area,
                    };
                    if got {
                        S::Got(match func {
                            Some(f) => GotKey::Func(f),
                            None => GotKey::Area { m: tm, sec, off },
                        })
                    } else if src.kind == SecKind::EhFrame {
                        area
                    } else if r.r_type == R_PLTOFF64 {
                        // A call through the GOT base: same module direct,
                        // other modules through the trampoline.
                        if tm == mi {
                            area
                        } else {
                            via_func(func.or_else(|| fn_at(off)))
                        }
                    } else if pc_rel && src.kind != SecKind::Text {
                        // Relative tables (jump tables, LSDA) stay in the image.
                        area
                    } else if pc_rel {
                        let branch = r.r_type == R_PLT32
                            || x86::is_branch_displacement(src.data, r.offset as usize);
                        if branch && tm == mi {
                            area
                        } else if branch {
                            via_func(func.or_else(|| fn_at(off)))
                        } else {
                            via_func(func)
                        }
                    } else {
                        via_func(func)
                    }
                }
                SecKind::Rodata | SecKind::EhFrame => {
                    let k = S::Area { m: tm, sec, off };
                    if got {
                        S::Got(GotKey::Area { m: tm, sec, off })
                    } else {
                        k
                    }
                }
                SecKind::Data => {
                    let Some(g) = tm_mod.sec_obj[sec as usize] else {
                        return Err((
                            format!(
                                "reference to '{}' in a data section that holds several variables",
                                sym.name
                            ),
                            "compile with -fdata-sections".into(),
                        ));
                    };
                    if got {
                        S::Got(GotKey::Obj(g, off))
                    } else {
                        S::Obj(g, off)
                    }
                }
                SecKind::Discarded => S::EhEnd,
                _ => {
                    return Err((
                        format!(
                            "reference to '{}' in section {} which is not loaded",
                            sym.name, tm_mod.obj.sections[sec as usize].name
                        ),
                        "only code, data and read-only data can be referenced".into(),
                    ))
                }
            }
        }
    };
    Ok(Some((calc, s)))
}

pub(crate) fn scan_module(mi: u32, mods: &[Mod<'_>]) -> Result<ScanOut, Vec<Diagnostic>> {
    let m = &mods[mi as usize];
    let mut out = ScanOut {
        got: Vec::new(),
        got_index: HashMap::default(),
        plt: Vec::new(),
        plt_index: HashMap::default(),
        classes: Vec::with_capacity(
            m.obj
                .sections
                .iter()
                .filter(|s| !matches!(s.kind, SecKind::Skip | SecKind::Discarded | SecKind::Debug))
                .map(|s| s.rel_len as usize)
                .sum(),
        ),
    };
    let mut d = Diags::default();
    for (si, sec) in m.obj.sections.iter().enumerate() {
        if matches!(
            sec.kind,
            SecKind::Skip | SecKind::Discarded | SecKind::Debug
        ) {
            continue;
        }
        for r in m.obj.relocs(sec) {
            let c = classify(mods, mi, si, r);
            out.classes.push(c.as_ref().ok().copied().flatten());
            match c {
                Ok(Some((_, s))) => {
                    let add_got = |k: GotKey, out: &mut ScanOut| {
                        if !out.got_index.contains_key(&k) {
                            for k in std::iter::once(k).chain(tls::pair_second(k)) {
                                out.got_index.insert(k, out.got.len() as u32);
                                out.got.push(k);
                            }
                        }
                    };
                    match s {
                        S::Got(k) => add_got(k, &mut out),
                        S::Plt(h) => {
                            add_got(GotKey::Host(h), &mut out);
                            if !out.plt_index.contains_key(&h) {
                                out.plt_index.insert(h, out.plt.len() as u32);
                                out.plt.push(h);
                            }
                        }
                        _ => {}
                    }
                }
                Ok(None) => {}
                Err((msg, help)) => {
                    let sym = &m.obj.symbols[r.sym as usize];
                    let name = if sym.typ == object::elf::STT_SECTION.0 {
                        format!("{}+{:#x}", sec.name, r.offset)
                    } else {
                        format!("{} (in {}+{:#x})", sym.name, sec.name, r.offset)
                    };
                    d.push(&m.obj.path, &m.obj.name, Some(&name), msg, help);
                }
            }
        }
        if sec.kind == SecKind::EhFrame && sec.size % 4 != 0 {
            d.push(
                &m.obj.path,
                &m.obj.name,
                Some(sec.name),
                "malformed .eh_frame (size not a multiple of 4)",
                "rebuild the object",
            );
        }
    }
    // Keep one diagnostic per distinct message and symbol name.
    d.list
        .dedup_by(|a, b| a.message == b.message && a.symbol == b.symbol);
    if d.list.is_empty() {
        Ok(out)
    } else {
        Err(d.list)
    }
}
