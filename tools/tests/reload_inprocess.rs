//! The runtime in this process (Rust host API): W^X, failed reloads that
//! lose nothing, memory over 1000 reloads, and threads calling through
//! permanent addresses during reloads.
//!
//! The runtime is one per process, so everything runs in one test, in order.

mod support;

use support::install;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use hcr_runtime::{Options, Runtime};

const V1: &str = r#"
#include "hcr.h"
int counter;
const char *name = "alpha";
int value(void) { return 1; }
int bump(void) { return ++counter; }
const char *get_name(void) { return name; }
"#;

const V2: &str = r#"
#include "hcr.h"
int counter;
const char *name = "beta"; /* a changed initialiser does nothing to a live global */
int value(void) { return 2; }
int bump(void) { return ++counter; }
const char *get_name(void) { return name; }
"#;

const UNDEFINED: &str = r#"
int counter;
const char *name = "alpha";
int does_not_exist_anywhere(int);
int value(void) { return does_not_exist_anywhere(3); }
int bump(void) { return ++counter; }
const char *get_name(void) { return name; }
"#;

/// V1 plus a call to a host function (through the GOT: an absolute 64-bit
/// fixup), which [`out_of_reach`] turns into a 32-bit PC-relative one.
const FAR: &str = r#"
#include "hcr.h"
int counter;
const char *name = "alpha";
int value(void) { return 1; }
int bump(void) { return ++counter; }
const char *get_name(void) { return name; }
unsigned generation(void) { return hcr_generation(); }
"#;

const BIG: &str = r#"
int counter;
const char *name = "alpha";
const char big[8 << 20] = {1};
int value(void) { return big[0] + 2; }
int bump(void) { return ++counter; }
const char *get_name(void) { return name; }
"#;

fn build(dir: &Path, tag: &str, code: &str) -> PathBuf {
    support::lib_image(dir, tag, code)
}

/// `image` with its GOT entry for host symbol `symbol` relocated by a 32-bit
/// PC-relative fixup instead of an absolute 64-bit one, and the checksum
/// sealed again: what a `-fno-pic` reference to host data would need.
/// hcr-link refuses to write such a fixup ("PC-relative reference to host
/// symbol"), so only a foreign or corrupted writer can produce it; the
/// loader must still refuse it when the symbol lies beyond ±2 GiB.
fn out_of_reach(image: &[u8], symbol: &str) -> Vec<u8> {
    let view = hcr_image::ImageView::parse(image).expect("a valid image");
    let m = &view.manifest;
    let host = m
        .hosts
        .iter()
        .position(|h| m.str(h.name) == symbol)
        .expect("the image uses the host symbol") as u32;
    let at = (0..m.modules.len())
        .flat_map(|mi| view.module_fixups(mi).chunks_exact(hcr_image::FIXUP_SIZE))
        .find(|r| r[12] == 1 /* Abs64 */ && r[13] == 3 /* Host */ && r[4..8] == host.to_le_bytes())
        .map(|r| r.as_ptr() as usize - image.as_ptr() as usize)
        .expect("an absolute fixup of the GOT entry");
    let mut out = image.to_vec();
    out[at + 12] = 2; // Pc32
    reseal(&mut out);
    out
}

/// `image` whose `.eh_frame` table starts with a record longer than the
/// table, checksum sealed again: what a buggy writer could produce.
fn bad_unwind_table(image: &[u8]) -> Vec<u8> {
    let view = hcr_image::ImageView::parse(image).expect("a valid image");
    let eh = view
        .manifest
        .modules
        .iter()
        .map(|md| md.eh_frame)
        .find(|eh| eh.len() > 4)
        .expect("the image has unwind information");
    let at = view.header.area_file_offset as usize + eh.start as usize;
    let mut out = image.to_vec();
    out[at..at + 4].copy_from_slice(&0xfff0u32.to_le_bytes());
    reseal(&mut out);
    out
}

/// File offset of `image`'s manifest section (section 1; its offset is in
/// section header 1).
fn manifest_at(image: &[u8]) -> usize {
    let word = |at: usize| u64::from_le_bytes(image[at..at + 8].try_into().unwrap()) as usize;
    word(word(40) + 64 + 24)
}

