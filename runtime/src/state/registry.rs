//! The registry: permanent functions and persistent globals by (module,
//! name), handlers, and the lookups the C API serves.

use super::*;

pub(super) fn index_get(ix: &Index, module: &str, name: &str) -> Option<u32> {
    ix.get(module)?.get(name).copied()
}

/// Indexes global `v` as `module:name`, when the index is built (else it
/// is built from the entries when first needed, this one among them).
pub(super) fn index_put(ix: &mut LazyIndex, module: &Arc<str>, name: &Arc<str>, v: u32) {
    let Some(ix) = ix.get_mut() else {
        return;
    };
    match ix.get_mut(&**module) {
        Some(m) => {
            m.insert(name.clone(), v);
        }
        None => {
            ix.entry(module.clone())
                .or_default()
                .insert(name.clone(), v);
        }
    }
}

/// Forgets `module:name`, when the index is built.
pub(super) fn index_remove(ix: &mut LazyIndex, module: &str, name: &str) {
    if let Some(m) = ix.get_mut().and_then(|ix| ix.get_mut(module)) {
        m.remove(name);
    }
}

/// Forgets `module:name` when it is global `v`'s (when the index is built):
/// another global may hold the name now (one kept under another key took
/// it from a global the same reload removed).
pub(super) fn index_remove_own(ix: &mut LazyIndex, module: &str, name: &str, v: u32) {
    if let Some(m) = ix.get_mut().and_then(|ix| ix.get_mut(module)) {
        if m.get(name) == Some(&v) {
            m.remove(name);
        }
    }
}

/// The index of the live globals `entries` (by position): what
/// [`index_put`] and [`index_remove`] keep up once it is built.
fn build_index(entries: &[Option<GlobalEntry>]) -> Index {
    let mut ix = Index::default();
    // A module's globals come one after another: its part of the index is
    // looked up once per run of them.
    let live = entries
        .iter()
        .enumerate()
        .filter_map(|(g, e)| Some((g as u32, e.as_ref()?)));
    let mut part: Option<(&Arc<str>, &mut ModuleIndex)> = None;
    for (g, e) in live {
        match &mut part {
            Some((m, p)) if **m == e.module => {
                p.insert(e.name.clone(), g);
            }
            _ => {
                let p = ix.entry(e.module.clone()).or_default();
                p.insert(e.name.clone(), g);
                part = Some((&e.module, p));
            }
        }
    }
    ix
}

impl State {
    /// Deletes the handlers of `modules`.
    pub fn delete_handlers(&mut self, modules: &std::collections::HashSet<String>) {
        self.handlers.retain(|h| !modules.contains(&h.module));
    }

    /// Registers a handler `func` for `caller`. Its owner is the module
    /// whose code registers it: the module of `caller`'s code; else (a
    /// tail call from module code leaves no return address in it) the
    /// module whose constructor or on-reload block is running; else (host
    /// code) the module defining `func`.
    pub fn add_handler(&mut self, func: u64, before: bool, caller: Caller) {
        let module = match caller {
            Caller::In(at) => (at != 0).then(|| self.owner_of(at)).flatten(),
            Caller::Returns(ra) => ra.checked_sub(1).and_then(crate::crash::module_at),
        }
        .or_else(|| self.running_module.clone())
        .or_else(|| self.owner_of(func))
        .unwrap_or_default();
        self.handlers.push(Handler {
            module,
            before,
            func,
            seq: self.next_seq,
        });
        self.next_seq += 1;
    }

    pub(super) fn owner_of(&self, func: u64) -> Option<String> {
        if let Some(t) = self.functions.owner(func) {
            return Some(self.functions.module(t).to_string());
        }
        if let Some(c) = &self.current {
            if c.contains(func as usize) {
                if let Some(f) = c.manifest.functions.iter().enumerate().find_map(|(fi, f)| {
                    let a = c.func_addr(fi);
                    (a <= func && func < a + u64::from(f.size.max(1))).then_some(f)
                }) {
                    return Some(c.manifest.module_name(f.module).to_string());
                }
            }
        }
        self.running_module.clone()
    }

    /// Every live persistent global: `(module, name, address, size)`.
    pub fn live_globals(&self) -> Vec<(Arc<str>, Arc<str>, u64, u64)> {
        self.globals
            .iter()
            .flatten()
            .map(|e| (e.module.clone(), e.name.clone(), e.g.addr, e.g.size))
            .collect()
    }

