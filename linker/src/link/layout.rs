//! Pass 8: lay the area out, one segment per module.

use super::*;

pub(crate) fn layout_module(m: &mut Mod<'_>) {
    let mut sz = RegionSizes {
        text_align: 16,
        rodata_align: 8,
        init_align: 8,
        ..Default::default()
    };
    m.sec_off = vec![0; m.obj.sections.len()];
    for (i, sec) in m.obj.sections.iter().enumerate() {
        let (cursor, align_slot) = match sec.kind {
            SecKind::Text => (&mut sz.text, &mut sz.text_align),
            SecKind::Rodata => (&mut sz.rodata, &mut sz.rodata_align),
            SecKind::EhFrame => {
                // Contiguous: FDEs of all modules form one registered table.
                m.sec_off[i] = sz.eh;
                sz.eh += sec.size;
                continue;
            }
            SecKind::Data if !sec.nobits => (&mut sz.init, &mut sz.init_align),
            _ => continue,
        };
        *align_slot = (*align_slot).max(sec.align);
        *cursor = align_up(*cursor, sec.align);
        m.sec_off[i] = *cursor;
        *cursor += sec.size;
    }
    sz.plt_at = align_up(sz.text, 8);
    sz.text = sz.plt_at + m.plt.len() as u64 * PLT_STUB_SIZE;
    sz.got_at = align_up(sz.rodata, 8);
    sz.rodata = sz.got_at + m.got.len() as u64 * 8;
    m.sizes = sz;
}

/// Alignment of every module's segment start: a cache line, or more when
/// a section asks for it.
pub(crate) const SEG_ALIGN: u64 = 64;

/// Lays the area out module by module: each module's segment is its code
/// and PLT stubs, its read-only data and GOT, then its `.eh_frame` with a
/// zero terminator of its own. A module's bytes depend on its own segment
/// only (references into other segments are fixups), so the runtime can
/// place segments independently and keep an unchanged module where it is.
pub(crate) fn layout_area(mods: &mut [Mod<'_>]) -> Result<AreaLayout, LinkError> {
    let mut pos = 0u64;
    let mut segs = Vec::with_capacity(mods.len());
    for m in mods.iter_mut() {
        let align = SEG_ALIGN.max(m.sizes.text_align).max(m.sizes.rodata_align);
        let start = align_up(pos, align);
        m.bases.text = start;
        let ro = align_up(start + m.sizes.text, m.sizes.rodata_align.max(8));
        m.bases.rodata = ro;
        m.bases.eh = align_up(ro + m.sizes.rodata, 8);
        let end = m.bases.eh + m.sizes.eh + 4; // zero terminator
        segs.push((start, end));
        pos = end;
    }
    let end = pos.max(1);
    let mut init = 0u64;
    for m in mods.iter_mut() {
        init = align_up(init, m.sizes.init_align);
        m.bases.init = init;
        init += m.sizes.init;
    }
    let area_size = align_up(end, PAGE_SIZE);
    let as_u32 = |v: u64| {
        u32::try_from(v)
            .map_err(|_| LinkError::TooLarge(format!("load area of {v} bytes exceeds 4 GiB")))
    };
    Ok(AreaLayout {
        layout: Layout {
            area_size: as_u32(area_size)?,
        },
        area_file_size: end,
        init_size: init,
        segs,
    })
}
