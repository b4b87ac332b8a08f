/* a, version 0 (see main.c) */
#include <stdio.h>

#include "hcr.h"

static void a_before(void) { printf("a: before\n"); }
static void a_after(void) { printf("a: after\n"); }

HCR_ON_RELOAD(a_handlers)
{
    printf("a: on_reload\n");
    hcr_on_before_reload(a_before);
    hcr_on_after_reload(a_after);
}

int a_value(void) { return 0; }
