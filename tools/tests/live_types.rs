//! Live state with DWARF types: modules built with `cc -g` show every global
//! typed (integers of every width, char, float, double, bool, enums by
//! name, pointers, arrays and nested structs field by field), `hcr set`
//! writes one field or element with type and range checks, types follow a
//! reload, and an `HCR_TWEAK` range is not inherited by a later global at
//! the same address.

mod support;

use support::live::Program;

use std::path::Path;

const MAIN: &str = r#"
#include <stdio.h>
#include "hcr.h"
extern void show(void);
int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready\n");
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (line[0] == 'r') printf("reload rc=%d\n", hcr_perform_code_reload());
        else show();
    }
    return 0;
}
"#;

const TYPES: &str = r#"
#include <stdio.h>
#include <stdint.h>
#include <stdbool.h>
enum color { RED, GREEN = 5, BLUE };
enum sign { NEG = -2, ZERO = 0 };
struct inner { short a; enum color c; };
struct point { int x; float y; struct inner in; double d[3]; unsigned flag : 3; };
int8_t i8 = -8;
uint8_t u8 = 200;
int16_t i16 = -1600;
uint16_t u16 = 60000;
int32_t i32 = -320000;
uint32_t u32 = 4000000000u;
int64_t i64 = -6400000000LL;
uint64_t u64 = 18000000000000000000ULL;
char ch = 'a';
float fl = 1.5f;
double db = 2.25;
bool bo = true;
enum color col = GREEN;
enum sign sg = NEG;
int *ptr = &i32;
void *nul = 0;
int arr[4] = {1, 2, 3, 4};
char name[16] = "hello";
struct point pt = {1, 2.5f, {3, BLUE}, {0.5, 1.5, 2.5}, 5};
static int counter(void) { static int calls = 7; return calls++; }
void show(void) {
    printf("i8=%d u8=%u i16=%d u16=%u i32=%d u32=%u i64=%lld u64=%llu ch=%c fl=%g db=%g bo=%d col=%d sg=%d ptr=%s arr2=%d name=%s\n",
           i8, u8, i16, u16, i32, u32, (long long)i64, (unsigned long long)u64, ch, fl, db, bo,
           col, sg, ptr == &i32 ? "i32" : ptr ? "other" : "null", arr[2], name);
    printf("pt x=%d y=%g a=%d c=%d d1=%g flag=%u calls=%d\n", pt.x, pt.y, pt.in.a, pt.in.c,
           pt.d[1], pt.flag, counter());
}
"#;

/// What these tests ask of a running program besides the shared ones.
trait Typed {
    fn set(&self, target: &str, value: &str) -> Result<String, String>;
    fn table(&self) -> Vec<(String, String, String)>;
    fn json(&self) -> Vec<serde_json::Value>;
}

impl Typed for Program {
    /// `hcr set`: its stdout, or its stderr when it failed.
    fn set(&self, target: &str, value: &str) -> Result<String, String> {
        let pid = self.child.id().to_string();
        let o = self.hcr(&["set", &pid, target, value]);
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&o.stderr).trim().to_string())
        }
    }
    /// `hcr globals PID lib` as `(name, type, value)` rows.
    fn table(&self) -> Vec<(String, String, String)> {
        let pid = self.child.id().to_string();
        let o = self.hcr(&["globals", &pid, "lib"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .skip(1)
            .map(|l| {
                let mut w = l.split_whitespace();
                let _module = w.next();
                let name = w.next().unwrap_or("").to_string();
                let ty = w.next().unwrap_or("").to_string();
                let value = w.collect::<Vec<_>>().join(" ");
                (name, ty, value)
            })
            .collect()
    }
    fn json(&self) -> Vec<serde_json::Value> {
        let pid = self.child.id().to_string();
        let o = self.hcr(&["globals", &pid, "lib", "--json"]);
        assert!(o.status.success());
        serde_json::from_slice::<serde_json::Value>(&o.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }
}

/// Starts `main` and `lib` built from `code` with `-O1` and `flags`.
fn start(t: &Path, code: &str, flags: &str) -> Program {
    let extra: Vec<&str> = flags.split_whitespace().collect();
    Program::start(t, MAIN, code, "-O1", &extra)
}

/// Installs version `tag` of `lib`, built with `-O1` and `flags`.
fn install(p: &Program, tag: &str, code: &str, flags: &str) {
    let extra: Vec<&str> = flags.split_whitespace().collect();
    p.install(tag, code, "-O1", &extra);
}

fn row<'a>(t: &'a [(String, String, String)], name: &str) -> &'a (String, String, String) {
    t.iter()
        .find(|r| r.0 == name)
        .unwrap_or_else(|| panic!("no {name} in {t:#?}"))
}

