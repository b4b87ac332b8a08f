//! The runtime's state and the reload transaction.
//!
//! A reload is `plan` (pure diff of the loaded manifest against the one on
//! disk) → `prepare` (read, resolve, relocate the new image, allocate new
//! globals tentatively; touches no live state) → before-handlers → `commit`
//! (retarget, free, warn) → constructors of new modules → on-reload blocks →
//! after-handlers → `retire` (free old images no code can run in). User code
//! runs with the state lock released, so handlers may call the C API.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hcr_image::{ImageView, Manifest, ModuleId, ObjectId, TargetClass};
use hcr_loader::{FieldValue, LoadedArea, Tables, Window};

use crate::globals::{Global, Heap};
use crate::image_file::{ImageFile, Parts, Scratch};
use crate::trampoline::{self, Batch, Trampoline};
use crate::Error;

/// Identity of the image file, to detect "nothing changed" with one stat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FileStat {
    dev: u64,
    ino: u64,
    pub size: u64,
    mtime_ns: i128,
}

impl FileStat {
    pub fn of(path: &Path) -> std::io::Result<FileStat> {
        Ok(FileStat::from_metadata(&std::fs::metadata(path)?))
    }

    pub fn from_metadata(m: &std::fs::Metadata) -> FileStat {
        FileStat {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        }
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
    pub fn touched(&self) -> std::collections::HashSet<String> {
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
    /// Registry index of each manifest function (`NONE` when unreachable).
    fn_tid: Vec<u32>,
    /// Registry index of each manifest object (`NONE` when unreachable).
    obj_gid: Vec<u32>,
}

const NONE: u32 = u32::MAX;
/// Marks an index into `Prepared::new_*` rather than the registry.
const PENDING: u32 = 1 << 31;

/// A new image, ready to commit.
pub struct Prepared {
    manifest: Manifest,
    area: LoadedArea,
    stat: FileStat,
    diff: Diff,
    /// Registry index (or `PENDING | i`) of each manifest function.
    fn_tid: Vec<u32>,
    /// Registry index (or `PENDING | i`) of each manifest object.
    obj_gid: Vec<u32>,
    new_trampolines: Option<Batch>,
    /// New globals with their manifest index; `true` when replacing a
    /// resized one.
    new_globals: Vec<(usize, Global, bool)>,
    /// Kept globals with pointer fields into the image: new field values.
    rebase: Vec<(u32, Vec<FieldValue>)>,
    /// Where the image's debug sections lie (for debuggers and crash
    /// reports).
    debug: Option<crate::gdb_jit::DebugSections>,
    /// Warnings and re-keyed globals of identity checks beyond the keys.
    identities: crate::identity::Decisions,
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
    /// The image's exported symbols, when the set changed (new functions,
    /// globals created or moved): to publish for `dlopen`'ed objects before
    /// any module code runs.
    pub exports: Option<Vec<hcr_loader::exports::Export>>,
}

/// Cached answer of "does the image on disk differ?".
#[derive(Default)]
struct DiskCache {
    stat: Option<FileStat>,
    diff: Diff,
}

/// A permanent function address.
struct FnEntry {
    module: Arc<str>,
    name: Arc<str>,
    tramp: Trampoline,
    /// Set while the function is absent from the live image.
    removed_stub: Option<u64>,
}

/// A persistent global.
struct GlobalEntry {
    module: Arc<str>,
    name: Arc<str>,
    g: Global,
}

/// `module → name → index`, looked up with `&str` (no allocation); the
/// names are shared with the registry entries (one allocation per name).
type Index = HashMap<Arc<str>, HashMap<Arc<str>, u32>>;

fn index_get(ix: &Index, module: &str, name: &str) -> Option<u32> {
    ix.get(module)?.get(name).copied()
}

fn index_put(ix: &mut Index, module: &Arc<str>, name: &Arc<str>, v: u32) {
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

fn index_remove(ix: &mut Index, module: &str, name: &str) {
    if let Some(m) = ix.get_mut(module) {
        m.remove(name);
    }
}

pub struct State {
    pub path: PathBuf,
    window: Window,
    heap: Heap,
    functions: Vec<FnEntry>,
    fn_index: Index,
    owner_of_trampoline: HashMap<u64, u32>,
    batches: Vec<Batch>,
    stubs: Vec<hcr_loader::Chunk>,
    globals: Vec<Option<GlobalEntry>>,
    global_index: Index,
    pub current: Option<Current>,
    retired: Vec<Retired>,
    pub handlers: Vec<Handler>,
    next_seq: u64,
    pub generation: u32,
    /// Modules the reload in progress touches (changed, added, removed).
    pub in_reload: Option<std::collections::HashSet<String>>,
    /// Module whose top-level code or on-reload block is running.
    pub running_module: Option<String>,
    disk: DiskCache,
    /// The address every image's `__dso_handle` resolves to.
    dso_handle: u64,
    allow_insecure_image: bool,
    /// Where images are read, kept between reloads.
    scratch: Scratch,
    /// Loaded images registered with debuggers.
    jit: crate::gdb_jit::Registry,
    /// Write `/tmp/perf-PID.map`.
    perf_map: bool,
}

/// An image replaced by a reload, kept while code may still run in it.
struct Retired {
    /// The image as it was live (kept whole: a crash guard may roll back
    /// to it).
    image: Current,
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
    /// Size of the address window.
    pub window_size: usize,
    /// Load images that are writable by group or others or owned by another
    /// user (refused by default, like a careful dynamic loader would).
    pub allow_insecure_image: bool,
    /// Never free retired images (see `ffi::set_keep_retired_images`): for
    /// hosts whose other threads may still run old code when a reload
    /// happens. Default: `HCR_KEEP_RETIRED_IMAGES=1` in the environment.
    pub keep_retired_images: bool,
    /// Append every loaded image's symbols to `/tmp/perf-PID.map` for
    /// `perf`. Default: `HCR_PERF_MAP=1` in the environment.
    pub perf_map: bool,
}

impl Default for Options {
    fn default() -> Self {
        let env = |name: &str| std::env::var_os(name).is_some_and(|v| v == "1");
        Options {
            window_size: hcr_loader::mem::DEFAULT_WINDOW,
            allow_insecure_image: env("HCR_ALLOW_INSECURE_IMAGE"),
            keep_retired_images: env("HCR_KEEP_RETIRED_IMAGES"),
            perf_map: env("HCR_PERF_MAP"),
        }
    }
}

/// Writes pointer field `f` of the live global at `addr` (`size` bytes),
/// which other threads may be reading: an aligned 64-bit field (a pointer)
/// is stored in one atomic release store, so a reader sees the old value or
/// the new one, never a mix.
fn write_field(addr: u64, size: u64, f: FieldValue) {
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

/// The loaded (reachable) modules of `m` whose names are in `names`.
fn loaded_among<'a>(
    m: &'a Manifest,
    names: &'a HashSet<&str>,
) -> impl Iterator<Item = &'a hcr_image::Module> {
    m.modules
        .iter()
        .filter(move |md| md.reachable && names.contains(m.str(md.name)))
}

/// Reachable modules (by name) of a manifest.
fn loaded_names(m: &Manifest) -> HashMap<&str, usize> {
    m.modules
        .iter()
        .enumerate()
        .filter(|(_, md)| md.reachable)
        .map(|(i, md)| (m.str(md.name), i))
        .collect()
}

/// Whether the program may load shared objects that need the image's
/// symbols: a reachable module calls `dlopen`/`dlmopen`, the image names
/// libraries (which may load plugins themselves), or `HCR_EXPORT_SYMBOLS=1`
/// asks for it. Publishing costs about a microsecond per exported name, so
/// programs that never load plugins do not pay it.
fn may_load_plugins(m: &Manifest) -> bool {
    if !m.libraries.is_empty() || std::env::var_os("HCR_EXPORT_SYMBOLS").is_some_and(|v| v == "1") {
        return true;
    }
    m.modules.iter().filter(|md| md.reachable).any(|md| {
        md.undefined.iter().any(|h| {
            m.hosts
                .get(h.0 as usize)
                .is_some_and(|h| matches!(m.str(h.name), "dlopen" | "dlmopen"))
        })
    })
}

/// Pure: what changes between the loaded manifest and a new one. A module
/// counts as changed when its timestamp differs and its content differs.
pub fn plan_reload(old: Option<&Manifest>, new: &Manifest) -> Diff {
    let mut d = Diff::default();
    let old_loaded = old.map(loaded_names).unwrap_or_default();
    let new_loaded = loaded_names(new);
    for &i in &new.init_order() {
        let md = &new.modules[i.0 as usize];
        let name = new.str(md.name);
        match (old, old_loaded.get(name)) {
            (Some(o), Some(&oi)) => {
                let om = &o.modules[oi];
                if om.content_hash != md.content_hash && om.mtime_ns != md.mtime_ns {
                    d.changed.push(name.to_string());
                }
            }
            _ => d.added.push(name.to_string()),
        }
    }
    if let Some(o) = old {
        for &i in &o.init_order() {
            let name = o.module_name(i);
            if !new_loaded.contains_key(name) {
                d.removed.push(name.to_string());
            }
        }
    }
    d
}

impl State {
    pub fn new(path: &Path, opts: &Options) -> Result<State, Error> {
        crate::crash::install();
        let mut window = Window::reserve(opts.window_size)?;
        let mut heap = Heap::default();
        let dso_handle = heap.alloc(&mut window, 8, 8)?;
        Ok(State {
            path: path.to_path_buf(),
            window,
            heap,
            dso_handle,
            allow_insecure_image: opts.allow_insecure_image,
            scratch: Scratch::default(),
            jit: crate::gdb_jit::Registry::default(),
            perf_map: opts.perf_map,
            functions: Vec::new(),
            fn_index: Index::default(),
            owner_of_trampoline: HashMap::default(),
            batches: Vec::new(),
            stubs: Vec::new(),
            globals: Vec::new(),
            global_index: Index::default(),
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
        let file = ImageFile::open(&self.path, self.allow_insecure_image)?;
        let bytes = file.read(Parts::Manifest, &mut self.scratch)?;
        let (_, manifest) = ImageView::parse_manifest(bytes).map_err(|e| self.image_error(e))?;
        let stat2 = file.stat;
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
        let path = self.path.clone();
        let file = ImageFile::open(&path, self.allow_insecure_image)?;
        if self.current.as_ref().is_some_and(|c| c.stat == file.stat) {
            return Ok(None);
        }
        // The buffer is lent to this load (the view borrows it) and kept
        // for the next.
        let mut scratch = std::mem::take(&mut self.scratch);
        let r = self.prepare_from(&file, &mut scratch);
        self.scratch = scratch;
        r
    }

    /// A problem of the image on disk, naming its path.
    fn image_error(&self, e: hcr_image::ImageError) -> Error {
        Error::Image(format!("{}: {e}", self.path.display()))
    }

    fn prepare_from(
        &mut self,
        file: &ImageFile<'_>,
        scratch: &mut Scratch,
    ) -> Result<Option<Prepared>, Error> {
        // The load area is read straight into its chunk of the window (one
        // copy from the file, none through a buffer); the rest of what the
        // loader uses goes to `scratch`.
        let bytes = file.read(Parts::AllButArea, scratch)?;
        let header = ImageView::parse_header(bytes).map_err(|e| self.image_error(e))?;
        let in_file = header
            .area_file_offset
            .checked_add(header.area_file_size)
            .is_some_and(|end| end <= file.stat.size);
        let len = usize::try_from(header.area_file_size)
            .ok()
            .filter(|_| in_file)
            .ok_or_else(|| self.image_error(hcr_image::ImageError::Truncated("load area")))?;
        let mut chunk = Some(self.window.alloc(len.max(1))?);
        let r = self.prepare_in(file, bytes, &header, &mut chunk);
        if let Some(c) = chunk.take() {
            // SAFETY: the chunk was never published: nothing runs in it and
            // no view of it outlives `prepare_in`.
            unsafe { self.window.free(c) };
        }
        r
    }

    /// [`State::prepare_from`] with the area's chunk reserved: reads the
    /// area into it, parses and verifies the image, and prepares the load.
    /// The chunk is taken from `chunk` when the load area is mapped.
    fn prepare_in(
        &mut self,
        file: &ImageFile<'_>,
        bytes: &[u8],
        header: &hcr_image::Header,
        chunk: &mut Option<hcr_loader::Chunk>,
    ) -> Result<Option<Prepared>, Error> {
        let stat = file.stat;
        let (addr, cap) = chunk.as_ref().map_or((0, 0), |c| (c.addr, c.len));
        let len = usize::try_from(header.area_file_size).unwrap_or(usize::MAX);
        if len > cap {
            return Err(Error::Io(format!(
                "{}: load area larger than its chunk",
                self.path.display()
            )));
        }
        // SAFETY: the chunk is fresh from the window, committed read-write,
        // at least `len` bytes and not yet published; this is the only
        // reference to its bytes until the parser's view of them is dropped
        // below (`view.area`), before the loader writes to them.
        let dst = unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, len) };
        file.read_area_into(header.area_file_offset, dst)?;
        let mut view = ImageView::parse_with_area(bytes, dst).map_err(|e| self.image_error(e))?;
        // The parser's view of the chunk ends here: from now on only the
        // loader touches those bytes.
        view.area = &[];
        // A writer other than hcr-link may lay out a larger area than the
        // file holds: move it to a chunk of the full size.
        let need = view.manifest.layout.area_size as usize;
        if need > cap {
            let bigger = self.window.alloc(need)?;
            // SAFETY: both chunks are ours, committed read-write and
            // unpublished; `len` bytes fit both and they do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(addr as *const u8, bigger.addr as *mut u8, len)
            };
            if let Some(old) = chunk.replace(bigger) {
                // SAFETY: never published; nothing refers to it any more.
                unsafe { self.window.free(old) };
            }
        }
        let diff = plan_reload(self.current.as_ref().map(|c| &c.manifest), &view.manifest);
        if self.current.is_some() && diff.count() == 0 {
            self.disk = DiskCache {
                stat: Some(stat),
                diff: Diff::default(),
            };
            return Ok(None);
        }
        let m = &view.manifest;
        let mut tables = Tables {
            functions: vec![0; m.functions.len()],
            objects: vec![0; m.objects.len()],
            hosts: vec![0; m.hosts.len()],
        };
        // Registry indices of the new image's functions and objects. A
        // module whose content did not change has the same symbols in the
        // same order: its indices are copied from the loaded image, so the
        // work below grows with what changed, not with the program.
        let mut fn_tid = vec![NONE; m.functions.len()];
        let mut obj_gid = vec![NONE; m.objects.len()];
        let added: HashSet<&str> = diff.added.iter().map(String::as_str).collect();
        let old = self.current.as_ref();
        let old_modules: HashMap<&str, usize> = old
            .map(|c| {
                c.manifest
                    .modules
                    .iter()
                    .enumerate()
                    .filter(|(_, md)| md.reachable)
                    .map(|(i, md)| (c.manifest.str(md.name), i))
                    .collect()
            })
            .unwrap_or_default();
        let mut pending_fns = 0u32;
        let mut identities = crate::identity::Decisions::default();
        for md in m.modules.iter().filter(|md| md.reachable) {
            let same = old.and_then(|c| {
                let oi = *old_modules.get(m.str(md.name))?;
                let om = &c.manifest.modules[oi];
                (om.content_hash == md.content_hash
                    && om.functions.len() == md.functions.len()
                    && om.objects.len() == md.objects.len())
                .then_some((c, om))
            });
            if let Some((c, om)) = same {
                fn_tid[md.functions.range()].copy_from_slice(&c.fn_tid[om.functions.range()]);
                obj_gid[md.objects.range()].copy_from_slice(&c.obj_gid[om.objects.range()]);
                continue;
            }
            for fi in md.functions.range() {
                fn_tid[fi] =
                    match index_get(&self.fn_index, m.str(md.name), m.str(m.functions[fi].name)) {
                        Some(t) => t,
                        None => {
                            pending_fns += 1;
                            PENDING | (pending_fns - 1)
                        }
                    };
            }
            if !added.contains(m.str(md.name)) {
                for oi in md.objects.range() {
                    if let Some(g) = index_get(
                        &self.global_index,
                        m.str(md.name),
                        m.object_key(&m.objects[oi]),
                    ) {
                        obj_gid[oi] = g;
                    }
                }
                if let Some(c) = old {
                    if let Some(&omi) = old_modules.get(m.str(md.name)) {
                        crate::identity::match_renumbered(
                            crate::identity::Version {
                                manifest: &c.manifest,
                                module: &c.manifest.modules[omi],
                                gid: &c.obj_gid,
                            },
                            m,
                            md,
                            &mut obj_gid,
                            NONE,
                            &mut identities,
                        );
                    }
                }
            }
        }
        // New trampolines start at address 0 and are published by commit;
        // no old code can reach them before that.
        let new_trampolines = if pending_fns == 0 {
            None
        } else {
            Some(trampoline::make_batch(
                &mut self.window,
                &vec![0; pending_fns as usize],
            )?)
        };
        for (fi, &t) in fn_tid.iter().enumerate() {
            tables.functions[fi] = match t {
                NONE => 0,
                t if t & PENDING != 0 => new_trampolines
                    .as_ref()
                    .map_or(0, |b| b.trampolines[(t & !PENDING) as usize].code),
                t => self.functions[t as usize].tramp.code,
            };
        }
        match self.prepare_rest(&view, &mut tables, &mut obj_gid, chunk) {
            Ok((area, new_globals, rebase)) => Ok(Some(Prepared {
                debug: file
                    .duplicate()
                    .ok()
                    .and_then(|f| crate::gdb_jit::read_debug(f, stat.size)),
                manifest: view.manifest,
                area,
                stat,
                diff,
                fn_tid,
                obj_gid,
                new_trampolines,
                new_globals,
                rebase,
                identities,
            })),
            Err(e) => {
                if let Some(batch) = new_trampolines {
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
        tables: &mut Tables,
        obj_gid: &mut [u32],
        chunk: &mut Option<hcr_loader::Chunk>,
    ) -> Result<
        (
            LoadedArea,
            Vec<(usize, Global, bool)>,
            Vec<(u32, Vec<FieldValue>)>,
        ),
        Error,
    > {
        let m = &view.manifest;
        let reachable: Vec<bool> = m.modules.iter().map(|md| md.reachable).collect();
        // Libraries the image names (`hcr-link -l`) come first, as
        // `DT_NEEDED` ones do; then host symbols resolve through the
        // runtime's C API, then the process.
        crate::hostlibs::load_needed(m)?;
        let dso = self.dso_handle;
        let window = &self.window;
        let lookup = |name: &str| {
            if name == "__dso_handle" {
                return Some(dso);
            }
            crate::ffi::runtime_symbol(name).or_else(|| {
                CString::new(name)
                    .ok()
                    .and_then(|c| hcr_loader::host_symbol(&c))
                    // Never a name the runtime itself exported for plugins
                    // (a function a reload removed is no host symbol).
                    .filter(|&a| !window.contains(a as usize))
            })
        };
        let mut defaults_loaded = false;
        let mut missing = vec![false; m.hosts.len()];
        for (hi, h) in m.hosts.iter().enumerate() {
            let hname = m.str(h.name);
            let mut addr = lookup(hname);
            if addr.is_none() && !defaults_loaded {
                // What a `cc` link gives a program with no flag (libm,
                // libstdc++, ...), loaded the first time an image needs
                // something the process lacks.
                defaults_loaded = true;
                crate::hostlibs::load_defaults();
                addr = lookup(hname);
            }
            match addr {
                Some(a) => tables.hosts[hi] = a,
                None => missing[hi] = !h.weak,
            }
        }
        crate::hostlibs::check_missing(m, &reachable, &missing)?;
        // Globals: kept ones (same key, same size) resolve to their storage;
        // new ones are allocated now and freed again if anything fails.
        let mut new_globals: Vec<(usize, Global, bool)> = Vec::new();
        let mut fail = None;
        crate::tls::drop_staged();
        for (oi, o) in m.objects.iter().enumerate() {
            if !reachable[o.module.0 as usize] {
                continue;
            }
            let kept = match obj_gid[oi] {
                NONE => None,
                g => self.globals[g as usize].as_ref().map(|e| (g, &e.g)),
            };
            match kept {
                Some((_, g)) if g.size == o.size => tables.objects[oi] = g.addr,
                other => {
                    let resized = other.is_some();
                    let alloc = if o.tls {
                        crate::tls::alloc(o.size, o.align)
                    } else {
                        self.heap.alloc(&mut self.window, o.size, o.align)
                    };
                    match alloc {
                        Ok(addr) => {
                            tables.objects[oi] = addr;
                            obj_gid[oi] = PENDING | new_globals.len() as u32;
                            new_globals.push((
                                oi,
                                Global {
                                    addr,
                                    size: o.size,
                                    written: Vec::new(),
                                    tls: o.tls,
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
        let free_new = |heap: &mut Heap, new_globals: &[(usize, Global, bool)]| {
            for (_, g, _) in new_globals {
                heap.free_global(g);
            }
        };
        if let Some(e) = fail {
            free_new(&mut self.heap, &new_globals);
            return Err(e);
        }
        let Some(c) = chunk.take() else {
            free_new(&mut self.heap, &new_globals);
            return Err(Error::Io("the load area's chunk was already used".into()));
        };
        let area = match hcr_loader::load_area_in(&mut self.window, c, view, tables, &reachable) {
            Ok(a) => a,
            Err(e) => {
                free_new(&mut self.heap, &new_globals);
                return Err(e.into());
            }
        };
        let base = area.base as u64;
        let mut fail = None;
        // New pointer values of kept globals that hold pointers into the
        // image (only those can need re-basing).
        let mut rebase = Vec::new();
        for (oi, &g) in obj_gid.iter().enumerate() {
            if g == NONE || g & PENDING != 0 {
                continue;
            }
            let Some(e) = &self.globals[g as usize] else {
                continue;
            };
            if e.g.tls {
                // Threads born after the reload start from the new image's
                // initialiser (its pointers point into the new image).
                match hcr_loader::object_values(view, ObjectId(oi as u32), e.g.addr, tables, base) {
                    Ok(v) => crate::tls::stage(e.g.addr, initial_bytes(view, &m.objects[oi], &v)),
                    Err(err) => fail = Some(err),
                }
                continue;
            }
            if !e.g.written.iter().any(|f| f.class == TargetClass::Area) {
                continue;
            }
            match hcr_loader::object_values(view, ObjectId(oi as u32), e.g.addr, tables, base) {
                Ok(v) => rebase.push((g, v)),
                Err(err) => {
                    fail = Some(err);
                    break;
                }
            }
        }
        // Initialise new globals: initial bytes, then their pointer fields.
        if fail.is_none() {
            for (oi, g, _) in &mut new_globals {
                let o = &m.objects[*oi];
                match hcr_loader::object_values(view, ObjectId(*oi as u32), g.addr, tables, base) {
                    Ok(values) if g.tls => {
                        crate::tls::init(g.addr, &initial_bytes(view, o, &values))
                    }
                    Ok(values) => {
                        // SAFETY: `g.addr` is a fresh heap allocation of
                        // `o.size` bytes, not yet visible to any code.
                        let dest = unsafe {
                            std::slice::from_raw_parts_mut(g.addr as *mut u8, o.size as usize)
                        };
                        if let Some(off) = o.init {
                            let off = off as usize;
                            dest.copy_from_slice(&view.init[off..off + o.size as usize]);
                        }
                        for f in &values {
                            hcr_loader::write_value(dest, f.offset as usize, f.kind, f.value);
                        }
                        g.written = values;
                    }
                    Err(err) => {
                        fail = Some(err);
                        break;
                    }
                }
            }
        }
        if let Some(e) = fail {
            // SAFETY: the area was never published.
            unsafe { hcr_loader::unload_area(&mut self.window, area) };
            free_new(&mut self.heap, &new_globals);
            return Err(e.into());
        }
        Ok((area, new_globals, rebase))
    }

    /// Deletes the handlers of `modules`.
    pub fn delete_handlers(&mut self, modules: &std::collections::HashSet<String>) {
        self.handlers.retain(|h| !modules.contains(&h.module));
    }

    /// Makes the prepared image live. Returns what to run next.
    pub fn commit(&mut self, p: Prepared) -> Followups {
        let Prepared {
            manifest,
            area,
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
        let base = area.base as u64;
        // Crash reports name this image's functions from now on.
        let generation = self.generation + u32::from(self.current.is_some());
        crate::crash::publish(crate::crash::Table::new(
            m,
            base,
            generation,
            debug.as_ref().and_then(crash_lines),
        ));
        crate::tls::publish_staged();
        let exports_changed =
            (new_trampolines.is_some() || !new_globals.is_empty()) && may_load_plugins(m);
        // New trampolines join the registry.
        if let Some(batch) = new_trampolines {
            let first = self.functions.len() as u32;
            for t in fn_tid
                .iter_mut()
                .filter(|t| **t != NONE && **t & PENDING != 0)
            {
                *t = first + (*t & !PENDING);
            }
            // One shared name per module, one allocation per function.
            let module_names: Vec<Arc<str>> = m
                .modules
                .iter()
                .map(|md| Arc::from(m.str(md.name)))
                .collect();
            let empty: Arc<str> = Arc::from("");
            let mut keys = vec![(empty.clone(), empty); batch.trampolines.len()];
            for (fi, &t) in fn_tid.iter().enumerate() {
                if t != NONE && t >= first {
                    let f = &m.functions[fi];
                    keys[(t - first) as usize] = (
                        module_names[f.module.0 as usize].clone(),
                        Arc::from(m.str(f.name)),
                    );
                }
            }
            self.owner_of_trampoline.reserve(keys.len());
            self.functions.reserve(keys.len());
            for (i, ((module, name), tramp)) in
                keys.into_iter().zip(batch.trampolines.iter()).enumerate()
            {
                let tid = first + i as u32;
                index_put(&mut self.fn_index, &module, &name, tid);
                self.owner_of_trampoline.insert(tramp.code, tid);
                self.functions.push(FnEntry {
                    module,
                    name,
                    tramp: *tramp,
                    removed_stub: None,
                });
            }
            self.batches.push(batch);
        }
        // Retarget every function of the new image (one atomic store each).
        let mut live = vec![false; self.functions.len()];
        for (fi, &t) in fn_tid.iter().enumerate() {
            if t == NONE {
                continue;
            }
            let e = &mut self.functions[t as usize];
            trampoline::store_slot(e.tramp.slot, base + u64::from(m.functions[fi].offset));
            e.removed_stub = None;
            live[t as usize] = true;
        }
        // Functions of changed and removed modules that are gone get a stub
        // that says so.
        let touched_old: HashSet<&str> = diff
            .changed
            .iter()
            .chain(&diff.removed)
            .map(String::as_str)
            .collect();
        let mut gone: Vec<u32> = Vec::new();
        if let Some(c) = &self.current {
            for md in loaded_among(&c.manifest, &touched_old) {
                for fi in md.functions.range() {
                    let t = c.fn_tid[fi];
                    if t != NONE
                        && !live[t as usize]
                        && self.functions[t as usize].removed_stub.is_none()
                    {
                        gone.push(t);
                    }
                }
            }
        }
        if !gone.is_empty() {
            let names: Vec<String> = gone
                .iter()
                .map(|&t| {
                    format!(
                        "{}:{}",
                        self.functions[t as usize].module, self.functions[t as usize].name
                    )
                })
                .collect();
            match trampoline::make_removed_stubs(&mut self.window, &names) {
                Ok((chunk, addrs)) => {
                    for (&t, a) in gone.iter().zip(addrs) {
                        let e = &mut self.functions[t as usize];
                        trampoline::store_slot(e.tramp.slot, a);
                        e.removed_stub = Some(a);
                    }
                    self.stubs.push(chunk);
                }
                Err(e) => warn(format_args!("cannot make removed-function stubs: {e}")),
            }
        }
        // Globals kept under a new identity are found by it from now on.
        for w in &identities.warnings {
            warn(format_args!("{w}"));
        }
        for (g, key) in identities.rekey {
            if let Some(e) = self.globals[g as usize].as_mut() {
                index_remove(&mut self.global_index, &e.module, &e.name);
                e.name = Arc::from(key.as_str());
                index_put(&mut self.global_index, &e.module, &e.name, g);
            }
        }
        // Globals: new ones join (replacing resized ones, with a warning).
        if self.current.is_some() {
            let fresh = new_globals.iter().map(|g| (g.0, g.1.addr, g.1.tls, g.2));
            crate::nim::note_new_globals(m, &diff.added, fresh);
        }
        for (oi, g, resized) in new_globals {
            let o = &m.objects[oi];
            let module = m.module_name(o.module);
            let oname = m.object_key(o);
            if resized {
                if let Some(old) = index_get(&self.global_index, module, oname) {
                    if let Some(e) = self.globals[old as usize].take() {
                        warn(format_args!(
                            "{} {}:{} changed size ({} → {} bytes); it starts again from its initialiser",
                            if g.tls { "thread-local variable" } else { "global" },
                            module, oname, e.g.size, g.size
                        ));
                        self.heap.free_global(&e.g);
                    }
                }
            } else if let Some(old) = index_get(&self.global_index, module, oname) {
                // A global of a module imported again: the old storage goes.
                if let Some(e) = self.globals[old as usize].take() {
                    self.heap.free_global(&e.g);
                }
            }
            let gid = self.globals.len() as u32;
            let (module, name): (Arc<str>, Arc<str>) = (Arc::from(module), Arc::from(oname));
            index_put(&mut self.global_index, &module, &name, gid);
            self.globals.push(Some(GlobalEntry { module, name, g }));
            obj_gid[oi] = gid;
        }
        // Globals of changed and removed modules that are gone are freed.
        let mut keep = vec![false; self.globals.len()];
        for &g in obj_gid.iter().filter(|&&g| g != NONE) {
            keep[g as usize] = true;
        }
        if let Some(c) = &self.current {
            for md in loaded_among(&c.manifest, &touched_old) {
                for oi in md.objects.range() {
                    let g = c.obj_gid[oi];
                    if g == NONE || keep[g as usize] {
                        continue;
                    }
                    if let Some(e) = self.globals[g as usize].take() {
                        index_remove(&mut self.global_index, &e.module, &e.name);
                        self.heap.free_global(&e.g);
                    }
                }
            }
        }
        // Re-base pointer fields of kept globals: a field that still holds
        // what the previous load wrote, pointing into the old image at bytes
        // the new image holds unchanged (a string literal, a constant table),
        // follows them into the new image so the old one can be freed. A
        // field the program changed, or whose initialiser now names something
        // else, is left alone: changing an initialiser does nothing to a live
        // global. Permanent addresses (functions, globals, host) never move.
        let old_area = self.current.as_ref().map(|c| &c.area);
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
                    && old_area.is_some_and(|a| same_bytes(a, o.value, &area, f.value));
                if follows {
                    write_field(g.addr, g.size, f);
                    written.push(f);
                } else {
                    written.push(*o);
                }
            }
            g.written = written;
        }
        // Entry points to run.
        let order = m.init_order();
        let name = |i: ModuleId| m.module_name(i).to_string();
        let added_modules: HashSet<&str> = diff.added.iter().map(String::as_str).collect();
        let touched: HashSet<&str> = diff
            .changed
            .iter()
            .chain(&diff.added)
            .map(String::as_str)
            .collect();
        let mut ctors = Vec::new();
        let mut on_reload = Vec::new();
        let (mut nim_dat, mut nim_init) = (Vec::new(), Vec::new());
        let reload = self.current.is_some();
        for &i in &order {
            let md = &m.modules[i.0 as usize];
            let added = added_modules.contains(m.str(md.name));
            // A Nim module's first load is Nim's init (see `nim`).
            let nim = crate::nim::is_nim_module(m.str(md.name));
            if added {
                ctors.extend(md.ctors.iter().map(|&o| (name(i), base + u64::from(o))));
            }
            if nim && reload && touched.contains(m.str(md.name)) {
                let (dat, init) = crate::nim::init_functions(m, md, added);
                nim_dat.extend(dat.map(|o| (name(i), base + u64::from(o))));
                nim_init.extend(init.map(|o| (name(i), base + u64::from(o))));
            }
            if touched.contains(m.str(md.name)) && !(nim && added) {
                on_reload.extend(md.on_reload.iter().map(|&o| (name(i), base + u64::from(o))));
            }
        }
        ctors.extend(nim_dat);
        ctors.extend(nim_init);
        if let Some(old) = self.current.take() {
            self.retired.push(Retired {
                image: old,
                generation: self.generation,
                at: std::time::Instant::now(),
            });
        }
        self.current = Some(Current {
            manifest,
            area,
            stat,
            fn_tid,
            obj_gid,
        });
        self.disk = DiskCache::default();
        if crate::gdb_jit::wanted() {
            self.register_with_debuggers(debug.as_ref());
        }
        if self.perf_map {
            self.write_perf_map(generation);
        }
        Followups {
            ctors,
            on_reload,
            exports: exports_changed.then(|| self.exports()),
        }
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
            if !f.global || t == NONE || !seen.insert(m.str(f.name)) {
                continue;
            }
            let e = &self.functions[t as usize];
            out.push(hcr_loader::exports::Export {
                name: m.str(f.name).to_string(),
                addr: e.tramp.code,
                size: u64::from(f.size),
                func: true,
            });
        }
        for (oi, o) in m.objects.iter().enumerate() {
            let g = c.obj_gid[oi];
            if !o.global || g == NONE || !seen.insert(m.str(o.name)) {
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

    /// Frees retired images that no code can run in any more: ones retired
    /// at least [`KEEP_RELOADS`] reloads and [`KEEP_TIME`] ago (threads
    /// that entered them before the swap have returned), into which no word
    /// of the calling thread's stack points (a conservative scan: it finds
    /// every return address), and into which no persistent global points.
    pub fn reclaim(&mut self) {
        let latest = self.generation;
        let due =
            |r: &Retired| r.generation + KEEP_RELOADS <= latest && r.at.elapsed() >= KEEP_TIME;
        if !self.retired.iter().any(due) {
            return; // nothing old enough: skip the stack walk
        }
        let Some(stack) = crate::ffi::stack_words() else {
            return; // the stack cannot be scanned: keep every old image
        };
        let words: Vec<u64> = self
            .globals
            .iter()
            .flatten()
            .map(|e| &e.g)
            .filter(|g| !g.tls)
            .flat_map(|g| {
                let n = (g.size / 8) as usize;
                // SAFETY: live global storage of at least n*8 bytes; read
                // unaligned since objects may be less than 8-aligned.
                (0..n).map(move |i| unsafe {
                    std::ptr::read_unaligned((g.addr as *const u64).add(i))
                })
            })
            .collect();
        let mut keep = Vec::new();
        for r in std::mem::take(&mut self.retired) {
            let in_use = !due(&r)
                || stack.iter().any(|&a| r.image.area.contains(a))
                || words.iter().any(|&w| r.image.area.contains(w as usize))
                || crate::tls::any_word(|w| r.image.area.contains(w as usize));
            if in_use {
                keep.push(r);
            } else {
                self.jit.remove(r.image.area.base);
                crate::crash::withdraw(r.image.area.base as u64);
                // SAFETY: see the rule above and ARCHITECTURE.md ("When an
                // old image is freed").
                unsafe { hcr_loader::unload_area(&mut self.window, r.image.area) };
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
        if let Some(&t) = self.owner_of_trampoline.get(&func) {
            return Some(self.functions[t as usize].module.to_string());
        }
        if let Some(c) = &self.current {
            if c.area.contains(func as usize) {
                let off = func - c.area.base as u64;
                if let Some(f) = c.manifest.functions.iter().find(|f| {
                    u64::from(f.offset) <= off
                        && off < u64::from(f.offset) + u64::from(f.size.max(1))
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
        let g = index_get(&self.global_index, module, name)?;
        self.globals[g as usize]
            .as_ref()
            .map(|e| (e.g.addr, e.g.size))
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
                    .map(|(p, &i)| (m.module_name(i).to_string(), p))
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
        let e = &self.functions[index_get(&self.fn_index, module, name)? as usize];
        e.removed_stub.is_none().then_some(e.tramp.code)
    }

    pub fn get_global(&self, module: &str, name: &str) -> Option<u64> {
        let g = index_get(&self.global_index, module, name)?;
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

    /// Root `main`'s permanent address.
    pub fn main_address(&self) -> Option<u64> {
        let c = self.current.as_ref()?;
        let root = c.manifest.module_name(c.manifest.root);
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
        // C++ destructors registered with __cxa_atexit by image code run
        // now, while the images are still mapped.
        if let Some(f) = hcr_loader::host_symbol(c"__cxa_finalize") {
            // SAFETY: `void __cxa_finalize(void *)` of libc; the handle is the
            // `__dso_handle` every image was given.
            let f: extern "C" fn(*mut std::ffi::c_void) =
                unsafe { std::mem::transmute(f as usize) };
            f(self.dso_handle as *mut std::ffi::c_void);
        }
        self.jit.clear();
        self.globals.clear();
        self.global_index.clear();
        // SAFETY: shutdown is the last use of the runtime; the caller (hcr_shutdown)
        // documents that no image code may run afterwards.
        unsafe { self.heap.release(&mut self.window) };
        if let Some(c) = self.current.take() {
            crate::crash::withdraw(c.area.base as u64);
            // SAFETY: as above.
            unsafe { hcr_loader::unload_area(&mut self.window, c.area) };
        }
        for r in self.retired.drain(..) {
            crate::crash::withdraw(r.image.area.base as u64);
            // SAFETY: as above.
            unsafe { hcr_loader::unload_area(&mut self.window, r.image.area) };
        }
        self.handlers.clear();
    }

    /// After a crash in code of generation `crashed` inside a crash guard:
    /// when that is the live image and a previous one is still mapped,
    /// makes the previous image live again (every permanent address runs
    /// its code; functions it lacks get the removed-function stub; globals
    /// keep their values). The crashed image file is not loaded again
    /// until it changes on disk. Returns the generation now running.
    pub fn roll_back(&mut self, crashed: u32) -> Option<u32> {
        if crashed != self.generation || self.generation == 0 {
            return None;
        }
        let pos = self
            .retired
            .iter()
            .rposition(|r| r.generation + 1 == crashed)?;
        let prev = self.retired.remove(pos);
        let crashed_image = self.current.take()?;
        let base = prev.image.area.base as u64;
        let m = &prev.image.manifest;
        let mut live = vec![false; self.functions.len()];
        for (fi, &t) in prev.image.fn_tid.iter().enumerate() {
            if t == NONE || t as usize >= self.functions.len() {
                continue;
            }
            let e = &mut self.functions[t as usize];
            trampoline::store_slot(e.tramp.slot, base + u64::from(m.functions[fi].offset));
            e.removed_stub = None;
            live[t as usize] = true;
        }
        let gone: Vec<u32> = crashed_image
            .fn_tid
            .iter()
            .copied()
            .filter(|&t| t != NONE && !live[t as usize])
            .collect();
        if !gone.is_empty() {
            let names: Vec<String> = gone
                .iter()
                .map(|&t| {
                    let e = &self.functions[t as usize];
                    format!("{}:{}", e.module, e.name)
                })
                .collect();
            match trampoline::make_removed_stubs(&mut self.window, &names) {
                Ok((chunk, addrs)) => {
                    for (&t, a) in gone.iter().zip(addrs) {
                        let e = &mut self.functions[t as usize];
                        trampoline::store_slot(e.tramp.slot, a);
                        e.removed_stub = Some(a);
                    }
                    self.stubs.push(chunk);
                }
                Err(e) => warn(format_args!("cannot make removed-function stubs: {e}")),
            }
        }
        let stat = crashed_image.stat;
        self.retired.push(Retired {
            image: crashed_image,
            generation: crashed,
            at: std::time::Instant::now(),
        });
        let mut restored = prev.image;
        // The crashed file counts as loaded: nothing to reload until the
        // image on disk changes.
        restored.stat = stat;
        self.current = Some(restored);
        self.disk = DiskCache::default();
        Some(prev.generation)
    }

    /// Appends the live image's functions, every trampoline and every
    /// removed-function stub to `/tmp/perf-PID.map`.
    fn write_perf_map(&self, generation: u32) {
        use crate::perf_map::line;
        let Some(c) = self.current.as_ref() else {
            return;
        };
        let m = &c.manifest;
        let base = c.area.base as u64;
        let mut out = String::new();
        for f in &m.functions {
            if m.modules[f.module.0 as usize].reachable && f.size > 0 {
                line(
                    &mut out,
                    base + u64::from(f.offset),
                    u64::from(f.size),
                    format_args!(
                        "{}:{} [hcr generation {generation}]",
                        m.module_name(f.module),
                        m.str(f.name)
                    ),
                );
            }
        }
        for e in &self.functions {
            line(
                &mut out,
                e.tramp.code,
                trampoline::TRAMPOLINE_SIZE as u64,
                format_args!("{}:{} [hcr trampoline]", e.module, e.name),
            );
            if let Some(a) = e.removed_stub {
                line(
                    &mut out,
                    a,
                    trampoline::STUB_SIZE as u64,
                    format_args!("{}:{} [hcr removed-function stub]", e.module, e.name),
                );
            }
        }
        crate::perf_map::append(&out);
    }

    /// Registers the live image with debuggers (the GDB JIT interface).
    fn register_with_debuggers(&mut self, debug: Option<&crate::gdb_jit::DebugSections>) {
        let Some(c) = self.current.as_ref() else {
            return;
        };
        let objects: Vec<u64> = c
            .obj_gid
            .iter()
            .map(|&g| {
                self.globals
                    .get(g as usize)
                    .and_then(|e| e.as_ref())
                    .map_or(0, |e| e.g.addr)
            })
            .collect();
        let eh = c.manifest.layout.eh_frame;
        let eh_frame = if eh.is_empty() || eh.end as usize > c.area.len() {
            &[][..]
        } else {
            // SAFETY: the span lies inside the live area (checked above),
            // which is mapped readable and no longer written.
            unsafe {
                std::slice::from_raw_parts(
                    (c.area.base + eh.start as usize) as *const u8,
                    eh.len() as usize,
                )
            }
        };
        let object = crate::gdb_jit::build_object(&crate::gdb_jit::ImageDesc {
            manifest: &c.manifest,
            base: c.area.base as u64,
            eh_frame,
            objects: &objects,
            debug,
        });
        let base = c.area.base;
        self.jit.add(base, object);
    }

    /// Statistics for tests and benchmarks.
    pub fn stats(&self) -> RuntimeStats {
        RuntimeStats {
            retired_images: self.retired.len(),
            globals: self.globals.iter().flatten().count(),
            global_bytes: self.heap.used,
            functions: self.functions.len(),
            window_free: self.window.free_bytes(),
        }
    }
}

/// Where the line table of an image lies, for crash reports.
fn crash_lines(d: &crate::gdb_jit::DebugSections) -> Option<crate::crash::LineSource> {
    Some(crate::crash::LineSource {
        line: d.find(".debug_line")?,
        line_str: d.find(".debug_line_str"),
        str_: d.find(".debug_str"),
        file: d.file.try_clone().ok()?,
    })
}

/// Writes a warning to stderr; never fails (a closed stderr must not stop a
/// commit half-way).
pub(crate) fn warn(msg: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "hcr: warning: {msg}");
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

/// A thread-local variable's initial bytes with its pointer fields (a TLS
/// variable's fields are never re-based: each thread's copy is its own).
fn initial_bytes(view: &ImageView<'_>, o: &hcr_image::Object, values: &[FieldValue]) -> Vec<u8> {
    let mut b = vec![0u8; o.size as usize];
    if let Some(off) = o.init {
        let off = off as usize;
        b.copy_from_slice(&view.init[off..off + o.size as usize]);
    }
    for f in values {
        hcr_loader::write_value(&mut b, f.offset as usize, f.kind, f.value);
    }
    b
}
