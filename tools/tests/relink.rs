//! The incremental relink (`hcr_linker::link_cached`, what `hcr watch`
//! runs): after one module's object changes, the image is byte for byte
//! the image a full link of the same inputs writes, whatever the change
//! (code of the same size, code that grows, functions added and removed,
//! exported data that others read, a new library call, a constructor), and
//! modules that did not change are in fact taken over from the previous
//! link.

mod support;

use std::path::{Path, PathBuf};

use hcr_linker::{link_bytes, link_cached, InputCache, LinkConfig, ReuseStats};

/// Leaf modules nobody else's change touches: their work is reused.
const LEAVES: usize = 6;

/// Modules with COMMON symbols.
const COMMONS: usize = 2;

fn leaf(i: usize) -> String {
    format!(
        "static int calls;\n\
         int leaf{i}_get(int x) {{ calls++; return x * {m} + calls; }}\n\
         int leaf{i}_twice(int x) {{ return leaf{i}_get(x) + leaf{i}_get(x + 1); }}\n",
        m = i + 2
    )
}

const MAIN: &str = r#"
#include <stdio.h>
int util_sum(int n);
int util_calls(void);
extern const int table_primes[];
extern int table_len;
extern int ctor_ready;
int tls_bump(void);
int leaf0_twice(int), leaf5_get(int);
int main(void) {
  int t = 0;
  for (int i = 0; i < table_len; i++) t += table_primes[i];
  int sum = util_sum(4);
  int calls = util_calls();
  tls_bump();
  int tls = tls_bump();
  int leaves = leaf0_twice(1) + leaf5_get(2);
  printf("sum=%d calls=%d primes=%d ready=%d tls=%d leaves=%d\n", sum, calls, t, ctor_ready, tls, leaves);
  return 0;
}
"#;

const UTIL: &str = r#"
static int counter;
int util_add(int a, int b) { counter++; return a + b; }
int util_sum(int n) { int s = 0; for (int i = 1; i <= n; i++) s = util_add(s, i); return s; }
int util_calls(void) { return counter; }
"#;

const TABLE: &str = r#"
const int table_primes[] = {2, 3, 5, 7};
int table_len = 4;
"#;

const CTOR: &str = r#"
int ctor_ready;
__attribute__((constructor)) static void ready(void) { ctor_ready = 7; }
"#;

const TLS: &str = r#"
__thread int tls_count;
int tls_bump(void) { return ++tls_count; }
"#;

const COMMON_A: &str = "int shared_count;\nint common_a_bump(void) { return ++shared_count; }\n";
const COMMON_B: &str = "int shared_count;\nint common_b_get(void) { return shared_count; }\n";

struct Project {
    dir: PathBuf,
    objects: Vec<PathBuf>,
}

impl Project {
    fn new(dir: &Path) -> Project {
        let mut p = Project {
            dir: dir.to_path_buf(),
            objects: Vec::new(),
        };
        let mut sources: Vec<(String, String)> = vec![
            ("main".into(), MAIN.into()),
            ("util".into(), UTIL.into()),
            ("table".into(), TABLE.into()),
            ("ctor".into(), CTOR.into()),
            ("tls".into(), TLS.into()),
            ("common_a".into(), COMMON_A.into()),
            ("common_b".into(), COMMON_B.into()),
        ];
        sources.extend((0..LEAVES).map(|i| (format!("leaf{i}"), leaf(i))));
        for (name, code) in &sources {
            let obj = p.dir.join(format!("{name}.o"));
            p.build(name, code);
            p.objects.push(obj);
        }
        p
    }

    /// Compiles `name.c` as a compiler driven by a build tool does: into a
    /// new file renamed over the object. (`common_*` modules with
    /// `-fcommon`: their uninitialised globals are COMMON symbols.)
    fn build(&self, name: &str, code: &str) {
        let src = self.dir.join(format!("{name}.c"));
        std::fs::write(&src, code).expect("write source");
        let tmp = self.dir.join(format!("{name}.o.tmp"));
        let extra: &[&str] = if name.starts_with("common_") {
            &["-fcommon"]
        } else {
            &[]
        };
        support::compile(&src, &tmp, "-O1", extra);
        std::fs::rename(&tmp, self.dir.join(format!("{name}.o"))).expect("rename object");
    }
}