    /// A live global's address and size.
    pub fn live_global(&self, module: &str, name: &str) -> Option<(u64, u64)> {
        let g = index_get(self.global_index(), module, name)?;
        self.globals[g as usize]
            .as_ref()
            .map(|e| (e.g.addr, e.g.size))
    }

    /// Handlers of one kind in top-level order of the live image.
    pub fn handlers_in_order(&self, before: bool) -> Vec<(String, u64)> {
        let mut hs: Vec<&Handler> = self
            .handlers
            .iter()
            .filter(|h| h.before == before)
            .collect();
        if hs.is_empty() {
            return Vec::new();
        }
        // The ranks were found when the image was prepared; a module that
        // registered its first handler since is looked up now.
        let known = self.current.as_ref().map(|c| &c.handler_ranks);
        let missing: HashSet<&str> = hs
            .iter()
            .map(|h| h.module.as_str())
            .filter(|m| !known.is_some_and(|k| k.contains_key(*m)))
            .collect();
        let found = match (&self.current, missing.is_empty()) {
            (Some(c), false) => ranks_of(&c.manifest, &c.order, &missing),
            _ => HashMap::default(),
        };
        let rank = |m: &str| {
            known
                .and_then(|k| k.get(m))
                .or_else(|| found.get(m))
                .copied()
                .unwrap_or(usize::MAX)
        };
        hs.sort_by_key(|h| (rank(&h.module), h.seq));
        hs.into_iter().map(|h| (h.module.clone(), h.func)).collect()
    }

    /// [`Current::handler_ranks`] of an image with manifest `m` and
    /// initialisation order `order`, for the modules that have handlers now.
    pub(super) fn ranks_of_handler_modules(
        &self,
        m: &Manifest,
        order: &[ModuleId],
    ) -> HashMap<String, usize> {
        let names: HashSet<&str> = self.handlers.iter().map(|h| h.module.as_str()).collect();
        // The live image's ranks stand when the order is the same and each
        // rank still names its module (a reload that changes code only).
        if let Some(c) = self.current.as_ref().filter(|c| c.order == order) {
            let k = &c.handler_ranks;
            let still = |n: &str| {
                k.get(n)
                    .and_then(|&p| order.get(p))
                    .is_some_and(|&i| m.module_name(i) == n)
            };
            if names.iter().all(|n| still(n)) {
                return names.iter().map(|&n| (n.to_string(), k[n])).collect();
            }
        }
        ranks_of(m, order, &names)
    }

    /// Points the permanent addresses `gone` (registry indices) at stubs
    /// that report `hcr: call to removed function MODULE:NAME`.
    pub(super) fn stub_removed(&mut self, gone: &[u32]) {
        if gone.is_empty() {
            return;
        }
        let names: Vec<String> = gone
            .iter()
            .map(|&t| format!("{}:{}", self.functions.module(t), self.functions.name(t)))
            .collect();
        match trampoline::make_removed_stubs(&mut self.window, &names) {
            Ok((chunk, addrs)) => {
                for (&t, a) in gone.iter().zip(addrs) {
                    trampoline::store_slot(self.functions.tramp(t).slot, a);
                    self.functions.set_removed_stub(t, Some(a));
                }
                self.stubs.push(chunk);
            }
            Err(e) => warn(format_args!("cannot make removed-function stubs: {e}")),
        }
    }

    /// Builds the indices built when first needed (the registry's
    /// functions and globals by name).
    pub fn warm_indices(&self) {
        self.functions.warm_index();
        let _ = self.global_index();
    }

    /// The live globals by `(module, name)`: built from the entries at the
    /// first look-up (or ahead of it by [`State::warm_indices`]), so a
    /// first load's globals are not hashed on the loading thread; kept up
    /// by [`index_put`] and [`index_remove`] from then on.
    pub(super) fn global_index(&self) -> &Index {
        self.global_index.get_or_init(|| build_index(&self.globals))
    }

    pub fn get_proc(&self, module: &str, name: &str) -> Option<u64> {
        self.live_address(self.functions.lookup(module, name)?)
    }

    /// Registry function `t`'s permanent address, unless a reload removed
    /// it.
    fn live_address(&self, t: u32) -> Option<u64> {
        self.functions
            .removed_stub(t)
            .is_none()
            .then(|| self.functions.tramp(t).code)
    }

