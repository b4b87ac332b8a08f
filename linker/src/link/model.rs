//! The linker's model of the inputs: modules, their definitions and
//! resolved symbols, relocation classes, layout and the applied result.

use super::*;

/// A function of one module.
pub(crate) struct FnDef<'d> {
    pub(crate) sec: u32,
    pub(crate) value: u64,
    pub(crate) size: u64,
    pub(crate) name: &'d str,
    pub(crate) global: bool,
    /// Hidden visibility: not exported to plugins.
    pub(crate) hidden: bool,
    /// `STT_GNU_IFUNC`: `value` is the resolver's entry. Never found by
    /// address (`sec_funcs`): only references to its symbol reach it.
    pub(crate) indirect: bool,
}

/// A writable object of one module: a data section, or a COMMON symbol.
pub(crate) struct ObjDef<'d> {
    pub(crate) sec: Option<u32>,
    pub(crate) name: &'d str,
    pub(crate) size: u64,
    pub(crate) align: u64,
    pub(crate) global: bool,
    /// Hidden visibility: not exported to plugins.
    pub(crate) hidden: bool,
    pub(crate) tls: bool,
}

/// A module after parsing, with its ids and layout.
pub(crate) struct Mod<'d> {
    pub obj: ObjFile<'d>,
    pub hash: u64,
    /// The kept parse this module was cloned from (input files linked
    /// through an `InputCache`; see `reuse.rs`).
    pub(crate) parsed: Option<&'d std::sync::Arc<crate::parsed::Parsed>>,
    pub(crate) fn_base: u32,
    pub(crate) funcs: Vec<FnDef<'d>>,
    /// Compiler clones of functions (`f.constprop.0`, `f.isra.0`,
    /// `f.part.0`; not cold parts, `f.cold`): named code without a
    /// permanent address, listed so crash reports and profilers name it.
    pub(crate) clones: Vec<FnDef<'d>>,
    /// Functions by section, `(offset, index in funcs)`: those of section
    /// `s` are `sec_funcs[sec_func_at[s]..sec_func_at[s + 1]]` (usually one).
    pub(crate) sec_funcs: Vec<(u64, u32)>,
    pub(crate) sec_func_at: Vec<u32>,
    pub(crate) obj_base: u32,
    pub(crate) objs: Vec<ObjDef<'d>>,
    /// Global object id of each data section.
    pub(crate) sec_obj: Vec<Option<u32>>,
    /// Global object id of each COMMON symbol this module owns.
    pub(crate) common_obj: HashMap<u32, u32>,
    /// Resolved target of each symbol.
    pub(crate) tgt: Vec<Tgt>,
    pub imports: Vec<u32>,
    /// Offset of each loaded section in its region (text/rodata/eh/init).
    pub sec_off: Vec<u64>,
    pub(crate) got: Vec<GotKey>,
    pub(crate) got_index: HashMap<GotKey, u32>,
    pub(crate) plt: Vec<u32>,
    pub(crate) plt_index: HashMap<u32, u32>,
    /// Relocation classes from the scan (see `ScanOut::classes`).
    pub(crate) classes: Vec<Option<(Calc, S)>>,
    pub(crate) sizes: RegionSizes,
    pub bases: RegionSizes,
    pub(crate) undefined: Vec<u32>,
    /// For each symbol: true when it is the definition the image uses.
    pub(crate) own_def: Vec<bool>,
    /// For each global symbol: the `(module, symbol)` of the definition in
    /// use ([`NO_DEF`] for locals and names no module defines).
    pub global_def: Vec<(u32, u32)>,
    /// Host index of the TLS descriptor resolver (when a module uses one).
    pub(crate) tlsdesc_host: u32,
}