#[test]
fn every_dwarf_type_is_shown_and_set() {
    let t = tempfile::tempdir().unwrap();
    let mut p = start(t.path(), TYPES, "-g");
    let table = p.table();
    let expect = [
        ("i8", "int8", "-8"),
        ("u8", "uint8", "200"),
        ("i16", "int16", "-1600"),
        ("u16", "uint16", "60000"),
        ("i32", "int32", "-320000"),
        ("u32", "uint32", "4000000000"),
        ("i64", "int64", "-6400000000"),
        ("u64", "uint64", "18000000000000000000"),
        ("ch", "char", "97 'a'"),
        ("fl", "float", "1.5"),
        ("db", "double", "2.25"),
        ("bo", "bool", "true"),
        ("col", "enum:color", "GREEN"),
        ("sg", "enum:sign", "NEG"),
        ("nul", "void*", "0x0"),
        ("arr", "int32[4]", "{1, 2, 3, 4}"),
        ("arr[2]", "int32", "3"),
        ("name", "char[16]", "\"hello\""),
        (
            "pt",
            "struct:point",
            "{x = 1, y = 2.5, in = {a = 3, c = BLUE}, d = {0.5, 1.5, 2.5}, flag = 5}",
        ),
        ("pt.x", "int32", "1"),
        ("pt.y", "float", "2.5"),
        ("pt.in", "struct:inner", "{a = 3, c = BLUE}"),
        ("pt.in.a", "int16", "3"),
        ("pt.in.c", "enum:color", "BLUE"),
        ("pt.d[1]", "double", "1.5"),
        ("pt.flag", "uint32:3", "5"),
        // A function's static: gcc names it calls.N; hcr keys it by the
        // function that declares it, `counter`, which the debug
        // information names though its code is inlined into `show`.
        ("counter::calls", "int32", "7"),
    ];
    for (name, ty, value) in expect {
        let r = row(&table, name);
        assert_eq!((r.1.as_str(), r.2.as_str()), (ty, value), "{name}");
    }
    // A pointer is an address: that of i32 (its persistent storage).
    let ptr = &row(&table, "ptr").2;
    assert_eq!(row(&table, "ptr").1, "int32*");
    assert!(
        ptr.starts_with("0x") && u64::from_str_radix(&ptr[2..], 16).unwrap() > 0x1000,
        "{ptr}"
    );

    // JSON: kinds, enumerators, fields with their paths.
    let j = p.json();
    let g = |n: &str| j.iter().find(|g| g["name"] == n).unwrap().clone();
    assert_eq!(g("col")["kind"], "enum");
    assert_eq!(
        g("col")["enumerators"],
        serde_json::json!(["RED", "GREEN", "BLUE"])
    );
    let fields = g("pt")["fields"].as_array().unwrap().clone();
    let f = |path: &str| fields.iter().find(|f| f["path"] == path).unwrap().clone();
    assert_eq!(f("pt.in.c")["value"], "BLUE");
    assert_eq!(f("pt.in.c")["depth"], 2);
    assert_eq!(f("pt.y")["kind"], "float");

    // Writes of every scalar type, printed `old -> new`, seen by the program.
    let sets = [
        ("lib:i8", "-128", "-8 -> -128"),
        ("lib:u8", "255", "200 -> 255"),
        ("lib:i16", "32767", "-1600 -> 32767"),
        ("lib:u16", "0x10", "60000 -> 16"),
        ("lib:i32", "-2147483648", "-320000 -> -2147483648"),
        ("lib:u32", "4294967295", "4000000000 -> 4294967295"),
        (
            "lib:i64",
            "-9223372036854775808",
            "-6400000000 -> -9223372036854775808",
        ),
        (
            "lib:u64",
            "18446744073709551615",
            "18000000000000000000 -> 18446744073709551615",
        ),
        ("lib:ch", "z", "97 'a' -> 122 'z'"),
        ("lib:fl", "-0.25", "1.5 -> -0.25"),
        ("lib:db", "1e100", "2.25 -> 1e100"),
        ("lib:bo", "false", "true -> false"),
        ("lib:col", "BLUE", "GREEN -> BLUE"),
        ("lib:sg", "0", "NEG -> ZERO"),
        ("lib:arr[2]", "30", "3 -> 30"),
        ("lib:name", "\"bye\"", "\"hello\" -> \"bye\""),
        ("lib:ptr", "0", &format!("{ptr} -> 0x0")),
        // Struct fields, nested, and an element of a field.
        ("lib:pt.x", "42", "1 -> 42"),
        ("lib:pt.y", "3.5", "2.5 -> 3.5"),
        ("lib:pt.in.a", "-7", "3 -> -7"),
        ("lib:pt.in.c", "5", "BLUE -> GREEN"),
        ("lib:pt.d[1]", "9.75", "1.5 -> 9.75"),
        ("lib:counter::calls", "100", "8 -> 100"),
    ];
    // `show` ran once (calls 7 -> 8) before the writes are checked.
    let first = p.send("p");
    assert!(first.starts_with("i8=-8 u8=200"), "{first}");
    assert_eq!(p.line(), "pt x=1 y=2.5 a=3 c=6 d1=1.5 flag=5 calls=7");
    for (target, value, want) in sets {
        assert_eq!(p.set(target, value).as_deref(), Ok(want), "{target}");
    }
    assert_eq!(
        p.send("p"),
        "i8=-128 u8=255 i16=32767 u16=16 i32=-2147483648 u32=4294967295 \
         i64=-9223372036854775808 u64=18446744073709551615 ch=z fl=-0.25 db=1e+100 bo=0 \
         col=6 sg=0 ptr=null arr2=30 name=bye"
    );
    assert_eq!(p.line(), "pt x=42 y=3.5 a=-7 c=5 d1=9.75 flag=5 calls=100");

    // Refusals, with the reason; nothing changes.
    let refusals = [
        ("lib:i8", "128", "out of range for int8"),
        ("lib:u8", "-1", "out of range for uint8"),
        ("lib:u16", "65536", "out of range for uint16"),
        ("lib:i32", "2147483648", "out of range for int32"),
        ("lib:u64", "18446744073709551616", "out of range for uint64"),
        ("lib:i32", "fast", "wrong type"),
        ("lib:fl", "abc", "wrong type"),
        ("lib:fl", "1e39", "out of range for float"),
        ("lib:db", "inf", "not a finite number"),
        ("lib:bo", "maybe", "not a bool"),
        (
            "lib:col",
            "PURPLE",
            "not a value of enum:color (RED, GREEN, BLUE",
        ),
        ("lib:col", "3", "not a value of enum:color"),
        ("lib:ptr", "here", "not an address"),
        ("lib:arr", "1", "is an array: set one element"),
        ("lib:arr[4]", "1", "index 4 is out of bounds"),
        (
            "lib:name",
            "\"much too long for it\"",
            "do not fit in char[16]",
        ),
        (
            "lib:pt",
            "1",
            "has fields: set one (NAME.FIELD; fields: x, y, in, d, flag)",
        ),
        ("lib:pt.z", "1", "has no field \"z\""),
        ("lib:pt.x.y", "1", "int32 has no fields"),
        ("lib:pt.flag", "1", "bit-field"),
        ("lib:nothere", "1", "no global lib:nothere"),
    ];
    for (target, value, why) in refusals {
        let e = p.set(target, value).expect_err(target);
        assert!(e.contains(why), "{target} {value}: {e}");
    }
    assert_eq!(
        p.send("p"),
        "i8=-128 u8=255 i16=32767 u16=16 i32=-2147483648 u32=4294967295 \
         i64=-9223372036854775808 u64=18446744073709551615 ch=z fl=-0.25 db=1e+100 bo=0 \
         col=6 sg=0 ptr=null arr2=30 name=bye"
    );
    assert_eq!(p.line(), "pt x=42 y=3.5 a=-7 c=5 d1=9.75 flag=5 calls=101");

    // A reload that adds a field: the types are those of the new generation.
    let v2 = TYPES
        .replace("unsigned flag : 3; };", "unsigned flag : 3; long extra; };")
        .replace("2.5}, 5};", "2.5}, 5, 99};");
    install(&p, "v2", &v2, "-g");
    assert_eq!(p.send("r"), "reload rc=1");
    let table = p.table();
    assert_eq!(row(&table, "pt.extra").2, "99");
    assert_eq!(p.set("lib:pt.extra", "-5").as_deref(), Ok("99 -> -5"));

    drop(p.child.stdin.take());
    assert!(p.child.wait().unwrap().success());
}

