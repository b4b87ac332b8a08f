//! Real programs under hcr, unmodified: bzip2 (C library and program, with
//! its own tests), Lua (an interpreter loading a C extension module with
//! `dlopen`), Snappy (C++, its own unit tests). Each is built module by
//! module from its release sources (see `testdata/corpus/README.md`), run
//! natively and with `hcr run`, compared byte for byte; bzip2 and Lua are
//! also edited while they run.

mod support;

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{hcr_bin, hcr_link_bin, lines_of};

/// A crate that vendors a code base, pinned by version and SHA-256.
struct Crate {
    name: &'static str,
    version: &'static str,
    sha256: &'static str,
}

const BZIP2: Crate = Crate {
    name: "bzip2-sys",
    version: "0.1.13+1.0.8",
    sha256: "225bff33b2141874fe80d71e07d6eec4f85c5c216453dd96388240f96e1acc14",
};
const LUA: Crate = Crate {
    name: "lua-src",
    version: "551.1.0",
    sha256: "41d22b201501a536c0f5a96c7589b268b559172b20fb029064434e38ddcecb1f",
};
const SNAPPY: Crate = Crate {
    name: "snappy-sys",
    version: "0.1.0",
    sha256: "9f873053ef085548b0b924db3aa2ce38d9389fb3be353bf7fcec4ababc99a307",
};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("corpus")
}

/// The crate's unpacked sources, downloaded once (checksum verified).
/// Tests of one crate run in parallel: one downloads, the others wait.
fn sources(c: &Crate) -> PathBuf {
    static FETCH: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    let root = corpus_dir();
    let dir = root.join(format!("{}-{}", c.name, c.version));
    if dir.join(".complete").exists() {
        return dir;
    }
    std::fs::create_dir_all(&root).unwrap();
    let file = root.join(format!("{}-{}.crate", c.name, c.version));
    let url = format!(
        "https://static.crates.io/crates/{0}/{0}-{1}.crate",
        c.name, c.version
    );
    support::download(&url, &file);
    let sum = Command::new("sha256sum").arg(&file).output().unwrap();
    let sum = String::from_utf8_lossy(&sum.stdout);
    assert!(
        sum.starts_with(c.sha256),
        "{url}: SHA-256 mismatch ({sum}), expected {}",
        c.sha256
    );
    let ok = Command::new("tar")
        .arg("xzf")
        .arg(&file)
        .arg("-C")
        .arg(&root)
        .status()
        .unwrap();
    assert!(ok.success(), "cannot unpack {}", file.display());
    std::fs::write(dir.join(".complete"), "").unwrap();
    dir
}

/// Compiles every `(source, object)` pair with `compiler` and the module
/// flags plus `extra`, a few at a time.
fn compile_all(compiler: &str, jobs: &[(PathBuf, PathBuf)], extra: &[&str]) {
    let width = std::thread::available_parallelism().map_or(2, |n| n.get());
    for batch in jobs.chunks(width) {
        let children: Vec<_> = batch
            .iter()
            .map(|(src, obj)| {
                let child = Command::new(compiler)
                    .args(["-c", "-fPIC", "-ffunction-sections", "-fdata-sections"])
                    .args(extra)
                    .arg(src)
                    .arg("-o")
                    .arg(obj)
                    .spawn()
                    .expect("the system compilers cc and g++ must be installed");
                (src, child)
            })
            .collect();
        for (src, mut child) in children {
            assert!(
                child.wait().unwrap().success(),
                "{compiler} failed on {}",
                src.display()
            );
        }
    }
}

fn hcr_link(out: &Path, objects: &[PathBuf], args: &[&str]) {
    let o = Command::new(hcr_link_bin())
        .arg("-o")
        .arg(out)
        .args(args)
        .args(objects)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "hcr-link failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.stderr.is_empty(),
        "hcr-link warned:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn native_link(compiler: &str, out: &Path, objects: &[PathBuf], libs: &[&str]) {
    let ok = Command::new(compiler)
        .arg("-o")
        .arg(out)
        .args(objects)
        .args(libs)
        .status()
        .unwrap();
    assert!(ok.success(), "native link of {} failed", out.display());
}

