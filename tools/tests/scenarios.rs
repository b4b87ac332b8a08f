//! The scenario suite: each directory of `testdata/scenarios` is a program in
//! versions (`0/`, `1/`, ...) that rebuilds and relinks itself between
//! reloads; its stdout must equal `expect.txt`. Each runs at -O2 and -O0,
//! as a subprocess (`hcr run`), so a crash fails one test, not the harness.
//!
//! Memory checking (opt-in): `HCR_SCENARIO_WRAPPER` prefixes every `hcr run`
//! (valgrind), `HCR_BIN` replaces the `hcr` binary (an AddressSanitizer
//! build). A subset: `cargo test --test scenarios -- --exact NAME...`.
//! See `.ci/run` for the commands.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

fn scenario_dir(name: &str) -> PathBuf {
    support::repo().join("testdata/scenarios").join(name)
}

/// Writes the rebuild script the program runs between steps.
fn write_rebuild_script(work: &Path, scen: &Path, opt: &str) -> PathBuf {
    let script = work.join("rebuild.sh");
    let flags = support::cflags(opt).join(" ");
    let text = format!(
        r#"#!/bin/sh
# rebuild.sh STEP: apply a scenario step, recompile, relink.
set -e
step="$1"
cd "{work}"
if [ "$step" != 0 ] || [ ! -f main.c ]; then
  for f in "{scen}/$step"/*; do
    b=$(basename "$f")
    [ "$b" = REMOVE ] || cp "$f" "$b"
  done
fi
if [ -f "{scen}/$step/REMOVE" ]; then
  while read -r f; do [ -n "$f" ] && rm -f "$f" "${{f%.c}}.o"; done < "{scen}/$step/REMOVE"
fi
rm -f *.o
for c in *.c; do
  cc {flags} -I "{inc}" -I "{scen_root}" "$c" -o "${{c%.c}}.o"
done
for c in *.cpp; do
  [ -e "$c" ] || continue
  g++ {flags} -I "{inc}" -I "{scen_root}" "$c" -o "${{c%.cpp}}.o"
done
others=$(ls *.o | grep -v '^main\.o$' | sort)
"{link}" -o app.hcr main.o $others
"#,
        work = work.display(),
        scen = scen.display(),
        flags = flags,
        inc = support::include_dir().display(),
        scen_root = support::repo().join("testdata/scenarios").display(),
        link = support::hcr_link_bin().display(),
    );
    std::fs::write(&script, text).expect("write script");
    script
}

fn run_scenario(name: &str, opt: &str) {
    let scen = scenario_dir(name);
    let tmp = tempfile::tempdir().expect("tempdir");
    let work = tmp.path();
    let script = write_rebuild_script(work, &scen, opt);
    let st = Command::new("sh")
        .arg(&script)
        .arg("0")
        .status()
        .expect("sh");
    assert!(st.success(), "{name}: initial build failed");
    let out = support::hcr_command()
        .arg("run")
        .arg(work.join("app.hcr"))
        .env("HCR_SCENARIO_REBUILD", format!("sh {}", script.display()))
        .current_dir(work)
        .output()
        .expect("run hcr");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expect = std::fs::read_to_string(scen.join("expect.txt")).expect("expect.txt");
    assert_eq!(
        stdout, expect,
        "{name} ({opt}): stdout differs from expect.txt\n--- stderr ---\n{stderr}"
    );
    let want_code: i32 = std::fs::read_to_string(scen.join("exit_code"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let code = out.status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + out.status.signal().unwrap_or(0)
    });
    assert_eq!(
        code, want_code,
        "{name} ({opt}): exit code\n--- stderr ---\n{stderr}"
    );
    if let Ok(lines) = std::fs::read_to_string(scen.join("stderr.txt")) {
        for l in lines.lines().filter(|l| !l.is_empty()) {
            assert!(
                stderr.contains(l),
                "{name} ({opt}): stderr lacks {l:?}\n--- stderr ---\n{stderr}"
            );
        }
    }
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run_scenario(stringify!($name), "-O2");
                run_scenario(stringify!($name), "-O0");
            }
        )*
        const LISTED: &[&str] = &[$(stringify!($name)),*];
    };
}

scenarios!(
    const_data_replaced,
    constructor_aborts,
    constructor_order,
    cross_module_global,
    fn_pointer_in_global,
    function_static_kept,
    generation,
    get_proc_get_global,
    global_size_change,
    handler_order,
    handler_owner,
    handler_reregistered,
    handlers_added_removed,
    has_module_changed,
    import_reorder,
    init_order,
    module_reimport,
    moved_between_modules,
    new_global_on_reload,
    nim_integration,
    pointer_initialisers_kept,
    no_change_no_handlers,
    reload_from_main,
    reload_inside_changed_module,
    remove_readd_global,
    removed_function,
    several_on_reload_blocks,
    static_renumbered,
    static_renumbered_nested,
    cxx_statics_kept,
    cxx_new_dynamic_global,
    cxx_removed_global_destructor,
    static_same_name,
    segments_kept,
    global_size_change_referenced,
    cxx_exception_kept_catcher,
    unreachable_module,
    concurrent_reloads,
    old_frame_same_module_call,
);

#[test]
fn every_scenario_directory_is_listed() {
    let dir = support::repo().join("testdata/scenarios");
    for e in std::fs::read_dir(&dir).expect("scenarios dir") {
        let e = e.expect("entry");
        if e.path().is_dir() {
            let n = e.file_name().to_string_lossy().into_owned();
            assert!(
                LISTED.contains(&n.as_str()),
                "scenario {n} is not listed in tests/scenarios.rs"
            );
        }
    }
}
