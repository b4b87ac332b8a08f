//! The crash guard: `hcr_guard(fn, arg)` runs `fn(arg)`; when a fatal
//! signal hits module code inside it, the crash handler (`crash.rs`)
//! reports it and then, instead of passing the signal on, makes the thread
//! resume in the guard as if `fn` had returned: it points the signal
//! context's stack pointer at the guard's frame and its instruction pointer
//! at the guard's landing code, and returns from the handler (no
//! `longjmp`: the kernel restores the signal mask with the context). The
//! guard then rolls back to the previous generation when the crashed code
//! came from the latest reload, and returns -1.
//!
//! The frames between the guard and the crash are abandoned (no
//! destructors run, locks they held stay held): what cr.h and every
//! signal-based crash guard do; the guarded function should be a frame's
//! work, not code holding shared locks.

use std::cell::Cell;
use std::ffi::c_void;

// hcr_guard_enter(fn, arg, slot): saves the callee-saved registers on its
// own frame, stores the stack pointer in *slot, calls fn(arg), returns 0.
// hcr_guard_landing: entered from the signal handler with the stack
// pointer set to the value stored in *slot; restores the registers and
// returns -1 from hcr_guard_enter's frame.
std::arch::global_asm!(
    ".pushsection .text.hcr_guard_enter,\"ax\",@progbits",
    ".p2align 4",
    ".globl hcr_guard_enter",
    ".hidden hcr_guard_enter",
    ".type hcr_guard_enter,@function",
    "hcr_guard_enter:",
    ".cfi_startproc",
    // A C++ exception the guarded function lets out terminates the
    // program as natively (`entry.rs`); Rust frames above cannot pass it.
    ".cfi_personality 0x9b, hcr_entry_personality_ref",
    "push rbp",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_rel_offset rbp, 0",
    "push rbx",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_rel_offset rbx, 0",
    "push r12",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_rel_offset r12, 0",
    "push r13",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_rel_offset r13, 0",
    "push r14",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_rel_offset r14, 0",
    "push r15",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_rel_offset r15, 0",
    "sub rsp, 8",
    ".cfi_adjust_cfa_offset 8",
    "mov [rdx], rsp",
    "mov rax, rdi",
    "mov rdi, rsi",
    "call rax",
    "xor eax, eax",
    "2:",
    "add rsp, 8",
    ".cfi_adjust_cfa_offset -8",
    "pop r15",
    ".cfi_adjust_cfa_offset -8",
    "pop r14",
    ".cfi_adjust_cfa_offset -8",
    "pop r13",
    ".cfi_adjust_cfa_offset -8",
    "pop r12",
    ".cfi_adjust_cfa_offset -8",
    "pop rbx",
    ".cfi_adjust_cfa_offset -8",
    "pop rbp",
    ".cfi_adjust_cfa_offset -8",
    "ret",
    ".cfi_endproc",
    ".size hcr_guard_enter, .-hcr_guard_enter",
    ".p2align 4",
    ".globl hcr_guard_landing",
    ".hidden hcr_guard_landing",
    ".type hcr_guard_landing,@function",
    "hcr_guard_landing:",
    "mov eax, -1",
    "jmp 2b",
    ".size hcr_guard_landing, .-hcr_guard_landing",
    ".popsection",
);

extern "C" {
    fn hcr_guard_enter(
        f: unsafe extern "C" fn(*mut c_void),
        arg: *mut c_void,
        slot: *mut u64,
    ) -> i32;
    fn hcr_guard_landing();
}

thread_local! {
    /// The innermost active guard's saved stack pointer (0: none).
    static SAVED_SP: Cell<u64> = const { Cell::new(0) };
    /// The crash that ended the last guarded call: (signal, module pc).
    static CRASH: Cell<(i32, u64)> = const { Cell::new((0, 0)) };
}

/// Called by the crash handler after a report (async-signal-safe: two
/// thread-local cells and the context).
///
/// # Safety
/// `uc` is the handler's context.
unsafe fn hook(sig: libc::c_int, pc: u64, uc: *mut libc::ucontext_t) -> bool {
    let sp = SAVED_SP.with(Cell::get);
    if sp == 0 {
        return false;
    }
    CRASH.with(|c| c.set((sig, pc)));
    // SAFETY: the caller passes the live context; the guard frame at `sp`
    // is below the faulting frames on this thread's stack and still intact.
    unsafe {
        let g = &mut (*uc).uc_mcontext.gregs;
        g[libc::REG_RSP as usize] = sp as i64;
        g[libc::REG_RIP as usize] = hcr_guard_landing as *const () as usize as i64;
    }
    true
}