impl Mod<'_> {
    pub(crate) fn plt_at(&self) -> u64 {
        self.sizes.plt_at
    }
    pub(crate) fn got_at(&self) -> u64 {
        self.sizes.got_at
    }
    pub(crate) fn bases_plt_len(&self) -> u64 {
        self.plt.len() as u64 * PLT_STUB_SIZE
    }
    pub(crate) fn bases_got_len(&self) -> u64 {
        self.got.len() as u64 * 8
    }
    /// The host symbol (index in the manifest's host list) symbol `si`
    /// resolves to, if any.
    pub(crate) fn host_of(&self, si: usize) -> Option<u32> {
        match self.tgt.get(si) {
            Some(Tgt::Host(h)) => Some(*h),
            _ => None,
        }
    }
    /// True when global symbol `si` of this module is the definition in use.
    pub(crate) fn is_own_definition(&self, si: usize) -> bool {
        self.own_def.get(si).copied().unwrap_or(false)
    }
    /// Where symbol `si` of this module lies, for a debug section's
    /// reference to it (see `debug.rs`).
    pub(crate) fn debug_place(&self, mods: &[Mod<'_>], mi: u32, si: usize) -> DebugPlace {
        match self.tgt.get(si) {
            Some(&Tgt::Loc { m, sec, off, .. }) => {
                let tm = &mods[m as usize];
                match tm.obj.sections[sec as usize].kind {
                    SecKind::Data => match tm.sec_obj[sec as usize] {
                        Some(g) => DebugPlace::Object(g, off),
                        None => DebugPlace::None,
                    },
                    SecKind::Debug if m == mi => DebugPlace::Debug(sec, off),
                    _ => match sec_area_offset(tm, sec as usize) {
                        Some(a) => DebugPlace::Area(a + off),
                        None => DebugPlace::None,
                    },
                }
            }
            Some(&Tgt::Common(g)) => DebugPlace::Object(g, 0),
            Some(&Tgt::Abs(v)) => DebugPlace::Abs(v),
            _ => DebugPlace::None,
        }
    }
}

/// Where a debug section's reference points.
pub(crate) enum DebugPlace {
    /// An area offset (code, read-only data, unwind tables).
    Area(u64),
    /// Object id and offset inside it.
    Object(u32, u64),
    /// A section of the same module and the offset in it.
    Debug(u32, u64),
    /// An absolute value.
    Abs(u64),
    /// Nothing loaded (discarded, host, thread-local): the field becomes 0.
    None,
}

/// Sizes (before layout) or bases (after) of a module's four regions.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct RegionSizes {
    pub text: u64,
    pub rodata: u64,
    pub eh: u64,
    pub init: u64,
    pub(crate) text_align: u64,
    pub(crate) rodata_align: u64,
    pub(crate) init_align: u64,
    /// Where the stubs start (text) and the GOT starts (rodata), module-relative.
    pub plt_at: u64,
    pub got_at: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tgt {
    Null,
    Loc {
        m: u32,
        sec: u32,
        off: u64,
        section_sym: bool,
        /// The symbol is an indirect function's (`STT_GNU_IFUNC`).
        indirect: bool,
    },
    Host(u32),
    Abs(u64),
    Common(u32),
    /// In a COMDAT section another module provides; only `.eh_frame` may
    /// refer to it (the FDE is pointed at a place no code runs).
    Discarded,
}

/// The symbol C++ code passes to `__cxa_atexit` to name its shared object;
/// hidden, so compilers reach it PC-relative even under -fPIC. The runtime
/// defines it inside the window (one permanent address for every image, so
/// destructors registered by any load run at shutdown), which keeps it in
/// reach.
pub(crate) const DSO_HANDLE: &str = "__dso_handle";

/// The `S` of one relocation after classification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum S {
    Area {
        m: u32,
        sec: u32,
        off: u64,
    },
    /// A function's permanent address; `delta` is added to the addend (a
    /// reference through a section symbol names the function's start
    /// indirectly).
    Func(u32, i64),
    Obj(u32, u64),
    Host(u32),
    Abs(u64),
    Got(GotKey),
    Plt(u32),
    EhEnd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum GotKey {
    Area {
        m: u32,
        sec: u32,
        off: u64,
    },
    Func(u32),
    Obj(u32, u64),
    Host(u32),
    Abs(u64),
    /// TLS pairs (`link/tls.rs`): `tls_index` of a variable, of the block
    /// (local dynamic), and TLS descriptors; each first word is followed by
    /// its second.
    TlsGd(u32, u64),
    TlsGdOff(u32, u64),
    TlsLd,
    TlsLdOff,
    TlsDesc(u32, u64),
    TlsDescArg(u32, u64),
    TlsDescBase,
    TlsDescBaseArg,
}

/// How a relocation's value is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Calc {
    Abs64,
    Pc32,
    Pc64,
    Abs32,
    Abs32S,
    Size32,
    Size64,
    /// `GOT + A - P` (large model: the module's GOT base, PC-relative).
    GotPc32,
    GotPc64,
    /// `G + A`: offset of S's GOT entry from the GOT base.
    GotEntry32,
    GotEntry64,
    /// `S + A - GOT` (`GOTOFF64`, and `PLTOFF64` with S a callable address).
    GotOff64,
}

