//! Pass 10 (with the writer): the manifest, with each module's link
//! identity.

use std::sync::Arc;

use super::*;

/// The identities of `m`'s gcc-numbered function statics (see
/// `identity.rs`), by object index; empty entries for every other object
/// (and an empty vector when the module has none).
pub(crate) fn static_identities(m: &Mod<'_>) -> Vec<crate::identity::Identity> {
    use crate::identity::{gcc_numbered, identities, Identity, Numbered};
    let mut of_sec: HashMap<u32, usize> = HashMap::default();
    let mut statics: Vec<Numbered<'_>> = Vec::new();
    for (oi, o) in m.objs.iter().enumerate() {
        if o.global {
            continue;
        }
        if let (Some(sec), Some((base, n))) = (o.sec, gcc_numbered(o.name)) {
            of_sec.insert(sec, statics.len());
            statics.push(Numbered {
                index: oi,
                base,
                n,
                owners: Vec::new(),
            });
        }
    }
    if statics.is_empty() {
        return Vec::new();
    }
    // With debug information: the function that declares each static, in
    // source order (see `dwarf_statics.rs`).
    let declared = crate::dwarf_statics::static_owners(&m.obj);
    let mut by_dwarf = vec![false; statics.len()];
    for (&sec, &k) in &of_sec {
        if let Some(&(owner, order)) = declared.get(&sec) {
            statics[k].owners.push(owner);
            statics[k].n = u64::from(order);
            by_dwarf[k] = true;
        }
    }
    // Else which functions' code refers to each static's section.
    for (si, sec) in m.obj.sections.iter().enumerate() {
        if sec.kind != SecKind::Text {
            continue;
        }
        let funcs = &m.sec_funcs[m.sec_func_at[si] as usize..m.sec_func_at[si + 1] as usize];
        let owner = match funcs.first() {
            Some(&(_, f)) => m.funcs[f as usize].name,
            None => sec.name,
        };
        for r in m.obj.relocs(sec) {
            if let Some(Shndx::Sec(t)) = m.obj.symbols.get(r.sym as usize).map(|s| s.shndx) {
                if let Some(&k) = of_sec.get(&t).filter(|&&k| !by_dwarf[k]) {
                    statics[k].owners.push(owner);
                }
            }
        }
    }
    let mut out = vec![Identity::default(); m.objs.len()];
    for (oi, id) in identities(statics) {
        out[oi] = id;
    }
    out
}

/// What the manifest is built from.
pub(crate) struct ManifestInputs<'a, 'd> {
    pub(crate) mods: &'a [Mod<'d>],
    pub(crate) root: u32,
    pub(crate) reachable: &'a [bool],
    pub(crate) layout: &'a AreaLayout,
    pub(crate) hosts: &'a [Host<'d>],
    pub(crate) libs: &'a [SharedLib],
    pub(crate) applied: &'a Applied,
    /// Segment checksums and link identities the previous link computed
    /// for modules whose applied bytes it lent (see `reuse.rs`).
    pub(crate) carried: &'a [Carried],
}

/// The function and object entries being collected, module by module.
struct Entries {
    man: Manifest,
    functions: Vec<Function>,
    objects: Vec<Object>,
    modules: Vec<Module>,
}

