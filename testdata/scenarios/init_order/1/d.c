/* d, version 1 (see main.c) */
#include <stdio.h>

#include "hcr.h"

#define VERSION 1


__attribute__((constructor)) static void d_ctor(void) { printf("ctor d\n"); }

HCR_ON_RELOAD(d_on_reload) { printf("on_reload d (v%d)\n", VERSION); }

int d_value(void) { return 1000 + VERSION; }
