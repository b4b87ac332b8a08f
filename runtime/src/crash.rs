//! Crash reports: a fatal signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT)
//! in module code prints
//! `hcr: crash: SIGNAL in MODULE:FUNCTION (FILE:LINE), image generation N`
//! and then the module frames of the stack, one per line in the same form,
//! before the process dies of the signal as it would have (the handler the
//! program had installed before, or the default action: core dump, exit
//! status, a debugger's view unchanged).
//!
//! The handler runs on an alternate stack and is async-signal-safe: it
//! allocates nothing and takes no lock. What it reads is prepared at load:
//! per mapped image a [`Table`] (function ranges sorted by address, their
//! `module:function` names, and where the image's `.debug_line` lies in
//! its file, read with `pread` only when a crash happens). Memory it is not
//! sure of (the stack above the faulting frame, code bytes before a return
//! address) is read with `process_vm_readv` on this process, which fails
//! instead of faulting.
//!
//! The frames are found by the call frame information (`.eh_frame`),
//! with an allocation-free unwinder (`unwind.rs`): module code by the
//! tables its image carries, code outside the image (the C library, the
//! C++ runtime, the host) by the tables its loaded object registers
//! (`_dl_find_object`, lock-free). libgcc's unwinder is neither
//! async-signal-safe nor lock-free. Where a table is missing or says
//! something the unwinder does not follow, the rest of the stack is
//! scanned for words that are return addresses into module code (the
//! word follows a call instruction there); a stale return address left
//! in a dead part of a frame can then show up as an extra frame.
//!
//! A crash outside module code (the host, the runtime, a library) is
//! reported when module code called it (a module frame is on the stack:
//! `abort()` from an `assert`, `strlen(NULL)`), named after the innermost
//! module frame; otherwise it is not reported and the signal goes on to the
//! previous handler or the default action as if hcr were not there.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use crate::unwind::{Regs, Up};

/// The signals handled.
const SIGNALS: [libc::c_int; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
];

/// Most images mapped at once that crash reports can name.
const SLOTS: usize = 4096;
/// Most module frames listed.
const MAX_FRAMES: usize = 256;
/// Bytes of stack scanned for return addresses.
const SCAN_BYTES: usize = 256 * 1024;
/// Size of the alternate signal stack.
const ALT_STACK: usize = 64 * 1024;

/// Where an image's line table lies in its file.
pub struct LineSource {
    /// The image file (a duplicate descriptor of the one loaded).
    pub file: std::fs::File,
    /// `.debug_line`: file offset and size.
    pub line: (u64, u64),
    /// `.debug_line_str`, when present.
    pub line_str: Option<(u64, u64)>,
    /// `.debug_str`, when present.
    pub str_: Option<(u64, u64)>,
    /// The unit entries, for inlined calls (`crate::inlined`).
    pub info: Option<crate::inlined::InfoSections>,
}

/// What a crash report needs of one mapped area (the module segments one
/// load placed together).
pub struct Table {
    /// The newest generation whose image runs code in this area (updated
    /// when a reload keeps its modules).
    generation: std::sync::atomic::AtomicU32,
    /// Run-time address of the area.
    pub base: u64,
    /// Run-time range `[start, end)` of the area.
    pub text: (u64, u64),
    /// Functions and clones named by copy: `(offset in the area, size,
    /// name start, name length, module)` sorted by offset; `module`
    /// indexes `modules`. (A module's functions are named by its shared
    /// records instead, [`Seg::fns`], when its names lie in its own table.)
    funcs: Vec<(u32, u32, u32, u32, u32)>,
    /// Each segment here, sorted by offset: turns an address into the
    /// offset the line table uses and the generation its code belongs to.
    segs: Vec<Seg>,
    /// `(name start, name length)` of each module here.
    modules: Vec<(u32, u32)>,
    /// Module names, and the names copied into `funcs`.
    names: Vec<u8>,
    /// The line table, when the image has one.
    lines: Option<LineSource>,
}

/// One module's segment in an area.
struct Seg {
    /// `[lo, hi)`: its offsets in the area.
    lo: u32,
    hi: u32,
    /// Its offset in the image's load area (what the line table holds).
    at: u32,
    /// `[lo, hi)`: its `.eh_frame` table's offsets in the area.
    eh: (u32, u32),
    /// The last generation whose image ran this segment, once a reload
    /// replaced or removed its module; `LIVE` before.
    retired: AtomicU32,
    /// Its module (indexes `Table::modules`).
    module: u32,
    /// The module's functions (offsets from `lo`) and their names' table,
    /// shared with the manifest: a first load of 25 000 functions copies
    /// no name and fills no page for them.
    fns: Option<(std::sync::Arc<[hcr_image::Function]>, std::sync::Arc<str>)>,
}

/// What a table lists as holding an offset: the start, the size, the
/// module and the name.
type Named<'t> = (u32, u32, u32, &'t [u8]);

const LIVE: u32 = u32::MAX;

impl Table {
    /// Builds the table of an area `[base, base + len)` holding the segments
    /// of the modules listed in `here`, placed by `place`.
    pub fn new(
        manifest: &hcr_image::Manifest,
        place: &hcr_loader::Placement,
        here: &[usize],
        (base, len): (u64, u64),
        generation: u32,
        lines: Option<LineSource>,
    ) -> Table {
        let n = manifest.modules.len();
        let here = || here.iter().copied().filter(move |&mi| mi < n);
        let mut funcs = Vec::new();
        let mut segs = Vec::new();
        let mut modules = Vec::new();
        let mut names = Vec::new();
        for mi in here() {
            let md = &manifest.modules[mi];
            let vbase = place.vbase[mi];
            let local = |off: u32| (vbase + u64::from(off)).wrapping_sub(base) as u32;
            let module = modules.len() as u32;
            let fns = (manifest.shared_names(mi)).map(|(fns, table)| (fns.clone(), table.clone()));
            let name = manifest.str(md.name).as_bytes();
            modules.push((names.len() as u32, name.len() as u32));
            names.extend_from_slice(name);
            let mut add = |offset: u32, size: u32, name: &[u8]| {
                funcs.push((
                    local(md.seg.start + offset),
                    size.max(1),
                    names.len() as u32,
                    name.len() as u32,
                    module,
                ));
                names.extend_from_slice(name);
            };
            if fns.is_none() {
                let mut fnames = hcr_image::Names::new(manifest);
                for f in manifest.functions.part(mi) {
                    add(f.offset, f.size, fnames.get(f.name).as_bytes());
                }
            }
            // A clone is named after the function it was made from, as a
            // debugger names it from the debug information.
            for p in md.clones_in_segment() {
                let name = hcr_image::CodePart::source_name(manifest.str(p.name));
                add(p.offset, p.size, name.as_bytes());
            }
            segs.push(Seg {
                lo: local(md.seg.start),
                hi: local(md.seg.end),
                at: md.seg.start,
                eh: (local(md.eh_frame.start), local(md.eh_frame.end)),
                retired: AtomicU32::new(LIVE),
                module,
                fns,
            });
        }
        funcs.sort_unstable_by_key(|f| f.0);
        segs.sort_unstable_by_key(|s| s.lo);
        Table {
            generation: std::sync::atomic::AtomicU32::new(generation),
            base,
            text: (base, base + len),
            funcs,
            segs,
            modules,
            names,
            lines,
        }
    }

    fn contains(&self, pc: u64) -> bool {
        pc >= self.text.0 && pc < self.text.1
    }

    /// The segment holding `pc`.
    fn seg(&self, pc: u64) -> Option<&Seg> {
        let off = u32::try_from(pc.checked_sub(self.base)?).ok()?;
        let i = self.segs.partition_point(|s| s.lo <= off).checked_sub(1)?;
        let s = &self.segs[i];
        (off < s.hi).then_some(s)
    }

    /// The unwind table of the segment holding `pc`, and its address.
    fn eh_frame(&self, pc: u64) -> Option<(&[u8], u64)> {
        let s = self.seg(pc)?;
        let (lo, hi) = s.eh;
        if !(s.lo <= lo && lo <= hi && hi <= s.hi) {
            return None;
        }
        let addr = self.base + u64::from(lo);
        // SAFETY: the segment lies in the table's area, mapped (read and
        // execute) for as long as the table is published; its unwind
        // table was checked when it was loaded and is never written.
        let table = unsafe { std::slice::from_raw_parts(addr as *const u8, (hi - lo) as usize) };
        Some((table, addr))
    }

    /// The newest generation whose image runs the code at `pc`: the
    /// area's, unless a reload replaced or removed that code's module
    /// (old code still running in a frame that began before the reload).
    pub fn generation_at(&self, pc: u64) -> u32 {
        match self.seg(pc).map(|s| s.retired.load(Ordering::Relaxed)) {
            Some(g) if g != LIVE => g,
            _ => self.generation.load(Ordering::Relaxed),
        }
    }

    /// The image area offset of `pc` (what the line table holds).
    fn image_offset(&self, pc: u64) -> Option<u64> {
        let s = self.seg(pc)?;
        let off = (pc - self.base) as u32;
        Some(u64::from(off - s.lo) + u64::from(s.at))
    }