/// Stores the checksums of `image`'s current bytes.
fn reseal(image: &mut [u8]) {
    hcr_image::reseal(image).expect("a manifest");
    hcr_image::ImageView::parse(image).expect("a valid image again");
}

fn no_writable_executable_mappings() {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let perms = line.split_whitespace().nth(1).unwrap_or("");
        assert!(
            !(perms.contains('w') && perms.contains('x')),
            "writable and executable mapping: {line}"
        );
    }
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

type IntFn = extern "C" fn() -> i32;
type StrFn = extern "C" fn() -> *const std::ffi::c_char;

fn name_of(f: StrFn) -> String {
    // SAFETY: get_name returns a NUL-terminated string of the image.
    unsafe { std::ffi::CStr::from_ptr(f()) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn runtime_in_process() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let v1 = std::fs::read(build(d, "v1", V1)).unwrap();
    let v2 = std::fs::read(build(d, "v2", V2)).unwrap();
    // (hcr-link refuses it unless told a host defines the symbol.)
    let undefined = {
        let sub = d.join("undef");
        std::fs::create_dir_all(&sub).unwrap();
        let o = support::module(&sub, "lib", UNDEFINED, "-O2");
        let img = d.join("undef.hcr");
        let out = support::link_with(&img, &["--allow-undefined"], &[o]);
        assert!(out.status.success(), "{out:?}");
        std::fs::read(img).unwrap()
    };
    let big = std::fs::read(build(d, "big", BIG)).unwrap();
    let far = out_of_reach(
        &std::fs::read(build(d, "far", FAR)).unwrap(),
        "hcr_generation",
    );
    let app = d.join("app.hcr");
    install(&app, &v1);

    // A 4 MiB window: enough for these images, too small for `big`.
    let rt = Runtime::open_with(
        &app,
        &Options {
            window_size: 4 << 20,
            ..Options::default()
        },
    )
    .expect("open");
    // SAFETY: the signatures match the C definitions above.
    let (value, bump, get_name) = unsafe {
        (
            rt.get_proc::<IntFn>("lib", "value").unwrap(),
            rt.get_proc::<IntFn>("lib", "bump").unwrap(),
            rt.get_proc::<StrFn>("lib", "get_name").unwrap(),
        )
    };
    assert_eq!(value(), 1);
    assert_eq!((bump(), bump()), (1, 2));
    no_writable_executable_mappings();

    install(&app, &v2);
    assert!(rt.has_any_module_changed());
    assert_eq!(rt.reload().expect("reload"), 1);
    assert_eq!(value(), 2, "new code through the old permanent address");
    assert_eq!(bump(), 3, "global kept");
    assert_eq!(
        name_of(get_name),
        "alpha",
        "initialiser change must not touch a live global"
    );
    assert_eq!(rt.generation(), 1);
    assert_eq!(rt.reload().unwrap(), 0, "nothing changed");
    no_writable_executable_mappings();

    // Fault injection: each reload fails, says why, and loses nothing.
    // Flip a byte of the load area (the checksum covers the manifest, the
    // load area and the initial data: every byte the loader uses).
    let mut flipped = v1.clone();
    let mh = manifest_at(&v1);
    let area_off = u64::from_le_bytes(v1[mh + 32..mh + 40].try_into().unwrap()) as usize;
    flipped[area_off + 1] ^= 0x40;
    let mut version = v1.clone();
    version[mh + 8] = 99;
    let faults: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", v1[..v1.len() / 2].to_vec(), "truncated"),
        ("flipped byte", flipped, "checksum mismatch"),
        (
            "wrong version",
            version,
            "format version 99 is not supported",
        ),
        (
            "not an image",
            b"#!/bin/sh\necho hi\n".to_vec(),
            "not an hcr image",
        ),
        ("empty", Vec::new(), "empty file"),
        (
            "undefined symbol",
            undefined,
            "undefined symbol 'does_not_exist_anywhere'",
        ),
        ("window exhausted", big, "address window exhausted"),
        (
            "malformed unwind table",
            bad_unwind_table(&v1),
            "malformed unwind table (.eh_frame) at image offset 0x",
        ),
    ];
    for (what, bytes, want) in faults {
        install(&app, &bytes);
        let err = rt.reload().expect_err(what).to_string();
        assert!(err.contains(want), "{what}: {err}");
        assert_eq!(value(), 2, "{what}: old code keeps running");
        assert_eq!(bump(), 4, "{what}: global kept");
        assert_eq!(name_of(get_name), "alpha", "{what}: global kept");
        assert_eq!(rt.generation(), 1, "{what}");
        // Undo the increment so every case sees the same state.
        // SAFETY: `counter` is an int global of module lib.
        unsafe { *(rt.get_global("lib", "counter").unwrap() as *mut i32) = 3 };
    }
    // A 32-bit PC-relative fixup to a host function: the runtime's C API
    // lies in this executable, terabytes from the window in the mmap area.
    let distance =
        (value as usize).abs_diff(hcr_runtime::ffi::hcr_generation as *const () as usize);
    if distance > 1 << 32 {
        install(&app, &far);
        let err = rt.reload().expect_err("out of reach").to_string();
        for want in [
            "module lib:",
            "relocation to host symbol 'hcr_generation'",
            "at image offset 0x",
            "out of reach",
        ] {
            assert!(
                err.contains(want),
                "out of reach: {want:?} missing in {err}"
            );
        }
        assert_eq!(value(), 2, "out of reach: old code keeps running");
        assert_eq!(bump(), 4, "out of reach: global kept");
        assert_eq!(name_of(get_name), "alpha");
        assert_eq!(rt.generation(), 1);
        // SAFETY: `counter` is an int global of module lib.
        unsafe { *(rt.get_global("lib", "counter").unwrap() as *mut i32) = 3 };
    } else {
        eprintln!("skipped the out-of-reach case: the window lies within {distance:#x} bytes of this executable");
    }
    std::fs::remove_file(&app).unwrap();
    let err = rt.reload().expect_err("missing file").to_string();
    assert!(err.contains("app.hcr"), "{err}");
    assert_eq!(value(), 2);

    // Memory stays bounded over 1000 reloads. An image that a stale word
    // of this test's own stack points into stays, rightly (the scan is
    // conservative; how many depends on the build's frame layout): the
    // bound is on what the loop adds.
    install(&app, &v1);
    assert_eq!(rt.reload().unwrap(), 1);
    let retired_before = rt.stats().retired_images;
    let rss_first = rss_kib();
    let free_first = rt.stats().window_free;
    for i in 0..1000 {
        let (bytes, want) = if i % 2 == 0 { (&v2, 2) } else { (&v1, 1) };
        install(&app, bytes);
        assert_eq!(rt.reload().unwrap(), 1);
        assert_eq!(value(), want);
    }
    // Let the time-based grace period pass, then one more reload reclaims.
    std::thread::sleep(std::time::Duration::from_millis(150));
    install(&app, &v2);
    rt.reload().unwrap();
    install(&app, &v1);
    rt.reload().unwrap();
    let stats = rt.stats();
    assert!(
        stats.retired_images <= retired_before + 3,
        "old images pile up: {stats:?} ({retired_before} before the loop)"
    );
    assert!(
        stats.window_free + 64 * 4096 >= free_first,
        "window drifts: {} → {}",
        free_first,
        stats.window_free
    );
    let rss_last = rss_kib();
    assert!(
        rss_last as f64 <= rss_first as f64 * 1.5 + 2048.0,
        "RSS grew from {rss_first} KiB to {rss_last} KiB over 1000 reloads"
    );
    assert_eq!(bump(), 4, "counter survived 1000 reloads");
    no_writable_executable_mappings();

    // Threads keep calling through permanent addresses during reloads and
    // always get the old or the new function.
    let reloads: usize = std::env::var("HCR_STRESS_RELOADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let stop = Arc::new(AtomicBool::new(false));
    let bad = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, bad, calls) = (stop.clone(), bad.clone(), calls.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let v = value();
                    if v != 1 && v != 2 {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for i in 0..reloads {
        install(&app, if i % 2 == 0 { &v2 } else { &v1 });
        assert_eq!(rt.reload().unwrap(), 1);
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(bad.load(Ordering::Relaxed), 0, "invalid results");
    assert!(calls.load(Ordering::Relaxed) > 0);
    drop(rt);
}
