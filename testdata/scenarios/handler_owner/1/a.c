/* a, version 1 (see main.c) */
#include <stdio.h>

#include "hcr.h"

static void a_after(void) { printf("after: a (v1)\n"); }

HCR_ON_RELOAD(a_handlers) { hcr_on_after_reload(a_after); }

int a_value(void) { return 1; }
