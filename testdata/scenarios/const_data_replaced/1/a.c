/* a, version 1 (see main.c) */
#include <stdio.h>

const int a_table[3] = {10, 20, 30};
const char a_name[16] = "second";

void a_describe(void)
{
    printf("a: table={%d, %d, %d} name=%s\n", a_table[0], a_table[1],
           a_table[2], a_name);
}
