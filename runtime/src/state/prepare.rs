//! Prepare: read the new image, resolve, place and relocate what must be
//! loaded, allocate new globals tentatively. Touches no live state; any
//! failure frees what it made.

use super::*;
use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A thread-local variable's initial bytes with its pointer fields (a TLS
/// variable's fields are never re-based: each thread's copy is its own).
pub(super) fn initial_bytes(
    view: &ImageView<'_>,
    o: &hcr_image::Object,
    values: &[FieldValue],
) -> Vec<u8> {
    let mut b = vec![0u8; o.size as usize];
    if let Some(init) = view.initial_bytes(o) {
        b.copy_from_slice(init);
    }
    for f in values {
        hcr_loader::write_value(&mut b, f.offset as usize, f.kind, f.value);
    }
    b
}

/// Blocks to decode that add up to at least this are shared with the
/// helper thread (500 modules × 50 functions: 2.4 MB); fewer cost less
/// than waking it.
const SHARE_BLOCK_BYTES: u64 = 256 << 10;
/// A first load's area from this size up gets its chunk early
/// ([`State::early_area`]): it has a huge page to fault in.
const EARLY_AREA_MIN: usize = hcr_loader::mem::HUGE_PAGE;
/// The most of an early area faulted in before the manifest is verified.
const EARLY_FAULT_MAX: usize = 64 << 20;

impl State {
    /// Loads the image on disk up to the point of no return. `Ok(None)`:
    /// nothing changed.
    pub fn prepare(&mut self) -> Result<Option<Prepared>, Error> {
        if let Some(p) = self.take_ahead_unchanged() {
            return Ok(Some(p));
        }
        let path = self.path.clone();
        crate::phases::mark("setup");
        let file = ImageFile::open(&path, self.allow_insecure_image)?;
        if self.current.is_none() && file.stat.size >= crate::image_file::LARGE_FILE {
            // Its decoding or its segments will be shared.
            crate::helper::start_early();
        }
        crate::phases::mark("open");
        if self.holds_current(&file)? {
            return Ok(None);
        }
        // Thread-local template space a refused preparation reserved is
        // given back (as for a preparation made ahead).
        let before = crate::tls::reserved();
        let r = self.prepare_from(&file);
        if r.is_err() {
            crate::tls::unreserve(before, crate::tls::reserved());
        }
        r
    }

    /// A problem of the image on disk, naming its path.
    pub(super) fn image_error(&self, e: hcr_image::ImageError) -> Error {
        Error::Image(format!("{}: {e}", self.path.display()))
    }

    /// Prepares the reload `file` asks for. The read buffer is lent to this
    /// load (the view borrows it) and kept for the next.
    pub(super) fn prepare_from(&mut self, file: &ImageFile<'_>) -> Result<Option<Prepared>, Error> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let r = self.prepare_passes(file, &mut scratch);
        self.scratch = scratch;
        r
    }

    fn prepare_passes(
        &mut self,
        file: &ImageFile<'_>,
        scratch: &mut Scratch,
    ) -> Result<Option<Prepared>, Error> {
        let r = (|| match self.prepare_pass(file, scratch, false)? {
            Prep::Done(p) => Ok(p.map(|b| *b)),
            // A kept segment may refer to a global whose storage moves:
            // everything is loaded again.
            Prep::Full => match self.prepare_pass(file, scratch, true)? {
                Prep::Done(p) => Ok(p.map(|b| *b)),
                Prep::Full => Err(Error::Io("reload plan did not settle".into())),
            },
        })();
        if let Some(c) = self.early_area.take() {
            // SAFETY: never published: nothing refers to it.
            unsafe { self.window.free(c) };
        }
        // Bytes read from a mapping a page of which vanished are refused,
        // whatever came of them (in either pass).
        let r = match file.torn() {
            Some(e) => Err(e),
            None => r,
        };
        if !matches!(r, Ok(Some(_))) {
            self.heap_top = None; // no commit follows
        }
        r
    }

