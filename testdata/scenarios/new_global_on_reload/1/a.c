/* a, version 1 (see main.c) */
#include <stdio.h>

#include "hcr.h"

int count = 100;                 /* changed initialiser: no effect */
int extra = 40;                  /* new global */
static int hits[3] = {1, 2, 3};  /* new file static */
static long zeroed = 0;          /* new .bss static */

HCR_ON_RELOAD(a_on_reload)
{
    printf("a v1: on_reload: count=%d extra=%d hits=%d,%d,%d zeroed=%ld\n",
           count, extra, hits[0], hits[1], hits[2], zeroed);
}

void a_step(void)
{
    static int calls = 1000;     /* new function static */
    count++;
    extra++;
    hits[zeroed % 3] += 10;
    zeroed++;
    calls++;
    printf("a v1: count=%d extra=%d hits=%d,%d,%d zeroed=%ld calls=%d\n",
           count, extra, hits[0], hits[1], hits[2], zeroed, calls);
}