    /// The start of the function (or clone) listed as holding `pc`.
    fn function_start(&self, pc: u64) -> Option<u64> {
        let (holding, _) = self.around(pc)?;
        holding.map(|(start, ..)| self.base + u64::from(start))
    }

    /// The module and the name of the function holding `pc` (a compiler
    /// clone's is the function it was made from). Code outside every
    /// function and clone the manifest lists is named after the function
    /// that follows it in the module (a cold part with no symbol of its
    /// own lies right before its function's code).
    fn function(&self, pc: u64) -> Option<(&[u8], &[u8])> {
        let (_, _, module, name) = match self.around(pc)? {
            (Some(f), _) | (None, Some(f)) => f,
            (None, None) => return None,
        };
        let (n, len) = *self.modules.get(module as usize)?;
        Some((self.names.get(n as usize..(n + len) as usize)?, name))
    }

    /// The function or clone listed as holding `pc` (the innermost when
    /// two do), and the first one listed after it (`None` when there is
    /// none): those named by copy, then those of `pc`'s segment named by
    /// its shared records.
    fn around(&self, pc: u64) -> Option<(Option<Named<'_>>, Option<Named<'_>>)> {
        let off = u32::try_from(pc.checked_sub(self.base)?).ok()?;
        let copied = |i: usize| {
            let &(start, size, n, len, module) = self.funcs.get(i)?;
            let name = self.names.get(n as usize..(n + len) as usize)?;
            Some((start, size, module, name))
        };
        let next = self.funcs.partition_point(|f| f.0 <= off);
        let mut holding = next
            .checked_sub(1)
            .and_then(copied)
            .filter(|&(start, size, ..)| off < start.saturating_add(size));
        let mut after = copied(next);
        if let Some((s, (fns, table))) = self.seg(pc).and_then(|s| Some((s, s.fns.as_ref()?))) {
            for f in fns.iter() {
                let start = s.lo.saturating_add(f.offset);
                let size = f.size.max(1);
                let named = (start, size, s.module, f.name.within(table).as_bytes());
                if start <= off && off < start.saturating_add(size) {
                    if holding.is_none_or(|h| h.0 < start) {
                        holding = Some(named);
                    }
                } else if start > off && after.is_none_or(|a| start < a.0) {
                    after = Some(named);
                }
            }
        }
        Some((holding, after))
    }
}

/// Marks the areas at `bases` (sorted) as running code of `generation`
/// (a reload kept their modules): one pass over the published tables.
pub fn set_generation(bases: &[u64], generation: u32) {
    for slot in &TABLES {
        let p = slot.load(Ordering::Acquire);
        // SAFETY: a non-null slot holds a table published by `publish`,
        // freed only by `withdraw`, which runs on the same (reloading)
        // thread as this.
        if let Some(t) = unsafe { p.as_ref() } {
            if bases.binary_search(&t.base).is_ok() {
                t.generation.store(generation, Ordering::Relaxed);
            }
        }
    }
}

/// Marks the segments starting at `starts` as no longer run by the live
/// image from now on: their modules were replaced or removed by the reload
/// to `generation`; `live` (false: a rollback brought them back) undoes
/// it.
pub fn retire_segments(starts: &[u64], generation: u32, live: bool) {
    for &start in starts {
        let Some(t) = table_of(start) else {
            continue;
        };
        if let Some(seg) = t.seg(start) {
            let v = match live {
                true => LIVE,
                false => generation.saturating_sub(1),
            };
            seg.retired.store(v, Ordering::Relaxed);
        }
    }
}

static TABLES: [AtomicPtr<Table>; SLOTS] = [const { AtomicPtr::new(std::ptr::null_mut()) }; SLOTS];

/// Publishes the table of a newly loaded image.
pub fn publish(t: Table) {
    let p = Box::into_raw(Box::new(t));
    for slot in &TABLES {
        if slot
            .compare_exchange(std::ptr::null_mut(), p, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return;
        }
    }
    // No free slot: the image goes unnamed in reports.
    // SAFETY: `p` came from Box::into_raw above and was not published.
    drop(unsafe { Box::from_raw(p) });
}

/// Withdraws the table of the image at `base` (it is being freed).
pub fn withdraw(base: u64) {
    for slot in &TABLES {
        let p = slot.load(Ordering::Acquire);
        // SAFETY: a non-null slot holds a table published by `publish`,
        // freed only here after it was taken out of its slot.
        let same = !p.is_null() && unsafe { (*p).base } == base;
        if same
            && slot
                .compare_exchange(p, std::ptr::null_mut(), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // SAFETY: taken out of its slot above; no new reader can find
            // it. A crash handler already reading it on another thread is
            // the documented race of freeing an image.
            drop(unsafe { Box::from_raw(p) });
        }
    }
}

/// The table of the image whose code holds `pc`.
fn table_of(pc: u64) -> Option<&'static Table> {
    TABLES.iter().find_map(|slot| {
        let p = slot.load(Ordering::Acquire);
        // SAFETY: published tables live until withdrawn (see `withdraw`).
        let t = unsafe { p.as_ref() }?;
        t.contains(pc).then_some(t)
    })
}

/// The generation of the image whose code holds `pc` (outside a signal
/// handler: for the crash guard).
pub fn generation_of(pc: u64) -> Option<u32> {
    table_of(pc).map(|t| t.generation_at(pc))
}

/// The module whose code holds `pc` (outside a signal handler).
pub fn module_at(pc: u64) -> Option<String> {
    let (module, _) = table_of(pc)?.function(pc)?;
    Some(String::from_utf8_lossy(module).into_owned())
}

/// `SIGNAL in MODULE:FUNCTION (FILE:LINE), image generation N` for a
/// crash at `pc` (outside a signal handler).
pub fn describe(sig: libc::c_int, pc: u64) -> String {
    let mut out = Buf::new();
    out.put(signal_name(sig));
    out.put(b" in ");
    if let Some(t) = table_of(pc) {
        frames_at(t, pc, &mut Hints::default(), &mut |f| {
            out.put(f);
            false
        });
    } else {
        out.put(b"module code");
    }
    String::from_utf8_lossy(&out.b[..out.n]).into_owned()
}

struct OldAction(std::cell::UnsafeCell<[libc::sigaction; 5]>);
// SAFETY: written once by `install` before any handler can run (under the
// Once), read-only afterwards.
unsafe impl Sync for OldAction {}

static OLD: OldAction = OldAction(std::cell::UnsafeCell::new(
    // SAFETY: sigaction is plain data; all-zero is SIG_DFL.
    unsafe { std::mem::zeroed() },
));
static INSTALLED: std::sync::Once = std::sync::Once::new();
/// The thread writing a report (its thread id), 0 when none: reports of
/// threads that crash at once are written one after the other, and a
/// fault inside a report is not reported again.
static REPORTER: AtomicI32 = AtomicI32::new(0);

/// Takes the report for this thread: waits (up to 5 s) while another
/// thread writes one, so that a crash in several threads at once is not
/// cut short by a second thread's default action killing the process
/// mid-report. False for a fault inside this thread's own report, or
/// after the wait.
fn take_report() -> bool {
    // SAFETY: gettid takes no arguments and cannot fail.
    let me = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
    for _ in 0..5000 {
        match REPORTER.compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return true,
            Err(t) if t == me => return false,
            Err(_) => {
                let ms = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 1_000_000,
                };
                // SAFETY: nanosleep (async-signal-safe) with a valid
                // duration and no remainder wanted.
                unsafe { libc::nanosleep(&ms, std::ptr::null_mut()) };
            }
        }
    }
    false
}

/// What the handler hands to the crash guard: when set, called after the
/// report with the faulting context; it may redirect the context (and
/// returns true) so that the thread resumes in the guard.
pub type GuardHook = unsafe fn(sig: libc::c_int, pc: u64, uc: *mut libc::ucontext_t) -> bool;
static GUARD_HOOK: AtomicPtr<()> = AtomicPtr::new(std::ptr::null_mut());

/// Sets the crash guard's hook.
pub fn set_guard_hook(f: GuardHook) {
    GUARD_HOOK.store(f as *mut (), Ordering::Release);
}

/// Installs the handlers (once per process) and an alternate signal stack
/// for the calling thread when it has none. `HCR_CRASH_HANDLER=0` leaves
/// the signals alone.
pub fn install() {
    if std::env::var_os("HCR_CRASH_HANDLER").is_some_and(|v| v == "0") {
        return;
    }
    INSTALLED.call_once(|| {
        // The installing thread's stack stays for the process.
        std::mem::forget(alt_stack());
        alt_stack_key();
        // SAFETY: dlsym with a NUL-terminated name; the pointer is only
        // called as `_dl_find_object`, whose signature `FindObject` is.
        let find = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_dl_find_object".as_ptr()) };
        FIND_OBJECT.store(find, Ordering::Release);
        for (i, &sig) in SIGNALS.iter().enumerate() {
            // SAFETY: a zeroed sigaction is valid; the handler has the
            // SA_SIGINFO signature; OLD is written only here, before the
            // handler is installed for this signal.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = handler as *const () as usize;
                sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut sa.sa_mask);
                let old = &mut (*OLD.0.get())[i];
                libc::sigaction(sig, &sa, old);
            }
        }
        HANDLING.store(true, Ordering::Release);
    });
}

