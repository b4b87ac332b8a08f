//! The link passes, in order. Each pass is a flat step with its reason; the
//! per-module work inside a pass runs in parallel (rayon).

use rustc_hash::FxHashMap as HashMap;
use std::path::Path;

use hcr_image::{
    Fixup, FixupKind, Function, HostId, HostSymbol, Layout, Library, Manifest, Module, ModuleId,
    ModuleRecord, Object, PlanStats, Span, TargetClass, PAGE_SIZE,
};
use rayon::prelude::*;

use crate::arch::x86_64::{self as x86, *};
use crate::error::{Diagnostic, Diags, LinkError};
use crate::input::MappedInput;
use crate::libs::SharedLib;
use crate::parse::{parse_object, ObjFile, SecKind, Shndx, Sym};
use crate::{LinkConfig, LinkOutput};

mod apply;
mod classify;
mod layout;
mod load;
mod manifest;
pub(crate) mod model;
mod resolve;
mod symbols;
mod tls;

pub(crate) use self::model::*;
use self::{apply::*, classify::*, layout::*, load::*, manifest::*, resolve::*, symbols::*};

pub(crate) fn link(
    config: &LinkConfig,
    inputs: &[&MappedInput],
    libs: &[SharedLib],
    sink: &mut dyn crate::input::Sink,
    timer: &mut Timer,
) -> Result<LinkOutput, LinkError> {
    // 1. Parse every object, pull archive members that define what is
    //    referenced: the module list, in command-line order.
    let (mut mods, mut diags) = load_modules(inputs)?;

    timer.lap("parse");
    // 2. COMDAT: the first module with a group keeps it; later copies are
    //    discarded (inline functions, template instances).
    dedup_comdats(&mut mods);

    timer.lap("comdat");
    // 3. Functions and writable objects get their ids, module by module.
    collect_definitions(&mut mods, &mut diags);

    timer.lap("definitions");
    // 4. Global symbols: one definition per name; duplicates are errors.
    let globals = build_global_table(&mods, &mut diags);
    // Problems so far do not stop the scan below: one run reports them all.
    let root = match &config.root {
        Some(r) => mods
            .iter()
            .position(|m| m.obj.name == *r)
            .ok_or_else(|| LinkError::UnknownRoot(r.clone()))? as u32,
        None => 0,
    };

    timer.lap("global symbols");
    // 5. Host symbols: what no module defines is left to the host.
    let hosts = collect_hosts(&mods, &globals);
    let host_index: HashMap<&str, u32> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.name, i as u32))
        .collect();

    timer.lap("host symbols");
    // 6. Resolve every symbol of every module; imports follow.
    let resolved: Vec<Resolved> = mods
        .par_iter()
        .enumerate()
        .map(|(mi, m)| resolve_module(mi as u32, m, &mods, &globals, &host_index))
        .collect();
    if config.skip_free {
        std::mem::forget((globals, host_index));
    }
    for (m, r) in mods.iter_mut().zip(resolved) {
        m.tgt = r.tgt;
        m.imports = r.imports;
        m.undefined = r.undefined;
        m.own_def = r.own_def;
        m.global_def = r.global_def;
    }
    let reachable = reachability(&mods, root);
    let mut warnings = Vec::new();
    if let Some(w) = root_without_main(&mods, root) {
        warnings.push(w);
    }
    // Host symbols that no library defines: warned about (all at once), not
    // refused, since a host program embedding the runtime may define them.
    warnings.extend(unresolved_host_warnings(&mods, &reachable, &hosts, libs));

    timer.lap("resolve + import tree");
    // 7. Scan relocations: which GOT entries and PLT stubs each module needs,
    //    and every unsupported relocation (all reported).
    let scans: Vec<Result<ScanOut, Vec<Diagnostic>>> = mods
        .par_iter()
        .enumerate()
        .map(|(mi, _)| scan_module(mi as u32, &mods))
        .collect();
    for (m, s) in mods.iter_mut().zip(scans) {
        match s {
            Ok(s) => {
                m.got = s.got;
                m.got_index = s.got_index;
                m.plt = s.plt;
                m.plt_index = s.plt_index;
                m.classes = s.classes;
            }
            Err(d) => diags.extend(d),
        }
    }
    if !diags.is_empty() {
        return Err(LinkError::Inputs(diags));
    }
    let mut hosts = hosts;
    tls::add_resolver_host(&mut mods, &mut hosts);

    timer.lap("scan relocations");
    // 8. Layout: fixed before any byte is written.
    mods.par_iter_mut().for_each(layout_module);
    let layout = layout_area(&mut mods)?;

    timer.lap("layout");
    // 9. Copy sections into the area and init blob, applying relocations
    //    whose value is known now; the rest become the load plan's fixups.
    let applied = apply_all(&mods, &layout)?;

    timer.lap("copy + relocate");
    // 10. The ELF file, and the manifest (built while the modules render).
    let make_manifest = || build_manifest(&mods, root, &reachable, &layout, &hosts, libs, &applied);
    // Debug sections, relocated as far as the link can (tool-only).
    let debug = crate::debug::build(&mods);
    timer.lap("debug sections");
    let (size, manifest) = crate::write::write_image(
        &mods,
        &make_manifest,
        &applied,
        &debug,
        sink,
        timer,
        config.skip_free,
    )
    .map_err(|source| LinkError::Write {
        path: "image".into(),
        source,
    })?;
    let out = LinkOutput {
        modules: mods.len(),
        stats: manifest.stats,
        size,
        bytes: Vec::new(),
        warnings,
    };
    if config.skip_free {
        std::mem::forget((mods, manifest, applied, debug));
    }
    Ok(out)
}
