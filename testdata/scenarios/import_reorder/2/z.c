/* z, version 2 (see main.c) */
#include <stdio.h>

#include "hcr.h"

int y_value(void);

__attribute__((constructor)) static void z_ctor(void) { printf("ctor z\n"); }

static void z_after(void) { printf("after z\n"); }

HCR_ON_RELOAD(z_on_reload)
{
    printf("on_reload z (v2)\n");
    hcr_on_after_reload(z_after);
}

int z_value(void) { return 40 + y_value(); }
