//! x86-64 psABI facts the linker relies on.
//!
//! Compiled code reaches data and callees with 32-bit PC-relative relocations
//! (`R_X86_64_PC32`, `R_X86_64_PLT32`, `R_X86_64_*GOTPCREL*`): ±2 GiB. The
//! loader places every image, trampoline and persistent object inside one
//! reserved window, so every such relocation that the linker leaves to the
//! loader reaches. `S + A - P` uses the RELA addend always (it is not always
//! -4: `addl $1, x(%rip)` gives `x - 5`).
//!
//! A PLT stub is `jmp *disp32(%rip)` padded with `int3`: 8 bytes.

pub const R_NONE: u32 = 0;
pub const R_64: u32 = 1;
pub const R_PC32: u32 = 2;
pub const R_GOT32: u32 = 3;
pub const R_PLT32: u32 = 4;
pub const R_GOTPCREL: u32 = 9;
pub const R_32: u32 = 10;
pub const R_32S: u32 = 11;
pub const R_16: u32 = 12;
pub const R_PC16: u32 = 13;
pub const R_8: u32 = 14;
pub const R_PC8: u32 = 15;
pub const R_DTPMOD64: u32 = 16;
pub const R_DTPOFF64: u32 = 17;
pub const R_TPOFF64: u32 = 18;
pub const R_TLSGD: u32 = 19;
pub const R_TLSLD: u32 = 20;
pub const R_DTPOFF32: u32 = 21;
pub const R_GOTTPOFF: u32 = 22;
pub const R_TPOFF32: u32 = 23;
pub const R_PC64: u32 = 24;
pub const R_GOTOFF64: u32 = 25;
pub const R_GOTPC32: u32 = 26;
pub const R_GOT64: u32 = 27;
pub const R_GOTPCREL64: u32 = 28;
pub const R_GOTPC64: u32 = 29;
pub const R_PLTOFF64: u32 = 31;
pub const R_SIZE32: u32 = 32;
pub const R_SIZE64: u32 = 33;
pub const R_GOTPC32_TLSDESC: u32 = 34;
pub const R_TLSDESC_CALL: u32 = 35;
pub const R_TLSDESC: u32 = 36;
pub const R_GOTPCRELX: u32 = 41;
pub const R_REX_GOTPCRELX: u32 = 42;

/// Size of a PLT stub.
pub const PLT_STUB_SIZE: u64 = 8;

/// Bytes a relocation type writes (0 for none or unknown).
pub fn width(r_type: u32) -> usize {
    match r_type {
        R_NONE | R_TLSDESC_CALL => 0,
        R_64 | R_PC64 | R_GOTOFF64 | R_GOT64 | R_GOTPCREL64 | R_GOTPC64 | R_PLTOFF64 | R_SIZE64
        | R_DTPOFF64 | R_TPOFF64 | R_DTPMOD64 => 8,
        R_16 | R_PC16 => 2,
        R_8 | R_PC8 => 1,
        R_TLSDESC => 16,
        _ => 4,
    }
}

/// The psABI name of a relocation type.
pub fn name(r_type: u32) -> String {
    let n = match r_type {
        R_NONE => "R_X86_64_NONE",
        R_64 => "R_X86_64_64",
        R_PC32 => "R_X86_64_PC32",
        R_GOT32 => "R_X86_64_GOT32",
        R_PLT32 => "R_X86_64_PLT32",
        R_GOTPCREL => "R_X86_64_GOTPCREL",
        R_32 => "R_X86_64_32",
        R_32S => "R_X86_64_32S",
        R_16 => "R_X86_64_16",
        R_PC16 => "R_X86_64_PC16",
        R_8 => "R_X86_64_8",
        R_PC8 => "R_X86_64_PC8",
        R_DTPMOD64 => "R_X86_64_DTPMOD64",
        R_DTPOFF64 => "R_X86_64_DTPOFF64",
        R_TPOFF64 => "R_X86_64_TPOFF64",
        R_TLSGD => "R_X86_64_TLSGD",
        R_TLSLD => "R_X86_64_TLSLD",
        R_DTPOFF32 => "R_X86_64_DTPOFF32",
        R_GOTTPOFF => "R_X86_64_GOTTPOFF",
        R_TPOFF32 => "R_X86_64_TPOFF32",
        R_PC64 => "R_X86_64_PC64",
        R_GOTOFF64 => "R_X86_64_GOTOFF64",
        R_GOTPC32 => "R_X86_64_GOTPC32",
        R_GOT64 => "R_X86_64_GOT64",
        R_GOTPCREL64 => "R_X86_64_GOTPCREL64",
        R_GOTPC64 => "R_X86_64_GOTPC64",
        R_PLTOFF64 => "R_X86_64_PLTOFF64",
        R_SIZE32 => "R_X86_64_SIZE32",
        R_SIZE64 => "R_X86_64_SIZE64",
        R_GOTPC32_TLSDESC => "R_X86_64_GOTPC32_TLSDESC",
        R_TLSDESC_CALL => "R_X86_64_TLSDESC_CALL",
        R_TLSDESC => "R_X86_64_TLSDESC",
        R_GOTPCRELX => "R_X86_64_GOTPCRELX",
        R_REX_GOTPCRELX => "R_X86_64_REX_GOTPCRELX",
        other => return format!("relocation type {other}"),
    };
    n.to_string()
}

/// True when the 4-byte field at `off` in `code` is the displacement of a
/// direct branch (`call`/`jmp rel32`, `jcc rel32`), as opposed to a memory or
/// address operand (`lea f(%rip)`): branches may go straight to code of the
/// same image, address operands must produce the permanent address.
pub fn is_branch_displacement(code: &[u8], off: usize) -> bool {
    let b1 = off.checked_sub(1).and_then(|i| code.get(i)).copied();
    let b2 = off.checked_sub(2).and_then(|i| code.get(i)).copied();
    matches!(b1, Some(0xE8 | 0xE9)) || (b2 == Some(0x0F) && matches!(b1, Some(0x80..=0x8F)))
}

/// Encodes a PLT stub `jmp *disp(%rip)` located at `p` that jumps through the
/// 8-byte slot at `slot`; `None` when the slot is out of reach.
pub fn plt_stub(p: u64, slot: u64) -> Option<[u8; 8]> {
    let disp = i32::try_from(slot as i64 - (p as i64 + 6)).ok()?;
    let d = disp.to_le_bytes();
    Some([0xFF, 0x25, d[0], d[1], d[2], d[3], 0xCC, 0xCC])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plt_stub_encodes_rip_relative_jump() {
        // jmp *0x10(%rip) at 0x100 → slot at 0x116.
        assert_eq!(
            plt_stub(0x100, 0x116),
            Some([0xFF, 0x25, 0x10, 0, 0, 0, 0xCC, 0xCC])
        );
        assert_eq!(plt_stub(0, 1 << 40), None);
    }

    #[test]
    fn branch_detection() {
        assert!(is_branch_displacement(&[0xE8, 0, 0, 0, 0], 1));
        assert!(is_branch_displacement(&[0x0F, 0x84, 0, 0, 0, 0], 2));
        // lea 0x0(%rip),%rax = 48 8d 05 disp32
        assert!(!is_branch_displacement(&[0x48, 0x8D, 0x05, 0, 0, 0, 0], 3));
    }
}
