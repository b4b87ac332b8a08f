//! A large first load (its segments read in pieces and its modules
//! relocated, shared with the helper thread when it runs; its crash table
//! built by that thread; 8 300 trampolines registered at once) gives every
//! function the address and the behaviour of the same code in a shared
//! object, and a reload that changes every module retargets all of them.

use std::ffi::CString;

use hcr_runtime::Runtime;
use hcr_tools::gen::{self, Shape};

mod support;

const SHAPE: Shape = Shape {
    modules: 16,
    functions: 520,
    globals: 2,
};

/// `module`'s function `name` in the shared object `h`.
fn dl_fn(h: *mut libc::c_void, name: &str) -> extern "C" fn(i32) -> i32 {
    let c = CString::new(name).unwrap();
    // SAFETY: `h` is a live handle; the symbol is a generated `int f(int)`.
    unsafe {
        let p = libc::dlsym(h, c.as_ptr());
        assert!(!p.is_null(), "{name} missing from the shared object");
        std::mem::transmute::<*mut libc::c_void, extern "C" fn(i32) -> i32>(p)
    }
}

#[test]
fn a_large_first_load_runs_every_function_and_reloads_them_all() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    // -O0: big code from little compile time.
    let mut objs = vec![gen::compile(dir, "main", &gen::main_source(SHAPE), "-O0").unwrap()];
    let mut changed = objs.clone();
    let vdir = dir.join("variant");
    std::fs::create_dir_all(&vdir).unwrap();
    for i in 0..SHAPE.modules {
        let name = format!("m{i}");
        objs.push(gen::compile(dir, &name, &gen::module_source(SHAPE, i, 0), "-O0").unwrap());
        let src = gen::module_source(SHAPE, i, 1);
        changed.push(gen::compile(&vdir, &name, &src, "-O0").unwrap());
    }
    let cfg = hcr_linker::LinkConfig::default();
    let a = hcr_linker::link_bytes(&cfg, &objs).unwrap().bytes;
    let b = hcr_linker::link_bytes(&cfg, &changed).unwrap().bytes;
    let so = dir.join("libsame.so");
    let out = std::process::Command::new("cc")
        .arg("-shared")
        .arg("-o")
        .arg(&so)
        .args(&objs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let so_c = CString::new(so.to_str().unwrap()).unwrap();
    // SAFETY: our own generated library, without constructors.
    let h = unsafe { libc::dlopen(so_c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!h.is_null());

    let app = dir.join("app.hcr");
    support::install(&app, &a);
    let rt = Runtime::open(&app).unwrap();
    // The manifest's leased mapping is released once the load is over, by
    // the thread that prepares reloads: a writer is let in, and nothing of
    // the file stays mapped.
    let released = (0..300).any(|_| {
        use std::os::unix::fs::OpenOptionsExt;
        let writable = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&app)
            .is_ok();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        if writable && !maps.contains(app.to_str().unwrap()) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        false
    });
    assert!(released, "the image's lease or mapping outlived the load");
    let work = rt.last_reload_work();
    assert_eq!(work.modules_loaded, SHAPE.modules + 1, "{work:?}");
    assert!(work.bytes_relocated >= 2 << 20, "{work:?}");
    assert!(work.pieces_read > 2, "read in pieces: {work:?}");
    // Enough fixups for the loader to share them out by module.
    assert!(work.fixups_applied >= 32_768, "{work:?}");
    let mut seen = std::collections::HashSet::new();
    // The same calls, in the same order, in both: the same results (the
    // functions count their calls in a static, so the order matters).
    for x in [3, 0, 1, 2, 4, 5, 6, 7, 9] {
        for i in 0..SHAPE.modules {
            for k in 0..SHAPE.functions {
                let name = format!("m{i}_f{k}");
                // SAFETY: a generated `int f(int)`.
                let f: extern "C" fn(i32) -> i32 =
                    unsafe { rt.get_proc(&format!("m{i}"), &name) }.unwrap();
                if x == 3 {
                    assert!(seen.insert(f as usize), "{name}: address shared");
                }
                assert_eq!(f(x), dl_fn(h, &name)(x), "{name}({x})");
            }
        }
    }
    // SAFETY: the generated entry point.
    let entry: extern "C" fn(i32) -> i32 = unsafe { rt.get_proc("main", "bench_entry") }.unwrap();
    assert_eq!(entry(5), dl_fn(h, "bench_entry")(5));

    // Every module but `main` changed: every permanent address runs the
    // new code (`f(0)` returns the function's number plus the variant).
    support::install(&app, &b);
    assert_eq!(rt.reload().unwrap(), SHAPE.modules);
    let work = rt.last_reload_work();
    assert_eq!(work.modules_loaded, SHAPE.modules, "{work:?}");
    // Each module's functions and its `m{i}_name`.
    assert_eq!(work.slots_retargeted, SHAPE.modules * (SHAPE.functions + 1));
    for i in 0..SHAPE.modules {
        for k in 0..SHAPE.functions {
            // SAFETY: as above.
            let f: extern "C" fn(i32) -> i32 =
                unsafe { rt.get_proc(&format!("m{i}"), &format!("m{i}_f{k}")) }.unwrap();
            assert_eq!(f(0), k as i32 + 1, "m{i}_f{k}");
        }
    }
    std::mem::forget(rt);
}

/// `HCR_LOAD_PHASES=1` prints one line on stderr once the program is
/// loaded: the first load's time and each phase's own, in load order, the
/// phases adding up to no more than the whole; without it, nothing.
#[test]
fn load_phases_are_printed_when_asked() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let main = support::module(
        dir,
        "main",
        "#include <stdio.h>\nint twice(int);\nint main(void) { printf(\"%d\\n\", twice(21)); return 0; }\n",
        "-O1",
    );
    let lib = support::module(dir, "lib", "int twice(int x) { return 2 * x; }\n", "-O1");
    let image = dir.join("app.hcr");
    support::link_ok(&image, &[main, lib]);
    let run = |phases: Option<&str>| {
        let mut cmd = support::hcr_command();
        cmd.arg("run").arg(&image).env_remove("HCR_LOAD_PHASES");
        if let Some(v) = phases {
            cmd.env("HCR_LOAD_PHASES", v);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(Some("1"));
    let prefix = format!("hcr: first load of {}: ", image.display());
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("hcr: first load"))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    let rest = lines[0]
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{err}"));
    let (total, phases) = rest.split_once(" ms (").unwrap();
    let total: f64 = total.parse().unwrap();
    let phases: Vec<(&str, f64)> = (phases.strip_suffix(')').unwrap().split(", "))
        .map(|p| {
            let (name, ms) = p.rsplit_once(' ').unwrap();
            (name, ms.parse().unwrap())
        })
        .collect();
    let names: Vec<&str> = phases.iter().map(|p| p.0).collect();
    for (a, b) in [
        ("setup", "manifest"),
        ("manifest", "decode"),
        ("decode", "relocate"),
        ("relocate", "publish"),
        ("publish", "constructors"),
    ] {
        let at = |n: &str| names.iter().position(|&x| x == n);
        assert!(
            at(a) < at(b) && at(a).is_some(),
            "{a} before {b}: {names:?}"
        );
    }
    let sum: f64 = phases.iter().map(|p| p.1).sum();
    assert!(
        total > 0.0 && sum <= total + 0.01,
        "{sum} of {total}: {err}"
    );
    for off in [None, Some("0")] {
        let err = run(off);
        assert!(!err.contains("hcr: first load"), "{err}");
    }
}