    /// One attempt of [`State::prepare_passes`]; with `full`, no segment is
    /// kept.
    fn prepare_pass(
        &mut self,
        file: &ImageFile<'_>,
        scratch: &mut Scratch,
        full: bool,
    ) -> Result<Prep, Error> {
        // The manifest's global part goes to `scratch` first; then the
        // blocks and initial bytes of the modules whose records are new or
        // that must be loaded; module segments are read straight into their
        // window chunk, and only those of modules that must be loaded.
        // A first load's area chunk is faulted in meanwhile.
        if self.current.is_none() {
            self.early_area = self.early_area(file);
            // What this thread allocates for a large image's load comes
            // from huge pages.
            if self.early_area.is_some() && self.heap_top.is_none() {
                self.heap_top = crate::heap_top::HugeTop::new();
            }
        }
        let old = self.current.as_ref().map(|c| &c.manifest);
        let mut global = None;
        let mut plan = None;
        let read = |b: &[u8]| {
            let g = ImageView::parse_global(b, old);
            let mut ranges = Vec::new();
            if let (Ok((h, m)), Ok(at)) = (&g, hcr_image::manifest_offset(b)) {
                let (diff, matched, order) = self.plan(m);
                let reuse = match full {
                    true => vec![NONE; m.modules.len()],
                    false => self.reuse_plan(m, &matched),
                };
                // A shared record's block is the loaded one: decoded only
                // when the module is loaded (the summary answers without
                // a look at the module).
                let complete = old.is_some_and(|o| o.parts_complete() && m.read_against(o));
                let decode: Vec<bool> = (0..m.modules.len())
                    .map(|mi| {
                        let loaded = m.reachable(mi) && reuse[mi] == NONE;
                        if complete && m.shared_record(mi) {
                            return loaded;
                        }
                        loaded || !old.is_some_and(|o| o.shares_block(m, mi))
                    })
                    .collect();
                for mi in marked(&decode) {
                    let md = &m.modules[mi];
                    ranges.push((at.saturating_add(md.block.0), md.block.1));
                    ranges.push((h.init_file_offset.saturating_add(md.init.0), md.init.1));
                }
                plan = Some((diff, reuse, decode, matched, order));
            }
            global = Some(g);
            ranges
        };
        let pages = early_pages(self.early_area.as_ref());
        let next = AtomicUsize::new(0);
        let fault_in = || fault_in_pages(&pages, &next);
        let beside: Option<&(dyn Fn() + Sync)> = match pages.is_empty() {
            true => None,
            false => Some(&fault_in),
        };
        let bytes = file.read_beside(scratch, old, read, beside)?;
        crate::phases::mark("manifest");
        let (header, m) = global
            .unwrap_or(Err(hcr_image::ImageError::Truncated("manifest")))
            .map_err(|e| self.image_error(e))?;
        let Some((diff, reuse, decode, matched, order)) = plan else {
            return Err(self.image_error(hcr_image::ImageError::Truncated("manifest")));
        };
        if !file.holds_area(&header) {
            return Err(self.image_error(hcr_image::ImageError::Truncated("load area")));
        }
        let stat = file.stat.with_content(header.checksum);
        if self.current.is_some() && diff.count() == 0 {
            self.disk = DiskCache {
                stat: Some(stat),
                diff: Diff::default(),
            };
            return Ok(Prep::Done(None));
        }
        let old = self.current.as_ref().map(|c| &c.manifest);
        // (Counted before `assemble`, which gives a shared record whose
        // block it decodes a copy of its own.)
        let records = match old {
            Some(o) if m.read_against(o) => (0..m.modules.len())
                .filter(|&i| !m.shared_record(i))
                .count(),
            Some(o) => (0..m.modules.len())
                .filter(|&i| {
                    o.modules
                        .get(i)
                        .is_none_or(|om| !om.same_record(&m.modules[i]))
                })
                .count(),
            None => m.modules.len(),
        };
        // Many blocks (a first load's) are verified and decoded by the
        // helper thread too; a reload's few, by this thread alone.
        // (A first load decodes every block: `decode` is all set.)
        let block_bytes: u64 = (m.modules.iter().zip(&decode))
            .filter(|&(_, &d)| d)
            .map(|(md, _)| md.block.1)
            .sum();
        let share: hcr_loader::Share<'_> = if block_bytes >= SHARE_BLOCK_BYTES {
            &crate::helper::lend
        } else {
            &hcr_loader::alone
        };
        let view = ImageView::assemble_shared(&bytes, header, m, old, &decode, share)
            .map_err(|e| self.image_error(e))?;
        let blocks = decode.iter().filter(|&&d| d).count();
        crate::phases::mark("decode");
        self.prepare_view(
            file,
            view,
            Plan {
                diff,
                reuse,
                decoded: (records, blocks),
                matched,
                order,
            },
        )
    }

    /// Reads the segments of the modules marked in `load` from `file` into
    /// one new chunk of the window and verifies them; returns the chunk, the
    /// bytes and the pieces read, and where each module's segment lies.
    /// When every module is loaded, the area keeps the file's layout.
    /// `share` runs the reading on the helper thread too (see
    /// [`segments::read`]).
    fn read_segments(
        &mut self,
        file: &ImageFile<'_>,
        view: &ImageView<'_>,
        (load, all): (&[bool], bool),
        place: &mut Placement,
        share: hcr_loader::Share<'_>,
    ) -> Result<(hcr_loader::Chunk, u64, usize), Error> {
        let (chunk, len, pieces, bytes) = self.segment_pieces(view, load, all, place)?;
        // SAFETY: the chunk is fresh from the window, committed read-write,
        // at least `len` bytes and not yet published; this is the only
        // reference to its bytes until the read ends.
        let dst = unsafe { std::slice::from_raw_parts_mut(chunk.addr as *mut u8, len) };
        let area = view.header.area_file_offset;
        let after: segments::After<'_> = &segments::nothing_after;
        match segments::read(file, view, (area, load), dst, &pieces, (share, after)) {
            Ok(_) => Ok((chunk, bytes, pieces.len())),
            Err(e) => {
                // SAFETY: never published; nothing refers to it.
                unsafe { self.window.free(chunk) };
                Err(self.segment_error(e))
            }
        }
    }

    /// For a first load of a large image: a chunk for its whole load area,
    /// as long as the manifest header says (three small reads ahead of
    /// the manifest's), so that its huge pages can be faulted in while the
    /// manifest is read and decoded. `None` where the header cannot be
    /// read or the area is small (the read then allocates its chunk).
    fn early_area(&mut self, file: &ImageFile<'_>) -> Option<hcr_loader::Chunk> {
        let h = file.header()?;
        let len = usize::try_from(h.area_file_size).ok()?;
        if !file.holds_area(&h) || len < EARLY_AREA_MIN {
            return None;
        }
        // (Rounded as the read's own chunk would be: `chunk_len`.)
        self.window.alloc_unfilled(len).ok()
    }

    /// The error a failed read of segments reports.
    fn segment_error(&self, e: segments::Failure) -> Error {
        match e {
            segments::Failure::Io(e) => e,
            segments::Failure::Image(e) => self.image_error(e),
        }
    }

    /// The chunk the segments of the modules marked in `load` are read
    /// into, its length, the pieces to read and the segments' bytes; sets
    /// where each of those modules' segment lies (`place`).
    fn segment_pieces(
        &mut self,
        view: &ImageView<'_>,
        load: &[bool],
        all: bool,
        place: &mut Placement,
    ) -> Result<(hcr_loader::Chunk, usize, Vec<segments::Piece>, u64), Error> {
        let m = &view.manifest;
        let h = &view.header;
        // Runs of consecutive modules to load, each read with one `pread`
        // to a place that keeps the file's layout modulo a page (so every
        // segment keeps its alignment): `(first, last, chunk offset)`.
        let mut runs: Vec<(usize, usize, usize)> = Vec::new();
        let len = if all {
            runs.push((0, m.modules.len().saturating_sub(1), 0));
            m.layout.area_size as usize
        } else {
            let mut pos = 0usize;
            for mi in marked(load) {
                let md = &m.modules[mi];
                match runs.last_mut() {
                    Some(r) if r.1 + 1 == mi => {
                        r.1 = mi;
                        pos = r.2 + (md.seg.end - m.modules[r.0].seg.start) as usize;
                    }
                    _ => {
                        let page = hcr_image::PAGE_SIZE as usize;
                        let at = pos.div_ceil(page) * page + md.seg.start as usize % page;
                        runs.push((mi, mi, at));
                        pos = at + md.seg.len() as usize;
                    }
                }
            }
            pos.max(1)
        };
        // Faulted in by the readers, each its own part.
        let early = self.early_area.take();
        let chunk = match early {
            Some(c) if all && c.len == hcr_loader::mem::chunk_len(len) => c,
            _ => {
                if let Some(c) = early {
                    // SAFETY: never published: nothing refers to it.
                    unsafe { self.window.free(c) };
                }
                self.window.alloc_unfilled(len)?
            }
        };
        let mut bytes = 0u64;
        let mut pieces = Vec::with_capacity(runs.len() + 1);
        for &(first, last, at) in &runs {
            let from = m.modules[first].seg.start;
            let to = match all {
                true => u32::try_from(h.area_file_size).unwrap_or(u32::MAX),
                false => m.modules[last].seg.end,
            };
            let vbase = (chunk.addr as u64 + at as u64).wrapping_sub(u64::from(from));
            for mi in marked(&load[first..=last]).map(|k| first + k) {
                bytes += u64::from(m.modules[mi].seg.len());
                place.vbase[mi] = vbase;
            }
            segments::split_run(m, (first, last), (from, to), at, &mut pieces);
        }
        Ok((chunk, len, pieces, bytes))
    }

    /// For a load that keeps no segment: the registry indices, the new
    /// trampolines, the loader's tables and the new globals' storage,
    /// worked out while the segments are read (the helper thread starts
    /// the read, and this thread joins it when done with its own part;
    /// nothing here depends on the segments' bytes). Once the tables are
    /// complete, whichever thread reads a piece also relocates it, while
    /// its bytes are in the cache; the pieces read before are relocated
    /// after the read. Returns those, the chunk read into, the segments'
    /// bytes and the pieces read; on an error nothing stays allocated.
    fn bind_while_reading(
        &mut self,
        file: &ImageFile<'_>,
        view: &ImageView<'_>,
        (diff, matched): (&Diff, &[u32]),
        (load, all): (&[bool], bool),
        place: &mut Placement,
        tables: &mut Tables,
    ) -> Result<(Bound, hcr_loader::Chunk, u64, usize), Error> {
        let (chunk, len, pieces, bytes) = self.segment_pieces(view, load, all, place)?;
        let place: &Placement = place;
        // SAFETY: the chunk is fresh from the window, committed read-write,
        // at least `len` bytes and not yet published; this is the only
        // reference to its bytes until the read ends.
        let dst = unsafe { std::slice::from_raw_parts_mut(chunk.addr as *mut u8, len) };
        let m = &view.manifest;
        let ready: std::sync::OnceLock<&Tables> = std::sync::OnceLock::new();
        let ready_ref = &ready;
        let this = &mut *self;
        let mine = std::cell::Cell::new(Some(move || -> Result<Binding, Error> {
            let mut indices = this.registry_indices(m, diff, matched);
            let (batch, ref_objs) = this.bind_new_functions(view, (load, all), &indices, tables)?;
            let mut new_globals = Vec::new();
            let objects = this.place_all_objects(
                m,
                tables,
                &mut indices.obj_gid,
                (load, &ref_objs),
                &mut new_globals,
            );
            // The tables are complete once the objects are placed (the
            // values only read them): the segments can be relocated.
            let values = match &objects {
                Ok(()) => {
                    let v = Values {
                        view,
                        tables,
                        place,
                    };
                    let obj_gid = &indices.obj_gid;
                    this.global_values(&v, obj_gid, load, &mut new_globals)
                        .map_err(Error::from)
                }
                Err(_) => Ok(Vec::new()),
            };
            if objects.is_ok() {
                // (Moved out of the closure first, so that the shared
                // borrow lasts as long as the exclusive one did.)
                let done = tables;
                let _ = ready_ref.set(done);
            }
            Ok(Binding {
                indices,
                batch,
                ref_objs,
                new_globals,
                objects,
                values,
            })
        }));
        let bound = std::cell::Cell::new(None);
        let run_mine = || {
            if let Some(f) = mine.take() {
                bound.set(Some(f()));
                crate::phases::mark("bind");
            }
        };
        let share = |work: &(dyn Fn() + Sync)| crate::helper::share(work, run_mine);
        let relocate = |p: &segments::Piece, bytes: &mut [u8]| {
            let t = *ready.get()?;
            Some(segments::relocate_piece(view, (t, place), load, p, bytes))
        };
        // A small read runs on this thread alone, without `share`: after
        // the binding, so that each piece is relocated as it is read.
        if !segments::shared(&pieces) {
            run_mine();
        }
        let area = view.header.area_file_offset;
        let read = segments::read(file, view, (area, load), dst, &pieces, (&share, &relocate));
        run_mine();
        let bound = bound
            .take()
            .unwrap_or_else(|| Err(Error::Internal("registry not bound".into())));
        // Failures are reported in the order of the steps as one thread
        // takes them: binding, reading, placing the objects, relocating
        // (the pieces read before the tables were complete are relocated
        // now), the globals' values.
        let mut b = match bound {
            Ok(b) => b,
            Err(e) => {
                // SAFETY: never published; nothing refers to it.
                unsafe { self.window.free(chunk) };
                return Err(e);
            }
        };
        let rest = || {
            let done = read.map_err(|e| self.segment_error(e))?;
            std::mem::replace(&mut b.objects, Ok(()))?;
            match ready.get() {
                Some(&t) => self.relocate_rest(view, (t, place), load, dst, &pieces, done)?,
                None => return Err(Error::Internal("segments read, tables not bound".into())),
            }
            std::mem::replace(&mut b.values, Ok(Vec::new()))
        };
        match rest() {
            Ok(rebase) => Ok((
                Bound {
                    indices: b.indices,
                    batch: b.batch,
                    ref_objs: b.ref_objs,
                    globals: PlacedGlobals {
                        new_globals: b.new_globals,
                        rebase,
                    },
                },
                chunk,
                bytes,
                pieces.len(),
            )),
            Err(e) => {
                // SAFETY: never published; nothing refers to it.
                unsafe { self.window.free(chunk) };
                self.free_unpublished(b.batch, &b.new_globals);
                Err(e)
            }
        }
    }

    /// Relocates the pieces of `dst` that were read before the tables were
    /// complete (`done[i]` is `None`), shared with the helper thread; then
    /// reports the first failure in piece (module) order.
    fn relocate_rest(
        &self,
        view: &ImageView<'_>,
        (tables, place): (&Tables, &Placement),
        load: &[bool],
        dst: &mut [u8],
        pieces: &[segments::Piece],
        mut done: Vec<Option<Result<(), hcr_loader::LoadError>>>,
    ) -> Result<(), Error> {
        let slices = segments::piece_slices(dst, pieces).map_err(|e| self.segment_error(e))?;
        let jobs: Vec<(usize, &mut [u8])> = (slices.into_iter().enumerate())
            .filter(|(i, _)| done[*i].is_none())
            .collect();
        let share: hcr_loader::Share<'_> = match jobs.len() {
            0 | 1 => &hcr_loader::alone,
            _ => &crate::helper::lend,
        };
        let later = hcr_loader::run_shared(jobs, share, |(i, bytes)| {
            (
                i,
                segments::relocate_piece(view, (tables, place), load, &pieces[i], bytes),
            )
        });
        // (A piece whose thread panicked has no result: reported below.)
        for (i, r) in later.into_iter().flatten() {
            done[i] = Some(r);
        }
        for r in done {
            r.unwrap_or_else(|| {
                Err(hcr_loader::LoadError::Window(
                    "relocating a segment failed".into(),
                ))
            })?;
        }
        Ok(())
    }

    /// Frees what a preparation that failed had made: its trampolines and
    /// its new globals' storage (none of it published).
    fn free_unpublished(&mut self, batch: Option<Batch>, new_globals: &[(usize, Global, bool)]) {
        for (_, g, _) in new_globals {
            self.heap.free_global(g);
        }
        if let Some(batch) = batch {
            // SAFETY: the batch was never published.
            unsafe { batch.free_unpublished(&mut self.window) };
        }
    }

    /// [`State::prepare_from`] once the manifest is read and something
    /// changed: registry indices, which segments stay, the new segments
    /// read and relocated.
    fn prepare_view(
        &mut self,
        file: &ImageFile<'_>,
        view: ImageView<'_>,
        plan: Plan,
    ) -> Result<Prep, Error> {
        let Plan {
            diff,
            reuse,
            decoded,
            matched,
            order,
        } = plan;
        let stat = file.stat.with_content(view.header.checksum);
        let m = &view.manifest;
        // The loader's tables, kept between reloads. Only the entries the
        // segments loaded now refer to are filled (kept segments were bound
        // when they were loaded); the loader reads no other entry. (The
        // function table is sized when it is filled, `bind_functions`: a
        // first load's follows from the trampolines' index instead.)
        let mut tables = std::mem::take(&mut self.tables);
        tables.objects.resize(m.objects.len(), 0);
        tables.hosts.resize(m.hosts.len(), 0);
        let mut work = ReloadWork {
            records_decoded: decoded.0,
            blocks_decoded: decoded.1,
            ..ReloadWork::default()
        };
        let (mut place, mut areas, load) =
            place_segments(self.current.as_ref(), m, &reuse, &mut work);
        let all = work.modules_kept == 0;
        // With no segment kept (a first load, or every module changed) no
        // global can move under a kept segment, so nothing decided below
        // can send this reload back to a full one: the segments are read
        // while this thread finds the registry indices, makes the
        // trampolines and places the globals (the helper thread starts the
        // read; this thread joins it when done with those), and relocated
        // as they are read.
        let early = work.modules_loaded > 0 && reuse.iter().all(|&r| r == NONE);
        let (indices, new_trampolines, ref_objs, chunk, placed) = if early {
            let r = self.bind_while_reading(
                file,
                &view,
                (&diff, &matched),
                (&load, all),
                &mut place,
                &mut tables,
            );
            match r {
                Ok((b, chunk, bytes, pieces)) => {
                    work.bytes_relocated = bytes;
                    work.pieces_read = pieces;
                    let Bound {
                        indices,
                        batch,
                        ref_objs,
                        globals,
                    } = b;
                    (indices, batch, ref_objs, Some(chunk), Some(globals))
                }
                Err(e) => {
                    self.tables = tables;
                    return Err(e);
                }
            }
        } else {
            let indices = self.registry_indices(m, &diff, &matched);
            if self.global_moves(m, &reuse, &indices.obj_gid) && reuse.iter().any(|&r| r != NONE) {
                self.tables = tables;
                return Ok(Prep::Full);
            }
            let (new_trampolines, ref_objs) =
                match self.bind_new_functions(&view, (&load, all), &indices, &mut tables) {
                    Ok(b) => b,
                    Err(e) => {
                        self.tables = tables;
                        return Err(e);
                    }
                };
            let chunk = if work.modules_loaded == 0 {
                None
            } else {
                let share: hcr_loader::Share<'_> = &crate::helper::lend;
                match self.read_segments(file, &view, (&load, all), &mut place, share) {
                    Ok((chunk, bytes, pieces)) => {
                        work.bytes_relocated = bytes;
                        work.pieces_read = pieces;
                        Some(chunk)
                    }
                    Err(e) => {
                        self.free_unpublished(new_trampolines, &[]);
                        self.tables = tables;
                        return Err(e);
                    }
                }
            };
            (indices, new_trampolines, ref_objs, chunk, None)
        };
        crate::phases::mark("segments");
        let Indices {
            fn_tid,
            mut obj_gid,
            identities,
            ..
        } = indices;
        let rest = self.prepare_rest(
            &view,
            &mut tables,
            &mut obj_gid,
            (chunk, placed),
            &place,
            (&load, &ref_objs),
        );
        self.tables = tables;
        match rest {
            Ok((area, new_globals, rebase)) => {
                let area = area.map(|loaded| Arc::new(Area { loaded }));
                if let Some(a) = &area {
                    for i in marked(&load) {
                        areas.put(i, a);
                    }
                }
                crate::phases::mark("values");
                let handler_ranks = self.ranks_of_handler_modules(&view.manifest, &order);
                let loaded_list: Vec<usize> = marked(&load).collect();
                let loaded_in_order: Vec<ModuleId> = match loaded_list.len() {
                    0 => Vec::new(),
                    _ => order
                        .iter()
                        .copied()
                        .filter(|i| load[i.0 as usize])
                        .collect(),
                };
                Ok(Prep::Done(Some(Box::new(Prepared {
                    debug: crate::gdb_jit::read_debug(file.handle(), stat.size),
                    manifest: view.manifest,
                    order,
                    handler_ranks,
                    area,
                    place,
                    areas,
                    loaded_list,
                    loaded_in_order,
                    work,
                    stat,
                    diff,
                    fn_tid,
                    obj_gid,
                    new_trampolines,
                    new_globals,
                    rebase,
                    identities,
                }))))
            }
            Err(e) => {
                self.free_unpublished(new_trampolines, &[]);
                Err(e)
            }
        }
    }

    /// Registry indices of the new image's functions and objects. A module
    /// whose content did not change has the same symbols in the same order:
    /// its indices are copied from the loaded image (in one piece when the
    /// tables have the live image's sizes), so this grows with what changed,
    /// not with the program. Functions the registry lacks get `PENDING`
    /// indices (their trampolines are made next).
    fn registry_indices(&self, m: &Manifest, diff: &Diff, matched: &[u32]) -> Indices {
        let old = self.current.as_ref();
        if old.is_none() && self.functions.len() == 0 && self.globals.is_empty() {
            return first_indices(m);
        }
        // The loaded image's tables, shared (not copied) until an index
        // differs.
        let (mut fn_tid, mut obj_gid, bulk) = match old {
            Some(c)
                if c.fn_tid.len() == m.functions.len() && c.obj_gid.len() == m.objects.len() =>
            {
                (c.fn_tid.clone(), c.obj_gid.clone(), true)
            }
            _ => (
                Arc::new(vec![NONE; m.functions.len()]),
                Arc::new(vec![NONE; m.objects.len()]),
                false,
            ),
        };
        let against = old.is_some_and(|c| m.read_against(&c.manifest));
        let added: HashSet<&str> = diff.added.iter().map(String::as_str).collect();
        let mut pending_fns = 0u32;
        let mut identities = crate::identity::Decisions::default();
        for mi in 0..m.modules.len() {
            if bulk && against && m.same_ids(mi) {
                // The loaded module's record at the same indices: the
                // loaded image's indices, copied above (an unreachable
                // one's are `NONE` there too, being the same record).
                continue;
            }
            let md = &m.modules[mi];
            if !md.reachable {
                if bulk {
                    fill_ids(&mut fn_tid, md.functions.range(), NONE);
                    fill_ids(&mut obj_gid, md.objects.range(), NONE);
                }
                continue;
            }
            let old_index = matched.get(mi).copied().filter(|&o| o != NONE);
            let same = old.and_then(|c| {
                let om = &c.manifest.modules[old_index? as usize];
                (om.same_record(md)
                    || om.content_hash == md.content_hash
                        && om.functions.len() == md.functions.len()
                        && om.objects.len() == md.objects.len())
                .then_some((c, om))
            });
            if let Some((c, om)) = same {
                let in_place = bulk && om.functions == md.functions && om.objects == md.objects;
                if !in_place {
                    store_ids(
                        &mut fn_tid,
                        md.functions.start as usize,
                        &c.fn_tid[om.functions.range()],
                    );
                    store_ids(
                        &mut obj_gid,
                        md.objects.start as usize,
                        &c.obj_gid[om.objects.range()],
                    );
                }
                continue;
            }
            // The module's own parts: no lookup of global indices. Its
            // indices are worked out on the side and stored only where
            // they differ (a code change keeps them all).
            let fns = self.function_ids(old.zip(old_index), m, mi, &mut pending_fns);
            store_ids(&mut fn_tid, md.functions.start as usize, &fns);
            let gids = match added.contains(m.str(md.name)) {
                true => vec![NONE; md.objects.len() as usize],
                false => self.object_ids(old.zip(old_index), m, mi, &mut identities),
            };
            store_ids(&mut obj_gid, md.objects.start as usize, &gids);
        }
        if let Some(c) = old {
            self.adopt_moved_globals(c, m, diff, &mut obj_gid, &mut identities);
        }
        Indices {
            fn_tid,
            obj_gid,
            pending_fns,
            identities,
        }
    }

    /// A global (external name) that left a module the reload changes or
    /// removes and appears, of the same size, in another module keeps its
    /// storage and value there: a definition moved between files, or a
    /// module renamed. (A name is defined once in an image.)
    fn adopt_moved_globals(
        &self,
        c: &Current,
        m: &Manifest,
        diff: &Diff,
        obj_gid: &mut Ids,
        identities: &mut crate::identity::Decisions,
    ) {
        let unmatched: Vec<usize> = (0..m.objects.len())
            .filter(|&oi| obj_gid[oi] == NONE && m.objects[oi].global)
            .filter(|&oi| m.reachable(m.objects[oi].module.0 as usize))
            .collect();
        if unmatched.is_empty() || diff.old_touched.is_empty() {
            return;
        }
        let claimed: HashSet<u32> = obj_gid.iter().copied().filter(|&g| g != NONE).collect();
        let mut left: HashMap<&str, (u32, &str)> = HashMap::default();
        for omi in diff.old_touched.iter().map(|i| i.0 as usize) {
            let Some(md) = c.manifest.modules.get(omi) else {
                continue;
            };
            for oi in md.objects.range() {
                let (o, g) = (&c.manifest.objects[oi], c.obj_gid[oi]);
                if o.global && g != NONE && !claimed.contains(&g) {
                    left.insert(c.manifest.str(o.name), (g, c.manifest.str(md.name)));
                }
            }
        }
        for oi in unmatched {
            let o = &m.objects[oi];
            let Some(&(g, from)) = left.get(m.str(o.name)) else {
                continue;
            };
            let to = m.module_name(o.module);
            let fits = self.globals[g as usize]
                .as_ref()
                .is_some_and(|e| e.g.tls == o.tls && keeps_storage(&e.g, o));
            if !fits || from == to {
                continue;
            }
            store_ids(obj_gid, oi, &[g]);
            left.remove(m.str(o.name));
            identities.moved.push((g, to.to_string()));
            identities.warnings.push(format!(
                "global {} moved from module {from} to module {to}: it keeps its value",
                m.str(o.name)
            ));
        }
    }

    /// The registry indices of module `mi`'s functions: the loaded module
    /// `was`'s when it has the same names in the same order, else looked up
    /// by name, each one not found numbered after `pending` (then
    /// counted).
    fn function_ids<'a>(
        &'a self,
        was: Option<(&'a Current, u32)>,
        m: &Manifest,
        mi: usize,
        pending: &mut u32,
    ) -> Cow<'a, [u32]> {
        if let Some(ids) = was.and_then(|(c, omi)| same_functions(c, omi as usize, m, mi)) {
            // A change inside function bodies: the same registry entries,
            // read from the loaded image rather than looked up one by one
            // in the registry's table.
            return Cow::Borrowed(ids);
        }
        let mut new = |n: usize| {
            *pending += n as u32;
            *pending - n as u32
        };
        let functions = m.functions.part(mi);
        let Some(id) = self.functions.module_id(m.str(m.modules[mi].name)) else {
            // A module the registry does not know (every module of a
            // first load): every function is new.
            let first = new(functions.len());
            return (first..first + functions.len() as u32)
                .map(|i| PENDING | i)
                .collect();
        };
        let mut names = hcr_image::Names::new(m);
        (functions.iter())
            .map(|f| {
                (self.functions.get(id, names.get(f.name))).unwrap_or_else(|| PENDING | new(1))
            })
            .collect()
    }

    /// The global indices of module `mi`'s objects (`NONE` for a new one),
    /// by name, and by identity against the loaded module `was` where
    /// their names changed.
    fn object_ids(
        &self,
        was: Option<(&Current, u32)>,
        m: &Manifest,
        mi: usize,
        identities: &mut crate::identity::Decisions,
    ) -> Vec<u32> {
        let md = &m.modules[mi];
        let mut gids = vec![NONE; md.objects.len() as usize];
        let by_name = self.global_index().get(m.str(md.name));
        for (g, o) in gids.iter_mut().zip(m.objects.part(mi)) {
            if let Some(&id) = by_name.and_then(|ix| ix.get(m.object_key(o))) {
                *g = id;
            }
        }
        if let Some((c, omi)) = was {
            crate::identity::match_renumbered(
                crate::identity::Version {
                    manifest: &c.manifest,
                    module: &c.manifest.modules[omi as usize],
                    gid: &c.obj_gid,
                },
                m,
                md,
                &mut gids,
                NONE,
                identities,
            );
        }
        gids
    }

    /// Makes the trampolines of the functions the registry lacks (they
    /// start at address 0 and are published by commit: no old code can
    /// reach them before that) and fills the loader's function table;
    /// returns the new batch and the objects the loaded segments refer to.
    fn bind_new_functions(
        &mut self,
        view: &ImageView<'_>,
        (load, all): (&[bool], bool),
        indices: &Indices,
        tables: &mut Tables,
    ) -> Result<(Option<Batch>, Vec<usize>), Error> {
        let new_trampolines = match indices.pending_fns {
            0 => None,
            n => Some(trampoline::make_batch(&mut self.window, n as usize)?),
        };
        let ref_objs = self.bind_functions(
            view,
            load,
            all,
            (&indices.fn_tid, new_trampolines.as_ref()),
            tables,
        );
        Ok((new_trampolines, ref_objs))
    }

    /// Fills the loader's function table where the segments loaded now
    /// refer (every entry when every segment is loaded: cheaper than finding
    /// out what the fixups name) with permanent addresses: a registered
    /// function's trampoline, or a new one from `batch`. Returns the objects
    /// those segments refer to.
    fn bind_functions(
        &self,
        view: &ImageView<'_>,
        load: &[bool],
        all: bool,
        (fn_tid, batch): (&[u32], Option<&Batch>),
        tables: &mut Tables,
    ) -> Vec<usize> {
        if let Some(b) = batch.filter(|_| all) {
            // Every function new and numbered in the manifest's order (a
            // first load of an image whose modules are all reachable):
            // function `i` is trampoline `i`.
            let n = view.manifest.functions.len();
            let in_order = b.len() == n
                && (fn_tid.iter().enumerate()).all(|(fi, &t)| t == PENDING | fi as u32);
            if in_order && n > 0 {
                tables.functions = hcr_loader::FunctionTable::Strided {
                    base: b.get(0).code,
                    stride: trampoline::TRAMPOLINE_SIZE as u64,
                    len: n,
                };
                return Vec::new();
            }
        }
        // (Allocated here, not before the strided table above replaced it:
        // 200 KB of fresh pages at 25 000 functions.)
        tables.functions.make_listed(view.manifest.functions.len());
        let (ref_fns, ref_objs) = match all {
            true => ((0..view.manifest.functions.len()).collect(), Vec::new()),
            false => referenced(view, load),
        };
        for fi in ref_fns {
            let Some(&t) = fn_tid.get(fi) else {
                continue;
            };
            let addr = match t {
                NONE => 0,
                t if t & PENDING != 0 => batch.map_or(0, |b| b.get((t & !PENDING) as usize).code),
                t => self.functions.tramp(t).code,
            };
            tables.functions.set(fi, addr);
        }
        ref_objs
    }

    /// True when a global of a module loaded now changes size or needs a
    /// stricter alignment than its storage has (its storage moves): a kept
    /// segment may refer to it, so nothing can be kept (rare; decided before
    /// anything is allocated).
    fn global_moves(&self, m: &Manifest, reuse: &[u32], obj_gid: &[u32]) -> bool {
        (0..m.modules.len()).any(|mi| {
            reuse[mi] == NONE
                && m.reachable(mi)
                && m.modules[mi].objects.range().any(|oi| {
                    let g = obj_gid[oi];
                    g != NONE
                        && self.globals[g as usize]
                            .as_ref()
                            .is_some_and(|e| !keeps_storage(&e.g, &m.objects[oi]))
                })
        })
    }

    #[allow(clippy::type_complexity)]
    fn prepare_rest(
        &mut self,
        view: &ImageView<'_>,
        tables: &mut Tables,
        obj_gid: &mut Ids,
        (chunk, placed): (Option<hcr_loader::Chunk>, Option<PlacedGlobals>),
        place: &Placement,
        (load, ref_objs): (&[bool], &[usize]),
    ) -> Result<
        (
            Option<LoadedArea>,
            Vec<(usize, Global, bool)>,
            Vec<(u32, Vec<FieldValue>)>,
        ),
        Error,
    > {
        let free_chunk = |window: &mut Window, chunk: Option<hcr_loader::Chunk>| {
            if let Some(c) = chunk {
                // SAFETY: never published; nothing runs in it.
                unsafe { window.free(c) };
            }
        };
        // (Already placed and given their values, and the segments
        // relocated, when they were read: `placed`.)
        let (mut new_globals, rebase) = match placed {
            Some(g) => (g.new_globals, Some(g.rebase)),
            None => {
                let mut new_globals = Vec::new();
                let m = &view.manifest;
                let objects =
                    self.place_all_objects(m, tables, obj_gid, (load, ref_objs), &mut new_globals);
                if let Err(e) = objects {
                    self.free_unpublished(None, &new_globals);
                    free_chunk(&mut self.window, chunk);
                    return Err(e);
                }
                (new_globals, None)
            }
        };
        let relocated = rebase.is_some();
        crate::phases::mark("globals");
        let area = match chunk {
            None => None,
            Some(c) => {
                let window = &mut self.window;
                let loaded = match relocated {
                    true => hcr_loader::seal_segments(window, c, view, place, load),
                    false => {
                        let share: hcr_loader::Share<'_> = &crate::helper::lend;
                        hcr_loader::load_segments_shared(
                            window, c, view, tables, place, load, share,
                        )
                    }
                };
                match loaded {
                    Ok(a) => Some(a),
                    Err(e) => {
                        self.free_unpublished(None, &new_globals);
                        return Err(e.into());
                    }
                }
            }
        };
        crate::phases::mark("relocate");
        let done = match rebase {
            Some(r) => Ok(r),
            None => {
                let v = Values {
                    view,
                    tables,
                    place,
                };
                self.global_values(&v, obj_gid, load, &mut new_globals)
            }
        };
        match done {
            Ok(rebase) => Ok((area, new_globals, rebase)),
            Err(e) => {
                if let Some(area) = area {
                    // SAFETY: the area was never published.
                    unsafe { hcr_loader::unload_area(&mut self.window, area) };
                }
                self.free_unpublished(None, &new_globals);
                Err(e.into())
            }
        }
    }

    /// Everything the loaded modules' objects resolve to: host symbols,
    /// objects of kept segments, and the loaded modules' own objects (new
    /// ones allocated and pushed to `new_globals`, which the caller frees
    /// if anything fails).
    fn place_all_objects(
        &mut self,
        m: &Manifest,
        tables: &mut Tables,
        obj_gid: &mut Ids,
        (load, ref_objs): (&[bool], &[usize]),
        new_globals: &mut Vec<(usize, Global, bool)>,
    ) -> Result<(), Error> {
        self.resolve_hosts(m, tables, load)?;
        crate::tls::drop_staged();
        self.bind_kept_objects(m, tables, obj_gid, (load, ref_objs));
        self.place_objects(m, tables, obj_gid, load, new_globals)
    }

    /// Loads the libraries the image names (`hcr-link -l`) first, as
    /// `DT_NEEDED` ones are; then resolves the host symbols the segments
    /// loaded now refer to (kept segments were bound when they were
    /// loaded; a host symbol no module lists, such as the TLS descriptor
    /// resolver, is resolved every time) through the runtime's C API, then
    /// the process.
    fn resolve_hosts(&self, m: &Manifest, tables: &mut Tables, load: &[bool]) -> Result<(), Error> {
        crate::hostlibs::load_needed(m)?;
        let dso = self.dso_handle;
        let window = &self.window;
        let lookup = |name: &str| {
            if name == "__dso_handle" {
                return Some(dso);
            }
            (self.runtime_symbol)(name).or_else(|| {
                let c = CString::new(name).ok()?;
                hcr_loader::host_symbol(&c)
                    .or_else(|| compat_symbol(&c))
                    // Never a name the runtime itself exported for plugins
                    // (a function a reload removed is no host symbol).
                    .filter(|&a| !window.contains(a as usize))
            })
        };
        let mut defaults_loaded = false;
        let mut missing = vec![false; m.hosts.len()];
        let mut wanted: Vec<bool> = m.hosts.iter().map(|h| !h.listed).collect();
        for mi in marked(load) {
            let md = &m.modules[mi];
            for h in md.undefined.iter() {
                if let Some(w) = wanted.get_mut(h.0 as usize) {
                    *w = true;
                }
            }
        }
        for (hi, h) in m.hosts.iter().enumerate() {
            if !wanted[hi] {
                continue;
            }
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
        crate::hostlibs::check_missing(m, load, &missing)
    }

    /// Objects of kept segments that the loaded ones refer to (`ref_objs`)
    /// resolve to their storage.
    fn bind_kept_objects(
        &self,
        m: &Manifest,
        tables: &mut Tables,
        obj_gid: &[u32],
        (load, ref_objs): (&[bool], &[usize]),
    ) {
        for &oi in ref_objs {
            let o = &m.objects[oi];
            let mi = o.module.0 as usize;
            if load[mi] || !m.modules[mi].reachable {
                continue;
            }
            tables.objects[oi] = match obj_gid[oi] {
                NONE => 0,
                g => self.globals[g as usize].as_ref().map_or(0, |e| e.g.addr),
            };
        }
    }

    /// The loaded modules' objects: a kept global (same key, same size)
    /// resolves to its storage; a new or resized one is allocated now
    /// (pushed to `new_globals`, which the caller frees if anything fails).
    fn place_objects(
        &mut self,
        m: &Manifest,
        tables: &mut Tables,
        obj_gid: &mut Ids,
        load: &[bool],
        new_globals: &mut Vec<(usize, Global, bool)>,
    ) -> Result<(), Error> {
        // (At most every loaded object is new.)
        new_globals.reserve(
            marked(load)
                .map(|mi| m.modules[mi].objects.len() as usize)
                .sum(),
        );
        let loaded_objects =
            marked(load).flat_map(|mi| m.modules[mi].objects.range().zip(m.objects.part(mi)));
        for (oi, o) in loaded_objects {
            let kept = match obj_gid[oi] {
                NONE => None,
                g => self.globals[g as usize].as_ref().map(|e| &e.g),
            };
            match kept {
                Some(g) if keeps_storage(g, o) => {
                    tables.objects[oi] = g.addr;
                    if !g.tls {
                        // (A type that can now hold a pointer, in storage
                        // the scan did not read: read from now on. Marking
                        // more storage than a failed reload needed is
                        // harmless: the scan only keeps images longer.)
                        let (addr, size) = (g.addr, g.size);
                        self.heap.kept_with_align(addr, size, o.align);
                    }
                }
                other => {
                    let resized = other.is_some();
                    let addr = if o.tls {
                        crate::tls::alloc(o.size, o.align)?
                    } else {
                        self.heap.alloc(&mut self.window, o.size, o.align)?
                    };
                    tables.objects[oi] = addr;
                    Arc::make_mut(obj_gid)[oi] = PENDING | new_globals.len() as u32;
                    let g = Global {
                        addr,
                        size: o.size,
                        written: Vec::new(),
                        tls: o.tls,
                    };
                    new_globals.push((oi, g, resized));
                }
            }
        }
        Ok(())
    }

    /// The values of the loaded modules' globals: new pointer values of
    /// kept ones ([`State::kept_values`]), initial values of new ones.
    fn global_values(
        &self,
        v: &Values<'_, '_>,
        obj_gid: &[u32],
        load: &[bool],
        new_globals: &mut [(usize, Global, bool)],
    ) -> Result<Vec<(u32, Vec<FieldValue>)>, hcr_loader::LoadError> {
        let rebase = self.kept_values(v, obj_gid, load)?;
        init_new_globals(v, new_globals)?;
        Ok(rebase)
    }

    /// New pointer values of kept globals of the modules loaded now that
    /// hold pointers into the image (only those can need re-basing; a kept
    /// segment's globals point where they did). A thread-local variable's
    /// new initialiser is staged for threads born after the reload.
    fn kept_values(
        &self,
        v: &Values<'_, '_>,
        obj_gid: &[u32],
        load: &[bool],
    ) -> Result<Vec<(u32, Vec<FieldValue>)>, hcr_loader::LoadError> {
        let m = &v.view.manifest;
        let mut rebase = Vec::new();
        let loaded_objects = marked(load).flat_map(|mi| m.modules[mi].objects.range());
        for oi in loaded_objects {
            let g = obj_gid[oi];
            if g == NONE || g & PENDING != 0 {
                continue;
            }
            let Some(e) = &self.globals[g as usize] else {
                continue;
            };
            if e.g.tls {
                let values = v.of(oi, e.g.addr)?;
                crate::tls::stage(e.g.addr, initial_bytes(v.view, &m.objects[oi], &values));
            } else if e.g.written.iter().any(|f| f.class == TargetClass::Area) {
                rebase.push((g, v.of(oi, e.g.addr)?));
            }
        }
        Ok(rebase)
    }
}

