//! Commit: make a prepared image live (new trampolines join the registry,
//! permanent addresses retargeted, removed functions stubbed, globals
//! added, replaced, freed and re-based) and say what to run next.

use super::*;

/// Writes pointer field `f` of the live global at `addr` (`size` bytes),
/// which other threads may be reading: an aligned 64-bit field (a pointer)
/// is stored in one atomic release store, so a reader sees the old value or
/// the new one, never a mix.
pub(super) fn write_field(addr: u64, size: u64, f: FieldValue) {
    let at = addr + u64::from(f.offset);
    let w = f.kind.width() as u64;
    if u64::from(f.offset) + w > size {
        return;
    }
    if w == 8 && at.is_multiple_of(8) {
        // SAFETY: `at` is 8-aligned and its 8 bytes lie inside the global's
        // live storage, which is only ever accessed through raw pointers
        // and atomics on this side.
        let cell = unsafe { std::sync::atomic::AtomicU64::from_ptr(at as *mut u64) };
        cell.store(f.value, std::sync::atomic::Ordering::Release);
    } else {
        // SAFETY: as above; no other reference to these bytes is alive.
        let mem = unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, size as usize) };
        hcr_loader::write_value(mem, f.offset as usize, f.kind, f.value);
    }
}

/// True when the bytes a pointer at `old` (in `old_areas`) and one at
/// `new` (in `new_areas`) point to are the same, as far as it can tell
/// without their extent: a string (text up to its NUL, at most 4 KiB) is
/// compared whole; other bytes (a table of numbers, whose first NUL says
/// nothing) for 256 bytes. Never reads past either area.
pub(super) fn same_bytes(
    old_areas: &ModuleAreas,
    old: u64,
    new_areas: &ModuleAreas,
    new: u64,
) -> bool {
    const TEXT: usize = 4096;
    const DATA: usize = 256;
    let (o, n) = (old as usize, new as usize);
    let (Some(old_area), Some(new_area)) = (old_areas.find(o), new_areas.find(n)) else {
        return false;
    };
    let limit = TEXT
        .min(old_area.base + old_area.len() - o)
        .min(new_area.base + new_area.len() - n);
    let mut text = true;
    for i in 0..limit {
        // SAFETY: both addresses lie in mapped, readable areas (checked
        // above, `limit` keeps within them).
        let (a, b) = unsafe { (*((o + i) as *const u8), *((n + i) as *const u8)) };
        if a != b {
            return false;
        }
        if a == 0 && text && i > 0 {
            return true;
        }
        text &= a >= 0x20 || matches!(a, b'\t' | b'\n' | b'\r');
        if !text && i + 1 >= DATA {
            return true;
        }
    }
    true
}

/// Areas of at least this many functions have their crash table built by
/// a second thread.
const PARALLEL_TABLE: usize = 4096;

/// The loaded (reachable) modules of `c` that `diff` changes or removes.
fn touched_old<'a>(diff: &'a Diff, c: &'a Current) -> impl Iterator<Item = &'a hcr_image::Module> {
    diff.old_touched
        .iter()
        .filter_map(|i| c.manifest.modules.get(i.0 as usize))
        .filter(|md| md.reachable)
}

/// Whether the destructors registered for global `g`'s object run at
/// exit: not once a reload removed it (or replaced its storage), again once
/// a rollback brought it back.
pub(super) fn set_destructors_live(g: &Global, live: bool) {
    if !g.tls {
        crate::ffi::set_destructors_live(g.addr, g.addr + g.size.max(1), live);
    }
}