/// An alternate signal stack for the calling thread, unless it has one of
/// at least [`ALT_STACK`] bytes (Rust's runtime installs a small one for
/// its stack-overflow message; the report needs a few pages). Returns the
/// stack it mapped, if any.
fn alt_stack() -> Option<AltStack> {
    // SAFETY: sigaltstack with a null new stack only reads the current one;
    // the new stack is a fresh anonymous mapping, unmapped only by
    // `AltStack`'s drop after it is disabled.
    unsafe {
        let mut cur: libc::stack_t = std::mem::zeroed();
        if libc::sigaltstack(std::ptr::null(), &mut cur) != 0
            || (cur.ss_flags & libc::SS_DISABLE == 0 && cur.ss_size >= ALT_STACK)
        {
            return None;
        }
        let p = libc::mmap(
            std::ptr::null_mut(),
            ALT_STACK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return None;
        }
        let st = libc::stack_t {
            ss_sp: p,
            ss_flags: 0,
            ss_size: ALT_STACK,
        };
        if libc::sigaltstack(&st, std::ptr::null_mut()) != 0 {
            libc::munmap(p, ALT_STACK);
            return None;
        }
        Some(AltStack(p))
    }
}

/// A thread's alternate signal stack, mapped by [`alt_stack`]: disabled
/// and unmapped when the thread ends.
struct AltStack(*mut libc::c_void);

impl Drop for AltStack {
    fn drop(&mut self) {
        free_alt_stack(self.0);
    }
}

/// Disables the calling thread's alternate signal stack `p` and unmaps it.
fn free_alt_stack(p: *mut libc::c_void) {
    let off = libc::stack_t {
        ss_sp: std::ptr::null_mut(),
        ss_flags: libc::SS_DISABLE,
        ss_size: 0,
    };
    // SAFETY: this thread's own alternate stack, not in use (a thread
    // ending runs no signal handler); disabled before it is unmapped.
    unsafe {
        libc::sigaltstack(&off, std::ptr::null_mut());
        libc::munmap(p, ALT_STACK);
    }
}

/// The key whose destructor frees the alternate stack of a thread module
/// code started, when the thread ends (a thread-specific value: no
/// allocation, so no malloc arena for threads that never use one).
static ALT_STACK_KEY: std::sync::OnceLock<Option<libc::pthread_key_t>> = std::sync::OnceLock::new();

extern "C" fn alt_stack_key_destructor(p: *mut libc::c_void) {
    free_alt_stack(p);
}

fn alt_stack_key() -> Option<libc::pthread_key_t> {
    *ALT_STACK_KEY.get_or_init(|| {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: creates a key with a destructor of the right signature.
        let r = unsafe { libc::pthread_key_create(&mut key, Some(alt_stack_key_destructor)) };
        (r == 0).then_some(key)
    })
}

/// The image file mapping a first load reads (`image_file::Lent`), while
/// it is read: its first and end address (0, 0: none). Its lease keeps
/// writers out, but only for the system's lease break time (45 s): a load
/// stopped longer (a debugger, `SIGSTOP`) can find pages of it gone, their
/// file truncated. Such a read faults (`SIGBUS`); the handler maps a page
/// of zeros there and notes it ([`MAPPING_TORN`]), and the load, which
/// refuses what it read, says the file changed.
static MAPPING: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
/// Set when a page of [`MAPPING`] was replaced.
static MAPPING_TORN: AtomicBool = AtomicBool::new(false);

/// Guards reads of the file mapping `[start, start + len)` against pages
/// that vanish (see [`MAPPING`]). False (the caller must not read a
/// mapping) when another mapping is guarded, or when `SIGBUS` is not this
/// handler's: not installed (`HCR_CRASH_HANDLER=0`), or replaced by the
/// host's.
pub(crate) fn guard_mapping(start: usize, len: usize) -> bool {
    if !sigbus_is_ours()
        || MAPPING[0]
            .compare_exchange(0, start, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
    {
        return false;
    }
    MAPPING_TORN.store(false, Ordering::Release);
    MAPPING[1].store(start.saturating_add(len), Ordering::Release);
    true
}

/// Whether `SIGBUS` is this handler's, so that [`guard_mapping`] can guard.
pub(crate) fn sigbus_is_ours() -> bool {
    // SAFETY: a zeroed sigaction is valid; with a null new action,
    // sigaction only reads the current one.
    unsafe {
        let mut cur: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut cur) == 0
            && cur.sa_sigaction == handler as *const () as usize
    }
}

/// Ends [`guard_mapping`]'s guard (before the mapping is unmapped);
/// whether a page of it had vanished.
pub(crate) fn unguard_mapping() -> bool {
    MAPPING[1].store(0, Ordering::Release);
    MAPPING[0].store(0, Ordering::Release);
    MAPPING_TORN.load(Ordering::Acquire)
}

/// For a `SIGBUS` at an address of the guarded mapping: maps a page of
/// zeros over the page (read-only, as the mapping was) and notes it.
fn vanished_page_replaced(info: *mut libc::siginfo_t) -> bool {
    // SAFETY: the kernel passes the fault's siginfo to an SA_SIGINFO
    // handler; `si_addr` is the faulting address for SIGBUS.
    let addr = unsafe { (*info).si_addr() } as usize;
    let (start, end) = (
        MAPPING[0].load(Ordering::Acquire),
        MAPPING[1].load(Ordering::Acquire),
    );
    if start == 0 || addr < start || addr >= end {
        return false;
    }
    let page = addr & !4095;
    // SAFETY: the page lies in the guarded mapping, which the reading
    // thread owns and unmaps whole after the guard ends; MAP_FIXED
    // replaces that page only. mmap is async-signal-safe (a system call).
    let p = unsafe {
        libc::mmap(
            page as *mut libc::c_void,
            4096,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return false;
    }
    MAPPING_TORN.store(true, Ordering::Release);
    true
}

/// Whether the handlers are installed.
static HANDLING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A thread's start routine, as `pthread_create` takes it; it may end by
/// a forced unwind (`pthread_exit`, cancellation).
pub type StartRoutine = unsafe extern "C-unwind" fn(*mut libc::c_void) -> *mut libc::c_void;

/// `pthread_create`'s signature, as the C library defines it.
type CreateFn = unsafe extern "C" fn(
    *mut libc::pthread_t,
    *const libc::pthread_attr_t,
    extern "C" fn(*mut libc::c_void) -> *mut libc::c_void,
    *mut libc::c_void,
) -> libc::c_int;

/// The C library's `pthread_create`: the next definition after this
/// object's. A host that defines `pthread_create` itself to give every
/// thread an alternate stack (the `hcr` binary: [`image_pthread_create`])
/// reaches the C library's through this, not through its own.
fn real_pthread_create() -> Option<CreateFn> {
    static REAL: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // SAFETY: dlsym with a NUL-terminated name.
    let p = *REAL.get_or_init(|| unsafe {
        libc::dlsym(libc::RTLD_NEXT, c"pthread_create".as_ptr()) as usize
    });
    // SAFETY: the symbol named `pthread_create` after this object is the C
    // library's function, of this signature.
    (p != 0).then(|| unsafe { std::mem::transmute::<usize, CreateFn>(p) })
}

/// What [`image_pthread_create`] hands its thread.
struct Start {
    f: StartRoutine,
    arg: *mut libc::c_void,
}

/// `pthread_create` as module code resolves it: the new thread gets an
/// alternate signal stack before the start routine runs (freed when the
/// thread ends), so that a crash report can be written when the thread
/// overflows its stack, as on the main thread; otherwise the C library's.
/// Threads that the C++ runtime starts (`std::thread`) or another library
/// starts call the C library's `pthread_create` directly: the `hcr` binary
/// defines `pthread_create` as this function, and exports it, so that
/// theirs get one too; a host embedding the runtime may do the same.
///
/// # Safety
/// As `pthread_create`.
pub unsafe extern "C" fn image_pthread_create(
    thread: *mut libc::pthread_t,
    attr: *const libc::pthread_attr_t,
    f: StartRoutine,
    arg: *mut libc::c_void,
) -> libc::c_int {
    let Some(real) = real_pthread_create() else {
        return libc::EAGAIN;
    };
    // SAFETY: the caller's arguments, as `pthread_create` takes them (the
    // C library's own signature has a start routine that cannot unwind;
    // the pointer is the same).
    let create = |f: StartRoutine, arg| unsafe {
        real(
            thread,
            attr,
            std::mem::transmute::<
                StartRoutine,
                extern "C" fn(*mut libc::c_void) -> *mut libc::c_void,
            >(f),
            arg,
        )
    };
    if !HANDLING.load(Ordering::Acquire) {
        return create(f, arg);
    }
    let start = Box::into_raw(Box::new(Start { f, arg }));
    let r = create(thread_start, start.cast());
    if r != 0 {
        // SAFETY: no thread was started to take it.
        drop(unsafe { Box::from_raw(start) });
    }
    r
}

/// The start routine of a thread [`image_pthread_create`] starts. Nothing
/// with a destructor lives across the call: a forced unwind may pass.
unsafe extern "C-unwind" fn thread_start(p: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: `p` is the `Start` boxed for this thread, taken once.
    let Start { f, arg } = *unsafe { Box::from_raw(p.cast::<Start>()) };
    if let (Some(key), Some(stack)) = (alt_stack_key(), alt_stack()) {
        // SAFETY: a key of this process; the value is this thread's.
        if unsafe { libc::pthread_setspecific(key, stack.0) } == 0 {
            // Freed by the key's destructor from now on.
            std::mem::forget(stack);
        }
    }
    // SAFETY: the program's start routine with its argument.
    unsafe { f(arg) }
}

fn signal_name(sig: libc::c_int) -> &'static [u8] {
    match sig {
        libc::SIGSEGV => b"SIGSEGV",
        libc::SIGBUS => b"SIGBUS",
        libc::SIGILL => b"SIGILL",
        libc::SIGFPE => b"SIGFPE",
        libc::SIGABRT => b"SIGABRT",
        _ => b"signal",
    }
}

