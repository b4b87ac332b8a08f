//! A program under `hcr run --control` for the live-state tests: module
//! `main` (the test's driver, which prints `ready` and then answers lines
//! on stdin) and module `lib`, with a runtime directory of its own.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct Program {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    /// `XDG_RUNTIME_DIR` of the program and of every `hcr` run against it.
    pub runtime_dir: PathBuf,
    pub image: PathBuf,
    pub dir: PathBuf,
    /// Source of module `main`.
    main: &'static str,
}

impl Program {
    /// Links `main` and `lib` (`code`, compiled with `opt` and `extra`) in
    /// `t` and starts them under `hcr run --control`; returns once the
    /// program said `ready`.
    pub fn start(t: &Path, main: &'static str, code: &str, opt: &str, extra: &[&str]) -> Program {
        let runtime_dir = t.join("run");
        std::fs::create_dir(&runtime_dir).unwrap();
        // Traversable by everyone: only the socket directory's own mode
        // keeps other users out.
        std::fs::set_permissions(t, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&runtime_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let image = t.join("app.hcr");
        link_image(t, &image, main, ("v1", code, opt, extra));
        let mut child = super::hcr_command()
            .env("XDG_RUNTIME_DIR", &runtime_dir)
            .arg("run")
            .arg("--control")
            .arg(&image)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = super::lines_of(child.stdout.take().unwrap());
        let p = Program {
            child,
            lines,
            runtime_dir,
            image,
            dir: t.to_path_buf(),
            main,
        };
        assert_eq!(p.line(), "ready");
        p
    }

    /// The program's next line of output.
    pub fn line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the program answers")
    }

    /// Sends one line to the program and returns its answer.
    pub fn send(&mut self, cmd: &str) -> String {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(cmd.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
        self.line()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs `hcr args...` against the program's runtime directory.
    pub fn hcr(&self, args: &[&str]) -> Output {
        super::hcr_command()
            .env("XDG_RUNTIME_DIR", &self.runtime_dir)
            .args(args)
            .output()
            .unwrap()
    }

    /// Links version `code` of `lib` (compiled with `opt` and `extra`)
    /// into the image, in subdirectory `tag`.
    pub fn install(&self, tag: &str, code: &str, opt: &str, extra: &[&str]) {
        link_image(&self.dir, &self.image, self.main, (tag, code, opt, extra));
    }
}

/// Builds `main` and version `tag` of `lib` (`code`, compiled with `opt`
/// and `extra`) in `dir/tag` and puts the image at `image` by renaming.
fn link_image(
    dir: &Path,
    image: &Path,
    main: &str,
    (tag, code, opt, extra): (&str, &str, &str, &[&str]),
) {
    let sub = dir.join(tag);
    std::fs::create_dir_all(&sub).unwrap();
    let m = super::module(&sub, "main", main, "-O1");
    let src = sub.join("lib.c");
    std::fs::write(&src, code).unwrap();
    let l = sub.join("lib.o");
    super::compile(&src, &l, opt, extra);
    let tmp = dir.join("tmp.hcr");
    super::link_ok(&tmp, &[m, l]);
    std::fs::rename(&tmp, image).unwrap();
}
