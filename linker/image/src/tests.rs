use super::*;
use proptest::prelude::*;

fn arb_fixup() -> impl Strategy<Value = Fixup> {
    (
        0u32..4096,
        0u32..4,
        any::<i32>(),
        prop_oneof![
            Just(FixupKind::Abs64),
            Just(FixupKind::Pc32),
            Just(FixupKind::Pc64),
            Just(FixupKind::Abs32),
            Just(FixupKind::Abs32S),
            Just(FixupKind::AreaRel64)
        ],
        prop_oneof![
            Just(TargetClass::Area),
            Just(TargetClass::Function),
            Just(TargetClass::Object),
            Just(TargetClass::Host)
        ],
    )
        .prop_map(|(offset, target, addend, kind, class)| Fixup {
            offset,
            target,
            addend,
            kind,
            class,
        })
}

fn arb_module() -> impl Strategy<Value = (String, String, Module)> {
    (
        "[a-z_][a-z0-9_]{0,12}",
        ".{0,20}",
        any::<i64>(),
        any::<u64>(),
        prop::collection::vec(0u32..4, 0..4),
        any::<bool>(),
        prop::collection::vec(0u32..64, 0..3),
        (
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(0u32..4, 0..3),
        ),
    )
        .prop_map(
            |(
                name,
                source,
                mtime_ns,
                content_hash,
                imports,
                reachable,
                ctors,
                (checksum, link_hash, deps),
            )| {
                let mut md = Module::new(ModuleRecord {
                    mtime_ns,
                    content_hash,
                    imports: imports.into_iter().map(ModuleId).collect(),
                    ctors: ctors.clone().into(),
                    on_reload: ctors.into(),
                    undefined: vec![HostId(0)].into(),
                    checksum,
                    link_hash,
                    deps: deps.into_iter().map(ModuleId).collect(),
                    text_size: 10,
                    rodata_size: 3,
                    ..ModuleRecord::default()
                });
                md.seg = Span::new(0, 64);
                md.text = Span::new(0, 32);
                md.eh_frame = Span::new(60, 64);
                md.init = (0, 8);
                md.reachable = reachable;
                (name, source, md)
            },
        )
}

/// Decodes an encoded body the way a full parse does, without the checks
/// that need a file around it.
fn decode(body: &[u8], global_len: usize) -> (Manifest, Vec<Vec<Fixup>>, Vec<Vec<Fixup>>) {
    let mut section = vec![0u8; HEADER_SIZE];
    section.extend_from_slice(body);
    let g = codec::decode_index(&body[..global_len]).unwrap();
    let mut m = g.finish(&section, None).unwrap();
    let mut parts = codec::Parts::with_capacity(1);
    for mi in 0..m.modules.len() {
        let (off, len) = m.modules[mi].block;
        let at = off as usize - HEADER_SIZE;
        let b = codec::decode_block(&body[at..at + len as usize], mi).unwrap();
        parts.add(mi, &mut m.modules[mi], b);
    }
    parts.finish(&mut m, None);
    let fx = parts
        .fixups
        .iter()
        .map(|(_, f)| f.all().collect())
        .collect();
    let ofx = parts
        .object_fixups
        .iter()
        .map(|(_, f)| f.all().collect())
        .collect();
    (m, fx, ofx)
}

