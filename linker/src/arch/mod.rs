//! Architecture facts.
pub(crate) mod x86_64;
