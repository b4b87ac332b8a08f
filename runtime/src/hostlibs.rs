//! Shared libraries a program's modules call into: the ones a `cc` link
//! gives every program (loaded when an image first needs something the
//! process lacks) and the ones the image names (`hcr-link -l`, loaded before
//! any module as `DT_NEEDED` libraries are). Also the error that names every
//! host symbol nothing defines, with the modules that want it.

use std::collections::HashSet;
use std::ffi::CString;
use std::sync::{Mutex, Once};

use hcr_image::Manifest;

use crate::Error;

/// What `cc` links into every C or C++ program without a flag (libc and
/// libgcc_s are already in any host of the runtime; glibc 2.34 and later
/// merged libpthread, libdl and librt into libc, but older systems and
/// programs that check for the libraries still find them).
const DEFAULTS: &[&std::ffi::CStr] = &[
    c"libm.so.6",
    c"libpthread.so.0",
    c"libdl.so.2",
    c"librt.so.1",
    c"libgcc_s.so.1",
    c"libstdc++.so.6",
];

/// Sonames already loaded for an image: a reload does not `dlopen` again.
static LOADED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Loads the default libraries once per process; those not installed
/// (libstdc++ on a C-only system) are skipped: a symbol only they define
/// is then reported as missing.
pub(crate) fn load_defaults() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for lib in DEFAULTS {
            let _ = hcr_loader::open_library(lib);
        }
    });
}

/// Loads every library `m` names, in order: by soname first (the system's
/// search path, as `ld.so` does), then at the path hcr-link found it (an
/// `-L` directory outside that path).
pub(crate) fn load_needed(m: &Manifest) -> Result<(), Error> {
    if m.libraries.is_empty() {
        return Ok(());
    }
    let mut loaded = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    let loaded = loaded.get_or_insert_with(HashSet::new);
    for lib in &m.libraries {
        let soname = m.str(lib.soname);
        if loaded.contains(soname) {
            continue;
        }
        let path = m.str(lib.path);
        let by_name = CString::new(soname)
            .map_err(|e| e.to_string())
            .and_then(|c| hcr_loader::open_library(&c));
        let result = by_name.or_else(|first| {
            if path.is_empty() {
                return Err(first);
            }
            CString::new(path)
                .map_err(|e| e.to_string())
                .and_then(|c| hcr_loader::open_library(&c))
                .map_err(|second| format!("{first}; at {path}: {second}"))
        });
        match result {
            Ok(()) => {
                loaded.insert(soname.to_string());
            }
            Err(reason) => {
                return Err(Error::Library {
                    request: m.str(lib.request).to_string(),
                    soname: soname.to_string(),
                    reason,
                })
            }
        }
    }
    Ok(())
}

/// `Err` naming every host symbol marked `missing` that a reachable module
/// wants, grouped by module, in module order.
pub(crate) fn check_missing(
    m: &Manifest,
    reachable: &[bool],
    missing: &[bool],
) -> Result<(), Error> {
    if !missing.contains(&true) {
        return Ok(());
    }
    let mut list = Vec::new();
    for (mi, md) in m.modules.iter().enumerate() {
        if !reachable.get(mi).copied().unwrap_or(false) {
            continue;
        }
        let names: Vec<String> = md
            .undefined
            .iter()
            .filter(|h| missing.get(h.0 as usize).copied().unwrap_or(false))
            .map(|h| m.str(m.hosts[h.0 as usize].name).to_string())
            .collect();
        if !names.is_empty() {
            list.push((m.str(md.name).to_string(), names));
        }
    }
    if list.is_empty() {
        return Ok(());
    }
    Err(Error::Unresolved { missing: list })
}

/// The text of [`Error::Unresolved`]: one clause per module.
pub(crate) fn render_unresolved(missing: &[(String, Vec<String>)]) -> String {
    let total: usize = missing.iter().map(|(_, n)| n.len()).sum();
    let mut s = missing
        .iter()
        .map(|(module, names)| {
            format!(
                "module {module}: undefined symbol{} {}",
                if names.len() == 1 { "" } else { "s" },
                names
                    .iter()
                    .map(|n| format!("'{n}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    s.push_str(if total == 1 {
        ": no module, library (hcr-link -l), the hcr runtime, or the host process defines it"
    } else {
        ": no module, library (hcr-link -l), the hcr runtime, or the host process defines them"
    });
    s
}
