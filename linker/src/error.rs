//! Diagnostics: every problem names the file, the module and the symbol, and
//! says how to fix it. They accumulate; the link fails once at a checkpoint.

use std::fmt;

/// One problem found in the inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Input file (or `archive.a(member.o)`).
    pub file: String,
    /// Module name, when known.
    pub module: String,
    /// Symbol or section concerned, when there is one.
    pub symbol: Option<String>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if !self.module.is_empty() {
            write!(f, " (module {})", self.module)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(s) = &self.symbol {
            write!(f, ": '{s}'")?;
        }
        if !self.help.is_empty() {
            write!(f, "\n  help: {}", self.help)?;
        }
        Ok(())
    }
}

/// Why a link failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The inputs have problems; all of them are listed.
    #[error("{}", render(.0))]
    Inputs(Vec<Diagnostic>),
    /// No inputs were given.
    #[error("no input objects given")]
    NoInputs,
    /// `--root` names no module.
    #[error(
        "--root {0}: no input module has that name (module names are the file stems of the inputs)"
    )]
    UnknownRoot(String),
    /// The image would exceed what the format can describe.
    #[error("image too large: {0}")]
    TooLarge(String),
    /// Writing the output failed; nothing was written at the path.
    #[error("cannot write {path}: {cause}")]
    Write {
        /// Output path.
        path: String,
        /// Cause (in the message, so not also a `source`: a report that
        /// prints the chain would say it twice).
        cause: std::io::Error,
    },
}

fn render(d: &[Diagnostic]) -> String {
    let mut s = String::new();
    for (i, d) in d.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        s.push_str("error: ");
        s.push_str(&d.to_string());
    }
    s.push_str(&format!(
        "\n{} error{}; no image written",
        d.len(),
        if d.len() == 1 { "" } else { "s" }
    ));
    s
}

/// Collects diagnostics for one module.
#[derive(Default)]
pub(crate) struct Diags {
    pub list: Vec<Diagnostic>,
}

impl Diags {
    pub fn push(
        &mut self,
        file: &str,
        module: &str,
        symbol: Option<&str>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.list.push(Diagnostic {
            file: file.to_string(),
            module: module.to_string(),
            symbol: symbol.map(str::to_string),
            message: message.into(),
            help: help.into(),
        });
    }
}
