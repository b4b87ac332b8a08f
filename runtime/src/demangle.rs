//! The qualified name of a C++ function from its mangled symbol, for crash
//! reports: `_ZNK4YAML7Emitter4goodEv` → `YAML::Emitter::good`. Allocation-
//! free (a signal handler writes it). Only plain names are read: nested
//! and unscoped source names, `std::`, constructors and destructors, const
//! and reference qualifiers; a name with templates, substitutions,
//! operators or ABI tags is left as it is (as `nm` without `-C` shows it).

/// Most name components read.
const PARTS: usize = 16;

/// Writes the qualified name `mangled` encodes through `put`; false (and
/// nothing written) when it is not a name this reads.
pub(crate) fn put_name(mangled: &[u8], put: &mut impl FnMut(&[u8])) -> bool {
    let mut parts: [&[u8]; PARTS] = [&[]; PARTS];
    let Some((n, special)) = parse(mangled, &mut parts) else {
        return false;
    };
    for (k, part) in parts[..n].iter().enumerate() {
        if k > 0 {
            put(b"::");
        }
        put(part);
    }
    match special {
        Special::None => {}
        Special::Ctor | Special::Dtor => {
            put(b"::");
            if special == Special::Dtor {
                put(b"~");
            }
            put(parts[n - 1]);
        }
    }
    true
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
fn parse<'a>(m: &'a [u8], parts: &mut [&'a [u8]; PARTS]) -> Option<(usize, Special)> {
    let mut at = m.strip_prefix(b"_Z")?;
    let mut n = 0;
    let mut push = |parts: &mut [&'a [u8]; PARTS], p: &'a [u8]| -> Option<()> {
        *parts.get_mut(n)? = p;
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
            push(parts, b"std")?;
            at = rest;
        }
        let (name, _) = source_name(at)?;
        push(parts, name)?;
        return Some((n, Special::None));
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
        push(parts, b"std")?;
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
            b'0'..=b'9' => {
                let (name, rest) = source_name(at)?;
                push(parts, name)?;
                at = rest;
            }
            _ => return None,
        }
    }
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
            "_ZN1A1fB5cxx11Ev",
            "_Z99x",
            "_Z03abc",
            "_ZN1AC4Ev",
            "_ZN1A",
        ] {
            assert_eq!(name(m), None, "{m}");
        }
    }
}
