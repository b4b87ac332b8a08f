//! The qualified name of a C++ function from its mangled symbol, for crash
//! reports, as `c++filt -p` (and a debugger's backtrace) shows it without
//! parameters: `_ZNK4YAML7Emitter4goodEv` → `YAML::Emitter::good`,
//! `_ZNKSt6vectorIiSaIiEE14_M_range_checkEm` →
//! `std::vector<int, std::allocator<int> >::_M_range_check`.
//! Allocation-free (a signal handler writes it): the name is written into
//! a fixed buffer, and a substitution (`S_`, `S0_`) copies the text it
//! stands for from earlier in that buffer.
//!
//! Read: nested and unscoped names, `std::` and the standard
//! abbreviations, anonymous namespaces, internal linkage, ABI tags
//! (`[abi:cxx11]`), constructors and destructors, operators (conversion
//! operators included), template arguments (types, function types and
//! pointers to them, array types, integer, `bool` and enumerator
//! literals, packs), substitutions, local names (a lambda's
//! `main::{lambda(int)#1}::operator()`, a local class's
//! `ns::foo(int)::Local::run`: the enclosing function with its parameters,
//! not its return type) and template parameter references. A name with
//! something else (an expression in its template arguments, a reference
//! to an array type named by a template parameter, a generic lambda) is
//! left as it is, as `nm` without `-C` shows it.

/// Longest name written.
const OUT: usize = 1024;
/// Most substitution candidates remembered.
const SUBS: usize = 128;
/// Deepest nesting of types and template arguments followed.
const DEPTH: usize = 24;
/// Most hidden stretches of output.
const HIDDEN: usize = 8;
/// Most template arguments a `T_` reference can name.
const TARGS: usize = 16;
/// A template argument a `T_` reference cannot stand for.
const NOT_READ: Span = (u16::MAX, u16::MAX);

/// Writes the qualified name `mangled` encodes through `put`; false (and
/// nothing written) when it is not a name this reads.
pub(crate) fn put_name(mangled: &[u8], put: &mut impl FnMut(&[u8])) -> bool {
    let Some(rest) = mangled.strip_prefix(b"_Z") else {
        return false;
    };
    let mut d = Demangler {
        m: rest,
        at: 0,
        out: [0; OUT],
        n: 0,
        subs: [Sub::Text((0, 0)); SUBS],
        nsubs: 0,
        depth: 0,
        hidden: [(0, 0); HIDDEN],
        nhidden: 0,
        last_targs: [(0, 0); TARGS],
        nlast_targs: 0,
        fn_targs: [(0, 0); TARGS],
        nfn_targs: 0,
    };
    if d.name().is_none() {
        return false;
    }
    // The output, but for the hidden stretches (in order, disjoint).
    let mut at = 0usize;
    for &(a, b) in &d.hidden[..d.nhidden] {
        put(&d.out[at..usize::from(a)]);
        at = usize::from(b);
    }
    put(&d.out[at..d.n]);
    true
}

/// A range of the output.
type Span = (u16, u16);

/// The text a substitution stands for.
#[derive(Clone, Copy)]
enum Sub {
    Text(Span),
    /// A function type, `R (A, B)`: its return type and its parameters
    /// (written apart under a pointer, `R (*)(A, B)`).
    Func {
        ret: Span,
        params: Span,
    },
    /// An array type, `T [N]`: its element type and its bound (written
    /// apart under a pointer or reference, `T (&) [N]`).
    Array {
        elem: Span,
        dims: Span,
    },
}

struct Demangler<'a> {
    /// The mangled name after `_Z`.
    m: &'a [u8],
    at: usize,
    out: [u8; OUT],
    n: usize,
    subs: [Sub; SUBS],
    nsubs: usize,
    depth: usize,
    /// Output left out of the name (a local name's enclosing template
    /// function's return type: read for its substitutions, not shown).
    hidden: [Span; HIDDEN],
    nhidden: usize,
    /// The arguments of the template argument list read last at its
    /// level (the function's, once its name is read).
    last_targs: [Span; TARGS],
    nlast_targs: usize,
    /// The enclosing function's template arguments, for `T_` references
    /// in its parameters and local entities.
    fn_targs: [Span; TARGS],
    nfn_targs: usize,
}

/// What a `<name>` was, for an encoding's parameters that follow it.
#[derive(Clone, Copy, Default)]
struct NameInfo {
    /// Its qualifiers (`K`, `V`, `r`, `R`, `O`), a member function's.
    quals: [u8; 5],
    /// A template function's (not a constructor, destructor or
    /// conversion operator): its parameters start with the return type.
    template: bool,
}

/// What an unqualified name was: a constructor or destructor repeats the
/// last source name.
#[derive(Clone, Copy)]
enum Unqualified {
    /// A source name (or an operator), written at this span.
    Name(Span),
    /// A constructor or destructor, written.
    Structor,
}

impl<'a> Demangler<'a> {
    fn peek(&self) -> Option<u8> {
        self.m.get(self.at).copied()
    }

    fn peek2(&self) -> Option<u8> {
        self.m.get(self.at + 1).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        let yes = self.peek() == Some(c);
        if yes {
            self.at += 1;
        }
        yes
    }

