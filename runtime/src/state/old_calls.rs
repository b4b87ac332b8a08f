//! Same-module calls in replaced code.
//!
//! Calls within a module are direct branches (a trampoline per call would
//! cost every call an indirect jump). A frame that was running when its
//! module was replaced keeps running the old code until it returns; without
//! more, its direct calls to functions of its own module would also run the
//! old code, while the same frame's calls to other modules, and every call
//! through a function pointer, run the new. A program's main loop calling
//! `update()` in its own file would never see an edit to `update`.
//!
//! So when a reload replaces a module that has a frame running, the direct
//! `call`/`jmp`/`jcc rel32` branches of its old segment to the entries of
//! its own global functions are pointed at those functions' permanent
//! addresses (static and hidden functions are left alone: the compiler's
//! callers may rely on their bodies, see [`redirectable`]),
//! once the new code is live: an old frame's next call runs the new
//! version, as a call across modules does; while a later reload has
//! removed the function, the branch goes back to the old copy it was built
//! with. Frames are looked for, conservatively, on the reloading thread's
//! stack and on the stack of the thread that loaded the image (the
//! program's main thread, when another thread reloads: `hcr run
//! --auto-reload`); other threads' old frames keep their direct calls. The
//! branches are found by decoding the old functions (`iced-x86`, about
//! 250 MB/s, only for the replaced modules that have such a frame, so a
//! reload that replaces every module pays nothing for the others), and
//! changed by copying the pages that hold them,
//! patching the copy, making it read+execute and moving it over the old
//! pages with one `mremap`: a thread running there sees the old page or the
//! new one, each whole, and only the 4-byte displacement of a branch
//! differs between them, never an instruction boundary. No page is ever
//! writable and executable.

use iced_x86::{Decoder, DecoderOptions, Instruction, OpKind};

use super::functions::Functions;
use super::{Current, Diff, NONE};
use hcr_image::ModuleId;

/// The same-module branches of the replaced modules (`diff`'s
/// `old_touched`, in `c`, the image being replaced) that have a frame on
/// the scanned stacks; [`sync`] points them at their permanent addresses.
pub(super) fn running(c: &Current, diff: &Diff) -> Vec<Site> {
    if diff.old_touched.is_empty() {
        return Vec::new();
    }
    let mut words = crate::stack::stack_words().unwrap_or_default();
    words.extend(crate::stack::loader_stack_words());
    let running = with_frames(c, &diff.old_touched, &words);
    if running.is_empty() {
        return Vec::new();
    }
    find(c, &running)
}

/// Points each branch of `sites` at its function's permanent address while
/// the function exists, and back at its old copy while it does not (a
/// reload removed it: the old frame keeps calling the copy it was built
/// with rather than the removed-function stub). Returns the branches
/// changed. Best effort: a run of pages that cannot be replaced keeps its
/// branches as they were, and its sites their state, so the next reload
/// tries them again.
///
/// # Safety
/// Every site must lie in code that is still mapped (its area not freed),
/// and nothing else may patch them meanwhile (the state lock is held).
pub(super) unsafe fn sync(sites: &mut [Site], functions: &Functions) -> usize {
    // (Field, its new bytes, the site.)
    let mut fields: Vec<(u64, [u8; 4], usize)> = Vec::new();
    // Functions removed while old code still calls them, said once each.
    let mut stale: Vec<u32> = Vec::new();
    for (k, s) in sites.iter_mut().enumerate() {
        let live = (s.t as usize) < functions.len() && functions.removed_stub(s.t).is_none();
        if !live && (s.via_tramp || !s.seen) {
            stale.push(s.t);
        }
        s.seen = true;
        if live == s.via_tramp {
            continue;
        }
        let to = match live {
            true => functions.tramp(s.t).code,
            false => s.direct,
        };
        let Ok(rel) = i32::try_from(to as i64 - s.next as i64) else {
            continue;
        };
        fields.push((s.field, rel.to_le_bytes(), k));
    }
    stale.sort_unstable();
    stale.dedup();
    for t in stale {
        if (t as usize) < functions.len() {
            crate::warn::warn(format_args!(
                "{}:{} was removed, but old code of {} that may still be running calls \
                 it: such a call runs its old version",
                functions.module(t),
                functions.name(t),
                functions.module(t),
            ));
        }
    }
    // SAFETY: passed on from the caller.
    let written = unsafe { patch(fields) };
    // A site whose pages could not be replaced keeps its state, and is
    // tried again at the next reload.
    for &k in &written {
        sites[k].via_tramp = !sites[k].via_tramp;
    }
    written.len()
}

