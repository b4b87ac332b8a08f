/* b, version 0 (see main.c) */
#include <stdio.h>

#include "hcr.h"

HCR_ON_RELOAD(b_block) { printf("b: block (v0)\n"); }

int b_value(void) { return 0; }
