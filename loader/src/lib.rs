//! The hcr loader: *mechanism* to map an image's load area into a reserved
//! address window, apply its residual fixups and protect it. It knows
//! nothing of reload policy: which addresses functions and globals resolve
//! to is decided by the caller (the runtime) and handed in as [`Tables`].
//!
//! Which API do I want?
//! - [`Window::reserve`] once per process;
//! - [`load_area`] for each image: copy, relocate, check the unwind table,
//!   protect (W^X), register `.eh_frame` for unwinding;
//! - [`object_values`] + [`write_value`] to initialise or re-base writable
//!   objects the runtime keeps in persistent storage;
//! - [`unload_area`] when no code can run in an image any more.
#![deny(missing_docs)]

mod eh_frame;
pub mod exports;
pub mod mem;

use hcr_image::{FixupKind, ImageView, ObjectId, TargetClass};

pub use mem::{Chunk, Prot, Window};

/// Errors of loading.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The image file is unreadable, foreign, torn or corrupt.
    #[error(transparent)]
    Image(#[from] hcr_image::ImageError),
    /// The address window cannot serve the request.
    #[error("{0}")]
    Window(String),
    /// A host symbol the image needs does not exist in this process.
    #[error("module {module}: undefined symbol '{symbol}' (not defined by any module, the runtime or the host process)")]
    Unresolved {
        /// Module referencing the symbol.
        module: String,
        /// Symbol name.
        symbol: String,
    },
    /// A relocation's value does not fit its field.
    #[error("module {module}: {kind:?} relocation to {target} at {place} is out of reach ({} does not fit); the window keeps images, trampolines and globals within ±2 GiB, so this is a host symbol reached PC-relative: compile with -fPIC", signed_hex(*.value))]
    OutOfRange {
        /// Module owning the relocated place.
        module: String,
        /// What the relocation refers to.
        target: String,
        /// Where (image area offset or global+offset).
        place: String,
        /// Kind of fixup.
        kind: FixupKind,
        /// The value that did not fit.
        value: i128,
    },
    /// The image's unwind table would mislead or crash libgcc's unwinder.
    #[error("malformed unwind table (.eh_frame) at image offset {offset:#x}: {what}; the image was written wrong: relink it (and report it if hcr-link wrote it)")]
    EhFrame {
        /// Area offset of the record.
        offset: usize,
        /// What is wrong.
        what: String,
    },
}

/// `-0x10` rather than the 128-bit two's complement.
fn signed_hex(v: i128) -> String {
    if v < 0 {
        format!("-{:#x}", v.unsigned_abs())
    } else {
        format!("{v:#x}")
    }
}

/// Addresses the image's fixups resolve to, indexed like the manifest's
/// tables.
#[derive(Clone, Debug, Default)]
pub struct Tables {
    /// Permanent address of each function.
    pub functions: FunctionTable,
    /// Persistent address of each writable object.
    pub objects: Vec<u64>,
    /// Address of each host symbol.
    pub hosts: Vec<u64>,
}

/// The permanent address of each function of an image, by its index in
/// the manifest: listed one by one, or (a first load's new trampolines,
/// made in the manifest's order) following from the index, so that no
/// table of 25 000 addresses is written and read back.
#[derive(Clone, Debug)]
pub enum FunctionTable {
    /// Function `i` at `addrs[i]` (0: none).
    Listed(Vec<u64>),
    /// Function `i < len` at `base + stride × i` (0 past `len`).
    Strided {
        /// Function 0's address.
        base: u64,
        /// Bytes from one function's address to the next's.
        stride: u64,
        /// Functions in the table.
        len: usize,
    },
}

impl Default for FunctionTable {
    fn default() -> FunctionTable {
        FunctionTable::Listed(Vec::new())
    }
}

impl From<Vec<u64>> for FunctionTable {
    fn from(addrs: Vec<u64>) -> FunctionTable {
        FunctionTable::Listed(addrs)
    }
}

impl FunctionTable {
    /// Function `i`'s address (0 when the table has none).
    #[inline]
    pub fn get(&self, i: usize) -> u64 {
        match self {
            FunctionTable::Listed(v) => v.get(i).copied().unwrap_or(0),
            FunctionTable::Strided { base, stride, len } => match i < *len {
                true => base.wrapping_add(stride.wrapping_mul(i as u64)),
                false => 0,
            },
        }
    }

    /// Makes the table a list of `len` addresses, keeping those it lists
    /// (a strided table's become zeros: for a caller that sets every
    /// entry it will read).
    pub fn make_listed(&mut self, len: usize) {
        let mut v = match std::mem::take(self) {
            FunctionTable::Listed(v) => v,
            FunctionTable::Strided { .. } => Vec::new(),
        };
        v.resize(len, 0);
        *self = FunctionTable::Listed(v);
    }

