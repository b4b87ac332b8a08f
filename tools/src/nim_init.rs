//! Run-time initialisers of Nim globals new in a reload.
//!
//! Nim initialises a module's globals whose initialisers run at run time
//! (`var history = @["start"]`, `var t = someProc()`) in one C function,
//! `atm<module>dotnim_Init000`, interleaved with the module's top-level
//! statements. Running it again at a reload would re-run every top-level
//! statement and re-assign every old global; not running it leaves a new
//! global zeroed. nimhcr has the compiler guard each global's initialiser;
//! the stock compiler does not, so hcr-link does that part on Nim's C
//! output: for an `@m….nim` object whose C file sits beside it and whose
//! compile command the nimcache's JSON names, it rewrites `Init000`:
//!
//! - the body becomes `atm…HcrInitBody000(int hcrReinit_)`; `Init000()`
//!   calls it with 0 (the first load: everything runs, as Nim wrote it) and
//!   a new `atm…HcrReinit000()` with 1 (what the runtime runs when the
//!   module changed in a reload);
//! - the body's top-level C statements are grouped into units: statements
//!   that share a temporary, and every statement between a `goto` and its
//!   label, are one unit (a Nim statement is one or more top-level C
//!   statements that share temporaries); statements that only set
//!   temporaries to constants, Nim's line markers and its error checks run
//!   always;
//! - a unit that writes module globals (an assignment to one, its address
//!   taken, refc's `nimRegisterGlobalMarker` of its marker) outside a loop
//!   runs at a reload only when all the globals it writes are new in that
//!   reload: `if (!hcrReinit_ || hcr_nim_new_globals(n, {&g…})) { … }`;
//!   any other unit (a top-level statement) runs at the first load only:
//!   `if (!hcrReinit_) { … }`.
//!
//! The result is compiled with the module's own compile command and linked
//! in place of Nim's object (cached by content under
//! `<nimcache>/.hcr/<hash>/`, same file name so the module keeps its name).
//! Anything unexpected (a shape not recognised, a compile error) leaves the
//! module as Nim built it, with a warning naming it: the runtime then warns
//! about each new global it cannot initialise.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Why a module's `Init000` was left alone.
#[derive(Debug, PartialEq, Eq)]
pub struct Unrecognised(pub String);

fn bad<T>(why: impl Into<String>) -> Result<T, Unrecognised> {
    Err(Unrecognised(why.into()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    Ident,
    Number,
    Str,
    Punct,
}

#[derive(Clone, Copy, Debug)]
struct Token {
    kind: Tok,
    start: usize,
    end: usize,
}

/// C tokens of TEXT (comments, preprocessor lines and whitespace dropped).
fn lex(text: &str) -> Result<Vec<Token>, Unrecognised> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line_start = true;
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line_start = true;
            i += 1;
            continue;
        }
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'#' && line_start {
            // A preprocessor line (with continuations).
            while i < b.len() && b[i] != b'\n' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                i += 1;
            }
            continue;
        }
        line_start = false;
        let start = i;
        if b[i..].starts_with(b"/*") {
            let Some(e) = text[i + 2..].find("*/") else {
                return bad("unterminated comment");
            };
            i += e + 4;
            continue;
        }
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let kind = if c.is_ascii_alphabetic() || c == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            Tok::Ident
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_') {
                i += 1;
            }
            Tok::Number
        } else if c == b'"' || c == b'\'' {
            i += 1;
            while i < b.len() && b[i] != c {
                if b[i] == b'\\' {
                    i += 1;
                }
                if i < b.len() && b[i] == b'\n' {
                    return bad("newline in a string literal");
                }
                i += 1;
            }
            if i >= b.len() {
                return bad("unterminated literal");
            }
            i += 1;
            Tok::Str
        } else {
            const THREE: [&[u8]; 2] = [b"<<=", b">>="];
            const TWO: [&[u8]; 19] = [
                b"->", b"++", b"--", b"==", b"!=", b"<=", b">=", b"&&", b"||", b"+=", b"-=", b"*=",
                b"/=", b"%=", b"&=", b"|=", b"^=", b"<<", b">>",
            ];
            if THREE.iter().any(|p| b[i..].starts_with(p)) {
                i += 3;
            } else if TWO.iter().any(|p| b[i..].starts_with(p)) {
                i += 2;
            } else if c.is_ascii() {
                i += 1;
            } else {
                return bad("a non-ASCII character outside literals");
            }
            Tok::Punct
        };
        out.push(Token {
            kind,
            start,
            end: i,
        });
    }
    Ok(out)
}

struct Src<'a> {
    text: &'a str,
    toks: Vec<Token>,
}

impl<'a> Src<'a> {
    fn s(&self, i: usize) -> &'a str {
        self.toks.get(i).map_or("", |t| &self.text[t.start..t.end])
    }
    fn is(&self, i: usize, p: &str) -> bool {
        self.s(i) == p
    }
    fn ident(&self, i: usize) -> bool {
        self.toks.get(i).is_some_and(|t| t.kind == Tok::Ident)
    }
    /// Index of the token closing the bracket opened at OPEN.
    fn close(&self, open: usize) -> Result<usize, Unrecognised> {
        let (o, c) = match self.s(open) {
            "{" => ("{", "}"),
            "(" => ("(", ")"),
            "[" => ("[", "]"),
            _ => return bad("not a bracket"),
        };
        let mut depth = 0usize;
        for j in open..self.toks.len() {
            let s = self.s(j);
            if s == o {
                depth += 1;
            } else if s == c {
                depth -= 1;
                if depth == 0 {
                    return Ok(j);
                }
            }
        }
        bad("unbalanced brackets")
    }
}

/// Statements (token ranges) of the block whose braces are at OPEN, CLOSE.
fn statements(src: &Src, open: usize, close: usize) -> Result<Vec<(usize, usize)>, Unrecognised> {
    let mut out = Vec::new();
    let mut i = open + 1;
    while i < close {
        let start = i;
        let is_do = src.is(i, "do");
        loop {
            if i >= close {
                return bad("a statement runs past its block");
            }
            match src.s(i) {
                ";" => {
                    i += 1;
                    break;
                }
                "(" | "[" => i = src.close(i)? + 1,
                "{" => {
                    i = src.close(i)? + 1;
                    if src.is(i, ";") {
                        i += 1;
                        break;
                    }
                    if src.is(i, "else") || (is_do && src.is(i, "while")) {
                        continue;
                    }
                    break;
                }
                "}" | ")" | "]" => return bad("unbalanced brackets"),
                _ => i += 1,
            }
        }
        out.push((start, i));
    }
    Ok(out)
}

/// A declaration without initialiser: `TYPE [*…] NAME [[N]];`.
fn declared<'a>(src: &Src<'a>, (a, b): (usize, usize)) -> Option<&'a str> {
    if b - a < 3 || !src.is(b - 1, ";") || ["goto", "return"].contains(&src.s(a)) {
        return None;
    }
    let mut end = b - 1;
    if src.is(end - 1, "]") {
        if !(src.is(end - 3, "[") && src.toks[end - 2].kind == Tok::Number) {
            return None;
        }
        end -= 3;
    }
    let idents = (a..end).filter(|&i| src.ident(i)).count();
    let ok = (a..end).all(|i| src.ident(i) || src.is(i, "*"));
    (ok && idents >= 2 && src.ident(end - 1)).then(|| src.s(end - 1))
}

/// One occurrence of a variable in a statement.
struct Use {
    name: String,
    write: bool,
    /// Written in place: not through a pointer (`*x`, `x->f`, `x[i]`).
    direct: bool,
    in_loop: bool,
}

/// Every identifier of the statement at A..B that is not a member name, a
/// label or a called function, whether it is written, and whether inside a
/// loop body; labels defined and goto targets; the functions called.
#[derive(Default)]
struct Scan {
    uses: Vec<Use>,
    labels: Vec<String>,
    gotos: Vec<String>,
    calls: Vec<String>,
}