pub(crate) struct GlobalDef {
    pub(crate) m: u32,
    pub(crate) sym: u32,
    pub(crate) strength: u8,
}

pub(crate) const STRONG: u8 = 2;

pub(crate) const COMMON: u8 = 1;

pub(crate) const WEAK: u8 = 0;

/// A symbol left to the host: name and whether every reference is weak.
pub(crate) struct Host<'d> {
    pub(crate) name: &'d str,
    pub(crate) weak: bool,
}

/// Where the area's modules and the init blob lie.
pub(crate) struct AreaLayout {
    pub layout: Layout,
    pub area_file_size: u64,
    pub init_size: u64,
    /// Each module's segment in the area: `[start, end)`.
    pub segs: Vec<(u64, u64)>,
}

/// Fixups and statistics produced while applying relocations.
pub(crate) struct Applied {
    /// The load area, laid out, with every link-time relocation applied.
    pub area: Vec<u8>,
    /// Initial bytes of the writable objects, relocated likewise.
    pub init: Vec<u8>,
    pub fixups: Vec<Fixup>,
    pub module_fixups: Vec<Span>,
    pub object_fixups: Vec<Fixup>,
    pub object_fixup_spans: Vec<Span>,
    /// Each module's range of `object_fixups` (its objects' together).
    pub module_object_fixups: Vec<Span>,
    pub relocations: u64,
    pub at_link: u64,
    pub ctors: Vec<Vec<u32>>,
    pub dtors: Vec<Vec<u32>>,
    pub on_reload: Vec<Vec<u32>>,
}

/// Area offset of a section of a module.
pub(crate) fn sec_area_offset(m: &Mod<'_>, sec: usize) -> Option<u64> {
    let s = &m.obj.sections[sec];
    Some(match s.kind {
        SecKind::Text => m.bases.text + m.sec_off[sec],
        SecKind::Rodata => m.bases.rodata + m.sec_off[sec],
        SecKind::EhFrame => m.bases.eh + m.sec_off[sec],
        _ => return None,
    })
}

/// Maps `items` in order: those `heavy` picks in parallel, the rest on this
/// thread. (A relink takes most per-module work over from the previous
/// link; a parallel pass over work that is mostly a move costs more in
/// thread wake-ups than it saves.)
pub(crate) fn map_mixed<T: Send, R: Send>(
    items: Vec<T>,
    heavy: impl Fn(&T) -> bool,
    f: impl Fn(usize, T) -> R + Sync,
) -> Vec<R> {
    let mut out: Vec<Option<R>> = Vec::with_capacity(items.len());
    let mut todo = Vec::new();
    for (i, t) in items.into_iter().enumerate() {
        if heavy(&t) {
            out.push(None);
            todo.push((i, t));
        } else {
            out.push(Some(f(i, t)));
        }
    }
    let done: Vec<(usize, R)> = todo.into_par_iter().map(|(i, t)| (i, f(i, t))).collect();
    for (i, r) in done {
        out[i] = Some(r);
    }
    out.into_iter().flatten().collect()
}

pub(crate) fn align_up(x: u64, a: u64) -> u64 {
    let a = a.max(1);
    x.div_ceil(a) * a
}

/// `Mod::global_def` of a symbol that no module defines.
pub(crate) const NO_DEF: (u32, u32) = (u32::MAX, u32::MAX);

/// Logs how long each pass took when `--timings` is on.
pub(crate) struct Timer {
    on: bool,
    last: std::time::Instant,
}

impl Timer {
    /// Starts timing; prints nothing unless `on`.
    pub(crate) fn new(on: bool) -> Timer {
        Timer {
            on,
            last: std::time::Instant::now(),
        }
    }

    pub(crate) fn lap(&mut self, pass: &str) {
        if self.on {
            let now = std::time::Instant::now();
            use std::io::Write as _;
            // Not `eprintln!`: a link server's client may have closed it.
            let _ = writeln!(
                std::io::stderr(),
                "hcr-link: {pass:<28} {:>8.2} ms",
                (now - self.last).as_secs_f64() * 1e3
            );
            self.last = now;
        }
    }
}