/// Warns about the globals a reload adds to a C++ module that initialises
/// globals at run time (it has constructors: its static initialiser):
/// a new zero-filled global there is most likely one such (`int n = f();`,
/// `std::string s = "…";`), and initialisers run only at a module's first
/// load, so it starts zeroed.
fn warn_new_dynamic_globals(m: &Manifest, added: &[String], new: &[(usize, Global, bool)]) {
    let mut by_module: std::collections::BTreeMap<u32, Vec<&str>> = Default::default();
    for &(oi, ref g, resized) in new {
        let o = &m.objects[oi];
        if resized || g.tls || o.init.is_some() {
            continue;
        }
        by_module.entry(o.module.0).or_default().push(m.str(o.name));
    }
    for (mi, names) in by_module {
        let md = &m.modules[mi as usize];
        let module = m.str(md.name);
        let source = m.str(md.source);
        let cxx = [".cpp", ".cc", ".cxx", ".c++", ".C"]
            .iter()
            .any(|x| source.ends_with(x))
            || m.functions
                .part(mi as usize)
                .iter()
                .any(|f| m.str(f.name).starts_with("_Z"));
        if md.ctors.is_empty() || !cxx || added.iter().any(|a| a == module) {
            continue;
        }
        let list: Vec<String> = names.iter().map(|n| format!("{module}:{n}")).collect();
        warn(format_args!(
            "{} new in this reload of C++ module {module}, which initialises globals at run time in its constructors: they run only at a module's first load, so {} zeroed; restart the program to initialise {}",
            match list.len() {
                1 => format!("global {} is", list[0]),
                _ => format!("globals {} are", list.join(", ")),
            },
            if list.len() == 1 { "it starts" } else { "they start" },
            if list.len() == 1 { "it" } else { "them" },
        ));
    }
}

/// The image being committed: its manifest, where its segments run, and
/// which modules this load placed.
#[derive(Clone, Copy)]
struct New<'a> {
    m: &'a Manifest,
    place: &'a Placement,
    /// The modules this load placed, by index.
    list: &'a [usize],
    /// The same in initialisation order.
    in_order: &'a [ModuleId],
}

/// What [`store_first_slots`] did: slots stored, and the indirect
/// functions left to the committing thread: `(function, slot, code)`.
struct FirstSlots {
    stored: usize,
    indirect: Vec<(usize, u64, u64)>,
}

/// Points the slots of a first load's new trampolines (the batch whose
/// slots start at `slots`, trampoline `i` the function whose id is
/// `PENDING | i` in `pending`) at their functions' code. Indirect
/// functions are listed instead: their resolvers run on the committing
/// thread. Nothing runs through these trampolines before the commit
/// publishes them.
fn store_first_slots(new: &New<'_>, pending: &[u32], slots: u64) -> FirstSlots {
    let mut out = FirstSlots {
        stored: 0,
        indirect: Vec::new(),
    };
    for (fi, f, code) in placed_functions(new) {
        let Some(i) = pending_index(pending[fi]) else {
            continue;
        };
        let slot = slots + 8 * u64::from(i);
        match f.indirect {
            true => out.indirect.push((fi, slot, code)),
            false => trampoline::store_slot(slot, code),
        }
        out.stored += 1;
    }
    out
}

