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

/// A relocation's class, `None` when it writes nothing, or the problem
/// (message, help).
type Class = Result<Option<(Calc, S)>, (String, String)>;

/// Classifies one relocation: how its value is computed and what `S` is.
/// `None` for relocations that write nothing.
pub(crate) fn classify(mods: &[Mod<'_>], mi: u32, sec_idx: usize, r: &crate::parse::Rel) -> Class {
    let m = &mods[mi as usize];
    let sym = &m.obj.symbols[r.sym as usize];
    let tgt = m.tgt[r.sym as usize];
    if let Some(c) = tls::classify(mods, sym, tgt, r) {
        return c;
    }
    if let Some(c) = by_type_alone(r, sym) {
        return c;
    }
    let src = &m.obj.sections[sec_idx];
    if matches!(r.r_type, R_32 | R_32S) && src.kind != SecKind::Skip {
        return unsupported(
            r,
            "absolute 32-bit relocation (the object was built without -fPIC)",
            "compile with -fPIC",
        );
    }
    let at = Ref {
        mods,
        mi,
        src,
        sym,
        r,
        got: matches!(
            r.r_type,
            R_GOTPCREL | R_GOTPCRELX | R_REX_GOTPCRELX | R_GOT64 | R_GOT32 | R_GOTPCREL64
        ),
        calc: calc_of(r.r_type),
    };
    let s = match tgt {
        Tgt::Loc {
            m: tm,
            indirect: true,
            ..
        } => at.indirect(tm)?,
        Tgt::Loc {
            m: tm,
            sec,
            off,
            section_sym,
            ..
        } => at.in_module(tm, sec, off, section_sym)?,
        other => at.elsewhere(other)?,
    };
    Ok(Some((at.calc, s)))
}

fn unsupported(r: &crate::parse::Rel, what: &str, help: &str) -> Class {
    Err((
        format!("{what} ({})", x86::name(r.r_type)),
        help.to_string(),
    ))
}

/// The relocations whose class the type alone decides, and the types
/// refused.
fn by_type_alone(r: &crate::parse::Rel, sym: &Sym<'_>) -> Option<Class> {
    Some(match r.r_type {
        R_NONE => Ok(None),
        R_GOTPC32 => Ok(Some((Calc::GotPc32, S::Abs(0)))),
        R_GOTPC64 => Ok(Some((Calc::GotPc64, S::Abs(0)))),
        R_SIZE32 => Ok(Some((Calc::Size32, S::Abs(sym.size)))),
        R_SIZE64 => Ok(Some((Calc::Size64, S::Abs(sym.size)))),
        R_16 | R_PC16 | R_8 | R_PC8 => unsupported(
            r,
            "relocation type not supported",
            "build with -fPIC for x86-64",
        ),
        R_GOTOFF64 | R_GOT64 | R_GOTPCREL64 | R_PLTOFF64 | R_GOT32 | R_64 | R_PC32 | R_PLT32
        | R_GOTPCREL | R_GOTPCRELX | R_REX_GOTPCRELX | R_32 | R_32S | R_PC64 => return None,
        _ => unsupported(
            r,
            "unsupported relocation type",
            "build with gcc or clang, -fPIC, for x86-64",
        ),
    })
}

/// How the value of a relocation of type `t` (one `by_type_alone` leaves)
/// is computed.
fn calc_of(t: u32) -> Calc {
    match t {
        R_64 => Calc::Abs64,
        R_PC64 | R_GOTPCREL64 => Calc::Pc64,
        R_32 => Calc::Abs32,
        R_32S => Calc::Abs32S,
        R_GOT64 => Calc::GotEntry64,
        R_GOT32 => Calc::GotEntry32,
        R_GOTOFF64 | R_PLTOFF64 => Calc::GotOff64,
        _ => Calc::Pc32,
    }
}

/// One relocation being classified.
struct Ref<'a, 'd> {
    mods: &'a [Mod<'d>],
    mi: u32,
    /// The section it applies to.
    src: &'a crate::parse::Sec<'d>,
    sym: &'a Sym<'d>,
    r: &'a crate::parse::Rel,
    /// It asks for a GOT entry.
    got: bool,
    calc: Calc,
}

impl Ref<'_, '_> {
    fn pc_rel(&self) -> bool {
        matches!(self.calc, Calc::Pc32 | Calc::Pc64)
    }

