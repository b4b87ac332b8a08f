/* b (see main.c): never changes; reads a's const data */
#include <string.h>

extern const int a_table[3];
extern const char a_name[16];

static char name_copy[16] = "";

int b_sum(void) { return a_table[0] + a_table[1] + a_table[2]; }

const char *b_name(void)
{
    strcpy(name_copy, a_name);
    return name_copy;
}
