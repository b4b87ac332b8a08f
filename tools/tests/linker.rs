//! hcr-link with real objects built by the system `cc`: diagnostics,
//! determinism, atomic output, archives, the import tree, and cross-checks
//! with binutils.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{link, link_ok, module};

fn inspect_json(image: &Path) -> serde_json::Value {
    let o = Command::new(support::hcr_bin())
        .args(["inspect", "--json"])
        .arg(image)
        .output()
        .expect("hcr inspect");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("json")
}

fn compile_with(dir: &Path, name: &str, code: &str, flags: &[&str]) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, code).expect("write");
    let obj = dir.join(format!("{name}.o"));
    let st = Command::new("cc")
        .arg("-c")
        .args(flags)
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .status()
        .expect("cc");
    assert!(st.success());
    obj
}

const SECTIONED: &[&str] = &["-fPIC", "-ffunction-sections", "-fdata-sections", "-O2"];

/// Links `inputs` into `image`, which must be refused (no image written)
/// with every one of `wanted` in its message; returns the message.
fn refused(image: &Path, inputs: &[PathBuf], wanted: &[&str]) -> String {
    let out = link(image, inputs);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    for want in wanted {
        assert!(err.contains(want), "{want:?} not in:\n{err}");
    }
    assert!(!image.exists());
    err
}

#[test]
fn every_diagnostic_names_file_module_symbol_and_fix() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            compile_with(d, "nopic", "#include <stdio.h>\nint get(void){ fputs(\"x\", stderr); return 1; }", &["-fno-pic", "-ffunction-sections", "-fdata-sections"]),
            "nopic.o (module nopic): PC-relative reference to host symbol 'stderr'",
        ),
        (
            compile_with(d, "nofs", "int a1(void){return 1;} int a2(void){return 2;}", &["-fPIC", "-fdata-sections"]),
            "nofs.o (module nofs): 2 functions share one code section (built without -ffunction-sections)",
        ),
        (
            compile_with(d, "nods", "int x1 = 1, x2 = 2; int *px(void){return &x1;} int *py(void){return &x2;}", &["-fPIC", "-ffunction-sections"]),
            "nods.o (module nods): 2 variables share one data section (built without -fdata-sections)",
        ),
        (
            // Static variables, reached through the section's symbol: the
            // references name the section's variables.
            compile_with(d, "nods2", "static int alpha = 1; static int beta = 2; int get2(void){ return alpha++ + beta++; }", &["-fPIC", "-ffunction-sections", "-O2"]),
            "nods2.o (module nods2): reference to a variable of .data (alpha, beta) in a data section that holds several variables",
        ),
        (
            compile_with(d, "lto", "int lto_f(void){return 1;}", &["-fPIC", "-flto", "-ffunction-sections", "-fdata-sections"]),
            "lto.o (module lto): LTO object",
        ),
        (
            compile_with(d, "tlsie", "__thread int tv_ie; int tget(void){return tv_ie;}", &["-fno-pic", "-ffunction-sections", "-fdata-sections"]),
            "(module tlsie): thread-local variable in the initial-exec or local-exec model",
        ),
        (
            compile_with(d, "tlsie2", "__thread int tv_ie2; int tget2(void){return tv_ie2;}", &["-fPIC", "-ftls-model=initial-exec", "-ffunction-sections", "-fdata-sections"]),
            "(module tlsie2): thread-local variable in the initial-exec or local-exec model (R_X86_64_GOTTPOFF), which only ld.so can serve: 'tv_ie2 (in .text.tget2",
        ),
        (
            compile_with(d, "dup1", "int dup_fn(void){return 1;}", SECTIONED),
            "",
        ),
        (
            compile_with(d, "dup2", "int dup_fn(void){return 2;}", SECTIONED),
            "dup2.o (module dup2): duplicate definition (first defined in",
        ),
    ];
    let out = d.join("app.hcr");
    let inputs: Vec<PathBuf> = cases.iter().map(|c| c.0.clone()).collect();
    let o = link(&out, &inputs);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    for (_, want) in &cases {
        assert!(err.contains(want), "missing diagnostic {want:?} in:\n{err}");
    }
    assert!(err.contains("help: compile with -fPIC"), "{err}");
    assert!(
        err.contains("help: compile with -ffunction-sections"),
        "{err}"
    );
    assert!(err.contains("'dup_fn'"), "{err}");
    assert!(err.contains("no image written"), "{err}");
    assert!(!out.exists(), "an image was written despite errors");
}

