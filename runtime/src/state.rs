//! The runtime's state and the reload transaction.
//!
//! A reload is `plan` (pure diff of the loaded manifest against the one on
//! disk) → `prepare` (map, resolve, relocate the new image, allocate new
//! globals tentatively; touches no live state) → before-handlers → `commit`
//! (retarget, free, warn) → constructors of new modules → on-reload blocks →
//! after-handlers → `retire` (free old images no code can run in). User code
//! runs with the state lock released, so handlers may call the C API.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use hcr_image::{ImageView, Manifest, ModuleId, ObjectId, TargetClass};
use hcr_loader::{FieldValue, LoadedArea, Tables, Window};

use crate::globals::{Global, Heap};
use crate::trampoline::{self, Batch, Trampoline};
use crate::Error;

/// `(module, name)`.
pub type Key = (String, String);

/// Identity of the image file, to detect "nothing changed" with one stat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FileStat {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl FileStat {
    pub fn of(path: &Path) -> std::io::Result<FileStat> {
        let m = std::fs::metadata(path)?;
        Ok(FileStat {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        })
    }
}

/// A handler registered with `hcr_on_before_reload` / `hcr_on_after_reload`.
#[derive(Clone, Debug)]
pub struct Handler {
    pub module: String,
    pub before: bool,
    pub func: u64,
    pub seq: u64,
}

/// What a reload changes, by module name.
#[derive(Clone, Debug, Default)]
pub struct Diff {
    /// Loaded modules whose content changed.
    pub changed: Vec<String>,
    /// Modules the root reaches now and did not before.
    pub added: Vec<String>,
    /// Loaded modules the root no longer reaches.
    pub removed: Vec<String>,
}

impl Diff {
    /// Modules reloaded.
    pub fn count(&self) -> usize {
        self.changed.len() + self.added.len() + self.removed.len()
    }
    /// Every module the reload touches.
    pub fn touched(&self) -> HashSet<String> {
        self.changed
            .iter()
            .chain(&self.added)
            .chain(&self.removed)
            .cloned()
            .collect()
    }
}

/// The image whose code is live.
pub struct Current {
    pub manifest: Manifest,
    pub area: LoadedArea,
    pub stat: FileStat,
}

/// A new image, ready to commit.
pub struct Prepared {
    manifest: Manifest,
    area: LoadedArea,
    stat: FileStat,
    diff: Diff,
    /// Function address of each function (reachable modules only).
    targets: Vec<(Key, u64)>,
    new_trampolines: Option<(Batch, Vec<Key>)>,
    /// Objects: key → new global, for created ones.
    new_globals: Vec<(Key, Global, bool)>,
    /// Kept globals: key → new written values (for re-basing).
    rebase: Vec<(Key, Vec<FieldValue>)>,
}

impl Prepared {
    /// What this reload changes.
    pub fn diff(&self) -> &Diff {
        &self.diff
    }
}

/// Entry points to run after a commit, with the module each belongs to.
pub struct Followups {
    pub ctors: Vec<(String, u64)>,
    pub on_reload: Vec<(String, u64)>,
}

/// Cached answer of "does the image on disk differ?".
#[derive(Default)]
struct DiskCache {
    stat: Option<FileStat>,
    diff: Diff,
}

pub struct State {
    pub path: PathBuf,
    window: Window,
    heap: Heap,
    functions: HashMap<Key, Trampoline>,
    owner_of_trampoline: HashMap<u64, Key>,
    batches: Vec<Batch>,
    stubs: Vec<hcr_loader::Chunk>,
    removed_stub: HashMap<Key, u64>,
    globals: HashMap<Key, Global>,
    pub current: Option<Current>,
    retired: Vec<Retired>,
    pub handlers: Vec<Handler>,
    next_seq: u64,
    pub generation: u32,
    /// Modules the reload in progress touches (changed, added, removed).
    pub in_reload: Option<HashSet<String>>,
    /// Module whose top-level code or on-reload block is running.
    pub running_module: Option<String>,
    disk: DiskCache,
}

