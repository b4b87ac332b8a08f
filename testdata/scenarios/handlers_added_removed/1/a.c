/* a, version 1 (see main.c): before + after handlers */
#include <stdio.h>

#include "hcr.h"

static void a_before(void) { printf("a v1: before\n"); }
static void a_after(void) { printf("a v1: after\n"); }

HCR_ON_RELOAD(a_handlers)
{
    hcr_on_before_reload(a_before);
    hcr_on_after_reload(a_after);
}

int a_value(void) { return 1; }