    /// Sets function `i`'s address in a listed table (a strided table, or
    /// an index past the list, is left as it is).
    pub fn set(&mut self, i: usize, addr: u64) {
        debug_assert!(
            matches!(self, FunctionTable::Listed(_)),
            "a strided function table is set (make_listed first)"
        );
        if let FunctionTable::Listed(v) = self {
            if let Some(e) = v.get_mut(i) {
                *e = addr;
            }
        }
    }
}

/// Where each module's segment runs: module `m`'s segment
/// ([`hcr_image::Module::seg`]) lies at `vbase[m] + seg.start`, so any area
/// offset inside it is at `vbase[m] + offset`. 0 for a module not placed.
/// A whole image loaded in one piece has one `vbase` for every module; a
/// reload that keeps unchanged modules where they are mixes the old places
/// of those with the new places of the others.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// Per module: run-time address of area offset 0 for its segment.
    pub vbase: Vec<u64>,
}

impl Placement {
    /// Every module of `manifest` at `base` (a contiguous load).
    pub fn contiguous(manifest: &hcr_image::Manifest, base: u64) -> Placement {
        Placement {
            vbase: vec![base; manifest.modules.len()],
        }
    }
    /// Run-time address of area offset `off` (0 when its module is not
    /// placed or no module holds it).
    pub fn addr(&self, manifest: &hcr_image::Manifest, off: u32) -> u64 {
        manifest
            .module_at(off)
            .and_then(|m| self.vbase.get(m.0 as usize).copied())
            .filter(|&b| b != 0)
            .map_or(0, |b| b + u64::from(off))
    }
    /// Run-time address of `rel`, an offset from the start of module
    /// `mi`'s segment (wrapping), looked up first in that segment (the
    /// common case, no search).
    pub fn addr_from(&self, manifest: &hcr_image::Manifest, mi: usize, rel: u32) -> u64 {
        match manifest.modules.get(mi) {
            Some(md) if rel < md.seg.len() => self
                .vbase
                .get(mi)
                .copied()
                .unwrap_or(0)
                .wrapping_add(u64::from(md.seg.start + rel)),
            Some(md) => self.addr(manifest, md.seg.start.wrapping_add(rel)),
            None => 0,
        }
    }
}

/// Module segments loaded together into one chunk of the window, relocated.
#[derive(Debug)]
pub struct LoadedArea {
    /// Address of the chunk.
    pub base: usize,
    chunk: Chunk,
    /// The loaded modules' `.eh_frame` tables (their run-time addresses,
    /// then 0), registered with the unwinder as one object.
    eh_frames: Option<Box<[usize]>>,
}

impl LoadedArea {
    /// The unwind tables of the modules loaded here, joined into one table
    /// that claims to lie at `at` (its PC-relative pointers moved so that
    /// it describes the same code from there), with one terminator. For a
    /// debugger, which reads one `.eh_frame` per object.
    pub fn joined_unwind_table(&self, at: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for &t in self
            .eh_frames
            .iter()
            .flat_map(|b| b.iter())
            .filter(|&&t| t != 0)
        {
            let len = eh_frame::table_len(t);
            // SAFETY: `t` is a checked, terminated unwind table inside this
            // area's chunk, mapped readable while the area lives.
            let table = unsafe { std::slice::from_raw_parts(t as *const u8, len) };
            let from = out.len();
            out.extend_from_slice(table);
            let delta = (t as u64).wrapping_sub(at + from as u64) as i64;
            eh_frame::shift_pcrel(&mut out[from..], delta);
        }
        out.extend_from_slice(&[0; 4]);
        out
    }
    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.chunk.len
    }
    /// True when empty (never).
    pub fn is_empty(&self) -> bool {
        self.chunk.len == 0
    }
    /// True when `addr` lies in this area.
    pub fn contains(&self, addr: usize) -> bool {
        addr >= self.chunk.addr && addr < self.chunk.addr + self.chunk.len
    }

    /// The addresses the area occupies, `[start, end)`.
    pub fn range(&self) -> (usize, usize) {
        (self.chunk.addr, self.chunk.addr + self.chunk.len)
    }
}

