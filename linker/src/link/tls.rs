//! Thread-local variables: how their x86-64 access sequences are linked.
//!
//! A thread-local variable is a writable object like a global (one per
//! `.tdata.<v>`/`.tbss.<v>` section, identity `(module, name)`), flagged
//! `tls` in the manifest. The runtime gives it an *offset* in a per-thread
//! block instead of an address; that offset is what the loader's tables
//! hold for it, so every TLS relocation is an ordinary object fixup:
//!
//! * general dynamic (`R_X86_64_TLSGD`): a GOT pair `{TLS_MODULE, offset}`
//!   passed to `__tls_get_addr`, which the runtime defines for images;
//! * local dynamic (`R_X86_64_TLSLD`): the pair `{TLS_MODULE, 0}` yields
//!   the block's start; `R_X86_64_DTPOFF32/64` are each variable's offset;
//! * TLS descriptors (`R_X86_64_GOTPC32_TLSDESC`, `-mtls-dialect=gnu2`): a
//!   GOT pair `{resolver, offset}`, the resolver being the runtime's
//!   [`hcr_image::TLSDESC_RESOLVER`]; `R_X86_64_TLSDESC_CALL` writes nothing;
//! * `R_X86_64_DTPMOD64` in data: [`TLS_MODULE`].
//!
//! Initial-exec and local-exec (`GOTTPOFF`, `TPOFF32/64`) need the variable
//! at a fixed distance from the thread pointer, in glibc's static TLS block,
//! which only `ld.so` lays out: they are refused, naming the variable.

use hcr_image::TLS_MODULE;

use super::{Calc, GotKey, Host, Mod, Tgt, S};
use crate::arch::x86_64::{self as x86, *};

/// The symbol gcc's local-dynamic descriptor sequences name: the start of
/// the module's TLS block, which a static linker defines. Here: offset 0 of
/// the image's block.
pub(super) const MODULE_BASE: &str = "_TLS_MODULE_BASE_";

type Class = Result<Option<(Calc, S)>, (String, String)>;

/// Classifies `r` when it is a TLS relocation or refers to a thread-local
/// variable; `None` for everything else.
pub(super) fn classify(
    mods: &[Mod<'_>],
    sym: &crate::parse::Sym<'_>,
    tgt: Tgt,
    r: &crate::parse::Rel,
) -> Option<Class> {
    fn err<T>(what: &str, help: &str) -> Result<T, (String, String)> {
        Err((what.to_string(), help.to_string()))
    }
    let tls_target = |tgt: Tgt| match tgt {
        Tgt::Loc { m, sec, off, .. } => {
            let tm = &mods[m as usize];
            tm.obj.sections[sec as usize]
                .is_tls()
                .then(|| (tm.sec_obj[sec as usize], off))
        }
        _ => None,
    };
    let var = || -> Result<(u32, u64), (String, String)> {
        match (tls_target(tgt), tgt) {
            (Some((Some(g), off)), _) => Ok((g, off)),
            (Some((None, _)), _) => err(
                "thread-local section holding several variables",
                "compile with -fdata-sections",
            ),
            (None, Tgt::Host(_)) => err(
                "thread-local variable defined outside the image (in the host or a shared library)",
                "define the variable in a module, or reach it through a function of the host",
            ),
            _ => err(
                "thread-local relocation against a variable that is not thread-local",
                "the object is inconsistent; rebuild it",
            ),
        }
    };
    Some(match r.r_type {
        R_TPOFF32 | R_GOTTPOFF | R_TPOFF64 => err(
            &format!(
                "thread-local variable in the initial-exec or local-exec model ({}), which only ld.so can serve",
                x86::name(r.r_type)
            ),
            "compile with -fPIC and without -ftls-model=initial-exec/local-exec (general-dynamic, local-dynamic and -mtls-dialect=gnu2 work)",
        ),
        R_TLSGD => var().map(|(g, off)| Some((Calc::Pc32, S::Got(GotKey::TlsGd(g, off))))),
        R_TLSLD => Ok(Some((Calc::Pc32, S::Got(GotKey::TlsLd)))),
        R_DTPOFF32 => var().map(|(g, off)| Some((Calc::Abs32S, S::Obj(g, off)))),
        R_DTPOFF64 => var().map(|(g, off)| Some((Calc::Abs64, S::Obj(g, off)))),
        R_DTPMOD64 => Ok(Some((Calc::Abs64, S::Abs(TLS_MODULE)))),
        // Local dynamic with descriptors: the block's start, then DTPOFF.
        R_GOTPC32_TLSDESC if sym.name == MODULE_BASE => {
            Ok(Some((Calc::Pc32, S::Got(GotKey::TlsDescBase))))
        }
        R_GOTPC32_TLSDESC => {
            var().map(|(g, off)| Some((Calc::Pc32, S::Got(GotKey::TlsDesc(g, off)))))
        }
        R_TLSDESC_CALL => Ok(None),
        R_TLSDESC => err(
            "TLS descriptor in data (R_X86_64_TLSDESC)",
            "compile with -fPIC for x86-64 with gcc or clang",
        ),
        _ if tls_target(tgt).is_some() => err(
            &format!(
                "address of a thread-local variable taken without a TLS sequence ({})",
                x86::name(r.r_type)
            ),
            "the object is inconsistent; rebuild it with -fPIC",
        ),
        _ => return None,
    })
}

/// The second GOT word of a TLS pair whose first word is `k`: the two are
/// allocated together, in this order.
pub(super) fn pair_second(k: GotKey) -> Option<GotKey> {
    match k {
        GotKey::TlsGd(g, off) => Some(GotKey::TlsGdOff(g, off)),
        GotKey::TlsLd => Some(GotKey::TlsLdOff),
        GotKey::TlsDesc(g, off) => Some(GotKey::TlsDescArg(g, off)),
        GotKey::TlsDescBase => Some(GotKey::TlsDescBaseArg),
        _ => None,
    }
}

/// What a TLS GOT word holds: a constant, or `S` (the variable's offset,
/// or the descriptor resolver); `None` for other keys.
pub(super) fn got_word(k: GotKey, m: &Mod<'_>) -> Option<Result<u64, S>> {
    Some(match k {
        GotKey::TlsGd(..) | GotKey::TlsLd => Ok(TLS_MODULE),
        GotKey::TlsLdOff | GotKey::TlsDescBaseArg => Ok(0),
        GotKey::TlsGdOff(g, off) | GotKey::TlsDescArg(g, off) => Err(S::Obj(g, off)),
        GotKey::TlsDesc(..) | GotKey::TlsDescBase => Err(S::Host(m.tlsdesc_host)),
        _ => return None,
    })
}

/// Adds the descriptor resolver to the host symbols when a module uses TLS
/// descriptors (known once the relocations are scanned), and tells every
/// module its index.
pub(super) fn add_resolver_host(mods: &mut [Mod<'_>], hosts: &mut Vec<Host<'_>>) {
    let used = mods.iter().any(|m| {
        m.got
            .iter()
            .any(|k| matches!(k, GotKey::TlsDesc(..) | GotKey::TlsDescBase))
    });
    if !used {
        return;
    }
    let h = hosts.len() as u32;
    hosts.push(Host {
        name: hcr_image::TLSDESC_RESOLVER,
        weak: false,
    });
    for m in mods {
        m.tlsdesc_host = h;
    }
}