/// What a guarded call ended with.
pub enum Outcome {
    /// `fn` returned.
    Returned,
    /// A fatal signal in module code: signal and module pc.
    Crashed(i32, u64),
}

/// Runs `f(arg)` under a guard.
///
/// # Safety
/// `f` must be safe to call with `arg`; frames between the guard and a
/// crash are abandoned (see the module docs).
pub unsafe fn run(f: unsafe extern "C" fn(*mut c_void), arg: *mut c_void) -> Outcome {
    crate::crash::set_guard_hook(hook);
    let outer = SAVED_SP.with(Cell::get);
    /// Runs on the guard's frame: publishes the stack pointer
    /// hcr_guard_enter stored, then calls the guarded function.
    unsafe extern "C" fn inner(p: *mut c_void) {
        type Args = (unsafe extern "C" fn(*mut c_void), *mut c_void, *mut u64);
        // SAFETY: `p` is `args` on run's frame, alive for the call; the
        // slot was written by hcr_guard_enter before it called us.
        let (f, arg, sp) = unsafe {
            let (f, arg, slot) = *(p as *const Args);
            (f, arg, *slot)
        };
        SAVED_SP.with(|s| s.set(sp));
        // SAFETY: the caller of `run` vouches for f(arg).
        unsafe { f(arg) };
    }
    let mut slot = 0u64;
    let slot_ptr: *mut u64 = &mut slot;
    let mut args = (f, arg, slot_ptr);
    // SAFETY: `inner` reads `args` as laid out above; the slot is
    // writable for the call.
    let r = unsafe { hcr_guard_enter(inner, (&raw mut args).cast(), slot_ptr) };
    SAVED_SP.with(|s| s.set(outer));
    if r == 0 {
        Outcome::Returned
    } else {
        let (sig, pc) = CRASH.with(Cell::get);
        Outcome::Crashed(sig, pc)
    }
}

/// Runs a guarded call and handles its crash: rollback when the crashed
/// code came from the latest reload, a message on stderr and in
/// `hcr_last_error()`. Returns 0 or -1.
///
/// # Safety
/// As [`run`].
pub unsafe fn guarded(f: unsafe extern "C" fn(*mut c_void), arg: *mut c_void) -> i32 {
    // SAFETY: passed on from the caller.
    match unsafe { run(f, arg) } {
        Outcome::Returned => {
            crate::ffi::set_error("");
            0
        }
        Outcome::Crashed(sig, pc) => {
            crate::ffi::reload_abandoned();
            let what = crate::crash::describe(sig, pc);
            let crashed = crate::crash::generation_of(pc);
            let rolled = crashed.and_then(|g| {
                crate::ffi::with_state(|st| Ok(st.roll_back(g)))
                    .ok()
                    .flatten()
            });
            let msg = match rolled {
                Some(to) => {
                    let m = format!(
                        "crash: {what}; rolled back to image generation {to} (the crashed image runs again only once the file changes)"
                    );
                    use std::io::Write as _;
                    let _ = writeln!(
                        std::io::stderr(),
                        "hcr: rolled back to image generation {to} after a crash in image generation {}",
                        crashed.unwrap_or_default()
                    );
                    m
                }
                None => format!("crash: {what}"),
            };
            crate::ffi::set_error(&msg);
            -1
        }
    }
}

/// `int hcr_guard(void (*fn)(void *), void *arg)`: see `hcr.h`.
///
/// # Safety
/// `f` must be a function of that C type, safe to call with `arg`.
#[no_mangle]
pub unsafe extern "C" fn hcr_guard(
    f: Option<unsafe extern "C" fn(*mut c_void)>,
    arg: *mut c_void,
) -> libc::c_int {
    let Some(f) = f else {
        crate::ffi::set_error("hcr_guard: no function given");
        return -1;
    };
    // SAFETY: the caller's contract.
    unsafe { guarded(f, arg) }
}
