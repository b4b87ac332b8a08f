//! Pass 1: parse the objects, pull the archive members that define what
//! is referenced.

use std::sync::Arc;

use super::*;
use crate::parsed::Parsed;

/// Module name of an input: the file stem, without a source extension left
/// in it by build systems that name objects `main.c.o` (CMake).
pub(crate) fn stem(path: &str) -> String {
    let p = Path::new(path);
    let s = p
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string());
    for ext in [".c", ".cc", ".cpp", ".cxx", ".C"] {
        if let Some(base) = s.strip_suffix(ext).filter(|b| !b.is_empty()) {
            return base.to_string();
        }
    }
    s
}

/// An object to parse: an input file or an archive member.
struct Cand<'d> {
    /// Path and module name (empty when `parsed` holds them).
    path: String,
    name: String,
    data: &'d [u8],
    mtime_ns: i64,
    /// The object parsed by an earlier link (input files only).
    parsed: Option<&'d Arc<Parsed>>,
    /// A member of an archive.
    member: bool,
}

/// A parsed object, and what it was parsed from when kept between links.
type Loaded<'d> = (ObjFile<'d>, Option<&'d Arc<Parsed>>);

/// Parses the inputs (`parsed[i]`: input `i` already parsed, when kept
/// between links). Problems are returned to be reported with the rest.
pub(crate) fn load_modules<'d>(
    inputs: &[&'d MappedInput],
    parsed: &'d [Option<Arc<Parsed>>],
) -> Result<(Vec<Mod<'d>>, Vec<Diagnostic>), LinkError> {
    let mut diags = Diags::default();
    let (objects, archives) = split_inputs(inputs, parsed, &mut diags);
    // An unreadable object is reported and left out; linking goes on so
    // that one run reports every problem (the image is not written).
    let mut mods: Vec<Loaded<'d>> = Vec::new();
    for (o, d) in parse_all(objects) {
        diags.list.extend(d.list);
        mods.extend(o);
    }
    if !archives.is_empty() {
        pull_members(&mut mods, archives, &mut diags);
    }
    check_names(&mut mods, &mut diags);
    if mods.is_empty() {
        return Err(LinkError::Inputs(diags.list));
    }
    let mods = map_mixed(mods, |(_, p)| p.is_none(), |_, m| new_mod(m));
    Ok((mods, diags.list))
}

/// Input objects, and the members of each input archive.
#[allow(clippy::type_complexity)]
fn split_inputs<'d>(
    inputs: &[&'d MappedInput],
    parsed: &'d [Option<Arc<Parsed>>],
    diags: &mut Diags,
) -> (Vec<Cand<'d>>, Vec<Vec<Cand<'d>>>) {
    let mut objects = Vec::new();
    let mut archives = Vec::new();
    for (i, inp) in inputs.iter().enumerate() {
        let data = inp.bytes.as_slice();
        let kept = parsed.get(i).and_then(Option::as_ref);
        if let Some(p) = kept {
            // Named when it was parsed.
            objects.push(Cand {
                path: String::new(),
                name: String::new(),
                data,
                mtime_ns: inp.mtime_ns,
                parsed: Some(p),
                member: false,
            });
            continue;
        }
        let path = inp.path.display().to_string();
        if data.starts_with(b"!<arch>\n") || data.starts_with(b"!<thin>\n") {
            archives.push(archive_members(&path, data, inp.mtime_ns, diags));
        } else {
            objects.push(Cand {
                name: stem(&path),
                path,
                data,
                mtime_ns: inp.mtime_ns,
                parsed: None,
                member: false,
            });
        }
    }
    (objects, archives)
}

fn archive_members<'d>(
    path: &str,
    data: &'d [u8],
    mtime_ns: i64,
    diags: &mut Diags,
) -> Vec<Cand<'d>> {
    let malformed = |diags: &mut Diags, e: object::read::Error| {
        diags.push(
            path,
            "",
            None,
            format!("malformed archive: {e}"),
            "rebuild the archive with `ar rcs`",
        )
    };
    let ar = match object::read::archive::ArchiveFile::parse(data) {
        Ok(ar) => ar,
        Err(e) => {
            malformed(diags, e);
            return Vec::new();
        }
    };
    let mut members = Vec::new();
    for mem in ar.members() {
        match mem.and_then(|m| {
            Ok((
                String::from_utf8_lossy(m.name()).into_owned(),
                m.data(data)?,
            ))
        }) {
            Ok((mname, mdata)) => members.push(Cand {
                path: format!("{path}({mname})"),
                name: stem(&mname),
                data: mdata,
                mtime_ns,
                parsed: None,
                member: true,
            }),
            Err(e) => malformed(diags, e),
        }
    }
    members
}

