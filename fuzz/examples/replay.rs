//! Replays files through a fuzz harness without libFuzzer (no nightly, no
//! sanitizer): `replay link_object|image_parse PATH...`, where each PATH is a
//! file or a directory of files (a corpus, `artifacts/`, regressions).
//! Prints how many inputs ran and how many linked (link_object) or were
//! loaded by the loader (image_parse); any panic fails the run.

use std::path::{Path, PathBuf};

fn files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for e in entries {
            files(&e, out);
        }
    } else {
        out.push(path.to_path_buf());
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().unwrap_or_default();
    let harness: fn(&[u8]) -> bool = match target.as_str() {
        "link_object" => hcr_fuzz::link_object,
        "image_parse" => hcr_fuzz::image_parse,
        "control_request" => hcr_fuzz::control_request,
        _ => {
            eprintln!("usage: replay link_object|image_parse|control_request PATH...");
            std::process::exit(2);
        }
    };
    let mut list = Vec::new();
    for a in args {
        files(Path::new(&a), &mut list);
    }
    let start = std::time::Instant::now();
    let mut through = 0;
    for f in &list {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        through += usize::from(harness(&data));
    }
    println!(
        "replay {target}: {} inputs ({through} {}), {:.2} s, no panic",
        list.len(),
        if target == "link_object" {
            "linked"
        } else {
            "loaded"
        },
        start.elapsed().as_secs_f64()
    );
}
