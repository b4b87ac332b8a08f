//! Link arguments for two of the package's binaries.
//!
//! `hcr` starts with the libraries a `cc`/`g++` link gives a program
//! (libm, libstdc++, libgcc_s) as `DT_NEEDED` entries: the system loader
//! maps them at start-up, before the C heap is used, as it does for a
//! native program. Loading them later with `dlopen` (after the runtime and
//! the loader had used the heap) put libstdc++'s start-up allocation (its
//! 72 KiB exception pool, a native C++ program's first heap block) above
//! other blocks, and glibc's adaptive trimming thresholds turned that other
//! heap shape into more `brk` calls and slower allocation-heavy C++
//! (tinyxml2's parse benchmark: 1.2x the native time).
//!
//! `hcr-link` is a static PIE where the C toolchain has glibc's and
//! libgcc's static archives (see [`static_hcr_link`]).
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if linux {
        for arg in [
            "-Wl,--push-state,--no-as-needed",
            "-lstdc++",
            "-lm",
            "-Wl,--pop-state",
            // Its `pthread_create` (src/bin/hcr.rs) is the process's.
            "-Wl,--export-dynamic-symbol=pthread_create",
        ] {
            println!("cargo:rustc-link-arg-bin=hcr={arg}");
        }
    }
    if linux && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu") {
        static_hcr_link();
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=HCR_LINK_DYNAMIC");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
}

/// Links `hcr-link` as a static PIE. A build system starts it once per
/// link, and with `--incremental` the process is most of what the command
/// costs: dynamically linked, the system loader mapped and relocated libc
/// and libgcc_s before `main` (`hcr-link --version` 2.4 ms against 1.6 ms
/// static, `/bin/true` 1.0 ms; BENCHMARKS.md, "A static `hcr-link`").
/// `hcr-link` opens no library and looks up no user or host, so nothing it
/// does needs the dynamic loader. (`hcr` stays dynamic: it loads the
/// program's libraries with `dlopen`.)
///
/// rustc's `crt-static` target feature would do this, but it applies to
/// every crate of a build, `hcr` included. So the binary gets two link
/// arguments: `-static-pie`, and a search folder ahead of the system's in
/// which the libraries rustc names for a dynamic link (`-lgcc_s`, `-lc`,
/// `-lm`) are linker scripts naming the static archives, as rustc's
/// `crt-static` link names them (`-lgcc_eh -lgcc -lc`). Where `cc` does not
/// find an archive or the static PIE's start file (or `HCR_LINK_DYNAMIC=1`),
/// `hcr-link` is linked as every other binary.
fn static_hcr_link() {
    if std::env::var_os("HCR_LINK_DYNAMIC").is_some_and(|v| v == "1") {
        return;
    }
    let cc = std::env::var_os("RUSTC_LINKER").unwrap_or_else(|| "cc".into());
    let archive = |name: &str| -> Option<PathBuf> {
        let out = Command::new(&cc)
            .arg(format!("-print-file-name={name}"))
            .output()
            .ok()?;
        let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
        // (`cc` prints the bare name for a file it does not find.)
        (out.status.success() && path.is_absolute() && path.is_file()).then_some(path)
    };
    let files = ["libc.a", "libm.a", "libgcc.a", "libgcc_eh.a", "rcrt1.o"];
    let Some([c, m, gcc, gcc_eh, _start]) = files
        .map(archive)
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .and_then(|found| <[PathBuf; 5]>::try_from(found).ok())
    else {
        println!(
            "cargo:warning=hcr-link is linked dynamically: `cc` finds no static libc, libm or libgcc, or no rcrt1.o"
        );
        return;
    };
    // (Quoted: a path may hold spaces.)
    let show = |p: &Path| format!("\"{}\"", p.display());
    let Some(dir) = std::env::var_os("OUT_DIR").map(|d| PathBuf::from(d).join("static-hcr-link"))
    else {
        return;
    };
    let scripts = [
        (
            "libgcc_s.so",
            format!("INPUT({} {})\n", show(&gcc_eh), show(&gcc)),
        ),
        (
            "libc.so",
            format!("GROUP({} {} {})\n", show(&c), show(&gcc_eh), show(&gcc)),
        ),
        ("libm.so", format!("INPUT({})\n", show(&m))),
    ];
    let written = std::fs::create_dir_all(&dir).is_ok()
        && scripts
            .iter()
            .all(|(name, text)| std::fs::write(dir.join(name), text).is_ok());
    if !written {
        println!(
            "cargo:warning=hcr-link is linked dynamically: {} could not be written",
            dir.display()
        );
        return;
    }
    println!("cargo:rustc-link-arg-bin=hcr-link=-L{}", dir.display());
    println!("cargo:rustc-link-arg-bin=hcr-link=-static-pie");
}
