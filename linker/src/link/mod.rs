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
use crate::libs::Resolved as Libraries;
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
mod reuse;
mod symbols;
mod tls;

pub(crate) use self::load::stem;
pub(crate) use self::model::*;
pub(crate) use self::reuse::parse_inputs;
pub(crate) use self::reuse::Previous;
pub use self::reuse::ReuseStats;
use self::reuse::{keep, Carried, Leftovers, Plan};
use self::{apply::*, classify::*, layout::*, load::*, manifest::*, resolve::*, symbols::*};

/// What an [`crate::InputCache`] lends a link: the inputs it already
/// parsed (`parsed[i]` for input `i`) and the previous link's state.
pub(crate) struct Reuse<'d> {
    pub(crate) parsed: &'d [Option<std::sync::Arc<crate::parsed::Parsed>>],
    /// The previous link's state: taken by a link that succeeds (it gives
    /// the next one's in [`Linked::next`]), left for the next link by one
    /// whose inputs are refused (a partly used state is dropped).
    pub(crate) prev: &'d mut Option<Previous>,
    /// How many of `parsed` were taken over from the cache.
    pub(crate) taken: usize,
}

/// A link's output, and with a cache, the state the next link starts from.
pub(crate) struct Linked {
    pub(crate) out: LinkOutput,
    pub(crate) next: Option<Previous>,
}

pub(crate) fn link(
    config: &LinkConfig,
    inputs: &[&MappedInput],
    libraries: &Libraries,
    sink: &mut dyn crate::input::Sink,
    timer: &mut Timer,
    reuse: Option<Reuse<'_>>,
) -> Result<Linked, LinkError> {
    let libs = &libraries.shared[..];
    let (parsed, taken, mut slot) = match reuse {
        Some(r) => (r.parsed, r.taken, Some(r.prev)),
        None => (&[][..], 0, None),
    };
    let caching = slot.is_some();
    // 1. Parse every object, pull archive members that define what is
    //    referenced: the module list, in command-line order.
    let (mut mods, mut diags) = load_modules(inputs, parsed)?;
    timer.lap("parse");
    // 2. COMDAT: the first module with a group keeps it; later copies are
    //    discarded (inline functions, template instances).
    dedup_comdats(&mut mods);
    timer.lap("comdat");
    // 3. Functions and writable objects get their ids, module by module.
    collect_definitions(&mut mods, &mut diags);
    timer.lap("definitions");
    // What the previous link (if any) may lend (see `reuse.rs`): resolutions
    // now, the rest once every symbol is resolved.
    let mut prev = slot
        .as_deref_mut()
        .and_then(Option::take)
        .filter(|p| p.is_for(config));
    // 4–6. Global symbols, host symbols, every module's symbols resolved.
    let (root, mut hosts) = match resolve_all(config, &mut mods, &mut diags, timer, prev.as_ref()) {
        Ok(r) => r,
        Err(e) => {
            give_back(&mut slot, prev);
            return Err(e);
        }
    };
    let resolve_hosts = hosts.len();
    let reachable = reachability(&mods, root);
    let mut warnings = coarse_member_warnings(&mods);
    warnings.extend(compressed_debug_warnings(&mods, &reachable));
    if let Some(w) = root_without_main(&mods, root) {
        warnings.push(w);
    }
    warnings.extend(unreached_constructors(&mods, &reachable));
    warnings.extend(
        (mods.iter().zip(&reachable))
            .filter(|(m, &r)| r && crate::nim::is_stdlib_hcr_module(&m.obj.name))
            .map(|(m, _)| crate::nim::stdlib_hcr_warning(&m.obj.name)),
    );
    let mut memo = prev.as_mut().map(Previous::take_memo).unwrap_or_default();
    // Host symbols that no module, library or the runtime defines: every
    // one named, with the module that wants it, all at once; refused, or
    // warned about for a host program that defines them itself.
    for (mi, names) in unresolved_hosts(&mods, &reachable, &hosts, &mut memo, libs) {
        let m = &mods[mi].obj;
        match config.allow_undefined {
            true => warnings.push(undefined_warning(&m.name, &names)),
            false => diags.push(undefined_error(m, &names)),
        }
    }
    let mut plan = prev.map(|p| Plan::new(p, &mods));
    timer.lap("resolve + import tree");
    // 7. Scan relocations: which GOT entries and PLT stubs each module needs,
    //    and every unsupported relocation (all reported).
    // A link already refused scans only to report every problem at once:
    // afresh, leaving the previous link's scans to the next link.
    let refused = !diags.is_empty();
    scan_all(&mut mods, &mut diags, plan.as_mut().filter(|_| !refused));
    if !diags.is_empty() {
        // (Nothing but scans can have been taken from it: those modules
        // scan again.)
        give_back(&mut slot, plan.map(Plan::into_previous));
        return Err(LinkError::Inputs(diags));
    }
    tls::add_resolver_host(&mut mods, &mut hosts);
    timer.lap("scan relocations");
    // 8. Layout: fixed before any byte is written.
    mods.par_iter_mut().for_each(layout_module);
    let layout = match layout_area(&mut mods) {
        Ok(l) => l,
        Err(e) => {
            give_back(&mut slot, plan.map(Plan::into_previous));
            return Err(e);
        }
    };
    if let Some(p) = plan.as_mut() {
        p.decide_apply(&mods);
    }
    timer.lap("layout");
    // 9. Copy sections into the area and init blob, applying relocations
    //    whose value is known now; the rest become the load plan's fixups.
    let (applied, per_module) = apply_all(&mods, &layout, plan.as_mut())?;
    timer.lap("copy + relocate");
    // 10. The ELF file, and the manifest (built while the modules render).
    let carried = plan.as_ref().map(|p| p.carried(&hosts)).unwrap_or_default();
    let make_manifest = || {
        build_manifest(&ManifestInputs {
            mods: &mods,
            root,
            reachable: &reachable,
            layout: &layout,
            hosts: &hosts,
            libs,
            applied: &applied,
            carried: &carried,
        })
    };
    // Debug sections, relocated as far as the link can (tool-only).
    let debug = crate::debug::build(&mods);
    timer.lap("debug sections");
    let kept = plan
        .as_mut()
        .map(|p| p.take_tables(&mods))
        .unwrap_or_default();
    let image = crate::write::Image {
        mods: &mods,
        make_manifest: &make_manifest,
        applied: &applied,
        debug: &debug,
        kept,
    };
    let written =
        crate::write::write_image(image, sink, timer, config.skip_free).map_err(|cause| {
            LinkError::Write {
                path: "image".into(),
                cause,
            }
        })?;
    let (size, manifest) = (written.size, written.manifest);
    let out = LinkOutput {
        modules: mods.len(),
        stats: manifest.stats,
        size,
        bytes: Vec::new(),
        warnings,
        reused: ReuseStats {
            rendered: written.tables_reused,
            parsed: taken,
            ..plan.as_ref().map(|p| p.stats()).unwrap_or_default()
        },
        read: (inputs.iter().map(|m| (m.path.clone(), Some(m.key))))
            .chain(libraries.probed.iter().cloned())
            .collect(),
    };
    // The image is in place and the caller's answer known: what follows
    // only prepares the next link.
    sink.placed(&out);
    if config.skip_free {
        std::mem::forget((mods, manifest, applied, debug));
        return Ok(Linked { out, next: None });
    }
    let next = caching.then(|| {
        let Applied { area, init, .. } = applied;
        keep(
            &mut mods,
            Leftovers {
                config,
                memo,
                reused: plan.as_ref().map_or(&[][..], |p| &p.apply[..]),
                hosts: &hosts,
                resolve_hosts,
                applied: per_module,
                tables: written.tables,
                area,
                init,
                manifest: &manifest,
            },
        )
    });
    timer.lap("keep for the next link");
    drop((mods, manifest, debug, hosts, reachable, layout, carried));
    timer.lap("free");
    Ok(Linked { out, next })
}