    fn put(&mut self, s: &[u8]) -> Option<()> {
        let end = self.n.checked_add(s.len()).filter(|&e| e <= OUT)?;
        self.out[self.n..end].copy_from_slice(s);
        self.n = end;
        Some(())
    }

    /// Writes again the text of an earlier span.
    fn put_span(&mut self, (a, b): Span) -> Option<()> {
        let (a, b) = (usize::from(a), usize::from(b));
        let end = self.n.checked_add(b - a).filter(|&e| e <= OUT)?;
        self.out.copy_within(a..b, self.n);
        self.n = end;
        Some(())
    }

    fn span_from(&self, start: usize) -> Span {
        // Both below OUT (1024), so they fit.
        (start as u16, self.n as u16)
    }

    fn add_sub(&mut self, s: Span) -> Option<()> {
        self.push_sub(Sub::Text(s))
    }

    fn push_sub(&mut self, s: Sub) -> Option<()> {
        *self.subs.get_mut(self.nsubs)? = s;
        self.nsubs += 1;
        Some(())
    }

    /// Runs `f` one level deeper; `None` past [`DEPTH`].
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        if self.depth == DEPTH {
            return None;
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    /// `<name>` of the function (the encoding's name; what follows it,
    /// the parameter types, is not read).
    fn name(&mut self) -> Option<NameInfo> {
        match self.peek()? {
            b'N' => self.nested_name(),
            b'Z' => {
                self.local_name()?;
                Some(NameInfo::default())
            }
            b'S' if self.peek2() != Some(b't') => {
                // A substitution must be a template's name here.
                self.substitution(false)?;
                if self.peek() != Some(b'I') {
                    return None;
                }
                self.template_args()?;
                Some(NameInfo {
                    template: true,
                    ..NameInfo::default()
                })
            }
            _ => self.unscoped(),
        }
    }

    /// `Z <function encoding> E <entity name> [<discriminator>]`, as
    /// `c++filt -p` writes it: the function with its parameters (not its
    /// return type) and qualifiers, `::`, the entity (a lambda's closure
    /// type, a local class):
    /// `work(int)::{lambda(int const&)#1}::operator()`.
    fn local_name(&mut self) -> Option<()> {
        self.at += 1;
        let info = self.nested(|d| d.name())?;
        let (targs, n) = (self.last_targs, self.nlast_targs);
        let saved = (self.fn_targs, self.nfn_targs);
        (self.fn_targs, self.nfn_targs) = (targs, n);
        let r = self.local_rest(info);
        (self.fn_targs, self.nfn_targs) = saved;
        r
    }

    /// [`Demangler::local_name`] after the function's name.
    fn local_rest(&mut self, info: NameInfo) -> Option<()> {
        if !self.eat(b'E') {
            if info.template {
                let h0 = self.n;
                self.nested(|d| d.ty())?;
                let h = self.span_from(h0);
                *self.hidden.get_mut(self.nhidden)? = h;
                self.nhidden += 1;
            }
            self.put(b"(")?;
            if self.m[self.at..].starts_with(b"vE") {
                self.at += 1;
            }
            self.list(Self::ty)?;
            self.put(b")")?;
            for q in info.quals.into_iter().take_while(|&q| q != 0) {
                self.put(match q {
                    b'K' => b" const",
                    b'V' => b" volatile",
                    b'r' => b" restrict",
                    b'R' => b" &",
                    _ => b" &&",
                })?;
            }
        }
        // A string literal's entity: not read.
        if self.peek()? == b's' {
            return None;
        }
        self.put(b"::")?;
        self.nested(|d| d.name())?;
        // The discriminator (the entity's number among its namesakes in
        // the function): not shown.
        if self.eat(b'_') {
            if self.eat(b'_') {
                self.number()?;
                if !self.eat(b'_') {
                    return None;
                }
            } else {
                self.peek().filter(u8::is_ascii_digit)?;
                self.at += 1;
            }
        }
        Some(())
    }

    /// The digits of a decimal number (none: `None`).
    fn digits(&mut self) -> Option<&'a [u8]> {
        let m: &'a [u8] = self.m;
        let n = m[self.at..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        let d = (n > 0).then(|| &m[self.at..self.at + n])?;
        self.at += n;
        Some(d)
    }

    /// A decimal number of at most six digits.
    fn number(&mut self) -> Option<usize> {
        let d = self.digits().filter(|d| d.len() <= 6)?;
        Some(
            d.iter()
                .fold(0usize, |v, &c| v * 10 + usize::from(c - b'0')),
        )
    }

    /// `_` (0) or `<number> _` (the number plus 1): a template
    /// parameter's, an unnamed type's, a closure type's index.
    fn index(&mut self) -> Option<usize> {
        if self.eat(b'_') {
            return Some(0);
        }
        let n = self.number()?;
        self.eat(b'_').then_some(n)?.checked_add(1)
    }

    /// Writes `v` in decimal.
    fn put_number(&mut self, v: usize) -> Option<()> {
        let mut d = [0u8; 20];
        self.put(crate::crash::decimal(v as u64, &mut d))
    }

    /// `{lambda(A, B)#N}` for a closure type `Ul <parameter types> E
    /// [<number>] _`, `{unnamed type#N}` for `Ut [<number>] _`.
    fn unnamed_type(&mut self) -> Option<()> {
        let lambda = self.peek2()? == b'l';
        self.at += 2;
        if lambda {
            self.put(b"{lambda(")?;
            if self.m[self.at..].starts_with(b"vE") {
                self.at += 1;
            }
            self.list(Self::ty)?;
            self.put(b")#")?;
        } else {
            self.put(b"{unnamed type#")?;
        }
        // (Counted from 1.)
        let n = self.index()?.checked_add(1)?;
        self.put_number(n)?;
        self.put(b"}")
    }

    /// `<unscoped-name>` (`std::` and an unqualified name) and, for a
    /// template's, its arguments (the template's name is a substitution
    /// candidate).
    fn unscoped(&mut self) -> Option<NameInfo> {
        let start = self.n;
        if self.m[self.at..].starts_with(b"St") {
            self.at += 2;
            self.put(b"std::")?;
        }
        let conversion = self.m[self.at..].starts_with(b"cv");
        self.unqualified()?;
        let template = self.peek() == Some(b'I');
        if template {
            let s = self.span_from(start);
            self.add_sub(s)?;
            self.template_args()?;
        }
        Some(NameInfo {
            template: template && !conversion,
            ..NameInfo::default()
        })
    }

    /// `N [<CV-qualifiers>] [<ref-qualifier>] <prefix> <unqualified-name> E`
    /// (and its template form). Each prefix is a substitution candidate.
    fn nested_name(&mut self) -> Option<NameInfo> {
        self.at += 1;
        let mut info = NameInfo::default();
        let mut nq = 0;
        while let Some(q @ (b'r' | b'V' | b'K' | b'R' | b'O')) = self.peek() {
            *info.quals.get_mut(nq)? = q;
            nq += 1;
            self.at += 1;
        }
        let start = self.n;
        let mut last: Option<Span> = None;
        let mut parts = 0usize;
        // Whether the last part was a constructor, destructor or
        // conversion operator (their templates have no return type).
        let mut special = false;
        loop {
            match self.peek()? {
                b'E' => {
                    self.at += 1;
                    info.template &= !special;
                    return (parts > 0).then_some(info);
                }
                b'I' => {
                    if parts == 0 {
                        return None;
                    }
                    self.template_args()?;
                    info.template = true;
                }
                b'S' if parts == 0 && self.peek2() != Some(b't') => {
                    let s0 = self.n;
                    self.substitution(true)?;
                    // A constructor or destructor after it repeats the
                    // class's own name: `std::allocator<int>::allocator`.
                    last = Some(self.class_name_in(self.span_from(s0)));
                    parts += 1;
                    // Not a candidate again.
                    continue;
                }
                b'S' if parts == 0 => {
                    self.at += 2;
                    self.put(b"std")?;
                    parts += 1;
                    // `St` alone is not a candidate; `std::name` is.
                    self.put(b"::")?;
                    info.template = false;
                    special = self.m[self.at..].starts_with(b"cv");
                    last = match self.unqualified_with(last)? {
                        Unqualified::Name(s) => Some(s),
                        Unqualified::Structor => {
                            special = true;
                            last
                        }
                    };
                }
                // A template parameter or `decltype` as a prefix.
                b'T' => return None,
                b'D' if matches!(self.peek2(), Some(b't' | b'T')) => return None,
                _ => {
                    if parts > 0 {
                        self.put(b"::")?;
                    }
                    info.template = false;
                    special = self.m[self.at..].starts_with(b"cv");
                    last = match self.unqualified_with(last)? {
                        Unqualified::Name(s) => Some(s),
                        Unqualified::Structor => {
                            special = true;
                            last
                        }
                    };
                    parts += 1;
                }
            }
            if self.peek() != Some(b'E') {
                let s = self.span_from(start);
                self.add_sub(s)?;
            }
        }
    }

    /// The class's own name in a written qualified name: after its last
    /// `::` and before its template arguments.
    fn class_name_in(&self, (a, b): Span) -> Span {
        let text = &self.out[usize::from(a)..usize::from(b)];
        let end = text.iter().position(|&c| c == b'<').unwrap_or(text.len());
        let start = text[..end]
            .windows(2)
            .rposition(|w| w == b"::")
            .map_or(0, |i| i + 2);
        (a + start as u16, a + end as u16)
    }

    /// An unqualified name outside a nested name (no constructor there).
    fn unqualified(&mut self) -> Option<Span> {
        match self.unqualified_with(None)? {
            Unqualified::Name(s) => Some(s),
            Unqualified::Structor => None,
        }
    }

    /// `<unqualified-name>`: a source name (with `L` for internal
    /// linkage), an operator, a constructor or destructor (named after
    /// `class`, the last source name), then any ABI tags.
    fn unqualified_with(&mut self, class: Option<Span>) -> Option<Unqualified> {
        self.eat(b'L');
        let c = self.peek()?;
        let start = self.n;
        let what = match c {
            b'0'..=b'9' => {
                let name = self.source_name()?;
                match name {
                    b"_GLOBAL__N_1" => self.put(b"(anonymous namespace)")?,
                    _ => self.put(name)?,
                }
                Unqualified::Name(self.span_from(start))
            }
            b'C' | b'D' if matches!(self.peek2(), Some(b'0'..=b'5' | b'I')) => {
                let class = class?;
                let dtor = c == b'D';
                self.at += 1;
                if !dtor && self.eat(b'I') {
                    // An inheriting constructor: not read.
                    return None;
                }
                self.at += 1;
                if dtor {
                    self.put(b"~")?;
                }
                // The class's own name (its template arguments follow it,
                // outside its span).
                self.put_span(class)?;
                Unqualified::Structor
            }
            b'a'..=b'z' => {
                self.operator()?;
                Unqualified::Name(self.span_from(start))
            }
            b'U' if matches!(self.peek2(), Some(b'l' | b't')) => {
                self.unnamed_type()?;
                Unqualified::Name(self.span_from(start))
            }
            _ => return None,
        };
        while self.peek() == Some(b'B') {
            self.at += 1;
            let tag = self.source_name()?;
            self.put(b"[abi:")?;
            self.put(tag)?;
            self.put(b"]")?;
        }
        Some(what)
    }

    /// `<length><identifier>`.
    fn source_name(&mut self) -> Option<&'a [u8]> {
        let m: &'a [u8] = self.m;
        let rest = &m[self.at..];
        let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 4 || rest[0] == b'0' {
            return None;
        }
        let len = (rest[..digits].iter()).fold(0usize, |v, &c| v * 10 + usize::from(c - b'0'));
        let name = rest.get(digits..digits + len)?;
        if !name
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c == b'.')
        {
            return None;
        }
        self.at += digits + len;
        Some(name)
    }

    /// `<operator-name>`: `operator+`, `operator()`, a conversion
    /// operator `operator T`.
    fn operator(&mut self) -> Option<()> {
        let code = self.m.get(self.at..self.at + 2)?;
        let sym: &[u8] = match code {
            b"nw" => b" new",
            b"na" => b" new[]",
            b"dl" => b" delete",
            b"da" => b" delete[]",
            b"ps" | b"pl" => b"+",
            b"ng" | b"mi" => b"-",
            b"ad" | b"an" => b"&",
            b"de" | b"ml" => b"*",
            b"co" => b"~",
            b"dv" => b"/",
            b"rm" => b"%",
            b"or" => b"|",
            b"eo" => b"^",
            b"aS" => b"=",
            b"pL" => b"+=",
            b"mI" => b"-=",
            b"mL" => b"*=",
            b"dV" => b"/=",
            b"rM" => b"%=",
            b"aN" => b"&=",
            b"oR" => b"|=",
            b"eO" => b"^=",
            b"ls" => b"<<",
            b"rs" => b">>",
            b"lS" => b"<<=",
            b"rS" => b">>=",
            b"eq" => b"==",
            b"ne" => b"!=",
            b"lt" => b"<",
            b"gt" => b">",
            b"le" => b"<=",
            b"ge" => b">=",
            b"ss" => b"<=>",
            b"nt" => b"!",
            b"aa" => b"&&",
            b"oo" => b"||",
            b"pp" => b"++",
            b"mm" => b"--",
            b"cm" => b",",
            b"pm" => b"->*",
            b"pt" => b"->",
            b"cl" => b"()",
            b"ix" => b"[]",
            b"qu" => b"?",
            b"cv" => {
                self.at += 2;
                self.put(b"operator ")?;
                return self.nested(|d| d.ty());
            }
            _ => return None,
        };
        self.at += 2;
        self.put(b"operator")?;
        self.put(sym)
    }

    /// `S_`, `S<seq-id>_` or a standard abbreviation (`Sa`, `Ss`, ...):
    /// writes the text it stands for.
    fn substitution(&mut self, prefix: bool) -> Option<()> {
        self.at += 1;
        let c = self.peek()?;
        // The stream and string abbreviations stand for their whole
        // template where a constructor or destructor follows (as
        // debuggers write them).
        let prefix = prefix && matches!(self.m.get(self.at + 1), Some(b'C' | b'D'));
        let abbreviation: Option<&[u8]> = match (c, prefix) {
            (b'a', _) => Some(b"std::allocator"),
            (b'b', _) => Some(b"std::basic_string"),
            (b's', false) => Some(b"std::string"),
            (b'i', false) => Some(b"std::istream"),
            (b'o', false) => Some(b"std::ostream"),
            (b'd', false) => Some(b"std::iostream"),
            (b's', true) => {
                Some(b"std::basic_string<char, std::char_traits<char>, std::allocator<char> >")
            }
            (b'i', true) => Some(b"std::basic_istream<char, std::char_traits<char> >"),
            (b'o', true) => Some(b"std::basic_ostream<char, std::char_traits<char> >"),
            (b'd', true) => Some(b"std::basic_iostream<char, std::char_traits<char> >"),
            _ => None,
        };
        if let Some(text) = abbreviation {
            self.at += 1;
            return self.put(text);
        }
        let sub = self.numbered_sub()?;
        self.put_sub(sub, None)
    }

    /// `<seq-id>_` or `_` after an `S`: the substitution it names.
    fn numbered_sub(&mut self) -> Option<Sub> {
        let mut index = 0usize;
        if !self.eat(b'_') {
            let mut seq = 0usize;
            loop {
                let c = self.peek()?;
                self.at += 1;
                let v = match c {
                    b'0'..=b'9' => usize::from(c - b'0'),
                    b'A'..=b'Z' => usize::from(c - b'A') + 10,
                    b'_' => break,
                    _ => return None,
                };
                seq = seq.checked_mul(36)?.checked_add(v)?;
            }
            index = seq.checked_add(1)?;
        }
        self.subs[..self.nsubs].get(index).copied()
    }

    /// Writes a substitution's text; a function type with `decl` (`(*)`)
    /// between its return type and its parameters.
    fn put_sub(&mut self, sub: Sub, decl: Option<&[u8]>) -> Option<()> {
        match sub {
            Sub::Text(s) => self.put_span(s),
            Sub::Func { ret, params } => {
                self.put_span(ret)?;
                self.put(b" ")?;
                if let Some(d) = decl {
                    self.put(d)?;
                }
                self.put_span(params)
            }
            Sub::Array { elem, dims } => {
                self.put_span(elem)?;
                self.put(b" ")?;
                if let Some(d) = decl {
                    self.put(d)?;
                    self.put(b" ")?;
                }
                self.put_span(dims)
            }
        }
    }

    /// A numbered substitution at `at` that names a function or array
    /// type: taken, or left unread.
    fn declarator_sub_ahead(&mut self) -> Option<Sub> {
        if self.peek() != Some(b'S')
            || !matches!(self.peek2(), Some(b'_' | b'0'..=b'9' | b'A'..=b'Z'))
        {
            return None;
        }
        let at = self.at;
        self.at += 1;
        match self.numbered_sub() {
            Some(f @ (Sub::Func { .. } | Sub::Array { .. })) => Some(f),
            _ => {
                self.at = at;
                None
            }
        }
    }

    /// `F [Y] <return type> <parameter types> E`: `R (A, B)`, with `decl`
    /// (`(*)`, `(&)`) before the parameters for a pointer or reference to
    /// it. The function type is a substitution candidate.
    fn function_type(&mut self, decl: Option<&[u8]>) -> Option<()> {
        self.at += 1;
        self.eat(b'Y');
        let r0 = self.n;
        self.nested(|d| d.ty())?;
        let ret = self.span_from(r0);
        self.put(b" ")?;
        if let Some(d) = decl {
            self.put(d)?;
        }
        let p0 = self.n;
        self.put(b"(")?;
        // `v` alone: no parameters.
        if self.m[self.at..].starts_with(b"vE") {
            self.at += 1;
        }
        self.list(Self::ty)?;
        self.put(b")")?;
        let params = self.span_from(p0);
        self.push_sub(Sub::Func { ret, params })
    }

    /// `A <number> _ <element type>`: `T [N]`, with `decl` (`(&)`) before
    /// the bound for a pointer or reference to it. Arrays of arrays and
    /// bounds given by an expression are not read. The array type is a
    /// substitution candidate.
    fn array_type(&mut self, decl: Option<&[u8]>) -> Option<()> {
        self.at += 1;
        let d0 = self.at;
        self.number()?;
        let bound = &self.m[d0..self.at];
        if !self.eat(b'_') || self.peek()? == b'A' {
            return None;
        }
        let e0 = self.n;
        self.nested(|d| d.ty())?;
        let elem = self.span_from(e0);
        self.put(b" ")?;
        if let Some(d) = decl {
            self.put(d)?;
            self.put(b" ")?;
        }
        let b0 = self.n;
        self.put(b"[")?;
        self.put(bound)?;
        self.put(b"]")?;
        let dims = self.span_from(b0);
        self.push_sub(Sub::Array { elem, dims })
    }

    /// Items read by `item` up to an `E` (taken), written comma
    /// separated.
    fn list(&mut self, item: fn(&mut Self) -> Option<()>) -> Option<()> {
        let mut first = true;
        while !self.eat(b'E') {
            if !first {
                self.put(b", ")?;
            }
            first = false;
            self.nested(item)?;
        }
        Some(())
    }

    /// `I <template-arg>+ E`: `<a, b>`, with a space before a closing
    /// `>` that follows another, as `c++filt` writes it.
    fn template_args(&mut self) -> Option<()> {
        self.at += 1;
        if self.out[..self.n].last() == Some(&b'<') {
            // After `operator<`.
            self.put(b" ")?;
        }
        self.put(b"<")?;
        // Each argument's text, for `T_` references (the list read last
        // at its level is the one they name).
        let mut args = [(0u16, 0u16); TARGS];
        let mut n = 0usize;
        let mut first = true;
        while !self.eat(b'E') {
            if !first {
                self.put(b", ")?;
            }
            first = false;
            let a0 = self.n;
            // An array or function type is written around what qualifies
            // it (`char const (&) [5]`): a reference to one is not read.
            let declarator = matches!(self.peek(), Some(b'A' | b'F'));
            self.nested(Self::template_arg)?;
            if let Some(slot) = args.get_mut(n) {
                *slot = match declarator {
                    false => self.span_from(a0),
                    true => NOT_READ,
                };
                n += 1;
            }
        }
        (self.last_targs, self.nlast_targs) = (args, n);
        if self.out[..self.n].last() == Some(&b'>') {
            self.put(b" ")?;
        }
        self.put(b">")
    }

    fn template_arg(&mut self) -> Option<()> {
        match self.peek()? {
            b'L' => self.literal(),
            b'J' => {
                // A pack: its arguments, comma separated.
                self.at += 1;
                self.list(Self::template_arg)
            }
            // An expression: not read.
            b'X' => None,
            _ => self.ty(),
        }
    }

    /// `L <type> <value> E`, for integer and `bool` types.
    fn literal(&mut self) -> Option<()> {
        self.at += 1;
        let t = self.peek()?;
        let enumerator = matches!(t, b'N' | b'0'..=b'9');
        if enumerator {
            // An enumerator: `(ns::Kind)2`.
            self.put(b"(")?;
            self.nested(|d| d.ty())?;
            self.put(b")")?;
        } else {
            self.at += 1;
        }
        let negative = self.eat(b'n');
        let value = self.digits()?;
        if !self.eat(b'E') {
            return None;
        }
        if enumerator {
            if negative {
                self.put(b"-")?;
            }
            return self.put(value);
        }
        if t == b'b' {
            return match value {
                b"0" => self.put(b"false"),
                b"1" => self.put(b"true"),
                _ => None,
            };
        }
        let (before, after): (&[u8], &[u8]) = match t {
            b'i' => (b"", b""),
            b'j' => (b"", b"u"),
            b'l' => (b"", b"l"),
            b'm' => (b"", b"ul"),
            b'x' => (b"", b"ll"),
            b'y' => (b"", b"ull"),
            b'c' => (b"(char)", b""),
            b'a' => (b"(signed char)", b""),
            b'h' => (b"(unsigned char)", b""),
            b's' => (b"(short)", b""),
            b't' => (b"(unsigned short)", b""),
            _ => return None,
        };
        self.put(before)?;
        if negative {
            self.put(b"-")?;
        }
        self.put(value)?;
        self.put(after)
    }

    /// `<type>`: builtin, qualified, pointer and reference types, class
    /// types by name; every one but a builtin type is a substitution
    /// candidate.
    fn ty(&mut self) -> Option<()> {
        let start = self.n;
        let c = self.peek()?;
        if let Some(name) = builtin(c) {
            self.at += 1;
            return self.put(name);
        }
        match c {
            b'K' | b'V' | b'r' => {
                self.at += 1;
                self.nested(|d| d.ty())?;
                self.put(match c {
                    b'K' => b" const",
                    b'V' => b" volatile",
                    _ => b" restrict",
                })?;
            }
            b'P' | b'R' | b'O' => {
                self.at += 1;
                let (decl, suffix): (&[u8], &[u8]) = match c {
                    b'P' => (b"(*)", b"*"),
                    b'R' => (b"(&)", b"&"),
                    _ => (b"(&&)", b"&&"),
                };
                if self.peek() == Some(b'F') {
                    self.nested(|d| d.function_type(Some(decl)))?;
                } else if self.peek() == Some(b'A') {
                    self.nested(|d| d.array_type(Some(decl)))?;
                } else if let Some(f) = self.declarator_sub_ahead() {
                    self.put_sub(f, Some(decl))?;
                } else {
                    self.nested(|d| d.ty())?;
                    self.put(suffix)?;
                }
            }
            // A function or array type: its own candidate.
            b'F' => return self.nested(|d| d.function_type(None)),
            b'A' => return self.nested(|d| d.array_type(None)),
            b'D' => {
                let name: &[u8] = match self.peek2()? {
                    b'n' => b"decltype(nullptr)",
                    b'i' => b"char32_t",
                    b's' => b"char16_t",
                    b'u' => b"char8_t",
                    b'a' => b"auto",
                    b'c' => b"decltype(auto)",
                    _ => return None,
                };
                self.at += 2;
                return self.put(name);
            }
            b'S' if self.peek2() != Some(b't') => {
                self.substitution(false)?;
                if self.peek() != Some(b'I') {
                    // A substitution is not a candidate again.
                    return Some(());
                }
                // A template's arguments: the whole type is a candidate.
                self.template_args()?;
            }
            b'N' => {
                self.nested(|d| d.nested_name())?;
            }
            b'0'..=b'9' | b'S' => {
                self.unscoped()?;
            }
            // A local type (a lambda's closure type as a template's
            // argument: `main::{lambda(int, int)#1}`).
            b'Z' => self.nested(|d| d.local_name())?,
            // A template parameter of the enclosing function.
            b'T' => {
                self.at += 1;
                let i = self.index()?;
                let arg = *self.fn_targs[..self.nfn_targs].get(i)?;
                if arg == NOT_READ {
                    return None;
                }
                self.put_span(arg)?;
            }
            // Function, array, member pointer types, template
            // parameters, `decltype` and the rest: not read.
            _ => return None,
        }
        let s = self.span_from(start);
        self.add_sub(s)
    }
}

