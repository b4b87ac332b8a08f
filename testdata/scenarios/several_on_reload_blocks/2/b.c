/* b, version 2 (see main.c) */
#include <stdio.h>

#include "hcr.h"

HCR_ON_RELOAD(b_block) { printf("b: block (v2)\n"); }

int b_value(void) { return 2; }
