//! Permanent function addresses: near trampolines `jmp *slot(%rip)` inside
//! the window, each with its own 8-byte slot. Retargeting a function is one
//! aligned atomic store to its slot; code pages never change once
//! executable, so other threads always jump to either the old or the new
//! target.
//!
//! Layout: trampolines are made in batches (one per load or reload). A batch
//! has a code chunk (8 bytes per trampoline: `jmp *disp32(%rip)`, `int3`,
//! `int3`; read+execute) and a slot chunk (8 bytes per trampoline;
//! read+write). Removed functions get a stub (also batched) that reports
//! `hcr: call to removed function MODULE:NAME` and aborts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use dynasmrt::x64::X64Relocation;
use dynasmrt::{dynasm, DynasmApi, VecAssembler};
use hcr_loader::{mem, Chunk, Prot, Window};

use crate::Error;

/// Size of one trampoline.
pub const TRAMPOLINE_SIZE: usize = 8;
/// Size of one removed-function stub.
pub const STUB_SIZE: usize = 32;

/// One permanent address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trampoline {
    /// Address code calls.
    pub code: u64,
    /// Address of the 8-byte target slot.
    pub slot: u64,
}

/// Chunks of trampolines made together: trampoline `i` is the `i`-th 8
/// bytes of the code chunk and jumps through the `i`-th slot.
#[derive(Debug)]
pub struct Batch {
    /// Trampolines in this batch.
    len: usize,
    /// Code chunk (read+execute).
    pub code: Chunk,
    /// Slot chunk (read+write).
    pub slots: Chunk,
}

impl Batch {
    /// Trampolines in this batch.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a batch of no trampoline.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Trampoline `i` (`i < len()`).
    pub fn get(&self, i: usize) -> Trampoline {
        debug_assert!(i < self.len);
        Trampoline {
            code: (self.code.addr + i * TRAMPOLINE_SIZE) as u64,
            slot: (self.slots.addr + i * 8) as u64,
        }
    }

    /// Every trampoline, in order.
    pub fn iter(&self) -> impl Iterator<Item = Trampoline> + '_ {
        (0..self.len).map(|i| self.get(i))
    }

    /// Returns the batch's chunks to `window` (a reload that failed or was
    /// discarded before it published them).
    ///
    /// # Safety
    /// The batch was never published: no permanent address handed out,
    /// no code or slot reached through it.
    pub unsafe fn free_unpublished(self, window: &mut hcr_loader::Window) {
        // SAFETY: as the caller guarantees, nothing refers to either chunk.
        unsafe {
            window.free(self.code);
            window.free(self.slots);
        }
    }
}

/// Encodes a trampoline at `code` jumping through `slot`.
///
/// # Errors
/// The slot is out of ±2 GiB reach.
pub fn encode_trampoline(code: u64, slot: u64) -> Result<Vec<u8>, Error> {
    let disp = i32::try_from(slot as i64 - (code as i64 + 6)).map_err(|_| {
        Error::Internal(format!(
            "trampoline slot {slot:#x} out of reach of {code:#x}"
        ))
    })?;
    let mut a = VecAssembler::<X64Relocation>::new(code as usize);
    dynasm!(a
        ; .arch x64
        ; jmp QWORD [rip + disp]
        ; int3
        ; int3
    );
    a.finalize()
        .map_err(|e| Error::Internal(format!("trampoline encoding: {e:?}")))
}

/// Encodes a removed-function stub: `mov rdi, id; mov rax, handler; jmp rax`.
pub fn encode_removed_stub(code: u64, id: u64, handler: u64) -> Result<Vec<u8>, Error> {
    let mut a = VecAssembler::<X64Relocation>::new(code as usize);
    dynasm!(a
        ; .arch x64
        ; mov rdi, QWORD id as i64
        ; mov rax, QWORD handler as i64
        ; jmp rax
    );
    let mut v = a
        .finalize()
        .map_err(|e| Error::Internal(format!("stub encoding: {e:?}")))?;
    v.resize(STUB_SIZE, 0xCC);
    Ok(v)
}

/// Makes `n` trampolines whose slots hold 0 until they are retargeted.
///
/// # Errors
/// The window is exhausted.
pub fn make_batch(window: &mut Window, n: usize) -> Result<Batch, Error> {
    let code = window.alloc(n.max(1) * TRAMPOLINE_SIZE)?;
    // Fresh window pages are zero-filled: every slot starts as 0.
    let slots = match window.alloc(n.max(1) * 8) {
        Ok(s) => s,
        Err(e) => {
            // SAFETY: the code chunk was never published.
            unsafe { window.free(code) };
            return Err(e.into());
        }
    };
    // Trampoline i jumps through slot i, and both arrays have the same
    // 8-byte stride: every trampoline's displacement is the same, so one
    // encoding serves them all, written as one 8-byte word each.
    let word = encode_trampoline(code.addr as u64, slots.addr as u64).and_then(|b| {
        let b: [u8; TRAMPOLINE_SIZE] = b
            .try_into()
            .map_err(|_| Error::Internal("trampoline encoding is not 8 bytes".into()))?;
        Ok(u64::from_le_bytes(b))
    });
    let word = match word {
        Ok(w) => w,
        Err(e) => {
            // SAFETY: neither chunk was published.
            unsafe {
                window.free(code);
                window.free(slots);
            }
            return Err(e);
        }
    };
    // SAFETY: the code chunk is fresh, read-write, ours, 8-aligned (page
    // aligned) and at least `n * TRAMPOLINE_SIZE` bytes long; nothing else
    // refers to it yet.
    let words = unsafe { std::slice::from_raw_parts_mut(code.addr as *mut u64, n) };
    words.fill(word);
    if let Err(e) = mem::protect(&code, Prot::ReadExecute) {
        // SAFETY: as above: never published.
        unsafe {
            window.free(code);
            window.free(slots);
        }
        return Err(e.into());
    }
    Ok(Batch {
        len: n,
        code,
        slots,
    })
}

