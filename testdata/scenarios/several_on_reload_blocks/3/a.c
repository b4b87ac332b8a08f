/* a, version 3 (see main.c): two blocks, the counting one now second. */
#include <stdio.h>

#include "hcr.h"

int a_loads = 0;

HCR_ON_RELOAD(a_block_3) { printf("a: block 3 (v3, now first)\n"); }

HCR_ON_RELOAD(a_block_1)
{
    a_loads++;
    printf("a: block 1 (load %d, v3, now second)\n", a_loads);
}

int a_value(void) { return a_loads; }
