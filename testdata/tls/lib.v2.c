#include <stdio.h>
__thread int gd_var = 500;
static __thread int ld_a = 100;
static __thread int ld_b = 200;
__thread long resized = 9;
__thread const char *name = "v2-name";
__thread int added = 77;
void work(int id, int n) {
    for (int i = 0; i < n; i++) { gd_var += id; ld_a += 1; ld_b += 2; resized += 1; added++; }
}
void report(const char *who) {
    printf("%s v2 gd=%d ld=%d,%d resized=%ld name=%s added=%d\n", who, gd_var, ld_a, ld_b, resized, name, added);
    added += 1;
    fflush(stdout);
}