/// A fixed buffer the report is formatted in (no allocation).
struct Buf {
    b: [u8; 1024],
    n: usize,
}

impl Buf {
    fn new() -> Buf {
        Buf { b: [0; 1024], n: 0 }
    }
    fn put(&mut self, s: &[u8]) {
        let k = s.len().min(self.b.len() - self.n);
        self.b[self.n..self.n + k].copy_from_slice(&s[..k]);
        self.n += k;
    }
    fn num(&mut self, v: u64) {
        let mut d = [0u8; 20];
        self.put(decimal(v, &mut d));
    }
    fn hex(&mut self, mut v: u64) {
        let mut d = [0u8; 16];
        let mut i = d.len();
        loop {
            i -= 1;
            d[i] = b"0123456789abcdef"[(v % 16) as usize];
            v /= 16;
            if v == 0 {
                break;
            }
        }
        self.put(b"0x");
        self.put(&d[i..]);
    }
    fn write(&self) {
        let mut at = 0;
        while at < self.n {
            // SAFETY: write(2) of initialised bytes of this buffer.
            let r = unsafe { libc::write(2, self.b[at..].as_ptr().cast(), self.n - at) };
            if r <= 0 {
                return;
            }
            at += r as usize;
        }
    }
}

/// `v` in decimal, written at the end of `d`.
pub(crate) fn decimal(mut v: u64, d: &mut [u8; 20]) -> &[u8] {
    let mut i = d.len();
    loop {
        i -= 1;
        d[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &d[i..]
}

/// The word at `addr` of this process; `None` when unmapped (no fault).
fn peek_word(addr: u64) -> Option<u64> {
    let mut w = [0u8; 8];
    peek(addr, &mut w).then(|| u64::from_le_bytes(w))
}

/// Reads `dst.len()` bytes at `addr` of this process; false when any of it
/// is unmapped (no fault).
pub(crate) fn peek(addr: u64, dst: &mut [u8]) -> bool {
    let local = libc::iovec {
        iov_base: dst.as_mut_ptr().cast(),
        iov_len: dst.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: dst.len(),
    };
    // SAFETY: process_vm_readv on this process writes only into `dst` and
    // reports unmapped source memory as an error.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    n == dst.len() as isize
}

/// True when the bytes before `ra` end with a call instruction: `call
/// rel32` (`e8`), or `call *r/m` (`ff /2`, after any prefix) whose ModRM,
/// SIB and displacement end exactly at `ra`.
fn after_call(ra: u64) -> bool {
    let mut b = [0u8; 7];
    if ra < 7 || !peek(ra - 7, &mut b) {
        return false;
    }
    if b[2] == 0xe8 {
        return true;
    }
    // `ff` at `ra - k`, its ModRM after it.
    (2..=7).any(|k| {
        let (op, modrm) = (b[7 - k], b[8 - k]);
        let sib = b.get(9 - k).copied();
        op == 0xff && (modrm & 0x38) == 0x10 && indirect_call_len(modrm, sib) == Some(k)
    })
}

/// The length of `ff /2` with this ModRM (and the SIB byte after it, when
/// the ModRM has one): the opcode, ModRM, SIB and displacement.
fn indirect_call_len(modrm: u8, sib: Option<u8>) -> Option<usize> {
    let (mode, rm) = (modrm >> 6, modrm & 7);
    let has_sib = mode != 3 && rm == 4;
    let disp = match mode {
        3 => 0,
        1 => 1,
        2 => 4,
        // `[rip + disp32]`; with a SIB, a base of 5 means no base, disp32.
        _ if rm == 5 => 4,
        _ if has_sib && (sib? & 7) == 5 => 4,
        _ => 0,
    };
    Some(2 + usize::from(has_sib) + disp)
}

/// Whether the call before return address `ra` may have gone to the
/// faulting mapping `at` (when found): through a GOT slot that holds an
/// address in the same file, or through a register or memory other than a
/// GOT slot (a function pointer: its target is not known). A direct call
/// (to the module's own code or a trampoline) did not.
fn may_call_out_to(ra: u64, at: Option<&Place>) -> bool {
    let mut b = [0u8; 6];
    if ra < 6 || !peek(ra - 6, &mut b) {
        return false;
    }
    let direct = b[1] == 0xe8;
    let got = b[0] == 0xff && b[1] == 0x15;
    if direct || got {
        return called_through_got(ra).is_some_and(|to| at.is_some_and(|p| in_file_of(to, p)));
    }
    after_call(ra)
}

/// Where the call before return address `ra` went, when it went through a
/// GOT slot: `call stub` to a PLT stub `jmp *slot(%rip)` (hcr-link's stubs,
/// `ff 25`), or `call *slot(%rip)` (`-fno-plt`, `ff 15`); the address the
/// slot holds.
fn called_through_got(ra: u64) -> Option<u64> {
    let disp = |b: &[u8]| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])) as u64;
    let mut b = [0u8; 6];
    if ra < 6 || !peek(ra - 6, &mut b) {
        return None;
    }
    if b[0] == 0xff && b[1] == 0x15 {
        return peek_word(ra.wrapping_add(disp(&b[2..])));
    }
    if b[1] != 0xe8 {
        return None;
    }
    let stub = ra.wrapping_add(disp(&b[2..]));
    let mut s = [0u8; 6];
    if !peek(stub, &mut s) || s[0] != 0xff || s[1] != 0x25 {
        return None;
    }
    peek_word((stub + 6).wrapping_add(disp(&s[2..])))
}

/// Whether `a` lies in a mapping of the file `p` was found in (`p` an
/// anonymous mapping: never), by `/proc/self/maps`.
fn in_file_of(a: u64, p: &Place) -> bool {
    let mut pa = Place::default();
    !p.path().is_empty() && find_place(a, &mut pa) && pa.path() == p.path()
}

/// A mapping found in `/proc/self/maps`: its start, file offset and path.
struct Place {
    lo: u64,
    off: u64,
    path: [u8; 256],
    len: usize,
}

impl Default for Place {
    fn default() -> Place {
        Place {
            lo: 0,
            off: 0,
            path: [0; 256],
            len: 0,
        }
    }
}

impl Place {
    fn path(&self) -> &[u8] {
        &self.path[..self.len]
    }
}

/// Formats the frames of the code at `lookup`, `MODULE:FUNCTION
/// (FILE:LINE), image generation N`, innermost first, handing each to
/// `each` until it returns false.
/// `lookup` is the address the frame is named after: the faulting pc
/// itself, or a return address less one (a call that never returns, such
/// as one to `abort`, can be a function's last instruction: its return
/// address is then the next function's first byte). Calls the compiler
/// inlined there are frames of their own, innermost first, as a debugger
/// lists them: each named after the inlined function, at the line it was
/// called from in the frame inside it.
fn frames_at(t: &Table, lookup: u64, hints: &mut Hints, each: &mut dyn FnMut(&[u8]) -> bool) {
    if hints.base != t.base {
        *hints = Hints {
            base: t.base,
            ..Hints::default()
        };
    }
    let (module, function) = t.function(lookup).unwrap_or((b"?", b"?"));
    let generation = t.generation_at(lookup);
    let mut file = [0u8; 256];
    let at = t.image_offset(lookup);
    let found = t
        .lines
        .as_ref()
        .zip(at)
        .and_then(|(l, off)| lines::find(l, off, &mut file, &mut hints.line));
    let chain = match (t.lines.as_ref(), found, at) {
        (Some(l), Some((_, _, unit)), Some(off)) => l
            .info
            .as_ref()
            .and_then(|info| crate::inlined::chain(info, &l.file, unit, off, &mut hints.info)),
        _ => None,
    };
    let levels = chain.as_ref().map_or(&[][..], |c| c.levels());
    let mut out = Buf::new();
    let mut name = [0u8; 512];
    let mut call_file = [0u8; 256];
    // Inlined calls whose code starts at the address (a fault on their
    // first instruction) are not frames yet, as a debugger stopped there
    // shows them: the innermost frame is then the one the outermost of
    // them was inlined into, at the line of that call.
    let n = levels.len() - levels.iter().rev().take_while(|l| l.starts_here).count();
    // Innermost first: frame `j` is inlined call `n - 1 - j` (calls are
    // listed outermost first), the last the function the code is in.
    for j in 0..=n {
        out.n = 0;
        out.put(module);
        out.put(b":");
        let named = match &chain {
            Some(c) if j < n => c.name(n - 1 - j, &mut name).map(|len| &name[..len]),
            _ => Some(function),
        };
        put_function(&mut out, named.unwrap_or(b"?"));
        // The place: the line table's for the innermost frame; for the
        // others (and an innermost one whose inlined call starts here),
        // where the call inlined into them was made.
        let place = if j == 0 && n == levels.len() {
            found.map(|(len, line, _)| (&file[..len], line))
        } else {
            let l = &levels[n - j];
            let src = t.lines.as_ref();
            let unit = chain.as_ref().map(|c| c.stmt_list());
            src.zip(unit)
                .and_then(|(s, u)| lines::file_at(s, u, l.call_file, &mut call_file))
                .map(|len| (&call_file[..len], l.call_line))
        };
        if let Some((f, line)) = place {
            out.put(b" (");
            out.put(f);
            out.put(b":");
            out.num(line);
            out.put(b")");
        }
        out.put(b", image generation ");
        out.num(u64::from(generation));
        if !each(&out.b[..out.n]) {
            return;
        }
    }
}

