//! A cursor over DWARF-encoded bytes (fixed-width little-endian numbers,
//! LEB128, NUL-terminated strings), shared by hcr-link's reader of static
//! variables' owners and the runtime's crash reports (which read line
//! tables in a signal handler: nothing here allocates). Every read that
//! would pass the end returns `None`.

/// Reads `b` from `at` on.
#[derive(Clone, Copy, Debug)]
pub struct DwarfReader<'a> {
    /// The bytes.
    pub b: &'a [u8],
    /// The next byte to read.
    pub at: usize,
}

impl<'a> DwarfReader<'a> {
    /// One byte.
    pub fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.at)?;
        self.at += 1;
        Some(v)
    }

    /// An `n`-byte little-endian number (`n` ≤ 8; more bytes are skipped).
    pub fn fixed(&mut self, n: usize) -> Option<u64> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        let mut v = [0u8; 8];
        v[..n.min(8)].copy_from_slice(&s[..n.min(8)]);
        Some(u64::from_le_bytes(v))
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize) -> Option<()> {
        let end = self.at.checked_add(n)?;
        (end <= self.b.len()).then(|| self.at = end)
    }

    /// An unsigned LEB128 number (bits past 64 dropped).
    pub fn uleb(&mut self) -> Option<u64> {
        let (mut v, mut shift) = (0u64, 0u32);
        loop {
            let b = self.u8()?;
            if shift < 64 {
                v |= u64::from(b & 0x7f) << shift;
            }
            shift += 7;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
    }

    /// A signed LEB128 number.
    pub fn sleb(&mut self) -> Option<i64> {
        let (mut v, mut shift) = (0i64, 0u32);
        loop {
            let b = self.u8()?;
            if shift < 64 {
                v |= i64::from(b & 0x7f) << shift;
            }
            shift += 7;
            if b & 0x80 == 0 {
                if shift < 64 && b & 0x40 != 0 {
                    v |= -1i64 << shift;
                }
                return Some(v);
            }
        }
    }

    /// A NUL-terminated string: `(start, length)` in `b`, the NUL read.
    pub fn cstr(&mut self) -> Option<(usize, usize)> {
        let start = self.at;
        let len = self.b.get(start..)?.iter().position(|&c| c == 0)?;
        self.at = start + len + 1;
        Some((start, len))
    }
}

#[cfg(test)]
mod tests {
    use super::DwarfReader;

    #[test]
    fn numbers_strings_and_the_end() {
        let b = [0xe5, 0x8e, 0x26, 0x7f, 0x34, 0x12, b'h', b'i', 0, 9];
        let mut r = DwarfReader { b: &b, at: 0 };
        assert_eq!(r.uleb(), Some(624_485));
        assert_eq!(r.sleb(), Some(-1));
        assert_eq!(r.fixed(2), Some(0x1234));
        assert_eq!(r.cstr(), Some((6, 2)));
        assert_eq!(r.u8(), Some(9));
        assert_eq!(r.u8(), None);
        assert_eq!(r.skip(1), None);
        assert_eq!(r.fixed(4), None);
    }
}