/// C keywords and Nim's null constants: never variables.
const KEYWORDS: [&str; 17] = [
    "if",
    "else",
    "while",
    "for",
    "do",
    "switch",
    "case",
    "default",
    "return",
    "break",
    "goto",
    "continue",
    "sizeof",
    "void",
    "NIM_NIL",
    "NIM_TRUE",
    "NIM_FALSE",
];

const ASSIGN: [&str; 11] = [
    "=", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "<<=", ">>=",
];

fn scan(src: &Src, (a, b): (usize, usize)) -> Scan {
    let mut sc = Scan::default();
    let mut loops: Vec<bool> = Vec::new();
    let mut pending_loop = false;
    let mut paren_after_loop: Option<usize> = None;
    let mut i = a;
    while i < b {
        let s = src.s(i);
        match s {
            "while" | "for" => {
                pending_loop = true;
                paren_after_loop = None;
            }
            "do" => pending_loop = true,
            "(" if pending_loop && paren_after_loop.is_none() => {
                paren_after_loop = src.close(i).ok();
            }
            "{" => {
                loops.push(pending_loop || loops.last().copied().unwrap_or(false));
                pending_loop = false;
                paren_after_loop = None;
            }
            "}" => {
                loops.pop();
            }
            ";" if paren_after_loop.is_none_or(|p| i > p) => {
                pending_loop = false;
                paren_after_loop = None;
            }
            _ => {}
        }
        if !src.ident(i) {
            i += 1;
            continue;
        }
        let prev = if i > a { src.s(i - 1) } else { ";" };
        if prev == "." || prev == "->" {
            i += 1;
            continue;
        }
        if prev == "goto" {
            sc.gotos.push(s.to_string());
            i += 1;
            continue;
        }
        // A label: `NAME :` at the start of a statement.
        let at_start = matches!(prev, ";" | "{" | "}");
        if at_start && src.is(i + 1, ":") {
            sc.labels.push(s.to_string());
            i += 2;
            continue;
        }
        if KEYWORDS.contains(&s) {
            i += 1;
            continue;
        }
        if src.is(i + 1, "(") {
            sc.calls.push(s.to_string());
            i += 1;
            continue;
        }
        // Written: its address taken, a deref of it, ++/--, or an
        // assignment to it or a member/element of it.
        let before = if i >= a + 2 { src.s(i - 2) } else { ";" };
        let unary_star = prev == "*" && matches!(before, "(" | "," | "=" | ";" | "{" | "}");
        let mut write = prev == "&" || unary_star || prev == "++" || prev == "--";
        let mut j = i + 1;
        let mut direct = !unary_star;
        loop {
            if (src.is(j, ".") || src.is(j, "->")) && src.ident(j + 1) {
                direct &= src.is(j, ".");
                j += 2;
            } else if src.is(j, "[") {
                direct = false;
                match src.close(j) {
                    Ok(c) if c < b => j = c + 1,
                    _ => break,
                }
            } else if unary_star && src.is(j, ")") {
                j += 1;
            } else {
                break;
            }
        }
        if ASSIGN.contains(&src.s(j)) || src.is(j, "++") || src.is(j, "--") {
            write = true;
        }
        sc.uses.push(Use {
            name: s.to_string(),
            write,
            direct,
            in_loop: loops.last().copied().unwrap_or(false),
        });
        i += 1;
    }
    sc
}

/// File-scope variables of the C file: name → thread-local; and those of a
/// pointer type (refc's strings, seqs and refs: a call can change what they
/// point to without taking their address).
fn file_variables(src: &Src) -> (HashMap<String, bool>, HashSet<String>) {
    let mut vars = HashMap::new();
    let mut pointers = HashSet::new();
    let mut i = 0;
    let n = src.toks.len();
    while i < n {
        let start = i;
        let mut end = None;
        let mut eq = None;
        while i < n {
            match src.s(i) {
                ";" => {
                    end = Some(i);
                    i += 1;
                    break;
                }
                "=" if eq.is_none() => {
                    eq = Some(i);
                    i += 1;
                }
                "{" | "(" | "[" => {
                    let Ok(c) = src.close(i) else {
                        return (vars, pointers);
                    };
                    let function =
                        src.is(i, "{") && i > start && src.is(i - 1, ")") && eq.is_none();
                    i = c + 1;
                    if function {
                        break;
                    }
                }
                _ => i += 1,
            }
        }
        let Some(end) = end else { continue };
        let stop = eq.unwrap_or(end);
        let words: Vec<&str> = (start..stop).map(|k| src.s(k)).collect();
        let skip = ["(", "{", "typedef", "NIM_CONST", "const", "extern\"C\""];
        if words.iter().any(|w| skip.contains(w)) {
            continue;
        }
        let mut k = stop;
        if k > start && src.is(k - 1, "]") {
            while k > start && !src.is(k - 1, "[") {
                k -= 1;
            }
            k = k.saturating_sub(1);
        }
        // refc's type info (`NTI…`) is DatInit's, written there only.
        if k > start + 1 && src.ident(k - 1) && !src.s(k - 1).starts_with("NTI") {
            vars.insert(src.s(k - 1).to_string(), words.contains(&"NIM_THREADVAR"));
            if words.contains(&"*") {
                pointers.insert(src.s(k - 1).to_string());
            }
        }
    }
    (vars, pointers)
}

/// The globals each refc marker function (`static N_NIMCALL(void,
/// TM…)(void) { nimGCvisit(…G…); }`) visits.
fn markers(src: &Src, vars: &HashMap<String, bool>) -> HashMap<String, Vec<String>> {
    let mut out = HashMap::new();
    for i in 0..src.toks.len() {
        if !(src.is(i, "N_NIMCALL") && src.is(i + 1, "(") && src.is(i + 2, "void")) {
            continue;
        }
        let name = src.s(i + 4);
        if !(src.is(i + 3, ",") && src.is(i + 5, ")") && src.is(i + 6, "(")) {
            continue;
        }
        let Ok(pc) = src.close(i + 6) else { continue };
        if !src.is(pc + 1, "{") {
            continue;
        }
        let Ok(bc) = src.close(pc + 1) else { continue };
        let body: Vec<&str> = (pc + 2..bc).map(|k| src.s(k)).collect();
        if !body.contains(&"nimGCvisit") {
            continue;
        }
        let gs: Vec<String> = body
            .iter()
            .filter(|w| vars.contains_key(**w))
            .map(|w| w.to_string())
            .collect();
        out.insert(name.to_string(), gs);
    }
    out
}

/// What a rewrite produced.
#[derive(Debug)]
pub struct Rewritten {
    /// The new C text.
    pub text: String,
    /// Units guarded by "all these globals are new" (for tests and logs).
    pub initialisers: Vec<Vec<String>>,
    /// Units that run at the first load only.
    pub first_load_only: usize,
}

/// Calls a statement that runs always may make.
const HARMLESS_CALLS: [&str; 8] = [
    "nimZeroMem",
    "nimln_",
    "nimlf_",
    "NIM_UNLIKELY",
    "sizeof",
    "NIM_ALIGNOF",
    "nimfr_",
    "nimErrorFlag",
];
/// Nim's frame and error-flag locals: shared by every statement, linking none.
const FRAME_LOCALS: [&str; 2] = ["nimErr_", "FR_"];

/// Rewrites the `Init000` of Nim's C file TEXT (see the module doc).
///
/// # Errors
/// The file or its `Init000` has a shape this does not know.
pub fn rewrite(text: &str) -> Result<Option<Rewritten>, Unrecognised> {
    rewrite_with_source(text, None)
}