/// Where the last frame's look-ups found their units, in the table at
/// `base`: tried first for the next frame.
#[derive(Default)]
struct Hints {
    base: u64,
    line: Option<u64>,
    info: Option<crate::inlined::UnitAt>,
}

/// A function's name: a C++ function's qualified, as a debugger shows it.
fn put_function(out: &mut Buf, function: &[u8]) {
    if !(function.starts_with(b"_Z") && crate::demangle::put_name(function, &mut |b| out.put(b))) {
        out.put(function);
    }
}

/// Where `pc` lies outside the image: `FILE+0xOFFSET` (the file offset,
/// as `addr2line -e FILE` takes it) by `at`, the mapping found to hold it,
/// or the bare address.
fn put_place(out: &mut Buf, pc: u64, at: Option<&Place>) {
    match at {
        Some(p) if !p.path().is_empty() && !p.path().starts_with(b"[") => {
            out.put(p.path());
            out.put(b"+");
            out.hex(pc - p.lo + p.off);
        }
        _ => out.hex(pc),
    }
}

/// Finds the mapping holding `pc` in `/proc/self/maps` (async-signal-safe:
/// `open`, `read` and buffers on the stack). False when none holds it.
fn find_place(pc: u64, place: &mut Place) -> bool {
    let mut found = false;
    // SAFETY: open/read/close of a NUL-terminated path into our buffer.
    let fd = unsafe {
        libc::open(
            c"/proc/self/maps".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return false;
    }
    let mut buf = [0u8; 4096];
    let mut have = 0usize;
    'read: loop {
        // SAFETY: reads into the unused tail of `buf`.
        let r = unsafe { libc::read(fd, buf[have..].as_mut_ptr().cast(), buf.len() - have) };
        if r <= 0 {
            break;
        }
        have += r as usize;
        let mut start = 0;
        while let Some(nl) = buf[start..have].iter().position(|&c| c == b'\n') {
            if let Some((lo, off, path)) = maps_line(&buf[start..start + nl], pc) {
                let len = path.len().min(place.path.len());
                place.path[..len].copy_from_slice(&path[..len]);
                place.len = len;
                place.lo = lo;
                place.off = off;
                found = true;
                break 'read;
            }
            start += nl + 1;
        }
        // A line longer than the buffer is dropped whole.
        let keep = if start == 0 { 0 } else { have - start };
        buf.copy_within(have - keep..have, 0);
        have = keep;
    }
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(fd) };
    found
}

/// One line of `/proc/self/maps` (`lo-hi perms offset dev inode path`):
/// its start, file offset and path when it holds `pc`.
fn maps_line(line: &[u8], pc: u64) -> Option<(u64, u64, &[u8])> {
    let mut fields = line.splitn(6, |&c| c == b' ');
    let range = fields.next()?;
    let dash = range.iter().position(|&c| c == b'-')?;
    let (lo, hi) = (hex_of(&range[..dash])?, hex_of(&range[dash + 1..])?);
    if !(lo <= pc && pc < hi) {
        return None;
    }
    let _perms = fields.next()?;
    let off = hex_of(fields.next()?)?;
    let _dev = fields.next()?;
    let _inode = fields.next()?;
    let path = fields.next().unwrap_or(b"");
    let skip = path.iter().take_while(|&&c| c == b' ').count();
    Some((lo, off, &path[skip..]))
}

fn hex_of(s: &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for &c in s {
        v = v.checked_mul(16)? + u64::from((c as char).to_digit(16)?);
    }
    (!s.is_empty()).then_some(v)
}

/// The signal handler. A `SIGBUS` in the guarded file mapping is handled
/// with a small frame: it may come on a thread whose alternate stack is
/// a small one (Rust's own threads in a Rust host have a few KiB), which
/// a report's buffers would overflow.
extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    if sig == libc::SIGBUS && vanished_page_replaced(info) {
        return;
    }
    report_and_pass_on(sig, info, uc);
}

/// The rest of [`handler`]: the report, then the signal passed on.
#[inline(never)]
fn report_and_pass_on(sig: libc::c_int, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    let uc = uc as *mut libc::ucontext_t;
    // SAFETY: the kernel passes a valid ucontext for SA_SIGINFO handlers.
    let regs = unsafe {
        let g = &(*uc).uc_mcontext.gregs;
        Regs {
            pc: g[libc::REG_RIP as usize] as u64,
            sp: g[libc::REG_RSP as usize] as u64,
            bp: g[libc::REG_RBP as usize] as u64,
        }
    };
    let first = take_report();
    let mut reported = None;
    if first {
        reported = report(sig, regs);
        REPORTER.store(0, Ordering::Release);
    }
    if let Some(pc_in_module) = reported {
        let hook = GUARD_HOOK.load(Ordering::Acquire);
        if !hook.is_null() {
            // SAFETY: set only by `set_guard_hook` from a `GuardHook`.
            let hook: GuardHook = unsafe { std::mem::transmute(hook) };
            // SAFETY: `uc` is this handler's context.
            if unsafe { hook(sig, pc_in_module, uc) } {
                return;
            }
        }
    }
    // Pass the signal on as if hcr were not there.
    let i = SIGNALS.iter().position(|&s| s == sig).unwrap_or(0);
    // SAFETY: OLD is read-only once handlers run; sigaction and raise are
    // async-signal-safe.
    unsafe {
        // The default action ends the process: its control socket goes.
        if (*OLD.0.get())[i].sa_sigaction == libc::SIG_DFL {
            crate::control::remove_in_signal_handler();
        }
        libc::sigaction(sig, &(*OLD.0.get())[i], std::ptr::null_mut());
        // A signal sent (kill, raise, abort) does not come back when the
        // handler returns: send it again, delivered once this returns. A
        // fault does: the instruction runs again under the old action.
        if (*info).si_code <= 0 || sig == libc::SIGABRT {
            libc::raise(sig);
        }
    }
}

/// Prints the report when the crash is in module code, or below a module
/// frame (`abort` from an `assert`, `strlen(NULL)`: a C library function
/// module code called): then it is named after the innermost module frame.
/// Returns the module pc it named.
fn report(sig: libc::c_int, regs: Regs) -> Option<u64> {
    let pc = regs.pc;
    // Frames: the faulting pc when it is in a module, then its callers.
    let mut frames = Frames::default();
    // The fault lies outside the image (the C library, a plugin), in a call
    // made by the module frame the report then names in the contract's
    // form. (`abort` and a failed `assert` are the module's own doing:
    // named by their frame alone.)
    let in_image = table_of(pc).is_some();
    let outside = !in_image && sig != libc::SIGABRT;
    let mut place = Place::default();
    let at = (outside && find_place(pc, &mut place)).then_some(&place);
    if in_image {
        frames.push(pc, pc, 0);
        unwind_from(&mut frames, regs, true);
    } else {
        // Unwound from the fault to the first module frame.
        match Walk::from(regs, true).next() {
            Stop::Module(r, innermost) => {
                frames.push_regs(r, innermost);
                unwind_from(&mut frames, r, innermost);
            }
            Stop::Outermost => return None,
            Stop::Lost(_) => guess_from_scan(&mut frames, regs, outside, at),
        }
    }
    let more = frames.more;
    let frames = frames.list();
    let &(_, first_pc, _) = frames.first()?;
    let t0 = table_of(first_pc)?;
    if outside {
        let mut line = Buf::new();
        line.put(b"hcr: fault outside the image: ");
        put_place(&mut line, pc, at);
        line.put(b"\n");
        line.write();
    }
    let mut hints = Hints::default();
    // The report's first line names the innermost frame, which the list
    // then begins with.
    let mut first = true;
    let mut line = |f: &[u8]| {
        let mut out = Buf::new();
        if first {
            first = false;
            out.put(b"hcr: crash: ");
            out.put(signal_name(sig));
            out.put(b" in ");
            out.put(f);
            out.put(b"\n");
            out.write();
            out.n = 0;
        }
        out.put(b"hcr:     at ");
        out.put(f);
        out.put(b"\n");
        out.write();
        true
    };
    frames_at(t0, frames[0].1, &mut hints, &mut line);
    for &(_, lookup, _) in &frames[1..] {
        if let Some(t) = table_of(lookup) {
            frames_at(t, lookup, &mut hints, &mut line);
        }
    }
    if more {
        let mut line = Buf::new();
        line.put(b"hcr:     ... (more frames, not listed)\n");
        line.write();
    }
    Some(first_pc)
}

