/* a, version 0 (see main.c) */
#include <stdio.h>

#include "scenario.h"

static int runs = 0;

int a_version(void) { return 0; }

int (*a_version_ptr)(void) = a_version;

int a_run(int step)
{
    int n;

    runs++;
    printf("a v0: a_run(%d): run %d, version %d\n", step, runs, a_version_ptr());
    scenario_rebuild(step);
    n = scenario_checked(hcr_perform_code_reload());
    printf("a v0: back in the old frame after reload %d -> %d: run %d, version %d\n",
           step, n, runs, a_version_ptr());
    return 10 * 0 + n;
}
