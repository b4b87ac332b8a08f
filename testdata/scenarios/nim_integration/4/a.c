/* a, step 4 (nimhcr_0_3.nim): imports b and the new c; g_0 is gone. */
#include <stdio.h>

#include "hcr.h"

extern int g_1; /* module b */

struct Type2 {
    int data;
};
struct Type2Seq {
    int len;
    struct Type2 items[2];
};
extern struct Type2Seq g_2; /* module c: a new and different import! */
extern const int c_2[3];    /* module c: const data */

/* Nim's closure iterator `makeCounter()`: a counter object whose function
 * pointer is stored in a global (a new global, created with its initialiser) */
struct counter {
    int next_value;
    int (*next)(struct counter *self);
};
static int counter_next(struct counter *self) { return self->next_value++; }
struct counter counter = {0, counter_next};

static void a_after(void)
{
    printf("   0: after - closure iterator: %d\n", counter.next(&counter));
    printf("   0: after - closure iterator: %d\n", counter.next(&counter));
    printf("   0: after - c_2 = [%d, %d, %d]\n", c_2[0], c_2[1], c_2[2]);
}

HCR_ON_RELOAD(a_handlers) { hcr_on_after_reload(a_after); }

int getInt(void) { return g_1 + g_2.len; }
