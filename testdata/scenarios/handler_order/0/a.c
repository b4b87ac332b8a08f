/* a, version 0 (see main.c) */
#include <stdio.h>

#include "hcr.h"

int b_value(void);

static void a_before(void) { printf("before a\n"); }
static void a_after(void) { printf("after a\n"); }

HCR_ON_RELOAD(a_handlers)
{
    hcr_on_before_reload(a_before);
    hcr_on_after_reload(a_after);
}

int a_value(void) { return 100 + b_value(); }
