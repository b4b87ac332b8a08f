//! A first load that fails leaves nothing running: the image's watch and
//! the thread that prepares reloads are set up while the image loads
//! (ARCHITECTURE.md, "Reloads prepared ahead"), and put in service only
//! once it has loaded. A program that then loads the right image gets
//! reloads prepared ahead for that one. The images hold 3 MiB of data, so
//! their watch is opened on a thread beside the load (a small image's is
//! opened after it). One runtime per process: one test in this file.

mod support;

use std::time::{Duration, Instant};

use hcr_runtime::Runtime;
use support::install;

#[test]
fn after_a_failed_first_load_the_next_image_is_watched() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // A typo first: no such image (in another folder, so a watch left
    // behind by it would be on the wrong name).
    let wrong = d.join("elsewhere");
    std::fs::create_dir_all(&wrong).unwrap();
    let err = match Runtime::open(wrong.join("app.hcr")) {
        Ok(_) => panic!("a missing image was loaded"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("app.hcr"), "{err}");

    // (3 MiB of read-only data, kept: it has external linkage.)
    let big = |v: i32| {
        format!(
            "const char pad[3 << 20] = {{ {v} }};\n\
             int value(void) {{ return pad[0]; }}\n"
        )
    };
    let v1 = std::fs::read(support::lib_image(d, "v1", &big(1))).unwrap();
    let v2 = std::fs::read(support::lib_image(d, "v2", &big(2))).unwrap();
    assert!(v1.len() > 3 << 20, "the image is {} bytes", v1.len());
    let app = d.join("app.hcr");
    install(&app, &v1);
    let rt = Runtime::open(&app).expect("the right image loads");
    // SAFETY: `int value(void)` of the loaded image.
    let value: extern "C" fn() -> i32 = unsafe { rt.get_proc("lib", "value") }.unwrap();
    assert_eq!(value(), 1);
    install(&app, &v2);
    // The change is seen by the watch and prepared by its thread.
    let start = Instant::now();
    while !rt.stats().reload_ready {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no reload was prepared ahead: the watch is not on the loaded image"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(rt.reload().unwrap(), 1);
    assert_eq!(value(), 2);
    std::mem::forget(rt);
}
