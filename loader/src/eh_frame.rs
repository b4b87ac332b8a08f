//! Structural check of an image's `.eh_frame` table before it is handed to
//! libgcc's `__register_frame`.
//!
//! libgcc trusts a registered table completely: it walks it lazily, at the
//! first exception or backtrace anywhere in the process, and a record whose
//! length points past the table, a CIE pointer into the middle of a record
//! or a range covering someone else's code makes that unwinding read out of
//! bounds or use the wrong rules. The image checksum rules out corruption on
//! disk; this check rules out a table that was wrong when it was written.
//!
//! What is checked, as libgcc (`unwind-dw2-fde.c`) reads the table:
//! - records (`length`, then a CIE id of 0 or an FDE's CIE pointer) lie
//!   inside the table, and a zero length (the terminator) ends it;
//! - 64-bit lengths (`0xffffffff`), which libgcc does not read, are refused;
//! - a CIE has version 1, 3 or 4 and an augmentation of `z` followed by
//!   `R`, `P`, `L` or `S` (or none), whose data lies inside the record;
//! - an FDE's CIE pointer names a CIE that starts earlier in the table;
//! - an FDE's code range, read with its CIE's pointer encoding (absolute or
//!   PC-relative, 2, 4 or 8 bytes), lies inside the image's text. An FDE of
//!   a COMDAT copy hcr-link discarded points at the table's terminator
//!   instead; its `pc_begin` field is zeroed, which libgcc reads as "code
//!   removed" and skips.

use std::ops::Range;

const DW_EH_PE_OMIT: u8 = 0xff;
const DW_EH_PE_PCREL: u8 = 0x10;

/// Where a table is and what its FDEs may cover.
pub(crate) struct Frame {
    /// Address the table is loaded at.
    pub addr: u64,
    /// The image's text (code and PLT stubs).
    pub text: Range<u64>,
    /// Address of the terminator, where hcr-link points the FDEs of
    /// discarded COMDAT copies.
    pub terminator: u64,
}

/// A problem, with the table offset of the record it was found in.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed {
    pub offset: usize,
    pub what: String,
}

fn bad<T>(offset: usize, what: impl Into<String>) -> Result<T, Malformed> {
    Err(Malformed {
        offset,
        what: what.into(),
    })
}

/// A cursor inside one record.
struct Cur<'a> {
    b: &'a [u8],
    at: usize,
    end: usize,
    rec: usize,
}

impl Cur<'_> {
    fn bytes(&mut self, n: usize) -> Result<&[u8], Malformed> {
        match self.at.checked_add(n).filter(|&e| e <= self.end) {
            Some(e) => {
                let s = &self.b[self.at..e];
                self.at = e;
                Ok(s)
            }
            None => bad(self.rec, "a field runs past the end of its record"),
        }
    }
    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.bytes(1)?[0])
    }
    fn uleb(&mut self) -> Result<u64, Malformed> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        bad(self.rec, "LEB128 number longer than 64 bits")
    }
    fn sleb(&mut self) -> Result<(), Malformed> {
        self.uleb().map(drop)
    }
    /// Skips a pointer of encoding `enc`.
    fn skip_encoded(&mut self, enc: u8) -> Result<(), Malformed> {
        let n = match enc & 0x0f {
            0x00 | 0x04 | 0x0c => 8,
            0x02 | 0x0a => 2,
            0x03 | 0x0b => 4,
            _ => return bad(self.rec, format!("unsupported pointer encoding {enc:#04x}")),
        };
        self.bytes(n).map(drop)
    }
}

/// What an FDE needs from its CIE.
#[derive(Clone, Copy)]
struct Cie {
    /// Encoding of `pc_begin` and `pc_range`.
    fde_enc: u8,
    /// The FDE has augmentation data (`z`).
    z: bool,
}

impl Cie {
    /// Bytes of `pc_begin` (and of `pc_range`).
    fn size(self) -> usize {
        match self.fde_enc & 0x0f {
            0x02 | 0x0a => 2,
            0x03 | 0x0b => 4,
            _ => 8,
        }
    }
    fn signed(self) -> bool {
        self.fde_enc & 0x08 != 0
    }
    fn pcrel(self) -> bool {
        self.fde_enc & 0x70 == DW_EH_PE_PCREL
    }
}