proptest! {
    #[test]
    fn manifest_round_trips(
        modules in prop::collection::vec(arb_module(), 1..5),
        fixups in prop::collection::vec(arb_fixup(), 0..50),
        ofixups in prop::collection::vec(arb_fixup(), 0..10),
        fname in "[a-z]{1,8}",
    ) {
        let mut m = Manifest {
            root: ModuleId(0),
            layout: Layout { area_size: 8192 },
            stats: PlanStats { relocations: 9, applied_at_link: 4, got_entries: 1, plt_stubs: 2 },
            ..Manifest::default()
        };
        let (mut funcs, mut objs) = (Vec::new(), Vec::new());
        let n = modules.len();
        for (i, (name, source, mut md)) in modules.into_iter().enumerate() {
            md.name = m.intern(&name);
            md.source = m.intern(&source);
            md.object = m.intern("x.o");
            md.functions = Span::new(i as u32, i as u32 + 1);
            md.objects = Span::new(i as u32, i as u32 + 1);
            let clone = m.intern(&format!("{fname}.constprop.{i}"));
            md.clones = (0..i as u32).map(|k| CodePart { name: clone, offset: 24 + k, size: 3 }).collect();
            m.modules.push(md);
            let f = m.intern(&fname);
            funcs.push(Function { name: f, module: ModuleId(i as u32), offset: 16, size: 5, global: true, hidden: false, indirect: false });
            let o = m.intern("o");
            objs.push(Object { name: o, module: ModuleId(i as u32), size: 8, align: 8, init: Some(0), fixups: Span::new(0, ofixups.len() as u32), global: false, ..Default::default() });
        }
        m.functions = Chunked::from_vec(funcs, vec![1; n]);
        m.objects = Chunked::from_vec(objs, vec![1; n]);
        let p = m.intern("printf");
        m.hosts.push(HostSymbol { name: p, weak: false, listed: true });
        let init = vec![7u8; 8];
        let fx = |_: usize| ModuleFixups { area: &fixups, objects: &ofixups };
        let (body, global_len) = encode_body(&m, &fx, &init);
        let (back, bf, bof) = decode(&body, global_len);
        // Same names, fields and fixups: encoding the decoded manifest
        // gives the same bytes.
        let fx2 = |i: usize| ModuleFixups { area: &bf[i], objects: &bof[i] };
        let (again, _) = encode_body(&back, &fx2, &init);
        prop_assert_eq!(&again, &body);
        prop_assert_eq!(back.modules.len(), n);
        prop_assert_eq!(back.str(back.functions[n - 1].name), fname.as_str());
        prop_assert_eq!(&bf[0], &fixups);
        prop_assert_eq!(&bof[n - 1], &ofixups);
        for (a, b) in back.modules.iter().zip(&m.modules) {
            prop_assert_eq!(back.str(a.name), m.str(b.name));
            prop_assert_eq!(&a.imports, &b.imports);
            prop_assert_eq!(&a.deps, &b.deps);
            prop_assert_eq!(a.link_hash, b.link_hash);
            prop_assert_eq!(&a.ctors, &b.ctors);
            prop_assert_eq!(a.clones.len(), b.clones.len());
            for (ca, cb) in a.clones.iter().zip(b.clones.iter()) {
                prop_assert_eq!(back.str(ca.name), m.str(cb.name));
                prop_assert_eq!((ca.offset, ca.size), (cb.offset, cb.size));
            }
        }
    }

    #[test]
    fn decoding_garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(g) = codec::decode_index(&bytes) {
            let _ = g.finish(&bytes, None);
        }
        let _ = codec::decode_block(&bytes, 0);
        let _ = ImageView::parse(&bytes);
    }
}

#[test]
fn header_round_trips() {
    let h = Header {
        version: FORMAT_VERSION,
        checksum: 0x1234,
        body_len: 77,
        area_file_offset: 4096,
        area_file_size: 100,
        init_file_offset: 8192,
        init_file_size: 3,
    };
    let enc = codec::encode_header(&h);
    assert_eq!(enc.len(), HEADER_SIZE);
    assert_eq!(codec::decode_header(&enc).unwrap(), h);
}

#[test]
fn init_order_is_dfs_post_order() {
    // A imports B, C; B imports C: C, B, A.
    let mut m = Manifest::default();
    for (name, imports) in [
        ("a", vec![1, 2]),
        ("b", vec![2]),
        ("c", vec![]),
        ("d", vec![]),
    ] {
        let name = m.intern(name);
        m.modules.push(Module::new(ModuleRecord {
            name,
            imports: imports.into_iter().map(ModuleId).collect(),
            ..ModuleRecord::default()
        }));
    }
    let names: Vec<_> = m
        .init_order()
        .iter()
        .map(|&i| m.module_name(i).to_string())
        .collect();
    assert_eq!(names, ["c", "b", "a"]);
}

