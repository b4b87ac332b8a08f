//! Front ends of hcr: the library behind the `hcr-link` and `hcr` binaries.
//! Each command writes to a `&mut dyn Write` so tests can capture it.
#![deny(unsafe_code)]

pub mod alloc;
pub mod gen;
pub mod inspect;
pub mod link;
pub mod link_ahead;
pub mod link_server;
pub mod live;
pub mod nim_init;
pub mod nim_watch;
pub mod run;
pub mod types;
pub mod ui;
pub mod watch;

/// The compiler flags every module needs (`hcr flags`).
pub const FLAGS: &str = "-fPIC -ffunction-sections -fdata-sections";
