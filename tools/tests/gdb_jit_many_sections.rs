//! An image of more than 65 279 sections (a large program built with
//! `-ffunction-sections -fdata-sections`) uses ELF's extended section
//! numbering: the count and the name table's index are in section header 0.
//! Its debug information still reaches debuggers and crash reports. One
//! runtime per process: one test.

mod support;

#[test]
fn debug_information_of_an_image_with_extended_section_numbering() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    // 66 000 initialised globals: a section each.
    let mut src = String::with_capacity(1 << 20);
    for i in 0..66_000 {
        src.push_str(&format!("int g{i} = {i};\n"));
    }
    src.push_str("int sum(void) { return g0 + g65999; }\n");
    src.push_str("int boom(volatile int *p) { return *p; }\n");
    src.push_str("int main(int argc, char **argv) { (void)argv; return argc > 1 ? boom(0) : sum() - 65999; }\n");
    let c = dir.join("main.c");
    std::fs::write(&c, src).unwrap();
    let o = dir.join("main.o");
    support::compile(&c, &o, "-O1", &["-g"]);
    let img = dir.join("app.hcr");
    support::link_ok(&img, &[o]);
    let shnum = u16::from_le_bytes(std::fs::read(&img).unwrap()[60..62].try_into().unwrap());
    assert_eq!(shnum, 0, "the image should use extended section numbering");

    std::env::set_var("HCR_GDB_JIT", "1");
    let rt = hcr_runtime::Runtime::open(&img).expect("load");
    let objs = support::image_jit_objects();
    assert_eq!(objs.len(), 1);
    let readelf = |args: &[&str]| support::readelf(args, &objs[0], dir);
    let sections = readelf(&["-W", "-S"]);
    for s in [".debug_info", ".debug_line"] {
        assert!(
            sections.contains(&format!(" {s} ")),
            "{s} missing:\n{sections}"
        );
    }
    // The function's debug entry is there, at its run-time address.
    let info = readelf(&["--debug-dump=info"]);
    assert!(info.contains(": sum"), "no DWARF entry for sum");
    // SAFETY: `sum` is `int (void)`.
    let sum = unsafe { rt.get_proc::<extern "C" fn() -> i32>("main", "sum") }.expect("sum");
    assert_eq!(sum(), 65_999);

    // A crash names the line, as in a small image.
    let out = support::hcr_command()
        .arg("run")
        .arg(&img)
        .args(["--", "crash"])
        .env_remove("HCR_GDB_JIT")
        .output()
        .expect("hcr run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("hcr: crash: SIGSEGV in main:boom (main.c:66002)"),
        "{err}"
    );
}
