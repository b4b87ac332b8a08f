//! Identity of globals whose names the compiler numbers.
//!
//! gcc names a function's `static` variables `NAME.N`, N from one counter
//! for the whole file: adding or removing a static anywhere renumbers every
//! one after it (`aBuiltinFunc.19` becomes `.20`). Keyed by that name, a
//! reload would take the renumbered statics for removed-and-new globals and
//! start them again from their initialisers. So such a static's identity is
//! what the source says: the function that owns it, its name, and its place
//! among that function's statics of that name —
//! `FUNCTION::NAME` for the last, then `FUNCTION::NAME#1`, `#2`… counting
//! back (gcc numbers a function's statics as their scopes close: those of
//! nested blocks first, the function's own last; counted from the last, a
//! static added in a nested block shifts no other key).
//!
//! Built with `-g`, the owner is the function the debug information says
//! declares the static, and statics of one owner and name are ordered by
//! their place in it (`dwarf_statics.rs`): exact even for functions
//! inlined everywhere. Otherwise the owner is found from the code: with `-ffunction-sections` every
//! function has its own section, and the functions whose code refers to
//! the static's section are its owner and every function the owner was
//! inlined into. That set is the owner part of the key
//! (`counter+main::n`): stable across edits elsewhere in the file. Several
//! statics of one name with the same owners (nested blocks of one function,
//! or statics of two functions both inlined into the same callers only,
//! their own copies dropped) are told apart by their order alone; that
//! assumption is recorded, and the runtime says it in a warning when a
//! reload relies on it (the static's number changed).
//!
//! Other compilers' names are already stable and kept as they are: clang's
//! `counter.n` (`counter.n.1` for a second one in nested blocks), C++'s
//! mangled `_ZZ7countervE1n` (with its `_ZGV…` guard).

use std::collections::BTreeMap;

/// `(NAME, N)` for gcc's `NAME.N`, NAME a C identifier.
pub fn gcc_numbered(name: &str) -> Option<(&str, u64)> {
    let (base, n) = name.rsplit_once('.')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || base.is_empty() {
        return None;
    }
    let ident = base
        .bytes()
        .enumerate()
        .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()));
    Some((base, n.parse().ok()?)).filter(|_| ident)
}

/// A static numbered by gcc, with the functions whose code refers to it.
pub struct Numbered<'a> {
    /// Index among the module's objects.
    pub index: usize,
    /// NAME of `NAME.N`.
    pub base: &'a str,
    /// N.
    pub n: u64,
    /// Functions referring to it (any order, duplicates allowed).
    pub owners: Vec<&'a str>,
}

/// An object's identity and, when it rests on an assumption, which.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// `OWNERS::NAME[#K]`.
    pub key: String,
    /// Empty when the identity is certain.
    pub assumed: String,
}

/// The identities of a module's gcc-numbered statics, by object index.
pub fn identities(statics: Vec<Numbered<'_>>) -> Vec<(usize, Identity)> {
    // Group by (owner set, NAME); order each group by N.
    let mut groups: BTreeMap<(String, &str), Vec<(u64, usize)>> = BTreeMap::new();
    for s in statics {
        let mut owners = s.owners;
        owners.sort_unstable();
        owners.dedup();
        let owner = if owners.is_empty() {
            "?".to_string()
        } else {
            owners.join("+")
        };
        groups
            .entry((owner, s.base))
            .or_default()
            .push((s.n, s.index));
    }
    let mut out = Vec::new();
    for ((owner, base), mut members) in groups {
        // Counted from the last: gcc numbers a function's statics as their
        // scopes close, so those of nested blocks come first and the one at
        // the function's own scope is always the last; a static added in a
        // nested block then shifts none of the others' keys from the end.
        members.sort_unstable_by(|a, b| b.cmp(a));
        let count = members.len();
        for (k, &(_, index)) in members.iter().enumerate() {
            let key = if k == 0 {
                format!("{owner}::{base}")
            } else {
                format!("{owner}::{base}#{k}")
            };
            let assumed = if owner == "?" {
                format!(
                    "no function's code refers to it; taken as static '{base}' number {} of the file's unreferenced ones",
                    k + 1
                )
            } else if count > 1 {
                format!(
                    "the {} from the last of {count} statics named '{base}' that {owner} refer{} to, by the order of their scopes",
                    ordinal(k + 1),
                    if owner.contains('+') { "" } else { "s" }
                )
            } else {
                String::new()
            };
            out.push((index, Identity { key, assumed }));
        }
    }
    out
}

fn ordinal(k: usize) -> String {
    match k {
        1 => "first".into(),
        2 => "second".into(),
        3 => "third".into(),
        k => format!("{k}th"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcc_numbers_are_recognised_and_other_names_left_alone() {
        assert_eq!(gcc_numbered("n.0"), Some(("n", 0)));
        assert_eq!(gcc_numbered("aBuiltinFunc.19"), Some(("aBuiltinFunc", 19)));
        assert_eq!(gcc_numbered("counter.n"), None, "clang: stable already");
        assert_eq!(gcc_numbered("counter.n.1"), None, "clang: stable already");
        assert_eq!(gcc_numbered("_ZZ7countervE1n"), None);
        assert_eq!(gcc_numbered("x"), None);
        assert_eq!(gcc_numbered(".0"), None);
        assert_eq!(gcc_numbered("1x.0"), None);
    }

    #[test]
    fn keys_follow_owner_name_and_order_not_the_file_counter() {
        let ids = |v: Vec<(&'static str, u64, Vec<&'static str>)>| {
            let mut out = identities(
                v.into_iter()
                    .enumerate()
                    .map(|(index, (base, n, owners))| Numbered {
                        index,
                        base,
                        n,
                        owners,
                    })
                    .collect(),
            );
            out.sort_by_key(|(i, _)| *i);
            out.into_iter().map(|(_, id)| id.key).collect::<Vec<_>>()
        };
        let before = ids(vec![("n", 0, vec!["counter"]), ("k", 1, vec!["g"])]);
        // g moved first and given a second static: every number shifts.
        let after = ids(vec![
            ("k", 0, vec!["g"]), // a new static k in a nested block of g
            ("k", 1, vec!["g"]), // g's own k
            ("n", 2, vec!["counter", "main", "counter"]),
        ]);
        assert_eq!(before, ["counter::n", "g::k"]);
        assert_eq!(after, ["g::k#1", "g::k", "counter+main::n"]);
    }
}
