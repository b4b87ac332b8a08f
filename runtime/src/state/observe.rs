//! What debuggers, profilers and crash reports are told about a live image.

use super::*;

/// Where the line table of an image lies, for crash reports.
pub(super) fn crash_lines(d: &crate::gdb_jit::DebugSections) -> Option<crate::crash::LineSource> {
    Some(crate::crash::LineSource {
        line: d.find(".debug_line")?,
        line_str: d.find(".debug_line_str"),
        str_: d.find(".debug_str"),
        info: d
            .find(".debug_info")
            .zip(d.find(".debug_abbrev"))
            .map(|(info, abbrev)| crate::inlined::InfoSections {
                info,
                abbrev,
                str_: d.find(".debug_str"),
                line_str: d.find(".debug_line_str"),
                str_offsets: d.find(".debug_str_offsets"),
                addr: d.find(".debug_addr"),
                rnglists: d.find(".debug_rnglists"),
                ranges: d.find(".debug_ranges"),
            }),
        file: d.file.try_clone().ok()?,
    })
}

impl State {
    /// Appends the live image's functions and their compiler clones, every
    /// trampoline and every removed-function stub to `/tmp/perf-PID.map`.
    pub(super) fn write_perf_map(&self, generation: u32) {
        use crate::perf_map::line;
        let Some(c) = self.current.as_ref() else {
            return;
        };
        let m = &c.manifest;
        let mut out = String::new();
        for (fi, f) in m.functions.iter().enumerate() {
            if m.modules[f.module.0 as usize].reachable && f.size > 0 {
                line(
                    &mut out,
                    c.func_addr(fi),
                    u64::from(f.size),
                    format_args!(
                        "{}:{} [hcr generation {generation}]",
                        m.module_name(f.module),
                        m.str(f.name)
                    ),
                );
            }
        }
        for (mi, md) in m.modules.iter().enumerate() {
            for p in md.clones_in_segment().filter(|_| md.reachable) {
                line(
                    &mut out,
                    c.place.addr_from(m, mi, p.offset),
                    u64::from(p.size),
                    format_args!(
                        "{}:{} [hcr generation {generation}]",
                        m.str(md.name),
                        m.str(p.name)
                    ),
                );
            }
        }
        for (t, module, name) in self.functions.named() {
            line(
                &mut out,
                self.functions.tramp(t).code,
                trampoline::TRAMPOLINE_SIZE as u64,
                format_args!("{module}:{name} [hcr trampoline]"),
            );
            if let Some(a) = self.functions.removed_stub(t) {
                line(
                    &mut out,
                    a,
                    trampoline::STUB_SIZE as u64,
                    format_args!("{module}:{name} [hcr removed-function stub]"),
                );
            }
        }
        crate::perf_map::append(&out);
    }

    /// Registers the live image with debuggers (the GDB JIT interface).
    pub(super) fn register_with_debuggers(
        &mut self,
        debug: Option<&crate::gdb_jit::DebugSections>,
    ) {
        self.register_trampolines_with_debuggers();
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
        // One object per image loaded in one piece (under a debugger every
        // reload loads the whole image, see `reuse_plan`).
        let m = &c.manifest;
        let reachable = || m.modules.iter().enumerate().filter(|(_, md)| md.reachable);
        let Some(base) = reachable().map(|(i, _)| c.place.vbase[i]).next() else {
            return;
        };
        if reachable().any(|(i, _)| c.place.vbase[i] != base) {
            return;
        }
        // gdb reads one `.eh_frame` per object: the load's tables joined,
        // claiming to lie where the first one does.
        let eh_addr = m
            .modules
            .iter()
            .find(|md| md.reachable)
            .map_or(base, |md| base.wrapping_add(u64::from(md.eh_frame.start)));
        let joined = c
            .areas
            .distinct()
            .first()
            .map(|a| a.loaded.joined_unwind_table(eh_addr))
            .unwrap_or_default();
        let eh_frame = &joined[..];
        let object = crate::gdb_jit::build_object(&crate::gdb_jit::ImageDesc {
            manifest: m,
            base,
            eh_frame,
            eh_frame_addr: eh_addr,
            objects: &objects,
            debug,
        });
        let base = base as usize;
        self.jit.add(base, object);
    }

    /// Describes each trampoline batch not yet registered to debuggers (a
    /// debugger's `step` goes through a trampoline into the function).
    fn register_trampolines_with_debuggers(&mut self) {
        let size = trampoline::TRAMPOLINE_SIZE as u64;
        for b in &self.batches[self.jit.batches().min(self.batches.len())..] {
            let code = b.code.addr as u64;
            let names: Vec<String> = match self.functions.owner(code) {
                Some(first) => (first..first + b.len() as u32)
                    .map(|t| self.functions.name(t).to_string())
                    .collect(),
                None => Vec::new(),
            };
            let object =
                crate::gdb_jit::build_trampolines_object(code, b.len() as u64 * size, size, &names);
            self.jit.add_batch(object);
        }
    }
}
