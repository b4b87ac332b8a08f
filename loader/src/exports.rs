//! The image's global symbols, made visible to shared objects the program
//! loads with `dlopen` (what `-Wl,-E` gives a normal executable).
//!
//! A plugin's undefined symbols are resolved by the system loader against
//! the process's global scope: the executable, its libraries, and every
//! object loaded `RTLD_GLOBAL`. The image is none of these, so the loader
//! writes a small shared object that defines every exported name as an
//! absolute symbol (`SHN_ABS`, which `ld.so` does not relocate) whose value
//! is the permanent address (a function's trampoline, a global's persistent
//! storage), and loads it `RTLD_GLOBAL` from an anonymous memory file.
//!
//! The object has no code, no relocations, no constructors and no
//! dependencies: a header, three program headers (`PT_LOAD`, `PT_DYNAMIC`,
//! `PT_GNU_STACK` so that loading it never asks for an executable stack), a
//! SysV hash table, the dynamic symbols, their strings and the dynamic
//! section, all in one read-only segment at address 0.

use std::ffi::CString;
use std::io::Write as _;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

/// One exported symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Export {
    /// Symbol name.
    pub name: String,
    /// Its permanent address.
    pub addr: u64,
    /// Size in bytes (0 when unknown).
    pub size: u64,
    /// A function (else a data object).
    pub func: bool,
}

const EHDR: usize = 64;
const PHDR: usize = 56;
const SYM: usize = 24;
const DYN: usize = 16;

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_GNU_STACK: u32 = 0x6474_e551;
const PF_R: u32 = 4;
const PF_W: u32 = 2;
const SHN_ABS: u16 = 0xfff1;
const STB_GLOBAL: u8 = 1;
const STT_OBJECT: u8 = 1;
const STT_FUNC: u8 = 2;
const DT_NULL: u64 = 0;
const DT_HASH: u64 = 4;
const DT_STRTAB: u64 = 5;
const DT_SYMTAB: u64 = 6;
const DT_STRSZ: u64 = 10;
const DT_SYMENT: u64 = 11;
const DT_SONAME: u64 = 14;

/// The SysV ELF hash (`DT_HASH`).
fn elf_hash(name: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &c in name {
        h = (h << 4).wrapping_add(u32::from(c));
        let g = h & 0xf000_0000;
        if g != 0 {
            h ^= g >> 24;
        }
        h &= !g;
    }
    h
}

fn align8(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(8) {
        v.push(0);
    }
}

/// Builds the shared object defining `exports` (names must be unique and
/// free of NUL bytes; others are skipped), with `soname`.
pub fn build_object(soname: &str, exports: &[Export]) -> Vec<u8> {
    let exports: Vec<&Export> = exports
        .iter()
        .filter(|e| !e.name.is_empty() && !e.name.contains('\0'))
        .collect();
    // Strings: "", soname, then the names.
    let mut dynstr = vec![0u8];
    let soname_off = dynstr.len();
    dynstr.extend_from_slice(soname.as_bytes());
    dynstr.push(0);
    let mut name_off = Vec::with_capacity(exports.len());
    for e in &exports {
        name_off.push(dynstr.len());
        dynstr.extend_from_slice(e.name.as_bytes());
        dynstr.push(0);
    }
    let nsyms = exports.len() + 1;
    let nbucket = (exports.len() / 2).max(1);
    let hash_off = EHDR + 3 * PHDR;
    let hash_len = 4 * (2 + nbucket + nsyms);
    let dynsym_off = (hash_off + hash_len + 7) & !7;
    let dynstr_off = dynsym_off + nsyms * SYM;
    let dynamic_off = (dynstr_off + dynstr.len() + 7) & !7;
    let ndyn = 7;
    let total = dynamic_off + ndyn * DYN;

    let mut out = Vec::with_capacity(total);
    // ELF header.
    out.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&3u16.to_le_bytes()); // ET_DYN
    out.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    out.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    out.extend_from_slice(&0u64.to_le_bytes()); // e_entry
    out.extend_from_slice(&(EHDR as u64).to_le_bytes()); // e_phoff
    out.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    out.extend_from_slice(&(EHDR as u16).to_le_bytes());
    out.extend_from_slice(&(PHDR as u16).to_le_bytes());
    out.extend_from_slice(&3u16.to_le_bytes()); // e_phnum
    out.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    out.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    out.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    let phdr = |out: &mut Vec<u8>, p_type: u32, flags: u32, off: usize, len: usize, align: u64| {
        out.extend_from_slice(&p_type.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        for v in [
            off as u64, off as u64, off as u64, len as u64, len as u64, align,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    };
    phdr(&mut out, PT_LOAD, PF_R, 0, total, 0x1000);
    phdr(&mut out, PT_DYNAMIC, PF_R, dynamic_off, ndyn * DYN, 8);
    phdr(&mut out, PT_GNU_STACK, PF_R | PF_W, 0, 0, 16);
    // Hash table: buckets hold the first symbol of each chain.
    let mut buckets = vec![0u32; nbucket];
    let mut chains = vec![0u32; nsyms];
    for (i, e) in exports.iter().enumerate() {
        let sym = (i + 1) as u32;
        let b = elf_hash(e.name.as_bytes()) as usize % nbucket;
        chains[sym as usize] = buckets[b];
        buckets[b] = sym;
    }
    out.extend_from_slice(&(nbucket as u32).to_le_bytes());
    out.extend_from_slice(&(nsyms as u32).to_le_bytes());
    for v in buckets.iter().chain(&chains) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    align8(&mut out);
    // Symbols.
    out.extend_from_slice(&[0; SYM]);
    for (e, &off) in exports.iter().zip(&name_off) {
        out.extend_from_slice(&(off as u32).to_le_bytes());
        let kind = if e.func { STT_FUNC } else { STT_OBJECT };
        out.push((STB_GLOBAL << 4) | kind);
        out.push(0); // STV_DEFAULT
        out.extend_from_slice(&SHN_ABS.to_le_bytes());
        out.extend_from_slice(&e.addr.to_le_bytes());
        out.extend_from_slice(&e.size.to_le_bytes());
    }
    out.extend_from_slice(&dynstr);
    align8(&mut out);
    for (tag, val) in [
        (DT_HASH, hash_off as u64),
        (DT_STRTAB, dynstr_off as u64),
        (DT_SYMTAB, dynsym_off as u64),
        (DT_STRSZ, dynstr.len() as u64),
        (DT_SYMENT, SYM as u64),
        (DT_SONAME, soname_off as u64),
        (DT_NULL, 0),
    ] {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&val.to_le_bytes());
    }
    debug_assert_eq!(out.len(), total);
    out
}

