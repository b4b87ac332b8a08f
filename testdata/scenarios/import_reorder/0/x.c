/* x, version 0 (see main.c) */
#include <stdio.h>

#include "hcr.h"

__attribute__((constructor)) static void x_ctor(void) { printf("ctor x\n"); }

static void x_after(void) { printf("after x\n"); }

HCR_ON_RELOAD(x_on_reload)
{
    printf("on_reload x (v0)\n");
    hcr_on_after_reload(x_after);
}

int x_value(void) { return 10; }
