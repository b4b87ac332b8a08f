//! No global is reset silently: the checks a reload makes of a changed
//! module's globals beyond their identity keys (see hcr-link's
//! `identity.rs` for how keys are made).
//!
//! - A kept global whose key rests on an assumption (its order among
//!   statics of one name) and whose compiler-given name changed (`n.1` is
//!   now `n.2`) is kept with a warning that says what was assumed.
//! - A numbered static whose key changed (its owner set changed: it was
//!   inlined into another function, or no longer) is matched to the one
//!   static of the old version with the same name and size that nothing
//!   else took, with a warning; when several could be it, none is assumed
//!   and the warning says that it starts from its initialiser.

use hcr_image::{Manifest, Module};

/// `NAME` of gcc's `NAME.N`.
fn numbered_base(name: &str) -> Option<&str> {
    let (base, n) = name.rsplit_once('.')?;
    (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && !base.is_empty()).then_some(base)
}

/// What a reload decided about identities beyond the keys: warnings to
/// print when it commits, and kept globals to index under their new keys.
#[derive(Default)]
pub(crate) struct Decisions {
    /// Warning texts (without the `hcr: warning: ` prefix).
    pub warnings: Vec<String>,
    /// `(registry index, new key)` of globals kept under another key.
    pub rekey: Vec<(u32, String)>,
    /// `(registry index, new module)` of globals that moved to another
    /// module and keep their storage there.
    pub moved: Vec<(u32, String)>,
}

/// One version of a module: its manifest, the module, and the registry
/// index of each of the manifest's objects (`none` where it has none).
pub(crate) struct Version<'a> {
    pub manifest: &'a Manifest,
    pub module: &'a Module,
    pub gid: &'a [u32],
}

/// Checks the globals of changed module `md` of `new` against the loaded
/// version `was`; `gid` holds the registry indices of `md`'s objects
/// (the first at index 0) found by key (`none` where none) and gains the
/// matches made here.
pub(crate) fn match_renumbered(
    was: Version<'_>,
    new: &Manifest,
    md: &Module,
    gid: &mut [u32],
    none: u32,
    out: &mut Decisions,
) {
    let (old, old_md, old_gid) = (was.manifest, was.module, was.gid);
    let module = new.str(md.name);
    // `gid` holds the module's objects only: object `oi`'s at `oi - base`.
    let base = md.objects.start as usize;
    let old_range = old_md.objects.range();
    let taken: std::collections::HashSet<u32> = md
        .objects
        .range()
        .map(|oi| gid[oi - base])
        .filter(|&g| g != none)
        .collect();
    let raw_of = |g: u32| {
        old_range
            .clone()
            .find(|&oi| old_gid.get(oi) == Some(&g))
            .map(|oi| &old.objects[oi])
    };
    // Kept by a key that rests on an assumption, and renumbered.
    for oi in md.objects.range() {
        let o = &new.objects[oi];
        if gid[oi - base] == none || o.assumed.len == 0 {
            continue;
        }
        if let Some(was) = raw_of(gid[oi - base]) {
            if old.str(was.name) != new.str(o.name) {
                out.warnings.push(format!(
                    "global {module}:{} ({}, was {}) kept its value on an assumption: {}",
                    new.object_key(o),
                    new.str(o.name),
                    old.str(was.name),
                    new.str(o.assumed)
                ));
            }
        }
    }
    // Numbered statics without a match by key.
    let unmatched_old: Vec<usize> = old_range
        .clone()
        .filter(|&oi| {
            let g = old_gid.get(oi).copied().unwrap_or(none);
            g != none
                && !taken.contains(&g)
                && numbered_base(old.str(old.objects[oi].name)).is_some()
        })
        .collect();
    if unmatched_old.is_empty() {
        return;
    }
    let unmatched_new: Vec<usize> = md
        .objects
        .range()
        .filter(|&oi| {
            gid[oi - base] == none && numbered_base(new.str(new.objects[oi].name)).is_some()
        })
        .collect();
    let same = |a: &hcr_image::Object, b: &hcr_image::Object| {
        numbered_base(old.str(a.name)) == numbered_base(new.str(b.name)) && a.size == b.size
    };
    for &ni in &unmatched_new {
        let o = &new.objects[ni];
        let olds: Vec<usize> = unmatched_old
            .iter()
            .copied()
            .filter(|&x| same(&old.objects[x], o))
            .collect();
        let news = unmatched_new
            .iter()
            .filter(|&&y| {
                let b = &new.objects[y];
                numbered_base(new.str(b.name)) == numbered_base(new.str(o.name)) && b.size == o.size
            })
            .count();
        match olds.as_slice() {
            [] => {}
            [one] if news == 1 => {
                let was = &old.objects[*one];
                gid[ni - base] = old_gid[*one];
                out.rekey.push((old_gid[*one], new.object_key(o).to_string()));
                out.warnings.push(format!(
                    "global {module}:{} ({}) kept the value of {module}:{} ({}): its identity changed (the functions that refer to it changed); assumed the same static by its name and size",
                    new.object_key(o),
                    new.str(o.name),
                    old.object_key(was),
                    old.str(was.name)
                ));
            }
            _ => out.warnings.push(format!(
                "global {module}:{} ({}) starts from its initialiser: {} statics named '{}' of its size changed identity and none can be told to be this one",
                new.object_key(o),
                new.str(o.name),
                olds.len(),
                numbered_base(new.str(o.name)).unwrap_or("?")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_gcc_numbers_have_a_base() {
        assert_eq!(numbered_base("n.12"), Some("n"));
        assert_eq!(numbered_base("counter.n"), None);
        assert_eq!(numbered_base("plain"), None);
    }
}