/// Drops the sites inside `[lo, hi)` (an area about to be unmapped).
pub(super) fn forget_area(sites: &mut Vec<Site>, lo: u64, hi: u64) {
    sites.retain(|s| !(lo <= s.field && s.field < hi));
}

/// The modules among `modules` whose loaded segment holds one of `words`.
fn with_frames(c: &Current, modules: &[ModuleId], words: &[usize]) -> Vec<ModuleId> {
    let m = &c.manifest;
    let mut ranges: Vec<(u64, u64, ModuleId)> = modules
        .iter()
        .filter(|&&ModuleId(mi)| c.areas.get(mi as usize).is_some())
        .filter_map(|&id| {
            let md = m.modules.get(id.0 as usize)?;
            let start = c.place.vbase[id.0 as usize].wrapping_add(u64::from(md.seg.start));
            (!md.seg.is_empty()).then(|| (start, start + u64::from(md.seg.len()), id))
        })
        .collect();
    ranges.sort_unstable_by_key(|r| r.0);
    let mut hit = vec![false; ranges.len()];
    for &w in words {
        let w = w as u64;
        let k = ranges.partition_point(|r| r.0 <= w);
        if k > 0 && w < ranges[k - 1].1 {
            hit[k - 1] = true;
        }
    }
    ranges
        .iter()
        .zip(&hit)
        .filter(|(_, &h)| h)
        .map(|(r, _)| r.2)
        .collect()
}

/// A direct branch of old code to a function of its own module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Site {
    /// Address of the branch's 4-byte displacement.
    field: u64,
    /// Address of the end of the branch (what the displacement is from).
    next: u64,
    /// The function's old copy, which the branch first went to.
    direct: u64,
    /// Registry index of the function branched to.
    t: u32,
    /// The branch goes to the permanent address now (else to `direct`).
    via_tramp: bool,
    /// [`sync`] has seen it (a removed function is said once).
    seen: bool,
}

/// The direct branches in the loaded segments of `modules` (indices into
/// the loaded manifest) to entries of functions of the same module.
fn find(c: &Current, modules: &[ModuleId]) -> Vec<Site> {
    let m = &c.manifest;
    let mut sites = Vec::new();
    let mut entries: Vec<(u64, u32)> = Vec::new();
    for &ModuleId(mi) in modules {
        let mi = mi as usize;
        let Some(md) = m.modules.get(mi) else {
            continue;
        };
        if c.areas.get(mi).is_none() {
            continue;
        }
        entries.clear();
        for fi in md.functions.range() {
            let t = c.fn_tid.get(fi).copied().unwrap_or(NONE);
            let f = &m.functions[fi];
            if t != NONE && redirectable(f) {
                entries.push((c.func_addr(fi), t));
            }
        }
        entries.sort_unstable();
        for fi in md.functions.range() {
            let size = m.functions[fi].size as usize;
            if size == 0 {
                continue;
            }
            let start = c.func_addr(fi);
            // SAFETY: the function's bytes lie in its module's segment, in
            // an area this image holds (`c.areas`), mapped readable while
            // `c` is alive; nothing writes them (areas are read+execute).
            let code = unsafe { std::slice::from_raw_parts(start as *const u8, size) };
            branches_to(code, start, &entries, &mut sites);
        }
    }
    sites
}

/// Whether calls to `f` may be sent to another version of it: a global
/// function of default visibility. Under `-fPIC` such a function may be
/// interposed, so its callers assume nothing of it beyond the ABI (as
/// calls across modules do). A static or hidden function binds locally:
/// gcc's callers may rely on its body (`-fipa-ra` keeps values in the
/// registers it does not clobber, IPA constant propagation, clones such as
/// `f.constprop.0` with their own conventions), and a new version could
/// break what the old caller relies on. Those calls stay in the old code.
fn redirectable(f: &hcr_image::Function) -> bool {
    f.global && !f.hidden && !f.indirect
}

