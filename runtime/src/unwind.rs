//! One step of a DWARF call-frame (`.eh_frame`) unwind, for crash
//! reports: allocation-free and async-signal-safe. Module code is
//! described by its image's table, where the loader left it (in its
//! segment, checked at load); code outside the image by its loaded
//! object's, found through `_dl_find_object` and the object's
//! `.eh_frame_hdr` search table, read with `crash::peek` (which cannot
//! fault) into buffers on the stack. The stack is read the same way.
//!
//! Only what gcc and clang emit for x86-64 code is followed: a CFA of
//! `rsp` or `rbp` plus an offset, and the return address and `rbp` saved
//! at offsets from it. Anything else (a CFA computed by an expression, as
//! for a stack realigned on entry; a register-to-register rule) ends the
//! unwind, and the report falls back to its stack scan from there.

/// The registers an unwind step needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Regs {
    /// The frame's pc: the faulting instruction, or a return address.
    pub pc: u64,
    pub sp: u64,
    pub bp: u64,
}

// DWARF register numbers (x86-64 psABI).
const RBP: u64 = 6;
const RSP: u64 = 7;
const RA: u64 = 16;

/// How a register of the caller is found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// Unchanged by this frame.
    Same,
    /// Saved at CFA + offset.
    At(i64),
    /// Cannot be told.
    Unknown,
    /// Has no value (`DW_CFA_undefined`): for the return address, the
    /// outermost frame.
    Undefined,
}

/// One row of the table: CFA = reg + offset; the return address and
/// `rbp`.
#[derive(Clone, Copy, Debug)]
struct Row {
    cfa_reg: u64,
    cfa_off: i64,
    /// False once the CFA is an expression.
    cfa_known: bool,
    ra: Rule,
    bp: Rule,
}

type Cur<'a> = hcr_image::DwarfReader<'a>;

/// A pointer in `enc` (`DW_EH_PE_*`) read at `c`, `addr` being where the
/// table lies in memory; only absolute and PC-relative ones.
fn pointer(c: &mut Cur<'_>, enc: u8, addr: u64) -> Option<u64> {
    let here = addr.wrapping_add(c.at as u64);
    let v = match enc & 0x0f {
        0x00 | 0x04 | 0x0c => c.fixed(8)?,
        0x02 => c.fixed(2)?,
        0x03 => c.fixed(4)?,
        0x0a => c.fixed(2)? as i16 as i64 as u64,
        0x0b => c.fixed(4)? as i32 as i64 as u64,
        _ => return None,
    };
    match enc & 0x70 {
        0x00 => Some(v),
        0x10 => Some(here.wrapping_add(v)),
        _ => None,
    }
}

/// What an FDE takes from its CIE.
struct Cie<'a> {
    code_align: u64,
    data_align: i64,
    ra_reg: u64,
    fde_enc: u8,
    augmented: bool,
    initial: &'a [u8],
}

fn parse_cie(table: &[u8], at: usize) -> Option<Cie<'_>> {
    let mut c = Cur { b: table, at };
    let len = c.fixed(4)? as usize;
    let end = at.checked_add(4)?.checked_add(len)?;
    let mut c = Cur {
        b: table.get(..end)?,
        at: c.at,
    };
    if c.fixed(4)? != 0 {
        return None;
    }
    let version = c.u8()?;
    let (aug_start, aug_len) = c.cstr()?;
    let aug = &table[aug_start..aug_start + aug_len];
    let code_align = c.uleb()?;
    let data_align = c.sleb()?;
    let ra_reg = match version {
        1 => u64::from(c.u8()?),
        _ => c.uleb()?,
    };
    let mut fde_enc = 0u8;
    let augmented = aug.first() == Some(&b'z');
    if augmented {
        let n = c.uleb()? as usize;
        let data_end = c.at.checked_add(n)?;
        for &ch in &aug[1..] {
            match ch {
                b'R' => fde_enc = c.u8()?,
                b'L' => {
                    c.u8()?;
                }
                b'P' => {
                    let enc = c.u8()?;
                    // Skipped whatever its encoding: only its size matters.
                    let size = match enc & 0x0f {
                        0x02 | 0x0a => 2,
                        0x03 | 0x0b => 4,
                        _ => 8,
                    };
                    c.skip(size)?;
                }
                b'S' | b'B' => {}
                _ => return None,
            }
        }
        c.at = data_end;
    } else if !aug.is_empty() {
        return None;
    }
    Some(Cie {
        code_align,
        data_align,
        ra_reg,
        fde_enc,
        augmented,
        initial: table.get(c.at..end)?,
    })
}

