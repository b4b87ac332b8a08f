//! A first load whose segments fail to verify is refused with the module's
//! name, and leaves nothing behind: a first load reads its segments while
//! it works out the registry and makes the trampolines (ARCHITECTURE.md,
//! "Reading the image"), and a read that fails must undo that work too, so
//! the next load in the same process starts clean.

use hcr_runtime::Runtime;
use hcr_tools::gen::{self, Shape};

mod support;

/// Large enough that the segments are read in pieces shared with the
/// helper thread (more than 2 MiB of load area at `-O0`).
const SHAPE: Shape = Shape {
    modules: 16,
    functions: 520,
    globals: 2,
};

#[test]
fn a_first_load_with_a_damaged_segment_is_refused_and_the_next_load_works() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let mut objs = vec![gen::compile(dir, "main", &gen::main_source(SHAPE), "-O0").unwrap()];
    for i in 0..SHAPE.modules {
        let src = gen::module_source(SHAPE, i, 0);
        objs.push(gen::compile(dir, &format!("m{i}"), &src, "-O0").unwrap());
    }
    let good = hcr_linker::link_bytes(&hcr_linker::LinkConfig::default(), &objs)
        .unwrap()
        .bytes;
    let view = hcr_image::ImageView::parse(&good).unwrap();
    assert!(
        view.header.area_file_size > 2 << 20,
        "the area must be large enough to be read by two threads"
    );
    // One byte in the middle of module m9's segment.
    let victim = (0..view.manifest.modules.len())
        .find(|&i| view.manifest.str(view.manifest.modules[i].name) == "m9")
        .expect("module m9");
    let seg = view.manifest.modules[victim].seg;
    let at = (view.header.area_file_offset + u64::from(seg.start + seg.len() / 2)) as usize;
    let mut bad = good.clone();
    bad[at] ^= 0x20;

    // In place, as a build writes it, so the load takes the path that
    // maps the manifest; and by copy, with the file open for writing (no
    // lease is granted then).
    let app = dir.join("app.hcr");
    std::fs::write(&app, &bad).unwrap();
    let err = match Runtime::open(&app) {
        Ok(_) => panic!("a damaged segment was loaded"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("m9"), "the error names the module: {err}");
    assert!(err.contains("checksum"), "the error says why: {err}");
    let writer = std::fs::OpenOptions::new().append(true).open(&app).unwrap();
    let err = match Runtime::open(&app) {
        Ok(_) => panic!("a damaged segment was loaded (copied)"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("m9") && err.contains("checksum"), "{err}");
    drop(writer);

    // The same process loads the sound image and runs it: the failed
    // loads left no state, trampolines or window chunk in its way.
    std::fs::write(&app, &good).unwrap();
    let rt = Runtime::open(&app).expect("the sound image loads after the refused ones");
    // SAFETY: a generated `int f(int)` of the loaded image.
    let f: extern "C" fn(i32) -> i32 = unsafe { rt.get_proc("m3", "m3_f7") }.unwrap();
    assert_eq!(f(0), 7, "f(0) is the function's number (variant 0)");
    assert_eq!(rt.generation(), 0);
    std::mem::forget(rt);
}
