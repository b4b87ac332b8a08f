//! Reloads prepared ahead. When the image changes, the watcher thread
//! prepares the reload it asks for (everything up to the point of no
//! return: read, verify, place, relocate, allocate new globals) while the
//! program runs on; the program's next `hcr_perform_code_reload()` finds
//! it ready and only commits it. Preparing touches no live state, so a
//! reload prepared ahead is the reload the program would have prepared
//! itself, provided the file and the live image are still the ones it was
//! prepared from; otherwise it is discarded (everything it made is freed)
//! and the program's call prepares afresh.

use super::*;

/// A reload prepared before the program asked for it.
pub(super) struct Ahead {
    prepared: Prepared,
    /// [`State::live_version`] when it was prepared.
    live_version: u64,
    /// Whether it was prepared for a debugger (every module loaded).
    debugger: bool,
    /// The thread-local variables' template length before and after it
    /// was prepared (new thread-local variables take offsets from it).
    tls: (usize, usize),
}

impl State {
    /// Prepares the reload the image on disk asks for, if it differs from
    /// the live image and was not prepared yet, and keeps it for the next
    /// reload. A failure is dropped: the program's reload prepares again
    /// and reports it.
    pub fn prepare_ahead(&mut self) {
        self.unmap_dead();
        if !self.prepare_ahead || self.in_reload.is_some() || self.current.is_none() {
            return;
        }
        let path = self.path.clone();
        let Ok(file) = ImageFile::open(&path, self.allow_insecure_image) else {
            self.drop_ahead();
            return;
        };
        if self.holds_current(&file).unwrap_or(false) {
            self.drop_ahead();
            return;
        }
        // A change was reported: a preparation whose status is racy may
        // have read the file before a rewrite in the same clock tick, so
        // it is kept only when its status vouches for the file.
        if self
            .ahead
            .as_ref()
            .is_some_and(|a| self.fresh(a, &file.stat) && a.prepared.stat.vouches_for(&file.stat))
        {
            return;
        }
        self.drop_ahead();
        let before = crate::tls::reserved();
        let r = self.prepare_from(&file);
        let tls = (before, crate::tls::reserved());
        match r {
            Ok(Some(prepared)) => {
                // `hcr_has_any_module_changed` answers from it too.
                self.disk = DiskCache {
                    stat: Some(prepared.stat),
                    diff: prepared.diff.clone(),
                };
                self.ahead = Some(Ahead {
                    prepared,
                    live_version: self.live_version,
                    debugger: crate::gdb_jit::wanted(),
                    tls,
                });
            }
            _ => crate::tls::unreserve(tls.0, tls.1),
        }
    }

    /// The reload prepared ahead, when the file is still the one it read
    /// (one `stat`: it also finds the file still reachable, since a reload
    /// of a file this process can no longer reach must fail as it would
    /// have without the preparation) and it was prepared against the live
    /// image: taken without opening the file. A stale one (or one whose file
    /// cannot be reached now) is discarded.
    pub(super) fn take_ahead_unchanged(&mut self) -> Option<Prepared> {
        let a = self.ahead.take()?;
        match FileStat::of(&self.path) {
            Ok(stat) if self.fresh(&a, &stat) => {
                let mut p = a.prepared;
                p.work.prepared_ahead = true;
                Some(p)
            }
            _ => {
                self.discard(a);
                None
            }
        }
    }

    /// Whether `a` is what preparing the file whose status is `stat` now
    /// would give. A racy status ([`FileStat::vouches_for`]) is taken at
    /// its word here: the image was on disk when it was read, and the
    /// status goes with the reload into the live image, where it vouches
    /// for nothing, so the next exact check reads the file again and finds
    /// a rewrite made within the same clock tick.
    fn fresh(&self, a: &Ahead, stat: &FileStat) -> bool {
        a.prepared.stat.same_fields(stat)
            && a.live_version == self.live_version
            && a.debugger == crate::gdb_jit::wanted()
    }

    /// Whether a reload prepared ahead from the file as it is now waits.
    pub(super) fn ahead_ready(&self) -> bool {
        self.ahead
            .as_ref()
            .is_some_and(|a| FileStat::of(&self.path).is_ok_and(|stat| self.fresh(a, &stat)))
    }

    /// Discards the reload prepared ahead, if any.
    pub(super) fn drop_ahead(&mut self) {
        if let Some(a) = self.ahead.take() {
            self.discard(a);
        }
    }

    /// Frees what preparing `a` made: its trampolines, the area its
    /// segments were loaded in, its new globals, its thread-local offsets
    /// and staged initial bytes.
    fn discard(&mut self, a: Ahead) {
        let Prepared {
            area,
            areas,
            new_trampolines,
            new_globals,
            ..
        } = a.prepared;
        drop(areas);
        if let Some(b) = new_trampolines {
            // SAFETY: the batch was never published; no code can reach it.
            unsafe { b.free_unpublished(&mut self.window) };
        }
        if let Some(area) = area.and_then(|a| Arc::try_unwrap(a).ok()) {
            // SAFETY: the area was never published: no code runs in it and
            // no pointer into it was handed out (the new globals that may
            // point into it are freed below).
            unsafe { hcr_loader::unload_area(&mut self.window, area.loaded) };
        }
        for (_, g, _) in &new_globals {
            self.heap.free_global(g);
        }
        crate::tls::drop_staged();
        crate::tls::unreserve(a.tls.0, a.tls.1);
    }
}
