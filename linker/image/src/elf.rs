//! Just enough ELF to find the manifest section (section index 1) of an image.

use crate::ImageError;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// The bytes of section 1 of an ELF64 little-endian x86-64 `ET_REL` file.
pub(crate) fn manifest_section(file: &[u8]) -> Result<&[u8], ImageError> {
    let (start, len) = manifest_place(file)?;
    file.get(
        start
            ..start
                .checked_add(len)
                .ok_or(ImageError::Truncated("manifest"))?,
    )
    .ok_or(ImageError::Truncated("manifest section"))
}

/// File offset of section 1.
pub(crate) fn manifest_offset(file: &[u8]) -> Result<u64, ImageError> {
    Ok(manifest_place(file)?.0 as u64)
}

/// File offset and size of section 1.
fn manifest_place(file: &[u8]) -> Result<(usize, usize), ImageError> {
    if !file.starts_with(b"\x7fELF") {
        return Err(ImageError::NotAnImage("no ELF magic"));
    }
    if file.len() < 64 {
        return Err(ImageError::Truncated("ELF header"));
    }
    if file[4] != 2 || file[5] != 1 {
        return Err(ImageError::NotAnImage("not ELF64 little-endian"));
    }
    let e_type = u16_at(file, 16).ok_or(ImageError::Truncated("ELF header"))?;
    let e_machine = u16_at(file, 18).ok_or(ImageError::Truncated("ELF header"))?;
    if e_type != 1 || e_machine != 62 {
        return Err(ImageError::NotAnImage("not an x86-64 relocatable file"));
    }
    let shoff = u64_at(file, 40).ok_or(ImageError::Truncated("ELF header"))?;
    let shentsize = u16_at(file, 58).ok_or(ImageError::Truncated("ELF header"))?;
    if shentsize != 64 {
        return Err(ImageError::NotAnImage("unexpected section header size"));
    }
    // Section header 1 ends 128 bytes after `e_shoff`: checked once here,
    // so the field offsets below cannot overflow.
    let sh1 = usize::try_from(shoff)
        .ok()
        .and_then(|o| o.checked_add(128).map(|_| o + 64))
        .ok_or(ImageError::Truncated("section headers"))?;
    let sh_offset = u64_at(file, sh1 + 24).ok_or(ImageError::Truncated("section headers"))?;
    let sh_size = u64_at(file, sh1 + 32).ok_or(ImageError::Truncated("section headers"))?;
    let _sh_type = u32_at(file, sh1 + 4).ok_or(ImageError::Truncated("section headers"))?;
    let start = usize::try_from(sh_offset).map_err(|_| ImageError::Truncated("manifest"))?;
    let len = usize::try_from(sh_size).map_err(|_| ImageError::Truncated("manifest"))?;
    Ok((start, len))
}
