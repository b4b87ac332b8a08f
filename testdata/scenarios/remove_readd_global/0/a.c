/* a, version 0 (see main.c) */
#include <stdio.h>

int value = 1;
int kept = 10;
static int flag = 7;

void a_step(void)
{
    value++;
    kept++;
    flag *= 2;
    printf("a v0: value=%d kept=%d flag=%d\n", value, kept, flag);
}