/// The module frames of a fault outside the image whose stack could not
/// be unwound (code without unwind tables on the way): return addresses
/// into module code found on the stack, from the one the heuristics
/// below pick.
fn guess_from_scan(frames: &mut Frames, regs: Regs, outside: bool, at: Option<&Place>) {
    // Return addresses into modules found on the stack: the first is
    // the innermost module frame.
    scan(frames, regs.sp);
    let first = match outside {
        // The module frame that called out is the first whose call
        // went, through its PLT stub or GOT slot, to the file the
        // fault is in, or through a function pointer (`dlsym`'s).
        // Words below it on the stack are stale (a plugin's
        // uninitialised buffers hold old return addresses). Without
        // such a frame, the scan's order stands.
        true => (frames.list().iter()).position(|f| may_call_out_to(f.0, at)),
        // `abort` (a failed `assert`, `std::terminate`): the first
        // frame whose call left the image through its PLT stub or GOT
        // slot (to the C library, the C++ runtime), past return
        // addresses of calls that returned.
        false => (frames.list().iter())
            .position(|f| called_through_got(f.0).is_some_and(|to| table_of(to).is_none())),
    };
    let k = first.unwrap_or(0);
    if let Some(&(ra, _, slot)) = frames.list().get(k) {
        // From that frame up, its call frame information says where
        // its caller's return address is. (Its `rbp` is the one at
        // the fault: callee-saved, so the C library left it as the
        // frame had it, unless it used the register itself; then the
        // unwind's first step fails its checks and the scan goes on.)
        (frames.n, frames.more) = (0, false);
        frames.push(ra, ra - 1, slot);
        let r = Regs {
            pc: ra,
            sp: slot + 8,
            bp: regs.bp,
        };
        unwind_from(frames, r, false);
    }
}

/// The module frames of a crash report: `(return address or pc, where
/// its line is looked up, the stack slot the return address was read
/// from)`.
struct Frames {
    f: [(u64, u64, u64); MAX_FRAMES],
    n: usize,
    /// A frame was found past the last listed.
    more: bool,
}

impl Default for Frames {
    fn default() -> Self {
        Frames {
            f: [(0, 0, 0); MAX_FRAMES],
            n: 0,
            more: false,
        }
    }
}

impl Frames {
    /// Adds a frame; false (and the list marked as cut short) when full.
    fn push(&mut self, ra: u64, lookup: u64, slot: u64) -> bool {
        if self.n == MAX_FRAMES {
            self.more = true;
            return false;
        }
        self.f[self.n] = (ra, lookup, slot);
        self.n += 1;
        true
    }
    /// Adds the frame of `r`: the instruction a signal interrupted when
    /// `innermost`, else a return address read from below its stack
    /// pointer. False as `push`.
    fn push_regs(&mut self, r: Regs, innermost: bool) -> bool {
        let lookup = crate::unwind::lookup_pc(r, innermost).unwrap_or(r.pc);
        self.push(r.pc, lookup, if innermost { 0 } else { r.sp - 8 })
    }

    fn list(&self) -> &[(u64, u64, u64)] {
        &self.f[..self.n]
    }
}

/// Most frames an unwind steps through.
const MAX_STEPS: usize = 2048;

/// `_dl_find_object`, looked up when the handlers are installed (null
/// where the C library has none: glibc before 2.35).
static FIND_OBJECT: AtomicPtr<libc::c_void> = AtomicPtr::new(std::ptr::null_mut());

/// One unwind step from frame `r`: through module code by its image's
/// unwind table, through code outside the image (the C library, the C++
/// runtime, the host) by the table its loaded object registers.
fn step_any(r: Regs, innermost: bool) -> Option<Up> {
    let lookup = crate::unwind::lookup_pc(r, innermost)?;
    if let Some(t) = table_of(lookup) {
        let by_table = (t.eh_frame(lookup))
            .and_then(|(table, addr)| crate::unwind::step(table, addr, r, innermost, peek_word));
        return by_table
            .or_else(|| frame_pointer_step(t, r, innermost))
            .map(Up::Caller);
    }
    let find = FIND_OBJECT.load(Ordering::Acquire);
    if find.is_null() {
        return None;
    }
    // SAFETY: set only by `install`, from `dlsym` of `_dl_find_object`,
    // whose C signature `FindObject` is.
    let find: crate::unwind::FindObject = unsafe { std::mem::transmute(find) };
    crate::unwind::step_foreign(find, r, innermost, peek)
}

/// One step through module code its unwind table does not describe
/// (built with `-fno-asynchronous-unwind-tables`), in a function that
/// keeps a frame pointer: its code begins `push %rbp; mov %rsp,%rbp`
/// (after an `endbr64`), as gcc and clang emit at -O0 or with
/// `-fno-omit-frame-pointer`. The caller's return address and `rbp` are
/// then at `rbp + 8` and `rbp`, but in the prologue and at a `ret`.
fn frame_pointer_step(t: &Table, r: Regs, innermost: bool) -> Option<Regs> {
    const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];
    const PROLOGUE: [u8; 4] = [0x55, 0x48, 0x89, 0xe5];
    let lookup = crate::unwind::lookup_pc(r, innermost)?;
    let mut start = t.function_start(lookup)?;
    let mut code = [0u8; 8];
    if !peek(start, &mut code) {
        return None;
    }
    if code[..4] == ENDBR64 {
        start += 4;
        code.copy_within(4.., 0);
    }
    if code[..4] != PROLOGUE || lookup < start {
        return None;
    }
    let mut at = [0u8; 1];
    let (cfa, bp) = match lookup - start {
        // Before `push %rbp`, or at a `ret` (after `leave` or `pop %rbp`).
        0 if innermost => (r.sp + 8, r.bp),
        _ if innermost && peek(r.pc, &mut at) && at[0] == 0xc3 => (r.sp + 8, r.bp),
        // Between `push %rbp` and `mov %rsp,%rbp`.
        1..=3 if innermost => (r.sp + 16, peek_word(r.sp)?),
        _ => (r.bp.checked_add(16)?, peek_word(r.bp)?),
    };
    let pc = peek_word(cfa - 8)?;
    Some(Regs { pc, sp: cfa, bp })
}

/// The caller of frame `r` by one step, when the step is plausible: the
/// caller's stack pointer lies above the callee's, within the scan's
/// reach (otherwise the step read something else).
fn caller(r: Regs, innermost: bool) -> Option<Up> {
    match step_any(r, innermost)? {
        Up::Caller(up) if up.sp <= r.sp || up.sp - r.sp > SCAN_BYTES as u64 => None,
        up => Some(up),
    }
}

/// A walk up the stack by call frame information, through module code and
/// code outside the image alike (a module's callback called by `qsort`, a
/// handler called by the runtime), stopping at each module frame.
struct Walk {
    /// The last frame reached.
    r: Regs,
    /// Whether `r.pc` is the instruction a signal interrupted (else a
    /// return address).
    innermost: bool,
    steps: usize,
}

/// Where a walk stopped.
enum Stop {
    /// At a module frame: its registers, and whether it is the innermost
    /// (a signal interrupted it) or was reached by a return address.
    Module(Regs, bool),
    /// At the outermost frame (`_start`, a thread's `clone`).
    Outermost,
    /// Where a step was not followed (code without unwind tables, a CFA
    /// computed by an expression), or led to a word in module code that
    /// is no return address: the stack pointer there.
    Lost(u64),
}

impl Walk {
    fn from(r: Regs, innermost: bool) -> Walk {
        Walk {
            r,
            innermost,
            steps: 0,
        }
    }

    /// Steps up to the next module frame.
    fn next(&mut self) -> Stop {
        while self.steps < MAX_STEPS {
            self.steps += 1;
            let up = match caller(self.r, self.innermost) {
                Some(Up::Caller(up)) => up,
                Some(Up::Outermost) => return Stop::Outermost,
                None => return Stop::Lost(self.r.sp),
            };
            if let Some(int) = interrupted(up) {
                // A signal handler's caller: the code the signal
                // interrupted, at the instruction it was about to run.
                (self.r, self.innermost) = (int, true);
                if table_of(int.pc).is_some() {
                    return Stop::Module(int, true);
                }
                continue;
            }
            (self.r, self.innermost) = (up, false);
            if table_of(up.pc - 1).is_some() {
                return match after_call(up.pc) {
                    true => Stop::Module(up, false),
                    false => Stop::Lost(up.sp),
                };
            }
        }
        Stop::Lost(self.r.sp)
    }
}

