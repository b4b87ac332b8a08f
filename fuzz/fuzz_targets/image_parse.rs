//! Fuzz target: the input as image bytes to `ImageView::parse`, and what
//! parses through `load_area` / `unload_area` (see `hcr_fuzz::image_parse`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hcr_fuzz::image_parse(data);
});
