//! Reclaim: free what no code can run in any more; shut down; roll back to
//! the previous image after a guarded crash.

use super::*;

impl State {
    /// Frees retired images that no code can run in any more: ones retired
    /// at least [`KEEP_RELOADS`] reloads and [`KEEP_TIME`] ago (threads
    /// that entered them before the swap have returned), into which no word
    /// of the calling thread's stack points (a conservative scan: it finds
    /// every return address), and into which no persistent global points.
    pub fn reclaim(&mut self) {
        let latest = self.generation;
        let due =
            |r: &Retired| r.generation + KEEP_RELOADS <= latest && r.at.elapsed() >= KEEP_TIME;
        // Retired in order, so the ones old enough come first: only they
        // are looked at (reloads in quick succession retire many images
        // within the grace period).
        let n = self.retired.partition_point(due);
        if n == 0 {
            return; // nothing old enough: skip the stack walk
        }
        let young = self.retired.split_off(n);
        // An old image's areas that the live image does not run in.
        let mut live: Vec<usize> = self
            .current
            .as_ref()
            .map(|c| c.distinct_areas().iter().map(|a| a.loaded.base).collect())
            .unwrap_or_default();
        live.sort_unstable();
        let (mut keep, mut check) = (Vec::new(), Vec::new());
        for r in std::mem::take(&mut self.retired) {
            let own: Vec<(usize, usize)> = r
                .areas()
                .iter()
                .map(|a| &a.loaded)
                .filter(|a| live.binary_search(&a.base).is_err())
                .map(LoadedArea::range)
                .collect();
            // One that runs only in areas the live image keeps is dropped:
            // that frees nothing code could be running in.
            if !own.is_empty() {
                check.push((r, own));
            }
        }
        if !check.is_empty() {
            match crate::stack::stack_words() {
                // The stack cannot be scanned: keep every old image.
                None => keep.extend(check.into_iter().map(|(r, _)| r)),
                Some(stack) => {
                    let mut used = vec![false; check.len()];
                    let all = check.iter().flat_map(|(_, own)| own.iter());
                    let lo = all.clone().map(|r| r.0).min().unwrap_or(0);
                    let hi = all.map(|r| r.1).max().unwrap_or(0);
                    // Each word marks the old images it points into; one pass
                    // over the stack, the globals and the thread-local blocks.
                    let mut note = |w: u64| {
                        let w = w as usize;
                        if w < lo || w >= hi {
                            return false;
                        }
                        for (k, (_, own)) in check.iter().enumerate() {
                            used[k] |= own.iter().any(|&(lo, hi)| lo <= w && w < hi);
                        }
                        used.iter().all(|&u| u)
                    };
                    let _ = stack.iter().any(|&a| note(a as u64))
                        || self.heap.any_word_in(lo as u64, hi as u64, &mut note)
                        || crate::tls::any_word(&mut note);
                    for ((r, _), u) in check.into_iter().zip(used) {
                        if u {
                            keep.push(r);
                        }
                    }
                }
            }
        }
        keep.extend(young);
        self.retired = keep;
        self.free_unused_areas();
    }

    /// Unmaps the areas no image (live or retired) runs in any more.
    ///
    /// While the preparing thread runs, it unmaps them ([`State::unmap_dead`]
    /// at its next wake-up, the next change of the image); the program's
    /// reload only withdraws them from crash reports and debuggers.
    pub(super) fn free_unused_areas(&mut self) {
        let later = self.prepare_ahead && crate::watcher::preparing();
        let mut i = 0;
        while i < self.areas.len() {
            if Arc::strong_count(&self.areas[i]) > 1 {
                i += 1;
                continue;
            }
            let a = self.areas.swap_remove(i);
            if let Ok(a) = Arc::try_unwrap(a) {
                let lo = a.loaded.base as u64;
                super::old_calls::forget_area(&mut self.old_calls, lo, lo + a.loaded.len() as u64);
                self.jit.remove(a.loaded.base);
                crate::crash::withdraw(a.loaded.base as u64);
                self.dead.push(a);
            }
        }
        if !later {
            self.unmap_dead();
        }
    }