/// What pointer fields of an object come to in the new image.
struct Values<'v, 'f> {
    view: &'v ImageView<'f>,
    tables: &'v Tables,
    place: &'v Placement,
}

impl Values<'_, '_> {
    /// [`Values::of`] of object `o` of the image, whose module's table of
    /// object fixups is `fixups`.
    fn of_object(
        &self,
        o: &hcr_image::Object,
        fixups: hcr_image::Fixups<'_>,
        addr: u64,
    ) -> Result<Vec<FieldValue>, hcr_loader::LoadError> {
        hcr_loader::object_values_of(self.view, o, fixups, addr, self.tables, self.place)
    }

    /// Object `oi`'s pointer fields for storage at `addr`.
    fn of(&self, oi: usize, addr: u64) -> Result<Vec<FieldValue>, hcr_loader::LoadError> {
        hcr_loader::object_values(
            self.view,
            ObjectId(oi as u32),
            addr,
            self.tables,
            self.place,
        )
    }
}

/// The loaded image's registry indices of module `mi` of `m`, when the
/// loaded module it matched (`omi`) was reachable and has the same
/// functions, by name and in order: a change inside function bodies.
fn same_functions<'c>(c: &'c Current, omi: usize, m: &Manifest, mi: usize) -> Option<&'c [u32]> {
    let om = c.manifest.modules.get(omi)?;
    let (olds, news) = (c.manifest.functions.part(omi), m.functions.part(mi));
    let ids = c.fn_tid.get(om.functions.range())?;
    let same = om.reachable
        && olds.len() == news.len()
        && !ids.contains(&NONE)
        && olds
            .iter()
            .zip(news)
            .all(|(o, n)| c.manifest.str(o.name) == m.str(n.name));
    same.then_some(ids)
}

