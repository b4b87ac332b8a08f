/* a, version 0 (see main.c) */
#include <stdio.h>

#include "hcr.h"

int a_loads = 0;

HCR_ON_RELOAD(a_block_1)
{
    a_loads++;
    printf("a: block 1 (load %d)\n", a_loads);
}

__attribute__((constructor)) static void a_ctor(void) { printf("a: constructor\n"); }

HCR_ON_RELOAD(a_block_2) { printf("a: block 2\n"); }

HCR_ON_RELOAD(a_block_3) { printf("a: block 3\n"); }

int a_value(void) { return a_loads; }