/// The `n`-byte little-endian number at `b[at..]` (`n` is 2, 4 or 8 and in
/// bounds).
fn number(b: &[u8], at: usize, n: usize, signed: bool) -> i128 {
    let le = |k: usize| {
        b[at..at + k]
            .iter()
            .rev()
            .fold(0u64, |v, &x| v << 8 | u64::from(x))
    };
    match (n, signed) {
        (2, false) => i128::from(le(2)),
        (2, true) => i128::from(le(2) as u16 as i16),
        (4, false) => i128::from(le(4)),
        (4, true) => i128::from(le(4) as u32 as i32),
        (_, false) => i128::from(le(8)),
        (_, true) => i128::from(le(8) as i64),
    }
}

fn parse_cie(c: &mut Cur<'_>) -> Result<Cie, Malformed> {
    let version = c.u8()?;
    if !matches!(version, 1 | 3 | 4) {
        return bad(c.rec, format!("CIE version {version} (1, 3 or 4 expected)"));
    }
    let rest = &c.b[c.at..c.end];
    let Some(nul) = rest.iter().position(|&x| x == 0) else {
        return bad(c.rec, "CIE augmentation string without its end");
    };
    let aug = c.bytes(nul + 1)?[..nul].to_vec();
    if version == 4 {
        let (addr_size, seg_size) = (c.u8()?, c.u8()?);
        if addr_size != 8 || seg_size != 0 {
            return bad(c.rec, "CIE address or segment size is not 8 / 0");
        }
    }
    c.uleb()?; // code alignment
    c.sleb()?; // data alignment
    if version == 1 {
        c.u8()?;
    } else {
        c.uleb()?;
    }
    let mut cie = Cie {
        fde_enc: 0, // DW_EH_PE_absptr
        z: false,
    };
    match aug.split_first() {
        None => return Ok(cie),
        Some((b'z', letters)) => {
            cie.z = true;
            let len = usize::try_from(c.uleb()?).unwrap_or(usize::MAX);
            let data_end = match c.at.checked_add(len).filter(|&e| e <= c.end) {
                Some(e) => e,
                None => return bad(c.rec, "CIE augmentation data runs past its record"),
            };
            let mut d = Cur {
                b: c.b,
                at: c.at,
                end: data_end,
                rec: c.rec,
            };
            for &l in letters {
                match l {
                    b'R' => cie.fde_enc = d.u8()?,
                    b'P' => {
                        let enc = d.u8()?;
                        if enc & 0x70 > DW_EH_PE_PCREL {
                            return bad(c.rec, format!("personality encoding {enc:#04x}"));
                        }
                        d.skip_encoded(enc)?;
                    }
                    b'L' => {
                        d.u8()?;
                    }
                    b'S' => {}
                    _ => {
                        return bad(
                            c.rec,
                            format!("unsupported CIE augmentation '{}'", l.escape_ascii()),
                        )
                    }
                }
            }
            c.at = data_end;
        }
        Some(_) => {
            return bad(
                c.rec,
                format!("unsupported CIE augmentation \"{}\"", aug.escape_ascii()),
            )
        }
    }
    let sized = matches!(
        cie.fde_enc & 0x0f,
        0x00 | 0x02 | 0x03 | 0x04 | 0x0a | 0x0b | 0x0c
    );
    if cie.fde_enc == DW_EH_PE_OMIT || cie.fde_enc & 0x70 > DW_EH_PE_PCREL || !sized {
        return bad(
            c.rec,
            format!("unsupported FDE pointer encoding {:#04x}", cie.fde_enc),
        );
    }
    Ok(cie)
}