/// An object given twice is one clear error, not a duplicate definition
/// for each of its symbols; two objects with one stem keep their own message.
#[test]
fn an_object_given_twice_is_said_once() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let a = compile_with(
        d,
        "twice",
        "int t1(void){return 1;} int t2(void){return 2;}",
        SECTIONED,
    );
    let main = module(
        d,
        "main",
        "int t1(void); int main(void){return t1();}",
        "-O2",
    );
    let sub = d.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    let other = compile_with(&sub, "twice", "int t3(void){return 3;}", SECTIONED);
    let out = d.join("app.hcr");
    let given_twice = format!("{} is given twice", a.display());
    let err = refused(
        &out,
        &[main.clone(), a.clone(), a.clone()],
        &[
            &given_twice,
            "help: give each object once",
            "no image written",
        ],
    );
    assert!(!err.contains("duplicate definition"), "{err}");
    assert_eq!(err.matches("error:").count(), 1, "{err}");
    refused(
        &out,
        &[main, a, other],
        &["module name 'twice' is also the name of"],
    );
}

#[test]
fn malformed_inputs_are_refused_cleanly() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let good = module(d, "good", "int g(void){return 1;}", "-O2");
    let bytes = std::fs::read(&good).unwrap();
    let write = |name: &str, b: &[u8]| {
        let p = d.join(name);
        std::fs::write(&p, b).unwrap();
        p
    };
    let mut class32 = bytes.clone();
    class32[4] = 1;
    let mut arm = bytes.clone();
    arm[18] = 183; // EM_AARCH64
    let mut exec = bytes.clone();
    exec[16] = 2; // ET_EXEC
    let mut bad_shoff = bytes.clone();
    bad_shoff[40..48].copy_from_slice(&u64::MAX.to_le_bytes());
    let cases = [
        (
            write("text.o", b"hello, not an object\n"),
            "not an ELF object file",
        ),
        (write("empty.o", b""), "not an ELF object file"),
        (write("short.o", &bytes[..40]), "truncated ELF header"),
        (write("class32.o", &class32), "ELF class is 32-bit"),
        (write("arm.o", &arm), "wrong machine 183"),
        (write("exec.o", &exec), "not a relocatable object"),
        (
            write("trunc.o", &bytes[..bytes.len() / 2]),
            "trunc.o (module trunc)",
        ),
        (
            write("shoff.o", &bad_shoff),
            "shoff.o (module shoff): malformed section table",
        ),
    ];
    for (p, want) in &cases {
        let out = d.join("x.hcr");
        let o = link(&out, std::slice::from_ref(p));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{}: {err}", p.display());
        assert!(
            err.contains(want),
            "{}: want {want:?} in {err}",
            p.display()
        );
        assert!(!out.exists());
    }
    let missing = link(&d.join("y.hcr"), &[d.join("does-not-exist.o")]);
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("does-not-exist.o (module does-not-exist): cannot read input"),
        "{err}"
    );
}

#[test]
fn truncated_and_bit_flipped_objects_never_panic() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let src = "#include <stdio.h>\nstatic int s = 3; int g = 4; static const char *msg = \"hi\";\n\
               int f(int x){ switch(x){case 0:return s; case 1:return g; case 2: return 7; case 3: return 9; default: puts(msg); return 1;} }\n\
               int (*fp)(int) = f;";
    let obj = module(d, "victim", src, "-O2");
    let bytes = std::fs::read(&obj).unwrap();
    let cfg = hcr_linker::LinkConfig::default();
    let p = d.join("mut.o");
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let step = (bytes.len() / 97).max(1);
    for cut in (0..bytes.len()).step_by(step) {
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let _ = hcr_linker::link_bytes(&cfg, std::slice::from_ref(&p));
    }
    for _ in 0..400 {
        let mut b = bytes.clone();
        for _ in 0..(1 + next() % 4) {
            let i = (next() % b.len() as u64) as usize;
            b[i] ^= 1 << (next() % 8);
        }
        std::fs::write(&p, &b).unwrap();
        // Linking may succeed or fail; it must not panic or hang.
        let _ = hcr_linker::link_bytes(&cfg, std::slice::from_ref(&p));
    }
}