/// Relinks incrementally and fully; asserts the bytes are the same and
/// returns what the incremental link reused.
fn relink(p: &Project, cache: &mut InputCache, step: &str) -> (Vec<u8>, ReuseStats) {
    let cfg = LinkConfig::default();
    let out = p.dir.join("incremental.hcr");
    let incr = link_cached(&cfg, &p.objects, &out, cache)
        .unwrap_or_else(|e| panic!("{step}: incremental link failed: {e}"));
    let bytes = std::fs::read(&out).expect("read the image");
    let full =
        link_bytes(&cfg, &p.objects).unwrap_or_else(|e| panic!("{step}: full link failed: {e}"));
    assert_eq!(bytes.len(), full.bytes.len(), "{step}: image sizes differ");
    if let Some(at) = bytes.iter().zip(&full.bytes).position(|(a, b)| a != b) {
        panic!("{step}: the incremental image differs from the full link's at byte {at:#x}");
    }
    (bytes, incr.reused)
}

fn run_output(p: &Project, image: &[u8]) -> String {
    let path = p.dir.join("run.hcr");
    support::install(&path, image);
    let o = support::run(&path);
    assert!(
        o.status.success(),
        "hcr run failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn incremental_relink_is_byte_identical_to_a_full_link() {
    let t = tempfile::tempdir().unwrap();
    let p = Project::new(t.path());
    let n = p.objects.len();
    let mut cache = InputCache::default();
    let (first, _) = relink(&p, &mut cache, "first link");
    assert_eq!(
        run_output(&p, &first),
        "sum=10 calls=4 primes=17 ready=7 tls=2 leaves=24\n"
    );

    // Nothing changed: everything is taken over, but for what refers to
    // COMMON storage (whose owner may change while its id does not).
    let (same, r) = relink(&p, &mut cache, "nothing changed");
    assert!(same == first, "nothing changed, yet the image did");
    assert_eq!((r.parsed, r.scanned), (n, n - COMMONS), "{r:?}");
    // `main` reads `table`'s data by its place in the area: its applied
    // bytes are always redone.
    assert_eq!(r.applied, n - 1 - COMMONS, "{r:?}");
    assert_eq!(r.rendered, n, "{r:?}");

    // A body change of the same size in a module others call.
    p.build(
        "util",
        &UTIL.replace("return counter;", "return counter + 1;"),
    );
    let (_, r) = relink(&p, &mut cache, "same-size change");
    assert!(r.applied >= LEAVES, "leaves not reused: {r:?}");
    assert!(r.scanned >= n - 2 - COMMONS, "{r:?}");

    // Code that grows by far more than a segment's alignment: every
    // segment after it moves.
    let grown = UTIL.replace(
        "return counter + 1;",
        "int k = 0; for (int i = 0; i < counter; i++) k += (i * 7) ^ (k >> 3) ^ (k * 13) ^ (i + 11); return counter + (k & 0) + 1;",
    );
    p.build("util", &grown);
    let (_, r) = relink(&p, &mut cache, "grown code");
    assert!(r.applied >= LEAVES, "leaves not reused after a move: {r:?}");

    // A function added (every later module's function ids shift), then
    // removed again.
    let added = format!("{grown}\nint util_extra(int x) {{ return x * util_add(x, 1); }}\n");
    p.build("util", &added);
    relink(&p, &mut cache, "function added");
    p.build("util", &grown);
    relink(&p, &mut cache, "function removed");

    // Exported data that another module reads: bigger, other values.
    p.build(
        "table",
        "const int table_primes[] = {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71};\nint table_len = 20;\n",
    );
    let (img, _) = relink(&p, &mut cache, "exported data changed");
    assert!(run_output(&p, &img).contains("primes=639 "));

    // Exported data that moves inside its section while every global
    // symbol keeps its name and index (the arrays around it grow past the
    // compiler's 32-byte alignment of arrays, in whichever order it puts
    // them): the modules that read it resolve it again (their previous
    // resolution names the old place).
    let grouped = |pad: &str| {
        format!(
            "const int table_pad{pad} __attribute__((section(\".rodata.grp\"))) = {{1}};\n\
             const int table_primes[] __attribute__((section(\".rodata.grp\"))) = {{2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71}};\n\
             const int table_tail{pad} __attribute__((section(\".rodata.grp\"))) = {{1}};\n\
             int table_len = 20;\n"
        )
    };
    p.build("table", &grouped("[1]"));
    relink(&p, &mut cache, "exported data grouped");
    p.build("table", &grouped("[16]"));
    let (img, _) = relink(&p, &mut cache, "exported data moved inside its section");
    assert!(run_output(&p, &img).contains("primes=639 "));

    // A new library call (the host symbols change) and a new export.
    p.build(
        "util",
        &format!("#include <stdio.h>\n{grown}\nint util_say(void) {{ return puts(\"hi\"); }}\n"),
    );
    relink(&p, &mut cache, "new host symbol");

    // The constructor, the thread-local module and a leaf change.
    p.build("ctor", &CTOR.replace("= 7", "= 8"));
    p.build("tls", &TLS.replace("++tls_count", "tls_count += 2"));
    p.build("leaf3", &leaf(3).replace("calls++", "calls += 3"));
    let (img, r) = relink(&p, &mut cache, "three modules changed");
    assert!(r.applied >= LEAVES - 1, "{r:?}");
    assert!(run_output(&p, &img).contains("ready=8 tls=4 "));

    // COMMON storage whose owner changes: the larger declaration wins.
    p.build(
        "common_b",
        "int shared_count[4];\nint common_b_get(void) { return shared_count[0]; }\n",
    );
    relink(&p, &mut cache, "COMMON owner changed");
    p.build("common_b", COMMON_B);
    relink(&p, &mut cache, "COMMON owner back");

    // A broken object fails the link; the next one takes over from the
    // link before it, and its image is still the full link's.
    std::fs::write(p.dir.join("leaf1.o"), b"not an object").unwrap();
    let cfg = LinkConfig::default();
    assert!(link_cached(&cfg, &p.objects, &p.dir.join("incremental.hcr"), &mut cache).is_err());
    p.build("leaf1", &leaf(1));
    let (_, r) = relink(&p, &mut cache, "after a failed link");
    assert!(r.scanned > 0 && r.applied > 0, "{r:?}");

    // Back to the first sources (the objects are new files, whose times the
    // image records).
    for (name, code) in [
        ("util", UTIL.to_string()),
        ("table", TABLE.to_string()),
        ("ctor", CTOR.to_string()),
        ("tls", TLS.to_string()),
        ("leaf3", leaf(3)),
    ] {
        p.build(name, &code);
    }
    let (back, _) = relink(&p, &mut cache, "sources restored");
    assert_eq!(
        run_output(&p, &back),
        "sum=10 calls=4 primes=17 ready=7 tls=2 leaves=24\n"
    );
}

#[test]
fn reordered_and_dropped_inputs_relink_like_a_full_link() {
    let t = tempfile::tempdir().unwrap();
    let mut p = Project::new(t.path());
    let mut cache = InputCache::default();
    relink(&p, &mut cache, "first link");
    // The COMMON modules and the leaves in reverse order: every index
    // changes, and so does the owner of the COMMON storage (the first of
    // two of a size).
    p.objects[5..].reverse();
    relink(&p, &mut cache, "modules reversed");
    // One module fewer: leaf2 is unreferenced.
    let gone = p.dir.join("leaf2.o");
    p.objects.retain(|o| *o != gone);
    relink(&p, &mut cache, "module dropped");
    // And with the baseline cache, which reuses nothing.
    let mut plain = InputCache::inputs_only();
    let (_, r) = relink(&p, &mut plain, "inputs only");
    assert_eq!(r, ReuseStats::default());
}

#[test]
fn a_name_taken_over_by_a_changed_module_is_resolved_again() {
    let t = tempfile::tempdir().unwrap();
    let p = Project::new(t.path());
    let mut cache = InputCache::default();
    // `ctor` defines `pick` weakly and `leaf2` calls it.
    p.build(
        "ctor",
        &format!("{CTOR}\n__attribute__((weak)) int pick(void) {{ return 1; }}\n"),
    );
    p.build(
        "leaf2",
        &format!(
            "int pick(void);\n{}int leaf2_pick(void) {{ return pick(); }}\n",
            leaf(2)
        ),
    );
    relink(&p, &mut cache, "weak definition");
    // `leaf5`, after `leaf2` (so no id of `leaf2`'s moves), now defines it
    // strongly: `leaf2`, unchanged and importing only from unchanged
    // modules, must not keep its previous resolution to `ctor`.
    p.build(
        "leaf5",
        &format!("{}int pick(void) {{ return 2; }}\n", leaf(5)),
    );
    let (_, r) = relink(&p, &mut cache, "strong definition taken over");
    assert!(r.parsed >= p.objects.len() - 1, "{r:?}");

    // `leaf5` calls a library function; then `leaf3`, before it, starts
    // calling another one without defining anything new: the host symbol
    // list gains an entry ahead of `leaf5`'s, whose index moves.
    p.build(
        "leaf5",
        &format!(
            "#include <stdlib.h>\n{}int pick(void) {{ return 2; }}\nint leaf5_r(void) {{ return rand(); }}\n",
            leaf(5)
        ),
    );
    relink(&p, &mut cache, "a library call");
    p.build(
        "leaf3",
        &leaf(3)
            .replace(
                "return leaf3_get(x) + leaf3_get(x + 1);",
                "return leaf3_get(x) + leaf3_get(x + 1) + (getpid() > 0);",
            )
            .replace(
                "static int calls;",
                "#include <unistd.h>\nstatic int calls;",
            ),
    );
    relink(&p, &mut cache, "a library call ahead of it");
}

/// C++ inline functions: each module that uses one carries a COMDAT copy,
/// and the link keeps the first. Through every change of owner (the copy
/// of a module that stops using the function is gone, another's is kept;
/// then the first is kept again) the image stays byte for byte the full
/// link's, and runs.
#[test]
fn comdat_owners_changing_relink_like_a_full_link() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let inline = "inline __attribute__((noinline)) int twice(int x) { return 2 * x; }\n";
    let a_uses = format!("{inline}int a_value(int x) {{ return twice(x) + 1; }}\n");
    let a_alone = "int a_value(int x) { return x + x + 1; }\n";
    let b = format!("{inline}int b_value(int x) {{ return twice(x) + 2; }}\n");
    let main = "#include <stdio.h>\nint a_value(int);\nint b_value(int);\n\
                int main() { printf(\"a=%d b=%d\\n\", a_value(3), b_value(4)); return 0; }\n";
    let build = |name: &str, code: &str| {
        let src = dir.join(format!("{name}.cpp"));
        std::fs::write(&src, code).expect("write source");
        let tmp = dir.join(format!("{name}.o.tmp"));
        support::compile(&src, &tmp, "-O1", &[]);
        let obj = dir.join(format!("{name}.o"));
        std::fs::rename(&tmp, &obj).expect("rename object");
        obj
    };
    let p = Project {
        dir: dir.to_path_buf(),
        objects: vec![build("main", main), build("a", &a_uses), build("b", &b)],
    };
    let n = p.objects.len();
    let mut cache = InputCache::default();
    let (first, _) = relink(&p, &mut cache, "first link");
    assert_eq!(run_output(&p, &first), "a=7 b=10\n");
    let (_, r) = relink(&p, &mut cache, "nothing changed");
    assert_eq!(r.parsed, n, "{r:?}");
    // `a` stops using `twice`: `b`'s copy is kept now.
    build("a", a_alone);
    let (image, _) = relink(&p, &mut cache, "b's copy kept");
    assert_eq!(run_output(&p, &image), "a=7 b=10\n");
    relink(&p, &mut cache, "b's copy kept, nothing changed");
    // And back: `b`'s copy is discarded again.
    build("a", &a_uses);
    let (image, _) = relink(&p, &mut cache, "a's copy kept again");
    assert_eq!(run_output(&p, &image), "a=7 b=10\n");
}

