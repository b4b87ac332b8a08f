/* a, version 0 (see main.c) */
#include <stdio.h>

int count = 5;

void a_step(void)
{
    count++;
    printf("a v0: count=%d\n", count);
}