/// Checks `table` (loaded at `f.addr`) and marks the FDEs of discarded
/// COMDAT copies removed. `Ok` when libgcc may be given the table.
pub(crate) fn check(table: &mut [u8], f: &Frame) -> Result<(), Malformed> {
    let mut cies: Vec<(usize, Cie)> = Vec::new();
    let mut removed: Vec<(usize, usize)> = Vec::new();
    let mut at = 0usize;
    loop {
        let Some(len) = table.get(at..at + 4) else {
            return bad(at, "the table has no terminator (a zero length)");
        };
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]);
        if len == 0 {
            break;
        }
        if len == u32::MAX {
            return bad(at, "64-bit record length");
        }
        let end = match (at + 4).checked_add(len as usize) {
            Some(e) if e <= table.len() && len >= 4 => e,
            _ => return bad(at, format!("record length {len:#x} runs past the table")),
        };
        // The common FDE, checked without the general decoding: it names
        // the CIE just before it, whose encoding is PC-relative 4-byte
        // (`zR` with 0x1b, what gcc and clang emit), and its augmentation
        // data is short.
        if let (Some(&(cie_at, cie)), Some(r)) = (cies.last(), table.get(at + 4..at + 17)) {
            let word = |i: usize| u32::from_le_bytes([r[i], r[i + 1], r[i + 2], r[i + 3]]);
            let (id, raw, range, aug) = (word(0) as usize, word(4) as i32, word(8), r[12]);
            if id != 0
                && cie_at + id == at + 4
                && cie.fde_enc == 0x1b
                && cie.z
                && aug < 0x80
                && 17 + usize::from(aug) <= 4 + len as usize
            {
                let field = at + 8;
                let pc = f.addr as i64 + field as i64 + i64::from(raw);
                let inside =
                    f.text.start as i64 <= pc && pc + i64::from(range) <= f.text.end as i64;
                if inside {
                    at = end;
                    continue;
                }
                // Removed code, a discarded copy, or an error: below.
            }
        }
        let mut c = Cur {
            b: table,
            at: at + 4,
            end,
            rec: at,
        };
        let id_at = c.at;
        let id = c.bytes(4)?;
        let id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]) as usize;
        if id == 0 {
            let cie = parse_cie(&mut c)?;
            cies.push((at, cie));
        } else {
            // Most FDEs name the CIE before them: try the last one first.
            let cie_at = id_at.checked_sub(id);
            let cie = match cies.last() {
                Some(&(o, cie)) if Some(o) == cie_at => cie,
                _ => {
                    // CIEs are pushed in table order: sorted by offset.
                    let found = cie_at.and_then(|cie_at| {
                        let i = cies.binary_search_by_key(&cie_at, |(o, _)| *o).ok()?;
                        cies.get(i)
                    });
                    match found {
                        Some(&(_, cie)) => cie,
                        None => {
                            return bad(at, "FDE's CIE pointer does not point at an earlier CIE")
                        }
                    }
                }
            };
            let (field, size) = (c.at, cie.size());
            c.bytes(2 * size)?;
            let raw = number(c.b, field, size, cie.signed());
            let range = number(c.b, field + size, size, cie.signed());
            if cie.z {
                let n = usize::try_from(c.uleb()?).unwrap_or(usize::MAX);
                c.bytes(n)?;
            }
            let base = if cie.pcrel() {
                i128::from(f.addr) + field as i128
            } else {
                0
            };
            let pc = base + raw;
            if raw == 0 {
                // Removed code, as libgcc reads it.
            } else if pc == i128::from(f.terminator) {
                removed.push((field, size));
            } else if range < 0
                || pc < i128::from(f.text.start)
                || pc + range > i128::from(f.text.end)
            {
                return bad(
                    at,
                    format!(
                        "FDE covers {:#x}..{:#x}, outside the image's code {:#x}..{:#x}",
                        pc,
                        pc + range,
                        f.text.start,
                        f.text.end
                    ),
                );
            }
        }
        at = end;
    }
    for (field, size) in removed {
        table[field..field + size].fill(0);
    }
    Ok(())
}