/// Adds the module frames above `r` (the last frame pushed) by call
/// frame information; where the walk is lost, the stack is scanned from
/// there for return addresses into module code.
fn unwind_from(frames: &mut Frames, r: Regs, innermost: bool) {
    let mut walk = Walk::from(r, innermost);
    loop {
        match walk.next() {
            Stop::Module(r, innermost) => {
                if !frames.push_regs(r, innermost) {
                    return;
                }
            }
            Stop::Outermost => return,
            Stop::Lost(sp) => return scan(frames, sp),
        }
    }
}

/// The registers a signal interrupted, when `up` returns into the C
/// library's signal trampoline (`__restore_rt`: `mov $15, %rax; syscall`,
/// `rt_sigreturn`): the kernel's `ucontext_t` lies at its stack pointer.
fn interrupted(up: Regs) -> Option<Regs> {
    const RESTORE_RT: [u8; 9] = [0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05];
    // `uc_mcontext.gregs` follows `uc_flags`, `uc_link` and `uc_stack`.
    const GREGS: u64 = 40;
    let mut code = [0u8; 9];
    if !peek(up.pc, &mut code) || code != RESTORE_RT {
        return None;
    }
    let reg = |r: libc::c_int| peek_word(up.sp + GREGS + 8 * r as u64);
    Some(Regs {
        pc: reg(libc::REG_RIP)?,
        sp: reg(libc::REG_RSP)?,
        bp: reg(libc::REG_RBP)?,
    })
}

/// Adds the return addresses into module code found on the stack from
/// `sp` up (at most `SCAN_BYTES`): each a word that follows a call
/// instruction in module code.
fn scan(frames: &mut Frames, sp: u64) {
    let mut chunk = [0u64; 512];
    let mut at = sp & !7;
    let end = at.saturating_add(SCAN_BYTES as u64);
    while at < end && !frames.more {
        // SAFETY: viewing the u64 array as bytes for `peek` to fill.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(chunk.as_mut_ptr().cast::<u8>(), chunk.len() * 8)
        };
        let mut len = bytes.len();
        // Stop at the end of the mapping (page granular).
        while len >= 4096 && !peek(at, &mut bytes[..len]) {
            len /= 2;
        }
        if len < 4096 && !peek(at, &mut bytes[..8]) {
            return;
        }
        let words = (len / 8).max(1);
        for (k, &w) in chunk[..words].iter().enumerate() {
            if w > 0
                && table_of(w - 1).is_some()
                && after_call(w)
                && frames.list().last().map(|f| f.0) != Some(w)
                && !frames.push(w, w - 1, at + 8 * k as u64)
            {
                return;
            }
        }
        at += words as u64 * 8;
    }
}

/// DWARF line tables (versions 2 to 5), read with `pread` into a static
/// buffer when a crash happens.
mod lines {
    use super::LineSource;
    use std::os::unix::fs::FileExt as _;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Largest line program read (one compilation unit).
    const UNIT_MAX: usize = 1 << 20;
    struct UnitBuf(std::cell::UnsafeCell<[u8; UNIT_MAX]>);
    // SAFETY: used only while BUSY is held.
    unsafe impl Sync for UnitBuf {}
    static UNIT: UnitBuf = UnitBuf(std::cell::UnsafeCell::new([0; UNIT_MAX]));
    static BUSY: AtomicBool = AtomicBool::new(false);

    /// The reader the line program is read with.
    type Cur<'a> = hcr_image::DwarfReader<'a>;

    /// Where a file's name is: in the unit, or at an offset of a string
    /// section.
    #[derive(Clone, Copy)]
    enum Name {
        Unit(usize, usize),
        LineStr(u64),
        Str(u64),
    }

    /// `(name length in `file`, line, the line program's offset in
    /// `.debug_line`)` for area offset `off`.
    /// `hint`: the line program the last look-up in this table found,
    /// tried first (a backtrace's frames are mostly in a few units; an
    /// image of thousands of modules has thousands of them).
    pub fn find(
        src: &LineSource,
        off: u64,
        file: &mut [u8],
        hint: &mut Option<u64>,
    ) -> Option<(usize, u64, u64)> {
        let r = with_buf(|buf| {
            hint.and_then(|at| find_in(src, off, buf, file, at, true))
                .or_else(|| find_in(src, off, buf, file, 0, false))
        });
        if let Some((_, _, at)) = r {
            *hint = Some(at);
        }
        r
    }

    /// Runs `f` with the unit buffer, unless another look-up holds it.
    fn with_buf<R>(f: impl FnOnce(&mut [u8]) -> Option<R>) -> Option<R> {
        if BUSY.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: BUSY gives this call the buffer to itself.
        let r = f(unsafe { &mut *UNIT.0.get() });
        BUSY.store(false, Ordering::Release);
        r
    }

    /// The length, with its length field, of the line program at
    /// `unit_at`; `None` past the section's end or for 64-bit DWARF (not
    /// produced for these modules).
    fn unit_total(src: &LineSource, unit_at: u64) -> Option<u64> {
        let (sec, size) = src.line;
        let mut len4 = [0u8; 4];
        src.file.read_exact_at(&mut len4, sec + unit_at).ok()?;
        let len = u64::from(u32::from_le_bytes(len4));
        let total = (len < 0xffff_fff0).then_some(4 + len)?;
        (unit_at.checked_add(total)? <= size).then_some(total)
    }

    /// Looks `off` up in the line programs from `unit_at` on (`one`: in
    /// that one only).
    fn find_in(
        src: &LineSource,
        off: u64,
        buf: &mut [u8],
        file: &mut [u8],
        mut unit_at: u64,
        one: bool,
    ) -> Option<(usize, u64, u64)> {
        let (sec, size) = src.line;
        while unit_at + 4 <= size {
            let total = unit_total(src, unit_at)?;
            if (total as usize) <= buf.len() {
                let unit = &mut buf[..total as usize];
                if src.file.read_exact_at(unit, sec + unit_at).is_ok() {
                    if let Some(hit) = run_unit(unit, off) {
                        return name_of(src, unit, hit.0, file).map(|n| (n, hit.1, unit_at));
                    }
                }
            }
            if one {
                return None;
            }
            unit_at += total;
        }
        None
    }

    /// What a line program's header says that running it needs.
    struct Header {
        version: u16,
        /// Whether rows start statements unless told otherwise.
        default_stmt: bool,
        /// Where the program starts in the unit.
        program: usize,
        min_inst: u64,
        line_base: i64,
        line_range: u64,
        opcode_base: u8,
        /// Where the standard opcodes' operand counts are.
        lengths_at: usize,
        /// Where the file table (for version 5, the directory table
        /// before it) starts.
        files_at: usize,
    }

    fn header(unit: &[u8]) -> Option<Header> {
        let mut c = Cur { b: unit, at: 4 };
        let version = c.fixed(2)? as u16;
        if !(2..=5).contains(&version) {
            return None;
        }
        if version >= 5 {
            c.u8()?; // address_size
            c.u8()?; // segment selector size
        }
        let header_len = c.fixed(4)? as usize;
        let program = c.at + header_len;
        let min_inst = u64::from(c.u8()?);
        if version >= 4 {
            c.u8()?; // max ops per instruction
        }
        let default_stmt = c.u8()? != 0;
        let line_base = c.u8()? as i8 as i64;
        let line_range = u64::from(c.u8()?);
        let opcode_base = c.u8()?;
        if line_range == 0 {
            return None;
        }
        let lengths_at = c.at;
        Some(Header {
            version,
            default_stmt,
            program,
            min_inst,
            line_base,
            line_range,
            opcode_base,
            lengths_at,
            files_at: lengths_at + usize::from(opcode_base.saturating_sub(1)),
        })
    }

    /// Copies the name of file `index` of the line program at `unit_at` in
    /// `.debug_line` into `out` (a call's `DW_AT_call_file`); returns its
    /// length.
    pub fn file_at(src: &LineSource, unit_at: u64, index: u64, out: &mut [u8]) -> Option<usize> {
        with_buf(|buf| {
            let total = unit_total(src, unit_at)?;
            let unit = buf.get_mut(..usize::try_from(total).ok()?)?;
            src.file.read_exact_at(unit, src.line.0 + unit_at).ok()?;
            let h = header(unit)?;
            let name = file_name(unit, h.files_at, h.version, index)?;
            name_of(src, unit, name, out)
        })
    }

