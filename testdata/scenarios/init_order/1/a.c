/* a, version 1 (see main.c) */
#include <stdio.h>

#include "hcr.h"

#define VERSION 1
int b_value(void);

__attribute__((constructor)) static void a_ctor(void) { printf("ctor a\n"); }

HCR_ON_RELOAD(a_on_reload) { printf("on_reload a (v%d)\n", VERSION); }

int a_value(void) { return 100 + b_value(); }