/// The FDE covering `target` in `table` (at `addr`): its CIE, and its
/// start and instructions.
fn find_fde(table: &[u8], addr: u64, target: u64) -> Option<(Cie<'_>, u64, &[u8])> {
    let mut at = 0usize;
    while at + 8 <= table.len() {
        let mut c = Cur { b: table, at };
        let len = c.fixed(4)? as usize;
        if len == 0 || len == 0xffff_ffff {
            return None;
        }
        let end = at.checked_add(4)?.checked_add(len)?;
        let id_at = c.at;
        let id = c.fixed(4)? as usize;
        if id != 0 {
            let cie_at = id_at.checked_sub(id)?;
            if let Some(cie) = parse_cie(table, cie_at) {
                let f = Cur {
                    b: table.get(..end)?,
                    at: c.at,
                };
                if let Some((start, instructions)) = covering(&cie, f, addr, target) {
                    return Some((cie, start, instructions));
                }
            }
        }
        at = end;
    }
    None
}

/// The start and instructions of the FDE whose fields (after its CIE
/// pointer) `f` is at, when it covers `target`; `f.b` ends with the FDE,
/// which lies at address `addr` + its offset in `f.b`.
fn covering<'a>(cie: &Cie<'_>, mut f: Cur<'a>, addr: u64, target: u64) -> Option<(u64, &'a [u8])> {
    let start = pointer(&mut f, cie.fde_enc, addr)?;
    let range = pointer(&mut f, cie.fde_enc & 0x0f, addr)?;
    if !(start <= target && target < start.wrapping_add(range)) {
        return None;
    }
    if cie.augmented {
        let n = f.uleb()? as usize;
        f.skip(n)?;
    }
    Some((start, f.b.get(f.at..)?))
}

/// Runs `ops` from `loc` until the row covering `target`; `None` when the
/// table holds something this unwinder does not follow, or is cut short.
fn run(
    cie: &Cie<'_>,
    ops: &[u8],
    loc: &mut u64,
    target: u64,
    row: &mut Row,
    init: &Row,
) -> Option<()> {
    const DEPTH: usize = 8;
    let mut saved = [*row; DEPTH];
    let mut depth = 0usize;
    let mut c = Cur { b: ops, at: 0 };
    let set = |row: &mut Row, reg: u64, rule: Rule| {
        if reg == cie.ra_reg || reg == RA {
            row.ra = rule;
        } else if reg == RBP {
            row.bp = rule;
        }
    };
    let initial = |reg: u64| if reg == RBP { init.bp } else { init.ra };
    while c.at < ops.len() {
        let op = c.u8()?;
        let mut advance = None;
        match (op >> 6, op) {
            (1, _) => advance = Some(u64::from(op & 0x3f)),
            (2, _) => {
                let off = c.uleb()? as i64;
                set(row, u64::from(op & 0x3f), Rule::At(off * cie.data_align));
            }
            (3, _) => {
                let reg = u64::from(op & 0x3f);
                set(row, reg, initial(reg));
            }
            (_, 0x00) => {}
            (_, 0x2e) => {
                c.uleb()?;
            }
            (_, 0x02) => advance = Some(c.fixed(1)?),
            (_, 0x03) => advance = Some(c.fixed(2)?),
            (_, 0x04) => advance = Some(c.fixed(4)?),
            (_, 0x05 | 0x11) => {
                let reg = c.uleb()?;
                let off = match op {
                    0x05 => c.uleb()? as i64,
                    _ => c.sleb()?,
                };
                set(row, reg, Rule::At(off * cie.data_align));
            }
            (_, 0x06) => {
                let reg = c.uleb()?;
                set(row, reg, initial(reg));
            }
            (_, 0x07) => set(row, c.uleb()?, Rule::Undefined),
            (_, 0x08) => set(row, c.uleb()?, Rule::Same),
            (_, 0x09 | 0x14 | 0x15) => {
                let reg = c.uleb()?;
                c.uleb()?;
                set(row, reg, Rule::Unknown);
            }
            (_, 0x0a) => {
                *saved.get_mut(depth)? = *row;
                depth += 1;
            }
            (_, 0x0b) => {
                // The remembered row, CFA included, as gcc's tables
                // assume (an epilogue in mid-function restores the body's
                // CFA offset this way) and libgcc's unwinder does.
                depth = depth.checked_sub(1)?;
                *row = saved[depth];
            }
            (_, 0x0c | 0x12) => {
                let reg = c.uleb()?;
                let off = match op {
                    0x0c => c.uleb()? as i64,
                    _ => c.sleb()? * cie.data_align,
                };
                (row.cfa_reg, row.cfa_off, row.cfa_known) = (reg, off, true);
            }
            (_, 0x0d) => row.cfa_reg = c.uleb()?,
            (_, 0x0e) => row.cfa_off = c.uleb()? as i64,
            (_, 0x13) => row.cfa_off = c.sleb()? * cie.data_align,
            (_, 0x0f) => {
                let n = c.uleb()?;
                c.skip(n as usize)?;
                row.cfa_known = false;
            }
            (_, 0x10 | 0x16) => {
                let reg = c.uleb()?;
                let n = c.uleb()?;
                c.skip(n as usize)?;
                set(row, reg, Rule::Unknown);
            }
            _ => return None,
        }
        if let Some(delta) = advance {
            *loc = loc.wrapping_add(delta.wrapping_mul(cie.code_align));
            if *loc > target {
                return Some(());
            }
        }
    }
    Some(())
}

