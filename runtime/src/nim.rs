//! Nim modules (hcr's module name `@m….nim`): Nim initialises a module in
//! `atm<module>dotnim_DatInit000` (refc's run-time type info, GC roots) and
//! `atm<module>dotnim_Init000` (globals with run-time initialisers and the
//! top-level statements), called from the main module's `PreMain`, not as
//! constructors. So a Nim module that joins in a reload gets both run, in
//! the order Nim runs them (every `DatInit000` of the added modules, then
//! every `Init000`, in top-level order), and that runs its
//! `executeOnReload` blocks in place: its on-reload entries are not run as
//! well. A changed Nim module's `DatInit000` runs again too (before the
//! on-reload entries): it only assigns refc's type info, the same values for
//! old types, and fills in the new types'. At the image's first load
//! `PreMain` does all of this.
//!
//! A changed Nim module whose `Init000` hcr-link rewrote (it then has
//! `atm…HcrReinit000`, see the tools' `nim_init`) gets that entry run in
//! a reload, in init order after the DatInits: it runs the initialisers of
//! the globals new in this reload (asking [`hcr_nim_new_globals`]) and
//! nothing else. The runtime warns about each new global of a changed Nim
//! module that Nim initialises at run time and no such entry initialised.

use std::ffi::{c_int, c_void};

use hcr_image::{Manifest, Module};

/// True for hcr's name of a module compiled from Nim.
pub fn is_nim_module(name: &str) -> bool {
    name.starts_with("@m") && name.ends_with(".nim")
}

/// Area offsets of the module's `DatInit000` and of what initialises it in
/// a reload: `Init000` when ADDED, else (changed) `HcrReinit000` if the
/// module has one.
pub fn init_functions(m: &Manifest, md: &Module, added: bool) -> (Option<u32>, Option<u32>) {
    let mut dat = None;
    let mut init = None;
    let wanted = if added {
        "dotnim_Init000"
    } else {
        "dotnim_HcrReinit000"
    };
    for f in md.functions.range().map(|i| &m.functions[i]) {
        let name = m.str(f.name);
        if !name.starts_with("atm") {
            continue;
        }
        if name.ends_with("dotnim_DatInit000") {
            dat = Some(f.offset);
        } else if name.ends_with(wanted) {
            init = Some(f.offset);
        }
    }
    (dat, init)
}

/// The reload in progress: globals new in it (addresses; changed Nim
/// modules' `HcrReinit000` asks about them), which of them an entry
/// initialised, and the ones to warn about if none did.
#[derive(Default)]
struct Reinit {
    new: std::collections::HashSet<usize>,
    initialised: std::collections::HashSet<usize>,
    /// `(address, module, identity)` of run-time-initialised new globals.
    watch: Vec<(usize, String, String)>,
}

static REINIT: std::sync::Mutex<Option<Reinit>> = std::sync::Mutex::new(None);

fn reinit() -> std::sync::MutexGuard<'static, Option<Reinit>> {
    REINIT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Called by a rewritten `Init000` in a reload: 1 when every one of the N
/// addresses at GLOBALS is a global new in this reload (its initialiser
/// then runs), else 0.
///
/// # Safety
/// GLOBALS points to N pointers (a C array the caller owns).
#[no_mangle]
pub unsafe extern "C" fn hcr_nim_new_globals(n: c_int, globals: *const *const c_void) -> c_int {
    let Ok(n) = usize::try_from(n) else {
        return 0;
    };
    if globals.is_null() || n == 0 {
        return 0;
    }
    // SAFETY: the caller passes N pointers (see the function's contract).
    let gs = unsafe { std::slice::from_raw_parts(globals, n) };
    let mut g = reinit();
    let Some(r) = g.as_mut() else {
        return 0;
    };
    if !gs.iter().all(|&p| r.new.contains(&(p as usize))) {
        return 0;
    }
    r.initialised.extend(gs.iter().map(|&p| p as usize));
    1
}

