//! Indirect functions (`STT_GNU_IFUNC`: `__attribute__((ifunc))` and gcc's
//! `target_clones`): a call, from the defining module or another, and a
//! pointer taken anywhere reach what the resolver chose, as in a native
//! build; a reload runs the new module's resolver. One runtime per process:
//! one in-process test (the other runs `hcr run`).

mod support;

use hcr_runtime::Runtime;

const LIB: &str = r#"
static int plus_one(int x) { return x + 1; }
static int plus_two(int x) { return x + 2; }
/* A resolver runs before constructors: it initialises the CPU model itself. */
static void *pick(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse2") ? (void *)plus_one : (void *)plus_two;
}
int chosen(int x) __attribute__((ifunc("pick")));

__attribute__((target_clones("avx2", "default")))
int dot(const int *a, int n) {
    int s = 0;
    for (int i = 0; i < n; i++) s += a[i] * a[i];
    return s;
}

int (*lib_fp)(int) = chosen;
/* A call inside the defining module, and one through its own pointer. */
int lib_calls(int x) { return chosen(x) * 10 + lib_fp(x); }
"#;

const MAIN: &str = r#"
#include <stdio.h>
int chosen(int);
int dot(const int *, int);
extern int (*lib_fp)(int);
int lib_calls(int);
int (*main_fp)(int) = chosen;

int main(void) {
    int a[5] = {1, 2, 3, 4, 5};
    int (*d)(const int *, int) = dot;
    printf("chosen %d %d %d\n", chosen(1), main_fp(2), lib_calls(3));
    printf("one address %d\n", main_fp == lib_fp && main_fp == &chosen);
    printf("dot %d, through a pointer %d\n", dot(a, 5), d(a, 3));
    return 0;
}
"#;

#[test]
fn indirect_functions_run_what_their_resolvers_choose() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let (lib, main) = (d.join("lib.c"), d.join("main.c"));
    std::fs::write(&lib, LIB).unwrap();
    std::fs::write(&main, MAIN).unwrap();
    let flags = ["-O2", "-fPIC", "-ffunction-sections", "-fdata-sections"];
    let (want, got) = support::native_and_image(d, "cc", &flags, &[main, lib]);
    let want = String::from_utf8_lossy(&want.stdout).into_owned();
    assert_eq!(
        want, "chosen 2 3 44\none address 1\ndot 55, through a pointer 14\n",
        "the native build"
    );
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&got.stdout), want);
}

#[test]
fn a_reload_runs_the_new_resolver() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // `chosen` adds `n`; `via` calls it through a pointer kept in a
    // persistent global.
    let image = |tag: &str, n: i32| {
        let code = format!(
            "static int add(int x) {{ return x + {n}; }}\n\
             static int never(int x) {{ return -x; }}\n\
             static void *pick(void) {{ return {n} > 0 ? (void *)add : (void *)never; }}\n\
             int chosen(int x) __attribute__((ifunc(\"pick\")));\n\
             static int (*keep)(int) = chosen;\n\
             int via(int x) {{ return keep(x); }}\n\
             int direct(int x) {{ return chosen(x); }}\n"
        );
        std::fs::read(support::lib_image(d, tag, &code)).unwrap()
    };
    let (v1, v2) = (image("v1", 1), image("v2", 100));
    let app = d.join("app.hcr");
    support::install(&app, &v1);
    let rt = Runtime::open_with(&app, &support::small_window()).expect("open");
    type IntFn = extern "C" fn(i32) -> i32;
    // SAFETY: all three are `int (int)` in both images.
    let (chosen, via, direct) = unsafe {
        (
            rt.get_proc::<IntFn>("lib", "chosen").expect("chosen"),
            rt.get_proc::<IntFn>("lib", "via").expect("via"),
            rt.get_proc::<IntFn>("lib", "direct").expect("direct"),
        )
    };
    assert_eq!((chosen(1), via(1), direct(1)), (2, 2, 2));
    support::install(&app, &v2);
    assert_eq!(rt.reload().expect("reload"), 1);
    assert_eq!((chosen(1), via(1), direct(1)), (101, 101, 101));
    support::install(&app, &v1);
    assert_eq!(rt.reload().expect("reload"), 1);
    assert_eq!((chosen(1), via(1), direct(1)), (2, 2, 2));
}
