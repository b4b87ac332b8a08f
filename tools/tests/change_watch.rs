//! `hcr_has_any_module_changed()` answers from an inotify queue while
//! nothing happens to the image file, and stays exact, with no delay: a changed image is seen at once, a relinked identical one
//! or an image swapped back to the loaded one is no change, and writing the
//! file in place, renaming over it, changing its mode and deleting it are
//! all noticed.
//! One runtime per process: one test in this file.

mod support;

use support::install;

use hcr_runtime::Runtime;

type IntFn = extern "C" fn() -> i32;

/// The answer right away: the kernel queued the event before the write or
/// rename returned, so no waiting is allowed for.
fn becomes(rt: &Runtime, want: bool) -> bool {
    rt.has_any_module_changed() == want
}

#[test]
fn the_change_check_drains_an_event_queue_and_stays_exact() {
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
    assert!(
        !rt.has_any_module_changed(),
        "the answer from the empty queue"
    );

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
    assert!(
        rt.check_changed().is_err(),
        "a deleted image was not noticed"
    );
    install(&app, &v1);
    assert!(becomes(&rt, false));

    // A rewrite of the same length within the clock tick of the write
    // before it leaves the file's status as it was (file times come from a
    // coarse clock). Modelled by giving both writes one modification time,
    // ahead of the clock, so that every status taken falls in its tick.
    assert_eq!(v1.len(), v2.len(), "the two versions have one length");
    let tick = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    let write_in_tick = |bytes: &[u8]| {
        std::fs::write(&app, bytes).unwrap();
        let f = std::fs::File::options().write(true).open(&app).unwrap();
        f.set_modified(tick).unwrap();
    };
    write_in_tick(&v2);
    assert!(becomes(&rt, true));
    assert_eq!(rt.reload().unwrap(), 1);
    assert_eq!(value(), 2);
    // The status the reload took cannot vouch for the file: the file is
    // read again, and holds nothing new.
    assert!(!rt.has_any_module_changed());
    assert!(matches!(rt.check_changed(), Ok(false)));
    assert_eq!(rt.reload().unwrap(), 0, "nothing to reload");
    write_in_tick(&v1);
    assert!(
        becomes(&rt, true),
        "a rewrite within the loaded image's clock tick was not noticed"
    );
    assert_eq!(rt.reload().unwrap(), 1);
    assert_eq!(value(), 1);
    std::mem::forget(rt);
}
