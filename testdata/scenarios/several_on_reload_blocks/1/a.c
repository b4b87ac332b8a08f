/* a, version 1 (see main.c) */
#include <stdio.h>

#include "hcr.h"

int a_loads = 0;

HCR_ON_RELOAD(a_block_1)
{
    a_loads++;
    printf("a: block 1 (load %d, v1)\n", a_loads);
}

__attribute__((constructor)) static void a_ctor(void) { printf("a: constructor (v1)\n"); }

HCR_ON_RELOAD(a_block_2) { printf("a: block 2 (v1)\n"); }

HCR_ON_RELOAD(a_block_inserted) { printf("a: block inserted (v1)\n"); }

HCR_ON_RELOAD(a_block_3) { printf("a: block 3 (v1)\n"); }

int a_value(void) { return a_loads; }
