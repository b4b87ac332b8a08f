/* c, version 1 (see main.c) */
#include <stdio.h>

#include "hcr.h"

static void c_before(void) { printf("before c (v1)\n"); }
static void c_after(void) { printf("after c (v1)\n"); }

HCR_ON_RELOAD(c_handlers)
{
    hcr_on_before_reload(c_before);
    hcr_on_after_reload(c_after);
}

int c_value(void) { return 1; }
