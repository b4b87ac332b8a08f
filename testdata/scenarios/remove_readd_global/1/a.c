/* a, version 1 (see main.c): value and flag removed */
#include <stdio.h>

int kept = 10;

void a_step(void)
{
    kept++;
    printf("a v1: kept=%d\n", kept);
}
