//! Thread-local variables of images: one block per thread, one offset per
//! variable.
//!
//! Every thread-local variable of every image the process ever loads gets a
//! permanent *offset* ([`alloc`]), bump-allocated and never reused, so an
//! offset names one variable for the life of the process. Each thread that
//! touches image TLS gets a block: a private anonymous mapping of
//! [`BLOCK_RESERVE`] bytes (`MAP_NORESERVE`: untouched pages cost nothing),
//! filled from the template (every variable's initial bytes) when it is
//! made. A variable is at `block + offset` in every thread, so:
//!
//! * `__tls_get_addr(&{TLS_MODULE, offset})` (general and local dynamic,
//!   the linker's GOT pairs) is `block + offset`: two loads and an add
//!   ([`hcr_rt_tls_get_addr`], in assembly);
//! * a TLS descriptor's resolver returns `block + offset - %fs:0`;
//! * the pointer to the calling thread's block is itself an initial-exec
//!   thread-local variable of the runtime (`%fs`-relative: one load).
//!
//! A variable new in a reload is written into the template and into every
//! live thread's block before the new code is published ([`init`]): no
//! thread can reach an offset before the code that names it runs, so no
//! lock is needed on the access path. A thread that exits frees its block
//! (a `pthread` key destructor, which glibc runs after the thread's C++
//! `thread_local` destructors).

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::Error;

/// Virtual size of each thread's block: the most thread-local bytes a
/// process can allocate over all its loads (offsets are never reused).
pub const BLOCK_RESERVE: usize = 16 << 20;

struct Registry {
    /// Initial bytes of every variable at its offset; its length is the
    /// allocated size.
    template: Vec<u8>,
    /// Every live thread's block.
    blocks: Vec<usize>,
    /// Initial bytes of kept variables from an image being prepared: the
    /// template takes them when that image is committed.
    staged: Vec<(u64, Vec<u8>)>,
    /// The `pthread` key whose destructor frees an exiting thread's block.
    key: Option<libc::pthread_key_t>,
}

/// The registry behind a `pthread` mutex rather than `std`'s: threads of
/// the program take it (their first access, their exit), and race
/// detectors (valgrind's DRD) understand `pthread` locks, not futexes.
struct Locked {
    mutex: UnsafeCell<libc::pthread_mutex_t>,
    registry: UnsafeCell<Registry>,
}

// SAFETY: `registry` is only reached through `Guard`, which holds `mutex`.
unsafe impl Sync for Locked {}

static REGISTRY: Locked = Locked {
    mutex: UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER),
    registry: UnsafeCell::new(Registry {
        template: Vec::new(),
        blocks: Vec::new(),
        staged: Vec::new(),
        key: None,
    }),
};

