//! Fuzz target: the input as an object file, an `ar` archive, or an object
//! plus an archive, given to the linker (see `hcr_fuzz::link_object`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hcr_fuzz::link_object(data);
});
