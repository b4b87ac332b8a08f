//! `hcr_has_any_module_changed()` answers from a flag while nothing happens
//! to the image file (an inotify watcher counts events on its name), and
//! stays exact: a changed image is seen at once, a relinked identical one
//! or an image swapped back to the loaded one is no change, and writing the
//! file in place, renaming over it, changing its mode and deleting it are
//! all noticed.
//! One runtime per process: one test in this file.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use hcr_runtime::Runtime;

type IntFn = extern "C" fn() -> i32;

/// Polls until `want`, for at most a second (the watcher thread reads an
/// event within microseconds; the bound only keeps a failure from hanging).
fn becomes(rt: &Runtime, want: bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(1) {
        if rt.has_any_module_changed() == want {
            return true;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    false
}

fn install(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn the_change_check_is_a_flag_and_stays_exact() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let v1 = std::fs::read(support::lib_image(
        d,
        "v1",
        "int value(void) { return 1; }\n",
    ))
    .unwrap();
    let v2 = std::fs::read(support::lib_image(
        d,
        "v2",
        "int value(void) { return 2; }\n",
    ))
    .unwrap();
    let app = d.join("app.hcr");
    install(&app, &v1);
    let rt = Runtime::open(&app).unwrap();
    // SAFETY: `value` is `int value(void)` in both versions.
    let value = unsafe { rt.get_proc::<IntFn>("lib", "value") }.unwrap();
    assert!(!rt.has_any_module_changed());
    assert!(!rt.has_any_module_changed(), "the answer from the flag");

    // The same bytes under a new inode: an event, then the exact check
    // finds no change.
    install(&app, &v1);
    assert!(becomes(&rt, false));
    // A changed image renamed over it is seen.
    install(&app, &v2);
    assert!(becomes(&rt, true), "a new image was not noticed");
    assert_eq!(rt.reload().unwrap(), 1);
    assert_eq!(value(), 2);
    assert!(!rt.has_any_module_changed());
    // Swapped back to the old image: a change again (older counts too).
    install(&app, &v1);
    assert!(becomes(&rt, true), "an image swapped back was not noticed");
    // ... and back to the loaded one: no change.
    install(&app, &v2);
    assert!(becomes(&rt, false));
    // Written in place (truncated, then written, as `cp` does).
    std::fs::write(&app, &v1).unwrap();
    assert!(
        becomes(&rt, true),
        "an image rewritten in place was not noticed"
    );
    assert_eq!(rt.reload().unwrap(), 1);
    assert_eq!(value(), 1);
    assert!(!rt.has_any_module_changed());
    // A mode change is an event; the exact check still finds no change.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(becomes(&rt, false));
    // Deleted: the check cannot stat it (an error, not "unchanged").
    std::fs::remove_file(&app).unwrap();
    let t0 = Instant::now();
    while rt.check_changed().is_ok() && t0.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_micros(200));
    }
    assert!(
        rt.check_changed().is_err(),
        "a deleted image was not noticed"
    );
    install(&app, &v1);
    assert!(becomes(&rt, false));
    std::mem::forget(rt);
}