/// A loaded export object: closed (`dlclose`) when dropped. Its memory file
/// stays open while it is loaded, so that no later object is opened under
/// the same `/proc/self/fd/N` name (which `ld.so` would take for this one).
#[derive(Debug)]
pub struct Published {
    handle: usize,
    _fd: OwnedFd,
}

/// Writes `object` to an anonymous memory file and loads it
/// `RTLD_NOW | RTLD_GLOBAL`.
///
/// # Errors
/// The memory file cannot be made, or the system loader refuses the object
/// (its message).
pub fn publish(object: &[u8], name: &str) -> Result<Published, String> {
    let cname = CString::new(name).map_err(|e| e.to_string())?;
    // SAFETY: memfd_create with a NUL-terminated name and valid flags; the
    // returned descriptor is owned by `fd` from here on.
    let fd = unsafe {
        let fd = libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC);
        if fd < 0 {
            return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
        }
        OwnedFd::from_raw_fd(fd)
    };
    let mut file = std::fs::File::from(fd.try_clone().map_err(|e| e.to_string())?);
    file.write_all(object).map_err(|e| e.to_string())?;
    drop(file);
    let path =
        CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(|e| e.to_string())?;
    // SAFETY: the object has no constructors, code or relocations: loading
    // it only adds its absolute symbols to the global scope. dlerror's
    // string is copied at once.
    let handle = unsafe {
        let h = libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
        if h.is_null() {
            let e = libc::dlerror();
            return Err(if e.is_null() {
                "dlopen failed".into()
            } else {
                std::ffi::CStr::from_ptr(e).to_string_lossy().into_owned()
            });
        }
        h as usize
    };
    Ok(Published { handle, _fd: fd })
}

impl Drop for Published {
    fn drop(&mut self) {
        // SAFETY: `handle` came from dlopen and is closed once. A plugin
        // that bound one of its symbols keeps it loaded (ld.so records the
        // dependency), so no address it resolved goes away.
        unsafe {
            libc::dlclose(self.handle as *mut libc::c_void);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exported_symbols_resolve_through_dlsym_at_their_absolute_addresses() {
        static CELL: u64 = 42;
        let exports = vec![
            Export {
                name: "hcr_test_export_cell".into(),
                addr: &CELL as *const u64 as u64,
                size: 8,
                func: false,
            },
            Export {
                name: "hcr_test_export_fn".into(),
                addr: 0x1234_5678,
                size: 0,
                func: true,
            },
        ];
        let obj = build_object("hcr-test-exports.so", &exports);
        let p = publish(&obj, "hcr-test-exports").expect("publish");
        for e in &exports {
            let c = CString::new(e.name.as_str()).unwrap();
            assert_eq!(crate::host_symbol(&c), Some(e.addr), "{}", e.name);
        }
        // A later object with new addresses: the lookups above made this
        // binary depend on the first one, which then stays loaded (as a
        // plugin's bindings keep it) and comes first in the global scope.
        drop(p);
        let again = build_object("hcr-test-exports-2.so", &exports[1..]);
        let p2 = publish(&again, "hcr-test-exports-2").expect("publish again");
        assert_eq!(crate::host_symbol(c"hcr_test_export_fn"), Some(0x1234_5678));
        drop(p2);
    }
}
