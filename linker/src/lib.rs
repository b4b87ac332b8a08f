//! `hcr-link` as a library: link module objects into one reloadable image.
//!
//! ```text
//! inputs (.o, .a) → parse (parallel) → COMDAT + symbol resolution → import
//! tree → scan relocations (parallel: GOT/PLT needs) → layout → apply
//! relocations while copying (parallel) → manifest + ELF writer
//! ```
//! Which API do I want? [`link`] writes an image file atomically;
//! [`link_bytes`] returns the image bytes (tests, tools that pipe);
//! [`link_memory`] links inputs already in memory (fuzzing).
//!
//! The output is an ELF64 `ET_REL` file: every module's sections and symbols
//! (local names qualified as `module:name`), all relocations, and the
//! `.hcr.manifest` section holding the manifest and the precomputed load plan
//! (see `hcr_image`). Section bytes in the file are already laid out as the
//! loader maps them, with every relocation whose value does not depend on
//! where the image lands applied.
#![deny(unsafe_code)]

mod arch;
mod debug;
mod dwarf_statics;
mod error;
mod identity;
#[allow(unsafe_code)]
mod input;
pub mod libs;
mod link;
mod nim;
mod parse;
#[allow(unsafe_code)]
mod parsed;
mod write;

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use error::{Diagnostic, LinkError};
pub use hcr_image::PlanStats;
pub use input::{remove_left_behind, FileKey, OnPlaced};
pub use link::ReuseStats;

/// What to link.
#[derive(Clone, Debug, Default)]
pub struct LinkConfig {
    /// Root module name; default: the first input object.
    pub root: Option<String>,
    /// Print the time of each pass to stderr.
    pub timings: bool,
    /// The process exits right after the link: leave the linker's memory
    /// and input mappings to the operating system instead of freeing them
    /// one by one (as lld and mold do; freeing costs about a tenth of a
    /// small link). Only for a command-line tool.
    pub skip_free: bool,
    /// Libraries to link against (`-l NAME`; `-l :FILE` for an exact file
    /// name), in command-line order.
    pub libraries: Vec<String>,
    /// Directories searched for them before the system ones (`-L DIR`).
    pub library_dirs: Vec<PathBuf>,
    /// Symbols that no module, library or the runtime defines are warned
    /// about instead of failing the link (`--allow-undefined`): for a host
    /// program that embeds the runtime and defines them itself. The
    /// runtime still refuses, at load, an image whose symbols nothing
    /// defines.
    pub allow_undefined: bool,
}

/// What a link produced.
#[derive(Clone, Debug)]
pub struct LinkOutput {
    /// The image file's bytes ([`link_bytes`] only; empty after [`link`]).
    pub bytes: Vec<u8>,
    /// Size of the image in bytes.
    pub size: u64,
    /// Number of modules.
    pub modules: usize,
    /// Load-plan statistics.
    pub stats: PlanStats,
    /// Problems that did not stop the link (each names module and symbol):
    /// the tool prints them as warnings.
    pub warnings: Vec<String>,
    /// What was taken over from the previous link ([`link_cached`] only).
    pub reused: ReuseStats,
    /// Every file this link read or looked for, with the version it read
    /// (`None`: none was there): the inputs (the command line's, then the
    /// archives `-l` found), as mapped or kept, and every path `-l` looked
    /// at. A caller can tell later whether the image is still what a link of
    /// the same arguments would make.
    pub read: Vec<(PathBuf, Option<FileKey>)>,
}

/// Links `inputs` into image bytes.
///
/// # Errors
/// Every problem of the inputs, reported together in [`LinkError::Inputs`].
pub fn link_bytes(config: &LinkConfig, inputs: &[PathBuf]) -> Result<LinkOutput, LinkError> {
    let mut sink = input::VecSink::default();
    let mut out = link_into(config, inputs, &mut sink, None)?;
    out.bytes = sink.0;
    Ok(out)
}

/// Links inputs held in memory, each `(name, bytes)`, into image bytes, as
/// [`link_bytes`] does with files: the name stands for the path (module
/// names, diagnostics) and every input's modification time is 0.
///
/// # Errors
/// As [`link_bytes`].
pub fn link_memory(
    config: &LinkConfig,
    inputs: Vec<(PathBuf, Vec<u8>)>,
) -> Result<LinkOutput, LinkError> {
    if inputs.is_empty() {
        return Err(LinkError::NoInputs);
    }
    let mapped: Vec<input::MappedInput> = inputs
        .into_iter()
        .map(|(path, bytes)| input::MappedInput {
            path,
            bytes: input::Bytes::Owned(bytes),
            mtime_ns: 0,
            key: input::FileKey::default(),
        })
        .collect();
    let refs: Vec<&input::MappedInput> = mapped.iter().collect();
    let mut sink = input::VecSink::default();
    let mut timer = link::Timer::new(config.timings);
    let mut out = link::link(
        config,
        &refs,
        &Default::default(),
        &mut sink,
        &mut timer,
        None,
    )?
    .out;
    out.bytes = sink.0;
    Ok(out)
}

