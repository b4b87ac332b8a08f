/* a, step 1 (nimhcr_0_1.nim): new initialiser and handlers. */
#include <stdio.h>

#include "hcr.h"

int g_0 = 42; /* let's start with the ultimate answer (no effect: g_0 is live) */

int getInt(void) { return g_0; }

static void a_before(void) { printf("   0: before\n"); }
static void a_after(void) { printf("   0: after\n"); }

HCR_ON_RELOAD(a_handlers)
{
    hcr_on_before_reload(a_before);
    hcr_on_after_reload(a_after);
}
