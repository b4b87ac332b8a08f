/* b, new at step 1 (see main.c): its constructors run once, in source order. */
#include <stdio.h>

#include "hcr.h"

int b_runs = 0;

__attribute__((constructor)) static void b_ctor_1(void)
{
    b_runs++;
    printf("b: constructor 1\n");
}

__attribute__((constructor)) static void b_ctor_2(void)
{
    b_runs++;
    printf("b: constructor 2\n");
}

HCR_ON_RELOAD(b_on_reload) { printf("b: on_reload (runs %d)\n", b_runs); }

int b_value(void) { return b_runs; }