/// The builtin type a one-letter code names.
fn builtin(c: u8) -> Option<&'static [u8]> {
    Some(match c {
        b'v' => b"void",
        b'w' => b"wchar_t",
        b'b' => b"bool",
        b'c' => b"char",
        b'a' => b"signed char",
        b'h' => b"unsigned char",
        b's' => b"short",
        b't' => b"unsigned short",
        b'i' => b"int",
        b'j' => b"unsigned int",
        b'l' => b"long",
        b'm' => b"unsigned long",
        b'x' => b"long long",
        b'y' => b"unsigned long long",
        b'n' => b"__int128",
        b'o' => b"unsigned __int128",
        b'f' => b"float",
        b'd' => b"double",
        b'e' => b"long double",
        b'g' => b"__float128",
        b'z' => b"...",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    fn name(m: &str) -> Option<String> {
        let mut out = Vec::new();
        super::put_name(m.as_bytes(), &mut |b: &[u8]| out.extend_from_slice(b))
            .then(|| String::from_utf8(out).unwrap())
    }

    #[test]
    fn plain_names_are_read() {
        assert_eq!(
            name("_ZNK4YAML7Emitter4goodEv").as_deref(),
            Some("YAML::Emitter::good")
        );
        assert_eq!(name("_ZN2ns4workEi").as_deref(), Some("ns::work"));
        assert_eq!(name("_Z3fooi").as_deref(), Some("foo"));
        assert_eq!(name("_ZL6helperPKc").as_deref(), Some("helper"));
        assert_eq!(
            name("_ZNSt7runtimeD1Ev").as_deref(),
            Some("std::runtime::~runtime")
        );
        assert_eq!(
            name("_ZN7MyErrorC2EPKc").as_deref(),
            Some("MyError::MyError")
        );
        assert_eq!(
            name("_ZN7MyErrorD0Ev").as_deref(),
            Some("MyError::~MyError")
        );
        assert_eq!(name("_ZNR1A1fEv").as_deref(), Some("A::f"));
        assert_eq!(
            name("_ZN12_GLOBAL__N_14deep1fEv").as_deref(),
            Some("(anonymous namespace)::deep::f")
        );
        assert_eq!(name("_ZN2nsL6helperEi").as_deref(), Some("ns::helper"));
        assert_eq!(
            name("_ZN2ns8describeB5cxx11Ei").as_deref(),
            Some("ns::describe[abi:cxx11]")
        );
    }

    /// Expected names as `c++filt -p` writes them.
    #[test]
    fn templates_operators_and_substitutions_are_read_as_cxxfilt_does() {
        for (m, want) in [
            ("_Z4tmplIiEvT_", "tmpl<int>"),
            (
                "_ZNKSt6vectorIiSaIiEE14_M_range_checkEm",
                "std::vector<int, std::allocator<int> >::_M_range_check",
            ),
            (
                "_ZNSt6vectorIiSaIiEEC2Ev",
                "std::vector<int, std::allocator<int> >::vector",
            ),
            (
                "_ZNSt6vectorIiSaIiEED1Ev",
                "std::vector<int, std::allocator<int> >::~vector",
            ),
            ("_ZN1AplERKS_", "A::operator+"),
            (
                "_ZNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEE9_M_appendEPKcm",
                "std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >::_M_append",
            ),
            (
                "_ZNSt8_Rb_treeIiSt4pairIKiiESt10_Select1stIS2_ESt4lessIiESaIS2_EE8_M_eraseEPSt13_Rb_tree_nodeIS2_E",
                "std::_Rb_tree<int, std::pair<int const, int>, std::_Select1st<std::pair<int const, int> >, std::less<int>, std::allocator<std::pair<int const, int> > >::_M_erase",
            ),
            ("_ZN3FooILi5ELb1EE3barEv", "Foo<5, true>::bar"),
            ("_ZN3FooILin5ELj7EE3barEv", "Foo<-5, 7u>::bar"),
            ("_ZlsRSoRK1A", "operator<<"),
            ("_ZN1AcvbEv", "A::operator bool"),
            (
                "_ZNSt6vectorIiSaIiEEixEm",
                "std::vector<int, std::allocator<int> >::operator[]",
            ),
            ("_ZN1AltIiEEbv", "A::operator< <int>"),
            ("_ZN1AclEv", "A::operator()"),
            (
                "_ZN4YAML6detail9node_data3getIPKcEEPNS0_4nodeERKT_St10shared_ptrINS0_13memory_holderEE",
                "YAML::detail::node_data::get<char const*>",
            ),
            ("_ZN1XIJidEE1fEv", "X<int, double>::f"),
            ("_ZN1XIJEE1fEv", "X<>::f"),
            ("_ZNK1XIPVKcE1fEv", "X<char const volatile*>::f"),
            ("_ZN1XISt6vectorIiSaIiEES1_E1fEv", "X<std::vector<int, std::allocator<int> >, std::allocator<int> >::f"),
            ("_ZNKSt8functionIFiiEEclEi", "std::function<int (int)>::operator()"),
            (
                "_ZNSt17_Function_handlerIFiiEPS0_E9_M_invokeERKSt9_Any_dataOi",
                "std::_Function_handler<int (int), int (*)(int)>::_M_invoke",
            ),
            ("_ZN2ns5applyIPFiiEEEiT_i", "ns::apply<int (*)(int)>"),
            ("_ZN1XIFvvEE1fEv", "X<void ()>::f"),
            ("_ZN1XIRFivEOFvidEE1fEv", "X<int (&)(), void (&&)(int, double)>::f"),
        ] {
            assert_eq!(name(m).as_deref(), Some(want), "{m}");
        }
    }

    /// Lambdas, local classes, enumerators and arrays, as `c++filt -p`
    /// writes them.
    #[test]
    fn local_names_lambdas_and_more_template_arguments_are_read() {
        for (m, want) in [
            ("_ZZ4mainENKUliE_clEi", "main::{lambda(int)#1}::operator()"),
            ("_ZZ4mainENKUlvE0_clEv", "main::{lambda()#2}::operator()"),
            (
                "_ZZ4workiENKUlRKiE_clES0_",
                "work(int)::{lambda(int const&)#1}::operator()",
            ),
            ("_ZZN2ns3fooEiEN5Local3runEv", "ns::foo(int)::Local::run"),
            (
                "_ZZNK2ns1A1fEvENKUliE_clEi",
                "ns::A::f() const::{lambda(int)#1}::operator()",
            ),
            // A template function's return type is read, not shown; its
            // parameters name its template arguments.
            (
                "_ZZN2ns2tfIiEEiRKT_ENKUliE_clEi",
                "ns::tf<int>(int const&)::{lambda(int)#1}::operator()",
            ),
            // A closure type as a template argument; a discriminator.
            (
                "_ZN9__gnu_cxx5__ops10_Iter_predIZ4mainEUliE_EclIPiEEbT_",
                "__gnu_cxx::__ops::_Iter_pred<main::{lambda(int)#1}>::operator()<int*>",
            ),
            ("_ZZ1fvEN1S1gEv_0", "f()::S::g"),
            ("_ZZ1fvENUt_1gEv", "f()::{unnamed type#1}::g"),
            ("_ZNSaIiEC2ERKS_", "std::allocator<int>::allocator"),
            (
                "_ZNSt15_Sp_counted_ptrIPiLN9__gnu_cxx12_Lock_policyE2EE10_M_disposeEv",
                "std::_Sp_counted_ptr<int*, (__gnu_cxx::_Lock_policy)2>::_M_dispose",
            ),
            ("_ZN1XIA10_cE1fEv", "X<char [10]>::f"),
            ("_ZN1XIRA3_iE1fEv", "X<int (&) [3]>::f"),
        ] {
            assert_eq!(name(m).as_deref(), Some(want), "{m}");
        }
    }

    #[test]
    fn other_names_are_left_alone() {
        for m in [
            "main",
            "_Z",
            "_ZN",
            "_ZNE",
            "_ZN1A1f",
            "_Z99x",
            "_Z03abc",
            "_ZN1A",
            // A string literal's local entity; a reference to an array
            // type named by a template parameter.
            "_ZZ4mainEs",
            "_ZZN1X3getIA5_cEEvRKT_ENKUlvE_clEv",
            // An expression as a template argument.
            "_ZN1XIXadL_Z1fvEEE1gEv",
            // A substitution that was never made.
            "_ZN1XIS5_E1fEv",
            "_ZN1XIiE",
        ] {
            assert_eq!(name(m), None, "{m}");
        }
    }

    /// Any input ends, without a panic, within the buffer.
    #[test]
    fn every_cut_and_a_deep_nesting_end_cleanly() {
        let m = "_ZNSt8_Rb_treeIiSt4pairIKiiESt10_Select1stIS2_ESt4lessIiESaIS2_EE8_M_eraseEPSt13_Rb_tree_nodeIS2_E";
        let local = "_ZSt9__find_ifIN9__gnu_cxx17__normal_iteratorIPSt4pairIPN4YAML6detail4nodeES6_ESt6vectorIS7_SaIS7_EEEENS0_5__ops10_Iter_predIZNS4_9node_data3getIA10_cEERS5_RKT_St10shared_ptrINS4_13memory_holderEEEUlS7_E_EEESJ_SJ_SJ_T0_St26random_access_iterator_tag";
        for m in [m, local] {
            for cut in 0..m.len() {
                let _ = name(&m[..cut]);
            }
        }
        let nested_local = format!("_Z{}1fvE{}", "Z".repeat(40), "E1g".repeat(40));
        let _ = name(&nested_local);
        let deep = format!("_ZN1X{}i{}1fEv", "I1Y".repeat(40), "E".repeat(40));
        assert_eq!(name(&deep), None);
        let wide = format!("_ZN1XI{}E1fEv", "S_".repeat(2000));
        let _ = name(&wide);
    }
}