/// Computes the bits a fixup writes: `S + A`, `S + A - P` or `S + A - B`
/// (`B` the area's base), range-checked for the 32-bit kinds.
pub fn compute(kind: FixupKind, s: u64, a: i64, p: u64, b: u64) -> Result<u64, i128> {
    let sa = i128::from(s) + i128::from(a);
    let v = match kind {
        FixupKind::Abs64 => return Ok(sa as u64),
        FixupKind::AreaRel64 => return Ok((sa - i128::from(b)) as u64),
        FixupKind::Pc64 => return Ok((sa - i128::from(p)) as u64),
        FixupKind::Pc32 => sa - i128::from(p),
        FixupKind::Abs32 => {
            return u32::try_from(sa).map(u64::from).map_err(|_| sa);
        }
        FixupKind::Abs32S => sa,
    };
    i32::try_from(v).map(|x| x as u32 as u64).map_err(|_| v)
}

/// Writes `value` (from [`compute`]) at `off` in `buf`.
///
/// Returns `None` when the field does not fit in `buf`.
pub fn write_value(buf: &mut [u8], off: usize, kind: FixupKind, value: u64) -> Option<()> {
    let w = kind.width();
    let field = buf.get_mut(off..off.checked_add(w)?)?;
    field.copy_from_slice(&value.to_le_bytes()[..w]);
    Some(())
}

/// Reads the field a fixup of `kind` writes.
pub fn read_value(buf: &[u8], off: usize, kind: FixupKind) -> Option<u64> {
    let w = kind.width();
    let field = buf.get(off..off.checked_add(w)?)?;
    let mut b = [0u8; 8];
    b[..w].copy_from_slice(field);
    Some(u64::from_le_bytes(b))
}

fn target_of(
    class: TargetClass,
    target: u32,
    tables: &Tables,
    place: &Placement,
    manifest: &hcr_image::Manifest,
    mi: usize,
) -> u64 {
    let pick = |v: &[u64]| v.get(target as usize).copied().unwrap_or(0);
    match class {
        TargetClass::Area => place.addr_from(manifest, mi, target),
        TargetClass::Function => tables.functions.get(target as usize),
        TargetClass::Object => pick(&tables.objects),
        TargetClass::Host => pick(&tables.hosts),
    }
}

fn describe_target(view: &ImageView<'_>, class: TargetClass, target: u32) -> String {
    let m = &view.manifest;
    match class {
        TargetClass::Area => format!("image offset {target:#x}"),
        TargetClass::Function => m
            .functions
            .get(target as usize)
            .map_or("?".into(), |f| format!("function '{}'", m.str(f.name))),
        TargetClass::Object => m
            .objects
            .get(target as usize)
            .map_or("?".into(), |o| format!("global '{}'", m.str(o.name))),
        TargetClass::Host => m
            .hosts
            .get(target as usize)
            .map_or("?".into(), |h| format!("host symbol '{}'", m.str(h.name))),
    }
}

/// Maps `view`'s load area into `window` in one piece, applies the fixups
/// of the modules marked in `apply` (unreachable modules' code is never
/// run, so their fixups are skipped), checks each module's `.eh_frame`,
/// protects the area and registers the unwind tables.
///
/// # Errors
/// The window is exhausted, a value does not fit or an unwind table is
/// malformed; nothing stays mapped.
pub fn load_area(
    window: &mut Window,
    view: &ImageView<'_>,
    tables: &Tables,
    apply: &[bool],
) -> Result<LoadedArea, LoadError> {
    let chunk = window.alloc(view.manifest.layout.area_size as usize)?;
    // SAFETY: the chunk is committed read-write, exclusively ours (fresh from
    // the window) and `chunk.len` bytes long; `view.area` lies elsewhere.
    let buf = unsafe { std::slice::from_raw_parts_mut(chunk.addr as *mut u8, chunk.len) };
    let n = view.area.len().min(buf.len());
    buf[..n].copy_from_slice(&view.area[..n]);
    let place = Placement::contiguous(&view.manifest, chunk.addr as u64);
    load_segments(window, chunk, view, tables, &place, apply)
}

/// Relocates the segments of the modules marked in `load`, which the caller
/// has read into `chunk` at their places (`place`: module `m`'s segment at
/// `place.vbase[m] + seg.start`, inside the chunk). Fixups resolve through
/// `tables` and, for area offsets, through `place` (so a segment may refer
/// to segments of modules loaded earlier, elsewhere). Then each loaded
/// module's `.eh_frame` is checked, the chunk becomes read+execute (code,
/// read-only data and unwind tables share pages, as in an executable's text
/// segment; no page is ever writable and executable) and the unwind tables
/// are registered. The chunk is freed on error.
///
/// # Errors
/// As [`load_area`]; also a segment placed outside the chunk.
pub fn load_segments(
    window: &mut Window,
    chunk: Chunk,
    view: &ImageView<'_>,
    tables: &Tables,
    place: &Placement,
    load: &[bool],
) -> Result<LoadedArea, LoadError> {
    load_segments_shared(window, chunk, view, tables, place, load, &alone)
}

