/* a, version 0 (see main.c) */
#include <stdio.h>

#include "hcr.h"

int a_runs = 0; /* counts constructor runs; kept across reloads */

__attribute__((constructor)) static void a_ctor_1(void)
{
    a_runs++;
    printf("a: constructor 1\n");
}

HCR_ON_RELOAD(a_on_reload) { printf("a: on_reload (v0)\n"); }

__attribute__((constructor)) static void a_ctor_2(void)
{
    a_runs++;
    printf("a: constructor 2\n");
}

int a_value(void) { return a_runs; }
