//! A file image is written in two parts: what precedes the host symbols
//! (load area, initial bytes, constructor tables, relocation sections, the
//! modules' symbols) while the manifest is still being built, the rest
//! after it. The file must hold exactly the bytes of the image built in
//! memory in one piece.

mod support;

#[test]
fn an_image_written_in_two_parts_is_the_image_built_in_one() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // Modules that call each other, keep globals and debug information,
    // plus one with a constructor, a destructor and a host call.
    let shape = hcr_tools::gen::Shape {
        modules: 12,
        functions: 6,
        globals: 3,
    };
    let mut objs = hcr_tools::gen::generate(d, shape, "-O1").unwrap();
    let src = d.join("ctor.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\n\
         int ctor_ran;\n\
         __attribute__((constructor)) static void up(void) { ctor_ran = 1; }\n\
         __attribute__((destructor)) static void down(void) { puts(\"down\"); }\n\
         int ctor_value(void) { return ctor_ran; }\n",
    )
    .unwrap();
    let obj = d.join("ctor.o");
    support::compile(&src, &obj, "-O1", &["-g"]);
    objs.push(obj);

    let cfg = hcr_linker::LinkConfig::default();
    let in_memory = hcr_linker::link_bytes(&cfg, &objs).unwrap().bytes;
    let image = d.join("app.hcr");
    hcr_linker::link(&cfg, &objs, &image).unwrap();
    let on_disk = std::fs::read(&image).unwrap();
    assert_eq!(on_disk.len(), in_memory.len());
    let first_difference = on_disk.iter().zip(&in_memory).position(|(a, b)| a != b);
    assert_eq!(
        first_difference, None,
        "the file differs from the image built in memory"
    );
    // And it loads and runs.
    let out = support::run(&image);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