/// The indices of the set flags, in order. The flags are tested 32 at a
/// time, so a run of clear ones (most modules in a reload of a few) costs
/// one wide test, not a branch each.
pub fn marked(flags: &[bool]) -> impl Iterator<Item = usize> + '_ {
    flags_equal_to(flags, true)
}

/// The indices of the clear flags, in order (as [`marked`]).
pub fn unmarked(flags: &[bool]) -> impl Iterator<Item = usize> + '_ {
    flags_equal_to(flags, false)
}

/// The indices `i` with `flags[i] == want`, runs of 32 tested at once.
fn flags_equal_to(flags: &[bool], want: bool) -> impl Iterator<Item = usize> + '_ {
    const RUN: usize = 32;
    flags
        .chunks(RUN)
        .enumerate()
        .filter(move |(_, run)| run.iter().fold(false, |a, &f| a | (f == want)))
        .flat_map(move |(k, run)| {
            run.iter()
                .enumerate()
                .filter_map(move |(i, &f)| (f == want).then_some(k * RUN + i))
        })
}

pub use hcr_image::shared::{alone, run_shared, Share};

/// Cuts `buf` into one slice per range, the ranges sorted by start and
/// disjoint. `Err(i)`: range `i` overlaps the one before it or runs past
/// the end of `buf`.
pub fn split_disjoint(
    buf: &mut [u8],
    ranges: impl IntoIterator<Item = std::ops::Range<usize>>,
) -> Result<Vec<&mut [u8]>, usize> {
    let mut out = Vec::new();
    let mut rest = buf;
    let mut pos = 0usize;
    for (i, r) in ranges.into_iter().enumerate() {
        let skip = r.start.checked_sub(pos).ok_or(i)?;
        if r.start > r.end || skip.saturating_add(r.len()) > rest.len() {
            return Err(i);
        }
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(skip);
        let (mine, tail) = tail.split_at_mut(r.len());
        out.push(mine);
        rest = tail;
        pos = r.end;
    }
    Ok(out)
}

/// Modules whose fixups are applied by whichever thread `share` lets run,
/// once a load has at least this many fixups.
const SHARE_FIXUPS: usize = 32_768;

/// As [`load_segments`], each module's fixups applied and unwind table
/// checked by whichever thread `share` runs (every module writes only its
/// own segment), when the load is large.
///
/// # Errors
/// As [`load_segments`].
pub fn load_segments_shared(
    window: &mut Window,
    chunk: Chunk,
    view: &ImageView<'_>,
    tables: &Tables,
    place: &Placement,
    load: &[bool],
    share: Share<'_>,
) -> Result<LoadedArea, LoadError> {
    if let Err(e) = fill(&chunk, view, tables, place, load, share) {
        // SAFETY: the chunk was never published; nothing runs in it.
        unsafe { window.free(chunk) };
        return Err(e);
    }
    seal_segments(window, chunk, view, place, load)
}

/// The second half of [`load_segments_shared`], for a caller that applied
/// every loaded module's fixups itself ([`relocate_segment`]): the chunk
/// made read-execute and the modules' unwind tables registered. On an
/// error the chunk is freed.
///
/// # Errors
/// The chunk's protection cannot be changed.
pub fn seal_segments(
    window: &mut Window,
    chunk: Chunk,
    view: &ImageView<'_>,
    place: &Placement,
    load: &[bool],
) -> Result<LoadedArea, LoadError> {
    if let Err(e) = mem::protect_range(chunk.addr, chunk.len, Prot::ReadExecute) {
        // SAFETY: the chunk was never published; nothing runs in it.
        unsafe { window.free(chunk) };
        return Err(e);
    }
    // One registration per load, not per module: libgcc keeps registered
    // objects in a list that deregistering walks, so a table per module
    // would make freeing N modules cost N² steps. `__register_frame_table`
    // takes a null-terminated list of tables, each walked to its own
    // terminator: the tables stay where they are.
    let m = &view.manifest;
    let tables: Vec<usize> = marked(load)
        .filter(|&mi| mi < m.modules.len())
        .map(|mi| (mi, &m.modules[mi]))
        .filter(|(_, md)| md.eh_frame.len() > 4)
        .map(|(mi, md)| place.vbase[mi].wrapping_add(u64::from(md.eh_frame.start)) as usize)
        .chain(std::iter::once(0))
        .collect();
    let eh_frames = (tables.len() > 1)
        .then(|| tables.into_boxed_slice())
        .filter(|t| register_frame_table(t));
    Ok(LoadedArea {
        base: chunk.addr,
        chunk,
        eh_frames,
    })
}

