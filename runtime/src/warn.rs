//! Warnings on stderr.

/// Writes a warning to stderr; never fails (a closed stderr must not stop a
/// commit half-way).
pub(crate) fn warn(msg: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "hcr: warning: {msg}");
}