pub(crate) fn build_manifest(inp: &ManifestInputs<'_, '_>) -> Manifest {
    let mods = inp.mods;
    let n_funcs: usize = mods.iter().map(|m| m.funcs.len()).sum();
    let n_objs: usize = mods.iter().map(|m| m.objs.len()).sum();
    let mut e = Entries {
        man: Manifest::default(),
        functions: Vec::with_capacity(n_funcs),
        objects: Vec::with_capacity(n_objs),
        modules: Vec::with_capacity(mods.len()),
    };
    e.man.strings.reserve(name_bytes(mods, inp.hosts));
    for (mi, m) in mods.iter().enumerate() {
        let (functions, objects) = add_definitions(&mut e, inp, mi, m);
        let md = module_entry(&mut e.man, inp, mi, m, functions, objects);
        e.modules.push(md);
    }
    let mut man = assemble(e, inp);
    let kept = (0..man.modules.len())
        .map(|mi| inp.carried.get(mi).and_then(|c| c.identity.clone()))
        .collect();
    let links: Vec<(u64, Arc<[ModuleId]>)> = map_mixed(
        kept,
        |k| k.is_none(),
        |mi, k| {
            k.unwrap_or_else(|| {
                let (hash, deps) = link_identity(&man, mi, inp.applied);
                (hash, deps.into())
            })
        },
    );
    for (md, (hash, deps)) in man.modules.iter_mut().zip(links) {
        md.link_hash = hash;
        md.deps = deps;
    }
    man
}

/// Bytes of every name the manifest's string table will hold.
fn name_bytes(mods: &[Mod<'_>], hosts: &[Host<'_>]) -> usize {
    mods.iter()
        .map(|m| {
            m.funcs.iter().map(|f| f.name.len()).sum::<usize>()
                + m.objs.iter().map(|o| o.name.len()).sum::<usize>()
                + m.obj.name.len()
                + m.obj.source.len()
                + m.obj.path.len()
        })
        .sum::<usize>()
        + hosts.iter().map(|h| h.name.len()).sum::<usize>()
}

/// Adds module `mi`'s functions and objects; returns their spans.
fn add_definitions(
    e: &mut Entries,
    inp: &ManifestInputs<'_, '_>,
    mi: usize,
    m: &Mod<'_>,
) -> (Span, Span) {
    let fstart = e.functions.len() as u32;
    let nim = crate::nim::is_nim_module(&m.obj.name);
    let c_text = match nim {
        true => crate::nim::c_source(&m.obj.path)
            .and_then(|c| std::fs::read_to_string(c).ok())
            .unwrap_or_default(),
        false => String::new(),
    };
    let sigs = crate::nim::signatures(&c_text);
    let none = Default::default();
    let stable = |names: Vec<&str>, sigs| match nim {
        true => crate::nim::stable_names(names, sigs),
        false => Vec::new(),
    };
    let fnames = stable(m.funcs.iter().map(|f| f.name).collect(), &sigs);
    let onames = stable(m.objs.iter().map(|o| o.name).collect(), &none);
    for (fi, f) in m.funcs.iter().enumerate() {
        // Relative to the module's segment.
        let off = sec_area_offset(m, f.sec as usize).unwrap_or(0) + f.value - m.bases.text;
        let name = fnames.get(fi).and_then(Option::as_deref);
        e.functions.push(Function {
            name: e.man.intern(name.unwrap_or(f.name)),
            module: ModuleId(mi as u32),
            offset: off as u32,
            size: f.size as u32,
            global: f.global,
            hidden: f.hidden,
            indirect: f.indirect,
        });
    }
    let ostart = e.objects.len() as u32;
    let mut idents = static_identities(m);
    for (oi, o) in m.objs.iter().enumerate() {
        let gid = e.objects.len();
        let mut id = idents.get_mut(oi).map(std::mem::take).unwrap_or_default();
        // A Nim global's identity drops Nim's counter (see `nim`).
        if let (true, Some(Some(nim_key))) = (id.key.is_empty(), onames.get(oi)) {
            id.key.clone_from(nim_key);
        }
        // Relative to the module's part of the init blob.
        let init = o.sec.and_then(|s| {
            let sec = &m.obj.sections[s as usize];
            (!sec.nobits).then(|| m.sec_off[s as usize])
        });
        let ofix_base = inp.applied.module_object_fixups[mi].start;
        let gspan = inp.applied.object_fixup_spans[gid];
        e.objects.push(Object {
            name: e.man.intern(o.name),
            identity: e.man.intern(&id.key),
            assumed: e.man.intern(&id.assumed),
            module: ModuleId(mi as u32),
            size: o.size,
            align: o.align.min(u64::from(u32::MAX)) as u32,
            init,
            fixups: Span::new(gspan.start - ofix_base, gspan.end - ofix_base),
            global: o.global,
            hidden: o.hidden,
            tls: o.tls,
        });
    }
    (
        Span::new(fstart, e.functions.len() as u32),
        Span::new(ostart, e.objects.len() as u32),
    )
}

