//! The incremental relink: what one link keeps for the next
//! ([`crate::InputCache`]), and the rules that decide, module by module,
//! which of it the next link may take instead of redoing the work.
//!
//! Every reused result is one that the pass would compute again, bit for
//! bit, from the same arguments; each rule below names those arguments.
//! A module is *stable* when it is the same parsed object (the same mapping
//! of an unchanged file) at the same index, with the same COMDAT sections
//! discarded, the same first function and object ids and the same COMMON
//! storage. Then:
//!
//! * its relocation scan (classes, GOT, PLT) is reused when it is stable,
//!   its symbols resolve to exactly the same targets, and every module those
//!   targets lie in is stable too (the scan reads their function and object
//!   ids and section kinds);
//! * its applied bytes and fixups are reused when its scan is, when nothing
//!   it applied depended on where another module lies (no reference into
//!   another module's segment by area offset: those are the only values
//!   that move when a segment before it grows), and when the TLS descriptor
//!   resolver has the same host index; the bytes are copied from the
//!   previous area, where its segment lay;
//! * its segment checksum is reused with its applied bytes, and its link
//!   identity as well when the host symbols are the same list;
//! * its resolution (each symbol's target, its imports, the host symbols
//!   it uses, which definitions are its own) is reused when it is stable,
//!   every module it imported from is stable, the global symbol table is
//!   the previous one (every module stable or defining the same global
//!   symbols, with the same indices and strengths, as before) and so is
//!   the host symbol list: resolution reads nothing else.
//!
//! Everything else (COMDAT, definitions, the symbol tables, layout, the ELF
//! tables, the manifest) is redone each link: it is cheap, or depends on
//! every module at once. A change of the configuration (root,
//! libraries) starts afresh; a link whose inputs are refused leaves this
//! state to the next link (less the scans it took, and the library memo).

use std::sync::Arc;

use super::*;
use crate::parsed::Parsed;
use crate::write::KeptTables;

/// What a successful link leaves for the next one.
pub(crate) struct Previous {
    config: String,
    memo: LibraryMemo,
    hosts: Vec<(String, bool)>,
    /// How many of `hosts` there were when symbols were resolved (later
    /// passes may add one).
    resolve_hosts: usize,
    modules: Vec<Kept>,
    area: Vec<u8>,
    init: Vec<u8>,
}

/// One module of the previous link.
pub(crate) struct Kept {
    parsed: Option<Arc<Parsed>>,
    discarded: Vec<u32>,
    fn_base: u32,
    obj_base: u32,
    commons: Vec<(u32, u32)>,
    tgt: Vec<Tgt>,
    /// The rest of the module's resolution (`tgt` is above).
    resolved: Resolved,
    /// [`defs_print`] of the module.
    defs: u128,
    scan: Option<ScanOut>,
    tlsdesc_host: u32,
    /// Applied result, when it depends on no other module's place.
    applied: Option<ModApplied>,
    bases: RegionSizes,
    sizes: RegionSizes,
    checksum: u64,
    identity: (u64, Arc<[ModuleId]>),
    tables: Option<KeptTables>,
}

/// What this link takes from the previous one, by module index.
pub(crate) struct Plan {
    prev: Previous,
    /// The scan of module `mi` is reused.
    pub(crate) scan: Vec<bool>,
    /// The applied bytes and fixups of module `mi` are reused.
    pub(crate) apply: Vec<bool>,
}

/// How many modules reused each kind of work (for tests and benchmarks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReuseStats {
    /// Inputs whose parse was taken over (not parsed again).
    pub parsed: usize,
    /// Modules whose relocation scan was reused.
    pub scanned: usize,
    /// Modules whose applied bytes and fixups were reused.
    pub applied: usize,
    /// Modules whose symbols, names and relocation entries in the ELF
    /// file were reused.
    pub rendered: usize,
}

