/* y, version 0 (see main.c) */
#include <stdio.h>

#include "hcr.h"

__attribute__((constructor)) static void y_ctor(void) { printf("ctor y\n"); }

static void y_after(void) { printf("after y\n"); }

HCR_ON_RELOAD(y_on_reload)
{
    printf("on_reload y (v0)\n");
    hcr_on_after_reload(y_after);
}

int y_value(void) { return 20; }
