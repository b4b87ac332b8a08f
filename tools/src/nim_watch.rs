//! `hcr watch DIR` on a Nim project (DIR holds `main.nim` and no `main.c`):
//! Nim's own incremental build into `DIR/.hcr/nimcache` (`nim c
//! --noLinking:on`, which recompiles only the changed C files), then an
//! in-process link of every object with root `@mmain.nim`.
//!
//! `import hotcodereloading` gets the project's module (nimhcr's API on
//! hcr.h): hcr watch writes it to `DIR/.hcr/nim/` and names that folder in a
//! Nim user configuration of its own (`XDG_CONFIG_HOME=DIR/.hcr/nimcfg`),
//! which Nim reads after its standard library's paths, so it comes first
//! (a `--path` on the command line would come after the standard library's
//! inert module of the same name). A failed build prints Nim's errors and
//! links nothing: the program keeps running the last good code.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The project's Nim API module, written to `DIR/.hcr/nim/`.
pub const HOTCODERELOADING_NIM: &str = include_str!("../../runtime/nim/hotcodereloading.nim");

/// The Nim main module whose presence (without `main.c`) makes DIR a Nim
/// project.
pub const NIM_MAIN: &str = "main.nim";

/// True when `dir` is a Nim project: `main.nim` and no `main.c`.
pub fn is_nim_project(dir: &Path) -> bool {
    dir.join(NIM_MAIN).is_file() && !dir.join("main.c").exists()
}

/// True for the files a Nim build depends on (`.nim`, `.nims`, `nim.cfg`,
/// `*.nim.cfg`, C sources and headers it may `{.compile.}` or include).
pub fn tracked(name: &str, ext: &str) -> bool {
    matches!(ext, "nim" | "nims" | "c" | "h") || name == "nim.cfg" || name.ends_with(".nim.cfg")
}

/// hcr watch's Nim build.
pub struct NimBuild {
    dir: PathBuf,
    out: PathBuf,
    /// The image hcr watch writes.
    pub image: PathBuf,
    inputs: hcr_linker::InputCache,
    /// Nim's last failure output, printed once.
    failed: Option<String>,
}

impl NimBuild {
    /// A build of the Nim project in `dir`, writing into `out` (`DIR/.hcr`).
    ///
    /// # Errors
    /// The API module or the configuration cannot be written.
    pub fn new(dir: &Path, out: &Path) -> anyhow::Result<NimBuild> {
        use anyhow::Context as _;
        let api = out.join("nim");
        let cfg = out.join("nimcfg").join("nim");
        std::fs::create_dir_all(&api)
            .and_then(|()| std::fs::create_dir_all(&cfg))
            .and_then(|()| std::fs::write(api.join("hotcodereloading.nim"), HOTCODERELOADING_NIM))
            .and_then(|()| {
                std::fs::write(
                    cfg.join("nim.cfg"),
                    format!("--path:\"{}\"\n", api.display()),
                )
            })
            .with_context(|| format!("cannot write Nim's configuration in {}", out.display()))?;
        Ok(NimBuild {
            dir: dir.to_path_buf(),
            out: out.to_path_buf(),
            image: out.join("main.hcr"),
            inputs: hcr_linker::InputCache::default(),
            failed: None,
        })
    }

    /// Builds with Nim, links; true when a new image was written.
    pub fn build(&mut self, running: bool, log: &mut dyn Write) -> bool {
        let consequence = if running {
            "the program keeps running the previous code"
        } else {
            "fix it and save; the program starts after the first good build"
        };
        let nimcache = self.out.join("nimcache");
        let started = Instant::now();
        let out = Command::new("nim")
            .current_dir(&self.dir)
            .env("XDG_CONFIG_HOME", self.out.join("nimcfg"))
            .arg("c")
            .args(["--hints:off", "--noLinking:on", "--colors:off"])
            .arg(format!("--nimcache:{}", nimcache.display()))
            .arg("--passC:-fPIC -ffunction-sections -fdata-sections")
            .arg(NIM_MAIN)
            .stdin(Stdio::null())
            .output();
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                let _ = writeln!(log, "hcr watch: cannot run nim: {e}");
                return false;
            }
        };
        if !out.status.success() {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if self.failed.as_deref() != Some(text.as_str()) {
                let _ = writeln!(log, "hcr watch: nim c failed; {consequence}:");
                let _ = log.write_all(text.as_bytes());
                self.failed = Some(text);
            }
            return false;
        }
        self.failed = None;
        let compile_time = started.elapsed();
        let objects = match link_list(&nimcache) {
            Ok(o) => o,
            Err(e) => {
                let _ = writeln!(log, "hcr watch: {e}");
                return false;
            }
        };
        let cfg = hcr_linker::LinkConfig {
            root: Some("@mmain.nim".to_string()),
            ..Default::default()
        };
        let started = Instant::now();
        // Init000 guarded for new globals (see `nim_init`).
        let nim = crate::nim_init::prepare(&objects);
        for w in &nim.warnings {
            let _ = writeln!(log, "hcr watch: warning: {w}");
        }
        match hcr_linker::link_cached(&cfg, &nim.inputs, &self.image, &mut self.inputs) {
            Ok(out) => {
                for w in &out.warnings {
                    let _ = writeln!(log, "hcr watch: warning: {w}");
                }
                let _ = writeln!(
                    log,
                    "hcr watch: nim c took {} ms, linked {} modules in {} ms{}",
                    compile_time.as_millis(),
                    out.modules,
                    started.elapsed().as_millis(),
                    if running { ": the program reloads" } else { "" }
                );
                true
            }
            Err(e) => {
                let _ = writeln!(log, "hcr watch: link failed; {consequence}:\n{e}");
                false
            }
        }
    }
}

/// The objects of Nim's last build: the `link` list of `main.json` in the
/// nimcache (stale objects of modules no longer imported stay out).
fn link_list(nimcache: &Path) -> Result<Vec<PathBuf>, String> {
    let path = nimcache.join("main.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let list = json
        .get("link")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| format!("{}: no link list", path.display()))?;
    list.iter()
        .map(|v| {
            v.as_str()
                .map(PathBuf::from)
                .ok_or_else(|| format!("{}: a link entry is not a path", path.display()))
        })
        .collect()
}
