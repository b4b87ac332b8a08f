//! Debug information kept in an image for debuggers (tool-only sections,
//! outside the checksum, never loaded).
//!
//! hcr-link concatenates each module's `.debug_*` sections, per name, in
//! module order, into one section of that name. References between debug
//! sections are applied at link time (offsets into the concatenation); a
//! reference to code or read-only data holds the target's area offset (the
//! section's `sh_addr` in the image, so `readelf --debug-dump` reads it as
//! laid out); a reference to a writable object holds the addend only. What a
//! reader must add to place them in a running program is listed in
//! [`DEBUG_FIXUPS_SECTION`]: one [`DebugFixup`] per place.

/// Name of the section holding the encoded [`DebugFixup`] table.
pub const DEBUG_FIXUPS_SECTION: &str = ".hcr.debug_fixups";
/// First bytes of the fixup section.
pub const DEBUG_MAGIC: [u8; 8] = *b"HCRDBGF1";
/// Size of one encoded [`DebugFixup`].
pub const DEBUG_FIXUP_SIZE: usize = 24;

/// What a reader adds to the value stored at a place of a debug section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum DebugTarget {
    /// The load area's run-time base (the stored value is an area offset).
    Area = 0,
    /// The run-time address of writable object `target` (an
    /// [`crate::ObjectId`]); 0 when the object is not loaded.
    Object = 1,
}

/// One place in a debug section that depends on where things run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebugFixup {
    /// Index of the debug section among the image's `.debug_*` sections, in
    /// section-header order.
    pub section: u16,
    /// Width of the field: 4 or 8 bytes.
    pub width: u8,
    /// What to add.
    pub kind: DebugTarget,
    /// Object id for [`DebugTarget::Object`], else 0.
    pub target: u32,
    /// Offset of the field in its section.
    pub offset: u64,
    /// The field's value before the addition (also stored in the field).
    pub value: i64,
}

/// Encodes the fixup table: magic, count, then 24 bytes per fixup.
pub fn encode_debug_fixups(fixups: &[DebugFixup]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + fixups.len() * DEBUG_FIXUP_SIZE);
    out.extend_from_slice(&DEBUG_MAGIC);
    out.extend_from_slice(&(fixups.len() as u64).to_le_bytes());
    for f in fixups {
        out.extend_from_slice(&f.section.to_le_bytes());
        out.push(f.width);
        out.push(f.kind as u8);
        out.extend_from_slice(&f.target.to_le_bytes());
        out.extend_from_slice(&f.offset.to_le_bytes());
        out.extend_from_slice(&f.value.to_le_bytes());
    }
    out
}

/// Decodes the fixup table; `None` when it is malformed (wrong magic, a
/// count the bytes do not hold, an unknown kind or width).
pub fn decode_debug_fixups(bytes: &[u8]) -> Option<Vec<DebugFixup>> {
    if bytes.get(..8)? != DEBUG_MAGIC {
        return None;
    }
    let n = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    let body = bytes.get(16..)?;
    let n = usize::try_from(n).ok()?;
    if body.len() / DEBUG_FIXUP_SIZE < n {
        return None;
    }
    body.chunks_exact(DEBUG_FIXUP_SIZE)
        .take(n)
        .map(|c| {
            let width = c[2];
            if width != 4 && width != 8 {
                return None;
            }
            Some(DebugFixup {
                section: u16::from_le_bytes([c[0], c[1]]),
                width,
                kind: match c[3] {
                    0 => DebugTarget::Area,
                    1 => DebugTarget::Object,
                    _ => return None,
                },
                target: u32::from_le_bytes(c[4..8].try_into().ok()?),
                offset: u64::from_le_bytes(c[8..16].try_into().ok()?),
                value: i64::from_le_bytes(c[16..24].try_into().ok()?),
            })
        })
        .collect()
}

/// Where the section header table lies: `(e_shoff, e_shnum, e_shstrndx)`,
/// from the first 64 bytes of an ELF64 little-endian file (extended
/// numbering resolved by the caller through section 0 when `e_shnum` is 0).
pub fn section_table(ehdr: &[u8]) -> Option<(u64, u32, u32)> {
    if ehdr.get(..4)? != b"\x7fELF" || *ehdr.get(4)? != 2 || *ehdr.get(5)? != 1 {
        return None;
    }
    let shoff = u64::from_le_bytes(ehdr.get(40..48)?.try_into().ok()?);
    let shnum = u16::from_le_bytes(ehdr.get(60..62)?.try_into().ok()?);
    let shstrndx = u16::from_le_bytes(ehdr.get(62..64)?.try_into().ok()?);
    Some((shoff, u32::from(shnum), u32::from(shstrndx)))
}

/// `(sh_name, sh_offset, sh_size, sh_link)` of one 64-byte section header.
pub fn section_header_fields(h: &[u8]) -> Option<(u32, u64, u64, u32)> {
    Some((
        u32::from_le_bytes(h.get(0..4)?.try_into().ok()?),
        u64::from_le_bytes(h.get(24..32)?.try_into().ok()?),
        u64::from_le_bytes(h.get(32..40)?.try_into().ok()?),
        u32::from_le_bytes(h.get(40..44)?.try_into().ok()?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixups_round_trip_and_reject_garbage() {
        let f = vec![
            DebugFixup {
                section: 2,
                width: 8,
                kind: DebugTarget::Area,
                target: 0,
                offset: 0x44,
                value: 0x1000,
            },
            DebugFixup {
                section: 0,
                width: 4,
                kind: DebugTarget::Object,
                target: 7,
                offset: 9,
                value: -3,
            },
        ];
        let bytes = encode_debug_fixups(&f);
        assert_eq!(decode_debug_fixups(&bytes), Some(f));
        assert_eq!(decode_debug_fixups(&bytes[..bytes.len() - 1]), None);
        let mut bad = bytes.clone();
        bad[16 + 3] = 9;
        assert_eq!(decode_debug_fixups(&bad), None);
        assert_eq!(decode_debug_fixups(b"nope"), None);
    }
}