/// Every function of the modules `new` placed: its manifest index, its
/// record and the address of its code.
fn placed_functions<'a>(
    new: &New<'a>,
) -> impl Iterator<Item = (usize, &'a hcr_image::Function, u64)> + 'a {
    let New { m, place, list, .. } = *new;
    list.iter().flat_map(move |&mi| {
        let md = &m.modules[mi];
        let vbase = place.vbase[mi];
        (md.functions.range().zip(m.functions.part(mi))).map(move |(fi, f)| {
            (
                fi,
                f,
                vbase.wrapping_add(u64::from(md.seg.start + f.offset)),
            )
        })
    })
}

/// Whether this load adds a name plugins may see (a global function or
/// object of default visibility, not thread-local): a new function, a new
/// global, or a global re-created elsewhere (its size changed). Only then
/// is the exported set published again, which costs a step per exported
/// name of the whole program; an edit that changes function bodies, or
/// adds static helpers and variables, publishes nothing.
fn new_exports(
    m: &Manifest,
    loaded: &[usize],
    fn_tid: &[u32],
    new_globals: &[(usize, Global, bool)],
) -> bool {
    let new_function = loaded.iter().any(|&mi| {
        m.modules[mi]
            .functions
            .range()
            .zip(m.functions.part(mi))
            .any(|(fi, f)| pending_index(fn_tid[fi]).is_some() && exported_function(f))
    });
    new_function
        || new_globals
            .iter()
            .any(|&(oi, _, _)| exported_object(&m.objects[oi]))
}

/// A function plugins see ([`State::exports`]): global, default visibility.
fn exported_function(f: &hcr_image::Function) -> bool {
    f.global && !f.hidden
}

/// An object plugins see ([`State::exports`]): global, default visibility,
/// and not thread-local (a thread-local variable lives in the runtime's
/// per-thread blocks, which a plugin's own TLS accesses, served by the
/// system loader, cannot reach: left out, the plugin's `dlopen` names it
/// as undefined rather than the plugin writing to whatever its offset is
/// as an address).
fn exported_object(o: &hcr_image::Object) -> bool {
    o.global && !o.hidden && !o.tls
}

/// Entry points to run after the commit, in `order`: constructors of added
/// modules, then `HCR_ON_RELOAD` blocks of changed and added ones (a Nim
/// module's init functions instead, see `nim`). A module added or changed
/// is loaded, so kept ones are not looked at.
#[allow(clippy::type_complexity)]
fn entry_points(
    new: &New<'_>,
    diff: &Diff,
    reload: bool,
) -> (Vec<(String, u64)>, Vec<(String, u64)>) {
    let New {
        m, place, in_order, ..
    } = *new;
    let name = |i: ModuleId| m.module_name(i).to_string();
    let added_modules: HashSet<&str> = diff.added.iter().map(String::as_str).collect();
    let touched: HashSet<&str> = diff
        .changed
        .iter()
        .chain(&diff.added)
        .map(String::as_str)
        .collect();
    // An entry point, relative to module `i`'s segment.
    let at = |i: ModuleId, o: u32| place.addr_from(m, i.0 as usize, o);
    let mut ctors = Vec::new();
    let mut on_reload = Vec::new();
    let (mut nim_dat, mut nim_init) = (Vec::new(), Vec::new());
    for &i in in_order {
        let md = &m.modules[i.0 as usize];
        let added = added_modules.contains(m.str(md.name));
        // A Nim module's first load is Nim's init (see `nim`).
        let nim = crate::nim::is_nim_module(m.str(md.name));
        if added {
            ctors.extend(md.ctors.iter().map(|&o| (name(i), at(i, o))));
        }
        if nim && reload && touched.contains(m.str(md.name)) {
            let (dat, init) = crate::nim::init_functions(m, md, added);
            nim_dat.extend(dat.map(|o| (name(i), at(i, o))));
            nim_init.extend(init.map(|o| (name(i), at(i, o))));
        }
        if touched.contains(m.str(md.name)) && !(nim && added) {
            on_reload.extend(md.on_reload.iter().map(|&o| (name(i), at(i, o))));
        }
    }
    ctors.extend(nim_dat);
    ctors.extend(nim_init);
    (ctors, on_reload)
}

impl State {
    /// Makes the prepared image live. Returns what to run next.
    pub fn commit(&mut self, p: Prepared) -> Followups {
        let Prepared {
            manifest,
            order,
            handler_ranks,
            area,
            place,
            areas,
            loaded_list,
            loaded_in_order,
            mut work,
            stat,
            diff,
            mut fn_tid,
            mut obj_gid,
            new_trampolines,
            new_globals,
            rebase,
            debug,
            identities,
        } = p;
        let m = &manifest;
        let generation = self.generation + u32::from(self.current.is_some());
        // What the previous reload removed: no rollback reaches it now.
        for (_, e) in std::mem::take(&mut self.gone_globals) {
            self.heap.free_global(&e.g);
        }
        let exports_changed = new_exports(m, &loaded_list, &fn_tid, &new_globals)
            && (self.export_symbols || may_load_plugins(m));
        let new = New {
            m,
            place: &place,
            list: &loaded_list,
            in_order: &loaded_in_order,
        };
        let first_slots = self.publish(
            &new,
            area.as_ref(),
            debug.as_ref(),
            generation,
            new_trampolines,
            &mut fn_tid,
        );
        crate::phases::mark("publish");
        crate::control::note_image(generation, debug.as_ref().map(|d| &d.file));
        crate::tls::publish_staged();
        let live = match first_slots {
            Some(s) => {
                // An indirect function's target is its resolver's answer,
                // asked on this thread, as for any other load.
                for (fi, slot, code) in s.indirect {
                    trampoline::store_slot(slot, jump_target(&m.functions[fi], code));
                }
                work.slots_retargeted += s.stored;
                Vec::new()
            }
            None => self.retarget(&new, &fn_tid, &mut work),
        };
        self.stub_gone(&diff, m, &fn_tid);
        if let Some(c) = &self.current {
            let found = super::old_calls::running(c, &diff);
            self.old_calls.extend(found);
        }
        if !self.old_calls.is_empty() {
            // SAFETY: every site lies in an area still mapped (sites are
            // dropped when their area is unmapped, `free_unused_areas`);
            // the state lock is held.
            work.old_calls_redirected =
                unsafe { super::old_calls::sync(&mut self.old_calls, &self.functions) };
        }
        for t in live {
            self.retargeted[t as usize] = false;
        }
        self.apply_identities(identities);
        self.join_new_globals(m, &diff, new_globals, &mut obj_gid);
        self.free_gone_globals(&new, &diff, &obj_gid);
        self.rebase_kept(rebase, &areas);
        let (ctors, on_reload) = entry_points(&new, &diff, self.current.is_some());
        // Old code of the modules this reload replaced or removed is named
        // with the last generation that ran it, should a frame still in it
        // crash (and the crash guard rolls back only for the newest).
        if let Some(c) = &self.current {
            crate::crash::retire_segments(&c.segment_starts(&diff.old_touched), generation, false);
        }
        self.make_current(
            Current {
                manifest,
                stat,
                fn_tid,
                obj_gid,
                place,
                areas,
                order,
                handler_ranks,
            },
            generation,
            work,
            debug.as_ref(),
        );
        // A first load's allocations are over.
        self.heap_top = None;
        Followups {
            ctors,
            on_reload,
            exports: exports_changed.then(|| self.exports()),
        }
    }

    /// Crash reports name this image's functions from now on: the new
    /// area's, and the kept areas' under the new generation. A large area's
    /// table is built by a second thread while this one registers the new
    /// trampolines (both read only the manifest).
    fn publish(
        &mut self,
        new: &New<'_>,
        area: Option<&Arc<Area>>,
        debug: Option<&crate::gdb_jit::DebugSections>,
        generation: u32,
        new_trampolines: Option<Batch>,
        fn_tid: &mut Ids,
    ) -> Option<FirstSlots> {
        let New { m, place, list, .. } = *new;
        let table = || {
            area.map(|a| {
                crate::crash::Table::new(
                    m,
                    place,
                    list,
                    (a.loaded.base as u64, a.loaded.len() as u64),
                    generation,
                    debug.and_then(crash_lines),
                )
            })
        };
        let functions_here: usize = list.iter().map(|&mi| m.functions.part(mi).len()).sum();
        // Built by the helper thread when it is free in time, else here
        // after the registry.
        let built = crate::helper::OnceUnit::new();
        let build = || built.run(table);
        // With the registry empty (a first load) every new function's slot
        // follows from its pending index, so the slots are stored by
        // whichever thread is free while this one registers the functions
        // ([`State::retarget`] has nothing else to do then).
        let first_slots = match (&new_trampolines, self.functions.len()) {
            (Some(b), 0) => Some(b.slots.addr as u64),
            _ => None,
        };
        // (Both threads read the pending ids; they are renumbered after.)
        let pending: &[u32] = fn_tid;
        let stored = crate::helper::OnceUnit::new();
        let store = || {
            if let Some(slots) = first_slots {
                stored.run(|| store_first_slots(new, pending, slots));
            }
        };
        let first = self.functions.len() as u32;
        let register = || {
            // New trampolines join the registry.
            if let Some(batch) = new_trampolines {
                self.register_batch(batch, m, list, pending);
            }
        };
        match functions_here >= PARALLEL_TABLE {
            true => crate::helper::share(
                &|| {
                    build();
                    store();
                },
                register,
            ),
            false => {
                register();
                build();
                store();
            }
        }
        // (A helper that panicked built nothing, or stored nothing: this
        // thread does it then.)
        let table = built.take_or(table);
        if let (Some(t), Some(a)) = (table, area) {
            crate::crash::publish(t);
            self.areas.push(a.clone());
        }
        let first_slots =
            first_slots.map(|slots| stored.take_or(|| store_first_slots(new, pending, slots)));
        // The new functions' registry indices, from their pending ones.
        if self.functions.len() as u32 > first {
            for t in Arc::make_mut(fn_tid).iter_mut() {
                if let Some(i) = pending_index(*t) {
                    *t = first + i;
                }
            }
        }
        first_slots
    }

    /// Retargets every function of the segments loaded now (one atomic
    /// store each); kept segments' functions already run where they are.
    /// A function keeps its key (module, name), so one that a changed
    /// module still has is among these. Returns which registry entries are
    /// live: marked in `retargeted`, and listed.
    fn retarget(&mut self, new: &New<'_>, fn_tid: &[u32], work: &mut ReloadWork) -> Vec<u32> {
        self.retargeted.resize(self.functions.len(), false);
        let mut live = Vec::new();
        for (fi, f, code) in placed_functions(new) {
            let t = fn_tid[fi];
            if t == NONE {
                continue;
            }
            trampoline::store_slot(self.functions.tramp(t).slot, jump_target(f, code));
            self.functions.set_removed_stub(t, None);
            self.retargeted[t as usize] = true;
            live.push(t);
            work.slots_retargeted += 1;
        }
        live
    }

    /// Functions of changed and removed modules that are gone get a stub
    /// that says so.
    fn stub_gone(&mut self, diff: &Diff, m: &Manifest, fn_tid: &[u32]) {
        let mut gone: Vec<u32> = Vec::new();
        // Global functions that left their module, by name: one the new
        // image defines in another module (moved there, or its module
        // renamed) is reached through its new permanent address.
        let mut moved: HashMap<&str, u32> = HashMap::default();
        if let Some(c) = &self.current {
            for md in touched_old(diff, c) {
                for fi in md.functions.range() {
                    let t = c.fn_tid[fi];
                    if t != NONE
                        && !self.retargeted[t as usize]
                        && self.functions.removed_stub(t).is_none()
                    {
                        gone.push(t);
                        let f = &c.manifest.functions[fi];
                        if f.global {
                            moved.insert(c.manifest.str(f.name), t);
                        }
                    }
                }
            }
        }
        if !moved.is_empty() {
            let mut aliased: HashSet<u32> = HashSet::default();
            for (fi, f) in m.functions.iter().enumerate() {
                let (true, Some(&old)) = (f.global, moved.get(m.str(f.name))) else {
                    continue;
                };
                match fn_tid.get(fi) {
                    Some(&t) if t != NONE && t != old => {
                        let to = self.functions.tramp(t).code;
                        trampoline::store_slot(self.functions.tramp(old).slot, to);
                        aliased.insert(old);
                    }
                    _ => {}
                }
            }
            gone.retain(|t| !aliased.contains(t));
        }
        self.stub_removed(&gone);
    }

    /// Globals kept under a new identity are found by it from now on.
    fn apply_identities(&mut self, identities: crate::identity::Decisions) {
        for w in &identities.warnings {
            warn(format_args!("{w}"));
        }
        // Every old key out before any new one goes in: statics matched
        // again by their order may trade keys.
        let rekey: Vec<(u32, Arc<str>)> = (identities.rekey.into_iter())
            .map(|(g, key)| (g, Arc::from(key.as_str())))
            .collect();
        self.rekeyed = self.set_keys(rekey);
        for (g, module) in identities.moved {
            if let Some(e) = self.globals[g as usize].as_mut() {
                index_remove(&mut self.global_index, &e.module, &e.name);
                e.module = Arc::from(module.as_str());
                index_put(&mut self.global_index, &e.module, &e.name, g);
            }
        }
    }

    /// Gives each global of `keys` its key (every old one out of the index
    /// before any new one goes in: globals may trade keys); returns the
    /// keys they had.
    pub(super) fn set_keys(&mut self, keys: Vec<(u32, Arc<str>)>) -> Vec<(u32, Arc<str>)> {
        for &(g, _) in &keys {
            if let Some(e) = self.globals.get(g as usize).and_then(Option::as_ref) {
                index_remove_own(&mut self.global_index, &e.module, &e.name, g);
            }
        }
        let mut was = Vec::with_capacity(keys.len());
        for (g, key) in keys {
            if let Some(e) = self.globals.get_mut(g as usize).and_then(Option::as_mut) {
                was.push((g, std::mem::replace(&mut e.name, key)));
                index_put(&mut self.global_index, &e.module, &e.name, g);
            }
        }
        was
    }

    /// New globals join the registry (replacing resized ones, with a
    /// warning, and a module imported again's old storage).
    fn join_new_globals(
        &mut self,
        m: &Manifest,
        diff: &Diff,
        new_globals: Vec<(usize, Global, bool)>,
        obj_gid: &mut Ids,
    ) {
        if self.current.is_some() {
            let fresh = new_globals.iter().map(|g| (g.0, g.1.addr, g.1.tls, g.2));
            crate::nim::note_new_globals(m, &diff.added, fresh);
            warn_new_dynamic_globals(m, &diff.added, &new_globals);
        }
        let obj_gid = Arc::make_mut(obj_gid);
        self.globals.reserve(new_globals.len());
        // A module's globals come one after another: they share its name
        // (the index's own key when it has one) and one lookup of its part
        // of the index. (At 100 000 globals a name and a lookup per global
        // were a fifth of the first load.)
        let mut this_module: Option<(ModuleId, Arc<str>, bool)> = None;
        // With no global registered yet (a first load) there is nothing to
        // find, and the index is left to be built when first needed: the
        // loading thread hashes nothing.
        let none_yet = self.globals.is_empty();
        let mut objects = m.objects.cursor();
        for (oi, g, resized) in new_globals {
            // (A position the table lacks fails as indexing it does.)
            let o = objects.get(oi).unwrap_or_else(|| &m.objects[oi]);
            let oname = m.object_key(o);
            let (module, indexed) = match &this_module {
                Some((id, name, indexed)) if *id == o.module => (name.clone(), *indexed),
                _ => {
                    let text = m.module_name(o.module);
                    let found = match none_yet {
                        true => None,
                        false => self.global_index().get_key_value(text),
                    };
                    let (name, indexed) = match found {
                        Some((k, _)) => (k.clone(), true),
                        None => (Arc::from(text), false),
                    };
                    this_module = Some((o.module, name.clone(), indexed));
                    (name, indexed)
                }
            };
            // (A module the index does not know has no old storage.)
            let old = match indexed {
                true => index_get(self.global_index(), &module, oname),
                false => None,
            };
            if let Some(e) = old.and_then(|old| self.globals[old as usize].take()) {
                let old_gid = old.unwrap_or(NONE);
                if resized {
                    let what = if g.tls {
                        "thread-local variable"
                    } else {
                        "global"
                    };
                    if e.g.size == g.size {
                        warn(format_args!(
                            "{what} {module}:{oname} now needs {}-byte alignment, which its storage lacks; it starts again from its initialiser",
                            o.align
                        ));
                    } else {
                        warn(format_args!(
                            "{what} {module}:{oname} changed size ({} → {} bytes); it starts again from its initialiser",
                            e.g.size, g.size
                        ));
                    }
                }
                // A global that changed size or alignment, or one of a
                // module imported again: the old storage goes (at the next
                // reload: see `gone_globals`).
                set_destructors_live(&e.g, false);
                self.gone_globals.push((old_gid, e));
            }
            let gid = self.globals.len() as u32;
            let name: Arc<str> = Arc::from(oname);
            index_put(&mut self.global_index, &module, &name, gid);
            self.globals.push(Some(GlobalEntry { module, name, g }));
            obj_gid[oi] = gid;
        }
    }

    /// Globals of changed and removed modules that are gone are freed (a
    /// global keeps its key, so one a changed module still has is among the
    /// loaded modules' objects).
    fn free_gone_globals(&mut self, new: &New<'_>, diff: &Diff, obj_gid: &[u32]) {
        let New { m, list, .. } = *new;
        // The globals the loaded modules keep: a set when they are few (a
        // flag per global would cost a pass over every global).
        let kept = list
            .iter()
            .flat_map(|&mi| obj_gid[m.modules[mi].objects.range()].iter().copied())
            .filter(|&g| g != NONE);
        let keep = Keep::of(kept, self.globals.len());
        if let Some(c) = &self.current {
            for md in touched_old(diff, c) {
                for oi in md.objects.range() {
                    let g = c.obj_gid[oi];
                    if g == NONE || keep.has(g) {
                        continue;
                    }
                    if let Some(e) = self.globals[g as usize].take() {
                        // (Its key may be a kept global's now.)
                        index_remove_own(&mut self.global_index, &e.module, &e.name, g);
                        set_destructors_live(&e.g, false);
                        self.gone_globals.push((g, e));
                    }
                }
            }
        }
    }

    /// Re-bases pointer fields of kept globals: a field that still holds
    /// what the previous load wrote, pointing into the old image at bytes
    /// the new image holds unchanged (a string literal, a constant table),
    /// follows them into the new image so the old one can be freed. A field
    /// the program changed, or whose initialiser now names something else,
    /// is left alone: changing an initialiser does nothing to a live
    /// global. Permanent addresses (functions, globals, host) never move.
    fn rebase_kept(&mut self, rebase: Vec<(u32, Vec<FieldValue>)>, areas: &ModuleAreas) {
        let old_areas = self.current.as_ref().map(|c| &c.areas);
        for (gid, values) in rebase {
            let Some(e) = self.globals[gid as usize].as_mut() else {
                continue;
            };
            let g = &mut e.g;
            let old: HashMap<u32, FieldValue> = g.written.iter().map(|f| (f.offset, *f)).collect();
            let mut written = Vec::with_capacity(values.len());
            for f in values {
                let Some(o) = old.get(&f.offset) else {
                    continue;
                };
                let untouched = {
                    // SAFETY: the global's storage is live, `g.size` bytes;
                    // this view of it ends before anything writes to it.
                    let mem =
                        unsafe { std::slice::from_raw_parts(g.addr as *const u8, g.size as usize) };
                    hcr_loader::read_value(mem, f.offset as usize, f.kind) == Some(o.value)
                };
                let follows = f.class == TargetClass::Area
                    && o.class == TargetClass::Area
                    && untouched
                    && old_areas.is_some_and(|a| same_bytes(a, o.value, areas, f.value));
                if follows {
                    write_field(g.addr, g.size, f);
                    written.push(f);
                } else {
                    written.push(*o);
                }
            }
            g.written = written;
        }
    }

    /// Makes `c` the live image (the previous one retires), publishes the
    /// generation to crash reports, debuggers and the perf map.
    fn make_current(
        &mut self,
        c: Current,
        generation: u32,
        work: ReloadWork,
        debug: Option<&crate::gdb_jit::DebugSections>,
    ) {
        if let Some(old) = self.current.take() {
            // Only the latest retired image can be rolled back to.
            if let Some(r) = self.retired.last_mut() {
                r.slim();
            }
            self.retired.push(Retired {
                image: RetiredImage::Whole(Box::new(old)),
                generation: self.generation,
                at: std::time::Instant::now(),
            });
        }
        let mut bases: Vec<u64> = c
            .distinct_areas()
            .iter()
            .map(|a| a.loaded.base as u64)
            .collect();
        bases.sort_unstable();
        crate::crash::set_generation(&bases, generation);
        self.current = Some(c);
        self.live_version += 1;
        self.last_work = work;
        self.disk = DiskCache::default();
        if crate::gdb_jit::wanted() {
            self.register_with_debuggers(debug);
        }
        if self.perf_map {
            self.write_perf_map(generation);
        }
    }

    /// Registers a batch of new trampolines under the names of the
    /// functions whose registry index in `pending` is pending (trampoline
    /// `i` is the function whose id is `PENDING | i`); the caller then
    /// renumbers those to their registry indices.
    fn register_batch(&mut self, batch: Batch, m: &Manifest, list: &[usize], pending: &[u32]) {
        // Module names interned once; a module whose functions are all new
        // and numbered in order is named by its records (shared, not
        // copied); other new functions' names are copied.
        let ids: Vec<u32> = list
            .iter()
            .map(|&mi| self.functions.intern_module(m.str(m.modules[mi].name)))
            .collect();
        let fill = |naming: &mut Naming| {
            let mut names = hcr_image::Names::new(m);
            // (A kept module has no new function.)
            for (&mi, &id) in list.iter().zip(&ids) {
                let range = m.modules[mi].functions.range();
                let tids = pending.get(range.clone()).unwrap_or_default();
                if let Some((first, (fns, table))) = whole_module(m, mi, tids) {
                    naming.run(first, id, fns, table);
                    continue;
                }
                for (&t, f) in tids.iter().zip(m.functions.part(mi)) {
                    if let Some(i) = pending_index(t) {
                        naming.one(i as usize, id, names.get(f.name));
                    }
                }
            }
        };
        self.functions.register(&batch, fill);
        self.batches.push(batch);
    }

    /// Every global function (its permanent address) and global object (its
    /// persistent storage) of the loaded image, by name; the first module
    /// defining a name wins (a weak definition after a strong one).
    pub fn exports(&self) -> Vec<hcr_loader::exports::Export> {
        let Some(c) = &self.current else {
            return Vec::new();
        };
        let m = &c.manifest;
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (fi, f) in m.functions.iter().enumerate() {
            let t = c.fn_tid[fi];
            if !exported_function(f) || t == NONE || !seen.insert(m.str(f.name)) {
                continue;
            }
            out.push(hcr_loader::exports::Export {
                name: m.str(f.name).to_string(),
                addr: self.functions.tramp(t).code,
                size: u64::from(f.size),
                func: true,
            });
        }
        for (oi, o) in m.objects.iter().enumerate() {
            let g = c.obj_gid[oi];
            if !exported_object(o) || g == NONE || !seen.insert(m.str(o.name)) {
                continue;
            }
            if let Some(e) = self.globals[g as usize].as_ref() {
                out.push(hcr_loader::exports::Export {
                    name: m.str(o.name).to_string(),
                    addr: e.g.addr,
                    size: o.size,
                    func: false,
                });
            }
        }
        out
    }
}

/// Registry indices of globals, as a set fit to their number: sorted when
/// few, a flag per global otherwise.
enum Keep {
    Few(Vec<u32>),
    Many(Vec<bool>),
}

impl Keep {
    fn of(ids: impl Iterator<Item = u32> + Clone, globals: usize) -> Keep {
        let n = ids.clone().count();
        if n.saturating_mul(64) < globals {
            let mut v: Vec<u32> = ids.collect();
            v.sort_unstable();
            Keep::Few(v)
        } else {
            let mut v = vec![false; globals];
            for g in ids {
                if let Some(k) = v.get_mut(g as usize) {
                    *k = true;
                }
            }
            Keep::Many(v)
        }
    }

    fn has(&self, g: u32) -> bool {
        match self {
            Keep::Few(v) => v.binary_search(&g).is_ok(),
            Keep::Many(v) => v.get(g as usize).copied().unwrap_or(false),
        }
    }
}

/// Module `mi`'s function records and their names' table, shared, with
/// the first pending index: when every one of its functions is new and
/// numbered in order (`pending`, its functions' ids), and their names lie
/// in the module's own string table.
fn whole_module<'m>(
    m: &'m Manifest,
    mi: usize,
    pending: &[u32],
) -> Option<(usize, hcr_image::SharedNames<'m>)> {
    let names = m.shared_names(mi)?;
    let first = pending_index(*pending.first()?)?;
    let in_order = names.0.len() == pending.len()
        && (pending.iter().enumerate()).all(|(k, &t)| pending_index(t) == Some(first + k as u32));
    in_order.then_some((first as usize, names))
}
