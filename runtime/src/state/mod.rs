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
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hcr_image::{ImageView, Manifest, ModuleId, ObjectId, TargetClass};
use hcr_loader::{FieldValue, LoadedArea, Placement, Tables, Window};

use crate::globals::{Global, Heap};
use crate::image_file::{ImageFile, Scratch};
use crate::trampoline::{self, Batch, Trampoline};
use crate::Error;

mod ahead;
mod commit;
mod functions;
mod observe;
mod old_calls;
mod plan;
mod prepare;
mod reclaim;
mod registry;
mod segments;

use self::{
    ahead::Ahead,
    functions::{Functions, Naming},
    observe::*,
    plan::*,
    registry::*,
};
pub use plan::plan_reload;

pub use crate::image_file::FileStat;
pub(crate) use crate::warn::warn;

/// Where a handler registration comes from.
#[derive(Clone, Copy, Debug)]
pub enum Caller {
    /// An address of the registering module's code (or its permanent
    /// address): `hcr.h`'s macros pass one of the module's functions.
    In(u64),
    /// The return address of the registration call.
    Returns(u64),
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
    /// The loaded manifest's indices of the changed and removed modules.
    pub old_touched: Vec<ModuleId>,
}

impl Diff {
    /// Modules the reload touches: changed, added and removed.
    pub fn count(&self) -> usize {
        self.changed.len() + self.added.len() + self.removed.len()
    }
    /// Modules reloaded, what `hcr_perform_code_reload` returns: those whose
    /// code the reload loads, changed or new (removed ones are unloaded);
    /// at least 1 when the reload touches any module.
    pub fn reloaded(&self) -> usize {
        let loaded = self.changed.len() + self.added.len();
        loaded.max(usize::from(self.count() > 0))
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

/// Module segments placed together by one load, shared by every image
/// whose modules run in them (a reload keeps an unchanged module's segment
/// where it is).
pub struct Area {
    loaded: LoadedArea,
}

/// Registry indices of a manifest's functions or objects, by global index:
/// shared by the images of successive reloads while no index changes (a
/// reload that changes code only copies nothing), copied by the first write
/// that changes one ([`store_ids`], [`fill_ids`], `Arc::make_mut`).
pub(super) type Ids = Arc<Vec<u32>>;

// The indices marked in `flags` (per module: loaded, decoded), in order:
// the loops of a reload look only at those modules, so the list's shared
// groups are not copied for the others.
pub(super) use hcr_loader::marked;

/// Writes `vals` at `ids[at..]`; `ids` is copied first (when shared) only
/// if a value differs.
pub(super) fn store_ids(ids: &mut Ids, at: usize, vals: &[u32]) {
    let end = at + vals.len();
    if ids.get(at..end) != Some(vals) {
        Arc::make_mut(ids)[at..end].copy_from_slice(vals);
    }
}

/// Sets `ids[r]` to `v`; `ids` is copied first (when shared) only if a
/// value differs.
pub(super) fn fill_ids(ids: &mut Ids, r: std::ops::Range<usize>, v: u32) {
    if ids[r.clone()].iter().any(|&x| x != v) {
        Arc::make_mut(ids)[r].fill(v);
    }
}

/// The image whose code is live.
pub struct Current {
    pub manifest: Manifest,
    pub stat: FileStat,
    /// Registry index of each manifest function (`NONE` when unreachable).
    fn_tid: Ids,
    /// Registry index of each manifest object (`NONE` when unreachable).
    obj_gid: Ids,
    /// Where each module's segment runs.
    pub place: Placement,
    /// The area holding each module's segment.
    areas: ModuleAreas,
    /// Reachable modules in initialisation order.
    pub order: Vec<ModuleId>,
    /// Position in `order` of each module that had reload handlers when
    /// this image was prepared: handlers run in that order, and a reload
    /// looks up only these, not every module's name.
    pub handler_ranks: HashMap<String, usize>,
}

/// The areas an image runs in, each once, and which one holds each
/// module's segment.
#[derive(Default)]
pub struct ModuleAreas {
    list: Vec<Arc<Area>>,
    /// Per module: index in `list`, or `NONE` (not loaded).
    of: Vec<u32>,
}

impl ModuleAreas {
    /// No area for any of `n` modules yet.
    fn new(n: usize) -> Self {
        ModuleAreas {
            list: Vec::new(),
            of: vec![NONE; n],
        }
    }
    /// The area holding module `mi`'s segment.
    #[inline]
    fn get(&self, mi: usize) -> Option<&Arc<Area>> {
        self.list.get(*self.of.get(mi)? as usize)
    }
    /// Each area, once.
    fn distinct(&self) -> &[Arc<Area>] {
        &self.list
    }
    /// The area holding `addr`.
    fn find(&self, addr: usize) -> Option<&LoadedArea> {
        self.list
            .iter()
            .map(|a| &a.loaded)
            .find(|a| a.contains(addr))
    }
    /// Module `mi` runs in `area` (which joins the list once).
    fn put(&mut self, mi: usize, area: &Arc<Area>) {
        let k = match self.list.iter().rposition(|a| Arc::ptr_eq(a, area)) {
            Some(k) => k,
            None => {
                self.list.push(area.clone());
                self.list.len() - 1
            }
        };
        self.of[mi] = k as u32;
    }
}

/// Builds the [`ModuleAreas`] of a new image from the live one's: each old
/// area is looked up once, not once per module.
struct AreasFrom<'o> {
    new: ModuleAreas,
    old: &'o ModuleAreas,
    /// Old index → new index (`NONE`: not taken yet).
    remap: Vec<u32>,
}

impl<'o> AreasFrom<'o> {
    fn new(n: usize, old: &'o ModuleAreas) -> Self {
        AreasFrom {
            new: ModuleAreas::new(n),
            old,
            remap: vec![NONE; old.list.len()],
        }
    }
    /// Module `mi` keeps the area old module `omi` runs in.
    #[inline]
    fn keep(&mut self, mi: usize, omi: usize) {
        let Some(&j) = self.old.of.get(omi).filter(|&&j| j != NONE) else {
            return;
        };
        let j = j as usize;
        if self.remap[j] == NONE {
            self.remap[j] = self.new.list.len() as u32;
            self.new.list.push(self.old.list[j].clone());
        }
        self.new.of[mi] = self.remap[j];
    }
}

/// Where the permanent address of `f`, whose code lies at `code`, jumps:
/// the code, or for an indirect function what its resolver returns (as
/// the dynamic loader does for `R_X86_64_IRELATIVE`, once per load).
pub(super) fn jump_target(f: &hcr_image::Function, code: u64) -> u64 {
    if !f.indirect {
        return code;
    }
    // SAFETY: `code` is the entry of the indirect function's resolver in a
    // loaded, relocated, executable area (areas are made read+execute
    // before any trampoline is pointed into them). On x86-64 a resolver
    // (`__attribute__((ifunc))`, gcc's `target_clones`) takes no arguments
    // and returns the implementation's address.
    let resolve: extern "C" fn() -> u64 = unsafe { std::mem::transmute(code as usize) };
    resolve()
}

impl Current {
    /// Run-time address of function `fi`.
    fn func_addr(&self, fi: usize) -> u64 {
        let f = &self.manifest.functions[fi];
        let off = self.manifest.area_offset(f.module, f.offset);
        self.place.vbase[f.module.0 as usize].wrapping_add(u64::from(off))
    }
    /// Where the non-empty segments of `modules` (of those loaded) start.
    fn segment_starts(&self, modules: &[ModuleId]) -> Vec<u64> {
        modules
            .iter()
            .map(|i| i.0 as usize)
            .filter(|&mi| self.areas.get(mi).is_some())
            .filter(|&mi| {
                self.manifest
                    .modules
                    .get(mi)
                    .is_some_and(|md| !md.seg.is_empty())
            })
            .map(|mi| {
                self.place.vbase[mi].wrapping_add(u64::from(self.manifest.modules[mi].seg.start))
            })
            .collect()
    }
    /// True when `addr` lies in one of this image's areas.
    fn contains(&self, addr: usize) -> bool {
        self.areas.find(addr).is_some()
    }
    /// Each area this image runs code in, once.
    fn distinct_areas(&self) -> &[Arc<Area>] {
        self.areas.distinct()
    }
}

/// What a reload did, for tests and benchmarks: work that should follow
/// what changed, not the size of the program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReloadWork {
    /// Module records decoded (the others are the loaded modules' records,
    /// shared).
    pub records_decoded: usize,
    /// Manifest blocks decoded (the others are shared with the previous
    /// manifest).
    pub blocks_decoded: usize,
    /// Modules whose segments were read, verified and relocated.
    pub modules_loaded: usize,
    /// Modules whose relocated segments were kept where they were.
    pub modules_kept: usize,
    /// Bytes of segments read from the image and relocated.
    pub bytes_relocated: u64,
    /// Fixups applied to those segments.
    pub fixups_applied: u64,
    /// Permanent addresses retargeted.
    pub slots_retargeted: usize,
    /// Direct branches of replaced code to functions of its own module,
    /// pointed at their permanent addresses (`state/old_calls.rs`).
    pub old_calls_redirected: usize,
    /// Pieces the segments were read in (one `pread` each, shared with the
    /// helper thread when there are enough of them).
    pub pieces_read: usize,
    /// The reload was prepared by the watcher thread when the image
    /// changed, before the program asked for it: the program's own call
    /// only checked it was still current and committed it.
    pub prepared_ahead: bool,
}