/// What one step of the unwind found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Up {
    /// The caller's registers.
    Caller(Regs),
    /// The frame is the outermost: its table says the return address is
    /// undefined (`_start`, a thread's start in `clone`).
    Outermost,
}

/// The caller's registers of the frame `r`, whose code `r.pc` (the
/// faulting instruction when `innermost`, else a return address) is
/// described by `table`, an `.eh_frame` table at address `addr`. `read`
/// reads a stack word (`None` where unmapped). `None` when the table
/// does not say, or says something this unwinder does not follow.
pub(crate) fn step(
    table: &[u8],
    addr: u64,
    r: Regs,
    innermost: bool,
    read: impl Fn(u64) -> Option<u64>,
) -> Option<Regs> {
    let target = lookup_pc(r, innermost)?;
    let (cie, start, ops) = find_fde(table, addr, target)?;
    match apply(&cie, start, ops, r, target, read)? {
        Up::Caller(up) => Some(up),
        Up::Outermost => None,
    }
}

/// Where the code of frame `r` is looked up: a return address may be the
/// first byte after a call that never returns, so the call itself.
pub(crate) fn lookup_pc(r: Regs, innermost: bool) -> Option<u64> {
    if innermost {
        Some(r.pc)
    } else {
        r.pc.checked_sub(1)
    }
}

/// Runs the FDE (`start`, `ops`, of `cie`) to the row of `target` and
/// reads the caller's registers of frame `r` by it.
fn apply(
    cie: &Cie<'_>,
    start: u64,
    ops: &[u8],
    r: Regs,
    target: u64,
    read: impl Fn(u64) -> Option<u64>,
) -> Option<Up> {
    let mut row = Row {
        cfa_reg: RSP,
        cfa_off: 8,
        cfa_known: true,
        ra: Rule::At(-8),
        bp: Rule::Same,
    };
    let mut loc = start;
    // The CIE's instructions run to their end: they describe the entry.
    let entry = row;
    run(cie, cie.initial, &mut loc, u64::MAX, &mut row, &entry)?;
    let init = row;
    loc = start;
    run(cie, ops, &mut loc, target, &mut row, &init)?;
    if row.ra == Rule::Undefined {
        return Some(Up::Outermost);
    }
    if !row.cfa_known {
        return None;
    }
    let base = match row.cfa_reg {
        RSP => r.sp,
        RBP => r.bp,
        _ => return None,
    };
    let cfa = base.checked_add_signed(row.cfa_off)?;
    let saved = |rule: Rule, same: u64| match rule {
        Rule::Same => Some(same),
        Rule::At(off) => read(cfa.checked_add_signed(off)?),
        Rule::Unknown | Rule::Undefined => None,
    };
    let pc = saved(row.ra, 0).filter(|&pc| pc != 0)?;
    let bp = saved(row.bp, r.bp)?;
    Some(Up::Caller(Regs { pc, sp: cfa, bp }))
}