fn fill(
    chunk: &Chunk,
    view: &ImageView<'_>,
    tables: &Tables,
    place: &Placement,
    load: &[bool],
    share: Share<'_>,
) -> Result<(), LoadError> {
    // SAFETY: the chunk is committed read-write, exclusively ours (fresh from
    // the window, not yet published) and `chunk.len` bytes long; no other
    // reference to its bytes is used while this one lives.
    let buf = unsafe { std::slice::from_raw_parts_mut(chunk.addr as *mut u8, chunk.len) };
    let m = &view.manifest;
    let lo = chunk.addr as u64;
    // Each loaded module's segment: `(module, chunk offset)`, checked to lie
    // in the chunk, then in address order, each given its own slice.
    let mut segs: Vec<(usize, usize)> = Vec::new();
    for mi in marked(load).filter(|&mi| mi < m.modules.len()) {
        let md = &m.modules[mi];
        let vbase = place.vbase.get(mi).copied().unwrap_or(0);
        let seg_at = vbase.wrapping_add(u64::from(md.seg.start));
        if vbase == 0 || seg_at < lo || seg_at + u64::from(md.seg.len()) > lo + chunk.len as u64 {
            return Err(LoadError::Window(format!(
                "module {}: segment placed outside its chunk",
                m.str(md.name)
            )));
        }
        segs.push((mi, (seg_at - lo) as usize));
    }
    segs.sort_unstable_by_key(|s| s.1);
    let ranges = segs
        .iter()
        .map(|&(mi, at)| at..at + m.modules[mi].seg.len() as usize);
    let slices = split_disjoint(buf, ranges).map_err(|i| {
        LoadError::Window(format!(
            "module {}: segment overlaps another",
            m.str(m.modules[segs[i].0].name)
        ))
    })?;
    let fixups: usize = segs
        .iter()
        .map(|&(mi, _)| view.module_fixups(mi).len() / hcr_image::FIXUP_SIZE)
        .sum();
    let jobs = segs.iter().map(|s| s.0).zip(slices).collect();
    let results = run_shared(
        jobs,
        if fixups >= SHARE_FIXUPS {
            share
        } else {
            &alone
        },
        |(mi, seg)| fill_module(view, tables, place, mi, seg),
    );
    // The first failure in address order, as one thread would report it.
    for r in results {
        match r {
            Some(r) => r?,
            None => return Err(LoadError::Window("relocating a segment failed".into())),
        }
    }
    Ok(())
}

/// Applies module `mi`'s fixups to its segment's bytes `seg`, which must
/// lie where `place` puts them (a chunk not yet published), and checks its
/// unwind table: one module's part of [`load_segments_shared`], for a
/// caller that relocates each segment as soon as it has read it.
///
/// # Errors
/// `seg` is not module `mi`'s placed segment, or as [`load_segments`].
pub fn relocate_segment(
    view: &ImageView<'_>,
    tables: &Tables,
    place: &Placement,
    mi: usize,
    seg: &mut [u8],
) -> Result<(), LoadError> {
    let m = &view.manifest;
    let md = m
        .modules
        .get(mi)
        .ok_or_else(|| LoadError::Window(format!("module index {mi} out of range")))?;
    let at = place
        .vbase
        .get(mi)
        .map(|&v| v.wrapping_add(u64::from(md.seg.start)));
    if at != Some(seg.as_ptr() as u64) || seg.len() != md.seg.len() as usize {
        return Err(LoadError::Window(format!(
            "module {}: segment placed outside its chunk",
            m.str(md.name)
        )));
    }
    fill_module(view, tables, place, mi, seg)
}