/// The kept parse of every input (`kept`: by path, from the previous
/// link), parsing what is new; `None` for archives and for objects with
/// problems (the link parses those itself and reports them).
pub(crate) fn parse_inputs(
    kept: &std::collections::HashMap<std::path::PathBuf, Arc<Parsed>>,
    inputs: &[Arc<MappedInput>],
) -> Vec<Option<Arc<Parsed>>> {
    let hit = |inp: &Arc<MappedInput>| kept.get(&inp.path).filter(|p| p.is_of(inp));
    let inputs: Vec<&Arc<MappedInput>> = inputs.iter().collect();
    map_mixed(
        inputs,
        |inp| hit(inp).is_none(),
        |_, inp| {
            if let Some(p) = hit(inp) {
                return Some(Arc::clone(p));
            }
            let data = inp.bytes.as_slice();
            if data.starts_with(b"!<arch>\n") || data.starts_with(b"!<thin>\n") {
                return None;
            }
            Parsed::parse(inp, &stem(&inp.path.display().to_string())).map(Arc::new)
        },
    )
}

/// The configuration as far as it matters to reuse.
pub(crate) fn config_key(config: &LinkConfig) -> String {
    format!(
        "{:?}\0{:?}\0{:?}",
        config.root, config.libraries, config.library_dirs
    )
}

fn discarded(m: &Mod<'_>) -> Vec<u32> {
    (0..m.obj.sections.len() as u32)
        .filter(|&i| m.obj.sections[i as usize].kind == SecKind::Discarded)
        .collect()
}

fn commons(m: &Mod<'_>) -> Vec<(u32, u32)> {
    if m.common_obj.is_empty() {
        return Vec::new();
    }
    let mut v: Vec<(u32, u32)> = m.common_obj.iter().map(|(&a, &b)| (a, b)).collect();
    v.sort_unstable();
    v
}

impl Kept {
    /// True when `m` has the same COMDAT sections discarded.
    fn same_discarded(&self, m: &Mod<'_>) -> bool {
        let now = (0..m.obj.sections.len() as u32)
            .filter(|&i| m.obj.sections[i as usize].kind == SecKind::Discarded);
        now.eq(self.discarded.iter().copied())
    }

    /// True when `m` is the module this was, as far as other modules'
    /// results depend on it (see the module comment).
    fn is_stable(&self, m: &Mod<'_>) -> bool {
        let same_object = match (&self.parsed, m.parsed) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        same_object
            && !crate::nim::is_nim_module(&m.obj.name)
            && self.fn_base == m.fn_base
            && self.obj_base == m.obj_base
            && self.same_discarded(m)
            && (self.commons.is_empty() && m.common_obj.is_empty() || self.commons == commons(m))
    }
}

impl Previous {
    /// True when this was linked with the same configuration (root,
    /// libraries): nothing is reused across a change of it.
    pub(crate) fn is_for(&self, config: &LinkConfig) -> bool {
        self.config == config_key(config)
    }

    /// Per module, whether its previous resolution is the one resolving it
    /// again would give (see the module's documentation): none when the
    /// global or host symbol tables may differ.
    pub(crate) fn lendable_resolutions(&self, mods: &[Mod<'_>], hosts: &[Host<'_>]) -> Vec<bool> {
        let same_hosts = self.resolve_hosts == hosts.len()
            && self.hosts.len() >= hosts.len()
            && self
                .hosts
                .iter()
                .zip(hosts)
                .all(|((n, w), h)| n == h.name && *w == h.weak);
        if !same_hosts || self.modules.len() != mods.len() {
            return vec![false; mods.len()];
        }
        let stable: Vec<bool> = self
            .modules
            .iter()
            .zip(mods)
            .map(|(k, m)| k.is_stable(m))
            .collect();
        // The global table is built from each module's global definitions
        // alone: the same when every module defines what it did.
        let same_table = self
            .modules
            .iter()
            .zip(mods)
            .zip(&stable)
            .all(|((k, m), &s)| s || k.defs == defs_print(m));
        if !same_table {
            return vec![false; mods.len()];
        }
        self.modules
            .iter()
            .zip(&stable)
            .map(|(k, &s)| {
                s && k
                    .resolved
                    .imports
                    .iter()
                    .all(|&j| stable.get(j as usize) == Some(&true))
            })
            .collect()
    }