    /// `S` for a target outside any module's sections.
    fn elsewhere(&self, tgt: Tgt) -> Result<S, (String, String)> {
        let (r, got) = (self.r, self.got);
        Ok(match tgt {
            Tgt::Abs(v) if got => S::Got(GotKey::Abs(v)),
            Tgt::Abs(v) => S::Abs(v),
            Tgt::Host(h) => return self.host(h),
            Tgt::Common(g) if got => S::Got(GotKey::Obj(g, 0)),
            Tgt::Common(g) => S::Obj(g, 0),
            Tgt::Discarded if self.src.kind == SecKind::EhFrame => S::EhEnd,
            Tgt::Discarded => {
                return Err((
                    format!(
                        "reference to a discarded COMDAT section via '{}'",
                        self.sym.name
                    ),
                    "the object is inconsistent; rebuild it".into(),
                ))
            }
            Tgt::Null | Tgt::Loc { .. } => {
                return Err((
                    format!(
                        "relocation against a symbol with no definition ({})",
                        x86::name(r.r_type)
                    ),
                    "the object is malformed; rebuild it".into(),
                ))
            }
        })
    }

    /// `S` for an indirect function of module `tm` (the symbol's): its
    /// permanent address, which runs what its resolver returns, for calls
    /// inside its own module too; the resolver's code is never the target.
    fn indirect(&self, tm: u32) -> Result<S, (String, String)> {
        let tm_mod = &self.mods[tm as usize];
        let Some(k) = tm_mod
            .funcs
            .iter()
            .position(|f| f.indirect && f.name == self.sym.name)
        else {
            return Err((
                format!(
                    "indirect function '{}' outside a code section",
                    self.sym.name
                ),
                "the object is malformed; rebuild it".into(),
            ));
        };
        let f = tm_mod.fn_base + k as u32;
        if self.got {
            Ok(S::Got(GotKey::Func(f)))
        } else if self.pc_rel() && self.src.kind != SecKind::Text {
            Err((
                format!(
                    "relative reference to indirect function '{}' from data ({})",
                    self.sym.name,
                    x86::name(self.r.r_type)
                ),
                "take the function's address in code or through a pointer initialised with it"
                    .into(),
            ))
        } else {
            Ok(S::Func(f, 0))
        }
    }

    /// `S` for a host symbol: through the GOT, a PLT stub, or its address.
    fn host(&self, h: u32) -> Result<S, (String, String)> {
        let r = self.r;
        if self.got {
            Ok(S::Got(GotKey::Host(h)))
        } else if r.r_type == R_PLT32 || r.r_type == R_PLTOFF64 {
            Ok(S::Plt(h))
        } else if (self.pc_rel() || r.r_type == R_GOTOFF64) && self.sym.name != DSO_HANDLE {
            Err((
                format!(
                    "PC-relative reference to host symbol '{}' that the image cannot reach ({})",
                    self.sym.name,
                    x86::name(r.r_type)
                ),
                "compile with -fPIC so the host's data is reached through the GOT".into(),
            ))
        } else {
            Ok(S::Host(h))
        }
    }