/// Publishes `target` in `slot` (release order: the code it points to is
/// complete and executable before any thread can jump there).
pub fn store_slot(slot: u64, target: u64) {
    // SAFETY: slots are 8-byte aligned words in a read-write chunk of the
    // window that lives as long as its trampoline (forever, or until
    // shutdown); AtomicU64 has the layout of u64.
    let a = unsafe { &*(slot as *const AtomicU64) };
    a.store(target, Ordering::Release);
}

/// Reads a slot.
pub fn load_slot(slot: u64) -> u64 {
    // SAFETY: as in `store_slot`.
    let a = unsafe { &*(slot as *const AtomicU64) };
    a.load(Ordering::Acquire)
}

/// Names of removed functions, indexed by the id a stub passes.
static REMOVED: Mutex<Vec<String>> = Mutex::new(Vec::new());

extern "C" fn removed_function_called(id: u64) -> ! {
    let name = REMOVED
        .lock()
        .ok()
        .and_then(|v| v.get(id as usize).cloned())
        .unwrap_or_else(|| "?".into());
    {
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "hcr: call to removed function {name}");
    }
    std::process::abort();
}

/// Makes one stub per name (`MODULE:NAME`) in a fresh read+execute chunk.
///
/// # Errors
/// The window is exhausted.
pub fn make_removed_stubs(
    window: &mut Window,
    names: &[String],
) -> Result<(Chunk, Vec<u64>), Error> {
    let chunk = window.alloc(names.len().max(1) * STUB_SIZE)?;
    let mut ids = REMOVED
        .lock()
        .map_err(|_| Error::Internal("poisoned".into()))?;
    let mut bytes = Vec::with_capacity(names.len() * STUB_SIZE);
    let mut addrs = Vec::with_capacity(names.len());
    for (i, n) in names.iter().enumerate() {
        let at = (chunk.addr + i * STUB_SIZE) as u64;
        let id = ids.len() as u64;
        ids.push(n.clone());
        bytes.extend_from_slice(&encode_removed_stub(
            at,
            id,
            removed_function_called as *const () as usize as u64,
        )?);
        addrs.push(at);
    }
    // SAFETY: the chunk is fresh, read-write and large enough.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), chunk.addr as *mut u8, bytes.len()) };
    mem::protect(&chunk, Prot::ReadExecute)?;
    Ok((chunk, addrs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trampoline_bytes() {
        // jmp *0x1000-0x6(%rip) from 0x10000 to slot 0x11000.
        let b = encode_trampoline(0x10000, 0x11000).unwrap();
        assert_eq!(b, [0xFF, 0x25, 0xFA, 0x0F, 0, 0, 0xCC, 0xCC]);
    }

    #[test]
    fn trampolines_of_a_batch_share_one_encoding() {
        // Same stride for code and slots: the displacement does not change.
        for i in 0..4u64 {
            let b = encode_trampoline(0x10000 + 8 * i, 0x20000 + 8 * i).unwrap();
            assert_eq!(b, encode_trampoline(0x10000, 0x20000).unwrap());
        }
    }

    #[test]
    fn a_batch_jumps_through_its_slots() {
        let mut window = Window::reserve(1 << 24).unwrap();
        let b = make_batch(&mut window, 1000).unwrap();
        assert_eq!(b.len(), 1000);
        for (i, t) in b.iter().enumerate() {
            assert_eq!(t.code, (b.code.addr + i * TRAMPOLINE_SIZE) as u64);
            assert_eq!(t.slot, (b.slots.addr + i * 8) as u64);
            assert_eq!(load_slot(t.slot), 0);
            // SAFETY: the code chunk is mapped read+execute (readable).
            let bytes = unsafe { std::slice::from_raw_parts(t.code as *const u8, 8) };
            assert_eq!(bytes, encode_trampoline(t.code, t.slot).unwrap());
        }
    }

    #[test]
    fn removed_stub_bytes() {
        let b = encode_removed_stub(0, 7, 0x1122334455667788).unwrap();
        assert_eq!(&b[..2], &[0x48, 0xBF]); // mov rdi, imm64
        assert_eq!(&b[2..10], &7u64.to_le_bytes());
        assert_eq!(&b[10..12], &[0x48, 0xB8]); // mov rax, imm64
        assert_eq!(&b[20..22], &[0xFF, 0xE0]); // jmp rax
        assert_eq!(b.len(), STUB_SIZE);
    }
}
