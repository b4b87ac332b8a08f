//! Images anyone else could have replaced are refused (with an opt-out);
//! hcr-link never writes a group- or world-writable image.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

fn image(d: &std::path::Path) -> std::path::PathBuf {
    let o = support::module(
        d,
        "main",
        "#include <stdio.h>\nint main(void){ puts(\"ran\"); return 0; }",
        "-O2",
    );
    let img = d.join("app.hcr");
    support::link_ok(&img, &[o]);
    img
}

#[test]
fn images_are_written_without_group_or_world_write_whatever_the_umask() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let o = support::module(d, "main", "int main(void){ return 0; }", "-O2");
    let img = d.join("app.hcr");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 000 && '{}' -o '{}' '{}'",
            support::hcr_link_bin().display(),
            img.display(),
            o.display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(std::fs::metadata(&img).unwrap().mode() & 0o022, 0);
}

#[test]
fn writable_images_are_refused_unless_allowed() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let img = image(d);
    std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o666)).unwrap();
    let o = support::run(&img);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("refusing to load an image writable by group or others (mode 666)"),
        "{err}"
    );
    assert!(err.contains("--allow-insecure-image"), "{err}");
    assert!(o.stdout.is_empty(), "no code may run");
    let ok = Command::new(support::hcr_bin())
        .args(["run", "--allow-insecure-image"])
        .arg(&img)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "ran\n");
    let env = Command::new(support::hcr_bin())
        .arg("run")
        .arg(&img)
        .env("HCR_ALLOW_INSECURE_IMAGE", "1")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&env.stdout), "ran\n");
}

#[test]
fn images_owned_by_another_user_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let img = image(d);
    // Only root can give a file away; elsewhere this check cannot be staged.
    let chown = Command::new("chown")
        .arg("12345")
        .arg(&img)
        .output()
        .unwrap();
    if !chown.status.success() {
        eprintln!(
            "skipped: cannot chown (not root): {}",
            String::from_utf8_lossy(&chown.stderr)
        );
        return;
    }
    let o = support::run(&img);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("refusing to load an image owned by another user (uid 12345"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
}
