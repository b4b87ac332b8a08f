/* a, step 5 (nimhcr_0_4.nim): only imports b; g_0 comes back. */
#include <stdio.h>

#include "hcr.h"

int f_1(void); /* module b: "import nimhcr_1  # only importing 1" */

int g_0 = 1000; /* new value! but also a "new" global :) */

int getInt(void) { return g_0; }

struct counter {
    int next_value;
    int (*next)(struct counter *self);
};
static int counter_next(struct counter *self) { return self->next_value++; }
struct counter counter = {0, counter_next}; /* kept: it remembers */

static void a_after(void)
{
    printf("   0: after - closure iterator! after reload! does it remember? :%d\n",
           counter.next(&counter));
    printf("   0: after - closure iterator! after reload! does it remember? :%d\n",
           counter.next(&counter));
}

HCR_ON_RELOAD(a_handlers) { hcr_on_after_reload(a_after); }

/* never called: this reference is what makes a import b */
int a_uses_b(void) { return f_1(); }
