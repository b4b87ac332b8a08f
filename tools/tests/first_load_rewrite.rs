//! A first load while the image is rewritten in place (`cp new.hcr
//! app.hcr`: truncate, then write). A first load maps the image file under
//! a read lease (ARCHITECTURE.md, "Reading the image"): a writer that
//! opens the file while the load reads it must wait, so the load neither
//! dies of `SIGBUS` nor runs bytes that changed under it. A thread rewrites
//! the file in a loop, whole images and torn ones, while `hcr run` starts
//! the program again and again: every run prints what one of the two
//! programs prints or fails with an error naming the file; none is killed
//! by a signal.

mod support;

use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hcr_tools::gen::{self, Shape};

const SHAPE: Shape = Shape {
    modules: 16,
    functions: 520,
    globals: 2,
};

/// Two images of a generated program large enough that reading its
/// manifest takes a while (16 modules of 520 functions: about 0.5 MB of
/// manifest): as generated, and with module `m0` in another variant.
fn programs(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let mut objs = vec![gen::compile(dir, "main", &gen::main_source(SHAPE), "-O0").unwrap()];
    for i in 0..SHAPE.modules {
        let src = gen::module_source(SHAPE, i, 0);
        objs.push(gen::compile(dir, &format!("m{i}"), &src, "-O0").unwrap());
    }
    let img = dir.join("v1.hcr");
    support::link_ok(&img, &objs);
    let v1 = std::fs::read(&img).unwrap();
    let other = dir.join("variant");
    std::fs::create_dir_all(&other).unwrap();
    objs[1] = gen::compile(&other, "m0", &gen::module_source(SHAPE, 0, 1), "-O0").unwrap();
    let img = dir.join("v2.hcr");
    support::link_ok(&img, &objs);
    (v1, std::fs::read(&img).unwrap())
}

#[test]
fn first_loads_while_the_image_is_rewritten_in_place_never_crash() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let (v1, v2) = programs(d);
    assert_ne!(v1, v2);
    // What each prints, run alone.
    let app = d.join("app.hcr");
    let mut expected = Vec::new();
    for v in [&v1, &v2] {
        std::fs::write(&app, v).unwrap();
        expected.push(support::run_ok(&app));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, app) = (stop.clone(), app.clone());
        let (v1, v2) = (v1.clone(), v2.clone());
        std::thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let img = if i % 2 == 1 { &v2 } else { &v1 };
                match i % 4 {
                    // Whole images, left a moment for runs to start.
                    0 | 1 => {
                        support::rewrite_in_place(&app, img, img.len());
                        // Varying stays: the next truncation meets loads
                        // at every step of their reading.
                        std::thread::sleep(Duration::from_millis(10 + (i * 7 % 29) as u64));
                    }
                    // A prefix, and a torn image (the other one's tail).
                    2 => support::rewrite_in_place(&app, &img[..(i * 7919) % img.len()], 65536),
                    _ => {
                        let other = if i % 2 == 1 { &v1 } else { &v2 };
                        let mut torn = img.clone();
                        let n = torn.len().min(other.len());
                        let cut = (i * 104_729) % n;
                        torn[cut..n].copy_from_slice(&other[cut..n]);
                        support::rewrite_in_place(&app, &torn, 65536);
                    }
                }
                i += 1;
            }
        })
    };

    let app_name = app.display().to_string();
    let (mut ok, mut failed) = (0, 0);
    // 60 runs, more (up to 200) until one has found a whole image.
    for n in 0.. {
        if n >= 200 || (n >= 60 && ok > 0) {
            break;
        }
        let o = support::run(&app);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
        );
        assert_eq!(o.status.signal(), None, "killed:\n{stderr}");
        if o.status.success() {
            assert!(expected.contains(&stdout.to_string()), "{stdout}\n{stderr}");
            ok += 1;
        } else {
            assert!(stderr.contains(&app_name), "{stderr}");
            failed += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    eprintln!("{ok} runs, {failed} refused");
    assert!(ok > 0, "no run found a whole image");
}
