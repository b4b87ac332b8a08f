//! `hcr run IMAGE [-- ARGS...]`: load an image and call the root's `main`.

use std::path::Path;

use anyhow::Context as _;

/// Loads `image`, runs top-level code, calls `main(argc, argv)` with
/// `argv[0]` = the image path, and returns `main`'s result.
///
/// # Errors
/// The image cannot be loaded.
pub fn run(image: &Path, args: &[String]) -> anyhow::Result<i32> {
    let rt = hcr_runtime::Runtime::open(image)
        .with_context(|| format!("cannot load {}", image.display()))?;
    let mut argv = vec![image.display().to_string()];
    argv.extend(args.iter().cloned());
    let code = rt.run_main(&argv);
    // The program's own state (stdio buffers, atexit handlers) is flushed by
    // the process exit; the images stay mapped until then.
    std::mem::forget(rt);
    Ok(code)
}