const NONE: u32 = u32::MAX;
/// Marks an index into `Prepared::new_*` rather than the registry.
const PENDING: u32 = 1 << 31;

/// The index into `Prepared::new_*` that id `t` marks, if it is pending.
fn pending_index(t: u32) -> Option<u32> {
    (t != NONE && t & PENDING != 0).then_some(t & !PENDING)
}

/// A new image, ready to commit.
pub struct Prepared {
    manifest: Manifest,
    /// Its reachable modules in initialisation order.
    order: Vec<ModuleId>,
    /// See [`Current::handler_ranks`].
    handler_ranks: HashMap<String, usize>,
    /// The area this load placed segments in (none when it only dropped
    /// modules).
    area: Option<Arc<Area>>,
    place: Placement,
    areas: ModuleAreas,
    /// Modules whose segments this load placed, listed by index and in
    /// initialisation order (the commit looks at these, not at a flag per
    /// module).
    loaded_list: Vec<usize>,
    loaded_in_order: Vec<ModuleId>,
    work: ReloadWork,
    stat: FileStat,
    diff: Diff,
    /// Registry index (or `PENDING | i`) of each manifest function.
    fn_tid: Ids,
    /// Registry index (or `PENDING | i`) of each manifest object.
    obj_gid: Ids,
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

/// A persistent global.
struct GlobalEntry {
    module: Arc<str>,
    name: Arc<str>,
    g: Global,
}

/// `module → name → index`, looked up with `&str` (no allocation); the
/// names are shared with the registry entries (one allocation per name).
type Index = HashMap<Arc<str>, ModuleIndex>;

/// One module's part of an [`Index`]: `name → index`.
type ModuleIndex = HashMap<Arc<str>, u32>;

/// An [`Index`] built when first needed ([`State::global_index`]).
type LazyIndex = std::sync::OnceLock<Index>;

pub struct State {
    pub path: PathBuf,
    window: Window,
    heap: Heap,
    functions: Functions,
    batches: Vec<Batch>,
    stubs: Vec<hcr_loader::Chunk>,
    globals: Vec<Option<GlobalEntry>>,
    global_index: LazyIndex,
    /// The globals the latest reload removed or replaced (a size change),
    /// by global index: their storage is freed at the next reload, not at
    /// once, because a crash in the new code rolls back to the previous
    /// image, whose code uses them (`roll_back` brings them back).
    gone_globals: Vec<(u32, GlobalEntry)>,
    /// The globals the latest reload kept under another key, with the key
    /// they had before it: a roll-back gives them their keys back.
    rekeyed: Vec<(u32, Arc<str>)>,
    pub current: Option<Current>,
    retired: Vec<Retired>,
    /// Every mapped area; one no image holds any more is freed by `reclaim`.
    areas: Vec<Arc<Area>>,
    /// Areas no image holds any more, withdrawn from crash reports and
    /// debuggers, that the preparing thread unmaps at its next wake-up.
    dead: Vec<Area>,
    /// What the last reload did.
    pub last_work: ReloadWork,
    /// The loader's address tables, kept between reloads.
    tables: Tables,
    /// Per registry entry: retargeted by the commit in progress (all false
    /// between commits, so a reload sets and clears only its own).
    retargeted: Vec<bool>,
    pub handlers: Vec<Handler>,
    next_seq: u64,
    pub generation: u32,
    /// Reloads whose image went live but that never returned, abandoned by
    /// the crash guard (a constructor or handler they ran crashed): they
    /// number an image generation, but `hcr_generation()` counts only the
    /// reloads that returned.
    pub abandoned_reloads: u32,
    /// Modules the reload in progress touches (changed, added, removed).
    pub in_reload: Option<std::collections::HashSet<String>>,
    /// Module whose top-level code or on-reload block is running.
    pub running_module: Option<String>,
    disk: DiskCache,
    /// The address every image's `__dso_handle` resolves to.
    dso_handle: u64,
    allow_insecure_image: bool,
    /// `Options::export_symbols`.
    export_symbols: bool,
    /// Same-module branches of replaced code that old frames were running
    /// (`old_calls.rs`), kept in step with the functions' existence.
    old_calls: Vec<old_calls::Site>,
    /// Where images are read, kept between reloads.
    scratch: Scratch,
    /// A first load's chunk for its whole load area, allocated (and its
    /// huge pages faulted in) while the manifest is read; taken by the
    /// segments' read, freed at the end of a preparation that did not.
    early_area: Option<hcr_loader::Chunk>,
    /// A first load's hold on the C library's heap top at a huge page
    /// ([`crate::heap_top`]), from the manifest's read to the end of the
    /// commit (or of a preparation that failed).
    heap_top: Option<crate::heap_top::HugeTop>,
    /// A reload prepared by the watcher thread when the image changed
    /// ([`State::prepare_ahead`]), taken by the next reload while the file
    /// and the live image are still the ones it was prepared from.
    ahead: Option<Ahead>,
    /// Counts changes of the live image (commits, rollbacks, shutdown): a
    /// reload prepared against another count is stale.
    live_version: u64,
    /// Whether reloads are prepared ahead ([`Options::prepare_ahead`]).
    prepare_ahead: bool,
    /// Loaded images registered with debuggers.
    jit: crate::gdb_jit::Registry,
    /// Write `/tmp/perf-PID.map`.
    perf_map: bool,
    /// The runtime's own C API by name (set by the C API layer), which
    /// host symbols resolve to first.
    pub runtime_symbol: fn(&str) -> Option<u64>,
}

/// An image replaced by a reload, kept while code may still run in it.
struct Retired {
    image: RetiredImage,
    generation: u32,
    at: std::time::Instant,
}

/// What is kept of a retired image.
enum RetiredImage {
    /// The image as it was live: the latest retired one, to which a crash
    /// guard may roll back.
    Whole(Box<Current>),
    /// Only the areas its code ran in: an older one, which nothing rolls
    /// back to and which is kept only while code may still run in it. Its
    /// manifest and tables go at once, so reloads in quick succession do
    /// not hold a manifest each for the whole grace period.
    Areas(Vec<Arc<Area>>),
}

impl Retired {
    /// The areas the image ran in, each once.
    fn areas(&self) -> &[Arc<Area>] {
        match &self.image {
            RetiredImage::Whole(c) => c.distinct_areas(),
            RetiredImage::Areas(a) => a,
        }
    }