/// [`rewrite`] with the module's Nim source (the file its frame names),
/// which tells a statement declaring a global (`var x = …`, a `let`
/// section's line) from other top-level statements.
///
/// # Errors
/// As [`rewrite`].
pub fn rewrite_with_source(
    text: &str,
    source: Option<&str>,
) -> Result<Option<Rewritten>, Unrecognised> {
    let init = rewrite_init(text, source)?;
    let (text, lets) = unconst_lets(init.as_ref().map_or(text, |rw| &rw.text));
    Ok(match init {
        Some(rw) => Some(Rewritten { text, ..rw }),
        None if lets > 0 => Some(Rewritten {
            text,
            initialisers: Vec::new(),
            first_load_only: 0,
        }),
        None => None,
    })
}

/// Nim's `let` globals with constant initialisers (`N_LIB_PRIVATE NIM_CONST
/// NI g__m_3 = ((NI) 1000);`) made writable: a `let` is a global whose value
/// the module computed (nimhcr keeps it across reloads as any global), not
/// a constant of the code; read-only data would take the new image's value.
/// Returns the text and how many were changed.
fn unconst_lets(text: &str) -> (String, usize) {
    let mut out = String::with_capacity(text.len());
    let mut n = 0;
    for line in text.split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix("N_LIB_PRIVATE NIM_CONST ") {
            let decl = rest.split(" = ").next().unwrap_or("");
            let name = decl.rsplit(' ').next().unwrap_or("");
            let nim_global = name.rsplit_once('_').is_some_and(|(stem, k)| {
                stem.contains("__") && !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit())
            });
            if nim_global && rest.contains(" = ") {
                out.push_str("N_LIB_PRIVATE ");
                out.push_str(rest);
                n += 1;
                continue;
            }
        }
        out.push_str(line);
    }
    (out, n)
}

/// Whether `var`/`let` starts the top-level Nim statement holding line L
/// (1-based) of source LINES: the nearest line at or above it that is not
/// indented (a declaration, a `var` section, or a continuation of one).
fn declares_at(lines: &[&str], l: usize) -> bool {
    let Some(upto) = l.checked_sub(1).filter(|&i| i < lines.len()) else {
        return false;
    };
    lines[..=upto]
        .iter()
        .rev()
        .find(|line| {
            let t = line.trim_start();
            !t.is_empty() && !t.starts_with('#') && line.len() == t.len()
        })
        .is_some_and(|head| is_declaration(head))
}

fn is_declaration(line: &str) -> bool {
    ["var", "let"].iter().any(|k| {
        line.strip_prefix(k)
            .is_some_and(|r| r.is_empty() || r.starts_with([' ', '\t', '(', '#']))
    })
}

/// The identifiers on the declaration lines of source LINES (every line of
/// a top-level `var`/`let` statement): the Nim names of declared globals.
fn declared_names<'a>(lines: &[&'a str]) -> HashSet<&'a str> {
    let mut out = HashSet::new();
    let mut in_decl = false;
    for line in lines {
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if line.len() == t.len() {
            in_decl = is_declaration(line);
        }
        if in_decl {
            let code = line.split('#').next().unwrap_or("");
            out.extend(
                code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .filter(|w| !w.is_empty()),
            );
        }
    }
    out
}

/// STMTS (of block number BLOCK) into OUT, `(statement, block number)`,
/// with each plain nested block `{ … }` that holds ORC/ARC's exit label
/// (`{ LA1_:; }`, the end of a scope of temporaries) opened into its own
/// statements: the Nim statements inside it are top-level statements too.
fn flatten(
    src: &Src,
    stmts: &[(usize, usize)],
    block: usize,
    next_block: &mut usize,
    out: &mut Vec<((usize, usize), usize)>,
) -> Result<(), Unrecognised> {
    for &(a, b) in stmts {
        let plain = src.is(a, "{") && src.close(a).is_ok_and(|c| c + 1 == b);
        if plain {
            let inner = statements(src, a, b - 1)?;
            let exit_label = inner.iter().any(|&(x, y)| {
                y - x == 5 && src.is(x, "{") && src.is(x + 2, ":") && src.is(x + 3, ";")
            });
            if exit_label {
                let id = *next_block;
                *next_block += 1;
                flatten(src, &inner, id, next_block, out)?;
                continue;
            }
        }
        out.push(((a, b), block));
    }
    Ok(())
}