/// `_dl_find_object` (glibc 2.35): finds the loaded object holding an
/// address and its `PT_GNU_EH_FRAME` segment, without a lock, for
/// unwinders; async-signal-safe.
pub(crate) type FindObject =
    unsafe extern "C" fn(*mut libc::c_void, *mut DlFindObject) -> libc::c_int;

/// glibc's `struct dl_find_object`.
#[repr(C)]
pub(crate) struct DlFindObject {
    flags: libc::c_ulonglong,
    map_start: *mut libc::c_void,
    map_end: *mut libc::c_void,
    link_map: *mut libc::c_void,
    eh_frame: *mut libc::c_void,
    reserved: [libc::c_ulonglong; 7],
}

/// Largest FDE and CIE read for a step outside the image.
const FDE_MAX: usize = 2048;
const CIE_MAX: usize = 512;

/// One step through a frame outside the image (the C library, the C++
/// runtime, the host program): its code's FDE is found through the
/// binary search table of the `.eh_frame_hdr` that `find` names for it,
/// every byte read with `peek` (which fails instead of faulting) into
/// buffers on the stack. `None` where the object, its table or the FDE
/// is not found or not followed.
pub(crate) fn step_foreign(
    find: FindObject,
    r: Regs,
    innermost: bool,
    peek: impl Fn(u64, &mut [u8]) -> bool,
) -> Option<Up> {
    let target = lookup_pc(r, innermost)?;
    // SAFETY: a zeroed `dl_find_object` is a valid out-parameter.
    let mut obj: DlFindObject = unsafe { std::mem::zeroed() };
    // SAFETY: `find` is `_dl_find_object`, which only writes `obj`.
    if unsafe { find(target as *mut libc::c_void, &mut obj) } != 0 || obj.eh_frame.is_null() {
        return None;
    }
    let hdr = obj.eh_frame as u64;
    let fde_addr = search_hdr(hdr, target, &peek)?;
    let mut len = [0u8; 4];
    if !peek(fde_addr, &mut len) {
        return None;
    }
    let fde_len = (u32::from_le_bytes(len) as usize).checked_add(4)?;
    let mut fde = [0u8; FDE_MAX];
    let fde = fde.get_mut(..fde_len)?;
    if fde_len < 8 || !peek(fde_addr, fde) {
        return None;
    }
    let id = u64::from(u32::from_le_bytes([fde[4], fde[5], fde[6], fde[7]]));
    let cie_addr = (fde_addr + 4).checked_sub(id)?;
    if id == 0 || !peek(cie_addr, &mut len) {
        return None;
    }
    let cie_len = (u32::from_le_bytes(len) as usize).checked_add(4)?;
    let mut cie = [0u8; CIE_MAX];
    let cie = cie.get_mut(..cie_len)?;
    if !peek(cie_addr, cie) {
        return None;
    }
    let cie = parse_cie(cie, 0)?;
    let (start, ops) = covering(&cie, Cur { b: fde, at: 8 }, fde_addr, target)?;
    let read = |a: u64| {
        let mut w = [0u8; 8];
        peek(a, &mut w).then(|| u64::from_le_bytes(w))
    };
    apply(&cie, start, ops, r, target, read)
}