fn sample_program(d: &Path, opt: &str) -> Vec<PathBuf> {
    vec![
        module(
            d,
            "main",
            "#include <stdio.h>\nint get_b(void); int get_c(void);\nstatic int helper(void){return 1;}\n\
             int main(void){ printf(\"%d\\n\", get_b() + get_c() + helper()); return 0; }",
            opt,
        ),
        module(d, "b", "int get_c(void); static int helper(void){return 10;} int get_b(void){return helper() + get_c();}", opt),
        module(d, "c", "static int helper(void){return 100;} int get_c(void){return helper();}", opt),
        module(d, "lonely", "int lonely(void){return 5;}", opt),
    ]
}

#[test]
fn output_is_deterministic_and_static_helpers_do_not_collide() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let objs = sample_program(d, "-O0");
    let (a, b) = (d.join("a.hcr"), d.join("b.hcr"));
    link_ok(&a, &objs);
    link_ok(&b, &objs);
    assert_eq!(
        std::fs::read(&a).unwrap(),
        std::fs::read(&b).unwrap(),
        "same inputs, different bytes"
    );
    let o = support::run(&a);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "211\n");
}

#[test]
fn a_failed_link_leaves_the_previous_image_intact() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let objs = sample_program(d, "-O2");
    let out = d.join("app.hcr");
    link_ok(&out, &objs);
    let before = std::fs::read(&out).unwrap();
    let bad = d.join("bad.o");
    std::fs::write(&bad, b"garbage").unwrap();
    let mut inputs = objs.clone();
    inputs.push(bad);
    assert!(!link(&out, &inputs).status.success());
    assert_eq!(std::fs::read(&out).unwrap(), before);
    let leftovers: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");
}

#[test]
fn readelf_and_objdump_read_the_image_without_warnings() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let objs = sample_program(d, "-O0");
    let img = d.join("app.hcr");
    link_ok(&img, &objs);
    let re = Command::new("readelf")
        .args(["-a", "-W"])
        .arg(&img)
        .output()
        .expect("readelf");
    assert!(re.status.success());
    assert_eq!(String::from_utf8_lossy(&re.stderr), "", "readelf warnings");
    let text = String::from_utf8_lossy(&re.stdout);
    assert!(text.contains("REL (Relocatable file)"));
    assert!(text.contains(".hcr.manifest"));
    for q in [
        "main:helper",
        "b:helper",
        "c:helper",
        "get_b",
        "get_c",
        "printf",
    ] {
        assert!(text.contains(q), "symbol {q} missing from readelf -s");
    }
    assert!(text.contains("R_X86_64_PLT32"), "relocations not kept");
    let od = Command::new("objdump")
        .args(["-dr"])
        .arg(&img)
        .output()
        .expect("objdump");
    assert!(od.status.success());
    assert_eq!(String::from_utf8_lossy(&od.stderr), "", "objdump warnings");
    let dis = String::from_utf8_lossy(&od.stdout);
    assert!(
        dis.contains("<get_b>:") && dis.contains("<main>:"),
        "functions not disassembled"
    );
}