/// What a process that links the same objects again and again (`hcr
/// watch`) keeps between links: the mapped inputs, their parsed objects and
/// the previous link's per-module work (see `link/reuse.rs`). An input
/// whose file is unchanged (same device, inode, size, modification and
/// change time) is neither opened, mapped nor parsed again, and the work of
/// modules that neither changed nor depend on what changed is taken over:
/// the image is the same, byte for byte, as a full link of the same inputs.
/// The image a link replaces is kept, hidden beside the output, and the
/// next link writes over it where no process has it open (see
/// `input::recycle`). Dropping the cache unmaps what it holds and removes
/// that file.
///
/// The contract of [`link`] holds between links too: a cached input is
/// replaced by a new file or rewritten while no link runs (a compiler
/// writing the object in place between two links is fine: its times
/// change, so it is mapped afresh).
pub struct InputCache {
    inputs: std::collections::HashMap<PathBuf, Arc<input::MappedInput>>,
    parsed: std::collections::HashMap<PathBuf, Arc<parsed::Parsed>>,
    previous: Option<link::Previous>,
    reuse: bool,
    /// The image the last link replaced, kept for the next to write over.
    spare: Option<PathBuf>,
    /// The mode of the files this cache's links make (a spare with any
    /// other, one the user changed, is not written over).
    mode: Option<u32>,
    /// The outputs whose folders were swept of spares that processes no
    /// longer running left (see `input::sweep_left_behind`).
    swept: std::collections::HashSet<PathBuf>,
    /// Names this cache's temporary files apart from another cache's of
    /// the same output in the same process (each keeps its own spare).
    id: u64,
}

impl Default for InputCache {
    fn default() -> InputCache {
        InputCache {
            inputs: Default::default(),
            parsed: Default::default(),
            previous: None,
            reuse: true,
            spare: None,
            mode: None,
            swept: Default::default(),
            id: {
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
        }
    }
}

impl Drop for InputCache {
    fn drop(&mut self) {
        self.forget_spare();
    }
}

impl InputCache {
    /// A cache that keeps the inputs mapped and nothing else: every link
    /// redoes all its work (a baseline for benchmarks and tests).
    pub fn inputs_only() -> InputCache {
        let mut c = InputCache::default();
        c.reuse = false;
        c
    }

    /// Gives the cache an image its owner replaced (the `--incremental`
    /// server's claim of an image linked ahead), for the next link to write
    /// over like one the cache's own link replaced.
    pub fn keep_spare(&mut self, path: PathBuf) {
        if self.spare.as_ref() != Some(&path) {
            self.forget_spare();
        }
        self.spare = Some(path);
    }

