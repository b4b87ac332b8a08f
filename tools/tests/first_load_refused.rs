//! A load whose segments fail to verify, or cannot be relocated, is
//! refused with the module's name, and leaves nothing behind: a load that
//! keeps no segment (a first load, or a reload that changes every module)
//! reads and relocates its segments while it works out the registry, makes
//! the trampolines and places the globals (ARCHITECTURE.md, "The helper
//! thread"), and a read that fails must undo that work too.

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

/// The program in `variant` (every module's code differs between
/// variants, `main`'s included), linked.
fn program(dir: &std::path::Path, variant: u32) -> Vec<u8> {
    let dir = dir.join(format!("v{variant}"));
    std::fs::create_dir_all(&dir).unwrap();
    let main = format!(
        "{}\nint main_variant(void) {{ return {variant}; }}\n",
        gen::main_source(SHAPE)
    );
    let mut objs = vec![gen::compile(&dir, "main", &main, "-O0").unwrap()];
    for i in 0..SHAPE.modules {
        let src = gen::module_source(SHAPE, i, variant);
        objs.push(gen::compile(&dir, &format!("m{i}"), &src, "-O0").unwrap());
    }
    hcr_linker::link_bytes(&hcr_linker::LinkConfig::default(), &objs)
        .unwrap()
        .bytes
}

/// The index of module m9 in `view`, the module these tests spoil.
fn victim(view: &hcr_image::ImageView<'_>) -> usize {
    let m = &view.manifest;
    (0..m.modules.len())
        .find(|&i| m.str(m.modules[i].name) == "m9")
        .expect("module m9")
}

/// `image` with one byte in the middle of module m9's segment flipped.
fn damaged(image: &[u8]) -> Vec<u8> {
    let view = hcr_image::ImageView::parse(image).unwrap();
    assert!(
        view.header.area_file_size > 2 << 20,
        "the area must be large enough to be read by two threads"
    );
    let seg = view.manifest.modules[victim(&view)].seg;
    let at = (view.header.area_file_offset + u64::from(seg.start + seg.len() / 2)) as usize;
    let mut bad = image.to_vec();
    bad[at] ^= 0x20;
    bad
}

/// `image` with one of module m9's calls made a 32-bit absolute fixup: a
/// sound image (checksums resealed) whose segment cannot be relocated (no
/// address in the window fits 32 bits).
fn unrelocatable(image: &[u8]) -> Vec<u8> {
    let view = hcr_image::ImageView::parse(image).unwrap();
    let fixups = view.module_fixups(victim(&view));
    let call = fixups
        .chunks_exact(hcr_image::FIXUP_SIZE)
        .position(|r| r[12] == hcr_image::FixupKind::Pc32 as u8 && r[13] == 1)
        .expect("a call through a trampoline in m9");
    let at = fixups.as_ptr() as usize - image.as_ptr() as usize + call * hcr_image::FIXUP_SIZE;
    let mut bad = image.to_vec();
    bad[at + 12] = hcr_image::FixupKind::Abs32 as u8;
    hcr_image::reseal(&mut bad).unwrap();
    bad
}

/// `image` whose manifest header claims a load area running to the end
/// of the file (the header is outside the checksums; the manifest's own
/// layout still says the true size).
fn oversized_header(image: &[u8]) -> Vec<u8> {
    let view = hcr_image::ImageView::parse(image).unwrap();
    let claimed = image.len() as u64 - view.header.area_file_offset;
    assert!(claimed > view.header.area_file_size + (4 << 20));
    let header = hcr_image::manifest_offset(image).unwrap() as usize;
    let mut bad = image.to_vec();
    // (Magic 8, version 4, header size 4, checksum 8, body length 8,
    // area offset 8, then the area's size.)
    let at = header + 40;
    assert_eq!(
        bad[at..at + 8],
        view.header.area_file_size.to_le_bytes(),
        "the header's layout"
    );
    bad[at..at + 8].copy_from_slice(&claimed.to_le_bytes());
    bad
}