/// Applies module `mi`'s fixups to its segment `buf` (placed at
/// `place.vbase[mi] + seg.start`) and checks its unwind table.
fn fill_module(
    view: &ImageView<'_>,
    tables: &Tables,
    place: &Placement,
    mi: usize,
    buf: &mut [u8],
) -> Result<(), LoadError> {
    let m = &view.manifest;
    let md = &m.modules[mi];
    {
        let vbase = place.vbase[mi];
        let seg_at = vbase.wrapping_add(u64::from(md.seg.start));
        // `buf` is the segment: a fixup's offset is its index.
        let own = md.seg.len();
        // The hot loop: decode in place, the common kinds inline, every
        // write bounds-checked.
        for rec in view.module_fixups(mi).chunks_exact(hcr_image::FIXUP_SIZE) {
            let word = |i: usize| u32::from_le_bytes([rec[i], rec[i + 1], rec[i + 2], rec[i + 3]]);
            let (offset, target, addend) = (word(0), word(4), word(8) as i32);
            let s = match rec[13] {
                0 if target < own => seg_at + u64::from(target),
                0 => place.addr(m, md.seg.start.wrapping_add(target)),
                1 => tables.functions.get(target as usize),
                2 => tables.objects.get(target as usize).copied().unwrap_or(0),
                _ => tables.hosts.get(target as usize).copied().unwrap_or(0),
            };
            let p = seg_at + u64::from(offset);
            // Fixups of a module lie in its own segment.
            if offset >= own {
                return Err(LoadError::Window(format!(
                    "module {}: fixup at {offset:#x} outside its segment",
                    m.str(md.name)
                )));
            }
            let at = offset as usize;
            let fast = match rec[12] {
                2 => i32::try_from(
                    (s as i64)
                        .wrapping_add(i64::from(addend))
                        .wrapping_sub(p as i64),
                )
                .ok()
                .and_then(|v| {
                    buf.get_mut(at..at + 4)
                        .map(|f| f.copy_from_slice(&v.to_le_bytes()))
                }),
                1 => buf.get_mut(at..at + 8).map(|f| {
                    f.copy_from_slice(&s.wrapping_add(addend as i64 as u64).to_le_bytes())
                }),
                _ => None,
            };
            if fast.is_some() {
                continue;
            }
            // Other kinds, and the error paths.
            let (Some(kind), Some(class)) =
                (FixupKind::from_u8(rec[12]), TargetClass::from_u8(rec[13]))
            else {
                continue; // refused when the image was parsed
            };
            if class == TargetClass::Area && s == 0 {
                return Err(LoadError::Window(format!(
                    "module {}: fixup at {:#x} refers to image offset {:#x}, in no loaded module",
                    m.str(md.name),
                    md.seg.start + offset,
                    md.seg.start.wrapping_add(target)
                )));
            }
            let value = compute(kind, s, i64::from(addend), p, seg_at).map_err(|value| {
                LoadError::OutOfRange {
                    module: m.str(md.name).to_string(),
                    target: describe_target(
                        view,
                        class,
                        match class {
                            TargetClass::Area => md.seg.start.wrapping_add(target),
                            _ => target,
                        },
                    ),
                    place: format!("image offset {:#x}", md.seg.start + offset),
                    kind,
                    value,
                }
            })?;
            write_value(buf, at, kind, value).ok_or_else(|| {
                LoadError::Window(format!(
                    "module {}: fixup at {offset:#x} outside its segment",
                    m.str(md.name)
                ))
            })?;
        }
        // The unwind table, relocated, before libgcc may see it.
        if md.eh_frame.len() > 4 {
            let eh = md.eh_frame;
            let frame = eh_frame::Frame {
                addr: vbase + u64::from(eh.start),
                text: vbase + u64::from(md.text.start)..vbase + u64::from(md.text.end),
                terminator: vbase + u64::from(eh.end) - 4,
            };
            let from = eh.start.wrapping_sub(md.seg.start) as usize;
            let table = buf
                .get_mut(from..from + eh.len() as usize)
                .ok_or_else(|| LoadError::Window("unwind table outside its segment".into()))?;
            eh_frame::check(table, &frame).map_err(|e| LoadError::EhFrame {
                offset: eh.start as usize + e.offset,
                what: e.what,
            })?;
        }
    }
    Ok(())
}

/// One pointer field of a writable object and the value a load writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldValue {
    /// Offset inside the object.
    pub offset: u32,
    /// How the value is written.
    pub kind: FixupKind,
    /// What the value points to.
    pub class: TargetClass,
    /// The bits written.
    pub value: u64,
}

/// The values the fixups inside writable object `obj` take when the object
/// lives at `dest`.
///
/// # Errors
/// A value does not fit its field.
pub fn object_values(
    view: &ImageView<'_>,
    obj: ObjectId,
    dest: u64,
    tables: &Tables,
    place: &Placement,
) -> Result<Vec<FieldValue>, LoadError> {
    match view.manifest.objects.get(obj.0 as usize) {
        Some(o) => {
            let fixups = view.object_fixup_table(o.module.0 as usize);
            object_values_of(view, o, fixups, dest, tables, place)
        }
        None => Ok(Vec::new()),
    }
}