/// The address of the FDE covering `target` by the binary search table of
/// the `.eh_frame_hdr` at `hdr`: only the layout linkers write (version
/// 1, a table of `datarel|sdata4` pairs), as libgcc's unwinder also
/// requires to search it.
fn search_hdr(hdr: u64, target: u64, peek: &impl Fn(u64, &mut [u8]) -> bool) -> Option<u64> {
    let mut head = [0u8; 16];
    if !peek(hdr, &mut head[..4]) || head[0] != 1 || head[3] != 0x3b {
        return None;
    }
    let (ptr_enc, count_enc) = (head[1], head[2]);
    // The `.eh_frame` pointer, then the count, both 4 bytes in what
    // linkers write.
    let size = |enc: u8| match enc & 0x0f {
        0x03 | 0x0b => Some(4u64),
        _ => None,
    };
    let skip = size(ptr_enc)?;
    size(count_enc)?;
    if !peek(hdr + 4 + skip, &mut head[..4]) {
        return None;
    }
    let count = u64::from(u32::from_le_bytes([head[0], head[1], head[2], head[3]]));
    let table = hdr + 8 + skip;
    let entry = |i: u64| -> Option<(u64, u64)> {
        let mut e = [0u8; 8];
        if !peek(table + 8 * i, &mut e) {
            return None;
        }
        let rel = |b: &[u8]| {
            hdr.wrapping_add_signed(i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        };
        Some((rel(&e[..4]), rel(&e[4..])))
    };
    // The last entry starting at or before `target`.
    let (mut lo, mut hi) = (0u64, count);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if entry(mid)?.0 <= target {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Some(entry(lo.checked_sub(1)?)?.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table with one CIE (code align 1, data align -8, RA 16, FDE
    /// pointers pcrel|sdata4, initial CFA rsp+8, RA at CFA-8) and one FDE
    /// for `[start, start + len)` with `ops`, at address `addr`.
    fn table(addr: u64, start: u64, len: u32, ops: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        let cie: &[u8] = &[
            0, 0, 0, 0, // CIE id
            1, b'z', b'R', 0, // version, augmentation
            1, 0x78, 16, // code align 1, data align -8, RA register 16
            1, 0x1b, // augmentation data: FDE encoding pcrel|sdata4
            0x0c, 7, 8, // def_cfa rsp+8
            0x90, 1, // offset RA at CFA-8
            0, 0, // padding
        ];
        t.extend_from_slice(&(cie.len() as u32).to_le_bytes());
        t.extend_from_slice(cie);
        let fde_at = t.len();
        let mut fde = Vec::new();
        fde.extend_from_slice(&((fde_at + 4) as u32).to_le_bytes()); // CIE pointer
        let field = addr + (fde_at + 8) as u64;
        fde.extend_from_slice(&((start.wrapping_sub(field)) as i32).to_le_bytes());
        fde.extend_from_slice(&len.to_le_bytes());
        fde.push(0); // augmentation data length
        fde.extend_from_slice(ops);
        while (fde.len() + 4) % 8 != 0 {
            fde.push(0);
        }
        t.extend_from_slice(&(fde.len() as u32).to_le_bytes());
        t.extend_from_slice(&fde);
        t.extend_from_slice(&[0, 0, 0, 0]);
        t
    }

    /// `push rbp; mov rbp, rsp; ...` at 0x1000: CFI as gcc -O0 emits it.
    const FRAME_POINTER: &[u8] = &[
        0x41, // advance 1 (after push)
        0x0e, 16, // def_cfa_offset 16
        0x86, 2,    // rbp at CFA-16
        0x43, // advance 3 (after mov)
        0x0d, 6, // def_cfa_register rbp
    ];

    fn stack(words: &[(u64, u64)]) -> impl Fn(u64) -> Option<u64> + '_ {
        move |a| words.iter().find(|w| w.0 == a).map(|w| w.1)
    }

    #[test]
    fn each_row_of_a_frame_pointer_function_finds_the_caller() {
        let t = table(0x9000, 0x1000, 0x40, FRAME_POINTER);
        // At entry: the return address is at rsp.
        let mem = [(0x7000, 0x5555), (0x6ff8, 0x7100)];
        let at_entry = Regs {
            pc: 0x1000,
            sp: 0x7000,
            bp: 0x7100,
        };
        let up = step(&t, 0x9000, at_entry, true, stack(&mem)).unwrap();
        assert_eq!((up.pc, up.sp, up.bp), (0x5555, 0x7008, 0x7100));
        // After `push rbp`: CFA = rsp + 16.
        let pushed = Regs {
            pc: 0x1001,
            sp: 0x6ff8,
            bp: 0x7100,
        };
        let up = step(&t, 0x9000, pushed, true, stack(&mem)).unwrap();
        assert_eq!((up.pc, up.sp, up.bp), (0x5555, 0x7008, 0x7100));
        // In the body, rsp moved further: the CFA follows rbp.
        let body = Regs {
            pc: 0x1020,
            sp: 0x6f00,
            bp: 0x6ff8,
        };
        let up = step(&t, 0x9000, body, true, stack(&mem)).unwrap();
        assert_eq!((up.pc, up.sp, up.bp), (0x5555, 0x7008, 0x7100));
        // A return address into the body is looked up one byte back.
        let ret = Regs { pc: 0x1040, ..body };
        assert!(step(&t, 0x9000, ret, false, stack(&mem)).is_some());
        assert!(step(&t, 0x9000, ret, true, stack(&mem)).is_none());
    }

    #[test]
    fn a_state_restored_after_an_epilogue_in_mid_function_has_the_body_cfa() {
        // push rbx (CFA rsp+16); body; remember; pop rbx (CFA rsp+8); ret;
        // restore: the code after the early return has the body's CFA.
        let ops = &[
            0x41, // advance 1
            0x0e, 16,   // def_cfa_offset 16
            0x44, // advance 4
            0x0a, // remember_state
            0x0e, 8,    // def_cfa_offset 8
            0x42, // advance 2
            0x0b, // restore_state
        ];
        let t = table(0x9000, 0x1000, 0x40, ops);
        let mem = [(0x7008, 0x5555)];
        let r = Regs {
            pc: 0x1010,
            sp: 0x7000,
            bp: 0,
        };
        let up = step(&t, 0x9000, r, true, stack(&mem)).unwrap();
        assert_eq!((up.pc, up.sp), (0x5555, 0x7010));
    }

    #[test]
    fn what_is_not_followed_ends_the_unwind() {
        // def_cfa_expression (a realigned stack).
        let t = table(0x9000, 0x1000, 0x40, &[0x41, 0x0f, 2, 0x76, 0x00]);
        let r = Regs {
            pc: 0x1010,
            sp: 0x6f00,
            bp: 0,
        };
        assert!(step(&t, 0x9000, r, true, |_| Some(1)).is_none());
        // No FDE covers the pc; an unknown opcode; a truncated table.
        assert!(step(&t, 0x9000, Regs { pc: 0x2000, ..r }, true, |_| Some(1)).is_none());
        let t = table(0x9000, 0x1000, 0x40, &[0x3f, 0xff]);
        assert!(step(&t, 0x9000, r, true, |_| Some(1)).is_none());
        let full = table(0x9000, 0x1000, 0x40, FRAME_POINTER);
        for cut in 0..full.len() {
            let _ = step(&full[..cut], 0x9000, r, true, |_| Some(1));
        }
        // An unreadable stack word.
        assert!(step(&full, 0x9000, r, true, |_| None).is_none());
    }

    /// Reads this process's memory, and a fake stack from `words`.
    fn memory(words: &[(u64, u64)]) -> impl Fn(u64, &mut [u8]) -> bool + '_ {
        move |a, dst| match words.iter().find(|w| w.0 == a) {
            Some(w) if dst.len() == 8 => {
                dst.copy_from_slice(&w.1.to_le_bytes());
                true
            }
            _ => crate::crash::peek(a, dst),
        }
    }

    fn find_object() -> FindObject {
        // SAFETY: dlsym of a NUL-terminated name.
        let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_dl_find_object".as_ptr()) };
        assert!(!f.is_null(), "the C library has _dl_find_object");
        // SAFETY: `_dl_find_object`'s C signature is `FindObject`.
        unsafe { std::mem::transmute::<*mut libc::c_void, FindObject>(f) }
    }

    #[test]
    fn a_c_library_function_is_stepped_through_by_its_own_table() {
        // At the first instruction of a C library function, its table
        // says the return address is at the stack pointer.
        let mem = [(0x7000, 0x5555_0000)];
        let r = Regs {
            pc: libc::getpid as *const () as u64,
            sp: 0x7000,
            bp: 0x1234,
        };
        let up = step_foreign(find_object(), r, true, memory(&mem));
        assert_eq!(
            up,
            Some(Up::Caller(Regs {
                pc: 0x5555_0000,
                sp: 0x7008,
                bp: 0x1234
            }))
        );
        // An address no loaded object holds is not stepped through.
        let heap = Box::new(0u64);
        let r = Regs {
            pc: &*heap as *const u64 as u64,
            ..r
        };
        assert_eq!(step_foreign(find_object(), r, true, memory(&mem)), None);
    }
}
