//! An image rewritten in place (`cp new.hcr app.hcr`: truncate, then write)
//! while the runtime reads it. A thread rewrites the file in a tight loop,
//! alternating two valid images and partial writes, while this thread
//! reloads hundreds of times: every reload either succeeds with one of the
//! two programs' behaviour or fails with an error naming the file; nothing
//! crashes (a mapped image would die of SIGBUS here) and globals keep their
//! values.
//!
//! The runtime is one per process: this file holds one test.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use hcr_runtime::{ffi, Options, Runtime};

const V1: &str = r#"
int counter;
int value(void) { return 1; }
int bump(void) { return ++counter; }
"#;

/// Larger than V1, so the two images differ in size.
const V2: &str = r#"
int counter;
const char table[3000] = {2};
int value(void) { return table[0]; }
int bump(void) { return ++counter; }
"#;

fn build(dir: &Path, tag: &str, code: &str) -> PathBuf {
    support::lib_image(dir, tag, code)
}

type IntFn = extern "C" fn() -> i32;

#[test]
fn reloads_while_the_image_is_rewritten_in_place() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let v1 = std::fs::read(build(d, "v1", V1)).unwrap();
    let v2 = std::fs::read(build(d, "v2", V2)).unwrap();
    assert_ne!(v1.len(), v2.len());
    let app = d.join("app.hcr");
    std::fs::write(&app, &v1).unwrap();

    let rt = Runtime::open_with(&app, &Options::default()).expect("open");
    // SAFETY: the signatures match the C definitions above.
    let (value, bump) = unsafe {
        (
            rt.get_proc::<IntFn>("lib", "value").unwrap(),
            rt.get_proc::<IntFn>("lib", "bump").unwrap(),
        )
    };
    assert_eq!(value(), 1);
    let mut count = 0;

    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, writes, app) = (stop.clone(), writes.clone(), app.clone());
        let (v1, v2) = (v1.clone(), v2.clone());
        std::thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let (img, other) = if i % 2 == 1 { (&v2, &v1) } else { (&v1, &v2) };
                match i % 6 {
                    // Whole images, in one write and in small ones.
                    0 | 1 => support::rewrite_in_place(&app, img, img.len()),
                    2 | 3 => support::rewrite_in_place(&app, img, 1024),
                    // Partial files, left for a moment: a prefix, and the
                    // whole length with the tail of the other image.
                    4 => {
                        support::rewrite_in_place(&app, &img[..(i * 7919) % img.len()], 4096);
                        std::thread::yield_now();
                    }
                    _ => {
                        let mut torn = img.clone();
                        let n = torn.len().min(other.len());
                        let cut = (i * 104_729) % n;
                        torn[cut..n].copy_from_slice(&other[cut..n]);
                        support::rewrite_in_place(&app, &torn, 4096);
                        std::thread::yield_now();
                    }
                }
                if i % 6 < 4 {
                    // A complete image stays a moment, for reloads to find.
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                writes.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        })
    };

    let reloads: usize = std::env::var("HCR_REWRITE_RELOADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let (mut ok, mut unchanged) = (0, 0);
    let mut errors: std::collections::BTreeMap<String, usize> = Default::default();
    let app_name = app.display().to_string();
    for i in 0..reloads {
        // Varying pauses meet the writer at every phase of its loop.
        std::thread::sleep(std::time::Duration::from_micros(50 * (i as u64 % 11)));
        let before = value();
        let generation = rt.generation();
        // Reads only the manifest: must not crash either.
        let _ = ffi::hcr_has_any_module_changed();
        let r = ffi::hcr_perform_code_reload();
        let v = value();
        assert!(v == 1 || v == 2, "value() = {v}");
        match r {
            1 => {
                ok += 1;
                assert_eq!(rt.generation(), generation + 1);
            }
            0 => {
                unchanged += 1;
                assert_eq!(v, before, "nothing reloaded, yet the code changed");
            }
            -1 => {
                let err = Runtime::last_error();
                assert!(
                    err.contains(&app_name),
                    "error does not name the file: {err}"
                );
                assert_eq!(v, before, "a failed reload changed the code: {err}");
                assert_eq!(rt.generation(), generation, "{err}");
                // The kind of error, without the path and the numbers.
                let kind: String = err
                    .replacen(&app_name, "", 1)
                    .chars()
                    .take_while(|&c| c != '(' && c != ',' && c != ';')
                    .filter(|c| !c.is_ascii_digit())
                    .collect();
                *errors.entry(kind.trim().to_string()).or_default() += 1;
            }
            other => panic!("hcr_perform_code_reload returned {other}"),
        }
        count += 1;
        assert_eq!(bump(), count, "global counter lost");
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    eprintln!(
        "{reloads} reloads during {} rewrites: {ok} reloaded, {unchanged} unchanged, errors {errors:#?}",
        writes.load(Ordering::Relaxed)
    );
    assert!(ok > 0, "no reload succeeded");
    assert!(!errors.is_empty(), "no reload saw a partial file");

    // A complete image written in place afterwards loads.
    support::rewrite_in_place(&app, &v2, v2.len());
    let r = rt.reload();
    assert!(matches!(r, Ok(0 | 1)), "{r:?}");
    assert_eq!(value(), 2);
    count += 1;
    assert_eq!(bump(), count);
    drop(rt);
}
