/* a, version 2 (see main.c): value and flag re-introduced */
#include <stdio.h>

int value = 500;
int kept = 10;
static int flag = 3;

void a_step(void)
{
    value++;
    kept++;
    flag *= 2;
    printf("a v2: value=%d kept=%d flag=%d\n", value, kept, flag);
}
