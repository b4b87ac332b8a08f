//! The objects the runtime registers with debuggers (GDB JIT interface), as
//! `readelf` sees them: sections at run-time addresses, a symbol for every
//! module function and persistent global (at its persistent address), the
//! relocated debug information; one object per mapped image, unregistered
//! when the image is freed and at shutdown. One runtime per process: one
//! test.

mod support;

use std::path::Path;

use support::readelf;

fn image(dir: &Path, tag: &str, util: &str, debug: bool) -> std::path::PathBuf {
    let d = dir.join(tag);
    std::fs::create_dir_all(&d).unwrap();
    let extra: &[&str] = if debug { &["-g"] } else { &[] };
    std::fs::write(
        d.join("main.c"),
        "int counter = 7;\nint step(int);\nint main(void) { return step(counter); }\n",
    )
    .unwrap();
    std::fs::write(d.join("util.c"), util).unwrap();
    let (m, u) = (d.join("main.o"), d.join("util.o"));
    support::compile(&d.join("main.c"), &m, "-O1", extra);
    support::compile(&d.join("util.c"), &u, "-O1", extra);
    let img = dir.join(format!("{tag}.hcr"));
    support::link_ok(&img, &[m, u]);
    img
}

#[test]
fn registered_objects_follow_the_loaded_images() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let a = image(dir, "a", "int step(int x) { return x + 1; }\n", true);
    let b = image(dir, "b", "int step(int x) { return x * 3; }\n", true);
    let plain = image(dir, "plain", "int step(int x) { return x - 1; }\n", false);
    let app = dir.join("app.hcr");
    std::fs::copy(&a, &app).unwrap();
    // Without a debugger the runtime registers nothing unless asked.
    std::env::set_var("HCR_GDB_JIT", "1");
    let rt = hcr_runtime::Runtime::open(&app).expect("load");
    let objs = support::image_jit_objects();
    assert_eq!(objs.len(), 1);
    // And the trampolines: a `.plt` section over them (what lets `step`
    // go through one), a `NAME.hcr_trampoline` symbol at each.
    let all = hcr_runtime::gdb_jit::registered_objects();
    let plt: Vec<&Vec<u8>> = all
        .iter()
        .filter(|o| support::is_trampoline_object(o))
        .collect();
    assert_eq!(plt.len(), 1, "one batch of trampolines");
    let plt_sections = readelf(&["-W", "-S"], plt[0], dir);
    assert!(plt_sections.contains(" .plt "), "{plt_sections}");
    let plt_symbols = readelf(&["-W", "-s"], plt[0], dir);
    assert!(
        plt_symbols.contains(" step.hcr_trampoline\n"),
        "{plt_symbols}"
    );

    let sections = readelf(&["-W", "-S"], &objs[0], dir);
    for s in [
        ".text",
        ".eh_frame",
        ".debug_info",
        ".debug_line",
        ".debug_abbrev",
    ] {
        assert!(
            sections.contains(&format!(" {s} ")),
            "{s} missing:\n{sections}"
        );
    }
    let text_line = sections.lines().find(|l| l.contains(" .text ")).unwrap();
    assert!(!text_line.contains(" 0000000000000000 "), "{text_line}");
    let symbols = readelf(&["-W", "-s"], &objs[0], dir);
    assert!(
        symbols.contains(" FUNC ") && symbols.contains(" step\n"),
        "{symbols}"
    );
    assert!(symbols.contains(" main\n"), "{symbols}");
    let counter = rt.get_global("main", "counter").expect("counter") as u64;
    let line = symbols
        .lines()
        .find(|l| l.ends_with(" counter"))
        .unwrap_or_else(|| panic!("no counter symbol:\n{symbols}"));
    assert!(
        line.contains(&format!("{counter:016x}")) && line.contains("OBJECT"),
        "counter not at its persistent address {counter:#x}:\n{line}"
    );
    // The debug information names the persistent address too: the
    // variable's location is DW_OP_addr of the relocated address.
    let info = readelf(&["--debug-dump=info"], &objs[0], dir);
    assert!(
        info.contains(&format!("(DW_OP_addr: {counter:x})")),
        "counter's DWARF location is not its persistent address {counter:#x}:\n{info}"
    );

    // Reloads: the new image is registered, old ones go when freed (at
    // most a few stay while code may still run in them).
    for i in 0..8 {
        std::thread::sleep(std::time::Duration::from_millis(120));
        let src = if i % 2 == 0 { &b } else { &a };
        std::fs::copy(src, dir.join("next.hcr")).unwrap();
        std::fs::rename(dir.join("next.hcr"), &app).unwrap();
        assert!(rt.reload().expect("reload") >= 1);
        let n = support::image_jit_objects().len();
        assert!(
            (1..=4).contains(&n),
            "{n} objects registered after reload {i}"
        );
    }
    // Without -g: symbols and unwind tables only.
    std::fs::copy(&plain, dir.join("next.hcr")).unwrap();
    std::fs::rename(dir.join("next.hcr"), &app).unwrap();
    rt.reload().expect("reload");
    let newest = &support::image_jit_objects()[0];
    let sections = readelf(&["-W", "-S"], newest, dir);
    assert!(
        sections.contains(" .eh_frame ") && !sections.contains(".debug_info"),
        "{sections}"
    );
    let symbols = readelf(&["-W", "-s"], newest, dir);
    assert!(symbols.contains(" step\n"), "{symbols}");

    drop(rt);
    assert_eq!(hcr_runtime::gdb_jit::registered_objects().len(), 0);
}