/// Module `mi`'s entry (its link identity is filled in later).
fn module_entry(
    man: &mut Manifest,
    inp: &ManifestInputs<'_, '_>,
    mi: usize,
    m: &Mod<'_>,
    functions: Span,
    objects: Span,
) -> Module {
    let (applied, seg) = (inp.applied, inp.layout.segs[mi]);
    let checksum = inp.carried.get(mi).and_then(|c| c.checksum);
    let clones: Vec<hcr_image::CodePart> = (m.clones.iter())
        .filter_map(|c| {
            // Relative to the module's segment, as functions are.
            let off = sec_area_offset(m, c.sec as usize)? + c.value - m.bases.text;
            Some(hcr_image::CodePart {
                name: man.intern(c.name),
                offset: u32::try_from(off).ok()?,
                size: u32::try_from(c.size).ok()?,
            })
        })
        .collect();
    let mut md = Module::new(ModuleRecord {
        name: man.intern(&m.obj.name),
        source: man.intern(&m.obj.source),
        object: man.intern(&m.obj.path),
        mtime_ns: m.obj.mtime_ns,
        content_hash: m.hash,
        imports: m.imports.iter().map(|&i| ModuleId(i)).collect(),
        fixups: applied.module_fixups[mi].len(),
        ctors: applied.ctors[mi].clone().into(),
        dtors: applied.dtors[mi].clone().into(),
        on_reload: applied.on_reload[mi].clone().into(),
        undefined: m.undefined.iter().map(|&h| HostId(h)).collect(),
        clones: clones.into(),
        checksum: checksum.unwrap_or_else(|| {
            hcr_image::segment_checksum(&applied.area[seg.0 as usize..seg.1 as usize])
        }),
        text_size: m.sizes.text as u32,
        rodata_size: (m.sizes.rodata + m.sizes.eh) as u32,
        ..ModuleRecord::default()
    });
    md.reachable = inp.reachable[mi];
    md.functions = functions;
    md.objects = objects;
    md.init = (m.bases.init, m.sizes.init);
    md.seg = Span::new(seg.0 as u32, seg.1 as u32);
    md.text = Span::new(m.bases.text as u32, (m.bases.text + m.sizes.text) as u32);
    md.eh_frame = Span::new(m.bases.eh as u32, seg.1 as u32);
    md
}

/// The manifest from its entries: host symbols, libraries, statistics.
fn assemble(e: Entries, inp: &ManifestInputs<'_, '_>) -> Manifest {
    let Entries {
        mut man,
        functions,
        objects,
        modules,
    } = e;
    let mut listed = vec![false; inp.hosts.len()];
    for md in &modules {
        for h in md.undefined.iter() {
            if let Some(l) = listed.get_mut(h.0 as usize) {
                *l = true;
            }
        }
    }
    let hosts = inp
        .hosts
        .iter()
        .zip(listed)
        .map(|(h, listed)| HostSymbol {
            name: man.intern(h.name),
            weak: h.weak,
            listed,
        })
        .collect();
    let libraries = inp
        .libs
        .iter()
        .map(|l| Library {
            request: man.intern(&l.request),
            soname: man.intern(&l.soname),
            path: man.intern(&l.path.to_string_lossy()),
        })
        .collect();
    let fn_lens: Vec<usize> = modules
        .iter()
        .map(|md| md.functions.len() as usize)
        .collect();
    let obj_lens: Vec<usize> = modules.iter().map(|md| md.objects.len() as usize).collect();
    let mods = inp.mods;
    Manifest {
        strings: man.strings,
        module_strings: Default::default(),
        root: ModuleId(inp.root),
        layout: inp.layout.layout.clone(),
        modules: modules.into_iter().collect(),
        functions: hcr_image::Chunked::from_vec(functions, fn_lens),
        objects: hcr_image::Chunked::from_vec(objects, obj_lens),
        hosts,
        libraries,
        stats: PlanStats {
            relocations: inp.applied.relocations,
            applied_at_link: inp.applied.at_link,
            got_entries: mods.iter().map(|m| m.got.len() as u32).sum(),
            plt_stubs: mods.iter().map(|m| m.plt.len() as u32).sum(),
        },
        read: Default::default(),
    }
}

