//! A large global (a static pool, a big table) costs memory only as the
//! program touches it, as a native program's `.bss` does: the runtime gives
//! it fresh pages the kernel zero-fills on first use, rather than writing
//! zeroes over all of it at load.

mod support;

#[test]
fn a_large_static_pool_is_committed_only_where_used() {
    let d = tempfile::tempdir().unwrap();
    let main = support::module(
        d.path(),
        "main",
        r#"#include <stdio.h>
        static char pool[512u << 20];
        static int small[3] = {1, 2, 3};
        static long resident_mb(void) {
            long pages = 0, rss = 0;
            FILE *f = fopen("/proc/self/statm", "r");
            if (!f || fscanf(f, "%ld %ld", &pages, &rss) != 2) return -1;
            fclose(f);
            return rss * 4096 / (1 << 20);
        }
        int main(void) {
            long before = resident_mb();
            for (long i = 0; i < (64L << 20); i += 4096) pool[i] = 1; /* 64 MB touched */
            long after = resident_mb();
            long sum = 0;
            for (long i = 0; i < (long)sizeof pool; i += 1 << 20) sum += pool[i];
            printf("%ld %d %d %d\n", sum, pool[sizeof pool - 1], small[2], before >= 0);
            printf("grew %d\n", after - before >= 60 && after - before <= 100);
            printf("small %d\n", before < 100);
            return 0;
        }"#,
        "-O1",
    );
    let img = d.path().join("app.hcr");
    support::link_ok(&img, &[main]);
    let printed = support::run_ok(&img);
    // 64 of the 512 MB touched, one byte a page; the rest zero. Before
    // touching, the process holds far less than the pool; touching 64 MB
    // adds about 64 MB.
    assert_eq!(printed, "64 0 3 1\ngrew 1\nsmall 1\n");
}