/// The image a cached link replaces is kept, hidden beside the output, and
/// the next link writes over it, but only where nothing could still read
/// it: a process with it open or mapped, or another name for it, keeps its
/// bytes. Dropping the cache leaves nothing hidden behind, and a link's
/// first run sweeps away what a killed process of the same output left.
#[test]
fn a_replaced_image_is_written_over_only_where_nothing_can_read_it() {
    use std::io::{Read as _, Seek as _};
    use std::os::unix::fs::MetadataExt as _;
    let t = tempfile::tempdir().unwrap();
    let p = Project::new(t.path());
    let out = p.dir.join("incremental.hcr");
    let ino = || std::fs::metadata(&out).expect("the image").ino();
    let hidden = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&p.dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(".incremental.hcr"))
            .collect();
        v.sort();
        v
    };
    // What a killed process left a while ago is swept by the first link;
    // a fresh one (a process of another PID namespace may be writing it)
    // and another output's are not.
    let dead = 4_194_304 + 7; // above the kernel's largest PID
    let stale = p.dir.join(format!(".incremental.hcr.tmp.{dead}"));
    let fresh = p.dir.join(format!(".incremental.hcr.tmp.{}", dead + 1));
    let other = p.dir.join(format!(".other.hcr.tmp.{dead}"));
    for f in [&stale, &fresh, &other] {
        std::fs::write(f, b"left behind").unwrap();
    }
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for f in [&stale, &other] {
        let h = std::fs::File::options().write(true).open(f).unwrap();
        h.set_modified(hour_ago).unwrap();
    }
    // A different constant in `util` at each link: every image differs.
    let step = |k: usize, cache: &mut InputCache| -> Vec<u8> {
        let code = UTIL.replace("return a + b;", &format!("return a + b + {k};"));
        p.build("util", &code);
        relink(&p, cache, &format!("link {k}")).0
    };
    let mut cache = InputCache::default();
    step(0, &mut cache);
    assert!(!stale.exists(), "a stale file left by a dead process stays");
    assert!(
        fresh.exists() && other.exists(),
        "a fresh or another output's file went"
    );
    std::fs::remove_file(&fresh).unwrap();
    let ino0 = ino();
    step(1, &mut cache);
    let ino1 = ino();
    assert_ne!(ino0, ino1);
    // Nothing holds the first image: the third link writes over it.
    step(2, &mut cache);
    assert_eq!(ino(), ino0, "the replaced image was not written over");
    // One image held open, one mapped (its descriptor closed), one given
    // a second name: none of them is written over.
    let mut held = std::fs::File::open(&out).unwrap();
    let held_bytes = std::fs::read(&out).unwrap();
    step(3, &mut cache);
    let mapped_bytes = std::fs::read(&out).unwrap();
    let mapped = {
        let f = std::fs::File::open(&out).unwrap();
        // SAFETY: the test's own file, which the test checks nobody writes.
        unsafe { memmap2::Mmap::map(&f) }.unwrap()
    };
    step(4, &mut cache);
    let named_bytes = std::fs::read(&out).unwrap();
    let second_name = p.dir.join("kept.hcr");
    std::fs::hard_link(&out, &second_name).unwrap();
    for k in 5..9 {
        step(k, &mut cache);
    }
    let mut now = Vec::new();
    held.rewind().unwrap();
    held.read_to_end(&mut now).unwrap();
    let overwritten: Vec<&str> = [
        (now == held_bytes, "held open"),
        (mapped[..] == mapped_bytes[..], "mapped"),
        (
            std::fs::read(&second_name).unwrap() == named_bytes,
            "given a second name",
        ),
    ]
    .into_iter()
    .filter_map(|(kept, what)| (!kept).then_some(what))
    .collect();
    assert!(
        overwritten.is_empty(),
        "images written over: {overwritten:?}"
    );
    // Every image was still the link's own (`relink` compares each with a
    // full link); one replaced image waits hidden, and goes with the cache.
    assert_eq!(hidden().len(), 1, "{:?}", hidden());
    let kept = p.dir.join(&hidden()[0]);

    // A program loading the kept image holds a read lease on it: the next
    // link neither waits for the lease (the system's break time is 45 s)
    // nor writes over the image, and no break signal reaches the linker.
    let kept_bytes = std::fs::read(&kept).unwrap();
    let loading = std::fs::File::open(&kept).unwrap();
    {
        use std::os::fd::AsRawFd as _;
        let fd = loading.as_raw_fd();
        // SAFETY: fcntl with integer arguments on the test's own
        // descriptor; the break signal (SIGURG) is ignored by default.
        let leased = unsafe {
            libc::fcntl(fd, 10 /* F_SETSIG */, libc::SIGURG);
            libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) == 0
        };
        assert!(leased, "{}", std::io::Error::last_os_error());
    }
    let t0 = std::time::Instant::now();
    step(9, &mut cache);
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(10),
        "the link waited for a read lease: {:?}",
        t0.elapsed()
    );
    let mut still = Vec::new();
    (&loading).rewind().unwrap();
    (&loading).read_to_end(&mut still).unwrap();
    assert!(
        still == kept_bytes,
        "an image under a read lease was written over"
    );
    drop(loading);

    // A file at the cache's own temporary name that the cache does not
    // hold (one left by an earlier process with this process's ID) is
    // replaced, not an error.
    let kept = p.dir.join(&hidden()[0]);
    let left = std::fs::read(&kept).unwrap();
    cache.forget_spare();
    std::fs::write(&kept, &left).unwrap();
    step(10, &mut cache);
    step(11, &mut cache);

    drop(cache);
    assert_eq!(hidden(), Vec::<String>::new());
}