    /// Runs one unit's line program; `(file name, line)` of the row
    /// covering `target`.
    fn run_unit(unit: &[u8], target: u64) -> Option<(Name, u64)> {
        let h = header(unit)?;
        let (version, opcode_base, line_range) = (h.version, h.opcode_base, h.line_range);
        let (min_inst, line_base) = (h.min_inst, h.line_base);
        let mut p = Cur {
            b: unit,
            at: h.program,
        };
        let (mut addr, mut file, mut line) = (0u64, 1u64, 1i64);
        let mut stmt = h.default_stmt;
        let mut prev: Option<(u64, u64, i64)> = None;
        let mut prev_stmt = false;
        // The last row starting a statement: where several rows share an
        // address, a debugger takes the statement's line over a later
        // row's that is not one.
        let mut last_stmt: Option<(u64, u64, i64)> = None;
        // The last row before `prev` with a line.
        let mut known: Option<(u64, i64)> = None;
        let hit = |prev: Option<(u64, u64, i64)>, addr: u64| -> Option<(u64, i64)> {
            let (a, f, l) = prev?;
            (a <= target && target < addr).then_some((f, l))
        };
        while p.at < unit.len() {
            let op = p.u8()?;
            let mut row = false;
            let mut end_seq = false;
            if op >= opcode_base {
                let adj = u64::from(op - opcode_base);
                addr = addr.wrapping_add((adj / line_range) * min_inst);
                line += line_base + (adj % line_range) as i64;
                row = true;
            } else if op == 0 {
                let len = p.uleb()? as usize;
                let next = p.at + len;
                let sub = p.u8()?;
                match sub {
                    1 => {
                        row = true;
                        end_seq = true;
                    }
                    2 => addr = p.fixed(len - 1)?,
                    _ => {}
                }
                p.at = next;
            } else {
                match op {
                    1 => row = true,
                    2 => addr = addr.wrapping_add(p.uleb()? * min_inst),
                    3 => line += p.sleb()?,
                    4 => file = p.uleb()?,
                    5 => {
                        p.uleb()?;
                    }
                    8 => {
                        let adj = u64::from(255 - opcode_base);
                        addr = addr.wrapping_add((adj / line_range) * min_inst);
                    }
                    9 => addr = addr.wrapping_add(p.fixed(2)?),
                    6 => stmt = !stmt,
                    7 | 10 | 11 => {}
                    _ => {
                        // Unknown standard opcode: skip its ULEB operands.
                        let n = *unit.get(h.lengths_at + usize::from(op) - 1)?;
                        for _ in 0..n {
                            p.uleb()?;
                        }
                    }
                }
            }
            if row {
                if let Some((f, l)) = hit(prev, addr) {
                    let (f, l) = match (prev, last_stmt) {
                        (Some(p), Some((a, sf, sl))) if !prev_stmt && p.0 == a => (sf, sl),
                        _ => (f, l),
                    };
                    // Line 0 (code no source line is for, as clang marks
                    // it) is named after the last line before it, as
                    // debuggers show it.
                    let (f, l) = match (l, known) {
                        (0, Some(k)) => k,
                        _ => (f, l),
                    };
                    let name = file_name(unit, h.files_at, version, f)?;
                    return Some((name, l.max(0) as u64));
                }
                if let Some((_, f, l)) = prev.filter(|p| p.2 != 0) {
                    known = Some((f, l));
                }
                prev = if end_seq {
                    None
                } else {
                    Some((addr, file, line))
                };
                prev_stmt = stmt;
                if stmt && !end_seq {
                    last_stmt = prev;
                }
                if end_seq {
                    addr = 0;
                    file = 1;
                    line = 1;
                    stmt = h.default_stmt;
                    known = None;
                    last_stmt = None;
                }
            }
        }
        None
    }

    /// Skips one attribute value of `form`; returns its name reference when
    /// it is a string.
    fn form(c: &mut Cur<'_>, form: u64) -> Option<Option<Name>> {
        Some(match form {
            0x08 => {
                let (s, l) = c.cstr()?;
                Some(Name::Unit(s, l))
            }
            0x1f => Some(Name::LineStr(c.fixed(4)?)),
            0x0e => Some(Name::Str(c.fixed(4)?)),
            0x0b => {
                c.fixed(1)?;
                None
            }
            0x05 => {
                c.fixed(2)?;
                None
            }
            0x06 => {
                c.fixed(4)?;
                None
            }
            0x07 => {
                c.fixed(8)?;
                None
            }
            0x1e => {
                c.fixed(8)?;
                c.fixed(8)?;
                None
            }
            0x0f => {
                c.uleb()?;
                None
            }
            0x09 => {
                let n = c.uleb()? as usize;
                c.at += n;
                None
            }
            _ => return None,
        })
    }

    /// The name of file `index` in the unit's file table.
    fn file_name(unit: &[u8], files_at: usize, version: u16, index: u64) -> Option<Name> {
        let mut c = Cur {
            b: unit,
            at: files_at,
        };
        if version < 5 {
            // include_directories: strings up to an empty one.
            loop {
                let (_, l) = c.cstr()?;
                if l == 0 {
                    break;
                }
            }
            let mut i = 1;
            loop {
                let (s, l) = c.cstr()?;
                if l == 0 {
                    return None;
                }
                c.uleb()?;
                c.uleb()?;
                c.uleb()?;
                if i == index {
                    return Some(Name::Unit(s, l));
                }
                i += 1;
            }
        }
        // Version 5: directory formats and entries, then file formats and
        // entries (0-based).
        let skip_table = |c: &mut Cur<'_>, want: Option<u64>| -> Option<Option<Name>> {
            let nfmt = c.u8()? as usize;
            let mut fmts = [(0u64, 0u64); 8];
            for f in fmts.iter_mut().take(nfmt.min(8)) {
                *f = (c.uleb()?, c.uleb()?);
            }
            if nfmt > 8 {
                return None;
            }
            let count = c.uleb()?;
            let mut found = None;
            for i in 0..count {
                for &(kind, fm) in &fmts[..nfmt] {
                    let v = form(c, fm)?;
                    if kind == 1 && Some(i) == want {
                        found = v;
                    }
                }
            }
            Some(found)
        };
        skip_table(&mut c, None)?;
        skip_table(&mut c, Some(index))?
    }

    /// Copies a file name into `out`; returns its length.
    fn name_of(src: &LineSource, unit: &[u8], name: Name, out: &mut [u8]) -> Option<usize> {
        let (sec, off) = match name {
            Name::Unit(s, l) => {
                let l = l.min(out.len());
                out[..l].copy_from_slice(unit.get(s..s + l)?);
                return Some(l);
            }
            Name::LineStr(o) => (src.line_str?, o),
            Name::Str(o) => (src.str_?, o),
        };
        if off >= sec.1 {
            return None;
        }
        let want = (out.len() as u64).min(sec.1 - off) as usize;
        src.file.read_exact_at(&mut out[..want], sec.0 + off).ok()?;
        out[..want].iter().position(|&c| c == 0).or(Some(want))
    }
}

#[cfg(test)]
mod place_tests {
    use super::*;

    #[test]
    fn a_maps_line_gives_start_offset_and_path() {
        let l = b"7f0000001000-7f0000003000 r-xp 00002000 fd:01 1234                       /usr/lib/libc.so.6";
        assert_eq!(
            maps_line(l, 0x7f00_0000_1010),
            Some((0x7f00_0000_1000, 0x2000, &b"/usr/lib/libc.so.6"[..]))
        );
        assert_eq!(maps_line(l, 0x7f00_0000_3000), None);
        let anon = b"7f0000004000-7f0000005000 rw-p 00000000 00:00 0 ";
        assert_eq!(
            maps_line(anon, 0x7f00_0000_4000),
            Some((0x7f00_0000_4000, 0, &b""[..]))
        );
        assert_eq!(maps_line(b"garbage", 1), None);
        let mut b = Buf::new();
        b.hex(0x1139);
        assert_eq!(&b.b[..b.n], b"0x1139");
    }
}

#[cfg(test)]
mod tests {
    /// `after_call` on the code `bytes` (a return address at their end).
    fn ends_in_call(bytes: &[u8]) -> bool {
        let mut code = vec![0x90u8; 16];
        code.extend_from_slice(bytes);
        super::after_call(code.as_ptr() as u64 + code.len() as u64)
    }

    #[test]
    fn every_form_of_call_is_told_from_other_code() {
        for call in [
            &[0xe8, 1, 2, 3, 4][..],         // call rel32
            &[0xff, 0xd0],                   // call *%rax
            &[0x41, 0xff, 0xd3],             // call *%r11
            &[0xff, 0x10],                   // call *(%rax)
            &[0xff, 0x50, 0x38],             // call *0x38(%rax)
            &[0x41, 0xff, 0x54, 0x24, 0x38], // call *0x38(%r12)
            &[0xff, 0x90, 1, 2, 3, 4],       // call *0x4030201(%rax)
            &[0xff, 0x15, 1, 2, 3, 4],       // call *disp(%rip)
            &[0xff, 0x94, 0xc8, 1, 2, 3, 4], // call *disp(%rax,%rcx,8)
            &[0xff, 0x14, 0xc5, 1, 2, 3, 4], // call *disp(,%rax,8)
        ] {
            assert!(ends_in_call(call), "{call:x?}");
        }
        for other in [
            &[0x48, 0x89, 0xe5][..],   // mov %rsp,%rbp
            &[0xff, 0xe0],             // jmp *%rax
            &[0xff, 0x54, 0x24],       // call *0x38(%rsp) cut short
            &[0xff, 0x50, 0x38, 0x90], // call *0x38(%rax); nop
            &[0xc3],                   // ret
        ] {
            assert!(!ends_in_call(other), "{other:x?}");
        }
    }
}