/// A module's [`Module::link_hash`] and [`Module::deps`]: its content and
/// segment layout, and every fixup of its segment and of its objects with
/// the target named by what stays the same across links (the owning
/// module's name and the symbol's name, or the offset inside the owning
/// module's segment), never by an index that other modules shift.
pub(crate) fn link_identity(man: &Manifest, mi: usize, applied: &Applied) -> (u64, Vec<ModuleId>) {
    let md = &man.modules[mi];
    use std::hash::Hasher as _;
    let mut h = twox_hash::XxHash3_64::new();
    h.write(&md.content_hash.to_le_bytes());
    for s in [md.seg, md.text, md.eh_frame] {
        h.write(&(s.start - md.seg.start).to_le_bytes());
        h.write(&(s.end - md.seg.start).to_le_bytes());
    }
    let mut deps: Vec<ModuleId> = Vec::new();
    let mut put = |h: &mut twox_hash::XxHash3_64, f: &Fixup| {
        h.write(&f.offset.to_le_bytes());
        h.write(&f.addend.to_le_bytes());
        h.write(&[f.kind as u8, f.class as u8]);
        let name = |h: &mut twox_hash::XxHash3_64, module: ModuleId, s: &str| {
            h.write(man.module_name(module).as_bytes());
            h.write(&[0]);
            h.write(s.as_bytes());
            h.write(&[0]);
        };
        match f.class {
            TargetClass::Function => {
                if let Some(t) = man.functions.get(f.target as usize) {
                    name(h, t.module, man.str(t.name));
                }
            }
            TargetClass::Object => {
                if let Some(t) = man.objects.get(f.target as usize) {
                    name(h, t.module, man.object_key(t));
                }
            }
            TargetClass::Host => {
                if let Some(t) = man.hosts.get(f.target as usize) {
                    h.write(man.str(t.name).as_bytes());
                    h.write(&[0]);
                }
            }
            TargetClass::Area => {
                let abs = md.seg.start.wrapping_add(f.target);
                if let Some(tm) = man.module_at(abs) {
                    let seg = man.modules[tm.0 as usize].seg;
                    name(h, tm, "");
                    h.write(&(abs - seg.start).to_le_bytes());
                    if tm.0 as usize != mi && !deps.contains(&tm) {
                        deps.push(tm);
                    }
                }
            }
        }
    };
    for f in &applied.fixups[applied.module_fixups[mi].range()] {
        put(&mut h, f);
    }
    let ofix = &applied.object_fixups[applied.module_object_fixups[mi].range()];
    for o in man.objects.part(mi) {
        h.write(man.object_key(o).as_bytes());
        h.write(&[0]);
        h.write(&o.size.to_le_bytes());
        h.write(&[o.tls as u8]);
        if let Some(o_init) = o.init {
            h.write(&o_init.to_le_bytes());
        }
        for f in ofix.get(o.fixups.range()).unwrap_or(&[]) {
            put(&mut h, f);
        }
    }
    deps.sort_unstable();
    (h.finish(), deps)
}