/// One module of a test manifest.
#[derive(Clone, Copy)]
struct Spec {
    seg_len: u32,
    functions: u32,
    /// Bytes of initial data (none: its object is zero-filled).
    init_len: u64,
    text_size: u32,
    /// It imports the module after it.
    imports_next: bool,
}

/// A manifest of one module per spec, each with one object, laid out one
/// after the other.
fn manifest_of(specs: &[Spec]) -> Manifest {
    let mut m = Manifest {
        root: ModuleId(0),
        ..Manifest::default()
    };
    let (mut funcs, mut objs, mut mods) = (Vec::new(), Vec::new(), Vec::new());
    let (mut at, mut f, mut init) = (0u32, 0u32, 0u64);
    let n = specs.len();
    for (i, sp) in specs.iter().enumerate() {
        let name = m.intern(&format!("m{i}"));
        let mut md = Module::new(ModuleRecord {
            name,
            text_size: sp.text_size,
            imports: (sp.imports_next && i + 1 < n)
                .then(|| ModuleId(i as u32 + 1))
                .into_iter()
                .collect(),
            ..ModuleRecord::default()
        });
        let len = sp.seg_len;
        md.seg = Span::new(at, at + len);
        md.text = Span::new(at, at + 32);
        md.eh_frame = Span::new(at + len - 4, at + len);
        md.functions = Span::new(f, f + sp.functions);
        md.objects = Span::new(i as u32, i as u32 + 1);
        md.init = (init, sp.init_len);
        md.reachable = true;
        at += len;
        f += sp.functions;
        init += sp.init_len;
        mods.push(md);
        for k in 0..sp.functions {
            let name = m.intern(&format!("f{k}"));
            funcs.push(Function {
                name,
                module: ModuleId(i as u32),
                offset: 0,
                size: 1,
                global: true,
                hidden: false,
                indirect: false,
            });
        }
        let o = m.intern("o");
        objs.push(Object {
            name: o,
            module: ModuleId(i as u32),
            size: sp.init_len.max(8),
            align: 8,
            init: (sp.init_len > 0).then_some(0),
            ..Default::default()
        });
    }
    m.layout.area_size = at.next_multiple_of(PAGE_SIZE as u32);
    m.modules = mods.into_iter().collect();
    m.functions = Chunked::from_vec(
        funcs,
        specs
            .iter()
            .map(|s| s.functions as usize)
            .collect::<Vec<_>>(),
    );
    m.objects = Chunked::from_vec(objs, vec![1; n]);
    m
}

/// A manifest of `n` modules, each with one function and one object and
/// a 64-byte segment (module `grow` has a 128-byte one).
fn modules_manifest(n: usize, text_size_of_7: u32, grow: Option<usize>) -> Manifest {
    let specs: Vec<Spec> = (0..n)
        .map(|i| Spec {
            seg_len: if grow == Some(i) { 128 } else { 64 },
            functions: 1,
            init_len: 0,
            text_size: if i == 7 { text_size_of_7 } else { 10 },
            imports_next: false,
        })
        .collect();
    manifest_of(&specs)
}

/// Decodes the global part of `m`'s encoding with `old` as the loaded
/// manifest, without validating it.
fn reread_unchecked(m: &Manifest, old: Option<&Manifest>) -> Manifest {
    let fx = |_: usize| ModuleFixups {
        area: &[],
        objects: &[],
    };
    let (body, global_len) = encode_body(m, &fx, &[]);
    let mut section = vec![0u8; HEADER_SIZE];
    section.extend_from_slice(&body);
    let g = codec::decode_index(&body[..global_len]).unwrap();
    g.finish(&section, old).unwrap()
}