/// Rewrites the PC-relative pointers of a checked `table` (FDE starts,
/// personality routines, LSDAs) for a copy of it that lies `delta` bytes
/// before where the table ran: the copy then describes the same code.
/// Stops at the terminator or at anything it cannot read (the table was
/// checked when it was loaded).
pub(crate) fn shift_pcrel(table: &mut [u8], delta: i64) {
    let width = |enc: u8| match enc & 0x0f {
        0x00 | 0x04 | 0x0c => 8,
        0x02 | 0x0a => 2,
        _ => 4,
    };
    let adjust = |t: &mut [u8], at: usize, enc: u8| {
        if enc == DW_EH_PE_OMIT || enc & 0x70 != DW_EH_PE_PCREL {
            return;
        }
        let n = width(enc);
        let Some(field) = t.get_mut(at..at + n) else {
            return;
        };
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(field);
        let v = u64::from_le_bytes(b);
        if v == 0 {
            return; // removed code, as libgcc reads it
        }
        let v = v.wrapping_add(delta as u64);
        field.copy_from_slice(&v.to_le_bytes()[..n]);
    };
    // (offset, FDE pointer encoding, LSDA encoding, has augmentation data)
    let mut cies: Vec<(usize, u8, u8, bool)> = Vec::new();
    let mut at = 0usize;
    while let Some(l) = table.get(at..at + 4) {
        let len = u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize;
        let Some(end) = (at + 4)
            .checked_add(len)
            .filter(|&e| len >= 4 && e <= table.len())
        else {
            return;
        };
        let id = u32::from_le_bytes([table[at + 4], table[at + 5], table[at + 6], table[at + 7]]);
        let mut c = Cur {
            b: table,
            at: at + 8,
            end,
            rec: at,
        };
        if id == 0 {
            let Ok(version) = c.u8() else { return };
            let rest = &c.b[c.at..c.end];
            let Some(nul) = rest.iter().position(|&x| x == 0) else {
                return;
            };
            let aug = rest[..nul].to_vec();
            c.at += nul + 1;
            if version == 4 {
                c.at += 2;
            }
            let ok = c.uleb().is_ok() && c.sleb().is_ok();
            let ok = ok
                && if version == 1 {
                    c.u8().is_ok()
                } else {
                    c.uleb().is_ok()
                };
            let (mut fde_enc, mut lsda_enc, mut z) = (0u8, DW_EH_PE_OMIT, false);
            let mut personality = None;
            if ok && aug.first() == Some(&b'z') {
                z = true;
                if c.uleb().is_err() {
                    return;
                }
                for &letter in &aug[1..] {
                    let Ok(enc) = (match letter {
                        b'R' | b'P' | b'L' => c.u8(),
                        _ => Ok(0),
                    }) else {
                        return;
                    };
                    match letter {
                        b'R' => fde_enc = enc,
                        b'L' => lsda_enc = enc,
                        b'P' => {
                            personality = Some((c.at, enc));
                            c.at += width(enc);
                        }
                        _ => {}
                    }
                }
            }
            if let Some((p, enc)) = personality {
                adjust(table, p, enc);
            }
            cies.push((at, fde_enc, lsda_enc, z));
        } else {
            let cie_at = (at + 4).checked_sub(id as usize);
            let Some(&(_, fde_enc, lsda_enc, z)) = cies.iter().find(|c| Some(c.0) == cie_at) else {
                return;
            };
            let field = at + 8;
            adjust(table, field, fde_enc);
            let mut c = Cur {
                b: table,
                at: field + 2 * width(fde_enc),
                end,
                rec: at,
            };
            if z && c.uleb().is_ok() && lsda_enc != DW_EH_PE_OMIT {
                let lsda = c.at;
                adjust(table, lsda, lsda_enc);
            }
        }
        at = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CIE (zR, pcrel|sdata4) at 0, an FDE for `pc_off` (relative to the
    /// table) of `range` bytes, and the terminator.
    fn table(pc_off: i64, range: u32) -> Vec<u8> {
        let mut t = Vec::new();
        // CIE: length, id 0, version 1, "zR", code align 1, data align -8,
        // RA 16, augmentation length 1, R = 0x1b, one DW_CFA_nop.
        t.extend_from_slice(&16u32.to_le_bytes());
        t.extend_from_slice(&0u32.to_le_bytes());
        t.extend_from_slice(&[1, b'z', b'R', 0, 1, 0x78, 16, 1, 0x1b, 0, 0, 0]);
        assert_eq!(t.len(), 20);
        // FDE at 20: length, CIE pointer (24 - 0), pc_begin, range, aug len 0.
        t.extend_from_slice(&16u32.to_le_bytes());
        t.extend_from_slice(&24u32.to_le_bytes());
        let field = t.len() as i64;
        t.extend_from_slice(&((pc_off - field) as i32).to_le_bytes());
        t.extend_from_slice(&range.to_le_bytes());
        t.extend_from_slice(&[0, 0, 0, 0]);
        t.extend_from_slice(&0u32.to_le_bytes());
        t
    }

    const AT: u64 = 0x10_0000;

    fn frame(t: &[u8]) -> Frame {
        Frame {
            addr: AT,
            text: AT - 0x1000..AT - 0x100,
            terminator: AT + t.len() as u64 - 4,
        }
    }

    #[test]
    fn a_valid_table_passes() {
        let mut t = table(-0x1000, 0x20);
        let f = frame(&t);
        assert_eq!(check(&mut t, &f), Ok(()));
        assert_eq!(t, table(-0x1000, 0x20), "nothing changed");
    }

    #[test]
    fn absolute_pointers_and_personalities_are_read() {
        // CIE "zPLR": personality (absptr), LSDA encoding, FDE encoding
        // absptr (8 bytes); an FDE with 8 bytes of LSDA pointer.
        let mut t = Vec::new();
        let cie = [
            &[1u8, b'z', b'P', b'L', b'R', 0, 1, 0x78, 16, 11, 0x00][..],
            &0x1234u64.to_le_bytes(),
            &[0x00, 0x00],
        ]
        .concat();
        t.extend_from_slice(&(4 + cie.len() as u32).to_le_bytes());
        t.extend_from_slice(&0u32.to_le_bytes());
        t.extend_from_slice(&cie);
        let fde_at = t.len();
        let fde = [
            &((fde_at + 4) as u32).to_le_bytes()[..],
            &(AT - 0x800).to_le_bytes(),
            &0x100u64.to_le_bytes(),
            &[8],
            &0u64.to_le_bytes(),
        ]
        .concat();
        t.extend_from_slice(&(fde.len() as u32).to_le_bytes());
        t.extend_from_slice(&fde);
        t.extend_from_slice(&0u32.to_le_bytes());
        let f = frame(&t);
        assert_eq!(check(&mut t, &f), Ok(()));
        // The same FDE one byte past the code.
        let at = fde_at + 8 + 8;
        t[at..at + 8].copy_from_slice(&0x701u64.to_le_bytes());
        let e = check(&mut t, &f).expect_err("past the code");
        assert!(e.what.contains("outside the image's code"), "{e:?}");
    }

    #[test]
    fn discarded_copies_are_marked_removed() {
        let term = table(0, 0).len() as i64 - 4;
        let mut t = table(term, 0x20);
        let f = frame(&t);
        assert_eq!(check(&mut t, &f), Ok(()));
        assert_eq!(&t[28..32], &[0, 0, 0, 0]);
    }

    #[test]
    fn malformed_tables_are_refused() {
        type Damage = Box<dyn Fn(&mut Vec<u8>)>;
        let cases: Vec<(&str, Damage, &str)> = vec![
            (
                "length past the end",
                Box::new(|t| t[20..24].copy_from_slice(&0x1000u32.to_le_bytes())),
                "runs past the table",
            ),
            (
                "no terminator",
                Box::new(|t| {
                    let n = t.len();
                    t.truncate(n - 4)
                }),
                "no terminator",
            ),
            (
                "64-bit length",
                Box::new(|t| t[20..24].copy_from_slice(&u32::MAX.to_le_bytes())),
                "64-bit",
            ),
            (
                "CIE pointer into a record",
                Box::new(|t| t[24..28].copy_from_slice(&20u32.to_le_bytes())),
                "CIE pointer",
            ),
            ("CIE version", Box::new(|t| t[8] = 2), "CIE version 2"),
            (
                "augmentation",
                Box::new(|t| t[10] = b'X'),
                "augmentation 'X'",
            ),
            (
                "encoding",
                Box::new(|t| t[16] = 0x01),
                "pointer encoding 0x01",
            ),
            (
                "range outside the code",
                Box::new(|t| t[32..36].copy_from_slice(&0x1000u32.to_le_bytes())),
                "outside the image's code",
            ),
            (
                "begins before the code",
                Box::new(|t| {
                    let v = i32::from_le_bytes(t[28..32].try_into().unwrap()) - 0x10;
                    t[28..32].copy_from_slice(&v.to_le_bytes())
                }),
                "outside the image's code",
            ),
        ];
        for (what, damage, want) in cases {
            let mut t = table(-0x1000, 0x20);
            damage(&mut t);
            let f = frame(&t);
            let e = check(&mut t, &f).expect_err(what);
            assert!(e.what.contains(want), "{what}: {e:?}");
        }
    }
}
