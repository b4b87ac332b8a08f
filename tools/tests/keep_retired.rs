//! `Options::keep_retired_images` (or `HCR_KEEP_RETIRED_IMAGES=1` before
//! `hcr_init`): for hosts whose other threads may run old code when a reload
//! happens, no retired image is ever freed; without it, old images are
//! reclaimed once nothing can run in them. One runtime per process: one
//! test in this file.

mod support;

use hcr_runtime::{Options, Runtime};

type IntFn = extern "C" fn() -> i32;

#[test]
fn kept_images_are_never_freed_and_stay_runnable() {
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
    let install = |bytes: &[u8]| support::install(&app, bytes);
    install(&v1);
    let rt = Runtime::open_with(
        &app,
        &Options {
            keep_retired_images: true,
            ..support::small_window()
        },
    )
    .expect("open");
    // SAFETY: `value` is `int value(void)` in both images.
    let value = unsafe { rt.get_proc::<IntFn>("lib", "value") }.expect("value");
    let first = rt.stats();
    assert_eq!(first.retired_images, 0);
    for i in 0..6 {
        install(if i % 2 == 0 { &v2 } else { &v1 });
        assert_eq!(rt.reload().expect("reload"), 1);
        assert_eq!(value(), if i % 2 == 0 { 2 } else { 1 });
        // Past the time-based rule's grace period: only keeping holds them.
        std::thread::sleep(std::time::Duration::from_millis(110));
    }
    let stats = rt.stats();
    assert_eq!(
        stats.retired_images, 6,
        "every retired image is kept: {stats:?}"
    );
}