#[test]
fn import_tree_unreachable_modules_and_undefined_symbols() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let objs = sample_program(d, "-O2");
    let img = d.join("app.hcr");
    link_ok(&img, &objs);
    let j = inspect_json(&img);
    assert_eq!(j["root"], "main");
    assert_eq!(j["init_order"], serde_json::json!(["c", "b", "main"]));
    let m = |n: &str| {
        j["modules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(m("main")["imports"], serde_json::json!(["b", "c"]));
    assert_eq!(m("b")["imports"], serde_json::json!(["c"]));
    assert_eq!(m("lonely")["reachable"], false);
    assert_eq!(m("main")["root"], true);
    assert_eq!(m("main")["undefined"], serde_json::json!(["printf"]));
    assert!(j["plan"]["relocations"].as_u64().unwrap() > 0);
    // --root picks another root.
    let img2 = d.join("b.hcr");
    let o = Command::new(support::hcr_link_bin())
        .arg("-o")
        .arg(&img2)
        .args(["--root", "b"])
        .args(&objs)
        .output()
        .unwrap();
    assert!(o.status.success());
    let j2 = inspect_json(&img2);
    assert_eq!(j2["init_order"], serde_json::json!(["c", "b"]));
    let bad = Command::new(support::hcr_link_bin())
        .arg("-o")
        .arg(d.join("c.hcr"))
        .args(["--root", "nosuch"])
        .args(&objs)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&bad.stderr)
        .contains("--root nosuch: no input module has that name"));
    // The human table names every module and the plan.
    let h = Command::new(support::hcr_bin())
        .arg("inspect")
        .arg(&img)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&h.stdout);
    assert!(
        text.contains("import tree:") && text.contains("unreachable (kept, not loaded): lonely")
    );
    assert!(text.contains("residual fixups"));
}

#[test]
fn archive_members_that_define_referenced_symbols_become_modules() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let objs = sample_program(d, "-O2");
    let unused = module(d, "unused", "int never_called(void){return 0;}", "-O2");
    let lib = d.join("libbc.a");
    let st = Command::new("ar")
        .arg("rcs")
        .arg(&lib)
        .args([&objs[1], &objs[2], &unused])
        .status()
        .expect("ar");
    assert!(st.success());
    let img = d.join("app.hcr");
    link_ok(&img, &[objs[0].clone(), lib.clone()]);
    let j = inspect_json(&img);
    let names: Vec<String> = j["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["main", "b", "c"]);
    assert_eq!(String::from_utf8_lossy(&support::run(&img).stdout), "211\n");
}

/// A static library as distributions and build systems make it: members
/// built without -ffunction-sections or -fdata-sections (several functions
/// in one `.text`, several variables in one `.data`/`.bss`). The members
/// link as modules whose sections are kept whole, and the program behaves
/// as the native build; the same objects given on the command line are
/// still refused, since a module the user edits is reloaded per function.
#[test]
fn archive_members_built_without_per_symbol_sections_link() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let src = |name: &str, code: &str| {
        let p = d.join(name);
        std::fs::write(&p, code).unwrap();
        p
    };
    let counter = src(
        "counter.c",
        "static int hits;\nint total = 100;\n\
         static const char *names[] = {\"zero\", \"one\", \"two\"};\n\
         static int bump_by(int n) { hits += n; total += n; return hits; }\n\
         int bump(void) { return bump_by(1); }\n\
         int hits_now(void) { return hits; }\n\
         const char *name_of(int i) { return names[i % 3]; }\n",
    );
    let fmt = src(
        "fmt.c",
        "#include <stdio.h>\nstatic char buf[64];\nstatic int calls;\nint bump(void);\n\
         const char *describe(int v) { calls++; snprintf(buf, sizeof buf, \"value=%d after=%d calls=%d\", v, bump(), calls); return buf; }\n",
    );
    let main = src(
        "main.c",
        "#include <stdio.h>\nint bump(void); int hits_now(void); extern int total;\n\
         const char *name_of(int); const char *describe(int);\n\
         int main(void) { bump(); bump(); int h = hits_now(); const char *n = name_of(h);\n\
         printf(\"%d %d %s\\n\", h, total, n); printf(\"%s\\n\", describe(7)); printf(\"%s\\n\", describe(8)); return 0; }\n",
    );
    let plain = |c: &Path| {
        let o = c.with_extension("o");
        let st = Command::new("cc")
            .args(["-O2", "-fPIC", "-c"])
            .arg(c)
            .arg("-o")
            .arg(&o)
            .status()
            .expect("cc");
        assert!(st.success());
        o
    };
    let (counter_o, fmt_o) = (plain(&counter), plain(&fmt));
    let lib = d.join("libcnt.a");
    let st = Command::new("ar")
        .arg("rcs")
        .arg(&lib)
        .args([&counter_o, &fmt_o])
        .status()
        .expect("ar");
    assert!(st.success());
    let native = d.join("native");
    let st = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&native)
        .arg(&main)
        .arg(&lib)
        .status()
        .expect("cc");
    assert!(st.success());
    let want = Command::new(&native).output().expect("native").stdout;
    assert_eq!(
        String::from_utf8_lossy(&want),
        "2 102 two\nvalue=7 after=3 calls=1\nvalue=8 after=4 calls=2\n"
    );
    let main_o = d.join("main.o");
    support::compile(&main, &main_o, "-O2", &[]);
    let img = d.join("app.hcr");
    let l = link(&img, &[main_o.clone(), lib]);
    let err = String::from_utf8_lossy(&l.stderr);
    assert!(l.status.success(), "{err}");
    // Said once for the archive, naming the flags and the members.
    assert!(
        err.contains("libcnt.a: members built without -ffunction-sections and -fdata-sections (counter.o, fmt.o)"),
        "{err}"
    );
    assert_eq!(support::run_ok(&img), String::from_utf8_lossy(&want));
    // The same objects as modules of the program: refused with the reason.
    refused(
        &d.join("direct.hcr"),
        &[main_o, counter_o, fmt_o],
        &[
            "counter.o (module counter): 3 functions share one code section",
            "fmt.o (module fmt): 2 variables share one data section",
        ],
    );
}