struct Guard(&'static Locked);

impl Drop for Guard {
    fn drop(&mut self) {
        // SAFETY: this guard locked the mutex.
        unsafe { libc::pthread_mutex_unlock(self.0.mutex.get()) };
    }
}

impl std::ops::Deref for Guard {
    type Target = Registry;
    fn deref(&self) -> &Registry {
        // SAFETY: the mutex is held for the guard's life.
        unsafe { &*self.0.registry.get() }
    }
}

impl std::ops::DerefMut for Guard {
    fn deref_mut(&mut self) -> &mut Registry {
        // SAFETY: the mutex is held for the guard's life; one guard at a time.
        unsafe { &mut *self.0.registry.get() }
    }
}

fn registry() -> Guard {
    // SAFETY: a static, initialised mutex; unlocked by the guard's drop.
    unsafe { libc::pthread_mutex_lock(REGISTRY.mutex.get()) };
    Guard(&REGISTRY)
}

// The calling thread's block pointer lives in an initial-exec thread-local
// variable (`hcr_rt_tls_block`), so the access paths below read it with
// one `%fs`-relative load and no call. The paths are written in assembly
// because a TLS descriptor's resolver must preserve every register but
// %rax.
std::arch::global_asm!(
    r#"
    .section .tbss.hcr_rt_tls_block,"awT",@nobits
    .p2align 3
    .hidden hcr_rt_tls_block
hcr_rt_tls_block:
    .zero 8

    .text
    .p2align 4
    .globl hcr_rt_tls_block_slot
    .hidden hcr_rt_tls_block_slot
    .type hcr_rt_tls_block_slot,@function
hcr_rt_tls_block_slot:
    mov rax, qword ptr [rip + hcr_rt_tls_block@GOTTPOFF]
    add rax, qword ptr fs:[0]
    ret
    .size hcr_rt_tls_block_slot, .-hcr_rt_tls_block_slot

    .p2align 4
    .globl hcr_rt_tls_get_addr
    .hidden hcr_rt_tls_get_addr
    .type hcr_rt_tls_get_addr,@function
hcr_rt_tls_get_addr:
    mov rax, qword ptr [rip + hcr_rt_tls_block@GOTTPOFF]
    mov rax, qword ptr fs:[rax]
    test rax, rax
    jz 1f
    add rax, qword ptr [rdi + 8]
    ret
1:
    jmp {slow_get_addr}
    .size hcr_rt_tls_get_addr, .-hcr_rt_tls_get_addr

    .p2align 4
    .globl hcr_rt_tlsdesc_resolver
    .hidden hcr_rt_tlsdesc_resolver
    .type hcr_rt_tlsdesc_resolver,@function
hcr_rt_tlsdesc_resolver:
    push rcx
    mov rcx, qword ptr [rip + hcr_rt_tls_block@GOTTPOFF]
    mov rcx, qword ptr fs:[rcx]
    test rcx, rcx
    jz 2f
    add rcx, qword ptr [rax + 8]
    mov rax, rcx
    sub rax, qword ptr fs:[0]
    pop rcx
    ret
2:
    pop rcx
    push rbp
    mov rbp, rsp
    push rdi
    push rsi
    push rdx
    push rcx
    push r8
    push r9
    push r10
    push r11
    push rbx
    push rax
    mov rbx, rax
    sub rsp, qword ptr [rip + {xsave_size}]
    and rsp, -64
    mov qword ptr [rsp + 512], 0
    mov qword ptr [rsp + 520], 0
    mov qword ptr [rsp + 528], 0
    mov qword ptr [rsp + 536], 0
    mov qword ptr [rsp + 544], 0
    mov qword ptr [rsp + 552], 0
    mov qword ptr [rsp + 560], 0
    mov qword ptr [rsp + 568], 0
    mov eax, -1
    mov edx, -1
    xsave64 [rsp]
    mov rdi, rbx
    call {slow_desc}
    mov qword ptr [rbp - 80], rax
    mov eax, -1
    mov edx, -1
    xrstor64 [rsp]
    lea rsp, [rbp - 72]
    pop rbx
    pop r11
    pop r10
    pop r9
    pop r8
    pop rcx
    pop rdx
    pop rsi
    pop rdi
    mov rax, qword ptr [rbp - 80]
    pop rbp
    ret
    .size hcr_rt_tlsdesc_resolver, .-hcr_rt_tlsdesc_resolver
"#,
    slow_get_addr = sym slow_get_addr,
    slow_desc = sym slow_desc,
    xsave_size = sym XSAVE_SIZE,
);

extern "C" {
    fn hcr_rt_tls_block_slot() -> *mut *mut u8;
    fn hcr_rt_tls_get_addr(ti: *const [u64; 2]) -> *mut u8;
    fn hcr_rt_tlsdesc_resolver();
}

/// Bytes the descriptor resolver's slow path reserves for `xsave` (the
/// processor's size for every enabled state component, plus alignment).
static XSAVE_SIZE: AtomicU64 = AtomicU64::new(4096);

fn xsave_size() -> u64 {
    // Leaf 1 ECX bit 26: XSAVE; leaf 0xD sub-leaf 0 EBX: the XSAVE area's
    // size for the components enabled now.
    let l1 = std::arch::x86_64::__cpuid(1);
    let has = l1.ecx & (1 << 26) != 0;
    let size = std::arch::x86_64::__cpuid_count(0xd, 0).ebx;
    if has {
        u64::from(size) + 64 + 128
    } else {
        4096
    }
}

/// The runtime's definition of `name` for images: `__tls_get_addr` and the
/// TLS descriptor resolver.
pub(crate) fn symbol(name: &str) -> Option<u64> {
    static INIT: OnceLock<()> = OnceLock::new();
    let a = match name {
        "__tls_get_addr" => hcr_rt_tls_get_addr as *const () as usize,
        n if n == hcr_image::TLSDESC_RESOLVER => {
            // Set before any descriptor naming the resolver is published
            // (the image is still being loaded).
            INIT.get_or_init(|| XSAVE_SIZE.store(xsave_size(), Ordering::Relaxed));
            hcr_rt_tlsdesc_resolver as *const () as usize
        }
        _ => return None,
    };
    Some(a as u64)
}

/// Allocates `size` bytes aligned to `align` in every thread's block;
/// returns the offset. The bytes are zero until [`init`].
///
/// # Errors
/// The blocks' reservation is used up.
pub(crate) fn alloc(size: u64, align: u32) -> Result<u64, Error> {
    let mut r = registry();
    let align = u64::from(align.max(1));
    // Offset 0 stays unused: a zero offset in a table means "no variable".
    let off = (r.template.len() as u64).max(8).div_ceil(align) * align;
    let end = off.saturating_add(size.max(1));
    if end > BLOCK_RESERVE as u64 {
        return Err(Error::Internal(format!(
            "thread-local variables need more than {BLOCK_RESERVE} bytes per thread over the process's life"
        )));
    }
    r.template.resize(end as usize, 0);
    Ok(off)
}

/// The length of the thread-local template: where the next allocation
/// starts looking.
pub(crate) fn reserved() -> usize {
    registry().template.len()
}

/// Gives back the template bytes `[from, to)` that a reload which was
/// never committed allocated, when nothing was allocated after them. Live
/// threads' blocks keep whatever was written there; the next variable given
/// those offsets is initialised in every block before any code names it.
pub(crate) fn unreserve(from: usize, to: usize) {
    let mut r = registry();
    if from < to && r.template.len() == to {
        r.template.truncate(from);
    }
}

/// Sets the initial bytes of the variable at `off` in the template and in
/// every live thread's block. Called before any code that names the
/// variable is published.
pub(crate) fn init(off: u64, bytes: &[u8]) {
    let mut r = registry();
    let off = off as usize;
    let Some(dst) = r.template.get_mut(off..off + bytes.len()) else {
        return;
    };
    dst.copy_from_slice(bytes);
    for &b in &r.blocks {
        // SAFETY: every block maps BLOCK_RESERVE bytes and the template
        // (which `off + len` lies inside) is never longer; no code reads
        // these bytes yet (the variable's code is not published).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), (b + off) as *mut u8, bytes.len()) };
    }
}

/// Stages new initial bytes for the kept variable at `off`: threads made
/// after [`publish_staged`] start from them; live threads keep their values.
pub(crate) fn stage(off: u64, bytes: Vec<u8>) {
    registry().staged.push((off, bytes));
}

/// Forgets what an image that was never committed staged.
pub(crate) fn drop_staged() {
    registry().staged.clear();
}

/// The committed image's initial bytes become the template's.
pub(crate) fn publish_staged() {
    let mut r = registry();
    for (off, bytes) in std::mem::take(&mut r.staged) {
        let off = off as usize;
        if let Some(dst) = r.template.get_mut(off..off + bytes.len()) {
            dst.copy_from_slice(&bytes);
        }
    }
}

/// Calls `f` with every 8-byte word of every live thread's variables, until
/// it returns true; says whether it did (a pointer into an old image).
pub(crate) fn any_word(mut f: impl FnMut(u64) -> bool) -> bool {
    let r = registry();
    let n = r.template.len() / 8;
    r.blocks.iter().any(|&b| {
        (0..n).any(|i| {
            // SAFETY: the block is live (it leaves the list under this lock
            // before it is unmapped) and maps at least the template's size.
            f(unsafe { std::ptr::read((b as *const u64).add(i)) })
        })
    })
}

/// Address of the variable at `off` in the calling thread.
pub(crate) fn addr_here(off: u64) -> u64 {
    block() as u64 + off
}

fn key(r: &mut Registry) -> libc::pthread_key_t {
    *r.key.get_or_insert_with(|| {
        let mut k: libc::pthread_key_t = 0;
        // SAFETY: `k` is a valid out-pointer; the destructor has the C ABI.
        let rc = unsafe { libc::pthread_key_create(&mut k, Some(free_block)) };
        if rc != 0 {
            eprintln!("hcr: pthread_key_create failed: thread-local blocks cannot be freed");
            std::process::abort();
        }
        k
    })
}

/// The calling thread's block, made on first use.
fn block() -> *mut u8 {
    // SAFETY: the slot is this thread's own initial-exec TLS word.
    let slot = unsafe { hcr_rt_tls_block_slot() };
    // SAFETY: as above; only this thread reads or writes it.
    let b = unsafe { *slot };
    if !b.is_null() {
        return b;
    }
    let mut r = registry();
    let key = key(&mut r);
    // SAFETY: a fresh private anonymous mapping; failure is checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            BLOCK_RESERVE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        eprintln!("hcr: cannot map a thread-local block: out of address space");
        std::process::abort();
    }
    let p = p as *mut u8;
    // SAFETY: the mapping holds BLOCK_RESERVE >= template bytes.
    unsafe { std::ptr::copy_nonoverlapping(r.template.as_ptr(), p, r.template.len()) };
    r.blocks.push(p as usize);
    drop(r);
    // SAFETY: `slot` is this thread's word; the key is valid.
    unsafe {
        *slot = p;
        libc::pthread_setspecific(key, p as *const c_void);
    }
    p
}