    /// Module `mi`'s previous resolution.
    pub(crate) fn resolution(&self, mi: usize) -> Resolved {
        self.modules
            .get(mi)
            .map_or_else(Resolved::default, |k| Resolved {
                tgt: k.tgt.clone(),
                ..k.resolved.clone()
            })
    }

    /// What the last link learnt from the libraries.
    pub(crate) fn take_memo(&mut self) -> LibraryMemo {
        std::mem::take(&mut self.memo)
    }
}

impl Plan {
    /// Decides which scans to reuse, once every symbol is resolved.
    pub(crate) fn new(prev: Previous, mods: &[Mod<'_>]) -> Plan {
        let stable: Vec<bool> = mods
            .iter()
            .enumerate()
            .map(|(mi, m)| prev.modules.get(mi).is_some_and(|k| k.is_stable(m)))
            .collect();
        let scan: Vec<bool> = mods
            .iter()
            .enumerate()
            .map(|(mi, m)| {
                stable[mi]
                    && prev.modules[mi].scan.is_some()
                    && prev.modules[mi].tgt == m.tgt
                    && m.tgt.iter().all(|t| match *t {
                        Tgt::Loc { m: tm, .. } => stable[tm as usize],
                        // Whose storage a COMMON symbol names can change
                        // while its id stays (the link identity names it).
                        Tgt::Common(_) => false,
                        _ => true,
                    })
            })
            .collect();
        let apply = vec![false; mods.len()];
        Plan { prev, scan, apply }
    }

    /// The previous link's state back, for a link that fails after
    /// planning but before anything but scans was taken from it (a module
    /// whose scan was taken scans again next time). Its library memo is
    /// not given back: the failed link may have found a symbol missing that
    /// a library rebuilt before the next link defines, and the memo answers
    /// by the names asked alone.
    pub(crate) fn into_previous(self) -> Previous {
        // (`take_memo` left an empty memo in its place.)
        self.prev
    }

    /// The previous scan of module `mi` (once; `None` when not reused).
    pub(crate) fn take_scan(&mut self, mi: usize) -> Option<ScanOut> {
        match self.scan[mi] {
            true => self.prev.modules[mi].scan.take(),
            false => None,
        }
    }

    /// Decides which applied results to reuse, once the scan is done.
    pub(crate) fn decide_apply(&mut self, mods: &[Mod<'_>]) {
        for (mi, m) in mods.iter().enumerate() {
            let Some(k) = self.prev.modules.get(mi) else {
                continue;
            };
            self.apply[mi] = self.scan[mi]
                && k.applied.is_some()
                && k.tlsdesc_host == m.tlsdesc_host
                && k.sizes.text == m.sizes.text
                && k.sizes.rodata == m.sizes.rodata
                && k.sizes.eh == m.sizes.eh
                && k.sizes.init == m.sizes.init;
        }
    }

    /// The previous area and init blob, to be written over in place, when
    /// every module lies exactly where it lay (then the bytes of every
    /// module whose result is reused are already in place).
    pub(crate) fn take_buffers(
        &mut self,
        mods: &[Mod<'_>],
        lay: &AreaLayout,
    ) -> Option<(Vec<u8>, Vec<u8>)> {
        let p = &mut self.prev;
        let same = p.modules.len() == mods.len()
            && p.area.len() as u64 == lay.area_file_size
            && p.init.len() as u64 == lay.init_size
            && p.modules
                .iter()
                .zip(mods)
                .all(|(k, m)| k.bases == m.bases && k.sizes == m.sizes);
        same.then(|| (std::mem::take(&mut p.area), std::mem::take(&mut p.init)))
    }

    /// Every module's previous applied result where it is reused (taken:
    /// once).
    pub(crate) fn take_applied(&mut self, n: usize) -> Vec<Option<ModApplied>> {
        (0..n)
            .map(|mi| match self.apply.get(mi) {
                Some(true) => self.prev.modules[mi].applied.take(),
                _ => None,
            })
            .collect()
    }

    /// Copies module `mi`'s previous bytes into its slices of the new area
    /// and init blob.
    pub(crate) fn copy_applied(&self, mi: usize, slices: ModSlices<'_>) {
        let k = &self.prev.modules[mi];
        let (text, rodata, eh, init) = slices;
        let from = |buf: &[u8], at: u64, to: &mut [u8]| {
            let at = at as usize;
            to.copy_from_slice(&buf[at..at + to.len()]);
        };
        from(&self.prev.area, k.bases.text, text);
        from(&self.prev.area, k.bases.rodata, rodata);
        from(&self.prev.area, k.bases.eh, eh);
        from(&self.prev.init, k.bases.init, init);
    }

    /// What the manifest may take over: each module's segment checksum and
    /// link identity, when still valid.
    pub(crate) fn carried(&self, hosts: &[Host<'_>]) -> Vec<Carried> {
        let same_hosts = self.prev.hosts.len() == hosts.len()
            && self
                .prev
                .hosts
                .iter()
                .zip(hosts)
                .all(|((n, w), h)| n == h.name && *w == h.weak);
        self.apply
            .iter()
            .enumerate()
            .map(|(mi, &applied)| match self.prev.modules.get(mi) {
                Some(k) if applied => Carried {
                    checksum: Some(k.checksum),
                    identity: same_hosts.then(|| k.identity.clone()),
                },
                _ => Carried::default(),
            })
            .collect()
    }

    /// The previous ELF tables of every module that is the same object
    /// with the same sections kept (the writer checks the rest of what they
    /// were rendered from).
    pub(crate) fn take_tables(&mut self, mods: &[Mod<'_>]) -> Vec<Option<KeptTables>> {
        let modules = &mut self.prev.modules;
        mods.iter()
            .enumerate()
            .map(|(mi, m)| {
                let k = modules.get_mut(mi)?;
                let same = match (&k.parsed, m.parsed) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b) && k.same_discarded(m),
                    _ => false,
                };
                if same {
                    k.tables.take()
                } else {
                    None
                }
            })
            .collect()
    }

    /// How much was reused.
    pub(crate) fn stats(&self) -> ReuseStats {
        ReuseStats {
            parsed: 0, // counted where the parses are taken (`link_in_pool`)
            scanned: self.scan.iter().filter(|&&b| b).count(),
            applied: self.apply.iter().filter(|&&b| b).count(),
            rendered: 0,
        }
    }
}

/// A module's segment checksum and link identity from the previous link.
#[derive(Clone, Default)]
pub(crate) struct Carried {
    pub(crate) checksum: Option<u64>,
    pub(crate) identity: Option<(u64, Arc<[ModuleId]>)>,
}

/// True when nothing module `mi` applies depends on where another module's
/// segment lies: no reference by area offset into another segment (a GOT
/// entry, a relocation or a constructor entry).
pub(crate) fn position_independent(mi: u32, m: &Mod<'_>) -> bool {
    let foreign = |s: &S| match *s {
        S::Area { m: tm, .. } => tm != mi,
        S::Got(GotKey::Area { m: tm, .. }) => tm != mi,
        _ => false,
    };
    let own_fn = |f: u32| f >= m.fn_base && f < m.fn_base + m.funcs.len() as u32;
    let mut classes = m.classes.iter();
    for sec in m.obj.sections.iter() {
        if !sec.kind.relocated() {
            continue;
        }
        let entries = sec.kind.entry_list();
        for _ in 0..sec.rel_len {
            let Some(Some((_, s))) = classes.next() else {
                continue;
            };
            if foreign(s) || (entries && matches!(*s, S::Func(f, _) if !own_fn(f))) {
                return false;
            }
        }
    }
    !m.got.iter().any(|k| foreign(&S::Got(*k)))
}

/// Everything this link leaves for the next, taken out of its state.
pub(crate) struct Leftovers<'a> {
    pub(crate) config: &'a LinkConfig,
    pub(crate) memo: LibraryMemo,
    /// Modules whose applied result this link reused (`Plan::apply`).
    pub(crate) reused: &'a [bool],
    pub(crate) hosts: &'a [Host<'a>],
    /// How many of `hosts` there were when symbols were resolved.
    pub(crate) resolve_hosts: usize,
    pub(crate) applied: Vec<ModApplied>,
    pub(crate) tables: Vec<KeptTables>,
    pub(crate) area: Vec<u8>,
    pub(crate) init: Vec<u8>,
    pub(crate) manifest: &'a Manifest,
}

/// Builds the state the next link starts from.
pub(crate) fn keep(mods: &mut [Mod<'_>], left: Leftovers<'_>) -> Previous {
    let mut tables = left.tables.into_iter().map(Some).collect::<Vec<_>>();
    tables.resize_with(mods.len(), || None);
    let modules = mods
        .iter_mut()
        .zip(left.applied)
        .zip(tables)
        .enumerate()
        .map(|(mi, ((m, applied), tables))| {
            let md = &left.manifest.modules[mi];
            // A reused result was position-independent when it was kept.
            let reused = left.reused.get(mi).copied().unwrap_or(false);
            let independent = reused || position_independent(mi as u32, m);
            Kept {
                parsed: m.parsed.cloned(),
                discarded: discarded(m),
                fn_base: m.fn_base,
                obj_base: m.obj_base,
                commons: commons(m),
                tgt: std::mem::take(&mut m.tgt),
                resolved: Resolved {
                    tgt: Vec::new(),
                    imports: std::mem::take(&mut m.imports),
                    undefined: std::mem::take(&mut m.undefined),
                    own_def: std::mem::take(&mut m.own_def),
                    global_def: std::mem::take(&mut m.global_def),
                },
                defs: defs_print(m),
                scan: Some(ScanOut {
                    got: std::mem::take(&mut m.got),
                    got_index: std::mem::take(&mut m.got_index),
                    plt: std::mem::take(&mut m.plt),
                    plt_index: std::mem::take(&mut m.plt_index),
                    classes: std::mem::take(&mut m.classes),
                }),
                tlsdesc_host: m.tlsdesc_host,
                applied: independent.then_some(applied),
                bases: m.bases,
                sizes: m.sizes,
                checksum: md.checksum,
                identity: (md.link_hash, Arc::clone(&md.deps)),
                tables,
            }
        })
        .collect();
    Previous {
        config: config_key(left.config),
        memo: left.memo,
        hosts: left
            .hosts
            .iter()
            .map(|h| (h.name.to_string(), h.weak))
            .collect(),
        resolve_hosts: left.resolve_hosts,
        modules,
        area: left.area,
        init: left.init,
    }
}

/// A digest of the global symbols module `m` defines in sections it keeps
/// (index, name and strength of each, in symbol order): what the global
/// symbol table takes from the module.
pub(crate) fn defs_print(m: &Mod<'_>) -> u128 {
    let mut b: Vec<u8> = Vec::with_capacity(m.obj.symbols.len() * 16);
    for (si, s) in m.obj.symbols.iter().enumerate() {
        if !s.is_global() || s.shndx == Shndx::Undef || !in_kept_section(&m.obj, s) {
            continue;
        }
        let strength: u8 = match s.shndx {
            Shndx::Common => 0,
            _ if s.is_weak() => 1,
            _ => 2,
        };
        b.extend_from_slice(&(si as u32).to_le_bytes());
        b.extend_from_slice(&(s.name.len() as u32).to_le_bytes());
        b.extend_from_slice(s.name.as_bytes());
        b.push(strength);
    }
    // 128 bits: release builds trust the digest (debug builds check each
    // lent resolution against a fresh one).
    twox_hash::XxHash3_128::oneshot(&b)
}