/// `--coverage` under hcr: gcc's `libgcov.a` (members built without
/// per-symbol sections) links as modules, and the program writes its
/// `.gcda` counts at exit as natively.
#[test]
fn coverage_counts_are_written() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let o = module(
        d,
        "counted",
        "int twice(int x) { return 2 * x; }\nint main(void) { return twice(3) - 6; }\n",
        "-O1",
    );
    // Recompiled with --coverage (the helper's flags plus it).
    support::compile(&d.join("counted.c"), &o, "-O1", &["--coverage"]);
    let img = d.join("app.hcr");
    let l = Command::new(support::hcr_link_bin())
        .arg("-o")
        .arg(&img)
        .arg(&o)
        .args(["-l", "gcov"])
        .output()
        .expect("hcr-link");
    assert!(l.status.success(), "{}", String::from_utf8_lossy(&l.stderr));
    let out = support::run(&img);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(d.join("counted.gcda").exists(), "no counts written");
}

#[test]
fn a_full_disk_leaves_the_previous_image_intact() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let small = sample_program(d, "-O2");
    let big = module(
        d,
        "big",
        "const char big_table[4 << 20] = {1};\nint big(void){ return big_table[7]; }",
        "-O2",
    );
    let mnt = d.join("small-fs");
    std::fs::create_dir(&mnt).unwrap();
    // A 1 MiB filesystem needs root (or CAP_SYS_ADMIN) to mount; elsewhere
    // this condition cannot be staged.
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !mounted {
        eprintln!("skipped: cannot mount a small tmpfs here (not root)");
        return;
    }
    let img = mnt.join("app.hcr");
    let result = std::panic::catch_unwind(|| {
        link_ok(&img, &small);
        let before = std::fs::read(&img).unwrap();
        let mut inputs = small.clone();
        inputs.push(big.clone());
        let o = link(&img, &inputs);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("No space left on device"), "{err}");
        assert_eq!(
            std::fs::read(&img).unwrap(),
            before,
            "the old image changed"
        );
        let left: Vec<_> = std::fs::read_dir(&mnt)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 1, "temporary files left behind: {left:?}");
        assert_eq!(String::from_utf8_lossy(&support::run(&img).stdout), "211\n");
    });
    let _ = Command::new("umount").arg(&mnt).status();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn common_symbols_get_one_storage() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let flags = &[
        "-fPIC",
        "-fcommon",
        "-ffunction-sections",
        "-fdata-sections",
        "-O2",
    ];
    let main = compile_with(
        d,
        "main",
        "#include <stdio.h>\nint shared_common; char bigger_common[4];\nint bump(void);\n\
         int main(void){ shared_common = 5; printf(\"%d %zu\\n\", bump(), sizeof bigger_common); return 0; }",
        flags,
    );
    let b = compile_with(d, "b", "int shared_common; char bigger_common[64];\nint bump(void){ bigger_common[63] = 1; return ++shared_common; }", flags);
    let img = d.join("app.hcr");
    link_ok(&img, &[main, b]);
    assert_eq!(String::from_utf8_lossy(&support::run(&img).stdout), "6 4\n");
    let j = inspect_json(&img);
    let globals: Vec<(String, u64)> = j["modules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["globals"].as_array().unwrap().clone())
        .map(|g| {
            (
                g["name"].as_str().unwrap().to_string(),
                g["size"].as_u64().unwrap(),
            )
        })
        .filter(|(n, _)| n.ends_with("_common"))
        .collect();
    assert_eq!(
        globals.len(),
        2,
        "one object per COMMON symbol: {globals:?}"
    );
    assert!(
        globals.contains(&("bigger_common".to_string(), 64)),
        "the largest size wins: {globals:?}"
    );
}

