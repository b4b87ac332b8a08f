/* orphan (see main.c): linked, unreachable until step 2 */
#include <stdio.h>

#include "hcr.h"

int orphan_runs = 0;

__attribute__((constructor)) static void orphan_ctor(void)
{
    orphan_runs++;
    printf("orphan: constructor\n");
}

static void orphan_before(void) { printf("orphan: before\n"); }
static void orphan_after(void) { printf("orphan: after\n"); }

HCR_ON_RELOAD(orphan_on_reload)
{
    printf("orphan: on_reload\n");
    hcr_on_before_reload(orphan_before);
    hcr_on_after_reload(orphan_after);
}

int orphan_value(void) { return orphan_runs; }
