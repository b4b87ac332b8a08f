/* a, version 3 (see main.c): a real change */
#include <stdio.h>

#include "hcr.h"

static void a_before(void) { printf("a v3: before\n"); }
static void a_after(void) { printf("a v3: after\n"); }

HCR_ON_RELOAD(a_handlers)
{
    printf("a v3: on_reload\n");
    hcr_on_before_reload(a_before);
    hcr_on_after_reload(a_after);
}

int a_value(void) { return 3; }