/// A fat LTO object (`-flto -ffat-lto-objects`) holds machine code beside
/// its IR: it links and runs like a plain object (a slim one is refused,
/// see `every_diagnostic_names_file_module_symbol_and_fix`).
#[test]
fn fat_lto_objects_link_as_plain_ones() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let flags = &[
        "-fPIC",
        "-flto",
        "-ffat-lto-objects",
        "-ffunction-sections",
        "-fdata-sections",
        "-O2",
    ];
    let main = compile_with(
        d,
        "main",
        "#include <stdio.h>\nint twice(int);\nint main(void){ printf(\"%d\\n\", twice(21)); return 0; }",
        flags,
    );
    let lib = compile_with(
        d,
        "lib",
        "static int calls;\nint twice(int x){ calls++; return 2 * x; }",
        flags,
    );
    let img = d.join("app.hcr");
    link_ok(&img, &[main, lib]);
    let out = support::run(&img);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "42\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A COMMON symbol (`int x;` built with `-fcommon`) overrides a weak
/// definition of the same name, whichever comes first, as with `cc`'s own
/// link: every module then uses the COMMON storage.
#[test]
fn a_common_symbol_overrides_a_weak_definition() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let flags = &["-fPIC", "-fcommon", "-O1"];
    let main = compile_with(
        d,
        "main",
        "#include <stdio.h>\nint get_a(void); int get_b(void);\nextern int x;\n\
         int main(void){ printf(\"%d %d %d\\n\", x, get_a(), get_b()); x = 9;\n\
         printf(\"%d %d\\n\", get_a(), get_b()); return 0; }",
        flags,
    );
    let a = compile_with(
        d,
        "a",
        "__attribute__((weak)) int x = 5;\nint get_a(void){ return x; }",
        flags,
    );
    let b = compile_with(d, "b", "int x;\nint get_b(void){ return x; }", flags);
    // What a native link of the same objects prints.
    let exe = d.join("native");
    let st = Command::new("cc")
        .arg("-o")
        .arg(&exe)
        .args([&main, &a, &b])
        .status()
        .unwrap();
    assert!(st.success());
    let native = Command::new(&exe).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&native.stdout), "0 0 0\n9 9\n");
    for (name, order) in [("ab.hcr", [&main, &a, &b]), ("ba.hcr", [&main, &b, &a])] {
        let img = d.join(name);
        link_ok(&img, &order.map(|p| p.clone()));
        let out = support::run(&img);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&native.stdout),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A linker set (`__attribute__((section("name")))` entries in several
/// modules, read through `__start_name` / `__stop_name`) cannot work when
/// each module is placed on its own: the link says so, naming the set, the
/// modules and a way out, instead of an undefined symbol at load; several
/// variables in one named section get their own reason too.
#[test]
fn linker_sets_are_refused_with_the_reason() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let flags = &["-fPIC", "-ffunction-sections", "-fdata-sections", "-O1"];
    let entry = |n: &str, v: i32| {
        format!(
            "struct reg {{ const char *name; int v; }};\n\
             static const struct reg reg_{n} __attribute__((used, section(\"myregs\"))) = {{ \"{n}\", {v} }};\n"
        )
    };
    let reader = "struct reg { const char *name; int v; };\n\
        extern const struct reg __start_myregs[], __stop_myregs[];\n\
        int count(void) { return (int)(__stop_myregs - __start_myregs); }\n";
    let main = compile_with(
        d,
        "main",
        &format!("{}int main(void) {{ return count(); }}\n", reader),
        flags,
    );
    let b = compile_with(d, "b", &entry("beta", 2), flags);
    let img = d.join("app.hcr");
    refused(
        &img,
        &[main.clone(), b],
        &[
            "main.o (module main): '__start_myregs' bounds the linker set 'myregs' (the sections named 'myregs' of module b)",
            "'__stop_myregs' bounds the linker set 'myregs'",
            "help: register the entries at run time instead",
        ],
    );
    // Two entries in one module: the shared section is named as such.
    let two = compile_with(
        d,
        "two",
        &(entry("alpha", 1)
            + &entry("gamma", 3).replace("struct reg { const char *name; int v; };\n", "")),
        flags,
    );
    let err = refused(
        &img,
        &[main, two],
        &["two.o (module two): 2 variables share the section 'myregs' (placed there with __attribute__((section)))"],
    );
    assert!(!err.contains("built without -fdata-sections"), "{err}");
}