/// Decodes `m`'s encoding with `old` as the loaded manifest.
fn reread(m: &Manifest, old: Option<&Manifest>) -> Manifest {
    let back = reread_unchecked(m, old);
    codec::validate_global(&back, u64::from(m.layout.area_size), old).unwrap();
    back
}

#[test]
fn unchanged_records_are_shared_wherever_their_modules_move() {
    let n = 150;
    let a = reread(&modules_manifest(n, 10, None), None);
    let same = reread(&modules_manifest(n, 10, None), Some(&a));
    assert!(a
        .modules
        .iter()
        .zip(&same.modules)
        .all(|(x, y)| x.same_record(y)));
    // Module 7 changes in place: its record is decoded, the others shared.
    let b = reread(&modules_manifest(n, 11, None), Some(&a));
    assert!(!b.modules[7].same_record(&a.modules[7]));
    assert!(b.modules[8].same_record(&a.modules[8]));
    assert_eq!(b.modules[7].text_size, 11);
    // Module 70's segment grows: everything after it moves. Their records
    // are shared; their places are those of a fresh read.
    let grown = modules_manifest(n, 10, Some(70));
    let c = reread(&grown, Some(&a));
    let fresh = reread(&grown, None);
    assert!(c.modules[100].same_record(&a.modules[100]));
    for (x, y) in c.modules.iter().zip(&fresh.modules) {
        assert_eq!(
            (x.seg, x.text, x.eh_frame, x.functions, x.block),
            (y.seg, y.text, y.eh_frame, y.functions, y.block)
        );
    }
    assert_eq!(c.modules[100].seg.start, 100 * 64 + 64);
    assert_eq!(c.str(c.modules[100].name), "m100");
    // The read's summary says the same, per module, without a look at the
    // modules: shared records, with the same function and object indices.
    assert!(
        a.read.shared.iter().all(|&s| !s),
        "a first read shares nothing"
    );
    assert_eq!(a.read.hashes.len(), n);
    assert!((0..n).all(|i| same.shared_record(i) && same.same_ids(i)));
    assert!((0..n).all(|i| b.shared_record(i) == (i != 7)));
    assert!((0..n).all(|i| c.shared_record(i) == (i != 70) && c.same_ids(i) == (i != 70)));
    assert!((0..n).all(|i| c.reachable(i)));
    // The answers speak of `a` only: against another manifest (even an
    // equal one) they are not to be used.
    assert!(c.read_against(&a) && same.read_against(&a));
    assert!(!c.read_against(&same) && !a.read_against(&a));
    assert!(!c.read_against(&modules_manifest(n, 10, None)));
    for (i, md) in c.modules.iter().enumerate() {
        assert_eq!(c.shared_record(i), md.same_record(&a.modules[i]));
        assert_eq!(c.read.hashes[i] == a.read.hashes[i], i != 70);
    }
}

#[test]
fn a_block_is_shared_only_with_parts_as_long_as_the_record_says() {
    let mut a = reread(&modules_manifest(10, 10, None), None);
    // One function and one object a module, as the blocks would give.
    a.functions = Chunked::from_vec(vec![Function::default(); 10], vec![1; 10]);
    a.objects = Chunked::from_vec(vec![Object::default(); 10], vec![1; 10]);
    let same = reread(&modules_manifest(10, 10, None), Some(&a));
    assert!(a.shares_block(&same, 3));
    // A record claiming one function more than the part it would share
    // (a crafted image: same name, same block checksum).
    let mut longer = same.clone();
    longer.modules[3].functions.end += 1;
    assert!(!a.shares_block(&longer, 3));
}