#[test]
fn without_debug_information_globals_are_size_and_bytes() {
    let t = tempfile::tempdir().unwrap();
    let p = start(t.path(), TYPES, "-g0");
    let table = p.table();
    // -1600 as two bytes, in memory order; a float is not shown as a
    // made-up integer.
    assert_eq!(row(&table, "i16").1, "bytes[2]");
    assert_eq!(row(&table, "i16").2, "0xc0f9");
    assert_eq!(row(&table, "fl").1, "bytes[4]");
    assert_eq!(row(&table, "pt").1, "bytes[48]");
    assert!(!table.iter().any(|r| r.0 == "pt.x"), "{table:#?}");
    let e = p.set("lib:pt.x", "1").unwrap_err();
    assert!(e.contains("build module lib with -g"), "{e}");
    assert_eq!(p.set("lib:i16", "7").as_deref(), Ok("0xc0f9 -> 0x0700"));
    assert_eq!(
        p.set("lib:i16", "0x0801").as_deref(),
        Ok("0x0700 -> 0x0801")
    );
    let e = p.set("lib:i16", "70000").unwrap_err();
    assert!(e.contains("out of range"), "{e}");
    let e = p.set("lib:pt", "0x01").unwrap_err();
    assert!(e.contains("96 hex digits"), "{e}");
}