/// The `Init000` part of [`rewrite`].
fn rewrite_init(text: &str, source: Option<&str>) -> Result<Option<Rewritten>, Unrecognised> {
    let source_lines: Option<Vec<&str>> = source.map(|s| s.lines().collect());
    let Some(hpos) = text.find("dotnim_Init000)(void) {") else {
        return Ok(None);
    };
    let line_start = text[..hpos].rfind('\n').map_or(0, |p| p + 1);
    let header = &text[line_start..hpos];
    let Some(prefix) = header
        .strip_prefix("N_LIB_PRIVATE N_NIMCALL(void, ")
        .filter(|p| {
            p.starts_with("atm") && p.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
        })
    else {
        return bad("Init000's header is not `N_LIB_PRIVATE N_NIMCALL(void, atm…Init000)(void) {`");
    };
    let prefix = format!("{prefix}dotnim_");
    if text.contains(&format!("{prefix}HcrInitBody000")) {
        return bad("already rewritten");
    }
    let src = Src {
        text,
        toks: lex(text)?,
    };
    let open_pos = hpos + "dotnim_Init000)(void) ".len();
    let Some(fopen) = src.toks.iter().position(|t| t.start == open_pos) else {
        return bad("Init000's body not found");
    };
    let fclose = src.close(fopen)?;
    let (vars, pointers) = file_variables(&src);
    // The module's own file, as its frame names it: `nimfr_("m", "FILE")`.
    let own_file = (fopen..fclose)
        .find(|&k| src.is(k, "nimfr_") && src.is(k + 1, "(") && src.is(k + 3, ","))
        .map(|k| src.s(k + 4).to_string());
    let marks = markers(&src, &vars);
    // The function body: blocks only.
    let mut blocks = Vec::new();
    let mut i = fopen + 1;
    while i < fclose {
        if !src.is(i, "{") {
            return bad(format!("Init000 holds `{}` outside a block", src.s(i)));
        }
        let c = src.close(i)?;
        blocks.push((i, c));
        i = c + 1;
    }
    // Every local the function declares (temporaries).
    let mut locals: HashSet<String> = HashSet::new();
    let mut block_stmts = Vec::new();
    for &(o, c) in &blocks {
        let stmts = statements(&src, o, c)?;
        for &st in &stmts {
            if let Some(n) = declared(&src, st) {
                locals.insert(n.to_string());
            }
        }
        // Locals of nested blocks.
        for k in o + 1..c {
            if src.is(k, "{") {
                if let Ok(kc) = src.close(k) {
                    if let Ok(inner) = statements(&src, k, kc) {
                        for st in inner {
                            if let Some(n) = declared(&src, st) {
                                locals.insert(n.to_string());
                            }
                        }
                    }
                }
            }
        }
        let mut flat = Vec::new();
        let mut next_block = 1;
        flatten(&src, &stmts, 0, &mut next_block, &mut flat)?;
        block_stmts.push(flat);
    }
    for f in FRAME_LOCALS {
        locals.remove(f);
    }
    for n in &locals {
        if vars.contains_key(n) {
            return bad(format!("local `{n}` shadows a global"));
        }
    }
    let newlines: Vec<usize> = text.match_indices('\n').map(|(p, _)| p).collect();
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let mut initialisers = Vec::new();
    let mut first_load_only = 0;
    for flat in &block_stmts {
        let stmts: Vec<(usize, usize)> = flat.iter().map(|f| f.0).collect();
        let block_of: Vec<usize> = flat.iter().map(|f| f.1).collect();
        #[derive(Clone, Copy, PartialEq)]
        enum Kind {
            Keep,
            Always,
            Guard,
        }
        let mut kind = vec![Kind::Guard; stmts.len()];
        let scans: Vec<Scan> = stmts.iter().map(|&st| scan(&src, st)).collect();
        // ORC/ARC's exit label: `{ LA1_:; }` followed by the destruction
        // of temporaries only (then the error check and BeforeRet_): every
        // raising call jumps there. It and what follows run always (the
        // temporaries they destroy start zeroed), and a jump to it leaves
        // its unit as a return does.
        let is_ret = |k: usize| scans[k].labels.iter().any(|l| l == "BeforeRet_");
        let mut exits: Vec<(usize, usize, String)> = Vec::new();
        for (k, &(a, b)) in stmts.iter().enumerate() {
            let w: Vec<&str> = (a..b).map(|t| src.s(t)).collect();
            if w.len() == 5 && w[0] == "{" && w[2] == ":" && w[3] == ";" && w[4] == "}" {
                // Its cleanup: blocks that only destroy temporaries, and
                // error checks; what follows is ordinary code again.
                let cleanup_like = |j: usize| {
                    let sc = &scans[j];
                    let (a, b) = stmts[j];
                    let block = src.is(a, "{") && src.close(a).is_ok_and(|c| c + 1 == b);
                    let frame_only = sc
                        .uses
                        .iter()
                        .all(|u| FRAME_LOCALS.contains(&u.name.as_str()));
                    sc.labels.is_empty()
                        && sc.gotos.iter().all(|g| g == "BeforeRet_")
                        && sc.calls.iter().all(|c| {
                            c.starts_with("eqdestroy_") || HARMLESS_CALLS.contains(&c.as_str())
                        })
                        && sc.uses.iter().all(|u| {
                            FRAME_LOCALS.contains(&u.name.as_str()) || locals.contains(&u.name)
                        })
                        && (block || frame_only)
                };
                let end = (k + 1..stmts.len())
                    .find(|&j| is_ret(j) || block_of[j] != block_of[k] || !cleanup_like(j))
                    .unwrap_or(stmts.len());
                let cleanup = end > k + 1 || end == stmts.len() || is_ret(end);
                if cleanup {
                    exits.push((k, end, w[1].to_string()));
                }
            }
        }
        let leaves = |g: &String| g == "BeforeRet_" || exits.iter().any(|e| &e.2 == g);
        let mut epilogue = false;
        for (k, &st) in stmts.iter().enumerate() {
            let sc = &scans[k];
            if exits.iter().any(|e| (e.0..e.1).contains(&k)) {
                kind[k] = Kind::Keep;
                continue;
            }
            if declared(&src, st).is_some() {
                kind[k] = Kind::Keep;
                continue;
            }
            if sc.labels.iter().any(|l| l == "BeforeRet_") {
                if sc.labels.len() != 1 || st.1 - st.0 != 3 {
                    return bad("BeforeRet_ labels a statement");
                }
                epilogue = true;
                kind[k] = Kind::Keep;
                continue;
            }
            let words: Vec<&str> = (st.0..st.1).map(|t| src.s(t)).collect();
            if words == ["popFrame", "(", ")", ";"] {
                // The frame `nimfr_` pushed goes whatever ran.
                if k + 1 != stmts.len() || block_of[k] != 0 {
                    return bad("popFrame() before the end of its block");
                }
                kind[k] = Kind::Keep;
                continue;
            }
            if epilogue {
                if words != ["popFrame", "(", ")", ";"] {
                    return bad("a statement after BeforeRet_ other than popFrame()");
                }
                kind[k] = Kind::Keep;
                continue;
            }
            let calls_ok = sc
                .calls
                .iter()
                .all(|c| HARMLESS_CALLS.contains(&c.as_str()));
            let gotos_ok = sc.gotos.iter().all(leaves);
            let locals_only = sc.uses.iter().all(|u| {
                FRAME_LOCALS.contains(&u.name.as_str())
                    || (locals.contains(&u.name) && u.write && u.direct)
                    || (!locals.contains(&u.name) && !vars.contains_key(&u.name))
            });
            let no_globals = sc.uses.iter().all(|u| !vars.contains_key(&u.name));
            if calls_ok && gotos_ok && locals_only && no_globals && sc.labels.is_empty() {
                kind[k] = Kind::Always;
            }
        }
        // Units: union-find over statements by shared locals and goto ranges.
        let n = stmts.len();
        let mut parent: Vec<usize> = (0..n).collect();
        fn find(p: &mut [usize], mut x: usize) -> usize {
            while p[x] != x {
                p[x] = p[p[x]];
                x = p[x];
            }
            x
        }
        let union = |p: &mut Vec<usize>, a: usize, b: usize| {
            let (ra, rb) = (find(p, a), find(p, b));
            if ra != rb {
                p[ra] = rb;
            }
        };
        let mut by_local: HashMap<&str, usize> = HashMap::new();
        let mut label_at: HashMap<&str, usize> = HashMap::new();
        for (k, sc) in scans.iter().enumerate() {
            for l in &sc.labels {
                label_at.insert(l.as_str(), k);
            }
        }
        // Nim's line markers of the module's own file (stack traces on, the
        // default) start its top-level statements: everything between two
        // is one Nim statement. Without them, statements that change (or,
        // for a pointer, use) one global are one unit.
        let mut seg_line: HashMap<usize, usize> = HashMap::new();
        // (A marker repeating the line before it, as a macro's expansion
        // writes, continues the statement.)
        let segment: Vec<usize> = {
            let mut seg = 0;
            let mut last_line = None;
            (0..n)
                .map(|k| {
                    let (a, b) = stmts[k];
                    if src.is(a, "nimln_")
                        && src.is(a + 1, "(")
                        && b >= a + 6
                        && own_file.as_deref() == Some(src.s(a + 4))
                        && last_line != Some(src.s(a + 2))
                    {
                        seg += 1;
                        last_line = Some(src.s(a + 2));
                        if let Ok(l) = src.s(a + 2).parse() {
                            seg_line.insert(seg, l);
                        }
                    }
                    seg
                })
                .collect()
        };
        // A segment whose Nim line declares globals (`var`/`let`).
        let markers_on = segment.last().is_some_and(|&s| s > 0);
        // Without markers, only the source's declared names tell.
        let declares = |k: usize| match (&source_lines, seg_line.get(&segment[k])) {
            (Some(lines), Some(&l)) => declares_at(lines, l),
            (Some(_), None) => markers_on && segment[k] == 0,
            (None, _) => true,
        };
        let mut by_segment: HashMap<usize, usize> = HashMap::new();
        let mut by_global: HashMap<&str, usize> = HashMap::new();
        for k in 0..n {
            if kind[k] != Kind::Guard {
                continue;
            }
            if markers_on {
                match by_segment.get(&segment[k]) {
                    Some(&o) => union(&mut parent, o, k),
                    None => {
                        by_segment.insert(segment[k], k);
                    }
                }
            } else {
                for u in &scans[k].uses {
                    if vars.contains_key(&u.name) && (u.write || pointers.contains(&u.name)) {
                        match by_global.get(u.name.as_str()) {
                            Some(&o) => union(&mut parent, o, k),
                            None => {
                                by_global.insert(u.name.as_str(), k);
                            }
                        }
                    }
                }
            }
        }
        // C statements Nim wrote on one line belong to one Nim statement.
        let line_of = |k: usize| {
            let at = src.toks[stmts[k].0].start;
            newlines.partition_point(|&p| p < at)
        };
        let mut by_line: HashMap<usize, usize> = HashMap::new();
        for k in 0..n {
            if kind[k] != Kind::Guard {
                continue;
            }
            match by_line.get(&line_of(k)) {
                Some(&o) => union(&mut parent, o, k),
                None => {
                    by_line.insert(line_of(k), k);
                }
            }
            for u in &scans[k].uses {
                if locals.contains(&u.name) {
                    match by_local.get(u.name.as_str()) {
                        Some(&o) => union(&mut parent, o, k),
                        None => {
                            by_local.insert(u.name.as_str(), k);
                        }
                    }
                }
            }
            for g in &scans[k].gotos {
                if leaves(g) {
                    continue;
                }
                let Some(&t) = label_at.get(g.as_str()) else {
                    return bad(format!("goto {g} leaves its block"));
                };
                if kind[t] != Kind::Guard {
                    return bad(format!("goto {g} reaches a label that always runs"));
                }
                let (lo, hi) = (k.min(t), k.max(t));
                for (m, km) in kind.iter().enumerate().take(hi + 1).skip(lo) {
                    if *km == Kind::Guard {
                        union(&mut parent, m, k);
                    }
                }
            }
        }
        // Each unit's globals.
        let mut unit_writes: HashMap<usize, (BTreeSet<String>, bool, bool)> = HashMap::new();
        // Per unit: the globals it assigns outside loops, and whether one
        // of its statements is a declaration.
        let mut unit_top: HashMap<usize, (BTreeSet<String>, bool)> = HashMap::new();
        for k in 0..n {
            if kind[k] != Kind::Guard {
                continue;
            }
            let r = find(&mut parent, k);
            let e = unit_writes.entry(r).or_default();
            let sc = &scans[k];
            let t = unit_top.entry(r).or_default();
            t.1 |= declares(k) || sc.calls.iter().any(|c| c == "nimRegisterGlobalMarker");
            for u in sc.uses.iter().filter(|u| u.write && !u.in_loop) {
                if vars.contains_key(&u.name) {
                    t.0.insert(u.name.clone());
                }
            }
            // Any use of a pointer global may change what it points to.
            for u in sc
                .uses
                .iter()
                .filter(|u| u.write || pointers.contains(&u.name))
            {
                if let Some(&tls) = vars.get(&u.name) {
                    e.0.insert(u.name.clone());
                    e.1 |= !u.in_loop && u.write;
                    e.2 |= tls;
                }
            }
            if sc.calls.iter().any(|c| c == "nimRegisterGlobalMarker") {
                let mut found = false;
                for (mk, gs) in &marks {
                    if (st_words(&src, stmts[k])).iter().any(|w| w == mk) {
                        for g in gs {
                            e.0.insert(g.clone());
                            t.0.insert(g.clone());
                            e.2 |= vars.get(g).copied().unwrap_or(true);
                        }
                        e.1 |= !gs.is_empty();
                        found = true;
                    }
                }
                if !found {
                    e.2 = true; // unknown marker: first load only
                }
            }
        }
        // Globals some declaration assigns: a unit that assigns none of
        // them (only a template's hidden variables, as `toSeq` or `&"…"`
        // in an `echo`) is a top-level statement.
        let mut declared_globals: HashSet<&String> = unit_top
            .values()
            .filter(|t| t.1)
            .flat_map(|t| t.0.iter())
            .collect();
        // Globals declared without a run-time initialiser (`var a: int`)
        // have no statement of their own: their Nim names are on
        // declaration lines (a template's hidden variables are not).
        if let Some(lines) = &source_lines {
            let names = declared_names(lines);
            declared_globals.extend(unit_top.values().flat_map(|t| t.0.iter()).filter(|g| {
                g.split_once("__")
                    .is_some_and(|(nim, _)| names.contains(nim))
            }));
        }
        let mut seen_units = HashSet::new();
        for k in 0..n {
            if kind[k] != Kind::Guard {
                continue;
            }
            let r = find(&mut parent, k);
            let (gs, top, tls) = &unit_writes[&r];
            let declares_one = unit_top
                .get(&r)
                .is_some_and(|t| t.0.iter().any(|g| declared_globals.contains(g)));
            let cond = if *top && declares_one && !*tls && !gs.is_empty() {
                let addrs: Vec<String> = gs.iter().map(|g| format!("(void*)&{g}")).collect();
                if seen_units.insert(r) {
                    initialisers.push(gs.iter().cloned().collect());
                }
                format!(
                    "!hcrReinit_ || hcr_nim_new_globals({}, (void *const[]){{{}}})",
                    gs.len(),
                    addrs.join(", ")
                )
            } else {
                if seen_units.insert(r) {
                    first_load_only += 1;
                }
                "!hcrReinit_".to_string()
            };
            let (a, b) = stmts[k];
            let (sa, sb) = (src.toks[a].start, src.toks[b - 1].end);
            edits.push((sa, sa, format!("if ({cond}) {{ ")));
            edits.push((sb, sb, " }".to_string()));
        }
    }
    // The header becomes the body function's; the entries follow it.
    let body_name = format!("{prefix}HcrInitBody000");
    edits.push((
        line_start,
        hpos + "dotnim_Init000)(void) ".len(),
        format!(
            "extern int hcr_nim_new_globals(int n, void *const *globals);\n\
             static N_NIMCALL(void, {body_name})(int hcrReinit_) "
        ),
    ));
    let after = src.toks[fclose].end;
    edits.push((
        after,
        after,
        format!(
            "\nN_LIB_PRIVATE N_NIMCALL(void, {prefix}Init000)(void) {{ {body_name}(0); }}\n\
             N_LIB_PRIVATE N_NIMCALL(void, {prefix}HcrReinit000)(void) {{ {body_name}(1); }}\n"
        ),
    ));
    edits.sort_by_key(|e| (e.0, e.1));
    let mut out = String::with_capacity(text.len() + edits.len() * 64);
    let mut at = 0;
    for (a, b, s) in edits {
        if a < at {
            return bad("overlapping edits");
        }
        out.push_str(&text[at..a]);
        out.push_str(&s);
        at = b;
    }
    out.push_str(&text[at..]);
    Ok(Some(Rewritten {
        text: out,
        initialisers,
        first_load_only,
    }))
}

