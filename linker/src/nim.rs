//! Stable identity for Nim's C symbols.
//!
//! Nim's C backend names a module's procs and globals `name__module_N`, N a
//! per-module counter: declaring anything earlier in the module renumbers
//! every later symbol, so the raw name would make an edited proc "removed"
//! and a global start again. In a Nim module (hcr's module name `@m….nim`)
//! such a symbol is `name__module` (a function's manifest name, an object's
//! identity, its symbol name kept); a function whose
//! prototype Nim wrote in the module's C file (`@mlogic.nim.c` beside
//! `@mlogic.nim.c.o`) also carries its C signature,
//! `describe__logic(NI)->NimStringDesc*` (parameter names left out), so
//! overloads are told apart by their types whatever their order, and a proc
//! whose signature changed is a new function (its old callers get hcr's
//! "call to removed function" instead of a call with the wrong arguments).
//! The k-th (k ≥ 2) symbol with one such identity in counter order
//! (overloads with the same C types, `{.global.}` locals of one name) is
//! `…#k`: the counter's order is the declaration order, so only adding,
//! removing or reordering those changes which is which.

use std::collections::HashMap;

/// True for hcr's name of a module compiled from Nim (`@mlogic.nim`).
pub fn is_nim_module(module: &str) -> bool {
    module.starts_with("@m") && module.ends_with(".nim")
}

/// True for Nim's standard-library `hotcodereloading` module (its C file
/// named after its path, `…@score@shotcodereloading.nim`): outside Nim's
/// own `nimhcr` its API does nothing (`performCodeReload` is an empty
/// template), so a program built against it never reloads. hcr's module of
/// the same name (`runtime/nim/`) is not in a `core` folder.
pub fn is_stdlib_hcr_module(module: &str) -> bool {
    is_nim_module(module) && module.ends_with("core@shotcodereloading.nim")
}