/// Leaves the previous link's state where the cache lent it from, for the
/// link after one that failed before using it up.
fn give_back(slot: &mut Option<&mut Option<Previous>>, prev: Option<Previous>) {
    if let Some(s) = slot.as_deref_mut() {
        *s = prev;
    }
}

/// Passes 4–6: the global symbol table, the host symbols (what no module
/// defines), and every module's symbols resolved, imports with them.
/// Returns the root module's index and the host symbols.
fn resolve_all<'d>(
    config: &LinkConfig,
    mods: &mut [Mod<'d>],
    diags: &mut Vec<Diagnostic>,
    timer: &mut Timer,
    prev: Option<&Previous>,
) -> Result<(u32, Vec<Host<'d>>), LinkError> {
    // One definition per name; duplicates are errors. Problems so far do
    // not stop the passes below: one run reports them all.
    let globals = build_global_table(mods, diags);
    let root = match &config.root {
        Some(r) => mods
            .iter()
            .position(|m| m.obj.name == *r)
            .ok_or_else(|| LinkError::UnknownRoot(r.clone()))? as u32,
        None => 0,
    };
    timer.lap("global symbols");
    let hosts = collect_hosts(mods, &globals);
    linker_sets(mods, &hosts, diags);
    let host_index: HashMap<&str, u32> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.name, i as u32))
        .collect();
    timer.lap("host symbols");
    let lent = prev.map_or_else(Vec::new, |p| p.lendable_resolutions(mods, &hosts));
    let resolved: Vec<Resolved> = mods
        .par_iter()
        .enumerate()
        .map(|(mi, m)| match (lent.get(mi), prev) {
            (Some(true), Some(p)) => {
                let lent = p.resolution(mi);
                // Debug builds (the tests) check every lent resolution
                // against the one resolving it again gives.
                debug_assert!(
                    lent == resolve_module(mi as u32, m, mods, &globals, &host_index),
                    "module {}: the previous link's resolution differs from a fresh one",
                    m.obj.name
                );
                lent
            }
            _ => resolve_module(mi as u32, m, mods, &globals, &host_index),
        })
        .collect();
    if config.skip_free {
        std::mem::forget((globals, host_index));
    } else {
        drop((globals, host_index));
    }
    for (m, r) in mods.iter_mut().zip(resolved) {
        m.tgt = r.tgt;
        m.imports = r.imports;
        m.undefined = r.undefined;
        m.own_def = r.own_def;
        m.global_def = r.global_def;
    }
    Ok((root, hosts))
}

/// Pass 7 for every module (the previous scan where `plan` lends it);
/// problems go to `diags`.
fn scan_all(mods: &mut [Mod<'_>], diags: &mut Vec<Diagnostic>, mut plan: Option<&mut Plan>) {
    let kept: Vec<Option<ScanOut>> = (0..mods.len())
        .map(|mi| plan.as_deref_mut().and_then(|p| p.take_scan(mi)))
        .collect();
    let scans: Vec<Result<ScanOut, Vec<Diagnostic>>> = map_mixed(
        kept,
        |k| k.is_none(),
        |mi, k| match k {
            Some(s) => Ok(s),
            None => scan_module(mi as u32, mods),
        },
    );
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
}
