//! A global kept across a reload whose type changes from one that cannot
//! hold a pointer (aligned to 4 bytes) to a pointer of the same size keeps
//! its storage and value; a pointer the program then stores in it, to a
//! string of the image loaded at that reload, keeps that image mapped
//! however many reloads and grace periods pass. One runtime per process:
//! one test in this file.

mod support;

use hcr_runtime::Runtime;

type IntFn = extern "C" fn() -> i32;
type VoidFn = extern "C" fn();

#[test]
fn a_global_retyped_to_a_pointer_keeps_the_image_it_points_into() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let image = |tag: &str, code: &str| std::fs::read(support::lib_image(d, tag, code)).unwrap();
    // Version 1: `v` is two `int`s aligned to 4 bytes (storage that cannot
    // hold an aligned pointer).
    let v1 = image(
        "v1",
        "int v[2] __attribute__((aligned(4))) = {1, 2};\n\
         int first(void) { return v[0]; }\n\
         void set(void) { v[0] = 0; }\n\
         int tag(void) { return 1; }\n",
    );
    // Version 2: `v` is a pointer of the same size (kept, with its value),
    // and `set` stores the address of one of this image's strings in it.
    let v2 = image(
        "v2",
        "const char *v;\n\
         int first(void) { return v ? v[0] : -1; }\n\
         void set(void) { v = \"from version 2\"; }\n\
         int tag(void) { return 2; }\n",
    );
    // Later versions: the same global, other code (each reload loads the
    // module into a new area, so version 2's area retires).
    let later = |k: i32| {
        image(
            &format!("v{k}"),
            &format!(
                "const char *v;\n\
                 int first(void) {{ return v ? v[0] : -1; }}\n\
                 void set(void) {{ v = 0; }}\n\
                 int tag(void) {{ return {k}; }}\n"
            ),
        )
    };
    let (v3, v4) = (later(3), later(4));
    let app = d.join("app.hcr");
    let install = |bytes: &[u8]| support::install(&app, bytes);
    install(&v1);
    let rt = Runtime::open_with(&app, &support::small_window()).expect("open");
    // SAFETY: `first` and `tag` are `int (void)`, `set` is `void (void)`,
    // in every version.
    let first = unsafe { rt.get_proc::<IntFn>("lib", "first") }.expect("first");
    // SAFETY: as above.
    let set = unsafe { rt.get_proc::<VoidFn>("lib", "set") }.expect("set");
    // SAFETY: as above.
    let tag = unsafe { rt.get_proc::<IntFn>("lib", "tag") }.expect("tag");
    assert_eq!(first(), 1);
    install(&v2);
    assert_eq!(rt.reload().expect("reload to 2"), 1);
    assert_eq!(tag(), 2);
    set();
    assert_eq!(first(), i32::from(b'f'));
    // Reloads spaced past the grace period: version 2's area becomes due
    // for freeing, and only the global's pointer says it is still used.
    for i in 0..6 {
        std::thread::sleep(std::time::Duration::from_millis(150));
        let (bytes, want) = if i % 2 == 0 { (&v3, 3) } else { (&v4, 4) };
        install(bytes);
        assert_eq!(rt.reload().expect("reload"), 1);
        assert_eq!(tag(), want);
        assert_eq!(
            first(),
            i32::from(b'f'),
            "reload {i}: the string the global points to is gone"
        );
    }
    std::mem::forget(rt);
}
