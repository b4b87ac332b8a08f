//! `ImageView::content_checksum`: the image's content identity (the
//! manifest's global part, checksum verified, not decoded), which the change
//! check compares when a file status cannot vouch for the file.

mod support;

use hcr_image::{ImageError, ImageView};

#[test]
fn the_content_checksum_names_the_content_and_refuses_a_torn_global_part() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let read = |p: std::path::PathBuf| std::fs::read(p).unwrap();
    let v1 = read(support::lib_image(
        d,
        "v1",
        "int value(void) { return 1; }\n",
    ));
    // The same object linked again.
    support::link_ok(&d.join("again.hcr"), &[d.join("v1").join("lib.o")]);
    let again = read(d.join("again.hcr"));
    let v2 = read(support::lib_image(
        d,
        "v2",
        "int value(void) { return 2; }\n",
    ));
    let sum = |b: &[u8]| ImageView::content_checksum(b).expect("a sound image");
    // The header's stored checksum, for the same bytes the full parse
    // verifies.
    assert_eq!(sum(&v1), ImageView::parse(&v1).unwrap().header.checksum);
    assert_eq!(sum(&v1), sum(&again), "the same content links the same");
    assert_ne!(sum(&v1), sum(&v2), "changed code changes the identity");
    // A byte of the global part changed (as a torn rewrite leaves it):
    // refused, not taken for either image.
    let at = hcr_image::manifest_offset(&v1).unwrap() as usize;
    let header = ImageView::parse_header(&v1).unwrap();
    let middle = at + hcr_image::HEADER_SIZE + header.body_len as usize / 2;
    let mut torn = v1.clone();
    torn[middle] ^= 0xff;
    let r = ImageView::content_checksum(&torn);
    assert!(matches!(r, Err(ImageError::Checksum { .. })), "{r:?}");
    // Not an image at all.
    assert!(ImageView::content_checksum(b"not an image").is_err());
}