/// The warning for a program built against Nim's standard-library
/// `hotcodereloading` (`module`) instead of hcr's.
pub fn stdlib_hcr_warning(module: &str) -> String {
    format!(
        "module {module} is Nim's standard-library hotcodereloading, whose API does nothing \
         outside nimhcr: this program's performCodeReload() never reloads and its \
         beforeCodeReload/afterCodeReload blocks never run. Name hcr's module instead with \
         --path:\"DIR\" (DIR: hcr's runtime/nim folder) in the project's nim.cfg, then build \
         again (Nim searches its own library before a --path given on the command line)"
    )
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

/// The C file Nim wrote for the object at `object` (`X.c` for `X.c.o`).
pub fn c_source(object: &str) -> Option<&str> {
    object.strip_suffix(".o").filter(|c| c.ends_with(".c"))
}

/// `(name, "(params)->ret")` of a prototype line Nim writes:
/// `N_LIB_PRIVATE N_NIMCALL(RET, NAME)(TYPE a, TYPE b);`.
fn prototype(line: &str) -> Option<(&str, String)> {
    let start = line.find("N_")?;
    let rest = &line[start..];
    let open = rest.find('(')?;
    let head_end = open + 1 + rest[open + 1..].find(')')?;
    let (ret, name) = rest[open + 1..head_end].rsplit_once(',')?;
    let params = rest[head_end + 1..].trim_start().strip_prefix('(')?;
    let params = &params[..params.rfind(')')?];
    if params.contains('(') {
        return None;
    }
    let types: Vec<&str> = params
        .split(',')
        .map(|p| {
            let p = p.trim();
            // Drop the parameter's name: the identifier at the end, when a
            // type precedes it.
            let cut = p.trim_end_matches(|c: char| c.is_ascii_alphanumeric() || c == '_');
            if cut.trim().is_empty() {
                p
            } else {
                cut.trim_end()
            }
        })
        .filter(|t| !t.is_empty() && *t != "void")
        .collect();
    Some((
        name.trim(),
        format!("({})->{}", types.join(","), ret.trim()),
    ))
}

/// The C signature of every function Nim declared in C source TEXT, by C
/// name. refc's GC marker of a global (`static N_NIMCALL(void, TM__…_4)
/// (void) { nimGCvisit((void*)history__logic_11, 0); }`, registered once
/// with `nimRegisterGlobalMarker`) also names the global it marks
/// (`()->void[marks history__logic]`): its counter shifts with every marker
/// declared before it, and the registered address must keep marking the
/// same global.
pub fn signatures(text: &str) -> HashMap<&str, String> {
    let mut sigs: HashMap<&str, String> = text
        .lines()
        .filter(|l| !l.starts_with(|c: char| c.is_whitespace()) && l.contains(" N_"))
        .filter_map(prototype)
        .collect();
    for (at, _) in text.match_indices("\nstatic N_NIMCALL(void, TM__") {
        let head = &text[at + 1..];
        let Some(name_end) = head.find(")(void) {\n") else {
            continue;
        };
        let name = &head["static N_NIMCALL(void, ".len()..name_end];
        let body = &head[name_end..];
        let body = &body[..body.find("\n}").unwrap_or(body.len())];
        if !body.contains("nimGCvisit") {
            continue;
        }
        let marked = body
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .find_map(split_counter);
        if let (Some((stem, _)), Some(sig)) = (marked, sigs.get_mut(name)) {
            sig.push_str(&format!("[marks {stem}]"));
        }
    }
    sigs
}

/// The manifest names of NAMES (one module's functions or objects), with
/// the functions' C signatures where known: `None` keeps a name as it is.
pub fn stable_names<'a>(
    names: impl IntoIterator<Item = &'a str>,
    sigs: &HashMap<&str, String>,
) -> Vec<Option<String>> {
    let parsed: Vec<Option<(String, u64)>> = names
        .into_iter()
        .map(|name| {
            let (stem, n) = split_counter(name)?;
            Some(match sigs.get(name) {
                Some(sig) => (format!("{stem}{sig}"), n),
                None => (stem.to_string(), n),
            })
        })
        .collect();
    let mut by_stem: HashMap<&str, Vec<(u64, usize)>> = HashMap::new();
    for (i, p) in parsed.iter().enumerate() {
        if let Some((stem, n)) = p {
            by_stem.entry(stem.as_str()).or_default().push((*n, i));
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
    fn the_standard_librarys_inert_api_module_is_told_from_hcrs() {
        assert!(is_stdlib_hcr_module(
            "@m..@s..@susr@slib@snim@slib@score@shotcodereloading.nim"
        ));
        assert!(is_stdlib_hcr_module("@mstd@score@shotcodereloading.nim"));
        assert!(!is_stdlib_hcr_module(
            "@m..@s..@swork@shcr@sruntime@snim@shotcodereloading.nim"
        ));
        assert!(!is_stdlib_hcr_module("@mhotcodereloading.nim"));
        assert!(!is_stdlib_hcr_module("core@shotcodereloading"));
    }

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
        let got = stable_names(names, &HashMap::new());
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

    #[test]
    fn signatures_tell_overloads_apart_without_parameter_names() {
        let c = "N_LIB_PRIVATE N_NIMCALL(NimStringDesc*, describe__logic_16)(NI x);\n\
                 N_LIB_PRIVATE N_NIMCALL(NimStringDesc*, describe__logic_9)(NimStringDesc* s, NI* n);\n\
                 static N_INLINE(void, popFrame)(void);\n\
                 \tN_NIMCALL(void, indented_1)(NI y);\n";
        let sigs = signatures(c);
        assert_eq!(sigs["describe__logic_16"], "(NI)->NimStringDesc*");
        assert_eq!(
            sigs["describe__logic_9"],
            "(NimStringDesc*,NI*)->NimStringDesc*"
        );
        assert_eq!(sigs["popFrame"], "()->void");
        assert!(!sigs.contains_key("indented_1"));
        let got = stable_names(["describe__logic_16", "describe__logic_9"], &sigs);
        assert_eq!(
            got,
            [
                Some("describe__logic(NI)->NimStringDesc*".to_string()),
                Some("describe__logic(NimStringDesc*,NI*)->NimStringDesc*".to_string())
            ]
        );
        assert_eq!(c_source("C/@mlogic.nim.c.o"), Some("C/@mlogic.nim.c"));
        let refc = "static N_NIMCALL(void, TM__p_4)(void);\n\
                    static N_NIMCALL(void, TM__p_7)(void);\n\
                    static N_NIMCALL(void, TM__p_4)(void) {\n\tnimGCvisit((void*)names__logic_11, 0);\n}\n\
                    static N_NIMCALL(void, TM__p_7)(void) {\n\tnimGCvisit((void*)history__logic_3, 0);\n}\n";
        let sigs = signatures(refc);
        assert_eq!(sigs["TM__p_4"], "()->void[marks names__logic]");
        assert_eq!(
            stable_names(["TM__p_7", "TM__p_4"], &sigs),
            [
                Some("TM__p()->void[marks history__logic]".to_string()),
                Some("TM__p()->void[marks names__logic]".to_string())
            ]
        );
        assert_eq!(c_source("x.o"), None);
    }
}