fn st_words(src: &Src, (a, b): (usize, usize)) -> Vec<String> {
    (a..b).map(|k| src.s(k).to_string()).collect()
}

/// The compile commands of the nimcache DIR: C file → command. Nim's JSON
/// (each `*.json` there) names only the files its last build compiled, so
/// the commands are also kept in `.hcr/commands.json` for the next link.
fn compile_commands(dir: &Path) -> HashMap<PathBuf, String> {
    let kept_path = dir.join(".hcr").join("commands.json");
    let mut out: HashMap<PathBuf, String> = std::fs::read_to_string(&kept_path)
        .ok()
        .and_then(|t| serde_json::from_str::<HashMap<String, String>>(&t).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|(c, cmd)| (PathBuf::from(c), cmd))
        .collect();
    let mut changed = false;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue;
        };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let Some(list) = json.get("compile").and_then(|c| c.as_array()) else {
            continue;
        };
        for pair in list {
            if let (Some(c), Some(cmd)) = (
                pair.get(0).and_then(|v| v.as_str()),
                pair.get(1).and_then(|v| v.as_str()),
            ) {
                if out.get(Path::new(c)).map(String::as_str) != Some(cmd) {
                    out.insert(PathBuf::from(c), cmd.to_string());
                    changed = true;
                }
            }
        }
    }
    if changed {
        let kept: std::collections::BTreeMap<String, &String> = out
            .iter()
            .filter_map(|(c, cmd)| Some((c.to_str()?.to_string(), cmd)))
            .collect();
        if let Ok(text) = serde_json::to_string_pretty(&kept) {
            let _ = std::fs::create_dir_all(dir.join(".hcr"));
            let tmp = kept_path.with_extension("json.tmp");
            if std::fs::write(&tmp, text).is_ok() {
                let _ = std::fs::rename(&tmp, &kept_path);
            }
        }
    }
    out
}

/// Whether the module of Nim object file name NAME (`@m…​.nim.c.o`) is
/// one of Nim's library modules (under the `-I` directory of COMMAND that
/// holds `nimbase.h`), which nobody edits: they are left as Nim built them.
fn in_nim_library(name: &str, command: &str, project: &Path) -> bool {
    let Some(rel) = name.strip_prefix("@m").and_then(|n| n.strip_suffix(".c.o")) else {
        return false;
    };
    let rel = rel.replace("@s", "/");
    let mut path = project.to_path_buf();
    for c in Path::new(&rel).components() {
        match c {
            std::path::Component::ParentDir => {
                path.pop();
            }
            std::path::Component::Normal(x) => path.push(x),
            _ => {}
        }
    }
    command
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("-I"))
        .map(|d| d.trim_matches(['\'', '"']))
        .filter(|d| Path::new(d).join("nimbase.h").is_file())
        .any(|d| path.starts_with(d))
}