    /// Keeps only the areas (see [`RetiredImage::Areas`]); the rest is
    /// freed off the program's thread when the preparing thread runs.
    /// Its references to the areas are dropped here: held until that
    /// thread wakes, they would keep an area the reclaim finds unused from
    /// being freed.
    fn slim(&mut self) {
        if let RetiredImage::Whole(c) = &self.image {
            let areas = RetiredImage::Areas(c.distinct_areas().to_vec());
            if let RetiredImage::Whole(mut c) = std::mem::replace(&mut self.image, areas) {
                drop(std::mem::take(&mut c.areas));
                crate::watcher::drop_later(c);
            }
        }
    }
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
    /// Prepare a reload on a thread of the runtime's as soon as the image
    /// changes (when the image's directory can be watched), so that the
    /// program's `hcr_perform_code_reload()` only commits it. Default: on,
    /// unless `HCR_PREPARE_AHEAD=0` is in the environment.
    pub prepare_ahead: bool,
    /// Refuse the image ([`Error::NoMain`]) when its root module defines no
    /// `main`, before any module code runs (`hcr run`). Default: off.
    pub require_main: bool,
    /// Make the image's global symbols visible to every shared object the
    /// process loads with `dlopen` (what `-Wl,-E` gives an executable),
    /// whatever the image names. Off, they are made visible only when the
    /// image may load plugins itself (a module names `dlopen`, or the image
    /// names `-l` libraries). Default: `HCR_EXPORT_SYMBOLS=1` in the
    /// environment; a C host's `hcr_init` turns it on unless
    /// `HCR_EXPORT_SYMBOLS=0`: the host is the one that loads plugins.
    pub export_symbols: bool,
}

impl Default for Options {
    fn default() -> Self {
        let env = |name: &str| std::env::var_os(name).is_some_and(|v| v == "1");
        Options {
            window_size: hcr_loader::mem::DEFAULT_WINDOW,
            allow_insecure_image: env("HCR_ALLOW_INSECURE_IMAGE"),
            keep_retired_images: env("HCR_KEEP_RETIRED_IMAGES"),
            perf_map: env("HCR_PERF_MAP"),
            prepare_ahead: std::env::var_os("HCR_PREPARE_AHEAD").is_none_or(|v| v != "0"),
            require_main: false,
            export_symbols: env("HCR_EXPORT_SYMBOLS"),
        }
    }
}

impl State {
    /// The address every image's `__dso_handle` resolves to.
    pub fn dso_handle(&self) -> u64 {
        self.dso_handle
    }