    pub fn get_global(&self, module: &str, name: &str) -> Option<u64> {
        let g = index_get(self.global_index(), module, name)?;
        let e = self.globals[g as usize].as_ref()?;
        Some(if e.g.tls {
            crate::tls::addr_here(e.g.addr)
        } else {
            e.g.addr
        })
    }

    /// The loaded image's root module ("" before the first load).
    pub fn root_name(&self) -> &str {
        self.current
            .as_ref()
            .map_or("", |c| c.manifest.module_name(c.manifest.root))
    }

    /// Root `main`'s permanent address. Found in the root module's own
    /// function list rather than through the registry's name index: a
    /// first load leaves that index to be built after the load (by the
    /// thread that prepares reloads), and `hcr run` asks for `main` right
    /// after the commit (building the index there cost a 500 × 50 first
    /// load 0.7–0.9 ms).
    pub fn main_address(&self) -> Option<u64> {
        let c = self.current.as_ref()?;
        let m = &c.manifest;
        let root = m.root.0 as usize;
        let (fi, _) = m
            .modules
            .get(root)?
            .functions
            .range()
            .zip(m.functions.part(root))
            .find(|(_, f)| m.str(f.name) == "main")?;
        match *c.fn_tid.get(fi)? {
            NONE => None,
            t => self.live_address(t),
        }
    }

    /// Destructors of every loaded module, in reverse top-level order.
    pub fn destructors(&self) -> Vec<u64> {
        let Some(c) = &self.current else {
            return Vec::new();
        };
        let mut v = Vec::new();
        for &i in c.order.iter().rev() {
            let md = &c.manifest.modules[i.0 as usize];
            v.extend(
                md.dtors
                    .iter()
                    .rev()
                    .map(|&o| c.place.addr_from(&c.manifest, i.0 as usize, o)),
            );
        }
        v
    }

    /// Statistics for tests and benchmarks. Areas a reload left for the
    /// preparing thread to unmap are unmapped first, so that the window's
    /// free bytes are what they will be.
    pub fn stats(&mut self) -> RuntimeStats {
        self.unmap_dead();
        RuntimeStats {
            retired_images: self.retired.len(),
            globals: self.globals.iter().flatten().count(),
            global_bytes: self.heap.used,
            functions: self.functions.len(),
            window_free: self.window.free_bytes(),
            reload_ready: self.ahead_ready(),
        }
    }
}

/// The position in `order` of each module of `m` named in `names` (one pass
/// over the order, none when `names` is empty).
fn ranks_of(m: &Manifest, order: &[ModuleId], names: &HashSet<&str>) -> HashMap<String, usize> {
    let mut ranks = HashMap::default();
    if names.is_empty() {
        return ranks;
    }
    for (p, &i) in order.iter().enumerate() {
        let name = m.module_name(i);
        if names.contains(name) {
            ranks.insert(name.to_string(), p);
            if ranks.len() == names.len() {
                break;
            }
        }
    }
    ranks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(module: &Arc<str>, name: &str) -> Option<GlobalEntry> {
        Some(GlobalEntry {
            module: module.clone(),
            name: Arc::from(name),
            g: Global {
                addr: 0x1000,
                size: 4,
                written: Vec::new(),
                tls: false,
            },
        })
    }

    /// The index built from the entries at the first look-up is the one
    /// kept up entry by entry, and updates before it is built are left to
    /// the build.
    #[test]
    fn a_global_index_built_late_is_the_one_kept_up() {
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        // Entries of two modules, one gone, one name in both.
        let entries = vec![
            entry(&a, "x"),
            entry(&a, "y"),
            None,
            entry(&b, "x"),
            entry(&a, "z"),
        ];
        let mut kept = LazyIndex::new();
        let _ = kept.set(Index::default());
        let mut late = LazyIndex::new();
        for (g, e) in entries.iter().enumerate() {
            if let Some(e) = e {
                index_put(&mut kept, &e.module, &e.name, g as u32);
                index_put(&mut late, &e.module, &e.name, g as u32);
            }
        }
        assert!(late.get().is_none(), "nothing built before a look-up");
        index_remove(&mut late, "a", "y");
        let built = build_index(&entries);
        let kept = kept.get().cloned().unwrap_or_default();
        assert_eq!(built, kept);
        assert_eq!(index_get(&built, "a", "z"), Some(4));
        assert_eq!(index_get(&built, "b", "x"), Some(3));
        assert_eq!(index_get(&built, "a", "x"), Some(0));
        assert_eq!(index_get(&built, "b", "y"), None);
    }
}
