//! Fuzz target: the input as a request line to the control endpoint (see
//! `hcr_fuzz::control_request`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hcr_fuzz::control_request(data);
});