/// What [`prepare`] did.
#[derive(Debug, Default)]
pub struct Prepared {
    /// The objects to link.
    pub inputs: Vec<PathBuf>,
    /// Modules left as Nim built them, with the reason.
    pub warnings: Vec<String>,
    /// Rewritten modules compiled now (not found in the cache).
    pub compiled: usize,
    /// Rewritten modules found in the cache.
    pub cached: usize,
}

/// Whether a link of `inputs` rewrites Nim modules (see [`prepare`]).
pub fn has_nim_modules(inputs: &[PathBuf]) -> bool {
    std::env::var_os("HCR_NIM_INIT").is_none_or(|v| v != "off")
        && inputs.iter().any(|obj| {
            obj.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_nim_module)
        })
}

fn is_nim_module(name: &str) -> bool {
    name.starts_with("@m") && name.ends_with(".nim.c.o")
}

/// INPUTS with each Nim module's object replaced by the object of its
/// rewritten C file (see the module doc); anything else is kept as is.
///
/// `HCR_NIM_INIT=off` in the environment links Nim's objects as they are.
pub fn prepare(inputs: &[PathBuf]) -> Prepared {
    use rayon::prelude::*;
    if std::env::var_os("HCR_NIM_INIT").is_some_and(|v| v == "off") {
        return Prepared {
            inputs: inputs.to_vec(),
            ..Default::default()
        };
    }
    let mut commands: HashMap<PathBuf, HashMap<PathBuf, String>> = HashMap::new();
    let mut jobs: Vec<(usize, PathBuf, String)> = Vec::new();
    let mut missing = Vec::new();
    for (i, obj) in inputs.iter().enumerate() {
        let Some(name) = obj.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !is_nim_module(name) {
            continue;
        }
        let dir = obj.parent().unwrap_or(Path::new("."));
        let cmds = commands
            .entry(dir.to_path_buf())
            .or_insert_with(|| compile_commands(dir));
        let c_file = obj.with_extension("");
        let Some(cmd) = cmds.get(&c_file).or_else(|| {
            std::fs::canonicalize(&c_file)
                .ok()
                .and_then(|c| cmds.get(&c))
        }) else {
            // A project module (no `@s`: not under another directory)
            // with top-level code, whose command Nim's JSON never named.
            let init = std::fs::read_to_string(&c_file).is_ok_and(|t| t.contains("dotnim_Init000"));
            if !name.contains("@s") && init {
                missing.push(i);
            }
            continue;
        };
        jobs.push((i, c_file, cmd.clone()));
    }
    let results: Vec<(usize, RewriteResult)> = jobs
        .into_par_iter()
        .map(|(i, c_file, cmd)| (i, rewrite_one(&inputs[i], &c_file, &cmd)))
        .collect();
    let mut out = Prepared {
        inputs: inputs.to_vec(),
        ..Default::default()
    };
    for i in missing {
        out.warnings.push(format!(
            "Nim module {}: its Init000 is linked as Nim wrote it (no compile command for it in the nimcache's JSON: build once with a clean nimcache); a global new in a reload whose initialiser runs at run time will start zeroed",
            module_of(&inputs[i])
        ));
    }
    for (i, r) in results {
        match r {
            Ok(Some((obj, compiled))) => {
                out.inputs[i] = obj;
                if compiled {
                    out.compiled += 1;
                } else {
                    out.cached += 1;
                }
            }
            Ok(None) => {}
            Err(why) => out.warnings.push(format!(
                "Nim module {}: its Init000 is linked as Nim wrote it ({why}); a global new in a reload whose initialiser runs at run time will start zeroed",
                module_of(&inputs[i])
            )),
        }
    }
    nim_order(inputs, &mut out.inputs);
    out
}

/// Puts the Nim objects of OUT (the rewritten INPUTS) in the order Nim
/// initialises their modules (the main module's `PreMain`: DatInits, then
/// `PreMainInner`'s Inits), in the slots they held: hcr's init order (and
/// with it the order of reload handlers) follows the input order among
/// modules that do not reference one another, and Nim's imports are not
/// all C references (an unused import is none).
fn nim_order(inputs: &[PathBuf], out: &mut [PathBuf]) {
    let mut nim: Vec<(usize, Option<String>)> = Vec::new();
    let mut pre_main = None;
    for (i, obj) in inputs.iter().enumerate() {
        let name = obj.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !is_nim_module(name) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(obj.with_extension("")) else {
            return;
        };
        let prefix = ["dotnim_Init000)(void) {", "dotnim_DatInit000)(void) {"]
            .iter()
            .find_map(|h| {
                let at = text.find(h)?;
                let head = &text[text[..at].rfind(", ")? + 2..at];
                Some(format!("{head}dotnim_"))
            });
        if let Some(at) = text.find("\nN_LIB_PRIVATE void PreMain(void) {") {
            let inner = text.find("\nN_LIB_PRIVATE void PreMainInner(void) {");
            let body = |from: usize| {
                let b = &text[from..];
                b[..b.find("\n}").unwrap_or(b.len())].to_string()
            };
            pre_main = Some((inner.map(body).unwrap_or_default(), body(at)));
        }
        nim.push((i, prefix));
    }
    let Some((inner, outer)) = pre_main else {
        return;
    };
    let rank = |p: &Option<String>| -> (u8, usize) {
        let Some(p) = p else { return (0, 0) };
        if let Some(at) = inner.find(&format!("{p}Init000()")) {
            return (2, at);
        }
        match outer.find(&format!("{p}DatInit000()")) {
            Some(at) => (1, at),
            None => (3, 0), // the main module
        }
    };
    let mut sorted: Vec<&(usize, Option<String>)> = nim.iter().collect();
    sorted.sort_by_key(|(i, p)| (rank(p), *i));
    let objects: Vec<PathBuf> = sorted.iter().map(|(i, _)| out[*i].clone()).collect();
    for ((slot, _), obj) in nim.iter().zip(objects) {
        out[*slot] = obj;
    }
}

fn module_of(obj: &Path) -> String {
    let n = obj
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    n.strip_suffix(".c.o").unwrap_or(&n).to_string()
}

/// The Nim file of a module's C TEXT, as its init's frame names it
/// (`nimfr_("logic", "/p/logic.nim")`; stack traces on).
fn nim_source_path(text: &str) -> Option<String> {
    let init = text.find("dotnim_Init000)(void) {")?;
    let body = &text[init..];
    let body = &body[..body.find("\n}\n").unwrap_or(body.len())];
    let at = body.find("nimfr_(\"")?;
    let rest = &body[at..];
    let second = rest.find("\", \"")? + 4;
    let end = rest[second..].find('"')?;
    let path = &rest[second..second + end];
    (!path.contains('\\')).then(|| path.to_string())
}

/// The object to link and whether it was compiled now; `None` for a module
/// that needs nothing; why a module is left as Nim built it.
type RewriteResult = Result<Option<(PathBuf, bool)>, String>;