/// Runs `cmd` with `stdin` as standard input.
fn run_with_input(mut cmd: Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn hcr_run(image: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(hcr_bin());
    c.arg("run").arg(image).arg("--").args(args);
    c
}

/// Deterministic, compressible text (a few hundred kilobytes).
fn text(len: usize) -> Vec<u8> {
    let words = [
        "module ",
        "reload ",
        "global ",
        "trampoline ",
        "image ",
        "symbol ",
        "heap ",
        "thread ",
        "\n",
    ];
    let mut out = Vec::with_capacity(len + 16);
    let mut x: u32 = 12345;
    while out.len() < len {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        out.extend_from_slice(words[(x >> 16) as usize % words.len()].as_bytes());
        if x.is_multiple_of(7) {
            out.extend_from_slice(format!("{} ", x % 1000).as_bytes());
        }
    }
    out.truncate(len);
    out
}

/// Waits for a line containing `needle`; every line seen goes to `seen`.
fn wait_for(rx: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) => {
                let hit = l.contains(needle);
                seen.push(l);
                if hit {
                    return true;
                }
            }
            Err(_) => return false,
        }
    }
    false
}

const BZIP2_LIB: &[&str] = &[
    "blocksort",
    "huffman",
    "crctable",
    "randtable",
    "compress",
    "decompress",
    "bzlib",
];

