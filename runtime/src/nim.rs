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

use hcr_image::{Manifest, Module};

/// True for hcr's name of a module compiled from Nim.
pub fn is_nim_module(name: &str) -> bool {
    name.starts_with("@m") && name.ends_with(".nim")
}

/// Area offsets of the module's `DatInit000` and `Init000` functions.
pub fn init_functions(m: &Manifest, md: &Module) -> (Option<u32>, Option<u32>) {
    let mut dat = None;
    let mut init = None;
    for f in md.functions.range().map(|i| &m.functions[i]) {
        let name = m.str(f.name);
        if !name.starts_with("atm") {
            continue;
        }
        if name.ends_with("dotnim_DatInit000") {
            dat = Some(f.offset);
        } else if name.ends_with("dotnim_Init000") {
            init = Some(f.offset);
        }
    }
    (dat, init)
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
    let Some(start) = text.find("dotnim_Init000)(void) {") else {
        return Vec::new();
    };
    let body = &text[start..];
    let body = &body[..body.find("\n}\n").unwrap_or(body.len())];
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    // Nim's globals are `name__module_N` (type info `NTI…_` is DatInit's).
    let nim_global = |c: &str| {
        c.rsplit_once('_').is_some_and(|(stem, n)| {
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

/// Warns about each global new in a changed Nim module (objects OBJECTS of
/// manifest M; ADDED modules are initialised whole) whose initialiser runs
/// at run time.
pub fn warn_uninitialised(m: &Manifest, added: &[String], objects: impl Iterator<Item = usize>) {
    let mut by_module: std::collections::BTreeMap<u32, Vec<(&str, &str)>> = Default::default();
    for oi in objects {
        let o = &m.objects[oi];
        let module = m.module_name(o.module);
        if is_nim_module(module) && !added.iter().any(|a| a == module) {
            by_module
                .entry(o.module.0)
                .or_default()
                .push((m.str(o.name), m.object_key(o)));
        }
    }
    for (mi, names) in by_module {
        let md = &m.modules[mi as usize];
        let Some(c) = m.str(md.object).strip_suffix(".o") else {
            continue;
        };
        for name in runtime_initialised(c, &names) {
            crate::warn::warn(format_args!(
                "global {}:{name} is new in this reload and Nim initialises it at run time (in the module's Init000, with its top-level statements): it starts zeroed; restart the program to initialise it",
                m.str(md.name)
            ));
        }
    }
}