fn parse_all(cands: Vec<Cand<'_>>) -> Vec<(Option<Loaded<'_>>, Diags)> {
    map_mixed(
        cands,
        |c| c.parsed.is_none(),
        |_, c| {
            let mut d = Diags::default();
            if let Some(p) = c.parsed {
                return (Some((p.lend(), Some(p))), d);
            }
            let o = parse_object(&c.path, &c.name, c.data, c.mtime_ns, &mut d).map(|mut o| {
                o.member = c.member;
                o
            });
            (o.map(|o| (o, None)), d)
        },
    )
}

/// Archive members: pull a member when it defines a symbol that is still
/// undefined, until nothing changes (each member at most once).
fn pull_members<'d>(mods: &mut Vec<Loaded<'d>>, archives: Vec<Vec<Cand<'d>>>, diags: &mut Diags) {
    let mut parsed_archives: Vec<Vec<Option<Loaded<'d>>>> = Vec::new();
    for members in archives {
        let mut v = Vec::new();
        for (o, d) in parse_all(members) {
            // Member diagnostics only matter if the member is pulled.
            if o.is_none() {
                diags.list.extend(d.list);
            }
            v.push(o);
        }
        parsed_archives.push(v);
    }
    loop {
        let mut defined = std::collections::HashSet::new();
        let mut undefined = std::collections::HashSet::new();
        for (m, _) in mods.iter() {
            for s in m.symbols.iter() {
                if s.is_global() {
                    if s.shndx == Shndx::Undef {
                        undefined.insert(s.name);
                    } else {
                        defined.insert(s.name);
                    }
                }
            }
        }
        undefined.retain(|n| !defined.contains(n));
        let wanted = |o: &Loaded<'_>| {
            o.0.symbols
                .iter()
                .any(|s| s.is_global() && s.shndx != Shndx::Undef && undefined.contains(s.name))
        };
        let slot = parsed_archives
            .iter_mut()
            .flat_map(|members| members.iter_mut())
            .find(|slot| slot.as_ref().is_some_and(wanted));
        match slot.and_then(Option::take) {
            Some(o) => mods.push(o),
            None => break,
        }
    }
}

/// Module names must be unique: they key everything the runtime keeps. An
/// object given twice is said once and its second copy left out, so that
/// its every definition is not reported again as a duplicate.
fn check_names(mods: &mut Vec<Loaded<'_>>, diags: &mut Diags) {
    let mut keep = Vec::with_capacity(mods.len());
    {
        let mut seen: HashMap<&str, &str> = HashMap::default();
        for (m, _) in mods.iter() {
            let prev = seen.get(m.name.as_str()).copied();
            keep.push(prev != Some(m.path.as_str()));
            match prev {
                None => {
                    seen.insert(&m.name, &m.path);
                }
                Some(prev) if prev == m.path => diags.push(
                    &m.path,
                    &m.name,
                    None,
                    format!("{} is given twice", m.path),
                    "give each object once",
                ),
                Some(prev) => diags.push(
                    &m.path,
                    &m.name,
                    None,
                    format!("module name '{}' is also the name of {prev}", m.name),
                    "module names are file stems and must be unique; rename one of the files",
                ),
            }
        }
    }
    let mut keep = keep.into_iter();
    mods.retain(|_| keep.next().unwrap_or(true));
}

fn new_mod<'d>((obj, parsed): Loaded<'d>) -> Mod<'d> {
    Mod {
        hash: parsed.map_or_else(|| hcr_image::content_hash(obj.data), |p| p.hash),
        obj,
        parsed,
        fn_base: 0,
        funcs: Vec::new(),
        clones: Vec::new(),
        sec_funcs: Vec::new(),
        sec_func_at: Vec::new(),
        obj_base: 0,
        objs: Vec::new(),
        sec_obj: Vec::new(),
        common_obj: HashMap::default(),
        tgt: Vec::new(),
        imports: Vec::new(),
        sec_off: Vec::new(),
        got: Vec::new(),
        got_index: HashMap::default(),
        plt: Vec::new(),
        plt_index: HashMap::default(),
        classes: Vec::new(),
        sizes: RegionSizes::default(),
        bases: RegionSizes::default(),
        undefined: Vec::new(),
        own_def: Vec::new(),
        global_def: Vec::new(),
        tlsdesc_host: 0,
    }
}