    /// Unmaps the areas [`State::free_unused_areas`] found unused.
    pub(super) fn unmap_dead(&mut self) {
        for a in std::mem::take(&mut self.dead) {
            // SAFETY: see `reclaim` and ARCHITECTURE.md ("When an old image
            // is freed"): no image holds the area, and the images that did
            // were checked before they were dropped.
            unsafe { hcr_loader::unload_area(&mut self.window, a.loaded) };
        }
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
        self.drop_ahead();
        self.live_version += 1;
        self.jit.clear();
        self.globals.clear();
        self.global_index = LazyIndex::new();
        // SAFETY: shutdown is the last use of the runtime; the caller (hcr_shutdown)
        // documents that no image code may run afterwards.
        unsafe { self.heap.release(&mut self.window) };
        self.current = None;
        self.retired.clear();
        // As above: no image code runs any more.
        self.free_unused_areas();
        self.unmap_dead();
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
        let pos = self.retired.iter().rposition(|r| {
            r.generation + 1 == crashed && matches!(r.image, RetiredImage::Whole(_))
        })?;
        let prev = self.retired.remove(pos);
        // (Found whole above: this never returns.)
        let RetiredImage::Whole(prev_image) = prev.image else {
            return None;
        };
        let crashed_image = self.current.take()?;
        // Globals the crashed reload kept under other keys get theirs back.
        let rekeyed = std::mem::take(&mut self.rekeyed);
        self.set_keys(rekeyed);
        // The globals the crashed reload removed or replaced come back,
        // with their values: the restored code uses them.
        for (gid, e) in std::mem::take(&mut self.gone_globals) {
            // (A global the crashed image re-created with another size
            // gives way to the one the restored code knows.)
            let newer = index_get(self.global_index(), &e.module, &e.name).filter(|&c| c != gid);
            if let Some(n) = newer.and_then(|c| self.globals.get_mut(c as usize)?.take()) {
                super::commit::set_destructors_live(&n.g, false);
                self.heap.free_global(&n.g);
            }
            let Some(slot) = self.globals.get_mut(gid as usize) else {
                self.heap.free_global(&e.g);
                continue;
            };
            index_put(&mut self.global_index, &e.module, &e.name, gid);
            super::commit::set_destructors_live(&e.g, true);
            *slot = Some(e);
        }
        let every: Vec<ModuleId> = (0..prev_image.manifest.modules.len() as u32)
            .map(ModuleId)
            .collect();
        crate::crash::retire_segments(&prev_image.segment_starts(&every), 0, true);
        let mut live = vec![false; self.functions.len()];
        for (fi, &t) in prev_image.fn_tid.iter().enumerate() {
            if t == NONE || t as usize >= self.functions.len() {
                continue;
            }
            let code = prev_image.func_addr(fi);
            trampoline::store_slot(
                self.functions.tramp(t).slot,
                jump_target(&prev_image.manifest.functions[fi], code),
            );
            self.functions.set_removed_stub(t, None);
            live[t as usize] = true;
        }
        let gone: Vec<u32> = crashed_image
            .fn_tid
            .iter()
            .copied()
            .filter(|&t| t != NONE && !live[t as usize])
            .collect();
        self.stub_removed(&gone);
        let stat = crashed_image.stat;
        for r in &mut self.retired {
            r.slim();
        }
        self.retired.push(Retired {
            image: RetiredImage::Whole(Box::new(crashed_image)),
            generation: crashed,
            at: std::time::Instant::now(),
        });
        let mut restored = *prev_image;
        // The crashed file counts as loaded: nothing to reload until the
        // image on disk changes.
        restored.stat = stat;
        self.current = Some(restored);
        self.live_version += 1;
        self.disk = DiskCache::default();
        Some(prev.generation)
    }
}