#[test]
fn a_shared_record_moved_over_its_neighbour_is_refused() {
    let n = 150;
    let a = reread(&modules_manifest(n, 10, None), None);
    // Module 100's record is unchanged (shared on a reread), but the index
    // puts its segment over module 99's.
    let mut m = modules_manifest(n, 10, None);
    let back = 32;
    let md = &mut m.modules[100];
    md.seg = Span::new(md.seg.start - back, md.seg.end - back);
    md.text = Span::new(md.text.start - back, md.text.end - back);
    md.eh_frame = Span::new(md.eh_frame.start - back, md.eh_frame.end - back);
    let c = reread_unchecked(&m, Some(&a));
    assert!(c.shared_record(100), "the record itself is unchanged");
    let err = codec::validate_global(&c, u64::from(m.layout.area_size), Some(&a)).unwrap_err();
    assert!(err.what.contains("m100"), "{}", err.what);
}

#[test]
fn records_read_together_share_a_group_and_copy_out_on_write() {
    let m = modules_manifest(GROUP + 10, 10, None);
    let mut mods = modules_manifest(GROUP + 10, 10, None).modules;
    let held = mods[3].clone(); // shares module 3's record: stays alone
    crate::group_records(&mut mods, &[]);
    for (i, (a, b)) in mods.iter().zip(&m.modules).enumerate() {
        assert_eq!(a.name, b.name, "module {i} kept its record");
        assert_eq!(a.text_size, b.text_size);
    }
    assert!(mods[3].same_record(&held), "a shared record is not moved");
    assert!(Arc::ptr_eq(&mods[0].records.0, &mods[1].records.0));
    assert!(Arc::ptr_eq(
        &mods[GROUP + 1].records.0,
        &mods[GROUP + 2].records.0
    ));
    assert!(!Arc::ptr_eq(&mods[1].records.0, &mods[GROUP + 1].records.0));
    assert!(!mods[0].same_record(&mods[1]));
    // Writing one record of a group copies it out; its neighbours keep
    // theirs.
    let before = mods[2].clone();
    mods[1].text_size = 99;
    assert_eq!(mods[1].text_size, 99);
    assert_eq!(mods[0].text_size, 10);
    assert!(mods[2].same_record(&before));
}

#[test]
fn a_shared_record_is_checked_again_when_the_module_count_changes() {
    // Module 0 imports module 9: in range with ten modules.
    let mut ten = modules_manifest(10, 10, None);
    ten.modules[0].imports = vec![ModuleId(9)].into();
    let a = reread(&ten, None);
    // The same record, byte for byte, in an image of nine modules.
    let mut nine = modules_manifest(9, 10, None);
    nine.modules[0].imports = vec![ModuleId(9)].into();
    let c = reread_unchecked(&nine, Some(&a));
    assert!(c.shared_record(0));
    let err = codec::validate_global(&c, u64::from(nine.layout.area_size), Some(&a)).unwrap_err();
    assert!(err.what.contains("refers outside"), "{}", err.what);
}

/// A manifest of one module per shape: (segment length, functions, bytes
/// of initial data). Each module imports the next.
fn shaped_manifest(shapes: &[(u32, u32, u64)]) -> Manifest {
    let specs: Vec<Spec> = shapes
        .iter()
        .map(|&(seg_len, functions, init_len)| Spec {
            seg_len,
            functions,
            init_len,
            text_size: 10,
            imports_next: true,
        })
        .collect();
    manifest_of(&specs)
}

/// Module `i` of a manifest read against another lies where module `i` of
/// a fresh read of the same image does: every place.
fn assert_same_places(i: usize, x: &Module, y: &Module) {
    assert_eq!(
        (x.seg, x.text, x.eh_frame, x.functions, x.objects),
        (y.seg, y.text, y.eh_frame, y.functions, y.objects),
        "module {i}"
    );
    assert_eq!((x.init, x.block), (y.init, y.block), "module {i}");
}

