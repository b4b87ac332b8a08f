/* b, version 1 (see main.c) */
#include <stdio.h>

#include "hcr.h"

#define VERSION 1
int c_value(void);

__attribute__((constructor)) static void b_ctor(void) { printf("ctor b\n"); }

HCR_ON_RELOAD(b_on_reload) { printf("on_reload b (v%d)\n", VERSION); }

int b_value(void) { return 10 + c_value(); }
