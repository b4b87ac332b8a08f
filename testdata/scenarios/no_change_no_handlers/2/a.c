/* a, version 0 with comments edited only (see main.c): the object file is
 * byte-identical to version 0's. */
#include <stdio.h>

#include "hcr.h"

/* this comment is new */
static void a_before(void) { printf("a: before\n"); }   /* so is this one */
static void a_after(void) { printf("a: after\n"); }

HCR_ON_RELOAD(a_handlers)
{
    printf("a: on_reload\n");
    hcr_on_before_reload(a_before);
    hcr_on_after_reload(a_after);
}

int a_value(void) { return 0; } // and this one
