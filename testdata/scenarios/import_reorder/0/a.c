/* a, version 0 (see main.c) */
#include <stdio.h>

#include "hcr.h"

__attribute__((constructor)) static void a_ctor(void) { printf("ctor a\n"); }

static void a_after(void) { printf("after a\n"); }

HCR_ON_RELOAD(a_on_reload)
{
    printf("on_reload a (v0)\n");
    hcr_on_after_reload(a_after);
}

int a_value(void) { return 1; }
