/* b, version 1 (see main.c) */
#include <stdio.h>

#include "hcr.h"

int x_value(void);

__attribute__((constructor)) static void b_ctor(void) { printf("ctor b\n"); }

static void b_after(void) { printf("after b\n"); }

HCR_ON_RELOAD(b_on_reload)
{
    printf("on_reload b (v1)\n");
    hcr_on_after_reload(b_after);
}

int b_value(void) { return 200 + x_value(); }
