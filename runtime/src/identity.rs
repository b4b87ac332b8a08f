//! No global is reset silently: the checks a reload makes of a changed
//! module's globals beyond their identity keys (see hcr-link's
//! `identity.rs` for how keys are made).
//!
//! - Statics whose keys rest on their order (several of one name with the
//!   same owners, in either version: gcc without `-g`, two `static`
//!   functions inlined into the same callers; clang's `tick.n` and
//!   `tick.n.1`, numbered in source order, so that a static added before
//!   another of its name in a function takes that one's name) are matched
//!   again, old to new, by their order *and* what their declarations show:
//!   the size, and whether the static is zero-filled or has an
//!   initialiser. Order alone took a static added before the others for
//!   the one that was there, and started that one again from its
//!   initialiser. A static kept under another key is named in a warning;
//!   so is one that starts from its initialiser while the loaded version
//!   had statics of its group (a static new in a nested block too: that it
//!   is new rests on the same order). An edit that both adds or drops a
//!   static of a group and changes another's initialiser may be matched
//!   wrongly by shape; the warnings name every static involved.
//! - A kept global whose key rests on an assumption (its order among
//!   statics of one name) and whose compiler-given name changed (`n.1` is
//!   now `n.2`) is kept with a warning that says what was assumed.
//! - A numbered static whose key changed (its owner set changed: it was
//!   inlined into another function, or no longer) is matched to the one
//!   static of the old version with the same name and size that nothing
//!   else took, with a warning; when several could be it, none is assumed
//!   and the warning says that it starts from its initialiser.

use hcr_image::{Manifest, Module};

