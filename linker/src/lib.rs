//! `hcr-link` as a library: link module objects into one reloadable image.
//!
//! ```text
//! inputs (.o, .a) → parse (parallel) → COMDAT + symbol resolution → import
//! tree → scan relocations (parallel: GOT/PLT needs) → layout → apply
//! relocations while copying (parallel) → manifest + ELF writer
//! ```
//! Which API do I want? [`link`] writes an image file atomically;
//! [`link_bytes`] returns the image bytes (tests, tools that pipe).
//!
//! The output is an ELF64 `ET_REL` file: every module's sections and symbols
//! (local names qualified as `module:name`), all relocations, and the
//! `.hcr.manifest` section holding the manifest and the precomputed load plan
//! (see `hcr_image`). Section bytes in the file are already laid out as the
//! loader maps them, with every relocation whose value does not depend on
//! where the image lands applied.
#![deny(unsafe_code)]

mod arch;
mod error;
#[allow(unsafe_code)]
mod input;
mod link;
mod parse;
mod write;

use std::io::Write as _;
use std::path::{Path, PathBuf};

pub use error::{Diagnostic, LinkError};
pub use hcr_image::PlanStats;

/// What to link.
#[derive(Clone, Debug, Default)]
pub struct LinkConfig {
    /// Root module name; default: the first input object.
    pub root: Option<String>,
}

/// What a link produced.
#[derive(Clone, Debug)]
pub struct LinkOutput {
    /// The image file's bytes.
    pub bytes: Vec<u8>,
    /// Number of modules.
    pub modules: usize,
    /// Load-plan statistics.
    pub stats: PlanStats,
}

/// Links `inputs` into image bytes.
///
/// # Errors
/// Every problem of the inputs, reported together in [`LinkError::Inputs`].
pub fn link_bytes(config: &LinkConfig, inputs: &[PathBuf]) -> Result<LinkOutput, LinkError> {
    if inputs.is_empty() {
        return Err(LinkError::NoInputs);
    }
    let mut diags = error::Diags::default();
    let mut mapped = Vec::with_capacity(inputs.len());
    for p in inputs {
        match input::map_input(p) {
            Ok(m) => mapped.push(m),
            Err(e) => diags.push(
                &p.display().to_string(),
                "",
                None,
                format!("cannot read input: {e}"),
                "check the path; inputs are object files (.o) and archives (.a)",
            ),
        }
    }
    if !diags.list.is_empty() {
        return Err(LinkError::Inputs(diags.list));
    }
    link::link(config, &mapped)
}

/// Links `inputs` and writes the image to `output` atomically: the bytes go
/// to a temporary file in the same directory, which is synced and renamed
/// over `output`. A reader never sees a half-written image at the path, and
/// on any error the previous file at `output` is left untouched.
///
/// # Errors
/// Input problems, or the write failing (nothing is written then).
pub fn link(
    config: &LinkConfig,
    inputs: &[PathBuf],
    output: &Path,
) -> Result<LinkOutput, LinkError> {
    let out = link_bytes(config, inputs)?;
    write_atomically(output, &out.bytes).map_err(|source| LinkError::Write {
        path: output.display().to_string(),
        source,
    })?;
    Ok(out)
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("output path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