#[test]
fn a_load_that_fails_to_verify_or_relocate_is_refused_and_leaves_nothing_behind() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let good = program(dir, 0);
    let bad = damaged(&good);

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

    // Segments are relocated as they are read (by whichever thread reads
    // them, once the tables are bound) or right after the read: a failure
    // either way undoes the trampolines, the globals placed and the chunk.
    std::fs::write(&app, unrelocatable(&good)).unwrap();
    let err = match Runtime::open(&app) {
        Ok(_) => panic!("an unrelocatable segment was loaded"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("module m9") && err.contains("out of reach"),
        "the error names the module and says why: {err}"
    );

    // A header claiming a larger area than the manifest does (the area's
    // chunk is allocated from the header before the manifest is read, and
    // its huge pages faulted in meanwhile): refused by the manifest.
    std::fs::write(&app, oversized_header(&good)).unwrap();
    let err = match Runtime::open(&app) {
        Ok(_) => panic!("an image whose header disagrees with its manifest was loaded"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("load area size is inconsistent"),
        "the error says why: {err}"
    );

    // The same process loads the sound image and runs it: the failed
    // loads left no state, trampolines or window chunk in its way.
    std::fs::write(&app, &good).unwrap();
    let rt = Runtime::open(&app).expect("the sound image loads after the refused ones");
    // SAFETY: a generated `int f(int)` of the loaded image.
    let f: extern "C" fn(i32) -> i32 = unsafe { rt.get_proc("m3", "m3_f7") }.unwrap();
    assert_eq!(f(0), 7, "f(0) is the function's number plus the variant");
    assert_eq!(rt.generation(), 0);

    // A reload that changes every module reads its segments the same way
    // (nothing is kept); refused, it leaves the live state as it was: no
    // window chunk, trampoline or registry entry of it stays.
    refused_then_reloaded(
        &rt,
        &app,
        (damaged, &["m9", "checksum"]),
        program(dir, 1),
        1,
    );

    // A segment that cannot be relocated, in a reload that changes every
    // module: refused the same way.
    let reason: &[&str] = &["module m9", "out of reach"];
    refused_then_reloaded(&rt, &app, (unrelocatable, reason), program(dir, 2), 2);
    std::mem::forget(rt);
}

/// What spoils a sound image, and words of the error it must give.
type Spoil<'a> = (fn(&[u8]) -> Vec<u8>, &'a [&'a str]);

/// Installs `spoil(next)` at `app` and checks that the reload is refused
/// with an error holding every word of `reason`, leaving the live state as
/// it was (no window chunk, trampoline or registry entry of it stays, the
/// old code runs on); then installs `next`, image `variant`, and checks
/// that it reloads every module and runs.
fn refused_then_reloaded(
    rt: &Runtime,
    app: &std::path::Path,
    (spoil, reason): Spoil<'_>,
    next: Vec<u8>,
    variant: i32,
) {
    // SAFETY: a generated `int f(int)` of the loaded image.
    let f: extern "C" fn(i32) -> i32 = unsafe { rt.get_proc("m3", "m3_f7") }.unwrap();
    let before = (rt.stats(), rt.generation(), f(0));
    support::install(app, &spoil(&next));
    let err = rt
        .reload()
        .expect_err("a spoiled image was reloaded")
        .to_string();
    assert!(reason.iter().all(|w| err.contains(w)), "{err}");
    let after = rt.stats();
    assert_eq!(
        (after.window_free, after.functions, after.globals),
        (before.0.window_free, before.0.functions, before.0.globals),
        "the refused reload left something behind"
    );
    assert_eq!(
        (rt.generation(), f(0)),
        (before.1, before.2),
        "the old code runs on"
    );
    support::install(app, &next);
    assert_eq!(
        rt.reload().expect("the sound image reloads"),
        SHAPE.modules + 1
    );
    // SAFETY: as above, in the image just loaded.
    let f: extern "C" fn(i32) -> i32 = unsafe { rt.get_proc("m3", "m3_f7") }.unwrap();
    assert_eq!(
        (rt.generation(), f(0)),
        (variant as u32, 7 + variant),
        "the new variant runs"
    );
}
