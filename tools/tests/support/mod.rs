//! Shared test support: compiling C modules with the system `cc` (flags
//! pinned here), linking with the built `hcr-link`, running `hcr`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod live;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// Directory of `hcr.h`.
pub fn include_dir() -> PathBuf {
    repo().join("runtime/include")
}

/// The `hcr` binary under test: the one cargo built, or `$HCR_BIN` (opt-in:
/// an instrumented build, e.g. with AddressSanitizer).
pub fn hcr_bin() -> PathBuf {
    match std::env::var_os("HCR_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_hcr")),
    }
}

/// A command running the `hcr` binary under test, prefixed by the
/// whitespace-separated words of `$HCR_SCENARIO_WRAPPER` when it is set
/// (opt-in: e.g. `valgrind --error-exitcode=99 --smc-check=all
/// --leak-check=no -q`). Leaks of the test programs are out of scope (some
/// keep `malloc`ed memory in globals on purpose): unless `$ASAN_OPTIONS` is
/// set, an AddressSanitizer build of `hcr` runs with `detect_leaks=0`, as
/// valgrind runs with `--leak-check=no` (other builds ignore the variable).
pub fn hcr_command() -> Command {
    let wrapper = std::env::var("HCR_SCENARIO_WRAPPER").unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    let mut c = match words.next() {
        Some(prog) => {
            let mut c = Command::new(prog);
            c.args(words).arg(hcr_bin());
            c
        }
        None => Command::new(hcr_bin()),
    };
    if std::env::var_os("ASAN_OPTIONS").is_none() {
        c.env("ASAN_OPTIONS", "detect_leaks=0");
    }
    c
}

/// The `hcr-link` binary under test.
pub fn hcr_link_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hcr-link"))
}

/// The flags every module is compiled with.
pub fn cflags(opt: &str) -> Vec<String> {
    ["-c", "-fPIC", "-ffunction-sections", "-fdata-sections", opt]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Builds `code` as a plugin, `DIR/libNAME.so` (`cc -shared -fPIC -O2`),
/// and returns its path.
pub fn plugin(dir: &Path, name: &str, code: &str) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, code).expect("write the plugin's source");
    let out = dir.join(format!("lib{name}.so"));
    let st = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("the system C compiler `cc` must be installed");
    assert!(st.success(), "building the plugin {} failed", src.display());
    out
}

/// Compiles `src` to `out` with the module flags plus `extra`.
pub fn compile(src: &Path, out: &Path, opt: &str, extra: &[&str]) {
    compile_with("cc", src, out, opt, extra);
}

/// Compiles `src` to `out` with `compiler` (`cc`, `g++`, `clang`…), the
/// module flags and `extra`.
pub fn compile_with(compiler: &str, src: &Path, out: &Path, opt: &str, extra: &[&str]) {
    let status = Command::new(compiler)
        .args(cflags(opt))
        .arg("-I")
        .arg(include_dir())
        .arg("-I")
        .arg(repo().join("testdata/scenarios"))
        .args(extra)
        .arg(src)
        .arg("-o")
        .arg(out)
        .status()
        .unwrap_or_else(|e| panic!("the compiler `{compiler}` must be installed: {e}"));
    assert!(status.success(), "{compiler} failed on {}", src.display());
}

/// Writes C `code` to `dir/name.c` and compiles it to `dir/name.o`.
pub fn module(dir: &Path, name: &str, code: &str, opt: &str) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, code).expect("write source");
    let obj = dir.join(format!("{name}.o"));
    compile(&src, &obj, opt, &[]);
    obj
}

/// Runs `hcr-link -o out inputs...`.
pub fn link(out: &Path, inputs: &[PathBuf]) -> Output {
    link_with(out, &[], inputs)
}

/// Runs `hcr-link -o out ARGS inputs`.
pub fn link_with(out: &Path, args: &[&str], inputs: &[PathBuf]) -> Output {
    Command::new(hcr_link_bin())
        .arg("-o")
        .arg(out)
        .args(args)
        .args(inputs)
        .output()
        .expect("run hcr-link")
}