#[test]
fn records_after_a_module_that_grew_or_shrank_are_shared_at_their_new_places() {
    let n = 200;
    let base = vec![(64, 1, 8); n];
    let mut grown = base.clone();
    grown[70] = (128, 3, 24);
    let a = reread(&shaped_manifest(&base), None);
    // Grown, then back (every later place moves up, then down).
    let b = reread(&shaped_manifest(&grown), Some(&a));
    let c = reread(&shaped_manifest(&base), Some(&b));
    for (new, old, want) in [(&b, &a, &grown), (&c, &b, &base)] {
        let fresh = reread(&shaped_manifest(want), None);
        for (i, (x, y)) in new.modules.iter().zip(&fresh.modules).enumerate() {
            assert_same_places(i, x, y);
            assert_eq!(x.reachable, y.reachable, "module {i}");
            assert_eq!(new.str(x.name), format!("m{i}"));
            assert_eq!(new.shared_record(i), i != 70, "module {i}");
            assert_eq!(x.same_record(&old.modules[i]), i != 70);
            // Modules after 70 keep their records but not their functions'
            // indices.
            assert_eq!(new.same_ids(i), i < 70, "module {i}");
            assert_eq!(new.read.seg[i], (y.seg.start, y.seg.len()));
            assert_eq!(new.has_deps(i), fresh.has_deps(i));
            assert_eq!(new.read.hashes[i], fresh.read.hashes[i]);
        }
    }
    // Shared records keep what they say (the import of the next module).
    assert_eq!(&c.modules[150].imports[..], &[ModuleId(151)]);
}

/// Whole groups of modules after one that grew are taken from the loaded
/// list, shared, with their move noted rather than applied; moves noted
/// over several reads add up, and a group read at last (in any order)
/// shows every place a fresh read does.
#[test]
fn moved_groups_are_shared_and_their_moves_add_up() {
    let n = 300;
    let base = vec![(64, 1, 8); n];
    let mut grown = base.clone();
    grown[5] = (128, 3, 24);
    let a = reread(&shaped_manifest(&base), None);
    let b = reread(&shaped_manifest(&grown), Some(&a));
    let c = reread(&shaped_manifest(&base), Some(&b));
    let d = reread(&shaped_manifest(&grown), Some(&c));
    // Groups 1..4 are full and lie after module 5: shared by every read,
    // whatever it moved. Group 0 (module 5's) and the last, partial one are
    // the reads' own.
    for g in 1..4 {
        assert!(b.modules.shares_group(&a.modules, g), "group {g}");
        assert!(d.modules.shares_group(&a.modules, g), "group {g}");
    }
    assert!(!b.modules.shares_group(&a.modules, 0));
    assert!(!b.modules.shares_group(&a.modules, 4));
    // Read the last first: its moves are b's, c's and its own.
    for (m, want) in [(&d, &grown), (&b, &grown), (&c, &base)] {
        let fresh = reread(&shaped_manifest(want), None);
        assert_eq!(m.modules.len(), fresh.modules.len());
        for i in 0..n {
            assert_same_places(i, &m.modules[i], &fresh.modules[i]);
        }
        assert!(m.modules.iter().eq(fresh.modules.iter()));
    }
    // A module written to is the writer's own: the list it was shared
    // with keeps its value.
    let mut e = d.clone();
    e.modules[100].reachable = !d.modules[100].reachable;
    assert_ne!(e.modules[100].reachable, d.modules[100].reachable);
    assert!(!e.modules.shares_group(&d.modules, 1));
    assert!(e.modules.shares_group(&d.modules, 2));
    // Found by place as in a vector.
    let at = d.modules[200].seg.start;
    assert_eq!(d.modules.partition_point(|md| md.seg.start <= at), 201);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// Places in the index that disagree with the loaded manifest's, in
    /// any way (a run moved past the end of the area or the address space,
    /// entries moved apart, a move that wraps), are shared correctly or
    /// refused: never a panic.
    #[test]
    fn a_read_against_the_loaded_manifest_survives_any_places(
        flips in prop::collection::vec((0usize..150, 8usize..20, any::<u8>()), 1..6)
    ) {
        let m = modules_manifest(150, 10, None);
        let a = reread(&m, None);
        let fx = |_: usize| ModuleFixups {
            area: &[],
            objects: &[],
        };
        let (mut body, global_len) = encode_body(&m, &fx, &[]);
        let first = a.read.hashes[0].to_le_bytes();
        let at = body.windows(8).position(|w| w == first).unwrap();
        for (module, byte, v) in flips {
            body[at + module * codec::INDEX_ENTRY + byte] = v;
        }
        let mut section = vec![0u8; HEADER_SIZE];
        section.extend_from_slice(&body);
        if let Ok(g) = codec::decode_index(&body[..global_len]) {
            if let Ok(b) = g.finish(&section, Some(&a)) {
                let ok = codec::validate_global(&b, u64::from(m.layout.area_size), Some(&a));
                if ok.is_ok() {
                    // Accepted: every module lies inside the area, in order.
                    let mut end = 0;
                    for md in b.modules.iter() {
                        prop_assert!(md.seg.start >= end && md.seg.end >= md.seg.start);
                        prop_assert!(md.text.start >= md.seg.start && md.text.end <= md.seg.end);
                        end = md.seg.end;
                    }
                    prop_assert!(u64::from(end) <= u64::from(m.layout.area_size));
                }
            }
        }
    }
}

