//! Nim modules (hcr's module name `@m….nim`): Nim initialises a module in
//! `atm<module>dotnim_DatInit000` (refc's run-time type info, GC roots) and
//! `atm<module>dotnim_Init000` (globals with run-time initialisers and the
//! top-level statements), called from the main module's `PreMain`, not as
//! constructors. So a Nim module that joins in a reload gets both run, in
//! the order Nim runs them (every `DatInit000` of the added modules, then
//! every `Init000`, in top-level order), and that runs its
//! `executeOnReload` blocks in place: its on-reload entries are not run as
//! well. A changed Nim module's `DatInit000` runs again too (before the
//! on-reload entries): it only assigns refc's type info, the same values for
//! old types, and fills in the new types'. At the image's first load
//! `PreMain` does all of this.

use hcr_image::{Manifest, Module};

/// True for hcr's name of a module compiled from Nim.
pub fn is_nim_module(name: &str) -> bool {
    name.starts_with("@m") && name.ends_with(".nim")
}

/// Area offsets of the module's `DatInit000` and `Init000` functions.
pub fn init_functions(m: &Manifest, md: &Module) -> (Option<u32>, Option<u32>) {
    let mut dat = None;
    let mut init = None;
    for f in &m.functions[md.functions.start as usize..md.functions.end as usize] {
        let name = m.str(f.name);
        if !name.starts_with("atm") {
            continue;
        }
        if name.ends_with("dotnim_DatInit000") {
            dat = Some(f.offset);
        } else if name.ends_with("dotnim_Init000") {
            init = Some(f.offset);
        }
    }
    (dat, init)
}