    /// Removes the kept replaced image, if any.
    pub fn forget_spare(&mut self) {
        if let Some(p) = self.spare.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn link_into(
    config: &LinkConfig,
    inputs: &[PathBuf],
    sink: &mut (dyn input::Sink + Send),
    cache: Option<&mut InputCache>,
) -> Result<LinkOutput, LinkError> {
    // The whole link runs on a thread of the pool, handed over once: each
    // parallel pass started from a thread outside the pool would wait for a
    // pool thread to take it up and hand it back (two wake-ups a pass, which
    // a loaded machine makes slow).
    rayon::scope(|_| link_in_pool(config, inputs, sink, cache))
}

fn link_in_pool(
    config: &LinkConfig,
    inputs: &[PathBuf],
    sink: &mut (dyn input::Sink + Send),
    mut cache: Option<&mut InputCache>,
) -> Result<LinkOutput, LinkError> {
    if inputs.is_empty() {
        return Err(LinkError::NoInputs);
    }
    let mut timer = link::Timer::new(config.timings);
    // `-l`: shared libraries are recorded, archives become inputs.
    let libs = libs::resolve(&config.libraries, &config.library_dirs).map_err(LinkError::Inputs)?;
    let with_archives: Vec<PathBuf>;
    let inputs = if libs.archives.is_empty() {
        inputs
    } else {
        with_archives = inputs.iter().chain(&libs.archives).cloned().collect();
        &with_archives[..]
    };
    let mapped = map_inputs(inputs, cache.as_deref_mut())?;
    timer.lap("map inputs");
    let refs: Vec<&input::MappedInput> = mapped.iter().map(|m| &**m).collect();
    let out = match cache.filter(|c| c.reuse) {
        Some(c) => {
            let parsed = link::parse_inputs(&c.parsed, &mapped);
            let taken = mapped
                .iter()
                .zip(&parsed)
                .filter(|(inp, p)| match (c.parsed.get(&inp.path), p) {
                    (Some(kept), Some(p)) => Arc::ptr_eq(kept, p),
                    _ => false,
                })
                .count();
            let reuse = link::Reuse {
                parsed: &parsed,
                prev: &mut c.previous,
                taken,
            };
            let linked = link::link(config, &refs, &libs, sink, &mut timer, Some(reuse));
            keep_parses(&mut c.parsed, inputs, &parsed);
            linked.map(|l| {
                c.previous = l.next;
                l.out
            })
        }
        None => link::link(config, &refs, &libs, sink, &mut timer, None).map(|l| l.out),
    };
    if config.skip_free {
        std::mem::forget(mapped);
    }
    out
}

/// Keeps `parsed[i]` as the parse of `inputs[i]`, and no other: updated in
/// place (usually one entry changes).
fn keep_parses(
    kept: &mut std::collections::HashMap<PathBuf, Arc<parsed::Parsed>>,
    inputs: &[PathBuf],
    parsed: &[Option<Arc<parsed::Parsed>>],
) {
    let mut live = 0;
    for (p, k) in inputs.iter().zip(parsed) {
        let Some(k) = k else { continue };
        live += 1;
        match kept.get_mut(p) {
            Some(old) => *old = Arc::clone(k),
            None => {
                kept.insert(p.clone(), Arc::clone(k));
            }
        }
    }
    if kept.len() != live {
        *kept = inputs
            .iter()
            .zip(parsed)
            .filter_map(|(p, k)| Some((p.clone(), Arc::clone(k.as_ref()?))))
            .collect();
    }
}

/// Opens and maps every input; with a cache, one stat per unchanged input
/// (kept mapped from the previous link).
fn map_inputs(
    inputs: &[PathBuf],
    cache: Option<&mut InputCache>,
) -> Result<Vec<Arc<input::MappedInput>>, LinkError> {
    // Opening and mapping a hundred small files is a few hundred
    // microseconds of system calls: done in parallel, kept in order.
    use rayon::prelude::*;
    let cached = cache.as_deref();
    let results: Vec<std::io::Result<Arc<input::MappedInput>>> = inputs
        .par_iter()
        .map(|p| {
            if let Some(hit) = cached.and_then(|c| c.inputs.get(p)) {
                if input::FileKey::now(p).is_ok_and(|k| k == hit.key) {
                    return Ok(Arc::clone(hit));
                }
            }
            input::map_input(p).map(Arc::new)
        })
        .collect();
    if let Some(c) = cache {
        c.inputs.clear();
        for (p, r) in inputs.iter().zip(&results) {
            if let Ok(m) = r {
                c.inputs.insert(p.clone(), Arc::clone(m));
            }
        }
    }
    let mut diags = error::Diags::default();
    let mut mapped = Vec::with_capacity(inputs.len());
    for (p, r) in inputs.iter().zip(results) {
        match r {
            Ok(m) => mapped.push(m),
            Err(e) => diags.push(
                &p.display().to_string(),
                &link::stem(&p.display().to_string()),
                None,
                format!("cannot read input: {e}"),
                "check the path; inputs are object files (.o) and archives (.a)",
            ),
        }
    }
    if !diags.list.is_empty() {
        return Err(LinkError::Inputs(diags.list));
    }
    Ok(mapped)
}

/// Links `inputs` and writes the image to `output` atomically: the bytes go
/// to a temporary file in the same directory, which is renamed over
/// `output`. A reader never sees a half-written image at the path, and on
/// any error the previous file at `output` is left untouched. (The file is
/// not fsynced: after a power loss the image may be torn, which the loader's
/// checksum refuses; a relink repairs it.)
///
/// # Errors
/// Input problems, or the write failing (nothing is written then).
pub fn link(
    config: &LinkConfig,
    inputs: &[PathBuf],
    output: &Path,
) -> Result<LinkOutput, LinkError> {
    link_to_file(config, inputs, output, None, None)
}

/// As [`link`], keeping the inputs mapped in `cache` for the next link.
///
/// # Errors
/// As [`link`].
pub fn link_cached(
    config: &LinkConfig,
    inputs: &[PathBuf],
    output: &Path,
    cache: &mut InputCache,
) -> Result<LinkOutput, LinkError> {
    link_to_file(config, inputs, output, Some(cache), None)
}

/// As [`link_cached`], calling `placed` with the link's output as soon as
/// the image is in place, before the link keeps its state for the next
/// link, frees the rest and removes the replaced image: a caller that
/// answers from `placed` (the `--incremental` server) is not kept waiting
/// for that work. Not called when the link fails.
///
/// # Errors
/// As [`link`].
pub fn link_cached_then(
    config: &LinkConfig,
    inputs: &[PathBuf],
    output: &Path,
    cache: &mut InputCache,
    placed: OnPlaced,
) -> Result<LinkOutput, LinkError> {
    link_to_file(config, inputs, output, Some(cache), Some(placed))
}

fn link_to_file(
    config: &LinkConfig,
    inputs: &[PathBuf],
    output: &Path,
    cache: Option<&mut InputCache>,
    placed: Option<OnPlaced>,
) -> Result<LinkOutput, LinkError> {
    let write_err = |cause| LinkError::Write {
        path: output.display().to_string(),
        cause,
    };
    let tmp = temp_path(output, cache.as_ref().map(|c| c.id)).map_err(write_err)?;
    let mut cache = cache;
    if let Some(c) = cache.as_deref_mut() {
        if !c.swept.contains(output) {
            input::sweep_left_behind(output);
            c.swept.insert(output.to_path_buf());
        }
    }
    let (file, written_over) = open_image_file(&tmp, cache.as_deref_mut()).map_err(write_err)?;
    // The sink renames the file into place as soon as it is written, before
    // the linker's memory is freed: a program waiting for the image sees it
    // that much sooner.
    let mut sink = input::FileSink::new(file, tmp.clone(), output.to_path_buf())
        .on_placed(placed)
        .keeping_old(cache.is_some())
        .written_over(written_over);
    let result = link_into(config, inputs, &mut sink, cache.as_deref_mut()).map_err(|e| match e {
        // The sink writes to `tmp`; the user knows the output path.
        LinkError::Write { cause, .. } => write_err(cause),
        e => e,
    });
    if result.is_err() && !sink.renamed() {
        let _ = std::fs::remove_file(&tmp);
    }
    if let (Some(c), Some(old)) = (cache, sink.take_old()) {
        c.keep_spare(old);
    }
    result
}

/// The file a link writes its image into, at `tmp`: the image `cache`'s
/// last link replaced, where it can be written over (then `true`; see
/// `input::recycle`), else a new file.
fn open_image_file(
    tmp: &Path,
    cache: Option<&mut InputCache>,
) -> std::io::Result<(std::fs::File, bool)> {
    let Some(c) = cache else {
        return create_image_file(tmp).map(|f| (f, false));
    };
    if let Some(spare) = c.spare.take() {
        let recycled = match c.mode {
            Some(mode) => input::recycle(&spare, tmp, mode),
            None => {
                let _ = std::fs::remove_file(&spare);
                None
            }
        };
        if let Some(f) = recycled {
            return Ok((f, true));
        }
    }
    let f = match create_image_file(tmp) {
        // A cache's name holds this process's ID and the cache's, and the
        // cache holds no file there: one left by an earlier process that
        // had this ID (a container's fixed PID), which no sweep removes
        // while the ID is in use.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let _ = std::fs::remove_file(tmp);
            create_image_file(tmp)
        }
        r => r,
    }?;
    use std::os::unix::fs::MetadataExt as _;
    c.mode = f.metadata().ok().map(|m| m.mode() & 0o7777);
    Ok((f, false))
}

/// A new file at `tmp`. Images are code: never group- or world-writable,
/// whatever the umask (the runtime refuses such images).
fn create_image_file(tmp: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(tmp)
}

/// `.NAME.tmp.PID` beside `path`, or `.NAME.tmp.PID.ID` for a cache's
/// links (see [`InputCache`]).
fn temp_path(path: &Path, cache: Option<u64>) -> std::io::Result<PathBuf> {
    let dir = input::folder_of(path);
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("output path has no file name"))?;
    let id = cache.map(|id| format!(".{id}")).unwrap_or_default();
    Ok(dir.join(format!(
        ".{}.tmp.{}{id}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

/// Puts the finished image `from` at `path` atomically, as a link does with
/// its temporary file: a reader of `path` sees the old image or the new
/// one. Returns true when the replaced image is left at `from`, for the
/// caller to remove once it has said the link is done (removing a large
/// file is not free).
///
/// # Errors
/// As `rename(2)`.
pub fn place_image(from: &Path, path: &Path) -> std::io::Result<bool> {
    input::replace_keeping_old(from, path)
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path(path, None)?;
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(bytes)?;
        drop(f);
        input::replace(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
