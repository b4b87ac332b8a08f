/* a, version 1 (see main.c): no constructor here may run. */
#include <stdio.h>

#include "hcr.h"

int b_value(void);

int a_runs = 0; /* kept: still 2 */

__attribute__((constructor)) static void a_ctor_1(void)
{
    a_runs += 100;
    printf("a: constructor 1 (v1) MUST NOT RUN\n");
}

HCR_ON_RELOAD(a_on_reload) { printf("a: on_reload (v1)\n"); }

__attribute__((constructor)) static void a_ctor_2(void)
{
    a_runs += 100;
    printf("a: constructor 2 (v1) MUST NOT RUN\n");
}

__attribute__((constructor)) static void a_ctor_3(void)
{
    a_runs += 100;
    printf("a: constructor 3 (v1, new) MUST NOT RUN\n");
}

int a_value(void) { return a_runs * 10 + b_value(); }