/// An image replaced by a reload, kept while code may still run in it.
struct Retired {
    area: LoadedArea,
    generation: u32,
    at: std::time::Instant,
}

/// Reloads that must complete after an image is retired before it may be
/// freed.
const KEEP_RELOADS: u32 = 2;
/// Time that must pass after an image is retired before it may be freed.
const KEEP_TIME: std::time::Duration = std::time::Duration::from_millis(100);

/// Options of [`State::open`].
#[derive(Clone, Debug)]
pub struct Options {
    pub window_size: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            window_size: hcr_loader::mem::DEFAULT_WINDOW,
        }
    }
}

fn map_image(path: &Path) -> Result<(memmap2::Mmap, FileStat), Error> {
    let file = File::open(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    let stat = FileStat::of(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    if stat.size == 0 {
        return Err(Error::Io(format!("{}: empty file", path.display())));
    }
    // SAFETY: images are replaced by rename (hcr-link writes a new file), so
    // the inode we map keeps its bytes; the mapping is read-only and private.
    let map = unsafe { memmap2::Mmap::map(&file) }
        .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    Ok((map, stat))
}

/// Reachable modules (by name) of a manifest.
fn loaded_names(m: &Manifest) -> HashMap<&str, usize> {
    m.modules
        .iter()
        .enumerate()
        .filter(|(_, md)| md.reachable)
        .map(|(i, md)| (md.name.as_str(), i))
        .collect()
}

/// Pure: what changes between the loaded manifest and a new one. A module
/// counts as changed when its timestamp differs and its content differs.
pub fn plan_reload(old: Option<&Manifest>, new: &Manifest) -> Diff {
    let mut d = Diff::default();
    let old_loaded = old.map(loaded_names).unwrap_or_default();
    let new_loaded = loaded_names(new);
    for &i in &new.init_order() {
        let md = &new.modules[i.0 as usize];
        match old_loaded.get(md.name.as_str()) {
            None => d.added.push(md.name.clone()),
            Some(&oi) => {
                let om = &old.map(|o| &o.modules[oi]).cloned().unwrap_or_default();
                if om.content_hash != md.content_hash && om.mtime_ns != md.mtime_ns {
                    d.changed.push(md.name.clone());
                }
            }
        }
    }
    if let Some(o) = old {
        for &i in &o.init_order() {
            let name = &o.modules[i.0 as usize].name;
            if !new_loaded.contains_key(name.as_str()) {
                d.removed.push(name.clone());
            }
        }
    }
    d
}

impl State {
    pub fn new(path: &Path, opts: &Options) -> Result<State, Error> {
        Ok(State {
            path: path.to_path_buf(),
            window: Window::reserve(opts.window_size)?,
            heap: Heap::default(),
            functions: HashMap::new(),
            owner_of_trampoline: HashMap::new(),
            batches: Vec::new(),
            stubs: Vec::new(),
            removed_stub: HashMap::new(),
            globals: HashMap::new(),
            current: None,
            retired: Vec::new(),
            handlers: Vec::new(),
            next_seq: 0,
            generation: 0,
            in_reload: None,
            running_module: None,
            disk: DiskCache::default(),
        })
    }

    /// The diff between the loaded image and the one on disk; one `stat`
    /// when the file is the one loaded or already examined.
    pub fn disk_diff(&mut self) -> Result<Diff, Error> {
        let stat = FileStat::of(&self.path)
            .map_err(|e| Error::Io(format!("{}: {e}", self.path.display())))?;
        if self.current.as_ref().is_some_and(|c| c.stat == stat) {
            return Ok(Diff::default());
        }
        if self.disk.stat == Some(stat) {
            return Ok(self.disk.diff.clone());
        }
        let (map, stat2) = map_image(&self.path)?;
        let (_, manifest) = ImageView::parse_manifest(&map)?;
        let diff = plan_reload(self.current.as_ref().map(|c| &c.manifest), &manifest);
        self.disk = DiskCache {
            stat: Some(stat2),
            diff: diff.clone(),
        };
        Ok(diff)
    }

    /// Loads the image on disk up to the point of no return. `Ok(None)`:
    /// nothing changed.
    pub fn prepare(&mut self) -> Result<Option<Prepared>, Error> {
        let (map, stat) = map_image(&self.path)?;
        if self.current.as_ref().is_some_and(|c| c.stat == stat) {
            return Ok(None);
        }
        let view = ImageView::parse(&map)
            .map_err(|e| Error::Image(format!("{}: {e}", self.path.display())))?;
        let diff = plan_reload(self.current.as_ref().map(|c| &c.manifest), &view.manifest);
        if self.current.is_some() && diff.count() == 0 {
            self.disk = DiskCache {
                stat: Some(stat),
                diff: Diff::default(),
            };
            return Ok(None);
        }
        let m = &view.manifest;
        let reachable: Vec<bool> = m.modules.iter().map(|md| md.reachable).collect();
        let added: HashSet<&str> = diff.added.iter().map(String::as_str).collect();
        let key_f = |fi: usize| {
            let f = &m.functions[fi];
            (m.modules[f.module.0 as usize].name.clone(), f.name.clone())
        };
        // Functions: existing trampolines, or new ones (pending).
        let mut tables = Tables {
            functions: vec![0; m.functions.len()],
            objects: vec![0; m.objects.len()],
            hosts: vec![0; m.hosts.len()],
        };
        let mut pending_keys = Vec::new();
        let mut pending_idx = Vec::new();
        for (fi, f) in m.functions.iter().enumerate() {
            if !reachable[f.module.0 as usize] {
                continue;
            }
            let key = key_f(fi);
            match self.functions.get(&key) {
                Some(t) => tables.functions[fi] = t.code,
                None => {
                    pending_idx.push(fi);
                    pending_keys.push(key);
                }
            }
        }
        // New trampolines point at the removed-function handler until commit
        // publishes them; no old code can reach them before that.
        let new_trampolines = if pending_keys.is_empty() {
            None
        } else {
            let batch = trampoline::make_batch(&mut self.window, &vec![0; pending_keys.len()])?;
            for (&fi, t) in pending_idx.iter().zip(&batch.trampolines) {
                tables.functions[fi] = t.code;
            }
            Some((batch, pending_keys))
        };
        let result = self.prepare_rest(&view, &diff, &added, &reachable, &mut tables);
        match result {
            Ok((area, new_globals, rebase)) => {
                let targets = m
                    .functions
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| reachable[f.module.0 as usize])
                    .map(|(fi, f)| (key_f(fi), area.base as u64 + u64::from(f.offset)))
                    .collect();
                Ok(Some(Prepared {
                    manifest: view.manifest.clone(),
                    area,
                    stat,
                    diff,
                    targets,
                    new_trampolines,
                    new_globals,
                    rebase,
                }))
            }
            Err(e) => {
                if let Some((batch, _)) = new_trampolines {
                    // SAFETY: the batch was never published.
                    unsafe {
                        self.window.free(batch.code);
                        self.window.free(batch.slots);
                    }
                }
                Err(e)
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn prepare_rest(
        &mut self,
        view: &ImageView<'_>,
        diff: &Diff,
        added: &HashSet<&str>,
        reachable: &[bool],
        tables: &mut Tables,
    ) -> Result<
        (
            LoadedArea,
            Vec<(Key, Global, bool)>,
            Vec<(Key, Vec<FieldValue>)>,
        ),
        Error,
    > {
        let m = &view.manifest;
        // Host symbols.
        for (hi, h) in m.hosts.iter().enumerate() {
            let addr = crate::ffi::runtime_symbol(&h.name).or_else(|| {
                CString::new(h.name.as_str())
                    .ok()
                    .and_then(|c| hcr_loader::host_symbol(&c))
            });
            match addr {
                Some(a) => tables.hosts[hi] = a,
                None if h.weak => {}
                None => {
                    let user = m
                        .modules
                        .iter()
                        .find(|md| md.reachable && md.undefined.iter().any(|u| u.0 as usize == hi));
                    if let Some(md) = user {
                        return Err(Error::Unresolved {
                            module: md.name.clone(),
                            symbol: h.name.clone(),
                        });
                    }
                }
            }
        }
        // Globals: kept ones resolve to their storage; new ones are
        // allocated now and freed again if anything below fails.
        let mut new_globals: Vec<(Key, Global, bool)> = Vec::new();
        let mut new_oi: Vec<usize> = Vec::new();
        let mut kept: Vec<(Key, usize)> = Vec::new();
        let mut fail = None;
        for (oi, o) in m.objects.iter().enumerate() {
            let md = &m.modules[o.module.0 as usize];
            if !md.reachable {
                continue;
            }
            let key = (md.name.clone(), o.name.clone());
            let existing = (!added.contains(md.name.as_str()))
                .then(|| self.globals.get(&key))
                .flatten();
            match existing {
                Some(g) if g.size == o.size => {
                    tables.objects[oi] = g.addr;
                    kept.push((key, oi));
                }
                other => {
                    let resized = other.is_some();
                    match self.heap.alloc(&mut self.window, o.size, o.align) {
                        Ok(addr) => {
                            tables.objects[oi] = addr;
                            new_oi.push(oi);
                            new_globals.push((
                                key,
                                Global {
                                    addr,
                                    size: o.size,
                                    written: Vec::new(),
                                },
                                resized,
                            ));
                        }
                        Err(e) => {
                            fail = Some(e);
                            break;
                        }
                    }
                }
            }
        }
        let free_new = |heap: &mut Heap, new_globals: &[(Key, Global, bool)]| {
            for (_, g, _) in new_globals {
                heap.free(g.addr, g.size);
            }
        };
        if let Some(e) = fail {
            free_new(&mut self.heap, &new_globals);
            return Err(e);
        }
        let _ = diff;
        let area = match hcr_loader::load_area(&mut self.window, view, tables, reachable) {
            Ok(a) => a,
            Err(e) => {
                free_new(&mut self.heap, &new_globals);
                return Err(e.into());
            }
        };
        let base = area.base as u64;
        // Initialise new globals: initial bytes, then their pointer fields.
        let mut inits = Vec::new();
        for ((_, g, _), &oi) in new_globals.iter().zip(&new_oi) {
            let o = &m.objects[oi];
            let values = hcr_loader::object_values(view, ObjectId(oi as u32), g.addr, tables, base);
            match values {
                Ok(v) => inits.push((g.addr, o.init, o.size, v)),
                Err(e) => {
                    // SAFETY: the area was never published.
                    unsafe { hcr_loader::unload_area(&mut self.window, area) };
                    free_new(&mut self.heap, &new_globals);
                    return Err(e.into());
                }
            }
        }
        let mut rebase = Vec::new();
        for (key, oi) in kept {
            match hcr_loader::object_values(
                view,
                ObjectId(oi as u32),
                tables.objects[oi],
                tables,
                base,
            ) {
                Ok(v) => rebase.push((key, v)),
                Err(e) => {
                    // SAFETY: the area was never published.
                    unsafe { hcr_loader::unload_area(&mut self.window, area) };
                    free_new(&mut self.heap, &new_globals);
                    return Err(e.into());
                }
            }
        }
        for ((addr, init, size, values), (_, g, _)) in inits.into_iter().zip(new_globals.iter_mut())
        {
            // SAFETY: `addr` is a fresh heap allocation of `size` bytes,
            // not yet visible to any code.
            let dest = unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, size as usize) };
            if let Some(off) = init {
                let off = off as usize;
                dest.copy_from_slice(&view.init[off..off + size as usize]);
            }
            for f in &values {
                hcr_loader::write_value(dest, f.offset as usize, f.kind, f.value);
            }
            g.written = values;
        }
        Ok((area, new_globals, rebase))
    }

    /// Deletes the handlers of `modules`.
    pub fn delete_handlers(&mut self, modules: &HashSet<String>) {
        self.handlers.retain(|h| !modules.contains(&h.module));
    }

    /// Makes the prepared image live. Returns what to run next.
    pub fn commit(&mut self, p: Prepared) -> Followups {
        let Prepared {
            manifest,
            area,
            stat,
            diff,
            targets,
            new_trampolines,
            new_globals,
            rebase,
        } = p;
        // New trampolines join the registry.
        if let Some((batch, keys)) = new_trampolines {
            for (k, t) in keys.into_iter().zip(batch.trampolines.iter()) {
                self.owner_of_trampoline.insert(t.code, k.clone());
                self.functions.insert(k, *t);
            }
            self.batches.push(batch);
        }
        // Retarget every function of the new image.
        let mut live: HashSet<&Key> = HashSet::new();
        for (k, addr) in &targets {
            if let Some(t) = self.functions.get(k) {
                trampoline::store_slot(t.slot, *addr);
            }
            live.insert(k);
        }
        // Functions that no longer exist go to a stub that says so.
        let gone: Vec<Key> = self
            .functions
            .keys()
            .filter(|k| !live.contains(k) && !self.removed_stub.contains_key(*k))
            .cloned()
            .collect();
        if !gone.is_empty() {
            let names: Vec<String> = gone.iter().map(|(m, n)| format!("{m}:{n}")).collect();
            match trampoline::make_removed_stubs(&mut self.window, &names) {
                Ok((chunk, addrs)) => {
                    for (k, a) in gone.into_iter().zip(addrs) {
                        self.removed_stub.insert(k, a);
                    }
                    self.stubs.push(chunk);
                }
                Err(e) => eprintln!("hcr: warning: cannot make removed-function stubs: {e}"),
            }
        }
        for (k, t) in &self.functions {
            if !live.contains(k) {
                if let Some(&s) = self.removed_stub.get(k) {
                    trampoline::store_slot(t.slot, s);
                }
            }
        }
        // A function that comes back drops its stub record.
        self.removed_stub.retain(|k, _| !live.contains(k));
        // Globals: removed ones (gone from the image, or of removed modules)
        // are freed; resized ones are replaced with a warning.
        let new_keys: HashSet<Key> = manifest
            .objects
            .iter()
            .filter(|o| manifest.modules[o.module.0 as usize].reachable)
            .map(|o| {
                (
                    manifest.modules[o.module.0 as usize].name.clone(),
                    o.name.clone(),
                )
            })
            .collect();
        let removed_modules: HashSet<&String> = diff.removed.iter().collect();
        let added_modules: HashSet<&String> = diff.added.iter().collect();
        let stale: Vec<Key> = self
            .globals
            .keys()
            .filter(|k| {
                !new_keys.contains(*k)
                    || removed_modules.contains(&k.0)
                    || added_modules.contains(&k.0)
            })
            .cloned()
            .collect();
        for k in stale {
            if let Some(g) = self.globals.remove(&k) {
                self.heap.free(g.addr, g.size);
            }
        }
        for (k, g, resized) in new_globals {
            if resized {
                if let Some(old) = self.globals.remove(&k) {
                    eprintln!(
                        "hcr: warning: global {}:{} changed size ({} → {} bytes); it starts again from its initialiser",
                        k.0, k.1, old.size, g.size
                    );
                    self.heap.free(old.addr, old.size);
                }
            }
            self.globals.insert(k, g);
        }
        // Re-base pointer fields of kept globals: a field that still holds
        // what the previous load wrote, pointing into the old image at bytes
        // the new image holds unchanged (a string literal, a constant table),
        // follows them into the new image so the old one can be freed. A
        // field the program changed, or whose initialiser now names something
        // else, is left alone: changing an initialiser does nothing to a live
        // global. Permanent addresses (functions, globals, host) never move.
        let old_area = self.current.as_ref().map(|c| &c.area);
        for (k, values) in rebase {
            let Some(g) = self.globals.get_mut(&k) else {
                continue;
            };
            // SAFETY: the global's storage is live, `g.size` bytes.
            let mem = unsafe { std::slice::from_raw_parts_mut(g.addr as *mut u8, g.size as usize) };
            let old: HashMap<u32, FieldValue> = g.written.iter().map(|f| (f.offset, *f)).collect();
            let mut written = Vec::with_capacity(values.len());
            for f in values {
                let Some(o) = old.get(&f.offset) else {
                    continue;
                };
                let untouched =
                    hcr_loader::read_value(mem, f.offset as usize, f.kind) == Some(o.value);
                let follows = f.class == TargetClass::Area
                    && o.class == TargetClass::Area
                    && untouched
                    && old_area.is_some_and(|a| same_bytes(a, o.value, &area, f.value));
                if follows {
                    hcr_loader::write_value(mem, f.offset as usize, f.kind, f.value);
                    written.push(f);
                } else {
                    written.push(*o);
                }
            }
            g.written = written;
        }
        // Entry points to run.
        let base = area.base as u64;
        let order = manifest.init_order();
        let name = |i: ModuleId| manifest.modules[i.0 as usize].name.clone();
        let touched: HashSet<&String> = diff.changed.iter().chain(&diff.added).collect();
        let mut ctors = Vec::new();
        let mut on_reload = Vec::new();
        for &i in &order {
            let md = &manifest.modules[i.0 as usize];
            if added_modules.contains(&md.name) {
                ctors.extend(md.ctors.iter().map(|&o| (name(i), base + u64::from(o))));
            }
            if touched.contains(&md.name) {
                on_reload.extend(md.on_reload.iter().map(|&o| (name(i), base + u64::from(o))));
            }
        }
        if let Some(old) = self.current.take() {
            self.retired.push(Retired {
                area: old.area,
                generation: self.generation,
                at: std::time::Instant::now(),
            });
        }
        self.current = Some(Current {
            manifest,
            area,
            stat,
        });
        self.disk = DiskCache::default();
        Followups { ctors, on_reload }
    }

    /// Frees retired images that no code can run in any more: ones retired
    /// at least [`KEEP_RELOADS`] reloads and [`KEEP_TIME`] ago (threads
    /// that entered them before the swap have returned), holding no return
    /// address of the calling thread's stack, and into which no persistent
    /// global points.
    pub fn reclaim(&mut self) {
        if self.retired.is_empty() {
            return;
        }
        let stack = crate::ffi::stack_return_addresses();
        let words: Vec<u64> = self
            .globals
            .values()
            .flat_map(|g| {
                let n = (g.size / 8) as usize;
                // SAFETY: live global storage of at least n*8 bytes; read
                // unaligned since objects may be less than 8-aligned.
                (0..n).map(move |i| unsafe {
                    std::ptr::read_unaligned((g.addr as *const u64).add(i))
                })
            })
            .collect();
        let latest = self.generation;
        let mut keep = Vec::new();
        for r in self.retired.drain(..) {
            let in_use = r.generation + KEEP_RELOADS > latest
                || r.at.elapsed() < KEEP_TIME
                || stack.iter().any(|&a| r.area.contains(a))
                || words.iter().any(|&w| r.area.contains(w as usize));
            if in_use {
                keep.push(r);
            } else {
                // SAFETY: see the rule above and ARCHITECTURE.md ("When an
                // old image is freed").
                unsafe { hcr_loader::unload_area(&mut self.window, r.area) };
            }
        }
        self.retired = keep;
    }

    /// Registers a handler; the owner is the module whose function `func` is.
    pub fn add_handler(&mut self, func: u64, before: bool) {
        let module = self.owner_of(func).unwrap_or_default();
        self.handlers.push(Handler {
            module,
            before,
            func,
            seq: self.next_seq,
        });
        self.next_seq += 1;
    }

    fn owner_of(&self, func: u64) -> Option<String> {
        if let Some(k) = self.owner_of_trampoline.get(&func) {
            return Some(k.0.clone());
        }
        if let Some(c) = &self.current {
            if c.area.contains(func as usize) {
                let off = func - c.area.base as u64;
                if let Some(f) = c.manifest.functions.iter().find(|f| {
                    u64::from(f.offset) <= off
                        && off < u64::from(f.offset) + u64::from(f.size.max(1))
                }) {
                    return Some(c.manifest.modules[f.module.0 as usize].name.clone());
                }
            }
        }
        self.running_module.clone()
    }

    /// Handlers of one kind in top-level order of `manifest`.
    pub fn handlers_in_order(
        &self,
        before: bool,
        manifest: Option<&Manifest>,
    ) -> Vec<(String, u64)> {
        let pos: HashMap<String, usize> = manifest
            .map(|m| {
                m.init_order()
                    .iter()
                    .enumerate()
                    .map(|(p, &i)| (m.modules[i.0 as usize].name.clone(), p))
                    .collect()
            })
            .unwrap_or_default();
        let mut hs: Vec<&Handler> = self
            .handlers
            .iter()
            .filter(|h| h.before == before)
            .collect();
        hs.sort_by_key(|h| (pos.get(&h.module).copied().unwrap_or(usize::MAX), h.seq));
        hs.into_iter().map(|h| (h.module.clone(), h.func)).collect()
    }

    pub fn get_proc(&self, module: &str, name: &str) -> Option<u64> {
        let k = (module.to_string(), name.to_string());
        if self.removed_stub.contains_key(&k) {
            return None;
        }
        self.functions.get(&k).map(|t| t.code)
    }

    pub fn get_global(&self, module: &str, name: &str) -> Option<u64> {
        self.globals
            .get(&(module.to_string(), name.to_string()))
            .map(|g| g.addr)
    }

    /// Root `main`'s permanent address.
    pub fn main_address(&self) -> Option<u64> {
        let c = self.current.as_ref()?;
        let root = &c.manifest.modules.get(c.manifest.root.0 as usize)?.name;
        self.get_proc(root, "main")
    }

    /// Destructors of every loaded module, in reverse top-level order.
    pub fn destructors(&self) -> Vec<u64> {
        let Some(c) = &self.current else {
            return Vec::new();
        };
        let base = c.area.base as u64;
        let mut v = Vec::new();
        for &i in c.manifest.init_order().iter().rev() {
            let md = &c.manifest.modules[i.0 as usize];
            v.extend(md.dtors.iter().rev().map(|&o| base + u64::from(o)));
        }
        v
    }

    /// Frees every global and unmaps every image (the window goes with the
    /// state).
    pub fn shutdown(&mut self) {
        self.globals.clear();
        // SAFETY: shutdown is the last use of the runtime; the caller (hcr_shutdown)
        // documents that no image code may run afterwards.
        unsafe { self.heap.release(&mut self.window) };
        if let Some(c) = self.current.take() {
            // SAFETY: as above.
            unsafe { hcr_loader::unload_area(&mut self.window, c.area) };
        }
        for r in self.retired.drain(..) {
            // SAFETY: as above.
            unsafe { hcr_loader::unload_area(&mut self.window, r.area) };
        }
        self.handlers.clear();
    }

    /// Statistics for tests and benchmarks.
    pub fn stats(&self) -> RuntimeStats {
        RuntimeStats {
            retired_images: self.retired.len(),
            globals: self.globals.len(),
            global_bytes: self.heap.used,
            functions: self.functions.len(),
            window_free: self.window.free_bytes(),
        }
    }
}

/// True when the bytes at `old` (in `old_area`) and `new` (in `new_area`)
/// agree up to and including a NUL, or for 64 bytes, whichever comes first,
/// without reading past either area.
fn same_bytes(old_area: &LoadedArea, old: u64, new_area: &LoadedArea, new: u64) -> bool {
    let (o, n) = (old as usize, new as usize);
    if !old_area.contains(o) || !new_area.contains(n) {
        return false;
    }
    let limit = 64
        .min(old_area.base + old_area.len() - o)
        .min(new_area.base + new_area.len() - n);
    for i in 0..limit {
        // SAFETY: both addresses lie in mapped, readable areas (checked
        // above, `limit` keeps within them).
        let (a, b) = unsafe { (*((o + i) as *const u8), *((n + i) as *const u8)) };
        if a != b {
            return false;
        }
        if a == 0 {
            return true;
        }
    }
    true
}

/// Counters describing the runtime's memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuntimeStats {
    /// Old images still mapped.
    pub retired_images: usize,
    /// Live persistent globals.
    pub globals: usize,
    /// Bytes of live globals.
    pub global_bytes: u64,
    /// Permanent function addresses.
    pub functions: usize,
    /// Free bytes of the window.
    pub window_free: usize,
}
