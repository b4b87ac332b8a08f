//! A global kept across a reload whose new type needs a stricter alignment
//! than its storage has moves to storage so aligned and starts again from
//! its initialiser (with a warning), like a global that changed size; one
//! whose storage happens to be aligned keeps it and its value. One runtime
//! per process: one test in this file.

mod support;

use hcr_runtime::Runtime;

type IntFn = extern "C" fn() -> i32;
type LongFn = extern "C" fn() -> i64;

#[test]
fn a_global_that_needs_a_stricter_alignment_moves() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let image = |tag: &str, code: &str| std::fs::read(support::lib_image(d, tag, code)).unwrap();
    // `a` is placed before `v` in the narrow storage, so `v` (8 bytes,
    // aligned to 4) lies 4 bytes past an 8-byte boundary (checked below).
    let v1 = image(
        "v1",
        "int v[2] __attribute__((aligned(4))) = {1, 2};\n\
         int a = 5;\n\
         int offset(void) { unsigned long p = (unsigned long)&v; __asm__(\"\" : \"+r\"(p)); return (int)(p % 8); }\n\
         long long get(void) { return v[0] + a; }\n",
    );
    let v2 = image(
        "v2",
        "long long v = 7;\n\
         int a = 5;\n\
         int offset(void) { unsigned long p = (unsigned long)&v; __asm__(\"\" : \"+r\"(p)); return (int)(p % 8); }\n\
         long long get(void) { return v + a; }\n",
    );
    let app = d.join("app.hcr");
    support::install(&app, &v1);
    let rt = Runtime::open_with(&app, &support::small_window()).expect("open");
    // (`offset` hides the address from the compiler, which would otherwise
    // take `v`'s declared alignment for granted.)
    // SAFETY: `offset` is `int (void)` and `get` `long long (void)` in both
    // versions.
    let offset = unsafe { rt.get_proc::<IntFn>("lib", "offset") }.expect("offset");
    // SAFETY: as above.
    let get = unsafe { rt.get_proc::<LongFn>("lib", "get") }.expect("get");
    assert_eq!((offset(), get()), (4, 6), "the setting this test needs");
    support::install(&app, &v2);
    assert_eq!(rt.reload().expect("reload"), 1);
    // Moved to aligned storage, from its initialiser; `a` kept.
    assert_eq!((offset(), get()), (0, 12));
    std::mem::forget(rt);
}
