//! Reloads prepared ahead: when the image changes, the runtime's watcher
//! thread prepares the reload, and the program's next reload only commits
//! it. A prepared reload that the file overtook is discarded with all it
//! made (segments, trampolines, new globals, thread-local offsets), the
//! reload that is committed is always the one the file on disk asks for,
//! and globals keep their values. One runtime per process: one test in
//! this file.

mod support;

use std::time::{Duration, Instant};

use hcr_runtime::{Options, Runtime};

type IntFn = extern "C" fn() -> i32;

fn version(n: i32, added: i32, tl: i32) -> String {
    format!(
        "int counter;\n\
         int added = {added};\n\
         __thread int tl = {tl};\n\
         int value(void) {{ return {n} + added + tl; }}\n\
         int bump(void) {{ return ++counter; }}\n"
    )
}

/// Waits until the runtime holds a prepared reload (at most 10 s).
fn wait_ready(rt: &Runtime) {
    let start = Instant::now();
    while !rt.stats().reload_ready {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no reload was prepared ahead within 10 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_reload_prepared_ahead_is_committed_only_while_current() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let read = |tag: &str, code: &str| std::fs::read(support::lib_image(d, tag, code)).unwrap();
    let v1 = read(
        "v1",
        "int counter;\nint value(void) { return 1; }\nint bump(void) { return ++counter; }\n",
    );
    let v2 = read("v2", &version(2, 40, 7));
    let v3 = read("v3", &version(3, 50, 9));
    let app = d.join("app.hcr");
    let install = |bytes: &[u8]| support::install(&app, bytes);
    install(&v1);
    let rt = Runtime::open_with(&app, &support::small_window()).expect("open");
    // SAFETY: the signatures match the C definitions in every version.
    let (value, bump) = unsafe {
        (
            rt.get_proc::<IntFn>("lib", "value").expect("value"),
            rt.get_proc::<IntFn>("lib", "bump").expect("bump"),
        )
    };
    for i in 1..=3 {
        assert_eq!(bump(), i);
    }

    // Prepared and overtaken, again and again: nothing is committed and
    // everything each one made is freed.
    let mut first = None;
    for i in 0..40 {
        install(if i % 2 == 0 { &v2 } else { &v3 });
        wait_ready(&rt);
        assert_eq!(value(), 1, "a prepared reload runs nothing");
        assert_eq!(rt.generation(), 0);
        assert!(rt.has_any_module_changed());
        let s = rt.stats();
        match first {
            None => first = Some(s),
            Some(f) if i % 2 == 0 => {
                assert_eq!(
                    s.window_free, f.window_free,
                    "round {i}: {s:?} against {f:?}"
                );
                assert_eq!(s.global_bytes, f.global_bytes, "round {i}");
                assert_eq!(s.globals, f.globals, "round {i}");
            }
            Some(_) => {}
        }
    }

    // The last one (v3) is committed by the program's reload.
    assert_eq!(rt.reload().expect("reload"), 1);
    assert!(rt.last_reload_work().prepared_ahead);
    assert_eq!(value(), 3 + 50 + 9, "v3's code, globals and thread-local");
    assert_eq!(bump(), 4, "the counter kept its value");
    assert!(!rt.stats().reload_ready);

    // The live image's bytes again (a new file): no change, nothing to
    // prepare.
    install(&v3);
    assert!(!rt.has_any_module_changed());
    std::thread::sleep(Duration::from_millis(50));
    assert!(!rt.stats().reload_ready);
    assert_eq!(rt.reload().expect("reload"), 0);
    assert_eq!(value(), 62);

    // Replaced twice in quick succession, reloaded at once: whichever
    // preparation the reload finds, it loads the last file.
    install(&v2);
    install(&v1);
    assert_eq!(rt.reload().expect("reload"), 1);
    assert_eq!(value(), 1);
    assert_eq!(bump(), 5);
    install(&v2);
    assert_eq!(rt.reload().expect("reload"), 1);
    assert_eq!(value(), 2 + 40 + 7);
    assert_eq!(bump(), 6);

    // Children forked while the preparing thread works (it holds the
    // runtime's lock then) can still use the runtime: they reload on their
    // own, without the thread, which did not come along.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let statuses = std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                install(if i % 2 == 0 { &v3 } else { &v2 });
                i += 1;
                std::thread::sleep(Duration::from_micros(300));
            }
        });
        let mut statuses = Vec::new();
        for _ in 0..40 {
            // SAFETY: the child only calls the runtime and `_exit`s; the
            // runtime's fork handlers leave its locks free in the child.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                // SAFETY: `alarm` in the child: a hung child dies of it.
                unsafe { libc::alarm(20) };
                let ok = rt.reload().is_ok() && [2 + 40 + 7, 3 + 40 + 7].contains(&value());
                // SAFETY: ends the child without running the parent's
                // exit handlers.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) };
            }
            let mut status = 0;
            // SAFETY: waits for the child just forked.
            let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
            statuses.push((waited == pid).then_some(status));
            std::thread::sleep(Duration::from_millis(2));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        statuses
    });
    for status in statuses {
        let status = status.expect("waitpid");
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "a forked child failed or hung (status {status:#x})"
        );
    }
    drop(rt);

    // Turned off: the program's reload prepares it.
    install(&v3);
    let rt = Runtime::open_with(
        &app,
        &Options {
            prepare_ahead: false,
            ..support::small_window()
        },
    )
    .expect("open again");
    install(&v2);
    std::thread::sleep(Duration::from_millis(100));
    assert!(!rt.stats().reload_ready);
    assert_eq!(rt.reload().expect("reload"), 1);
    assert!(!rt.last_reload_work().prepared_ahead);
    // SAFETY: as above.
    let value = unsafe { rt.get_proc::<IntFn>("lib", "value") }.expect("value");
    assert_eq!(
        value(),
        2 + 50 + 9,
        "v2's code; `added` and `tl` kept v3's values"
    );
}
