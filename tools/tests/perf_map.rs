//! `hcr run --perf-map` / `HCR_PERF_MAP=1`: `/tmp/perf-PID.map` names every
//! generation's module functions, the trampolines and removed-function
//! stubs; `perf record` / `perf report` then name module functions (run
//! where perf can sample: hardware counters or the cpu-clock software
//! event).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

const MAIN: &str = r#"#include <stdio.h>
#include <hcr.h>
long spin(long n);
int main(int argc, char **argv) {
    long total = spin(20000000);
    if (argc > 1) {
        rename(argv[1], argv[0]);
        printf("reload %d\n", hcr_perform_code_reload());
        total += spin(20000000);
    }
    printf("total %ld\n", total);
    return 0;
}
"#;

fn build(dir: &Path, tag: &str, util: &str) -> PathBuf {
    let d = dir.join(tag);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("main.c"), MAIN).unwrap();
    std::fs::write(d.join("util.c"), util).unwrap();
    let (m, u) = (d.join("main.o"), d.join("util.o"));
    support::compile(&d.join("main.c"), &m, "-O1", &[]);
    support::compile(&d.join("util.c"), &u, "-O1", &[]);
    let img = dir.join(format!("{tag}.hcr"));
    support::link_ok(&img, &[m, u]);
    img
}

const SPIN_V1: &str = "long spin(long n) { volatile long s = 0; for (long i = 0; i < n; i++) s += i; return s; }\nint gone(void) { return 1; }\n";
const SPIN_V2: &str =
    "long spin(long n) { volatile long s = 1; for (long i = 0; i < n; i++) s ^= i; return s; }\n";

/// Runs `c` (a program writing its perf map) to its end: its output and
/// the map it wrote, which is removed.
fn run_for_map(c: &mut Command) -> (std::process::Output, String) {
    let child = c.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    let path = support::perf_map_of(pid);
    let map = std::fs::read_to_string(&path).expect("the perf map");
    std::fs::remove_file(&path).unwrap();
    (o, map)
}

/// Parses the map: (start, size, name) per line.
fn parse(map: &str) -> Vec<(u64, u64, String)> {
    map.lines()
        .map(|l| {
            let mut it = l.splitn(3, ' ');
            let start = u64::from_str_radix(it.next().unwrap(), 16).expect("hex start");
            let size = u64::from_str_radix(it.next().unwrap(), 16).expect("hex size");
            (start, size, it.next().expect("name").to_string())
        })
        .collect()
}

#[test]
fn the_map_names_every_generation_trampolines_and_stubs() {
    let t = tempfile::tempdir().unwrap();
    let v1 = build(t.path(), "v1", SPIN_V1);
    let v2 = build(t.path(), "v2", SPIN_V2);
    for env in [false, true] {
        let app = t.path().join("app.hcr");
        std::fs::copy(&v1, &app).unwrap();
        let staged = t.path().join("staged.hcr");
        std::fs::copy(&v2, &staged).unwrap();
        let mut c = support::hcr_command();
        c.arg("run");
        if env {
            c.env("HCR_PERF_MAP", "1");
        } else {
            c.arg("--perf-map");
        }
        let (o, map) = run_for_map(c.arg(&app).arg("--").arg(&staged));
        assert!(o.status.success());
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).lines().next(),
            Some("reload 1")
        );
        let entries = parse(&map);
        let find = |name: &str| {
            entries
                .iter()
                .filter(|e| e.2 == name)
                .map(|e| (e.0, e.1))
                .collect::<Vec<_>>()
        };
        let g0 = find("util:spin [hcr generation 0]");
        let g1 = find("util:spin [hcr generation 1]");
        assert_eq!((g0.len(), g1.len()), (1, 1), "{map}");
        assert_ne!(
            g0[0].0, g1[0].0,
            "each generation at its own address:\n{map}"
        );
        assert!(g0[0].1 > 0 && g1[0].1 > 0, "{map}");
        assert_eq!(find("main:main [hcr generation 0]").len(), 1, "{map}");
        // Trampolines: written at every load, at one permanent address.
        let tramp = find("util:spin [hcr trampoline]");
        assert_eq!(tramp.len(), 2, "{map}");
        assert_eq!(tramp[0], tramp[1], "{map}");
        // `gone` left with v2: its stub is named.
        assert_eq!(
            find("util:gone [hcr removed-function stub]").len(),
            1,
            "{map}"
        );
    }
}