    /// `S` for offset `off` in section `sec` of module `tm`.
    fn in_module(
        &self,
        tm: u32,
        sec: u32,
        off: u64,
        section_sym: bool,
    ) -> Result<S, (String, String)> {
        let tm_mod = &self.mods[tm as usize];
        let got = self.got;
        Ok(match tm_mod.obj.sections[sec as usize].kind {
            SecKind::Text => self.in_code(tm, sec, off, section_sym),
            SecKind::Rodata | SecKind::EhFrame if got => S::Got(GotKey::Area { m: tm, sec, off }),
            SecKind::Rodata | SecKind::EhFrame => S::Area { m: tm, sec, off },
            SecKind::Data => {
                let Some(g) = tm_mod.sec_obj[sec as usize] else {
                    // Through the section's symbol (a static variable):
                    // named after the variable at that offset.
                    let what = match self.sym.name {
                        "" => variables_of(&tm_mod.obj, sec),
                        n => format!("'{n}'"),
                    };
                    return Err((
                        format!(
                            "reference to {what} in a data section that holds several variables"
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
                        self.sym.name, tm_mod.obj.sections[sec as usize].name
                    ),
                    "only code, data and read-only data can be referenced".into(),
                ))
            }
        })
    }

    /// The function of section `sec` of module `tm` this reference to
    /// `off` denotes the start of, if any.
    fn function_at(&self, tm: u32, sec: u32, off: u64, section_sym: bool) -> Option<u32> {
        let tm_mod = &self.mods[tm as usize];
        let lo = tm_mod.sec_func_at[sec as usize] as usize;
        let hi = tm_mod.sec_func_at[sec as usize + 1] as usize;
        let in_sec = &tm_mod.sec_funcs[lo..hi];
        let base = tm_mod.fn_base;
        let fn_at = |o: u64| in_sec.iter().find(|f| f.0 == o).map(|f| base + f.1);
        let address_of = self.calc == Calc::Abs64 || self.r.r_type == R_GOTOFF64;
        if !section_sym {
            fn_at(off)
        } else if self.got || address_of {
            let add = if self.got { 0 } else { self.r.addend };
            fn_at((off as i64).wrapping_add(add) as u64)
        } else {
            // PC-relative through a section symbol: the operand address is
            // off + A + 4 + (immediate bytes, 0..4).
            let lo = (off as i64).saturating_add(self.r.addend).saturating_add(4);
            in_sec
                .iter()
                .filter(|f| (f.0 as i64) >= lo && (f.0 as i64) <= lo.saturating_add(4))
                .min_by_key(|f| f.0)
                .map(|f| base + f.1)
        }
    }

    /// `S` for a reference into code: a function's permanent address, the
    /// code itself (same-module branches, tables, unwind records), or a
    /// GOT entry for either.
    fn in_code(&self, tm: u32, sec: u32, off: u64, section_sym: bool) -> S {
        let (r, src, mi) = (self.r, self.src, self.mi);
        let tm_mod = &self.mods[tm as usize];
        let func = self.function_at(tm, sec, off, section_sym);
        let area = S::Area { m: tm, sec, off };
        let fn_at = || self.function_at(tm, sec, off, false);
        let via_func = |f: Option<u32>| match f {
            Some(f) => {
                let fd = &tm_mod.funcs[(f - tm_mod.fn_base) as usize];
                S::Func(f, off as i64 - fd.value as i64)
            }
            None => area,
        };
        if self.got {
            S::Got(match func {
                Some(f) => GotKey::Func(f),
                None => GotKey::Area { m: tm, sec, off },
            })
        } else if src.kind == SecKind::EhFrame {
            area
        } else if r.r_type == R_PLTOFF64 {
            // A call through the GOT base: same module direct, other
            // modules through the trampoline.
            if tm == mi {
                area
            } else {
                via_func(func.or_else(fn_at))
            }
        } else if self.pc_rel() && src.kind != SecKind::Text {
            // Relative tables (jump tables, LSDA) stay in the image.
            area
        } else if self.pc_rel() {
            let branch =
                r.r_type == R_PLT32 || x86::is_branch_displacement(src.data, r.offset as usize);
            if branch && tm == mi {
                area
            } else if branch {
                via_func(func.or_else(fn_at))
            } else {
                via_func(func)
            }
        } else {
            via_func(func)
        }
    }
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
                .filter(|s| s.kind.relocated())
                .map(|s| s.rel_len as usize)
                .sum(),
        ),
    };
    let mut d = Diags::default();
    for (si, sec) in m.obj.sections.iter().enumerate() {
        if !sec.kind.relocated() {
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

/// The variables of data section `sec`, for a reference through its
/// section symbol (whose addend does not say which one: a PC-relative
/// reference's addend also holds the instruction's bias).
fn variables_of(o: &ObjFile<'_>, sec: u32) -> String {
    let names: Vec<&str> = o
        .symbols
        .iter()
        .filter(|s| s.shndx == Shndx::Sec(sec) && !s.name.is_empty())
        .filter(|s| s.typ == object::elf::STT_OBJECT.0 || s.typ == object::elf::STT_TLS.0)
        .map(|s| s.name)
        .collect();
    let sec_name = o.sections[sec as usize].name;
    match names.is_empty() {
        true => format!("a variable of {sec_name}"),
        false => format!("a variable of {sec_name} ({})", names.join(", ")),
    }
}