/// [`object_values`] of object `o` of `view`'s manifest, whose module's
/// table of object fixups is `fixups` ([`ImageView::object_fixup_table`]).
///
/// # Errors
/// As [`object_values`].
pub fn object_values_of(
    view: &ImageView<'_>,
    o: &hcr_image::Object,
    fixups: hcr_image::Fixups<'_>,
    dest: u64,
    tables: &Tables,
    place: &Placement,
) -> Result<Vec<FieldValue>, LoadError> {
    let module = || {
        view.manifest
            .modules
            .get(o.module.0 as usize)
            .map_or("?", |m| view.manifest.str(m.name))
    };
    fixups
        .iter(o.fixups)
        .map(|fx| {
            let mi = o.module.0 as usize;
            let s = target_of(fx.class, fx.target, tables, place, &view.manifest, mi);
            let p = dest + u64::from(fx.offset);
            // `B` of `AreaRel64`: the start of the object's module's segment.
            let b = place
                .vbase
                .get(mi)
                .copied()
                .unwrap_or(0)
                .wrapping_add(u64::from(view.manifest.area_offset(o.module, 0)));
            compute(fx.kind, s, i64::from(fx.addend), p, b)
                .map(|value| FieldValue {
                    offset: fx.offset,
                    kind: fx.kind,
                    class: fx.class,
                    value,
                })
                .map_err(|value| LoadError::OutOfRange {
                    module: module().to_string(),
                    target: describe_target(view, fx.class, fx.target),
                    place: format!("global '{}'+{:#x}", view.manifest.str(o.name), fx.offset),
                    kind: fx.kind,
                    value,
                })
        })
        .collect()
}

/// Deregisters unwind information and releases the area.
///
/// # Safety
/// No code may run in the area any more and no pointer into it may be used.
pub unsafe fn unload_area(window: &mut Window, area: LoadedArea) {
    if let Some(t) = &area.eh_frames {
        deregister_frames(t.as_ptr() as usize);
    }
    // SAFETY: the caller guarantees the area is dead.
    unsafe { window.free(area.chunk) };
}

type FrameFn = unsafe extern "C" fn(*const u8);

fn frame_fn(name: &std::ffi::CStr) -> Option<FrameFn> {
    let p = host_symbol(name)?;
    // SAFETY: `__register_frame`/`__deregister_frame` of libgcc have this
    // signature.
    Some(unsafe { std::mem::transmute::<usize, FrameFn>(p as usize) })
}

fn register_frame_table(tables: &[usize]) -> bool {
    match frame_fn(c"__register_frame_table") {
        Some(f) => {
            // SAFETY: `tables` is a null-terminated list of relocated,
            // checked, zero-terminated `.eh_frame` tables; the list and the
            // tables stay alive and mapped until `deregister_frames` (the
            // list is owned by the `LoadedArea`, which is dropped only by
            // `unload_area`, after deregistering).
            unsafe { f(tables.as_ptr() as *const u8) };
            true
        }
        None => false,
    }
}

fn deregister_frames(at: usize) {
    if let Some(f) = frame_fn(c"__deregister_frame") {
        // SAFETY: `at` (a table list) was registered by
        // `register_frame_table` and is still alive.
        unsafe { f(at as *const u8) };
    }
}

/// Looks `name` up in the process (`dlsym(RTLD_DEFAULT)`).
pub fn host_symbol(name: &std::ffi::CStr) -> Option<u64> {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name is always
    // safe to call; it only reads the loaded objects' symbol tables.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!p.is_null()).then_some(p as u64)
}

/// The address of `name` at version `version` in the process
/// (`dlvsym(RTLD_DEFAULT)`): for a symbol a library exports only under a
/// non-default version, which [`host_symbol`] does not see.
pub fn host_symbol_version(name: &std::ffi::CStr, version: &std::ffi::CStr) -> Option<u64> {
    // SAFETY: as `host_symbol`, with a NUL-terminated version name too.
    let p = unsafe { libc::dlvsym(libc::RTLD_DEFAULT, name.as_ptr(), version.as_ptr()) };
    (!p.is_null()).then_some(p as u64)
}

/// Makes a shared library's symbols available to [`host_symbol`]
/// (`dlopen` with `RTLD_GLOBAL`); true when it is loaded.
pub fn load_host_library(name: &std::ffi::CStr) -> bool {
    open_library(name).is_ok()
}

