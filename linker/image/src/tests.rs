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
                let md = Module {
                    mtime_ns,
                    content_hash,
                    imports: imports.into_iter().map(ModuleId).collect(),
                    reachable,
                    functions: Span::new(0, 1),
                    objects: Span::new(0, 1),
                    fixups: Span::new(0, 0),
                    ctors: ctors.clone(),
                    dtors: vec![],
                    on_reload: ctors,
                    undefined: vec![HostId(0)],
                    seg: Span::new(0, 64),
                    text: Span::new(0, 32),
                    eh_frame: Span::new(60, 64),
                    checksum,
                    link_hash,
                    deps: deps.into_iter().map(ModuleId).collect(),
                    text_size: 10,
                    rodata_size: 3,
                    ..Module::default()
                };
                (name, source, md)
            },
        )
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
        for (name, source, mut md) in modules {
            md.name = m.intern(&name);
            md.source = m.intern(&source);
            md.object = m.intern("x.o");
            m.modules.push(md);
        }
        let f = m.intern(&fname);
        m.functions.push(Function { name: f, module: ModuleId(0), offset: 16, size: 5, global: true });
        let o = m.intern("o");
        m.objects.push(Object { name: o, module: ModuleId(0), size: 8, align: 8, init: Some(0), fixups: Span::new(0, 0), global: false, ..Default::default() });
        let p = m.intern("printf");
        m.hosts.push(HostSymbol { name: p, weak: false });
        let body = encode_body(&m, &fixups, &ofixups);
        let (back, f, of) = codec::decode_body(&body).unwrap();
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(f.all().collect::<Vec<_>>(), fixups);
        prop_assert_eq!(of.all().collect::<Vec<_>>(), ofixups);
    }

    #[test]
    fn decoding_garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = codec::decode_body(&bytes);
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
        m.modules.push(Module {
            name,
            imports: imports.into_iter().map(ModuleId).collect(),
            ..Module::default()
        });
    }
    let names: Vec<_> = m
        .init_order()
        .iter()
        .map(|&i| m.module_name(i).to_string())
        .collect();
    assert_eq!(names, ["c", "b", "a"]);
}
