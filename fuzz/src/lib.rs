//! The fuzz harnesses, shared by the cargo-fuzz targets (`fuzz_targets/`),
//! the corpus replayer (`examples/replay.rs`) and the regression test
//! `tools/tests/fuzz_regressions.rs` (which includes this file with
//! `#[path]`), so a crash found by the fuzzer is replayed through exactly
//! the same code path.
//!
//! Both harnesses only need "no panic, no crash, no hang": every input must
//! give a result or an error.

use std::cell::RefCell;
use std::path::PathBuf;

use hcr_image::{ImageView, ObjectId};
use hcr_loader::{Tables, Window};

/// How [`link_object`] reads its input: the first byte selects the mode.
const MODE_OBJECT: u8 = 0;
const MODE_ARCHIVE: u8 = 1;
const MODE_OBJECT_AND_ARCHIVE: u8 = 2;

const AR_MAGIC: &[u8] = b"!<arch>\n";

/// Links fuzz input with `hcr_linker::link_memory`. Byte 0 selects the mode
/// (`% 3`), the rest is the payload:
/// - 0: the payload is one object file;
/// - 1: the payload is an `ar` archive (its magic prepended when missing, so
///   every input of this mode reaches the archive reader);
/// - 2: a little-endian `u16` length `n`, `n` bytes of object, then the rest
///   as an archive (members are pulled for the object's undefined symbols).
///
/// When the link succeeds, the image it wrote must parse. Returns true when
/// the input linked.
pub fn link_object(data: &[u8]) -> bool {
    let Some((&mode, payload)) = data.split_first() else {
        return false;
    };
    let archive = |bytes: &[u8]| -> Vec<u8> {
        if bytes.starts_with(AR_MAGIC) || bytes.starts_with(b"!<thin>\n") {
            bytes.to_vec()
        } else {
            [AR_MAGIC, bytes].concat()
        }
    };
    let inputs: Vec<(PathBuf, Vec<u8>)> = match mode % 3 {
        MODE_OBJECT => vec![("fuzz.o".into(), payload.to_vec())],
        MODE_ARCHIVE => vec![("libfuzz.a".into(), archive(payload))],
        MODE_OBJECT_AND_ARCHIVE => {
            let (n, rest) = match payload {
                [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
                _ => return false,
            };
            let n = n.min(rest.len());
            vec![
                ("fuzz.o".into(), rest[..n].to_vec()),
                ("libfuzz.a".into(), archive(&rest[n..])),
            ]
        }
        _ => unreachable!(),
    };
    match hcr_linker::link_memory(&hcr_linker::LinkConfig::default(), inputs) {
        Ok(out) => {
            if let Err(e) = ImageView::parse(&out.bytes) {
                panic!("hcr-link wrote an image that does not parse: {e}");
            }
            true
        }
        Err(_) => false,
    }
}

/// Bytes of address space reserved for [`image_parse`]'s window (reserved
/// once per thread; a load commits only the pages of its area).
const WINDOW_SIZE: usize = 8 << 20;

thread_local! {
    static WINDOW: RefCell<Option<Window>> = const { RefCell::new(None) };
}

/// Feeds image bytes to `ImageView::parse`. An input refused only for its
/// checksum is parsed again with the checksum fixed up, so that mutations
/// reach the manifest decoder, the validator and the loader. Whatever
/// parses is loaded with `hcr_loader::load_area` into a small window (every
/// module's fixups applied, every table entry pointing into the window),
/// its writable objects' pointer fields computed and written as the runtime
/// does, and unloaded again. Returns true when the area was loaded.
pub fn image_parse(data: &[u8]) -> bool {
    match ImageView::parse(data) {
        Ok(view) => load(&view),
        Err(hcr_image::ImageError::Checksum { .. }) => with_valid_checksum(data)
            .is_some_and(|fixed| ImageView::parse(&fixed).is_ok_and(|view| load(&view))),
        Err(_) => false,
    }
}

/// A copy of `data` whose stored checksum matches its contents, or `None`
/// when the manifest header cannot be found.
pub fn with_valid_checksum(data: &[u8]) -> Option<Vec<u8>> {
    let mut fixed = data.to_vec();
    hcr_image::reseal(&mut fixed).ok()?;
    Some(fixed)
}

fn load(view: &ImageView<'_>) -> bool {
    let _ = view.manifest.init_order();
    WINDOW.with(|w| {
        let mut w = w.borrow_mut();
        if w.is_none() {
            *w = Some(Window::reserve(WINDOW_SIZE).expect("reserve the fuzz window"));
        }
        let window = w.as_mut().expect("window");
        let free_before = window.free_bytes();
        // Every function, global and host symbol at the window's base: in
        // reach of every 32-bit PC-relative fixup, so fixups are applied
        // (and their places bounds-checked) rather than refused as out of
        // range.
        let at = window.base() as u64;
        let m = &view.manifest;
        let tables = Tables {
            functions: vec![at; m.functions.len()].into(),
            objects: vec![at; m.objects.len()],
            hosts: vec![at; m.hosts.len()],
        };
        let apply = vec![true; m.modules.len()];
        let loaded = hcr_loader::load_area(window, view, &tables, &apply);
        let ok = loaded.is_ok();
        if let Ok(area) = loaded {
            assert!(
                window.contains(area.base) && window.contains(area.base + area.len() - 1),
                "the load area lies outside the window"
            );
            objects(
                view,
                &tables,
                &hcr_loader::Placement::contiguous(&view.manifest, area.base as u64),
            );
            // SAFETY: nothing ever runs in or points into the area: the
            // harness only loaded it.
            unsafe { hcr_loader::unload_area(window, area) };
        }
        assert_eq!(window.free_bytes(), free_before, "window pages leaked");
        ok
    })
}

/// Initial bytes and pointer fields of every writable object, written as the
/// runtime writes them into persistent storage (`write_value` refuses a
/// field outside the object).
fn objects(view: &ImageView<'_>, tables: &Tables, place: &hcr_loader::Placement) {
    const MAX_OBJECT: u64 = 1 << 20;
    for (oi, o) in view.manifest.objects.iter().enumerate() {
        let mut storage = vec![0u8; o.size.min(MAX_OBJECT) as usize];
        let dest = storage.as_ptr() as u64;
        let Ok(values) = hcr_loader::object_values(view, ObjectId(oi as u32), dest, tables, place)
        else {
            continue;
        };
        if o.size > MAX_OBJECT {
            continue;
        }
        if let Some(init) = view.initial_bytes(o) {
            storage.copy_from_slice(init);
        }
        for f in &values {
            let _ = hcr_loader::write_value(&mut storage, f.offset as usize, f.kind, f.value);
        }
    }
}

/// Harness: the input as one request line to the control endpoint's parser
/// (`hcr_runtime::control::handle`, no program loaded: every request is
/// parsed and refused or answered). Every input must get exactly one `ok`
/// or one-line `err` reply. True when the reply is `ok`.
pub fn control_request(data: &[u8]) -> bool {
    let Ok(line) = std::str::from_utf8(data) else {
        return false;
    };
    let line = line.trim_end_matches(['\n', '\r']);
    let reply = hcr_runtime::control::handle(line);
    let ok = reply.ends_with("ok\n");
    assert!(
        ok || (reply.starts_with("err ")
            && reply.matches('\n').count() == 1
            && reply.ends_with('\n')),
        "malformed reply {reply:?}"
    );
    ok
}