/// Loads a shared library (`dlopen` with `RTLD_NOW | RTLD_GLOBAL`: its
/// symbols serve every later lookup and every later `dlopen`), by soname
/// or path. The error is the system loader's own message.
///
/// The library stays loaded for the life of the process, as a `DT_NEEDED`
/// library of an executable does.
pub fn open_library(name: &std::ffi::CStr) -> Result<(), String> {
    // SAFETY: dlopen runs the library's constructors, which is what loading a
    // library the program names (or the C runtime's own libraries) means;
    // dlerror returns a thread-local string valid until the next dl* call,
    // copied at once.
    unsafe {
        let h = libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
        if h.is_null() {
            let e = libc::dlerror();
            return Err(if e.is_null() {
                "unknown error".into()
            } else {
                std::ffi::CStr::from_ptr(e).to_string_lossy().into_owned()
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A strided table answers what the list it stands for would; made a
    /// list again, it starts from zeros (its caller sets what it reads).
    #[test]
    fn a_strided_function_table_answers_as_its_list() {
        let base = 0x7f00_0000_1000u64;
        let mut t = FunctionTable::Strided {
            base,
            stride: 8,
            len: 3,
        };
        let listed = FunctionTable::from(vec![base, base + 8, base + 16]);
        for i in 0..5 {
            assert_eq!(t.get(i), listed.get(i), "function {i}");
        }
        assert_eq!(t.get(3), 0, "past the table");
        t.make_listed(4);
        assert_eq!((0..4).map(|i| t.get(i)).collect::<Vec<_>>(), [0; 4]);
        t.set(2, 42);
        t.set(9, 43);
        assert_eq!(
            (0..5).map(|i| t.get(i)).collect::<Vec<_>>(),
            [0, 0, 42, 0, 0]
        );
        // A list keeps its entries when it grows.
        t.make_listed(6);
        assert_eq!(t.get(2), 42);
        assert_eq!(t.get(5), 0);
    }

    /// `marked` and `unmarked` give exactly the set and the clear flags, in
    /// order, across runs of 32 (all set, all clear, mixed, a short tail).
    #[test]
    fn marked_and_unmarked_flags() {
        for n in [0usize, 1, 31, 32, 33, 64, 100] {
            for pattern in 0..4 {
                let flags: Vec<bool> = (0..n)
                    .map(|i| match pattern {
                        0 => false,
                        1 => true,
                        2 => i % 7 == 3,
                        _ => (32..64).contains(&i) || i == n - 1,
                    })
                    .collect();
                let set: Vec<usize> = (0..n).filter(|&i| flags[i]).collect();
                let clear: Vec<usize> = (0..n).filter(|&i| !flags[i]).collect();
                assert_eq!(marked(&flags).collect::<Vec<_>>(), set, "{n} {pattern}");
                assert_eq!(unmarked(&flags).collect::<Vec<_>>(), clear, "{n} {pattern}");
            }
        }
    }

    #[test]
    fn values_that_do_not_fit_are_errors_not_truncations() {
        let far = 0x7000_0000_0000u64;
        assert!(compute(FixupKind::Pc32, far, -4, 0x1000, 0).is_err());
        assert!(compute(FixupKind::Abs32, 1 << 32, 0, 0, 0).is_err());
        assert!(compute(FixupKind::Abs32S, 0x8000_0000, 0, 0, 0).is_err());
        assert_eq!(compute(FixupKind::Pc32, 0x2000, -4, 0x1000, 0), Ok(0xFFC));
        assert_eq!(
            compute(FixupKind::Pc32, 0x1000, -4, 0x2000, 0),
            Ok((-0x1004i32) as u32 as u64)
        );
        assert_eq!(
            compute(FixupKind::AreaRel64, 0x5000, 8, 0, 0x1000),
            Ok(0x4008)
        );
        assert_eq!(compute(FixupKind::Abs64, 7, -8, 0, 0), Ok(u64::MAX));
        let e = LoadError::OutOfRange {
            module: "m".into(),
            target: "host symbol 'x'".into(),
            place: "image offset 0x10".into(),
            kind: FixupKind::Pc32,
            value: -0x2_0000_0000,
        };
        assert!(
            e.to_string().starts_with("module m: Pc32 relocation to host symbol 'x' at image offset 0x10 is out of reach (-0x200000000 does not fit)"),
            "{e}"
        );
    }

    #[test]
    fn writes_outside_the_buffer_are_refused() {
        let mut b = [0u8; 8];
        assert_eq!(
            write_value(&mut b, 4, FixupKind::Pc32, 0x11223344),
            Some(())
        );
        assert_eq!(&b[4..], &[0x44, 0x33, 0x22, 0x11]);
        assert_eq!(write_value(&mut b, 5, FixupKind::Pc32, 1), None);
        assert_eq!(write_value(&mut b, usize::MAX, FixupKind::Abs64, 1), None);
        assert_eq!(read_value(&b, 4, FixupKind::Pc32), Some(0x11223344));
        assert_eq!(read_value(&b, 1, FixupKind::Abs64), None);
    }
}