/// Rewrites and compiles one module.
fn rewrite_one(obj: &Path, c_file: &Path, cmd: &str) -> RewriteResult {
    let name = obj
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("object name is not UTF-8")?;
    let c_name = c_file.to_str().ok_or("C file name is not UTF-8")?;
    if !cmd.contains(c_name) {
        return Err("its compile command does not name its C file".into());
    }
    let nimcache = obj.parent().unwrap_or(Path::new("."));
    let project = nimcache.parent().unwrap_or(Path::new("."));
    let project = cmd
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("-I"))
        .map(|d| Path::new(d.trim_matches(['\'', '"'])))
        .rfind(|d| !d.join("nimbase.h").is_file())
        .unwrap_or(project);
    if in_nim_library(name, cmd, project) {
        return Ok(None);
    }
    let text = std::fs::read_to_string(c_file).map_err(|e| format!("cannot read {c_name}: {e}"))?;
    // The Nim file: as the frame names it, or (no stack traces) from the
    // module's name, `@m` + its path from the project with `/` as `@s`.
    let source = nim_source_path(&text)
        .map(PathBuf::from)
        .or_else(|| {
            let rel = name.strip_prefix("@m")?.strip_suffix(".c.o")?;
            (!rel.contains("@s")).then(|| project.join(rel))
        })
        .and_then(|p| std::fs::read_to_string(p).ok());
    let rw = match rewrite_with_source(&text, source.as_deref()) {
        Ok(Some(rw)) => rw,
        Ok(None) => return Ok(None),
        Err(Unrecognised(why)) => return Err(why),
    };
    let hash = twox_hash::XxHash3_128::oneshot(format!("{cmd}\n{}", rw.text).as_bytes());
    let cache = nimcache.join(".hcr");
    let dir = cache.join(format!("{hash:032x}"));
    let new_obj = dir.join(name);
    if new_obj.is_file() {
        return Ok(Some((new_obj, false)));
    }
    let c_base = c_file.file_name().ok_or("no C file name")?;
    let new_c = dir.join(c_base);
    let new_c_name = new_c.to_str().ok_or("cache path is not UTF-8")?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::fs::write(&new_c, &rw.text).map_err(|e| format!("cannot write {new_c_name}: {e}"))?;
    let tmp_obj = format!("{new_c_name}.tmp.o");
    let command = cmd
        .replace(&format!("{c_name}.o"), &tmp_obj)
        .replace(c_name, new_c_name);
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&command)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run its compile command: {e}"))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&dir);
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().find(|l| l.contains("error")).unwrap_or("");
        return Err(format!("the rewritten C did not compile: {}", first.trim()));
    }
    std::fs::rename(&tmp_obj, &new_obj).map_err(|e| format!("cannot rename {tmp_obj}: {e}"))?;
    // Older rewrites of this module go.
    if let Ok(rd) = std::fs::read_dir(&cache) {
        for e in rd.flatten() {
            let p = e.path();
            if p != dir && p.join(name).is_file() {
                let _ = std::fs::remove_dir_all(&p);
            }
        }
    }
    Ok(Some((new_obj, true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORC: &str = r#"#include "nimbase.h"
N_LIB_PRIVATE tySequence__sM history__logic_11;
N_LIB_PRIVATE NI total__logic_6;
N_LIB_PRIVATE NIM_THREADVAR NI tv__logic_9;
static NIM_CONST tyTuple__Q TM__p_8 = {((NI) 1), {3, (NimStrPayload*)&TM__p_7}};
extern NI other__m_3;
N_LIB_PRIVATE N_NIMCALL(void, step__logic_3)(void) {
	total__logic_6 = 0;
}
N_LIB_PRIVATE N_NIMCALL(void, atmlogicdotnim_Init000)(void) {
{
	NimStringV2 colontmpD_;
	tyObject_Thing* T1_;
	NI TM__p_3;
NIM_BOOL* nimErr_;
	nimfr_("logic", "/tmp/n2/logic.nim");
nimErr_ = nimErrorFlag();
	nimln_(6, "/tmp/n2/logic.nim");
	echoBinSafe(TM__p_2, 1);
	nimln_(7, "/tmp/n2/logic.nim");
	history__logic_11.len = 1; history__logic_11.p = (tySeq*) newSeqPayload(1, sizeof(NimStringV2), NIM_ALIGNOF(NimStringV2));
	history__logic_11.p->data[0] = TM__p_5;
	colontmpD_.len = 0; colontmpD_.p = NIM_NIL;
	nimln_(9, "/tmp/n2/logic.nim");
	T1_ = NIM_NIL;
	T1_ = mk__logic_12();
	if (NIM_UNLIKELY(*nimErr_)) goto BeforeRet_;
	(*T1_).n = 1;
	t__logic_51 = T1_;
	nimln_(10, "/tmp/n2/logic.nim");
	if (nimAddInt(total__logic_6, ((NI) 1), &TM__p_3)) { raiseOverflow(); goto BeforeRet_;
};
	total__logic_6 = (NI)(TM__p_3);
	nimln_(11, "/tmp/n2/logic.nim");
	{
		if (!(((NI) 0) < total__logic_6)) goto LA10_;
		x__logic_8 = ((NI) 1);
	}
	goto LA8_;
	LA10_: ;
	{
		x__logic_8 = ((NI) 2);
	}
	LA8_: ;
	nimln_(12, "/tmp/n2/logic.nim");
	{ NI res; res = 0;
		while (1) { if (!(res <= 2)) goto LA4; j__logic_7 = res; res += 1; } LA4: ;
	}
	nimln_(13, "/tmp/n2/logic.nim");
	other__m_3 = 5;
	nimln_(14, "/tmp/n2/logic.nim");
	tv__logic_9 = 5;
	BeforeRet_: ;
	popFrame();
}
}
N_LIB_PRIVATE tyObject_Thing* t__logic_51;
N_LIB_PRIVATE NI x__logic_8;
N_LIB_PRIVATE NI j__logic_7;
"#;

    #[test]
    fn globals_and_top_level_statements_are_told_apart() {
        let rw = rewrite(ORC).unwrap().unwrap();
        let t = &rw.text;
        // The echo runs at the first load only; `inc total` when total is new.
        assert!(
            t.contains("if (!hcrReinit_) { echoBinSafe(TM__p_2, 1); }"),
            "{t}"
        );
        assert!(
            t.contains("(void*)&total__logic_6})) { total__logic_6 = (NI)(TM__p_3); }"),
            "{t}"
        );
        // Initialisers run when their globals are new.
        assert!(t.contains("if (!hcrReinit_ || hcr_nim_new_globals(1, (void *const[]){(void*)&history__logic_11})) { history__logic_11.p->data[0] = TM__p_5; }"), "{t}");
        assert!(t.contains("hcr_nim_new_globals(1, (void *const[]){(void*)&t__logic_51})) { T1_ = mk__logic_12(); }"), "{t}");
        assert!(
            t.contains(
                "hcr_nim_new_globals(1, (void *const[]){(void*)&x__logic_8})) { goto LA8_; }"
            ),
            "{t}"
        );
        // A write through a temporary is part of its statement.
        assert!(
            t.contains("(void*)&t__logic_51})) { (*T1_).n = 1; }"),
            "{t}"
        );
        // Constants' and temporaries' set-up, line markers and the error
        // check run always; the frame is kept.
        assert!(
            t.contains("\n\tcolontmpD_.len = 0; colontmpD_.p = NIM_NIL;"),
            "{t}"
        );
        assert!(
            t.contains("\n\tif (NIM_UNLIKELY(*nimErr_)) goto BeforeRet_;"),
            "{t}"
        );
        assert!(t.contains("\tBeforeRet_: ;\n\tpopFrame();"), "{t}");
        // A loop's variable is no initialiser, nor is a thread-local;
        // another module's global is one when new.
        assert!(t.contains("if (!hcrReinit_) { {"), "{t}");
        assert!(
            t.contains(
                "hcr_nim_new_globals(1, (void *const[]){(void*)&other__m_3})) { other__m_3 = 5; }"
            ),
            "{t}"
        );
        assert!(t.contains("if (!hcrReinit_) { tv__logic_9 = 5; }"), "{t}");
        assert!(
            t.contains("static N_NIMCALL(void, atmlogicdotnim_HcrInitBody000)(int hcrReinit_) {")
        );
        assert!(t.contains("N_LIB_PRIVATE N_NIMCALL(void, atmlogicdotnim_Init000)(void) { atmlogicdotnim_HcrInitBody000(0); }"));
        assert!(t.contains("N_LIB_PRIVATE N_NIMCALL(void, atmlogicdotnim_HcrReinit000)(void) { atmlogicdotnim_HcrInitBody000(1); }"));
        let inits: BTreeSet<String> = rw.initialisers.into_iter().flatten().collect();
        let want = [
            "history__logic_11",
            "other__m_3",
            "t__logic_51",
            "total__logic_6",
            "x__logic_8",
        ];
        assert_eq!(inits.iter().map(String::as_str).collect::<Vec<_>>(), want);
        // A rewrite is not rewritten again.
        assert!(rewrite(t).is_err());
    }

    #[test]
    fn orc_scopes_of_temporaries_are_opened_and_their_cleanup_always_runs() {
        let c = "N_LIB_PRIVATE NI g__m_1;\nN_LIB_PRIVATE NI h__m_2;\n\
            N_LIB_PRIVATE N_NIMCALL(void, atmmdotnim_Init000)(void) {\n{\n\
            \tNimStringV2 colontmpD_;\n\tNIM_BOOL oldNimErrFin1_;\nNIM_BOOL* nimErr_;\n\
            \tnimfr_(\"m\", \"/m.nim\");\nnimErr_ = nimErrorFlag();\n\
            \tcolontmpD_.len = 0; colontmpD_.p = NIM_NIL;\n\
            \t{\n\tnimln_(1, \"/m.nim\");\n\tcolontmpD_ = f();\n\
            \tif (NIM_UNLIKELY(*nimErr_)) goto LA1_;\n\tg__m_1 = len(colontmpD_);\n\
            \t{\n\t\tLA1_:;\n\t}\n\
            \t{\n\t\toldNimErrFin1_ = *nimErr_; *nimErr_ = NIM_FALSE;\n\
            \t\teqdestroy___system_1((&colontmpD_));\n\t\t*nimErr_ = oldNimErrFin1_;\n\t}\n\
            \tif (NIM_UNLIKELY(*nimErr_)) goto BeforeRet_;\n\t}\n\
            \tnimln_(2, \"/m.nim\");\n\th__m_2 = 5;\n\
            \tnimln_(3, \"/m.nim\");\n\techoBinSafe(TM_1, 1);\n\
            \tBeforeRet_: ;\n\tpopFrame();\n}\n}\n";
        let t = rewrite(c).unwrap().unwrap().text;
        let g = "if (!hcrReinit_ || hcr_nim_new_globals(1, (void *const[]){(void*)&g__m_1})) {";
        assert!(t.contains(&format!("{g} colontmpD_ = f(); }}")), "{t}");
        assert!(
            t.contains(&format!("{g} g__m_1 = len(colontmpD_); }}")),
            "{t}"
        );
        assert!(t.contains("\n\t{\n\t\tLA1_:;\n\t}\n"), "{t}");
        assert!(
            t.contains("\n\t\teqdestroy___system_1((&colontmpD_));"),
            "{t}"
        );
        assert!(t.contains("(void*)&h__m_2})) { h__m_2 = 5; }"), "{t}");
        assert!(
            t.contains("if (!hcrReinit_) { echoBinSafe(TM_1, 1); }"),
            "{t}"
        );
    }

    #[test]
    fn declarations_are_read_from_the_nim_source() {
        let src =
            "import std/strutils\nvar a: int\nvar coll = collect(newSeq):\n  for i in 0..3: i\n\
                   let (x, y) = (1, 2)\nvar\n  p = 5  # comment\n  q = @[p]\necho toSeq(1..3)\n\
                   if true:\n  let z = 2\nvariable = 3\n";
        let lines: Vec<&str> = src.lines().collect();
        let decl: Vec<usize> = (1..=lines.len())
            .filter(|&l| declares_at(&lines, l))
            .collect();
        assert_eq!(decl, [2, 3, 4, 5, 6, 7, 8]);
        let names = declared_names(&lines);
        for n in ["a", "coll", "i", "x", "y", "p", "q"] {
            assert!(names.contains(n), "{n}");
        }
        for n in ["toSeq", "z", "variable", "comment"] {
            assert!(!names.contains(n), "{n}");
        }
    }

    #[test]
    fn prepare_compiles_once_and_reports_what_it_leaves_alone() {
        let d = tempfile::tempdir().unwrap();
        let c = d.path().join("C");
        std::fs::create_dir(&c).unwrap();
        let good = c.join("@mgood.nim.c");
        let odd = c.join("@modd.nim.c");
        let good_c = "#define N_LIB_PRIVATE\n#define N_NIMCALL(t, n) t n\ntypedef long NI;\n\
            void echoBinSafe(const char* s, NI n);\nNI mk__good_2(void);\nN_LIB_PRIVATE NI g__good_1;\n\
            N_LIB_PRIVATE N_NIMCALL(void, atmgooddotnim_Init000)(void) {\n{\n\tNI T1_;\n\
            \techoBinSafe(\"x\", 1);\n\tT1_ = mk__good_2();\n\tg__good_1 = T1_;\n}\n}\n";
        std::fs::write(&good, good_c).unwrap();
        std::fs::write(&odd, "void x(void) {}\nN_LIB_PRIVATE N_NIMCALL(void, atmodddotnim_Init000)(void) {\n\tfoo();\n}\n").unwrap();
        let objs: Vec<PathBuf> = [&good, &odd]
            .iter()
            .map(|p| p.with_extension("c.o"))
            .collect();
        for o in &objs {
            std::fs::write(o, b"").unwrap();
        }
        let cmd = |f: &Path| format!("cc -c -w -o {0}.o {0}", f.display());
        std::fs::write(
            c.join("main.json"),
            serde_json::json!({"compile": [[good, cmd(&good)], [odd, cmd(&odd)]]}).to_string(),
        )
        .unwrap();
        let p = prepare(&objs);
        assert_eq!((p.compiled, p.cached), (1, 0), "{:?}", p.warnings);
        assert!(p.inputs[0].starts_with(c.join(".hcr")), "{:?}", p.inputs);
        assert!(p.inputs[0].ends_with("@mgood.nim.c.o"));
        assert_eq!(p.inputs[1], objs[1]);
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].starts_with("Nim module @modd.nim: its Init000 is linked as Nim wrote it (Init000 holds `foo` outside a block)"), "{}", p.warnings[0]);
        // Nim's JSON forgets what it did not compile; the kept commands do not.
        std::fs::write(c.join("main.json"), r#"{"compile": []}"#).unwrap();
        let again = prepare(&objs);
        assert_eq!((again.compiled, again.cached), (0, 1));
        assert_eq!(again.inputs, p.inputs);
    }

    #[test]
    fn refc_markers_follow_their_globals_and_odd_shapes_are_refused() {
        let refc = "N_LIB_PRIVATE tySeq* history__logic_11;\n\
            static N_NIMCALL(void, TM__p_4)(void) {\n\tnimGCvisit((void*)history__logic_11, 0);\n}\n\
            N_LIB_PRIVATE N_NIMCALL(void, atmlogicdotnim_Init000)(void) {\n{\n\tTFrame FR_; FR_.len = 0;\n\n\tnimRegisterGlobalMarker(TM__p_4);\n}/* preInitProc end */\n{\n\tnimfr_(\"logic\", \"/l.nim\");\n\tpopFrame();\n}\n}\n";
        let rw = rewrite(refc).unwrap().unwrap();
        assert!(rw.text.contains("hcr_nim_new_globals(1, (void *const[]){(void*)&history__logic_11})) { nimRegisterGlobalMarker(TM__p_4); }"), "{}", rw.text);
        assert!(rw.text.contains("\tTFrame FR_; FR_.len = 0;"));
        let odd = "N_LIB_PRIVATE N_NIMCALL(void, atmxdotnim_Init000)(void) {\n\tfoo();\n}\n";
        assert!(rewrite(odd).is_err());
        let cross = "N_LIB_PRIVATE N_NIMCALL(void, atmxdotnim_Init000)(void) {\n{\n\tgoto L1;\n}\n{\n\tL1: ;\n}\n}\n";
        assert!(rewrite(cross).is_err());
        assert!(rewrite("int x;").unwrap().is_none());
    }
}
