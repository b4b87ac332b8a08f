#include <stdio.h>
__thread int gd_var = 5;
static __thread int ld_a = 1;
static __thread int ld_b = 2;
__thread int resized = 3;
__thread const char *name = "v1-name";
__thread int gone = 4;
void work(int id, int n) {
    for (int i = 0; i < n; i++) { gd_var += id; ld_a += 1; ld_b += 2; resized += 1; gone++; }
}
void report(const char *who) {
    printf("%s v1 gd=%d ld=%d,%d resized=%d name=%s gone=%d\n", who, gd_var, ld_a, ld_b, resized, name, gone);
    fflush(stdout);
}
