//! A reload costs what changed, not what exists: the same one-module change
//! in a program and in one ten times larger loads, reads, relocates and
//! retargets the same amount; only the count of kept modules grows.
//!
//! The runtime is one per process, so each program size runs in a child
//! process (this test binary again) that prints its work counters.

mod support;

use std::path::Path;
use std::process::Command;

use hcr_runtime::{ReloadWork, Runtime};
use hcr_tools::gen::{self, Shape};

const CHILD: &str = "HCR_RELOAD_COST_MODULES";

/// Builds a program of `modules` generated modules and a second image of it
/// with module `modules / 2` changed; loads the first, reloads into the
/// second and back, and returns the work of both reloads.
fn measure(dir: &Path, modules: usize) -> (ReloadWork, ReloadWork, usize) {
    let shape = Shape {
        modules,
        functions: 4,
        globals: 3,
    };
    let mut objs = vec![gen::compile(dir, "main", &gen::main_source(shape), "-O2").unwrap()];
    for i in 0..modules {
        let src = gen::module_source(shape, i, 0);
        objs.push(gen::compile(dir, &format!("m{i}"), &src, "-O2").unwrap());
    }
    let cfg = hcr_linker::LinkConfig::default();
    let a = hcr_linker::link_bytes(&cfg, &objs).unwrap().bytes;
    let vdir = dir.join("variant");
    std::fs::create_dir_all(&vdir).unwrap();
    let changed = modules / 2;
    let src = gen::module_source(shape, changed, 1);
    objs[changed + 1] = gen::compile(&vdir, &format!("m{changed}"), &src, "-O2").unwrap();
    let b = hcr_linker::link_bytes(&cfg, &objs).unwrap().bytes;
    let app = dir.join("app.hcr");
    let put = |bytes: &[u8]| support::install(&app, bytes);
    put(&a);
    let rt = Runtime::open(&app).unwrap();
    let first = rt.last_reload_work();
    assert_eq!(first.modules_loaded, modules + 1, "{first:?}");
    put(&b);
    assert_eq!(rt.reload().unwrap(), 1);
    let there = rt.last_reload_work();
    put(&a);
    assert_eq!(rt.reload().unwrap(), 1);
    let back = rt.last_reload_work();
    std::mem::forget(rt);
    (there, back, first.bytes_relocated as usize)
}

fn child(modules: usize) {
    let t = tempfile::tempdir().unwrap();
    let (there, back, first) = measure(t.path(), modules);
    println!(
        "WORK {} {} {} {} {} {} {} {} {} {}",
        there.modules_loaded,
        there.modules_kept,
        there.bytes_relocated,
        there.fixups_applied,
        there.slots_retargeted,
        back.modules_loaded,
        back.bytes_relocated,
        first,
        there.records_decoded,
        there.blocks_decoded,
    );
}

fn run(modules: usize) -> Vec<u64> {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_reload_does_the_work_of_the_change",
            "--nocapture",
        ])
        .env(CHILD, modules.to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("WORK "))
        .unwrap_or_else(|| panic!("{text}\n{}", String::from_utf8_lossy(&out.stderr)));
    line.split(' ').map(|w| w.parse().unwrap()).collect()
}

#[test]
fn a_reload_does_the_work_of_the_change() {
    if let Some(n) = std::env::var(CHILD).ok().and_then(|v| v.parse().ok()) {
        child(n);
        return;
    }
    let small = run(20);
    let large = run(200);
    let (loaded, kept, bytes, fixups, slots) = (0, 1, 2, 3, 4);
    // The changed module and the modules that refer into it (the two
    // before it call it and read its globals): the same in both programs.
    assert!(small[loaded] >= 1 && small[loaded] <= 3, "{small:?}");
    assert_eq!(small[loaded], large[loaded], "{small:?} {large:?}");
    assert_eq!(small[fixups], large[fixups], "{small:?} {large:?}");
    assert_eq!(small[slots], large[slots], "{small:?} {large:?}");
    // Same code, so about the same bytes (names differ in length only in
    // the symbol tables, which are not loaded).
    assert!(large[bytes] <= small[bytes] * 3 / 2, "{small:?} {large:?}");
    // The rest stays where it is.
    assert_eq!(small[kept] + small[loaded], 21, "{small:?}");
    assert_eq!(large[kept] + large[loaded], 201, "{large:?}");
    // Reloading back is the same work again.
    assert_eq!(large[5], large[loaded], "{large:?}");
    assert!(large[6] <= large[7] / 20, "{large:?}");
    // Only the changed module's record is read and decoded; blocks only
    // for the modules loaded.
    let (records, blocks) = (8, 9);
    assert_eq!(small[records], 1, "{small:?}");
    assert_eq!(large[records], 1, "{large:?}");
    assert_eq!(small[blocks], small[loaded], "{small:?}");
    assert_eq!(large[blocks], large[loaded], "{large:?}");
}