/// Links and asserts success.
/// The image `DIR/TAG.hcr` of one module `lib` built from `code` at -O2
/// (its object in `DIR/TAG/`): the shape of the reload tests' images.
pub fn lib_image(dir: &Path, tag: &str, code: &str) -> PathBuf {
    let sub = dir.join(tag);
    std::fs::create_dir_all(&sub).expect("create the image's folder");
    let o = module(&sub, "lib", code, "-O2");
    let img = dir.join(format!("{tag}.hcr"));
    link_ok(&img, &[o]);
    img
}

pub fn link_ok(out: &Path, inputs: &[PathBuf]) {
    let o = link(out, inputs);
    assert!(
        o.status.success(),
        "hcr-link failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Runs `hcr run image`.
pub fn run(image: &Path) -> Output {
    Command::new(hcr_bin())
        .arg("run")
        .arg(image)
        .output()
        .expect("run hcr")
}

/// What `readelf ARGS` prints for the ELF object `object` (written to
/// `dir/jit.o` first).
/// Images of one program whose root `main.c` stays the same while module
/// `name` goes through `versions` (`(tag, source)`): compiled with `opt`
/// and `extra` in one directory, so that main's object (debug information
/// included) is the same in each; `dir/TAG.hcr`, in order.
pub fn versioned_images(
    dir: &Path,
    main: &str,
    name: &str,
    versions: &[(&str, &str)],
    (opt, extra): (&str, &[&str]),
) -> Vec<PathBuf> {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).expect("make the source directory");
    std::fs::write(src.join("main.c"), main).expect("write main.c");
    let m = src.join("main.o");
    compile(&src.join("main.c"), &m, opt, extra);
    let c = src.join(format!("{name}.c"));
    let o = src.join(format!("{name}.o"));
    versions
        .iter()
        .map(|(tag, code)| {
            std::fs::write(&c, code).expect("write the module");
            compile(&c, &o, opt, extra);
            let img = dir.join(format!("{tag}.hcr"));
            link_ok(&img, &[m.clone(), o.clone()]);
            img
        })
        .collect()
}

/// `hcr run image -- args...`: its exit status, stdout and stderr.
pub fn run_args(image: &Path, args: &[PathBuf]) -> (std::process::ExitStatus, String, String) {
    let o = hcr_command()
        .arg("run")
        .arg(image)
        .arg("--")
        .args(args)
        .output()
        .expect("run hcr");
    (
        o.status,
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The objects registered with debuggers that describe images, newest
/// first (the others each describe a batch of trampolines: a `.plt`
/// section).
pub fn image_jit_objects() -> Vec<Vec<u8>> {
    hcr_runtime::gdb_jit::registered_objects()
        .into_iter()
        .filter(|o| !is_trampoline_object(o))
        .collect()
}

/// True for a registered object describing trampolines (its only loaded
/// section is `.plt`).
pub fn is_trampoline_object(object: &[u8]) -> bool {
    object.windows(6).any(|w| w == b"\0.plt\0")
}

pub fn readelf(args: &[&str], object: &[u8], dir: &Path) -> String {
    let f = dir.join("jit.o");
    std::fs::write(&f, object).expect("write the object");
    let o = Command::new("readelf")
        .args(args)
        .arg(&f)
        .output()
        .expect("readelf (binutils) must be installed");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs `hcr run image`, asserts that it succeeded (its stderr in the
/// message) and returns what it printed.
pub fn run_ok(image: &Path) -> String {
    let out = run(image);
    assert!(
        out.status.success(),
        "hcr run {}: {}",
        image.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `libhcr_runtime.a` of this build, for C hosts. `cargo test` builds the
/// runtime as a dependency without copying its static library beside the
/// binaries, so this asks cargo for it (a no-op when it is up to date).
pub fn runtime_staticlib() -> PathBuf {
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_hcr"))
        .parent()
        .expect("a binary directory")
        .to_path_buf();
    let lib = bin_dir.join("libhcr_runtime.a");
    let profile = if bin_dir.ends_with("release") {
        vec!["--release"]
    } else {
        vec![]
    };
    let st = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "hcr-runtime", "--lib"])
        .args(profile)
        .current_dir(repo())
        .status()
        .expect("run cargo");
    assert!(
        st.success() && lib.exists(),
        "cannot build {}",
        lib.display()
    );
    lib
}

/// Compiles the C host program `src` with `hcr.h` and links it with the
/// runtime's static library (plus `extra` flags) into `out`.
pub fn c_host(src: &Path, out: &Path, extra: &[&str]) {
    let st = Command::new("cc")
        .arg("-I")
        .arg(include_dir())
        .args(extra)
        .arg(src)
        .arg(runtime_staticlib())
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(out)
        .status()
        .expect("the system C compiler `cc` must be installed");
    assert!(st.success(), "linking the C host {} failed", src.display());
}

/// Builds `sources` twice with `compiler` and `flags`: once as a normal
/// executable, once as objects linked into an hcr image. Runs both and
/// returns (native output, `hcr run` output), for differential tests.
pub fn native_and_image(
    dir: &Path,
    compiler: &str,
    flags: &[&str],
    sources: &[PathBuf],
) -> (Output, Output) {
    let native = dir.join("native");
    let st = Command::new(compiler)
        .args(flags)
        .args(sources)
        .arg("-o")
        .arg(&native)
        .status()
        .unwrap_or_else(|e| panic!("{compiler} must be installed: {e}"));
    assert!(st.success(), "{compiler} {flags:?}: native build failed");
    let want = Command::new(&native)
        .output()
        .expect("run the native build");
    let mut objs = Vec::new();
    for src in sources {
        let o = dir
            .join(src.file_stem().expect("source name"))
            .with_extension("o");
        let st = Command::new(compiler)
            .arg("-c")
            .args(flags)
            .arg(src)
            .arg("-o")
            .arg(&o)
            .status()
            .expect("compile a module");
        assert!(
            st.success(),
            "{compiler} {flags:?}: cannot compile {}",
            src.display()
        );
        objs.push(o);
    }
    let img = dir.join("app.hcr");
    link_ok(&img, &objs);
    (want, run(&img))
}

/// Lines a child writes to a pipe, as they come (read on a thread of its
/// own, so a test can wait for one with a deadline).
pub fn lines_of(r: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead as _;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Puts `bytes` at `path` the way a linker does: a new file, renamed over
/// the old one.
pub fn install(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write the new image");
    std::fs::rename(&tmp, path).expect("rename it into place");
}

/// Runtime options for an in-process test: a 64 MiB window (the default
/// reserves far more address space than one small image needs).
pub fn small_window() -> hcr_runtime::Options {
    hcr_runtime::Options {
        window_size: 64 << 20,
        ..hcr_runtime::Options::default()
    }
}

/// The `hcr-link --incremental` servers whose working directory is `dir`.
pub fn servers_in(dir: &Path) -> Vec<u32> {
    // A folder removed or not made yet is named as given.
    let Ok(dir) = dir.canonicalize().or_else(|_| std::path::absolute(dir)) else {
        return Vec::new();
    };
    // A server whose folder was removed works on in it, named so.
    let removed = PathBuf::from(format!("{} (deleted)", dir.display()));
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let is_server = cmd.split(|&b| b == 0).any(|a| a == b"--incremental-server");
        if is_server
            && std::fs::read_link(e.path().join("cwd")).is_ok_and(|c| c == dir || c == removed)
        {
            found.push(pid);
        }
    }
    found
}

/// Downloads `url` to `to` with curl, retrying whatever fails (a network
/// error as well as a server's), and fails the test when it cannot.
pub fn download(url: &str, to: &Path) {
    let ok = Command::new("curl")
        .args([
            "-sSfL",
            "--retry",
            "5",
            "--retry-all-errors",
            "--retry-delay",
            "2",
            "-o",
        ])
        .arg(to)
        .arg(url)
        .status()
        .expect("curl must be installed (.ci/run installs it)");
    assert!(ok.success(), "cannot download {url}");
}

/// Calls `f` every 50 ms until it gives a value or `secs` seconds passed
/// (on a loaded machine a program, a reload or a browser may take many
/// seconds).
pub fn within<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The perf map (`hcr run --perf-map`) of process `pid`.
pub fn perf_map_of(pid: impl std::fmt::Display) -> PathBuf {
    PathBuf::from(format!("/tmp/perf-{pid}.map"))
}

/// Rewrites `path` in place, as `cp` does: truncate, then `bytes` in
/// writes of `chunk` with the processor given away between them, so
/// readers see every partial state.
pub fn rewrite_in_place(path: &Path, bytes: &[u8], chunk: usize) {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    for c in bytes.chunks(chunk) {
        f.write_all(c).unwrap();
        std::thread::yield_now();
    }
}