/// bzip2: the library's seven files and the `bzip2` program as modules. Its
/// own `make test` natively and under hcr, compared with the shipped
/// results; then a stream compressed while `compress.c` is edited and
/// relinked (auto-reload): blocks after the reload report in the new
/// wording, and the whole stream equals the native output (the compressor's
/// state, the running CRC included, carried across).
#[test]
fn bzip2_runs_its_own_tests_and_reloads_while_compressing() {
    let src = sources(&BZIP2).join("bzip2-1.0.8");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let flags = ["-O2", "-D_FILE_OFFSET_BITS=64"];
    let mut jobs: Vec<(PathBuf, PathBuf)> = std::iter::once("bzip2")
        .chain(BZIP2_LIB.iter().copied())
        .map(|m| (src.join(format!("{m}.c")), w.join(format!("{m}.o"))))
        .collect();
    compile_all("cc", &jobs, &flags);
    let objects: Vec<PathBuf> = jobs.iter().map(|(_, o)| o.clone()).collect();
    let image = w.join("bzip2.hcr");
    hcr_link(&image, &objects, &[]);
    let native = w.join("bzip2");
    native_link("cc", &native, &objects, &[]);

    // bzip2's Makefile `test` target, as both programs.
    for (n, level) in [(1, "-1"), (2, "-2"), (3, "-3")] {
        let reference = std::fs::read(src.join(format!("sample{n}.ref"))).unwrap();
        let compressed = std::fs::read(src.join(format!("sample{n}.bz2"))).unwrap();
        for (what, cmd) in [
            ("native", Command::new(&native)),
            ("hcr", hcr_run(&image, &[])),
        ] {
            let mut c = cmd;
            c.arg(level);
            let out = run_with_input(c, &reference);
            assert!(out.status.success(), "{what} bzip2 {level}: {out:?}");
            assert!(
                out.stdout == compressed,
                "{what}: sample{n} compressed differs from sample{n}.bz2"
            );
        }
        let mut c = hcr_run(&image, &["-d"]);
        c.current_dir(w);
        let out = run_with_input(c, &compressed);
        assert!(out.status.success(), "hcr bzip2 -d: {out:?}");
        assert!(out.stdout == reference, "sample{n} decompressed differs");
    }

    // Edited while it compresses.
    let input = text(700_000);
    let expected = run_with_input(
        {
            let mut c = Command::new(&native);
            c.args(["-1", "-c"]);
            c
        },
        &input,
    );
    assert!(expected.status.success());
    let mut child = Command::new(hcr_bin())
        .arg("run")
        .arg("--auto-reload")
        // The map tells the test when the reload happened.
        .arg("--perf-map")
        .arg(&image)
        .args(["--", "-1", "-vv", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        stdout.read_to_end(&mut v).unwrap();
        v
    });
    let err = lines_of(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    let (first, rest) = input.split_at(250_000);
    stdin.write_all(first).unwrap();
    stdin.flush().unwrap();
    assert!(
        wait_for(&err, "block 2:", &mut seen),
        "no block report before the edit: {seen:?}"
    );
    // The edit: a new wording of the per-block report in compress.c.
    let edited = w.join("edit");
    std::fs::create_dir_all(&edited).unwrap();
    let code = std::fs::read_to_string(src.join("compress.c")).unwrap();
    assert!(code.contains("\"    block %d: crc"));
    std::fs::write(
        edited.join("compress.c"),
        code.replace("\"    block %d: crc", "\"    BLOCK %d: crc"),
    )
    .unwrap();
    let inc = format!("-I{}", src.display());
    jobs = vec![(edited.join("compress.c"), w.join("compress.o"))];
    compile_all("cc", &jobs, &[&flags[..], &[inc.as_str()]].concat());
    hcr_link(&image, &objects, &[]);
    // Once the program has reloaded (its perf map names generation 1),
    // the rest: blocks compressed after the reload report anew.
    let map = support::perf_map_of(child.id());
    let reloaded = support::within(120, || {
        std::fs::read_to_string(&map)
            .is_ok_and(|m| m.contains("[hcr generation 1]"))
            .then_some(())
    });
    assert!(reloaded.is_some(), "no reload after the relink: {seen:?}");
    stdin.write_all(rest).unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    let _ = std::fs::remove_file(&map);
    let out = reader.join().unwrap();
    seen.extend(err.iter());
    assert!(status.success(), "{seen:?}");
    assert!(
        seen.iter().any(|l| l.contains("BLOCK ")),
        "the edited compress.c never ran: {seen:?}"
    );
    assert!(
        !seen.iter().any(|l| l.starts_with("hcr:")),
        "hcr reported a problem: {seen:?}"
    );
    assert!(
        out == expected.stdout,
        "the stream compressed across the reload differs from the native one"
    );
}

/// bzip2 built with `-g`: while it compresses standard input, `hcr globals`
/// shows its globals typed from DWARF (integers, `Bool` as uint8, char
/// arrays as strings, pointers, the CRC table as a `uint32[256]`) and `hcr
/// set` changes one.
#[test]
fn bzip2_globals_are_shown_typed_from_dwarf() {
    let src = sources(&BZIP2).join("bzip2-1.0.8");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let jobs: Vec<(PathBuf, PathBuf)> = std::iter::once("bzip2")
        .chain(BZIP2_LIB.iter().copied())
        .map(|m| (src.join(format!("{m}.c")), w.join(format!("{m}.o"))))
        .collect();
    compile_all("cc", &jobs, &["-O2", "-g", "-D_FILE_OFFSET_BITS=64"]);
    let objects: Vec<PathBuf> = jobs.iter().map(|(_, o)| o.clone()).collect();
    let image = w.join("bzip2.hcr");
    hcr_link(&image, &objects, &[]);
    let run = w.join("run");
    std::fs::create_dir(&run).unwrap();
    let mut child = Command::new(hcr_bin())
        .env("XDG_RUNTIME_DIR", &run)
        .args(["run", "--control"])
        .arg(&image)
        .args(["--", "-1", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&text(10_000)).unwrap();
    stdin.flush().unwrap();
    let pid = child.id().to_string();
    let hcr = |args: &[&str]| {
        Command::new(hcr_bin())
            .env("XDG_RUNTIME_DIR", &run)
            .args(args)
            .output()
            .unwrap()
    };
    // Once main has named its input, the table is complete.
    let start = Instant::now();
    let table = loop {
        let o = hcr(&["globals", &pid]);
        let t = String::from_utf8_lossy(&o.stdout).into_owned();
        if t.contains("\"(stdin)\"") || start.elapsed() > Duration::from_secs(20) {
            break t;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let row = |module: &str, name: &str| -> (String, String) {
        let l = table
            .lines()
            .find(|l| {
                let mut w = l.split_whitespace();
                w.next() == Some(module) && w.next() == Some(name)
            })
            .unwrap_or_else(|| panic!("no {module}:{name} in\n{table}"));
        let mut w = l.split_whitespace().skip(2);
        let ty = w.next().unwrap().to_string();
        (ty, w.collect::<Vec<_>>().join(" "))
    };
    assert_eq!(row("bzip2", "verbosity"), ("int32".into(), "0".into()));
    assert_eq!(row("bzip2", "blockSize100k"), ("int32".into(), "1".into()));
    assert_eq!(row("bzip2", "smallMode"), ("uint8".into(), "0".into()));
    assert_eq!(
        row("bzip2", "inName"),
        ("char[1034]".into(), "\"(stdin)\"".into())
    );
    assert_eq!(row("bzip2", "progName").0, "char*");
    assert!(row("bzip2", "progName").1.starts_with("0x"));
    assert_eq!(row("bzip2", "outputHandleJustInCase").0, "FILE*");
    let (ty, crc) = row("crctable", "BZ2_crc32Table");
    assert_eq!(ty, "uint32[256]");
    // 0x04c11db7, the CRC-32 polynomial, is the table's second entry.
    assert!(crc.starts_with("{0, 79764919, "), "{crc}");
    let o = hcr(&["set", &pid, "bzip2:workFactor", "77"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).ends_with("-> 77\n"));
    let o = hcr(&["set", &pid, "bzip2:smallMode", "256"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("out of range for uint8"));
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
}

fn lua_build(w: &Path) -> (PathBuf, Vec<PathBuf>, Vec<(PathBuf, PathBuf)>) {
    let src = sources(&LUA).join("lua-5.4.9");
    let mut jobs: Vec<(PathBuf, PathBuf)> = vec![(
        support::repo().join("testdata/corpus/lua/main.c"),
        w.join("main.o"),
    )];
    let mut names: Vec<String> = std::fs::read_dir(&src)
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            if p.extension()? != "c" {
                return None;
            }
            Some(p.file_stem()?.to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    assert!(names.len() >= 30, "Lua sources: {names:?}");
    for n in &names {
        jobs.push((src.join(format!("{n}.c")), w.join(format!("{n}.o"))));
    }
    let inc = format!("-I{}", src.display());
    compile_all("cc", &jobs, &["-O2", "-DLUA_USE_LINUX", &inc]);
    // The extension module: a plain shared object, not linked with Lua.
    let ok = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", &inc, "-o"])
        .arg(w.join("hcrext.so"))
        .arg(support::repo().join("testdata/corpus/lua/hcrext.c"))
        .status()
        .unwrap();
    assert!(ok.success());
    let objects = jobs.iter().map(|(_, o)| o.clone()).collect();
    (src, objects, jobs)
}

/// Lua: the interpreter's C files as modules, a script that `require`s a C
/// extension module (dlopen'ed, its `lua_*` references resolved against the
/// image), natively and under hcr; then `lbaselib.c` edited while a loop
/// runs: `print` changes, the loop's counter goes on.
#[test]
fn lua_loads_a_c_extension_with_dlopen_and_reloads_while_running() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let (src, objects, _) = lua_build(w);
    let image = w.join("lua.hcr");
    hcr_link(&image, &objects, &[]);
    let native = w.join("lua");
    native_link("cc", &native, &objects, &["-lm", "-ldl", "-Wl,-E"]);
    let script = support::repo().join("testdata/corpus/lua/script.lua");
    let dir = w.display().to_string();
    let script_s = script.display().to_string();
    let want = Command::new(&native)
        .args([&script_s, &dir])
        .output()
        .unwrap();
    assert!(want.status.success(), "native: {want:?}");
    let got = hcr_run(&image, &[&script_s, &dir]).output().unwrap();
    assert!(got.status.success(), "hcr: {got:?}");
    assert_eq!(
        String::from_utf8_lossy(&got.stdout),
        String::from_utf8_lossy(&want.stdout)
    );
    assert!(
        got.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );

    // Live: the loop keeps its counter; print's new code runs.
    let stop = w.join("stop");
    let stop_s = stop.display().to_string();
    let mut child = Command::new(hcr_bin())
        .arg("run")
        .arg("--auto-reload")
        .arg(&image)
        .args(["--", &script_s, &dir, "live", &stop_s])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lines_of(child.stdout.take().unwrap());
    let mut seen = Vec::new();
    assert!(wait_for(&out, "tick\t5\t10", &mut seen), "{seen:?}");
    let edited = w.join("edit");
    std::fs::create_dir_all(&edited).unwrap();
    let code = std::fs::read_to_string(src.join("lbaselib.c")).unwrap();
    assert_eq!(code.matches("  lua_writeline();").count(), 1);
    std::fs::write(
        edited.join("lbaselib.c"),
        code.replace(
            "  lua_writeline();",
            "  lua_writestring(\"\\t(new)\", 6);\n  lua_writeline();",
        ),
    )
    .unwrap();
    let inc = format!("-I{}", src.display());
    compile_all(
        "cc",
        &[(edited.join("lbaselib.c"), w.join("lbaselib.o"))],
        &["-O2", "-DLUA_USE_LINUX", &inc],
    );
    hcr_link(&image, &objects, &[]);
    let reloaded = wait_for(&out, "(new)", &mut seen);
    std::fs::write(&stop, "").unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    seen.extend(out.iter());
    assert!(reloaded, "print never changed: {seen:?} {err}");
    assert!(status.success(), "{err}");
    assert!(err.is_empty(), "{err}");
    // One counter from the first line to the last: the state was kept.
    let counts: Vec<u64> = seen
        .iter()
        .filter_map(|l| l.split('\t').nth(1)?.parse().ok())
        .collect();
    assert!(counts.len() > 6, "{seen:?}");
    assert!(
        counts.windows(2).all(|p| p[1] == p[0] + 1) && counts[0] == 1,
        "the counter restarted or skipped: {counts:?}"
    );
}

/// Snappy (C++): its own unit test program, with the library's four files
/// and the test's two as modules, built with gflags (a C++ shared library
/// named with `-l gflags`) so that its micro-benchmarks can be switched off;
/// the correctness tests pass under hcr and print what they print natively.
#[test]
fn snappy_cxx_unit_tests_pass_under_hcr() {
    let src = sources(&SNAPPY).join("snappy");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // The build steps autoconf would do: the public header and config.h.
    let public = std::fs::read_to_string(src.join("snappy-stubs-public.h.in")).unwrap();
    let public = public
        .replace("@ac_cv_have_stdint_h@", "1")
        .replace("@ac_cv_have_stddef_h@", "1")
        .replace("@ac_cv_have_sys_uio_h@", "1")
        .replace("@SNAPPY_MAJOR@", "1")
        .replace("@SNAPPY_MINOR@", "1")
        .replace("@SNAPPY_PATCHLEVEL@", "3");
    std::fs::write(w.join("snappy-stubs-public.h"), public).unwrap();
    std::fs::write(
        w.join("config.h"),
        [
            "HAVE_STDINT_H",
            "HAVE_STDDEF_H",
            "HAVE_SYS_UIO_H",
            "HAVE_SYS_MMAN_H",
            "HAVE_SYS_TIME_H",
            "HAVE_SYS_RESOURCE_H",
            "HAVE_UNISTD_H",
            "HAVE_BUILTIN_CTZ",
            "HAVE_BUILTIN_EXPECT",
        ]
        .iter()
        .map(|d| format!("#define {d} 1\n"))
        .collect::<String>(),
    )
    .unwrap();
    let modules = [
        "snappy_unittest",
        "snappy",
        "snappy-sinksource",
        "snappy-stubs-internal",
        "snappy-c",
        "snappy-test",
    ];
    let jobs: Vec<(PathBuf, PathBuf)> = modules
        .iter()
        .map(|m| (src.join(format!("{m}.cc")), w.join(format!("{m}.o"))))
        .collect();
    let inc_w = format!("-I{}", w.display());
    let inc_s = format!("-I{}", src.display());
    compile_all(
        "g++",
        &jobs,
        &["-O1", "-DHAVE_CONFIG_H", "-DHAVE_GFLAGS", &inc_w, &inc_s],
    );
    let objects: Vec<PathBuf> = jobs.iter().map(|(_, o)| o.clone()).collect();
    let image = w.join("snappy_unittest.hcr");
    hcr_link(&image, &objects, &["-l", "gflags"]);
    let native = w.join("snappy_unittest");
    native_link("g++", &native, &objects, &["-lgflags"]);
    let keep = |o: &Output| -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let args = ["--run_microbenchmarks=false"];
    let want = Command::new(&native)
        .args(args)
        .current_dir(&src)
        .output()
        .unwrap();
    assert!(want.status.success(), "native: {}", keep(&want));
    let got = {
        let mut c = hcr_run(&image, &args);
        c.current_dir(&src);
        c.output().unwrap()
    };
    assert!(got.status.success(), "hcr: {}", keep(&got));
    assert!(keep(&got).contains("All tests passed."), "{}", keep(&got));
    assert_eq!(keep(&got), keep(&want));
}

const SQLITE: Crate = Crate {
    name: "libsqlite3-sys",
    version: "0.40.0",
    sha256: "b06e69070b7e12262b0cd90832f0a7396f142a2b330181255562decf9f0c6215",
};

/// SQLite 3.54.1 (the amalgamation as one module) with an in-memory
/// database held in a global, edited while it runs: a function static added
/// to `versionFunc` (gcc renumbers every static after it), the edit
/// reverted, then another function changed. After each reload the database
/// and its registered SQL functions are intact (its function hash table
/// points into statics that must keep their identity) and the queries work.
#[test]
fn sqlite_keeps_its_database_while_sqlite3_c_is_edited() {
    let src = sources(&SQLITE).join("sqlite3");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let original = std::fs::read_to_string(src.join("sqlite3.c")).unwrap();
    let version_func = "  UNUSED_PARAMETER2(NotUsed, NotUsed2);\n  /* IMP: R-48699-48617";
    assert_eq!(original.matches(version_func).count(), 1);
    let with_static = original.replace(
        version_func,
        "  static int calls;\n  calls++;\n  UNUSED_PARAMETER2(NotUsed, NotUsed2);\n  /* IMP: R-48699-48617",
    );
    let libversion = "SQLITE_API const char *sqlite3_libversion(void){ return sqlite3_version; }";
    assert_eq!(original.matches(libversion).count(), 1);
    let hot = original.replace(
        libversion,
        "SQLITE_API const char *sqlite3_libversion(void){ return \"3.54.1-hot\"; }",
    );
    // The three versions of sqlite3.c, compiled at once (about 15 s each).
    let mut jobs = Vec::new();
    for (dir, text) in [("v0", &original), ("v1", &with_static), ("v3", &hot)] {
        let d = w.join(dir);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("sqlite3.c"), text).unwrap();
        jobs.push((d.join("sqlite3.c"), d.join("sqlite3.o")));
    }
    jobs.push((
        support::repo().join("testdata/corpus/sqlite/main.c"),
        w.join("main.o"),
    ));
    let inc_src = format!("-I{}", src.display());
    let inc_hcr = format!("-I{}", support::include_dir().display());
    compile_all("cc", &jobs, &["-O1", &inc_src, &inc_hcr]);
    let image = w.join("app.hcr");
    let objects = |v: &str| vec![w.join("main.o"), w.join(v).join("sqlite3.o")];
    hcr_link(&image, &objects("v0"), &[]);
    let mut child = Command::new(hcr_bin())
        .arg("run")
        .arg(&image)
        .args(["--", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lines_of(child.stdout.take().unwrap());
    let mut seen = Vec::new();
    for (step, version) in [("v0:", "v1"), ("v1:", "v0"), ("v2:", "v3")] {
        assert!(wait_for(&out, step, &mut seen), "no {step} line: {seen:?}");
        // A new file each time (the revert too): the image changes.
        let o = w.join(format!("link-{version}"));
        std::fs::create_dir_all(&o).unwrap();
        std::fs::copy(w.join(version).join("sqlite3.o"), o.join("sqlite3.o")).unwrap();
        hcr_link(&image, &[w.join("main.o"), o.join("sqlite3.o")], &[]);
    }
    assert!(wait_for(&out, "v3:", &mut seen), "no v3 line: {seen:?}");
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{err}");
    assert_eq!(
        seen,
        [
            "v0: 3.54.1 1 0 ROW 0",
            "v1: 3.54.1 2 2 ROW 0,ROW 1",
            "v2: 3.54.1 3 6 ROW 0,ROW 1,ROW 2",
            "v3: 3.54.1-hot 4 12 ROW 0,ROW 1,ROW 2,ROW 3",
        ],
        "stderr: {err}"
    );
    assert!(
        !err.contains("starts from its initialiser"),
        "a static was reset: {err}"
    );
}
