//! Debug information for the image: each module's `.debug_*` sections,
//! concatenated per name in module order, with their relocations resolved
//! (see `hcr_image::DebugFixup` for what is left to a reader: the load
//! area's base and the addresses of persistent globals).
//!
//! Nothing here is loaded or checksummed; the runtime relocates a copy for
//! debuggers (the GDB JIT interface). Objects built without `-g` have no
//! debug sections and the image gets none.

use hcr_image::{DebugFixup, DebugTarget};
use rustc_hash::FxHashMap as HashMap;

use crate::arch::x86_64 as x86;
use crate::link::model::{DebugPlace, Mod};
use crate::parse::SecKind;

/// The image's debug sections: `(name, bytes)` in section order, and the
/// encoded fixup table (empty when there are no sections).
#[derive(Default)]
pub(crate) struct DebugOut {
    pub sections: Vec<(String, Vec<u8>)>,
    pub fixups: Vec<u8>,
}

fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a.max(1)) * a.max(1)
}

/// Concatenates and relocates every kept module's debug sections.
pub(crate) fn build(mods: &[Mod<'_>]) -> DebugOut {
    // Output sections by name, in order of first appearance; each input
    // section's place in its output.
    let mut names: Vec<String> = Vec::new();
    let mut by_name: HashMap<&str, usize> = HashMap::default();
    let mut sizes: Vec<u64> = Vec::new();
    let mut place: Vec<Vec<(usize, u64)>> = Vec::with_capacity(mods.len());
    for m in mods {
        let mut p = vec![(usize::MAX, 0u64); m.obj.sections.len()];
        for (si, sec) in m.obj.sections.iter().enumerate() {
            if sec.kind != SecKind::Debug {
                continue;
            }
            let out = *by_name.entry(sec.name).or_insert_with(|| {
                names.push(sec.name.to_string());
                sizes.push(0);
                names.len() - 1
            });
            let at = align_up(sizes[out], sec.align);
            p[si] = (out, at);
            sizes[out] = at + sec.data.len() as u64;
        }
        place.push(p);
    }
    if names.is_empty() || names.len() > usize::from(u16::MAX) {
        return DebugOut::default();
    }
    let mut data: Vec<Vec<u8>> = sizes.iter().map(|&s| vec![0u8; s as usize]).collect();
    let mut fixups = Vec::new();
    for (mi, m) in mods.iter().enumerate() {
        for (si, sec) in m.obj.sections.iter().enumerate() {
            if sec.kind != SecKind::Debug {
                continue;
            }
            let (out, at) = place[mi][si];
            let dst = &mut data[out][at as usize..at as usize + sec.data.len()];
            dst.copy_from_slice(sec.data);
            for r in m.obj.relocs(sec) {
                let width = match r.r_type {
                    x86::R_64 | x86::R_DTPOFF64 => 8usize,
                    x86::R_32 | x86::R_32S | x86::R_DTPOFF32 => 4,
                    _ => continue,
                };
                let off = r.offset as usize;
                let Some(field) = off.checked_add(width).and_then(|end| dst.get_mut(off..end))
                else {
                    continue;
                };
                let tls = matches!(r.r_type, x86::R_DTPOFF64 | x86::R_DTPOFF32);
                let place_of = if tls {
                    DebugPlace::None
                } else {
                    m.debug_place(mods, mi as u32, r.sym as usize)
                };
                let (value, fix) = match place_of {
                    DebugPlace::Area(a) => {
                        let v = (a as i64).wrapping_add(r.addend);
                        (v, Some((DebugTarget::Area, 0)))
                    }
                    DebugPlace::Object(g, o) => {
                        let v = (o as i64).wrapping_add(r.addend);
                        (v, Some((DebugTarget::Object, g)))
                    }
                    DebugPlace::Debug(sec, o) => {
                        let base = place[mi].get(sec as usize).map_or(0, |p| p.1);
                        (((base + o) as i64).wrapping_add(r.addend), None)
                    }
                    DebugPlace::Abs(v) => ((v as i64).wrapping_add(r.addend), None),
                    DebugPlace::None => (0, None),
                };
                field.copy_from_slice(&value.to_le_bytes()[..width]);
                if let Some((kind, target)) = fix {
                    fixups.push(DebugFixup {
                        section: out as u16,
                        width: width as u8,
                        kind,
                        target,
                        offset: at + r.offset,
                        value,
                    });
                }
            }
        }
    }
    DebugOut {
        sections: names.into_iter().zip(data).collect(),
        fixups: hcr_image::encode_debug_fixups(&fixups),
    }
}