/// `pthread` key destructor: the thread is exiting; its block goes.
extern "C" fn free_block(p: *mut c_void) {
    let mut r = registry();
    r.blocks.retain(|&b| b != p as usize);
    drop(r);
    // SAFETY: the block left the list above, so no other thread reads it;
    // this thread is exiting and its C++ thread_local destructors ran.
    unsafe {
        *hcr_rt_tls_block_slot() = std::ptr::null_mut();
        libc::munmap(p, BLOCK_RESERVE);
    }
}

/// `__tls_get_addr`'s slow path: the thread's first access.
extern "C" fn slow_get_addr(ti: *const [u64; 2]) -> *mut u8 {
    // SAFETY: `ti` is a GOT pair of the image (the linker made it).
    let off = unsafe { (*ti)[1] };
    block().wrapping_add(off as usize)
}

/// The descriptor resolver's slow path: `block + offset - thread pointer`.
extern "C" fn slow_desc(desc: *const [u64; 2]) -> i64 {
    // SAFETY: `desc` is a TLS descriptor of the image (the linker made it).
    let off = unsafe { (*desc)[1] };
    let tp: i64;
    // SAFETY: reads the thread pointer, nothing else.
    unsafe { std::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp) };
    (block() as i64).wrapping_add(off as i64).wrapping_sub(tp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_follow_the_template() {
        let off = alloc(8, 8).unwrap();
        init(off, &42u64.to_le_bytes());
        let ti = [hcr_image::TLS_MODULE, off];
        // SAFETY: `ti` is a valid tls_index for an allocated variable.
        let here = unsafe { hcr_rt_tls_get_addr(&ti) } as *mut u64;
        // SAFETY: the variable is 8 bytes in this thread's block.
        unsafe { assert_eq!(*here, 42) };
        // SAFETY: as above.
        unsafe { *here = 7 };
        let other = std::thread::spawn(move || {
            // SAFETY: as above, in the new thread.
            unsafe { *(hcr_rt_tls_get_addr(&ti) as *const u64) }
        })
        .join()
        .unwrap();
        assert_eq!(other, 42);
        // SAFETY: as above.
        unsafe { assert_eq!(*here, 7) };
        assert_eq!(addr_here(off), here as u64);
    }
}
