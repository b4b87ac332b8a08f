//! Calls into module code from the runtime: `main`, constructors,
//! `HCR_ON_RELOAD` blocks, reload handlers.
//!
//! A C++ exception that leaves such an entry point has nowhere to go in a
//! native program either: the unwinder's search finds no handler above
//! `main` (or above a static initialiser), `__cxa_throw` calls
//! `std::terminate`, which prints `terminate called after throwing an
//! instance of 'T'` and `what():`, then aborts. Here the frames above the
//! entry point are the runtime's (Rust's), whose `catch_unwind` claims
//! every exception in the search phase and then aborts with "Rust cannot
//! catch foreign exceptions", having run the exception's cleanups (a
//! destructor in module code may then run through a stale address). So
//! every entry point is called through `hcr_call_entry`, whose unwind
//! information names a personality routine that ends the search there, as
//! the end of the stack would: the C++ runtime then terminates exactly as
//! it does natively. Forced unwinds (`pthread_exit`, cancellation) pass
//! through. Debuggers read only the frame's CFI, which is an ordinary
//! frame's: backtraces go on into the runtime.

use std::ffi::c_int;

// hcr_call_entry(fn, a, b, c): calls fn(a, b, c) and returns what it
// returns. Its FDE names `entry_personality` (through a pointer in
// read-only data after relocation, as compilers reference
// `__gxx_personality_v0`: pc-relative, indirect); so does the crash
// guard's entry (`guard.rs`), which also calls module code.
std::arch::global_asm!(
    ".pushsection .data.rel.ro.hcr_entry_personality,\"aw\",@progbits",
    ".p2align 3",
    ".globl hcr_entry_personality_ref",
    ".hidden hcr_entry_personality_ref",
    "hcr_entry_personality_ref:",
    ".quad {personality}",
    ".popsection",
    ".pushsection .text.hcr_call_entry,\"ax\",@progbits",
    ".p2align 4",
    ".globl hcr_call_entry",
    ".hidden hcr_call_entry",
    ".type hcr_call_entry,@function",
    "hcr_call_entry:",
    ".cfi_startproc",
    ".cfi_personality 0x9b, hcr_entry_personality_ref",
    "push rbp",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_rel_offset rbp, 0",
    "mov rbp, rsp",
    ".cfi_def_cfa_register rbp",
    "mov rax, rdi",
    "mov rdi, rsi",
    "mov rsi, rdx",
    "mov rdx, rcx",
    "call rax",
    "pop rbp",
    ".cfi_def_cfa rsp, 8",
    "ret",
    ".cfi_endproc",
    ".size hcr_call_entry, .-hcr_call_entry",
    ".popsection",
    personality = sym entry_personality,
);

unsafe extern "C" {
    fn hcr_call_entry(f: usize, a: usize, b: usize, c: usize) -> usize;
}

// The unwinder's interface (the Itanium C++ ABI, as libgcc implements it).
const UA_SEARCH_PHASE: c_int = 1;
const URC_END_OF_STACK: c_int = 5;
const URC_CONTINUE_UNWIND: c_int = 8;

/// The personality routine of `hcr_call_entry`'s frame: in the search
/// phase, the stack ends here (no handler above an entry point); a
/// cleanup phase (a forced unwind) goes on.
unsafe extern "C" fn entry_personality(
    _version: c_int,
    actions: c_int,
    _class: u64,
    _exception: *mut std::ffi::c_void,
    _context: *mut std::ffi::c_void,
) -> c_int {
    match actions & UA_SEARCH_PHASE {
        0 => URC_CONTINUE_UNWIND,
        _ => URC_END_OF_STACK,
    }
}

/// Calls the function at `addr` with up to three integer or pointer
/// arguments (extra ones are ignored by a function that takes fewer, under
/// the x86-64 calling convention); returns its `rax`.
///
/// # Safety
/// `addr` must be a mapped, executable function of the C calling
/// convention whose parameters are integers or pointers, and `a`, `b`,
/// `c` valid values for them.
pub(crate) unsafe fn call(addr: u64, a: usize, b: usize, c: usize) -> usize {
    // SAFETY: passed on from the caller; `hcr_call_entry` only moves the
    // arguments into place and calls.
    unsafe { hcr_call_entry(addr as usize, a, b, c) }
}
