//! Stable identity for Nim's C symbols.
//!
//! Nim's C backend names a module's procs and globals `name__module_N`, N a
//! per-module counter: declaring anything earlier in the module renumbers
//! every later symbol, so the raw name would make an edited proc "removed"
//! and a global start again. In a Nim module (hcr's module name `@m….nim`)
//! the manifest names such a symbol `name__module`, and the k-th (k ≥ 2) one
//! of that name in counter order (overloads, generic instances, `{.global.}`
//! locals of the same name) `name__module#k`. The counter's order is the
//! declaration order, so an edit keeps every identity unless it adds,
//! removes or reorders symbols of the same Nim name in the module.

use std::collections::HashMap;

/// True for hcr's name of a module compiled from Nim (`@mlogic.nim`).
pub fn is_nim_module(module: &str) -> bool {
    module.starts_with("@m") && module.ends_with(".nim")
}

/// `(stem, N)` for `stem_N` where stem is `name__module` (both non-empty).
fn split_counter(name: &str) -> Option<(&str, u64)> {
    let (stem, n) = name.rsplit_once('_')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (base, module) = stem.split_once("__")?;
    if base.is_empty() || module.is_empty() || stem.ends_with('_') {
        return None;
    }
    Some((stem, n.parse().ok()?))
}

/// The manifest names of NAMES (one module's functions or objects): `None`
/// keeps a name as it is.
pub fn stable_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<Option<String>> {
    let parsed: Vec<Option<(&str, u64)>> = names.into_iter().map(split_counter).collect();
    let mut by_stem: HashMap<&str, Vec<(u64, usize)>> = HashMap::new();
    for (i, p) in parsed.iter().enumerate() {
        if let Some((stem, n)) = p {
            by_stem.entry(stem).or_default().push((*n, i));
        }
    }
    let mut out = vec![None; parsed.len()];
    for (stem, mut group) in by_stem {
        group.sort_unstable();
        for (k, &(_, i)) in group.iter().enumerate() {
            out[i] = Some(if k == 0 {
                stem.to_string()
            } else {
                format!("{stem}#{}", k + 1)
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_dropped_and_overloads_numbered_in_declaration_order() {
        let names = [
            "describe__logic_16",
            "total__logic_2",
            "describe__logic_9",
            "TM__pNdIfJ1qTNtvZN3PcuRynw_2",
            "nimZeroMem",
            "x__y_",
            "copyMem__system_1727",
            "nimSetMem__systemZmemory_7",
        ];
        let got = stable_names(names);
        let want: Vec<Option<String>> = [
            Some("describe__logic#2"),
            Some("total__logic"),
            Some("describe__logic"),
            Some("TM__pNdIfJ1qTNtvZN3PcuRynw"),
            None,
            None,
            Some("copyMem__system"),
            Some("nimSetMem__systemZmemory"),
        ]
        .iter()
        .map(|s| s.map(String::from))
        .collect();
        assert_eq!(got, want);
        assert!(is_nim_module("@mlogic.nim"));
        assert!(!is_nim_module("logic"));
    }
}