    pub fn new(path: &Path, opts: &Options) -> Result<State, Error> {
        crate::crash::install();
        // (A process limited in address space, `ulimit -v`, may refuse the
        // default reservation: the default then falls back to smaller ones.)
        let mut window = match Window::reserve(opts.window_size) {
            Err(_) if opts.window_size == hcr_loader::mem::DEFAULT_WINDOW => {
                Window::reserve(1 << 30).or_else(|_| Window::reserve(256 << 20))?
            }
            w => w?,
        };
        let mut heap = Heap::default();
        let dso_handle = heap.alloc(&mut window, 8, 8)?;
        Ok(State {
            path: path.to_path_buf(),
            window,
            heap,
            dso_handle,
            allow_insecure_image: opts.allow_insecure_image,
            export_symbols: opts.export_symbols,
            old_calls: Vec::new(),
            scratch: Scratch::default(),
            early_area: None,
            heap_top: None,
            ahead: None,
            live_version: 0,
            prepare_ahead: opts.prepare_ahead,
            jit: crate::gdb_jit::Registry::default(),
            perf_map: opts.perf_map,
            runtime_symbol: |_| None,
            functions: Functions::default(),
            batches: Vec::new(),
            stubs: Vec::new(),
            globals: Vec::new(),
            global_index: LazyIndex::new(),
            gone_globals: Vec::new(),
            rekeyed: Vec::new(),
            current: None,
            retired: Vec::new(),
            areas: Vec::new(),
            dead: Vec::new(),
            last_work: ReloadWork::default(),
            tables: Tables::default(),
            retargeted: Vec::new(),
            handlers: Vec::new(),
            next_seq: 0,
            generation: 0,
            abandoned_reloads: 0,
            in_reload: None,
            running_module: None,
            disk: DiskCache::default(),
        })
    }
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
    /// A reload prepared ahead (the image changed since the last reload)
    /// waits for the program's next `hcr_perform_code_reload()`.
    pub reload_ready: bool,
}
