//! Identity of writable objects across edits.
//!
//! Compilers number function statics: gcc names `static int n;` in any
//! function `n.N` with one counter for the whole file, clang names it
//! `func.n` (`func.n.1` for a second one of that name). Adding a static
//! anywhere renumbers gcc's names, so the symbol name is no identity. Here
//! a numbered static's identity is taken from what the object says about it:
//! the function whose code references its section (found through the code
//! sections' relocations), its name without the number, and its place among
//! that function's statics of that name — `owner::name`, `owner::name#1`...
//!
//! The key is a string stored as the object's name in the manifest, so
//! another compiler's scheme (Nim's `name__module_N`) plugs in as one more
//! rule in [`identities`] without a change to the image format or runtime.

use std::collections::{BTreeSet, HashMap};

use crate::parse::{ObjFile, SecKind, Shndx};

/// A numbered static of a group: `(compiler's number, symbol, entry)`.
type Member = (u64, u32, usize);

/// A data symbol of one module: `(data section, symbol index)`.
pub(crate) type DataSym = (u32, u32);

/// Identity keys of `objs`, one per entry (`None`: the symbol name is the
/// identity), and the warnings for those whose identity is not certain.
pub(crate) fn identities(o: &ObjFile<'_>, objs: &[DataSym]) -> (Vec<Option<String>>, Vec<String>) {
    let mut keys = vec![None; objs.len()];
    let mut warnings = Vec::new();
    let numbered: Vec<usize> = (0..objs.len())
        .filter(|&i| {
            let s = &o.symbols[objs[i].1 as usize];
            !s.is_global() && s.name.contains('.') && !s.name.starts_with('.')
        })
        .collect();
    if numbered.is_empty() {
        return (keys, warnings);
    }
    // Owner of each code section: its first function symbol, without the
    // suffix of a compiler clone (`f.cold`, `f.part.0`).
    let mut owner: HashMap<u32, &str> = HashMap::new();
    for s in &o.symbols {
        if let Shndx::Sec(sec) = s.shndx {
            if s.typ == object::elf::STT_FUNC.0 && !s.name.is_empty() {
                let base = s.name.split('.').next().unwrap_or(s.name);
                owner.entry(sec).or_insert(base);
            }
        }
    }
    // Functions whose code references each data section.
    let mut wanted: HashMap<u32, BTreeSet<&str>> = numbered
        .iter()
        .map(|&i| (objs[i].0, BTreeSet::new()))
        .collect();
    for (ti, t) in o.sections.iter().enumerate() {
        if t.kind != SecKind::Text {
            continue;
        }
        let Some(&fname) = owner.get(&(ti as u32)) else {
            continue;
        };
        for r in o.relocs(t) {
            let Some(sym) = o.symbols.get(r.sym as usize) else {
                continue;
            };
            if let Shndx::Sec(ds) = sym.shndx {
                if let Some(set) = wanted.get_mut(&ds) {
                    set.insert(fname);
                }
            }
        }
    }
    // (owner, base name) -> [(compiler's number, symbol index, entry)].
    let mut groups: HashMap<(String, String), Vec<Member>> = HashMap::new();
    for &i in &numbered {
        let (ds, si) = objs[i];
        let name = o.symbols[si as usize].name;
        let owners = &wanted[&ds];
        let Some(&first) = owners.iter().next() else {
            warnings.push(format!(
                "global {}:{name}: no function's code refers to it, so its owner is unknown; identity assumed to be the compiler's name `{name}` (it starts again from its initialiser if the compiler renumbers it)",
                o.name
            ));
            continue;
        };
        if owners.len() > 1 {
            let all: Vec<&str> = owners.iter().copied().collect();
            warnings.push(format!(
                "global {}:{name}: referred to by several functions ({}); identity assumed to be a static of `{first}`",
                o.name,
                all.join(", ")
            ));
        }
        // clang: `owner.name[.K]`; gcc: `name.N`.
        let rest = name
            .strip_prefix(first)
            .and_then(|r| r.strip_prefix('.'))
            .unwrap_or(name);
        let (base, num) = match rest.rsplit_once('.') {
            Some((b, n)) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => {
                (b, n.parse::<u64>().unwrap_or(u64::MAX))
            }
            _ => (rest, 0),
        };
        groups
            .entry((first.to_string(), base.to_string()))
            .or_default()
            .push((num, si, i));
    }
    for ((own, base), mut v) in groups {
        // The compiler numbers a function's statics in source order.
        v.sort_unstable();
        for (k, &(_, _, i)) in v.iter().enumerate() {
            keys[i] = Some(if k == 0 {
                format!("{own}::{base}")
            } else {
                format!("{own}::{base}#{k}")
            });
        }
    }
    warnings.sort();
    (keys, warnings)
}

/// The warning for a root module that defines no `main` (`hcr run` refuses
/// such an image).
pub(crate) fn root_without_main(o: &ObjFile<'_>) -> Option<String> {
    let has_main = o.symbols.iter().any(|s| {
        s.name == "main"
            && s.is_global()
            && matches!(s.shndx, Shndx::Sec(_))
            && s.typ == object::elf::STT_FUNC.0
    });
    (!has_main).then(|| {
        format!(
            "root module {} defines no `main`, so `hcr run` will refuse this image; name the module that defines main with --root MODULE",
            o.name
        )
    })
}
