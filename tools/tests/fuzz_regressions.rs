//! Fuzz regressions: every file under `testdata/fuzz-regressions/<target>/`
//! goes through the same harness as the cargo-fuzz target of that name
//! (`fuzz/src/lib.rs`, included here) and must return without a panic. Also
//! checks the in-memory linker entry point the `link_object` target uses and
//! the bugs the fuzzer found, each with a real program.

mod support;

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod harness;

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = support::repo()
        .join("testdata/fuzz-regressions")
        .join(target);
    // A target without regressions has no directory (git keeps no empty
    // directories).
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = entries
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn replay(target: &str, f: fn(&[u8]) -> bool) -> usize {
    let files = inputs(target);
    for p in &files {
        let data = std::fs::read(p).expect("read regression input");
        let r = std::panic::catch_unwind(|| {
            let _ = f(&data);
        });
        assert!(r.is_ok(), "{target}: {} panicked", p.display());
    }
    files.len()
}

#[test]
fn link_object_regressions_do_not_panic() {
    assert!(replay("link_object", harness::link_object) > 0);
}

#[test]
fn image_parse_regressions_do_not_panic() {
    assert!(replay("image_parse", harness::image_parse) > 0);
}

fn sample(dir: &Path) -> Vec<PathBuf> {
    let a = support::module(
        dir,
        "main",
        "#include <stdio.h>\nextern int counter; int bump(void);\n\
         static const char *msg = \"hi\";\n\
         int main(void) { bump(); printf(\"%s %d\\n\", msg, counter); return 0; }\n",
        "-O2",
    );
    let b = support::module(
        dir,
        "lib",
        "int counter = 41; int bump(void) { return ++counter; }\n",
        "-O2",
    );
    vec![a, b]
}

/// `link_memory` (the fuzz target's entry point) links the same program as
/// `link_bytes` from files: identical load area, fixups and modules; only
/// the modification times differ (0 in memory).
#[test]
fn link_memory_matches_link_bytes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let objs = sample(tmp.path());
    let cfg = hcr_linker::LinkConfig::default();
    let from_files = hcr_linker::link_bytes(&cfg, &objs).expect("link files");
    let in_memory = hcr_linker::link_memory(
        &cfg,
        objs.iter()
            .map(|p| (p.clone(), std::fs::read(p).expect("read object")))
            .collect(),
    )
    .expect("link in memory");
    let a = hcr_image::ImageView::parse(&from_files.bytes).expect("parse");
    let b = hcr_image::ImageView::parse(&in_memory.bytes).expect("parse");
    assert_eq!(a.area, b.area);
    assert_eq!(a.init, b.init);
    assert_eq!(a.manifest.modules.len(), b.manifest.modules.len());
    for (x, y) in a.manifest.modules.iter().zip(&b.manifest.modules) {
        assert_eq!(a.manifest.str(x.name), b.manifest.str(y.name));
        assert_eq!(x.content_hash, y.content_hash);
        assert_eq!(y.mtime_ns, 0);
    }
    assert_eq!(
        a.fixups.iter().map(|(_, t)| t.len()).sum::<usize>(),
        b.fixups.iter().map(|(_, t)| t.len()).sum::<usize>()
    );
    assert!(matches!(
        hcr_linker::link_memory(&cfg, Vec::new()),
        Err(hcr_linker::LinkError::NoInputs)
    ));
    // The image_parse harness loads a real image (it reaches the loader).
    assert!(harness::image_parse(&in_memory.bytes));
}

/// Found by `link_object`: a global larger than the image format holds
/// (4 GiB) was linked into an image that `ImageView::parse` refuses as a
/// corrupt manifest. hcr-link now refuses it with a diagnostic.
#[test]
fn global_above_4_gib_is_a_diagnostic() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let obj = support::module(
        tmp.path(),
        "main",
        "char big[5UL << 30];\nint main(void) { big[3] = 1; return big[3]; }\n",
        "-O2",
    );
    let out = support::link(&tmp.path().join("app.hcr"), &[obj]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "linked a 5 GiB global");
    assert!(
        stderr.contains("at most 4 GiB") && stderr.contains("big"),
        "{stderr}"
    );
    assert!(!tmp.path().join("app.hcr").exists());
}

/// Found while fixing a `link_object` crash (a function symbol outside its
/// section): a function of size 0 that ends the text region (an empty body,
/// `__builtin_unreachable()`, in the last module) was refused at load as
/// "function out of range". It loads and runs now.
#[test]
fn empty_function_at_the_end_of_the_code_loads() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let main = support::module(tmp.path(), "main", "int main(void) { return 7; }\n", "-O2");
    let last = support::module(
        tmp.path(),
        "last",
        "void never(void) { __builtin_unreachable(); }\n",
        "-O2",
    );
    let image = tmp.path().join("app.hcr");
    support::link_ok(&image, &[main, last]);
    let out = support::run(&image);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Found by `link_object`: hcr-link laid out each module's copies of
/// `.init_array`/`.fini_array`/`.hcr_on_reload` from offset 0 but placed the
/// block at a multiple of 8 only, so a table aligned above 8 was written
/// past its space (a panic at the end of the file, else over the relocation
/// sections after it).
#[test]
fn over_aligned_constructor_table_links_and_runs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let obj = support::module(
        tmp.path(),
        "main",
        "#include <stdio.h>\nstatic void hello(void) { puts(\"ctor ran\"); }\n\
         __attribute__((section(\".init_array\"), aligned(64), used))\n\
         static void (*p)(void) = hello;\nint main(void) { return 3; }\n",
        "-O2",
    );
    let image = tmp.path().join("app.hcr");
    support::link_ok(&image, &[obj]);
    let out = support::run(&image);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ctor ran\n");
    assert_eq!(out.status.code(), Some(3));
    // No two sections of the file overlap (the misplaced table overlapped
    // the relocation sections after it).
    let re = std::process::Command::new("readelf")
        .args(["-W", "-S"])
        .arg(&image)
        .output()
        .expect("readelf");
    let text = String::from_utf8_lossy(&re.stdout);
    assert!(re.status.success() && re.stderr.is_empty(), "{text}");
    let mut ranges: Vec<(u64, u64, String)> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_once(']')?.1.split_whitespace().collect();
            let (name, typ) = (*f.first()?, *f.get(1)?);
            let off = u64::from_str_radix(f.get(3)?, 16).ok()?;
            let size = u64::from_str_radix(f.get(4)?, 16).ok()?;
            (typ != "NOBITS" && typ != "NULL" && size > 0).then(|| (off, off + size, name.into()))
        })
        .collect();
    ranges.sort();
    assert!(ranges.len() > 5, "{text}");
    for w in ranges.windows(2) {
        assert!(w[0].1 <= w[1].0, "{} overlaps {}:\n{text}", w[0].2, w[1].2);
    }
}

#[test]
fn control_request_regressions_do_not_panic() {
    assert!(replay("control_request", harness::control_request) > 0);
}
