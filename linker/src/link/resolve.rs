//! Pass 6: resolve every symbol; the import tree and reachability follow.

use super::*;

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Resolved {
    pub(crate) tgt: Vec<Tgt>,
    pub(crate) imports: Vec<u32>,
    pub(crate) undefined: Vec<u32>,
    pub(crate) own_def: Vec<bool>,
    pub(crate) global_def: Vec<(u32, u32)>,
}

pub(crate) fn resolve_module(
    mi: u32,
    m: &Mod<'_>,
    mods: &[Mod<'_>],
    globals: &HashMap<&str, GlobalDef>,
    hosts: &HashMap<&str, u32>,
) -> Resolved {
    let o = &m.obj;
    let mut own_def = vec![false; o.symbols.len()];
    let mut global_def = vec![NO_DEF; o.symbols.len()];
    let mut imports = Vec::new();
    let mut undefined = Vec::new();
    let local = |mi: u32, mm: &Mod<'_>, si: u32| -> Tgt {
        let s = &mm.obj.symbols[si as usize];
        match s.shndx {
            Shndx::Undef => Tgt::Null,
            Shndx::Abs => Tgt::Abs(s.value),
            Shndx::Common => mm
                .common_obj
                .get(&si)
                .map_or(Tgt::Null, |&g| Tgt::Common(g)),
            Shndx::Sec(sec) => {
                if mm.obj.sections[sec as usize].kind == SecKind::Discarded {
                    Tgt::Discarded
                } else {
                    Tgt::Loc {
                        m: mi,
                        sec,
                        off: s.value,
                        section_sym: s.typ == object::elf::STT_SECTION.0,
                        indirect: s.typ == object::elf::STT_GNU_IFUNC.0,
                    }
                }
            }
        }
    };
    let tgt = o
        .symbols
        .iter()
        .enumerate()
        .map(|(si, s)| {
            if !s.is_global() {
                return local(mi, m, si as u32);
            }
            match globals.get(s.name) {
                Some(g) => {
                    global_def[si] = (g.m, g.sym);
                    if g.m != mi {
                        imports.push(g.m);
                    } else if g.sym == si as u32 {
                        own_def[si] = true;
                    }
                    local(g.m, &mods[g.m as usize], g.sym)
                }
                None => match hosts.get(s.name) {
                    Some(&h) => {
                        undefined.push(h);
                        Tgt::Host(h)
                    }
                    None => local(mi, m, si as u32),
                },
            }
        })
        .collect();
    imports.sort_unstable();
    imports.dedup();
    undefined.sort_unstable();
    undefined.dedup();
    Resolved {
        tgt,
        imports,
        undefined,
        own_def,
        global_def,
    }
}

pub(crate) fn reachability(mods: &[Mod<'_>], root: u32) -> Vec<bool> {
    let mut seen = vec![false; mods.len()];
    let mut stack = vec![root];
    seen[root as usize] = true;
    while let Some(m) = stack.pop() {
        for &d in &mods[m as usize].imports {
            if !seen[d as usize] {
                seen[d as usize] = true;
                stack.push(d);
            }
        }
    }
    seen
}
