/* c, version 0 (see main.c) */
#include <stdio.h>

#include "hcr.h"

#define VERSION 0


__attribute__((constructor)) static void c_ctor(void) { printf("ctor c\n"); }

HCR_ON_RELOAD(c_on_reload) { printf("on_reload c (v%d)\n", VERSION); }

int c_value(void) { return VERSION; }