/// `HCR_TWEAK` ranges are keyed by address: a global removed by a reload
/// takes its range with it, so a later global given the same storage does
/// not inherit it.
#[test]
fn a_tweak_range_goes_with_its_global() {
    let v1 = r#"
#include <stdio.h>
#include "hcr.h"
int speed = 3;
HCR_TWEAK(speed, 0, 10)
void show(void) { printf("%p\n", (void *)&speed); }
"#;
    let v2 = r#"
#include <stdio.h>
void show(void) { printf("none\n"); }
"#;
    let v3 = r#"
#include <stdio.h>
int other = 5;
void show(void) { printf("%p\n", (void *)&other); }
"#;
    let t = tempfile::tempdir().unwrap();
    let mut p = start(t.path(), v1, "-g0");
    let speed_at = p.send("p");
    let e = p.set("lib:speed", "11").unwrap_err();
    assert!(e.contains("range 0 to 10"), "{e}");
    install(&p, "v2", v2, "-g0");
    assert_eq!(p.send("r"), "reload rc=1");
    assert_eq!(p.send("p"), "none");
    // (A removed global's storage is freed at the next reload: a crash
    // guard's rollback may still need it until then.)
    let v2b = format!("{v2}int unused_here(void) {{ return 1; }}\n");
    install(&p, "v2b", &v2b, "-g0");
    assert_eq!(p.send("r"), "reload rc=1");
    install(&p, "v3", v3, "-g0");
    assert_eq!(p.send("r"), "reload rc=1");
    assert_eq!(
        p.send("p"),
        speed_at,
        "the new global took the freed storage"
    );
    let j = p.json();
    let other = j.iter().find(|g| g["name"] == "other").unwrap();
    assert_eq!(other["min"], serde_json::Value::Null, "{other}");
    assert_eq!(
        p.set("lib:other", "1000").as_deref(),
        Ok("0x05000000 -> 0xe8030000")
    );
}

/// The DWARF reader survives corrupt debug information: bytes of the
/// image's `.debug_*` sections and fixups changed at random (400 rounds,
/// a fixed seed) give types or an error, never a panic, and whatever types
/// come out can be walked, shown, resolved and encoded.
#[test]
fn corrupt_debug_information_never_panics() {
    use object::{Object as _, ObjectSection as _};
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let m = support::module(dir, "main", MAIN, "-O1");
    let src = dir.join("lib.c");
    std::fs::write(&src, TYPES).unwrap();
    let l = dir.join("lib.o");
    support::compile(&src, &l, "-O1", &["-g"]);
    let image = dir.join("app.hcr");
    support::link_ok(&image, &[m, l]);
    let bytes = std::fs::read(&image).unwrap();
    let clean = hcr_tools::types::read_image(&bytes).unwrap();
    assert!(clean.len() >= 20, "{clean:?}");
    let ranges: Vec<(usize, usize)> = {
        let f = object::File::parse(&*bytes).unwrap();
        f.sections()
            .filter(|s| {
                s.name()
                    .is_ok_and(|n| n.starts_with(".debug_") || n == ".hcr.debug_fixups")
            })
            .filter_map(|s| {
                let (off, len) = s.file_range()?;
                (len > 0).then_some((off as usize, len as usize))
            })
            .collect()
    };
    assert!(ranges.len() >= 4, "{ranges:?}");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut decoded = 0;
    for round in 0..400u64 {
        let mut b = bytes.clone();
        for _ in 0..1 + round % 6 {
            let (off, len) = ranges[rand() as usize % ranges.len()];
            let at = off + rand() as usize % len;
            b[at] = rand() as u8;
        }
        let r = std::panic::catch_unwind(|| {
            let Ok(table) = hcr_tools::types::read_image(&b) else {
                return 0;
            };
            for (_, _, ty) in table.iter() {
                for n in hcr_tools::types::nodes(ty, "g", 256) {
                    let _ = hcr_tools::types::format(&n.ty, n.bits, &[0x5a; 64]);
                    let _ = hcr_tools::types::encode(&n.ty, "1");
                    let _ = hcr_tools::types::encode(&n.ty, "-1e3");
                }
                let _ = hcr_tools::types::format(ty, None, &[]);
                let _ = hcr_tools::types::resolve(ty, ".x[1].in");
            }
            table.len()
        });
        match r {
            Ok(n) => decoded += usize::from(n > 0),
            Err(_) => panic!("round {round}: the DWARF reader panicked"),
        }
    }
    // Most corruptions leave most of the information readable.
    assert!(decoded > 100, "{decoded} of 400 rounds decoded types");
}