/// `link_cached` keeps inputs mapped between links; an object rewritten in
/// place (as `cc -o` does) or replaced by rename must be read afresh, and
/// the result must equal an uncached link byte for byte.
#[test]
fn cached_links_follow_rewritten_and_replaced_objects() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let main = compile_with(
        d,
        "main",
        "int f(void);\nint main(void) { return f(); }\n",
        SECTIONED,
    );
    let lib = compile_with(d, "lib", "int f(void) { return 1; }\n", SECTIONED);
    let inputs = vec![main, lib.clone()];
    let cfg = hcr_linker::LinkConfig::default();
    let mut cache = hcr_linker::InputCache::default();
    let (cached, plain) = (d.join("cached.hcr"), d.join("plain.hcr"));
    let check = |cache: &mut hcr_linker::InputCache, want: &str| {
        hcr_linker::link_cached(&cfg, &inputs, &cached, cache).expect("cached link");
        hcr_linker::link(&cfg, &inputs, &plain).expect("link");
        let (a, b) = (
            std::fs::read(&cached).unwrap(),
            std::fs::read(&plain).unwrap(),
        );
        assert!(a == b, "{want}: the cached link differs from a fresh one");
        let json = inspect_json(&cached);
        let hash = json["modules"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["name"] == "lib"))
            .map(|m| m["content_hash"].clone())
            .expect("module lib");
        hash
    };
    let h1 = check(&mut cache, "first link");
    assert_eq!(check(&mut cache, "unchanged"), h1);
    // Rewritten in place (truncated and written, as some tools do): same
    // inode, new contents and times.
    let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let before = ino(&lib);
    let new = compile_with(d, "lib_v2", "int f(void) { return 2; }\n", SECTIONED);
    std::fs::write(&lib, std::fs::read(&new).unwrap()).unwrap();
    assert_eq!(ino(&lib), before, "rewritten in place");
    let h2 = check(&mut cache, "rewritten in place");
    assert_ne!(h2, h1);
    // Replaced by rename: a new inode.
    let other = compile_with(d, "lib_v3", "int f(void) { return 3; }\n", SECTIONED);
    std::fs::rename(&other, &lib).unwrap();
    let h3 = check(&mut cache, "replaced by rename");
    assert_ne!(h3, h2);
}

