/* a, version 2 (see main.c): the last one, no more reloads */
#include <stdio.h>

static int runs = 0;

int a_version(void) { return 2; }

int (*a_version_ptr)(void) = a_version;

int a_run(int step)
{
    runs++;
    printf("a v2: a_run(%d): run %d, version %d\n", step, runs, a_version_ptr());
    return 20;
}
