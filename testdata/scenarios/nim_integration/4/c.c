/* c, version 1 (nimhcr_2_1.nim): new at step 4. */
#include <stdio.h>
#include <string.h>

#include "hcr.h"

struct Type2 {
    int data;
};
struct Type2Seq {
    int len;
    struct Type2 items[2];
};
/* let g_2* = @[Type2(data: 2), Type2(data: 3)][1..^1]  (a length of 1) */
struct Type2Seq g_2 = {0, {{0}, {0}}};

const int c_2[3] = {1, 2, 3}; /* a const array read by another module */

static struct {
    char str[32];
    int i;
} tuple_a = {"", 0};

static void c_before(void) { printf("   2: before!\n"); }

HCR_ON_RELOAD(c_handlers) { hcr_on_before_reload(c_before); }

/* two functions of one module that reference each other (Nim issue 11608) */
static void rec_1(int depth);
static void rec_2(int depth) { rec_1(depth + 1); }
static void rec_1(int depth)
{
    if (depth < 3)
        rec_2(depth);
    else
        printf("max mutual recursion reached!\n");
}

/* a global initialised with a function's address (Nim issue 11996) */
void (*rec_2_func_ref)(int) = rec_2;

__attribute__((constructor)) static void c_top_level(void)
{
    struct Type2 all[2] = {{2}, {3}};
    int i;

    for (i = 1; i < 2; i++)
        g_2.items[g_2.len++] = all[i];

    strcpy(tuple_a.str, "   2: random string");
    printf("%s\n", tuple_a.str);

    rec_2_func_ref(0);
}