/// Initialises new globals: initial bytes, then their pointer fields.
fn init_new_globals(
    v: &Values<'_, '_>,
    new_globals: &mut [(usize, Global, bool)],
) -> Result<(), hcr_loader::LoadError> {
    // (In order of position: one search of the part table, and of the
    // object fixups' tables, per module.)
    let m = &v.view.manifest;
    let mut objects = m.objects.cursor();
    let mut module: Option<(ModuleId, hcr_image::Fixups<'_>)> = None;
    for (oi, g, _) in new_globals {
        // (A position the table lacks fails as indexing it does.)
        let o = objects.get(*oi).unwrap_or_else(|| &m.objects[*oi]);
        let fixups = match module {
            Some((mi, t)) if mi == o.module => t,
            _ => {
                let t = v.view.object_fixup_table(o.module.0 as usize);
                module = Some((o.module, t));
                t
            }
        };
        let values = v.of_object(o, fixups, g.addr)?;
        if g.tls {
            crate::tls::init(g.addr, &initial_bytes(v.view, o, &values));
            continue;
        }
        // SAFETY: `g.addr` is a fresh heap allocation of `o.size` bytes, not
        // yet visible to any code.
        let dest = unsafe { std::slice::from_raw_parts_mut(g.addr as *mut u8, o.size as usize) };
        if let Some(init) = v.view.initial_bytes(o) {
            dest.copy_from_slice(init);
        }
        for f in &values {
            hcr_loader::write_value(dest, f.offset as usize, f.kind, f.value);
        }
        g.written = values;
    }
    Ok(())
}

/// What [`State::bind_while_reading`] works out beside the read, as it
/// stands when the read ends: the objects' placement and the values may
/// have failed (reported after a failed read, in the order one thread
/// would meet them).
struct Binding {
    indices: Indices,
    batch: Option<Batch>,
    ref_objs: Vec<usize>,
    /// The new globals placed (freed by the caller on any failure).
    new_globals: Vec<(usize, Global, bool)>,
    objects: Result<(), Error>,
    values: Result<Vec<(u32, Vec<FieldValue>)>, Error>,
}

/// What [`State::bind_while_reading`] worked out beside the read.
struct Bound {
    indices: Indices,
    /// The new functions' trampolines.
    batch: Option<Batch>,
    /// Objects of kept segments the loaded ones refer to.
    ref_objs: Vec<usize>,
    /// The loaded modules' globals.
    globals: PlacedGlobals,
}

/// The loaded modules' globals, placed and given their values.
struct PlacedGlobals {
    /// The new ones (storage allocated, initial values written).
    new_globals: Vec<(usize, Global, bool)>,
    /// New pointer values of kept ones.
    rebase: Vec<(u32, Vec<FieldValue>)>,
}

/// Registry indices of a new image ([`State::registry_indices`]).
struct Indices {
    fn_tid: Ids,
    obj_gid: Ids,
    /// Functions the registry lacks (`PENDING | i` in `fn_tid`).
    pending_fns: u32,
    identities: crate::identity::Decisions,
}

/// The whole huge pages of `chunk` (a first load's early area,
/// [`State::early_area`]) to fault in while the manifest is read: zeroing
/// 8 MiB of huge pages costs about 1 ms, which that read hides. At most
/// [`EARLY_FAULT_MAX`] bytes of them, so that a damaged header claiming a
/// vast area costs no more memory than that before the manifest refuses
/// it; the readers fault in the rest.
fn early_pages(chunk: Option<&hcr_loader::Chunk>) -> Vec<usize> {
    let mut pages = chunk.map(hcr_loader::mem::huge_pages).unwrap_or_default();
    pages.truncate(EARLY_FAULT_MAX / hcr_loader::mem::HUGE_PAGE);
    pages
}

/// Faults in `pages` (from [`early_pages`]), each taken once through
/// `next` by whichever thread runs this.
fn fault_in_pages(pages: &[usize], next: &AtomicUsize) {
    while let Some(&a) = pages.get(next.fetch_add(1, Ordering::Relaxed)) {
        // SAFETY: `a` starts a huge page of the early area chunk: fresh
        // from the window (zero-filled, read-write), and nothing reads or
        // writes it until the manifest's read is over, by when every
        // thread that runs this has returned; each page is taken by one
        // thread.
        unsafe { hcr_loader::mem::fault_in_zeroed(a) };
    }
}

/// The registry indices of a first load (nothing registered yet): every
/// reachable module's functions new, numbered in the manifest's order;
/// every global new. (What [`State::registry_indices`] works out module by
/// module, without its look-ups.)
fn first_indices(m: &Manifest) -> Indices {
    let mut fn_tid = vec![NONE; m.functions.len()];
    let mut pending = 0u32;
    for md in m.modules.iter().filter(|md| md.reachable) {
        if let Some(ids) = fn_tid.get_mut(md.functions.range()) {
            for (t, i) in ids.iter_mut().zip(pending..) {
                *t = PENDING | i;
            }
            pending += ids.len() as u32;
        }
    }
    Indices {
        fn_tid: Arc::new(fn_tid),
        obj_gid: Arc::new(vec![NONE; m.objects.len()]),
        pending_fns: pending,
        identities: crate::identity::Decisions::default(),
    }
}

/// Whether the kept global `g` keeps its storage (and value) as object
/// `o`: the same size, and (in the heap) storage aligned as `o` needs. A
/// thread-local variable's offset was placed for its block and is kept.
fn keeps_storage(g: &Global, o: &hcr_image::Object) -> bool {
    let align = u64::from(o.align.clamp(1, 4096));
    g.size == o.size && (g.tls || g.addr.is_multiple_of(align))
}

/// Where each reachable module's segment runs: a kept one where it ran in
/// `old` (the same bytes at the same address: area offset 0 of this image's
/// numbering moves by the segment's shift), the others marked to load.
/// Returns the placement of kept segments, their areas, and which modules
/// to load.
fn place_segments(
    old: Option<&Current>,
    m: &Manifest,
    reuse: &[u32],
    work: &mut ReloadWork,
) -> (Placement, ModuleAreas, Vec<bool>) {
    let mut place = Placement {
        vbase: vec![0; m.modules.len()],
    };
    let none = ModuleAreas::default();
    let mut areas = AreasFrom::new(m.modules.len(), old.map_or(&none, |c| &c.areas));
    let mut load = vec![false; m.modules.len()];
    for (i, &oi) in reuse.iter().enumerate().take(m.modules.len()) {
        // (Only a reachable module keeps a segment: `reuse_plan`.)
        match old.filter(|_| oi != NONE) {
            Some(c) => {
                // (Segment starts from the compact summaries: a kept module
                // is not looked at.)
                let oi = oi as usize;
                place.vbase[i] = c.place.vbase[oi]
                    .wrapping_add(u64::from(c.manifest.seg_start(oi)))
                    .wrapping_sub(u64::from(m.seg_start(i)));
                areas.keep(i, oi);
                work.modules_kept += 1;
            }
            None if m.reachable(i) => {
                load[i] = true;
                work.modules_loaded += 1;
                work.fixups_applied += u64::from(m.modules[i].fixups);
            }
            None => {}
        }
    }
    (place, areas.new, load)
}

/// What the reload's planning found, handed to the rest of `prepare`.
pub(super) struct Plan {
    diff: Diff,
    /// Per module: the old module whose segment it keeps, or `NONE`.
    reuse: Vec<u32>,
    /// Module records and manifest blocks decoded.
    decoded: (usize, usize),
    /// Per module: the old module of the same name, or `NONE`.
    matched: Vec<u32>,
    /// Initialisation order of the new manifest.
    order: Vec<ModuleId>,
}

/// The functions and objects (global indices) that the fixups of the
/// modules marked in `load`, and of their objects, refer to.
fn referenced(view: &ImageView<'_>, load: &[bool]) -> (Vec<usize>, Vec<usize>) {
    let (mut fns, mut objs) = (Vec::new(), Vec::new());
    let mut note = |class: TargetClass, target: u32| match class {
        TargetClass::Function => fns.push(target as usize),
        TargetClass::Object => objs.push(target as usize),
        _ => {}
    };
    let m = &view.manifest;
    for mi in marked(load) {
        for rec in view.module_fixups(mi).chunks_exact(hcr_image::FIXUP_SIZE) {
            if let Some(class) = TargetClass::from_u8(rec[13]) {
                note(class, u32::from_le_bytes([rec[4], rec[5], rec[6], rec[7]]));
            }
        }
        let fixups = view.object_fixup_table(mi);
        for o in m.objects.part(mi) {
            for f in fixups.iter(o.fixups) {
                note(f.class, f.target);
            }
        }
    }
    fns.retain(|&f| f < m.functions.len());
    objs.retain(|&o| o < m.objects.len());
    (fns, objs)
}

/// The outcome of one attempt at preparing.
pub(super) enum Prep {
    /// Prepared (or nothing to do).
    Done(Option<Box<Prepared>>),
    /// Try again loading every segment.
    Full,
}

/// A symbol that a native link takes from a static archive and that the
/// shared library exports only under an old, non-default version, so that
/// `dlsym` does not find it: `__builtin_cpu_supports` and
/// `__builtin_cpu_init` read `__cpu_model` and call `__cpu_indicator_init`
/// from libgcc.a, which libgcc_s.so.1 keeps as `GCC_4.8.0`.
/// Also a symbol an object asks for at a version of its own
/// (`__asm__(".symver memcpy,memcpy@GLIBC_2.2.5")`, as programs built to
/// run on older systems do): `name@VERSION`, found with `dlvsym`.
fn compat_symbol(name: &std::ffi::CStr) -> Option<u64> {
    let bytes = name.to_bytes();
    if let Some(at) = bytes.iter().position(|&b| b == b'@') {
        let version = bytes[at..].strip_prefix(b"@@").unwrap_or(&bytes[at + 1..]);
        let (base, version) = (
            std::ffi::CString::new(&bytes[..at]).ok()?,
            std::ffi::CString::new(version).ok()?,
        );
        return hcr_loader::host_symbol_version(&base, &version)
            .or_else(|| hcr_loader::host_symbol(&base));
    }
    match bytes {
        b"__cpu_model" | b"__cpu_indicator_init" => {
            hcr_loader::host_symbol_version(name, c"GCC_4.8.0")
        }
        _ => None,
    }
}
