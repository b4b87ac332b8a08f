//! Pass 1: parse the objects, pull the archive members that define what
//! is referenced.

use super::*;

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

/// Parses the inputs. Problems are returned to be reported with the rest.
pub(crate) fn load_modules<'d>(
    inputs: &[&'d MappedInput],
) -> Result<(Vec<Mod<'d>>, Vec<Diagnostic>), LinkError> {
    struct Cand<'d> {
        path: String,
        name: String,
        data: &'d [u8],
        mtime_ns: i64,
    }
    let mut objects = Vec::new();
    let mut archives: Vec<Vec<Cand<'_>>> = Vec::new();
    let mut diags = Diags::default();
    for inp in inputs {
        let data = inp.bytes.as_slice();
        let path = inp.path.display().to_string();
        if data.starts_with(b"!<arch>\n") || data.starts_with(b"!<thin>\n") {
            match object::read::archive::ArchiveFile::parse(data) {
                Ok(ar) => {
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
                                mtime_ns: inp.mtime_ns,
                            }),
                            Err(e) => diags.push(
                                &path,
                                "",
                                None,
                                format!("malformed archive: {e}"),
                                "rebuild the archive with `ar rcs`",
                            ),
                        }
                    }
                    archives.push(members);
                }
                Err(e) => diags.push(
                    &path,
                    "",
                    None,
                    format!("malformed archive: {e}"),
                    "rebuild the archive with `ar rcs`",
                ),
            }
        } else {
            objects.push(Cand {
                path: path.clone(),
                name: stem(&path),
                data,
                mtime_ns: inp.mtime_ns,
            });
        }
    }
    fn parse_all<'d>(cands: Vec<Cand<'d>>) -> Vec<(Option<ObjFile<'d>>, Diags)> {
        cands
            .into_par_iter()
            .map(|c| {
                let mut d = Diags::default();
                let o = parse_object(&c.path, &c.name, c.data, c.mtime_ns, &mut d);
                (o, d)
            })
            .collect()
    }
    // An unreadable object is reported and left out; linking goes on so
    // that one run reports every problem (the image is not written).
    let mut mods: Vec<ObjFile<'_>> = Vec::new();
    for (o, d) in parse_all(objects) {
        diags.list.extend(d.list);
        mods.extend(o);
    }
    // Archive members: pull a member when it defines a symbol that is still
    // undefined, until nothing changes (each member at most once).
    if !archives.is_empty() {
        let mut parsed_archives: Vec<Vec<Option<ObjFile<'_>>>> = Vec::new();
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
            for m in &mods {
                for s in &m.symbols {
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
            let mut pulled = false;
            'outer: for members in parsed_archives.iter_mut() {
                for slot in members.iter_mut() {
                    let wants = slot.as_ref().is_some_and(|o| {
                        o.symbols.iter().any(|s| {
                            s.is_global() && s.shndx != Shndx::Undef && undefined.contains(s.name)
                        })
                    });
                    if wants {
                        if let Some(o) = slot.take() {
                            mods.push(o);
                            pulled = true;
                            break 'outer;
                        }
                    }
                }
            }
            if !pulled {
                break;
            }
        }
    }
    // Module names must be unique: they key everything the runtime keeps.
    let mut seen: HashMap<&str, &str> = HashMap::default();
    for m in &mods {
        if let Some(prev) = seen.insert(&m.name, &m.path) {
            diags.push(
                &m.path,
                &m.name,
                None,
                format!("module name '{}' is also the name of {prev}", m.name),
                "module names are file stems and must be unique; rename one of the files",
            );
        }
    }
    if mods.is_empty() {
        return Err(LinkError::Inputs(diags.list));
    }
    let mods = mods
        .into_par_iter()
        .map(|obj| Mod {
            hash: hcr_image::content_hash(obj.data),
            obj,
            fn_base: 0,
            funcs: Vec::new(),
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
        })
        .collect();
    Ok((mods, diags.list))
}
