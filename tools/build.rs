//! `hcr` starts with the libraries a `cc`/`g++` link gives a program
//! (libm, libstdc++, libgcc_s) as `DT_NEEDED` entries: the system loader
//! maps them at start-up, before the C heap is used, as it does for a
//! native program. Loading them later with `dlopen` (after the runtime and
//! the loader had used the heap) put libstdc++'s start-up allocation (its
//! 72 KiB exception pool, a native C++ program's first heap block) above
//! other blocks, and glibc's adaptive trimming thresholds turned that other
//! heap shape into more `brk` calls and slower allocation-heavy C++
//! (tinyxml2's parse benchmark: 1.2x the native time).
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
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
    println!("cargo:rerun-if-changed=build.rs");
}
