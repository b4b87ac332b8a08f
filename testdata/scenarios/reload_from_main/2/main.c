/* reload_from_main, main version 1: loaded at step 2 while main v0 runs.
 * Nothing of this main() ever runs: the running frame is main v0's.  Its
 * HCR_ON_RELOAD block and after handler do run. */
#include <stdio.h>

#include "scenario.h"

int work(int x);      /* module a */
int a_version(void);  /* module a */

int rounds = 0; /* kept when main changes */

static void main_after(void) { printf("main v1: after handler (rounds %d)\n", rounds); }

HCR_ON_RELOAD(main_on_reload)
{
    printf("main v1: on_reload\n");
    hcr_on_after_reload(main_after);
}

int main(void)
{
    printf("main v1: MUST NOT RUN\n");
    rounds = 1000 + work(0) + a_version();
    fflush(stdout);
    return 1;
}
