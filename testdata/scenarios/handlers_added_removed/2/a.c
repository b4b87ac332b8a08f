/* a, version 2 (see main.c): only a before handler */
#include <stdio.h>

#include "hcr.h"

static void a_before(void) { printf("a v2: before\n"); }

HCR_ON_RELOAD(a_handlers) { hcr_on_before_reload(a_before); }

int a_value(void) { return 2; }
