/* reload_from_main — the reload is requested from the root's main loop while
 * main is on the call stack, and in step 2 main itself changes.  The running
 * main keeps running its old code (it goes on printing "main v0") until it
 * returns; its calls into other modules reach their newest code; its
 * global `rounds` is kept; the changed main's HCR_ON_RELOAD block runs and
 * its new after handler replaces the old one.
 *
 *   a v0: work(x) = x + 1      step 1: a v1: work(x) = 10x
 *   step 2: main v1 (a unchanged)
 *   step 3: a v2: work(x) = 100x (main v1 unchanged)
 */
#include <stdio.h>

#include "scenario.h"

int work(int x);      /* module a */
int a_version(void);  /* module a */

int rounds = 0; /* kept when main changes */

static void main_after(void) { printf("main v0: after handler\n"); }

HCR_ON_RELOAD(main_on_reload)
{
    printf("main v0: on_reload\n");
    hcr_on_after_reload(main_after);
}

int main(void)
{
    int step, w, v;

    printf("main v0: start\n");
    for (step = 1; step <= 3; step++) {
        rounds++;
        w = work(step);
        v = a_version();
        printf("main v0: round %d: work(%d) = %d (a v%d)\n", rounds, step, w, v);
        scenario_rebuild(step);
        printf("main v0: reload %d -> %d\n", step,
               scenario_checked(hcr_perform_code_reload()));
    }
    w = work(10);
    v = a_version();
    printf("main v0: final: rounds %d, work(10) = %d (a v%d)\n", rounds, w, v);
    fflush(stdout);
    return 0;
}
