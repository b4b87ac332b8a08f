//! Reloads spaced as a user's edits are (each past the grace period, so
//! every reload has an old image to free): old images are freed, a
//! global holding a function pointer keeps calling the new code, and the
//! scan that decides it (the reloading thread's stack, whose bounds are
//! asked once per thread) stays right across reloads. One runtime per
//! process: one test in this file.

mod support;

use hcr_runtime::Runtime;

type IntFn = extern "C" fn() -> i32;

#[test]
fn old_images_are_freed_when_reloads_come_apart() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // `value` returns `v`; `via` calls it through a pointer in a global.
    let image = |tag: &str, v: i32| {
        let code = format!(
            "int value(void) {{ return {v}; }}\nstatic int (*keep)(void) = value;\nint via(void) {{ return keep(); }}\n"
        );
        std::fs::read(support::lib_image(d, tag, &code)).unwrap()
    };
    let (v1, v2) = (image("v1", 1), image("v2", 2));
    let app = d.join("app.hcr");
    let install = |bytes: &[u8]| support::install(&app, bytes);
    install(&v1);
    let rt = Runtime::open_with(&app, &support::small_window()).expect("open");
    // SAFETY: `value` and `via` are `int (void)` in both images.
    let value = unsafe { rt.get_proc::<IntFn>("lib", "value") }.expect("value");
    // SAFETY: as above.
    let via = unsafe { rt.get_proc::<IntFn>("lib", "via") }.expect("via");
    for i in 0..8 {
        let want = if i % 2 == 0 { 2 } else { 1 };
        install(if i % 2 == 0 { &v2 } else { &v1 });
        assert_eq!(rt.reload().expect("reload"), 1);
        assert_eq!(value(), want);
        // A persistent global keeps the permanent address: it calls the
        // new code, whatever was freed.
        assert_eq!(via(), want);
        // Past the grace period, so each later reload has an image to
        // free.
        std::thread::sleep(std::time::Duration::from_millis(150));
    }
    let stats = rt.stats();
    // Reloads 1..=6 each retired an image that became due two reloads
    // later: at most the last two (and one a stale stack word may pin)
    // are left.
    assert!(stats.retired_images <= 3, "old images pile up: {stats:?}");
    install(&v2);
    assert_eq!(rt.reload().expect("reload"), 1);
    install(&v1);
    assert_eq!(rt.reload().expect("reload"), 1);
    assert_eq!((value(), via()), (1, 1));
    let after = rt.stats();
    assert!(after.retired_images <= 4, "{after:?}");
}