/// A compiler clone (`inner.constprop.0` at -O2) has no permanent address,
/// but profilers see its code: the map names it as the symbol table does.
#[test]
fn the_map_names_compiler_clones() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let util = "int sink;\n\
        static __attribute__((noinline)) int inner(long *p, long k) {\n\
        for (long i = 0; i < k; i++) sink += p[i] * k; return *p + k; }\n\
        long spin(long n) { long v[8] = {0}; long s = 0;\n\
        for (long i = 0; i < n / 1000; i++) s += inner(v, 7); return s; }\n";
    std::fs::write(d.join("main.c"), MAIN).unwrap();
    std::fs::write(d.join("util.c"), util).unwrap();
    let (m, u) = (d.join("main.o"), d.join("util.o"));
    support::compile(&d.join("main.c"), &m, "-O2", &[]);
    support::compile(&d.join("util.c"), &u, "-O2", &[]);
    let nm = Command::new("nm").arg(&u).output().expect("nm");
    let nm = String::from_utf8_lossy(&nm.stdout);
    let clone = nm
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .find(|n| n.starts_with("inner."))
        .expect("gcc made a clone of inner")
        .to_string();
    let img = d.join("app.hcr");
    support::link_ok(&img, &[m, u]);
    let (o, map) = run_for_map(
        support::hcr_command()
            .arg("run")
            .arg("--perf-map")
            .arg(&img),
    );
    assert!(o.status.success());
    let entries = parse(&map);
    let named = |name: &str| entries.iter().find(|e| e.2 == name).map(|e| (e.0, e.1));
    let c = named(&format!("util:{clone} [hcr generation 0]")).expect(&map);
    let s = named("util:spin [hcr generation 0]").expect(&map);
    assert!(c.1 > 0, "{map}");
    // Its own code, apart from the function that calls it.
    assert!(c.0 + c.1 <= s.0 || s.0 + s.1 <= c.0, "{map}");
}

#[test]
fn perf_report_names_module_functions() {
    let probe = Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock", "-o", "/dev/null", "true"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!(
                "perf cannot record here ({}): skipping the perf run (the map is tested above)",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return;
        }
        Err(_) => {
            eprintln!("perf is not installed (.ci/run installs linux-perf): skipping");
            return;
        }
    }
    let t = tempfile::tempdir().unwrap();
    let v1 = build(t.path(), "v1", SPIN_V1);
    let data = t.path().join("perf.data");
    let o = Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock", "-o"])
        .arg(&data)
        .args([
            "--",
            "sh",
            "-c",
            "echo $$; exec \"$0\" run --perf-map \"$1\"",
        ])
        .arg(support::hcr_bin())
        .arg(&v1)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The shell printed its PID, which `exec` kept for hcr: perf report
    // reads the map it wrote, which is then removed, so no later process
    // with that PID finds it.
    let out = String::from_utf8_lossy(&o.stdout);
    let pid = out.lines().next().unwrap_or_default().trim();
    let map = support::perf_map_of(pid);
    assert!(
        std::fs::read_to_string(&map).is_ok_and(|m| m.contains("util:spin [hcr generation 0]")),
        "no map at {}; stdout: {out}",
        map.display()
    );
    let r = Command::new("perf")
        .args(["report", "--stdio", "--sort", "sym", "-i"])
        .arg(&data)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&r.stdout);
    assert!(
        report.contains("util:spin [hcr generation 0]"),
        "perf report does not name the module function:\n{report}\n{}",
        String::from_utf8_lossy(&r.stderr)
    );
    std::fs::remove_file(&map).unwrap();
}