/// `(TEXT, N)` of `TEXTsepN`, N one or more decimal digits (not parsed).
fn numbered(name: &str, sep: char) -> Option<(&str, &str)> {
    let (text, n) = name.rsplit_once(sep)?;
    (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then_some((text, n))
}

/// `NAME` of gcc's `NAME.N`.
fn numbered_base(name: &str) -> Option<&str> {
    numbered(name, '.')
        .map(|(base, _)| base)
        .filter(|base| !base.is_empty())
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
    let realigned = realign_by_order(&was, new, md, gid, none, out);
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
        if gid[oi - base] == none || o.assumed.len == 0 || realigned.warned.contains(&oi) {
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
            gid[oi - base] == none
                && !realigned.decided.contains(&oi)
                && numbered_base(new.str(new.objects[oi].name)).is_some()
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

/// `(stem, K)` of an identity key: `OWNERS::NAME` is K 0 of its stem,
/// `OWNERS::NAME#K` the K-th counted from the last.
fn key_place(key: &str) -> (&str, usize) {
    numbered(key, '#')
        .and_then(|(stem, k)| Some((stem, k.parse().ok()?)))
        .unwrap_or((key, 0))
}

/// The most cells of an order-matched group's table (old statics × new
/// ones); beyond, keys alone decide, as they do for statics whose keys are
/// certain.
const ALIGN_MAX: usize = 1 << 20;

/// Pairs `(i, j)` matching `0..n` to `0..m` in order: as many pairs as the
/// shorter has elements, and of those matchings the one whose pairs
/// `score` best (summed element by element, compared in order), the
/// earliest pairs preferred.
fn align(n: usize, m: usize, score: impl Fn(usize, usize) -> [u32; 3]) -> Vec<(usize, usize)> {
    let w = m + 1;
    // best[i * w + j]: (pairs, summed score) of the best matching of the
    // elements from i and j on.
    let mut best = vec![[0u32; 4]; (n + 1) * w];
    let diagonal = |best: &[[u32; 4]], i: usize, j: usize| {
        let (b, s) = (best[(i + 1) * w + j + 1], score(i, j));
        [b[0] + 1, b[1] + s[0], b[2] + s[1], b[3] + s[2]]
    };
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            best[i * w + j] = diagonal(&best, i, j)
                .max(best[(i + 1) * w + j])
                .max(best[i * w + j + 1]);
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n && j < m {
        let here = best[i * w + j];
        if diagonal(&best, i, j) == here {
            out.push((i, j));
            (i, j) = (i + 1, j + 1);
        } else if best[(i + 1) * w + j] == here {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// What a numbered static's declaration shows without debug information:
/// its size, and whether it is zero-filled.
fn shape(o: &hcr_image::Object) -> (u64, bool) {
    (o.size, o.init.is_none())
}

/// [`shape`] in words.
fn shape_text(o: &hcr_image::Object) -> String {
    let kind = if o.init.is_none() {
        "zero-filled"
    } else {
        "initialised"
    };
    format!("{} bytes, {kind}", o.size)
}

/// `(FUNCTION.NAME, K)` of clang's name for a function's static:
/// `FUNCTION.NAME` for the first of that name in the function, then
/// `FUNCTION.NAME.K` for the K-th after it, in source order (a static
/// added before another of its name in the same function takes its name).
fn clang_static(name: &str) -> Option<(&str, usize)> {
    let ident = |s: &str| {
        !s.is_empty()
            && (s.bytes().enumerate())
                .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()))
    };
    let (stem, k) = match numbered(name, '.') {
        Some((stem, k)) => (stem, k.parse().ok()?),
        None => (name, 0),
    };
    let (function, var) = stem.split_once('.')?;
    (ident(function) && ident(var)).then_some((stem, k))
}

/// The statics one stem names in one version of a module.
#[derive(Default)]
struct Group<'m> {
    /// `(K, object index)`, sorted by K (gcc's keys: from the last in
    /// scope order; clang's names: from the first in source order).
    members: Vec<(usize, usize)>,
    /// Whether the members' keys rest on their order: any gcc key that
    /// records an assumption; clang's names when there are several.
    assumed: bool,
    /// The functions that refer to them (gcc), or the one declaring them
    /// (clang).
    owners: &'m str,
}

/// The function statics of `objects` of `m` whose keys or names the
/// compiler numbers (gcc's with an identity key, clang's by name), by
/// stem; `keep` filters them.
fn groups(
    m: &Manifest,
    objects: std::ops::Range<usize>,
    keep: impl Fn(usize) -> bool,
) -> std::collections::BTreeMap<&str, Group<'_>> {
    let mut out: std::collections::BTreeMap<&str, Group<'_>> = Default::default();
    for oi in objects.filter(|&oi| keep(oi)) {
        let o = &m.objects[oi];
        let name = m.str(o.name);
        let (stem, k, owners, clang) = if o.identity.len > 0 && numbered_base(name).is_some() {
            let (stem, k) = key_place(m.str(o.identity));
            let owners = stem.rsplit_once("::").map_or(stem, |(owners, _)| owners);
            (stem, k, owners, false)
        } else if let Some((stem, k)) = clang_static(name).filter(|_| o.identity.len == 0) {
            (stem, k, stem.split_once('.').map_or(stem, |(f, _)| f), true)
        } else {
            continue;
        };
        let g = out.entry(stem).or_default();
        g.members.push((k, oi));
        g.owners = owners;
        g.assumed |= o.assumed.len > 0 || clang && g.members.len() > 1;
    }
    for g in out.values_mut() {
        g.members.sort_unstable();
    }
    out
}

/// For each of `news`' members, the member of `olds` it is: in order, as
/// many pairs as the shorter group has, preferring pairs of the same shape,
/// then of the same size, then at the same place K (so that groups whose
/// shapes all agree match as their keys do); a pair of different sizes
/// is no match (the static starts again, as a resized global does).
fn match_group(
    (old, olds): (&Manifest, &Group<'_>),
    (new, news): (&Manifest, &Group<'_>),
) -> Vec<Option<(usize, usize)>> {
    let objects = |i: usize, j: usize| {
        let (a, b) = (olds.members[i], news.members[j]);
        (&old.objects[a.1], &new.objects[b.1], a.0 == b.0)
    };
    let score = |i, j| {
        let (a, b, same_k) = objects(i, j);
        [shape(a) == shape(b), a.size == b.size, same_k].map(u32::from)
    };
    let mut matched = vec![None; news.members.len()];
    for (i, j) in align(olds.members.len(), news.members.len(), score) {
        let (a, b, _) = objects(i, j);
        if a.size == b.size {
            matched[j] = Some(olds.members[i]);
        }
    }
    matched
}

/// What a group's statics are to the functions `owners`: "that main
/// refers to", "that f+main refer to".
fn referred(owners: &str) -> String {
    match owners {
        "?" => "that no function's code refers to".to_string(),
        owners if owners.contains('+') => format!("that {owners} refer to"),
        owners => format!("that {owners} refers to"),
    }
}

/// ` (NAME)`, the compiler's name of a global keyed `key` when that is
/// another (gcc's `n.1` for `tick::n`); nothing when it is the key.
fn named(key: &str, name: &str) -> String {
    match key == name {
        true => String::new(),
        false => format!(" ({name})"),
    }
}

/// What [`realign_by_order`] did.
#[derive(Default)]
struct Realigned {
    /// The new statics it matched or took as new (all members of the
    /// groups it matched): the matching by name and size leaves them be.
    decided: std::collections::HashSet<usize>,
    /// Those it warned of.
    warned: std::collections::HashSet<usize>,
}

/// Matches again, old to new, the statics of module `md` whose keys rest
/// on their order (see the module's comment; [`match_group`]), and sets
/// `gid` from that (a static kept under another key gets it through
/// `out.rekey`). Warns of each static kept under another key, and of each
/// that starts from its initialiser in a group the loaded version had.
fn realign_by_order(
    was: &Version<'_>,
    new: &Manifest,
    md: &Module,
    gid: &mut [u32],
    none: u32,
    out: &mut Decisions,
) -> Realigned {
    let (old, old_gid) = (was.manifest, was.gid);
    let module = new.str(md.name);
    let base = md.objects.start as usize;
    let live = |oi: usize| old_gid.get(oi).is_some_and(|&g| g != none);
    let olds = groups(old, was.module.objects.range(), live);
    let mut done = Realigned::default();
    for (stem, news) in groups(new, md.objects.range(), |_| true) {
        let Some(olds) = olds.get(stem) else {
            continue;
        };
        let cells = olds.members.len().saturating_mul(news.members.len());
        if !(news.assumed || olds.assumed) || cells > ALIGN_MAX {
            continue;
        }
        let matched = match_group((old, olds), (new, &news));
        for (&(k, ni), m) in news.members.iter().zip(matched) {
            done.decided.insert(ni);
            let o = &new.objects[ni];
            let key = new.object_key(o);
            let (name, shape, whose) = (
                named(key, new.str(o.name)),
                shape_text(o),
                referred(news.owners),
            );
            let Some((old_k, oi)) = m else {
                gid[ni - base] = none;
                out.warnings.push(format!(
                    "global {module}:{key}{name} starts from its initialiser on an assumption: taken as new, the statics of its name {whose} matched by their order and shape ({shape})"
                ));
                done.warned.insert(ni);
                continue;
            };
            gid[ni - base] = old_gid[oi];
            if old_k != k {
                let w = &old.objects[oi];
                out.rekey.push((old_gid[oi], key.to_string()));
                out.warnings.push(format!(
                    "global {module}:{key}{name} kept the value of {module}:{}{} on an assumption: the statics of its name {whose} matched by their order and shape ({shape})",
                    old.object_key(w),
                    named(old.object_key(w), old.str(w.name)),
                ));
                done.warned.insert(ni);
            }
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_into_stem_and_place() {
        assert_eq!(key_place("f::n"), ("f::n", 0));
        assert_eq!(key_place("f+g::n#2"), ("f+g::n", 2));
        assert_eq!(key_place("f::n#"), ("f::n#", 0));
    }

    /// `align` with a score of 1 for equal elements.
    fn al(a: &[u8], b: &[u8]) -> Vec<(usize, usize)> {
        align(a.len(), b.len(), |i, j| [u32::from(a[i] == b[j]), 0, 0])
    }

    #[test]
    fn alignment_prefers_the_earliest_pairs() {
        // Equal sequences pair up index for index.
        assert_eq!(al(&[1, 1], &[1, 1]), [(0, 0), (1, 1)]);
        // One added: the first keeps the first place.
        assert_eq!(al(&[1], &[1, 1]), [(0, 0)]);
        // One added before, of another shape: skipped.
        assert_eq!(al(&[1], &[2, 1]), [(0, 1)]);
        assert_eq!(al(&[1, 3], &[2, 1, 3]), [(0, 1), (1, 2)]);
        // One dropped.
        assert_eq!(al(&[2, 1], &[1]), [(1, 0)]);
        assert_eq!(al(&[], &[1]), []);
        // Changed in place: kept, as many pairs as the shorter has.
        assert_eq!(al(&[1], &[2]), [(0, 0)]);
        assert_eq!(al(&[1, 2], &[3, 4]), [(0, 0), (1, 1)]);
        assert_eq!(al(&[1, 2], &[3, 2, 4]), [(0, 0), (1, 1)]);
    }

    #[test]
    fn alignment_weighs_its_scores_in_order() {
        // Of two new elements, neither of the old one's shape: the one of
        // its size (second score) rather than the first.
        let (a, b) = ([(4, 'z')], [(8, 'z'), (4, 'i')]);
        let score = |i: usize, j: usize| {
            let (x, y): ((u8, char), (u8, char)) = (a[i], b[j]);
            [x == y, x.0 == y.0, false].map(u32::from)
        };
        assert_eq!(align(1, 2, score), [(0, 1)]);
    }

    #[test]
    fn clangs_static_names_split_into_stem_and_place() {
        assert_eq!(clang_static("tick.n"), Some(("tick.n", 0)));
        assert_eq!(clang_static("tick.n.1"), Some(("tick.n", 1)));
        assert_eq!(clang_static("n.0"), None, "gcc's");
        assert_eq!(clang_static(".str.1"), None);
        assert_eq!(clang_static("plain"), None);
        assert_eq!(clang_static("a.b.c"), None);
    }

    #[test]
    fn only_gcc_numbers_have_a_base() {
        assert_eq!(numbered_base("n.12"), Some("n"));
        assert_eq!(numbered_base("counter.n"), None);
        assert_eq!(numbered_base("plain"), None);
    }
}