/// The entries of NEW (`(C name, identity)` of globals new in a reload of a
/// changed Nim module) that Nim initialises at run time: named in the
/// module's `Init000` in its C file at `c_path` (`X.c` beside `X.c.o`).
/// Their initialisers do not run in a reload (Nim's C output mixes them
/// with the top-level statements), so the runtime warns about each.
pub fn runtime_initialised<'a>(c_path: &str, new: &[(&'a str, &'a str)]) -> Vec<&'a str> {
    let Ok(text) = std::fs::read_to_string(c_path) else {
        return Vec::new();
    };
    // hcr-link's rewrite of `Init000` (see the tools' `nim_init`), Nim's,
    // or the main module's `NimMainModule`.
    let start = text
        .find("HcrInitBody000)(int hcrReinit_) {")
        .or_else(|| text.find("dotnim_Init000)(void) {"))
        .or_else(|| text.find("N_NIMCALL(void, NimMainModule)(void) {"));
    let Some(start) = start else {
        return Vec::new();
    };
    let body = &text[start..];
    let body = &body[..body.find("\n}\n").unwrap_or(body.len())];
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    // Nim's globals are `name__module_N` (type info `NTI…_` is DatInit's).
    // (`TM__…_N` are Nim's literals and constant tables, initialised statically.)
    // (`colontmp…` and `…X60gensym…` are the compiler's and templates'
    // hidden variables: a statement that is not a declaration sets them.)
    let nim_global = |c: &str| {
        !c.starts_with("TM__")
            && !c.starts_with("colontmp")
            && !c.contains("X60gensym")
            && c.rsplit_once('_').is_some_and(|(stem, n)| {
                stem.contains("__") && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
            })
    };
    new.iter()
        .filter(|(c_name, _)| nim_global(c_name))
        .filter(|(c_name, _)| {
            body.match_indices(c_name).any(|(i, _)| {
                !body[..i].bytes().last().is_some_and(ident)
                    && !body[i + c_name.len()..].bytes().next().is_some_and(ident)
            })
        })
        .map(|&(_, key)| key)
        .collect()
}

/// Notes the globals new in a reload (NEW: `(object index, address,
/// thread-local, resized)` of manifest M; a resized global starts again
/// from its initialiser, so it counts as new; ADDED modules are initialised whole) for
/// [`hcr_nim_new_globals`]; warns at once about each run-time-initialised
/// one in a changed Nim module that has no `HcrReinit000`, and after the
/// entries ran ([`finish_reload`]) about those none initialised.
pub fn note_new_globals(
    m: &Manifest,
    added: &[String],
    new: impl Iterator<Item = (usize, u64, bool, bool)>,
) {
    let mut r = Reinit::default();
    let mut by_module: std::collections::BTreeMap<u32, Vec<(&str, &str, u64)>> = Default::default();
    for (oi, addr, tls, resized) in new {
        let o = &m.objects[oi];
        let module = m.module_name(o.module);
        if !is_nim_module(module) || added.iter().any(|a| a == module) {
            continue;
        }
        if !tls {
            r.new.insert(addr as usize);
        }
        if resized {
            continue;
        }
        by_module.entry(o.module.0).or_default().push((
            m.str(o.name),
            m.object_key(o),
            if tls { 0 } else { addr },
        ));
    }
    for (mi, names) in by_module {
        let md = &m.modules[mi as usize];
        let Some(c) = m.str(md.object).strip_suffix(".o") else {
            continue;
        };
        let module = m.str(md.name);
        let pairs: Vec<(&str, &str)> = names.iter().map(|&(c, k, _)| (c, k)).collect();
        let rewritten = init_functions(m, md, false).1.is_some();
        for key in runtime_initialised(c, &pairs) {
            let addr = names.iter().find(|n| n.1 == key).map_or(0, |n| n.2);
            if rewritten && addr != 0 {
                r.watch
                    .push((addr as usize, module.to_string(), key.to_string()));
            } else {
                warn_zeroed(module, key);
            }
        }
    }
    *reinit() = Some(r);
}

/// After a reload's entries ran: warns about each watched new global no
/// `HcrReinit000` initialised, and forgets the reload.
pub fn finish_reload() {
    let Some(r) = reinit().take() else {
        return;
    };
    for (addr, module, key) in &r.watch {
        if !r.initialised.contains(addr) {
            warn_zeroed(module, key);
        }
    }
}

fn warn_zeroed(module: &str, key: &str) {
    crate::warn::warn(format_args!(
        "global {module}:{key} is new in this reload and Nim initialises it at run time, in a statement hcr cannot run alone (see README, Nim programs): it starts zeroed; restart the program to initialise it"
    ));
}
