//! `ImageView::assemble_shared`: a first load's module blocks verified and
//! decoded by two threads give the same manifest as one thread, and a bad
//! block is refused with the same error, the first in module order.

mod support;

use hcr_image::shared::{alone, Share};
use hcr_image::{ImageError, ImageView};

/// Runs the work on this thread and a second one at the same time.
fn two_threads(work: &(dyn Fn() + Sync)) {
    std::thread::scope(|s| {
        s.spawn(work);
        work();
    });
}

fn assemble<'a>(file: &'a [u8], share: Share<'_>) -> Result<ImageView<'a>, ImageError> {
    let (header, m) = ImageView::parse_global(file, None)?;
    let all = vec![true; m.modules.len()];
    ImageView::assemble_shared(file, header, m, None, &all, share)
}

/// Everything a loader takes from a module's block, as text.
fn summary(v: &ImageView<'_>) -> Vec<String> {
    let m = &v.manifest;
    (0..m.modules.len())
        .map(|mi| {
            let md = &m.modules[mi];
            let functions: Vec<String> = m
                .functions
                .part(mi)
                .iter()
                .map(|f| format!("{}@{}+{}", m.str(f.name), f.offset, f.size))
                .collect();
            let objects: Vec<String> = m
                .objects
                .part(mi)
                .iter()
                .map(|o| format!("{}:{}", m.str(o.name), o.size))
                .collect();
            // The encoded residual fixups, as the loader applies them.
            let fixups = v.module_fixups(mi);
            format!(
                "{} ctors {:?} undefined {} functions {functions:?} objects {objects:?} fixups {fixups:?}",
                m.str(md.name),
                md.ctors,
                md.undefined.len(),
            )
        })
        .collect()
}

#[test]
fn blocks_decoded_by_two_threads_match_one_and_a_bad_block_is_refused_alike() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // 40 modules (three runs of blocks) that call each other and keep
    // globals, plus `main`.
    let shape = hcr_tools::gen::Shape {
        modules: 40,
        functions: 4,
        globals: 2,
    };
    let objs = hcr_tools::gen::generate(d, shape, "-O1").unwrap();
    let image = d.join("app.hcr");
    support::link_ok(&image, &objs);
    let file = std::fs::read(&image).unwrap();

    let one = assemble(&file, &alone).expect("a sound image");
    let two = assemble(&file, &two_threads).expect("a sound image");
    assert_eq!(one.manifest.modules.len(), 41);
    let (a, b) = (summary(&one), summary(&two));
    assert_eq!(a, b, "two threads decoded other blocks than one did");
    assert!(a.iter().all(|s| s.contains("@")), "{a:?}");

    // Two modules' blocks torn: both readers name the earlier module.
    let section = hcr_image::manifest_offset(&file).unwrap() as usize;
    let block_at = |mi: usize| {
        let (off, len) = one.manifest.modules[mi].block;
        section + off as usize + len as usize / 2
    };
    let mut torn = file.clone();
    for mi in [33, 12] {
        torn[block_at(mi)] ^= 0x5a;
    }
    let want = one.manifest.str(one.manifest.modules[12].name).to_string();
    for share in [&alone as Share<'_>, &two_threads] {
        match assemble(&torn, share) {
            Err(ImageError::SegmentChecksum { module, .. }) => assert_eq!(module, want),
            Err(e) => panic!("refused for another reason: {e}"),
            Ok(_) => panic!("a torn block was accepted"),
        }
    }
}