#[test]
fn a_run_whose_moved_initial_bytes_would_overflow_is_read_module_by_module() {
    // Every module's initial bytes moved by the same amount, so far that
    // the last one's end passes the largest offset: the run is refused and
    // its modules read one by one, as a fresh read places them.
    let shapes = vec![(64, 1, 8); 150];
    let m = shaped_manifest(&shapes);
    let a = reread(&m, None);
    let fx = |_: usize| ModuleFixups {
        area: &[],
        objects: &[],
    };
    let (mut body, global_len) = encode_body(&m, &fx, &[]);
    let first = a.read.hashes[0].to_le_bytes();
    let at = body.windows(8).position(|w| w == first).unwrap();
    let by = u64::MAX - 8 * 140;
    for k in 0..shapes.len() {
        let e = at + k * codec::INDEX_ENTRY + 8;
        let v = u64::from_le_bytes(body[e..e + 8].try_into().unwrap()).wrapping_add(by);
        body[e..e + 8].copy_from_slice(&v.to_le_bytes());
    }
    let mut section = vec![0u8; HEADER_SIZE];
    section.extend_from_slice(&body);
    let read = |old| {
        codec::decode_index(&body[..global_len])
            .unwrap()
            .finish(&section, old)
            .unwrap()
    };
    let (against, fresh) = (read(Some(&a)), read(None));
    for (i, (x, y)) in against.modules.iter().zip(&fresh.modules).enumerate() {
        assert_eq!(
            (x.init, x.seg, x.functions),
            (y.init, y.seg, y.functions),
            "module {i}"
        );
        assert!(against.shared_record(i), "module {i}");
    }
}

/// The checksums are part of the format: XXH3-64 with seed 0, whichever
/// SIMD width computes it (values from the reference implementation).
#[test]
fn checksums_are_xxh3_64() {
    let v: Vec<u8> = (0..5000u32).map(|i| (i * 31 + 7) as u8).collect();
    assert_eq!(segment_checksum(&[]), 0x2d06_8005_38d3_94c2);
    assert_eq!(segment_checksum(&v[..100]), 0x8c97_1580_42fb_f926);
    assert_eq!(checksum(&v), 0x559f_ff92_c2b7_f8ee);
    // A block and its initial bytes hash as one run of bytes.
    assert_eq!(
        block_checksum(&v[..3000], &v[3000..]),
        0x559f_ff92_c2b7_f8ee
    );
    assert_eq!(content_hash(&v), 0x559f_ff92_c2b7_f8ee);
}