/// Appends the `rel32` branches in `code` (at `ip`) whose target is one of
/// `entries` (sorted by address).
fn branches_to(code: &[u8], ip: u64, entries: &[(u64, u32)], out: &mut Vec<Site>) {
    let mut d = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    let mut ins = Instruction::default();
    while d.can_decode() {
        d.decode_out(&mut ins);
        // (`call`, `jmp` and `jcc` with a 32-bit displacement; the short
        // forms are checked out by the displacement test below.)
        if ins.is_invalid() || ins.op0_kind() != OpKind::NearBranch64 || ins.len() < 5 {
            continue;
        }
        let target = ins.near_branch_target();
        let Ok(k) = entries.binary_search_by_key(&target, |e| e.0) else {
            continue;
        };
        // The displacement is the branch's last four bytes (after any
        // prefix and the opcode); checked against the decoded target.
        let next = ins.next_ip();
        let at = (next - 4).wrapping_sub(ip) as usize;
        let Some(b) = code.get(at..at + 4) else {
            continue;
        };
        let rel = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if next.wrapping_add(rel as i64 as u64) != target {
            continue;
        }
        out.push(Site {
            field: next - 4,
            next,
            direct: target,
            t: entries[k].1,
            via_tramp: false,
            seen: false,
        });
    }
}

/// Writes each `(address, bytes, site)` of `fields` into code, a run of
/// pages at a time. Returns the sites written.
///
/// # Safety
/// As [`sync`].
unsafe fn patch(mut fields: Vec<(u64, [u8; 4], usize)>) -> Vec<usize> {
    const PAGE: u64 = 4096;
    fields.sort_unstable_by_key(|f| f.0);
    let mut done = Vec::with_capacity(fields.len());
    let mut i = 0;
    while i < fields.len() {
        // A run of pages: the fields on them, each page touched by one.
        let lo = fields[i].0 & !(PAGE - 1);
        let mut hi = (fields[i].0 + 4).div_ceil(PAGE) * PAGE;
        let mut j = i + 1;
        while j < fields.len() && fields[j].0 < hi + PAGE {
            hi = hi.max((fields[j].0 + 4).div_ceil(PAGE) * PAGE);
            j += 1;
        }
        // SAFETY: passed on: the pages hold loaded code that stays mapped.
        if unsafe { replace_pages(lo, hi, &fields[i..j]) } {
            done.extend(fields[i..j].iter().map(|f| f.2));
        }
        i = j;
    }
    done
}

/// Replaces the pages `[lo, hi)` with a copy that has `fields` written.
///
/// # Safety
/// As [`sync`].
unsafe fn replace_pages(lo: u64, hi: u64, fields: &[(u64, [u8; 4], usize)]) -> bool {
    let len = (hi - lo) as usize;
    // SAFETY: a fresh private anonymous mapping, filled from the old pages
    // (mapped readable, as the caller vouches), patched, made read+execute,
    // then moved over the old pages with one `mremap` (which unmaps what
    // lay there); on any failure it is unmapped and the old pages stay.
    unsafe {
        let tmp = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if tmp == libc::MAP_FAILED {
            return false;
        }
        std::ptr::copy_nonoverlapping(lo as *const u8, tmp.cast::<u8>(), len);
        for (at, bytes, _) in fields {
            let off = (at - lo) as usize;
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), tmp.cast::<u8>().add(off), 4);
        }
        let moved = libc::mprotect(tmp, len, libc::PROT_READ | libc::PROT_EXEC) == 0
            && libc::mremap(
                tmp,
                len,
                len,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                lo as *mut libc::c_void,
            ) != libc::MAP_FAILED;
        if !moved {
            libc::munmap(tmp, len);
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_rel32_branches_to_entries_only() {
        // call f (e8), jmp f (e9), jne f (0f 85), call g (not an entry),
        // a short jmp (eb), and a mov whose immediate holds e8 bytes.
        let ip = 0x1000u64;
        let f = 0x2000u64;
        let mut code = Vec::new();
        let rel = |at: usize, len: usize| (f as i64 - (ip as i64 + (at + len) as i64)) as i32;
        code.push(0xe8);
        code.extend(rel(0, 5).to_le_bytes());
        let at = code.len();
        code.push(0xe9);
        code.extend(rel(at, 5).to_le_bytes());
        let at = code.len();
        code.extend([0x0f, 0x85]);
        code.extend(rel(at, 6).to_le_bytes());
        code.push(0xe8);
        code.extend(0x100i32.to_le_bytes());
        code.extend([0xeb, 0x00]);
        code.push(0xb8); // mov eax, imm32 holding e8 00 10 00
        code.extend([0xe8, 0x00, 0x10, 0x00]);
        let mut out = Vec::new();
        branches_to(&code, ip, &[(f, 7)], &mut out);
        let fields: Vec<u64> = out.iter().map(|s| s.field - ip).collect();
        assert_eq!(fields, vec![1, 6, 12]);
        assert!(out.iter().all(|s| s.t == 7));
        assert_eq!(out[2].next, ip + 16);
    }
}