/// The image is put in place by exchanging names with the old one (cheaper
/// than a rename over it on ext4) and removing the old: a reader holding
/// the old image keeps its bytes, no temporary file is left behind, and an
/// output path that is a directory is an error that leaves it alone.
#[test]
fn replacing_an_image_keeps_open_readers_and_leaves_nothing_behind() {
    use std::io::Read as _;
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let main = compile_with(d, "main", "int main(void) { return 0; }\n", SECTIONED);
    let out = d.join("app.hcr");
    let cfg = hcr_linker::LinkConfig::default();
    hcr_linker::link(&cfg, std::slice::from_ref(&main), &out).expect("first link");
    let old = std::fs::read(&out).unwrap();
    let mut reader = std::fs::File::open(&out).unwrap();
    let other = compile_with(d, "main", "int main(void) { return 7; }\n", SECTIONED);
    hcr_linker::link(&cfg, std::slice::from_ref(&other), &out).expect("second link");
    let new = std::fs::read(&out).unwrap();
    assert_ne!(old, new, "the image was replaced");
    let mut held = Vec::new();
    reader.read_to_end(&mut held).unwrap();
    assert_eq!(held, old, "an open reader keeps the old image");
    let names: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains(".tmp")),
        "temporary files left: {names:?}"
    );
    // A directory where the image should go.
    let dir_out = d.join("dir.hcr");
    std::fs::create_dir(&dir_out).unwrap();
    std::fs::write(dir_out.join("keep"), b"x").unwrap();
    let err = hcr_linker::link(&cfg, std::slice::from_ref(&main), &dir_out)
        .expect_err("a directory is not replaced");
    assert!(err.to_string().contains("dir.hcr"), "{err}");
    assert!(dir_out.join("keep").exists(), "the directory is untouched");
    let left: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

/// Compressed debug sections (`-g -gz`) are valid input: the module links
/// and runs, and the warning says its debug information is left out and
/// why, instead of calling the object corrupt.
#[test]
fn compressed_debug_information_links_with_a_warning() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::write(
        d.join("main.c"),
        "int twice(int);\nint main(void) { return twice(21) == 42 ? 0 : 1; }\n",
    )
    .unwrap();
    std::fs::write(d.join("util.c"), "int twice(int x) { return 2 * x; }\n").unwrap();
    let (m, u) = (d.join("main.o"), d.join("util.o"));
    support::compile(&d.join("main.c"), &m, "-O2", &["-g", "-gz"]);
    support::compile(&d.join("util.c"), &u, "-O2", &["-g", "-gz"]);
    let img = d.join("app.hcr");
    let o = std::process::Command::new(support::hcr_link_bin())
        .arg("-o")
        .arg(&img)
        .arg(&m)
        .arg(&u)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("util.o (module util): its debug information is compressed (-gz)"),
        "{err}"
    );
    let o = support::hcr_command()
        .arg("run")
        .arg(&img)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// An input the root does not reach is not loaded; when it has
/// constructors (code that registers itself at start-up), hcr-link says
/// they will not run, naming the module. A reached module's constructors
/// are not mentioned.
#[test]
fn an_unreached_module_with_constructors_is_named_in_a_warning() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let main = "int registered;\nint used(void);\n\
                int main(void) { return used() + registered; }\n";
    let used = "extern int registered;\nint used(void) { return 0; }\n\
                __attribute__((constructor)) static void reached(void) { registered += 0; }\n";
    let plugin = "extern int registered;\n\
                  __attribute__((constructor)) static void add(void) { registered++; }\n";
    let lonely = "int lonely(void) { return 1; }\n";
    let leaving =
        "volatile int left;\n__attribute__((destructor)) static void bye(void) { left = 1; }\n";
    let objs = [
        support::module(d, "main", main, "-O1"),
        support::module(d, "used", used, "-O1"),
        support::module(d, "plugin", plugin, "-O1"),
        support::module(d, "lonely", lonely, "-O1"),
        support::module(d, "leaving", leaving, "-O1"),
    ];
    let img = d.join("app.hcr");
    let o = support::link(&img, &objs);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(
            "warning: modules plugin, leaving are not reached from the root, so not loaded: their constructors"
        ),
        "{err}"
    );
    assert!(!err.contains("used"), "{err}");
    assert!(!err.contains("lonely"), "{err}");
    // As the warning says: the constructor does not run.
    let o = support::hcr_command()
        .arg("run")
        .arg(&img)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
