/* a, step 3 (nimhcr_0_2.nim): imports the new module b. */
#include <stdio.h>

#include "hcr.h"

extern int g_1;  /* module b: new import! */
int f_1(void);   /* module b */

/* a's top-level code ran when the program was loaded with a version that
 * did not contain this constructor: it must never run */
__attribute__((constructor)) static void a_top_level(void)
{
    printf("   0: I SHOULDN'T BE PRINTED!\n");
}

int g_0 = 0; /* changed value but won't take effect */

int getInt(void) { return g_0 + g_1 + f_1(); }

static void a_before(void) { printf("   0: before - improved!\n"); } /* changed handlers! */
static void a_after(void)
{
    printf("   0: after - improved!\n");
    g_0 = 100; /* we cannot change it in its initialisation but we can in the after handler! */
}

HCR_ON_RELOAD(a_handlers)
{
    hcr_on_before_reload(a_before);
    hcr_on_after_reload(a_after);
}
