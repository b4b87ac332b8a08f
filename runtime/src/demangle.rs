//! The qualified name of a C++ function from its mangled symbol, for crash
//! reports: `_ZNK4YAML7Emitter4goodEv` → `YAML::Emitter::good`. Allocation-
//! free (a signal handler writes it). Only plain names are read: nested
//! and unscoped source names, `std::`, anonymous namespaces, internal
//! linkage, ABI tags (`[abi:cxx11]`), constructors and destructors, const
//! and reference qualifiers; a name with templates, substitutions or
//! operators is left as it is (as `nm` without `-C` shows it).

/// Most name components read.
const PARTS: usize = 16;

/// Writes the qualified name `mangled` encodes through `put`; false (and
/// nothing written) when it is not a name this reads.
pub(crate) fn put_name(mangled: &[u8], put: &mut impl FnMut(&[u8])) -> bool {
    let mut parts: [Part<'_>; PARTS] = [Part::default(); PARTS];
    let Some((n, special)) = parse(mangled, &mut parts) else {
        return false;
    };
    let name = |put: &mut dyn FnMut(&[u8]), p: &Part<'_>| match p.name {
        b"_GLOBAL__N_1" => put(b"(anonymous namespace)"),
        name => put(name),
    };
    for (k, part) in parts[..n].iter().enumerate() {
        if k > 0 {
            put(b"::");
        }
        name(put, part);
        if let Some(tag) = part.tag {
            put(b"[abi:");
            put(tag);
            put(b"]");
        }
    }
    match special {
        Special::None => {}
        Special::Ctor | Special::Dtor => {
            put(b"::");
            if special == Special::Dtor {
                put(b"~");
            }
            name(put, &parts[n - 1]);
        }
    }
    true
}

/// One component of a name, with its ABI tag.
#[derive(Clone, Copy, Default)]
struct Part<'a> {
    name: &'a [u8],
    tag: Option<&'a [u8]>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Special {
    None,
    /// A constructor: the class's name again.
    Ctor,
    /// A destructor: `~` and the class's name.
    Dtor,
}

/// The name's components, and whether a constructor or destructor follows
/// them.
fn parse<'a>(m: &'a [u8], parts: &mut [Part<'a>; PARTS]) -> Option<(usize, Special)> {
    let mut at = m.strip_prefix(b"_Z")?;
    let mut n = 0;
    let mut push = |parts: &mut [Part<'a>; PARTS], name: &'a [u8], tag| -> Option<()> {
        *parts.get_mut(n)? = Part { name, tag };
        n += 1;
        Some(())
    };
    // Internal linkage (a `static` function).
    if let Some(rest) = at.strip_prefix(b"L") {
        at = rest;
    }
    let nested = at.first() == Some(&b'N');
    if !nested {
        if let Some(rest) = at.strip_prefix(b"St") {
            push(parts, b"std", None)?;
            at = rest;
        }
        let (name, rest) = source_name(at)?;
        let (tag, rest) = abi_tag(rest)?;
        push(parts, name, tag)?;
        // Template arguments follow a template's name.
        return (rest.first() != Some(&b'I')).then_some((n, Special::None));
    }
    at = &at[1..];
    // CV- and ref-qualifiers of a member function.
    while let Some((&c, rest)) = at.split_first() {
        if matches!(c, b'r' | b'V' | b'K' | b'R' | b'O') {
            at = rest;
        } else {
            break;
        }
    }
    if let Some(rest) = at.strip_prefix(b"St") {
        push(parts, b"std", None)?;
        at = rest;
    }
    loop {
        match at.first()? {
            b'E' => return (n > 0).then_some((n, Special::None)),
            b'C' | b'D' => {
                let kind = match (at.first(), at.get(1)) {
                    (Some(b'C'), Some(b'1' | b'2' | b'3')) => Special::Ctor,
                    (Some(b'D'), Some(b'0' | b'1' | b'2')) => Special::Dtor,
                    _ => return None,
                };
                return (at.get(2) == Some(&b'E') && n > 0).then_some((n, kind));
            }
            b'0'..=b'9' | b'L' => {
                // (`L`: internal linkage, a `static` function.)
                let (name, rest) = source_name(at.strip_prefix(b"L").unwrap_or(at))?;
                let (tag, rest) = abi_tag(rest)?;
                push(parts, name, tag)?;
                at = rest;
            }
            _ => return None,
        }
    }
}

/// An ABI tag (`B<length><identifier>`) at the start of `at`, if any, and
/// what follows it; `None` for two tags (left mangled).
fn abi_tag(at: &[u8]) -> Option<(Option<&[u8]>, &[u8])> {
    let Some(rest) = at.strip_prefix(b"B") else {
        return Some((None, at));
    };
    let (tag, rest) = source_name(rest)?;
    (rest.first() != Some(&b'B')).then_some((Some(tag), rest))
}

/// `<length><identifier>` at the start of `at`: the identifier and what
/// follows it.
fn source_name(at: &[u8]) -> Option<(&[u8], &[u8])> {
    let digits = at.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 4 || at[0] == b'0' {
        return None;
    }
    let len = at[..digits]
        .iter()
        .fold(0usize, |v, &c| v * 10 + usize::from(c - b'0'));
    let name = at.get(digits..digits + len)?;
    // An identifier: anything else is not a name this reads.
    if !name.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_') {
        return None;
    }
    Some((name, &at[digits + len..]))
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

    #[test]
    fn other_names_are_left_alone() {
        for m in [
            "main",
            "_Z",
            "_ZN",
            "_ZNE",
            "_ZNSt6vectorIiSaIiEE9push_backEOi",
            "_ZN1AplERKS_",
            "_Z4tmplIiEvT_",
            "_ZN1A1fB1xB1yEv",
            "_Z99x",
            "_Z03abc",
            "_ZN1AC4Ev",
            "_ZN1A",
        ] {
            assert_eq!(name(m), None, "{m}");
        }
    }
}
