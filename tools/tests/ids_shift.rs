//! A module that gains (then loses) a function moves the global function
//! and object indices of every module after it, while their records stay
//! the same: a reload must not take those modules' indices from the
//! loaded image as they were. Their functions keep running the right code
//! and their globals keep their values. One runtime per process: one test
//! in this file.

mod support;

use hcr_runtime::Runtime;

type IntFn = extern "C" fn() -> i32;

const A: &str = "int b_val(void);\nint c_val(void);\nint d_val(void);\n\
int a_sum(void) { return b_val() * 10000 + c_val() * 100 + d_val(); }\n";
const C: &str = "int c_count = 0;\nint c_val(void) { return 30 + ++c_count; }\n";
const D: &str = "int d_count = 0;\nint d_val(void) { return 50 + ++d_count; }\n";
const B1: &str = "int b_val(void) { return 2; }\n";
const B2: &str = "__attribute__((noinline)) int b_extra(void) { return 5; }\n\
int b_more(void) { return 1; }\nint b_val(void) { return 2 + b_extra(); }\n";
/// B2 with one function more and a global.
const B2G: &str = "__attribute__((noinline)) int b_extra(void) { return 5; }\n\
int b_more(void) { return 1; }\nint b_third(void) { return 3; }\nint b_glob = 0;\n\
int b_val(void) { return 2 + b_extra() + b_glob; }\n";
/// D with a second global and function, which D1 then drops.
const D2: &str = "int d_count = 0;\nint d_spare = 0;\nint d_two(void) { return ++d_spare; }\n\
int d_val(void) { return 50 + ++d_count; }\n";
const D1: &str = D;

fn image(dir: &std::path::Path, tag: &str, b: &str, dm: &str) -> Vec<u8> {
    let sub = dir.join(tag);
    std::fs::create_dir_all(&sub).unwrap();
    let objs = [("a", A), ("b", b), ("c", C), ("d", dm)]
        .map(|(name, code)| support::module(&sub, name, code, "-O2"));
    let img = dir.join(format!("{tag}.hcr"));
    support::link_ok(&img, &objs);
    std::fs::read(img).unwrap()
}

#[test]
fn modules_after_one_that_gains_functions_keep_their_code_and_globals() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let v1 = image(d, "v1", B1, D2);
    let v2 = image(d, "v2", B2, D2);
    let app = d.join("app.hcr");
    support::install(&app, &v1);
    let rt = Runtime::open(&app).expect("open");
    // SAFETY: all three are `int (void)` in every image.
    let (sum, c_val, d_val) = unsafe {
        (
            rt.get_proc::<IntFn>("a", "a_sum").expect("a_sum"),
            rt.get_proc::<IntFn>("c", "c_val").expect("c_val"),
            rt.get_proc::<IntFn>("d", "d_val").expect("d_val"),
        )
    };
    assert_eq!(c_val(), 31);
    assert_eq!(d_val(), 51);
    assert_eq!(sum(), 2 * 10000 + 32 * 100 + 52);
    // b gains two functions: c's and d's indices move by two.
    support::install(&app, &v2);
    assert_eq!(rt.reload().expect("reload"), 1);
    assert_eq!(c_val(), 33, "c's global kept its value");
    assert_eq!(d_val(), 53, "d's global kept its value");
    assert_eq!(sum(), 7 * 10000 + 34 * 100 + 54);
    // SAFETY: `int (void)`.
    let more = unsafe { rt.get_proc::<IntFn>("b", "b_more") }.expect("b_more");
    assert_eq!(more(), 1);
    // And loses them again: the indices move back.
    support::install(&app, &v1);
    assert_eq!(rt.reload().expect("reload"), 1);
    assert_eq!(sum(), 2 * 10000 + 35 * 100 + 55);
    assert_eq!((c_val(), d_val()), (36, 56));
    // An edit that keeps every index: the shared records keep theirs.
    support::install(&app, &v2);
    assert_eq!(rt.reload().expect("reload"), 1);
    support::install(
        &app,
        &image(d, "v3", &B2.replace("return 1;", "return 9;"), D2),
    );
    assert_eq!(rt.reload().expect("reload"), 1);
    assert_eq!(more(), 9);
    assert_eq!(sum(), 7 * 10000 + 37 * 100 + 57);
    assert_eq!((c_val(), d_val()), (38, 58));
    // b gains a function and a global while d loses one of each: the
    // tables keep their lengths, but c's indices (its record unchanged)
    // move by one.
    support::install(&app, &image(d, "v4", B2G, D1));
    assert_eq!(rt.reload().expect("reload"), 2);
    assert_eq!(c_val(), 39, "c's global is its own, not a neighbour's");
    assert_eq!(d_val(), 59);
    assert_eq!(sum(), 7 * 10000 + 40 * 100 + 60);
    support::install(&app, &v1);
    assert_eq!(rt.reload().expect("reload"), 2);
    assert_eq!((c_val(), d_val()), (41, 61));
}
